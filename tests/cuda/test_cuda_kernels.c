/*
 * test_cuda_kernels.c - every CUDA weight kernel against the CPU reference kernels (src/quant/ref), for
 * every weight type of the table, on odd shapes (rows not a multiple of the kernels' row blocks, 2051 and 4099 rows
 * for the two- and four-rows-per-block variants, row lengths whose chunk count is not a multiple of the 32 chunks a
 * warp takes per step). Needs a GPU.
 *
 * - dequantization to F32: bit-identical to the reference dequantization (the decoders repeat its
 *   arithmetic with separately rounded operations);
 * - fused dequantize-multiply (1..16 tokens), float weights (activations rounded to F16): |gpu - ref| <= K 2^-23
 *   sum_k |x_k w_k| (the worst case of any order of K float32 additions, against the float64 reference) +
 *   2^-11 sum |x_k w_k| (x_k rounded to F16, relative error 2^-11) + 2^-25 K max|w| (x_k below F16's normal
 *   range) + 2^-60;
 * - block types: activations are rounded to 8 bits per weight block (32 or 256 elements) as the CPU rounds
 *   them (lb_act_quantize; the kernels make the same IEEE operations, so codes and scales are identical), on
 *   every path, and the reference multiplies those rounded activations;
 * - fused, block types with 8-bit activations (lb_cuda_mv_q8): only float rounding remains: K 2^-23 sum_k |x8_k w_k| + 2^-60. The integer sums are exact; each
 *   32-element chunk adds a few rounded scale products, and the reference's dequantized w_k carry one
 *   rounding (2^-24 |w_k|) the kernels do not make: all inside K 2^-23. A wrong code, scale or activation
 *   block is off by about sum |x w| / sqrt(K), far outside it;
 * - F16 tiles through cuBLAS (40 tokens), and the fused F16 kernel of block types without 8-bit products (the
 *   rounded activations d q in F16): the same with 2^-10 for rounding both operands to F16 and 2^-24
 *   sum |x_k| max|w| for weights F16 cannot hold as normals.
 * - the fused kernels' accumulating write (T <= 16): base + the product, bit for bit (one float addition);
 * - the producers that round for the next product in the same launch (check_fused below).
 * Outputs are poisoned with NaN before each run, so an unwritten element fails.
 */
#include "cuda/cuda.h"
#include "quant/cpu/cpu.h"
#include "quant/quant.h"
#include "test.h"

#include <math.h>


/* a random (N, K) matrix in type t: rows of N(0,1) values with a few outliers, encoded by ggml's reference */
static void *make_weights(lb_type t, int64_t N, int64_t K, float *f32) {
    const lb_type_traits *tt = lb_type_traits_get(t);
    size_t rb = lb_type_row_size(t, K);
    uint8_t *w = malloc(rb * (size_t)N);
    for (int64_t i = 0; i < N * K; i++) f32[i] = test_gauss() * (test_uni() < 0.01 ? 8.0f : 1.0f);
    for (int64_t r = 0; r < N; r++) tt->from_float_ref(f32 + r * K, w + rb * (size_t)r, K);
    return w;
}

