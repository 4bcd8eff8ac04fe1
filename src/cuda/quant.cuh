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
/* a k-quant super-block's twelve bytes of 6-bit scales and mins (q4_K / q5_K, at b + 4, 4-byte aligned) as four words
 * of bytes: sc[0] the scales of chunks 0-3, sc[1] of 4-7, mn[0] / mn[1] the mins (all eight at once) */
__device__ __forceinline__ void k4_scales_packed(const uint8_t *q, uint32_t *sc, uint32_t *mn) {
    const uint32_t w0 = *(const uint32_t *)q, w1 = *(const uint32_t *)(q + 4), w2 = *(const uint32_t *)(q + 8);
    sc[0] = w0 & 0x3F3F3F3Fu;
    mn[0] = w1 & 0x3F3F3F3Fu;
    sc[1] = (w2 & 0x0F0F0F0Fu) | ((w0 >> 2) & 0x30303030u);
    mn[1] = ((w2 >> 4) & 0x0F0F0F0Fu) | ((w1 >> 2) & 0x30303030u);
}

/* chunk j's 6-bit scale and min, from the packed words: three word loads and no branch on j (a lane-dependent j
 * took both halves of a byte-wise branch in every warp) */
__device__ __forceinline__ void k4_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    uint32_t s[2], n[2];
    k4_scales_packed(q, s, n);
    const uint32_t sel = 0x4440u | (uint32_t)(j & 3);
    *sc = (int)__byte_perm(j < 4 ? s[0] : s[1], 0, sel);
    *m = (int)__byte_perm(j < 4 ? n[0] : n[1], 0, sel);
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

/*
 * Integer decoders for the fused kernels with 8-bit activations (mv.cu). Mq<T>::chunk(block, s, w, d0, d1,
 * m) gives sub-chunk s of the block as eight words of four signed int8 codes (byte i of word j is element
 * 4j + i of the chunk) with the float factors that make the chunk's dot product with an activation chunk
 * (int8 codes a, scale da, da * sum(a) = sa):
 *     da * (d0 * sum_{e<16} w_e a_e + d1 * sum_{e>=16} w_e a_e) + m * sa
 * d0 and d1 are the scales of the two 16-element halves (equal for types with one scale per 32), m the min
 * term (0 for types without one). Each element's value d * code (+ m) is the reference's dequantized value
 * up to the rounding of its one final add. Types without an Mq use the float decoders above.
 */
/*
 * Where the one-token bulk-copy kernel k_mvt (mv.cu) streams a type's weights faster than k_mvq, from 2048 rows (below,
 * k_mvq's warps share each row): MVT_ALL, MVT_BELOW_WIDE (below the rows from which k_mvq gives each warp four rows,
 * MVQ_WIDE_FROM, whose shared activation loads keep the cheapest decoders ahead), MVT_NONE. Measured on an H100: the
 * kernels alone (run 18, cuda_kernels --quick --batches 1: 14336 x 4096, 4096 x 14336, 4096 x 4096), and where the
 * decode graph disagreed with them, its tg128 (run 19, the 8B shape: q4_0 296.2 tokens/s with k_mvt everywhere against
 * 292.2 below the wide rows; q8_0 231.1 with k_mvq everywhere against 227.7 with k_mvt on the wide rows, where the
 * kernel alone had been faster). q5_1, in neither, takes q4_1's and q5_0's.
 */
enum { MVT_NONE, MVT_BELOW_WIDE, MVT_ALL };
template <int T> struct Mq {
    static constexpr int MVT = MVT_NONE;
    static constexpr bool OK = false, WORD = false, M16 = false, WU = false;
};
/*
 * Types whose min term differs between the two 16-element halves (q2_K) set M16: their chunk(block, s, w, d0, d1, m,
 * m1) gives m for the first half and m1 for the second, and the kernel multiplies each by da times its half's code
 * sum (sa covers the whole chunk). Every other Mq sets M16 = false and has the six-argument chunk.
 */
/*
 * Types whose Mq also has word(b, s, j) (word j of sub-chunk s, as chunk's w[j]) and scales(b, s, d0, d1, m)
 * (chunk's factors) set WORD: the tensor-core kernel (mv.cu) decodes only the words of its fragments. chunk's words
 * may hold the codes times a power of two with d0 and d1 divided by it (q4_0, q4_K, q6_K: the same products bit for bit);
 * word and scales hold the codes and factors themselves. WU: chunk's words are unsigned bytes (the dot products take
 * them as u8, the activations as s8).
 */
