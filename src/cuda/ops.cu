/*
 * ops.cu - the forward pass's other kernels (RMSNorm, biases, SwiGLU, rotary embedding, the KV cache (F16, or F32
 * for exact contexts), causal grouped-query attention) and eval's scoring (log-sum-exp, NLL, argmax, KL divergence).
 *
 * Each follows the CPU code in model/forward.c and eval/perplexity.c: the same formulas, sums in double
 * where the CPU sums in double, and products rounded separately where the CPU rounds them separately.
 * Reductions run in a fixed order (strided per-thread sums, then a tree), so results repeat exactly.
 */
#include "kernels.cuh"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#define RED_THREADS 256
#define STREAM lb_cu_stream

thread_local cudaStream_t lb_cu_stream = 0;

static bool pdl_probe(void) {
    int dev = 0, major = 0;
    return !cu_env_is("LB_CUDA_PDL", '0') && cudaGetDevice(&dev) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
}
bool cu_pdl_on(void) {
    static const bool on = pdl_probe();
    return on;
}

/* block-wide sum of a double; every thread gets the result. sh: RED_THREADS doubles. */
__device__ double block_sum(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int o = RED_THREADS / 2; o > 0; o /= 2) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

/* Sum of a double over a block of up to 1,024 threads (a multiple of 32): a shuffle tree in each warp, then
 * the warps' sums by the first warp; every thread gets the result. A fixed order, so results repeat. */
__device__ double block_sum_warps(double v, double *sh /* 32 */) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double t = lane < nw ? sh[lane] : 0.0;
        for (int o = 16; o > 0; o /= 2) t += __shfl_xor_sync(0xffffffffu, t, o);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

/* One block per row, about four elements per thread: the loads of a row are all in flight at once (a
 * 256-thread loop of dependent iterations took 9 us for 4,096 elements at batch 1). With y, x += y first
 * (the residual add) and the sum is taken of the new x. */
__global__ void k_rmsnorm(float *x, const float *y, const float *w, float *out, int n, int64_t stride, float eps) {
    __shared__ double sh[33];
    pdl_enter();
    float *xr = x + blockIdx.x * stride;
    const float *yr = y ? y + blockIdx.x * stride : NULL;
    float *o = out + blockIdx.x * stride;
    double ss = 0.0;
#pragma unroll 4
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        if (yr) {
            v = __fadd_rn(v, yr[i]);
            xr[i] = v;
        }
        ss += (double)v * v;
    }
    ss = block_sum_warps(ss, sh);
    const float r = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
#pragma unroll 4
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = __fmul_rn(w[i], __fmul_rn(xr[i], r));
}

static unsigned norm_threads(int n) {
    const int t = ((n + 3) / 4 + 31) / 32 * 32;
    return (unsigned)(t < 32 ? 32 : t > 1024 ? 1024 : t);
}

void cu_rmsnorm(const float *x, const float *w, float *out, int64_t n_rows, int n, int64_t stride, float eps) {
    cu_launch(k_rmsnorm, dim3((unsigned)n_rows), dim3(norm_threads(n)), 0, (float *)x, (const float *)NULL, w, out, n, stride, eps);
}

void cu_add_rmsnorm(float *x, const float *y, const float *w, float *out, int64_t n_rows, int n, float eps) {
    cu_launch(k_rmsnorm, dim3((unsigned)n_rows), dim3(norm_threads(n)), 0, x, y, w, out, n, (int64_t)n, eps);
}

/*
 * Producers that also round their result for the next product's 8-bit path (mv.cu's layout: per token the int8
 * codes, then per 32 elements {d, d * sum(q)}), so the product needs no rounding launch of its own. A warp takes 256
 * consecutive elements of a row, lane l elements 8 l .. 8 l + 7; the scale covers BE elements (32: four lanes, 256: the
 * warp). The codes and scales are k_act_round's (the CPU's lb_act_quantize) to the bit: amax, 127 / amax, the clamp
 * with NaN to -127 and round-to-nearest-even are the same IEEE operations, and the code sums are integers.
 */
