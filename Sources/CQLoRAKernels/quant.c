// bitsandbytes 0.50.2-exact blockwise 4-bit quantization and 8-bit double quantization.
// Every rule below is named after its entry in shared/reference/manifest.json (conventions.*,
// quantize_tables, double_quant_code_note); the reference tests check each one bit for bit.
// Dequantization (the hot path) lives in dequant.c, with the per-ISA decoders of decode_<isa>.c.
#include "quant_internal.h"
#include "kernels_internal.h"
#include "torch_f32_sum.h"
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// Every product and sum here is rounded on its own, as torch/numpy do: never fused into an FMA.
#pragma STDC FP_CONTRACT OFF

// ---- Codebooks (manifest quantize_tables) --------------------------------------------------

// get_4bit_type('nf4'), index 0..15; already sorted.
static const float NF4_CODE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// conventions.fp4_code: float32([0, .0625, 8, 12, 4, 6, 2, 3, 0, -.0625, -8, -12, -4, -6, -2, -3])
// / float32(12). Index 8 is +0.0 (the source list's "-0" is a Python int).
static const float FP4_RAW[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, 0, -0.0625f, -8, -12, -4, -6, -2, -3};

// quantize_tables.*.order: stable argsort of the code (the two +0.0 entries keep order 0, 8).
static const uint8_t NF4_ORDER[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t FP4_ORDER[16] = {11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3};

typedef struct {
    float code[16];    // decode table, indexed by nibble
    float bounds[15];  // quantize_tables.*.bounds: (sorted[j] + sorted[j+1]) / 2 in float32
    uint8_t order[16]; // sorted position -> nibble
    uint8_t zero_code; // quantize(0.0): the padding nibble of an odd count (nf4 7, fp4 0)
} quant_table;

static quant_table g_tables[2];
static pthread_once_t g_tables_once = PTHREAD_ONCE_INIT;

/// Rule "index = number of bounds strictly less than s" (torch.bucketize, right=False: a value
/// exactly on a bound goes to the lower sorted position), then nibble = order[index].
/// The bounds ascend, so the count is a branchless 4-step binary search (8 + 4 + 2 + 1).
static inline uint8_t bucketize(float s, const quant_table *t) {
    int j = 0;
    j += (t->bounds[j + 7] < s) << 3;
    j += (t->bounds[j + 3] < s) << 2;
    j += (t->bounds[j + 1] < s) << 1;
    j += (t->bounds[j] < s);
    return t->order[j];
}

static void build_table(quant_table *t, const float *code, const uint8_t *order) {
    memcpy(t->code, code, sizeof t->code);
    memcpy(t->order, order, sizeof t->order);
    for (int j = 0; j < 15; j++) t->bounds[j] = (code[order[j]] + code[order[j + 1]]) / 2.0f;
    t->zero_code = bucketize(0.0f, t);
}

static void init_tables(void) {
    float fp4[16];
    for (int i = 0; i < 16; i++) fp4[i] = FP4_RAW[i] / 12.0f; // float32 division, as bnb
    fp4[8] = 0.0f;                                            // +0.0
    build_table(&g_tables[CQ_NF4], NF4_CODE, NF4_ORDER);
    build_table(&g_tables[CQ_FP4], fp4, FP4_ORDER);
}

static const quant_table *tables(cq_quant_type type) {
    pthread_once(&g_tables_once, init_tables);
    return &g_tables[type == CQ_FP4 ? CQ_FP4 : CQ_NF4];
}

const float *cq_codebook(cq_quant_type type) { return tables(type)->code; }

// ---- 4-bit quantization (conventions.nf4_quantize, fp4_quantize, nf4_packing) --------------

static inline int is_finite_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (u & 0x7f800000u) != 0x7f800000u;
}

