/*
 * kq_encode.cu - lowbit's k-quant encoders (algo/kquant.c: ggml's encoding of quant/ref/kquants.c, then the
 * coordinate descent on the weighted error) on the GPU, one thread per 256-element super-block.
 *
 * No second implementation: this file compiles those C sources once more, as C++ for the device and the
 * host. LB_DEVICE_SOURCES turns their functions' LB_HD mark (core.h) into __host__ __device__, and each file
 * lands in a namespace of its own, so that its static helpers do not meet the other file's namespaced or
 * global ones. With -fmad=false (no contraction into fused multiply-adds, CMakeLists.txt) and CUDA's IEEE
 * division and square root, every float and double operation is the C code's, in its order: the same bytes
 * as quantize_<t>_best on the CPU, which tests/cuda/test_cuda_gptq.c checks exactly on a GPU. The host copy
 * of the same C++ (lb_cuda_kq_encode_host) is checked against the C encoders without a GPU
 * (tests/cudahost/test_kq_device_source.c), which catches a translation that C++ reads differently.
 */
#define LB_DEVICE_SOURCES 1

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "gptq.h"
#include "../algo/awq.h" /* the clip search's pieces, LB_HD: compiled here for the device too */
#include "../algo/kquant.h"
#include "../core/core.h"
#include "../quant/blocks.h"
#include "../quant/cpu/cpu.h"
#include "../quant/ref/ref.h"
}

#include "kq_encode.cuh"

#define restrict __restrict__
namespace lb_kqd {
#include "../core/fp16.c" /* lb_fp16_to_f32 / lb_f32_to_fp16 for both files below */
namespace ref {
#include "../quant/ref/kquants.c"
}
namespace best {
using namespace lb_kqd::ref; /* quantize_<t>_ref and dequantize_row_<t>_ref */
#include "../algo/kquant.c"
}
} // namespace lb_kqd
#undef restrict

namespace kb = lb_kqd::best;

static int kq_fmt_of(lb_type t) {
    switch (t) {
    case LB_TYPE_Q2_K: return kb::KQ_Q2_K;
    case LB_TYPE_Q3_K: return kb::KQ_Q3_K;
    case LB_TYPE_Q4_K: return kb::KQ_Q4_K;
    case LB_TYPE_Q5_K: return kb::KQ_Q5_K;
    case LB_TYPE_Q6_K: return kb::KQ_Q6_K;
    default: return -1;
    }
}

size_t cu_kq_block_bytes(lb_type t) {
    switch (t) {
    case LB_TYPE_Q2_K: return sizeof(block_q2_K);
    case LB_TYPE_Q3_K: return sizeof(block_q3_K);
    case LB_TYPE_Q4_K: return sizeof(block_q4_K);
    case LB_TYPE_Q5_K: return sizeof(block_q5_K);
    case LB_TYPE_Q6_K: return sizeof(block_q6_K);
    default: return 0;
    }
}

/* block b of row r: thread i = r * nblk + b */
__global__ void k_kq_encode(int fmt, const float *x, int64_t ldx, int64_t rows, int64_t nblk, const float *imp, uint8_t *y,
                            int64_t ldy) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * nblk) return;
    const int64_t r = i / nblk, b = i % nblk;
    const kb::kq_spec sp = kb::kq_spec_of((kb::kq_fmt)fmt);
    kb::encode_block(&sp, x + r * ldx + b * QK_K, imp ? imp + b * QK_K : NULL, y + r * ldy + (size_t)b * sp.block_bytes);
}

cudaError_t cu_kq_encode(lb_type t, const float *x, int64_t ldx, int64_t rows, int64_t nblk, const float *imp, uint8_t *y,
                         int64_t ldy, cudaStream_t st) {
    const int fmt = kq_fmt_of(t);
    if (fmt < 0) return cudaErrorInvalidValue;
    const int64_t n = rows * nblk;
    if (n <= 0) return cudaSuccess;
    const int threads = 64; /* each thread holds a few KiB of local arrays */
    k_kq_encode<<<(unsigned)((n + threads - 1) / threads), threads, 0, st>>>(fmt, x, ldx, rows, nblk, imp, y, ldy);
    return cudaGetLastError();
}

