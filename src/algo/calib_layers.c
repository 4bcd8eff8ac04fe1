/*
 * calib_layers.c - the layer-by-layer calibration state of calib.h.
 *
 * H = sum_t x_t x_t^T is accumulated per window by matrix products: X^T X computed tile by tile by
 * lb_mm_tile (lb_matmul's kernels) on the transposed window (f32, 512 tokens at a time) and added into f64,
 * all in one staged pool run per window (accumulate). H is symmetric, so only its upper triangle is
 * computed, H_ROWS rows at a time (rows i of X^T X from column i on), and mirrored when the statistics are
 * complete. Every element is the same lb_matmul dot product as in the full product, so H is the same to the
 * bit.
 *
 * Statistics are gathered for one point at a time, so one H (and one C) of the largest input dimension
 * serves every point: the memory of calibration is that of the widest matrix input, n_ff^2 doubles. GPTQ
 * takes the buffers over (lb_calib_take_h / _cross) to factor them in place; the next run allocates anew.
 * A statistics run stops each window's layer right after the point it measures
 * (lb_context_run_layer_until): the rest of the layer would not change the statistics.
 *
 * With a reference stream (lb_calib_new's embd_ref), a second copy of the activations, Xr, is moved through
 * the unquantized layers. A statistics run then first runs the reference layer on each window of Xr and
 * keeps its matrix inputs, then the layer under quantization on the same window of X, and adds
 * C = sum_t xr_t x_t^T (the same lb_matmul products, all d x d elements) beside H.
 *
 * On a CUDA device (lb_calib_params.device) the streams live on the GPU and the layer runs and the sums are
 * cuda/calib.h's; this file then keeps only the host copies of the statistics that it hands out.
 */
#include "calib.h"

#include "calib_gpus.h"
#include "../cuda/calib.h"
#include "../quant/matmul.h"
#include "../quant/mm_tile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H_ROWS 64 /* rows of H per product; the part below the diagonal computed anyway is H_ROWS / 2 per row */
#define MIRROR_TILE 32 /* tile of the transpositions */
#define SPARES 2       /* statistics buffers given back and kept for the next runs */
#define PIN_MAX ((size_t)8 << 30) /* the largest statistics buffer page-locked on a GPU (bytes) */
#define PT_ALL (-2)    /* c->pt during lb_calib_layer_diag_stats: every layer point observed */

struct lb_calib {
    const lb_model *m;
    lb_context *ctx;
    lb_pool *pool;
    int64_t n_win, win;    /* windows, tokens per window */
    float *x;              /* (n_win * win, n_embd) */
    double *h;             /* H of the current point, (dim, dim); NULL once taken */
    /* Every statistics buffer holds buf_cap = dmax^2 doubles, so that any buffer serves any point: a buffer
     * taken (lb_calib_take_h / _cross) and given back (lb_calib_give_back) waits in spare for the next run,
     * whose pages are then already mapped. On a GPU they are page-locked (up to PIN_MAX each; `pinned` lists
     * those), so that the device's sums come back at the bus's speed. */
    int64_t buf_cap;
    int64_t dmax;          /* the widest point */
    bool pin;
    double *spare[SPARES];
    double *pinned[2 + SPARES + 2];
    int n_pinned;
    double *abs_sum;
    double *sq_sum;        /* diag_only: sum x^2 per channel, in double, token order */
    bool diag_only;        /* lb_calib_set_diag_only: the CPU's statistics runs sum only H's diagonal */
    bool pt_diag;          /* the current statistics are such a run (H not formed) */
    /* lb_calib_layer_diag_stats: the four layer points' sums of x^2 and |x| at once, (4, dmax) each, and their
     * mean |x|; all_diag while they are the current statistics */
    double *sq_pts, *abs_pts;
    float *mean_pts;
    bool all_diag;
    float *mean_abs;
    int64_t dim[LB_CALIB_POINTS];
    int pt;                /* the point of the current statistics (-1: none) */
    int64_t tokens;        /* tokens in the current statistics */
    float *xr;             /* the reference stream (n_win * win, n_embd), NULL when not kept */
    double *cx;            /* C of the current point, NULL without a reference stream */
    float *ref;            /* the reference window's input at the point (win, dim) */
    float *xtr;            /* the transposed reference window */
    bool capture;          /* the observer keeps the reference inputs instead of accumulating */
    float *xt, *prod;      /* transposed window (dim, win); per thread, H_ROWS rows of a product (accumulate) */
    uint8_t *slots;        /* per thread, lb_mm_tile's slot of slot_bytes */
    size_t slot_bytes;
    int64_t *h_first;      /* accumulate's first task of each strip of H */
    float *att;            /* GPTQ's stages: the attention outputs of X (n_win * win, n_head * head_dim) */
    int stage;             /* GPTQ's stages: the last point whose statistics were taken in stage order, or -1 */
    const lb_layer *stage_ref; /* GPTQ's stages on a GPU: the reference layer, for the advance */
    lb_status st;
    lb_error *err;
    lb_calib_gpus *gpu;    /* the streams and sums on a CUDA device or a set (then x, xr, ctx, pool are unused) */
    int device;            /* its index */
    lb_gptq_ops *gptq_ops; /* GPTQ's algebra on that device, made at first use (NULL: not yet, or the CPU) */
    bool gptq_ops_tried;
    int n_solvers;         /* lb_calib_solvers: 0 until made */
    lb_calib_solver solver[LB_MAX_DEVICES];
    lb_gptq_ops *solver_ops[LB_MAX_DEVICES]; /* the tables made for ranks 1.. (rank 0's is gptq_ops) */
    lb_pool *solver_pool[LB_MAX_DEVICES], *solver_run;
    lb_gptq_scratch gptq_scratch; /* lb_calib_main_solver's buffers (a device table's) */
    float *work[7];        /* lb_calib_work_f32's buffers (page-locked on a GPU where they can be: work_pinned) */
    int64_t work_n[7];
    bool work_pinned[7];
    int64_t fallbacks;     /* matrices whose GPTQ algebra ran on the CPU although the device was asked for */
    char fallback_msg[200]; /* the first reason */
    double gptq_sec[LB_GPTQ_PHASES + 1]; /* GPTQ's phases, then the reference target */
    double convert_sec;    /* lb_calib_note_convert */
    bool has_ref;          /* a reference stream is kept (on the host or the GPU) */
    double seconds;        /* in lb_calib_new and the statistics / advance calls */
};

