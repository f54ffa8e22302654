// Data parallelism: gradient buckets reduced over the DP group while backward runs.
#include <fmt/ranges.h>
#include <smp/engine/autograd.h>
#include <smp/parallel/distributed.h>
#include <smp/parallel/runtime.h>
#include <smp/parallel/tensor_parallel.h>
#include <smp/parallel/trace.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <set>

#include "comm/backend.h"
#include "models.h"
#include "pipeline/executor.h"
#include "pipeline/pipeline.h"

namespace smp {
namespace detail {

/// Owns the buckets of one DistributedModel. Gradient-ready hooks copy each gradient into its
/// bucket's flat buffer; a bucket whose gradients are all in is reduced at once, but buckets
/// are launched strictly in order so every rank issues the same sequence of collectives.
class GradReducer {
 public:
  /// Averages over `comm`, then multiplies by `post_scale` (tensor parallelism's correction
  /// for gradients that are sums over the TP group's samples).
  GradReducer(const std::vector<std::pair<std::string, Tensor>>& named, Communicator& comm,
              const DistributedModelOptions& opts, double post_scale = 1.0)
      : comm_(comm), overlap_(opts.overlapping_allreduce), post_scale_(post_scale) {
    const double cap_bytes = std::max(1.0, opts.bucket_cap_mb * 1024.0 * 1024.0);
    // As PyTorch's DDP, the first bucket is capped at 1 MiB so that communication starts
    // early in backward instead of after a whole 25 MiB of gradients.
    const double first_cap = std::min(cap_bytes, 1024.0 * 1024.0);
    // Reverse registration order: backward produces the last layers' gradients first.
    for (auto it = named.rbegin(); it != named.rend(); ++it) {
      const Tensor& p = it->second;
      if (!p.requires_grad()) continue;
      const double cap = buckets_.size() <= 1 ? first_cap : cap_bytes;
      const bool fresh = buckets_.empty() ||
                         bucket_bytes_ + static_cast<double>(p.nbytes()) > cap ||
                         buckets_.back().dtype != p.dtype() || buckets_.back().device != p.device();
      if (fresh) {
        buckets_.push_back(Bucket{});
        buckets_.back().dtype = p.dtype();
        buckets_.back().device = p.device();
        bucket_bytes_ = 0;
      }
      Bucket& b = buckets_.back();
      slots_.push_back(Slot{p, it->first, buckets_.size() - 1, b.numel, p.numel(), false});
      b.slots.push_back(slots_.size() - 1);
      b.numel += p.numel();
      bucket_bytes_ += static_cast<double>(p.nbytes());
    }
    for (Bucket& b : buckets_)
      b.flat = zeros({b.numel}, TensorOptions().dtype(b.dtype).device(b.device));
  }

  /// Installs the hooks; `self` keeps the reducer alive for hooks that outlive the model.
  void install_hooks(const std::shared_ptr<GradReducer>& self) {
    std::weak_ptr<GradReducer> weak = self;
    for (size_t i = 0; i < slots_.size(); ++i) {
      slots_[i].param.register_post_accumulate_grad_hook([weak, i](Tensor& grad) {
        if (auto r = weak.lock()) r->on_grad_ready(i, grad);
      });
    }
  }

  void begin_backward() {
    std::lock_guard<std::mutex> lock(mu_);
    SMP_CHECK(!awaiting_,
              "DistributedModel::backward: the gradients of the previous backward are still being "
              "reduced; call DistributedOptimizer::step() (or wait_for_gradients()) between steps");
    for (Slot& s : slots_) s.ready = false;
    for (Bucket& b : buckets_) {
      b.pending = b.slots.size();
      b.work.reset();
    }
    next_launch_ = 0;
    in_backward_ = true;
  }

  void on_grad_ready(size_t i, Tensor& grad) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!in_backward_) return;  // a plain tensor.backward() outside model.backward()
    Slot& s = slots_[i];
    if (s.ready) return;
    Bucket& b = buckets_[s.bucket];
    {
      NoGradGuard no_grad;
      b.flat.narrow(0, s.offset, s.numel).copy_(grad.reshape({-1}));
    }
    s.ready = true;
    --b.pending;
    if (overlap_) launch_ready();
  }

