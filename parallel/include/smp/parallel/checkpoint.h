// Checkpoints with SMP's API: smp::save / smp::load for state dicts, and
// smp::save_checkpoint / smp::resume_from_checkpoint for a whole training state that resumes
// bit for bit under the same layout and reshards to any other (docs/checkpoints.md).
#pragma once

#include <smp/engine/tensor.h>
#include <smp/parallel/distributed.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace smp {

/// A checkpoint that cannot be read: a missing, truncated or corrupt file (checksum
/// mismatch), a manifest of another format or model. The message names the file and rank.
class CheckpointError : public Error {
 public:
  explicit CheckpointError(const std::string& msg) : Error(msg) {}
};

/// SMP's smp.save for a state dict. `partial`: every rank writes its own part to
/// `{path}_{pp_rank}_{tp_rank}` (the ranks of an RDP group hold the same part and each writes
/// it); otherwise rank 0 writes `path`. safetensors, written under a temporary name, flushed
/// and renamed.
void save(const std::map<std::string, Tensor>& obj, const std::string& path, bool partial = true);
/// SMP's smp.load: `{path}_{pp_rank}_{tp_rank}` when `partial`, else `path`.
std::map<std::string, Tensor> load(const std::string& path, bool partial = true);

/// SMP's smp.save_checkpoint: writes `path/tag/` (every rank calls it together):
/// - partial: each rank of RDP index 0 writes its model and optimizer state as held
///   (`model_{pp}_{tp}.safetensors`, `optimizer_{pp}_{tp}.safetensors`);
///   full: rank 0 writes the gathered `model.safetensors` and `optimizer.safetensors`;
/// - rank 0 writes `manifest.json`: each tensor's dtype, global shape and the slice each file
///   holds, the configuration, the partition decision, every rank's generator states, the
///   user content, the libsmp version and each file's CRC-32;
/// - then `path/newest` names the tag. Every file is written under a temporary name, flushed
///   and renamed, and `newest` changes only after every rank has finished, so a job killed
///   during a save leaves the previous checkpoint loadable.
/// `num_kept_partial_checkpoints` > 0 removes the oldest tags beyond that many.
void save_checkpoint(const std::string& path, const std::string& tag, bool partial,
                     DistributedModel& model, DistributedOptimizer* optimizer,
                     const nlohmann::json& user_content = nlohmann::json::object(),
                     int num_kept_partial_checkpoints = -1);

/// SMP's smp.resume_from_checkpoint: loads `path/tag` (tag "" = the one `path/newest` names)
/// into `model` and `optimizer` under whatever pp × tp × dp layout runs now: each tensor is
/// put together from the slices of the saved layout and cut to this rank's. Before the first
/// step it is applied when the model is partitioned. With the saved layout each rank's
/// generators are restored, so training continues bit for bit. Returns the user content.
/// Every problem is a CheckpointError on every rank, naming the file.
nlohmann::json resume_from_checkpoint(const std::string& path, DistributedModel& model,
                                      DistributedOptimizer* optimizer, const std::string& tag = "",
                                      bool strict = true, bool load_optimizer = true);

}  // namespace smp
