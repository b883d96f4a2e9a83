// The attention kernels (attention_core.h) for AVX-512: the 16-key score vectors and head_dim loops in 16 lanes.
#include "attention_internal.h"
#if CQ_X86
#define ATTN_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define ATTN_NAME(x) cq_attn_##x##_avx512
#include "attention_core.h"
#endif
