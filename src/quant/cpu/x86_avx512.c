/*
 * x86_avx512.c - the CPU kernels with AVX-512 VNNI (AVX512F/VL/BW + VNNI): the template of x86_avx2.c with
 * vpdpbusd for the 4-byte integer dot product, plus kernels of their own: one-token products four rows at a
 * time, the many-token product on interleaved 16-row tiles (a 512-bit lane per row), and the float-weight
 * product on row pairs. Float partials keep the layout of cpu.h (8 per row for float weights, one per row
 * and token for quantized ones), so every kernel gives the reference's bits.
 */
#include "cpu.h"

#include <pthread.h>

#include <stddef.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define TGT __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))
#define SFX(name) name##_avx512vnni
#define DOT32(acc, u, s) (acc) = _mm256_dpbusd_epi32((acc), (u), (s))
#include "x86_tmpl.h"

/*
 * Four-token products of every 256-element type on 512-bit vectors: a register holds two 32-element chunks,
 * the integer lanes of the two halves are added at the end of each block, so the 8 lanes and every float step
 * are those of cpu.h (the integers are exact in any grouping).
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

/* the first n <= 4 lanes of v to out (a masked store: a copy loop here became a libc memcpy call per four rows) */
TGT static inline void store_rows(float *out, int n, __m128 v) { _mm_mask_storeu_ps(out, (__mmask8)((1u << n) - 1), v); }

/* The exact sums of four rows' 512-bit vpdpbusd results, each holding two blocks: 128-bit lane k of row i's
 * vector belongs to block (k & 1) (q4_0's order below), or to block k / 2 when adjacent (q8_0's); returns (row 0..3 of the first block, row 0..3 of the
 * second). Integer sums: any order gives the same values. */
TGT static inline __m256i sum2blocks(const __m512i *U, const int adjacent) {
    __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(U[0], U[1]), _mm512_unpackhi_epi32(U[0], U[1]));
    __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(U[2], U[3]), _mm512_unpackhi_epi32(U[2], U[3]));
    __m512i t = _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23)); /* lane k: rows 0..3 */
    if (adjacent) t = _mm512_shuffle_i64x2(t, t, _MM_SHUFFLE(3, 1, 2, 0)); /* blocks in lanes (0, 1), (2, 3) */
    return _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64(t, 1)); /* lanes 0 + 2, 1 + 3 */
}

/* The float steps of blocks b and b + 1 of four rows (x[i]: row i's blocks of bs bytes, the fp16 scale at
 * byte 0) from their 512-bit vpdpbusd results U (lanes as sum2blocks reads them): S = the exact sums less
 * off times each block's activation sum, then acc = fma(d * da, S, acc) for block b, then for b + 1 (cpu.h). */
TGT static inline __m128 steps2blocks(const __m512i *U, int adjacent, int32_t off, const void *const *x, size_t bs,
                                      const lb_act *a, int64_t b, __m128 acc) {
    uint16_t h[8];
    for (int i = 0; i < 4; i++) {
        memcpy(&h[i], (const uint8_t *)x[i] + (size_t)b * bs, 2);
        memcpy(&h[4 + i], (const uint8_t *)x[i] + (size_t)(b + 1) * bs, 2);
    }
    __m256i o = _mm256_set_m128i(_mm_set1_epi32(off * (a->bsum[2 * b + 2] + a->bsum[2 * b + 3])),
                                 _mm_set1_epi32(off * (a->bsum[2 * b] + a->bsum[2 * b + 1])));
    __m256 S = _mm256_cvtepi32_ps(_mm256_sub_epi32(sum2blocks(U, adjacent), o));
    __m256 dd = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)),
                              _mm256_set_m128(_mm_set1_ps(a->d[b + 1]), _mm_set1_ps(a->d[b])));
    acc = _mm_fmadd_ps(_mm256_castps256_ps128(dd), _mm256_castps256_ps128(S), acc);
    return _mm_fmadd_ps(_mm256_extractf128_ps(dd, 1), _mm256_extractf128_ps(S, 1), acc);
}

/* q4_0 and q8_0: the codes unsigned (nibble = q + 8; q ^ 0x80 = q + 128) by vpdpbusd, less off * sum(a) */
_Static_assert(offsetof(block_q4_0, d) == 0 && offsetof(block_q8_0, d) == 0, "steps2blocks reads the scale at byte 0");

/* blocks b and b + 1 of four q4_0 rows against av (the activations' lanes in q4_0's order): acc's next two steps */
TGT static inline __m128 q4_0_pair(const block_q4_0 *const *x, const void *const *xv, __m512i av, const lb_act *a, int64_t b, __m128 acc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m512i U[4];
    for (int i = 0; i < 4; i++) {
        __m256i v = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)x[i][b + 1].qs), _mm_loadu_si128((const __m128i *)x[i][b].qs));
        __m512i c = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m4)), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), 1);
        U[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, av);
    }
    return steps2blocks(U, 0, 8, xv, sizeof(block_q4_0), a, b, acc);
}

