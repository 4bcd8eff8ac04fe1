/*
 * model.c - lb_model_load: a Hugging Face directory (config.json + safetensors) or a GGUF file into an
 * lb_model.
 *
 * HF tensor names follow transformers' Llama/Mistral/Qwen2/Qwen3/Phi3 modules
 * (model.layers.N.self_attn.q_proj.weight, ...). Phi-3's fused qkv_proj and gate_up_proj are split
 * into row ranges of the same mapped tensor (q | k | v, gate | up), so nothing is copied. GGUF names
 * and hyperparameter keys follow llama.cpp (docs/formats.md 1.7, 1.8); weights of GGUF arch "llama"
 * keep llama.cpp's permuted q/k rows and run with interleaved rope (forward.c), which undoes the
 * permutation exactly. Every tensor's type and shape are checked against the hyperparameters.
 */
#include "model.h"

#include "../io/gguf.h"
#include "../io/hf_config.h"
#include "arch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* fewest tensors a decoder layer has (Phi-3's fused layout: 2 norms, qkv, o, gate_up, down) */
#define MIN_LAYER_TENSORS 6

static lb_status st_to_type(st_dtype d, lb_type *t) {
    switch (d) {
    case ST_F32: *t = LB_TYPE_F32; return LB_OK;
    case ST_F16: *t = LB_TYPE_F16; return LB_OK;
    case ST_BF16: *t = LB_TYPE_BF16; return LB_OK;
    default: return LB_ERR_UNSUPPORTED;
    }
}

typedef struct loader {
    lb_model *m;
    lb_error *err;
    uint8_t *used; /* per source tensor: read by the architecture */
    bool check_matrices, check_vectors; /* refuse NaN/Inf values */
} loader;

/* n bytes owned by the model (freed with it), 32-byte aligned; NULL on allocation failure. */
static void *own(loader *L, size_t n) {
    lb_model *m = L->m;
    if (m->n_owned == m->cap_owned) {
        int64_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) return NULL;
        m->owned = o;
        m->cap_owned = cap;
    }
    void *p = aligned_alloc(32, (n + 31) & ~(size_t)31);
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

/* A tensor of either source, shape in HF order (last dim contiguous). */
typedef struct src_tensor {
    const char *name;
    int st_ok;          /* the dtype maps to an lb_type */
    const char *dtype;  /* dtype name for messages */
    lb_type type;
    int n_dims;
    int64_t shape[4];
    const uint8_t *data;
    size_t n_bytes;
} src_tensor;

static lb_status find(loader *L, const char *name, bool required, src_tensor *out, bool *found) {
    memset(out, 0, sizeof *out);
    *found = false;
    if (L->m->st) {
        const st_tensor *t = st_find(L->m->st, name);
        if (t) {
            *found = true;
            if (L->used) L->used[t - L->m->st->tensors] = 1;
            out->name = t->name;
            out->st_ok = st_to_type(t->dtype, &out->type) == LB_OK;
            out->dtype = st_dtype_name(t->dtype);
            out->n_dims = t->n_dims > 4 ? 4 : t->n_dims;
            for (int d = 0; d < out->n_dims; d++) out->shape[d] = t->shape[d];
            out->data = t->data;
            out->n_bytes = t->n_bytes;
        }
    } else {
        const gguf_tensor *t = gguf_find_tensor(L->m->gguf, name);
        if (t) {
            *found = true;
            if (L->used) L->used[t - L->m->gguf->tensors] = 1;
            out->name = t->name;
            out->st_ok = 1;
            out->type = t->type;
            out->dtype = lb_type_name(t->type);
            out->n_dims = t->n_dims;
            for (int d = 0; d < t->n_dims; d++) out->shape[d] = t->ne[t->n_dims - 1 - d];
            out->data = t->data;
            out->n_bytes = t->n_bytes;
        }
    }
    if (!*found && required) return lb_err_set(L->err, LB_ERR_FORMAT, "tensor %s is missing from the checkpoint", name);
    return LB_OK;
}

