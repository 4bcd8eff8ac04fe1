/*
 * test_exact_device_source.c - an exact context's products on the GPU (cuda/exact.cu) read every block-type weight
 * through quant/cpu/unpack_ref.h compiled once more as C++, and combine the blocks with helpers that exact.cu compiles
 * for the host too. Without a GPU:
 * - the host copy of the unpacking (lb_cuda_unpack_host, one weight block at a time as the kernel calls it) gives
 *   exactly the C reference's unpacked rows (codes, scale and min multipliers, d and dm, compared bit for bit) for
 *   every block type, on rows of random bytes (every code, scale and exponent pattern, NaN and infinite scales
 *   included) and on rows quantized from data;
 * - the host copy of a product (lb_cuda_exact_dot_host: the kernels' per-block terms and float chain, or the float
 *   types' 8 partials and tail) gives the bits of lb_matmul_ref, the CPU's reference product, for every weight type on
 *   encoded rows and several tokens (float types with K = 1004, so that the tail after the partials is used).
 * A translation that C++ reads differently from C, or an order that differs from cpu.h's, shows here; what the device
 * compilation adds is checked on a GPU by tests/cuda/test_cuda_forward.c (exact logits against the CPU's by memcmp).
 */
#include "algo/encoders.h"
#include "cuda/cuda.h"
#include "quant/cpu/cpu.h"
#include "quant/matmul.h"
#include "quant/quant.h"
#include "test.h"
#include "test_rand.h"

#include <stdlib.h>
#include <string.h>

/* whether two unpacked rows of K elements in blocks of be differ anywhere */
static bool row_differs(const lb_qrow *a, const lb_qrow *b, int64_t K, int64_t be) {
    return memcmp(a->q, b->q, (size_t)K) != 0 || memcmp(a->sc, b->sc, (size_t)(K / 16) * 2) != 0 ||
           memcmp(a->mn, b->mn, (size_t)(K / 16) * 2) != 0 || memcmp(a->d, b->d, (size_t)(K / be) * 4) != 0 ||
           memcmp(a->dm, b->dm, (size_t)(K / be) * 4) != 0;
}

static const lb_type block_types[] = {LB_TYPE_Q4_0, LB_TYPE_Q4_1, LB_TYPE_Q5_0, LB_TYPE_Q5_1, LB_TYPE_Q8_0,   LB_TYPE_Q2_K,
                                      LB_TYPE_Q3_K, LB_TYPE_Q4_K, LB_TYPE_Q5_K, LB_TYPE_Q6_K, LB_TYPE_IQ4_NL, LB_TYPE_IQ4_XS};

static void check_unpack(const float *x, int64_t K, int64_t rows) {
    const lb_cpu_kernels *ref = lb_cpu_kernels_ref();
    for (size_t t = 0; t < sizeof block_types / sizeof block_types[0]; t++) {
        const lb_type ty = block_types[t];
        const int64_t be = lb_type_traits_get(ty)->block_elems;
        const size_t rb = lb_type_row_size(ty, K), qb = lb_qrow_bytes(K, be);
        uint8_t *w = malloc(rb * (size_t)rows), *ba = aligned_alloc(64, qb), *bb = aligned_alloc(64, qb);
        REQUIRE(w && ba && bb, "out of memory");
        for (size_t i = 0; i < rb * (size_t)(rows / 2); i++) w[i] = (uint8_t)(urand() * 256.0); /* random bytes */
        lb_encoder_get(ty, LB_ENCODER_DEFAULT)(x + (rows / 2) * K, w + rb * (size_t)(rows / 2), rows - rows / 2, K, NULL);
        const lb_qrow a = lb_qrow_at(ba, K, be), b = lb_qrow_at(bb, K, be);
        int64_t bad = 0;
        for (int64_t r = 0; r < rows; r++) {
            memset(ba, 0x5A, qb);
            memset(bb, 0xA5, qb);
            ref->unpack[ty](w + rb * (size_t)r, K, &a);
            lb_cuda_unpack_host(ty, w + rb * (size_t)r, K, &b);
            bad += row_differs(&a, &b, K, be);
        }
        CHECK(bad == 0, "%s: %lld of %lld rows unpack differently from the C reference", lb_type_name(ty), (long long)bad, (long long)rows);
        free(w);
        free(ba);
        free(bb);
    }
}

/* rows of type ty (encoded from x) against T tokens: lb_cuda_exact_dot_host against lb_matmul_ref, bit for bit */
static void check_dot(lb_type ty, const float *x, int64_t K, int64_t rows, const float *act, int64_t T) {
    const lb_type_traits *tt = lb_type_traits_get(ty);
    const size_t rb = lb_type_row_size(ty, K);
    uint8_t *w = malloc(rb * (size_t)rows);
    float *ref = malloc(sizeof(float) * (size_t)(T * rows)), *scratch = malloc(sizeof(float) * lb_matmul_scratch_floats(K, T, 1));
    const int64_t be = tt->is_quant ? tt->block_elems : 32;
    void *ab = aligned_alloc(64, LB_ALIGN64(lb_act_bytes(K, be)));
    REQUIRE(w && ref && scratch && ab, "out of memory");
    lb_encoder_get(ty, LB_ENCODER_DEFAULT)(x, w, rows, K, NULL);
    const lb_weight lw = {ty, w, rows, K};
    lb_matmul_ref(scratch, act, T, &lw, ref, rows);
    const lb_act a = lb_act_at(ab, K, be);
    int64_t bad = 0;
    for (int64_t t = 0; t < T; t++) {
        if (tt->is_quant) lb_act_quantize(act + t * K, K, be, &a);
        for (int64_t r = 0; r < rows; r++) {
            float o;
            lb_cuda_exact_dot_host(ty, w + rb * (size_t)r, K, act + t * K, a.q, a.d, &o);
            bad += memcmp(&o, &ref[t * rows + r], sizeof o) != 0;
        }
    }
    CHECK(bad == 0, "%s (K %lld): %lld of %lld products differ from lb_matmul_ref's", lb_type_name(ty), (long long)K, (long long)bad,
          (long long)(T * rows));
    free(w);
    free(ref);
    free(scratch);
    free(ab);
}

int main(void) {
    test_rng = 0x243F6A8885A308D3ULL;
    const int64_t K = 1024, rows = 24, T = 5, Kf = 1004;
    float *x = malloc((size_t)(K * rows) * sizeof *x), *act = malloc((size_t)(K * T) * sizeof *act);
    REQUIRE(x && act, "out of memory");
    hard_rows(x, rows, K, 1);
    for (int64_t i = 0; i < K * T; i++) act[i] = (float)(nrand() * (i % 61 == 0 ? 30.0 : 1.0));
    check_unpack(x, K, rows);
    for (size_t t = 0; t < sizeof block_types / sizeof block_types[0]; t++) check_dot(block_types[t], x, K, rows, act, T);
    const lb_type ft[] = {LB_TYPE_F32, LB_TYPE_F16, LB_TYPE_BF16};
    for (int i = 0; i < 3; i++) check_dot(ft[i], x, Kf, rows, act, T); /* rows of Kf taken from x's first values */
    free(x);
    free(act);
    TEST_DONE();
}
