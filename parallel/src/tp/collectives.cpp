// Tensor-parallel collectives as autograd ops (see collectives.h).
#include "tp/collectives.h"

#include <smp/engine/autograd.h>
#include <smp/engine/custom_op.h>
#include <smp/parallel/runtime.h>

#include <atomic>
#include <functional>

#include "comm/backend.h"

namespace smp::detail::tp {

namespace {

struct AtomicStats {
  std::atomic<int64_t> all_reduce{0}, all_gather{0}, reduce_scatter{0}, all_to_all{0}, bytes{0};
  CommStats load() const {
    return {all_reduce.load(), all_gather.load(), reduce_scatter.load(), all_to_all.load(),
            bytes.load()};
  }
  void reset() {
    all_reduce = 0;
    all_gather = 0;
    reduce_scatter = 0;
    all_to_all = 0;
    bytes = 0;
  }
};
AtomicStats g_forward, g_backward;

enum class Kind { AllReduce, AllGather, ReduceScatter, AllToAll };

void count(Kind k, bool backward, int64_t bytes) {
  AtomicStats& s = backward ? g_backward : g_forward;
  switch (k) {
    case Kind::AllReduce:
      ++s.all_reduce;
      break;
    case Kind::AllGather:
      ++s.all_gather;
      break;
    case Kind::ReduceScatter:
      ++s.reduce_scatter;
      break;
    case Kind::AllToAll:
      ++s.all_to_all;
      break;
  }
  s.bytes += bytes;
}

Communicator& group() { return comm(CommGroup::TP_GROUP); }

int64_t norm_dim(const Tensor& x, int64_t dim) {
  const int64_t n = x.dim();
  const int64_t d = dim < 0 ? dim + n : dim;
  SMP_CHECK(d >= 0 && d < n,
            "tensor parallelism: dimension {} is out of range for a tensor of {} "
            "dimensions",
            dim, n);
  return d;
}

// The collectives themselves, on real tensors, without autograd.

Tensor allreduce_sum(const Tensor& x, bool backward) {
  Tensor t = x.contiguous().clone();
  count(Kind::AllReduce, backward, static_cast<int64_t>(t.nbytes()));
  group().allreduce(t, ReduceOp::Sum)->wait();
  return t;
}

Tensor allgather_dim(const Tensor& x, int64_t dim, bool backward) {
  Communicator& c = group();
  const int n = c.size();
  Tensor in = x.contiguous();
  count(Kind::AllGather, backward, static_cast<int64_t>(in.nbytes()));
  Shape shape = in.sizes();
  if (dim == 0) {
    // Rows of one buffer: MPI writes each rank's block in place.
    shape[0] *= n;
    Tensor out = empty(shape, in.options());
    std::vector<Tensor> parts = out.chunk(n, 0);
    c.allgather(in, parts)->wait();
    return out;
  }
  std::vector<Tensor> parts;
  for (int i = 0; i < n; ++i) parts.push_back(empty(shape, in.options()));
  c.allgather(in, parts)->wait();
  return cat(parts, dim);
}

Tensor reduce_scatter_dim(const Tensor& x, int64_t dim, bool backward) {
  Communicator& c = group();
  const int n = c.size();
  SMP_CHECK(x.size(dim) % n == 0,
            "tensor parallelism: cannot reduce-scatter {} elements of dimension {} over {} ranks",
            x.size(dim), dim, n);
  count(Kind::ReduceScatter, backward, static_cast<int64_t>(x.nbytes()));
  std::vector<Tensor> ins;
  for (const Tensor& part : x.chunk(n, dim)) ins.push_back(part.contiguous());
  Tensor out = empty(ins[0].sizes(), ins[0].options());
  c.reduce_scatter(ins, out, ReduceOp::Sum)->wait();
  return out;
}

Tensor alltoall_dims(const Tensor& x, int64_t split_dim, int64_t cat_dim, bool backward) {
  Communicator& c = group();
  const int n = c.size();
  SMP_CHECK(x.size(split_dim) % n == 0,
            "tensor parallelism: cannot split {} elements of dimension {} over {} ranks",
            x.size(split_dim), split_dim, n);
  count(Kind::AllToAll, backward, static_cast<int64_t>(x.nbytes()));
  std::vector<Tensor> ins, outs;
  for (const Tensor& part : x.chunk(n, split_dim)) ins.push_back(part.contiguous());
  for (int i = 0; i < n; ++i) outs.push_back(empty(ins[0].sizes(), ins[0].options()));
  c.all_to_all(ins, outs)->wait();
  return cat(outs, cat_dim);
}

Tensor own_slice(const Tensor& x, int64_t dim) {
  const int n = tp_size();
  SMP_CHECK(x.size(dim) % n == 0,
            "tensor parallelism: cannot split {} elements of dimension {} over {} ranks",
            x.size(dim), dim, n);
  const int64_t len = x.size(dim) / n;
  return x.narrow(dim, tp_rank() * len, len).contiguous();
}

Shape with_dim(Shape s, int64_t dim, int64_t size) {
  s[static_cast<size_t>(dim)] = size;
  return s;
}

/// One collective as one op: `fwd` maps the input to the output on the ranks that compute the
/// op (the others make a meta tensor of `out_shape`), `bwd` maps the output's gradient to the
/// input's.
Tensor collective_op(const char* name, const Tensor& x, const Shape& out_shape,
                     const std::function<Tensor(const Tensor&)>& fwd,
                     std::function<Tensor(const Tensor&)> bwd) {
  CustomOpScope scope(name, {x});
  Tensor out;
  {
    NoGradGuard no_grad;
    out =
        scope.computes_here() && !x.is_meta() ? fwd(x) : empty(out_shape, TensorOptions(x.dtype()));
  }
  const Shape in_shape = x.sizes();
  const Dtype dtype = x.dtype();
  autograd::record(name, {x}, {out},
                   [bwd = std::move(bwd), in_shape, dtype](const std::vector<Tensor>& g) {
                     if (!g[0].defined()) return std::vector<Tensor>{Tensor()};
                     NoGradGuard no_grad;
                     // On another stage's rank the node runs on meta: shapes only, no traffic.
                     if (!CustomOpScope::placement_computes_here() || g[0].is_meta())
                       return std::vector<Tensor>{empty(in_shape, TensorOptions(dtype))};
                     return std::vector<Tensor>{bwd(g[0])};
                   });
  return out;
}

}  // namespace

CommStats forward_stats() { return g_forward.load(); }
CommStats backward_stats() { return g_backward.load(); }
void reset_stats() {
  g_forward.reset();
  g_backward.reset();
}

Tensor copy_to_region(const Tensor& x) {
  return collective_op(
      "tp_copy_to_region", x, x.sizes(), [](const Tensor& v) { return v.detach(); },
      [](const Tensor& g) { return allreduce_sum(g, true); });
}

Tensor reduce_from_region(const Tensor& x) {
  return collective_op(
      "tp_reduce_from_region", x, x.sizes(),
      [](const Tensor& v) { return allreduce_sum(v, false); }, [](const Tensor& g) { return g; });
}

Tensor gather_from_region(const Tensor& x, int64_t dim) {
  const int64_t d = norm_dim(x, dim);
  return collective_op(
      "tp_gather_from_region", x, with_dim(x.sizes(), d, x.size(d) * tp_size()),
      [d](const Tensor& v) { return allgather_dim(v, d, false); },
      [d](const Tensor& g) { return own_slice(g, d); });
}

Tensor scatter_to_region(const Tensor& x, int64_t dim) {
  const int64_t d = norm_dim(x, dim);
  SMP_CHECK(x.size(d) % tp_size() == 0,
            "tensor parallelism: dimension {} of size {} does not split over {} ranks", d,
            x.size(d), tp_size());
  return collective_op(
      "tp_scatter_to_region", x, with_dim(x.sizes(), d, x.size(d) / tp_size()),
      [d](const Tensor& v) { return own_slice(v, d); },
      [d](const Tensor& g) { return allgather_dim(g, d, true); });
}

Tensor all_gather(const Tensor& x, int64_t dim) {
  const int64_t d = norm_dim(x, dim);
  return collective_op(
      "tp_all_gather", x, with_dim(x.sizes(), d, x.size(d) * tp_size()),
      [d](const Tensor& v) { return allgather_dim(v, d, false); },
      [d](const Tensor& g) { return reduce_scatter_dim(g, d, true); });
}

Tensor reduce_scatter(const Tensor& x, int64_t dim) {
  const int64_t d = norm_dim(x, dim);
  SMP_CHECK(x.size(d) % tp_size() == 0,
            "tensor parallelism: dimension {} of size {} does not split over {} ranks", d,
            x.size(d), tp_size());
  return collective_op(
      "tp_reduce_scatter", x, with_dim(x.sizes(), d, x.size(d) / tp_size()),
      [d](const Tensor& v) { return reduce_scatter_dim(v, d, false); },
      [d](const Tensor& g) { return allgather_dim(g, d, true); });
}

Tensor all_to_all(const Tensor& x, int64_t split_dim, int64_t cat_dim) {
  const int64_t s = norm_dim(x, split_dim), c = norm_dim(x, cat_dim);
  const int n = tp_size();
  SMP_CHECK(x.size(s) % n == 0,
            "tensor parallelism: dimension {} of size {} does not split over {} ranks", s,
            x.size(s), n);
  Shape out = x.sizes();
  out[static_cast<size_t>(s)] /= n;
  out[static_cast<size_t>(c)] *= n;
  return collective_op(
      "tp_all_to_all", x, out, [s, c](const Tensor& v) { return alltoall_dims(v, s, c, false); },
      [s, c](const Tensor& g) { return alltoall_dims(g, c, s, true); });
}

Tensor gather_values(const Tensor& x, int64_t dim) {
  const int64_t d = norm_dim(x, dim);
  CustomOpScope scope("tp_gather_values", {x});
  NoGradGuard no_grad;
  if (!scope.computes_here() || x.is_meta())
    return empty(with_dim(x.sizes(), d, x.size(d) * tp_size()), TensorOptions(x.dtype()));
  return allgather_dim(x, d, false);
}

Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& target,
                                    int64_t ignore_index) {
  SMP_CHECK(logits.dim() == 2 && target.dim() == 1 && target.size(0) == logits.size(0),
            "vocab_parallel_cross_entropy: wants logits [N, V/tp] and targets [N], got {} and {} "
            "dimensions",
            logits.dim(), target.dim());
  CustomOpScope scope("tp_vocab_parallel_cross_entropy", {logits, target});
  const int64_t n = logits.size(0), part = logits.size(1);
  Tensor loss, softmax_local, valid, local_target;
  {
    NoGradGuard no_grad;
    if (!scope.computes_here() || logits.is_meta()) {
      loss = empty({n}, TensorOptions(logits.dtype()));
    } else {
      Communicator& c = group();
      const int64_t offset = tp_rank() * part;
      // Each step reduces N numbers over the group: the largest logit, the sum of
      // exponentials after subtracting it, and the target's logit (held by one rank).
      Tensor mx = logits.amax({1}).contiguous();
      count(Kind::AllReduce, false, static_cast<int64_t>(mx.nbytes()));
      c.allreduce(mx, ReduceOp::Max)->wait();
      Tensor e = (logits - mx.unsqueeze(1)).exp();
      Tensor sum_e = e.sum({1}).contiguous();
      count(Kind::AllReduce, false, static_cast<int64_t>(sum_e.nbytes()));
      c.allreduce(sum_e, ReduceOp::Sum)->wait();
      local_target = target - offset;
      Tensor in_range = local_target.ge(0) * local_target.lt(part);
      Tensor onehot = arange(part, TensorOptions(kInt64).device(logits.device()))
                          .unsqueeze(0)
                          .eq(local_target.unsqueeze(1))
                          .to(logits.dtype());
      Tensor picked = (logits * onehot).sum({1}).mul(in_range.to(logits.dtype())).contiguous();
      count(Kind::AllReduce, false, static_cast<int64_t>(picked.nbytes()));
      c.allreduce(picked, ReduceOp::Sum)->wait();
      valid = target.ne(ignore_index).to(logits.dtype());
      loss = (sum_e.log() + mx - picked) * valid;
      softmax_local = e / sum_e.unsqueeze(1);
      local_target = onehot;
    }
  }
  const Shape shape = logits.sizes();
  const Dtype dtype = logits.dtype();
  autograd::record(
      "tp_vocab_parallel_cross_entropy", {logits, target}, {loss},
      [softmax_local, onehot = local_target, valid, shape, dtype](const std::vector<Tensor>& g) {
        if (!g[0].defined()) return std::vector<Tensor>{Tensor(), Tensor()};
        NoGradGuard no_grad;
        if (!CustomOpScope::placement_computes_here() || g[0].is_meta())
          return std::vector<Tensor>{empty(shape, TensorOptions(dtype)), Tensor()};
        // d loss_i / d logit_ij = softmax_ij - [j == target_i], local classes only.
        Tensor scale = (g[0] * valid).unsqueeze(1);
        return std::vector<Tensor>{(softmax_local - onehot) * scale, Tensor()};
      });
  return loss;
}

}  // namespace smp::detail::tp
