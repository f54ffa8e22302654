// The NCCL communicator: CUDA tensors, collectives on a stream of its own.
//
// Ordering without host synchronisation: before each operation an event recorded on the
// engine's compute stream makes the communicator's stream wait, so the operation sees every
// kernel queued before it; after it a "done" event is recorded. Work::wait() polls that event
// (and ncclCommGetAsyncError, and the failure channel) until it completes or comm_timeout()
// passes — then the communicator is aborted (ncclCommAbort) and CommError names the group,
// the operation and the peers — and finally makes the compute stream wait on the done event.
//
// Uneven allgather and reduce_scatter run as grouped ncclBroadcast / ncclReduce calls, one per
// rank with that rank as root (NCCL's fused ncclAllGather / ncclReduceScatter are used when
// every rank's piece has the same size and the pieces are back to back in one buffer).
// all_to_all is grouped ncclSend/ncclRecv pairs plus a device copy for the rank's own piece.
// Avg is ncclAvg (NCCL ≥ 2.10); bool reduces as uint8 (Sum and Max: or, Min: and).
// NCCL has no tags: send/recv ignore `tag`, and messages between two ranks match in the order
// they are issued. Each send or recv is its own kernel, so two ranks must issue matching
// sends and receives in the same order (a rank that sends first while its peer also sends
// first deadlocks for large messages).
#include "comm/backend.h"
#include "comm/checks.h"

#if SMP_WITH_NCCL

#include <nccl.h>
#include <smp/engine/detail/cuda_stream.h>
#include <smp/engine/device.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "comm/progress.h"
#include "comm/reduce.h"

