/*
 * calib.cu - calibration statistics on a CUDA device (calib.h): the activation streams on the GPU, moved
 * one layer at a time through the executor's layer driver (backend.cu, a layerwise context), and the
 * second moments of one matrix input summed on the GPU.
 *
 * Per window of T tokens the device observer receives the point's input x (T, dim). The windows are
 * staged, kw at a time (a batch of up to BATCH_TOKENS tokens), and each batch's products are taken at once
 * by cuBLAS into an F32 product P, which a kernel adds into the sums kept in double:
 *   - precision (LB_CALIB_PREC): "split" (the default) writes each value as hi + lo, hi its nearest TF32
 *     value (11 significant bits) and lo = x - hi exactly, and forms x_i x_j as hi_i hi_j + hi_i lo_j +
 *     lo_i hi_j: three TF32 tensor-core products with F32 sums, each product within about 2^-21 of its
 *     exact value (what is dropped is lo_i lo_j, below 2^-22, and lo's own rounding to TF32): F32-class
 *     statistics at tensor-core speed. "f32" takes one product with F32 operands and sums
 *     (CUBLAS_COMPUTE_32F, no tensor cores); "tf32" one TF32 product (10-bit operands: an experiment whose
 *     quality is not established).
 *   - H is symmetric: only its lower triangle (in row-major terms) is computed, by column panels of P, and
 *     added into H; the upper triangle is copied from it once per point, so H is exactly symmetric.
 *   - with a reference stream the reference window's input xr (captured from the unquantized layer just
 *     before) is staged the same way and C = xr^T x is a full product.
 *   - sum |x| per channel (and, in diagonal mode, sum x^2) is one thread per channel adding the window's
 *     tokens in order, in double. Diagonal mode (lb_cuda_calib_set_diag_only) forms no products at all:
 *     the sums of x^2 are H's diagonal, the imatrix method's whole need.
 * The CPU's scheme (algo/calib_layers.c) sums each window's F32 products into double; here a batch's
 * products are summed in F32 over its kw windows before the double sum. Everything is enqueued on the
 * context's stream; the host copies are taken when the point's last window is done.
 */
#include "blas.cuh"
#include "kernels.cuh"

#include <stdlib.h>
#include <string.h>
#include <time.h>

extern "C" {
#include "../model/model.h"
#include "calib.h"
}

#define BATCH_TOKENS 4096             /* tokens per batch of products (whole windows; at least one window) */
#define STAGE_BYTES ((size_t)2 << 30) /* the staging buffers' bound: fewer tokens a batch for wide inputs */
#define PT_ALL (-2)                   /* c->pt in lb_cuda_calib_diag_stats: every layer point observed */
#define PANEL 1024                    /* columns of H per product of the lower triangle */
/* LB_CALIB_BATCH (tokens) and LB_CALIB_PANEL (columns) override the two for the tests' small models */

typedef enum { PREC_SPLIT, PREC_F32, PREC_TF32 } calib_prec;

