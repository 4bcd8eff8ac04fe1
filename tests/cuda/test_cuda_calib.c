/*
 * test_cuda_calib.c - calibration on a CUDA device (cuda/calib.cu through algo/calib.h) against the CPU
 * implementation (algo/calib_layers.c). Needs a GPU.
 *
 * - Statistics: tiny's windows from wikitext-2 with a reference stream; each layer is run with random F32
 *   work matrices (the slot of work copies) against the model's own layer (the reference slot), and both
 *   streams are moved on, X through the random layer and Xr through the model's: H, C and mean |x| of
 *   every point of every layer and of the output head against the CPU's, by relative Frobenius error.
 *   At layer 0's first point the inputs are the same on both (the embedding rows, RMSNorm in double), so
 *   only the F32 summation order inside a window differs: bound 1e-5. Everywhere else the GPU's forward
 *   pass rounds the activations entering each weight product to F16 (cuda.h), and the statistics differ
 *   by about 2^-11 relative per product: bound 1e-2 (the measured values are printed). C is not
 *   symmetric once the streams differ, so a transposed C fails by O(1).
 * - GPTQ from the GPU's statistics against GPTQ from the CPU's on a random matrix (q4_K): the objective
 *   tr(E H E^T) under the CPU's H within 2 % (rounding decisions flip where H differs; the objective is a
 *   sum over all of them), and both below the importance-weighted encoder's (diag H as the imatrix).
 * - The library path the CLI calls (lb_quantize_model with device cuda): imatrix and gptq on tiny; twice
 *   the same bytes; KL divergence against tiny on valid.txt no more than 5 % above the CPU path's at the same
 *   settings (4,096 calibration tokens: the statistics' rounding moves GPTQ's decisions, 2 % is the
 *   benchmark's target at 65,536 tokens) and below RTN's. And the CLI: `quantize --device cuda --json`
 *   reports the GPU memory peak; cuda:999 fails with one line.
 */
#include "algo/calib.h"
#include "algo/encoders.h"
#include "algo/gptq.h"
#include "model/model.h"
#include "quant/quant.h"
#include "test.h"
#include "cuda_test.h"

#include <string.h>

#include <math.h>
#include <unistd.h>



