/*
 * quant.cuh - device decoders of every weight type: 32 consecutive elements of a row at a time.
 *
 * A "chunk" is elements [32c, 32c + 32) of a row. Every type's block holds a whole number of chunks
 * (32-element blocks: one; 256-element super-blocks: eight), so chunk c is sub-chunk c % per-block of
 * block c / per-block. Dq<T>::chunk(block, s, y) writes the 32 floats of sub-chunk s of the block at
 * `block`. The arithmetic repeats the reference kernels' (src/quant/ref) operation for operation, with
 * explicitly rounded multiplies and adds so the compiler cannot fuse them: dequantized values are
 * bit-identical to the CPU's (tests/cuda checks this exactly). Layouts: src/quant/blocks.h, ggml.
 */
#ifndef LB_CUDA_QUANT_CUH
#define LB_CUDA_QUANT_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "lowbit.h"

__device__ __forceinline__ uint32_t ld16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
__device__ __forceinline__ float ldh(const uint8_t *p) { return __half2float(__ushort_as_half((unsigned short)ld16(p))); }
__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
/* 4 (2) bytes at p, which must be 4- (2-) byte aligned: the block layouts guarantee it where these are used */
__device__ __forceinline__ uint32_t ld32a(const uint8_t *p) { return *(const uint32_t *)p; }
__device__ __forceinline__ uint32_t ld16a(const uint8_t *p) { return *(const uint16_t *)p; }
__device__ __forceinline__ int byte_of(uint32_t v, int j) { return (int)((v >> (8 * j)) & 0xFF); }

/* the IQ4_NL codebook value of code c (0..15), from registers: the 16 int8 values are 4 little-endian words
 * {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113} picked with byte permutes */
__device__ __forceinline__ float kiq(int c) {
    const uint32_t t0 = 0xBFAD9881u, t1 = 0xF6EADDCFu, t2 = 0x26190D01u, t3 = 0x71594535u;
    const uint32_t b = c < 8 ? __byte_perm(t0, t1, (unsigned)c) : __byte_perm(t2, t3, (unsigned)(c - 8));
    return (float)(int8_t)(b & 0xFF);
}

template <int T> struct Dq;

