/*
 * x86_avx512.c - the CPU kernels with AVX-512 VNNI (AVX512F/VL/BW + VNNI): the template of x86_avx2.c with
 * vpdpbusd for the 4-byte integer dot product, plus kernels of their own: one-token products four rows at a
 * time, the many-token product on interleaved 16-row tiles (a 512-bit lane per row), and the float-weight
 * product on row pairs. Float partials keep the layout of cpu.h (8 per row for float weights, one per row
 * and token for quantized ones), so every kernel gives the reference's bits.
 */
#include "cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define TGT __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))
#define SFX(name) name##_avx512vnni
#define DOT32(acc, u, s) (acc) = _mm256_dpbusd_epi32((acc), (u), (s))
#include "x86_tmpl.h"

/*
 * One-token q4_K and q6_K products and four-token products of every 256-element type on 512-bit vectors: a register holds two 32-element chunks, the integer
 * lanes of the two halves are added at the end of each block, so the 8 lanes and every float step are
 * those of cpu.h (the integers are exact in any grouping).
 */

/* int16 scale of each 16-element group for the 64 elements of chunk pair P (groups 4P .. 4P+3) */
TGT static inline __m512i scale_pair(__m512i sc16, int P) {
    const __m512i idx = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
                                         0, 0, 0, 0);
    return _mm512_permutexvar_epi16(_mm512_add_epi16(idx, _mm512_set1_epi16((short)(4 * P))), sc16);
}

TGT static inline __m256i fold_lanes(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

TGT static inline __m512i pair(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

TGT static float gemv_q4_K_z(const void *row, int64_t K, const lb_act *a) {
    const block_q4_K *x = row;
    float acc = 0.0f;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t b = 0; b < K / QK_K; b++) {
        __m256i sc, mn16;
        k4_scales_v_avx512vnni(x[b].scales, &sc, &mn16);
        __m512i sc16 = _mm512_castsi256_si512(sc), iacc = _mm512_setzero_si512();
        const int8_t *ab = a->q + QK_K * b;
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * c));
            __m512i w = pair(_mm256_and_si256(v, m4), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
            __m512i p = _mm512_maddubs_epi16(w, _mm512_loadu_si512(ab + 64 * c));
            iacc = _mm512_add_epi32(iacc, _mm512_madd_epi16(p, scale_pair(sc16, c)));
        }
        acc = fmaf(h2f_avx512vnni(x[b].d) * a->d[b], (float)_mm512_reduce_add_epi32(iacc), acc);
        int32_t M = hsumi_avx512vnni(_mm256_madd_epi16(mn16, _mm256_loadu_si256((const __m256i *)(a->bsum + 16 * b))));
        acc = fmaf(-h2f_avx512vnni(x[b].dmin) * a->d[b], (float)M, acc);
    }
    return acc;
}

TGT static float gemv_q6_K_z(const void *row, int64_t K, const lb_act *a) {
    const block_q6_K *x = row;
    float acc = 0.0f;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    const __m512i off = _mm512_set1_epi8(32);
    for (int64_t b = 0; b < K / QK_K; b++) {
        __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[b].scales)));
        __m512i iacc = _mm512_setzero_si512();
        const int8_t *ab = a->q + QK_K * b;
        for (int h = 0; h < 2; h++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(x[b].ql + 64 * h));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(x[b].ql + 64 * h + 32));
            __m256i hv = _mm256_loadu_si256((const __m256i *)(x[b].qh + 32 * h));
            __m256i c0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m2));
            __m256i c1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m2));
            __m256i c2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hv, m2));
            __m256i c3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(hv, 2), m2));
            __m512i w[2] = {_mm512_sub_epi8(pair(c0, c1), off), _mm512_sub_epi8(pair(c2, c3), off)};
            for (int k = 0; k < 2; k++) {
                __m512i av = _mm512_loadu_si512(ab + 128 * h + 64 * k);
                __mmask64 neg = _mm512_movepi8_mask(w[k]);
                __m512i sa = _mm512_mask_sub_epi8(av, neg, _mm512_setzero_si512(), av);
                __m512i p = _mm512_maddubs_epi16(_mm512_abs_epi8(w[k]), sa);
                iacc = _mm512_add_epi32(iacc, _mm512_madd_epi16(p, scale_pair(sc16, 2 * h + k)));
            }
        }
        acc = fmaf(h2f_avx512vnni(x[b].d) * a->d[b], (float)_mm512_reduce_add_epi32(iacc), acc);
    }
    return acc;
}

