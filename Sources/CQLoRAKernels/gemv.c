// Small-M fused path: every weight byte is read once per 4 rows of x, straight from the packed
// nibbles (memory-bound). Work is split over tiles of 4 output features; each output is one
// fixed-order dot product, so the bits do not depend on the thread count.
#include "kernels_internal.h"

/// Per thread: one decoded row (K floats), the block scales of a 4-row tile (<= K/8 floats), or
/// its double-quant tables (nested blocks >= 64 blocks: <= K/512 + 2 tables of 256).
static size_t per_thread_floats(int64_t K) { return cq_align64((size_t)(K + 32 + 512) * sizeof(float)) / sizeof(float); }

size_t cq_gemv_scratch_bytes(int64_t M, int64_t K, int threads) {
    return cq_align64((size_t)(M * K) * sizeof(float)) + (size_t)threads * per_thread_floats(K) * sizeof(float);
}

/// Per 32-element group: its 16 even-position values, then its 16 odd ones (the high nibble
/// of packed byte i is element 2i), matching what the tile kernels decode.
static void permute_x(const float *x, int64_t M, int64_t K, float *xperm) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t g = 0; g < K; g += CQ_GEMV_GROUP)
            for (int i = 0; i < CQ_GEMV_GROUP / 2; i++) {
                xperm[m * K + g + i] = x[m * K + g + 2 * i];
                xperm[m * K + g + CQ_GEMV_GROUP / 2 + i] = x[m * K + g + 2 * i + 1];
            }
}

void cq_permute_x_paired(const float *x, int64_t M, int64_t K, int64_t bs, float *xp) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t base = 0; base < K; base += 2 * bs)
            for (int64_t c = 0; c < bs / 64; c++)
                for (int o = 0; o < 4; o++)
                    for (int h = 0; h < 2; h++)
                        for (int i = 0; i < 16; i++)
                            xp[m * K + base + 128 * c + 32 * o + 16 * h + i] = x[m * K + base + bs * h + 64 * c + 4 * i + o];
}

/// The ISA's tile (it reads either nibble order), or NULL (decode + dot). Paired weights have whole
/// block pairs per row (cq_pairing_supported); bitsandbytes' order needs whole blocks per row.
static cq_gemv_tile_fn tile_for(const cq_gemm_isa *isa, const cq_qweight *w) {
    return w->paired || w->cols % w->block_size == 0 ? isa->gemv_tile : NULL;
}

/// x in the order of w's tile.
static void permute_for(const cq_qweight *w, const float *x, int64_t M, float *xperm) {
    if (w->paired) cq_permute_x_paired(x, M, w->cols, w->block_size, xperm);
    else permute_x(x, M, w->cols, xperm);
}

/// y[m, n] = dot + scaling·xa[m]·B[n] + bias[n].
static inline void store(float *y, int64_t N, int64_t n, int64_t m, float dot, const float *xa,
                         const float *B, int32_t r, float scaling, const float *bias, cq_dot_fn dotf) {
    if (r > 0) dot += scaling * dotf(xa + m * r, B + n * r, r);
    y[m * N + n] = dot + (bias ? bias[n] : 0.0f);
}

void cq_fused_gemv(const float *x, int64_t M, const cq_qweight *w, const float *xa, const float *B, int32_t r,
                   float scaling, const float *bias, float *y, void *scratch, int threads) {
    cq_fused_gemv_ex(x, M, w, xa, B, r, scaling, bias, y, scratch, threads, 0);
}

/// Everything a thread needs to compute a range of 4-row output tiles.
typedef struct {
    const float *x, *xa, *B, *bias;
    const cq_qweight *w;
    float *y;
    int64_t M, N, K;
    int32_t r;
    float scaling;
    cq_gemm_isa isa;
    cq_gemv_tile_fn tile;   // f32 nibble-streaming tile, or NULL
    const cq_bf16_isa *bf16; // the bf16 tiles instead, or NULL
    int streaming, use_tables;
    const float *xperm;     // permuted x (f32, or bf16 when bf16)
    float *rowbufs;         // per-thread scratch, rowbuf_stride floats each
    int64_t rowbuf_stride, ntiles;
} gemv_job;