static void check_type(lb_type t, int64_t N, int64_t K) {
    const char *name = lb_type_name(t);
    float *src = malloc((size_t)(N * K) * sizeof(float)), *deq = malloc((size_t)(N * K) * sizeof(float));
    float *gpu = malloc((size_t)(N * K) * sizeof(float));
    void *w = make_weights(t, N, K, src);
    lb_weight lw = {t, w, N, K};
    lb_error e;
    for (int64_t r = 0; r < N; r++) lb_weight_row_f32(&lw, r, deq + r * K);

    /* dequantization: exact */
    lb_status s = lb_cuda_test_matmul(0, t, w, N, K, NULL, 0, gpu, 2, &e);
    REQUIRE(s == LB_OK, "%s: %s", name, e.msg);
    int64_t bad = 0;
    for (int64_t i = 0; i < N * K; i++) bad += memcmp(&gpu[i], &deq[i], sizeof(float)) != 0;
    CHECK(bad == 0, "%s (%lld x %lld): %lld dequantized values differ from the reference", name, (long long)N, (long long)K,
          (long long)bad);

    const int64_t Ts[] = {1, 2, 3, 5, 8, 13, 16, 40};
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        const int64_t T = Ts[ti];
        const int path = T <= 16 ? 0 : 1;
        float *x = malloc((size_t)(T * K) * sizeof(float)), *ref = malloc((size_t)(T * N) * sizeof(float));
        float *out = malloc((size_t)(T * N) * sizeof(float));
        for (int64_t i = 0; i < T * K; i++) x[i] = test_gauss();
        const bool q8 = path == 0 && lb_cuda_mv_q8(t);
        const lb_type_traits *tt = lb_type_traits_get(t);
        float *xr = malloc((size_t)(T * K) * sizeof(float)); /* the activations as the kernel multiplies them */
        if (tt->is_quant) { /* the CPU's 8-bit rounding per weight block, on every path */
            const int64_t be = tt->block_elems;
            void *abuf = malloc(lb_act_bytes(K, be));
            const lb_act a = lb_act_at(abuf, K, be);
            for (int64_t tk = 0; tk < T; tk++) {
                lb_act_quantize(x + tk * K, K, be, &a);
                for (int64_t k = 0; k < K; k++) xr[tk * K + k] = a.d[k / be] * (float)a.q[k];
            }
            free(abuf);
        } else {
            memcpy(xr, x, (size_t)(T * K) * sizeof(float));
        }
        for (int64_t tk = 0; tk < T; tk++) /* the float64 reference product (lb_matmul_ref's, on the rows above) */
            for (int64_t n = 0; n < N; n++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++) acc += (double)xr[tk * K + k] * deq[n * K + k];
                ref[tk * N + n] = (float)acc;
            }
        s = lb_cuda_test_matmul(0, t, w, N, K, x, T, out, path, &e);
        REQUIRE(s == LB_OK, "%s T=%lld: %s", name, (long long)T, e.msg);
        double worst = 0;
        int64_t fails = 0;
        for (int64_t tk = 0; tk < T; tk++)
            for (int64_t n = 0; n < N; n++) {
                double mag = 0, xs = 0, wmax = 0;
                for (int64_t k = 0; k < K; k++) {
                    mag += fabs((double)xr[tk * K + k] * deq[n * K + k]);
                    xs += fabs(x[tk * K + k]);
                    wmax = fmax(wmax, fabs(deq[n * K + k]));
                }
                double tol = (double)K * ldexp(1, -23) * mag + ldexp(1, -60);
                if (!q8) tol += ldexp(1, -11) * mag + ldexp(1, -25) * (double)K * wmax;
                if (path == 1) tol += ldexp(1, -11) * mag + ldexp(1, -24) * xs * wmax;
                double d = fabs((double)out[tk * N + n] - ref[tk * N + n]);
                if (!(d <= tol)) fails++;
                if (mag > 0 && d / mag > worst) worst = d / mag;
            }
        CHECK(fails == 0, "%s (%lld x %lld) T=%lld path %d: %lld outputs outside the bound (worst |d|/sum|xw| %.3g)", name,
              (long long)N, (long long)K, (long long)T, path, (long long)fails, worst);
        if (path == 0) { /* the accumulating write (o and down products into the residual stream): base + the same product */
            float *base = malloc((size_t)(T * N) * sizeof(float)), *acc = malloc((size_t)(T * N) * sizeof(float));
            for (int64_t i = 0; i < T * N; i++) base[i] = test_gauss();
            s = lb_cuda_test_matmul_add(0, t, w, N, K, x, T, base, acc, &e);
            CHECK(s == LB_OK, "%s T=%lld add: %s", name, (long long)T, e.msg);
            int64_t nb = 0;
            for (int64_t i = 0; s == LB_OK && i < T * N; i++) {
                const float want = base[i] + out[i];
                nb += memcmp(&acc[i], &want, sizeof want) != 0;
            }
            CHECK(nb == 0, "%s (%lld x %lld) T=%lld: %lld accumulated outputs differ from base + product", name, (long long)N,
                  (long long)K, (long long)T, (long long)nb);
            free(base);
            free(acc);
        }
        if (T == 1 || T == 16 || T == 40)
            printf("%-7s %4lld x %5lld T=%2lld %-6s worst |gpu-ref|/sum|xw| = %.2e\n", name, (long long)N, (long long)K,
                   (long long)T, path ? "cublas" : q8 ? "fused8" : "fused", worst);
        free(xr);
        free(x);
        free(ref);
        free(out);
    }
    free(src);
    free(deq);
    free(gpu);
    free(w);
}

/* A producer that rounds for the next product in the same launch (op 0 RMSNorm, 1 SwiGLU) against the separate kernels:
 * the 8-bit activations it writes are cu_act_prepare's of its own result, byte for byte; SwiGLU's result is
 * cu_silu_mul's bit for bit; RMSNorm's within 2^-21 relative of cu_rmsnorm's (its sum of squares is taken in another
 * fixed order: the double sums differ in their last bits, 1 / rms rounded to float then by at most an ulp, and the
 * two float products add an ulp each). */
