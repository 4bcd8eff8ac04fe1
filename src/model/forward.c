/*
 * forward.c - the decoder forward pass (Llama / Mistral / Qwen2 / Qwen3 / Phi-3) with a KV cache.
 *
 * Follows Hugging Face transformers' modeling code: RMSNorm (x * rsqrt(mean(x^2) + eps) * w), rotary
 * embeddings in the rotate-half convention with inv_freq = 1 / theta^(2i/d) computed in f32 (plus linear
 * and llama3 frequency scaling), grouped-query causal attention with scale 1/sqrt(head_dim), optional
 * q/k/v/o biases and per-head q/k RMSNorm (Qwen3), and the SwiGLU MLP down(silu(gate(x)) * up(x)).
 * Activations are f32; the matrix products of quantized weights quantize them to 8 bits per block (matmul.h).
 * Prompts run in batches of up to n_batch tokens.
 */
#include "model.h"

#include "../cuda/cuda.h"
#include "../quant/matmul.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BATCH 512

struct lb_context {
    const lb_model *m;
    int64_t n_ctx, n_batch, pos;
    lb_pool *pool;
    float *k_cache, *v_cache; /* (n_layer, n_ctx, n_kv * head_dim) each */
    float *rope_cos, *rope_sin; /* (n_ctx, head_dim / 2) */
    /* activations for n_batch tokens */
    float *x;   /* (B, E) residual stream */
    float *xn;  /* (B, E) normed input */
    float *q;   /* (B, H * D) */
    float *k;   /* (B, KV * D) */
    float *v;   /* (B, KV * D) */
    float *att; /* (B, H * D) attention output */
    float *g;   /* (B, F) */
    float *u;   /* (B, F) */
    float *tmp; /* (B, E) */
    float *mm_scratch;  /* pool size x matmul scratch */
    float *att_scratch; /* pool size x n_ctx */
    void *block;        /* one allocation holding all of the above */
    lb_observer_fn obs;
    void *obs_user;
    lb_cuda_ctx *gpu; /* set when the context runs on a CUDA device (cuda/cuda.h); then none of the above is used */
};

void lb_context_set_observer(lb_context *c, lb_observer_fn fn, void *user) {
    if (!c) return;
    c->obs = fn;
    c->obs_user = user;
    if (c->gpu) lb_cuda_ctx_set_observer(c->gpu, fn, user);
}

static void observe(lb_context *c, int64_t layer, lb_obs_point pt, const float *x, int64_t T, int64_t dim) {
    if (c->obs) c->obs(c->obs_user, layer, pt, x, T, dim);
}

lb_context_params lb_context_default_params(void) {
    lb_context_params p = {0, 0, {LB_DEVICE_CPU, 0}};
    return p;
}

/* A context on a CUDA device: the executor in cuda/ holds the cache and activations. */
static lb_status context_new_cuda(const lb_model *m, const lb_context_params *p, int64_t n_ctx, lb_context **out,
                                  lb_error *err) {
    lb_context *c = calloc(1, sizeof *c);
    if (!c) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_batch = n_ctx < DEFAULT_BATCH ? n_ctx : DEFAULT_BATCH;
    lb_status s = lb_cuda_ctx_new(m, p->device.index, n_ctx, c->n_batch, &c->gpu, err);
    if (s != LB_OK) {
        free(c);
        return s;
    }
    *out = c;
    return LB_OK;
}

void lb_rope_inv_freq(const lb_model_info *h, float *inv) {
    int64_t D = h->head_dim;
    for (int64_t i = 0; i < D / 2; i++) {
        float e = (float)(2 * i) / (float)D;
        inv[i] = 1.0f / powf(h->rope_theta, e);
    }
    if (h->rope_scaling == LB_ROPE_LINEAR) {
        for (int64_t i = 0; i < D / 2; i++) inv[i] /= h->rope_factor;
    } else if (h->rope_scaling == LB_ROPE_LLAMA3) {
        double old = (double)h->rope_orig_ctx, lo = h->rope_low_freq_factor, hi = h->rope_high_freq_factor;
        double lo_wl = old / lo, hi_wl = old / hi;
        for (int64_t i = 0; i < D / 2; i++) {
            float f = inv[i];
            double wl = 2.0 * M_PI / f;
            float scaled = wl > lo_wl ? f / h->rope_factor : f;
            if (!(wl < hi_wl) && !(wl > lo_wl)) {
                float smooth = (float)((old / wl - lo) / (hi - lo));
                scaled = (1.0f - smooth) * scaled / h->rope_factor + smooth * scaled;
            }
            inv[i] = scaled;
        }
    }
}

