#include <smp/engine/error.h>

namespace smp::detail {

void throw_error(const char* /*file*/, int /*line*/, const std::string& msg) { throw Error(msg); }

void assert_fail(const char* file, int line, const char* cond, const std::string& msg) {
  throw Error(fmt::format("internal error (a libsmp bug) at {}:{}: {} failed{}{}", file, line,
                          cond, msg.empty() ? "" : ": ", msg));
}

}  // namespace smp::detail
