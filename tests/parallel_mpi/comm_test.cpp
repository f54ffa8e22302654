// Communicators over MPI with 2, 3 and 4 ranks: every operation, every ReduceOp, uneven and
// empty pieces, tags, asynchronous completion, subgroups, timeouts. Data are small integers
// made from rank numbers, so every result is exact and computed here independently.
#include <gtest/gtest.h>
#include <smp/parallel/runtime.h>

#include <chrono>
#include <numeric>
#include <thread>

#include "comm/backend.h"

using namespace smp;

namespace {

Communicator& world() { return comm(CommGroup::WORLD); }

// An integer-valued element of rank r at index i, in [-11, 14].
double val(int r, int64_t i) { return static_cast<double>(((r + 1) * 7 + i * 3) % 23 - 11 + r); }

Tensor make(const std::vector<double>& v, Dtype d) {
  return tensor<double>(v, {static_cast<int64_t>(v.size())}).to(d);
}

std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

// Expected reduction over ranks of `f(q, i)`, rounded the way the communicator rounds Avg.
std::vector<double> reduce_expected(int n, int64_t len, ReduceOp op, Dtype d,
                                    const std::function<double(int, int64_t)>& f) {
  std::vector<double> out(static_cast<size_t>(len));
  for (int64_t i = 0; i < len; ++i) {
    double acc = f(0, i);
    for (int q = 1; q < n; ++q) {
      double x = f(q, i);
      if (op == ReduceOp::Sum || op == ReduceOp::Avg) acc += x;
      if (op == ReduceOp::Max) acc = std::max(acc, x);
      if (op == ReduceOp::Min) acc = std::min(acc, x);
    }
    if (op == ReduceOp::Avg)
      acc = d == kFloat64 ? acc / n
                          : static_cast<double>(static_cast<float>(acc) / static_cast<float>(n));
    out[static_cast<size_t>(i)] = acc;
  }
  // Round like the dtype (float16 and bfloat16 results are rounded from float32).
  return make(out, d).to_vector<double>();
}

const std::vector<ReduceOp> kOps = {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max, ReduceOp::Min};

}  // namespace

TEST(Comm, WorldDescribesTheJob) {
  auto& w = world();
  EXPECT_EQ(w.name(), "WORLD");
  EXPECT_EQ(w.rank(), rank());
  EXPECT_EQ(w.size(), size());
  std::vector<int> all(static_cast<size_t>(size()));
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(w.world_ranks(), all);
  ASSERT_GE(size(), 2) << "run these tests under mpiexec with at least 2 ranks";
}

TEST(Comm, AllreduceEveryOpAndDtype) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  const int64_t len = 37;
  for (Dtype d : {kFloat32, kFloat64, kInt64, kInt32, kFloat16, kBFloat16, kUInt8}) {
    // uint8 cannot hold negatives: shift the data up.
    const double shift = d == kUInt8 ? 11 : 0;
    auto f = [&](int q, int64_t i) { return val(q, i) + shift; };
    for (ReduceOp op : kOps) {
      SCOPED_TRACE(fmt::format("{} {}", dtype_name(d), to_string(op)));
      std::vector<double> mine(len);
      for (int64_t i = 0; i < len; ++i) mine[i] = f(r, i);
      Tensor t = make(mine, d);
      if (op == ReduceOp::Avg && !is_floating_point(d)) {
        EXPECT_THROW(w.allreduce(t, op), CommError);
        continue;
      }
      const void* before = t.data_ptr();
      w.allreduce(t, op)->wait();
      EXPECT_EQ(t.data_ptr(), before);
      EXPECT_EQ(values(t), reduce_expected(n, len, op, d, f));
    }
  }
}

TEST(Comm, AllreduceBoolIsLogical) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  const int64_t len = 12;
  auto b = [](int q, int64_t i) { return (q + i) % 3 == 0; };
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
    std::vector<double> mine(len);
    for (int64_t i = 0; i < len; ++i) mine[i] = b(r, i);
    Tensor t = make(mine, kBool);
    w.allreduce(t, op)->wait();
    std::vector<double> want(len);
    for (int64_t i = 0; i < len; ++i) {
      bool any = false, all = true;
      for (int q = 0; q < n; ++q) {
        any = any || b(q, i);
        all = all && b(q, i);
      }
      want[i] = op == ReduceOp::Min ? all : any;
    }
    EXPECT_EQ(values(t), want) << to_string(op);
  }
}