  void end_backward() {
    std::lock_guard<std::mutex> lock(mu_);
    // Parameters that took no part in this backward contribute zeros, so every rank still
    // launches every bucket (a missing collective would hang the others).
    NoGradGuard no_grad;
    for (Slot& s : slots_) {
      if (s.ready) continue;
      buckets_[s.bucket].flat.narrow(0, s.offset, s.numel).zero_();
      s.ready = true;
      --buckets_[s.bucket].pending;
    }
    launch_ready();
    in_backward_ = false;
    awaiting_ = true;
  }

  void wait() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!awaiting_) return;
    NoGradGuard no_grad;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      Bucket& b = buckets_[i];
      if (b.work) {
        b.work->wait();
        // From launch to the moment its completion was seen: how long the gradients of this
        // bucket were in flight (overlapping backward when launched during it).
        if (trace::enabled())
          trace::record(trace::Kind::Allreduce, fmt::format("allreduce bucket {}", i), b.launched,
                        std::chrono::steady_clock::now(), -1, -1,
                        static_cast<int64_t>(b.flat.nbytes()));
      }
      if (post_scale_ != 1.0) b.flat *= post_scale_;
      for (size_t i : b.slots) {
        Slot& s = slots_[i];
        Tensor avg = b.flat.narrow(0, s.offset, s.numel).view(s.param.sizes());
        if (s.param.grad().defined())
          s.param.mutable_grad().copy_(avg);
        else
          s.param.set_grad(avg.clone());
      }
    }
    awaiting_ = false;
  }

  std::vector<std::vector<std::string>> layout() const {
    std::vector<std::vector<std::string>> out;
    for (const Bucket& b : buckets_) {
      out.emplace_back();
      for (size_t i : b.slots) out.back().push_back(slots_[i].name);
    }
    return out;
  }

 private:
  struct Slot {
    Tensor param;
    std::string name;
    size_t bucket;
    int64_t offset, numel;
    bool ready;
  };
  struct Bucket {
    Dtype dtype = kFloat32;
    Device device = Device("cpu");
    std::vector<size_t> slots;
    int64_t numel = 0;
    size_t pending = 0;
    Tensor flat;
    WorkPtr work;
    std::chrono::steady_clock::time_point launched;  // for the trace
  };

  void launch_ready() {
    while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
      // Named for the stall check: a rank that skips backward leaves the others waiting here.
      detail::CallScope scope(fmt::format("DistributedModel::backward (gradient bucket {} of {})",
                                          next_launch_ + 1, buckets_.size()));
      Bucket& b = buckets_[next_launch_++];
      b.launched = std::chrono::steady_clock::now();
      b.work = comm_.allreduce(b.flat, ReduceOp::Avg);
    }
  }

  Communicator& comm_;
  bool overlap_;
  double post_scale_;
  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  double bucket_bytes_ = 0;
  std::mutex mu_;
  size_t next_launch_ = 0;
  bool in_backward_ = false;
  bool awaiting_ = false;
};

namespace {
std::mutex g_registry_mu;
std::set<GradReducer*>& registry() {
  static std::set<GradReducer*> r;
  return r;
}
std::mutex g_models_mu;
std::set<DistributedModel*>& models() {
  static std::set<DistributedModel*> m;
  return m;
}
}  // namespace

LiveModel::LiveModel(DistributedModel* m) : m_(m) {
  std::lock_guard<std::mutex> lock(g_models_mu);
  models().insert(m_);
}

LiveModel::~LiveModel() {
  std::lock_guard<std::mutex> lock(g_models_mu);
  models().erase(m_);
}

std::vector<DistributedModel*> live_models() {
  std::lock_guard<std::mutex> lock(g_models_mu);
  return {models().begin(), models().end()};
}

}  // namespace detail

namespace {

/// Starts a broadcast of every tensor from group rank 0, then waits for all of them.
void broadcast_from_first(Communicator& c, const std::vector<Tensor>& tensors) {
  NoGradGuard no_grad;
  std::vector<WorkPtr> works;
  std::vector<Tensor> ts = tensors;
  for (Tensor& t : ts) {
    SMP_CHECK(t.is_contiguous(), "DistributedModel: parameters and buffers must be contiguous");
    works.push_back(c.broadcast(t, 0));
  }
  for (auto& w : works) w->wait();
}

}  // namespace