/* h[k] += p[k], k < n (each sum in double, element by element: the same bits on every path) */
static void add_f32_ref(double *h, const float *p, int64_t n) {
    for (int64_t k = 0; k < n; k++) h[k] += p[k];
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static void add_f32_avx2(double *h, const float *p, int64_t n) {
    for (int64_t k = 0; k < n; k++) h[k] += p[k]; /* vectorized by the compiler: 4 doubles a step */
}
#endif

typedef void (*add_fn)(double *h, const float *p, int64_t n);

static add_fn pick_add(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (!lb_force_ref() && __builtin_cpu_supports("avx2")) return add_f32_avx2;
#endif
    return add_f32_ref;
}

/*
 * accumulate as one staged pool run: stage 0 transposes the window (and the reference input) by blocks of
 * MIRROR_TILE columns and sums their |x|; stage 1 computes the products of H's and C's strips tile by tile
 * (lb_mm_tile: rows [i0, i0 + nr) of xt or xtr as the tokens, LB_MM_TILE rows of xt as the weight, the
 * elements lb_matmul gives) into the thread's rows of prod and adds each tile into H or C in double at once.
 * Every element of H, C and the |x| sums is written by one task, once per window, in window order.
 */
typedef struct acc_job {
    add_fn add;
    lb_calib *c;
    double *a, *q;  /* diag: the |x| and x^2 sums written */
    const float *x; /* (T, dim) */
    int64_t T, dim, nstrip, ntile, c_tasks;
    const int64_t *h_first; /* (nstrip + 1) the first task of each H strip in stage 1, after C's */
} acc_job;

static void acc_transpose(const acc_job *j, int64_t task) {
    lb_calib *c = j->c;
    const int64_t T = j->T, dim = j->dim, j0 = task * MIRROR_TILE, j1 = j0 + MIRROR_TILE < dim ? j0 + MIRROR_TILE : dim;
    for (int64_t t0 = 0; t0 < T; t0 += MIRROR_TILE)
        for (int64_t t = t0; t < t0 + MIRROR_TILE && t < T; t++)
            for (int64_t jj = j0; jj < j1; jj++) c->xt[jj * T + t] = j->x[t * dim + jj];
    if (c->cx)
        for (int64_t t0 = 0; t0 < T; t0 += MIRROR_TILE)
            for (int64_t t = t0; t < t0 + MIRROR_TILE && t < T; t++)
                for (int64_t jj = j0; jj < j1; jj++) c->xtr[jj * T + t] = c->ref[t * dim + jj];
    double *a = c->abs_sum;
    for (int64_t t = 0; t < T; t++)
        for (int64_t jj = j0; jj < j1; jj++) a[jj] += fabsf(j->x[t * dim + jj]);
}

/* diag_only: the |x| and x^2 sums of columns [j0, j1), token by token in double (no transposes, no products) */
static void acc_diag_task(void *arg, int64_t task, int thread) {
    const acc_job *j = arg;
    const int64_t T = j->T, dim = j->dim, j0 = task * MIRROR_TILE, j1 = j0 + MIRROR_TILE < dim ? j0 + MIRROR_TILE : dim;
    (void)thread;
    double *a = j->a, *q = j->q;
    for (int64_t t = 0; t < T; t++)
        for (int64_t jj = j0; jj < j1; jj++) {
            const float v = j->x[t * dim + jj];
            a[jj] += fabsf(v);
            q[jj] += (double)v * v;
        }
}

static void acc_product(const acc_job *j, int64_t task, int thread) {
    lb_calib *c = j->c;
    const int64_t T = j->T, dim = j->dim;
    const bool is_c = task < j->c_tasks;
    int64_t s, tile;
    if (is_c) {
        s = task / j->ntile;
        tile = task % j->ntile;
    } else {
        const int64_t k = task - j->c_tasks;
        s = 0;
        while (k >= j->h_first[s + 1]) s++;
        tile = k - j->h_first[s];
    }
    const int64_t i0 = s * H_ROWS, nr = dim - i0 < H_ROWS ? dim - i0 : H_ROWS, r0 = tile * LB_MM_TILE;
    /* C: tokens = rows of Xr^T, weight = X^T (all dim rows); H: tokens = rows of X^T, weight = its rows i0.. */
    const int64_t wrows = is_c ? dim : dim - i0;
    const int R = (int)(wrows - r0 < LB_MM_TILE ? wrows - r0 : LB_MM_TILE);
    const lb_mm_in in = {(is_c ? c->xtr : c->xt) + i0 * T, NULL, nr, T, 0, NULL};
    const lb_weight w = {LB_TYPE_F32, c->xt + (is_c ? 0 : i0) * T, wrows, T};
    float *prod = c->prod + (size_t)thread * (size_t)(H_ROWS * dim);
    lb_mm_tile(&in, &w, r0, R, prod, dim, c->slots + (size_t)thread * c->slot_bytes);
    for (int64_t t = 0; t < nr; t++) {
        const float *p = prod + t * dim;
        if (is_c) {
            j->add(c->cx + (i0 + t) * dim + r0, p + r0, R);
        } else { /* the upper triangle: column i0 + k for k >= t */
            const int64_t k0 = r0 > t ? r0 : t;
            if (k0 < r0 + R) j->add(c->h + (i0 + t) * dim + i0 + k0, p + k0, r0 + R - k0);
        }
    }
}

static void acc_task(void *arg, int stage, int64_t task, int thread) {
    if (stage == 0) acc_transpose(arg, task);
    else acc_product(arg, task, thread);
}

static void accumulate(lb_calib *c, const float *x, int64_t T, int64_t dim, int pt_all) {
    const int64_t nstrip = (dim + H_ROWS - 1) / H_ROWS, ntile = (dim + LB_MM_TILE - 1) / LB_MM_TILE;
    int64_t *hf = c->h_first;
    hf[0] = 0;
    for (int64_t s = 0; s < nstrip; s++) hf[s + 1] = hf[s] + (dim - s * H_ROWS + LB_MM_TILE - 1) / LB_MM_TILE;
    acc_job j = {pick_add(), c, c->abs_sum, c->sq_sum, x, T, dim, nstrip, ntile, c->cx ? nstrip * ntile : 0, hf};
    if (c->pt == PT_ALL) { /* lb_calib_layer_diag_stats: the point's own rows of the (4, dmax) sums */
        if (pt_all >= 0) {
            j.a = c->abs_pts + pt_all * c->dmax, j.q = c->sq_pts + pt_all * c->dmax;
            lb_pool_run(c->pool, (dim + MIRROR_TILE - 1) / MIRROR_TILE, acc_diag_task, &j);
        }
        return;
    }
    if (c->pt_diag) {
        lb_pool_run(c->pool, (dim + MIRROR_TILE - 1) / MIRROR_TILE, acc_diag_task, &j);
        return;
    }
    const int64_t ends[2] = {(dim + MIRROR_TILE - 1) / MIRROR_TILE, (dim + MIRROR_TILE - 1) / MIRROR_TILE + j.c_tasks + hf[nstrip]};
    lb_pool_run_stages(c->pool, 2, ends, acc_task, &j);
}

static void observer(void *user, int64_t layer, lb_obs_point pt, const float *x, int64_t T, int64_t dim) {
    lb_calib *c = user;
    (void)layer;
    if ((int)pt != c->pt && !(c->pt == PT_ALL && (int)pt < LB_OBS_OUTPUT_IN)) return;
    if (T != c->win) { /* the forward pass hands over whole windows; anything else is a bug, not data */
        if (c->st == LB_OK) c->st = LB_ERR_ARG;
        return;
    }
    if (c->capture) memcpy(c->ref, x, (size_t)(T * dim) * sizeof *x);
    else accumulate(c, x, T, dim, c->pt == PT_ALL ? (int)pt : -1);
}

/* A statistics buffer of buf_cap doubles: page-locked on a GPU when it can be, else malloc's */
static double *stats_alloc(lb_calib *c) {
    const size_t bytes = (size_t)c->buf_cap * sizeof(double);
    if (c->pin && c->n_pinned < (int)(sizeof c->pinned / sizeof *c->pinned)) {
        double *p = lb_cuda_host_alloc(c->device, bytes);
        if (p) return c->pinned[c->n_pinned++] = p;
    }
    return malloc(bytes);
}

static void stats_release(lb_calib *c, double *p) {
    if (!p) return;
    for (int i = 0; i < c->n_pinned; i++)
        if (c->pinned[i] == p) {
            lb_cuda_host_free(p);
            c->pinned[i] = c->pinned[--c->n_pinned];
            return;
        }
    free(p);
}

void lb_calib_give_back(lb_calib *c, double *buf) {
    if (!buf) return;
    for (int i = 0; i < SPARES; i++)
        if (!c->spare[i]) {
            c->spare[i] = buf;
            return;
        }
    stats_release(c, buf);
}

/* A statistics buffer in *b (every one holds buf_cap doubles, enough for any point): a spare when it was taken,
 * else a new one. */
static bool ensure(lb_calib *c, double **b) {
    for (int i = SPARES - 1; i >= 0 && !*b; i--)
        if (c->spare[i]) *b = c->spare[i], c->spare[i] = NULL;
    if (!*b) *b = stats_alloc(c);
    return *b != NULL;
}

static lb_status reset_stats(lb_calib *c, lb_obs_point pt, lb_error *err) {
    const int64_t d = c->dim[pt];
    c->pt = -1;
    c->all_diag = false;
    if (!ensure(c, &c->h) || (c->has_ref && !ensure(c, &c->cx)))
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory for the calibration statistics (%lld x %lld)", (long long)d,
                          (long long)d);
    c->pt = (int)pt;
    c->pt_diag = c->diag_only && !c->cx;
    if (c->gpu) lb_calib_gpus_set_diag_only(c->gpu, c->pt_diag); /* the device's sums of x^2 land in sq_sum */
    if (!c->gpu && !c->pt_diag) { /* the GPU's sums replace these whole */
        memset(c->h, 0, (size_t)(d * d) * sizeof(double));
        if (c->cx) memset(c->cx, 0, (size_t)(d * d) * sizeof(double));
    }
    memset(c->abs_sum, 0, (size_t)d * sizeof(double));
    memset(c->sq_sum, 0, (size_t)d * sizeof(double));
    c->tokens = 0;
    c->st = LB_OK;
    return LB_OK;
}

