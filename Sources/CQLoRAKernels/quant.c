// bitsandbytes 0.50.2-exact blockwise 4-bit quantization and 8-bit double quantization.
// The rules (and why they are what they are) are spelled out in shared/reference/manifest.json.
#include "cqlora.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

// bnb get_4bit_type('nf4') and get_4bit_type('fp4') (fp4 = [0, .0625, 8, 12, 4, 6, 2, 3, ...]/12).
static const float NF4_CODE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
static float FP4_CODE[16];
// Sorted-order tables: nibble = ORDER[number of bounds strictly below s].
static const uint8_t NF4_ORDER[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t FP4_ORDER[16] = {11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3};
static float NF4_BOUNDS[15], FP4_BOUNDS[15];
static int g_tables_ready = 0;

static void init_tables(void) {
    if (__atomic_load_n(&g_tables_ready, __ATOMIC_ACQUIRE)) return;
    static const float fp4_raw[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, 0, -0.0625f, -8, -12, -4, -6, -2, -3};
    float code[16];
    for (int i = 0; i < 16; i++) code[i] = fp4_raw[i] / 12.0f; // f32 division, as bnb
    code[8] = 0.0f;                                            // +0.0, not -0.0
    for (int j = 0; j < 15; j++) {
        NF4_BOUNDS[j] = (NF4_CODE[NF4_ORDER[j]] + NF4_CODE[NF4_ORDER[j + 1]]) / 2.0f;
        FP4_BOUNDS[j] = (code[FP4_ORDER[j]] + code[FP4_ORDER[j + 1]]) / 2.0f;
    }
    memcpy(FP4_CODE, code, sizeof code);
    __atomic_store_n(&g_tables_ready, 1, __ATOMIC_RELEASE);
}

const float *cq_codebook(cq_quant_type type) {
    init_tables();
    return type == CQ_NF4 ? NF4_CODE : FP4_CODE;
}

static inline uint8_t quantize_one(float s, const float *bounds, const uint8_t *order) {
    int j = 0;
    for (int k = 0; k < 15; k++) j += bounds[k] < s; // strictly below: ties go to the lower index
    return order[j];
}

int cq_quantize_4bit(const float *w, int64_t n, int32_t block_size, cq_quant_type type,
                     uint8_t *packed, float *absmax, int64_t *bad_index, int threads) {
    init_tables();
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(w[i])) { if (bad_index) *bad_index = i; return -1; }
    }
    const float *bounds = type == CQ_NF4 ? NF4_BOUNDS : FP4_BOUNDS;
    const uint8_t *order = type == CQ_NF4 ? NF4_ORDER : FP4_ORDER;
    const int64_t nblocks = (n + block_size - 1) / block_size;
    const uint8_t zero_code = quantize_one(0.0f, bounds, order);
    // Blocks are even-sized (>= 32), so every block starts on a byte boundary.
    #pragma omp parallel for schedule(static) num_threads(threads) if (n > 65536)
    for (int64_t b = 0; b < nblocks; b++) {
        const int64_t start = b * block_size;
        const int64_t end = start + block_size < n ? start + block_size : n;
        const int partial = (end - start) != block_size;
        float m = 0.0f;
        for (int64_t i = start; i < end; i++) { float a = fabsf(w[i]); if (a > m) m = a; }
        absmax[b] = m;
        const float scale_base = m < 1e-38f ? 1e-38f : m;
        const float recip = 1.0f / scale_base;
        for (int64_t i = start; i < end; i += 2) {
            float s0 = partial ? w[i] / scale_base : w[i] * recip;
            s0 = s0 < -1.0f ? -1.0f : (s0 > 1.0f ? 1.0f : s0);
            uint8_t q0 = quantize_one(s0, bounds, order), q1 = zero_code;
            if (i + 1 < end) {
                float s1 = partial ? w[i + 1] / scale_base : w[i + 1] * recip;
                s1 = s1 < -1.0f ? -1.0f : (s1 > 1.0f ? 1.0f : s1);
                q1 = quantize_one(s1, bounds, order);
            }
            packed[i / 2] = (uint8_t)((q0 << 4) | q1);
        }
    }
    return 0;
}

