/*
 * calib_quant.c - calibrated quantization of one decoder layer (or the output head) from the layer's
 * activation statistics (calib.h):
 * - imatrix: the encoder weighted by E[x_j^2] = diag(H)/N (llama.cpp's importance matrix, docs/formats.md 2.6);
 * - GPTQ (gptq.h) with the layer's H (the driver's defaults: 4 passes and 4 coordinate-descent sweeps);
 * - AWQ (Lin et al. 2023; docs/formats.md 5): per input channel scales s = mean|x|^alpha (normalized by
 *   sqrt(max s * min s)), alpha searched on a grid of 21 values for the smallest output error
 *   sum_k tr((W_k - Q_k) H (W_k - Q_k)^T), where Q_k = Q(W_k diag(s)) diag(1/s) — which H gives exactly,
 *   without keeping activations. The scales are folded into what produces the input: the attention / FFN
 *   norm weights for q,k,v and gate,up; the rows of up_proj for down_proj; the rows of v_proj for o_proj
 *   when every attention head has its own v head (no grouped-query sharing). For awq, AWQ's clip search
 *   (lb_awq_clip) then clamps each block of v, o, gate, up and down (not q and k, which feed the attention
 *   scores) to the range with the smallest output error under H' = diag(1/s) H diag(1/s), and the clamped
 *   scaled weights are quantized by the weighted encoder; awq+gptq runs GPTQ with H' on the unclamped
 *   scaled weights.
 */
#include "calib.h"

#include "../quant/matmul.h"
#include "encoders.h"
#include "awq.h"
#include "gptq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* the 7 matrices of a layer and the point that feeds each */
static const lb_obs_point POINT[7] = {LB_OBS_ATTN_IN, LB_OBS_ATTN_IN, LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN,
                                      LB_OBS_FFN_IN, LB_OBS_FFN_IN, LB_OBS_FFN_DOWN_IN};

static const lb_weight *layer_matrix(const lb_layer *l, int k) {
    const lb_weight *w[7] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
    return w[k];
}

/* W (rows, cols) as f32 */
typedef struct conv_job {
    const lb_weight *w;
    float *x;
} conv_job;

#define CONV_ROWS 64
static void conv_task(void *arg, int64_t task, int thread) {
    const conv_job *j = arg;
    const int64_t r0 = task * CONV_ROWS, r1 = r0 + CONV_ROWS < j->w->rows ? r0 + CONV_ROWS : j->w->rows;
    (void)thread;
    for (int64_t r = r0; r < r1; r++) lb_weight_row_f32(j->w, r, j->x + r * j->w->cols);
}

/* w as F32 into x (rows x cols floats, or a malloc'd buffer when x is NULL), its rows converted on the pool (may be
 * NULL): the same floats as row by row; NULL when out of memory */
static float *to_f32_pool(lb_pool *pool, const lb_weight *w, float *x) {
    conv_job j = {w, x ? x : malloc((size_t)(w->rows * w->cols) * sizeof(float))};
    if (j.x) lb_pool_run(pool, (w->rows + CONV_ROWS - 1) / CONV_ROWS, conv_task, &j);
    return j.x;
}


/* ---------------------------------------------------------------- the layer ---------------------------- */

typedef struct layer_work {
    float *w[7];      /* f32 copies of the 7 matrices (scaled by AWQ); lb_calib_work_f32's, not freed here */
    float *s_in[4];   /* AWQ input scales per point (NULL: 1) */
    double *h;        /* H of the current point, scaled */
} layer_work;

static void free_work(layer_work *lw) {
    for (int k = 0; k < 4; k++) free(lw->s_in[k]);
    free(lw->h);
}

/* The calibration's device table when it takes AWQ for these types (the k-quants, while the GPU encoders are
 * enabled: `encodes`), else NULL. */
static const lb_gptq_ops *awq_ops(lb_calib *c, const lb_type *types, int n) {
    const lb_gptq_ops *o = lb_calib_gptq_ops(c);
    if (!o || !o->encodes) return NULL;
    for (int k = 0; k < n; k++)
        if (!o->encodes(o->user, types[k], LB_ENCODER_DEFAULT)) return NULL;
    return o;
}

