// 4-bit dequantization: out[j] = code[nibble j] * absmax[j / block_size], one f32 multiply per
// element, so every ISA path gives identical bits. Dispatch on cq_detect_isa(); the SIMD paths
// are in dequant_x86.c.
#include "quant_internal.h"
#include "kernels_internal.h"

#pragma STDC FP_CONTRACT OFF

static inline __attribute__((always_inline)) void span_portable(const uint8_t *packed, const float *code, int64_t j,
                                                                int64_t count, float a, float *out) {
    if (count <= 0) return;
    if (j & 1) { // starts on a low nibble
        *out++ = code[packed[j >> 1] & 0x0F] * a;
        j++;
        count--;
    }
    const uint8_t *p = packed + (j >> 1);
    int64_t i = 0;
    for (; i + 2 <= count; i += 2) {
        const uint8_t byte = p[i >> 1];
        out[i] = code[byte >> 4] * a;
        out[i + 1] = code[byte & 0x0F] * a;
    }
    if (i < count) out[i] = code[p[i >> 1] >> 4] * a;
}

void cq_dequant_range_portable(const cq_qweight *w, int64_t j0, int64_t j1, float *out) {
    cq_dequant_range_with(w, j0, j1, out, span_portable);
}

static cq_dequant_range_fn range_fn(void) {
#if defined(__x86_64__)
    switch (cq_detect_isa()) {
    case CQ_ISA_AVX512: return cq_dequant_range_avx512;
    case CQ_ISA_AVX2: return cq_dequant_range_avx2;
    default: break;
    }
#endif
    return cq_dequant_range_portable;
}

typedef struct {
    const cq_qweight *w;
    float *out;
    cq_dequant_range_fn fn;
    int64_t n, chunk, nchunks;
    int64_t next; // the next chunk to hand out
} dequant_job;

static void dequant_worker(void *p, int thread, int nthreads) {
    (void)thread; (void)nthreads;
    dequant_job *job = (dequant_job *)p;
    for (;;) {
        const int64_t c = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (c >= job->nchunks) break;
        const int64_t j0 = c * job->chunk;
        const int64_t j1 = j0 + job->chunk < job->n ? j0 + job->chunk : job->n;
        job->fn(job->w, j0, j1, job->out + j0);
    }
}

void cq_dequantize_4bit(const cq_qweight *w, float *out, int threads) {
    const int64_t n = w->rows * w->cols;
    const cq_dequant_range_fn fn = range_fn();
    if (threads <= 1 || n <= 65536) {
        fn(w, 0, n, out);
        return;
    }
    // Chunks of whole blocks (~32K elements) handed out by an atomic counter, so a thread the OS
    // deschedules does not hold up the rest. Every element is decoded alone: the split never
    // changes a bit.
    const int64_t bs = w->block_size;
    const int64_t chunk = (32768 / bs > 0 ? 32768 / bs : 1) * bs;
    dequant_job job = {w, out, fn, n, chunk, (n + chunk - 1) / chunk, 0};
    cq_parallel(threads, dequant_worker, &job);
}

void cq_dequantize_rows(const cq_qweight *w, int64_t row0, int64_t nrows, float *out) {
    range_fn()(w, row0 * w->cols, (row0 + nrows) * w->cols, out);
}
