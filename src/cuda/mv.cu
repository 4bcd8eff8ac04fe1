/*
 * mv.cu - the weight products' kernels for every weight type: fused dequantize-and-multiply for a few
 * tokens (decode), dequantization to F16/F32 scratch (prompts go on to cuBLAS), and embedding rows.
 *
 * Three fused kernels: k_mvq (8-bit activations, dp4a) and k_mvm (8-bit activations, int8 tensor cores,
 * 5-16 tokens) for the block types with integer decoders (Mq, quant.cuh), k_matvec (F16 activations, F32
 * products) for the float types. k_matvec: one warp per weight row. Per step the warp copies the
 * bytes of 32 consecutive chunks (32 elements each) of its row into shared memory with 16-byte (or 8-byte)
 * loads, coalesced, then each lane decodes one chunk (quant.cuh) and multiplies it with the activations of
 * every token; a butterfly over the warp sums the lanes. In every kernel the summation order is fixed by K
 * alone (k_mvm's step groups split over a cluster: by K, the rows and the device's multiprocessors), so results
 * repeat exactly run to run.
 */
#include <stdlib.h>

#include <cooperative_groups.h>

#include "kernels.cuh"
#include "quant.cuh"

extern "C" {
#include "../quant/quant.h"
}

#define MV_WARPS 4

namespace cg = cooperative_groups;

/* an output element: the product, or (add) the element plus the product (the residual add of the forward pass,
 * the same IEEE addition as cu_add) */
__device__ __forceinline__ void put_out(float *o, float v, int add) { *o = add ? __fadd_rn(*o, v) : v; }

/* The end of the row kernels: each lane's sums acc[r][t] added over the warp (a butterfly), then written (put_out) to
 * out[t ldo + row0 + r] for r < nr, t < nt: SPLIT, the block's warps' sums added in warp order (red, one slot per warp);
 * else by lane (r NT + t) % 32 of the warp that owns the rows (every lane holds every sum). */
template <int R, int NT, bool SPLIT>
__device__ __forceinline__ void mv_finish(float (&acc)[R][NT], float (*red)[R][NT], int warp, int lane, int nr, int nt, float *out,
                                          int64_t ldo, int64_t row0, int add) {
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
            acc[r][t] = v;
        }
    if constexpr (!SPLIT) {
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (lane == (r * NT + t) % 32 && r < nr && t < nt) put_out(out + (size_t)t * ldo + row0 + r, acc[r][t], add);
    } else {
        if (lane == 0)
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int t = 0; t < NT; t++) red[warp][r][t] = acc[r][t];
        __syncthreads();
        if ((int)threadIdx.x < R * NT) {
            const int r = threadIdx.x / NT, t = threadIdx.x % NT;
            float v = red[0][r][t];
#pragma unroll
            for (int w = 1; w < MV_WARPS; w++) v += red[w][r][t];
            if (t < nt && r < nr) put_out(out + (size_t)t * ldo + row0 + r, v, add);
        }
    }
}

template <int TY> struct Stage {
    static constexpr int PER = Dq<TY>::BE / 32;           /* chunks per block */
    static constexpr int BYTES = (32 / PER) * Dq<TY>::BB; /* bytes of 32 chunks */
};

/* copy n bytes from src to the warp's stage with the widest loads src's alignment allows */
__device__ __forceinline__ void warp_copy(uint8_t *dst, const uint8_t *src, int n, int lane) {
    if (((uintptr_t)src & 15) == 0 && (n & 15) == 0) {
        for (int i = lane; i < n / 16; i += 32) ((uint4 *)dst)[i] = __ldg((const uint4 *)src + i);
    } else if (((uintptr_t)src & 7) == 0 && (n & 7) == 0) {
        for (int i = lane; i < n / 8; i += 32) ((uint2 *)dst)[i] = __ldg((const uint2 *)src + i);
    } else {
        for (int i = lane; i < n; i += 32) dst[i] = __ldg(src + i);
    }
}

/*
 * NT: tokens the kernel is built for (nt <= NT are used); R: weight rows per block, sharing each activation
 * load. The block's MV_WARPS warps split the row length: warp w takes the 32-chunk steps w, w + MV_WARPS, ...,
 * so even a few thousand rows keep every multiprocessor busy; the warps' sums are added in warp order.
 */
template <int TY, int NT, int R>
__global__ void __launch_bounds__(MV_WARPS * 32) k_matvec(const uint8_t *__restrict__ W, size_t rb, int64_t N, int K,
                                                          const __half *__restrict__ x, int nt, float *__restrict__ out,
                                                          int64_t ldo, int add) {
    using D = Dq<TY>;
    constexpr int PER = Stage<TY>::PER;
    __shared__ __align__(16) uint8_t stage[MV_WARPS][R][Stage<TY>::BYTES];
    __shared__ float red[MV_WARPS][R][NT];
    pdl_enter();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t row0 = (int64_t)blockIdx.x * R;
    const int nr = N - row0 < R ? (int)(N - row0) : R;
    const int nch = K / 32;
    float acc[R][NT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
    for (int c0 = 32 * warp; c0 < nch; c0 += 32 * MV_WARPS) {
        const int n = nch - c0 < 32 ? nch - c0 : 32;
#pragma unroll
        for (int r = 0; r < R; r++)
            if (r < nr) warp_copy(stage[warp][r], W + (row0 + r) * rb + (size_t)(c0 / PER) * D::BB, (n / PER) * D::BB, lane);
        __syncwarp();
        if (NT == 1 && lane < n) { /* one token: its 32 activations stay in registers across the rows */
            const uint4 *xp = (const uint4 *)(x + 32 * (c0 + lane));
            float xv[32];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const uint4 u = __ldg(xp + j);
                const uint32_t q4[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const float2 f = __half22float2(*(const __half2 *)&q4[k]);
                    xv[8 * j + 2 * k] = f.x;
                    xv[8 * j + 2 * k + 1] = f.y;
                }
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                float w[32];
                D::chunk(stage[warp][r] + (lane / PER) * D::BB, lane % PER, w);
                float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    s0 = fmaf(w[4 * j], xv[4 * j], s0);
                    s1 = fmaf(w[4 * j + 1], xv[4 * j + 1], s1);
                    s2 = fmaf(w[4 * j + 2], xv[4 * j + 2], s2);
                    s3 = fmaf(w[4 * j + 3], xv[4 * j + 3], s3);
                }
                acc[r][0] += (s0 + s1) + (s2 + s3);
            }
        } else if (lane < n) {
            float w[R][32];
#pragma unroll
            for (int r = 0; r < R; r++) D::chunk(stage[warp][r] + (lane / PER) * D::BB, lane % PER, w[r]);
            const int c = c0 + lane;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t < nt) {
                    const uint4 *xp = (const uint4 *)(x + (size_t)t * K + 32 * c);
                    float s[R][4];
#pragma unroll
                    for (int r = 0; r < R; r++) s[r][0] = s[r][1] = s[r][2] = s[r][3] = 0.f;
#pragma unroll
                    for (int j = 0; j < 8; j++) {
                        const uint4 u = __ldg(xp + j / 2);
                        const uint32_t lo = (j & 1) ? u.z : u.x, hi = (j & 1) ? u.w : u.y;
                        const float2 f0 = __half22float2(*(const __half2 *)&lo), f1 = __half22float2(*(const __half2 *)&hi);
                        const float4 a = make_float4(f0.x, f0.y, f1.x, f1.y);
#pragma unroll
                        for (int r = 0; r < R; r++) {
                            s[r][0] = fmaf(w[r][4 * j], a.x, s[r][0]);
                            s[r][1] = fmaf(w[r][4 * j + 1], a.y, s[r][1]);
                            s[r][2] = fmaf(w[r][4 * j + 2], a.z, s[r][2]);
                            s[r][3] = fmaf(w[r][4 * j + 3], a.w, s[r][3]);
                        }
                    }
#pragma unroll
                    for (int r = 0; r < R; r++) acc[r][t] += (s[r][0] + s[r][1]) + (s[r][2] + s[r][3]);
                }
            }
        }
        __syncwarp();
    }
    mv_finish<R, NT, true>(acc, red, warp, lane, nr, nt, out, ldo, row0, add);
}

/* the first row of a warp's R rows (SPLIT: of the block's, shared by its warps) and how many of them are rows of N */
template <int R, bool SPLIT> __device__ __forceinline__ int mv_rows(int64_t N, int warp, int64_t *row0) {
    *row0 = SPLIT ? (int64_t)blockIdx.x * R : ((int64_t)blockIdx.x * MV_WARPS + warp) * R;
    return *row0 >= N ? 0 : N - *row0 < R ? (int)(N - *row0) : R;
}

/*
 * Kernel k_mvh, one token, F16 and BF16 weights: no staging. Lane l of a warp loads 16-byte units (8 elements) l,
 * l + 32, ... of each of its R rows straight into registers, MVH_U of its units of every row at once (R MVH_U loads in
 * flight per lane before the first is used), and multiplies them with the token's F16 activations of the same
 * units (L1-resident: every warp reads the same K halves). SPLIT: the block's warps share R rows and take every
 * MV_WARPS-th group of units. Each lane's products are one fmaf chain per row in unit order, then a butterfly over
 * the warp (and the warps' sums in warp order): the order depends on K alone.
 */
#define MVH_U 4

template <int TY> __device__ __forceinline__ void h8_to_f(const uint4 &u, float *f) {
    const uint32_t v[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        if constexpr (TY == LB_TYPE_BF16) {
            f[2 * k] = __uint_as_float(v[k] << 16);
            f[2 * k + 1] = __uint_as_float(v[k] & 0xFFFF0000u);
        } else {
            const float2 h = __half22float2(*(const __half2 *)&v[k]);
            f[2 * k] = h.x;
            f[2 * k + 1] = h.y;
        }
    }
}

__device__ __forceinline__ uint4 ld_stream(const uint4 *p) { /* read once: no L1 allocation */
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

template <int TY, int R, bool SPLIT>
__global__ void __launch_bounds__(MV_WARPS * 32) k_mvh(const uint8_t *__restrict__ W, size_t rb, int64_t N, int K,
                                                       const __half *__restrict__ x, float *__restrict__ out, int add) {
    __shared__ float red[SPLIT ? MV_WARPS : 1][R][1];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int64_t row0;
    const int nr = mv_rows<R, SPLIT>(N, warp, &row0);
    if (!SPLIT && nr == 0) {
        pdl_enter();
        return;
    }
    const int nu = K / 8, first = SPLIT ? warp : 0, stride = SPLIT ? MV_WARPS : 1; /* units of 8 per row; groups of 32 units */
    const int ng = (nu + 31) / 32;
    const uint4 *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) wr[r] = (const uint4 *)(W + (row0 + (r < nr ? r : 0)) * rb);
    float acc[R][1];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r][0] = 0.0f;
    bool waited = false;
    for (int g0 = first; g0 < ng; g0 += MVH_U * stride) {
        uint4 wv[MVH_U][R];
#pragma unroll
        for (int u = 0; u < MVH_U; u++) {
            const int i = (g0 + u * stride) * 32 + lane;
#pragma unroll
            for (int r = 0; r < R; r++) wv[u][r] = i < nu ? ld_stream(wr[r] + i) : make_uint4(0, 0, 0, 0);
        }
        if (!waited) { /* the first weights are in flight before the wait on the previous kernel */
            pdl_wait();
            pdl_go();
            waited = true;
        }
#pragma unroll
        for (int u = 0; u < MVH_U; u++) {
            const int i = (g0 + u * stride) * 32 + lane;
            if (i < nu) {
                float xf[8];
                const uint4 xv = __ldg((const uint4 *)x + i);
                const float2 a0 = __half22float2(*(const __half2 *)&xv.x), a1 = __half22float2(*(const __half2 *)&xv.y);
                const float2 a2 = __half22float2(*(const __half2 *)&xv.z), a3 = __half22float2(*(const __half2 *)&xv.w);
                xf[0] = a0.x, xf[1] = a0.y, xf[2] = a1.x, xf[3] = a1.y, xf[4] = a2.x, xf[5] = a2.y, xf[6] = a3.x, xf[7] = a3.y;
#pragma unroll
                for (int r = 0; r < R; r++) {
                    float wf[8];
                    h8_to_f<TY>(wv[u][r], wf);
#pragma unroll
                    for (int k = 0; k < 8; k++) acc[r][0] = fmaf(wf[k], xf[k], acc[r][0]);
                }
            }
        }
    }
    if (!waited) {
        pdl_wait();
        pdl_go();
    }
    mv_finish<R, 1, SPLIT>(acc, red, warp, lane, nr, 1, out, 0, row0, add);
}

