// smp::init and the process-wide state behind the rank and group functions.
#include <mpi.h>
#include <smp/engine/device.h>
#include <smp/parallel/runtime.h>
#include <smp/parallel/trace.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "comm/backend.h"
#include "comm/progress.h"

namespace smp {
namespace {

constexpr int kObjectTag = 0x5e7;  // point-to-point host objects; collectives use no tags

struct Runtime {
  bool initialized = false;
  bool mpi_started_here = false;
  bool comm_started = false;
  Config config;
  std::unique_ptr<Topology> topology;
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
  std::map<CommGroup, std::shared_ptr<Communicator>> comms;
  std::terminate_handler previous_terminate = nullptr;
  bool terminate_installed = false;
};

Runtime& rt() {
  static Runtime r;
  return r;
}

const Runtime& ready() {
  SMP_CHECK(rt().initialized, "smp: call smp::init() before using ranks, groups or communication");
  return rt();
}

using detail::check_mpi;

/// Shutdown paths (finalize, undoing a failed init) cannot throw: a failing MPI call there
/// is reported and the shutdown goes on.
void warn_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  std::fprintf(stderr, "smp: warning: %s failed during shutdown: %s\n", call,
               detail::mpi_error_string(code).c_str());
}

std::string read_file(const std::string& path) {
  errno = 0;
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw ConfigError(fmt::format("smp: cannot read --smp-config file '{}': {}", path,
                                  errno ? std::strerror(errno) : "cannot open it"));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// Rank known before (or without) init: the launcher's environment, else 0.
int environment_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"})
    if (const char* s = std::getenv(v)) return std::atoi(s);
  return 0;
}

void terminate_handler() {
  std::string why = "std::terminate called without an active exception";
  if (auto ep = std::current_exception()) {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      why = std::string("uncaught exception: ") + e.what();
    } catch (...) {
      why = "uncaught exception of unknown type";
    }
  }
  abort_job(why, 1);
}

void start(Config cfg) {
  Runtime& r = rt();
  SMP_CHECK(!r.initialized, "smp::init: already initialised (call it once per process)");

  int already = 0;
  check_mpi(MPI_Initialized(&already), "MPI_Initialized");
  if (!already) {
    // Open MPI's default nonblocking allreduce runs 2-3x slower than its blocking one for
    // messages of 256 KiB and more on shared memory (benchmarks/README.md, comm_bench); the
    // ring algorithm is within ~25 % of it. A value the user set is kept.
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    r.mpi_started_here = true;
    if (provided < MPI_THREAD_SERIALIZED) {
      warn_mpi(MPI_Finalize(), "MPI_Finalize");
      r.mpi_started_here = false;
      throw CommError(
          "smp::init: this MPI library offers no MPI_THREAD_SERIALIZED support, which libsmp needs "
          "(communication progresses on a background thread)");
    }
  }
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &r.rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &r.size), "MPI_Comm_size");

  // Everything up to here is identical on every rank and runs no collective, so a bad
  // configuration fails everywhere the same way; MPI is then shut down cleanly.
  try {
    cfg.validate_world(r.size);
    r.topology = std::make_unique<Topology>(r.size, cfg.pipeline_parallel_degree,
                                            cfg.tensor_parallel_degree, cfg.placement());
  } catch (...) {
    if (r.mpi_started_here) warn_mpi(MPI_Finalize(), "MPI_Finalize");
    r.mpi_started_here = false;
    r.topology.reset();
    throw;
  }
  r.config = cfg;
  if (!std::getenv("SMP_COMM_TIMEOUT")) set_comm_timeout(cfg.comm_timeout);
  if (!cfg.trace_dir.empty())
    trace::enable(cfg.trace_dir, r.rank, r.size);
  else
    trace::enable_from_env(r.rank, r.size);
  const char* trace_env = std::getenv("SMP_TRACE");
  detail::set_flight_dir(!cfg.trace_dir.empty()    ? cfg.trace_dir
                         : trace_env && *trace_env ? std::string(trace_env)
                                                   : std::string());

  MPI_Comm node = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r.rank, MPI_INFO_NULL, &node),
            "MPI_Comm_split_type");
  check_mpi(MPI_Comm_rank(node, &r.local_rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(node, &r.local_size), "MPI_Comm_size");
  check_mpi(MPI_Comm_free(&node), "MPI_Comm_free");

  detail::comm_start(MPI_COMM_WORLD);
  r.comm_started = true;
  r.initialized = true;
  r.previous_terminate = std::set_terminate(terminate_handler);
  r.terminate_installed = true;
  static bool at_exit_registered = false;  // finalize() is idempotent; register it once
  if (!at_exit_registered) at_exit_registered = std::atexit([] { finalize(); }) == 0;

  // One CUDA device per process, chosen by local rank (SMP's one-process-per-GPU rule).
  const int gpus = cuda::device_count();
  if (gpus > 0) {
    SMP_CHECK(
        r.local_size <= gpus,
        "smp::init: {} processes run on this host but it has {} CUDA device(s); start at most "
        "one process per GPU (mpi.processes_per_host <= {})",
        r.local_size, gpus, gpus);
    cuda::set_device(r.local_rank);
  }

  // Every rank creates every group in the same order (MPI_Comm_split is collective on WORLD).
  for (CommGroup g : {CommGroup::WORLD, CommGroup::PP_GROUP, CommGroup::TP_GROUP,
                      CommGroup::RDP_GROUP, CommGroup::DP_GROUP, CommGroup::MP_GROUP}) {
    std::vector<int> members = r.topology->group(g, r.rank);
    MPI_Comm c = MPI_COMM_NULL;
    {
      std::lock_guard<std::mutex> lock(detail::mpi_mutex());
      if (g == CommGroup::WORLD) {
        check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &c), "MPI_Comm_dup");
      } else {
        // Color: the group's first rank identifies it; key: global rank keeps ascending order.
        check_mpi(MPI_Comm_split(MPI_COMM_WORLD, members.front(), r.rank, &c), "MPI_Comm_split");
      }
    }
    auto mpi = detail::make_mpi_communicator(c, to_string(g), members);
    std::shared_ptr<Communicator> nccl;
