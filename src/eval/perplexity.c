/*
 * perplexity.c - windowed perplexity and, against a base model, KL divergence and top-1 agreement.
 *
 * Protocol (the one of llama.cpp's perplexity tool and of our goldens): the text is tokenized whole, cut
 * into non-overlapping windows of ctx tokens from the start (the tail shorter than a window dropped), each
 * window runs from an empty cache, and every position after the first is scored: NLL of token i+1 given
 * tokens 0..i of the window. ppl = exp(mean NLL). KL(base || model) = sum_v p_base(v) (log p_base(v) -
 * log p_model(v)) per scored position, from the logits of both models on the same window.
 */
#include "../model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

lb_eval_params lb_eval_default_params(void) {
    lb_eval_params p = {512, 0, 0, NULL, NULL};
    return p;
}

/* log-sum-exp of n logits */
static double lse(const float *x, int64_t n) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return log(s) + mx;
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* KL(p_base || p_model) from raw logits and their log-sum-exps. */
static double kl_div(const float *base, double lse_b, const float *model, double lse_m, int64_t n) {
    double kl = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double lb = (double)base[i] - lse_b, lm = (double)model[i] - lse_m;
        kl += exp(lb) * (lb - lm);
    }
    return kl > 0.0 ? kl : 0.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

lb_status lb_eval_perplexity(const lb_model *m, const lb_model *base, const int32_t *tokens, int64_t n_tokens,
                             const lb_eval_params *p, lb_eval_result *out, lb_error *err) {
    if (!m || !out || (!tokens && n_tokens > 0)) return lb_err_set(err, LB_ERR_ARG, "lb_eval_perplexity: NULL argument");
    lb_eval_params dp = lb_eval_default_params();
    if (!p) p = &dp;
    int64_t ctx = p->ctx, V = m->info.n_vocab;
    if (ctx < 2) return lb_err_set(err, LB_ERR_ARG, "window length %lld is too short (at least 2 tokens)", (long long)ctx);
    if (base && base->info.n_vocab != V)
        return lb_err_set(err, LB_ERR_ARG, "the base model's vocabulary (%lld) differs from the model's (%lld)",
                          (long long)base->info.n_vocab, (long long)V);
    int64_t chunks = n_tokens / ctx;
    if (chunks == 0)
        return lb_err_set(err, LB_ERR_ARG, "the text has %lld tokens, fewer than one %lld-token window", (long long)n_tokens,
                          (long long)ctx);
    if (p->max_chunks > 0 && p->max_chunks < chunks) chunks = p->max_chunks;

    double t0 = lb_time_sec();
    lb_context_params cp = {ctx, p->n_threads};
    lb_context *c = NULL, *cb = NULL;
    float *lg = NULL, *lgb = NULL;
    double *kls = NULL;
    int64_t n_scored_max = chunks * (ctx - 1);
    lb_status s = lb_context_new(m, &cp, &c, err);
    if (s == LB_OK && base) s = lb_context_new(base, &cp, &cb, err);
    if (s == LB_OK) {
        lg = malloc((size_t)(ctx * V) * sizeof *lg);
        if (base) {
            lgb = malloc((size_t)(ctx * V) * sizeof *lgb);
            kls = malloc((size_t)n_scored_max * sizeof *kls);
        }
        if (!lg || (base && (!lgb || !kls))) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory for %lld x %lld logits",
                                                             (long long)ctx, (long long)V);
    }
    lb_eval_result r;
    memset(&r, 0, sizeof r);
    r.n_tokens = n_tokens;
    double nll_sum = 0.0, nll_base_sum = 0.0, kl_sum = 0.0;
    int64_t agree = 0;
    for (int64_t w = 0; s == LB_OK && w < chunks; w++) {
        const int32_t *tk = tokens + w * ctx;
        lb_context_reset(c);
        s = lb_context_eval(c, tk, ctx, lg, 1, err);
        if (s == LB_OK && cb) {
            lb_context_reset(cb);
            s = lb_context_eval(cb, tk, ctx, lgb, 1, err);
        }
        if (s != LB_OK) break;
        for (int64_t i = 0; i + 1 < ctx; i++) {
            const float *row = lg + i * V;
            double l = lse(row, V);
            nll_sum += l - row[tk[i + 1]];
            if (cb) {
                const float *rb = lgb + i * V;
                double l2 = lse(rb, V);
                nll_base_sum += l2 - rb[tk[i + 1]];
                double kl = kl_div(rb, l2, row, l, V);
                kls[r.n_scored] = kl;
                kl_sum += kl;
                agree += argmax(rb, V) == argmax(row, V);
            }
            r.n_scored++;
        }
        r.chunks++;
        if (p->progress && p->progress(w + 1, chunks, p->progress_user)) s = lb_err_set(err, LB_ERR_CANCELLED, "cancelled");
    }
    if (s == LB_OK) {
        r.mean_nll = nll_sum / (double)r.n_scored;
        r.ppl = exp(r.mean_nll);
        if (cb) {
            r.has_base = 1;
            r.base_mean_nll = nll_base_sum / (double)r.n_scored;
            r.base_ppl = exp(r.base_mean_nll);
            r.kld_mean = kl_sum / (double)r.n_scored;
            r.top1 = (double)agree / (double)r.n_scored;
            qsort(kls, (size_t)r.n_scored, sizeof *kls, cmp_double);
            /* nearest-rank percentile */
            int64_t k = (int64_t)ceil(0.99 * (double)r.n_scored) - 1;
            r.kld_p99 = kls[k < 0 ? 0 : k];
            r.kld_max = kls[r.n_scored - 1];
        }
        r.seconds = lb_time_sec() - t0;
        *out = r;
    }
    free(lg);
    free(lgb);
    free(kls);
    lb_context_free(c);
    lb_context_free(cb);
    return s;
}
