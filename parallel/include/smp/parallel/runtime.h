// The process layer: smp::init, ranks and groups, host-object communication, failure handling.
#pragma once

#include <smp/parallel/comm.h>
#include <smp/parallel/config.h>
#include <smp/parallel/topology.h>

#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace smp {

/// Starts MPI (if the launcher did not), reads the parameters and builds every group. The
/// parameters come from `--smp-config FILE.json` (removed from argv, argc adjusted), else the
/// environment variable SM_HP_MP_PARAMETERS, else the defaults. A bad configuration throws
/// smp::Error with the same message on every rank before any collective has started.
/// Calling init twice is an error. Works without mpirun (a world of one).
///
/// Besides MPI and the groups, init changes this process in these ways, all undone or
/// harmless after finalize():
/// - If it starts MPI: sets OMPI_MCA_coll_libnbc_iallreduce_algorithm=1 (the ring
///   nonblocking allreduce; a value already in the environment is kept) before MPI_Init.
/// - MPI_COMM_WORLD and MPI_COMM_SELF get MPI_ERRORS_RETURN, so MPI errors fail the call
///   with a CommError instead of aborting from inside MPI.
/// - A std::terminate handler that reports the uncaught exception and stops every rank
///   (MPI_Abort) rather than leaving the others waiting; finalize() puts the previous
///   handler back.
/// - finalize() is registered with std::atexit.
/// - A background thread drives communication (and answers other ranks' status queries)
///   until finalize().
/// - With CUDA devices: the current device becomes cuda:local_rank.
/// - The communication timeout (comm_timeout, unless SMP_COMM_TIMEOUT is set) and the
///   trace/flight-record directory (trace_dir, else SMP_TRACE) are set process-wide.
void init(int& argc, char** argv);
/// init from parameters given in code (the environment and argv are not read).
void init(const Config& config);
/// init with the environment or defaults, for programs that keep their own argv.
void init();
/// Tears down communicators and MPI (if init started it), and restores the terminate
/// handler init replaced; also run at exit. Safe to call more than once.
void finalize();
bool is_initialized();

/// The configuration init() accepted.
const Config& config();
/// The rank decomposition of this job.
const Topology& topology();

int rank();
int size();
int local_rank();
int local_size();
int pp_rank();
int pp_size();
int tp_rank();
int tp_size();
int rdp_rank();
int rdp_size();
int dp_rank();
int dp_size();
int mp_rank();
int mp_size();

/// Global ranks of this rank's group of each kind, ascending (SMP's get_pp_group() etc.).
std::vector<int> get_world_group();
std::vector<int> get_pp_group();
std::vector<int> get_tp_group();
std::vector<int> get_rdp_group();
std::vector<int> get_dp_group();
std::vector<int> get_mp_group();
std::vector<int> get_group(CommGroup g);

/// The communicator of this rank's group of kind `g`: CUDA tensors travel over NCCL (when
/// built with it), host tensors over MPI.
Communicator& comm(CommGroup g = CommGroup::WORLD);

/// Blocks until every rank of the group arrives (bounded by comm_timeout()).
void barrier(CommGroup g = CommGroup::WORLD);

// Host objects, as SMP's smp.broadcast / send / recv_from / allgather. Byte strings and JSON
// values; blocking, with the same timeout as tensors. Ranks are ranks within `group`.
std::string broadcast(const std::string& bytes, int root, CommGroup group = CommGroup::WORLD);
nlohmann::json broadcast(const nlohmann::json& value, int root, CommGroup group = CommGroup::WORLD);
std::vector<std::string> allgather(const std::string& bytes, CommGroup group = CommGroup::WORLD);
std::vector<nlohmann::json> allgather(const nlohmann::json& value,
                                      CommGroup group = CommGroup::WORLD);
/// Sends to group rank `dest` of `group` (SMP's rank_type: PP_GROUP means dest is a pp_rank).
void send(const std::string& bytes, int dest, CommGroup group = CommGroup::WORLD);
void send(const nlohmann::json& value, int dest, CommGroup group = CommGroup::WORLD);
std::string recv_from(int src, CommGroup group = CommGroup::WORLD);
nlohmann::json recv_json_from(int src, CommGroup group = CommGroup::WORLD);

/// Brings the whole job down because this rank failed: tells every other rank (their pending
/// and later waits throw RemoteFailure naming this rank and `why`), prints
/// "smp: rank R failed: why" to stderr, and aborts MPI with `exit_code`. Without MPI (a world
/// of one) it only prints and exits.
[[noreturn]] void abort_job(const std::string& why, int exit_code = 1);

/// What a program's main does with an exception that escaped: prints it once (configuration
/// errors, identical on every rank, only on rank 0; RemoteFailure as "stopping: ..."), and, in
/// a job of several ranks where the error is not shared by all, calls abort_job so nobody
/// hangs. Returns the exit status to use when it returns at all (errors shared by every rank).
int handle_exception(const std::exception& e, const char* program);

}  // namespace smp
