/*
 * awq.c - AWQ's per-channel scale search (see awq.h).
 */
#include "awq.h"

#include "../quant/matmul.h"
#include "encoders.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void lb_awq_scales(const float *mean_abs, int64_t d, int a, float *s) {
    double alpha = (double)a / LB_AWQ_GRID, mx = 0, mn = INFINITY;
    for (int64_t j = 0; j < d; j++) {
        double v = pow(mean_abs[j] > 1e-4 ? mean_abs[j] : 1e-4, alpha);
        s[j] = (float)v;
        mx = v > mx ? v : mx;
        mn = v < mn ? v : mn;
    }
    float norm = (float)sqrt(mx * mn);
    for (int64_t j = 0; j < d; j++) s[j] /= norm;
}

/* sum over rows of e_r^T H e_r for E = W - Q (rows, d), with H given as f32 (d, d) */
static double output_error(lb_pool *pool, float *scratch, const float *e, int64_t rows, int64_t d, const float *hf,
                           float *eh) {
    lb_weight hw = {LB_TYPE_F32, hf, d, d};
    lb_matmul(pool, scratch, e, rows, &hw, eh, d); /* eh = E H (H symmetric) */
    double s = 0;
    for (int64_t i = 0; i < rows * d; i++) s += (double)eh[i] * e[i];
    return s;
}

lb_status lb_awq_search(lb_pool *pool, const awq_group *g, int64_t d, const double *H, const float *mean_abs, float *s,
                            double *best_loss, lb_error *err) {
    int64_t rmax = 0;
    for (int k = 0; k < g->n; k++) rmax = g->rows[k] > rmax ? g->rows[k] : rmax;
    float *hf = malloc((size_t)(d * d) * sizeof *hf), *ws = malloc((size_t)(rmax * d) * sizeof *ws);
    float *eh = malloc((size_t)(rmax * d) * sizeof *eh), *cand = malloc((size_t)d * sizeof *cand);
    uint8_t *q = malloc(lb_type_row_size(LB_TYPE_F32, d) * (size_t)rmax);
    float *scratch = malloc((size_t)lb_pool_size(pool) * lb_matmul_scratch_floats(d) * sizeof *scratch);
    if (!hf || !ws || !eh || !cand || !q || !scratch) {
        free(hf), free(ws), free(eh), free(cand), free(q), free(scratch);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; i < d * d; i++) hf[i] = (float)H[i];
    *best_loss = INFINITY;
    for (int a = 0; a <= LB_AWQ_GRID; a++) {
        lb_awq_scales(mean_abs, d, a, cand);
        double loss = 0;
        for (int k = 0; k < g->n; k++) {
            const lb_type_traits *tt = lb_type_traits_get(g->type[k]);
            int64_t rows = g->rows[k];
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < d; j++) ws[r * d + j] = g->w[k][r * d + j] * cand[j];
            lb_encode_rows(pool, lb_encoder_get(g->type[k], LB_ENCODER_REF), ws, rows, d, g->type[k], NULL, q);
            for (int64_t r = 0; r < rows; r++) {
                tt->to_float(q + (size_t)r * lb_type_row_size(g->type[k], d), ws + r * d, d);
                for (int64_t j = 0; j < d; j++) ws[r * d + j] = g->w[k][r * d + j] - ws[r * d + j] / cand[j];
            }
            loss += output_error(pool, scratch, ws, rows, d, hf, eh);
        }
        if (loss < *best_loss) {
            *best_loss = loss;
            memcpy(s, cand, (size_t)d * sizeof *s);
        }
    }
    free(hf), free(ws), free(eh), free(cand), free(q), free(scratch);
    return LB_OK;
}