/* The strictly lower triangle of h (d, d) from the upper, in tiles so that the column reads stay cached. */
static void mirror(double *h, int64_t d) {
    for (int64_t i0 = 0; i0 < d; i0 += MIRROR_TILE)
        for (int64_t j0 = 0; j0 <= i0; j0 += MIRROR_TILE)
            for (int64_t i = i0; i < i0 + MIRROR_TILE && i < d; i++)
                for (int64_t j = j0; j < j0 + MIRROR_TILE && j < i; j++) h[i * d + j] = h[j * d + i];
}

static void finish_stats(lb_calib *c) {
    const int64_t d = c->dim[c->pt];
    if (!c->pt_diag) { /* else sq_sum is H's diagonal and H is not formed */
        if (!c->gpu) mirror(c->h, d); /* the GPU's H is whole */
        for (int64_t j = 0; j < d; j++) c->sq_sum[j] = c->h[j * d + j];
    }
    for (int64_t j = 0; j < d; j++) c->mean_abs[j] = c->tokens ? (float)(c->abs_sum[j] / (double)c->tokens) : 0.0f;
}

/* The CPU's streams, context and scratch. */
static lb_status cpu_init(lb_calib *c, int64_t dmax, bool ref, const lb_calib_params *p, lb_error *err) {
    const lb_model_info *h = &c->m->info;
    const int64_t nw = c->n_win;
    bool ok = true;
    int nt = p->n_threads > 0 ? p->n_threads : lb_cpu_count();
    c->pool = lb_pool_new(nt);
    c->x = malloc((size_t)(nw * p->ctx * h->n_embd) * sizeof(float));
    c->xt = malloc((size_t)(dmax * p->ctx) * sizeof(float));
    if (ref) {
        c->ref = malloc((size_t)(dmax * p->ctx) * sizeof(float));
        c->xr = malloc((size_t)(nw * p->ctx * h->n_embd) * sizeof(float));
        c->xtr = malloc((size_t)(dmax * p->ctx) * sizeof(float));
        ok &= c->ref && c->xr && c->xtr;
    }
    c->prod = malloc((size_t)nt * (size_t)(H_ROWS * dmax) * sizeof(float));
    c->slot_bytes = lb_mm_slot_bytes(p->ctx);
    c->slots = aligned_alloc(64, (size_t)nt * c->slot_bytes);
    c->h_first = malloc((size_t)(dmax / H_ROWS + 2) * sizeof *c->h_first);
    ok &= c->pool && c->x && c->xt && c->prod && c->slots && c->h_first;
    if (!ok) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for %lld calibration windows", (long long)nw);
    lb_context_params cp = {.n_ctx = p->ctx, .n_threads = nt, .device = {LB_DEVICE_CPU, 0}};
    return lb_context_new(c->m, &cp, &c->ctx, err);
}

