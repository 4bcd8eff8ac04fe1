/*
 * test_cuda_gptq_shadow.c - GPTQ's GPU table end to end, each device call checked on its own inputs: models/tiny to
 * q4_k_m by GPTQ (4,096 calibration tokens, statistics on the CPU) through a table that forwards every entry to
 * the CUDA table (passes, descent and reference target on the GPU) and, for the entries that decide the result,
 * also runs what the CPU defines on copies of the same inputs:
 *   - pass: the host copy of the pass (host_dev.h; the CPU's arithmetic): the sum of the rows' GPTQ losses;
 *   - cd: the host copy of the descent with the CPU's H e: the objective e^T H e / 2 summed over the rows;
 *   - encode: the host copy of the encoders: the bytes;
 *   - ref_apply: the CPU's factor and products (gptq.c's reference target): the relative difference;
 *   - inv_upper_keep / begin_kept (the factor and H in F32 kept on the GPU): both read back; H in F32 must equal what
 *     the host would have formed bit for bit, the factor the CPU's within F32 rounding; the host copies then go on
 *     with the GPU's factor, so that the passes are compared on the same inputs.
 * The calibration goes on with the GPU's results, so that every matrix of the run is checked where the GPU
 * took it. The GPU sums in another order, so a pass or descent may end a little above or below the host's;
 * a systematic excess, or one call far off, is an error of the device code, and the test prints each call
 * and the worst so that the part and the matrix are named.
 * The end result's KL is a weak check on tiny: rounding-sized changes move it by several per cent
 * (LB_SHADOW_DRY=1 LB_SHADOW_NOISE=eps perturbs the reference target by a relative eps on the CPU to show it).
 */
#include "../cudahost/host_dev.h"
#include "algo/calib.h"
#include "cuda_test.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

/* the CPU's reference target (gptq.c's lb_gptq_ref_target without a device): the factor of H + lam I in F32 */
typedef struct cpu_ref {
    float *u;   /* U, zero below the diagonal */
    float *dct; /* (D C)^T of the last upload (lb_gptq_ref_dct) */
    int64_t n;
} cpu_ref;

/* the CPU's (D C)^T from C and s, kept in c for the applies that follow without an upload */
static void cpu_ref_dct(cpu_ref *c, const double *C, const float *sc, int64_t n, bool upload) {
    if (!upload) return;
    free(c->dct);
    c->dct = malloc((size_t)(n * n) * sizeof *c->dct);
    REQUIRE(c->dct, "out of memory");
    lb_gptq_ref_dct(NULL, C, sc, n, c->dct);
}

typedef struct shadow {
    const lb_gptq_ops *gpu;
    host_dev hd;
    int64_t rows, n; /* begin's */
    cpu_ref ref; /* the CPU's factor of ref_factor's H + lam I */
    int calls[4];
    double sum_gpu[4], sum_cpu[4]; /* pass, cd: objectives summed over the calls */
    double worst[4];               /* pass, cd: the largest relative excess of a call; ref: the largest difference */
    char worst_what[4][96];
    const double *kept_A; /* inv_upper_keep's A (the caller's H: unchanged until begin_kept) */
    int64_t kept_n;
    float *ku, *khf, *kcpu; /* begin_kept's factor and Hf read back, the CPU's factor of the same A */
    int kept_calls;
    long kept_hf_diff;    /* elements of the device's Hf that differ from the host's formula */
    double kept_u_worst;  /* the factor's largest relative difference (Frobenius, per call) from the CPU's */
    bool dry;
    const host_dev *hd_dry; /* LB_SHADOW_DRY: the shadowed host copies, whose kept factor is read instead */
    long enc_diff_bytes;
} shadow;

enum { K_PASS, K_CD, K_ENC, K_REF };
static const char *kind_name[4] = {"pass", "cd", "encode", "ref target"};

