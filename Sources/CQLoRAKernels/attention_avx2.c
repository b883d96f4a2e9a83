// The attention kernels (attention_core.h) for AVX2 + FMA: each 16-lane vector is two 8-lane
// registers, so the tiles are half of AVX-512's (16 registers). Same bits as AVX-512: the tiles
// never change the order of an element's additions.
#include "attention_internal.h"
#if CQ_X86
#define ATTN_TARGET __attribute__((target("avx2,fma")))
#define ATTN_NAME(x) cq_attn_##x##_avx2
#define ATTN_SR 1
#define ATTN_PR 2
#define ATTN_EV 2
#define ATTN_KT 2
#include "attention_core.h"
#endif