/* lb_awq_search, on the device when its table takes the group: the candidates' scales made here, each scored there */
static lb_status awq_search(lb_calib *c, lb_pool *pool, const awq_group *grp, int64_t d, const double *H, const float *mean_abs, float *s,
                            double *loss, lb_error *err) {
    const lb_gptq_ops *o = awq_ops(c, grp->type, grp->n);
    if (!o || !o->awq_search) return lb_awq_search(pool, grp, d, H, mean_abs, s, loss, err);
    float *cands = malloc((size_t)(LB_AWQ_GRID + 1) * (size_t)d * sizeof *cands);
    if (!cands) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    for (int a = 0; a <= LB_AWQ_GRID; a++) lb_awq_scales(mean_abs, d, a, cands + (size_t)a * (size_t)d);
    int best = -1;
    const double t0 = lb_time_sec();
    lb_status st = o->awq_search(o->user, grp->n, grp->w, grp->rows, grp->type, d, H, cands, LB_AWQ_GRID + 1, &best, loss, err);
    if (st == LB_OK && best >= 0) memcpy(s, cands + (size_t)best * (size_t)d, (size_t)d * sizeof *s);
    else if (st == LB_OK) st = lb_err_set(err, LB_ERR_ARG, "AWQ: no candidate scale has a finite loss (non-finite statistics)");
    double sec[LB_GPTQ_PHASES] = {0};
    sec[LB_GPTQ_PH_ENCODE] = lb_time_sec() - t0;
    lb_calib_note_gptq(c, sec, 0);
    free(cands);
    return st;
}

/* AWQ: scales per group, each from its input's statistics on the unquantized layer, applied to the
 * matrices (columns * s) and to what feeds them (/ s) */
static lb_status awq_apply(lb_calib *c, lb_pool *pool, const lb_model *m, int64_t il, const lb_type types[7],
                           layer_work *lw, float *norms[2], float *bv_scaled, lb_error *err) {
    const lb_model_info *h = &m->info;
    bool mha = h->n_head == h->n_head_kv;
    /* groups: (q,k,v) <- attn_norm; (o) <- v rows if MHA; (gate,up) <- ffn_norm; (down) <- up rows */
    struct { int pt; int mats[3]; int n; } G[4] = {{LB_OBS_ATTN_IN, {0, 1, 2}, 3}, {LB_OBS_ATTN_OUT_IN, {3}, 1},
                                                  {LB_OBS_FFN_IN, {4, 5}, 2}, {LB_OBS_FFN_DOWN_IN, {6}, 1}};
    for (int g = 0; g < 4; g++) {
        if (g == 1 && !mha) continue;
        lb_status st = lb_calib_layer_stats(c, &m->layers[il], NULL, (lb_obs_point)G[g].pt, il, err);
        if (st != LB_OK) return st;
        int64_t d;
        const double *H = lb_calib_h(c, (lb_obs_point)G[g].pt, &d);
        awq_group grp = {G[g].n, {NULL}, {0}, {0}};
        for (int k = 0; k < G[g].n; k++) {
            int mi = G[g].mats[k];
            grp.w[k] = lw->w[mi];
            grp.rows[k] = layer_matrix(&m->layers[0], mi)->rows;
            grp.type[k] = types[mi];
        }
        float *s = malloc((size_t)d * sizeof *s);
        double loss;
        if (!s) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        st = awq_search(c, pool, &grp, d, H, lb_calib_mean_abs(c, (lb_obs_point)G[g].pt), s, &loss, err);
        if (st != LB_OK) {
            free(s);
            return st;
        }
        lw->s_in[G[g].pt] = s;
        for (int k = 0; k < G[g].n; k++) { /* columns of the consumers * s */
            int mi = G[g].mats[k];
            for (int64_t r = 0; r < grp.rows[k]; r++)
                for (int64_t j = 0; j < d; j++) lw->w[mi][r * d + j] *= s[j];
        }
        /* the producer / s */
        if (g == 0) for (int64_t j = 0; j < d; j++) norms[0][j] /= s[j];
        if (g == 2) for (int64_t j = 0; j < d; j++) norms[1][j] /= s[j];
        if (g == 1) { /* v rows (and bias) */
            int64_t cols = h->n_embd;
            for (int64_t j = 0; j < d; j++) {
                for (int64_t i = 0; i < cols; i++) lw->w[2][j * cols + i] /= s[j];
                if (bv_scaled) bv_scaled[j] /= s[j];
            }
        }
        if (g == 3) { /* up rows */
            int64_t cols = h->n_embd;
            for (int64_t j = 0; j < d; j++)
                for (int64_t i = 0; i < cols; i++) lw->w[5][j * cols + i] /= s[j];
        }
    }
    return LB_OK;
}

