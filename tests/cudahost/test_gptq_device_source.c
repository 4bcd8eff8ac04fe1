/*
 * test_gptq_device_source.c - a whole GPTQ pass as the GPU runs it (cuda/gptq_sweep.cu: the columns one
 * thread per row through the device copy of quant/ref/grid.c, the blocks from the device copy of the
 * encoders), in its host copy lb_cuda_gptq_pass_host, whose delayed update runs in the CPU's order: through
 * lb_gptq_quantize with a table made of the CPU's operations plus that pass (and the host copy of the
 * encoders for what a pass does not cover, act-order) and the coordinate descent as lb_cuda_gptq_cd runs it
 * (the CPU's H e, the host copy of the rows' sweeps, one lane per row), the bytes and the dequantized
 * weights must be the CPU table's exactly, for the five k-quants, 4 passes and 4 descent sweeps with scales. A
 * construct that C++ reads differently from C, or a pass that orders an element's operations otherwise than
 * quantize_column, shows here, without a GPU. CUDA builds only (CI compiles one); the device's own rounding
 * and the GEMMs are checked on a GPU by tests/cuda/test_cuda_gptq.c.
 */
#include "algo/gptq.h"
#include "cuda/gptq.h"
#include "quant/grid.h"
#include "quant/quant.h"
#include "test.h"
#include "test_rand.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


#include "host_dev.h"

int main(void) {
    test_rng = 0xD1B54A32D192ED03ULL;
    const lb_type types[] = {LB_TYPE_Q2_K, LB_TYPE_Q3_K, LB_TYPE_Q4_K, LB_TYPE_Q5_K, LB_TYPE_Q6_K};
    const int64_t rows = 29, d = 768, toks = 3 * 768;
    double *H0 = malloc(sizeof *H0 * (size_t)(d * d)), *H = malloc(sizeof *H * (size_t)(d * d));
    double *X = malloc(sizeof *X * (size_t)(toks * d));
    float *W0 = malloc(sizeof *W0 * (size_t)(rows * d)), *Wc = malloc(sizeof *Wc * (size_t)(rows * d)),
          *Wh = malloc(sizeof *Wh * (size_t)(rows * d));
    REQUIRE(H0 && H && X && W0 && Wc && Wh, "out of memory");
    /* H = X^T X of correlated activations with a few strong channels */
    for (int64_t t = 0; t < toks; t++)
        for (int64_t j = 0; j < d; j++) X[t * d + j] = nrand() * (j % 53 == 0 ? 6 : 1) + (j ? 0.4 * X[t * d + j - 1] : 0);
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t t = 0; t < toks; t++) s += X[t * d + i] * X[t * d + j];
            H0[i * d + j] = H0[j * d + i] = s / (double)toks;
        }
    for (int64_t i = 0; i < rows * d; i++) W0[i] = (float)(0.02 * nrand() * (i % 41 == 3 ? 5 : 1));
    lb_pool *pool = lb_pool_new(2);
    REQUIRE(pool, "pool");
    for (int t = 0; t < 5; t++)
        for (int ao = 0; ao < 2; ao++) {
            if (ao && types[t] != LB_TYPE_Q4_K) continue;
            const size_t bytes = lb_type_row_size(types[t], d) * (size_t)rows;
            uint8_t *qc = malloc(bytes), *qh = malloc(bytes);
            REQUIRE(qc && qh, "out of memory");
            lb_gptq_params p;
            lb_gptq_params_default(&p);
            p.passes = 4;
            p.cd_sweeps = 4;
            p.cd_scales = true;
            p.act_order = ao;
            lb_error e;
            memcpy(Wc, W0, sizeof *Wc * (size_t)(rows * d));
            memcpy(H, H0, sizeof *H * (size_t)(d * d));
            REQUIRE(lb_gptq_quantize(pool, Wc, rows, d, H, types[t], LB_ENCODER_DEFAULT, &p, qc, NULL, &e) == LB_OK, "%s", e.msg);
            host_dev hd = {0};
            lb_gptq_ops o = host_dev_ops(&hd);
            p.ops = &o;
            memcpy(Wh, W0, sizeof *Wh * (size_t)(rows * d));
            memcpy(H, H0, sizeof *H * (size_t)(d * d));
            lb_gptq_stats st;
            REQUIRE(lb_gptq_quantize(pool, Wh, rows, d, H, types[t], LB_ENCODER_DEFAULT, &p, qh, &st, &e) == LB_OK, "%s", e.msg);
            size_t diff = 0;
            for (size_t i = 0; i < bytes; i++) diff += qc[i] != qh[i];
            CHECK(diff == 0 && !memcmp(Wc, Wh, sizeof *Wc * (size_t)(rows * d)),
                  "%s%s: %zu of %zu bytes differ from the CPU's (weights equal %d)", lb_type_name(types[t]), ao ? " act-order" : "",
                  diff, bytes, !memcmp(Wc, Wh, sizeof *Wc * (size_t)(rows * d)));
            CHECK(ao ? hd.passes == 0 && hd.encodes == p.passes && hd.cds == 1 : hd.passes == p.passes && hd.encodes == 0 && hd.cds == 1,
                  "%s%s: %d passes, %d encodes, %d descents through the table", lb_type_name(types[t]), ao ? " act-order" : "",
                  hd.passes, hd.encodes, hd.cds);
            /* without act-order the sweeps run wholly in the table: U and Hf formed there (inv_upper_keep, begin_kept) */
            CHECK(hd.kept == (ao ? 0 : 1), "%s%s: begin_kept used %d times", lb_type_name(types[t]), ao ? " act-order" : "", hd.kept);
            host_dev_free(&hd);
            free(qc), free(qh);
        }
    lb_error e;
    float one[256] = {0}, scratch[256 * 3];
    uint8_t blk[256];
    double l;
    CHECK(lb_cuda_gptq_pass_host(LB_TYPE_IQ4_XS, one, 1, 256, 256, one, NULL, false, scratch, scratch + 256, scratch + 512, blk, 136,
                                 &l, &e) == LB_ERR_ARG,
          "iq4_xs accepted by the pass");
    lb_pool_free(pool);
    free(H0), free(H), free(X), free(W0), free(Wc), free(Wh);
    TEST_DONE();
}
