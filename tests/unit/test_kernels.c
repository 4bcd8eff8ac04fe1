/*
 * test_kernels.c - the CPU kernels (quant/cpu) against their scalar reference: for every weight type of the
 * type table, unpacked rows are byte-identical and products bit-identical between the reference, AVX2 and
 * AVX-512 VNNI (where the CPU has them) on odd sizes; lb_matmul is identical for 1, 2 and 3 threads; the
 * reference itself agrees with a float64 dot of ggml's dequantized weights and the quantized activations;
 * LB_FORCE_REF=1 pins the reference; lb_expf against exp in double; the attention, softmax, SwiGLU and exponential
 * kernels bit for bit (odd lengths, NaN and infinities).
 */
#include "model/model.h"
#include "quant/cpu/cpu.h"
#include "quant/matmul.h"
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

static uint64_t rng = 88172645463325252ULL;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static const lb_cpu_kernels *impls[3];
static int n_impls;

static bool same_bytes(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

/* unpack + qdot of every implementation equal to the reference; the reference near a float64 product */
static void check_type(lb_type t, int64_t N, int64_t K, int64_t T) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    int64_t be = tt->block_elems;
    size_t rb = lb_type_row_size(t, K);
    float *wf = malloc((size_t)(N * K) * sizeof *wf), *x = malloc((size_t)(T * K) * sizeof *x);
    uint8_t *wq = malloc(rb * (size_t)N);
    for (int64_t i = 0; i < N * K; i++) wf[i] = frand() * (1.0f + (float)(i % 7));
    for (int64_t i = 0; i < T * K; i++) x[i] = frand() * (i % 13 == 0 ? 8.0f : 1.0f);
    tt->quantize_ref(wf, wq, N, K, NULL);
    lb_weight w = {t, wq, N, K};

    /* unpacked rows and single dots */
    size_t qb = lb_qrow_bytes(K, be), ab = lb_act_bytes(K, be);
    void *rbuf = aligned_alloc(64, qb), *ibuf = aligned_alloc(64, qb), *abuf = aligned_alloc(64, ab * 4);
    lb_qrow ref_row = lb_qrow_at(rbuf, K, be), row = lb_qrow_at(ibuf, K, be);
    lb_act acts[4];
    for (int i = 0; i < 4; i++) {
        acts[i] = lb_act_at((uint8_t *)abuf + ab * (size_t)i, K, be);
        lb_act_quantize(x + (i % T) * K, K, be, &acts[i]);
    }
    bool has_min = lb_qtype_has_min(t);
    float *ref_tok0 = malloc((size_t)N * sizeof *ref_tok0), *gr = malloc((size_t)N * sizeof *gr);
    double *deq = malloc((size_t)K * sizeof *deq);
    float *drow = malloc((size_t)K * sizeof *drow);
    for (int64_t n = 0; n < N; n++) {
        const void *src = wq + rb * (size_t)n;
        memset(rbuf, 0, qb);
        impls[0]->unpack[t](src, K, &ref_row);
        float ref_out[4];
        impls[0]->qdot(&ref_row, acts, 4, K, be, has_min, ref_out, 1);
        ref_tok0[n] = ref_out[0];
        /* the reference against float64: dequantized weight . dequantized activation */
        lb_weight_row_f32(&w, n, drow);
        double exact = 0, mag = 0;
        for (int64_t k = 0; k < K; k++) {
            double a = (double)acts[0].q[k] * acts[0].d[k / be];
            exact += (double)drow[k] * a;
            mag += fabs((double)drow[k] * a);
        }
        /* f32 rounding bound: each lane partial takes K / 8 roundings at most, plus the block scale product,
         * the reduction and the min term: (K / 8 + 16) ulp of the sum of magnitudes */
        double tol = ((double)K / 8 + 16) * FLT_EPSILON * mag;
        CHECK(fabs(ref_out[0] - exact) <= tol + 1e-30, "%s K=%lld row %lld: ref %g vs float64 %g (|.| %g)",
              tt->name, (long long)K, (long long)n, ref_out[0], exact, mag);
        for (int i = 1; i < n_impls; i++) {
            memset(ibuf, 0x5a, qb);
            impls[i]->unpack[t](src, K, &row);
            bool same = same_bytes(row.q, ref_row.q, (size_t)K) && same_bytes(row.sc, ref_row.sc, (size_t)K / 16 * 2) &&
                        same_bytes(row.mn, ref_row.mn, (size_t)K / 16 * 2) && same_bytes(row.d, ref_row.d, (size_t)(K / be) * 4) &&
                        same_bytes(row.dm, ref_row.dm, (size_t)(K / be) * 4);
            CHECK(same, "%s %s K=%lld row %lld: unpacked row differs from the reference", impls[i]->name, tt->name,
                  (long long)K, (long long)n);
            for (int nt = 1; nt <= 4; nt++) {
                float o[4];
                impls[i]->qdot(&ref_row, acts, nt, K, be, has_min, o, 1);
                CHECK(same_bytes(o, ref_out, (size_t)nt * 4), "%s %s K=%lld nt=%d: dot %.9g vs reference %.9g", impls[i]->name,
                      tt->name, (long long)K, nt, o[0], ref_out[0]);
            }
        }
    }
    for (int i = 1; i < n_impls; i++) /* several rows at once: every count up to N */
        for (int R = 1; impls[i]->gemvr[t] && R <= N; R++) {
            impls[i]->gemvr[t](wq, rb, R, K, &acts[0], gr);
            CHECK(same_bytes(gr, ref_tok0, (size_t)R * 4), "%s %s K=%lld: %d-row one-token product differs from the reference",
                  impls[i]->name, tt->name, (long long)K, R);
        }
    free(ref_tok0), free(gr);
    free(deq), free(drow), free(rbuf), free(ibuf), free(abuf), free(wf), free(x), free(wq);
}

