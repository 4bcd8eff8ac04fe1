/*
 * test_awq_device_source.c - AWQ's clip search as the GPU runs it (cuda/kq_encode.cu: per block the clamp,
 * the encoder compiled from algo/kquant.c / quant/ref/kquants.c, the decoder and the block's error in awq.c's
 * double order), in its host copy lb_cuda_awq_clip_host, against lb_awq_clip on the CPU: the same clamped
 * weights and the same choices, exactly, for the five k-quants with lowbit's and ggml's encoders, with and
 * without importance weights. CUDA builds only; the device's own rounding is checked by tests/cuda.
 */
#include "algo/awq.h"
#include "cuda/gptq.h"
#include "quant/quant.h"
#include "test.h"
#include "test_rand.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


int main(void) {
    test_rng = 0xA0761D6478BD642FULL;
    const lb_type types[] = {LB_TYPE_Q2_K, LB_TYPE_Q3_K, LB_TYPE_Q4_K, LB_TYPE_Q5_K, LB_TYPE_Q6_K};
    const int64_t rows = 13, d = 512, toks = 2 * 512;
    double *H = malloc(sizeof *H * (size_t)(d * d)), *X = malloc(sizeof *X * (size_t)(toks * d));
    float *w0 = malloc(sizeof *w0 * (size_t)(rows * d)), *wc = malloc(sizeof *wc * (size_t)(rows * d)),
          *wh = malloc(sizeof *wh * (size_t)(rows * d)), *im = malloc(sizeof *im * (size_t)d);
    uint8_t *cc = malloc((size_t)(rows * d / 256)), *ch = malloc((size_t)(rows * d / 256));
    REQUIRE(H && X && w0 && wc && wh && im && cc && ch, "out of memory");
    for (int64_t t = 0; t < toks; t++)
        for (int64_t j = 0; j < d; j++) X[t * d + j] = nrand() * (j % 37 == 0 ? 5 : 1) + (j ? 0.3 * X[t * d + j - 1] : 0);
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t t = 0; t < toks; t++) s += X[t * d + i] * X[t * d + j];
            H[i * d + j] = H[j * d + i] = s / (double)toks;
        }
    for (int64_t i = 0; i < rows * d; i++) w0[i] = (float)(0.02 * nrand() * (i % 29 == 7 ? 8 : 1)); /* outliers to clip */
    for (int64_t j = 0; j < d; j++) im[j] = (float)H[j * d + j];
    for (int t = 0; t < 5; t++)
        for (int v = 0; v < 4; v++) {
            const lb_encoder enc = v & 1 ? LB_ENCODER_REF : LB_ENCODER_DEFAULT;
            const float *imp = v & 2 ? im : NULL;
            lb_error e;
            memcpy(wc, w0, sizeof *wc * (size_t)(rows * d));
            memcpy(wh, w0, sizeof *wh * (size_t)(rows * d));
            REQUIRE(lb_awq_clip(NULL, wc, rows, d, H, types[t], enc, imp, cc, &e) == LB_OK, "%s", e.msg);
            REQUIRE(lb_cuda_awq_clip_host(wh, rows, d, H, types[t], enc, imp, ch, &e) == LB_OK, "%s", e.msg);
            int64_t clipped = 0;
            for (int64_t i = 0; i < rows * d / 256; i++) clipped += cc[i] != 0;
            CHECK(!memcmp(wc, wh, sizeof *wc * (size_t)(rows * d)) && !memcmp(cc, ch, (size_t)(rows * d / 256)),
                  "%s %s%s: the host copy's clamps or choices differ from lb_awq_clip's", lb_type_name(types[t]),
                  enc == LB_ENCODER_REF ? "ref" : "default", imp ? " imatrix" : "");
            /* the low-bit types clip some blocks here (q5_K and q6_K rarely gain by it) */
            CHECK(t > 2 || clipped > 0, "%s: no block was clipped (the test would not see the choices)", lb_type_name(types[t]));
        }
    lb_error e;
    CHECK(lb_cuda_awq_clip_host(wh, rows, d, H, LB_TYPE_Q4_0, LB_ENCODER_DEFAULT, NULL, NULL, &e) == LB_ERR_ARG, "q4_0 accepted");
    free(H), free(X), free(w0), free(wc), free(wh), free(im), free(cc), free(ch);
    TEST_DONE();
}
