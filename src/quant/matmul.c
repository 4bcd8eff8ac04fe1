/*
 * matmul.c - the matrix product of the forward pass (see matmul.h).
 *
 * Per task: convert MM_TILE_ROWS rows of W to f32 (F32 weights are used in place), then run a register-
 * blocked micro-kernel over all T activation rows. The AVX2+FMA kernel computes 4 weight rows x 3
 * tokens with 8-lane accumulators; its summation order depends only on K, never on the tiling by threads.
 */
#include "matmul.h"

#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------- reference ---------------------------- */

void lb_matmul_ref(const float *x, int64_t T, const lb_weight *w, float *out, int64_t ldo) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < w->rows; n++) {
            double acc = 0.0;
            for (int64_t k = 0; k < w->cols; k++) acc += (double)x[t * w->cols + k] * (double)lb_weight_get(w, n, k);
            out[t * ldo + n] = (float)acc;
        }
}

static void tile_generic(const float *x, int64_t T, int64_t K, const float *wt, int R, float *out, int64_t ldo) {
    for (int64_t t = 0; t < T; t++)
        for (int r = 0; r < R; r++) {
            const float *a = x + t * K, *b = wt + (int64_t)r * K;
            float acc[8] = {0};
            int64_t k = 0;
            for (; k + 8 <= K; k += 8)
                for (int j = 0; j < 8; j++) acc[j] += a[k + j] * b[k + j];
            float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            for (; k < K; k++) s += a[k] * b[k];
            out[t * ldo + r] = s;
        }
}

static void dots_generic(const float *q, const float *m, int64_t stride, int64_t n, int64_t D, float *s) {
    for (int64_t p = 0; p < n; p++) {
        const float *k = m + p * stride;
        float acc = 0.0f;
        for (int64_t i = 0; i < D; i++) acc += q[i] * k[i];
        s[p] = acc;
    }
}

static void wsum_generic(const float *w, const float *m, int64_t stride, int64_t n, int64_t D, float *o) {
    for (int64_t i = 0; i < D; i++) o[i] = 0.0f;
    for (int64_t p = 0; p < n; p++)
        for (int64_t i = 0; i < D; i++) o[i] += w[p] * m[p * stride + i];
}

static void convert_generic(const lb_weight *w, int64_t r0, int R, float *dst) {
    for (int r = 0; r < R; r++) lb_weight_row_f32(w, r0 + r, dst + (int64_t)r * w->cols);
}

/* ---------------------------------------------------------------- AVX2 + FMA --------------------------- */
#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* out[t][r] for up to 4 rows and 3 tokens: 12 independent 8-lane accumulators; tail of K scalar. */
AVX2 static void kernel_4x3(const float *x, int64_t nt, int64_t K, const float *wt, int nr, float *out, int64_t ldo) {
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
            float s = hsum8(acc[r][t]);
            for (int64_t j = k; j < K; j++) s += xr[t][j] * wr[r][j];
            out[t * ldo + r] = s;
        }
}

/* Tokens per cache block: keeps a block of activation rows resident while all tile rows pass over it. */
#define MM_TOKEN_BLOCK 24

AVX2 static void tile_avx2(const float *x, int64_t T, int64_t K, const float *wt, int R, float *out, int64_t ldo) {
    for (int64_t tb = 0; tb < T; tb += MM_TOKEN_BLOCK) {
        int64_t te = T - tb < MM_TOKEN_BLOCK ? T : tb + MM_TOKEN_BLOCK;
        for (int r = 0; r < R; r += 4)
            for (int64_t t = tb; t < te; t += 3) {
                int64_t nt = te - t < 3 ? te - t : 3;
                kernel_4x3(x + t * K, nt, K, wt + (int64_t)r * K, R - r < 4 ? R - r : 4, out + t * ldo + r, ldo);
            }
    }
}

AVX2 static void dots_avx2(const float *q, const float *m, int64_t stride, int64_t n, int64_t D, float *s) {
    if (D % 8) {
        dots_generic(q, m, stride, n, D, s);
        return;
    }
    for (int64_t p = 0; p < n; p++) {
        const float *k = m + p * stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= D; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(k + i + 8), a1);
        }
        if (i < D) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), a0);
        s[p] = hsum8(_mm256_add_ps(a0, a1));
    }
}