/// Quantizes the block [start, end) (end - start <= block_size, start even) into packed/absmax.
/// Returns the first non-finite index in the block, or -1.
static int64_t quantize_block(const float *w, int64_t start, int64_t end, int32_t block_size,
                              const quant_table *t, uint8_t *packed, float *absmax_out) {
    const int64_t len = end - start;
    const float *x = w + start;
    int finite = 1;
    float m = 0.0f;
    for (int64_t i = 0; i < len; i++) {
        finite &= is_finite_bits(x[i]);
        const float a = fabsf(x[i]);
        m = a > m ? a : m;
    }
    if (!finite) {
        for (int64_t i = 0; i < len; i++)
            if (!is_finite_bits(x[i])) return start + i;
    }
    *absmax_out = m; // stored unclamped: may be 0
    // "absmax clamped to >= 1e-38 only for the scaling"; full blocks multiply by the float32
    // reciprocal, the partial last block divides (the two differ in the last bit).
    const float scale = m < 1e-38f ? 1e-38f : m;
    const float recip = 1.0f / scale;
    const int partial = len != block_size;
    uint8_t q[4096 + 1];
    for (int64_t i = 0; i < len; i++) {
        float s = partial ? x[i] / scale : x[i] * recip;
        s = s < -1.0f ? -1.0f : (s > 1.0f ? 1.0f : s);
        q[i] = bucketize(s, t);
    }
    if (len & 1) q[len] = t->zero_code; // only the very last block can be odd
    uint8_t *p = packed + start / 2;
    for (int64_t i = 0; i < len; i += 2) p[i / 2] = (uint8_t)((q[i] << 4) | q[i + 1]);
    return -1;
}

typedef struct {
    const float *w;
    int64_t n, nblocks, per_chunk, nchunks;
    int32_t block_size;
    const quant_table *t;
    uint8_t *packed;
    float *absmax;
    int64_t next;      // the next chunk to hand out
    int64_t first_bad; // the lowest NaN/Inf index any thread found (INT64_MAX: none)
} quantize_job;

