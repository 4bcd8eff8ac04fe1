/*
 * test_core.c - JSON reader (valid and hostile input), fp16/bf16 conversions checked against the
 * CPU's F16C instructions (an independent implementation), and the thread pool.
 */
#include "core/core.h"
#include "core/json.h"
#include "test.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static lb_status parse(const char *s, json_doc **d, lb_error *e) { return json_parse(s, strlen(s), d, e); }

static void test_json_valid(void) {
    json_doc *d = NULL;
    lb_error e = {{0}};
    const char *s = " {\"a\": [1, -2.5e3, true, false, null, \"x\\u00e9\\ud83d\\ude00\\n\"], \"b\": {}, "
                    "\"big\": 9007199254740993, \"neg\": -9223372036854775808, \"f\": 4.0, \"a\": 7} ";
    CHECK(parse(s, &d, &e) == LB_OK, "%s", e.msg);
    const json_value *r = json_root(d);
    CHECK(json_type(r) == JSON_OBJECT && json_len(r) == 6, "root");
    const json_value *a = json_get(r, "a");
    CHECK(json_len(a) == 6, "array length");
    int64_t i = 0;
    double x = 0;
    bool b = false;
    CHECK(json_int(json_at(a, 0), &i) && i == 1, "int");
    CHECK(json_num(json_at(a, 1), &x) && x == -2500.0, "num");
    CHECK(json_int(json_at(a, 1), &i) && i == -2500, "integral exponent number as int");
    CHECK(json_bool(json_at(a, 2), &b) && b, "true");
    CHECK(json_type(json_at(a, 4)) == JSON_NULL, "null");
    size_t n = 0;
    const char *str = json_str(json_at(a, 5), &n);
    CHECK(str && n == 8 && memcmp(str, "x\xc3\xa9\xf0\x9f\x98\x80\n", 8) == 0, "escapes");
    CHECK(json_int(json_get(r, "big"), &i) && i == 9007199254740993LL, "exact int64");
    CHECK(json_int(json_get(r, "neg"), &i) && i == INT64_MIN, "int64 min");
    CHECK(!json_int(json_get(json_root(d), "b"), &i), "object is not an int");
    CHECK(json_get(json_get(r, "missing"), "x") == NULL, "chained lookup of absent");
    CHECK(json_int(json_get(r, "f"), &i) && i == 4, "4.0 is integral");
    CHECK(json_key_at(r, 5, &n) && n == 1, "duplicate key kept");
    json_free(d);

    d = NULL;
    CHECK(parse("\"a\\u0000b\"", &d, &e) == LB_OK, "%s", e.msg);
    CHECK(json_str(json_root(d), &n) && n == 3, "embedded NUL keeps length");
    json_free(d);
}

