// smprun's distribution dictionary (docs/launcher.md): parsed apart from the launch, so the
// fuzz target tests/fuzz/fuzz_distribution.cpp runs the same code on arbitrary text.
#include "distribution.h"

#include <fmt/format.h>
#include <smp/engine/json_excerpt.h>

#include <algorithm>
#include <cstring>

namespace smp::launcher {

namespace {

using nlohmann::json;

[[noreturn]] void usage_error(const std::string& msg) { throw ConfigError(msg); }

// Member `key` of object `parent` (named `where` in messages), which must be an object.
const json& sub_object(const json& parent, const std::string& key, const std::string& where,
                       const std::string& file) {
  if (!parent.contains(key))
    usage_error(fmt::format("{}: {} has no \"{}\" dictionary", file, where, key));
  const json& v = parent.at(key);
  if (!v.is_object())
    usage_error(fmt::format("{}: \"{}\" is {}; expected a dictionary", file, key, json_excerpt(v)));
  return v;
}

void expect_only(const json& obj, const std::vector<std::string>& keys, const std::string& where,
                 const std::string& file) {
  for (const auto& [k, v] : obj.items())
    if (std::find(keys.begin(), keys.end(), k) == keys.end())
      usage_error(fmt::format("{}: unknown key \"{}\" in {}; the known keys are: {}", file, k,
                              where, fmt::join(keys, ", ")));
}

void expect_enabled(const json& obj, const std::string& where, const std::string& file) {
  if (!obj.contains("enabled"))
    usage_error(
        fmt::format("{}: {} has no \"enabled\"; smprun needs \"enabled\": true", file, where));
  if (obj.at("enabled") != json(true))
    usage_error(fmt::format("{}: {} has \"enabled\": {}; smprun needs \"enabled\": true", file,
                            where, json_excerpt(obj.at("enabled"))));
}

}  // namespace

Distribution parse_distribution(const std::string& text, const std::string& file) {
  json d;
  try {
    d = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for 1e309
    usage_error(fmt::format("{}: not valid JSON: {}", file, e.what()));
  }
  if (!d.is_object())
    usage_error(fmt::format("{}: expected a JSON object (the distribution dictionary), got {}",
                            file, json_excerpt(d)));
  expect_only(d, {"smdistributed", "mpi"}, "the distribution dictionary", file);

  const json& smd = sub_object(d, "smdistributed", "the distribution dictionary", file);
  const json& mp = sub_object(smd, "modelparallel", "\"smdistributed\"", file);
  expect_only(mp, {"enabled", "parameters"}, "\"modelparallel\"", file);
  expect_enabled(mp, "\"modelparallel\"", file);
  const json& mpi = sub_object(d, "mpi", "the distribution dictionary", file);
  expect_only(mpi, {"enabled", "processes_per_host", "custom_mpi_options"}, "\"mpi\"", file);
  expect_enabled(mpi, "\"mpi\"", file);

  Distribution l;
  l.parameters = mp.contains("parameters") ? mp.at("parameters") : json::object();
  if (!mpi.contains("processes_per_host"))
    usage_error(fmt::format("{}: \"mpi\" has no \"processes_per_host\" (an integer >= 1)", file));
  const json& ppn = mpi.at("processes_per_host");
  if (!ppn.is_number_integer() || ppn.get<long long>() < 1 || ppn.get<long long>() > 1000000)
    usage_error(fmt::format("{}: \"processes_per_host\" is {}; expected an integer >= 1", file,
                            json_excerpt(ppn)));
  l.processes_per_host = ppn.get<int>();
  if (mpi.contains("custom_mpi_options")) {
    const json& opts = mpi.at("custom_mpi_options");
    if (!opts.is_string())
      usage_error(
          fmt::format("{}: \"custom_mpi_options\" is {}; expected a string of mpirun "
                      "options",
                      file, json_excerpt(opts)));
    l.custom_options = split_words(opts.get<std::string>());
  }
  return l;
}

// Splits `s` into words as a POSIX shell would for plain text: blanks separate, '...' is
// literal, "..." allows \" \\ \$ \` escapes, and a backslash outside quotes escapes the next
// character. No expansion of any kind happens.
std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(cur);
      cur.clear();
      in_word = false;
    } else if (c == '\'') {
      const auto close = s.find('\'', i + 1);
      if (close == std::string::npos)
        usage_error(fmt::format("custom_mpi_options: unterminated ' in \"{}\"", s));
      cur += s.substr(i + 1, close - i - 1);
      i = close;
      in_word = true;
    } else if (c == '"') {
      size_t j = i + 1;
      for (; j < s.size() && s[j] != '"'; ++j) {
        if (s[j] == '\\' && j + 1 < s.size() && std::strchr("\"\\$`", s[j + 1])) ++j;
        cur += s[j];
      }
      if (j >= s.size())
        usage_error(fmt::format("custom_mpi_options: unterminated \" in \"{}\"", s));
      i = j;
      in_word = true;
    } else if (c == '\\') {
      if (i + 1 < s.size()) cur += s[++i];
      in_word = true;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(cur);
  return words;
}

}  // namespace smp::launcher
