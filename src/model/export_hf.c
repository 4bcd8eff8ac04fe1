/*
 * export_hf.c - a loaded model written as a Hugging Face directory: model.safetensors (every weight
 * converted to F16, BF16 or F32, whatever its stored type), config.json (transformers-4 layout, which
 * transformers 4 and 5 both read), generation_config.json, and the tokenizer: tokenizer.json and
 * tokenizer_config.json copied from an HF input, or made from a GGUF file's tokenizer.ggml.* metadata
 * (byte-level BPE vocabularies: vocab, merges, added tokens, the pre-tokenizer the GGUF pre type names,
 * the chat template).
 *
 * Tensor names are transformers' (model.layers.N.self_attn.q_proj.weight, ...). GGUF "llama" files keep
 * q/k rows in llama.cpp's permuted order (docs/formats.md 1.9): row 2i+j of a head came from HF row
 * j*D/2+i, which is undone here. Phi-3's fused qkv_proj and gate_up_proj are written fused again.
 * The directory is built under DIR.tmp.<pid> and renamed to DIR when complete; DIR must not exist.
 */
#include "model.h"

#include "../core/json.h"
#include "../io/gguf.h"
#include "../io/safetensors_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPORT_MAX_PARTS 3

/* one output tensor: up to three matrices stacked by rows, or one vector */
typedef struct ex_tensor {
    char name[96];
    const lb_weight *part[EXPORT_MAX_PARTS];
    int n_parts;
    bool unpermute;  /* GGUF llama q/k rows back to HF order */
    const float *vec; /* 1-D tensor instead of matrices */
    int64_t vec_n;
} ex_tensor;

typedef struct exporter {
    const lb_model *m;
    st_dtype dtype;
    ex_tensor *t;
    int64_t n, cap;
    float *row; /* one f32 row */
} exporter;

static lb_status ex_add(exporter *x, ex_tensor *t, lb_error *err) {
    if (x->n == x->cap) {
        int64_t nc = x->cap ? 2 * x->cap : 64;
        ex_tensor *nt = realloc(x->t, (size_t)nc * sizeof *nt);
        if (!nt) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        x->t = nt;
        x->cap = nc;
    }
    x->t[x->n++] = *t;
    return LB_OK;
}

static lb_status add_mat(exporter *x, const char *name, const lb_weight *a, const lb_weight *b, const lb_weight *c,
                         bool unpermute, lb_error *err) {
    ex_tensor t = {.part = {a, b, c}, .n_parts = c ? 3 : b ? 2 : 1, .unpermute = unpermute};
    snprintf(t.name, sizeof t.name, "%s", name);
    return ex_add(x, &t, err);
}

static lb_status add_vec(exporter *x, const char *name, const float *v, int64_t n, lb_error *err) {
    if (!v) return LB_OK;
    ex_tensor t = {.vec = v, .vec_n = n};
    snprintf(t.name, sizeof t.name, "%s", name);
    return ex_add(x, &t, err);
}