static void note(shadow *s, int k, double gpu, double cpu, const char *what) {
    s->calls[k]++;
    s->sum_gpu[k] += gpu, s->sum_cpu[k] += cpu;
    const double rel = k == K_REF ? gpu : gpu / cpu - 1;
    if (s->calls[k] == 1 || rel > s->worst[k]) {
        s->worst[k] = rel;
        snprintf(s->worst_what[k], sizeof s->worst_what[k], "%s", what);
    }
}

/* how many of n bytes differ */
static size_t bytes_differ(const uint8_t *a, const uint8_t *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

static lb_status s_reserve(void *u, int64_t rows, int64_t n, bool cd, lb_error *err) {
    const shadow *s = u;
    return s->gpu->reserve(s->gpu->user, rows, n, cd, err);
}
static lb_status s_inv_upper(void *u, lb_pool *pool, double *A, int64_t n, double *work, bool *ok, lb_error *err) {
    const shadow *s = u;
    return s->gpu->inv_upper(s->gpu->user, pool, A, n, work, ok, err);
}
static lb_status s_begin(void *u, const float *U, const float *Hf, int64_t rows, int64_t n, lb_error *err) {
    shadow *s = u;
    s->rows = rows, s->n = n;
    lb_status st = s->gpu->begin(s->gpu->user, U, Hf, rows, n, err);
    return st == LB_OK ? h_begin(&s->hd, U, Hf, rows, n, err) : st;
}
static lb_status s_inv_upper_keep(void *u, const double *A, int64_t n, bool *ok, lb_error *err) {
    shadow *s = u;
    lb_status st = s->gpu->inv_upper_keep(s->gpu->user, A, n, ok, err);
    s->kept_A = st == LB_OK && *ok ? A : NULL;
    s->kept_n = n;
    return st;
}
static lb_status s_begin_kept(void *u, const float *hf_diag, int64_t rows, int64_t n, lb_error *err) {
    shadow *s = u;
    REQUIRE(s->kept_A && s->kept_n == n, "begin_kept without a kept factor");
    s->rows = rows, s->n = n;
    lb_status st = s->gpu->begin_kept(s->gpu->user, hf_diag, rows, n, err);
    if (st != LB_OK) return st;
    const size_t nn = (size_t)n * (size_t)n;
    free(s->ku), free(s->khf), free(s->kcpu);
    s->ku = malloc(nn * sizeof *s->ku), s->khf = hf_diag ? malloc(nn * sizeof *s->khf) : NULL, s->kcpu = malloc(nn * sizeof *s->kcpu);
    double *A = malloc(nn * sizeof *A), *work = malloc((size_t)n * sizeof *work);
    REQUIRE(s->ku && (!hf_diag || s->khf) && s->kcpu && A && work, "out of memory");
    if (s->dry) { /* the host copies' own */
        memcpy(s->ku, s->hd_dry->Uk, nn * sizeof *s->ku);
        if (hf_diag) memcpy(s->khf, s->hd_dry->Hfk, nn * sizeof *s->khf);
    } else
        REQUIRE(lb_cuda_gptq_read_kept(s->gpu->user, s->ku, s->khf, n, err) == LB_OK, "%s", err->msg);
    /* the CPU's factor of the same A, and H in F32 as the host forms it */
    memcpy(A, s->kept_A, nn * sizeof *A);
    for (int64_t i = 0; i < n; i++) /* the factor of A's lower triangle, as the device reads it */
        for (int64_t j = i + 1; j < n; j++) A[i * n + j] = A[j * n + i];
    bool ok = false;
    REQUIRE(lb_gptq_ops_cpu()->inv_upper(NULL, NULL, A, n, work, &ok, err) == LB_OK && ok, "the CPU cannot factor the kept A");
    double d2 = 0, c2 = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            const float c = j >= i ? (float)A[i * n + j] : 0.0f, g = s->ku[i * n + j];
            d2 += ((double)g - c) * ((double)g - c), c2 += (double)c * c;
            if (hf_diag) {
                const float h = i == j ? hf_diag[i] : (float)(i > j ? s->kept_A[i * n + j] : s->kept_A[j * n + i]);
                s->kept_hf_diff += memcmp(&h, &s->khf[i * n + j], sizeof h) != 0;
            }
        }
    const double rel = sqrt(d2 / (c2 > 0 ? c2 : 1));
    if (rel > s->kept_u_worst) s->kept_u_worst = rel;
    s->kept_calls++;
    printf("  kept factor %lld x %lld: U %.3g from the CPU's, H in F32 %s\n", (long long)rows, (long long)n, rel,
           hf_diag ? "checked" : "not formed");
    free(A), free(work);
    return h_begin(&s->hd, s->ku, s->khf, rows, n, err);
}
static lb_status s_load(void *u, const float *T, int64_t rows, int64_t n, lb_error *err) {
    const shadow *s = u;
    return s->gpu->load(s->gpu->user, T, rows, n, err);
}
static lb_status s_update(void *u, lb_pool *pool, float *T, int64_t rows, int64_t n, const float *E, int64_t lde, const float *U,
                          int64_t i1, int64_t i2, int64_t i3, lb_error *err) {
    const shadow *s = u;
    return s->gpu->update(s->gpu->user, pool, T, rows, n, E, lde, U, i1, i2, i3, err);
}
static lb_status s_h_times_e(void *u, lb_pool *pool, const float *W, const float *Q, float *G, int64_t rows, int64_t n, const float *Hf,
                             const bool *sel, lb_error *err) {
    const shadow *s = u;
    return s->gpu->h_times_e(s->gpu->user, pool, W, Q, G, rows, n, Hf, sel, err);
}
static lb_status s_matmul(void *u, lb_pool *pool, const float *x, int64_t rows, const float *w, int64_t n, int64_t K, float *out,
                          lb_error *err) {
    const shadow *s = u;
    return s->gpu->matmul(s->gpu->user, pool, x, rows, w, n, K, out, err);
}
static void s_end(void *u) {
    const shadow *s = u;
    if (s->gpu->end) s->gpu->end(s->gpu->user);
}
static bool s_encodes(void *u, lb_type t, lb_encoder enc) {
    const shadow *s = u;
    return s->gpu->encodes(s->gpu->user, t, enc);
}

