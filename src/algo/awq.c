/*
 * awq.c - AWQ's per-channel scale search and clip search (see awq.h).
 */
#include "awq.h"

#include "../quant/grid.h"
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
    float *scratch = malloc(lb_matmul_scratch_floats(d, rmax, lb_pool_size(pool)) * sizeof *scratch);
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

/* ---------------------------------------------------------------- clip search ------------------------ */

typedef struct clip_job {
    float *w;              /* (rows, d), clipped in place */
    const double *H;       /* (d, d) */
    const float *im;       /* (d) or NULL */
    uint8_t *choice;       /* (rows, nb) or NULL */
    int64_t d, be;         /* row length, block elements */
    lb_quantize_fn fn;
    lb_to_float_fn deq;
    bool offset;
    size_t row_bytes, stride; /* bytes of one quantized row; bytes of one thread's scratch */
    uint8_t *scratch;
} clip_job;

/* one row: every ratio clamps the whole row, is encoded and decoded, and scored block by block */
static void clip_row(void *arg, int64_t r, int thread) {
    const clip_job *j = arg;
    const int64_t d = j->d, be = j->be, nb = d / be;
    float *w = j->w + r * d;
    /* scratch: clamped row, decoded row, chosen row (d floats each), block errors (nb), error (be) */
    uint8_t *base = j->scratch + (size_t)thread * j->stride;
    double *berr = (double *)base, *e = berr + nb;
    float *xc = (float *)(e + be), *xq = xc + d, *out = xq + d;
    uint8_t *q = (uint8_t *)(out + d), *ch = j->choice ? j->choice + r * nb : NULL;
    for (int i = 0; i < LB_AWQ_CLIP_STEPS; i++) {
        const float ratio = lb_awq_clip_ratio(i);
        for (int64_t g = 0; g < nb; g++) lb_awq_clamp(w + g * be, be, j->offset, ratio, xc + g * be);
        j->fn(xc, q, 1, d, j->im);
        j->deq(q, xq, d);
        for (int64_t g = 0; g < nb; g++) {
            for (int64_t k = 0; k < be; k++) e[k] = (double)w[g * be + k] - (double)xq[g * be + k];
            double err = lb_awq_block_error(j->H, d, g * be, be, e);
            if (i == 0 || err < berr[g]) { /* strict: ties keep the larger ratio */
                berr[g] = err;
                memcpy(out + g * be, xc + g * be, (size_t)be * sizeof *out);
                if (ch) ch[g] = (uint8_t)i;
            }
        }
    }
    memcpy(w, out, (size_t)d * sizeof *w);
}

lb_status lb_awq_clip(lb_pool *pool, float *w, int64_t rows, int64_t d, const double *H, lb_type type, lb_encoder enc,
                      const float *imatrix, uint8_t *choice, lb_error *err) {
    if (!lb_grid_supported(type)) {
        if (choice) memset(choice, 0, (size_t)(rows * (d / lb_type_block_elems(type))));
        return LB_OK;
    }
    const lb_type_traits *tt = lb_type_traits_get(type);
    const int64_t be = tt->block_elems;
    if (d <= 0 || d % be != 0)
        return lb_err_set(err, LB_ERR_ARG, "AWQ clip: row length %lld is not a multiple of the %s block (%lld)",
                          (long long)d, tt->name, (long long)be);
    clip_job j = {w, H, imatrix, choice, d, be, lb_encoder_get(type, enc), tt->to_float, lb_awq_has_offset(type),
                  lb_type_row_size(type, d), 0, NULL};
    j.stride = (size_t)(d / be + be) * sizeof(double) + (size_t)(3 * d) * sizeof(float) + j.row_bytes;
    j.stride = (j.stride + 63) / 64 * 64; /* keeps each thread's doubles aligned */
    j.scratch = malloc((size_t)lb_pool_size(pool) * j.stride);
    if (!j.scratch) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    lb_pool_run(pool, rows, clip_row, &j);
    free(j.scratch);
    return LB_OK;
}