/* every implementation's many-token tile product (qgemm), whichever lb_matmul picks: the 16-row tiles of w
 * (the last one partial) against T tokens, each output the bits of ref (lb_matmul_ref's (T, N)) */
static void check_qgemm(const lb_weight *w, const float *x, int64_t T, const float *ref) {
    const int64_t N = w->rows, K = w->cols, be = lb_type_traits_get(w->type)->block_elems;
    const size_t astride = LB_ALIGN64(lb_act_bytes(K, be)), rb = lb_weight_row_bytes(w);
    uint8_t *act = aligned_alloc(64, astride * (size_t)T);
    void *tile = aligned_alloc(64, LB_ALIGN64(lb_qtile_bytes(K, be))), *tmp = aligned_alloc(64, LB_ALIGN64(lb_qrow_bytes(K, be)));
    float *out = malloc((size_t)(T * N) * sizeof *out);
    for (int64_t t = 0; t < T; t++) {
        lb_act a = lb_act_at(act + (size_t)t * astride, K, be);
        lb_act_quantize(x + t * K, K, be, &a);
    }
    for (int i = 1; i < n_impls; i++) {
        if (!impls[i]->qgemm) continue;
        memset(out, 0, (size_t)(T * N) * sizeof *out);
        for (int64_t r0 = 0; r0 < N; r0 += LB_QTILE_ROWS) {
            int R = N - r0 < LB_QTILE_ROWS ? (int)(N - r0) : LB_QTILE_ROWS;
            lb_qtile q = lb_qtile_pack(w->type, impls[i]->unpack[w->type], (const uint8_t *)w->data + (size_t)r0 * rb, rb, R, K, tile, tmp);
            impls[i]->qgemm(&q, R, act, astride, T, K, be, out + r0, N);
        }
        CHECK(same_bytes(out, ref, (size_t)(T * N) * 4), "%s %s qgemm N=%lld K=%lld T=%lld differs from the reference", impls[i]->name,
              lb_type_name(w->type), (long long)N, (long long)K, (long long)T);
    }
    free(act), free(tile), free(tmp), free(out);
}

/* lb_matmul for 1, 2, 3 threads and lb_matmul_ref give the same bits */
static void check_matmul(lb_type t, int64_t N, int64_t K, int64_t T) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    size_t rb = lb_type_row_size(t, K);
    float *wf = malloc((size_t)(N * K) * sizeof *wf), *x = malloc((size_t)(T * K) * sizeof *x);
    uint8_t *wq = malloc(rb * (size_t)N + 4);
    for (int64_t i = 0; i < N * K; i++) wf[i] = frand();
    for (int64_t i = 0; i < T * K; i++) x[i] = frand();
    if (tt->is_quant) tt->quantize_ref(wf, wq, N, K, NULL);
    else tt->from_float_ref(wf, wq, N * K);
    lb_weight w = {t, wq, N, K};
    float *ref = malloc((size_t)(T * N) * sizeof *ref), *out = malloc((size_t)(T * N) * sizeof *out);
    float *scr = malloc(lb_matmul_scratch_floats(K, T, 3) * sizeof(float));
    lb_matmul_ref(scr, x, T, &w, ref, N);
    for (int nt = 1; nt <= 3; nt++) {
        lb_pool *p = lb_pool_new(nt);
        memset(out, 0, (size_t)(T * N) * sizeof *out);
        lb_matmul(p, scr, x, T, &w, out, N);
        CHECK(same_bytes(out, ref, (size_t)(T * N) * 4), "%s N=%lld K=%lld T=%lld threads=%d (%s): differs from the reference",
              tt->name, (long long)N, (long long)K, (long long)T, nt, lb_matmul_impl());
        lb_pool_free(p);
    }
    if (tt->is_quant) check_qgemm(&w, x, T, ref);
    if (!tt->is_quant) /* each implementation's float kernels, whichever lb_matmul picks */
        for (int i = 1; i < n_impls; i++) {
            void *slot = aligned_alloc(64, (lb_fgemm_slot_bytes(K) + 63) & ~(size_t)63);
            for (int64_t r0 = 0; r0 < N; r0 += 16) {
                int R = N - r0 < 16 ? (int)(N - r0) : 16;
                memset(out, 0, (size_t)(T * N) * sizeof *out);
                if (impls[i]->fgemv) {
                    impls[i]->fgemv(&w, r0, R, x, out);
                    CHECK(same_bytes(out, ref + r0, (size_t)R * 4), "%s %s fgemv rows %lld+%d K=%lld differs", impls[i]->name,
                          tt->name, (long long)r0, R, (long long)K);
                }
                if (impls[i]->fgemm) {
                    impls[i]->fgemm(&w, r0, R, x, T, out, N, slot);
                    bool same = true;
                    for (int64_t tk = 0; tk < T; tk++) same = same && same_bytes(out + tk * N, ref + tk * N + r0, (size_t)R * 4);
                    CHECK(same, "%s %s fgemm rows %lld+%d K=%lld T=%lld differs", impls[i]->name, tt->name, (long long)r0, R,
                          (long long)K, (long long)T);
                }
            }
            free(slot);
        }
    if (!tt->is_quant) { /* float weights: the reference near float64 */
        double worst = 0;
        for (int64_t tk = 0; tk < T; tk++)
            for (int64_t n = 0; n < N; n++) {
                double e = 0, mag = 0;
                for (int64_t k = 0; k < K; k++) {
                    double v = (double)x[tk * K + k] * lb_weight_get(&w, n, k);
                    e += v, mag += fabs(v);
                }
                double r = fabs(ref[tk * N + n] - e) / (mag + 1e-30);
                if (r > worst) worst = r;
            }
        CHECK(worst < ((double)K / 8 + 16) * FLT_EPSILON, "%s K=%lld: relative error %g against float64", tt->name, (long long)K, worst);
    }
    free(wf), free(x), free(wq), free(ref), free(out), free(scr);
}

