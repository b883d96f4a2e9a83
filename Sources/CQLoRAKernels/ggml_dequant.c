// ggml block formats -> f32, exactly as ggml-quants.c dequantize_row_* and gguf-py's numpy
// reference (gguf.quants): every product and sum is one float32 operation in the reference's
// order, never contracted to an FMA (q*d + m must round the product and the sum separately
// like numpy; for Q6_K, d*scale*q rounds twice). Layouts (little-endian, f16 = IEEE binary16):
//   Q8_0 34 B: f16 d, int8 q[32];                  y = q*d
//   Q4_0 18 B: f16 d, u8 qs[16];                   y[j] = (lo(qs[j]) - 8)*d, y[j+16] = (hi - 8)*d
//   Q4_1 20 B: f16 d, f16 m, u8 qs[16];            y = q*d + m (low nibbles first half)
//   Q5_0 22 B: f16 d, u32 qh, u8 qs[16];           q = nibble | bit j of qh << 4; y = (q - 16)*d
//   Q5_1 24 B: f16 d, f16 m, u32 qh, u8 qs[16];    y = q*d + m
//   Q4_K 144 B (256): f16 d, f16 dmin, u8 scales[12] (8 6-bit scale/min pairs), u8 qs[128];
//        sub-block s: y = (d*sc[s])*q - (dmin*m[s])
//   Q6_K 210 B (256): u8 ql[128], u8 qh[64], int8 scales[16], f16 d; y = (d*sc)*(q - 32)
#pragma STDC FP_CONTRACT OFF
#pragma clang fp contract(off)
#include "kernels_internal.h"
#include "cq_ggml.h"
#include <string.h>

enum {
    T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8,
    T_Q4_K = 12, T_Q6_K = 14, T_BF16 = 30,
};

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (uint16_t)p[1] << 8); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/// Exact binary16 -> binary32 (subnormals, ±inf, NaN payload kept in the top mantissa bits, as
/// numpy's bit conversion).
static inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F) return bits_f32(sign | 0x7F800000u | man << 13);
    if (exp != 0) return bits_f32(sign | (exp + 112) << 23 | man << 13);
    // zero or subnormal: man * 2^-24, exact in binary32
    const float v = (float)man * 0x1p-24f;
    return sign ? -v : v;
}

static void rows_f32(const uint8_t *s, int64_t n, float *y) { memcpy(y, s, (size_t)n * 4); }
static void rows_f16(const uint8_t *s, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = f16_to_f32(rd16(s + 2 * i));
}
static void rows_bf16(const uint8_t *s, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = bits_f32((uint32_t)rd16(s + 2 * i) << 16);
}

static void blocks_q8_0(const uint8_t *s, int64_t nb, float *y) {
    for (int64_t b = 0; b < nb; b++, s += 34, y += 32) {
        const float d = f16_to_f32(rd16(s));
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)s[2 + j] * d;
    }
}

static void blocks_q4_0(const uint8_t *s, int64_t nb, float *y) {
    for (int64_t b = 0; b < nb; b++, s += 18, y += 32) {
        const float d = f16_to_f32(rd16(s));
        const uint8_t *qs = s + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((int)(qs[j] & 0x0F) - 8) * d;
            y[j + 16] = (float)((int)(qs[j] >> 4) - 8) * d;
        }
    }
}

static void blocks_q4_1(const uint8_t *s, int64_t nb, float *y) {
    for (int64_t b = 0; b < nb; b++, s += 20, y += 32) {
        const float d = f16_to_f32(rd16(s)), m = f16_to_f32(rd16(s + 2));
        const uint8_t *qs = s + 4;
        for (int j = 0; j < 16; j++) {
            const float p0 = (float)(qs[j] & 0x0F) * d, p1 = (float)(qs[j] >> 4) * d;
            y[j] = p0 + m;
            y[j + 16] = p1 + m;
        }
    }
}