#if defined(SMP_WITH_NCCL)
    if (gpus > 0) nccl = detail::make_nccl_communicator(*mpi, to_string(g), r.local_rank);
#endif
    r.comms[g] = detail::make_dispatch_communicator(mpi, nccl);
  }
}

Config config_from_environment() {
  if (const char* env = std::getenv("SM_HP_MP_PARAMETERS"); env && *env)
    return Config::parse(env, "SM_HP_MP_PARAMETERS");
  return Config{};
}

Tensor bytes_tensor(const std::string& bytes) {
  Tensor t = empty({static_cast<int64_t>(bytes.size())}, kUInt8);
  if (!bytes.empty()) std::memcpy(t.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  return t;
}

std::string tensor_bytes(const Tensor& t) {
  return std::string(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()),
                     static_cast<size_t>(t.numel()));
}

}  // namespace

void init(int& argc, char** argv) {
  std::optional<std::string> file;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--smp-config") {
      if (i + 1 >= argc) throw ConfigError("smp::init: --smp-config needs a file name");
      file = argv[++i];
    } else if (a.rfind("--smp-config=", 0) == 0) {
      file = a.substr(std::strlen("--smp-config="));
    } else {
      argv[out++] = argv[i];
    }
  }
  if (argc > 0) {
    argc = out;
    argv[argc] = nullptr;
  }
  start(file ? Config::parse(read_file(*file), *file) : config_from_environment());
}

void init(const Config& config) {
  // A Config built in code has not been through from_json: its effective values get the same
  // checks, so a field set to an unsupported feature or a bad value is refused, not ignored.
  Config::from_json(config.to_json(), "smp::init(Config)");
  start(config);
}

void init() { start(config_from_environment()); }

bool is_initialized() { return rt().initialized; }

