/*
 * test_cuda_gptq.c - GPTQ's linear algebra on a CUDA device (cuda/gptq.h, through algo/gptq_cuda.c's table)
 * against the CPU implementation (lb_gptq_ops_cpu, the specification) on the same inputs. Needs a GPU.
 *
 * - reserve: beyond the GPU's memory, one line "out of GPU memory", and the table still works afterwards.
 * - inv_upper: random SPD matrices of odd sizes: the GPU's U against lb_chol_inv_upper's by relative
 *   Frobenius error, bound 1e-9 (both in double; they differ by about n eps cond); U upper with a zero
 *   strictly lower triangle; an indefinite matrix gives ok = false and leaves A as it was.
 * - update, h_times_e, matmul: odd sizes; each element against the CPU's within the rounding bound of any
 *   summation order, |gpu - cpu| <= 4 k 2^-24 sum_k |a_k b_k| + 2^-23 |cpu| (the CPU rounds each product and
 *   each difference, the GPU fuses them): a wrong element, index or transpose fails it by orders of magnitude. The update
 *   hands back only T[:, i2:i3]: the host's columns after i3 must be untouched.
 * - lb_gptq_quantize with the GPU table against the CPU table on the same random layer (q4_K, q3_K, iq4_xs;
 *   4 passes, coordinate descent with scales, as the driver runs it): the objective tr(E H E^T) within 1 %
 *   (GEMMs sum in another order; elements near a midpoint of their grid round the other way, few and both
 *   ways). Twice on the GPU: the same bytes.
 * - the k-quant encoders on the GPU (ops->encode, kq_encode.cu): the bytes of quantize_<t>_best on the CPU,
 *   exactly, for all five types, with and without importance weights, on rows of several shapes (zero,
 *   tiny, huge and outlier blocks included) and on a column range of wider rows; and GPTQ with them (every
 *   pass's scales, act-order's too) the same bytes as GPTQ on the same GPU with the encoders on CPU threads
 *   (LB_GPU_ENCODE=0); whole passes and the coordinate descent on the GPU (the table's pass and cd, on unless
 *   LB_GPU_SWEEP=0) the same bytes as the columns and the descent's steps on CPU threads.
 * - lb_gptq_ref_target with H and (D C)^T kept on the GPU (the table's ref_factor / ref_apply) against the
 *   CPU: relative difference below 1e-4, as through the table's inv_upper / matmul.
 * - AWQ on the GPU (the table's awq_clip / awq_search): the clip search's clamps and choices exactly the CPU's;
 *   the scale search's loss within 1e-4 of the CPU's.
 * - lb_quantize_model on tiny with --device cuda: GPTQ's algebra on the GPU against the CPU threads
 *   (LB_GPTQ_GPU=0), the same GPU statistics: KL divergence not above the CPU solver's by more than 15 % (tiny's
 *   KL at 4,096 tokens moves by -2 % .. +7.5 % when the reference target alone is perturbed by 1e-7 .. 2e-6 of
 *   each value; see check_quantizer), below RTN's, no fallback; two GPU runs give the same bytes. That the GPU
 *   solves each matrix as well as the CPU is test_cuda_gptq_shadow's check, call by call.
 */
#include "algo/awq.h"
#include "algo/encoders.h"
#include "algo/gptq.h"
#include "linalg/linalg.h"
#include "model/model.h"
#include "quant/quant.h"
#include "test.h"
#include "cuda_test.h"
#include "test_rand.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#define EPS32 5.9604644775390625e-8 /* 2^-24 */


static double rel_fro(const double *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* A = X^T X / T + shift I for T random correlated tokens (n, n) */
static void random_spd(double *A, int64_t n, int64_t T, double shift) {
    double *X = malloc(sizeof *X * (size_t)(T * n));
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < n; j++) X[t * n + j] = nrand() + (j ? 0.5 * X[t * n + j - 1] : 0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t t = 0; t < T; t++) s += X[t * n + i] * X[t * n + j];
            A[i * n + j] = A[j * n + i] = s / (double)T + (i == j ? shift : 0);
        }
    free(X);
}

static lb_gptq_ops *gpu_ops(void) {
    lb_gptq_ops *o = NULL;
    lb_error e;
    REQUIRE(lb_gptq_ops_cuda_new(0, &o, &e) == LB_OK, "%s", e.msg);
    return o;
}

/* ---------------------------------------------------------------- pieces ---------------------------------- */

/* A reservation beyond the GPU's memory fails with one line (lb_gptq_quantize then runs the matrix on the
 * CPU: unit_gptq's device-like table covers that path) and leaves the table usable. */
static void check_reserve_failure(lb_gptq_ops *g) {
    lb_error e = {{0}};
    const lb_status s = g->reserve(g->user, (int64_t)1 << 20, (int64_t)1 << 18, true, &e); /* 2^36 doubles x 2 */
    printf("reserve beyond the GPU: %s\n", e.msg);
    CHECK(s == LB_ERR_DEVICE && strstr(e.msg, "out of GPU memory") && !strchr(e.msg, '\n'), "huge reserve: status %d, '%s'",
          (int)s, e.msg);
    CHECK(g->reserve(g->user, 16, 64, true, &e) == LB_OK, "a small reserve after a failed one: %s", e.msg);
}

