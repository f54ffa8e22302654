// Built against the installed package by tests/install/install_test.cmake.
#include <smp/smp.h>

#include <cstdio>

int main() {
  smp::Tensor t = smp::tensor<float>({1, 2, 3, 4}, {2, 2});
  std::printf("libsmp %s sum=%g\n", SMP_VERSION, t.sum().item<double>());
  return 0;
}
