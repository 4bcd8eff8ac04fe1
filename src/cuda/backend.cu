/*
 * backend.cu - the CUDA executor of the forward pass (cuda.h): device checks, weight upload, cuBLAS
 * loaded at first use, and the layer driver, which mirrors layer_forward in model/forward.c step by step.
 *
 * The CUDA runtime is linked statically and touches the driver only when a context is created, so a CUDA
 * build runs every CPU path on a machine with no GPU or driver. cuBLAS is opened with dlopen the first
 * time a GPU context needs it (for prompts of more than LB_CUDA_MV_MAX tokens), for the same reason.
 */
#include "blas.cuh"
#include "kernels.cuh"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../model/model.h"
#include "cuda.h"
}

/* Elements of the F16 scratch a prompt's weight tile is dequantized into (64 Mi = 128 MiB). */
#define WSCRATCH_ELEMS ((size_t)64 << 20)

/* ---------------------------------------------------------------- errors ------------------------------------ */

static lb_status cuda_fail(lb_error *err, cudaError_t e, const char *what) {
    if (e == cudaErrorMemoryAllocation)
        return lb_err_set(err, LB_ERR_DEVICE, "CUDA: out of GPU memory %s", what);
    return lb_err_set(err, LB_ERR_DEVICE, "CUDA error %s: %s", what, cudaGetErrorString(e));
}
#define CK(call, what)                                                                                              \
    do {                                                                                                            \
        cudaError_t e_ = (call);                                                                                    \
        if (e_ != cudaSuccess) return cuda_fail(err, e_, what);                                                     \
    } while (0)

/* Select device `dev`, with the reason when there is none. */
static lb_status use_device(int dev, lb_error *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (e == cudaErrorInsufficientDriver) /* also what the runtime says when there is no driver at all */
            return lb_err_set(err, LB_ERR_DEVICE, "no CUDA driver/device: no NVIDIA driver new enough for CUDA 13 (%s)",
                              cudaGetErrorString(e));
        return lb_err_set(err, LB_ERR_DEVICE, "no CUDA driver/device: %s", cudaGetErrorString(e));
    }
    if (n == 0) return lb_err_set(err, LB_ERR_DEVICE, "no CUDA driver/device: no CUDA device found");
    if (dev < 0 || dev >= n)
        return lb_err_set(err, LB_ERR_DEVICE, "CUDA device %d does not exist (this machine has %d: cuda:0..cuda:%d)", dev, n,
                          n - 1);
    CK(cudaSetDevice(dev), "selecting the device");
    return LB_OK;
}

/* ---------------------------------------------------------------- cuBLAS, loaded at first use --------------- */

cu_blas_api cu_blas;
static struct {
    int tried;
    char why[256];
} blas_state;

lb_status cu_blas_load(lb_error *err) {
    if (!blas_state.tried) {
        blas_state.tried = 1;
        const char *names[] = {"libcublas.so.13", "libcublas.so", "/usr/local/cuda/lib64/libcublas.so.13"};
        void *h = NULL;
        for (size_t i = 0; !h && i < sizeof names / sizeof names[0]; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            snprintf(blas_state.why, sizeof blas_state.why, "cannot load cuBLAS (libcublas.so.13): %s", dlerror());
        } else {
            cu_blas.create = (cu_blas_create_fn)dlsym(h, "cublasCreate_v2");
            cu_blas.destroy = (cu_blas_destroy_fn)dlsym(h, "cublasDestroy_v2");
            cu_blas.gemm = (cu_blas_gemm_fn)dlsym(h, "cublasGemmEx");
            cu_blas.set_stream = (cu_blas_stream_fn)dlsym(h, "cublasSetStream_v2");
            if (!cu_blas.create || !cu_blas.destroy || !cu_blas.gemm || !cu_blas.set_stream)
                snprintf(blas_state.why, sizeof blas_state.why, "libcublas lacks cublasGemmEx");
        }
    }
    if (blas_state.why[0]) return lb_err_set(err, LB_ERR_DEVICE, "%s", blas_state.why);
    return LB_OK;
}

/* ---------------------------------------------------------------- matrix products --------------------------- */

/* What a weight product needs besides its operands: a cuBLAS handle and F16 scratch, made at first use. */
typedef struct mm_ws {
    cublasHandle_t blas;
    __half *w16;   /* WSCRATCH_ELEMS */
    __half *x16;   /* x16_elems */
    size_t x16_elems;
    /* what x16 holds: the activations x (T, K) prepared for a path and a kind of weight (act_kind), so that
     * the next product of the same input (q, k, v; gate, up) need not prepare them again */
    const float *act_x;
    int64_t act_T, act_K;
    int act_path, act_kind;
    bool exact; /* every product through the fused kernels, LB_CUDA_MV_MAX tokens at a time (an exact context) */
} mm_ws;

/* how a weight type takes its activations: 8-bit per block, F16 after 8-bit rounding per block, or plain F16 */
static int act_kind(lb_type t, int path) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    if (path == 0 && cu_matvec_q8(t)) return 1000 + (int)tt->block_elems;
    return tt->is_quant ? 2000 + (int)tt->block_elems : 0;
}

/* x16 of at least x_elems; with blas, also the cuBLAS handle and the weight scratch */
static lb_status mm_ws_ready(mm_ws *ws, size_t x_elems, bool blas_too, lb_error *err) {
    if (blas_too && !ws->blas) {
        lb_status s = cu_blas_load(err);
        if (s != LB_OK) return s;
        if (cu_blas.create(&ws->blas) != CUBLAS_STATUS_SUCCESS) return lb_err_set(err, LB_ERR_DEVICE, "cuBLAS: cannot create a handle");
        cu_blas.set_stream(ws->blas, lb_cu_stream);
        CK(cudaMalloc((void **)&ws->w16, WSCRATCH_ELEMS * sizeof(__half)), "for the weight scratch");
    }
    if (ws->x16_elems < x_elems) {
        cudaFree(ws->x16);
        ws->x16 = NULL;
        ws->x16_elems = 0;
        ws->act_x = NULL;
        CK(cudaMalloc((void **)&ws->x16, x_elems * sizeof(__half)), "for the activation scratch");
        ws->x16_elems = x_elems;
    }
    return LB_OK;
}

/* whether mm takes T tokens through the fused kernels, where it can add the product into its output */
static bool mm_adds(const mm_ws *ws, int64_t T) { return T <= LB_CUDA_MV_MAX && !ws->exact; }

static void mm_ws_free(mm_ws *ws) {
    if (ws->blas) cu_blas.destroy(ws->blas);
    cudaFree(ws->w16);
    cudaFree(ws->x16);
    memset(ws, 0, sizeof *ws);
}

/* out (T, ldo) = x (T, K) . W^T: fused kernels for few tokens, else F16 tiles of W through cuBLAS (an exact
 * workspace: the fused kernels on slices of LB_CUDA_MV_MAX tokens, whatever T). same_x: x has not changed since the
 * previous product, so activations it left prepared for the same kind of weight are used again. add: out += x . W^T,
 * only where the fused kernels take the product (T <= LB_CUDA_MV_MAX, not exact, force < 0: callers check mm_adds). */
static lb_status mm(mm_ws *ws, const float *x, int64_t T, const dweight *w, float *out, int64_t ldo, int force, bool same_x,
                    lb_error *err, bool add = false) {
    const int64_t K = w->cols, N = w->rows;
    const int path = force >= 0 ? force : T <= LB_CUDA_MV_MAX || ws->exact ? 0 : 1;
    lb_status s = mm_ws_ready(ws, (size_t)(T * K), path == 1, err);
    if (s != LB_OK) return s;
    const bool exact = ws->exact && force < 0;
    if (exact || (path == 0 && T > LB_CUDA_MV_MAX)) {
        /* slices of LB_CUDA_MV_MAX tokens: an exact context's products (the CPU's arithmetic, exact.cu), or each slice
         * rounded as the whole would be (per row), then multiplied */
        for (int64_t t0 = 0; t0 < T; t0 += LB_CUDA_MV_MAX) {
            const int n = (int)(T - t0 < LB_CUDA_MV_MAX ? T - t0 : LB_CUDA_MV_MAX);
            if (exact) {
                cu_mm_exact(w, x + t0 * K, n, out + t0 * ldo, ldo, ws->x16);
                continue;
            }
            cu_act_prepare(w->type, x + t0 * K, n, K, ws->x16);
            cu_matvec(w, ws->x16, n, out + t0 * ldo, ldo);
        }
        ws->act_x = NULL; /* x16 holds the last slice only */
        CK(cudaGetLastError(), "in a weight product");
        return LB_OK;
    }
    const int kind = act_kind(w->type, path);
    const bool ready = same_x && ws->act_x == x && ws->act_T == T && ws->act_K == K && ws->act_path == path &&
                       ws->act_kind == kind;
    if (!ready) {
        if (path == 0) cu_act_prepare(w->type, x, (int)T, K, ws->x16);
        else cu_act_f16(w->type, x, (int)T, K, ws->x16);
        ws->act_x = x;
        ws->act_T = T;
        ws->act_K = K;
        ws->act_path = path;
        ws->act_kind = kind;
    }
    if (path == 0) {
        cu_matvec(w, ws->x16, (int)T, out, ldo, add);
        CK(cudaGetLastError(), "in a weight product");
        return LB_OK;
    }
    const int64_t tile = (int64_t)(WSCRATCH_ELEMS / (size_t)K) < N ? (int64_t)(WSCRATCH_ELEMS / (size_t)K) : N;
    const float one = 1.0f, zero = 0.0f;
    for (int64_t r0 = 0; r0 < N; r0 += tile) {
        const int64_t R = N - r0 < tile ? N - r0 : tile;
        const __half *wt = ws->w16;
        if (w->type == LB_TYPE_F16) wt = (const __half *)(w->data + (size_t)r0 * w->row_bytes); /* used in place */
        else cu_dequant_f16(w, r0, R, ws->w16);
        cublasStatus_t bs = cu_blas.gemm(ws->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)R, (int)T, (int)K, &one, wt, CUDA_R_16F,
                                      (int)K, ws->x16, CUDA_R_16F, (int)K, &zero, out + r0, CUDA_R_32F, (int)ldo,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (bs != CUBLAS_STATUS_SUCCESS) return lb_err_set(err, LB_ERR_DEVICE, "cuBLAS GemmEx failed (status %d)", (int)bs);
    }
    CK(cudaGetLastError(), "in a weight product");
    return LB_OK;
}

