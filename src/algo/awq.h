/*
 * awq.h - AWQ's scale search (Lin et al. 2023, "Activation-aware Weight Quantization"; docs/formats.md 5):
 * for matrices W_k (rows_k, d) sharing one input x, per input channel scales s_j = m_j^alpha / norm with
 * m_j = mean |x_j| and norm = sqrt(max_j s_j * min_j s_j), alpha on the grid 0, 1/20, ..., 1. The loss of
 * a candidate is the output error on the calibration data,
 *     L(s) = sum_k tr((W_k - Q_k) H (W_k - Q_k)^T),   Q_k = Q(W_k diag(s)) diag(1/s),
 * with H = sum_t x_t x_t^T, which equals sum_t ||W_k x_t - Q_k x_t||^2 exactly; Q is the target type's
 * reference encoder (round-to-nearest with ggml's scale choice).
 *
 * Then AWQ's clip search (llm-awq auto_clip; docs/formats.md 5.3), lb_awq_clip: per output row and per
 * block g of the target type (32 elements, 256 for k-quants and iq4_xs), the weights are clamped to
 * [-r*max|w_g|, r*max|w_g|] (formats with an offset, q4_1, q5_1, q2_K, q4_K, q5_K: [r*min w_g, r*max w_g])
 * for r = 1 - i/20, i = 0..9, and the r with the smallest output error e_g^T H_gg e_g,
 * e_g = w_g - Q(clamp(w_g)), is kept (H_gg: the diagonal block of H over g's columns). Q is the encoder
 * the final quantization uses, run on the whole row clamped at the same r (as llm-awq clamps all groups of
 * a row at once); for encoders that work block by block (all but the imatrix-weighted q4_0..q5_1
 * references, whose weights use the row's mean square) this is exactly the block that will be written.
 */
#ifndef LB_ALGO_AWQ_H
#define LB_ALGO_AWQ_H

#include "../quant/quant.h"

#include <math.h>

#define LB_AWQ_GRID 20
#define LB_AWQ_CLIP_GRID 20  /* clip ratios r_i = 1 - i/20 (llm-awq n_grid) */
#define LB_AWQ_CLIP_STEPS 10 /* i = 0..9: shrink below 0.5 is not tried (llm-awq max_shrink) */

typedef struct awq_group {
    int n;                 /* matrices sharing the input (1..3) */
    const float *w[3];     /* (rows_k, d) f32 */
    int64_t rows[3];
    lb_type type[3];
} awq_group;

/* The scales of the grid point with the smallest loss into s (d floats), its loss into *best_loss.
 * H (d, d) symmetric; mean_abs (d). pool may be NULL. */
lb_status lb_awq_search(lb_pool *pool, const awq_group *g, int64_t d, const double *H, const float *mean_abs, float *s,
                        double *best_loss, lb_error *err);

/* The scales of grid point a (0..LB_AWQ_GRID) into s. */
void lb_awq_scales(const float *mean_abs, int64_t d, int a, float *s);

/* Clip ratio r_i, as float. i = 0 gives 1 (no clipping). */
static inline float lb_awq_clip_ratio(int i) { return 1.0f - (float)i / (float)LB_AWQ_CLIP_GRID; }

/* The clip search's pieces, shared with its device copy (cuda/kq_encode.cu; LB_HD): formats whose blocks have
 * an offset (a min) and are clamped asymmetrically; block wg's clamp at ratio into xc (be elements); and
 * e^T H_gg e for the block starting at column o (be elements) of H (d, d), in double. */
LB_HD static inline bool lb_awq_has_offset(lb_type t) {
    return t == LB_TYPE_Q4_1 || t == LB_TYPE_Q5_1 || t == LB_TYPE_Q2_K || t == LB_TYPE_Q4_K || t == LB_TYPE_Q5_K;
}

LB_HD static inline void lb_awq_clamp(const float *wg, int64_t be, bool offset, float ratio, float *xc) {
    float mn = wg[0], mx = wg[0];
    for (int64_t k = 1; k < be; k++) {
        mn = wg[k] < mn ? wg[k] : mn;
        mx = wg[k] > mx ? wg[k] : mx;
    }
    const float hi = offset ? mx * ratio : fmaxf(fabsf(mn), fabsf(mx)) * ratio, lo = offset ? mn * ratio : -hi;
    for (int64_t k = 0; k < be; k++) xc[k] = wg[k] < lo ? lo : wg[k] > hi ? hi : wg[k];
}

LB_HD static inline double lb_awq_block_error(const double *H, int64_t d, int64_t o, int64_t be, const double *e) {
    double s = 0;
    for (int64_t a = 0; a < be; a++) {
        const double *h = H + (o + a) * d + o;
        double t = 0;
        for (int64_t b = 0; b < be; b++) t += h[b] * e[b];
        s += e[a] * t;
    }
    return s;
}

/* The clip search above on w (rows, d) f32, in place: each block is replaced by its clamp at the chosen
 * r. H (d, d) symmetric (for scaled weights, the scaled H); imatrix (d) or NULL is passed to the encoder
 * lb_encoder_get(type, enc) as the final quantization gets it. The chosen i per (row, block) goes to
 * choice (rows, d / block elements) unless NULL. Ties go to the smaller i (less clipping), so a block is
 * clamped only where that strictly lowers its error. For a type without a grid (lb_grid_supported: f32,
 * f16, bf16) w is left as it is and choice is all 0. Row-parallel on pool (may be NULL); the result does
 * not depend on the thread count. LB_ERR_ARG when d is not a multiple of the block. */
lb_status lb_awq_clip(lb_pool *pool, float *w, int64_t rows, int64_t d, const double *H, lb_type type, lb_encoder enc,
                      const float *imatrix, uint8_t *choice, lb_error *err);

#endif
