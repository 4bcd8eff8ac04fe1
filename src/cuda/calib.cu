/*
 * calib.cu - calibration statistics on a CUDA device (calib.h): the activation streams on the GPU, moved
 * one layer at a time through the executor's layer driver (backend.cu, a layerwise context), and the
 * second moments of one matrix input summed on the GPU.
 *
 * Per window of T tokens the device observer receives the point's input x (T, dim). cuBLAS forms the
 * window's product P = x^T x with F32 operands and CUBLAS_COMPUTE_32F (full F32 products and sums, no
 * TF32; LB_CALIB_TF32=1 switches to TF32 tensor cores, an experiment whose quality is not established), and a kernel adds it into H, kept in double: H[i][j] and H[j][i] both take P's element from
 * the upper triangle, so H is exactly symmetric. With a reference stream the window's reference input xr
 * (captured from the unquantized layer just before) gives P = xr^T x, added into C. sum |x| per channel
 * is one thread per channel adding the window's tokens in order, in double. This is the CPU's scheme
 * (algo/calib_layers.c: F32 window products summed in double), with cuBLAS's order of the F32 sums
 * inside a window. Everything is enqueued on the context's stream; the host copies are taken when the
 * point's last window is done.
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

struct lb_cuda_calib {
    const lb_model *m;
    lb_cuda_ctx *g;
    cudaStream_t st;
    cublasHandle_t blas;
    int64_t n_win, win, dmax;
    float *x, *xr;     /* the streams (n_win * win, n_embd); xr NULL without a reference */
    float *ref;        /* the reference window's input at the point (win, dim) */
    float *prod;       /* one window's product (dim, dim) */
    double *h, *cx;    /* the point's sums (dim, dim) */
    double *abs_sum;   /* (dim) */
    float *xn, *norm;  /* the output head: a normed window (win, n_embd), the final norm (n_embd) */
    int pt;            /* the point measured */
    bool capture;      /* the observer keeps the reference input instead of accumulating */
    size_t peak;
    cublasComputeType_t prec; /* the statistics' products: CUBLAS_COMPUTE_32F, or TF32 tensor cores with
                                 LB_CALIB_TF32=1 (an experiment: 10-bit operands, F32 sums) */
    bool profile;      /* LB_CALIB_PROFILE=1: wait for the device at each phase's end and time the phases */
    double sec[3];     /* ... the forward passes, the sums of the statistics, the copies to the host */
    double mark;       /* profile: when the phase being timed began */
    bool keep;         /* lb_cuda_calib_keep_sums: a point's sums stay on the device until lb_cuda_calib_read_sums */
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

/* H[i][j] += P's (min(i,j), max(i,j)) element; P column-major (d, d) */
__global__ void k_add_sym(double *H, const float *P, int64_t d) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y;
    if (j >= d) return;
    const int64_t lo = i < j ? i : j, hi = i < j ? j : i;
    H[i * d + j] += (double)P[lo + hi * d];
}

/* C[k] += P[k], k < n */
__global__ void k_add_f64(double *C, const float *P, int64_t n) {
    const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < n) C[k] += (double)P[k];
}

/* a[j] += sum over t < T of |x[t][j]|, in token order */
__global__ void k_abs_sum(double *a, const float *x, int64_t T, int64_t d) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    double s = a[j];
    for (int64_t t = 0; t < T; t++) s += fabsf(x[t * d + j]);
    a[j] = s;
}

/* ---------------------------------------------------------------- statistics ------------------------------- */

static void note_peak(lb_cuda_calib *c) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot - fr > c->peak) c->peak = tot - fr;
    cudaGetLastError();
}