/* ---------------------------------------------------------------- the context ------------------------------- */

typedef struct dlayer {
    float *attn_norm, *ffn_norm, *q_norm, *k_norm;
    dweight wq, wk, wv, wo, w_gate, w_up, w_down;
    float *bq, *bk, *bv, *bo, *b_gate, *b_up, *b_down;
    /* q, k, v (gate, up) stored one after another when of one type: the same bytes as one matrix, for one-token
     * products in one launch (unless LB_CUDA_FUSE=0); data NULL when the types differ or in a layerwise slot; wqk: q and
     * k so where they share a type and v has another (Q4_K_M's q6_K v in some layers) */
    dweight wqkv, wgu, wqk;
} dlayer;

#define MAX_ALLOCS 4096

/* One uploaded layer of a layerwise context: buffers reused while large enough. */
#define SLOT_BUFS 18 /* 7 matrices, 11 vectors */
#define DEC_GRAPHS 2 /* decode graphs a context may keep (decode_buckets) */
typedef struct lslot {
    dlayer d;
    void *buf[SLOT_BUFS];
    size_t cap[SLOT_BUFS];
    const lb_layer *src; /* what slot 1 holds (NULL: nothing) */
    unsigned have;       /* matrices uploaded (bit k: matrix k in the order q, k, v, o, gate, up, down) */
} lslot;

struct lb_cuda_ctx {
    const lb_model *m;
    int dev;
    int64_t n_ctx, n_batch, last_T;
    int64_t n_seq;               /* sequences of n_ctx the KV cache holds (n_batch / n_ctx when that is more than 1) */
    int64_t win;                 /* the running batch's sequence length (lb_cuda_ctx_eval_windows), 0: one sequence */
    int64_t last_win;            /* win of the last batch with every position's logits */
    dweight tok, out;
    float *out_norm;
    dlayer *L;
    __half *kc, *vc;             /* (n_layer, n_seq n_ctx, kvd) */
    float *kc32, *vc32;          /* the same in F32 for an exact context (kc, vc then NULL) */
    bool exact;                  /* lb_context_params' exact: F32 cache, per-token attention, every product fused */
    float *cs, *sn;              /* (n_ctx, D/2) */
    float *x, *xn, *q, *k, *v, *att, *g, *u, *tmp; /* n_batch rows */
    float *logits;               /* (n_batch, V) */
    float *att_part;             /* the split attention's scratch (unless LB_CUDA_ATT_SPLIT=0) */
    float *qkv1, *gu1;           /* one token's fused products (q | k | v, gate | up) */
    int32_t *tok_d;              /* n_batch */
    double *lse, *nll, *kl;      /* n_batch */
    long long *amax;             /* n_batch */
    mm_ws ws;
    cudaStream_t st;             /* every kernel and copy of the context */
    int64_t *pos_d;              /* position of the batch's first token, read by the kernels */
    int64_t *pin_pos;            /* pinned host staging of the position, the token ids and one row of logits */
    int32_t *pin_tok;
    float *pin_logits;
    cudaGraphExec_t decode[DEC_GRAPHS]; /* one decode step (1 token, last logits), captured at first use, for contexts of
                                         * at most decode_n[b] positions (ascending; the last n_ctx) */
    int decode_state[DEC_GRAPHS];       /* 0: not tried, 1: captured, -1: capture failed (run without) */
    int64_t decode_n[DEC_GRAPHS];
    int n_decode;
    float *host;                 /* observer staging, n_batch * max width */
    lb_observer_fn obs;
    void *obs_user;
    lb_cuda_observer_fn dobs;    /* device observer (one-layer runs) */
    void *dobs_user;
    bool layerwise;              /* one layer at a time: a one-layer KV cache, no model weights, no logits */
    int64_t l0, l1;              /* a pipeline stage's layers (a one-device context: all of them) */
    lb_cuda_ctx *next;           /* the pipeline's next stage (NULL: this is the last) */
    bool head;                   /* this stage holds the head and the logits (the last stage) */
    lslot slot[2];               /* a layerwise context's layers */
    void *allocs[MAX_ALLOCS];
    int n_allocs;
};

static lb_status dalloc(lb_cuda_ctx *g, void **p, size_t bytes, const char *what, lb_error *err) {
    if (g->n_allocs == MAX_ALLOCS) return lb_err_set(err, LB_ERR_DEVICE, "CUDA: too many device buffers");
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lb_err_set(err, LB_ERR_DEVICE, "CUDA: out of GPU memory allocating %.1f MiB for %s", (double)bytes / 1048576.0,
                          what);
    }
    g->allocs[g->n_allocs++] = *p;
    return LB_OK;
}

static lb_status upload(lb_cuda_ctx *g, void **dst, const void *src, size_t bytes, const char *what, lb_error *err) {
    lb_status s = dalloc(g, dst, bytes, what, err);
    if (s != LB_OK) return s;
    CK(cudaMemcpy(*dst, src, bytes, cudaMemcpyHostToDevice), "uploading a weight");
    return LB_OK;
}

static lb_status upload_vec(lb_cuda_ctx *g, float **dst, const float *src, int64_t n, lb_error *err) {
    *dst = NULL;
    if (!src) return LB_OK;
    return upload(g, (void **)dst, src, (size_t)n * sizeof(float), "a norm or bias vector", err);
}

/* whether the CUDA kernels take w (its type, its row length) */
static lb_status weight_ok(const lb_weight *w, const char *what, lb_error *err) {
    if (!cu_type_supported(w->type))
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: type %s has no CUDA kernels", what, lb_type_name(w->type));
    if (w->cols % 32)
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: row length %lld is not a multiple of 32, which the CUDA kernels need",
                          what, (long long)w->cols);
    return LB_OK;
}

static lb_status upload_weight(lb_cuda_ctx *g, dweight *d, const lb_weight *w, const char *what, lb_error *err) {
    const lb_status st = weight_ok(w, what, err);
    if (st != LB_OK) return st;
    d->type = w->type;
    d->rows = w->rows;
    d->cols = w->cols;
    d->row_bytes = lb_weight_row_bytes(w);
    return upload(g, (void **)&d->data, w->data, d->row_bytes * (size_t)w->rows, what, err);
}

/* matrices ws[0..n) of one type and row length into one allocation, one after another (merged: all of them as one
 * matrix); else each on its own (merged->data NULL), except that with first2, the first two go together when they
 * share a type (first2: those two as one matrix) */
static lb_status upload_group(lb_cuda_ctx *g, dweight *const *ds, const lb_weight *const *ws, const char *const *names, int n,
                              dweight *merged, lb_error *err, dweight *first2 = NULL) {
    memset(merged, 0, sizeof *merged);
    if (first2) memset(first2, 0, sizeof *first2);
    bool same = true;
    for (int i = 0; i < n; i++) {
        const lb_status st = weight_ok(ws[i], names[i], err);
        if (st != LB_OK) return st;
        same = same && ws[i]->type == ws[0]->type && ws[i]->cols == ws[0]->cols;
    }
    if (!same && first2 && n > 2 && ws[1]->type == ws[0]->type && ws[1]->cols == ws[0]->cols) {
        lb_status st = upload_group(g, ds, ws, names, 2, first2, err);
        for (int i = 2; st == LB_OK && i < n; i++) st = upload_weight(g, ds[i], ws[i], names[i], err);
        return st;
    }
    if (!same) {
        for (int i = 0; i < n; i++) {
            const lb_status st = upload_weight(g, ds[i], ws[i], names[i], err);
            if (st != LB_OK) return st;
        }
        return LB_OK;
    }
    const size_t rb = lb_weight_row_bytes(ws[0]);
    int64_t rows = 0;
    for (int i = 0; i < n; i++) rows += ws[i]->rows;
    uint8_t *base = NULL;
    const lb_status st = dalloc(g, (void **)&base, rb * (size_t)rows, names[0], err);
    if (st != LB_OK) return st;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        *ds[i] = (dweight){ws[i]->type, base + off, ws[i]->rows, ws[i]->cols, rb};
        CK(cudaMemcpy(base + off, ws[i]->data, rb * (size_t)ws[i]->rows, cudaMemcpyHostToDevice), "uploading a weight");
        off += rb * (size_t)ws[i]->rows;
    }
    *merged = (dweight){ws[0]->type, base, rows, ws[0]->cols, rb};
    return LB_OK;
}

static lb_status upload_layer(lb_cuda_ctx *g, const lb_layer *l, dlayer *d, lb_error *err) {
    const lb_model_info *h = &g->m->info;
    const int64_t E = h->n_embd, D = h->head_dim, qd = h->n_head * D, kvd = h->n_head_kv * D, F = h->n_ff;
    lb_status s = LB_OK;
    const lb_weight *const qkv[] = {&l->wq, &l->wk, &l->wv}, *const gu[] = {&l->w_gate, &l->w_up};
    dweight *const dqkv[] = {&d->wq, &d->wk, &d->wv}, *const dgu[] = {&d->w_gate, &d->w_up};
    const char *const nqkv[] = {"attn_q", "attn_k", "attn_v"}, *const ngu[] = {"ffn_gate", "ffn_up"};
    s = upload_group(g, dqkv, qkv, nqkv, 3, &d->wqkv, err, &d->wqk);
    if (s == LB_OK) s = upload_weight(g, &d->wo, &l->wo, "attn_output", err);
    if (s == LB_OK) s = upload_group(g, dgu, gu, ngu, 2, &d->wgu, err);
    if (s == LB_OK) s = upload_weight(g, &d->w_down, &l->w_down, "ffn_down", err);
    float *const *src[] = {&l->attn_norm, &l->ffn_norm, &l->q_norm, &l->k_norm, &l->bq, &l->bk, &l->bv,
                           &l->bo, &l->b_gate, &l->b_up, &l->b_down};
    float **dst[] = {&d->attn_norm, &d->ffn_norm, &d->q_norm, &d->k_norm, &d->bq, &d->bk, &d->bv,
                     &d->bo, &d->b_gate, &d->b_up, &d->b_down};
    const int64_t len[] = {E, E, D, D, qd, kvd, kvd, E, F, F, E};
    for (int i = 0; s == LB_OK && i < 11; i++) s = upload_vec(g, dst[i], *src[i], len[i], err);
    return s;
}

