#include <fmt/ranges.h>
#include <smp/data/dataset.h>
#include <smp/data/transforms.h>

#include <cstring>

namespace smp::data {

Dataset::~Dataset() = default;

std::optional<Batch> Dataset::get_batch(const std::vector<size_t>&) const { return std::nullopt; }

MapDataset::MapDataset(std::shared_ptr<Dataset> dataset, std::shared_ptr<Transform> transform)
    : dataset_(std::move(dataset)), transform_(std::move(transform)) {
  SMP_CHECK(dataset_ != nullptr, "MapDataset: got a null dataset");
  SMP_CHECK(transform_ != nullptr, "MapDataset: got a null transform");
}

Example MapDataset::get(size_t index) const {
  Example e = dataset_->get(index);
  e.data = (*transform_)(e.data);
  return e;
}

namespace {
// One memcpy per example into a preallocated (B, ...) tensor: cheaper than smp::stack's
// general path for many small CPU tensors.
Tensor stack_field(const std::vector<Example>& examples, bool target) {
  const Tensor& first = target ? examples[0].target : examples[0].data;
  SMP_CHECK(first.defined(), "collate: example 0 has no {}", target ? "target" : "data");
  if (!first.is_cpu()) {
    std::vector<Tensor> ts;
    for (const auto& e : examples) ts.push_back(target ? e.target : e.data);
    return stack(ts, 0);
  }
  Shape shape = first.sizes();
  shape.insert(shape.begin(), static_cast<int64_t>(examples.size()));
  Tensor out = empty(shape, TensorOptions(first.dtype()));
  auto* dst = static_cast<char*>(out.data_ptr());
  const size_t bytes = first.nbytes();
  for (size_t i = 0; i < examples.size(); ++i) {
    const Tensor& t = target ? examples[i].target : examples[i].data;
    SMP_CHECK(t.defined() && t.sizes() == first.sizes() && t.dtype() == first.dtype() && t.is_cpu(),
              "collate: example {} has {} {} of shape {} and dtype {}, expected shape {} and "
              "dtype {} as example 0",
              i, t.defined() ? "" : "undefined", target ? "target" : "data",
              t.defined() ? fmt::format("{}", fmt::join(t.sizes(), ",")) : "-",
              t.defined() ? dtype_name(t.dtype()) : "-", fmt::join(first.sizes(), ","),
              dtype_name(first.dtype()));
    Tensor c = t.contiguous();
    std::memcpy(dst + i * bytes, c.data_ptr(), bytes);
  }
  return out;
}
}  // namespace

Batch collate(const std::vector<Example>& examples) {
  SMP_CHECK(!examples.empty(), "collate: got no examples");
  Batch b;
  b.data = stack_field(examples, false);
  b.target = stack_field(examples, true);
  return b;
}

}  // namespace smp::data
