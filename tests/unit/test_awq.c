/*
 * test_awq.c - AWQ's scale search against the definition written out here: for a random layer with
 * explicit calibration activations X (tokens, d) whose channels have very different magnitudes, the loss
 * of every grid point is computed directly as sum_t sum_k ||W_k x_t - Q_k x_t||^2 with
 * Q_k = Q(W_k diag(s)) diag(1/s), and the scales lb_awq_search returns must be those of the grid point
 * with the smallest such loss (and its reported loss must equal the direct one).
 *
 * The clip search against a slow version written out here: for each row and each candidate ratio
 * r_i = 1 - i/20 (i = 0..9) the whole row is clamped block by block at r_i (symmetric [-r max|w|, r max|w|],
 * or [r min, r max] for formats with an offset), encoded with the default encoder and the importance
 * weights diag(H)/T, decoded, and each block's error e^T H_gg e (e = w - decoded) summed in double over
 * all (a, b). Per block the smallest error wins; on a tie the smaller i (larger r, less clipping), so i = 0
 * (no clip) stays unless a clamp is strictly better. The choices and the clamped weights must match
 * lb_awq_clip's exactly, for 1 and 2 threads, and re-encoding the clamped weights must not raise the
 * summed block error above that of the unclipped weights.
 */
#include "algo/awq.h"
#include "algo/encoders.h"
#include "test.h"

#include <math.h>

static uint64_t rng = 42;
static double unif(void) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static float gauss(void) { return (float)(sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif())); }

static double direct_loss(const awq_group *g, int64_t d, const float *X, int64_t T, const float *s) {
    double loss = 0;
    for (int k = 0; k < g->n; k++) {
        int64_t rows = g->rows[k];
        const lb_type_traits *tt = lb_type_traits_get(g->type[k]);
        size_t rb = lb_type_row_size(g->type[k], d);
        float *ws = malloc((size_t)d * sizeof *ws), *q = malloc((size_t)d * sizeof *q);
        uint8_t *blk = malloc(rb);
        for (int64_t r = 0; r < rows; r++) {
            const float *w = g->w[k] + r * d;
            for (int64_t j = 0; j < d; j++) ws[j] = w[j] * s[j];
            tt->quantize_ref(ws, blk, 1, d, NULL);
            tt->to_float(blk, q, d);
            for (int64_t j = 0; j < d; j++) q[j] /= s[j];
            for (int64_t t = 0; t < T; t++) {
                double y = 0, yq = 0;
                for (int64_t j = 0; j < d; j++) {
                    y += (double)w[j] * X[t * d + j];
                    yq += (double)q[j] * X[t * d + j];
                }
                loss += (y - yq) * (y - yq);
            }
        }
        free(ws), free(q), free(blk);
    }
    return loss;
}

static void run_case(lb_type type, int n_mats) {
    int64_t d = 256, T = 96, rows = 24;
    float *X = malloc((size_t)(T * d) * sizeof *X), *mean_abs = calloc((size_t)d, sizeof *mean_abs);
    float *chan = malloc((size_t)d * sizeof *chan);
    for (int64_t j = 0; j < d; j++) chan[j] = (float)exp(3.0 * gauss()); /* salient channels */
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < d; j++) {
            X[t * d + j] = chan[j] * gauss();
            mean_abs[j] += fabsf(X[t * d + j]) / (float)T;
        }
    double *H = calloc((size_t)(d * d), sizeof *H);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < d; j++) H[i * d + j] += (double)X[t * d + i] * X[t * d + j];
    awq_group g = {n_mats, {NULL}, {0}, {0}};
    float *W[3];
    for (int k = 0; k < n_mats; k++) {
        W[k] = malloc((size_t)(rows * d) * sizeof(float));
        for (int64_t i = 0; i < rows * d; i++) W[k][i] = 0.02f * gauss();
        g.w[k] = W[k];
        g.rows[k] = rows;
        g.type[k] = type;
    }
    float *s = malloc((size_t)d * sizeof *s), *cand = malloc((size_t)d * sizeof *cand);
    double loss;
    lb_error e;
    lb_pool *pool = lb_pool_new(2);
    REQUIRE(lb_awq_search(pool, &g, d, H, mean_abs, s, &loss, &e) == LB_OK, "%s", e.msg);
    double best = INFINITY;
    int best_a = -1;
    for (int a = 0; a <= LB_AWQ_GRID; a++) {
        lb_awq_scales(mean_abs, d, a, cand);
        double l = direct_loss(&g, d, X, T, cand);
        if (l < best) {
            best = l;
            best_a = a;
        }
    }
    lb_awq_scales(mean_abs, d, best_a, cand);
    CHECK(memcmp(cand, s, (size_t)d * sizeof *s) == 0, "%s x%d: the chosen scales are not those of the best grid point (alpha %d/20)",
          lb_type_name(type), n_mats, best_a);
    CHECK(fabs(loss - best) <= 1e-3 * best, "%s: loss via H %.6g vs direct %.6g", lb_type_name(type), loss, best);
    lb_awq_scales(mean_abs, d, 0, cand);
    printf("%s x%d: best alpha %d/20, loss %.4g (alpha 0: %.4g)\n", lb_type_name(type), n_mats, best_a, best,
           direct_loss(&g, d, X, T, cand));
    lb_pool_free(pool);
    for (int k = 0; k < n_mats; k++) free(W[k]);
    free(X), free(mean_abs), free(chan), free(H), free(s), free(cand);
}

