/* iq4.c - STUB: to be replaced by the reference kernels. */
#include "ref.h"
#include <string.h>

void dequantize_row_iq4_nl_ref(const void *x, float *y, int64_t n) { (void)x; memset(y, 0, (size_t)n * sizeof *y); }
void quantize_row_iq4_nl_ref(const float *x, void *y, int64_t n) { (void)x; (void)y; (void)n; }
void quantize_iq4_nl_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) { (void)x; (void)y; (void)nrows; (void)n_per_row; (void)imatrix; }
void dequantize_row_iq4_xs_ref(const void *x, float *y, int64_t n) { (void)x; memset(y, 0, (size_t)n * sizeof *y); }
void quantize_row_iq4_xs_ref(const float *x, void *y, int64_t n) { (void)x; (void)y; (void)n; }
void quantize_iq4_xs_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) { (void)x; (void)y; (void)nrows; (void)n_per_row; (void)imatrix; }
void vec_dot_iq4_nl_q8_0_ref(int64_t n, float *s, const void *x, const void *y) { (void)n; (void)x; (void)y; *s = 0; }
void vec_dot_iq4_xs_q8_K_ref(int64_t n, float *s, const void *x, const void *y) { (void)n; (void)x; (void)y; *s = 0; }
