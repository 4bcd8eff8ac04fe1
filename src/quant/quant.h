/*
 * quant.h - the type table (one row per lb_type, in types.c) and weights as the kernels see them.
 */
#ifndef LB_QUANT_H
#define LB_QUANT_H

#include "../core/core.h"

typedef void (*lb_to_float_fn)(const void *x, float *y, int64_t n);
typedef void (*lb_from_float_fn)(const float *x, void *y, int64_t n);
typedef void (*lb_quantize_fn)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
typedef void (*lb_vec_dot_fn)(int64_t n, float *s, const void *x, const void *y);

typedef struct lb_type_traits {
    const char *name;        /* llama.cpp's lower-case spelling */
    int64_t block_elems;
    size_t block_bytes;
    int gguf_id;
    bool is_quant;           /* a block format (not f32/f16/bf16) */
    bool weight_type;        /* can store weights (false for the q8_1 / q8_K activation types) */
    lb_type vec_dot_type;    /* activation type of vec_dot */
    lb_to_float_fn to_float;          /* reference dequantization */
    lb_from_float_fn from_float_ref;  /* ggml's reference quantizer of one row */
    lb_quantize_fn quantize_ref;      /* ggml_quantize_chunk (llama-quantize), bit exact; lowbit's own
                                         encoders live in algo/ (encoders.h) */
    lb_vec_dot_fn vec_dot_ref;        /* reference dot against vec_dot_type */
    /* Byte offsets in a block of its fp16 factors (d, and dmin / m where the type has one; -1: none). Every
     * dequantized value is a product of these with integers of magnitude below 2^14, so a
     * block's values are all finite exactly when its factors are; lb_weight_first_nonfinite reads only these. */
    int fp16_factor[2];
} lb_type_traits;

/* The row of t, or NULL for a value outside the table. */
const lb_type_traits *lb_type_traits_get(lb_type t);

/* A weight matrix of shape (rows, cols), cols contiguous, row stride = lb_type_row_size(type, cols). */
typedef struct lb_weight {
    lb_type type;
    const void *data;
    int64_t rows, cols;
} lb_weight;

/* Bytes of one row of w. */
static inline size_t lb_weight_row_bytes(const lb_weight *w) { return lb_type_row_size(w->type, w->cols); }
/* Element i of row r of w as float (dequantizes the whole block; slow, for tests and small vectors). */
float lb_weight_get(const lb_weight *w, int64_t r, int64_t i);
/* Convert row r of w to f32 (cols floats). */
void lb_weight_row_f32(const lb_weight *w, int64_t r, float *out);
/* The first element of row r of w that is NaN or infinite as lb_weight_row_f32 gives it (its column in *col,
 * its value in *v), or false when the row is finite; reads only the blocks' fp16 factors, or the raw bits of
 * F16 / BF16 / F32 rows, unless the row has a non-finite value. scratch: cols floats. */
bool lb_weight_row_nonfinite(const lb_weight *w, int64_t r, float *scratch, int64_t *col, float *v);

#endif
