/*
 * test_linalg.c - the blocked, threaded upper factor of the inverse (lb_chol_inv_upper, _pool) against the
 * unblocked reference (lb_chol_inv_upper_ref):
 *   (a) on A = Q diag(lambda) Q^T with a random orthogonal Q and a known condition number kappa (eigenvalues
 *       log-spaced in [1/kappa, 1]), sizes around the block size: the two differ by at most
 *       TOL_C * n * eps * kappa relative to max |U| (the forward-error bound of a Cholesky-based inverse
 *       factor, each of the two computations being within about n * eps * kappa of the exact U);
 *   (b) bit-identical results for pool sizes 1..4 and without a pool; the portable kernels
 *       (LB_FORCE_REF=1) agree with the reference within the same bound;
 *   (c) contract: only the upper triangle is read (NaN below the diagonal on input), the strictly lower
 *       triangle is zero on success and untouched on failure;
 *   (d) the same pass/fail as the reference on matrices that are not positive definite: a negative
 *       eigenvalue, rank deficiency, a bad pivot in the first or the last block processed, a NaN.
 * `test_linalg bench N [threads]` times the reference and the blocked routine on an N x N matrix.
 */
#include "linalg/linalg.h"
#include "test.h"

#include <float.h>
#include <math.h>

#define TOL_C 4.0

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static double unif(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
}
static double gauss(void) { return sqrt(-2 * log(unif() + 1e-300)) * cos(6.283185307179586 * unif()); }

/* A (n, n) = Q diag(lam) Q^T, Q from modified Gram-Schmidt (twice) on a Gaussian matrix; exactly symmetric. */
static void spectral(double *A, int n, const double *lam) {
    double *Q = malloc(sizeof *Q * (size_t)n * (size_t)n);
    for (int i = 0; i < n * n; i++) Q[i] = gauss();
    for (int pass = 0; pass < 2; pass++)
        for (int c = 0; c < n; c++) { /* rows of Q are the vectors */
            double *v = Q + (size_t)c * n;
            for (int p = 0; p < c; p++) {
                const double *u = Q + (size_t)p * n;
                double s = 0;
                for (int k = 0; k < n; k++) s += u[k] * v[k];
                for (int k = 0; k < n; k++) v[k] -= s * u[k];
            }
            double s = 0;
            for (int k = 0; k < n; k++) s += v[k] * v[k];
            for (int k = 0; k < n; k++) v[k] /= sqrt(s);
        }
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += Q[(size_t)k * n + i] * lam[k] * Q[(size_t)k * n + j];
            A[(size_t)i * n + j] = A[(size_t)j * n + i] = s;
        }
    free(Q);
}

static void spd(double *A, int n, double kappa) {
    double *lam = malloc(sizeof *lam * (size_t)n);
    for (int k = 0; k < n; k++) lam[k] = n > 1 ? pow(kappa, -(double)k / (n - 1)) : 1.0;
    spectral(A, n, lam);
    free(lam);
}

static double max_abs(const double *a, size_t m) {
    double r = 0;
    for (size_t i = 0; i < m; i++) r = fmax(r, fabs(a[i]));
    return r;
}

static bool lower_is(const double *A, const double *B, int n) { /* strictly lower triangles bitwise equal */
    for (int i = 0; i < n; i++)
        if (memcmp(A + (size_t)i * n, B + (size_t)i * n, sizeof *A * (size_t)i)) return false;
    return true;
}

static void set_force_ref(bool on) {
    if (on) setenv("LB_FORCE_REF", "1", 1);
    else unsetenv("LB_FORCE_REF");
}

/* (a) (b) (c) */
static void test_agreement(lb_pool *pools[4]) {
    const int sizes[] = {1, 2, 5, 63, 64, 65, 127, 130, 200, 257};
    const double kappas[] = {1e2, 1e6, 1e10};
    double worst = 0; /* largest error / (n eps kappa) seen */
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
        for (size_t ki = 0; ki < sizeof kappas / sizeof *kappas; ki++) {
            const int n = sizes[si];
            const size_t nn = (size_t)n * n;
            const double bound = TOL_C * n * DBL_EPSILON * kappas[ki];
            double *A = malloc(sizeof *A * nn), *R = malloc(sizeof *A * nn), *B = malloc(sizeof *A * nn);
            double *C = malloc(sizeof *A * nn), *work = malloc(sizeof *A * (size_t)n);
            spd(A, n, kappas[ki]);
            memcpy(R, A, sizeof *A * nn);
            REQUIRE(lb_chol_inv_upper_ref(R, n, work), "reference failed, n %d kappa %g", n, kappas[ki]);
            const double scale = max_abs(R, nn);
            memcpy(B, A, sizeof *A * nn);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < i; j++) B[(size_t)i * n + j] = NAN;
            CHECK(lb_chol_inv_upper(B, n, work), "blocked failed, n %d kappa %g", n, kappas[ki]);
            double err = 0;
            for (size_t i = 0; i < nn; i++) err = fmax(err, fabs(B[i] - R[i]));
            err /= scale;
            worst = fmax(worst, err / (n * DBL_EPSILON * kappas[ki]));
            CHECK(err <= bound, "n %d kappa %g: blocked vs reference %g > %g", n, kappas[ki], err, bound);
            bool lower_zero = true;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < i; j++) lower_zero &= B[(size_t)i * n + j] == 0.0;
            CHECK(lower_zero, "n %d: strictly lower triangle not zeroed", n);
            for (int p = 0; p < 4; p++) {
                memcpy(C, A, sizeof *A * nn);
                CHECK(lb_chol_inv_upper_pool(pools[p], C, n, work), "pool %d failed", p + 1);
                CHECK(!memcmp(C, B, sizeof *A * nn), "n %d: pool of %d threads differs from one thread", n, p + 1);
            }
            set_force_ref(true);
            memcpy(C, A, sizeof *A * nn);
            CHECK(lb_chol_inv_upper_pool(pools[1], C, n, work), "portable kernels failed");
            set_force_ref(false);
            double e2 = 0;
            for (size_t i = 0; i < nn; i++) e2 = fmax(e2, fabs(C[i] - R[i]));
            CHECK(e2 / scale <= bound, "n %d kappa %g: portable kernels vs reference %g > %g", n, kappas[ki], e2 / scale,
                  bound);
            free(A), free(R), free(B), free(C), free(work);
        }
    printf("largest difference to the reference: %.3g * n * eps * kappa (bound %.1f)\n", worst, TOL_C);
}

