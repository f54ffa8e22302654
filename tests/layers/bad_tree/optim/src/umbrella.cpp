// The umbrella header from inside a layer.
#include <smp/smp.h>