TEST(Comm, AllreduceWritesIntoTheCallersStorage) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  Tensor big = zeros({3, 5});
  Tensor row = big.select(0, 1);  // contiguous view at an offset
  ASSERT_TRUE(row.is_contiguous());
  std::vector<double> mine(5);
  for (int64_t i = 0; i < 5; ++i) mine[i] = val(r, i);
  row.copy_(make(mine, kFloat32));
  w.allreduce(row, ReduceOp::Sum)->wait();
  EXPECT_EQ(values(big.select(0, 1)), reduce_expected(n, 5, ReduceOp::Sum, kFloat32, val));
  EXPECT_EQ(values(big.select(0, 0)), std::vector<double>(5, 0.0));
  EXPECT_EQ(values(big.select(0, 2)), std::vector<double>(5, 0.0));
}

TEST(Comm, MisuseIsRejectedLocallyWithAMessage) {
  auto& w = world();
  const int n = w.size();
  Tensor nc = zeros({4, 3}).t();
  try {
    w.allreduce(nc);
    ADD_FAILURE() << "a non-contiguous tensor was accepted";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("not contiguous"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("allreduce on WORLD"), std::string::npos) << e.what();
  }
  Tensor x = zeros({3});
  std::vector<Tensor> few(static_cast<size_t>(n - 1), zeros({3}));
  try {
    w.allgather(x, few);
    ADD_FAILURE() << "too few outputs were accepted";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find(fmt::format("expected {} outputs", n)), std::string::npos)
        << e.what();
  }
  std::vector<Tensor> wrong(static_cast<size_t>(n), zeros({2}));
  EXPECT_THROW(w.allgather(x, wrong), CommError);  // this rank's slot has the wrong size
  std::vector<Tensor> mixed(static_cast<size_t>(n), zeros({3}, kInt64));
  EXPECT_THROW(w.allgather(x, mixed), CommError);
  EXPECT_THROW(w.broadcast(x, n), CommError);
  EXPECT_THROW(w.send(x, 0, -1), CommError);
  EXPECT_THROW(w.recv(x, -1, 0), CommError);
  Tensor i64 = zeros({3}, kInt64);
  try {
    w.allreduce(i64, ReduceOp::Avg);
    ADD_FAILURE() << "Avg of an integer tensor was accepted";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("Avg"), std::string::npos) << e.what();
  }
  EXPECT_THROW(detail::make_nccl_communicator(w, "X", 0), CommError);
}

TEST(Comm, BroadcastFromEveryRoot) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  for (int root = 0; root < n; ++root) {
    for (Dtype d : {kInt32, kFloat16, kFloat64}) {
      std::vector<double> mine(11, -1.0), want(11);
      for (int64_t i = 0; i < 11; ++i) {
        want[i] = val(root, i);
        if (r == root) mine[i] = want[i];
      }
      Tensor t = make(mine, d);
      w.broadcast(t, root)->wait();
      EXPECT_EQ(values(t), want) << "root " << root << " " << dtype_name(d);
    }
  }
}

namespace {
int64_t gather_count(int q) { return (q * 3) % 5; }  // 0, 3, 1, 4: rank 0 sends nothing
double gather_val(int q, int64_t i) { return 100.0 * q + static_cast<double>(i); }
}  // namespace

TEST(Comm, AllgatherUnevenSeparateViewsAndInPlace) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  std::vector<int64_t> counts;
  for (int q = 0; q < n; ++q) counts.push_back(gather_count(q));
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  auto mine = [&](int q) {
    std::vector<double> v(static_cast<size_t>(gather_count(q)));
    for (int64_t i = 0; i < gather_count(q); ++i) v[i] = gather_val(q, i);
    return v;
  };
  for (Dtype d : {kFloat64, kInt64}) {
    SCOPED_TRACE(dtype_name(d));
    Tensor input = make(mine(r), d);
    // Separate tensors: gathered through a staging buffer.
    std::vector<Tensor> outs;
    for (int q = 0; q < n; ++q) outs.push_back(full({counts[q]}, -7, d));
    w.allgather(input, outs)->wait();
    for (int q = 0; q < n; ++q) EXPECT_EQ(values(outs[q]), mine(q)) << "separate, from " << q;

    // Views of one tensor: MPI writes them in place.
    Tensor big = full({total}, -7, d);
    std::vector<Tensor> views = big.split(counts);
    w.allgather(input, views)->wait();
    std::vector<double> want;
    for (int q = 0; q < n; ++q) {
      auto m = mine(q);
      want.insert(want.end(), m.begin(), m.end());
    }
    EXPECT_EQ(values(big), want) << "views";

    // In place: the input is this rank's slot.
    Tensor big2 = full({total}, -7, d);
    std::vector<Tensor> views2 = big2.split(counts);
    views2[r].copy_(input);
    w.allgather(views2[r], views2)->wait();
    EXPECT_EQ(values(big2), want) << "in place";
  }
}

