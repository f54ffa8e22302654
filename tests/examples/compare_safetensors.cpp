// compare_safetensors: checks that two safetensors files hold the same tensors (same names
// and shapes) with every element within |got - want| <= atol + rtol * |want|, as
// torch.allclose. Prints the worst absolute and relative difference of each tensor.
//
//   compare_safetensors GOT WANT [RTOL=1e-4] [ATOL=1e-5] [subset]
//
// With `subset`, GOT may hold tensors that WANT leaves out (a golden file that skips a large
// tensor); they are not compared.
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace {
std::string shape_str(const smp::Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + ")";
}
}  // namespace

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::fprintf(stderr, "usage: compare_safetensors GOT WANT [RTOL=1e-4] [ATOL=1e-5] [subset]\n");
    return 2;
  }
  const double rtol = argc > 3 ? std::atof(argv[3]) : 1e-4;
  const double atol = argc > 4 ? std::atof(argv[4]) : 1e-5;
  const bool subset = argc > 5 && std::string(argv[5]) == "subset";
  auto got = smp::load_safetensors(argv[1]);
  auto want = smp::load_safetensors(argv[2]);
  bool ok = true;
  for (const auto& [name, w] : want) {
    if (!got.count(name)) {
      std::printf("%-16s missing from %s\n", name.c_str(), argv[1]);
      ok = false;
    }
  }
  double worst_abs = 0;
  for (const auto& [name, g] : got) {
    auto it = want.find(name);
    if (it == want.end()) {
      std::printf("%-16s not in %s%s\n", name.c_str(), argv[2], subset ? " (not compared)" : "");
      ok = ok && subset;
      continue;
    }
    if (g.sizes() != it->second.sizes()) {
      std::printf("%-16s shape %s, expected %s\n", name.c_str(), shape_str(g.sizes()).c_str(),
                  shape_str(it->second.sizes()).c_str());
      ok = false;
      continue;
    }
    auto gv = g.to_vector<double>(), wv = it->second.to_vector<double>();
    double max_abs = 0, max_rel = 0;
    int64_t bad = 0;
    for (size_t i = 0; i < gv.size(); ++i) {
      const double d = std::abs(gv[i] - wv[i]);
      max_abs = std::max(max_abs, d);
      if (wv[i] != 0) max_rel = std::max(max_rel, d / std::abs(wv[i]));
      if (!(d <= atol + rtol * std::abs(wv[i]))) ++bad;
    }
    worst_abs = std::max(worst_abs, max_abs);
    std::printf("%-16s max |diff| %.3e  max rel %.3e  %lld of %zu outside tolerance\n",
                name.c_str(), max_abs, max_rel, static_cast<long long>(bad), gv.size());
    ok = ok && bad == 0;
  }
  std::printf("%s (rtol %g, atol %g, worst |diff| %.3e)\n", ok ? "MATCH" : "MISMATCH", rtol, atol,
              worst_abs);
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "compare_safetensors: %s\n", e.what());
  return 2;
}
