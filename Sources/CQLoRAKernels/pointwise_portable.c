// The pointwise kernels (pointwise_core.h) for any CPU: the baseline vector width.
#include "pointwise_internal.h"

#define PW_TARGET
#define PW_NAME(x) cq_pw_##x##_portable
#include "pointwise_core.h"
