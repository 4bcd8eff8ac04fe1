/*
 * gptq_cuda.c - lb_gptq_ops on a CUDA device: the functions of cuda/gptq.h (cuda/gptq.cu) in the table of
 * gptq.h, so that gptq.c runs its linear algebra there without knowing it. In a build without CUDA,
 * lb_gptq_ops_cuda_new fails with LB_ERR_DEVICE (cuda/device.c).
 */
#include "gptq.h"

#include "../cuda/gptq.h"

#include <stdlib.h>
#include <string.h>

typedef struct cuda_ops {
    lb_gptq_ops ops; /* first: the table handed out is the struct */
    lb_cuda_gptq *g;
} cuda_ops;

static lb_status op_reserve(void *u, int64_t rows, int64_t n, bool cd, lb_error *err) {
    return lb_cuda_gptq_reserve(u, rows, n, cd, err);
}
static lb_status op_inv_upper(void *u, lb_pool *pool, double *A, int64_t n, double *work, bool *ok, lb_error *err) {
    (void)pool, (void)work;
    return lb_cuda_gptq_inv_upper(u, A, n, ok, err);
}
static lb_status op_inv_upper_keep(void *u, const double *A, int64_t n, bool *ok, lb_error *err) {
    return lb_cuda_gptq_inv_upper_keep(u, A, n, ok, err);
}
static lb_status op_begin_kept(void *u, const float *hf_diag, int64_t rows, int64_t n, lb_error *err) {
    return lb_cuda_gptq_begin_kept(u, hf_diag, rows, n, err);
}
static lb_status op_begin(void *u, const float *U, const float *Hf, int64_t rows, int64_t n, lb_error *err) {
    return lb_cuda_gptq_begin(u, U, Hf, rows, n, err);
}
static lb_status op_load(void *u, const float *T, int64_t rows, int64_t n, lb_error *err) {
    return lb_cuda_gptq_load(u, T, rows, n, err);
}
static lb_status op_update(void *u, lb_pool *pool, float *T, int64_t rows, int64_t n, const float *E, int64_t lde,
                           const float *U, int64_t i1, int64_t i2, int64_t i3, lb_error *err) {
    (void)pool, (void)U; /* U: begin's device copy */
    return lb_cuda_gptq_update(u, T, rows, n, E, lde, i1, i2, i3, err);
}
static lb_status op_h_times_e(void *u, lb_pool *pool, const float *W, const float *Q, float *G, int64_t rows, int64_t n,
                              const float *Hf, const bool *sel, lb_error *err) {
    (void)pool, (void)Hf; /* Hf: begin's device copy */
    return lb_cuda_gptq_h_times_e(u, W, Q, G, rows, n, sel, err);
}
static lb_status op_matmul(void *u, lb_pool *pool, const float *x, int64_t rows, const float *w, int64_t n, int64_t K,
                           float *out, lb_error *err) {
    (void)pool;
    return lb_cuda_gptq_matmul(u, x, rows, w, n, K, out, err);
}

/* whether the environment switches a GPU path off (NAME=0) */
static bool env_off(const char *name) {
    const char *v = getenv(name);
    return v && v[0] == '0';
}

/* The block encoders on the GPU (the CPU's bytes; tests/cuda): on unless LB_GPU_ENCODE=0, which leaves them on CPU
 * threads (the same bytes). */
bool lb_gptq_cuda_encodes(lb_type t, lb_encoder enc) { return !env_off("LB_GPU_ENCODE") && lb_cuda_kq_encodes(t, enc); }

static bool op_encodes(void *u, lb_type t, lb_encoder enc) {
    (void)u;
    return lb_gptq_cuda_encodes(t, enc);
}
static lb_status op_encode(void *u, lb_type t, lb_encoder enc, const float *S, int64_t ld, int64_t rows, int64_t c0, int64_t c1,
                           const float *imp, uint8_t *out, size_t row_bytes, lb_error *err) {
    (void)enc; /* op_encodes said yes: the default encoder */
    return lb_cuda_gptq_encode(u, t, S, ld, rows, c0, c1, imp, out, row_bytes, err);
}

