// Internal to the kernels: torch's float32 CPU sum, bit for bit (see torch_f32_sum.c).
#pragma once
#include <stdint.h>

/// The float32 sum of x[0, n) in exactly the order torch's CPU reduction (torch.sum / torch.mean
/// of a contiguous float32 tensor) adds, so the result has the same bits.
float cq_torch_f32_sum(const float *x, int64_t n);
