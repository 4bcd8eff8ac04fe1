/*
 * test_unpack_device_source.c - an exact context's products on the GPU read every block-type weight through
 * quant/cpu/unpack_ref.h compiled once more as C++ (cuda/exact.cu). Its host copy (lb_cuda_unpack_host, the same
 * translation compiled for the CPU, one weight block at a time as the kernel calls it) must give exactly the C
 * reference's unpacked rows (codes, scale and min multipliers, d and dm, compared bit for bit) for every block
 * type, on rows of random bytes (every code, scale and exponent pattern, NaN and infinite scales included) and on
 * rows quantized from data. Built and run in CUDA builds only; the device compilation itself is checked on a GPU
 * by tests/cuda/test_cuda_forward.c (an exact context's logits against the CPU's, with memcmp).
 */
#include "algo/encoders.h"
#include "cuda/cuda.h"
#include "quant/cpu/cpu.h"
#include "quant/quant.h"
#include "test.h"
#include "test_rand.h"

#include <stdlib.h>
#include <string.h>

/* bits that differ between two unpacked rows of K elements in blocks of be */
static size_t row_diff(const lb_qrow *a, const lb_qrow *b, int64_t K, int64_t be) {
    size_t diff = 0;
    diff += memcmp(a->q, b->q, (size_t)K) != 0;
    diff += memcmp(a->sc, b->sc, (size_t)(K / 16) * 2) != 0;
    diff += memcmp(a->mn, b->mn, (size_t)(K / 16) * 2) != 0;
    diff += memcmp(a->d, b->d, (size_t)(K / be) * 4) != 0;
    diff += memcmp(a->dm, b->dm, (size_t)(K / be) * 4) != 0;
    return diff;
}

int main(void) {
    test_rng = 0x243F6A8885A308D3ULL;
    const lb_type types[] = {LB_TYPE_Q4_0, LB_TYPE_Q4_1,   LB_TYPE_Q5_0,   LB_TYPE_Q5_1, LB_TYPE_Q8_0, LB_TYPE_Q2_K,
                             LB_TYPE_Q3_K, LB_TYPE_Q4_K,   LB_TYPE_Q5_K,   LB_TYPE_Q6_K, LB_TYPE_IQ4_NL, LB_TYPE_IQ4_XS};
    const int64_t K = 1024, rows = 24;
    const lb_cpu_kernels *ref = lb_cpu_kernels_ref();
    float *x = malloc((size_t)(K * rows) * sizeof *x);
    REQUIRE(x, "out of memory");
    hard_rows(x, rows, K, 1);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const lb_type ty = types[t];
        const int64_t be = lb_type_traits_get(ty)->block_elems;
        const size_t rb = lb_type_row_size(ty, K);
        uint8_t *w = malloc(rb * (size_t)rows), *ba = aligned_alloc(64, lb_qrow_bytes(K, be)), *bb = aligned_alloc(64, lb_qrow_bytes(K, be));
        REQUIRE(w && ba && bb, "out of memory");
        for (size_t i = 0; i < rb * (size_t)(rows / 2); i++) w[i] = (uint8_t)(urand() * 256.0); /* random bytes */
        lb_encoder_get(ty, LB_ENCODER_DEFAULT)(x + (rows / 2) * K, w + rb * (size_t)(rows / 2), rows - rows / 2, K, NULL);
        const lb_qrow a = lb_qrow_at(ba, K, be), b = lb_qrow_at(bb, K, be);
        size_t bad = 0;
        for (int64_t r = 0; r < rows; r++) {
            memset(ba, 0x5A, lb_qrow_bytes(K, be));
            memset(bb, 0xA5, lb_qrow_bytes(K, be));
            ref->unpack[ty](w + rb * (size_t)r, K, &a);
            lb_cuda_unpack_host(ty, w + rb * (size_t)r, K, &b);
            bad += row_diff(&a, &b, K, be) != 0;
        }
        CHECK(bad == 0, "%s: %zu of %lld rows unpack differently from the C reference", lb_type_name(ty), bad, (long long)rows);
        free(w);
        free(ba);
        free(bb);
    }
    free(x);
    TEST_DONE();
}