/* AWQ's clip search on matrix k (not q or k, which feed the attention scores) with the scaled H and the
 * importance weights diag(H')/N that quantize_matrix gives the encoder */
static lb_status awq_clip(lb_calib *c, lb_pool *pool, const lb_layer *l, int k, const lb_type types[7], lb_encoder enc,
                          layer_work *lw, lb_error *err) {
    int64_t tokens = lb_calib_tokens(c);
    const lb_weight *w = layer_matrix(l, k);
    int64_t d = w->cols;
    float *im = malloc((size_t)d * sizeof *im);
    if (!im) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; j < d; j++) im[j] = tokens ? (float)(lw->h[j * d + j] / (double)tokens) : 1.0f;
    const lb_gptq_ops *o = awq_ops(c, &types[k], 1);
    lb_status s = o && o->awq_clip ? o->awq_clip(o->user, lw->w[k], w->rows, d, lw->h, types[k], enc, im, NULL, err)
                                   : lb_awq_clip(pool, lw->w[k], w->rows, d, lw->h, types[k], enc, im, NULL, err);
    free(im);
    return s;
}

/* H of point p, scaled by 1/s (x' = x / s), into lw->h */
static lb_status scaled_h(lb_calib *c, lb_obs_point p, layer_work *lw, lb_error *err) {
    int64_t d;
    const double *H = lb_calib_h(c, p, &d);
    free(lw->h);
    lw->h = malloc((size_t)(d * d) * sizeof(double));
    if (!lw->h) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    const float *s = lw->s_in[p];
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++) lw->h[i * d + j] = s ? H[i * d + j] / ((double)s[i] * s[j]) : H[i * d + j];
    return LB_OK;
}

/* Where GPTQ's algebra runs for a matrix of rows x d (cd: with the coordinate descent): the calibration's
 * device table when it can take the matrix, else NULL (the CPU), noted as a fallback. */
static const lb_gptq_ops *ops_for(lb_calib *c, int64_t rows, int64_t d, bool cd) {
    const lb_gptq_ops *o = lb_calib_gptq_ops(c);
    if (!o || !o->reserve) return o;
    lb_error e = {0};
    if (o->reserve(o->user, rows, d, cd, &e) == LB_OK) return o;
    lb_calib_note_fallback(c, e.msg);
    return NULL;
}

/* GPTQ of one f32 matrix (rows, d) into y by a solver: its table when the table can take the matrix (else
 * the CPU, the reason in why, sizeof(lb_error.msg) bytes), its pool. GPTQ overwrites H: it works on a copy, or on H_own (the same
 * statistics, owned by the caller) when given. Touches nothing shared: solvers run side by side. */
