// CQLoRAKernels: the C + OpenMP kernels behind QLoRA. Plain C, no knowledge of Swift or graphs.
// Every kernel takes an explicit thread count; results never depend on it (work is split over
// independent output elements, reductions run in a fixed order).
#pragma once
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- cpu_features.c -------------------------------------------------------------------
typedef enum { CQ_ISA_PORTABLE = 0, CQ_ISA_AVX2 = 1, CQ_ISA_AVX512 = 2 } cq_isa;
/// The best SIMD level this CPU supports (cpuid, once). QLORA_ISA=portable|avx2|avx512 caps it.
cq_isa cq_detect_isa(void);
/// Overrides the detected level (tests use it to check every path); returns the level in force.
cq_isa cq_set_isa(cq_isa isa);
const char *cq_isa_name(cq_isa isa);
int cq_cpu_has_avx512_bf16(void);

// ---- parallel.c ------------------------------------------------------------------------
/// How many threads a parallel region asked for `threads` ran on (libomp's team, reached
/// without -fopenmp); tests use it to check that the kernels really run in parallel.
int cq_parallel_team_size(int threads);

// ---- quant.c: bitsandbytes-exact blockwise 4-bit quantization --------------------------
typedef enum { CQ_NF4 = 0, CQ_FP4 = 1 } cq_quant_type;

/// The 16-entry codebook (bnb get_4bit_type) for a quant type.
const float *cq_codebook(cq_quant_type type);

/// Quantizes n floats in flat blocks of block_size (last block may be partial).
/// packed: (n+1)/2 bytes, element 2i in the HIGH nibble; absmax: ceil(n/block_size) floats.
/// Returns -1 and sets *bad_index to the FIRST NaN/Inf index (nothing else is written reliably),
/// -2 for an unsupported block_size (a power of two from 32 to 4096) or n < 0. Parallel over
/// blocks; the result does not depend on threads.
int cq_quantize_4bit(const float *w, int64_t n, int32_t block_size, cq_quant_type type,
                     uint8_t *packed, float *absmax, int64_t *bad_index, int threads);

/// bnb 8-bit double quantization of the absmax vector: offset = mean (double accumulation,
/// rounded to f32), then blockwise (block_size2, 256) dynamic-code quantization of absmax-offset.
/// code2: 256 floats written (bnb's signed dynamic map); qabsmax: nblocks bytes; absmax2:
/// ceil(nblocks/block_size2) floats.
void cq_double_quantize(const float *absmax, int64_t nblocks, int32_t block_size2,
                        float *code2, uint8_t *qabsmax, float *absmax2, float *offset);

/// cq_double_quantize with a given offset instead of the mean (tests reproduce bnb's state
/// bit for bit from its stored float32 offset).
void cq_double_quantize_with_offset(const float *absmax, int64_t nblocks, int32_t block_size2, float offset,
                                    float *code2, uint8_t *qabsmax, float *absmax2);

/// bnb create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) as float32 (256 entries).
void cq_dynamic_map(float *code);

/// absmax'[i] = code2[qabsmax[i]] * absmax2[i / block_size2] + offset (f32 multiply, f32 add).
void cq_double_dequantize(const uint8_t *qabsmax, int64_t nblocks, int32_t block_size2,
                          const float *code2, const float *absmax2, float offset, float *absmax_out);

/// A 4-bit weight as the kernels see it: [rows, cols] row-major, flat blocks.
/// Exactly one of `absmax` (plain statistics) or `qabsmax` (double quant) is non-NULL.
/// `paired` selects the nibble order of `packed`: 0 = bitsandbytes' (element 2i in the high
/// nibble of byte i); 1 = paired blocks (see cq_pair_nibbles), the faster order for the small-M
/// kernels, used in memory when cq_pairing_supported and converted back when saving. A paired
/// weight's buffer must have 64 readable bytes after its codes (the small-M tiles' offset loads
/// run up to 3 bytes past the last row).
typedef struct {
    const uint8_t *packed;     // (rows*cols + 1) / 2 bytes
    int64_t rows, cols;        // out_features, in_features
    int32_t block_size;
    const float *codebook;     // 16 entries
    const float *absmax;       // plain: one f32 per block
    const uint8_t *qabsmax;    // double quant: one u8 per block
    const float *code2;        // double quant: 256-entry code
    const float *absmax2;      // double quant: one f32 per block_size2 blocks
    float offset;              // double quant offset
    int32_t block_size2;       // double quant block size (256)
    int32_t paired;            // nibble order: 0 bitsandbytes, 1 paired blocks
} cq_qweight;

