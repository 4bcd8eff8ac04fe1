/*
 * test_eval.c - lb_eval_perplexity against a direct computation written here from per-window logits:
 * mean NLL over positions 1..ctx-1 of each window, KL(base || model), its 99th percentile (nearest rank),
 * top-1 agreement; windows cut from the start with the tail dropped; errors for short text and for models
 * of different vocabularies.
 */
#include "core/core.h"
#include "test.h"

#include <math.h>

static void log_softmax(const float *x, int64_t n, double *out) {
    double mx = x[0], s = 0;
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int64_t i = 0; i < n; i++) s += exp(x[i] - mx);
    double l = log(s) + mx;
    for (int64_t i = 0; i < n; i++) out[i] = x[i] - l;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    char small[512];
    snprintf(small, sizeof small, "%s/models/small", test_shared_dir());
    lb_model *m = NULL, *base = NULL;
    lb_error e;
    REQUIRE(lb_model_load("models/tiny", &m, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_model_load(small, &base, &e) == LB_OK, "%s", e.msg);
    int64_t V = lb_model_get_info(m)->n_vocab, ctx = 48, chunks = 3, n = ctx * chunks + 17;
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)((i * 2654435761u + 11) % (uint64_t)V);

    /* direct computation */
    float *lm = malloc((size_t)(ctx * V) * sizeof *lm), *lb = malloc((size_t)(ctx * V) * sizeof *lb);
    double *pm = malloc((size_t)V * sizeof *pm), *pb = malloc((size_t)V * sizeof *pb);
    double *kls = malloc((size_t)(chunks * ctx) * sizeof *kls);
    double nll = 0, nll_b = 0, kl_sum = 0;
    int64_t scored = 0, agree = 0;
    lb_context_params cp = {.n_ctx = ctx, .n_threads = 2, .device = {LB_DEVICE_CPU, 0}};
    for (int64_t w = 0; w < chunks; w++) {
        lb_context *c1, *c2;
        REQUIRE(lb_context_new(m, &cp, &c1, &e) == LB_OK && lb_context_new(base, &cp, &c2, &e) == LB_OK, "%s", e.msg);
        REQUIRE(lb_context_eval(c1, tok + w * ctx, ctx, lm, 1, &e) == LB_OK, "%s", e.msg);
        REQUIRE(lb_context_eval(c2, tok + w * ctx, ctx, lb, 1, &e) == LB_OK, "%s", e.msg);
        for (int64_t i = 0; i + 1 < ctx; i++) {
            log_softmax(lm + i * V, V, pm);
            log_softmax(lb + i * V, V, pb);
            int32_t next = tok[w * ctx + i + 1];
            nll -= pm[next];
            nll_b -= pb[next];
            double kl = 0;
            int64_t am = 0, ab = 0;
            for (int64_t v = 0; v < V; v++) {
                kl += exp(pb[v]) * (pb[v] - pm[v]);
                if (pm[v] > pm[am]) am = v;
                if (pb[v] > pb[ab]) ab = v;
            }
            kls[scored++] = kl;
            kl_sum += kl;
            agree += am == ab;
        }
        lb_context_free(c1);
        lb_context_free(c2);
    }
    qsort(kls, (size_t)scored, sizeof *kls, cmp);
    double p99 = kls[(int64_t)ceil(0.99 * (double)scored) - 1];

    lb_eval_params p = lb_eval_default_params();
    p.ctx = ctx;
    p.n_threads = 2;
    lb_eval_result r;
    REQUIRE(lb_eval_perplexity(m, base, tok, n, &p, &r, &e) == LB_OK, "%s", e.msg);
    CHECK(r.chunks == chunks && r.n_scored == scored && r.n_tokens == n, "windows: %lld chunks, %lld scored",
          (long long)r.chunks, (long long)r.n_scored);
    CHECK(fabs(r.mean_nll - nll / (double)scored) < 1e-9, "mean NLL %.12f vs %.12f", r.mean_nll, nll / (double)scored);
    CHECK(fabs(r.ppl - exp(nll / (double)scored)) < 1e-6 * r.ppl, "ppl");
    CHECK(fabs(r.base_mean_nll - nll_b / (double)scored) < 1e-9, "base NLL");
    CHECK(fabs(r.kld_mean - kl_sum / (double)scored) < 1e-6 * (kl_sum / (double)scored), "KLD %.9f vs %.9f", r.kld_mean,
          kl_sum / (double)scored);
    CHECK(fabs(r.kld_p99 - p99) < 1e-6 * p99, "KLD p99 %.9f vs %.9f", r.kld_p99, p99);
    CHECK(fabs(r.kld_max - kls[scored - 1]) < 1e-6 * kls[scored - 1], "KLD max");
    CHECK(fabs(r.top1 - (double)agree / (double)scored) < 1e-12, "top1 %.6f vs %.6f", r.top1, (double)agree / (double)scored);
    CHECK(r.kld_mean > 0.01, "two different models have a positive KL divergence (%.4f)", r.kld_mean);

    /* several models at once: each result equals its single-model run */
    {
        const lb_model *both[2] = {base, m};
        lb_eval_result rm[2], r1;
        REQUIRE(lb_eval_perplexity_multi(both, 2, m, tok, n, &p, rm, &e) == LB_OK, "%s", e.msg);
        REQUIRE(lb_eval_perplexity(base, m, tok, n, &p, &r1, &e) == LB_OK, "%s", e.msg);
        CHECK(rm[0].mean_nll == r1.mean_nll && rm[0].kld_mean == r1.kld_mean && rm[0].kld_p99 == r1.kld_p99 &&
                  rm[0].top1 == r1.top1, "multi-model result 1 differs from its single run");
        CHECK(fabs(rm[1].mean_nll - rm[1].base_mean_nll) < 1e-12 && rm[1].kld_mean < 1e-12 && rm[1].top1 == 1.0,
              "the base against itself");
    }

    /* max_chunks limits the windows */
    p.max_chunks = 1;
    REQUIRE(lb_eval_perplexity(m, NULL, tok, n, &p, &r, &e) == LB_OK, "%s", e.msg);
    CHECK(r.chunks == 1 && r.n_scored == ctx - 1 && !r.has_base, "max_chunks");

    /* errors */
    p.max_chunks = 0;
    CHECK(lb_eval_perplexity(m, NULL, tok, ctx - 1, &p, &r, &e) == LB_ERR_ARG && strstr(e.msg, "fewer than one"), "%s", e.msg);
    lb_model *other = NULL;
    REQUIRE(lb_model_load("tests/golden/conformance/arch/mistral", &other, &e) == LB_OK, "%s", e.msg);
    CHECK(lb_eval_perplexity(m, other, tok, n, &p, &r, &e) == LB_ERR_ARG && strstr(e.msg, "vocabulary"), "%s", e.msg);
    lb_model_free(other);

    free(tok);
    free(lm);
    free(lb);
    free(pm);
    free(pb);
    free(kls);
    lb_model_free(m);
    lb_model_free(base);
    TEST_DONE();
}