static lb_status op_pass(void *u, lb_type t, lb_encoder enc, const float *W, int64_t rows, int64_t n, int64_t batch, const float *imp,
                         bool static_scales, uint8_t *out, size_t row_bytes, double *loss, lb_error *err) {
    (void)enc; /* encodes said yes: the default encoder */
    return lb_cuda_gptq_pass(u, t, W, rows, n, batch, imp, static_scales, out, row_bytes, loss, err);
}

static lb_status op_cd(void *u, lb_type t, const float *W, float *Q, uint8_t *out, size_t row_bytes, float *G, int64_t rows, int64_t n,
                       int sweeps, bool scales, const float *Ht, lb_error *err) {
    return lb_cuda_gptq_cd(u, t, W, Q, out, row_bytes, G, rows, n, sweeps, scales, Ht, err);
}

static lb_status op_ref_factor(void *u, const double *H, int64_t n, double lam, bool upload, bool *ok, lb_error *err) {
    return lb_cuda_gptq_ref_factor(u, H, n, lam, upload, ok, err);
}
static lb_status op_ref_apply(void *u, const double *C, const float *s, int64_t n, double lam, float *W, int64_t rows, bool upload,
                              lb_error *err) {
    return lb_cuda_gptq_ref_apply(u, C, s, n, lam, W, rows, upload, err);
}

static lb_status op_awq_clip(void *u, float *w, int64_t rows, int64_t d, const double *H, lb_type t, lb_encoder enc, const float *imatrix,
                             uint8_t *choice, lb_error *err) {
    return lb_cuda_awq_clip(u, w, rows, d, H, t, enc, imatrix, choice, err);
}
static lb_status op_awq_search(void *u, int n_mat, const float *const *w, const int64_t *rows, const lb_type *types, int64_t d,
                               const double *H, const float *cands, int n_cand, int *best, double *best_loss, lb_error *err) {
    return lb_cuda_awq_search(u, n_mat, w, rows, types, d, H, cands, n_cand, best, best_loss, err);
}

lb_status lb_gptq_ops_cuda_new(int device, lb_gptq_ops **out, lb_error *err) {
    *out = NULL;
    cuda_ops *o = calloc(1, sizeof *o);
    if (!o) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    lb_status s = lb_cuda_gptq_new(device, &o->g, err);
    if (s != LB_OK) {
        free(o);
        return s;
    }
    o->ops = (lb_gptq_ops){.user = o->g, .name = "cuda", .reserve = op_reserve, .inv_upper = op_inv_upper,
                           .begin = op_begin, .load = op_load, .update = op_update, .h_times_e = op_h_times_e,
                           .matmul = op_matmul, .encodes = op_encodes, .encode = op_encode, .awq_clip = op_awq_clip,
                           .awq_search = op_awq_search};
    /* whole passes, the coordinate descent and the reference target kept on the GPU (the first two where the GPU
     * encodes the type): on unless LB_GPU_SWEEP=0, which leaves them on CPU threads around the GPU's products */
    if (!env_off("LB_GPU_SWEEP")) {
        /* LB_GPU_SWEEP_SKIP: letters of the parts left on the CPU (p: passes, c: descent, r: reference target; k: the
         * factor and H in F32 made on the host and uploaded instead of kept on the device), to tell which part moves a
         * result */
        const char *k = getenv("LB_GPU_SWEEP_SKIP");
        if (!k) k = "";
        if (!strchr(k, 'p')) o->ops.pass = op_pass;
        if (!strchr(k, 'c')) o->ops.cd = op_cd;
        if (!strchr(k, 'r')) o->ops.ref_factor = op_ref_factor, o->ops.ref_apply = op_ref_apply;
        if (!strchr(k, 'k')) o->ops.inv_upper_keep = op_inv_upper_keep, o->ops.begin_kept = op_begin_kept; /* U, Hf kept there */
    }
    *out = &o->ops;
    return LB_OK;
}

void lb_gptq_ops_cuda_free(lb_gptq_ops *ops) {
    if (!ops) return;
    cuda_ops *o = (cuda_ops *)ops;
    lb_cuda_gptq_free(o->g);
    free(o);
}

size_t lb_gptq_ops_cuda_peak(const lb_gptq_ops *ops) { return ops ? lb_cuda_gptq_peak_bytes(((const cuda_ops *)ops)->g) : 0; }