AVX2 static void wsum_avx2(const float *w, const float *m, int64_t stride, int64_t n, int64_t D, float *o) {
    if (D % 8 || D > 256) {
        wsum_generic(w, m, stride, n, D, o);
        return;
    }
    __m256 acc[32];
    int64_t nv = D / 8;
    for (int64_t j = 0; j < nv; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t p = 0; p < n; p++) {
        __m256 wp = _mm256_set1_ps(w[p]);
        const float *v = m + p * stride;
        for (int64_t j = 0; j < nv; j++) acc[j] = _mm256_fmadd_ps(wp, _mm256_loadu_ps(v + 8 * j), acc[j]);
    }
    for (int64_t j = 0; j < nv; j++) _mm256_storeu_ps(o + 8 * j, acc[j]);
}

AVX2 static void convert_avx2(const lb_weight *w, int64_t r0, int R, float *dst) {
    int64_t K = w->cols, n = (int64_t)R * K;
    const uint16_t *src = (const uint16_t *)w->data + r0 * K;
    int64_t i = 0;
    if (w->type == LB_TYPE_F16) {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
        for (; i < n; i++) dst[i] = lb_fp16_to_f32(src[i]);
    } else if (w->type == LB_TYPE_BF16) {
        for (; i + 8 <= n; i += 8) {
            __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        }
        for (; i < n; i++) dst[i] = lb_bf16_to_f32(src[i]);
    } else {
        convert_generic(w, r0, R, dst);
    }
}
#endif

/* ---------------------------------------------------------------- dispatch ----------------------------- */

typedef void (*tile_fn)(const float *, int64_t, int64_t, const float *, int, float *, int64_t);
typedef void (*convert_fn)(const lb_weight *, int64_t, int, float *);

static int use_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
#if defined(__x86_64__)
        cached = !lb_force_ref() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                 lb_cpu_has_f16c();
#else
        cached = 0;
#endif
    }
    return cached;
}

void lb_vec_dots(const float *q, const float *m, int64_t stride, int64_t n, int64_t D, float *s) {
#if defined(__x86_64__)
    if (use_avx2()) {
        dots_avx2(q, m, stride, n, D, s);
        return;
    }
#endif
    dots_generic(q, m, stride, n, D, s);
}

void lb_vec_wsum(const float *w, const float *m, int64_t stride, int64_t n, int64_t D, float *o) {
#if defined(__x86_64__)
    if (use_avx2()) {
        wsum_avx2(w, m, stride, n, D, o);
        return;
    }
#endif
    wsum_generic(w, m, stride, n, D, o);
}

const char *lb_matmul_impl(void) { return use_avx2() ? "avx2" : "ref"; }

typedef struct mm_job {
    const float *x;
    int64_t T;
    const lb_weight *w;
    float *out;
    int64_t ldo;
    float *scratch;
    size_t scratch_stride;
    tile_fn tile;
    convert_fn convert;
} mm_job;

static void mm_task(void *arg, int64_t task, int thread) {
    const mm_job *j = arg;
    int64_t r0 = task * MM_TILE_ROWS, K = j->w->cols;
    int R = (int)(j->w->rows - r0 < MM_TILE_ROWS ? j->w->rows - r0 : MM_TILE_ROWS);
    const float *wt;
    if (j->w->type == LB_TYPE_F32) {
        wt = (const float *)j->w->data + r0 * K;
    } else {
        float *buf = j->scratch + (size_t)thread * j->scratch_stride;
        j->convert(j->w, r0, R, buf);
        wt = buf;
    }
    j->tile(j->x, j->T, K, wt, R, j->out + r0, j->ldo);
}

void lb_matmul(lb_pool *pool, float *scratch, const float *x, int64_t T, const lb_weight *w, float *out, int64_t ldo) {
    mm_job j = {x, T, w, out, ldo, scratch, lb_matmul_scratch_floats(w->cols), tile_generic, convert_generic};
#if defined(__x86_64__)
    if (use_avx2()) {
        j.tile = tile_avx2;
        j.convert = convert_avx2;
    }
#endif
    lb_pool_run(pool, (w->rows + MM_TILE_ROWS - 1) / MM_TILE_ROWS, mm_task, &j);
}
