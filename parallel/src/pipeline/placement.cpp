// The pipeline's placement hook: where each op of a microbatch runs, and the transfers that
// bring its inputs there (forward) and their gradients back (backward).
#include <smp/engine/placement.h>
#include <smp/parallel/runtime.h>
#include <smp/parallel/trace.h>

#include <cstdio>
#include <mutex>
#include <set>
#include <unordered_map>

#include "pipeline/executor.h"
#include "pipeline/pipeline.h"
#include "pipeline/schedule.h"

namespace smp::detail {

namespace {

// Tags on PP_GROUP: one forward and one backward stream per microbatch. Within a stream both
// ends issue their transfers in the same program order, and MPI does not reorder messages of
// one (source, tag), so they pair up without a handshake.
constexpr int kTagBase = 1 << 12;
int forward_tag(int mb) { return kTagBase + 2 * mb; }
int backward_tag(int mb) { return kTagBase + 2 * mb + 1; }

/// Sends still in flight and the tensors they read, kept until the step ends; and whether
/// any value went to an earlier partition.
struct Pending {
  std::mutex mu;
  bool backward_flow = false;
  std::vector<std::pair<WorkPtr, Tensor>> sends;
  void add(WorkPtr w, Tensor t) {
    std::lock_guard<std::mutex> g(mu);
    sends.emplace_back(std::move(w), std::move(t));
  }
  void wait_all() {
    std::lock_guard<std::mutex> g(mu);
    for (auto& [w, t] : sends) w->wait();
    sends.clear();
  }
};

/// Gives a meta tensor real storage on `device` filled by a receive from group rank `src`.
void receive_value(const Tensor& t, Communicator& pp, int src, int tag, Device device, int mb) {
  Tensor buf = empty(t.sizes(), TensorOptions(t.dtype()).device(device));
  {
    trace::Span span(trace::Kind::Recv, "recv", mb, src, static_cast<int64_t>(buf.nbytes()));
    pp.recv(buf, src, tag)->wait();
  }
  materialize(t, buf);
}

class MicrobatchHook final : public PlacementHook {
 public:
  MicrobatchHook(const std::unordered_map<const nn::Module*, int>& units, int mine, int mb,
                 Communicator& pp, Device device, std::shared_ptr<Pending> pending)
      : units_(units),
        mine_(mine),
        mb_(mb),
        pp_(pp),
        device_(device),
        pending_(std::move(pending)) {}

  Placement place(const char* /*op*/, const std::vector<const Tensor*>& inputs) override {
    // A module that owns parameters or buffers computes its own ops; anything else follows
    // its inputs (the first one held by a single partition).
    int exec = -1;
    const auto& stack = nn::current_module_stack();
    if (!stack.empty()) {
      auto it = units_.find(stack.back());
      if (it != units_.end()) exec = it->second;
    }
    if (exec < 0)
      for (const Tensor* t : inputs)
        if (held_by(*t) >= 0) {
          exec = held_by(*t);
          break;
        }
    if (exec < 0) return Placement{-1, true, device_};  // replicated: every rank computes it

    for (const Tensor* t : inputs) {
      const int holder = held_by(*t);
      if (holder < 0 || holder == exec) continue;
      if (holder > exec && (mine_ == exec || mine_ == holder)) pending_->backward_flow = true;
      if (mine_ == exec && t->is_meta()) {
        receive_value(*t, pp_, holder, forward_tag(mb_), device_, mb_);
        if (t->requires_grad()) send_gradient_back(*t, holder);
      } else if (mine_ == holder && sent_.insert({t->unsafe_impl(), exec}).second) {
        Tensor v = t->contiguous();
        trace::Span span(trace::Kind::Send, "send", mb_, exec, static_cast<int64_t>(v.nbytes()));
        pending_->add(pp_.send(v, exec, forward_tag(mb_)), v);
        if (t->requires_grad()) receive_gradient(*t, exec);
      }
    }
    return Placement{exec, mine_ == exec, device_};
  }

