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