/* Four tokens against one unpacked row of a 256-element type, two chunks per register (UNS: codes >= 0). */
__attribute__((always_inline)) TGT static inline void qdot4_z(const lb_qrow *w, const lb_act *a, int64_t K, float *out,
                                                             int64_t ldo, const int UNS) {
    __m128 acc4 = _mm_setzero_ps();
    for (int64_t b = 0; b < K / QK_K; b++) {
        __m512i sc16 = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(w->sc + 16 * b)));
        __m512i iacc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma GCC unroll 1
        for (int P = 0; P < 4; P++) {
            int64_t e = QK_K * b + 64 * P;
            __m512i wq = _mm512_loadu_si512(w->q + e), uw = UNS ? wq : _mm512_abs_epi8(wq), scv = scale_pair(sc16, P);
            __mmask64 neg = UNS ? 0 : _mm512_movepi8_mask(wq);
            for (int t = 0; t < 4; t++) {
                __m512i av = _mm512_loadu_si512(a[t].q + e);
                __m512i sa = UNS ? av : _mm512_mask_sub_epi8(av, neg, _mm512_setzero_si512(), av);
                iacc[t] = _mm512_add_epi32(iacc[t], _mm512_madd_epi16(_mm512_maddubs_epi16(uw, sa), scv));
            }
        }
        __m128 ad = _mm_set_ps(a[3].d[b], a[2].d[b], a[1].d[b], a[0].d[b]);
        __m256i f[4] = {fold_lanes(iacc[0]), fold_lanes(iacc[1]), fold_lanes(iacc[2]), fold_lanes(iacc[3])};
        acc4 = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(w->d[b]), ad), _mm_cvtepi32_ps(hsum4i_avx512vnni(f)), acc4);
        if (UNS)
            acc4 = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(w->dm[b]), ad), _mm_cvtepi32_ps(minsum4_avx512vnni(w, a, b, QK_K)), acc4);
    }
    float acc[4];
    _mm_storeu_ps(acc, acc4);
    for (int t = 0; t < 4; t++) out[t * ldo] = acc[t];
}

TGT static void qdot4_z_u(const lb_qrow *w, const lb_act *a, int64_t K, float *out, int64_t ldo) { qdot4_z(w, a, K, out, ldo, 1); }
TGT static void qdot4_z_s(const lb_qrow *w, const lb_act *a, int64_t K, float *out, int64_t ldo) { qdot4_z(w, a, K, out, ldo, 0); }

TGT static void qdot_z(const lb_qrow *w, const lb_act *a, int nt, int64_t K, int64_t be, bool has_min, float *out,
                       int64_t ldo) {
    if (nt == 4 && be == QK_K) (has_min ? qdot4_z_u : qdot4_z_s)(w, a, K, out, ldo);
    else qdot_avx512vnni(w, a, nt, K, be, has_min, out, ldo);
}

/* ---------------------------------------------------------------- one token, four rows at a time ------ */
/* Four rows share the activation loads; their exact block sums are reduced together and the float steps of
 * cpu.h run with one row per lane (rows past R repeat row 0 and are not stored). */

TGT static inline __m128 h2f4(uint16_t a, uint16_t b, uint16_t c, uint16_t d) {
    return _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, (short)d, (short)c, (short)b, (short)a));
}

TGT static inline void store_rows(float *out, int n, __m128 v) {
    float t[4];
    _mm_storeu_ps(t, v);
    for (int i = 0; i < n; i++) out[i] = t[i];
}

#define ROWS4(T, rows, rb, R, r0, x)                                                                        \
    const T *x[4];                                                                                          \
    for (int i_ = 0; i_ < 4; i_++) x[i_] = (const T *)((rows) + (size_t)((r0) + i_ < (R) ? (r0) + i_ : (r0)) * (rb))