namespace detail {

/// How a parameter's gradient is reduced over the data-parallel ranks.
enum class GradGroup {
  Replicated,  ///< averaged over DP_GROUP (plain data parallelism)
  Sharded,     ///< parameters of distributed modules: over RDP_GROUP (see tp_post_scale)
  SeqPartial,  ///< sequence-parallel partial sums: over DP_GROUP, then times tp (prescaled)
};

/// The group of every parameter of a distributed module (others are Replicated).
std::map<const TensorImpl*, GradGroup> grad_groups(nn::Module& root) {
  std::map<const TensorImpl*, GradGroup> out;
  for (auto& m : root.modules()) {
    auto* tpm = dynamic_cast<nn::TensorParallelModule*>(m.get());
    if (tpm == nullptr) continue;
    // Modules inside a distributed module (its layer norms, its projections) are parts of it.
    for (auto& [n, p] : m->named_parameters(true)) out.emplace(p.unsafe_impl(), GradGroup::Sharded);
    // Specs may name parameters of the module's own submodules ("ln_1.weight").
    for (auto& [n, spec] : tpm->shard_specs())
      if (spec.sequence_partial)
        for (auto& [pn, p] : m->named_parameters(true))
          if (pn == n) out[p.unsafe_impl()] = GradGroup::SeqPartial;
  }
  return out;
}

/// The parameters that hold a shard (differing over the TP group).
std::set<const TensorImpl*> sharded_parameters(nn::Module& root) {
  std::set<const TensorImpl*> out;
  for (auto& m : root.modules())
    if (auto* tpm = dynamic_cast<nn::TensorParallelModule*>(m.get()))
      for (auto& [pn, p] : m->named_parameters(true)) {
        auto it = tpm->shard_specs().find(pn);
        if (it != tpm->shard_specs().end() && it->second.dim >= 0) out.insert(p.unsafe_impl());
      }
  return out;
}

}  // namespace detail

DistributedModel::DistributedModel(std::shared_ptr<nn::Module> module,
                                   DistributedModelOptions options)
    : module_(std::move(module)),
      options_(options),
      pipeline_(std::make_unique<detail::PipelineState>()) {
  SMP_CHECK(module_ != nullptr, "DistributedModel: the module is null");
  SMP_CHECK(options_.bucket_cap_mb > 0, "DistributedModel: bucket_cap_mb must be > 0, got {}",
            options_.bucket_cap_mb);
  if (!is_initialized()) return;
  if (tp_size() > 1) {
    module_ = detail::distribute_modules(module_);
    for (auto& m : module_->modules())
      if (dynamic_cast<nn::TensorParallelModule*>(m.get()) != nullptr)
        gathers_tp_batches_ = !config().prescaled_batch;
  }
  // With a pipeline the model splits at the first step; the reducer then covers only the
  // partition this rank holds.
  partitioned_ = pp_size() == 1;
  if (dp_size() > 1 || pp_size() > 1) guard_plain_backward();
  if (dp_size() == 1) return;
  // Replicas start equal: shards of distributed modules differ over the TP group, so they are
  // copied within the RDP group, everything else within the DP group.
  const auto shards = detail::sharded_parameters(*module_);
  std::vector<Tensor> replicated, sharded;
  for (Tensor& p : module_->parameters())
    (shards.count(p.unsafe_impl()) != 0 ? sharded : replicated).push_back(p);
  broadcast_from_first(comm(CommGroup::DP_GROUP), replicated);
  if (!sharded.empty() && rdp_size() > 1) broadcast_from_first(comm(CommGroup::RDP_GROUP), sharded);
  broadcast_from_first(comm(CommGroup::DP_GROUP), module_->buffers());
  if (partitioned_) make_reducer(module_->named_parameters());
}

