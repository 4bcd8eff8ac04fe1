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