struct lb_cuda_calib {
    const lb_model *m;
    lb_cuda_ctx *g;
    cudaStream_t st;
    cublasHandle_t blas;
    int64_t n_win, win, dmax;
    float *x, *xr;     /* the streams (n_win * win, n_embd); xr NULL without a reference */
    float *ref;        /* the output head: the reference window normed (win, n_embd) */
    float *hi, *lo;    /* the batch's staged inputs (kw * win, dmax): hi + lo = x (lo unused unless split) */
    float *rhi, *rlo;  /* the same for the reference inputs (with a reference stream) */
    int64_t kw;        /* windows per batch */
    int64_t nb;        /* windows staged in the current batch */
    int64_t panel;     /* PANEL or LB_CALIB_PANEL */
    int64_t d;         /* the current point's width */
    bool with_c;       /* the current point sums C too */
    float *prod;       /* one batch's product (dim, dim) */
    double *h, *cx;    /* the point's sums (dim, dim); in diagonal mode h holds sum x^2 (dim) */
    double *abs_sum;   /* (dim) */
    float *xn, *norm;  /* the output head: a normed window (win, n_embd), the final norm (n_embd) */
    int pt;            /* the point measured */
    bool capture;      /* the observer keeps the reference input instead of accumulating */
    bool diag;         /* lb_cuda_calib_set_diag_only: sums of x^2 instead of H, no C */
    size_t peak;
    calib_prec prec;   /* LB_CALIB_PREC */
    bool profile;      /* LB_CALIB_PROFILE=1: wait for the device at each phase's end and time the phases */
    double sec[3];     /* ... the forward passes, the sums of the statistics, the copies to the host */
    double mark;       /* profile: when the phase being timed began */
    bool keep;         /* lb_cuda_calib_keep_sums: a point's sums stay on the device until lb_cuda_calib_read_sums */
    bool stages;       /* GPTQ's stages run each part of the layer once (lb_cuda_calib_stage_stats); LB_GPU_STAGES=0: per point */
    float *att_x;      /* ... X's attention outputs kept between the stages (n_win * win, n_head * head_dim) */
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* profile: the device's work since *t goes to phase ph (a wait for the stream first) */
static void phase_end(lb_cuda_calib *c, int ph, double *t) {
    if (!c->profile) return;
    cudaStreamSynchronize(c->st);
    const double t1 = now();
    c->sec[ph] += t1 - *t;
    *t = t1;
}

static lb_status fail(lb_error *err, cudaError_t e, const char *what) {
    cudaGetLastError();
    if (e == cudaErrorMemoryAllocation) return lb_err_set(err, LB_ERR_DEVICE, "CUDA: out of GPU memory %s", what);
    return lb_err_set(err, LB_ERR_DEVICE, "CUDA error %s: %s", what, cudaGetErrorString(e));
}
#define CK(call, what)                                                                                              \
    do {                                                                                                            \
        cudaError_t e_ = (call);                                                                                    \
        if (e_ != cudaSuccess) return fail(err, e_, what);                                                          \
    } while (0)
#define TRY(call)                                                                                                   \
    do {                                                                                                            \
        lb_status s_ = (call);                                                                                      \
        if (s_ != LB_OK) return s_;                                                                                 \
    } while (0)

/* ---------------------------------------------------------------- kernels ---------------------------------- */

/* H[k] += P[k] for the lower triangle of H (row c, column r <= c; k = r + c d, P column-major (d, d)) */
__global__ void k_add_lower(double *H, const float *P, int64_t d) {
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, c = blockIdx.y;
    if (r <= c) H[r + c * d] += (double)P[r + c * d];
}

/* H's upper triangle from its lower: H[r][c] = H[c][r], r < c (row-major) */
__global__ void k_mirror(double *H, int64_t d) {
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
    if (c > r && c < d) H[r * d + c] = H[c * d + r];
}

/* C[k] += P[k], k < n */
__global__ void k_add_f64(double *C, const float *P, int64_t n) {
    const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < n) C[k] += (double)P[k];
}

/* a[j] += sum over t < T of |x[t][j]| (and q[j] += x[t][j]^2 when q), in token order */
__global__ void k_abs_sum(double *a, double *q, const float *x, int64_t T, int64_t d) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    double s = a[j], s2 = q ? q[j] : 0;
    for (int64_t t = 0; t < T; t++) {
        const float v = x[t * d + j];
        s += fabsf(v);
        s2 += (double)v * v;
    }
    a[j] = s;
    if (q) q[j] = s2;
}

/* hi[k] = x[k] rounded to the nearest TF32 value (low 13 significand bits cleared, ties away from zero), lo[k]
 * = x[k] - hi[k] (exact); without lo, hi = x */
__global__ void k_split(float *hi, float *lo, const float *x, int64_t n) {
    const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    const float v = x[k];
    if (!lo) {
        hi[k] = v;
        return;
    }
    const float h = __uint_as_float((__float_as_uint(v) + 0x1000u) & ~0x1fffu);
    hi[k] = h;
    lo[k] = v - h;
}

/* ---------------------------------------------------------------- statistics ------------------------------- */

static void note_peak(lb_cuda_calib *c) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot - fr > c->peak) c->peak = tot - fr;
    cudaGetLastError();
}

static unsigned blocks(int64_t n) { return (unsigned)((n + 255) / 256); }

/* x (T, d) into slot nb of a staging pair */
static void stage(lb_cuda_calib *c, float *hi, float *lo, const float *x, int64_t T, int64_t d) {
    const int64_t n = T * d, off = c->nb * c->win * d;
    k_split<<<blocks(n), 256, 0, c->st>>>(hi + off, c->prec == PREC_SPLIT ? lo + off : NULL, x, n);
}

/* P (+)= A B^T over K tokens: P column-major (m, n) with leading dimension ldp, A's rows and B's rows are
 * columns of the staged (K, d) buffers starting at the given pointers */
static cublasStatus_t gemm(lb_cuda_calib *c, int64_t m, int64_t n, int64_t K, const float *A, const float *B, float *P, float beta) {
    const float one = 1.0f;
    const cublasComputeType_t ct = c->prec == PREC_F32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
    const int ld = (int)c->d;
    return cu_blas.gemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)m, (int)n, (int)K, &one, A, CUDA_R_32F, ld, B, CUDA_R_32F, ld,
                        &beta, P, CUDA_R_32F, ld, ct, CUBLAS_GEMM_DEFAULT);
}