template <> struct Dq<LB_TYPE_F32> {
    static constexpr int BE = 32, BB = 128;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, float *y) {
#pragma unroll
        for (int j = 0; j < 32; j++) y[j] = __uint_as_float(ld32a(b + 4 * j));
    }
};
template <> struct Dq<LB_TYPE_F16> {
    static constexpr int BE = 32, BB = 64;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, float *y) {
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const uint32_t v = ld32a(b + 4 * j);
            y[2 * j] = __half2float(__ushort_as_half((unsigned short)(v & 0xFFFF)));
            y[2 * j + 1] = __half2float(__ushort_as_half((unsigned short)(v >> 16)));
        }
    }
};
template <> struct Dq<LB_TYPE_BF16> {
    static constexpr int BE = 32, BB = 64;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, float *y) {
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const uint32_t v = ld32a(b + 4 * j);
            y[2 * j] = __uint_as_float(v << 16);
            y[2 * j + 1] = __uint_as_float(v & 0xFFFF0000u);
        }
    }
};
template <> struct Dq<LB_TYPE_Q4_0> {
    static constexpr int BE = 32, BB = 18;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, float *y) {
        const float d = __half2float(__ushort_as_half((unsigned short)ld16a(b)));
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const uint32_t v = ld16a(b + 2 + 2 * i);
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int q = byte_of(v, h);
                y[2 * i + h] = mul((float)((q & 0xF) - 8), d);
                y[2 * i + h + 16] = mul((float)((q >> 4) - 8), d);
            }
        }
    }
};
template <> struct Dq<LB_TYPE_Q4_1> {
    static constexpr int BE = 32, BB = 20;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, float *y) {
        const float d = ldh(b), m = ldh(b + 2);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t v = ld32a(b + 4 + 4 * i);
#pragma unroll
            for (int h = 0; h < 4; h++) {
                const int q = byte_of(v, h);
                y[4 * i + h] = __fadd_rn(mul((float)(q & 0xF), d), m);
                y[4 * i + h + 16] = __fadd_rn(mul((float)(q >> 4), d), m);
            }
        }
    }
};
template <> struct Dq<LB_TYPE_Q5_0> {
    static constexpr int BE = 32, BB = 22;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, float *y) {
        const float d = ldh(b);
        const uint32_t h = ld16(b + 2) | (ld16(b + 4) << 16);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int q0 = (b[6 + j] & 0xF) | (int)((h >> j) & 1) << 4, q1 = (b[6 + j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
            y[j] = mul((float)(q0 - 16), d);
            y[j + 16] = mul((float)(q1 - 16), d);
        }
    }
};
template <> struct Dq<LB_TYPE_Q5_1> {
    static constexpr int BE = 32, BB = 24;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, float *y) {
        const float d = ldh(b), m = ldh(b + 2);
        const uint32_t h = ld16(b + 4) | (ld16(b + 6) << 16);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int q0 = (b[8 + j] & 0xF) | (int)((h >> j) & 1) << 4, q1 = (b[8 + j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
            y[j] = __fadd_rn(mul((float)q0, d), m);
            y[j + 16] = __fadd_rn(mul((float)q1, d), m);
        }
    }
};
template <> struct Dq<LB_TYPE_Q8_0> {
    static constexpr int BE = 32, BB = 34;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, float *y) {
        const float d = __half2float(__ushort_as_half((unsigned short)ld16a(b)));
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const uint32_t v = ld16a(b + 2 + 2 * i);
            y[2 * i] = mul((float)(int8_t)(v & 0xFF), d);
            y[2 * i + 1] = mul((float)(int8_t)(v >> 8), d);
        }
    }
};
template <> struct Dq<LB_TYPE_IQ4_NL> {
    static constexpr int BE = 32, BB = 18;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, float *y) {
        const float d = ldh(b);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            y[j] = mul(d, kiq(b[2 + j] & 0xF));
            y[j + 16] = mul(d, kiq(b[2 + j] >> 4));
        }
    }
};
/* q2_K: scales[16] @0, qs[64] @16, d @80, dmin @82 */
template <> struct Dq<LB_TYPE_Q2_K> {
    static constexpr int BE = 256, BB = 84;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, float *y) {
        const float d = ldh(b + 80), mn = ldh(b + 82);
        const uint8_t *q = b + 16 + 32 * (s / 4);
        const int shift = 2 * (s % 4);
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const uint8_t sc = b[2 * s + half];
            const float dl = mul(d, (float)(sc & 0xF)), ml = mul(mn, (float)(sc >> 4));
#pragma unroll
            for (int l = 0; l < 16; l++) y[16 * half + l] = __fsub_rn(mul(dl, (float)((q[16 * half + l] >> shift) & 3)), ml);
        }
    }
};
/* q3_K: hmask[32] @0, qs[64] @32, scales[12] @96, d @108 */
template <> struct Dq<LB_TYPE_Q3_K> {
    static constexpr int BE = 256, BB = 110;
    static __device__ __forceinline__ int scale(const uint8_t *sc, int j) {
        int lo = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
        return (lo | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
    }
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, float *y) {
        const float d = ldh(b + 108);
        const uint8_t *q = b + 32 + 32 * (s / 4);
        const int shift = 2 * (s % 4);
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const float dl = mul(d, (float)scale(b + 96, 2 * s + half));
#pragma unroll
            for (int l = 0; l < 16; l++) {
                const int e = 16 * half + l;
                const int code = ((q[e] >> shift) & 3) - (((b[e] >> s) & 1) ? 0 : 4);
                y[e] = mul(dl, (float)code);
            }
        }
    }
};
/* q4_K / q5_K: d @0, dmin @2, scales[12] @4, (q5: qh[32] @16), qs[128] */
__device__ __forceinline__ void k4_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
template <> struct Dq<LB_TYPE_Q4_K> {
    static constexpr int BE = 256, BB = 144;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, float *y) {
        int sc, m;
        k4_scale_min(s, b + 4, &sc, &m);
        const float d1 = mul(ldh(b), (float)sc), m1 = mul(ldh(b + 2), (float)m);
        const uint8_t *q = b + 16 + 32 * (s / 2);
        const int shift = 4 * (s & 1);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const uint32_t v = ld32a(q + 4 * i) >> shift;
#pragma unroll
            for (int h = 0; h < 4; h++) y[4 * i + h] = __fsub_rn(mul(d1, (float)((v >> (8 * h)) & 0xF)), m1);
        }
    }
};
template <> struct Dq<LB_TYPE_Q5_K> {
    static constexpr int BE = 256, BB = 176;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, float *y) {
        int sc, m;
        k4_scale_min(s, b + 4, &sc, &m);
        const float d1 = mul(ldh(b), (float)sc), m1 = mul(ldh(b + 2), (float)m);
        const uint8_t *q = b + 48 + 32 * (s / 2), *qh = b + 16;
        const int shift = 4 * (s & 1);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const uint32_t v = ld32a(q + 4 * i) >> shift, hv = ld32a(qh + 4 * i) >> s;
#pragma unroll
            for (int h = 0; h < 4; h++) {
                const int code = (int)((v >> (8 * h)) & 0xF) + (((hv >> (8 * h)) & 1) ? 16 : 0);
                y[4 * i + h] = __fsub_rn(mul(d1, (float)code), m1);
            }
        }
    }
};
/* q6_K: ql[128] @0, qh[64] @128, scales[16] (int8) @192, d @208 */
template <> struct Dq<LB_TYPE_Q6_K> {
    static constexpr int BE = 256, BB = 210;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, float *y) {
        const float d = ldh(b + 208);
        const int h = s / 4, k = s % 4;
        const uint8_t *ql = b + 64 * h + (k & 1) * 32, *qh = b + 128 + 32 * h;
        const int lshift = k < 2 ? 0 : 4;
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const float ds = mul(d, (float)(int8_t)b[192 + 8 * h + 2 * k + half]);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const int e = 16 * half + 2 * i;
                const uint32_t lv = ld16a(ql + e) >> lshift, hv = ld16a(qh + e) >> (2 * k);
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int code = (int)(((lv >> (8 * h)) & 0xF) | (((hv >> (8 * h)) & 3) << 4)) - 32;
                    y[e + h] = mul(ds, (float)code);
                }
            }
        }
    }
};
/* iq4_xs: d @0, scales_h @2, scales_l[4] @4, qs[128] @8 */
template <> struct Dq<LB_TYPE_IQ4_XS> {
    static constexpr int BE = 256, BB = 136;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, float *y) {
        const int ls = ((b[4 + s / 2] >> (4 * (s % 2))) & 0xF) | (((int)(ld16(b + 2) >> (2 * s)) & 3) << 4);
        const float dl = mul(ldh(b), (float)(ls - 32));
        const uint8_t *q = b + 8 + 16 * s;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t v = ld32a(q + 4 * i);
#pragma unroll
            for (int h = 0; h < 4; h++) {
                const int c = byte_of(v, h);
                y[4 * i + h] = mul(dl, kiq(c & 0xF));
                y[4 * i + h + 16] = mul(dl, kiq(c >> 4));
            }
        }
    }
};

/* Calls F::template run<T>() for the weight type t; false for a type with no decoder. */
#define LB_CUDA_WEIGHT_TYPES(X)                                                                                     \
    X(LB_TYPE_F32) X(LB_TYPE_F16) X(LB_TYPE_BF16) X(LB_TYPE_Q4_0) X(LB_TYPE_Q4_1) X(LB_TYPE_Q5_0) X(LB_TYPE_Q5_1) \
    X(LB_TYPE_Q8_0) X(LB_TYPE_Q2_K) X(LB_TYPE_Q3_K) X(LB_TYPE_Q4_K) X(LB_TYPE_Q5_K) X(LB_TYPE_Q6_K)               \
    X(LB_TYPE_IQ4_NL) X(LB_TYPE_IQ4_XS)

#endif
