/*
 * flash.cu - causal grouped-query attention for prompts on tensor cores, flash style: a block takes FA_ROWS
 * query rows (the heads of one KV head's group for FA_ROWS / group consecutive tokens), walks the visible keys
 * in tiles of FA_BK through shared memory, and keeps per row the running maximum, the running sum of the
 * exponentials and the unnormalized output (the online softmax), so no score row is held whole and the
 * context length is not bounded by shared memory. Products on tensor cores (WMMA 16x16x16: F16 operands,
 * F32 accumulation): S = Q K^T with q rounded to F16, and P V with the probabilities rounded to F16, so the
 * result is not the CPU's order or precision (ops.cu's k_attention is: F32 q, float exponentials, double
 * sums); tests/cuda compares the forward pass with the CPU's within its tolerances. Used for prompts (more
 * than LB_CUDA_MV_MAX tokens) with LB_CUDA_FLASH=1, until tests/cuda has run it on a GPU.
 */
#include "kernels.cuh"

#include <float.h>
#include <math.h>
#include <mma.h>

using namespace nvcuda;

#define STREAM lb_cu_stream
#define FA_ROWS 64 /* query rows per block: four warps of 16 */
#define FA_BK 64   /* keys per tile */
#define FA_THREADS 128
#define FA_DMAX 256

static size_t fa_smem(int D) {
    return (size_t)FA_ROWS * D * 2 + 2 * (size_t)FA_BK * D * 2 + (size_t)FA_ROWS * FA_BK * 4 + (size_t)FA_ROWS * FA_BK * 2 +
           (size_t)FA_ROWS * D * 4 + 2 * FA_ROWS * 4;
}

/* grid (ceil(T / bq), KV): block (x, kvh) takes tokens [x bq, x bq + bq) and the hb heads of KV head kvh; row r
 * of the block is token x bq + r / hb, head kvh hb + r % hb (rows from bq hb on are padding) */
