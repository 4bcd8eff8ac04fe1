/*
 * gptq.h - GPTQ's heavy linear algebra on a CUDA device (C interface; cuda/gptq.cu). algo/gptq_cuda.c
 * turns these into an lb_gptq_ops table (algo/gptq.h), whose CPU implementation is the specification:
 * each function here computes the same quantity as its CPU counterpart, in another summation order.
 *
 * - the upper Cholesky factor U of A^-1 (lb_chol_inv_upper's contract), in double: cuSOLVER's Dpotrf of
 *   J A J (J the order reversal) gives A = R R^T with R = J L J upper, Xtrtri inverts L, U = J L^-1 J;
 * - the sweep's delayed update T[:, i2:] -= E U[i1:i2, i2:] and the products G = (W - Q) H: cuBLAS GEMMs
 *   with F32 operands and CUBLAS_COMPUTE_32F (no TF32);
 * - out = x w^T (the reference target's products), the same GEMM.
 * cuBLAS and cuSOLVER are opened with dlopen at lb_cuda_gptq_new. Device buffers grow to the largest matrix
 * reserved and are kept until lb_cuda_gptq_free; nothing else allocates device memory. Without the CUDA build every entry point fails with
 * LB_ERR_DEVICE. Not thread-safe: one caller at a time per handle.
 */
#ifndef LB_CUDA_GPTQ_H
#define LB_CUDA_GPTQ_H

#include "../core/core.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lb_cuda_gptq lb_cuda_gptq;

/* A handle on device `device`: its stream, a cuBLAS and a cuSOLVER handle. LB_ERR_DEVICE when the device,
 * cuBLAS or cuSOLVER is missing. */
lb_status lb_cuda_gptq_new(int device, lb_cuda_gptq **out, lb_error *err);
void lb_cuda_gptq_free(lb_cuda_gptq *g);

/* Device buffers for a matrix of rows x n (cd: also H and the products H e): LB_ERR_DEVICE "out of GPU
 * memory ..." when they do not fit. The other calls need a reservation covering their sizes. */
lb_status lb_cuda_gptq_reserve(lb_cuda_gptq *g, int64_t rows, int64_t n, bool cd, lb_error *err);

/* lb_chol_inv_upper's contract on A (n, n) row-major on the host: *ok false when A is not positive definite
 * (a pivot not above LB_CHOL_REL_EPS times its diagonal entry), and A is then left as it was. */
lb_status lb_cuda_gptq_inv_upper(lb_cuda_gptq *g, double *A, int64_t n, bool *ok, lb_error *err);

/* inv_upper's test and factor (of A's lower triangle and diagonal, as every factor here reads A) with the factor kept in the device's U (F32: the bits of inv_upper's upper triangle
 * converted) and A left as it is, on the host and in the device's copy; begin_kept then starts a matrix's sweeps
 * with that U and, given hf_diag (n), Hf formed on the device ((float) A's strictly lower triangle mirrored,
 * hf_diag on the diagonal). LB_ERR_ARG from begin_kept when U no longer holds such a factor of n columns
 * (anything else that writes U drops it). gptq.h's inv_upper_keep / begin_kept. */
lb_status lb_cuda_gptq_inv_upper_keep(lb_cuda_gptq *g, const double *A, int64_t n, bool *ok, lb_error *err);
lb_status lb_cuda_gptq_begin_kept(lb_cuda_gptq *g, const float *hf_diag, int64_t rows, int64_t n, lb_error *err);
/* For the tests: the kept factor U (n, n) and, after begin_kept with hf_diag, Hf (NULL: not read) to the host. */
lb_status lb_cuda_gptq_read_kept(lb_cuda_gptq *g, float *U, float *Hf, int64_t n, lb_error *err);
/* A matrix's sweeps: U (n, n) upper F32 and, for the coordinate descent, Hf (n, n) F32 (may be NULL). */
lb_status lb_cuda_gptq_begin(lb_cuda_gptq *g, const float *U, const float *Hf, int64_t rows, int64_t n, lb_error *err);
/* A pass starts from T (rows, n) on the host. */
lb_status lb_cuda_gptq_load(lb_cuda_gptq *g, const float *T, int64_t rows, int64_t n, lb_error *err);
/* T[:, i2:n] -= E (rows, lde; columns 0..i2-i1) U[i1:i2, i2:n] on the device; T[:, i2:i3] is copied back to
 * the host T before the call returns, the columns after i3 are updated on the device meanwhile. */