/* lb_prefetch_block for each of the four rows */
#define PREFETCH_BLOCK(x, b, rb)                                                                            \
    for (int i_ = 0; i_ < 4; i_++) lb_prefetch_block(x[i_], b, sizeof x[0][0], rb, 4)

/* q4_0 and q8_0: the codes unsigned (nibble = q + 8; q ^ 0x80 = q + 128) by vpdpbusd, less off * sum(a) */
TGT static void gemvr_q4_0_z(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    for (int r0 = 0; r0 < R; r0 += 4) {
        ROWS4(block_q4_0, rows, rb, R, r0, x);
        __m128 acc = _mm_setzero_ps();
        for (int64_t b = 0; b < K / 32; b++) {
            PREFETCH_BLOCK(x, b, rb);
            __m256i av = _mm256_load_si256((const __m256i *)(a->q + 32 * b)), U[4];
            for (int i = 0; i < 4; i++) U[i] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles_avx512vnni(x[i][b].qs), av);
            __m128i S = _mm_sub_epi32(hsum4i_avx512vnni(U), _mm_set1_epi32(8 * (a->bsum[2 * b] + a->bsum[2 * b + 1])));
            __m128 d = h2f4(x[0][b].d, x[1][b].d, x[2][b].d, x[3][b].d);
            acc = _mm_fmadd_ps(_mm_mul_ps(d, _mm_set1_ps(a->d[b])), _mm_cvtepi32_ps(S), acc);
        }
        store_rows(out + r0, R - r0 < 4 ? R - r0 : 4, acc);
    }
}

TGT static void gemvr_q8_0_z(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int r0 = 0; r0 < R; r0 += 4) {
        ROWS4(block_q8_0, rows, rb, R, r0, x);
        __m128 acc = _mm_setzero_ps();
        for (int64_t b = 0; b < K / 32; b++) {
            PREFETCH_BLOCK(x, b, rb);
            __m256i av = _mm256_load_si256((const __m256i *)(a->q + 32 * b)), U[4];
            for (int i = 0; i < 4; i++)
                U[i] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)x[i][b].qs), flip), av);
            __m128i S = _mm_sub_epi32(hsum4i_avx512vnni(U), _mm_set1_epi32(128 * (a->bsum[2 * b] + a->bsum[2 * b + 1])));
            __m128 d = h2f4(x[0][b].d, x[1][b].d, x[2][b].d, x[3][b].d);
            acc = _mm_fmadd_ps(_mm_mul_ps(d, _mm_set1_ps(a->d[b])), _mm_cvtepi32_ps(S), acc);
        }
        store_rows(out + r0, R - r0 < 4 ? R - r0 : 4, acc);
    }
}

/* q4_K: one row's block: the scaled code sums (8 lanes) and the min products (8 lanes) */
TGT static inline void q4_K_block(const block_q4_K *x, const int8_t *ab, const int16_t *bs, __m256i *S, __m256i *M) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i sc, mn16;
    k4_scales_v_avx512vnni(x->scales, &sc, &mn16);
    __m512i sc16 = _mm512_castsi256_si512(sc), iacc = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * c));
        __m512i w = pair(_mm256_and_si256(v, m4), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
        __m512i p = _mm512_maddubs_epi16(w, _mm512_load_si512(ab + 64 * c));
        iacc = _mm512_add_epi32(iacc, _mm512_madd_epi16(p, scale_pair(sc16, c)));
    }
    *S = fold_lanes(iacc);
    *M = _mm256_madd_epi16(mn16, _mm256_load_si256((const __m256i *)bs));
}

