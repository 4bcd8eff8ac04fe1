/*
 * test_calib.c - the layer-by-layer calibration state (algo/calib.h): GPTQ's staged statistics
 * (lb_calib_stage_stats / lb_calib_stage_advance, which resume each stage from the one before) give the same
 * H, C and mean |x| at every point, and the same activations afterwards (seen through the output head's
 * statistics), bit for bit, as the plain runs of the whole layer up to each point (lb_calib_layer_stats /
 * lb_calib_layer_advance); with and without the reference stream; stages out of order are refused. The
 * sums of H, C and |x| (vectorized, split over the pool) give the bits of the scalar reference on one thread
 * (LB_FORCE_REF=1, which accumulate reads at each call). The importance matrix by the layerwise statistics
 * (lb_imatrix_compute's path on a GPU) against the forward pass's observer over each window (its CPU path): every
 * entry within 1e-6 relative (only the order of the double sums differs), and the same chunk count and dataset.
 */
#include "algo/calib.h"
#include "io/imatrix.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_TOK 96 /* three windows of 32 */

/* the 7 matrices of a layer, q, k, v, o, gate, up, down */
static lb_weight *mat(lb_layer *l, int k) {
    lb_weight *w[7] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
    return w[k];
}

/* the layer with matrices [0, nq) replaced by f32 copies scaled by 0.9 (what quantization does to them,
 * for this test: a layer that differs from the reference) */
static lb_layer changed_layer(const lb_layer *orig, float *const f[7], int nq) {
    lb_layer l = *orig;
    for (int k = 0; k < nq; k++) {
        lb_weight *w = mat(&l, k);
        *w = (lb_weight){LB_TYPE_F32, f[k], w->rows, w->cols};
    }
    return l;
}

static void compare_stats(lb_calib *a, lb_calib *b, lb_obs_point pt, bool ref, const char *what) {
    int64_t da, db;
    const double *ha = lb_calib_h(a, pt, &da), *hb = lb_calib_h(b, pt, &db);
    CHECK(ha && hb && da == db && !memcmp(ha, hb, (size_t)(da * da) * sizeof *ha), "%s: H of point %d differs", what, (int)pt);
    const double *ca = lb_calib_cross(a, pt), *cb = lb_calib_cross(b, pt);
    if (ref) CHECK(ca && cb && !memcmp(ca, cb, (size_t)(da * da) * sizeof *ca), "%s: C of point %d differs", what, (int)pt);
    else CHECK(!ca && !cb, "%s: C without a reference stream", what);
    const float *ma = lb_calib_mean_abs(a, pt), *mb = lb_calib_mean_abs(b, pt);
    CHECK(ma && mb && !memcmp(ma, mb, (size_t)da * sizeof *ma), "%s: mean |x| of point %d differs", what, (int)pt);
    CHECK(lb_calib_tokens(a) == N_TOK && lb_calib_tokens(b) == N_TOK, "%s: tokens", what);
}

/* N_TOK tokens (t * mul + add) mod the vocabulary, and calibration parameters of windows of 32 on two threads */
static lb_calib_params fixture(const lb_model *m, int64_t mul, int64_t add, int32_t *tokens) {
    const lb_model_info *h = lb_model_get_info(m);
    for (int t = 0; t < N_TOK; t++) tokens[t] = (int32_t)((t * mul + add) % h->n_vocab);
    lb_calib_params cp = lb_calib_default_params();
    cp.ctx = 32;
    cp.n_tokens = N_TOK;
    cp.n_threads = 2;
    return cp;
}