lb_status lb_context_new(const lb_model *m, const lb_context_params *p, lb_context **out, lb_error *err) {
    if (!m || !out) return lb_err_set(err, LB_ERR_ARG, "lb_context_new: NULL argument");
    lb_context_params dp = lb_context_default_params();
    if (!p) p = &dp;
    const lb_model_info *h = &m->info;
    int64_t n_ctx = p->n_ctx > 0 ? p->n_ctx : h->n_ctx_train;
    if (n_ctx <= 0 || n_ctx > (1 << 24)) return lb_err_set(err, LB_ERR_ARG, "context length %lld is out of range", (long long)n_ctx);
    if (h->n_ctx_train > 0 && n_ctx > h->n_ctx_train)
        return lb_err_set(err, LB_ERR_ARG, "a context of %lld tokens exceeds what the model was trained for "
                          "(max_position_embeddings %lld)", (long long)n_ctx, (long long)h->n_ctx_train);
    if (p->device.kind == LB_DEVICE_CUDA) return context_new_cuda(m, p, n_ctx, out, err);
    if (p->device.kind != LB_DEVICE_CPU) return lb_err_set(err, LB_ERR_ARG, "unknown device kind %d", (int)p->device.kind);
    int nt = p->n_threads > 0 ? p->n_threads : lb_cpu_count();
    if (nt > 256) nt = 256;
    lb_context *c = calloc(1, sizeof *c);
    if (!c) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_batch = n_ctx < DEFAULT_BATCH ? n_ctx : DEFAULT_BATCH;
    c->pool = lb_pool_new(nt);
    if (!c->pool) {
        free(c);
        return lb_err_set(err, LB_ERR_NOMEM, "cannot start %d threads", nt);
    }
    int64_t B = c->n_batch, E = h->n_embd, D = h->head_dim, qd = h->n_head * D, kvd = h->n_head_kv * D, F = h->n_ff;
    int64_t kmax = E > qd ? E : qd;
    if (F > kmax) kmax = F;
    size_t sizes[] = {
        (size_t)(h->n_layer * n_ctx * kvd), (size_t)(h->n_layer * n_ctx * kvd), (size_t)(n_ctx * (D / 2)),
        (size_t)(n_ctx * (D / 2)), (size_t)(B * E), (size_t)(B * E), (size_t)(B * qd), (size_t)(B * kvd),
        (size_t)(B * kvd), (size_t)(B * qd), (size_t)(B * F), (size_t)(B * F), (size_t)(B * E),
        lb_matmul_scratch_floats(kmax, B, nt), (size_t)nt * (size_t)n_ctx,
    };
    float **ptrs[] = {&c->k_cache, &c->v_cache, &c->rope_cos, &c->rope_sin, &c->x, &c->xn, &c->q, &c->k,
                      &c->v, &c->att, &c->g, &c->u, &c->tmp, &c->mm_scratch, &c->att_scratch};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += (sizes[i] + 15) & ~(size_t)15;
    c->block = malloc(total * sizeof(float));
    if (!c->block) {
        lb_context_free(c);
        return lb_err_set(err, LB_ERR_NOMEM, "cannot allocate %.1f MiB for a %lld-token context", (double)total * 4 / 1048576.0,
                          (long long)n_ctx);
    }
    float *f = c->block;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *ptrs[i] = f;
        f += (sizes[i] + 15) & ~(size_t)15;
    }
    float *inv = malloc((size_t)(D / 2 + 1) * sizeof *inv);
    if (!inv) {
        lb_context_free(c);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    lb_rope_inv_freq(h, inv);
    for (int64_t pos = 0; pos < n_ctx; pos++)
        for (int64_t i = 0; i < D / 2; i++) {
            float ang = (float)pos * inv[i];
            c->rope_cos[pos * (D / 2) + i] = (float)cos((double)ang);
            c->rope_sin[pos * (D / 2) + i] = (float)sin((double)ang);
        }
    free(inv);
    *out = c;
    return LB_OK;
}

