/*
 * kquant_avx2.c - kquant.c compiled for AVX2 (the same C, so the same float operations in the same order and
 * the same bytes; kquant.c's quantize_<t>_best choose this build unless LB_FORCE_REF=1 or the CPU lacks AVX2).
 * AVX2 without FMA, so that no multiply-add is contracted.
 */
#if defined(__x86_64__) && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#define LB_KQUANT_AVX2
#include "kquant.c"
#pragma clang attribute pop
#elif defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2")
#define LB_KQUANT_AVX2
#include "kquant.c"
#else
typedef int lb_kquant_avx2_unused; /* ISO C: a translation unit is not empty */
#endif