/* lb_matmul_multi on weights of mixed types (shared and separate activation formats) gives the bits of
 * lb_matmul_ref on each */
static void check_multi(const lb_type *types, int n, int64_t K, int64_t T) {
    lb_weight w[6];
    const lb_weight *wp[6];
    float *out[6], *ref[6];
    int64_t ldo[6], rows[6] = {37, 16, 5, 40, 3, 21};
    float *x = malloc((size_t)(T * K) * sizeof *x), *wf = malloc((size_t)(40 * K) * sizeof *wf);
    for (int64_t i = 0; i < T * K; i++) x[i] = frand();
    float *scr = malloc(lb_matmul_scratch_floats(K, T, 3) * sizeof(float));
    for (int i = 0; i < n; i++) {
        const lb_type_traits *tt = lb_type_traits_get(types[i]);
        void *q = malloc(lb_type_row_size(types[i], K) * (size_t)rows[i]);
        for (int64_t e = 0; e < rows[i] * K; e++) wf[e] = frand();
        if (tt->is_quant) tt->quantize_ref(wf, q, rows[i], K, NULL);
        else tt->from_float_ref(wf, q, rows[i] * K);
        w[i] = (lb_weight){types[i], q, rows[i], K};
        wp[i] = &w[i];
        ldo[i] = rows[i] + i;
        out[i] = calloc((size_t)(T * ldo[i]), sizeof(float));
        ref[i] = calloc((size_t)(T * ldo[i]), sizeof(float));
        lb_matmul_ref(scr, x, T, &w[i], ref[i], ldo[i]);
    }
    lb_pool *p = lb_pool_new(2);
    lb_matmul_multi(p, scr, x, T, wp, out, ldo, n);
    for (int i = 0; i < n; i++) {
        CHECK(same_bytes(out[i], ref[i], (size_t)(T * ldo[i]) * 4), "lb_matmul_multi weight %d (%s) of %d, K=%lld T=%lld differs", i,
              lb_type_traits_get(types[i])->name, n, (long long)K, (long long)T);
        free(out[i]), free(ref[i]), free((void *)w[i].data);
    }
    lb_pool_free(p);
    free(x), free(wf), free(scr);
}

/* every implementation's activation quantizer gives lb_act_quantize's bytes, NaN, infinities, zero blocks,
 * ties of the rounding and signed zeros included */
static void check_actq(int64_t K, int64_t be) {
    size_t ab = lb_act_bytes(K, be);
    float *x = malloc((size_t)K * sizeof *x);
    void *b0 = aligned_alloc(64, ab), *b1 = aligned_alloc(64, ab);
    for (int64_t i = 0; i < K; i++) x[i] = frand() * (i % 11 == 0 ? 100.0f : 1.0f);
    for (int64_t i = 0; i < be; i++) x[i] = (float)(i % 9) - 4.0f + 0.5f * (float)(i % 2); /* ties at amax 127 */
    if (K > be) x[be] = 127.0f;
    if (K >= 3 * be) {
        for (int64_t i = 2 * be; i < 3 * be; i++) x[i] = (i % 2) ? -0.0f : 0.0f; /* a zero block */
    }
    if (K >= 4 * be) x[3 * be + 5] = NAN, x[3 * be + 7] = INFINITY;
    if (K >= 5 * be) x[4 * be + 1] = -INFINITY;
    lb_act r = lb_act_at(b0, K, be), o = lb_act_at(b1, K, be);
    memset(b0, 0, ab);
    lb_act_quantize(x, K, be, &r);
    for (int64_t g = 0; g < K / 32; g++) {
        int32_t sum = 0;
        for (int64_t e = 32 * g; e < 32 * g + 32; e++) sum += r.q[e];
        CHECK(r.off[g] == -128 * sum, "lb_act_quantize K=%lld be=%lld: off[%lld] = %d, not -128 * %d", (long long)K, (long long)be,
              (long long)g, (int)r.off[g], (int)sum);
    }
    for (int i = 0; i < n_impls; i++) {
        memset(b1, 0x5a, ab);
        impls[i]->actq(x, K, be, &o);
        CHECK(same_bytes(r.q, o.q, (size_t)K) && same_bytes(r.bsum, o.bsum, (size_t)K / 16 * 2) &&
                  same_bytes(r.d, o.d, (size_t)(K / be) * 4) && same_bytes(r.off, o.off, (size_t)(K / 32) * 4),
              "%s activation quantizer K=%lld be=%lld differs from lb_act_quantize", impls[i]->name, (long long)K, (long long)be);
    }
    free(x), free(b0), free(b1);
}

