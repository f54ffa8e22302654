// softmax, losses, layer_norm, embedding: gradients, meta shapes, errors, PyTorch goldens.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <cmath>

#include "op_test_utils.h"

using namespace smp;
using smp::test::error_of;
using smp::test::randd;

namespace {

Tensor targets(std::vector<int64_t> v) { return tensor<int64_t>(v); }

const std::map<std::string, Tensor>& golden() {
  static const auto g = load_safetensors(std::string(SMP_TEST_GOLDEN_DIR) + "/nn.safetensors");
  return g;
}
const Tensor& G(const std::string& k) {
  auto it = golden().find(k);
  if (it == golden().end()) throw std::runtime_error("golden key missing: " + k);
  return it->second;
}

}  // namespace

// ---- softmax -------------------------------------------------------------------------

TEST(Softmax, RowsSumToOneAndStable) {
  Tensor x = tensor<float>({1000, 1001, 1002, -1000, 0, 1000}, {2, 3});
  auto y = softmax(x, 1).to_vector<float>();
  for (float v : y) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NEAR(y[0] + y[1] + y[2], 1.0f, 1e-6);
  EXPECT_NEAR(y[5], 1.0f, 1e-6);
  auto l = log_softmax(x, 1).to_vector<float>();
  // float32 spacing near 1000 is 6e-5, so x − logsumexp(x) is only that exact.
  EXPECT_NEAR(l[2], -std::log(1 + std::exp(-1.0f) + std::exp(-2.0f)), 1e-4);
  EXPECT_NEAR(l[3], -2000.0f, 1e-2);
}

TEST(Softmax, Gradcheck) {
  for (int64_t d : {0, 1, -1}) {
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return softmax(in[0], d); },
                     {randd({3, 4, 5}, 1)});
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return in[0].log_softmax(d); },
                     {randd({3, 4, 5}, 2)});
  }
  // Non-contiguous input.
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return softmax(in[0].t(), 1); },
                   {randd({4, 3}, 3)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return log_softmax(in[0].t(), 0); },
                   {randd({4, 3}, 4)});
}

TEST(Softmax, HalfPrecisionMatchesFloat) {
  Tensor x = randd({3, 17}, 30).to(kFloat32);
  for (Dtype dt : {kFloat16, kBFloat16}) {
    EXPECT_ALLCLOSE(softmax(x.to(dt), 1).to(kFloat32), softmax(x, 1), 1e-2, 1e-3);
    EXPECT_ALLCLOSE(log_softmax(x.to(dt), 0).to(kFloat32), log_softmax(x, 0), 1e-2, 1e-2);
  }
}

TEST(Softmax, MetaAndErrors) {
  Tensor m = empty({2, 7}, Device(kMeta));
  EXPECT_EQ(softmax(m, 1).sizes(), softmax(zeros({2, 7}), 1).sizes());
  EXPECT_TRUE(log_softmax(m, 0).is_meta());
  EXPECT_THROW(softmax(zeros({2}, kInt64), 0), Error);
  EXPECT_THROW(softmax(zeros({2}), 1), Error);
}

// ---- losses ----------------------------------------------------------------------------

TEST(NllLoss, Gradcheck) {
  Tensor t = targets({0, 3, 1, 3, 2});
  for (Reduction r : {Reduction::None, Reduction::Mean, Reduction::Sum}) {
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return nll_loss(in[0], t, r); },
                     {randd({5, 4}, 5)});
    // ignore_index: the ignored row gets no gradient and does not count in the mean.
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return nll_loss(in[0], t, r, 3); },
                     {randd({5, 4}, 6)});
  }
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return nll_loss(in[0].t(), t); },
                   {randd({4, 5}, 7)});
}

TEST(NllLoss, IgnoreIndexAndReductions) {
  Tensor x = tensor<float>({-1, -2, -3, -4, -5, -6}, {3, 2});
  Tensor t = targets({1, -100, 0});
  EXPECT_EQ(nll_loss(x, t, Reduction::None).to_vector<float>(), (std::vector<float>{2, 0, 5}));
  EXPECT_FLOAT_EQ(nll_loss(x, t, Reduction::Sum).item<float>(), 7.0f);
  EXPECT_FLOAT_EQ(nll_loss(x, t).item<float>(), 3.5f);  // divides by the 2 counted rows
  EXPECT_EQ(nll_loss(x, t).dim(), 0);
  EXPECT_TRUE(std::isnan(nll_loss(x, targets({-100, -100, -100})).item<float>()));
}

