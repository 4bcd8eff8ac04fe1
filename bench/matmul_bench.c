/*
 * matmul_bench.c - multiply-adds per second of lb_matmul for one weight type and shape (the kernel alone,
 * without the forward pass): out (T, N) = x (T, K) . W (N, K)^T, W quantized from uniform random values by
 * the type's reference quantizer. Prints the best of REPS runs. LB_FORCE_REF=1 / LB_KERNELS=avx2 pick the
 * kernels as everywhere.
 * usage: matmul_bench TYPE N K T [THREADS [REPS]]      e.g. matmul_bench q4_K 2048 2048 512 1
 */
#include "lowbit.h"
#include "quant/matmul.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s TYPE N K T [THREADS [REPS]]\n", argv[0]);
        return 2;
    }
    int type = lb_type_from_name(argv[1]);
    int64_t N = atoll(argv[2]), K = atoll(argv[3]), T = atoll(argv[4]);
    int threads = argc > 5 ? atoi(argv[5]) : 1, reps = argc > 6 ? atoi(argv[6]) : 5;
    const lb_type_traits *tt = type < 0 ? NULL : lb_type_traits_get((lb_type)type);
    if (!tt || N < 1 || K < 1 || T < 1 || K % tt->block_elems || threads < 1 || reps < 1) {
        fprintf(stderr, "bad arguments (type %s, K a multiple of its block)\n", argv[1]);
        return 2;
    }
    float *wf = malloc((size_t)(N * K) * sizeof *wf), *x = malloc((size_t)(T * K) * sizeof *x);
    float *out = malloc((size_t)(T * N) * sizeof *out);
    void *wq = malloc(lb_type_row_size((lb_type)type, K) * (size_t)N);
    float *scr = malloc(lb_matmul_scratch_floats(K, T, threads) * sizeof(float));
    uint64_t s = 1;
    for (int64_t i = 0; i < N * K; i++) wf[i] = (float)((s = s * 6364136223846793005ULL + 1) >> 40) / 16777216.0f - 0.5f;
    for (int64_t i = 0; i < T * K; i++) x[i] = (float)((s = s * 6364136223846793005ULL + 1) >> 40) / 16777216.0f - 0.5f;
    if (tt->is_quant) tt->quantize_ref(wf, wq, N, K, NULL);
    else tt->from_float_ref(wf, wq, N * K);
    lb_weight w = {(lb_type)type, wq, N, K};
    lb_pool *pool = lb_pool_new(threads);
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now();
        lb_matmul(pool, scr, x, T, &w, out, N);
        double dt = now() - t0;
        if (r > 0 && dt < best) best = dt; /* the first run warms up */
    }
    printf("%s %s N=%lld K=%lld T=%lld threads=%d: %.3f ms, %.1f GMAC/s\n", lb_matmul_impl(), tt->name, (long long)N,
           (long long)K, (long long)T, threads, best * 1e3, (double)N * (double)K * (double)T / best * 1e-9);
    lb_pool_free(pool);
    free(wf), free(x), free(out), free(wq), free(scr);
    return 0;
}