static lb_status plan(exporter *x, lb_error *err) {
    const lb_model *m = x->m;
    const lb_model_info *h = &m->info;
    bool phi3 = strcmp(h->model_type, "phi3") == 0, perm = m->rope_interleaved;
    int64_t D = h->head_dim, F = h->n_ff;
    char n[96];
    lb_status s;
#define TRY(e) if ((s = (e)) != LB_OK) return s
#define NM(...) (snprintf(n, sizeof n, __VA_ARGS__), n)
    TRY(add_mat(x, "model.embed_tokens.weight", &m->tok_embd, NULL, NULL, false, err));
    for (int64_t i = 0; i < h->n_layer; i++) {
        const lb_layer *l = &m->layers[i];
        long long li = (long long)i;
        TRY(add_vec(x, NM("model.layers.%lld.input_layernorm.weight", li), l->attn_norm, h->n_embd, err));
        if (phi3) {
            TRY(add_mat(x, NM("model.layers.%lld.self_attn.qkv_proj.weight", li), &l->wq, &l->wk, &l->wv, false, err));
        } else {
            TRY(add_mat(x, NM("model.layers.%lld.self_attn.q_proj.weight", li), &l->wq, NULL, NULL, perm, err));
            TRY(add_mat(x, NM("model.layers.%lld.self_attn.k_proj.weight", li), &l->wk, NULL, NULL, perm, err));
            TRY(add_mat(x, NM("model.layers.%lld.self_attn.v_proj.weight", li), &l->wv, NULL, NULL, false, err));
            TRY(add_vec(x, NM("model.layers.%lld.self_attn.q_proj.bias", li), l->bq, h->n_head * D, err));
            TRY(add_vec(x, NM("model.layers.%lld.self_attn.k_proj.bias", li), l->bk, h->n_head_kv * D, err));
            TRY(add_vec(x, NM("model.layers.%lld.self_attn.v_proj.bias", li), l->bv, h->n_head_kv * D, err));
        }
        if (perm && (l->bq || l->bk || l->q_norm))
            return lb_err_set(err, LB_ERR_UNSUPPORTED, "layer %lld: q/k biases or norms in llama.cpp's permuted layout", li);
        TRY(add_vec(x, NM("model.layers.%lld.self_attn.q_norm.weight", li), l->q_norm, D, err));
        TRY(add_vec(x, NM("model.layers.%lld.self_attn.k_norm.weight", li), l->k_norm, D, err));
        TRY(add_mat(x, NM("model.layers.%lld.self_attn.o_proj.weight", li), &l->wo, NULL, NULL, false, err));
        TRY(add_vec(x, NM("model.layers.%lld.self_attn.o_proj.bias", li), l->bo, h->n_embd, err));
        TRY(add_vec(x, NM("model.layers.%lld.post_attention_layernorm.weight", li), l->ffn_norm, h->n_embd, err));
        if (phi3) {
            TRY(add_mat(x, NM("model.layers.%lld.mlp.gate_up_proj.weight", li), &l->w_gate, &l->w_up, NULL, false, err));
        } else {
            TRY(add_mat(x, NM("model.layers.%lld.mlp.gate_proj.weight", li), &l->w_gate, NULL, NULL, false, err));
            TRY(add_mat(x, NM("model.layers.%lld.mlp.up_proj.weight", li), &l->w_up, NULL, NULL, false, err));
            TRY(add_vec(x, NM("model.layers.%lld.mlp.gate_proj.bias", li), l->b_gate, F, err));
            TRY(add_vec(x, NM("model.layers.%lld.mlp.up_proj.bias", li), l->b_up, F, err));
        }
        TRY(add_mat(x, NM("model.layers.%lld.mlp.down_proj.weight", li), &l->w_down, NULL, NULL, false, err));
        TRY(add_vec(x, NM("model.layers.%lld.mlp.down_proj.bias", li), l->b_down, h->n_embd, err));
    }
    TRY(add_vec(x, "model.norm.weight", m->out_norm, h->n_embd, err));
    if (!h->tied_embeddings) TRY(add_mat(x, "lm_head.weight", &m->output, NULL, NULL, false, err));
#undef NM
#undef TRY
    return LB_OK;
}

static void store_row(st_dtype d, const float *v, int64_t n, void *out) {
    if (d == ST_F32) {
        memcpy(out, v, (size_t)n * sizeof *v);
        return;
    }
    uint16_t *o = out;
    for (int64_t i = 0; i < n; i++) o[i] = d == ST_F16 ? lb_f32_to_fp16(v[i]) : lb_f32_to_bf16(v[i]);
}

static lb_status fill(void *user, int64_t i, int64_t r, void *out, lb_error *err) {
    exporter *x = user;
    const ex_tensor *t = &x->t[i];
    if (t->vec) {
        store_row(x->dtype, t->vec, t->vec_n, out);
        return LB_OK;
    }
    int p = 0;
    while (p + 1 < t->n_parts && r >= t->part[p]->rows) r -= t->part[p++]->rows;
    const lb_weight *w = t->part[p];
    int64_t src = r;
    if (t->unpermute) { /* HF row h*D + j*D/2 + i is GGUF row h*D + 2i + j */
        int64_t D = x->m->info.head_dim, hd = r / D, k = r % D, half = D / 2;
        src = hd * D + 2 * (k % half) + k / half;
    }
    if (src < 0 || src >= w->rows) return lb_err_set(err, LB_ERR_FORMAT, "tensor %s: row %lld out of range", t->name, (long long)r);
    lb_weight_row_f32(w, src, x->row);
    store_row(x->dtype, x->row, w->cols, out);
    return LB_OK;
}