void DistributedModel::make_reducer(const std::vector<std::pair<std::string, Tensor>>& params) {
  if (!is_initialized() || dp_size() == 1) return;
  const auto groups = detail::grad_groups(*module_);
  std::vector<std::pair<std::string, Tensor>> by_group[3];
  for (const auto& np : params) {
    auto it = groups.find(np.second.unsafe_impl());
    const auto g = it == groups.end() ? detail::GradGroup::Replicated : it->second;
    by_group[static_cast<int>(g)].push_back(np);
  }
  // Without prescaled_batch a distributed module computes on the samples of the whole TP group,
  // so its gradients on every TP rank already sum over tp ranks' losses: averaging over RDP and
  // dividing by tp gives the mean over the DP group's losses, as one process over the global
  // batch. With prescaled_batch the TP ranks share one loss: the RDP average is the answer.
  // Sequence-parallel partial sums are averaged over all of DP and, when prescaled, times tp.
  const double tp = tp_size();
  const bool prescaled = config().prescaled_batch;
  struct Kind {
    CommGroup group;
    double scale;
  };
  const Kind kinds[3] = {{CommGroup::DP_GROUP, 1.0},
                         {CommGroup::RDP_GROUP, prescaled ? 1.0 : 1.0 / tp},
                         {CommGroup::DP_GROUP, prescaled ? tp : 1.0}};
  std::lock_guard<std::mutex> lock(detail::g_registry_mu);
  for (int i = 0; i < 3; ++i) {
    if (by_group[i].empty()) continue;
    auto r = std::make_shared<detail::GradReducer>(by_group[i], comm(kinds[i].group), options_,
                                                   kinds[i].scale);
    r->install_hooks(r);
    detail::registry().insert(r.get());
    reducers_.push_back(std::move(r));
  }
}

// loss.backward() in place of model.backward(loss) would leave each data-parallel replica
// training on its own shard (no reduction) and would run a pipeline's backward outside its
// schedule; both are silent with PyTorch's habits, so any gradient that reaches a parameter
// while no backward() of this model runs is an error. Every rank runs the same code, so each
// throws at the same place (a pipeline rank that holds no part of the graph sees a meta
// gradient arrive at its parameters just the same).
void DistributedModel::guard_plain_backward() {
  std::weak_ptr<std::atomic<int>> depth = backward_depth_;
  const std::string how =
      pp_size() > 1 && dp_size() > 1
          ? fmt::format("{} pipeline stages x {} data-parallel replicas", pp_size(), dp_size())
      : pp_size() > 1 ? fmt::format("{} pipeline stages", pp_size())
                      : fmt::format("{} data-parallel replicas", dp_size());
  for (auto& [name, p] : module_->named_parameters()) {
    if (!p.requires_grad()) continue;
    p.register_post_accumulate_grad_hook([depth, name = name, how](Tensor&) {
      auto d = depth.lock();
      if (!d || d->load() > 0) return;
      throw Error(fmt::format(
          "parameter '{}' got a gradient from a backward outside DistributedModel::backward; "
          "with {} call model.backward(loss), not loss.backward(), so that the pipeline "
          "schedules it and gradients are averaged over the data-parallel group",
          name, how));
    });
  }
}

DistributedModel::~DistributedModel() {
  std::lock_guard<std::mutex> lock(detail::g_registry_mu);
  for (auto& r : reducers_) detail::registry().erase(r.get());
}

void DistributedModel::before_forward(const Tensor& x) {
  SMP_CHECK(!is_initialized() || pp_size() == 1 || step_.active,
            "DistributedModel: with pipeline_parallel_degree {} the model runs inside an "
            "smp::step function (each rank holds only its partition's parameters)",
            pp_size());
  if (gathers_tp_batches_) check_tp_batch_sizes(x);
  if (!reducers_.empty() && options_.broadcast_buffers && module_->is_training()) {
    std::vector<Tensor> bufs;
    for (Tensor& b : module_->buffers())
      if (!b.is_meta()) bufs.push_back(b);  // other partitions' buffers live elsewhere
    if (!bufs.empty()) broadcast_from_first(comm(CommGroup::DP_GROUP), bufs);
  }
}

