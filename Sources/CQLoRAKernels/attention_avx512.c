// The attention kernels (attention_core.h) for AVX-512: dot products in two 16-lane FMA chains
// with a masked tail and a fixed reduction, element-wise loops over head_dim vectorized to 16 lanes.
#include "attention_internal.h"
#include "dot_simd_inline.h"
#if CQ_X86
#include <immintrin.h>

#define ATTN_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define ATTN_NAME(x) cq_attn_##x##_avx512

#define ATTN_DOT cq_dot_avx512_inline
#include "attention_core.h"
#endif