/* ---------------------------------------------------------------- clip search ------------------------ */

/* sum over blocks of e^T H_gg e, e = w - Q(w) of one row encoded as the final quantization does */
static double row_block_error(lb_type type, const float *w, const float *x, int64_t d, const double *H, const float *im,
                              int64_t g0, int64_t g1) {
    int64_t be = lb_type_block_elems(type);
    uint8_t *q = malloc(lb_type_row_size(type, d));
    float *xq = malloc((size_t)d * sizeof *xq);
    lb_encoder_get(type, LB_ENCODER_DEFAULT)(x, q, 1, d, im);
    lb_type_traits_get(type)->to_float(q, xq, d);
    double err = 0;
    for (int64_t g = g0; g < g1; g++)
        for (int64_t a = g * be; a < (g + 1) * be; a++)
            for (int64_t b = g * be; b < (g + 1) * be; b++)
                err += ((double)w[a] - xq[a]) * H[a * d + b] * ((double)w[b] - xq[b]);
    free(q), free(xq);
    return err;
}

/* clamp w's blocks at ratio i (symmetric, or [r min, r max] with an offset) into xc */
static void clamp_row(const float *w, int64_t d, int64_t be, bool offset, int i, float *xc) {
    float ratio = 1.0f - (float)i / 20.0f;
    for (int64_t o = 0; o < d; o += be) {
        float mn = INFINITY, mx = -INFINITY, amax = 0;
        for (int64_t k = o; k < o + be; k++) mn = fminf(mn, w[k]), mx = fmaxf(mx, w[k]), amax = fmaxf(amax, fabsf(w[k]));
        float lo = offset ? mn * ratio : -amax * ratio, hi = offset ? mx * ratio : amax * ratio;
        for (int64_t k = o; k < o + be; k++) xc[k] = fminf(fmaxf(w[k], lo), hi);
    }
}

