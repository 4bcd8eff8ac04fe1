/*
 * comm.cu - NCCL collectives between local GPUs (comm.h), NCCL opened with dlopen as cuBLAS and cuSOLVER are.
 */
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "comm.h"
#include "cuda.h"
}

#ifdef LB_HAVE_NCCL
#include <nccl.h>

typedef ncclResult_t (*nc_init_all_fn)(ncclComm_t *, int, const int *);
typedef ncclResult_t (*nc_destroy_fn)(ncclComm_t);
typedef ncclResult_t (*nc_allreduce_fn)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
typedef ncclResult_t (*nc_group_fn)(void);
typedef const char *(*nc_errstr_fn)(ncclResult_t);
typedef ncclResult_t (*nc_version_fn)(int *);

static struct {
    int tried, version;
    char why[240];
    nc_init_all_fn init_all;
    nc_destroy_fn destroy;
    nc_allreduce_fn allreduce;
    nc_group_fn group_start, group_end;
    nc_errstr_fn errstr;
} nc;

static lb_status nc_load(lb_error *err) {
    if (!nc.tried) {
        nc.tried = 1;
        const char *env = getenv("LB_NCCL_LIB");
        const char *names[] = {env, "libnccl.so.2", "libnccl.so", "/usr/local/cuda/lib64/libnccl.so.2"};
        void *h = NULL;
        for (size_t i = 0; !h && i < sizeof names / sizeof names[0]; i++)
            if (names[i] && names[i][0]) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            snprintf(nc.why, sizeof nc.why, "cannot load NCCL (libnccl.so.2; LB_NCCL_LIB names another): %s", dlerror());
        } else {
            nc.init_all = (nc_init_all_fn)dlsym(h, "ncclCommInitAll");
            nc.destroy = (nc_destroy_fn)dlsym(h, "ncclCommDestroy");
            nc.allreduce = (nc_allreduce_fn)dlsym(h, "ncclAllReduce");
            nc.group_start = (nc_group_fn)dlsym(h, "ncclGroupStart");
            nc.group_end = (nc_group_fn)dlsym(h, "ncclGroupEnd");
            nc.errstr = (nc_errstr_fn)dlsym(h, "ncclGetErrorString");
            nc_version_fn ver = (nc_version_fn)dlsym(h, "ncclGetVersion");
            if (!nc.init_all || !nc.destroy || !nc.allreduce || !nc.group_start || !nc.group_end || !nc.errstr || !ver)
                snprintf(nc.why, sizeof nc.why, "libnccl lacks ncclCommInitAll, ncclAllReduce or the group calls");
            else if (ver(&nc.version) != ncclSuccess)
                nc.version = 0;
        }
    }
    if (nc.why[0]) return lb_err_set(err, LB_ERR_DEVICE, "%s", nc.why);
    return LB_OK;
}

struct lb_cuda_comm {
    int n;
    int dev[LB_MAX_RANKS];
    ncclComm_t comm[LB_MAX_RANKS];
    cudaStream_t st[LB_MAX_RANKS];
};

#define NCK(call, what)                                                                                             \
    do {                                                                                                            \
        ncclResult_t r_ = (call);                                                                                   \
        if (r_ != ncclSuccess) return lb_err_set(err, LB_ERR_DEVICE, "NCCL failed %s: %s", what, nc.errstr(r_));    \
    } while (0)

extern "C" lb_status lb_cuda_comm_new(const int *devices, int n, lb_cuda_comm **out, lb_error *err) {
    *out = NULL;
    if (n < 1 || n > LB_MAX_RANKS) return lb_err_set(err, LB_ERR_ARG, "NCCL: %d devices (1 to %d)", n, LB_MAX_RANKS);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++)
            if (devices[j] == devices[i]) return lb_err_set(err, LB_ERR_ARG, "NCCL: device %d named twice", devices[i]);
        lb_status s = lb_cuda_device_check(devices[i], err);
        if (s != LB_OK) return s;
    }
    lb_status s = nc_load(err);
    if (s != LB_OK) return s;
    setenv("NCCL_NVLS_ENABLE", "0", 0); /* NVLink multicast stays off unless the caller's environment says otherwise */
    lb_cuda_comm *c = (lb_cuda_comm *)calloc(1, sizeof *c);
    if (!c) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    c->n = n;
    memcpy(c->dev, devices, (size_t)n * sizeof *devices);
    ncclResult_t r = nc.init_all(c->comm, n, c->dev);
    if (r != ncclSuccess) {
        free(c);
        return lb_err_set(err, LB_ERR_DEVICE, "NCCL failed making a communicator over %d devices: %s", n, nc.errstr(r));
    }
    for (int i = 0; i < n; i++) {
        cudaError_t e = cudaSetDevice(c->dev[i]);
        if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->st[i], cudaStreamNonBlocking);
        if (e != cudaSuccess) {
            cudaGetLastError();
            lb_cuda_comm_free(c);
            return lb_err_set(err, LB_ERR_DEVICE, "CUDA error making a stream on device %d: %s", devices[i], cudaGetErrorString(e));
        }
    }
    *out = c;
    return LB_OK;
}

