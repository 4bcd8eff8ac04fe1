/*
 * gptq_sweep.cu - the columns of GPTQ's sweep on the GPU (algo/gptq.c's quantize_column, one thread per row)
 * and the host copy of a whole device pass (lb_cuda_gptq_pass_host, the check of this code without a GPU).
 *
 * The element work reads and writes the blocks through quant/ref/grid.c (each element's grid from its block's
 * scales, its code written back), compiled here once more as C++ for the device and the host like the
 * encoders of kq_encode.cu: LB_DEVICE_SOURCES makes the LB_HD functions __host__ __device__, grid.c and
 * core/fp16.c sit in a namespace of their own, and -fmad=false (CMakeLists.txt) keeps every product and
 * difference rounded as in C. row_columns below performs quantize_column's operations for one row in its
 * order, so a pass here gives the bits of the same pass with the columns on CPU threads.
 */
#define LB_DEVICE_SOURCES 1

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../core/core.h"
#include "../quant/blocks.h"
#include "gptq.h"
}

#include "kq_encode.cuh"

namespace lb_gsd {
#include "../core/fp16.c"
namespace grid { /* grid.h's declarations land here too (not included above: C++ would find the global
                   ones beside these through the lb_type arguments) */
#include "../quant/ref/grid.c"
}
} // namespace lb_gsd

namespace gd = lb_gsd::grid;

/*
 * Columns [i1, i2) of one row in the default order (processing order = column order): t the row's weights
 * (the batch's columns current), blk the row's blocks (this batch's scales in place), U (n, n) GPTQ's
 * upper inverse factor, e the row's batch errors, p the row's values before rounding, *loss its GPTQ loss.
 * quantize_column's element operations, one row at a time: the grid of a run read at its first element,
 * the nearest code, the error scaled by U_kk, the loss term, then t[k+1 .. i2) -= er U[k, k+1 .. i2)
 * (the axpy kernels' y - a x, rounded twice).
 */
__host__ __device__ static void row_columns(lb_type type, int be, int run, size_t bb, uint8_t *blk, float *t, const float *U,
                                            int64_t n, int64_t i1, int64_t i2, float *e, float *p, double *loss) {
    gd::lb_grid g;
    for (int64_t k = i1; k < i2; k++) {
        const int el = (int)(k % be);
        uint8_t *b = blk + (size_t)(k / be) * bb;
        const float *u = U + k * n;
        const float ukk = u[k];
        if (el % run == 0) gd::lb_grid_get(type, b, el, &g);
        const float w = t[k];
        p[k] = w;
        const int q = gd::lb_grid_nearest(&g, w);
        gd::lb_grid_set(type, b, el, q);
        const float d = w - gd::lb_grid_value(&g, q);
        const float er = d / ukk;
        e[k - i1] = er;
        *loss += (double)d * d / ((double)ukk * ukk) / 2;
        for (int64_t i = k + 1; i < i2; i++) t[i] = t[i] - er * u[i];
    }
}

__global__ void k_gptq_columns(lb_type type, int be, int run, size_t bb, uint8_t *out, size_t row_bytes, float *T, const float *U,
                               int64_t rows, int64_t n, int64_t i1, int64_t i2, float *E, int64_t lde, float *P, double *loss) {
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    row_columns(type, be, run, bb, out + (size_t)r * row_bytes, T + r * n, U, n, i1, i2, E + r * lde, P + r * n, loss + r);
}

cudaError_t cu_gptq_columns(lb_type type, uint8_t *out, size_t row_bytes, float *T, const float *U, int64_t rows, int64_t n,
                            int64_t i1, int64_t i2, float *E, int64_t lde, float *P, double *loss, cudaStream_t st) {
    const size_t bb = cu_kq_block_bytes(type);
    if (!bb) return cudaErrorInvalidValue;
    const int threads = 32; /* rows are few (1,024-28,672): one warp per block spreads them over more SMs */
    k_gptq_columns<<<(unsigned)((rows + threads - 1) / threads), threads, 0, st>>>(type, QK_K, gd::lb_grid_run(type), bb, out, row_bytes,
                                                                                   T, U, rows, n, i1, i2, E, lde, P, loss);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------- the host copy of a pass ----------------- */

extern "C" lb_status lb_cuda_gptq_pass_host(lb_type t, const float *W, int64_t rows, int64_t n, int64_t batch, const float *U,
                                            const float *imp, bool static_scales, float *T, float *P, float *E, uint8_t *out,
                                            size_t row_bytes, double *loss, lb_error *err) {
    const size_t bb = cu_kq_block_bytes(t);
    if (!bb || batch != QK_K || n % QK_K || rows <= 0)
        return lb_err_set(err, LB_ERR_ARG, "gptq pass (host copy): type %d, %lld columns, batch %lld", (int)t, (long long)n,
                          (long long)batch);
    const int run = gd::lb_grid_run(t);
    memcpy(T, W, (size_t)rows * (size_t)n * sizeof *T);
    for (int64_t r = 0; r < rows; r++) loss[r] = 0;
    lb_status s = LB_OK;
    if (static_scales) s = lb_cuda_kq_encode_host(t, P, n, rows, n / QK_K, imp, out, (int64_t)row_bytes, err);
    for (int64_t i1 = 0; s == LB_OK && i1 < n; i1 += batch) {
        const int64_t i2 = i1 + batch;
        if (!static_scales)
            s = lb_cuda_kq_encode_host(t, T + i1, n, rows, 1, imp ? imp + i1 : NULL, out + (size_t)(i1 / QK_K) * bb, (int64_t)row_bytes,
                                       err);
        for (int64_t r = 0; s == LB_OK && r < rows; r++)
            row_columns(t, QK_K, run, bb, out + (size_t)r * row_bytes, T + r * n, U, n, i1, i2, E + r * batch, P + r * n, loss + r);
        /* the delayed update in the CPU's order: each element, the batch's columns one after another */
        for (int64_t r = 0; s == LB_OK && r < rows; r++)
            for (int64_t c = i2; c < n; c++) {
                float v = T[r * n + c];
                for (int64_t k = 0; k < batch; k++) v = v - E[r * batch + k] * U[(i1 + k) * n + c];
                T[r * n + c] = v;
            }
    }
    return s;
}
