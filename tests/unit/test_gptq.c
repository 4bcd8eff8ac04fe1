/*
 * test_gptq.c - GPTQ onto ggml block formats and what it rests on:
 *   (a) element grids (quant/grid.h) bit-exact against the reference dequantizers, every type, element
 *       and code, on random blocks, and the same within each run of lb_grid_run elements; lb_grid_nearest
 *       against brute force;
 *   (b) Cholesky, inverse and upper factor of the inverse against slow direct math (Gauss-Jordan);
 *   (c) lb_gptq_quantize equals a plain column-by-column GPTQ written here (no lazy batches, no tiles),
 *       byte for byte, for q4_0, q8_0 and q4_K;
 *   (d) GPTQ's proxy error tr((W-Q) H (W-Q)^T) is below the encoder's own output (RTN with the same
 *       importance weights) for every type; (f) likewise with act-order;
 *   (e) 1 and 3 threads, and the scalar reference kernels (LB_FORCE_REF=1), give identical bytes;
 *   (g) a singular or indefinite H raises the damping and still succeeds; bad inputs give clear errors;
 *   (h) lb_gptq_ref_target satisfies the normal equations of the objective it states, lowers that objective
 *       against random perturbations, leaves W alone when the two streams agree, is thread-count
 *       independent, and declines an H without energy;
 *   (i) the table of operations (lb_gptq_ops) with a device-like implementation written here (its own copy
 *       of the weights, double sums, only the next batch handed back and the rest poisoned): the error
 *       within 1 % of the CPU table's, the calls in the documented order; a table that cannot reserve gives
 *       the CPU's bytes with a note; a device error mid-sweep is returned; the reference target through it
 *       equals the CPU's to float rounding; with the table's own block encoder (encode, here the CPU's
 *       encoders block by block) the same bytes as without it, called once per later pass (and for
 *       act-order's first) and once per batch of one block column.
 * Also prints the time of a 1536 x 512 q4_K layer.
 */
#include "algo/encoders.h"
#include "algo/gptq.h"
#include "linalg/linalg.h"
#include "quant/blocks.h"
#include "quant/cpu/cpu.h"
#include "quant/grid.h"
#include "quant/quant.h"
#include "test.h"
#include "gptq_test.h"

#include <math.h>
#include <stddef.h>

static const lb_type TYPES[] = {LB_TYPE_Q4_0, LB_TYPE_Q4_1, LB_TYPE_Q5_0, LB_TYPE_Q5_1, LB_TYPE_Q8_0, LB_TYPE_Q2_K,
                                LB_TYPE_Q3_K, LB_TYPE_Q4_K, LB_TYPE_Q5_K, LB_TYPE_Q6_K, LB_TYPE_IQ4_NL, LB_TYPE_IQ4_XS};
#define N_TYPES (int)(sizeof TYPES / sizeof TYPES[0])

/* ---- random numbers ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }
static double gauss(void) {
    double u = unif(), v = unif();
    return sqrt(-2 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- (a) grids ---- */

/* Offsets of the fp16 scale fields (d, and the second one, m / dmin, or -1). */
static void scale_fields(lb_type t, int *od, int *om) {
    *om = -1;
    switch (t) {
    case LB_TYPE_Q4_1: *od = 0; *om = 2; break;
    case LB_TYPE_Q5_1: *od = 0; *om = 2; break;
    case LB_TYPE_Q2_K: *od = offsetof(block_q2_K, d); *om = offsetof(block_q2_K, dmin); break;
    case LB_TYPE_Q3_K: *od = offsetof(block_q3_K, d); break;
    case LB_TYPE_Q4_K: case LB_TYPE_Q5_K: *od = 0; *om = 2; break;
    case LB_TYPE_Q6_K: *od = offsetof(block_q6_K, d); break;
    default: *od = 0; break;
    }
}

static uint16_t rand_half(int i) {
    if (i == 0) return lb_f32_to_fp16(0.0f);
    if (i == 1) return lb_f32_to_fp16(-0.0f);
    const float v = (float)exp(unif() * 8 - 6);
    return lb_f32_to_fp16(rnd() & 1 ? -v : v);
}

static void random_block(lb_type t, uint8_t *b, size_t bb, int i) {
    int od, om;
    for (size_t k = 0; k < bb; k++) b[k] = (uint8_t)rnd();
    scale_fields(t, &od, &om);
    uint16_t h = rand_half(i);
    memcpy(b + od, &h, 2);
    if (om >= 0) {
        h = rand_half(i == 2 ? 0 : 3);
        memcpy(b + om, &h, 2);
    }
}

/* Brute-force nearest with the documented tie rules. */
static int brute_nearest(const lb_grid *g, float w) {
    if (g->a == 0 && !g->codebook) return g->qmin > 0 ? g->qmin : g->qmax < 0 ? g->qmax : 0;
    int best = g->qmin;
    double bd = INFINITY;
    for (int q = g->qmin; q <= g->qmax; q++) {
        const double d = fabs((double)w - (double)lb_grid_value(g, q));
        if (d < bd) {
            bd = d;
            best = q;
        }
    }
    return best;
}

/* Every code q of element j: set, dequantize, compare with value(q); the rest of the block unchanged. */
static int check_element(lb_type t, const uint8_t *blk, int j, const float *y0, uint8_t *tmp, float *y) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    const int be = (int)tt->block_elems;
    lb_grid g, g2;
    lb_grid_get(t, blk, j, &g);
    int bad = 0;
    for (int q = g.qmin; q <= g.qmax; q++) {
        memcpy(tmp, blk, tt->block_bytes);
        lb_grid_set(t, tmp, j, q);
        tt->to_float(tmp, y, be);
        const float v = lb_grid_value(&g, q);
        if (fbits(y[j]) != fbits(v)) bad++;
        for (int k = 0; k < be; k++)
            if (k != j && fbits(y[k]) != fbits(y0[k])) bad++;
        lb_grid_get(t, tmp, j, &g2);
        if (fbits(g2.a) != fbits(g.a) || fbits(g2.b) != fbits(g.b)) bad++;
        if (g.a != 0 && lb_grid_nearest(&g, v) != q) bad++;
    }
    for (int i = 0; i < 8; i++) {
        const float w = (float)(gauss() * 40 * fabsf(g.a) + g.b);
        if (lb_grid_nearest(&g, w) != brute_nearest(&g, w)) bad++;
    }
    return bad;
}

static void test_grids(void) {
    static const int levels[N_TYPES] = {16, 16, 32, 32, 255, 4, 8, 16, 32, 64, 16, 16};
    uint8_t blk[256], tmp[256];
    float y0[256], y[256];
    for (int ti = 0; ti < N_TYPES; ti++) {
        const lb_type t = TYPES[ti];
        const lb_type_traits *tt = lb_type_traits_get(t);
        int bad = 0, nlev = 0;
        for (int i = 0; i < 10; i++) {
            random_block(t, blk, tt->block_bytes, i);
            tt->to_float(blk, y0, tt->block_elems);
            const int run = lb_grid_run(t);
            for (int j = 0; j < tt->block_elems; j++) {
                lb_grid g, g0;
                lb_grid_get(t, blk, j, &g);
                lb_grid_get(t, blk, j - j % run, &g0); /* the grid of the run's first element */
                if (fbits(g.a) != fbits(g0.a) || fbits(g.b) != fbits(g0.b) || g.qmin != g0.qmin || g.qmax != g0.qmax ||
                    g.codebook != g0.codebook)
                    bad++;
                nlev = g.qmax - g.qmin + 1;
                bad += check_element(t, blk, j, y0, tmp, y);
            }
        }
        CHECK(bad == 0, "%s: %d mismatches against the reference dequantizer or within a run", tt->name, bad);
        CHECK(lb_grid_run(t) >= 16 && tt->block_elems % lb_grid_run(t) == 0, "%s: run %d", tt->name, lb_grid_run(t));
        CHECK(nlev == levels[ti], "%s: %d levels", tt->name, nlev);
    }
    CHECK(!lb_grid_supported(LB_TYPE_F16) && !lb_grid_supported(LB_TYPE_Q8_K), "float and activation types");
}

/* Every sub-block parameter of random blocks: set to values across its range, read back; the reference
 * dequantizer then changes only that sub-block's elements, whose grids become a = d * v (a scale) or
 * b = -(dmin * v) (a min) with d / dmin the block's fp16 fields, the other parameters unchanged. */
