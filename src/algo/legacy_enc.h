/*
 * legacy_enc.h - lowbit's default encoders of the 32-element block formats q4_0, q4_1, q5_0, q5_1,
 * q8_0, iq4_nl and of iq4_xs (256-element super-blocks).
 *
 * Same contract as lb_quantize_fn (quant.h): x is (nrows, n_per_row) floats, n_per_row a multiple of the
 * type's block size (32; 256 for iq4_xs); y receives nrows rows of blocks of the type; imatrix is
 * n_per_row importance weights (E[a_j^2] per input column) or NULL.
 *
 * Guarantee. With w_j = imatrix[j] (w_j = 1 when imatrix is NULL) and x^_j the value
 * dequantize_row_<t>_ref gives for element j, the error of a block b (32 elements; 256 for iq4_xs) is
 *
 *     E_b = sum_{j in b} w_j * ((double)x_j - (double)x^_j)^2      (double, summed in element order)
 *
 * and the error of a row is the sum of its block errors. Every block written has E_b no larger than the
 * same block of quantize_<t>_ref(x, ..., imatrix) with the same imatrix argument (for q4_0..q5_1 with an
 * imatrix that reference depends on the whole row; it is computed per row). A block is replaced only
 * where the new one is lower by a relative margin of 1e-9, so the comparison cannot flip through float
 * summation order; otherwise the reference bytes are kept. Blocks holding a non-finite input keep the
 * reference bytes. Hence the row error never exceeds the reference's, and is lower on average.
 *
 * Pure functions of their inputs: deterministic, no allocation, no global state; any split of rows
 * across threads gives the same bytes.
 */
#ifndef LB_ALGO_LEGACY_ENC_H
#define LB_ALGO_LEGACY_ENC_H

#include <stdint.h>

void quantize_q4_0_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q4_1_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q5_0_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q5_1_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q8_0_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_iq4_nl_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_iq4_xs_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);

#endif
