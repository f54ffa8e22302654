// The backward engine. Nodes run in decreasing creation order, except that leaf
// accumulators run as soon as they are ready (so gradient-ready hooks fire early, which
// DDP's overlap needs). Both rules depend only on the graph, so every process that built
// the same graph runs it in the same order.
#include "ops/op_utils.h"

#include <smp/engine/autograd.h>

#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <queue>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace smp {

namespace {
thread_local bool t_grad_enabled = true;
std::atomic<uint64_t> g_next_sequence{0};
}  // namespace

bool GradMode::is_enabled() { return t_grad_enabled; }
void GradMode::set_enabled(bool enabled) { t_grad_enabled = enabled; }

namespace autograd {

Node::Node() : sequence_nr_(g_next_sequence.fetch_add(1)) {}

std::vector<Tensor> FunctionNode::apply(std::vector<Tensor>&& grad_outputs) {
  SMP_CHECK(fn_ != nullptr,
            "backward through {} a second time: its saved values were freed by the first "
            "backward; pass retain_graph=true to the first call if you need this",
            name_);
  // Ops' backward formulas may assume every output has a gradient: give missing ones zeros.
  for (size_t i = 0; i < grad_outputs.size(); ++i) {
    if (!grad_outputs[i].defined() && i < output_shapes.size())
      grad_outputs[i] = zeros(output_shapes[i], output_options[i]);
  }
  return fn_(grad_outputs);
}

namespace {

/// Accumulates into a leaf's .grad() and fires its post-accumulate hooks.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::string name() const override { return "AccumulateGrad"; }
  bool is_accumulate_grad() const override { return true; }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    Tensor leaf(leaf_);
    Tensor g = std::move(grads[0]);
    auto& meta = *leaf_->autograd;
    for (auto& h : meta.hooks) {
      Tensor r = h(g);
      if (r.defined()) g = r;
    }
    if (!g.defined()) return {};
    NoGradGuard ng;
    if (g.dtype() != leaf.dtype()) g = ops::cast_to(g, leaf.dtype());
    // A meta gradient was computed on another rank: it only fills an empty .grad() (with
    // shapes), and a real one replaces it.
    bool replace = meta.grad.defined() && meta.grad.is_meta() && !g.is_meta();
    if (!meta.grad.defined() || replace) {
      // Take the buffer if nothing else can see it, else copy, so .grad() never aliases
      // another tensor that a later in-place update would also change.
      // A meta gradient has no data to alias (and keeps the partition that computed it).
      bool owned = g.sizes() == leaf.sizes() &&
                   (g.is_meta() || (g.is_contiguous() && g.storage() &&
                                    g.storage().use_count() == 1 && g.impl_ptr().use_count() == 1));
      meta.grad = owned ? g.detach() : g.expand(leaf.sizes()).clone();
    } else if (!g.is_meta()) {
      meta.grad.add_(g);
    }
    for (auto& h : meta.post_accumulate_hooks) h(meta.grad);
    return {};
  }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

}  // namespace

Edge gradient_edge(const Tensor& t) {
  auto* impl = t.unsafe_impl();
  if (!impl || !impl->autograd) return {};
  auto& m = *impl->autograd;
  if (m.grad_fn) return Edge{m.grad_fn, m.output_nr};
  if (!m.requires_grad) return {};
  auto acc = m.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    m.grad_accumulator = acc;
  }
  return Edge{acc, 0};
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const auto& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

std::shared_ptr<Node> record(const std::string& name, const std::vector<Tensor>& inputs,
                             const std::vector<Tensor>& outputs, FunctionNode::BackwardFn backward) {
  if (!any_requires_grad(inputs)) return nullptr;
  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  if (const Placement* p = current_placement()) node->placement = *p;
  auto& edges = node->mutable_next_edges();
  edges.reserve(inputs.size());
  for (const auto& t : inputs) edges.push_back(t.defined() ? gradient_edge(t) : Edge{});
  node->set_num_outputs(static_cast<uint32_t>(outputs.size()));
  for (uint32_t i = 0; i < outputs.size(); ++i) {
    const Tensor& o = outputs[i];
    node->output_shapes.push_back(o.sizes());
    node->output_options.push_back(o.options());
    if (!o.is_floating_point()) continue;  // integer outputs (indices) carry no gradient
    auto* impl = o.unsafe_impl();
    if (!impl->autograd) impl->autograd = std::make_unique<AutogradMeta>();
    impl->autograd->grad_fn = node;
    impl->autograd->output_nr = i;
  }
  return node;
}

