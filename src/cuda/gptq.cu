/*
 * gptq.cu - GPTQ's heavy linear algebra on a CUDA device (gptq.h): the inverse factor through cuSOLVER,
 * the sweep's delayed updates, the coordinate descent's products H e and the reference target's products
 * through cuBLAS. The CPU implementation in algo/gptq.c is the specification of each.
 *
 * Layouts: the host hands over row-major matrices; cuBLAS and cuSOLVER are column-major, so a row-major
 * (r, c) matrix is used as its column-major transpose (c, r) with leading dimension c, and the products
 * are written for the transposes (comments give the row-major meaning).
 */
#include "blas.cuh"
#include "kq_encode.cuh"

#include <cusolverDn.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../linalg/linalg.h"
#include "cuda.h"
#include "gptq.h"
}

/* ---------------------------------------------------------------- cuSOLVER, opened with dlopen ------------- */

typedef cusolverStatus_t (*cs_create_fn)(cusolverDnHandle_t *);
typedef cusolverStatus_t (*cs_destroy_fn)(cusolverDnHandle_t);
typedef cusolverStatus_t (*cs_stream_fn)(cusolverDnHandle_t, cudaStream_t);
typedef cusolverStatus_t (*cs_potrf_size_fn)(cusolverDnHandle_t, cublasFillMode_t, int, double *, int, int *);
typedef cusolverStatus_t (*cs_potrf_fn)(cusolverDnHandle_t, cublasFillMode_t, int, double *, int, double *, int, int *);
typedef cusolverStatus_t (*cs_trtri_size_fn)(cusolverDnHandle_t, cublasFillMode_t, cublasDiagType_t, int64_t, cudaDataType,
                                             void *, int64_t, size_t *, size_t *);
typedef cusolverStatus_t (*cs_trtri_fn)(cusolverDnHandle_t, cublasFillMode_t, cublasDiagType_t, int64_t, cudaDataType, void *,
                                        int64_t, void *, size_t, void *, size_t, int *);

static struct {
    int tried;
    char why[200];
    cs_create_fn create;
    cs_destroy_fn destroy;
    cs_stream_fn set_stream;
    cs_potrf_size_fn potrf_size;
    cs_potrf_fn potrf;
    cs_trtri_size_fn trtri_size;
    cs_trtri_fn trtri;
} cs;

static lb_status cs_load(lb_error *err) {
    if (!cs.tried) {
        cs.tried = 1;
        const char *names[] = {"libcusolver.so.12", "libcusolver.so.11", "libcusolver.so",
                               "/usr/local/cuda/lib64/libcusolver.so.12"};
        void *h = NULL;
        for (size_t i = 0; !h && i < sizeof names / sizeof names[0]; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            snprintf(cs.why, sizeof cs.why, "cannot load cuSOLVER (libcusolver.so.12): %s", dlerror());
        } else {
            cs.create = (cs_create_fn)dlsym(h, "cusolverDnCreate");
            cs.destroy = (cs_destroy_fn)dlsym(h, "cusolverDnDestroy");
            cs.set_stream = (cs_stream_fn)dlsym(h, "cusolverDnSetStream");
            cs.potrf_size = (cs_potrf_size_fn)dlsym(h, "cusolverDnDpotrf_bufferSize");
            cs.potrf = (cs_potrf_fn)dlsym(h, "cusolverDnDpotrf");
            cs.trtri_size = (cs_trtri_size_fn)dlsym(h, "cusolverDnXtrtri_bufferSize");
            cs.trtri = (cs_trtri_fn)dlsym(h, "cusolverDnXtrtri");
            if (!cs.create || !cs.destroy || !cs.set_stream || !cs.potrf_size || !cs.potrf || !cs.trtri_size || !cs.trtri)
                snprintf(cs.why, sizeof cs.why, "libcusolver lacks cusolverDnDpotrf or cusolverDnXtrtri");
        }
    }
    if (cs.why[0]) return lb_err_set(err, LB_ERR_DEVICE, "%s", cs.why);
    return LB_OK;
}

/* ---------------------------------------------------------------- the state -------------------------------- */

struct lb_cuda_gptq {
    int device;
    cudaStream_t st;
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
    int64_t cap_n;  /* the reservation: n x n buffers for up to cap_n columns ... */
    int64_t cap_rn; /* ... and rows x n buffers of up to cap_rn elements (the largest rows * n, not rows_max * n_max:
                       a wide head of few columns after a layer's wide down_proj needs no rows_max x n_max) */
    bool cap_cd;
    double *A, *B;     /* (cap_n, cap_n) each: A as given / U, its reversal / factor */
    void *work;        /* cuSOLVER's device workspace */
    size_t work_bytes;
    void *hwork;       /* Xtrtri's host workspace */
    size_t hwork_bytes;
    int *info;         /* cuSOLVER's status; then the pivot check's flag */
    cudaEvent_t copied; /* the update's columns are on the host */
    float *U, *Hf;     /* (cap_n, cap_n) F32 */
    int64_t kept_n;    /* inv_upper_keep's factor of this many columns is in U (0: none; whatever else writes U clears it) */
    /* the matrix's weights W as the first pass uploaded them (rows, n), so that the later passes and the descent
     * copy them on the device instead of uploading them again: valid for wd_src (the host W) from that pass until the
     * next begin; NULL when not kept (no memory to spare: the uploads happen as before) */
    float *Wd;
    size_t Wd_bytes;
    const float *wd_src;
    int64_t wd_rows, wd_n;
    float *T, *E, *G;  /* (rows, n) F32, cap_rn elements */
    float *stage;      /* (rows, n) host, cap_rn elements: W - Q and the products H e */
    float *P;             /* (rows, n) a device pass's values before rounding, kept for the next pass */
    uint8_t *qout;        /* (rows, row_bytes) a device pass's blocks */
    double *ploss;        /* (rows) its losses */
    float *pimp;          /* (n) its importance weights */
    size_t P_bytes, qout_bytes, ploss_bytes, pimp_bytes;
    float *rt_dc;         /* the reference target's (D C)^T */
    size_t rt_dc_bytes;
    float *rt_s;          /* ... the input scales it divides C's rows by (n) */
    size_t rt_s_bytes;
    float *Ht;            /* the coordinate descent's diagonal blocks */
    bool *act;            /* (rows) its active rows */
    size_t Ht_bytes, act_bytes;
    float *enc_x, *enc_w; /* the encoders' input and importance weights */
    uint8_t *enc_y;       /* ... and their blocks */
    size_t enc_x_bytes, enc_w_bytes, enc_y_bytes;
    size_t peak;
};

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
#define CKB(call, what)                                                                                             \
    do {                                                                                                            \
        cublasStatus_t b_ = (call);                                                                                 \
        if (b_ != CUBLAS_STATUS_SUCCESS) return lb_err_set(err, LB_ERR_DEVICE, "cuBLAS failed %s (status %d)", what, (int)b_); \
    } while (0)
#define CKS(call, what)                                                                                             \
    do {                                                                                                            \
        cusolverStatus_t s_ = (call);                                                                               \
        if (s_ != CUSOLVER_STATUS_SUCCESS)                                                                          \
            return lb_err_set(err, LB_ERR_DEVICE, "cuSOLVER failed %s (status %d)", what, (int)s_);                 \
    } while (0)

static void note_peak(lb_cuda_gptq *g) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot - fr > g->peak) g->peak = tot - fr;
    cudaGetLastError();
}

