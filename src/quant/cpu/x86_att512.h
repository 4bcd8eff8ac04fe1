/*
 * x86_att512.h - the AVX-512 table's several-query attention kernels (x86_avx512.c: scores of up to 8 queries in pairs,
 * weighted sums of up to 8 queries with 32 outputs each in registers) over rows of ATT_T: included twice, for F32 rows
 * and for F16 rows (each element converted exactly before the same arithmetic, so the same bits as the F32 kernels on
 * the converted rows). Z_NAME(x) names a function, Z_BCAST8(p) loads 8 elements as floats into both halves of a
 * vector, Z_LOAD16(mask, p) up to 16 as floats, ATT_AT(p, i) one, Z_VDOTS the one-query scores; all six are
 * undefined at the end.
 */

__attribute__((always_inline)) TGT static inline void Z_NAME(dotsq_nt)(const float *qp, int NP, int nq, const float *q, int64_t ldq,
                                                              const ATT_T *m, int64_t stride, int64_t n, int64_t D,
                                                              float *s, int64_t lds) {
    int64_t D8 = D - D % 8, C = D8 / 8, p = 0;
    for (; p + 4 <= n; p += 4) {
        __m512 acc[4][4];
        for (int k = 0; k < 4; k++)
            for (int i = 0; i < NP; i++) acc[k][i] = _mm512_setzero_ps();
        const ATT_T *k0 = m + p * stride;
        for (int64_t c = 0; c < C; c++) {
            __m512 kb[4];
            for (int k = 0; k < 4; k++) kb[k] = Z_BCAST8(k0 + k * stride + 8 * c);
            for (int i = 0; i < NP; i++) {
                __m512 qv = _mm512_load_ps(qp + (c * 4 + i) * 16);
                for (int k = 0; k < 4; k++) acc[k][i] = _mm512_fmadd_ps(qv, kb[k], acc[k][i]);
            }
        }
        for (int i = 0; i < NP; i++) {
            __m512 a[4] = {acc[0][i], acc[1][i], acc[2][i], acc[3][i]};
            __m128 hi, lo = reduce_pair4(a, &hi);
            _mm_storeu_ps(s + (2 * i) * lds + p, lo);
            if (2 * i + 1 < nq) _mm_storeu_ps(s + (2 * i + 1) * lds + p, hi);
        }
        if (D8 < D) /* the last D % 8 elements one by one */
            for (int j = 0; j < nq; j++)
                for (int k = 0; k < 4; k++) {
                    const float *qq = q + j * ldq;
                    const ATT_T *kk = k0 + k * stride;
                    float r = s[j * lds + p + k];
                    for (int64_t e = D8; e < D; e++) r = fmaf(qq[e], ATT_AT(kk, e), r);
                    s[j * lds + p + k] = r;
                }
    }
    for (; p < n; p++) { /* one key: the same lanes, the tree on the low and high halves */
        const ATT_T *kr = m + p * stride;
        for (int i = 0; i < NP; i++) {
            __m512 acc = _mm512_setzero_ps();
            for (int64_t c = 0; c < C; c++)
                acc = _mm512_fmadd_ps(_mm512_load_ps(qp + (c * 4 + i) * 16), Z_BCAST8(kr + 8 * c), acc);
            float a[16];
            _mm512_storeu_ps(a, acc);
            for (int h = 0; h < 2 && 2 * i + h < nq; h++) {
                float r = lb_reduce8(a + 8 * h);
                const float *qq = q + (2 * i + h) * ldq;
                for (int64_t e = D8; e < D; e++) r = fmaf(qq[e], ATT_AT(kr, e), r);
                s[(2 * i + h) * lds + p] = r;
            }
        }
    }
}

#define DOTSQ_INST(NP)                                                                                      \
    TGT static void Z_NAME(dotsq_##NP)(const float *qp, int nq, const float *q, int64_t ldq, const ATT_T *m, int64_t stride, \
                               int64_t n, int64_t D, float *s, int64_t lds) {                              \
        Z_NAME(dotsq_nt)(qp, NP, nq, q, ldq, m, stride, n, D, s, lds);                                              \
    }
DOTSQ_INST(1)
DOTSQ_INST(2)
DOTSQ_INST(3)
DOTSQ_INST(4)

