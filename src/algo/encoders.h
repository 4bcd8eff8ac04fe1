/*
 * encoders.h - which encoder quantizes a weight type: lowbit's own (never worse than ggml's, lower
 * error on average) or ggml's reference encoder, bit for bit.
 */
#ifndef LB_ALGO_ENCODERS_H
#define LB_ALGO_ENCODERS_H

#include "../quant/quant.h"

/* The quantize function for t; the reference one for types without an own encoder (f32, f16, bf16). */
lb_quantize_fn lb_encoder_get(lb_type t, lb_encoder enc);

/* Quantize rows (rows, cols) f32 of x into y with fn, one pool task per row (pool may be NULL); imatrix
 * (cols floats) or NULL. The bytes do not depend on the thread count. */
void lb_encode_rows(lb_pool *pool, lb_quantize_fn fn, const float *x, int64_t rows, int64_t cols, lb_type t,
                    const float *imatrix, void *y);

#endif
