// The MPI communicator: host tensors, one nonblocking MPI call per operation.
//
// Reductions use MPI's own types (float32, float64, int64, int32, uint8; bool as uint8 where
// Sum and Max are logical or, Min logical and); float16 and bfloat16 are reduced in a float32
// copy and rounded back. Avg is Sum followed by a division by the group size, for
// floating-point tensors only. Data movement (broadcast, allgather, all_to_all, send/recv)
// copies bytes, so any dtype works. The "v" collectives want one buffer with displacements:
// when the caller's tensors are views of one storage (say, the pieces of split()) MPI reads
// or writes them in place, otherwise they go through a staging buffer. Counts and
// displacements are ints of bytes, so one call moves less than 2 GiB per buffer.
#include <smp/engine/dtype.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <numeric>

#include "comm/backend.h"
#include "comm/checks.h"
#include "comm/progress.h"
#include "comm/reduce.h"

namespace smp::detail {

namespace {

bool is_half(Dtype d) { return d == kFloat16 || d == kBFloat16; }

MPI_Datatype mpi_type(Dtype d) {
  switch (d) {
    case kFloat32:
      return MPI_FLOAT;
    case kFloat64:
      return MPI_DOUBLE;
    case kInt64:
      return MPI_INT64_T;
    case kInt32:
      return MPI_INT32_T;
    case kUInt8:
    case kBool:
      return MPI_UINT8_T;
    default:
      break;
  }
  throw CommError(fmt::format("smp: no MPI type for dtype {}", dtype_name(d)));
}

MPI_Op mpi_op(Dtype d, ReduceOp op) {
  // Avg: the sum, divided by the group size once it arrives.
  return transport_op(d, op, TransportOps<MPI_Op>{MPI_SUM, MPI_MAX, MPI_MIN, MPI_SUM});
}

// check_tensor for this backend, as the argument checks shared with NCCL take it.
void check_cpu_tensor(const OpContext& c, const Tensor& t, const std::string& what) {
  check_tensor(c, t, what, false);
}

int to_int(const OpContext& c, size_t n, const char* what) {
  if (n > static_cast<size_t>(INT_MAX))
    misuse(c, fmt::format("{} is {} (bytes or elements); the MPI backend moves less than 2^31 per "
                          "buffer in one call, split the tensor",
                          what, n));
  return static_cast<int>(n);
}

// Reads t (contiguous) as float32 into dst.
void widen(const Tensor& t, float* dst) {
  const int64_t n = t.numel();
  if (n == 0) return;
  if (t.dtype() == kFloat16) {
    const auto* s = reinterpret_cast<const Half*>(raw_ptr(t));
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
  } else {
    const auto* s = reinterpret_cast<const BFloat16*>(raw_ptr(t));
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
  }
}

// Writes float32 src back into t's half-precision elements.
void narrow_into(const float* src, const Tensor& t) {
  const int64_t n = t.numel();
  if (n == 0) return;
  if (t.dtype() == kFloat16) {
    auto* d = reinterpret_cast<Half*>(raw_ptr(t));
    for (int64_t i = 0; i < n; ++i) d[i] = Half(src[i]);
  } else {
    auto* d = reinterpret_cast<BFloat16*>(raw_ptr(t));
    for (int64_t i = 0; i < n; ++i) d[i] = BFloat16(src[i]);
  }
}

// buf[i] /= divisor over a float32 or float64 buffer.
void divide(char* buf, int64_t n, Dtype d, int divisor) {
  if (n == 0) return;
  if (d == kFloat32) {
    auto* p = reinterpret_cast<float*>(buf);
    const auto q = static_cast<float>(divisor);
    for (int64_t i = 0; i < n; ++i) p[i] /= q;
  } else {
    auto* p = reinterpret_cast<double*>(buf);
    const auto q = static_cast<double>(divisor);
    for (int64_t i = 0; i < n; ++i) p[i] /= q;
  }
}

bool overlaps(const char* a, size_t an, const char* b, size_t bn) {
  if (a == nullptr || b == nullptr || an == 0 || bn == 0) return false;
  return a < b + bn && b < a + an;
}

// One buffer plus byte displacements for a list of tensors, as the "v" collectives want.
struct Layout {
  char* base = nullptr;
  std::vector<int> counts;  // bytes
  std::vector<int> displs;  // bytes from base
  Tensor staging;           // defined when the tensors are copied through it
  size_t extent = 0;        // bytes from base to the end of the last tensor