template <int BE>
__device__ __forceinline__ void act_round8(const float (&v)[8], int64_t e0, bool valid, int lane, int8_t *__restrict__ q,
                                           float2 *__restrict__ d) {
    float amax = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const float a = fabsf(v[k]);
        amax = a > amax ? a : amax;
    }
#pragma unroll
    for (int o = 1; o < BE / 8; o *= 2) {
        const float u = __shfl_xor_sync(0xffffffffu, amax, o);
        amax = u > amax ? u : amax;
    }
    float id, dd;
    act_scales(amax, &id, &dd);
    uint32_t lo = 0, hi = 0;
    int sum = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const int qi = act_code(v[k], id);
        sum += qi;
        if (k < 4) lo |= (uint32_t)(qi & 0xff) << (8 * k);
        else hi |= (uint32_t)(qi & 0xff) << (8 * (k - 4));
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    if (valid) {
        *(uint2 *)(q + e0) = make_uint2(lo, hi);
        if (lane % 4 == 0) d[e0 / 32] = make_float2(dd, __fmul_rn(dd, (float)sum));
    }
}

/* silu(a) * u, the forward pass's SwiGLU element (k_silu_mul and k_silu_act: the same bits) */
__device__ __forceinline__ float silu_mul1(float a, float u) { return __fmul_rn(__fdiv_rn(a, __fadd_rn(1.0f, expf(-a))), u); }

#define NA_WARPS 4
/*
 * RMSNorm and its rounding: grid (ceil(n / 1024), rows), NA_WARPS warps. Every block sums the squares of the whole row
 * (thread t: the float4s t, t + 128, ... in double, then the warps' sums in warp order: the same value in every
 * block), so the row's blocks need nothing from each other; each warp then scales and rounds its 256 elements.
 * The norm's weights, which no kernel writes, are loaded before waiting on the previous kernel.
 */