TEST(NllLoss, MetaAndErrors) {
  Device meta(kMeta);
  Tensor mx = empty({4, 3}, meta), mt = empty({4}, TensorOptions(kInt64).device(meta));
  EXPECT_EQ(nll_loss(mx, mt).sizes(), nll_loss(zeros({4, 3}), zeros({4}, kInt64)).sizes());
  EXPECT_EQ(nll_loss(mx, mt, Reduction::None).sizes(), (Shape{4}));
  EXPECT_EQ(cross_entropy(mx, mt).sizes(), Shape{});
  std::string msg = error_of([] { nll_loss(zeros({2, 3}), targets({1, 7})); });
  EXPECT_NE(msg.find("target 7"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3 classes"), std::string::npos) << msg;
  EXPECT_THROW(nll_loss(zeros({2, 3}), targets({-1, 0})), Error);
  EXPECT_THROW(nll_loss(zeros({2, 3}), zeros({2})), Error);          // float target
  EXPECT_THROW(nll_loss(zeros({2, 3}), targets({0, 1, 2})), Error);  // wrong N
}

TEST(CrossEntropy, GradcheckAndHigherDims) {
  Tensor t = targets({2, 0, 1});
  for (Reduction r : {Reduction::None, Reduction::Mean, Reduction::Sum})
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t, r, 0); },
                     {randd({3, 4}, 8)});
  // (N, C, L) input with (N, L) target, as PyTorch.
  Tensor t2 = tensor<int64_t>({0, 2, 1, 1}, {2, 2});
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t2); },
                   {randd({2, 3, 2}, 9)});
  EXPECT_EQ(cross_entropy(zeros({2, 3, 2}), t2, Reduction::None).sizes(), (Shape{2, 2}));
}

TEST(CrossEntropy, ProbabilityTargetsAndSmoothingGradcheck) {
  Tensor w = tensor<double>({0.5, 2.0, 1.0, 1.5}, {}, kFloat64);
  Tensor t = targets({2, 0, 3});
  Tensor t4 = tensor<int64_t>({0, 3, 1, 1, 2, -100}, {2, 3});
  for (Reduction r : {Reduction::None, Reduction::Mean, Reduction::Sum}) {
    // Probability targets: the gradient flows into the target too.
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], r); },
                     {randd({3, 4}, 20), randd({3, 4}, 21).softmax(1)});
    EXPECT_GRADCHECK(
        [&](const std::vector<Tensor>& in) {
          return cross_entropy(in[0], in[1], in[2], r, -100, 0.2);
        },
        {randd({2, 4, 3}, 22), randd({2, 4, 3}, 23).softmax(1), w.clone()});
    // Index targets with weights and smoothing, an ignored entry, class dim 1 of (N, C, L).
    EXPECT_GRADCHECK(
        [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t, in[1], r, 3, 0.1); },
        {randd({3, 4}, 24), w.clone()});
    EXPECT_GRADCHECK(
        [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t4, w, r, -100, 0.3); },
        {randd({2, 4, 3}, 25)});
    EXPECT_GRADCHECK(
        [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], t, r, -100, 1.0); },
        {randd({3, 4}, 26)});
  }
  // Unbatched (C) input: 0-D index target or (C) probabilities.
  EXPECT_GRADCHECK(
      [&](const std::vector<Tensor>& in) {
        return cross_entropy(in[0], tensor<int64_t>({2}).reshape({}), w, Reduction::Mean, -100,
                             0.1);
      },
      {randd({4}, 27)});
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], w); },
                   {randd({4}, 28), randd({4}, 29).softmax(0)});
}

TEST(CrossEntropy, ProbabilityTargetsMatchDefinition) {
  Tensor x = randd({3, 4}, 30), p = randd({3, 4}, 31).softmax(1);
  Tensor w = tensor<double>({0.5, 2.0, 1.0, 1.5}, {}, kFloat64);
  Tensor per = -(log_softmax(x, 1) * p * w.reshape({1, 4})).sum({1});
  EXPECT_ALLCLOSE(cross_entropy(x, p, w, Reduction::None), per, 1e-12, 1e-12);
  // The mean divides by N, not by the weights.
  EXPECT_NEAR(cross_entropy(x, p, w).item<double>(), per.sum().item<double>() / 3, 1e-12);
  // One-hot probabilities give the index-target loss when unweighted.
  Tensor t = targets({1, 3, 0});
  Tensor onehot = tensor<double>({0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0}, {3, 4}, kFloat64);
  EXPECT_NEAR(cross_entropy(x, onehot, Reduction::Mean, -100, 0.25).item<double>(),
              cross_entropy(x, t, Reduction::Mean, -100, 0.25).item<double>(), 1e-12);
  EXPECT_TRUE(std::isnan(cross_entropy(zeros({0, 4}), zeros({0, 4})).item<float>()));
}

