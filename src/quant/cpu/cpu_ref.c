/*
 * cpu_ref.c - the scalar reference of the CPU kernels (the specification; see cpu.h for the arithmetic
 * order), the activation quantizer every implementation shares, and the choice of implementation.
 * Weight layouts: docs/formats.md section 2 (ggml's block formats).
 */
#include "cpu.h"

#include "../blocks.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- layouts ------------------------------ */

size_t lb_qrow_bytes(int64_t K, int64_t be) {
    return LB_ALIGN64(K) + 2 * LB_ALIGN64((size_t)(K / 16) * 2) + 2 * LB_ALIGN64((size_t)(K / be) * 4);
}

size_t lb_act_bytes(int64_t K, int64_t be) {
    return LB_ALIGN64(K) + LB_ALIGN64((size_t)(K / 16) * 2) + LB_ALIGN64((size_t)(K / be) * 4) + LB_ALIGN64((size_t)(K / 32) * 4);
}

size_t lb_qtile_bytes(int64_t K, int64_t be) {
    size_t n = (size_t)K * LB_QTILE_ROWS, v = 4 * LB_QTILE_ROWS;
    return LB_ALIGN64(n) + LB_ALIGN64((size_t)(K / 16) * v) + 2 * LB_ALIGN64((size_t)(K / 32) * v) +
           2 * LB_ALIGN64((size_t)(K / be) * v);
}

/* elements per scale group in a tile: the types whose 16-element scales come in equal pairs use 32 */
static int qtile_sg(lb_type t, int64_t be) {
    if (be == 32 || t == LB_TYPE_Q4_K || t == LB_TYPE_Q5_K || t == LB_TYPE_IQ4_XS) return 32;
    return 16;
}

static int32_t pair16(int16_t lo, int16_t hi) { return (int32_t)((uint32_t)(uint16_t)lo | ((uint32_t)(uint16_t)hi << 16)); }

lb_qtile lb_qtile_pack(lb_type t, lb_unpack_fn unpack, const uint8_t *rows, size_t row_bytes, int R, int64_t K, void *buf,
                       void *tmp) {
    const int N = LB_QTILE_ROWS;
    int64_t be = lb_type_traits_get(t)->block_elems;
    uint8_t *p = buf;
    lb_qtile w;
    w.u = p, p += LB_ALIGN64((size_t)K * N);
    w.sc = (int32_t *)p, p += LB_ALIGN64((size_t)(K / 16) * 4 * N);
    w.gsc = (int32_t *)p, p += LB_ALIGN64((size_t)(K / 32) * 4 * N);
    w.gmn = (int32_t *)p, p += LB_ALIGN64((size_t)(K / 32) * 4 * N);
    w.d = (float *)p, p += LB_ALIGN64((size_t)(K / be) * 4 * N);
    w.dm = (float *)p;
    w.sg = qtile_sg(t, be);
    w.has_min = lb_qtype_has_min(t);
    w.type = t;
    lb_qrow q = lb_qrow_at(tmp, K, be);
    uint32_t flip = w.has_min ? 0 : 0x80808080u; /* q + 128 in each byte */
    for (int r = 0; r < N; r++) {
        if (r < R) unpack(rows + (size_t)r * row_bytes, K, &q);
        else memset(tmp, 0, lb_qrow_bytes(K, be));
        uint32_t *u = (uint32_t *)w.u;
        for (int64_t s = 0; s < K / 4; s++) {
            uint32_t v;
            memcpy(&v, q.q + 4 * s, 4);
            u[s * N + r] = v ^ flip;
        }
        for (int64_t g = 0; g < K / w.sg; g++) w.sc[g * N + r] = q.sc[g * w.sg / 16];
        for (int64_t g = 0; g < K / 32; g++) {
            w.gsc[g * N + r] = pair16((int16_t)(-128 * q.sc[2 * g]), (int16_t)(-128 * q.sc[2 * g + 1]));
            w.gmn[g * N + r] = pair16(q.mn[2 * g], q.mn[2 * g + 1]);
        }
        for (int64_t b = 0; b < K / be; b++) {
            w.d[b * N + r] = q.d[b];
            w.dm[b * N + r] = q.dm[b];
        }
    }
    return w;
}

#define ROUND_MAGIC 12582912.0f /* 1.5 * 2^23 */

