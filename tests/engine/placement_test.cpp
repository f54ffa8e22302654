// The placement hook: op scopes, meta outputs for ops placed on another rank, materialized
// inputs, backward under the forward's placement, and gradient accumulation across ranks.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <functional>
#include <map>
#include <string>

using namespace smp;

namespace {

/// Returns what `decide` says for each op and records every call.
class FakeHook : public PlacementHook {
 public:
  explicit FakeHook(Placement fixed)
      : decide_([fixed](const std::string&, auto&) { return fixed; }) {}
  explicit FakeHook(
      std::function<Placement(const std::string&, const std::vector<const Tensor*>&)> decide)
      : decide_(std::move(decide)) {}

  Placement place(const char* op, const std::vector<const Tensor*>& inputs) override {
    ops.emplace_back(op);
    input_counts.push_back(inputs.size());
    EXPECT_EQ(current_placement(), nullptr) << "the hook runs before the op's scope opens";
    return decide_(op, inputs);
  }

  int calls() const { return static_cast<int>(ops.size()); }
  void reset() {
    ops.clear();
    input_counts.clear();
  }

  std::vector<std::string> ops;
  std::vector<size_t> input_counts;

 private:
  std::function<Placement(const std::string&, const std::vector<const Tensor*>&)> decide_;
};

/// Installs a hook for the scope.
class Installed {
 public:
  explicit Installed(PlacementHook* h) : prev_(set_placement_hook(h)) {}
  ~Installed() { set_placement_hook(prev_); }

 private:
  PlacementHook* prev_;
};

void expect_meta(const Tensor& t, const Shape& shape, int partition) {
  EXPECT_TRUE(t.is_meta()) << t.to_string();
  EXPECT_EQ(t.sizes(), shape);
  EXPECT_EQ(smp::detail::held_by(t), partition);
}

// Gives a meta tensor the storage and device of `value` in place, as a receive would.
void materialize(const Tensor& meta, const Tensor& value) {
  ASSERT_EQ(meta.sizes(), value.sizes());
  smp::detail::materialize(meta, value.contiguous());
}

Tensor meta_on(const Shape& shape, int partition) {
  Tensor t = empty(shape, TensorOptions(kFloat32).device(Device(kMeta)));
  smp::detail::set_held_by(t, partition);
  return t;
}

}  // namespace

TEST(Placement, NonLocalOpsMakeMetaOutputsFromRealInputs) {
  manual_seed(1);
  Tensor a = randn({2, 3}), b = randn({2, 3}), w = randn({4, 3}), bias = randn({4});
  Tensor wt = w.t().contiguous();
  Tensor img = randn({1, 2, 5, 5}), kernel = randn({3, 2, 3, 3});
  Tensor target = tensor<int64_t>({0, 3});
  std::vector<float> a_before = a.to_vector<float>();

  FakeHook hook(Placement{1, false});
  Installed on(&hook);
  expect_meta(a + b, {2, 3}, 1);
  expect_meta(matmul(a, wt), {2, 4}, 1);
  expect_meta(linear(a, w, bias), {2, 4}, 1);
  expect_meta(conv2d(img, kernel, Tensor(), {1, 1}, {0, 0}), {1, 3, 3, 3}, 1);
  expect_meta(a.relu(), {2, 3}, 1);
  expect_meta(a.sum({1}), {2}, 1);
  expect_meta(cross_entropy(linear(a, w, bias), target), {}, 1);
  expect_meta(a.to(kFloat64), {2, 3}, 1);
  expect_meta(cat({a, b}, 1), {2, 6}, 1);
  expect_meta(dropout(a, 0.5, true), {2, 3}, 1);
  expect_meta(rand_like(a), {2, 3}, 1);
  // Meta and real inputs may meet once the op is placed.
  expect_meta(a * meta_on({2, 3}, 0), {2, 3}, 1);

  EXPECT_FALSE(a.is_meta());
  EXPECT_EQ(smp::detail::held_by(a), -1);
  EXPECT_EQ(a.to_vector<float>(), a_before);
}