TEST(CrossEntropy, MetaShapes) {
  Device meta(kMeta);
  Tensor mx = empty({4, 3, 5}, meta), mp = empty({4, 3, 5}, meta);
  Tensor mt = empty({4, 5}, TensorOptions(kInt64).device(meta)), mw = empty({3}, meta);
  EXPECT_EQ(cross_entropy(mx, mp, Reduction::None).sizes(), (Shape{4, 5}));
  EXPECT_EQ(cross_entropy(mx, mp, mw).sizes(), Shape{});
  EXPECT_TRUE(cross_entropy(mx, mp, mw, Reduction::Sum, -100, 0.1).is_meta());
  EXPECT_EQ(cross_entropy(mx, mt, mw, Reduction::None, -100, 0.1).sizes(), (Shape{4, 5}));
  EXPECT_EQ(cross_entropy(mx, mt, mw, Reduction::Mean, 1, 0.1).sizes(), Shape{});
  EXPECT_EQ(cross_entropy(mx, mt, mw, Reduction::Sum).sizes(), Shape{});
}

TEST(CrossEntropy, Errors) {
  Tensor x = zeros({2, 3}), p = full({2, 3}, 1.0 / 3);
  std::string msg = error_of([&] { cross_entropy(x, p, Reduction::Mean, 0); });
  EXPECT_NE(msg.find("cross_entropy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ignore_index=0"), std::string::npos) << msg;
  EXPECT_NO_THROW(cross_entropy(x, p, Reduction::Mean, -1));  // negative: allowed, as PyTorch
  for (double ls : {-0.1, 1.5, std::nan("")}) {
    msg = error_of([&] { cross_entropy(x, targets({0, 1}), Reduction::Mean, -100, ls); });
    EXPECT_NE(msg.find("cross_entropy: label_smoothing"), std::string::npos) << msg;
    EXPECT_THROW(cross_entropy(x, p, Reduction::Mean, -100, ls), Error);
  }
  msg = error_of([&] { cross_entropy(x, zeros({2, 4})); });  // wrong shape, floating
  EXPECT_NE(msg.find("cross_entropy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 4]"), std::string::npos) << msg;
  msg = error_of([&] { cross_entropy(x, targets({0, 1, 2})); });  // wrong N
  EXPECT_NE(msg.find("cross_entropy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3]"), std::string::npos) << msg;
  msg = error_of([&] { cross_entropy(x, zeros({2, 3}, kInt64)); });  // integer "probabilities"
  EXPECT_NE(msg.find("floating point"), std::string::npos) << msg;
  msg = error_of([&] { cross_entropy(x, targets({0, 1}), ones({4})); });
  EXPECT_NE(msg.find("weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
  // Target bounds are still checked with weights and smoothing.
  EXPECT_THROW(cross_entropy(x, targets({0, 3}), ones({3})), Error);
  EXPECT_THROW(cross_entropy(x, targets({0, 3}), Reduction::Mean, -100, 0.1), Error);
}

TEST(MseLoss, Gradcheck) {
  for (Reduction r : {Reduction::None, Reduction::Mean, Reduction::Sum})
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return mse_loss(in[0], in[1], r); },
                     {randd({3, 4}, 10), randd({3, 4}, 11)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return mse_loss(in[0].t(), in[1]); },
                   {randd({4, 3}, 12), randd({3, 4}, 13)});
  Device meta(kMeta);
  EXPECT_EQ(mse_loss(empty({3, 4}, meta), empty({3, 4}, meta)).sizes(),
            mse_loss(zeros({3, 4}), zeros({3, 4})).sizes());
}

// ---- layer_norm --------------------------------------------------------------------------

TEST(LayerNorm, Gradcheck) {
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) { return layer_norm(in[0], {5}, in[1], in[2]); },
      {randd({3, 5}, 14), randd({5}, 15), randd({5}, 16)});
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        return layer_norm(in[0], {3, 4});
      },
      {randd({2, 3, 4}, 17)});
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) { return layer_norm(in[0].transpose(0, 1), {2}, in[1]); },
      {randd({2, 4}, 18), randd({2}, 19)});
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) { return layer_norm(in[0], {4}, Tensor(), in[1]); },
      {randd({3, 4}, 20), randd({4}, 21)});
}

