/*
 * cuda_kernels.cu - the weight kernels alone against the two ceilings measured in the same run:
 *   - HBM read bandwidth: a kernel summing 4 GiB (16-byte loads), and a 4 GiB device-to-device copy;
 *   - cuBLAS BF16 GemmEx (F32 accumulation) on the same shape and batch, weights rotated the same way.
 * For each type and shape (N, K) and batch T (1, 8, 16): lowbit's fused dequantize-multiply kernel over a
 * set of weight copies larger than 1 GiB (each call reads a copy not in the 60 MiB L2), timed with events
 * over 200 calls, median of 5; reported as weight bytes per second and as the ratio to cuBLAS BF16's time.
 * The activations' preparation (cu_act_prepare: 8 bits per 32 elements for the block types, F16 for float
 * weights; once per product in the forward pass) is timed apart, column "prep us", and not in the ratio.
 * Weights are random bytes with every scale field set to a small normal F16 (speed does not depend on
 * the values).
 *
 * usage: cuda_kernels [--quick] [--types LIST] [--batches LIST] [--shapes N] [--shape I]
 *   --quick: the 8B shape's three FFN/attention shapes plus its k/v shape, instead of the output head;
 *   --types q4_k,q8_0: only these types; --batches 1,8: only these batches; --shapes 1: only the first N shapes;
 *   --shape 2: only the second (for ncu: the one product's launches)
 *   (for profiling one kernel under ncu).
 */
#include "../src/cuda/kernels.cuh"

#include <algorithm>
#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <vector>

#define CK(x)                                                                                                       \
    do {                                                                                                            \
        cudaError_t e_ = (x);                                                                                       \
        if (e_ != cudaSuccess) {                                                                                    \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));                             \
            exit(1);                                                                                                \
        }                                                                                                           \
    } while (0)

__global__ void k_fill(uint32_t *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;
        x ^= x >> 16;
        x *= 0x7feb352du;
        x ^= x >> 15;
        x *= 0x846ca68bu;
        x ^= x >> 16;
        p[i] = x;
    }
}

/* scale fields (F16 at the given offsets of each block) set to 2^-8 times a factor in [1, 2) */
__global__ void k_fix_scales(uint8_t *p, size_t n_blocks, int bb, int o1, int o2) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_blocks; i += (size_t)gridDim.x * blockDim.x) {
        uint8_t *b = p + i * bb;
        b[o1 + 1] = (uint8_t)((b[o1 + 1] & 0x03) | 0x1C);
        if (o2 >= 0) b[o2 + 1] = (uint8_t)((b[o2 + 1] & 0x03) | 0x1C);
    }
}
/* F16 / BF16 elements: keep sign and mantissa, exponent fixed to a normal range */
__global__ void k_fix_halves(uint16_t *p, size_t n, int bf) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = bf ? (uint16_t)((p[i] & 0x807F) | 0x3C00) : (uint16_t)((p[i] & 0x83FF) | 0x2C00);
}

__global__ void k_read(const uint4 *p, size_t n, unsigned long long *sink) {
    uint32_t acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = __ldcs(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) atomicAdd(sink, 1ull);
}

typedef struct tinfo { lb_type t; const char *name; int be, bb, o1, o2; } tinfo;
static const tinfo TYPES[] = {
    {LB_TYPE_Q4_K, "q4_k", 256, 144, 0, 2},   {LB_TYPE_Q4_0, "q4_0", 32, 18, 0, -1},  {LB_TYPE_Q8_0, "q8_0", 32, 34, 0, -1},
    {LB_TYPE_Q6_K, "q6_k", 256, 210, 208, -1}, {LB_TYPE_F16, "f16", 1, 2, -1, -1},     {LB_TYPE_Q5_K, "q5_k", 256, 176, 0, 2},
    {LB_TYPE_Q3_K, "q3_k", 256, 110, 108, -1}, {LB_TYPE_Q2_K, "q2_k", 256, 84, 80, 82}, {LB_TYPE_IQ4_XS, "iq4_xs", 256, 136, 0, -1},
    {LB_TYPE_Q5_0, "q5_0", 32, 22, 0, -1},     {LB_TYPE_Q4_1, "q4_1", 32, 20, 0, 2},   {LB_TYPE_IQ4_NL, "iq4_nl", 32, 18, 0, -1},
    {LB_TYPE_BF16, "bf16", 1, 2, -1, -1},
};

