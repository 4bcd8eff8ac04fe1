/*
 * gptq.h - GPTQ (Frantar et al., 2022) with the target ggml block format as the quantizer: the output is
 * ordinary blocks of that type, readable by any ggml / GGUF consumer (no g_idx, no extra tensors).
 */
#ifndef LB_ALGO_GPTQ_H
#define LB_ALGO_GPTQ_H

#include "../quant/quant.h"

/*
 * The heavy linear algebra of lb_gptq_quantize and lb_gptq_ref_target behind a table, so that it can run on
 * another device: the inverse factor, the delayed block updates of the sweep, the products H e of the
 * coordinate descent and the reference target's matrix products. NULL (lb_gptq_ops_cpu()) is the CPU
 * implementation on the pool, which defines the results; a device implementation (algo/gptq_cuda.c through
 * cuda/gptq.h) computes the same quantities in another summation order. Everything else (the columns of a
 * batch, the grids, the encoders, the coordinate descent's steps) stays on the caller's threads.
 * Entries return LB_OK or a device error (LB_ERR_DEVICE, LB_ERR_NOMEM); NULL entries do nothing.
 */
typedef struct lb_gptq_ops {
    void *user;
    const char *name; /* "cpu", "cuda" */
    /* device memory for one matrix of rows x n (cd: with the coordinate descent's H), before anything else:
     * on failure lb_gptq_quantize runs that matrix on the CPU implementation (lb_gptq_stats.fallback) */
    lb_status (*reserve)(void *user, int64_t rows, int64_t n, bool cd, lb_error *err);
    /* lb_chol_inv_upper_pool's contract on A (n, n); *ok false when A is not positive definite */
    lb_status (*inv_upper)(void *user, lb_pool *pool, double *A, int64_t n, double *work, bool *ok, lb_error *err);
    /* a matrix's sweeps start: U (n, n) f32, upper, processing order; Hf (n, n) f32 or NULL (no coordinate
     * descent). Both stay valid until end. */
    lb_status (*begin)(void *user, const float *U, const float *Hf, int64_t rows, int64_t n, lb_error *err);
    /* optional pair, for sweeps that run wholly on the device (pass, and cd when there is a descent): inv_upper_keep
     * is inv_upper's test and factor of the symmetric matrix A's strictly lower triangle and diagonal give (the
     * upper triangle is not read), but the factor stays on the device as begin's U (F32, the bits of inv_upper's
     * upper triangle converted) and A is left as it is; begin_kept then starts the sweeps with that U and, when
     * hf_diag (n values) is given, Hf formed on the device: Hf[i][j] = (float) A[max(i,j)][min(i,j)] off the
     * diagonal (A of the last inv_upper_keep), hf_diag[i] on it. The host then forms neither U nor Hf. */
    lb_status (*inv_upper_keep)(void *user, const double *A, int64_t n, bool *ok, lb_error *err);
    lb_status (*begin_kept)(void *user, const float *hf_diag, int64_t rows, int64_t n, lb_error *err);
    /* a pass starts from T (rows, n) */
    lb_status (*load)(void *user, const float *T, int64_t rows, int64_t n, lb_error *err);
    /* T[:, i2:n] -= E[:, 0:i2-i1] U[i1:i2, i2:n], E (rows, lde); on return T[:, i2:i3] holds the result on the
     * host (the columns after i3 may live on the device only, until the next load) */
    lb_status (*update)(void *user, lb_pool *pool, float *T, int64_t rows, int64_t n, const float *E, int64_t lde,
                        const float *U, int64_t i1, int64_t i2, int64_t i3, lb_error *err);
    /* G[r] = Hf (W[r] - Q[r]) for the rows r with sel[r] (G's other rows are left as they are) */
    lb_status (*h_times_e)(void *user, lb_pool *pool, const float *W, const float *Q, float *G, int64_t rows, int64_t n,
                           const float *Hf, const bool *sel, lb_error *err);
    /* out (rows, n) = x (rows, K) . w^T, w (n, K); all f32 row-major */
    lb_status (*matmul)(void *user, lb_pool *pool, const float *x, int64_t rows, const float *w, int64_t n, int64_t K,
                        float *out, lb_error *err);
    void (*end)(void *user); /* after a matrix's sweeps (also after a failure) */
    /* optional: whether encode takes type t with encoder enc */
    bool (*encodes)(void *user, lb_type t, lb_encoder enc);
    /* the blocks of columns [c0, c1) (block-aligned) of `rows` rows of S (ld floats apart) by type t's encoder
     * enc (lb_encoder_get) with importance weights imp (c1 - c0 floats, or NULL), into the rows of out
     * (row_bytes apart) at those columns' blocks: the bytes the CPU encoder writes */
    lb_status (*encode)(void *user, lb_type t, lb_encoder enc, const float *S, int64_t ld, int64_t rows, int64_t c0,
                        int64_t c1, const float *imp, uint8_t *out, size_t row_bytes, lb_error *err);
    /* optional: one whole pass of the column sweep on the device, default order, for a type that encodes
     * with batches of one block column (batch == the block length): T from W; the scales of every block
     * encoded from the previous pass's values before rounding (static_scales; that pass ran through this
     * entry) or of each batch's block column at its start; the columns and the delayed updates. The pass's
     * blocks go to out (rows x row_bytes), each row's GPTQ loss to loss (rows). Needs begin's U. */
    lb_status (*pass)(void *user, lb_type t, lb_encoder enc, const float *W, int64_t rows, int64_t n, int64_t batch,
                      const float *imp, bool static_scales, uint8_t *out, size_t row_bytes, double *loss, lb_error *err);
    /* optional: the coordinate descent on the device for a type that encodes: `sweeps` sweeps as lb_gptq_quantize
     * runs them (stop when no row moved; each from G = H (W - Q)) from the blocks out and their values Q
     * (rows x n), then G = H (W - Q) for every row; out, Q and G written back. H from begin's Hf; Ht
     * (n x run, the diagonal blocks transposed) when scales. */
    lb_status (*cd)(void *user, lb_type t, const float *W, float *Q, uint8_t *out, size_t row_bytes, float *G, int64_t rows,
                    int64_t n, int sweeps, bool scales, const float *Ht, lb_error *err);
    /* optional pair: lb_gptq_ref_target's algebra kept on the device (it then calls these instead of inv_upper
     * and matmul). ref_factor: U with U^T U = (H + lam I)^-1 from H (n x n; uploaded when upload, else the
     * last one's), *ok false when H + lam I is not positive definite (inv_upper's test); ref_apply: W (rows x
     * n) = (W DC + lam W) U^T U with the last factor, (D C)^T made from C (n x n double) and s (n, or NULL) as
     * lb_gptq_ref_dct makes it, when upload (else the last one's). */
    lb_status (*ref_factor)(void *user, const double *H, int64_t n, double lam, bool upload, bool *ok, lb_error *err);
    lb_status (*ref_apply)(void *user, const double *C, const float *s, int64_t n, double lam, float *W, int64_t rows, bool upload,
                           lb_error *err);
    /* optional, for AWQ on the device (types that encodes): lb_awq_clip's contract (algo/awq.h); and the loss
     * of each of n_cand candidate scale vectors cands (n_cand, d) of lb_awq_search over n_mat matrices w[k]
     * (rows[k], d) of types[k] with H (d, d): the first smallest in *best, its loss in *best_loss */
    lb_status (*awq_clip)(void *user, float *w, int64_t rows, int64_t d, const double *H, lb_type t, lb_encoder enc,
                          const float *imatrix, uint8_t *choice, lb_error *err);
    lb_status (*awq_search)(void *user, int n_mat, const float *const *w, const int64_t *rows, const lb_type *types, int64_t d,
                            const double *H, const float *cands, int n_cand, int *best, double *best_loss, lb_error *err);
} lb_gptq_ops;