static lb_status s_encode(void *u, lb_type t, lb_encoder enc, const float *S, int64_t ld, int64_t rows, int64_t c0, int64_t c1,
                          const float *imp, uint8_t *out, size_t row_bytes, lb_error *err) {
    shadow *s = u;
    const size_t bb = lb_type_traits_get(t)->block_bytes, off = (size_t)(c0 / 256) * bb, len = (size_t)((c1 - c0) / 256) * bb;
    uint8_t *mine = malloc((size_t)rows * row_bytes);
    REQUIRE(mine, "out of memory");
    lb_status st = s->gpu->encode(s->gpu->user, t, enc, S, ld, rows, c0, c1, imp, out, row_bytes, err);
    if (st != LB_OK) return free(mine), st;
    REQUIRE(h_encode(&s->hd, t, enc, S, ld, rows, c0, c1, imp, mine, row_bytes, err) == LB_OK, "%s", err->msg);
    long diff = 0;
    for (int64_t r = 0; r < rows; r++) diff += (long)bytes_differ(out + (size_t)r * row_bytes + off, mine + (size_t)r * row_bytes + off, len);
    s->enc_diff_bytes += diff;
    char what[96];
    snprintf(what, sizeof what, "%s %lld x cols %lld..%lld: %ld bytes differ", lb_type_name(t), (long long)rows, (long long)c0,
             (long long)c1, diff);
    note(s, K_ENC, (double)diff, 1, what);
    free(mine);
    return LB_OK;
}

