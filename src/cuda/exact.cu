/*
 * exact.cu - the kernels of an exact context (lb_context_params.exact): the CPU's arithmetic in the CPU's order,
 * so that a forward pass on the GPU gives the CPU's logits to the bit (tests/cuda/test_cuda_forward.c compares
 * them with memcmp on every weight type and architecture).
 *
 * The orders are the ones quant/cpu/cpu.h specifies and model/forward.c follows:
 * - block-type products: the activations rounded to 8 bits per weight block (mv.cu's k_act_round, the CPU's
 *   lb_act_quantize to the bit); each weight block unpacked by quant/cpu/unpack_ref.h, the same source cpu_ref.c
 *   compiles (codes, integer scale and min multipliers, float d and dm); per block the exact integer sums S and M;
 *   then one float chain per row and token over the blocks in order: acc = fmaf(d * da, S, acc), and with a min
 *   term acc = fmaf(dm * da, M, acc). The lanes of a warp form the blocks' terms, one lane per token runs the chain.
 * - float-weight products (F32, F16, BF16 on F32 activations): element k into partial k mod 8 by fmaf, the
 *   partials reduced by lb_reduce8, the last K mod 8 elements added one by one (one lane per partial).
 * - RMSNorm: the sum of squares in double, sequentially in element order, r = (float)(1 / sqrt(ss / n + eps)),
 *   out = w * (x * r); with a residual, x += y first.
 * - attention (F32 cache, one block per head and token): scores as the float-weight dot, softmax as cpu.h
 *   specifies (scale, max, lb_expf, 8 double partials by position mod 8, the fixed tree, one reciprocal; the
 *   canonical NaN for a row without a finite result), each output element the fmaf chain in order of position.
 * - SwiGLU: g / (1 + lb_expf(-g)) * u.
 * Compiled with -fmad=false (CMakeLists.txt): no product and sum is contracted unless written as fmaf, as the C
 * code is compiled with -ffp-contract=off. Slow next to the default kernels (one thread runs each sequential
 * chain); exact contexts exist to check the GPU against the CPU, not for speed.
 */
#define LB_DEVICE_SOURCES 1

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "../core/core.h"
#include "../quant/blocks.h"
#include "../quant/cpu/cpu.h"
}

#include "cuda.h"
#include "kernels.cuh"
#include "quant.cuh"

/* the IQ4_NL codebook value of code c: quant.cuh's register table on the device, blocks.h's on the host */
__host__ __device__ static inline int8_t xd_iq4nl(int c) {
#ifdef __CUDA_ARCH__
    return (int8_t)kiq(c);
#else
    return kvalues_iq4nl[c];
#endif
}

namespace lb_xd {
#include "../core/fp16.c" /* lb_fp16_to_f32, LB_HD */
#define LB_IQ4NL(c) xd_iq4nl(c)
#include "../quant/cpu/unpack_ref.h"
#undef LB_IQ4NL
} // namespace lb_xd

#define STREAM lb_cu_stream

/* ---------------------------------------------------------------- products ------------------------------------ */

/* the block at blk of a weight of type t (be elements) unpacked by the reference: codes, scales and min multipliers, d, dm */
__host__ __device__ static void xd_unpack(int t, const uint8_t *blk, int be, const lb_qrow *o) {
    switch (t) {
    case LB_TYPE_Q4_0: lb_xd::unpack_q4_0_ref(blk, be, o); break;
    case LB_TYPE_Q4_1: lb_xd::unpack_q4_1_ref(blk, be, o); break;
    case LB_TYPE_Q5_0: lb_xd::unpack_q5_0_ref(blk, be, o); break;
    case LB_TYPE_Q5_1: lb_xd::unpack_q5_1_ref(blk, be, o); break;
    case LB_TYPE_Q8_0: lb_xd::unpack_q8_0_ref(blk, be, o); break;
    case LB_TYPE_Q2_K: lb_xd::unpack_q2_K_ref(blk, be, o); break;
    case LB_TYPE_Q3_K: lb_xd::unpack_q3_K_ref(blk, be, o); break;
    case LB_TYPE_Q4_K: lb_xd::unpack_q4_K_ref(blk, be, o); break;
    case LB_TYPE_Q5_K: lb_xd::unpack_q5_K_ref(blk, be, o); break;
    case LB_TYPE_Q6_K: lb_xd::unpack_q6_K_ref(blk, be, o); break;
    case LB_TYPE_IQ4_NL: lb_xd::unpack_iq4_nl_ref(blk, be, o); break;
    case LB_TYPE_IQ4_XS: lb_xd::unpack_iq4_xs_ref(blk, be, o); break;
    default: break;
    }
}

