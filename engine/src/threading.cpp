// A fixed pool of workers; parallel_for splits a range into one chunk per thread.
#include <smp/engine/error.h>
#include <smp/engine/threading.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

extern "C" {
// OpenBLAS always runs single-threaded: large products are split over our pool instead
// (cpu/gemm_cpu.cpp). An OpenBLAS worker spins in sched_yield for ~0.1 s after each threaded
// call, and with as many threads as cores that spinning took a third of the CPU from our own
// kernels during MNIST training.
void openblas_set_num_threads(int) __attribute__((weak));
}

namespace smp {

namespace {

thread_local bool t_in_pool = false;

// Spinning for a short while before sleeping: a training step issues hundreds of parallel
// regions back to back, and waking a sleeping thread through the kernel cost 15-80 µs per
// region on our 2-core VM (a 256³ GEMM split over two threads ran slower than on one).
constexpr auto kSpin = std::chrono::microseconds(150);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls ready() for up to kSpin; true when it became true. After a few pauses it yields
// instead: the scheduler sometimes puts a woken worker on its waker's core, and a thread that
// only pauses then holds that core until the tick while the other one idles.
template <class Ready>
bool spin_until(Ready&& ready) {
  auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 1;; ++i) {
    if (ready()) return true;
    if (i < 64) {
      cpu_relax();
    } else {
      std::this_thread::yield();
      if (std::chrono::steady_clock::now() > until) return ready();
    }
  }
}

class ThreadPool {
 public:
  explicit ThreadPool(int n) { resize(n); }
  ~ThreadPool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }  // + the caller

  void resize(int n) {
    stop();
    stopping_ = false;
    // A worker starts from the current generation, so it never mistakes a finished job for
    // a new one (and still joins a job that begins before the thread first runs).
    uint64_t g = state_.load() >> kTaskBits;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, g] { worker(i, g); });
  }

  // Runs fn(i) for i in [0, tasks), tasks <= size(): the caller takes task 0 and worker w
  // takes task w, so no task can be claimed twice across generations.
  void run(int tasks, const std::function<void(int)>& fn) {
    job_ = &fn;
    error_ = nullptr;
    remaining_.store(tasks - 1);
    // Generation and task count change in one atomic step, so a late worker never pairs
    // one job's generation with another's task count.
    uint64_t gen = (state_.load() >> kTaskBits) + 1;
    state_.store(gen << kTaskBits | static_cast<uint64_t>(tasks));
    // Seq-cst store then load, against the worker's increment then re-check: either it sees
    // the new state or we see it asleep and wake it.
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> g(mu_);
      cv_.notify_all();
    }
    t_in_pool = true;
    run_task(fn, 0);
    t_in_pool = false;
    if (!spin_until([&] { return remaining_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lk(mu_);
      caller_waiting_.store(true);
      done_cv_.wait(lk, [&] { return remaining_.load() == 0; });
      caller_waiting_.store(false);
    }
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static constexpr int kTaskBits = 16;

  void run_task(const std::function<void(int)>& fn, int i) {
    try {
      fn(i);
    } catch (...) {
      std::lock_guard<std::mutex> g(mu_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void worker(int id, uint64_t seen) {
    t_in_pool = true;
    for (;;) {
      auto fresh = [&] { return (state_.load(std::memory_order_acquire) >> kTaskBits) != seen; };
      if (!spin_until([&] { return fresh() || stopping_.load(); })) {
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, [&] { return stopping_.load() || fresh(); });
        sleepers_.fetch_sub(1);
      }
      if (stopping_.load()) return;
      uint64_t st = state_.load(std::memory_order_acquire);
      seen = st >> kTaskBits;
      if (id >= static_cast<int>(st & ((1u << kTaskBits) - 1))) continue;
      run_task(*job_, id);
      if (remaining_.fetch_sub(1) == 1 && caller_waiting_.load()) {
        std::lock_guard<std::mutex> g(mu_);
        done_cv_.notify_all();
      }
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> state_{0};  // generation << kTaskBits | task count
  std::atomic<int> remaining_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};
  std::atomic<bool> stopping_{false};
  std::exception_ptr error_;
};

// A positive integer from the environment variable `name`, if set. OpenMP allows a list
// ("4,2", one count per nesting level); the first entry is the outer level's.
std::optional<int> env_count(const char* name) {
  const char* s = std::getenv(name);
  if (!s || !*s) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(s, &end, 10);
  SMP_CHECK(end != s && (*end == '\0' || *end == ',') && errno == 0 && n >= 1 && n <= 1 << 16,
            "{} is '{}'; expected a positive integer", name, s);
  return static_cast<int>(n);
}

int default_threads() {
  // A count the user chose for this process wins, as in PyTorch.
  if (auto n = env_count("OMP_NUM_THREADS")) return *n;
  const unsigned hc = std::thread::hardware_concurrency();
  const int cores = hc == 0 ? 1 : static_cast<int>(hc);
  // Every rank on a host would otherwise start one thread per core, and N ranks x all cores
  // oversubscribe the host N times: spinning workers then steal cores from each other's
  // kernels. The launcher's environment tells how many ranks share this host before (or
  // without) MPI_Init; the engine cannot ask the parallel layer, which sits above it.
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"})
    if (auto local = env_count(v)) return std::max(1, cores / *local);
  return cores;
}

std::mutex g_pool_mu;  // one parallel region at a time; others run inline

ThreadPool& make_pool() {
  if (openblas_set_num_threads) openblas_set_num_threads(1);
  static ThreadPool p(default_threads());
  return p;
}

ThreadPool& pool() {
  static ThreadPool& p = make_pool();
  return p;
}

// Read by every parallel_for on any thread (data-loader workers, pipeline tasks), written by
// set_num_threads: atomic, or the first readers race on the lazy initialisation.
std::atomic<int> g_num_threads{-1};

}  // namespace

void set_num_threads(int n) {
  SMP_CHECK(n >= 1, "set_num_threads: expected at least 1 thread, got {}", n);
  std::lock_guard<std::mutex> g(g_pool_mu);
  pool().resize(n);
  g_num_threads.store(n, std::memory_order_relaxed);
}

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n >= 0) return n;
  std::lock_guard<std::mutex> g(g_pool_mu);  // pool().size() against a concurrent resize
  n = pool().size();
  int unset = -1;
  return g_num_threads.compare_exchange_strong(unset, n, std::memory_order_relaxed) ? n : unset;
}

bool in_parallel_region() { return t_in_pool; }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int threads = get_num_threads();
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / grain);
  if (chunks <= 1 || t_in_pool) {
    f(0, n);
    return;
  }
  std::unique_lock<std::mutex> g(g_pool_mu, std::try_to_lock);
  if (!g.owns_lock()) {  // another thread holds the pool: do the work here
    f(0, n);
    return;
  }
  int64_t per = (n + chunks - 1) / chunks;
  pool().run(static_cast<int>(chunks), [&](int i) {
    int64_t b = i * per, e = std::min(n, b + per);
    if (b < e) f(b, e);
  });
}

}  // namespace smp