static void check_inv_upper(lb_gptq_ops *g) {
    const lb_gptq_ops *c = lb_gptq_ops_cpu();
    const int64_t sizes[] = {1, 7, 130, 301, 1000};
    lb_error e;
    for (int k = 0; k < 5; k++) {
        const int64_t n = sizes[k];
        double *A = malloc(sizeof *A * (size_t)(n * n)), *Ac = malloc(sizeof *A * (size_t)(n * n)), *Ag = malloc(sizeof *A * (size_t)(n * n));
        double *work = malloc(sizeof *work * (size_t)n);
        random_spd(A, n, 2 * n + 3, 0.01);
        memcpy(Ac, A, sizeof *A * (size_t)(n * n));
        memcpy(Ag, A, sizeof *A * (size_t)(n * n));
        bool okc = false, okg = false;
        REQUIRE(g->reserve(g->user, 3, n, false, &e) == LB_OK, "reserve: %s", e.msg);
        REQUIRE(c->inv_upper(c->user, NULL, Ac, n, work, &okc, &e) == LB_OK && okc, "cpu inv_upper");
        REQUIRE(g->inv_upper(g->user, NULL, Ag, n, work, &okg, &e) == LB_OK, "gpu inv_upper: %s", e.msg);
        bool lower0 = true;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < i; j++) lower0 &= Ag[i * n + j] == 0;
        const double d = rel_fro(Ag, Ac, n * n);
        printf("inv_upper n %5lld: relative Frobenius difference %.2e\n", (long long)n, d);
        CHECK(okg && d < 1e-9 && lower0, "inv_upper n %lld: ok %d, difference %.3g, lower zero %d", (long long)n, okg, d, lower0);
        /* indefinite: a negative diagonal entry in the middle */
        memcpy(Ag, A, sizeof *A * (size_t)(n * n));
        Ag[(n / 2) * n + n / 2] = -1;
        memcpy(Ac, Ag, sizeof *A * (size_t)(n * n));
        REQUIRE(g->inv_upper(g->user, NULL, Ag, n, work, &okg, &e) == LB_OK, "gpu inv_upper: %s", e.msg);
        CHECK(!okg && !memcmp(Ag, Ac, sizeof *A * (size_t)(n * n)), "inv_upper n %lld: an indefinite A gave ok %d or was changed",
              (long long)n, okg);
        free(A), free(Ac), free(Ag), free(work);
    }
}

/* every element of got against want within the rounding bound 4 k eps mag[i] + 2 eps |want[i]| (the CPU's
 * separately rounded products and differences, 2 k roundings, plus the GPU's k fused ones) */
static int64_t beyond_bound(const float *got, const float *want, const double *mag, int64_t n, int64_t k, double *worst) {
    int64_t bad = 0;
    *worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const double bound = 4.0 * (double)k * EPS32 * mag[i] + 2.0 * EPS32 * fabs(want[i]) + 1e-30;
        const double r = fabs((double)got[i] - want[i]) / bound;
        if (r > *worst) *worst = r;
        bad += !(r <= 1);
    }
    return bad;
}