static void check_attention(int64_t n, int64_t D) {
    int64_t stride = D + 3;
    float *q = malloc((size_t)D * 4), *m = malloc((size_t)(n * stride) * 4), *w = malloc((size_t)n * 4);
    float *s0 = malloc((size_t)n * 4), *s1 = malloc((size_t)n * 4), *o0 = malloc((size_t)D * 4), *o1 = malloc((size_t)D * 4);
    for (int64_t i = 0; i < D; i++) q[i] = frand();
    for (int64_t i = 0; i < n * stride; i++) m[i] = frand();
    for (int64_t i = 0; i < n; i++) w[i] = frand();
    impls[0]->vdots(q, m, stride, n, D, s0);
    impls[0]->vwsum(w, m, stride, n, D, o0);
    for (int i = 1; i < n_impls; i++) {
        impls[i]->vdots(q, m, stride, n, D, s1);
        impls[i]->vwsum(w, m, stride, n, D, o1);
        CHECK(same_bytes(s0, s1, (size_t)n * 4), "%s vdots n=%lld D=%lld differs", impls[i]->name, (long long)n, (long long)D);
        CHECK(same_bytes(o0, o1, (size_t)D * 4), "%s vwsum n=%lld D=%lld differs", impls[i]->name, (long long)n, (long long)D);
    }
    free(q), free(m), free(w), free(s0), free(s1), free(o0), free(o1);
}

/* equal bits, or both NaN where the spec leaves NaN bits open */
static bool same_or_nan(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, 4) != 0 && !(isnan(a[i]) && isnan(b[i]))) return false;
    return true;
}

static float f_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* lb_expf against exp in double (ulps of the float spacing at the exact value, 2^-149 below 2^-126), and the
 * vector versions bit for bit: a sweep of every 4099th float, edges, NaN, infinities, the denormal range */
static void check_exp(void) {
    enum { N = 1 << 16 };
    float *x = malloc(N * 4), *y0 = malloc(N * 4), *y1 = malloc(N * 4);
    double worst = 0.0;
    float wx = 0.0f;
    int64_t fill = 0;
    for (uint64_t u = 0; u < 0x100000000ull; u += 4099) {
        x[fill++] = f_bits((uint32_t)u);
        if (fill == N || u + 4099 >= 0x100000000ull) {
            for (int64_t i = 0; i < fill; i++) {
                y0[i] = lb_expf(x[i]);
                if (isnan(x[i])) {
                    CHECK(isnan(y0[i]), "lb_expf(NaN) is not NaN");
                    continue;
                }
                double e = exp((double)x[i]);
                if (e > (double)FLT_MAX) {
                    CHECK(isinf(y0[i]) || y0[i] == FLT_MAX, "lb_expf(%a) = %a, exp %g", x[i], y0[i], e);
                    continue;
                }
                int ex;
                frexp(e, &ex);
                double err = fabs((double)y0[i] - e) / ldexp(1.0, ex - 24 < -149 ? -149 : ex - 24);
                if (err > worst) worst = err, wx = x[i];
            }
            for (int i = 1; i < n_impls; i++) {
                impls[i]->vexp(x, fill, y1);
                CHECK(same_bytes(y0, y1, (size_t)fill * 4), "%s vexp differs from lb_expf", impls[i]->name);
            }
            fill = 0;
        }
    }
    printf("lb_expf: max error %.4f ulp (at %a) on the sweep\n", worst, wx);
    CHECK(worst < 1.0, "lb_expf error %.4f ulp at %a", worst, wx);
    /* edges, specials and the denormal range, at odd lengths */
    const float edge[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, f_bits(0x7fa00001u), f_bits(0xffc12345u), 88.72283f,
                          88.7228394f, 89.0f, 1e30f, -103.972084f, -103.97209f, -104.0f, -1e30f, -87.33655f, -87.3366f,
                          -100.0f, -95.5f, 1e-30f, -1e-30f, f_bits(1), f_bits(0x80000001u), 0.34657359f, -0.34657359f,
                          FLT_MAX, -FLT_MAX, 1.0f, -1.0f, 0.5f};
    int ne = (int)(sizeof edge / sizeof edge[0]);
    for (int i = 0; i < ne; i++) x[i] = edge[i];
    for (int i = ne; i < 4000; i++) x[i] = -87.0f - 17.0f * (frand() * 0.5f + 0.5f); /* denormal results */
    for (int64_t n = 1; n <= 4000; n += n < 40 ? 1 : 997) {
        for (int64_t i = 0; i < n; i++) y0[i] = lb_expf(x[i]);
        for (int i = 1; i < n_impls; i++) {
            impls[i]->vexp(x, n, y1);
            CHECK(same_bytes(y0, y1, (size_t)n * 4), "%s vexp n=%lld differs from lb_expf", impls[i]->name, (long long)n);
        }
    }
    impls[0]->vexp(x, ne, y0);
    CHECK(lb_expf(INFINITY) == INFINITY && lb_expf(-INFINITY) == 0.0f && lb_expf(0.0f) == 1.0f && lb_expf(-0.0f) == 1.0f &&
              lb_expf(88.7228394f) == INFINITY && lb_expf(-103.97209f) == 0.0f && !signbit(lb_expf(-1e30f)) &&
              lb_expf(-100.0f) > 0.0f && lb_expf(-100.0f) < FLT_MIN,
          "lb_expf special cases");
    free(x), free(y0), free(y1);
}