/* the weight bytes a stage holding layers l0 .. l1-1 uploads (the embedding in the first, the head in the last) */
static size_t stage_device_bytes(const lb_model *m, int64_t l0, int64_t l1, bool first, bool last) { /* the weights */
    size_t b = 0;
    if (first) b += lb_weight_row_bytes(&m->tok_embd) * (size_t)m->tok_embd.rows;
    if (last && !(first && m->output.data == m->tok_embd.data)) b += lb_weight_row_bytes(&m->output) * (size_t)m->output.rows;
    for (int64_t i = l0; i < l1; i++) {
        const lb_layer *l = &m->layers[i];
        const lb_weight *ws[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        for (int j = 0; j < 7; j++) b += lb_weight_row_bytes(ws[j]) * (size_t)ws[j]->rows;
    }
    return b;
}

/* The context's decode graphs: one for contexts of n_ctx, with one for those of at most one_max (the single-launch
 * attention's longest, 0: none) where that is shorter. */
static void decode_buckets(lb_cuda_ctx *g, int64_t one_max) {
    const int64_t C = g->n_ctx;
    g->n_decode = 0;
    if (one_max > 0 && one_max < C) g->decode_n[g->n_decode++] = one_max;
    g->decode_n[g->n_decode++] = C;
}

static lb_status alloc_state(lb_cuda_ctx *g, lb_error *err) {
    const lb_model_info *h = &g->m->info;
    const int64_t B = g->n_batch, E = h->n_embd, D = h->head_dim, qd = h->n_head * D, kvd = h->n_head_kv * D, F = h->n_ff;
    const int64_t V = g->head ? h->n_vocab : 0, C = g->n_ctx, L = g->layerwise ? 1 : g->l1 - g->l0;
    lb_status s = LB_OK;
    float **fp[] = {&g->x, &g->xn, &g->q, &g->k, &g->v, &g->att, &g->g, &g->u, &g->tmp, &g->logits};
    const int64_t fn[] = {B * E, B * E, B * qd, B * kvd, B * kvd, B * qd, B * F, B * F, B * E, B * V};
    for (int i = 0; s == LB_OK && i < 10; i++) s = dalloc(g, (void **)fp[i], (size_t)fn[i] * sizeof(float), "activations", err);
    if (s == LB_OK && !g->layerwise) s = dalloc(g, (void **)&g->qkv1, (size_t)(qd + 2 * kvd) * sizeof(float), "activations", err);
    if (s == LB_OK && !g->layerwise) s = dalloc(g, (void **)&g->gu1, (size_t)(2 * F) * sizeof(float), "activations", err);
    const int64_t S = g->n_seq > 1 ? g->n_seq : 1;
    const size_t kvn = (size_t)(L * S * C * kvd);
    if (s == LB_OK && g->exact) s = dalloc(g, (void **)&g->kc32, kvn * sizeof(float), "the KV cache", err);
    if (s == LB_OK && g->exact) s = dalloc(g, (void **)&g->vc32, kvn * sizeof(float), "the KV cache", err);
    if (s == LB_OK && !g->exact) s = dalloc(g, (void **)&g->kc, kvn * sizeof(__half), "the KV cache", err);
    if (s == LB_OK && !g->exact) s = dalloc(g, (void **)&g->vc, kvn * sizeof(__half), "the KV cache", err);
    if (s == LB_OK) s = dalloc(g, (void **)&g->tok_d, (size_t)B * sizeof(int32_t), "token ids", err);
    if (s == LB_OK) s = dalloc(g, (void **)&g->lse, (size_t)B * sizeof(double), "scores", err);
    if (s == LB_OK) s = dalloc(g, (void **)&g->nll, (size_t)B * sizeof(double), "scores", err);
    if (s == LB_OK) s = dalloc(g, (void **)&g->kl, (size_t)B * sizeof(double), "scores", err);
    if (s == LB_OK) s = dalloc(g, (void **)&g->amax, (size_t)B * sizeof(long long), "scores", err);
    if (s == LB_OK) s = dalloc(g, (void **)&g->pos_d, sizeof(int64_t), "the position", err);
    int64_t kmax = E > qd ? E : qd;
    kmax = kmax > F ? kmax : F;
    if (s == LB_OK) s = mm_ws_ready(&g->ws, (size_t)(B * kmax), false, err); /* before any graph capture */
    if (s == LB_OK) CK(cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking), "creating a stream");
    if (s == LB_OK) CK(cudaMallocHost((void **)&g->pin_pos, sizeof(int64_t) + (size_t)B * sizeof(int32_t) + (size_t)V * sizeof(float) + 64),
                       "allocating pinned host memory");
    if (s == LB_OK) {
        g->pin_tok = (int32_t *)(g->pin_pos + 1);
        g->pin_logits = (float *)((uintptr_t)(g->pin_tok + B + 16) & ~(uintptr_t)15);
    }
    g->ws.exact = g->exact;
    int64_t one_max = 0; /* the single-launch attention's longest context (0: the split launches, or none) */
    if (s == LB_OK && cu_attention_split_on() && !g->exact && cu_attention_split_fits((int)D)) {
        s = dalloc(g, (void **)&g->att_part, cu_attention_split_scratch((int)h->n_head, (int)D, C), "the attention's scratch", err);
        one_max = cu_attention_one_max((int)h->n_head, (int)h->n_head_kv, (int)D);
    }
    else if (s == LB_OK && cu_attention_prepare((int)h->n_head, (int)h->n_head_kv, (int)D, C) != cudaSuccess) {
        cudaGetLastError();
        s = lb_err_set(err, LB_ERR_UNSUPPORTED, "CUDA: a %lld-token context does not fit the attention kernel's shared memory",
                       (long long)C);
    }
    decode_buckets(g, one_max);
    return s;
}

/* the CPU's rotary tables (forward.c computes them the same way), uploaded */
static lb_status rope_tables(lb_cuda_ctx *g, lb_error *err) {
    const lb_model_info *h = &g->m->info;
    const int64_t D = h->head_dim, C = g->n_ctx, n = C * (D / 2);
    float *cs = (float *)malloc((size_t)n * sizeof(float)), *sn = (float *)malloc((size_t)n * sizeof(float));
    float *inv = (float *)malloc((size_t)(D / 2 + 1) * sizeof(float));
    lb_status s = cs && sn && inv ? LB_OK : lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (s == LB_OK) {
        lb_rope_inv_freq(h, inv);
        for (int64_t p = 0; p < C; p++)
            for (int64_t i = 0; i < D / 2; i++) {
                float ang = (float)p * inv[i];
                cs[p * (D / 2) + i] = (float)cos((double)ang);
                sn[p * (D / 2) + i] = (float)sin((double)ang);
            }
        s = upload(g, (void **)&g->cs, cs, (size_t)n * sizeof(float), "rotary tables", err);
        if (s == LB_OK) s = upload(g, (void **)&g->sn, sn, (size_t)n * sizeof(float), "rotary tables", err);
    }
    free(cs);
    free(sn);
    free(inv);
    return s;
}

