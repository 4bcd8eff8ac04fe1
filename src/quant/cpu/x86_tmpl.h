/*
 * x86_tmpl.h - the x86 kernels, written once and compiled per instruction set by x86_avx2.c and
 * x86_avx512.c (each defines TGT, SFX and DOT32 before including this file). Every function follows the
 * arithmetic order of cpu.h exactly, so all instantiations and the scalar reference agree bit for bit.
 *
 * DOT32(acc, u, s): acc (8 x int32) += sums of 4 adjacent products u[i] * s[i] (u unsigned, s signed bytes).
 */
#include "../blocks.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers ------------------------------ */

TGT static inline float SFX(hsum8)(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

TGT static inline int32_t SFX(hsumi)(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* the sums of four vectors of 8 int32 lanes */
TGT static inline __m128i SFX(hsum4i)(const __m256i *v) {
    __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

TGT static inline float SFX(h2f)(uint16_t h) { return _cvtsh_ss(h); }

/* 16 packed bytes -> 32 bytes: low nibbles first, then high nibbles */
TGT static inline __m256i SFX(nibbles)(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

/* 32 bits -> 32 bytes, byte j = 0x10 where bit j is set */
TGT static inline __m256i SFX(bits16)(const uint8_t *qh) {
    uint32_t h;
    memcpy(&h, qh, 4);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h),
                                    _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL, 0x0101010101010101LL, 0));
    __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(0x10));
}

TGT static inline void SFX(set32)(const lb_qrow *o, int64_t b, float d, float dm, int mn) {
    o->sc[2 * b] = o->sc[2 * b + 1] = 1;
    o->mn[2 * b] = o->mn[2 * b + 1] = (int16_t)mn;
    o->d[b] = d;
    o->dm[b] = dm;
}

#define ST(p, v) _mm256_storeu_si256((__m256i *)(p), (v))
#define LD(p) _mm256_loadu_si256((const __m256i *)(p))

/* ---------------------------------------------------------------- unpacking (32-element blocks) -------- */

TGT static void SFX(unpack_q4_0)(const void *row, int64_t K, const lb_qrow *o) {
    const block_q4_0 *x = row;
    for (int64_t b = 0; b < K / 32; b++) {
        ST(o->q + 32 * b, _mm256_sub_epi8(SFX(nibbles)(x[b].qs), _mm256_set1_epi8(8)));
        SFX(set32)(o, b, SFX(h2f)(x[b].d), 0.0f, 0);
    }
}

TGT static void SFX(unpack_q4_1)(const void *row, int64_t K, const lb_qrow *o) {
    const block_q4_1 *x = row;
    for (int64_t b = 0; b < K / 32; b++) {
        ST(o->q + 32 * b, SFX(nibbles)(x[b].qs));
        SFX(set32)(o, b, SFX(h2f)(x[b].d), SFX(h2f)(x[b].m), 1);
    }
}

TGT static void SFX(unpack_q5_0)(const void *row, int64_t K, const lb_qrow *o) {
    const block_q5_0 *x = row;
    for (int64_t b = 0; b < K / 32; b++) {
        __m256i q = _mm256_or_si256(SFX(nibbles)(x[b].qs), SFX(bits16)(x[b].qh));
        ST(o->q + 32 * b, _mm256_sub_epi8(q, _mm256_set1_epi8(16)));
        SFX(set32)(o, b, SFX(h2f)(x[b].d), 0.0f, 0);
    }
}

TGT static void SFX(unpack_q5_1)(const void *row, int64_t K, const lb_qrow *o) {
    const block_q5_1 *x = row;
    for (int64_t b = 0; b < K / 32; b++) {
        ST(o->q + 32 * b, _mm256_or_si256(SFX(nibbles)(x[b].qs), SFX(bits16)(x[b].qh)));
        SFX(set32)(o, b, SFX(h2f)(x[b].d), SFX(h2f)(x[b].m), 1);
    }
}

TGT static void SFX(unpack_q8_0)(const void *row, int64_t K, const lb_qrow *o) {
    const block_q8_0 *x = row;
    for (int64_t b = 0; b < K / 32; b++) {
        ST(o->q + 32 * b, LD(x[b].qs));
        SFX(set32)(o, b, SFX(h2f)(x[b].d), 0.0f, 0);
    }
}

TGT static inline __m256i SFX(iq4_values)(const uint8_t *qs) {
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_iq4nl));
    return _mm256_shuffle_epi8(tab, SFX(nibbles)(qs));
}

TGT static void SFX(unpack_iq4_nl)(const void *row, int64_t K, const lb_qrow *o) {
    const block_iq4_nl *x = row;
    for (int64_t b = 0; b < K / 32; b++) {
        ST(o->q + 32 * b, SFX(iq4_values)(x[b].qs));
        SFX(set32)(o, b, SFX(h2f)(x[b].d), 0.0f, 0);
    }
}

/* ---------------------------------------------------------------- unpacking (256-element blocks) ------- */

/* 2-bit codes: byte 32h + l holds element 128h + 32k + l in bits 2k (q2_K, q3_K) */
TGT static inline __m256i SFX(crumbs)(const uint8_t *qs, int h, int k) {
    return _mm256_and_si256(_mm256_srli_epi16(LD(qs + 32 * h), 2 * k), _mm256_set1_epi8(3));
}

TGT static void SFX(unpack_q2_K)(const void *row, int64_t K, const lb_qrow *o) {
    const block_q2_K *x = row;
    for (int64_t b = 0; b < K / QK_K; b++) {
        int8_t *q = o->q + QK_K * b;
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++) ST(q + 128 * h + 32 * k, SFX(crumbs)(x[b].qs, h, k));
        __m256i s = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)x[b].scales));
        ST(o->sc + 16 * b, _mm256_and_si256(s, _mm256_set1_epi16(0xF)));
        ST(o->mn + 16 * b, _mm256_srli_epi16(s, 4));
        o->d[b] = SFX(h2f)(x[b].d);
        o->dm[b] = -SFX(h2f)(x[b].dmin);
    }
}

/* 32 bytes of v with bit j of each byte: 0xFF where clear */
TGT static inline __m256i SFX(bitclear)(__m256i v, int j) {
    __m256i m = _mm256_set1_epi8((char)(1 << j));
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, m), _mm256_setzero_si256());
}

TGT static void SFX(unpack_q3_K)(const void *row, int64_t K, const lb_qrow *o) {
    const block_q3_K *x = row;
    for (int64_t b = 0; b < K / QK_K; b++) {
        int8_t *q = o->q + QK_K * b;
        __m256i hm = LD(x[b].hmask);
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++) {
                __m256i four = _mm256_and_si256(SFX(bitclear)(hm, 4 * h + k), _mm256_set1_epi8(4));
                ST(q + 128 * h + 32 * k, _mm256_sub_epi8(SFX(crumbs)(x[b].qs, h, k), four));
            }
        const uint8_t *s = x[b].scales;
        for (int j = 0; j < 16; j++) {
            int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
            o->sc[16 * b + j] = (int16_t)((lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
        }
        memset(o->mn + 16 * b, 0, 32);
        o->d[b] = SFX(h2f)(x[b].d);
        o->dm[b] = 0.0f;
    }
}

/* q4_K / q5_K: the 8 six-bit scales and mins packed in 12 bytes (formats.md 2.3), each stored for both
 * 16-element halves of its 32-element sub-block */
TGT static inline void SFX(k4_scales_v)(const uint8_t *q, __m256i *sc, __m256i *mn) {
    uint32_t u[3];
    memcpy(u, q, 12);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    __m128i v = _mm_set_epi32((int)(((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4)), /* mins 4..7 */
                              (int)(u[1] & m6),                                    /* mins 0..3 */
                              (int)((u[2] & m4) | (((u[0] >> 6) & m2) << 4)),      /* scales 4..7 */
                              (int)(u[0] & m6));                                   /* scales 0..3 */
    *sc = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v, v));
    *mn = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(v, v));
}

