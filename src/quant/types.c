/*
 * types.c - the type table: one row per lb_type (name, block size, block bytes).
 */
#include "quant.h"

typedef struct type_row {
    const char *name;
    int64_t block_elems;
    size_t block_bytes;
} type_row;

static const type_row TYPES[LB_TYPE_COUNT] = {
    [LB_TYPE_F32] = {"f32", 1, 4},
    [LB_TYPE_F16] = {"f16", 1, 2},
    [LB_TYPE_BF16] = {"bf16", 1, 2},
};

const char *lb_type_name(lb_type t) {
    return (unsigned)t < LB_TYPE_COUNT ? TYPES[t].name : "?";
}

size_t lb_type_row_size(lb_type t, int64_t n) {
    if ((unsigned)t >= LB_TYPE_COUNT || n < 0 || n % TYPES[t].block_elems) return 0;
    return (size_t)(n / TYPES[t].block_elems) * TYPES[t].block_bytes;
}

float lb_weight_get(const lb_weight *w, int64_t r, int64_t i) {
    size_t off = (size_t)(r * w->cols + i);
    switch (w->type) {
    case LB_TYPE_F32: return ((const float *)w->data)[off];
    case LB_TYPE_F16: return lb_fp16_to_f32(((const uint16_t *)w->data)[off]);
    case LB_TYPE_BF16: return lb_bf16_to_f32(((const uint16_t *)w->data)[off]);
    default: return 0.0f;
    }
}

void lb_weight_row_f32(const lb_weight *w, int64_t r, float *out) {
    for (int64_t i = 0; i < w->cols; i++) out[i] = lb_weight_get(w, r, i);
}