static lb_status check_shape(loader *L, const src_tensor *t, int64_t rows, int64_t cols) {
    bool ok = cols < 0 ? (t->n_dims == 1 && t->shape[0] == rows)
                       : (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (ok) return LB_OK;
    char got[128] = "", want[64];
    size_t k = 0;
    for (int d = 0; d < t->n_dims && k < sizeof got - 24; d++)
        k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (cols < 0)
        snprintf(want, sizeof want, "%lld", (long long)rows);
    else
        snprintf(want, sizeof want, "%lld, %lld", (long long)rows, (long long)cols);
    return lb_err_set(L->err, LB_ERR_FORMAT, "tensor %s has shape [%s], expected [%s] from the %s", t->name, got, want,
                      L->m->st ? "config.json" : "GGUF metadata");
}

static lb_status get_type(loader *L, const src_tensor *t, lb_type *type) {
    if (!t->st_ok || !lb_type_traits_get(t->type)->weight_type)
        return lb_err_set(L->err, LB_ERR_UNSUPPORTED, "tensor %s has dtype %s, which lowbit cannot use as a weight", t->name,
                          t->dtype);
    *type = t->type;
    return LB_OK;
}

/* Every value of w finite (rows of w are rows row0.. of tensor `name`): row by row, reading the blocks' fp16
 * factors (or a float row's bits) and dequantizing only a row that has a non-finite value. */
static lb_status check_finite(loader *L, const char *name, const lb_weight *w, int64_t row0) {
    float *row = malloc((size_t)w->cols * sizeof *row);
    if (!row) return lb_err_set(L->err, LB_ERR_NOMEM, "out of memory");
    lb_status s = LB_OK;
    for (int64_t r = 0; s == LB_OK && r < w->rows; r++) {
        int64_t col;
        float v;
        if (lb_weight_row_nonfinite(w, r, row, &col, &v)) s = lb_err_nonfinite(L->err, name, row0 + r, col, v);
    }
    free(row);
    return s;
}

/* A (rows, cols) matrix, or row range [row0, row0+rows) of a larger one when `total_rows` > rows. */
static lb_status load_matrix(loader *L, const char *name, int64_t total_rows, int64_t row0, int64_t rows, int64_t cols,
                             lb_weight *w) {
    src_tensor st, *t = &st;
    bool found;
    lb_status s = find(L, name, true, t, &found);
    if (s == LB_OK) s = check_shape(L, t, total_rows, cols);
    if (s == LB_OK) s = get_type(L, t, &w->type);
    if (s != LB_OK) return s;
    if (cols % lb_type_block_elems(w->type))
        return lb_err_set(L->err, LB_ERR_FORMAT, "tensor %s: row length %lld is not a multiple of the %s block (%lld)", name,
                          (long long)cols, lb_type_name(w->type), (long long)lb_type_block_elems(w->type));
    const uint8_t *data = t->data;
    const lb_type_traits *tt = lb_type_traits_get(w->type);
    size_t align = tt->is_quant ? 2 : tt->block_bytes;
    if ((uintptr_t)data % align) {
        /* safetensors does not promise aligned data: keep an aligned copy of this tensor */
        uint8_t *copy = own(L, t->n_bytes);
        if (!copy) return lb_err_set(L->err, LB_ERR_NOMEM, "out of memory copying tensor %s", name);
        memcpy(copy, data, t->n_bytes);
        data = copy;
    }
    w->data = data + (size_t)row0 * lb_type_row_size(w->type, cols);
    w->rows = rows;
    w->cols = cols;
    if (!L->check_matrices) return LB_OK;
    s = check_finite(L, name, w, row0);
    /* pages of the file read by the check are handed back, so loading keeps resident memory as low as before
     * (never for a copy: releasing private memory would zero it) */
    if (data == t->data) lb_mmap_release(w->data, lb_weight_row_bytes(w) * (size_t)rows);
    return s;
}

/* A vector of n converted to f32 (NULL and LB_OK when absent and optional). */
static lb_status load_vector(loader *L, const char *name, int64_t n, bool required, float **out) {
    src_tensor st, *t = &st;
    bool found;
    lb_type type = LB_TYPE_F32;
    *out = NULL;
    lb_status s = find(L, name, required, t, &found);
    if (s != LB_OK || !found) return s;
    if ((s = check_shape(L, t, n, -1)) != LB_OK || (s = get_type(L, t, &type)) != LB_OK) return s;
    if (n % lb_type_block_elems(type))
        return lb_err_set(L->err, LB_ERR_FORMAT, "tensor %s: length %lld is not a multiple of the %s block", name,
                          (long long)n, lb_type_name(type));
    float *v = own(L, (size_t)n * sizeof *v);
    uint8_t *raw = own(L, t->n_bytes);
    if (!v || !raw) return lb_err_set(L->err, LB_ERR_NOMEM, "out of memory");
    /* the source may be unaligned: convert from an aligned copy */
    memcpy(raw, t->data, t->n_bytes);
    lb_type_traits_get(type)->to_float(raw, v, n);
    int64_t bad = L->check_vectors ? lb_first_nonfinite(v, n) : -1;
    if (bad >= 0) return lb_err_nonfinite(L->err, name, bad, -1, v[bad]);
    *out = v;
    return LB_OK;
}

#define NAME(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)

static lb_status load_layer(loader *L, int64_t i, lb_layer *l) {
    const lb_model_info *h = &L->m->info;
    int64_t E = h->n_embd, D = h->head_dim, qd = h->n_head * D, kvd = h->n_head_kv * D, F = h->n_ff;
    bool phi3 = strcmp(h->model_type, "phi3") == 0;
    char n[160];
    lb_status s;
#define TRY(x) if ((s = (x)) != LB_OK) return s
    NAME(n, "model.layers.%lld.input_layernorm.weight", (long long)i);
    TRY(load_vector(L, n, E, true, &l->attn_norm));
    NAME(n, "model.layers.%lld.post_attention_layernorm.weight", (long long)i);
    TRY(load_vector(L, n, E, true, &l->ffn_norm));
    if (phi3) {
        NAME(n, "model.layers.%lld.self_attn.qkv_proj.weight", (long long)i);
        TRY(load_matrix(L, n, qd + 2 * kvd, 0, qd, E, &l->wq));
        TRY(load_matrix(L, n, qd + 2 * kvd, qd, kvd, E, &l->wk));
        TRY(load_matrix(L, n, qd + 2 * kvd, qd + kvd, kvd, E, &l->wv));
        NAME(n, "model.layers.%lld.mlp.gate_up_proj.weight", (long long)i);
        TRY(load_matrix(L, n, 2 * F, 0, F, E, &l->w_gate));
        TRY(load_matrix(L, n, 2 * F, F, F, E, &l->w_up));
    } else {
        static const char *proj[3] = {"q", "k", "v"};
        lb_weight *w[3] = {&l->wq, &l->wk, &l->wv};
        float **b[3] = {&l->bq, &l->bk, &l->bv};
        for (int k = 0; k < 3; k++) {
            int64_t rows = k == 0 ? qd : kvd;
            NAME(n, "model.layers.%lld.self_attn.%s_proj.weight", (long long)i, proj[k]);
            TRY(load_matrix(L, n, rows, 0, rows, E, w[k]));
            NAME(n, "model.layers.%lld.self_attn.%s_proj.bias", (long long)i, proj[k]);
            TRY(load_vector(L, n, rows, h->attn_bias != 0, b[k]));
        }
        NAME(n, "model.layers.%lld.mlp.gate_proj.weight", (long long)i);
        TRY(load_matrix(L, n, F, 0, F, E, &l->w_gate));
        NAME(n, "model.layers.%lld.mlp.up_proj.weight", (long long)i);
        TRY(load_matrix(L, n, F, 0, F, E, &l->w_up));
        if (h->mlp_bias) {
            NAME(n, "model.layers.%lld.mlp.gate_proj.bias", (long long)i);
            TRY(load_vector(L, n, F, true, &l->b_gate));
            NAME(n, "model.layers.%lld.mlp.up_proj.bias", (long long)i);
            TRY(load_vector(L, n, F, true, &l->b_up));
        }
    }
    NAME(n, "model.layers.%lld.self_attn.o_proj.weight", (long long)i);
    TRY(load_matrix(L, n, E, 0, E, qd, &l->wo));
    NAME(n, "model.layers.%lld.self_attn.o_proj.bias", (long long)i);
    TRY(load_vector(L, n, E, h->attn_out_bias != 0, &l->bo));
    NAME(n, "model.layers.%lld.mlp.down_proj.weight", (long long)i);
    TRY(load_matrix(L, n, E, 0, E, F, &l->w_down));
    if (h->mlp_bias) {
        NAME(n, "model.layers.%lld.mlp.down_proj.bias", (long long)i);
        TRY(load_vector(L, n, E, true, &l->b_down));
    }
    if (h->qk_norm) {
        NAME(n, "model.layers.%lld.self_attn.q_norm.weight", (long long)i);
        TRY(load_vector(L, n, D, true, &l->q_norm));
        NAME(n, "model.layers.%lld.self_attn.k_norm.weight", (long long)i);
        TRY(load_vector(L, n, D, true, &l->k_norm));
    }
#undef TRY
    return LB_OK;
}

static lb_status load_layer_gguf(loader *L, int64_t i, lb_layer *l) {
    const lb_model_info *h = &L->m->info;
    int64_t E = h->n_embd, D = h->head_dim, qd = h->n_head * D, kvd = h->n_head_kv * D, F = h->n_ff;
    char n[96];
    lb_status s;
#define TRY(x) if ((s = (x)) != LB_OK) return s
#define R(role) (NAME(n, "blk.%lld.%s", (long long)i, lb_role_gguf_suffix(role)), n)
    TRY(load_vector(L, R(LB_ROLE_ATTN_NORM), E, true, &l->attn_norm));
    TRY(load_vector(L, R(LB_ROLE_FFN_NORM), E, true, &l->ffn_norm));
    TRY(load_matrix(L, R(LB_ROLE_ATTN_Q), qd, 0, qd, E, &l->wq));
    TRY(load_matrix(L, R(LB_ROLE_ATTN_K), kvd, 0, kvd, E, &l->wk));
    TRY(load_matrix(L, R(LB_ROLE_ATTN_V), kvd, 0, kvd, E, &l->wv));
    TRY(load_vector(L, R(LB_ROLE_ATTN_Q_BIAS), qd, h->attn_bias != 0, &l->bq));
    TRY(load_vector(L, R(LB_ROLE_ATTN_K_BIAS), kvd, h->attn_bias != 0, &l->bk));
    TRY(load_vector(L, R(LB_ROLE_ATTN_V_BIAS), kvd, h->attn_bias != 0, &l->bv));
    TRY(load_matrix(L, R(LB_ROLE_ATTN_OUT), E, 0, E, qd, &l->wo));
    TRY(load_matrix(L, R(LB_ROLE_FFN_GATE), F, 0, F, E, &l->w_gate));
    TRY(load_matrix(L, R(LB_ROLE_FFN_UP), F, 0, F, E, &l->w_up));
    TRY(load_matrix(L, R(LB_ROLE_FFN_DOWN), E, 0, E, F, &l->w_down));
    if (h->qk_norm) {
        TRY(load_vector(L, R(LB_ROLE_ATTN_Q_NORM), D, true, &l->q_norm));
        TRY(load_vector(L, R(LB_ROLE_ATTN_K_NORM), D, true, &l->k_norm));
    }
#undef R
#undef TRY
    return LB_OK;
}

static lb_status build_tensor_table(loader *L) {
    lb_model *m = L->m;
    int64_t n = m->st ? m->st->n_tensors : m->gguf->n_tensors;
    m->tensors = calloc((size_t)n + 1, sizeof *m->tensors);
    if (!m->tensors) return lb_err_set(L->err, LB_ERR_NOMEM, "out of memory");
    m->n_tensors = n;
    for (int64_t i = 0; i < n; i++) {
        lb_model_tensor_rec *r = &m->tensors[i];
        if (m->st) {
            const st_tensor *t = &m->st->tensors[i];
            r->name = t->name;
            if (st_to_type(t->dtype, &r->type) != LB_OK)
                return lb_err_set(L->err, LB_ERR_UNSUPPORTED, "tensor %s has dtype %s; supported weight dtypes are F32, F16, BF16",
                                  t->name, st_dtype_name(t->dtype));
            if (t->n_dims > 4) return lb_err_set(L->err, LB_ERR_UNSUPPORTED, "tensor %s has %d dimensions", t->name, t->n_dims);
            r->n_dims = t->n_dims;
            for (int d = 0; d < t->n_dims; d++) r->shape[d] = t->shape[d];
            r->n_elements = t->n_elements;
            r->n_bytes = t->n_bytes;
        } else {
            const gguf_tensor *t = &m->gguf->tensors[i];
            r->name = t->name;
            r->type = t->type;
            r->n_dims = t->n_dims;
            for (int d = 0; d < t->n_dims; d++) r->shape[d] = t->ne[t->n_dims - 1 - d];
            r->n_elements = t->n_elements;
            r->n_bytes = t->n_bytes;
        }
        m->info.n_params += r->n_elements;
        m->info.n_bytes += r->n_bytes;
    }
    return LB_OK;
}

/* hyperparameters of a GGUF file from its {arch}.* keys (docs/formats.md 1.7) */
static lb_status gguf_hparams(loader *L) {
    lb_model *m = L->m;
    lb_model_info *h = &m->info;
    const gguf_file *g = m->gguf;
    size_t alen = 0;
    const char *arch = gguf_get_str(g, "general.architecture", &alen);
    if (!arch) return lb_err_set(L->err, LB_ERR_FORMAT, "general.architecture is missing");
    if (alen >= sizeof h->model_type) alen = sizeof h->model_type - 1;
    memcpy(h->model_type, arch, alen);
    h->model_type[alen] = 0;
    if (strcmp(h->model_type, "llama") && strcmp(h->model_type, "qwen2") && strcmp(h->model_type, "qwen3"))
        return lb_err_set(L->err, LB_ERR_UNSUPPORTED, "GGUF architecture \"%s\" is not supported (supported: llama, qwen2, qwen3)",
                          h->model_type);
    snprintf(h->architecture, sizeof h->architecture, "%s (GGUF)", h->model_type);
    struct { const char *key; int64_t *dst; bool required; } ints[] = {
        {"embedding_length", &h->n_embd, true}, {"block_count", &h->n_layer, true},
        {"feed_forward_length", &h->n_ff, true}, {"attention.head_count", &h->n_head, true},
        {"attention.head_count_kv", &h->n_head_kv, false}, {"context_length", &h->n_ctx_train, false},
        {"attention.key_length", &h->head_dim, false},
    };
    char key[128];
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        *ints[k].dst = 0;
        snprintf(key, sizeof key, "%s.%s", h->model_type, ints[k].key);
        const gguf_kv *kv = gguf_find_kv(g, key);
        if (!kv && ints[k].required) return lb_err_set(L->err, LB_ERR_FORMAT, "metadata key %s is missing", key);
        if (kv && (!gguf_kv_int(kv, ints[k].dst) || *ints[k].dst <= 0 || *ints[k].dst > (1LL << 31)))
            return lb_err_set(L->err, LB_ERR_FORMAT, "metadata key %s must be a positive integer (per-layer arrays are not supported)", key);
    }
    if (!h->n_head_kv) h->n_head_kv = h->n_head;
    if (!h->head_dim) h->head_dim = h->n_embd / h->n_head;
    if (h->n_head % h->n_head_kv || h->head_dim % 2)
        return lb_err_set(L->err, LB_ERR_FORMAT, "inconsistent heads: %lld heads, %lld KV heads, head size %lld",
                          (long long)h->n_head, (long long)h->n_head_kv, (long long)h->head_dim);
    double v = 0;
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", h->model_type);
    if (!gguf_get_float(g, key, &v) || !(v > 0) || !isfinite((float)v) || (float)v == 0)
        return lb_err_set(L->err, LB_ERR_FORMAT, "metadata key %s is missing or not a positive finite number", key);
    h->rms_eps = (float)v;
    snprintf(key, sizeof key, "%s.rope.freq_base", h->model_type);
    if (gguf_find_kv(g, key) && (!gguf_get_float(g, key, &v) || !(v > 0) || !isfinite((float)v) || (float)v == 0))
        return lb_err_set(L->err, LB_ERR_FORMAT, "metadata key %s must be a positive finite number", key);
    h->rope_theta = gguf_find_kv(g, key) ? (float)v : 10000.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", h->model_type);
    size_t sl = 0;
    const char *sc = gguf_get_str(g, key, &sl);
    if (sc && !(sl == 4 && !memcmp(sc, "none", 4))) {
        snprintf(key, sizeof key, "%s.rope.scaling.factor", h->model_type);
        if (sl == 6 && !memcmp(sc, "linear", 6) && gguf_get_float(g, key, &v) && v > 0) {
            h->rope_scaling = LB_ROPE_LINEAR;
            h->rope_factor = (float)v;
        } else {
            return lb_err_set(L->err, LB_ERR_UNSUPPORTED, "rope scaling \"%.*s\" is not supported", (int)sl, sc);
        }
    }
    if (gguf_find_tensor(g, "rope_freqs.weight"))
        return lb_err_set(L->err, LB_ERR_UNSUPPORTED, "rope_freqs.weight (Llama-3.1 rope scaling in GGUF) is not supported yet");
    const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) return lb_err_set(L->err, LB_ERR_FORMAT, "tensor token_embd.weight is missing or not 2-D");
    h->n_vocab = emb->ne[1];
    h->tied_embeddings = gguf_find_tensor(g, "output.weight") == NULL;
    h->attn_bias = gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    h->qk_norm = gguf_find_tensor(g, "blk.0.attn_q_norm.weight") != NULL;
    int64_t id;
    h->bos_id = gguf_get_int(g, "tokenizer.ggml.bos_token_id", &id) ? (int32_t)id : -1;
    h->eos_id = gguf_get_int(g, "tokenizer.ggml.eos_token_id", &id) ? (int32_t)id : -1;
    m->rope_interleaved = strcmp(h->model_type, "llama") == 0;
    return LB_OK;
}

