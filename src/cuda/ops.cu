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

bool cu_pdl_on(void) {
    static cu_dev_cache<bool> cache; /* per device: a pipeline may mix compute capabilities */
    return cu_per_device(cache, [](int) { return !cu_env_is("LB_CUDA_PDL", '0') && cu_dev_major() >= 9; });
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
#pragma unroll 8 /* a 4096-element row: every load in flight at once */
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

/* The rotation of one pair (a, b) by the angle whose cosine and sine are c and s */
__device__ __forceinline__ void rope_pair(float a, float b, float c, float s, float *ra, float *rb) {
    *ra = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    *rb = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
}
/* Element d of the rotated head x (D elements; c, s: the position's table rows of D / 2): its pair is (x[d % (D / 2)],
 * x[d % (D / 2) + D / 2]) or, interleaved, (x[2 (d / 2)], x[2 (d / 2) + 1]); k_rope_kv's operations */
__device__ __forceinline__ float rope_elem(const float *x, int d, int D, const float *c, const float *s, int inter) {
    const int half = D / 2, p = inter ? d / 2 : d % half;
    const bool second = inter ? (d & 1) != 0 : d >= half;
    float ra, rb;
    rope_pair(inter ? x[2 * p] : x[p], inter ? x[2 * p + 1] : x[p + half], c[p], s[p], &ra, &rb);
    return second ? rb : ra;
}

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
    float ra, rb;
    rope_pair(*pa, *pb, cs[(pos0 + t) * half + p], sn[(pos0 + t) * half + p], &ra, &rb);
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

/* heads per block of the attention kernels: two heads of a group of 4-8 sharing a KV head where the head size is a
 * multiple of 128 (so two heads' outputs are whole 256-element weight blocks, which the single launch's rounding for
 * the o product needs), else the whole group when it has at most ATT_MAX_HB heads, else one. Twice the blocks, each
 * with half the work: k_att_one's 8 blocks on the 8B shape were busy for all of its 9-10 us (run 54's ncu); with 16,
 * tg128 +1.2 % Q4_0 and Q4_K_M, +2.4-2.7 % at positions 128-255 (run 57, H100). LB_CUDA_ATT_HB=N: N heads where N
 * divides the group, the whole group (up to ATT_MAX_HB) for N at least its size. Read once. */
static int att_hb(int H, int KV, int D) {
    static const int want = (int)cu_env_int("LB_CUDA_ATT_HB", 0);
    const int g = H / KV, whole = g <= ATT_MAX_HB ? g : 1;
    if (want > 0) return want < g && g % want == 0 ? want : whole;
    return whole > 2 && whole % 2 == 0 && D % 128 == 0 ? 2 : whole;
}
static size_t att_smem(int hb, int D, int64_t max_n) { return (size_t)hb * (size_t)(D + max_n) * sizeof(float); }

cudaError_t cu_attention_prepare(int H, int KV, int D, int64_t n_ctx) {
    const size_t smem = att_smem(att_hb(H, KV, D), D, n_ctx);
    const cudaError_t e = cu_attention_exact_prepare(n_ctx);
    if (e != cudaSuccess || smem <= 48 * 1024) return e;
    return cudaFuncSetAttribute(k_attention, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
}

void cu_attention(const float *q, const __half *kc, const __half *vc, float *out, int T, int H, int KV, int D,
                  const int64_t *pos, int64_t max_n) {
    const int hb = att_hb(H, KV, D);
    cu_launch(k_attention, dim3((unsigned)(H / hb), (unsigned)T), dim3(ATT_THREADS), att_smem(hb, D, max_n), q, kc, vc, out, H, KV, D, hb,
              pos, max_n);
}

/*
 * Attention split over the positions (flash-decoding; the default since run 15; LB_CUDA_ATT_SPLIT=0 takes the kernel
 * above): the n visible positions of a query are cut into at most nch chunks of L positions (att_split_len: L = n / nch
 * rounded up to a multiple of 8, from the position the kernel reads, so a captured decode graph cuts each token's
 * context evenly however long it has grown: many blocks at any length). Block (head group, chunk, token) takes its
 * chunk TP positions at a time (att_tile: 32, 16 for heads over 128) for the group's hb heads: the tile's key and value
 * rows loaded into shared memory at once (16-byte loads, every one in flight together; the first tile's rows of the
 * cache before this step, positions below *pos, before griddepcontrol.wait, overlapping the kernel that stores the new
 * rows), then the scores (eight lanes a position), the running maximum m and sum l of exp(s - m) (online softmax: the
 * sums so far rescaled by exp(m_old - m_new)), and the unnormalized sum of exp(s - m) v (a thread per pair of
 * dimensions and subset of the positions, every head of the group from one read of v; the subsets summed in order at
 * the end); it writes m, l and the sum per head to a scratch row. k_att_combine then combines the chunks (M = max m,
 * L = sum l e^(m - M), out = sum o e^(m - M) / L). Head size a multiple of 8 from 32 to 256 (cu_attention_split_fits).
 * One token with nw.k (cu_att_new: decode): the blocks rotate q as they load it and take the new position's key and
 * value rows from the product's output (rotated, rounded to F16: k_rope_kv's bytes), and the first head group of each
 * KV head stores them into the cache, so no rotary launch precedes the kernel.
 * Tokens go AS_TOKENS at a time (the scratch holds that many).
 */
#define AS_THREADS 128
#define AS_UNITS 4 /* 16-byte units of a key (and of a value) tile per thread: TP D / 8 <= AS_UNITS AS_THREADS */
#define AS_MAX_CHUNKS 128
#define AS_TOKENS LB_CUDA_MV_MAX

/* positions per chunk for n visible positions and nch chunks; ceil(n / L) <= nch chunks are not empty */
__host__ __device__ __forceinline__ int64_t att_split_len(int64_t n, int nch) {
    const int64_t L = (n + nch - 1) / nch;
    return (L + 7) / 8 * 8;
}
/* positions a tile: TP D <= 4096, so a tile's keys are at most AS_UNITS 16-byte units a thread */
__host__ __device__ __forceinline__ int att_tile(int D) { return D <= 128 ? 32 : 16; }

/* dimensions d0 .. d0 + 7 of head kvh of the new token's key (rotated at position p) and value, as the F16 cache holds
 * them (k_rope_kv's bytes) */
__device__ __forceinline__ void att_new_unit(const cu_att_new &nw, int64_t p, int kvh, int D, int d0, uint4 *rk, uint4 *rv) {
    const float *kh = nw.k + (size_t)kvh * D, *vh = nw.v + (size_t)kvh * D, *c = nw.cs + p * (D / 2), *s = nw.sn + p * (D / 2);
    __align__(16) __half kk[8], vv[8];
#pragma unroll
    for (int e = 0; e < 8; e++) {
        kk[e] = __float2half_rn(rope_elem(kh, d0 + e, D, c, s, nw.inter));
        vv[e] = __float2half_rn(vh[d0 + e]);
    }
    *rk = *(const uint4 *)kk;
    *rv = *(const uint4 *)vv;
}

/* rows p0 + j (j < nj) of the cache's head kvh into registers, 16-byte units u = thread + i AS_THREADS (row u / (D / 8));
 * with `old` only those at positions below p_old, without it only those at or above (-1: every row). With nw.k (one
 * token): row p_old from the new token's key and value (att_new_unit), which `writer` also stores into the cache. */
__device__ __forceinline__ void att_load_tile(uint4 (&rk)[AS_UNITS], uint4 (&rv)[AS_UNITS], const __half *kc, const __half *vc,
                                              int64_t p0, int nj, int kvd, int kvh, int D, int64_t p_old, int old,
                                              const cu_att_new &nw, bool writer) {
    const int upr = D / 8;
#pragma unroll
    for (int i = 0; i < AS_UNITS; i++) {
        const int u = threadIdx.x + i * AS_THREADS, j = u / upr;
        const int64_t p = p0 + j;
        if (j < nj && (old < 0 || (old ? p < p_old : p >= p_old))) {
            const size_t off = (size_t)p * kvd + (size_t)kvh * D + 8 * (u % upr);
            if (nw.k && p == p_old) {
                att_new_unit(nw, p, kvh, D, 8 * (u % upr), &rk[i], &rv[i]);
                if (writer) {
                    *(uint4 *)(nw.kc + off) = rk[i];
                    *(uint4 *)(nw.vc + off) = rv[i];
                }
            } else {
                rk[i] = *(const uint4 *)(kc + off);
                rv[i] = *(const uint4 *)(vc + off);
            }
        }
    }
}
__device__ __forceinline__ void att_store_tile(const uint4 (&rk)[AS_UNITS], const uint4 (&rv)[AS_UNITS], __half *ks, __half *vs, int nj,
                                               int D) {
#pragma unroll
    for (int i = 0; i < AS_UNITS; i++) {
        const int u = threadIdx.x + i * AS_THREADS;
        if (u / (D / 8) < nj) {
            *(uint4 *)(ks + 8 * u) = rk[i];
            *(uint4 *)(vs + 8 * u) = rv[i];
        }
    }
}

/* lane % 8's part of the scores of key row kr (D halves, shared memory) against the hb query heads qs (hb D floats,
 * shared memory): dimensions 8 (lane % 8) .. + 7, then every 64th group of eight, added into a[g] in that order */
__device__ __forceinline__ void att_score_part(const __half *kr, const float *qs, int D, int hb, int lane, float (&a)[ATT_MAX_HB]) {
    for (int i = 8 * (lane % 8); i < D; i += 64) {
        const uint4 raw = *(const uint4 *)(kr + i);
        const __half2 *h2 = (const __half2 *)&raw;
        float kf[8];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const float2 f = __half22float2(h2[u]);
            kf[2 * u] = f.x, kf[2 * u + 1] = f.y;
        }
#pragma unroll
        for (int g = 0; g < ATT_MAX_HB; g++)
            if (g < hb) {
                const float4 x = *(const float4 *)(qs + g * D + i), y = *(const float4 *)(qs + g * D + i + 4);
                a[g] = fmaf(x.x, kf[0], a[g]), a[g] = fmaf(x.y, kf[1], a[g]), a[g] = fmaf(x.z, kf[2], a[g]);
                a[g] = fmaf(x.w, kf[3], a[g]), a[g] = fmaf(y.x, kf[4], a[g]), a[g] = fmaf(y.y, kf[5], a[g]);
                a[g] = fmaf(y.z, kf[6], a[g]), a[g] = fmaf(y.w, kf[7], a[g]);
            }
    }
}

__global__ void __launch_bounds__(AS_THREADS) k_att_split(const float *q, const __half *kc, const __half *vc, float *part, int H, int KV,
                                                          int D, int hb, int nch, const int64_t *pos, int t_off, cu_att_new nw) {
    extern __shared__ uint4 asm4_[];
    /* *pos is set before the step's first kernel; the cache below it is not written in this step */
    const int64_t p_old = *pos;
    const int t = blockIdx.z, c = blockIdx.y, h0 = blockIdx.x * hb, kvh = h0 / (H / KV), kvd = KV * D;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, TP = att_tile(D);
    const int64_t n = p_old + t_off + t + 1, L = att_split_len(n, nch), p0 = (int64_t)c * L;
    if (p0 >= n) { /* an empty chunk: the combination reads only the first ceil(n / L) */
        pdl_enter();
        return;
    }
    const int np = (int)(n - p0 < L ? n - p0 : L);
    const int P = D / 2, S = AS_THREADS / P, col = threadIdx.x % P, sub = threadIdx.x / P; /* pairs, position subsets */
    __half *ks = (__half *)asm4_, *vs = ks + TP * D;
    float *qs = (float *)(vs + TP * D), *sc = qs + hb * D, *ms = sc + hb * TP, *ls = ms + hb, *al = ls + hb, *red = al + hb;
    uint4 rk[AS_UNITS], rv[AS_UNITS];
    const bool writer = nw.k && h0 % (H / KV) == 0; /* the first group of the KV head stores the new cache row */
    att_load_tile(rk, rv, kc, vc, p0, np < TP ? np : TP, kvd, kvh, D, p_old, 1, nw, writer);
    pdl_enter();
    for (int i = threadIdx.x; i < hb * D; i += AS_THREADS) {
        const float *qh = q + ((int64_t)t * H + h0 + i / D) * D;
        qs[i] = nw.k ? rope_elem(qh, i % D, D, nw.cs + p_old * (D / 2), nw.sn + p_old * (D / 2), nw.inter) : qh[i % D];
    }
    if ((int)threadIdx.x < hb) ms[threadIdx.x] = -INFINITY, ls[threadIdx.x] = 0.0f;
    const float scale = 1.0f / sqrtf((float)D);
    float2 acc[ATT_MAX_HB];
#pragma unroll
    for (int g = 0; g < ATT_MAX_HB; g++) acc[g] = make_float2(0.0f, 0.0f);
    for (int j0 = 0; j0 < np; j0 += TP) {
        const int nj = np - j0 < TP ? np - j0 : TP;
        att_load_tile(rk, rv, kc, vc, p0 + j0, nj, kvd, kvh, D, p_old, j0 == 0 ? 0 : -1, nw, writer);
        att_store_tile(rk, rv, ks, vs, nj, D);
        __syncthreads();
        for (int jb = warp * 4; jb < nj; jb += AS_THREADS / 8) { /* scores: four positions a warp */
            const int j = jb + lane / 8;
            float a[ATT_MAX_HB];
#pragma unroll
            for (int g = 0; g < ATT_MAX_HB; g++) a[g] = 0.0f;
            if (j < nj) att_score_part(ks + j * D, qs, D, hb, lane, a);
#pragma unroll
            for (int g = 0; g < ATT_MAX_HB; g++)
                if (g < hb) {
                    for (int o = 4; o > 0; o /= 2) a[g] += __shfl_xor_sync(0xffffffffu, a[g], o);
                    if (lane % 8 == 0 && j < nj) sc[g * TP + j] = a[g] * scale;
                }
        }
        __syncthreads();
        for (int g = warp; g < hb; g += AS_THREADS / 32) { /* a warp per head: the running maximum and sum */
            float *sg = sc + g * TP, m = -INFINITY, l = 0.0f;
            for (int j = lane; j < nj; j += 32) m = fmaxf(m, sg[j]);
            for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
            const float mo = ms[g], mn = fmaxf(mo, m);
            for (int j = lane; j < nj; j += 32) {
                const float e = expf(sg[j] - mn);
                sg[j] = e;
                l += e;
            }
            for (int o = 16; o > 0; o /= 2) l += __shfl_xor_sync(0xffffffffu, l, o);
            if (lane == 0) {
                const float f = expf(mo - mn);
                al[g] = f, ls[g] = ls[g] * f + l, ms[g] = mn;
            }
        }
        __syncthreads();
        if (sub < S) { /* the weighted sum of v */
            const __half2 *vr = (const __half2 *)vs + col;
#pragma unroll
            for (int g = 0; g < ATT_MAX_HB; g++)
                if (g < hb) acc[g].x *= al[g], acc[g].y *= al[g];
#pragma unroll 4
            for (int j = sub; j < nj; j += S) {
                const float2 v = __half22float2(vr[j * P]);
#pragma unroll
                for (int g = 0; g < ATT_MAX_HB; g++)
                    if (g < hb) {
                        const float p = sc[g * TP + j];
                        acc[g].x = fmaf(p, v.x, acc[g].x), acc[g].y = fmaf(p, v.y, acc[g].y);
                    }
            }
        }
        __syncthreads();
    }
    if (sub < S) {
#pragma unroll
        for (int g = 0; g < ATT_MAX_HB; g++)
            if (g < hb) red[(sub * hb + g) * D + 2 * col] = acc[g].x, red[(sub * hb + g) * D + 2 * col + 1] = acc[g].y;
    }
    __syncthreads();
    const int64_t hs = (int64_t)nch * (D + 4); /* between the scratch rows of consecutive heads */
    float *pr = part + (((int64_t)t * H + h0) * nch + c) * (D + 4);
    for (int i = threadIdx.x; i < hb * D; i += AS_THREADS) {
        const int g = i / D, d = i % D;
        float a = 0.0f;
        for (int s = 0; s < S; s++) a += red[(s * hb + g) * D + d];
        pr[g * hs + 4 + d] = a;
    }
    if ((int)threadIdx.x < hb) pr[threadIdx.x * hs] = ms[threadIdx.x], pr[threadIdx.x * hs + 1] = ls[threadIdx.x];
}

/* The combination of a query's chunks: chunk c of head h, token t is the scratch row att_row(...) + c (D + 4): m, l,
 * two floats of padding (16-byte aligned sums), then the D unnormalized sums. One warp takes a head: lanes load the
 * chunks' maxima and sums in parallel; M = max m, the weights w[c] = e^(m_c - M) (into shared memory), L = sum l_c w[c]
 * (lane by lane, then across the warp in a fixed order); returns 1 / L to every lane. */
__device__ __forceinline__ float att_weights(const float *pr, int D, int nc, float *w, int lane) {
    float m = -INFINITY, L = 0.0f;
    for (int c = lane; c < nc; c += 32) m = fmaxf(m, pr[(int64_t)c * (D + 4)]);
    for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    for (int c = lane; c < nc; c += 32) {
        const float f = expf(pr[(int64_t)c * (D + 4)] - m);
        w[c] = f;
        L = fmaf(pr[(int64_t)c * (D + 4) + 1], f, L);
    }
    for (int o = 16; o > 0; o /= 2) L += __shfl_xor_sync(0xffffffffu, L, o);
    return 1.0f / L;
}
/* head h's first scratch row for token t */
__device__ __forceinline__ const float *att_row(const float *part, int H, int D, int nch, int t, int h) {
    return part + ((int64_t)t * H + h) * nch * (D + 4);
}

#define AC_HEADS 10 /* heads 256 consecutive elements can touch: 256 / 32 + 2 */
/*
 * The chunks combined, a block per 256 consecutive elements of a token's H D (four warps, lane l of each elements
 * 8 l .. 8 l + 7 of one head, D a multiple of 8): the weights of the heads the block touches first (a warp a head,
 * att_weights), then warp w sums chunks w, w + 4, ... (a fixed order), the four warps' sums added in warp order,
 * out = sum / L. BE = 32 or 256: also the 8-bit rounding for the o product (act_round8, the warp's 256 elements), the
 * same floats either way; BE = 0: no rounding.
 */
template <int BE>
__global__ void __launch_bounds__(NA_WARPS * 32) k_att_combine(const float *part, float *out, int H, int D, int nch, const int64_t *pos,
                                                               int t_off, int8_t *q, float2 *dq) {
    __shared__ float w[AC_HEADS * AS_MAX_CHUNKS], inv_s[AC_HEADS], red[NA_WARPS][256];
    pdl_enter();
    const int t = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32, HD = H * D;
    const int b0 = blockIdx.x * 256, b1 = b0 + 256 < HD ? b0 + 256 : HD, h_lo = b0 / D, nh = (b1 - 1) / D - h_lo + 1;
    const int64_t n = *pos + t_off + t + 1, len = att_split_len(n, nch);
    const int nc = (int)((n + len - 1) / len);
    for (int hh = warp; hh < nh; hh += NA_WARPS) {
        const float inv = att_weights(att_row(part, H, D, nch, t, h_lo + hh), D, nc, w + hh * AS_MAX_CHUNKS, lane);
        if (lane == 0) inv_s[hh] = inv;
    }
    __syncthreads();
    const int e = b0 + 8 * lane; /* within the token's H D */
    const bool valid = e < HD;
    const int h = valid ? e / D : h_lo, d0 = e - h * D;
    const float *pr = att_row(part, H, D, nch, t, h) + 4 + d0, *wh = w + (h - h_lo) * AS_MAX_CHUNKS;
    float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (valid) {
#pragma unroll 4
        for (int c = warp; c < nc; c += NA_WARPS) {
            const float f = wh[c];
            const float4 x = *(const float4 *)(pr + (int64_t)c * (D + 4)), y = *(const float4 *)(pr + (int64_t)c * (D + 4) + 4);
            a[0] = fmaf(x.x, f, a[0]), a[1] = fmaf(x.y, f, a[1]), a[2] = fmaf(x.z, f, a[2]), a[3] = fmaf(x.w, f, a[3]);
            a[4] = fmaf(y.x, f, a[4]), a[5] = fmaf(y.y, f, a[5]), a[6] = fmaf(y.z, f, a[6]), a[7] = fmaf(y.w, f, a[7]);
        }
    }
#pragma unroll
    for (int k = 0; k < 8; k++) red[warp][8 * lane + k] = a[k];
    __syncthreads();
    if (warp) return;
    float v[8];
    const float inv = inv_s[h - h_lo];
#pragma unroll
    for (int k = 0; k < 8; k++) {
        float sum = red[0][8 * lane + k];
#pragma unroll
        for (int r = 1; r < NA_WARPS; r++) sum += red[r][8 * lane + k];
        v[k] = valid ? sum * inv : 0.0f;
    }
    const int64_t e0 = (int64_t)(t_off + t) * HD + e;
    if (valid) {
        float4 *o = (float4 *)(out + e0);
        o[0] = make_float4(v[0], v[1], v[2], v[3]);
        o[1] = make_float4(v[4], v[5], v[6], v[7]);
    }
    if constexpr (BE > 0) act_round8<BE>(v, e0, valid, lane, q, dq);
}

/*
 * One launch for short contexts (cu_attention_one_max; the default, LB_CUDA_ATT_ONE=0 off; run 48): block
 * (head group, token) takes all n visible positions of its group's hb heads, no chunks, no scratch, no combining
 * launch. The KV head's key and value rows go into shared memory by cp.async all at once (the rows below *pos, which
 * no kernel of this step writes, before griddepcontrol.wait; the rows from *pos after it, with nw.k the new token's
 * from the product's output as k_att_split takes them); then the scores of every position (eight lanes a position, the
 * split kernel's operations), the softmax of each head over all n (a warp a head: the maximum, exp(s - max) in place,
 * their sum; no rescaling), the weighted sum of v (a thread per pair of dimensions and subset of the positions, the
 * subsets added in order), out = sum / l and, BE = 32 or 256, the rounding for the o product (act_round8, a warp per
 * 256 elements of the group's hb D, which BE divides). The summation order depends on the shape and n alone.
 * Shared memory: keys and values 4 nmax D bytes, the scores hb nmax floats, q, the sums' subsets (ao_smem).
 */
#define AO_THREADS 512 /* run 53 (H100): tg128 Q4_0 +1.3 %, Q4_K_M +0.7 % against 256 (k_att_one 8.8 us less a step); 1,024 lost */
#define AO_ND 32768 /* nmax D at most: 128 KB of keys and values */

static size_t ao_smem(int hb, int D, int64_t nmax) {
    const int S = AO_THREADS / (D / 2);
    return (size_t)nmax * (size_t)(4 * D + 4 * hb) + (size_t)(ATT_MAX_HB + hb * D + S * hb * D) * sizeof(float);
}

template <int BE>
__global__ void __launch_bounds__(AO_THREADS) k_att_one(const float *q, const __half *kc, const __half *vc, float *out, int H, int KV, int D,
                                                        int hb, int nmax, const int64_t *pos, int t_off, cu_att_new nw, int8_t *aq,
                                                        float2 *ad) {
    extern __shared__ uint4 ao4_[];
    const int64_t p_old = *pos; /* set before the step's first kernel */
    const int t = blockIdx.y, h0 = blockIdx.x * hb, kvh = h0 / (H / KV), kvd = KV * D, upr = D / 8;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int n = (int)(p_old + t_off + t + 1), nold = p_old < n ? (int)p_old : n;
    __half *ks = (__half *)ao4_, *vs = ks + (size_t)nmax * D;
    float *sc = (float *)(vs + (size_t)nmax * D), *inv = sc + (size_t)hb * nmax, *qs = inv + ATT_MAX_HB, *red = qs + hb * D;
    for (int u = threadIdx.x; u < nold * upr; u += AO_THREADS) {
        const size_t off = (size_t)(u / upr) * kvd + (size_t)kvh * D + 8 * (u % upr);
        cp_async(ks + 8 * u, kc + off, 16);
        cp_async(vs + 8 * u, vc + off, 16);
    }
    cp_commit();
    pdl_enter();
    const bool writer = nw.k && h0 % (H / KV) == 0; /* the first group of the KV head stores the new cache row */
    for (int u = nold * upr + threadIdx.x; u < n * upr; u += AO_THREADS) {
        const int j = u / upr;
        const size_t off = (size_t)j * kvd + (size_t)kvh * D + 8 * (u % upr);
        uint4 rk, rv;
        if (nw.k && j == p_old) {
            att_new_unit(nw, j, kvh, D, 8 * (u % upr), &rk, &rv);
            if (writer) {
                *(uint4 *)(nw.kc + off) = rk;
                *(uint4 *)(nw.vc + off) = rv;
            }
        } else {
            rk = *(const uint4 *)(kc + off);
            rv = *(const uint4 *)(vc + off);
        }
        *(uint4 *)(ks + 8 * u) = rk;
        *(uint4 *)(vs + 8 * u) = rv;
    }
    for (int i = threadIdx.x; i < hb * D; i += AO_THREADS) {
        const float *qh = q + ((int64_t)t * H + h0 + i / D) * D;
        qs[i] = nw.k ? rope_elem(qh, i % D, D, nw.cs + p_old * (D / 2), nw.sn + p_old * (D / 2), nw.inter) : qh[i % D];
    }
    cp_wait<0>();
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)D);
    for (int jb = warp * 4; jb < n; jb += AO_THREADS / 8) { /* scores: eight lanes a position, four a warp */
        const int j = jb + lane / 8;
        float a[ATT_MAX_HB];
#pragma unroll
        for (int g = 0; g < ATT_MAX_HB; g++) a[g] = 0.0f;
        if (j < n) att_score_part(ks + (size_t)j * D, qs, D, hb, lane, a);
#pragma unroll
        for (int g = 0; g < ATT_MAX_HB; g++)
            if (g < hb) {
                for (int o = 4; o > 0; o /= 2) a[g] += __shfl_xor_sync(0xffffffffu, a[g], o);
                if (lane % 8 == 0 && j < n) sc[(size_t)g * nmax + j] = a[g] * scale;
            }
    }
    __syncthreads();
    for (int g = warp; g < hb; g += AO_THREADS / 32) { /* a warp a head: the softmax over all n */
        float *sg = sc + (size_t)g * nmax, m = -INFINITY, l = 0.0f;
        for (int j = lane; j < n; j += 32) m = fmaxf(m, sg[j]);
        for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        for (int j = lane; j < n; j += 32) {
            const float e = expf(sg[j] - m);
            sg[j] = e;
            l += e;
        }
        for (int o = 16; o > 0; o /= 2) l += __shfl_xor_sync(0xffffffffu, l, o);
        if (lane == 0) inv[g] = 1.0f / l;
    }
    __syncthreads();
    const int P = D / 2, S = AO_THREADS / P, col = threadIdx.x % P, sub = threadIdx.x / P, HD = hb * D;
    if (sub < S) { /* the weighted sum of v */
        float2 acc[ATT_MAX_HB];
#pragma unroll
        for (int g = 0; g < ATT_MAX_HB; g++) acc[g] = make_float2(0.0f, 0.0f);
        const __half2 *vr = (const __half2 *)vs + col;
#pragma unroll 4
        for (int j = sub; j < n; j += S) {
            const float2 v = __half22float2(vr[(size_t)j * P]);
#pragma unroll
            for (int g = 0; g < ATT_MAX_HB; g++)
                if (g < hb) {
                    const float p = sc[(size_t)g * nmax + j];
                    acc[g].x = fmaf(p, v.x, acc[g].x), acc[g].y = fmaf(p, v.y, acc[g].y);
                }
        }
#pragma unroll
        for (int g = 0; g < ATT_MAX_HB; g++)
            if (g < hb) red[sub * HD + g * D + 2 * col] = acc[g].x, red[sub * HD + g * D + 2 * col + 1] = acc[g].y;
    }
    __syncthreads();
    for (int e0 = warp * 256; e0 < HD; e0 += AO_THREADS / 32 * 256) { /* warp-uniform: act_round8 shuffles */
        const int e = e0 + 8 * lane;
        const bool valid = e < HD;
        float v[8];
        const float iv = valid ? inv[e / D] : 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float sum = 0.0f;
            if (valid) {
                sum = red[e + k];
                for (int s = 1; s < S; s++) sum += red[s * HD + e + k];
            }
            v[k] = sum * iv;
        }
        const int64_t eo = ((int64_t)(t_off + t) * H + h0) * D + e;
        if (valid) {
            float4 *o = (float4 *)(out + eo);
            o[0] = make_float4(v[0], v[1], v[2], v[3]);
            o[1] = make_float4(v[4], v[5], v[6], v[7]);
        }
        if constexpr (BE > 0) act_round8<BE>(v, eo, valid, lane, aq, ad);
    }
}