/* the product of one pair of operands, as one term (hi hi) or three (hi hi + hi lo + lo hi) */
static cublasStatus_t product(lb_cuda_calib *c, int64_t m, int64_t n, int64_t K, const float *ah, const float *al,
                              const float *bh, const float *bl, float *P) {
    cublasStatus_t bs = gemm(c, m, n, K, ah, bh, P, 0.0f);
    if (c->prec == PREC_SPLIT) {
        if (bs == CUBLAS_STATUS_SUCCESS) bs = gemm(c, m, n, K, ah, bl, P, 1.0f);
        if (bs == CUBLAS_STATUS_SUCCESS) bs = gemm(c, m, n, K, al, bh, P, 1.0f);
    }
    return bs;
}

/* the staged batch's products into H (lower triangle) and C */
static lb_status flush(lb_cuda_calib *c, lb_error *err) {
    if (c->nb == 0 || c->diag) {
        c->nb = 0;
        return LB_OK;
    }
    const int64_t d = c->d, K = c->nb * c->win;
    c->nb = 0;
    cublasStatus_t bs = CUBLAS_STATUS_SUCCESS;
    if (c->with_c) { /* column-major (d, d): [j + i d] = sum_t x_t[j] xr_t[i] = C[i][j] row-major */
        bs = product(c, d, d, K, c->hi, c->lo, c->rhi, c->rlo, c->prod);
        if (bs == CUBLAS_STATUS_SUCCESS) k_add_f64<<<blocks(d * d), 256, 0, c->st>>>(c->cx, c->prod, d * d);
    }
    /* H's lower triangle: column panel [c0, c1) of P, its rows [0, c1) */
    for (int64_t c0 = 0; bs == CUBLAS_STATUS_SUCCESS && c0 < d; c0 += c->panel) {
        const int64_t c1 = c0 + c->panel < d ? c0 + c->panel : d;
        bs = product(c, c1, c1 - c0, K, c->hi, c->lo, c->hi + c0, c->lo + c0, c->prod + c0 * d);
    }
    if (bs != CUBLAS_STATUS_SUCCESS) return lb_err_set(err, LB_ERR_DEVICE, "cuBLAS GemmEx failed (status %d)", (int)bs);
    k_add_lower<<<dim3(blocks(d), (unsigned)d), 256, 0, c->st>>>(c->h, c->prod, d);
    CK(cudaGetLastError(), "summing the calibration statistics");
    return LB_OK;
}

/* the window's x (T, d): its absolute sums (and squares), staged for the batch's products */
static lb_status accumulate(lb_cuda_calib *c, const float *x, int64_t T, int64_t d, lb_error *err) {
    k_abs_sum<<<blocks(d), 256, 0, c->st>>>(c->abs_sum, c->diag ? c->h : NULL, x, T, d);
    if (!c->diag) {
        stage(c, c->hi, c->lo, x, T, d);
        if (++c->nb == c->kw) TRY(flush(c, err));
    }
    CK(cudaGetLastError(), "summing the calibration statistics");
    return LB_OK;
}

static lb_status observer(void *user, int64_t layer, lb_obs_point pt, const float *x, int64_t T, int64_t dim, lb_error *err) {
    lb_cuda_calib *c = (lb_cuda_calib *)user;
    (void)layer;
    if (c->pt == PT_ALL && (int)pt < LB_OBS_OUTPUT_IN) { /* lb_cuda_calib_diag_stats: the point's row of the sums */
        if (T != c->win || dim > c->dmax) return lb_err_set(err, LB_ERR_ARG, "calibration: a matrix input was not a whole window");
        k_abs_sum<<<blocks(dim), 256, 0, c->st>>>(c->abs_sum + pt * c->dmax, c->h + pt * c->dmax, x, T, dim);
        CK(cudaGetLastError(), "summing the calibration statistics");
        return LB_OK;
    }
    if ((int)pt != c->pt) return LB_OK;
    if (T != c->win || dim != c->d) return lb_err_set(err, LB_ERR_ARG, "calibration: a matrix input was not a whole window");
    if (c->capture) { /* the reference input of the window about to be staged */
        if (c->with_c) stage(c, c->rhi, c->rlo, x, T, dim);
        CK(cudaGetLastError(), "capturing an input");
        return LB_OK;
    }
    phase_end(c, 0, &c->mark); /* the forward pass up to here */
    lb_status s = accumulate(c, x, T, dim, err);
    phase_end(c, 1, &c->mark);
    return s;
}