/// Whether a [rows, cols] weight with this block size can take the paired order: block_size a
/// multiple of 64 and every row whole block pairs (cols % (2·block_size) == 0).
int cq_pairing_supported(int64_t rows, int64_t cols, int32_t block_size);

/// Converts `count` weights' packed nibbles in place between bitsandbytes' order and the paired
/// order (to_paired 1: bnb -> paired; 0: back). Paired: blocks 2c and 2c+1 share bytes
/// [c·block_size, (c+1)·block_size): byte t holds element t of block 2c in its LOW nibble
/// and element t of block 2c+1 in its HIGH nibble. Parallel over block pairs; a round trip gives
/// the original bytes. Returns 0, or -1 (nothing written) unless block_size is even and <= 4096
/// and count a multiple of 2·block_size.
int cq_pair_nibbles(uint8_t *packed, int64_t count, int32_t block_size, int to_paired, int threads);

/// Dequantizes the whole weight to f32 [rows, cols]: out[j] = codebook[q[j]] * absmax[j / bs].
void cq_dequantize_4bit(const cq_qweight *w, float *out, int threads);

/// Dequantizes rows [row0, row0+nrows) into out [nrows, cols] (used by panel-wise kernels).
/// Rows may start mid-block and mid-byte; one thread. Same bits as cq_dequantize_4bit on every
/// ISA path (one f32 multiply per element).
void cq_dequantize_rows(const cq_qweight *w, int64_t row0, int64_t nrows, float *out);

// ---- fused_linear.c / gemv.c: y = x·Wᵀ + scaling·(x·Aᵀ)·Bᵀ + bias -------------------
/// Fused on-the-fly QLoRA linear. x [M, K], W 4-bit [N, K], A [r, K], B [N, r], bias [N] or
/// NULL, y [M, N]. r may be 0 (no LoRA; A, B ignored). scratch: at least
/// cq_fused_linear_scratch_bytes(M, N, K, r, threads) bytes, 64-byte aligned, owned by the caller.
/// M == 1 takes the GEMV path that reads nibbles directly.
size_t cq_fused_linear_scratch_bytes(int64_t M, int64_t N, int64_t K, int32_t r, int threads);
void cq_fused_linear(const float *x, int64_t M, const cq_qweight *w,
                     const float *A, const float *B, int32_t r, float scaling,
                     const float *bias, float *y, void *scratch, int threads);

/// cq_fused_linear with an optional bf16 compute path (bf16 != 0) on a CPU with AVX512-BF16:
/// x and the dequantized weight are rounded to bf16 and multiplied with f32 accumulation (~1e-3
/// relative error instead of 1e-5). M >= 64: the panel GEMM (LoRA block also bf16); M < 64: the
/// nibble-streaming tiles when K % block_size == 0 and block_size >= 64 (LoRA term and bias in
/// f32), otherwise f32. Same scratch as cq_fused_linear; bits independent of the thread count.
/// Returns 1 if bf16 compute ran, 0 if it ran cq_fused_linear.
int cq_fused_linear_ex(const float *x, int64_t M, const cq_qweight *w,
                       const float *A, const float *B, int32_t r, float scaling,
                       const float *bias, float *y, void *scratch, int threads, int bf16);