static void check_update(lb_gptq_ops *g) {
    const lb_gptq_ops *c = lb_gptq_ops_cpu();
    const int64_t rows = 37, n = 301, lde = 53;
    const int64_t cases[][3] = {{0, 53, 106}, {53, 101, 301}, {240, 293, 301}, {100, 137, 137 + 50}};
    float *U = malloc(sizeof *U * (size_t)(n * n)), *T0 = malloc(sizeof *U * (size_t)(rows * n));
    float *Tc = malloc(sizeof *U * (size_t)(rows * n)), *Tg = malloc(sizeof *U * (size_t)(rows * n));
    float *E = malloc(sizeof *E * (size_t)(rows * lde));
    double *mag = malloc(sizeof *mag * (size_t)(rows * n));
    lb_error e;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) U[i * n + j] = j >= i ? (float)(nrand() / (1 + 0.01 * (j - i))) : 0;
    for (int64_t i = 0; i < rows * n; i++) T0[i] = (float)nrand();
    for (int64_t i = 0; i < rows * lde; i++) E[i] = (float)nrand();
    REQUIRE(g->reserve(g->user, rows, n, false, &e) == LB_OK, "reserve: %s", e.msg);
    REQUIRE(g->begin(g->user, U, NULL, rows, n, &e) == LB_OK, "begin: %s", e.msg);
    for (int k = 0; k < 4; k++) {
        const int64_t i1 = cases[k][0], i2 = cases[k][1], i3 = cases[k][2], nb = i2 - i1;
        memcpy(Tc, T0, sizeof *Tc * (size_t)(rows * n));
        memcpy(Tg, T0, sizeof *Tg * (size_t)(rows * n));
        REQUIRE(g->load(g->user, Tg, rows, n, &e) == LB_OK, "load: %s", e.msg);
        REQUIRE(c->update(c->user, NULL, Tc, rows, n, E, lde, U, i1, i2, i3, &e) == LB_OK, "cpu update");
        REQUIRE(g->update(g->user, NULL, Tg, rows, n, E, lde, U, i1, i2, i3, &e) == LB_OK, "gpu update: %s", e.msg);
        int64_t bad = 0, moved = 0;
        double worst = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t col = 0; col < n; col++) {
                double m = fabs((double)T0[r * n + col]);
                for (int64_t q = 0; q < nb && col >= i2; q++) m += fabs((double)E[r * lde + q] * U[(i1 + q) * n + col]);
                mag[r * n + col] = m;
                if (col < i2 || col >= i3) moved += Tg[r * n + col] != T0[r * n + col]; /* not handed back: untouched */
            }
        /* the handed-back columns against the CPU's */
        for (int64_t r = 0; r < rows; r++) {
            double w;
            bad += beyond_bound(Tg + r * n + i2, Tc + r * n + i2, mag + r * n + i2, i3 - i2, nb + 1, &w);
            worst = w > worst ? w : worst;
        }
        printf("update rows %lld, columns %lld..%lld (batch %lld, back to %lld): worst error / bound %.3f\n", (long long)rows,
               (long long)i2, (long long)n, (long long)nb, (long long)i3, worst);
        CHECK(bad == 0 && moved == 0, "update %lld..%lld..%lld: %lld elements beyond the bound, %lld host elements outside "
              "[i2, i3) changed", (long long)i1, (long long)i2, (long long)i3, (long long)bad, (long long)moved);
    }
    /* the device's columns after i3 are updated too: a second update whose next batch covers them */
    memcpy(Tc, T0, sizeof *Tc * (size_t)(rows * n));
    memcpy(Tg, T0, sizeof *Tg * (size_t)(rows * n));
    REQUIRE(g->load(g->user, Tg, rows, n, &e) == LB_OK, "load: %s", e.msg);
    REQUIRE(c->update(c->user, NULL, Tc, rows, n, E, lde, U, 0, 50, 100, &e) == LB_OK, "cpu update");
    REQUIRE(g->update(g->user, NULL, Tg, rows, n, E, lde, U, 0, 50, 100, &e) == LB_OK, "gpu update: %s", e.msg);
    REQUIRE(c->update(c->user, NULL, Tc, rows, n, E, lde, U, 50, 100, n, &e) == LB_OK, "cpu update");
    REQUIRE(g->update(g->user, NULL, Tg, rows, n, E, lde, U, 50, 100, n, &e) == LB_OK, "gpu update: %s", e.msg);
    double num = 0, den = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t col = 100; col < n; col++) {
            const double d = (double)Tg[r * n + col] - Tc[r * n + col];
            num += d * d, den += (double)Tc[r * n + col] * Tc[r * n + col];
        }
    printf("update: two batches in a row, relative difference %.2e\n", sqrt(num / den));
    CHECK(sqrt(num / den) < 1e-5, "two updates in a row: relative difference %.3g", sqrt(num / den));
    free(U), free(T0), free(Tc), free(Tg), free(E), free(mag);
}

