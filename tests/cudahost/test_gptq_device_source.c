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


typedef struct host_dev {
    const float *U, *Hf;
    float *T, *P, *E;
    int64_t rows, n;
    int passes, encodes, cds;
} host_dev;

static lb_status h_begin(void *u, const float *U, const float *Hf, int64_t rows, int64_t n, lb_error *err) {
    host_dev *h = u;
    (void)err;
    h->U = U, h->Hf = Hf;
    free(h->T), free(h->P), free(h->E);
    h->T = malloc(sizeof *h->T * (size_t)(rows * n));
    h->P = malloc(sizeof *h->P * (size_t)(rows * n));
    h->E = malloc(sizeof *h->E * (size_t)(rows * n));
    h->rows = rows, h->n = n;
    REQUIRE(h->T && h->P && h->E, "out of memory");
    return LB_OK;
}
static bool h_encodes(void *u, lb_type t, lb_encoder enc) {
    (void)u;
    return enc == LB_ENCODER_DEFAULT && (t == LB_TYPE_Q2_K || t == LB_TYPE_Q3_K || t == LB_TYPE_Q4_K || t == LB_TYPE_Q5_K ||
                                         t == LB_TYPE_Q6_K);
}
static lb_status h_encode(void *u, lb_type t, lb_encoder enc, const float *S, int64_t ld, int64_t rows, int64_t c0, int64_t c1,
                          const float *imp, uint8_t *out, size_t row_bytes, lb_error *err) {
    (void)enc;
    ((host_dev *)u)->encodes++;
    const size_t bb = lb_type_traits_get(t)->block_bytes;
    return lb_cuda_kq_encode_host(t, S + c0, ld, rows, (c1 - c0) / 256, imp, out + (size_t)(c0 / 256) * bb, (int64_t)row_bytes, err);
}
static lb_status h_pass(void *u, lb_type t, lb_encoder enc, const float *W, int64_t rows, int64_t n, int64_t batch, const float *imp,
                        bool static_scales, uint8_t *out, size_t row_bytes, double *loss, lb_error *err) {
    host_dev *h = u;
    (void)enc;
    h->passes++;
    REQUIRE(rows == h->rows && n == h->n, "pass beyond begin's size");
    return lb_cuda_gptq_pass_host(t, W, rows, n, batch, h->U, imp, static_scales, h->T, h->P, h->E, out, row_bytes, loss, err);
}

/* the descent as lb_cuda_gptq_cd runs it, with the CPU's H e and the host copy of the rows' sweeps */
static lb_status h_cd(void *u, lb_type t, const float *W, float *Q, uint8_t *out, size_t row_bytes, float *G, int64_t rows, int64_t n,
                      int sweeps, bool scales, const float *Ht, lb_error *err) {
    host_dev *h = u;
    h->cds++;
    const lb_gptq_ops *cpu = lb_gptq_ops_cpu();
    bool *act = malloc((size_t)rows);
    REQUIRE(act, "out of memory");
    for (int64_t r = 0; r < rows; r++) act[r] = true;
    lb_cd_rows a = {t, 256, lb_grid_run(t), lb_type_traits_get(t)->block_bytes, row_bytes, rows, n, scales, h->Hf, Ht, out, Q, G, act};
    lb_status s = LB_OK;
    for (int sw = 0; s == LB_OK && sw < sweeps; sw++) {
        bool any = false;
        for (int64_t r = 0; r < rows; r++) any |= act[r];
        if (!any) break;
        s = cpu->h_times_e(NULL, NULL, W, Q, G, rows, n, h->Hf, act, err);
        if (s == LB_OK) s = lb_cuda_gptq_cd_rows_host(&a, err);
    }
    for (int64_t r = 0; r < rows; r++) act[r] = true;
    if (s == LB_OK) s = cpu->h_times_e(NULL, NULL, W, Q, G, rows, n, h->Hf, act, err);
    free(act);
    return s;
}

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
            lb_gptq_ops o = *lb_gptq_ops_cpu();
            o.user = &hd;
            o.name = "host copy";
            o.begin = h_begin;
            o.encodes = h_encodes;
            o.encode = h_encode;
            o.pass = h_pass;
            o.cd = h_cd;
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
            free(hd.T), free(hd.P), free(hd.E);
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