TEST(Placement, NonLocalViewsOfRealTensorsAreMeta) {
  Tensor a = arange(6, kFloat32).reshape({2, 3});
  FakeHook hook(Placement{1, false});
  Installed on(&hook);
  for (const Tensor& v :
       {a.view({3, 2}), a.reshape({6}), a.t(), a.transpose(0, 1), a.select(0, 1), a.narrow(1, 0, 2),
        a.unsqueeze(0), a.expand({4, 2, 3}), a.permute({1, 0}), a.flatten()}) {
    EXPECT_TRUE(v.is_meta());
    EXPECT_FALSE(v.is_alias_of(a));
    EXPECT_EQ(smp::detail::held_by(v), 1);
  }
  std::vector<Tensor> parts = a.split(1, 0);
  ASSERT_EQ(parts.size(), 2u);
  expect_meta(parts[1], {1, 3}, 1);
}

TEST(Placement, NonLocalInPlaceOpsLeaveRealTensorsUnchanged) {
  Tensor a = arange(6, kFloat32).reshape({2, 3}) + 1.0;
  Tensor b = full({2, 3}, 5.0);
  std::vector<float> before = a.to_vector<float>();
  FakeHook hook(Placement{1, false});
  {
    Installed on(&hook);
    a.add_(b);
    a.mul_(2.0);
    a.sub_(b, 3);
    a.div_(meta_on({2, 3}, 0));
    a.copy_(b);
    a.copy_(meta_on({2, 3}, 0));
    a.zero_();
    a.fill_(7);
    a.addcmul_(b, b);
    a.clamp_(0.0, 0.5);
    a.sqrt_();
    a.uniform_();
    a.normal_();
    a.bernoulli_(0.5);
    a += 1.0;
  }
  EXPECT_EQ(hook.calls(), 15);
  EXPECT_FALSE(a.is_meta());
  EXPECT_EQ(a.to_vector<float>(), before);
}

TEST(Placement, HookIsCalledOncePerOutermostOp) {
  manual_seed(2);
  Tensor x = randn({2, 3}), w = randn({4, 3}), bias = randn({4});
  Tensor target = tensor<int64_t>({1, 2});
  FakeHook hook(Placement{0, true});
  Installed on(&hook);
  linear(x, w, bias);
  EXPECT_EQ(hook.ops, (std::vector<std::string>{"linear"}));
  EXPECT_EQ(hook.input_counts, (std::vector<size_t>{3}));
  hook.reset();
  linear(x, w);  // undefined bias omitted
  EXPECT_EQ(hook.input_counts, (std::vector<size_t>{2}));
  hook.reset();
  cross_entropy(x, target);
  Tensor x3 = x.unsqueeze(0);
  Tensor wt = w.t();
  matmul(x3, wt);
  x.var({1});
  cat({x, x, x});
  EXPECT_EQ(hook.ops,
            (std::vector<std::string>{"cross_entropy", "unsqueeze", "t", "matmul", "var", "cat"}));
  EXPECT_EQ(hook.input_counts.back(), 3u);
}

TEST(Placement, LocalOpComputesWithMaterializedInputs) {
  Tensor xv = tensor<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = tensor<float>({1, 0, -1, 2, 1, 0}, {2, 3});
  Tensor expected = linear(xv, w).relu();  // no hook: the reference

  Tensor x = meta_on({2, 3}, 1);  // held by partition 1, received here
  int materialized = 0;
  FakeHook hook([&](const std::string&, const std::vector<const Tensor*>& inputs) {
    for (const Tensor* t : inputs) {
      if (t->is_meta()) {
        materialize(*t, xv);
        ++materialized;
      }
    }
    return Placement{0, true};
  });
  Tensor y;
  {
    Installed on(&hook);
    y = linear(x, w).relu();
  }
  EXPECT_EQ(materialized, 1);
  EXPECT_FALSE(x.is_meta());
  ASSERT_FALSE(y.is_meta());
  EXPECT_EQ(smp::detail::held_by(y), 0);
  EXPECT_EQ(y.to_vector<float>(), expected.to_vector<float>());
}

