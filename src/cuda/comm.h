/*
 * comm.h - collectives between the GPUs of one process through NCCL (cuda/comm.cu; ARCHITECTURE.md "Several
 * GPUs"). libnccl.so.2 is opened with dlopen at the first communicator (LB_NCCL_LIB names another file);
 * without it, without the CUDA build or in a build without NCCL's header (-DLOWBIT_NCCL=OFF) every entry
 * point fails with LB_ERR_DEVICE and one line saying why. A communicator spans a set of local devices, one
 * rank per device in the order given; its calls are made from one host thread for all ranks (NCCL's grouped
 * calls), each rank's work on its own stream.
 */
#ifndef LB_CUDA_COMM_H
#define LB_CUDA_COMM_H

#include "../core/core.h"
#include "cuda.h" /* lb_cuda_device_count */

#ifdef __cplusplus
extern "C" {
#endif

#define LB_MAX_RANKS LB_MAX_DEVICES

typedef struct lb_cuda_comm lb_cuda_comm;

/* A communicator over devices[0..n) (1 <= n <= LB_MAX_RANKS, distinct, each passing lb_cuda_device_check).
 * NCCL_NVLS_ENABLE is set to 0 unless the environment sets it (NVLink multicast stays off). */
lb_status lb_cuda_comm_new(const int *devices, int n, lb_cuda_comm **out, lb_error *err);
void lb_cuda_comm_free(lb_cuda_comm *c);
int lb_cuda_comm_size(const lb_cuda_comm *c);
/* NCCL's version as major * 10000 + minor * 100 + patch (0 before a communicator was made). */
int lb_cuda_comm_nccl_version(void);

/* In place on every rank r: buf[r] (n doubles on rank r's device) = the sum over the ranks of their buf, for
 * n >= 0; returns when every rank's result is complete. The order of the additions is NCCL's (fixed for a
 * given communicator and size: the same bytes run to run). */
lb_status lb_cuda_comm_allreduce_f64(lb_cuda_comm *c, double *const *buf, size_t n, lb_error *err);

/* The same for host arrays: host[r] (n doubles) goes to rank r's device, is all-reduced there and comes back,
 * so every host[r] holds the sum (device buffers made for the call). */
lb_status lb_cuda_comm_allreduce_host_f64(lb_cuda_comm *c, double *const *host, size_t n, lb_error *err);

#ifdef __cplusplus
}
#endif

#endif