void lb_act_quantize(const float *x, int64_t K, int64_t be, const lb_act *a) {
    for (int64_t b = 0; b < K / be; b++) {
        const float *xb = x + b * be;
        float amax = 0.0f;
        for (int64_t i = 0; i < be; i++) {
            float v = fabsf(xb[i]);
            if (v > amax) amax = v;
        }
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        a->d[b] = amax / 127.0f;
        for (int64_t i = 0; i < be; i++) {
            float v = xb[i] * id;
            v = v >= -127.0f ? v : -127.0f; /* NaN -> -127 */
            v = v <= 127.0f ? v : 127.0f;
            /* round to nearest, ties to even (exact for |v| < 2^22), as lrintf in the default mode */
            a->q[b * be + i] = (int8_t)(int)((v + ROUND_MAGIC) - ROUND_MAGIC);
        }
    }
    for (int64_t g = 0; g < K / 16; g++) {
        int s = 0;
        for (int i = 0; i < 16; i++) s += a->q[16 * g + i];
        a->bsum[g] = (int16_t)s;
    }
    lb_act_fill_off(a, K);
}

bool lb_qtype_has_min(lb_type t) {
    return t == LB_TYPE_Q4_1 || t == LB_TYPE_Q5_1 || t == LB_TYPE_Q2_K || t == LB_TYPE_Q4_K || t == LB_TYPE_Q5_K;
}

/* ---------------------------------------------------------------- unpacking ---------------------------- */

#include "unpack_ref.h"

/* ---------------------------------------------------------------- products ----------------------------- */

static void qdot_ref(const lb_qrow *w, const lb_act *a, int nt, int64_t K, int64_t be, bool has_min, float *out,
                     int64_t ldo) {
    for (int t = 0; t < nt; t++) {
        float acc = 0.0f;
        for (int64_t b = 0; b < K / be; b++) {
            int32_t S = 0;
            for (int64_t e = b * be; e < (b + 1) * be; e++) S += (int32_t)w->sc[e / 16] * ((int32_t)w->q[e] * (int32_t)a[t].q[e]);
            acc = fmaf(w->d[b] * a[t].d[b], (float)S, acc);
            if (has_min) {
                int32_t M = 0;
                for (int64_t g = b * be / 16; g < (b + 1) * be / 16; g++) M += (int32_t)w->mn[g] * (int32_t)a[t].bsum[g];
                acc = fmaf(w->dm[b] * a[t].d[b], (float)M, acc);
            }
        }
        out[t * ldo] = acc;
    }
}

/*
 * The float-weight dot order (cpu.h) over rows of T read by AT, and the attention helpers built on it: REF_ATT(, ...)
 * for F32 rows (fdot_ref is also the float weights' product), REF_ATT(_h, ...) for F16 rows, each element converted
 * exactly first. vdots: each score the dot order; vwsum: o[i] accumulates w[p] * m[p][i] by fmaf in order of p.
 */
#define AT_F32(b, k) ((b)[k])
#define AT_F16(b, k) lb_fp16_to_f32((b)[k])
#define REF_ATT(SUF, T, AT)                                                                                         \
    static float fdot##SUF##_ref(const float *a, const T *b, int64_t K) {                                          \
        float acc[8] = {0};                                                                                         \
        int64_t K8 = K - K % 8;                                                                                     \
        for (int64_t k = 0; k < K8; k++) acc[k % 8] = fmaf(a[k], AT(b, k), acc[k % 8]);                             \
        float s = lb_reduce8(acc);                                                                                  \
        for (int64_t k = K8; k < K; k++) s = fmaf(a[k], AT(b, k), s);                                               \
        return s;                                                                                                   \
    }                                                                                                               \
    static void vdots##SUF##_ref(const float *q, const T *m, int64_t stride, int64_t n, int64_t D, float *s) {     \
        for (int64_t p = 0; p < n; p++) s[p] = fdot##SUF##_ref(q, m + p * stride, D);                               \
    }                                                                                                               \
    static void vwsum##SUF##_ref(const float *w, const T *m, int64_t stride, int64_t n, int64_t D, float *o) {     \
        for (int64_t i = 0; i < D; i++) o[i] = 0.0f;                                                                \
        for (int64_t p = 0; p < n; p++)                                                                             \
            for (int64_t i = 0; i < D; i++) o[i] = fmaf(w[p], AT(m + p * stride, i), o[i]);                         \
    }                                                                                                               \
    static void vdotsq##SUF##_ref(const float *q, int64_t ldq, int nq, const T *m, int64_t stride, int64_t n, int64_t D,   \
                                  float *s, int64_t lds) {                                                          \
        for (int j = 0; j < nq; j++) vdots##SUF##_ref(q + j * ldq, m, stride, n, D, s + j * lds);                   \
    }                                                                                                               \
    static void vwsumq##SUF##_ref(const float *w, int64_t ldw, int nq, const int64_t *n, const T *m, int64_t stride,      \
                                  int64_t D, float *o, int64_t ldo) {                                               \
        for (int j = 0; j < nq; j++) vwsum##SUF##_ref(w + j * ldw, m, stride, n[j], D, o + j * ldo);                \
    }
