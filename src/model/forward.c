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
#include "../quant/cpu/cpu.h"
#include "../quant/matmul.h"
#include "../quant/mm_tile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BATCH 512
/* Product inputs of one token are normed and quantized in chunks of this many elements across the threads
 * (a multiple of every block size and of 16). */
#define LB_INPUT_CHUNK 256
/* Quantized copies one product input can need at once (q, k and v could each have their own block size). */
#define LB_ACT_AREAS 3
/* A one-token product step is cut into about this many tasks per thread, each of whole tiles: few hand-outs
 * and long row streams per task (2 threads, alternating runs: 4 was 4-8 % faster than 16 on small q4_k_m and 1B
 * q4_0 decode, 2 level with 4), with some slack for threads that fall behind. */
#define TASKS_PER_THREAD 4
/* Query tokens per attention task of a prompt: each key and value row is read once for the block
 * (LB_ATT_QMAX of quant/cpu/cpu.h at most). */
#define ATT_QBLOCK 8
/* Attention tasks of a step of T tokens: (block of ATT_QBLOCK tokens, head) */
static int64_t att_blocks(int64_t T) { return (T + ATT_QBLOCK - 1) / ATT_QBLOCK; }
/* Steps of a layer's plan, at most. */
#define STEPS_PER_LAYER 13

struct step;

struct lb_context {
    const lb_model *m;
    int64_t n_ctx, n_batch, pos;
    lb_pool *pool;
    float *k_cache, *v_cache; /* (n_layer, n_ctx, n_kv * head_dim) each; F16 values (uint16_t) when kv_f16 */
    int kv_f16;
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
    float *att_scratch; /* pool size x att_rows x n_ctx: attention scores */
    int64_t att_rows;   /* query tokens per attention task, at most */
    void *block;        /* one allocation holding all of the above */
    uint8_t *act[LB_ACT_AREAS]; /* quantized product inputs, B rows each */
    uint8_t *slots;     /* pool size x slot_bytes: the threads' tile scratch */
    size_t slot_bytes;
    void *mm_block;     /* one 64-byte aligned allocation holding act and slots */
    struct step *plan;  /* the steps of the current forward pass, n_plan of them */
    int64_t *ends;      /* their tasks' ends, for lb_pool_run_stages */
    int n_plan, max_plan;
    float norm_r;       /* RMSNorm scale of a token normed in chunks */
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
    lb_context_params p;
    memset(&p, 0, sizeof p); /* the CPU, the model's context length, every CPU */
    return p;
}

static size_t weight_bytes(const lb_weight *w) { return lb_weight_row_bytes(w) * (size_t)w->rows; }

