// AVX2 4-bit decode: 8 packed bytes -> 16 floats. vpermps on ymm sees 3 index bits, so each
// lookup takes both 8-entry halves of the scaled codebook and blends on bit 3.
#include "kernels_internal.h"
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __m256 lookup16(__m256i idx, __m256 lo, __m256 hi) {
    const __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)); // bit 3 -> sign bit
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx), sel);
}

AVX2 void cq_decode_range_avx2(const cq_qweight *w, int64_t e0, int64_t count, float *out) {
    const int64_t bs = w->block_size, end = e0 + count;
    int64_t e = e0;
    int64_t head = (16 - (e & 15)) & 15;
    if (head > count) head = count;
    cq_decode_range_portable(w, e, head, out);
    e += head;
    const __m256 cblo = _mm256_loadu_ps(w->codebook), cbhi = _mm256_loadu_ps(w->codebook + 8);
    cq_absmax_cursor cur = cq_cursor_at(w, e / bs);
    for (; e + 16 <= end; cq_cursor_next(&cur)) {
        const int64_t bend = (cur.b + 1) * bs < end ? (cur.b + 1) * bs : end;
        const __m256 a = _mm256_set1_ps(cq_cursor_value(&cur));
        const __m256 lo = _mm256_mul_ps(cblo, a), hi = _mm256_mul_ps(cbhi, a);
        for (; e + 16 <= bend; e += 16) {
            const __m128i bytes = _mm_loadl_epi64((const __m128i *)(w->packed + (e >> 1)));
            const __m128i idx = _mm_unpacklo_epi8(_mm_srli_epi16(bytes, 4), bytes);
            _mm256_storeu_ps(out + (e - e0), lookup16(_mm256_cvtepu8_epi32(idx), lo, hi));
            _mm256_storeu_ps(out + (e - e0) + 8, lookup16(_mm256_cvtepu8_epi32(_mm_srli_si128(idx, 8)), lo, hi));
        }
    }
    cq_decode_range_portable(w, e, end - e, out + (e - e0));
}

AVX2 float cq_dot_avx2(const float *a, const float *b, int64_t n) {
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
