/*
 * imatrix.h - importance matrices: per weight tensor, the mean squared input activation E[x_j^2] of each
 * input column j (docs/formats.md 2.6). Reads llama.cpp's two file formats:
 * - the legacy .dat file of llama-imatrix: i32 entry count; per entry i32 name length, the name, i32
 *   ncall, i32 nval, nval f32 values (sum of x^2 / count * ncall); then optionally i32 chunk count and a
 *   dataset name. E[x^2] = value / ncall.
 * - the GGUF imatrix file (general.type "imatrix"): per weight `<name>.in_sum2` [ne0, n_mat] and
 *   `<name>.counts` [1, n_mat]; E[x^2] = in_sum2 / count (1 where the count is 0).
 * Names are GGUF tensor names ("blk.0.attn_q.weight").
 */
#ifndef LB_IMATRIX_H
#define LB_IMATRIX_H

#include "../core/core.h"

typedef struct lb_imatrix_entry {
    char *name;
    int64_t n;       /* values (the tensor's row length) */
    float *values;   /* E[x_j^2] */
} lb_imatrix_entry;

typedef struct lb_imatrix {
    int64_t n_entries;
    lb_imatrix_entry *entries;
    int64_t chunks;  /* calibration chunks it was computed from, when the file says (else 0) */
    char *dataset;   /* name of the calibration text, when the file says (else NULL) */
} lb_imatrix;

lb_status lb_imatrix_load(const char *path, lb_imatrix **out, lb_error *err);
void lb_imatrix_free(lb_imatrix *m);
/* The entry for a GGUF tensor name, or NULL. */
const lb_imatrix_entry *lb_imatrix_find(const lb_imatrix *m, const char *name);

#endif