void lb_context_free(lb_context *c) {
    if (!c) return;
    lb_cuda_ctx_free(c->gpu);
    lb_pool_free(c->pool);
    free(c->block);
    free(c);
}

void lb_context_reset(lb_context *c) {
    if (c) c->pos = 0;
}

int64_t lb_context_pos(const lb_context *c) { return c ? c->pos : 0; }

int lb_context_on_gpu(const lb_context *c) { return c && c->gpu; }

/* ---------------------------------------------------------------- building blocks ---------------------- */

static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
}

static void add_bias(float *y, const float *b, int64_t T, int64_t n) {
    if (!b) return;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++) y[t * n + i] += b[i];
}

/*
 * Rotary embedding of n_heads heads of one token: pair i is (x[i], x[i + D/2]) in HF's rotate-half layout,
 * or (x[2i], x[2i+1]) for weights in llama.cpp's permuted "llama" layout (docs/formats.md 1.9); both
 * rotate pair i by pos * inv_freq[i], so the two layouts give the same attention scores.
 */
static void rope(float *v, int64_t n_heads, int64_t D, const float *cs, const float *sn, bool interleaved) {
    int64_t half = D / 2, step = interleaved ? 2 : 1, off = interleaved ? 1 : half;
    for (int64_t hd = 0; hd < n_heads; hd++) {
        float *x = v + hd * D;
        for (int64_t i = 0; i < half; i++) {
            float *pa = x + i * step, *pb = pa + off;
            float a = *pa, b = *pb;
            *pa = a * cs[i] - b * sn[i];
            *pb = b * cs[i] + a * sn[i];
        }
    }
}

typedef struct att_job {
    lb_context *c;
    int64_t layer, pos0, T;
} att_job;

/* one (token, head) pair of causal attention over the cache */
static void att_task(void *arg, int64_t task, int thread) {
    const att_job *j = arg;
    lb_context *c = j->c;
    const lb_model_info *h = &c->m->info;
    int64_t H = h->n_head, D = h->head_dim, kvd = h->n_head_kv * D;
    int64_t t = task / H, hd = task % H, kvh = hd / (H / h->n_head_kv), n = j->pos0 + t + 1;
    const float *q = c->q + t * H * D + hd * D;
    const float *kc = c->k_cache + j->layer * c->n_ctx * kvd + kvh * D;
    const float *vc = c->v_cache + j->layer * c->n_ctx * kvd + kvh * D;
    float *s = c->att_scratch + (size_t)thread * (size_t)c->n_ctx;
    float scale = 1.0f / sqrtf((float)D), mx = -INFINITY;
    lb_vec_dots(q, kc, kvd, n, D, s);
    for (int64_t p = 0; p < n; p++) {
        s[p] *= scale;
        if (s[p] > mx) mx = s[p];
    }
    double sum = 0.0;
    for (int64_t p = 0; p < n; p++) {
        s[p] = expf(s[p] - mx);
        sum += s[p];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t p = 0; p < n; p++) s[p] *= inv;
    lb_vec_wsum(s, vc, kvd, n, D, c->att + t * H * D + hd * D);
}

static void mm(lb_context *c, const float *x, int64_t T, const lb_weight *w, float *out) {
    lb_matmul(c->pool, c->mm_scratch, x, T, w, out, w->rows);
}

