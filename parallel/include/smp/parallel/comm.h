// Communicator: collectives and point-to-point transfers of tensors within one process group.
#pragma once

#include <smp/engine/error.h>
#include <smp/engine/tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace smp {

enum class ReduceOp { Sum, Avg, Max, Min };
const char* to_string(ReduceOp op);

/// A communication failed: a timeout (the message names the group, the operation and the peer
/// or peers still awaited), an error reported by MPI or NCCL, or a misuse of a communicator.
class CommError : public Error {
 public:
  explicit CommError(const std::string& msg) : Error(msg) {}
};

/// Another rank of the job failed; `what()` says which rank and why. The job is going down.
class RemoteFailure : public CommError {
 public:
  RemoteFailure(int failed_rank, const std::string& msg)
      : CommError(msg), failed_rank_(failed_rank) {}
  int failed_rank() const { return failed_rank_; }

 private:
  int failed_rank_;
};

/// Seconds a blocking wait lasts before it throws CommError (default 600, or Config's
/// `comm_timeout`, or the environment variable SMP_COMM_TIMEOUT).
double comm_timeout();
void set_comm_timeout(double seconds);

/// Handle on an asynchronous operation. Tensors given to the operation must stay alive and
/// untouched until it completes. For CUDA tensors, completion of wait() means later work on
/// the compute stream is ordered after the operation (the host need not block).
class Work {
 public:
  virtual ~Work() = default;
  /// True once the operation has finished (never blocks; rethrows nothing).
  virtual bool is_completed() = 0;
  /// Blocks until done (bounded by comm_timeout()); throws CommError / RemoteFailure.
  virtual void wait() = 0;
};
using WorkPtr = std::shared_ptr<Work>;

/// One process group's communicator. Ranks are group ranks (0 .. size()-1). Collectives must
/// be called by every member in the same order; tensors must be contiguous, on one device, and
/// of matching dtype across ranks. Every operation returns at once with a Work handle.
class Communicator {
 public:
  virtual ~Communicator() = default;

  /// Group name used in error messages ("DP_GROUP", "WORLD", ...).
  virtual const std::string& name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Global (WORLD) rank of each group rank.
  virtual const std::vector<int>& world_ranks() const = 0;

  /// In place: every rank's `t` becomes the reduction of all ranks' `t`.
  virtual WorkPtr allreduce(Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  /// In place: every rank's `t` becomes root's.
  virtual WorkPtr broadcast(Tensor& t, int root) = 0;
  /// outputs[i] receives rank i's `input`; sizes may differ between ranks (each outputs[i]
  /// must have rank i's element count).
  virtual WorkPtr allgather(const Tensor& input, std::vector<Tensor>& outputs) = 0;
  /// `output` receives the reduction over ranks of their inputs[rank()]; inputs[i] and rank i's
  /// output have the same element count, which may differ between i.
  virtual WorkPtr reduce_scatter(const std::vector<Tensor>& inputs, Tensor& output,
                                 ReduceOp op = ReduceOp::Sum) = 0;
  /// inputs[i] goes to rank i; outputs[i] comes from rank i (any sizes, agreed pairwise).
  virtual WorkPtr all_to_all(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) = 0;
  /// Point to point; `tag` ≥ 0 separates concurrent streams between the same pair.
  virtual WorkPtr send(const Tensor& t, int dst, int tag = 0) = 0;
  virtual WorkPtr recv(Tensor& t, int src, int tag = 0) = 0;
  virtual WorkPtr barrier() = 0;
};

}  // namespace smp