extern "C" void lb_cuda_unpack_host(lb_type t, const void *row, int64_t K, const lb_qrow *o) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    const int64_t be = tt->block_elems;
    for (int64_t b = 0; b < K / be; b++) {
        const lb_qrow ob = {o->q + b * be, o->sc + b * (be / 16), o->mn + b * (be / 16), o->d + b, o->dm + b};
        xd_unpack((int)t, (const uint8_t *)row + (size_t)b * tt->block_bytes, (int)be, &ob);
    }
}

/* One unpacked block (o, be elements) against one token's codes a and scale da: {d * da, S, dm * da, M}, S the exact
 * sum of sc q a, M of mn times the codes' sums per 16 (cpu.h's qdot) */
__host__ __device__ static inline float4 xd_terms(const lb_qrow *o, int be, int has_min, const int8_t *a, float da) {
    int32_t S = 0, M = 0;
    for (int e = 0; e < be; e++) S += (int32_t)o->sc[e / 16] * ((int32_t)o->q[e] * (int32_t)a[e]);
    if (has_min)
        for (int g = 0; g < be / 16; g++) {
            int32_t bs = 0;
            for (int i = 0; i < 16; i++) bs += a[16 * g + i];
            M += (int32_t)o->mn[g] * bs;
        }
    return make_float4(o->d[0] * da, (float)S, o->dm[0] * da, (float)M);
}

/* the float chain's step for one block's terms */
__host__ __device__ static inline float xd_chain(float acc, float4 v, int has_min) {
    acc = fmaf(v.x, v.y, acc);
    return has_min ? fmaf(v.z, v.w, acc) : acc;
}