static void check_fused(lb_type t, int op, int64_t T, int64_t n) {
    const size_t fn = (size_t)(T * n), ab = fn + fn / 32 * 8;
    float *x = malloc(fn * sizeof(float)), *y = malloc(fn * sizeof(float)), *w = malloc((size_t)n * sizeof(float));
    float *o1 = malloc(fn * sizeof(float)), *o2 = malloc(fn * sizeof(float));
    uint8_t *a1 = malloc(ab), *a2 = malloc(ab);
    for (size_t i = 0; i < fn; i++) {
        x[i] = test_gauss() * (test_uni() < 0.01 ? 20.0f : 1.0f);
        y[i] = test_gauss();
    }
    for (int64_t i = 0; i < n; i++) w[i] = 1.0f + 0.1f * test_gauss();
    for (int64_t i = 0; i < (n < 64 ? n : 64); i++) x[i] = 0.0f; /* an all-zero block: scale 0 */
    lb_error e;
    lb_status s = lb_cuda_test_fused_act(0, t, op, x, y, w, T, n, 1e-5f, o1, o2, a1, a2, &e);
    CHECK(s == LB_OK, "fused %s op %d: %s", lb_type_name(t), op, e.msg);
    if (s == LB_OK) {
        int64_t bad = 0;
        for (size_t i = 0; i < fn; i++) {
            if (op == 1) bad += memcmp(&o1[i], &o2[i], sizeof(float)) != 0;
            else bad += !(fabs((double)o1[i] - o2[i]) <= ldexp(1, -21) * fabs((double)o2[i]));
        }
        CHECK(bad == 0, "fused %s op %d, %lld x %lld: %lld results differ from the separate kernel's", lb_type_name(t), op,
              (long long)T, (long long)n, (long long)bad);
        CHECK(!memcmp(a1, a2, ab), "fused %s op %d, %lld x %lld: the rounded activations differ from cu_act_prepare's",
              lb_type_name(t), op, (long long)T, (long long)n);
    }
    free(x);
    free(y);
    free(w);
    free(o1);
    free(o2);
    free(a1);
    free(a2);
}

int main(void) {
    test_seed(0x9e3779b97f4a7c15ULL);
    lb_error e;
    /* errors: a device index that does not exist is one clear line */
    float one = 1.0f;
    uint16_t w16[32] = {0};
    lb_status s = lb_cuda_test_matmul(4096, LB_TYPE_F16, w16, 1, 32, &one, 0, &one, 0, &e);
    CHECK(s == LB_ERR_DEVICE && strstr(e.msg, "does not exist"), "device 4096: status %d, '%s'", (int)s, e.msg);

    for (int t = 0; t < LB_TYPE_COUNT; t++) {
        const lb_type_traits *tt = lb_type_traits_get((lb_type)t);
        if (!tt->weight_type) continue;
        /* odd rows; 11 and 45 chunks of 32 (one partial and one full + partial warp step) */
        const int64_t K1 = tt->block_elems == 256 ? 256 * 5 : 32 * 11, K2 = tt->block_elems == 256 ? 256 * 9 : 32 * 45;
        check_type((lb_type)t, 37, K1);
        check_type((lb_type)t, 5, K2);
        check_type((lb_type)t, 2051, tt->block_elems == 256 ? 256 : 64); /* two rows per block (>= 2048 rows) */
        check_type((lb_type)t, 4099, tt->block_elems == 256 ? 256 : 32); /* four rows per block at one token */
        /* 8-bit path: rows 16-byte aligned (cp.async copies), a partial last step (40 chunks) and four full
         * steps (the copy pipeline wraps); two and four rows per warp (>= 8192 rows) */
        check_type((lb_type)t, 67, 1280);
        check_type((lb_type)t, 131, 4096);
        check_type((lb_type)t, 8195, tt->block_elems == 256 ? 256 : 64);
        /* 5..16 tokens from 8,192 rows for the types whose step groups are k_mvm's default there (two blocks a
         * multiprocessor): five steps, split over five blocks of a cluster where the device holds 165 blocks or more
         * (its 33 row blocks of 256 rows five times); the others run it in the kernels_p8 variant
         * (LB_CUDA_MVM_P=8, bench/cuda_tests.sh) on the shapes above */
        if (t == LB_TYPE_Q4_0 || t == LB_TYPE_Q4_K || t == LB_TYPE_Q5_K) check_type((lb_type)t, 8195, 1280);
    }
    /* the producers that round for the next product: 32- and 256-element blocks, 1-16 rows, a partial last block of
     * four warps (1,280 = 1,024 + 256), rows of 96 and 4,128 (partial warps of 32-element blocks) */
    const lb_type fused_types[] = {LB_TYPE_Q4_0, LB_TYPE_Q8_0, LB_TYPE_Q4_K, LB_TYPE_Q6_K};
    for (int i = 0; i < 4; i++) {
        if (!lb_cuda_mv_q8(fused_types[i])) continue;
        const bool b32 = lb_type_traits_get(fused_types[i])->block_elems == 32;
        for (int op = 0; op < 2; op++) {
            check_fused(fused_types[i], op, 1, 4096);
            check_fused(fused_types[i], op, 3, 768);
            check_fused(fused_types[i], op, 16, 1280);
            check_fused(fused_types[i], op, 2, 14336);
            if (b32) {
                check_fused(fused_types[i], op, 1, 96);
                check_fused(fused_types[i], op, 5, 4128);
            }
        }
    }
    TEST_DONE();
}