/// The LoRA down-projection xa = x·Aᵀ [M, r] (x [M, K], A [r, K]) exactly as the fused kernels
/// compute it internally (one fixed-order dot per output, split over outputs).
void cq_lora_down(const float *x, int64_t M, int64_t K, const float *A, int32_t r, float *xa, int threads);

/// cq_fused_linear_ex with the down-projection xa = x·Aᵀ [M, r] given (from cq_lora_down: a
/// training plan computes it once and keeps it for the backward's dB = (dY·s)ᵀ·(x·Aᵀ)); r > 0.
/// Same scratch; with xa from cq_lora_down, y is bitwise cq_fused_linear_ex's. Returns 1 if bf16 ran.
int cq_fused_linear_given_xa(const float *x, int64_t M, const cq_qweight *w,
                             const float *xa, const float *B, int32_t r, float scaling,
                             const float *bias, float *y, void *scratch, int threads, int bf16);

// Below this many rows the nibble-streaming tiles (4 weight rows x 4 x rows, decoded in
// registers once per 4 x rows) are as fast as decode + GEMM (~89 vs 80-90 GFLOP/s per core at
// M = 16..64 on Zen 4), and need no panel scratch; from 64 rows on the panel GEMM wins.
#define CQ_GEMV_MAX_M 64

// ---- fused_linear_group.c: several on-the-fly linears of one x ------------------------
/// Most weights one group takes (q/k/v: 3, gate/up: 2).
#define CQ_LINEAR_GROUP_MAX 4
/// One member of a group: y [M, N] = x·Wᵀ + scaling·(x·Aᵀ)·Bᵀ + bias, as cq_fused_linear.
/// xa: NULL (the driver computes x·Aᵀ from A into its scratch) or x·Aᵀ [M, r] from cq_lora_down
/// (training; A is then ignored, as in cq_fused_linear_given_xa). y: NULL only with silu_mul (the
/// member's value then lives in the scratch).
typedef struct {
    const cq_qweight *w;
    const float *A, *B;
    int32_t r;
    float scaling;
    const float *bias;
    float *y;
    const float *xa;
} cq_linear_member;

/// The members' linears of one x [M, K] (every W [N_i, K]); with silu_mul != 0 (two members,
/// equal N) the result is silu(y0)·y1 into out [M, N] (y0, y1 where the members say, or in the scratch). Bits
/// equal separate cq_fused_linear_ex calls (then cq_silu_mul): small M (f32) runs every
/// member's GEMV tiles in one parallel region over x permuted once; other cases run the members
/// one after another. scratch: cq_fused_linear_group_scratch_bytes bytes, 64-byte aligned.
size_t cq_fused_linear_group_scratch_bytes(int64_t M, int count, const int64_t *N, int64_t K, const int32_t *r,
                                           int silu_mul, int threads);
void cq_fused_linear_group(const float *x, int64_t M, int count, cq_linear_member *members, int silu_mul, float *out,
                           void *scratch, int threads, int bf16);

/// Cached-mode linear on an f32 weight W [N, K] with the same LoRA epilogue. scratch:
/// cq_dense_linear_scratch_bytes(M, N, K, r, threads) bytes (64-byte aligned, owned by the caller). Not OpenBLAS (its bits change with the thread
/// count): the fused path's panel GEMM / dot products (dense_linear.c).
size_t cq_dense_linear_scratch_bytes(int64_t M, int64_t N, int64_t K, int32_t r, int threads);
void cq_dense_linear(const float *x, int64_t M, const float *W, int64_t N, int64_t K,
                     const float *A, const float *B, int32_t r, float scaling,
                     const float *bias, float *y, void *scratch, int threads);
/// cq_dense_linear with xa = x·Aᵀ [M, r] given (r > 0). Same scratch, same y bits as cq_dense_linear.
void cq_dense_linear_given_xa(const float *x, int64_t M, const float *W, int64_t N, int64_t K,
                              const float *xa, const float *B, int32_t r, float scaling,
                              const float *bias, float *y, void *scratch, int threads);

