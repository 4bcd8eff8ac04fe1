/*
 * test_forward.c - the forward pass against Hugging Face transformers' fp32 outputs:
 * - models/tiny and small: per-token NLL of the golden prompts within 2e-3, last-position logits within
 *   1e-3 (max abs), argmax at every position;
 * - the five conformance architectures: logits at every position within 1e-3, with their config.json in
 *   the transformers-5 layout and rewritten into the transformers-4 layout;
 * - the same logits whether the prompt runs as one batch, token by token through the KV cache, or with
 *   1 or 3 threads (bit-identical across thread counts).
 */
#include "core/core.h"
#include "core/json.h"
#include "model/arch.h"
#include "model/model.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

static json_doc *load_json(const char *path) {
    char *text;
    size_t len;
    lb_error e;
    json_doc *d = NULL;
    REQUIRE(lb_read_file(path, (size_t)1 << 30, &text, &len, &e) == LB_OK, "%s", e.msg);
    REQUIRE(json_parse(text, len, &d, &e) == LB_OK, "%s: %s", path, e.msg);
    free(text);
    return d;
}

static int32_t *ids_of(const json_value *a, int64_t *n) {
    *n = (int64_t)json_len(a);
    int32_t *ids = malloc((size_t)*n * sizeof *ids);
    for (int64_t i = 0; i < *n; i++) {
        int64_t v = 0;
        json_int(json_at(a, (size_t)i), &v);
        ids[i] = (int32_t)v;
    }
    return ids;
}

static double nll_at(const float *lg, int64_t V, int32_t target) {
    double mx = -INFINITY, s = 0.0;
    for (int64_t i = 0; i < V; i++) mx = lg[i] > mx ? lg[i] : mx;
    for (int64_t i = 0; i < V; i++) s += exp(lg[i] - mx);
    return log(s) + mx - lg[target];
}