/* ---------------------------------------------------------------- 8-bit activations, integer sums --------- */
/*
 * Types with an integer decoder (Mq in quant.cuh) multiply activations quantized to 8 bits per 32 elements:
 * per token, int8 codes q (K) and per 32 elements {d, d * sum(q)} (float2), laid out as q of every token
 * then the float2s. d = max|x| / 127 and q = round-to-nearest-even(x * 127 / max|x|): the CPU's rounding
 * (lb_act_quantize in quant/cpu) at 32-element blocks, bit for bit.
 *
 * Kernel k_mvq: a warp owns R rows (SPLIT: the block's MV_WARPS warps share R rows and take every
 * MV_WARPS-th step, for matrices with few rows). A step is 32 chunks of 32 elements: the warp's lanes copy
 * the R rows' bytes of the step into shared memory with consecutive 16-byte (8-, 4-byte where the rows'
 * alignment allows no more) cp.async copies, MVQ_STAGES - 1 steps ahead of the one being computed; then
 * lane l decodes chunk l of each row to int8 codes (Mq::chunk) and forms its dot products with every
 * token's activation chunk by dp4a, scaled in F32. A butterfly over the warp sums the lanes (and, SPLIT,
 * the warps' sums are added in warp order): the summation order depends on K alone.
 */
#define MVQ_STAGES(R) ((R) >= 4 ? 2 : 3)
/* A row's stage in shared memory: 16-byte aligned, with a word of slack for ldw (quant.cuh) */
#define MVQ_SB(TY) ((Stage<TY>::BYTES + 15) / 16 * 16 + 16)
/* The deeper pipeline of one-token products (LB_CUDA_MVQ_DEEP=1, an experiment until timed on a GPU): 4 stages, 3
 * steps in flight per warp, where the block's stages fit 48 KB of static shared memory; else the default depth. */
#define MVQ_DEEP_STAGES(TY, R) (MV_WARPS * 4 * (R) * MVQ_SB(TY) <= 46 * 1024 ? 4 : MVQ_STAGES(R))

/* n bytes from src to dst in cw-byte copies (cw 16, 8 or 4; 0: byte loads), the rest byte by byte */
__device__ __forceinline__ void stage_fill(uint8_t *dst, const uint8_t *src, int n, int cw, int lane) {
    int done = 0;
    if (cw == 16) {
        for (int i = lane; i < n / 16; i += 32) cp_async(dst + 16 * i, src + 16 * i, 16);
        done = n & ~15;
    } else if (cw == 8) {
        for (int i = lane; i < n / 8; i += 32) cp_async(dst + 8 * i, src + 8 * i, 8);
        done = n & ~7;
    } else if (cw == 4) {
        for (int i = lane; i < n / 4; i += 32) cp_async(dst + 4 * i, src + 4 * i, 4);
        done = n & ~3;
    }
    for (int i = done + lane; i < n; i += 32) dst[i] = __ldg(src + i);
}

/* One token's 8-bit activations of a 32-element chunk: the codes as eight words, {d, d * sum q}, and (M16 types) the
 * code sums of its two halves */
struct Act8 {
    int a[8];
    float2 ad;
    int h0, h1;
};
template <bool M16> __device__ __forceinline__ Act8 act8_load(const int8_t *q, const float2 *d) {
    Act8 x;
    const uint4 a0 = __ldg((const uint4 *)q), a1 = __ldg((const uint4 *)q + 1);
    const int a[8] = {(int)a0.x, (int)a0.y, (int)a0.z, (int)a0.w, (int)a1.x, (int)a1.y, (int)a1.z, (int)a1.w};
#pragma unroll
    for (int k = 0; k < 8; k++) x.a[k] = a[k];
    x.ad = __ldg(d);
    x.h0 = x.h1 = 0;
    if constexpr (M16) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            x.h0 = __dp4a(0x01010101, a[k], x.h0);
            x.h1 = __dp4a(0x01010101, a[k + 4], x.h1);
        }
    }
    return x;
}

/* c + the dot product of four weight bytes (unsigned where WU, else signed) and four signed activation bytes */
template <bool WU> __device__ __forceinline__ int dp4a_w(int w, int a, int c) {
    if constexpr (WU) {
        int d;
        asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(w), "r"(a), "r"(c));
        return d;
    } else {
        return __dp4a(w, a, c);
    }
}

/* A weight chunk decoded to int8 codes and scales (Mq::chunk), and its product with a token's chunk added to acc:
 * integer sums per 16-element half, then the scales in F32 */
template <int TY> struct MqChunk {
    int w[8];
    float d0, d1, m, m1;
    __device__ __forceinline__ void load(const uint8_t *blk, int sub) {
        if constexpr (Mq<TY>::M16) Mq<TY>::chunk(blk, sub, w, d0, d1, m, m1);
        else Mq<TY>::chunk(blk, sub, w, d0, d1, m);
    }
    __device__ __forceinline__ float dot(const Act8 &x, float acc) const {
        int i0 = 0, i1 = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            i0 = dp4a_w<Mq<TY>::WU>(w[k], x.a[k], i0);
            i1 = dp4a_w<Mq<TY>::WU>(w[k + 4], x.a[k + 4], i1);
        }
        if constexpr (Mq<TY>::M16)
            return fmaf(x.ad.x, fmaf(d0, (float)i0, fmaf(d1, (float)i1, fmaf(m, (float)x.h0, m1 * (float)x.h1))), acc);
        else
            return fmaf(x.ad.x, fmaf(d0, (float)i0, d1 * (float)i1), fmaf(m, x.ad.y, acc));
    }
};

template <int TY, int NT, int R, bool SPLIT, int ST>
__global__ void __launch_bounds__(MV_WARPS * 32) k_mvq(const uint8_t *__restrict__ W, size_t rb, int64_t N, int K,
                                                       const int8_t *__restrict__ xq, const float2 *__restrict__ xd, int nt,
                                                       float *__restrict__ out, int64_t ldo, int cw, int add) {
    using D = Dq<TY>;
    constexpr int PER = Stage<TY>::PER, BYTES = Stage<TY>::BYTES, SB = MVQ_SB(TY);
    __shared__ __align__(16) uint8_t stage[MV_WARPS][ST][R][SB];
    __shared__ float red[SPLIT ? MV_WARPS : 1][R][NT];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int64_t row0;
    const int nr = mv_rows<R, SPLIT>(N, warp, &row0);
    if (!SPLIT && nr == 0) {
        pdl_enter();
        return;
    }
    const int nch = K / 32, nsteps = (nch + 31) / 32, first = SPLIT ? warp : 0, stride = SPLIT ? MV_WARPS : 1;
    const int64_t xs = K / 32; /* float2s per token */
    auto issue = [&](int j) {
        const int s = first + j * stride;
        if (s < nsteps) {
            const int n = nch - 32 * s < 32 ? nch - 32 * s : 32;
#pragma unroll
            for (int r = 0; r < R; r++)
                if (r < nr) stage_fill(stage[warp][j % ST][r], W + (row0 + r) * rb + (size_t)s * BYTES, (n / PER) * D::BB, cw, lane);
        }
        cp_commit(); /* an empty group past the end keeps the wait count uniform */
    };
    float acc[R][NT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
#pragma unroll
    for (int j = 0; j < ST - 1; j++) issue(j); /* the weights only: before the previous kernel has finished */
    pdl_wait();
    pdl_go();
    for (int j = 0; first + j * stride < nsteps; j++) {
        issue(j + ST - 1);
        cp_wait<ST - 1>();
        __syncwarp();
        const int s = first + j * stride, c = 32 * s + lane;
        if (c < nch) {
            MqChunk<TY> wc[R];
#pragma unroll
            for (int r = 0; r < R; r++) wc[r].load(stage[warp][j % ST][r] + (lane / PER) * D::BB, lane % PER);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t < nt) {
                    const Act8 x = act8_load<Mq<TY>::M16>(xq + (size_t)t * K + 32 * (size_t)c, xd + t * xs + c);
#pragma unroll
                    for (int r = 0; r < R; r++) acc[r][t] = wc[r].dot(x, acc[r][t]);
                }
            }
        }
        __syncwarp(); /* the buffer computed here is the next issue's */
    }
    cp_wait<0>();
    mv_finish<R, NT, SPLIT>(acc, red, warp, lane, nr, nt, out, ldo, row0, add);
}

/*
 * Kernel k_mvt, one token, 8-bit activations, sm_90 (where the type's Mq::MVT chooses it, mvt_wanted): the weights
 * stream through the Tensor Memory Accelerator. A block (MV_WARPS warps) owns tiles of MVT_RT consecutive rows, tiles
 * blockIdx.x, + gridDim.x, ... (a grid of a few blocks per multiprocessor); each tile's rows are taken in segments of
 * MVT_S elements, and one thread copies each row's segment with a bulk copy (cp.async.bulk, completion counted in
 * bytes on the stage's mbarrier), ST - 1 (tile, segment) items ahead of the one the warps compute (ST stages: MVT_ST,
 * or LB_CUDA_MVT_ST's), across tile boundaries: the pipeline never drains until the block's last tile. Warp w computes
 * rows 2 w and 2 w + 1 of the tile, lane l chunks l and l + 32 of each segment (Mq::chunk, dp4a, as k_mvq); the lane's
 * sums run over the segments in order, then a butterfly over the warp: the order depends on K alone.
 */
#define MVT_RT (2 * MV_WARPS)
#define MVT_S 2048
#define MVT_ST 2 /* run 39: two stages against four, tg128 Q4_0 367 -> 392 t/s, Q4_K_M 351 -> 354 (H100) */