static void test_stages(const lb_model *m, bool ref) {
    const char *what = ref ? "with the reference stream" : "without it";
    int32_t tokens[N_TOK];
    lb_calib_params cp = fixture(m, 7919, 13, tokens);
    lb_calib *a = NULL, *b = NULL;
    lb_error e;
    const lb_weight *er = ref ? &m->tok_embd : NULL;
    REQUIRE(lb_calib_new(m, &m->tok_embd, er, tokens, N_TOK, &cp, &a, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_calib_new(m, &m->tok_embd, er, tokens, N_TOK, &cp, &b, &e) == LB_OK, "%s", e.msg);
    static const int first[5] = {0, 3, 4, 6, 7};
    static const lb_obs_point pts[4] = {LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN, LB_OBS_FFN_IN, LB_OBS_FFN_DOWN_IN};
    for (int64_t il = 0; il < 2; il++) {
        const lb_layer *orig = &m->layers[il];
        lb_layer lc = *orig;
        float *f[7];
        for (int k = 0; k < 7; k++) {
            const lb_weight *w = mat(&lc, k);
            f[k] = malloc((size_t)(w->rows * w->cols) * sizeof *f[k]);
            REQUIRE(f[k], "out of memory");
            for (int64_t r = 0; r < w->rows; r++) lb_weight_row_f32(w, r, f[k] + r * w->cols);
            for (int64_t i = 0; i < w->rows * w->cols; i++) f[k][i] *= 0.9f;
        }
        if (il == 0)
            CHECK(lb_calib_stage_stats(a, orig, orig, LB_OBS_FFN_IN, il, &e) == LB_ERR_ARG, "a stage out of order accepted");
        for (int g = 0; g < 4; g++) {
            lb_layer cur = changed_layer(orig, f, first[g]);
            CHECK(lb_calib_stage_stats(a, &cur, orig, pts[g], il, &e) == LB_OK, "%s", e.msg);
            CHECK(lb_calib_layer_stats(b, &cur, orig, pts[g], il, &e) == LB_OK, "%s", e.msg);
            compare_stats(a, b, pts[g], ref, what);
        }
        lb_layer all = changed_layer(orig, f, 7);
        CHECK(lb_calib_stage_advance(a, &all, il, &e) == LB_OK, "%s", e.msg);
        CHECK(lb_calib_layer_advance(b, &all, orig, il, &e) == LB_OK, "%s", e.msg);
        CHECK(lb_calib_stage_advance(a, &all, il, &e) == LB_ERR_ARG, "a second advance accepted");
        for (int k = 0; k < 7; k++) free(f[k]);
    }
    /* the activations after two layers, through the statistics of the output head's input */
    CHECK(lb_calib_output_stats(a, m->out_norm, &e) == LB_OK, "%s", e.msg);
    CHECK(lb_calib_output_stats(b, m->out_norm, &e) == LB_OK, "%s", e.msg);
    compare_stats(a, b, LB_OBS_OUTPUT_IN, ref, what);
    lb_calib_free(a);
    lb_calib_free(b);
}

/* H, C and mean |x| on two threads with the fast sums against one thread with the reference sums */
static void test_sum_paths(const lb_model *m) {
    int32_t tokens[N_TOK];
    lb_calib_params cp = fixture(m, 104729, 5, tokens);
    lb_calib *a = NULL, *b = NULL;
    lb_error e;
    REQUIRE(lb_calib_new(m, &m->tok_embd, &m->tok_embd, tokens, N_TOK, &cp, &a, &e) == LB_OK, "%s", e.msg);
    cp.n_threads = 1;
    REQUIRE(lb_calib_new(m, &m->tok_embd, &m->tok_embd, tokens, N_TOK, &cp, &b, &e) == LB_OK, "%s", e.msg);
    static const lb_obs_point pts[4] = {LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN, LB_OBS_FFN_IN, LB_OBS_FFN_DOWN_IN};
    const lb_layer *l = &m->layers[0];
    for (int g = 0; g < 4; g++) {
        CHECK(lb_calib_layer_stats(a, l, l, pts[g], 0, &e) == LB_OK, "%s", e.msg);
        const char *old = getenv("LB_FORCE_REF");
        char *keep = old ? strdup(old) : NULL;
        setenv("LB_FORCE_REF", "1", 1);
        CHECK(lb_calib_layer_stats(b, l, l, pts[g], 0, &e) == LB_OK, "%s", e.msg);
        if (keep) setenv("LB_FORCE_REF", keep, 1);
        else unsetenv("LB_FORCE_REF");
        free(keep);
        compare_stats(a, b, pts[g], true, "fast sums against the reference");
    }
    lb_calib_free(a);
    lb_calib_free(b);
}

/* diagonal-only statistics (lb_calib_set_diag_only, the imatrix method's): H's diagonal as the full run gives it
 * within F32 window rounding, the same bits on one and two threads, mean |x| unchanged, and no H handed out */
static void test_diag_only(const lb_model *m) {
    int32_t tokens[N_TOK];
    lb_calib_params cp = fixture(m, 7919, 3, tokens);
    lb_calib *a = NULL, *b = NULL, *b1 = NULL;
    lb_error e;
    REQUIRE(lb_calib_new(m, &m->tok_embd, NULL, tokens, N_TOK, &cp, &a, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_calib_new(m, &m->tok_embd, NULL, tokens, N_TOK, &cp, &b, &e) == LB_OK, "%s", e.msg);
    cp.n_threads = 1;
    REQUIRE(lb_calib_new(m, &m->tok_embd, NULL, tokens, N_TOK, &cp, &b1, &e) == LB_OK, "%s", e.msg);
    lb_calib_set_diag_only(b, true);
    lb_calib_set_diag_only(b1, true);
    static const lb_obs_point pts[4] = {LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN, LB_OBS_FFN_IN, LB_OBS_FFN_DOWN_IN};
    const lb_layer *l = &m->layers[1];
    double *keep_d[4];
    float *keep_a[4];
    int64_t dims[4];
    for (int g = 0; g < 4; g++) {
        CHECK(lb_calib_layer_stats(a, l, NULL, pts[g], 1, &e) == LB_OK, "%s", e.msg);
        CHECK(lb_calib_layer_stats(b, l, NULL, pts[g], 1, &e) == LB_OK, "%s", e.msg);
        CHECK(lb_calib_layer_stats(b1, l, NULL, pts[g], 1, &e) == LB_OK, "%s", e.msg);
        int64_t d;
        const double *H = lb_calib_h(a, pts[g], &d), *da = lb_calib_h_diag(a, pts[g]), *db = lb_calib_h_diag(b, pts[g]),
                     *db1 = lb_calib_h_diag(b1, pts[g]);
        REQUIRE(H && da && db && db1, "point %d: statistics missing", (int)pts[g]);
        double worst = 0;
        bool same_full = true;
        for (int64_t j = 0; j < d; j++) {
            same_full &= da[j] == H[j * d + j];
            const double r = fabs(db[j] - H[j * d + j]) / (H[j * d + j] > 0 ? H[j * d + j] : 1);
            worst = r > worst ? r : worst;
        }
        CHECK(same_full, "point %d: a full run's diagonal is not H's", (int)pts[g]);
        /* H's diagonal sums each window's F32 product (32 tokens) into double; the diagonal-only run sums x^2 in
         * double: they differ by F32 rounding of 32-term sums */
        CHECK(worst < 1e-5, "point %d: diagonal-only sums %.3g from H's diagonal", (int)pts[g], worst);
        CHECK(!memcmp(db, db1, (size_t)d * sizeof *db), "point %d: diagonal-only sums differ between 1 and 2 threads", (int)pts[g]);
        CHECK(!memcmp(lb_calib_mean_abs(a, pts[g]), lb_calib_mean_abs(b, pts[g]), (size_t)d * sizeof(float)),
              "point %d: mean |x| differs in a diagonal-only run", (int)pts[g]);
        CHECK(!lb_calib_h(b, pts[g], NULL) && !lb_calib_take_h(b, pts[g]), "point %d: a diagonal-only run handed out H", (int)pts[g]);
        keep_d[g] = malloc((size_t)d * sizeof(double));
        keep_a[g] = malloc((size_t)d * sizeof(float));
        REQUIRE(keep_d[g] && keep_a[g], "out of memory");
        memcpy(keep_d[g], db, (size_t)d * sizeof(double));
        memcpy(keep_a[g], lb_calib_mean_abs(b, pts[g]), (size_t)d * sizeof(float));
        dims[g] = d;
    }
    /* all four points in one run (lb_calib_layer_diag_stats): each point's per-point bits, on 2 threads and 1 */
    lb_calib *runs[2] = {b, b1};
    for (int r = 0; r < 2; r++) {
        CHECK(lb_calib_layer_diag_stats(runs[r], l, 1, &e) == LB_OK, "%s", e.msg);
        for (int g = 0; g < 4; g++) {
            const double *q = lb_calib_h_diag(runs[r], pts[g]);
            const float *ma = lb_calib_mean_abs(runs[r], pts[g]);
            REQUIRE(q && ma, "one run, point %d: statistics missing", (int)pts[g]);
            CHECK(!memcmp(q, keep_d[g], (size_t)dims[g] * sizeof(double)) && !memcmp(ma, keep_a[g], (size_t)dims[g] * sizeof(float)),
                  "one run of the four points (%d threads), point %d: not the per-point sums", 2 - r, (int)pts[g]);
            CHECK(!lb_calib_h(runs[r], pts[g], NULL), "one run handed out H");
        }
        CHECK(lb_calib_tokens(runs[r]) == N_TOK, "one run: %lld tokens", (long long)lb_calib_tokens(runs[r]));
        CHECK(!lb_calib_h_diag(runs[r], LB_OBS_OUTPUT_IN), "one run: a diagonal for the output head");
    }
    /* a later statistics call replaces them */
    CHECK(lb_calib_layer_stats(b, l, NULL, pts[0], 1, &e) == LB_OK, "%s", e.msg);
    CHECK(!lb_calib_h_diag(b, pts[1]), "the one run's diagonals outlived the next statistics call");
    for (int g = 0; g < 4; g++) free(keep_d[g]), free(keep_a[g]);
    lb_calib *wr = NULL; /* with a reference stream: refused */
    REQUIRE(lb_calib_new(m, &m->tok_embd, &m->tok_embd, tokens, N_TOK, &cp, &wr, &e) == LB_OK, "%s", e.msg);
    CHECK(lb_calib_layer_diag_stats(wr, l, 1, &e) == LB_ERR_ARG, "one run with a reference stream accepted");
    lb_calib_free(wr);
    lb_calib_free(a);
    lb_calib_free(b);
    lb_calib_free(b1);
}

static void test_imatrix_paths(const lb_model *m) {
    int32_t tokens[N_TOK];
    lb_calib_params cp = fixture(m, 104729, 5, tokens);
    char pa[96], pb[96];
    snprintf(pa, sizeof pa, "/tmp/lowbit-test-calib-%d-a.dat", (int)getpid());
    snprintf(pb, sizeof pb, "/tmp/lowbit-test-calib-%d-b.dat", (int)getpid());
    lb_error e;
    REQUIRE(lb_imatrix_compute_ex(m, tokens, N_TOK, &cp, "fixture", pa, false, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_imatrix_compute_ex(m, tokens, N_TOK, &cp, "fixture", pb, true, &e) == LB_OK, "%s", e.msg);
    lb_imatrix *a = NULL, *b = NULL;
    REQUIRE(lb_imatrix_load(pa, &a, &e) == LB_OK && lb_imatrix_load(pb, &b, &e) == LB_OK, "%s", e.msg);
    CHECK(a->n_entries == b->n_entries && a->n_entries == lb_model_get_info(m)->n_layer * 7 + 1, "entries %lld and %lld",
          (long long)a->n_entries, (long long)b->n_entries);
    CHECK(a->chunks == b->chunks && a->chunks == 3 && a->dataset && b->dataset && !strcmp(a->dataset, b->dataset),
          "chunks %lld / %lld", (long long)a->chunks, (long long)b->chunks);
    double worst = 0;
    int64_t missing = 0;
    for (int64_t i = 0; i < a->n_entries; i++) {
        const lb_imatrix_entry *x = &a->entries[i], *y = lb_imatrix_find(b, x->name);
        if (!y || y->n != x->n) {
            missing++;
            continue;
        }
        for (int64_t j = 0; j < x->n; j++) {
            const double r = fabs((double)x->values[j] - y->values[j]) / fmax(fabs((double)x->values[j]), 1e-30);
            worst = r > worst ? r : worst;
        }
    }
    CHECK(missing == 0 && worst < 1e-6, "layerwise imatrix: %lld entries missing, worst relative difference %.3g", (long long)missing,
          worst);
    printf("imatrix, layerwise against the observer: worst relative difference %.3g over %lld entries\n", worst, (long long)a->n_entries);
    lb_imatrix_free(a);
    lb_imatrix_free(b);
    remove(pa);
    remove(pb);
}

int main(void) {
    lb_model *m = NULL;
    lb_error e;
    REQUIRE(lb_model_load("models/tiny", &m, &e) == LB_OK, "%s", e.msg);
    test_stages(m, true);
    test_stages(m, false);
    test_sum_paths(m);
    test_diag_only(m);
    test_imatrix_paths(m);
    lb_model_free(m);
    TEST_DONE();
}