static lb_status gptq_matrix(const lb_calib_solver *sv, float *w, int64_t rows, int64_t d, const double *H, double *H_own,
                             int64_t tokens, lb_type t, lb_encoder enc, const lb_gptq_params *gp, uint8_t *y, lb_gptq_stats *st,
                             char *why, lb_error *err) {
    why[0] = 0;
    double *hc = H_own ? H_own : lb_gptq_scratch_h(sv->scratch, d * d);
    if (!hc) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (!H_own) memcpy(hc, H, (size_t)(d * d) * sizeof *hc);
    /* H from few tokens per column is a noisy estimate: damp it harder towards its mean diagonal */
    lb_gptq_params p = *gp;
    if (tokens < LB_GPTQ_FEW_TOKENS_PER_COL * d && p.few_tokens_damp > p.damp) p.damp = p.few_tokens_damp;
    p.ops = sv->ops;
    p.scratch = sv->scratch;
    if (p.ops && p.ops->reserve) {
        lb_error e = {0};
        if (p.ops->reserve(p.ops->user, rows, d, p.cd_sweeps > 0, &e) != LB_OK) {
            memcpy(why, e.msg, sizeof e.msg);
            p.ops = NULL;
        }
    }
    lb_status s = lb_gptq_quantize(sv->pool, w, rows, d, hc, t, enc, &p, y, st, err);
    if (!H_own && !sv->scratch) free(hc);
    return s;
}

/* what gptq_matrix noted, into c */
static void note_matrix(lb_calib *c, const lb_gptq_stats *st, const char *why) {
    if (why[0]) lb_calib_note_fallback(c, why);
    if (st->fallback) lb_calib_note_fallback(c, st->fallback_msg);
    lb_calib_note_gptq(c, st->seconds, 0);
}

/* quantize one f32 matrix (rows, d) by the method into y (GPTQ: gptq_matrix on the calibration's device) */
static lb_status quantize_matrix(lb_calib *c, lb_pool *pool, float *w, int64_t rows, int64_t d, const double *H, double *H_own,
                                 const double *hdiag, int64_t tokens, lb_type t, lb_method method, lb_encoder enc,
                                 const lb_gptq_params *gp, uint8_t *y, lb_error *err) {
    if (method == LB_METHOD_GPTQ || method == LB_METHOD_AWQ_GPTQ) {
        const lb_calib_solver sv = lb_calib_main_solver(c, pool);
        lb_gptq_stats st;
        char why[LB_ERROR_MAX];
        lb_status s = gptq_matrix(&sv, w, rows, d, H, H_own, tokens, t, enc, gp, y, &st, why, err);
        if (s == LB_OK) note_matrix(c, &st, why);
        return s;
    }
    float *im = malloc((size_t)d * sizeof *im);
    if (!im) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; j < d; j++) im[j] = tokens ? (float)((hdiag ? hdiag[j] : H[j * d + j]) / (double)tokens) : 1.0f;
    /* on a device that has the type's encoder: there (the same bytes), else on the pool */
    const lb_gptq_ops *o = lb_calib_gptq_ops(c);
    if (o && o->encode && o->encodes && o->encodes(o->user, t, enc)) {
        lb_error e = {0};
        const double t0 = lb_time_sec();
        lb_status s = o->encode(o->user, t, enc, w, d, rows, 0, d, im, y, lb_type_row_size(t, d), &e);
        if (s == LB_OK) {
            double sec[LB_GPTQ_PHASES] = {0};
            sec[LB_GPTQ_PH_ENCODE] = lb_time_sec() - t0;
            lb_calib_note_gptq(c, sec, 0);
            free(im);
            return LB_OK;
        }
        lb_calib_note_fallback(c, e.msg);
    }
    lb_encode_rows(pool, lb_encoder_get(t, enc), w, rows, d, t, im, y);
    free(im);
    return LB_OK;
}

/* GPTQ's sequential order within a layer: the statistics of each stage's input come from the layer with
 * the matrices of the stages before already quantized (q, k, v | o | gate, up | down). */
static const int STAGE_FIRST[5] = {0, 3, 4, 6, 7};

