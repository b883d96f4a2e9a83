// AVX-512 transposed store of a GEMM accumulator tile (the panel GEMM's and the backward GEMM's
// epilogue): y[m * ldy + j] = ct[j * ldc + m] (+ bias[j]), 16 x 16 blocks transposed in registers
// instead of one strided scalar read per element. Same additions as the scalar loop, same bits.
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

/// r[0..16) (rows j of 16 m values) -> r[0..16) (rows m of 16 j values).
AVX512 static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    CQ_UNROLL for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);     // per 128-bit lane: columns 0, 1
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]); // columns 2, 3
    }
    CQ_UNROLL for (int i = 0; i < 16; i += 4) { // u[i + c]: column c of rows i..i+3, per lane
        u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    CQ_UNROLL for (int c = 0; c < 4; c++) { // gather lane L of u[c], u[4+c], u[8+c], u[12+c]
        const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        const __m512 w0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(v0, w0, 0x88);      // lane 0: column c
        r[4 + c] = _mm512_shuffle_f32x4(v1, w1, 0x88);  // lane 1: column 4 + c
        r[8 + c] = _mm512_shuffle_f32x4(v0, w0, 0xDD);  // lane 2: column 8 + c
        r[12 + c] = _mm512_shuffle_f32x4(v1, w1, 0xDD); // lane 3: column 12 + c
    }
}

AVX512 void cq_store_transposed_avx512(const float *ct, int64_t ldc, const float *bias, int64_t nj, int64_t nm, float *y,
                                       int64_t ldy) {
    for (int64_t j0 = 0; j0 < nj; j0 += 16) {
        const int64_t jn = nj - j0 < 16 ? nj - j0 : 16;
        const __mmask16 mask = (__mmask16)((1u << jn) - 1u);
        const __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + j0) : _mm512_setzero_ps();
        for (int64_t m0 = 0; m0 < nm; m0 += 16) {
            const int64_t mn = nm - m0 < 16 ? nm - m0 : 16;
            __m512 r[16];
            // Nothing past row nj or column nm is read (zeros instead) or stored.
            if (mn == 16) {
                CQ_UNROLL for (int i = 0; i < 16; i++) r[i] = i < jn ? _mm512_loadu_ps(ct + (j0 + i) * ldc + m0) : _mm512_setzero_ps();
            } else {
                const __mmask16 mm = (__mmask16)((1u << mn) - 1u);
                CQ_UNROLL for (int i = 0; i < 16; i++)
                    r[i] = i < jn ? _mm512_maskz_loadu_ps(mm, ct + (j0 + i) * ldc + m0) : _mm512_setzero_ps();
            }
            transpose16(r);
            float *d = y + m0 * ldy + j0;
            if (bias) {
                CQ_UNROLL for (int i = 0; i < 16; i++) r[i] = _mm512_add_ps(r[i], b);
            }
            if (jn == 16 && mn == 16) {
                CQ_UNROLL for (int i = 0; i < 16; i++) _mm512_storeu_ps(d + i * ldy, r[i]);
            } else {
                for (int i = 0; i < mn; i++) _mm512_mask_storeu_ps(d + i * ldy, mask, r[i]);
            }
        }
    }
}
#endif
