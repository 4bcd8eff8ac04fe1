/*
 * gptq_test.h - the GPTQ objective the GPTQ tests (test_gptq, and the GPU ones through tests/cuda/cuda_test.h)
 * measure quantized matrices by.
 */
#ifndef LB_GPTQ_TEST_H
#define LB_GPTQ_TEST_H

#include <stdint.h>
#include <stdlib.h>

/* sum over rows of (w - q)^T H (w - q), W and Q (rows, n), H (n, n), in double */
static double gptq_proxy(const float *W, const float *Q, int64_t rows, int64_t n, const double *H) {
    double *d = malloc(sizeof *d * (size_t)n), tot = 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < n; j++) d[j] = (double)W[r * n + j] - Q[r * n + j];
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int64_t j = 0; j < n; j++) s += H[i * n + j] * d[j];
            tot += d[i] * s;
        }
    }
    free(d);
    return tot;
}

#endif