TGT static inline void SFX(k4_scales)(const uint8_t *q, int16_t *sc, int16_t *mn) {
    __m256i s, m;
    SFX(k4_scales_v)(q, &s, &m);
    ST(sc, s);
    ST(mn, m);
}

/* q4_K / q5_K codes: 32 bytes at 32c: low nibbles = elements 64c..64c+31, high = 64c+32..; qh bit j of byte l
 * adds 16 to element 32j + l */
TGT static inline void SFX(k4_codes)(const uint8_t *qs, const uint8_t *qh, int8_t *q) {
    __m256i m4 = _mm256_set1_epi8(0x0F), hv = qh ? LD(qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i v = LD(qs + 32 * c);
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (qh) {
            __m256i s = _mm256_set1_epi8(16);
            lo = _mm256_add_epi8(lo, _mm256_andnot_si256(SFX(bitclear)(hv, 2 * c), s));
            hi = _mm256_add_epi8(hi, _mm256_andnot_si256(SFX(bitclear)(hv, 2 * c + 1), s));
        }
        ST(q + 64 * c, lo);
        ST(q + 64 * c + 32, hi);
    }
}

TGT static void SFX(unpack_q4_K)(const void *row, int64_t K, const lb_qrow *o) {
    const block_q4_K *x = row;
    for (int64_t b = 0; b < K / QK_K; b++) {
        SFX(k4_codes)(x[b].qs, NULL, o->q + QK_K * b);
        SFX(k4_scales)(x[b].scales, o->sc + 16 * b, o->mn + 16 * b);
        o->d[b] = SFX(h2f)(x[b].d);
        o->dm[b] = -SFX(h2f)(x[b].dmin);
    }
}

TGT static void SFX(unpack_q5_K)(const void *row, int64_t K, const lb_qrow *o) {
    const block_q5_K *x = row;
    for (int64_t b = 0; b < K / QK_K; b++) {
        SFX(k4_codes)(x[b].qs, x[b].qh, o->q + QK_K * b);
        SFX(k4_scales)(x[b].scales, o->sc + 16 * b, o->mn + 16 * b);
        o->d[b] = SFX(h2f)(x[b].d);
        o->dm[b] = -SFX(h2f)(x[b].dmin);
    }
}

TGT static void SFX(unpack_q6_K)(const void *row, int64_t K, const lb_qrow *o) {
    const block_q6_K *x = row;
    __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30), off = _mm256_set1_epi8(32);
    for (int64_t b = 0; b < K / QK_K; b++) {
        int8_t *q = o->q + QK_K * b;
        for (int h = 0; h < 2; h++) {
            __m256i l0 = LD(x[b].ql + 64 * h), l1 = LD(x[b].ql + 64 * h + 32), hv = LD(x[b].qh + 32 * h);
            __m256i c0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m2));
            __m256i c1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m2));
            __m256i c2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hv, m2));
            __m256i c3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(hv, 2), m2));
            ST(q + 128 * h, _mm256_sub_epi8(c0, off));
            ST(q + 128 * h + 32, _mm256_sub_epi8(c1, off));
            ST(q + 128 * h + 64, _mm256_sub_epi8(c2, off));
            ST(q + 128 * h + 96, _mm256_sub_epi8(c3, off));
        }
        ST(o->sc + 16 * b, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[b].scales)));
        memset(o->mn + 16 * b, 0, 32);
        o->d[b] = SFX(h2f)(x[b].d);
        o->dm[b] = 0.0f;
    }
}

TGT static void SFX(unpack_iq4_xs)(const void *row, int64_t K, const lb_qrow *o) {
    const block_iq4_xs *x = row;
    for (int64_t b = 0; b < K / QK_K; b++) {
        for (int ib = 0; ib < 8; ib++) {
            ST(o->q + QK_K * b + 32 * ib, SFX(iq4_values)(x[b].qs + 16 * ib));
            int ls = (((x[b].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[b].scales_h >> (2 * ib)) & 3) << 4)) - 32;
            o->sc[16 * b + 2 * ib] = o->sc[16 * b + 2 * ib + 1] = (int16_t)ls;
        }
        memset(o->mn + 16 * b, 0, 32);
        o->d[b] = SFX(h2f)(x[b].d);
        o->dm[b] = 0.0f;
    }
}

/* ---------------------------------------------------------------- quantized dot ------------------------ */

/* exact int min term M of block b */
TGT static inline int32_t SFX(minsum)(const lb_qrow *w, const lb_act *a, int64_t b, int64_t be) {
    if (be == 32)
        return (int32_t)w->mn[2 * b] * a->bsum[2 * b] + (int32_t)w->mn[2 * b + 1] * a->bsum[2 * b + 1];
    __m256i s = _mm256_setzero_si256();
    for (int64_t g = b * be / 16; g < (b + 1) * be / 16; g += 16)
        s = _mm256_add_epi32(s, _mm256_madd_epi16(LD(w->mn + g), LD(a->bsum + g)));
    return SFX(hsumi)(s);
}

/* exact int min terms M of block b for tokens 0..3 */
TGT static inline __m128i SFX(minsum4)(const lb_qrow *w, const lb_act *a, int64_t b, int64_t be) {
    if (be == 32) {
        int32_t m0 = w->mn[2 * b], m1 = w->mn[2 * b + 1];
        return _mm_set_epi32(m0 * a[3].bsum[2 * b] + m1 * a[3].bsum[2 * b + 1], m0 * a[2].bsum[2 * b] + m1 * a[2].bsum[2 * b + 1],
                             m0 * a[1].bsum[2 * b] + m1 * a[1].bsum[2 * b + 1], m0 * a[0].bsum[2 * b] + m1 * a[0].bsum[2 * b + 1]);
    }
    __m256i m[4];
    for (int t = 0; t < 4; t++) {
        m[t] = _mm256_setzero_si256();
        for (int64_t g = b * be / 16; g < (b + 1) * be / 16; g += 16)
            m[t] = _mm256_add_epi32(m[t], _mm256_madd_epi16(LD(w->mn + g), LD(a[t].bsum + g)));
    }
    __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

/*
 * NT tokens (1..4) against one row, blocks of BE (32: every scale is 1; 256: 16-element scales). UNS: the
 * codes are non-negative (the types with a min term), so they multiply the activations directly; signed
 * codes go through |q| * (a with q's sign). Either way the integer lanes are exact.
 */
#define QDOT_SCMASK _mm256_set_epi8(3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0)

__attribute__((always_inline)) TGT static inline void SFX(qdot_gen)(const lb_qrow *w, const lb_act *a, int64_t K, float *out,
                                                                   int64_t ldo, const int NT, const int BE, const int UNS) {
    float acc[4] = {0};
    __m128 acc4 = _mm_setzero_ps();
    for (int64_t b = 0; b < K / BE; b++) {
        __m256i iacc[4];
        for (int t = 0; t < NT; t++) iacc[t] = _mm256_setzero_si256();
        __m256i sc16 = BE == 32 ? _mm256_setzero_si256() : LD(w->sc + b * 16);
#pragma GCC unroll 1 /* fully unrolled, GCC reassociates the lanes' sums into a tree and spills */
        for (int c = 0; c < BE / 32; c++) {
            int64_t e = b * BE + 32 * c;
            __m256i wq = LD(w->q + e), uw = UNS ? wq : _mm256_sign_epi8(wq, wq);
            if (BE == 32) {
                for (int t = 0; t < NT; t++) {
                    __m256i av = LD(a[t].q + e);
                    DOT32(iacc[t], uw, UNS ? av : _mm256_sign_epi8(av, wq));
                }
            } else {
                __m256i scv = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(c)), QDOT_SCMASK);
                for (int t = 0; t < NT; t++) {
                    __m256i av = LD(a[t].q + e);
                    __m256i p = _mm256_maddubs_epi16(uw, UNS ? av : _mm256_sign_epi8(av, wq));
                    iacc[t] = _mm256_add_epi32(iacc[t], _mm256_madd_epi16(p, scv));
                }
            }
        }
        if (NT == 4) { /* the per-token steps of the block four lanes at a time (the same operations) */
            __m128 ad = _mm_set_ps(a[3].d[b], a[2].d[b], a[1].d[b], a[0].d[b]);
            acc4 = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(w->d[b]), ad), _mm_cvtepi32_ps(SFX(hsum4i)(iacc)), acc4);
            if (UNS) acc4 = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(w->dm[b]), ad), _mm_cvtepi32_ps(SFX(minsum4)(w, a, b, BE)), acc4);
            continue;
        }
        for (int t = 0; t < NT; t++) {
            acc[t] = fmaf(w->d[b] * a[t].d[b], (float)SFX(hsumi)(iacc[t]), acc[t]);
            if (UNS) acc[t] = fmaf(w->dm[b] * a[t].d[b], (float)SFX(minsum)(w, &a[t], b, BE), acc[t]);
        }
    }
    if (NT == 4) _mm_storeu_ps(acc, acc4);
    for (int t = 0; t < NT; t++) out[t * ldo] = acc[t];
}