lb_status lb_cuda_gptq_update(lb_cuda_gptq *g, float *T, int64_t rows, int64_t n, const float *E, int64_t lde, int64_t i1,
                              int64_t i2, int64_t i3, lb_error *err);
/* G[r] = Hf (W[r] - Q[r]) for the rows with sel[r]; all (rows, n) on the host. */
lb_status lb_cuda_gptq_h_times_e(lb_cuda_gptq *g, const float *W, const float *Q, float *G, int64_t rows, int64_t n,
                                 const bool *sel, lb_error *err);
/* out (rows, n) = x (rows, K) . w^T, w (n, K); host pointers; rows, n, K within the reservation (its buffers
 * serve: not during a matrix's sweeps). */
lb_status lb_cuda_gptq_matmul(lb_cuda_gptq *g, const float *x, int64_t rows, const float *w, int64_t n, int64_t K,
                              float *out, lb_error *err);
/* Whether lb_cuda_gptq_encode takes type t with encoder enc: the five k-quants with lowbit's default
 * encoders (algo/kquant.c, compiled for the device from the same source by kq_encode.cu). */
bool lb_cuda_kq_encodes(lb_type t, lb_encoder enc);
/* The blocks of columns [c0, c1) (multiples of 256) of `rows` rows of S (host, ld floats apart) with importance
 * weights imp (c1 - c0 floats, host, or NULL) into the rows of out (host, row_bytes apart) at those columns'
 * blocks, one device thread per block: the bytes quantize_<t>_best writes. Its own device buffers, grown
 * to the largest call; no reservation needed. */
lb_status lb_cuda_gptq_encode(lb_cuda_gptq *g, lb_type t, const float *S, int64_t ld, int64_t rows, int64_t c0, int64_t c1,
                              const float *imp, uint8_t *out, size_t row_bytes, lb_error *err);
/* The host copy of the device's encoder code (kq_encode.cu: the same C++ translation of algo/kquant.c,
 * compiled for the CPU): nblk blocks of each of `rows` rows of x into y, as cu_kq_encode does. Needs no
 * GPU; a check of that translation against the C encoders. LB_ERR_DEVICE in a build without CUDA. */
lb_status lb_cuda_kq_encode_host(lb_type t, const float *x, int64_t ldx, int64_t rows, int64_t nblk, const float *imp, uint8_t *y,
                                 int64_t ldy, lb_error *err);
/* One pass of the column sweep on the device, default order, a k-quant type that lb_cuda_kq_encodes, batch
 * 256 (one block column), n a multiple of 256, within the reservation and after begin (U on the device): W
 * (rows, n, host) into T; the scales of every block encoded from the previous pass's values before rounding
 * (static_scales; that pass ran here) or of each batch's block column at its start from T; the columns
 * (cu_gptq_columns) and the delayed updates as lb_cuda_gptq_update's two GEMMs. The pass's blocks go to out
 * (host, rows x row_bytes) and each row's GPTQ loss to loss (host, rows). The bits of the same pass with
 * the columns on CPU threads and lb_cuda_gptq_update. */
lb_status lb_cuda_gptq_pass(lb_cuda_gptq *g, lb_type t, const float *W, int64_t rows, int64_t n, int64_t batch, const float *imp,
                            bool static_scales, uint8_t *out, size_t row_bytes, double *loss, lb_error *err);
/* The host copy of that pass (gptq_sweep.cu's C++ on the CPU, no GPU needed), with U (n, n) F32 given and
 * the caller's scratch T and P (rows, n; P carries the values before rounding to the next pass) and E
 * (rows, batch); the delayed update in the CPU's order, so the bits are the CPU's. LB_ERR_DEVICE in a build
 * without CUDA. */
lb_status lb_cuda_gptq_pass_host(lb_type t, const float *W, int64_t rows, int64_t n, int64_t batch, const float *U, const float *imp,
                                 bool static_scales, float *T, float *P, float *E, uint8_t *out, size_t row_bytes, double *loss,
                                 lb_error *err);
