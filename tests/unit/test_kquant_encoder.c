/*
 * test_kquant_encoder.c - lowbit's default k-quant encoders quantize_<t> (src/algo/kquant.c) of q2_K,
 * q3_K, q4_K, q5_K and q6_K against ggml's encoders quantize_<t>_ref, with and without an imatrix, on
 *   - the 16 golden input rows of tests/golden/ggml/<t>.quant_imatrix.bin with their stored imatrix;
 *   - random rows of 4096: gaussian (two scales), heavy-tailed (student-t, 3 dof), gaussian with rare
 *     large outliers, all positive, all zero, constant, tiny; a random imatrix with some zeros.
 * The error is E = Σ w_j (x_j − dequant_j)², w = imatrix or 1 (kquant.h). Checks: every super-block has
 * E(lowbit) <= E(ref) (equal bytes allowed); the output dequantizes to finite values; two calls, a call
 * per row, and the encoder's baseline and AVX2 builds (LB_FORCE_REF) give identical bytes; rows with NaN /
 * Inf do not crash and are deterministic; the mean over rows of 1 − E(lowbit)/E(ref) is positive. Prints
 * that gain per type and set, and the time of a (LB_KQUANT_BENCH_ROWS [64], 4096) gaussian matrix with 2
 * threads (wall and CPU) next to the reference.
 */
#include "algo/kquant.h"
#include "core/core.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/ref/ref.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define GOLDEN_DIR "tests/golden/ggml"
#define GLEN 256   /* elements per golden row */
#define GROWS 16   /* golden rows */
#define RLEN 4096  /* random row length */

typedef struct {
    const char *name; /* golden file prefix */
    size_t bytes;     /* block bytes (256 elements) */
    lb_quantize_fn mine, ref;
    void (*dequant)(const void *, float *, int64_t);
} kq_case;

static const kq_case TYPES[] = {
    {"q2_k", sizeof(block_q2_K), quantize_q2_K_best, quantize_q2_K_ref, dequantize_row_q2_K_ref},
    {"q3_k", sizeof(block_q3_K), quantize_q3_K_best, quantize_q3_K_ref, dequantize_row_q3_K_ref},
    {"q4_k", sizeof(block_q4_K), quantize_q4_K_best, quantize_q4_K_ref, dequantize_row_q4_K_ref},
    {"q5_k", sizeof(block_q5_K), quantize_q5_K_best, quantize_q5_K_ref, dequantize_row_q5_K_ref},
    {"q6_k", sizeof(block_q6_K), quantize_q6_K_best, quantize_q6_K_ref, dequantize_row_q6_K_ref},
};
#define NTYPES ((int)(sizeof TYPES / sizeof TYPES[0]))

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    REQUIRE(p, "out of memory (%zu bytes)", n);
    return p;
}

/* ---- deterministic random numbers (splitmix64) ---- */

static uint64_t rng = 0x243F6A8885A308D3ull;
static double uniform(void) {
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static double gauss(void) { return sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform()); }
static double student3(void) {
    double c = 0;
    for (int i = 0; i < 3; i++) {
        const double g = gauss();
        c += g * g;
    }
    return gauss() / sqrt(c / 3);
}

/* ---- checks ---- */

typedef struct {
    double gain;  /* Σ over rows with E(ref) > 0 of 1 − E(mine)/E(ref) */
    int rows;
} gain_acc;

/* Σ w (x − y)² over n elements (w NULL: 1) */
static double sq_err(const float *x, const float *y, const float *w, int64_t n) {
    double e = 0;
    for (int64_t j = 0; j < n; j++) {
        const double d = (double)x[j] - (double)y[j];
        e += (w ? (double)w[j] : 1.0) * d * d;
    }
    return e;
}

/* one row: per super-block E(mine) <= E(ref), finite output; adds the row's relative gain */
static void check_row(const kq_case *t, const float *x, const float *w, int64_t n, const uint8_t *ym,
                      const uint8_t *yr, gain_acc *g, const char *what, int64_t row) {
    float *dm = xmalloc((size_t)n * sizeof(float)), *dr = xmalloc((size_t)n * sizeof(float));
    t->dequant(ym, dm, n);
    t->dequant(yr, dr, n);
    double em = 0, er = 0;
    int worse = 0, nonfinite = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const int64_t o = b * QK_K;
        const double bm = sq_err(x + o, dm + o, w ? w + o : NULL, QK_K), br = sq_err(x + o, dr + o, w ? w + o : NULL, QK_K);
        worse += bm > br;
        em += bm;
        er += br;
    }
    for (int64_t j = 0; j < n; j++) nonfinite += !isfinite(dm[j]);
    CHECK(worse == 0, "%s %s row %lld: %d super-blocks worse than ref", t->name, what, (long long)row, worse);
    CHECK(nonfinite == 0, "%s %s row %lld: %d non-finite values", t->name, what, (long long)row, nonfinite);
    if (er > 0 && isfinite(er)) {
        g->gain += 1.0 - em / er;
        g->rows++;
    }
    free(dm);
    free(dr);
}