/* The layer as it stands: matrices [0, nq) quantized (out), the rest the f32 work copies; scaled norms. */
static lb_layer current_layer(const lb_layer *orig, const lb_type types[7], uint8_t *const out[7], const layer_work *lw,
                              int nq, float *norms[2], float *bv) {
    lb_layer q = *orig;
    lb_weight *qw[7] = {&q.wq, &q.wk, &q.wv, &q.wo, &q.w_gate, &q.w_up, &q.w_down};
    for (int k = 0; k < 7; k++)
        *qw[k] = k < nq ? (lb_weight){types[k], out[k], qw[k]->rows, qw[k]->cols}
                        : (lb_weight){LB_TYPE_F32, lw->w[k], qw[k]->rows, qw[k]->cols};
    q.attn_norm = norms[0];
    q.ffn_norm = norms[1];
    if (bv) q.bv = bv;
    return q;
}

/* Pieces of GPTQ work on several solvers at once (lb_calib_solvers): a stage's matrices, or the row panels of
 * a matrix alone in its stage (GPTQ's rows are independent given H: a panel's blocks are the whole matrix's
 * bytes). Each piece goes to one solver, the largest first to the solver with the fewest rows so far; every
 * piece gets its own H (copies made before the run, the last piece takes the calibration's), and what they
 * note reaches c afterwards in piece order, so the bytes and the report are the sequential loop's. */
#define MAX_PIECES (LB_MAX_DEVICES > 3 ? LB_MAX_DEVICES : 3)
typedef struct piece {
    float *w;       /* (rows, d) */
    int64_t rows;
    uint8_t *y;     /* its blocks */
    lb_type t;
    double *h;      /* its H */
    int solver;
    lb_gptq_stats st;
    char why[LB_ERROR_MAX];
    lb_status s;
    lb_error e;
} piece;

typedef struct side_job {
    const lb_calib_solver *sv;
    int n;
    piece p[MAX_PIECES];
    int64_t d, tokens;
    lb_encoder enc;
    const lb_gptq_params *gp;
} side_job;

static void side_task(void *arg, int64_t task, int thread) {
    side_job *j = arg;
    (void)thread;
    for (int i = 0; i < j->n; i++) {
        piece *q = &j->p[i];
        if (q->solver == (int)task)
            q->s = gptq_matrix(&j->sv[task], q->w, q->rows, j->d, NULL, q->h, j->tokens, q->t, j->enc, j->gp, q->y, &q->st, q->why, &q->e);
    }
}

/* run j's pieces (w, rows, y, t set) with H of point pt */
static lb_status side_by_side(lb_calib *c, const lb_calib_solver *sv, int S, lb_pool *run, side_job *j, lb_obs_point pt,
                              lb_error *err) {
    int64_t load[LB_MAX_DEVICES] = {0};
    bool placed[MAX_PIECES] = {false};
    for (int n = 0; n < j->n; n++) { /* the largest piece not yet placed (the first of equals) to the least loaded solver */
        int big = -1, to = 0;
        for (int i = 0; i < j->n; i++)
            if (!placed[i] && (big < 0 || j->p[i].rows > j->p[big].rows)) big = i;
        for (int r = 1; r < S; r++)
            if (load[r] < load[to]) to = r;
        placed[big] = true;
        j->p[big].solver = to;
        load[to] += j->p[big].rows;
    }
    int64_t d;
    const double *H = lb_calib_h(c, pt, &d);
    lb_status s = d == j->d ? LB_OK : lb_err_set(err, LB_ERR_ARG, "gptq: statistics of %lld columns for %lld", (long long)d, (long long)j->d);
    for (int i = 0; s == LB_OK && i + 1 < j->n; i++)
        if (!(j->p[i].h = malloc((size_t)(d * d) * sizeof(double)))) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        else memcpy(j->p[i].h, H, (size_t)(d * d) * sizeof(double));
    if (s == LB_OK) {
        j->sv = sv;
        j->p[j->n - 1].h = lb_calib_take_h(c, pt);
        lb_pool_run(run, S, side_task, j);
        for (int i = 0; s == LB_OK && i < j->n; i++) {
            if (j->p[i].s != LB_OK) {
                *err = j->p[i].e;
                s = j->p[i].s;
            } else
                note_matrix(c, &j->p[i].st, j->p[i].why);
        }
    }
    for (int i = 0; i + 1 < j->n; i++) free(j->p[i].h);
    lb_calib_give_back(c, j->p[j->n - 1].h); /* the taken H (the others are copies) */
    return s;
}

