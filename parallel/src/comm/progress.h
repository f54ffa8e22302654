// Internal: the progress engine behind the MPI communicators. Each operation posts one
// nonblocking MPI request from the calling thread; one progress thread tests the outstanding
// requests (and the failure channel) and completes their Work handles.
#pragma once

#include <mpi.h>
#include <smp/parallel/comm.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace smp::detail {

/// What one posted MPI operation needs after it is posted. Shared by its Work handle and the
/// progress thread; `status`, `error` and `failed_rank` are guarded by the engine's state mutex.
struct OpState {
  std::string op;       ///< "allreduce", "recv", ...
  std::string group;    ///< "DP_GROUP [0, 2]"
  std::string awaited;  ///< "ranks [0, 2] to join" or "peer rank 3 (global), tag 0"
  /// Runs on the progress thread when the request completes (copies out of staging buffers,
  /// divides for Avg, checks received sizes); returns an error message or "".
  std::function<std::string(const MPI_Status&)> finish;
  /// Buffers MPI reads or writes; kept alive until the request completes, even past a timeout.
  std::vector<Tensor> keep;
  /// Count and displacement arrays of "v" collectives, which MPI reads until completion.
  std::vector<std::vector<int>> arrays;

  /// The library call that posted it ("smp::barrier", "DistributedModel::state_dict"), when
  /// one named itself with a CallScope; "" otherwise.
  std::string call;
  /// Collectives: the position of this one among its group's collectives on this rank (from 1),
  /// and the group's world ranks. Every rank must post the same op at the same position.
  long seq = -1;
  std::vector<int> members;
  /// Point-to-point: the peer's world rank.
  int peer = -1;
  /// Bytes this rank sends or receives (-1: not recorded), and when the op was posted and
  /// completed (the flight record).
  long long bytes = -1;
  std::chrono::steady_clock::time_point posted{}, ended{};

  enum class Status { Pending, Done, Failed };
  Status status = Status::Pending;
  std::string error;
  int failed_rank = -1;  ///< ≥ 0: failed because that rank failed (RemoteFailure)
};

/// Posts an operation: `start` runs under mpi_mutex() and returns an MPI error code; the request
/// it fills in is then driven by the progress thread. Throws CommError if communication is not
/// running or `start` fails. After a remote failure nothing is posted and the Work fails.
WorkPtr post(std::shared_ptr<OpState> op, const std::function<int(MPI_Request*)>& start);

/// Throws CommError "smp: <what>: <MPI's description of code>" unless code is MPI_SUCCESS.
void check_mpi(int code, const std::string& what);
std::string mpi_error_string(int code);

/// "[0, 2, 4]"
std::string format_ranks(const std::vector<int>& ranks);

/// This process's rank in the world given to comm_start (0 before it).
int global_rank();

}  // namespace smp::detail