/* *p: at least `bytes` of device memory (freed and allocated anew when it was smaller) */
static lb_status grow(void **p, size_t *have, size_t bytes, const char *what, lb_error *err) {
    if (*p && *have >= bytes) return LB_OK;
    cudaFree(*p);
    *p = NULL;
    *have = 0;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *p = NULL;
        return lb_err_set(err, LB_ERR_DEVICE, "CUDA: out of GPU memory allocating %.1f MiB for %s", (double)bytes / 1048576.0,
                          what);
    }
    *have = bytes;
    return LB_OK;
}

static lb_status use(lb_cuda_gptq *g, lb_error *err) {
    CK(cudaSetDevice(g->device), "selecting the device");
    return LB_OK;
}

extern "C" lb_status lb_cuda_gptq_new(int device, lb_cuda_gptq **out, lb_error *err) {
    *out = NULL;
    lb_status s = lb_cuda_device_check(device, err);
    if (s == LB_OK) s = cu_blas_load(err);
    if (s == LB_OK) s = cs_load(err);
    if (s != LB_OK) return s;
    lb_cuda_gptq *g = (lb_cuda_gptq *)calloc(1, sizeof *g);
    if (!g) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    g->device = device;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking);
    if (e != cudaSuccess) s = fail(err, e, "creating a stream for GPTQ");
    if (s == LB_OK && cu_blas.create(&g->blas) != CUBLAS_STATUS_SUCCESS) {
        g->blas = NULL;
        s = lb_err_set(err, LB_ERR_DEVICE, "cuBLAS: cannot create a handle");
    }
    if (s == LB_OK && cs.create(&g->solver) != CUSOLVER_STATUS_SUCCESS) {
        g->solver = NULL;
        s = lb_err_set(err, LB_ERR_DEVICE, "cuSOLVER: cannot create a handle");
    }
    if (s == LB_OK && (cu_blas.set_stream(g->blas, g->st) != CUBLAS_STATUS_SUCCESS ||
                       cs.set_stream(g->solver, g->st) != CUSOLVER_STATUS_SUCCESS))
        s = lb_err_set(err, LB_ERR_DEVICE, "cuBLAS/cuSOLVER: cannot set the stream");
    if (s == LB_OK) {
        e = cudaMalloc((void **)&g->info, 2 * sizeof(int));
        if (e == cudaSuccess) e = cudaEventCreateWithFlags(&g->copied, cudaEventDisableTiming);
        else g->info = NULL;
        if (e != cudaSuccess) s = fail(err, e, "allocating a status word");
    }
    if (s != LB_OK) {
        lb_cuda_gptq_free(g);
        return s;
    }
    note_peak(g);
    *out = g;
    return LB_OK;
}

extern "C" void lb_cuda_gptq_free(lb_cuda_gptq *g) {
    if (!g) return;
    cudaSetDevice(g->device);
    if (g->st) cudaStreamSynchronize(g->st);
    if (g->blas) cu_blas.destroy(g->blas);
    if (g->solver) cs.destroy(g->solver);
    void *bufs[] = {g->A, g->B, g->work, g->info, g->U, g->Hf, g->T, g->E, g->G, g->enc_x, g->enc_w, g->enc_y, g->P, g->qout, g->ploss, g->pimp, g->Ht, g->act, g->rt_dc, g->rt_s, g->Wd};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    if (g->copied) cudaEventDestroy(g->copied);
    if (g->st) cudaStreamDestroy(g->st);
    cudaGetLastError();
    free(g->stage);
    free(g->hwork);
    free(g);
}

extern "C" size_t lb_cuda_gptq_peak_bytes(const lb_cuda_gptq *g) { return g ? g->peak : 0; }

/* whether the reservation takes a matrix of rows x n */
static bool fits(const lb_cuda_gptq *g, int64_t rows, int64_t n) { return n <= g->cap_n && rows * n <= g->cap_rn; }

/* Every buffer a matrix of rows x n needs, allocated up front so that a shortage shows before any work. */
extern "C" lb_status lb_cuda_gptq_reserve(lb_cuda_gptq *g, int64_t rows, int64_t n, bool cd, lb_error *err) {
    if (rows <= 0 || n <= 0 || n > INT32_MAX || rows > INT32_MAX)
        return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): bad size %lld x %lld", (long long)rows, (long long)n);
    if (fits(g, rows, n) && (!cd || g->cap_cd)) return LB_OK;
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    const int64_t N = n > g->cap_n ? n : g->cap_n, RN = rows * n > g->cap_rn ? rows * n : g->cap_rn;
    const bool CD = cd || g->cap_cd;
    const size_t nn = (size_t)N * (size_t)N, rn = (size_t)RN;
    size_t have;
    g->cap_n = g->cap_rn = 0; /* until everything below is in place */
    g->kept_n = 0;
    cudaFree(g->Wd); /* grown again by the next pass, after the reservation */
    g->Wd = NULL, g->Wd_bytes = 0, g->wd_src = NULL;
    cudaFree(g->A), cudaFree(g->B), cudaFree(g->U), cudaFree(g->Hf), cudaFree(g->T), cudaFree(g->E), cudaFree(g->G);
    g->A = g->B = NULL, g->U = g->Hf = g->T = g->E = g->G = NULL;
    free(g->stage);
    g->stage = NULL;
#define GROW(p, bytes, what)                                                                                        \
    do {                                                                                                            \
        have = 0;                                                                                                   \
        lb_status s_ = grow((void **)&(p), &have, (bytes), (what), err);                                            \
        if (s_ != LB_OK) return s_;                                                                                 \
    } while (0)
    GROW(g->A, nn * sizeof(double), "GPTQ's H");
    GROW(g->B, nn * sizeof(double), "GPTQ's Cholesky factor");
    GROW(g->U, nn * sizeof(float), "GPTQ's inverse factor");
    GROW(g->T, rn * sizeof(float), "GPTQ's weights");
    GROW(g->E, rn * sizeof(float), "GPTQ's errors");
    if (CD) {
        GROW(g->Hf, nn * sizeof(float), "the coordinate descent's H");
        GROW(g->G, rn * sizeof(float), "the coordinate descent's products");
        g->stage = (float *)malloc(rn * sizeof(float));
        if (!g->stage) return lb_err_set(err, LB_ERR_NOMEM, "out of memory (GPTQ's host staging, %lld floats)", (long long)RN);
    }
#undef GROW
    int lw = 0;
    CKS(cs.potrf_size(g->solver, CUBLAS_FILL_MODE_LOWER, (int)N, g->B, (int)N, &lw), "sizing the Cholesky workspace");
    size_t dbytes = 0, hbytes = 0;
    CKS(cs.trtri_size(g->solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, N, CUDA_R_64F, g->B, N, &dbytes, &hbytes),
        "sizing the triangular inverse's workspace");
    size_t need = (size_t)lw * sizeof(double);
    if (dbytes > need) need = dbytes;
    lb_status s = grow(&g->work, &g->work_bytes, need, "cuSOLVER's workspace", err);
    if (s != LB_OK) return s;
    if (hbytes > g->hwork_bytes) {
        free(g->hwork);
        g->hwork = malloc(hbytes);
        g->hwork_bytes = g->hwork ? hbytes : 0;
        if (!g->hwork) return lb_err_set(err, LB_ERR_NOMEM, "out of memory (cuSOLVER's host workspace)");
    }
    g->cap_n = N, g->cap_rn = RN, g->cap_cd = CD;
    note_peak(g);
    return LB_OK;
}

/* ---------------------------------------------------------------- the inverse factor ----------------------- */

/* B (column-major, n x n) = the lower triangle of J A J: B[i + j n] = A[n-1-j][n-1-i] for i >= j (A's lower
 * triangle, row-major: the triangle gptq.c keeps pristine, read along rows), plus lam on the diagonal (the
 * reference target's damping; 0 otherwise: the same doubles). A symmetric A gives J A J's lower triangle. */