#define QDOT_INST(NT, BE, UNS)                                                                              \
    TGT static void SFX(qdot_##NT##_##BE##_##UNS)(const lb_qrow *w, const lb_act *a, int64_t K, float *out, int64_t ldo) { \
        SFX(qdot_gen)(w, a, K, out, ldo, NT, BE, UNS);                                                      \
    }
QDOT_INST(1, 32, 0)
QDOT_INST(2, 32, 0)
QDOT_INST(4, 32, 0)
QDOT_INST(1, 32, 1)
QDOT_INST(2, 32, 1)
QDOT_INST(4, 32, 1)
QDOT_INST(1, 256, 0)
QDOT_INST(2, 256, 0)
QDOT_INST(4, 256, 0)
QDOT_INST(1, 256, 1)
QDOT_INST(2, 256, 1)
QDOT_INST(4, 256, 1)

typedef void (*SFX(qdot_fn))(const lb_qrow *, const lb_act *, int64_t, float *, int64_t);

TGT static void SFX(qdot)(const lb_qrow *w, const lb_act *a, int nt, int64_t K, int64_t be, bool has_min, float *out,
                          int64_t ldo) {
    static const SFX(qdot_fn) fns[2][2][3] = {
        {{SFX(qdot_1_32_0), SFX(qdot_2_32_0), SFX(qdot_4_32_0)}, {SFX(qdot_1_32_1), SFX(qdot_2_32_1), SFX(qdot_4_32_1)}},
        {{SFX(qdot_1_256_0), SFX(qdot_2_256_0), SFX(qdot_4_256_0)}, {SFX(qdot_1_256_1), SFX(qdot_2_256_1), SFX(qdot_4_256_1)}},
    };
    const SFX(qdot_fn) *f = fns[be == 256][has_min ? 1 : 0];
    if (nt == 4) {
        f[2](w, a, K, out, ldo);
        return;
    }
    for (; nt >= 2; nt -= 2, a += 2, out += 2 * ldo) f[1](w, a, K, out, ldo);
    if (nt) f[0](w, a, K, out, ldo);
}

/* ---------------------------------------------------------------- fused one-token products ------------- */
/* Decode: one row straight from its blocks against one token, without the unpacked row; the same integer
 * lanes and float steps as unpack + qdot. */

/* iacc += the scaled lanes of 32 codes u (non-negative or signed) against activations at av */
#define K_CHUNK(iacc, w, av, scv, UNS)                                                                      \
    do {                                                                                                    \
        __m256i a_ = LD(av);                                                                                \
        __m256i p_ = UNS ? _mm256_maddubs_epi16((w), a_)                                                     \
                         : _mm256_maddubs_epi16(_mm256_sign_epi8((w), (w)), _mm256_sign_epi8(a_, (w)));      \
        (iacc) = _mm256_add_epi32((iacc), _mm256_madd_epi16(p_, (scv)));                                    \
    } while (0)
#define K_SCV(sc16, c) _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32((sc16), _mm256_set1_epi32(c)), QDOT_SCMASK)

/* ---------------------------------------------------------------- one token, four rows -------------- */
/* The one-token products above over four rows at once: the rows' exact block sums reduced together in registers,
 * then the block's float steps of cpu.h with one row per lane (rows past R repeat row 0 and are not stored).
 * x86_avx512.c replaces these with 512-bit ones. */

/* (sum of a's lanes, of b's, of c's, of d's) */
TGT static inline __m128i SFX(sum4_8)(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
    __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
    __m256i t = _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

TGT static inline __m128 SFX(h2f_4)(uint16_t a, uint16_t b, uint16_t c, uint16_t d) {
    return _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, (short)d, (short)c, (short)b, (short)a));
}

/* lanes 0 .. n-1 of v to out, n <= 4 */
TGT static inline void SFX(store_n)(float *out, int n, __m128 v) {
    _mm_maskstore_ps(out, _mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_set_epi32(3, 2, 1, 0)), v);
}

/* x[0..3]: rows r0.. of type T (rows past R repeat row r0) */
#define ROWS4(T, rows, rb, R, r0, x)                                                                         \
    const T *x[4];                                                                                           \
    for (int i_ = 0; i_ < 4; i_++) x[i_] = (const T *)((rows) + (size_t)((r0) + i_ < (R) ? (r0) + i_ : (r0)) * (rb))

/* lb_prefetch_block for each of the four rows */
#define PREFETCH_BLOCK(x, b, rb)                                                                             \
    for (int i_ = 0; i_ < 4; i_++) lb_prefetch_block(x[i_], b, sizeof x[0][0], rb, 4)

TGT static void SFX(gemvr_q4_0)(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    for (int r0 = 0; r0 < R; r0 += 4) {
        ROWS4(block_q4_0, rows, rb, R, r0, x);
        __m128 acc = _mm_setzero_ps();
        for (int64_t b = 0; b < K / 32; b++) {
            PREFETCH_BLOCK(x, b, rb);
            const __m256i av = LD(a->q + 32 * b);
            __m256i U0 = _mm256_setzero_si256(), U1 = U0, U2 = U0, U3 = U0; /* codes + 8 (0..15) against a */
            DOT32(U0, SFX(nibbles)(x[0][b].qs), av);
            DOT32(U1, SFX(nibbles)(x[1][b].qs), av);
            DOT32(U2, SFX(nibbles)(x[2][b].qs), av);
            DOT32(U3, SFX(nibbles)(x[3][b].qs), av);
            const __m128i S = _mm_sub_epi32(SFX(sum4_8)(U0, U1, U2, U3), _mm_set1_epi32(8 * ((int32_t)a->bsum[2 * b] + a->bsum[2 * b + 1])));
            const __m128 d = SFX(h2f_4)(x[0][b].d, x[1][b].d, x[2][b].d, x[3][b].d);
            acc = _mm_fmadd_ps(_mm_mul_ps(d, _mm_set1_ps(a->d[b])), _mm_cvtepi32_ps(S), acc);
        }
        SFX(store_n)(out + r0, R - r0 < 4 ? R - r0 : 4, acc);
    }
}