/* c->att from the normed input c->xn: q, k, v, rotary, the layer's KV cache, causal attention */
static void attention(lb_context *c, const lb_layer *l, int64_t il, int64_t T) {
    const lb_model_info *h = &c->m->info;
    int64_t D = h->head_dim, H = h->n_head, KV = h->n_head_kv;
    int64_t qd = H * D, kvd = KV * D, pos0 = c->pos;
    mm(c, c->xn, T, &l->wq, c->q);
    mm(c, c->xn, T, &l->wk, c->k);
    mm(c, c->xn, T, &l->wv, c->v);
    add_bias(c->q, l->bq, T, qd);
    add_bias(c->k, l->bk, T, kvd);
    add_bias(c->v, l->bv, T, kvd);
    for (int64_t t = 0; t < T; t++) {
        float *q = c->q + t * qd, *k = c->k + t * kvd;
        if (l->q_norm) {
            for (int64_t hd = 0; hd < H; hd++) rmsnorm(q + hd * D, q + hd * D, l->q_norm, D, h->rms_eps);
            for (int64_t hd = 0; hd < KV; hd++) rmsnorm(k + hd * D, k + hd * D, l->k_norm, D, h->rms_eps);
        }
        const float *cs = c->rope_cos + (pos0 + t) * (D / 2), *sn = c->rope_sin + (pos0 + t) * (D / 2);
        rope(q, H, D, cs, sn, c->m->rope_interleaved);
        rope(k, KV, D, cs, sn, c->m->rope_interleaved);
        size_t off = (size_t)((il * c->n_ctx + pos0 + t) * kvd);
        memcpy(c->k_cache + off, k, (size_t)kvd * sizeof(float));
        memcpy(c->v_cache + off, c->v + t * kvd, (size_t)kvd * sizeof(float));
    }
    att_job aj = {c, il, pos0, T};
    lb_pool_run(c->pool, T * H, att_task, &aj);
}

/*
 * The layer on c->x, from point `from` (LB_OBS_ATTN_IN: the start, c->x the layer's input;
 * LB_OBS_ATTN_OUT_IN: c->x the layer's input and c->att the attention output; LB_OBS_FFN_IN: c->x the
 * residual stream after the attention block), observing every point from `from` on. stop: the point after
 * whose observation the layer ends early (c->x then is the residual stream as it stands), or -1.
 */
static void layer_forward(lb_context *c, const lb_layer *l, int64_t il, int64_t T, int from, int stop) {
    const lb_model_info *h = &c->m->info;
    int64_t E = h->n_embd, qd = h->n_head * h->head_dim, F = h->n_ff;

    if (from == LB_OBS_ATTN_IN) {
        for (int64_t t = 0; t < T; t++) rmsnorm(c->xn + t * E, c->x + t * E, l->attn_norm, E, h->rms_eps);
        observe(c, il, LB_OBS_ATTN_IN, c->xn, T, E);
        if (stop == LB_OBS_ATTN_IN) return;
        attention(c, l, il, T);
    }
    if (from <= LB_OBS_ATTN_OUT_IN) {
        observe(c, il, LB_OBS_ATTN_OUT_IN, c->att, T, qd);
        if (stop == LB_OBS_ATTN_OUT_IN) return;
        mm(c, c->att, T, &l->wo, c->tmp);
        add_bias(c->tmp, l->bo, T, E);
        for (int64_t i = 0; i < T * E; i++) c->x[i] += c->tmp[i];
    }
    for (int64_t t = 0; t < T; t++) rmsnorm(c->xn + t * E, c->x + t * E, l->ffn_norm, E, h->rms_eps);
    observe(c, il, LB_OBS_FFN_IN, c->xn, T, E);
    if (stop == LB_OBS_FFN_IN) return;
    mm(c, c->xn, T, &l->w_gate, c->g);
    mm(c, c->xn, T, &l->w_up, c->u);
    add_bias(c->g, l->b_gate, T, F);
    add_bias(c->u, l->b_up, T, F);
    for (int64_t i = 0; i < T * F; i++) {
        float g = c->g[i];
        c->g[i] = g / (1.0f + expf(-g)) * c->u[i];
    }
    observe(c, il, LB_OBS_FFN_DOWN_IN, c->g, T, F);
    if (stop == LB_OBS_FFN_DOWN_IN) return;
    mm(c, c->g, T, &l->w_down, c->tmp);
    add_bias(c->tmp, l->b_down, T, E);
    for (int64_t i = 0; i < T * E; i++) c->x[i] += c->tmp[i];
}

