/*
 * linalg.h - the small dense algebra the algorithms need: Cholesky factorizations of symmetric positive
 * definite f64 matrices, the inverse through them, and the upper Cholesky factor of an inverse (GPTQ's
 * "Hinv"). Matrices are (n, n), row-major, in place. These never allocate; scratch comes from the caller.
 *
 * "Not positive definite" here means numerically: a pivot (a Schur-complement diagonal entry) that is not
 * larger than LB_CHOL_REL_EPS times the diagonal entry it came from, which also rejects matrices that are
 * singular up to rounding (their exact-arithmetic pivots are 0, the computed ones noise).
 */
#ifndef LB_LINALG_H
#define LB_LINALG_H

#include "../core/core.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#define LB_CHOL_REL_EPS 1e-12

/* A pivot s taken from the diagonal entry a is accepted when it is clearly positive. */
static inline bool lb_chol_pivot_ok(double s, double a) { return s > LB_CHOL_REL_EPS * a && isfinite(s); }

/*
 * A = L L^T with L lower triangular: reads the lower triangle (diagonal included) of A and overwrites it
 * with L; the strictly upper triangle is neither read nor written. Returns false when A is not positive
 * definite (the lower triangle is then partly overwritten).
 */
bool lb_chol(double *A /* (n, n) */, int64_t n);

/* A <- A^-1 (both triangles) through lb_chol; reads the lower triangle. False when A is not positive
 * definite (A is then clobbered). */
bool lb_chol_inverse(double *A /* (n, n) */, int64_t n);

/*
 * The upper triangular U with U^T U = A^-1 (positive diagonal), which is the inverse of the upper factor R
 * of A = R R^T. Reads the upper triangle (diagonal included) of A; on success the upper triangle holds U
 * and the strictly lower triangle is zeroed. On failure (A not positive definite) it returns false, the
 * upper triangle is clobbered and the strictly lower triangle is untouched, so a caller that keeps a copy
 * of A there (a symmetric A) can restore A and retry. work: n doubles of scratch.
 *
 * Blocked (cache-sized column blocks, AVX2 kernels where the CPU has them; LB_FORCE_REF=1 pins the
 * portable kernels), on the caller's thread.
 */
bool lb_chol_inv_upper(double *A /* (n, n) */, int64_t n, double *work /* (n) */);

/* The same with the work split over pool (NULL: the caller's thread only). The result is identical for
 * any pool size, and equal to lb_chol_inv_upper's. */
bool lb_chol_inv_upper_pool(lb_pool *pool, double *A /* (n, n) */, int64_t n, double *work /* (n) */);

/* The unblocked, single-threaded specification of lb_chol_inv_upper (same contract); the blocked routine
 * sums in another order, so the two agree to rounding (about n * eps * cond(A) relative). */
bool lb_chol_inv_upper_ref(double *A /* (n, n) */, int64_t n, double *work /* (n) */);

#endif