namespace {
int64_t scatter_count(int i) { return (i * 3) % 5; }  // rank 0's piece is empty
double scatter_val(int q, int i, int64_t j) { return q * 10 + i + static_cast<double>(j) - 6; }
}  // namespace

TEST(Comm, ReduceScatterUnevenEveryOp) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  std::vector<int64_t> counts;
  for (int i = 0; i < n; ++i) counts.push_back(scatter_count(i));
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  for (Dtype d : {kFloat32, kInt64, kBFloat16}) {
    for (ReduceOp op : kOps) {
      if (op == ReduceOp::Avg && !is_floating_point(d)) continue;
      SCOPED_TRACE(fmt::format("{} {}", dtype_name(d), to_string(op)));
      auto f = [&](int q, int64_t j) { return scatter_val(q, r, j); };
      const auto want = reduce_expected(n, counts[r], op, d, f);
      // Separate inputs (packed into one buffer).
      std::vector<Tensor> ins;
      for (int i = 0; i < n; ++i) {
        std::vector<double> v(static_cast<size_t>(counts[i]));
        for (int64_t j = 0; j < counts[i]; ++j) v[j] = scatter_val(r, i, j);
        ins.push_back(make(v, d));
      }
      Tensor out = full({counts[r]}, -99, d);
      w.reduce_scatter(ins, out, op)->wait();
      EXPECT_EQ(values(out), want) << "separate";

      // Inputs as the pieces of one tensor (read in place).
      Tensor big = cat(ins);
      ASSERT_EQ(big.numel(), total);
      std::vector<Tensor> pieces = big.split(counts);
      Tensor out2 = full({counts[r]}, -99, d);
      w.reduce_scatter(pieces, out2, op)->wait();
      EXPECT_EQ(values(out2), want) << "pieces";
    }
  }
}

TEST(Comm, AllToAllUneven) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  auto cnt = [](int src, int dst) { return static_cast<int64_t>((src + 2 * dst) % 3); };
  auto v = [](int src, int dst, int64_t k) { return 1000.0 * src + 10.0 * dst + k; };
  auto piece = [&](int src, int dst) {
    std::vector<double> p(static_cast<size_t>(cnt(src, dst)));
    for (int64_t k = 0; k < cnt(src, dst); ++k) p[k] = v(src, dst, k);
    return p;
  };
  for (bool views : {false, true}) {
    SCOPED_TRACE(views ? "views of one tensor" : "separate tensors");
    std::vector<Tensor> ins, outs;
    std::vector<int64_t> in_counts, out_counts;
    for (int q = 0; q < n; ++q) {
      ins.push_back(make(piece(r, q), kInt32));
      in_counts.push_back(cnt(r, q));
      out_counts.push_back(cnt(q, r));
    }
    Tensor out_big;
    if (views) {
      ins = cat(ins).split(in_counts);
      out_big =
          full({std::accumulate(out_counts.begin(), out_counts.end(), int64_t{0})}, -1, kInt32);
      outs = out_big.split(out_counts);
    } else {
      for (int q = 0; q < n; ++q) outs.push_back(full({out_counts[q]}, -1, kInt32));
    }
    w.all_to_all(ins, outs)->wait();
    for (int q = 0; q < n; ++q) EXPECT_EQ(values(outs[q]), piece(q, r)) << "from " << q;
  }
}

