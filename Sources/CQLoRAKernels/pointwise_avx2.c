// The pointwise kernels (pointwise_core.h) vectorized to 8 lanes (AVX2); same bits as portable.
#include "pointwise_internal.h"
#if CQ_X86
#define PW_TARGET __attribute__((target("avx2,fma")))
#define PW_NAME(x) cq_pw_##x##_avx2
#include "pointwise_core.h"
#endif
