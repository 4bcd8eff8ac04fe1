/*
 * encoders.c - lowbit's default encoder per type (kquant.c, legacy_enc.c), else the type table's
 * reference encoder.
 */
#include "encoders.h"

#include "kquant.h"
#include "legacy_enc.h"

lb_quantize_fn lb_encoder_get(lb_type t, lb_encoder enc) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    if (!tt) return NULL;
    if (enc == LB_ENCODER_REF) return tt->quantize_ref;
    switch (t) {
    case LB_TYPE_Q4_0: return quantize_q4_0_best;
    case LB_TYPE_Q4_1: return quantize_q4_1_best;
    case LB_TYPE_Q5_0: return quantize_q5_0_best;
    case LB_TYPE_Q5_1: return quantize_q5_1_best;
    case LB_TYPE_Q8_0: return quantize_q8_0_best;
    case LB_TYPE_Q2_K: return quantize_q2_K_best;
    case LB_TYPE_Q3_K: return quantize_q3_K_best;
    case LB_TYPE_Q4_K: return quantize_q4_K_best;
    case LB_TYPE_Q5_K: return quantize_q5_K_best;
    case LB_TYPE_Q6_K: return quantize_q6_K_best;
    case LB_TYPE_IQ4_NL: return quantize_iq4_nl_best;
    case LB_TYPE_IQ4_XS: return quantize_iq4_xs_best;
    default: return tt->quantize_ref;
    }
}

typedef struct enc_job {
    lb_quantize_fn fn;
    const float *x, *im;
    uint8_t *y;
    int64_t cols;
    size_t row_bytes;
} enc_job;

static void enc_task(void *arg, int64_t r, int thread) {
    const enc_job *j = arg;
    j->fn(j->x + r * j->cols, j->y + (size_t)r * j->row_bytes, 1, j->cols, j->im);
}

void lb_encode_rows(lb_pool *pool, lb_quantize_fn fn, const float *x, int64_t rows, int64_t cols, lb_type t,
                    const float *imatrix, void *y) {
    enc_job j = {fn, x, imatrix, y, cols, lb_type_row_size(t, cols)};
    lb_pool_run(pool, rows, enc_task, &j);
}
