// A public header that includes a private one, which is not installed.
#pragma once
#include "../../../src/fused.h"
