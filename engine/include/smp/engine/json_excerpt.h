// JSON values quoted in error messages about files and configs a user handed libsmp.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

namespace smp {

/// `v` as compact JSON text for a message: nesting deeper than 8 levels is shown as [...] or
/// {...} and the text is cut at about `max_chars`. nlohmann's dump() recurses once per level,
/// so dumping a value nested 100,000 deep (a 200 KB file) overflows the stack; this does not.
std::string json_excerpt(const nlohmann::json& v, size_t max_chars = 200);

}  // namespace smp
