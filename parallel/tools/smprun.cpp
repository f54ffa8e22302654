// smprun: starts a libsmp program under mpirun from SMP's `distribution` dictionary, checking
// the dictionary first so a bad configuration fails here rather than on every rank.
#include <fmt/format.h>
#include <smp/engine/device.h>
#include <smp/parallel/config.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "distribution.h"

namespace {

using smp::launcher::Distribution;

constexpr const char* kUsage =
    "usage: smprun --distribution FILE.json [--hosts HOST:SLOTS,...] [--dry-run]\n"
    "              [--mpirun PATH] -- PROGRAM [ARGS...]\n"
    "\n"
    "Runs PROGRAM on processes_per_host processes per host under mpirun, with the model-parallel\n"
    "parameters of FILE in the environment variable SM_HP_MP_PARAMETERS. FILE holds SMP's\n"
    "distribution dictionary:\n"
    "  {\"smdistributed\": {\"modelparallel\": {\"enabled\": true, \"parameters\": {...}}},\n"
    "   \"mpi\": {\"enabled\": true, \"processes_per_host\": 2, \"custom_mpi_options\": \"...\"}}\n"
    "\n"
    "  --distribution FILE  the distribution dictionary (JSON)\n"
    "  --hosts LIST         comma-separated HOST:SLOTS (default: this machine only)\n"
    "  --dry-run            print the command instead of running it\n"
    "  --mpirun PATH        the mpirun to run (default: mpirun from PATH)\n"
    "  -h, --help           this text\n";

// Every failure smprun detects itself: a bad command line or a bad distribution file.
struct UsageError {
  std::string msg;
};

[[noreturn]] void usage_error(const std::string& msg) { throw UsageError{msg}; }

struct Options {
  std::string distribution;
  std::string hosts;
  bool dry_run = false;
  std::string mpirun;
  std::vector<std::string> program;  // PROGRAM ARGS...
};

Options parse_args(int argc, char** argv) {
  Options o;
  auto value = [&](int& i, const std::string& flag) -> std::string {
    if (i + 1 >= argc) usage_error(fmt::format("{} needs a value", flag));
    return argv[++i];
  };
  int i = 1;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") {
      fmt::print("{}", kUsage);
      std::exit(0);
    }
    // --flag=value is accepted as well as --flag value.
    const auto eq = a.find('=');
    const bool inline_value = a.rfind("--", 0) == 0 && eq != std::string::npos;
    const std::string flag = inline_value ? a.substr(0, eq) : a;
    auto get = [&]() { return inline_value ? a.substr(eq + 1) : value(i, flag); };
    if (flag == "--distribution") {
      o.distribution = get();
    } else if (flag == "--hosts") {
      o.hosts = get();
    } else if (flag == "--mpirun") {
      o.mpirun = get();
    } else if (a == "--dry-run") {
      o.dry_run = true;
    } else if (a.rfind("-", 0) == 0) {
      usage_error(fmt::format("unknown option '{}'", a));
    } else {
      break;  // the program starts here
    }
  }
  for (; i < argc; ++i) o.program.emplace_back(argv[i]);
  if (o.distribution.empty()) usage_error("--distribution FILE.json is required");
  if (o.program.empty()) usage_error("no program given (put it after --)");
  return o;
}

struct Host {
  std::string name;
  int slots;
};

// "h1:4,h2:4" -> hosts with their slot counts; a bare host name gets `default_slots`.
std::vector<Host> parse_hosts(const std::string& list, int default_slots) {
  std::vector<Host> hosts;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto colon = item.rfind(':');
    Host h{item.substr(0, colon), default_slots};
    if (colon != std::string::npos) {
      const std::string s = item.substr(colon + 1);
      char* end = nullptr;
      const long n = std::strtol(s.c_str(), &end, 10);
      if (s.empty() || *end != '\0' || n < 1 || n > 1000000)
        usage_error(
            fmt::format("--hosts: '{}' has slot count '{}'; expected HOST:SLOTS with "
                        "SLOTS an integer >= 1",
                        item, s));
      h.slots = static_cast<int>(n);
    }
    if (h.name.empty())
      usage_error(fmt::format("--hosts: '{}' has no host name; expected HOST:SLOTS,...", item));
    hosts.push_back(h);
  }
  if (hosts.empty() || list.back() == ',')
    usage_error(fmt::format("--hosts: '{}' is not a list HOST:SLOTS,...", list));
  return hosts;
}