/* softmax, swiglu: every implementation equal to the reference (case: 0 random, 1 a NaN, 2 +inf, 3 -inf
 * among them, 4 all -inf, 5 wide range) */
static void check_softmax(int64_t n, int kase) {
    float *s = malloc((size_t)n * 4), *r = malloc((size_t)n * 4), *o = malloc((size_t)n * 4);
    float *g = malloc((size_t)n * 4), *u = malloc((size_t)n * 4), *g0 = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        s[i] = frand() * (kase == 5 ? 200.0f : 8.0f);
        g[i] = frand() * (i % 5 == 0 ? 120.0f : 6.0f);
        u[i] = frand();
    }
    if (kase == 1) s[n / 2] = NAN, g[n / 2] = NAN;
    if (kase == 2) s[n - 1] = INFINITY, g[n - 1] = INFINITY;
    if (kase == 3) s[0] = -INFINITY, g[0] = -INFINITY;
    if (kase == 4)
        for (int64_t i = 0; i < n; i++) s[i] = -INFINITY;
    memcpy(r, s, (size_t)n * 4);
    impls[0]->softmax(r, n, 0.125f);
    double tot = 0.0;
    for (int64_t i = 0; i < n; i++) tot += r[i];
    if (kase == 0 || (kase == 3 && n > 1) || kase == 5) CHECK(fabs(tot - 1.0) < 1e-5 * (double)n, "softmax n=%lld sums to %g", (long long)n, tot);
    else
        for (int64_t i = 0; i < n; i++) CHECK(*(uint32_t *)&r[i] == LB_NAN_BITS, "softmax case %d: not the canonical NaN", kase);
    memcpy(g0, g, (size_t)n * 4);
    impls[0]->swiglu(g0, u, n, 1, n);
    for (int64_t i = 0; i < n; i++)
        if (isfinite(g[i])) {
            double e = (double)g[i] / (1.0 + exp(-(double)g[i])) * (double)u[i];
            CHECK(fabs(g0[i] - e) <= 4e-7 * fabs(e) + 1e-30, "swiglu(%g) = %g, %g", g[i], g0[i], e);
        }
    for (int i = 1; i < n_impls; i++) {
        memcpy(o, s, (size_t)n * 4);
        impls[i]->softmax(o, n, 0.125f);
        CHECK(same_bytes(r, o, (size_t)n * 4), "%s softmax n=%lld case %d differs", impls[i]->name, (long long)n, kase);
        memcpy(o, g, (size_t)n * 4);
        impls[i]->swiglu(o, u, n, 1, n);
        CHECK(same_or_nan(g0, o, n), "%s swiglu n=%lld case %d differs", impls[i]->name, (long long)n, kase);
        for (int64_t w = 1; w <= 17; w += 15) { /* rows of w floats w + 3 apart, the gaps untouched */
            int64_t ld = w + 3, rows = n / ld;
            memcpy(o, g, (size_t)n * 4);
            impls[i]->swiglu(o, u, w, rows, ld);
            for (int64_t e = 0; e < n; e++)
                CHECK(e % ld < w && e / ld < rows ? same_or_nan(g0 + e, o + e, 1) : same_bytes(g + e, o + e, 4),
                      "%s swiglu rows of %lld: element %lld", impls[i]->name, (long long)w, (long long)e);
        }
    }
    free(s), free(r), free(o), free(g), free(u), free(g0);
}

/* several queries at once: the same bits as one query at a time through the reference */
static void check_attention_q(int nq, int64_t n0, int64_t D, bool causal) {
    int64_t stride = D + 5, ldq = D + 3, n1 = n0 + nq - 1, lds = n1 + 2, ldo = D + 1;
    float *q = malloc((size_t)(nq * ldq) * 4), *m = malloc((size_t)(n1 * stride) * 4), *w = malloc((size_t)(nq * lds) * 4);
    float *s0 = calloc((size_t)(nq * lds), 4), *s1 = calloc((size_t)(nq * lds), 4);
    float *o0 = calloc((size_t)(nq * ldo), 4), *o1 = calloc((size_t)(nq * ldo), 4);
    int64_t n[LB_ATT_QMAX];
    for (int j = 0; j < nq; j++) n[j] = causal ? n0 + j : 1 + (int64_t)((frand() * 0.5f + 0.5f) * (float)(n1 - 1));
    for (int64_t i = 0; i < nq * ldq; i++) q[i] = frand();
    for (int64_t i = 0; i < n1 * stride; i++) m[i] = frand() * (i % 17 == 0 ? 30.0f : 1.0f);
    for (int64_t i = 0; i < nq * lds; i++) w[i] = frand();
    for (int j = 0; j < nq; j++) {
        impls[0]->vdots(q + j * ldq, m, stride, n1, D, s0 + j * lds);
        impls[0]->vwsum(w + j * lds, m, stride, n[j], D, o0 + j * ldo);
    }
    for (int i = 0; i < n_impls; i++) {
        memset(s1, 0, (size_t)(nq * lds) * 4);
        memset(o1, 0, (size_t)(nq * ldo) * 4);
        impls[i]->vdotsq(q, ldq, nq, m, stride, n1, D, s1, lds);
        impls[i]->vwsumq(w, lds, nq, n, m, stride, D, o1, ldo);
        CHECK(same_bytes(s0, s1, (size_t)(nq * lds) * 4), "%s vdotsq nq=%d n=%lld D=%lld differs", impls[i]->name, nq,
              (long long)n1, (long long)D);
        CHECK(same_bytes(o0, o1, (size_t)(nq * ldo) * 4), "%s vwsumq nq=%d n0=%lld D=%lld differs", impls[i]->name, nq,
              (long long)n0, (long long)D);
    }
    free(q), free(m), free(w), free(s0), free(s1), free(o0), free(o1);
}