namespace smp::detail {

namespace {

using Clock = std::chrono::steady_clock;

std::string nccl_message(ncclResult_t r, ncclComm_t comm) {
  std::string msg = ncclGetErrorString(r);
  const char* last = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  if (last != nullptr && *last != '\0') msg += fmt::format(" ({})", last);
  return msg;
}

void nccl_check(ncclResult_t r, ncclComm_t comm, const std::string& what) {
  if (r != ncclSuccess)
    throw CommError(fmt::format("smp: {}: NCCL error: {}", what, nccl_message(r, comm)));
}

ncclDataType_t nccl_type(const OpContext& c, Dtype d) {
  switch (d) {
    case kFloat32:
      return ncclFloat32;
    case kFloat64:
      return ncclFloat64;
    case kFloat16:
      return ncclFloat16;
    case kBFloat16:
      return ncclBfloat16;
    case kInt64:
      return ncclInt64;
    case kInt32:
      return ncclInt32;
    case kUInt8:
    case kBool:
      return ncclUint8;
  }
  misuse(c, fmt::format("dtype {} has no NCCL type", dtype_name(d)));
}

ncclRedOp_t nccl_op(Dtype d, ReduceOp op) {
  return transport_op(d, op, TransportOps<ncclRedOp_t>{ncclSum, ncclMax, ncclMin, ncclAvg});
}

/// A CUDA event without timing, destroyed with its owner.
class Event {
 public:
  Event() { SMP_CUDA_CHECK(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  ~Event() {
    // The driver frees a recorded event only after it completes.
    if (e_ != nullptr) cudaEventDestroy(e_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

/// What a communicator and its Work handles share.
struct NcclState {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int device = 0;
  std::string desc;  // "DP_GROUP [0, 2]"
  std::vector<int> world_ranks;
  // Serialises launches (a NCCL communicator is not thread-safe) and guards `aborted`; after
  // an abort `comm` must not be touched.
  std::mutex mu;
  bool aborted = false;

  void abort_locked() {
    if (aborted) return;
    aborted = true;
    ncclCommAbort(comm);
  }

  ~NcclState() {
    cuda::DeviceGuard g(device);
    if (!aborted && comm != nullptr) {
      // Destroying waits for queued work, which never ends if a peer is gone.
      if (remote_failure())
        ncclCommAbort(comm);
      else
        ncclCommDestroy(comm);
    }
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<NcclState> st, std::unique_ptr<Event> done, std::string op,
           std::string awaited, std::vector<Tensor> keep)
      : st_(std::move(st)),
        done_(std::move(done)),
        op_(std::move(op)),
        awaited_(std::move(awaited)),
        keep_(std::move(keep)) {}

  ~NcclWork() override {
    // Unwaited: still order the compute stream after the operation, so the caching allocator
    // cannot hand the tensors' memory to a kernel that runs before NCCL is done with it.
    std::lock_guard<std::mutex> lk(st_->mu);
    if (!joined_ && !st_->aborted) {
      cuda::DeviceGuard g(st_->device);
      cudaStreamWaitEvent(cuda::compute_stream(st_->device), done_->get(), 0);
    }
  }

  bool is_completed() override {
    cuda::DeviceGuard g(st_->device);
    cudaError_t q = cudaEventQuery(done_->get());
    if (q == cudaErrorNotReady) return false;
    if (q != cudaSuccess) (void)cudaGetLastError();
    return true;
  }

  void wait() override {
    const double timeout = comm_timeout();
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(timeout));
    cuda::DeviceGuard g(st_->device);
    auto backoff = std::chrono::microseconds(20);
    for (;;) {
      cudaError_t q = cudaEventQuery(done_->get());
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) {
        (void)cudaGetLastError();
        throw CommError(fmt::format("smp: {} on {} failed: CUDA error: {}", op_, st_->desc,
                                    cudaGetErrorString(q)));
      }
      {
        std::lock_guard<std::mutex> lk(st_->mu);
        if (st_->aborted)
          throw CommError(fmt::format(
              "smp: {} on {} did not complete: the NCCL communicator was aborted after an "
              "earlier error",
              op_, st_->desc));
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(st_->comm, &async);
        if (r != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
          std::string msg = nccl_message(r != ncclSuccess ? r : async, st_->comm);
          st_->abort_locked();
          throw CommError(fmt::format("smp: {} on {} failed: NCCL error: {}", op_, st_->desc, msg));
        }
        if (auto f = remote_failure()) {
          st_->abort_locked();
          throw RemoteFailure(f->first, fmt::format("rank {} failed: {}", f->first, f->second));
        }
        if (Clock::now() >= deadline) {
          st_->abort_locked();
          throw CommError(
              fmt::format("smp: {} on {} timed out after {:g} s (rank {} waited for {}; the NCCL "
                          "communicator was aborted)",
                          op_, st_->desc, timeout, global_rank(), awaited_));
        }
      }
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::microseconds(1000));
    }
    std::lock_guard<std::mutex> lk(st_->mu);
    SMP_CUDA_CHECK(cudaStreamWaitEvent(cuda::compute_stream(st_->device), done_->get(), 0));
    joined_ = true;
    keep_.clear();
  }

 private:
  std::shared_ptr<NcclState> st_;
  std::unique_ptr<Event> done_;
  std::string op_;
  std::string awaited_;
  std::vector<Tensor> keep_;
  bool joined_ = false;
};

/// Communicator over one NCCL communicator on one device.
class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(Communicator& mpi, std::string name, int device)
      : name_(std::move(name)), rank_(mpi.rank()), size_(mpi.size()) {
    st_ = std::make_shared<NcclState>();
    st_->device = device;
    st_->world_ranks = mpi.world_ranks();
    st_->desc = fmt::format("{} {}", name_, format_ranks(st_->world_ranks));

    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    Tensor idt = zeros({static_cast<int64_t>(sizeof id)}, TensorOptions(kUInt8));
    if (rank_ == 0) {
      nccl_check(ncclGetUniqueId(&id), nullptr, fmt::format("ncclGetUniqueId for {}", st_->desc));
      std::memcpy(raw_ptr(idt), &id, sizeof id);
    }
    mpi.broadcast(idt, 0)->wait();
    std::memcpy(&id, raw_ptr(idt), sizeof id);

    cuda::DeviceGuard g(device);
    SMP_CUDA_CHECK(cudaStreamCreateWithFlags(&st_->stream, cudaStreamNonBlocking));
    // Blocking: every rank has just passed the MPI broadcast above, so all of them are here.
    nccl_check(ncclCommInitRank(&st_->comm, size_, id, rank_), nullptr,
               fmt::format("ncclCommInitRank for {} on cuda:{}", st_->desc, device));
  }

  const std::string& name() const override { return name_; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::vector<int>& world_ranks() const override { return st_->world_ranks; }

  WorkPtr allreduce(Tensor& t, ReduceOp op) override {
    OpContext c{"allreduce", st_->desc, "NCCL"};
    check(c, t, "the tensor");
    check_reduce_dtype(c, t.dtype(), op);
    const ncclDataType_t dt = nccl_type(c, t.dtype());
    const ncclRedOp_t rop = nccl_op(t.dtype(), op);
    char* p = raw_ptr(t);
    const size_t n = static_cast<size_t>(t.numel());
    return launch(c, collective_awaited(), {t}, [&](ncclComm_t comm, cudaStream_t s) {
      if (n > 0) nccl_check(ncclAllReduce(p, p, n, dt, rop, comm, s), comm, "ncclAllReduce");
    });
  }

  WorkPtr broadcast(Tensor& t, int root) override {
    OpContext c{"broadcast", st_->desc, "NCCL"};
    check(c, t, "the tensor");
    check_root(c, root, size_, "root");
    char* p = raw_ptr(t);
    const size_t n = t.nbytes();
    return launch(c, collective_awaited(), {t}, [&](ncclComm_t comm, cudaStream_t s) {
      if (n > 0)
        nccl_check(ncclBroadcast(p, p, n, ncclUint8, root, comm, s), comm, "ncclBroadcast");
    });
  }

  WorkPtr allgather(const Tensor& input, std::vector<Tensor>& outputs) override {
    OpContext c{"allgather", st_->desc, "NCCL"};
    check(c, input, "the input");
    check_list_size(c, outputs.size(), size_, "outputs");
    for (int i = 0; i < size_; ++i) {
      check(c, outputs[i], fmt::format("outputs[{}]", i));
      check_same_dtype(c, outputs[i], input.dtype(), fmt::format("outputs[{}]", i));
    }
    if (outputs[rank_].numel() != input.numel())
      misuse(c, fmt::format("outputs[{}] (this rank's slot) has {} elements but the input has {}",
                            rank_, outputs[rank_].numel(), input.numel()));
    std::vector<Tensor> keep = outputs;
    keep.push_back(input);
    const bool fused = back_to_back(outputs);
    return launch(c, collective_awaited(), std::move(keep), [&](ncclComm_t comm, cudaStream_t s) {
      if (fused) {
        if (input.nbytes() > 0)
          nccl_check(ncclAllGather(raw_ptr(input), raw_ptr(outputs[0]), input.nbytes(), ncclUint8,
                                   comm, s),
                     comm, "ncclAllGather");
        return;
      }
      nccl_check(ncclGroupStart(), comm, "ncclGroupStart");
      for (int i = 0; i < size_; ++i) {
        const size_t n = outputs[i].nbytes();
        if (n == 0) continue;
        const void* src = i == rank_ ? raw_ptr(input) : raw_ptr(outputs[i]);
        ncclResult_t r = ncclBroadcast(src, raw_ptr(outputs[i]), n, ncclUint8, i, comm, s);
        if (r != ncclSuccess) {
          ncclGroupEnd();
          nccl_check(r, comm, "ncclBroadcast (allgather)");
        }
      }
      nccl_check(ncclGroupEnd(), comm, "ncclGroupEnd (allgather)");
    });
  }

  WorkPtr reduce_scatter(const std::vector<Tensor>& inputs, Tensor& output, ReduceOp op) override {
    OpContext c{"reduce_scatter", st_->desc, "NCCL"};
    check_reduce_scatter_args(c, inputs, output, op, rank_, size_, Checker{this});
    const ncclDataType_t dt = nccl_type(c, output.dtype());
    const ncclRedOp_t rop = nccl_op(output.dtype(), op);
    std::vector<Tensor> keep = inputs;
    keep.push_back(output);
    const bool fused = back_to_back(inputs);
    return launch(c, collective_awaited(), std::move(keep), [&](ncclComm_t comm, cudaStream_t s) {
      if (fused) {
        if (output.numel() > 0)
          nccl_check(ncclReduceScatter(raw_ptr(inputs[0]), raw_ptr(output),
                                       static_cast<size_t>(output.numel()), dt, rop, comm, s),
                     comm, "ncclReduceScatter");
        return;
      }
      nccl_check(ncclGroupStart(), comm, "ncclGroupStart");
      for (int i = 0; i < size_; ++i) {
        const size_t n = static_cast<size_t>(inputs[i].numel());
        if (n == 0) continue;
        void* dst = i == rank_ ? raw_ptr(output) : nullptr;  // only the root's is used
        ncclResult_t r = ncclReduce(raw_ptr(inputs[i]), dst, n, dt, rop, i, comm, s);
        if (r != ncclSuccess) {
          ncclGroupEnd();
          nccl_check(r, comm, "ncclReduce (reduce_scatter)");
        }
      }
      nccl_check(ncclGroupEnd(), comm, "ncclGroupEnd (reduce_scatter)");
    });
  }

  WorkPtr all_to_all(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) override {
    OpContext c{"all_to_all", st_->desc, "NCCL"};
    check_all_to_all_args(c, inputs, outputs, rank_, size_, Checker{this});
    std::vector<Tensor> keep = inputs;
    keep.insert(keep.end(), outputs.begin(), outputs.end());
    return launch(c, collective_awaited(), std::move(keep), [&](ncclComm_t comm, cudaStream_t s) {
      if (outputs[rank_].nbytes() > 0)
        SMP_CUDA_CHECK(cudaMemcpyAsync(raw_ptr(outputs[rank_]), raw_ptr(inputs[rank_]),
                                       outputs[rank_].nbytes(), cudaMemcpyDeviceToDevice, s));
      nccl_check(ncclGroupStart(), comm, "ncclGroupStart");
      for (int i = 0; i < size_; ++i) {
        if (i == rank_) continue;
        ncclResult_t r = ncclSuccess;
        if (inputs[i].nbytes() > 0)
          r = ncclSend(raw_ptr(inputs[i]), inputs[i].nbytes(), ncclUint8, i, comm, s);
        if (r == ncclSuccess && outputs[i].nbytes() > 0)
          r = ncclRecv(raw_ptr(outputs[i]), outputs[i].nbytes(), ncclUint8, i, comm, s);
        if (r != ncclSuccess) {
          ncclGroupEnd();
          nccl_check(r, comm, "ncclSend/ncclRecv (all_to_all)");
        }
      }
      nccl_check(ncclGroupEnd(), comm, "ncclGroupEnd (all_to_all)");
    });
  }

  WorkPtr send(const Tensor& t, int dst, int tag) override {
    OpContext c{"send", st_->desc, "NCCL"};
    check(c, t, "the tensor");
    check_root(c, dst, size_, "destination");
    const char* p = raw_ptr(t);
    const size_t n = t.nbytes();
    return launch(c, p2p_awaited(dst, tag), {t}, [&](ncclComm_t comm, cudaStream_t s) {
      if (n > 0) nccl_check(ncclSend(p, n, ncclUint8, dst, comm, s), comm, "ncclSend");
    });
  }

  WorkPtr recv(Tensor& t, int src, int tag) override {
    OpContext c{"recv", st_->desc, "NCCL"};
    check(c, t, "the tensor");
    check_root(c, src, size_, "source");
    char* p = raw_ptr(t);
    const size_t n = t.nbytes();
    return launch(c, p2p_awaited(src, tag), {t}, [&](ncclComm_t comm, cudaStream_t s) {
      if (n > 0) nccl_check(ncclRecv(p, n, ncclUint8, src, comm, s), comm, "ncclRecv");
    });
  }

  WorkPtr barrier() override {
    OpContext c{"barrier", st_->desc, "NCCL"};
    // A one-element allreduce: it completes only when every rank has issued it.
    Tensor token = zeros({1}, TensorOptions(kFloat32).device(Device(kCUDA, st_->device)));
    char* p = raw_ptr(token);
    return launch(c, collective_awaited(), {token}, [&](ncclComm_t comm, cudaStream_t s) {
      nccl_check(ncclAllReduce(p, p, 1, ncclFloat32, ncclSum, comm, s), comm,
                 "ncclAllReduce (barrier)");
    });
  }

 private:
  void check(const OpContext& c, const Tensor& t, const std::string& what) const {
    check_tensor(c, t, what, true);
    if (t.device().index() != st_->device)
      misuse(c, fmt::format("{} is on {} but this communicator uses cuda:{}", what,
                            t.device().str(), st_->device));
  }

  // check(), as the argument checks shared with the MPI backend (comm/checks.h) call it.
  struct Checker {
    const NcclCommunicator* self;
    void operator()(const OpContext& c, const Tensor& t, const std::string& what) const {
      self->check(c, t, what);
    }
  };

  // Equal sizes, back to back in rank order: NCCL's fused collectives apply.
  bool back_to_back(const std::vector<Tensor>& ts) const {
    const size_t n = ts[0].nbytes();
    if (n == 0) return false;
    for (size_t i = 0; i < ts.size(); ++i)
      if (ts[i].nbytes() != n || raw_ptr(ts[i]) != raw_ptr(ts[0]) + i * n) return false;
    return true;
  }

  std::string collective_awaited() const {
    return fmt::format("ranks {} to join", format_ranks(st_->world_ranks));
  }
  std::string p2p_awaited(int peer, int tag) const {
    return fmt::format("peer rank {} (global), tag {}", st_->world_ranks[peer], tag);
  }

  template <class F>
  WorkPtr launch(const OpContext& c, std::string awaited, std::vector<Tensor> keep, F&& body) {
    std::lock_guard<std::mutex> lk(st_->mu);
    if (st_->aborted)
      misuse(c, "the NCCL communicator was aborted after an earlier error or timeout");
    if (auto f = remote_failure())
      throw RemoteFailure(f->first, fmt::format("rank {} failed: {}", f->first, f->second));
    cuda::DeviceGuard g(st_->device);
    {
      Event ready;
      SMP_CUDA_CHECK(cudaEventRecord(ready.get(), cuda::compute_stream(st_->device)));
      SMP_CUDA_CHECK(cudaStreamWaitEvent(st_->stream, ready.get(), 0));
    }
    body(st_->comm, st_->stream);
    auto done = std::make_unique<Event>();
    SMP_CUDA_CHECK(cudaEventRecord(done->get(), st_->stream));
    // Made last: its destructor takes st_->mu, which is held here.
    return std::make_shared<NcclWork>(st_, std::move(done), c.op, std::move(awaited),
                                      std::move(keep));
  }

  std::string name_;
  int rank_;
  int size_;
  std::shared_ptr<NcclState> st_;
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(Communicator& mpi, std::string name,
                                                     int device) {
  // Checked before anything collective, so every rank of a GPU-less machine refuses alike.
  if (device < 0 || device >= cuda::device_count())
    throw CommError(fmt::format(
        "smp: cannot make an NCCL communicator for {} on cuda:{}: this process sees {} CUDA "
        "device(s)",
        name, device, cuda::device_count()));
  return std::make_shared<NcclCommunicator>(mpi, std::move(name), device);
}

}  // namespace smp::detail

#else  // !SMP_WITH_NCCL

namespace smp::detail {

std::shared_ptr<Communicator> make_nccl_communicator(Communicator& mpi, std::string name,
                                                     int device) {
  throw CommError(fmt::format(
      "smp: cannot make an NCCL communicator for {} on cuda:{}: this libsmp was built without "
      "NCCL (configure with -DSMP_CUDA=ON -DSMP_NCCL=ON)",
      name, device));
}

}  // namespace smp::detail

#endif
