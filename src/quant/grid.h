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

#include <math.h>

typedef struct lb_grid {
    float a, b;
    int qmin, qmax;
    const int8_t *codebook; /* NULL for a linear grid */
} lb_grid;

/* Whether t has a grid (the 12 weight block types above). */
LB_HD bool lb_grid_supported(lb_type t);

/* The grid of element j (0 <= j < block elements) of one block of type t. For a type without a grid,
 * g becomes the single value 0. */
LB_HD void lb_grid_get(lb_type t, const void *block, int j, lb_grid *g);

/* Write code q (qmin <= q <= qmax of that element's grid) as element j of the block; the scales and every
 * other element stay as they are. */
LB_HD void lb_grid_set(lb_type t, void *block, int j, int q);

/* value(q), bit-exact with the reference dequantizer. b is -0.0f for formats without an offset, so that
 * a*q + b keeps the sign of a zero product as the dequantizer does. */
LB_HD static inline float lb_grid_value(const lb_grid *g, int q) {
    return g->a * (g->codebook ? (float)g->codebook[q] : (float)q) + g->b;
}

/* How many consecutive elements share one grid, from every multiple of it on (the sub-block length of the
 * k-quants and iq4_xs, the block length of the others): lb_grid_get gives the same grid for elements j and
 * j' of a block when j / run == j' / run. */
int lb_grid_run(lb_type t);

/* Better of candidate q against the best so far (smaller distance, then smaller q). */
LB_HD static inline void lb_grid_consider_(const lb_grid *g, float w, int q, int *best, double *best_d) {
    const double d = fabs((double)w - (double)lb_grid_value(g, q));
    if (d < *best_d || (d == *best_d && q < *best)) {
        *best = q;
        *best_d = d;
    }
}

/* The q whose value is nearest to w (distance |w - value(q)| in double); on a tie the smaller q. A linear
 * grid whose values are all equal (a == 0) gives the q of smallest magnitude. w must not be NaN. Inline:
 * GPTQ calls it for every element of every sweep. */
LB_HD static inline int lb_grid_nearest(const lb_grid *g, float w) {
    int best = g->qmin;
    double best_d = INFINITY;
    if (g->codebook) {
        for (int q = g->qmin; q <= g->qmax; q++) lb_grid_consider_(g, w, q, &best, &best_d);
        return best;
    }
    if (!(g->a != 0.0f) || !isfinite(g->a) || !isfinite(g->b))
        return g->qmin > 0 ? g->qmin : g->qmax < 0 ? g->qmax : 0;
    /* value(q) is monotone in q, so the nearest lies next to t = (w - b)/a; the neighbours on each side
     * cover float rounding of the grid values */
    double t = ((double)w - (double)g->b) / (double)g->a;
    if (!(t >= g->qmin)) t = g->qmin;
    if (t > g->qmax) t = g->qmax;
    const int q0 = (int)floor(t);
    for (int q = q0 - 1; q <= q0 + 2; q++)
        if (q >= g->qmin && q <= g->qmax) lb_grid_consider_(g, w, q, &best, &best_d);
    return best;
}

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

LB_HD int lb_grid_n_params(lb_type t);
/* 0 <= p < lb_grid_n_params(t) */
LB_HD void lb_grid_param_info(lb_type t, int p, lb_grid_param *info);
LB_HD int lb_grid_param_get(lb_type t, const void *block, int p);
/* lo <= v <= hi */
LB_HD void lb_grid_param_set(lb_type t, void *block, int p, int v);

#endif
