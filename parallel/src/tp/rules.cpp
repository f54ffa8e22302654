// The table of module types tensor parallelism can distribute.
#include "tp/rules.h"

#include <smp/parallel/tensor_parallel.h>
#include <smp/parallel/tp_transformer.h>

#include <vector>

namespace smp::detail::tp {

namespace {

template <class M>
bool is(const nn::Module& m) {
  return dynamic_cast<const M*>(&m) != nullptr;
}

std::string divides(int64_t n, const char* what, int tp) {
  return n % tp == 0
             ? ""
             : fmt::format("tensor_parallel_degree {} does not divide its {} {}", tp, n, what);
}

const std::vector<Rule>& rules() {
  static const std::vector<Rule> r = {
      {"Linear", is<nn::Linear>,
       [](const nn::Module& m, int tp) {
         return divides(dynamic_cast<const nn::Linear&>(m).options.out_features(),
                        "output features", tp);
       },
       [](nn::Module& m) -> std::shared_ptr<nn::Module> {
         return std::make_shared<nn::DistributedLinear>(dynamic_cast<const nn::Linear&>(m));
       }},
      {"Embedding", is<nn::Embedding>,
       [](const nn::Module& m, int tp) {
         return divides(dynamic_cast<const nn::Embedding&>(m).options.embedding_dim(),
                        "embedding dimensions", tp);
       },
       [](nn::Module& m) -> std::shared_ptr<nn::Module> {
         return std::make_shared<nn::DistributedEmbedding>(dynamic_cast<const nn::Embedding&>(m));
       }},
      {"TransformerLayer", is<nn::TransformerLayer>,
       [](const nn::Module& m, int tp) {
         return divides(dynamic_cast<const nn::TransformerLayer&>(m).attn->n_head,
                        "attention heads", tp);
       },
       [](nn::Module& m) -> std::shared_ptr<nn::Module> {
         return std::make_shared<nn::DistributedTransformerLayer>(
             dynamic_cast<nn::TransformerLayer&>(m));
       }},
      // Tied to the word embedding, which distribute_modules then makes vocabulary-parallel
      // with the same shard.
      {"TransformerLMHead", is<nn::TransformerLMHead>,
       [](const nn::Module& m, int tp) {
         return divides(dynamic_cast<const nn::TransformerLMHead&>(m).weight.size(0),
                        "vocabulary entries", tp);
       },
       [](nn::Module& m) -> std::shared_ptr<nn::Module> {
         return std::make_shared<nn::DistributedTransformerLMHead>(
             dynamic_cast<const nn::TransformerLMHead&>(m));
       },
       true},
  };
  return r;
}

}  // namespace

const Rule* find_rule(const nn::Module& m) {
  for (const Rule& r : rules())
    if (r.matches(m)) return &r;
  return nullptr;
}

std::string supported_names() {
  std::string s;
  for (const Rule& r : rules()) s += (s.empty() ? "" : ", ") + std::string(r.type);
  return s;
}

}  // namespace smp::detail::tp
