// Internal contract between the fused-linear drivers (fused_linear.c, gemv.c, panel_gemm.c) and
// their per-ISA kernels (*_avx512.c, *_avx2.c, *_portable.c). Not part of the Swift-visible API.
#pragma once
#include "cqlora.h"
#include <stdint.h>
#include <stddef.h>

// The x86 SIMD kernels (AVX2, AVX-512, AVX512-BF16; each function carries its own target
// attribute) exist only on x86-64 and not with -DCQ_PORTABLE_ONLY, which builds the portable
// path alone (make test-portable). Every file with intrinsics is wrapped in #if CQ_X86, and the
// dispatch (cpu_features.c, dispatch.c) then never selects them.
#if defined(__x86_64__) && !defined(CQ_PORTABLE_ONLY)
#define CQ_X86 1
#else
#define CQ_X86 0
#endif

int omp_get_thread_num(void);
int omp_get_num_threads(void);

// ---- parallel.c: OpenMP regions through libomp's GOMP_parallel (no -fopenmp needed).
/// Body of a parallel region: runs once on each of `nthreads` threads.
typedef void (*cq_team_fn)(void *ctx, int thread, int nthreads);
/// Runs fn on a team of `threads` threads (inline on the caller when threads <= 1).
void cq_parallel(int threads, cq_team_fn fn, void *ctx);
/// Body of a parallel loop: iterations [begin, end).
typedef void (*cq_range_fn)(void *ctx, int64_t begin, int64_t end);
/// Splits [0, n) into one contiguous range per thread (static schedule; callers pass threads = 1
/// for loops too small to be worth a region). Iterations must be independent, so the result
/// does not depend on the split.
void cq_parallel_for(int64_t n, int threads, cq_range_fn fn, void *ctx);

/// Walks the decoded 4-bit block scales (plain absmax or double-quant code2[q]·absmax2 + offset)
/// in order without a 64-bit division per block (hot loops advance it).
typedef struct {
    const cq_qweight *w;
    int64_t b;       // block index
    int64_t b2, i2;  // double quant: b / block_size2 and b % block_size2
} cq_absmax_cursor;

static inline cq_absmax_cursor cq_cursor_at(const cq_qweight *w, int64_t b) {
    cq_absmax_cursor c = {w, b, 0, 0};
    if (!w->absmax) { c.b2 = b / w->block_size2; c.i2 = b % w->block_size2; }
    return c;
}

// Scales are code2·absmax2 + offset as two roundings (like quant.c): never contracted to an FMA,
// even inside functions compiled for FMA targets.
static inline float cq_cursor_value(const cq_absmax_cursor *c) {
    #pragma clang fp contract(off)
    if (c->w->absmax) return c->w->absmax[c->b];
    return c->w->code2[c->w->qabsmax[c->b]] * c->w->absmax2[c->b2] + c->w->offset;
}

static inline void cq_cursor_next(cq_absmax_cursor *c) {
    c->b++;
    if (!c->w->absmax && ++c->i2 == c->w->block_size2) { c->i2 = 0; c->b2++; }
}

// ---- GEMV (small M): x rows are pre-permuted per 32-element group so that a group's 16
// even-position values come first, then its 16 odd ones (high nibbles = even elements).
#define CQ_GEMV_GROUP 32
/// Where a tile finds its block scales: `plain` (decoded absmax of the tile's first block, rows
/// K/block_size apart), or for double quant the tile's 8-bit indices `q` and 256-entry tables
/// code2·absmax2[b2] + offset for the nested blocks b2_first, b2_first + 1, ... it touches.
typedef struct {
    const float *plain;
    const uint8_t *q;
    const float *tables;
    int64_t b2_first;
} cq_tile_scales;

/// One row's walk over its block scales (a table load per block for double quant).
typedef struct {
    const float *plain, *table;
    const uint8_t *q;
    int64_t i2, bs2;
} cq_row_scales;

