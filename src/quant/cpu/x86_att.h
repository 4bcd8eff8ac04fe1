/*
 * x86_att.h - the attention's scores (vdots) and weighted sums (vwsum) over rows of ATT_T, included by x86_tmpl.h
 * twice: for the F32 KV cache (ATT_T float) and the F16 one (ATT_T uint16_t, each element converted to float exactly
 * by F16C before the same arithmetic, so the same bits as the F32 kernels on the converted rows). ATT_LOAD8(p) loads
 * 8 elements as floats, ATT_AT(p, i) element i, ATT_NAME(x) names the function. With them the several-query forms
 * (vdotsq, vwsumq), each result the bits of its query alone. The AVX-512 table replaces the F32 several-query forms
 * with 512-bit ones (x86_avx512.c). The four parameters are undefined at the end.
 */

TGT static void ATT_NAME(vdots)(const float *q, const ATT_T *m, int64_t stride, int64_t n, int64_t D, float *s) {
    int64_t D8 = D - D % 8, p = 0;
    for (; p + 4 <= n; p += 4) { /* four keys at a time: shared loads of q, the four trees reduced together */
        const ATT_T *k[4] = {m + p * stride, m + (p + 1) * stride, m + (p + 2) * stride, m + (p + 3) * stride};
        __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int64_t i = 0; i < D8; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            for (int j = 0; j < 4; j++) a[j] = _mm256_fmadd_ps(qv, ATT_LOAD8(k[j] + i), a[j]);
        }
        __m128 c[4];
        for (int j = 0; j < 4; j++) c[j] = _mm_add_ps(_mm256_castps256_ps128(a[j]), _mm256_extractf128_ps(a[j], 1));
        _MM_TRANSPOSE4_PS(c[0], c[1], c[2], c[3]); /* c[l] = partial sum l (l + l+4) of each key */
        float r[4];
        _mm_storeu_ps(r, _mm_add_ps(_mm_add_ps(c[0], c[2]), _mm_add_ps(c[1], c[3])));
        for (int j = 0; j < 4; j++) {
            for (int64_t i = D8; i < D; i++) r[j] = fmaf(q[i], ATT_AT(k[j], i), r[j]);
            s[p + j] = r[j];
        }
    }
    for (; p < n; p++) {
        const ATT_T *k = m + p * stride;
        __m256 a = _mm256_setzero_ps();
        for (int64_t i = 0; i < D8; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), ATT_LOAD8(k + i), a);
        float r = SFX(hsum8)(a);
        for (int64_t i = D8; i < D; i++) r = fmaf(q[i], ATT_AT(k, i), r);
        s[p] = r;
    }
}

TGT static void ATT_NAME(vwsum)(const float *w, const ATT_T *m, int64_t stride, int64_t n, int64_t D, float *o) {
    int64_t D8 = D - D % 8;
    for (int64_t i0 = 0; i0 < D8; i0 += 128) {
        int64_t nv = (D8 - i0 < 128 ? D8 - i0 : 128) / 8;
        __m256 acc[16];
        for (int64_t j = 0; j < nv; j++) acc[j] = _mm256_setzero_ps();
        for (int64_t p = 0; p < n; p++) {
            __m256 wp = _mm256_set1_ps(w[p]);
            const ATT_T *v = m + p * stride + i0;
            for (int64_t j = 0; j < nv; j++) acc[j] = _mm256_fmadd_ps(wp, ATT_LOAD8(v + 8 * j), acc[j]);
        }
        for (int64_t j = 0; j < nv; j++) _mm256_storeu_ps(o + i0 + 8 * j, acc[j]);
    }
    for (int64_t i = D8; i < D; i++) {
        float s = 0.0f;
        for (int64_t p = 0; p < n; p++) s = fmaf(w[p], ATT_AT(m + p * stride, i), s);
        o[i] = s;
    }
}