template <int BE>
__global__ void __launch_bounds__(NA_WARPS * 32) k_rmsnorm_act(const float *__restrict__ x, const float *__restrict__ w,
                                                               float *__restrict__ out, int n, float eps, int8_t *__restrict__ q,
                                                               float2 *__restrict__ d) {
    __shared__ double sh[NA_WARPS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t row = blockIdx.y;
    const int e = (blockIdx.x * NA_WARPS + warp) * 256 + 8 * lane;
    const bool valid = e < n;
    float4 w0 = make_float4(0.f, 0.f, 0.f, 0.f), w1 = w0;
    if (valid) {
        w0 = __ldg((const float4 *)(w + e));
        w1 = __ldg((const float4 *)(w + e) + 1);
    }
    pdl_enter();
    const float *xr = x + row * n;
    const float4 *x4 = (const float4 *)xr;
    double ss = 0.0;
#pragma unroll 4
    for (int i = threadIdx.x; i < n / 4; i += NA_WARPS * 32) {
        const float4 v = x4[i];
        ss += (double)v.x * v.x;
        ss += (double)v.y * v.y;
        ss += (double)v.z * v.z;
        ss += (double)v.w * v.w;
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (lane == 0) sh[warp] = ss;
    __syncthreads();
    ss = sh[0];
#pragma unroll
    for (int k = 1; k < NA_WARPS; k++) ss += sh[k];
    const float r = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (valid) {
        const float4 a = x4[e / 4], b = x4[e / 4 + 1];
        const float xs[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w}, ws[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = __fmul_rn(ws[k], __fmul_rn(xs[k], r));
        float4 *o = (float4 *)(out + row * n + e);
        o[0] = make_float4(v[0], v[1], v[2], v[3]);
        o[1] = make_float4(v[4], v[5], v[6], v[7]);
    }
    act_round8<BE>(v, row * n + e, valid, lane, q, d);
}

/* SwiGLU and its rounding: g = silu(g) * u as k_silu_mul (the same operations), n = rows * row length, a multiple of BE */
template <int BE>
__global__ void __launch_bounds__(NA_WARPS * 32) k_silu_act(float *__restrict__ g, const float *__restrict__ u, int64_t n,
                                                            int8_t *__restrict__ q, float2 *__restrict__ d) {
    pdl_enter();
    const int lane = threadIdx.x % 32;
    const int64_t e = ((int64_t)blockIdx.x * NA_WARPS + threadIdx.x / 32) * 256 + 8 * lane;
    const bool valid = e < n;
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (valid) {
        float4 *g4 = (float4 *)(g + e);
        const float4 a = g4[0], b = g4[1], c = ((const float4 *)(u + e))[0], f = ((const float4 *)(u + e))[1];
        const float gs[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w}, us[8] = {c.x, c.y, c.z, c.w, f.x, f.y, f.z, f.w};
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = silu_mul1(gs[k], us[k]);
        g4[0] = make_float4(v[0], v[1], v[2], v[3]);
        g4[1] = make_float4(v[4], v[5], v[6], v[7]);
    }
    act_round8<BE>(v, e, valid, lane, q, d);
}

bool cu_act_fusable(int64_t n, int be) { return (be == 32 || be == 256) && n % be == 0 && n % 8 == 0; }

void cu_rmsnorm_act(const float *x, const float *w, float *out, int64_t n_rows, int n, float eps, int be, void *xa) {
    int8_t *q = (int8_t *)xa;
    float2 *d = (float2 *)(q + (size_t)n_rows * (size_t)n);
    const dim3 grid((unsigned)((n + NA_WARPS * 256 - 1) / (NA_WARPS * 256)), (unsigned)n_rows);
    if (be == 256) cu_launch(k_rmsnorm_act<256>, grid, dim3(NA_WARPS * 32), 0, x, w, out, n, eps, q, d);
    else cu_launch(k_rmsnorm_act<32>, grid, dim3(NA_WARPS * 32), 0, x, w, out, n, eps, q, d);
}

void cu_silu_act(float *g, const float *u, int64_t n, int be, void *xa) {
    int8_t *q = (int8_t *)xa;
    float2 *d = (float2 *)(q + n);
    const dim3 grid((unsigned)((n + NA_WARPS * 256 - 1) / (NA_WARPS * 256)));
    if (be == 256) cu_launch(k_silu_act<256>, grid, dim3(NA_WARPS * 32), 0, g, u, n, q, d);
    else cu_launch(k_silu_act<32>, grid, dim3(NA_WARPS * 32), 0, g, u, n, q, d);
}

__global__ void k_add_bias(float *y, const float *b, int64_t total, int n) {
    pdl_enter();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) y[i] += b[i % n];
}
void cu_add_bias(float *y, const float *b, int T, int n) {
    const int64_t total = (int64_t)T * n;
    cu_launch(k_add_bias, dim3((unsigned)((total + 255) / 256)), dim3(256), 0, y, b, total, n);
}

__global__ void k_add(float *x, const float *y, int64_t n) {
    pdl_enter();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}
void cu_add(float *x, const float *y, int64_t n) { cu_launch(k_add, dim3((unsigned)((n + 255) / 256)), dim3(256), 0, x, y, n); }

__global__ void k_silu_mul(float *g, const float *u, int64_t n) {
    pdl_enter();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) g[i] = silu_mul1(g[i], u[i]);
}
void cu_silu_mul(float *g, const float *u, int64_t n) { cu_launch(k_silu_mul, dim3((unsigned)((n + 255) / 256)), dim3(256), 0, g, u, n); }

__global__ void k_f32_to_f16(const float *x, int64_t n, __half *y) {
    pdl_enter();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __float2half_rn(x[i]);
}
void cu_f32_to_f16(const float *x, int64_t n, __half *y) { cu_launch(k_f32_to_f16, dim3((unsigned)((n + 255) / 256)), dim3(256), 0, x, n, y); }

/* a KV cache element: F16, or F32 for exact contexts */
__device__ __forceinline__ void kv_put(__half *p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void kv_put(float *p, float v) { *p = v; }
__device__ __forceinline__ float kv_get(const __half *p) { return __half2float(*p); }

/* Rotary embedding of q (H heads) and k (KV heads), then k and v into the cache (KT: F16 or F32), as one launch:
 * threads [0, nq) rotate q's pairs ((x[i], x[i + D/2]) or, interleaved, (x[2i], x[2i+1])), [nq, nq + nk) k's pairs
 * (storing the rotated pair into the cache at row pos0 + t too), the rest copy v. */
template <typename KT>
__global__ void k_rope_kv(float *q, float *k, const float *v, int T, int H, int KV, int D, const float *cs, const float *sn,
                          const int64_t *pos, int inter, KT *kc, KT *vc) {
    pdl_enter();
    const int half = D / 2, kvd = KV * D;
    const int64_t pos0 = *pos;
    const int64_t nq = (int64_t)T * H * half, nk = (int64_t)T * KV * half, nv = (int64_t)T * kvd;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nq + nk + nv) return;
    if (i >= nq + nk) {
        i -= nq + nk;
        kv_put(vc + pos0 * kvd + i, v[i]);
        return;
    }
    const bool isk = i >= nq;
    if (isk) i -= nq;
    const int heads = isk ? KV : H;
    const int p = (int)(i % half);
    const int64_t th = i / half;
    const int t = (int)(th / heads);
    float *xr = (isk ? k : q) + th * D;
    const int step = inter ? 2 : 1, off = inter ? 1 : half;
    float *pa = xr + p * step, *pb = pa + off;
    const float c = cs[(pos0 + t) * half + p], s = sn[(pos0 + t) * half + p];
    const float a = *pa, b = *pb;
    const float ra = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)), rb = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    *pa = ra;
    *pb = rb;
    if (isk) {
        const int64_t o = pos0 * kvd + (pa - k), ob = pos0 * kvd + (pb - k);
        kv_put(kc + o, ra);
        kv_put(kc + ob, rb);
    }
}
template <typename KT>
static void rope_kv(float *q, float *k, const float *v, int T, int H, int KV, int D, const float *cs, const float *sn, const int64_t *pos0,
                    bool interleaved, KT *kc, KT *vc) {
    const int64_t n = (int64_t)T * (H + KV) * (D / 2) + (int64_t)T * KV * D;
    cu_launch(k_rope_kv<KT>, dim3((unsigned)((n + 255) / 256)), dim3(256), 0, q, k, v, T, H, KV, D, cs, sn, pos0, interleaved ? 1 : 0, kc, vc);
}
void cu_rope_kv(float *q, float *k, const float *v, int T, int H, int KV, int D, const float *cs, const float *sn,
                const int64_t *pos0, bool interleaved, __half *kc, __half *vc) {
    rope_kv(q, k, v, T, H, KV, D, cs, sn, pos0, interleaved, kc, vc);
}
void cu_rope_kv(float *q, float *k, const float *v, int T, int H, int KV, int D, const float *cs, const float *sn,
                const int64_t *pos0, bool interleaved, float *kc, float *vc) {
    rope_kv(q, k, v, T, H, KV, D, cs, sn, pos0, interleaved, kc, vc);
}