static lb_status s_pass(void *u, lb_type t, lb_encoder enc, const float *W, int64_t rows, int64_t n, int64_t batch, const float *imp,
                        bool static_scales, uint8_t *out, size_t row_bytes, double *loss, lb_error *err) {
    shadow *s = u;
    uint8_t *mine = malloc((size_t)rows * row_bytes);
    double *ml = malloc((size_t)rows * sizeof *ml);
    REQUIRE(mine && ml, "out of memory");
    lb_status st = s->gpu->pass(s->gpu->user, t, enc, W, rows, n, batch, imp, static_scales, out, row_bytes, loss, err);
    if (st != LB_OK) return free(mine), free(ml), st;
    REQUIRE(h_pass(&s->hd, t, enc, W, rows, n, batch, imp, static_scales, mine, row_bytes, ml, err) == LB_OK, "%s", err->msg);
    double lg = 0, lc = 0;
    for (int64_t r = 0; r < rows; r++) lg += loss[r], lc += ml[r];
    const size_t diff = bytes_differ(out, mine, (size_t)rows * row_bytes);
    char what[96];
    snprintf(what, sizeof what, "%s %lld x %lld %s: loss gpu %.6g host %.6g, %zu bytes differ", lb_type_name(t), (long long)rows,
             (long long)n, static_scales ? "static" : "first", lg, lc, diff);
    printf("  pass %s\n", what);
    note(s, K_PASS, lg, lc, what);
    free(mine), free(ml);
    return LB_OK;
}

/* sum over rows of (w - q) . g / 2: e^T H e / 2 when g = H e */
static double cd_objective(const float *W, const float *Q, const float *G, int64_t rows, int64_t n) {
    double e2 = 0;
    for (int64_t i = 0; i < rows * n; i++) e2 += (double)(W[i] - Q[i]) * G[i];
    return e2 / 2;
}

static lb_status s_cd(void *u, lb_type t, const float *W, float *Q, uint8_t *out, size_t row_bytes, float *G, int64_t rows, int64_t n,
                      int sweeps, bool scales, const float *Ht, lb_error *err) {
    shadow *s = u;
    const size_t rn = (size_t)rows * (size_t)n;
    float *q2 = malloc(rn * sizeof *q2), *g2 = malloc(rn * sizeof *g2);
    uint8_t *o2 = malloc((size_t)rows * row_bytes);
    REQUIRE(q2 && g2 && o2, "out of memory");
    memcpy(q2, Q, rn * sizeof *q2), memcpy(o2, out, (size_t)rows * row_bytes);
    lb_status st = s->gpu->cd(s->gpu->user, t, W, Q, out, row_bytes, G, rows, n, sweeps, scales, Ht, err);
    if (st != LB_OK) return free(q2), free(g2), free(o2), st;
    REQUIRE(h_cd(&s->hd, t, W, q2, o2, row_bytes, g2, rows, n, sweeps, scales, Ht, err) == LB_OK, "%s", err->msg);
    /* each side's objective through the CPU's own H e, so that the GPU's products do not judge themselves */
    bool *all = malloc((size_t)rows);
    REQUIRE(all, "out of memory");
    memset(all, 1, (size_t)rows);
    float *gg = malloc(rn * sizeof *gg);
    REQUIRE(gg, "out of memory");
    REQUIRE(lb_gptq_ops_cpu()->h_times_e(NULL, NULL, W, Q, gg, rows, n, s->hd.Hf, all, err) == LB_OK, "%s", err->msg);
    const double og = cd_objective(W, Q, gg, rows, n), oc = cd_objective(W, q2, g2, rows, n);
    const size_t diff = bytes_differ(out, o2, (size_t)rows * row_bytes);
    char what[96];
    snprintf(what, sizeof what, "%s %lld x %lld%s: objective gpu %.6g host %.6g, %zu bytes differ", lb_type_name(t), (long long)rows,
             (long long)n, scales ? " (scales)" : "", og, oc, diff);
    printf("  cd %s\n", what);
    note(s, K_CD, og, oc, what);
    free(q2), free(g2), free(o2), free(all), free(gg);
    return LB_OK;
}