static inline cq_row_scales cq_row_scales_at(const cq_qweight *w, const cq_tile_scales *s, int r, int64_t blocks,
                                             int64_t first_block) {
    cq_row_scales c = {NULL, NULL, NULL, 0, w->block_size2};
    if (s->plain) { c.plain = s->plain + r * blocks; return c; }
    const int64_t b = first_block + r * blocks;
    c.q = s->q + r * blocks;
    c.table = s->tables + (b / c.bs2 - s->b2_first) * 256;
    c.i2 = b % c.bs2;
    return c;
}

/// Scale of the row's block b (blocks are visited in order, starting at 0); dq is a constant in
/// the (inlined) kernels, so the plain / double-quant choice costs nothing per block.
static inline __attribute__((always_inline)) float cq_row_scale_next(cq_row_scales *c, int64_t b, const int dq) {
    if (!dq) return c->plain[b];
    const float v = c->table[c->q[b]];
    if (++c->i2 == c->bs2) { c->i2 = 0; c->table += 256; }
    return v;
}

/// Where rows [n0 + r0, n0 + r0 + R) of a tile start: their packed bytes (rows K/2 bytes apart)
/// and their walks over the block scales.
static inline __attribute__((always_inline)) void cq_tile_rows_at(const cq_qweight *w, int64_t n0, int r0, int R,
                                                                  const cq_tile_scales *s, int64_t K,
                                                                  const uint8_t **p, cq_row_scales *rs) {
    const int64_t blocks = K / w->block_size;
    for (int r = 0; r < R; r++) {
        p[r] = w->packed + (n0 + r0 + r) * K / 2;
        rs[r] = cq_row_scales_at(w, s, r0 + r, blocks, n0 * blocks);
    }
}

/// Expands C(R, MT) for every tile shape (R weight rows, MT x rows, 1..4 each): the cases of a
/// tile function's switch over nrows * 8 + mt, each with constant R and MT.
#define CQ_EACH_TILE_SHAPE(C) C(1, 1) C(1, 2) C(1, 3) C(1, 4) C(2, 1) C(2, 2) C(2, 3) C(2, 4) \
                              C(3, 1) C(3, 2) C(3, 3) C(3, 4) C(4, 1) C(4, 2) C(4, 3) C(4, 4)

/// Dots of rows [n0, n0+nrows) (nrows <= 4) of W with mt (<= 4) permuted x rows (stride K);
/// out[r * 4 + m]. Requires K % block_size == 0 (every row starts on a block boundary). Reads
/// either nibble order (w->paired; x then permuted by cq_permute_x_paired).
typedef void (*cq_gemv_tile_fn)(const cq_qweight *w, int64_t n0, int nrows, const cq_tile_scales *scales,
                                const float *xperm, int mt, int64_t K, float *out);
void cq_gemv_tile_avx512(const cq_qweight *w, int64_t n0, int nrows, const cq_tile_scales *scales,
                         const float *xperm, int mt, int64_t K, float *out);
void cq_gemv_tile_avx2(const cq_qweight *w, int64_t n0, int nrows, const cq_tile_scales *scales,
                       const float *xperm, int mt, int64_t K, float *out);
/// x for the paired tiles: per block pair (2·bs elements from base), per 64-byte piece c of it,
/// byte offset o (0..3), block h (0, 1) and lane i (0..15):
/// xp[base + 128c + 32o + 16h + i] = x[base + bs·h + 64c + 4i + o]. Requires K % (2·bs) == 0.
void cq_permute_x_paired(const float *x, int64_t M, int64_t K, int64_t bs, float *xp);

// bf16-compute tiles (gemv_bf16.c, AVX512-BF16): same contract, but x is bf16, permuted per
// 64-element group (32 even-position values, then 32 odd ones) by cq_permute_x_bf16.
#define CQ_GEMV_BF16_GROUP 64
/// The bf16 tiles' requirement: K % block_size == 0 and block_size a multiple of 64.
int cq_gemv_bf16_supported(const cq_qweight *w);
void cq_permute_x_bf16(const float *x, int64_t M, int64_t K, uint16_t *xb);
void cq_gemv_tile_bf16(const cq_qweight *w, int64_t n0, int nrows, const cq_tile_scales *scales,
                       const uint16_t *xb, int mt, int64_t K, float *out);