static lb_status eval_batch(lb_context *c, const int32_t *tokens, int64_t T, float *logits, int all_logits, int want_last,
                            lb_error *err) {
    const lb_model *m = c->m;
    const lb_model_info *h = &m->info;
    int64_t E = h->n_embd, V = h->n_vocab;
    for (int64_t t = 0; t < T; t++) {
        if (tokens[t] < 0 || tokens[t] >= V)
            return lb_err_set(err, LB_ERR_ARG, "token id %d at position %lld is outside the vocabulary (0..%lld)",
                              tokens[t], (long long)(c->pos + t), (long long)V - 1);
    }
    for (int64_t t = 0; t < T; t++) lb_weight_row_f32(&m->tok_embd, tokens[t], c->x + t * E);
    for (int64_t il = 0; il < h->n_layer; il++) layer_forward(c, &m->layers[il], il, T, LB_OBS_ATTN_IN, -1);
    c->pos += T;
    if (!logits) return LB_OK;
    if (all_logits) {
        for (int64_t t = 0; t < T; t++) rmsnorm(c->xn + t * E, c->x + t * E, m->out_norm, E, h->rms_eps);
        observe(c, -1, LB_OBS_OUTPUT_IN, c->xn, T, E);
        lb_matmul(c->pool, c->mm_scratch, c->xn, T, &m->output, logits, V);
    } else if (want_last) {
        rmsnorm(c->xn, c->x + (T - 1) * E, m->out_norm, E, h->rms_eps);
        lb_matmul(c->pool, c->mm_scratch, c->xn, 1, &m->output, logits, V);
    }
    return LB_OK;
}

lb_status lb_context_eval(lb_context *c, const int32_t *tokens, int64_t n, float *logits, int all_logits, lb_error *err) {
    if (!c || (!tokens && n > 0) || n < 0) return lb_err_set(err, LB_ERR_ARG, "lb_context_eval: invalid argument");
    if (n == 0) return LB_OK;
    if (c->pos + n > c->n_ctx)
        return lb_err_set(err, LB_ERR_ARG, "%lld tokens do not fit: the context holds %lld and has %lld left",
                          (long long)n, (long long)c->n_ctx, (long long)(c->n_ctx - c->pos));
    int64_t V = c->m->info.n_vocab;
    for (int64_t i = 0; i < n; i += c->n_batch) {
        int64_t T = n - i < c->n_batch ? n - i : c->n_batch;
        float *lg = logits ? (all_logits ? logits + i * V : logits) : NULL;
        lb_status s;
        if (c->gpu) {
            int want = !logits ? 0 : all_logits ? 2 : i + T == n;
            s = lb_cuda_ctx_eval(c->gpu, tokens + i, T, c->pos, want, lg, err);
            if (s == LB_OK) c->pos += T;
        } else {
            s = eval_batch(c, tokens + i, T, lg, all_logits, i + T == n, err);
        }
        if (s != LB_OK) return s;
    }
    return LB_OK;
}

lb_status lb_context_score(lb_context *c, const lb_context *base, const int32_t *tokens, int64_t n, double *lse,
                           double *nll, int64_t *amax, double *kl, lb_error *err) {
    if (!c || !c->gpu || (base && !base->gpu))
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "lb_context_score: only contexts on a CUDA device score on the device");
    if (n < 2 || n > c->n_batch) return lb_err_set(err, LB_ERR_ARG, "lb_context_score: %lld tokens is not one batch", (long long)n);
    for (int64_t t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->m->info.n_vocab)
            return lb_err_set(err, LB_ERR_ARG, "token id %d at position %lld is outside the vocabulary", tokens[t], (long long)t);
    lb_context_reset(c);
    lb_status s = lb_cuda_ctx_eval(c->gpu, tokens, n, 0, 2, NULL, err);
    if (s == LB_OK) c->pos = n;
    if (s == LB_OK) s = lb_cuda_ctx_score(c->gpu, base ? base->gpu : NULL, tokens, n, lse, nll, amax, kl, err);
    return s;
}