/* ------------------------------------------------------------------------------------------ JSON out */

static const char *hf_class(const char *model_type) {
    static const char *map[][2] = {{"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"},
                                   {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"},
                                   {"phi3", "Phi3ForCausalLM"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i][0], model_type)) return map[i][1];
    return NULL;
}

/* the shortest decimal that reads back as the same float (1e-05, not 9.99999975e-06) */
static void put_float(FILE *f, float v) {
    char b[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, (double)v);
        if (strtof(b, NULL) == v) break;
    }
    fputs(b, f);
}

static const char *dtype_word(st_dtype d) { return d == ST_F16 ? "float16" : d == ST_BF16 ? "bfloat16" : "float32"; }

static bool write_config(const lb_model *m, st_dtype d, FILE *f) {
    const lb_model_info *h = &m->info;
    fprintf(f, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", hf_class(h->model_type), h->model_type);
    fprintf(f, "  \"vocab_size\": %lld,\n  \"hidden_size\": %lld,\n  \"intermediate_size\": %lld,\n", (long long)h->n_vocab,
            (long long)h->n_embd, (long long)h->n_ff);
    fprintf(f, "  \"num_hidden_layers\": %lld,\n  \"num_attention_heads\": %lld,\n  \"num_key_value_heads\": %lld,\n",
            (long long)h->n_layer, (long long)h->n_head, (long long)h->n_head_kv);
    fprintf(f, "  \"head_dim\": %lld,\n  \"max_position_embeddings\": %lld,\n", (long long)h->head_dim, (long long)h->n_ctx_train);
    fputs("  \"rms_norm_eps\": ", f);
    put_float(f, h->rms_eps);
    fputs(",\n  \"rope_theta\": ", f);
    put_float(f, h->rope_theta);
    fputs(",\n", f);
    if (h->rope_scaling == LB_ROPE_LINEAR)
        fprintf(f, "  \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": %.9g},\n", (double)h->rope_factor);
    else if (h->rope_scaling == LB_ROPE_LLAMA3)
        fprintf(f,
                "  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": %.9g, \"low_freq_factor\": %.9g, "
                "\"high_freq_factor\": %.9g, \"original_max_position_embeddings\": %lld},\n",
                (double)h->rope_factor, (double)h->rope_low_freq_factor, (double)h->rope_high_freq_factor,
                (long long)h->rope_orig_ctx);
    else
        fputs("  \"rope_scaling\": null,\n", f);
    if (!strcmp(h->model_type, "llama") || !strcmp(h->model_type, "mistral"))
        fprintf(f, "  \"attention_bias\": %s,\n  \"mlp_bias\": %s,\n", h->attn_bias ? "true" : "false", h->mlp_bias ? "true" : "false");
    fprintf(f, "  \"tie_word_embeddings\": %s,\n  \"hidden_act\": \"silu\",\n", h->tied_embeddings ? "true" : "false");
    if (h->bos_id >= 0) fprintf(f, "  \"bos_token_id\": %d,\n", h->bos_id);
    if (h->eos_id >= 0) fprintf(f, "  \"eos_token_id\": %d,\n", h->eos_id);
    fprintf(f, "  \"torch_dtype\": \"%s\"\n}\n", dtype_word(d));
    return !ferror(f);
}

static bool write_generation_config(const lb_model *m, FILE *f) {
    fputs("{\n", f);
    if (m->info.bos_id >= 0) fprintf(f, "  \"bos_token_id\": %d,\n", m->info.bos_id);
    if (m->info.eos_id >= 0) fprintf(f, "  \"eos_token_id\": %d,\n", m->info.eos_id);
    fputs("  \"_from_model_config\": true\n}\n", f);
    return !ferror(f);
}

/* ------------------------------------------------------------------------- tokenizer from GGUF */

/* The tokenizer.json pre_tokenizer for a GGUF pre type, for the byte-level BPE families whose rule
 * tokenizers expresses directly (regexes: the published tokenizer.json files of those models). */
static const char *pre_tokenizer_json(const char *pre) {
    static const char *LLAMA3 =
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
        "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*"
        "|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, "
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}";
    static const char *QWEN2 =
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
        "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*"
        "|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, "
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}]}";
    static const char *GPT2 = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}";
    static const char *SMOLLM =
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": true}, "
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}]}";
    if (!strcmp(pre, "gpt-2")) return GPT2;
    if (!strcmp(pre, "smollm")) return SMOLLM;
    if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "llama-v3")) return LLAMA3;
    if (!strcmp(pre, "qwen2")) return QWEN2;
    return NULL;
}

