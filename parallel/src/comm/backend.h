// Internal: how the runtime (parallel/src/runtime.cpp) creates and drives communicators.
// Not installed. All MPI calls in libsmp hold mpi_mutex() (MPI_THREAD_SERIALIZED suffices).
#pragma once

#include <mpi.h>
#include <smp/parallel/comm.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace smp::detail {

/// Names the library call the calling thread is in (innermost wins) for the operations it
/// posts, so that a stalled collective's message says which call it belongs to.
class CallScope {
 public:
  explicit CallScope(std::string call);
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;
  static const std::string& current();

 private:
  std::string previous_;
};

/// Where flight records go (SMP_TRACE's or trace_dir's directory; "" = the working
/// directory). Set by init().
void set_flight_dir(const std::string& dir);
/// Writes this rank's flight record — its last 256 operations — to
/// <dir>/smp_flight.<rank>.json, once per process; `why` says what went wrong. Returns the
/// path, or "" when it was written before or could not be written.
std::string write_flight_record(const std::string& why);

/// Serialises every MPI call made by libsmp's threads.
std::mutex& mpi_mutex();

/// Starts the progress thread and the failure channel over a duplicate of `world`.
/// Called once by init() after MPI_Init_thread, before any communicator is made.
void comm_start(MPI_Comm world);
/// Stops the progress thread (pending operations fail with CommError) and frees the failure
/// channel. Called by finalize() before MPI_Finalize; a no-op if not started.
void comm_stop();

/// A communicator over `comm`, which it takes over (MPI_Comm_free in its destructor).
/// `name` appears in error messages; `world_ranks` maps group rank → global rank.
std::shared_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::string name,
                                                    std::vector<int> world_ranks);
/// An NCCL communicator over the same ranks as `mpi` (the unique id is broadcast over it) on
/// CUDA device `device`, with its own stream ordered after the compute stream by events.
/// Throws CommError when built without NCCL.
std::shared_ptr<Communicator> make_nccl_communicator(Communicator& mpi, std::string name,
                                                     int device);
/// Routes each call by the tensors' device: CUDA to `nccl` when non-null, everything else to
/// `mpi` (CUDA tensors then staged through host memory).
std::shared_ptr<Communicator> make_dispatch_communicator(std::shared_ptr<Communicator> mpi,
                                                         std::shared_ptr<Communicator> nccl);

/// Tells every other rank that this one failed with `message` (their waits then throw
/// RemoteFailure), waiting at most `grace_seconds` for the notices to leave.
void notify_failure(const std::string& message, double grace_seconds);
/// The first failure notice received from another rank (global rank, message), if any.
std::optional<std::pair<int, std::string>> remote_failure();

}  // namespace smp::detail