REF_ATT(, float, AT_F32)
REF_ATT(_h, uint16_t, AT_F16)

static void ftile_ref(const float *x, int64_t T, int64_t K, const float *wt, int R, float *out, int64_t ldo) {
    for (int64_t t = 0; t < T; t++)
        for (int r = 0; r < R; r++) out[t * ldo + r] = fdot_ref(x + t * K, wt + (int64_t)r * K, K);
}

static void fconv_ref(const lb_weight *w, int64_t r0, int R, float *dst) {
    for (int r = 0; r < R; r++) lb_weight_row_f32(w, r0 + r, dst + (int64_t)r * w->cols);
}

/* softmax of s * scale (cpu.h): the max, lb_expf, 8 double partials by p mod 8, one reciprocal */
static void softmax_ref(float *s, int64_t n, float scale) {
    float mx = -INFINITY;
    for (int64_t p = 0; p < n; p++) {
        float v = s[p] * scale;
        s[p] = v;
        mx = v > mx ? v : mx;
    }
    double d[8] = {0};
    for (int64_t p = 0; p < n; p++) {
        s[p] = lb_expf(s[p] - mx);
        d[p % 8] += (double)s[p];
    }
    double sum = lb_reduce8d(d);
    if (sum != sum) {
        float nan = lb_f32_bits(LB_NAN_BITS);
        for (int64_t p = 0; p < n; p++) s[p] = nan;
        return;
    }
    float inv = (float)(1.0 / sum);
    for (int64_t p = 0; p < n; p++) s[p] *= inv;
}

static void swiglu_ref(float *g, const float *u, int64_t n, int64_t rows, int64_t ld) {
    for (int64_t r = 0; r < rows; r++, g += ld, u += ld)
        for (int64_t i = 0; i < n; i++) g[i] = lb_swiglu1(g[i], u[i]);
}

static void vexp_ref(const float *x, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = lb_expf(x[i]);
}

/* ---------------------------------------------------------------- dispatch ----------------------------- */

static const lb_cpu_kernels REF = {
    .name = "ref",
    .unpack = {[LB_TYPE_Q4_0] = unpack_q4_0_ref, [LB_TYPE_Q4_1] = unpack_q4_1_ref, [LB_TYPE_Q5_0] = unpack_q5_0_ref,
               [LB_TYPE_Q5_1] = unpack_q5_1_ref, [LB_TYPE_Q8_0] = unpack_q8_0_ref, [LB_TYPE_Q2_K] = unpack_q2_K_ref,
               [LB_TYPE_Q3_K] = unpack_q3_K_ref, [LB_TYPE_Q4_K] = unpack_q4_K_ref, [LB_TYPE_Q5_K] = unpack_q5_K_ref,
               [LB_TYPE_Q6_K] = unpack_q6_K_ref, [LB_TYPE_IQ4_NL] = unpack_iq4_nl_ref,
               [LB_TYPE_IQ4_XS] = unpack_iq4_xs_ref},
    .qdot = qdot_ref,
    .actq = lb_act_quantize,
    .ftile = ftile_ref,
    .fconv = fconv_ref,
    .vdots = vdots_ref,
    .vwsum = vwsum_ref,
    .vdotsq = vdotsq_ref,
    .vwsumq = vwsumq_ref,
    .vdots_h = vdots_h_ref,
    .vwsum_h = vwsum_h_ref,
    .vdotsq_h = vdotsq_h_ref,
    .vwsumq_h = vwsumq_h_ref,
    .softmax = softmax_ref,
    .swiglu = swiglu_ref,
    .vexp = vexp_ref,
    .qkx = lb_qkx_steps_ref,
};

const lb_cpu_kernels *lb_cpu_kernels_ref(void) { return &REF; }

/* chosen once (pthread_once): the first call decides, later calls and other threads read the result */
static const lb_cpu_kernels *best_kernels = &REF;
static pthread_once_t best_once = PTHREAD_ONCE_INIT;

static void choose_best(void) {
    const lb_cpu_kernels *k = NULL;
    const char *want = getenv("LB_KERNELS"); /* "avx2" caps the choice at AVX2 (benchmarks, tests) */
    if (!lb_force_ref()) {
        if (!want || strcmp(want, "avx2") != 0) k = lb_cpu_kernels_avx512vnni();
        if (!k) k = lb_cpu_kernels_avx2();
    }
    best_kernels = k ? k : &REF;
}

const lb_cpu_kernels *lb_cpu_kernels_best(void) {
    if (pthread_once(&best_once, choose_best) != 0) return &REF;
    return best_kernels;
}