__global__ void k_reverse_lower(double *B, const double *A, int64_t n, double lam) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    for (int64_t j = blockIdx.y; j <= i; j += gridDim.y) B[i + j * n] = A[(n - 1 - j) * n + (n - 1 - i)] + (i == j ? lam : 0.0);
}

/* the pivot check of linalg.h on the factor L (column-major): L_jj^2 = the pivot, against A's diagonal
 * entry it came from; flag = 1 when any fails */
__global__ void k_check_pivots(const double *L, const double *A, int64_t n, double lam, int *flag) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    const double l = L[j + j * n], a = A[(n - 1 - j) * n + (n - 1 - j)] + lam;
    const double p = l * l;
    if (!(p > LB_CHOL_REL_EPS * a && isfinite(p))) *flag = 1;
}

/* U (row-major, F32) = J Linv J as k_unreverse_upper places it, straight into F32 (the reference target) */
__global__ void k_unreverse_upper_f32(float *U, const double *Linv, int64_t n) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    for (int64_t i = blockIdx.y; i < n; i += gridDim.y) U[i * n + j] = j >= i ? (float)Linv[(n - 1 - i) + (n - 1 - j) * n] : 0.0f;
}

/* A (row-major) = U = J Linv J: U[i][j] = Linv[n-1-i + (n-1-j) n] for j >= i, 0 below the diagonal */
__global__ void k_unreverse_upper(double *A, const double *Linv, int64_t n) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    for (int64_t i = blockIdx.y; i < n; i += gridDim.y) A[i * n + j] = j >= i ? Linv[(n - 1 - i) + (n - 1 - j) * n] : 0.0;
}

/* The upper factor U of (A + lam I)^-1 from A (n x n, in g->A, left as it is): J (A + lam I) J reversed into
 * B, Dpotrf, the pivot check against the damped diagonal, Xtrtri, U placed row-major into g->A in double
 * (u32 NULL) or into u32 in F32. *ok false (and nothing placed) when A + lam I is not positive definite. */
static lb_status factor(lb_cuda_gptq *g, int64_t n, double lam, float *u32, bool *ok, lb_error *err) {
    *ok = false;
    const dim3 grid((unsigned)((n + 255) / 256), (unsigned)(n < 65535 ? n : 65535)); /* y: rows, strided */
    int info[2] = {0, 0};
    int lw = 0; /* the workspaces for this n (reserve sized them for the largest) */
    size_t dbytes = 0, hbytes = 0;
    CKS(cs.potrf_size(g->solver, CUBLAS_FILL_MODE_LOWER, (int)n, g->B, (int)n, &lw), "sizing the Cholesky workspace");
    CKS(cs.trtri_size(g->solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, g->B, n, &dbytes, &hbytes),
        "sizing the triangular inverse's workspace");
    if ((size_t)lw * sizeof(double) > g->work_bytes || dbytes > g->work_bytes || hbytes > g->hwork_bytes)
        return lb_err_set(err, LB_ERR_DEVICE, "cuSOLVER: the workspace for %lld columns exceeds the reserved one", (long long)n);
    k_reverse_lower<<<grid, 256, 0, g->st>>>(g->B, g->A, n, lam);
    CK(cudaGetLastError(), "reversing H");
    CKS(cs.potrf(g->solver, CUBLAS_FILL_MODE_LOWER, (int)n, g->B, (int)n, (double *)g->work, lw, g->info), "in Dpotrf");
    CK(cudaMemcpyAsync(&info[0], g->info, sizeof(int), cudaMemcpyDeviceToHost, g->st), "reading Dpotrf's status");
    CK(cudaStreamSynchronize(g->st), "factoring H");
    if (info[0] != 0) return LB_OK; /* a non-positive pivot: not positive definite */
    CK(cudaMemsetAsync(g->info + 1, 0, sizeof(int), g->st), "clearing a flag");
    k_check_pivots<<<(unsigned)((n + 255) / 256), 256, 0, g->st>>>(g->B, g->A, n, lam, g->info + 1);
    CK(cudaGetLastError(), "checking the pivots");
    CK(cudaMemcpyAsync(&info[1], g->info + 1, sizeof(int), cudaMemcpyDeviceToHost, g->st), "reading the pivot check");
    CK(cudaStreamSynchronize(g->st), "checking the pivots");
    if (info[1] != 0) return LB_OK;
    CKS(cs.trtri(g->solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, g->B, n, g->work, dbytes, g->hwork, hbytes,
                 g->info),
        "in Xtrtri");
    if (u32) k_unreverse_upper_f32<<<grid, 256, 0, g->st>>>(u32, g->B, n);
    else k_unreverse_upper<<<grid, 256, 0, g->st>>>(g->A, g->B, n);
    CK(cudaGetLastError(), "placing the inverse factor");
    CK(cudaMemcpyAsync(&info[0], g->info, sizeof(int), cudaMemcpyDeviceToHost, g->st), "reading Xtrtri's status");
    CK(cudaStreamSynchronize(g->st), "inverting the factor");
    if (info[0] != 0) return lb_err_set(err, LB_ERR_DEVICE, "cuSOLVER Xtrtri: singular factor (info %d)", info[0]);
    *ok = true;
    return LB_OK;
}

/* Hf (row-major) = (float) A's strictly lower triangle mirrored, d on the diagonal */
__global__ void k_hf_from_a(float *Hf, const double *A, const float *d, int64_t n) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    for (int64_t i = blockIdx.y; i < n; i += gridDim.y) Hf[i * n + j] = i == j ? d[i] : (float)(i > j ? A[i * n + j] : A[j * n + i]);
}

/* A (n x n, host) uploaded and factored (factor's placement: u32, or into g->A when NULL) */
static lb_status upload_factor(lb_cuda_gptq *g, const double *A, int64_t n, float *u32, bool *ok, lb_error *err) {
    *ok = false;
    if (n > g->cap_n) return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): %lld columns beyond the reservation", (long long)n);
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    CK(cudaMemcpyAsync(g->A, A, (size_t)n * (size_t)n * sizeof(double), cudaMemcpyHostToDevice, g->st), "uploading H");
    return factor(g, n, 0.0, u32, ok, err);
}

extern "C" lb_status lb_cuda_gptq_inv_upper_keep(lb_cuda_gptq *g, const double *A, int64_t n, bool *ok, lb_error *err) {
    g->kept_n = 0;
    lb_status s = upload_factor(g, A, n, g->U, ok, err); /* U as inv_upper's upper triangle in F32; A stays as given */
    if (s == LB_OK && *ok) {
        g->kept_n = n;
        note_peak(g);
    }
    return s;
}

extern "C" lb_status lb_cuda_gptq_begin_kept(lb_cuda_gptq *g, const float *hf_diag, int64_t rows, int64_t n, lb_error *err) {
    if (!fits(g, rows, n) || (hf_diag && !g->cap_cd))
        return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): %lld x %lld beyond the reservation", (long long)rows, (long long)n);
    if (g->kept_n != n) return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): no kept factor of %lld columns", (long long)n);
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    g->wd_src = NULL;
    if (hf_diag) { /* the diagonal through B, free once the factor is in U */
        float *d = (float *)g->B;
        CK(cudaMemcpyAsync(d, hf_diag, (size_t)n * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading H's diagonal");
        const dim3 grid((unsigned)((n + 255) / 256), (unsigned)(n < 65535 ? n : 65535));
        k_hf_from_a<<<grid, 256, 0, g->st>>>(g->Hf, g->A, d, n);
        CK(cudaGetLastError(), "forming H in F32");
    }
    CK(cudaStreamSynchronize(g->st), "forming GPTQ's matrices");
    return LB_OK;
}

extern "C" lb_status lb_cuda_gptq_read_kept(lb_cuda_gptq *g, float *U, float *Hf, int64_t n, lb_error *err) {
    if (g->kept_n != n || (Hf && !g->cap_cd)) return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): no kept factor of %lld columns", (long long)n);
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    const size_t nn = (size_t)n * (size_t)n;
    CK(cudaStreamSynchronize(g->st), "waiting for the device");
    CK(cudaMemcpy(U, g->U, nn * sizeof(float), cudaMemcpyDeviceToHost), "reading the kept factor");
    if (Hf) CK(cudaMemcpy(Hf, g->Hf, nn * sizeof(float), cudaMemcpyDeviceToHost), "reading H in F32");
    return LB_OK;
}