static void check_products(lb_gptq_ops *g) {
    const lb_gptq_ops *c = lb_gptq_ops_cpu();
    const int64_t rows = 45, n = 299, K = 131;
    float *W = malloc(sizeof *W * (size_t)(rows * n)), *Q = malloc(sizeof *Q * (size_t)(rows * n));
    float *H = malloc(sizeof *H * (size_t)(n * n)), *Gc = malloc(sizeof *Gc * (size_t)(rows * n)), *Gg = malloc(sizeof *Gg * (size_t)(rows * n));
    double *mag = malloc(sizeof *mag * (size_t)(rows * n));
    bool *sel = malloc((size_t)rows);
    lb_error e;
    for (int64_t i = 0; i < rows * n; i++) {
        W[i] = (float)nrand();
        Q[i] = urand() < 0.2 ? W[i] : W[i] + (float)(0.1 * nrand()); /* some exact zeros in e, as after rounding */
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) H[i * n + j] = H[j * n + i] = (float)(nrand() + (i == j ? 5 : 0));
    for (int64_t r = 0; r < rows; r++) sel[r] = r % 3 != 1;
    for (int64_t i = 0; i < rows * n; i++) Gc[i] = Gg[i] = -7.0f;
    REQUIRE(g->reserve(g->user, rows, n, true, &e) == LB_OK, "reserve: %s", e.msg);
    REQUIRE(g->begin(g->user, H, H, rows, n, &e) == LB_OK, "begin: %s", e.msg); /* U unused here */
    REQUIRE(c->h_times_e(c->user, NULL, W, Q, Gc, rows, n, H, sel, &e) == LB_OK, "cpu h_times_e");
    REQUIRE(g->h_times_e(g->user, NULL, W, Q, Gg, rows, n, H, sel, &e) == LB_OK, "gpu h_times_e: %s", e.msg);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) {
            double m = 0;
            for (int64_t j = 0; j < n; j++) m += fabs(((double)W[r * n + j] - Q[r * n + j]) * H[j * n + i]);
            mag[r * n + i] = m;
        }
    double worst;
    int64_t bad = beyond_bound(Gg, Gc, mag, rows * n, n, &worst), kept = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; !sel[r] && i < n; i++) kept += Gg[r * n + i] == -7.0f;
    printf("h_times_e %lld x %lld: worst error / bound %.3f\n", (long long)rows, (long long)n, worst);
    CHECK(bad == 0 && kept == (rows / 3) * n, "h_times_e: %lld elements beyond the bound, %lld of the unselected rows' kept",
          (long long)bad, (long long)kept);
    /* out (rows, n) = x (rows, K) w^T */
    float *x = malloc(sizeof *x * (size_t)(rows * K)), *w = malloc(sizeof *w * (size_t)(n * K));
    for (int64_t i = 0; i < rows * K; i++) x[i] = (float)nrand();
    for (int64_t i = 0; i < n * K; i++) w[i] = (float)nrand();
    REQUIRE(c->matmul(c->user, NULL, x, rows, w, n, K, Gc, &e) == LB_OK, "cpu matmul");
    REQUIRE(g->matmul(g->user, NULL, x, rows, w, n, K, Gg, &e) == LB_OK, "gpu matmul: %s", e.msg);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) {
            double m = 0;
            for (int64_t k = 0; k < K; k++) m += fabs((double)x[r * K + k] * w[i * K + k]);
            mag[r * n + i] = m;
        }
    bad = beyond_bound(Gg, Gc, mag, rows * n, K, &worst);
    printf("matmul %lld x %lld x %lld: worst error / bound %.3f\n", (long long)rows, (long long)n, (long long)K, worst);
    CHECK(bad == 0, "matmul: %lld elements beyond the bound", (long long)bad);
    free(W), free(Q), free(H), free(Gc), free(Gg), free(mag), free(sel), free(x), free(w);
}

/* ---------------------------------------------------------------- GPTQ whole ------------------------------ */

