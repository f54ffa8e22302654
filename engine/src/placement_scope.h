// Engine-internal side of the placement hook: the per-thread state, the op scope that
// SMP_PLACE_OP opens at the top of every op front end, and guards that switch the hook off.
#pragma once

#include <smp/engine/placement.h>

#include <vector>

#if defined(__CUDACC__)
// nvcc's front end rejects the attribute; CUDA sources (kernels, no op front ends) then use the
// general TLS model, which is valid for any definition.
#define SMP_TLS_INITIAL_EXEC
#else
#define SMP_TLS_INITIAL_EXEC __attribute__((tls_model("initial-exec")))
#endif

namespace smp::detail {

/// The calling thread's hook and the placement of the op (or PlacementGuard) running now.
struct PlacementState {
  PlacementHook* hook = nullptr;
  const Placement* scope = nullptr;
};
// Every op reads it, so it must cost a load: constinit spares other translation units a TLS
// init wrapper call, and initial-exec a __tls_get_addr call per access (16 bytes fit the
// static TLS reserve even when libsmp is dlopen'ed).
extern thread_local constinit PlacementState t_placement SMP_TLS_INITIAL_EXEC;

/// True unless a scope says another rank computes this op's values.
inline bool computes_here() {
  const Placement* p = t_placement.scope;
  return p == nullptr || p->local;
}

/// True when the op starting now must ask the hook: one is installed and no op decided yet.
inline bool asks_hook() { return t_placement.hook != nullptr && t_placement.scope == nullptr; }

inline void add_inputs(std::vector<const Tensor*>& v, const Tensor& t) {
  if (t.defined()) v.push_back(&t);
}
inline void add_inputs(std::vector<const Tensor*>& v, const std::vector<Tensor>& ts) {
  for (const auto& t : ts) add_inputs(v, t);
}

/// The scope of one outermost op: holds the hook's placement until the front end returns.
class OpScope {
 public:
  OpScope() = default;
  ~OpScope() {
    if (open_) t_placement.scope = nullptr;  // only the outermost op opens one
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

  template <class... Ts>
  void open(const char* op, const Ts&... inputs) {
    std::vector<const Tensor*> v;
    (add_inputs(v, inputs), ...);
    open_with(op, v);
  }

 private:
  void open_with(const char* op, const std::vector<const Tensor*>& inputs);
  Placement placement_;
  bool open_ = false;
};

/// Turns the hook off (keeps any open scope): factories that run ops internally use it so that
/// they never consult the hook, while still following the op that called them.
class HookPause {
 public:
  HookPause() : prev_(t_placement.hook) { t_placement.hook = nullptr; }
  ~HookPause() { t_placement.hook = prev_; }
  HookPause(const HookPause&) = delete;
  HookPause& operator=(const HookPause&) = delete;

 private:
  PlacementHook* prev_;
};

/// Turns the hook and any scope off: reading this rank's values (item, printing) and the
/// backward engine, which places each node itself.
class PlacementSuspend {
 public:
  PlacementSuspend() : prev_(t_placement) { t_placement = PlacementState{}; }
  ~PlacementSuspend() { t_placement = prev_; }
  PlacementSuspend(const PlacementSuspend&) = delete;
  PlacementSuspend& operator=(const PlacementSuspend&) = delete;

 private:
  PlacementState prev_;
};

}  // namespace smp::detail

/// First line of every op front end: asks the hook where the op runs, unless no hook is
/// installed or an outer op (or PlacementGuard) already decided. Arguments: the op's name and
/// its tensor inputs (Tensors or vectors of Tensors; undefined ones are skipped).
#define SMP_PLACE_OP(op, ...)                  \
  ::smp::detail::OpScope smp_op_scope_;        \
  if (::smp::detail::asks_hook()) [[unlikely]] \
  smp_op_scope_.open(op, __VA_ARGS__)
