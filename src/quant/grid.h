/*
 * grid.h - the values one element of a block can take once the block's scales are fixed.
 *
 * For the weight block types (q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl,
 * iq4_xs) element j of a block, with the block's fp16 / sub-block scales as they stand, can take the values
 *   value(q) = a * (codebook ? codebook[q] : q) + b,   q integer in [qmin, qmax],
 * evaluated in float exactly as lb_grid_value() does; each is bit for bit the float the reference
 * dequantizer (dequantize_row_<t>_ref) produces for that code. The integer q is the signed code where the
 * format has one (q4_0: q in [-8, 7], stored as q+8; q3_K: [-4, 3]; q6_K: [-32, 31]), the stored code
 * otherwise, and the codebook index for iq4_nl / iq4_xs. q8_0 is limited to [-127, 127] (what ggml's
 * encoders write; -128 is left out so that every kernel's sign tricks stay valid).
 *
 * GPTQ (algo/gptq.c) uses these to round one element at a time while leaving the block's scales alone.
 */
#ifndef LB_QUANT_GRID_H
#define LB_QUANT_GRID_H

#include "../core/core.h"

typedef struct lb_grid {
    float a, b;
    int qmin, qmax;
    const int8_t *codebook; /* NULL for a linear grid */
} lb_grid;

/* Whether t has a grid (the 12 weight block types above). */
bool lb_grid_supported(lb_type t);

/* The grid of element j (0 <= j < block elements) of one block of type t. For a type without a grid,
 * g becomes the single value 0. */
void lb_grid_get(lb_type t, const void *block, int j, lb_grid *g);

/* Write code q (qmin <= q <= qmax of that element's grid) as element j of the block; the scales and every
 * other element stay as they are. */
void lb_grid_set(lb_type t, void *block, int j, int q);

/* value(q), bit-exact with the reference dequantizer. b is -0.0f for formats without an offset, so that
 * a*q + b keeps the sign of a zero product as the dequantizer does. */
static inline float lb_grid_value(const lb_grid *g, int q) {
    return g->a * (g->codebook ? (float)g->codebook[q] : (float)q) + g->b;
}

/* The q whose value is nearest to w (distance |w - value(q)| in double); on a tie the smaller q. A linear
 * grid whose values are all equal (a == 0) gives the q of smallest magnitude. w must not be NaN. */
int lb_grid_nearest(const lb_grid *g, float w);

/*
 * Sub-block parameters: the integer scales (and mins) of a block, which set a and b of a run of
 * consecutive elements without touching their codes. Parameter p of a block moves elements
 * [first, first + n) and takes integer values in [lo, hi]: q2_K 32 (16 4-bit scales, then 16 4-bit
 * mins), q3_K 16 signed 6-bit scales, q4_K / q5_K 16 (8 6-bit scales, then 8 6-bit mins), q6_K 16 int8
 * scales, iq4_xs 8 signed 6-bit scales. The other types have none (their fp16 scales are not parameters
 * here).
 */
typedef struct lb_grid_param {
    int first, n, lo, hi;
} lb_grid_param;

int lb_grid_n_params(lb_type t);
/* 0 <= p < lb_grid_n_params(t) */
void lb_grid_param_info(lb_type t, int p, lb_grid_param *info);
int lb_grid_param_get(lb_type t, const void *block, int p);
/* lo <= v <= hi */
void lb_grid_param_set(lb_type t, void *block, int p, int v);

#endif