static void check_gptq(lb_gptq_ops *g, lb_pool *pool) {
    const lb_type types[] = {LB_TYPE_Q4_K, LB_TYPE_Q3_K, LB_TYPE_IQ4_XS};
    const int64_t rows = 67, d = 768;
    double *H0 = malloc(sizeof *H0 * (size_t)(d * d)), *H = malloc(sizeof *H * (size_t)(d * d));
    float *W0 = malloc(sizeof *W0 * (size_t)(rows * d)), *Wc = malloc(sizeof *Wc * (size_t)(rows * d)), *Wg = malloc(sizeof *Wg * (size_t)(rows * d));
    random_spd(H0, d, 3 * d, 0);
    for (int64_t i = 0; i < rows * d; i++) W0[i] = (float)(0.02 * nrand());
    for (int t = 0; t < 3; t++) {
        const size_t bytes = lb_type_row_size(types[t], d) * (size_t)rows;
        uint8_t *qc = malloc(bytes), *qg = malloc(bytes), *qg2 = malloc(bytes);
        lb_gptq_params p;
        lb_gptq_params_default(&p);
        p.passes = 4;
        p.cd_sweeps = 4;
        p.cd_scales = true;
        lb_gptq_stats st;
        lb_error e;
        memcpy(Wc, W0, sizeof *Wc * (size_t)(rows * d));
        memcpy(H, H0, sizeof *H * (size_t)(d * d));
        REQUIRE(lb_gptq_quantize(pool, Wc, rows, d, H, types[t], LB_ENCODER_DEFAULT, &p, qc, NULL, &e) == LB_OK, "%s", e.msg);
        p.ops = g;
        memcpy(Wg, W0, sizeof *Wg * (size_t)(rows * d));
        memcpy(H, H0, sizeof *H * (size_t)(d * d));
        REQUIRE(lb_gptq_quantize(pool, Wg, rows, d, H, types[t], LB_ENCODER_DEFAULT, &p, qg, &st, &e) == LB_OK, "%s", e.msg);
        CHECK(!st.fallback, "%s: fell back: %s", lb_type_name(types[t]), st.fallback_msg);
        memcpy(Wg, W0, sizeof *Wg * (size_t)(rows * d));
        memcpy(H, H0, sizeof *H * (size_t)(d * d));
        REQUIRE(lb_gptq_quantize(pool, Wg, rows, d, H, types[t], LB_ENCODER_DEFAULT, &p, qg2, NULL, &e) == LB_OK, "%s", e.msg);
        const double oc = objective(W0, Wc, rows, d, H0), og = objective(W0, Wg, rows, d, H0);
        size_t diff = 0;
        for (size_t i = 0; i < bytes; i++) diff += qc[i] != qg[i];
        printf("gptq %-7s %lld x %lld: objective cpu %.6g, gpu %.6g (%+.3f %%), %zu of %zu bytes differ\n", lb_type_name(types[t]),
               (long long)rows, (long long)d, oc, og, 100 * (og / oc - 1), diff, bytes);
        CHECK(fabs(og / oc - 1) < 0.01, "%s: GPU objective %.6g vs CPU %.6g", lb_type_name(types[t]), og, oc);
        CHECK(!memcmp(qg, qg2, bytes), "%s: two GPU runs differ", lb_type_name(types[t]));
        /* the encoders on CPU threads (and act-order, whose first pass takes static scales too): the same bytes */
        for (int ao = 0; ao < 2; ao++) {
            p.act_order = ao;
            if (ao) {
                memcpy(Wg, W0, sizeof *Wg * (size_t)(rows * d));
                memcpy(H, H0, sizeof *H * (size_t)(d * d));
                REQUIRE(lb_gptq_quantize(pool, Wg, rows, d, H, types[t], LB_ENCODER_DEFAULT, &p, qg, NULL, &e) == LB_OK, "%s", e.msg);
            }
            setenv("LB_GPU_ENCODE", "0", 1);
            memcpy(Wg, W0, sizeof *Wg * (size_t)(rows * d));
            memcpy(H, H0, sizeof *H * (size_t)(d * d));
            REQUIRE(lb_gptq_quantize(pool, Wg, rows, d, H, types[t], LB_ENCODER_DEFAULT, &p, qg2, &st, &e) == LB_OK, "%s", e.msg);
            setenv("LB_GPU_ENCODE", "1", 1);
            CHECK(!memcmp(qg, qg2, bytes), "%s%s: the GPU's encoders and the CPU's give different bytes, first at %s", lb_type_name(types[t]),
                  ao ? " act-order" : "", where_differ(qg, qg2, bytes, lb_type_traits_get(types[t])->block_bytes, bytes / (size_t)rows));
        }
        /* whole passes on the GPU (the table's pass, default order): the bytes of the columns on CPU threads (the
         * descent's products in plain F32 here: the CPU threads' order of sums; the split products below) */
        setenv("LB_GPU_CD_PREC", "f32", 1);
        p.act_order = false;
        memcpy(Wg, W0, sizeof *Wg * (size_t)(rows * d));
        memcpy(H, H0, sizeof *H * (size_t)(d * d));
        REQUIRE(lb_gptq_quantize(pool, Wg, rows, d, H, types[t], LB_ENCODER_DEFAULT, &p, qg, NULL, &e) == LB_OK, "%s", e.msg);
        __typeof__(g->pass) pass = g->pass;
        __typeof__(g->cd) cd = g->cd;
        CHECK(pass && cd, "the table has no pass or cd (LB_GPU_SWEEP=1)");
        for (int off = 0; off < 2; off++) { /* without the descent on the GPU, then without both */
            g->cd = NULL;
            if (off) g->pass = NULL;
            memcpy(Wg, W0, sizeof *Wg * (size_t)(rows * d));
            memcpy(H, H0, sizeof *H * (size_t)(d * d));
            REQUIRE(lb_gptq_quantize(pool, Wg, rows, d, H, types[t], LB_ENCODER_DEFAULT, &p, qg2, NULL, &e) == LB_OK, "%s", e.msg);
            g->pass = pass;
            g->cd = cd;
            CHECK(!memcmp(qg, qg2, bytes), "%s: the sweep%s on CPU threads gives other bytes than on the GPU, first at %s", lb_type_name(types[t]),
                  off ? "'s columns and descent" : "'s descent",
                  where_differ(qg, qg2, bytes, lb_type_traits_get(types[t])->block_bytes, bytes / (size_t)rows));
        }
        unsetenv("LB_GPU_CD_PREC");
        if (pass && cd) { /* the descent's products in the TF32 split (the default): the CPU's objective within 1 % */
            memcpy(Wg, W0, sizeof *Wg * (size_t)(rows * d));
            memcpy(H, H0, sizeof *H * (size_t)(d * d));
            REQUIRE(lb_gptq_quantize(pool, Wg, rows, d, H, types[t], LB_ENCODER_DEFAULT, &p, qg2, NULL, &e) == LB_OK, "%s", e.msg);
            const double os = objective(W0, Wg, rows, d, H0);
            size_t ds = 0;
            for (size_t i = 0; i < bytes; i++) ds += qg[i] != qg2[i];
            printf("gptq %-7s descent's products split: objective %.6g (%+.3f %% from the CPU's), %zu bytes differ from F32 products\n",
                   lb_type_name(types[t]), os, 100 * (os / oc - 1), ds);
            CHECK(fabs(os / oc - 1) < 0.01, "%s: GPU objective with the split products %.6g vs CPU %.6g", lb_type_name(types[t]), os, oc);
        }
        free(qc), free(qg), free(qg2);
    }
    free(H0), free(H), free(W0), free(Wc), free(Wg);
}

/* ---------------------------------------------------------------- the encoders ---------------------------- */