/// Plain y[M,N] = x[M,K]·W[N,K]ᵀ, the unfused matmul node (same kernels as cq_dense_linear).
/// scratch: cq_matmul_nt_scratch_bytes(M, K, threads) bytes (may be NULL when that is 0).
size_t cq_matmul_nt_scratch_bytes(int64_t M, int64_t K, int threads);
void cq_matmul_nt(const float *x, int64_t M, const float *W, int64_t N, int64_t K, float *y, void *scratch, int threads);

/// The exact int8 form of an f32 matrix W [N, K]: per row, blocks of 32 values (the last may be
/// shorter) with W = d·q bit for bit, d = max|block| / 127 and q an integer in [-127, 127] — what a
/// GGUF Q8_0 tensor (e.g. a tied embedding / lm_head) dequantizes to. Fills q [N, K] and d
/// [N, ceil(K/32)] and returns 1 when every value passes, else 0 (q, d then hold nothing useful).
#define CQ_EXACT_INT8_BLOCK 32
#define CQ_EXACT_INT8_MAX_K 16384
int cq_exact_int8_blocks(const float *w, int64_t N, int64_t K, int8_t *q, float *d);
/// cq_matmul_nt, reading the int8 form (q, d; NULL: none) instead of W where it is exact and
/// cheaper: at M < 8 each row is decoded into an L1 buffer and dotted exactly as cq_matmul_nt's
/// small-M path does, so the bits are the same; otherwise cq_matmul_nt on W. Same scratch.
void cq_matmul_nt_exact(const float *x, int64_t M, const float *W, const int8_t *q, const float *d, int64_t N, int64_t K,
                        float *y, void *scratch, int threads);

// ---- float_mode.c --------------------------------------------------------------------
/// The calling thread's denormal handling. flush != 0 sets x86's flush-to-zero and
/// denormals-are-zero modes (MXCSR FTZ | DAZ: a denormal operand or result counts as zero; x86
/// computes with denormals in microcode, up to ~100x slower), 0 clears them (IEEE gradual
/// underflow). Returns the previous mode for cq_float_mode_restore. cq_parallel gives its team the
/// caller's mode for the region and restores each member's own afterwards, so a mode set around
/// a plan covers every thread of its kernels. Off x86-64: no-ops, and cq_float_mode_supported() = 0.
uint32_t cq_float_mode_set(int flush);
void cq_float_mode_restore(uint32_t previous);
/// Whether the calling thread flushes denormals now.
int cq_float_mode_flushes(void);
int cq_float_mode_supported(void);

// ---- memory.c ------------------------------------------------------------------------
/// Returns freed heap pages to the OS (glibc malloc_trim); used by memory measurements.
void cq_release_free_memory(void);
/// `bytes` (0 counts as 64) 64-byte aligned, uninitialized, or NULL when out of memory; release
/// with cq_free_aligned. From 2 MiB on the block starts on a 2 MiB boundary and is advised
/// MADV_HUGEPAGE (Linux), so streamed weights are mapped with transparent huge pages.
void *cq_alloc_aligned(size_t bytes);
/// Reads every 64-byte line of p (64-byte aligned, bytes / 64 lines) once with `threads`
/// threads and the widest loads of the ISA in force; returns an XOR of the data (so the reads
/// stay). The benchmarks' streaming-read ceiling.
uint64_t cq_stream_read(const void *p, size_t bytes, int threads);
void cq_free_aligned(void *p);