TEST(Placement, FactoriesDoNotConsultTheHook) {
  FakeHook hook(Placement{1, false});
  Installed on(&hook);
  std::vector<Tensor> made = {zeros({2}),
                              ones({2}),
                              empty({2}),
                              full({2}, 3.0),
                              arange(4),
                              rand({2}),
                              randn({2}),
                              randint(5, {2}),
                              randperm(4),
                              tensor<float>({1, 2}),
                              tensor({1.0, 2.0}),
                              scalar_tensor(2.0),
                              zeros_like(ones({2}))};
  EXPECT_EQ(hook.calls(), 0);
  for (const Tensor& t : made) {
    EXPECT_FALSE(t.is_meta());
    EXPECT_EQ(smp::detail::held_by(t), -1);
  }
  EXPECT_EQ(tensor<float>({4, 5}).to_vector<float>(), (std::vector<float>{4, 5}));
}

TEST(Placement, WithoutHookNothingChanges) {
  EXPECT_EQ(placement_hook(), nullptr);
  Tensor a = ones({2, 2}), b = ones({2, 2});
  Tensor c = a + b;
  EXPECT_EQ(current_placement(), nullptr);
  EXPECT_FALSE(c.is_meta());
  EXPECT_EQ(smp::detail::held_by(c), -1);
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{2, 2, 2, 2}));
  // Outside placement, meta and real tensors still may not meet.
  EXPECT_THROW(a + meta_on({2, 2}, 1), Error);
}

TEST(Placement, HookRemovalAndPreviousHook) {
  FakeHook h1(Placement{0, true}), h2(Placement{1, false});
  EXPECT_EQ(set_placement_hook(&h1), nullptr);
  EXPECT_EQ(set_placement_hook(&h2), &h1);
  EXPECT_EQ(placement_hook(), &h2);
  EXPECT_EQ(set_placement_hook(nullptr), &h2);
  Tensor c = ones({1}) + 1.0;
  EXPECT_EQ(h1.calls() + h2.calls(), 0);
  EXPECT_FALSE(c.is_meta());
}

TEST(Placement, OpsRunByTheHookDoNotConsultIt) {
  Tensor side = ones({2});
  Tensor seen;
  FakeHook hook([&](const std::string&, const std::vector<const Tensor*>&) {
    seen = side * 2.0 + 1.0;  // e.g. preparing a buffer to receive into
    return Placement{1, false};
  });
  Installed on(&hook);
  Tensor out = ones({2}).neg();
  EXPECT_EQ(hook.calls(), 1);
  EXPECT_FALSE(seen.is_meta());
  EXPECT_EQ(seen.to_vector<float>(), (std::vector<float>{3, 3}));
  EXPECT_TRUE(out.is_meta());
}

TEST(Placement, GuardForcesPlacementAndNests) {
  FakeHook hook(Placement{5, true});
  Installed on(&hook);
  Tensor a = ones({2});
  {
    PlacementGuard g(Placement{3, false});
    ASSERT_NE(current_placement(), nullptr);
    EXPECT_EQ(current_placement()->partition, 3);
    expect_meta(a * 2.0, {2}, 3);
    {
      PlacementGuard inner(Placement{4, true});
      Tensor r = a * 2.0;
      EXPECT_FALSE(r.is_meta());
      EXPECT_EQ(smp::detail::held_by(r), 4);
    }
    EXPECT_EQ(current_placement()->partition, 3);
  }
  EXPECT_EQ(current_placement(), nullptr);
  EXPECT_EQ(hook.calls(), 0);
  EXPECT_EQ(smp::detail::held_by((a * 2.0)), 5);
  EXPECT_EQ(hook.calls(), 1);
}

TEST(Placement, ErrorInsideAnOpClosesItsScope) {
  FakeHook hook(Placement{1, true});
  Installed on(&hook);
  EXPECT_THROW(ones({2}) + ones({3}), Error);
  EXPECT_EQ(current_placement(), nullptr);
  EXPECT_EQ(smp::detail::held_by((ones({2}) + 1.0)), 1);
  EXPECT_EQ(hook.calls(), 2);
}

TEST(Placement, BackwardOfLocalGraphIsReal) {
  manual_seed(3);
  Tensor x = randn({3, 4});
  Tensor w = randn({2, 4}).requires_grad_();
  Tensor w_ref = w.detach().clone().requires_grad_();
  linear(x, w_ref).tanh().sum().backward();

  FakeHook hook(Placement{0, true});
  Tensor loss;
  {
    Installed on(&hook);
    loss = linear(x, w).tanh().sum();
  }
  ASSERT_TRUE(loss.grad_fn()->placement.has_value());
  EXPECT_EQ(loss.grad_fn()->placement->partition, 0);
  loss.backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_FALSE(w.grad().is_meta());
  EXPECT_EQ(w.grad().to_vector<float>(), w_ref.grad().to_vector<float>());
}