static int64_t argmax(const float *v, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static float *run_kv(const lb_model *m, const int32_t *ids, int64_t n, int threads, int one_by_one, int kv_f16) {
    int64_t V = lb_model_get_info(m)->n_vocab;
    lb_context_params p = {.n_ctx = n + 8, .n_threads = threads, .device = {LB_DEVICE_CPU, 0}, .kv_f16 = kv_f16};
    lb_context *c = NULL;
    lb_error e;
    REQUIRE(lb_context_new(m, &p, &c, &e) == LB_OK, "%s", e.msg);
    float *lg = malloc((size_t)(n * V) * sizeof *lg);
    if (one_by_one) {
        for (int64_t i = 0; i < n; i++) REQUIRE(lb_context_eval(c, ids + i, 1, lg + i * V, 1, &e) == LB_OK, "%s", e.msg);
    } else {
        REQUIRE(lb_context_eval(c, ids, n, lg, 1, &e) == LB_OK, "%s", e.msg);
    }
    lb_context_free(c);
    return lg;
}
static float *run_all(const lb_model *m, const int32_t *ids, int64_t n, int threads, int one_by_one) {
    return run_kv(m, ids, n, threads, one_by_one, 0);
}

/*
 * An F16 KV cache (lb_context_params.kv_f16) on a golden prompt: the same bits for any thread count, prompt and decode;
 * against the F32 cache (f: its logits) and transformers' goldens, only the rounding of the cached keys and values to
 * F16 (a relative error of at most 2^-11 per element, which moves a score or an output by at most 2^-11 of the sum of
 * its products' magnitudes): logits within 2e-2 of the F32 cache's (measured: up to 6.6e-3 on tiny and small) and NLL
 * within 1e-2 of the goldens (measured: up to 2.3e-3), every golden argmax kept.
 */
static void check_kv_f16(const lb_model *m, const char *model_dir, size_t pi, const json_value *pr, const int32_t *ids, int64_t n,
                         const float *f) {
    int64_t V = lb_model_get_info(m)->n_vocab;
    float *h1 = run_kv(m, ids, n, 1, 0, 1), *h3 = run_kv(m, ids, n, 3, 0, 1), *h2 = run_kv(m, ids, n, 2, 1, 1);
    CHECK(memcmp(h1, h3, (size_t)(n * V) * sizeof(float)) == 0, "%s prompt %zu: F16 cache, 1 and 3 threads differ", model_dir, pi);
    double dl = 0, dd = 0, dn = 0;
    int64_t bad = 0;
    const json_value *nll = json_get(pr, "nll"), *am = json_get(pr, "argmax");
    for (int64_t i = 0; i < n * V; i++) {
        dl = fabs(h1[i] - f[i]) > dl ? fabs(h1[i] - f[i]) : dl;
        dd = fabs(h1[i] - h2[i]) > dd ? fabs(h1[i] - h2[i]) : dd;
    }
    for (int64_t i = 0; i < n; i++) {
        double want = 0;
        int64_t wa = -1;
        if (i + 1 < n && json_num(json_at(nll, (size_t)i), &want)) {
            double d = fabs(nll_at(h1 + i * V, V, ids[i + 1]) - want);
            dn = d > dn ? d : dn;
        }
        if (json_int(json_at(am, (size_t)i), &wa) && argmax(h1 + i * V, V) != wa) bad++;
    }
    CHECK(dl <= 2e-2 && dd <= 2e-2 && dn <= 1e-2 && bad == 0,
          "%s prompt %zu, F16 cache: max |logit - F32 cache's| %.3g, prompt vs one by one %.3g, max |NLL - golden| %.3g, %lld argmax flips",
          model_dir, pi, dl, dd, dn, (long long)bad);
    printf("%s prompt %zu, F16 KV cache: max |logit diff| to the F32 cache %.2e, batch vs one by one %.2e, max NLL diff to the golden %.2e\n",
           model_dir, pi, dl, dd, dn);
    free(h1), free(h2), free(h3);
}

static void test_model_goldens(const char *model_dir, const char *goldens) {
    lb_model *m = NULL;
    lb_error e;
    REQUIRE(lb_model_load(model_dir, &m, &e) == LB_OK, "%s", e.msg);
    int64_t V = lb_model_get_info(m)->n_vocab;
    json_doc *g = load_json(goldens);
    const json_value *prompts = json_get(json_root(g), "prompts");
    REQUIRE(json_len(prompts) > 0, "no prompts in %s", goldens);
    for (size_t pi = 0; pi < json_len(prompts); pi++) {
        const json_value *pr = json_at(prompts, pi);
        int64_t n;
        int32_t *ids = ids_of(json_get(pr, "ids"), &n);
        float *lg = run_all(m, ids, n, 2, 0);
        double max_nll = 0, max_logit = 0;
        int64_t bad_argmax = 0;
        const json_value *nll = json_get(pr, "nll"), *am = json_get(pr, "argmax"), *last = json_get(pr, "last_logits");
        for (int64_t i = 0; i + 1 < n; i++) {
            double want = 0;
            json_num(json_at(nll, (size_t)i), &want);
            double d = fabs(nll_at(lg + i * V, V, ids[i + 1]) - want);
            max_nll = d > max_nll ? d : max_nll;
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t want = -1;
            json_int(json_at(am, (size_t)i), &want);
            if (argmax(lg + i * V, V) != want) bad_argmax++;
        }
        REQUIRE((int64_t)json_len(last) == V, "last_logits length");
        for (int64_t i = 0; i < V; i++) {
            double want = 0;
            json_num(json_at(last, (size_t)i), &want);
            double d = fabs(lg[(n - 1) * V + i] - want);
            max_logit = d > max_logit ? d : max_logit;
        }
        CHECK(max_nll <= 2e-3, "%s prompt %zu: max |NLL diff| %.3g > 2e-3", model_dir, pi, max_nll);
        CHECK(max_logit <= 1e-3, "%s prompt %zu: max |last logit diff| %.3g > 1e-3", model_dir, pi, max_logit);
        /* near-ties may flip argmax at fp32 noise; allow none here since golden logits are well separated */
        CHECK(bad_argmax == 0, "%s prompt %zu: %lld argmax mismatches", model_dir, pi, (long long)bad_argmax);
        printf("%s prompt %zu (%lld tokens): max NLL diff %.2e, max last-logit diff %.2e\n", model_dir, pi, (long long)n,
               max_nll, max_logit);
        check_kv_f16(m, model_dir, pi, pr, ids, n, lg);
        free(ids);
        free(lg);
    }
    json_free(g);
    lb_model_free(m);
}

static void test_arch(const char *name, const char *layout) {
    char dir[512], goldens[512];
    snprintf(dir, sizeof dir, "tests/golden/conformance/%s/%s", layout, name);
    snprintf(goldens, sizeof goldens, "tests/golden/conformance/arch/%s/goldens.json", name);
    lb_model *m = NULL;
    lb_error e;
    REQUIRE(lb_model_load(dir, &m, &e) == LB_OK, "%s", e.msg);
    int64_t V = lb_model_get_info(m)->n_vocab;
    json_doc *g = load_json(goldens);
    const json_value *seqs = json_get(json_root(g), "sequences");
    REQUIRE(json_len(seqs) > 0, "no sequences in %s", goldens);
    for (size_t si = 0; si < json_len(seqs); si++) {
        const json_value *sq = json_at(seqs, si);
        int64_t n;
        int32_t *ids = ids_of(json_get(sq, "ids"), &n);
        float *lg = run_all(m, ids, n, 2, 0);
        const json_value *L = json_get(sq, "logits");
        REQUIRE((int64_t)json_len(L) == n, "%s: logits rows", goldens);
        double mx = 0;
        for (int64_t i = 0; i < n; i++) {
            const json_value *row = json_at(L, (size_t)i);
            REQUIRE((int64_t)json_len(row) == V, "%s: logits cols", goldens);
            for (int64_t j = 0; j < V; j++) {
                double want = 0;
                json_num(json_at(row, (size_t)j), &want);
                double d = fabs(lg[i * V + j] - want);
                mx = d > mx ? d : mx;
            }
        }
        CHECK(mx <= 1e-3, "%s (%s) sequence %zu: max |logit diff| %.3g > 1e-3", name, layout, si, mx);
        printf("%s (%s) sequence %zu (%lld tokens): max logit diff %.2e\n", name, layout, si, (long long)n, mx);
        free(ids);
        free(lg);
    }
    json_free(g);
    lb_model_free(m);
}

static void test_consistency(void) {
    lb_model *m = NULL;
    lb_error e;
    REQUIRE(lb_model_load("models/tiny", &m, &e) == LB_OK, "%s", e.msg);
    int64_t V = lb_model_get_info(m)->n_vocab, n = 40;
    int32_t ids[40];
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
    float *a = run_all(m, ids, n, 1, 0), *b = run_all(m, ids, n, 3, 0), *c = run_all(m, ids, n, 2, 1);
    CHECK(memcmp(a, b, (size_t)(n * V) * sizeof(float)) == 0, "1 thread and 3 threads differ");
    double mx = 0;
    for (int64_t i = 0; i < n * V; i++) mx = fabs(a[i] - c[i]) > mx ? fabs(a[i] - c[i]) : mx;
    CHECK(mx < 1e-4, "batch vs token-by-token: max diff %.3g", mx);
    free(a);
    free(b);
    free(c);
    /* a context that is too short and an out-of-vocabulary token are errors, not crashes */
    lb_context_params p = {.n_ctx = 8, .n_threads = 1, .device = {LB_DEVICE_CPU, 0}};
    lb_context *c2 = NULL;
    REQUIRE(lb_context_new(m, &p, &c2, &e) == LB_OK, "%s", e.msg);
    CHECK(lb_context_eval(c2, ids, 9, NULL, 0, &e) == LB_ERR_ARG && strstr(e.msg, "do not fit"), "%s", e.msg);
    int32_t bad = (int32_t)V;
    CHECK(lb_context_eval(c2, &bad, 1, NULL, 0, &e) == LB_ERR_ARG && strstr(e.msg, "outside the vocabulary"), "%s", e.msg);
    lb_context_free(c2);
    lb_model_free(m);
}

/* ---- one layer on its own, whole and stopped early (calibration's statistics runs) ---- */

typedef struct obs_log {
    int n;
    lb_obs_point pt[8];
    int64_t layer[8], dim[8];
    float *x[8];
} obs_log;

static void obs_record(void *user, int64_t layer, lb_obs_point pt, const float *x, int64_t T, int64_t dim) {
    obs_log *L = user;
    if (L->n >= 8) return;
    L->pt[L->n] = pt;
    L->layer[L->n] = layer;
    L->dim[L->n] = dim;
    L->x[L->n] = malloc((size_t)(T * dim) * sizeof(float));
    memcpy(L->x[L->n], x, (size_t)(T * dim) * sizeof(float));
    L->n++;
}

static void obs_clear(obs_log *L) {
    for (int i = 0; i < L->n; i++) free(L->x[i]);
    L->n = 0;
}

/* lb_context_run_layer shows the four matrix inputs of the layer in order; lb_context_run_layer_until(pt)
 * shows the same ones, bit for bit, up to pt and none after, and leaves x alone. */
static void test_run_layer_until(void) {
    lb_model *m = NULL;
    lb_error e;
    REQUIRE(lb_model_load("models/tiny", &m, &e) == LB_OK, "%s", e.msg);
    const int64_t E = lb_model_get_info(m)->n_embd, T = 24, il = 1;
    lb_context_params p = {.n_ctx = 64, .n_threads = 2, .device = {LB_DEVICE_CPU, 0}};
    lb_context *c = NULL;
    REQUIRE(lb_context_new(m, &p, &c, &e) == LB_OK, "%s", e.msg);
    float *x = malloc((size_t)(T * E) * sizeof *x), *x0 = malloc((size_t)(T * E) * sizeof *x0);
    for (int64_t t = 0; t < T; t++) lb_weight_row_f32(&m->tok_embd, (t * 131 + 7) % lb_model_get_info(m)->n_vocab, x0 + t * E);
    obs_log full = {0}, part = {0};
    memcpy(x, x0, (size_t)(T * E) * sizeof *x);
    lb_context_set_observer(c, obs_record, &full);
    CHECK(lb_context_run_layer(c, &m->layers[il], il, x, T, &e) == LB_OK, "%s", e.msg);
    const lb_obs_point order[4] = {LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN, LB_OBS_FFN_IN, LB_OBS_FFN_DOWN_IN};
    CHECK(full.n == 4, "%d points observed in a layer", full.n);
    for (int i = 0; i < full.n && i < 4; i++) CHECK(full.pt[i] == order[i] && full.layer[i] == il, "point %d", i);
    for (int k = 0; k < 4 && full.n == 4; k++) {
        lb_context_set_observer(c, obs_record, &part);
        memcpy(x, x0, (size_t)(T * E) * sizeof *x);
        CHECK(lb_context_run_layer_until(c, &m->layers[il], il, x, T, order[k], &e) == LB_OK, "%s", e.msg);
        CHECK(part.n == k + 1, "stopped at point %d: %d points observed", k, part.n);
        for (int i = 0; i < part.n && i <= k; i++)
            CHECK(part.pt[i] == full.pt[i] && part.dim[i] == full.dim[i] &&
                      !memcmp(part.x[i], full.x[i], (size_t)(T * part.dim[i]) * sizeof(float)),
                  "stopped at point %d: point %d differs from the whole layer's", k, i);
        CHECK(!memcmp(x, x0, (size_t)(T * E) * sizeof *x), "stopped at point %d: x changed", k);
        obs_clear(&part);
    }
    CHECK(lb_context_run_layer_until(c, &m->layers[il], il, x, T, LB_OBS_OUTPUT_IN, &e) == LB_ERR_ARG, "output point accepted");
    obs_clear(&full);
    free(x);
    free(x0);
    lb_context_free(c);
    lb_model_free(m);
}

/* safetensors does not align tensor data: a header one byte longer shifts every tensor off its natural
 * alignment; the logits must not change (and UBSan must not see a misaligned load). */
static void test_misaligned(const char *name) {
    char src[512], dir[] = "/tmp/lb_misaligned_XXXXXX", path[600], cfg[600], cfg_src[512];
    snprintf(src, sizeof src, "tests/golden/conformance/arch/%s/model.safetensors", name);
    snprintf(cfg_src, sizeof cfg_src, "tests/golden/conformance/arch/%s/config.json", name);
    REQUIRE(mkdtemp(dir), "mkdtemp");
    char *data, *ctext;
    size_t len, clen;
    lb_error e;
    REQUIRE(lb_read_file(src, (size_t)1 << 30, &data, &len, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_read_file(cfg_src, 1 << 20, &ctext, &clen, &e) == LB_OK, "%s", e.msg);
    uint64_t hl = 0;
    memcpy(&hl, data, 8);
    uint64_t nl = hl + 1;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    fwrite(&nl, 8, 1, f);
    fwrite(data + 8, 1, hl, f);
    fputc(' ', f);
    fwrite(data + 8 + hl, 1, len - 8 - hl, f);
    fclose(f);
    f = fopen(cfg, "wb");
    fwrite(ctext, 1, clen, f);
    fclose(f);
    lb_model *a = NULL, *b = NULL;
    snprintf(src, sizeof src, "tests/golden/conformance/arch/%s", name);
    REQUIRE(lb_model_load(src, &a, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_model_load(dir, &b, &e) == LB_OK, "%s", e.msg);
    int32_t ids[5] = {1, 7, 99, 300, 42};
    int64_t V = lb_model_get_info(a)->n_vocab;
    float *la = run_all(a, ids, 5, 2, 0), *lb2 = run_all(b, ids, 5, 2, 0);
    CHECK(memcmp(la, lb2, (size_t)(5 * V) * sizeof(float)) == 0, "%s: misaligned tensor data changes the logits", name);
    free(la);
    free(lb2);
    lb_model_free(a);
    lb_model_free(b);
    free(data);
    free(ctext);
    remove(path);
    remove(cfg);
    rmdir(dir);
}

/* llama.cpp's permuted q/k layout with interleaved rope gives the same logits as HF's layout with
 * rotate-half rope (docs/formats.md 1.9); the permutation is built here from its definition. */
static void test_permuted_layout(void) {
    lb_model *m = NULL;
    lb_error e;
    REQUIRE(lb_model_load("tests/golden/conformance/arch/mistral", &m, &e) == LB_OK, "%s", e.msg);
    int32_t ids[9] = {1, 5, 77, 300, 12, 9, 400, 2, 33};
    int64_t V = m->info.n_vocab, D = m->info.head_dim;
    float *ref = run_all(m, ids, 9, 2, 0);
    void *keep[64][2];
    for (int64_t l = 0; l < m->info.n_layer; l++) {
        lb_weight *w[2] = {&m->layers[l].wq, &m->layers[l].wk};
        for (int k = 0; k < 2; k++) {
            REQUIRE(w[k]->type == LB_TYPE_F32, "mistral fixture is f32");
            float *p = malloc((size_t)(w[k]->rows * w[k]->cols) * sizeof *p);
            for (int64_t r = 0; r < w[k]->rows; r++) {
                /* view as (heads, D/2, 2) -> (heads, 2, D/2) swapped: GGUF row 2i+p = HF row p*D/2+i */
                int64_t h = r / D, j = r % D, i = j / 2, par = j % 2, src = h * D + par * (D / 2) + i;
                CHECK(src == lb_llama_qk_hf_row(r, D), "row map %lld", (long long)r);
                memcpy(p + r * w[k]->cols, (const float *)w[k]->data + src * w[k]->cols, (size_t)w[k]->cols * sizeof(float));
            }
            keep[l][k] = p;
            w[k]->data = p;
        }
    }
    m->rope_interleaved = true;
    float *got = run_all(m, ids, 9, 2, 0);
    double mx = 0;
    for (int64_t i = 0; i < 9 * V; i++) mx = fabs(got[i] - ref[i]) > mx ? fabs(got[i] - ref[i]) : mx;
    CHECK(mx < 1e-5, "permuted layout: max logit diff %.3g", mx);
    for (int64_t l = 0; l < m->info.n_layer; l++) {
        free(keep[l][0]);
        free(keep[l][1]);
    }
    free(ref);
    free(got);
    lb_model_free(m);
}

/* lb_context_run_layer_part: the layer run in three parts (to the attention output, on to the FFN input, then
 * to the end), each resuming from what the one before returned, observes the same points with the same
 * values and ends with the same output as the whole layer; bad spans are refused. */
static void test_run_layer_part(void) {
    lb_model *m = NULL;
    lb_error e;
    REQUIRE(lb_model_load("models/tiny", &m, &e) == LB_OK, "%s", e.msg);
    const lb_model_info *h = lb_model_get_info(m);
    const int64_t E = h->n_embd, qd = h->n_head * h->head_dim, T = 21, il = 2;
    lb_context_params p = {.n_ctx = 64, .n_threads = 2, .device = {LB_DEVICE_CPU, 0}};
    lb_context *c = NULL;
    REQUIRE(lb_context_new(m, &p, &c, &e) == LB_OK, "%s", e.msg);
    float *x = malloc((size_t)(T * E) * sizeof *x), *x0 = malloc((size_t)(T * E) * sizeof *x0);
    float *att = malloc((size_t)(T * qd) * sizeof *att);
    for (int64_t t = 0; t < T; t++) lb_weight_row_f32(&m->tok_embd, (t * 97 + 5) % h->n_vocab, x0 + t * E);
    obs_log full = {0}, part = {0};
    memcpy(x, x0, (size_t)(T * E) * sizeof *x);
    lb_context_set_observer(c, obs_record, &full);
    CHECK(lb_context_run_layer(c, &m->layers[il], il, x, T, &e) == LB_OK, "%s", e.msg);
    float *y_full = malloc((size_t)(T * E) * sizeof *y_full);
    memcpy(y_full, x, (size_t)(T * E) * sizeof *x);
    memcpy(x, x0, (size_t)(T * E) * sizeof *x);
    lb_context_set_observer(c, obs_record, &part);
    CHECK(lb_context_run_layer_part(c, &m->layers[il], il, x, att, T, LB_OBS_ATTN_IN, LB_OBS_ATTN_OUT_IN, &e) == LB_OK, "%s", e.msg);
    CHECK(!memcmp(x, x0, (size_t)(T * E) * sizeof *x), "x changed before the attention block's sum");
    CHECK(full.n == 4 && !memcmp(att, full.x[1], (size_t)(T * qd) * sizeof *att), "attention output differs");
    CHECK(lb_context_run_layer_part(c, &m->layers[il], il, x, att, T, LB_OBS_ATTN_OUT_IN, LB_OBS_FFN_IN, &e) == LB_OK, "%s", e.msg);
    CHECK(lb_context_run_layer_part(c, &m->layers[il], il, x, NULL, T, LB_OBS_FFN_IN, -1, &e) == LB_OK, "%s", e.msg);
    CHECK(!memcmp(x, y_full, (size_t)(T * E) * sizeof *x), "the layer in parts ends elsewhere than the whole layer");
    /* observed: ATTN_IN, ATTN_OUT_IN | ATTN_OUT_IN, FFN_IN | FFN_IN, FFN_DOWN_IN */
    const int same_as[6] = {0, 1, 1, 2, 2, 3};
    CHECK(part.n == 6, "%d points observed", part.n);
    for (int i = 0; i < part.n && i < 6 && full.n == 4; i++)
        CHECK(part.pt[i] == full.pt[same_as[i]] && part.dim[i] == full.dim[same_as[i]] &&
                  !memcmp(part.x[i], full.x[same_as[i]], (size_t)(T * part.dim[i]) * sizeof(float)),
              "observation %d differs from the whole layer's", i);
    CHECK(lb_context_run_layer_part(c, &m->layers[il], il, x, NULL, T, LB_OBS_ATTN_OUT_IN, -1, &e) == LB_ERR_ARG,
          "a run from the attention output without it accepted");
    CHECK(lb_context_run_layer_part(c, &m->layers[il], il, x, att, T, LB_OBS_FFN_IN, LB_OBS_ATTN_OUT_IN, &e) == LB_ERR_ARG,
          "a run that stops before it starts accepted");
    CHECK(lb_context_run_layer_part(c, &m->layers[il], il, x, att, T, LB_OBS_FFN_DOWN_IN, -1, &e) == LB_ERR_ARG,
          "a run from inside the FFN accepted");
    obs_clear(&full);
    obs_clear(&part);
    free(x), free(x0), free(att), free(y_full);
    lb_context_free(c);
    lb_model_free(m);
}

/* lb_model_pipeline_split: contiguous non-empty stages covering every layer in order, each boundary the
 * layer boundary nearest its share of the bytes (checked against every other boundary position), and an
 * error for more stages than layers */
static size_t wbytes(const lb_weight *w) { return lb_weight_row_bytes(w) * (size_t)w->rows; }
static void test_pipeline_split(const char *dir) {
    lb_model *m;
    lb_error e;
    REQUIRE(lb_model_load(dir, &m, &e) == LB_OK, "%s", e.msg);
    const int64_t L = m->info.n_layer;
    double layer[64], emb = (double)wbytes(&m->tok_embd), head = (double)wbytes(&m->output);
    REQUIRE(L <= 64, "%s: %lld layers", dir, (long long)L);
    for (int64_t i = 0; i < L; i++) {
        const lb_layer *l = &m->layers[i];
        const lb_weight *ws[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        layer[i] = 0;
        for (int j = 0; j < 7; j++) layer[i] += (double)wbytes(ws[j]);
    }
    for (int R = 1; R <= L; R++) {
        int64_t first[LB_MAX_DEVICES + 1];
        CHECK(lb_model_pipeline_split(m, R, first, &e) == LB_OK, "%s R=%d: %s", dir, R, e.msg);
        CHECK(first[0] == 0 && first[R] == L, "%s R=%d: stages cover [%lld, %lld)", dir, R, (long long)first[0], (long long)first[R]);
        double total = emb + (R > 1 || m->output.data != m->tok_embd.data ? head : 0);
        for (int64_t i = 0; i < L; i++) total += layer[i];
        for (int r = 1; r < R; r++) {
            CHECK(first[r] > first[r - 1], "%s R=%d: stage %d is empty", dir, R, r - 1);
            /* the bytes before boundary i: the embedding and layers < i */
            double want = total * r / R, at = emb;
            for (int64_t i = 0; i < first[r]; i++) at += layer[i];
            for (int64_t i = first[r - 1] + 1; i <= L - (R - r); i++) { /* every allowed position is no nearer */
                double b = emb;
                for (int64_t k = 0; k < i; k++) b += layer[k];
                CHECK(fabs(at - want) <= fabs(b - want), "%s R=%d: boundary %d at layer %lld (%.0f bytes from %.0f), layer %lld is nearer",
                      dir, R, r, (long long)first[r], fabs(at - want), want, (long long)i);
            }
        }
    }
    int64_t first[LB_MAX_DEVICES + 1];
    CHECK(lb_model_pipeline_split(m, (int)L + 1, first, &e) == LB_ERR_ARG && strstr(e.msg, "fewer than"),
          "%s: %lld + 1 stages accepted", dir, (long long)L);
    lb_model_free(m);
}

int main(void) {
    char small[512];
    snprintf(small, sizeof small, "%s/models/small", test_shared_dir());
    test_model_goldens("models/tiny", "models/tiny/goldens.json");
    test_model_goldens(small, "tests/golden/small/goldens.json");
    const char *arch[] = {"llama3_rope", "qwen3", "mistral", "phi3", "llama_tied_bf16"};
    for (int i = 0; i < 5; i++) {
        test_arch(arch[i], "arch");
        test_arch(arch[i], "arch_v4");
    }
    test_consistency();
    test_run_layer_until();
    test_run_layer_part();
    test_misaligned("mistral");
    test_permuted_layout();
    test_misaligned("llama_tied_bf16");
    test_pipeline_split("models/tiny");
    test_pipeline_split(small);
    test_pipeline_split("tests/golden/conformance/arch/llama_tied_bf16");
    TEST_DONE();
}
