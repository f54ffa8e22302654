#include <fmt/ranges.h>
#include <smp/engine/autograd.h>
#include <smp/engine/error.h>
#include <smp/nn/init.h>
#include <smp/nn/transformer.h>

#include <cmath>
#include <limits>

namespace smp::nn {

namespace {

LinearOptions linear(int64_t in, int64_t out, bool bias) {
  return LinearOptions(in, out).bias(bias);
}

LayerNormOptions layer_norm(int64_t c, bool bias) { return LayerNormOptions({c}).bias(bias); }

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

// ---- CausalSelfAttention ------------------------------------------------------------------
CausalSelfAttention::CausalSelfAttention(const GPTConfig& config)
    : n_head(config.n_head), n_embd(config.n_embd) {
  SMP_CHECK(n_head > 0 && n_embd % n_head == 0,
            "CausalSelfAttention: n_embd {} must be a multiple of n_head {}", n_embd, n_head);
  c_attn =
      register_module("c_attn", std::make_shared<Linear>(linear(n_embd, 3 * n_embd, config.bias)));
  c_proj = register_module("c_proj", std::make_shared<Linear>(linear(n_embd, n_embd, config.bias)));
  attn_dropout = register_module("attn_dropout", std::make_shared<Dropout>(config.dropout));
  resid_dropout = register_module("resid_dropout", std::make_shared<Dropout>(config.dropout));
}

Tensor CausalSelfAttention::forward(const Tensor& x) {
  SMP_CHECK(x.dim() == 3 && x.size(2) == n_embd,
            "CausalSelfAttention: expected input (B, T, {}), got {}", n_embd, x.sizes());
  const int64_t B = x.size(0), T = x.size(1), hd = n_embd / n_head;
  auto qkv = (*c_attn)(x).split(n_embd, 2);  // 3 × (B, T, C)
  auto heads = [&](const Tensor& t) {        // (B, T, C) → (B, nh, T, hd)
    return t.reshape({B, T, n_head, hd}).transpose(1, 2);
  };
  const Tensor q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);
  Tensor att = q.matmul(k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(hd)));
  // (T, T): query i may see key j ≤ i; the rest get -inf, so softmax gives them weight 0.
  const Tensor pos = arange(T, TensorOptions(kInt64).device(x.device()));
  const Tensor visible = pos.unsqueeze(1).ge(pos.unsqueeze(0));
  att = where(visible, att, -std::numeric_limits<double>::infinity()).softmax(-1);
  att = (*attn_dropout)(att);
  Tensor y = att.matmul(v);                       // (B, nh, T, hd)
  y = y.transpose(1, 2).reshape({B, T, n_embd});  // heads side by side again
  return (*resid_dropout)((*c_proj)(y));
}

// ---- MLP ----------------------------------------------------------------------------------
MLP::MLP(const GPTConfig& config) {
  const int64_t C = config.n_embd;
  c_fc = register_module("c_fc", std::make_shared<Linear>(linear(C, 4 * C, config.bias)));
  gelu = register_module("gelu", std::make_shared<GELU>());
  c_proj = register_module("c_proj", std::make_shared<Linear>(linear(4 * C, C, config.bias)));
  dropout = register_module("dropout", std::make_shared<Dropout>(config.dropout));
}

Tensor MLP::forward(const Tensor& x) { return (*dropout)((*c_proj)((*gelu)((*c_fc)(x)))); }

// ---- TransformerLayer ---------------------------------------------------------------------
TransformerLayer::TransformerLayer(const GPTConfig& config) {
  ln_1 =
      register_module("ln_1", std::make_shared<LayerNorm>(layer_norm(config.n_embd, config.bias)));
  attn = register_module("attn", std::make_shared<CausalSelfAttention>(config));
  ln_2 =
      register_module("ln_2", std::make_shared<LayerNorm>(layer_norm(config.n_embd, config.bias)));
  mlp = register_module("mlp", std::make_shared<MLP>(config));
}

Tensor TransformerLayer::forward(const Tensor& x) {
  Tensor h = x + (*attn)((*ln_1)(x));
  return h + (*mlp)((*ln_2)(h));
}

// ---- TransformerLMHead --------------------------------------------------------------------
TransformerLMHead::TransformerLMHead(Tensor tied_weight) {
  SMP_CHECK(tied_weight.defined() && tied_weight.dim() == 2,
            "TransformerLMHead: the tied weight must be a (vocab_size, n_embd) tensor");
  weight = register_parameter("weight", std::move(tied_weight));
}

Tensor TransformerLMHead::forward(const Tensor& x) { return smp::linear(x, weight); }

Tensor TransformerLMHead::forward(const Tensor& x, const Tensor& targets) {
  const Tensor logits = forward(x);  // (B, T, V)
  SMP_CHECK(targets.sizes() == Shape(x.sizes().begin(), x.sizes().end() - 1),
            "TransformerLMHead: targets {} must have the shape of the input {} without its last "
            "dim",
            targets.sizes(), x.sizes());
  return smp::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}),
                            Reduction::Mean, /*ignore_index=*/-1);
}

