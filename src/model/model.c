/*
 * model.c - lb_model_load: config.json + safetensors into an lb_model.
 *
 * Tensor names follow Hugging Face transformers' Llama/Mistral/Qwen2/Qwen3/Phi3 modules
 * (model.layers.N.self_attn.q_proj.weight, ...). Phi-3's fused qkv_proj and gate_up_proj are split
 * into row ranges of the same mapped tensor (q | k | v, gate | up), so nothing is copied.
 * Every tensor's dtype and shape are checked against the config before use.
 */
#include "model.h"

#include "../io/hf_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static lb_status find(loader *L, const char *name, bool required, const st_tensor **out) {
    const st_tensor *t = st_find(L->m->st, name);
    if (!t && required) return lb_err_set(L->err, LB_ERR_FORMAT, "tensor %s is missing from the checkpoint", name);
    *out = t;
    return LB_OK;
}

static lb_status check_shape(loader *L, const st_tensor *t, int64_t rows, int64_t cols) {
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
    return lb_err_set(L->err, LB_ERR_FORMAT, "tensor %s has shape [%s], expected [%s] from config.json", t->name, got, want);
}

static lb_status get_type(loader *L, const st_tensor *t, lb_type *type) {
    if (st_to_type(t->dtype, type) != LB_OK)
        return lb_err_set(L->err, LB_ERR_UNSUPPORTED, "tensor %s has dtype %s; supported weight dtypes are F32, F16, BF16",
                          t->name, st_dtype_name(t->dtype));
    return LB_OK;
}

/* A (rows, cols) matrix, or row range [row0, row0+rows) of a larger one when `total_rows` > rows. */
static lb_status load_matrix(loader *L, const char *name, int64_t total_rows, int64_t row0, int64_t rows, int64_t cols,
                             lb_weight *w) {
    const st_tensor *t = NULL;
    lb_status s = find(L, name, true, &t);
    if (s == LB_OK) s = check_shape(L, t, total_rows, cols);
    if (s == LB_OK) s = get_type(L, t, &w->type);
    if (s != LB_OK) return s;
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
    return LB_OK;
}

/* A vector of n converted to f32 (NULL and LB_OK when absent and optional). */
static lb_status load_vector(loader *L, const char *name, int64_t n, bool required, float **out) {
    const st_tensor *t = NULL;
    lb_type type = LB_TYPE_F32;
    *out = NULL;
    lb_status s = find(L, name, required, &t);
    if (s != LB_OK || !t) return s;
    if ((s = check_shape(L, t, n, -1)) != LB_OK || (s = get_type(L, t, &type)) != LB_OK) return s;
    float *v = own(L, (size_t)n * sizeof *v);
    if (!v) return lb_err_set(L->err, LB_ERR_NOMEM, "out of memory");
    /* the source may be unaligned: read it element by element through memcpy */
    size_t es = lb_type_row_size(type, 1);
    for (int64_t i = 0; i < n; i++) {
        uint8_t tmp[4];
        memcpy(tmp, t->data + (size_t)i * es, es);
        lb_weight w = {type, tmp, 1, 1};
        v[i] = lb_weight_get(&w, 0, 0);
    }
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

static lb_status build_tensor_table(loader *L) {
    lb_model *m = L->m;
    st_file *st = m->st;
    m->tensors = calloc((size_t)st->n_tensors + 1, sizeof *m->tensors);
    if (!m->tensors) return lb_err_set(L->err, LB_ERR_NOMEM, "out of memory");
    m->n_tensors = st->n_tensors;
    for (int64_t i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        lb_model_tensor_rec *r = &m->tensors[i];
        r->name = t->name;
        if (st_to_type(t->dtype, &r->type) != LB_OK)
            return lb_err_set(L->err, LB_ERR_UNSUPPORTED, "tensor %s has dtype %s; supported weight dtypes are F32, F16, BF16",
                              t->name, st_dtype_name(t->dtype));
        r->n_dims = t->n_dims > 4 ? 4 : t->n_dims;
        if (t->n_dims > 4) return lb_err_set(L->err, LB_ERR_UNSUPPORTED, "tensor %s has %d dimensions", t->name, t->n_dims);
        for (int d = 0; d < t->n_dims; d++) r->shape[d] = t->shape[d];
        r->n_elements = t->n_elements;
        r->n_bytes = t->n_bytes;
        m->info.n_params += t->n_elements;
        m->info.n_bytes += t->n_bytes;
    }
    return LB_OK;
}

lb_status lb_model_load(const char *path, lb_model **out, lb_error *err) {
    if (!path || !out) return lb_err_set(err, LB_ERR_ARG, "lb_model_load: NULL argument");
    if (!lb_path_is_dir(path)) {
        if (!lb_path_exists(path)) return lb_err_set(err, LB_ERR_IO, "%s: no such file or directory", path);
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: expected a Hugging Face model directory (config.json + *.safetensors)", path);
    }
    lb_model *m = calloc(1, sizeof *m);
    if (!m) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    loader L = {m, err};
    lb_status s = hf_config_load(path, &m->info, err);
    if (s == LB_OK) s = st_open(path, &m->st, err);
    if (s == LB_OK) s = build_tensor_table(&L);
    const lb_model_info *h = &m->info;
    if (s == LB_OK) s = load_matrix(&L, "model.embed_tokens.weight", h->n_vocab, 0, h->n_vocab, h->n_embd, &m->tok_embd);
    if (s == LB_OK) s = load_vector(&L, "model.norm.weight", h->n_embd, true, &m->out_norm);
    if (s == LB_OK) {
        if (h->tied_embeddings)
            m->output = m->tok_embd;
        else
            s = load_matrix(&L, "lm_head.weight", h->n_vocab, 0, h->n_vocab, h->n_embd, &m->output);
    }
    if (s == LB_OK) {
        m->layers = calloc((size_t)h->n_layer, sizeof *m->layers);
        if (!m->layers) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; s == LB_OK && i < h->n_layer; i++) s = load_layer(&L, i, &m->layers[i]);
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
    st_close(m->st);
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