// A word the shell reads back unchanged.
std::string shell_quote(const std::string& w) {
  const bool plain = !w.empty() && w.find_first_not_of(
                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                       "0123456789_@%+=:,./-") == std::string::npos;
  if (plain) return w;
  std::string q = "'";
  for (char c : w) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// A directory passes access(X_OK) too, so only a regular file counts.
bool is_executable_file(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

std::string find_in_path(const std::string& name) {
  if (name.find('/') != std::string::npos) return is_executable_file(name) ? name : "";
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (is_executable_file(candidate)) return candidate;
  }
  return "";
}

// Why `program` cannot be started, looked up as mpirun looks it up (a name with a slash is a
// path, any other name is searched in PATH); empty when it can. mpirun would find out only
// after starting its daemons, and say so in a banner with an exit status of its own; here it
// is one line and smprun's usual status 2.
std::string unrunnable(const std::string& program) {
  if (program.find('/') == std::string::npos)
    return find_in_path(program).empty() ? fmt::format("{}: no such program in PATH", program) : "";
  struct stat st {};
  if (stat(program.c_str(), &st) != 0) return fmt::format("{}: {}", program, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fmt::format("{}: not a program file", program);
  if (access(program.c_str(), X_OK) != 0) return fmt::format("{}: not executable", program);
  return "";
}

Distribution read_distribution(const std::string& file) {
  std::ifstream in(file);
  if (!in) usage_error(fmt::format("cannot read {}: {}", file, std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  try {
    return smp::launcher::parse_distribution(text.str(), file);
  } catch (const smp::ConfigError& e) {
    usage_error(e.what());
  }
}

int run(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  const Distribution l = read_distribution(o.distribution);
  const int ppn = l.processes_per_host;
  const std::vector<Host> hosts = o.hosts.empty() ? std::vector<Host>{} : parse_hosts(o.hosts, ppn);
  const int nhosts = hosts.empty() ? 1 : static_cast<int>(hosts.size());
  for (const auto& h : hosts)
    if (h.slots < ppn)
      usage_error(fmt::format("--hosts: {} has {} slot(s) but processes_per_host is {}", h.name,
                              h.slots, ppn));
  const int world = ppn * nhosts;

  // The same checks every rank's smp::init would make, made once before anything starts.
  // The checks every rank's smp::init makes, made once before any process starts.
  smp::Config config;
  try {
    config = smp::Config::from_json(l.parameters, o.distribution);
  } catch (const smp::ConfigError& e) {
    usage_error(e.what());
  }
  try {
    config.validate_world(world);
  } catch (const smp::ConfigError& e) {
    usage_error(fmt::format("{}: {} (processes_per_host {} x {} host(s) = {} processes)",
                            o.distribution, e.what(), ppn, nhosts, world));
  }
  // One process per GPU, as SMP requires; without GPUs the CPU backend takes any count.
  const int gpus = smp::cuda::device_count();
  if (gpus > 0 && ppn > gpus)
    usage_error(
        fmt::format("{}: \"processes_per_host\" is {} but this machine has {} CUDA "
                    "GPU(s); libsmp runs one process per GPU",
                    o.distribution, ppn, gpus));

  if (const std::string why = unrunnable(o.program.front()); !why.empty()) usage_error(why);

  const std::string params = l.parameters.dump();
  std::string mpirun = o.mpirun.empty() ? "mpirun" : o.mpirun;
  const std::string resolved = find_in_path(mpirun);
  if (resolved.empty() && !o.dry_run)
    usage_error(o.mpirun.empty()
                    ? "mpirun not found in PATH; install Open MPI or pass --mpirun PATH"
                    : fmt::format("--mpirun {} is not an executable file", o.mpirun));
  if (!resolved.empty()) mpirun = resolved;

  std::vector<std::string> cmd = {mpirun, "-np", std::to_string(world)};
  if (hosts.empty()) {
    // Declaring P slots on this machine lets mpirun start P ranks however many cores it has.
    cmd.insert(cmd.end(), {"--host", fmt::format("localhost:{}", ppn)});
  } else {
    std::vector<std::string> items;
    for (const auto& h : hosts) items.push_back(fmt::format("{}:{}", h.name, h.slots));
    cmd.insert(cmd.end(), {"--host", fmt::format("{}", fmt::join(items, ",")), "--npernode",
                           std::to_string(ppn)});
  }
  if (geteuid() == 0) cmd.push_back("--allow-run-as-root");
  cmd.insert(cmd.end(), {"-x", "SM_HP_MP_PARAMETERS"});
  cmd.insert(cmd.end(), l.custom_options.begin(), l.custom_options.end());
  cmd.insert(cmd.end(), o.program.begin(), o.program.end());

  if (o.dry_run) {
    std::string line = "SM_HP_MP_PARAMETERS=" + shell_quote(params);
    for (const auto& w : cmd) line += " " + shell_quote(w);
    fmt::print("{}\n", line);
    return 0;
  }
  if (setenv("SM_HP_MP_PARAMETERS", params.c_str(), 1) != 0)
    usage_error(fmt::format("cannot set SM_HP_MP_PARAMETERS: {}", std::strerror(errno)));
  std::vector<char*> args;
  for (auto& w : cmd) args.push_back(w.data());
  args.push_back(nullptr);
  execv(mpirun.c_str(), args.data());
  fmt::print(stderr, "smprun: cannot run {}: {}\n", mpirun, std::strerror(errno));
  return 127;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    fmt::print(stderr, "smprun: {}\n", e.msg);
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "smprun: {}\n", e.what());
    return 2;
  }
}