/* GPTQ of matrix w (rows, d) of type t into y with H of point pt, on several solvers when there are (its row
 * panels side by side), else as quantize_matrix; 0 when there are not (the caller quantizes it) */
static bool gptq_panels(lb_calib *c, lb_pool *pool, float *w, int64_t rows, int64_t d, lb_type t, lb_obs_point pt, lb_encoder enc,
                        const lb_gptq_params *gp, uint8_t *y, lb_status *s, lb_error *err) {
    const lb_calib_solver *sv;
    lb_pool *run;
    int S = lb_calib_solvers(c, pool, &sv, &run);
    if (S > rows) S = (int)rows;
    if (S < 2) return false;
    side_job *j = calloc(1, sizeof *j);
    if (!j) {
        *s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        return true;
    }
    *j = (side_job){.n = S, .d = d, .tokens = lb_calib_tokens(c), .enc = enc, .gp = gp};
    const size_t rb = lb_type_row_size(t, d);
    for (int k = 0; k < S; k++) {
        const int64_t r0 = rows * k / S, r1 = rows * (k + 1) / S;
        j->p[k] = (piece){.w = w + r0 * d, .rows = r1 - r0, .y = y + (size_t)r0 * rb, .t = t};
    }
    *s = side_by_side(c, sv, S, run, j, pt, err);
    free(j);
    return true;
}

/* GPTQ over the four stages; with a reference stream each matrix's target is first moved to the
 * unquantized model's output (lb_gptq_ref_target). */
static lb_status gptq_stages(lb_calib *c, lb_pool *pool, const lb_layer *orig, int64_t il, lb_encoder enc,
                             const lb_gptq_params *gp, const lb_type types[7], uint8_t *out[7], layer_work *lw,
                             float *norms[2], float *bv, lb_error *err) {
    lb_status s = LB_OK;
    for (int g = 0; s == LB_OK && g < 4; g++) {
        const lb_obs_point pt = POINT[STAGE_FIRST[g]];
        lb_layer cur = current_layer(orig, types, out, lw, STAGE_FIRST[g], norms, bv);
        s = lb_calib_stage_stats(c, &cur, orig, pt, il, err);
        int64_t d;
        const double *H = lb_calib_h(c, pt, &d);
        double *C = lb_calib_take_cross(c, pt);
        if (s == LB_OK && C) {
            float *ws[3];
            int64_t rows[3];
            const int nm = STAGE_FIRST[g + 1] - STAGE_FIRST[g];
            for (int k = 0; k < nm; k++) {
                ws[k] = lw->w[STAGE_FIRST[g] + k];
                rows[k] = layer_matrix(orig, STAGE_FIRST[g] + k)->rows;
            }
            bool applied;
            int64_t rmax = 0;
            for (int k = 0; k < nm; k++) rmax = rows[k] > rmax ? rows[k] : rmax;
            const lb_gptq_ops *o = ops_for(c, rmax, d, gp->cd_sweeps > 0);
            const double t0 = lb_time_sec();
            s = lb_gptq_ref_target(pool, ws, rows, nm, d, H, C, lw->s_in[pt], gp->ref_damp, gp->max_damp_tries, o, &applied, err);
            lb_calib_note_gptq(c, NULL, lb_time_sec() - t0);
        }
        lb_calib_give_back(c, C);
        const lb_calib_solver *sv;
        lb_pool *run;
        const int nm = STAGE_FIRST[g + 1] - STAGE_FIRST[g], S = s == LB_OK ? lb_calib_solvers(c, pool, &sv, &run) : 1;
        if (S > 1 && nm > 1) { /* the stage's matrices side by side */
            side_job *j = calloc(1, sizeof *j);
            if (!j) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
            *j = (side_job){.n = nm, .d = d, .tokens = lb_calib_tokens(c), .enc = enc, .gp = gp};
            for (int i = 0; i < nm; i++) {
                const int k = STAGE_FIRST[g] + i;
                j->p[i] = (piece){.w = lw->w[k], .rows = layer_matrix(orig, k)->rows, .y = out[k], .t = types[k]};
            }
            s = side_by_side(c, sv, S, run, j, pt, err);
            free(j);
            continue;
        }
        if (S > 1 && gptq_panels(c, pool, lw->w[STAGE_FIRST[g]], layer_matrix(orig, STAGE_FIRST[g])->rows, d, types[STAGE_FIRST[g]], pt,
                                 enc, gp, out[STAGE_FIRST[g]], &s, err))
            continue; /* a matrix alone: its row panels side by side */
        for (int k = STAGE_FIRST[g]; s == LB_OK && k < STAGE_FIRST[g + 1]; k++) {
            const lb_weight *w = layer_matrix(orig, k);
            const bool last = k + 1 == STAGE_FIRST[g + 1];
            const int64_t tokens = lb_calib_tokens(c);
            double *own = last ? lb_calib_take_h(c, pt) : NULL;
            s = quantize_matrix(c, pool, lw->w[k], w->rows, d, H, own, NULL, tokens, types[k], LB_METHOD_GPTQ, enc, gp, out[k], err);
            lb_calib_give_back(c, own);
        }
    }
    return s;
}