void finalize() {
  Runtime& r = rt();
  if (r.initialized) trace::finalize();
  if (r.comm_started) {
    detail::comm_stop();
    r.comm_started = false;
  }
  r.comms.clear();
  r.initialized = false;
  if (r.terminate_installed) {
    std::set_terminate(r.previous_terminate);
    r.terminate_installed = false;
  }
  if (r.mpi_started_here) {
    int finalized = 0;
    warn_mpi(MPI_Finalized(&finalized), "MPI_Finalized");
    if (!finalized) warn_mpi(MPI_Finalize(), "MPI_Finalize");
    r.mpi_started_here = false;
  }
}

const Config& config() { return ready().config; }
const Topology& topology() { return *ready().topology; }

int rank() { return ready().rank; }
int size() { return ready().size; }
int local_rank() { return ready().local_rank; }
int local_size() { return ready().local_size; }
int pp_rank() { return topology().pp_rank(rank()); }
int pp_size() { return topology().pp_size(); }
int tp_rank() { return topology().tp_rank(rank()); }
int tp_size() { return topology().tp_size(); }
int rdp_rank() { return topology().rdp_rank(rank()); }
int rdp_size() { return topology().rdp_size(); }
int dp_rank() { return topology().dp_rank(rank()); }
int dp_size() { return topology().dp_size(); }
int mp_rank() { return topology().mp_rank(rank()); }
int mp_size() { return topology().mp_size(); }

std::vector<int> get_group(CommGroup g) { return topology().group(g, rank()); }
std::vector<int> get_world_group() { return get_group(CommGroup::WORLD); }
std::vector<int> get_pp_group() { return get_group(CommGroup::PP_GROUP); }
std::vector<int> get_tp_group() { return get_group(CommGroup::TP_GROUP); }
std::vector<int> get_rdp_group() { return get_group(CommGroup::RDP_GROUP); }
std::vector<int> get_dp_group() { return get_group(CommGroup::DP_GROUP); }
std::vector<int> get_mp_group() { return get_group(CommGroup::MP_GROUP); }

Communicator& comm(CommGroup g) {
  const Runtime& r = ready();
  auto it = r.comms.find(g);
  SMP_ASSERT(it != r.comms.end(), "no communicator for {}", to_string(g));
  return *it->second;
}

namespace {
// Inside a library call that names itself (DistributedOptimizer::state_dict), the host-object
// helpers keep that name in front, so a stall report names what the user called.
std::string within(const char* helper) {
  const std::string& outer = detail::CallScope::current();
  return outer.empty() ? std::string(helper) : outer + " (" + helper + ")";
}
}  // namespace

void barrier(CommGroup g) {
  detail::CallScope scope(within("smp::barrier"));
  comm(g).barrier()->wait();
}

std::string broadcast(const std::string& bytes, int root, CommGroup group) {
  detail::CallScope scope(within("smp::broadcast"));
  Communicator& c = comm(group);
  SMP_CHECK(root >= 0 && root < c.size(), "smp::broadcast: root {} is not a rank of {} (size {})",
            root, c.name(), c.size());
  Tensor n = full({1}, static_cast<double>(bytes.size()), kInt64);
  c.broadcast(n, root)->wait();
  Tensor data = c.rank() == root ? bytes_tensor(bytes) : empty({n.item<int64_t>()}, kUInt8);
  c.broadcast(data, root)->wait();
  return tensor_bytes(data);
}

nlohmann::json broadcast(const nlohmann::json& value, int root, CommGroup group) {
  return nlohmann::json::parse(broadcast(value.dump(), root, group));
}

std::vector<std::string> allgather(const std::string& bytes, CommGroup group) {
  detail::CallScope scope(within("smp::allgather"));
  Communicator& c = comm(group);
  const int n = c.size();
  Tensor mine = full({1}, static_cast<double>(bytes.size()), kInt64);
  std::vector<Tensor> sizes;
  for (int i = 0; i < n; ++i) sizes.push_back(empty({1}, kInt64));
  c.allgather(mine, sizes)->wait();
  std::vector<Tensor> data;
  for (int i = 0; i < n; ++i)
    data.push_back(empty({sizes[static_cast<size_t>(i)].item<int64_t>()}, kUInt8));
  c.allgather(bytes_tensor(bytes), data)->wait();
  std::vector<std::string> result;
  for (const Tensor& t : data) result.push_back(tensor_bytes(t));
  return result;
}