/* One sweep of GPTQ's coordinate descent over the rows (algo/gptq.c's cd_sweep and, with scales, cd_params, row by
 * row in their order; a k-quant type): for each row r with active[r], its blocks out + r row_bytes, its
 * dequantized values Q + r n and its products G + r n = H (w - q) are stepped and active[r] cleared when
 * nothing moved. H (n, n) F32 as the CPU's Hf; Ht its diagonal run x run blocks transposed (scales only). */
typedef struct lb_cd_rows {
    lb_type type;
    int64_t be;   /* block elements (256) */
    int run;      /* lb_grid_run(type) */
    size_t bb, row_bytes;
    int64_t rows, n;
    bool scales;
    const float *H, *Ht;
    uint8_t *out;
    float *Q, *G;
    bool *active;
} lb_cd_rows;
/* The coordinate descent on the device: `sweeps` sweeps as algo/gptq.c runs them (each: stop when no row is
 * active, G = H (W - Q) for all rows through the same GEMM as lb_cuda_gptq_h_times_e, then one sweep of the
 * active rows, a warp per row), then G for all rows. W, Q (rows, n), out (rows, row_bytes) and G (rows, n) on
 * the host; Q, out and G are written back. H from begin's Hf, Ht (n / run, run, run) from the host. */
lb_status lb_cuda_gptq_cd(lb_cuda_gptq *g, lb_type t, const float *W, float *Q, uint8_t *out, size_t row_bytes, float *G, int64_t rows,
                          int64_t n, int sweeps, bool scales, const float *Ht, lb_error *err);
/* The host copy of one sweep of the rows (the same C++ as the device's, one lane per row). LB_ERR_DEVICE in
 * a build without CUDA. */
lb_status lb_cuda_gptq_cd_rows_host(const lb_cd_rows *a, lb_error *err);
/* The reference target on the device (lb_gptq_ops' ref_factor / ref_apply): the factor of H + lam I as
 * lb_cuda_gptq_inv_upper computes it, H uploaded once (upload) and kept for retries with another lam, U kept
 * on the device in F32; then W (rows, n, host) = (W DC + lam W) U^T U by three GEMMs, (D C)^T made on the device
 * from C (n, n, double) and s (n or NULL) as lb_gptq_ref_dct makes it, once (upload). Within the reservation (rows, n). */
lb_status lb_cuda_gptq_ref_factor(lb_cuda_gptq *g, const double *H, int64_t n, double lam, bool upload, bool *ok, lb_error *err);
lb_status lb_cuda_gptq_ref_apply(lb_cuda_gptq *g, const double *C, const float *s, int64_t n, double lam, float *W, int64_t rows,
                                 bool upload, lb_error *err);
/* AWQ on the device for k-quant types (d a multiple of 256; kq_encode.cu): lb_awq_clip's contract (the CPU's
 * clamps and choices: the same float and double operations per block), and lb_awq_search's loss for each of
 * n_cand candidate scale vectors cands (n_cand, d) over n_mat matrices w[k] (rows[k], d) of types[k]: e = w -
 * Q(w s) / s by ggml's reference encoder as on the CPU, the loss sum_k tr(E H E^T) from an F32 GEMM with H as
 * F32 and sums in double (cuBLAS's order: near-ties may pick another candidate than the CPU); the first
 * candidate with the smallest loss in *best and its loss in *best_loss. Host pointers; device buffers per call. */
lb_status lb_cuda_awq_clip(lb_cuda_gptq *g, float *w, int64_t rows, int64_t d, const double *H, lb_type t, lb_encoder enc,
                           const float *imatrix, uint8_t *choice, lb_error *err);
lb_status lb_cuda_awq_search(lb_cuda_gptq *g, int n_mat, const float *const *w, const int64_t *rows, const lb_type *types, int64_t d,
                             const double *H, const float *cands, int n_cand, int *best, double *best_loss, lb_error *err);
/* The host copy of the clip search (kq_encode.cu's C++ on the CPU; no GPU needed). LB_ERR_DEVICE without CUDA. */
lb_status lb_cuda_awq_clip_host(float *w, int64_t rows, int64_t d, const double *H, lb_type t, lb_encoder enc, const float *imatrix,
                                uint8_t *choice, lb_error *err);
/* Peak GPU memory in use so far by the process on the device, in bytes. */
size_t lb_cuda_gptq_peak_bytes(const lb_cuda_gptq *g);

#ifdef __cplusplus
}
#endif

#endif
