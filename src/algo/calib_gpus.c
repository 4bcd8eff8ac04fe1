/*
 * calib_gpus.c - the calibration statistics on one GPU or a data-parallel set of them (calib_gpus.h).
 */
#include "calib_gpus.h"

#include "../cuda/comm.h"

#include <stdlib.h>
#include <string.h>

struct lb_calib_gpus {
    int n;                          /* ranks */
    bool set;                       /* a device set: windows split, sums all-reduced (also for one rank) */
    int dev[LB_MAX_RANKS];
    int64_t w0[LB_MAX_RANKS + 1];   /* rank r's windows [w0[r], w0[r + 1]) */
    int64_t win, dmax;
    lb_cuda_calib *c[LB_MAX_RANKS];
    lb_cuda_comm *comm;
    lb_pool *pool;                  /* one thread per rank */
    double allreduce_sec;           /* in the all-reduces */
    bool diag;                      /* lb_calib_gpus_set_diag_only: h holds H's diagonal (dim values) */
};

lb_status lb_calib_gpus_new(const struct lb_model *m, int device, int n_devices, const int *devices, int64_t n_win, int64_t win,
                            int with_ref, int64_t dmax, lb_calib_gpus **out, lb_error *err) {
    *out = NULL;
    lb_calib_gpus *g = calloc(1, sizeof *g);
    if (!g) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    g->win = win, g->dmax = dmax;
    if (n_devices == 0) {
        g->n = 1;
        g->dev[0] = device;
    } else {
        g->set = true;
        g->n = n_devices < 0 ? lb_cuda_device_count() : n_devices;
        if (g->n > LB_MAX_RANKS) g->n = LB_MAX_RANKS;
        if (g->n < 1) {
            free(g);
            return lb_err_set(err, LB_ERR_DEVICE, "no CUDA driver/device: no CUDA device found for cuda:all");
        }
        for (int r = 0; r < g->n; r++) g->dev[r] = n_devices < 0 ? r : devices[r];
        if (g->n > n_win) g->n = (int)n_win; /* a rank without a window would have nothing to do */
    }
    for (int r = 0; r <= g->n; r++) g->w0[r] = n_win * r / g->n;
    lb_status s = LB_OK;
    for (int r = 0; s == LB_OK && r < g->n; r++) /* one after another: the libraries are opened by the first */
        s = lb_cuda_calib_new(m, g->dev[r], g->w0[r + 1] - g->w0[r], win, with_ref, dmax, &g->c[r], err);
    if (s == LB_OK && g->set) {
        s = lb_cuda_comm_new(g->dev, g->n, &g->comm, err);
        if (s == LB_OK && !(g->pool = lb_pool_new(g->n))) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        for (int r = 0; s == LB_OK && r < g->n; r++) lb_cuda_calib_keep_sums(g->c[r], true); /* summed on the devices */
    }
    if (s != LB_OK) {
        lb_calib_gpus_free(g);
        return s;
    }
    *out = g;
    return LB_OK;
}

void lb_calib_gpus_free(lb_calib_gpus *g) {
    if (!g) return;
    for (int r = 0; r < g->n; r++) lb_cuda_calib_free(g->c[r]);
    lb_cuda_comm_free(g->comm);
    lb_pool_free(g->pool);
    free(g);
}

lb_status lb_calib_gpus_upload(lb_calib_gpus *g, int s, int64_t row0, const float *x, int64_t n, lb_error *err) {
    const int64_t w = row0 / g->win;
    int r = 0;
    while (r + 1 < g->n && w >= g->w0[r + 1]) r++;
    return lb_cuda_calib_upload(g->c[r], s, row0 - g->w0[r] * g->win, x, n, err);
}

/* ---- the ranks at once ---- */

typedef enum { JOB_STATS, JOB_ADVANCE, JOB_OUTPUT, JOB_DIAG_ALL, JOB_STAGE, JOB_STAGE_ADVANCE } job_kind;

