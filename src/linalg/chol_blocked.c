/*
 * chol_blocked.c - lb_chol_inv_upper for large matrices: blocked, cache-friendly and threaded. chol.c's
 * unblocked lb_chol_inv_upper_ref is the specification; this computes the same quantities, summed in
 * another order.
 *
 * Both steps walk blocks of NB columns from the last to the first (right-looking block Cholesky, Golub &
 * Van Loan, Matrix Computations, 4.2, here from the last column back as in chol.c).
 * Factorization A = R R^T, R upper in A's upper triangle; for the block J = [b0, b1):
 *   1. R_JJ from the (already updated) diagonal block, unblocked, each pivot checked against A's original
 *      diagonal entry (kept in work);
 *   2. the panel, rows i < b0: R[i, J] = A[i, J] R_JJ^-T, a small triangular solve per row;
 *   3. the trailing update of the upper triangle: A[i][l] -= R[i, J] . R[l, J] for i <= l < b0.
 * Only the upper triangle is written, so a failure leaves the strictly lower triangle as it was.
 * Inverse U = R^-1, built transposed in the (then free) strictly lower triangle plus the diagonal:
 * Ut[r][i] = U[i][r], column r of U being the solution of R u = e_r; R stays readable above the diagonal,
 * its diagonal is copied to work. For the block I = [b0, b1), rows r >= b0 of Ut:
 *   1. back substitution in the block: Ut[r][i] = -(Ut[r][i] + sum_{k in (i, min(r, b1 - 1)]} R[i][k] Ut[r][k])
 *      / R[i][i] for i in I, i <= r, where Ut[r][i] holds what the blocks after I contributed;
 *   2. the contributions of I to the blocks before it: Ut[r][i] += Ut[r, I] . R[i, I] for i < b0 (only
 *      k <= r for rows r inside I).
 * Rows of Ut are independent, so one pool run per block does both. Finally U moves to the upper triangle.
 *
 * The bulk of the work (the updates) is dot products of NB-long row segments, in tiles of 4 x 3 outputs
 * so that each loaded segment serves several products. Every output element is computed by the same code
 * in the same order whatever tile or thread it falls to, so the result does not depend on the pool size.
 */
#include "linalg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define NB 64   /* columns per block: the length of the update dot products */
#define ROWS 64 /* output rows per pool task */
#define TT 32   /* tile of the final transposition */

/* ---------------------------------------------------------------- kernels ------------------------------ */

/* a . b over K: four partial sums over k mod 4 by fma, combined as (s0 + s2) + (s1 + s3), then the tail in
 * order by fma. The reference and the AVX2 kernels do exactly these operations, so they agree bit for bit.
 * dots: s[p][q] = a_p . b_q for rows a_p = a + p lda (p < np <= 4), b_q = b + q ldb (q < nq <= 3). */
typedef double (*dot_fn)(const double *a, const double *b, int64_t K);
typedef void (*dots_fn)(const double *a, int64_t lda, int np, const double *b, int64_t ldb, int nq, int64_t K,
                        double s[4][3]);

static double dot_ref(const double *a, const double *b, int64_t K) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
        s0 = fma(a[k], b[k], s0);
        s1 = fma(a[k + 1], b[k + 1], s1);
        s2 = fma(a[k + 2], b[k + 2], s2);
        s3 = fma(a[k + 3], b[k + 3], s3);
    }
    double s = (s0 + s2) + (s1 + s3);
    for (; k < K; k++) s = fma(a[k], b[k], s);
    return s;
}

static void dots_ref(const double *a, int64_t lda, int np, const double *b, int64_t ldb, int nq, int64_t K,
                     double s[4][3]) {
    for (int p = 0; p < np; p++)
        for (int q = 0; q < nq; q++) s[p][q] = dot_ref(a + p * lda, b + q * ldb, K);
}

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline double hsum4(__m256d v) {
    __m128d lo = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1)); /* (s0 + s2, s1 + s3) */
    return _mm_cvtsd_f64(_mm_add_sd(lo, _mm_unpackhi_pd(lo, lo)));
}

