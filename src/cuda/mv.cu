/*
 * mv.cu - the weight products' kernels for every weight type: fused dequantize-and-multiply for a few
 * tokens (decode), dequantization to F16/F32 scratch (prompts go on to cuBLAS), and embedding rows.
 *
 * Fused kernel: one warp per weight row. Per step the warp copies the bytes of 32 consecutive chunks (32
 * elements each) of its row into shared memory with 16-byte (or 8-byte) loads, coalesced, then each lane
 * decodes one chunk (quant.cuh) and multiplies it with the activations of every token; a butterfly over
 * the warp sums the lanes. Summation order is fixed by K alone, so results repeat exactly run to run.
 */
#include "kernels.cuh"
#include "quant.cuh"

#define MV_WARPS 4

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
                                                          int64_t ldo) {
    using D = Dq<TY>;
    constexpr int PER = Stage<TY>::PER;
    __shared__ __align__(16) uint8_t stage[MV_WARPS][R][Stage<TY>::BYTES];
    __shared__ float red[MV_WARPS][R][NT];
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
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0) red[warp][r][t] = v;
        }
    __syncthreads();
    if ((int)threadIdx.x < R * NT) {
        const int r = threadIdx.x / NT, t = threadIdx.x % NT;
        float v = red[0][r][t];
#pragma unroll
        for (int w = 1; w < MV_WARPS; w++) v += red[w][r][t];
        if (t < nt && r < nr) out[(size_t)t * ldo + row0 + r] = v;
    }
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

template <int TY, int NT, int R> static void launch_mv(const dweight *w, const __half *x, int T, float *out, int64_t ldo) {
    const unsigned blocks = (unsigned)((w->rows + R - 1) / R);
    k_matvec<TY, NT, R><<<blocks, MV_WARPS * 32, 0, lb_cu_stream>>>(w->data, w->row_bytes, w->rows, (int)w->cols, x, T, out, ldo);
}

/* Rows at which two rows per block (four from twice as many) still leave every multiprocessor of a large GPU
 * several blocks. */
#define MV_TWO_ROWS_MIN 2048

template <int TY> static void mv_type(const dweight *w, const __half *x, int T, float *out, int64_t ldo) {
    const bool two = w->rows >= MV_TWO_ROWS_MIN && Stage<TY>::BYTES <= 2048, four = two && w->rows >= 2 * MV_TWO_ROWS_MIN;
    constexpr int R4 = Stage<TY>::BYTES <= 2048 ? 4 : 1; /* the four-row stage fits static shared memory */
    if (T == 1) four ? launch_mv<TY, 1, R4>(w, x, T, out, ldo) : two ? launch_mv<TY, 1, 2>(w, x, T, out, ldo) : launch_mv<TY, 1, 1>(w, x, T, out, ldo);
    else if (T == 2) two ? launch_mv<TY, 2, 2>(w, x, T, out, ldo) : launch_mv<TY, 2, 1>(w, x, T, out, ldo);
    else if (T <= 4) two ? launch_mv<TY, 4, 2>(w, x, T, out, ldo) : launch_mv<TY, 4, 1>(w, x, T, out, ldo);
    else if (T <= 8) two ? launch_mv<TY, 8, 2>(w, x, T, out, ldo) : launch_mv<TY, 8, 1>(w, x, T, out, ldo);
    else two ? launch_mv<TY, 16, 2>(w, x, T, out, ldo) : launch_mv<TY, 16, 1>(w, x, T, out, ldo);
}

static unsigned grid_for(int64_t n, int bs) { return (unsigned)((n + bs - 1) / bs); }

#define CASE_MV(T)                                                                                                  \
    case T: mv_type<T>(w, x, nt, out, ldo); break;
void cu_matvec(const dweight *w, const __half *x, int nt, float *out, int64_t ldo) {
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
    case T: k_embed<T><<<grid_for((int64_t)nt * (w->cols / 32), 128), 128, 0, lb_cu_stream>>>(w->data, w->row_bytes, (int)w->cols, tok, nt, out); break;
void cu_embed(const dweight *w, const int32_t *tok, int nt, float *out) {
    switch (w->type) {
        LB_CUDA_WEIGHT_TYPES(CASE_EMB)
    default: break;
    }
}

#define CASE_OK(T) case T:
bool cu_type_supported(lb_type t) {
    switch (t) {
        LB_CUDA_WEIGHT_TYPES(CASE_OK) return true;
    default: return false;
    }
}