/* The CPU implementation (the specification of every other). */
const lb_gptq_ops *lb_gptq_ops_cpu(void);

/* The CUDA implementation on device `device` (algo/gptq_cuda.c, cuda/gptq.h): LB_ERR_DEVICE with the reason
 * when there is no such device, no cuBLAS or no cuSOLVER, or the build has no CUDA. One caller at a time;
 * released by lb_gptq_ops_cuda_free. _peak: the most device memory seen in use (bytes). */
lb_status lb_gptq_ops_cuda_new(int device, lb_gptq_ops **out, lb_error *err);
void lb_gptq_ops_cuda_free(lb_gptq_ops *ops);
size_t lb_gptq_ops_cuda_peak(const lb_gptq_ops *ops);
/* What a CUDA table's encodes answers, without a table: whether its GPU encoders are on (unless LB_GPU_ENCODE=0)
 * and take type t with encoder enc. False without the CUDA build. */
bool lb_gptq_cuda_encodes(lb_type t, lb_encoder enc);

/* Host buffers kept from one lb_gptq_quantize call to the next (the inverse factor U and the descent's H in F32,
 * the sweeps' T and P), so that a caller solving many matrices does not map fresh pages for each: a device table
 * takes all rows at once, several GB a layer at 8B scale. Zero-initialize; lb_gptq_scratch_free releases. One
 * caller at a time. */