static bool cpu_ref_factor(cpu_ref *c, const double *H, int64_t n, double lam, lb_error *err) {
    double *A = malloc((size_t)(n * n) * sizeof *A), *work = malloc((size_t)n * sizeof *work);
    free(c->u);
    c->u = malloc((size_t)(n * n) * sizeof *c->u);
    c->n = n;
    REQUIRE(A && work && c->u, "out of memory");
    memcpy(A, H, (size_t)(n * n) * sizeof *A);
    for (int64_t j = 0; j < n; j++) A[j * n + j] += lam;
    bool ok = false;
    REQUIRE(lb_gptq_ops_cpu()->inv_upper(NULL, NULL, A, n, work, &ok, err) == LB_OK, "%s", err->msg);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) c->u[i * n + j] = j >= i ? (float)A[i * n + j] : 0.0f;
    free(A), free(work);
    return ok;
}

/* W = (W DC + lam W) U^T U with the CPU's products */
static void cpu_ref_apply(const cpu_ref *c, int64_t n, double lam, float *W, int64_t rows, lb_error *err) {
    const size_t rn = (size_t)rows * (size_t)n;
    const float *DCt = c->dct;
    float *tmp = malloc(rn * sizeof *tmp), *ut = malloc((size_t)(n * n) * sizeof *ut);
    REQUIRE(tmp && ut && c->u && DCt && c->n == n, "out of memory, or a product before its factor");
    const lb_gptq_ops *cpu = lb_gptq_ops_cpu();
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) ut[i * n + j] = c->u[j * n + i];
    REQUIRE(cpu->matmul(NULL, NULL, W, rows, DCt, n, n, tmp, err) == LB_OK, "%s", err->msg);
    for (size_t e = 0; e < rn; e++) W[e] = tmp[e] + (float)lam * W[e];
    REQUIRE(cpu->matmul(NULL, NULL, W, rows, c->u, n, n, tmp, err) == LB_OK, "%s", err->msg);
    REQUIRE(cpu->matmul(NULL, NULL, tmp, rows, ut, n, n, W, err) == LB_OK, "%s", err->msg);
    free(tmp), free(ut);
}

static lb_status s_ref_factor(void *u, const double *H, int64_t n, double lam, bool upload, bool *ok, lb_error *err) {
    shadow *s = u;
    lb_status st = s->gpu->ref_factor(s->gpu->user, H, n, lam, upload, ok, err);
    if (st != LB_OK || !*ok) return st;
    CHECK(cpu_ref_factor(&s->ref, H, n, lam, err), "ref target: the GPU factored H + %g I, the CPU found it not positive definite", lam);
    return LB_OK;
}

static lb_status s_ref_apply(void *u, const double *C, const float *sc, int64_t n, double lam, float *W, int64_t rows, bool upload,
                             lb_error *err) {
    shadow *s = u;
    cpu_ref_dct(&s->ref, C, sc, n, upload);
    const size_t rn = (size_t)rows * (size_t)n;
    float *w = malloc(rn * sizeof *w);
    REQUIRE(w, "out of memory");
    memcpy(w, W, rn * sizeof *w);
    lb_status st = s->gpu->ref_apply(s->gpu->user, C, sc, n, lam, W, rows, upload, err);
    if (st != LB_OK) return free(w), st;
    cpu_ref_apply(&s->ref, n, lam, w, rows, err);
    double d2 = 0, c2 = 0;
    for (size_t e = 0; e < rn; e++) d2 += ((double)W[e] - w[e]) * ((double)W[e] - w[e]), c2 += (double)w[e] * w[e];
    const double rel = sqrt(d2 / (c2 > 0 ? c2 : 1));
    char what[96];
    snprintf(what, sizeof what, "%lld x %lld, lam %.4g: relative difference %.3g", (long long)rows, (long long)n, lam, rel);
    printf("  ref target %s\n", what);
    note(s, K_REF, rel, 0, what);
    free(w);
    return LB_OK;
}