static const char *arr_str(const gguf_kv *kv, uint64_t i, size_t *len) { return gguf_get_arr_str(kv, i, len); }

static lb_status write_tokenizer_gguf(const lb_model *m, const char *dir, lb_error *err) {
    const gguf_file *g = m->gguf;
    size_t len;
    const char *model = gguf_get_str(g, "tokenizer.ggml.model", &len);
    size_t pre_len = 0;
    const char *pre_raw = gguf_get_str(g, "tokenizer.ggml.pre", &pre_len);
    char pre_buf[64] = "";
    if (pre_raw) snprintf(pre_buf, sizeof pre_buf, "%.*s", (int)(pre_len < 63 ? pre_len : 63), pre_raw);
    const char *pre = pre_raw ? pre_buf : NULL;
    if (!model) return lb_err_set(err, LB_ERR_FORMAT, "tokenizer.ggml.model is missing");
    if (len != 4 || memcmp(model, "gpt2", 4))
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "writing tokenizer.json for tokenizer.ggml.model \"%.*s\" is not supported (only gpt2 byte-level BPE)",
                          (int)len, model);
    const char *pt = pre ? pre_tokenizer_json(pre) : NULL;
    if (!pt)
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "writing tokenizer.json for tokenizer.ggml.pre \"%s\" is not supported (gpt-2, smollm, llama-bpe, qwen2)", pre ? pre : "(missing)");
    const gguf_kv *tok = gguf_find_kv(g, "tokenizer.ggml.tokens"), *merges = gguf_find_kv(g, "tokenizer.ggml.merges"),
                  *types = gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (!tok || gguf_arr_type(tok) != GGUF_VT_STR || !merges || gguf_arr_type(merges) != GGUF_VT_STR)
        return lb_err_set(err, LB_ERR_FORMAT, "tokenizer.ggml.tokens or .merges is missing or not a string array");
    uint64_t nt = gguf_arr_n(tok), nm = gguf_arr_n(merges);
    if (types && gguf_arr_n(types) != nt) return lb_err_set(err, LB_ERR_FORMAT, "tokenizer.ggml.token_type has %llu entries, tokens %llu",
                                                           (unsigned long long)gguf_arr_n(types), (unsigned long long)nt);
    char *path = lb_path_join(dir, "tokenizer.json");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) {
        lb_status s = lb_err_set(err, LB_ERR_IO, "%s: cannot create: %s", path ? path : dir, strerror(errno));
        free(path);
        return s;
    }
    fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [", f);
    int n_added = 0;
    for (uint64_t i = 0; i < nt; i++) {
        int64_t ty = 1;
        if (types) gguf_get_arr_int(types, i, &ty);
        if (ty != 3 && ty != 4) continue; /* llama.cpp token types: 3 control, 4 user-defined */
        const char *s = arr_str(tok, i, &len);
        fprintf(f, "%s\n    {\"id\": %llu, \"content\": ", n_added++ ? "," : "", (unsigned long long)i);
        json_write_str(f, s ? s : "", s ? len : 0);
        fprintf(f, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": %s}",
                ty == 3 ? "true" : "false");
    }
    fprintf(f, "\n  ],\n  \"normalizer\": null,\n  \"pre_tokenizer\": %s,\n", pt);
    fputs("  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": false, \"use_regex\": true},\n", f);
    fputs("  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n", f);
    fputs("  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
          "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
          "    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {",
          f);
    for (uint64_t i = 0; i < nt; i++) {
        const char *s = arr_str(tok, i, &len);
        fputs(i ? ",\n      " : "\n      ", f);
        json_write_str(f, s ? s : "", s ? len : 0);
        fprintf(f, ": %llu", (unsigned long long)i);
    }
    fputs("\n    },\n    \"merges\": [", f);
    for (uint64_t i = 0; i < nm; i++) {
        const char *s = arr_str(merges, i, &len);
        fputs(i ? ",\n      " : "\n      ", f);
        json_write_str(f, s ? s : "", s ? len : 0);
    }
    fputs("\n    ]\n  }\n}\n", f);
    bool ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        lb_status s = lb_err_set(err, LB_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        free(path);
        return s;
    }
    free(path);

    /* tokenizer_config.json: special tokens by text and the chat template */
    path = lb_path_join(dir, "tokenizer_config.json");
    f = path ? fopen(path, "w") : NULL;
    if (!f) {
        lb_status s = lb_err_set(err, LB_ERR_IO, "%s: cannot create: %s", path ? path : dir, strerror(errno));
        free(path);
        return s;
    }
    bool add_bos = false;
    gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
    fprintf(f, "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"add_bos_token\": %s,\n  \"clean_up_tokenization_spaces\": false,\n",
            add_bos ? "true" : "false");
    static const char *keys[][2] = {{"tokenizer.ggml.bos_token_id", "bos_token"}, {"tokenizer.ggml.eos_token_id", "eos_token"},
                                    {"tokenizer.ggml.unknown_token_id", "unk_token"}, {"tokenizer.ggml.padding_token_id", "pad_token"}};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        int64_t id;
        const char *s;
        if (gguf_get_int(g, keys[k][0], &id) && id >= 0 && (uint64_t)id < nt && (s = arr_str(tok, (uint64_t)id, &len))) {
            fprintf(f, "  \"%s\": ", keys[k][1]);
            json_write_str(f, s, len);
            fputs(",\n", f);
        }
    }
    const char *tmpl = gguf_get_str(g, "tokenizer.chat_template", &len);
    if (tmpl) {
        fputs("  \"chat_template\": ", f);
        json_write_str(f, tmpl, len);
        fputs(",\n", f);
    }
    fprintf(f, "  \"model_max_length\": %lld\n}\n", (long long)m->info.n_ctx_train);
    ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    lb_status s = ok ? LB_OK : lb_err_set(err, LB_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    free(path);
    return s;
}

