/*
 * gptq.c - GPTQ whose quantizer is the target ggml block format: the blocks' scales come from the type's
 * encoder (algo/encoders.h) and each element is rounded on its block's grid (quant/grid.h), so the output
 * is ordinary ggml blocks.
 *
 * Source: Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
 * Transformers" (2022), Algorithm 1, and the reference procedure of docs/formats.md 4.1: dead columns,
 * damping lambda = damp * mean(diag H) (raised tenfold on a failed Cholesky, as GPTQModel's automatic
 * damping does), Hinv = upper Cholesky factor of H^-1, columns in lazy batches of B with the in-batch
 * error propagation and the delayed update W[:, i2:] -= Err Hinv[i1:i2, i2:], optional act-order with
 * static groups (formats.md 4.1 step 3 and 4.3: scales from the initial W, g_idx[c] = c / group, which is
 * what lets the result stay in ggml's column order).
 *
 * Groups are ggml blocks: in the default order the block's scales are chosen when GPTQ reaches its first
 * column, from the current (error-updated) weights, with diag(H) as importance weights.
 *
 * Rows are independent in GPTQ (Hinv is shared, each row carries its own errors), so the work is split
 * into tiles of TILE_ROWS rows, one pool task each, that run the whole column sweep. Every element of W
 * receives its updates one column at a time, in processing order, each rounded to float
 * (w = w - err * Hinv[k][c]); the lazy batching only changes when they are applied, not their order or
 * their rounding, so the result equals plain column-by-column GPTQ bit for bit and does not depend on
 * the tiling or the thread count.
 */
#include "gptq.h"

#include "../linalg/linalg.h"
#include "../quant/grid.h"
#include "../quant/cpu/cpu.h"
#include "../quant/matmul.h"
#include "encoders.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TILE_ROWS 16    /* rows per task: they share each streamed slice of Hinv */
#define UPDATE_CHUNK LB_GPTQ_CHUNK /* columns of the delayed update kept in registers across the batch */
#define CPU_PANEL_TILES 4 /* tiles per thread in a panel of rows swept together on the CPU */

typedef void (*axpy_fn)(float *y, float a, const float *x, int64_t n);
typedef lb_gptq_kernels gptq_kernels; /* the element loops (quant/cpu/gptq_kern.c) */

static gptq_kernels pick_kernels(void) { return *lb_gptq_kernels_best(); }

void lb_gptq_params_default(lb_gptq_params *p) {
    p->damp = 0.01;
    p->max_damp_tries = 6;
    p->block_cols = 128;
    p->act_order = false;
    p->passes = 1;
    p->cd_sweeps = 0;
    p->cd_scales = false;
    p->ref_damp = 1.0;
    p->few_tokens_damp = 0;
    p->ops = NULL;
    p->scratch = NULL;
}

enum { SCR_U, SCR_HF, SCR_T, SCR_P, SCR_H };

/* a buffer of at least `bytes` in slot k of s (kept there), or a malloc'd one without s */
static void scratch_drop(lb_gptq_scratch *s, int k) {
    if (s->mine[k]) s->release(s->ctx, s->p[k]);
    else free(s->p[k]);
    s->p[k] = NULL;
    s->bytes[k] = 0;
    s->mine[k] = false;
}

static void *scratch_get(lb_gptq_scratch *s, int k, size_t bytes) {
    if (!s) return malloc(bytes);
    if (s->p[k] && s->bytes[k] >= bytes) return s->p[k];
    scratch_drop(s, k);
    s->p[k] = s->alloc && s->release ? s->alloc(s->ctx, bytes) : NULL;
    s->mine[k] = s->p[k] != NULL;
    if (!s->p[k]) s->p[k] = malloc(bytes);
    s->bytes[k] = s->p[k] ? bytes : 0;
    return s->p[k];
}

static void scratch_put(lb_gptq_scratch *s, void *p) {
    if (!s) free(p);
}

void lb_gptq_scratch_free(lb_gptq_scratch *s) {
    if (!s) return;
    for (int k = 0; k < 5; k++) scratch_drop(s, k);
}

double *lb_gptq_scratch_h(lb_gptq_scratch *s, int64_t n) { return scratch_get(s, SCR_H, (size_t)n * sizeof(double)); }

typedef struct gptq_ctx {
    lb_gptq_scratch *scr; /* lb_gptq_params.scratch */
    float *W; /* (rows, cols) */
    int64_t rows, cols;
    const float *U;       /* (cols, cols) Hinv, upper triangle, processing order */
    const int64_t *perm;  /* processing position -> column; NULL for the identity */
    const float *imp;     /* (cols) diag(H), column order: the encoder's importance weights */
    lb_type type;
    lb_quantize_fn enc;
    lb_encoder enc_kind;
    bool dev_enc;      /* ops->encode takes the type's encoder: the blocks' scales are chosen there */
    lb_to_float_fn to_float;
    int64_t be, batch; /* block elements, lazy-batch width */
    int run;           /* elements that share one grid (lb_grid_run) */
    size_t bb, row_bytes;
    uint8_t *out;
    int passes;     /* sweeps; each after the first takes its scales from the previous one's pre-rounding values */
    int cd_sweeps;  /* coordinate-descent sweeps over the codes afterwards */
    bool cd_scales; /* each sweep also steps the blocks' integer sub-block scales */
    const float *Hf; /* (cols, cols) H as float, column order, for the coordinate descent (NULL without) */
    float *Ht;       /* (cols / run, run, run) H's diagonal run x run blocks transposed, Ht[b][l][k] =
                        Hf[(b run + k) cols + b run + l], for the sub-block scale steps (NULL without) */
    float *T;        /* (rows, cols) the weights being swept, processing order; then the dequantized rows */
    float *E;        /* (rows, batch) the scaled errors of the current batch */
    float *P;        /* (rows, cols) the values before rounding, column order; then H e */
    uint8_t *best;   /* (rows, row_bytes) each row's best sweep so far (passes > 1) */
    double *loss, *best_loss, *row_loss; /* (rows) each: this sweep's, the best sweep's, the result's */
    /* sweep() runs the rows in panels: T, E, P, best, loss, best_loss and active hold one panel; W, out and
     * row_loss then point at the panel's first row */
    bool *active, *changed;              /* (rows) the coordinate descent's rows still moving */
    gptq_kernels k;
    const lb_gptq_ops *ops;
    /* the sweeps run wholly on the device (every pass, and the descent when there is one) with a table that keeps
     * the factor there (inv_upper_keep / begin_kept): U and Hf are formed on the device, not here; hf_diag (cols)
     * is the damped H's diagonal in F32 that Hf would have had (NULL without a descent) */
    bool dev_h;
    float *hf_diag;
} gptq_ctx;

/* ---- the column sweep (kernels: no allocation) ---- */

/* Quantize processing column k of the tile's rows T (nr, cols); errors to E (nr, batch) at k - i1, the
 * value before rounding to P (nr, cols) at its column, and the error spread over the rest of the batch,
 * columns (k, i2). dynamic: a block's scales are chosen when its first column is reached. */