TEST(Comm, SendRecvRingWithTags) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  auto msg = [](int from, int tag, int64_t len) {
    std::vector<double> m(static_cast<size_t>(len));
    for (int64_t i = 0; i < len; ++i) m[i] = from * 100 + tag * 10 + static_cast<double>(i);
    return m;
  };
  // Receives posted first and in the other tag order: tags, not order, must match them.
  Tensor in1 = zeros({8}, kFloat64), in0 = zeros({5}, kFloat64);
  auto r1 = w.recv(in1, prev, 1);
  auto r0 = w.recv(in0, prev, 0);
  auto s0 = w.send(make(msg(r, 0, 5), kFloat64), next, 0);
  auto s1 = w.send(make(msg(r, 1, 8), kFloat64), next, 1);
  r0->wait();
  EXPECT_EQ(values(in0), msg(prev, 0, 5));
  s1->wait();
  r1->wait();
  EXPECT_EQ(values(in1), msg(prev, 1, 8));
  s0->wait();
  EXPECT_TRUE(s0->is_completed());
  EXPECT_TRUE(r1->is_completed());
}

TEST(Comm, RecvOfTheWrongSizeFails) {
  auto& w = world();
  const int r = w.rank();
  if (r == 0) {
    w.send(ones({4}), 1, 9)->wait();
  } else if (r == 1) {
    Tensor t = zeros({6});
    auto work = w.recv(t, 0, 9);
    try {
      work->wait();
      ADD_FAILURE() << "a short message was accepted";
    } catch (const CommError& e) {
      EXPECT_NE(std::string(e.what()).find("expected 24 bytes"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("received 16"), std::string::npos) << e.what();
    }
  }
  w.barrier()->wait();
}

TEST(Comm, OperationsCompleteInAnyWaitOrderAndWithoutWaiting) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  const int64_t len = 100000;
  std::vector<double> a(len), c(len);
  for (int64_t i = 0; i < len; ++i) {
    a[i] = val(r, i);
    c[i] = val(r, i + 5);
  }
  Tensor ta = make(a, kFloat64), tc = make(c, kFloat32);
  Tensor tb = r == n - 1 ? arange(1000, TensorOptions(kInt64)) : zeros({1000}, kInt64);
  auto wa = w.allreduce(ta, ReduceOp::Sum);
  auto wb = w.broadcast(tb, n - 1);
  auto wc = w.allreduce(tc, ReduceOp::Max);
  auto wd = w.barrier();
  wd->wait();
  wc->wait();
  wa->wait();
  wb->wait();
  EXPECT_EQ(values(ta), reduce_expected(n, len, ReduceOp::Sum, kFloat64, val));
  EXPECT_EQ(values(tc), reduce_expected(n, len, ReduceOp::Max, kFloat32,
                                        [](int q, int64_t i) { return val(q, i + 5); }));
  EXPECT_EQ(values(tb), values(arange(1000, TensorOptions(kInt64))));

  // Nobody waits: the progress thread alone must finish the operation while this thread
  // "computes" (sleeps), as DDP's allreduce during backward needs.
  Tensor big = full({1 << 20}, static_cast<double>(r + 1));
  auto wbig = w.allreduce(big);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!wbig->is_completed() && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(wbig->is_completed());
  wbig->wait();
  EXPECT_EQ(big.select(0, 0).item<double>(), n * (n + 1) / 2.0);
  EXPECT_EQ(big.select(0, (1 << 20) - 1).item<double>(), n * (n + 1) / 2.0);
}

TEST(Comm, SubgroupsOfEvenAndOddRanks) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  std::vector<int> members;
  for (int q = r % 2; q < n; q += 2) members.push_back(q);
  MPI_Comm c = MPI_COMM_NULL;
  {
    std::lock_guard<std::mutex> lk(detail::mpi_mutex());
    ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, r % 2, r, &c), MPI_SUCCESS);
  }
  auto g = detail::make_mpi_communicator(c, r % 2 ? "ODD" : "EVEN", members);
  EXPECT_EQ(g->size(), static_cast<int>(members.size()));
  EXPECT_EQ(g->world_ranks(), members);
  EXPECT_EQ(g->world_ranks()[g->rank()], r);

  // A subgroup collective and a WORLD collective in flight at once.
  Tensor sub = tensor<int64_t>({r, 1});
  Tensor all = tensor<int64_t>({r});
  auto ws = g->allreduce(sub);
  auto ww = w.allreduce(all);
  ww->wait();
  ws->wait();
  const int64_t member_sum = std::accumulate(members.begin(), members.end(), int64_t{0});
  EXPECT_EQ(sub.to_vector<int64_t>(),
            (std::vector<int64_t>{member_sum, static_cast<int64_t>(members.size())}));
  EXPECT_EQ(all.item<int64_t>(), static_cast<int64_t>(n) * (n - 1) / 2);

  // Group ranks, not global ranks, address broadcast and point to point.
  Tensor b = tensor<int64_t>({g->rank() == 0 ? 1000 + r : -1});
  g->broadcast(b, 0)->wait();
  EXPECT_EQ(b.item<int64_t>(), 1000 + members[0]);
  if (g->size() >= 2) {
    const int gn = g->size(), gr = g->rank();
    Tensor got = zeros({1}, kInt64);
    auto rw = g->recv(got, (gr + gn - 1) % gn, 3);
    g->send(tensor<int64_t>({r}), (gr + 1) % gn, 3)->wait();
    rw->wait();
    EXPECT_EQ(got.item<int64_t>(), members[(gr + gn - 1) % gn]);
  }
  g->barrier()->wait();
}