/* the same code on the host, block by block (the check of the C++ translation on a machine without a GPU) */
extern "C" lb_status lb_cuda_kq_encode_host(lb_type t, const float *x, int64_t ldx, int64_t rows, int64_t nblk, const float *imp,
                                            uint8_t *y, int64_t ldy, lb_error *err) {
    const int fmt = kq_fmt_of(t);
    if (fmt < 0) return lb_err_set(err, LB_ERR_ARG, "encode (host copy): %d is not a k-quant type", (int)t);
    const kb::kq_spec sp = kb::kq_spec_of((kb::kq_fmt)fmt);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < nblk; b++)
            kb::encode_block(&sp, x + r * ldx + b * QK_K, imp ? imp + b * QK_K : NULL, y + r * ldy + (size_t)b * sp.block_bytes);
    return LB_OK;
}

/* ---------------------------------------------------------------- AWQ ----------------------------------------- */

/*
 * lb_awq_clip's search (algo/awq.c clip_row) by (row, block): for one ratio, every block of every row clamped
 * (awq.h's lb_awq_clamp), the clamped rows encoded (k_kq_encode, or ggml's reference encoder for --encoder
 * ref), then each block decoded and scored by awq.h's lb_awq_block_error (score_block), the best ratio so far
 * kept. awq.c runs the same functions, so the clamps and choices are the CPU's.
 */
/* block g of a row: decode q's block, score it against w, keep it (the clamped xc) when it is the first ratio or
 * strictly better */
__host__ __device__ static void score_block(const kb::kq_spec *sp, const double *H, int64_t d, int64_t g, const float *w, const float *xc,
                                            const uint8_t *qb, int i, double *berr, float *out, uint8_t *ch) {
    const int64_t be = QK_K, o = g * be;
    float xq[QK_K];
    kb::kq_to_float(sp, qb, xq);
    double e[QK_K];
    for (int64_t k = 0; k < be; k++) e[k] = (double)w[o + k] - (double)xq[k];
    const double err = lb_awq_block_error(H, d, o, be, e);
    if (i == 0 || err < *berr) {
        *berr = err;
        for (int64_t k = 0; k < be; k++) out[o + k] = xc[o + k];
        if (ch) *ch = (uint8_t)i;
    }
}

__host__ __device__ static void encode_one(const kb::kq_spec *sp, bool ref, const float *x, const float *im, uint8_t *blk) {
    if (ref) kb::kq_quantize_ref(sp, x, blk, im);
    else kb::encode_block(sp, x, im, blk);
}

__global__ void k_awq_clamp(const float *w, int64_t rows, int64_t d, bool offset, float ratio, float *xc) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, nb = d / QK_K;
    if (i >= rows * nb) return;
    lb_awq_clamp(w + i * QK_K, QK_K, offset, ratio, xc + i * QK_K); /* rows are contiguous: block i of the whole */
}

__global__ void k_awq_encode(int fmt, bool ref, const float *x, int64_t rows, int64_t d, const float *im, uint8_t *q) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, nb = d / QK_K;
    if (i >= rows * nb) return;
    const kb::kq_spec sp = kb::kq_spec_of((kb::kq_fmt)fmt);
    encode_one(&sp, ref, x + i * QK_K, im ? im + (i % nb) * QK_K : NULL, q + (size_t)i * sp.block_bytes);
}

__global__ void k_awq_score(int fmt, const double *H, const float *w, const float *xc, const uint8_t *q, int64_t rows, int64_t d, int i,
                            double *berr, float *out, uint8_t *ch) {
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, nb = d / QK_K;
    if (t >= rows * nb) return;
    const int64_t r = t / nb, g = t % nb;
    const kb::kq_spec sp = kb::kq_spec_of((kb::kq_fmt)fmt);
    score_block(&sp, H, d, g, w + r * d, xc + r * d, q + (size_t)t * sp.block_bytes, i, berr + t, out + r * d, ch ? ch + t : NULL);
}