/* RPW: rows a warp (a tile of RPW MV_WARPS rows; 2 by default, MVT_RT) */
template <int TY, int RPW = 2> struct MvtShape {
    static constexpr int RT = RPW * MV_WARPS;                                 /* rows a tile */
    static constexpr int CH = MVT_S / 32;                                     /* chunks a segment */
    static constexpr int SB = (MVT_S / Dq<TY>::BE) * Dq<TY>::BB;              /* bytes of a full row segment */
    static constexpr int SBP = (SB + 15) / 16 * 16 + 16;                      /* its stage row: 16-byte aligned, slack for ldw */
    static constexpr int STAGE = RT * SBP;
    static constexpr bool OK = SB % 16 == 0;                                  /* every segment a whole number of 16 bytes */
};

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *b) {
#if __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(b)) : "memory");
#endif
}
__device__ __forceinline__ void mbar_expect(uint64_t *b, uint32_t bytes) {
#if __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *b) {
#if __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_u32(dst)),
                 "l"(__cvta_generic_to_global(src)), "r"(bytes), "r"(smem_u32(b))
                 : "memory");
#endif
}
__device__ __forceinline__ bool mbar_try(uint64_t *b, uint32_t parity) {
#if __CUDA_ARCH__ >= 900
    uint32_t ok;
    asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
                 : "=r"(ok)
                 : "r"(smem_u32(b)), "r"(parity)
                 : "memory");
    return ok != 0;
#else
    return true;
#endif
}
__device__ __forceinline__ void fence_async_smem() {
#if __CUDA_ARCH__ >= 900
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

template <int TY, int ST = MVT_ST, int RPW = 2>
__global__ void __launch_bounds__(MV_WARPS * 32) k_mvt(const uint8_t *__restrict__ W, size_t rb, int64_t N, int K,
                                                       const int8_t *__restrict__ xq, const float2 *__restrict__ xd,
                                                       float *__restrict__ out, int add) {
    using D = Dq<TY>;
    using S = MvtShape<TY, RPW>;
    constexpr int PER = D::BE / 32, RT = S::RT;
    extern __shared__ __align__(128) uint8_t smem[];
    __shared__ __align__(8) uint64_t full[ST];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int nch = K / 32, nseg = (nch + S::CH - 1) / S::CH;
    const int64_t ntiles = (N + RT - 1) / RT;
    const int64_t mine = (int64_t)blockIdx.x < ntiles ? (ntiles - 1 - blockIdx.x) / gridDim.x + 1 : 0;
    const int64_t items = mine * nseg;
    if (threadIdx.x == 0) {
        for (int s = 0; s < ST; s++) mbar_init(&full[s]);
        fence_async_smem();
    }
    __syncthreads();
    auto issue = [&](int64_t j) { /* thread 0: item j's row segments into stage j % ST */
        if (j >= items) return;
        const int64_t r0 = (blockIdx.x + (j / nseg) * (int64_t)gridDim.x) * RT;
        const int c0 = (int)(j % nseg) * S::CH, n = nch - c0 < S::CH ? nch - c0 : S::CH;
        const int nr = N - r0 < RT ? (int)(N - r0) : RT;
        const uint32_t bytes = (uint32_t)((n / PER) * D::BB);
        uint8_t *st = smem + (j % ST) * S::STAGE;
        uint64_t *b = &full[j % ST];
        mbar_expect(b, bytes * (uint32_t)nr);
        for (int r = 0; r < nr; r++) bulk_copy(st + r * S::SBP, W + (size_t)(r0 + r) * rb + (size_t)(c0 / PER) * D::BB, bytes, b);
    };
    if (threadIdx.x == 0)
        for (int j = 0; j < ST - 1; j++) issue(j); /* the weights only: before the previous kernel has finished */
    pdl_wait();
    pdl_go();
    float acc[RPW] = {};
    for (int64_t j = 0; j < items; j++) {
        if (threadIdx.x == 0) issue(j + ST - 1);
        while (!mbar_try(&full[j % ST], (uint32_t)((j / ST) & 1))) {
        }
        const int64_t r0 = (blockIdx.x + (j / nseg) * (int64_t)gridDim.x) * RT;
        const int seg = (int)(j % nseg), c0 = seg * S::CH, n = nch - c0 < S::CH ? nch - c0 : S::CH;
        const int nr = N - r0 < RT ? (int)(N - r0) : RT;
        const uint8_t *st = smem + (j % ST) * S::STAGE;
#pragma unroll
        for (int h = 0; h < S::CH / 32; h++) {
            const int cc = lane + 32 * h, c = c0 + cc;
            if (cc < n) {
                const Act8 x = act8_load<Mq<TY>::M16>(xq + 32 * (size_t)c, xd + c);
#pragma unroll
                for (int rr = 0; rr < RPW; rr++) {
                    const int r = RPW * warp + rr;
                    if (r < nr) {
                        MqChunk<TY> wc;
                        wc.load(st + r * S::SBP + (cc / PER) * D::BB, cc % PER);
                        acc[rr] = wc.dot(x, acc[rr]);
                    }
                }
            }
        }
        if (seg == nseg - 1) { /* the tile's last segment: its rows are done */
#pragma unroll
            for (int rr = 0; rr < RPW; rr++) {
                float v = acc[rr];
#pragma unroll
                for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
                const int r = RPW * warp + rr;
                if (lane == rr && r < nr) put_out(out + r0 + r, v, add);
                acc[rr] = 0.0f;
            }
        }
        __syncthreads(); /* every warp is done with this stage before thread 0 refills it */
        if (threadIdx.x == 0) fence_async_smem();
    }
}

/*
 * Kernel k_mvm, 5..16 tokens, types with per-word decoders (Mq::WORD): integer tensor-core products. A block
 * owns MT m-tiles of MVM_ROWS = 16 rows (MT = 2 by default where the activations are staged: mvm_mt); its MVM_WARPS
 * warps take every MVM_WARPS-th step of MVM_CH chunks, each staged for the block's rows by cp.async ST - 1 steps ahead
 * (dynamic shared memory; launch_mvm picks ST), with the step's activations where XS (MvmShape), used for each m-tile.
 * A step's chunks are taken MVM_G at a time: the lane first loads the activations of
 * those chunks (from the stage, or without XS from global memory: one L2 round trip for the group, not one a chunk,
 * run 19's ncu had the warps waiting on them), then per chunk, lane (g, t) = (lane / 4, lane % 4) decodes words t
 * and t + 4 of rows g and g + 8 and multiplies them with words t and t + 4 of token g's codes: one m16n8k32 int8
 * product where the chunk has one scale, two m16n8k16 (one per 16-element half, each with its scale) for q6_K.
 * The int32 results are scaled in F32 into the accumulators of rows g, g + 8 and tokens 2t, 2t + 1 of each
 * 8-token tile (q4_K and q5_K: summed in int32 with their 6-bit scales over the step's super-block first, the mins'
 * terms by a second int8 product a chunk accumulating in place, each scaled once a step). The warps' sums are added
 * in warp order: the order depends on K alone. Step groups (P > 1, launch_mvm_p):
 * the block's warps in groups of P that take the same step, each for its own 16 MT rows, the step's activations staged
 * once a group; group q takes steps q, q + 8 / P, ... of the block's part of the row (gridDim.y parts, a cluster,
 * whose sums are added in part order at the end).
 */
#define MVM_ROWS 16
#define MVM_CH 8
#define MVM_G 4
#define MVM_WARPS 8 /* run 20: four left the 4096-row shapes (256 blocks) at eight warps a multiprocessor */

__device__ __forceinline__ void mma_s8_16(int *c, uint32_t a0, uint32_t a1, uint32_t b) {
#if __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%7,%7,%7};\n"
                 : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                 : "r"(a0), "r"(a1), "r"(b), "r"(0));
#else
    c[0] = c[1] = c[2] = c[3] = 0 * (int)(a0 ^ a1 ^ b); /* not built below sm_80 (the build's oldest PTX) */
#endif
}
__device__ __forceinline__ void mma_s8_32(int *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\n"
                 : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
#else
    c[0] = c[1] = c[2] = c[3] = 0 * (int)(a0 ^ a1 ^ a2 ^ a3 ^ b0 ^ b1); /* not built below sm_80 (the build's oldest PTX) */
#endif
}

/* c += a b (m16n8k32, s8): the q4_K / q5_K min terms, summed over a step's chunks in the accumulator */
__device__ __forceinline__ void mma_s8_32_acc(int *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
    c[0] += 0 * (int)(a0 ^ a1 ^ a2 ^ a3 ^ b0 ^ b1); /* not built below sm_80 (the build's oldest PTX) */
#endif
}

/* n bytes of each of nr rows (src rows sstride apart) to dst rows dstride apart, cw-byte copies as stage_fill; the
 * lane's (row, unit) advances by 32 units a copy without a division (one a call) */
__device__ __forceinline__ void stage_fill_rows(uint8_t *dst, int dstride, const uint8_t *src, size_t sstride, int nr, int n, int cw,
                                                int lane) {
    const int units = cw ? n / cw : 0, done = units * cw;
    if (units > 0) {
        const int dr = 32 / units, di = 32 % units;
        int r = lane / units, i = lane % units;
        for (; r < nr; r += dr, i += di) {
            if (i >= units) {
                i -= units;
                r++;
                if (r >= nr) break;
            }
            cp_async(dst + r * dstride + i * cw, src + r * sstride + (size_t)i * cw, cw);
        }
    }
    const int rest = n - done;
    for (int u = lane; u < nr * rest; u += 32) {
        const int r = u / rest, i = done + u - r * rest;
        dst[r * dstride + i] = __ldg(src + r * sstride + i);
    }
}

/* a stage row: the step's bytes in an odd number of 16-byte units, so that the eight rows g of a fragment load fall on
 * distinct banks (run 20: a 160-byte stride made half the loads conflict); the word decoders read within their blocks,
 * so no slack (k_mvq's ldw reads a word past).
 * WIN: a step that is not a whole number of 16-byte units (q6_K's 210-byte super-block) is copied as the 16-byte units
 * that cover it (rows 16-byte aligned), up to LEADMAX bytes before it: the row holds them all and the kernel reads from
 * the step's offset in the first unit.
 * XS: the step's activations follow its 16 MT weight rows in the stage, copied with them: the codes [MVM_CH][NT][32]
 * (a token's two 16-byte halves swapped where the token / 4 is odd: k_mvm's fragment loads without bank conflicts)
 * and the scales [MVM_CH][NT] (float2), zeros past the batch's tokens and the step's chunks (run 29: leaving the
 * scales to the lanes' loads, a smaller stage, was slower at batch 8 and 16). */
template <int TY, int NT, int ST, bool XS, int MT = 1, int P = 1> struct MvmShape {
    static constexpr int PER = Dq<TY>::BE / 32, BYTES = (MVM_CH / PER) * Dq<TY>::BB;
    static constexpr bool WIN = BYTES % 16 != 0;
    /* a step starts (s BYTES) mod 16 bytes into its first unit: at most 16 - (BYTES's lowest set bit) (q6_K: 14, so the
     * 210 bytes always end in the 14th unit, within the row where rows are 16-byte aligned) */
    static constexpr int LEADMAX = WIN ? 16 - (BYTES & -BYTES) : 0;
    static constexpr int UMAX = (BYTES + LEADMAX + 15) / 16;
    static constexpr int SB0 = UMAX * 16;
    static constexpr int SB = (SB0 / 16) % 2 ? SB0 : SB0 + 16;
    static constexpr int WB = MVM_ROWS * MT * SB, XC = XS ? MVM_CH * NT * 32 : 0, XB = XS ? XC + MVM_CH * NT * 8 : 0;
    /* P warps on one step: a stage holds their P weight tiles, then the step's activations (at XOFF) once */
    static constexpr int XOFF = P * WB, SS = XOFF + XB; /* one stage */
    static constexpr int STAGE = MVM_WARPS / P * ST * SS;
};