typedef struct rank_job {
    lb_calib_gpus *g;
    job_kind kind;
    const struct lb_layer *l, *ref;
    int64_t il;
    lb_obs_point pt;
    const float *out_norm;
    double *h, *cx, *abs_sum; /* rank 0's (the caller's) */
    lb_status st[LB_MAX_RANKS];
    lb_error err[LB_MAX_RANKS];
} rank_job;

static void rank_task(void *arg, int64_t r, int thread) {
    rank_job *j = arg;
    lb_calib_gpus *g = j->g;
    (void)thread;
    switch (j->kind) { /* with the sums kept on the devices, h, cx and abs_sum are not written here */
    case JOB_STATS: j->st[r] = lb_cuda_calib_stats(g->c[r], j->l, j->ref, j->il, j->pt, j->h, j->cx, j->abs_sum, &j->err[r]); break;
    case JOB_ADVANCE: j->st[r] = lb_cuda_calib_advance(g->c[r], j->l, j->ref, j->il, &j->err[r]); break;
    case JOB_OUTPUT: j->st[r] = lb_cuda_calib_output_stats(g->c[r], j->out_norm, j->h, j->cx, j->abs_sum, &j->err[r]); break;
    case JOB_DIAG_ALL: j->st[r] = lb_cuda_calib_diag_stats(g->c[r], j->l, j->il, j->h, j->abs_sum, &j->err[r]); break;
    case JOB_STAGE: j->st[r] = lb_cuda_calib_stage_stats(g->c[r], j->l, j->ref, j->il, j->pt, j->h, j->cx, j->abs_sum, &j->err[r]); break;
    case JOB_STAGE_ADVANCE: j->st[r] = lb_cuda_calib_stage_advance(g->c[r], j->l, j->il, &j->err[r]); break;
    }
}

/* run the job on every rank (one thread each), the first failure's error; then, for sums, their all-reduce on
 * the devices and rank 0's copy to the host */
static lb_status run_ranks(lb_calib_gpus *g, rank_job *j, int64_t d, lb_error *err) {
    lb_pool_run(g->pool, g->n, rank_task, j);
    for (int r = 0; r < g->n; r++)
        if (j->st[r] != LB_OK) {
            if (err) *err = j->err[r];
            return j->st[r];
        }
    if (j->kind == JOB_ADVANCE || j->kind == JOB_STAGE_ADVANCE) return LB_OK;
    double *h[LB_MAX_RANKS], *cx[LB_MAX_RANKS], *as[LB_MAX_RANKS];
    for (int r = 0; r < g->n; r++) lb_cuda_calib_sums(g->c[r], &h[r], &cx[r], &as[r]);
    const bool all = j->kind == JOB_DIAG_ALL; /* d = 4 dmax: the four points' rows */
    const size_t dd = g->diag || all ? (size_t)d : (size_t)d * (size_t)d;
    const double t0 = lb_time_sec();
    lb_status s = lb_cuda_comm_allreduce_f64(g->comm, h, dd, err);
    if (s == LB_OK && j->cx && cx[0]) s = lb_cuda_comm_allreduce_f64(g->comm, cx, dd, err);
    if (s == LB_OK) s = lb_cuda_comm_allreduce_f64(g->comm, as, (size_t)d, err);
    g->allreduce_sec += lb_time_sec() - t0;
    if (s == LB_OK && all) s = lb_cuda_calib_read_diag(g->c[0], j->h, j->abs_sum, err);
    else if (s == LB_OK) s = lb_cuda_calib_read_sums(g->c[0], j->pt, j->h, j->cx, j->abs_sum, err);
    return s;
}

lb_status lb_calib_gpus_stats(lb_calib_gpus *g, const struct lb_layer *l, const struct lb_layer *ref, int64_t il, lb_obs_point pt,
                              double *h, double *cx, double *abs_sum, lb_error *err) {
    if (!g->set) return lb_cuda_calib_stats(g->c[0], l, ref, il, pt, h, cx, abs_sum, err);
    rank_job j = {.g = g, .kind = JOB_STATS, .l = l, .ref = ref, .il = il, .pt = pt, .h = h, .cx = ref ? cx : NULL, .abs_sum = abs_sum};
    return run_ranks(g, &j, lb_cuda_calib_point_dim(g->c[0], pt), err);
}

