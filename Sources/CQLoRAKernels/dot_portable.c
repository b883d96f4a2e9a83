// Portable fixed-order dot product (the result does not depend on the caller's thread).
#include "kernels_internal.h"

float cq_dot_portable(const float *a, const float *b, int64_t n) {
    // Eight interleaved partial sums, combined in a fixed tree.
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += a[i + l] * b[i + l];
    for (int l = 0; i < n; i++, l++) s[l] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}