/* LB_SHADOW_DRY=1: the shadowed table is the host copies themselves (a check of this test without a GPU) */
static cpu_ref dry_ref;
static lb_status d_ref_factor(void *u, const double *H, int64_t n, double lam, bool upload, bool *ok, lb_error *err) {
    (void)u, (void)upload;
    *ok = cpu_ref_factor(&dry_ref, H, n, lam, err);
    return LB_OK;
}
static lb_status d_ref_apply(void *u, const double *C, const float *sc, int64_t n, double lam, float *W, int64_t rows, bool upload,
                             lb_error *err) {
    (void)u;
    cpu_ref_dct(&dry_ref, C, sc, n, upload);
    cpu_ref_apply(&dry_ref, n, lam, W, rows, err);
    /* LB_SHADOW_NOISE=eps: the targets perturbed by a relative eps per element (how much a rounding-sized change of
     * the target moves the end result) */
    const char *ns = getenv("LB_SHADOW_NOISE");
    const double eps = ns ? atof(ns) : 0;
    static uint64_t st = 0x9E3779B97F4A7C15ull;
    for (int64_t e = 0; eps > 0 && e < rows * n; e++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        W[e] *= (float)(1 + eps * ((double)(st >> 11) / 4503599627370496.0 - 1));
    }
    return LB_OK;
}
static lb_status d_reserve(void *u, int64_t rows, int64_t n, bool cd, lb_error *err) {
    (void)u, (void)rows, (void)n, (void)cd, (void)err;
    return LB_OK;
}