/*
 * Attention: one block per (group of HB query heads sharing one KV head, query token). Scores of the n =
 * pos0 + t + 1 visible positions go to shared memory (a warp per position reads its K row once for all HB
 * heads), softmax per head as on the CPU (float exponentials, double sum; the heads reduced together), then
 * each thread sums one output dimension of every head over the positions in order, reading each V element once.
 * Over the F16 cache (an exact context's F32 cache has exact.cu's kernel, the CPU's order).
 */
#define ATT_THREADS 128
#define ATT_MAX_HB 8
__global__ void k_attention(const float *q, const __half *kc, const __half *vc, float *out, int H, int KV, int D, int hb, const int64_t *pos,
                            int64_t max_n) {
    extern __shared__ float sm[];
    __shared__ double wsum[ATT_MAX_HB][ATT_THREADS / 32];
    __shared__ float wmax[ATT_MAX_HB][ATT_THREADS / 32];
    pdl_enter();
    const int64_t pos0 = *pos;
    const int h0 = blockIdx.x * hb, t = blockIdx.y, kvh = h0 / (H / KV), kvd = KV * D;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t n = pos0 + t + 1;
    float *qs = sm, *s = sm + hb * D; /* qs (hb, D); s (hb, max_n) */
    for (int i = threadIdx.x; i < hb * D; i += ATT_THREADS) qs[i] = q[((int64_t)t * H + h0) * D + i];
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t p = warp; p < n; p += ATT_THREADS / 32) {
        const __half *kr = kc + p * kvd + (int64_t)kvh * D;
        float a[ATT_MAX_HB];
#pragma unroll
        for (int g = 0; g < ATT_MAX_HB; g++) a[g] = 0.0f;
        for (int i = lane; i < D; i += 32) {
            const float kv = kv_get(kr + i);
#pragma unroll
            for (int g = 0; g < ATT_MAX_HB; g++)
                if (g < hb) a[g] = fmaf(qs[g * D + i], kv, a[g]);
        }
#pragma unroll
        for (int g = 0; g < ATT_MAX_HB; g++) {
            if (g >= hb) break;
            float v = a[g];
            for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0) s[g * max_n + p] = v * scale;
        }
    }
    __syncthreads();
    /* softmax of every head at once: per head the maximum, then the exponentials and their double sum, each
     * reduced by warp shuffles and then over the warps in order (three barriers in all) */