static void check_encode(lb_gptq_ops *g) {
    const lb_type types[] = {LB_TYPE_Q2_K, LB_TYPE_Q3_K, LB_TYPE_Q4_K, LB_TYPE_Q5_K, LB_TYPE_Q6_K};
    const int64_t rows = 45, ld = 1280, c0 = 256, c1 = 1280; /* blocks 1..4 of each row, and then all of them */
    float *x = malloc(sizeof *x * (size_t)(rows * ld)), *imp = malloc(sizeof *imp * (size_t)ld);
    hard_rows(x, rows, ld, 0);
    hard_importance(imp, ld);
    for (int t = 0; t < 5; t++) {
        CHECK(g->encodes(g->user, types[t], LB_ENCODER_DEFAULT) && !g->encodes(g->user, types[t], LB_ENCODER_REF),
              "%s: encodes", lb_type_name(types[t]));
        const size_t rb = lb_type_row_size(types[t], ld), bytes = rb * (size_t)rows;
        uint8_t *qc = malloc(bytes), *qg = malloc(bytes);
        for (int w = 0; w < 2; w++) {
            const float *im = w ? imp : NULL;
            lb_quantize_fn fn = lb_encoder_get(types[t], LB_ENCODER_DEFAULT);
            fn(x, qc, rows, ld, im);
            memset(qg, 0xA5, bytes);
            lb_error e;
            REQUIRE(g->encode(g->user, types[t], LB_ENCODER_DEFAULT, x, ld, rows, c0, c1, im ? im + c0 : NULL, qg, rb, &e) == LB_OK,
                    "%s", e.msg);
            const size_t bb = lb_type_traits_get(types[t])->block_bytes, skip = (size_t)(c0 / 256) * bb;
            size_t diff = 0, kept = 0;
            for (int64_t r = 0; r < rows; r++)
                for (size_t i = 0; i < rb; i++) {
                    if (i < skip) kept += qg[r * rb + i] == 0xA5;
                    else diff += qg[r * rb + i] != qc[r * rb + i];
                }
            CHECK(diff == 0 && kept == skip * (size_t)rows, "%s%s columns %lld..%lld: %zu bytes differ from the CPU's, %zu of %zu before c0 kept",
                  lb_type_name(types[t]), w ? " (imatrix)" : "", (long long)c0, (long long)c1, diff, kept, skip * (size_t)rows);
            REQUIRE(g->encode(g->user, types[t], LB_ENCODER_DEFAULT, x, ld, rows, 0, ld, im, qg, rb, &e) == LB_OK, "%s", e.msg);
            CHECK(!memcmp(qc, qg, bytes), "%s%s: whole rows differ from the CPU's bytes, first at %s", lb_type_name(types[t]), w ? " (imatrix)" : "",
                  where_differ(qc, qg, bytes, bb, rb));
        }
        printf("encode %-5s %lld x %lld on the GPU: the CPU's bytes with and without importance weights\n", lb_type_name(types[t]),
               (long long)rows, (long long)ld);
        free(qc), free(qg);
    }
    lb_error e;
    CHECK(g->encode(g->user, LB_TYPE_Q4_K, LB_ENCODER_DEFAULT, x, ld, rows, 100, 356, NULL, NULL, 0, &e) == LB_ERR_ARG,
          "unaligned columns accepted");
    free(x), free(imp);
}

/* ---------------------------------------------------------------- the reference target -------------------- */

/* lb_gptq_ref_target with H and (D C)^T kept on the GPU (ref_factor / ref_apply) against the same table's
 * inv_upper / matmul path and the CPU: the relative Frobenius difference of the targets below 1e-4 (F32
 * products of the same values in other orders; the CPU unit test's double-summing table lands near 2e-7). */
