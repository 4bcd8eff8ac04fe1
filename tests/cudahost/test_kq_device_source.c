/*
 * test_kq_device_source.c - the GPU's k-quant encoders are algo/kquant.c and quant/ref/kquants.c compiled
 * once more as C++ (cuda/kq_encode.cu). Their host copy, the same translation compiled for the CPU
 * (lb_cuda_kq_encode_host), must give exactly the bytes of the C encoders quantize_<t>_best for all five
 * types, with and without importance weights, on rows with zero, tiny, huge, outlier and one-signed blocks:
 * a construct that C++ reads differently from C (a conversion, a promotion, a name that resolves to another
 * function) shows here, without a GPU. Built and run in CUDA builds only (CI compiles one); what the device
 * code adds (no fused multiply-adds, IEEE division) is checked on a GPU by tests/cuda/test_cuda_gptq.c.
 */
#include "algo/encoders.h"
#include "cuda/gptq.h"
#include "quant/quant.h"
#include "test.h"
#include "test_rand.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


int main(void) {
    test_rng = 0x9E3779B97F4A7C15ULL;
    const lb_type types[] = {LB_TYPE_Q2_K, LB_TYPE_Q3_K, LB_TYPE_Q4_K, LB_TYPE_Q5_K, LB_TYPE_Q6_K};
    const int64_t rows = 36, cols = 1024;
    float *x = malloc(sizeof *x * (size_t)(rows * cols)), *imp = malloc(sizeof *imp * (size_t)cols);
    REQUIRE(x && imp, "out of memory");
    hard_rows(x, rows, cols, 1);
    hard_importance(imp, cols);
    for (int t = 0; t < 5; t++) {
        const size_t rb = lb_type_row_size(types[t], cols), bytes = rb * (size_t)rows;
        uint8_t *qc = malloc(bytes), *qh = malloc(bytes);
        REQUIRE(qc && qh, "out of memory");
        for (int w = 0; w < 2; w++) {
            const float *im = w ? imp : NULL;
            lb_encoder_get(types[t], LB_ENCODER_DEFAULT)(x, qc, rows, cols, im);
            lb_error e;
            REQUIRE(lb_cuda_kq_encode_host(types[t], x, cols, rows, cols / 256, im, qh, (int64_t)rb, &e) == LB_OK, "%s", e.msg);
            size_t diff = 0;
            for (size_t i = 0; i < bytes; i++) diff += qc[i] != qh[i];
            CHECK(diff == 0, "%s%s: %zu of %zu bytes differ from the C encoder's", lb_type_name(types[t]), w ? " (imatrix)" : "", diff,
                  bytes);
        }
        free(qc);
        free(qh);
    }
    lb_error e;
    CHECK(lb_cuda_kq_encode_host(LB_TYPE_Q4_0, x, cols, 1, 1, NULL, NULL, 0, &e) == LB_ERR_ARG, "q4_0 accepted");
    free(x);
    free(imp);
    TEST_DONE();
}
