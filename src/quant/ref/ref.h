/*
 * ref.h - the scalar reference kernels of every type: the specification the fast kernels are tested
 * against, and (for the *_ref encoders) bit-exact reproductions of ggml's reference quantizers.
 *
 * Signatures (n, n_per_row: elements, a multiple of the type's block size; x/y row-major):
 *   dequantize_row_<t>_ref(x, y, n)       blocks -> n floats (ggml to_float)
 *   quantize_row_<t>_ref(x, y, n)         n floats -> blocks (ggml from_float_ref, quantize_row_<t>_ref)
 *   quantize_<t>_ref(x, y, nrows, n_per_row, imatrix)
 *                                         what ggml_quantize_chunk writes (= llama-quantize), with the
 *                                         importance matrix (n_per_row floats) or without it (NULL)
 *   vec_dot_<t>_<a>_ref(n, s, x, y)       *s = dot of one row of x (type t) with y (activation type a)
 */
#ifndef LB_QUANT_REF_H
#define LB_QUANT_REF_H

#include <stdint.h>

#define LB_DECLARE_TYPE(t)                                                                                 \
    void dequantize_row_##t##_ref(const void *x, float *y, int64_t n);                                    \
    void quantize_row_##t##_ref(const float *x, void *y, int64_t n);                                      \
    void quantize_##t##_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);

LB_DECLARE_TYPE(f32)
LB_DECLARE_TYPE(f16)
LB_DECLARE_TYPE(bf16)
LB_DECLARE_TYPE(q4_0)
LB_DECLARE_TYPE(q4_1)
LB_DECLARE_TYPE(q5_0)
LB_DECLARE_TYPE(q5_1)
LB_DECLARE_TYPE(q8_0)
LB_DECLARE_TYPE(q8_1)
LB_DECLARE_TYPE(q2_K)
LB_DECLARE_TYPE(q3_K)
LB_DECLARE_TYPE(q4_K)
LB_DECLARE_TYPE(q5_K)
LB_DECLARE_TYPE(q6_K)
LB_DECLARE_TYPE(q8_K)
LB_DECLARE_TYPE(iq4_nl)
LB_DECLARE_TYPE(iq4_xs)

void vec_dot_f32_f32_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_f16_f16_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_bf16_bf16_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_q4_0_q8_0_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_q4_1_q8_1_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_q5_0_q8_0_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_q5_1_q8_1_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_q8_0_q8_0_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_q2_K_q8_K_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_q3_K_q8_K_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_q4_K_q8_K_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_q5_K_q8_K_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_q6_K_q8_K_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_iq4_nl_q8_0_ref(int64_t n, float *s, const void *x, const void *y);
void vec_dot_iq4_xs_q8_K_ref(int64_t n, float *s, const void *x, const void *y);

#endif