/* one stage of a pipeline (a one-device context: the only one) */
static lb_status stage_new(const lb_model *m, int device, int64_t l0, int64_t l1, bool first, bool last, int64_t n_ctx,
                           int64_t n_batch, bool exact, lb_cuda_ctx **out, lb_error *err) {
    lb_status s = use_device(device, err);
    if (s != LB_OK) return s;
    const lb_model_info *h = &m->info;
    size_t free_b = 0, total_b = 0, need = stage_device_bytes(m, l0, l1, first, last);
    CK(cudaMemGetInfo(&free_b, &total_b), "reading free memory");
    if (need > free_b) {
        if (first && last)
            return lb_err_set(err, LB_ERR_DEVICE, "CUDA device %d: the weights need %.1f MiB, %.1f MiB of %.1f MiB are free", device,
                              need / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
        return lb_err_set(err, LB_ERR_DEVICE, "CUDA device %d: layers %lld-%lld need %.1f MiB, %.1f MiB of %.1f MiB are free", device,
                          (long long)l0, (long long)l1 - 1, need / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
    }
    lb_cuda_ctx *g = (lb_cuda_ctx *)calloc(1, sizeof *g);
    if (!g) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    g->m = m;
    g->dev = device;
    g->n_ctx = n_ctx;
    g->n_batch = n_batch;
    g->n_seq = n_batch > n_ctx ? n_batch / n_ctx : 1;
    g->exact = exact;
    g->l0 = l0;
    g->l1 = l1;
    g->head = last;
    g->L = (dlayer *)calloc((size_t)h->n_layer, sizeof(dlayer));
    if (!g->L) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (s == LB_OK && first) s = upload_weight(g, &g->tok, &m->tok_embd, "token_embd", err);
    if (s == LB_OK && last) {
        if (first && m->output.data == m->tok_embd.data) g->out = g->tok;
        else s = upload_weight(g, &g->out, &m->output, "output", err);
        if (s == LB_OK) s = upload_vec(g, &g->out_norm, m->out_norm, h->n_embd, err);
    }
    for (int64_t i = l0; s == LB_OK && i < l1; i++) {
        s = upload_layer(g, &m->layers[i], &g->L[i], err);
        if (s != LB_OK) lb_err_prefix(err, s, "layer %lld", (long long)i);
    }
    if (s == LB_OK) s = alloc_state(g, err);
    if (s == LB_OK) s = rope_tables(g, err);
    if (s != LB_OK) {
        lb_cuda_ctx_free(g);
        return s;
    }
    *out = g;
    return LB_OK;
}

extern "C" lb_status lb_cuda_ctx_new(const lb_model *m, int device, int64_t n_ctx, int64_t n_batch, lb_cuda_ctx **out,
                                     lb_error *err) {
    return stage_new(m, device, 0, m->info.n_layer, true, true, n_ctx, n_batch, false, out, err);
}

extern "C" lb_status lb_cuda_ctx_new_pipeline(const lb_model *m, const int *devices, const int64_t *first, int n, int64_t n_ctx,
                                              int64_t n_batch, bool exact, lb_cuda_ctx **out, lb_error *err) {
    if (n < 1 || first[0] != 0 || first[n] != m->info.n_layer) return lb_err_set(err, LB_ERR_ARG, "lb_cuda_ctx_new_pipeline: bad split");
    for (int r = 0; r < n; r++)
        if (first[r + 1] <= first[r]) return lb_err_set(err, LB_ERR_ARG, "lb_cuda_ctx_new_pipeline: stage %d has no layers", r);
    lb_cuda_ctx *head = NULL, *prev = NULL;
    for (int r = 0; r < n; r++) {
        lb_cuda_ctx *g = NULL;
        lb_status s = stage_new(m, devices[r], first[r], first[r + 1], r == 0, r == n - 1, n_ctx, n_batch, exact, &g, err);
        if (s != LB_OK) {
            lb_cuda_ctx_free(head);
            return s;
        }
        if (prev) prev->next = g;
        else head = g;
        prev = g;
    }
    *out = head;
    return LB_OK;
}

extern "C" void lb_cuda_ctx_free(lb_cuda_ctx *g) {
    if (!g) return;
    lb_cuda_ctx_free(g->next);
    cudaSetDevice(g->dev);
    lb_cu_stream = g->st;
    mm_ws_free(&g->ws);
    for (int b = 0; b < DEC_GRAPHS; b++)
        if (g->decode[b]) cudaGraphExecDestroy(g->decode[b]);
    if (g->st) cudaStreamDestroy(g->st);
    cudaFreeHost(g->pin_pos);
    lb_cu_stream = 0;
    for (int i = 0; i < g->n_allocs; i++) cudaFree(g->allocs[i]);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < SLOT_BUFS; i++) cudaFree(g->slot[k].buf[i]);
    free(g->L);
    free(g->host);
    free(g);
}

extern "C" void lb_cuda_ctx_set_observer(lb_cuda_ctx *g, lb_observer_fn fn, void *user) {
    for (; g; g = g->next) {
        g->obs = fn;
        g->obs_user = user;
    }
}

/* the observer gets a host copy of a device activation */
static lb_status observe(lb_cuda_ctx *g, int64_t layer, lb_obs_point pt, const float *x, int64_t T, int64_t dim, lb_error *err) {
    if (g->dobs) return g->dobs(g->dobs_user, layer, pt, x, T, dim, err);
    if (!g->obs) return LB_OK;
    const lb_model_info *h = &g->m->info;
    if (!g->host) {
        int64_t w = h->n_embd > h->n_ff ? h->n_embd : h->n_ff;
        if (h->n_head * h->head_dim > w) w = h->n_head * h->head_dim;
        g->host = (float *)malloc((size_t)(g->n_batch * w) * sizeof(float));
        if (!g->host) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    CK(cudaMemcpyAsync(g->host, x, (size_t)(T * dim) * sizeof(float), cudaMemcpyDeviceToHost, g->st), "copying an activation");
    CK(cudaStreamSynchronize(g->st), "copying an activation");
    g->obs(g->obs_user, layer, pt, g->host, T, dim);
    return LB_OK;
}

#define TRY(call)                                                                                                   \
    do {                                                                                                            \
        lb_status s_ = (call);                                                                                      \
        if (s_ != LB_OK) return s_;                                                                                 \
    } while (0)

/* The observation of point pt, then the end of the layer when it is the stop point (forward.c's `stop`). */
#define OBSERVE(pt, x, dim)                                                                                         \
    do {                                                                                                            \
        TRY(observe(g, il, pt, x, T, dim, err));                                                                    \
        if (stop == (int)(pt)) return LB_OK;                                                                        \
    } while (0)

/* q, k, v (gate, up) of one token in one product where they are stored as one (the default since run 15: tg128 +5 %
 * on the 8B shape; LB_CUDA_FUSE=0 turns it off; read once) */
static bool fuse_on(void) {
    static const bool on = !cu_env_is("LB_CUDA_FUSE", '0');
    return on;
}

/* RMSNorm of `rows` rows of n, `stride` floats apart (y: x += y first, contiguous rows): an exact context takes the
 * CPU's order of operations (exact.cu) */
static void norm(const lb_cuda_ctx *g, float *x, const float *y, const float *w, float *out, int64_t rows, int n, int64_t stride,
                 float eps) {
    if (g->exact) cu_rmsnorm_exact(x, y, w, out, rows, n, stride, eps);
    else if (y) cu_add_rmsnorm(x, y, w, out, rows, n, eps);
    else cu_rmsnorm(x, w, out, rows, n, stride, eps);
}

/* The decode fusions (the default; LB_CUDA_FUSE_ACT=0 turns them off, read once): RMSNorm and SwiGLU round their
 * result for the next product's 8-bit path in the same launch, and the o and down products add themselves into the
 * residual stream (no cu_add, no add in the norm). Fewer launches per layer; the same products. */
static bool fuse_act_on(void) {
    static const bool on = !cu_env_is("LB_CUDA_FUSE_ACT", '0');
    return on;
}

/* One decoded token's rotary embedding inside the split attention kernel (cu_att_new) instead of its own launch, unless
 * LB_CUDA_ROPE_FUSE=0 (read once); the same bytes either way */
static bool rope_fuse_on(void) {
    static const bool on = !cu_env_is("LB_CUDA_ROPE_FUSE", '0');
    return on;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* The activations x (T, K) as the fused product with w takes them were just written to ws->x16 by x's producer */
static void act_prepared(mm_ws *ws, const float *x, const dweight *w, int64_t T) {
    ws->act_x = x;
    ws->act_T = T;
    ws->act_K = w->cols;
    ws->act_path = 0;
    ws->act_kind = act_kind(w->type, 0);
}

/* Whether the producer of x (T, n), the input of the product with w, can round x for it in the same launch: then the
 * activation scratch is ready for it (*s says whether that failed) and the block length is in *be */
static bool act_fusable(lb_cuda_ctx *g, const dweight *w, int64_t T, int64_t n, int *be, lb_error *err, lb_status *s) {
    *s = LB_OK;
    if (!fuse_act_on() || !mm_adds(&g->ws, T) || !cu_matvec_q8(w->type) || w->cols != n) return false;
    *be = (int)lb_type_traits_get(w->type)->block_elems;
    if (!cu_act_fusable(n, *be)) return false;
    *s = mm_ws_ready(&g->ws, (size_t)(T * n), false, err);
    return *s == LB_OK;
}

/* xn = RMSNorm(x) (T contiguous rows of E), the input of the product with w; returns whether the norm also rounded it
 * for that product (then the product's mm is called with same_x) */
static bool norm_for(lb_cuda_ctx *g, float *x, const float *nw, float *xn, const dweight *w, int64_t T, lb_error *err, lb_status *s) {
    const lb_model_info *h = &g->m->info;
    const int64_t E = h->n_embd;
    int be = 0;
    if (act_fusable(g, w, T, E, &be, err, s) && aligned16(x) && aligned16(nw) && aligned16(xn)) {
        cu_rmsnorm_act(x, nw, xn, T, (int)E, h->rms_eps, be, g->ws.x16);
        act_prepared(&g->ws, xn, w, T);
        return true;
    }
    if (*s == LB_OK) norm(g, x, NULL, nw, xn, T, (int)E, E, h->rms_eps);
    return false;
}

/* Whether a product of T tokens with bias b adds itself into the residual stream g->x (mm's add) */
static bool residual_fused(const lb_cuda_ctx *g, int64_t T, const float *b) { return fuse_act_on() && !b && mm_adds(&g->ws, T); }

/* pos0: the batch's first position, also in g->pos_d; max_n: a bound of pos0 + T for the attention kernel (with
 * windows, g->win: the window length);
 * stop: the point after whose observation the layer ends early (g->x then is not the layer's output), or -1.
 * from (lb_context_run_layer_part's): LB_OBS_ATTN_IN (the whole layer), LB_OBS_ATTN_OUT_IN (g->x the layer's
 * input, the attention output taken from att), LB_OBS_FFN_IN (g->x the stream after the attention block); att,
 * when not NULL on a run from the start past the attention, receives the attention output (T, qd). */
static lb_status layer_forward_part(lb_cuda_ctx *g, const dlayer *l, int64_t il, int64_t T, int64_t max_n, int from, int stop, float *att,
                                    lb_error *err) {
    const lb_model_info *h = &g->m->info;
    const int64_t E = h->n_embd, D = h->head_dim, H = h->n_head, KV = h->n_head_kv, F = h->n_ff;
    const int64_t qd = H * D, kvd = KV * D;
    const float eps = h->rms_eps;
    const bool fuse = T == 1 && g->qkv1 && fuse_on(); /* one token: q, k, v (gate, up) in one launch where stored so */
    lb_status ns = LB_OK;
    bool att_pre = false; /* the attention rounded its output for the o product */
    if (from == LB_OBS_ATTN_IN) {
        const dweight *w1 = fuse && l->wqkv.data ? &l->wqkv : fuse && l->wqk.data ? &l->wqk : &l->wq; /* the first product */
        const bool qkv1 = w1 == &l->wqkv, qk1 = w1 == &l->wqk;
        const bool pre = norm_for(g, g->x, l->attn_norm, g->xn, w1, T, err, &ns);
        TRY(ns);
        OBSERVE(LB_OBS_ATTN_IN, g->xn, E);
        float *q = g->q, *k = g->k, *v = g->v;
        if (qkv1) {
            TRY(mm(&g->ws, g->xn, T, &l->wqkv, g->qkv1, qd + 2 * kvd, -1, pre, err));
            q = g->qkv1, k = q + qd, v = k + kvd;
        } else if (qk1) { /* q and k in one launch, v (another type) on its own */
            q = g->qkv1, k = q + qd, v = k + kvd;
            TRY(mm(&g->ws, g->xn, T, &l->wqk, q, qd + kvd, -1, pre, err));
            TRY(mm(&g->ws, g->xn, T, &l->wv, v, kvd, -1, true, err));
        } else {
            TRY(mm(&g->ws, g->xn, T, &l->wq, q, qd, -1, pre, err));
            TRY(mm(&g->ws, g->xn, T, &l->wk, k, kvd, -1, true, err));
            TRY(mm(&g->ws, g->xn, T, &l->wv, v, kvd, -1, true, err));
        }
        if (l->bq) cu_add_bias(q, l->bq, (int)T, (int)qd);
        if (l->bk) cu_add_bias(k, l->bk, (int)T, (int)kvd);
        if (l->bv) cu_add_bias(v, l->bv, (int)T, (int)kvd);
        if (l->q_norm) {
            norm(g, q, NULL, l->q_norm, q, T * H, (int)D, D, eps);
            norm(g, k, NULL, l->k_norm, k, T * KV, (int)D, D, eps);
        }
        const size_t lo = (size_t)((g->layerwise ? 0 : il - g->l0) * g->n_seq * g->n_ctx * kvd);
        /* one sequence, or T / win independent ones (lb_cuda_ctx_eval_windows): sequence w's tokens, positions 0..,
         * cache rows w win .. and attention over its own rows only */
        const int64_t wl = g->win > 0 ? g->win : T;
        for (int64_t t0 = 0; t0 < T; t0 += wl) {
            const size_t oq = (size_t)(t0 * qd), ok = (size_t)(t0 * kvd);
            if (g->exact) {
                cu_rope_kv(q + oq, k + ok, v + ok, (int)wl, (int)H, (int)KV, (int)D, g->cs, g->sn, g->pos_d, g->m->rope_interleaved,
                           g->kc32 + lo + ok, g->vc32 + lo + ok);
                cu_attention(q + oq, g->kc32 + lo + ok, g->vc32 + lo + ok, g->att + oq, (int)wl, (int)H, (int)KV, (int)D, g->pos_d, max_n);
                continue;
            }
            const bool flash = wl > LB_CUDA_MV_MAX && cu_attention_flash_ok((int)H, (int)KV, (int)D);
            const cu_att_new rope = {k + ok, v + ok, g->cs, g->sn, g->m->rope_interleaved ? 1 : 0, NULL, NULL};
            const bool rope_in = !flash && g->att_part && wl == 1 && rope_fuse_on(); /* the split kernel rotates one token */
            if (!rope_in)
                cu_rope_kv(q + oq, k + ok, v + ok, (int)wl, (int)H, (int)KV, (int)D, g->cs, g->sn, g->pos_d, g->m->rope_interleaved,
                           g->kc + lo + ok, g->vc + lo + ok);
            if (flash)
                cu_attention_flash(q + oq, g->kc + lo + ok, g->vc + lo + ok, g->att + oq, (int)wl, (int)H, (int)KV, (int)D, g->pos_d);
            else if (g->att_part) {
                int be = 0;
                att_pre = wl == T && D % 8 == 0 && aligned16(g->att) && act_fusable(g, &l->wo, T, qd, &be, err, &ns);
                TRY(ns);
                cu_attention_split(q + oq, g->kc + lo + ok, g->vc + lo + ok, g->att + oq, (int)wl, (int)H, (int)KV, (int)D, g->pos_d,
                                   max_n, g->att_part, be, att_pre ? g->ws.x16 : NULL, rope_in ? &rope : NULL);
                if (att_pre) act_prepared(&g->ws, g->att, &l->wo, T);
            }
            else
                cu_attention(q + oq, g->kc + lo + ok, g->vc + lo + ok, g->att + oq, (int)wl, (int)H, (int)KV, (int)D, g->pos_d, max_n);
        }
        CK(cudaGetLastError(), "in attention");
        if (att && stop != LB_OBS_ATTN_IN)
            CK(cudaMemcpyAsync(att, g->att, (size_t)(T * qd) * sizeof(float), cudaMemcpyDeviceToDevice, g->st),
               "keeping the attention output");
    } else if (from == LB_OBS_ATTN_OUT_IN) {
        CK(cudaMemcpyAsync(g->att, att, (size_t)(T * qd) * sizeof(float), cudaMemcpyDeviceToDevice, g->st), "copying the attention output");
    }
    const bool gu1 = fuse && l->wgu.data;
    const dweight *wf = gu1 ? &l->wgu : &l->w_gate; /* the FFN's first product */
    bool pre = false; /* its input rounded by the norm */
    if (from <= LB_OBS_ATTN_OUT_IN) {
        OBSERVE(LB_OBS_ATTN_OUT_IN, g->att, qd);
        if (residual_fused(g, T, l->bo)) { /* g->x += o; the norm then rounds for the FFN's first product */
            TRY(mm(&g->ws, g->att, T, &l->wo, g->x, E, -1, att_pre, err, true));
            pre = norm_for(g, g->x, l->ffn_norm, g->xn, wf, T, err, &ns);
            TRY(ns);
        } else { /* the residual add in the norm */
            TRY(mm(&g->ws, g->att, T, &l->wo, g->tmp, E, -1, att_pre, err));
            if (l->bo) cu_add_bias(g->tmp, l->bo, (int)T, (int)E);
            norm(g, g->x, g->tmp, l->ffn_norm, g->xn, T, (int)E, E, eps);
        }
    } else { /* from the stream after the attention block: the norm as the block's end computes it, plus zero */
        CK(cudaMemsetAsync(g->tmp, 0, (size_t)(T * E) * sizeof(float), g->st), "clearing a buffer");
        norm(g, g->x, g->tmp, l->ffn_norm, g->xn, T, (int)E, E, eps);
    }
    OBSERVE(LB_OBS_FFN_IN, g->xn, E);
    float *gp = g->g, *up = g->u;
    if (gu1) {
        TRY(mm(&g->ws, g->xn, T, wf, g->gu1, 2 * F, -1, pre, err));
        gp = g->gu1, up = gp + F;
    } else {
        TRY(mm(&g->ws, g->xn, T, wf, gp, F, -1, pre, err));
        TRY(mm(&g->ws, g->xn, T, &l->w_up, up, F, -1, true, err));
    }
    if (l->b_gate) cu_add_bias(gp, l->b_gate, (int)T, (int)F);
    if (l->b_up) cu_add_bias(up, l->b_up, (int)T, (int)F);
    int be = 0;
    bool down_pre = false; /* SwiGLU rounded its result for the down product */
    if (g->exact) {
        cu_silu_mul_exact(gp, up, T * F);
    } else if (act_fusable(g, &l->w_down, T, F, &be, err, &ns) && aligned16(gp) && aligned16(up)) {
        cu_silu_act(gp, up, T * F, be, g->ws.x16);
        act_prepared(&g->ws, gp, &l->w_down, T);
        down_pre = true;
    } else {
        TRY(ns);
        cu_silu_mul(gp, up, T * F);
    }
    OBSERVE(LB_OBS_FFN_DOWN_IN, gp, F);
    if (residual_fused(g, T, l->b_down)) return mm(&g->ws, gp, T, &l->w_down, g->x, E, -1, down_pre, err, true);
    TRY(mm(&g->ws, gp, T, &l->w_down, g->tmp, E, -1, down_pre, err));
    if (l->b_down) cu_add_bias(g->tmp, l->b_down, (int)T, (int)E);
    cu_add(g->x, g->tmp, T * E);
    return LB_OK;
}

static lb_status layer_forward(lb_cuda_ctx *g, const dlayer *l, int64_t il, int64_t T, int64_t max_n, int stop, lb_error *err) {
    return layer_forward_part(g, l, il, T, max_n, LB_OBS_ATTN_IN, stop, NULL, err);
}

/* The last stage of a pipeline (a one-device context: itself). */
static lb_cuda_ctx *tail(lb_cuda_ctx *g) {
    while (g->next) g = g->next;
    return g;
}
static const lb_cuda_ctx *tail_c(const lb_cuda_ctx *g) {
    while (g->next) g = g->next;
    return g;
}

/* The work of one batch whose token ids and position are in pinned memory: copies in, layers, logits. A
 * pipeline runs its stages in turn, each on its device and stream; a stage's residual stream goes to the next
 * stage's device once its layers are done (the host waits for the copy, so the next stage's work is ordered
 * after it). */
static lb_status forward(lb_cuda_ctx *g, int64_t T, int want, int64_t max_n, lb_error *err) {
    const lb_model_info *h = &g->m->info;
    const int64_t E = h->n_embd, V = h->n_vocab;
    for (lb_cuda_ctx *st = g; st; st = st->next) {
        if (st != g) {
            CK(cudaSetDevice(st->dev), "selecting the device");
            lb_cu_stream = st->st;
        }
        CK(cudaMemcpyAsync(st->pos_d, st->pin_pos, sizeof(int64_t), cudaMemcpyHostToDevice, st->st), "uploading the position");
        if (st == g) {
            CK(cudaMemcpyAsync(g->tok_d, g->pin_tok, (size_t)T * sizeof(int32_t), cudaMemcpyHostToDevice, g->st), "uploading token ids");
            cu_embed(&g->tok, g->tok_d, (int)T, g->x);
        }
        for (int64_t il = st->l0; il < st->l1; il++) TRY(layer_forward(st, &st->L[il], il, T, max_n, -1, err));
        if (st->next) {
            CK(cudaMemcpyPeerAsync(st->next->x, st->next->dev, st->x, st->dev, (size_t)(T * E) * sizeof(float), st->st),
               "passing the residual stream to the next GPU");
            CK(cudaStreamSynchronize(st->st), "running a pipeline stage");
        }
    }
    lb_cuda_ctx *t = tail(g);
    if (want == 2) {
        norm(t, t->x, NULL, t->out_norm, t->xn, T, (int)E, E, h->rms_eps);
        TRY(observe(t, -1, LB_OBS_OUTPUT_IN, t->xn, T, E, err));
        TRY(mm(&t->ws, t->xn, T, &t->out, t->logits, V, -1, false, err));
    } else if (want == 1) {
        lb_status ns = LB_OK;
        const bool pre = norm_for(t, t->x + (T - 1) * E, t->out_norm, t->xn, &t->out, 1, err, &ns);
        TRY(ns);
        TRY(mm(&t->ws, t->xn, 1, &t->out, t->logits, V, -1, pre, err));
        CK(cudaMemcpyAsync(t->pin_logits, t->logits, (size_t)V * sizeof(float), cudaMemcpyDeviceToHost, t->st), "reading logits");
    }
    return LB_OK;
}

/* Capture one decode step (1 token, last logits) as a graph: the position and token come from pinned memory,
 * so the same graph replays at every position of its bucket b (below decode_n[b]). On failure decoding goes on
 * without it. */
static void capture_decode(lb_cuda_ctx *g, int b) {
    g->decode_state[b] = -1;
    if (g->obs || g->next) return; /* a pipeline decodes kernel by kernel (its stages wait on each other) */
    cudaGraph_t graph = NULL;
    lb_error e;
    if (cudaStreamBeginCapture(g->st, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    lb_status s = forward(g, 1, 1, g->decode_n[b], &e);
    cudaError_t ce = cudaStreamEndCapture(g->st, &graph);
    if (s == LB_OK && ce == cudaSuccess && cudaGraphInstantiate(&g->decode[b], graph, 0) == cudaSuccess) g->decode_state[b] = 1;
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
}

/* One checked batch: every stage idle with the batch's position (and win: 0 one sequence, else T / win of them),
 * the token ids staged, the forward pass (the captured decode step for one token and its logits), then the logits. */
static lb_status run_batch(lb_cuda_ctx *g, const int32_t *tokens, int64_t T, int64_t pos0, int want, int64_t win, float *logits,
                           lb_error *err) {
    const int64_t V = g->m->info.n_vocab;
    lb_cuda_ctx *t = tail(g);
    for (lb_cuda_ctx *st = g; st; st = st->next) {
        CK(cudaSetDevice(st->dev), "selecting the device");
        CK(cudaStreamSynchronize(st->st), "waiting for the device");
        *st->pin_pos = pos0;
    }
    CK(cudaSetDevice(g->dev), "selecting the device");
    lb_cu_stream = g->st;
    memcpy(g->pin_tok, tokens, (size_t)T * sizeof(int32_t));
    g->last_T = t->last_T = 0;
    g->last_win = t->last_win = 0;
    const bool graph = T == 1 && want == 1 && !g->obs;
    int b = 0; /* the first graph whose contexts hold position pos0 */
    while (b < g->n_decode - 1 && pos0 >= g->decode_n[b]) b++;
    if (graph && g->decode_state[b] == 0 && !getenv("LB_CUDA_NO_GRAPH")) capture_decode(g, b);
    if (graph && g->decode_state[b] == 1) {
        CK(cudaGraphLaunch(g->decode[b], g->st), "replaying the decode step");
    } else {
        for (lb_cuda_ctx *st = g; st; st = st->next) st->win = win;
        const lb_status s = forward(g, T, want, win > 0 ? win : pos0 + T, err);
        for (lb_cuda_ctx *st = g; st; st = st->next) st->win = 0;
        if (s != LB_OK) return s;
    }
    CK(cudaSetDevice(t->dev), "selecting the device");
    CK(cudaStreamSynchronize(t->st), "running the forward pass");
    if (want == 2) g->last_T = t->last_T = T, g->last_win = t->last_win = win;
    if (want == 2 && logits) CK(cudaMemcpy(logits, t->logits, (size_t)(T * V) * sizeof(float), cudaMemcpyDeviceToHost), "reading logits");
    if (want == 1 && logits) memcpy(logits, t->pin_logits, (size_t)V * sizeof(float));
    return LB_OK;
}

extern "C" lb_status lb_cuda_ctx_eval(lb_cuda_ctx *g, const int32_t *tokens, int64_t T, int64_t pos0, int want, float *logits,
                                      lb_error *err) {
    if (T < 1 || T > g->n_batch || pos0 + T > g->n_ctx || g->layerwise) return lb_err_set(err, LB_ERR_ARG, "lb_cuda_ctx_eval: bad batch");
    return run_batch(g, tokens, T, pos0, want, 0, logits, err);
}

extern "C" lb_status lb_cuda_ctx_eval_windows(lb_cuda_ctx *g, const int32_t *tokens, int64_t T, int64_t win, lb_error *err) {
    if (g->layerwise || win < 2 || win > g->n_ctx || T < win || T % win || T > g->n_batch || T / win > g->n_seq)
        return lb_err_set(err, LB_ERR_ARG, "lb_cuda_ctx_eval_windows: %lld tokens in windows of %lld do not fit the context (%lld sequences "
                          "of %lld, batches of %lld)", (long long)T, (long long)win, (long long)g->n_seq, (long long)g->n_ctx,
                          (long long)g->n_batch);
    return run_batch(g, tokens, T, 0, 2, win, NULL, err);
}

extern "C" lb_status lb_cuda_ctx_score(lb_cuda_ctx *g0, const lb_cuda_ctx *base0, const int32_t *tokens, int64_t T, double *lse,
                                       double *nll, int64_t *amax, double *kl, lb_error *err) {
    lb_cuda_ctx *g = tail(g0);
    const lb_cuda_ctx *base = base0 ? tail_c(base0) : NULL;
    if (g->last_T != T || (base && (base->last_T != T || base->last_win != g->last_win)))
        return lb_err_set(err, LB_ERR_ARG, "lb_cuda_ctx_score: the logits of %lld tokens are not on the device", (long long)T);
    if (base && base->dev != g->dev)
        return lb_err_set(err, LB_ERR_ARG, "the base model's head runs on cuda:%d, the model's on cuda:%d: scoring needs one device",
                          base->dev, g->dev);
    CK(cudaSetDevice(g->dev), "selecting the device");
    lb_cu_stream = g->st;
    /* one sequence of T, or T / win windows: window w's positions 0 .. win - 2 against its own next tokens, results at
     * w (win - 1) .. (the base's log-sum-exps in the same places) */
    const int64_t V = g->m->info.n_vocab, wl = g->last_win > 0 ? g->last_win : T, nw = T / wl, n = nw * (wl - 1);
    for (int64_t w = 0; w < nw; w++) {
        const int64_t r = w * (wl - 1);
        CK(cudaMemcpyAsync(g->tok_d + r, tokens + w * wl + 1, (size_t)(wl - 1) * sizeof(int32_t), cudaMemcpyHostToDevice, g->st),
           "uploading token ids");
        cu_score(g->logits + (size_t)(w * wl) * (size_t)V, V, g->tok_d + r, (int)(wl - 1),
                 base ? base->logits + (size_t)(w * wl) * (size_t)V : NULL, base ? base->lse + r : NULL, g->lse + r, g->nll + r,
                 g->amax + r, base ? g->kl + r : NULL);
    }
    CK(cudaGetLastError(), "scoring");
    CK(cudaStreamSynchronize(g->st), "scoring");
    if (lse) CK(cudaMemcpy(lse, g->lse, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost), "reading scores");
    CK(cudaMemcpy(nll, g->nll, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost), "reading scores");
    CK(cudaMemcpy(amax, g->amax, (size_t)n * sizeof(int64_t), cudaMemcpyDeviceToHost), "reading scores");
    if (base && kl) CK(cudaMemcpy(kl, g->kl, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost), "reading scores");
    return LB_OK;
}

/* ---------------------------------------------------------------- one layer at a time --------------------- */

extern "C" lb_status lb_cuda_device_check(int device, lb_error *err) { return use_device(device, err); }

extern "C" lb_status lb_cuda_ctx_new_layerwise(const lb_model *m, int device, int64_t n_batch, lb_cuda_ctx **out,
                                               lb_error *err) {
    lb_status s = use_device(device, err);
    if (s != LB_OK) return s;
    lb_cuda_ctx *g = (lb_cuda_ctx *)calloc(1, sizeof *g);
    if (!g) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    g->m = m;
    g->dev = device;
    g->n_ctx = n_batch;
    g->n_batch = n_batch;
    g->layerwise = true;
    s = alloc_state(g, err);
    if (s == LB_OK) s = rope_tables(g, err);
    if (s == LB_OK) {
        cudaError_t e = cudaMemsetAsync(g->pos_d, 0, sizeof(int64_t), g->st); /* every run starts at position 0 */
        if (e == cudaSuccess) e = cudaStreamSynchronize(g->st);
        if (e != cudaSuccess) s = cuda_fail(err, e, "preparing a layerwise context");
    }
    if (s != LB_OK) {
        lb_cuda_ctx_free(g);
        return s;
    }
    *out = g;
    return LB_OK;
}

/* matrices a run up to `stop` reads: q, k, v before the attention output, o before the FFN input, gate and
 * up before down's input, all 7 for a whole layer */
static int mats_before(int stop) {
    switch (stop) {
    case LB_OBS_ATTN_IN: return 0;
    case LB_OBS_ATTN_OUT_IN: return 3;
    case LB_OBS_FFN_IN: return 4;
    case LB_OBS_FFN_DOWN_IN: return 6;
    default: return 7;
    }
}

static lb_status slot_put(lslot *sl, int i, const void *src, size_t bytes, void **dst, lb_error *err) {
    if (sl->cap[i] < bytes) {
        cudaFree(sl->buf[i]);
        sl->buf[i] = NULL;
        sl->cap[i] = 0;
        CK(cudaMalloc(&sl->buf[i], bytes ? bytes : 16), "for a layer's weights");
        sl->cap[i] = bytes;
    }
    if (bytes) CK(cudaMemcpy(sl->buf[i], src, bytes, cudaMemcpyHostToDevice), "uploading a layer");
    *dst = sl->buf[i];
    return LB_OK;
}

extern "C" lb_status lb_cuda_ctx_load_layer(lb_cuda_ctx *g, int slot, const lb_layer *l, int stop, lb_error *err) {
    if (slot < 0 || slot > 1 || !l) return lb_err_set(err, LB_ERR_ARG, "lb_cuda_ctx_load_layer: bad slot or layer");
    CK(cudaSetDevice(g->dev), "selecting the device");
    CK(cudaStreamSynchronize(g->st), "waiting for the device"); /* the slot's buffers may still be read */
    const lb_model_info *h = &g->m->info;
    const int64_t E = h->n_embd, D = h->head_dim, qd = h->n_head * D, kvd = h->n_head_kv * D, F = h->n_ff;
    lslot *sl = &g->slot[slot];
    const bool fresh = slot == 0 || sl->src != l;
    if (fresh) sl->have = 0;
    sl->src = NULL;
    const lb_weight *ws[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
    dweight *ds[] = {&sl->d.wq, &sl->d.wk, &sl->d.wv, &sl->d.wo, &sl->d.w_gate, &sl->d.w_up, &sl->d.w_down};
    const char *names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    for (int k = 0; k < mats_before(stop); k++) {
        if (sl->have & (1u << k)) continue;
        const lb_weight *w = ws[k];
        if (!cu_type_supported(w->type))
            return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: type %s has no CUDA kernels", names[k], lb_type_name(w->type));
        if (w->cols % 32)
            return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: row length %lld is not a multiple of 32", names[k], (long long)w->cols);
        *ds[k] = (dweight){w->type, NULL, w->rows, w->cols, lb_weight_row_bytes(w)};
        void *p = NULL;
        TRY(slot_put(sl, k, w->data, ds[k]->row_bytes * (size_t)w->rows, &p, err));
        ds[k]->data = (const uint8_t *)p;
        sl->have |= 1u << k;
    }
    if (fresh) {
        float *const src[] = {l->attn_norm, l->ffn_norm, l->q_norm, l->k_norm, l->bq, l->bk, l->bv, l->bo, l->b_gate, l->b_up, l->b_down};
        float **dst[] = {&sl->d.attn_norm, &sl->d.ffn_norm, &sl->d.q_norm, &sl->d.k_norm, &sl->d.bq, &sl->d.bk, &sl->d.bv,
                         &sl->d.bo, &sl->d.b_gate, &sl->d.b_up, &sl->d.b_down};
        const int64_t len[] = {E, E, D, D, qd, kvd, kvd, E, F, F, E};
        for (int i = 0; i < 11; i++) {
            void *p = NULL;
            if (src[i]) TRY(slot_put(sl, 7 + i, src[i], (size_t)len[i] * sizeof(float), &p, err));
            *dst[i] = (float *)p;
        }
    }
    if (slot == 1) sl->src = l;
    return LB_OK;
}

extern "C" void lb_cuda_ctx_set_device_observer(lb_cuda_ctx *g, lb_cuda_observer_fn fn, void *user) {
    if (!g) return;
    g->dobs = fn;
    g->dobs_user = user;
}

/* The layer of slot from point `from` to `stop` on x (T tokens, device): the checks, then the stream copied in and,
 * where the run leaves it changed, back: at the layer's end, and with `part` (lb_cuda_ctx_run_layer_part) also once
 * the run got past the attention block. `who` names the entry point in errors. */
static lb_status run_slot(lb_cuda_ctx *g, int slot, int64_t il, float *x, float *att, int64_t T, int from, int stop, bool part,
                          const char *who, lb_error *err) {
    if (!g->layerwise || slot < 0 || slot > 1 || T < 1 || T > g->n_batch)
        return lb_err_set(err, LB_ERR_ARG, "%s: not a layerwise context, or %lld tokens do not fit", who, (long long)T);
    const lslot *sl = &g->slot[slot];
    const unsigned need = ((1u << mats_before(stop)) - 1) & ~((1u << mats_before(from)) - 1);
    if ((sl->have & need) != need || !sl->d.attn_norm)
        return lb_err_set(err, LB_ERR_ARG, "%s: slot %d does not hold the layer's matrices", who, slot);
    CK(cudaSetDevice(g->dev), "selecting the device");
    lb_cu_stream = g->st;
    const size_t bytes = (size_t)(T * g->m->info.n_embd) * sizeof(float);
    CK(cudaMemcpyAsync(g->x, x, bytes, cudaMemcpyDeviceToDevice, g->st), "copying activations");
    TRY(layer_forward_part(g, &sl->d, il, T, T, from, stop, att, err));
    if (stop < 0 || (part && from <= LB_OBS_ATTN_OUT_IN && stop >= LB_OBS_FFN_IN))
        CK(cudaMemcpyAsync(x, g->x, bytes, cudaMemcpyDeviceToDevice, g->st), "copying activations");
    CK(cudaGetLastError(), "running a layer");
    return LB_OK;
}

extern "C" lb_status lb_cuda_ctx_run_layer(lb_cuda_ctx *g, int slot, int64_t il, float *x, int64_t T, int stop, lb_error *err) {
    return run_slot(g, slot, il, x, NULL, T, LB_OBS_ATTN_IN, stop, false, "lb_cuda_ctx_run_layer", err);
}

extern "C" lb_status lb_cuda_ctx_run_layer_part(lb_cuda_ctx *g, int slot, int64_t il, float *x, float *att, int64_t T, int from, int stop,
                                                lb_error *err) {
    if (!(from == LB_OBS_ATTN_IN || from == LB_OBS_ATTN_OUT_IN || from == LB_OBS_FFN_IN) ||
        !(stop == -1 || (stop >= from && stop <= LB_OBS_FFN_DOWN_IN)) || (from == LB_OBS_ATTN_OUT_IN && !att))
        return lb_err_set(err, LB_ERR_ARG, "lb_cuda_ctx_run_layer_part: bad part %d..%d of %lld tokens", from, stop, (long long)T);
    return run_slot(g, slot, il, x, att, T, from, stop, true, "lb_cuda_ctx_run_layer_part", err);
}

extern "C" void *lb_cuda_ctx_stream(const lb_cuda_ctx *g) { return (void *)g->st; }
extern "C" int lb_cuda_ctx_device(const lb_cuda_ctx *g) { return g->dev; }

/* ---------------------------------------------------------------- test entry ------------------------------- */

/* the matmul tests: out = x . W^T (path as lb_cuda_test_matmul's), or with base, out = base + x . W^T through mm's add */
static lb_status test_matmul(int device, lb_type type, const void *w, int64_t N, int64_t K, const float *x, int64_t T, const float *base,
                             float *out, int path, lb_error *err) {
    lb_status s = use_device(device, err);
    if (s != LB_OK) return s;
    lb_cu_stream = 0;
    if (!cu_type_supported(type) || K % 32) return lb_err_set(err, LB_ERR_UNSUPPORTED, "no CUDA kernel for this shape or type");
    if (base && (T < 1 || T > LB_CUDA_MV_MAX)) return lb_err_set(err, LB_ERR_UNSUPPORTED, "no accumulating CUDA kernel for %lld tokens", (long long)T);
    const size_t rb = lb_type_row_size(type, K);
    dweight d = {type, NULL, N, K, rb};
    float *xd = NULL, *od = NULL;
    const size_t out_n = (size_t)(path == 2 ? N * K : T * N);
    mm_ws ws;
    memset(&ws, 0, sizeof ws);
    CK(cudaMalloc((void **)&d.data, rb * (size_t)N), "test weights");
    cudaError_t e = cudaMalloc((void **)&xd, (size_t)(T * K) * sizeof(float) + 16);
    if (e == cudaSuccess) e = cudaMalloc((void **)&od, out_n * sizeof(float));
    if (e == cudaSuccess) e = cudaMemcpy((void *)d.data, w, rb * (size_t)N, cudaMemcpyHostToDevice);
    if (e == cudaSuccess && T) e = cudaMemcpy(xd, x, (size_t)(T * K) * sizeof(float), cudaMemcpyHostToDevice);
    if (e == cudaSuccess && base) e = cudaMemcpy(od, base, out_n * sizeof(float), cudaMemcpyHostToDevice);
    else if (e == cudaSuccess) e = cudaMemset(od, 0xff, out_n * sizeof(float)); /* NaN: every output must be written */
    if (e != cudaSuccess) s = cuda_fail(err, e, "in the matmul test");
    if (s == LB_OK && path == 2) cu_dequant_f32(&d, 0, N, od);
    else if (s == LB_OK) s = mm(&ws, xd, T, &d, od, N, path, false, err, base != NULL);
    if (s == LB_OK && (e = cudaDeviceSynchronize()) != cudaSuccess) s = cuda_fail(err, e, "in the matmul test");
    if (s == LB_OK && (e = cudaMemcpy(out, od, out_n * sizeof(float), cudaMemcpyDeviceToHost)) != cudaSuccess)
        s = cuda_fail(err, e, "reading the test result");
    mm_ws_free(&ws);
    cudaFree((void *)d.data);
    cudaFree(xd);
    cudaFree(od);
    return s;
}

extern "C" lb_status lb_cuda_test_matmul(int device, lb_type type, const void *w, int64_t N, int64_t K, const float *x,
                                         int64_t T, float *out, int path, lb_error *err) {
    return test_matmul(device, type, w, N, K, x, T, NULL, out, path, err);
}

extern "C" lb_status lb_cuda_test_matmul_add(int device, lb_type type, const void *w, int64_t N, int64_t K, const float *x, int64_t T,
                                             const float *base, float *out, lb_error *err) {
    return test_matmul(device, type, w, N, K, x, T, base, out, 0, err);
}

extern "C" lb_status lb_cuda_test_fused_act(int device, lb_type type, int op, const float *x, const float *y, const float *w,
                                            int64_t T, int64_t n, float eps, float *out_fused, float *out_sep, void *act_fused,
                                            void *act_sep, lb_error *err) {
    lb_status s = use_device(device, err);
    if (s != LB_OK) return s;
    lb_cu_stream = 0;
    const int be = cu_matvec_q8(type) ? (int)lb_type_traits_get(type)->block_elems : 0;
    if (!be || !cu_act_fusable(n, be) || op < 0 || op > 1 || T < 1)
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "no fused rounding for this type, shape or op");
    const size_t fn = (size_t)(T * n), fb = fn * sizeof(float), ab = fn + fn / 32 * sizeof(float2);
    float *dd = NULL; /* x1, x2, y, w, out1, out2 */
    uint8_t *a = NULL; /* act1, act2 */
    cudaError_t e = cudaMalloc((void **)&dd, 6 * fb);
    if (e == cudaSuccess) e = cudaMalloc((void **)&a, 2 * ab);
    float *x1 = dd, *x2 = dd + fn, *yd = dd + 2 * fn, *wd = dd + 3 * fn, *o1 = dd + 4 * fn, *o2 = dd + 5 * fn;
    if (e == cudaSuccess) e = cudaMemcpy(x1, x, fb, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(x2, x, fb, cudaMemcpyHostToDevice);
    if (e == cudaSuccess && y) e = cudaMemcpy(yd, y, fb, cudaMemcpyHostToDevice);
    if (e == cudaSuccess && w) e = cudaMemcpy(wd, w, (size_t)n * sizeof(float), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemset(a, 0x5a, 2 * ab);
    if (e != cudaSuccess) s = cuda_fail(err, e, "in the fused rounding test");
    if (s == LB_OK) {
        if (op == 1) {
            cu_silu_act(x1, yd, (int64_t)fn, be, a);
            cu_silu_mul(x2, yd, (int64_t)fn);
            o1 = x1;
            o2 = x2;
        } else {
            cu_rmsnorm_act(x1, wd, o1, T, (int)n, eps, be, a);
            cu_rmsnorm(x2, wd, o2, T, (int)n, n, eps);
        }
        cu_act_prepare(type, o1, (int)T, n, a + ab);
        if ((e = cudaDeviceSynchronize()) != cudaSuccess) s = cuda_fail(err, e, "in the fused rounding test");
    }
    if (s == LB_OK && ((e = cudaMemcpy(out_fused, o1, fb, cudaMemcpyDeviceToHost)) != cudaSuccess ||
                       (e = cudaMemcpy(out_sep, o2, fb, cudaMemcpyDeviceToHost)) != cudaSuccess ||
                       (e = cudaMemcpy(act_fused, a, ab, cudaMemcpyDeviceToHost)) != cudaSuccess ||
                       (e = cudaMemcpy(act_sep, a + ab, ab, cudaMemcpyDeviceToHost)) != cudaSuccess))
        s = cuda_fail(err, e, "reading the fused rounding test");
    cudaFree(dd);
    cudaFree(a);
    return s;
}

/* lb_cuda_test_attention's kernels 4 and 5: one token whose key and value are cache row pos0 (as floats, unrotated),
 * through the split kernel that rotates them itself (cu_att_new), against cu_rope_kv's launch then the split kernel:
 * the output and both caches bit for bit. Rotary tables of base 10000; inter: the interleaved layout; one: the
 * single-launch kernel both times (8 and 9). */
static lb_status test_attention_rope(const float *q, const uint16_t *kc, const uint16_t *vc, float *out, int H, int KV, int D, int64_t pos0,
                                     int inter, int one, lb_error *err) {
    const int64_t n = pos0 + 1, half = D / 2, kvd = (int64_t)KV * D;
    const size_t qn = (size_t)H * (size_t)D, cn = (size_t)(n * kvd), tn = (size_t)(n * half);
    /* host: q, the new rows k and v, the tables cs and sn; on the device twice (the fused run, then the separate one)
     * with two caches each */
    const size_t fl = qn + 2 * (size_t)kvd + 2 * tn, bytes = 2 * (fl * sizeof(float) + 2 * cn * sizeof(__half) + qn * sizeof(float));
    float *h = (float *)malloc(fl * sizeof(float));
    if (!h) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    memcpy(h, q, qn * sizeof(float));
    for (int64_t i = 0; i < kvd; i++) {
        h[qn + i] = __half2float(__ushort_as_half(kc[pos0 * kvd + i]));
        h[qn + kvd + i] = __half2float(__ushort_as_half(vc[pos0 * kvd + i]));
    }
    float *cs = h + qn + 2 * kvd, *sn = cs + tn;
    for (int64_t p = 0; p < n; p++)
        for (int64_t i = 0; i < half; i++) {
            const double a = (double)p * pow(10000.0, -2.0 * (double)i / D);
            cs[p * half + i] = (float)cos(a), sn[p * half + i] = (float)sin(a);
        }
    uint8_t *dev = NULL;
    float *part = NULL;
    int64_t *pd = NULL;
    lb_status s = LB_OK;
    cudaError_t e = cudaMalloc((void **)&dev, bytes);
    if (e == cudaSuccess) e = cudaMalloc((void **)&part, cu_attention_split_scratch(H, D, n));
    if (e == cudaSuccess) e = cudaMalloc((void **)&pd, sizeof(int64_t));
    if (e == cudaSuccess) e = cudaMemcpy(pd, &pos0, sizeof(int64_t), cudaMemcpyHostToDevice);
    const size_t run = bytes / 2; /* one run's buffers: the floats, the caches, the output */
    for (int r = 0; r < 2 && e == cudaSuccess; r++) {
        float *f = (float *)(dev + r * run), *o = f + fl;
        __half *k = (__half *)(o + qn), *v = k + cn;
        e = cudaMemcpy(f, h, fl * sizeof(float), cudaMemcpyHostToDevice);
        if (e == cudaSuccess) e = cudaMemcpy(k, kc, cn * sizeof(__half), cudaMemcpyHostToDevice);
        if (e == cudaSuccess) e = cudaMemcpy(v, vc, cn * sizeof(__half), cudaMemcpyHostToDevice);
        if (e == cudaSuccess) e = cudaMemset(o, 0xff, qn * sizeof(float));
        if (e != cudaSuccess) break;
        float *fk = f + qn, *fv = fk + kvd, *fc = fv + kvd, *fs = fc + tn;
        const cu_att_new rope = {fk, fv, fc, fs, inter, NULL, NULL};
        if (r == 1) cu_rope_kv(f, fk, fv, 1, H, KV, D, fc, fs, pd, inter != 0, k, v);
        cu_attention_split(f, k, v, o, 1, H, KV, D, pd, n, part, 0, NULL, r == 0 ? &rope : NULL, one);
        e = cudaGetLastError();
        if (e == cudaSuccess) e = cudaDeviceSynchronize();
    }
    if (e == cudaSuccess) e = cudaMemcpy(out, dev + fl * sizeof(float), qn * sizeof(float), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) s = cuda_fail(err, e, "in the rotary attention test");
    if (s == LB_OK) { /* the second run's output and caches: the first's bytes */
        const size_t cmp = qn * sizeof(float) + 2 * cn * sizeof(__half);
        uint8_t *hb = (uint8_t *)malloc(2 * cmp);
        if (!hb) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        else if ((e = cudaMemcpy(hb, dev + fl * sizeof(float), cmp, cudaMemcpyDeviceToHost)) != cudaSuccess ||
                 (e = cudaMemcpy(hb + cmp, dev + run + fl * sizeof(float), cmp, cudaMemcpyDeviceToHost)) != cudaSuccess)
            s = cuda_fail(err, e, "in the rotary attention test");
        else if (memcmp(hb, hb + cmp, qn * sizeof(float)))
            s = lb_err_set(err, LB_ERR_DEVICE, "the split kernel's own rotation gives another output than cu_rope_kv's");
        else if (memcmp(hb + qn * sizeof(float), hb + cmp + qn * sizeof(float), 2 * cn * sizeof(__half)))
            s = lb_err_set(err, LB_ERR_DEVICE, "the split kernel's own rotation stores other cache rows than cu_rope_kv's");
        free(hb);
    }
    cudaFree(dev);
    cudaFree(part);
    cudaFree(pd);
    free(h);
    return s;
}

extern "C" lb_status lb_cuda_test_attention(int device, const float *q, const uint16_t *kc, const uint16_t *vc, float *out, int T, int H,
                                            int KV, int D, int64_t pos0, int flash, lb_error *err) {
    if (T < 1 || H < 1 || KV < 1 || D < 2 || D % 2 || H % KV || pos0 < 0 || flash < 0 || flash > 9)
        return lb_err_set(err, LB_ERR_ARG, "lb_cuda_test_attention: bad shape or kernel");
    const int one = flash >= 6 ? 1 : 0; /* 6-9: 2-5 with the single launch (k_att_one) */
    if (one) flash -= 4;
    if (flash >= 4 && T != 1) return lb_err_set(err, LB_ERR_UNSUPPORTED, "the split kernel rotates one token only");
    if (flash == 1 && !cu_attention_flash_fits(H, KV, D)) return lb_err_set(err, LB_ERR_UNSUPPORTED, "no flash kernel for this shape");
    if (flash >= 2 && !cu_attention_split_fits(D)) return lb_err_set(err, LB_ERR_UNSUPPORTED, "no split attention kernel for this head size");
    lb_status s = use_device(device, err);
    if (s != LB_OK) return s;
    lb_cu_stream = 0;
    /* flash 3: the split kernel whose combining launch also rounds for the o product (q4_K's 256-element blocks where
     * H D allows, else q8_0's 32), checked here against cu_act_prepare of its result */
    const lb_type at = (int64_t)H * D % 256 == 0 ? LB_TYPE_Q4_K : LB_TYPE_Q8_0;
    const int abe = (int)lb_type_traits_get(at)->block_elems;
    if (one && !cu_attention_one_fits(H, KV, D, pos0 + T, flash == 3 ? abe : 0, true))
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "no single-launch attention for this shape and context");
    if (flash >= 4) return test_attention_rope(q, kc, vc, out, H, KV, D, pos0, flash - 4, one, err);
    const int64_t n = pos0 + T;
    const size_t qn = (size_t)T * (size_t)H * (size_t)D, cn = (size_t)n * (size_t)KV * (size_t)D;
    float *qd = NULL, *od = NULL, *part = NULL;
    __half *kd = NULL, *vd = NULL;
    int64_t *pd = NULL;
    if (flash == 3 && (D % 8 || !cu_act_fusable((int64_t)H * D, abe) || T > LB_CUDA_MV_MAX))
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "no rounding attention kernel for this shape");
    const size_t abytes = qn + qn / 32 * sizeof(float2);
    uint8_t *act = NULL;
    cudaError_t e = cudaMalloc((void **)&qd, qn * sizeof(float));
    if (e == cudaSuccess && flash == 3) e = cudaMalloc((void **)&act, 2 * abytes);
    if (e == cudaSuccess && flash >= 2) e = cudaMalloc((void **)&part, cu_attention_split_scratch(H, D, n));
    if (e == cudaSuccess) e = cudaMalloc((void **)&od, qn * sizeof(float));
    if (e == cudaSuccess) e = cudaMalloc((void **)&kd, cn * sizeof(__half));
    if (e == cudaSuccess) e = cudaMalloc((void **)&vd, cn * sizeof(__half));
    if (e == cudaSuccess) e = cudaMalloc((void **)&pd, sizeof(int64_t));
    if (e == cudaSuccess) e = cudaMemcpy(qd, q, qn * sizeof(float), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(kd, kc, cn * sizeof(__half), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(vd, vc, cn * sizeof(__half), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(pd, &pos0, sizeof(int64_t), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemset(od, 0xff, qn * sizeof(float)); /* NaN: every output must be written */
    if (e == cudaSuccess && !flash && (e = cu_attention_prepare(H, KV, D, n)) != cudaSuccess) cudaGetLastError(); /* not left for the next call */
    if (e == cudaSuccess) {
        if (flash == 1) cu_attention_flash(qd, kd, vd, od, T, H, KV, D, pd);
        else if (flash == 2) cu_attention_split(qd, kd, vd, od, T, H, KV, D, pd, n, part, 0, NULL, NULL, one);
        else if (flash == 3) {
            cu_attention_split(qd, kd, vd, od, T, H, KV, D, pd, n, part, abe, act, NULL, one);
            cu_act_prepare(at, od, T, (int64_t)H * D, act + abytes);
        }
        else cu_attention(qd, kd, vd, od, T, H, KV, D, pd, n);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaMemcpy(out, od, qn * sizeof(float), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) s = cuda_fail(err, e, "in the attention test");
    if (s == LB_OK && flash == 3) {
        uint8_t *h = (uint8_t *)malloc(2 * abytes);
        if (!h) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        else if ((e = cudaMemcpy(h, act, 2 * abytes, cudaMemcpyDeviceToHost)) != cudaSuccess) s = cuda_fail(err, e, "in the attention test");
        else if (memcmp(h, h + abytes, abytes)) s = lb_err_set(err, LB_ERR_DEVICE, "the attention's rounded output differs from cu_act_prepare's");
        free(h);
    }
    cudaFree(act);
    cudaFree(qd);
    cudaFree(od);
    cudaFree(part);
    cudaFree(kd);
    cudaFree(vd);
    cudaFree(pd);
    return s;
}
