/*
 * quantize.c - lb_quantize_model: a Hugging Face checkpoint or a GGUF file into a quantized GGUF file.
 *
 * The output is what llama.cpp's converter + llama-quantize would make (docs/formats.md 1.7-1.9, 2.7):
 * GGUF v3, llama.cpp tensor names and hyperparameter keys, the tokenizer in tokenizer.ggml.*, q/k rows
 * of arch "llama" permuted, norms and biases in F32, weights in the types the mixture rules choose.
 * Tensors are streamed: each is converted to f32 rows, quantized row-parallel on the thread pool (rows are
 * independent, so the bytes do not depend on the thread count), written, and its source pages released.
 */
#include "../io/gguf.h"
#include "../io/imatrix.h"
#include "../model/arch.h"
#include "../cuda/cuda.h"
#include "../model/model.h"
#include "../text/text.h"
#include "../quant/quant.h"
#include "calib.h"
#include "encoders.h"
#include "mix.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows per quantization task: enough work to amortize the hand-off, small enough to balance. */
#define ROWS_PER_TASK 16

static const char *METHODS[] = {"rtn", "imatrix", "gptq", "awq", "awq+gptq"};

const char *lb_method_name(lb_method m) { return (unsigned)m <= LB_METHOD_AWQ_GPTQ ? METHODS[m] : "?"; }

int lb_method_from_name(const char *name) {
    for (int k = 0; k <= LB_METHOD_AWQ_GPTQ; k++)
        if (name && !strcmp(name, METHODS[k])) return k;
    return -1;
}

lb_quantize_params lb_quantize_default_params(void) {
    lb_quantize_params p;
    memset(&p, 0, sizeof p);
    p.ftype = "q4_k_m";
    p.output_type = -1;
    p.token_embd_type = -1;
    return p;
}

void lb_quantize_report_free(lb_quantize_report *r) {
    if (!r) return;
    free(r->tensors);
    r->tensors = NULL;
    r->n_tensors = 0;
}

/* One output tensor: where its values come from. */
typedef struct out_tensor {
    char name[64];
    int n_dims;
    int64_t ne[2];          /* GGUF order */
    const lb_weight *w;     /* a matrix, or */
    const float *vec;       /* an f32 vector (norms, biases) */
    bool permute_qk;        /* HF q/k rows -> llama.cpp's permuted order */
    lb_type type;
    bool fallback;
    int64_t layer;          /* decoder layer, or -1 */
    int slot;               /* within a layer: matrices 0..6 (q k v o gate up down), 7 attn_norm, 8 ffn_norm,
                               9 v bias; -1 otherwise */
} out_tensor;

typedef struct plan {
    out_tensor *t;
    int64_t n, cap;
} plan;

