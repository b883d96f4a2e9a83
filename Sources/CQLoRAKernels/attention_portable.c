// The attention kernels (attention_core.h) for any CPU: 16-lane vectors lowered to the baseline
// (SSE2: four 4-lane registers each), small tiles; no FMA, so each product is rounded.
#include "attention_internal.h"

#define ATTN_TARGET
#define ATTN_NAME(x) cq_attn_##x##_portable
#define ATTN_SR 1
#define ATTN_PR 1
#define ATTN_EV 2
#define ATTN_KT 2
#include "attention_core.h"
