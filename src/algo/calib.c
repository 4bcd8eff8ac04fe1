/*
 * calib.c - calibration data: the choice of windows, and the importance matrix (per matrix, the mean
 * squared input activation of each column, llama.cpp tools/imatrix; docs/formats.md 2.6), gathered
 * through the forward pass's observer hook and written in llama.cpp's legacy imatrix file layout.
 */
#include "../model/model.h"
#include "calib.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

lb_calib_params lb_calib_default_params(void) {
    lb_calib_params p;
    memset(&p, 0, sizeof p);
    p.ctx = 512;
    p.n_tokens = 128 * 512;
    p.seed = 1;
    return p;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

lb_status lb_calib_windows(int64_t n_text_tokens, const lb_calib_params *p, int64_t **starts, int64_t *n_windows,
                           lb_error *err) {
    if (!p || !starts || !n_windows || p->ctx < 2) return lb_err_set(err, LB_ERR_ARG, "calibration: invalid window length");
    int64_t avail = n_text_tokens / p->ctx, want = p->n_tokens / p->ctx;
    if (avail < 1)
        return lb_err_set(err, LB_ERR_ARG, "the calibration text has %lld tokens, fewer than one %lld-token window",
                          (long long)n_text_tokens, (long long)p->ctx);
    if (want < 1) return lb_err_set(err, LB_ERR_ARG, "calibration needs at least %lld tokens", (long long)p->ctx);
    int64_t *idx = malloc((size_t)avail * sizeof *idx);
    if (!idx) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < avail; i++) idx[i] = i;
    uint64_t st = p->seed;
    for (int64_t i = avail - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = (int64_t)(splitmix(&st) % (uint64_t)(i + 1)), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    int64_t n = want < avail ? want : avail;
    qsort(idx, (size_t)n, sizeof *idx, cmp_i64);
    for (int64_t i = 0; i < n; i++) idx[i] *= p->ctx;
    *starts = idx;
    *n_windows = n;
    return LB_OK;
}

/* ---------------------------------------------------------------- importance matrix -------------------- */

typedef struct imat_acc {
    const lb_model *m;
    double *sum[5];  /* per point: n_layer (or 1) x dim */
    int64_t dim[5];
    int64_t tokens;
} imat_acc;

static void imat_observe(void *user, int64_t layer, lb_obs_point pt, const float *x, int64_t T, int64_t dim) {
    imat_acc *a = user;
    double *s = a->sum[pt] + (pt == LB_OBS_OUTPUT_IN ? 0 : layer) * dim;
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < dim; j++) s[j] += (double)x[t * dim + j] * x[t * dim + j];
    if (pt == LB_OBS_OUTPUT_IN) a->tokens += T;
}

/* the file is built in memory (it is small: one float per input column of each matrix), then written */
typedef struct dat_buf {
    uint8_t *p;
    size_t n, cap;
    bool nomem;
} dat_buf;

static void put_bytes(dat_buf *b, const void *p, size_t n) {
    if (b->nomem) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->nomem = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_i32(dat_buf *b, int32_t v) { put_bytes(b, &v, 4); }

/* one entry; fails (naming the entry and the first bad column) when a mean is not finite */
static lb_status put_entry(dat_buf *b, const char *name, int32_t ncall, const double *sum, int64_t dim, int64_t tokens,
                           lb_error *err) {
    put_i32(b, (int32_t)strlen(name));
    put_bytes(b, name, strlen(name));
    put_i32(b, ncall);
    put_i32(b, (int32_t)dim);
    for (int64_t j = 0; j < dim; j++) {
        float v = (float)(sum[j] / (double)tokens * ncall); /* the layout stores mean * ncall */
        if (!isfinite(v))
            return lb_err_set(err, LB_ERR_FORMAT, "importance matrix %s: value %lld is %s (the model's activations overflow: "
                              "are its weights finite?)", name, (long long)j, isnan(v) ? "NaN" : "infinite");
        put_bytes(b, &v, 4);
    }
    return LB_OK;
}

static lb_status write_dat(const imat_acc *a, int32_t ncall, const char *dataset, const char *path, lb_error *err) {
    const lb_model_info *h = &a->m->info;
    static const struct { lb_obs_point pt; const char *suffix; } E[] = {
        {LB_OBS_ATTN_IN, "attn_q"}, {LB_OBS_ATTN_IN, "attn_k"}, {LB_OBS_ATTN_IN, "attn_v"}, {LB_OBS_ATTN_OUT_IN, "attn_output"},
        {LB_OBS_FFN_IN, "ffn_gate"}, {LB_OBS_FFN_IN, "ffn_up"}, {LB_OBS_FFN_DOWN_IN, "ffn_down"},
    };
    dat_buf b = {0};
    put_i32(&b, (int32_t)(h->n_layer * 7 + 1));
    char name[96];
    lb_status s = LB_OK;
    for (int64_t l = 0; s == LB_OK && l < h->n_layer; l++)
        for (int k = 0; s == LB_OK && k < 7; k++) {
            snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)l, E[k].suffix);
            s = put_entry(&b, name, ncall, a->sum[E[k].pt] + l * a->dim[E[k].pt], a->dim[E[k].pt], a->tokens, err);
        }
    if (s == LB_OK)
        s = put_entry(&b, h->tied_embeddings ? "token_embd.weight" : "output.weight", ncall, a->sum[LB_OBS_OUTPUT_IN], h->n_embd,
                      a->tokens, err);
    put_i32(&b, ncall);
    put_i32(&b, (int32_t)strlen(dataset));
    put_bytes(&b, dataset, strlen(dataset));
    if (s == LB_OK && b.nomem) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    lb_outfile of;
    if (s == LB_OK && (s = lb_outfile_open(&of, path, err)) == LB_OK) {
        s = lb_outfile_write(&of, b.p, b.n, err);
        if (s == LB_OK) s = lb_outfile_commit(&of, err);
        else lb_outfile_abort(&of);
    }
    free(b.p);
    return s;
}