namespace {

struct Task {
  uint64_t priority;
  Node* node;
  bool operator<(const Task& o) const { return priority < o.priority; }
};

uint64_t priority_of(const Node* n) {
  return n->is_accumulate_grad() ? UINT64_MAX : n->sequence_nr();
}

// A tensor of t's shape and dtype on meta, in the current placement's partition.
Tensor meta_like(const Tensor& t) { return ops::empty_out(t.sizes(), t.dtype(), Device(kMeta)); }

// Runs a node placed by the pipeline, under a guard of its placement already open. A node that
// ran here gets real gradients (meta gradients would mean the values to differentiate were
// never received); if every gradient it gets is meta, the contributions were all computed on
// other ranks, so its backward runs on meta here. A node that ran elsewhere makes only meta
// gradients, whatever reached it.
std::vector<Tensor> apply_placed(Node& n, Placement p, std::vector<Tensor>&& in) {
  bool any_real = false, any_meta = false;
  for (const auto& g : in) {
    if (!g.defined()) continue;
    (g.is_meta() ? any_meta : any_real) = true;
  }
  if (p.local && any_meta) {
    SMP_CHECK(!any_real,
              "backward: {} ran on this rank (pipeline partition {}) but got a meta gradient for "
              "one output beside real ones for others; gradients computed on another rank must "
              "be received (by a tensor hook) before the node runs",
              n.name(), p.partition);
    p.local = false;
  }
  if (p.local) return n.apply(std::move(in));
  PlacementGuard elsewhere(p);
  for (auto& g : in)
    if (g.defined() && !g.is_meta()) g = meta_like(g);
  std::vector<Tensor> out = n.apply(std::move(in));
  for (auto& g : out)
    if (g.defined() && !g.is_meta()) g = meta_like(g);
  return out;
}

/// The roots' gradient edges and the gradients flowing into them (ones for a one-element
/// root given none).
struct Roots {
  std::vector<Edge> edges;
  std::vector<Tensor> grads;
};
Roots root_gradients(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads) {
  SMP_CHECK(grads.empty() || grads.size() == roots.size(),
            "backward: got {} tensors but {} gradients", roots.size(), grads.size());
  Roots out;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    ops::check_defined(r, "backward", "tensor");
    SMP_CHECK(r.requires_grad(),
              "backward: element {} of the tensors does not require grad and has no grad_fn", i);
    Tensor g = i < grads.size() ? grads[i] : Tensor();
    if (!g.defined()) {
      SMP_CHECK(r.numel() == 1,
                "backward: a gradient can be implied only for one-element outputs; this one has "
                "shape {}, so pass backward(gradient)",
                ops::shape_str(r.sizes()));
      g = ones_like(r);
    } else {
      SMP_CHECK(g.sizes() == r.sizes(),
                "backward: gradient shape {} does not match output shape {}",
                ops::shape_str(g.sizes()), ops::shape_str(r.sizes()));
    }
    out.edges.push_back(gradient_edge(r));
    out.grads.push_back(g);
  }
  return out;
}

/// Runs one node: its pre-hooks on the gradients it receives, then its backward where its
/// forward ran (the pipeline's placement, recorded on the node), then frees what it saved.
std::vector<Tensor> run_node(Node& n, std::vector<Tensor>&& in, bool retain_graph) {
  std::optional<PlacementGuard> placed;
  if (n.placement) placed.emplace(*n.placement);
  for (auto& [nr, hook] : n.pre_hooks) {
    if (nr < in.size() && in[nr].defined()) {
      Tensor r = hook(in[nr]);
      if (r.defined()) in[nr] = r;
    }
  }
  std::vector<Tensor> out =
      n.placement ? apply_placed(n, *n.placement, std::move(in)) : n.apply(std::move(in));
  if (!retain_graph) n.release_variables();
  return out;
}

/// One backward pass over the graph reachable from the roots: the graph walk (dependency
/// counts, and with captures the nodes that lead to them), then the run in priority order,
/// summing the gradients that meet at a node's input.
class GraphTask {
 public:
  GraphTask(const std::vector<Edge>& root_edges, const std::vector<Edge>* captures)
      : captures_(captures) {
    count_dependencies(root_edges);
    if (captures_) mark_needed();
  }