static void test_grid_params(void) {
    static const int expect[N_TYPES] = {0, 0, 0, 0, 0, 32, 16, 16, 16, 16, 0, 8};
    uint8_t blk[256], tmp[256];
    float y0[256], y[256];
    for (int ti = 0; ti < N_TYPES; ti++) {
        const lb_type t = TYPES[ti];
        const lb_type_traits *tt = lb_type_traits_get(t);
        const int np = lb_grid_n_params(t), be = (int)tt->block_elems;
        CHECK(np == expect[ti], "%s: %d parameters", tt->name, np);
        int od, om, bad = 0;
        scale_fields(t, &od, &om);
        for (int i = 3; i < 8; i++) {
            random_block(t, blk, tt->block_bytes, i);
            tt->to_float(blk, y0, be);
            uint16_t hd, hm = 0;
            memcpy(&hd, blk + od, 2);
            if (om >= 0) memcpy(&hm, blk + om, 2);
            const float d = lb_fp16_to_f32(hd), dm = lb_fp16_to_f32(hm);
            for (int p = 0; p < np; p++) {
                lb_grid_param pi;
                lb_grid_param_info(t, p, &pi);
                if (pi.first < 0 || pi.n < 1 || pi.first + pi.n > be || pi.lo > pi.hi) bad++;
                /* a parameter moves one run of elements that share a grid (what GPTQ's scale steps assume) */
                if (pi.n != lb_grid_run(t) || pi.first % pi.n != 0 || pi.n > 32) bad++;
                /* a min: the parameters of the second half of q2_K / q4_K / q5_K */
                const bool is_min = om >= 0 && p >= np / 2;
                for (int v = pi.lo; v <= pi.hi; v += pi.hi - pi.lo > 20 ? 7 : 1) {
                    memcpy(tmp, blk, tt->block_bytes);
                    lb_grid_param_set(t, tmp, p, v);
                    if (lb_grid_param_get(t, tmp, p) != v) bad++;
                    for (int p2 = 0; p2 < np; p2++)
                        if (p2 != p && lb_grid_param_get(t, tmp, p2) != lb_grid_param_get(t, blk, p2)) bad++;
                    tt->to_float(tmp, y, be);
                    for (int k = 0; k < be; k++) {
                        const bool inside = k >= pi.first && k < pi.first + pi.n;
                        lb_grid g;
                        lb_grid_get(t, tmp, k, &g);
                        if (!inside && fbits(y[k]) != fbits(y0[k])) bad++;
                        if (inside && !is_min && fbits(g.a) != fbits(d * (float)v)) bad++;
                        if (inside && is_min && fbits(g.b) != fbits(-(dm * (float)v))) bad++;
                    }
                }
            }
        }
        CHECK(bad == 0, "%s: %d parameter mismatches", tt->name, bad);
    }
}

/* ---- (b) dense algebra ---- */

/* Inverse by Gauss-Jordan with partial pivoting (false when singular). */
static bool gj_inverse(const double *A, int n, double *X) {
    double *M = malloc(sizeof *M * (size_t)(n * 2 * n));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 2 * n; j++) M[i * 2 * n + j] = j < n ? A[i * n + j] : (j - n == i);
    bool ok = true;
    for (int c = 0; c < n && ok; c++) {
        int p = c;
        for (int i = c + 1; i < n; i++)
            if (fabs(M[i * 2 * n + c]) > fabs(M[p * 2 * n + c])) p = i;
        if (M[p * 2 * n + c] == 0) ok = false;
        for (int j = 0; ok && j < 2 * n; j++) {
            const double s = M[c * 2 * n + j];
            M[c * 2 * n + j] = M[p * 2 * n + j];
            M[p * 2 * n + j] = s;
        }
        const double piv = M[c * 2 * n + c];
        for (int j = 0; ok && j < 2 * n; j++) M[c * 2 * n + j] /= piv;
        for (int i = 0; ok && i < n; i++) {
            const double f = M[i * 2 * n + c];
            if (i == c || f == 0) continue;
            for (int j = 0; j < 2 * n; j++) M[i * 2 * n + j] -= f * M[c * 2 * n + j];
        }
    }
    for (int i = 0; i < n; i++) memcpy(X + i * n, M + i * 2 * n + n, sizeof *X * (size_t)n);
    free(M);
    return ok;
}

/* Upper U with U^T U = M (Cholesky-Banachiewicz on the upper side). */
static void slow_upper_chol(const double *M, int n, double *U) {
    memset(U, 0, sizeof *U * (size_t)(n * n));
    for (int i = 0; i < n; i++) {
        double s = M[i * n + i];
        for (int k = 0; k < i; k++) s -= U[k * n + i] * U[k * n + i];
        U[i * n + i] = sqrt(s);
        for (int j = i + 1; j < n; j++) {
            double t = M[i * n + j];
            for (int k = 0; k < i; k++) t -= U[k * n + i] * U[k * n + j];
            U[i * n + j] = t / U[i * n + i];
        }
    }
}

static double max_rel_diff(const double *a, const double *b, int n) {
    double m = 0, d = 0;
    for (int i = 0; i < n; i++) {
        m = fmax(m, fabs(b[i]));
        d = fmax(d, fabs(a[i] - b[i]));
    }
    return d / m;
}

/* A = B^T B / rb + shift I for a random (rb, n) B. */
static void random_gram(double *A, int n, int rb, double shift) {
    double *B = malloc(sizeof *B * (size_t)(rb * n));
    for (int i = 0; i < rb * n; i++) B[i] = gauss();
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < rb; k++) s += B[k * n + i] * B[k * n + j];
            A[i * n + j] = s / rb + (i == j) * shift;
        }
    free(B);
}

static void test_linalg(void) {
    enum { N = 41 };
    static double A[N * N], C[N * N], X[N * N], U[N * N], P[N * N], work[N];
    random_gram(A, N, 60, 0.1);
    /* L L^T = A, strictly upper untouched */
    memcpy(C, A, sizeof A);
    CHECK(lb_chol(C, N), "chol of an SPD matrix");
    bool upper_kept = true;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k <= (i < j ? i : j); k++) s += C[i * N + k] * C[j * N + k];
            P[i * N + j] = s;
            if (j > i && C[i * N + j] != A[i * N + j]) upper_kept = false;
        }
    CHECK(max_rel_diff(P, A, N * N) < 1e-13, "L L^T vs A: %g", max_rel_diff(P, A, N * N));
    CHECK(upper_kept, "lb_chol wrote the strictly upper triangle");
    /* inverse */
    CHECK(gj_inverse(A, N, X), "Gauss-Jordan");
    memcpy(C, A, sizeof A);
    CHECK(lb_chol_inverse(C, N), "chol inverse");
    CHECK(max_rel_diff(C, X, N * N) < 1e-10, "inverse vs Gauss-Jordan: %g", max_rel_diff(C, X, N * N));
    /* upper factor of the inverse */
    slow_upper_chol(X, N, U);
    memcpy(C, A, sizeof A);
    CHECK(lb_chol_inv_upper(C, N, work), "chol inv upper");
    CHECK(max_rel_diff(C, U, N * N) < 1e-10, "U vs chol(inv(A)): %g", max_rel_diff(C, U, N * N));
    /* not positive definite: indefinite and singular; the strictly lower triangle survives the failure */
    memcpy(C, A, sizeof A);
    C[7 * N + 7] = -1;
    CHECK(!lb_chol(C, N), "chol of an indefinite matrix");
    random_gram(A, N, 20, 0.0); /* rank 20 */
    memcpy(C, A, sizeof A);
    CHECK(!lb_chol(C, N), "chol of a singular matrix");
    memcpy(C, A, sizeof A);
    CHECK(!lb_chol_inverse(C, N), "inverse of a singular matrix");
    memcpy(C, A, sizeof A);
    CHECK(!lb_chol_inv_upper(C, N, work), "inv upper of a singular matrix");
    bool lower_kept = true;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < i; j++) lower_kept &= C[i * N + j] == A[i * N + j];
    CHECK(lower_kept, "lb_chol_inv_upper touched the lower triangle on failure");
}

/* ---- layers ---- */

/* W (rows, cols) ~ N(0, 0.02^2) with a few outliers; H = X^T X for ntok tokens whose columns are
 * correlated (shared latent factors plus a smoothed per-column signal) and scaled per column. */
static void make_layer(int64_t rows, int64_t cols, int64_t ntok, bool vary_scale, float *W, double *H) {
    enum { NF = 6 };
    double *X = malloc(sizeof *X * (size_t)(ntok * cols)), *A = malloc(sizeof *A * (size_t)(NF * cols));
    double *sc = malloc(sizeof *sc * (size_t)cols);
    for (int64_t i = 0; i < rows * cols; i++) W[i] = (float)(0.02 * gauss() * (unif() < 0.01 ? 6 : 1));
    for (int64_t i = 0; i < NF * cols; i++) A[i] = gauss();
    for (int64_t c = 0; c < cols; c++) sc[c] = vary_scale ? exp(0.7 * gauss()) : 1;
    for (int64_t t = 0; t < ntok; t++) {
        double z[NF], prev = 0;
        for (int f = 0; f < NF; f++) z[f] = gauss();
        for (int64_t c = 0; c < cols; c++) {
            double v = 0;
            for (int f = 0; f < NF; f++) v += z[f] * A[f * cols + c];
            prev = 0.8 * prev + 0.6 * gauss();
            X[t * cols + c] = sc[c] * (0.5 * v + prev);
        }
    }
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t t = 0; t < ntok; t++) s += X[t * cols + i] * X[t * cols + j];
            H[i * cols + j] = H[j * cols + i] = s;
        }
    free(X);
    free(A);
    free(sc);
}

/* ---- (c) plain GPTQ, one column at a time ---- */