static lb_status plan_add(plan *p, const char *name, const lb_weight *w, const float *vec, int64_t vec_n, bool perm,
                          int64_t layer, int slot, lb_error *err) {
    if (p->n == p->cap) {
        int64_t cap = p->cap ? 2 * p->cap : 64;
        out_tensor *t = realloc(p->t, (size_t)cap * sizeof *t);
        if (!t) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        p->t = t;
        p->cap = cap;
    }
    out_tensor *o = &p->t[p->n++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->w = w;
    o->vec = vec;
    o->permute_qk = perm;
    o->layer = layer;
    o->slot = slot;
    if (w) {
        o->n_dims = 2;
        o->ne[0] = w->cols;
        o->ne[1] = w->rows;
    } else {
        o->n_dims = 1;
        o->ne[0] = vec_n;
        o->ne[1] = 1;
    }
    return LB_OK;
}

/* The GGUF tensors of a model, in llama.cpp's converter order. */
static lb_status build_plan(const lb_model *m, bool permute, plan *p, lb_error *err) {
    const lb_model_info *h = &m->info;
    int64_t E = h->n_embd, D = h->head_dim, qd = h->n_head * D, kvd = h->n_head_kv * D;
    char n[64];
    lb_status s = plan_add(p, "token_embd.weight", &m->tok_embd, NULL, 0, false, -1, -1, err);
    for (int64_t i = 0; s == LB_OK && i < h->n_layer; i++) {
        const lb_layer *l = &m->layers[i];
        struct { lb_role role; const lb_weight *w; const float *v; int64_t len; bool perm; int slot; } items[] = {
            {LB_ROLE_ATTN_NORM, NULL, l->attn_norm, E, false, 7},
            {LB_ROLE_ATTN_Q, &l->wq, NULL, 0, permute, 0},
            {LB_ROLE_ATTN_Q_BIAS, NULL, l->bq, qd, false, -1},
            {LB_ROLE_ATTN_K, &l->wk, NULL, 0, permute, 1},
            {LB_ROLE_ATTN_K_BIAS, NULL, l->bk, kvd, false, -1},
            {LB_ROLE_ATTN_V, &l->wv, NULL, 0, false, 2},
            {LB_ROLE_ATTN_V_BIAS, NULL, l->bv, kvd, false, 9},
            {LB_ROLE_ATTN_Q_NORM, NULL, l->q_norm, D, false, -1},
            {LB_ROLE_ATTN_K_NORM, NULL, l->k_norm, D, false, -1},
            {LB_ROLE_ATTN_OUT, &l->wo, NULL, 0, false, 3},
            {LB_ROLE_FFN_NORM, NULL, l->ffn_norm, E, false, 8},
            {LB_ROLE_FFN_GATE, &l->w_gate, NULL, 0, false, 4},
            {LB_ROLE_FFN_UP, &l->w_up, NULL, 0, false, 5},
            {LB_ROLE_FFN_DOWN, &l->w_down, NULL, 0, false, 6},
        };
        for (size_t k = 0; s == LB_OK && k < sizeof items / sizeof items[0]; k++) {
            if (!items[k].w && !items[k].v) continue;
            snprintf(n, sizeof n, "blk.%lld.%s", (long long)i, lb_role_gguf_suffix(items[k].role));
            s = plan_add(p, n, items[k].w, items[k].v, items[k].len, items[k].perm, i, items[k].slot, err);
        }
    }
    if (s == LB_OK) s = plan_add(p, "output_norm.weight", NULL, m->out_norm, E, false, -1, -1, err);
    if (s == LB_OK && !h->tied_embeddings) s = plan_add(p, "output.weight", &m->output, NULL, 0, false, -1, -1, err);
    return s;
}

/* ---------------------------------------------------------------- row-parallel quantization ----------- */

typedef struct qjob {
    const out_tensor *t;
    lb_quantize_fn quantize;
    const float *imatrix;
    uint8_t *out;
    size_t row_bytes;
    float *scratch;         /* per thread: ROWS_PER_TASK * cols floats */
    int64_t head_dim;
    int64_t *first_bad;     /* per thread: the least flat index (output row * cols + col) of a NaN/Inf, or INT64_MAX;
                               NULL: not checked */
} qjob;

static void quant_task(void *arg, int64_t task, int thread) {
    const qjob *j = arg;
    const lb_weight *w = j->t->w;
    int64_t r0 = task * ROWS_PER_TASK, nr = w->rows - r0 < ROWS_PER_TASK ? w->rows - r0 : ROWS_PER_TASK;
    float *buf = j->scratch + (size_t)thread * ROWS_PER_TASK * (size_t)w->cols;
    for (int64_t r = 0; r < nr; r++) {
        int64_t src = j->t->permute_qk ? lb_llama_qk_hf_row(r0 + r, j->head_dim) : r0 + r;
        lb_weight_row_f32(w, src, buf + r * w->cols);
        int64_t bad = j->first_bad ? lb_first_nonfinite(buf + r * w->cols, w->cols) : -1;
        if (bad >= 0 && (r0 + r) * w->cols + bad < j->first_bad[thread]) j->first_bad[thread] = (r0 + r) * w->cols + bad;
    }
    j->quantize(buf, j->out + (size_t)r0 * j->row_bytes, nr, w->cols, j->imatrix);
}

/* ---------------------------------------------------------------- metadata ----------------------------- */

/* GGUF arch name of a model: Mistral and Phi-3 are written as "llama" (q/k/v split, SwiGLU), as
 * llama.cpp's converter does for Mistral. */
static const char *gguf_arch(const lb_model *m) {
    const char *t = m->info.model_type;
    if (!strcmp(t, "llama") || !strcmp(t, "mistral") || !strcmp(t, "phi3")) return "llama";
    if (!strcmp(t, "qwen2")) return "qwen2";
    if (!strcmp(t, "qwen3")) return "qwen3";
    return NULL;
}

static lb_status write_hparams(gguf_writer *w, const lb_model *m, const char *arch, lb_error *err) {
    const lb_model_info *h = &m->info;
    char key[96];
    struct { const char *k; int64_t v; } u32s[] = {
        {"vocab_size", h->n_vocab}, {"context_length", h->n_ctx_train}, {"embedding_length", h->n_embd},
        {"block_count", h->n_layer}, {"feed_forward_length", h->n_ff}, {"attention.head_count", h->n_head},
        {"attention.head_count_kv", h->n_head_kv}, {"rope.dimension_count", h->head_dim},
        {"attention.key_length", h->head_dim}, {"attention.value_length", h->head_dim},
    };
    lb_status s = LB_OK;
    for (size_t k = 0; s == LB_OK && k < sizeof u32s / sizeof u32s[0]; k++) {
        if (k >= 8 && h->head_dim == h->n_embd / h->n_head) break; /* key/value length only when they differ */
        snprintf(key, sizeof key, "%s.%s", arch, u32s[k].k);
        s = gguf_writer_set_u32(w, key, (uint32_t)u32s[k].v, err);
    }
    if (s == LB_OK) {
        snprintf(key, sizeof key, "%s.rope.freq_base", arch);
        s = gguf_writer_set_f32(w, key, h->rope_theta, err);
    }
    if (s == LB_OK) {
        snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
        s = gguf_writer_set_f32(w, key, h->rms_eps, err);
    }
    if (s == LB_OK && h->rope_scaling == LB_ROPE_LINEAR) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
        s = gguf_writer_set_str(w, key, "linear", 6, err);
        snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
        if (s == LB_OK) s = gguf_writer_set_f32(w, key, h->rope_factor, err);
    }
    return s;
}