/* two queries at a time: every key chunk loaded once for both, 4 keys x 2 queries = 8 accumulators */
TGT static void ATT_NAME(vdotsq)(const float *q, int64_t ldq, int nq, const ATT_T *m, int64_t stride, int64_t n, int64_t D,
                            float *s, int64_t lds) {
    int64_t D8 = D - D % 8;
    int j = 0;
    for (; j + 2 <= nq; j += 2) {
        const float *qa = q + j * ldq, *qb = qa + ldq;
        float *sa = s + j * lds, *sb = sa + lds;
        int64_t p = 0;
        for (; p + 4 <= n; p += 4) {
            const ATT_T *k[4] = {m + p * stride, m + (p + 1) * stride, m + (p + 2) * stride, m + (p + 3) * stride};
            __m256 a[4], b[4];
            for (int i = 0; i < 4; i++) a[i] = b[i] = _mm256_setzero_ps();
            for (int64_t i = 0; i < D8; i += 8) {
                __m256 va = _mm256_loadu_ps(qa + i), vb = _mm256_loadu_ps(qb + i);
                for (int t = 0; t < 4; t++) {
                    __m256 kv = ATT_LOAD8(k[t] + i);
                    a[t] = _mm256_fmadd_ps(va, kv, a[t]);
                    b[t] = _mm256_fmadd_ps(vb, kv, b[t]);
                }
            }
            _mm_storeu_ps(sa + p, SFX(reduce4x8)(a));
            _mm_storeu_ps(sb + p, SFX(reduce4x8)(b));
            if (D8 < D)
                for (int t = 0; t < 4; t++) {
                    float ra = sa[p + t], rb = sb[p + t];
                    for (int64_t i = D8; i < D; i++) ra = fmaf(qa[i], ATT_AT(k[t], i), ra), rb = fmaf(qb[i], ATT_AT(k[t], i), rb);
                    sa[p + t] = ra, sb[p + t] = rb;
                }
        }
        if (p < n) {
            ATT_NAME(vdots)(qa, m + p * stride, stride, n - p, D, sa + p);
            ATT_NAME(vdots)(qb, m + p * stride, stride, n - p, D, sb + p);
        }
    }
    if (j < nq) ATT_NAME(vdots)(q + j * ldq, m, stride, n, D, s + j * lds);
}

/* NJ queries x 16 output elements in registers while the rows pass once; each lane one fmaf chain in order of p */
__attribute__((always_inline)) TGT static inline void ATT_NAME(wsumq_nt)(const float *w, int64_t ldw, int NJ, const int64_t *n,
                                                                   const ATT_T *m, int64_t stride, int64_t D, float *o,
                                                                   int64_t ldo) {
    int64_t D8 = D - D % 8, n0 = n[0], n1 = n[0];
    for (int j = 1; j < NJ; j++) {
        n0 = n[j] < n0 ? n[j] : n0;
        n1 = n[j] > n1 ? n[j] : n1;
    }
    for (int64_t i0 = 0; i0 < D8; i0 += 16) {
        int nv = D8 - i0 >= 16 ? 2 : 1;
        __m256 acc[4][2];
        for (int j = 0; j < NJ; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
        const ATT_T *v = m + i0;
        int64_t p = 0;
        if (nv == 2)
            for (; p < n0; p++, v += stride) {
                __m256 v0 = ATT_LOAD8(v), v1 = ATT_LOAD8(v + 8);
                for (int j = 0; j < NJ; j++) {
                    __m256 wj = _mm256_broadcast_ss(w + j * ldw + p);
                    acc[j][0] = _mm256_fmadd_ps(wj, v0, acc[j][0]);
                    acc[j][1] = _mm256_fmadd_ps(wj, v1, acc[j][1]);
                }
            }
        for (; p < n1; p++, v += stride) {
            __m256 v0 = ATT_LOAD8(v), v1 = nv == 2 ? ATT_LOAD8(v + 8) : _mm256_setzero_ps();
            for (int j = 0; j < NJ; j++)
                if (p < n[j]) {
                    __m256 wj = _mm256_broadcast_ss(w + j * ldw + p);
                    acc[j][0] = _mm256_fmadd_ps(wj, v0, acc[j][0]);
                    acc[j][1] = _mm256_fmadd_ps(wj, v1, acc[j][1]);
                }
        }
        for (int j = 0; j < NJ; j++) {
            _mm256_storeu_ps(o + j * ldo + i0, acc[j][0]);
            if (nv == 2) _mm256_storeu_ps(o + j * ldo + i0 + 8, acc[j][1]);
        }
    }
    for (int j = 0; j < NJ; j++)
        for (int64_t i = D8; i < D; i++) {
            float r = 0.0f;
            for (int64_t p = 0; p < n[j]; p++) r = fmaf(w[j * ldw + p], ATT_AT(m + p * stride, i), r);
            o[j * ldo + i] = r;
        }
}

TGT static void ATT_NAME(wsumq4)(const float *w, int64_t ldw, const int64_t *n, const ATT_T *m, int64_t stride, int64_t D, float *o,
                            int64_t ldo) {
    ATT_NAME(wsumq_nt)(w, ldw, 4, n, m, stride, D, o, ldo);
}

TGT static void ATT_NAME(vwsumq)(const float *w, int64_t ldw, int nq, const int64_t *n, const ATT_T *m, int64_t stride,
                            int64_t D, float *o, int64_t ldo) {
    int j = 0;
    for (; j + 4 <= nq; j += 4) ATT_NAME(wsumq4)(w + j * ldw, ldw, n + j, m, stride, D, o + j * ldo, ldo);
    for (; j < nq; j++) ATT_NAME(vwsum)(w + j * ldw, m, stride, n[j], D, o + j * ldo);
}

#undef ATT_T
#undef ATT_LOAD8
#undef ATT_AT
#undef ATT_NAME