static void slow_gptq(float *W, int64_t rows, int64_t n, const double *H0, lb_type t, lb_encoder enc, uint8_t *out) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    const int64_t be = tt->block_elems;
    const size_t rb = lb_type_row_size(t, n);
    const lb_quantize_fn q_enc = lb_encoder_get(t, enc);
    double *Hd = malloc(sizeof *Hd * (size_t)(n * n)), *work = malloc(sizeof *work * (size_t)n), mean = 0;
    float *U = malloc(sizeof *U * (size_t)(n * n)), *imp = malloc(sizeof *imp * (size_t)n);
    memcpy(Hd, H0, sizeof *Hd * (size_t)(n * n));
    for (int64_t j = 0; j < n; j++) {
        imp[j] = (float)H0[j * n + j];
        mean += H0[j * n + j];
    }
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++) Hd[j * n + j] = H0[j * n + j] + 0.01 * mean;
    REQUIRE(lb_chol_inv_upper(Hd, n, work), "slow gptq: H not PD");
    for (int64_t i = 0; i < n * n; i++) U[i] = (float)Hd[i];
    for (int64_t j = 0; j < n; j++)
        for (int64_t r = 0; r < rows; r++) {
            float *w = W + r * n;
            uint8_t *blk = out + r * rb + (j / be) * tt->block_bytes;
            if (j % be == 0) q_enc(w + j, blk, 1, be, imp + j);
            lb_grid g;
            lb_grid_get(t, blk, (int)(j % be), &g);
            const int q = lb_grid_nearest(&g, w[j]);
            lb_grid_set(t, blk, (int)(j % be), q);
            const float err = (w[j] - lb_grid_value(&g, q)) / U[j * n + j];
            for (int64_t c = j + 1; c < n; c++) w[c] = w[c] - err * U[j * n + c];
        }
    for (int64_t r = 0; r < rows; r++) tt->to_float(out + r * rb, W + r * n, n);
    free(Hd);
    free(work);
    free(U);
    free(imp);
}

typedef struct layer {
    int64_t rows, cols;
    float *W0, *W;
    double *H0, *H;
    uint8_t *out;
} layer;

static layer layer_new(int64_t rows, int64_t cols, int64_t ntok, bool vary_scale) {
    layer L = {rows, cols, malloc(sizeof(float) * (size_t)(rows * cols)), malloc(sizeof(float) * (size_t)(rows * cols)),
               malloc(sizeof(double) * (size_t)(cols * cols)), malloc(sizeof(double) * (size_t)(cols * cols)),
               malloc(lb_type_row_size(LB_TYPE_Q8_0, cols) * (size_t)rows)}; /* q8_0: the widest row here */
    make_layer(rows, cols, ntok, vary_scale, L.W0, L.H0);
    return L;
}

static void layer_free(layer *L) {
    free(L->W0);
    free(L->W);
    free(L->H0);
    free(L->H);
    free(L->out);
}

/* Fresh copies of W and H, then GPTQ. */
static lb_status run_gptq(layer *L, lb_pool *pool, lb_type t, const lb_gptq_params *p, lb_gptq_stats *st, lb_error *e) {
    memcpy(L->W, L->W0, sizeof(float) * (size_t)(L->rows * L->cols));
    memcpy(L->H, L->H0, sizeof(double) * (size_t)(L->cols * L->cols));
    return lb_gptq_quantize(pool, L->W, L->rows, L->cols, L->H, t, LB_ENCODER_DEFAULT, p, L->out, st, e);
}

static void test_equivalence(void) {
    const lb_type types[] = {LB_TYPE_Q4_0, LB_TYPE_Q8_0, LB_TYPE_Q4_K};
    for (int i = 0; i < 3; i++) {
        const int64_t rows = 64, cols = types[i] == LB_TYPE_Q4_K ? 256 : 128;
        layer L = layer_new(rows, cols, 2 * cols, true);
        const size_t nb = lb_type_row_size(types[i], cols) * (size_t)rows;
        uint8_t *ref = malloc(nb);
        float *Wref = malloc(sizeof(float) * (size_t)(rows * cols));
        memcpy(Wref, L.W0, sizeof(float) * (size_t)(rows * cols));
        slow_gptq(Wref, rows, cols, L.H0, types[i], LB_ENCODER_DEFAULT, ref);
        lb_error e;
        lb_gptq_params p;
        lb_gptq_params_default(&p);
        p.block_cols = 48; /* several batches, not a multiple of the block size */
        CHECK(run_gptq(&L, NULL, types[i], &p, NULL, &e) == LB_OK, "%s", e.msg);
        CHECK(memcmp(L.out, ref, nb) == 0, "%s: GPTQ differs from the column-by-column version", lb_type_name(types[i]));
        CHECK(memcmp(L.W, Wref, sizeof(float) * (size_t)(rows * cols)) == 0, "%s: dequantized W differs",
              lb_type_name(types[i]));
        free(ref);
        free(Wref);
        layer_free(&L);
    }
}

/* ---- (h) refinement: passes and coordinate descent ---- */

/* One static sweep of column-by-column GPTQ with every block's scales encoded from S, as the definition
 * of a later pass (S NULL: the blocks in out keep the scales they have): the values before rounding into
 * P, the per-row loss sum d^2 / U_jj^2 / 2 into loss. */
static void slow_static_sweep(const float *W0, const float *S, float *P, int64_t rows, int64_t n, const float *U,
                              const float *imp, lb_type t, uint8_t *out, double *loss) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    const int64_t be = tt->block_elems;
    const size_t rb = lb_type_row_size(t, n);
    float *w = malloc(sizeof *w * (size_t)n);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t b = 0; S && b < n / be; b++)
            lb_encoder_get(t, LB_ENCODER_DEFAULT)(S + r * n + b * be, out + r * rb + b * tt->block_bytes, 1, be, imp + b * be);
        memcpy(w, W0 + r * n, sizeof *w * (size_t)n);
        loss[r] = 0;
        for (int64_t j = 0; j < n; j++) {
            uint8_t *blk = out + r * rb + (j / be) * tt->block_bytes;
            lb_grid g;
            lb_grid_get(t, blk, (int)(j % be), &g);
            P[r * n + j] = w[j];
            const int q = lb_grid_nearest(&g, w[j]);
            lb_grid_set(t, blk, (int)(j % be), q);
            const float d = w[j] - lb_grid_value(&g, q), err = d / U[j * n + j];
            loss[r] += (double)d * d / ((double)U[j * n + j] * U[j * n + j]) / 2;
            for (int64_t c = j + 1; c < n; c++) w[c] = w[c] - err * U[j * n + c];
        }
    }
    free(w);
}

/* e^T (H + lambda I) e of one row, in double */
static double row_err(const float *w, const float *q, int64_t n, const double *H, double lambda) {
    double tot = 0;
    for (int64_t i = 0; i < n; i++) {
        double s = lambda * ((double)w[i] - q[i]);
        for (int64_t j = 0; j < n; j++) s += H[i * n + j] * ((double)w[j] - q[j]);
        tot += ((double)w[i] - q[i]) * s;
    }
    return tot;
}