/* cp.async of 16 bytes to the shared address s (converted once for several copies) where ok: a predicated copy, no
 * branch around it (a branch a copy had each copy's address computed again from the row: 2-20 instructions more) */
__device__ __forceinline__ void cp_async16_if(unsigned s, const void *g, bool ok) {
#if __CUDA_ARCH__ >= 800
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %2, 0;\n\t@p cp.async.cg.shared.global [%0], [%1], 16;\n}\n" ::"r"(s),
                 "l"(__cvta_generic_to_global(g)), "r"((int)ok));
#else
    (void)s, (void)g, (void)ok; /* not built below sm_80 (the build's oldest PTX), as k_mvm's mma.sync */
#endif
}

/* a full step's U 16-byte units of each of the nr <= 16 rows of k_mvm to dst rows DS bytes apart. U <= 16 and not
 * rmaj: a copy takes R = 32 / U whole rows (lane l: unit l % U of row l / U; the lanes past R U idle), the source
 * advancing R rows and the destination R DS bytes (an immediate) a copy, the shared address converted once. Else
 * (U > 16: one row a copy would idle half the lanes; rmaj: LB_CUDA_MVM_RMAJ=1): row-major over the lanes, whole runs
 * of each row, as stage_fill_rows. */
template <int U, int DS>
__device__ __forceinline__ void stage_rows16(uint8_t *dst, const uint8_t *src, size_t sstride, int nr, int lane, bool rmaj) {
    if constexpr (U <= 16) {
        if (!rmaj) {
            constexpr int R = 32 / U;
            const int r = lane / U, i = lane % U;
            const unsigned s = (unsigned)__cvta_generic_to_shared(dst + r * DS + 16 * i);
            const uint8_t *g = src + r * sstride + 16 * i;
            const size_t step = R * sstride;
#pragma unroll
            for (int k = 0; k < (16 + R - 1) / R; k++, g += step) cp_async16_if(s + k * R * DS, g, r < R && r + k * R < nr);
            return;
        }
    }
#pragma unroll
    for (int k = 0; k < (16 * U + 31) / 32; k++) {
        const int u = lane + 32 * k, r = u / U, i = u % U;
        cp_async16_if((unsigned)__cvta_generic_to_shared(dst + r * DS + 16 * i), src + r * sstride + 16 * i, r < nr);
    }
}

/* bytes (16 or 8) from g to smem by cp.async, or zeros where !ok (g is not read then) */
__device__ __forceinline__ void cp_async_z(void *smem, const void *g, int bytes, bool ok) {
#if __CUDA_ARCH__ >= 800
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    const size_t ga = __cvta_generic_to_global(g);
    const int n = ok ? bytes : 0;
    if (bytes == 16) asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(ga), "r"(n));
    else asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(ga), "r"(n));
#else
    if (bytes == 16) *(uint4 *)smem = ok ? __ldg((const uint4 *)g) : make_uint4(0, 0, 0, 0);
    else *(uint2 *)smem = ok ? __ldg((const uint2 *)g) : make_uint2(0, 0);
#endif
}

template <int TY, int NT, int ST, bool XS, int MT = 1, int P = 1>
__global__ void __launch_bounds__(MVM_WARPS * 32) k_mvm(const uint8_t *__restrict__ W, size_t rb, int64_t N, int K,
                                                       const int8_t *__restrict__ xq, const float2 *__restrict__ xd, int nt,
                                                       float *__restrict__ out, int64_t ldo, int cw, int add, int rmaj) {
    using D = Dq<TY>;
    using S = MvmShape<TY, NT, ST, XS, MT, P>;
    constexpr int NTL = NT / 8, SB = S::SB, G = MVM_WARPS / P;
    static_assert(MVM_WARPS % P == 0 && (P == 1 || XS), "step groups of P warps share the step's staged activations");
    /* one scale a chunk (every word type but q6_K, whose 16-element halves have their own); MIN: the k-quants with
     * 6-bit scales and mins (q4_K, q5_K), whose steps are one super-block each (the others have no min term) */
    constexpr bool K32 = TY != LB_TYPE_Q6_K, MIN = TY == LB_TYPE_Q4_K || TY == LB_TYPE_Q5_K;
    static_assert(!MIN || (S::PER == MVM_CH && K32), "a MIN type's step is one super-block of one-scale chunks");
    static_assert(MVM_ROWS == 16, "stage_rows16 copies 16 rows");
    extern __shared__ __align__(16) uint8_t smem[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int q = warp / P, p = warp % P; /* the warp's step group and its place there (P = 1: q = warp) */
    uint8_t *stage = smem + q * (ST * S::SS);
    /* the block's rows from rowb, the warp's from row0 (nr of them, none for some warps of a last block where P > 1) */
    const int64_t rowb = (int64_t)blockIdx.x * MVM_ROWS * MT * P, row0 = rowb + p * MVM_ROWS * MT;
    const int nr = N - row0 < MVM_ROWS * MT ? (int)(N - row0) : MVM_ROWS * MT;
    const int nch = K / 32, nsteps = (nch + MVM_CH - 1) / MVM_CH;
    /* the block's steps [s0, s1): part blockIdx.y of gridDim.y (a cluster, summed at the end); group q takes s0 + q + j G */
    const int spk = (nsteps + (int)gridDim.y - 1) / (int)gridDim.y;
    const int s0 = min(nsteps, (int)blockIdx.y * spk), s1 = min(nsteps, s0 + spk);
    const int64_t xs = K / 32;
    /* step j's copies: the weights (w), its activations (x: XS, shared by the group's warps); one cp.async group a step */
    auto issue = [&](int j, bool w, bool x) {
        const int s = s0 + q + j * G;
        if (s >= s1) return;
        uint8_t *st = stage + (j % ST) * S::SS;
        const int n = MIN || nch - MVM_CH * s >= MVM_CH ? MVM_CH : nch - MVM_CH * s; /* MIN: whole super-blocks, every step full */
        const size_t off = (size_t)s * S::BYTES;
        if (w) {
            if (S::WIN || (cw == 16 && n == MVM_CH)) { /* a full step (WIN: the UMAX 16-byte units from the one holding its first byte) */
                const size_t from = S::WIN ? off & ~(size_t)15 : off;
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    stage_rows16<S::UMAX, SB>(st + p * S::WB + mt * MVM_ROWS * SB, W + (row0 + mt * MVM_ROWS) * rb + from, rb,
                                              nr - mt * MVM_ROWS, lane, rmaj != 0);
            } else {
                stage_fill_rows(st + p * S::WB, SB, W + row0 * rb + off, rb, nr, (n / S::PER) * D::BB, cw, lane);
            }
        }
        if constexpr (XS) {
            if (x) { /* the step's codes of each token (16 units of 16 bytes), then its scales; unit u by lane u % 32 of the
                      * group's warp u / 32 % P */
                const int c0 = MVM_CH * s;
                constexpr int XU = 16 * NT, SU = NT * MVM_CH;
#pragma unroll
                for (int i = 0; i < (XU + 32 * P - 1) / (32 * P); i++) {
                    const int u = lane + 32 * (p + P * i), tok = u / 16, ch = (u % 16) / 2, h = u % 2;
                    const bool ok = tok < nt && ch < n;
                    /* half h of a token stored at 16 (h ^ (tok / 4 % 2)): the fragment loads below without bank conflicts */
                    const int hs = h ^ ((tok >> 2) & 1);
                    if (u < XU) cp_async_z(st + S::XOFF + (ch * NT + tok) * 32 + 16 * hs, ok ? xq + (size_t)tok * K + 32 * (c0 + ch) + 16 * h : xq, 16, ok);
                }
#pragma unroll
                for (int i = 0; i < (SU + 32 * P - 1) / (32 * P); i++) {
                    const int u = lane + 32 * (p + P * i), tok = u / MVM_CH, ch = u % MVM_CH;
                    const bool ok = tok < nt && ch < n;
                    if (u < SU) cp_async_z(st + S::XOFF + S::XC + (ch * NT + tok) * 8, ok ? xd + tok * xs + c0 + ch : xd, 8, ok);
                }
            }
        } else {
            (void)x;
        }
    };
    float acc[MT][NTL][4] = {};
#pragma unroll
    for (int j = 0; j < ST - 1; j++) issue(j, true, false); /* the weights before the producer of the activations ends */
    pdl_wait();
#pragma unroll
    for (int j = 0; j < ST - 1; j++) {
        issue(j, false, true); /* group j: step j's activations (group 0 also every weight above) */
        cp_commit();
    }
    pdl_go();
    for (int j = 0; s0 + q + j * G < s1; j++) {
        if constexpr (P == 1) { /* the warp's own stages: it refills the one it read last before waiting */
            issue(j + ST - 1, true, true);
            cp_commit(); /* an empty group past the end keeps the wait count uniform */
            cp_wait<ST - 1>();
            __syncwarp();
        } else { /* the group's stages: step j's copies of every warp of the group visible, and each done with step j - 1's
                  * stage, before it is refilled */
            cp_wait<ST - 2>();
            if constexpr (G == 1) __syncthreads();
            else asm volatile("bar.sync %0, %1;" ::"r"(q + 1), "r"(32 * P) : "memory");
            issue(j + ST - 1, true, true);
            cp_commit();
        }
        const int s = s0 + q + j * G, n = MIN || nch - MVM_CH * s >= MVM_CH ? MVM_CH : nch - MVM_CH * s;
        const int lead = S::WIN ? (int)(((size_t)s * S::BYTES) & 15) : 0; /* the step's offset in its first unit */
        const uint8_t *st = stage + (j % ST) * S::SS;
        const uint8_t *rp = st + p * S::WB + g * SB + lead; /* row g of m-tile mt: rp + mt * 16 SB; row g + 8: 8 SB further */
        /* q4_K / q5_K: a step is one super-block, whose activations share one scale: the chunks' integer products
         * times their 6-bit scales add up exactly in int32 (si), and so do the mins times the activations' codes (mi:
         * one more product a chunk, whose weight operand is the row's min in every byte, accumulating in place); the
         * step ends with one scaling each (dx the activation scale of tokens 2t, 2t + 1). The scales and mins of rows
         * g and g + 8 are read once a step as packed bytes (k4_scales_packed). */
        int si[MT][NTL][4] = {}, mi[MT][NTL][4] = {};
        float dx[NTL][2] = {};
        [[maybe_unused]] uint32_t ks[MT][2][2], km[MT][2][2]; /* [mt][row g, g + 8][chunks 0-3, 4-7] */
        /* MIN: the words t and t + 4 of rows g and g + 8 ([mt][4], a00 a01 a10 a11's order): the nibbles, loaded at each
         * even chunk for the pair, and the fifth bits (q5_K), once a step (Mq's word_of) */
        [[maybe_unused]] uint32_t wq[MT][4] = {}, wh[MT][4] = {};
        if constexpr (MIN) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const uint8_t *b0 = rp + mt * MVM_ROWS * SB, *b1 = b0 + 8 * SB;
                k4_scales_packed(b0 + 4, ks[mt][0], km[mt][0]);
                k4_scales_packed(b1 + 4, ks[mt][1], km[mt][1]);
                if constexpr (Mq<TY>::QH > 0) {
                    wh[mt][0] = ld32a(b0 + Mq<TY>::QH + 4 * t), wh[mt][1] = ld32a(b0 + Mq<TY>::QH + 4 * t + 16);
                    wh[mt][2] = ld32a(b1 + Mq<TY>::QH + 4 * t), wh[mt][3] = ld32a(b1 + Mq<TY>::QH + 4 * t + 16);
                }
            }
        }
#pragma unroll
        for (int g0 = 0; g0 < MVM_CH; g0 += MVM_G) {
            if (g0 >= n) break;
            uint32_t xa[MVM_G][NTL], xb[MVM_G][NTL];
            float2 fa[MVM_G][NTL], fb[MVM_G][NTL];
#pragma unroll
            for (int i = 0; i < MVM_G; i++) { /* the group's activations: every load issued before the first use */
                [[maybe_unused]] const int c = MVM_CH * s + g0 + i;
                [[maybe_unused]] const bool in = g0 + i < n;
#pragma unroll
                for (int tl = 0; tl < NTL; tl++) {
                    const int tb = 8 * tl + g, t0 = 8 * tl + 2 * t;
                    if constexpr (XS) { /* zeros past the tokens and chunks */
                        /* the token's halves swapped where tb / 4 is odd (the copies above): word t of lane (g, t) in
                         * bank 8 g + 4 (g / 4) + t, distinct for the warp's 32 lanes (unswizzled, g and g + 4 shared
                         * banks: run 62's ncu, 1.5-way conflicts on 29 % of the shared-load wavefronts) */
                        const int sw = 16 * ((tb >> 2) & 1);
                        const uint8_t *xc = st + S::XOFF + ((g0 + i) * NT + tb) * 32;
                        xa[i][tl] = *(const uint32_t *)(xc + sw + 4 * t);
                        xb[i][tl] = *(const uint32_t *)(xc + (16 - sw) + 4 * t);
                        const float4 f = *(const float4 *)(st + S::XOFF + S::XC + ((g0 + i) * NT + t0) * 8);
                        fa[i][tl] = make_float2(f.x, f.y);
                        fb[i][tl] = make_float2(f.z, f.w);
                    } else {
                        xa[i][tl] = xb[i][tl] = 0;
                        if (in && tb < nt) {
                            const uint32_t *xp = (const uint32_t *)(xq + (size_t)tb * K + 32 * (size_t)c);
                            xa[i][tl] = __ldg(xp + t);
                            xb[i][tl] = __ldg(xp + t + 4);
                        }
                        fa[i][tl] = in && t0 < nt ? __ldg(xd + t0 * xs + c) : make_float2(0.f, 0.f);
                        fb[i][tl] = in && t0 + 1 < nt ? __ldg(xd + (t0 + 1) * xs + c) : make_float2(0.f, 0.f);
                    }
                }
            }
#pragma unroll
            for (int i = 0; i < MVM_G; i++) {
                const int cc = g0 + i, blk = cc / S::PER, sub = cc % S::PER;
                if (cc < n) {
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        const uint8_t *b0 = rp + mt * MVM_ROWS * SB + blk * D::BB, *b1 = b0 + 8 * SB;
                        if constexpr (MIN) {
                            if (sub % 2 == 0) {
                                const int o = Mq<TY>::QS + 32 * (sub / 2) + 4 * t;
                                wq[mt][0] = ld32a(b0 + o), wq[mt][1] = ld32a(b0 + o + 16);
                                wq[mt][2] = ld32a(b1 + o), wq[mt][3] = ld32a(b1 + o + 16);
                            }
                            const uint32_t a00 = Mq<TY>::word_of(wq[mt][0], wh[mt][0], sub), a01 = Mq<TY>::word_of(wq[mt][1], wh[mt][1], sub);
                            const uint32_t a10 = Mq<TY>::word_of(wq[mt][2], wh[mt][2], sub), a11 = Mq<TY>::word_of(wq[mt][3], wh[mt][3], sub);
                            /* chunk cc's scale (zero-extended byte) and min (in all four bytes) of rows g, g + 8 */
                            const uint32_t sel = (uint32_t)(cc % 4);
                            const int sc0 = (int)__byte_perm(ks[mt][0][cc / 4], 0, 0x4440u | sel);
                            const int sc1 = (int)__byte_perm(ks[mt][1][cc / 4], 0, 0x4440u | sel);
                            const uint32_t mb0 = __byte_perm(km[mt][0][cc / 4], 0, sel * 0x1111u);
                            const uint32_t mb1 = __byte_perm(km[mt][1][cc / 4], 0, sel * 0x1111u);
#pragma unroll
                            for (int tl = 0; tl < NTL; tl++) {
                                int sm[4];
                                mma_s8_32(sm, a00, a10, a01, a11, xa[i][tl], xb[i][tl]);
                                si[mt][tl][0] += sc0 * sm[0];
                                si[mt][tl][1] += sc0 * sm[1];
                                si[mt][tl][2] += sc1 * sm[2];
                                si[mt][tl][3] += sc1 * sm[3];
                                mma_s8_32_acc(mi[mt][tl], mb0, mb1, mb0, mb1, xa[i][tl], xb[i][tl]);
                                if (cc == 0) dx[tl][0] = fa[i][tl].x, dx[tl][1] = fb[i][tl].x;
                            }
                            continue;
                        }
                        const uint32_t a00 = Mq<TY>::word(b0, sub, t), a01 = Mq<TY>::word(b0, sub, t + 4);
                        const uint32_t a10 = Mq<TY>::word(b1, sub, t), a11 = Mq<TY>::word(b1, sub, t + 4);
                        float d00, d01, m0, d10, d11, m1;
                        Mq<TY>::scales(b0, sub, d00, d01, m0);
                        Mq<TY>::scales(b1, sub, d10, d11, m1);
                        float(*ac)[4] = acc[mt];
#pragma unroll
                        for (int tl = 0; tl < NTL; tl++) {
                            const float2 f0 = fa[i][tl], f1 = fb[i][tl];
                            if constexpr (K32) {
                                int sm[4];
                                mma_s8_32(sm, a00, a10, a01, a11, xa[i][tl], xb[i][tl]);
                                ac[tl][0] = fmaf(f0.x, d00 * (float)sm[0], ac[tl][0]);
                                ac[tl][1] = fmaf(f1.x, d00 * (float)sm[1], ac[tl][1]);
                                ac[tl][2] = fmaf(f0.x, d10 * (float)sm[2], ac[tl][2]);
                                ac[tl][3] = fmaf(f1.x, d10 * (float)sm[3], ac[tl][3]);
                            } else {
                                int lo[4], hi[4];
                                mma_s8_16(lo, a00, a10, xa[i][tl]);
                                mma_s8_16(hi, a01, a11, xb[i][tl]);
                                ac[tl][0] = fmaf(f0.x, fmaf(d00, (float)lo[0], d01 * (float)hi[0]), fmaf(m0, f0.y, ac[tl][0]));
                                ac[tl][1] = fmaf(f1.x, fmaf(d00, (float)lo[1], d01 * (float)hi[1]), fmaf(m0, f1.y, ac[tl][1]));
                                ac[tl][2] = fmaf(f0.x, fmaf(d10, (float)lo[2], d11 * (float)hi[2]), fmaf(m1, f0.y, ac[tl][2]));
                                ac[tl][3] = fmaf(f1.x, fmaf(d10, (float)lo[3], d11 * (float)hi[3]), fmaf(m1, f1.y, ac[tl][3]));
                            }
                        }
                    }
                }
            }
        }
        if constexpr (MIN) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const uint8_t *r0p = rp + mt * MVM_ROWS * SB, *r1p = r0p + 8 * SB;
                const float d0 = ldh(r0p), m0 = ldh(r0p + 2), d1 = ldh(r1p), m1 = ldh(r1p + 2);