/* a point of width d begins: its sums cleared, nothing staged */
static lb_status begin_point(lb_cuda_calib *c, int64_t d, bool with_c, lb_error *err) {
    c->d = d;
    c->nb = 0;
    c->with_c = with_c && !c->diag;
    CK(cudaMemsetAsync(c->h, 0, (size_t)(c->diag ? d : d * d) * sizeof(double), c->st), "clearing the statistics");
    if (c->with_c) CK(cudaMemsetAsync(c->cx, 0, (size_t)(d * d) * sizeof(double), c->st), "clearing the statistics");
    CK(cudaMemsetAsync(c->abs_sum, 0, (size_t)d * sizeof(double), c->st), "clearing the statistics");
    return LB_OK;
}

/* the point's last windows: the batch left staged, then H's upper triangle from its lower */
static lb_status end_point(lb_cuda_calib *c, lb_error *err) {
    phase_end(c, 0, &c->mark);
    TRY(flush(c, err));
    if (!c->diag) k_mirror<<<dim3(blocks(c->d), (unsigned)c->d), 256, 0, c->st>>>(c->h, c->d);
    CK(cudaGetLastError(), "summing the calibration statistics");
    phase_end(c, 1, &c->mark);
    return LB_OK;
}

/* the point's sums to the host, once every window is done */
static lb_status read_stats(lb_cuda_calib *c, int64_t d, double *h, double *cx, double *abs_sum, lb_error *err) {
    CK(cudaStreamSynchronize(c->st), "computing the calibration statistics");
    phase_end(c, 0, &c->mark);
    note_peak(c);
    CK(cudaMemcpy(h, c->h, (size_t)(c->diag ? d : d * d) * sizeof(double), cudaMemcpyDeviceToHost), "reading the statistics");
    if (c->with_c && cx) CK(cudaMemcpy(cx, c->cx, (size_t)(d * d) * sizeof(double), cudaMemcpyDeviceToHost), "reading the statistics");
    CK(cudaMemcpy(abs_sum, c->abs_sum, (size_t)d * sizeof(double), cudaMemcpyDeviceToHost), "reading the statistics");
    phase_end(c, 2, &c->mark);
    return LB_OK;
}

/* the point once its windows ran (s: how they went): its sums completed, then left on the device (keep: a set
 * all-reduces them) or copied to the host */
static lb_status finish_point(lb_cuda_calib *c, lb_status s, double *h, double *cx, double *abs_sum, lb_error *err) {
    if (s == LB_OK) s = end_point(c, err);
    if (s != LB_OK) return s;
    if (!c->keep) return read_stats(c, c->d, h, cx, abs_sum, err);
    CK(cudaStreamSynchronize(c->st), "computing the calibration statistics");
    return LB_OK;
}

static int64_t point_dim(const lb_model *m, lb_obs_point pt) {
    const lb_model_info *h = &m->info;
    switch (pt) {
    case LB_OBS_ATTN_OUT_IN: return h->n_head * h->head_dim;
    case LB_OBS_FFN_DOWN_IN: return h->n_ff;
    default: return h->n_embd;
    }
}

/* slot 1 holds the model's own layer il (uploaded once per layer), slot 0 work copies */
static int slot_of(const lb_cuda_calib *c, const lb_layer *l, int64_t il) { return l == &c->m->layers[il] ? 1 : 0; }

extern "C" lb_status lb_cuda_calib_stats(lb_cuda_calib *c, const lb_layer *l, const lb_layer *ref, int64_t il, lb_obs_point pt,
                                         double *h, double *cx, double *abs_sum, lb_error *err) {
    if (pt < 0 || pt >= LB_OBS_OUTPUT_IN) return lb_err_set(err, LB_ERR_ARG, "calibration: not a layer point");
    if (ref && !c->xr) return lb_err_set(err, LB_ERR_ARG, "calibration: no reference stream");
    const int64_t d = point_dim(c->m, pt), E = c->m->info.n_embd;
    const int sl = slot_of(c, l, il);
    CK(cudaSetDevice(lb_cuda_ctx_device(c->g)), "selecting the device");
    c->mark = now(); /* the layers' uploads and the forward passes up to the first sums: forward */
    TRY(lb_cuda_ctx_load_layer(c->g, sl, l, (int)pt, err));
    if (ref && ref != l) TRY(lb_cuda_ctx_load_layer(c->g, slot_of(c, ref, il), ref, (int)pt, err));
    c->pt = (int)pt;
    TRY(begin_point(c, d, ref != NULL, err));
    lb_status s = LB_OK;
    for (int64_t w = 0; s == LB_OK && w < c->n_win; w++) {
        if (ref) {
            c->capture = true;
            s = lb_cuda_ctx_run_layer(c->g, slot_of(c, ref, il), il, c->xr + w * c->win * E, c->win, (int)pt, err);
            c->capture = false;
        }
        if (s == LB_OK) s = lb_cuda_ctx_run_layer(c->g, sl, il, c->x + w * c->win * E, c->win, (int)pt, err);
    }
    c->pt = -1;
    return finish_point(c, s, h, cx, abs_sum, err);
}