extern "C" void lb_cuda_comm_free(lb_cuda_comm *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        cudaSetDevice(c->dev[i]);
        if (c->st[i]) cudaStreamSynchronize(c->st[i]), cudaStreamDestroy(c->st[i]);
        if (c->comm[i]) nc.destroy(c->comm[i]);
    }
    cudaGetLastError();
    free(c);
}

extern "C" int lb_cuda_comm_size(const lb_cuda_comm *c) { return c ? c->n : 0; }
extern "C" int lb_cuda_comm_nccl_version(void) { return nc.version; }

extern "C" lb_status lb_cuda_comm_allreduce_f64(lb_cuda_comm *c, double *const *buf, size_t n, lb_error *err) {
    if (n == 0) return LB_OK;
    NCK(nc.group_start(), "starting a group");
    for (int i = 0; i < c->n; i++) {
        ncclResult_t r = nc.allreduce(buf[i], buf[i], n, ncclDouble, ncclSum, c->comm[i], c->st[i]);
        if (r != ncclSuccess) {
            nc.group_end();
            return lb_err_set(err, LB_ERR_DEVICE, "NCCL failed in an all-reduce: %s", nc.errstr(r));
        }
    }
    NCK(nc.group_end(), "ending a group");
    for (int i = 0; i < c->n; i++) {
        cudaError_t e = cudaSetDevice(c->dev[i]);
        if (e == cudaSuccess) e = cudaStreamSynchronize(c->st[i]);
        if (e != cudaSuccess) {
            cudaGetLastError();
            return lb_err_set(err, LB_ERR_DEVICE, "CUDA error in an all-reduce on device %d: %s", c->dev[i], cudaGetErrorString(e));
        }
    }
    return LB_OK;
}

extern "C" lb_status lb_cuda_comm_allreduce_host_f64(lb_cuda_comm *c, double *const *host, size_t n, lb_error *err) {
    double *d[LB_MAX_RANKS] = {NULL};
    lb_status s = LB_OK;
    for (int i = 0; s == LB_OK && i < c->n; i++) {
        cudaError_t e = cudaSetDevice(c->dev[i]);
        if (e == cudaSuccess) e = cudaMalloc((void **)&d[i], n ? n * sizeof(double) : 16);
        if (e == cudaSuccess) e = cudaMemcpy(d[i], host[i], n * sizeof(double), cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            cudaGetLastError();
            s = lb_err_set(err, LB_ERR_DEVICE, "CUDA error preparing an all-reduce on device %d: %s", c->dev[i], cudaGetErrorString(e));
        }
    }
    if (s == LB_OK) s = lb_cuda_comm_allreduce_f64(c, d, n, err);
    for (int i = 0; s == LB_OK && i < c->n; i++) {
        cudaError_t e = cudaSetDevice(c->dev[i]);
        if (e == cudaSuccess) e = cudaMemcpy(host[i], d[i], n * sizeof(double), cudaMemcpyDeviceToHost);
        if (e != cudaSuccess) {
            cudaGetLastError();
            s = lb_err_set(err, LB_ERR_DEVICE, "CUDA error reading an all-reduce on device %d: %s", c->dev[i], cudaGetErrorString(e));
        }
    }
    for (int i = 0; i < c->n; i++)
        if (d[i]) cudaSetDevice(c->dev[i]), cudaFree(d[i]);
    return s;
}

#else /* a build without NCCL's header */

static lb_status no_nccl(lb_error *err) {
    return lb_err_set(err, LB_ERR_DEVICE, "this lowbit was built without NCCL (nccl.h not found; -DLOWBIT_NCCL=ON needs it)");
}
extern "C" lb_status lb_cuda_comm_new(const int *devices, int n, lb_cuda_comm **out, lb_error *err) {
    (void)devices, (void)n;
    *out = NULL;
    return no_nccl(err);
}
extern "C" void lb_cuda_comm_free(lb_cuda_comm *c) { (void)c; }
extern "C" int lb_cuda_comm_size(const lb_cuda_comm *c) { (void)c; return 0; }
extern "C" int lb_cuda_comm_nccl_version(void) { return 0; }
extern "C" lb_status lb_cuda_comm_allreduce_f64(lb_cuda_comm *c, double *const *buf, size_t n, lb_error *err) {
    (void)c, (void)buf, (void)n;
    return no_nccl(err);
}
extern "C" lb_status lb_cuda_comm_allreduce_host_f64(lb_cuda_comm *c, double *const *host, size_t n, lb_error *err) {
    (void)c, (void)host, (void)n;
    return no_nccl(err);
}
#endif

extern "C" int lb_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}