// Distributed modules without prescaled_batch gather the rows of the whole TP group; a rank
// with a different batch size would receive truncated or misread rows (MPI reports the
// truncation on one side only), so the sizes are compared first, one small allgather per call.
void DistributedModel::check_tp_batch_sizes(const Tensor& x) {
  const int64_t rows = x.defined() && x.dim() > 0 ? x.size(0) : -1;
  const std::vector<nlohmann::json> all = allgather(nlohmann::json(rows), CommGroup::TP_GROUP);
  std::string sizes;
  bool same = true;
  for (const auto& r : all) {
    sizes += (sizes.empty() ? "" : ", ") + r.dump();
    same = same && r.get<int64_t>() == rows;
  }
  if (!same)
    throw Error(fmt::format(
        "DistributedModel: with tensor parallelism and prescaled_batch false each distributed "
        "module works on the samples of the whole TP group, so its ranks need batches of one "
        "size; the ranks of TP_GROUP {} bring {} rows (dimension 0 of the input). Give every "
        "rank the same batch size (drop the short last batch), or set prescaled_batch",
        fmt::join(get_tp_group(), ", "), sizes));
}

Tensor DistributedModel::operator()(const Tensor& x) {
  before_forward(x);
  return (*module_)(x);
}

Tensor DistributedModel::operator()(const Tensor& x, const Tensor& y) {
  before_forward(x);
  return (*module_)(x, y);
}

void DistributedModel::backward(const Tensor& loss) { backward({loss}, {}); }

void DistributedModel::backward(const std::vector<Tensor>& tensors,
                                const std::vector<Tensor>& grads) {
  std::vector<Tensor> g = grads;
  bool last = true;  // reduce over the DP group after this backward
  if (step_.active) {
    const int mb =
        pipeline::current_microbatch() >= 0 ? pipeline::current_microbatch() : step_.current;
    int& calls = step_.calls_per_microbatch[static_cast<size_t>(mb)];
    SMP_CHECK(calls == 0,
              "DistributedModel::backward: called twice in microbatch {} of this step; a step "
              "function calls model.backward once",
              mb);
    ++calls;
    ++step_.backward_calls;
    // In a pipeline the forward segment of this microbatch ends here; the schedule decides
    // when its backward runs.
    pipeline::end_forward();
    // The reduction follows the backward that runs last, whatever order the schedule chose.
    last = ++step_.backward_runs == step_.microbatches;
    if (options_.average_grads_across_microbatches && step_.microbatches > 1) {
      // Each microbatch's loss is a mean over its rows: 1/M of each gradient adds up to the
      // gradient of the whole batch's mean, as one unsplit step would compute it.
      const double scale = 1.0 / step_.microbatches;
      if (g.empty()) {
        for (const Tensor& t : tensors) {
          SMP_CHECK(t.numel() == 1,
                    "DistributedModel::backward: a tensor of {} elements needs explicit gradients "
                    "(backward(tensors, grads)); only a scalar loss has an implied one",
                    t.numel());
          g.push_back(full_like(t, scale));
        }
      } else {
        for (Tensor& x : g) x = x * scale;
      }
    }
  }
  struct Depth {  // backward() is running autograd: gradients reaching parameters are expected
    std::atomic<int>& d;
    explicit Depth(std::atomic<int>& x) : d(x) { ++d; }
    ~Depth() { --d; }
  } depth(*backward_depth_);
  if (reducers_.empty() || !last) {
    autograd::backward(tensors, g);
    return;
  }
  for (auto& r : reducers_) r->begin_backward();
  try {
    autograd::backward(tensors, g);
  } catch (...) {
    // Leave the reducers consistent; the caller's error will bring the job down.
    for (auto& r : reducers_) r->end_backward();
    throw;
  }
  for (auto& r : reducers_) r->end_backward();
}

void DistributedModel::wait_for_gradients() {
  for (auto& r : reducers_) r->wait();
}

std::vector<std::vector<std::string>> DistributedModel::bucket_layout() const {
  std::vector<std::vector<std::string>> out;
  for (auto& r : reducers_)
    for (auto& b : r->layout()) out.push_back(std::move(b));
  return out;
}

DistributedOptimizer::DistributedOptimizer(std::shared_ptr<optim::Optimizer> optimizer)
    : opt_(std::move(optimizer)) {
  SMP_CHECK(opt_ != nullptr, "DistributedOptimizer: the optimizer is null");
}

void DistributedOptimizer::step() {
  apply_pending();
  {
    std::lock_guard<std::mutex> lock(detail::g_registry_mu);
    for (detail::GradReducer* r : detail::registry()) r->wait();
  }
  opt_->step();
}

}  // namespace smp
