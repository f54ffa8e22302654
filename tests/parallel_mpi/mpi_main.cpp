// main() of parallel_mpi_tests: runs under mpiexec. Every rank runs every test; only rank 0
// prints gtest's report (other ranks print their failures, prefixed with their rank), and the
// exit status is non-zero when a test failed on any rank.
#include <gtest/gtest.h>
#include <smp/parallel/runtime.h>

#include <cstdio>

namespace {

/// On ranks other than 0: failures only, each line prefixed with the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
    std::fflush(stderr);
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed())
      std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(), info.name());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  smp::init();
  // A test that desynchronises the ranks then fails in seconds instead of hanging to CTest's limit.
  smp::set_comm_timeout(30);
  const int rank = smp::rank();
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (rank != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  const int rc = RUN_ALL_TESTS();

  smp::Tensor failed = smp::tensor<int64_t>({rc != 0 ? 1 : 0});
  int status = 1;
  try {
    smp::comm().allreduce(failed, smp::ReduceOp::Max)->wait();
    status = failed.item<int64_t>() != 0 ? 1 : 0;
    if (rank == 0 && status != 0 && rc == 0)
      std::fprintf(stderr, "parallel_mpi_tests: a test failed on another rank (see above)\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] could not collect the results: %s\n", rank, e.what());
  }
  smp::finalize();
  return status;
}
