// The tensor-parallel degree, rank and batch mode as the distributed modules read them (a
// world of one before smp::init).
#pragma once

#include <cstdint>
#include <string>

namespace smp::detail::tp {

int size();
int rank();
/// SMP's prescaled_batch: every rank of a TP group holds the same batch.
bool prescaled();
/// optimize "memory": distributed transformer layers run sequence-parallel.
bool sequence_parallel();
/// ConfigError unless the degree divides n ("{what} has {n} {dim_name}, which ...").
void check_divides(const std::string& what, int64_t n, const char* dim_name);

}  // namespace smp::detail::tp
