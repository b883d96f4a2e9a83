// The attention kernels (attention_core.h) for AVX2 + FMA: dot products by cq_dot_avx2 (two
// 8-lane FMA chains, a fixed reduction), element-wise loops over head_dim vectorized to 8 lanes.
#include "attention_internal.h"
#include "dot_simd_inline.h"
#if CQ_X86
#include <immintrin.h>

#define ATTN_TARGET __attribute__((target("avx2,fma")))
#define ATTN_NAME(x) cq_attn_##x##_avx2

#define ATTN_DOT cq_dot_avx2_inline
#include "attention_core.h"
#endif