AVX2 static double dot_avx2(const double *a, const double *b, int64_t K) {
    __m256d c = _mm256_setzero_pd();
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) c = _mm256_fmadd_pd(_mm256_loadu_pd(a + k), _mm256_loadu_pd(b + k), c);
    double s = hsum4(c);
    for (; k < K; k++) s = fma(a[k], b[k], s);
    return s;
}

/* 12 accumulators: each loaded segment of a serves 3 products, each of b 4 (rows past np, nq repeat). */
AVX2 static void dots_avx2(const double *a, int64_t lda, int np, const double *b, int64_t ldb, int nq, int64_t K,
                           double s[4][3]) {
    const double *a0 = a, *a1 = a + (np > 1 ? lda : 0), *a2 = a + (np > 2 ? 2 * lda : 0), *a3 = a + (np > 3 ? 3 * lda : 0);
    const double *b0 = b, *b1 = b + (nq > 1 ? ldb : 0), *b2 = b + (nq > 2 ? 2 * ldb : 0);
    __m256d c00 = _mm256_setzero_pd(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256d c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
        const __m256d x0 = _mm256_loadu_pd(b0 + k), x1 = _mm256_loadu_pd(b1 + k), x2 = _mm256_loadu_pd(b2 + k);
        __m256d y = _mm256_loadu_pd(a0 + k);
        c00 = _mm256_fmadd_pd(y, x0, c00);
        c01 = _mm256_fmadd_pd(y, x1, c01);
        c02 = _mm256_fmadd_pd(y, x2, c02);
        y = _mm256_loadu_pd(a1 + k);
        c10 = _mm256_fmadd_pd(y, x0, c10);
        c11 = _mm256_fmadd_pd(y, x1, c11);
        c12 = _mm256_fmadd_pd(y, x2, c12);
        y = _mm256_loadu_pd(a2 + k);
        c20 = _mm256_fmadd_pd(y, x0, c20);
        c21 = _mm256_fmadd_pd(y, x1, c21);
        c22 = _mm256_fmadd_pd(y, x2, c22);
        y = _mm256_loadu_pd(a3 + k);
        c30 = _mm256_fmadd_pd(y, x0, c30);
        c31 = _mm256_fmadd_pd(y, x1, c31);
        c32 = _mm256_fmadd_pd(y, x2, c32);
    }
    const __m256d c[4][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}, {c30, c31, c32}};
    const double *ar[4] = {a0, a1, a2, a3}, *br[3] = {b0, b1, b2};
    for (int p = 0; p < np; p++)
        for (int q = 0; q < nq; q++) {
            double v = hsum4(c[p][q]);
            for (int64_t j = k; j < K; j++) v = fma(ar[p][j], br[q][j], v);
            s[p][q] = v;
        }
}
#endif

/* ---------------------------------------------------------------- the two steps ------------------------ */

typedef struct job {
    double *A; /* (n, n) */
    int64_t n, b0, b1; /* the current block of columns [b0, b1) */
    double *d;         /* factorization: A's original diagonal; inverse: R's diagonal */
    dot_fn dot;
    dots_fn dots;
} job;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Factorization step 1, on the caller's thread: false at the first pivot that is not positive. */
static bool factor_diag(const job *j) {
    double *A = j->A;
    const int64_t n = j->n;
    for (int64_t c = j->b1 - 1; c >= j->b0; c--) {
        double *Rc = A + c * n;
        const int64_t m = j->b1 - c - 1;
        const double s = Rc[c] - j->dot(Rc + c + 1, Rc + c + 1, m);
        if (!lb_chol_pivot_ok(s, j->d[c])) return false;
        Rc[c] = sqrt(s);
        for (int64_t i = j->b0; i < c; i++) {
            double *Ri = A + i * n;
            Ri[c] = (Ri[c] - j->dot(Ri + c + 1, Rc + c + 1, m)) / Rc[c];
        }
    }
    return true;
}