lb_status lb_calib_quantize_layer(lb_calib *c, lb_pool *pool, const lb_model *m, int64_t il, lb_method method,
                                  lb_encoder enc, const lb_gptq_params *gp, const lb_type types[7], uint8_t *out[7],
                                  float *norms[2], float *bv, lb_error *err) {
    const lb_layer *orig = &m->layers[il];
    const bool gptq = method == LB_METHOD_GPTQ || method == LB_METHOD_AWQ_GPTQ;
    const bool awq = method == LB_METHOD_AWQ || method == LB_METHOD_AWQ_GPTQ;
    lb_status s = LB_OK;
    layer_work lw;
    memset(&lw, 0, sizeof lw);
    /* the next layer's weights read ahead from the checkpoint while this one is calibrated */
    for (int k = 0; il + 1 < m->info.n_layer && k < 7; k++) {
        const lb_weight *nw = layer_matrix(&m->layers[il + 1], k);
        lb_mmap_prefetch(nw->data, lb_weight_row_bytes(nw) * (size_t)nw->rows);
    }
    const double tc = lb_time_sec();
    for (int k = 0; s == LB_OK && k < 7; k++) {
        const lb_weight *w = layer_matrix(orig, k);
        out[k] = malloc(lb_type_row_size(types[k], w->cols) * (size_t)w->rows);
        float *buf = lb_calib_work_f32(c, k, w->rows * w->cols);
        lw.w[k] = buf ? to_f32_pool(pool, w, buf) : NULL;
        if (!out[k] || !lw.w[k]) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory for layer %lld", (long long)il);
    }
    lb_calib_note_convert(c, lb_time_sec() - tc);
    if (s == LB_OK && awq) s = awq_apply(c, pool, m, il, types, &lw, norms, bv, err);
    if (gptq) {
        if (s == LB_OK) s = gptq_stages(c, pool, orig, il, enc, gp, types, out, &lw, norms, bv, err);
    } else { /* the importance-weighted encoder, each point's statistics on the unquantized layer */
        /* the imatrix method needs only H's diagonals: all four points' in one run of the windows */
        if (s == LB_OK && !awq) s = lb_calib_layer_diag_stats(c, orig, il, err);
        for (int g = 0; s == LB_OK && g < 4; g++) {
            const lb_obs_point pt = POINT[STAGE_FIRST[g]];
            if (awq) s = lb_calib_layer_stats(c, orig, NULL, pt, il, err);
            /* AWQ's H scaled by its input scales into lw.h; the imatrix method reads only H's diagonal, unscaled,
             * straight from the statistics (a copy of H is 1.6 GB at 8B's down projection) */
            if (s == LB_OK && awq) s = scaled_h(c, pt, &lw, err);
            const double *Hk = awq ? lw.h : NULL, *hd = awq ? NULL : lb_calib_h_diag(c, pt);
            for (int k = STAGE_FIRST[g]; s == LB_OK && k < STAGE_FIRST[g + 1]; k++) {
                const lb_weight *w = layer_matrix(orig, k);
                /* clip only for plain AWQ: before GPTQ it measured worse at 4 and 3 bits (GPTQ's error
                 * feedback does what the clip does, on the unclipped target) */
                if (method == LB_METHOD_AWQ && k >= 2) s = awq_clip(c, pool, orig, k, types, enc, &lw, err);
                if (s == LB_OK)
                    s = quantize_matrix(c, pool, lw.w[k], w->rows, w->cols, Hk, NULL, hd, lb_calib_tokens(c), types[k],
                                        LB_METHOD_IMATRIX, enc, gp, out[k], err);
            }
        }
    }
    if (s == LB_OK) { /* move the calibration activations through the quantized layer */
        lb_layer q = current_layer(orig, types, out, &lw, 7, norms, bv);
        s = gptq ? lb_calib_stage_advance(c, &q, il, err) : lb_calib_layer_advance(c, &q, orig, il, err);
    }
    free_work(&lw);
    if (s != LB_OK)
        for (int k = 0; k < 7; k++) {
            free(out[k]);
            out[k] = NULL;
        }
    return s;
}