/* block b of four q4_0 rows (an odd last block) */
TGT static inline __m128 q4_0_one(const block_q4_0 *const *x, const lb_act *a, int64_t b, __m128 acc) {
    __m256i av = _mm256_load_si256((const __m256i *)(a->q + 32 * b)), U[4];
    for (int i = 0; i < 4; i++) U[i] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles_avx512vnni(x[i][b].qs), av);
    __m128i S = _mm_sub_epi32(hsum4i_avx512vnni(U), _mm_set1_epi32(8 * (a->bsum[2 * b] + a->bsum[2 * b + 1])));
    __m128 d = h2f4(x[0][b].d, x[1][b].d, x[2][b].d, x[3][b].d);
    return _mm_fmadd_ps(_mm_mul_ps(d, _mm_set1_ps(a->d[b])), _mm_cvtepi32_ps(S), acc);
}

/* Eight rows at a time where there are eight (two groups of four, each with its accumulators' chain of fmas, so
 * that the two chains overlap), then four. */
TGT static void gemvr_q4_0_z(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    int r0 = 0;
    for (; r0 + 8 <= R; r0 += 8) {
        const block_q4_0 *x[8];
        for (int i = 0; i < 8; i++) x[i] = (const block_q4_0 *)(rows + (size_t)(r0 + i) * rb);
        const void *xa[4] = {x[0], x[1], x[2], x[3]}, *xb[4] = {x[4], x[5], x[6], x[7]};
        __m128 acc0 = _mm_setzero_ps(), acc1 = _mm_setzero_ps();
        int64_t b = 0;
        for (; b + 2 <= K / 32; b += 2) {
            for (int i = 0; i < 8; i++) {
                lb_prefetch_block(x[i], b, sizeof(block_q4_0), rb, 8);
                lb_prefetch_block(x[i], b + 1, sizeof(block_q4_0), rb, 8);
            }
            __m512i av = _mm512_loadu_si512((const __m512i *)(a->q + 32 * b));
            av = _mm512_shuffle_i64x2(av, av, _MM_SHUFFLE(3, 1, 2, 0));
            acc0 = q4_0_pair(x, xa, av, a, b, acc0);
            acc1 = q4_0_pair(x + 4, xb, av, a, b, acc1);
        }
        for (; b < K / 32; b++) {
            acc0 = q4_0_one(x, a, b, acc0);
            acc1 = q4_0_one(x + 4, a, b, acc1);
        }
        _mm_storeu_ps(out + r0, acc0);
        _mm_storeu_ps(out + r0 + 4, acc1);
    }
    for (; r0 < R; r0 += 4) {
        ROWS4(block_q4_0, rows, rb, R, r0, x);
        const void *xv[4] = {x[0], x[1], x[2], x[3]};
        __m128 acc = _mm_setzero_ps();
        int64_t b = 0;
        for (; b + 2 <= K / 32; b += 2) { /* two blocks per 512-bit vector: lanes (b lo, b+1 lo, b hi, b+1 hi) */
            PREFETCH_BLOCK(x, b, rb);
            PREFETCH_BLOCK(x, b + 1, rb);
            __m512i av = _mm512_loadu_si512((const __m512i *)(a->q + 32 * b));
            av = _mm512_shuffle_i64x2(av, av, _MM_SHUFFLE(3, 1, 2, 0));
            acc = q4_0_pair(x, xv, av, a, b, acc);
        }
        for (; b < K / 32; b++) {
            PREFETCH_BLOCK(x, b, rb);
            acc = q4_0_one(x, a, b, acc);
        }
        store_rows(out + r0, R - r0 < 4 ? R - r0 : 4, acc);
    }
}