extern "C" lb_status lb_cuda_calib_diag_stats(lb_cuda_calib *c, const lb_layer *l, int64_t il, double *sq, double *abs_sum,
                                              lb_error *err) {
    const int64_t E = c->m->info.n_embd, n4 = 4 * c->dmax;
    const int sl = slot_of(c, l, il);
    CK(cudaSetDevice(lb_cuda_ctx_device(c->g)), "selecting the device");
    c->mark = now();
    TRY(lb_cuda_ctx_load_layer(c->g, sl, l, LB_OBS_FFN_DOWN_IN, err));
    CK(cudaMemsetAsync(c->h, 0, (size_t)n4 * sizeof(double), c->st), "clearing the statistics");
    CK(cudaMemsetAsync(c->abs_sum, 0, (size_t)n4 * sizeof(double), c->st), "clearing the statistics");
    c->pt = PT_ALL;
    lb_status s = LB_OK;
    for (int64_t w = 0; s == LB_OK && w < c->n_win; w++)
        s = lb_cuda_ctx_run_layer(c->g, sl, il, c->x + w * c->win * E, c->win, LB_OBS_FFN_DOWN_IN, err);
    c->pt = -1;
    if (s == LB_OK) CK(cudaStreamSynchronize(c->st), "computing the calibration statistics");
    phase_end(c, 0, &c->mark);
    if (s == LB_OK && !c->keep) s = lb_cuda_calib_read_diag(c, sq, abs_sum, err);
    return s;
}

extern "C" lb_status lb_cuda_calib_read_diag(lb_cuda_calib *c, double *sq, double *abs_sum, lb_error *err) {
    const size_t n4 = (size_t)(4 * c->dmax);
    CK(cudaSetDevice(lb_cuda_ctx_device(c->g)), "selecting the device");
    CK(cudaStreamSynchronize(c->st), "computing the calibration statistics");
    note_peak(c);
    CK(cudaMemcpy(sq, c->h, n4 * sizeof(double), cudaMemcpyDeviceToHost), "reading the statistics");
    CK(cudaMemcpy(abs_sum, c->abs_sum, n4 * sizeof(double), cudaMemcpyDeviceToHost), "reading the statistics");
    phase_end(c, 2, &c->mark);
    return LB_OK;
}

/* GPTQ's stages (algo/calib_layers.c's STAGE_X / STAGE_XR): the part of the layer each stage runs on a window of X
 * and of Xr */
static const int STAGE_X[4][2] = {{LB_OBS_ATTN_IN, LB_OBS_ATTN_IN}, {LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN},
                                  {LB_OBS_ATTN_OUT_IN, LB_OBS_FFN_IN}, {LB_OBS_FFN_IN, LB_OBS_FFN_DOWN_IN}};
static const int STAGE_XR[4][2] = {{LB_OBS_ATTN_IN, LB_OBS_ATTN_IN}, {LB_OBS_ATTN_IN, LB_OBS_FFN_IN},
                                   {LB_OBS_FFN_IN, LB_OBS_FFN_IN}, {LB_OBS_FFN_IN, -1}};

extern "C" bool lb_cuda_calib_stages(const lb_cuda_calib *c) { return c && c->stages; }