/* The embedding rows of the windows into the streams: on the host, or a window at a time to the GPU. */
static lb_status fill_streams(lb_calib *c, const lb_weight *embd, const lb_weight *embd_ref, const int32_t *tokens,
                              const int64_t *starts, lb_error *err) {
    const int64_t E = c->m->info.n_embd, win = c->win;
    float *stage = NULL;
    if (c->gpu && !(stage = malloc((size_t)(2 * win * E) * sizeof *stage))) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    lb_status s = LB_OK;
    for (int64_t w = 0; s == LB_OK && w < c->n_win; w++) {
        float *x = c->gpu ? stage : c->x + w * win * E, *xr = c->gpu ? stage + win * E : c->xr ? c->xr + w * win * E : NULL;
        for (int64_t t = 0; t < win; t++) {
            int32_t id = tokens[starts[w] + t];
            if (id < 0 || id >= c->m->info.n_vocab) {
                s = lb_err_set(err, LB_ERR_ARG, "calibration token %d is outside the vocabulary", id);
                break;
            }
            lb_weight_row_f32(embd, id, x + t * E);
            if (embd_ref) lb_weight_row_f32(embd_ref, id, xr + t * E);
        }
        if (s == LB_OK && c->gpu) s = lb_calib_gpus_upload(c->gpu, 0, w * win, x, win, err);
        if (s == LB_OK && c->gpu && embd_ref) s = lb_calib_gpus_upload(c->gpu, 1, w * win, xr, win, err);
    }
    free(stage);
    return s;
}