#pragma unroll
                for (int tl = 0; tl < NTL; tl++) {
                    float *a = acc[mt][tl];
                    const int *q = si[mt][tl], *m = mi[mt][tl];
                    a[0] = fmaf(dx[tl][0] * d0, (float)q[0], fmaf(-m0 * dx[tl][0], (float)m[0], a[0]));
                    a[1] = fmaf(dx[tl][1] * d0, (float)q[1], fmaf(-m0 * dx[tl][1], (float)m[1], a[1]));
                    a[2] = fmaf(dx[tl][0] * d1, (float)q[2], fmaf(-m1 * dx[tl][0], (float)m[2], a[2]));
                    a[3] = fmaf(dx[tl][1] * d1, (float)q[3], fmaf(-m1 * dx[tl][1], (float)m[3], a[3]));
                }
            }
        }
        if constexpr (P == 1) __syncwarp();
    }
    cp_wait<0>();
    __syncthreads(); /* every warp is done with its stages: the sums go where they were */
    float *red = (float *)smem; /* [MVM_WARPS][32][MT][NTL][4] */
    constexpr int V = MT * NTL * 4, OUTS = P * 32 * V; /* the block's sums: [P][32][V] */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int tl = 0; tl < NTL; tl++)
#pragma unroll
            for (int i = 0; i < 4; i++) red[(warp * 32 + lane) * V + (mt * NTL + tl) * 4 + i] = acc[mt][tl][i];
    __syncthreads();
    /* sum idx of the block: the warps at place idx / (32 V) of every group, in group order (P = 1: every warp's) */
    auto emit = [&](int idx, float v) {
        const int pw = idx / (32 * V), l = idx / V % 32, sl = idx % V, mt = sl / (NTL * 4), tl = sl / 4 % NTL, i = sl % 4;
        const int64_t row = rowb + pw * MVM_ROWS * MT + MVM_ROWS * mt + l / 4 + (i >= 2 ? 8 : 0);
        const int tok = 8 * tl + 2 * (l % 4) + (i & 1);
        if (row < N && tok < nt) put_out(out + (size_t)tok * ldo + row, v, add);
    };
    const bool split = gridDim.y > 1;
    for (int idx = threadIdx.x; idx < OUTS; idx += MVM_WARPS * 32) {
        float v = red[idx]; /* warp idx / (32 V) of group 0, then of the others */
#pragma unroll
        for (int w = 1; w < G; w++) v += red[w * OUTS + idx];
        if (split) red[idx] = v; /* group 0's place: read by this thread alone above */
        else emit(idx, v);
    }
#if __CUDA_ARCH__ >= 900
    if (split) { /* the parts of the cluster (launch_mvm_p: sm_90 only) added in part order, each part summing a share */
        cg::cluster_group cl = cg::this_cluster();
        cl.sync();
        const int parts = (int)gridDim.y, me = (int)cl.block_rank();
        for (int idx = me * MVM_WARPS * 32 + (int)threadIdx.x; idx < OUTS; idx += parts * MVM_WARPS * 32) {
            float v = cl.map_shared_rank(red, 0)[idx];
            for (int r = 1; r < parts; r++) v += cl.map_shared_rank(red, r)[idx];
            emit(idx, v);
        }
        cl.sync(); /* no part leaves while another reads its shared memory */
    }
#endif
}

/* The CPU's 8-bit rounding of activations (lb_act_quantize): one scale per `be` elements (the weight type's block,
 * 32 or 256), amax / 127, the codes rounded to nearest-even from x * (127 / amax), NaN to -127; the same IEEE
 * operations, so codes and scales are the CPU's to the bit. One warp per be-block; lane l holds elements
 * 32 c + l. Q8 = true writes the 8-bit layout above (a scale and a code sum per 32: the scale repeated over a
 * 256-block), false the rounded values d * q as F16 (the fallback decoders and the cuBLAS prompt path). */
