/*
 * gptq.h - GPTQ (Frantar et al., 2022) with the target ggml block format as the quantizer: the output is
 * ordinary blocks of that type, readable by any ggml / GGUF consumer (no g_idx, no extra tensors).
 */
#ifndef LB_ALGO_GPTQ_H
#define LB_ALGO_GPTQ_H

#include "../quant/quant.h"

typedef struct lb_gptq_params {
    double damp;        /* lambda = damp * mean(diag H) is added to the diagonal (default 0.01; 0 allowed) */
    int max_damp_tries; /* Cholesky attempts; after a failure damp *= 10 (from LB_GPTQ_DAMP_FLOOR when 0) */
    int block_cols;     /* lazy-batch width B in columns (default 128; rounded up to whole ggml blocks) */
    bool act_order;     /* process columns in decreasing diag(H) order, scales fixed up front */
    int passes;         /* sweeps (1..16, default 1): each later one re-chooses every block's scales from the
                           values GPTQ rounded in the one before; per row the sweep with the smallest loss is kept */
    int cd_sweeps;      /* then coordinate-descent sweeps over the codes (0..64, default 0), scales fixed, each
                           change lowering e^T H e (H damped as for GPTQ) */
} lb_gptq_params;

#define LB_GPTQ_DAMP_FLOOR 1e-4

typedef struct lb_gptq_stats {
    double damp;      /* the damp that succeeded */
    int damp_tries;   /* Cholesky attempts made (1 when the first one succeeded) */
    int64_t dead_cols; /* columns with H_jj == 0 (zeroed in W) */
    double loss;      /* GPTQ's objective: sum over rows and columns of (w - q)^2 / Hinv_jj^2 / 2 */
} lb_gptq_stats;

/* damp 0.01, 6 tries, block_cols 128, no act-order, 1 pass. */
void lb_gptq_params_default(lb_gptq_params *p);

/*
 * Quantize W (rows, cols) f32 row-major, cols = the input dimension (along which ggml blocks run), to
 * `type` (one of the 12 weight block types of quant/grid.h; cols a multiple of its block size) by GPTQ.
 * H (cols, cols) = sum over calibration tokens of x x^T, any positive scale, symmetric (both triangles);
 * it is overwritten (with Hinv and scratch). Every block's scales come from the encoder
 * lb_encoder_get(type, enc), run with diag(H) as importance weights on the block's current, error-updated
 * weights when GPTQ reaches the block (with act_order: on the initial weights, for all blocks up front);
 * its elements are then rounded one column at a time to the nearest value of their grid and the
 * rounding error is spread over the columns not yet quantized.
 *
 * out: rows * lb_type_row_size(type, cols) bytes, the blocks in the original column order. W is
 * overwritten with the dequantized result. pool may be NULL (one thread); the result is the same for any
 * thread count. stats may be NULL. Fails with LB_ERR_ARG on a bad argument, a non-finite value in W or H,
 * or an H that is not positive definite even after the damping tries; LB_ERR_NOMEM when scratch
 * (cols^2 floats + a few rows per thread) cannot be allocated. Thread-safe for distinct arguments.
 */
lb_status lb_gptq_quantize(lb_pool *pool, float *W /* (rows, cols) */, int64_t rows, int64_t cols,
                           double *H /* (cols, cols) */, lb_type type, lb_encoder enc, const lb_gptq_params *p,
                           void *out, lb_gptq_stats *stats, lb_error *err);

#endif
