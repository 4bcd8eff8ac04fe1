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

#include "kernels.cuh"
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

/*
 * The same columns by a warp per row, for a batch of one block column (256 columns): lane l holds the batch's
 * columns i1 + l + 32 j (j = 0..7) in registers, so that the updates t[i] -= er U[k, i] of a column are spread
 * over the lanes and read U's row coalesced. Every lane takes each column's decisions itself from the same
 * values (the owner's t[k] broadcast), lane 0 writes the code into the block and sums the loss in column order,
 * and each element receives row_columns' operations in its order: the same bits as the thread per row above.
 */
__global__ void __launch_bounds__(256) k_gptq_columns_warp(lb_type type, int run, size_t bb, uint8_t *out, size_t row_bytes, float *T,
                                                           const float *U, int64_t rows, int64_t n, int64_t i1, float *E, int64_t lde,
                                                           float *P, double *loss) {
    const int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = (int)(threadIdx.x % 32);
    if (r >= rows) return; /* whole warps */
    float *t = T + r * n;
    uint8_t *blk = out + (size_t)r * row_bytes + (size_t)(i1 / QK_K) * bb; /* the batch is this one block */
    float v[8], er_own[8];
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = t[i1 + lane + 32 * j], er_own[j] = 0;
    double ls = lane == 0 ? loss[r] : 0;
    gd::lb_grid g;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        for (int l = 0; l < 32; l++) {
            const int el = 32 * j + l;
            const int64_t k = i1 + el;
            const float *u = U + k * n;
            const float ukk = u[k];
            if (el % run == 0) gd::lb_grid_get(type, blk, el, &g);
            const float w = __shfl_sync(0xffffffffu, v[j], l);
            const int q = gd::lb_grid_nearest(&g, w);
            const float d = w - gd::lb_grid_value(&g, q);
            const float er = d / ukk;
            if (lane == l) er_own[j] = er;
            if (lane == 0) {
                gd::lb_grid_set(type, blk, el, q);
                ls += (double)d * d / ((double)ukk * ukk) / 2;
            }
#pragma unroll
            for (int jj = j; jj < 8; jj++)
                if (jj > j || lane > l) v[jj] = v[jj] - er * u[i1 + lane + 32 * jj];
            __syncwarp(); /* lane 0's code is in the block before a grid is read from it */
        }
    }
    /* each column's value before rounding is its value when its turn came: v holds it from then on */
#pragma unroll
    for (int j = 0; j < 8; j++) {
        P[r * n + i1 + lane + 32 * j] = v[j];
        t[i1 + lane + 32 * j] = v[j];
        E[r * lde + lane + 32 * j] = er_own[j];
    }
    if (lane == 0) loss[r] = ls;
}

/* LB_GPU_COLUMNS=thread: the thread-per-row kernel (the warp kernel's reference on the GPU) */
static bool columns_by_thread(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("LB_GPU_COLUMNS");
        v = e && !strcmp(e, "thread");
    }
    return v == 1;
}