/* Rows [r0, r1), columns [c0, c0 + K) of A to the dense (r1 - r0, K) buf: blocks a task reads many times,
 * copied so that their rows do not compete for the same cache sets (A's row stride is often a power of 2). */
static void pack(const job *j, int64_t r0, int64_t r1, int64_t c0, int64_t K, double *buf) {
    for (int64_t r = r0; r < r1; r++) memcpy(buf + (r - r0) * K, j->A + r * j->n + c0, (size_t)K * sizeof *buf);
}

/* The upper triangle (diagonal included) of the diagonal block [b0, b1)^2 to the dense (K, K) buf. */
static void pack_diag(const job *j, double *buf) {
    const int64_t K = j->b1 - j->b0;
    for (int64_t r = 0; r < K; r++)
        memcpy(buf + r * K + r, j->A + (j->b0 + r) * j->n + j->b0 + r, (size_t)(K - r) * sizeof *buf);
}

/* The tile loop of both updates: A[i][l] += sign * pa[i - r0] . A[l, J] for rows i in [r0, r1) (pa: those
 * rows' segments, packed) and columns l in [l0, l1); upper: only i <= l. */
static void tiles(const job *j, const double *pa, int64_t r0, int64_t r1, int64_t l0, int64_t l1, double sign,
                  bool upper) {
    double *A = j->A, s[4][3];
    const int64_t n = j->n, b0 = j->b0, K = j->b1 - b0;
    for (int64_t l = l0; l < l1; l += 3) {
        const int nq = (int)min64(3, l1 - l);
        for (int64_t i = r0; i < r1 && (!upper || i < l + nq); i += 4) {
            const int np = (int)min64(4, r1 - i);
            j->dots(pa + (i - r0) * K, K, np, A + l * n + b0, n, nq, K, s);
            for (int p = 0; p < np; p++)
                for (int q = 0; q < nq; q++)
                    if (!upper || i + p <= l + q) A[(i + p) * n + l + q] += sign * s[p][q];
        }
    }
}

/* Factorization step 2, rows [t ROWS, ...) of the panel; dj: R_JJ. */
static void panel_task(void *arg, int64_t t, int thread) {
    const job *j = arg;
    double dj[NB * NB];
    const int64_t b0 = j->b0, K = j->b1 - b0, r1 = min64((t + 1) * ROWS, b0);
    pack_diag(j, dj);
    for (int64_t i = t * ROWS; i < r1; i++) {
        double *ri = j->A + i * j->n + b0;
        for (int64_t c = K - 1; c >= 0; c--) ri[c] = (ri[c] - j->dot(ri + c + 1, dj + c * K + c + 1, K - c - 1)) / dj[c * K + c];
    }
}

/* Factorization step 3, rows [r0, r1) of the upper triangle left of the block. */
static void update_task(void *arg, int64_t t, int thread) {
    const job *j = arg;
    double pa[ROWS * NB];
    const int64_t b0 = j->b0, K = j->b1 - b0, r0 = t * ROWS, r1 = min64(r0 + ROWS, b0);
    pack(j, r0, r1, b0, K, pa);
    tiles(j, pa, r0, r1, r0, b0, -1.0, true);
}

static bool factor(lb_pool *pool, job *j) {
    for (int64_t b1 = j->n, b0; b1 > 0; b1 = b0) {
        b0 = (b1 - 1) / NB * NB;
        j->b0 = b0;
        j->b1 = b1;
        if (!factor_diag(j)) return false;
        lb_pool_run(pool, (b0 + ROWS - 1) / ROWS, panel_task, j);
        lb_pool_run(pool, (b0 + ROWS - 1) / ROWS, update_task, j);
    }
    return true;
}