/* keys the quantizer writes itself, never copied from a GGUF input */
static bool regenerated_key(const char *k) {
    return !strcmp(k, "general.file_type") || !strcmp(k, "general.quantization_version") || !strcmp(k, "general.alignment") ||
           !strncmp(k, "quantize.imatrix.", 17);
}

static lb_status write_metadata(gguf_writer *w, const lb_model *m, const lb_tokenizer *tok, const char *arch,
                                const char *name, int file_type, const lb_imatrix *im, const char *im_path, lb_error *err) {
    lb_status s = LB_OK;
    if (m->gguf) { /* requantizing: keep everything the input says */
        for (int64_t i = 0; s == LB_OK && i < m->gguf->n_kv; i++)
            if (!regenerated_key(m->gguf->kvs[i].key)) s = gguf_writer_set_kv(w, &m->gguf->kvs[i], err);
    } else {
        s = gguf_writer_set_str(w, "general.architecture", arch, strlen(arch), err);
        if (s == LB_OK) s = gguf_writer_set_str(w, "general.name", name, strlen(name), err);
        if (s == LB_OK) s = write_hparams(w, m, arch, err);
        if (s == LB_OK) s = lb_tokenizer_write_gguf(tok, w, m->info.n_vocab, m->info.bos_id, m->info.eos_id, err);
    }
    if (s == LB_OK && im) { /* what llama-quantize records about the importance matrix */
        const char *ds = im->dataset ? im->dataset : "";
        s = gguf_writer_set_str(w, "quantize.imatrix.file", im_path, strlen(im_path), err);
        if (s == LB_OK) s = gguf_writer_set_str(w, "quantize.imatrix.dataset", ds, strlen(ds), err);
        if (s == LB_OK) s = gguf_writer_set_i32(w, "quantize.imatrix.entries_count", (int32_t)im->n_entries, err);
        if (s == LB_OK) s = gguf_writer_set_i32(w, "quantize.imatrix.chunks_count", (int32_t)im->chunks, err);
    }
    if (s == LB_OK) s = gguf_writer_set_u32(w, "general.file_type", (uint32_t)file_type, err);
    if (s == LB_OK) s = gguf_writer_set_u32(w, "general.quantization_version", 2, err);
    return s;
}

/* ---------------------------------------------------------------- the driver --------------------------- */

typedef struct run {
    const lb_quantize_params *p;
    lb_model *m;
    lb_tokenizer *tok;
    plan plan;
    regex_t *re;
    int n_re;
    lb_pool *pool;
    gguf_writer *w;
    lb_mix mix;
    lb_imatrix *imatrix;
    lb_calib *cal;          /* calibrated methods: the activations entering the next layer */
    double calib_seconds;   /* in the calibrated layers and output head (statistics, solvers, encoders) */
    double t_start;         /* lb_quantize_model's start */
    double setup_seconds;   /* from the start to the first calibrated layer (< 0 until then) */
    double head_seconds;    /* in the calibrated output head */
    double windows_seconds; /* in lb_calib_new (the calibration windows embedded, the device's state made) */
    lb_gptq_params gptq;
    int64_t cached_layer;   /* the layer whose quantized tensors are in cache */
    uint8_t *cache[7];
    float *norms[2], *bv;
    float *scratch;
    int64_t *first_bad;     /* per thread (qjob) */
    uint8_t *out;
    size_t out_cap;
    bool requantized;       /* the input's weights are in a quantized type */
    lb_gptq_ops *dev;       /* --device cuda: the block encoders of the row path there (when the table encodes the type) */
    bool dev_tried;         /* ... made once, at the first tensor it takes */
    float *dev_rows;        /* a chunk of rows converted to f32 for it */
    int64_t dev_rows_cap;   /* ... its size in floats */
    int64_t imatrix_used, imatrix_matrices; /* quantized matrices the importance matrix covers, of all */
} run;

static lb_status choose_types(run *R, lb_error *err) {
    for (int64_t i = 0; i < R->plan.n; i++) {
        out_tensor *t = &R->plan.t[i];
        if (t->w && lb_mix_quantizable(t->name, t->n_dims))
            t->type = lb_mix_choose(&R->mix, t->name, t->ne[0], &t->fallback);
        else
            t->type = LB_TYPE_F32;
        if (t->ne[0] % lb_type_block_elems(t->type))
            return lb_err_set(err, LB_ERR_UNSUPPORTED, "tensor %s: row length %lld does not fit type %s", t->name,
                              (long long)t->ne[0], lb_type_name(t->type));
    }
    return LB_OK;
}