TGT static void gemvr_q4_K_z(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    for (int r0 = 0; r0 < R; r0 += 4) {
        ROWS4(block_q4_K, rows, rb, R, r0, x);
        __m128 acc = _mm_setzero_ps();
        for (int64_t b = 0; b < K / QK_K; b++) {
            PREFETCH_BLOCK(x, b, rb);
            __m256i S[4], M[4];
            for (int i = 0; i < 4; i++) q4_K_block(&x[i][b], a->q + QK_K * b, a->bsum + 16 * b, &S[i], &M[i]);
            __m128 da = _mm_set1_ps(a->d[b]);
            __m128 d = h2f4(x[0][b].d, x[1][b].d, x[2][b].d, x[3][b].d);
            __m128 dm = _mm_xor_ps(h2f4(x[0][b].dmin, x[1][b].dmin, x[2][b].dmin, x[3][b].dmin), _mm_set1_ps(-0.0f));
            acc = _mm_fmadd_ps(_mm_mul_ps(d, da), _mm_cvtepi32_ps(hsum4i_avx512vnni(S)), acc);
            acc = _mm_fmadd_ps(_mm_mul_ps(dm, da), _mm_cvtepi32_ps(hsum4i_avx512vnni(M)), acc);
        }
        store_rows(out + r0, R - r0 < 4 ? R - r0 : 4, acc);
    }
}

/* q6_K: one row's block, codes q + 32 (0..63) unsigned against the activations, less 32 * sum sc * bsum */
TGT static inline __m256i q6_K_block(const block_q6_K *x, const int8_t *ab, const int16_t *bs) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    __m512i sc16 = _mm512_castsi256_si512(sc), iacc = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
        __m256i hv = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
        __m256i c0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m2));
        __m256i c1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m2));
        __m256i c2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hv, m2));
        __m256i c3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hv, 2), m2));
        __m512i p0 = _mm512_maddubs_epi16(pair(c0, c1), _mm512_load_si512(ab + 128 * h));
        __m512i p1 = _mm512_maddubs_epi16(pair(c2, c3), _mm512_load_si512(ab + 128 * h + 64));
        iacc = _mm512_add_epi32(iacc, _mm512_madd_epi16(p0, scale_pair(sc16, 2 * h)));
        iacc = _mm512_add_epi32(iacc, _mm512_madd_epi16(p1, scale_pair(sc16, 2 * h + 1)));
    }
    __m256i corr = _mm256_madd_epi16(sc, _mm256_load_si256((const __m256i *)bs)); /* sum sc * bsum, 8 lanes */
    return _mm256_sub_epi32(fold_lanes(iacc), _mm256_slli_epi32(corr, 5));
}

TGT static void gemvr_q6_K_z(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    for (int r0 = 0; r0 < R; r0 += 4) {
        ROWS4(block_q6_K, rows, rb, R, r0, x);
        __m128 acc = _mm_setzero_ps();
        for (int64_t b = 0; b < K / QK_K; b++) {
            PREFETCH_BLOCK(x, b, rb);
            __m256i S[4];
            for (int i = 0; i < 4; i++) S[i] = q6_K_block(&x[i][b], a->q + QK_K * b, a->bsum + 16 * b);
            __m128 d = h2f4(x[0][b].d, x[1][b].d, x[2][b].d, x[3][b].d);
            acc = _mm_fmadd_ps(_mm_mul_ps(d, _mm_set1_ps(a->d[b])), _mm_cvtepi32_ps(hsum4i_avx512vnni(S)), acc);
        }
        store_rows(out + r0, R - r0 < 4 ? R - r0 : 4, acc);
    }
}

/* ---------------------------------------------------------------- many tokens: interleaved tiles ------ */

