/*
 * x86_avx2.c - the CPU kernels for AVX2 + FMA + F16C (x86_tmpl.h), compiled with per-function target
 * attributes so the rest of the binary stays baseline x86-64.
 */
#include "cpu.h"

#include <pthread.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define TGT __attribute__((target("avx2,fma,f16c")))
#define SFX(name) name##_avx2
#define DOT32(acc, u, s) (acc) = _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1)))
#include "x86_tmpl.h"

/* filled once (pthread_once), so that threads asking at the same time never see it half copied */
static lb_cpu_kernels a_kernels;
static pthread_once_t a_once = PTHREAD_ONCE_INIT;

static void a_fill(void) {
    lb_cpu_kernels t = KERNELS_avx2;
    t.name = "avx2";
    a_kernels = t;
}

const lb_cpu_kernels *lb_cpu_kernels_avx2(void) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !lb_cpu_has_f16c()) return NULL;
    if (pthread_once(&a_once, a_fill) != 0) return NULL;
    return &a_kernels;
}
#else
const lb_cpu_kernels *lb_cpu_kernels_avx2(void) { return NULL; }
#endif