/* A float hyperparameter must be positive and finite (as a float: what the forward pass uses). */
static lb_status check_pos(loader *L, const char *what, float v) {
    if (v > 0 && isfinite(v)) return LB_OK;
    return lb_err_set(L->err, LB_ERR_FORMAT, "%s %g must be a positive finite number", what, (double)v);
}

/* Checks every source's hyperparameters must pass, made before anything is allocated from them. */
static lb_status check_hparams(loader *L) {
    const lb_model_info *h = &L->m->info;
    const char *src = L->m->st ? "config.json" : "GGUF";
    char what[64];
    lb_status s = LB_OK;
    struct { const char *name; float v; bool used; } f[] = {
        {"rms_norm_eps", h->rms_eps, true}, {"rope_theta", h->rope_theta, true},
        {"rope scaling factor", h->rope_factor, h->rope_scaling != LB_ROPE_NONE},
        {"rope low_freq_factor", h->rope_low_freq_factor, h->rope_scaling == LB_ROPE_LLAMA3},
        {"rope high_freq_factor", h->rope_high_freq_factor, h->rope_scaling == LB_ROPE_LLAMA3},
    };
    for (size_t k = 0; s == LB_OK && k < sizeof f / sizeof f[0]; k++) {
        snprintf(what, sizeof what, "%s: %s", src, f[k].name);
        if (f[k].used) s = check_pos(L, what, f[k].v);
    }
    if (s != LB_OK) return s;
    /* every layer has at least MIN_LAYER_TENSORS tensors: a layer count the file cannot hold is refused
     * before per-layer state is allocated */
    int64_t n = L->m->st ? L->m->st->n_tensors : L->m->gguf->n_tensors;
    if (h->n_layer > n / MIN_LAYER_TENSORS)
        return lb_err_set(L->err, LB_ERR_FORMAT, "%s says %lld layers, but the checkpoint has only %lld tensors (a layer has at least %d)",
                          src, (long long)h->n_layer, (long long)n, MIN_LAYER_TENSORS);
    const int32_t ids[2] = {h->bos_id, h->eos_id};
    for (int k = 0; k < 2; k++)
        if (ids[k] < -1 || ids[k] >= h->n_vocab)
            return lb_err_set(L->err, LB_ERR_FORMAT, "%s: %s token id %d is outside the vocabulary (0..%lld)", src,
                              k ? "EOS" : "BOS", ids[k], (long long)h->n_vocab - 1);
    return LB_OK;
}