/* the window's x (T, d) into H (and C against c->ref) and the absolute sums */
static lb_status accumulate(lb_cuda_calib *c, const float *x, int64_t T, int64_t d, lb_error *err) {
    const float one = 1.0f, zero = 0.0f;
    const unsigned nb = (unsigned)((d + 255) / 256);
    cublasStatus_t bs = CUBLAS_STATUS_SUCCESS;
    if (c->xr) { /* column-major (d, d): [j + i d] = sum_t x_t[j] xr_t[i] = C[i][j] row-major */
        bs = cu_blas.gemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)d, (int)d, (int)T, &one, x, CUDA_R_32F, (int)d, c->ref,
                          CUDA_R_32F, (int)d, &zero, c->prod, CUDA_R_32F, (int)d, c->prec, CUBLAS_GEMM_DEFAULT);
        if (bs == CUBLAS_STATUS_SUCCESS)
            k_add_f64<<<(unsigned)((d * d + 255) / 256), 256, 0, c->st>>>(c->cx, c->prod, d * d);
    }
    if (bs == CUBLAS_STATUS_SUCCESS)
        bs = cu_blas.gemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)d, (int)d, (int)T, &one, x, CUDA_R_32F, (int)d, x, CUDA_R_32F,
                          (int)d, &zero, c->prod, CUDA_R_32F, (int)d, c->prec, CUBLAS_GEMM_DEFAULT);
    if (bs != CUBLAS_STATUS_SUCCESS) return lb_err_set(err, LB_ERR_DEVICE, "cuBLAS GemmEx failed (status %d)", (int)bs);
    k_add_sym<<<dim3(nb, (unsigned)d), 256, 0, c->st>>>(c->h, c->prod, d);
    k_abs_sum<<<nb, 256, 0, c->st>>>(c->abs_sum, x, T, d);
    CK(cudaGetLastError(), "summing the calibration statistics");
    return LB_OK;
}

static lb_status observer(void *user, int64_t layer, lb_obs_point pt, const float *x, int64_t T, int64_t dim, lb_error *err) {
    lb_cuda_calib *c = (lb_cuda_calib *)user;
    (void)layer;
    if ((int)pt != c->pt) return LB_OK;
    if (T != c->win || dim > c->dmax) return lb_err_set(err, LB_ERR_ARG, "calibration: a matrix input was not a whole window");
    if (c->capture) {
        CK(cudaMemcpyAsync(c->ref, x, (size_t)(T * dim) * sizeof(float), cudaMemcpyDeviceToDevice, c->st), "capturing an input");
        return LB_OK;
    }
    phase_end(c, 0, &c->mark); /* the forward pass up to here */
    lb_status s = accumulate(c, x, T, dim, err);
    phase_end(c, 1, &c->mark);
    return s;
}

static lb_status zero_stats(lb_cuda_calib *c, int64_t d, lb_error *err) {
    CK(cudaMemsetAsync(c->h, 0, (size_t)(d * d) * sizeof(double), c->st), "clearing the statistics");
    if (c->xr) CK(cudaMemsetAsync(c->cx, 0, (size_t)(d * d) * sizeof(double), c->st), "clearing the statistics");
    CK(cudaMemsetAsync(c->abs_sum, 0, (size_t)d * sizeof(double), c->st), "clearing the statistics");
    return LB_OK;
}

/* the point's sums to the host, once every window is done */
static lb_status read_stats(lb_cuda_calib *c, int64_t d, double *h, double *cx, double *abs_sum, lb_error *err) {
    CK(cudaStreamSynchronize(c->st), "computing the calibration statistics");
    phase_end(c, 0, &c->mark);
    note_peak(c);
    CK(cudaMemcpy(h, c->h, (size_t)(d * d) * sizeof(double), cudaMemcpyDeviceToHost), "reading the statistics");
    if (c->xr && cx) CK(cudaMemcpy(cx, c->cx, (size_t)(d * d) * sizeof(double), cudaMemcpyDeviceToHost), "reading the statistics");
    CK(cudaMemcpy(abs_sum, c->abs_sum, (size_t)d * sizeof(double), cudaMemcpyDeviceToHost), "reading the statistics");
    phase_end(c, 2, &c->mark);
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
    TRY(zero_stats(c, d, err));
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
    if (s == LB_OK && c->keep) CK(cudaStreamSynchronize(c->st), "computing the calibration statistics");
    else if (s == LB_OK) s = read_stats(c, d, h, ref ? cx : NULL, abs_sum, err);
    return s;
}