TGT static void SFX(gemvr_q8_0)(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    for (int r0 = 0; r0 < R; r0 += 4) {
        ROWS4(block_q8_0, rows, rb, R, r0, x);
        __m128 acc = _mm_setzero_ps();
        for (int64_t b = 0; b < K / 32; b++) {
            PREFETCH_BLOCK(x, b, rb);
            const __m256i av = LD(a->q + 32 * b);
            const __m256i w0 = LD(x[0][b].qs), w1 = LD(x[1][b].qs), w2 = LD(x[2][b].qs), w3 = LD(x[3][b].qs);
            __m256i U0 = _mm256_setzero_si256(), U1 = U0, U2 = U0, U3 = U0; /* |w| against a with w's sign */
            DOT32(U0, _mm256_sign_epi8(w0, w0), _mm256_sign_epi8(av, w0));
            DOT32(U1, _mm256_sign_epi8(w1, w1), _mm256_sign_epi8(av, w1));
            DOT32(U2, _mm256_sign_epi8(w2, w2), _mm256_sign_epi8(av, w2));
            DOT32(U3, _mm256_sign_epi8(w3, w3), _mm256_sign_epi8(av, w3));
            const __m128 d = SFX(h2f_4)(x[0][b].d, x[1][b].d, x[2][b].d, x[3][b].d);
            acc = _mm_fmadd_ps(_mm_mul_ps(d, _mm_set1_ps(a->d[b])), _mm_cvtepi32_ps(SFX(sum4_8)(U0, U1, U2, U3)), acc);
        }
        SFX(store_n)(out + r0, R - r0 < 4 ? R - r0 : 4, acc);
    }
}

/* bit k of every byte of v moved to bit 4 (0x10 or 0), k = 0..7 (16-bit shifts: no bit crosses into the byte
 * that is kept) */
TGT static inline __m256i SFX(bit_to_16)(__m256i v, int k) {
    const __m256i m = _mm256_set1_epi8(0x10);
    if (k <= 4) return _mm256_and_si256(_mm256_slli_epi16(v, 4 - k), m);
    return _mm256_and_si256(_mm256_srli_epi16(v, k - 4), m);
}

/* q3_K's 16 scales (6 bits, less 32) as int16 */
TGT static inline __m256i SFX(q3_scales16)(const uint8_t *s) {
    uint64_t l;
    uint32_t h;
    memcpy(&l, s, 8);
    memcpy(&h, s + 8, 4);
    const __m128i v = _mm_cvtsi64_si128((long long)l), m = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_unpacklo_epi64(_mm_and_si128(v, m), _mm_and_si128(_mm_srli_epi16(v, 4), m)); /* byte j: low 4 bits */
    const __m128i hb = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32((int)h), _mm_set_epi32(6, 4, 2, 0)), _mm_set1_epi8(3));
    return _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hb, 4)), _mm_set1_epi8(32)));
}

/* The 256-element types over four rows. A type's RBLOCK(block, activations, their 16-element sums, *M) gives one
 * row's exact block sums S (8 lanes to add; a code offset already taken off) and, for the types with a min term,
 * the min products *M (8 lanes to add); the row loop (GEMVR_256) reduces four rows at once and takes the float
 * steps of cpu.h with one row per lane. x86_avx512.c uses the codes and scales helpers below for its own. */

/* q4_K / q5_K codes of chunk c (elements 64c + l: lo, 64c + 32 + l: hi, l < 32); hv: q5_K's qh (has_h) */
TGT static inline void SFX(k4_chunk)(const uint8_t *qs, __m256i hv, int has_h, int c, __m256i *lo, __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), v = LD(qs + 32 * c);
    *lo = _mm256_and_si256(v, m4), *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    if (has_h) *lo = _mm256_or_si256(*lo, SFX(bit_to_16)(hv, 2 * c)), *hi = _mm256_or_si256(*hi, SFX(bit_to_16)(hv, 2 * c + 1));
}

/* q2_K / q3_K codes of chunk c: 2 bits from byte 32 (c / 2) + l of qs at bit 2 (2 (c % 2) + j / 32); q3_K's bit
 * 2c (2c + 1) of hm (has_h) adds 4 */
TGT static inline void SFX(k2_chunk)(const uint8_t *qs, __m256i hm, int has_h, int c, __m256i *lo, __m256i *hi) {
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4), q = LD(qs + 32 * (c / 2));
    *lo = _mm256_and_si256(_mm256_srli_epi16(q, 4 * (c % 2)), m3), *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4 * (c % 2) + 2), m3);
    if (has_h) {
        *lo = _mm256_or_si256(*lo, _mm256_and_si256(2 * c >= 2 ? _mm256_srli_epi16(hm, 2 * c - 2) : _mm256_slli_epi16(hm, 2), m4));
        *hi = _mm256_or_si256(*hi, _mm256_and_si256(2 * c + 1 >= 2 ? _mm256_srli_epi16(hm, 2 * c - 1) : _mm256_slli_epi16(hm, 1), m4));
    }
}

/* iq4_xs's eight sub-block scales (6 bits less 32), each twice in a 32-bit lane: int16 scales of the 16 groups */
TGT static inline __m256i SFX(iq4_xs_scales16)(const block_iq4_xs *x) {
    uint32_t l;
    memcpy(&l, x->scales_l, 4);
    const __m128i sl = _mm_cvtsi32_si128((int)l), m = _mm_set1_epi8(0x0F);
    const __m256i lo4 = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(_mm_and_si128(sl, m), _mm_and_si128(_mm_srli_epi16(sl, 4), m)));
    const __m256i hi2 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(x->scales_h), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                                         _mm256_set1_epi32(3));
    const __m256i ls = _mm256_sub_epi32(_mm256_or_si256(lo4, _mm256_slli_epi32(hi2, 4)), _mm256_set1_epi32(32));
    return _mm256_or_si256(_mm256_and_si256(ls, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(ls, 16));
}

/* q4_K / q5_K (qh not NULL) */
TGT static inline __m256i SFX(k4_rblock)(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, const int8_t *ab, const int16_t *bs,
                                         __m256i *M) {
    __m256i sc16, mn16, iacc = _mm256_setzero_si256();
    SFX(k4_scales_v)(scales, &sc16, &mn16);
    const __m256i hv = qh ? LD(qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i lo, hi;
        SFX(k4_chunk)(qs, hv, qh != NULL, c, &lo, &hi);
        K_CHUNK(iacc, lo, ab + 64 * c, K_SCV(sc16, 2 * c), 1);
        K_CHUNK(iacc, hi, ab + 64 * c + 32, K_SCV(sc16, 2 * c + 1), 1);
    }
    *M = _mm256_madd_epi16(mn16, LD(bs));
    return iacc;
}
TGT static inline __m256i SFX(q4_K_rblock)(const block_q4_K *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    return SFX(k4_rblock)(x->scales, x->qs, NULL, ab, bs, M);
}
TGT static inline __m256i SFX(q5_K_rblock)(const block_q5_K *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    return SFX(k4_rblock)(x->scales, x->qs, x->qh, ab, bs, M);
}