/* F16 rows (an F16 KV cache): every implementation's _h kernels, one query and several, give the bits of the reference's
 * F32 kernels on the rows converted to float (subnormal and large F16 values among them) */
static void check_attention_h(int nq, int64_t n0, int64_t D) {
    int64_t stride = D + 5, ldq = D + 3, n1 = n0 + nq - 1, lds = n1 + 2, ldo = D + 1;
    float *q = malloc((size_t)(nq * ldq) * 4), *mf = malloc((size_t)(n1 * stride) * 4), *w = malloc((size_t)(nq * lds) * 4);
    uint16_t *mh = malloc((size_t)(n1 * stride) * 2);
    float *s0 = calloc((size_t)(nq * lds), 4), *s1 = calloc((size_t)(nq * lds), 4);
    float *o0 = calloc((size_t)(nq * ldo), 4), *o1 = calloc((size_t)(nq * ldo), 4);
    int64_t n[LB_ATT_QMAX];
    for (int j = 0; j < nq; j++) n[j] = n0 + j;
    for (int64_t i = 0; i < nq * ldq; i++) q[i] = frand();
    for (int64_t i = 0; i < n1 * stride; i++) {
        float v = frand() * (i % 13 == 0 ? 3000.0f : 1.0f);
        if (i % 29 == 0) v *= 1e-6f; /* F16 subnormals */
        mh[i] = lb_f32_to_fp16(v);
        mf[i] = lb_fp16_to_f32(mh[i]);
    }
    for (int64_t i = 0; i < nq * lds; i++) w[i] = frand();
    for (int j = 0; j < nq; j++) {
        impls[0]->vdots(q + j * ldq, mf, stride, n1, D, s0 + j * lds);
        impls[0]->vwsum(w + j * lds, mf, stride, n[j], D, o0 + j * ldo);
    }
    for (int i = 0; i < n_impls; i++) {
        for (int j = 0; j < nq; j++) {
            impls[i]->vdots_h(q + j * ldq, mh, stride, n1, D, s1 + j * lds);
            impls[i]->vwsum_h(w + j * lds, mh, stride, n[j], D, o1 + j * ldo);
        }
        CHECK(same_bytes(s0, s1, (size_t)(nq * lds) * 4) && same_bytes(o0, o1, (size_t)(nq * ldo) * 4),
              "%s vdots_h / vwsum_h n=%lld D=%lld differ from the F32 kernels on the converted rows", impls[i]->name, (long long)n1,
              (long long)D);
        memset(s1, 0, (size_t)(nq * lds) * 4);
        memset(o1, 0, (size_t)(nq * ldo) * 4);
        impls[i]->vdotsq_h(q, ldq, nq, mh, stride, n1, D, s1, lds);
        impls[i]->vwsumq_h(w, lds, nq, n, mh, stride, D, o1, ldo);
        CHECK(same_bytes(s0, s1, (size_t)(nq * lds) * 4) && same_bytes(o0, o1, (size_t)(nq * ldo) * 4),
              "%s vdotsq_h / vwsumq_h nq=%d n0=%lld D=%lld differ", impls[i]->name, nq, (long long)n0, (long long)D);
    }
    free(q), free(mf), free(mh), free(w), free(s0), free(s1), free(o0), free(o1);
}

/* make_qkx_quants' step search: every implementation gives the reference's codes, scale, min and error from
 * the same state, on random sub-blocks (the weights of the q2_K / q4_K / q5_K encoders and others), constant
 * and near-constant ones, zero and negative weights, huge and tiny magnitudes, and a best error that no step
 * beats, that the first beats or that is infinite (every step that fits improves until one does not). */
