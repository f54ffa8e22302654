// smprun's distribution dictionary: SMP's `distribution` argument, the JSON file smprun reads.
#pragma once

#include <smp/parallel/config.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace smp::launcher {

/// What smprun takes from the dictionary.
struct Distribution {
  nlohmann::json parameters;  ///< the `modelparallel` parameters, not yet checked
  int processes_per_host = 1;
  std::vector<std::string> custom_options;  ///< custom_mpi_options split into words
};

/// Parses `text`, the dictionary read from `file` ({"smdistributed": {"modelparallel":
/// {"enabled": true, "parameters": {...}}}, "mpi": {"enabled": true, "processes_per_host": N,
/// "custom_mpi_options": "..."}}). Anything else is a ConfigError naming `file`. The parameters
/// themselves are checked by Config::from_json.
Distribution parse_distribution(const std::string& text, const std::string& file);

/// Splits `s` into words as a POSIX shell would for plain text (see the definition); an
/// unterminated quote is a ConfigError.
std::vector<std::string> split_words(const std::string& s);

}  // namespace smp::launcher