TGT static void gemvr_q8_0_z(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int r0 = 0; r0 < R; r0 += 4) {
        ROWS4(block_q8_0, rows, rb, R, r0, x);
        const void *xv[4] = {x[0], x[1], x[2], x[3]};
        __m128 acc = _mm_setzero_ps();
        int64_t b = 0;
        for (; b + 2 <= K / 32; b += 2) { /* two blocks per 512-bit vector, in element order */
            PREFETCH_BLOCK(x, b, rb);
            PREFETCH_BLOCK(x, b + 1, rb);
            __m512i av = _mm512_loadu_si512((const __m512i *)(a->q + 32 * b)), U[4];
            const __m512i flip2 = _mm512_broadcast_i64x4(flip);
            for (int i = 0; i < 4; i++) {
                __m512i c = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x[i][b].qs)),
                                               _mm256_loadu_si256((const __m256i *)x[i][b + 1].qs), 1);
                U[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(c, flip2), av);
            }
            acc = steps2blocks(U, 1, 128, xv, sizeof(block_q8_0), a, b, acc);
        }
        for (; b < K / 32; b++) {
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

/* The other 32-element types (q4_1, q5_0, q5_1, iq4_nl) as q4_0 above: two blocks per 512-bit vector, the codes
 * unsigned (q + off) against the activations, then each block's float steps of cpu.h for four rows in lanes. */
enum { T32_Q4_1, T32_Q5_0, T32_Q5_1, T32_IQ4_NL };

/* the type's block: bytes, where its codes' nibbles and fifth bits are, whether it has a min (m, the fp16 after d),
 * and the offset added to make the codes unsigned */
#define T32_BS(T) ((T) == T32_Q4_1 ? sizeof(block_q4_1) : (T) == T32_Q5_0 ? sizeof(block_q5_0) : (T) == T32_Q5_1 ? sizeof(block_q5_1) : sizeof(block_iq4_nl))
#define T32_QS(T) ((T) == T32_Q4_1 ? offsetof(block_q4_1, qs) : (T) == T32_Q5_0 ? offsetof(block_q5_0, qs) : (T) == T32_Q5_1 ? offsetof(block_q5_1, qs) : offsetof(block_iq4_nl, qs))
#define T32_QH(T) ((T) == T32_Q5_0 ? offsetof(block_q5_0, qh) : offsetof(block_q5_1, qh))
#define T32_MIN(T) ((T) == T32_Q4_1 || (T) == T32_Q5_1)
#define T32_OFF(T) ((T) == T32_Q5_0 ? 16 : (T) == T32_IQ4_NL ? 128 : 0)
_Static_assert(offsetof(block_q4_1, m) == 2 && offsetof(block_q5_1, m) == 2 && offsetof(block_q5_0, d) == 0 &&
                   offsetof(block_iq4_nl, d) == 0, "the 32-element kernels read d at byte 0 and m at byte 2");

/* the signed code of element e of a block (the tail's scalar products) */
__attribute__((always_inline)) static inline int t32_code(const uint8_t *blk, int e, const int T) {
    const uint8_t q = blk[T32_QS(T) + e % 16];
    int v = e < 16 ? q & 0xF : q >> 4;
    if (T == T32_IQ4_NL) return kvalues_iq4nl[v];
    if (T == T32_Q5_0 || T == T32_Q5_1) {
        uint32_t h;
        memcpy(&h, blk + T32_QH(T), 4);
        v |= (int)((h >> e) & 1) << 4;
    }
    return v - (T == T32_Q5_0 ? 16 : 0);
}

__attribute__((always_inline)) TGT static inline void gemvr32_z(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out,
                                                               const int T) {
    const size_t bs = T32_BS(T);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)kvalues_iq4nl)), flip = _mm512_set1_epi8((char)0x80);
    for (int r0 = 0; r0 < R; r0 += 4) {
        const uint8_t *x[4];
        for (int i = 0; i < 4; i++) x[i] = rows + (size_t)(r0 + i < R ? r0 + i : r0) * rb;
        __m128 acc = _mm_setzero_ps();
        int64_t b = 0;
        for (; b + 2 <= K / 32; b += 2) { /* lanes (b lo, b+1 lo, b hi, b+1 hi), as gemvr_q4_0_z */
            for (int i = 0; i < 4; i++) {
                lb_prefetch_block(x[i], b, bs, rb, 4);
                lb_prefetch_block(x[i], b + 1, bs, rb, 4);
            }
            __m512i av = _mm512_loadu_si512((const __m512i *)(a->q + 32 * b));
            av = _mm512_shuffle_i64x2(av, av, _MM_SHUFFLE(3, 1, 2, 0));
            __m512i U[4];
            for (int i = 0; i < 4; i++) {
                const uint8_t *b0 = x[i] + (size_t)b * bs, *b1 = b0 + bs;
                __m256i v = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(b1 + T32_QS(T))), _mm_loadu_si128((const __m128i *)(b0 + T32_QS(T))));
                __m512i c = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m4)), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), 1);
                if (T == T32_IQ4_NL) c = _mm512_xor_si512(_mm512_shuffle_epi8(tbl, c), flip); /* value + 128 */
                if (T == T32_Q5_0 || T == T32_Q5_1) {
                    uint32_t h0, h1;
                    memcpy(&h0, b0 + T32_QH(T), 4);
                    memcpy(&h1, b1 + T32_QH(T), 4);
                    const __mmask64 hm = (uint64_t)(h0 & 0xFFFF) | (uint64_t)(h1 & 0xFFFF) << 16 | (uint64_t)(h0 >> 16) << 32 |
                                         (uint64_t)(h1 >> 16) << 48;
                    c = _mm512_or_si512(c, _mm512_maskz_mov_epi8(hm, _mm512_set1_epi8(0x10)));
                }
                U[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, av);
            }
            const int32_t s0 = (int32_t)a->bsum[2 * b] + a->bsum[2 * b + 1], s1 = (int32_t)a->bsum[2 * b + 2] + a->bsum[2 * b + 3];
            __m256i S = sum2blocks(U, 0);
            if (T32_OFF(T)) S = _mm256_sub_epi32(S, _mm256_set_m128i(_mm_set1_epi32(T32_OFF(T) * s1), _mm_set1_epi32(T32_OFF(T) * s0)));
            uint16_t h[8], hmn[8];
            for (int i = 0; i < 4; i++) {
                memcpy(&h[i], x[i] + (size_t)b * bs, 2);
                memcpy(&h[4 + i], x[i] + (size_t)(b + 1) * bs, 2);
                if (T32_MIN(T)) {
                    memcpy(&hmn[i], x[i] + (size_t)b * bs + 2, 2);
                    memcpy(&hmn[4 + i], x[i] + (size_t)(b + 1) * bs + 2, 2);
                }
            }
            const __m256 da = _mm256_set_m128(_mm_set1_ps(a->d[b + 1]), _mm_set1_ps(a->d[b]));
            const __m256 dd = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)), da);
            const __m256 Sf = _mm256_cvtepi32_ps(S);
            if (T32_MIN(T)) { /* block b: the codes' step, the min's; then block b + 1 */
                const __m256 dm = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)hmn)), da);
                acc = _mm_fmadd_ps(_mm256_castps256_ps128(dd), _mm256_castps256_ps128(Sf), acc);
                acc = _mm_fmadd_ps(_mm256_castps256_ps128(dm), _mm_set1_ps((float)s0), acc);
                acc = _mm_fmadd_ps(_mm256_extractf128_ps(dd, 1), _mm256_extractf128_ps(Sf, 1), acc);
                acc = _mm_fmadd_ps(_mm256_extractf128_ps(dm, 1), _mm_set1_ps((float)s1), acc);
            } else {
                acc = _mm_fmadd_ps(_mm256_castps256_ps128(dd), _mm256_castps256_ps128(Sf), acc);
                acc = _mm_fmadd_ps(_mm256_extractf128_ps(dd, 1), _mm256_extractf128_ps(Sf, 1), acc);
            }
        }
        for (; b < K / 32; b++) { /* an odd last block: scalar exact sums */
            int32_t S[4];
            float d[4], dm[4];
            for (int i = 0; i < 4; i++) {
                const uint8_t *blk = x[i] + (size_t)b * bs;
                int32_t sum = 0;
                for (int e = 0; e < 32; e++) sum += t32_code(blk, e, T) * a->q[32 * b + e];
                S[i] = sum;
                uint16_t hd, hm;
                memcpy(&hd, blk, 2);
                memcpy(&hm, blk + 2, 2);
                d[i] = lb_fp16_to_f32(hd);
                dm[i] = T32_MIN(T) ? lb_fp16_to_f32(hm) : 0.0f;
            }
            const __m128 da = _mm_set1_ps(a->d[b]);
            acc = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(d), da), _mm_cvtepi32_ps(_mm_loadu_si128((const __m128i *)S)), acc);
            if (T32_MIN(T))
                acc = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(dm), da), _mm_set1_ps((float)((int32_t)a->bsum[2 * b] + a->bsum[2 * b + 1])), acc);
        }
        store_rows(out + r0, R - r0 < 4 ? R - r0 : 4, acc);
    }
}

