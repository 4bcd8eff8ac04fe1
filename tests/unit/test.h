/*
 * test.h - the minimal harness the unit tests share. CHECK records a failure and goes on; the test's
 * main() ends with TEST_DONE(), which prints "N passed, N failed" and returns non-zero on any failure.
 */
#ifndef LB_TEST_H
#define LB_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_pass_, test_fail_;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (cond) {                                                                  \
            test_pass_++;                                                            \
        } else {                                                                     \
            test_fail_++;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
        }                                                                            \
    } while (0)

/* Abort the whole test when a precondition fails (e.g. a fixture did not load). */
#define REQUIRE(cond, ...)                                                           \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "FATAL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
            printf("%d passed, %d failed\n", test_pass_, test_fail_ + 1);            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define TEST_DONE()                                                                  \
    do {                                                                             \
        printf("%d passed, %d failed\n", test_pass_, test_fail_);                    \
        return test_fail_ ? 1 : 0;                                                   \
    } while (0)

/* Deterministic random numbers (xorshift64): test_uni in [0, 1), test_gauss a standard normal (Box-Muller);
 * test_seed restarts the sequence. */
static uint64_t test_rng_ = 0x9e3779b97f4a7c15ULL;
static inline void test_seed(uint64_t s) { test_rng_ = s ? s : 1; }
static inline double test_uni(void) {
    test_rng_ ^= test_rng_ << 13;
    test_rng_ ^= test_rng_ >> 7;
    test_rng_ ^= test_rng_ << 17;
    return (double)(test_rng_ >> 11) / 9007199254740992.0;
}
static inline float test_gauss(void) { return (float)(sqrt(-2.0 * log(test_uni() + 1e-300)) * cos(6.283185307179586 * test_uni())); }

/* Directory of the shared fixtures (../shared unless LB_SHARED says otherwise). */
static inline const char *test_shared_dir(void) {
    const char *s = getenv("LB_SHARED");
    return s && *s ? s : "../shared";
}

/* Path of a file among llama.cpp's GGUF fixtures ($LB_SHARED/golden/gguf), in one of eight rotating
   static buffers (so a few may be used in one call). */
static inline const char *test_gguf(const char *name) {
    static char buf[8][1024];
    static int next;
    char *b = buf[next++ & 7];
    snprintf(b, sizeof buf[0], "%s/golden/gguf/%s", test_shared_dir(), name);
    return b;
}

#endif