static void test_refinement(lb_pool *pool3) {
    const lb_type types[] = {LB_TYPE_Q4_0, LB_TYPE_Q2_K, LB_TYPE_Q3_K, LB_TYPE_Q4_K};
    for (int i = 0; i < 4; i++) {
        const lb_type t = types[i];
        const lb_type_traits *tt = lb_type_traits_get(t);
        const int64_t rows = 12, n = 256;
        const size_t rb = lb_type_row_size(t, n), nb = rb * (size_t)rows;
        layer L = layer_new(rows, n, 2 * n, true);
        lb_error e;
        lb_gptq_params p;
        lb_gptq_params_default(&p);
        lb_gptq_stats st;
        /* (1) passes: pass 1 is plain GPTQ; the result keeps, per row, the best of the passes, each later
         * pass being the static sweep defined above with scales from the previous pass's values */
        uint8_t *ref = malloc(nb), *cur = malloc(nb), *best = malloc(nb);
        float *P = malloc(sizeof(float) * (size_t)(rows * n)), *S = malloc(sizeof(float) * (size_t)(rows * n));
        float *U = malloc(sizeof(float) * (size_t)(n * n)), *imp = malloc(sizeof(float) * (size_t)n);
        double *Hd = malloc(sizeof(double) * (size_t)(n * n)), *work = malloc(sizeof(double) * (size_t)n), mean = 0;
        double loss[12], best_loss[12];
        memcpy(Hd, L.H0, sizeof(double) * (size_t)(n * n));
        for (int64_t j = 0; j < n; j++) mean += L.H0[j * n + j];
        mean /= (double)n;
        for (int64_t j = 0; j < n; j++) {
            imp[j] = (float)L.H0[j * n + j];
            Hd[j * n + j] += 0.01 * mean;
        }
        REQUIRE(lb_chol_inv_upper(Hd, n, work), "refinement: H not PD");
        for (int64_t k = 0; k < n * n; k++) U[k] = (float)Hd[k];
        memcpy(S, L.W0, sizeof(float) * (size_t)(rows * n));
        slow_gptq(S, rows, n, L.H0, t, LB_ENCODER_DEFAULT, best); /* pass 1 (S becomes its dequantization) */
        /* pass 1's values before rounding: its sweep replayed with its blocks fixed (its dynamic scales were
         * chosen from those same values, so the replay rounds to the same codes) */
        slow_static_sweep(L.W0, NULL, P, rows, n, U, imp, t, best, best_loss);
        memcpy(ref, best, nb);
        for (int pass = 1; pass < 3; pass++) {
            memcpy(S, P, sizeof(float) * (size_t)(rows * n));
            slow_static_sweep(L.W0, S, P, rows, n, U, imp, t, cur, loss);
            for (int64_t r = 0; r < rows; r++)
                if (loss[r] < best_loss[r]) {
                    best_loss[r] = loss[r];
                    memcpy(ref + r * rb, cur + r * rb, rb);
                }
        }
        p.passes = 3;
        CHECK(run_gptq(&L, NULL, t, &p, &st, &e) == LB_OK, "%s", e.msg);
        CHECK(memcmp(L.out, ref, nb) == 0, "%s: 3 passes differ from the definition", tt->name);
        double tot = 0;
        for (int64_t r = 0; r < rows; r++) tot += best_loss[r];
        CHECK(fabs(st.loss - tot) <= 1e-9 * tot, "%s: loss %g vs %g", tt->name, st.loss, tot);
        /* (2) coordinate descent: never raises any row's error, ends at a coordinate-wise minimum (no single
         * element can move to another value of its grid and lower the error), same for any thread count */
        float *Q0 = malloc(sizeof(float) * (size_t)(rows * n));
        memcpy(Q0, L.W, sizeof(float) * (size_t)(rows * n));
        p.cd_sweeps = 64; /* enough to converge on these rows */
        CHECK(run_gptq(&L, NULL, t, &p, &st, &e) == LB_OK, "%s", e.msg);
        memcpy(cur, L.out, nb);
        double improved = 0, before = 0;
        for (int64_t r = 0; r < rows; r++) {
            const double e0 = row_err(L.W0 + r * n, Q0 + r * n, n, L.H0, 0.01 * mean);
            const double e1 = row_err(L.W0 + r * n, L.W + r * n, n, L.H0, 0.01 * mean);
            CHECK(e1 <= e0 * (1 + 1e-6), "%s row %lld: cd raised the error %g -> %g", tt->name, (long long)r, e0, e1);
            before += e0;
            improved += e0 - e1;
            float *q = L.W + r * n;
            for (int64_t j = 0; j < n; j++) {
                lb_grid g;
                lb_grid_get(t, cur + r * rb + (j / tt->block_elems) * tt->block_bytes, (int)(j % tt->block_elems), &g);
                double he = 0;
                for (int64_t k = 0; k < n; k++) he += (L.H0[j * n + k] + (j == k ? 0.01 * mean : 0)) * ((double)L.W0[r * n + k] - q[k]);
                const double hjj = L.H0[j * n + j] + 0.01 * mean;
                for (int c = g.qmin; c <= g.qmax; c++) {
                    const double dl = (double)lb_grid_value(&g, c) - q[j]; /* e_j decreases by dl */
                    CHECK(-2 * dl * he + dl * dl * hjj >= -1e-4 * e1 / n, "%s row %lld col %lld: code %d lowers the error by %g",
                          tt->name, (long long)r, (long long)j, c, -2 * dl * he + dl * dl * hjj);
                }
            }
        }
        CHECK(run_gptq(&L, pool3, t, &p, NULL, &e) == LB_OK && memcmp(cur, L.out, nb) == 0, "%s: cd differs with 3 threads",
              tt->name);
        printf("%-5s 3 passes + cd: error %.2f %% below 3 passes\n", tt->name, 100 * improved / before);
        /* (3) coordinate descent with the sub-block scales: never raises any row's error against the passes,
         * ends where no single +-1 step of any scale / min (read back through the reference dequantizer)
         * lowers it, same for any thread count */
        p.cd_scales = true;
        CHECK(run_gptq(&L, NULL, t, &p, &st, &e) == LB_OK, "%s", e.msg);
        memcpy(cur, L.out, nb);
        double improved_s = 0;
        int steps = 0, lower = 0;
        float *y = malloc(sizeof(float) * (size_t)n);
        uint8_t *tmp = malloc(rb);
        for (int64_t r = 0; r < rows; r++) {
            const double e0 = row_err(L.W0 + r * n, Q0 + r * n, n, L.H0, 0.01 * mean);
            tt->to_float(cur + r * rb, y, n);
            const double e1 = row_err(L.W0 + r * n, y, n, L.H0, 0.01 * mean);
            CHECK(memcmp(y, L.W + r * n, sizeof(float) * (size_t)n) == 0, "%s row %lld: W is not the output", tt->name,
                  (long long)r);
            CHECK(e1 <= e0 * (1 + 1e-6), "%s row %lld: cd raised the error %g -> %g", tt->name, (long long)r, e0, e1);
            improved_s += e0 - e1;
            for (int64_t b = 0; b < n / tt->block_elems; b++)
                for (int pp = 0; pp < lb_grid_n_params(t); pp++) {
                    lb_grid_param pi;
                    lb_grid_param_info(t, pp, &pi);
                    uint8_t *blk = tmp + b * tt->block_bytes;
                    memcpy(tmp, cur + r * rb, rb);
                    const int v0 = lb_grid_param_get(t, blk, pp);
                    for (int v = v0 - 1; v <= v0 + 1; v += 2) {
                        if (v < pi.lo || v > pi.hi) continue;
                        lb_grid_param_set(t, blk, pp, v);
                        tt->to_float(tmp, y, n);
                        const double e2 = row_err(L.W0 + r * n, y, n, L.H0, 0.01 * mean);
                        steps++;
                        if (e2 < e1 - 1e-5 * e1) lower++;
                        lb_grid_param_set(t, blk, pp, v0);
                    }
                }
        }
        CHECK(lb_grid_n_params(t) == 0 || steps > 0, "%s: no parameter steps tried", tt->name);
        CHECK(lower == 0, "%s: %d of %d single scale steps lower the error", tt->name, lower, steps);
        CHECK(run_gptq(&L, pool3, t, &p, NULL, &e) == LB_OK && memcmp(cur, L.out, nb) == 0,
              "%s: cd with scales differs with 3 threads", tt->name);
        setenv("LB_FORCE_REF", "1", 1);
        CHECK(run_gptq(&L, pool3, t, &p, NULL, &e) == LB_OK && memcmp(cur, L.out, nb) == 0,
              "%s: cd with scales differs with the reference kernels", tt->name);
        unsetenv("LB_FORCE_REF");
        printf("%-5s 3 passes + cd with scales: error %.2f %% below 3 passes\n", tt->name, 100 * improved_s / before);
        free(y);
        free(tmp);
        p.cd_scales = false;
        free(Q0);
        free(ref), free(cur), free(best), free(P), free(S), free(U), free(imp), free(Hd), free(work);
        layer_free(&L);
    }
}

/* ---- (d, f) error against RTN; (e) threads ---- */

static void test_quality(lb_pool *pool3) {
    layer L = layer_new(48, 256, 512, true);
    const int64_t n = L.cols, rows = L.rows;
    float *Q = malloc(sizeof *Q * (size_t)(rows * n)), *imp = malloc(sizeof *imp * (size_t)n);
    for (int64_t j = 0; j < n; j++) imp[j] = (float)L.H0[j * n + j];
    uint8_t *out1 = malloc(lb_type_row_size(LB_TYPE_Q8_0, n) * (size_t)rows);
    for (int ti = 0; ti < N_TYPES; ti++) {
        const lb_type t = TYPES[ti];
        const size_t nb = lb_type_row_size(t, n) * (size_t)rows;
        lb_encoder_get(t, LB_ENCODER_DEFAULT)(L.W0, L.out, rows, n, imp);
        for (int64_t r = 0; r < rows; r++) lb_type_traits_get(t)->to_float(L.out + r * lb_type_row_size(t, n), Q + r * n, n);
        const double e_rtn = gptq_proxy(L.W0, Q, rows, n, L.H0);
        double e_g[2];
        for (int act = 0; act < 2; act++) {
            lb_gptq_params p;
            lb_gptq_params_default(&p);
            p.act_order = act;
            lb_error e;
            lb_gptq_stats st;
            CHECK(run_gptq(&L, NULL, t, &p, &st, &e) == LB_OK, "%s", e.msg);
            e_g[act] = gptq_proxy(L.W0, L.W, rows, n, L.H0);
            memcpy(out1, L.out, nb);
            CHECK(run_gptq(&L, pool3, t, &p, NULL, &e) == LB_OK, "%s", e.msg);
            CHECK(memcmp(out1, L.out, nb) == 0, "%s act_order %d: 1 and 3 threads differ", lb_type_name(t), act);
            setenv("LB_FORCE_REF", "1", 1);
            CHECK(run_gptq(&L, pool3, t, &p, NULL, &e) == LB_OK, "%s", e.msg);
            unsetenv("LB_FORCE_REF");
            CHECK(memcmp(out1, L.out, nb) == 0, "%s act_order %d: the reference kernels differ", lb_type_name(t), act);
            CHECK(st.damp_tries == 1 && st.damp == 0.01 && st.loss > 0, "%s: stats", lb_type_name(t));
        }
        CHECK(e_g[0] < e_rtn, "%s: GPTQ %g vs RTN %g", lb_type_name(t), e_g[0], e_rtn);
        CHECK(e_g[1] < e_rtn, "%s: GPTQ act-order %g vs RTN %g", lb_type_name(t), e_g[1], e_rtn);
        printf("%-7s proxy error / RTN: gptq %.3f  act-order %.3f\n", lb_type_name(t), e_g[0] / e_rtn, e_g[1] / e_rtn);
    }
    free(Q);
    free(imp);
    free(out1);
    layer_free(&L);
}