/* tensors a checkpoint may hold that no architecture reads */
static bool ignorable(const lb_model *m, const char *name) {
    size_t n = strlen(name);
    static const char inv_freq[] = ".rotary_emb.inv_freq"; /* older transformers saved the rope frequencies */
    if (n >= sizeof inv_freq - 1 && !strcmp(name + n - (sizeof inv_freq - 1), inv_freq)) return true;
    return m->st && m->info.tied_embeddings && !strcmp(name, "lm_head.weight"); /* a saved copy of the tied embedding */
}

/* Tensors the architecture did not read mean the hyperparameters do not describe the checkpoint (a wrong layer
 * count, a bias flag off): an error naming the first few. */
static lb_status check_unused(loader *L) {
    const lb_model *m = L->m;
    int64_t n_unused = 0;
    char names[192] = "";
    size_t k = 0;
    for (int64_t i = 0; i < m->n_tensors; i++) {
        if (L->used[i] || ignorable(m, m->tensors[i].name)) continue;
        if (n_unused++ < 3 && k < sizeof names)
            k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", k ? ", " : "", m->tensors[i].name);
    }
    if (n_unused == 0) return LB_OK;
    return lb_err_set(L->err, LB_ERR_FORMAT, "%lld tensor%s the architecture does not use (%s%s): the %s does not describe "
                      "this checkpoint (layer count, bias flags?)", (long long)n_unused, n_unused > 1 ? "s" : "", names,
                      n_unused > 3 ? ", ..." : "", m->st ? "config.json" : "GGUF metadata");
}

