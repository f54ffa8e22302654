// smp::Config::parse (the `modelparallel` parameters: --smp-config files and
// SM_HP_MP_PARAMETERS) on arbitrary text, then the checks smp::init makes on it.
#include <smp/parallel/config.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::optional<smp::Config> c;
  smp::fuzz::expect_only_smp_errors([&] { c = smp::Config::parse(text, "fuzz"); });
  if (!c) return 0;
  for (int world : {1, 2, 3, 4, 8})
    smp::fuzz::expect_only_smp_errors([&] { c->validate_world(world); });
  // An accepted config has all of these; none may throw.
  c->placement();
  c->memory_weight_value();
  c->active_microbatches_value();
  // Documented: from_json(to_json()) accepts it and gives the same effective values.
  const nlohmann::json j = c->to_json();
  const nlohmann::json again = smp::Config::from_json(j, "fuzz round trip").to_json();
  if (again != j) {
    std::fprintf(stderr, "fuzz: to_json round trip differs:\n%s\n%s\n", j.dump().c_str(),
                 again.dump().c_str());
    std::abort();
  }
  return 0;
}