/* how many quantized matrices the importance matrix covers: none is an error, as is an entry of the wrong length */
static lb_status imatrix_coverage(run *R, lb_error *err) {
    int64_t matrices = 0;
    const char *example = NULL;
    R->imatrix_used = 0;
    for (int64_t i = 0; i < R->plan.n; i++) {
        const out_tensor *t = &R->plan.t[i];
        if (!t->w || !lb_type_traits_get(t->type)->is_quant) continue;
        matrices++;
        example = example ? example : t->name;
        const lb_imatrix_entry *im = lb_imatrix_find(R->imatrix, t->name);
        if (!im) continue;
        if (im->n != t->ne[0])
            return lb_err_set(err, LB_ERR_FORMAT, "%s: entry %s has %lld values, the tensor's rows have %lld", R->p->imatrix,
                              t->name, (long long)im->n, (long long)t->ne[0]);
        R->imatrix_used++;
    }
    if (R->imatrix_used == 0 && matrices > 0)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: the importance matrix covers none of the %lld quantized matrices (its "
                          "entries are named like \"%s\", the model's like \"%s\"): is it for another model?",
                          R->p->imatrix, (long long)matrices, R->imatrix->entries[0].name, example);
    R->imatrix_matrices = matrices;
    return LB_OK;
}

static bool calibrated(const run *R) { return R->p->method != LB_METHOD_RTN; }

static void drop_cache(run *R) {
    for (int k = 0; k < 7; k++) {
        free(R->cache[k]);
        R->cache[k] = NULL;
    }
    free(R->norms[0]), free(R->norms[1]), free(R->bv);
    R->norms[0] = R->norms[1] = R->bv = NULL;
    R->cached_layer = -1;
}

static float *copy_vec(const float *v, int64_t n) {
    float *c = v ? malloc((size_t)n * sizeof *c) : NULL;
    if (c) memcpy(c, v, (size_t)n * sizeof *c);
    return c;
}

/* quantize decoder layer il by the calibrated method into the cache */
static lb_status calibrate_layer(run *R, int64_t il, lb_error *err) {
    if (R->setup_seconds < 0) R->setup_seconds = lb_time_sec() - R->t_start;
    drop_cache(R);
    const lb_model_info *h = &R->m->info;
    lb_type types[7] = {0};
    int found = 0;
    for (int64_t i = 0; i < R->plan.n; i++)
        if (R->plan.t[i].layer == il && R->plan.t[i].slot >= 0 && R->plan.t[i].slot < 7) {
            types[R->plan.t[i].slot] = R->plan.t[i].type;
            found++;
        }
    if (found != 7) return lb_err_set(err, LB_ERR_UNSUPPORTED, "layer %lld: calibrated methods need 7 matrices", (long long)il);
    const lb_layer *l = &R->m->layers[il];
    R->norms[0] = copy_vec(l->attn_norm, h->n_embd);
    R->norms[1] = copy_vec(l->ffn_norm, h->n_embd);
    R->bv = copy_vec(l->bv, h->n_head_kv * h->head_dim);
    if (!R->norms[0] || !R->norms[1] || (l->bv && !R->bv)) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    const double t0 = lb_time_sec();
    lb_status s = lb_calib_quantize_layer(R->cal, R->pool, R->m, il, R->p->method, R->p->encoder, &R->gptq, types, R->cache,
                                          R->norms, R->bv, err);
    R->calib_seconds += lb_time_sec() - t0;
    if (s == LB_OK) R->cached_layer = il;
    return s;
}

/* bytes of tensor t, when the calibrated path produced them (rows permuted for llama's q/k as needed) */
static lb_status calibrated_bytes(run *R, const out_tensor *t, uint8_t *out, bool *done, lb_error *err) {
    *done = false;
    if (t->layer >= 0 && t->slot >= 0) {
        if (R->cached_layer != t->layer) {
            lb_status s = calibrate_layer(R, t->layer, err);
            if (s != LB_OK) return s;
        }
        size_t rb = lb_type_row_size(t->type, t->ne[0]);
        if (t->slot < 7) {
            const uint8_t *src = R->cache[t->slot];
            for (int64_t r = 0; r < t->ne[1]; r++) {
                int64_t from = t->permute_qk ? lb_llama_qk_hf_row(r, R->m->info.head_dim) : r;
                memcpy(out + (size_t)r * rb, src + (size_t)from * rb, rb);
            }
        } else {
            const float *v = t->slot == 7 ? R->norms[0] : t->slot == 8 ? R->norms[1] : R->bv;
            memcpy(out, v, (size_t)t->ne[0] * sizeof(float));
        }
        *done = true;
    } else if (!strcmp(t->name, "output.weight")) {
        *done = true;
        const double t0 = lb_time_sec();
        lb_status s = lb_calib_quantize_output(R->cal, R->pool, R->m, t->type, R->p->method, R->p->encoder, &R->gptq, out, err);
        R->head_seconds = lb_time_sec() - t0;
        R->calib_seconds += R->head_seconds;
        return s;
    }
    return LB_OK;
}

/* Rows [r0, r0 + nr) of a tensor converted to f32 and checked as quant_task does, into dst (nr, cols). */
typedef struct conv_job {
    const out_tensor *t;
    int64_t r0, nr, head_dim;
    float *dst;
    int64_t *first_bad; /* as qjob's */
} conv_job;