extern "C" lb_status lb_cuda_gptq_inv_upper(lb_cuda_gptq *g, double *A, int64_t n, bool *ok, lb_error *err) {
    lb_status s = upload_factor(g, A, n, NULL, ok, err);
    if (s != LB_OK || !*ok) return s;
    CK(cudaMemcpy(A, g->A, (size_t)n * (size_t)n * sizeof(double), cudaMemcpyDeviceToHost), "reading the inverse factor");
    note_peak(g);
    return LB_OK;
}

/* ---------------------------------------------------------------- the sweep -------------------------------- */

extern "C" lb_status lb_cuda_gptq_begin(lb_cuda_gptq *g, const float *U, const float *Hf, int64_t rows, int64_t n,
                                        lb_error *err) {
    if (!fits(g, rows, n) || (Hf && !g->cap_cd))
        return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): %lld x %lld beyond the reservation", (long long)rows, (long long)n);
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    const size_t nn = (size_t)n * (size_t)n;
    g->kept_n = 0;
    g->wd_src = NULL;
    CK(cudaMemcpyAsync(g->U, U, nn * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading GPTQ's inverse factor");
    if (Hf) CK(cudaMemcpyAsync(g->Hf, Hf, nn * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading H");
    CK(cudaStreamSynchronize(g->st), "uploading GPTQ's matrices");
    return LB_OK;
}

extern "C" lb_status lb_cuda_gptq_load(lb_cuda_gptq *g, const float *T, int64_t rows, int64_t n, lb_error *err) {
    if (!fits(g, rows, n)) return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): beyond the reservation");
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    CK(cudaMemcpyAsync(g->T, T, (size_t)rows * (size_t)n * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading GPTQ's weights");
    return LB_OK;
}

/* T[:, c0:c1] -= E[:, 0:nb] U[i1:i1+nb, c0:c1] on the device: column-major T^T (n x rows) gets
 * -(U-slice as (c1-c0) x nb, ld n) (E^T, nb x rows, ld lde) */
static lb_status update_cols(lb_cuda_gptq *g, int64_t rows, int64_t n, int64_t lde, int64_t i1, int64_t nb, int64_t c0,
                             int64_t c1, lb_error *err) {
    if (c1 <= c0) return LB_OK;
    const float one = 1.0f, minus = -1.0f;
    CKB(cu_blas.gemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)(c1 - c0), (int)rows, (int)nb, &minus, g->U + i1 * n + c0, CUDA_R_32F,
                     (int)n, g->E, CUDA_R_32F, (int)lde, &one, g->T + c0, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT),
        "in GPTQ's block update");
    return LB_OK;
}

extern "C" lb_status lb_cuda_gptq_update(lb_cuda_gptq *g, float *T, int64_t rows, int64_t n, const float *E, int64_t lde,
                                         int64_t i1, int64_t i2, int64_t i3, lb_error *err) {
    if (!fits(g, rows, n) || lde > n || i1 < 0 || i2 <= i1 || i2 - i1 > lde || i3 < i2 || i3 > n)
        return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): bad update of columns %lld..%lld", (long long)i1, (long long)i2);
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    CK(cudaMemcpyAsync(g->E, E, (size_t)rows * (size_t)lde * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading GPTQ's errors");
    lb_status s = update_cols(g, rows, n, lde, i1, i2 - i1, i2, i3, err); /* the next batch first ... */
    if (s != LB_OK) return s;
    if (i3 > i2) /* ... back to the host while the rest is updated */
        CK(cudaMemcpy2DAsync(T + i2, (size_t)n * sizeof(float), g->T + i2, (size_t)n * sizeof(float), (size_t)(i3 - i2) * sizeof(float),
                             (size_t)rows, cudaMemcpyDeviceToHost, g->st),
           "reading GPTQ's next columns");
    CK(cudaEventRecord(g->copied, g->st), "in GPTQ's block update");
    s = update_cols(g, rows, n, lde, i1, i2 - i1, i3, n, err);
    if (s != LB_OK) return s;
    CK(cudaGetLastError(), "in GPTQ's block update");
    /* the host reads T[:, i2:i3] next; the rest's GEMM runs on (the next upload of E waits for it in the
     * stream's order, the next load or h_times_e too) */
    CK(cudaEventSynchronize(g->copied), "in GPTQ's block update");
    return LB_OK;
}

/* ---------------------------------------------------------------- products --------------------------------- */

extern "C" lb_status lb_cuda_gptq_h_times_e(lb_cuda_gptq *g, const float *W, const float *Q, float *G, int64_t rows, int64_t n,
                                            const bool *sel, lb_error *err) {
    if (!fits(g, rows, n) || !g->cap_cd || !g->stage)
        return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): H e beyond the reservation");
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    const size_t rn = (size_t)rows * (size_t)n;
    for (size_t i = 0; i < rn; i++) g->stage[i] = W[i] - Q[i];
    const float one = 1.0f, zero = 0.0f;
    CK(cudaMemcpyAsync(g->E, g->stage, rn * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading the errors");
    /* G^T (n x rows) = Hf^T-as-stored (n x n) E^T (n x rows): G[r][i] = sum_j e_j Hf[j][i] */
    CKB(cu_blas.gemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)rows, (int)n, &one, g->Hf, CUDA_R_32F, (int)n, g->E, CUDA_R_32F,
                     (int)n, &zero, g->G, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "in H e");
    CK(cudaMemcpyAsync(g->stage, g->G, rn * sizeof(float), cudaMemcpyDeviceToHost, g->st), "reading H e");
    CK(cudaStreamSynchronize(g->st), "computing H e");
    for (int64_t r = 0; r < rows; r++)
        if (sel[r]) memcpy(G + r * n, g->stage + r * n, (size_t)n * sizeof *G);
    return LB_OK;
}

extern "C" lb_status lb_cuda_gptq_matmul(lb_cuda_gptq *g, const float *x, int64_t rows, const float *w, int64_t n, int64_t K,
                                         float *out, lb_error *err) {
    if (rows <= 0 || n <= 0 || K <= 0 || !fits(g, rows, n) || !fits(g, rows, K) || K > g->cap_n)
        return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): product %lld x %lld x %lld beyond the reservation", (long long)rows,
                          (long long)n, (long long)K);
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    const size_t xs = (size_t)rows * (size_t)K, ws = (size_t)n * (size_t)K, os = (size_t)rows * (size_t)n;
    float *dx = g->T, *dw = g->U, *dout = g->E; /* the sweep's buffers: (rows, n), (n, n), (rows, n) at least */
    g->kept_n = 0;
    const float one = 1.0f, zero = 0.0f;
    CK(cudaMemcpyAsync(dx, x, xs * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading a product's input");
    CK(cudaMemcpyAsync(dw, w, ws * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading a product's matrix");
    /* out^T (n x rows) = (w as K x n)^T (x as K x rows) */
    CKB(cu_blas.gemm(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)rows, (int)K, &one, dw, CUDA_R_32F, (int)K, dx, CUDA_R_32F,
                     (int)K, &zero, dout, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "in a product");
    CK(cudaMemcpyAsync(out, dout, os * sizeof(float), cudaMemcpyDeviceToHost, g->st), "reading a product");
    CK(cudaStreamSynchronize(g->st), "computing a product");
    note_peak(g);
    return LB_OK;
}

/* ---------------------------------------------------------------- the block encoders ----------------------- */

extern "C" bool lb_cuda_kq_encodes(lb_type t, lb_encoder enc) { return enc == LB_ENCODER_DEFAULT && cu_kq_block_bytes(t) > 0; }

extern "C" lb_status lb_cuda_gptq_encode(lb_cuda_gptq *g, lb_type t, const float *S, int64_t ld, int64_t rows, int64_t c0,
                                         int64_t c1, const float *imp, uint8_t *out, size_t row_bytes, lb_error *err) {
    const size_t bb = cu_kq_block_bytes(t);
    if (!bb || rows <= 0 || c0 < 0 || c1 <= c0 || c0 % 256 || c1 % 256 || c1 > ld || (size_t)(c1 / 256) * bb > row_bytes)
        return lb_err_set(err, LB_ERR_ARG, "encode (cuda): bad arguments (type %d, columns %lld..%lld of %lld)", (int)t,
                          (long long)c0, (long long)c1, (long long)ld);
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    const int64_t w = c1 - c0, nb = w / 256;
    const size_t xb = (size_t)rows * (size_t)w * sizeof(float), yb = (size_t)rows * (size_t)nb * bb;
    lb_status s = grow((void **)&g->enc_x, &g->enc_x_bytes, xb, "the encoders' input", err);
    if (s == LB_OK) s = grow((void **)&g->enc_y, &g->enc_y_bytes, yb, "the encoders' blocks", err);
    if (s == LB_OK && imp) s = grow((void **)&g->enc_w, &g->enc_w_bytes, (size_t)w * sizeof(float), "the encoders' weights", err);
    if (s != LB_OK) return s;
    CK(cudaMemcpy2DAsync(g->enc_x, (size_t)w * sizeof(float), S + c0, (size_t)ld * sizeof(float), (size_t)w * sizeof(float),
                         (size_t)rows, cudaMemcpyHostToDevice, g->st),
       "uploading the encoders' input");
    if (imp) CK(cudaMemcpyAsync(g->enc_w, imp, (size_t)w * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading importance weights");
    CK(cu_kq_encode(t, g->enc_x, w, rows, nb, imp ? g->enc_w : NULL, g->enc_y, (int64_t)(nb * bb), g->st), "in the block encoders");
    CK(cudaMemcpy2DAsync(out + (size_t)(c0 / 256) * bb, row_bytes, g->enc_y, (size_t)nb * bb, (size_t)nb * bb, (size_t)rows,
                         cudaMemcpyDeviceToHost, g->st),
       "reading the encoded blocks");
    CK(cudaStreamSynchronize(g->st), "in the block encoders");
    note_peak(g);
    return LB_OK;
}

/* ---------------------------------------------------------------- a whole pass ----------------------------- */

/* W (rows, n; host) into dst on the device: copied from Wd when a pass of this matrix kept it (later = a pass after the
 * first, or the descent), else uploaded, and kept in Wd by a first pass when the memory is there */
static lb_status load_w(lb_cuda_gptq *g, const float *W, int64_t rows, int64_t n, bool later, float *dst, lb_error *err) {
    const size_t bytes = (size_t)rows * (size_t)n * sizeof(float);
    if (later && g->wd_src == W && g->wd_rows == rows && g->wd_n == n) {
        CK(cudaMemcpyAsync(dst, g->Wd, bytes, cudaMemcpyDeviceToDevice, g->st), "copying GPTQ's weights");
        return LB_OK;
    }
    CK(cudaMemcpyAsync(dst, W, bytes, cudaMemcpyHostToDevice, g->st), "uploading GPTQ's weights");
    g->wd_src = NULL;
    lb_error e = {0};
    if (!later && grow((void **)&g->Wd, &g->Wd_bytes, bytes, "a copy of GPTQ's weights", &e) == LB_OK) {
        CK(cudaMemcpyAsync(g->Wd, dst, bytes, cudaMemcpyDeviceToDevice, g->st), "keeping GPTQ's weights");
        g->wd_src = W, g->wd_rows = rows, g->wd_n = n;
    }
    return LB_OK;
}

extern "C" lb_status lb_cuda_gptq_pass(lb_cuda_gptq *g, lb_type t, const float *W, int64_t rows, int64_t n, int64_t batch,
                                      const float *imp, bool static_scales, uint8_t *out, size_t row_bytes, double *loss,
                                      lb_error *err) {
    const size_t bb = cu_kq_block_bytes(t);
    if (!bb || batch != 256 || n % 256 || rows <= 0 || !fits(g, rows, n) || (size_t)(n / 256) * bb != row_bytes)
        return lb_err_set(err, LB_ERR_ARG, "gptq pass (cuda): type %d, %lld x %lld, batch %lld beyond what it takes", (int)t,
                          (long long)rows, (long long)n, (long long)batch);
    if (static_scales && (!g->P || g->P_bytes < (size_t)rows * (size_t)n * sizeof(float)))
        return lb_err_set(err, LB_ERR_ARG, "gptq pass (cuda): static scales without a previous pass");
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    const size_t rn = (size_t)rows * (size_t)n;
    lb_status s = grow((void **)&g->P, &g->P_bytes, rn * sizeof(float), "GPTQ's values before rounding", err);
    if (s == LB_OK) s = grow((void **)&g->qout, &g->qout_bytes, (size_t)rows * row_bytes, "GPTQ's blocks", err);
    if (s == LB_OK) s = grow((void **)&g->ploss, &g->ploss_bytes, (size_t)rows * sizeof(double), "GPTQ's losses", err);
    if (s == LB_OK && imp) s = grow((void **)&g->pimp, &g->pimp_bytes, (size_t)n * sizeof(float), "importance weights", err);
    if (s != LB_OK) return s;
    const float *dimp = imp ? g->pimp : NULL;
    s = load_w(g, W, rows, n, static_scales, g->T, err);
    if (s != LB_OK) return s;
    if (imp) CK(cudaMemcpyAsync(g->pimp, imp, (size_t)n * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading importance weights");
    CK(cudaMemsetAsync(g->ploss, 0, (size_t)rows * sizeof(double), g->st), "clearing GPTQ's losses");
    if (static_scales) CK(cu_kq_encode(t, g->P, n, rows, n / 256, dimp, g->qout, (int64_t)row_bytes, g->st), "in the block encoders");
    for (int64_t i1 = 0; i1 < n; i1 += batch) {
        const int64_t i2 = i1 + batch, i3 = i2 + batch < n ? i2 + batch : n;
        if (!static_scales)
            CK(cu_kq_encode(t, g->T + i1, n, rows, 1, dimp ? dimp + i1 : NULL, g->qout + (size_t)(i1 / 256) * bb, (int64_t)row_bytes,
                            g->st),
               "in the block encoders");
        CK(cu_gptq_columns(t, g->qout, row_bytes, g->T, g->U, rows, n, i1, i2, g->E, batch, g->P, g->ploss, g->st), "in GPTQ's columns");
        /* the delayed update as lb_cuda_gptq_update runs it (the next batch's columns, then the rest): the same GEMMs */
        s = update_cols(g, rows, n, batch, i1, batch, i2, i3, err);
        if (s == LB_OK) s = update_cols(g, rows, n, batch, i1, batch, i3, n, err);
        if (s != LB_OK) return s;
    }
    CK(cudaMemcpyAsync(out, g->qout, (size_t)rows * row_bytes, cudaMemcpyDeviceToHost, g->st), "reading GPTQ's blocks");
    CK(cudaMemcpyAsync(loss, g->ploss, (size_t)rows * sizeof(double), cudaMemcpyDeviceToHost, g->st), "reading GPTQ's losses");
    CK(cudaStreamSynchronize(g->st), "in GPTQ's pass");
    note_peak(g);
    return LB_OK;
}

/* ---------------------------------------------------------------- the coordinate descent ------------------ */

__global__ void k_sub(float *d, const float *a, const float *b, size_t n) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) d[i] = a[i] - b[i];
}

/* G = Hf (W - Q) for all rows: lb_cuda_gptq_h_times_e's difference and GEMM, on device copies */
/* hi[k] = x[k] rounded to TF32 (ties away from zero), lo[k] = x[k] - hi[k] exactly (calib.cu's split); in place for hi == x */
__global__ void k_split_tf32(float *hi, float *lo, const float *x, int64_t n) {
    const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    const float v = x[k], h = __uint_as_float((__float_as_uint(v) + 0x1000u) & ~0x1fffu);
    hi[k] = h;
    lo[k] = v - h;
}

/* The descent's products in the TF32 split (the default; LB_GPU_CD_PREC=f32: plain F32 GEMMs): H and E each written as hi + lo
 * (hi its TF32 rounding), G = Hhi Ehi + Hhi Elo + Hlo Ehi on tensor cores with F32 sums: each product within about
 * 2^-21 of its exact value instead of F32's 2^-24. H's halves in A's memory (made once per descent: hsplit), E's low
 * half in B's; false when they do not fit (then the plain F32 product). */
static bool cd_split_on(void) {
    const char *v = getenv("LB_GPU_CD_PREC"); /* read at each descent: a test switches it */
    return !v || strcmp(v, "f32");
}
static bool cd_split_fits(const lb_cuda_gptq *g, int64_t rows, int64_t n) {
    const size_t room = (size_t)g->cap_n * (size_t)g->cap_n * 2; /* floats in A, and in B */
    return (size_t)n * (size_t)n * 2 <= room && (size_t)rows * (size_t)n <= room;
}

static lb_status cd_products(lb_cuda_gptq *g, const float *dW, const float *dQ, int64_t rows, int64_t n, bool split, lb_error *err) {
    const size_t rn = (size_t)rows * (size_t)n, nn = (size_t)n * (size_t)n;
    const float one = 1.0f, zero = 0.0f;
    k_sub<<<(unsigned)((rn + 255) / 256), 256, 0, g->st>>>(g->E, dW, dQ, rn);
    CK(cudaGetLastError(), "forming the errors");
    if (!split) {
        CKB(cu_blas.gemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)rows, (int)n, &one, g->Hf, CUDA_R_32F, (int)n, g->E, CUDA_R_32F,
                         (int)n, &zero, g->G, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "in H e");
        return LB_OK;
    }
    const float *hh = (const float *)g->A, *hl = (const float *)g->A + nn;
    float *el = (float *)g->B;
    k_split_tf32<<<(unsigned)((rn + 255) / 256), 256, 0, g->st>>>(g->E, el, g->E, rn);
    CK(cudaGetLastError(), "splitting the errors");
    const float *a[3] = {hh, hh, hl}, *b[3] = {g->E, el, g->E};
    for (int k = 0; k < 3; k++)
        CKB(cu_blas.gemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)rows, (int)n, &one, a[k], CUDA_R_32F, (int)n, b[k], CUDA_R_32F,
                         (int)n, k ? &one : &zero, g->G, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
            "in H e");
    return LB_OK;
}

extern "C" lb_status lb_cuda_gptq_cd(lb_cuda_gptq *g, lb_type t, const float *W, float *Q, uint8_t *out, size_t row_bytes, float *G,
                                    int64_t rows, int64_t n, int sweeps, bool scales, const float *Ht, lb_error *err) {
    const size_t bb = cu_kq_block_bytes(t);
    if (!bb || n % 256 || rows <= 0 || !fits(g, rows, n) || !g->cap_cd || (size_t)(n / 256) * bb != row_bytes ||
        (scales && !Ht))
        return lb_err_set(err, LB_ERR_ARG, "coordinate descent (cuda): type %d, %lld x %lld beyond what it takes", (int)t,
                          (long long)rows, (long long)n);
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    const int run = t == LB_TYPE_Q4_K || t == LB_TYPE_Q5_K ? 32 : 16; /* lb_grid_run of the k-quants */
    const size_t rn = (size_t)rows * (size_t)n;
    lb_status s = grow((void **)&g->P, &g->P_bytes, rn * sizeof(float), "the dequantized rows", err);
    if (s == LB_OK) s = grow((void **)&g->qout, &g->qout_bytes, (size_t)rows * row_bytes, "GPTQ's blocks", err);
    if (s == LB_OK) s = grow((void **)&g->act, &g->act_bytes, (size_t)rows, "the active rows", err);
    if (s == LB_OK && scales) s = grow((void **)&g->Ht, &g->Ht_bytes, (size_t)n * run * sizeof(float), "H's diagonal blocks", err);
    if (s != LB_OK) return s;
    bool *act = (bool *)malloc((size_t)rows);
    if (!act) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    float *dW = g->T, *dQ = g->P;
    lb_cd_rows a = {t, 256, run, bb, row_bytes, rows, n, scales, g->Hf, scales ? g->Ht : NULL, g->qout, dQ, g->G, g->act};
    s = load_w(g, W, rows, n, true, dW, err);
    if (s != LB_OK) return free(act), s;
    cudaError_t e = cudaMemcpyAsync(dQ, Q, rn * sizeof(float), cudaMemcpyHostToDevice, g->st);
    if (e == cudaSuccess) e = cudaMemcpyAsync(g->qout, out, (size_t)rows * row_bytes, cudaMemcpyHostToDevice, g->st);
    if (e == cudaSuccess && scales) e = cudaMemcpyAsync(g->Ht, Ht, (size_t)n * run * sizeof(float), cudaMemcpyHostToDevice, g->st);
    if (e == cudaSuccess) e = cudaMemsetAsync(g->act, 1, (size_t)rows, g->st);
    const bool split = cd_split_on() && cd_split_fits(g, rows, n);
    if (split && e == cudaSuccess) { /* H's halves for every sweep's products (A and its H are done with by now) */
        const size_t nn = (size_t)n * (size_t)n;
        k_split_tf32<<<(unsigned)((nn + 255) / 256), 256, 0, g->st>>>((float *)g->A, (float *)g->A + nn, g->Hf, nn);
        e = cudaGetLastError();
    }
    for (int sw = 0; s == LB_OK && e == cudaSuccess && sw < sweeps; sw++) {
        e = cudaMemcpyAsync(act, g->act, (size_t)rows, cudaMemcpyDeviceToHost, g->st);
        if (e == cudaSuccess) e = cudaStreamSynchronize(g->st);
        bool any = false;
        for (int64_t r = 0; e == cudaSuccess && r < rows; r++) any |= act[r];
        if (e != cudaSuccess || !any) break;
        s = cd_products(g, dW, dQ, rows, n, split, err);
        if (s == LB_OK) e = cu_gptq_cd(&a, g->st);
    }
    free(act);
    if (e != cudaSuccess) return fail(err, e, "in the coordinate descent");
    if (s == LB_OK) s = cd_products(g, dW, dQ, rows, n, split, err);
    if (s != LB_OK) return s;
    CK(cudaMemcpyAsync(Q, dQ, rn * sizeof(float), cudaMemcpyDeviceToHost, g->st), "reading the dequantized rows");
    CK(cudaMemcpyAsync(G, g->G, rn * sizeof(float), cudaMemcpyDeviceToHost, g->st), "reading H e");
    CK(cudaMemcpyAsync(out, g->qout, (size_t)rows * row_bytes, cudaMemcpyDeviceToHost, g->st), "reading GPTQ's blocks");
    CK(cudaStreamSynchronize(g->st), "in the coordinate descent");
    note_peak(g);
    return LB_OK;
}

/* ---------------------------------------------------------------- the reference target ---------------------- */

__global__ void k_add_scaled(float *w, const float *m, float lam, size_t n) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) w[i] = m[i] + lam * w[i];
}

/* The factor of H + lam I into g->U (F32), H kept in g->A: inv_upper's steps with the damping added on the
 * device, so that a retry needs no new upload. */
extern "C" lb_status lb_cuda_gptq_ref_factor(lb_cuda_gptq *g, const double *H, int64_t n, double lam, bool upload, bool *ok,
                                            lb_error *err) {
    *ok = false;
    if (n > g->cap_n) return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): %lld columns beyond the reservation", (long long)n);
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    if (upload) CK(cudaMemcpyAsync(g->A, H, (size_t)n * (size_t)n * sizeof(double), cudaMemcpyHostToDevice, g->st), "uploading H");
    g->kept_n = 0;
    lb_status s = factor(g, n, lam, g->U, ok, err);
    if (s == LB_OK && *ok) note_peak(g);
    return s;
}

/* Dt (row-major n x n) = (D C)^T as lb_gptq_ref_dct makes it: Dt[i][r] = (float)(C[r][i] / s[r]) (s NULL: 1), the
 * division in double; 32 x 32 tiles through shared memory, blocks of 32 x 8 threads */
__global__ void k_dc_t(float *Dt, const double *C, const float *s, int64_t n) {
    __shared__ float tile[32][33];
    const int64_t r0 = (int64_t)blockIdx.y * 32, i0 = (int64_t)blockIdx.x * 32;
    for (int k = 0; k < 32; k += 8) {
        const int64_t r = r0 + threadIdx.y + k, i = i0 + threadIdx.x;
        if (r < n && i < n) tile[threadIdx.y + k][threadIdx.x] = (float)(C[r * n + i] / (s ? (double)s[r] : 1.0));
    }
    __syncthreads();
    for (int k = 0; k < 32; k += 8) {
        const int64_t i = i0 + threadIdx.y + k, r = r0 + threadIdx.x;
        if (r < n && i < n) Dt[i * n + r] = tile[threadIdx.x][threadIdx.y + k];
    }
}

/* W = (W DC + lam W) U^T U with ref_factor's U: the three products of lb_gptq_ref_target in T and E */
extern "C" lb_status lb_cuda_gptq_ref_apply(lb_cuda_gptq *g, const double *C, const float *s, int64_t n, double lam, float *W, int64_t rows,
                                           bool upload, lb_error *err) {
    if (rows <= 0 || !fits(g, rows, n))
        return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): reference target %lld x %lld beyond the reservation", (long long)rows,
                          (long long)n);
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    const size_t nn = (size_t)n * (size_t)n, rn = (size_t)rows * (size_t)n;
    if (upload) { /* C through B (free once ref_factor's factor is in U), s through rt_s */
        lb_status st = grow((void **)&g->rt_dc, &g->rt_dc_bytes, nn * sizeof(float), "the reference target's (D C)^T", err);
        if (st == LB_OK && s) st = grow((void **)&g->rt_s, &g->rt_s_bytes, (size_t)n * sizeof(float), "the input scales", err);
        if (st != LB_OK) return st;
        CK(cudaMemcpyAsync(g->B, C, nn * sizeof(double), cudaMemcpyHostToDevice, g->st), "uploading C");
        if (s) CK(cudaMemcpyAsync(g->rt_s, s, (size_t)n * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading the input scales");
        const unsigned tn = (unsigned)((n + 31) / 32);
        k_dc_t<<<dim3(tn, tn), dim3(32, 8), 0, g->st>>>(g->rt_dc, g->B, s ? g->rt_s : NULL, n);
        CK(cudaGetLastError(), "forming (D C)^T");
    } else if (!g->rt_dc || g->rt_dc_bytes < nn * sizeof(float)) {
        return lb_err_set(err, LB_ERR_ARG, "gptq (cuda): reference target without (D C)^T");
    }
    const float one = 1.0f, zero = 0.0f;
    CK(cudaMemcpyAsync(g->T, W, rn * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading a reference target");
    /* E = W DC (out = x w^T with w = (D C)^T, as lb_cuda_gptq_matmul), then T = E + lam T */
    CKB(cu_blas.gemm(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)rows, (int)n, &one, g->rt_dc, CUDA_R_32F, (int)n, g->T, CUDA_R_32F,
                     (int)n, &zero, g->E, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "in the reference target");
    k_add_scaled<<<(unsigned)((rn + 255) / 256), 256, 0, g->st>>>(g->T, g->E, (float)lam, rn);
    CK(cudaGetLastError(), "in the reference target");
    /* E = T U^T, then T = E U (column-major: T^T = (U as stored, i.e. U^T) E^T) */
    CKB(cu_blas.gemm(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)rows, (int)n, &one, g->U, CUDA_R_32F, (int)n, g->T, CUDA_R_32F,
                     (int)n, &zero, g->E, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "in the reference target");
    CKB(cu_blas.gemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)rows, (int)n, &one, g->U, CUDA_R_32F, (int)n, g->E, CUDA_R_32F,
                     (int)n, &zero, g->T, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "in the reference target");
    CK(cudaMemcpyAsync(W, g->T, rn * sizeof(float), cudaMemcpyDeviceToHost, g->st), "reading a reference target");
    CK(cudaStreamSynchronize(g->st), "in the reference target");
    note_peak(g);
    return LB_OK;
}

/* ---------------------------------------------------------------- AWQ ----------------------------------------- */

/* a device buffer for one call (AWQ's are made per call: its searches run once per layer group) */
static lb_status dbuf(void **p, size_t bytes, const char *what, lb_error *err) {
    size_t have = 0;
    *p = NULL;
    return grow(p, &have, bytes, what, err);
}

extern "C" lb_status lb_cuda_awq_clip(lb_cuda_gptq *g, float *w, int64_t rows, int64_t d, const double *H, lb_type t, lb_encoder enc,
                                     const float *imatrix, uint8_t *choice, lb_error *err) {
    const size_t bb = cu_kq_block_bytes(t);
    if (!bb || d % 256 || rows <= 0) return lb_err_set(err, LB_ERR_ARG, "AWQ clip (cuda): type %d, %lld columns", (int)t, (long long)d);
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    const size_t rd = (size_t)rows * (size_t)d, nb = rd / 256;
    float *dw = NULL, *dout = NULL, *dxc = NULL, *dim = NULL;
    double *dH = NULL, *dberr = NULL;
    uint8_t *dq = NULL, *dch = NULL;
    lb_status s = dbuf((void **)&dw, rd * sizeof(float), "AWQ's weights", err);
    if (s == LB_OK) s = dbuf((void **)&dout, rd * sizeof(float), "AWQ's clamped weights", err);
    if (s == LB_OK) s = dbuf((void **)&dxc, rd * sizeof(float), "AWQ's clamps", err);
    if (s == LB_OK) s = dbuf((void **)&dH, (size_t)d * (size_t)d * sizeof(double), "AWQ's H", err);
    if (s == LB_OK) s = dbuf((void **)&dberr, nb * sizeof(double), "AWQ's block errors", err);
    if (s == LB_OK) s = dbuf((void **)&dq, nb * bb, "AWQ's blocks", err);
    if (s == LB_OK && choice) s = dbuf((void **)&dch, nb, "AWQ's choices", err);
    if (s == LB_OK && imatrix) s = dbuf((void **)&dim, (size_t)d * sizeof(float), "importance weights", err);
    cudaError_t e = cudaSuccess;
    if (s == LB_OK) e = cudaMemcpyAsync(dw, w, rd * sizeof(float), cudaMemcpyHostToDevice, g->st);
    if (s == LB_OK && e == cudaSuccess) e = cudaMemcpyAsync(dH, H, (size_t)d * (size_t)d * sizeof(double), cudaMemcpyHostToDevice, g->st);
    if (s == LB_OK && e == cudaSuccess && imatrix) e = cudaMemcpyAsync(dim, imatrix, (size_t)d * sizeof(float), cudaMemcpyHostToDevice, g->st);
    if (s == LB_OK && e == cudaSuccess) e = cu_awq_clip(t, enc == LB_ENCODER_REF, dw, rows, d, dH, dim, dout, dch, dxc, dq, dberr, g->st);
    if (s == LB_OK && e == cudaSuccess) e = cudaMemcpyAsync(w, dout, rd * sizeof(float), cudaMemcpyDeviceToHost, g->st);
    if (s == LB_OK && e == cudaSuccess && choice) e = cudaMemcpyAsync(choice, dch, nb, cudaMemcpyDeviceToHost, g->st);
    if (s == LB_OK && e == cudaSuccess) e = cudaStreamSynchronize(g->st);
    if (s == LB_OK && e != cudaSuccess) s = fail(err, e, "in AWQ's clip search");
    if (s == LB_OK) note_peak(g);
    void *bufs[] = {dw, dout, dxc, dim, dH, dberr, dq, dch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    return s;
}

/* partial[b] = sum over block b's chunk of a[i] b[i] in double, each block's chunk in a fixed order */
#define DOT_BLOCKS 1024
__global__ void k_dot_partials(const float *a, const float *b, size_t n, double *partial) {
    __shared__ double sh[256];
    const size_t chunk = (n + DOT_BLOCKS - 1) / DOT_BLOCKS, lo = blockIdx.x * chunk, hi = lo + chunk < n ? lo + chunk : n;
    double acc = 0;
    for (size_t i = lo + threadIdx.x; i < hi; i += 256) acc += (double)a[i] * (double)b[i];
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int o = 128; o > 0; o /= 2) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

extern "C" lb_status lb_cuda_awq_search(lb_cuda_gptq *g, int n_mat, const float *const *w, const int64_t *rows, const lb_type *types,
                                       int64_t d, const double *H, const float *cands, int n_cand, int *best, double *best_loss,
                                       lb_error *err) {
    if (n_mat < 1 || n_mat > 3 || d % 256) return lb_err_set(err, LB_ERR_ARG, "AWQ search (cuda): %d matrices, %lld columns", n_mat, (long long)d);
    int64_t rmax = 0;
    for (int k = 0; k < n_mat; k++) {
        if (!cu_kq_block_bytes(types[k]) || rows[k] <= 0) return lb_err_set(err, LB_ERR_ARG, "AWQ search (cuda): type %d", (int)types[k]);
        rmax = rows[k] > rmax ? rows[k] : rmax;
    }
    if (use(g, err) != LB_OK) return LB_ERR_DEVICE;
    const size_t dd = (size_t)d * (size_t)d;
    float *hf = (float *)malloc(dd * sizeof *hf);
    double *part = (double *)malloc(DOT_BLOCKS * sizeof *part);
    float *dw[3] = {NULL, NULL, NULL}, *dhf = NULL, *de = NULL, *deh = NULL, *dc = NULL;
    double *dpart = NULL;
    lb_status s = hf && part ? LB_OK : lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    for (int k = 0; s == LB_OK && k < n_mat; k++) s = dbuf((void **)&dw[k], (size_t)rows[k] * (size_t)d * sizeof(float), "AWQ's weights", err);
    if (s == LB_OK) s = dbuf((void **)&dhf, dd * sizeof(float), "AWQ's H", err);
    if (s == LB_OK) s = dbuf((void **)&de, (size_t)rmax * (size_t)d * sizeof(float), "AWQ's errors", err);
    if (s == LB_OK) s = dbuf((void **)&deh, (size_t)rmax * (size_t)d * sizeof(float), "AWQ's products", err);
    if (s == LB_OK) s = dbuf((void **)&dc, (size_t)d * sizeof(float), "AWQ's scales", err);
    if (s == LB_OK) s = dbuf((void **)&dpart, DOT_BLOCKS * sizeof(double), "AWQ's sums", err);
    cudaError_t e = cudaSuccess;
    if (s == LB_OK) {
        for (size_t i = 0; i < dd; i++) hf[i] = (float)H[i];
        e = cudaMemcpyAsync(dhf, hf, dd * sizeof(float), cudaMemcpyHostToDevice, g->st);
        for (int k = 0; e == cudaSuccess && k < n_mat; k++)
            e = cudaMemcpyAsync(dw[k], w[k], (size_t)rows[k] * (size_t)d * sizeof(float), cudaMemcpyHostToDevice, g->st);
    }
    *best_loss = INFINITY;
    *best = -1;
    const float one = 1.0f, zero = 0.0f;
    for (int a = 0; s == LB_OK && e == cudaSuccess && a < n_cand; a++) {
        e = cudaMemcpyAsync(dc, cands + (size_t)a * (size_t)d, (size_t)d * sizeof(float), cudaMemcpyHostToDevice, g->st);
        double loss = 0;
        for (int k = 0; e == cudaSuccess && s == LB_OK && k < n_mat; k++) {
            const size_t rn = (size_t)rows[k] * (size_t)d;
            e = cu_awq_cand_error(types[k], dw[k], dc, rows[k], d, de, g->st);
            if (e != cudaSuccess) break;
            /* eh = E Hf (out = x w^T with w = Hf, symmetric), then sum eh e in double */
            if (cu_blas.gemm(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)d, (int)rows[k], (int)d, &one, dhf, CUDA_R_32F, (int)d, de, CUDA_R_32F,
                             (int)d, &zero, deh, CUDA_R_32F, (int)d, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
                s = lb_err_set(err, LB_ERR_DEVICE, "cuBLAS failed in AWQ's search");
                break;
            }
            k_dot_partials<<<DOT_BLOCKS, 256, 0, g->st>>>(deh, de, rn, dpart);
            e = cudaMemcpyAsync(part, dpart, DOT_BLOCKS * sizeof(double), cudaMemcpyDeviceToHost, g->st);
            if (e == cudaSuccess) e = cudaStreamSynchronize(g->st);
            for (int b = 0; e == cudaSuccess && b < DOT_BLOCKS; b++) loss += part[b];
        }
        if (s == LB_OK && e == cudaSuccess && loss < *best_loss) {
            *best_loss = loss;
            *best = a;
        }
    }
    if (s == LB_OK && e != cudaSuccess) s = fail(err, e, "in AWQ's search");
    if (s == LB_OK) note_peak(g);
    for (int k = 0; k < 3; k++) cudaFree(dw[k]);
    cudaFree(dhf), cudaFree(de), cudaFree(deh), cudaFree(dc), cudaFree(dpart);
    free(hf), free(part);
    return s;
}
