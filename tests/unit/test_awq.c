/*
 * test_awq.c - AWQ's scale search against the definition written out here: for a random layer with
 * explicit calibration activations X (tokens, d) whose channels have very different magnitudes, the loss
 * of every grid point is computed directly as sum_t sum_k ||W_k x_t - Q_k x_t||^2 with
 * Q_k = Q(W_k diag(s)) diag(1/s), and the scales lb_awq_search returns must be those of the grid point
 * with the smallest such loss (and its reported loss must equal the direct one).
 */
#include "algo/awq.h"
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

int main(void) {
    run_case(LB_TYPE_Q4_0, 1);
    run_case(LB_TYPE_Q4_K, 3);
    run_case(LB_TYPE_Q3_K, 2);
    TEST_DONE();
}