static float time_loop(int n_calls, void (*fn)(int, void *), void *arg) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> v;
    fn(0, arg); /* warm-up */
    for (int r = 0; r < 5; r++) {
        CK(cudaEventRecord(a));
        for (int i = 0; i < n_calls; i++) fn(i, arg);
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        v.push_back(ms / n_calls);
    }
    CK(cudaGetLastError());
    std::sort(v.begin(), v.end());
    return v[2];
}

typedef struct mv_arg { dweight *w; int copies; const void *x; int T; float *out; } mv_arg;
static void run_mv(int i, void *p) {
    mv_arg *a = (mv_arg *)p;
    cu_matvec(&a->w[i % a->copies], a->x, a->T, a->out, a->w[0].rows);
}
typedef struct prep_arg { lb_type t; const float *x; int T, K; void *xa; } prep_arg;
static void run_prep(int, void *p) {
    prep_arg *a = (prep_arg *)p;
    cu_act_prepare(a->t, a->x, a->T, a->K, a->xa);
}
__global__ void k_fill_f32(float *p, size_t n, uint32_t seed) { /* uniform in [-2, 2) */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;
        x ^= x >> 16;
        x *= 0x7feb352du;
        x ^= x >> 15;
        p[i] = (float)(x >> 8) * (4.0f / 16777216.0f) - 2.0f;
    }
}
typedef struct blas_arg { cublasHandle_t h; const __nv_bfloat16 *const *w; int copies; const __nv_bfloat16 *x; float *out; int N, K, T; } blas_arg;
static void run_blas(int i, void *p) {
    blas_arg *a = (blas_arg *)p;
    const float one = 1.f, zero = 0.f;
    cublasGemmEx(a->h, CUBLAS_OP_T, CUBLAS_OP_N, a->N, a->T, a->K, &one, a->w[i % a->copies], CUDA_R_16BF, a->K, a->x,
                 CUDA_R_16BF, a->K, &zero, a->out, CUDA_R_32F, a->N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}
typedef struct rd_arg { const uint4 *p; size_t n; unsigned long long *sink; } rd_arg;
static void run_read(int, void *p) {
    rd_arg *a = (rd_arg *)p;
    k_read<<<132 * 8, 512>>>(a->p, a->n, a->sink);
}

int main(int argc, char **argv) {
    bool quick = false;
    const char *types = NULL, *batches = NULL;
    int max_shapes = 4, only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) batches = argv[++i];
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) max_shapes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) only = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--types q4_k,q8_0,...] [--batches 1,8,16] [--shapes N] [--shape I]\n", argv[0]);
            return 2;
        }
    }
    /* a name in a comma-separated list (NULL: every name) */
    auto listed = [](const char *list, const std::string &name) {
        if (!list) return true;
        const std::string l = std::string(",") + list + ",";
        return l.find("," + name + ",") != std::string::npos;
    };
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device %s, %d SMs, L2 %.0f MiB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1048576.0);
    /* ceilings */
    const size_t big = (size_t)4 << 30;
    uint8_t *buf, *buf2;
    unsigned long long *sink;
    CK(cudaMalloc(&buf, big));
    CK(cudaMalloc(&buf2, big));
    CK(cudaMalloc(&sink, 8));
    k_fill<<<4096, 256>>>((uint32_t *)buf, big / 4, 1);
    rd_arg ra = {(const uint4 *)buf, big / 16, sink};
    const float t_read = time_loop(3, run_read, &ra);
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaMemcpy(buf2, buf, big, cudaMemcpyDeviceToDevice));
    CK(cudaEventRecord(a));
    for (int i = 0; i < 3; i++) CK(cudaMemcpy(buf2, buf, big, cudaMemcpyDeviceToDevice));
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float t_copy;
    CK(cudaEventElapsedTime(&t_copy, a, b));
    t_copy /= 3;
    const double read_bw = big / (t_read * 1e-3), copy_bw = 2.0 * big / (t_copy * 1e-3);
    printf("HBM read (sum of 4 GiB): %.2f TB/s   device-to-device copy (read + write): %.2f TB/s\n", read_bw / 1e12,
           copy_bw / 1e12);
    CK(cudaFree(buf2));

    cublasHandle_t h;
    cublasCreate(&h);
    struct { int N, K; } full[] = {{14336, 4096}, {4096, 14336}, {128256, 4096}, {4096, 4096}},
                         small[] = {{14336, 4096}, {4096, 14336}, {4096, 4096}, {1024, 4096}};
    const int n_shapes = max_shapes < 4 ? (max_shapes < 1 ? 1 : max_shapes) : 4;
    auto *shapes = quick ? small : full;
    const int Ts[] = {1, 8, 16};
    float *out, *xf;
    void *x;
    __nv_bfloat16 *xb;
    CK(cudaMalloc(&x, 16 * 14336 * sizeof(__half)));
    CK(cudaMalloc(&xf, 16 * 14336 * sizeof(float)));
    k_fill_f32<<<64, 256>>>(xf, 16 * 14336, 5);
    CK(cudaMalloc(&xb, 16 * 14336 * sizeof(__nv_bfloat16)));
    CK(cudaMalloc(&out, (size_t)16 * 128256 * sizeof(float)));
    k_fill<<<64, 256>>>((uint32_t *)xb, 8 * 14336, 9);
    k_fix_halves<<<64, 256>>>((uint16_t *)xb, 16 * 14336, 1);
    printf("\n%-7s %6s %6s %3s  %10s %8s %9s  %10s  %-20s  %s\n", "type", "N", "K", "T", "lowbit us", "TB/s", "% of read",
           "cuBLAS us", "cuBLAS bf16 / lowbit", "prep us");
    const bool one = only >= 1 && only <= 4; /* --shape: that shape alone */
    for (int si = one ? only - 1 : 0; si < (one ? only : n_shapes); si++) {
        const int N = shapes[si].N, K = shapes[si].K;
        /* cuBLAS BF16 reference weights */
        const size_t bbytes = (size_t)N * K * 2;
        const int bcopies = (int)std::max<size_t>(2, ((size_t)1 << 30) / bbytes + 1);
        std::vector<__nv_bfloat16 *> bw(bcopies);
        for (int c = 0; c < bcopies; c++) {
            CK(cudaMalloc(&bw[c], bbytes));
            k_fill<<<4096, 256>>>((uint32_t *)bw[c], bbytes / 4, 100 + c);
            k_fix_halves<<<4096, 256>>>((uint16_t *)bw[c], bbytes / 2, 1);
        }
        float t_blas[3] = {0, 0, 0};
        for (int ti = 0; ti < 3; ti++) {
            if (!listed(batches, std::to_string(Ts[ti]))) continue;
            blas_arg ba = {h, bw.data(), bcopies, xb, out, N, K, Ts[ti]};
            t_blas[ti] = time_loop(200, run_blas, &ba);
        }
        for (int c = 0; c < bcopies; c++) CK(cudaFree(bw[c]));
        const int n_types = (int)(sizeof TYPES / sizeof TYPES[0]);
        for (int ty = 0; ty < n_types; ty++) {
            const tinfo *tt = &TYPES[ty];
            if (!listed(types, tt->name)) continue;
            const size_t rb = (size_t)K / tt->be * tt->bb, bytes = rb * N;
            const int copies = (int)std::max<size_t>(2, ((size_t)1 << 30) / bytes + 1);
            std::vector<dweight> w(copies);
            for (int c = 0; c < copies; c++) {
                uint8_t *d;
                CK(cudaMalloc(&d, bytes));
                k_fill<<<4096, 256>>>((uint32_t *)d, bytes / 4, 1000 + c);
                if (tt->be == 1) k_fix_halves<<<4096, 256>>>((uint16_t *)d, bytes / 2, tt->t == LB_TYPE_BF16);
                else k_fix_scales<<<4096, 256>>>(d, bytes / tt->bb, tt->bb, tt->o1, tt->o2);
                w[c] = {tt->t, d, N, K, rb};
            }
            CK(cudaDeviceSynchronize());
            for (int ti = 0; ti < 3; ti++) {
                if (!listed(batches, std::to_string(Ts[ti]))) continue;
                prep_arg pa = {tt->t, xf, Ts[ti], K, x};
                const float tp = time_loop(200, run_prep, &pa); /* leaves x prepared for the weights' type */
                mv_arg ma = {w.data(), copies, x, Ts[ti], out};
                const float t = time_loop(200, run_mv, &ma);
                printf("%-7s %6d %6d %3d  %10.2f %8.2f %8.1f%%  %10.2f  %-20s  %.2f\n", tt->name, N, K, Ts[ti], t * 1e3,
                       bytes / (t * 1e-3) / 1e12, 100.0 * bytes / (t * 1e-3) / read_bw, t_blas[ti] * 1e3,
                       (std::to_string(t_blas[ti] / t).substr(0, 4) + "x").c_str(), tp * 1e3);
            }
            for (int c = 0; c < copies; c++) CK(cudaFree((void *)w[c].data));
        }
    }
    CK(cudaGetLastError());
    return 0;
}
