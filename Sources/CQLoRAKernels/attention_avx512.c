// The attention kernels (attention_core.h) for AVX-512: dot products in two 16-lane FMA chains
// with a masked tail and a fixed reduction, element-wise loops over head_dim vectorized to 16 lanes.
#include "attention_internal.h"
#if CQ_X86
#include <immintrin.h>

#define ATTN_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define ATTN_NAME(x) cq_attn_##x##_avx512

ATTN_TARGET static inline __attribute__((always_inline)) float attn_dot_avx512(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
#define ATTN_DOT attn_dot_avx512
#include "attention_core.h"
#endif
