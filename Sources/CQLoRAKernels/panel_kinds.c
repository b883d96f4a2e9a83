// The two element kinds of the panel GEMM (panel_kind.h): how an x row is packed into 4-byte
// steps, and how a weight panel row is stored.
#include "panel_kind.h"
#include <string.h>

static void pack_x_f32(const float *v, int64_t n, const float *scale, void *dst, int wd) {
    float *d = (float *)dst;
    if (!v) for (int64_t k = 0; k < n; k++) d[k * wd] = 0.0f;
    else if (scale) for (int64_t k = 0; k < n; k++) d[k * wd] = *scale * v[k];
    else for (int64_t k = 0; k < n; k++) d[k * wd] = v[k];
}

cq_panel_kind cq_panel_kind_f32(void) {
    const cq_gemm_isa isa = cq_gemm_isa_current();
    return (cq_panel_kind){isa.mrp, isa.nr, isa.kernel, isa.half, 1, sizeof(float), pack_x_f32, NULL, isa.decode,
                           isa.store_t};
}

static uint16_t bf16(float f) { // round to nearest even, as vcvtneps2bf16
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/// Pairs (k, k+1) of bf16 in one uint32 (k in the low half), as vdpbf16ps takes them; x is
/// rounded once here, per call, not per panel.
static void pack_x_bf16(const float *v, int64_t n, const float *scale, void *dst, int wd) {
    uint32_t *d = (uint32_t *)dst;
    const float s = scale ? *scale : 1.0f;
    for (int64_t kk = 0; kk < (n + 1) / 2; kk++) {
        uint32_t pair = 0;
        if (v) pair = bf16(s * v[2 * kk]) | (2 * kk + 1 < n ? (uint32_t)bf16(s * v[2 * kk + 1]) << 16 : 0u);
        d[kk * wd] = pair;
    }
}

cq_panel_kind cq_panel_kind_bf16(const cq_bf16_isa *isa) {
    const cq_gemm_isa f32 = cq_gemm_isa_current();
    return (cq_panel_kind){CQ_MRP_AVX512, CQ_NR_AVX512, isa->kernel, NULL, 2, sizeof(uint16_t), pack_x_bf16,
                           isa->to_bf16, f32.decode, f32.store_t};
}