cudaError_t cu_awq_clip(lb_type t, bool ref, const float *dw, int64_t rows, int64_t d, const double *dH, const float *dim, float *dout,
                        uint8_t *dch, float *dxc, uint8_t *dq, double *dberr, cudaStream_t st) {
    const int fmt = kq_fmt_of(t);
    if (fmt < 0 || d % QK_K) return cudaErrorInvalidValue;
    const int64_t n = rows * (d / QK_K);
    const unsigned gb = (unsigned)((n + 63) / 64);
    for (int i = 0; i < 10; i++) { /* LB_AWQ_CLIP_STEPS ratios 1 - i / LB_AWQ_CLIP_GRID (awq.h) */
        const float ratio = 1.0f - (float)i / 20.0f;
        k_awq_clamp<<<gb, 64, 0, st>>>(dw, rows, d, lb_awq_has_offset(t), ratio, dxc);
        k_awq_encode<<<gb, 64, 0, st>>>(fmt, ref, dxc, rows, d, dim, dq);
        k_awq_score<<<gb, 64, 0, st>>>(fmt, dH, dw, dxc, dq, rows, d, i, dberr, dout, dch);
    }
    return cudaGetLastError();
}

/* the host copy of the same clip search (the check without a GPU) */
extern "C" lb_status lb_cuda_awq_clip_host(float *w, int64_t rows, int64_t d, const double *H, lb_type t, lb_encoder enc,
                                           const float *imatrix, uint8_t *choice, lb_error *err) {
    const int fmt = kq_fmt_of(t);
    if (fmt < 0 || d % QK_K) return lb_err_set(err, LB_ERR_ARG, "AWQ clip (host copy): type %d, %lld columns", (int)t, (long long)d);
    const kb::kq_spec sp = kb::kq_spec_of((kb::kq_fmt)fmt);
    const int64_t nb = d / QK_K;
    float *xc = (float *)malloc(sizeof *xc * (size_t)d), *out = (float *)malloc(sizeof *out * (size_t)d);
    uint8_t *q = (uint8_t *)malloc(sp.block_bytes * (size_t)nb);
    double *berr = (double *)malloc(sizeof *berr * (size_t)nb);
    if (!xc || !out || !q || !berr) {
        free(xc), free(out), free(q), free(berr);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    for (int64_t r = 0; r < rows; r++) {
        float *wr = w + r * d;
        for (int i = 0; i < 10; i++) {
            const float ratio = 1.0f - (float)i / 20.0f;
            for (int64_t g = 0; g < nb; g++) lb_awq_clamp(wr + g * QK_K, QK_K, lb_awq_has_offset(t), ratio, xc + g * QK_K);
            for (int64_t g = 0; g < nb; g++)
                encode_one(&sp, enc == LB_ENCODER_REF, xc + g * QK_K, imatrix ? imatrix + g * QK_K : NULL, q + (size_t)g * sp.block_bytes);
            for (int64_t g = 0; g < nb; g++)
                score_block(&sp, H, d, g, wr, xc, q + (size_t)g * sp.block_bytes, i, berr + g, out, choice ? choice + r * nb + g : NULL);
        }
        memcpy(wr, out, sizeof *out * (size_t)d);
    }
    free(xc), free(out), free(q), free(berr);
    return LB_OK;
}

/*
 * lb_awq_search's errors for one candidate (algo/awq.c): ws = w * s, encoded by ggml's reference encoder,
 * decoded, e = w - deq / s, per block as awq.c does per row (the same float operations); the loss e H e^T is
 * the caller's GEMM.
 */
__global__ void k_awq_cand_error(int fmt, const float *w, const float *s, int64_t rows, int64_t d, float *e) {
    const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, nb = d / QK_K;
    if (t >= rows * nb) return;
    const int64_t g = t % nb;
    const kb::kq_spec sp = kb::kq_spec_of((kb::kq_fmt)fmt);
    const float *wb = w + t * QK_K, *sb = s + g * QK_K;
    float x[QK_K], xq[QK_K];
    uint8_t blk[256];
    for (int k = 0; k < QK_K; k++) x[k] = wb[k] * sb[k];
    kb::kq_quantize_ref(&sp, x, blk, NULL);
    kb::kq_to_float(&sp, blk, xq);
    for (int k = 0; k < QK_K; k++) e[t * QK_K + k] = wb[k] - xq[k] / sb[k];
}

cudaError_t cu_awq_cand_error(lb_type t, const float *dw, const float *ds, int64_t rows, int64_t d, float *de, cudaStream_t st) {
    const int fmt = kq_fmt_of(t);
    if (fmt < 0 || d % QK_K) return cudaErrorInvalidValue;
    const int64_t n = rows * (d / QK_K);
    k_awq_cand_error<<<(unsigned)((n + 63) / 64), 64, 0, st>>>(fmt, dw, ds, rows, d, de);
    return cudaGetLastError();
}
