// gtest main for tests that run under mpirun: every rank runs every test; rank 0 prints; the
// exit status is non-zero when any rank failed.
#include <gtest/gtest.h>
#include <smp/parallel/runtime.h>

#include <cstdio>

namespace {
/// Other ranks stay quiet except for failed assertions, which carry the rank.
class FailurePrinter : public ::testing::EmptyTestEventListener {
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: %s\n", smp::rank(),
                   r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }
};
}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  smp::init(argc, argv);
  if (smp::rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter);
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  smp::Tensor flag = smp::full({1}, failed, smp::kInt64);
  smp::comm().allreduce(flag, smp::ReduceOp::Max)->wait();
  failed = static_cast<int>(flag.item<int64_t>());
  if (failed && smp::rank() == 0) std::fprintf(stderr, "ddp_tests: a test failed on some rank\n");
  smp::finalize();
  return failed;
}