__global__ void __launch_bounds__(FA_THREADS) k_flash(const float *q, const __half *kc, const __half *vc, float *out, int T, int H,
                                                      int KV, int D, int hb, int bq, const int64_t *pos) {
    extern __shared__ __align__(32) unsigned char fa_sm[];
    __half *Qs = (__half *)fa_sm, *Ks = Qs + FA_ROWS * D, *Vs = Ks + FA_BK * D;
    float *Ss = (float *)(Vs + FA_BK * D);
    __half *Ps = (__half *)(Ss + FA_ROWS * FA_BK);
    float *Os = (float *)(Ps + FA_ROWS * FA_BK), *mrow = Os + FA_ROWS * D, *lrow = mrow + FA_ROWS;
    const int64_t pos0 = *pos;
    const int kvh = blockIdx.y, t0 = blockIdx.x * bq, h0 = kvh * hb, kvd = KV * D;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int i = threadIdx.x; i < FA_ROWS * D; i += FA_THREADS) {
        const int r = i / D, c = i % D, tl = r / hb, t = t0 + tl;
        const float v = tl < bq && t < T ? q[((int64_t)t * H + h0 + r % hb) * D + c] : 0.0f;
        Qs[i] = __float2half_rn(v);
        Os[i] = 0.0f;
    }
    for (int r = threadIdx.x; r < FA_ROWS; r += FA_THREADS) mrow[r] = -INFINITY, lrow[r] = 0.0f;
    const int t_last = (t0 + bq < T ? t0 + bq : T) - 1;
    const int64_t nkeys = pos0 + t_last + 1;
    const float scale = 1.0f / sqrtf((float)D);
    __syncthreads();
    for (int64_t k0 = 0; k0 < nkeys; k0 += FA_BK) {
        for (int i = threadIdx.x; i < FA_BK * D; i += FA_THREADS) {
            const int j = i / D, c = i % D;
            const int64_t p = k0 + j;
            const bool in = p < nkeys;
            Ks[i] = in ? kc[p * kvd + (int64_t)kvh * D + c] : __float2half_rn(0.0f);
            Vs[i] = in ? vc[p * kvd + (int64_t)kvh * D + c] : __float2half_rn(0.0f);
        }
        __syncthreads();
        /* S (the warp's 16 rows x FA_BK) = Q K^T */
        for (int n = 0; n < FA_BK / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
                wmma::load_matrix_sync(a, Qs + warp * 16 * D + kk * 16, D);
                wmma::load_matrix_sync(b, Ks + n * 16 * D + kk * 16, D);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Ss + warp * 16 * FA_BK + n * 16, acc, FA_BK, wmma::mem_row_major);
        }
        __syncwarp();
        { /* the online softmax of the warp's rows: two lanes per row, FA_BK / 2 keys each */
            const int r = warp * 16 + lane / 2, part = lane % 2, tl = r / hb;
            const int64_t qpos = pos0 + t0 + tl;
            float *srow = Ss + r * FA_BK;
            float mx = -INFINITY;
            for (int j = part * (FA_BK / 2); j < (part + 1) * (FA_BK / 2); j++) {
                const float v = k0 + j <= qpos && k0 + j < nkeys ? srow[j] * scale : -INFINITY;
                srow[j] = v;
                mx = fmaxf(mx, v);
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            const float m_old = mrow[r], m_new = fmaxf(m_old, mx);
            float sum = 0.0f;
            for (int j = part * (FA_BK / 2); j < (part + 1) * (FA_BK / 2); j++) {
                const float p = m_new == -INFINITY ? 0.0f : expf(srow[j] - m_new);
                Ps[r * FA_BK + j] = __float2half_rn(p);
                sum += p;
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            const float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
            __syncwarp();
            if (part == 0) lrow[r] = lrow[r] * alpha + sum, mrow[r] = m_new;
            for (int c = part; c < D; c += 2) Os[r * D + c] *= alpha;
        }
        __syncwarp();
        /* O (the warp's 16 rows x D) += P V */
        for (int n = 0; n < D / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, Os + warp * 16 * D + n * 16, D, wmma::mem_row_major);
            for (int kk = 0; kk < FA_BK / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
                wmma::load_matrix_sync(a, Ps + warp * 16 * FA_BK + kk * 16, FA_BK);
                wmma::load_matrix_sync(b, Vs + kk * 16 * D + n * 16, D);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Os + warp * 16 * D + n * 16, acc, D, wmma::mem_row_major);
        }
        __syncthreads(); /* the next tile overwrites Ks and Vs */
    }
    for (int i = threadIdx.x; i < FA_ROWS * D; i += FA_THREADS) {
        const int r = i / D, c = i % D, tl = r / hb, t = t0 + tl;
        if (tl < bq && t < T) out[((int64_t)t * H + h0 + r % hb) * D + c] = Os[i] / lrow[r];
    }
}

static bool flash_env(void) {
    const char *v = getenv("LB_CUDA_FLASH");
    return v && v[0] == '1';
}

/* read once (a function-local static: initialized once even when several host threads ask at the same time) */
static bool flash_on(void) {
    static const bool on = flash_env();
    return on;
}

bool cu_attention_flash_ok(int H, int KV, int D) {
    return flash_on() && KV > 0 && H % KV == 0 && H / KV <= FA_ROWS && D % 16 == 0 && D <= FA_DMAX;
}

cudaError_t cu_attention_flash_prepare(int D) {
    const size_t smem = fa_smem(D);
    if (smem <= 48 * 1024) return cudaSuccess;
    return cudaFuncSetAttribute(k_flash, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
}

void cu_attention_flash(const float *q, const __half *kc, const __half *vc, float *out, int T, int H, int KV, int D, const int64_t *pos) {
    const int hb = H / KV, bq = FA_ROWS / hb;
    k_flash<<<dim3((unsigned)((T + bq - 1) / bq), (unsigned)KV), FA_THREADS, fa_smem(D), STREAM>>>(q, kc, vc, out, T, H, KV, D, hb, bq, pos);
}