extern "C" lb_status lb_cuda_calib_stage_stats(lb_cuda_calib *c, const lb_layer *l, const lb_layer *ref, int64_t il, lb_obs_point pt,
                                               double *h, double *cx, double *abs_sum, lb_error *err) {
    if (pt < 0 || pt >= LB_OBS_OUTPUT_IN) return lb_err_set(err, LB_ERR_ARG, "calibration: not a layer point");
    if (ref && !c->xr) return lb_err_set(err, LB_ERR_ARG, "calibration: no reference stream");
    const int64_t d = point_dim(c->m, pt), E = c->m->info.n_embd, qd = c->m->info.n_head * c->m->info.head_dim;
    const int sl = slot_of(c, l, il), sr = ref ? slot_of(c, ref, il) : -1;
    CK(cudaSetDevice(lb_cuda_ctx_device(c->g)), "selecting the device");
    c->mark = now();
    TRY(lb_cuda_ctx_load_layer(c->g, sl, l, STAGE_X[pt][1], err));
    if (ref) TRY(lb_cuda_ctx_load_layer(c->g, sr, ref, STAGE_XR[pt][1], err));
    const bool att = pt == LB_OBS_ATTN_OUT_IN || pt == LB_OBS_FFN_IN;
    if (att && !c->att_x) {
        cudaError_t e = cudaMalloc((void **)&c->att_x, (size_t)(c->n_win * c->win * qd) * sizeof(float));
        if (e != cudaSuccess) {
            c->att_x = NULL;
            return fail(err, e, "keeping the attention outputs of the calibration windows");
        }
    }
    c->pt = (int)pt;
    TRY(begin_point(c, d, ref != NULL, err));
    lb_status s = LB_OK;
    for (int64_t w = 0; s == LB_OK && w < c->n_win; w++) {
        if (ref) {
            c->capture = true;
            s = lb_cuda_ctx_run_layer_part(c->g, sr, il, c->xr + w * c->win * E, NULL, c->win, STAGE_XR[pt][0], STAGE_XR[pt][1], err);
            c->capture = false;
        }
        if (s == LB_OK)
            s = lb_cuda_ctx_run_layer_part(c->g, sl, il, c->x + w * c->win * E, att ? c->att_x + w * c->win * qd : NULL, c->win,
                                           STAGE_X[pt][0], STAGE_X[pt][1], err);
    }
    c->pt = -1;
    return finish_point(c, s, h, cx, abs_sum, err);
}

/* every window of a stream through the rest of layer il with weights l (uploaded into its slot) from point `from` */
static lb_status move_stream(lb_cuda_calib *c, const lb_layer *l, int64_t il, float *stream, int from, lb_error *err) {
    const int64_t E = c->m->info.n_embd;
    const int sl = slot_of(c, l, il);
    lb_status s = lb_cuda_ctx_load_layer(c->g, sl, l, -1, err);
    for (int64_t w = 0; s == LB_OK && w < c->n_win; w++)
        s = lb_cuda_ctx_run_layer_part(c->g, sl, il, stream + w * c->win * E, NULL, c->win, from, -1, err);
    return s;
}

/* the device's work of an advance done: its phase and memory noted */
static lb_status advance_done(lb_cuda_calib *c, lb_status s, lb_error *err) {
    if (s == LB_OK) CK(cudaStreamSynchronize(c->st), "moving the calibration activations");
    phase_end(c, 0, &c->mark);
    note_peak(c);
    return s;
}

extern "C" lb_status lb_cuda_calib_stage_advance(lb_cuda_calib *c, const lb_layer *l, int64_t il, lb_error *err) {
    CK(cudaSetDevice(lb_cuda_ctx_device(c->g)), "selecting the device");
    c->mark = now();
    c->pt = -1;
    return advance_done(c, move_stream(c, l, il, c->x, LB_OBS_FFN_IN, err), err);
}

extern "C" lb_status lb_cuda_calib_advance(lb_cuda_calib *c, const lb_layer *l, const lb_layer *ref, int64_t il, lb_error *err) {
    CK(cudaSetDevice(lb_cuda_ctx_device(c->g)), "selecting the device");
    c->mark = now();
    c->pt = -1;
    lb_status s = move_stream(c, l, il, c->x, LB_OBS_ATTN_IN, err);
    if (s == LB_OK && c->xr && ref) s = move_stream(c, ref, il, c->xr, LB_OBS_ATTN_IN, err);
    return advance_done(c, s, err);
}

extern "C" lb_status lb_cuda_calib_output_stats(lb_cuda_calib *c, const float *out_norm, double *h, double *cx, double *abs_sum,
                                                lb_error *err) {
    const int64_t E = c->m->info.n_embd;
    const float eps = c->m->info.rms_eps;
    CK(cudaSetDevice(lb_cuda_ctx_device(c->g)), "selecting the device");
    CK(cudaStreamSynchronize(c->st), "waiting for the device");
    CK(cudaMemcpy(c->norm, out_norm, (size_t)E * sizeof(float), cudaMemcpyHostToDevice), "uploading the final norm");
    lb_cu_stream = c->st;
    TRY(begin_point(c, E, c->xr != NULL, err));
    c->mark = now();
    for (int64_t w = 0; w < c->n_win; w++) {
        if (c->with_c) {
            cu_rmsnorm(c->xr + w * c->win * E, c->norm, c->ref, c->win, (int)E, E, eps);
            stage(c, c->rhi, c->rlo, c->ref, c->win, E);
        }
        cu_rmsnorm(c->x + w * c->win * E, c->norm, c->xn, c->win, (int)E, E, eps);
        phase_end(c, 0, &c->mark);
        TRY(accumulate(c, c->xn, c->win, E, err));
        phase_end(c, 1, &c->mark);
    }
    return finish_point(c, LB_OK, h, cx, abs_sum, err);
}

