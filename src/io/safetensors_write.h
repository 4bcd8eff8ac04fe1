/*
 * safetensors_write.h - writing one safetensors file, streamed row by row (layout in safetensors.h).
 */
#ifndef LB_SAFETENSORS_WRITE_H
#define LB_SAFETENSORS_WRITE_H

#include "safetensors.h"

/* One tensor to write: shape in HF order (the last dimension is contiguous). */
typedef struct st_out_tensor {
    const char *name;
    st_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
} st_out_tensor;

/* Fill `out` with row r of tensor i: shape[n_dims-1] elements of its dtype (a 1-D tensor is one row). */
typedef lb_status (*st_fill_fn)(void *user, int64_t i, int64_t r, void *out, lb_error *err);

/* Write the n tensors, in order, to `path` (created or truncated). On failure the file is incomplete
 * and the caller removes it. */
lb_status st_write(const char *path, const st_out_tensor *t, int64_t n, st_fill_fn fill, void *user, lb_error *err);

#endif
