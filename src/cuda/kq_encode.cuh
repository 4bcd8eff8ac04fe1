/*
 * kq_encode.cuh - the launcher of kq_encode.cu (the k-quant encoders on the device).
 */
#ifndef LB_CUDA_KQ_ENCODE_CUH
#define LB_CUDA_KQ_ENCODE_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "lowbit.h"

/* kq_encode.cu: lowbit's default encoder of a k-quant type t (algo/kquant.c compiled for the device; the
 * CPU's bytes) for nblk 256-element blocks of each of `rows` rows of x (ldx floats apart; imp: nblk * 256
 * importance weights or NULL) into y (rows ldy bytes apart), on stream st; cudaErrorInvalidValue for any
 * other type. cu_kq_block_bytes: the block size of t (0: not a k-quant). */
cudaError_t cu_kq_encode(lb_type t, const float *x, int64_t ldx, int64_t rows, int64_t nblk, const float *imp, uint8_t *y,
                         int64_t ldy, cudaStream_t st);
size_t cu_kq_block_bytes(lb_type t);

/* gptq_sweep.cu: columns [i1, i2) of GPTQ's sweep in the default order for a k-quant type, one thread per
 * row: T (rows, n) the weights, U (n, n) the upper inverse factor, the blocks of out (rows, row_bytes) with
 * this batch's scales in place; writes each element's code, E (rows, lde) the batch's scaled errors, P
 * (rows, n) the values before rounding, and adds each row's GPTQ loss into loss (rows). T's columns after
 * i2 are not touched (the delayed update is the caller's). */
cudaError_t cu_gptq_columns(lb_type type, uint8_t *out, size_t row_bytes, float *T, const float *U, int64_t rows, int64_t n,
                            int64_t i1, int64_t i2, float *E, int64_t lde, float *P, double *loss, cudaStream_t st);

/* AWQ on the device (kq_encode.cu; device pointers, stream st, k-quant type t, d a multiple of 256): the clip
 * search of lb_awq_clip for w (rows, d) with H (d, d) double and the encoder's importance weights im (d or NULL;
 * ref: ggml's reference encoder), the chosen clamps into out (rows, d) and the choices into ch (rows, d / 256;
 * may be NULL); scratch xc (rows, d), q (rows, d / 256 blocks), berr (rows * d / 256). And one candidate of
 * lb_awq_search: e = w - Q(w * s) / s (rows, d) with ggml's reference encoder. */
cudaError_t cu_awq_clip(lb_type t, bool ref, const float *dw, int64_t rows, int64_t d, const double *dH, const float *dim, float *dout,
                        uint8_t *dch, float *dxc, uint8_t *dq, double *dberr, cudaStream_t st);
cudaError_t cu_awq_cand_error(lb_type t, const float *dw, const float *ds, int64_t rows, int64_t d, float *de, cudaStream_t st);

/* gptq_sweep.cu: one sweep of the coordinate descent over a's rows (cuda/gptq.h's lb_cd_rows, device
 * pointers), a warp per row */
struct lb_cd_rows;
cudaError_t cu_gptq_cd(const struct lb_cd_rows *a, cudaStream_t st);

#endif
