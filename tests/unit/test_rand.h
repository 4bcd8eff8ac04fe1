/*
 * test_rand.h - the tests' random numbers: a xorshift64 stream (test_rng, set it to seed) with uniform values
 * in [0, 1) and normal ones (Box-Muller), the same on every machine.
 */
#ifndef LB_TEST_RAND_H
#define LB_TEST_RAND_H

#include <math.h>
#include <stdint.h>

static uint64_t test_rng = 0x9E3779B97F4A7C15ULL;
static inline double urand(void) {
    test_rng ^= test_rng << 13, test_rng ^= test_rng >> 7, test_rng ^= test_rng << 17;
    return (double)(test_rng >> 11) / 9007199254740992.0;
}
static inline double nrand(void) { return sqrt(-2.0 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

/* rows x cols weights for the block encoders' edge cases, by row mod 9: N(0, 0.02^2), all-zero blocks (the first
 * 512 columns), tiny values, large ones, outliers, skewed rows and, with one_sign, rows of one sign; and n
 * importance weights, some zero */
static inline void hard_rows(float *x, int64_t rows, int64_t cols, int one_sign) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            double v = 0.02 * nrand();
            if (r % 9 == 1 && j < 512) v = 0;                   /* all-zero blocks */
            if (r % 9 == 2) v *= 1e-6;                          /* tiny values */
            if (r % 9 == 3) v *= 1e4;                           /* large ones */
            if (r % 9 == 4 && j % 97 == 5) v *= 40;             /* outliers */
            if (r % 9 == 5 && j % 2) v = fabs(v);               /* skewed */
            if (one_sign && r % 9 == 6) v = fabs(v);            /* one sign */
            x[r * cols + j] = (float)v;
        }
}
static inline void hard_importance(float *imp, int64_t n) {
    for (int64_t j = 0; j < n; j++) imp[j] = (float)(urand() * urand() * 3 + (j % 7 == 0 ? 0 : 1e-3));
}

#endif
