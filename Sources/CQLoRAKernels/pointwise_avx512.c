// The pointwise kernels (pointwise_core.h) vectorized to 16 lanes (AVX-512); same bits as portable.
#include "pointwise_internal.h"
#if CQ_X86
#define PW_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define PW_NAME(x) cq_pw_##x##_avx512
#include "pointwise_core.h"
#endif