/* ---- (g) damping and errors ---- */

static void test_damping_and_errors(void) {
    layer L = layer_new(20, 256, 64, false); /* 64 tokens: H has rank 64 */
    const int64_t n = L.cols;
    lb_gptq_params p;
    lb_gptq_params_default(&p);
    lb_gptq_stats st;
    lb_error e;
    CHECK(run_gptq(&L, NULL, LB_TYPE_Q4_K, &p, &st, &e) == LB_OK && st.damp_tries == 1, "rank-deficient H, damp 0.01");
    p.damp = 0;
    CHECK(run_gptq(&L, NULL, LB_TYPE_Q4_K, &p, &st, &e) == LB_OK, "%s", e.msg);
    CHECK(st.damp_tries == 2 && st.damp == LB_GPTQ_DAMP_FLOOR, "singular H, damp 0: tries %d damp %g", st.damp_tries, st.damp);
    /* indefinite: lowest eigenvalue -0.05 mean(diag), so damp 0.01 fails and 0.1 succeeds */
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += L.H0[j * n + j] / (double)n;
    for (int64_t j = 0; j < n; j++) L.H0[j * n + j] -= 0.05 * mean;
    lb_gptq_params_default(&p);
    CHECK(run_gptq(&L, NULL, LB_TYPE_Q4_K, &p, &st, &e) == LB_OK, "%s", e.msg);
    CHECK(st.damp_tries == 2 && fabs(st.damp - 0.1) < 1e-12, "indefinite H: tries %d damp %g", st.damp_tries, st.damp);
    p.max_damp_tries = 1;
    CHECK(run_gptq(&L, NULL, LB_TYPE_Q4_K, &p, &st, &e) == LB_ERR_ARG && strstr(e.msg, "positive definite"), "%s", e.msg);
    /* dead column */
    for (int64_t j = 0; j < n; j++) L.H0[5 * n + j] = L.H0[j * n + 5] = 0;
    lb_gptq_params_default(&p);
    p.damp = 0.1;
    CHECK(run_gptq(&L, NULL, LB_TYPE_Q8_0, &p, &st, &e) == LB_OK && st.dead_cols == 1, "dead column: %s", e.msg);
    bool zero = true; /* q8_0 represents 0 exactly */
    for (int64_t r = 0; r < L.rows; r++) zero &= L.W[r * n + 5] == 0;
    CHECK(zero, "dead column not zeroed");
    /* bad inputs */
    L.W0[3 * n + 17] = NAN;
    CHECK(run_gptq(&L, NULL, LB_TYPE_Q4_K, &p, &st, &e) == LB_ERR_ARG && strstr(e.msg, "W[3, 17] is not finite"), "%s", e.msg);
    L.W0[3 * n + 17] = 0;
    L.H0[2 * n + 9] = INFINITY;
    CHECK(run_gptq(&L, NULL, LB_TYPE_Q4_K, &p, &st, &e) == LB_ERR_ARG && strstr(e.msg, "H[2, 9] is not finite"), "%s", e.msg);
    L.H0[2 * n + 9] = 0;
    {
        /* W over two of the check's 65,536-element chunks, on two threads: the first bad element is named, whichever
         * chunk's task finishes first */
        layer B = layer_new(300, 256, 512, false);
        lb_pool *pool2 = lb_pool_new(2);
        REQUIRE(pool2, "pool");
        B.W0[270 * 256 + 0] = NAN;   /* the second chunk */
        B.W0[100 * 256 + 200] = -INFINITY; /* the first */
        B.H0[7 * 256 + 3] = NAN;
        CHECK(run_gptq(&B, pool2, LB_TYPE_Q4_K, &p, &st, &e) == LB_ERR_ARG && strstr(e.msg, "W[100, 200] is not finite"), "%s", e.msg);
        B.W0[100 * 256 + 200] = 0;
        CHECK(run_gptq(&B, pool2, LB_TYPE_Q4_K, &p, &st, &e) == LB_ERR_ARG && strstr(e.msg, "W[270, 0] is not finite"), "%s", e.msg);
        B.W0[270 * 256 + 0] = 0;
        CHECK(run_gptq(&B, pool2, LB_TYPE_Q4_K, &p, &st, &e) == LB_ERR_ARG && strstr(e.msg, "H[7, 3] is not finite"), "%s", e.msg);
        lb_pool_free(pool2);
        layer_free(&B);
    }
    CHECK(lb_gptq_quantize(NULL, L.W, L.rows, 100, L.H, LB_TYPE_Q4_0, LB_ENCODER_DEFAULT, NULL, L.out, NULL, &e) == LB_ERR_ARG,
          "%s", e.msg);
    CHECK(lb_gptq_quantize(NULL, L.W, L.rows, n, L.H, LB_TYPE_F16, LB_ENCODER_DEFAULT, NULL, L.out, NULL, &e) ==
              LB_ERR_UNSUPPORTED, "%s", e.msg);
    layer_free(&L);
}

static void bench(lb_pool *pool) {
    const int64_t rows = 1536, cols = 512;
    layer L = layer_new(rows, cols, 768, true);
    free(L.out);
    L.out = malloc(lb_type_row_size(LB_TYPE_Q4_K, cols) * (size_t)rows);
    lb_error e;
    for (int th = 0; th < 2; th++) {
        const double t0 = lb_time_sec();
        CHECK(run_gptq(&L, th ? pool : NULL, LB_TYPE_Q4_K, NULL, NULL, &e) == LB_OK, "%s", e.msg);
        printf("gptq q4_K %lld x %lld: %.3f s (%d threads)\n", (long long)rows, (long long)cols, lb_time_sec() - t0,
               th ? lb_pool_size(pool) : 1);
    }
    layer_free(&L);
}

/* ---- (h) the reference-stream target ---- */

/* f(V) = ||W D Xr - V X||^2 + lam ||V - W||^2 for X, Xr (d, T) column-major by token: x_t = X + t d */
/* A copy of C (n, n) for lb_gptq_ref_target, which overwrites it; one buffer, reused. */
static double *cdup(const double *C, int64_t n) {
    static double *buf;
    static int64_t cap;
    if (cap < n * n) {
        free(buf);
        buf = malloc(sizeof *buf * (size_t)(n * n));
        cap = n * n;
    }
    memcpy(buf, C, sizeof *buf * (size_t)(n * n));
    return buf;
}

static double ref_objective(const float *V, const float *W, const float *s, const double *X, const double *Xr,
                            int rows, int d, int T, double lam) {
    double f = 0;
    for (int r = 0; r < rows; r++) {
        for (int t = 0; t < T; t++) {
            double a = 0, b = 0;
            for (int j = 0; j < d; j++) {
                a += (double)W[r * d + j] / (s ? s[j] : 1.0) * Xr[t * d + j];
                b += (double)V[r * d + j] * X[t * d + j];
            }
            f += (a - b) * (a - b);
        }
        for (int j = 0; j < d; j++) f += lam * ((double)V[r * d + j] - W[r * d + j]) * ((double)V[r * d + j] - W[r * d + j]);
    }
    return f;
}

