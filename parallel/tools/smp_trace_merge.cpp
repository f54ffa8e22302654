// smp-trace-merge: joins the per-rank trace files of one run into a single Chrome trace
// (docs/tracing.md), aligning the ranks on the wall clock.
#include <fmt/format.h>
#include <smp/engine/error.h>
#include <smp/parallel/trace.h>

#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

namespace {

constexpr const char* kUsage =
    "usage: smp-trace-merge OUT.json IN.json [IN.json ...]\n"
    "       smp-trace-merge OUT.json DIR\n"
    "\n"
    "Merges the trace_rank<N>.json files written under SMP_TRACE=DIR into one Chrome trace that\n"
    "ui.perfetto.dev and chrome://tracing open: every rank's timestamps are shifted onto the\n"
    "earliest rank's clock, and each rank is one process (pid = rank). Given a directory, takes\n"
    "every trace_rank<N>.json in it.\n";

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "-h") == 0 || std::strcmp(argv[i], "--help") == 0) {
      fmt::print("{}", kUsage);
      return 0;
    }
  }
  if (argc < 3) {
    fmt::print(stderr, "smp-trace-merge: expected an output file and at least one input\n{}",
               kUsage);
    return 2;
  }
  const std::string out = argv[1];
  std::vector<std::string> inputs(argv + 2, argv + argc);
  try {
    if (inputs.size() == 1 && std::filesystem::is_directory(inputs[0])) {
      const std::string dir = inputs[0];
      inputs = smp::trace::rank_files(dir);
      SMP_CHECK(!inputs.empty(), "no trace_rank<N>.json files in '{}'", dir);
    }
    smp::trace::merge_files(out, inputs);
  } catch (const std::exception& e) {
    fmt::print(stderr, "smp-trace-merge: {}\n", e.what());
    return 1;
  }
  fmt::print("smp-trace-merge: merged {} rank file(s) into {}\n", inputs.size(), out);
  return 0;
}
