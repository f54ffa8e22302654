// The one header a libsmp user includes.
#pragma once

#include <smp/engine/autograd.h>
#include <smp/engine/cuda.h>
#include <smp/engine/device.h>
#include <smp/engine/dtype.h>
#include <smp/engine/error.h>
#include <smp/engine/format.h>
#include <smp/engine/random.h>
#include <smp/engine/scalar.h>
#include <smp/engine/serialize.h>
#include <smp/engine/tensor.h>
#include <smp/engine/threading.h>
#include <smp/version.h>
#include <smp/nn/module.h>
#include <smp/nn/options.h>
#include <smp/nn/layers.h>
#include <smp/nn/functional.h>
#include <smp/nn/init.h>
#include <smp/nn/models.h>
#include <smp/optim/adadelta.h>
#include <smp/optim/adam.h>
#include <smp/optim/clip_grad.h>
#include <smp/optim/lr_scheduler.h>
#include <smp/optim/optimizer.h>
#include <smp/optim/sgd.h>