/* Copy the tokenizer files of an HF input directory that exist. */
static lb_status copy_tokenizer_hf(const char *src_dir, const char *dir, lb_error *err) {
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *src = lb_path_join(src_dir, files[i]), *dst = lb_path_join(dir, files[i]);
        lb_status s = LB_OK;
        char *data = NULL;
        size_t n = 0;
        if (!src || !dst) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        else if (lb_path_exists(src)) {
            s = lb_read_file(src, (size_t)1 << 31, &data, &n, err);
            FILE *f = s == LB_OK ? fopen(dst, "wb") : NULL;
            if (s == LB_OK) {
                bool ok = f && fwrite(data, 1, n, f) == n;
                if (f && fclose(f) != 0) ok = false;
                if (!ok) s = lb_err_set(err, LB_ERR_IO, "%s: write failed: %s", dst, strerror(errno));
            }
        }
        free(data);
        free(src);
        free(dst);
        if (s != LB_OK) return s;
    }
    return LB_OK;
}

static lb_status write_json_file(const char *dir, const char *name, const lb_model *m, st_dtype d, bool config, lb_error *err) {
    char *path = lb_path_join(dir, name);
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) {
        lb_status s = lb_err_set(err, LB_ERR_IO, "%s: cannot create: %s", path ? path : dir, strerror(errno));
        free(path);
        return s;
    }
    bool ok = config ? write_config(m, d, f) : write_generation_config(m, f);
    ok = fclose(f) == 0 && ok;
    lb_status s = ok ? LB_OK : lb_err_set(err, LB_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    free(path);
    return s;
}