TEST(LayerNorm, NormalisesRows) {
  Tensor y = layer_norm(tensor<float>({1, 2, 3, 4, 10, 20, 30, 40}, {2, 4}), {4});
  auto v = y.to_vector<float>();
  for (int r = 0; r < 2; ++r) {
    double m = 0, s = 0;
    for (int j = 0; j < 4; ++j) m += v[r * 4 + j];
    for (int j = 0; j < 4; ++j) s += v[r * 4 + j] * v[r * 4 + j];
    EXPECT_NEAR(m / 4, 0.0, 1e-6);
    EXPECT_NEAR(s / 4, 1.0, 1e-3);
  }
}

TEST(LayerNorm, MetaAndErrors) {
  Device meta(kMeta);
  EXPECT_EQ(layer_norm(empty({2, 3, 4}, meta), {4}, empty({4}, meta)).sizes(),
            layer_norm(zeros({2, 3, 4}), {4}, ones({4})).sizes());
  std::string msg = error_of([] { layer_norm(zeros({2, 3}), {4}); });
  EXPECT_NE(msg.find("normalized_shape [4]"), std::string::npos) << msg;
  EXPECT_THROW(layer_norm(zeros({2, 3}), {3}, ones({4})), Error);
}

// ---- embedding ----------------------------------------------------------------------------

TEST(Embedding, ValuesShapesAndGrad) {
  Tensor w = arange(12, kFloat32).reshape({4, 3});
  Tensor idx = tensor<int64_t>({3, 0, 3, 1}, {2, 2});
  Tensor e = embedding(w, idx);
  EXPECT_EQ(e.sizes(), (Shape{2, 2, 3}));
  EXPECT_EQ(e.to_vector<float>(), (std::vector<float>{9, 10, 11, 0, 1, 2, 9, 10, 11, 3, 4, 5}));
  EXPECT_EQ(embedding(w, tensor<int32_t>({2})).to_vector<float>(), (std::vector<float>{6, 7, 8}));
  // Repeated indices accumulate. (A padding row's zero gradient is deliberately not the
  // derivative, so it is checked directly below rather than by gradcheck.)
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return embedding(in[0], idx); },
                   {randd({4, 3}, 22)});
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return embedding(in[0], idx, 2); },
                   {randd({4, 3}, 22)});  // padding row 2 is never looked up
  Tensor wd = randd({4, 3}, 23).requires_grad_(true);
  embedding(wd, idx, 3).sum().backward();
  EXPECT_EQ(wd.grad().select(0, 3).to_vector<double>(), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(wd.grad().select(0, 1).to_vector<double>(), (std::vector<double>{1, 1, 1}));
  // A non-contiguous weight.
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return embedding(in[0].t(), idx); },
                   {randd({3, 4}, 24)});
}

TEST(Embedding, MetaAndErrors) {
  Device meta(kMeta);
  Tensor mi = empty({5, 2}, TensorOptions(kInt64).device(meta));
  EXPECT_EQ(embedding(empty({10, 3}, meta), mi).sizes(),
            embedding(zeros({10, 3}), zeros({5, 2}, kInt64)).sizes());
  std::string msg = error_of([] { embedding(zeros({4, 2}), tensor<int64_t>({4})); });
  EXPECT_NE(msg.find("index 4"), std::string::npos) << msg;
  EXPECT_THROW(embedding(zeros({4}), tensor<int64_t>({0})), Error);
  EXPECT_THROW(embedding(zeros({4, 2}), tensor<float>({0})), Error);
}

// ---- goldens from PyTorch (tests/reference/gen_nn.py) ---------------------------------------

namespace {
// Runs backward of sum(out * v) and returns nothing; gradients land in the leaves.
void backprop(const Tensor& out, const Tensor& v) { out.backward(v); }
Tensor leaf(const Tensor& t) { return t.clone().detach().requires_grad_(true); }
}  // namespace

TEST(NNGolden, SoftmaxAndLogSoftmax) {
  Tensor x = leaf(G("softmax.x"));
  EXPECT_ALLCLOSE(softmax(x, 1), G("softmax.dim1"), 1e-5, 1e-6);
  EXPECT_ALLCLOSE(softmax(x, 0), G("softmax.dim0"), 1e-5, 1e-6);
  Tensor out = log_softmax(x, -1);
  EXPECT_ALLCLOSE(out, G("log_softmax.out"), 1e-5, 1e-6);
  backprop(out, G("log_softmax.v"));
  EXPECT_ALLCLOSE(x.grad(), G("log_softmax.grad_x"), 1e-5, 1e-6);
}