/* ---------------------------------------------------------------- the state -------------------------------- */

static lb_status dmalloc(void **p, size_t bytes, const char *what, lb_error *err) {
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *p = NULL;
        return lb_err_set(err, LB_ERR_DEVICE, "CUDA: out of GPU memory allocating %.1f MiB for %s", (double)bytes / 1048576.0, what);
    }
    return LB_OK;
}

extern "C" lb_status lb_cuda_calib_new(const lb_model *m, int device, int64_t n_win, int64_t win, int with_ref, int64_t dmax,
                                       lb_cuda_calib **out, lb_error *err) {
    const int64_t E = m->info.n_embd, rows = n_win * win;
    lb_cuda_calib *c = (lb_cuda_calib *)calloc(1, sizeof *c);
    if (!c) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    c->m = m;
    const char *pf = getenv("LB_CALIB_PROFILE"), *pr = getenv("LB_CALIB_PREC"), *gs = getenv("LB_GPU_STAGES");
    c->profile = pf && pf[0] == '1';
    c->stages = !gs || gs[0] != '0';
    c->prec = !pr || !*pr || !strcmp(pr, "split") ? PREC_SPLIT : !strcmp(pr, "f32") ? PREC_F32 : !strcmp(pr, "tf32") ? PREC_TF32 : PREC_SPLIT;
    if (pr && *pr && strcmp(pr, "split") && strcmp(pr, "f32") && strcmp(pr, "tf32")) {
        free(c);
        return lb_err_set(err, LB_ERR_ARG, "LB_CALIB_PREC=%s: expected split, f32 or tf32", pr);
    }
    c->n_win = n_win;
    c->win = win;
    c->dmax = dmax;
    c->pt = -1;
    lb_status s = lb_cuda_ctx_new_layerwise(m, device, win, &c->g, err);
    if (s == LB_OK) {
        c->st = (cudaStream_t)lb_cuda_ctx_stream(c->g);
        s = cu_blas_load(err);
    }
    if (s == LB_OK && cu_blas.create(&c->blas) != CUBLAS_STATUS_SUCCESS) {
        c->blas = NULL;
        s = lb_err_set(err, LB_ERR_DEVICE, "cuBLAS: cannot create a handle");
    }
    if (s == LB_OK) cu_blas.set_stream(c->blas, c->st);
    const size_t sq = (size_t)dmax * (size_t)dmax;
    if (s == LB_OK) s = dmalloc((void **)&c->x, (size_t)(rows * E) * sizeof(float), "the calibration activations", err);
    if (s == LB_OK && with_ref) s = dmalloc((void **)&c->xr, (size_t)(rows * E) * sizeof(float), "the reference activations", err);
    if (s == LB_OK && with_ref) s = dmalloc((void **)&c->cx, sq * sizeof(double), "the cross statistics", err);
    /* the staging buffers: kw windows a batch, within STAGE_BYTES for all of them */
    const int nbuf = (c->prec == PREC_SPLIT ? 2 : 1) * (with_ref ? 2 : 1);
    const char *eb = getenv("LB_CALIB_BATCH"), *ep = getenv("LB_CALIB_PANEL");
    const int64_t bmax = eb && atoll(eb) > 0 ? atoll(eb) : BATCH_TOKENS;
    c->panel = ep && atoll(ep) > 0 ? atoll(ep) : PANEL;
    int64_t bt = (int64_t)(STAGE_BYTES / ((size_t)nbuf * (size_t)dmax * sizeof(float)));
    bt = bt < bmax ? bt : bmax;
    c->kw = bt / win < 1 ? 1 : bt / win < n_win ? bt / win : n_win;
    const size_t stg = (size_t)(c->kw * win * dmax) * sizeof(float);
    if (s == LB_OK) s = dmalloc((void **)&c->hi, stg, "the staged inputs", err);
    if (s == LB_OK && c->prec == PREC_SPLIT) s = dmalloc((void **)&c->lo, stg, "the staged inputs", err);
    if (s == LB_OK && with_ref) s = dmalloc((void **)&c->rhi, stg, "the staged reference inputs", err);
    if (s == LB_OK && with_ref && c->prec == PREC_SPLIT) s = dmalloc((void **)&c->rlo, stg, "the staged reference inputs", err);
    if (s == LB_OK && with_ref) s = dmalloc((void **)&c->ref, (size_t)(win * E) * sizeof(float), "a reference window", err);
    if (s == LB_OK) s = dmalloc((void **)&c->prod, sq * sizeof(float), "a batch's product", err);
    /* h and abs_sum also hold the four points' rows of lb_cuda_calib_diag_stats */
    if (s == LB_OK) s = dmalloc((void **)&c->h, (sq > (size_t)(4 * dmax) ? sq : (size_t)(4 * dmax)) * sizeof(double), "the statistics", err);
    if (s == LB_OK) s = dmalloc((void **)&c->abs_sum, (size_t)(4 * dmax) * sizeof(double), "the statistics", err);
    if (s == LB_OK) s = dmalloc((void **)&c->xn, (size_t)(win * E) * sizeof(float), "a normed window", err);
    if (s == LB_OK) s = dmalloc((void **)&c->norm, (size_t)E * sizeof(float), "the final norm", err);
    if (s == LB_OK) lb_cuda_ctx_set_device_observer(c->g, observer, c);
    if (s != LB_OK) {
        lb_cuda_calib_free(c);
        return s;
    }
    note_peak(c);
    *out = c;
    return LB_OK;
}

