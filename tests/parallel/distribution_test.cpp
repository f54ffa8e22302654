// parse_distribution: smprun's reader of SMP's distribution dictionary (the smprun_* tests run
// the whole launcher on files; these run the parser on text no file in the tree holds).
#include "distribution.h"

#include <gtest/gtest.h>

#include <string>

namespace {

std::string error_of(const std::string& text) {
  try {
    smp::launcher::parse_distribution(text, "d.json");
  } catch (const smp::ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "accepted: " << text.substr(0, 200);
  return "";
}

}  // namespace

TEST(Distribution, ReadsTheLaunchAndLeavesParametersUnchecked) {
  const auto d = smp::launcher::parse_distribution(
      R"({"smdistributed": {"modelparallel": {"enabled": true, "parameters": {"x": 1}}},
          "mpi": {"enabled": true, "processes_per_host": 3,
                  "custom_mpi_options": "-x 'A B' --tag-output"}})",
      "d.json");
  EXPECT_EQ(d.processes_per_host, 3);
  EXPECT_EQ(d.parameters, nlohmann::json({{"x", 1}}));
  EXPECT_EQ(d.custom_options, (std::vector<std::string>{"-x", "A B", "--tag-output"}));
}

TEST(Distribution, RefusalsNameTheFile) {
  EXPECT_NE(error_of("{").find("d.json: not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(R"({"mpi": 1})")
                .find("d.json: the distribution dictionary has no "
                      "\"smdistributed\" dictionary"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"smdistributed": {"modelparallel": {"enabled": true}},
                         "mpi": {"enabled": true, "processes_per_host": 1,
                                 "custom_mpi_options": "'open"}})")
                .find("unterminated '"),
            std::string::npos);
}

// A document nested 100,000 deep (200 KB) is quoted in the message cut short; quoting it whole
// recursed once per level and overflowed smprun's stack.
TEST(Distribution, DeeplyNestedDocumentIsQuotedShort) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string msg = error_of(deep);
  const std::string shown = std::string(8, '[') + "[...]" + std::string(8, ']');
  EXPECT_NE(msg.find("expected a JSON object (the distribution dictionary), got " + shown),
            std::string::npos)
      << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 1000u);
}

// A number no double holds is nlohmann's out_of_range, not a parse_error; it escaped
// parse_distribution as a foreign exception (found by fuzz_distribution).
TEST(Distribution, NumberBeyondDoubleIsAConfigError) {
  const std::string msg = error_of(R"({"smdistributed": 1e309})");
  EXPECT_NE(msg.find("d.json: not valid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("number overflow parsing '1e309'"), std::string::npos) << msg;
}
