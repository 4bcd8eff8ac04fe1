/*
 * x86_avx512.c - the CPU kernels with AVX-512 VNNI (vpdpbusd on 256-bit vectors, AVX512VL): the same
 * template as x86_avx2.c with the 4-byte integer dot product in one instruction. Vectors stay 256 bits
 * wide so that the float accumulation order (8 partials, cpu.h) is the same as AVX2's and the reference's.
 */
#include "cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define TGT __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))
#define SFX(name) name##_avx512vnni
#define DOT32(acc, u, s) (acc) = _mm256_dpbusd_epi32((acc), (u), (s))
#include "x86_tmpl.h"

const lb_cpu_kernels *lb_cpu_kernels_avx512vnni(void) {
    static lb_cpu_kernels k;
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vnni"))
        return NULL;
    if (!k.name) {
        lb_cpu_kernels t = KERNELS_avx512vnni;
        t.name = "avx512vnni";
        k = t;
    }
    return &k;
}
#else
const lb_cpu_kernels *lb_cpu_kernels_avx512vnni(void) { return NULL; }
#endif