static void test_json_hostile(void) {
    const char *bad[] = {
        "", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "[1 2]", "01", "1.", ".5", "-", "1e", "+1", "nul",
        "\"abc", "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\tb\"", "{} x",
        "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "[\"\\u12\"]", "{1:2}", "tru", "[", "NaN", "Infinity",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        json_doc *d = NULL;
        lb_error e = {{0}};
        lb_status st = parse(bad[k], &d, &e);
        CHECK(st == LB_ERR_FORMAT && d == NULL && strstr(e.msg, "line 1") != NULL, "bad input %zu (%s) gave %d '%s'",
              k, bad[k], st, e.msg);
    }
    /* deep nesting is refused, not a stack overflow */
    size_t depth = 100000;
    char *deep = malloc(depth + 1);
    memset(deep, '[', depth);
    deep[depth] = 0;
    json_doc *d = NULL;
    lb_error e = {{0}};
    CHECK(parse(deep, &d, &e) == LB_ERR_FORMAT && strstr(e.msg, "too deep"), "deep nesting: %s", e.msg);
    free(deep);
    /* error position */
    CHECK(parse("{\n  \"a\": tru\n}", &d, &e) == LB_ERR_FORMAT && strstr(e.msg, "line 2"), "line number: %s", e.msg);
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
#endif

static void test_fp16(void) {
#if defined(__x86_64__)
    if (!lb_cpu_has_f16c()) {
        CHECK(0, "this test needs F16C as the independent reference");
        return;
    }
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = lb_fp16_to_f32((uint16_t)h), b = hw_f16_to_f32((uint16_t)h);
        if (!(memcmp(&a, &b, 4) == 0 || (isnan(a) && isnan(b)))) bad++;
    }
    CHECK(bad == 0, "%d fp16->f32 mismatches", bad);
    bad = 0;
    uint64_t state = 12345;
    for (int k = 0; k < 2000000; k++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t u = (uint32_t)(state >> 32);
        if (k < 65536 * 4) u = ((uint32_t)(k >> 2) << 16) | (uint32_t)((k & 3) * 0x4000 + 0x1000 * (k & 1)); /* near ties */
        float f;
        memcpy(&f, &u, 4);
        uint16_t a = lb_f32_to_fp16(f), b = hw_f32_to_f16(f);
        if (a != b && !(isnan(f) && (a & 0x7c00) == 0x7c00 && (a & 0x3ff))) bad++;
    }
    CHECK(bad == 0, "%d f32->fp16 mismatches", bad);
#endif
    CHECK(lb_bf16_to_f32(0x3f80) == 1.0f, "bf16 one");
    CHECK(lb_f32_to_bf16(1.0f) == 0x3f80, "bf16 encode");
    float f = 1.0f + 1.0f / 256.0f; /* exactly half an ulp of bf16: ties to even -> 1.0 */
    CHECK(lb_f32_to_bf16(f) == 0x3f80, "bf16 ties to even");
}

static atomic_int counter;
static atomic_int bad_thread;
static int pool_threads;
static void count_task(void *arg, int64_t t, int thread) {
    int *out = arg;
    out[t] = (int)t * 2;
    if (thread < 0 || thread >= pool_threads) atomic_fetch_add(&bad_thread, 1);
    if (t % 7 == 3) /* uneven task lengths, so that threads finish at different times */
        for (volatile int i = 0; i < 2000; i++) {}
    atomic_fetch_add(&counter, 1);
}

/* Many short runs back to back (the decode pattern), with the pool polling between runs and, with
   LB_POOL_SPIN_US=0, sleeping on its condition variables at once; and runs after an idle pause, when the
   workers have gone to sleep. */
static void test_pool(void) {
    const char *spins[] = {NULL, "0", "1"};
    for (int s = 0; s < 3; s++) {
        if (spins[s]) setenv("LB_POOL_SPIN_US", spins[s], 1); else unsetenv("LB_POOL_SPIN_US");
        for (int nt = 1; nt <= 4; nt++) {
            lb_pool *p = lb_pool_new(nt);
            REQUIRE(p, "pool");
            pool_threads = nt;
            atomic_store(&bad_thread, 0);
            for (int rep = 0; rep < 600; rep++) {
                int out[37] = {0};
                int n = rep % 5 == 4 ? 1 : 37 - rep % 3;
                atomic_store(&counter, 0);
                if (rep % 200 == 199) {
                    struct timespec ts = {0, 2 * 1000 * 1000};
                    nanosleep(&ts, NULL);
                }
                lb_pool_run(p, n, count_task, out);
                int ok = atomic_load(&counter) == n;
                for (int t = 0; t < n; t++) ok &= out[t] == t * 2;
                for (int t = n; t < 37; t++) ok &= out[t] == 0;
                CHECK(ok, "pool of %d, rep %d, spin %s", nt, rep, spins[s] ? spins[s] : "default");
            }
            CHECK(atomic_load(&bad_thread) == 0, "thread index out of range (pool of %d)", nt);
            lb_pool_free(p);
        }
    }
    unsetenv("LB_POOL_SPIN_US");
    lb_pool_free(NULL);
}

/* Staged runs: every task of a stage reads all the results of the stage before (a task that started early
   would see a missing value), with empty stages between, interleaved with plain runs; with polling and
   with waits that sleep at once. */
typedef struct staged {
    int64_t v[3][41];
    int64_t n[3];
} staged;

static void stage_task(void *arg, int stage, int64_t t, int thread) {
    staged *st = arg;
    if (thread < 0 || thread >= pool_threads) atomic_fetch_add(&bad_thread, 1);
    int k = stage / 2; /* stages 1 and 3 are empty */
    int64_t sum = 0;
    if (k > 0)
        for (int64_t i = 0; i < st->n[k - 1]; i++) sum += st->v[k - 1][i];
    if (t % 5 == 1)
        for (volatile int i = 0; i < 3000; i++) {}
    st->v[k][t] = sum + t + 1;
}

static void test_pool_stages(void) {
    for (int sp = 0; sp < 2; sp++) /* default polling; none (waits between stages sleep at once) */
    for (int nt = 1; nt <= 4; nt++) {
        if (sp) setenv("LB_POOL_SPIN_US", "0", 1); else unsetenv("LB_POOL_SPIN_US");
        lb_pool *p = lb_pool_new(nt);
        REQUIRE(p, "pool");
        pool_threads = nt;
        atomic_store(&bad_thread, 0);
        for (int rep = 0; rep < 400; rep++) {
            staged st = {{{0}}, {1 + rep % 41, 1 + rep * 7 % 41, 1 + rep * 13 % 41}};
            int64_t ends[5] = {st.n[0], st.n[0], st.n[0] + st.n[1], st.n[0] + st.n[1], st.n[0] + st.n[1] + st.n[2]};
            lb_pool_run_stages(p, 5, ends, stage_task, &st);
            int ok = 1;
            int64_t prev = 0;
            for (int k = 0; k < 3; k++) {
                int64_t sum = 0;
                for (int64_t i = 0; i < st.n[k]; i++) {
                    ok &= st.v[k][i] == prev + i + 1;
                    sum += st.v[k][i];
                }
                prev = sum;
            }
            CHECK(ok, "staged run: pool of %d, rep %d", nt, rep);
            if (rep % 3 == 0) {
                int out[37] = {0};
                atomic_store(&counter, 0);
                lb_pool_run(p, 37, count_task, out);
                CHECK(atomic_load(&counter) == 37, "plain run after a staged one: pool of %d", nt);
            }
        }
        CHECK(atomic_load(&bad_thread) == 0, "thread index out of range (pool of %d)", nt);
        lb_pool_free(p);
    }
    unsetenv("LB_POOL_SPIN_US");
}

int main(void) {
    test_json_valid();
    test_json_hostile();
    test_fp16();
    test_pool();
    test_pool_stages();
    TEST_DONE();
}
