// smp::step's non-template half: microbatch slicing, the step loop and its checks.
#include <smp/engine/autograd.h>
#include <smp/parallel/runtime.h>
#include <smp/parallel/step.h>
#include <smp/parallel/trace.h>

#include "pipeline/pipeline.h"

namespace smp {

namespace detail {

/// The one door from smp::step into DistributedModel's step bookkeeping.
struct StepAccess {
  static auto& state(DistributedModel& m) { return m.step_; }
  static PipelineState& pipeline(DistributedModel& m) { return *m.pipeline_; }
};

Tensor microbatch_slice(const Tensor& t, int64_t axis, int mb, int microbatches, size_t position) {
  SMP_CHECK(t.dim() > 0,
            "smp::step: argument {} is a 0-dim tensor and cannot be split into microbatches; "
            "list it in StepOptions::non_split_inputs",
            position);
  const int64_t dim = axis < 0 ? axis + t.dim() : axis;
  SMP_CHECK(dim >= 0 && dim < t.dim(),
            "smp::step: split axis {} of argument {} is out of range "
            "for a {}-dim tensor",
            axis, position, t.dim());
  const int64_t n = t.size(dim);
  SMP_CHECK(n % microbatches == 0,
            "smp::step: argument {} has batch size {} along axis {}, which {} microbatches do not "
            "divide; use a batch size divisible by microbatches (a data loader with "
            "drop_last=true drops the short last batch)",
            position, n, dim, microbatches);
  const int64_t k = n / microbatches;
  return t.narrow(dim, k * mb, k);
}

int step_microbatches() { return is_initialized() ? config().microbatches : 1; }

void run_step(DistributedModel& model, int microbatches, const std::function<void(int)>& body,
              const std::function<bool()>& outputs_need_grad, const Tensor& example) {
  const bool pipelined = is_initialized() && pp_size() > 1;
  if (pipelined) partition_model(model, example);
  trace::Span step_span(trace::Kind::Step, "step");
  auto& st = StepAccess::state(model);
  SMP_CHECK(!st.active, "smp::step: a step is already running on this model; steps do not nest");
  st.active = true;
  st.microbatches = microbatches;
  st.backward_calls = 0;
  st.backward_runs = 0;
  st.calls_per_microbatch.assign(static_cast<size_t>(microbatches), 0);
  try {
    if (pipelined) {
      run_pipeline_step(StepAccess::pipeline(model), microbatches, body);
    } else {
      for (int mb = 0; mb < microbatches; ++mb) {
        st.current = mb;
        body(mb);
      }
    }
  } catch (...) {
    st.active = false;
    throw;
  }
  st.active = false;
  if (st.backward_calls == 0) {
    SMP_CHECK(!outputs_need_grad(),
              "smp::step: the step function returned tensors that need gradients but never "
              "called model.backward(loss); call it once per step function, or run an "
              "evaluation step under smp::NoGradGuard");
    return;
  }
  SMP_CHECK(st.backward_calls == microbatches,
            "smp::step: model.backward ran in {} of {} microbatches; the step function must "
            "call it exactly once every time",
            st.backward_calls, microbatches);
}

}  // namespace detail

Tensor StepOutput::reduce_mean() const {
  SMP_CHECK(!outs_.empty(), "StepOutput::reduce_mean: no microbatch outputs");
  return reduce_sum() / static_cast<double>(outs_.size());
}

Tensor StepOutput::reduce_sum() const {
  SMP_CHECK(!outs_.empty(), "StepOutput::reduce_sum: no microbatch outputs");
  Tensor s = outs_[0].clone();
  for (size_t i = 1; i < outs_.size(); ++i) s = s + outs_[i];
  return s;
}

Tensor StepOutput::concat(int64_t dim) const {
  SMP_CHECK(!outs_.empty(), "StepOutput::concat: no microbatch outputs");
  return cat(outs_, dim);
}

Tensor StepOutput::stack(int64_t dim) const {
  SMP_CHECK(!outs_.empty(), "StepOutput::stack: no microbatch outputs");
  return smp::stack(outs_, dim);
}

}  // namespace smp