/* q2_K / q3_K (hmask not NULL: the codes + 4): the code sums times the 16 groups' scales sc16 */
TGT static inline __m256i SFX(k2_rblock)(const uint8_t *qs, const uint8_t *hmask, __m256i sc16, const int8_t *ab) {
    const __m256i hm = hmask ? LD(hmask) : _mm256_setzero_si256();
    __m256i iacc = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i lo, hi;
        SFX(k2_chunk)(qs, hm, hmask != NULL, c, &lo, &hi);
        K_CHUNK(iacc, lo, ab + 64 * c, K_SCV(sc16, 2 * c), 1);
        K_CHUNK(iacc, hi, ab + 64 * c + 32, K_SCV(sc16, 2 * c + 1), 1);
    }
    return iacc;
}
TGT static inline __m256i SFX(q2_K_rblock)(const block_q2_K *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    const __m256i sc = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    *M = _mm256_madd_epi16(_mm256_srli_epi16(sc, 4), LD(bs));
    return SFX(k2_rblock)(x->qs, NULL, _mm256_and_si256(sc, _mm256_set1_epi16(0x0F)), ab);
}
TGT static inline __m256i SFX(q3_K_rblock)(const block_q3_K *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    (void)M;
    const __m256i sc = SFX(q3_scales16)(x->scales); /* the codes + 4: less 4 * sum sc * bsum */
    return _mm256_sub_epi32(SFX(k2_rblock)(x->qs, x->hmask, sc, ab), _mm256_slli_epi32(_mm256_madd_epi16(sc, LD(bs)), 2));
}

/* q6_K: the codes - 32 (signed) */
TGT static inline __m256i SFX(q6_K_rblock)(const block_q6_K *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    (void)bs, (void)M;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30), off = _mm256_set1_epi8(32);
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales)), iacc = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i l0 = LD(x->ql + 64 * h), l1 = LD(x->ql + 64 * h + 32), hv = LD(x->qh + 32 * h);
        __m256i c0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m2));
        __m256i c1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m2));
        __m256i c2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hv, m2));
        __m256i c3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hv, 2), m2));
        K_CHUNK(iacc, _mm256_sub_epi8(c0, off), ab + 128 * h, K_SCV(sc16, 4 * h), 0);
        K_CHUNK(iacc, _mm256_sub_epi8(c1, off), ab + 128 * h + 32, K_SCV(sc16, 4 * h + 1), 0);
        K_CHUNK(iacc, _mm256_sub_epi8(c2, off), ab + 128 * h + 64, K_SCV(sc16, 4 * h + 2), 0);
        K_CHUNK(iacc, _mm256_sub_epi8(c3, off), ab + 128 * h + 96, K_SCV(sc16, 4 * h + 3), 0);
    }
    return iacc;
}

/* iq4_xs: the table's values by |v| against the activations with v's sign */
TGT static inline __m256i SFX(iq4_xs_rblock)(const block_iq4_xs *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    (void)bs, (void)M;
    const __m256i sc16 = SFX(iq4_xs_scales16)(x), tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_iq4nl));
    __m256i iacc = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ib++) K_CHUNK(iacc, _mm256_shuffle_epi8(tbl, SFX(nibbles)(x->qs + 16 * ib)), ab + 32 * ib, K_SCV(sc16, ib), 0);
    return iacc;
}

/* the min's float step of the types with one (dmin negated, as the unpacked rows' dm) */
#define GEMVR_MIN_STEP                                                                                      \
    acc = _mm_fmadd_ps(_mm_mul_ps(_mm_xor_ps(SFX(h2f_4)(x[0][b].dmin, x[1][b].dmin, x[2][b].dmin, x[3][b].dmin), _mm_set1_ps(-0.0f)), da), \
                       _mm_cvtepi32_ps(SFX(sum4_8)(M0, M1, M2, M3)), acc);
/* four rows of block type BT: block sums of vector type VT from RBLOCK, reduced by SUM4, then MIN_STEP
 * (GEMVR_MIN_STEP or nothing); x86_avx512.c makes its 512-bit ones with it too */
#define GEMVR_256(NAME, BT, RBLOCK, VT, SUM4, MIN_STEP)                                                      \
    TGT static void SFX(NAME)(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {  \
        for (int r0 = 0; r0 < R; r0 += 4) {                                                                 \
            ROWS4(BT, rows, rb, R, r0, x);                                                                  \
            __m128 acc = _mm_setzero_ps();                                                                  \
            for (int64_t b = 0; b < K / QK_K; b++) {                                                        \
                PREFETCH_BLOCK(x, b, rb);                                                                   \
                const int8_t *ab = a->q + QK_K * b;                                                         \
                const int16_t *bs = a->bsum + 16 * b;                                                       \
                __m256i M0, M1, M2, M3; /* named values: GCC keeps arrays of vectors on the stack here */  \
                const VT S0 = RBLOCK(&x[0][b], ab, bs, &M0), S1 = RBLOCK(&x[1][b], ab, bs, &M1);            \
                const VT S2 = RBLOCK(&x[2][b], ab, bs, &M2), S3 = RBLOCK(&x[3][b], ab, bs, &M3);            \
                const __m128 da = _mm_set1_ps(a->d[b]);                                                     \
                const __m128 d = SFX(h2f_4)(x[0][b].d, x[1][b].d, x[2][b].d, x[3][b].d);                    \
                acc = _mm_fmadd_ps(_mm_mul_ps(d, da), _mm_cvtepi32_ps(SUM4(S0, S1, S2, S3)), acc);          \
                MIN_STEP                                                                                    \
            }                                                                                               \
            SFX(store_n)(out + r0, R - r0 < 4 ? R - r0 : 4, acc);                                           \
        }                                                                                                   \
    }
GEMVR_256(gemvr_q2_K, block_q2_K, SFX(q2_K_rblock), __m256i, SFX(sum4_8), GEMVR_MIN_STEP)
GEMVR_256(gemvr_q3_K, block_q3_K, SFX(q3_K_rblock), __m256i, SFX(sum4_8), )
GEMVR_256(gemvr_q4_K, block_q4_K, SFX(q4_K_rblock), __m256i, SFX(sum4_8), GEMVR_MIN_STEP)
GEMVR_256(gemvr_q5_K, block_q5_K, SFX(q5_K_rblock), __m256i, SFX(sum4_8), GEMVR_MIN_STEP)
GEMVR_256(gemvr_q6_K, block_q6_K, SFX(q6_K_rblock), __m256i, SFX(sum4_8), )
GEMVR_256(gemvr_iq4_xs, block_iq4_xs, SFX(iq4_xs_rblock), __m256i, SFX(sum4_8), )

/* q4_1, q5_0, q5_1 and iq4_nl over four rows, one block at a time: the codes unsigned against the activations
 * (q5_0 less 16 * its activation sum), iq4_nl's table values by |v| against the activations with v's sign, and
 * the min's float step after each block's code step */
enum { SFX(T32_Q4_1), SFX(T32_Q5_0), SFX(T32_Q5_1), SFX(T32_IQ4_NL) };

/* the 32 fifth bits of a q5 block at bit 4 of bytes 0..31 (element order) */
TGT static inline __m256i SFX(q5_high)(const uint8_t *qh) {
    uint32_t h;
    memcpy(&h, qh, 4);
    const __m256i sel = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL, 0x0101010101010101LL, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)h), sel), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8(0x10));
}