/* element k of a float-weight row r (F32, F16 or BF16), exactly */
__host__ __device__ static inline float xd_wf(const uint8_t *r, int k, int type) {
    if (type == LB_TYPE_F32) {
        float f;
        memcpy(&f, r + 4 * (size_t)k, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, r + 2 * (size_t)k, 2);
    if (type == LB_TYPE_F16) return lb_xd::lb_fp16_to_f32(h);
    const uint32_t u = (uint32_t)h << 16; /* BF16 */
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* partial p of the float-weight dot (elements k = p mod 8 below K8, by fmaf in order), and the tail after the tree */
__host__ __device__ static inline float xd_fpart(const uint8_t *r, int type, const float *x, int p, int K8) {
    float a = 0.0f;
    for (int k = p; k < K8; k += 8) a = fmaf(x[k], xd_wf(r, k, type), a);
    return a;
}
__host__ __device__ static inline float xd_ftail(const uint8_t *r, int type, const float *x, int K8, int K, float s) {
    for (int k = K8; k < K; k++) s = fmaf(x[k], xd_wf(r, k, type), s);
    return s;
}

/* The host copy of an exact product's per-row arithmetic (cuda.h) */
extern "C" void lb_cuda_exact_dot_host(lb_type t, const void *row, int64_t K, const float *x, const int8_t *xq, const float *xd,
                                       float *out) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    const uint8_t *r = (const uint8_t *)row;
    if (!tt->is_quant) {
        const int K8 = (int)(K - K % 8);
        float part[8];
        for (int p = 0; p < 8; p++) part[p] = xd_fpart(r, (int)t, x, p, K8);
        *out = xd_ftail(r, (int)t, x, K8, (int)K, lb_reduce8(part));
        return;
    }
    const int be = (int)tt->block_elems, has_min = lb_qtype_has_min(t) ? 1 : 0;
    int8_t q[256];
    int16_t sc[16], mn[16];
    float d = 0.0f, dm = 0.0f;
    const lb_qrow o = {q, sc, mn, &d, &dm};
    float acc = 0.0f;
    for (int64_t b = 0; b < K / be; b++) {
        xd_unpack((int)t, r + (size_t)b * tt->block_bytes, be, &o);
        acc = xd_chain(acc, xd_terms(&o, be, has_min, xq + b * be, xd[b]), has_min);
    }
    *out = acc;
}

#define XW 4                 /* warps per block: one row each */
#define XNT LB_CUDA_MV_MAX   /* tokens per launch */

/*
 * Block-type rows (one warp per row) against nt <= XNT tokens of 8-bit activations in mv.cu's layout (codes (T, K),
 * then per 32 elements {d, d * code sum}; d repeated over a 256-element block). In rounds of 32 blocks, lane l
 * unpacks block 32 j + l and writes, per token, its terms (xd_terms) to shared memory; then lane t chains token t's
 * terms over the round's blocks in order.
 */
__global__ void __launch_bounds__(XW * 32) k_qx(int type, int be, int bb, int has_min, const uint8_t *__restrict__ W, size_t rb,
                                               int64_t N, int K, const int8_t *__restrict__ xq, const float2 *__restrict__ xd, int nt,
                                               float *__restrict__ out, int64_t ldo) {
    __shared__ float4 terms[XW][32][XNT];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t row = (int64_t)blockIdx.x * XW + warp;
    if (row >= N) return; /* the warps never meet at a block barrier */
    const int nb = K / be;
    const uint8_t *wr = W + row * rb;
    int8_t q[256];
    int16_t sc[16], mn[16];
    float d = 0.0f, dm = 0.0f;
    const lb_qrow o = {q, sc, mn, &d, &dm};
    float acc = 0.0f; /* token `lane`'s sum */
    for (int b0 = 0; b0 < nb; b0 += 32) {
        const int b = b0 + lane;
        if (b < nb) {
            xd_unpack(type, wr + (size_t)b * bb, be, &o);
            for (int t = 0; t < nt; t++)
                terms[warp][lane][t] = xd_terms(&o, be, has_min, xq + (size_t)t * K + (size_t)b * be,
                                                xd[(size_t)t * (K / 32) + (size_t)b * (be / 32)].x);
        }
        __syncwarp();
        if (lane < nt) {
            const int m = nb - b0 < 32 ? nb - b0 : 32;
            for (int j = 0; j < m; j++) acc = xd_chain(acc, terms[warp][j][lane], has_min);
        }
        __syncwarp();
    }
    if (lane < nt) out[(size_t)lane * ldo + row] = acc;
}

/* Float-weight rows (one warp per row) against nt tokens of F32 activations x (T, K): lane 8 g + p holds partial p
 * of token t0 + g, four tokens a round. */
__global__ void __launch_bounds__(XW * 32) k_fx(int type, const uint8_t *__restrict__ W, size_t rb, int64_t N, int K,
                                               const float *__restrict__ x, int nt, float *__restrict__ out, int64_t ldo) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, p = lane % 8;
    const int64_t row = (int64_t)blockIdx.x * XW + warp;
    if (row >= N) return;
    const uint8_t *wr = W + row * rb;
    const int K8 = K - K % 8;
    for (int t0 = 0; t0 < nt; t0 += 4) {
        const int t = t0 + lane / 8;
        const float *xt = x + (size_t)(t < nt ? t : 0) * K;
        const float a = t < nt ? xd_fpart(wr, type, xt, p, K8) : 0.0f;
        float part[8];
#pragma unroll
        for (int i = 0; i < 8; i++) part[i] = __shfl_sync(0xffffffffu, a, (lane & ~7) + i);
        if (p == 0 && t < nt) out[(size_t)t * ldo + row] = xd_ftail(wr, type, xt, K8, K, lb_reduce8(part));
    }
}

void cu_mm_exact(const dweight *w, const float *x, int T, float *out, int64_t ldo, void *scratch) {
    const lb_type_traits *tt = lb_type_traits_get(w->type);
    const unsigned blocks = (unsigned)((w->rows + XW - 1) / XW);
    if (!tt->is_quant) {
        k_fx<<<blocks, XW * 32, 0, STREAM>>>((int)w->type, w->data, w->row_bytes, w->rows, (int)w->cols, x, T, out, ldo);
        return;
    }
    cu_act_prepare(w->type, x, T, w->cols, scratch); /* the CPU's 8-bit rounding: every block type takes it */
    const int8_t *xq = (const int8_t *)scratch;
    k_qx<<<blocks, XW * 32, 0, STREAM>>>((int)w->type, (int)tt->block_elems, (int)tt->block_bytes, lb_qtype_has_min(w->type) ? 1 : 0,
                                         w->data, w->row_bytes, w->rows, (int)w->cols, xq, (const float2 *)(xq + (size_t)T * w->cols), T,
                                         out, ldo);
}

/* ---------------------------------------------------------------- the other steps ----------------------------- */

/* One block per row: with y, x += y; then lb_rms_scale (cpu.h: the CPU's function) on one thread; then out = w (x r). */
__global__ void k_rmsnorm_x(float *x, const float *y, const float *w, float *out, int n, int64_t stride, float eps) {
    __shared__ float r;
    float *xr = x + blockIdx.x * stride;
    float *o = out + blockIdx.x * stride;
    if (y) {
        const float *yr = y + blockIdx.x * stride;
        for (int i = threadIdx.x; i < n; i += blockDim.x) xr[i] = xr[i] + yr[i];
        __syncthreads();
    }
    if (threadIdx.x == 0) r = lb_rms_scale(xr, n, eps);
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = w[i] * (xr[i] * r);
}