  bool staged() const { return staging.defined(); }
};

// Direct layout when every non-empty tensor lives in one storage without overlaps (and, for
// `consecutive`, back to back in list order); nullopt otherwise.
std::optional<Layout> direct_layout(const OpContext& c, const std::vector<Tensor>& ts,
                                    bool consecutive) {
  struct Piece {
    char* p;
    size_t n;
    size_t i;
  };
  std::vector<Piece> pieces;
  const Storage* storage = nullptr;
  for (size_t i = 0; i < ts.size(); ++i) {
    char* p = raw_ptr(ts[i]);
    if (p == nullptr) continue;
    if (storage != nullptr && ts[i].storage().get() != storage) return std::nullopt;
    storage = ts[i].storage().get();
    pieces.push_back({p, ts[i].nbytes(), i});
  }
  Layout l;
  l.counts.assign(ts.size(), 0);
  l.displs.assign(ts.size(), 0);
  if (pieces.empty()) return l;
  std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) { return a.p < b.p; });
  for (size_t k = 0; k + 1 < pieces.size(); ++k) {
    if (pieces[k].p + pieces[k].n > pieces[k + 1].p) return std::nullopt;
    if (consecutive &&
        (pieces[k].p + pieces[k].n != pieces[k + 1].p || pieces[k].i > pieces[k + 1].i))
      return std::nullopt;
  }
  l.base = pieces.front().p;
  l.extent = static_cast<size_t>(pieces.back().p + pieces.back().n - l.base);
  if (l.extent > static_cast<size_t>(INT_MAX)) return std::nullopt;
  for (const auto& pc : pieces) {
    l.counts[pc.i] = static_cast<int>(pc.n);
    l.displs[pc.i] = static_cast<int>(pc.p - l.base);
  }
  return l;
}

Layout staged_layout(const OpContext& c, const std::vector<Tensor>& ts, const char* what) {
  Layout l;
  size_t total = 0;
  for (const auto& t : ts) {
    l.counts.push_back(to_int(c, t.nbytes(), what));
    l.displs.push_back(to_int(c, total, what));
    total += t.nbytes();
  }
  to_int(c, total, what);
  l.staging = empty({static_cast<int64_t>(total)}, TensorOptions(kUInt8));
  l.base = raw_ptr(l.staging);
  l.extent = total;
  return l;
}

void pack(const Layout& l, const std::vector<Tensor>& ts) {
  for (size_t i = 0; i < ts.size(); ++i)
    if (l.counts[i] > 0) std::memcpy(l.base + l.displs[i], raw_ptr(ts[i]), l.counts[i]);
}

void unpack(const Layout& l, const std::vector<Tensor>& ts) {
  for (size_t i = 0; i < ts.size(); ++i)
    if (l.counts[i] > 0) std::memcpy(raw_ptr(ts[i]), l.base + l.displs[i], l.counts[i]);
}

