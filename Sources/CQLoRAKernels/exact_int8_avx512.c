// AVX-512 dot of an f32 row with a row in the exact int8 form (cq_exact_int8_blocks): each 16-value
// half of a 32-block is widened and scaled (exact: the form reproduces the f32 values bit for bit)
// and fed to the same two FMA chains, masked tail and reduction as cq_dot_avx512, so the result
// has cq_dot_avx512's bits on the f32 row while reading 1.06 bytes per weight instead of 4.
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) float cq_dot_exact_int8_avx512(const float *a, const int8_t *q,
                                                                                              const float *d, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 scale = _mm512_set1_ps(d[i / CQ_EXACT_INT8_BLOCK]);
        const __m512 w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + i)))), scale);
        const __m512 w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + i + 16)))), scale);
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), w0, s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), w1, s1);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 scale = _mm512_set1_ps(d[i / CQ_EXACT_INT8_BLOCK]);
        const __m512 w = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, q + i))), scale);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), w, s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
#endif