// ---- elementwise.c --------------------------------------------------------------------
void cq_add(const float *a, const float *b, float *out, int64_t n, int threads);
/// out = ((xs[0] + xs[1]) + xs[2]) + ... + xs[count-1] elementwise (count >= 2): the bits of
/// count - 1 cq_add calls in turn. out may be any of the xs.
void cq_add_chain(const float *const *xs, int count, float *out, int64_t n, int threads);
void cq_mul(const float *a, const float *b, float *out, int64_t n, int threads);
/// out[i, j] = a[i, j] + row[j] (bias broadcast over rows of width n)
void cq_add_row(const float *a, const float *row, float *out, int64_t rows, int64_t n, int threads);
void cq_scale(const float *a, float s, float *out, int64_t n, int threads);
/// out = e^a by the vectorized polynomial of fast_exp.h (within 1 ulp of libm expf on [−87.3, 88.7],
/// 0 below −103.9, +inf above 88.72; the same bits on every ISA and thread count).
void cq_exp(const float *a, float *out, int64_t n, int threads);
void cq_silu(const float *a, float *out, int64_t n, int threads);
void cq_gelu(const float *a, float *out, int64_t n, int threads);   // tanh approximation off: erf form
void cq_relu(const float *a, float *out, int64_t n, int threads);
/// out = silu(a) * b (the SwiGLU gate)
void cq_silu_mul(const float *a, const float *b, float *out, int64_t n, int threads);
/// RMSNorm over rows of width n: out = a / sqrt(mean(a²) + eps) * weight
void cq_rmsnorm(const float *a, const float *weight, float eps, float *out, int64_t rows, int64_t n, int threads);

// ---- softmax.c ------------------------------------------------------------------------
/// Softmax over rows of width n, numerically stable (each row's maximum is subtracted first).
void cq_softmax(const float *x, float *out, int64_t rows, int64_t n, int threads);
/// The same, also writing each row's log-sum-exp, lse[i] = log Σ_j exp(x[i, j]) (what a
/// cross-entropy and its backward need).
void cq_softmax_lse(const float *x, float *out, float *lse, int64_t rows, int64_t n, int threads);

// ---- embedding.c ----------------------------------------------------------------------
/// out[i, :] = table[ids[i], :] for count ids into a [vocab, dim] table. Returns -1, or the first
/// index i whose id is outside 0..<vocab (its row, like every bad row, is written as zeros).
int64_t cq_embedding(const int32_t *ids, int64_t count, const float *table, int64_t vocab, int64_t dim, float *out, int threads);
/// The same over a bfloat16 table (raw 16-bit patterns); rows are widened exactly to f32.
int64_t cq_embedding_bf16(const int32_t *ids, int64_t count, const uint16_t *table, int64_t vocab, int64_t dim, float *out, int threads);


// ---- backward.c: what reverse mode needs (fixed reduction orders, split over outputs) ------
// gemm_kn.c: the backward GEMMs (docs/backward-gemm.md). Each output sums its reduction in
// blocks of 256 in order (micro-kernel fma chains): bits independent of the thread count.
/// dx = dy·W' for dy [M, N] and the 4-bit weight W' [N, K], weight rows decoded on the fly into
/// per-thread [256, 192] tile blocks (never a full f32 copy of W').
void cq_matmul_nn_q4(const float *dy, int64_t M, const cq_qweight *w, float *dx, int threads);
/// dx = dy·W for dy [M, N], W [N, K].
void cq_matmul_nn(const float *dy, int64_t M, const float *w, int64_t N, int64_t K, float *dx, int threads);
/// dw = dyᵀ·x for dy [M, N], x [M, K]: [N, K].
void cq_matmul_tn(const float *dy, const float *x, int64_t M, int64_t N, int64_t K, float *dw, int threads);
/// The same three with the caller's scratch (a plan's; 64-byte aligned) instead of a malloc per
/// call; same bits. quantized: the weight is 4-bit (cq_gemm_nn_q4) rather than f32.
size_t cq_gemm_nn_scratch_bytes(int64_t M, int64_t N, int64_t K, int quantized, int threads);
void cq_gemm_nn_q4(const float *dy, int64_t M, const cq_qweight *w, float *dx, void *scratch, int threads);
void cq_gemm_nn(const float *dy, int64_t M, const float *w, int64_t N, int64_t K, float *dx, void *scratch, int threads);
size_t cq_gemm_tn_scratch_bytes(int64_t M, int64_t N, int64_t K, int threads);
void cq_gemm_tn(const float *dy, const float *x, int64_t M, int64_t N, int64_t K, float *dw, void *scratch, int threads);
/// out[j] = Σ_i x[i, j] (rows in order).
void cq_sum_rows(const float *x, int64_t rows, int64_t n, float *out, int threads);
/// out = dy·f'(x); kind 0 silu, 1 gelu (erf form), 2 relu.
void cq_activation_grad(int kind, const float *x, const float *dy, float *out, int64_t n, int threads);
/// The SwiGLU gate h = silu(x)·u backward: dx = (dy·u)·silu'(x), du = dy·silu(x); the bits of
/// cq_mul, cq_activation_grad(0, ...), cq_silu and cq_mul in turn. dx, du must not overlap the inputs.
void cq_silu_mul_grad(const float *x, const float *u, const float *dy, float *dx, float *du, int64_t n, int threads);
/// dx = y·(dy − Σ_j dy·y + dlse[i]) per row, y the softmax output; dlse (the cotangent of the
/// row's log-sum-exp) may be NULL.
void cq_softmax_grad(const float *y, const float *dy, const float *dlse, float *out, int64_t rows, int64_t n, int threads);
/// RMSNorm's input gradient.
void cq_rmsnorm_grad_x(const float *x, const float *weight, const float *dy, float eps, float *dx, int64_t rows, int64_t n,
                       int threads);