TEST(Comm, ZeroSizeTensors) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  Tensor e = zeros({0});
  w.allreduce(e)->wait();
  w.allreduce(e, ReduceOp::Avg)->wait();
  w.broadcast(e, 0)->wait();
  std::vector<Tensor> outs(static_cast<size_t>(n), zeros({0}));
  w.allgather(e, outs)->wait();
  Tensor out = zeros({0});
  w.reduce_scatter(outs, out)->wait();
  std::vector<Tensor> ins(static_cast<size_t>(n), zeros({0}));
  w.all_to_all(ins, outs)->wait();
  Tensor got = zeros({0});
  auto rw = w.recv(got, (r + n - 1) % n, 0);
  w.send(e, (r + 1) % n, 0)->wait();
  rw->wait();
  Tensor e2 = zeros({0, 3}, kFloat16);
  w.allreduce(e2)->wait();
  EXPECT_EQ(e2.numel(), 0);
}

TEST(Comm, TimeoutsNameTheOperationAndThePeers) {
  auto& w = world();
  const int n = w.size(), r = w.rank();
  const double saved = comm_timeout();
  // Point to point: rank 0 waits for a message rank n-1 sends only later.
  WorkPtr stale;
  Tensor slot = zeros({8});
  if (r == 0) {
    set_comm_timeout(1);
    stale = w.recv(slot, n - 1, 77);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      stale->wait();
      ADD_FAILURE() << "the receive did not time out";
    } catch (const CommError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("recv on WORLD"), std::string::npos) << m;
      EXPECT_NE(m.find("timed out after 1 s"), std::string::npos) << m;
      EXPECT_NE(m.find(fmt::format("peer rank {} (global)", n - 1)), std::string::npos) << m;
      EXPECT_NE(m.find("tag 77"), std::string::npos) << m;
    }
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(waited, 0.9);
    EXPECT_LT(waited, 5.0);
    set_comm_timeout(saved);
  }
  w.barrier()->wait();
  if (r == n - 1) w.send(full({8}, 5.0), 0, 77)->wait();
  if (r == 0) {
    stale->wait();  // the timed-out receive is still posted and now completes
    EXPECT_EQ(values(slot), std::vector<double>(8, 5.0));
  }

  // Collective: on a group of its own, rank 0 arrives alone first.
  MPI_Comm c = MPI_COMM_NULL;
  {
    std::lock_guard<std::mutex> lk(detail::mpi_mutex());
    ASSERT_EQ(MPI_Comm_dup(MPI_COMM_WORLD, &c), MPI_SUCCESS);
  }
  auto g = detail::make_mpi_communicator(c, "TIMEOUT_GROUP", w.world_ranks());
  Tensor t = full({3}, static_cast<double>(r));
  WorkPtr early;
  if (r == 0) {
    set_comm_timeout(1);
    early = g->allreduce(t);
    try {
      early->wait();
      ADD_FAILURE() << "the allreduce did not time out";
    } catch (const RemoteFailure&) {
      ADD_FAILURE() << "a timeout is not a remote failure";
    } catch (const CommError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(fmt::format("allreduce on TIMEOUT_GROUP {}",
                                   fmt::format("[{}]", fmt::join(w.world_ranks(), ", ")))),
                std::string::npos)
          << m;
      EXPECT_NE(m.find("timed out after 1 s"), std::string::npos) << m;
      EXPECT_NE(m.find("(rank 0 waited for ranks"), std::string::npos) << m;
    }
    set_comm_timeout(saved);
  }
  w.barrier()->wait();
  if (r != 0) early = g->allreduce(t);
  early->wait();
  EXPECT_EQ(values(t), std::vector<double>(3, n * (n - 1) / 2.0));
}