typedef struct lb_gptq_scratch {
    void *p[5];
    size_t bytes[5];
    /* optional allocator for the buffers (NULL: malloc / free): a device table's caller gives page-locked memory,
     * so that the buffers' transfers run at the bus's speed; alloc may return NULL (then malloc is used) */
    void *(*alloc)(void *ctx, size_t bytes);
    void (*release)(void *ctx, void *p);
    void *ctx;
    bool mine[5]; /* p[k] came from alloc */
} lb_gptq_scratch;
void lb_gptq_scratch_free(lb_gptq_scratch *s);
/* a caller's buffer of n doubles kept in s (its copy of H for lb_gptq_quantize, which overwrites H), valid until the
 * next call with s; with s NULL a malloc'd one the caller frees; NULL when out of memory. */
double *lb_gptq_scratch_h(lb_gptq_scratch *s, int64_t n);

typedef struct lb_gptq_params {
    double damp;        /* lambda = damp * mean(diag H) is added to the diagonal (default 0.01; 0 allowed) */
    int max_damp_tries; /* Cholesky attempts; after a failure damp *= 10 (from LB_GPTQ_DAMP_FLOOR when 0) */
    int block_cols;     /* lazy-batch width B in columns (default 128; rounded up to whole ggml blocks) */
    bool act_order;     /* process columns in decreasing diag(H) order, scales fixed up front */
    int passes;         /* sweeps (1..16, default 1): each later one re-chooses every block's scales from the
                           values GPTQ rounded in the one before; per row the sweep with the smallest loss is kept */
    int cd_sweeps;      /* then coordinate-descent sweeps over the codes (0..64, default 0), scales fixed, each
                           change lowering e^T H e (H damped as for GPTQ) */
    bool cd_scales;     /* each coordinate-descent sweep then also steps every integer sub-block scale / min
                           by +-1 where that lowers e^T H e (quant/grid.h parameters; default false) */
    double ref_damp;    /* lb_gptq_ref_target's damp when a caller moves the target (default 1: lam = mean(diag H)) */
    double few_tokens_damp; /* for a caller that knows how many tokens N built H: when
                               N < LB_GPTQ_FEW_TOKENS_PER_COL * cols, damp is raised to at least this
                               (default 0: damp as given; lb_gptq_quantize ignores it) */
    const lb_gptq_ops *ops; /* where the linear algebra runs (default NULL: lb_gptq_ops_cpu()) */
    lb_gptq_scratch *scratch; /* buffers kept between calls (default NULL: allocated and freed per call) */
} lb_gptq_params;

#define LB_GPTQ_DAMP_FLOOR 1e-4
#define LB_GPTQ_FEW_TOKENS_PER_COL 16 /* below this many calibration tokens per column few_tokens_damp applies */

/* Where lb_gptq_quantize's time goes (lb_gptq_stats.seconds), for profiles: the preparation of H (checks,
 * dead columns, act-order, the inverse factor with its damping tries), the columns of each batch and the
 * scales (CPU threads), the delayed updates (ops->update, waits for the device included), the coordinate
 * descent's steps (CPU threads) and its products H e (ops->h_times_e); the reference target is timed by its
 * caller. */
