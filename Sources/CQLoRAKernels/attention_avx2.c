// The attention kernels (attention_core.h) for AVX2 + FMA: dot products by cq_dot_avx2 (two
// 8-lane FMA chains, a fixed reduction), element-wise loops over head_dim vectorized to 8 lanes.
#include "attention_internal.h"
#if CQ_X86
#include <immintrin.h>

#define ATTN_TARGET __attribute__((target("avx2,fma")))
#define ATTN_NAME(x) cq_attn_##x##_avx2

ATTN_TARGET static inline __attribute__((always_inline)) float attn_dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    float tail = 0.0f;
    for (; i < n; i++) tail += a[i] * b[i];
    const __m256 s = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h) + tail;
}
#define ATTN_DOT attn_dot_avx2
#include "attention_core.h"
#endif