TGT static void Z_NAME(vdotsq_z)(const float *q, int64_t ldq, int nq, const ATT_T *m, int64_t stride, int64_t n, int64_t D, float *s,
                         int64_t lds) {
    int64_t C = (D - D % 8) / 8;
    if (nq < 2 || C > DQ_MAXC || nq > LB_ATT_QMAX) {
        for (int j = 0; j < nq; j++) Z_VDOTS(q + j * ldq, m, stride, n, D, s + j * lds);
        return;
    }
    /* chunk c of pair i at qp + (4c + i) * 16: query 2i's 8 elements, then query 2i + 1's (or 2i's again) */
    _Alignas(64) float qp[DQ_MAXC * 4 * 16];
    int NP = (nq + 1) / 2;
    for (int64_t c = 0; c < C; c++)
        for (int i = 0; i < NP; i++) {
            int j1 = 2 * i + 1 < nq ? 2 * i + 1 : 2 * i;
            memcpy(qp + (c * 4 + i) * 16, q + 2 * i * ldq + 8 * c, 32);
            memcpy(qp + (c * 4 + i) * 16 + 8, q + j1 * ldq + 8 * c, 32);
        }
    switch (NP) {
    case 1: Z_NAME(dotsq_1)(qp, nq, q, ldq, m, stride, n, D, s, lds); break;
    case 2: Z_NAME(dotsq_2)(qp, nq, q, ldq, m, stride, n, D, s, lds); break;
    case 3: Z_NAME(dotsq_3)(qp, nq, q, ldq, m, stride, n, D, s, lds); break;
    default: Z_NAME(dotsq_4)(qp, nq, q, ldq, m, stride, n, D, s, lds); break;
    }
}

/*
 * Weighted sums of up to 8 queries: 32 output elements of every query in registers (16 accumulators) while
 * the rows pass once; each lane is one output element's fmaf chain in order of p. Rows past a query's own
 * count are skipped for that query.
 */
__attribute__((always_inline)) TGT static inline void Z_NAME(wsumq_nt)(const float *w, int64_t ldw, int NQ, const int64_t *n,
                                                              const ATT_T *m, int64_t stride, int64_t D, float *o, int64_t ldo) {
    int64_t n0 = n[0], n1 = n[0];
    for (int j = 1; j < NQ; j++) {
        n0 = n[j] < n0 ? n[j] : n0;
        n1 = n[j] > n1 ? n[j] : n1;
    }
    for (int64_t i0 = 0; i0 < D; i0 += 32) {
        __mmask16 m0 = tail16(D - i0), m1 = D - i0 > 16 ? tail16(D - i0 - 16) : 0;
        __m512 acc[LB_ATT_QMAX][2];
        for (int j = 0; j < NQ; j++) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
        const ATT_T *v = m + i0;
        int64_t p = 0;
        for (; p < n0; p++, v += stride) {
            __m512 v0 = Z_LOAD16(m0, v), v1 = Z_LOAD16(m1, v + 16);
            for (int j = 0; j < NQ; j++) {
                __m512 wj = _mm512_set1_ps(w[j * ldw + p]);
                acc[j][0] = _mm512_fmadd_ps(wj, v0, acc[j][0]);
                acc[j][1] = _mm512_fmadd_ps(wj, v1, acc[j][1]);
            }
        }
        for (; p < n1; p++, v += stride) {
            __m512 v0 = Z_LOAD16(m0, v), v1 = Z_LOAD16(m1, v + 16);
            for (int j = 0; j < NQ; j++)
                if (p < n[j]) {
                    __m512 wj = _mm512_set1_ps(w[j * ldw + p]);
                    acc[j][0] = _mm512_fmadd_ps(wj, v0, acc[j][0]);
                    acc[j][1] = _mm512_fmadd_ps(wj, v1, acc[j][1]);
                }
        }
        for (int j = 0; j < NQ; j++) {
            _mm512_mask_storeu_ps(o + j * ldo + i0, m0, acc[j][0]);
            _mm512_mask_storeu_ps(o + j * ldo + i0 + 16, m1, acc[j][1]);
        }
    }
}

#define WSUMQ_INST(NQ)                                                                                      \
    TGT static void Z_NAME(wsumq_##NQ)(const float *w, int64_t ldw, const int64_t *n, const ATT_T *m, int64_t stride, int64_t D, \
                               float *o, int64_t ldo) {                                                    \
        Z_NAME(wsumq_nt)(w, ldw, NQ, n, m, stride, D, o, ldo);                                                      \
    }
WSUMQ_INST(1)
WSUMQ_INST(2)
WSUMQ_INST(3)
WSUMQ_INST(4)
WSUMQ_INST(5)
WSUMQ_INST(6)
WSUMQ_INST(7)
WSUMQ_INST(8)

TGT static void Z_NAME(vwsumq_z)(const float *w, int64_t ldw, int nq, const int64_t *n, const ATT_T *m, int64_t stride, int64_t D,
                         float *o, int64_t ldo) {
    typedef void (*fn)(const float *, int64_t, const int64_t *, const ATT_T *, int64_t, int64_t, float *, int64_t);
    static const fn f[LB_ATT_QMAX] = {Z_NAME(wsumq_1), Z_NAME(wsumq_2), Z_NAME(wsumq_3), Z_NAME(wsumq_4), Z_NAME(wsumq_5), Z_NAME(wsumq_6),
                                      Z_NAME(wsumq_7), Z_NAME(wsumq_8)};
    for (int j = 0; j < nq; j += LB_ATT_QMAX) {
        int k = nq - j < LB_ATT_QMAX ? nq - j : LB_ATT_QMAX;
        f[k - 1](w + j * ldw, ldw, n + j, m, stride, D, o + j * ldo, ldo);
    }
}

#undef ATT_T
#undef ATT_AT
#undef Z_NAME
#undef Z_BCAST8
#undef Z_LOAD16
#undef Z_VDOTS
