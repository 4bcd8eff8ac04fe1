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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tokens a GPU batch of eval windows holds (several windows of ctx to a batch; one when ctx is longer). Each
 * context then keeps that many x n_vocab logits on the device (1 GB for 2,048 tokens at a 128,256-token vocabulary).
 * LB_EVAL_GPU_BATCH=N in the environment sets it (by default one window to a batch, for the memory: four windows of 512
 * were 29 % faster on the 8B shape in run 15, and tests/cuda checks them against one to a batch). */
#define EVAL_GPU_BATCH 0

static int64_t gpu_batch_tokens(void) {
    const char *v = getenv("LB_EVAL_GPU_BATCH");
    return v && *v ? atoll(v) : EVAL_GPU_BATCH;
}

lb_eval_params lb_eval_default_params(void) {
    lb_eval_params p;
    memset(&p, 0, sizeof p); /* the CPU, every CPU, every full window, no progress callback */
    p.ctx = 512;
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

/* The per-position scores of one window, computed over the context's pool (positions are independent; the
 * sums over positions are taken afterwards in position order, so the results do not depend on threads). */
typedef struct score_job {
    const float *lg, *lgb; /* (ctx, V) the model's and, for KL, the base model's logits */
    const double *lseb;    /* (ctx) the base's log-sum-exps, for KL */
    int64_t V;
    double *lse, *kl;      /* out: per position */
    int64_t *am;           /* out: argmax per position, or NULL */
} score_job;

static void score_task(void *arg, int64_t i, int thread) {
    const score_job *j = arg;
    (void)thread;
    const float *row = j->lg + i * j->V;
    j->lse[i] = lse(row, j->V);
    if (j->am) j->am[i] = argmax(row, j->V);
    if (j->kl) j->kl[i] = kl_div(j->lgb + i * j->V, j->lseb[i], row, j->lse[i], j->V);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* per-model accumulators */
typedef struct acc {
    lb_context *c;
    double nll, kl;
    int64_t agree;
    double *kls;
} acc;

static void finish(lb_eval_result *r, const acc *a, int64_t n_scored, double base_nll, bool has_base) {
    r->mean_nll = a->nll / (double)n_scored;
    r->ppl = exp(r->mean_nll);
    if (!has_base) return;
    r->has_base = 1;
    r->base_mean_nll = base_nll / (double)n_scored;
    r->base_ppl = exp(r->base_mean_nll);
    r->kld_mean = a->kl / (double)n_scored;
    r->top1 = (double)a->agree / (double)n_scored;
    qsort(a->kls, (size_t)n_scored, sizeof *a->kls, cmp_double);
    int64_t k = (int64_t)ceil(0.99 * (double)n_scored) - 1; /* nearest-rank percentile */
    r->kld_p99 = a->kls[k < 0 ? 0 : k];
    r->kld_max = a->kls[n_scored - 1];
}

/* nw consecutive windows on a GPU, in one batch when nw > 1: the base model once, then each model scored against it on
 * the device; the sums run window after window, position after position, as on the CPU. lseb/amb/nllw/amw: nw ctx
 * entries of scratch. */
static lb_status score_windows_gpu(acc *A, int n_models, lb_context *cb, const int32_t *tk, int64_t ctx, int64_t nw, int64_t n_scored,
                                   double *base_nll, double *lseb, int64_t *amb, double *nllw, int64_t *amw, lb_error *err) {
    lb_status s = LB_OK;
    const int64_t n = nw * ctx, win = nw > 1 ? ctx : 0, m = nw * (ctx - 1);
    if (cb) {
        if ((s = lb_context_score(cb, NULL, tk, n, win, lseb, nllw, amb, NULL, err)) != LB_OK) return s;
        for (int64_t i = 0; i < m; i++) *base_nll += nllw[i];
    }
    for (int k = 0; k < n_models; k++) {
        acc *a = &A[k];
        double *kls = cb ? a->kls + n_scored : NULL;
        if ((s = lb_context_score(a->c, cb, tk, n, win, NULL, nllw, amw, kls, err)) != LB_OK) return s;
        for (int64_t i = 0; i < m; i++) {
            a->nll += nllw[i];
            if (cb) {
                a->kl += kls[i];
                a->agree += amb[i] == amw[i];
            }
        }
    }
    return s;
}

lb_status lb_eval_perplexity_multi(const lb_model *const *models, int n_models, const lb_model *base, const int32_t *tokens,
                                   int64_t n_tokens, const lb_eval_params *p, lb_eval_result *out, lb_error *err) {
    if (!models || n_models < 1 || !out || (!tokens && n_tokens > 0))
        return lb_err_set(err, LB_ERR_ARG, "lb_eval_perplexity: invalid argument");
    lb_eval_params dp = lb_eval_default_params();
    if (!p) p = &dp;
    int64_t ctx = p->ctx, V = models[0]->info.n_vocab;
    if (ctx < 2) return lb_err_set(err, LB_ERR_ARG, "window length %lld is too short (at least 2 tokens)", (long long)ctx);
    for (int k = 1; k < n_models; k++)
        if (models[k]->info.n_vocab != V)
            return lb_err_set(err, LB_ERR_ARG, "model %d's vocabulary (%lld) differs from the first model's (%lld)", k + 1,
                              (long long)models[k]->info.n_vocab, (long long)V);
    if (base && base->info.n_vocab != V)
        return lb_err_set(err, LB_ERR_ARG, "the base model's vocabulary (%lld) differs from the model's (%lld)",
                          (long long)base->info.n_vocab, (long long)V);
    int64_t chunks = n_tokens / ctx;
    if (chunks == 0)
        return lb_err_set(err, LB_ERR_ARG, "the text has %lld tokens, fewer than one %lld-token window", (long long)n_tokens,
                          (long long)ctx);
    if (p->max_chunks > 0 && p->max_chunks < chunks) chunks = p->max_chunks;

    double t0 = lb_time_sec();
    lb_context_params cp = lb_context_default_params();
    cp.n_ctx = ctx, cp.n_threads = p->n_threads, cp.device = p->device, cp.n_devices = p->n_devices, cp.exact = p->exact, cp.kv_f16 = p->kv_f16;
    memcpy(cp.devices, p->devices, sizeof cp.devices);
    bool gpu = p->device.kind != LB_DEVICE_CPU;
    lb_context *cb = NULL;
    float *lg = NULL, *lgb = NULL;
    double *lseb = NULL, *nllw = NULL, *lsew = NULL;
    int64_t *amb = NULL, *amw = NULL;
    int64_t n_scored_max = chunks * (ctx - 1), n_scored = 0;
    acc *A = calloc((size_t)n_models, sizeof *A);
    lb_status s = A ? LB_OK : lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    /* on a GPU, windows run EVAL_GPU_BATCH tokens to a batch (each weight read and dequantized once per batch), or one
     * at a time when the device has no room for that */
    int64_t W = gpu ? gpu_batch_tokens() / ctx : 1;
    W = W < 1 ? 1 : W > chunks ? chunks : W;
    for (;;) {
        for (int k = 0; s == LB_OK && k < n_models; k++) s = lb_context_new_scoring(models[k], &cp, W, &A[k].c, err);
        if (s == LB_OK && base) s = lb_context_new_scoring(base, &cp, W, &cb, err);
        if (s != LB_ERR_DEVICE || W == 1) break;
        for (int k = 0; k < n_models; k++) lb_context_free(A[k].c), A[k].c = NULL;
        lb_context_free(cb);
        cb = NULL;
        W = 1, s = LB_OK;
    }
    for (int k = 0; s == LB_OK && base && k < n_models; k++)
        if (!(A[k].kls = malloc((size_t)n_scored_max * sizeof(double)))) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (s == LB_OK && gpu) { /* logits stay on the device; per-position scores come back */
        lseb = malloc((size_t)(W * ctx) * sizeof *lseb);
        amb = malloc((size_t)(W * ctx) * sizeof *amb);
        nllw = malloc((size_t)(W * ctx) * sizeof *nllw);
        amw = malloc((size_t)(W * ctx) * sizeof *amw);
        if (!lseb || !amb || !nllw || !amw) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    } else if (s == LB_OK) {
        lg = malloc((size_t)(ctx * V) * sizeof *lg);
        lsew = malloc((size_t)ctx * sizeof *lsew);
        amw = malloc((size_t)ctx * sizeof *amw);
        if (base) {
            lgb = malloc((size_t)(ctx * V) * sizeof *lgb);
            lseb = malloc((size_t)ctx * sizeof *lseb);
            amb = malloc((size_t)ctx * sizeof *amb);
        }
        if (!lg || !lsew || !amw || (base && (!lgb || !lseb || !amb)))
            s = lb_err_set(err, LB_ERR_NOMEM, "out of memory for %lld x %lld logits", (long long)ctx, (long long)V);
    }
    const double t_load = lb_time_sec() - t0;
    double base_nll = 0.0;
    int64_t done_chunks = 0;
    for (int64_t w = 0; s == LB_OK && w < chunks;) {
        const int32_t *tk = tokens + w * ctx;
        const int64_t nw = chunks - w < W ? chunks - w : W; /* windows w .. w + nw - 1 */
        if (gpu) {
            s = score_windows_gpu(A, n_models, cb, tk, ctx, nw, n_scored, &base_nll, lseb, amb, nllw, amw, err);
            if (s != LB_OK) break;
        } else if (cb) { /* the base model once per window, shared by every model */
            lb_context_reset(cb);
            if ((s = lb_context_eval(cb, tk, ctx, lgb, 1, err)) != LB_OK) break;
            score_job j = {lgb, NULL, NULL, V, lseb, NULL, amb};
            lb_pool_run(lb_context_pool(cb), ctx - 1, score_task, &j);
            for (int64_t i = 0; i + 1 < ctx; i++) base_nll += lseb[i] - lgb[i * V + tk[i + 1]];
        }
        for (int k = 0; !gpu && s == LB_OK && k < n_models; k++) {
            acc *a = &A[k];
            lb_context_reset(a->c);
            if ((s = lb_context_eval(a->c, tk, ctx, lg, 1, err)) != LB_OK) break;
            score_job j = {lg, lgb, lseb, V, lsew, cb ? a->kls + n_scored : NULL, cb ? amw : NULL};
            lb_pool_run(lb_context_pool(a->c), ctx - 1, score_task, &j);
            for (int64_t i = 0; i + 1 < ctx; i++) {
                a->nll += lsew[i] - lg[i * V + tk[i + 1]];
                if (cb) {
                    a->kl += a->kls[n_scored + i];
                    a->agree += amb[i] == amw[i];
                }
            }
        }
        if (s != LB_OK) break;
        for (int k = -1; !p->allow_nonfinite && k < n_models; k++)
            if (!isfinite(k < 0 ? base_nll : A[k].nll) || (cb && k >= 0 && !isfinite(A[k].kl))) {
                char who[32] = "the base model", which[64];
                if (k >= 0) snprintf(who, sizeof who, "model %d", k + 1);
                if (nw > 1) snprintf(which, sizeof which, "windows %lld-%lld", (long long)w, (long long)(w + nw - 1));
                else snprintf(which, sizeof which, "window %lld", (long long)w);
                s = lb_err_set(err, LB_ERR_FORMAT, "%s: the logits of %s are not finite (the weights or the activations overflow)", who,
                               which);
                break;
            }
        if (s != LB_OK) break;
        n_scored += nw * (ctx - 1);
        done_chunks += nw;
        for (int64_t i = 0; s == LB_OK && i < nw; i++)
            if (p->progress && p->progress(w + i + 1, chunks, p->progress_user)) s = lb_err_set(err, LB_ERR_CANCELLED, "cancelled");
        w += nw;
    }
    if (s == LB_OK) {
        double secs = lb_time_sec() - t0;
        for (int k = 0; k < n_models; k++) {
            lb_eval_result *r = &out[k];
            memset(r, 0, sizeof *r);
            r->n_tokens = n_tokens;
            r->chunks = done_chunks;
            r->n_scored = n_scored;
            r->seconds = secs;
            r->load_seconds = t_load;
            finish(r, &A[k], n_scored, base_nll, cb != NULL);
        }
    }
    for (int k = 0; A && k < n_models; k++) {
        lb_context_free(A[k].c);
        free(A[k].kls);
    }
    free(A);
    free(lg);
    free(lgb);
    free(lseb);
    free(amb);
    free(nllw);
    free(lsew);
    free(amw);
    lb_context_free(cb);
    return s;
}

lb_status lb_eval_perplexity(const lb_model *m, const lb_model *base, const int32_t *tokens, int64_t n_tokens,
                             const lb_eval_params *p, lb_eval_result *out, lb_error *err) {
    if (!m) return lb_err_set(err, LB_ERR_ARG, "lb_eval_perplexity: NULL model");
    return lb_eval_perplexity_multi(&m, 1, base, tokens, n_tokens, p, out, err);
}