static void run_clip_case(lb_type type, bool offset) {
    const int64_t rows = 16, d = 512, T = 640, be = lb_type_block_elems(type), nb = d / be;
    float *X = malloc((size_t)(T * d) * sizeof *X), *chan = malloc((size_t)d * sizeof *chan);
    for (int64_t j = 0; j < d; j++) chan[j] = (float)exp(gauss());
    for (int64_t i = 0; i < T * d; i++) X[i] = chan[i % d] * gauss();
    double *H = calloc((size_t)(d * d), sizeof *H); /* T > d: SPD */
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < d; j++) H[i * d + j] += (double)X[t * d + i] * X[t * d + j];
    float *im = malloc((size_t)d * sizeof *im);
    for (int64_t j = 0; j < d; j++) im[j] = (float)(H[j * d + j] / (double)T);
    float *W = malloc((size_t)(rows * d) * sizeof *W); /* heavy-tailed, shifted for the offset formats */
    for (int64_t i = 0; i < rows * d; i++) W[i] = 0.02f * gauss() * (unif() < 0.02 ? 6.0f : 1.0f) + (offset ? 0.005f : 0);
    /* the library, on 1 and 2 threads */
    float *W1 = malloc((size_t)(rows * d) * sizeof *W1), *W2 = malloc((size_t)(rows * d) * sizeof *W2);
    uint8_t *c1 = malloc((size_t)(rows * nb)), *c2 = malloc((size_t)(rows * nb));
    memcpy(W1, W, (size_t)(rows * d) * sizeof *W);
    memcpy(W2, W, (size_t)(rows * d) * sizeof *W);
    lb_error e;
    lb_pool *p1 = lb_pool_new(1), *p2 = lb_pool_new(2);
    REQUIRE(lb_awq_clip(p1, W1, rows, d, H, type, LB_ENCODER_DEFAULT, im, c1, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_awq_clip(p2, W2, rows, d, H, type, LB_ENCODER_DEFAULT, im, c2, &e) == LB_OK, "%s", e.msg);
    CHECK(memcmp(W1, W2, (size_t)(rows * d) * sizeof *W) == 0 && memcmp(c1, c2, (size_t)(rows * nb)) == 0,
          "%s: 1 and 2 threads differ", lb_type_name(type));
    /* the slow version, row by row */
    float *xc = malloc((size_t)d * sizeof *xc), *best = malloc((size_t)d * sizeof *best);
    double *berr = malloc((size_t)nb * sizeof *berr), e_none = 0, e_clip = 0;
    int *bi = malloc((size_t)nb * sizeof *bi), bad_choice = 0, bad_w = 0, clipped = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *w = W + r * d;
        for (int i = 0; i < 10; i++) {
            clamp_row(w, d, be, offset, i, xc);
            for (int64_t g = 0; g < nb; g++) {
                double err = row_block_error(type, w, xc, d, H, im, g, g + 1);
                if (i == 0 || err < berr[g]) { /* ties: the smaller i */
                    berr[g] = err;
                    bi[g] = i;
                    memcpy(best + g * be, xc + g * be, (size_t)be * sizeof *best);
                }
            }
        }
        for (int64_t g = 0; g < nb; g++) {
            bad_choice += bi[g] != c1[r * nb + g];
            clipped += bi[g] != 0;
        }
        bad_w += memcmp(best, W1 + r * d, (size_t)d * sizeof *best) != 0;
        e_none += row_block_error(type, w, w, d, H, im, 0, nb);
        e_clip += row_block_error(type, w, W1 + r * d, d, H, im, 0, nb);
    }
    CHECK(bad_choice == 0, "%s: %d blocks chose another ratio than the slow search", lb_type_name(type), bad_choice);
    CHECK(bad_w == 0, "%s: %d rows differ from the slow clip search", lb_type_name(type), bad_w);
    CHECK(clipped > 0, "%s: no block was clipped (the test data should make some clipping pay)", lb_type_name(type));
    CHECK(e_clip <= e_none, "%s: block error after clip %.6g > before %.6g", lb_type_name(type), e_clip, e_none);
    printf("%s clip: %d of %lld blocks clipped, block error %.5g -> %.5g\n", lb_type_name(type), clipped,
           (long long)(rows * nb), e_none, e_clip);
    /* a type without a grid is left alone */
    REQUIRE(lb_awq_clip(p2, W2, rows, d, H, LB_TYPE_F16, LB_ENCODER_DEFAULT, im, NULL, &e) == LB_OK, "%s", e.msg);
    CHECK(memcmp(W1, W2, (size_t)(rows * d) * sizeof *W) == 0, "f16: weights changed");
    lb_pool_free(p1), lb_pool_free(p2);
    free(X), free(chan), free(H), free(im), free(W), free(W1), free(W2), free(c1), free(c2), free(xc), free(best),
        free(berr), free(bi);
}

int main(void) {
    run_case(LB_TYPE_Q4_0, 1);
    run_case(LB_TYPE_Q4_K, 3);
    run_case(LB_TYPE_Q3_K, 2);
    run_clip_case(LB_TYPE_Q4_0, false);
    run_clip_case(LB_TYPE_Q4_1, true);
    run_clip_case(LB_TYPE_Q4_K, true);
    run_clip_case(LB_TYPE_Q2_K, true);
    run_clip_case(LB_TYPE_Q6_K, false);
    TEST_DONE();
}