static double rel_fro_d(const double *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static double rel_fro_f(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* a copy of layer l whose 7 matrices are random F32 with each row's scale of the original */
typedef struct rand_layer {
    lb_layer l;
    float *w[7];
} rand_layer;

static void make_random(const lb_layer *src, rand_layer *r) {
    r->l = *src;
    lb_weight *ws[7] = {&r->l.wq, &r->l.wk, &r->l.wv, &r->l.wo, &r->l.w_gate, &r->l.w_up, &r->l.w_down};
    for (int k = 0; k < 7; k++) {
        const int64_t R = ws[k]->rows, K = ws[k]->cols;
        float *row = malloc((size_t)K * sizeof *row);
        r->w[k] = malloc((size_t)(R * K) * sizeof(float));
        REQUIRE(row && r->w[k], "out of memory");
        for (int64_t i = 0; i < R; i++) {
            lb_weight_row_f32(ws[k], i, row);
            double ss = 0;
            for (int64_t j = 0; j < K; j++) ss += (double)row[j] * row[j];
            const float sd = (float)sqrt(ss / (double)K);
            for (int64_t j = 0; j < K; j++) r->w[k][i * K + j] = sd * test_gauss();
        }
        free(row);
        *ws[k] = (lb_weight){LB_TYPE_F32, r->w[k], R, K};
    }
}

static void free_random(rand_layer *r) {
    for (int k = 0; k < 7; k++) free(r->w[k]);
}

/* GPTQ (q4_K) of a random (rows, d) matrix from the GPU's and the CPU's H of the same point */
static void check_gptq(const double *Hc, const double *Hg, int64_t d) {
    const int64_t rows = 64;
    float *W0 = malloc((size_t)(rows * d) * sizeof *W0), *Wc = malloc((size_t)(rows * d) * sizeof *Wc);
    float *Wg = malloc((size_t)(rows * d) * sizeof *Wg), *Wr = malloc((size_t)(rows * d) * sizeof *Wr);
    double *hc = malloc((size_t)(d * d) * sizeof *hc), *hg = malloc((size_t)(d * d) * sizeof *hg);
    const size_t rb = lb_type_row_size(LB_TYPE_Q4_K, d);
    uint8_t *q = malloc(rb * (size_t)rows);
    REQUIRE(W0 && Wc && Wg && Wr && hc && hg && q, "out of memory");
    for (int64_t i = 0; i < rows * d; i++) W0[i] = test_gauss();
    memcpy(Wc, W0, (size_t)(rows * d) * sizeof *Wc);
    memcpy(Wg, W0, (size_t)(rows * d) * sizeof *Wg);
    memcpy(hc, Hc, (size_t)(d * d) * sizeof *hc);
    memcpy(hg, Hg, (size_t)(d * d) * sizeof *hg);
    lb_gptq_params p;
    lb_gptq_params_default(&p);
    p.passes = 4;
    p.cd_sweeps = 4;
    p.cd_scales = true;
    lb_error e;
    REQUIRE(lb_gptq_quantize(NULL, Wc, rows, d, hc, LB_TYPE_Q4_K, LB_ENCODER_DEFAULT, &p, q, NULL, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_gptq_quantize(NULL, Wg, rows, d, hg, LB_TYPE_Q4_K, LB_ENCODER_DEFAULT, &p, q, NULL, &e) == LB_OK, "%s", e.msg);
    float *imp = malloc((size_t)d * sizeof *imp); /* the importance-weighted encoder (imatrix) as the baseline */
    for (int64_t j = 0; j < d; j++) imp[j] = (float)Hc[j * d + j];
    lb_encoder_get(LB_TYPE_Q4_K, LB_ENCODER_DEFAULT)(W0, q, rows, d, imp);
    free(imp);
    lb_type_traits_get(LB_TYPE_Q4_K)->to_float(q, Wr, rows * d);
    const double oc = objective(W0, Wc, rows, d, Hc), og = objective(W0, Wg, rows, d, Hc), orr = objective(W0, Wr, rows, d, Hc);
    printf("gptq q4_K (%lld x %lld): objective from CPU H %.6g, from GPU H %.6g (%+.3f %%), imatrix-weighted RTN %.6g\n", (long long)rows,
           (long long)d, oc, og, 100 * (og / oc - 1), orr);
    CHECK(fabs(og / oc - 1) < 0.02, "GPTQ objective from the GPU's H %.6g vs the CPU's %.6g", og, oc);
    CHECK(og < orr && oc < orr, "GPTQ (%.6g, %.6g) does not beat RTN %.6g", oc, og, orr);
    free(W0), free(Wc), free(Wg), free(Wr), free(hc), free(hg), free(q);
}

/* the statistics checks' calibration: 8 windows of 128 tokens, 4 threads, on the CPU (device set by the caller) */
static lb_calib_params small_params(void) {
    lb_calib_params p = lb_calib_default_params();
    p.ctx = 128;
    p.n_tokens = 1024;
    p.n_threads = 4;
    return p;
}

static void compare_point(lb_calib *cc, lb_calib *cg, lb_obs_point pt, const char *what, double bound, bool gptq) {
    int64_t d;
    const double *hc = lb_calib_h(cc, pt, &d), *hg = lb_calib_h(cg, pt, NULL);
    const double *xc = lb_calib_cross(cc, pt), *xg = lb_calib_cross(cg, pt);
    const float *ac = lb_calib_mean_abs(cc, pt), *ag = lb_calib_mean_abs(cg, pt);
    REQUIRE(hc && hg && xc && xg && ac && ag, "%s: statistics missing", what);
    bool sym = true;
    for (int64_t i = 0; i < d && sym; i++)
        for (int64_t j = 0; j < i; j++) sym &= hg[i * d + j] == hg[j * d + i];
    const double eh = rel_fro_d(hg, hc, d * d), ec = rel_fro_d(xg, xc, d * d), ea = rel_fro_f(ag, ac, d);
    const double asym = rel_fro_d(xc, hc, d * d);
    printf("%-24s dim %5lld  H %.2e  C %.2e  mean|x| %.2e  (|C - H| / |H| %.2e)\n", what, (long long)d, eh, ec, ea, asym);
    CHECK(eh < bound && ec < bound && ea < bound, "%s: H %.3g C %.3g mean|x| %.3g (bound %g)", what, eh, ec, ea, bound);
    CHECK(sym, "%s: the GPU's H is not symmetric", what);
    CHECK(lb_calib_tokens(cc) == lb_calib_tokens(cg), "%s: tokens %lld vs %lld", what, (long long)lb_calib_tokens(cc),
          (long long)lb_calib_tokens(cg));
    if (gptq) check_gptq(hc, hg, d);
}

static void check_statistics(const lb_model *m, const int32_t *ids, int64_t n_ids) {
    lb_calib_params p = small_params();
    lb_calib *cc = NULL, *cg = NULL;
    lb_error e;
    REQUIRE(lb_calib_new(m, &m->tok_embd, &m->tok_embd, ids, n_ids, &p, &cc, &e) == LB_OK, "%s", e.msg);
    p.device = cuda0;
    /* batches of 3 windows (8 windows: 3, 3 and a partial 2) and H in panels of 24 columns (several, the last
     * partial): every path of the staged products */
    setenv("LB_CALIB_BATCH", "384", 1);
    setenv("LB_CALIB_PANEL", "24", 1);
    REQUIRE(lb_calib_new(m, &m->tok_embd, &m->tok_embd, ids, n_ids, &p, &cg, &e) == LB_OK, "%s", e.msg);
    unsetenv("LB_CALIB_BATCH");
    unsetenv("LB_CALIB_PANEL");
    const lb_obs_point pts[4] = {LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN, LB_OBS_FFN_IN, LB_OBS_FFN_DOWN_IN};
    for (int64_t il = 0; il < m->info.n_layer; il++) {
        rand_layer r;
        make_random(&m->layers[il], &r);
        for (int k = 0; k < 4; k++) {
            char what[64];
            snprintf(what, sizeof what, "layer %lld point %d", (long long)il, (int)pts[k]);
            REQUIRE(lb_calib_layer_stats(cc, &r.l, &m->layers[il], pts[k], il, &e) == LB_OK, "cpu %s: %s", what, e.msg);
            REQUIRE(lb_calib_layer_stats(cg, &r.l, &m->layers[il], pts[k], il, &e) == LB_OK, "gpu %s: %s", what, e.msg);
            compare_point(cc, cg, pts[k], what, il == 0 && k == 0 ? 1e-5 : 1e-2, il == 1 && k == 2);
        }
        /* the model's own layer as the layer under test too (the reference slot serves both) */
        REQUIRE(lb_calib_layer_stats(cc, &m->layers[il], NULL, LB_OBS_FFN_IN, il, &e) == LB_OK, "%s", e.msg);
        REQUIRE(lb_calib_layer_stats(cg, &m->layers[il], NULL, LB_OBS_FFN_IN, il, &e) == LB_OK, "%s", e.msg);
        int64_t d;
        const double *hg = lb_calib_h(cg, LB_OBS_FFN_IN, &d), *hc = lb_calib_h(cc, LB_OBS_FFN_IN, NULL);
        const double eh = rel_fro_d(hg, hc, d * d);
        CHECK(eh < 1e-2, "layer %lld own weights: H %.3g", (long long)il, eh);
        REQUIRE(lb_calib_layer_advance(cc, &r.l, &m->layers[il], il, &e) == LB_OK, "%s", e.msg);
        REQUIRE(lb_calib_layer_advance(cg, &r.l, &m->layers[il], il, &e) == LB_OK, "%s", e.msg);
        free_random(&r);
    }
    REQUIRE(lb_calib_output_stats(cc, m->out_norm, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_calib_output_stats(cg, m->out_norm, &e) == LB_OK, "%s", e.msg);
    compare_point(cc, cg, LB_OBS_OUTPUT_IN, "output head", 1e-2, false);
    CHECK(lb_calib_gpu_peak(cg) > 0 && lb_calib_gpu_peak(cc) == 0, "GPU peak %zu, CPU %zu", lb_calib_gpu_peak(cg),
          lb_calib_gpu_peak(cc));
    lb_calib_free(cc);
    lb_calib_free(cg);
}

/* Diagonal mode (the imatrix method's statistics: sums of x^2, no products) without a reference stream: at layer
 * 0's first point the GPU's sums are the CPU's but for the last bits (the same F32 inputs up to the normalization's
 * double sums, each summed in double in token order: 1e-9, where a product in F32 would give 1e-7); at the deeper points and the head within the forward passes' 1e-2, and the GPU's diagonal equals the
 * diagonal of its own full H (same inputs, products within the statistics' F32-class rounding: 1e-5). */
static void check_diag(const lb_model *m, const int32_t *ids, int64_t n_ids) {
    lb_calib_params p = small_params();
    lb_calib *cc = NULL, *cg = NULL;
    lb_error e;
    REQUIRE(lb_calib_new(m, &m->tok_embd, NULL, ids, n_ids, &p, &cc, &e) == LB_OK, "%s", e.msg);
    p.device = cuda0;
    REQUIRE(lb_calib_new(m, &m->tok_embd, NULL, ids, n_ids, &p, &cg, &e) == LB_OK, "%s", e.msg);
    const lb_obs_point pts[4] = {LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN, LB_OBS_FFN_IN, LB_OBS_FFN_DOWN_IN};
    double *kq[2][4] = {{0}};
    int64_t kd[4] = {0};
    for (int k = 0; k < 5; k++) {
        const lb_obs_point pt = k < 4 ? pts[k] : LB_OBS_OUTPUT_IN;
        int64_t d = 0;
        double *full = NULL;
        if (k == 0) { /* the GPU's full H first */
            REQUIRE(lb_calib_layer_stats(cg, &m->layers[0], NULL, pt, 0, &e) == LB_OK, "%s", e.msg);
            const double *h = lb_calib_h(cg, pt, &d);
            REQUIRE(h && (full = malloc((size_t)d * sizeof *full)), "no H");
            for (int64_t j = 0; j < d; j++) full[j] = h[j * d + j];
        }
        lb_calib_set_diag_only(cc, true);
        lb_calib_set_diag_only(cg, true);
        if (k < 4) {
            REQUIRE(lb_calib_layer_stats(cc, &m->layers[0], NULL, pt, 0, &e) == LB_OK, "%s", e.msg);
            REQUIRE(lb_calib_layer_stats(cg, &m->layers[0], NULL, pt, 0, &e) == LB_OK, "%s", e.msg);
        } else {
            REQUIRE(lb_calib_layer_advance(cc, &m->layers[0], NULL, 0, &e) == LB_OK, "%s", e.msg);
            REQUIRE(lb_calib_layer_advance(cg, &m->layers[0], NULL, 0, &e) == LB_OK, "%s", e.msg);
            REQUIRE(lb_calib_output_stats(cc, m->out_norm, &e) == LB_OK, "%s", e.msg);
            REQUIRE(lb_calib_output_stats(cg, m->out_norm, &e) == LB_OK, "%s", e.msg);
        }
        lb_calib_set_diag_only(cc, false);
        lb_calib_set_diag_only(cg, false);
        (void)lb_calib_h(cc, pt, &d);
        const double *qc = lb_calib_h_diag(cc, pt), *qg = lb_calib_h_diag(cg, pt);
        const float *ac = lb_calib_mean_abs(cc, pt), *ag = lb_calib_mean_abs(cg, pt);
        REQUIRE(qc && qg && ac && ag, "point %d: no diagonal", (int)pt);
        CHECK(!lb_calib_h(cg, pt, NULL) && !lb_calib_take_h(cg, pt), "point %d: H formed in diagonal mode", (int)pt);
        const double eq = rel_fro_d(qg, qc, d), ea = rel_fro_f(ag, ac, d);
        printf("diagonal mode, %-12s dim %5lld  sum x^2 %.2e  mean|x| %.2e\n", k < 4 ? "layer 0 point" : "output head",
               (long long)d, eq, ea);
        if (k == 0) {
            CHECK(eq < 1e-9 && ea < 1e-6, "diagonal mode at layer 0's first point: GPU %.3g / %.3g from the CPU", eq, ea);
            const double ef = rel_fro_d(full, qg, d);
            printf("diagonal mode against the full H's diagonal: %.2e\n", ef);
            CHECK(ef < 1e-5, "the diagonal of the GPU's H %.3g from its diagonal mode", ef);
            free(full);
        } else
            CHECK(eq < 1e-2 && ea < 1e-2, "diagonal mode point %d: sum x^2 %.3g mean|x| %.3g", (int)pt, eq, ea);
        if (k < 4) {
            kq[0][k] = malloc((size_t)d * sizeof(double)), kq[1][k] = malloc((size_t)d * sizeof(double));
            REQUIRE(kq[0][k] && kq[1][k], "out of memory");
            memcpy(kq[0][k], qc, (size_t)d * sizeof(double)), memcpy(kq[1][k], qg, (size_t)d * sizeof(double));
            kd[k] = d;
        }
        if (k == 3) { /* the four points in one run: each device's per-point bits */
            lb_calib *both[2] = {cc, cg};
            for (int r = 0; r < 2; r++) {
                REQUIRE(lb_calib_layer_diag_stats(both[r], &m->layers[0], 0, &e) == LB_OK, "%s", e.msg);
                for (int g = 0; g < 4; g++) {
                    const double *q = lb_calib_h_diag(both[r], pts[g]);
                    CHECK(q && !memcmp(q, kq[r][g], (size_t)kd[g] * sizeof(double)),
                          "%s: the one run's point %d is not the per-point run's", r ? "GPU" : "CPU", (int)pts[g]);
                }
            }
            printf("diagonal mode, the four points in one run: checked against the per-point runs\n");
        }
    }
    for (int g = 0; g < 4; g++) free(kq[0][g]), free(kq[1][g]);
    lb_calib_free(cc);
    lb_calib_free(cg);
}

/* GPTQ's stages on the GPU run part by part (the default: each part of the layer once per window, the attention
 * outputs kept) against the per-point runs of LB_GPU_STAGES=0: the same kernels on the same inputs, so H, C and
 * mean |x| of every stage and the streams after every advance (seen through the next layer's and the head's
 * statistics) are the same bits. */
static void check_stages(const lb_model *m, const int32_t *ids, int64_t n_ids) {
    lb_calib_params p = small_params();
    p.device = cuda0;
    lb_calib *cp = NULL, *cs = NULL;
    lb_error e;
    setenv("LB_GPU_STAGES", "0", 1); /* the per-point runs */
    REQUIRE(lb_calib_new(m, &m->tok_embd, &m->tok_embd, ids, n_ids, &p, &cp, &e) == LB_OK, "%s", e.msg);
    unsetenv("LB_GPU_STAGES"); /* the default: part by part */
    REQUIRE(lb_calib_new(m, &m->tok_embd, &m->tok_embd, ids, n_ids, &p, &cs, &e) == LB_OK, "%s", e.msg);
    const lb_obs_point pts[4] = {LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN, LB_OBS_FFN_IN, LB_OBS_FFN_DOWN_IN};
    int same = 0, points = 0;
    for (int64_t il = 0; il < m->info.n_layer; il++) {
        rand_layer r;
        make_random(&m->layers[il], &r);
        for (int k = 0; k < 4; k++) {
            REQUIRE(lb_calib_stage_stats(cp, &r.l, &m->layers[il], pts[k], il, &e) == LB_OK, "per point: %s", e.msg);
            REQUIRE(lb_calib_stage_stats(cs, &r.l, &m->layers[il], pts[k], il, &e) == LB_OK, "staged: %s", e.msg);
            int64_t d;
            const double *ha = lb_calib_h(cp, pts[k], &d), *hb = lb_calib_h(cs, pts[k], NULL);
            const double *ca = lb_calib_cross(cp, pts[k]), *cb = lb_calib_cross(cs, pts[k]);
            const float *aa = lb_calib_mean_abs(cp, pts[k]), *ab = lb_calib_mean_abs(cs, pts[k]);
            REQUIRE(ha && hb && ca && cb && aa && ab, "layer %lld point %d: statistics missing", (long long)il, (int)pts[k]);
            const bool eq = !memcmp(ha, hb, (size_t)(d * d) * sizeof *ha) && !memcmp(ca, cb, (size_t)(d * d) * sizeof *ca) &&
                            !memcmp(aa, ab, (size_t)d * sizeof *aa);
            CHECK(eq, "layer %lld point %d: the staged GPU statistics differ from the per-point ones (H %.3g, C %.3g)", (long long)il,
                  (int)pts[k], rel_fro_d(hb, ha, d * d), rel_fro_d(cb, ca, d * d));
            same += eq, points++;
        }
        REQUIRE(lb_calib_stage_advance(cp, &r.l, il, &e) == LB_OK, "%s", e.msg);
        REQUIRE(lb_calib_stage_advance(cs, &r.l, il, &e) == LB_OK, "%s", e.msg);
        free_random(&r);
    }
    REQUIRE(lb_calib_output_stats(cp, m->out_norm, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_calib_output_stats(cs, m->out_norm, &e) == LB_OK, "%s", e.msg);
    int64_t d;
    const double *ha = lb_calib_h(cp, LB_OBS_OUTPUT_IN, &d), *hb = lb_calib_h(cs, LB_OBS_OUTPUT_IN, NULL);
    const double *ca = lb_calib_cross(cp, LB_OBS_OUTPUT_IN), *cb = lb_calib_cross(cs, LB_OBS_OUTPUT_IN);
    CHECK(ha && hb && ca && cb && !memcmp(ha, hb, (size_t)(d * d) * sizeof *ha) && !memcmp(ca, cb, (size_t)(d * d) * sizeof *ca),
          "the head's statistics after the staged layers differ (the streams moved differently)");
    printf("GPTQ's stages on the GPU part by part: %d of %d points the per-point bits, the head's statistics %s\n", same, points,
           ha && hb && !memcmp(ha, hb, (size_t)(d * d) * sizeof *ha) ? "the same" : "DIFFERENT");
    lb_calib_free(cp);
    lb_calib_free(cs);
}

/* ---------------------------------------------------------------- the quantizer ---------------------------- */

static void check_quantizer(const lb_model *base, const int32_t *calib, int64_t n_calib, const int32_t *ids, int64_t n_ids) {
    char dir[64], a[128], b[128], c[128];
    snprintf(dir, sizeof dir, "/tmp/lowbit-cuda-calib-%d", (int)getpid());
    snprintf(a, sizeof a, "%s-rtn.gguf", dir);
    quantize_tiny("rtn", (lb_device){LB_DEVICE_CPU, 0}, NULL, 0, a);
    const double k_rtn = kld(a, base, ids, n_ids);
    remove(a);
    const char *methods[] = {"imatrix", "gptq"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s-%s-cpu.gguf", dir, methods[i]);
        snprintf(b, sizeof b, "%s-%s-gpu1.gguf", dir, methods[i]);
        snprintf(c, sizeof c, "%s-%s-gpu2.gguf", dir, methods[i]);
        quantize_tiny(methods[i], (lb_device){LB_DEVICE_CPU, 0}, calib, n_calib, a);
        quantize_tiny(methods[i], cuda0, calib, n_calib, b);
        quantize_tiny(methods[i], cuda0, calib, n_calib, c);
        CHECK(same_file(b, c), "%s on the GPU: two runs differ", methods[i]);
        if (strstr(methods[i], "gptq")) { /* GPTQ's stages per point (LB_GPU_STAGES=0): the same file as part by part */
            setenv("LB_GPU_STAGES", "0", 1);
            quantize_tiny(methods[i], cuda0, calib, n_calib, c);
            unsetenv("LB_GPU_STAGES");
            CHECK(same_file(b, c), "%s on the GPU with LB_GPU_STAGES=0: not the staged runs' file", methods[i]);
        }
        const double kc = kld(a, base, ids, n_ids), kg = kld(b, base, ids, n_ids);
        printf("q4_k_m %-8s KL(base||q): cpu %.6f  gpu %.6f (%+.2f %%)  rtn %.6f\n", methods[i], kc, kg, 100 * (kg / kc - 1), k_rtn);
        /* not worse than the CPU's by more than 5 % (better is fine): the two executors' statistics differ at the
         * F16 level and, with 8-bit activations in the quantized stream, by independent roundings, which on
         * tiny at 4,096 tokens moves GPTQ's result by a few percent either way (H200: -5.7 % to +2.7 %); GPTQ with
         * the reference target 15 %: rounding-sized changes of the target alone spread tiny's KL over -2 .. +7.5 %
         * (test_cuda_gptq's check_quantizer says how that was measured) */
        const double bound = strstr(methods[i], "gptq") ? 0.15 : 0.05;
        CHECK(kg / kc - 1 < bound, "%s: GPU KL %.6g vs CPU %.6g", methods[i], kg, kc);
        CHECK(kg < k_rtn && kc < k_rtn, "%s: KL cpu %.6g gpu %.6g not below RTN %.6g", methods[i], kc, kg, k_rtn);
        remove(a), remove(b), remove(c);
    }
}

/* the CLI: --device cuda with --json reports the GPU peak; a device that does not exist is one line */
static void check_cli(void) {
    const char *bin = getenv("LOWBIT");
    REQUIRE(bin && *bin, "LOWBIT (the lowbit binary) is not set");
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd,
             "%s quantize models/tiny -o /tmp/lowbit-cuda-cli-%d.gguf --type q4_k_m --method awq --calib "
             "tests/golden/data/wikitext-2-test.txt --calib-tokens 2048 --device cuda --json -q 2>&1; rm -f /tmp/lowbit-cuda-cli-%d.gguf",
             bin, (int)getpid(), (int)getpid());
    FILE *f = popen(cmd, "r");
    REQUIRE(f, "popen");
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    CHECK(pclose(f) == 0, "cli awq --device cuda failed: %s", out);
    const char *g = strstr(out, "\"gpu_peak_bytes\": ");
    CHECK(g && atoll(g + 18) > 0, "cli: no GPU peak in %s", out);
    snprintf(cmd, sizeof cmd,
             "%s quantize models/tiny -o /tmp/lowbit-cuda-cli-%d.gguf --type q4_k_m --method gptq --calib "
             "tests/golden/data/wikitext-2-test.txt --device cuda:999 2>&1; echo rc=$?",
             bin, (int)getpid());
    f = popen(cmd, "r");
    REQUIRE(f, "popen");
    n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    pclose(f);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    CHECK(strstr(out, "does not exist") && strstr(out, "rc=1") && lines == 2, "cli cuda:999: %s", out);
}

int main(void) {
    test_seed(88172645463325252ULL);
    tiny_fixture f = tiny_load();
    check_statistics(f.m, f.calib, f.n_calib);
    check_diag(f.m, f.calib, f.n_calib);
    check_stages(f.m, f.calib, f.n_calib);
    check_quantizer(f.m, f.calib, f.n_calib, f.valid, f.n_valid);
    check_cli();
    tiny_free(&f);
    TEST_DONE();
}