/* 4 bytes at a 2-byte aligned p */
__device__ __forceinline__ uint32_t ld32h(const uint8_t *p) { return ld16a(p) | (ld16a(p + 2) << 16); }
/* n words of 4 bytes from a 2-byte aligned p in shared memory, each shifted right by e more bits (e < 16; the top e
 * bits of each then come from the word after it, for callers that mask them off): n + 1 aligned loads and one funnel
 * shift a word for both shifts (the word after the last may be read: the kernels' stages are padded) */
template <int N> __device__ __forceinline__ void ldw_shr(const uint8_t *p, int e, uint32_t *w) {
    /* the aligned word below p by pointer arithmetic, not an integer cast: the compiler keeps p's address space
     * (shared-memory loads where p is in a stage; through a cast it emitted generic loads) */
    const uint32_t *a = (const uint32_t *)(p - ((uintptr_t)p & 3));
    const int sh = (int)((uintptr_t)p & 2) * 8 + e;
    uint32_t lo = a[0];
#pragma unroll
    for (int i = 0; i < N; i++) {
        const uint32_t hi = a[i + 1];
        w[i] = __funnelshift_r(lo, hi, sh);
        lo = hi;
    }
}
/* n words of 4 bytes from a 2-byte aligned p in shared memory */
template <int N> __device__ __forceinline__ void ldw(const uint8_t *p, uint32_t *w) { ldw_shr<N>(p, 0, w); }

/* (a & b) ^ c as one LOP3 (written as two operations on constants b and c, the compiler emitted two) */
__device__ __forceinline__ uint32_t and_xor(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0x6A;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

template <> struct Mq<LB_TYPE_Q4_0> {
    static constexpr int MVT = MVT_ALL;
    static constexpr bool OK = true, WORD = true, M16 = false, WU = false;
    static __device__ __forceinline__ uint32_t word(const uint8_t *b, int, int j) {
        const uint32_t v = ld32h(b + 2 + 4 * (j & 3));
        return __vsub4((j < 4 ? v : v >> 4) & 0x0F0F0F0Fu, 0x08080808u);
    }
    static __device__ __forceinline__ void scales(const uint8_t *b, int, float &d0, float &d1, float &m) {
        d0 = d1 = ldh(b);
        m = 0.0f;
    }
    /* the codes times 16: a nibble n in the high half of its byte with the top bit flipped is the int8 16 (n - 8), one
     * LOP3 a word (the high nibbles in place, the low ones shifted up first) where n - 8 took an AND and a byte-wise
     * subtraction (three more); the scale divided by 16 (exact) gives the same products bit for bit */
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, int *w, float &d0, float &d1, float &m) {
        uint32_t v[4];
        ldw<4>(b + 2, v);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[i] = (int)and_xor(v[i] << 4, 0xF0F0F0F0u, 0x80808080u);
            w[i + 4] = (int)and_xor(v[i], 0xF0F0F0F0u, 0x80808080u);
        }
        scales(b, 0, d0, d1, m);
        d0 = d1 = mul(d0, 0.0625f);
    }
};
template <> struct Mq<LB_TYPE_Q4_1> {
    static constexpr int MVT = MVT_ALL;
    static constexpr bool OK = true, WORD = false, M16 = false, WU = false;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, int *w, float &d0, float &d1, float &m) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t v = ld32a(b + 4 + 4 * i);
            w[i] = (int)(v & 0x0F0F0F0Fu);
            w[i + 4] = (int)((v >> 4) & 0x0F0F0F0Fu);
        }
        d0 = d1 = ldh(b);
        m = ldh(b + 2);
    }
};
/* the fifth bits of four elements, bits j..j+3 of h, moved to bit 4 of each byte */
__device__ __forceinline__ uint32_t hi4(uint32_t h, int j) {
    const uint32_t n = (h >> j) & 0xF;
    return ((n & 1) << 4) | ((n & 2) << 11) | ((n & 4) << 18) | ((n & 8) << 25);
}
template <> struct Mq<LB_TYPE_Q5_0> {
    static constexpr int MVT = MVT_ALL;
    static constexpr bool OK = true, WORD = false, M16 = false, WU = false;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, int *w, float &d0, float &d1, float &m) {
        uint32_t v[5];
        ldw<5>(b + 2, v);
        const uint32_t h = v[0];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[i] = (int)__vsub4((v[i + 1] & 0x0F0F0F0Fu) | hi4(h, 4 * i), 0x10101010u);
            w[i + 4] = (int)__vsub4(((v[i + 1] >> 4) & 0x0F0F0F0Fu) | hi4(h, 16 + 4 * i), 0x10101010u);
        }
        d0 = d1 = ldh(b);
        m = 0.0f;
    }
};
template <> struct Mq<LB_TYPE_Q5_1> {
    static constexpr int MVT = MVT_ALL;
    static constexpr bool OK = true, WORD = false, M16 = false, WU = false;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, int *w, float &d0, float &d1, float &m) {
        const uint32_t h = ld32a(b + 4);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t v = ld32a(b + 8 + 4 * i);
            w[i] = (int)((v & 0x0F0F0F0Fu) | hi4(h, 4 * i));
            w[i + 4] = (int)(((v >> 4) & 0x0F0F0F0Fu) | hi4(h, 16 + 4 * i));
        }
        d0 = d1 = ldh(b);
        m = ldh(b + 2);
    }
};
template <> struct Mq<LB_TYPE_Q8_0> {
    static constexpr int MVT = MVT_NONE;
    static constexpr bool OK = true, WORD = true, M16 = false, WU = false;
    static __device__ __forceinline__ uint32_t word(const uint8_t *b, int, int j) { return ld32h(b + 2 + 4 * j); }
    static __device__ __forceinline__ void scales(const uint8_t *b, int, float &d0, float &d1, float &m) {
        d0 = d1 = ldh(b);
        m = 0.0f;
    }
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, int *w, float &d0, float &d1, float &m) {
        ldw<8>(b + 2, (uint32_t *)w);
        scales(b, 0, d0, d1, m);
    }
};
/* q4_K / q5_K: the nibbles of chunks 2 i and 2 i + 1 share the words at b + QS + 32 i (low and high halves); q5_K's
 * fifth bits of every chunk are the words at b + QH (bit s of each byte for chunk s). word_of decodes chunk s's word
 * from those loads (k_mvm loads each once a chunk pair, the fifth bits once a super-block). */