lb_status lb_calib_new(const lb_model *m, const lb_weight *embd, const lb_weight *embd_ref, const int32_t *tokens, int64_t n_tokens,
                       const lb_calib_params *p, lb_calib **out, lb_error *err) {
    const lb_model_info *h = &m->info;
    const double t0 = lb_time_sec();
    int64_t *starts = NULL, nw = 0;
    lb_status s = lb_calib_windows(n_tokens, p, &starts, &nw, err);
    if (s != LB_OK) return s;
    lb_calib *c = calloc(1, sizeof *c);
    if (!c) {
        free(starts);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    c->m = m;
    c->device = p->device.index;
    c->n_win = nw;
    c->win = p->ctx;
    c->has_ref = embd_ref != NULL;
    int64_t dims[LB_CALIB_POINTS] = {h->n_embd, h->n_head * h->head_dim, h->n_embd, h->n_ff, h->n_embd};
    int64_t dmax = 0;
    for (int k = 0; k < LB_CALIB_POINTS; k++) {
        c->dim[k] = dims[k];
        dmax = dims[k] > dmax ? dims[k] : dmax;
    }
    c->pt = -1;
    c->stage = -1;
    c->buf_cap = dmax * dmax;
    c->dmax = dmax;
    c->pin = p->device.kind == LB_DEVICE_CUDA && (size_t)c->buf_cap * sizeof(double) <= PIN_MAX;
    c->h = stats_alloc(c);
    c->abs_sum = malloc((size_t)dmax * sizeof(double));
    c->sq_sum = malloc((size_t)dmax * sizeof(double));
    c->mean_abs = malloc((size_t)dmax * sizeof(float));
    c->sq_pts = malloc((size_t)(4 * dmax) * sizeof(double));
    c->abs_pts = malloc((size_t)(4 * dmax) * sizeof(double));
    c->mean_pts = malloc((size_t)(4 * dmax) * sizeof(float));
    bool ok = c->h && c->abs_sum && c->sq_sum && c->mean_abs && c->sq_pts && c->abs_pts && c->mean_pts;
    if (embd_ref) {
        c->cx = stats_alloc(c);
        ok &= c->cx != NULL;
    }
    if (!ok) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory for the calibration statistics");
    else if (p->device.kind == LB_DEVICE_CUDA)
        s = lb_calib_gpus_new(m, p->device.index, p->n_devices, p->devices, nw, p->ctx, embd_ref != NULL, dmax, &c->gpu, err);
    else s = cpu_init(c, dmax, embd_ref != NULL, p, err);
    if (s == LB_OK) s = fill_streams(c, embd, embd_ref, tokens, starts, err);
    c->seconds = lb_time_sec() - t0;
    free(starts);
    if (s != LB_OK) {
        lb_calib_free(c);
        return s;
    }
    if (c->ctx) lb_context_set_observer(c->ctx, observer, c);
    *out = c;
    return LB_OK;
}

void lb_calib_free(lb_calib *c) {
    if (!c) return;
    for (int r = 0; r < LB_MAX_DEVICES; r++) {
        lb_gptq_ops_cuda_free(c->solver_ops[r]);
        lb_pool_free(c->solver_pool[r]);
    }
    lb_pool_free(c->solver_run);
    lb_gptq_ops_cuda_free(c->gptq_ops);
    lb_gptq_scratch_free(&c->gptq_scratch);
    lb_calib_release_work(c);
    lb_calib_gpus_free(c->gpu);
    lb_context_free(c->ctx);
    lb_pool_free(c->pool);
    stats_release(c, c->h);
    stats_release(c, c->cx);
    for (int i = 0; i < SPARES; i++) stats_release(c, c->spare[i]);
    free(c->ref);
    free(c->abs_sum);
    free(c->sq_sum);
    free(c->mean_abs);
    free(c->sq_pts);
    free(c->abs_pts);
    free(c->mean_pts);
    free(c->x);
    free(c->xt);
    free(c->prod);
    free(c->slots);
    free(c->h_first);
    free(c->xr);
    free(c->xtr);
    free(c->att);
    free(c);
}

/* Layer il with weights l on every window of X, each only up to point pt (statistics), with the reference
 * layer ref first run up to pt on the same window of the reference stream (its inputs captured) when ref
 * is given. */
static lb_status stats_windows(lb_calib *c, const lb_layer *l, const lb_layer *ref, int64_t il, lb_obs_point pt,
                               lb_error *err) {
    int64_t E = c->m->info.n_embd;
    lb_status s = LB_OK;
    for (int64_t w = 0; s == LB_OK && w < c->n_win; w++) {
        const float *xw = c->x + w * c->win * E;
        if (ref) {
            c->capture = true;
            s = lb_context_run_layer_until(c->ctx, ref, il, c->xr + w * c->win * E, c->win, pt, err);
            c->capture = false;
            if (s != LB_OK) break;
        }
        s = lb_context_run_layer_until(c->ctx, l, il, xw, c->win, pt, err);
        c->tokens += c->win;
    }
    return s;
}

/* Every window of xs (n_win * win, n_embd) through layer il with weights l, in place. */
static lb_status advance_windows(lb_calib *c, float *xs, const lb_layer *l, int64_t il, lb_error *err) {
    const int64_t E = c->m->info.n_embd;
    lb_status s = LB_OK;
    for (int64_t w = 0; s == LB_OK && w < c->n_win; w++)
        s = lb_context_run_layer(c->ctx, l, il, xs + w * c->win * E, c->win, err);
    return s;
}

/* A point's statistics on the GPU (or a set): per point from the layer's start, or (staged) GPTQ's stage part by
 * part; the device's sums replace the host's whole (sums of x^2 into sq_sum in diagonal mode). */
static lb_status gpu_stats_run(lb_calib *c, const lb_layer *l, const lb_layer *ref, lb_obs_point pt, int64_t il, bool staged,
                               lb_error *err) {
    lb_status s = reset_stats(c, pt, err);
    if (s != LB_OK) return s;
    double *h = c->pt_diag ? c->sq_sum : c->h;
    const lb_layer *r = c->has_ref ? ref : NULL;
    s = staged ? lb_calib_gpus_stage_stats(c->gpu, l, r, il, pt, h, c->cx, c->abs_sum, err)
               : lb_calib_gpus_stats(c->gpu, l, r, il, pt, h, c->cx, c->abs_sum, err);
    c->tokens = c->n_win * c->win;
    finish_stats(c);
    return s;
}

static lb_status layer_stats_run(lb_calib *c, const lb_layer *l, const lb_layer *ref, lb_obs_point pt, int64_t il,
                               lb_error *err) {
    if (pt < 0 || pt >= LB_OBS_OUTPUT_IN) return lb_err_set(err, LB_ERR_ARG, "calibration: not a layer point");
    if (c->gpu) return gpu_stats_run(c, l, ref, pt, il, false, err);
    lb_status s0 = reset_stats(c, pt, err);
    if (s0 != LB_OK) return s0;
    lb_context_set_observer(c->ctx, observer, c);
    lb_status s = stats_windows(c, l, c->xr ? ref : NULL, il, pt, err);
    if (s == LB_OK && c->st != LB_OK) s = lb_err_set(err, c->st, "calibration: a matrix input was not a whole window");
    finish_stats(c);
    return s;
}

/* lb_calib_layer_diag_stats: one run of every window up to the last layer point, each point's sums of x^2 and |x|
 * into its row of sq_pts / abs_pts (on the CPU the observer's; on a GPU the device's) */
static lb_status diag_all_run(lb_calib *c, const lb_layer *l, int64_t il, lb_error *err) {
    if (c->has_ref) return lb_err_set(err, LB_ERR_ARG, "calibration: the all-points diagonal statistics take no reference stream");
    c->pt = -1;
    c->all_diag = false;
    c->tokens = 0;
    c->st = LB_OK;
    const int64_t E = c->m->info.n_embd, n4 = 4 * c->dmax;
    memset(c->sq_pts, 0, (size_t)n4 * sizeof(double));
    memset(c->abs_pts, 0, (size_t)n4 * sizeof(double));
    lb_status s = LB_OK;
    if (c->gpu) {
        s = lb_calib_gpus_diag_stats(c->gpu, l, il, c->sq_pts, c->abs_pts, err);
        c->tokens = c->n_win * c->win;
    } else {
        c->pt = PT_ALL;
        lb_context_set_observer(c->ctx, observer, c);
        for (int64_t w = 0; s == LB_OK && w < c->n_win; w++) {
            s = lb_context_run_layer_until(c->ctx, l, il, c->x + w * c->win * E, c->win, LB_OBS_FFN_DOWN_IN, err);
            c->tokens += c->win;
        }
        c->pt = -1;
        if (s == LB_OK && c->st != LB_OK) s = lb_err_set(err, c->st, "calibration: a matrix input was not a whole window");
    }
    if (s != LB_OK) return s;
    for (int k = 0; k < LB_OBS_OUTPUT_IN; k++)
        for (int64_t j = 0; j < c->dim[k]; j++)
            c->mean_pts[k * c->dmax + j] = c->tokens ? (float)(c->abs_pts[k * c->dmax + j] / (double)c->tokens) : 0.0f;
    c->all_diag = true;
    return LB_OK;
}

static lb_status layer_advance_run(lb_calib *c, const lb_layer *l, const lb_layer *ref, int64_t il, lb_error *err) {
    if (c->gpu) return lb_calib_gpus_advance(c->gpu, l, c->has_ref ? ref : NULL, il, err);
    lb_context_set_observer(c->ctx, NULL, NULL);
    lb_status s = advance_windows(c, c->x, l, il, err);
    if (s == LB_OK && c->xr) s = advance_windows(c, c->xr, ref, il, err);
    lb_context_set_observer(c->ctx, observer, c);
    return s;
}

/*
 * GPTQ's stages. Which part of the layer each stage runs on a window (from, stop; -1: to the end), for X
 * and for the reference stream Xr: X keeps its attention outputs (c->att) from the attention stage and
 * moves past the attention block in the FFN_IN stage; Xr, whose layer does not change, moves past the
 * attention block in the ATTN_OUT_IN stage and through the rest of the layer in the last stage.
 */
static const int STAGE_X[4][2] = {{LB_OBS_ATTN_IN, LB_OBS_ATTN_IN}, {LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN},
                                  {LB_OBS_ATTN_OUT_IN, LB_OBS_FFN_IN}, {LB_OBS_FFN_IN, LB_OBS_FFN_DOWN_IN}};
static const int STAGE_XR[4][2] = {{LB_OBS_ATTN_IN, LB_OBS_ATTN_IN}, {LB_OBS_ATTN_IN, LB_OBS_FFN_IN},
                                   {LB_OBS_FFN_IN, LB_OBS_FFN_IN}, {LB_OBS_FFN_IN, -1}};

static lb_status stage_windows(lb_calib *c, const lb_layer *l, const lb_layer *ref, int64_t il, lb_obs_point pt,
                               lb_error *err) {
    const int64_t E = c->m->info.n_embd, qd = c->m->info.n_head * c->m->info.head_dim;
    lb_status s = LB_OK;
    for (int64_t w = 0; s == LB_OK && w < c->n_win; w++) {
        float *att = pt == LB_OBS_ATTN_OUT_IN || pt == LB_OBS_FFN_IN ? c->att + w * c->win * qd : NULL;
        if (c->xr) {
            c->capture = true;
            s = lb_context_run_layer_part(c->ctx, ref, il, c->xr + w * c->win * E, NULL, c->win,
                                          (lb_obs_point)STAGE_XR[pt][0], STAGE_XR[pt][1], err);
            c->capture = false;
            if (s != LB_OK) break;
        }
        s = lb_context_run_layer_part(c->ctx, l, il, c->x + w * c->win * E, att, c->win, (lb_obs_point)STAGE_X[pt][0],
                                      STAGE_X[pt][1], err);
        c->tokens += c->win;
    }
    return s;
}

static lb_status stage_stats_run(lb_calib *c, const lb_layer *l, const lb_layer *ref, lb_obs_point pt, int64_t il,
                                 lb_error *err) {
    if (pt < 0 || pt >= LB_OBS_OUTPUT_IN) return lb_err_set(err, LB_ERR_ARG, "calibration: not a layer point");
    if ((pt > 0 && c->stage != (int)pt - 1) || (c->has_ref && !ref))
        return lb_err_set(err, LB_ERR_ARG, "calibration: stage %d out of order (after %d) or without its reference layer",
                          (int)pt, c->stage);
    c->stage = -1;
    if (c->gpu && lb_calib_gpus_stages(c->gpu)) { /* the device's stages, part by part */
        lb_status s = gpu_stats_run(c, l, ref, pt, il, true, err);
        if (s == LB_OK) c->stage = (int)pt;
        return s;
    }
    if (c->gpu) { /* the device runs each point's part of the layer itself: the plain per-point statistics */
        c->stage_ref = ref;
        lb_status s = layer_stats_run(c, l, ref, pt, il, err);
        if (s == LB_OK) c->stage = (int)pt;
        return s;
    }
    if (pt == LB_OBS_ATTN_OUT_IN && !c->att) {
        const lb_model_info *h = &c->m->info;
        c->att = malloc((size_t)(c->n_win * c->win * h->n_head * h->head_dim) * sizeof *c->att);
        if (!c->att) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for the attention outputs of the calibration windows");
    }
    lb_status s = reset_stats(c, pt, err);
    if (s != LB_OK) return s;
    lb_context_set_observer(c->ctx, observer, c);
    s = stage_windows(c, l, ref, il, pt, err);
    if (s == LB_OK && c->st != LB_OK) s = lb_err_set(err, c->st, "calibration: a matrix input was not a whole window");
    finish_stats(c);
    if (s == LB_OK) c->stage = (int)pt;
    return s;
}

static lb_status stage_advance_run(lb_calib *c, const lb_layer *l, int64_t il, lb_error *err) {
    if (c->stage != LB_OBS_FFN_DOWN_IN)
        return lb_err_set(err, LB_ERR_ARG, "calibration: advance before the last stage (after %d)", c->stage);
    c->stage = -1;
    if (c->gpu && lb_calib_gpus_stages(c->gpu)) return lb_calib_gpus_stage_advance(c->gpu, l, il, err);
    if (c->gpu) return layer_advance_run(c, l, c->stage_ref, il, err);
    const int64_t E = c->m->info.n_embd;
    lb_context_set_observer(c->ctx, NULL, NULL);
    lb_status s = LB_OK;
    for (int64_t w = 0; s == LB_OK && w < c->n_win; w++)
        s = lb_context_run_layer_part(c->ctx, l, il, c->x + w * c->win * E, NULL, c->win, LB_OBS_FFN_IN, -1, err);
    lb_context_set_observer(c->ctx, observer, c);
    return s;
}

/* The final norm of window xw (win, E) into xn. */
static void out_norm_window(const lb_calib *c, const float *out_norm, const float *xw, float *xn) {
    const int64_t E = c->m->info.n_embd;
    const float eps = c->m->info.rms_eps;
    for (int64_t t = 0; t < c->win; t++) {
        double ss = 0;
        for (int64_t j = 0; j < E; j++) ss += (double)xw[t * E + j] * xw[t * E + j];
        float r = (float)(1.0 / sqrt(ss / (double)E + (double)eps));
        for (int64_t j = 0; j < E; j++) xn[t * E + j] = out_norm[j] * (xw[t * E + j] * r);
    }
}

static lb_status output_stats_run(lb_calib *c, const float *out_norm, lb_error *err) {
    lb_status s0 = reset_stats(c, LB_OBS_OUTPUT_IN, err);
    if (s0 != LB_OK) return s0;
    if (c->gpu) {
        lb_status s = lb_calib_gpus_output_stats(c->gpu, out_norm, c->pt_diag ? c->sq_sum : c->h, c->cx, c->abs_sum, err);
        c->tokens = c->n_win * c->win;
        finish_stats(c);
        return s;
    }
    int64_t E = c->m->info.n_embd;
    float *xn = malloc((size_t)(c->win * E) * sizeof *xn);
    if (!xn) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    for (int64_t w = 0; w < c->n_win; w++) {
        if (c->xr) out_norm_window(c, out_norm, c->xr + w * c->win * E, c->ref);
        out_norm_window(c, out_norm, c->x + w * c->win * E, xn);
        accumulate(c, xn, c->win, E, -1);
        c->tokens += c->win;
    }
    free(xn);
    finish_stats(c);
    return LB_OK;
}

const double *lb_calib_h(const lb_calib *c, lb_obs_point pt, int64_t *dim) {
    if (dim) *dim = c->dim[pt];
    return (int)pt == c->pt && !c->pt_diag ? c->h : NULL;
}

const double *lb_calib_h_diag(const lb_calib *c, lb_obs_point pt) {
    if (c->all_diag) return pt >= 0 && pt < LB_OBS_OUTPUT_IN ? c->sq_pts + pt * c->dmax : NULL;
    return (int)pt == c->pt ? c->sq_sum : NULL;
}

void lb_calib_set_diag_only(lb_calib *c, bool on) { c->diag_only = on; }

static double *take(const lb_calib *c, lb_obs_point pt, double **buf) {
    if ((int)pt != c->pt || c->pt_diag) return NULL;
    double *b = *buf;
    *buf = NULL;
    return b;
}

double *lb_calib_take_h(lb_calib *c, lb_obs_point pt) { return take(c, pt, &c->h); }
double *lb_calib_take_cross(lb_calib *c, lb_obs_point pt) { return take(c, pt, &c->cx); }

const double *lb_calib_cross(const lb_calib *c, lb_obs_point pt) { return (int)pt == c->pt ? c->cx : NULL; }
const float *lb_calib_mean_abs(const lb_calib *c, lb_obs_point pt) {
    if (c->all_diag) return pt >= 0 && pt < LB_OBS_OUTPUT_IN ? c->mean_pts + pt * c->dmax : NULL;
    return (int)pt == c->pt ? c->mean_abs : NULL;
}
int64_t lb_calib_tokens(const lb_calib *c) { return c->tokens; }
size_t lb_calib_gpu_peak(const lb_calib *c) {
    const size_t a = lb_calib_gpus_peak(c->gpu), b = lb_gptq_ops_cuda_peak(c->gptq_ops);
    return a > b ? a : b;
}

const lb_gptq_ops *lb_calib_test_gptq_ops = NULL;

const lb_gptq_ops *lb_calib_gptq_ops(lb_calib *c) {
    if (!c->gpu) return lb_calib_test_gptq_ops;
    if (c->gptq_ops_tried) return c->gptq_ops;
    c->gptq_ops_tried = true;
    /* LB_GPTQ_GPU=0 keeps the solver on CPU threads (comparisons, benchmarks) */
    const char *on = getenv("LB_GPTQ_GPU");
    if (on && !strcmp(on, "0")) return NULL;
    lb_error e = {0};
    if (lb_gptq_ops_cuda_new(c->device, &c->gptq_ops, &e) != LB_OK) {
        c->gptq_ops = NULL;
        lb_calib_note_fallback(c, e.msg);
    }
    return c->gptq_ops;
}

/* Page-locked host memory on the calibration's GPU (up to PIN_MAX a buffer), for buffers the GPU reads and writes
 * many times (the work copies: every pass, the descent and the reference target upload them): NULL otherwise. */
static void *pinned_alloc(void *ctx, size_t bytes) {
    const lb_calib *c = ctx;
    return c->gpu && bytes <= PIN_MAX ? lb_cuda_host_alloc(c->device, bytes) : NULL;
}
static void pinned_release(void *ctx, void *p) {
    (void)ctx;
    lb_cuda_host_free(p);
}

static void work_drop(lb_calib *c, int k) {
    if (c->work_pinned[k]) lb_cuda_host_free(c->work[k]);
    else free(c->work[k]);
    c->work[k] = NULL;
    c->work_n[k] = 0;
    c->work_pinned[k] = false;
}

float *lb_calib_work_f32(lb_calib *c, int k, int64_t n) {
    if (k < 0 || k >= 7) return NULL;
    if (c->work[k] && c->work_n[k] >= n) return c->work[k];
    work_drop(c, k);
    c->work[k] = pinned_alloc(c, (size_t)n * sizeof(float));
    c->work_pinned[k] = c->work[k] != NULL;
    if (!c->work[k]) c->work[k] = malloc((size_t)n * sizeof(float));
    c->work_n[k] = c->work[k] ? n : 0;
    return c->work[k];
}

void lb_calib_release_work(lb_calib *c) {
    for (int k = 0; k < 7; k++) work_drop(c, k);
}

lb_calib_solver lb_calib_main_solver(lb_calib *c, lb_pool *pool) {
    const lb_gptq_ops *o = lb_calib_gptq_ops(c);
    if (o && !c->gptq_scratch.alloc) { /* a device table's buffers: page-locked, as the work copies */
        c->gptq_scratch.alloc = pinned_alloc;
        c->gptq_scratch.release = pinned_release;
        c->gptq_scratch.ctx = c;
    }
    return (lb_calib_solver){o, pool, o ? &c->gptq_scratch : NULL};
}

int lb_calib_solvers(lb_calib *c, lb_pool *pool, const lb_calib_solver **solvers, lb_pool **runner) {
    if (c->n_solvers == 0) {
        const lb_gptq_ops *o0 = lb_calib_gptq_ops(c);
        int want = 1, ranks = c->gpu ? lb_calib_gpus_ranks(c->gpu) : 1;
        const char *v = getenv("LB_CALIB_SOLVERS"); /* more solvers than ranks: the ranks' devices in turn */
        long asked = v ? strtol(v, NULL, 10) : 0;
        if (o0 && c->gpu) want = ranks;
        if ((o0 || !c->gpu) && asked > want) want = asked > LB_MAX_DEVICES ? LB_MAX_DEVICES : (int)asked;
        int n = 1;
        c->solver[0] = (lb_calib_solver){o0, pool, NULL};
        if (want > 1) {
            const int nt = lb_pool_size(pool), per = nt / want > 1 ? nt / want : 1;
            for (n = 0; n < want; n++) {
                if (o0 && n > 0) {
                    lb_error e = {0};
                    if (lb_gptq_ops_cuda_new(lb_calib_gpus_device(c->gpu, n % ranks), &c->solver_ops[n], &e) != LB_OK) {
                        c->solver_ops[n] = NULL;
                        lb_calib_note_fallback(c, e.msg);
                        break;
                    }
                }
                if (!(c->solver_pool[n] = lb_pool_new(per))) break;
                c->solver[n] = (lb_calib_solver){n ? c->solver_ops[n] : o0, c->solver_pool[n], NULL}; /* side by side: buffers per call */
            }
            if (n > 1 && !(c->solver_run = lb_pool_new(n))) n = 1;
            if (n <= 1) n = 1, c->solver[0] = (lb_calib_solver){o0, pool, NULL};
        }
        c->n_solvers = n;
    }
    if (c->n_solvers == 1) c->solver[0].pool = pool; /* the caller's pool, whichever it is this time */
    *solvers = c->solver;
    *runner = c->solver_run;
    return c->n_solvers;
}

void lb_calib_note_gptq(lb_calib *c, const double *sec, double ref_seconds) {
    for (int k = 0; sec && k < LB_GPTQ_PHASES; k++) c->gptq_sec[k] += sec[k];
    c->gptq_sec[LB_GPTQ_PHASES] += ref_seconds;
}

void lb_calib_gptq_seconds(const lb_calib *c, double out[LB_GPTQ_PHASES + 1]) {
    memcpy(out, c->gptq_sec, sizeof c->gptq_sec);
}

void lb_calib_note_convert(lb_calib *c, double seconds) { c->convert_sec += seconds; }
double lb_calib_convert_seconds(const lb_calib *c) { return c ? c->convert_sec : 0; }

void lb_calib_note_fallback(lb_calib *c, const char *why) {
    if (c->fallbacks++ == 0) snprintf(c->fallback_msg, sizeof c->fallback_msg, "%.199s", why ? why : "");
}

int64_t lb_calib_fallbacks(const lb_calib *c, const char **why) {
    if (why) *why = c->fallback_msg;
    return c->fallbacks;
}

/* adds the time since t0 to the calibration's seconds and passes s on (the argument is evaluated first) */
static lb_status timed(lb_calib *c, double t0, lb_status s) {
    c->seconds += lb_time_sec() - t0;
    return s;
}

lb_status lb_calib_layer_stats(lb_calib *c, const lb_layer *l, const lb_layer *ref, lb_obs_point pt, int64_t il,
                               lb_error *err) {
    const double t0 = lb_time_sec();
    return timed(c, t0, layer_stats_run(c, l, ref, pt, il, err));
}

lb_status lb_calib_layer_diag_stats(lb_calib *c, const lb_layer *l, int64_t il, lb_error *err) {
    const double t0 = lb_time_sec();
    return timed(c, t0, diag_all_run(c, l, il, err));
}

lb_status lb_calib_layer_advance(lb_calib *c, const lb_layer *l, const lb_layer *ref, int64_t il, lb_error *err) {
    const double t0 = lb_time_sec();
    return timed(c, t0, layer_advance_run(c, l, ref, il, err));
}

lb_status lb_calib_stage_stats(lb_calib *c, const lb_layer *l, const lb_layer *ref, lb_obs_point pt, int64_t il,
                               lb_error *err) {
    const double t0 = lb_time_sec();
    return timed(c, t0, stage_stats_run(c, l, ref, pt, il, err));
}

lb_status lb_calib_stage_advance(lb_calib *c, const lb_layer *l, int64_t il, lb_error *err) {
    const double t0 = lb_time_sec();
    return timed(c, t0, stage_advance_run(c, l, il, err));
}

lb_status lb_calib_output_stats(lb_calib *c, const float *out_norm, lb_error *err) {
    const double t0 = lb_time_sec();
    return timed(c, t0, output_stats_run(c, out_norm, err));
}

double lb_calib_seconds(const lb_calib *c) { return c->seconds; }

void lb_calib_gpu_phase_seconds(const lb_calib *c, double out[3]) { lb_calib_gpus_phase_seconds(c ? c->gpu : NULL, out); }
void lb_calib_gpu_split(const lb_calib *c, int *gpus, double *allreduce_seconds, int *solvers) {
    *gpus = c && c->gpu ? lb_calib_gpus_ranks(c->gpu) : 0;
    *allreduce_seconds = c ? lb_calib_gpus_allreduce_seconds(c->gpu) : 0;
    *solvers = c && c->n_solvers > 1 ? c->n_solvers : 1;
}