TEST(Placement, BackwardOfNonLocalGraphIsMetaWithoutHook) {
  manual_seed(4);
  Tensor x = randn({3, 4});
  Tensor w = randn({2, 4}).requires_grad_();
  Tensor img = randn({1, 1, 4, 4});
  Tensor k = randn({2, 1, 3, 3}).requires_grad_();
  FakeHook hook(Placement{1, false});
  Tensor loss;
  {
    Installed on(&hook);
    loss = linear(x, w).relu().sum() + conv2d(img, k).mean();
  }
  expect_meta(loss, {}, 1);
  EXPECT_FALSE(loss.grad_fn()->placement->local);
  loss.backward();
  expect_meta(w.grad(), {2, 4}, 1);
  expect_meta(k.grad(), {2, 1, 3, 3}, 1);
}

TEST(Placement, NonLocalNodeTurnsRealGradientsIntoMeta) {
  Tensor x = ones({3}).requires_grad_();
  Tensor img = ones({1, 1, 4, 4}).requires_grad_(), k = ones({1, 1, 3, 3}).requires_grad_();
  FakeHook hook(Placement{1, false});
  Tensor y, c;
  {
    Installed on(&hook);
    y = x + 1.0;  // backward passes the gradient through unchanged
    c = conv2d(img, k);
  }
  // Real gradients reach nodes that ran elsewhere.
  y.backward(ones({3}));
  expect_meta(x.grad(), {3}, 1);
  c.backward(ones({1, 1, 2, 2}));
  expect_meta(img.grad(), {1, 1, 4, 4}, 1);
  expect_meta(k.grad(), {1, 1, 3, 3}, 1);
}

TEST(Placement, MixedConsumersAccumulateTheRealContribution) {
  // h = 3x is computed here; h·h here (partition 0) and exp(h) on partition 1.
  auto decide = [](const std::string& op, const std::vector<const Tensor*>& in) {
    if (op == "exp") return Placement{1, false};
    for (const Tensor* t : in)
      if (t->is_meta()) return Placement{1, false};  // follows the data
    return Placement{0, true};
  };
  Tensor x = tensor<float>({1, 2, -1}).requires_grad_();
  FakeHook hook(decide);
  Tensor local_sum, remote_sum;
  {
    Installed on(&hook);
    Tensor h = x * 3.0;
    local_sum = (h * h).sum();
    remote_sum = h.exp().sum();
  }
  EXPECT_FALSE(local_sum.is_meta());
  expect_meta(remote_sum, {}, 1);
  // The remote root comes first and last, so real and meta meet in either order.
  autograd::backward({remote_sum, local_sum, remote_sum}, {}, /*retain_graph=*/true);
  ASSERT_FALSE(x.grad().is_meta());
  // d/dx (3x)^2 = 18x: the exp path was computed on another rank.
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{18, 36, -18}));

  // A leaf whose .grad() is meta takes the first real gradient that arrives.
  Tensor p = ones({2}).requires_grad_();
  {
    Installed on(&hook);
    Tensor r = p.exp().sum();
    r.backward();
  }
  expect_meta(p.grad(), {2}, 1);
  (p * 4.0).sum().backward();
  EXPECT_EQ(p.grad().to_vector<float>(), (std::vector<float>{4, 4}));
  p.exp().sum().backward();
  for (float g : p.grad().to_vector<float>()) EXPECT_NEAR(g, 4 + std::exp(1.0f), 1e-5);
}

TEST(Placement, LocalNodeWithOnlyRemoteGradientsRunsOnMeta) {
  auto decide = [](const std::string& op, const std::vector<const Tensor*>&) {
    return op == "mul" ? Placement{0, true} : Placement{1, false};
  };
  Tensor x = tensor<float>({1, 2}).requires_grad_();
  FakeHook hook(decide);
  Tensor loss;
  {
    Installed on(&hook);
    loss = (x * 2.0).exp().sum();
  }
  loss.backward();
  expect_meta(x.grad(), {2}, 0);
}

