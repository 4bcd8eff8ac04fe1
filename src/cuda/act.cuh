/*
 * act.cuh - the CPU's 8-bit rounding of activations (lb_act_quantize) for one block of BE = 32 C elements
 * held by one warp, lane l holding v[c] = element 32 c + l of the block: amax / 127 as the scale, the codes
 * rounded to nearest-even from x * (127 / amax), NaN to -127; the same IEEE operations as the CPU, so codes
 * and scales are the CPU's to the bit. Shared by the rounding kernel (mv.cu) and the kernels that produce
 * an activation and round it in the same launch (ops.cu: RMSNorm, SwiGLU).
 *
 * Q8 = true writes the 8-bit layout of mv.cu (codes q[i], and per 32 elements {d, d * sum(q)} at d[i / 32]:
 * the scale repeated over a 256-block), false the rounded values d * q as F16 to y[i]. i0: the block's
 * first element in those arrays.
 */
#ifndef LB_CUDA_ACT_CUH
#define LB_CUDA_ACT_CUH

#include <cuda_fp16.h>
#include <stdint.h>

template <int C, bool Q8>
static __device__ __forceinline__ void act_round_warp(const float (&v)[C], int64_t i0, int lane, int8_t *__restrict__ q,
                                                      float2 *__restrict__ d, __half *__restrict__ y) {
    float amax = 0.0f;
#pragma unroll
    for (int c = 0; c < C; c++) {
        const float a = fabsf(v[c]);
        amax = a > amax ? a : amax;
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
        const float u = __shfl_xor_sync(0xffffffffu, amax, o);
        amax = u > amax ? u : amax;
    }
    const float id = amax > 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
    const float dd = __fdiv_rn(amax, 127.0f);
#pragma unroll
    for (int c = 0; c < C; c++) {
        float u = __fmul_rn(v[c], id);
        u = u >= -127.0f ? u : -127.0f; /* NaN -> -127, as the CPU */
        u = u <= 127.0f ? u : 127.0f;
        const int qi = __float2int_rn(u);
        const int64_t i = i0 + 32 * c + lane;
        if (Q8) {
            q[i] = (int8_t)qi;
            int sum = qi;
#pragma unroll
            for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            if (lane == 0) d[i / 32] = make_float2(dd, __fmul_rn(dd, (float)sum));
        } else {
            y[i] = __float2half_rn(__fmul_rn(dd, (float)qi));
        }
    }
}

#endif