int main(void) {
    unsetenv("LB_GPU_ENCODE"); /* the defaults: the GPU's encoders, passes, descent and reference target */
    unsetenv("LB_GPU_SWEEP");
    unsetenv("LB_GPU_SWEEP_SKIP");
    lb_gptq_ops *g = NULL, dry;
    host_dev dry_hd = {0};
    lb_error e;
    const char *dv = getenv("LB_SHADOW_DRY");
    const bool is_dry = dv && dv[0] == '1';
    if (is_dry) {
        dry = host_dev_ops(&dry_hd);
        dry.reserve = d_reserve, dry.ref_factor = d_ref_factor, dry.ref_apply = d_ref_apply;
    } else {
        REQUIRE(lb_gptq_ops_cuda_new(0, &g, &e) == LB_OK, "%s", e.msg);
        REQUIRE(g->pass && g->cd && g->ref_factor && g->ref_apply && g->inv_upper_keep && g->begin_kept,
                "the CUDA table lacks the default entries");
    }
    shadow s = {.gpu = is_dry ? &dry : g, .dry = is_dry, .hd_dry = &dry_hd};
    lb_gptq_ops o = {.user = &s, .name = "cuda, shadowed", .reserve = s_reserve, .inv_upper = s_inv_upper, .begin = s_begin,
                     .inv_upper_keep = s_inv_upper_keep, .begin_kept = s_begin_kept,
                     .load = s_load, .update = s_update, .h_times_e = s_h_times_e, .matmul = s_matmul, .end = s_end,
                     .encodes = s_encodes, .encode = s_encode, .pass = s_pass, .cd = s_cd, .ref_factor = s_ref_factor,
                     .ref_apply = s_ref_apply};
    tiny_fixture f = tiny_load();
    char a[128], b[128];
    snprintf(a, sizeof a, "/tmp/lowbit-cuda-shadow-%d-cpu.gguf", (int)getpid());
    snprintf(b, sizeof b, "/tmp/lowbit-cuda-shadow-%d-gpu.gguf", (int)getpid());
    const lb_device cpu = {LB_DEVICE_CPU, 0};
    quantize_tiny("gptq", cpu, f.calib, f.n_calib, a);
    printf("calls:\n");
    lb_calib_test_gptq_ops = &o;
    quantize_tiny("gptq", cpu, f.calib, f.n_calib, b);
    lb_calib_test_gptq_ops = NULL;
    for (int k = 0; k < 4; k++) {
        if (k == K_ENC)
            printf("%-10s %4d calls, %ld bytes differ from the host copy's; worst: %s\n", kind_name[k], s.calls[k], s.enc_diff_bytes,
                   s.worst_what[k]);
        else if (k == K_REF)
            printf("%-10s %4d calls, worst: %s\n", kind_name[k], s.calls[k], s.worst_what[k]);
        else
            printf("%-10s %4d calls, objective summed gpu %.6g host %.6g (%+.3f %%); worst call %+.3f %%: %s\n", kind_name[k],
                   s.calls[k], s.sum_gpu[k], s.sum_cpu[k], 100 * (s.sum_gpu[k] / s.sum_cpu[k] - 1), 100 * s.worst[k], s.worst_what[k]);
    }
    printf("kept       %4d calls, H in F32 %ld elements differ from the host's; factor worst %.3g from the CPU's\n", s.kept_calls,
           s.kept_hf_diff, s.kept_u_worst);
    const double kc = kld_on(a, f.m, f.valid, f.n_valid, is_dry ? cpu : cuda0), kg = kld_on(b, f.m, f.valid, f.n_valid, is_dry ? cpu : cuda0);
    printf("q4_k_m gptq, CPU statistics, KL(base||q): CPU solver %.6f, GPU table %.6f (%+.2f %%)\n", kc, kg, 100 * (kg / kc - 1));
    CHECK(s.calls[K_PASS] > 0 && s.calls[K_CD] > 0 && s.calls[K_REF] > 0, "the GPU's passes (%d), descents (%d) or reference targets (%d) unused",
          s.calls[K_PASS], s.calls[K_CD], s.calls[K_REF]);
    /* bounds: the GPU sums in another order; summed over a run the passes and descents land within 0.5 % of the
     * host copy's objective, a single call within 5 %, the reference target within 1e-4 of the CPU's */
    CHECK(fabs(s.sum_gpu[K_PASS] / s.sum_cpu[K_PASS] - 1) < 0.005, "passes: GPU %.6g vs host %.6g", s.sum_gpu[K_PASS], s.sum_cpu[K_PASS]);
    CHECK(fabs(s.sum_gpu[K_CD] / s.sum_cpu[K_CD] - 1) < 0.005, "descent: GPU %.6g vs host %.6g", s.sum_gpu[K_CD], s.sum_cpu[K_CD]);
    CHECK(s.worst[K_PASS] < 0.05 && s.worst[K_CD] < 0.05, "a call far off: pass %s; cd %s", s.worst_what[K_PASS], s.worst_what[K_CD]);
    CHECK(s.worst[K_REF] < 1e-4, "reference target: %s", s.worst_what[K_REF]);
    CHECK(s.enc_diff_bytes == 0, "encoders: %ld bytes differ (%s)", s.enc_diff_bytes, s.worst_what[K_ENC]);
    /* the kept factor: used for every matrix (the sweeps run wholly on the GPU), H in F32 exact, the factor within a
     * few F32 roundings of the CPU's (both factor in double; the GPU sums in another order) */
    CHECK(s.kept_calls > 0 && s.kept_hf_diff == 0 && s.kept_u_worst < 1e-5, "kept factor: %d calls, %ld elements of H differ, U %.3g",
          s.kept_calls, s.kept_hf_diff, s.kept_u_worst);
    /* the end result: one draw from the spread that rounding alone gives (test_cuda_gptq's bound, and why) */
    CHECK(kg / kc - 1 < 0.15, "GPU table KL %.6g vs CPU solver %.6g", kg, kc);
    remove(a), remove(b);
    host_dev_free(&s.hd);
    free(s.ref.u), free(dry_ref.u), free(s.ref.dct), free(dry_ref.dct), free(s.ku), free(s.khf), free(s.kcpu);
    host_dev_free(&dry_hd);
    lb_gptq_ops_cuda_free(g);
    tiny_free(&f);
    TEST_DONE();
}