static void quantize_worker(void *p, int thread, int nthreads) {
    (void)thread; (void)nthreads;
    quantize_job *job = (quantize_job *)p;
    int64_t my_first_bad = INT64_MAX;
    for (;;) {
        const int64_t c = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (c >= job->nchunks) break;
        const int64_t b1 = (c + 1) * job->per_chunk < job->nblocks ? (c + 1) * job->per_chunk : job->nblocks;
        for (int64_t b = c * job->per_chunk; b < b1; b++) {
            const int64_t start = b * job->block_size;
            const int64_t end = start + job->block_size < job->n ? start + job->block_size : job->n;
            const int64_t bad = quantize_block(job->w, start, end, job->block_size, job->t, job->packed,
                                               &job->absmax[b]);
            if (bad >= 0 && bad < my_first_bad) my_first_bad = bad;
        }
    }
    // Lower the shared minimum (a compare-and-swap loop instead of a critical section).
    int64_t seen = __atomic_load_n(&job->first_bad, __ATOMIC_RELAXED);
    while (my_first_bad < seen &&
           !__atomic_compare_exchange_n(&job->first_bad, &seen, my_first_bad, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

int cq_quantize_4bit(const float *w, int64_t n, int32_t block_size, cq_quant_type type,
                     uint8_t *packed, float *absmax, int64_t *bad_index, int threads) {
    if (block_size < 32 || block_size > 4096 || (block_size & (block_size - 1)) || n < 0) return -2;
    const int64_t nblocks = (n + block_size - 1) / block_size;
    const int nthreads = threads > 1 && n > 65536 ? threads : 1;
    // Chunks of ~16K elements (whole blocks) from an atomic counter, as in cq_dequantize_4bit.
    // Blocks are even-sized, so every block starts on a byte boundary and writes disjoint bytes.
    const int64_t per_chunk = 16384 / block_size > 0 ? 16384 / block_size : 1;
    quantize_job job = {w, n, nblocks, per_chunk, (nblocks + per_chunk - 1) / per_chunk, block_size,
                        tables(type), packed, absmax, 0, INT64_MAX};
    cq_parallel(nthreads, quantize_worker, &job);
    if (job.first_bad != INT64_MAX) {
        if (bad_index) *bad_index = job.first_bad;
        return -1;
    }
    return 0;
}

// ---- Double quantization (conventions.double_quant) ----------------------------------------

/// torch.linspace(0.1, 1, steps) in float32, as torch's CPU kernel computes it: step =
/// (end - start) / (steps - 1); the first half is start + step*idx, the second half
/// end - step*(steps-1-idx), each a single fused multiply-add (torch's kernel is compiled with
/// FMA contraction; plain mul-then-add differs from bnb's stored code2 in 64 entries).
static void torch_linspace(float start, float end, int steps, float *out) {
    const float step = (end - start) / (float)(steps - 1);
    const int halfway = steps / 2;
    for (int idx = 0; idx < steps; idx++)
        out[idx] = idx < halfway ? fmaf(step, (float)idx, start)
                                 : fmaf(-step, (float)(steps - 1 - idx), end);
}

static int compare_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/// bnb create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for i in 0..6,
/// boundaries = linspace(0.1, 1, 2^i + 1), means = (b[:-1] + b[1:]) / 2 (float32), values
/// ±float32(10^(i-6)) * means (float32 multiply); plus 0 and 1; sorted. 254 + 2 = 256 entries.
void cq_dynamic_map(float *code) {
    // Python's 10 ** (i - 6) (correctly rounded doubles), cast to float32 by torch's multiply.
    static const double POW10[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
    int count = 0;
    for (int i = 0; i < 7; i++) {
        const int fraction_items = (1 << i) + 1;
        float boundaries[65];
        torch_linspace(0.1f, 1.0f, fraction_items, boundaries);
        const float scale = (float)POW10[i];
        for (int k = 0; k < fraction_items - 1; k++) {
            const float mean = (boundaries[k] + boundaries[k + 1]) / 2.0f;
            code[count++] = scale * mean;
            code[count++] = -scale * mean;
        }
    }
    code[count++] = 0.0f;
    code[count++] = 1.0f;
    qsort(code, 256, sizeof(float), compare_float);
}

/// The 8-bit index rule of bnb 0.50.2's CPU backend: a 65536-entry table, lut[i] = the code2
/// entry nearest to -1 + 2*i/65535 (ties to the lower index), addressed by
/// i = uint16((s + 1) * 0.5 * 65535 + 0.5). It approximates nearest-code rounding.
typedef struct {
    float code[256];
    uint8_t lut[65536];
} dq_lut;

static dq_lut g_lut;
static pthread_once_t g_lut_once = PTHREAD_ONCE_INIT;

static void build_lut(void) {
    cq_dynamic_map(g_lut.code);
    int c = 0; // code is ascending and v increases with i, so the nearest index never decreases
    for (int i = 0; i < 65536; i++) {
        const float v = -1.0f + 2.0f * (float)i / 65535.0f;
        while (c < 255 && fabsf(g_lut.code[c + 1] - v) < fabsf(g_lut.code[c] - v)) c++;
        g_lut.lut[i] = (uint8_t)c;
    }
}

static const dq_lut *dynamic_lut(void) {
    pthread_once(&g_lut_once, build_lut);
    return &g_lut;
}

static inline uint8_t lut_index(float a, float recip, const dq_lut *t) {
    float s = a * recip;
    s = s < -1.0f ? -1.0f : (s > 1.0f ? 1.0f : s);
    const float pos = (s + 1.0f) * 0.5f * 65535.0f + 0.5f;
    return t->lut[(uint16_t)pos];
}

void cq_double_quantize_with_offset(const float *absmax, int64_t nblocks, int32_t block_size2,
                                    float offset, float *code2, uint8_t *qabsmax, float *absmax2) {
    const dq_lut *t = dynamic_lut();
    memcpy(code2, t->code, sizeof t->code);
    if (block_size2 <= 0) return; // callers check; never divide by it
    const int64_t nb2 = (nblocks + block_size2 - 1) / block_size2;
    for (int64_t b = 0; b < nb2; b++) {
        const int64_t start = b * block_size2;
        const int64_t end = start + block_size2 < nblocks ? start + block_size2 : nblocks;
        float m = 0.0f;
        for (int64_t i = start; i < end; i++) {
            const float a = fabsf(absmax[i] - offset);
            m = a > m ? a : m;
        }
        absmax2[b] = m;
        // absmax2 == 0 (all absmax equal the offset) would give 0 * inf; any code then decodes
        // to offset exactly, so the clamp only keeps the index finite.
        const float recip = 1.0f / (m < 1e-38f ? 1e-38f : m);
        for (int64_t i = start; i < end; i++) qabsmax[i] = lut_index(absmax[i] - offset, recip, t);
    }
}

static float absmax_mean(const float *absmax, int64_t nblocks) {
    // bitsandbytes: offset = absmax.mean() in float32 = torch's float32 CPU sum / float(n).
    return nblocks > 0 ? cq_torch_f32_sum(absmax, nblocks) / (float)nblocks : 0.0f;
}

void cq_double_quantize(const float *absmax, int64_t nblocks, int32_t block_size2,
                        float *code2, uint8_t *qabsmax, float *absmax2, float *offset_out) {
    const float offset = absmax_mean(absmax, nblocks);
    *offset_out = offset;
    cq_double_quantize_with_offset(absmax, nblocks, block_size2, offset, code2, qabsmax, absmax2);
}

void cq_double_dequantize(const uint8_t *qabsmax, int64_t nblocks, int32_t block_size2,
                          const float *code2, const float *absmax2, float offset, float *out) {
    for (int64_t i = 0; i < nblocks; i++) out[i] = cq_decode_absmax(qabsmax[i], code2, absmax2[i / block_size2], offset);
}