TEST(Placement, GradientHooksSeeRealGradientsOfMaterializedTensors) {
  // The pattern parallel/ uses: h is produced on partition 0 and received here (partition 1);
  // a hook on h would send its gradient back, while h's producer stays meta here.
  Tensor w = ones({2}).requires_grad_();
  auto decide = [](const std::string& op, const std::vector<const Tensor*>& in) {
    if (op == "mul") return Placement{0, false};  // the producer
    for (const Tensor* t : in)
      if (t->is_meta()) materialize(*t, full(t->sizes(), 3.0));
    return Placement{1, true};
  };
  FakeHook hook(decide);
  std::vector<float> sent;
  Tensor copied;
  Tensor loss;
  {
    Installed on(&hook);
    Tensor h = w * 2.0;
    h.register_hook([&](const Tensor& g) -> Tensor {
      EXPECT_FALSE(g.is_meta());
      const Placement* producer = current_placement();
      EXPECT_TRUE(producer != nullptr && !producer->local);
      sent = g.to_vector<float>();
      PlacementGuard here(Placement{1, true});  // computing on the real gradient needs this
      copied = g.clone();
      return Tensor();
    });
    loss = h.square().sum();
  }
  ASSERT_FALSE(loss.is_meta());
  EXPECT_FLOAT_EQ(loss.item<float>(), 18.0f);
  loss.backward();
  EXPECT_EQ(sent, (std::vector<float>{6, 6}));  // d(h²)/dh at h = 3
  ASSERT_FALSE(copied.is_meta());
  EXPECT_EQ(copied.to_vector<float>(), sent);
  expect_meta(w.grad(), {2}, 0);
}

TEST(Placement, ReadingAValueHeldByAnotherPartitionFails) {
  Tensor t = meta_on({}, 2);
  try {
    t.item<float>();
    FAIL() << "item() on a remote value must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("partition 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not available on this rank"), std::string::npos);
  }
  EXPECT_THROW(meta_on({3}, 2).to_vector<float>(), Error);
  EXPECT_THROW(meta_on({3}, 2).data_ptr(), Error);
  try {
    meta_on({}, -1).item<float>();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("partition"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("meta"), std::string::npos);
  }

  FakeHook hook(Placement{2, false});
  Tensor loss;
  {
    Installed on(&hook);
    loss = (ones({2}) * 3.0).sum();
  }
  try {
    loss.item();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("partition 2"), std::string::npos) << e.what();
  }
}

TEST(Placement, ReadingRealValuesInsideAHookedRegionDoesNotConsultIt) {
  FakeHook hook(Placement{1, false});
  Installed on(&hook);
  Tensor a = tensor<double>({1.5, 2.5}, {}, kFloat64);
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{1.5f, 2.5f}));
  EXPECT_EQ(hook.calls(), 0);
  EXPECT_TRUE(a.sum().is_meta());  // sum is an op: placed elsewhere
  EXPECT_EQ(hook.calls(), 1);
  EXPECT_FALSE(a.to_string().empty());
  EXPECT_EQ(hook.calls(), 1);
}

// A draw that another rank computes (this rank holds its output as meta) moves this rank's CPU
// generator exactly as far as computing it would, so the draws after it agree with a
// one-process run; this holds for normal's layout- and cache-dependent draw counts too.
TEST(Placement, RemoteDrawsAdvanceTheGeneratorAsLocalOnes) {
  auto draws = [](bool remote) {
    manual_seed(21);
    auto input = [&](const Shape& shape) { return remote ? meta_on(shape, 1) : zeros(shape); };
    {
      FakeHook hook(Placement{1, !remote, Device(kCPU)});
      Installed on(&hook);
      Tensor d = dropout(input({3, 7}), 0.3, true);
      EXPECT_EQ(d.is_meta(), remote);
      input({5}).normal_();  // scalar Box–Muller: leaves a cached sample
      input({33}).normal_(1.0, 2.0);
      input({6, 4}).t().normal_();  // strided: scalar path again
      input({4, 6}).t().uniform_();
      input({9}).bernoulli_(0.2);
      Tensor r = input({9}).to(kInt64);
      r.random_(0, 1 << 20);
    }
    return std::make_pair(randn({3}).to_vector<float>(), rand({8}).to_vector<float>());
  };
  EXPECT_EQ(draws(true), draws(false));
}