void cu_rmsnorm_exact(float *x, const float *y, const float *w, float *out, int64_t n_rows, int n, int64_t stride, float eps) {
    k_rmsnorm_x<<<(unsigned)n_rows, 128, 0, STREAM>>>(x, y, w, out, n, stride, eps);
}

__global__ void k_silu_x(float *g, const float *u, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) g[i] = lb_swiglu1(g[i], u[i]);
}

void cu_silu_mul_exact(float *g, const float *u, int64_t n) { k_silu_x<<<(unsigned)((n + 255) / 256), 256, 0, STREAM>>>(g, u, n); }

/* Attention over F32 caches, one block per (head, token): the scores of the visible positions into shared memory, the
 * softmax, then thread i's output element over the positions in order. */
#define AX_THREADS 128
__global__ void __launch_bounds__(AX_THREADS) k_att_x(const float *q, const float *kc, const float *vc, float *out, int H, int KV, int D,
                                                      const int64_t *pos, float scale) {
    extern __shared__ float s[]; /* (n) */
    __shared__ float red[AX_THREADS];
    __shared__ double part[8];
    __shared__ float inv;
    const int h = blockIdx.x, t = blockIdx.y, kvh = h / (H / KV), kvd = KV * D;
    const int64_t n = *pos + t + 1;
    const float *qr = q + ((int64_t)t * H + h) * D;
    const int D8 = D - D % 8;
    float mx = -INFINITY;
    for (int64_t p = threadIdx.x; p < n; p += AX_THREADS) {
        const uint8_t *kr = (const uint8_t *)(kc + p * kvd + (int64_t)kvh * D);
        float a[8]; /* the score: the float-weight dot of the products (one thread runs its 8 partials) */
#pragma unroll
        for (int i = 0; i < 8; i++) a[i] = xd_fpart(kr, LB_TYPE_F32, qr, i, D8);
        float v = xd_ftail(kr, LB_TYPE_F32, qr, D8, D, lb_reduce8(a));
        v = v * scale;
        s[p] = v;
        mx = v > mx ? v : mx;
    }
    red[threadIdx.x] = mx;
    __syncthreads();
    if (threadIdx.x == 0) { /* the largest score: the order does not matter (NaN never enters, +-0 give the same exps) */
        float m = -INFINITY;
        for (int i = 0; i < AX_THREADS; i++) m = red[i] > m ? red[i] : m;
        red[0] = m;
    }
    __syncthreads();
    mx = red[0];
    for (int64_t p = threadIdx.x; p < n; p += AX_THREADS) s[p] = lb_expf(s[p] - mx);
    __syncthreads();
    if (threadIdx.x < 8) {
        double d = 0.0;
        for (int64_t p = threadIdx.x; p < n; p += 8) d += (double)s[p];
        part[threadIdx.x] = d;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        const double sum = lb_reduce8d(part);
        inv = sum != sum ? -1.0f : (float)(1.0 / sum); /* -1: no finite result (cpu.h's canonical NaN row) */
    }
    __syncthreads();
    const float iv = inv;
    const float nan = lb_f32_bits(LB_NAN_BITS);
    for (int64_t p = threadIdx.x; p < n; p += AX_THREADS) s[p] = iv < 0.0f ? nan : s[p] * iv;
    __syncthreads();
    for (int i = threadIdx.x; i < D; i += AX_THREADS) {
        const float *vr = vc + (int64_t)kvh * D + i;
        float o = 0.0f;
        for (int64_t p = 0; p < n; p++) o = fmaf(s[p], vr[p * kvd], o);
        out[((int64_t)t * H + h) * D + i] = o;
    }
}

cudaError_t cu_attention_exact_prepare(int64_t n_ctx) {
    const size_t smem = (size_t)n_ctx * sizeof(float);
    if (smem <= 40 * 1024) return cudaSuccess;
    return cudaFuncSetAttribute(k_att_x, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
}

void cu_attention(const float *q, const float *kc, const float *vc, float *out, int T, int H, int KV, int D, const int64_t *pos,
                  int64_t max_n) {
    const float scale = 1.0f / sqrtf((float)D); /* forward.c's */
    k_att_x<<<dim3((unsigned)H, (unsigned)T), AX_THREADS, (size_t)max_n * sizeof(float), STREAM>>>(q, kc, vc, out, H, KV, D, pos, scale);
}