#pragma unroll
    for (int g = 0; g < ATT_MAX_HB; g++) {
        if (g >= hb) break;
        const float *sg = s + g * max_n;
        float m = -FLT_MAX;
        for (int64_t p = threadIdx.x; p < n; p += ATT_THREADS) m = fmaxf(m, sg[p]);
        for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (lane == 0) wmax[g][warp] = m;
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < ATT_MAX_HB; g++) {
        if (g >= hb) break;
        float m = wmax[g][0];
        for (int i = 1; i < ATT_THREADS / 32; i++) m = fmaxf(m, wmax[g][i]);
        float *sg = s + g * max_n;
        double sum = 0.0;
        for (int64_t p = threadIdx.x; p < n; p += ATT_THREADS) {
            const float e = expf(sg[p] - m);
            sg[p] = e;
            sum += e;
        }
        for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) wsum[g][warp] = sum;
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < ATT_MAX_HB; g++) {
        if (g >= hb) break;
        double sum = wsum[g][0];
        for (int i = 1; i < ATT_THREADS / 32; i++) sum += wsum[g][i];
        const float inv = (float)(1.0 / sum);
        float *sg = s + g * max_n;
        for (int64_t p = threadIdx.x; p < n; p += ATT_THREADS) sg[p] *= inv;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < D; i += ATT_THREADS) {
        const __half *vr = vc + (int64_t)kvh * D + i;
        float a[ATT_MAX_HB];
#pragma unroll
        for (int g = 0; g < ATT_MAX_HB; g++) a[g] = 0.0f;
        for (int64_t p = 0; p < n; p++) {
            const float v = kv_get(vr + p * kvd);
#pragma unroll
            for (int g = 0; g < ATT_MAX_HB; g++)
                if (g < hb) a[g] = fmaf(s[g * max_n + p], v, a[g]);
        }
#pragma unroll
        for (int g = 0; g < ATT_MAX_HB; g++)
            if (g < hb) out[((int64_t)t * H + h0 + g) * D + i] = a[g];
    }
}

/* heads per block: the whole group sharing a KV head when it has at most ATT_MAX_HB heads, else one */
static int att_hb(int H, int KV) { return H / KV <= ATT_MAX_HB ? H / KV : 1; }
static size_t att_smem(int hb, int D, int64_t max_n) { return (size_t)hb * (size_t)(D + max_n) * sizeof(float); }