template <int BE, bool Q8>
__global__ void k_act_round(const float *__restrict__ x, int64_t nblk, int8_t *__restrict__ q, float2 *__restrict__ d,
                            __half *__restrict__ y) {
    constexpr int C = BE / 32;
    pdl_enter();
    const int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (b >= nblk) return;
    float v[C];
    float amax = 0.0f;
#pragma unroll
    for (int c = 0; c < C; c++) {
        v[c] = x[BE * b + 32 * c + lane];
        const float a = fabsf(v[c]);
        amax = a > amax ? a : amax;
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
        const float u = __shfl_xor_sync(0xffffffffu, amax, o);
        amax = u > amax ? u : amax;
    }
    float id, dd;
    act_scales(amax, &id, &dd);
#pragma unroll
    for (int c = 0; c < C; c++) {
        const int qi = act_code(v[c], id);
        const int64_t i = BE * b + 32 * c + lane;
        if (Q8) {
            q[i] = (int8_t)qi;
            int sum = qi;
#pragma unroll
            for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            if (lane == 0) d[i / 32] = make_float2(dd, __fmul_rn(dd, (float)sum));
        } else {
            y[i] = __float2half_rn(__fmul_rn(dd, (float)qi));
        }
    }
}

static unsigned grid_for(int64_t n, int bs) { return (unsigned)((n + bs - 1) / bs); }

template <bool Q8>
static void act_round(int64_t be, const float *x, int64_t n, int8_t *q, float2 *d, __half *y) {
    const int64_t nblk = n / be;
    if (be == 256) cu_launch(k_act_round<256, Q8>, dim3(grid_for(nblk * 32, 256)), dim3(256), 0, x, nblk, q, d, y);
    else cu_launch(k_act_round<32, Q8>, dim3(grid_for(nblk * 32, 256)), dim3(256), 0, x, nblk, q, d, y);
}

/* Dequantization: a warp per 32-chunk span of a row, staged like the fused kernel; lane l writes chunk l. */
template <int TY, typename OUT>
__global__ void __launch_bounds__(MV_WARPS * 32) k_dequant(const uint8_t *__restrict__ W, size_t rb, int64_t r0, int64_t R,
                                                           int K, OUT *__restrict__ dst) {
    using D = Dq<TY>;
    constexpr int PER = Stage<TY>::PER;
    __shared__ __align__(16) uint8_t stage[MV_WARPS][Stage<TY>::BYTES];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int nch = K / 32, spans = (nch + 31) / 32;
    const int64_t gw = (int64_t)blockIdx.x * MV_WARPS + warp;
    if (gw >= R * spans) return;
    const int64_t r = gw / spans;
    const int c0 = (int)(gw % spans) * 32, n = nch - c0 < 32 ? nch - c0 : 32;
    warp_copy(stage[warp], W + (r0 + r) * rb + (size_t)(c0 / PER) * D::BB, (n / PER) * D::BB, lane);
    __syncwarp();
    if (lane >= n) return;
    float w[32];
    D::chunk(stage[warp] + (lane / PER) * D::BB, lane % PER, w);
    OUT *o = dst + r * K + 32 * (c0 + lane);
    if (sizeof(OUT) == 2) {
        __half2 h[16];
#pragma unroll
        for (int j = 0; j < 16; j++) h[j] = __floats2half2_rn(w[2 * j], w[2 * j + 1]);
#pragma unroll
        for (int j = 0; j < 4; j++) ((uint4 *)o)[j] = ((const uint4 *)h)[j];
    } else {
#pragma unroll
        for (int j = 0; j < 8; j++) ((float4 *)o)[j] = make_float4(w[4 * j], w[4 * j + 1], w[4 * j + 2], w[4 * j + 3]);
    }
}

template <int TY>
__global__ void k_embed(const uint8_t *__restrict__ W, size_t rb, int K, const int32_t *__restrict__ tok, int T,
                        float *__restrict__ out) {
    using D = Dq<TY>;
    constexpr int PER = D::BE / 32;
    pdl_enter();
    const int nch = K / 32;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)T * nch) return;
    const int t = (int)(i / nch), c = (int)(i % nch);
    float w[32];
    D::chunk(W + (size_t)tok[t] * rb + (size_t)(c / PER) * D::BB, c % PER, w);
#pragma unroll
    for (int j = 0; j < 32; j++) out[(size_t)t * K + 32 * c + j] = w[j];
}

/* ---------------------------------------------------------------- launchers -------------------------------- */

template <int TY, int NT, int R> static void launch_mv(const dweight *w, const __half *x, int T, float *out, int64_t ldo, int add) {
    const unsigned blocks = (unsigned)((w->rows + R - 1) / R);
    cu_launch(k_matvec<TY, NT, R>, dim3(blocks), dim3(MV_WARPS * 32), 0, (const uint8_t *)w->data, w->row_bytes, w->rows, (int)w->cols, x, T,
              out, ldo, add);
}

/* Rows at which two rows per block (four from twice as many) still leave every multiprocessor of a large GPU
 * several blocks. */
#define MV_TWO_ROWS_MIN 2048

/* one-token products of F16 and BF16 weights through k_mvh where the rows allow 16-byte loads (the default since run 17:
 * 67 -> 89 % of the HBM read on 14336 x 4096, F16 tg128 +30 % on the 8B shape; LB_CUDA_MVH=0 takes k_matvec) */
static bool mvh_on(void) {
    static const bool on = !cu_env_is("LB_CUDA_MVH", '0');
    return on;
}

template <int TY, int R, bool SPLIT> static void launch_mvh(const dweight *w, const __half *x, float *out, int add) {
    const int64_t per = SPLIT ? R : (int64_t)R * MV_WARPS;
    cu_launch(k_mvh<TY, R, SPLIT>, dim3((unsigned)((w->rows + per - 1) / per)), dim3(MV_WARPS * 32), 0, (const uint8_t *)w->data,
              w->row_bytes, w->rows, (int)w->cols, x, out, add);
}

template <int TY> static void mv_type(const dweight *w, const __half *x, int T, float *out, int64_t ldo, int add) {
    const bool two = w->rows >= MV_TWO_ROWS_MIN && Stage<TY>::BYTES <= 2048, four = two && w->rows >= 2 * MV_TWO_ROWS_MIN;
    constexpr int R4 = Stage<TY>::BYTES <= 2048 ? 4 : 1; /* the four-row stage fits static shared memory */
    if constexpr (TY == LB_TYPE_F16 || TY == LB_TYPE_BF16) {
        if (T == 1 && mvh_on() && ((uintptr_t)w->data & 15) == 0 && (w->row_bytes & 15) == 0 && w->cols % 8 == 0) {
            if (w->rows < 2048) launch_mvh<TY, 1, true>(w, x, out, add); /* as MVQ_SPLIT_BELOW */
            else launch_mvh<TY, 2, false>(w, x, out, add);
            return;
        }
    }
    if (T == 1) four ? launch_mv<TY, 1, R4>(w, x, T, out, ldo, add) : two ? launch_mv<TY, 1, 2>(w, x, T, out, ldo, add) : launch_mv<TY, 1, 1>(w, x, T, out, ldo, add);
    else if (T == 2) two ? launch_mv<TY, 2, 2>(w, x, T, out, ldo, add) : launch_mv<TY, 2, 1>(w, x, T, out, ldo, add);
    else if (T <= 4) two ? launch_mv<TY, 4, 2>(w, x, T, out, ldo, add) : launch_mv<TY, 4, 1>(w, x, T, out, ldo, add);
    else if (T <= 8) two ? launch_mv<TY, 8, 2>(w, x, T, out, ldo, add) : launch_mv<TY, 8, 1>(w, x, T, out, ldo, add);
    else two ? launch_mv<TY, 16, 2>(w, x, T, out, ldo, add) : launch_mv<TY, 16, 1>(w, x, T, out, ldo, add);
}

/* the widest cp.async copy (16, 8, 4) that rows at data, rb bytes apart, in steps of step bytes allow; 0: none */
static int copy_width(const dweight *w, size_t step) {
    int cw = 16;
    while (cw >= 4 && (((uintptr_t)w->data | w->row_bytes | step) & (size_t)(cw - 1))) cw /= 2;
    return cw < 4 ? 0 : cw;
}

template <int TY, int NT, int R, bool SPLIT, int ST = MVQ_STAGES(R)>
static void launch_mvq(const dweight *w, const void *xa, int T, float *out, int64_t ldo, int add) {
    const int64_t N = w->rows, K = w->cols;
    const int8_t *xq = (const int8_t *)xa;
    const float2 *xd = (const float2 *)(xq + (size_t)T * K);
    const int cw = copy_width(w, Stage<TY>::BYTES);
    const int64_t per = SPLIT ? R : (int64_t)R * MV_WARPS;
    cu_launch(k_mvq<TY, NT, R, SPLIT, ST>, dim3((unsigned)((N + per - 1) / per)), dim3(MV_WARPS * 32), 0, (const uint8_t *)w->data, w->row_bytes, N,
              (int)K, xq, xd, T, out, ldo, cw, add);
}

/* Rows below which the warps of a block share its rows (split over K), and from which each warp takes two
 * (four from 4 tokens) rows: enough warps per multiprocessor either way, and rows share activation loads. */
#define MVQ_SPLIT_BELOW 2048
#define MVQ_WIDE_FROM 8192

static bool mvq_deep() {
    static const bool on = cu_env_is("LB_CUDA_MVQ_DEEP", '1');
    return on;
}

/* the pipeline depth of R rows a warp: the deeper one (DEEP) or the default */
#define MVQ_ST(TY, R, DEEP) ((DEEP) ? MVQ_DEEP_STAGES(TY, R) : MVQ_STAGES(R))

template <int TY, int NT, bool DEEP> static void mvq_rows(const dweight *w, const void *xa, int T, float *out, int64_t ldo, int add) {
    constexpr int RW = NT <= 2 ? 2 : 4;
    if (w->rows < MVQ_SPLIT_BELOW) launch_mvq<TY, NT, 1, true, MVQ_ST(TY, 1, DEEP)>(w, xa, T, out, ldo, add);
    else if (w->rows < MVQ_WIDE_FROM) launch_mvq<TY, NT, RW / 2, false, MVQ_ST(TY, RW / 2, DEEP)>(w, xa, T, out, ldo, add);
    else launch_mvq<TY, NT, RW, false, MVQ_ST(TY, RW, DEEP)>(w, xa, T, out, ldo, add);
}

/* one-token products of the 8-bit types through k_mvt (sm_90 and later) where the rows allow bulk copies: by default
 * where the type's Mq::MVT says it is the faster kernel for the product's rows, with LB_CUDA_MVT=1 every such product,
 * with LB_CUDA_MVT=0 none. mvt_mode: 0 none, 1 every one, 2 the types' choice */
static int mvt_mode(void) {
    static cu_dev_cache<int> cache; /* per device: a pipeline may mix compute capabilities */
    return cu_per_device(cache, [](int) {
        return cu_dev_major() < 9 || cu_env_is("LB_CUDA_MVT", '0') ? 0 : cu_env_is("LB_CUDA_MVT", '1') ? 1 : 2;
    });
}

template <int TY> static bool mvt_wanted(int64_t rows) {
    const int mode = mvt_mode();
    if (mode != 2) return mode == 1;
    constexpr int M = Mq<TY>::MVT;
    if (rows < MVQ_SPLIT_BELOW || M == MVT_NONE) return false;
    return M == MVT_ALL || rows < MVQ_WIDE_FROM;
}