static void quantize_column(const gptq_ctx *c, float *T, float *E, float *P, bool dynamic, int64_t r0, int64_t nr,
                            int64_t k, int64_t i1, int64_t i2, lb_grid *grids, double *loss) {
    const int64_t col = c->perm ? c->perm[k] : k;
    const int e = (int)(col % c->be);
    const bool new_grid = c->perm || e % c->run == 0; /* grids[r]: element e's grid, per run of elements */
    const float *u = c->U + k * c->cols;
    const float ukk = u[k];
    for (int64_t r = 0; r < nr; r++) {
        float *t = T + r * c->cols;
        uint8_t *blk = c->out + (size_t)(r0 + r) * c->row_bytes + (size_t)(col / c->be) * c->bb;
        if (dynamic && e == 0) c->enc(t + k, blk, 1, c->be, c->imp + k);
        const lb_grid *g = &grids[r];
        if (new_grid) lb_grid_get(c->type, blk, e, &grids[r]);
        const float w = t[k];
        P[r * c->cols + col] = w;
        const int q = lb_grid_nearest(g, w);
        lb_grid_set(c->type, blk, e, q);
        const float d = w - lb_grid_value(g, q);
        const float er = d / ukk;
        E[r * c->batch + (k - i1)] = er;
        loss[r] += (double)d * d / ((double)ukk * ukk) / 2;
        c->k.axpy(t + k + 1, er, u + k + 1, i2 - k - 1);
    }
}

/* T[:, c0:c1] -= E (nr, nb) @ U[i1:i1+nb, c0:c1], one batch column after another (the order of the plain
 * sweep), over column chunks so that a chunk of a row stays in registers and the U slice in L1. */
static void delayed_update(const gptq_kernels *k, float *T, int64_t ld, int64_t nr, const float *E, int64_t lde, int64_t nb,
                           const float *U, int64_t c0, int64_t c1) {
    for (int64_t cc = c0; cc < c1; cc += UPDATE_CHUNK) {
        const int64_t w = c1 - cc < UPDATE_CHUNK ? c1 - cc : UPDATE_CHUNK;
        for (int64_t r = 0; r < nr; r++) k->update_chunk(T + r * ld + cc, E + r * lde, nb, U + cc, ld, w);
    }
}

/* Static groups: every block's scales from S (rows r0.., cols, column order): the initial weights
 * (act-order's first sweep) or the previous sweep's pre-rounding values. */
static void encode_static(const gptq_ctx *c, const float *S, int64_t ld, int64_t r0, int64_t nr) {
    for (int64_t r = 0; r < nr; r++)
        for (int64_t b = 0; b < c->cols / c->be; b++)
            c->enc(S + r * ld + b * c->be, c->out + (size_t)(r0 + r) * c->row_bytes + (size_t)b * c->bb, 1, c->be,
                   c->imp + b * c->be);
}

/*
 * One sweep over the integer sub-block parameters (scales, mins; quant/grid.h) of one row, codes fixed:
 * for each parameter in block order, the neighbours v - 1 and v + 1 are tried; moving the n elements of
 * its sub-block by delta changes err(e) by -2 delta^T g + delta^T H delta (g = H e), and the step with the
 * most negative change, if any, is taken (g -= H delta). The codes are read back as each element's nearest
 * code under the grid before the step and written again with it, so the stored codes stay those whose
 * values are q. Returns whether anything changed.
 */
static bool cd_params(const gptq_ctx *c, uint8_t *row, float *q, float *g) {
    const int np = lb_grid_n_params(c->type);
    const int64_t n = c->cols;
    const float *H = c->Hf;
    bool changed = false;
    for (int64_t b = 0; b < n / c->be; b++) {
        uint8_t *blk = row + (size_t)b * c->bb;
        for (int p = 0; p < np; p++) {
            lb_grid_param pi;
            lb_grid_param_info(c->type, p, &pi);
            const int64_t j0 = b * c->be + pi.first;
            int codes[32];
            float v_try[32], d_try[32], v_best[32], d_best[32];
            lb_grid gr;
            /* the parameter's elements share one grid where they lie in one run (every type's sub-blocks) */
            const bool one = pi.first % c->run == 0 && pi.n <= c->run;
            if (one) lb_grid_get(c->type, blk, pi.first, &gr);
            for (int k = 0; k < pi.n; k++) {
                if (!one) lb_grid_get(c->type, blk, pi.first + k, &gr);
                codes[k] = lb_grid_nearest(&gr, q[j0 + k]);
            }
            const int cur = lb_grid_param_get(c->type, blk, p);
            int best_v = cur;
            double best_change = 0;
            for (int v = cur - 1; v <= cur + 1; v += 2) {
                if (v < pi.lo || v > pi.hi) continue;
                lb_grid_param_set(c->type, blk, p, v);
                double lin = 0, quad = 0;
                if (one) lb_grid_get(c->type, blk, pi.first, &gr);
                for (int k = 0; k < pi.n; k++) {
                    if (!one) lb_grid_get(c->type, blk, pi.first + k, &gr);
                    v_try[k] = lb_grid_value(&gr, codes[k]);
                    d_try[k] = v_try[k] - q[j0 + k];
                    lin += (double)d_try[k] * g[j0 + k];
                }
                /* acc[k] = sum over l, in order, of H[j0 + k][j0 + l] d_l (exact products), for every k
                 * at once from the transposed block: independent sums in vector lanes */
                const float *ht = c->Ht + (j0 / c->run) * c->run * c->run;
                double acc[32];
                c->k.quad(ht, c->run, d_try, pi.n, acc);
                for (int k = 0; k < pi.n; k++)
                    if (d_try[k] != 0) quad += acc[k] * d_try[k];
                const double change = -2.0 * lin + quad;
                if (change < best_change) {
                    best_change = change;
                    best_v = v;
                    memcpy(d_best, d_try, (size_t)pi.n * sizeof *d_best);
                    memcpy(v_best, v_try, (size_t)pi.n * sizeof *v_best);
                }
            }
            lb_grid_param_set(c->type, blk, p, best_v);
            if (best_v == cur) continue;
            changed = true;
            for (int k = 0; k < pi.n; k++) {
                lb_grid_set(c->type, blk, pi.first + k, codes[k]);
                q[j0 + k] = v_best[k];
                if (d_best[k] != 0) c->k.axpy(g, d_best[k], H + (j0 + k) * n, n);
            }
        }
    }
    return changed;
}

/*
 * One sweep of coordinate descent on the codes of the active rows of a tile, the blocks' scales fixed: the
 * output error err(e) = e^T H e of e = w - q decreases with every accepted change. With g = H e (in P,
 * computed by c->ops before the sweep), moving element j by delta changes err by -2 delta g_j + delta^2 H_jj,
 * a parabola whose minimum over the element's grid is the grid value nearest to q_j + g_j / H_jj; the sweep
 * visits the columns in order, takes that value and updates g (g -= delta H[j, :]). A row stops (active
 * false) once a sweep changes nothing in it. Rows are independent: they take turns at each column only so
 * that H's row j is read once per tile. T holds the dequantized rows, kept current.
 */
