/*
 * x86_avx2.c - the CPU kernels for AVX2 + FMA + F16C (x86_tmpl.h), compiled with per-function target
 * attributes so the rest of the binary stays baseline x86-64.
 */
#include "cpu.h"

#include <pthread.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define TGT __attribute__((target("avx2,fma,f16c")))
#define SFX(name) name##_avx2
#define DOT32(acc, u, s) (acc) = _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1)))
#include "x86_tmpl.h"

/* ---------------------------------------------------------------- many tokens: interleaved tiles ------ */

/*
 * NT tokens against one half (8 rows) of a 16-row lb_qtile, lane r = row 8h + r. AVX2 has no vpdpbusd, and
 * vpmaddubsw's int16 pair sums would overflow on the tile's offset codes (q + 128 for the signed types), so
 * the signed codes are restored (u ^ 0x80) and multiplied as |q| * (a with q's sign): each pair sum is at most
 * 2 * 128 * 127 = 32512, exact. vpmaddwd with the group's scale in both int16 halves of every lane (1 for the
 * 32-element types) adds a pair and applies the scale in one step, so S = sum over the block's groups of
 * sc[g] * (the group's products), the exact int32 of cpu.h (|S| < 2^31); the min term is the tile's int16
 * pairs (mn[2p], mn[2p + 1]) against the token's bsum pairs. Then cpu.h's float steps in every lane. Token t's
 * lb_act starts at x[t], its bsum and d at the offsets o from there (the same in every token, lb_act_at).
 */
typedef struct qg8_off {
    size_t bsum, d;
} qg8_off;

TGT static inline __m256i bcast4_avx2(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

__attribute__((always_inline)) TGT static inline void qgemm8_nt(const lb_qtile *w, int h, const uint8_t *const *x, qg8_off o, int64_t K,
                                                               __m256i mask, float *out, int64_t ldo, const int NT, const int BE,
                                                               const int SG, const int MIN, const int ACC) {
    const int N = LB_QTILE_ROWS;
    const __m256i flip = _mm256_set1_epi8((char)0x80), low16 = _mm256_set1_epi32(0xFFFF);
    __m256 F[4];
    __m256i S[4];
    for (int t = 0; t < NT; t++) F[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < K / BE; b++) {
        for (int t = 0; t < NT; t++) S[t] = _mm256_setzero_si256();
        for (int64_t e = BE * b; e < BE * (b + 1); e += SG) {
            __m256i scp = _mm256_set1_epi16(1);
            if (BE != 32) {
                __m256i sv = _mm256_load_si256((const __m256i *)(w->sc + (e / SG) * N + 8 * h));
                scp = _mm256_or_si256(_mm256_and_si256(sv, low16), _mm256_slli_epi32(sv, 16));
            }
            for (int64_t k0 = e; k0 < e + SG; k0 += 4 * ACC) {
                __m256i P[4]; /* ACC steps' pair sums added in int16 (qgemm8_for says how many), then scaled once */
                for (int t = 0; t < NT; t++) P[t] = _mm256_setzero_si256();
                for (int64_t k = k0; k < k0 + 4 * ACC; k += 4) {
                    __m256i wv = _mm256_load_si256((const __m256i *)(w->u + (size_t)k * N + 32 * h)), uw = wv;
                    if (!MIN) {
                        wv = _mm256_xor_si256(wv, flip);
                        uw = _mm256_abs_epi8(wv);
                    }
                    for (int t = 0; t < NT; t++) {
                        __m256i a = bcast4_avx2(x[t] + k);
                        if (!MIN) a = _mm256_sign_epi8(a, wv);
                        P[t] = _mm256_add_epi16(P[t], _mm256_maddubs_epi16(uw, a));
                    }
                }
                for (int t = 0; t < NT; t++) S[t] = _mm256_add_epi32(S[t], _mm256_madd_epi16(P[t], scp));
            }
        }
        const size_t od = o.d + 4 * (size_t)b;
        __m256 dv = _mm256_load_ps(w->d + b * N + 8 * h);
        for (int t = 0; t < NT; t++) {
            float da;
            memcpy(&da, x[t] + od, 4);
            F[t] = _mm256_fmadd_ps(_mm256_mul_ps(dv, _mm256_set1_ps(da)), _mm256_cvtepi32_ps(S[t]), F[t]);
        }
        if (MIN) {
            for (int t = 0; t < NT; t++) S[t] = _mm256_setzero_si256();
            for (int64_t g = BE / 32 * b; g < BE / 32 * (b + 1); g++) {
                __m256i gv = _mm256_load_si256((const __m256i *)(w->gmn + g * N + 8 * h));
                for (int t = 0; t < NT; t++) S[t] = _mm256_add_epi32(S[t], _mm256_madd_epi16(gv, bcast4_avx2(x[t] + o.bsum + 4 * (size_t)g)));
            }
            __m256 dmv = _mm256_load_ps(w->dm + b * N + 8 * h);
            for (int t = 0; t < NT; t++) {
                float da;
                memcpy(&da, x[t] + od, 4);
                F[t] = _mm256_fmadd_ps(_mm256_mul_ps(dmv, _mm256_set1_ps(da)), _mm256_cvtepi32_ps(S[t]), F[t]);
            }
        }
    }
    for (int t = 0; t < NT; t++) _mm256_maskstore_ps(out + t * ldo, mask, F[t]);
}

typedef void (*qgemm8_fn)(const lb_qtile *, int, const uint8_t *const *, qg8_off, int64_t, __m256i, float *, int64_t);
#define QGEMM8_INST(NT, BE, SG, MIN, ACC)                                                                   \
    TGT static void qgemm8_##NT##_##BE##_##SG##_##MIN##_##ACC(const lb_qtile *w, int h, const uint8_t *const *x, qg8_off o,   \
                                                             int64_t K, __m256i m, float *out, int64_t ldo) {                \
        qgemm8_nt(w, h, x, o, K, m, out, ldo, NT, BE, SG, MIN, ACC);                                        \
    }