/* The sums layer by layer through lb_calib (diagonal-only statistics of the four points in one run of every window, the
 * unquantized layer moving the stream on, then the head's input): the windows stay on the device between layers
 * and only the sums come back, where the observer path copies every activation to the host. */
static lb_status imatrix_layerwise(const lb_model *m, const int32_t *tokens, int64_t n_tokens, const lb_calib_params *p, imat_acc *a,
                                   lb_error *err) {
    const lb_model_info *h = &m->info;
    lb_calib *cal = NULL;
    lb_calib_params cp = *p;
    cp.progress = NULL;
    lb_status s = lb_calib_new(m, &m->tok_embd, NULL, tokens, n_tokens, &cp, &cal, err);
    if (s == LB_OK) lb_calib_set_diag_only(cal, true);
    static const lb_obs_point pts[4] = {LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN, LB_OBS_FFN_IN, LB_OBS_FFN_DOWN_IN};
    /* steps 0 .. n_layer - 1: a layer's four points, then the layer moves X on; step n_layer: the head's input */
    for (int64_t il = 0; s == LB_OK && il <= h->n_layer; il++) {
        const bool head = il == h->n_layer;
        s = head ? lb_calib_output_stats(cal, m->out_norm, err) : lb_calib_layer_diag_stats(cal, &m->layers[il], il, err);
        for (int k = 0; s == LB_OK && k < (head ? 1 : 4); k++) {
            const lb_obs_point pt = head ? LB_OBS_OUTPUT_IN : pts[k];
            const double *d = lb_calib_h_diag(cal, pt);
            if (!d) s = lb_err_set(err, LB_ERR_DEVICE, "imatrix: step %lld has no statistics at point %d", (long long)il, (int)pt);
            else memcpy(a->sum[pt] + (head ? 0 : il) * a->dim[pt], d, (size_t)a->dim[pt] * sizeof(double));
        }
        if (s == LB_OK && !head) s = lb_calib_layer_advance(cal, &m->layers[il], NULL, il, err);
        if (s == LB_OK && p->progress && p->progress(il + 1, h->n_layer + 1, p->progress_user))
            s = lb_err_set(err, LB_ERR_CANCELLED, "cancelled");
    }
    if (s == LB_OK) a->tokens = lb_calib_tokens(cal);
    lb_calib_free(cal);
    return s;
}

/* The sums through the forward pass's observer, the windows at starts[0..nw) one after another. */
static lb_status imatrix_observed(const lb_model *m, const int32_t *tokens, const int64_t *starts, int64_t nw, const lb_calib_params *p,
                                  imat_acc *a, lb_error *err) {
    lb_context *c = NULL;
    float *logits = NULL;
    lb_context_params cp = {.n_ctx = p->ctx, .n_threads = p->n_threads, .device = p->device};
    lb_status s = lb_context_new(m, &cp, &c, err);
    if (s == LB_OK && !(logits = malloc((size_t)(p->ctx * m->info.n_vocab) * sizeof *logits)))
        s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (s == LB_OK) lb_context_set_observer(c, imat_observe, a);
    for (int64_t w = 0; s == LB_OK && w < nw; w++) {
        lb_context_reset(c);
        s = lb_context_eval(c, tokens + starts[w], p->ctx, logits, 1, err);
        if (s == LB_OK && p->progress && p->progress(w + 1, nw, p->progress_user)) s = lb_err_set(err, LB_ERR_CANCELLED, "cancelled");
    }
    lb_context_free(c);
    free(logits);
    return s;
}

lb_status lb_imatrix_compute(const lb_model *m, const int32_t *tokens, int64_t n_tokens, const lb_calib_params *p,
                             const char *dataset, const char *out_path, lb_error *err) {
    return lb_imatrix_compute_ex(m, tokens, n_tokens, p, dataset, out_path, p && p->device.kind != LB_DEVICE_CPU, err);
}

lb_status lb_imatrix_compute_ex(const lb_model *m, const int32_t *tokens, int64_t n_tokens, const lb_calib_params *p,
                                const char *dataset, const char *out_path, bool layerwise, lb_error *err) {
    if (!m || !tokens || !p || !out_path) return lb_err_set(err, LB_ERR_ARG, "lb_imatrix_compute: NULL argument");
    const lb_model_info *h = &m->info;
    int64_t *starts = NULL, nw = 0;
    const char *inputs[1] = {m->path};
    lb_status s = lb_output_check(out_path, inputs, 1, err);
    if (s == LB_OK) s = lb_calib_windows(n_tokens, p, &starts, &nw, err);
    if (s != LB_OK) return s;
    imat_acc a = {m, {NULL}, {h->n_embd, h->n_head * h->head_dim, h->n_embd, h->n_ff, h->n_embd}, 0};
    for (int k = 0; k < 5; k++) {
        a.sum[k] = calloc((size_t)(k == LB_OBS_OUTPUT_IN ? 1 : h->n_layer) * (size_t)a.dim[k], sizeof(double));
        if (!a.sum[k]) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    if (s == LB_OK && layerwise) s = imatrix_layerwise(m, tokens, n_tokens, p, &a, err);
    else if (s == LB_OK) s = imatrix_observed(m, tokens, starts, nw, p, &a, err);
    if (s == LB_OK) s = write_dat(&a, (int32_t)nw, dataset ? dataset : "", out_path, err);
    free(starts);
    for (int k = 0; k < 5; k++) free(a.sum[k]);
    return s;
}
