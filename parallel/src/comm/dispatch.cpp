// The communicator smp::comm() hands out: routes each call by where its tensors live.
// CUDA tensors go to NCCL when there is one; without NCCL they are copied to host memory,
// communicated over MPI and copied back (the Work completes after the copy back). Host
// tensors and barrier() always go to MPI.
#include <smp/engine/autograd.h>

#include <mutex>

#include "comm/backend.h"
#include "comm/checks.h"

namespace smp::detail {

namespace {

/// An MPI operation on host copies of CUDA tensors; completing it copies the results back.
class StagedWork final : public Work {
 public:
  StagedWork(WorkPtr inner, std::vector<std::pair<Tensor, Tensor>> copy_back,
             std::vector<Tensor> keep)
      : inner_(std::move(inner)), copy_back_(std::move(copy_back)), keep_(std::move(keep)) {}

  bool is_completed() override {
    std::lock_guard<std::mutex> lk(mu_);
    if (finished_) return true;
    if (!inner_->is_completed()) return false;
    // Done, or failed (then wait() rethrows); either way nothing is left to run.
    try {
      inner_->wait();
      finish_locked();
    } catch (...) {
      error_ = std::current_exception();
      finished_ = true;
    }
    return true;
  }

  void wait() override {
    std::lock_guard<std::mutex> lk(mu_);
    if (!finished_) {
      inner_->wait();  // a timeout leaves it pending: a later wait may still succeed
      finish_locked();
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void finish_locked() {
    NoGradGuard no_grad;
    for (auto& [device_t, host_t] : copy_back_) device_t.copy_(host_t);
    copy_back_.clear();
    keep_.clear();
    finished_ = true;
  }

  std::mutex mu_;
  WorkPtr inner_;
  std::vector<std::pair<Tensor, Tensor>> copy_back_;  // (CUDA tensor, its host copy)
  std::vector<Tensor> keep_;
  bool finished_ = false;
  std::exception_ptr error_;
};

class DispatchCommunicator final : public Communicator {
 public:
  DispatchCommunicator(std::shared_ptr<Communicator> mpi, std::shared_ptr<Communicator> nccl)
      : mpi_(std::move(mpi)), nccl_(std::move(nccl)) {
    SMP_ASSERT(mpi_ != nullptr, "a dispatch communicator needs an MPI communicator");
    desc_ = fmt::format("{} {}", mpi_->name(), format_list(mpi_->world_ranks()));
  }

  const std::string& name() const override { return mpi_->name(); }
  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  const std::vector<int>& world_ranks() const override { return mpi_->world_ranks(); }

  WorkPtr allreduce(Tensor& t, ReduceOp op) override {
    switch (route("allreduce", {&t})) {
      case Route::Mpi:
        return mpi_->allreduce(t, op);
      case Route::Nccl:
        return nccl_->allreduce(t, op);
      case Route::Staged:
        break;
    }
    Tensor h = to_host("allreduce", t);
    return staged(mpi_->allreduce(h, op), {{t, h}}, {});
  }

  WorkPtr broadcast(Tensor& t, int root) override {
    switch (route("broadcast", {&t})) {
      case Route::Mpi:
        return mpi_->broadcast(t, root);
      case Route::Nccl:
        return nccl_->broadcast(t, root);
      case Route::Staged:
        break;
    }
    Tensor h = to_host("broadcast", t);
    return staged(mpi_->broadcast(h, root), {{t, h}}, {});
  }

  WorkPtr allgather(const Tensor& input, std::vector<Tensor>& outputs) override {
    std::vector<const Tensor*> all{&input};
    for (auto& o : outputs) all.push_back(&o);
    switch (route("allgather", all)) {
      case Route::Mpi:
        return mpi_->allgather(input, outputs);
      case Route::Nccl:
        return nccl_->allgather(input, outputs);
      case Route::Staged:
        break;
    }
    Tensor h = to_host("allgather", input);
    std::vector<Tensor> hout;
    std::vector<std::pair<Tensor, Tensor>> back;
    for (auto& o : outputs) {
      hout.push_back(host_like("allgather", o));
      back.emplace_back(o, hout.back());
    }
    auto w = mpi_->allgather(h, hout);
    return staged(std::move(w), std::move(back), {h});
  }

  WorkPtr reduce_scatter(const std::vector<Tensor>& inputs, Tensor& output, ReduceOp op) override {
    std::vector<const Tensor*> all{&output};
    for (auto& i : inputs) all.push_back(&i);
    switch (route("reduce_scatter", all)) {
      case Route::Mpi:
        return mpi_->reduce_scatter(inputs, output, op);
      case Route::Nccl:
        return nccl_->reduce_scatter(inputs, output, op);
      case Route::Staged:
        break;
    }
    std::vector<Tensor> hin;
    for (auto& i : inputs) hin.push_back(to_host("reduce_scatter", i));
    Tensor h = host_like("reduce_scatter", output);
    auto w = mpi_->reduce_scatter(hin, h, op);
    return staged(std::move(w), {{output, h}}, hin);
  }

  WorkPtr all_to_all(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) override {
    std::vector<const Tensor*> all;
    for (auto& i : inputs) all.push_back(&i);
    for (auto& o : outputs) all.push_back(&o);
    switch (route("all_to_all", all)) {
      case Route::Mpi:
        return mpi_->all_to_all(inputs, outputs);
      case Route::Nccl:
        return nccl_->all_to_all(inputs, outputs);
      case Route::Staged:
        break;
    }
    std::vector<Tensor> hin, hout;
    std::vector<std::pair<Tensor, Tensor>> back;
    for (auto& i : inputs) hin.push_back(to_host("all_to_all", i));
    for (auto& o : outputs) {
      hout.push_back(host_like("all_to_all", o));
      back.emplace_back(o, hout.back());
    }
    auto w = mpi_->all_to_all(hin, hout);
    return staged(std::move(w), std::move(back), hin);
  }

  WorkPtr send(const Tensor& t, int dst, int tag) override {
    switch (route("send", {&t})) {
      case Route::Mpi:
        return mpi_->send(t, dst, tag);
      case Route::Nccl:
        return nccl_->send(t, dst, tag);
      case Route::Staged:
        break;
    }
    Tensor h = to_host("send", t);
    return staged(mpi_->send(h, dst, tag), {}, {h});
  }

  WorkPtr recv(Tensor& t, int src, int tag) override {
    switch (route("recv", {&t})) {
      case Route::Mpi:
        return mpi_->recv(t, src, tag);
      case Route::Nccl:
        return nccl_->recv(t, src, tag);
      case Route::Staged:
        break;
    }
    Tensor h = host_like("recv", t);
    return staged(mpi_->recv(h, src, tag), {{t, h}}, {});
  }

  WorkPtr barrier() override { return mpi_->barrier(); }

 private:
  enum class Route { Mpi, Nccl, Staged };

  static std::string format_list(const std::vector<int>& v) {
    return fmt::format("[{}]", fmt::join(v, ", "));
  }

  Route route(const char* op, const std::vector<const Tensor*>& ts) const {
    OpContext c{op, desc_, "dispatch"};
    int cuda = 0, other = 0;
    for (const Tensor* t : ts) {
      if (!t->defined()) continue;  // the backend reports it
      (t->is_cuda() ? cuda : other) += 1;
    }
    if (cuda > 0 && other > 0)
      misuse(c, "the tensors of one call must all be on CUDA or all on the CPU, got a mix");
    if (cuda == 0) return Route::Mpi;
    return nccl_ ? Route::Nccl : Route::Staged;
  }

  // Host copy of a CUDA tensor that must be contiguous like any communicated tensor.
  Tensor to_host(const char* op, const Tensor& t) const {
    OpContext c{op, desc_, "dispatch"};
    if (!t.is_contiguous())
      misuse(c, fmt::format("a tensor of shape [{}] is not contiguous; communicate .contiguous() "
                            "and copy the result back",
                            fmt::join(t.sizes(), ", ")));
    NoGradGuard no_grad;
    return t.detach().cpu().contiguous();
  }

  Tensor host_like(const char* op, const Tensor& t) const {
    OpContext c{op, desc_, "dispatch"};
    if (!t.is_contiguous())
      misuse(c, fmt::format("a tensor of shape [{}] is not contiguous; communicate .contiguous() "
                            "and copy the result back",
                            fmt::join(t.sizes(), ", ")));
    return empty(t.sizes(), TensorOptions(t.dtype()));
  }

  static WorkPtr staged(WorkPtr w, std::vector<std::pair<Tensor, Tensor>> back,
                        std::vector<Tensor> keep) {
    return std::make_shared<StagedWork>(std::move(w), std::move(back), std::move(keep));
  }

  std::shared_ptr<Communicator> mpi_;
  std::shared_ptr<Communicator> nccl_;
  std::string desc_;
};

}  // namespace

std::shared_ptr<Communicator> make_dispatch_communicator(std::shared_ptr<Communicator> mpi,
                                                         std::shared_ptr<Communicator> nccl) {
  return std::make_shared<DispatchCommunicator>(std::move(mpi), std::move(nccl));
}

}  // namespace smp::detail
