// Errors: smp::Error for user mistakes, SMP_ASSERT for broken internal invariants.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace smp {

/// Thrown for every user-facing error: bad shapes, dtypes, devices, files, configs.
/// The message says what was given and what was expected.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);
[[noreturn]] void assert_fail(const char* file, int line, const char* cond,
                              const std::string& msg);
}  // namespace detail

}  // namespace smp

/// User-error check: SMP_CHECK(a.dim() == 2, "mm: expected a 2-D tensor, got {}-D", a.dim())
#define SMP_CHECK(cond, ...)                                                 \
  do {                                                                       \
    if (!(cond)) ::smp::detail::throw_error(__FILE__, __LINE__,              \
                                            ::fmt::format(__VA_ARGS__));     \
  } while (0)

/// Unconditional user error.
#define SMP_ERROR(...) ::smp::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))

/// Internal invariant; failing it is a libsmp bug, reported as smp::Error (never abort).
#define SMP_ASSERT(cond, ...)                                                         \
  do {                                                                                \
    if (!(cond)) ::smp::detail::assert_fail(__FILE__, __LINE__, #cond,                \
                                            ::fmt::format("" __VA_ARGS__));           \
  } while (0)