static void conv_task(void *arg, int64_t task, int thread) {
    const conv_job *j = arg;
    const lb_weight *w = j->t->w;
    const int64_t a = task * ROWS_PER_TASK, n = j->nr - a < ROWS_PER_TASK ? j->nr - a : ROWS_PER_TASK;
    for (int64_t r = a; r < a + n; r++) {
        const int64_t row = j->r0 + r, src = j->t->permute_qk ? lb_llama_qk_hf_row(row, j->head_dim) : row;
        float *d = j->dst + r * w->cols;
        lb_weight_row_f32(w, src, d);
        int64_t bad = j->first_bad ? lb_first_nonfinite(d, w->cols) : -1;
        if (bad >= 0 && row * w->cols + bad < j->first_bad[thread]) j->first_bad[thread] = row * w->cols + bad;
    }
}

/* The row path with the block encoders on the device: the pool converts chunks of about DEV_CHUNK_BYTES of rows,
 * the device table encodes each (the bytes of quant_task's encoders). */
#define DEV_CHUNK_BYTES ((int64_t)64 << 20)
static lb_status dev_quantize(run *R, const out_tensor *t, const float *im, size_t row_bytes, lb_error *err) {
    const int64_t cols = t->ne[0], rows = t->ne[1];
    int64_t chunk = DEV_CHUNK_BYTES / (cols * (int64_t)sizeof(float));
    chunk = chunk < ROWS_PER_TASK ? ROWS_PER_TASK : chunk / ROWS_PER_TASK * ROWS_PER_TASK;
    if (chunk > rows) chunk = rows;
    if (chunk * cols > R->dev_rows_cap) {
        free(R->dev_rows);
        R->dev_rows_cap = 0;
        if (!(R->dev_rows = malloc((size_t)(chunk * cols) * sizeof *R->dev_rows)))
            return lb_err_set(err, LB_ERR_NOMEM, "out of memory for tensor %s", t->name);
        R->dev_rows_cap = chunk * cols;
    }
    lb_status s = LB_OK;
    for (int64_t r0 = 0; s == LB_OK && r0 < rows; r0 += chunk) {
        const int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
        conv_job j = {t, r0, nr, R->m->info.head_dim, R->dev_rows, R->p->allow_nonfinite ? NULL : R->first_bad};
        lb_pool_run(R->pool, (nr + ROWS_PER_TASK - 1) / ROWS_PER_TASK, conv_task, &j);
        s = R->dev->encode(R->dev->user, t->type, R->p->encoder, R->dev_rows, cols, nr, 0, cols, im, R->out + (size_t)r0 * row_bytes,
                           row_bytes, err);
    }
    return s;
}

