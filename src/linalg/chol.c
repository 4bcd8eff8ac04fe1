/*
 * chol.c - Cholesky factorization (lower, A = L L^T, Cholesky-Crout by rows), the inverse through it, and
 * the upper Cholesky factor of the inverse computed without forming the inverse.
 *
 * Source: textbook dense linear algebra (Golub & Van Loan, Matrix Computations, 4.2 and 3.1). For the
 * factor of the inverse: if A = R R^T with R upper triangular (the Cholesky factorization taken from the
 * last row up), then A^-1 = R^-T R^-1, so U = R^-1 is upper triangular with a positive diagonal and
 * U^T U = A^-1; by uniqueness it is the upper Cholesky factor of A^-1, the "Hinv" of GPTQ (Frantar et al.,
 * 2022, section 3, step 3), obtained here from one factorization and one triangular inverse. All inner
 * loops run along rows, so memory is read contiguously.
 */
#include "linalg.h"

#include <math.h>
#include <string.h>

/* Four interleaved partial sums (a fixed order, so still deterministic) keep the adds off one latency
 * chain and let the compiler vectorize. */
static double dot(const double *a, const double *b, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
    for (; k < n; k++) s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

bool lb_chol(double *A, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double *Li = A + i * n;
        for (int64_t j = 0; j < i; j++) {
            const double *Lj = A + j * n;
            Li[j] = (Li[j] - dot(Li, Lj, j)) / Lj[j];
        }
        const double s = Li[i] - dot(Li, Li, i);
        if (!lb_chol_pivot_ok(s, Li[i])) return false;
        Li[i] = sqrt(s);
    }
    return true;
}

/* Invert the lower triangular L (in the lower triangle of A) in place, row by row, columns ascending:
 * X[i][j] = -(sum_{k=j..i-1} L[i][k] X[k][j]) / L[i][i] only reads L[i][k] for k >= j, still intact. */
static void tri_inv_lower(double *A, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double *Ai = A + i * n;
        const double lii = Ai[i];
        for (int64_t j = 0; j < i; j++) {
            double s = 0;
            for (int64_t k = j; k < i; k++) s += Ai[k] * A[k * n + j];
            Ai[j] = -s / lii;
        }
        Ai[i] = 1.0 / lii;
    }
}

bool lb_chol_inverse(double *A, int64_t n) {
    if (!lb_chol(A, n)) return false;
    tri_inv_lower(A, n);
    /* A^-1 = X^T X with X = L^-1 lower: M[i][j] = sum_{k >= j} X[k][i] X[k][j] for i <= j. Off-diagonal
     * results go to the free upper triangle; M[i][i] replaces X[i][i] once no later entry needs it. */
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = i + 1; j < n; j++) {
            double s = 0;
            for (int64_t k = j; k < n; k++) s += A[k * n + i] * A[k * n + j];
            A[i * n + j] = s;
        }
        double s = 0;
        for (int64_t k = i; k < n; k++) s += A[k * n + i] * A[k * n + i];
        A[i * n + i] = s;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++) A[i * n + j] = A[j * n + i];
    return true;
}

/* A = R R^T, R upper, from the last column to the first, in the upper triangle of A:
 * R[j][j] = sqrt(A[j][j] - sum_{k>j} R[j][k]^2), R[i][j] = (A[i][j] - sum_{k>j} R[i][k] R[j][k]) / R[j][j]. */
static bool chol_upper_rev(double *A, int64_t n) {
    for (int64_t j = n - 1; j >= 0; j--) {
        double *Rj = A + j * n;
        const double s = Rj[j] - dot(Rj + j + 1, Rj + j + 1, n - j - 1);
        if (!lb_chol_pivot_ok(s, Rj[j])) return false;
        const double rjj = sqrt(s);
        Rj[j] = rjj;
        for (int64_t i = 0; i < j; i++) {
            double *Ri = A + i * n;
            Ri[j] = (Ri[j] - dot(Ri + j + 1, Rj + j + 1, n - j - 1)) / rjj;
        }
    }
    return true;
}

/* Invert the upper triangular R in place, from the last row up: row i of U = R^-1 is
 * U[i][i] = 1/R[i][i], U[i][j] = -(sum_{k=i+1..j} R[i][k] U[k][j]) / R[i][i], accumulated as row axpys
 * into work so that row i of R stays readable while it is replaced. */
static void tri_inv_upper(double *A, int64_t n, double *work) {
    for (int64_t i = n - 1; i >= 0; i--) {
        double *Ri = A + i * n;
        memset(work + i, 0, (size_t)(n - i) * sizeof *work);
        for (int64_t k = i + 1; k < n; k++) {
            const double r = Ri[k];
            const double *Uk = A + k * n;
            for (int64_t j = k; j < n; j++) work[j] += r * Uk[j];
        }
        const double rii = Ri[i];
        for (int64_t j = i + 1; j < n; j++) Ri[j] = -work[j] / rii;
        Ri[i] = 1.0 / rii;
    }
}

bool lb_chol_inv_upper_ref(double *A, int64_t n, double *work) {
    if (!chol_upper_rev(A, n)) return false;
    tri_inv_upper(A, n, work);
    for (int64_t i = 1; i < n; i++) memset(A + i * n, 0, (size_t)i * sizeof *A);
    return true;
}
