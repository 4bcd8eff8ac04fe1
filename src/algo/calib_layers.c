/*
 * calib_layers.c - the layer-by-layer calibration state of calib.h.
 *
 * H = sum_t x_t x_t^T is accumulated per window as one matrix product, X^T X computed by lb_matmul on
 * the transposed window (f32, 512 tokens at a time) and added into f64, so the statistics of a layer
 * cost about as much as running it.
 */
#include "calib.h"

#include "../quant/matmul.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lb_calib {
    const lb_model *m;
    lb_context *ctx;
    lb_pool *pool;
    int64_t n_win, win;    /* windows, tokens per window */
    float *x;              /* (n_win * win, n_embd) */
    double *h[LB_CALIB_POINTS];
    double *abs_sum[LB_CALIB_POINTS];
    float *mean_abs[LB_CALIB_POINTS];
    int64_t dim[LB_CALIB_POINTS];
    int64_t tokens;        /* tokens in the current statistics */
    float *xt, *prod, *scratch; /* transposed window, its product, matmul scratch */
    lb_status st;
    lb_error *err;
};

static void accumulate(lb_calib *c, lb_obs_point pt, const float *x, int64_t T, int64_t dim) {
    /* xt (dim, T) so that lb_matmul gives prod (dim, dim) = xt . xt^T = X^T X */
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < dim; j++) c->xt[j * T + t] = x[t * dim + j];
    lb_weight w = {LB_TYPE_F32, c->xt, dim, T};
    lb_matmul(c->pool, c->scratch, c->xt, dim, &w, c->prod, dim);
    double *h = c->h[pt];
    for (int64_t i = 0; i < dim * dim; i++) h[i] += c->prod[i];
    double *a = c->abs_sum[pt];
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < dim; j++) a[j] += fabsf(x[t * dim + j]);
}

static void observer(void *user, int64_t layer, lb_obs_point pt, const float *x, int64_t T, int64_t dim) {
    lb_calib *c = user;
    accumulate(c, pt, x, T, dim);
    if (pt == LB_OBS_ATTN_IN) c->tokens += T;
}

static void reset_stats(lb_calib *c) {
    for (int k = 0; k < LB_CALIB_POINTS; k++) {
        memset(c->h[k], 0, (size_t)(c->dim[k] * c->dim[k]) * sizeof(double));
        memset(c->abs_sum[k], 0, (size_t)c->dim[k] * sizeof(double));
    }
    c->tokens = 0;
}

static void finish_stats(lb_calib *c) {
    for (int k = 0; k < LB_CALIB_POINTS; k++)
        for (int64_t j = 0; j < c->dim[k]; j++) c->mean_abs[k][j] = c->tokens ? (float)(c->abs_sum[k][j] / (double)c->tokens) : 0.0f;
}