static lb_status write_tensor(run *R, int64_t i, lb_error *err) {
    const out_tensor *t = &R->plan.t[i];
    size_t row_bytes = lb_type_row_size(t->type, t->ne[0]), bytes = row_bytes * (size_t)t->ne[1];
    if (bytes > R->out_cap) {
        uint8_t *o = realloc(R->out, bytes);
        if (!o) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for tensor %s (%zu bytes)", t->name, bytes);
        R->out = o;
        R->out_cap = bytes;
    }
    bool done = false;
    if (calibrated(R)) {
        lb_status s = calibrated_bytes(R, t, R->out, &done, err);
        if (s != LB_OK) return s;
    }
    if (done) {
    } else if (!t->w) {
        memcpy(R->out, t->vec, bytes);
    } else {
        const lb_imatrix_entry *im = lb_imatrix_find(R->imatrix, t->name);
        if (im && im->n != t->ne[0])
            return lb_err_set(err, LB_ERR_FORMAT, "importance matrix entry %s has %lld values, the tensor's rows have %lld",
                              t->name, (long long)im->n, (long long)t->ne[0]);
        int nt = lb_pool_size(R->pool);
        for (int k = 0; k < nt; k++) R->first_bad[k] = INT64_MAX;
        /* the row path's block encoders on the device where they take the type (k-quants, the CPU's bytes; not with
         * LB_GPU_ENCODE=0): its table made at the first such tensor; without one (no cuBLAS, cuSOLVER) they stay
         * on the CPU */
        const bool dev = R->p->device.kind == LB_DEVICE_CUDA && lb_gptq_cuda_encodes(t->type, R->p->encoder);
        if (dev && !R->dev && !R->dev_tried) {
            lb_error e = {0};
            R->dev_tried = true;
            if (lb_gptq_ops_cuda_new(R->p->device.index, &R->dev, &e) != LB_OK) R->dev = NULL;
        }
        if (dev && R->dev) {
            lb_status s = dev_quantize(R, t, im ? im->values : NULL, row_bytes, err);
            if (s != LB_OK) return lb_err_prefix(err, s, "tensor %s", t->name);
        } else {
            qjob j = {t, lb_encoder_get(t->type, R->p->encoder), im ? im->values : NULL, R->out, row_bytes, R->scratch,
                      R->m->info.head_dim, R->p->allow_nonfinite ? NULL : R->first_bad};
            lb_pool_run(R->pool, (t->ne[1] + ROWS_PER_TASK - 1) / ROWS_PER_TASK, quant_task, &j);
        }
        lb_mmap_release(t->w->data, lb_weight_row_bytes(t->w) * (size_t)t->w->rows);
        int64_t bad = INT64_MAX;
        for (int k = 0; k < nt; k++) bad = R->first_bad[k] < bad ? R->first_bad[k] : bad;
        if (bad != INT64_MAX) { /* reported in the source's row order */
            int64_t r = bad / t->ne[0], c = bad % t->ne[0];
            if (t->permute_qk) r = lb_llama_qk_hf_row(r, R->m->info.head_dim);
            return lb_err_nonfinite(err, t->name, r, c, lb_weight_get(t->w, r, c));
        }
    }
    if (calibrated(R) && !strcmp(t->name, "token_embd.weight")) {
        /* the calibration activations start from the embedding as it will be stored */
        lb_calib_params cp = lb_calib_default_params();
        if (R->p->calib_ctx > 0) cp.ctx = R->p->calib_ctx;
        if (R->p->calib_n_tokens > 0) cp.n_tokens = R->p->calib_n_tokens;
        cp.seed = R->p->calib_seed ? R->p->calib_seed : 1;
        cp.n_threads = lb_pool_size(R->pool);
        cp.device = R->p->device;
        cp.n_devices = R->p->n_devices;
        memcpy(cp.devices, R->p->devices, sizeof cp.devices);
        lb_weight embd = {t->type, R->out, t->ne[1], t->ne[0]};
        const bool ref = !R->p->gptq_own_target && (R->p->method == LB_METHOD_GPTQ || R->p->method == LB_METHOD_AWQ_GPTQ);
        const double t0 = lb_time_sec();
        lb_status s = lb_calib_new(R->m, &embd, ref ? &R->m->tok_embd : NULL, R->p->calib_tokens, R->p->n_calib_tokens, &cp, &R->cal, err);
        R->windows_seconds = lb_time_sec() - t0;
        R->calib_seconds += R->windows_seconds;
        if (s != LB_OK) return s;
    }
    return gguf_writer_write_tensor(R->w, i, R->out, bytes, err);
}