TGT static void gemvr_q4_1_z(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    gemvr32_z(rows, rb, R, K, a, out, T32_Q4_1);
}
TGT static void gemvr_q5_0_z(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    gemvr32_z(rows, rb, R, K, a, out, T32_Q5_0);
}
TGT static void gemvr_q5_1_z(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    gemvr32_z(rows, rb, R, K, a, out, T32_Q5_1);
}
TGT static void gemvr_iq4_nl_z(const uint8_t *rows, size_t rb, int R, int64_t K, const lb_act *a, float *out) {
    gemvr32_z(rows, rb, R, K, a, out, T32_IQ4_NL);
}

/* The 256-element types over four rows, two 32-element chunks per register, through x86_tmpl.h's GEMVR_256 (and
 * its code and scale helpers): a type's ZBLOCK(block, activations, their 16-element sums, *M) gives one row's
 * exact block sums (16 lanes to add; a code offset already taken off) and, for the types with a min term, the
 * min products *M (8 lanes to add). */

/* the lane sums of four rows' vectors, (row 0, 1, 2, 3): unpacks that keep every value in registers */
TGT static inline __m128i sum4x16(__m512i a, __m512i b, __m512i c, __m512i d) {
    __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    __m512i t = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd)); /* 128-bit lanes: rows 0..3 */
    __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64(t, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* iacc += the products of the 64 codes (lo, hi: elements 64c.., 64c + 32..; unsigned, small enough for pairs to fit
 * int16) with the activations of chunk c, times the groups' scales */
TGT static inline __m512i k_chunk_z(__m512i iacc, __m256i lo, __m256i hi, const int8_t *ab, __m512i sc16, int c) {
    const __m512i p = _mm512_maddubs_epi16(pair(lo, hi), _mm512_load_si512(ab + 64 * c));
    return _mm512_add_epi32(iacc, _mm512_madd_epi16(p, scale_pair(sc16, c)));
}

/* q4_K / q5_K (qh not NULL) */
TGT static inline __m512i k4_zblock(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, const int8_t *ab, const int16_t *bs,
                                    __m256i *M) {
    __m256i sc, mn16;
    k4_scales_v_avx512vnni(scales, &sc, &mn16);
    const __m512i sc16 = _mm512_castsi256_si512(sc);
    const __m256i hv = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m512i iacc = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {
        __m256i lo, hi;
        k4_chunk_avx512vnni(qs, hv, qh != NULL, c, &lo, &hi);
        iacc = k_chunk_z(iacc, lo, hi, ab, sc16, c);
    }
    *M = _mm256_madd_epi16(mn16, _mm256_load_si256((const __m256i *)bs));
    return iacc;
}
TGT static inline __m512i q4_K_zblock(const block_q4_K *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    return k4_zblock(x->scales, x->qs, NULL, ab, bs, M);
}
TGT static inline __m512i q5_K_zblock(const block_q5_K *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    return k4_zblock(x->scales, x->qs, x->qh, ab, bs, M);
}

/* q2_K / q3_K (hmask not NULL: the codes + 4): the code sums times the 16 groups' scales sc */
TGT static inline __m512i k2_zblock(const uint8_t *qs, const uint8_t *hmask, __m256i sc, const int8_t *ab) {
    const __m256i hm = hmask ? _mm256_loadu_si256((const __m256i *)hmask) : _mm256_setzero_si256();
    __m512i iacc = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {
        __m256i lo, hi;
        k2_chunk_avx512vnni(qs, hm, hmask != NULL, c, &lo, &hi);
        iacc = k_chunk_z(iacc, lo, hi, ab, _mm512_castsi256_si512(sc), c);
    }
    return iacc;
}
TGT static inline __m512i q2_K_zblock(const block_q2_K *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    const __m256i sc = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    *M = _mm256_madd_epi16(_mm256_srli_epi16(sc, 4), _mm256_load_si256((const __m256i *)bs));
    return k2_zblock(x->qs, NULL, _mm256_and_si256(sc, _mm256_set1_epi16(0x0F)), ab);
}
TGT static inline __m512i q3_K_zblock(const block_q3_K *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    (void)M;
    const __m256i sc = q3_scales16_avx512vnni(x->scales); /* the codes + 4: less 4 * sum sc * bsum */
    const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc, _mm256_load_si256((const __m256i *)bs)), 2);
    return _mm512_sub_epi32(k2_zblock(x->qs, x->hmask, sc, ab), _mm512_zextsi256_si512(corr));
}

