/*
 * blas.cuh - the cuBLAS entry points the CUDA code uses, opened with dlopen at first use (backend.cu), so
 * that a CUDA build runs on machines without cuBLAS or a GPU.
 */
#ifndef LB_CUDA_BLAS_CUH
#define LB_CUDA_BLAS_CUH

#include <cublas_v2.h>

#include "lowbit.h"

typedef cublasStatus_t (*cu_blas_create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*cu_blas_destroy_fn)(cublasHandle_t);
typedef cublasStatus_t (*cu_blas_stream_fn)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*cu_blas_gemm_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                                          const void *, cudaDataType, int, const void *, cudaDataType, int, const void *,
                                          void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

typedef struct cu_blas_api {
    cu_blas_create_fn create;
    cu_blas_destroy_fn destroy;
    cu_blas_stream_fn set_stream;
    cu_blas_gemm_fn gemm; /* cublasGemmEx */
} cu_blas_api;

/* Filled by cu_blas_load; valid once it returned LB_OK. */
extern cu_blas_api cu_blas;

/* Open libcublas (once per process); LB_ERR_DEVICE with the reason when it cannot be loaded. */
lb_status cu_blas_load(lb_error *err);

#endif