static void test_ref_target(lb_pool *pool3) {
    enum { R = 20, D = 48, T = 400 };
    double *X = malloc(sizeof *X * D * T), *Xr = malloc(sizeof *X * D * T), *H = malloc(sizeof *H * D * D),
           *C = malloc(sizeof *C * D * D);
    float W[R * D], V[R * D], V3[R * D], P[R * D], sc[D];
    for (int j = 0; j < D; j++) sc[j] = (float)(0.5 + unif());
    for (int t = 0; t < T; t++) /* correlated channels; the reference stream = X plus a structured error */
        for (int j = 0; j < D; j++) {
            X[t * D + j] = gauss() + (j ? 0.6 * X[t * D + j - 1] : 0);
            Xr[t * D + j] = X[t * D + j] * (1 + 0.1 * sin(j)) + 0.2 * gauss();
        }
    for (int i = 0; i < R * D; i++) W[i] = (float)gauss();
    for (int pass = 0; pass < 2; pass++) { /* without and with AWQ-style input scales */
        const float *s = pass ? sc : NULL;
        for (int i = 0; i < D; i++)
            for (int j = 0; j < D; j++) {
                double h = 0, c = 0;
                for (int t = 0; t < T; t++) {
                    h += X[t * D + i] * X[t * D + j];
                    c += Xr[t * D + i] * X[t * D + j];
                }
                H[i * D + j] = h;
                C[i * D + j] = c;
            }
        double mean = 0;
        for (int j = 0; j < D; j++) mean += H[j * D + j] / D;
        const double damp = 0.3, lam = damp * mean;
        bool applied = false;
        memcpy(V, W, sizeof V);
        lb_error err;
        CHECK(lb_gptq_ref_target(NULL, (float *[]){V}, (int64_t[]){R}, 1, D, H, cdup(C, D), s, damp, 6, NULL, &applied, &err) == LB_OK && applied, "ref target failed");
        memcpy(V3, W, sizeof V3);
        CHECK(lb_gptq_ref_target(pool3, (float *[]){V3}, (int64_t[]){R}, 1, D, H, cdup(C, D), s, damp, 6, NULL, &applied, &err) == LB_OK, "ref target (3 threads)");
        CHECK(!memcmp(V, V3, sizeof V), "ref target: 1 and 3 threads differ");
        float Va[R * D], Vb[R / 2 * D];
        memcpy(Va, W, sizeof Va);
        memcpy(Vb, W, sizeof Vb);
        CHECK(lb_gptq_ref_target(pool3, (float *[]){Vb, Va}, (int64_t[]){R / 2, R}, 2, D, H, cdup(C, D), s, damp, 6, NULL, &applied, &err) ==
                      LB_OK && !memcmp(Va, V, sizeof Va),
              "ref target: two matrices at once differ from one at a time");
        /* normal equations: V (H + lam I) = W D C + lam W, relative to the size of the right side */
        double res = 0, rhs = 0;
        for (int r = 0; r < R; r++)
            for (int j = 0; j < D; j++) {
                double a = lam * V[r * D + j], b = lam * W[r * D + j];
                for (int i = 0; i < D; i++) {
                    a += (double)V[r * D + i] * H[i * D + j];
                    b += (double)W[r * D + i] / (s ? s[i] : 1.0) * C[i * D + j];
                }
                res = fmax(res, fabs(a - b));
                rhs = fmax(rhs, fabs(b));
            }
        CHECK(res <= 1e-4 * rhs, "ref target: normal-equation residual %g (right side %g)", res, rhs);
        const double f0 = ref_objective(V, W, s, X, Xr, R, D, T, lam);
        CHECK(f0 < ref_objective(W, W, s, X, Xr, R, D, T, lam), "ref target: no better than W itself");
        for (int k = 0; k < 20; k++) {
            for (int i = 0; i < R * D; i++) P[i] = V[i] + (float)(1e-2 * gauss());
            CHECK(ref_objective(P, W, s, X, Xr, R, D, T, lam) > f0, "ref target: a perturbation lowers the objective");
        }
    }
    /* the streams agree, no scales: W stays (to f32 rounding) */
    for (int i = 0; i < D * D; i++) C[i] = H[i];
    memcpy(V, W, sizeof V);
    bool applied = false;
    lb_error err;
    lb_gptq_ref_target(NULL, (float *[]){V}, (int64_t[]){R}, 1, D, H, cdup(C, D), NULL, 0.01, 6, NULL, &applied, &err);
    double dev = 0;
    for (int i = 0; i < R * D; i++) dev = fmax(dev, fabs((double)V[i] - W[i]));
    CHECK(applied && dev < 1e-3, "ref target: identical streams moved W by %g", dev);
    /* no energy: declined, W untouched */
    memset(H, 0, sizeof *H * D * D);
    memcpy(V, W, sizeof V);
    CHECK(lb_gptq_ref_target(NULL, (float *[]){V}, (int64_t[]){R}, 1, D, H, cdup(C, D), NULL, 0.01, 6, NULL, &applied, &err) == LB_OK && !applied &&
              !memcmp(V, W, sizeof V), "ref target: zero H not declined");
    free(X), free(Xr), free(H), free(C);
}

/* ---- (i) the table of operations, with a device-like implementation written here ---- */

/* Keeps its own copy of T (the "device"), sums in double (another order and rounding than the CPU's), hands
 * back only T[:, i2:i3] after an update and poisons the host's columns after i3 with NaN, so that a sweep
 * reading a column before its batch was handed back fails. Can fail reserve or the n-th update. */
typedef struct fake_dev {
    float *T;
    const float *U, *Hf;
    int64_t rows, n;
    bool fail_reserve;
    int fail_update_at; /* 1-based; 0: never */
    int reserves, loads, updates, begins, ends, invs, htes, mms;
    bool encoder;          /* offers encodes / encode (the CPU encoders, block by block) */
    double *rH;            /* ref_factor's copy of H (n x n), uploaded once; its U in rU */
    float *rU, *rDC;
    int64_t rn;
    int rfactors, rapplies, ruploads;
    int enc_all, enc_part; /* encode calls over all columns, over part of them */
} fake_dev;

static lb_status fake_reserve(void *u, int64_t rows, int64_t n, bool cd, lb_error *err) {
    fake_dev *f = u;
    (void)cd;
    f->reserves++;
    if (f->fail_reserve) return lb_err_set(err, LB_ERR_DEVICE, "fake device: out of GPU memory");
    free(f->T);
    f->T = malloc(sizeof *f->T * (size_t)(rows * n));
    f->rows = rows, f->n = n;
    return LB_OK;
}
static lb_status fake_inv_upper(void *u, lb_pool *pool, double *A, int64_t n, double *work, bool *ok, lb_error *err) {
    (void)pool, (void)err;
    ((fake_dev *)u)->invs++;
    *ok = lb_chol_inv_upper_ref(A, n, work); /* the unblocked specification: another order than the pool's */
    return LB_OK;
}
static lb_status fake_begin(void *u, const float *U, const float *Hf, int64_t rows, int64_t n, lb_error *err) {
    fake_dev *f = u;
    (void)err;
    f->begins++;
    f->U = U, f->Hf = Hf;
    CHECK(rows <= f->rows && n == f->n, "begin beyond the reservation");
    return LB_OK;
}
static lb_status fake_load(void *u, const float *T, int64_t rows, int64_t n, lb_error *err) {
    fake_dev *f = u;
    (void)err;
    f->loads++;
    memcpy(f->T, T, sizeof *T * (size_t)(rows * n));
    return LB_OK;
}
static lb_status fake_update(void *u, lb_pool *pool, float *T, int64_t rows, int64_t n, const float *E, int64_t lde,
                             const float *U, int64_t i1, int64_t i2, int64_t i3, lb_error *err) {
    fake_dev *f = u;
    (void)pool, (void)U;
    if (++f->updates == f->fail_update_at) return lb_err_set(err, LB_ERR_DEVICE, "fake device: kernel failed");
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = i2; c < n; c++) {
            double s = 0;
            for (int64_t k = 0; k < i2 - i1; k++) s += (double)E[r * lde + k] * f->U[(i1 + k) * n + c];
            f->T[r * n + c] = (float)(f->T[r * n + c] - s);
        }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = i2; c < n; c++) T[r * n + c] = c < i3 ? f->T[r * n + c] : NAN;
    return LB_OK;
}
static lb_status fake_h_times_e(void *u, lb_pool *pool, const float *W, const float *Q, float *G, int64_t rows, int64_t n,
                                const float *Hf, const bool *sel, lb_error *err) {
    fake_dev *f = u;
    (void)pool, (void)Hf, (void)err;
    f->htes++;
    for (int64_t r = 0; r < rows; r++) {
        if (!sel[r]) continue;
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int64_t j = 0; j < n; j++) s += ((double)W[r * n + j] - Q[r * n + j]) * f->Hf[j * n + i];
            G[r * n + i] = (float)s;
        }
    }
    return LB_OK;
}
static lb_status fake_matmul(void *u, lb_pool *pool, const float *x, int64_t rows, const float *w, int64_t n, int64_t K,
                             float *out, lb_error *err) {
    (void)pool, (void)err;
    ((fake_dev *)u)->mms++;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)x[r * K + k] * w[i * K + k];
            out[r * n + i] = (float)s;
        }
    return LB_OK;
}
static void fake_end(void *u) { ((fake_dev *)u)->ends++; }
static bool fake_encodes(void *u, lb_type t, lb_encoder enc) { return ((fake_dev *)u)->encoder && lb_encoder_get(t, enc); }
static lb_status fake_encode(void *u, lb_type t, lb_encoder enc, const float *S, int64_t ld, int64_t rows, int64_t c0, int64_t c1,
                             const float *imp, uint8_t *out, size_t row_bytes, lb_error *err) {
    fake_dev *f = u;
    const int64_t be = lb_type_block_elems(t);
    const size_t bb = lb_type_traits_get(t)->block_bytes;
    if (c0 % be || c1 % be || c1 > ld || c0 >= c1) return lb_err_set(err, LB_ERR_ARG, "fake encode: columns %lld..%lld", (long long)c0, (long long)c1);
    *(c0 == 0 && c1 == ld ? &f->enc_all : &f->enc_part) += 1;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = c0 / be; b < c1 / be; b++)
            lb_encoder_get(t, enc)(S + r * ld + b * be, out + (size_t)r * row_bytes + (size_t)b * bb, 1, be,
                                   imp ? imp + (b * be - c0) : NULL);
    return LB_OK;
}

/* the reference target kept on the "device": H and (D C)^T taken once, the factor by the unblocked
 * specification, the products summed in double */
