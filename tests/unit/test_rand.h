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

#endif