/* LB_CUDA_MVT_ST=3 or 4: k_mvt with that many stages instead of MVT_ST's two (read once). Run 37's ncu had k_mvt at four
 * stages with four to six blocks a multiprocessor by its shared memory (23-24 % occupancy) and the warps waiting on
 * loads; at two (run 39, H100) q6_K 14336 x 4096 went from 65.7 to 73.9 % of the HBM read, q4_0 from 65.0 to 77.2 %,
 * q4_K 69.5 -> 70.2 %, tg128 Q4_0 +6.9 %, Q4_K_M +0.9 % (the 4096 x 4096 products a little slower: 50-53 % -> 46-51 %) */
static int mvt_stages(void) {
    static const int n = [] {
        const long long k = cu_env_int("LB_CUDA_MVT_ST", MVT_ST);
        return k == 3 || k == 4 ? (int)k : MVT_ST;
    }();
    return n;
}

/* the blocks of k_mvt<TY, ST, RPW> the current device holds at once (its shared memory limit raised first; asked once a device):
 * launch_mvt_st's grid at most (run 17: three a multiprocessor left 11 warps resident and q4_K latency-bound at 54 % of
 * the read; q8_0 reached 90 %) */
template <int TY, int ST, int RPW> static int mvt_capacity() {
    static cu_dev_cache<int> cache;
    return cu_per_device(cache, [](int) {
        constexpr size_t smem = (size_t)ST * MvtShape<TY, RPW>::STAGE;
        cudaFuncSetAttribute(k_mvt<TY, ST, RPW>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        int per = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, k_mvt<TY, ST, RPW>, MV_WARPS * 32, smem) != cudaSuccess || per < 1) per = 1;
        return per * cu_dev_sms();
    });
}

template <int TY, int ST, int RPW = 2> static void launch_mvt_st(const dweight *w, const void *xa, float *out, int add) {
    using S = MvtShape<TY, RPW>;
    const int blocks = mvt_capacity<TY, ST, RPW>();
    const int64_t N = w->rows, K = w->cols, tiles = (N + S::RT - 1) / S::RT;
    const int8_t *xq = (const int8_t *)xa;
    cu_launch(k_mvt<TY, ST, RPW>, dim3((unsigned)(tiles < blocks ? tiles : blocks)), dim3(MV_WARPS * 32), (size_t)ST * S::STAGE,
              (const uint8_t *)w->data, w->row_bytes, N, (int)K, xq, (const float2 *)(xq + K), out, add);
}

/* k_mvt with one row a warp (tiles of MV_WARPS rows, twice the blocks) where the 8-row tiles are fewer than the blocks the
 * device holds (the 4096-row products of the 8B shape: 512 tiles, about four blocks of four warps a multiprocessor).
 * Each row's sum is taken in the same order (the lane's chunks by segment, then the warp's butterfly): the same bits.
 * By default for q4_K and q6_K (run 45, H200: tg128 Q4_K_M 369.2 / 370.0 t/s against 360.0 / 360.1, those types'
 * products; Q4_0 with it on q4_0 402.4 / 402.0 against 407.5 / 406.8, so not q4_0; measured in the decode graph only:
 * the batch-1 table alone had the 4096-row products slower, 4096 x 14336 q4_K 15.2 -> 20.0 us); LB_CUDA_MVT_R1=1 every
 * type, =0 none. Read once. */
template <int TY> static bool mvt_r1() {
    static const int mode = cu_env_is("LB_CUDA_MVT_R1", '0') ? 0 : cu_env_is("LB_CUDA_MVT_R1", '1') ? 1 : 2;
    return mode == 1 || (mode == 2 && (TY == LB_TYPE_Q4_K || TY == LB_TYPE_Q6_K));
}

template <int TY> static bool launch_mvt(const dweight *w, const void *xa, float *out, int add) {
    if constexpr (!MvtShape<TY>::OK) {
        return false;
    } else {
        if (!mvt_wanted<TY>(w->rows) || (((uintptr_t)w->data | w->row_bytes) & 15)) return false;
        const int st = mvt_stages();
        if (st == MVT_ST && mvt_r1<TY>() && (w->rows + MVT_RT - 1) / MVT_RT < mvt_capacity<TY, MVT_ST, 2>())
            launch_mvt_st<TY, MVT_ST, 1>(w, xa, out, add); /* tiles of 4 rows where those of 8 leave the grid short */
        else if (st == 4) launch_mvt_st<TY, 4>(w, xa, out, add);
        else if (st == 3) launch_mvt_st<TY, 3>(w, xa, out, add);
        else launch_mvt_st<TY, MVT_ST>(w, xa, out, add);
        return true;
    }
}

template <int TY, int NT> static void mvq_nt(const dweight *w, const void *xa, int T, float *out, int64_t ldo, int add) {
    if constexpr (NT == 1) {
        if (launch_mvt<TY>(w, xa, out, add)) return;
        if (mvq_deep()) {
            mvq_rows<TY, NT, true>(w, xa, T, out, ldo, add);
            return;
        }
    }
    mvq_rows<TY, NT, false>(w, xa, T, out, ldo, add);
}

/* the block's stages; the warps' sums reuse them at the end */
template <int TY, int NT, int ST, bool XS, int MT, int P = 1> static constexpr size_t mvm_smem() {
    constexpr size_t st = MvmShape<TY, NT, ST, XS, MT, P>::STAGE;
    static_assert(st >= MVM_WARPS * 32 * MT * (NT / 8) * 4 * sizeof(float), "the sums fit the stages");
    return st;
}

/* the blocks of k_mvm<TY, NT, ST, XS, MT, P> one multiprocessor holds (its shared memory limit raised first; 0 if the
 * query fails) */
template <int TY, int NT, int ST, bool XS, int MT = 1, int P = 1> static int mvm_occupancy() {
    constexpr size_t smem = mvm_smem<TY, NT, ST, XS, MT, P>();
    int per = 0;
    /* a variant larger than the multiprocessor's shared memory is not asked about: the refused attribute would be the
     * error the next launch's check finds (run 39: q4_0's 32-row blocks at 16 tokens and three stages, 233 KB) */
    if (smem > (size_t)cu_dev_smem_optin()) return 0;
    if (cudaFuncSetAttribute(k_mvm<TY, NT, ST, XS, MT, P>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, k_mvm<TY, NT, ST, XS, MT, P>, MVM_WARPS * 32, smem) != cudaSuccess) {
        (void)cudaGetLastError();
        per = 0;
    }
    return per;
}

/* LB_CUDA_MVM_RMAJ=1 (an experiment until timed on a GPU): k_mvm's full steps copied row-major over the lanes for
 * every type (stage_rows16), as before 641c328, instead of whole rows a copy */
static bool mvm_rmaj() {
    static const bool on = cu_env_is("LB_CUDA_MVM_RMAJ", '1');
    return on;
}

/* k_mvm<TY, NT, ST, XS, MT, P> over w's rows, each block's steps split over `parts` blocks of a cluster (P > 1) */
template <int TY, int NT, int ST, bool XS, int MT = 1, int P = 1>
static void launch_mvm_w(const dweight *w, const void *xa, int T, float *out, int64_t ldo, int cw, int add, int parts = 1) {
    const int64_t N = w->rows, K = w->cols, rows = MVM_ROWS * MT * P;
    const int8_t *xq = (const int8_t *)xa;
    cu_launch_cluster(k_mvm<TY, NT, ST, XS, MT, P>, dim3((unsigned)((N + rows - 1) / rows), (unsigned)parts), dim3(MVM_WARPS * 32),
                      (unsigned)parts, mvm_smem<TY, NT, ST, XS, MT, P>(), (const uint8_t *)w->data, w->row_bytes, N, (int)K, xq,
                      (const float2 *)(xq + (size_t)T * K), T, out, ldo, cw, add, (int)mvm_rmaj());
}

/*
 * k_mvm in step groups of P warps (two stages, the activations staged once a group, two m-tiles a warp: 32 P rows a
 * block): where the row blocks are fewer than the blocks the device holds at once, each one's steps split over
 * `parts` blocks of a cluster (sm_90; at most 8, as many as keep the grid in one wave, each part at least one step a
 * group) that add their sums in part order through distributed shared memory. The parts, and so the order of
 * additions, depend on the rows, the row length and the device's multiprocessors. False where no block of the variant
 * fits a multiprocessor.
 * The default for products of at least MVM_P_FROM rows: groups of 8 warps. Run 58 (H100, against cuBLAS BF16):
 * 14336 x 4096 q4_K at 16 tokens 35.5 -> 23.5 us (1.25 -> 1.87x), at 8 22.0 -> 19.4 us; the 128256-row head 240 ->
 * 151 us (1.59 -> 2.51x); the 4096-row products slower (4096 x 14336 at 16: 30.4 -> 34.6 us, 4096 x 4096 10.8 -> 13.0:
 * 16 row blocks split 8 ways fill half the device; run 60, H200: split 16 ways, 27.3 -> 29.8 and 10.1 -> 13.9 us), so
 * they keep the kernel without groups. Run 60 (H200): also where one block fits a multiprocessor (q5_K at 16 tokens,
 * q6_K, q8_0): 14336 x 4096 at 16 tokens q5_K 37.6 -> 26.7 us, q6_K 51.9 -> 42.5, q8_0 40.4 -> 30.7, the head
 * 253 -> 180, 364 -> 314, 273 -> 213 (at 8 tokens level to 12 % faster).
 * LB_CUDA_MVM_P=0: never; =4 or =8: groups of that many for every product (LB_CUDA_MVM_SPLIT=0: no split).
 */
#define MVM_P_FROM 8192
static int mvm_p(void) {
    static const int p = (int)cu_env_int("LB_CUDA_MVM_P", -1);
    return p;
}
template <int TY, int NT, int P>
static bool launch_mvm_p(const dweight *w, const void *xa, int T, float *out, int64_t ldo, int cw, int add) {
    static cu_dev_cache<int> cache; /* the blocks a multiprocessor holds */
    const int occ = cu_per_device(cache, [](int) { return mvm_occupancy<TY, NT, 2, true, 2, P>(); });
    if (occ < 1) return false;
    static const bool split = !cu_env_is("LB_CUDA_MVM_SPLIT", '0');
    const int64_t blocks = (w->rows + MVM_ROWS * 2 * P - 1) / (MVM_ROWS * 2 * P), slots = (int64_t)cu_dev_sms() * occ;
    const int64_t steps = (w->cols / 32 + MVM_CH - 1) / MVM_CH, most = steps / (MVM_WARPS / P);
    int parts = 1;
    if (split && cu_dev_major() >= 9)
        while (parts < 8 && parts < most && blocks * (parts + 1) <= slots) parts++;
    launch_mvm_w<TY, NT, 2, true, 2, P>(w, xa, T, out, ldo, cw, add, parts);
    return true;
}

/* whether k_mvm stages its activations with the weights by cp.async (MvmShape's XS): yes by default (run 28, Q4_K_M's
 * 16-token prompt 2,334 / 2,352 t/s against 2,157 never staging, same call; 2,243 / 2,262 staging only where that kept
 * the grid in as few waves, run 27); LB_CUDA_MVM_XS=0 never (each lane loads them from global memory, as before run 24) */