/// x for the bf16 tiles over the paired nibble order (w->paired).
void cq_permute_x_bf16_paired(const float *x, int64_t M, int64_t K, int64_t bs, uint16_t *xb);

// ---- decode (decode_<isa>.c, one per ISA): flat weight elements [e0, e0+count) to f32 (any
// alignment), out[t] = codebook[q]·scale exactly. Whole-weight dequantization (dequant.c) and
// the GEMM / GEMV drivers all take the ISA's decoder from cq_gemm_isa_current().
typedef void (*cq_decode_fn)(const cq_qweight *w, int64_t e0, int64_t count, float *out);
void cq_decode_range_portable(const cq_qweight *w, int64_t e0, int64_t count, float *out);
void cq_decode_range_avx512(const cq_qweight *w, int64_t e0, int64_t count, float *out);
void cq_decode_range_avx2(const cq_qweight *w, int64_t e0, int64_t count, float *out);

/// Decoded absmax of blocks [b0, b0 + count) into out (double quant or plain).
void cq_block_scales_portable(const cq_qweight *w, int64_t b0, int64_t count, float *out);
/// count tables of 256: out[t*256 + i] = code2[i]·absmax2[b2 + t] + offset (two roundings).
typedef void (*cq_dq_tables_fn)(const cq_qweight *w, int64_t b2, int64_t count, float *out);
void cq_dq_tables_portable(const cq_qweight *w, int64_t b2, int64_t count, float *out);
void cq_dq_tables_avx512(const cq_qweight *w, int64_t b2, int64_t count, float *out);

// ---- dot products in a fixed order (the result does not depend on the caller's thread).
typedef float (*cq_dot_fn)(const float *a, const float *b, int64_t n);
float cq_dot_portable(const float *a, const float *b, int64_t n);
float cq_dot_avx512(const float *a, const float *b, int64_t n);
float cq_dot_avx2(const float *a, const float *b, int64_t n);

// ---- GEMM micro-kernels for the panel path (large M, panel_gemm.c).
// x is packed in panels of MRP rows, one 4-byte step per row and k step: f32 kernels take one k
// per step, xp[k * MRP + i] = x[m0 + i, k] (zero-padded rows); a last panel of at most MRP/2
// rows may be packed MRP/2 wide for the ISA's half kernel. The bf16 kernel takes two k per step
// (a pair of bf16 in a uint32). The weight panel is row-major in the kernel's element type:
// wp[j * ldw + k] = W'[n0 + j, k0 + k], 2·steps values per row for bf16.
// The accumulator tile is transposed: ct[j * ldc + i] += sum_k x[m0 + i, k] * wp[j*ldw+k],
// for i < MRP and j < NR (the caller pads wp with zero rows up to a multiple of NR).
typedef void (*cq_gemm_kernel_fn)(const void *xp, const void *wp, int64_t ldw, int64_t steps, float *ct, int64_t ldc);
void cq_gemm_kernel_avx512(const void *xp, const void *wp, int64_t ldw, int64_t kc, float *ct, int64_t ldc);
void cq_gemm_kernel_half_avx512(const void *xp, const void *wp, int64_t ldw, int64_t kc, float *ct, int64_t ldc);
void cq_gemm_kernel_avx2(const void *xp, const void *wp, int64_t ldw, int64_t kc, float *ct, int64_t ldc);
void cq_gemm_kernel_portable(const void *xp, const void *wp, int64_t ldw, int64_t kc, float *ct, int64_t ldc);
void cq_gemm_kernel_bf16(const void *xp, const void *wp, int64_t ldw, int64_t kp, float *ct, int64_t ldc);
#define CQ_MRP_AVX512 32
#define CQ_NR_AVX512 12
#define CQ_MRP_AVX2 16
#define CQ_NR_AVX2 6
#define CQ_MRP_PORTABLE 16
#define CQ_NR_PORTABLE 4
#define CQ_MRP_MAX 32
/// out[i] = bf16(in[i]) (round to nearest even) for n values; a zero is appended when n is odd.
void cq_to_bf16(const float *in, int64_t n, uint16_t *out);