extern "C" lb_status lb_cuda_calib_advance(lb_cuda_calib *c, const lb_layer *l, const lb_layer *ref, int64_t il, lb_error *err) {
    const int64_t E = c->m->info.n_embd;
    CK(cudaSetDevice(lb_cuda_ctx_device(c->g)), "selecting the device");
    c->mark = now();
    const int sl = slot_of(c, l, il);
    TRY(lb_cuda_ctx_load_layer(c->g, sl, l, -1, err));
    c->pt = -1;
    lb_status s = LB_OK;
    for (int64_t w = 0; s == LB_OK && w < c->n_win; w++) s = lb_cuda_ctx_run_layer(c->g, sl, il, c->x + w * c->win * E, c->win, -1, err);
    if (s == LB_OK && c->xr && ref) {
        const int sr = slot_of(c, ref, il);
        s = lb_cuda_ctx_load_layer(c->g, sr, ref, -1, err);
        for (int64_t w = 0; s == LB_OK && w < c->n_win; w++)
            s = lb_cuda_ctx_run_layer(c->g, sr, il, c->xr + w * c->win * E, c->win, -1, err);
    }
    if (s == LB_OK) CK(cudaStreamSynchronize(c->st), "moving the calibration activations");
    phase_end(c, 0, &c->mark);
    note_peak(c);
    return s;
}

extern "C" lb_status lb_cuda_calib_output_stats(lb_cuda_calib *c, const float *out_norm, double *h, double *cx, double *abs_sum,
                                                lb_error *err) {
    const int64_t E = c->m->info.n_embd;
    const float eps = c->m->info.rms_eps;
    CK(cudaSetDevice(lb_cuda_ctx_device(c->g)), "selecting the device");
    CK(cudaStreamSynchronize(c->st), "waiting for the device");
    CK(cudaMemcpy(c->norm, out_norm, (size_t)E * sizeof(float), cudaMemcpyHostToDevice), "uploading the final norm");
    lb_cu_stream = c->st;
    TRY(zero_stats(c, E, err));
    c->mark = now();
    for (int64_t w = 0; w < c->n_win; w++) {
        if (c->xr) cu_rmsnorm(c->xr + w * c->win * E, c->norm, c->ref, c->win, (int)E, E, eps);
        cu_rmsnorm(c->x + w * c->win * E, c->norm, c->xn, c->win, (int)E, E, eps);
        phase_end(c, 0, &c->mark);
        TRY(accumulate(c, c->xn, c->win, E, err));
        phase_end(c, 1, &c->mark);
    }
    if (c->keep) {
        CK(cudaStreamSynchronize(c->st), "computing the calibration statistics");
        return LB_OK;
    }
    return read_stats(c, E, h, cx, abs_sum, err);
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
    const char *pf = getenv("LB_CALIB_PROFILE"), *tf = getenv("LB_CALIB_TF32");
    c->profile = pf && pf[0] == '1';
    c->prec = tf && tf[0] == '1' ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
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
    if (s == LB_OK) s = dmalloc((void **)&c->ref, (size_t)(win * (dmax > E ? dmax : E)) * sizeof(float), "a reference window", err);
    if (s == LB_OK) s = dmalloc((void **)&c->prod, sq * sizeof(float), "a window's product", err);
    if (s == LB_OK) s = dmalloc((void **)&c->h, sq * sizeof(double), "the statistics", err);
    if (s == LB_OK) s = dmalloc((void **)&c->abs_sum, (size_t)dmax * sizeof(double), "the statistics", err);
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
    void *bufs[] = {c->x, c->xr, c->ref, c->prod, c->h, c->cx, c->abs_sum, c->xn, c->norm};
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

extern "C" void lb_cuda_calib_sums(lb_cuda_calib *c, double **h, double **cx, double **abs_sum) {
    *h = c->h, *cx = c->xr ? c->cx : NULL, *abs_sum = c->abs_sum;
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
