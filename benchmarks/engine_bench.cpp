// Engine micro-benchmarks on Google Benchmark: GEMM throughput beside OpenBLAS's own sgemm on
// the same buffers, conv2d forward and forward+backward for the MNIST CNN's second layer, the
// CPU random fills (benchmarks/torch_random_bench.py times the same calls in PyTorch), and an
// elementwise add and a softmax.
//
//   build/bin/engine_bench [--threads N] [--benchmark_filter=REGEX] [--benchmark_repetitions=R]
//
// --threads sets libsmp's pool (smp::set_num_threads); every other flag is Google
// Benchmark's (--help lists them). Times are wall clock (the work runs on the pool's threads).
// Groups: --benchmark_filter=Gemm (smp and OpenBLAS, alternating per size), =Conv2d, =Random,
// =Add|Softmax.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <smp/smp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>

namespace {

/// Float operations of one n x n x n product: GFLOP a second in the report ("GFLOP=…/s").
void count_gemm_flops(benchmark::State& state, int64_t n) {
  const double flops =
      2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  state.counters["GFLOP"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// smp::matmul, which allocates its output and goes through the op front end. libsmp keeps
/// OpenBLAS single-threaded and splits large products over its own pool.
void BM_Gemm_smp(benchmark::State& state) {
  const int64_t n = state.range(0);
  smp::Tensor a = smp::randn({n, n}), b = smp::randn({n, n});
  openblas_set_num_threads(1);
  // An idle OpenBLAS worker of the sgemm case before spins for ~0.1 s after its last call and
  // would take a core from ours: let it go to sleep first.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (auto _ : state) benchmark::DoNotOptimize(smp::matmul(a, b));
  count_gemm_flops(state, n);
}

/// cblas_sgemm on the same kind of buffers with OpenBLAS's own threads (as many as our pool).
void BM_Gemm_openblas(benchmark::State& state) {
  const int64_t n = state.range(0);
  smp::Tensor a = smp::randn({n, n}), b = smp::randn({n, n}), c = smp::empty({n, n});
  const int ni = static_cast<int>(n);
  openblas_set_num_threads(smp::get_num_threads());
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.0f, a.data_ptr<float>(),
                ni, b.data_ptr<float>(), ni, 0.0f, c.data_ptr<float>(), ni);
    benchmark::ClobberMemory();
  }
  openblas_set_num_threads(1);
  count_gemm_flops(state, n);
}

/// MNIST CNN conv2: (64, 32, 26, 26) -> (64, 64, 24, 24), 3x3, with bias.
struct Conv2Case {
  smp::Tensor x = smp::randn({64, 32, 26, 26}).requires_grad_(true);
  smp::Tensor w = (smp::randn({64, 32, 3, 3}) * 0.05).detach().requires_grad_(true);
  smp::Tensor b = smp::zeros({64}).requires_grad_(true);
  smp::Tensor gout = smp::randn({64, 64, 24, 24});
};

void BM_Conv2d_forward(benchmark::State& state) {
  Conv2Case c;
  smp::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(smp::conv2d(c.x, c.w, c.b));
}
void BM_Conv2d_forward_backward(benchmark::State& state) {
  Conv2Case c;
  for (auto _ : state) smp::conv2d(c.x, c.w, c.b).backward(c.gout);
}
BENCHMARK(BM_Conv2d_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Conv2d_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();

// The CPU generator is sequential (torch's mt19937), so these run on one thread whatever
// --threads says; the sizes are the MNIST CNN's dropout inputs and a 1M-element fill.
void BM_Random_dropout_64x64x12x12_p025(benchmark::State& state) {
  smp::Tensor act = smp::randn({64, 64, 12, 12});
  for (auto _ : state) benchmark::DoNotOptimize(smp::dropout(act, 0.25, true));
}
void BM_Random_dropout_64x128_p05(benchmark::State& state) {
  smp::Tensor hidden = smp::randn({64, 128});
  for (auto _ : state) benchmark::DoNotOptimize(smp::dropout(hidden, 0.5, true));
}
void BM_Random_uniform_1M(benchmark::State& state) {
  smp::Tensor big = smp::empty({1 << 20});
  for (auto _ : state) big.uniform_();
}
void BM_Random_normal_1M(benchmark::State& state) {
  smp::Tensor big = smp::empty({1 << 20});
  for (auto _ : state) big.normal_();
}
void BM_Random_bernoulli_1M(benchmark::State& state) {
  smp::Tensor big = smp::empty({1 << 20});
  for (auto _ : state) big.bernoulli_(0.5);
}
BENCHMARK(BM_Random_dropout_64x64x12x12_p025)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Random_dropout_64x128_p05)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Random_uniform_1M)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Random_normal_1M)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Random_bernoulli_1M)->Unit(benchmark::kMillisecond)->UseRealTime();

/// Elementwise and softmax kernels at the sizes of the MNIST CNN's activations and logits.
void BM_Add_1M(benchmark::State& state) {
  smp::Tensor a = smp::randn({1 << 20}), b = smp::randn({1 << 20});
  for (auto _ : state) benchmark::DoNotOptimize(a + b);
  state.SetBytesProcessed(state.iterations() * 3 * (int64_t{1} << 20) * 4);
}
void BM_Softmax_64x128(benchmark::State& state) {
  smp::Tensor x = smp::randn({64, 128});
  for (auto _ : state) benchmark::DoNotOptimize(smp::softmax(x, 1));
}
void BM_Softmax_4096x1000(benchmark::State& state) {
  smp::Tensor x = smp::randn({4096, 1000});
  for (auto _ : state) benchmark::DoNotOptimize(smp::softmax(x, 1));
}
BENCHMARK(BM_Add_1M)->UseRealTime();
BENCHMARK(BM_Softmax_64x128)->UseRealTime();
BENCHMARK(BM_Softmax_4096x1000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  // --threads N (or --threads=N) is ours; the rest goes to Google Benchmark.
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const bool split = a == "--threads" && i + 1 < argc;
    if (split || a.rfind("--threads=", 0) == 0) {
      const int threads = std::atoi(split ? argv[++i] : a.c_str() + 10);
      if (threads < 1) {
        std::fprintf(stderr, "engine_bench: --threads needs a positive integer\n");
        return 2;
      }
      smp::set_num_threads(threads);
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  // GEMM: smp's and OpenBLAS's case alternate per size. The cores of this VM take ~10 ms of
  // back-to-back work to come up to speed after a pause, so each case warms up for 200 ms.
  for (int64_t n : {256, 512, 1024, 2048}) {
    for (auto [name, fn] :
         {std::pair{"BM_Gemm_smp", &BM_Gemm_smp}, std::pair{"BM_Gemm_openblas", &BM_Gemm_openblas}})
      benchmark::RegisterBenchmark(name, fn)
          ->Arg(n)
          ->MinWarmUpTime(0.2)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::AddCustomContext("smp_threads", std::to_string(smp::get_num_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
