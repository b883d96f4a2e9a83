// The attention kernels (attention_core.h) for AVX-512: 16-lane vectors; 6 score rows × 4 chains,
// 4 rows × 64 head_dim lanes for P·V and dS·K, 4 keys × 64 lanes for dk and dv (32 registers).
#include "attention_internal.h"
#if CQ_X86
#define ATTN_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define ATTN_NAME(x) cq_attn_##x##_avx512
#define ATTN_SR 6
#define ATTN_PR 4
#define ATTN_EV 4
#define ATTN_KT 4
#include "attention_core.h"
#endif
