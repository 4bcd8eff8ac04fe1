/*
 * host_dev.h - a GPTQ table (gptq.h's lb_gptq_ops) made of the CPU's operations plus the host copies of what the GPU
 * runs: whole passes (lb_cuda_gptq_pass_host), the block encoders (lb_cuda_kq_encode_host) and the coordinate
 * descent as lb_cuda_gptq_cd runs it (the CPU's H e, the host copy of the rows' sweeps). Shared by the tests of
 * tests/cudahost that drive gptq.c through it (one matrix, or a whole model's calibration).
 */
#ifndef LB_TEST_HOST_DEV_H
#define LB_TEST_HOST_DEV_H

#include "algo/gptq.h"
#include "cuda/gptq.h"
#include "quant/grid.h"
#include "quant/quant.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

typedef struct host_dev {
    const float *U, *Hf;
    float *T, *P, *E;
    int64_t rows, n;
    int passes, encodes, cds, kept;
    double *Ak, *A0; /* inv_upper_keep: its copy of A factored, and A as given */
    float *Uk, *Hfk; /* ... the kept factor in F32, and begin_kept's Hf */
    int64_t kn;
} host_dev;

static inline lb_status h_begin(void *u, const float *U, const float *Hf, int64_t rows, int64_t n, lb_error *err) {
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
static inline bool h_encodes(void *u, lb_type t, lb_encoder enc) {
    (void)u;
    return enc == LB_ENCODER_DEFAULT && (t == LB_TYPE_Q2_K || t == LB_TYPE_Q3_K || t == LB_TYPE_Q4_K || t == LB_TYPE_Q5_K ||
                                         t == LB_TYPE_Q6_K);
}
static inline lb_status h_encode(void *u, lb_type t, lb_encoder enc, const float *S, int64_t ld, int64_t rows, int64_t c0, int64_t c1,
                          const float *imp, uint8_t *out, size_t row_bytes, lb_error *err) {
    (void)enc;
    ((host_dev *)u)->encodes++;
    const size_t bb = lb_type_traits_get(t)->block_bytes;
    return lb_cuda_kq_encode_host(t, S + c0, ld, rows, (c1 - c0) / 256, imp, out + (size_t)(c0 / 256) * bb, (int64_t)row_bytes, err);
}
static inline lb_status h_pass(void *u, lb_type t, lb_encoder enc, const float *W, int64_t rows, int64_t n, int64_t batch, const float *imp,
                        bool static_scales, uint8_t *out, size_t row_bytes, double *loss, lb_error *err) {
    host_dev *h = u;
    (void)enc;
    h->passes++;
    REQUIRE(rows == h->rows && n == h->n, "pass beyond begin's size");
    return lb_cuda_gptq_pass_host(t, W, rows, n, batch, h->U, imp, static_scales, h->T, h->P, h->E, out, row_bytes, loss, err);
}

/* the descent as lb_cuda_gptq_cd runs it, with the CPU's H e and the host copy of the rows' sweeps */
static inline lb_status h_cd(void *u, lb_type t, const float *W, float *Q, uint8_t *out, size_t row_bytes, float *G, int64_t rows, int64_t n,
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

/* inv_upper_keep / begin_kept as the device keeps them: the CPU's factor of a copy of A, its upper triangle in F32
 * (what the host's U would be), and Hf from A's strictly lower triangle (A as given) and hf_diag */
static inline lb_status h_inv_upper_keep(void *u, const double *A, int64_t n, bool *ok, lb_error *err) {
    host_dev *h = u;
    const size_t nn = (size_t)n * (size_t)n;
    free(h->Ak), free(h->Uk), free(h->A0);
    h->Ak = malloc(nn * sizeof *h->Ak);
    h->A0 = malloc(nn * sizeof *h->A0);
    h->Uk = malloc(nn * sizeof *h->Uk);
    double *work = malloc((size_t)n * sizeof *work);
    REQUIRE(h->Ak && h->A0 && h->Uk && work, "out of memory");
    memcpy(h->Ak, A, nn * sizeof *h->Ak);
    memcpy(h->A0, A, nn * sizeof *h->A0);
    for (int64_t i = 0; i < n; i++) /* the upper triangle from the lower: the device reads no other */
        for (int64_t j = i + 1; j < n; j++) h->Ak[i * n + j] = h->Ak[j * n + i];
    h->kn = 0;
    lb_status s = lb_gptq_ops_cpu()->inv_upper(NULL, NULL, h->Ak, n, work, ok, err);
    free(work);
    if (s != LB_OK || !*ok) return s;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) h->Uk[i * n + j] = j >= i ? (float)h->Ak[i * n + j] : 0.0f;
    h->kn = n;
    return LB_OK;
}
static inline lb_status h_begin_kept(void *u, const float *hf_diag, int64_t rows, int64_t n, lb_error *err) {
    host_dev *h = u;
    REQUIRE(h->kn == n, "begin_kept without a kept factor of %lld columns", (long long)n);
    h->kept++;
    free(h->Hfk);
    h->Hfk = NULL;
    if (hf_diag) {
        h->Hfk = malloc((size_t)n * (size_t)n * sizeof *h->Hfk);
        REQUIRE(h->Hfk, "out of memory");
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                h->Hfk[i * n + j] = i == j ? hf_diag[i] : (float)(i > j ? h->A0[i * n + j] : h->A0[j * n + i]);
    }
    return h_begin(u, h->Uk, h->Hfk, rows, n, err);
}

/* the CPU's table with the host copies in place of the GPU's passes, encoders and descent */
static inline lb_gptq_ops host_dev_ops(host_dev *hd) {
    lb_gptq_ops o = *lb_gptq_ops_cpu();
    o.user = hd;
    o.name = "host copy";
    o.begin = h_begin;
    o.encodes = h_encodes;
    o.encode = h_encode;
    o.pass = h_pass;
    o.cd = h_cd;
    o.inv_upper_keep = h_inv_upper_keep;
    o.begin_kept = h_begin_kept;
    return o;
}

static inline void host_dev_free(host_dev *hd) {
    free(hd->T), free(hd->P), free(hd->E), free(hd->Ak), free(hd->A0), free(hd->Uk), free(hd->Hfk);
    hd->T = hd->P = hd->E = NULL;
    hd->Ak = hd->A0 = NULL, hd->Uk = hd->Hfk = NULL;
}

#endif
