// The attention kernels (attention_core.h) for AVX2 + FMA: the 16-key score vectors and head_dim loops vectorized to 8 lanes.
#include "attention_internal.h"
#if CQ_X86
#define ATTN_TARGET __attribute__((target("avx2,fma")))
#define ATTN_NAME(x) cq_attn_##x##_avx2
#include "attention_core.h"
#endif