static lb_status fake_ref_factor(void *u, const double *H, int64_t n, double lam, bool upload, bool *ok, lb_error *err) {
    fake_dev *f = u;
    (void)err;
    f->rfactors++;
    if (upload) {
        f->ruploads++;
        free(f->rH), free(f->rU);
        f->rH = malloc(sizeof *f->rH * (size_t)(n * n));
        f->rU = malloc(sizeof *f->rU * (size_t)(n * n));
        memcpy(f->rH, H, sizeof *H * (size_t)(n * n));
        f->rn = n;
    }
    CHECK(f->rH && f->rn == n, "ref_factor without an uploaded H");
    double *A = malloc(sizeof *A * (size_t)(n * n)), *work = malloc(sizeof *work * (size_t)n);
    memcpy(A, f->rH, sizeof *A * (size_t)(n * n));
    for (int64_t j = 0; j < n; j++) A[j * n + j] += lam;
    *ok = lb_chol_inv_upper_ref(A, n, work);
    if (*ok)
        for (int64_t i = 0; i < n * n; i++) f->rU[i] = (float)A[i];
    free(A), free(work);
    return LB_OK;
}
static lb_status fake_ref_apply(void *u, const double *C, const float *sc, int64_t n, double lam, float *W, int64_t rows, bool upload,
                                lb_error *err) {
    fake_dev *f = u;
    (void)err;
    f->rapplies++;
    if (upload) { /* (D C)^T made here, as a device makes it */
        free(f->rDC);
        f->rDC = malloc(sizeof *f->rDC * (size_t)(n * n));
        REQUIRE(f->rDC, "out of memory");
        lb_gptq_ref_dct(NULL, C, sc, n, f->rDC);
    }
    CHECK(f->rDC != NULL, "ref_apply without (D C)^T");
    float *M = malloc(sizeof *M * (size_t)(rows * n)), *P = malloc(sizeof *P * (size_t)(rows * n));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) { /* M = W DC + lam W */
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += (double)W[r * n + i] * f->rDC[j * n + i];
            M[r * n + j] = (float)s + (float)lam * W[r * n + j];
        }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) { /* P = M U^T */
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += (double)M[r * n + i] * f->rU[j * n + i];
            P[r * n + j] = (float)s;
        }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) { /* W = P U */
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += (double)P[r * n + i] * f->rU[i * n + j];
            W[r * n + j] = (float)s;
        }
    free(M), free(P);
    return LB_OK;
}

static lb_gptq_ops fake_ops(fake_dev *f) {
    return (lb_gptq_ops){.user = f, .name = "fake", .reserve = fake_reserve, .inv_upper = fake_inv_upper, .begin = fake_begin,
                         .load = fake_load, .update = fake_update, .h_times_e = fake_h_times_e, .matmul = fake_matmul,
                         .end = fake_end, .encodes = fake_encodes, .encode = fake_encode};
}

static void test_ops(lb_pool *pool3) {
    const struct { lb_type t; int64_t cols; int block_cols; bool act_order; } cases[] = {
        {LB_TYPE_Q4_K, 768, 128, false}, {LB_TYPE_Q4_0, 320, 64, true}, {LB_TYPE_IQ4_XS, 512, 96, false}};
    for (int i = 0; i < 3; i++) {
        const int64_t rows = 37, n = cases[i].cols;
        layer L = layer_new(rows, n, 2 * n, true);
        const size_t bytes = lb_type_row_size(cases[i].t, n) * (size_t)rows;
        uint8_t *cpu = malloc(bytes);
        float *Qc = malloc(sizeof *Qc * (size_t)(rows * n));
        lb_gptq_params p;
        lb_gptq_params_default(&p);
        p.block_cols = cases[i].block_cols;
        p.act_order = cases[i].act_order;
        p.passes = 2;
        p.cd_sweeps = 2;
        p.cd_scales = true;
        lb_gptq_stats st;
        lb_error e;
        REQUIRE(run_gptq(&L, pool3, cases[i].t, &p, &st, &e) == LB_OK, "%s", e.msg);
        memcpy(cpu, L.out, bytes);
        memcpy(Qc, L.W, sizeof *Qc * (size_t)(rows * n));
        const double ec = gptq_proxy(L.W0, Qc, rows, n, L.H0);
        /* the device-like table: close, not equal */
        fake_dev f = {0};
        lb_gptq_ops o = fake_ops(&f);
        p.ops = &o;
        REQUIRE(run_gptq(&L, pool3, cases[i].t, &p, &st, &e) == LB_OK, "%s", e.msg);
        const double ef = gptq_proxy(L.W0, L.W, rows, n, L.H0);
        const int64_t batch = p.act_order ? p.block_cols : (p.block_cols + lb_type_block_elems(cases[i].t) - 1) /
                                                               lb_type_block_elems(cases[i].t) * lb_type_block_elems(cases[i].t);
        const int nb = (int)((n + batch - 1) / batch);
        printf("ops %-7s %lld x %lld: error cpu %.6g, device-like table %.6g (%+.3f %%)\n", lb_type_name(cases[i].t),
               (long long)rows, (long long)n, ec, ef, 100 * (ef / ec - 1));
        CHECK(fabs(ef / ec - 1) < 0.01 && !st.fallback, "%s: device-like table error %.6g vs cpu %.6g", lb_type_name(cases[i].t),
              ef, ec);
        bool finite = true;
        for (int64_t k = 0; k < rows * n; k++) finite &= isfinite(L.W[k]) != 0;
        CHECK(finite, "%s: a column was read before the table handed it back", lb_type_name(cases[i].t));
        CHECK(f.reserves == 1 && f.begins == 1 && f.ends == 1 && f.loads == p.passes && f.updates == p.passes * (nb - 1) &&
                  f.invs >= 1 && f.htes >= 2 && f.htes <= p.cd_sweeps + 1,
              "%s: calls reserve %d begin %d end %d load %d update %d (batches %d) inv %d h.e %d", lb_type_name(cases[i].t),
              f.reserves, f.begins, f.ends, f.loads, f.updates, nb, f.invs, f.htes);
        /* the same table encoding the blocks itself (as the CUDA table does): the same bytes; every later pass's
         * scales at once (and act-order's first), in the default order each batch of one block column at
         * its start (an encoder reading a column before the table handed it back sees NaN) */
        uint8_t *dev = malloc(bytes);
        memcpy(dev, L.out, bytes);
        f.encoder = true;
        REQUIRE(run_gptq(&L, pool3, cases[i].t, &p, &st, &e) == LB_OK, "%s", e.msg);
        const bool per_batch = !p.act_order && batch == lb_type_block_elems(cases[i].t);
        CHECK(!memcmp(L.out, dev, bytes) && f.enc_all == p.passes - 1 + p.act_order && f.enc_part == (per_batch ? nb : 0),
              "%s: encoding through the table: same bytes %d, whole-matrix encodes %d, per-batch %d (batches %d)",
              lb_type_name(cases[i].t), !memcmp(L.out, dev, bytes), f.enc_all, f.enc_part, nb);
        f.encoder = false;
        free(dev);
        /* a table that cannot take the matrix: the CPU's bytes, noted */
        f.fail_reserve = true;
        REQUIRE(run_gptq(&L, pool3, cases[i].t, &p, &st, &e) == LB_OK, "%s", e.msg);
        CHECK(st.fallback && strstr(st.fallback_msg, "out of GPU memory") && !memcmp(L.out, cpu, bytes),
              "%s: fallback %d (%s), same bytes %d", lb_type_name(cases[i].t), st.fallback, st.fallback_msg, !memcmp(L.out, cpu, bytes));
        /* a device error in the middle: returned as it is, buffers released */
        f.fail_reserve = false;
        f.fail_update_at = f.updates + 2;
        const int ends = f.ends;
        CHECK(run_gptq(&L, pool3, cases[i].t, &p, &st, &e) == LB_ERR_DEVICE && strstr(e.msg, "kernel failed") && f.ends == ends + 1,
              "%s: a failing update gave '%s'", lb_type_name(cases[i].t), e.msg);
        free(f.T);
        free(cpu);
        free(Qc);
        layer_free(&L);
    }
    /* the reference target through the table: the CPU's result to float rounding */
    enum { R = 19, D = 40, T = 300 };
    double *X = malloc(sizeof *X * D * T), *H = malloc(sizeof *H * D * D), *C = malloc(sizeof *C * D * D);
    float *W = malloc(sizeof *W * R * D), *V1 = malloc(sizeof *W * R * D), *V2 = malloc(sizeof *W * R * D);
    for (int t = 0; t < T * D; t++) X[t] = gauss() + (t % D ? 0.5 * X[t - 1] : 0);
    for (int k = 0; k < R * D; k++) W[k] = (float)gauss();
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double h = 0, c = 0;
            for (int t = 0; t < T; t++) {
                h += X[t * D + i] * X[t * D + j];
                c += X[t * D + i] * (1 + 0.1 * sin(j)) * X[t * D + j];
            }
            H[i * D + j] = h, C[i * D + j] = c;
        }
    fake_dev f = {0};
    lb_gptq_ops o = fake_ops(&f);
    bool a1 = false, a2 = false;
    lb_error e;
    memcpy(V1, W, sizeof *W * R * D);
    memcpy(V2, W, sizeof *W * R * D);
    REQUIRE(lb_gptq_ref_target(pool3, (float *[]){V1}, (int64_t[]){R}, 1, D, H, cdup(C, D), NULL, 0.3, 6, NULL, &a1, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_gptq_ref_target(pool3, (float *[]){V2}, (int64_t[]){R}, 1, D, H, cdup(C, D), NULL, 0.3, 6, &o, &a2, &e) == LB_OK, "%s", e.msg);
    double num = 0, den = 0;
    for (int k = 0; k < R * D; k++) num += ((double)V1[k] - V2[k]) * ((double)V1[k] - V2[k]), den += (double)V1[k] * V1[k];
    printf("ops: reference target through the device-like table: relative difference %.2e\n", sqrt(num / den));
    CHECK(a1 && a2 && sqrt(num / den) < 1e-5 && f.invs == 1 && f.mms == 3, "ref target: applied %d %d, difference %.3g, calls %d %d", a1,
          a2, sqrt(num / den), f.invs, f.mms);
    /* with the table's ref_factor / ref_apply (H and (D C)^T up once, two matrices): the same to float rounding */
    o.ref_factor = fake_ref_factor;
    o.ref_apply = fake_ref_apply;
    float *V3 = malloc(sizeof *W * R * D);
    memcpy(V2, W, sizeof *W * R * D);
    memcpy(V3, W, sizeof *W * R * D);
    REQUIRE(lb_gptq_ref_target(pool3, (float *[]){V2, V3}, (int64_t[]){R, R / 2}, 2, D, H, cdup(C, D), NULL, 0.3, 6, &o, &a2, &e) == LB_OK,
            "%s", e.msg);
    num = den = 0;
    for (int k = 0; k < R * D; k++) num += ((double)V1[k] - V2[k]) * ((double)V1[k] - V2[k]), den += (double)V1[k] * V1[k];
    for (int k = 0; k < R / 2 * D; k++) num += ((double)V1[k] - V3[k]) * ((double)V1[k] - V3[k]), den += (double)V1[k] * V1[k];
    printf("ops: reference target kept on the device-like table: relative difference %.2e\n", sqrt(num / den));
    CHECK(a2 && sqrt(num / den) < 1e-5 && f.invs == 1 && f.mms == 3 && f.rfactors == 1 && f.rapplies == 2 && f.ruploads == 1,
          "ref target kept on the table: applied %d, difference %.3g, calls inv %d mm %d factor %d apply %d uploads %d", a2,
          sqrt(num / den), f.invs, f.mms, f.rfactors, f.rapplies, f.ruploads);
    /* H with a negative eigenvalue of -0.5: the first tries fail, H is uploaded once for all of them, and
     * the result is the CPU's with the same final damping */
    H[3 * D + 3] = -0.5;
    memcpy(V1, W, sizeof *W * R * D);
    memcpy(V2, W, sizeof *W * R * D);
    bool a0 = false;
    REQUIRE(lb_gptq_ref_target(pool3, (float *[]){V1}, (int64_t[]){R}, 1, D, H, cdup(C, D), NULL, 1e-6, 8, NULL, &a0, &e) == LB_OK, "%s", e.msg);
    f.rfactors = f.ruploads = 0;
    REQUIRE(lb_gptq_ref_target(pool3, (float *[]){V2}, (int64_t[]){R}, 1, D, H, cdup(C, D), NULL, 1e-6, 8, &o, &a2, &e) == LB_OK, "%s", e.msg);
    num = den = 0;
    for (int k = 0; k < R * D; k++) num += ((double)V1[k] - V2[k]) * ((double)V1[k] - V2[k]), den += (double)V1[k] * V1[k];
    CHECK(a0 == a2 && f.ruploads == 1 && f.rfactors > 1 && (!a0 || sqrt(num / den) < 1e-5),
          "ref target with retries: applied %d / %d, factors %d, uploads %d, difference %.3g", a0, a2, f.rfactors, f.ruploads, sqrt(num / den));
    free(f.rH), free(f.rU), free(f.rDC);
    free(V3);
    free(X), free(H), free(C), free(W), free(V1), free(V2);
}

