/*
 * test_legacy_encoder.c - lowbit's default encoders quantize_<t>_best (src/algo/legacy_enc.c) of q4_0,
 * q4_1, q5_0, q5_1, q8_0, iq4_nl and iq4_xs against ggml's encoders quantize_<t>_ref, on
 *   - the 16 golden input rows of tests/golden/ggml/<t>.quant_imatrix.bin (256 floats each, with the
 *     stored importance matrix and without one), quantized as one 16-row call;
 *   - random rows of 4096: gaussian, heavy-tailed (student-t, 3 dof), gaussian with outliers, all zero,
 *     constant, tiny (1e-8 gaussian), with a random positive imatrix (some zeros) and without one.
 * Checks: per block and per row, E(best) <= E(ref) with E as defined in legacy_enc.h; the output
 * dequantizes (dequantize_row_<t>_ref) to finite values; two calls give identical bytes; rows holding
 * NaN / Inf do not crash and stay deterministic. Prints the average relative error reduction per type
 * (mean over rows of 1 - E(best)/E(ref)) and the time taken on a (LB_LEGACY_BENCH_ROWS, 4096) gaussian matrix
 * (default 64 rows) with 2 threads: wall clock and CPU time (the CPU time is what a busy machine still
 * measures fairly), and the reference's CPU time on one thread.
 */
#include "algo/legacy_enc.h"
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
#define GROW 256      /* elements per golden row */
#define GROWS 16      /* golden rows */
#define RLEN 4096     /* random row length */
#define BENCH_COLS 4096

typedef struct {
    const char *name;
    int elems;
    size_t bytes;
    lb_quantize_fn best, ref;
    void (*dequant)(const void *, float *, int64_t);
} type_case;

static const type_case TYPES[] = {
    {"q4_0", 32, sizeof(block_q4_0), quantize_q4_0_best, quantize_q4_0_ref, dequantize_row_q4_0_ref},
    {"q4_1", 32, sizeof(block_q4_1), quantize_q4_1_best, quantize_q4_1_ref, dequantize_row_q4_1_ref},
    {"q5_0", 32, sizeof(block_q5_0), quantize_q5_0_best, quantize_q5_0_ref, dequantize_row_q5_0_ref},
    {"q5_1", 32, sizeof(block_q5_1), quantize_q5_1_best, quantize_q5_1_ref, dequantize_row_q5_1_ref},
    {"q8_0", 32, sizeof(block_q8_0), quantize_q8_0_best, quantize_q8_0_ref, dequantize_row_q8_0_ref},
    {"iq4_nl", 32, sizeof(block_iq4_nl), quantize_iq4_nl_best, quantize_iq4_nl_ref, dequantize_row_iq4_nl_ref},
    {"iq4_xs", 256, sizeof(block_iq4_xs), quantize_iq4_xs_best, quantize_iq4_xs_ref, dequantize_row_iq4_xs_ref},
};
#define NTYPES ((int)(sizeof TYPES / sizeof TYPES[0]))

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    REQUIRE(p, "out of memory (%zu bytes)", n);
    return p;
}

/* ---- deterministic random numbers (xorshift64*) ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}
static double grand(void) {
    double u = urand(), v = urand();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}
static double student_t3(void) {
    double c = 0;
    for (int i = 0; i < 3; i++) {
        const double g = grand();
        c += g * g;
    }
    return grand() / sqrt(c / 3 + 1e-12);
}

/* ---- error measure of legacy_enc.h ---- */

static double block_err(const float *x, const float *xh, const float *w, int n) {
    double e = 0;
    for (int j = 0; j < n; j++) {
        const double r = (double)x[j] - (double)xh[j];
        e += (w ? (double)w[j] : 1.0) * (r * r);
    }
    return e;
}

typedef struct {
    double gain_sum;   /* sum over rows of 1 - E(best)/E(ref) */
    int rows;
    int block_worse, row_worse, nonfinite;
} stats;

/* Compare one row of best vs ref blocks; returns false on a failure. */
static void compare_row(const type_case *t, const float *x, const float *w, int64_t n, const uint8_t *yb,
                        const uint8_t *yr, float *db, float *dr, stats *st, const char *what, int64_t row) {
    t->dequant(yb, db, n);
    t->dequant(yr, dr, n);
    double eb = 0, er = 0;
    for (int64_t b = 0; b < n / t->elems; b++) {
        const int64_t o = b * t->elems;
        const double xb = block_err(x + o, db + o, w ? w + o : NULL, t->elems);
        const double xr = block_err(x + o, dr + o, w ? w + o : NULL, t->elems);
        if (xb > xr) st->block_worse++;
        eb += xb;
        er += isnan(xr) ? INFINITY : xr;
    }
    for (int64_t j = 0; j < n; j++)
        if (!isfinite(db[j])) {
            st->nonfinite++;
            break;
        }
    CHECK(eb <= er, "%s %s row %lld: E(best) %.9g > E(ref) %.9g", t->name, what, (long long)row, eb, er);
    if (eb > er) st->row_worse++;
    if (er > 0 && isfinite(er)) {
        st->gain_sum += 1.0 - eb / er;
        st->rows++;
    }
}

