/*
 * matmul.h - out (T, N) = x (T, K) . W (N, K)^T for weights of any supported lb_type, the one matrix
 * product the forward pass uses. Rows of W are split into fixed tiles handed to the thread pool; every
 * output element is computed by the same code whatever the thread count, so results are identical for
 * any number of threads.
 */
#ifndef LB_MATMUL_H
#define LB_MATMUL_H

#include "../core/core.h"
#include "quant.h"

/* Rows of W per task; each thread needs scratch for MM_TILE_ROWS * K floats. */
#define MM_TILE_ROWS 16

/* Floats of per-thread scratch lb_matmul needs for inner dimension K. */
static inline size_t lb_matmul_scratch_floats(int64_t K) { return (size_t)MM_TILE_ROWS * (size_t)K + 16; }

/*
 * x: (T, K) row-major; w: (N, K); out: (T, ldo) with ldo >= N, columns [0, N) written.
 * scratch: pool-size slots of lb_matmul_scratch_floats(K) floats each.
 */
void lb_matmul(lb_pool *pool, float *scratch, const float *x, int64_t T, const lb_weight *w, float *out, int64_t ldo);

/* Reference kernel (the specification, float64 accumulation, single-threaded). */
void lb_matmul_ref(const float *x, int64_t T, const lb_weight *w, float *out, int64_t ldo);

/* Attention helpers over n rows of a (n, stride) matrix m holding D-wide vectors:
 * s[p] = q . m[p] for p in [0, n), and o = sum_p w[p] * m[p] (o has D floats). */
void lb_vec_dots(const float *q, const float *m, int64_t stride, int64_t n, int64_t D, float *s);
void lb_vec_wsum(const float *w, const float *m, int64_t stride, int64_t n, int64_t D, float *o);

/* Which implementation lb_matmul uses: "avx2" or "ref" (LB_FORCE_REF=1 pins "ref"). */
const char *lb_matmul_impl(void);

#endif