lb_status lb_calib_quantize_output(lb_calib *c, lb_pool *pool, const lb_model *m, lb_type t, lb_method method,
                                   lb_encoder enc, const lb_gptq_params *gp, uint8_t *out, lb_error *err) {
    lb_method mm = method == LB_METHOD_GPTQ || method == LB_METHOD_AWQ_GPTQ ? LB_METHOD_GPTQ : LB_METHOD_IMATRIX;
    lb_calib_set_diag_only(c, mm == LB_METHOD_IMATRIX); /* the importance-weighted head needs only H's diagonal */
    lb_status s = lb_calib_output_stats(c, m->out_norm, err);
    lb_calib_set_diag_only(c, false);
    if (s != LB_OK) return s;
    lb_calib_release_work(c); /* the layers' work copies, before the head's own */
    const double tc = lb_time_sec();
    float *w = to_f32_pool(pool, &m->output, NULL);
    lb_calib_note_convert(c, lb_time_sec() - tc);
    if (!w) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    int64_t d;
    const double *H = lb_calib_h(c, LB_OBS_OUTPUT_IN, &d);
    double *C = lb_calib_take_cross(c, LB_OBS_OUTPUT_IN);
    bool applied;
    if (mm == LB_METHOD_GPTQ && C) {
        const double t0 = lb_time_sec();
        s = lb_gptq_ref_target(pool, &w, &m->output.rows, 1, d, H, C, NULL, gp->ref_damp, gp->max_damp_tries,
                               ops_for(c, m->output.rows, d, gp->cd_sweeps > 0), &applied, err);
        lb_calib_note_gptq(c, NULL, lb_time_sec() - t0);
    }
    lb_calib_give_back(c, C);
    const int64_t tokens = lb_calib_tokens(c);
    if (s == LB_OK && mm == LB_METHOD_GPTQ && gptq_panels(c, pool, w, m->output.rows, d, t, LB_OBS_OUTPUT_IN, enc, gp, out, &s, err)) {
        free(w);
        return s;
    }
    double *own = mm == LB_METHOD_GPTQ ? lb_calib_take_h(c, LB_OBS_OUTPUT_IN) : NULL;
    const double *hd = mm == LB_METHOD_IMATRIX ? lb_calib_h_diag(c, LB_OBS_OUTPUT_IN) : NULL;
    if (s == LB_OK) s = quantize_matrix(c, pool, w, m->output.rows, d, H, own, hd, tokens, t, mm, enc, gp, out, err);
    lb_calib_give_back(c, own);
    free(w);
    return s;
}