std::vector<nlohmann::json> allgather(const nlohmann::json& value, CommGroup group) {
  std::vector<nlohmann::json> out;
  for (const std::string& s : allgather(value.dump(), group))
    out.push_back(nlohmann::json::parse(s));
  return out;
}

void send(const std::string& bytes, int dest, CommGroup group) {
  Communicator& c = comm(group);
  SMP_CHECK(dest >= 0 && dest < c.size() && dest != c.rank(),
            "smp::send: destination {} is not another rank of {} (size {}, this rank {})", dest,
            c.name(), c.size(), c.rank());
  Tensor n = full({1}, static_cast<double>(bytes.size()), kInt64);
  Tensor data = bytes_tensor(bytes);
  auto w1 = c.send(n, dest, kObjectTag);
  auto w2 = c.send(data, dest, kObjectTag);
  w1->wait();
  w2->wait();
}

void send(const nlohmann::json& value, int dest, CommGroup group) {
  send(value.dump(), dest, group);
}

std::string recv_from(int src, CommGroup group) {
  Communicator& c = comm(group);
  SMP_CHECK(src >= 0 && src < c.size() && src != c.rank(),
            "smp::recv_from: source {} is not another rank of {} (size {}, this rank {})", src,
            c.name(), c.size(), c.rank());
  Tensor n = empty({1}, kInt64);
  c.recv(n, src, kObjectTag)->wait();
  Tensor data = empty({n.item<int64_t>()}, kUInt8);
  c.recv(data, src, kObjectTag)->wait();
  return tensor_bytes(data);
}

nlohmann::json recv_json_from(int src, CommGroup group) {
  return nlohmann::json::parse(recv_from(src, group));
}

void abort_job(const std::string& why, int exit_code) {
  // The job is going down whatever MPI answers here: its return codes change nothing.
  int mpi_up = 0, mpi_down = 0;
  if (MPI_Initialized(&mpi_up) != MPI_SUCCESS) mpi_up = 0;
  if (MPI_Finalized(&mpi_down) != MPI_SUCCESS) mpi_down = 1;
  const int r = rt().initialized ? rt().rank : environment_rank();
  std::fprintf(stderr, "smp: rank %d failed: %s\n", r, why.c_str());
  std::fflush(stderr);
  if (mpi_up && !mpi_down) {
    int world = 1;
    if (MPI_Comm_size(MPI_COMM_WORLD, &world) != MPI_SUCCESS) world = 2;  // abort to be sure
    if (world > 1) {
      if (rt().comm_started) detail::notify_failure(why, 2.0);
      // Give the others a moment to print why they stop before MPI kills them.
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      (void)MPI_Abort(MPI_COMM_WORLD, exit_code);  // does not return when it works
    }
  }
  std::_Exit(exit_code);
}

int handle_exception(const std::exception& e, const char* program) {
  const bool multi = rt().initialized && rt().size > 1;
  const int r = rt().initialized ? rt().rank : environment_rank();
  if (dynamic_cast<const ConfigError*>(&e)) {
    // Every rank read the same parameters and failed the same way: say it once. mpirun stops
    // the job as soon as one process exits non-zero, so the others give rank 0 time to print.
    if (r == 0) {
      std::fprintf(stderr, "%s: error: %s\n", program, e.what());
      std::fflush(stderr);
    } else {
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    return 1;
  }
  if (const auto* rf = dynamic_cast<const RemoteFailure*>(&e)) {
    std::fprintf(stderr, "%s: rank %d stopping: %s\n", program, r, rf->what());
    std::fflush(stderr);
    // The failed rank aborts the job right after its notices leave; if it does not, do it.
    std::this_thread::sleep_for(std::chrono::seconds(10));
    abort_job(rf->what(), 1);
  }
  if (multi) abort_job(e.what(), 1);
  std::fprintf(stderr, "%s: error: %s\n", program, e.what());
  return 1;
}

}  // namespace smp