__attribute__((always_inline)) TGT static inline void SFX(gemvr32)(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a,
                                                                   float *out, const int T) {
    const size_t bs = T == SFX(T32_Q4_1) ? sizeof(block_q4_1) : T == SFX(T32_Q5_0) ? sizeof(block_q5_0) : T == SFX(T32_Q5_1) ? sizeof(block_q5_1) : sizeof(block_iq4_nl);
    const size_t qs = T == SFX(T32_Q4_1) ? offsetof(block_q4_1, qs) : T == SFX(T32_Q5_0) ? offsetof(block_q5_0, qs) : T == SFX(T32_Q5_1) ? offsetof(block_q5_1, qs) : offsetof(block_iq4_nl, qs);
    const size_t qh = T == SFX(T32_Q5_0) ? offsetof(block_q5_0, qh) : offsetof(block_q5_1, qh);
    const int has_min = T == SFX(T32_Q4_1) || T == SFX(T32_Q5_1);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_iq4nl));
    for (int r0 = 0; r0 < R; r0 += 4) {
        const uint8_t *x[4];
        for (int i = 0; i < 4; i++) x[i] = rows + (size_t)(r0 + i < R ? r0 + i : r0) * rb;
        __m128 acc = _mm_setzero_ps();
        for (int64_t b = 0; b < K / 32; b++) {
            const __m256i av = LD(a->q + 32 * b);
            __m256i U[4];
            for (int i = 0; i < 4; i++) {
                lb_prefetch_block(x[i], b, bs, rb, 4);
                const uint8_t *blk = x[i] + (size_t)b * bs;
                __m256i c = SFX(nibbles)(blk + qs);
                U[i] = _mm256_setzero_si256();
                if (T == SFX(T32_IQ4_NL)) {
                    c = _mm256_shuffle_epi8(tbl, c);
                    DOT32(U[i], _mm256_sign_epi8(c, c), _mm256_sign_epi8(av, c));
                } else {
                    if (T == SFX(T32_Q5_0) || T == SFX(T32_Q5_1)) c = _mm256_or_si256(c, SFX(q5_high)(blk + qh));
                    DOT32(U[i], c, av);
                }
            }
            const int32_t sa = (int32_t)a->bsum[2 * b] + a->bsum[2 * b + 1];
            __m128i S = SFX(sum4_8)(U[0], U[1], U[2], U[3]);
            if (T == SFX(T32_Q5_0)) S = _mm_sub_epi32(S, _mm_set1_epi32(16 * sa));
            uint16_t h[4], hm[4];
            for (int i = 0; i < 4; i++) {
                memcpy(&h[i], x[i] + (size_t)b * bs, 2);
                memcpy(&hm[i], x[i] + (size_t)b * bs + 2, 2);
            }
            const __m128 da = _mm_set1_ps(a->d[b]);
            acc = _mm_fmadd_ps(_mm_mul_ps(SFX(h2f_4)(h[0], h[1], h[2], h[3]), da), _mm_cvtepi32_ps(S), acc);
            if (has_min) acc = _mm_fmadd_ps(_mm_mul_ps(SFX(h2f_4)(hm[0], hm[1], hm[2], hm[3]), da), _mm_set1_ps((float)sa), acc);
        }
        SFX(store_n)(out + r0, R - r0 < 4 ? R - r0 : 4, acc);
    }
}

TGT static void SFX(gemvr_q4_1)(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    SFX(gemvr32)(rows, rb, R, K, a, out, SFX(T32_Q4_1));
}
TGT static void SFX(gemvr_q5_0)(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    SFX(gemvr32)(rows, rb, R, K, a, out, SFX(T32_Q5_0));
}
TGT static void SFX(gemvr_q5_1)(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    SFX(gemvr32)(rows, rb, R, K, a, out, SFX(T32_Q5_1));
}
TGT static void SFX(gemvr_iq4_nl)(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    SFX(gemvr32)(rows, rb, R, K, a, out, SFX(T32_IQ4_NL));
}

/* ---------------------------------------------------------------- activations ------------------------- */

/* lb_act_quantize with the same float operations, 8 elements at a time (maxps / minps keep the reference's
 * NaN handling: a NaN |x| never raises amax, a NaN x * id clamps to -127) */
TGT static void SFX(actq)(const float *x, int64_t K, int64_t be, const lb_act *a) {
    const __m256 sign = _mm256_set1_ps(-0.0f), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256 mg = _mm256_set1_ps(12582912.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < K / be; b++) {
        const float *xb = x + b * be;
        __m256 m = _mm256_setzero_ps();
        for (int64_t i = 0; i < be; i += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xb + i)), m);
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        __m256 id = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        a->d[b] = amax / 127.0f;
        for (int64_t i = 0; i < be; i += 32) {
            __m256i v[4];
            for (int k = 0; k < 4; k++) {
                __m256 f = _mm256_mul_ps(_mm256_loadu_ps(xb + i + 8 * k), id);
                f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
                v[k] = _mm256_cvtps_epi32(_mm256_sub_ps(_mm256_add_ps(f, mg), mg));
            }
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
            ST(a->q + b * be + i, _mm256_permutevar8x32_epi32(p, perm));
        }
    }
    const __m128i flip = _mm_set1_epi8((char)0x80);
    for (int64_t g = 0; g < K / 16; g++) { /* sum of (q + 128) by psadbw, less 16 * 128 */
        __m128i s = _mm_sad_epu8(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(a->q + 16 * g)), flip), _mm_setzero_si128());
        a->bsum[g] = (int16_t)(_mm_cvtsi128_si32(s) + _mm_extract_epi16(s, 4) - 2048);
    }
    lb_act_fill_off(a, K);
}

/* ---------------------------------------------------------------- float weights ------------------------ */

/* out[t][r] for up to 4 rows and 3 tokens: 12 accumulators, lane j = element j mod 8; tail by fmaf */
TGT static void SFX(kernel_4x3)(const float *x, int64_t nt, int64_t K, const float *wt, int nr, float *out, int64_t ldo) {
    const float *x0 = x, *x1 = x + (nt > 1 ? K : 0), *x2 = x + (nt > 2 ? 2 * K : 0);
    const float *w0 = wt, *w1 = wt + (nr > 1 ? K : 0), *w2 = wt + (nr > 2 ? 2 * K : 0), *w3 = wt + (nr > 3 ? 3 * K : 0);
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 a0 = _mm256_loadu_ps(x0 + k), a1 = _mm256_loadu_ps(x1 + k), a2 = _mm256_loadu_ps(x2 + k);
        __m256 b = _mm256_loadu_ps(w0 + k);
        c00 = _mm256_fmadd_ps(a0, b, c00);
        c01 = _mm256_fmadd_ps(a1, b, c01);
        c02 = _mm256_fmadd_ps(a2, b, c02);
        b = _mm256_loadu_ps(w1 + k);
        c10 = _mm256_fmadd_ps(a0, b, c10);
        c11 = _mm256_fmadd_ps(a1, b, c11);
        c12 = _mm256_fmadd_ps(a2, b, c12);
        b = _mm256_loadu_ps(w2 + k);
        c20 = _mm256_fmadd_ps(a0, b, c20);
        c21 = _mm256_fmadd_ps(a1, b, c21);
        c22 = _mm256_fmadd_ps(a2, b, c22);
        b = _mm256_loadu_ps(w3 + k);
        c30 = _mm256_fmadd_ps(a0, b, c30);
        c31 = _mm256_fmadd_ps(a1, b, c31);
        c32 = _mm256_fmadd_ps(a2, b, c32);
    }
    __m256 acc[4][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}, {c30, c31, c32}};
    const float *xr[3] = {x0, x1, x2}, *wr[4] = {w0, w1, w2, w3};
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) {
            float s = SFX(hsum8)(acc[r][t]);
            for (int64_t j = k; j < K; j++) s = fmaf(xr[t][j], wr[r][j], s);
            out[t * ldo + r] = s;
        }
}