static lb_status no_gpu_layers(const lb_context *c, lb_error *err) {
    return c->gpu ? lb_err_set(err, LB_ERR_UNSUPPORTED, "one-layer runs for calibration run on the CPU only") : LB_OK;
}

lb_status lb_context_run_layer_until(lb_context *c, const lb_layer *l, int64_t il, const float *x, int64_t T,
                                     lb_obs_point stop, lb_error *err) {
    if (no_gpu_layers(c, err)) return LB_ERR_UNSUPPORTED;
    int64_t E = c->m->info.n_embd;
    if (T < 1 || T > c->n_batch || T > c->n_ctx)
        return lb_err_set(err, LB_ERR_ARG, "%lld tokens do not fit one batch of %lld", (long long)T, (long long)c->n_batch);
    if (stop < LB_OBS_ATTN_IN || stop > LB_OBS_FFN_DOWN_IN)
        return lb_err_set(err, LB_ERR_ARG, "run_layer_until: %d is not a point inside a layer", (int)stop);
    c->pos = 0;
    memcpy(c->x, x, (size_t)(T * E) * sizeof(float));
    layer_forward(c, l, il, T, LB_OBS_ATTN_IN, (int)stop);
    c->pos = 0;
    return LB_OK;
}

lb_status lb_context_run_layer(lb_context *c, const lb_layer *l, int64_t il, float *x, int64_t T, lb_error *err) {
    if (no_gpu_layers(c, err)) return LB_ERR_UNSUPPORTED;
    int64_t E = c->m->info.n_embd;
    if (T < 1 || T > c->n_batch || T > c->n_ctx)
        return lb_err_set(err, LB_ERR_ARG, "%lld tokens do not fit one batch of %lld", (long long)T, (long long)c->n_batch);
    c->pos = 0;
    memcpy(c->x, x, (size_t)(T * E) * sizeof(float));
    layer_forward(c, l, il, T, LB_OBS_ATTN_IN, -1);
    memcpy(x, c->x, (size_t)(T * E) * sizeof(float));
    c->pos = 0;
    return LB_OK;
}

lb_status lb_context_run_layer_part(lb_context *c, const lb_layer *l, int64_t il, float *x, float *att, int64_t T,
                                    lb_obs_point from, int stop, lb_error *err) {
    if (no_gpu_layers(c, err)) return LB_ERR_UNSUPPORTED;
    const lb_model_info *h = &c->m->info;
    const int64_t E = h->n_embd, qd = h->n_head * h->head_dim;
    if (T < 1 || T > c->n_batch || T > c->n_ctx)
        return lb_err_set(err, LB_ERR_ARG, "%lld tokens do not fit one batch of %lld", (long long)T, (long long)c->n_batch);
    if (from < LB_OBS_ATTN_IN || from > LB_OBS_FFN_IN || (stop != -1 && (stop < (int)from || stop > LB_OBS_FFN_DOWN_IN)) ||
        (from == LB_OBS_ATTN_OUT_IN && !att))
        return lb_err_set(err, LB_ERR_ARG, "run_layer_part: no run from point %d to %d", (int)from, stop);
    c->pos = 0;
    memcpy(c->x, x, (size_t)(T * E) * sizeof(float));
    if (from == LB_OBS_ATTN_OUT_IN) memcpy(c->att, att, (size_t)(T * qd) * sizeof(float));
    layer_forward(c, l, il, T, (int)from, stop);
    if (att && from == LB_OBS_ATTN_IN && (stop == -1 || stop >= LB_OBS_ATTN_OUT_IN))
        memcpy(att, c->att, (size_t)(T * qd) * sizeof(float));
    memcpy(x, c->x, (size_t)(T * E) * sizeof(float));
    c->pos = 0;
    return LB_OK;
}
