/*
 * gptq_kern.c - the element loops of GPTQ's column sweep and coordinate descent (algo/gptq.c): a scalar
 * reference and AVX2 / AVX-512 kernels, specified in cpu.h (lb_gptq_kernels). Every product and every
 * difference is rounded to float in the reference's order (no fused multiply-add; quad's products are exact
 * in double and summed in order), so all implementations give the same bits.
 */
#include "cpu.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

static void axpy_ref(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = y[i] - a * x[i];
}

/* t[0:w] -= er[0:nb] . U[0:nb][0:w] (row stride ld), kept in acc across the batch */
static void update_chunk_ref(float *t, const float *er, int64_t nb, const float *U, int64_t ld, int64_t w) {
    float acc[LB_GPTQ_CHUNK];
    memcpy(acc, t, (size_t)w * sizeof *acc);
    for (int64_t k = 0; k < nb; k++) {
        const float ek = er[k];
        const float *u = U + k * ld;
        for (int64_t i = 0; i < w; i++) acc[i] = acc[i] - ek * u[i];
    }
    memcpy(t, acc, (size_t)w * sizeof *acc);
}

/* acc[k] = sum over l < n, in order, of (double)ht[l ld + k] * d[l], k < n <= 32 (each product exact in double) */
static void quad_ref(const float *ht, int64_t ld, const float *d, int n, double *acc) {
    for (int k = 0; k < n; k++) acc[k] = 0;
    for (int l = 0; l < n; l++) {
        const double dl = d[l];
        for (int k = 0; k < n; k++) acc[k] += (double)ht[l * ld + k] * dl;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define AVX2 __attribute__((target("avx2")))

AVX2 static void axpy_avx2(float *y, float a, const float *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_sub_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] = y[i] - a * x[i];
}

/* a whole chunk in four registers; a narrower one goes to the reference */
AVX2 static void update_chunk_avx2(float *t, const float *er, int64_t nb, const float *U, int64_t ld, int64_t w) {
    if (w < LB_GPTQ_CHUNK) {
        update_chunk_ref(t, er, nb, U, ld, w);
        return;
    }
    __m256 a0 = _mm256_loadu_ps(t), a1 = _mm256_loadu_ps(t + 8), a2 = _mm256_loadu_ps(t + 16), a3 = _mm256_loadu_ps(t + 24);
    for (int64_t k = 0; k < nb; k++) {
        const __m256 ek = _mm256_set1_ps(er[k]);
        const float *u = U + k * ld;
        a0 = _mm256_sub_ps(a0, _mm256_mul_ps(ek, _mm256_loadu_ps(u)));
        a1 = _mm256_sub_ps(a1, _mm256_mul_ps(ek, _mm256_loadu_ps(u + 8)));
        a2 = _mm256_sub_ps(a2, _mm256_mul_ps(ek, _mm256_loadu_ps(u + 16)));
        a3 = _mm256_sub_ps(a3, _mm256_mul_ps(ek, _mm256_loadu_ps(u + 24)));
    }
    _mm256_storeu_ps(t, a0);
    _mm256_storeu_ps(t + 8, a1);
    _mm256_storeu_ps(t + 16, a2);
    _mm256_storeu_ps(t + 24, a3);
}

/* quad_ref with the 16 or 32 sums of k in vector lanes (4 doubles each); other n go to the reference */
AVX2 static void quad_avx2(const float *ht, int64_t ld, const float *d, int n, double *acc) {
    if (n != 16 && n != 32) {
        quad_ref(ht, ld, d, n, acc);
        return;
    }
    __m256d a[8];
    const int nv = n / 4;
    for (int v = 0; v < 8; v++) a[v] = _mm256_setzero_pd();
    for (int l = 0; l < n; l++) {
        const __m256d dl = _mm256_set1_pd((double)d[l]);
        const float *h = ht + l * ld;
        for (int v = 0; v < 8; v++)
            if (v < nv) a[v] = _mm256_add_pd(a[v], _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(h + 4 * v)), dl));
    }
    for (int v = 0; v < nv; v++) _mm256_storeu_pd(acc + 4 * v, a[v]);
}

/* the same with 8 doubles a vector */
__attribute__((target("avx2,avx512f"))) static void quad_avx512(const float *ht, int64_t ld, const float *d, int n, double *acc) {
    if (n != 16 && n != 32) {
        quad_ref(ht, ld, d, n, acc);
        return;
    }
    __m512d a[4];
    const int nv = n / 8;
    for (int v = 0; v < 4; v++) a[v] = _mm512_setzero_pd();
    for (int l = 0; l < n; l++) {
        const __m512d dl = _mm512_set1_pd((double)d[l]);
        const float *h = ht + l * ld;
        for (int v = 0; v < 4; v++)
            if (v < nv) a[v] = _mm512_add_pd(a[v], _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(h + 8 * v)), dl));
    }
    for (int v = 0; v < nv; v++) _mm512_storeu_pd(acc + 8 * v, a[v]);
}

/* the axpy on 512-bit vectors (the same element-wise operations), with the kernel set of lb_matmul */
__attribute__((target("avx2,avx512f"))) static void axpy_avx512(float *y, float a, const float *x, int64_t n) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_sub_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(va, _mm512_loadu_ps(x + i))));
    for (; i < n; i++) y[i] = y[i] - a * x[i];
}
#endif


static const lb_gptq_kernels GK_REF = {axpy_ref, update_chunk_ref, quad_ref};
#if defined(__x86_64__) && defined(__GNUC__)
static const lb_gptq_kernels GK_AVX2 = {axpy_avx2, update_chunk_avx2, quad_avx2};
static const lb_gptq_kernels GK_AVX512 = {axpy_avx512, update_chunk_avx2, quad_avx512};
#endif

const lb_gptq_kernels *lb_gptq_kernels_impl(int impl) {
    if (impl == 0) return &GK_REF;
#if defined(__x86_64__) && defined(__GNUC__)
    if (impl == 1 && __builtin_cpu_supports("avx2")) return &GK_AVX2;
    if (impl == 2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f")) return &GK_AVX512;
#endif
    return NULL;
}

const lb_gptq_kernels *lb_gptq_kernels_best(void) {
    if (lb_force_ref()) return &GK_REF;
    const lb_gptq_kernels *k = NULL;
    /* the vector width of lb_matmul's kernel set (LB_KERNELS=avx2 keeps the AVX2 kernels) */
    if (strcmp(lb_cpu_kernels_best()->name, "avx512vnni") == 0) k = lb_gptq_kernels_impl(2);
    if (!k) k = lb_gptq_kernels_impl(1);
    return k ? k : &GK_REF;
}