 private:
  /// On the executing rank: the gradient of a received input goes back to its holder.
  void send_gradient_back(const Tensor& x, int holder) {
    Communicator* pp = &pp_;
    auto pending = pending_;
    const int tag = backward_tag(mb_), mb = mb_;
    x.register_hook([pp, pending, holder, tag, mb](const Tensor& g) -> Tensor {
      // Tensor hooks run under the placement of x's producer, which ran elsewhere: force
      // real ops for the copy.
      PlacementGuard real(Placement{-1, true});
      Tensor v = g.contiguous();
      trace::Span span(trace::Kind::Send, "send grad", mb, holder,
                       static_cast<int64_t>(v.nbytes()));
      pending->add(pp->send(v, holder, tag), v);
      return g;
    });
  }

  /// On the holder: the gradient computed where the tensor was used is added to its own.
  void receive_gradient(const Tensor& x, int from) {
    Communicator* pp = &pp_;
    const int tag = backward_tag(mb_), mb = mb_;
    const Device device = device_;
    x.register_hook([pp, from, tag, device, mb](const Tensor& g) -> Tensor {
      PlacementGuard real(Placement{-1, true});
      Tensor remote = empty(g.sizes(), TensorOptions(g.dtype()).device(device));
      {
        trace::Span span(trace::Kind::Recv, "recv grad", mb, from,
                         static_cast<int64_t>(remote.nbytes()));
        pp->recv(remote, from, tag)->wait();
      }
      return g.is_meta() ? remote : g + remote;
    });
  }

  const std::unordered_map<const nn::Module*, int>& units_;
  int mine_, mb_;
  Communicator& pp_;
  Device device_;
  std::shared_ptr<Pending> pending_;
  std::set<std::pair<const TensorImpl*, int>> sent_;
};

}  // namespace

void run_pipeline_step(PipelineState& state, int microbatches,
                       const std::function<void(int)>& body) {
  const Config& cfg = config();
  const int pp = pp_size(), mine = pp_rank();
  Communicator& group = comm(CommGroup::PP_GROUP);
  auto pending = std::make_shared<Pending>();
  const bool safe = state.steps == 0 || !state.chain_flow;
  const auto schedule = safe ? pipeline::Schedule::Simple : pipeline::parse_schedule(cfg.pipeline);
  const auto actions =
      pipeline::stage_actions(schedule, pp, mine, microbatches, cfg.active_microbatches_value());
  pipeline::Executor ex([&](int mb) {
    MicrobatchHook hook(state.unit_partition, mine, mb, group, state.device, pending);
    PlacementHook* prev = set_placement_hook(&hook);
    try {
      body(mb);
    } catch (...) {
      set_placement_hook(prev);
      throw;
    }
    set_placement_hook(prev);
  });
  ex.run(actions, microbatches);
  pending->wait_all();
  if (state.steps++ == 0) {
    Tensor flag = full({1}, pending->backward_flow ? 1 : 0, kInt32);
    group.allreduce(flag, ReduceOp::Max)->wait();
    state.chain_flow = flag.item<int>() == 0;
    if (!state.chain_flow && cfg.pipeline != "simple" && rank() == 0)
      std::fprintf(stderr,
                   "smp: the model sends values back to an earlier partition; its steps use the "
                   "simple pipeline schedule (interleaved assumes data flows forward)\n");
  }
}

void share_step_outputs(std::vector<Tensor>& outputs) {
  if (!is_initialized() || pp_size() == 1) return;
  Communicator& group = comm(CommGroup::PP_GROUP);
  const int mine = pp_rank();
  for (Tensor& t : outputs) {
    if (!t.defined()) continue;
    const int holder = held_by(t);
    if (holder < 0) continue;  // every rank computed it
    // Host copies, so ranks computing on different devices can share them.
    Tensor v = holder == mine ? t.detach().to(Device(DeviceType::CPU)).contiguous().clone()
                              : empty(t.sizes(), TensorOptions(t.dtype()));
    group.broadcast(v, holder)->wait();
    t = v;
  }
}

}  // namespace smp::detail
