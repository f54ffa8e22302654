#include <smp/engine/error.h>
#include <smp/nn/init.h>
#include <smp/nn/models.h>

namespace smp::nn {

MnistNet::MnistNet(bool dropout) : use_dropout_(dropout) {
  conv1 = register_module("conv1", std::make_shared<Conv2d>(1, 32, 3));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(32, 64, 3));
  dropout1 = register_module("dropout1", std::make_shared<Dropout>(0.25));
  dropout2 = register_module("dropout2", std::make_shared<Dropout>(0.5));
  fc1 = register_module("fc1", std::make_shared<Linear>(9216, 128));
  fc2 = register_module("fc2", std::make_shared<Linear>(128, 10));
}

Tensor MnistNet::forward(const Tensor& input) {
  Tensor x = smp::relu((*conv1)(input));
  x = smp::relu((*conv2)(x));
  x = smp::max_pool2d(x, {2, 2});
  if (use_dropout_) x = (*dropout1)(x);
  x = smp::flatten(x, 1);
  x = smp::relu((*fc1)(x));
  if (use_dropout_) x = (*dropout2)(x);
  x = (*fc2)(x);
  return smp::log_softmax(x, 1);
}

namespace {
std::shared_ptr<Conv2d> conv3x3(int64_t in, int64_t out, int64_t stride) {
  return std::make_shared<Conv2d>(Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}
}  // namespace

BasicBlock::BasicBlock(int64_t in_planes, int64_t planes, int64_t stride) {
  conv1 = register_module("conv1", conv3x3(in_planes, planes, stride));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  relu = register_module("relu", std::make_shared<ReLU>());
  conv2 = register_module("conv2", conv3x3(planes, planes, 1));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  if (stride != 1 || in_planes != planes) {
    downsample = std::make_shared<Sequential>();
    downsample->push_back(
        std::make_shared<Conv2d>(Conv2dOptions(in_planes, planes, 1).stride(stride).bias(false)));
    downsample->push_back(std::make_shared<BatchNorm2d>(planes));
    register_module("downsample", downsample);
  }
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor out = (*relu)((*bn1)((*conv1)(x)));
  out = (*bn2)((*conv2)(out));
  Tensor identity = downsample ? (*downsample)(x) : x;
  return (*relu)(out + identity);
}

ResNet18::ResNet18(int64_t num_classes, int64_t in_channels) {
  SMP_CHECK(num_classes > 0 && in_channels > 0,
            "ResNet18: num_classes and in_channels must be positive, got {} and {}", num_classes,
            in_channels);
  conv1 = register_module(
      "conv1",
      std::make_shared<Conv2d>(Conv2dOptions(in_channels, 64, 7).stride(2).padding(3).bias(false)));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(64));
  relu = register_module("relu", std::make_shared<ReLU>());
  maxpool = register_module("maxpool",
                            std::make_shared<MaxPool2d>(MaxPool2dOptions(3).stride(2).padding(1)));
  int64_t in_planes = 64;
  auto make_layer = [&](int64_t planes, int64_t stride) {
    auto layer = std::make_shared<Sequential>();
    layer->push_back(std::make_shared<BasicBlock>(in_planes, planes, stride));
    in_planes = planes;
    layer->push_back(std::make_shared<BasicBlock>(in_planes, planes, 1));
    return layer;
  };
  layer1 = register_module("layer1", make_layer(64, 1));
  layer2 = register_module("layer2", make_layer(128, 2));
  layer3 = register_module("layer3", make_layer(256, 2));
  layer4 = register_module("layer4", make_layer(512, 2));
  avgpool = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1));
  fc = register_module("fc", std::make_shared<Linear>(512, num_classes));

  // torchvision's init pass over every module (fc keeps Linear's default).
  for (auto& m : modules()) {
    if (auto c = std::dynamic_pointer_cast<Conv2d>(m)) {
      init::kaiming_normal_(c->weight, 0.0, "fan_out", "relu");
    } else if (auto b = std::dynamic_pointer_cast<BatchNorm2d>(m)) {
      init::ones_(b->weight);
      init::zeros_(b->bias);
    }
  }
}

Tensor ResNet18::forward(const Tensor& input) {
  Tensor x = (*maxpool)((*relu)((*bn1)((*conv1)(input))));
  x = (*layer4)((*layer3)((*layer2)((*layer1)(x))));
  x = smp::flatten((*avgpool)(x), 1);
  return (*fc)(x);
}

}  // namespace smp::nn