#define QGEMM8_NTS(BE, SG, MIN, ACC) QGEMM8_INST(4, BE, SG, MIN, ACC) QGEMM8_INST(2, BE, SG, MIN, ACC) QGEMM8_INST(1, BE, SG, MIN, ACC)
#define QGEMM8_ROW(BE, SG, MIN, ACC)                                                                        \
    {qgemm8_4_##BE##_##SG##_##MIN##_##ACC, qgemm8_2_##BE##_##SG##_##MIN##_##ACC, qgemm8_1_##BE##_##SG##_##MIN##_##ACC}
QGEMM8_NTS(32, 32, 0, 8) /* q4_0, q5_0 */
QGEMM8_NTS(32, 32, 0, 1) /* q8_0, iq4_nl */
QGEMM8_NTS(32, 32, 1, 8) /* q4_1 */
QGEMM8_NTS(32, 32, 1, 4) /* q5_1 */
QGEMM8_NTS(256, 16, 0, 4) /* q3_K, q6_K */
QGEMM8_NTS(256, 16, 1, 4) /* q2_K */
QGEMM8_NTS(256, 32, 0, 1) /* iq4_xs */
QGEMM8_NTS(256, 32, 1, 8) /* q4_K */
QGEMM8_NTS(256, 32, 1, 4) /* q5_K */

/*
 * Each weight type's instance. ACC, the 4-element steps whose vpmaddubsw pair sums add up in int16 before
 * vpmaddwd, follows from the type's code range (any file: the codes are the format's bit fields) and activations
 * within +-127: a pair sum is at most 2 * 127 * max|q|, so ACC steps stay within 32767 for ACC * 254 * max|q| <=
 * 32767: max|q| 8 (q4_0), 15 (q4_1, q4_K) and 16 (q5_0) allow 8 steps, 31-32 (q5_1, q5_K, q6_K) 4, and 3-4 (q2_K,
 * q3_K) a whole 16-element group; the codes of q8_0 and the iq4 tables (up to 128) one. The group (16 or 32
 * elements) ends an accumulation in any case. Every weight type with an unpacker is listed (test_kernels runs
 * each one's tile product).
 */
static const qgemm8_fn *qgemm8_for(lb_type t) {
    static const qgemm8_fn q4_0[] = QGEMM8_ROW(32, 32, 0, 8), q8_0[] = QGEMM8_ROW(32, 32, 0, 1), q4_1[] = QGEMM8_ROW(32, 32, 1, 8),
                           q5_1[] = QGEMM8_ROW(32, 32, 1, 4), q6_K[] = QGEMM8_ROW(256, 16, 0, 4), q2_K[] = QGEMM8_ROW(256, 16, 1, 4),
                           iq4_xs[] = QGEMM8_ROW(256, 32, 0, 1), q4_K[] = QGEMM8_ROW(256, 32, 1, 8), q5_K[] = QGEMM8_ROW(256, 32, 1, 4);
    switch (t) {
    case LB_TYPE_Q4_0: case LB_TYPE_Q5_0: return q4_0;
    case LB_TYPE_Q8_0: case LB_TYPE_IQ4_NL: return q8_0;
    case LB_TYPE_Q4_1: return q4_1;
    case LB_TYPE_Q5_1: return q5_1;
    case LB_TYPE_Q3_K: case LB_TYPE_Q6_K: return q6_K;
    case LB_TYPE_Q2_K: return q2_K;
    case LB_TYPE_IQ4_XS: return iq4_xs;
    case LB_TYPE_Q4_K: return q4_K;
    case LB_TYPE_Q5_K: return q5_K;
    default: return NULL;
    }
}

TGT static void qgemm_avx2(const lb_qtile *w, int R, const uint8_t *act, size_t act_stride, int64_t T, int64_t K, int64_t be,
                           float *out, int64_t ldo) {
    const qgemm8_fn *f = qgemm8_for(w->type);
    lb_act a0 = lb_act_at((void *)act, K, be);
    qg8_off o = {(size_t)((const uint8_t *)a0.bsum - act), (size_t)((const uint8_t *)a0.d - act)};
    __m256i mask[2];
    for (int h = 0; h < 2; h++) {
        int n = R - 8 * h < 0 ? 0 : R - 8 * h > 8 ? 8 : R - 8 * h;
        mask[h] = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    for (int64_t t = 0; t < T;) { /* a group of tokens against both halves: its activations stay in L1 */
        int n = T - t >= 4 ? 4 : T - t >= 2 ? 2 : 1;
        const uint8_t *x[4];
        for (int i = 0; i < n; i++) x[i] = act + (size_t)(t + i) * act_stride;
        for (int h = 0; h < 2 && 8 * h < R; h++) f[n == 4 ? 0 : n == 2 ? 1 : 2](w, h, x, o, K, mask[h], out + t * ldo + 8 * h, ldo);
        t += n;
    }
}

/* filled once (pthread_once), so that threads asking at the same time never see it half copied */
static lb_cpu_kernels a_kernels;
static pthread_once_t a_once = PTHREAD_ONCE_INIT;

static void a_fill(void) {
    lb_cpu_kernels t = KERNELS_avx2;
    t.name = "avx2";
    t.qgemm = qgemm_avx2;
    a_kernels = t;
}

const lb_cpu_kernels *lb_cpu_kernels_avx2(void) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !lb_cpu_has_f16c()) return NULL;
    if (pthread_once(&a_once, a_fill) != 0) return NULL;
    return &a_kernels;
}
#else
const lb_cpu_kernels *lb_cpu_kernels_avx2(void) { return NULL; }
#endif