/* quantize (nrows, n) with lowbit (all rows at once, again, and row by row) and ref; check everything */
static void check_matrix(const kq_case *t, const float *x, const float *w, int64_t nrows, int64_t n, gain_acc *g,
                         const char *what) {
    const size_t rb = (size_t)(n / QK_K) * t->bytes, all = rb * (size_t)nrows;
    uint8_t *ym = xmalloc(all), *y2 = xmalloc(all), *yr = xmalloc(all);
    t->mine(x, ym, nrows, n, w);
    memset(y2, 0x5A, all);
    t->mine(x, y2, nrows, n, w);
    CHECK(memcmp(ym, y2, all) == 0, "%s %s: two calls differ", t->name, what);
    for (int64_t r = 0; r < nrows; r++) t->mine(x + r * n, y2 + (size_t)r * rb, 1, n, w);
    CHECK(memcmp(ym, y2, all) == 0, "%s %s: row-by-row calls differ", t->name, what);
    const char *old = getenv("LB_FORCE_REF"); /* the baseline build of kquant.c (its AVX2 build otherwise) */
    char *keep = old ? strdup(old) : NULL;
    setenv("LB_FORCE_REF", lb_force_ref() ? "0" : "1", 1);
    memset(y2, 0x5A, all);
    t->mine(x, y2, nrows, n, w);
    if (keep) setenv("LB_FORCE_REF", keep, 1);
    else unsetenv("LB_FORCE_REF");
    free(keep);
    CHECK(memcmp(ym, y2, all) == 0, "%s %s: the baseline and AVX2 builds differ", t->name, what);
    t->ref(x, yr, nrows, n, w);
    for (int64_t r = 0; r < nrows; r++)
        check_row(t, x + r * n, w, n, ym + (size_t)r * rb, yr + (size_t)r * rb, g, what, r);
    free(ym);
    free(y2);
    free(yr);
}

/* NaN and ±Inf inside rows: no crash (ASan/UBSan builds), deterministic bytes */
static void check_nonfinite(const kq_case *t) {
    float *x = xmalloc(2 * RLEN * sizeof(float)), w[RLEN];
    for (int j = 0; j < 2 * RLEN; j++) x[j] = (float)gauss();
    for (int j = 0; j < RLEN; j++) w[j] = 1.0f + (float)(j % 5);
    x[3] = NAN;
    x[700] = INFINITY;
    x[RLEN + 9] = -INFINITY;
    x[RLEN + 2000] = NAN;
    const size_t all = 2 * (size_t)(RLEN / QK_K) * t->bytes;
    uint8_t *a = xmalloc(all), *b = xmalloc(all);
    for (int k = 0; k < 2; k++) {
        t->mine(x, a, 2, RLEN, k ? w : NULL);
        t->mine(x, b, 2, RLEN, k ? w : NULL);
        CHECK(memcmp(a, b, all) == 0, "%s: rows with NaN/Inf not deterministic (imatrix %d)", t->name, k);
    }
    free(a);
    free(b);
    free(x);
}

/* ---- inputs ---- */