template <> struct Mq<LB_TYPE_Q4_K> {
    static constexpr int MVT = MVT_BELOW_WIDE, QS = 16, QH = 0;
    static constexpr bool OK = true, WORD = true, M16 = false, WU = true;
    static __device__ __forceinline__ uint32_t word_of(uint32_t qs, uint32_t, int s) { return (qs >> (4 * (s & 1))) & 0x0F0F0F0Fu; }
    static __device__ __forceinline__ uint32_t word(const uint8_t *b, int s, int j) {
        return word_of(ld32a(b + QS + 32 * (s / 2) + 4 * j), 0, s);
    }
    static __device__ __forceinline__ void scales(const uint8_t *b, int s, float &d0, float &d1, float &m) {
        int sc, mn;
        k4_scale_min(s, b + 4, &sc, &mn);
        d0 = d1 = mul(ldh(b), (float)sc);
        m = -mul(ldh(b + 2), (float)mn);
    }
    /* chunk: unsigned codes (WU), an odd sub-chunk's in place in the high nibbles (16 times the code: one AND a word
     * instead of a shift and an AND), its scale divided by 16 (exact: the same products bit for bit) */
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, int *w, float &d0, float &d1, float &m) {
        scales(b, s, d0, d1, m);
        const uint32_t mask = s & 1 ? 0xF0F0F0F0u : 0x0F0F0F0Fu;
        const uint8_t *q = b + QS + 32 * (s / 2);
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = (int)(ld32a(q + 4 * i) & mask);
        d0 = d1 = mul(d0, s & 1 ? 0.0625f : 1.0f);
    }
};
template <> struct Mq<LB_TYPE_Q5_K> {
    static constexpr int MVT = MVT_BELOW_WIDE, QS = 48, QH = 16;
    static constexpr bool OK = true, WORD = true, M16 = false, WU = false;
    static __device__ __forceinline__ uint32_t word_of(uint32_t qs, uint32_t qh, int s) {
        return ((qs >> (4 * (s & 1))) & 0x0F0F0F0Fu) | (((qh >> s) & 0x01010101u) << 4);
    }
    static __device__ __forceinline__ uint32_t word(const uint8_t *b, int s, int j) {
        return word_of(ld32a(b + QS + 32 * (s / 2) + 4 * j), ld32a(b + QH + 4 * j), s);
    }
    static __device__ __forceinline__ void scales(const uint8_t *b, int s, float &d0, float &d1, float &m) {
        int sc, mn;
        k4_scale_min(s, b + 4, &sc, &mn);
        d0 = d1 = mul(ldh(b), (float)sc);
        m = -mul(ldh(b + 2), (float)mn);
    }
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, int *w, float &d0, float &d1, float &m) {
        scales(b, s, d0, d1, m);
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = (int)word(b, s, i);
    }
};
template <> struct Mq<LB_TYPE_Q6_K> {
    static constexpr int MVT = MVT_ALL;
    static constexpr bool OK = true, WORD = true, M16 = false, WU = false;
    static __device__ __forceinline__ uint32_t word(const uint8_t *b, int s, int j) {
        const int h = s / 4, k = s % 4;
        const uint32_t lo = (ld32h(b + 64 * h + (k & 1) * 32 + 4 * j) >> (k < 2 ? 0 : 4)) & 0x0F0F0F0Fu;
        const uint32_t hi = (ld32h(b + 128 + 32 * h + 4 * j) >> (2 * k)) & 0x03030303u;
        return __vsub4(lo | (hi << 4), 0x20202020u);
    }
    static __device__ __forceinline__ void scales(const uint8_t *b, int s, float &d0, float &d1, float &m) {
        const float d = ldh(b + 208);
        const int h = s / 4, k = s % 4;
        d0 = mul(d, (float)(int8_t)b[192 + 8 * h + 2 * k]);
        d1 = mul(d, (float)(int8_t)b[192 + 8 * h + 2 * k + 1]);
        m = 0.0f;
    }
    /* chunk: the codes times 4, 4 (x - 32) = (4 x) ^ 0x80 for a 6-bit x in each byte (a shift and a LOP3 where the
     * byte-wise subtraction took three), each word's nibble or bit-pair shift folded into its funnel shift (ldw_shr);
     * the scales divided by 4 (exact: the same products bit for bit) */
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, int *w, float &d0, float &d1, float &m) {
        const int h = s / 4, k = s % 4;
        const uint8_t *ql = b + 64 * h + (k & 1) * 32, *qh = b + 128 + 32 * h;
        uint32_t l[8], hh[8];
        ldw_shr<8>(ql, k < 2 ? 0 : 4, l);
        ldw_shr<8>(qh, 2 * k, hh);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const uint32_t x = (l[i] & 0x0F0F0F0Fu) | ((hh[i] & 0x03030303u) << 4);
            w[i] = (int)((x << 2) ^ 0x80808080u);
        }
        scales(b, s, d0, d1, m);
        d0 = mul(d0, 0.25f);
        d1 = mul(d1, 0.25f);
    }
};
template <> struct Mq<LB_TYPE_Q3_K> {
    static constexpr int MVT = MVT_NONE;
    static constexpr bool OK = true, WORD = false, M16 = false, WU = false;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, int *w, float &d0, float &d1, float &m) {
        const float d = ldh(b + 108);
        const uint8_t *q = b + 32 + 32 * (s / 4);
        const int shift = 2 * (s % 4);
        uint32_t l[8], hm[8];
        ldw<8>(q, l);
        ldw<8>(b, hm);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            /* code = low two bits - (hmask bit clear ? 4 : 0) = low + 4 * bit - 4 */
            const uint32_t lo = (l[i] >> shift) & 0x03030303u, hb = (hm[i] >> s) & 0x01010101u;
            w[i] = (int)__vsub4(lo | (hb << 2), 0x04040404u);
        }
        d0 = mul(d, (float)Dq<LB_TYPE_Q3_K>::scale(b + 96, 2 * s));
        d1 = mul(d, (float)Dq<LB_TYPE_Q3_K>::scale(b + 96, 2 * s + 1));
        m = 0.0f;
    }
};
/* q2_K (scales[16] @0: scale low nibble, min high nibble per 16 elements; qs[64] @16; d @80, dmin @82): the 2-bit
 * codes of sub-chunk s are bits 2 (s % 4) of bytes 32 (s / 4) .. + 32 of qs; element value d sc code - dmin mn */
