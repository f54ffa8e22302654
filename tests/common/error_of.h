// The message of the smp::Error a call throws, for tests that check what an error says.
#pragma once

#include <smp/engine/error.h>

#include <functional>
#include <string>

namespace smp::test {

/// What `f` throws as smp::Error, or "" when it returns normally.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace smp::test
