/*
 * kquant.h - lowbit's default encoders of the k-quant formats q2_K, q3_K, q4_K, q5_K and q6_K.
 *
 * Same contract as lb_quantize_fn (quant.h): x is (nrows, n_per_row) floats, n_per_row a multiple of
 * 256; y receives nrows rows of blocks; imatrix is n_per_row importance weights (E[a_j^2] per input
 * column) or NULL. The output is a valid block row of the type, and per 256-element super-block its
 * error  sum_j w_j (x_j - dequant_j)^2  with w_j = imatrix[j] (1 without an imatrix) is never larger
 * than that of ggml's encoder (quantize_<t>_ref with the same imatrix argument), usually smaller.
 * Pure functions of their inputs (deterministic; any row split across threads gives the same bytes).
 */
#ifndef LB_ALGO_KQUANT_H
#define LB_ALGO_KQUANT_H

#include <stdint.h>

void quantize_q2_K_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q3_K_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q4_K_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q5_K_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q6_K_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);

#endif