static void cd_sweep(const gptq_ctx *c, int64_t r0, int64_t nr) {
    const int64_t n = c->cols;
    const float *H = c->Hf;
    float *Q = c->T + r0 * n, *G = c->P + r0 * n;
    bool *active = c->active + r0;
    bool changed[TILE_ROWS] = {false};
    lb_grid grids[TILE_ROWS]; /* element j's grid per row, read at the start of each run of elements */
    for (int64_t j = 0; j < n; j++) {
        const int e = (int)(j % c->be);
        const bool new_grid = e % c->run == 0;
        const float hjj = H[j * n + j];
        for (int64_t r = 0; r < nr; r++) {
            if (!active[r]) continue;
            uint8_t *blk = c->out + (size_t)(r0 + r) * c->row_bytes + (size_t)(j / c->be) * c->bb;
            if (new_grid) lb_grid_get(c->type, blk, e, &grids[r]);
            if (!(hjj > 0)) continue;
            float *q = Q + r * n, *g = G + r * n;
            const lb_grid *gr = &grids[r];
            const int code = lb_grid_nearest(gr, q[j] + g[j] / hjj);
            const float v = lb_grid_value(gr, code), delta = v - q[j];
            if (delta == 0) continue;
            /* accept only a strict decrease (rounding of g can otherwise cycle) */
            if (-2.0 * delta * g[j] + (double)delta * delta * hjj >= 0) continue;
            lb_grid_set(c->type, blk, e, code);
            q[j] = v;
            changed[r] = true;
            c->k.axpy(g, delta, H + j * n, n);
        }
    }
    for (int64_t r = 0; r < nr; r++) {
        if (active[r] && c->cd_scales && cd_params(c, c->out + (size_t)(r0 + r) * c->row_bytes, Q + r * n, G + r * n))
            changed[r] = true;
        active[r] = active[r] && changed[r];
    }
}

/*
 * The sweeps, in steps over all rows, each step a pool run over tiles of TILE_ROWS rows (rows are
 * independent in GPTQ: every element receives the same operations in the same order whatever the tiling,
 * so the result does not depend on it or on the thread count). The delayed updates and the products H e
 * go through c->ops; everything else runs here.
 */
typedef struct step {
    const gptq_ctx *c;
    int pass;
    int64_t i1, i2; /* the batch */
    bool encoded;   /* the scales this step would choose are already in out (ops->encode) */
} step;

static int64_t tile_rows(const gptq_ctx *c, int64_t task, int64_t *r0) {
    *r0 = task * TILE_ROWS;
    return c->rows - *r0 < TILE_ROWS ? c->rows - *r0 : TILE_ROWS;
}

/* A sweep starts: static scales (act-order's first sweep, or every later one), T from W, the loss at 0. */
static void pass_start_task(void *arg, int64_t task, int thread) {
    const step *sp = arg;
    const gptq_ctx *c = sp->c;
    const int64_t n = c->cols;
    int64_t r0;
    const int64_t nr = tile_rows(c, task, &r0);
    (void)thread;
    if (sp->encoded) { /* done by ops->encode */
    } else if (sp->pass > 0) {
        encode_static(c, c->P + r0 * n, n, r0, nr);
    } else if (c->perm) {
        encode_static(c, c->W + r0 * n, n, r0, nr);
    }
    for (int64_t r = r0; r < r0 + nr; r++) {
        const float *w = c->W + r * n;
        float *t = c->T + r * n;
        if (c->perm)
            for (int64_t k = 0; k < n; k++) t[k] = w[c->perm[k]];
        else
            memcpy(t, w, (size_t)n * sizeof *t);
        c->loss[r] = 0;
    }
}

/* The columns of one batch (whole blocks in the default order, so a grid never spans two batches). */
static void columns_task(void *arg, int64_t task, int thread) {
    const step *sp = arg;
    const gptq_ctx *c = sp->c;
    const int64_t n = c->cols;
    int64_t r0;
    const int64_t nr = tile_rows(c, task, &r0);
    const bool dynamic = sp->pass == 0 && !c->perm && !sp->encoded;
    lb_grid grids[TILE_ROWS];
    (void)thread;
    for (int64_t k = sp->i1; k < sp->i2; k++)
        quantize_column(c, c->T + r0 * n, c->E + r0 * c->batch, c->P + r0 * n, dynamic, r0, nr, k, sp->i1, sp->i2, grids,
                        c->loss + r0);
}

/* Per row, the sweep with the smallest loss so far. */
static void pass_end_task(void *arg, int64_t task, int thread) {
    const step *sp = arg;
    const gptq_ctx *c = sp->c;
    int64_t r0;
    const int64_t nr = tile_rows(c, task, &r0);
    (void)thread;
    for (int64_t r = r0; r < r0 + nr; r++) {
        if (sp->pass == 0 || c->loss[r] < c->best_loss[r]) {
            c->best_loss[r] = c->loss[r];
            if (c->passes > 1) memcpy(c->best + (size_t)r * c->row_bytes, c->out + (size_t)r * c->row_bytes, c->row_bytes);
        }
    }
}

/* After the sweeps: the best one's bytes; with the coordinate descent, T becomes the dequantized rows. */
static void sweeps_done_task(void *arg, int64_t task, int thread) {
    const step *sp = arg;
    const gptq_ctx *c = sp->c;
    int64_t r0;
    const int64_t nr = tile_rows(c, task, &r0);
    (void)thread;
    for (int64_t r = r0; r < r0 + nr; r++) {
        uint8_t *o = c->out + (size_t)r * c->row_bytes;
        if (c->passes > 1) memcpy(o, c->best + (size_t)r * c->row_bytes, c->row_bytes);
        if (c->cd_sweeps > 0) c->to_float(o, c->T + r * c->cols, c->cols);
        c->active[r] = true;
    }
}

static void cd_sweep_task(void *arg, int64_t task, int thread) {
    const step *sp = arg;
    int64_t r0;
    const int64_t nr = tile_rows(sp->c, task, &r0);
    (void)thread;
    cd_sweep(sp->c, r0, nr);
}

/* The result: W = the dequantized rows, the rows' losses (e^T H e / 2 after the coordinate descent). */
static void finish_task(void *arg, int64_t task, int thread) {
    const step *sp = arg;
    const gptq_ctx *c = sp->c;
    const int64_t n = c->cols;
    int64_t r0;
    const int64_t nr = tile_rows(c, task, &r0);
    (void)thread;
    for (int64_t r = r0; r < r0 + nr; r++) {
        if (c->cd_sweeps > 0) {
            const float *w = c->W + r * n, *q = c->T + r * n, *g = c->P + r * n;
            double e2 = 0;
            for (int64_t j = 0; j < n; j++) e2 += (double)(w[j] - q[j]) * g[j];
            c->best_loss[r] = e2 / 2;
        }
        c->to_float(c->out + (size_t)r * c->row_bytes, c->W + r * n, n);
        c->row_loss[r] = c->best_loss[r];
    }
}

/*
 * `passes` sweeps. The first chooses each block's scales at its first column (default order) or from the
 * initial weights (act-order). Each later sweep takes every block's scales from the values its elements
 * had just before rounding in the sweep before (what GPTQ actually rounded, after the error feedback), and
 * rounds with those scales fixed. Per row, the sweep with the smallest GPTQ loss — the exact output error
 * sum_k (w_k - q_k)^2 / U_kk^2 of that sweep — is kept. Then the coordinate descent (cd_sweep).
 */