TEST(NNGolden, Losses) {
  Tensor in = leaf(G("nll.input"));
  Tensor t = G("nll.target");
  EXPECT_ALLCLOSE(nll_loss(in, t, Reduction::None), G("nll.none"), 1e-5, 1e-6);
  EXPECT_ALLCLOSE(nll_loss(in, t, Reduction::Sum), G("nll.sum"), 1e-5, 1e-6);
  Tensor out = nll_loss(in, t);
  EXPECT_ALLCLOSE(out, G("nll.mean"), 1e-5, 1e-6);
  backprop(out, G("nll.v"));
  EXPECT_ALLCLOSE(in.grad(), G("nll.grad_input"), 1e-5, 1e-6);

  Tensor logits = leaf(G("ce.input"));
  out = cross_entropy(logits, t);
  EXPECT_ALLCLOSE(out, G("ce.mean"), 1e-5, 1e-6);
  backprop(out, G("ce.v"));
  EXPECT_ALLCLOSE(logits.grad(), G("ce.grad_input"), 1e-5, 1e-6);

  Tensor a = leaf(G("mse.a"));
  out = mse_loss(a, G("mse.b"));
  EXPECT_ALLCLOSE(out, G("mse.mean"), 1e-5, 1e-6);
  backprop(out, G("mse.v"));
  EXPECT_ALLCLOSE(a.grad(), G("mse.grad_a"), 1e-5, 1e-6);
}

TEST(NNGolden, CrossEntropyWeightsSmoothingProbabilities) {
  auto GE = [](const std::string& k) { return G("ce_ext." + k); };
  const std::vector<std::pair<std::string, Reduction>> reductions{
      {"none", Reduction::None}, {"sum", Reduction::Sum}, {"mean", Reduction::Mean}};
  // case -> (input, target); variant -> (weighted, label_smoothing), as gen_nn.py.
  const std::vector<std::tuple<std::string, std::string, std::string>> cases{
      {"idx", "x", "t"}, {"idx4", "x4", "t4"}, {"prob", "xp", "p"}, {"prob4", "xp4", "p4"}};
  const std::vector<std::tuple<std::string, bool, double>> variants{
      {"plain", false, 0.0}, {"w", true, 0.0}, {"ls", false, 0.1}, {"wls", true, 0.1}};
  int checked = 0;
  for (const auto& [cname, xk, tk] : cases)
    for (const auto& [vname, weighted, ls] : variants)
      for (const auto& [rname, r] : reductions) {
        if (cname.rfind("idx", 0) == 0 && vname == "plain") continue;
        std::string key = cname + "." + vname + "." + rname;
        SCOPED_TRACE(key);
        Tensor x = leaf(GE(xk));
        Tensor out = cross_entropy(x, GE(tk), weighted ? GE("weight") : Tensor(), r, -100, ls);
        EXPECT_ALLCLOSE(out, GE(key + ".out"), 1e-5, 1e-6);
        backprop(out, GE(key + ".v"));
        EXPECT_ALLCLOSE(x.grad(), GE(key + ".grad"), 1e-5, 1e-6);
        ++checked;
      }
  EXPECT_EQ(checked, 42);
}

TEST(NNGolden, LayerNorm) {
  Tensor x = leaf(G("ln.x")), w = leaf(G("ln.w")), b = leaf(G("ln.b"));
  Tensor out = layer_norm(x, {6}, w, b);
  EXPECT_ALLCLOSE(out, G("ln.out"), 1e-5, 1e-5);
  backprop(out, G("ln.v"));
  EXPECT_ALLCLOSE(x.grad(), G("ln.grad_x"), 1e-4, 1e-5);
  EXPECT_ALLCLOSE(w.grad(), G("ln.grad_w"), 1e-4, 1e-5);
  EXPECT_ALLCLOSE(b.grad(), G("ln.grad_b"), 1e-4, 1e-5);
}

TEST(NNGolden, EmbeddingIndexSelectCatStack) {
  Tensor w = leaf(G("emb.weight"));
  Tensor out = embedding(w, G("emb.idx"), 0);
  EXPECT_ALLCLOSE(out, G("emb.out"), 0, 0);
  backprop(out, G("emb.v"));
  EXPECT_ALLCLOSE(w.grad(), G("emb.grad_weight"), 1e-5, 1e-6);

  EXPECT_ALLCLOSE(index_select(G("index_select.x"), 1, G("index_select.idx")),
                  G("index_select.out"), 0, 0);
  Tensor c = cat({G("cat.a"), G("cat.b")}, 1);
  EXPECT_EQ(c.dtype(), G("cat.out").dtype());
  EXPECT_ALLCLOSE(c, G("cat.out"), 0, 0);
  EXPECT_ALLCLOSE(stack({G("cat.a"), G("cat.a") * 2}, 1), G("stack.out"), 0, 0);
}
