// What the tensor-parallel tests share: which ranks read distinct batches, where each
// parameter's shard lies, and the comparison of a distributed model's gradients with a
// one-process model's.
#pragma once

#include <gtest/gtest.h>
#include <smp/smp.h>

#include <map>
#include <string>

#include "tolerance.h"

namespace smp::test {

/// Ranks that read their own batch: every DP rank, or with prescaled_batch the RDP ranks (the
/// ranks of a TP group then share one batch).
inline int data_rank() { return config().prescaled_batch ? rdp_rank() : dp_rank(); }
inline int data_ranks() { return config().prescaled_batch ? rdp_size() : dp_size(); }

/// Layout of each sharded parameter of a wrapped model, by state_dict name.
inline std::map<std::string, nn::ShardSpec> shards_of(nn::Module& root) {
  return detail::shard_layouts(root);
}

/// This rank's part of the one-process tensor `full` named `name` (all of it when replicated).
inline Tensor local_part(const Tensor& full, const std::string& name,
                         const std::map<std::string, nn::ShardSpec>& shards) {
  auto it = shards.find(name);
  if (it == shards.end()) return full;
  return detail::shard_of(full, it->second, tp_size(), tp_rank());
}

/// Every parameter `model` holds here has a gradient equal (within `rel`, tolerance.h) to this
/// rank's part of the gradient of the same parameter of `ref`.
inline void expect_gradients_match(DistributedModel& model, nn::Module& ref, double rel) {
  const auto shards = shards_of(model.module());
  const auto rp = ref.named_parameters();
  int checked = 0;
  for (auto& [k, v] : model.module().named_parameters()) {
    if (v.is_meta()) continue;
    const Tensor* want = nullptr;
    for (auto& [rk, rv] : rp)
      if (rk == k) want = &rv;
    ASSERT_NE(want, nullptr) << k;
    ASSERT_TRUE(v.grad().defined()) << k;
    const std::string msg = float32_close(v.grad(), local_part(want->grad(), k, shards), rel);
    EXPECT_TRUE(msg.empty()) << k << ": " << msg;
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

/// The gathered state dict of `model` equals `ref`'s within `rel`.
inline void expect_weights_match(const DistributedModel& model, nn::Module& ref, double rel) {
  auto sd = model.state_dict();
  auto rsd = ref.state_dict();
  ASSERT_EQ(sd.size(), rsd.size());
  for (auto& [k, v] : sd) {
    const std::string msg = float32_close(v, rsd.at(k), rel);
    EXPECT_TRUE(msg.empty()) << k << ": " << msg;
  }
}

}  // namespace smp::test