/* q6_K: the codes + 32 (0..63) unsigned, less 32 * sum sc * bsum */
TGT static inline __m512i q6_K_zblock(const block_q6_K *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    (void)M;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    const __m512i sc16 = _mm512_castsi256_si512(sc);
    __m512i iacc = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
        __m256i hv = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
        __m256i c0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m2));
        __m256i c1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m2));
        __m256i c2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hv, m2));
        __m256i c3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hv, 2), m2));
        iacc = k_chunk_z(iacc, c0, c1, ab, sc16, 2 * h);
        iacc = k_chunk_z(iacc, c2, c3, ab, sc16, 2 * h + 1);
    }
    const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc, _mm256_load_si256((const __m256i *)bs)), 5);
    return _mm512_sub_epi32(iacc, _mm512_zextsi256_si512(corr));
}

/* iq4_xs: the table's values by |v| against the activations with v's sign (|v| |a| <= 127^2, pairs fit int16) */
TGT static inline __m512i iq4_xs_zblock(const block_iq4_xs *x, const int8_t *ab, const int16_t *bs, __m256i *M) {
    (void)bs, (void)M;
    const __m512i sc16 = _mm512_castsi256_si512(iq4_xs_scales16_avx512vnni(x));
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)kvalues_iq4nl));
    __m512i iacc = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {
        const __m512i v = _mm512_shuffle_epi8(tbl, pair(nibbles_avx512vnni(x->qs + 32 * c), nibbles_avx512vnni(x->qs + 32 * c + 16)));
        const __m512i av = _mm512_load_si512(ab + 64 * c);
        const __m512i sa = _mm512_mask_sub_epi8(av, _mm512_movepi8_mask(v), _mm512_setzero_si512(), av);
        iacc = _mm512_add_epi32(iacc, _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(v), sa), scale_pair(sc16, c)));
    }
    return iacc;
}

GEMVR_256(gemvr_q2_K_z, block_q2_K, q2_K_zblock, __m512i, sum4x16, GEMVR_MIN_STEP)
GEMVR_256(gemvr_q3_K_z, block_q3_K, q3_K_zblock, __m512i, sum4x16, )
GEMVR_256(gemvr_q4_K_z, block_q4_K, q4_K_zblock, __m512i, sum4x16, GEMVR_MIN_STEP)
GEMVR_256(gemvr_q5_K_z, block_q5_K, q5_K_zblock, __m512i, sum4x16, GEMVR_MIN_STEP)
GEMVR_256(gemvr_q6_K_z, block_q6_K, q6_K_zblock, __m512i, sum4x16, )
GEMVR_256(gemvr_iq4_xs_z, block_iq4_xs, iq4_xs_zblock, __m512i, sum4x16, )

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
 * types stored with an offset), then the block's float steps of cpu.h in every lane at once. Token t's
 * lb_act starts at x[t]; its arrays lie at the same offsets from there in every token (lb_act_at), so a
 * block's loads are x[t] plus an offset shared by all tokens.
 */