extern "C" void lb_cuda_calib_free(lb_cuda_calib *c) {
    if (!c) return;
    if (c->g) {
        cudaSetDevice(lb_cuda_ctx_device(c->g));
        cudaStreamSynchronize(c->st);
    }
    if (c->blas) cu_blas.destroy(c->blas);
    void *bufs[] = {c->x, c->xr, c->ref, c->hi, c->lo, c->rhi, c->rlo, c->prod, c->h, c->cx, c->abs_sum, c->xn, c->norm, c->att_x};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    lb_cuda_ctx_free(c->g);
    free(c);
}

extern "C" lb_status lb_cuda_calib_upload(lb_cuda_calib *c, int s, int64_t row0, const float *x, int64_t n, lb_error *err) {
    const int64_t E = c->m->info.n_embd;
    float *dst = s == 0 ? c->x : c->xr;
    if (!dst || row0 < 0 || n < 0 || row0 + n > c->n_win * c->win)
        return lb_err_set(err, LB_ERR_ARG, "lb_cuda_calib_upload: rows outside the stream");
    CK(cudaSetDevice(lb_cuda_ctx_device(c->g)), "selecting the device");
    CK(cudaMemcpy(dst + row0 * E, x, (size_t)(n * E) * sizeof(float), cudaMemcpyHostToDevice), "uploading activations");
    return LB_OK;
}

extern "C" size_t lb_cuda_calib_peak_bytes(const lb_cuda_calib *c) { return c ? c->peak : 0; }

extern "C" void lb_cuda_calib_phase_seconds(const lb_cuda_calib *c, double out[3]) {
    for (int k = 0; k < 3; k++) out[k] = c && c->profile ? c->sec[k] : 0;
}

extern "C" int64_t lb_cuda_calib_point_dim(const lb_cuda_calib *c, lb_obs_point pt) {
    return pt == LB_OBS_OUTPUT_IN ? c->m->info.n_embd : point_dim(c->m, pt);
}

extern "C" void lb_cuda_calib_keep_sums(lb_cuda_calib *c, bool keep) { c->keep = keep; }

extern "C" void lb_cuda_calib_set_diag_only(lb_cuda_calib *c, bool on) { c->diag = on; }

extern "C" void lb_cuda_calib_sums(lb_cuda_calib *c, double **h, double **cx, double **abs_sum) {
    *h = c->h, *cx = c->with_c ? c->cx : NULL, *abs_sum = c->abs_sum;
}

extern "C" void *lb_cuda_host_alloc(int device, size_t bytes) {
    void *p = NULL;
    /* on the calibration's device, so that no context is made on device 0 for a run elsewhere */
    if (cudaSetDevice(device) != cudaSuccess || cudaHostAlloc(&p, bytes, cudaHostAllocPortable) != cudaSuccess) {
        (void)cudaGetLastError(); /* not sticky: the caller falls back to malloc */
        return NULL;
    }
    return p;
}

extern "C" void lb_cuda_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

extern "C" lb_status lb_cuda_calib_read_sums(lb_cuda_calib *c, lb_obs_point pt, double *h, double *cx, double *abs_sum, lb_error *err) {
    CK(cudaSetDevice(lb_cuda_ctx_device(c->g)), "selecting the device");
    return read_stats(c, lb_cuda_calib_point_dim(c, pt), h, cx, abs_sum, err);
}
