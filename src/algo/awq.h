/*
 * awq.h - AWQ's scale search (Lin et al. 2023, "Activation-aware Weight Quantization"; docs/formats.md 5):
 * for matrices W_k (rows_k, d) sharing one input x, per input channel scales s_j = m_j^alpha / norm with
 * m_j = mean |x_j| and norm = sqrt(max_j s_j * min_j s_j), alpha on the grid 0, 1/20, ..., 1. The loss of
 * a candidate is the output error on the calibration data,
 *     L(s) = sum_k tr((W_k - Q_k) H (W_k - Q_k)^T),   Q_k = Q(W_k diag(s)) diag(1/s),
 * with H = sum_t x_t x_t^T, which equals sum_t ||W_k x_t - Q_k x_t||^2 exactly; Q is the target type's
 * reference encoder (round-to-nearest with ggml's scale choice).
 */
#ifndef LB_ALGO_AWQ_H
#define LB_ALGO_AWQ_H

#include "../quant/quant.h"

#define LB_AWQ_GRID 20

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

#endif