lb_status lb_calib_new(const lb_model *m, const lb_weight *embd, const int32_t *tokens, int64_t n_tokens,
                       const lb_calib_params *p, lb_calib **out, lb_error *err) {
    const lb_model_info *h = &m->info;
    int64_t *starts = NULL, nw = 0;
    lb_status s = lb_calib_windows(n_tokens, p, &starts, &nw, err);
    if (s != LB_OK) return s;
    lb_calib *c = calloc(1, sizeof *c);
    if (!c) {
        free(starts);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    c->m = m;
    c->n_win = nw;
    c->win = p->ctx;
    int64_t dims[LB_CALIB_POINTS] = {h->n_embd, h->n_head * h->head_dim, h->n_embd, h->n_ff, h->n_embd};
    int64_t dmax = 0;
    bool ok = true;
    for (int k = 0; k < LB_CALIB_POINTS; k++) {
        c->dim[k] = dims[k];
        dmax = dims[k] > dmax ? dims[k] : dmax;
        c->h[k] = malloc((size_t)(dims[k] * dims[k]) * sizeof(double));
        c->abs_sum[k] = malloc((size_t)dims[k] * sizeof(double));
        c->mean_abs[k] = malloc((size_t)dims[k] * sizeof(float));
        ok &= c->h[k] && c->abs_sum[k] && c->mean_abs[k];
    }
    int nt = p->n_threads > 0 ? p->n_threads : lb_cpu_count();
    c->pool = lb_pool_new(nt);
    c->x = malloc((size_t)(nw * p->ctx * h->n_embd) * sizeof(float));
    c->xt = malloc((size_t)(dmax * p->ctx) * sizeof(float));
    c->prod = malloc((size_t)(dmax * dmax) * sizeof(float));
    c->scratch = malloc((size_t)nt * lb_matmul_scratch_floats(p->ctx) * sizeof(float));
    ok &= c->pool && c->x && c->xt && c->prod && c->scratch;
    lb_context_params cp = {p->ctx, nt};
    if (!ok) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory for %lld calibration windows", (long long)nw);
    else s = lb_context_new(m, &cp, &c->ctx, err);
    for (int64_t w = 0; s == LB_OK && w < nw; w++)
        for (int64_t t = 0; t < p->ctx; t++) {
            int32_t id = tokens[starts[w] + t];
            if (id < 0 || id >= h->n_vocab) {
                s = lb_err_set(err, LB_ERR_ARG, "calibration token %d is outside the vocabulary", id);
                break;
            }
            lb_weight_row_f32(embd, id, c->x + (w * p->ctx + t) * h->n_embd);
        }
    free(starts);
    if (s != LB_OK) {
        lb_calib_free(c);
        return s;
    }
    lb_context_set_observer(c->ctx, observer, c);
    *out = c;
    return LB_OK;
}

void lb_calib_free(lb_calib *c) {
    if (!c) return;
    lb_context_free(c->ctx);
    lb_pool_free(c->pool);
    for (int k = 0; k < LB_CALIB_POINTS; k++) {
        free(c->h[k]);
        free(c->abs_sum[k]);
        free(c->mean_abs[k]);
    }
    free(c->x);
    free(c->xt);
    free(c->prod);
    free(c->scratch);
    free(c);
}

static lb_status run_layer(lb_calib *c, const lb_layer *l, int64_t il, bool advance, lb_error *err) {
    int64_t E = c->m->info.n_embd;
    float *tmp = advance ? NULL : malloc((size_t)(c->win * E) * sizeof *tmp);
    if (!advance && !tmp) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    lb_status s = LB_OK;
    for (int64_t w = 0; s == LB_OK && w < c->n_win; w++) {
        float *xw = c->x + w * c->win * E;
        if (!advance) memcpy(tmp, xw, (size_t)(c->win * E) * sizeof *tmp);
        s = lb_context_run_layer(c->ctx, l, il, advance ? xw : tmp, c->win, err);
    }
    free(tmp);
    return s;
}

lb_status lb_calib_layer_stats(lb_calib *c, const lb_layer *l, int64_t il, lb_error *err) {
    reset_stats(c);
    lb_context_set_observer(c->ctx, observer, c);
    lb_status s = run_layer(c, l, il, false, err);
    finish_stats(c);
    return s;
}

lb_status lb_calib_layer_advance(lb_calib *c, const lb_layer *l, int64_t il, lb_error *err) {
    lb_context_set_observer(c->ctx, NULL, NULL);
    lb_status s = run_layer(c, l, il, true, err);
    lb_context_set_observer(c->ctx, observer, c);
    return s;
}

lb_status lb_calib_output_stats(lb_calib *c, const float *out_norm, lb_error *err) {
    reset_stats(c);
    int64_t E = c->m->info.n_embd;
    float *xn = malloc((size_t)(c->win * E) * sizeof *xn);
    if (!xn) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    float eps = c->m->info.rms_eps;
    for (int64_t w = 0; w < c->n_win; w++) {
        const float *xw = c->x + w * c->win * E;
        for (int64_t t = 0; t < c->win; t++) {
            double ss = 0;
            for (int64_t j = 0; j < E; j++) ss += (double)xw[t * E + j] * xw[t * E + j];
            float r = (float)(1.0 / sqrt(ss / (double)E + (double)eps));
            for (int64_t j = 0; j < E; j++) xn[t * E + j] = out_norm[j] * (xw[t * E + j] * r);
        }
        accumulate(c, LB_OBS_OUTPUT_IN, xn, c->win, E);
        c->tokens += c->win;
    }
    free(xn);
    finish_stats(c);
    return LB_OK;
}

const double *lb_calib_h(const lb_calib *c, lb_obs_point pt, int64_t *dim) {
    if (dim) *dim = c->dim[pt];
    return c->h[pt];
}

const float *lb_calib_mean_abs(const lb_calib *c, lb_obs_point pt) { return c->mean_abs[pt]; }
int64_t lb_calib_tokens(const lb_calib *c) { return c->tokens; }

void lb_calib_imatrix(const lb_calib *c, lb_obs_point pt, float *out) {
    int64_t d = c->dim[pt];
    for (int64_t j = 0; j < d; j++) out[j] = c->tokens ? (float)(c->h[pt][j * d + j] / (double)c->tokens) : 1.0f;
}
