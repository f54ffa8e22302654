// A fixed pool of workers; parallel_for splits a range into one chunk per thread.
#include <smp/engine/threading.h>
#include <smp/engine/error.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

extern "C" {
// OpenBLAS threads must follow ours, or the two pools oversubscribe the cores.
void openblas_set_num_threads(int) __attribute__((weak));
}

namespace smp {

namespace {

thread_local bool t_in_pool = false;

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
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, g = generation_] { worker(i, g); });
  }

  // Runs fn(i) for i in [0, tasks), tasks <= size(): the caller takes task 0 and worker w
  // takes task w, so no task can be claimed twice across generations.
  void run(int tasks, const std::function<void(int)>& fn) {
    std::unique_lock<std::mutex> lk(mu_);
    job_ = &fn;
    tasks_ = tasks;
    remaining_ = tasks - 1;
    error_ = nullptr;
    ++generation_;
    lk.unlock();
    cv_.notify_all();
    t_in_pool = true;
    run_task(fn, 0);
    t_in_pool = false;
    lk.lock();
    done_cv_.wait(lk, [&] { return remaining_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
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
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      if (id >= tasks_) continue;
      const auto* job = job_;
      lk.unlock();
      run_task(*job, id);
      lk.lock();
      if (--remaining_ == 0) done_cv_.notify_all();
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
  int tasks_ = 0;
  int remaining_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

int default_threads() {
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

std::mutex g_pool_mu;  // one parallel region at a time; others run inline

ThreadPool& pool() {
  static ThreadPool p(default_threads());
  return p;
}

int g_num_threads = -1;

}  // namespace

void set_num_threads(int n) {
  SMP_CHECK(n >= 1, "set_num_threads: expected at least 1 thread, got {}", n);
  std::lock_guard<std::mutex> g(g_pool_mu);
  pool().resize(n);
  g_num_threads = n;
  if (openblas_set_num_threads) openblas_set_num_threads(n);
}

int get_num_threads() {
  if (g_num_threads < 0) g_num_threads = pool().size();
  return g_num_threads;
}

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