/* Quantize (nrows, n) with best (twice) and ref, run every check; rows below `split` accumulate into
 * st[0], the others into st[1]. */
static void check_matrix(const type_case *t, const float *x, const float *w, int64_t nrows, int64_t n, int64_t split,
                         stats *st, const char *what) {
    const size_t rb = (size_t)(n / t->elems) * t->bytes;
    uint8_t *yb = xmalloc(rb * (size_t)nrows), *yb2 = xmalloc(rb * (size_t)nrows), *yr = xmalloc(rb * (size_t)nrows);
    float *db = xmalloc((size_t)n * sizeof(float)), *dr = xmalloc((size_t)n * sizeof(float));
    memset(yb2, 0xA5, rb * (size_t)nrows);
    t->best(x, yb, nrows, n, w);
    t->best(x, yb2, nrows, n, w);
    t->ref(x, yr, nrows, n, w);
    CHECK(memcmp(yb, yb2, rb * (size_t)nrows) == 0, "%s %s: two calls differ", t->name, what);
    for (int64_t r = 0; r < nrows; r++)
        compare_row(t, x + r * n, w, n, yb + (size_t)r * rb, yr + (size_t)r * rb, db, dr, &st[r >= split], what, r);
    free(yb);
    free(yb2);
    free(yr);
    free(db);
    free(dr);
}

/* ---- golden rows ---- */

/* Input rows and imatrix (both GROWS x GROW) of <type>.quant_imatrix.bin. */
static bool load_golden(const char *type, float *x, float *imat) {
    char path[256];
    snprintf(path, sizeof path, GOLDEN_DIR "/%s.quant_imatrix.bin", type);
    size_t sz = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fseek(f, 0, SEEK_END);
    sz = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = xmalloc(sz);
    const bool ok = fread(d, 1, sz, f) == sz && sz >= 16 && memcmp(d, "LBGOLDEN", 8) == 0;
    fclose(f);
    size_t off = 16;
    for (int r = 0; ok && r < GROWS; r++) {
        uint32_t E, B;
        memcpy(&E, d + off + 8, 4);
        memcpy(&B, d + off + 12, 4);
        REQUIRE(E == GROW && off + 20 + 12 * (size_t)E + 2 * (size_t)B <= sz, "%s: bad record %d", path, r);
        memcpy(x + r * GROW, d + off + 20, GROW * sizeof(float));
        memcpy(imat + r * GROW, d + off + 20 + 4 * GROW, GROW * sizeof(float));
        off += 20 + 12 * (size_t)E + 2 * (size_t)B;
    }
    free(d);
    return ok;
}

/* ---- random rows ---- */

enum { R_GAUSS = 8, R_HEAVY = 8, R_OUTLIER = 4, R_ZERO = 1, R_CONST = 1, R_TINY = 2 };
#define RROWS (R_GAUSS + R_HEAVY + R_OUTLIER + R_ZERO + R_CONST + R_TINY)
#define R_REAL (R_GAUSS + R_HEAVY + R_OUTLIER) /* rows before this are realistic weights */
#define NSETS 6 /* golden, golden+imatrix, random real / degenerate, random+imatrix real / degenerate */

static void make_random(float *x, float *imat) {
    int r = 0;
    for (int i = 0; i < R_GAUSS; i++, r++)
        for (int j = 0; j < RLEN; j++) x[r * RLEN + j] = (float)(grand() * (i % 2 ? 0.02 : 1.0));
    for (int i = 0; i < R_HEAVY; i++, r++)
        for (int j = 0; j < RLEN; j++) x[r * RLEN + j] = (float)(student_t3() * 0.05);
    for (int i = 0; i < R_OUTLIER; i++, r++)
        for (int j = 0; j < RLEN; j++) x[r * RLEN + j] = (float)(grand() * (urand() < 0.01 ? 50.0 : 1.0));
    for (int i = 0; i < R_ZERO; i++, r++)
        for (int j = 0; j < RLEN; j++) x[r * RLEN + j] = 0.0f;
    for (int i = 0; i < R_CONST; i++, r++)
        for (int j = 0; j < RLEN; j++) x[r * RLEN + j] = 0.3f;
    for (int i = 0; i < R_TINY; i++, r++)
        for (int j = 0; j < RLEN; j++) x[r * RLEN + j] = (float)(grand() * 1e-8);
    for (int j = 0; j < RLEN; j++) imat[j] = urand() < 0.05 ? 0.0f : (float)exp(1.5 * grand());
}

/* Rows with NaN and +-Inf: no crash, deterministic output. */
static void check_nonfinite(const type_case *t) {
    float x[2 * RLEN];
    for (int j = 0; j < 2 * RLEN; j++) x[j] = (float)grand();
    x[5] = NAN;
    x[300] = INFINITY;
    x[RLEN + 77] = -INFINITY;
    x[RLEN + 1000] = NAN;
    const size_t rb = (size_t)(RLEN / t->elems) * t->bytes;
    uint8_t *a = xmalloc(2 * rb), *b = xmalloc(2 * rb);
    t->best(x, a, 2, RLEN, NULL);
    t->best(x, b, 2, RLEN, NULL);
    CHECK(memcmp(a, b, 2 * rb) == 0, "%s: non-finite rows not deterministic", t->name);
    free(a);
    free(b);
}