static lb_status run_sweeps(lb_pool *pool, gptq_ctx *c, double *sec, lb_error *err) {
    const lb_gptq_ops *o = c->ops;
    const int64_t n = c->cols, tasks = (c->rows + TILE_ROWS - 1) / TILE_ROWS;
    step sp = {c, 0, 0, 0, false};
    lb_status s = LB_OK;
    double t = lb_time_sec(), t1;
#define PHASE(ph) (t1 = lb_time_sec(), sec[ph] += t1 - t, t = t1)
    /* on a device that encodes: every block's scales at a pass's start (from the initial weights or the
     * previous pass's values before rounding, as encode_static), or in the default order at each batch's
     * start from the swept weights there (a batch is then exactly one block column: at its first column
     * the block's elements have every update they get before it) */
    const bool batch_enc = c->dev_enc && !c->perm && c->batch == c->be;
    /* a device that runs whole passes: each pass there, its blocks and losses back for the choice below */
    const bool dev_pass = batch_enc && o->pass;
    for (int pass = 0; s == LB_OK && pass < c->passes; pass++) {
        sp.pass = pass;
        sp.encoded = false;
        if (dev_pass) {
            s = o->pass(o->user, c->type, c->enc_kind, c->W, c->rows, n, c->batch, c->imp, pass > 0, c->out, c->row_bytes, c->loss,
                        err);
            PHASE(LB_GPTQ_PH_COLUMNS);
            if (s == LB_OK) lb_pool_run(pool, tasks, pass_end_task, &sp);
            continue;
        }
        if (c->dev_enc && (pass > 0 || c->perm)) {
            s = o->encode(o->user, c->type, c->enc_kind, pass > 0 ? c->P : c->W, n, c->rows, 0, n, c->imp, c->out,
                          c->row_bytes, err);
            sp.encoded = true;
            PHASE(LB_GPTQ_PH_ENCODE);
            if (s != LB_OK) break;
        }
        lb_pool_run(pool, tasks, pass_start_task, &sp);
        PHASE(LB_GPTQ_PH_COLUMNS);
        if (o->load) s = o->load(o->user, c->T, c->rows, n, err);
        PHASE(LB_GPTQ_PH_UPDATE);
        for (int64_t i1 = 0; s == LB_OK && i1 < n; i1 += c->batch) {
            const int64_t i2 = i1 + c->batch < n ? i1 + c->batch : n, i3 = i2 + c->batch < n ? i2 + c->batch : n;
            sp.i1 = i1;
            sp.i2 = i2;
            sp.encoded = false;
            if (pass == 0 && batch_enc) {
                s = o->encode(o->user, c->type, c->enc_kind, c->T, n, c->rows, i1, i2, c->imp + i1, c->out, c->row_bytes,
                              err);
                sp.encoded = true;
                PHASE(LB_GPTQ_PH_ENCODE);
                if (s != LB_OK) break;
            }
            lb_pool_run(pool, tasks, columns_task, &sp);
            PHASE(LB_GPTQ_PH_COLUMNS);
            if (i2 < n) s = o->update(o->user, pool, c->T, c->rows, n, c->E, c->batch, c->U, i1, i2, i3, err);
            PHASE(LB_GPTQ_PH_UPDATE);
        }
        if (s == LB_OK) lb_pool_run(pool, tasks, pass_end_task, &sp);
    }
    if (s == LB_OK) lb_pool_run(pool, tasks, sweeps_done_task, &sp);
    PHASE(LB_GPTQ_PH_COLUMNS);
    /* a device that runs the descent: all of it there (the steps below, in their order per row) */
    const bool dev_cd = c->cd_sweeps > 0 && c->dev_enc && o->cd;
    if (s == LB_OK && dev_cd) {
        s = o->cd(o->user, c->type, c->W, c->T, c->out, c->row_bytes, c->P, c->rows, n, c->cd_sweeps, c->cd_scales, c->Ht, err);
        PHASE(LB_GPTQ_PH_CD);
    }
    for (int sw = 0; s == LB_OK && !dev_cd && sw < c->cd_sweeps; sw++) {
        bool any = false;
        for (int64_t r = 0; r < c->rows; r++) any |= c->active[r];
        if (!any) break;
        s = o->h_times_e(o->user, pool, c->W, c->T, c->P, c->rows, n, c->Hf, c->active, err);
        PHASE(LB_GPTQ_PH_PRODUCTS);
        if (s == LB_OK) lb_pool_run(pool, tasks, cd_sweep_task, &sp);
        PHASE(LB_GPTQ_PH_CD);
    }
    if (s == LB_OK && c->cd_sweeps > 0 && !dev_cd) {
        for (int64_t r = 0; r < c->rows; r++) c->active[r] = true;
        s = o->h_times_e(o->user, pool, c->W, c->T, c->P, c->rows, n, c->Hf, c->active, err);
        PHASE(LB_GPTQ_PH_PRODUCTS);
    }
    if (s == LB_OK) lb_pool_run(pool, tasks, finish_task, &sp);
    PHASE(LB_GPTQ_PH_CD);
#undef PHASE
    return s;
}

/* ---- the CPU implementation of lb_gptq_ops ---- */

/* G[r] = H e_r for e_r = w_r - q_r, the rows of a tile with sel[r] (H symmetric: a sum of H's rows,
 * skipping the zero entries of e_r). Row by row the sums run in the same order as for one row alone; the
 * rows take turns at each row of H so that it is read from memory once per tile. */
static void h_times_e_tile(axpy_fn axpy, const float *H, int64_t n, const float *W, const float *Q, float *G, int64_t nr,
                           const bool *sel) {
    for (int64_t r = 0; r < nr; r++)
        if (sel[r]) memset(G + r * n, 0, (size_t)n * sizeof *G);
    for (int64_t j = 0; j < n; j++) {
        const float *h = H + j * n;
        for (int64_t r = 0; r < nr; r++) {
            const float ej = W[r * n + j] - Q[r * n + j];
            if (sel[r] && ej != 0) axpy(G + r * n, -ej, h, n); /* g + ej h, exactly */
        }
    }
}

typedef struct cpu_job {
    gptq_kernels k;
    int64_t rows, n;
    float *T;
    const float *E, *U, *W, *Q, *H;
    float *G;
    const bool *sel;
    int64_t lde, i1, i2;
} cpu_job;

static void cpu_update_task(void *arg, int64_t task, int thread) {
    const cpu_job *j = arg;
    const int64_t r0 = task * TILE_ROWS, nr = j->rows - r0 < TILE_ROWS ? j->rows - r0 : TILE_ROWS;
    (void)thread;
    delayed_update(&j->k, j->T + r0 * j->n, j->n, nr, j->E + r0 * j->lde, j->lde, j->i2 - j->i1, j->U + j->i1 * j->n, j->i2,
                   j->n);
}

static lb_status cpu_update(void *user, lb_pool *pool, float *T, int64_t rows, int64_t n, const float *E, int64_t lde,
                            const float *U, int64_t i1, int64_t i2, int64_t i3, lb_error *err) {
    cpu_job j = {.k = pick_kernels(), .rows = rows, .n = n, .T = T, .E = E, .U = U, .lde = lde, .i1 = i1, .i2 = i2};
    (void)user, (void)i3, (void)err;
    lb_pool_run(pool, (rows + TILE_ROWS - 1) / TILE_ROWS, cpu_update_task, &j);
    return LB_OK;
}