typedef enum lb_gptq_phase {
    LB_GPTQ_PH_FACTOR,
    LB_GPTQ_PH_COLUMNS,
    LB_GPTQ_PH_UPDATE,
    LB_GPTQ_PH_CD,
    LB_GPTQ_PH_PRODUCTS,
    LB_GPTQ_PH_ENCODE, /* the block encoders through ops->encode (a device); on CPU threads they are in COLUMNS */
    LB_GPTQ_PHASES
} lb_gptq_phase;

typedef struct lb_gptq_stats {
    double damp;      /* the damp that succeeded */
    int damp_tries;   /* Cholesky attempts made (1 when the first one succeeded) */
    int64_t dead_cols; /* columns with H_jj == 0 (zeroed in W) */
    double loss;      /* GPTQ's objective: sum over rows and columns of (w - q)^2 / Hinv_jj^2 / 2 */
    double seconds[LB_GPTQ_PHASES]; /* wall time per phase (lb_gptq_phase) */
    bool fallback;    /* params.ops could not take the matrix (reserve failed): it ran on the CPU */
    char fallback_msg[200]; /* ... and why */
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
 * (cols^2 floats + 2 x 64 rows per thread x cols floats on the CPU, 2 rows x cols floats with a device table)
 * cannot be allocated; a device error of p->ops as it is (when its
 * reserve fails the matrix runs on the CPU instead, stats->fallback). Thread-safe for distinct arguments.
 */
lb_status lb_gptq_quantize(lb_pool *pool, float *W /* (rows, cols) */, int64_t rows, int64_t cols,
                           double *H /* (cols, cols) */, lb_type type, lb_encoder enc, const lb_gptq_params *p,
                           void *out, lb_gptq_stats *stats, lb_error *err);

/*
 * GPTQ's target moved to the unquantized model: with X the calibration inputs the quantized model feeds
 * the matrices, Xr those the unquantized model feeds them, H = X X^T and C = Xr X^T (C[i][j] =
 * sum_t xr_t[i] x_t[j]), each of the n_mat matrices W[k] (rows[k], cols) sharing that input becomes
 *   W <- (W D C + lam W) (H + lam I)^-1,   lam = damp * mean(diag H),  D = diag(1 / s) (s NULL: D = I),
 * the minimizer of ||W D Xr - W' X||^2 + lam ||W' - W||^2. GPTQ's ||(W' - Q) X||^2 on the result is then,
 * up to a constant, ||W D Xr - Q X||^2: the error of the layers before, visible in X, is compensated too.
 * s: per-input-channel scales already multiplied into W's columns (AWQ), which X carries divided out and
 * Xr does not. damp is raised tenfold (up to max_tries attempts) when H + lam I is not positive definite;
 * *applied is false when every attempt failed, or H has no energy, and the W were left as they are.
 * Products in f32 (lb_matmul), the factorization in f64; the same result for any thread count. C is overwritten (it
 * becomes the matrix factored). Memory beyond H and C: 2 cols^2 floats at most, and one matrix's rows.
 * ops: where the factorization and the products run (NULL: the CPU; a device table reserved by the caller for
 * the largest rows[k] and cols, without coordinate descent or with); a device error is returned as it is,
 * with every W as it was when the factorization failed, and possibly changed when a product failed.
 */
/* The reference target's (D C)^T in F32 (n x n): f1[i][r] = (float)(C[r][i] / s[r]) (s NULL: 1), on the pool. */
void lb_gptq_ref_dct(lb_pool *pool, const double *C, const float *s, int64_t n, float *f1);
lb_status lb_gptq_ref_target(lb_pool *pool, float *const *W, const int64_t *rows, int n_mat, int64_t cols,
                             const double *H /* (cols, cols) */, double *C /* (cols, cols), overwritten */, const float *s,
                             double damp, int max_tries, const lb_gptq_ops *ops, bool *applied, lb_error *err);

#endif