static void gemv_tiles(const gemv_job *j, int64_t t0, int64_t t1, float *rowbuf) {
    const cq_qweight *w = j->w;
    const int64_t M = j->M, N = j->N, K = j->K;
    for (int64_t t = t0; t < t1; t++) {
        const int64_t n0 = t * 4;
        const int nrows = N - n0 < 4 ? (int)(N - n0) : 4;
        cq_tile_scales scales = {NULL, NULL, NULL, 0};
        if (j->streaming) {
            const int64_t blocks = K / w->block_size, b0 = n0 * blocks, nb = nrows * blocks;
            if (w->absmax) {
                scales.plain = w->absmax + b0;
            } else if (j->use_tables) {
                const int64_t b2 = b0 / w->block_size2, b2_last = (b0 + nb - 1) / w->block_size2;
                j->isa.dq_tables(w, b2, nb > 0 ? b2_last - b2 + 1 : 0, rowbuf);
                scales = (cq_tile_scales){NULL, w->qabsmax + b0, rowbuf, b2};
            } else {
                cq_block_scales_portable(w, b0, nb, rowbuf);
                scales.plain = rowbuf;
            }
        }
        if (!j->streaming) { // decode each row once, then one f32 dot per x row
            for (int jr = 0; jr < nrows; jr++) {
                j->isa.decode(w, (n0 + jr) * K, K, rowbuf);
                for (int64_t m = 0; m < M; m++)
                    store(j->y, N, n0 + jr, m, j->isa.dot(j->x + m * K, rowbuf, K), j->xa, j->B, j->r, j->scaling,
                          j->bias, j->isa.dot);
            }
            continue;
        }
        for (int64_t m0 = 0; m0 < M; m0 += 4) {
            const int mt = M - m0 < 4 ? (int)(M - m0) : 4;
            float dots[16];
            if (j->bf16) j->bf16->gemv_tile(w, n0, nrows, &scales, (const uint16_t *)j->xperm + m0 * K, mt, K, dots);
            else j->tile(w, n0, nrows, &scales, j->xperm + m0 * K, mt, K, dots);
            for (int jr = 0; jr < nrows; jr++)
                for (int m = 0; m < mt; m++)
                    store(j->y, N, n0 + jr, m0 + m, dots[jr * 4 + m], j->xa, j->B, j->r, j->scaling, j->bias,
                          j->isa.dot);
        }
    }
}

/// Thread t of nt takes a contiguous share of the tiles and its own row buffer.
static void gemv_worker(void *p, int t, int nt) {
    const gemv_job *j = (const gemv_job *)p;
    gemv_tiles(j, j->ntiles * t / nt, j->ntiles * (t + 1) / nt, j->rowbufs + t * j->rowbuf_stride);
}

/// A group's tiles as one list: member i owns tiles [first[i], first[i] + jobs[i].ntiles).
typedef struct {
    gemv_job jobs[CQ_LINEAR_GROUP_MAX];
    int64_t first[CQ_LINEAR_GROUP_MAX];
    int64_t total;
    int count;
} gemv_group_job;

/// Thread t of nt takes a contiguous share of the whole list, crossing members as needed.
static void gemv_group_worker(void *p, int t, int nt) {
    const gemv_group_job *g = (const gemv_group_job *)p;
    const int64_t t0 = g->total * t / nt, t1 = g->total * (t + 1) / nt;
    float *rowbuf = g->jobs[0].rowbufs + t * g->jobs[0].rowbuf_stride;
    for (int i = 0; i < g->count; i++) {
        const int64_t lo = t0 > g->first[i] ? t0 : g->first[i];
        const int64_t end = g->first[i] + g->jobs[i].ntiles, hi = t1 < end ? t1 : end;
        if (lo < hi) gemv_tiles(&g->jobs[i], lo - g->first[i], hi - g->first[i], rowbuf);
    }
}