static void check_qkx(void) {
    static const int cfg[][5] = {/* n, nmax, nstep, use_mad, qkx3 */
                                 {32, 15, 20, 0, 0}, {32, 31, 15, 0, 0}, {32, 15, 36, 0, 1}, {32, 31, 36, 0, 1},
                                 {16, 3, 15, 1, 0},  {16, 3, 36, 0, 1},  {7, 5, 9, 1, 1},    {32, 15, 0, 1, 0}};
    static const float rmins[] = {-1.0f, -0.5f, -0.9f}, rdeltas[] = {0.1f, 0.05f};
    int bad = 0, runs = 0;
    for (int c = 0; c < (int)(sizeof cfg / sizeof cfg[0]); c++)
        for (int trial = 0; trial < 300; trial++) {
            const int n = cfg[c][0], kind = trial % 10;
            float x[LB_QKX_MAX_N] = {0}, w[LB_QKX_MAX_N] = {0};
            const float mag = kind == 7 ? 3e4f : kind == 8 ? 1e-6f : 1.0f;
            for (int i = 0; i < n; i++) {
                x[i] = frand() * mag + (kind == 4 ? 0.5f * mag : 0.0f); /* kind 4: all of one sign, mostly */
                w[i] = kind == 5 ? (float)(i % 3) : kind == 6 ? frand() : fabsf(frand()) + 0.01f;
            }
            if (kind == 2) for (int i = 0; i < n; i++) x[i] = 0.25f;           /* constant */
            if (kind == 3) for (int i = 1; i < n; i++) x[i] = x[0] + (float)(i % 2) * 1e-7f; /* near-constant */
            if (kind == 9) x[trial % n] = 100.0f;                             /* one outlier */
            float mn = x[0], mx = x[0], sw = w[0], sx = w[0] * x[0];
            for (int i = 1; i < n; i++) {
                mn = x[i] < mn ? x[i] : mn;
                mx = x[i] > mx ? x[i] : mx;
                sw += w[i];
                sx += w[i] * x[i];
            }
            if (mn > 0) mn = 0;
            if (!(mx > mn)) mx = mn + 1.0f;
            const lb_qkx_search q = {n, cfg[c][1], cfg[c][2], cfg[c][3], cfg[c][4], rmins[trial % 3], rdeltas[trial % 2], mx, sw, sx};
            const float best0 = trial % 3 == 0 ? INFINITY : trial % 3 == 1 ? 0.0f : fabsf(frand()) * (float)n * mag * mag;
            uint8_t L0[LB_QKX_MAX_N], L1[LB_QKX_MAX_N];
            float s0 = 0.5f, m0 = mn, e0 = best0;
            memset(L0, 7, sizeof L0);
            impls[0]->qkx(&q, x, w, L0, &s0, &m0, &e0);
            for (int i = 1; i < n_impls; i++) {
                float s1 = 0.5f, m1 = mn, e1 = best0;
                memset(L1, 7, sizeof L1);
                impls[i]->qkx(&q, x, w, L1, &s1, &m1, &e1);
                runs++;
                if (!same_bytes(L0, L1, sizeof L0) || !same_bytes(&s0, &s1, 4) || !same_bytes(&m0, &m1, 4) ||
                    !same_bytes(&e0, &e1, 4))
                    bad++;
            }
        }
    CHECK(bad == 0, "qkx: %d of %d runs differ from the reference", bad, runs);
}

/* rows whose codes sit at the type's largest magnitude (every weight -1, or +1 with a 0 per block for the types
 * with a min) against activations all +1 or all -1: the largest integer partial sums a kernel can meet, e.g. the
 * int16 sums of AVX2's tile over several 4-element steps */
static void check_extreme_codes(lb_type t) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    const int64_t be = tt->block_elems, N = 19, K = 2 * be, T = 6;
    const bool has_min = lb_qtype_has_min(t);
    const size_t rb = lb_type_row_size(t, K);
    float *wf = malloc((size_t)(N * K) * sizeof *wf), *x = malloc((size_t)(T * K) * sizeof *x), *ref = malloc((size_t)(T * N) * sizeof *ref);
    uint8_t *wq = malloc(rb * (size_t)N);
    for (int64_t r = 0; r < N; r++)
        for (int64_t k = 0; k < K; k++) wf[r * K + k] = has_min ? (k % be == 0 ? 0.0f : 1.0f + 0.01f * (float)r) : -1.0f - 0.01f * (float)r;
    for (int64_t i = 0; i < T * K; i++) x[i] = (i / K) % 2 ? -1.0f : 1.0f;
    tt->quantize_ref(wf, wq, N, K, NULL);
    lb_weight w = {t, wq, N, K};
    float *scr = malloc(lb_matmul_scratch_floats(K, T, 1) * sizeof(float));
    lb_matmul_ref(scr, x, T, &w, ref, N);
    check_qgemm(&w, x, T, ref);
    free(wf), free(x), free(ref), free(wq), free(scr);
}

/* q8_0 rows holding every code byte, -128 included (a file may hold it, though ggml's encoder never writes it),
 * against full-scale activations: the products that come nearest the int16 pair limit of AVX2's vpmaddubsw */
static void check_q8_0_codes(void) {
    const int64_t N = 21, K = 256, T = 7;
    const size_t rb = lb_type_row_size(LB_TYPE_Q8_0, K);
    uint8_t *wq = malloc(rb * (size_t)N);
    float *x = malloc((size_t)(T * K) * sizeof *x), *ref = malloc((size_t)(T * N) * sizeof *ref);
    for (int64_t r = 0; r < N; r++)
        for (int64_t b = 0; b < K / 32; b++) {
            uint8_t *blk = wq + (size_t)r * rb + (size_t)b * 34;
            const uint16_t d = (uint16_t)(0x2000 + 37 * (r + b)); /* small positive halves */
            memcpy(blk, &d, 2);
            for (int i = 0; i < 32; i++) blk[2 + i] = (uint8_t)((r * 131 + b * 32 + i) * 7 + (i % 3 == 0 ? 128 : 0));
        }
    for (int64_t i = 0; i < T * K; i++) x[i] = (i % 5 == 0) ? (i % 2 ? -1.0f : 1.0f) : frand();
    lb_weight w = {LB_TYPE_Q8_0, wq, N, K};
    float *scr = malloc(lb_matmul_scratch_floats(K, T, 1) * sizeof(float));
    lb_matmul_ref(scr, x, T, &w, ref, N);
    check_qgemm(&w, x, T, ref);
    free(wq), free(x), free(ref), free(scr);
}