/// x / sqrt(mean(x²) + eps) per row (RMSNorm without its weight).
void cq_rmsnorm_hat(const float *x, float eps, float *out, int64_t rows, int64_t n, int threads);
/// Table gradient [vocab, dim]: rows of dy added at their ids, ids in order (ids outside are skipped).
void cq_embedding_grad(const int32_t *ids, int64_t count, const float *dy, int64_t vocab, int64_t dim, float *out, int threads);
/// mean((y − t)²) over n values.
float cq_mse(const float *y, const float *t, int64_t n);
/// out = (2/n)·(y − t)·g[0].
void cq_mse_grad(const float *y, const float *t, const float *g, float *out, int64_t n, int threads);
/// Mean over rows of log Σ exp(logits[i]) − logits[i, labels[i]] (rows labelled -100 skipped), as
/// torch's cross_entropy; returns -1, or the first row whose label is outside 0..<n.
int64_t cq_cross_entropy(const float *logits, const int32_t *labels, int64_t rows, int64_t n, float *loss, int threads);
/// Its gradient: (softmax − onehot)·g[0]/counted rows, zero rows for ignored labels.
void cq_cross_entropy_grad(const float *logits, const int32_t *labels, const float *g, float *out, int64_t rows, int64_t n, int threads);
void cq_fill(float value, float *out, int64_t n);
void cq_copy(const float *src, float *out, int64_t n);

// ---- optimizer.c: steps over a flat parameter buffer ------------------------------------
/// buf = momentum·buf + g; p −= lr·buf (momentum 0: p −= lr·g, buf unused and may be NULL); g is
/// first multiplied by grad_scale (a clip coefficient; 1 leaves it unchanged).
void cq_sgd_step(float *p, const float *g, float *buf, int64_t n, double lr, double momentum, float grad_scale, int threads);
/// One torch.optim.AdamW step on grad_scale·g; step[0] is the step count, incremented first.
void cq_adamw_step(float *p, const float *g, float *m, float *v, float *step, int64_t n, double lr, double beta1, double beta2,
                   double eps, double weight_decay, float grad_scale, int threads);
/// Σ x² accumulated in double in index order.
double cq_sum_squares(const float *x, int64_t n);
/// acc = weight·g (first != 0) or acc += weight·g, elementwise.
void cq_accumulate_scaled(float *acc, const float *g, float weight, int first, int64_t n, int threads);