// ---- GPT ----------------------------------------------------------------------------------
GPT::GPT(const GPTConfig& c) : config(c) {
  SMP_CHECK(c.vocab_size > 0 && c.block_size > 0 && c.n_layer > 0 && c.n_embd > 0,
            "GPT: vocab_size {}, block_size {}, n_layer {} and n_embd {} must be positive",
            c.vocab_size, c.block_size, c.n_layer, c.n_embd);
  SMP_CHECK(c.dropout >= 0 && c.dropout < 1, "GPT: dropout {} must be in [0, 1)", c.dropout);
  // Built in nanoGPT's order, so each layer's constructor draws what PyTorch's draws.
  transformer = register_module("transformer", std::make_shared<ModuleDict>());
  auto wte = std::make_shared<Embedding>(c.vocab_size, c.n_embd);
  transformer->insert("wte", wte);
  transformer->insert("wpe", std::make_shared<Embedding>(c.block_size, c.n_embd));
  transformer->insert("drop", std::make_shared<Dropout>(c.dropout));
  auto h = std::make_shared<ModuleList>();
  for (int64_t i = 0; i < c.n_layer; ++i) h->push_back(std::make_shared<TransformerLayer>(c));
  transformer->insert("h", h);
  transformer->insert("ln_f", std::make_shared<LayerNorm>(layer_norm(c.n_embd, c.bias)));
  // nanoGPT builds lm_head as a bias-free Linear, whose constructor draws a kaiming-uniform
  // (V, C) weight, and then ties it to wte. The same draw, discarded, keeps the generator
  // where PyTorch's is.
  {
    NoGradGuard ng;
    init::kaiming_uniform_(empty({c.vocab_size, c.n_embd}), std::sqrt(5.0));
  }
  register_module("lm_head", std::make_shared<TransformerLMHead>(wte->weight));
  init_weights();
}

void GPT::init_weights() {
  // nanoGPT's self.apply(_init_weights): modules in order, the tied lm_head included (its
  // weight, wte's, is drawn again there, as in PyTorch).
  for (auto& [name, m] : named_modules()) {
    if (auto* lin = dynamic_cast<Linear*>(m.get())) {
      init::normal_(lin->weight, 0.0, 0.02);
      if (lin->bias.defined()) init::zeros_(lin->bias);
    } else if (auto* emb = dynamic_cast<Embedding*>(m.get())) {
      init::normal_(emb->weight, 0.0, 0.02);
    } else if (auto* head = dynamic_cast<TransformerLMHead*>(m.get())) {
      init::normal_(head->weight, 0.0, 0.02);
    } else if (auto* ln = dynamic_cast<LayerNorm*>(m.get())) {
      ln->reset_parameters();
    }
  }
  // GPT-2's scaled init of the projections into the residual stream.
  const double std = 0.02 / std::sqrt(2.0 * static_cast<double>(config.n_layer));
  for (auto& [name, p] : named_parameters())
    if (ends_with(name, "c_proj.weight")) init::normal_(p, 0.0, std);
}

int64_t GPT::num_params(bool non_embedding) const {
  int64_t n = num_parameters();
  if (non_embedding) n -= (*transformer)["wpe"]->num_parameters();
  return n;
}

Tensor GPT::hidden(const Tensor& idx) {
  SMP_CHECK(idx.dim() == 2 && idx.dtype() == kInt64,
            "GPT: expected token ids (B, T) of int64, got {} of {}", idx.sizes(),
            dtype_name(idx.dtype()));
  const int64_t T = idx.size(1);
  SMP_CHECK(T <= config.block_size,
            "GPT: cannot forward a sequence of length {}: the block size is only {}", T,
            config.block_size);
  const ModuleDict& tr = *transformer;
  const Tensor pos = arange(T, TensorOptions(kInt64).device(idx.device()));  // (T)
  Tensor x = (*tr["wte"])(idx) + (*tr["wpe"])(pos);                          // (B, T, C)
  x = (*tr["drop"])(x);
  for (auto& block : tr["h"]->children()) x = (*block)(x);
  return (*tr["ln_f"])(x);
}

Tensor GPT::forward(const Tensor& idx) {
  Tensor x = hidden(idx);
  for (auto& [n, c] : named_children())
    if (n == "lm_head") return (*c)(x);
  SMP_ERROR("GPT: no lm_head");
}

Tensor GPT::forward(const Tensor& idx, const Tensor& targets) {
  Tensor x = hidden(idx);
  for (auto& [n, c] : named_children())
    if (n == "lm_head") return (*c)(x, targets);
  SMP_ERROR("GPT: no lm_head");
}

}  // namespace smp::nn