/* k_att_one for every context it holds, the default: its block per head group and token takes every position itself
 * (H100, 8B shape, Q4_0: tg128 +6.1 % against the split launches at positions 0-127, run 48; at 256 threads a block it
 * lost 5 % at positions 128-255, run 49; at 512, run 54, it gains 1.2-1.7 % there). LB_CUDA_ATT_ONE=0 never, =1 every
 * context it holds (the default), =N (more than 1) contexts of at most N positions. Read once. */
static int64_t att_one_cap(void) {
    static const int64_t cap = [] {
        const long long n = cu_env_int("LB_CUDA_ATT_ONE", 1);
        return n == 1 ? (int64_t)INT64_MAX : n > 1 ? (int64_t)n : (int64_t)0;
    }();
    return cap;
}

int64_t cu_attention_one_max(int H, int KV, int D, bool force) {
    const int64_t cap = force ? (int64_t)INT64_MAX : att_one_cap();
    if (!cap || !cu_attention_split_fits(D)) return 0;
    const int most = cu_dev_smem_optin();
    const int hb = att_hb(H, KV, D);
    const size_t fixed = ao_smem(hb, D, 0), per = ao_smem(hb, D, 1) - fixed;
    int64_t n = (size_t)most > fixed ? (int64_t)(((size_t)most - fixed) / per) : 0;
    if (n > AO_ND / D) n = AO_ND / D;
    if (n > cap) n = cap;
    return n / 8 * 8;
}