static void remove_tree(const char *dir) {
    static const char *files[] = {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                                  "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = lb_path_join(dir, files[i]);
        if (p) unlink(p);
        free(p);
    }
    rmdir(dir);
}

lb_status lb_export_hf(const char *input, const char *out_dir, lb_type dtype, lb_error *err) {
    if (!input || !out_dir) return lb_err_set(err, LB_ERR_ARG, "lb_export_hf: NULL argument");
    st_dtype d = dtype == LB_TYPE_F16 ? ST_F16 : dtype == LB_TYPE_BF16 ? ST_BF16 : dtype == LB_TYPE_F32 ? ST_F32 : ST_DTYPE_COUNT;
    if (d == ST_DTYPE_COUNT) return lb_err_set(err, LB_ERR_ARG, "an HF export is f16, bf16 or f32, not %s", lb_type_name(dtype));
    if (lb_path_exists(out_dir)) return lb_err_set(err, LB_ERR_ARG, "%s already exists; the export makes a new directory", out_dir);
    lb_model *m = NULL;
    lb_status s = lb_model_load(input, &m, err);
    if (s != LB_OK) return s;
    if (!hf_class(m->info.model_type)) {
        s = lb_err_set(err, LB_ERR_UNSUPPORTED, "no transformers class for architecture %s", m->info.model_type);
        lb_model_free(m);
        return s;
    }
    int64_t widest = m->info.n_embd;
    if (m->info.n_ff > widest) widest = m->info.n_ff;
    if (m->info.n_head * m->info.head_dim > widest) widest = m->info.n_head * m->info.head_dim;
    exporter x = {m, d, NULL, 0, 0, malloc((size_t)widest * sizeof(float))};
    size_t tl = strlen(out_dir) + 32;
    char *tmp = malloc(tl);
    if (!x.row || !tmp) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (s == LB_OK) s = plan(&x, err);
    st_out_tensor *ot = s == LB_OK ? calloc((size_t)x.n, sizeof *ot) : NULL;
    if (s == LB_OK && !ot) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; s == LB_OK && i < x.n; i++) {
        const ex_tensor *t = &x.t[i];
        ot[i].name = t->name;
        ot[i].dtype = d;
        if (t->vec) {
            ot[i].n_dims = 1;
            ot[i].shape[0] = t->vec_n;
        } else {
            ot[i].n_dims = 2;
            for (int p = 0; p < t->n_parts; p++) ot[i].shape[0] += t->part[p]->rows;
            ot[i].shape[1] = t->part[0]->cols;
        }
    }
    bool made = false;
    if (s == LB_OK) {
        snprintf(tmp, tl, "%s.tmp.%ld", out_dir, (long)getpid());
        if (mkdir(tmp, 0755) != 0) s = lb_err_set(err, LB_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        else made = true;
    }
    char *st_path = s == LB_OK ? lb_path_join(tmp, "model.safetensors") : NULL;
    if (s == LB_OK && !st_path) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (s == LB_OK) s = st_write(st_path, ot, x.n, fill, &x, err);
    if (s == LB_OK) s = write_json_file(tmp, "config.json", m, d, true, err);
    if (s == LB_OK) s = write_json_file(tmp, "generation_config.json", m, d, false, err);
    if (s == LB_OK) s = m->gguf ? write_tokenizer_gguf(m, tmp, err) : copy_tokenizer_hf(input, tmp, err);
    if (s == LB_OK && rename(tmp, out_dir) != 0) s = lb_err_set(err, LB_ERR_IO, "rename %s to %s: %s", tmp, out_dir, strerror(errno));
    if (s != LB_OK && made) remove_tree(tmp);
    free(st_path);
    free(tmp);
    free(ot);
    free(x.t);
    free(x.row);
    lb_model_free(m);
    return s;
}
