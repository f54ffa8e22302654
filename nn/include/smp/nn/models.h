// Ready-made models: the MNIST example CNN and torchvision's ResNet-18, with PyTorch's
// parameter names so weights move between libsmp and PyTorch unchanged.
#pragma once

#include <smp/nn/layers.h>
#include <smp/nn/module.h>

#include <memory>

namespace smp::nn {

/// PyTorch's MNIST example network: conv1 1→32 3×3, conv2 32→64 3×3, max-pool 2, dropout
/// 0.25, flatten, fc1 9216→128, dropout 0.5, fc2 128→10, log_softmax. Input (N, 1, 28, 28).
/// With dropout = false the dropouts are skipped (deterministic, e.g. for golden checks).
class MnistNet : public Module {
 public:
  explicit MnistNet(bool dropout = true);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "MnistNet"; }
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<Dropout> dropout1, dropout2;
  std::shared_ptr<Linear> fc1, fc2;

 private:
  bool use_dropout_;
};

/// torchvision's BasicBlock: two 3×3 convs with batch norm and a residual connection;
/// `downsample` (1×1 conv + bn, "downsample.0"/"downsample.1") when the shape changes.
class BasicBlock : public Module {
 public:
  BasicBlock(int64_t in_planes, int64_t planes, int64_t stride);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "BasicBlock"; }
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<ReLU> relu;
  std::shared_ptr<Sequential> downsample;  // null when the identity fits
};

/// torchvision.models.resnet18 layout, names and initialisation (convs kaiming_normal fan_out
/// relu, batch norm 1/0, fc as Linear's default). Input (N, in_channels, H, W).
class ResNet18 : public Module {
 public:
  explicit ResNet18(int64_t num_classes = 1000, int64_t in_channels = 3);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "ResNet18"; }
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  std::shared_ptr<ReLU> relu;
  std::shared_ptr<MaxPool2d> maxpool;
  std::shared_ptr<Sequential> layer1, layer2, layer3, layer4;
  std::shared_ptr<AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<Linear> fc;
};

}  // namespace smp::nn