/* (d): the routine under test and the reference on the same matrix; both fail, lower triangle kept. */
static void check_fails(const double *A, int n, lb_pool *pool, const char *what) {
    const size_t nn = (size_t)n * n;
    double *R = malloc(sizeof *R * nn), *B = malloc(sizeof *B * nn), *work = malloc(sizeof *R * (size_t)n);
    memcpy(R, A, sizeof *R * nn);
    memcpy(B, A, sizeof *R * nn);
    CHECK(!lb_chol_inv_upper_ref(R, n, work), "%s: the reference accepted it", what);
    CHECK(!lb_chol_inv_upper_pool(pool, B, n, work), "%s: the blocked routine accepted it", what);
    CHECK(lower_is(B, A, n), "%s: the lower triangle changed on failure", what);
    free(R), free(B), free(work);
}

static void test_failures(lb_pool *pool) {
    const int sizes[] = {5, 65, 200};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const int n = sizes[si];
        double *A = malloc(sizeof *A * (size_t)n * n), *lam = malloc(sizeof *lam * (size_t)n);
        for (int k = 0; k < n; k++) lam[k] = 1.0 + k;
        lam[n / 2] = -0.5;
        spectral(A, n, lam);
        check_fails(A, n, pool, "indefinite");
        for (int k = 0; k < n; k++) lam[k] = k < n / 3 ? 0.0 : 1.0 + k;
        spectral(A, n, lam);
        check_fails(A, n, pool, "rank deficient");
        spd(A, n, 10);
        A[(size_t)(n - 1) * n + n - 1] = -1; /* the first pivot taken */
        check_fails(A, n, pool, "bad last diagonal entry");
        spd(A, n, 10);
        A[0] = -1; /* the last pivot taken */
        check_fails(A, n, pool, "bad first diagonal entry");
        if (n > 1) {
            spd(A, n, 10);
            A[1] = NAN; /* A[0][1] */
            check_fails(A, n, pool, "NaN");
        }
        free(A), free(lam);
    }
}

static int bench(int n, int threads) {
    const size_t nn = (size_t)n * n;
    double *A = malloc(sizeof *A * nn), *B = malloc(sizeof *A * nn), *work = malloc(sizeof *A * (size_t)n);
    for (int i = 0; i < n; i++) /* Kac-Murdock-Szego plus a shift: SPD, cheap to build */
        for (int j = 0; j < n; j++) A[(size_t)i * n + j] = pow(0.7, abs(i - j)) + (i == j) * 0.01;
    lb_pool *pool = lb_pool_new(threads);
    memcpy(B, A, sizeof *A * nn);
    double t = lb_time_sec();
    bool ok = lb_chol_inv_upper_ref(B, n, work);
    const double t_ref = lb_time_sec() - t;
    memcpy(B, A, sizeof *A * nn);
    t = lb_time_sec();
    ok &= lb_chol_inv_upper(B, n, work);
    const double t_blk = lb_time_sec() - t;
    memcpy(B, A, sizeof *A * nn);
    t = lb_time_sec();
    ok &= lb_chol_inv_upper_pool(pool, B, n, work);
    const double t_pool = lb_time_sec() - t;
    printf("n %d: reference %.3f s, blocked %.3f s (x%.1f), blocked on %d threads %.3f s (x%.1f)%s\n", n, t_ref,
           t_blk, t_ref / t_blk, threads, t_pool, t_ref / t_pool, ok ? "" : " FAILED");
    lb_pool_free(pool);
    free(A), free(B), free(work);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "bench")) return bench(atoi(argv[2]), argc > 3 ? atoi(argv[3]) : 2);
    lb_pool *pools[4];
    for (int p = 0; p < 4; p++) REQUIRE((pools[p] = lb_pool_new(p + 1)), "pool");
    set_force_ref(false);
    test_agreement(pools);
    test_failures(pools[2]);
    for (int p = 0; p < 4; p++) lb_pool_free(pools[p]);
    TEST_DONE();
}