// ---- dropout.c: inverted dropout with a counter-based mask --------------------------------
/// The per-(seed, stream, step) key of a mask.
uint64_t cq_dropout_key(uint64_t seed, uint64_t stream, uint64_t step);
/// Whether element i survives (probability 1 − p).
int cq_dropout_keeps(uint64_t key, int64_t i, float p);
/// out[i] = keeps(key, i) ? x[i]·scale : 0.
void cq_dropout(const float *x, float *out, int64_t n, uint64_t key, float p, float scale, int threads);

// ---- rope.c ---------------------------------------------------------------------------
/// Half-split (rotate_half) rotary embedding of rows [rows, heads·head_dim]: pair (i, i + d/2) of
/// each head rotated by p·inv_freq[i], p = positions[row] or offset + row % seq (positions NULL);
/// inverse != 0 rotates by −angle (the vjp). out may alias x.
void cq_rope(const float *x, float *out, int64_t rows, int64_t seq, int64_t heads, int64_t head_dim,
             const float *inv_freq, const int32_t *positions, int64_t offset, int inverse, int threads);

// ---- attention.c ----------------------------------------------------------------------
/// Causal grouped-query attention with an online softmax (no [seq, seq] matrix): q/out
/// [batch, seq_q, heads·d], k/v [batch, seq_kv, kv_heads·d] (seq_kv >= seq_q; the queries are the
/// last seq_q positions), lse [batch, heads, seq_q]; score = (q·k)·scale. head_dim <= 256.
void cq_attention(const float *q, const float *k, const float *v, float *out, float *lse,
                  int64_t batch, int64_t seq_q, int64_t seq_kv, int64_t heads, int64_t kv_heads, int64_t head_dim,
                  float scale, int threads);
/// cq_attention over a KV cache: k/v hold kv_cap rows per batch entry of which the first kv_len
/// (>= seq_q) are live; the queries are positions kv_len − seq_q ... kv_len − 1.
void cq_attention_cached(const float *q, const float *k, const float *v, float *out, float *lse,
                         int64_t batch, int64_t seq_q, int64_t kv_len, int64_t kv_cap, int64_t heads, int64_t kv_heads,
                         int64_t head_dim, float scale, int threads);
/// cq_attention over packed rows (seq_q == seq_kv): `positions` [batch, seq] restart at 0 for each
/// example, and query i sees keys i − positions[i] ... i only (its own example). Positions must be
/// 0 or the previous position + 1 (checked by the caller).
void cq_attention_segmented(const float *q, const float *k, const float *v, const int32_t *positions, float *out, float *lse,
                            int64_t batch, int64_t seq, int64_t heads, int64_t kv_heads, int64_t head_dim, float scale, int threads);
/// Scratch of cq_attention_grad (each query row's Σ dout·out and the key chunks' partial dq sums).
int64_t cq_attention_grad_scratch_bytes(int64_t batch, int64_t seq_q, int64_t seq_kv, int64_t heads, int64_t kv_heads,
                                        int64_t head_dim);
/// Key chunks per (batch, KV head) in cq_attention_grad's split (a function of the shape only).
int64_t cq_attention_grad_chunks(int64_t batch, int64_t kv_heads, int64_t seq_kv);
/// dq, dk, dv of cq_attention from its inputs, output, lse and dout (scores recomputed).
void cq_attention_grad(const float *q, const float *k, const float *v, const float *out, const float *lse, const float *dout,
                       float *dq, float *dk, float *dv, void *scratch,
                       int64_t batch, int64_t seq_q, int64_t seq_kv, int64_t heads, int64_t kv_heads, int64_t head_dim,
                       float scale, int threads);
/// cq_attention_grad of cq_attention_segmented (positions NULL: plain causal).
void cq_attention_grad_segmented(const float *q, const float *k, const float *v, const int32_t *positions, const float *out,
                                 const float *lse, const float *dout, float *dq, float *dk, float *dv, void *scratch,
                                 int64_t batch, int64_t seq_q, int64_t seq_kv, int64_t heads, int64_t kv_heads, int64_t head_dim,
                                 float scale, int threads);

#ifdef __cplusplus
}
#endif