typedef struct qg_off {
    size_t bsum, d, off;
} qg_off;

__attribute__((always_inline)) TGT static inline void qgemm_nt(const lb_qtile *w, const uint8_t *const *x, qg_off o, int64_t K,
                                                              __mmask16 mask, float *out, int64_t ldo, const int NT, const int BE,
                                                              const int SG, const int MIN) {
    __m512 F[8];
    __m512i S[8], P[8];
    const uint8_t *xt[8];
    const __m512i *u = (const __m512i *)w->u;
    for (int t = 0; t < NT; t++) F[t] = _mm512_setzero_ps(), xt[t] = x[t];
    for (int64_t b = 0; b < K / BE; b++) {
        const size_t ob = o.off + 4 * (size_t)b, od = o.d + 4 * (size_t)b;
        for (int t = 0; t < NT; t++)
            S[t] = BE == 32 && !MIN ? _mm512_set1_epi32(*(const int32_t *)(xt[t] + ob)) : _mm512_setzero_si512();
        if (BE == 32) {
            for (int s = 0; s < 8; s++) {
                __m512i wv = _mm512_load_si512(u + 8 * b + s);
                for (int t = 0; t < NT; t++) S[t] = _mm512_dpbusd_epi32(S[t], wv, bcast4(xt[t] + 32 * b + 4 * s));
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
                    for (int t = 0; t < NT; t++) P[t] = _mm512_dpbusd_epi32(P[t], wv, bcast4(xt[t] + e + 4 * s));
                }
                __m512i scv = _mm512_load_si512(w->sc + 16 * (e / SG));
                for (int t = 0; t < NT; t++) S[t] = _mm512_add_epi32(S[t], _mm512_mullo_epi32(P[t], scv));
            }
        }
        if (!MIN && BE == 256) { /* the codes' offset: S += sum_g (-128 sc[g]) * bsum[g] (32-element types: off) */
            for (int p = 0; p < BE / 32; p++) {
                int64_t g = BE / 32 * b + p;
                __m512i gv = _mm512_load_si512(w->gsc + 16 * g);
                for (int t = 0; t < NT; t++) S[t] = _mm512_dpwssd_epi32(S[t], gv, bcast4(xt[t] + o.bsum + 4 * (size_t)g));
            }
        }
        __m512 dv = _mm512_load_ps(w->d + 16 * b);
        for (int t = 0; t < NT; t++)
            F[t] = _mm512_fmadd_ps(_mm512_mul_ps(dv, _mm512_set1_ps(*(const float *)(xt[t] + od))), _mm512_cvtepi32_ps(S[t]), F[t]);
        if (MIN) {
            for (int t = 0; t < NT; t++) P[t] = _mm512_setzero_si512();
            for (int p = 0; p < BE / 32; p++) {
                int64_t g = BE / 32 * b + p;
                __m512i gv = _mm512_load_si512(w->gmn + 16 * g);
                for (int t = 0; t < NT; t++) P[t] = _mm512_dpwssd_epi32(P[t], gv, bcast4(xt[t] + o.bsum + 4 * (size_t)g));
            }
            __m512 dmv = _mm512_load_ps(w->dm + 16 * b);
            for (int t = 0; t < NT; t++)
                F[t] = _mm512_fmadd_ps(_mm512_mul_ps(dmv, _mm512_set1_ps(*(const float *)(xt[t] + od))), _mm512_cvtepi32_ps(P[t]), F[t]);
        }
    }
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(out + t * ldo, mask, F[t]);
}