/* the 4 bytes at p as one int32 in every lane */
TGT static inline __m512i bcast4(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/*
 * NT tokens against a 16-row tile (lane r = row r): per block, S = the exact integer sums (vpdpbusd of the
 * unsigned codes and the signed activations, times the group scales, minus 128 * sum sc * bsum for the
 * types stored with an offset), then the block's float steps of cpu.h in every lane at once.
 */
__attribute__((always_inline)) TGT static inline void qgemm_nt(const lb_qtile *w, const lb_act *a, int64_t K, __mmask16 mask,
                                                              float *out, int64_t ldo, const int NT, const int BE, const int SG,
                                                              const int MIN) {
    __m512 F[8];
    __m512i S[8], P[8];
    const __m512i *u = (const __m512i *)w->u;
    for (int t = 0; t < NT; t++) F[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < K / BE; b++) {
        for (int t = 0; t < NT; t++) S[t] = _mm512_setzero_si512();
        if (BE == 32) {
            for (int s = 0; s < 8; s++) {
                __m512i wv = _mm512_load_si512(u + 8 * b + s);
                for (int t = 0; t < NT; t++) S[t] = _mm512_dpbusd_epi32(S[t], wv, bcast4(a[t].q + 32 * b + 4 * s));
            }
        } else {
#ifndef __SANITIZE_ADDRESS__ /* GCC with ASan drops this loop's annotation with a warning (an error under -Werror) */
#pragma GCC unroll 1
#endif
            for (int j = 0; j < BE / SG; j++) {
                int64_t e = BE * b + SG * j;
                for (int t = 0; t < NT; t++) P[t] = _mm512_setzero_si512();
                for (int s = 0; s < SG / 4; s++) {
                    __m512i wv = _mm512_load_si512(u + e / 4 + s);
                    for (int t = 0; t < NT; t++) P[t] = _mm512_dpbusd_epi32(P[t], wv, bcast4(a[t].q + e + 4 * s));
                }
                __m512i scv = _mm512_load_si512(w->sc + 16 * (e / SG));
                for (int t = 0; t < NT; t++) S[t] = _mm512_add_epi32(S[t], _mm512_mullo_epi32(P[t], scv));
            }
        }
        if (!MIN) { /* the codes' offset: S -= 128 * sum_g sc[g] * bsum[g] */
            for (int t = 0; t < NT; t++) P[t] = _mm512_setzero_si512();
            for (int p = 0; p < BE / 32; p++) {
                int64_t g = BE / 32 * b + p;
                __m512i gv = _mm512_load_si512(w->gsc + 16 * g);
                for (int t = 0; t < NT; t++) P[t] = _mm512_dpwssd_epi32(P[t], gv, bcast4(a[t].bsum + 2 * g));
            }
            for (int t = 0; t < NT; t++) S[t] = _mm512_sub_epi32(S[t], _mm512_slli_epi32(P[t], 7));
        }
        __m512 dv = _mm512_load_ps(w->d + 16 * b);
        for (int t = 0; t < NT; t++)
            F[t] = _mm512_fmadd_ps(_mm512_mul_ps(dv, _mm512_set1_ps(a[t].d[b])), _mm512_cvtepi32_ps(S[t]), F[t]);
        if (MIN) {
            for (int t = 0; t < NT; t++) P[t] = _mm512_setzero_si512();
            for (int p = 0; p < BE / 32; p++) {
                int64_t g = BE / 32 * b + p;
                __m512i gv = _mm512_load_si512(w->gmn + 16 * g);
                for (int t = 0; t < NT; t++) P[t] = _mm512_dpwssd_epi32(P[t], gv, bcast4(a[t].bsum + 2 * g));
            }
            __m512 dmv = _mm512_load_ps(w->dm + 16 * b);
            for (int t = 0; t < NT; t++)
                F[t] = _mm512_fmadd_ps(_mm512_mul_ps(dmv, _mm512_set1_ps(a[t].d[b])), _mm512_cvtepi32_ps(P[t]), F[t]);
        }
    }
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(out + t * ldo, mask, F[t]);
}

typedef void (*qgemm_fn)(const lb_qtile *, const lb_act *, int64_t, __mmask16, float *, int64_t);
#define QGEMM_INST(NT, BE, SG, MIN)                                                                         \
    TGT static void qgemm_##NT##_##BE##_##SG##_##MIN(const lb_qtile *w, const lb_act *a, int64_t K, __mmask16 m, float *out, \
                                                    int64_t ldo) {                                            \
        qgemm_nt(w, a, K, m, out, ldo, NT, BE, SG, MIN);                                                    \
    }