/* the 16 input rows and the imatrix of <type>.quant_imatrix.bin (the imatrix is the same in every record) */
static void load_golden(const char *type, float *x, float *imat) {
    char path[256];
    snprintf(path, sizeof path, GOLDEN_DIR "/%s.quant_imatrix.bin", type);
    FILE *f = fopen(path, "rb");
    REQUIRE(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    const size_t sz = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = xmalloc(sz);
    REQUIRE(fread(d, 1, sz, f) == sz && sz >= 16 && memcmp(d, "LBGOLDEN", 8) == 0, "%s: bad header", path);
    fclose(f);
    size_t off = 16;
    for (int r = 0; r < GROWS; r++) {
        uint32_t E, B;
        REQUIRE(off + 16 <= sz, "%s: truncated", path);
        memcpy(&E, d + off + 8, 4);
        memcpy(&B, d + off + 12, 4);
        REQUIRE(E == GLEN && off + 20 + 12 * (size_t)E + 2 * (size_t)B <= sz, "%s: bad record %d", path, r);
        memcpy(x + r * GLEN, d + off + 20, GLEN * sizeof(float));
        memcpy(imat, d + off + 20 + 4 * GLEN, GLEN * sizeof(float));
        off += 20 + 12 * (size_t)E + 2 * (size_t)B;
    }
    free(d);
}

enum { N_GAUSS = 8, N_HEAVY = 8, N_OUTLIER = 4, N_POS = 2, N_ZERO = 1, N_CONST = 1, N_TINY = 2 };
#define RROWS (N_GAUSS + N_HEAVY + N_OUTLIER + N_POS + N_ZERO + N_CONST + N_TINY)

static void make_random(float *x, float *imat) {
    float *p = x;
    for (int i = 0; i < N_GAUSS; i++, p += RLEN)
        for (int j = 0; j < RLEN; j++) p[j] = (float)(gauss() * (i % 2 ? 0.02 : 1.0));
    for (int i = 0; i < N_HEAVY; i++, p += RLEN)
        for (int j = 0; j < RLEN; j++) p[j] = (float)(student3() * 0.03);
    for (int i = 0; i < N_OUTLIER; i++, p += RLEN)
        for (int j = 0; j < RLEN; j++) p[j] = (float)(gauss() * (uniform() < 0.005 ? 40.0 : 1.0));
    for (int i = 0; i < N_POS; i++, p += RLEN)
        for (int j = 0; j < RLEN; j++) p[j] = (float)(0.5 + fabs(gauss()));
    for (int i = 0; i < N_ZERO; i++, p += RLEN) memset(p, 0, RLEN * sizeof(float));
    for (int i = 0; i < N_CONST; i++, p += RLEN)
        for (int j = 0; j < RLEN; j++) p[j] = -0.7f;
    for (int i = 0; i < N_TINY; i++, p += RLEN)
        for (int j = 0; j < RLEN; j++) p[j] = (float)(gauss() * 1e-7);
    for (int j = 0; j < RLEN; j++) imat[j] = uniform() < 0.03 ? 0.0f : (float)exp(2.0 * gauss());
}

/* ---- throughput with 2 threads ---- */

typedef struct {
    const kq_case *t;
    const float *x;
    uint8_t *y;
    int64_t rows_per_task;
} bench_arg;

static void bench_task(void *arg, int64_t task, int thread) {
    (void)thread;
    const bench_arg *a = arg;
    const size_t rb = (size_t)(RLEN / QK_K) * a->t->bytes;
    const int64_t r0 = task * a->rows_per_task;
    a->t->mine(a->x + r0 * RLEN, a->y + (size_t)r0 * rb, a->rows_per_task, RLEN, NULL);
}

static double now_s(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void bench(const kq_case *t, const float *x, int64_t rows, lb_pool *pool) {
    uint8_t *y = xmalloc((size_t)(RLEN / QK_K) * t->bytes * (size_t)rows);
    bench_arg a = {t, x, y, 4};
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    lb_pool_run(pool, rows / a.rows_per_task, bench_task, &a);
    const double wm = now_s(CLOCK_MONOTONIC) - w0, cm = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    t->ref(x, y, rows, RLEN, NULL);
    const double cr = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("  %s  lowbit %6.3f s wall, %6.3f s cpu (%5.2f Mparam/cpu-s)   ref %6.3f s cpu   [%lld x %d]\n", t->name, wm,
           cm, (double)rows * RLEN / cm * 1e-6, cr, (long long)rows, RLEN);
    free(y);
}

int main(void) {
    float *gx = xmalloc(GROWS * GLEN * sizeof(float)), *gw = xmalloc(GROWS * GLEN * sizeof(float));
    float *rx = xmalloc((size_t)RROWS * RLEN * sizeof(float)), *rw = xmalloc(RLEN * sizeof(float));
    make_random(rx, rw);
    printf("mean over rows of 1 - E(lowbit)/E(ref):\n  type  %10s %12s %10s %12s\n", "golden", "golden+imat", "random",
           "random+imat");
    for (int i = 0; i < NTYPES; i++) {
        const kq_case *t = &TYPES[i];
        gain_acc g[4] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};
        load_golden(t->name, gx, gw);
        check_matrix(t, gx, NULL, GROWS, GLEN, &g[0], "golden");
        check_matrix(t, gx, gw, GROWS, GLEN, &g[1], "golden+imatrix");
        check_matrix(t, rx, NULL, RROWS, RLEN, &g[2], "random");
        check_matrix(t, rx, rw, RROWS, RLEN, &g[3], "random+imatrix");
        printf("  %s", t->name);
        for (int k = 0; k < 4; k++) {
            const double avg = g[k].rows ? g[k].gain / g[k].rows : 0;
            printf(" %10.2f%%", 100 * avg);
            CHECK(avg > 0, "%s set %d: no average gain", t->name, k);
        }
        printf("\n");
        check_nonfinite(t);
    }
    const char *env = getenv("LB_KQUANT_BENCH_ROWS");
    int64_t rows = env && *env ? atoll(env) : 64;
    rows = rows < 4 ? 4 : rows / 4 * 4;
    float *bx = xmalloc((size_t)rows * RLEN * sizeof(float));
    for (int64_t j = 0; j < rows * RLEN; j++) bx[j] = (float)(gauss() * 0.02);
    lb_pool *pool = lb_pool_new(2);
    REQUIRE(pool, "cannot start the thread pool");
    printf("throughput (gaussian rows, no imatrix, 2 threads):\n");
    for (int i = 0; i < NTYPES; i++) bench(&TYPES[i], bx, rows, pool);
    lb_pool_free(pool);
    free(bx);
    free(gx);
    free(gw);
    free(rx);
    free(rw);
    TEST_DONE();
}