static void blocks_q5_0(const uint8_t *s, int64_t nb, float *y) {
    for (int64_t b = 0; b < nb; b++, s += 22, y += 32) {
        const float d = f16_to_f32(rd16(s));
        const uint32_t qh = rd32(s + 2);
        const uint8_t *qs = s + 6;
        for (int j = 0; j < 16; j++) {
            const int q0 = (int)((qs[j] & 0x0F) | ((qh >> j) & 1) << 4) - 16;
            const int q1 = (int)((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16;
            y[j] = (float)q0 * d;
            y[j + 16] = (float)q1 * d;
        }
    }
}

static void blocks_q5_1(const uint8_t *s, int64_t nb, float *y) {
    for (int64_t b = 0; b < nb; b++, s += 24, y += 32) {
        const float d = f16_to_f32(rd16(s)), m = f16_to_f32(rd16(s + 2));
        const uint32_t qh = rd32(s + 4);
        const uint8_t *qs = s + 8;
        for (int j = 0; j < 16; j++) {
            const float p0 = (float)((qs[j] & 0x0F) | ((qh >> j) & 1) << 4) * d;
            const float p1 = (float)((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) * d;
            y[j] = p0 + m;
            y[j + 16] = p1 + m;
        }
    }
}

static void blocks_q4_k(const uint8_t *s, int64_t nb, float *y) {
    for (int64_t b = 0; b < nb; b++, s += 144, y += 256) {
        const float d = f16_to_f32(rd16(s)), dmin = f16_to_f32(rd16(s + 2));
        const uint8_t *sc = s + 4, *qs = s + 16;
        for (int sub = 0; sub < 8; sub++) {
            uint8_t scale, min;
            if (sub < 4) {
                scale = sc[sub] & 63;
                min = sc[sub + 4] & 63;
            } else {
                scale = (uint8_t)((sc[sub + 4] & 0x0F) | ((sc[sub - 4] >> 6) << 4));
                min = (uint8_t)((sc[sub + 4] >> 4) | ((sc[sub] >> 6) << 4));
            }
            const float d1 = d * (float)scale, m1 = dmin * (float)min;
            // sub-block 2g: low nibbles of qs[32g..32g+31]; 2g+1: their high nibbles
            const uint8_t *q = qs + 32 * (sub / 2);
            const int shift = 4 * (sub & 1);
            float *o = y + 32 * sub;
            for (int l = 0; l < 32; l++) {
                const float p = d1 * (float)((q[l] >> shift) & 0x0F);
                o[l] = p - m1;
            }
        }
    }
}

static void blocks_q6_k(const uint8_t *s, int64_t nb, float *y) {
    for (int64_t b = 0; b < nb; b++, s += 210, y += 256) {
        const uint8_t *ql = s, *qh = s + 128;
        const int8_t *sc = (const int8_t *)(s + 192);
        const float d = f16_to_f32(rd16(s + 208));
        for (int half = 0; half < 2; half++) {
            const uint8_t *l8 = ql + 64 * half, *h8 = qh + 32 * half;
            const int8_t *s8 = sc + 8 * half;
            float *o = y + 128 * half;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int)((l8[l] & 0x0F) | ((h8[l] >> 0) & 3) << 4) - 32;
                const int q2 = (int)((l8[l + 32] & 0x0F) | ((h8[l] >> 2) & 3) << 4) - 32;
                const int q3 = (int)((l8[l] >> 4) | ((h8[l] >> 4) & 3) << 4) - 32;
                const int q4 = (int)((l8[l + 32] >> 4) | ((h8[l] >> 6) & 3) << 4) - 32;
                const float d1 = d * (float)s8[is + 0], d2 = d * (float)s8[is + 2];
                const float d3 = d * (float)s8[is + 4], d4 = d * (float)s8[is + 6];
                o[l] = d1 * (float)q1;
                o[l + 32] = d2 * (float)q2;
                o[l + 64] = d3 * (float)q3;
                o[l + 96] = d4 * (float)q4;
            }
        }
    }
}

typedef void (*blocks_fn)(const uint8_t *src, int64_t nblocks, float *out);

typedef struct {
    blocks_fn fn;
    int64_t block_size, type_size;
} ggml_format;

static int format_of(int32_t type, ggml_format *f) {
    switch (type) {
    case T_F32: *f = (ggml_format){rows_f32, 1, 4}; return 1;
    case T_F16: *f = (ggml_format){rows_f16, 1, 2}; return 1;
    case T_BF16: *f = (ggml_format){rows_bf16, 1, 2}; return 1;
    case T_Q8_0: *f = (ggml_format){blocks_q8_0, 32, 34}; return 1;
    case T_Q4_0: *f = (ggml_format){blocks_q4_0, 32, 18}; return 1;
    case T_Q4_1: *f = (ggml_format){blocks_q4_1, 32, 20}; return 1;
    case T_Q5_0: *f = (ggml_format){blocks_q5_0, 32, 22}; return 1;
    case T_Q5_1: *f = (ggml_format){blocks_q5_1, 32, 24}; return 1;
    case T_Q4_K: *f = (ggml_format){blocks_q4_k, 256, 144}; return 1;
    case T_Q6_K: *f = (ggml_format){blocks_q6_k, 256, 210}; return 1;
    default: return 0;
    }
}

int cq_ggml_can_dequantize(int32_t type) {
    ggml_format f;
    return format_of(type, &f);
}

typedef struct {
    ggml_format f;
    const uint8_t *src;
    float *out;
} dequant_call;

static void dequant_range(void *ctx, int64_t b0, int64_t b1) {
    const dequant_call *c = (const dequant_call *)ctx;
    c->f.fn(c->src + b0 * c->f.type_size, b1 - b0, c->out + b0 * c->f.block_size);
}

int cq_ggml_dequantize(int32_t type, const void *src, int64_t nblocks, float *out, int threads) {
    dequant_call c;
    if (!format_of(type, &c.f)) return -1;
    c.src = (const uint8_t *)src;
    c.out = out;
    // Below ~64K elements a parallel region costs more than it saves.
    if (nblocks * c.f.block_size < 65536) threads = 1;
    cq_parallel_for(nblocks, threads, dequant_range, &c);
    return 0;
}
