// smp::step: runs a user's training (or evaluation) step once per microbatch (SMP's @smp.step).
#pragma once

#include <smp/parallel/distributed.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace smp {

/// The values one step function returned for each microbatch, in microbatch order.
class StepOutput {
 public:
  StepOutput() = default;
  explicit StepOutput(std::vector<Tensor> per_microbatch) : outs_(std::move(per_microbatch)) {}

  const std::vector<Tensor>& outputs() const { return outs_; }
  size_t size() const { return outs_.size(); }
  const Tensor& operator[](size_t i) const { return outs_.at(i); }

  /// Elementwise mean over microbatches (a per-microbatch mean loss becomes the batch's).
  Tensor reduce_mean() const;
  /// Elementwise sum over microbatches.
  Tensor reduce_sum() const;
  /// The microbatch outputs joined along `dim` (the batch's outputs, in order).
  Tensor concat(int64_t dim = 0) const;
  /// The microbatch outputs stacked along a new dimension `dim`.
  Tensor stack(int64_t dim = 0) const;

 private:
  std::vector<Tensor> outs_;
};

/// How smp::step splits the step function's arguments (SMP's non_split_inputs and
/// input_split_axes). Positions count the arguments after the model, from 0.
struct StepOptions {
  /// Tensor arguments every microbatch receives whole.
  std::set<size_t> non_split_inputs;
  /// Split axis of a tensor argument (default 0, the batch axis).
  std::map<size_t, int64_t> input_split_axes;
};

namespace detail {

/// Slice `mb` of `microbatches` equal slices of `t` along `axis` (checked: divisible).
Tensor microbatch_slice(const Tensor& t, int64_t axis, int mb, int microbatches, size_t position);
/// Runs `body(mb)` for every microbatch of one step of `model`, in the order the schedule
/// gives, and checks how the step function used backward. `forward_only_ok(mb)` says whether
/// microbatch mb's outputs need no gradient (then a step without backward is evaluation).
/// `example` is microbatch 0 of the first tensor argument (the auto-partitioner runs it once).
void run_step(DistributedModel& model, int microbatches, const std::function<void(int)>& body,
              const std::function<bool()>& outputs_need_grad, const Tensor& example);
/// Number of microbatches a step splits into (the `microbatches` parameter, 1 before init).
int step_microbatches();
/// With a pipeline, replaces each output held by one partition with a real copy broadcast
/// from it, so every rank sees every value (no-op with pipeline_parallel_degree 1).
void share_step_outputs(std::vector<Tensor>& outputs);

template <class T>
struct is_tuple : std::false_type {};
template <class... T>
struct is_tuple<std::tuple<T...>> : std::true_type {};

template <class A>
decltype(auto) slice_arg(const StepOptions& o, size_t pos, A&& a, int mb, int m) {
  if constexpr (std::is_same_v<std::decay_t<A>, Tensor>) {
    if (o.non_split_inputs.count(pos) || !a.defined()) return Tensor(a);
    auto it = o.input_split_axes.find(pos);
    return microbatch_slice(a, it == o.input_split_axes.end() ? 0 : it->second, mb, m, pos);
  } else {
    return std::forward<A>(a);
  }
}

/// Microbatch 0 of the first defined tensor argument.
template <class... A>
Tensor first_microbatch(const StepOptions& o, int m, const A&... a) {
  Tensor found;
  size_t pos = 0;
  auto visit = [&](const auto& x) {
    if constexpr (std::is_same_v<std::decay_t<decltype(x)>, Tensor>) {
      if (!found.defined() && x.defined()) found = slice_arg(o, pos, x, 0, m);
    }
    ++pos;
  };
  (visit(a), ...);
  return found;
}

inline bool needs_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }
template <class... T>
bool needs_grad(const std::tuple<T...>& t) {
  return std::apply([](const auto&... x) { return (needs_grad(x) || ...); }, t);
}

}  // namespace detail

/// A step function wrapped by smp::step. Calling it with the model and the batch splits every
/// tensor argument into `microbatches` pieces along its split axis, runs the function once per
/// piece (backward included), and returns a StepOutput per returned tensor: a Tensor result
/// becomes StepOutput, a std::tuple of Tensors a std::tuple of StepOutputs, void stays void.
template <class F>
class StepFunction {
 public:
  StepFunction(F fn, StepOptions options) : fn_(std::move(fn)), options_(std::move(options)) {}

  template <class... Args>
  auto operator()(DistributedModel& model, Args&&... args) {
    const int m = detail::step_microbatches();
    using R = std::invoke_result_t<F&, DistributedModel&,
                                   decltype(detail::slice_arg(options_, 0, args, 0, 1))...>;
    auto call = [&](int mb) -> R {
      auto sliced = [&]<size_t... I>(std::index_sequence<I...>) {
        return std::tuple<decltype(detail::slice_arg(options_, 0, args, 0, 1))...>{
            detail::slice_arg(options_, I, args, mb, m)...};
      }
      (std::index_sequence_for<Args...>{});
      return std::apply([&](auto&&... a) { return fn_(model, std::forward<decltype(a)>(a)...); },
                        std::move(sliced));
    };
    const Tensor example = detail::first_microbatch(options_, m, args...);
    if constexpr (std::is_void_v<R>) {
      detail::run_step(
          model, m, [&](int mb) { call(mb); }, [] { return false; }, example);
    } else {
      std::vector<R> results(static_cast<size_t>(m));
      detail::run_step(
          model, m, [&](int mb) { results[static_cast<size_t>(mb)] = call(mb); },
          [&] {
            for (const R& r : results)
              if (detail::needs_grad(r)) return true;
            return false;
          },
          example);
      if constexpr (std::is_same_v<R, Tensor>) {
        detail::share_step_outputs(results);
        return StepOutput(detach_all(results));
      } else {
        static_assert(detail::is_tuple<R>::value,
                      "a step function returns void, a Tensor or a std::tuple of Tensors");
        return collect(results, std::make_index_sequence<std::tuple_size_v<R>>{});
      }
    }
  }

 private:
  static std::vector<Tensor> detach_all(const std::vector<Tensor>& v) {
    std::vector<Tensor> out;
    out.reserve(v.size());
    for (const Tensor& t : v) out.push_back(t.defined() ? t.detach() : t);
    return out;
  }
  template <class R, size_t... I>
  static auto collect(const std::vector<R>& results, std::index_sequence<I...>) {
    auto column = [&](auto idx) {
      std::vector<Tensor> v;
      for (const R& r : results) v.push_back(std::get<decltype(idx)::value>(r));
      detail::share_step_outputs(v);
      return StepOutput(detach_all(v));
    };
    return std::make_tuple(column(std::integral_constant<size_t, I>{})...);
  }

  F fn_;
  StepOptions options_;
};

/// Wraps a step function `fn(DistributedModel&, args...)` (SMP's @smp.step decorator).
template <class F>
StepFunction<F> step(F fn, StepOptions options = {}) {
  return StepFunction<F>(std::move(fn), std::move(options));
}

}  // namespace smp
