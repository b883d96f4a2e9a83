// The attention kernels (attention_core.h) for any CPU: loops left to the compiler's baseline vectorizer.
#include "attention_internal.h"

#define ATTN_TARGET
#define ATTN_NAME(x) cq_attn_##x##_portable
#include "attention_core.h"