cudaError_t cu_attention_prepare(int H, int KV, int D, int64_t n_ctx) {
    const size_t smem = att_smem(att_hb(H, KV), D, n_ctx);
    const cudaError_t e = cu_attention_exact_prepare(n_ctx);
    if (e != cudaSuccess || smem <= 48 * 1024) return e;
    return cudaFuncSetAttribute(k_attention, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
}

void cu_attention(const float *q, const __half *kc, const __half *vc, float *out, int T, int H, int KV, int D,
                  const int64_t *pos, int64_t max_n) {
    const int hb = att_hb(H, KV);
    cu_launch(k_attention, dim3((unsigned)(H / hb), (unsigned)T), dim3(ATT_THREADS), att_smem(hb, D, max_n), q, kc, vc, out, H, KV, D, hb,
              pos, max_n);
}

/*
 * Attention split over the positions (flash-decoding; the default since run 15, tg128 +10 % on the 8B shape; LB_CUDA_ATT_SPLIT=0 takes the kernel above): the
 * visible positions of each query are cut into chunks of ch; block (head group, chunk, token) scores its chunk for
 * the group's hb heads (a warp per position, lanes over the head dimension), takes the chunk's maximum m and the sum
 * l of exp(s - m) in float, and writes l, m and the unnormalized sum of exp(s - m) v per head to a scratch row; then
 * one block per (head, token) combines the chunks in order (M = max m, L = sum l e^(m - M), out = sum o e^(m - M) / L).
 * Many blocks at any context length (the per-token kernel above runs H / hb blocks per token), and no bound on the
 * context from shared memory. Tokens go AS_TOKENS at a time (the scratch holds that many).
 */
#define AS_THREADS 128
#define AS_TOKENS LB_CUDA_MV_MAX

__global__ void k_att_split(const float *q, const __half *kc, const __half *vc, float *part, int H, int KV, int D, int hb, int ch,
                            int nch, const int64_t *pos, int t_off) {
    extern __shared__ float asm_[];
    pdl_enter();
    const int64_t pos0 = *pos;
    const int t = blockIdx.z, c = blockIdx.y, h0 = blockIdx.x * hb, kvh = h0 / (H / KV), kvd = KV * D;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t n = pos0 + t_off + t + 1, p0 = (int64_t)c * ch;
    const int np = n - p0 < ch ? (int)(n - p0) : ch;
    float *qs = asm_, *sc = asm_ + hb * D; /* qs (hb, D), sc (hb, ch) */
    if (np <= 0) { /* past the query's positions: an empty chunk */
        if ((int)threadIdx.x < hb) {
            float *pr = part + (((int64_t)t * H + h0 + threadIdx.x) * nch + c) * (D + 2);
            pr[0] = -INFINITY, pr[1] = 0.0f;
        }
        return;
    }
    for (int i = threadIdx.x; i < hb * D; i += AS_THREADS) qs[i] = q[((int64_t)t * H + h0) * D + i];
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)D);
    for (int j = warp; j < np; j += AS_THREADS / 32) {
        const __half *kr = kc + (p0 + j) * kvd + (int64_t)kvh * D;
        for (int g = 0; g < hb; g++) {
            float a = 0.0f;
            for (int i = lane; i < D; i += 32) a = fmaf(qs[g * D + i], __half2float(kr[i]), a);
            for (int o = 16; o > 0; o /= 2) a += __shfl_xor_sync(0xffffffffu, a, o);
            if (lane == 0) sc[g * ch + j] = a * scale;
        }
    }
    __syncthreads();
    for (int g = warp; g < hb; g += AS_THREADS / 32) { /* a warp per head: the chunk's maximum and sum */
        float *sg = sc + g * ch, m = -INFINITY, l = 0.0f;
        for (int j = lane; j < np; j += 32) m = fmaxf(m, sg[j]);
        for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        for (int j = lane; j < np; j += 32) {
            const float e = expf(sg[j] - m);
            sg[j] = e;
            l += e;
        }
        for (int o = 16; o > 0; o /= 2) l += __shfl_xor_sync(0xffffffffu, l, o);
        if (lane == 0) {
            float *pr = part + (((int64_t)t * H + h0 + g) * nch + c) * (D + 2);
            pr[0] = m, pr[1] = l;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < hb * D; i += AS_THREADS) {
        const int g = i / D, d = i % D;
        const __half *vr = vc + p0 * kvd + (int64_t)kvh * D + d;
        const float *sg = sc + g * ch;
        float a = 0.0f;
#pragma unroll 4
        for (int j = 0; j < np; j++) a = fmaf(sg[j], __half2float(vr[(int64_t)j * kvd]), a);
        part[(((int64_t)t * H + h0 + g) * nch + c) * (D + 2) + 2 + d] = a;
    }
}

/* The combination of head h's chunks for token t: its scratch rows pr (nc of them, D + 2 apart), their maximum M and
 * 1 / L (L = sum l e^(m - M)) */