typedef void (*qgemm_fn)(const lb_qtile *, const uint8_t *const *, qg_off, int64_t, __mmask16, float *, int64_t);
#define QGEMM_INST(NT, BE, SG, MIN)                                                                         \
    TGT static void qgemm_##NT##_##BE##_##SG##_##MIN(const lb_qtile *w, const uint8_t *const *x, qg_off o, int64_t K, \
                                                    __mmask16 m, float *out, int64_t ldo) {                  \
        qgemm_nt(w, x, o, K, m, out, ldo, NT, BE, SG, MIN);                                                 \
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
    lb_act a0 = lb_act_at((void *)act, K, be);
    qg_off o = {(size_t)((const uint8_t *)a0.bsum - act), (size_t)((const uint8_t *)a0.d - act),
                (size_t)((const uint8_t *)a0.off - act)};
    for (int64_t t = 0; t < T;) {
        int n = T - t >= 8 ? 8 : T - t >= 4 ? 4 : T - t >= 2 ? 2 : 1;
        const uint8_t *x[8];
        for (int i = 0; i < n; i++) x[i] = act + (size_t)(t + i) * act_stride;
        f[n == 8 ? 0 : n == 4 ? 1 : n == 2 ? 2 : 3](w, x, o, K, mask, out + t * ldo, ldo);
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

/* ---------------------------------------------------------------- attention and nonlinearities -------- */

/* lb_expf (cpu.h) on 16 lanes: the same operations, so the same bits */
TGT static inline __m512 exp16(__m512 x) {
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(LB_EXP_LO)), _mm512_set1_ps(LB_EXP_HI));
    __m512 kf = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(LB_EXP_LOG2E), _mm512_set1_ps(LB_EXP_MAGIC)),
                              _mm512_set1_ps(LB_EXP_MAGIC));
    __m512 r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(LB_EXP_LN2HI), xc);
    r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(LB_EXP_LN2LO), r);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(LB_EXP_C5), r, _mm512_set1_ps(LB_EXP_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(LB_EXP_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(LB_EXP_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(LB_EXP_C1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(LB_EXP_C0));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i k = _mm512_cvttps_epi32(kf), k1 = _mm512_srai_epi32(k, 1), k2 = _mm512_sub_epi32(k, k1);
    __m512i bias = _mm512_set1_epi32(127);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k1, bias), 23));
    __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k2, bias), 23));
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
    return _mm512_mask_add_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x, x);
}

static inline __mmask16 tail16(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

TGT static void vexp_z(const float *x, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

TGT static inline __m512 silu_mul16(__m512 gv, __m512 uv) {
    __m512 e = exp16(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(gv), _mm512_set1_epi32((int)0x80000000u))));
    return _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), uv);
}

/* rows of 16 (a tile of the forward pass): four rows per step, independent chains */
TGT static void swiglu_z(float *g, const float *u, int64_t n, int64_t rows, int64_t ld) {
    int64_t r = 0;
    if (n == 16)
        for (; r + 4 <= rows; r += 4) {
            __m512 gv[4], uv[4];
            for (int k = 0; k < 4; k++) gv[k] = _mm512_loadu_ps(g + (r + k) * ld), uv[k] = _mm512_loadu_ps(u + (r + k) * ld);
            for (int k = 0; k < 4; k++) _mm512_storeu_ps(g + (r + k) * ld, silu_mul16(gv[k], uv[k]));
        }
    for (; r < rows; r++)
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 m = tail16(n - i);
            float *gr = g + r * ld + i;
            _mm512_mask_storeu_ps(gr, m, silu_mul16(_mm512_maskz_loadu_ps(m, gr), _mm512_maskz_loadu_ps(m, u + r * ld + i)));
        }
}

/* the softmax of cpu.h: 16 scores per step, both halves added to the 8 double partials (p mod 8) in order */
TGT static void softmax_z(float *s, int64_t n, float scale) {
    const __m512 sv = _mm512_set1_ps(scale);
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (int64_t p = 0; p < n; p += 16) {
        __mmask16 m = tail16(n - p);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + p), sv);
        _mm512_mask_storeu_ps(s + p, m, v);
        vm = _mm512_mask_max_ps(vm, m, v, vm); /* NaN in v keeps vm */
    }
    float mx = _mm512_reduce_max_ps(vm); /* no NaN among the lanes */
    const __m512 mxv = _mm512_set1_ps(mx);
    __m512d acc = _mm512_setzero_pd();
    for (int64_t p = 0; p < n; p += 16) {
        __mmask16 m = tail16(n - p);
        __m512 e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + p), mxv)));
        _mm512_mask_storeu_ps(s + p, m, e);
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e))); /* + 0 past n: exact */
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    double d[8];
    _mm512_storeu_pd(d, acc);
    double sum = lb_reduce8d(d);
    if (sum != sum) {
        float nan = lb_f32_bits(LB_NAN_BITS);
        for (int64_t p = 0; p < n; p++) s[p] = nan;
        return;
    }
    const __m512 iv = _mm512_set1_ps((float)(1.0 / sum));
    for (int64_t p = 0; p < n; p += 16) {
        __mmask16 m = tail16(n - p);
        _mm512_mask_storeu_ps(s + p, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + p), iv));
    }
}

/*
 * Scores of up to 8 queries: the queries in pairs, query 2i in the low and 2i + 1 in the high half of a
 * 512-bit vector (8 elements of each), every key's 8 elements broadcast to both halves, so that one FMA
 * updates the 8 partials of two (query, key) scores; 4 keys x NP pairs per step. The partials are reduced
 * by the tree of lb_reduce8 in shuffles over 4 keys at a time.
 */
#define DQ_MAXC 32 /* 8-element chunks of D held packed (D8 <= 256), else one query at a time */

/* 8 floats in both halves */
TGT static inline __m512 bcast8(const float *p) {
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(p))));
}

