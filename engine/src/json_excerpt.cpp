#include <smp/engine/json_excerpt.h>

namespace smp {
namespace {

constexpr int kMaxDepth = 8;

void put(const nlohmann::json& v, int depth, size_t max_chars, std::string& out) {
  if (out.size() > max_chars) return;
  if (!v.is_structured()) {
    out += v.dump();  // a scalar: no recursion
    return;
  }
  const bool array = v.is_array();
  if (depth >= kMaxDepth && !v.empty()) {
    out += array ? "[...]" : "{...}";
    return;
  }
  out += array ? '[' : '{';
  bool first = true;
  for (auto it = v.begin(); it != v.end() && out.size() <= max_chars; ++it) {
    if (!first) out += ',';
    first = false;
    if (!array) out += nlohmann::json(it.key()).dump() + ':';
    put(it.value(), depth + 1, max_chars, out);
  }
  out += array ? ']' : '}';
}

}  // namespace

std::string json_excerpt(const nlohmann::json& v, size_t max_chars) {
  std::string out;
  put(v, 0, max_chars, out);
  if (out.size() > max_chars) out = out.substr(0, max_chars) + "...";
  return out;
}

}  // namespace smp