lb_status lb_calib_gpus_diag_stats(lb_calib_gpus *g, const struct lb_layer *l, int64_t il, double *sq, double *abs_sum, lb_error *err) {
    if (!g->set) return lb_cuda_calib_diag_stats(g->c[0], l, il, sq, abs_sum, err);
    rank_job j = {.g = g, .kind = JOB_DIAG_ALL, .l = l, .il = il, .h = sq, .abs_sum = abs_sum};
    return run_ranks(g, &j, 4 * g->dmax, err);
}

bool lb_calib_gpus_stages(const lb_calib_gpus *g) { return g && lb_cuda_calib_stages(g->c[0]); }

lb_status lb_calib_gpus_stage_stats(lb_calib_gpus *g, const struct lb_layer *l, const struct lb_layer *ref, int64_t il, lb_obs_point pt,
                                    double *h, double *cx, double *abs_sum, lb_error *err) {
    if (!g->set) return lb_cuda_calib_stage_stats(g->c[0], l, ref, il, pt, h, cx, abs_sum, err);
    rank_job j = {.g = g, .kind = JOB_STAGE, .l = l, .ref = ref, .il = il, .pt = pt, .h = h, .cx = ref ? cx : NULL, .abs_sum = abs_sum};
    return run_ranks(g, &j, lb_cuda_calib_point_dim(g->c[0], pt), err);
}

lb_status lb_calib_gpus_stage_advance(lb_calib_gpus *g, const struct lb_layer *l, int64_t il, lb_error *err) {
    if (!g->set) return lb_cuda_calib_stage_advance(g->c[0], l, il, err);
    rank_job j = {.g = g, .kind = JOB_STAGE_ADVANCE, .l = l, .il = il};
    return run_ranks(g, &j, 0, err);
}

void lb_calib_gpus_set_diag_only(lb_calib_gpus *g, bool on) {
    g->diag = on;
    for (int r = 0; r < g->n; r++) lb_cuda_calib_set_diag_only(g->c[r], on);
}

lb_status lb_calib_gpus_advance(lb_calib_gpus *g, const struct lb_layer *l, const struct lb_layer *ref, int64_t il, lb_error *err) {
    if (!g->set) return lb_cuda_calib_advance(g->c[0], l, ref, il, err);
    rank_job j = {.g = g, .kind = JOB_ADVANCE, .l = l, .ref = ref, .il = il};
    return run_ranks(g, &j, 0, err);
}

lb_status lb_calib_gpus_output_stats(lb_calib_gpus *g, const float *out_norm, double *h, double *cx, double *abs_sum, lb_error *err) {
    if (!g->set) return lb_cuda_calib_output_stats(g->c[0], out_norm, h, cx, abs_sum, err);
    rank_job j = {.g = g, .kind = JOB_OUTPUT, .pt = LB_OBS_OUTPUT_IN, .out_norm = out_norm, .h = h, .cx = cx, .abs_sum = abs_sum};
    return run_ranks(g, &j, lb_cuda_calib_point_dim(g->c[0], LB_OBS_OUTPUT_IN), err);
}

size_t lb_calib_gpus_peak(const lb_calib_gpus *g) {
    size_t p = 0;
    for (int r = 0; g && r < g->n; r++) {
        const size_t q = lb_cuda_calib_peak_bytes(g->c[r]);
        p = q > p ? q : p;
    }
    return p;
}

void lb_calib_gpus_phase_seconds(const lb_calib_gpus *g, double out[3]) { lb_cuda_calib_phase_seconds(g ? g->c[0] : NULL, out); }
int lb_calib_gpus_ranks(const lb_calib_gpus *g) { return g ? g->n : 0; }
double lb_calib_gpus_allreduce_seconds(const lb_calib_gpus *g) { return g ? g->allreduce_sec : 0; }
int lb_calib_gpus_first_device(const lb_calib_gpus *g) { return g ? g->dev[0] : 0; }
int lb_calib_gpus_device(const lb_calib_gpus *g, int r) { return g && r >= 0 && r < g->n ? g->dev[r] : 0; }
