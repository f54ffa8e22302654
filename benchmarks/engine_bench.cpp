// Engine micro-benchmarks: GEMM throughput beside OpenBLAS's own sgemm on the same
// buffers, conv2d forward+backward for the MNIST CNN's second layer, and the CPU random
// fills (benchmarks/torch_random_bench.py times the same calls in PyTorch).
//   build/bin/engine_bench [--threads N] [--reps R] [--conv-only|--gemm-only|--random-only]
#include <cblas.h>
#include <smp/smp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

namespace {

double seconds(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Median wall time of `reps` runs of f, in seconds, after one warm-up run.
double median_seconds(int reps, const std::function<void()>& f) {
  f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) t.push_back(seconds(f));
  return median(t);
}

void bench_gemm(int reps) {
  std::printf("GEMM float32, C = A·B, n x n (median of two alternating rounds per side)\n");
  std::printf("%6s %14s %14s %8s\n", "n", "smp GFLOP/s", "sgemm GFLOP/s", "ratio");
  for (int64_t n : {256, 512, 1024, 2048}) {
    smp::Tensor a = smp::randn({n, n}), b = smp::randn({n, n});
    smp::Tensor c = smp::empty({n, n});
    const float* pa = a.data_ptr<float>();
    const float* pb = b.data_ptr<float>();
    float* pc = c.data_ptr<float>();
    int r = n >= 2048 ? std::max(5, reps / 2) : 4 * reps;
    double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
    auto blas = [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n),
                  static_cast<int>(n), static_cast<int>(n), 1.0f, pa, static_cast<int>(n), pb,
                  static_cast<int>(n), 0.0f, pc, static_cast<int>(n));
    };
    auto ours = [&] { smp::Tensor out = smp::matmul(a, b); };
    // libsmp keeps OpenBLAS single-threaded and splits products over its own pool, so the
    // reference gets OpenBLAS's threads back for its turn. Turns alternate in blocks rather
    // than single calls: an idle OpenBLAS worker spins for ~0.1 s after its last call (hence
    // the pause) and would take a core from ours. Two rounds each.
    // Each turn first runs its side for 200 ms: after the pause, the cores of this VM take
    // ~10 ms of back-to-back work to come up to speed again, and we time steady state.
    auto warm = [](const std::function<void()>& f) {
      auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
      while (std::chrono::steady_clock::now() < until) f();
    };
    std::vector<double> tb, ts;
    for (int round = 0; round < 2; ++round) {
      openblas_set_num_threads(smp::get_num_threads());
      warm(blas);
      for (int i = 0; i < r / 2; ++i) tb.push_back(seconds(blas));
      openblas_set_num_threads(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      warm(ours);
      for (int i = 0; i < r / 2; ++i) ts.push_back(seconds(ours));
    }
    double t_blas = median(tb), t_smp = median(ts);
    double g_smp = flops / t_smp / 1e9, g_blas = flops / t_blas / 1e9;
    std::printf("%6lld %14.1f %14.1f %7.0f%%\n", static_cast<long long>(n), g_smp, g_blas,
                100.0 * g_smp / g_blas);
  }
}

void bench_conv(int reps) {
  // MNIST CNN conv2: (64, 32, 26, 26) -> (64, 64, 24, 24), 3x3, with bias.
  smp::Tensor x = smp::randn({64, 32, 26, 26}).requires_grad_(true);
  smp::Tensor w = (smp::randn({64, 32, 3, 3}) * 0.05).detach().requires_grad_(true);
  smp::Tensor b = smp::zeros({64}).requires_grad_(true);
  smp::Tensor gout = smp::randn({64, 64, 24, 24});
  double fwd = median_seconds(reps, [&] {
    smp::NoGradGuard ng;
    smp::Tensor y = smp::conv2d(x, w, b);
  });
  double both = median_seconds(reps, [&] {
    smp::Tensor y = smp::conv2d(x, w, b);
    y.backward(gout);
  });
  std::printf(
      "conv2d 64x32x26x26 * 64x32x3x3 (median of %d): forward %.2f ms, forward+backward %.2f ms\n",
      reps, fwd * 1e3, both * 1e3);
}

// The CPU generator is sequential (torch's mt19937), so these run on one thread whatever
// --threads says; the sizes are the MNIST CNN's dropout inputs and a 1M-element fill.
void bench_random(int reps) {
  smp::Tensor act = smp::randn({64, 64, 12, 12}), hidden = smp::randn({64, 128});
  smp::Tensor big = smp::empty({1 << 20});
  auto ms = [&](const std::function<void()>& f) { return median_seconds(reps, f) * 1e3; };
  std::printf(
      "random (median of %d, ms): dropout 64x64x12x12 p=0.25 %.3f, dropout 64x128 "
      "p=0.5 %.3f, uniform_ 1M %.3f, normal_ 1M %.3f, bernoulli_ 1M %.3f\n",
      reps, ms([&] { smp::dropout(act, 0.25, true); }),
      ms([&] { smp::dropout(hidden, 0.5, true); }), ms([&] { big.uniform_(); }),
      ms([&] { big.normal_(); }), ms([&] { big.bernoulli_(0.5); }));
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, reps = 10;
  bool gemm = true, conv = true, random = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--conv-only"))
      gemm = random = false;
    else if (!std::strcmp(argv[i], "--gemm-only"))
      conv = random = false;
    else if (!std::strcmp(argv[i], "--random-only"))
      gemm = conv = false;
    else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--reps R] [--conv-only|--gemm-only|--random-only]\n",
                   argv[0]);
      return 2;
    }
  }
  if (threads > 0) smp::set_num_threads(threads);
  std::printf("threads: %d\n", smp::get_num_threads());
  if (gemm) bench_gemm(reps);
  if (conv) bench_conv(reps);
  if (random) bench_random(reps);
  return 0;
}