/// cq_dot_avx512(a, row) for a row held in the exact int8 form (q, per-32 scales d): same bits.
float cq_dot_exact_int8_avx512(const float *a, const int8_t *q, const float *d, int64_t n);

/// The GEMM epilogue: y[m * ldy + j] = ct[j * ldc + m] (+ bias[j] when bias is not NULL) for
/// j < nj, m < nm (reads nothing else: also packs x panels straight from a row-major source).
typedef void (*cq_store_transposed_fn)(const float *ct, int64_t ldc, const float *bias, int64_t nj, int64_t nm, float *y,
                                       int64_t ldy);
void cq_store_transposed_portable(const float *ct, int64_t ldc, const float *bias, int64_t nj, int64_t nm, float *y,
                                  int64_t ldy);
void cq_store_transposed_avx512(const float *ct, int64_t ldc, const float *bias, int64_t nj, int64_t nm, float *y,
                                int64_t ldy);
void cq_store_transposed_avx2(const float *ct, int64_t ldc, const float *bias, int64_t nj, int64_t nm, float *y,
                              int64_t ldy);

// ---- dispatch.c: the kernels for the ISA in force (cq_detect_isa()).
typedef struct {
    int mrp;                   // x panel width (rows of x per micro-tile)
    int nr;                    // weight rows per micro-tile
    cq_gemm_kernel_fn kernel;
    cq_gemm_kernel_fn half;    // optional: mrp/2-row x panel for a short last panel (else padded)
    cq_decode_fn decode;
    cq_dot_fn dot;
    cq_gemv_tile_fn gemv_tile; // nibble-streaming small-M tile, or NULL (decode + dot instead)
    cq_dq_tables_fn dq_tables;
    cq_store_transposed_fn store_t; // the panel GEMM's epilogue
} cq_gemm_isa;
cq_gemm_isa cq_gemm_isa_current(void);

/// The AVX512-BF16 kernels: panel micro-kernel (CQ_MRP_AVX512 x CQ_NR_AVX512) and small-M tiles.
typedef struct {
    cq_gemm_kernel_fn kernel;
    void (*to_bf16)(const float *in, int64_t n, uint16_t *out);
    void (*permute_x)(const float *x, int64_t M, int64_t K, uint16_t *xb);
    void (*gemv_tile)(const cq_qweight *w, int64_t n0, int nrows, const cq_tile_scales *scales, const uint16_t *xb,
                      int mt, int64_t K, float *out);
    void (*permute_x_paired)(const float *x, int64_t M, int64_t K, int64_t bs, uint16_t *xb);
} cq_bf16_isa;
/// NULL unless the CPU has AVX512-BF16 (cq_cpu_has_avx512_bf16) and the build has x86 kernels.
const cq_bf16_isa *cq_bf16_isa_current(void);

// ---- drivers
/// Panel-path geometry (independent of the thread count and ISA, so scratch sizing is stable).
#define CQ_PANEL_N 96      // weight rows per panel (multiple of every NR)
#define CQ_PANEL_K 256     // K block: the decoded panel is 96 x 256 floats = 96 KiB (L2)

/// xa[m, j] = x[m,:]·A[j,:] (M x r), each dot in a fixed order; parallel over (m, j).

size_t cq_gemv_scratch_bytes(int64_t M, int64_t K, int threads);
void cq_fused_gemv(const float *x, int64_t M, const cq_qweight *w, const float *xa, const float *B, int32_t r,
                   float scaling, const float *bias, float *y, void *scratch, int threads);
