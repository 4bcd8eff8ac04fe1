/*
 * quant.h - weights as the kernels see them: a matrix in any lb_type, plus element access and row
 * conversion to f32 through the type table.
 */
#ifndef LB_QUANT_H
#define LB_QUANT_H

#include "../core/core.h"

/* A weight matrix of shape (rows, cols), cols contiguous, row stride = lb_type_row_size(type, cols). */
typedef struct lb_weight {
    lb_type type;
    const void *data;
    int64_t rows, cols;
} lb_weight;

/* Element i of row r of w as float. */
float lb_weight_get(const lb_weight *w, int64_t r, int64_t i);
/* Convert row r of w to f32 (cols floats). */
void lb_weight_row_f32(const lb_weight *w, int64_t r, float *out);

#endif
