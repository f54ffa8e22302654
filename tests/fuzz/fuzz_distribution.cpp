// smprun's distribution dictionary on arbitrary text: parse_distribution, then the checks
// smprun makes on the parameters before it starts mpirun.
#include <optional>

#include "distribution.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::optional<smp::launcher::Distribution> d;
  smp::fuzz::expect_only_smp_errors(
      [&] { d = smp::launcher::parse_distribution(text, "fuzz.json"); });
  if (!d) return 0;
  if (d->processes_per_host < 1) std::abort();
  smp::fuzz::expect_only_smp_errors([&] {
    smp::Config c = smp::Config::from_json(d->parameters, "fuzz.json");
    c.validate_world(d->processes_per_host);
  });
  return 0;
}