static void cpu_h_times_e_task(void *arg, int64_t task, int thread) {
    const cpu_job *j = arg;
    const int64_t r0 = task * TILE_ROWS, nr = j->rows - r0 < TILE_ROWS ? j->rows - r0 : TILE_ROWS;
    (void)thread;
    h_times_e_tile(j->k.axpy, j->H, j->n, j->W + r0 * j->n, j->Q + r0 * j->n, j->G + r0 * j->n, nr, j->sel + r0);
}

static lb_status cpu_h_times_e(void *user, lb_pool *pool, const float *W, const float *Q, float *G, int64_t rows, int64_t n,
                               const float *Hf, const bool *sel, lb_error *err) {
    cpu_job j = {.k = pick_kernels(), .rows = rows, .n = n, .W = W, .Q = Q, .G = G, .H = Hf, .sel = sel};
    (void)user, (void)err;
    lb_pool_run(pool, (rows + TILE_ROWS - 1) / TILE_ROWS, cpu_h_times_e_task, &j);
    return LB_OK;
}

static lb_status cpu_inv_upper(void *user, lb_pool *pool, double *A, int64_t n, double *work, bool *ok, lb_error *err) {
    (void)user, (void)err;
    *ok = lb_chol_inv_upper_pool(pool, A, n, work);
    return LB_OK;
}

/* out (rows, n) = x (rows, K) . w^T for w (n, K) f32 row-major, through lb_matmul */
static lb_status cpu_matmul(void *user, lb_pool *pool, const float *x, int64_t rows, const float *w, int64_t n, int64_t K,
                            float *out, lb_error *err) {
    (void)user;
    const int nt = pool ? lb_pool_size(pool) : 1;
    float *scratch = malloc(lb_matmul_scratch_floats(K, rows, nt) * sizeof *scratch);
    if (!scratch) return lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory");
    lb_weight lw = {LB_TYPE_F32, (void *)w, n, K};
    lb_matmul(pool, scratch, x, rows, &lw, out, n);
    free(scratch);
    return LB_OK;
}

static const lb_gptq_ops cpu_ops = {.name = "cpu", .inv_upper = cpu_inv_upper, .update = cpu_update,
                                    .h_times_e = cpu_h_times_e, .matmul = cpu_matmul};

const lb_gptq_ops *lb_gptq_ops_cpu(void) { return &cpu_ops; }

/* ---- preparing H (driver) ---- */

/* The first non-finite element of W (float) and H (double), on the pool: each task ORs the exponent test over
 * its chunk without branches (vectorizable) and only a flagged chunk looks for its first element; the lowest
 * flagged chunk gives the index, so the report does not depend on the thread count. */
#define FIN_CHUNK 65536
typedef struct fin_job {
    const float *w;
    const double *h;
    int64_t nw, nh;   /* elements */
    int64_t cw;       /* chunks of w (the rest are h's) */
    int64_t *first;   /* per chunk: the first bad element's index in its array, or -1 */
} fin_job;