#define QGEMM_NTS(BE, SG, MIN) QGEMM_INST(8, BE, SG, MIN) QGEMM_INST(4, BE, SG, MIN) QGEMM_INST(2, BE, SG, MIN) QGEMM_INST(1, BE, SG, MIN)
QGEMM_NTS(32, 32, 0)
QGEMM_NTS(32, 32, 1)
QGEMM_NTS(256, 16, 0)
QGEMM_NTS(256, 16, 1)
QGEMM_NTS(256, 32, 0)
QGEMM_NTS(256, 32, 1)
#define QGEMM_ROW(BE, SG, MIN) {qgemm_8_##BE##_##SG##_##MIN, qgemm_4_##BE##_##SG##_##MIN, qgemm_2_##BE##_##SG##_##MIN, qgemm_1_##BE##_##SG##_##MIN}

TGT static void qgemm_z(const lb_qtile *w, int R, const uint8_t *act, size_t act_stride, int64_t T, int64_t K, int64_t be,
                        float *out, int64_t ldo) {
    static const qgemm_fn fns[6][4] = {QGEMM_ROW(32, 32, 0),  QGEMM_ROW(32, 32, 1),  QGEMM_ROW(256, 16, 0),
                                       QGEMM_ROW(256, 16, 1), QGEMM_ROW(256, 32, 0), QGEMM_ROW(256, 32, 1)};
    const qgemm_fn *f = fns[(be == 256 ? (w->sg == 16 ? 2 : 4) : 0) + (w->has_min ? 1 : 0)];
    __mmask16 mask = (__mmask16)((1u << R) - 1);
    for (int64_t t = 0; t < T;) {
        int n = T - t >= 8 ? 8 : T - t >= 4 ? 4 : T - t >= 2 ? 2 : 1;
        lb_act a[8];
        for (int i = 0; i < n; i++) a[i] = lb_act_at((void *)(act + (size_t)(t + i) * act_stride), K, be);
        f[n == 8 ? 0 : n == 4 ? 1 : n == 2 ? 2 : 3](w, a, K, mask, out + t * ldo, ldo);
        t += n;
    }
}

/* ---------------------------------------------------------------- many tokens: float weights ---------- */

/*
 * The tile: rows in pairs, each 8-element step of a pair one 512-bit vector (row 2i's elements k..k+7, then
 * row 2i+1's), so that one fma updates the 8 partials of two rows; the K % 8 last elements of each row
 * follow at tail (16 rows of K % 8).
 */
TGT static void ftile_pack(const lb_weight *w, int64_t r0, int R, float *tile) {
    int64_t K = w->cols, K8 = K - K % 8;
    float *tail = tile + 16 * K8;
    for (int r = 0; r < 16; r++) {
        float *dst = tile + (int64_t)(r / 2) * 2 * K8 + 8 * (r % 2);
        if (r >= R) {
            for (int64_t k = 0; k < K8; k += 8) _mm256_store_ps(dst + 2 * k, _mm256_setzero_ps());
            for (int64_t k = K8; k < K; k++) tail[r * (K - K8) + k - K8] = 0.0f;
            continue;
        }
        const uint16_t *h = (const uint16_t *)w->data + (r0 + r) * K;
        const float *f = (const float *)w->data + (r0 + r) * K;
        for (int64_t k = 0; k < K8; k += 8) {
            __m256 v;
            if (w->type == LB_TYPE_F16) v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + k)));
            else if (w->type == LB_TYPE_BF16)
                v = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + k))), 16));
            else v = _mm256_loadu_ps(f + k);
            _mm256_store_ps(dst + 2 * k, v);
        }
        for (int64_t k = K8; k < K; k++)
            tail[r * (K - K8) + k - K8] = w->type == LB_TYPE_F16    ? h2f_avx512vnni(h[k])
                                          : w->type == LB_TYPE_BF16 ? lb_bf16_to_f32(h[k])
                                                                    : f[k];
    }
}

/* the canonical reduction of the two 8-partial halves of v: (half 0, half 1) */
TGT static inline __m128 reduce_pair(__m512 v) {
    __m256 a = _mm512_castps512_ps256(v), b = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)); /* s0..s3 | s0'..s3' */
    __m256 e = _mm256_add_ps(s, _mm256_permute_ps(s, 0x4E));                                        /* s0+s2, s1+s3 */
    __m256 r = _mm256_add_ps(e, _mm256_permute_ps(e, 0xB1));                                        /* (s0+s2)+(s1+s3) */
    return _mm_unpacklo_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
}

