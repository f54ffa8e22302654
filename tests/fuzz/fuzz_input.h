// Helpers shared by the fuzz targets: the input as a file the readers can open, and the one
// rule for what a reader may throw.
#pragma once

#include <smp/engine/error.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace smp::fuzz {

/// One in-memory file (memfd) per process, refilled with each input. Its path,
/// /proc/self/fd/N, opens like any file, so the readers run exactly as on disk.
class InputFile {
 public:
  InputFile() : fd_(memfd_create("smp-fuzz-input", 0)) {
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  /// Replaces the file's contents with `data` and returns its path.
  const std::string& write(const uint8_t* data, size_t size) {
    if (ftruncate(fd_, 0) != 0) std::abort();
    size_t done = 0;
    while (done < size) {
      ssize_t n = pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    return path_;
  }

 private:
  int fd_;
  std::string path_;
};

inline InputFile& input_file() {
  static InputFile f;
  return f;
}

/// Runs `read`. smp::Error (and its subclasses, such as ConfigError) is the documented
/// answer to a bad file and ends the input quietly; an internal assertion is a libsmp bug
/// and aborts, as does anything else thrown (libFuzzer reports both as crashes).
template <class F>
void expect_only_smp_errors(F&& read) {
  try {
    read();
  } catch (const smp::Error& e) {
    if (std::string_view(e.what()).starts_with("internal error")) {
      std::fprintf(stderr, "fuzz: internal assertion failed: %s\n", e.what());
      std::abort();
    }
  }
}

}  // namespace smp::fuzz