static void check_ref_target(lb_gptq_ops *g, lb_pool *pool) {
    const int64_t R = 203, D = 1280, T = 3 * 1280;
    double *H = malloc(sizeof *H * (size_t)(D * D)), *C = malloc(sizeof *C * (size_t)(D * D)), *Cc = malloc(sizeof *Cc * (size_t)(D * D));
    float *W = malloc(sizeof *W * (size_t)(R * D)), *V[3];
    random_spd(H, D, T, 0);
    for (int64_t i = 0; i < D; i++)
        for (int64_t j = 0; j < D; j++) C[i * D + j] = H[i * D + j] * (1 + 0.1 * sin((double)j));
    for (int64_t k = 0; k < R * D; k++) W[k] = (float)(0.02 * nrand());
    lb_gptq_ops plain = *g;
    plain.ref_factor = NULL, plain.ref_apply = NULL;
    const lb_gptq_ops *tables[3] = {NULL, &plain, g};
    bool applied[3];
    lb_error e;
    CHECK(g->ref_factor && g->ref_apply, "the table has no ref_factor / ref_apply (LB_GPU_SWEEP=1)");
    REQUIRE(g->reserve(g->user, R, D, false, &e) == LB_OK, "%s", e.msg);
    /* without input scales, then with AWQ-like ones (C's rows divided by them: on the GPU since (D C)^T is made there) */
    float *sc = malloc(sizeof *sc * (size_t)D);
    for (int64_t j = 0; j < D; j++) sc[j] = (float)(0.5 + urand());
    for (int withs = 0; withs < 2; withs++) {
        for (int t = 0; t < 3; t++) {
            V[t] = malloc(sizeof *W * (size_t)(R * D));
            memcpy(V[t], W, sizeof *W * (size_t)(R * D));
            memcpy(Cc, C, sizeof *C * (size_t)(D * D));
            REQUIRE(lb_gptq_ref_target(pool, &V[t], &R, 1, D, H, Cc, withs ? sc : NULL, 0.05, 6, tables[t], &applied[t], &e) == LB_OK, "%s",
                    e.msg);
        }
        for (int t = 1; t < 3; t++) {
            double num = 0, den = 0;
            for (int64_t k = 0; k < R * D; k++)
                num += ((double)V[t][k] - V[0][k]) * ((double)V[t][k] - V[0][k]), den += (double)V[0][k] * V[0][k];
            printf("ref target %lld x %lld%s %s: relative difference to the CPU's %.2e\n", (long long)R, (long long)D,
                   withs ? " (input scales)" : "", t == 1 ? "through inv_upper / matmul" : "kept on the GPU", sqrt(num / den));
            CHECK(applied[0] && applied[t] && sqrt(num / den) < 1e-4, "ref target (%d%s): applied %d, difference %.3g", t,
                  withs ? ", scales" : "", applied[t], sqrt(num / den));
        }
        for (int t = 0; t < 3; t++) free(V[t]);
    }
    free(H), free(C), free(Cc), free(W), free(sc);
}

/* ---------------------------------------------------------------- AWQ ------------------------------------- */

/* AWQ's clip search on the GPU: lb_awq_clip's clamps and choices exactly (the same float and double operations
 * per block); its scale search: the candidate the CPU picks, or one whose loss is within 1e-4 of it (the loss's
 * F32 products sum in cuBLAS's order), and a loss within 1e-4 of the CPU's */
static void check_awq(lb_gptq_ops *g, lb_pool *pool) {
    const lb_type types[] = {LB_TYPE_Q4_K, LB_TYPE_Q6_K, LB_TYPE_Q3_K};
    const int64_t rows = 97, d = 1024;
    double *H = malloc(sizeof *H * (size_t)(d * d));
    float *w0 = malloc(sizeof *w0 * (size_t)(rows * d)), *wc = malloc(sizeof *wc * (size_t)(rows * d)),
          *wg = malloc(sizeof *wg * (size_t)(rows * d)), *im = malloc(sizeof *im * (size_t)d), *ma = malloc(sizeof *ma * (size_t)d);
    uint8_t *cc = malloc((size_t)(rows * d / 256)), *cg = malloc((size_t)(rows * d / 256));
    random_spd(H, d, 2 * d, 0);
    for (int64_t i = 0; i < rows * d; i++) w0[i] = (float)(0.02 * nrand() * (i % 29 == 7 ? 8 : 1));
    for (int64_t j = 0; j < d; j++) im[j] = (float)H[j * d + j], ma[j] = (float)sqrt(H[j * d + j]) * (j % 11 == 0 ? 4.0f : 1.0f);
    lb_error e;
    for (int t = 0; t < 3; t++) {
        memcpy(wc, w0, sizeof *wc * (size_t)(rows * d));
        memcpy(wg, w0, sizeof *wg * (size_t)(rows * d));
        REQUIRE(lb_awq_clip(pool, wc, rows, d, H, types[t], LB_ENCODER_DEFAULT, im, cc, &e) == LB_OK, "%s", e.msg);
        REQUIRE(g->awq_clip(g->user, wg, rows, d, H, types[t], LB_ENCODER_DEFAULT, im, cg, &e) == LB_OK, "%s", e.msg);
        CHECK(!memcmp(wc, wg, sizeof *wc * (size_t)(rows * d)) && !memcmp(cc, cg, (size_t)(rows * d / 256)),
              "AWQ clip %s: the GPU's clamps or choices differ from the CPU's", lb_type_name(types[t]));
        /* the scale search over one matrix */
        awq_group grp = {1, {w0}, {rows}, {types[t]}};
        float *sc = malloc(sizeof *sc * (size_t)d), *cands = malloc(sizeof *cands * (size_t)(d * (LB_AWQ_GRID + 1)));
        double lc, lg;
        int best = -1;
        REQUIRE(lb_awq_search(pool, &grp, d, H, ma, sc, &lc, &e) == LB_OK, "%s", e.msg);
        for (int a = 0; a <= LB_AWQ_GRID; a++) lb_awq_scales(ma, d, a, cands + (size_t)a * (size_t)d);
        REQUIRE(g->awq_search(g->user, 1, grp.w, grp.rows, grp.type, d, H, cands, LB_AWQ_GRID + 1, &best, &lg, &e) == LB_OK, "%s", e.msg);
        const bool same = best >= 0 && !memcmp(sc, cands + (size_t)best * (size_t)d, sizeof *sc * (size_t)d);
        printf("AWQ %s %lld x %lld: clip the CPU's bytes; search loss cpu %.6g, gpu %.6g (%+.2e), same candidate %d\n",
               lb_type_name(types[t]), (long long)rows, (long long)d, lc, lg, lg / lc - 1, same);
        CHECK(best >= 0 && fabs(lg / lc - 1) < 1e-4, "AWQ search %s: loss %.9g against the CPU's %.9g", lb_type_name(types[t]), lg, lc);
        free(sc), free(cands);
    }
    free(H), free(w0), free(wc), free(wg), free(im), free(ma), free(cc), free(cg);
}