cudaError_t cu_gptq_columns(lb_type type, uint8_t *out, size_t row_bytes, float *T, const float *U, int64_t rows, int64_t n,
                            int64_t i1, int64_t i2, float *E, int64_t lde, float *P, double *loss, cudaStream_t st) {
    const size_t bb = cu_kq_block_bytes(type);
    if (!bb) return cudaErrorInvalidValue;
    if (i2 - i1 == QK_K && i1 % QK_K == 0 && !columns_by_thread()) {
        const int threads = 256; /* eight rows per block */
        k_gptq_columns_warp<<<(unsigned)((rows * 32 + threads - 1) / threads), threads, 0, st>>>(type, gd::lb_grid_run(type), bb, out,
                                                                                                 row_bytes, T, U, rows, n, i1, E, lde,
                                                                                                 P, loss);
        return cudaGetLastError();
    }
    const int threads = 32; /* rows are few (1,024-28,672): one warp per block spreads them over more SMs */
    k_gptq_columns<<<(unsigned)((rows + threads - 1) / threads), threads, 0, st>>>(type, QK_K, gd::lb_grid_run(type), bb, out, row_bytes,
                                                                                   T, U, rows, n, i1, i2, E, lde, P, loss);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------- the coordinate descent ------------------ */

/*
 * algo/gptq.c's cd_sweep and cd_params for one row, by a warp (lane of nl lanes; the host copy: one lane).
 * Every lane makes every decision itself from the same memory (the same result), the row's g updates
 * (g -= delta H[j, :], the axpy kernels' y - a x) are split over the lanes, and lane 0 writes q and the
 * blocks; each lane edits a private copy of the current block, which lane 0 writes back. The operations
 * on each value and their order are the CPU's, so a row gets the CPU's bits.
 */
#ifdef __CUDA_ARCH__
#define LANE_SYNC() __syncwarp()
#define UNROLL _Pragma("unroll")
#define LANE_BCAST(v, src) __shfl_sync(0xffffffffu, (v), (src))
#else
#define LANE_SYNC() ((void)0)
#define UNROLL
#define LANE_BCAST(v, src) (v)
#endif

__host__ __device__ static void lane_axpy(float *g, float a, const float *x, int64_t n, int lane, int nl) {
    LANE_SYNC(); /* every lane has read what this overwrites */
    /* eight elements loaded before any is stored (g and x never overlap): a lane waits for memory once per
     * eight, not once per element; each element's operation is the same */
    int64_t i = lane;
    for (; i + 7 * nl < n; i += 8 * nl) {
        float gv[8], xv[8];
        UNROLL
        for (int u = 0; u < 8; u++) gv[u] = g[i + u * nl], xv[u] = x[i + u * nl];
        UNROLL
        for (int u = 0; u < 8; u++) g[i + u * nl] = gv[u] - a * xv[u];
    }
    for (; i < n; i += nl) g[i] = g[i] - a * x[i];
    LANE_SYNC();
}

__host__ __device__ static bool row_cd_elements(const lb_cd_rows *a, uint8_t *row, float *q, float *g, int lane, int nl) {
    const int64_t n = a->n;
    const int be = (int)a->be;
    const size_t bb = a->bb;
    bool changed = false;
    uint8_t blk[256];
    gd::lb_grid gr;
    for (int64_t b = 0; b < n / be; b++) {
        const int64_t b0 = b * be;
        bool dirty = false;
        memcpy(blk, row + (size_t)b * bb, bb);
        for (int e = 0; e < be; e++) {
            const int64_t j = b0 + e;
            const float hjj = a->H[j * n + j];
            if (e % a->run == 0) gd::lb_grid_get(a->type, blk, e, &gr);
            if (!(hjj > 0)) continue;
            const int code = gd::lb_grid_nearest(&gr, q[j] + g[j] / hjj);
            const float v = gd::lb_grid_value(&gr, code), delta = v - q[j];
            if (delta == 0) continue;
            /* accept only a strict decrease (rounding of g can otherwise cycle) */
            if (-2.0 * delta * g[j] + (double)delta * delta * hjj >= 0) continue;
            gd::lb_grid_set(a->type, blk, e, code);
            dirty = true;
            changed = true;
            LANE_SYNC();
            if (lane == 0) q[j] = v;
            lane_axpy(g, delta, a->H + j * n, n, lane, nl);
        }
        if (dirty && lane == 0) memcpy(row + (size_t)b * bb, blk, bb);
        LANE_SYNC();
    }
    return changed;
}

__host__ __device__ static bool row_cd_params(const lb_cd_rows *a, uint8_t *row, float *q, float *g, int lane, int nl) {
    const int np = gd::lb_grid_n_params(a->type);
    const int64_t n = a->n;
    const int run = a->run;
    bool changed = false;
    for (int64_t b = 0; b < n / a->be; b++) {
        const int64_t b0 = b * a->be;
        uint8_t blk[256];
        bool dirty = false;
        memcpy(blk, row + (size_t)b * a->bb, a->bb);
        for (int p = 0; p < np; p++) {
            gd::lb_grid_param pi;
            gd::lb_grid_param_info(a->type, p, &pi);
            const int64_t j0 = b0 + pi.first;
            int codes[32];
            float v_try[32], d_try[32], v_best[32], d_best[32];
            gd::lb_grid gr;
            const bool one = pi.first % run == 0 && pi.n <= run;
            if (one) gd::lb_grid_get(a->type, blk, pi.first, &gr);
            for (int k = 0; k < pi.n; k++) {
                if (!one) gd::lb_grid_get(a->type, blk, pi.first + k, &gr);
                codes[k] = gd::lb_grid_nearest(&gr, q[j0 + k]);
            }
            const int cur = gd::lb_grid_param_get(a->type, blk, p);
            int best_v = cur;
            double best_change = 0;
            for (int v = cur - 1; v <= cur + 1; v += 2) {
                if (v < pi.lo || v > pi.hi) continue;
                gd::lb_grid_param_set(a->type, blk, p, v);
                double lin = 0, quad = 0;
                if (one) gd::lb_grid_get(a->type, blk, pi.first, &gr);
                for (int k = 0; k < pi.n; k++) {
                    if (!one) gd::lb_grid_get(a->type, blk, pi.first + k, &gr);
                    v_try[k] = gd::lb_grid_value(&gr, codes[k]);
                    d_try[k] = v_try[k] - q[j0 + k];
                    lin += (double)d_try[k] * g[j0 + k];
                }
                /* the quad kernels' sums: acc[k] = sum over l, in order, of Ht[l][k] d_l (exact products), lane k's
                 * (k0 + lane for each k0 step), then quad summed over k in order by every lane from their values */
                const float *ht = a->Ht + (j0 / run) * run * run;
                for (int k0 = 0; k0 < pi.n; k0 += nl) {
                    const int k = k0 + lane;
                    double acc = 0;
                    if (k < pi.n)
                        for (int l = 0; l < pi.n; l++) acc += (double)ht[l * run + k] * (double)d_try[l];
                    for (int kk = k0; kk < k0 + nl && kk < pi.n; kk++) {
                        const double v = LANE_BCAST(acc, kk - k0);
                        if (d_try[kk] != 0) quad += v * d_try[kk];
                    }
                }
                const double change = -2.0 * lin + quad;
                if (change < best_change) {
                    best_change = change;
                    best_v = v;
                    memcpy(d_best, d_try, (size_t)pi.n * sizeof *d_best);
                    memcpy(v_best, v_try, (size_t)pi.n * sizeof *v_best);
                }
            }
            gd::lb_grid_param_set(a->type, blk, p, best_v);
            if (best_v == cur) continue;
            changed = true;
            dirty = true;
            LANE_SYNC();
            for (int k = 0; k < pi.n; k++) {
                gd::lb_grid_set(a->type, blk, pi.first + k, codes[k]);
                if (lane == 0) q[j0 + k] = v_best[k];
                if (d_best[k] != 0) lane_axpy(g, d_best[k], a->H + (j0 + k) * n, n, lane, nl);
            }
            LANE_SYNC(); /* lane 0's q before the next parameter reads it (a min moves a scale's elements) */
        }
        if (dirty && lane == 0) memcpy(row + (size_t)b * a->bb, blk, a->bb);
        LANE_SYNC();
    }
    return changed;
}

/* one sweep of an active row: its steps, then (scales) its parameters; the row stays active if anything moved */
__host__ __device__ static void row_cd(const lb_cd_rows *a, int64_t r, int lane, int nl) {
    if (!a->active[r]) return;
    uint8_t *row = a->out + (size_t)r * a->row_bytes;
    float *q = a->Q + r * a->n, *g = a->G + r * a->n;
    bool ch = row_cd_elements(a, row, q, g, lane, nl);
    if (a->scales && row_cd_params(a, row, q, g, lane, nl)) ch = true;
    LANE_SYNC();
    if (lane == 0) a->active[r] = ch;
}

template <int MINB>
__global__ void __launch_bounds__(128, MINB) k_gptq_cd(lb_cd_rows a) {
    const int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    if (r >= a.rows) return; /* whole warps */
    row_cd(&a, r, (int)(threadIdx.x % 32), 32);
}

cudaError_t cu_gptq_cd(const lb_cd_rows *a, cudaStream_t st) {
    if (!cu_kq_block_bytes(a->type) || a->be != QK_K || a->bb > 256) return cudaErrorInvalidValue;
    const int threads = 128; /* four rows per block */
    const unsigned blocks = (unsigned)((a->rows * 32 + threads - 1) / threads);
    /* compiled for at least 4 blocks (16 rows) per SM: 128 registers a thread instead of 156, 14 % faster on an
     * H100 (the 8B gate shape's descent 0.83 -> 0.71 s; 6 blocks gave no more); LB_GPU_CD_OCC=1 or 6 for the others */
    static const int occ = (int)cu_env_int("LB_GPU_CD_OCC", 4);
    if (occ >= 6) k_gptq_cd<6><<<blocks, threads, 0, st>>>(*a);
    else if (occ >= 4) k_gptq_cd<4><<<blocks, threads, 0, st>>>(*a);
    else k_gptq_cd<1><<<blocks, threads, 0, st>>>(*a);
    return cudaGetLastError();
}

extern "C" lb_status lb_cuda_gptq_cd_rows_host(const lb_cd_rows *a, lb_error *err) {
    if (!cu_kq_block_bytes(a->type) || a->be != QK_K || a->bb > 256 || a->run != gd::lb_grid_run(a->type) || (a->scales && !a->Ht))
        return lb_err_set(err, LB_ERR_ARG, "coordinate descent (host copy): type %d, block %lld, run %d", (int)a->type, (long long)a->be,
                          a->run);
    for (int64_t r = 0; r < a->rows; r++) row_cd(a, r, 0, 1);
    return LB_OK;
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