/* the sweeps' element kernels: every implementation gives the reference's bits (axpy at every length to 70
 * and with zeros, infinities and subnormals; the sub-block sums at 16, 32 and another length) */
static void test_kernels(void) {
    float x[80], y0[80], y1[80], ht[32 * 40], d[32];
    double a0[32], a1[32];
    int bad = 0, runs = 0;
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < 80; i++) {
            x[i] = (float)(rand() % 20001 - 10000) / 997.0f;
            y0[i] = (float)(rand() % 20001 - 10000) / 331.0f;
        }
        if (trial % 7 == 0) x[trial % 80] = 1e-40f, y0[(trial + 1) % 80] = INFINITY, x[(trial + 2) % 80] = 0;
        for (int i = 0; i < 32 * 40; i++) ht[i] = (float)(rand() % 20001 - 10000) / 1009.0f;
        for (int i = 0; i < 32; i++) d[i] = i % 5 == 0 ? 0.0f : (float)(rand() % 2001 - 1000) / 37.0f;
        const int n = trial % 71;
        const float a = (float)(rand() % 2001 - 1000) / 97.0f;
        const int nq = trial % 3 == 0 ? 16 : trial % 3 == 1 ? 32 : 8 + trial % 24;
        memcpy(y1, y0, sizeof y0);
        lb_gptq_kernels_impl(0)->axpy(y0, a, x, n);
        lb_gptq_kernels_impl(0)->quad(ht, 40, d, nq, a0);
        for (int impl = 1; impl <= 2; impl++) {
            const lb_gptq_kernels *k = lb_gptq_kernels_impl(impl);
            if (!k) continue; /* the CPU lacks this implementation */
            float y2[80];
            memcpy(y2, y1, sizeof y1);
            k->axpy(y2, a, x, n);
            runs++;
            bad += memcmp(y0, y2, sizeof y2) != 0;
            memset(a1, 0, sizeof a1);
            k->quad(ht, 40, d, nq, a1);
            bad += memcmp(a0, a1, (size_t)nq * sizeof *a1) != 0;
        }
    }
    CHECK(bad == 0, "%d of %d kernel runs differ from the reference", bad, runs);
}

/* GPTQ's rows are independent given H: the matrix cut into row panels, each panel quantized alone (another
 * pool size too), gives the whole matrix's bytes, in the default order and with act-order (what solving the
 * panels on several GPUs relies on, calib_quant.c's gptq_panels) */
static void test_row_panels(lb_pool *pool3) {
    const int64_t rows = 37, n = 512;
    const lb_type types[] = {LB_TYPE_Q2_K, LB_TYPE_Q3_K, LB_TYPE_Q4_K, LB_TYPE_Q5_K, LB_TYPE_Q6_K, LB_TYPE_IQ4_XS, LB_TYPE_Q4_0};
    float *W = malloc(sizeof *W * (size_t)(rows * n)), *Wc = malloc(sizeof *Wc * (size_t)(rows * n));
    double *H = malloc(sizeof *H * (size_t)(n * n)), *Hc = malloc(sizeof *Hc * (size_t)(n * n));
    make_layer(rows, n, 300, true, W, H);
    lb_pool *pool1 = lb_pool_new(1);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int ao = 0; ao < 2; ao++) {
            const lb_type t = types[ti];
            const size_t rb = lb_type_row_size(t, n);
            uint8_t *whole = malloc(rb * (size_t)rows), *parts = malloc(rb * (size_t)rows);
            lb_gptq_params p;
            lb_gptq_params_default(&p);
            p.act_order = ao;
            lb_error e;
            memcpy(Wc, W, sizeof *W * (size_t)(rows * n));
            memcpy(Hc, H, sizeof *H * (size_t)(n * n));
            REQUIRE(lb_gptq_quantize(pool3, Wc, rows, n, Hc, t, LB_ENCODER_DEFAULT, &p, whole, NULL, &e) == LB_OK, "%s", e.msg);
            const int64_t cut[4] = {0, 5, 22, rows};
            for (int k = 0; k < 3; k++) {
                memcpy(Wc, W, sizeof *W * (size_t)(rows * n));
                memcpy(Hc, H, sizeof *H * (size_t)(n * n));
                REQUIRE(lb_gptq_quantize(k == 1 ? pool1 : pool3, Wc + cut[k] * n, cut[k + 1] - cut[k], n, Hc, t, LB_ENCODER_DEFAULT, &p,
                                         parts + (size_t)cut[k] * rb, NULL, &e) == LB_OK,
                        "%s", e.msg);
            }
            CHECK(!memcmp(whole, parts, rb * (size_t)rows), "%s%s: row panels quantized alone differ from the whole matrix",
                  lb_type_name(t), ao ? " act-order" : "");
            free(whole), free(parts);
        }
    lb_pool_free(pool1);
    free(W), free(Wc), free(H), free(Hc);
}

int main(void) {
    lb_pool *pool3 = lb_pool_new(3);
    REQUIRE(pool3, "pool");
    test_kernels();
    test_grids();
    test_grid_params();
    test_linalg();
    test_equivalence();
    test_quality(pool3);
    test_damping_and_errors();
    test_refinement(pool3);
    test_ref_target(pool3);
    test_ops(pool3);
    test_row_panels(pool3);
    lb_pool *pool2 = lb_pool_new(2);
    bench(pool2);
    lb_pool_free(pool2);
    lb_pool_free(pool3);
    TEST_DONE();
}