/* 8 rows (4 pairs) x NT tokens over the first K8 elements, then the tree and the tail (R8 rows stored) */
__attribute__((always_inline)) TGT static inline void fgemm_nt(const float *tile, const float *tail, int64_t K, const float *x,
                                                              int R8, float *out, int64_t ldo, const int NT) {
    int64_t K8 = K - K % 8;
    __m512 acc[4][6];
    for (int p = 0; p < 4; p++)
        for (int t = 0; t < NT; t++) acc[p][t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K8; k += 8) {
        __m512 xv[6];
        for (int t = 0; t < NT; t++) xv[t] = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd((const double *)(x + t * K + k))));
        for (int p = 0; p < 4; p++) {
            __m512 wv = _mm512_load_ps(tile + p * 2 * K8 + 2 * k);
            for (int t = 0; t < NT; t++) acc[p][t] = _mm512_fmadd_ps(xv[t], wv, acc[p][t]);
        }
    }
    for (int p = 0; p < 4; p++)
        for (int t = 0; t < NT; t++) {
            float s2[4];
            _mm_storeu_ps(s2, reduce_pair(acc[p][t]));
            for (int h = 0; h < 2; h++) {
                int r = 2 * p + h;
                if (r >= R8) continue;
                float v = s2[h];
                for (int64_t k = K8; k < K; k++) v = fmaf(x[t * K + k], tail[r * (K - K8) + k - K8], v);
                out[t * ldo + r] = v;
            }
        }
}

#define FGEMM_INST(NT)                                                                                      \
    TGT static void fgemm_##NT(const float *tile, const float *tail, int64_t K, const float *x, int R8, float *out, \
                               int64_t ldo) {                                                               \
        fgemm_nt(tile, tail, K, x, R8, out, ldo, NT);                                                       \
    }
FGEMM_INST(6)
FGEMM_INST(5)
FGEMM_INST(4)
FGEMM_INST(3)
FGEMM_INST(2)
FGEMM_INST(1)

TGT static void fgemm_z(const lb_weight *w, int64_t r0, int R, const float *x, int64_t T, float *out, int64_t ldo, void *slot) {
    static void (*const fns[7])(const float *, const float *, int64_t, const float *, int, float *, int64_t) = {
        NULL, fgemm_1, fgemm_2, fgemm_3, fgemm_4, fgemm_5, fgemm_6};
    int64_t K = w->cols, K8 = K - K % 8;
    float *tile = slot;
    ftile_pack(w, r0, R, tile);
    for (int64_t t = 0; t < T; t += 6) {
        int nt = T - t < 6 ? (int)(T - t) : 6;
        for (int g = 0; g < R; g += 8) /* rows g..g+7: pairs from g / 2, tails from row g */
            fns[nt](tile + (int64_t)(g / 2) * 2 * K8, tile + 16 * K8 + g * (K - K8), K, x + t * K, R - g < 8 ? R - g : 8,
                    out + t * ldo + g, ldo);
    }
}

const lb_cpu_kernels *lb_cpu_kernels_avx512vnni(void) {
    static lb_cpu_kernels k;
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !lb_cpu_has_f16c() ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vnni"))
        return NULL;
    if (!k.name) {
        lb_cpu_kernels t = KERNELS_avx512vnni;
        t.name = "avx512vnni";
        t.gemv1[LB_TYPE_Q4_K] = gemv_q4_K_z;
        t.gemv1[LB_TYPE_Q6_K] = gemv_q6_K_z;
        t.gemvr[LB_TYPE_Q4_0] = gemvr_q4_0_z;
        t.gemvr[LB_TYPE_Q8_0] = gemvr_q8_0_z;
        t.gemvr[LB_TYPE_Q4_K] = gemvr_q4_K_z;
        t.gemvr[LB_TYPE_Q6_K] = gemvr_q6_K_z;
        t.qdot = qdot_z;
        t.qgemm = qgemm_z;
        t.fgemm = fgemm_z;
        k = t;
    }
    return &k;
}
#else
const lb_cpu_kernels *lb_cpu_kernels_avx512vnni(void) { return NULL; }
#endif
