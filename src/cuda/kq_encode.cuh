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

#endif