template <> struct Mq<LB_TYPE_Q2_K> {
    static constexpr int MVT = MVT_ALL;
    static constexpr bool OK = true, WORD = false, M16 = true, WU = false;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, int *w, float &d0, float &d1, float &m, float &m1) {
        const float d = ldh(b + 80), mn = ldh(b + 82);
        const uint8_t *q = b + 16 + 32 * (s / 4);
        const int shift = 2 * (s % 4);
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = (int)((ld32a(q + 4 * i) >> shift) & 0x03030303u);
        const int sc0 = b[2 * s], sc1 = b[2 * s + 1];
        d0 = mul(d, (float)(sc0 & 0xF));
        d1 = mul(d, (float)(sc1 & 0xF));
        m = -mul(mn, (float)(sc0 >> 4));
        m1 = -mul(mn, (float)(sc1 >> 4));
    }
};
/* four codebook values of the IQ4_NL table for the four nibbles in bits 0-3 of each byte of v */
__device__ __forceinline__ uint32_t kiq4(uint32_t v) {
    const uint32_t t0 = 0xBFAD9881u, t1 = 0xF6EADDCFu, t2 = 0x26190D01u, t3 = 0x71594535u;
    const uint32_t sel = (v & 0x7) | ((v >> 4) & 0x70) | ((v >> 8) & 0x700) | ((v >> 12) & 0x7000);
    const uint32_t lo = __byte_perm(t0, t1, sel), hi = __byte_perm(t2, t3, sel);
    const uint32_t big = ((v >> 3) & 0x01010101u) * 0xFFu; /* 0xFF in the bytes whose code is >= 8 */
    return (lo & ~big) | (hi & big);
}
template <> struct Mq<LB_TYPE_IQ4_NL> {
    static constexpr int MVT = MVT_ALL;
    static constexpr bool OK = true, WORD = false, M16 = false, WU = false;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int, int *w, float &d0, float &d1, float &m) {
        uint32_t v[4];
        ldw<4>(b + 2, v);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[i] = (int)kiq4(v[i] & 0x0F0F0F0Fu);
            w[i + 4] = (int)kiq4((v[i] >> 4) & 0x0F0F0F0Fu);
        }
        d0 = d1 = ldh(b);
        m = 0.0f;
    }
};
template <> struct Mq<LB_TYPE_IQ4_XS> {
    static constexpr int MVT = MVT_ALL;
    static constexpr bool OK = true, WORD = false, M16 = false, WU = false;
    static __device__ __forceinline__ void chunk(const uint8_t *b, int s, int *w, float &d0, float &d1, float &m) {
        const int ls = ((b[4 + s / 2] >> (4 * (s % 2))) & 0xF) | (((int)(ld16(b + 2) >> (2 * s)) & 3) << 4);
        d0 = d1 = mul(ldh(b), (float)(ls - 32));
        m = 0.0f;
        const uint8_t *q = b + 8 + 16 * s;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t v = ld32a(q + 4 * i);
            w[i] = (int)kiq4(v & 0x0F0F0F0Fu);
            w[i + 4] = (int)kiq4((v >> 4) & 0x0F0F0F0Fu);
        }
    }
};

/* Calls F::template run<T>() for the weight type t; false for a type with no decoder. */
#define LB_CUDA_WEIGHT_TYPES(X)                                                                                     \
    X(LB_TYPE_F32) X(LB_TYPE_F16) X(LB_TYPE_BF16) X(LB_TYPE_Q4_0) X(LB_TYPE_Q4_1) X(LB_TYPE_Q5_0) X(LB_TYPE_Q5_1) \
    X(LB_TYPE_Q8_0) X(LB_TYPE_Q2_K) X(LB_TYPE_Q3_K) X(LB_TYPE_Q4_K) X(LB_TYPE_Q5_K) X(LB_TYPE_Q6_K)               \
    X(LB_TYPE_IQ4_NL) X(LB_TYPE_IQ4_XS)

#endif