int main(void) {
    impls[n_impls++] = lb_cpu_kernels_ref();
    if (lb_cpu_kernels_avx2()) impls[n_impls++] = lb_cpu_kernels_avx2();
    if (lb_cpu_kernels_avx512vnni()) impls[n_impls++] = lb_cpu_kernels_avx512vnni();
    printf("implementations:");
    for (int i = 0; i < n_impls; i++) printf(" %s", impls[i]->name);
    printf("; lb_matmul uses %s\n", lb_matmul_impl());
    if (lb_force_ref()) CHECK(strcmp(lb_matmul_impl(), "ref") == 0, "LB_FORCE_REF=1 but lb_matmul uses %s", lb_matmul_impl());
    else if (getenv("LB_KERNELS") && strcmp(getenv("LB_KERNELS"), "avx2") == 0 && lb_cpu_kernels_avx2())
        CHECK(strcmp(lb_matmul_impl(), "avx2") == 0, "LB_KERNELS=avx2 but lb_matmul uses %s", lb_matmul_impl());
    else CHECK(strcmp(lb_matmul_impl(), impls[n_impls - 1]->name) == 0, "lb_matmul uses %s, best is %s", lb_matmul_impl(),
               impls[n_impls - 1]->name);
#if defined(__x86_64__)
    if (!lb_force_ref() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECK(n_impls >= 2, "the CPU has AVX2 + FMA but no AVX2 kernels were offered");
#endif
    for (int t = 0; t < LB_TYPE_COUNT; t++) {
        const lb_type_traits *tt = lb_type_traits_get((lb_type)t);
        if (!tt->weight_type) continue;
        if (tt->is_quant) {
            CHECK(impls[0]->unpack[t] != NULL, "%s has no reference unpacker", tt->name);
            for (int i = 1; i < n_impls; i++) CHECK(impls[i]->unpack[t] != NULL, "%s has no %s unpacker", tt->name, impls[i]->name);
            if (!impls[0]->unpack[t]) continue;
            int64_t be = tt->block_elems;
            check_type((lb_type)t, 3, be, 1);
            check_type((lb_type)t, 5, 3 * be, 3);
            check_type((lb_type)t, 2, 7 * be, 5);
            check_type((lb_type)t, 11, 2 * be, 2);
            check_matmul((lb_type)t, 37, 3 * be, 1);
            check_matmul((lb_type)t, 19, be, 70);
            check_matmul((lb_type)t, 53, 2 * be, 15); /* 16-row tiles with 5 rows left, 8 + 4 + 2 + 1 tokens */
            check_extreme_codes((lb_type)t);
        } else {
            check_matmul((lb_type)t, 13, 37, 1);
            check_matmul((lb_type)t, 21, 64, 7);
            check_matmul((lb_type)t, 5, 131, 30);
        }
    }
    check_q8_0_codes();
    const lb_type qkv[3] = {LB_TYPE_Q4_K, LB_TYPE_Q4_K, LB_TYPE_Q6_K};
    const lb_type mixed[6] = {LB_TYPE_Q4_0, LB_TYPE_Q8_0, LB_TYPE_Q4_K, LB_TYPE_F16, LB_TYPE_F32, LB_TYPE_IQ4_NL};
    for (int64_t T = 1; T <= 9; T += 8) {
        check_multi(qkv, 3, 512, T);
        check_multi(mixed, 6, 256, T);
    }
    for (int64_t be = 32; be <= 256; be *= 8) {
        check_actq(be, be);
        check_actq(5 * be, be);
        check_actq(9 * be, be);
    }
    check_attention(1, 64);
    check_attention(17, 128);
    check_attention(9, 37);
    check_attention(33, 300);
    check_attention_h(1, 1, 64);
    check_attention_h(1, 37, 128);
    check_attention_h(3, 9, 37);
    check_attention_h(8, 70, 128);
    check_attention_h(5, 33, 300);
    check_exp();
    const int64_t sn[] = {1, 2, 7, 8, 9, 15, 16, 17, 33, 100, 513, 4099};
    for (size_t i = 0; i < sizeof sn / sizeof sn[0]; i++)
        for (int kase = 0; kase < 6; kase++) check_softmax(sn[i], kase);
    const int64_t dims[] = {64, 128, 8, 37, 5, 80, 256, 264};
    for (int nq = 1; nq <= LB_ATT_QMAX; nq++)
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
            check_attention_q(nq, 1, dims[d], true);
            check_attention_q(nq, 13, dims[d], true);
            check_attention_q(nq, 70, dims[d], nq % 2 == 0);
        }
    check_qkx();
    TEST_DONE();
}
