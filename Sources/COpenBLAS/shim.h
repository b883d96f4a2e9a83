#pragma once
#include <cblas.h>
// Debian's openblas exposes these; declared here so Swift and C can set the BLAS thread count.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
