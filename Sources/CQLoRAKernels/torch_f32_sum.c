// torch's float32 CPU sum, reproduced bit for bit: bitsandbytes' double-quant offset is
// absmax.mean() in float32, and torch adds in a fixed cascade of 8-lane vectors. The order is
// smollm2/manifest.json conventions.nf4.offset_algorithm (verified there on 210 tensors and for
// every ATen CPU capability); this file follows it step by step. Only additions occur (nothing
// can be contracted into an FMA) and every add is a separate float32 add, lane by lane.
#include "torch_f32_sum.h"
#include <string.h>

#pragma STDC FP_CONTRACT OFF

enum { LANES = 8, COLS = 4, LEVELS = 4 };

typedef struct { float v[LANES]; } vec8;

static inline void vec_add(vec8 *acc, const vec8 *x) {
    for (int l = 0; l < LANES; l++) acc->v[l] += x->v[l];
}

static inline void vec_load(vec8 *out, const float *x) { memcpy(out->v, x, sizeof out->v); }

/// 1 if x <= 2, else the bit length of x - 1 (the manifest's ceil_log2).
static int ceil_log2(int64_t x) {
    if (x <= 2) return 1;
    int bits = 0;
    for (uint64_t v = (uint64_t)(x - 1); v; v >>= 1) bits++;
    return bits;
}

/// acc[c] += v_{4·row + c} for the four columns c of one row.
static void add_row(vec8 acc[COLS], const float *x, int64_t row) {
    for (int c = 0; c < COLS; c++) {
        vec8 v;
        vec_load(&v, x + (row * COLS + c) * LANES);
        vec_add(&acc[c], &v);
    }
}

float cq_torch_f32_sum(const float *x, int64_t n) {
    if (n <= 0) return 0.0f;
    const int64_t nv = n / LANES;   // whole 8-lane vectors
    const int64_t rows = nv / COLS; // rows of four vectors
    vec8 acc[LEVELS][COLS];
    memset(acc, 0, sizeof acc);

    // The cascade: blocks of `step` rows go into level 0; each finished block carries upward.
    const int half = ceil_log2(rows) / 4;
    const int lp = half > 4 ? half : 4;
    const int64_t step = (int64_t)1 << lp;
    int64_t i = 0;
    while (i + step <= rows) {
        for (int64_t r = i; r < i + step; r++) add_row(acc[0], x, r);
        i += step;
        for (int j = 1; j < LEVELS; j++) {
            for (int c = 0; c < COLS; c++) {
                vec_add(&acc[j][c], &acc[j - 1][c]);
                memset(&acc[j - 1][c], 0, sizeof acc[j - 1][c]);
            }
            if ((i & ((step - 1) << (j * lp))) != 0) break;
        }
    }
    for (; i < rows; i++) add_row(acc[0], x, i);
    for (int j = 1; j < LEVELS; j++)
        for (int c = 0; c < COLS; c++) vec_add(&acc[0][c], &acc[j][c]);

    // Leftover vectors go into column 0, then the columns fold into column 0.
    vec8 *p = acc[0];
    for (int64_t k = rows * COLS; k < nv; k++) {
        vec8 v;
        vec_load(&v, x + k * LANES);
        vec_add(&p[0], &v);
    }
    for (int c = 1; c < COLS; c++) vec_add(&p[0], &p[c]);

    // Leftover scalars in order, then the eight lanes.
    float r = 0.0f;
    for (int64_t k = nv * LANES; k < n; k++) r += x[k];
    for (int l = 0; l < LANES; l++) r += p[0].v[l];
    return r;
}