/* 8 weights of a float row from element k as f32 (exact) */
TGT static inline __m256 SFX(fload8)(const lb_weight *w, const void *row, int64_t k) {
    if (w->type == LB_TYPE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k)));
    if (w->type == LB_TYPE_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k))), 16));
    return _mm256_loadu_ps((const float *)row + k);
}

TGT static inline float SFX(fget)(const lb_weight *w, const void *row, int64_t k) {
    if (w->type == LB_TYPE_F16) return SFX(h2f)(((const uint16_t *)row)[k]);
    if (w->type == LB_TYPE_BF16) return lb_bf16_to_f32(((const uint16_t *)row)[k]);
    return ((const float *)row)[k];
}

/* one token against R float rows read in place, four rows at a time (the float order of cpu.h) */
TGT static void SFX(fgemv)(const lb_weight *w, int64_t r0, int R, const float *x, float *out) {
    int64_t K = w->cols, K8 = K - K % 8;
    size_t rb = lb_weight_row_bytes(w);
    for (int g = 0; g < R; g += 4) {
        int n = R - g < 4 ? R - g : 4;
        const void *row[4];
        for (int i = 0; i < 4; i++) row[i] = (const uint8_t *)w->data + (size_t)(r0 + g + (i < n ? i : 0)) * rb;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        size_t es = lb_type_traits_get(w->type)->block_bytes, line = 64 / es;
        for (int64_t k = 0; k < K8; k += 8) {
            if ((size_t)k % line == 0)
                for (int i = 0; i < 4; i++) lb_prefetch_stream(row[i], (size_t)k * es, rb, 4);
            __m256 xv = _mm256_loadu_ps(x + k);
            for (int i = 0; i < 4; i++) acc[i] = _mm256_fmadd_ps(xv, SFX(fload8)(w, row[i], k), acc[i]);
        }
        for (int i = 0; i < n; i++) {
            float s = SFX(hsum8)(acc[i]);
            for (int64_t k = K8; k < K; k++) s = fmaf(x[k], SFX(fget)(w, row[i], k), s);
            out[g + i] = s;
        }
    }
}

/* Tokens per cache block: keeps a block of activation rows resident while all tile rows pass over it. */
#define MM_TOKEN_BLOCK 24

TGT static void SFX(ftile)(const float *x, int64_t T, int64_t K, const float *wt, int R, float *out, int64_t ldo) {
    for (int64_t tb = 0; tb < T; tb += MM_TOKEN_BLOCK) {
        int64_t te = T - tb < MM_TOKEN_BLOCK ? T : tb + MM_TOKEN_BLOCK;
        for (int r = 0; r < R; r += 4)
            for (int64_t t = tb; t < te; t += 3) {
                int64_t nt = te - t < 3 ? te - t : 3;
                SFX(kernel_4x3)(x + t * K, nt, K, wt + (int64_t)r * K, R - r < 4 ? R - r : 4, out + t * ldo + r, ldo);
            }
    }
}

TGT static void SFX(fconv)(const lb_weight *w, int64_t r0, int R, float *dst) {
    int64_t K = w->cols, n = (int64_t)R * K;
    const uint16_t *src = (const uint16_t *)w->data + r0 * K;
    int64_t i = 0;
    if (w->type == LB_TYPE_F16) {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
        for (; i < n; i++) dst[i] = SFX(h2f)(src[i]);
    } else if (w->type == LB_TYPE_BF16) {
        for (; i + 8 <= n; i += 8) {
            __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        }
        for (; i < n; i++) dst[i] = lb_bf16_to_f32(src[i]);
    } else {
        for (int r = 0; r < R; r++) lb_weight_row_f32(w, r0 + r, dst + (int64_t)r * K);
    }
}

/* the canonical trees of four keys' 8 partials, reduced together */
TGT static inline __m128 SFX(reduce4x8)(const __m256 *a) {
    __m128 c[4];
    for (int j = 0; j < 4; j++) c[j] = _mm_add_ps(_mm256_castps256_ps128(a[j]), _mm256_extractf128_ps(a[j], 1));
    _MM_TRANSPOSE4_PS(c[0], c[1], c[2], c[3]); /* c[l] = partial sum l (l + l+4) of each key */
    return _mm_add_ps(_mm_add_ps(c[0], c[2]), _mm_add_ps(c[1], c[3]));
}

/* the attention's scores and weighted sums over F32 rows (vdots, vwsum) and F16 rows (vdots_h, vwsum_h) */
#define ATT_T float
#define ATT_LOAD8(p) _mm256_loadu_ps(p)
#define ATT_AT(p, i) ((p)[i])
#define ATT_NAME(x) SFX(x)
#include "x86_att.h"
#define ATT_T uint16_t
#define ATT_LOAD8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define ATT_AT(p, i) SFX(h2f)((p)[i])
#define ATT_NAME(x) SFX(x##_h)
#include "x86_att.h"