  std::vector<Tensor> run(const Roots& roots, bool retain_graph) {
    for (size_t i = 0; i < roots.edges.size(); ++i)
      deliver(roots.edges[i].node.get(), roots.edges[i].input_nr, roots.grads[i]);
    std::priority_queue<Task> ready;
    std::unordered_set<Node*> queued;
    for (auto& e : roots.edges)
      if (deps_[e.node.get()] == 0 && queued.insert(e.node.get()).second)
        ready.push({priority_of(e.node.get()), e.node.get()});
    // Keep nodes alive while we run, even if the roots' handles are the only owners.
    std::vector<std::shared_ptr<Node>> keep;
    for (auto& e : roots.edges) keep.push_back(e.node);

    while (!ready.empty()) {
      Node* n = ready.top().node;
      ready.pop();
      std::vector<Tensor> in = std::move(buffers_[n]);
      buffers_.erase(n);
      in.resize(n->num_outputs());
      const bool run = !captures_ || needed_.count(n);
      std::vector<Tensor> out;
      if (run) out = run_node(*n, std::move(in), retain_graph);
      const auto& edges = n->next_edges();
      for (size_t i = 0; i < edges.size(); ++i) {
        const Edge& e = edges[i];
        if (!e.valid()) continue;
        Node* next = e.node.get();
        if (run && i < out.size() && out[i].defined()) deliver(next, e.input_nr, out[i]);
        if (--deps_[next] == 0) {
          keep.push_back(e.node);
          if (queued.insert(next).second) ready.push({priority_of(next), next});
        }
      }
    }
    return std::move(captured_);
  }

 private:
  /// How many edges point at each reachable node.
  void count_dependencies(const std::vector<Edge>& root_edges) {
    std::vector<Node*> stack;
    for (auto& e : root_edges)
      if (seen_.insert(e.node.get()).second) stack.push_back(e.node.get());
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      for (auto& e : n->next_edges()) {
        if (!e.valid()) continue;
        ++deps_[e.node.get()];
        if (seen_.insert(e.node.get()).second) stack.push_back(e.node.get());
      }
    }
  }

  /// With captures, only nodes from which a captured edge can be reached run.
  void mark_needed() {
    captured_.resize(captures_->size());
    for (size_t i = 0; i < captures_->size(); ++i)
      capture_index_[{(*captures_)[i].node.get(), (*captures_)[i].input_nr}] = i;
    std::unordered_map<Node*, bool> memo;
    std::function<bool(Node*)> leads = [&](Node* n) -> bool {
      auto it = memo.find(n);
      if (it != memo.end()) return it->second;
      memo[n] = false;
      bool r = false;
      for (auto& e : n->next_edges()) {
        if (!e.valid()) continue;
        if (capture_index_.count({e.node.get(), e.input_nr})) r = true;
        if (leads(e.node.get())) r = true;
      }
      memo[n] = r;
      if (r) needed_.insert(n);
      return r;
    };
    for (Node* n : seen_) leads(n);
  }

  /// A gradient arriving at input `nr` of `n`: captured if asked for, and summed into the
  /// node's buffer.
  void deliver(Node* n, uint32_t nr, const Tensor& g) {
    if (captures_) {
      auto it = capture_index_.find({n, nr});
      if (it != capture_index_.end()) {
        Tensor& c = captured_[it->second];
        c = c.defined() ? ops::sum_gradients(c, g) : g;
      }
    }
    auto& buf = buffers_[n];
    if (buf.size() < n->num_outputs()) buf.resize(std::max<uint32_t>(n->num_outputs(), nr + 1));
    if (!buf[nr].defined())
      buf[nr] = g;
    else
      buf[nr] = ops::sum_gradients(buf[nr], g);
  }

  const std::vector<Edge>* captures_;
  std::unordered_map<Node*, int> deps_;
  std::unordered_set<Node*> seen_;
  std::unordered_set<Node*> needed_;
  std::map<std::pair<Node*, uint32_t>, size_t> capture_index_;
  std::vector<Tensor> captured_;
  std::unordered_map<Node*, std::vector<Tensor>> buffers_;
};

// Shared walk for backward() and grad(). With `captures`, the gradients arriving at those
// edges are returned instead of flowing further, and only nodes leading to them run.
std::vector<Tensor> run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                                 bool retain_graph, const std::vector<Edge>* captures) {
  NoGradGuard no_grad;  // backward formulas are not themselves recorded
  // Placement was decided in forward: nodes carry it, and the engine's own sums never ask.
  detail::PlacementSuspend unplaced;
  const Roots r = root_gradients(roots, grads);
  return GraphTask(r.edges, captures).run(r, retain_graph);
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
              bool retain_graph) {
  run_backward(roots, grads, retain_graph, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph,
                         bool allow_unused) {
  std::vector<Edge> edges;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Edge e = gradient_edge(inputs[i]);
    SMP_CHECK(e.valid(), "grad: input {} does not require grad", i);
    edges.push_back(e);
  }
  auto result = run_backward(outputs, grad_outputs, retain_graph, &edges);
  for (size_t i = 0; i < result.size(); ++i)
    SMP_CHECK(allow_unused || result[i].defined(),
              "grad: input {} was not used to compute the outputs; pass allow_unused=true", i);
  return result;
}

}  // namespace autograd
}  // namespace smp