static lb_status setup(run *R, const char *input, lb_error *err) {
    const lb_quantize_params *p = R->p;
    int ft = lb_ftype_from_name(p->ftype);
    if (ft < 0) return lb_err_set(err, LB_ERR_ARG, "unknown type \"%s\" (known: %s)", p->ftype ? p->ftype : "", lb_ftype_names());
    for (int k = 0; k < p->n_tensor_types; k++)
        if ((unsigned)p->tensor_type_types[k] >= LB_TYPE_COUNT || !lb_type_traits_get(p->tensor_type_types[k])->weight_type)
            return lb_err_set(err, LB_ERR_ARG, "tensor type override %d is not a weight type", k);
    if (p->n_tensor_types > 0) {
        R->re = calloc((size_t)p->n_tensor_types, sizeof *R->re);
        if (!R->re) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        for (; R->n_re < p->n_tensor_types; R->n_re++)
            if (regcomp(&R->re[R->n_re], p->tensor_type_patterns[R->n_re], REG_EXTENDED | REG_NOSUB) != 0)
                return lb_err_set(err, LB_ERR_ARG, "invalid tensor pattern \"%s\"", p->tensor_type_patterns[R->n_re]);
    }
    R->cached_layer = -1;
    lb_gptq_params_default(&R->gptq);
    /* the driver's default damping: 0.01, and 0.3 for a matrix with fewer than 16 calibration tokens per
     * column (at 2,048 tokens GPTQ with 0.01 did worse than round-to-nearest on tiny and small, with 0.3
     * better). A damp given by the caller is used as it is. */
    if (p->gptq_damp > 0) R->gptq.damp = p->gptq_damp;
    else R->gptq.few_tokens_damp = 0.3;
    if (p->gptq_ref_damp > 0) R->gptq.ref_damp = p->gptq_ref_damp;
    R->gptq.act_order = p->gptq_act_order != 0;
    /* GPTQ refinement defaults of the driver: 4 passes, then up to 4 coordinate-descent sweeps over the codes
     * and the sub-block scales */
    R->gptq.passes = p->gptq_passes > 0 ? p->gptq_passes : 4;
    R->gptq.cd_sweeps = p->gptq_cd_sweeps > 0 ? p->gptq_cd_sweeps : p->gptq_cd_sweeps < 0 ? 0 : 4;
    R->gptq.cd_scales = p->gptq_cd_scales >= 0;
    if ((unsigned)p->method > LB_METHOD_AWQ_GPTQ) return lb_err_set(err, LB_ERR_ARG, "unknown method %d", (int)p->method);
    if (p->method != LB_METHOD_RTN && (!p->calib_tokens || p->n_calib_tokens <= 0))
        return lb_err_set(err, LB_ERR_ARG, "method %s needs calibration text (--calib FILE)", lb_method_name(p->method));
    if (p->method != LB_METHOD_RTN && p->imatrix)
        return lb_err_set(err, LB_ERR_ARG, "--imatrix goes with the rtn method; %s measures its own statistics",
                          lb_method_name(p->method));
    if (p->device.kind == LB_DEVICE_CUDA) { /* fail before any work */
        lb_status sd = lb_cuda_device_check(p->device.index, err);
        for (int k = 0; sd == LB_OK && k < p->n_devices; k++) sd = lb_cuda_device_check(p->devices[k], err);
        if (sd == LB_OK && p->n_devices != 0 && p->method == LB_METHOD_RTN)
            sd = lb_err_set(err, LB_ERR_UNSUPPORTED, "a set of GPUs spreads calibration; round-to-nearest takes one (cuda:N)");
        if (sd != LB_OK) return sd;
    }
    /* NaN/Inf: the round-to-nearest path checks each row as it converts it; the calibrated ones at load */
    bool check = !p->allow_nonfinite;
    lb_status s = lb_model_load_checked(input, check && p->method != LB_METHOD_RTN, check, &R->m, err);
    if (s == LB_OK && p->imatrix) s = lb_imatrix_load(p->imatrix, &R->imatrix, err);
    if (s != LB_OK) return s;
    const lb_model_info *h = &R->m->info;
    if (R->m->gguf) {
        bool quantized = false;
        for (int64_t i = 0; i < R->m->gguf->n_tensors; i++) quantized |= lb_type_traits_get(R->m->gguf->tensors[i].type)->is_quant;
        R->requantized = quantized;
        if (quantized && !p->allow_requantize)
            return lb_err_set(err, LB_ERR_ARG, "%s is already quantized; requantizing loses quality (pass --allow-requantize to do it anyway)", input);
    } else if ((s = lb_tokenizer_load(input, &R->tok, err)) != LB_OK) {
        return s;
    }
    if (!gguf_arch(R->m)) return lb_err_set(err, LB_ERR_UNSUPPORTED, "architecture %s cannot be written as GGUF", h->model_type);
    R->mix = (lb_mix){(lb_ftype)ft, h->n_layer, h->n_head / h->n_head_kv, h->tied_embeddings != 0,
                      R->imatrix != NULL || p->method != LB_METHOD_RTN, p->pure != 0,
                      p->output_type, p->token_embd_type, R->n_re, R->re, p->tensor_type_types, 0, 0};
    bool permute = !R->m->gguf && !strcmp(gguf_arch(R->m), "llama");
    if ((s = build_plan(R->m, permute, &R->plan, err)) != LB_OK || (s = choose_types(R, err)) != LB_OK) return s;
    if (R->imatrix && (s = imatrix_coverage(R, err)) != LB_OK) return s;
    int nt = p->n_threads > 0 ? p->n_threads : lb_cpu_count();
    R->pool = lb_pool_new(nt);
    int64_t kmax = 0;
    for (int64_t i = 0; i < R->plan.n; i++) kmax = R->plan.t[i].ne[0] > kmax ? R->plan.t[i].ne[0] : kmax;
    R->scratch = malloc((size_t)nt * ROWS_PER_TASK * (size_t)kmax * sizeof(float));
    R->first_bad = malloc((size_t)nt * sizeof *R->first_bad);
    if (!R->pool || !R->scratch || !R->first_bad) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    return LB_OK;
}

static void cleanup(run *R) {
    gguf_writer_abort(R->w);
    drop_cache(R);
    lb_calib_free(R->cal);
    lb_gptq_ops_cuda_free(R->dev);
    free(R->dev_rows);
    free(R->out);
    free(R->scratch);
    free(R->first_bad);
    lb_pool_free(R->pool);
    for (int k = 0; k < R->n_re; k++) regfree(&R->re[k]);
    free(R->re);
    free(R->plan.t);
    lb_tokenizer_free(R->tok);
    lb_imatrix_free(R->imatrix);
    lb_model_free(R->m);
}

static void base_name(const char *path, char *out, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t b = len;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(out, n, "%.*s", (int)(len - b), path + b);
}

