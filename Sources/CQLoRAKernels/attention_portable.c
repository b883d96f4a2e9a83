// The attention kernels (attention_core.h) for any CPU: dot products by cq_dot_portable (eight
// partial sums in a fixed tree), element-wise loops left to the compiler's baseline vectorizer.
#include "attention_internal.h"

#define ATTN_TARGET
#define ATTN_NAME(x) cq_attn_##x##_portable
#define ATTN_DOT cq_dot_portable
#include "attention_core.h"