static bool mvm_xs_on() {
    static const bool on = !cu_env_is("LB_CUDA_MVM_XS", '0');
    return on;
}

/* k_mvm's blocks of 32 rows (two m-tiles a warp, each staged activation fragment used for both: half the activation
 * loads and scale work a weight byte, which run 28 found doubling from batch 8 to 16), staged or not (LB_CUDA_MVM_XS=0);
 * LB_CUDA_MVM_MT=1: blocks of 16. Run 41 (H100, against cuBLAS BF16): 14336 x 4096 q4_K at batch 8 1.64 -> 2.01x, at
 * 16 1.03 -> 1.24x; 4096 x 14336 1.71 -> 2.32x and 0.99 -> 1.52x; the 128256-row head 1.81 -> 2.52x and 1.17 ->
 * 1.61x; q4_0 and q8_0 alike; q6_K on 14336 x 4096 at batch 8 even (1.34 / 1.32x), gaining elsewhere */
static int mvm_mt() {
    static const int mt = cu_env_is("LB_CUDA_MVM_MT", '1') ? 1 : 2;
    return mt;
}

/*
 * k_mvm for N rows: three copy stages or two, the activations staged (XS, mvm_xs_on) or not; 32-row blocks (mvm_mt)
 * where one of their stage counts fits (unstaged too: half the shared memory, more blocks a multiprocessor). A grid of ceil(N / (16 MT)) blocks puts L = ceil(blocks / SMs) on the busiest multiprocessor, which holds `occ` at once (registers and shared
 * memory): ceil(L / occ) waves, the last one partly idle (run 21: 896 blocks of 14336 rows in 1.13 waves of six).
 * Staging the activations takes fewer instructions (run 24: 15.2 -> 9.9 million on 14336 x 4096 at batch 8) but more
 * shared memory (two blocks a multiprocessor). The launch takes the fewer waves of the two stage counts; where they
 * tie, three stages when staging, else two: without XS the lanes' activation loads hit L1, which the stages' shared
 * memory shrinks (run 25: 14336 x 4096 q4_K at batch 8 31.3 us with three stages against 27-29 us with two in runs
 * 23-24, the same four blocks a multiprocessor); the 32-row blocks take three stages only where that means fewer waves.
 * Unstaged where no staged variant fits the multiprocessor. A function of N, the device and the switches only: none
 * changes the order of additions.
 */
template <int TY, int NT> static void launch_mvm(const dweight *w, const void *xa, int T, float *out, int64_t ldo, int cw, int add) {
    /* occupancies by [MT = 2 ? 4 : 0 + XS * 2 + (ST == 3)], per device (the queries raise the kernels' shared memory limits) */
    struct occs {
        int o[8];
    };
    static cu_dev_cache<occs> cache;
    const occs oc = cu_per_device(cache, [](int) {
        return occs{{mvm_occupancy<TY, NT, 2, false>(), mvm_occupancy<TY, NT, 3, false>(), mvm_occupancy<TY, NT, 2, true>(),
                     mvm_occupancy<TY, NT, 3, true>(), mvm_occupancy<TY, NT, 2, false, 2>(), mvm_occupancy<TY, NT, 3, false, 2>(),
                     mvm_occupancy<TY, NT, 2, true, 2>(), mvm_occupancy<TY, NT, 3, true, 2>()}};
    });
    const int *occ = oc.o;
    const int sms = cu_dev_sms();
    const bool xs = ((uintptr_t)xa & 15) == 0 && mvm_xs_on() && (occ[2] > 0 || occ[3] > 0);
    if (xs) { /* step groups (launch_mvm_p) */
        const int p = mvm_p();
        if (p < 0 ? w->rows >= MVM_P_FROM && launch_mvm_p<TY, NT, 8>(w, xa, T, out, ldo, cw, add)
                  : p == 8   ? launch_mvm_p<TY, NT, 8>(w, xa, T, out, ldo, cw, add)
                  : p == 4 && launch_mvm_p<TY, NT, 4>(w, xa, T, out, ldo, cw, add))
            return;
    }
    const int m2 = xs ? 6 : 4; /* the 32-row variants of this staging */
    const int mt = mvm_mt() == 2 && (occ[m2] > 0 || occ[m2 + 1] > 0) ? 2 : 1;
    const int64_t blocks = (w->rows + MVM_ROWS * mt - 1) / (MVM_ROWS * mt), L = (blocks + sms - 1) / sms;
    auto waves = [&](int c) { return occ[c] > 0 ? (L + occ[c] - 1) / occ[c] : INT64_MAX; };
    if (mt == 2) { /* three stages only where that means fewer waves */
        const bool st3 = waves(m2 + 1) < waves(m2);
        if (xs) st3 ? launch_mvm_w<TY, NT, 3, true, 2>(w, xa, T, out, ldo, cw, add) : launch_mvm_w<TY, NT, 2, true, 2>(w, xa, T, out, ldo, cw, add);
        else st3 ? launch_mvm_w<TY, NT, 3, false, 2>(w, xa, T, out, ldo, cw, add) : launch_mvm_w<TY, NT, 2, false, 2>(w, xa, T, out, ldo, cw, add);
        return;
    }
    const int first = xs ? 3 : 0, second = xs ? 2 : 1; /* where the waves tie */
    switch (waves(second) < waves(first) ? second : first) {
    case 3: launch_mvm_w<TY, NT, 3, true>(w, xa, T, out, ldo, cw, add); break;
    case 2: launch_mvm_w<TY, NT, 2, true>(w, xa, T, out, ldo, cw, add); break;
    case 1: launch_mvm_w<TY, NT, 3, false>(w, xa, T, out, ldo, cw, add); break;
    default: launch_mvm_w<TY, NT, 2, false>(w, xa, T, out, ldo, cw, add); break;
    }
}

/* Batches of 5..16 tokens go to the tensor-core kernel (types with word decoders) when its 16-row steps can
 * be copied by cp.async (q6_K: a 210-byte super-block per step, only 2-byte aligned, which byte copies made 10x slower
 * on the H200, copied as the 16-byte units that cover it where rows are 16-byte aligned; LB_CUDA_MVM_Q6K=0 sends
 * q6_K to dp4a) and LB_CUDA_NO_MMA is not set; else to the dp4a kernels, as every batch of the other types. */
static bool mvm_enabled() {
    static int on = -1;
    if (on < 0) on = getenv("LB_CUDA_NO_MMA") == NULL;
    return on != 0;
}

/* q6_K through the tensor-core kernel (MvmShape::WIN; run 23: 14336 x 4096 at batch 8 47.6 -> 40.4 us, 4096 x 14336
 * 105.9 -> 39.6 us against dp4a) */
static bool mvm_win_on() {
    static const bool on = !cu_env_is("LB_CUDA_MVM_Q6K", '0');
    return on;
}

template <int TY> static void mvq_type(const dweight *w, const void *xa, int T, float *out, int64_t ldo, int add) {
    if constexpr (Mq<TY>::WORD) {
        using S = MvmShape<TY, 8, 3, false>;
        const int cw = S::WIN ? (mvm_win_on() && copy_width(w, 16) == 16 ? 16 : 0) : copy_width(w, S::BYTES);
        if (T > 4 && cw && mvm_enabled()) {
            T <= 8 ? launch_mvm<TY, 8>(w, xa, T, out, ldo, cw, add) : launch_mvm<TY, 16>(w, xa, T, out, ldo, cw, add);
            return;
        }
    }
    if (T == 1) mvq_nt<TY, 1>(w, xa, T, out, ldo, add);
    else if (T == 2) mvq_nt<TY, 2>(w, xa, T, out, ldo, add);
    else if (T <= 4) mvq_nt<TY, 4>(w, xa, T, out, ldo, add);
    else if (T <= 8) mvq_nt<TY, 8>(w, xa, T, out, ldo, add);
    else mvq_nt<TY, 16>(w, xa, T, out, ldo, add);
}

template <int TY> static void matvec_type(const dweight *w, const void *xa, int T, float *out, int64_t ldo, int add) {
    if constexpr (Mq<TY>::OK) mvq_type<TY>(w, xa, T, out, ldo, add);
    else mv_type<TY>(w, (const __half *)xa, T, out, ldo, add);
}


#define CASE_MV(T)                                                                                                  \
    case T: matvec_type<T>(w, x, nt, out, ldo, add ? 1 : 0); break;
void cu_matvec(const dweight *w, const void *x, int nt, float *out, int64_t ldo, bool add) {
    switch (w->type) {
        LB_CUDA_WEIGHT_TYPES(CASE_MV)
    default: break;
    }
}

#define CASE_DQ(T)                                                                                                  \
    case T:                                                                                                         \
        k_dequant<T, OUTT><<<grid_for(R * ((w->cols / 32 + 31) / 32), MV_WARPS), MV_WARPS * 32, 0, lb_cu_stream>>>(        \
            w->data, w->row_bytes, r0, R, (int)w->cols, dst);                                                       \
        break;
#define OUTT __half
void cu_dequant_f16(const dweight *w, int64_t r0, int64_t R, __half *dst) {
    switch (w->type) {
        LB_CUDA_WEIGHT_TYPES(CASE_DQ)
    default: break;
    }
}
#undef OUTT
#define OUTT float
void cu_dequant_f32(const dweight *w, int64_t r0, int64_t R, float *dst) {
    switch (w->type) {
        LB_CUDA_WEIGHT_TYPES(CASE_DQ)
    default: break;
    }
}
#undef OUTT

#define CASE_EMB(T)                                                                                                 \
    case T:                                                                                                         \
        cu_launch(k_embed<T>, dim3(grid_for((int64_t)nt * (w->cols / 32), 128)), dim3(128), 0, (const uint8_t *)w->data, w->row_bytes,    \
                  (int)w->cols, tok, nt, out);                                                                      \
        break;
void cu_embed(const dweight *w, const int32_t *tok, int nt, float *out) {
    switch (w->type) {
        LB_CUDA_WEIGHT_TYPES(CASE_EMB)
    default: break;
    }
}

#define CASE_Q8(T)                                                                                                  \
    case T: return Mq<T>::OK;
bool cu_matvec_q8(lb_type t) {
    switch (t) {
        LB_CUDA_WEIGHT_TYPES(CASE_Q8)
    default: return false;
    }
}

void cu_act_prepare(lb_type wtype, const float *x, int T, int64_t K, void *xa) {
    if (!cu_matvec_q8(wtype)) {
        cu_act_f16(wtype, x, T, K, (__half *)xa);
        return;
    }
    int8_t *q = (int8_t *)xa;
    act_round<true>(lb_type_traits_get(wtype)->block_elems, x, (int64_t)T * K, q, (float2 *)(q + (size_t)T * K), NULL);
}

void cu_act_f16(lb_type wtype, const float *x, int T, int64_t K, __half *y) {
    const lb_type_traits *tt = lb_type_traits_get(wtype);
    if (!tt->is_quant) cu_f32_to_f16(x, (int64_t)T * K, y);
    else act_round<false>(tt->block_elems, x, (int64_t)T * K, NULL, NULL, y);
}

extern "C" bool lb_cuda_mv_q8(lb_type t) { return cu_matvec_q8(t); }

#define CASE_OK(T) case T:
bool cu_type_supported(lb_type t) {
    switch (t) {
        LB_CUDA_WEIGHT_TYPES(CASE_OK) return true;
    default: return false;
    }
}
