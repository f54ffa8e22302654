// Per-rank Chrome-trace recording of the pipeline (docs/tracing.md): spans for forward, backward,
// communication and steps, idle time (bubbles) inside each step, and merging of the rank files.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace smp::trace {

/// What a span measures; written as the Chrome event's category ("forward", "send", ...).
enum class Kind { Forward, Backward, Send, Recv, Allreduce, Idle, Step, Other };

/// Lower-case name of a kind, as it appears in the "cat" field of the trace.
const char* to_string(Kind kind);

/// Turns recording on for this process; flush() writes DIR/trace_rank<rank>.json. Drops anything
/// recorded before (a second enable starts a new trace). DIR is created at flush time.
void enable(const std::string& dir, int rank, int world_size);
/// enable(DIR, rank, world_size) when the environment variable SMP_TRACE=DIR is set and not
/// empty; returns whether recording is on afterwards. smp::init calls this.
bool enable_from_env(int rank, int world_size);
/// Whether recording is on: one atomic load, so callers can skip building span names.
bool enabled();
/// Stops recording and discards what was recorded without writing it.
void disable();
/// Writes the trace file (when enabled), replacing what an earlier flush wrote. Recording goes
/// on. Throws smp::Error when the file cannot be written.
void flush();
/// flush() then disable(): the end of a traced run.
void finalize();

/// Names the calling thread's track in the trace ("microbatch 3"); default "thread N".
void set_thread_name(const std::string& name);

/// RAII span: records [construction, destruction) on the calling thread while recording is on;
/// costs one atomic load otherwise. -1 means "not applicable" for microbatch, peer and bytes.
class Span {
 public:
  Span(Kind kind, std::string name, int microbatch = -1, int peer = -1, int64_t bytes = -1);
  ~Span();
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;

 private:
  Kind kind_;
  int microbatch_;
  int peer_;
  int64_t bytes_;
  uint64_t session_ = 0;  // 0: recording was off at construction
  std::string name_;
  std::chrono::steady_clock::time_point begin_;
};

/// Records a finished span with explicit times, on the calling thread's track (for asynchronous
/// operations whose start and completion are seen at different places). No-op when disabled.
void record(Kind kind, std::string name, std::chrono::steady_clock::time_point begin,
            std::chrono::steady_clock::time_point end, int microbatch = -1, int peer = -1,
            int64_t bytes = -1);

/// Totals of one rank file, in microseconds. Busy time is the union over all threads of
/// forward, backward, allreduce and other spans (send/recv are asynchronous and do not count);
/// idle time is the sum of the idle spans flush() put into step spans.
struct Summary {
  double busy_us = 0;
  double idle_us = 0;
  double step_us = 0;                        ///< total length of the step spans
  std::map<std::string, double> by_kind_us;  ///< sum of span lengths per category
};

/// Reads a rank file written by flush() (or a merged file) back. Throws smp::Error when the file
/// is missing or is not a trace.
Summary summarize(const std::string& file);

/// The trace_rank<N>.json files in `dir`, ordered by N.
std::vector<std::string> rank_files(const std::string& dir);

/// Merges rank files into one Chrome trace: each rank's timestamps are shifted by its
/// epoch_unix_us minus the smallest one, so all ranks share one time axis (exact for ranks on
/// one machine, as good as clock synchronisation across machines). pid stays the rank. Throws
/// smp::Error for an unreadable file, a file without otherData.rank/epoch_unix_us, or two files
/// of the same rank.
void merge_files(const std::string& out, const std::vector<std::string>& inputs);

}  // namespace smp::trace