__device__ __forceinline__ const float *att_chunks(const float *part, int H, int D, int ch, int nch, const int64_t *pos, int t_off, int t,
                                                   int h, int *nc, float *M, float *inv) {
    const int64_t n = *pos + t_off + t + 1;
    *nc = (int)((n + ch - 1) / ch) < nch ? (int)((n + ch - 1) / ch) : nch;
    const float *pr = part + ((int64_t)t * H + h) * nch * (D + 2);
    float m = -INFINITY;
    for (int c = 0; c < *nc; c++) m = fmaxf(m, pr[(int64_t)c * (D + 2)]);
    float L = 0.0f;
    for (int c = 0; c < *nc; c++) L += pr[(int64_t)c * (D + 2) + 1] * expf(pr[(int64_t)c * (D + 2)] - m);
    *M = m;
    *inv = 1.0f / L;
    return pr;
}

__global__ void k_att_combine(const float *part, float *out, int H, int D, int ch, int nch, const int64_t *pos, int t_off) {
    pdl_enter();
    const int h = blockIdx.x, t = blockIdx.y;
    int nc;
    float M, inv;
    const float *pr = att_chunks(part, H, D, ch, nch, pos, t_off, t, h, &nc, &M, &inv);
    for (int d = threadIdx.x; d < D; d += AS_THREADS) {
        float a = 0.0f;
        for (int c = 0; c < nc; c++) a += pr[(int64_t)c * (D + 2) + 2 + d] * expf(pr[(int64_t)c * (D + 2)] - M);
        out[((int64_t)(t_off + t) * H + h) * D + d] = a * inv;
    }
}

/* k_att_combine's result (the same operations in the same order: the same floats) and its 8-bit rounding for the o
 * product in the same launch (act_round8: a warp per 256 consecutive elements of a token's H D, lane l elements
 * 8 l .. 8 l + 7 of one head; grid (H D / 1024 rounded up, tokens), four warps) */
template <int BE>
__global__ void __launch_bounds__(NA_WARPS * 32) k_att_combine_act(const float *part, float *out, int H, int D, int ch, int nch,
                                                                   const int64_t *pos, int t_off, int T, int8_t *q, float2 *dq) {
    pdl_enter();
    const int t = blockIdx.y, lane = threadIdx.x % 32;
    const int e = (blockIdx.x * NA_WARPS + threadIdx.x / 32) * 256 + 8 * lane; /* within the token's H D */
    const bool valid = e < H * D;
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (valid) {
        const int h = e / D, d0 = e % D;
        int nc;
        float M, inv;
        const float *pr = att_chunks(part, H, D, ch, nch, pos, t_off, t, h, &nc, &M, &inv);
        float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int c = 0; c < nc; c++) {
            const float f = expf(pr[(int64_t)c * (D + 2)] - M);
#pragma unroll
            for (int k = 0; k < 8; k++) a[k] += pr[(int64_t)c * (D + 2) + 2 + d0 + k] * f;
        }
        float *o = out + ((int64_t)(t_off + t) * H) * D + e;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            v[k] = a[k] * inv;
            o[k] = v[k];
        }
    }
    act_round8<BE>(v, (int64_t)(t_off + t) * H * D + e, valid, lane, q, dq);
}

bool cu_attention_split_on(void) {
    static const bool on = !cu_env_is("LB_CUDA_ATT_SPLIT", '0');
    return on;
}

int cu_attention_split_chunk(int64_t max_n) { /* positions per chunk: at most 256 chunks, 64-1024 positions each */
    if (max_n <= 16384) return 64;
    int64_t ch = (max_n + 255) / 256;
    ch = (ch + 31) / 32 * 32;
    return (int)(ch < 1024 ? ch : 1024);
}

size_t cu_attention_split_scratch(int H, int D, int64_t max_n) {
    const int ch = cu_attention_split_chunk(max_n);
    const int64_t nch = (max_n + ch - 1) / ch;
    return (size_t)AS_TOKENS * (size_t)H * (size_t)nch * (size_t)(D + 2) * sizeof(float);
}

