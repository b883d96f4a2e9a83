// Whole-weight 4-bit dequantization (cq_dequantize_4bit, cq_dequantize_rows) with the ISA's
// decoder (decode_<isa>.c, the one the GEMM drivers use): out[j] = code[nibble j]·scale of
// block j / block_size, one f32 multiply per element, so every ISA path gives identical bits.
#include "kernels_internal.h"

typedef struct {
    const cq_qweight *w;
    float *out;
    cq_decode_fn decode;
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
        job->decode(job->w, j0, j1 - j0, job->out + j0);
    }
}

void cq_dequantize_4bit(const cq_qweight *w, float *out, int threads) {
    const int64_t n = w->rows * w->cols;
    const cq_decode_fn decode = cq_gemm_isa_current().decode;
    if (threads <= 1 || n <= 65536) {
        decode(w, 0, n, out);
        return;
    }
    // Chunks of whole blocks (~32K elements) handed out by an atomic counter, so a thread the OS
    // deschedules does not hold up the rest. Every element is decoded alone: the split never
    // changes a bit.
    const int64_t bs = w->block_size;
    const int64_t chunk = (32768 / bs > 0 ? 32768 / bs : 1) * bs;
    dequant_job job = {w, out, decode, n, chunk, (n + chunk - 1) / chunk, 0};
    cq_parallel(threads, dequant_worker, &job);
}

void cq_dequantize_rows(const cq_qweight *w, int64_t row0, int64_t nrows, float *out) {
    cq_gemm_isa_current().decode(w, row0 * w->cols, nrows * w->cols, out);
}