static void fill_report(run *R, lb_quantize_report *r, lb_quantize_tensor *rows, double t0, size_t file_bytes) {
    memset(r, 0, sizeof *r);
    r->tensors = rows;
    r->n_tensors = R->plan.n;
    for (int64_t i = 0; i < R->plan.n; i++) {
        r->type_tensors[rows[i].type]++;
        r->type_elements[rows[i].type] += rows[i].n_elements;
        r->n_params += rows[i].n_elements;
    }
    r->file_bytes = file_bytes; /* what this run wrote (the lock keeps other writers of the name out) */
    r->bits_per_weight = r->n_params ? 8.0 * (double)r->file_bytes / (double)r->n_params : 0;
    r->seconds = lb_time_sec() - t0;
    r->peak_rss_bytes = lb_peak_rss();
    r->gpu_peak_bytes = R->cal ? lb_calib_gpu_peak(R->cal) : 0;
    const size_t dev_peak = lb_gptq_ops_cuda_peak(R->dev);
    if (dev_peak > r->gpu_peak_bytes) r->gpu_peak_bytes = dev_peak;
    if (R->cal) {
        const char *why = "";
        r->gpu_fallbacks = lb_calib_fallbacks(R->cal, &why);
        snprintf(r->gpu_fallback_reason, sizeof r->gpu_fallback_reason, "%s", why);
        double g[LB_GPTQ_PHASES + 1];
        lb_calib_gptq_seconds(R->cal, g);
        r->gptq_factor_seconds = g[LB_GPTQ_PH_FACTOR];
        r->gptq_columns_seconds = g[LB_GPTQ_PH_COLUMNS];
        r->gptq_update_seconds = g[LB_GPTQ_PH_UPDATE];
        r->gptq_cd_seconds = g[LB_GPTQ_PH_CD];
        r->gptq_products_seconds = g[LB_GPTQ_PH_PRODUCTS];
        r->gptq_ref_seconds = g[LB_GPTQ_PHASES];
        r->gptq_encode_seconds = g[LB_GPTQ_PH_ENCODE];
    }
    r->stats_seconds = R->cal ? lb_calib_seconds(R->cal) : 0;
    lb_calib_gpu_phase_seconds(R->cal, r->stats_phase_seconds);
    lb_calib_gpu_split(R->cal, &r->gpus, &r->allreduce_seconds, &r->gptq_solvers);
    r->solve_seconds = R->calib_seconds - r->stats_seconds;
    r->convert_seconds = lb_calib_convert_seconds(R->cal);
    r->setup_seconds = R->setup_seconds > 0 ? R->setup_seconds : 0;
    r->head_seconds = R->head_seconds;
    r->windows_seconds = R->windows_seconds;
    r->requantized = R->requantized;
    r->imatrix_entries = R->imatrix ? R->imatrix->n_entries : 0;
    r->imatrix_covered = R->imatrix_used;
    r->imatrix_matrices = R->imatrix_matrices;
    snprintf(r->architecture, sizeof r->architecture, "%s", gguf_arch(R->m));
}

lb_status lb_quantize_model(const char *input, const char *output, const lb_quantize_params *p,
                            lb_quantize_report *report, lb_error *err) {
    if (!input || !output || !p) return lb_err_set(err, LB_ERR_ARG, "lb_quantize_model: NULL argument");
    double t0 = lb_time_sec();
    run R;
    memset(&R, 0, sizeof R);
    R.p = p;
    R.t_start = t0;
    R.setup_seconds = -1;
    lb_quantize_tensor *rows = NULL;
    const char *inputs[2] = {input, p->imatrix};
    lb_status s = lb_output_check(output, inputs, 2, err);
    if (s == LB_OK) s = setup(&R, input, err);
    if (s == LB_OK && !(rows = calloc((size_t)R.plan.n + 1, sizeof *rows))) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (s == LB_OK) s = gguf_writer_open(output, &R.w, err);
    char name[256];
    base_name(input, name, sizeof name);
    if (s == LB_OK)
        s = write_metadata(R.w, R.m, R.tok, gguf_arch(R.m), name, lb_ftype_get(R.mix.ftype)->llama_ftype, R.imatrix,
                           p->imatrix, err);
    for (int64_t i = 0; s == LB_OK && i < R.plan.n; i++) {
        const out_tensor *t = &R.plan.t[i];
        s = gguf_writer_add_tensor(R.w, t->name, t->type, t->n_dims, t->ne, err);
    }
    if (s == LB_OK) s = gguf_writer_begin_data(R.w, err);
    for (int64_t i = 0; s == LB_OK && i < R.plan.n; i++) {
        const out_tensor *t = &R.plan.t[i];
        double ts = lb_time_sec();
        s = write_tensor(&R, i, err);
        lb_quantize_tensor *q = &rows[i];
        snprintf(q->name, sizeof q->name, "%s", t->name);
        q->type = t->type;
        q->n_dims = t->n_dims;
        q->ne[0] = t->ne[0];
        q->ne[1] = t->ne[1];
        q->n_elements = t->ne[0] * t->ne[1];
        q->n_bytes = lb_type_row_size(t->type, t->ne[0]) * (size_t)t->ne[1];
        q->fallback = t->fallback;
        q->seconds = lb_time_sec() - ts;
        if (s == LB_OK && p->progress && p->progress(t->name, i + 1, R.plan.n, p->progress_user))
            s = lb_err_set(err, LB_ERR_CANCELLED, "cancelled");
    }
    size_t file_bytes = (size_t)gguf_writer_size(R.w);
    if (s == LB_OK) {
        s = gguf_writer_finish(R.w, err);
        R.w = NULL;
    }
    if (s == LB_OK && report) {
        fill_report(&R, report, rows, t0, file_bytes);
        rows = NULL;
    }
    free(rows);
    cleanup(&R);
    return s;
}