/* ---------------------------------------------------------------- the quantizer --------------------------- */

/* quantize_tiny with GPTQ's solver on CPU threads (LB_GPTQ_GPU=0) or on the GPU */
static void quantize(const char *method, lb_device dev, bool cpu_solver, const int32_t *calib, int64_t n_calib, const char *path) {
    setenv("LB_GPTQ_GPU", cpu_solver ? "0" : "1", 1);
    quantize_tiny(method, dev, calib, n_calib, path);
    unsetenv("LB_GPTQ_GPU");
}

static void check_quantizer(const lb_model *base, const int32_t *calib, int64_t n_calib, const int32_t *ids, int64_t n_ids) {
    char a[128], b[128], c[128];
    const int pid = (int)getpid();
    snprintf(a, sizeof a, "/tmp/lowbit-cuda-gptq-%d-rtn.gguf", pid);
    quantize("rtn", (lb_device){LB_DEVICE_CPU, 0}, false, NULL, 0, a);
    /* round-to-nearest with the block encoders on the GPU (the row path in chunks): the same file */
    snprintf(b, sizeof b, "/tmp/lowbit-cuda-gptq-%d-rtn-gpu.gguf", pid);
    quantize("rtn", cuda0, false, NULL, 0, b);
    CHECK(same_file(a, b), "rtn with the GPU's encoders: another file than on the CPU");
    remove(b);
    const double k_rtn = kld(a, base, ids, n_ids);
    snprintf(a, sizeof a, "/tmp/lowbit-cuda-gptq-%d-cpu.gguf", pid);
    snprintf(b, sizeof b, "/tmp/lowbit-cuda-gptq-%d-gpu1.gguf", pid);
    snprintf(c, sizeof c, "/tmp/lowbit-cuda-gptq-%d-gpu2.gguf", pid);
    quantize("gptq", cuda0, true, calib, n_calib, a);
    quantize("gptq", cuda0, false, calib, n_calib, b);
    quantize("gptq", cuda0, false, calib, n_calib, c);
    CHECK(same_file(b, c), "gptq with the GPU solver: two runs differ");
    const double kc = kld(a, base, ids, n_ids), kg = kld(b, base, ids, n_ids);
    printf("q4_k_m gptq, GPU statistics, KL(base||q): solver on CPU threads %.6f, on the GPU %.6f (%+.2f %%), rtn %.6f\n", kc, kg,
           100 * (kg / kc - 1), k_rtn);
    /* Not worse by more than 15 % (better is fine), and below RTN. One tiny run at 4,096 tokens is a single draw
     * from a wide spread: perturbing only the reference target by a relative 1e-7 .. 2e-6 per value (the size of
     * a summation-order change; test_cuda_gptq_shadow with LB_SHADOW_DRY=1 LB_SHADOW_NOISE=eps, on the CPU) moved
     * this KL from 0.018968 to -2.0 .. +7.5 % in eight runs, and the GPU's runs so far landed at -5.0 .. +10.7 %
     * of the CPU solver's. Each matrix's objective is checked call by call in test_cuda_gptq_shadow (summed
     * within 0.5 %); this bound catches a GPU path that solves worse everywhere. */
    CHECK(kg / kc - 1 < 0.15, "GPU solver KL %.6g vs CPU solver %.6g", kg, kc);
    CHECK(kg < k_rtn, "GPU solver KL %.6g not below RTN %.6g", kg, k_rtn);
    remove(a), remove(b), remove(c);
    snprintf(a, sizeof a, "/tmp/lowbit-cuda-gptq-%d-rtn.gguf", pid);
    remove(a);
}

int main(void) {
    test_rng = 0x2545F4914F6CDD1DULL; /* this test's stream */
    unsetenv("LB_GPU_ENCODE"); /* the defaults: the GPU's block encoders, whole passes, descent and reference target */
    unsetenv("LB_GPU_SWEEP");
    lb_gptq_ops *g = gpu_ops();
    lb_pool *pool = lb_pool_new(4);
    REQUIRE(pool, "pool");
    check_reserve_failure(g);
    check_inv_upper(g);
    check_update(g);
    check_products(g);
    check_encode(g);
    check_ref_target(g, pool);
    check_awq(g, pool);
    check_gptq(g, pool);
    lb_gptq_ops_cuda_free(g);
    lb_pool_free(pool);
    tiny_fixture f = tiny_load();
    check_quantizer(f.m, f.calib, f.n_calib, f.valid, f.n_valid);
    tiny_free(&f);
    TEST_DONE();
}