lb_status lb_model_pipeline_split(const lb_model *m, int R, int64_t *first, lb_error *err) {
    const int64_t L = m->info.n_layer;
    if (R < 1 || R > LB_MAX_DEVICES) return lb_err_set(err, LB_ERR_ARG, "a pipeline of %d stages (1..%d)", R, LB_MAX_DEVICES);
    if (L < R)
        return lb_err_set(err, LB_ERR_ARG, "the model has %lld layers, fewer than the %d devices to split them over", (long long)L, R);
    double *cum = malloc((size_t)(L + 1) * sizeof *cum); /* cum[i]: bytes of stage 0's embedding and layers < i */
    if (!cum) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    cum[0] = (double)weight_bytes(&m->tok_embd);
    for (int64_t i = 0; i < L; i++) {
        const lb_layer *l = &m->layers[i];
        const lb_weight *ws[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        double b = 0;
        for (int j = 0; j < 7; j++) b += (double)weight_bytes(ws[j]);
        cum[i + 1] = cum[i] + b;
    }
    /* the last stage holds the head (a copy of the embedding when tied and R > 1) */
    const double total = cum[L] + (R > 1 || m->output.data != m->tok_embd.data ? (double)weight_bytes(&m->output) : 0.0);
    first[0] = 0;
    for (int r = 1; r < R; r++) { /* the layer boundary nearest r / R of the bytes, every stage keeping a layer */
        const double want = total * r / R;
        int64_t i = 1;
        while (i < L && cum[i] < want) i++;
        if (i > 1 && want - cum[i - 1] < cum[i] - want) i--;
        if (i < first[r - 1] + 1) i = first[r - 1] + 1;
        if (i > L - (R - r)) i = L - (R - r);
        first[r] = i;
    }
    first[R] = L;
    free(cum);
    return LB_OK;
}

/* A context on a CUDA device (or a pipeline of them): the executor in cuda/ holds the cache and activations. */
static lb_status context_new_cuda(const lb_model *m, const lb_context_params *p, int64_t n_ctx, int64_t n_seq, lb_context **out,
                                  lb_error *err) {
    int devs[LB_MAX_DEVICES], R = p->n_devices > 1 ? p->n_devices : 1;
    int64_t first[LB_MAX_DEVICES + 1];
    if (p->n_devices > LB_MAX_DEVICES) return lb_err_set(err, LB_ERR_ARG, "%d devices (at most %d)", p->n_devices, LB_MAX_DEVICES);
    if (p->n_devices > 1)
        memcpy(devs, p->devices, (size_t)R * sizeof *devs);
    else if (p->n_devices == -1) { /* every visible GPU */
        int n = lb_cuda_device_count();
        if (n == 0) return lb_cuda_device_check(0, err); /* why there is none */
        R = n < LB_MAX_DEVICES ? n : LB_MAX_DEVICES;
        for (int r = 0; r < R; r++) devs[r] = r;
    } else
        devs[0] = p->device.index;
    lb_status s = lb_cuda_device_check(devs[0], err); /* no driver or device: say so before anything else */
    if (s == LB_OK) s = lb_model_pipeline_split(m, R, first, err);
    if (s != LB_OK) return s;
    lb_context *c = calloc(1, sizeof *c);
    if (!c) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_batch = n_seq > 0 ? n_seq * n_ctx : n_ctx < DEFAULT_BATCH ? n_ctx : DEFAULT_BATCH;
    s = lb_cuda_ctx_new_pipeline(m, devs, first, R, n_ctx, c->n_batch, p->exact != 0, &c->gpu, err);
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

static bool plan_new(lb_context *c, int nt, int64_t kmax);

static lb_status context_new(const lb_model *m, const lb_context_params *p, int64_t n_seq, lb_context **out, lb_error *err);

lb_status lb_context_new(const lb_model *m, const lb_context_params *p, lb_context **out, lb_error *err) {
    return context_new(m, p, 0, out, err);
}

lb_status lb_context_new_scoring(const lb_model *m, const lb_context_params *p, int64_t n_seq, lb_context **out, lb_error *err) {
    if (n_seq < 1 || n_seq > 4096) return lb_err_set(err, LB_ERR_ARG, "lb_context_new_scoring: %lld sequences", (long long)n_seq);
    return context_new(m, p, n_seq, out, err);
}

static lb_status context_new(const lb_model *m, const lb_context_params *p, int64_t n_seq, lb_context **out, lb_error *err) {
    if (!m || !out) return lb_err_set(err, LB_ERR_ARG, "lb_context_new: NULL argument");
    lb_context_params dp = lb_context_default_params();
    if (!p) p = &dp;
    const lb_model_info *h = &m->info;
    int64_t n_ctx = p->n_ctx > 0 ? p->n_ctx : h->n_ctx_train;
    if (n_ctx <= 0 || n_ctx > (1 << 24)) return lb_err_set(err, LB_ERR_ARG, "context length %lld is out of range", (long long)n_ctx);
    if (h->n_ctx_train > 0 && n_ctx > h->n_ctx_train)
        return lb_err_set(err, LB_ERR_ARG, "a context of %lld tokens exceeds what the model was trained for "
                          "(max_position_embeddings %lld)", (long long)n_ctx, (long long)h->n_ctx_train);
    if (p->device.kind == LB_DEVICE_CUDA) return context_new_cuda(m, p, n_ctx, n_seq, out, err);
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
    c->kv_f16 = p->kv_f16 != 0;
    const size_t kvn = (size_t)(h->n_layer * n_ctx * kvd), kvf = c->kv_f16 ? (kvn + 1) / 2 : kvn; /* floats each */
    size_t sizes[] = {
        kvf, kvf, (size_t)(n_ctx * (D / 2)),
        (size_t)(n_ctx * (D / 2)), (size_t)(B * E), (size_t)(B * E), (size_t)(B * qd), (size_t)(B * kvd),
        (size_t)(B * kvd), (size_t)(B * qd), (size_t)(B * F), (size_t)(B * F), (size_t)(B * E),
        (size_t)nt * (size_t)(B < ATT_QBLOCK ? B : ATT_QBLOCK) * (size_t)n_ctx,
    };
    c->att_rows = B < ATT_QBLOCK ? B : ATT_QBLOCK;
    float **ptrs[] = {&c->k_cache, &c->v_cache, &c->rope_cos, &c->rope_sin, &c->x, &c->xn, &c->q, &c->k,
                      &c->v, &c->att, &c->g, &c->u, &c->tmp, &c->att_scratch};
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
    if (!plan_new(c, nt, kmax)) {
        lb_context_free(c);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
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
    free(c->mm_block);
    free(c->plan);
    free(c->ends);
    free(c);
}

void lb_context_reset(lb_context *c) {
    if (c) c->pos = 0;
}

int64_t lb_context_pos(const lb_context *c) { return c ? c->pos : 0; }

int lb_context_on_gpu(const lb_context *c) { return c && c->gpu; }

lb_pool *lb_context_pool(lb_context *c) { return c ? c->pool : NULL; }

/* ---------------------------------------------------------------- building blocks ---------------------- */

/* RMSNorm in two halves: r for a row of n (lb_rms_scale, cpu.h), then out = w * (x * r) over any part of it */
static void rms_apply(float *out, const float *x, const float *w, int64_t n, float r) {
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
}

static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    rms_apply(out, x, w, n, lb_rms_scale(x, n, eps));
}

static void add_vec(float *y, const float *b, int64_t n) {
    if (b)
        for (int64_t i = 0; i < n; i++) y[i] += b[i];
}

/*
 * Rotary embedding of n_heads heads of one token: pair i is (x[i], x[i + D/2]) in HF's rotate-half layout,
 * or (x[2i], x[2i+1]) for weights in llama.cpp's permuted "llama" layout (docs/formats.md 1.9); both
 * rotate pair i by pos * inv_freq[i], so the two layouts give the same attention scores.
 */
static void rope(float *v, int64_t n_heads, int64_t D, const float *cs, const float *sn, bool interleaved) {
    int64_t half = D / 2;
    for (int64_t hd = 0; hd < n_heads; hd++) {
        float *x = v + hd * D;
        if (interleaved) {
            float *restrict y = x;
            for (int64_t i = 0; i < half; i++) {
                float a = y[2 * i], b = y[2 * i + 1];
                y[2 * i] = a * cs[i] - b * sn[i];
                y[2 * i + 1] = b * cs[i] + a * sn[i];
            }
        } else {
            float *restrict xa = x, *restrict xb = x + half;
            for (int64_t i = 0; i < half; i++) {
                float a = xa[i], b = xb[i];
                xa[i] = a * cs[i] - b * sn[i];
                xb[i] = b * cs[i] + a * sn[i];
            }
        }
    }
}

/* ---------------------------------------------------------------- the layer as a plan of steps --------- */
/*
 * A forward pass on the CPU is a list of steps, each a set of independent tasks (rows of a norm, tiles of
 * weight rows, attention heads); consecutive steps run as the stages of one pool run (lb_pool_run_stages),
 * so a decoded token costs one hand-over to the pool instead of one per matrix product, and the steps
 * between the products (norms, activation quantization, biases, rotary, SwiGLU, residual adds) are split
 * across the threads too. Each product input is quantized once per block size and shared by the products
 * that read it. Every value is computed by the same code as a plain sequential pass (the products by
 * lb_mm_tile, the arithmetic of lb_matmul), so results do not depend on the thread count. With an observer
 * attached, the run breaks after each observed step to call it.
 */

typedef enum step_kind {
    S_NONE,    /* no work (an observation point at the start of a partial layer) */
    S_NORM_R,  /* 1 task: RMSNorm scale of the one token whose norm is split in chunks */
    S_INPUT,   /* (token, chunk): x = RMSNorm(src) when norm is set; quantize x per block size */
    S_PROD,    /* tiles of one to three products of the same input, one after the other */
    S_KV,      /* (token, kv head): k/v biases, k norm, rotary, KV cache */
    S_ATT,     /* (block of tokens, head): q bias, q norm, rotary, causal attention over the cache */
    S_SWIGLU,  /* tiles of gate and up over the same rows, biases, silu(gate) * up */
} step_kind;

/* The input of products: T rows of K floats, and per block size its quantized rows. */
typedef struct prod_in {
    float *x;                /* (T, K) */
    const float *src, *norm; /* RMSNorm: x = norm(src), src (T, K); norm NULL: x is given */
    int64_t T, K, chunk;     /* T == 1 splits the row into chunks of `chunk` (K % chunk == 0) */
    int nq;
    lb_mm_in q[LB_ACT_AREAS];
    lb_mm_in f;              /* the f32 view for float weights */
} prod_in;

typedef struct prod {
    const lb_weight *w;
    const lb_mm_in *in;
    float *out;      /* (T, ldo) */
    int64_t ldo;
    const float *b;  /* bias or NULL */
    float *resid;    /* residual: resid (T, ldo) += out + b, or NULL */
} prod;

typedef struct step {
    step_kind kind;
    int64_t n; /* tasks */
    int64_t il, T;
    const lb_layer *l;
    prod_in in;   /* S_NORM_R, S_INPUT */
    prod p[3];    /* S_PROD (np of them), S_SWIGLU (gate, up) */
    int np;
    int64_t tiles[3], tasks[3]; /* per product: tiles of rows, and tasks of `group` tiles */
    int64_t group;
    int obs;      /* observation after this step (-1: none): x (obs_T, obs_dim) at layer il */
    const float *obs_x;
    int64_t obs_dim;
} step;

/* The plan's arrays and the products' scratch: LB_ACT_AREAS quantized inputs of B rows of up to kmax
 * elements (in blocks of the smallest block size), one tile slot per thread. */
static bool plan_new(lb_context *c, int nt, int64_t kmax) {
    int64_t be_min = 0;
    for (int t = 0; t < LB_TYPE_COUNT; t++) {
        const lb_type_traits *tt = lb_type_traits_get((lb_type)t);
        if (tt && tt->is_quant && (be_min == 0 || tt->block_elems < be_min)) be_min = tt->block_elems;
    }
    size_t area = ((size_t)c->n_batch * lb_mm_act_row_bytes(kmax, be_min) + 63) & ~(size_t)63;
    c->slot_bytes = lb_mm_slot_bytes(kmax);
    c->mm_block = aligned_alloc(64, LB_ACT_AREAS * area + (size_t)nt * c->slot_bytes);
    c->max_plan = (int)(STEPS_PER_LAYER * c->m->info.n_layer + STEPS_PER_LAYER);
    c->plan = malloc((size_t)c->max_plan * sizeof *c->plan);
    c->ends = malloc((size_t)c->max_plan * sizeof *c->ends);
    if (!c->mm_block || !c->plan || !c->ends) return false;
    for (int i = 0; i < LB_ACT_AREAS; i++) c->act[i] = (uint8_t *)c->mm_block + i * area;
    c->slots = (uint8_t *)c->mm_block + LB_ACT_AREAS * area;
    return true;
}

static int64_t ntiles(int64_t rows) { return (rows + LB_MM_TILE - 1) / LB_MM_TILE; }

/* the quantized view of in for w, or the f32 view */
static const lb_mm_in *in_for(const prod_in *in, const lb_weight *w) {
    int64_t be = lb_mm_act_block(w);
    for (int i = 0; i < in->nq; i++)
        if (in->q[i].be == be) return &in->q[i];
    return &in->f;
}

static step *add_step(lb_context *c, step_kind kind, int64_t n, int64_t il, int64_t T, const lb_layer *l) {
    step *s = &c->plan[c->n_plan++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->n = n;
    s->il = il;
    s->T = T;
    s->l = l;
    s->obs = -1;
    return s;
}

/* the steps that make x (T, K) (RMSNorm of src when norm) the input of products with weights ws */
static prod_in *add_input(lb_context *c, float *x, const float *src, const float *norm, int64_t T, int64_t K,
                          const lb_weight *const *ws, int nw, int64_t il) {
    int64_t chunk = T == 1 && K % LB_INPUT_CHUNK == 0 ? LB_INPUT_CHUNK : K;
    if (norm && chunk < K) add_step(c, S_NORM_R, 1, il, T, NULL);
    step *s = add_step(c, S_INPUT, T * (K / chunk), il, T, NULL);
    prod_in *in = &s->in;
    *in = (prod_in){.x = x, .src = src, .norm = norm, .T = T, .K = K, .chunk = chunk};
    in->f = (lb_mm_in){x, NULL, T, K, 0, NULL};
    for (int i = 0; i < nw; i++) {
        int64_t be = lb_mm_act_block(ws[i]);
        bool seen = be == 0;
        for (int j = 0; j < in->nq && !seen; j++) seen = in->q[j].be == be;
        if (seen) continue;
        in->q[in->nq] = (lb_mm_in){x, c->act[in->nq], T, K, be, NULL};
        in->nq++;
    }
    if (norm && chunk < K) s[-1].in = *in;
    return in;
}

static void set_prod(prod *p, const lb_weight *w, const prod_in *in, float *out, int64_t ldo, const float *b, float *resid) {
    *p = (prod){w, in_for(in, w), out, ldo, b, resid};
}

static void observe_after(step *s, int pt, const float *x, int64_t dim) {
    s->obs = pt;
    s->obs_x = x;
    s->obs_dim = dim;
}

/* Append the steps of layer il on c->x from point `from` to point `stop` (see layer_forward). */
static void plan_layer(lb_context *c, const lb_layer *l, int64_t il, int64_t T, int from, int stop) {
    const lb_model_info *h = &c->m->info;
    int64_t E = h->n_embd, D = h->head_dim, qd = h->n_head * D, kvd = h->n_head_kv * D, F = h->n_ff;
    if (from == LB_OBS_ATTN_IN) {
        const lb_weight *ws[] = {&l->wq, &l->wk, &l->wv};
        prod_in *in = add_input(c, c->xn, c->x, l->attn_norm, T, E, ws, 3, il);
        observe_after(&c->plan[c->n_plan - 1], LB_OBS_ATTN_IN, c->xn, E);
        if (stop == LB_OBS_ATTN_IN) return;
        step *s = add_step(c, S_PROD, 0, il, T, l);
        set_prod(&s->p[0], &l->wq, in, c->q, qd, NULL, NULL);
        set_prod(&s->p[1], &l->wk, in, c->k, kvd, NULL, NULL);
        set_prod(&s->p[2], &l->wv, in, c->v, kvd, NULL, NULL);
        s->np = 3;
        add_step(c, S_KV, T * h->n_head_kv, il, T, l);
        observe_after(add_step(c, S_ATT, att_blocks(T) * h->n_head, il, T, l), LB_OBS_ATTN_OUT_IN, c->att, qd);
    } else if (from == LB_OBS_ATTN_OUT_IN) {
        observe_after(add_step(c, S_NONE, 0, il, T, l), LB_OBS_ATTN_OUT_IN, c->att, qd);
    }
    if (from <= LB_OBS_ATTN_OUT_IN) {
        if (stop == LB_OBS_ATTN_OUT_IN) return;
        const lb_weight *wo = &l->wo;
        prod_in *in = add_input(c, c->att, NULL, NULL, T, qd, &wo, 1, il);
        step *s = add_step(c, S_PROD, 0, il, T, l);
        set_prod(&s->p[0], wo, in, c->tmp, E, l->bo, c->x);
        s->np = 1;
    }
    const lb_weight *ws[] = {&l->w_gate, &l->w_up};
    prod_in *in = add_input(c, c->xn, c->x, l->ffn_norm, T, E, ws, 2, il);
    observe_after(&c->plan[c->n_plan - 1], LB_OBS_FFN_IN, c->xn, E);
    if (stop == LB_OBS_FFN_IN) return;
    step *s = add_step(c, S_SWIGLU, 0, il, T, l);
    set_prod(&s->p[0], &l->w_gate, in, c->g, F, l->b_gate, NULL);
    set_prod(&s->p[1], &l->w_up, in, c->u, F, l->b_up, NULL);
    s->np = 2;
    observe_after(s, LB_OBS_FFN_DOWN_IN, c->g, F);
    if (stop == LB_OBS_FFN_DOWN_IN) return;
    const lb_weight *wd = &l->w_down;
    in = add_input(c, c->g, NULL, NULL, T, F, &wd, 1, il);
    s = add_step(c, S_PROD, 0, il, T, l);
    set_prod(&s->p[0], wd, in, c->tmp, E, l->b_down, c->x);
    s->np = 1;
}

/* ---------------------------------------------------------------- the steps' tasks --------------------- */

static void input_task(lb_context *c, const step *s, int64_t task) {
    const prod_in *in = &s->in;
    int64_t nch = in->K / in->chunk, t = task / nch, k0 = task % nch * in->chunk;
    if (in->norm) {
        const float *src = in->src + t * in->K;
        float r = nch > 1 ? c->norm_r : lb_rms_scale(src, in->K, c->m->info.rms_eps);
        rms_apply(in->x + t * in->K + k0, src + k0, in->norm + k0, in->chunk, r);
    }
    for (int i = 0; i < in->nq; i++) lb_mm_quantize(&in->q[i], t, k0, in->chunk);
}

/* tile r0 of product p for all T tokens, then its bias and residual */
static void prod_tile(lb_context *c, const prod *p, int64_t T, int64_t r0, int thread) {
    int R = (int)(p->w->rows - r0 < LB_MM_TILE ? p->w->rows - r0 : LB_MM_TILE);
    lb_mm_tile(p->in, p->w, r0, R, p->out, p->ldo, c->slots + (size_t)thread * c->slot_bytes);
    if (!p->b && !p->resid) return;
    for (int64_t t = 0; t < T; t++) {
        float *o = p->out + t * p->ldo + r0;
        if (p->b) add_vec(o, p->b + r0, R);
        if (p->resid)
            for (int r = 0; r < R; r++) p->resid[t * p->ldo + r0 + r] += o[r];
    }
}

static void prod_task(lb_context *c, const step *s, int64_t task, int thread) {
    int i = 0;
    while (task >= s->tasks[i]) task -= s->tasks[i++];
    int64_t t1 = (task + 1) * s->group < s->tiles[i] ? (task + 1) * s->group : s->tiles[i];
    for (int64_t tile = task * s->group; tile < t1; tile++) prod_tile(c, &s->p[i], s->T, tile * LB_MM_TILE, thread);
}

/* tile `tile` of gate and of up, then silu(gate) * up over its rows */
static void swiglu_tile(lb_context *c, const step *s, int64_t tile, int thread) {
    int64_t r0 = tile * LB_MM_TILE, F = s->p[0].ldo;
    int R = (int)(F - r0 < LB_MM_TILE ? F - r0 : LB_MM_TILE);
    prod_tile(c, &s->p[0], s->T, r0, thread);
    prod_tile(c, &s->p[1], s->T, r0, thread);
    lb_vec_swiglu(c->g + r0, c->u + r0, R, s->T, F);
}

static void swiglu_task(lb_context *c, const step *s, int64_t task, int thread) {
    int64_t t1 = (task + 1) * s->group < s->tiles[0] ? (task + 1) * s->group : s->tiles[0];
    for (int64_t tile = task * s->group; tile < t1; tile++) swiglu_tile(c, s, tile, thread);
}

/* token t, kv head j: biases of k and v, k norm, rotary, into the cache */
static void kv_task(lb_context *c, const step *s, int64_t task) {
    const lb_model_info *h = &c->m->info;
    int64_t D = h->head_dim, KV = h->n_head_kv, kvd = KV * D, t = task / KV, j = task % KV, pos = c->pos + t;
    float *k = c->k + t * kvd + j * D, *v = c->v + t * kvd + j * D;
    if (s->l->bk) add_vec(k, s->l->bk + j * D, D);
    if (s->l->bv) add_vec(v, s->l->bv + j * D, D);
    if (s->l->k_norm) rmsnorm(k, k, s->l->k_norm, D, h->rms_eps);
    rope(k, 1, D, c->rope_cos + pos * (D / 2), c->rope_sin + pos * (D / 2), c->m->rope_interleaved);
    size_t off = (size_t)((s->il * c->n_ctx + pos) * kvd + j * D);
    if (c->kv_f16) {
        uint16_t *kh = (uint16_t *)c->k_cache + off, *vh = (uint16_t *)c->v_cache + off;
        for (int64_t i = 0; i < D; i++) kh[i] = lb_f32_to_fp16(k[i]), vh[i] = lb_f32_to_fp16(v[i]);
        return;
    }
    memcpy(c->k_cache + off, k, (size_t)D * sizeof(float));
    memcpy(c->v_cache + off, v, (size_t)D * sizeof(float));
}

/* block b of tokens, head hd: q's bias, norm and rotary per token, then causal attention over the cache (token t
 * attends to positions 0 .. pos + t). The last block, with the longest attention, comes first, so that the
 * threads finish together. Every score, softmax and output element is the same as for one token at a time. */
static void att_task(lb_context *c, const step *s, int64_t task, int thread) {
    const lb_model_info *h = &c->m->info;
    int64_t H = h->n_head, D = h->head_dim, kvd = h->n_head_kv * D;
    int64_t b = att_blocks(s->T) - 1 - task / H, hd = task % H, kvh = hd / (H / h->n_head_kv);
    int64_t t0 = b * ATT_QBLOCK, nq = s->T - t0 < ATT_QBLOCK ? s->T - t0 : ATT_QBLOCK, n[ATT_QBLOCK];
    for (int64_t j = 0; j < nq; j++) {
        int64_t pos = c->pos + t0 + j;
        float *q = c->q + (t0 + j) * H * D + hd * D;
        if (s->l->bq) add_vec(q, s->l->bq + hd * D, D);
        if (s->l->q_norm) rmsnorm(q, q, s->l->q_norm, D, h->rms_eps);
        rope(q, 1, D, c->rope_cos + pos * (D / 2), c->rope_sin + pos * (D / 2), c->m->rope_interleaved);
        n[j] = pos + 1;
    }
    const size_t koff = (size_t)(s->il * c->n_ctx * kvd + kvh * D); /* elements, F32 or F16 */
    const int f16 = c->kv_f16;
    const void *kc = f16 ? (const void *)((const uint16_t *)c->k_cache + koff) : (const void *)(c->k_cache + koff);
    const void *vc = f16 ? (const void *)((const uint16_t *)c->v_cache + koff) : (const void *)(c->v_cache + koff);
    const float *q = c->q + t0 * H * D + hd * D;
    float *out = c->att + t0 * H * D + hd * D;
    float *sc = c->att_scratch + (size_t)thread * c->att_rows * (size_t)c->n_ctx;
    float scale = 1.0f / sqrtf((float)D);
    if (nq == 1) {
        lb_vec_dots(q, kc, f16, kvd, n[0], D, sc);
        lb_vec_softmax(sc, n[0], scale);
        lb_vec_wsum(sc, vc, f16, kvd, n[0], D, out);
        return;
    }
    /* the block's scores over the last token's rows (the first tokens' extra scores are not used) */
    lb_vec_dotsq(q, H * D, (int)nq, kc, f16, kvd, n[nq - 1], D, sc, c->n_ctx);
    for (int64_t j = 0; j < nq; j++) lb_vec_softmax(sc + j * c->n_ctx, n[j], scale);
    lb_vec_wsumq(sc, c->n_ctx, (int)nq, n, vc, f16, kvd, D, out, H * D);
}

typedef struct plan_run {
    lb_context *c;
    const step *s; /* the run's first step */
} plan_run;

static void step_task(void *arg, int stage, int64_t task, int thread) {
    const plan_run *pr = arg;
    lb_context *c = pr->c;
    const step *s = pr->s + stage;
    switch (s->kind) {
    case S_NORM_R: c->norm_r = lb_rms_scale(s->in.src, s->in.K, c->m->info.rms_eps); break;
    case S_INPUT: input_task(c, s, task); break;
    case S_PROD: prod_task(c, s, task, thread); break;
    case S_KV: kv_task(c, s, task); break;
    case S_ATT: att_task(c, s, task, thread); break;
    case S_SWIGLU: swiglu_task(c, s, task, thread); break;
    case S_NONE: break;
    }
}

/* Run c->plan: consecutive steps as one staged pool run, broken after each observed step when an observer
 * is attached. */
static void run_plan(lb_context *c) {
    for (int i = 0; i < c->n_plan; i++) {
        step *s = &c->plan[i];
        if (s->kind != S_PROD && s->kind != S_SWIGLU) continue;
        int np = s->kind == S_PROD ? s->np : 1;
        int64_t all = 0;
        for (int k = 0; k < np; k++) all += s->tiles[k] = ntiles(s->p[k].w->rows);
        /* one token: a task of several tiles where there are many, fewer hand-outs of tiny tasks */
        s->group = s->T == 1 ? all / (TASKS_PER_THREAD * lb_pool_size(c->pool)) : 1;
        if (s->group < 1) s->group = 1;
        s->n = 0;
        for (int k = 0; k < np; k++) s->n += s->tasks[k] = (s->tiles[k] + s->group - 1) / s->group;
    }
    int i = 0;
    while (i < c->n_plan) {
        int j = i;
        while (j < c->n_plan - 1 && !(c->obs && c->plan[j].obs >= 0)) j++;
        for (int k = i; k <= j; k++) c->ends[k - i] = (k > i ? c->ends[k - i - 1] : 0) + c->plan[k].n;
        plan_run pr = {c, &c->plan[i]};
        lb_pool_run_stages(c->pool, j - i + 1, c->ends, step_task, &pr);
        const step *s = &c->plan[j];
        if (c->obs && s->obs >= 0) observe(c, s->il, (lb_obs_point)s->obs, s->obs_x, s->T, s->obs_dim);
        i = j + 1;
    }
}

/*
 * The layer on c->x, from point `from` (LB_OBS_ATTN_IN: the start, c->x the layer's input;
 * LB_OBS_ATTN_OUT_IN: c->x the layer's input and c->att the attention output; LB_OBS_FFN_IN: c->x the
 * residual stream after the attention block), observing every point from `from` on. stop: the point after
 * whose observation the layer ends early (c->x then is the residual stream as it stands), or -1.
 */
static void layer_forward(lb_context *c, const lb_layer *l, int64_t il, int64_t T, int from, int stop) {
    c->n_plan = 0;
    plan_layer(c, l, il, T, from, stop);
    run_plan(c);
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
    c->n_plan = 0;
    for (int64_t il = 0; il < h->n_layer; il++) plan_layer(c, &m->layers[il], il, T, LB_OBS_ATTN_IN, -1);
    if (logits && (all_logits || want_last)) {
        const lb_weight *wo = &m->output;
        int64_t To = all_logits ? T : 1;
        prod_in *in = add_input(c, c->xn, c->x + (T - To) * E, m->out_norm, To, E, &wo, 1, -1);
        if (all_logits) observe_after(&c->plan[c->n_plan - 1], LB_OBS_OUTPUT_IN, c->xn, E);
        step *s = add_step(c, S_PROD, 0, -1, To, NULL);
        set_prod(&s->p[0], wo, in, logits, V, NULL, NULL);
        s->np = 1;
    }
    run_plan(c);
    c->pos += T;
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

lb_status lb_context_score(lb_context *c, const lb_context *base, const int32_t *tokens, int64_t n, int64_t win, double *lse,
                           double *nll, int64_t *amax, double *kl, lb_error *err) {
    if (!c || !c->gpu || (base && !base->gpu))
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "lb_context_score: only contexts on a CUDA device score on the device");
    if (n < 2 || n > c->n_batch) return lb_err_set(err, LB_ERR_ARG, "lb_context_score: %lld tokens is not one batch", (long long)n);
    if (win && (win < 2 || win > c->n_ctx || n % win))
        return lb_err_set(err, LB_ERR_ARG, "lb_context_score: %lld tokens are not windows of %lld", (long long)n, (long long)win);
    if (!win && n > c->n_ctx)
        return lb_err_set(err, LB_ERR_ARG, "lb_context_score: %lld tokens do not fit a %lld-token context", (long long)n, (long long)c->n_ctx);
    for (int64_t t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->m->info.n_vocab)
            return lb_err_set(err, LB_ERR_ARG, "token id %d at position %lld is outside the vocabulary", tokens[t], (long long)t);
    lb_context_reset(c);
    lb_status s = win ? lb_cuda_ctx_eval_windows(c->gpu, tokens, n, win, err) : lb_cuda_ctx_eval(c->gpu, tokens, n, 0, 2, NULL, err);
    if (s == LB_OK) c->pos = win ? 0 : n;
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