/* the accumulators of one pair for keys 0..3 -> lanes 0..3: query 2i's four scores, lanes 4..7: query 2i + 1's */
TGT static inline __m128 reduce_pair4(const __m512 *a, __m128 *hi) {
    /* step 1: s_l = a_l + a_{l+4}; 128-bit lane L of s01: (key L >> 1, query half L & 1), of s23 keys 2, 3 */
    __m512 s01 = _mm512_add_ps(_mm512_shuffle_f32x4(a[0], a[1], _MM_SHUFFLE(2, 0, 2, 0)),
                               _mm512_shuffle_f32x4(a[0], a[1], _MM_SHUFFLE(3, 1, 3, 1)));
    __m512 s23 = _mm512_add_ps(_mm512_shuffle_f32x4(a[2], a[3], _MM_SHUFFLE(2, 0, 2, 0)),
                               _mm512_shuffle_f32x4(a[2], a[3], _MM_SHUFFLE(3, 1, 3, 1)));
    /* step 2: (s0 + s2), (s1 + s3): elements 0, 1 of each lane from s01, 2, 3 from s23 */
    __m512 t = _mm512_add_ps(_mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 2, 3, 2)));
    /* step 3: (s0 + s2) + (s1 + s3): element 0 of lane L from s01's, element 1 from s23's */
    __m512 r = _mm512_add_ps(_mm512_shuffle_ps(t, t, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(t, t, _MM_SHUFFLE(3, 1, 3, 1)));
    /* keys 0, 1, 2, 3 of the low query are elements 0, 8, 1, 9; of the high query 4, 12, 5, 13 */
    r = _mm512_permutexvar_ps(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 13, 5, 12, 4, 9, 1, 8, 0), r);
    *hi = _mm512_extractf32x4_ps(r, 1);
    return _mm512_castps512_ps128(r);
}

/* 8 halves converted, in both halves */
TGT static inline __m512 bcast8h(const uint16_t *p) {
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)))));
}

#define ATT_T float
#define ATT_AT(p, i) ((p)[i])
#define Z_NAME(x) x
#define Z_BCAST8(p) bcast8(p)
#define Z_LOAD16(k, p) _mm512_maskz_loadu_ps(k, p)
#define Z_VDOTS vdots_avx512vnni
#include "x86_att512.h"
#define ATT_T uint16_t
#define ATT_AT(p, i) _cvtsh_ss((p)[i])
#define Z_NAME(x) x##_h
#define Z_BCAST8(p) bcast8h(p)
#define Z_LOAD16(k, p) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p))
#define Z_VDOTS vdots_h_avx512vnni
#include "x86_att512.h"

/* The table is filled once (pthread_once): threads asking for it at the same time must never see it half
 * copied (its name set while an entry is still NULL). */
static lb_cpu_kernels z_kernels;
static pthread_once_t z_once = PTHREAD_ONCE_INIT;

static void z_fill(void) {
    lb_cpu_kernels t = KERNELS_avx512vnni;
    t.name = "avx512vnni";
    t.gemvr[LB_TYPE_Q4_0] = gemvr_q4_0_z;
    t.gemvr[LB_TYPE_Q4_1] = gemvr_q4_1_z;
    t.gemvr[LB_TYPE_Q5_0] = gemvr_q5_0_z;
    t.gemvr[LB_TYPE_Q5_1] = gemvr_q5_1_z;
    t.gemvr[LB_TYPE_IQ4_NL] = gemvr_iq4_nl_z;
    t.gemvr[LB_TYPE_Q8_0] = gemvr_q8_0_z;
    t.gemvr[LB_TYPE_Q4_K] = gemvr_q4_K_z_avx512vnni;
    t.gemvr[LB_TYPE_Q5_K] = gemvr_q5_K_z_avx512vnni;
    t.gemvr[LB_TYPE_Q2_K] = gemvr_q2_K_z_avx512vnni;
    t.gemvr[LB_TYPE_Q3_K] = gemvr_q3_K_z_avx512vnni;
    t.gemvr[LB_TYPE_IQ4_XS] = gemvr_iq4_xs_z_avx512vnni;
    t.gemvr[LB_TYPE_Q6_K] = gemvr_q6_K_z_avx512vnni;
    t.qdot = qdot_z;
    t.qgemm = qgemm_z;
    t.fgemm = fgemm_z;
    t.vdotsq = vdotsq_z;
    t.vwsumq = vwsumq_z;
    t.vdotsq_h = vdotsq_z_h;
    t.vwsumq_h = vwsumq_z_h;
    t.softmax = softmax_z;
    t.swiglu = swiglu_z;
    t.vexp = vexp_z;
    z_kernels = t;
}

const lb_cpu_kernels *lb_cpu_kernels_avx512vnni(void) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !lb_cpu_has_f16c() ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vnni"))
        return NULL;
    if (pthread_once(&z_once, z_fill) != 0) return NULL;
    return &z_kernels;
}
#else
const lb_cpu_kernels *lb_cpu_kernels_avx512vnni(void) { return NULL; }
#endif