/* ---- throughput with 2 threads ---- */

typedef struct {
    const type_case *t;
    const float *x;
    uint8_t *y;
    int64_t rows_per_task;
} bench_arg;

static void bench_task(void *arg, int64_t task, int thread) {
    (void)thread;
    const bench_arg *a = arg;
    const size_t rb = (size_t)(BENCH_COLS / a->t->elems) * a->t->bytes;
    const int64_t r0 = task * a->rows_per_task;
    a->t->best(a->x + r0 * BENCH_COLS, a->y + (size_t)r0 * rb, a->rows_per_task, BENCH_COLS, NULL);
}

static double now_s(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void bench(const type_case *t, const float *x, int64_t rows, lb_pool *pool) {
    const size_t rb = (size_t)(BENCH_COLS / t->elems) * t->bytes;
    uint8_t *y = xmalloc(rb * (size_t)rows);
    bench_arg a = {t, x, y, 16};
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    lb_pool_run(pool, rows / a.rows_per_task, bench_task, &a);
    const double wb = now_s(CLOCK_MONOTONIC) - w0, cb = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    t->ref(x, y, rows, BENCH_COLS, NULL);
    const double cr = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("  %-6s best: %7.3f s wall (2 threads), %7.3f s cpu (%5.1f Melem/cpu-s)   ref: %6.3f s cpu   [%lld x %d]\n",
           t->name, wb, cb, (double)rows * BENCH_COLS / cb * 1e-6, cr, (long long)rows, BENCH_COLS);
    free(y);
}

int main(void) {
    float *gx = xmalloc(GROWS * GROW * sizeof(float)), *gw = xmalloc(GROWS * GROW * sizeof(float));
    float *rx = xmalloc((size_t)RROWS * RLEN * sizeof(float)), *rw = xmalloc(RLEN * sizeof(float));
    make_random(rx, rw);
    printf("average relative error reduction, mean over rows of 1 - E(best)/E(ref):\n");
    printf("  random: gaussian, student-t, outlier rows; degenerate: constant and tiny rows (all-zero rows have E = 0)\n");
    printf("  %-6s %12s %12s %12s %12s %12s %12s\n", "type", "golden", "golden+imat", "random", "random+imat", "degenerate",
           "degen+imat");
    for (int i = 0; i < NTYPES; i++) {
        const type_case *t = &TYPES[i];
        REQUIRE(load_golden(t->name, gx, gw), "cannot read golden rows of %s", t->name);
        stats s[NSETS];
        memset(s, 0, sizeof s);
        /* the stored imatrix is the same for every row: take row 0's */
        check_matrix(t, gx, NULL, GROWS, GROW, GROWS, &s[0], "golden");
        check_matrix(t, gx, gw, GROWS, GROW, GROWS, &s[1], "golden+imatrix");
        check_matrix(t, rx, NULL, RROWS, RLEN, R_REAL, &s[2], "random");
        check_matrix(t, rx, rw, RROWS, RLEN, R_REAL, &s[4], "random+imatrix");
        for (int k = 0; k < NSETS; k++) {
            CHECK(s[k].block_worse == 0, "%s: %d blocks worse than ref (set %d)", t->name, s[k].block_worse, k);
            CHECK(s[k].nonfinite == 0, "%s: %d rows dequantize to non-finite values (set %d)", t->name, s[k].nonfinite, k);
        }
        static const int order[NSETS] = {0, 1, 2, 4, 3, 5};
        printf("  %-6s", t->name);
        double gsum = 0;
        int nrow = 0;
        for (int k = 0; k < NSETS; k++) {
            const stats *q = &s[order[k]];
            printf(" %11.2f%%", 100.0 * q->gain_sum / (q->rows ? q->rows : 1));
            gsum += q->gain_sum;
            nrow += q->rows;
        }
        printf("\n");
        CHECK(gsum / nrow > 0, "%s: no average gain", t->name);
        check_nonfinite(t);
    }
    const char *env = getenv("LB_LEGACY_BENCH_ROWS");
    int64_t brows = env && *env ? atoll(env) : 64;
    brows = brows < 16 ? 16 : brows / 16 * 16;
    float *bx = xmalloc((size_t)brows * BENCH_COLS * sizeof(float));
    for (int64_t j = 0; j < brows * BENCH_COLS; j++) bx[j] = (float)(grand() * 0.02);
    lb_pool *pool = lb_pool_new(2);
    REQUIRE(pool, "cannot start the thread pool");
    printf("throughput (gaussian matrix, no imatrix):\n");
    for (int i = 0; i < NTYPES; i++) bench(&TYPES[i], bx, brows, pool);
    lb_pool_free(pool);
    free(bx);
    free(gx);
    free(gw);
    free(rx);
    free(rw);
    TEST_DONE();
}
