/*
 * encoders.h - which encoder quantizes a weight type: lowbit's own (never worse than ggml's, lower
 * error on average) or ggml's reference encoder, bit for bit.
 */
#ifndef LB_ALGO_ENCODERS_H
#define LB_ALGO_ENCODERS_H

#include "../quant/quant.h"

/* The quantize function for t; the reference one for types without an own encoder (f32, f16, bf16). */
lb_quantize_fn lb_encoder_get(lb_type t, lb_encoder enc);

#endif