void cq_fused_gemv_ex(const float *x, int64_t M, const cq_qweight *w, const float *xa, const float *B, int32_t r,
                      float scaling, const float *bias, float *y, void *scratch, int threads, int bf16) {
    const int64_t N = w->rows, K = w->cols;
    const cq_gemm_isa isa = cq_gemm_isa_current();
    // The nibble-streaming kernels need every row to be whole blocks (K % block_size == 0, the
    // usual case); other K (odd, rows starting mid-block or mid-byte) decode each row into a
    // buffer with the ISA's decoder and dot in f32.
    const cq_gemv_tile_fn tile = tile_for(&isa, w);
    const cq_bf16_isa *bf16_isa = bf16 && cq_gemv_bf16_supported(w) ? cq_bf16_isa_current() : NULL;
    const int streaming = bf16_isa || tile != NULL; // tiles reading the nibbles directly
    // Double quant with nested blocks of >= 64 blocks: the tiles look scales up in per-tile
    // tables; otherwise (and for plain absmax) they read an array of decoded scales.
    const int use_tables = !w->absmax && w->block_size2 >= 64;
    float *xperm = (float *)scratch;
    float *rowbufs = (float *)((char *)scratch + cq_align64((size_t)(M * K) * sizeof(float)));
    if (bf16_isa && w->paired) bf16_isa->permute_x_paired(x, M, K, w->block_size, (uint16_t *)xperm);
    else if (bf16_isa) bf16_isa->permute_x(x, M, K, (uint16_t *)xperm);
    else if (tile) permute_for(w, x, M, xperm);
    gemv_job job = {x, xa, B, bias, w, y, M, N, K, r, scaling, isa, tile, bf16_isa, streaming, use_tables,
                    xperm, rowbufs, (int64_t)per_thread_floats(K), (N + 3) / 4};
    cq_parallel(threads, gemv_worker, &job);
}

/// Several weights sharing x (q/k/v, gate/up): x is permuted once and one parallel region walks
/// the members' 4-row tiles as one list, so a decode step pays one fork/join instead of one per
/// weight. Each tile runs exactly as in cq_fused_gemv: the same bits as separate calls.
int cq_fused_gemv_group(const float *x, int64_t M, int count, const cq_linear_member *members, void *scratch, int threads) {
    if (count < 1 || count > CQ_LINEAR_GROUP_MAX) return 0;
    const int64_t K = members[0].w->cols;
    const cq_gemm_isa isa = cq_gemm_isa_current();
    // One x order for all: the members share K, the nibble order and (paired) the block size.
    const cq_qweight *w0 = members[0].w;
    for (int i = 0; i < count; i++) {
        const cq_qweight *w = members[i].w;
        if (w->cols != K || !tile_for(&isa, w) || w->paired != w0->paired || (w->paired && w->block_size != w0->block_size))
            return 0;
    }
    float *xperm = (float *)scratch;
    float *rowbufs = (float *)((char *)scratch + cq_align64((size_t)(M * K) * sizeof(float)));
    permute_for(w0, x, M, xperm);
    gemv_group_job group = {.count = count, .total = 0};
    for (int i = 0; i < count; i++) {
        const cq_linear_member *m = &members[i];
        const cq_qweight *w = m->w;
        group.jobs[i] = (gemv_job){x, m->xa, m->B, m->bias, w, m->y, M, w->rows, K, m->r > 0 ? m->r : 0, m->scaling, isa,
                                   tile_for(&isa, w), NULL, 1, !w->absmax && w->block_size2 >= 64,
                                   xperm, rowbufs, (int64_t)per_thread_floats(K), (w->rows + 3) / 4};
        group.first[i] = group.total;
        group.total += group.jobs[i].ntiles;
    }
    cq_parallel(threads, gemv_group_worker, &group);
    return 1;
}
