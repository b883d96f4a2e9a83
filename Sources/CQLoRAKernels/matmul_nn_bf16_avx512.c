// dX = dY·W in bf16 compute (AVX512-BF16) for a frozen weight W [N, K]: 4-bit, decoded on the
// fly, or f32 (the lm_head). The reduction runs over N, so the roles of the panel micro-kernel
// (cq_gemm_kernel_bf16: 32 x-lanes × 12 weight rows, pairs of bf16 along the reduction) are
// swapped: its "x" is a panel of W — 32 columns k, rows n taken in pairs — packed once per block
// of CQ_NN_BF16_BLOCK rows, and its "weight rows" are rows of dY rounded to bf16 once per call.
// The accumulator tile then lands as dX[m, k] directly. Each thread owns whole 32-column panels
// of dX and every output sums its N blocks in order: bitwise identical for any thread count.
#include "kernels_internal.h"
#if CQ_X86
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
enum { LANES = CQ_MRP_AVX512, NR = CQ_NR_AVX512 };
/// Rows of W per packed panel block (even): 128 pairs × 32 lanes × 4 bytes = 16 KiB, stays in L1
/// next to the 12 dY rows (6 KiB) a micro-tile reads.
#define CQ_NN_BF16_BLOCK 256

typedef struct {
    const float *dy;
    uint16_t *dyb;        // [mpad, npad] bf16, zero rows and column past M / N
    const cq_qweight *w;  // 4-bit source, or NULL
    const float *wf;      // f32 source [N, K]
    float *c;             // [mpad, kpad] accumulators (dX with padding)
    uint32_t *packs;      // per thread: CQ_NN_BF16_BLOCK / 2 × LANES pairs
    int64_t M, mpad, N, npad, K, kpad;
    cq_decode_fn decode;
} nn_job;

static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

BF16 static void round_dy_rows(void *p, int64_t m0, int64_t m1) {
    const nn_job *j = (const nn_job *)p;
    for (int64_t m = m0; m < m1; m++) {
        uint16_t *row = j->dyb + m * j->npad;
        if (m < j->M) cq_to_bf16(j->dy + m * j->N, j->N, row);  // appends the zero of an odd N
        else memset(row, 0, (size_t)j->npad * sizeof(uint16_t));
    }
}

/// W[n, k0 .. k0+kc) as LANES floats (zeros past kc, and for n past N).
static void w_row(const nn_job *j, int64_t n, int64_t k0, int64_t kc, float *out) {
    if (n >= j->N) { memset(out, 0, LANES * sizeof(float)); return; }
    if (j->w) j->decode(j->w, n * j->K + k0, kc, out);
    else memcpy(out, j->wf + n * j->K + k0, (size_t)kc * sizeof(float));
    for (int64_t i = kc; i < LANES; i++) out[i] = 0.0f;
}

/// dst[lane] = bf16(r0[lane]) | bf16(r1[lane]) << 16: rows n and n+1 as one reduction pair.
BF16 static void pack_pair(const float *r0, const float *r1, uint32_t *dst) {
    for (int h = 0; h < LANES; h += 16) {
        const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(r0 + h)));
        const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(r1 + h)));
        _mm512_storeu_si512((void *)(dst + h), _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
}

BF16 static void nn_worker(void *p, int t, int nt) {
    const nn_job *j = (const nn_job *)p;
    const int64_t panels = j->kpad / LANES;
    uint32_t *pack = j->packs + (size_t)t * (CQ_NN_BF16_BLOCK / 2) * LANES;
    float r0[LANES], r1[LANES];
    for (int64_t q = panels * t / nt; q < panels * (t + 1) / nt; q++) {
        const int64_t k0 = q * LANES, kc = j->K - k0 < LANES ? j->K - k0 : LANES;
        for (int64_t n0 = 0; n0 < j->npad; n0 += CQ_NN_BF16_BLOCK) {
            const int64_t nb = j->npad - n0 < CQ_NN_BF16_BLOCK ? j->npad - n0 : CQ_NN_BF16_BLOCK;
            for (int64_t kk = 0; kk < nb / 2; kk++) {
                w_row(j, n0 + 2 * kk, k0, kc, r0);
                w_row(j, n0 + 2 * kk + 1, k0, kc, r1);
                pack_pair(r0, r1, pack + kk * LANES);
            }
            for (int64_t m0 = 0; m0 < j->mpad; m0 += NR)
                cq_gemm_kernel_bf16(pack, j->dyb + m0 * j->npad + n0, j->npad, nb / 2, j->c + m0 * j->kpad + k0, j->kpad);
        }
    }
}

static void *aligned(size_t bytes) {
    void *p = NULL;
    return posix_memalign(&p, 64, bytes ? bytes : 64) == 0 ? p : NULL;
}

BF16 void cq_matmul_nn_bf16_avx512(const float *dy, int64_t M, const cq_qweight *w, const float *wf, int64_t N, int64_t K,
                                   float *dx, int threads) {
    if (M <= 0 || K <= 0) return;
    if (N <= 0) { memset(dx, 0, (size_t)(M * K) * sizeof(float)); return; }
    nn_job j = {.dy = dy, .w = w, .wf = wf, .M = M, .mpad = round_up(M, NR), .N = N, .npad = round_up(N, 2), .K = K,
                .kpad = round_up(K, LANES), .decode = cq_gemm_isa_current().decode};
    const int64_t panels = j.kpad / LANES;
    const int team = panels < threads ? (int)panels : threads;
    j.dyb = (uint16_t *)aligned((size_t)(j.mpad * j.npad) * sizeof(uint16_t));
    j.c = (float *)aligned((size_t)(j.mpad * j.kpad) * sizeof(float));
    j.packs = (uint32_t *)aligned((size_t)team * (CQ_NN_BF16_BLOCK / 2) * LANES * sizeof(uint32_t));
    if (!j.dyb || !j.c || !j.packs) abort();  // out of memory: nothing sensible to return
    memset(j.c, 0, (size_t)(j.mpad * j.kpad) * sizeof(float));
    cq_parallel_for(j.mpad, M * N > 32768 ? threads : 1, round_dy_rows, &j);
    cq_parallel(team, nn_worker, &j);
    for (int64_t m = 0; m < M; m++) memcpy(dx + m * K, j.c + m * j.kpad, (size_t)K * sizeof(float));
    free(j.packs);
    free(j.c);
    free(j.dyb);
}
#endif