/// Communicator over an MPI communicator it owns.
class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::string name, std::vector<int> world_ranks)
      : comm_(comm), name_(std::move(name)), world_ranks_(std::move(world_ranks)) {
    std::lock_guard<std::mutex> lk(mpi_mutex());
    // Errors become CommError instead of aborting the job.
    check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    void* ub = nullptr;
    int flag = 0;
    if (MPI_Comm_get_attr(comm_, MPI_TAG_UB, &ub, &flag) == MPI_SUCCESS && flag && ub)
      tag_ub_ = *static_cast<int*>(ub);
    if (world_ranks_.size() != static_cast<size_t>(size_))
      throw CommError(fmt::format(
          "smp: communicator {}: {} world ranks given ({}) for an MPI communicator of size {}",
          name_, world_ranks_.size(), format_ranks(world_ranks_), size_));
    desc_ = fmt::format("{} {}", name_, format_ranks(world_ranks_));
  }

  ~MpiCommunicator() override {
    std::lock_guard<std::mutex> lk(mpi_mutex());
    // A destructor cannot fail: if MPI cannot say whether it is still up, leave it alone.
    int finalized = 0;
    if (MPI_Finalized(&finalized) != MPI_SUCCESS) finalized = 1;
    // Pending operations still complete: MPI frees the communicator after them.
    if (!finalized && comm_ != MPI_COMM_NULL) (void)MPI_Comm_free(&comm_);
  }

  const std::string& name() const override { return name_; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }

  WorkPtr allreduce(Tensor& t, ReduceOp op) override {
    OpContext c{"allreduce", desc_, "MPI"};
    check_tensor(c, t, "the tensor", false);
    check_reduce_dtype(c, t.dtype(), op);
    const int n = to_int(c, static_cast<size_t>(t.numel()), "the element count");
    auto s = collective("allreduce",
                        fmt::format("{} {} elements, {}", n, dtype_name(t.dtype()), to_string(op)));
    s->bytes = static_cast<long long>(t.nbytes());
    const bool widened = is_half(t.dtype());
    Tensor buf = t;
    if (widened) {
      buf = empty({t.numel()}, TensorOptions(kFloat32));
      widen(t, static_cast<float*>(static_cast<void*>(raw_ptr(buf))));
    }
    if (op == ReduceOp::Avg || widened) {
      s->finish = [t, buf, op, widened, size = size_](const MPI_Status&) {
        if (op == ReduceOp::Avg) divide(raw_ptr(buf), buf.numel(), buf.dtype(), size);
        if (widened) narrow_into(reinterpret_cast<const float*>(raw_ptr(buf)), t);
        return std::string();
      };
    }
    s->keep = {t, buf};
    char* p = raw_ptr(buf);
    MPI_Datatype dt = mpi_type(buf.dtype());
    MPI_Op mop = mpi_op(t.dtype(), op);
    return post(s, [=, this](MPI_Request* r) {
      return MPI_Iallreduce(MPI_IN_PLACE, p, n, dt, mop, comm_, r);
    });
  }

  WorkPtr broadcast(Tensor& t, int root) override {
    OpContext c{"broadcast", desc_, "MPI"};
    check_tensor(c, t, "the tensor", false);
    check_root(c, root, size_, "root");
    const int n = to_int(c, t.nbytes(), "the tensor's size");
    auto s = collective("broadcast", fmt::format("root {}, {} bytes", world_ranks_[root], n));
    s->bytes = n;
    s->keep = {t};
    char* p = raw_ptr(t);
    return post(s,
                [=, this](MPI_Request* r) { return MPI_Ibcast(p, n, MPI_BYTE, root, comm_, r); });
  }

  WorkPtr allgather(const Tensor& input, std::vector<Tensor>& outputs) override {
    OpContext c{"allgather", desc_, "MPI"};
    check_tensor(c, input, "the input", false);
    check_list_size(c, outputs.size(), size_, "outputs");
    for (int i = 0; i < size_; ++i) {
      check_tensor(c, outputs[i], fmt::format("outputs[{}]", i), false);
      check_same_dtype(c, outputs[i], input.dtype(), fmt::format("outputs[{}]", i));
    }
    if (outputs[rank_].numel() != input.numel())
      misuse(c, fmt::format("outputs[{}] (this rank's slot) has {} elements but the input has {}",
                            rank_, outputs[rank_].numel(), input.numel()));
    const int send_n = to_int(c, input.nbytes(), "the input's size");

    auto s = collective("allgather", fmt::format("{} bytes from this rank", send_n));
    s->bytes = send_n;
    std::optional<Layout> direct = direct_layout(c, outputs, false);
    Layout recv = direct ? std::move(*direct) : staged_layout(c, outputs, "the gathered size");
    Tensor send = input;
    bool in_place = false;
    if (!recv.staged() && send_n > 0) {
      if (raw_ptr(input) == recv.base + recv.displs[rank_])
        in_place = true;
      else if (overlaps(raw_ptr(input), input.nbytes(), recv.base, recv.extent))
        send = input.clone();
    }
    if (recv.staged()) {
      s->finish = [recv, outs = outputs](const MPI_Status&) {
        unpack(recv, outs);
        return std::string();
      };
    }
    s->keep = outputs;
    s->keep.push_back(input);
    s->keep.push_back(send);
    s->keep.push_back(recv.staging);
    s->arrays = {recv.counts, recv.displs};
    const int* counts = s->arrays[0].data();
    const int* displs = s->arrays[1].data();
    const void* sp = in_place ? MPI_IN_PLACE : static_cast<const void*>(raw_ptr(send));
    char* rb = recv.base;
    return post(s, [=, this](MPI_Request* r) {
      return MPI_Iallgatherv(sp, send_n, MPI_BYTE, rb, counts, displs, MPI_BYTE, comm_, r);
    });
  }

  WorkPtr reduce_scatter(const std::vector<Tensor>& inputs, Tensor& output, ReduceOp op) override {
    OpContext c{"reduce_scatter", desc_, "MPI"};
    check_reduce_scatter_args(c, inputs, output, op, rank_, size_, check_cpu_tensor);
    const bool widened = is_half(output.dtype());
    const Dtype rd = widened ? kFloat32 : output.dtype();
    const size_t esize = element_size(rd);

    std::vector<int> counts;
    size_t total = 0;
    for (const auto& t : inputs) {
      counts.push_back(to_int(c, static_cast<size_t>(t.numel()), "an input's element count"));
      total += static_cast<size_t>(t.numel());
    }
    to_int(c, total, "the total element count");
    auto s = collective("reduce_scatter",
                        fmt::format("{} elements into this rank, {}, {}", output.numel(),
                                    dtype_name(output.dtype()), to_string(op)));
    // Send side: one buffer with the pieces back to back in rank order.
    Tensor send_buf;
    char* send_p = nullptr;
    std::optional<Layout> direct;
    if (!widened) direct = direct_layout(c, inputs, true);
    if (direct) {
      send_p = direct->base;
    } else {
      send_buf = empty({static_cast<int64_t>(total)}, TensorOptions(rd));
      send_p = raw_ptr(send_buf);
      size_t off = 0;
      for (const auto& t : inputs) {
        if (t.numel() == 0) continue;
        if (widened)
          widen(t, reinterpret_cast<float*>(send_p + off * esize));
        else
          std::memcpy(send_p + off * esize, raw_ptr(t), t.nbytes());
        off += static_cast<size_t>(t.numel());
      }
    }
    // Receive side: the output itself unless it needs widening or overlaps the send buffer.
    Tensor recv_buf = output;
    if (widened || overlaps(raw_ptr(output), output.nbytes(), send_p, total * esize))
      recv_buf = empty({output.numel()}, TensorOptions(rd));
    if (op == ReduceOp::Avg || !recv_buf.is_same(output)) {
      s->finish = [output, recv_buf, op, widened, size = size_](const MPI_Status&) {
        if (op == ReduceOp::Avg)
          divide(raw_ptr(recv_buf), recv_buf.numel(), recv_buf.dtype(), size);
        if (widened)
          narrow_into(reinterpret_cast<const float*>(raw_ptr(recv_buf)), output);
        else if (!recv_buf.is_same(output) && output.numel() > 0)
          std::memcpy(raw_ptr(output), raw_ptr(recv_buf), output.nbytes());
        return std::string();
      };
    }
    s->keep = inputs;
    s->keep.push_back(output);
    s->keep.push_back(send_buf);
    s->keep.push_back(recv_buf);
    s->arrays = {std::move(counts)};
    const int* rc = s->arrays[0].data();
    char* rp = raw_ptr(recv_buf);
    MPI_Datatype dt = mpi_type(rd);
    MPI_Op mop = mpi_op(output.dtype(), op);
    return post(s, [=, this](MPI_Request* r) {
      return MPI_Ireduce_scatter(send_p, rp, rc, dt, mop, comm_, r);
    });
  }

  WorkPtr all_to_all(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) override {
    OpContext c{"all_to_all", desc_, "MPI"};
    const Dtype d = check_all_to_all_args(c, inputs, outputs, rank_, size_, check_cpu_tensor);
    auto s = collective("all_to_all", dtype_name(d));

    std::optional<Layout> sd = direct_layout(c, inputs, false);
    Layout send = sd ? std::move(*sd) : staged_layout(c, inputs, "the total sent");
    if (send.staged()) pack(send, inputs);
    std::optional<Layout> rd = direct_layout(c, outputs, false);
    if (rd && overlaps(rd->base, rd->extent, send.base, send.extent)) rd.reset();
    Layout recv = rd ? std::move(*rd) : staged_layout(c, outputs, "the total received");
    if (recv.staged()) {
      s->finish = [recv, outs = outputs](const MPI_Status&) {
        unpack(recv, outs);
        return std::string();
      };
    }
    s->keep = inputs;
    s->keep.insert(s->keep.end(), outputs.begin(), outputs.end());
    s->keep.push_back(send.staging);
    s->keep.push_back(recv.staging);
    s->arrays = {send.counts, send.displs, recv.counts, recv.displs};
    const int* sc = s->arrays[0].data();
    const int* sdp = s->arrays[1].data();
    const int* rc = s->arrays[2].data();
    const int* rdp = s->arrays[3].data();
    char* sb = send.base;
    char* rb = recv.base;
    return post(s, [=, this](MPI_Request* r) {
      return MPI_Ialltoallv(sb, sc, sdp, MPI_BYTE, rb, rc, rdp, MPI_BYTE, comm_, r);
    });
  }

  WorkPtr send(const Tensor& t, int dst, int tag) override {
    OpContext c{"send", desc_, "MPI"};
    check_tensor(c, t, "the tensor", false);
    check_root(c, dst, size_, "destination");
    check_tag(c, tag);
    const int n = to_int(c, t.nbytes(), "the tensor's size");
    auto s = p2p("send", dst, tag, n);
    s->keep = {t};
    char* p = raw_ptr(t);
    return post(
        s, [=, this](MPI_Request* r) { return MPI_Isend(p, n, MPI_BYTE, dst, tag, comm_, r); });
  }

  WorkPtr recv(Tensor& t, int src, int tag) override {
    OpContext c{"recv", desc_, "MPI"};
    check_tensor(c, t, "the tensor", false);
    check_root(c, src, size_, "source");
    check_tag(c, tag);
    const int n = to_int(c, t.nbytes(), "the tensor's size");
    auto s = p2p("recv", src, tag, n);
    s->keep = {t};
    s->finish = [n,
                 what = fmt::format("smp: recv on {} from peer rank {} (global), tag {}", desc_,
                                    world_ranks_[src], tag),
                 shape = fmt::format("[{}] {}", fmt::join(t.sizes(), ", "), dtype_name(t.dtype()))](
                    const MPI_Status& st) {
      int got = 0;
      if (const int rc = MPI_Get_count(&st, MPI_BYTE, &got); rc != MPI_SUCCESS)
        return fmt::format("{}: MPI_Get_count: {}", what, mpi_error_string(rc));
      if (got == n) return std::string();
      return fmt::format("{}: expected {} bytes (a {} tensor), received {}", what, n, shape, got);
    };
    char* p = raw_ptr(t);
    return post(
        s, [=, this](MPI_Request* r) { return MPI_Irecv(p, n, MPI_BYTE, src, tag, comm_, r); });
  }

  WorkPtr barrier() override {
    auto s = collective("barrier", "");
    return post(s, [this](MPI_Request* r) { return MPI_Ibarrier(comm_, r); });
  }

 private:
  std::shared_ptr<OpState> collective(const char* op, const std::string& detail) {
    auto s = std::make_shared<OpState>();
    s->op = op;
    s->group = desc_;
    s->awaited = fmt::format("ranks {} to join{}{}", format_ranks(world_ranks_),
                             detail.empty() ? "" : "; ", detail);
    s->seq = ++collectives_;
    s->members = world_ranks_;
    return s;
  }

  std::shared_ptr<OpState> p2p(const char* op, int peer, int tag, int bytes) {
    auto s = std::make_shared<OpState>();
    s->op = op;
    s->group = desc_;
    s->awaited =
        fmt::format("peer rank {} (global), tag {}, {} bytes", world_ranks_[peer], tag, bytes);
    s->peer = world_ranks_[peer];
    s->bytes = bytes;
    return s;
  }

  void check_tag(const OpContext& c, int tag) const {
    if (tag < 0 || tag > tag_ub_) misuse(c, fmt::format("tag {} is outside 0..{}", tag, tag_ub_));
  }

  MPI_Comm comm_;
  std::string name_;
  std::vector<int> world_ranks_;
  std::string desc_;
  int rank_ = 0;
  int size_ = 1;
  int tag_ub_ = 32767;
  std::atomic<long> collectives_{0};  // posted so far; each one's OpState::seq
};

}  // namespace

std::shared_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::string name,
                                                    std::vector<int> world_ranks) {
  return std::make_shared<MpiCommunicator>(comm, std::move(name), std::move(world_ranks));
}

}  // namespace smp::detail
