/*
 * x86_avx512.c - the CPU kernels with AVX-512 VNNI (vpdpbusd on 256-bit vectors, AVX512VL): the same
 * template as x86_avx2.c with the 4-byte integer dot product in one instruction. Vectors stay 256 bits
 * wide so that the float accumulation order (8 partials, cpu.h) is the same as AVX2's and the reference's.
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
        t.qdot = qdot_z;
        k = t;
    }
    return &k;
}
#else
const lb_cpu_kernels *lb_cpu_kernels_avx512vnni(void) { return NULL; }
#endif