/* Before the inverse: R's diagonal to d, the strictly lower triangle to zero. */
static void prep_task(void *arg, int64_t t, int thread) {
    const job *j = arg;
    for (int64_t r = t * ROWS; r < min64((t + 1) * ROWS, j->n); r++) {
        j->d[r] = j->A[r * j->n + r];
        memset(j->A + r * j->n, 0, (size_t)r * sizeof *j->A);
    }
}

/* Inverse steps 1 and 2 for rows [b0 + t ROWS, ...) of Ut. */
static void inv_task(void *arg, int64_t t, int thread) {
    const job *j = arg;
    double *A = j->A, pa[ROWS * NB], di[NB * NB];
    const int64_t n = j->n, b0 = j->b0, b1 = j->b1, K = b1 - b0, r0 = b0 + t * ROWS, r1 = min64(r0 + ROWS, n);
    pack_diag(j, di); /* R_II */
    for (int64_t r = r0; r < r1; r++) {
        double *u = A + r * n + b0;
        const int64_t top = (r < b1 ? r : b1 - 1) - b0;
        if (r < b1) u[top] = 1.0 / j->d[r];
        for (int64_t i = r < b1 ? top - 1 : top; i >= 0; i--)
            u[i] = -(u[i] + j->dot(di + i * K + i + 1, u + i + 1, top - i)) / j->d[b0 + i];
    }
    for (int64_t r = r0; r < min64(r1, b1); r++)
        for (int64_t i = 0; i < b0; i++) A[r * n + i] += j->dot(A + r * n + b0, A + i * n + b0, r - b0 + 1);
    const int64_t f0 = r0 > b1 ? r0 : b1;
    if (f0 >= r1 || b0 == 0) return;
    pack(j, f0, r1, b0, K, pa);
    tiles(j, pa, f0, r1, 0, b0, 1.0, false);
}

/* After the inverse: Ut (lower) to U (upper), the lower triangle zeroed; tile rows [t TT, ...). */
static void transpose_task(void *arg, int64_t t, int thread) {
    const job *j = arg;
    double *A = j->A;
    const int64_t n = j->n, i0 = t * TT, i1 = min64(i0 + TT, n);
    for (int64_t c0 = i0; c0 < n; c0 += TT)
        for (int64_t i = i0; i < i1; i++)
            for (int64_t c = c0 > i + 1 ? c0 : i + 1; c < min64(c0 + TT, n); c++) {
                A[i * n + c] = A[c * n + i];
                A[c * n + i] = 0;
            }
}

static void invert(lb_pool *pool, job *j) {
    const int64_t n = j->n;
    lb_pool_run(pool, (n + ROWS - 1) / ROWS, prep_task, j);
    for (int64_t b1 = n, b0; b1 > 0; b1 = b0) {
        b0 = (b1 - 1) / NB * NB;
        j->b0 = b0;
        j->b1 = b1;
        lb_pool_run(pool, (n - b0 + ROWS - 1) / ROWS, inv_task, j);
    }
    lb_pool_run(pool, (n + TT - 1) / TT, transpose_task, j);
}

static bool use_avx2(void) {
    if (lb_force_ref()) return false;
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

bool lb_chol_inv_upper_pool(lb_pool *pool, double *A, int64_t n, double *work) {
    job j = {A, n, 0, 0, work, dot_ref, dots_ref};
#if defined(__x86_64__)
    if (use_avx2()) {
        j.dot = dot_avx2;
        j.dots = dots_avx2;
    }
#endif
    for (int64_t i = 0; i < n; i++) work[i] = A[i * n + i];
    if (!factor(pool, &j)) return false;
    invert(pool, &j);
    return true;
}

bool lb_chol_inv_upper(double *A, int64_t n, double *work) { return lb_chol_inv_upper_pool(NULL, A, n, work); }