bool cu_attention_one_fits(int H, int KV, int D, int64_t max_n, int be, bool force) {
    return max_n <= cu_attention_one_max(H, KV, D, force) && (be == 0 || att_hb(H, KV, D) * D % be == 0);
}

bool cu_attention_split_on(void) {
    static const bool on = !cu_env_is("LB_CUDA_ATT_SPLIT", '0');
    return on;
}

bool cu_attention_split_fits(int D) { return D % 8 == 0 && D >= 32 && D <= 2 * AS_THREADS; }

/* chunks per query: at least 8 positions each, about 64 at long contexts, 32-128 chunks */
int cu_attention_split_chunks(int64_t max_n) {
    const int64_t by8 = (max_n + 7) / 8, by64 = (max_n + 63) / 64;
    const int64_t want = by64 < 32 ? 32 : by64 > AS_MAX_CHUNKS ? AS_MAX_CHUNKS : by64;
    return (int)(by8 < want ? (by8 > 0 ? by8 : 1) : want);
}

size_t cu_attention_split_scratch(int H, int D, int64_t max_n) {
    return (size_t)AS_TOKENS * (size_t)H * (size_t)cu_attention_split_chunks(max_n) * (size_t)(D + 4) * sizeof(float);
}

void cu_attention_split(const float *q, const __half *kc, const __half *vc, float *out, int T, int H, int KV, int D, const int64_t *pos,
                        int64_t max_n, float *part, int be, void *xa, const cu_att_new *rope, int one) {
    cu_att_new nw = {};
    if (rope && T == 1) nw = *rope, nw.kc = (__half *)kc, nw.vc = (__half *)vc; /* the cache row the kernel writes */
    else if (rope) /* several tokens: the rotation and the cache rows by their own launch first (q and k in place) */
        cu_rope_kv((float *)q, (float *)rope->k, rope->v, T, H, KV, D, rope->cs, rope->sn, pos, rope->inter != 0, (__half *)kc, (__half *)vc);
    const int hb = att_hb(H, KV, D), nch = cu_attention_split_chunks(max_n), S = AS_THREADS / (D / 2), TP = att_tile(D);
    const size_t smem = (size_t)TP * (size_t)D * 2 * sizeof(__half) + (size_t)(hb * D + hb * TP + 3 * hb + S * hb * D) * sizeof(float);
    int8_t *aq = (int8_t *)xa;
    float2 *ad = xa ? (float2 *)(aq + (size_t)T * (size_t)H * (size_t)D) : NULL;
    const int vi = !xa ? 0 : be == 256 ? 2 : 1; /* the variant: no rounding, 32-element or 256-element blocks */
    void (*const combines[3])(const float *, float *, int, int, int, const int64_t *, int, int8_t *, float2 *) = {
        k_att_combine<0>, k_att_combine<32>, k_att_combine<256>};
    void (*combine)(const float *, float *, int, int, int, const int64_t *, int, int8_t *, float2 *) = combines[vi];
    if (one != 0 && cu_attention_one_fits(H, KV, D, max_n, xa ? be : 0, one > 0)) { /* one launch: no chunks to combine */
        const int nmax = (int)((max_n + 7) / 8 * 8);
        const size_t osm = ao_smem(hb, D, nmax);
        void (*const ones[3])(const float *, const __half *, const __half *, float *, int, int, int, int, int, const int64_t *, int,
                              cu_att_new, int8_t *, float2 *) = {k_att_one<0>, k_att_one<32>, k_att_one<256>};
        void (*k1)(const float *, const __half *, const __half *, float *, int, int, int, int, int, const int64_t *, int, cu_att_new, int8_t *,
                   float2 *) = ones[vi];
        static cu_dev_cache<bool> raised[3]; /* each variant's limit at the device's opt-in maximum, once a device */
        if (osm > 48 * 1024)
            cu_per_device(raised[vi], [k1](int) {
                return cudaFuncSetAttribute(k1, cudaFuncAttributeMaxDynamicSharedMemorySize, cu_dev_smem_optin()) == cudaSuccess;
            });
        for (int t0 = 0; t0 < T; t0 += AS_TOKENS) {
            const int nt = T - t0 < AS_TOKENS ? T - t0 : AS_TOKENS;
            cu_launch(k1, dim3((unsigned)(H / hb), (unsigned)nt), dim3(AO_THREADS), osm, q + (size_t)t0 * (size_t)H * (size_t)D, kc, vc,
                      out, H, KV, D, hb, nmax, pos, t0, nw, aq, ad);
        }
        return;
    }
    for (int t0 = 0; t0 < T; t0 += AS_TOKENS) {
        const int nt = T - t0 < AS_TOKENS ? T - t0 : AS_TOKENS;
        cu_launch(k_att_split, dim3((unsigned)(H / hb), (unsigned)nch, (unsigned)nt), dim3(AS_THREADS), smem,
                  q + (size_t)t0 * (size_t)H * (size_t)D, kc, vc, part, H, KV, D, hb, nch, pos, t0, nw);
        cu_launch(combine, dim3((unsigned)((H * D + 255) / 256), (unsigned)nt), dim3(NA_WARPS * 32), 0, (const float *)part, out, H, D, nch,
                  pos, t0, aq, ad);
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