// bnb create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), as float32.
static void dynamic_map(float *code) {
    double values[256];
    int count = 0;
    const int max_exp = 7, total_bits = 8, non_sign_bits = total_bits - 1;
    const int additional = (1 << (non_sign_bits - max_exp)) ; // unused width marker
    (void)additional;
    for (int i = 0; i < max_exp; i++) {
        int fraction_items = (1 << (i + non_sign_bits - max_exp)) + 1;
        // torch.linspace(0.1, 1, fraction_items) in float32
        double prev = 0;
        for (int k = 0; k < fraction_items - 1; k++) {
            float lo = 0.1f, hi = 1.0f;
            float step = (hi - lo) / (float)(fraction_items - 1);
            float b0 = (k < (fraction_items - 1) / 2) ? lo + step * (float)k : hi - step * (float)(fraction_items - 1 - k);
            float b1 = (k + 1 < (fraction_items - 1) / 2) ? lo + step * (float)(k + 1)
                                                          : hi - step * (float)(fraction_items - 1 - (k + 1));
            float mean = (b0 + b1) / 2.0f;
            double v = pow(10.0, -(max_exp - 1) + i) * (double)mean;
            values[count++] = v;
            values[count++] = -v;
            prev = v;
        }
        (void)prev;
    }
    values[count++] = 0.0;
    values[count++] = 1.0;
    // pad to 256 with zeros then sort
    while (count < 256) values[count++] = 0.0;
    for (int i = 1; i < 256; i++) { // insertion sort
        double v = values[i]; int j = i - 1;
        while (j >= 0 && values[j] > v) { values[j + 1] = values[j]; j--; }
        values[j + 1] = v;
    }
    for (int i = 0; i < 256; i++) code[i] = (float)values[i];
}

void cq_double_quantize(const float *absmax, int64_t nblocks, int32_t block_size2,
                        float *code2, uint8_t *qabsmax, float *absmax2, float *offset_out) {
    dynamic_map(code2);
    double sum = 0.0;
    for (int64_t i = 0; i < nblocks; i++) sum += absmax[i];
    const float offset = (float)(sum / (double)nblocks);
    *offset_out = offset;
    // bnb 0.50.2 CPU: 65536-entry LUT of the nearest code (ties to the lower index).
    static uint8_t lut[65536];
    static int lut_ready = 0;
    static float lut_code0 = 0;
    if (!__atomic_load_n(&lut_ready, __ATOMIC_ACQUIRE) || lut_code0 != code2[0]) {
        int c = 0;
        for (int i = 0; i < 65536; i++) {
            float v = -1.0f + 2.0f * (float)i / 65535.0f;
            while (c < 255 && fabsf(code2[c + 1] - v) < fabsf(code2[c] - v)) c++;
            lut[i] = (uint8_t)c;
        }
        lut_code0 = code2[0];
        __atomic_store_n(&lut_ready, 1, __ATOMIC_RELEASE);
    }
    const int64_t nb2 = (nblocks + block_size2 - 1) / block_size2;
    for (int64_t b = 0; b < nb2; b++) {
        const int64_t start = b * block_size2;
        const int64_t end = start + block_size2 < nblocks ? start + block_size2 : nblocks;
        float m = 0.0f;
        for (int64_t i = start; i < end; i++) { float a = fabsf(absmax[i] - offset); if (a > m) m = a; }
        absmax2[b] = m;
        const float recip = 1.0f / (m < 1e-38f ? 1e-38f : m);
        for (int64_t i = start; i < end; i++) {
            float s = (absmax[i] - offset) * recip;
            s = s < -1.0f ? -1.0f : (s > 1.0f ? 1.0f : s);
            uint16_t idx = (uint16_t)((s + 1.0f) * 0.5f * 65535.0f + 0.5f);
            qabsmax[i] = lut[idx];
        }
    }
}

void cq_double_dequantize(const uint8_t *qabsmax, int64_t nblocks, int32_t block_size2,
                          const float *code2, const float *absmax2, float offset, float *out) {
    for (int64_t i = 0; i < nblocks; i++) out[i] = code2[qabsmax[i]] * absmax2[i / block_size2] + offset;
}

static inline float block_absmax(const cq_qweight *w, int64_t b) {
    if (w->absmax) return w->absmax[b];
    return w->code2[w->qabsmax[b]] * w->absmax2[b / w->block_size2] + w->offset;
}

static inline uint8_t nibble_at(const uint8_t *packed, int64_t j) {
    const uint8_t byte = packed[j >> 1];
    return (j & 1) ? (byte & 0x0F) : (byte >> 4);
}

void cq_dequantize_rows(const cq_qweight *w, int64_t row0, int64_t nrows, float *out) {
    const int64_t start = row0 * w->cols, end = (row0 + nrows) * w->cols;
    const int64_t bs = w->block_size;
    int64_t j = start;
    while (j < end) {
        const int64_t b = j / bs;
        const int64_t bend = (b + 1) * bs < end ? (b + 1) * bs : end;
        const float a = block_absmax(w, b);
        for (; j < bend; j++) out[j - start] = w->codebook[nibble_at(w->packed, j)] * a;
    }
}

void cq_dequantize_4bit(const cq_qweight *w, float *out, int threads) {
    const int64_t n = w->rows * w->cols;
    const int64_t nblocks = (n + w->block_size - 1) / w->block_size;
    #pragma omp parallel for schedule(static) num_threads(threads) if (n > 65536)
    for (int64_t b = 0; b < nblocks; b++) {
        const int64_t start = b * w->block_size;
        const int64_t end = start + w->block_size < n ? start + w->block_size : n;
        const float a = block_absmax(w, b);
        for (int64_t j = start; j < end; j++) out[j] = w->codebook[nibble_at(w->packed, j)] * a;
    }
}
