/*
 * test_encoder_gain.c - lowbit's default encoders against ggml's reference encoders on every weight
 * tensor of the `small` checkpoint, for every block type, without and with an importance matrix
 * (llama.cpp's small.imatrix, computed on calib.txt): for every row the error
 *   E = sum_j w_j (x_j - dequant_j)^2,   w_j = imatrix[j] (1 without one)
 * of the default encoder is never larger than the reference encoder's, and the total is lower.
 * Prints the average gain per type (the table in docs/QUALITY.md). Every tensor is covered; of its rows
 * every LB_GAIN_STRIDE-th (default 4, to keep the test suite short; 1 for the documented table) is used.
 */
#include "algo/encoders.h"
#include "io/imatrix.h"
#include "model/model.h"
#include "quant/quant.h"
#include "test.h"

#include <math.h>

typedef struct job {
    const lb_weight *w;
    lb_type type;
    const float *im;
    double *err_ref, *err_def; /* per row */
    int64_t stride;
} job;

static double row_err(const float *x, const float *y, const float *w, int64_t n) {
    double e = 0;
    for (int64_t j = 0; j < n; j++) {
        double d = (double)x[j] - (double)y[j];
        e += (w ? w[j] : 1.0) * d * d;
    }
    return e;
}

static void task(void *arg, int64_t r, int thread) {
    const job *j = arg;
    int64_t n = j->w->cols;
    size_t rb = lb_type_row_size(j->type, n);
    float *x = malloc((size_t)n * 3 * sizeof *x), *y = x + n, *z = y + n;
    uint8_t *q = malloc(rb);
    lb_weight_row_f32(j->w, r * j->stride, x);
    const lb_type_traits *tt = lb_type_traits_get(j->type);
    lb_encoder_get(j->type, LB_ENCODER_REF)(x, q, 1, n, j->im);
    tt->to_float(q, y, n);
    lb_encoder_get(j->type, LB_ENCODER_DEFAULT)(x, q, 1, n, j->im);
    tt->to_float(q, z, n);
    j->err_ref[r] = row_err(x, y, j->im, n);
    j->err_def[r] = row_err(x, z, j->im, n);
    free(x);
    free(q);
}

int main(void) {
    char path[512];
    lb_error e;
    lb_model *m = NULL;
    lb_imatrix *im = NULL;
    snprintf(path, sizeof path, "%s/models/small", test_shared_dir());
    REQUIRE(lb_model_load(path, &m, &e) == LB_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/golden/gguf/small.imatrix", test_shared_dir());
    REQUIRE(lb_imatrix_load(path, &im, &e) == LB_OK, "%s", e.msg);
    /* every matrix of the model with its GGUF name (the imatrix key) */
    const lb_weight *ws[256];
    char names[256][64];
    int nw = 0;
    ws[nw] = &m->tok_embd, snprintf(names[nw++], 64, "token_embd.weight");
    ws[nw] = &m->output, snprintf(names[nw++], 64, "output.weight");
    for (int64_t l = 0; l < m->info.n_layer; l++) {
        const lb_layer *L = &m->layers[l];
        const lb_weight *lw[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        const char *ln[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
        for (int k = 0; k < 7; k++) ws[nw] = lw[k], snprintf(names[nw++], 64, "blk.%lld.%s.weight", (long long)l, ln[k]);
    }
    lb_pool *pool = lb_pool_new(lb_cpu_count());
    const char *st = getenv("LB_GAIN_STRIDE");
    int64_t stride = st && atoi(st) > 0 ? atoi(st) : 4;
    printf("rows used: every %lld-th\n", (long long)stride);
    const lb_type types[] = {LB_TYPE_Q4_0, LB_TYPE_Q4_1, LB_TYPE_Q5_0, LB_TYPE_Q5_1, LB_TYPE_Q8_0, LB_TYPE_Q2_K,
                             LB_TYPE_Q3_K, LB_TYPE_Q4_K, LB_TYPE_Q5_K, LB_TYPE_Q6_K, LB_TYPE_IQ4_NL, LB_TYPE_IQ4_XS};
    printf("| type | gain without imatrix | gain with imatrix | rows worse than ggml |\n|---|--:|--:|--:|\n");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        double gain[2];
        int64_t worse = 0;
        for (int mode = 0; mode < 2; mode++) {
            double sr = 0, sd = 0;
            for (int k = 0; k < nw; k++) {
                const lb_imatrix_entry *ie = mode ? lb_imatrix_find(im, names[k]) : NULL;
                if (mode && !ie) continue; /* token_embd and output have no importance data */
                lb_weight sub = *ws[k]; /* every stride-th row: a view with a larger row step */
                sub.rows = (ws[k]->rows + stride - 1) / stride;
                int64_t rows = sub.rows;
                double *er = malloc((size_t)rows * 2 * sizeof *er);
                job j = {&sub, types[ti], ie ? ie->values : NULL, er, er + rows, stride};
                lb_pool_run(pool, rows, task, &j);
                for (int64_t r = 0; r < rows; r++) {
                    sr += er[r];
                    sd += er[rows + r];
                    if (er[rows + r] > er[r] * (1 + 1e-9) + 1e-30) worse++;
                }
                free(er);
            }
            gain[mode] = 1.0 - sd / sr;
        }
        CHECK(worse == 0, "%s: %lld rows with a larger error than ggml's encoder", lb_type_name(types[ti]), (long long)worse);
        CHECK(gain[0] > 0 && gain[1] > 0, "%s: no gain on average (%.4f, %.4f)", lb_type_name(types[ti]), gain[0], gain[1]);
        printf("| %s | %.2f %% | %.2f %% | %lld |\n", lb_type_name(types[ti]), 100 * gain[0], 100 * gain[1], (long long)worse);
        fflush(stdout);
    }
    lb_pool_free(pool);
    lb_imatrix_free(im);
    lb_model_free(m);
    TEST_DONE();
}
