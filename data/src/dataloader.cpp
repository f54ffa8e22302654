#include <smp/data/dataloader.h>
#include <smp/data/transforms.h>
#include <smp/engine/device.h>
#include <smp/engine/error.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

namespace smp::data {

namespace {
Tensor pinned(const Tensor& t) {
  return t.defined() && t.is_cpu() && !t.is_pinned() ? t.pin_memory() : t;
}

// Random transforms draw by (epoch, example index), so a batch is the same whichever thread
// builds it; a dataset that builds whole batches draws by (epoch, its first index).
Batch make_batch(const Dataset& ds, const std::vector<size_t>& idx, uint64_t epoch, bool pin) {
  Batch b;
  std::optional<Batch> got;
  {
    SampleRngScope scope(epoch, idx.empty() ? 0 : idx.front());
    got = ds.get_batch(idx);
  }
  if (got) {
    b = std::move(*got);
  } else {
    std::vector<Example> ex;
    ex.reserve(idx.size());
    for (size_t i : idx) {
      SampleRngScope scope(epoch, i);
      ex.push_back(ds.get(i));
    }
    b = collate(ex);
  }
  // Pinned on the thread that built the batch, so the consumer's .to(cuda) does not wait.
  if (pin) {
    b.data = pinned(b.data);
    b.target = pinned(b.target);
  }
  return b;
}
}  // namespace

// One pass over the loader. Workers claim batch numbers in order but never more than
// `window` ahead of the consumer, which bounds memory; results are delivered by number, so
// the order is the sampler's whatever the scheduling.
struct DataLoader::EpochState {
  std::shared_ptr<Dataset> dataset;
  bool pin = false;    // pin_memory requested and a CUDA device present
  uint64_t epoch = 0;  // keys the random transforms' draws
  std::vector<std::vector<size_t>> batches;
  size_t next = 0;  // batch the consumer is on; written under mu (workers read it)
  Batch current;

  // worker mode
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable cv_work, cv_done;
  size_t claimed = 0, window = 0;
  bool stop = false;
  struct Result {
    Batch batch;
    std::exception_ptr error;
  };
  std::map<size_t, Result> ready;

  ~EpochState() { shutdown(); }

  void shutdown() {
    {
      std::lock_guard<std::mutex> g(mu);
      stop = true;
    }
    cv_work.notify_all();
    for (auto& t : workers)
      if (t.joinable()) t.join();
    workers.clear();
  }

  void worker_loop() {
    for (;;) {
      size_t k;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv_work.wait(lk,
                     [&] { return stop || (claimed < batches.size() && claimed < next + window); });
        if (stop || claimed >= batches.size()) return;
        k = claimed++;
      }
      Result r;
      try {
        r.batch = make_batch(*dataset, batches[k], epoch, pin);
      } catch (...) {
        r.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> g(mu);
        ready.emplace(k, std::move(r));
      }
      cv_done.notify_all();
    }
  }

  void advance() {
    {
      std::lock_guard<std::mutex> g(mu);
      ++next;
    }
    cv_work.notify_all();  // the window moved
  }

  // Makes batch `next` current (blocking on the workers); false past the end.
  bool load() {
    if (next >= batches.size()) return false;
    if (workers.empty()) {
      current = make_batch(*dataset, batches[next], epoch, pin);
      return true;
    }
    Result r;
    {
      std::unique_lock<std::mutex> lk(mu);
      cv_done.wait(lk, [&] { return ready.count(next) > 0; });
      auto it = ready.find(next);
      r = std::move(it->second);
      ready.erase(it);
    }
    if (r.error) {
      shutdown();
      std::rethrow_exception(r.error);
    }
    current = std::move(r.batch);
    return true;
  }
};

DataLoader::DataLoader(std::shared_ptr<Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)) {
  SMP_CHECK(dataset_ != nullptr, "DataLoader: got a null dataset");
  SMP_CHECK(options_.batch_size() >= 1, "DataLoader: batch_size must be >= 1, got {}",
            options_.batch_size());
  SMP_CHECK(options_.prefetch() >= 1, "DataLoader: prefetch must be >= 1, got {}",
            options_.prefetch());
  if (options_.sampler())
    sampler_ = options_.sampler();
  else if (options_.shuffle())
    sampler_ = std::make_shared<RandomSampler>(dataset_->size(), options_.seed());
  else
    sampler_ = std::make_shared<SequentialSampler>(dataset_->size());
}

size_t DataLoader::size() const {
  size_t n = sampler_->size(), b = options_.batch_size();
  return options_.drop_last() ? n / b : (n + b - 1) / b;
}

DataLoader::Iterator DataLoader::begin() {
  auto st = std::make_shared<EpochState>();
  st->dataset = dataset_;
  // As PyTorch: without a CUDA device pinning would buy nothing, so batches stay pageable.
  st->pin = options_.pin_memory() && cuda::is_available();
  st->epoch = epoch_;
  std::vector<size_t> idx = sampler_->indices(epoch_++);
  const size_t b = options_.batch_size();
  for (size_t s = 0; s < idx.size(); s += b) {
    size_t e = std::min(idx.size(), s + b);
    if (e - s < b && options_.drop_last()) break;
    st->batches.emplace_back(idx.begin() + static_cast<std::ptrdiff_t>(s),
                             idx.begin() + static_cast<std::ptrdiff_t>(e));
  }
  if (options_.num_workers() > 0 && !st->batches.empty()) {
    st->window = options_.num_workers() * options_.prefetch();
    EpochState* raw = st.get();  // workers are joined before the state dies
    for (size_t w = 0; w < options_.num_workers(); ++w)
      st->workers.emplace_back([raw] { raw->worker_loop(); });
  }
  if (!st->load()) return end();
  return Iterator(std::move(st));
}

DataLoader::Iterator DataLoader::end() { return Iterator(); }

DataLoader::Iterator::Iterator(std::shared_ptr<EpochState> state) : state_(std::move(state)) {}

Batch& DataLoader::Iterator::operator*() const {
  SMP_CHECK(state_ != nullptr, "DataLoader: dereferencing the end iterator");
  return state_->current;
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  SMP_CHECK(state_ != nullptr, "DataLoader: incrementing the end iterator");
  state_->advance();
  try {
    if (!state_->load()) state_.reset();
  } catch (...) {
    state_.reset();
    throw;
  }
  return *this;
}

bool DataLoader::Iterator::operator==(const Iterator& other) const {
  return state_ == other.state_;
}

}  // namespace smp::data