void cu_attention_split(const float *q, const __half *kc, const __half *vc, float *out, int T, int H, int KV, int D, const int64_t *pos,
                        int64_t max_n, float *part, int be, void *xa) {
    const int hb = att_hb(H, KV), ch = cu_attention_split_chunk(max_n);
    const int nch = (int)((max_n + ch - 1) / ch);
    const size_t smem = (size_t)hb * (size_t)(D + ch) * sizeof(float);
    for (int t0 = 0; t0 < T; t0 += AS_TOKENS) {
        const int nt = T - t0 < AS_TOKENS ? T - t0 : AS_TOKENS;
        cu_launch(k_att_split, dim3((unsigned)(H / hb), (unsigned)nch, (unsigned)nt), dim3(AS_THREADS), smem,
                  q + (size_t)t0 * (size_t)H * (size_t)D, kc, vc, part, H, KV, D, hb, ch, nch, pos, t0);
        if (xa) {
            int8_t *aq = (int8_t *)xa;
            float2 *ad = (float2 *)(aq + (size_t)T * (size_t)H * (size_t)D);
            const dim3 grid((unsigned)((H * D + NA_WARPS * 256 - 1) / (NA_WARPS * 256)), (unsigned)nt);
            if (be == 256) cu_launch(k_att_combine_act<256>, grid, dim3(NA_WARPS * 32), 0, (const float *)part, out, H, D, ch, nch, pos, t0, T, aq, ad);
            else cu_launch(k_att_combine_act<32>, grid, dim3(NA_WARPS * 32), 0, (const float *)part, out, H, D, ch, nch, pos, t0, T, aq, ad);
        } else {
            cu_launch(k_att_combine, dim3((unsigned)H, (unsigned)nt), dim3(AS_THREADS), 0, (const float *)part, out, H, D, ch, nch, pos, t0);
        }
    }
}

/*
 * Scoring: one block per position. As eval/perplexity.c: max in float, sum of exp((double)x - max) in
 * double, lse = log(sum) + max; the argmax is the first index of the largest logit; KL(base || model) =
 * sum_v p_base (log p_base - log p_model) with both log-probabilities in double, clamped at 0.
 */
__global__ void k_score(const float *logits, int64_t V, const int32_t *next, const float *base, const double *base_lse,
                        double *lse_out, double *nll, long long *amax, double *kl) {
    __shared__ double sh[RED_THREADS];
    __shared__ float smax[RED_THREADS];
    __shared__ long long sidx[RED_THREADS];
    const int64_t row = blockIdx.x;
    const float *x = logits + row * V;
    float mx = -FLT_MAX;
    long long mi = 0x7fffffffffffffffLL;
    for (int64_t i = threadIdx.x; i < V; i += RED_THREADS)
        if (x[i] > mx || mi == 0x7fffffffffffffffLL) {
            mx = x[i];
            mi = i;
        }
    smax[threadIdx.x] = mx;
    sidx[threadIdx.x] = mi;
    __syncthreads();
    for (int o = RED_THREADS / 2; o > 0; o /= 2) {
        if ((int)threadIdx.x < o) {
            const float a = smax[threadIdx.x], b = smax[threadIdx.x + o];
            const long long ia = sidx[threadIdx.x], ib = sidx[threadIdx.x + o];
            if (b > a || (b == a && ib < ia)) {
                smax[threadIdx.x] = b;
                sidx[threadIdx.x] = ib;
            }
        }
        __syncthreads();
    }
    mx = smax[0];
    const long long am = sidx[0];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < V; i += RED_THREADS) s += exp((double)x[i] - mx);
    s = block_sum(s, sh);
    const double l = log(s) + mx;
    if (threadIdx.x == 0) {
        lse_out[row] = l;
        nll[row] = l - x[next[row]];
        amax[row] = am;
    }
    if (!base) return;
    const float *b = base + row * V;
    const double lb0 = base_lse[row];
    double k = 0.0;
    for (int64_t i = threadIdx.x; i < V; i += RED_THREADS) {
        const double lb = (double)b[i] - lb0, lm = (double)x[i] - l;
        k += exp(lb) * (lb - lm);
    }
    k = block_sum(k, sh);
    if (threadIdx.x == 0) kl[row] = k > 0.0 ? k : 0.0;
}

void cu_score(const float *logits, int64_t V, const int32_t *next, int n_rows, const float *base, const double *base_lse,
              double *lse, double *nll, long long *amax, double *kl) {
    k_score<<<(unsigned)n_rows, RED_THREADS, 0, STREAM>>>(logits, V, next, base, base_lse, lse, nll, amax, kl);
}