static void fin_task(void *arg, int64_t task, int thread) {
    const fin_job *j = arg;
    (void)thread;
    j->first[task] = -1;
    if (task < j->cw) {
        const int64_t i0 = task * FIN_CHUNK, i1 = i0 + FIN_CHUNK < j->nw ? i0 + FIN_CHUNK : j->nw;
        uint32_t bad = 0;
        for (int64_t i = i0; i < i1; i++) {
            uint32_t u;
            memcpy(&u, j->w + i, sizeof u);
            bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
        }
        for (int64_t i = i0; bad && i < i1; i++)
            if (!isfinite(j->w[i])) {
                j->first[task] = i;
                break;
            }
    } else {
        const int64_t i0 = (task - j->cw) * FIN_CHUNK, i1 = i0 + FIN_CHUNK < j->nh ? i0 + FIN_CHUNK : j->nh;
        uint64_t bad = 0;
        for (int64_t i = i0; i < i1; i++) {
            uint64_t u;
            memcpy(&u, j->h + i, sizeof u);
            bad |= (uint64_t)((u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
        }
        for (int64_t i = i0; bad && i < i1; i++)
            if (!isfinite(j->h[i])) {
                j->first[task] = i;
                break;
            }
    }
}

static lb_status check_finite(lb_pool *pool, const float *W, int64_t rows, const double *H, int64_t cols, lb_error *err) {
    fin_job j = {W, H, rows * cols, cols * cols, (rows * cols + FIN_CHUNK - 1) / FIN_CHUNK, NULL};
    const int64_t tasks = j.cw + (j.nh + FIN_CHUNK - 1) / FIN_CHUNK;
    if (!(j.first = malloc((size_t)tasks * sizeof *j.first))) return lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory");
    lb_pool_run(pool, tasks, fin_task, &j);
    lb_status s = LB_OK;
    for (int64_t t = 0; s == LB_OK && t < tasks; t++) {
        const int64_t i = j.first[t];
        if (i < 0) continue;
        if (t < j.cw)
            s = lb_err_set(err, LB_ERR_ARG, "gptq: W[%lld, %lld] is not finite", (long long)(i / cols), (long long)(i % cols));
        else
            s = lb_err_set(err, LB_ERR_ARG, "gptq: H[%lld, %lld] is not finite", (long long)(i / cols), (long long)(i % cols));
    }
    free(j.first);
    return s;
}

/* Dead inputs (H_jj == 0): H_jj = 1, W[:, j] = 0. Returns how many. */
static int64_t fix_dead(float *W, int64_t rows, double *H, int64_t n) {
    int64_t dead = 0;
    for (int64_t j = 0; j < n; j++) {
        if (H[j * n + j] != 0) continue;
        dead++;
        H[j * n + j] = 1;
        for (int64_t r = 0; r < rows; r++) W[r * n + j] = 0;
    }
    return dead;
}

typedef struct { double d; int64_t i; } diag_key;

/* Decreasing diagonal, ties by increasing column: a total order, so the permutation is deterministic. */
static int cmp_desc(const void *a, const void *b) {
    const diag_key *x = a, *y = b;
    if (x->d != y->d) return x->d > y->d ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static lb_status act_order_perm(const double *diag, int64_t n, int64_t *perm, lb_error *err) {
    diag_key *k = malloc((size_t)n * sizeof *k);
    if (!k) return lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory");
    for (int64_t i = 0; i < n; i++) k[i] = (diag_key){diag[i], i};
    qsort(k, (size_t)n, sizeof *k, cmp_desc);
    for (int64_t i = 0; i < n; i++) perm[i] = k[i].i;
    free(k);
    return LB_OK;
}

/* H <- H[perm][:, perm] in place: columns of each row through tmp, then rows along the cycles of perm. */
static void permute_sym(double *H, int64_t n, const int64_t *perm, double *tmp, uint8_t *seen) {
    for (int64_t i = 0; i < n; i++) {
        double *h = H + i * n;
        for (int64_t j = 0; j < n; j++) tmp[j] = h[perm[j]];
        memcpy(h, tmp, (size_t)n * sizeof *h);
    }
    memset(seen, 0, (size_t)n);
    for (int64_t s = 0; s < n; s++) {
        if (seen[s]) continue;
        memcpy(tmp, H + s * n, (size_t)n * sizeof *tmp);
        int64_t i = s;
        for (;;) {
            seen[i] = 1;
            const int64_t j = perm[i];
            if (j == s) {
                memcpy(H + i * n, tmp, (size_t)n * sizeof *tmp);
                break;
            }
            memcpy(H + i * n, H + j * n, (size_t)n * sizeof *tmp);
            i = j;
        }
    }
}

#define TT 32 /* tile of the transpositions: the column-wise side stays in cache */

/* The O(n^2) element-wise preparations, split over the pool by tiles of TT rows (each output element is
 * written by one task, with the same value whatever the split). */
typedef enum { EW_TO_F32, EW_UPPER_F32, EW_LOWER_TO_UPPER, EW_TRANSPOSE } ew_op;
typedef struct ew_job {
    ew_op op;
    int64_t n;
    float *dst;          /* EW_TO_F32, EW_UPPER_F32, EW_TRANSPOSE */
    double *H;           /* EW_LOWER_TO_UPPER: in place */
    const double *src;   /* EW_TO_F32, EW_UPPER_F32; EW_TRANSPOSE: src or src32 */
    const float *src32, *s;
} ew_job;

static void ew_task(void *arg, int64_t task, int thread) {
    const ew_job *j = arg;
    const int64_t n = j->n, i0 = task * TT, i1 = i0 + TT < n ? i0 + TT : n;
    (void)thread;
    switch (j->op) {
    case EW_TO_F32:
        for (int64_t k = i0 * n; k < i1 * n; k++) j->dst[k] = (float)j->src[k];
        break;
    case EW_UPPER_F32:
        for (int64_t i = i0; i < i1; i++)
            for (int64_t c = 0; c < n; c++) j->dst[i * n + c] = c >= i ? (float)j->src[i * n + c] : 0.0f;
        break;
    case EW_LOWER_TO_UPPER: /* rows i0..i1 of the strictly upper triangle, tile by tile */
        for (int64_t c0 = i0; c0 < n; c0 += TT)
            for (int64_t i = i0; i < i1; i++)
                for (int64_t c = c0 > i + 1 ? c0 : i + 1; c < c0 + TT && c < n; c++) j->H[i * n + c] = j->H[c * n + i];
        break;
    case EW_TRANSPOSE: /* dst rows i0..i1 = columns of src, row r of src divided by s[r] */
        for (int64_t r0 = 0; r0 < n; r0 += TT)
            for (int64_t r = r0; r < r0 + TT && r < n; r++)
                for (int64_t i = i0; i < i1; i++)
                    j->dst[i * n + r] = j->src ? (float)(j->src[r * n + i] / (j->s ? j->s[r] : 1.0)) : j->src32[r * n + i];
        break;
    }
}

static void ew_run(lb_pool *pool, ew_job j) { lb_pool_run(pool, (j.n + TT - 1) / TT, ew_task, &j); }

/* Hinv (upper, in H) with damping raised tenfold after each failed attempt. diag: H's diagonal before
 * damping; the strictly lower triangle of H is the pristine copy each attempt restores from. */
static lb_status factor_hinv(lb_pool *pool, const lb_gptq_ops *o, bool keep, double *H, int64_t n, const double *diag, double mean,
                             const lb_gptq_params *p, double *work, lb_gptq_stats *st, lb_error *err) {
    double damp = p->damp;
    for (int t = 1; t <= p->max_damp_tries; t++) {
        /* inv_upper_keep reads only the lower triangle and the diagonal (and leaves H as it is) */
        if (!keep) ew_run(pool, (ew_job){.op = EW_LOWER_TO_UPPER, .n = n, .H = H});
        for (int64_t i = 0; i < n; i++) H[i * n + i] = diag[i] + damp * mean;
        bool ok = false;
        lb_status s = keep ? o->inv_upper_keep(o->user, H, n, &ok, err) : o->inv_upper(o->user, pool, H, n, work, &ok, err);
        if (s != LB_OK) return s;
        if (ok) {
            st->damp = damp;
            st->damp_tries = t;
            return LB_OK;
        }
        damp = damp > 0 ? damp * 10 : LB_GPTQ_DAMP_FLOOR;
    }
    return lb_err_set(err, LB_ERR_ARG, "gptq: H is not positive definite (Cholesky failed %d times, up to damp %g)",
                      p->max_damp_tries, damp / 10);
}

/* ---- driver ---- */

/* Ht (n / L, L, L): the diagonal L x L blocks of H (n, n) transposed (gptq_ctx.Ht) */
static float *diag_blocks_t(const float *H, int64_t n, int L) {
    float *Ht = malloc((size_t)n * (size_t)L * sizeof *Ht);
    if (!Ht) return NULL;
    for (int64_t j0 = 0; j0 < n; j0 += L)
        for (int l = 0; l < L; l++)
            for (int k = 0; k < L; k++) Ht[j0 * L + l * L + k] = H[(j0 + k) * n + j0 + l];
    return Ht;
}

/* diag_blocks_t's Ht from H (n, n; its strictly lower triangle) and the diagonal d, as Hf = (float) H off the
 * diagonal and d on it would give them (the device-formed Hf of a dev_h run) */
static float *diag_blocks_h(const double *H, const float *d, int64_t n, int L) {
    float *Ht = malloc((size_t)n * (size_t)L * sizeof *Ht);
    if (!Ht) return NULL;
    for (int64_t j0 = 0; j0 < n; j0 += L)
        for (int l = 0; l < L; l++)
            for (int k = 0; k < L; k++) {
                const int64_t r = j0 + k, c = j0 + l;
                Ht[j0 * L + l * L + k] = r == c ? d[r] : (float)(r > c ? H[r * n + c] : H[c * n + r]);
            }
    return Ht;
}

static lb_status check_args(const float *W, int64_t rows, int64_t cols, const double *H, lb_type type,
                            const lb_gptq_params *p, const void *out, lb_error *err) {
    if (!W || !H || !out || rows <= 0 || cols <= 0)
        return lb_err_set(err, LB_ERR_ARG, "gptq: null pointer or empty matrix (%lld x %lld)", (long long)rows,
                          (long long)cols);
    if (!lb_grid_supported(type))
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "gptq: type %s is not a supported block type", lb_type_name(type));
    if (cols % lb_type_block_elems(type))
        return lb_err_set(err, LB_ERR_ARG, "gptq: row length %lld is not a multiple of %lld (%s)", (long long)cols,
                          (long long)lb_type_block_elems(type), lb_type_name(type));
    if (!(p->damp >= 0) || !isfinite(p->damp) || p->max_damp_tries < 1 || p->block_cols < 1 || p->passes < 1 ||
        p->passes > 16 || p->cd_sweeps < 0 || p->cd_sweeps > 64)
        return lb_err_set(err, LB_ERR_ARG, "gptq: bad parameters (damp %g, tries %d, block_cols %d, passes %d)", p->damp,
                          p->max_damp_tries, p->block_cols, p->passes);
    size_t sq;
    if (!lb_mul_size((size_t)cols, (size_t)cols, &sq) || !lb_mul_size(sq, sizeof(double), &sq))
        return lb_err_set(err, LB_ERR_ARG, "gptq: %lld columns is too many", (long long)cols);
    return LB_OK;
}

/* The sweeps' buffers; U is H's upper triangle as float. */
static lb_status sweep(lb_pool *pool, gptq_ctx *c, const double *H, double *sec, lb_error *err) {
    const int64_t n = c->cols, rows = c->rows, nthreads = pool ? lb_pool_size(pool) : 1;
    /* rows are independent: on the CPU the sweeps run over panels of a few tiles per thread, so that the
     * scratch stays a few rows x n; a device table takes all rows at once */
    int64_t panel = c->ops == &cpu_ops ? TILE_ROWS * CPU_PANEL_TILES * nthreads : rows;
    if (panel > rows) panel = rows;
    const size_t pn = (size_t)panel * (size_t)n;
    float *U = c->dev_h ? NULL : scratch_get(c->scr, SCR_U, (size_t)n * (size_t)n * sizeof *U);
    c->T = scratch_get(c->scr, SCR_T, pn * sizeof *c->T);
    c->P = scratch_get(c->scr, SCR_P, pn * sizeof *c->P);
    c->E = malloc((size_t)panel * (size_t)c->batch * sizeof *c->E);
    c->best = c->passes > 1 ? malloc((size_t)panel * c->row_bytes) : NULL;
    c->loss = malloc((size_t)panel * 2 * sizeof *c->loss);
    c->active = malloc((size_t)panel * sizeof *c->active);
    c->best_loss = c->loss ? c->loss + panel : NULL;
    lb_status s = LB_OK;
    const double t0 = lb_time_sec();
    if ((!U && !c->dev_h) || !c->T || !c->P || !c->E || (c->passes > 1 && !c->best) || !c->loss || !c->active) {
        s = lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory (%lld x %lld)", (long long)panel, (long long)n);
    } else {
        if (!c->dev_h) ew_run(pool, (ew_job){.op = EW_UPPER_F32, .n = n, .dst = U, .src = H});
        c->U = U; /* NULL with dev_h: the passes run on the device with its own */
        if (c->dev_h) s = c->ops->begin_kept(c->ops->user, c->hf_diag, panel, n, err);
        else if (c->ops->begin) s = c->ops->begin(c->ops->user, U, c->Hf, panel, n, err);
        sec[LB_GPTQ_PH_FACTOR] += lb_time_sec() - t0;
        gptq_ctx v = *c; /* one panel of rows */
        for (int64_t r0 = 0; s == LB_OK && r0 < rows; r0 += panel) {
            v.rows = rows - r0 < panel ? rows - r0 : panel;
            v.W = c->W + r0 * n;
            v.out = c->out + (size_t)r0 * c->row_bytes;
            v.row_loss = c->row_loss + r0;
            s = run_sweeps(pool, &v, sec, err);
        }
        if (c->ops->end) c->ops->end(c->ops->user);
    }
    scratch_put(c->scr, U);
    scratch_put(c->scr, c->T);
    scratch_put(c->scr, c->P);
    free(c->E);
    free(c->best);
    free(c->loss);
    free(c->active);
    return s;
}

/* The H-side preparation: dead columns, importance, act-order permutation, damping and Hinv. */
static lb_status prepare(lb_pool *pool, float *W, int64_t rows, int64_t n, double *H, const lb_gptq_params *p, gptq_ctx *c,
                         float *imp, int64_t *perm, float *Hf, lb_gptq_stats *st, lb_error *err) {
    st->dead_cols = fix_dead(W, rows, H, n);
    if (Hf)
        ew_run(pool, (ew_job){.op = EW_TO_F32, .n = n, .dst = Hf, .src = H});
    double *diag = malloc((size_t)n * 2 * sizeof *diag), *work = diag + n;
    uint8_t *seen = malloc((size_t)n);
    lb_status s = LB_OK;
    if (!diag || !seen) s = lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory");
    double mean = 0;
    for (int64_t j = 0; s == LB_OK && j < n; j++) {
        diag[j] = H[j * n + j];
        imp[j] = (float)diag[j];
        mean += diag[j];
    }
    mean /= (double)n;
    if (s == LB_OK && p->act_order) {
        s = act_order_perm(diag, n, perm, err);
        if (s == LB_OK) {
            permute_sym(H, n, perm, work, seen);
            for (int64_t k = 0; k < n; k++) work[k] = imp[perm[k]];
            for (int64_t k = 0; k < n; k++) diag[k] = work[k];
            c->perm = perm;
        }
    }
    if (s == LB_OK) s = factor_hinv(pool, c->ops, c->dev_h, H, n, diag, mean, p, work, st, err);
    if (s == LB_OK && Hf) /* the damped H GPTQ minimized, for the coordinate descent */
        for (int64_t j = 0; j < n; j++) Hf[j * n + j] += (float)(st->damp * mean);
    if (s == LB_OK && c->dev_h && p->cd_sweeps > 0) { /* ... its diagonal as Hf's would be, for the device */
        if (!(c->hf_diag = malloc((size_t)n * sizeof *c->hf_diag))) s = lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory");
        for (int64_t j = 0; s == LB_OK && j < n; j++) {
            float v = (float)diag[j];
            v += (float)(st->damp * mean);
            c->hf_diag[j] = v;
        }
    }
    free(diag);
    free(seen);
    return s;
}

lb_status lb_gptq_quantize(lb_pool *pool, float *W, int64_t rows, int64_t cols, double *H, lb_type type,
                           lb_encoder enc, const lb_gptq_params *params, void *out, lb_gptq_stats *stats,
                           lb_error *err) {
    const double t0 = lb_time_sec();
    lb_gptq_params p;
    if (params) p = *params;
    else lb_gptq_params_default(&p);
    lb_status s = check_args(W, rows, cols, H, type, &p, out, err);
    if (s == LB_OK) s = check_finite(pool, W, rows, H, cols, err);
    if (s != LB_OK) return s;
    const lb_type_traits *tt = lb_type_traits_get(type);
    gptq_ctx c = {.scr = p.scratch, .W = W, .rows = rows, .cols = cols, .type = type, .enc = lb_encoder_get(type, enc), .enc_kind = enc,
                  .to_float = tt->to_float, .be = tt->block_elems, .bb = tt->block_bytes,
                  .row_bytes = lb_type_row_size(type, cols), .out = out, .passes = p.passes,
                  .cd_sweeps = p.cd_sweeps, .cd_scales = p.cd_scales, .k = pick_kernels(), .run = lb_grid_run(type)};
    if (!c.enc) return lb_err_set(err, LB_ERR_ARG, "gptq: no encoder %d for %s", (int)enc, tt->name);
    lb_gptq_stats st = {0};
    c.ops = p.ops ? p.ops : &cpu_ops;
    if (c.ops->reserve) { /* a device that cannot take the matrix leaves it to the CPU, before H is touched */
        lb_error e = {0};
        if (c.ops->reserve(c.ops->user, rows, cols, p.cd_sweeps > 0, &e) != LB_OK) {
            st.fallback = true;
            snprintf(st.fallback_msg, sizeof st.fallback_msg, "%.199s", e.msg);
            c.ops = &cpu_ops;
        }
    }
    c.dev_enc = c.ops->encode && c.ops->encodes && c.ops->encodes(c.ops->user, type, enc);
    /* in the default order a block's scales are chosen at its first column, which must have received
     * every earlier update by then: batches of whole blocks */
    c.batch = p.act_order ? p.block_cols : (p.block_cols + c.be - 1) / c.be * c.be;
    if (c.batch > cols) c.batch = cols;
    /* run_sweeps' whole passes on the device (dev_pass) and its descent there (dev_cd) need no U or Hf here */
    c.dev_h = c.ops->inv_upper_keep && c.ops->begin_kept && c.dev_enc && !p.act_order && c.batch == c.be && c.ops->pass &&
              (p.cd_sweeps == 0 || c.ops->cd);
    float *imp = malloc((size_t)cols * sizeof *imp);
    int64_t *perm = malloc((size_t)cols * sizeof *perm);
    float *Hf = p.cd_sweeps > 0 && !c.dev_h ? scratch_get(p.scratch, SCR_HF, (size_t)cols * (size_t)cols * sizeof *Hf) : NULL;
    if (!imp || !perm || (p.cd_sweeps > 0 && !c.dev_h && !Hf)) s = lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory");
    if (s == LB_OK) s = prepare(pool, W, rows, cols, H, &p, &c, imp, perm, Hf, &st, err);
    c.imp = imp;
    c.Hf = Hf;
    if (s == LB_OK && p.cd_sweeps > 0 && p.cd_scales &&
        !(c.Ht = c.dev_h ? diag_blocks_h(H, c.hf_diag, cols, c.run) : diag_blocks_t(Hf, cols, c.run)))
        s = lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory");
    st.seconds[LB_GPTQ_PH_FACTOR] = lb_time_sec() - t0; /* with the allocations and the float copies of H */
    if (s == LB_OK && !(c.row_loss = malloc((size_t)rows * sizeof *c.row_loss)))
        s = lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory");
    if (s == LB_OK) s = sweep(pool, &c, H, st.seconds, err);
    if (s == LB_OK) {
        for (int64_t r = 0; r < rows; r++) st.loss += c.row_loss[r];
        if (stats) *stats = st;
    }
    free(c.row_loss);
    free(c.Ht);
    free(c.hf_diag);
    scratch_put(p.scratch, Hf);
    free(imp);
    free(perm);
    return s;
}

/* ---- the reference-stream target ---- */

void lb_gptq_ref_dct(lb_pool *pool, const double *C, const float *s, int64_t n, float *f1) {
    ew_run(pool, (ew_job){.op = EW_TRANSPOSE, .n = n, .dst = f1, .src = C, .s = s});
}

lb_status lb_gptq_ref_target(lb_pool *pool, float *const *W, const int64_t *rows, int n_mat, int64_t cols,
                             const double *H, double *C, const float *s, double damp, int max_tries, const lb_gptq_ops *ops,
                             bool *applied, lb_error *err) {
    const lb_gptq_ops *o = ops ? ops : &cpu_ops;
    const int64_t n = cols;
    *applied = false;
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += H[j * n + j];
    mean /= (double)n;
    if (!(mean > 0) || !isfinite(mean)) return LB_OK;
    int64_t rmax = 0;
    for (int k = 0; k < n_mat; k++) rmax = rows[k] > rmax ? rows[k] : rmax;
    /* the factorization before any W changes, so that a failure leaves every W as it is */
    double lam = 0;
    bool ok = false;
    lb_status st = LB_OK;
    if (o->ref_factor && o->ref_apply) { /* all of it on the device: H and C go up once, (D C)^T is made there */
        for (int t = 0; st == LB_OK && !ok && t < max_tries; t++, damp = damp > 0 ? damp * 10 : LB_GPTQ_DAMP_FLOOR) {
            lam = damp * mean;
            st = o->ref_factor(o->user, H, n, lam, t == 0, &ok, err);
        }
        for (int k = 0; st == LB_OK && ok && k < n_mat; k++) st = o->ref_apply(o->user, C, s, n, lam, W[k], rows[k], k == 0, err);
        *applied = st == LB_OK && ok;
        return st;
    }
    /* buffers, released as soon as they are done with: f1 (D C)^T, then U; f2 U^T; tmp one product; C, once
     * f1 holds it, becomes A, the matrix factored */
    float *f1 = malloc((size_t)(n * n) * sizeof *f1), *f2 = NULL, *tmp = malloc((size_t)(rmax * n) * sizeof *tmp);
    double *A = C, *work = malloc((size_t)n * sizeof *work);
    if (!f1 || !tmp || !work) st = lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory for the reference target");
    /* f1 = (D C)^T, so that M = W D C has M[r][j] = sum_i W[r][i] f1[j][i] */
    if (st == LB_OK) lb_gptq_ref_dct(pool, C, s, n, f1);
    for (int t = 0; st == LB_OK && !ok && t < max_tries; t++, damp = damp > 0 ? damp * 10 : LB_GPTQ_DAMP_FLOOR) {
        lam = damp * mean;
        memcpy(A, H, (size_t)(n * n) * sizeof *A);
        for (int64_t j = 0; j < n; j++) A[j * n + j] += lam;
        st = o->inv_upper(o->user, pool, A, n, work, &ok, err); /* U^T U = (H + lam I)^-1 in A's upper triangle */
    }
    if (st == LB_OK && ok) {
        float *u = malloc((size_t)(n * n) * sizeof *u); /* U, f32 (zero below the diagonal) */
        if (!u) st = lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory for the reference target");
        if (u) ew_run(pool, (ew_job){.op = EW_TO_F32, .n = n, .dst = u, .src = A});
        /* M = W D C + lam W over W */
        for (int k = 0; st == LB_OK && k < n_mat; k++) {
            st = o->matmul(o->user, pool, W[k], rows[k], f1, n, n, tmp, err);
            for (int64_t e = 0; st == LB_OK && e < rows[k] * n; e++) W[k][e] = tmp[e] + (float)lam * W[k][e];
        }
        /* W = M U^T U: P = M U^T (w rows = U's rows), then W = P U (w rows = U's columns, f2 = U^T) */
        free(f1);
        f1 = u;
        if (st == LB_OK && !(f2 = malloc((size_t)(n * n) * sizeof *f2)))
            st = lb_err_set(err, LB_ERR_NOMEM, "gptq: out of memory for the reference target");
        if (st == LB_OK) ew_run(pool, (ew_job){.op = EW_TRANSPOSE, .n = n, .dst = f2, .src32 = u});
        for (int k = 0; st == LB_OK && k < n_mat; k++) {
            st = o->matmul(o->user, pool, W[k], rows[k], f1, n, n, tmp, err);
            if (st == LB_OK) st = o->matmul(o->user, pool, tmp, rows[k], f2, n, n, W[k], err);
        }
        *applied = st == LB_OK;
    }
    free(work), free(f1), free(f2), free(tmp);
    return st;
}