static bool is_gguf_file(const char *path) {
    lb_mmap map = {0};
    bool yes = lb_mmap_open(path, &map, NULL) == LB_OK && map.size >= 4 && memcmp(map.data, "GGUF", 4) == 0;
    lb_mmap_close(&map);
    return yes;
}

lb_model_params lb_model_default_params(void) {
    lb_model_params p = {0};
    return p;
}

lb_status lb_model_load(const char *path, lb_model **out, lb_error *err) { return lb_model_load_with(path, NULL, out, err); }

lb_status lb_model_load_with(const char *path, const lb_model_params *p, lb_model **out, lb_error *err) {
    bool check = !p || !p->allow_nonfinite;
    return lb_model_load_checked(path, check, check, out, err);
}

lb_status lb_model_load_checked(const char *path, bool check_matrices, bool check_vectors, lb_model **out, lb_error *err) {
    if (!path || !out) return lb_err_set(err, LB_ERR_ARG, "lb_model_load: NULL argument");
    bool dir = lb_path_is_dir(path);
    if (!dir) {
        if (!lb_path_exists(path)) return lb_err_set(err, LB_ERR_IO, "%s: no such file or directory", path);
        if (!is_gguf_file(path))
            return lb_err_set(err, LB_ERR_UNSUPPORTED,
                              "%s: expected a Hugging Face model directory (config.json + *.safetensors) or a GGUF file", path);
    }
    lb_model *m = calloc(1, sizeof *m);
    if (!m) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    loader L = {m, err, NULL, check_matrices, check_vectors};
    lb_status s = (m->path = strdup(path)) ? LB_OK : lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    const lb_model_info *h = &m->info;
    bool gguf = !dir;
    if (s == LB_OK && gguf) {
        s = gguf_open(path, &m->gguf, err);
        if (s == LB_OK) s = gguf_hparams(&L);
    } else if (s == LB_OK) {
        s = hf_config_load(path, &m->info, err);
        if (s == LB_OK) s = st_open(path, &m->st, err);
    }
    if (s == LB_OK) s = check_hparams(&L);
    if (s == LB_OK) s = build_tensor_table(&L);
    if (s == LB_OK && !(L.used = calloc((size_t)m->n_tensors + 1, 1))) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (s == LB_OK)
        s = load_matrix(&L, gguf ? "token_embd.weight" : "model.embed_tokens.weight", h->n_vocab, 0, h->n_vocab, h->n_embd,
                        &m->tok_embd);
    if (s == LB_OK) s = load_vector(&L, gguf ? "output_norm.weight" : "model.norm.weight", h->n_embd, true, &m->out_norm);
    if (s == LB_OK) {
        if (h->tied_embeddings)
            m->output = m->tok_embd;
        else
            s = load_matrix(&L, gguf ? "output.weight" : "lm_head.weight", h->n_vocab, 0, h->n_vocab, h->n_embd, &m->output);
    }
    if (s == LB_OK) {
        m->layers = calloc((size_t)h->n_layer, sizeof *m->layers);
        if (!m->layers) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; s == LB_OK && i < h->n_layer; i++)
        s = gguf ? load_layer_gguf(&L, i, &m->layers[i]) : load_layer(&L, i, &m->layers[i]);
    if (s == LB_OK) s = check_unused(&L);
    free(L.used);
    if (s != LB_OK) {
        if (err && !strstr(err->msg, path)) lb_err_prefix(err, s, "%s", path);
        lb_model_free(m);
        return s;
    }
    *out = m;
    return LB_OK;
}

void lb_model_free(lb_model *m) {
    if (!m) return;
    for (int64_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->tensors);
    free(m->path);
    st_close(m->st);
    gguf_close(m->gguf);
    free(m);
}

const lb_model_info *lb_model_get_info(const lb_model *m) { return m ? &m->info : NULL; }
int64_t lb_model_n_tensors(const lb_model *m) { return m ? m->n_tensors : 0; }

lb_status lb_model_tensor(const lb_model *m, int64_t i, lb_tensor_info *out) {
    if (!m || !out || i < 0 || i >= m->n_tensors) return LB_ERR_ARG;
    const lb_model_tensor_rec *r = &m->tensors[i];
    out->name = r->name;
    out->type = r->type;
    out->n_dims = r->n_dims;
    for (int d = 0; d < 4; d++) out->shape[d] = d < r->n_dims ? r->shape[d] : 0;
    out->n_elements = r->n_elements;
    out->n_bytes = r->n_bytes;
    return LB_OK;
}