/* lb_expf (cpu.h) on 8 lanes: the same operations, so the same bits */
TGT static inline __m256 SFX(exp8)(__m256 x) {
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(LB_EXP_LO)), _mm256_set1_ps(LB_EXP_HI));
    __m256 kf = _mm256_sub_ps(_mm256_fmadd_ps(xc, _mm256_set1_ps(LB_EXP_LOG2E), _mm256_set1_ps(LB_EXP_MAGIC)),
                              _mm256_set1_ps(LB_EXP_MAGIC));
    __m256 r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LB_EXP_LN2HI), xc);
    r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LB_EXP_LN2LO), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(LB_EXP_C5), r, _mm256_set1_ps(LB_EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(LB_EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(LB_EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(LB_EXP_C1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(LB_EXP_C0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i k = _mm256_cvttps_epi32(kf), k1 = _mm256_srai_epi32(k, 1), k2 = _mm256_sub_epi32(k, k1);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    return _mm256_blendv_ps(y, _mm256_add_ps(x, x), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

TGT static void SFX(vexp)(const float *x, int64_t n, float *y) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, SFX(exp8)(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = lb_expf(x[i]);
}

TGT static void SFX(swiglu)(float *g, const float *u, int64_t n, int64_t rows, int64_t ld) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (int64_t r = 0; r < rows; r++, g += ld, u += ld) {
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256 gv = _mm256_loadu_ps(g + i);
            __m256 e = SFX(exp8)(_mm256_xor_ps(gv, sign));
            _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
        }
        for (; i < n; i++) g[i] = lb_swiglu1(g[i], u[i]);
    }
}

/* the softmax of cpu.h: lane l of the two double vectors is partial l (lo) and l + 4 (hi) */
TGT static void SFX(softmax)(float *s, int64_t n, float scale) {
    const __m256 sv = _mm256_set1_ps(scale);
    int64_t n8 = n - n % 8, p = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; p < n8; p += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + p), sv);
        _mm256_storeu_ps(s + p, v);
        vm = _mm256_max_ps(v, vm); /* NaN in v keeps vm */
    }
    float mv[8], mx = -INFINITY;
    _mm256_storeu_ps(mv, vm);
    for (int l = 0; l < 8; l++) mx = mv[l] > mx ? mv[l] : mx;
    for (; p < n; p++) {
        float v = s[p] * scale;
        s[p] = v;
        mx = v > mx ? v : mx;
    }
    const __m256 mxv = _mm256_set1_ps(mx);
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (p = 0; p < n8; p += 8) {
        __m256 e = SFX(exp8)(_mm256_sub_ps(_mm256_loadu_ps(s + p), mxv));
        _mm256_storeu_ps(s + p, e);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double d[8];
    _mm256_storeu_pd(d, lo);
    _mm256_storeu_pd(d + 4, hi);
    for (; p < n; p++) {
        s[p] = lb_expf(s[p] - mx);
        d[p % 8] += (double)s[p];
    }
    double sum = lb_reduce8d(d);
    if (sum != sum) {
        float nan = lb_f32_bits(LB_NAN_BITS);
        for (p = 0; p < n; p++) s[p] = nan;
        return;
    }
    const float inv = (float)(1.0 / sum);
    const __m256 iv = _mm256_set1_ps(inv);
    for (p = 0; p < n8; p += 8) _mm256_storeu_ps(s + p, _mm256_mul_ps(_mm256_loadu_ps(s + p), iv));
    for (; p < n; p++) s[p] *= inv;
}

/* lb_qkx_steps_ref, eight steps at a time (one per lane, each lane the reference's float operations in its
 * order, no fused multiply-adds); the steps after one that improves are evaluated again with the new min. */
TGT static void SFX(qkx)(const lb_qkx_search *s, const float *x, const float *w, uint8_t *L, float *scale, float *pmin,
                         float *best_error) {
    const int n = s->n;
    int32_t codes[LB_QKX_MAX_N][8];
    float vD[8], vs[8], vm[8], ve[8];
    const __m256 magic = _mm256_set1_ps(12582912.f), fnmax = _mm256_set1_ps((float)s->nmax), zero = _mm256_setzero_ps();
    const __m256 sw = _mm256_set1_ps(s->sum_w), sx = _mm256_set1_ps(s->sum_x), absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i mant = _mm256_set1_epi32(0x007fffff), half = _mm256_set1_epi32(0x00400000), izero = _mm256_setzero_si256(),
                  inmax = _mm256_set1_epi32(s->nmax), lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    float min = *pmin;
    int is0 = 0;
    while (is0 <= s->nstep) {
        const __m256 isv = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32(is0), lanes));
        const __m256 num = _mm256_add_ps(_mm256_add_ps(_mm256_set1_ps(s->rmin), _mm256_mul_ps(_mm256_set1_ps(s->rdelta), isv)), fnmax);
        const __m256 iscale = _mm256_div_ps(num, _mm256_set1_ps(s->max - min));
        __m256 sl = zero, sl2 = zero, sxl = zero;
        for (int i = 0; i < n; i++) {
            const __m256 v = _mm256_mul_ps(iscale, _mm256_set1_ps(x[i] - min));
            __m256i l;
            if (s->qkx3) { /* v > 0 ? round(v < nmax ? v : nmax) : 0 */
                const __m256 r = _mm256_add_ps(_mm256_min_ps(v, fnmax), magic);
                l = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(r), mant), half);
                l = _mm256_and_si256(l, _mm256_castps_si256(_mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
            } else { /* clamp(round(v), 0, nmax) */
                const __m256 r = _mm256_add_ps(v, magic);
                l = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(r), mant), half);
                l = _mm256_min_epi32(_mm256_max_epi32(l, izero), inmax);
            }
            _mm256_storeu_si256((__m256i *)codes[i], l);
            const __m256 lf = _mm256_cvtepi32_ps(l), wl = _mm256_mul_ps(_mm256_set1_ps(w[i]), lf);
            sl = _mm256_add_ps(sl, wl);
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(wl, lf));
            sxl = _mm256_add_ps(sxl, _mm256_mul_ps(wl, _mm256_set1_ps(x[i])));
        }
        const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sw, sl2), _mm256_mul_ps(sl, sl));
        __m256 ts = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sw, sxl), _mm256_mul_ps(sx, sl)), D);
        __m256 tm = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sl2, sx), _mm256_mul_ps(sl, sxl)), D);
        const __m256 pos = _mm256_cmp_ps(tm, zero, _CMP_GT_OQ);
        ts = _mm256_blendv_ps(ts, _mm256_div_ps(sxl, sl2), pos);
        tm = _mm256_blendv_ps(tm, zero, pos);
        __m256 err = zero;
        for (int i = 0; i < n; i++) {
            const __m256 lf = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)codes[i]));
            __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(ts, lf), tm), _mm256_set1_ps(x[i]));
            diff = s->use_mad ? _mm256_and_ps(diff, absmask) : _mm256_mul_ps(diff, diff);
            err = _mm256_add_ps(err, _mm256_mul_ps(_mm256_set1_ps(w[i]), diff));
        }
        _mm256_storeu_ps(vD, D);
        _mm256_storeu_ps(vs, ts);
        _mm256_storeu_ps(vm, tm);
        _mm256_storeu_ps(ve, err);
        int next = is0 + 8;
        for (int k = 0; k < 8 && is0 + k <= s->nstep; k++) {
            if (!(vD[k] > 0) || !(ve[k] < *best_error)) continue;
            *best_error = ve[k];
            *scale = vs[k];
            min = vm[k];
            for (int i = 0; i < n; i++) L[i] = (uint8_t)codes[i][k];
            next = is0 + k + 1;
            break;
        }
        is0 = next;
    }
    *pmin = min;
}

#undef ST
#undef LD

static const lb_cpu_kernels SFX(KERNELS) = {
    .unpack = {[LB_TYPE_Q4_0] = SFX(unpack_q4_0), [LB_TYPE_Q4_1] = SFX(unpack_q4_1), [LB_TYPE_Q5_0] = SFX(unpack_q5_0),
               [LB_TYPE_Q5_1] = SFX(unpack_q5_1), [LB_TYPE_Q8_0] = SFX(unpack_q8_0), [LB_TYPE_Q2_K] = SFX(unpack_q2_K),
               [LB_TYPE_Q3_K] = SFX(unpack_q3_K), [LB_TYPE_Q4_K] = SFX(unpack_q4_K), [LB_TYPE_Q5_K] = SFX(unpack_q5_K),
               [LB_TYPE_Q6_K] = SFX(unpack_q6_K), [LB_TYPE_IQ4_NL] = SFX(unpack_iq4_nl),
               [LB_TYPE_IQ4_XS] = SFX(unpack_iq4_xs)},
    .gemvr = {[LB_TYPE_Q4_0] = SFX(gemvr_q4_0), [LB_TYPE_Q8_0] = SFX(gemvr_q8_0), [LB_TYPE_Q4_K] = SFX(gemvr_q4_K),
              [LB_TYPE_Q6_K] = SFX(gemvr_q6_K), [LB_TYPE_Q4_1] = SFX(gemvr_q4_1), [LB_TYPE_Q5_0] = SFX(gemvr_q5_0),
              [LB_TYPE_Q5_1] = SFX(gemvr_q5_1), [LB_TYPE_IQ4_NL] = SFX(gemvr_iq4_nl), [LB_TYPE_Q5_K] = SFX(gemvr_q5_K),
              [LB_TYPE_Q2_K] = SFX(gemvr_q2_K), [LB_TYPE_Q3_K] = SFX(gemvr_q3_K), [LB_TYPE_IQ4_XS] = SFX(gemvr_iq4_xs)},
    .qdot = SFX(qdot),
    .actq = SFX(actq),
    .ftile = SFX(ftile),
    .fgemv = SFX(fgemv),
    .fconv = SFX(fconv),
    .vdots = SFX(vdots),
    .vwsum = SFX(vwsum),
    .vdotsq = SFX(vdotsq),
    .vwsumq = SFX(vwsumq),
    .vdots_h = SFX(vdots_h),
    .vwsum_h = SFX(vwsum_h),
    .vdotsq_h = SFX(vdotsq_h),
    .vwsumq_h = SFX(vwsumq_h),
    .softmax = SFX(softmax),
    .swiglu = SFX(swiglu),
    .vexp = SFX(vexp),
    .qkx = SFX(qkx),
};