/// cq_fused_gemv with bf16 != 0: the bf16 tiles (AVX512-BF16, cq_gemv_bf16_supported(w)); the
/// LoRA epilogue and bias stay f32. Same scratch (bf16 x takes half the f32 x buffer).
void cq_fused_gemv_ex(const float *x, int64_t M, const cq_qweight *w, const float *xa, const float *B, int32_t r,
                      float scaling, const float *bias, float *y, void *scratch, int threads, int bf16);
/// Every member's f32 GEMV tiles in one parallel region (cq_fused_linear_group, M < 64); the
/// members' xa already computed. Returns 0 (nothing done) when a member cannot stream (K not
/// whole blocks, different K, no tile kernel). Scratch as cq_gemv_scratch_bytes.
int cq_fused_gemv_group(const float *x, int64_t M, int count, const cq_linear_member *members, void *scratch, int threads);
size_t cq_panel_gemm_scratch_bytes(int64_t M, int64_t K, int32_t r, int threads);
/// y = x·Wᵀ + [x·Aᵀ = xa]·scaling·Bᵀ + bias with W either 4-bit (w) or f32 [N, K] (wf), M >= 2.
void cq_panel_gemm(const float *x, int64_t M, int64_t N, int64_t K, const cq_qweight *w, const float *wf,
                   const float *xa, const float *B, int32_t r, float scaling, const float *bias, float *y,
                   void *scratch, int threads);
/// cq_panel_gemm on a 4-bit weight in bf16 compute (x, the decoded weight and the LoRA block
/// rounded to bf16, f32 accumulation); needs cq_bf16_isa_current(). Same scratch.
void cq_panel_gemm_bf16(const float *x, int64_t M, const cq_qweight *w, const float *xa, const float *B, int32_t r,
                        float scaling, const float *bias, float *y, void *scratch, int threads);

/// Backward GEMM micro-kernels (gemm_kn*.c): ct[j*ldc + i] += Σ_k x[k*ldx + i]·w[k*ldw + j], both
/// operands k-major (x: MR lanes per k, or MR/2 for the half kernel; w: NR per k), packed or read
/// in place from a row-major source.
typedef void (*cq_kn_kernel_fn)(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t kc, float *ct, int64_t ldc);
void cq_kn_kernel_avx512(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t kc, float *ct, int64_t ldc);
void cq_kn_kernel_half_avx512(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t kc, float *ct, int64_t ldc);
void cq_kn_kernel_avx2(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t kc, float *ct, int64_t ldc);
void cq_kn_kernel_portable(const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t kc, float *ct, int64_t ldc);
typedef struct {
    int mrp, nr;
    cq_kn_kernel_fn kernel, half; // half: optional mrp/2-lane kernel for a short last panel
    cq_decode_fn decode;
    cq_store_transposed_fn store_t; // C from ct when C's rows run along the lanes
} cq_kn_isa;
/// The backward GEMM kernels for the ISA in force (dispatch.c).
cq_kn_isa cq_kn_isa_current(void);
/// cq_panel_gemm on an f32 weight wf [N, K] in bf16 compute (no LoRA, no bias); needs
/// cq_bf16_isa_current(). Same scratch (cqlora_bf16.h: cq_matmul_nt_bf16).
void cq_panel_gemm_bf16_dense(const float *x, int64_t M, int64_t N, int64_t K, const float *wf, float *y, void *scratch,
                              int threads);
/// dx = dy·W in bf16 (matmul_nn_bf16_avx512.c) for the 4-bit w or else the f32 wf [N, K].
void cq_matmul_nn_bf16_avx512(const float *dy, int64_t M, const cq_qweight *w, const float *wf, int64_t N, int64_t K,
                              float *dx, int threads);

static inline size_t cq_align64(size_t n) { return (n + 63) & ~(size_t)63; }

/// Fully unrolls a loop over a micro-tile's registers. SwiftPM builds C at -O2 (and allows no
/// -O3), whose unroll threshold leaves the 12-row loops rolled: the accumulator arrays then live
/// on the stack instead of in registers (3x slower panel GEMM). This keeps them in registers.
#define CQ_UNROLL _Pragma("clang loop unroll(full)")
