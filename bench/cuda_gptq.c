/*
 * cuda_gptq.c - GPTQ of one matrix at a model's shapes with its linear algebra on the GPU (lb_gptq_ops from
 * lb_gptq_ops_cuda_new) or on CPU threads, timed per phase (lb_gptq_stats.seconds). Random weights; H =
 * L L^T + D (64 random factors, columns scaled, on the GPU table's product). No quality claim: the time.
 *   build/cuda_gptq ROWS COLS [TYPE [DEVICE [THREADS [PASSES CD]]]]
 *     DEVICE cuda (default) or cpu; TYPE q4_K (default; any GPTQ type name); THREADS: all CPUs by default;
 *     PASSES, CD: the driver's 4 and 4 (coordinate descent with the sub-block scales).
 *   e.g. build/cuda_gptq 4096 14336 q4_K cuda 16    (Llama-3-8B's down_proj)
 * Also times the pieces alone on the GPU: the inverse factor of (COLS, COLS), one sweep's updates, H e.
 * Prints one JSON line per measurement.
 */
#include "algo/gptq.h"
#include "core/core.h"
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float nrand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    const double u1 = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    const double u2 = (double)(rng >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static int die(const char *what, const lb_error *e) {
    fprintf(stderr, "cuda_gptq: %s: %s\n", what, e ? e->msg : "");
    return 1;
}

/* the pieces alone on the GPU: the inverse factor, one sweep's updates, H e */
static void time_pieces(lb_gptq_ops *g, lb_pool *pool, const double *H0, float *Hf, const float *W0, float *W, int64_t rows, int64_t n) {
    lb_error e;
    double mean = 0;
    double *H = malloc(sizeof *H * (size_t)(n * n));
    for (int64_t j = 0; j < n; j++) mean += H0[j * n + j] / (double)n;
    memcpy(H, H0, sizeof *H * (size_t)(n * n));
    for (int64_t j = 0; j < n; j++) H[j * n + j] += 0.01 * mean;
    bool ok = false;
    double t0 = lb_time_sec();
    if (g->inv_upper(g->user, pool, H, n, NULL, &ok, &e) != LB_OK || !ok) {
        die("inv_upper", ok ? &e : NULL);
        exit(1);
    }
    printf("{\"what\": \"inv_upper\", \"n\": %lld, \"seconds\": %.3f}\n", (long long)n, lb_time_sec() - t0);
    for (int64_t i = 0; i < n * n; i++) Hf[i] = (float)H[i];
    const int64_t B = 128;
    float *E = malloc(sizeof *E * (size_t)(rows * B)), *G = malloc(sizeof *G * (size_t)(rows * n));
    bool *sel = malloc((size_t)rows);
    for (int64_t i = 0; i < rows * B; i++) E[i] = 1e-3f * nrand();
    memcpy(W, W0, sizeof *W * (size_t)(rows * n));
    memset(sel, 1, (size_t)rows);
    t0 = lb_time_sec();
    lb_status s = g->begin(g->user, Hf, Hf, rows, n, &e);
    if (s == LB_OK) s = g->load(g->user, W, rows, n, &e);
    const double t1 = lb_time_sec();
    for (int64_t i1 = 0; s == LB_OK && i1 + B < n; i1 += B) {
        const int64_t i2 = i1 + B, i3 = i2 + B < n ? i2 + B : n;
        s = g->update(g->user, pool, W, rows, n, E, B, Hf, i1, i2, i3, &e);
    }
    const double t2 = lb_time_sec();
    if (s == LB_OK) s = g->h_times_e(g->user, pool, W0, W, G, rows, n, Hf, sel, &e);
    if (s != LB_OK) {
        die("the pieces", &e);
        exit(1);
    }
    printf("{\"what\": \"sweep updates\", \"rows\": %lld, \"n\": %lld, \"batch\": %lld, \"upload_seconds\": %.3f, \"seconds\": %.3f}\n",
           (long long)rows, (long long)n, (long long)B, t1 - t0, t2 - t1);
    printf("{\"what\": \"h_times_e\", \"rows\": %lld, \"n\": %lld, \"seconds\": %.3f}\n", (long long)rows, (long long)n, lb_time_sec() - t2);
    if (g->end) g->end(g->user);
    free(H), free(E), free(G), free(sel);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: cuda_gptq ROWS COLS [TYPE [cuda|cpu [THREADS [PASSES CD]]]]\n");
        return 2;
    }
    const int64_t rows = atoll(argv[1]), n = atoll(argv[2]);
    const char *tname = argc > 3 ? argv[3] : "q4_K";
    const bool gpu = argc <= 4 || strcmp(argv[4], "cpu") != 0;
    const int threads = argc > 5 ? atoi(argv[5]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    lb_type type = LB_TYPE_COUNT;
    for (int t = 0; t < LB_TYPE_COUNT; t++)
        if (!strcasecmp(lb_type_name((lb_type)t), tname)) type = (lb_type)t;
    if (type == LB_TYPE_COUNT || rows <= 0 || n <= 0) return die("bad arguments", NULL);
    lb_error e;
    lb_gptq_ops *g = NULL; /* the pieces are timed on the GPU only; cpu: H by the CPU table */
    if (gpu && lb_gptq_ops_cuda_new(0, &g, &e) != LB_OK) return die("the GPU table", &e);
    const lb_gptq_ops *h_ops = gpu ? g : lb_gptq_ops_cpu();
    lb_pool *pool = lb_pool_new(threads);
    enum { NF = 64 }; /* H = L L^T + D: NF shared factors and a per-column part, columns scaled */
    float *L = malloc(sizeof *L * (size_t)(n * NF)), *Hf = malloc(sizeof *Hf * (size_t)(n * n)), *sc = malloc(sizeof *sc * (size_t)n);
    float *W0 = malloc(sizeof *W0 * (size_t)(rows * n)), *W = malloc(sizeof *W * (size_t)(rows * n));
    double *H0 = malloc(sizeof *H0 * (size_t)(n * n)), *H = malloc(sizeof *H * (size_t)(n * n));
    uint8_t *out = malloc(lb_type_row_size(type, n) * (size_t)rows);
    if (!L || !Hf || !sc || !W0 || !W || !H0 || !H || !out || !pool) return die("out of memory", NULL);
    for (int64_t j = 0; j < n; j++) sc[j] = expf(0.7f * nrand());
    for (int64_t j = 0; j < n; j++)
        for (int f = 0; f < NF; f++) L[j * NF + f] = sc[j] * nrand();
    for (int64_t i = 0; i < rows * n; i++) W0[i] = 0.02f * nrand();
    double t0 = lb_time_sec();
    if (gpu && g->reserve(g->user, rows > n ? rows : n, n, true, &e) != LB_OK) return die("reserve", &e);
    if (h_ops->matmul(h_ops->user, pool, L, n, L, n, NF, Hf, &e) != LB_OK) return die("H", &e); /* (n, n) = L L^T */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) H0[i * n + j] = H0[j * n + i] = Hf[j * n + i] + (i == j ? 0.5 * sc[i] * sc[i] * NF : 0);
    printf("{\"what\": \"H\", \"n\": %lld, \"seconds\": %.3f}\n", (long long)n, lb_time_sec() - t0);
    free(L), free(sc);

    if (gpu) time_pieces(g, pool, H0, Hf, W0, W, rows, n);

    /* the whole matrix, as the driver runs it */
    lb_gptq_params p;
    lb_gptq_params_default(&p);
    p.passes = argc > 7 ? atoi(argv[6]) : 4;
    p.cd_sweeps = argc > 7 ? atoi(argv[7]) : 4;
    p.cd_scales = true;
    p.ops = gpu ? g : NULL;
    memcpy(W, W0, sizeof *W * (size_t)(rows * n));
    memcpy(H, H0, sizeof *H * (size_t)(n * n));
    lb_gptq_stats st;
    t0 = lb_time_sec();
    if (lb_gptq_quantize(pool, W, rows, n, H, type, LB_ENCODER_DEFAULT, &p, out, &st, &e) != LB_OK) return die("gptq", &e);
    const double sec = lb_time_sec() - t0;
    printf("{\"what\": \"gptq\", \"device\": \"%s\", \"type\": \"%s\", \"rows\": %lld, \"n\": %lld, \"threads\": %d, \"passes\": %d, "
           "\"cd\": %d, \"seconds\": %.3f, \"factor\": %.3f, \"columns\": %.3f, \"update\": %.3f, \"cd_steps\": %.3f, "
           "\"products\": %.3f, \"fallback\": %s, \"gpu_peak_bytes\": %zu}\n",
           gpu ? "cuda" : "cpu", lb_type_name(type), (long long)rows, (long long)n, lb_pool_size(pool), p.passes, p.cd_sweeps, sec,
           st.seconds[LB_GPTQ_PH_FACTOR], st.seconds[LB_GPTQ_PH_COLUMNS], st.seconds[LB_GPTQ_PH_UPDATE], st.seconds[LB_GPTQ_PH_CD],
           st.seconds[LB_GPTQ_PH_PRODUCTS], st.fallback ? "true" : "false", g ? lb_gptq_ops_cuda_peak(g) : (size_t)0);
    lb_gptq_ops_cuda_free(g);
    lb_pool_free(pool);
    free(Hf), free(W0), free(W), free(H0), free(H), free(out);
    return 0;
}
