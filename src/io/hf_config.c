/*
 * hf_config.c - Hugging Face config.json of a decoder-only causal LM, into lb_model_info.
 *
 * Source: the configuration classes of Hugging Face transformers (LlamaConfig, MistralConfig,
 * Qwen2Config, Qwen3Config, Phi3Config) and the modeling files that read them, for key names, defaults
 * and which projections carry biases; transformers 5 moved rope_theta and rope_scaling into
 * rope_parameters ({rope_type, rope_theta, factor, ...}) and torch_dtype to dtype. Both layouts are read.
 * Rope types: modeling_rope_utils ("default", "linear", "llama3"; others are refused).
 */
#include "hf_config.h"

#include "../core/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (16u << 20)
#define CONFIG_INT_MAX INT32_MAX /* every size and count must stay below 2^31 */
#define DEFAULT_ROPE_THETA 10000.0
#define QWEN_DEFAULT_MAX_WINDOW_LAYERS 28

typedef enum bias_rule {
    BIAS_NONE,        /* no projection has a bias (Mistral, Phi-3) */
    BIAS_KEY,         /* attention_bias puts biases on q, k, v and o (Llama, Qwen3) */
    BIAS_QKV_ALWAYS,  /* q, k and v always carry biases, o never (Qwen2) */
} bias_rule;

typedef struct arch_desc {
    const char *arch;
    const char *model_type;
    bias_rule bias;
    bool mlp_bias_key;   /* reads mlp_bias */
    bool qk_norm;
    bool qwen_sliding;   /* sliding window governed by use_sliding_window / max_window_layers */
    double eps_default;
    int64_t ctx_default;
} arch_desc;

static const arch_desc archs[] = {
    {"LlamaForCausalLM", "llama", BIAS_KEY, true, false, false, 1e-6, 2048},
    {"MistralForCausalLM", "mistral", BIAS_NONE, false, false, false, 1e-6, 4096 * 32},
    {"Qwen2ForCausalLM", "qwen2", BIAS_QKV_ALWAYS, false, false, true, 1e-6, 32768},
    {"Qwen3ForCausalLM", "qwen3", BIAS_KEY, false, true, true, 1e-6, 32768},
    {"Phi3ForCausalLM", "phi3", BIAS_NONE, false, false, false, 1e-5, 4096},
};
#define N_ARCHS (sizeof archs / sizeof archs[0])
#define SUPPORTED_LIST \
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM"

/* ---- typed lookups; `name` is the file name used in messages ---- */

static bool absent(const json_value *v) { return json_type(v) == JSON_NULL; }

/* Integer key in [lo, CONFIG_INT_MAX]; absent/null gives def, or an error when required. */
static lb_status get_int(const char *name, const json_value *obj, const char *key, bool required, int64_t def,
                         int64_t lo, int64_t *out, lb_error *err) {
    const json_value *v = json_get(obj, key);
    if (absent(v)) {
        if (required) return lb_err_set(err, LB_ERR_FORMAT, "%s: missing %s", name, key);
        *out = def;
        return LB_OK;
    }
    int64_t x;
    if (!json_int(v, &x)) return lb_err_set(err, LB_ERR_FORMAT, "%s: %s must be an integer", name, key);
    if (x < lo) {
        if (lo == 1) return lb_err_set(err, LB_ERR_FORMAT, "%s: %s must be positive", name, key);
        return lb_err_set(err, LB_ERR_FORMAT, "%s: %s must be at least %lld", name, key, (long long)lo);
    }
    if (x > CONFIG_INT_MAX)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: %s %lld is too large", name, key, (long long)x);
    *out = x;
    return LB_OK;
}

/* Positive finite number that fits a float. */
static lb_status get_pos_float(const char *name, const json_value *obj, const char *key, double def, float *out,
                               lb_error *err) {
    const json_value *v = json_get(obj, key);
    double x = def;
    if (!absent(v) && !json_num(v, &x))
        return lb_err_set(err, LB_ERR_FORMAT, "%s: %s must be a number", name, key);
    if (!(x > 0) || !isfinite((float)x) || (float)x == 0)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: %s must be a positive finite number", name, key);
    *out = (float)x;
    return LB_OK;
}

static lb_status get_bool(const char *name, const json_value *obj, const char *key, bool def, int *out,
                          lb_error *err) {
    const json_value *v = json_get(obj, key);
    bool b = def;
    if (!absent(v) && !json_bool(v, &b))
        return lb_err_set(err, LB_ERR_FORMAT, "%s: %s must be true or false", name, key);
    *out = b;
    return LB_OK;
}

/* bos_token_id / eos_token_id: an integer, a list (the first is taken), or null/absent (-1). */
static lb_status get_token_id(const char *name, const json_value *obj, const char *key, int64_t n_vocab,
                              int32_t *out, lb_error *err) {
    const json_value *v = json_get(obj, key);
    if (json_type(v) == JSON_ARRAY) v = json_at(v, 0);
    if (absent(v)) {
        *out = -1;
        return LB_OK;
    }
    int64_t x;
    if (!json_int(v, &x) || x < 0)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: %s must be a non-negative integer", name, key);
    if (x >= n_vocab)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: %s %lld is outside the vocabulary of %lld", name, key,
                          (long long)x, (long long)n_vocab);
    *out = (int32_t)x;
    return LB_OK;
}

/* ---- architecture ---- */

static lb_status find_arch(const char *name, const json_value *root, const arch_desc **out, lb_error *err) {
    const json_value *av = json_get(root, "architectures");
    const json_value *mv = json_get(root, "model_type");
    if (!absent(av) && (json_type(av) != JSON_ARRAY || json_len(av) == 0 || !json_str(json_at(av, 0), NULL)))
        return lb_err_set(err, LB_ERR_FORMAT, "%s: architectures must be a non-empty list of strings", name);
    if (!absent(mv) && !json_str(mv, NULL))
        return lb_err_set(err, LB_ERR_FORMAT, "%s: model_type must be a string", name);
    const char *arch = json_str(json_at(av, 0), NULL);
    const char *mtype = json_str(mv, NULL);
    if (!arch && !mtype) return lb_err_set(err, LB_ERR_FORMAT, "%s: missing architectures and model_type", name);
    if (json_len(av) > 1)
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: more than one architecture is listed", name);
    for (size_t i = 0; i < N_ARCHS; i++) {
        const arch_desc *d = &archs[i];
        if (arch ? strcmp(arch, d->arch) != 0 : strcmp(mtype, d->model_type) != 0) continue;
        if (arch && mtype && strcmp(mtype, d->model_type) != 0)
            return lb_err_set(err, LB_ERR_FORMAT, "%s: model_type \"%.32s\" does not match architecture \"%s\"",
                              name, mtype, d->arch);
        *out = d;
        return LB_OK;
    }
    if (arch)
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: architecture \"%.64s\" is not supported (supported: %s)",
                          name, arch, SUPPORTED_LIST);
    return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: model_type \"%.32s\" is not supported (supported: %s)", name,
                      mtype, SUPPORTED_LIST);
}

/* ---- rope ---- */

static lb_status check_partial_rotary(const char *name, const json_value *obj, lb_error *err) {
    const json_value *v = json_get(obj, "partial_rotary_factor");
    double x;
    if (absent(v)) return LB_OK;
    if (!json_num(v, &x)) return lb_err_set(err, LB_ERR_FORMAT, "%s: partial_rotary_factor must be a number", name);
    if (x != 1.0)
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: partial_rotary_factor %g is not supported (only 1.0)", name,
                          x);
    return LB_OK;
}

static lb_status parse_rope(const char *name, const json_value *root, lb_model_info *info, lb_error *err) {
    const json_value *params = json_get(root, "rope_parameters"); /* transformers 5 */
    const char *where = "rope_parameters";
    if (absent(params)) {
        params = json_get(root, "rope_scaling"); /* transformers 4 */
        where = "rope_scaling";
    }
    if (!absent(params) && json_type(params) != JSON_OBJECT)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: %s must be an object or null", name, where);

    /* rope_theta: inside rope_parameters (v5) or at top level (v4). */
    const json_value *theta_obj = json_get(params, "rope_theta") ? params : root;
    lb_status s = get_pos_float(name, theta_obj, "rope_theta", DEFAULT_ROPE_THETA, &info->rope_theta, err);
    if (s != LB_OK) return s;
    if ((s = check_partial_rotary(name, root, err)) != LB_OK) return s;
    if ((s = check_partial_rotary(name, params, err)) != LB_OK) return s;

    info->rope_scaling = LB_ROPE_NONE;
    info->rope_factor = 1.0f;
    info->rope_low_freq_factor = 0;
    info->rope_high_freq_factor = 0;
    info->rope_orig_ctx = 0;
    if (absent(params)) return LB_OK;

    const json_value *tv = json_get(params, "rope_type");
    if (absent(tv)) tv = json_get(params, "type"); /* older rope_scaling spelling */
    const char *type = json_str(tv, NULL);
    if (!absent(tv) && !type) return lb_err_set(err, LB_ERR_FORMAT, "%s: %s.rope_type must be a string", name, where);
    if (!type || strcmp(type, "default") == 0) return LB_OK;
    if (strcmp(type, "linear") == 0) {
        info->rope_scaling = LB_ROPE_LINEAR;
    } else if (strcmp(type, "llama3") == 0) {
        info->rope_scaling = LB_ROPE_LLAMA3;
    } else {
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: rope type \"%.32s\" is not supported", name, type);
    }
    if (!json_get(params, "factor"))
        return lb_err_set(err, LB_ERR_FORMAT, "%s: %s: missing factor for rope type %s", name, where, type);
    if ((s = get_pos_float(name, params, "factor", 1.0, &info->rope_factor, err)) != LB_OK) return s;
    if (info->rope_scaling != LB_ROPE_LLAMA3) return LB_OK;

    static const char *const need[] = {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (absent(json_get(params, need[i])))
            return lb_err_set(err, LB_ERR_FORMAT, "%s: %s: missing %s for rope type llama3", name, where, need[i]);
    if ((s = get_pos_float(name, params, "low_freq_factor", 1.0, &info->rope_low_freq_factor, err)) != LB_OK)
        return s;
    if ((s = get_pos_float(name, params, "high_freq_factor", 1.0, &info->rope_high_freq_factor, err)) != LB_OK)
        return s;
    if (!(info->rope_high_freq_factor > info->rope_low_freq_factor))
        return lb_err_set(err, LB_ERR_FORMAT, "%s: %s: high_freq_factor must exceed low_freq_factor", name, where);
    return get_int(name, params, "original_max_position_embeddings", true, 0, 1, &info->rope_orig_ctx, err);
}

/* ---- sliding window ---- */

static lb_status check_sliding_window(const char *name, const json_value *root, const arch_desc *d,
                                      const lb_model_info *info, lb_error *err) {
    int64_t window = 0;
    lb_status s = get_int(name, root, "sliding_window", false, 0, 1, &window, err);
    if (s != LB_OK) return s;
    bool in_use;
    const json_value *lt = json_get(root, "layer_types");
    if (!absent(lt)) {
        /* transformers 5 spells out each layer's kind; that is authoritative. */
        if (json_type(lt) != JSON_ARRAY)
            return lb_err_set(err, LB_ERR_FORMAT, "%s: layer_types must be a list", name);
        in_use = false;
        for (size_t i = 0; i < json_len(lt); i++) {
            const char *k = json_str(json_at(lt, i), NULL);
            if (!k) return lb_err_set(err, LB_ERR_FORMAT, "%s: layer_types[%zu] must be a string", name, i);
            if (strcmp(k, "sliding_attention") == 0) in_use = true;
            else if (strcmp(k, "full_attention") != 0)
                return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: layer type \"%.32s\" is not supported", name, k);
        }
        in_use = in_use && window > 0;
    } else if (d->qwen_sliding) {
        int use = 0;
        int64_t max_window_layers;
        if ((s = get_bool(name, root, "use_sliding_window", false, &use, err)) != LB_OK) return s;
        if ((s = get_int(name, root, "max_window_layers", false, QWEN_DEFAULT_MAX_WINDOW_LAYERS, 0,
                         &max_window_layers, err)) != LB_OK)
            return s;
        in_use = use && window > 0 && max_window_layers < info->n_layer;
    } else {
        in_use = window > 0;
    }
    /* A window covering the whole trained context changes nothing. */
    if (in_use && window < info->n_ctx_train)
        return lb_err_set(err, LB_ERR_UNSUPPORTED,
                          "%s: sliding-window attention (sliding_window %lld < max_position_embeddings %lld) is "
                          "not supported",
                          name, (long long)window, (long long)info->n_ctx_train);
    return LB_OK;
}

/* ---- the whole config ---- */

static lb_status parse_sizes(const char *name, const json_value *root, const arch_desc *d, lb_model_info *info,
                             lb_error *err) {
    lb_status s;
    if ((s = get_int(name, root, "vocab_size", true, 0, 1, &info->n_vocab, err)) != LB_OK) return s;
    if ((s = get_int(name, root, "hidden_size", true, 0, 1, &info->n_embd, err)) != LB_OK) return s;
    if ((s = get_int(name, root, "num_hidden_layers", true, 0, 1, &info->n_layer, err)) != LB_OK) return s;
    if ((s = get_int(name, root, "num_attention_heads", true, 0, 1, &info->n_head, err)) != LB_OK) return s;
    if ((s = get_int(name, root, "num_key_value_heads", false, info->n_head, 1, &info->n_head_kv, err)) != LB_OK)
        return s;
    if ((s = get_int(name, root, "intermediate_size", true, 0, 1, &info->n_ff, err)) != LB_OK) return s;
    if ((s = get_int(name, root, "max_position_embeddings", false, d->ctx_default, 1, &info->n_ctx_train, err)) !=
        LB_OK)
        return s;
    if (absent(json_get(root, "head_dim"))) {
        if (info->n_embd % info->n_head != 0)
            return lb_err_set(err, LB_ERR_FORMAT,
                              "%s: hidden_size %lld is not divisible by num_attention_heads %lld", name,
                              (long long)info->n_embd, (long long)info->n_head);
        info->head_dim = info->n_embd / info->n_head;
    } else if ((s = get_int(name, root, "head_dim", true, 0, 1, &info->head_dim, err)) != LB_OK) {
        return s;
    }
    if (info->n_head % info->n_head_kv != 0)
        return lb_err_set(err, LB_ERR_FORMAT,
                          "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld", name,
                          (long long)info->n_head, (long long)info->n_head_kv);
    if (info->n_head * info->head_dim > CONFIG_INT_MAX)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: num_attention_heads x head_dim is too large", name);
    return LB_OK;
}

static lb_status parse_flags(const char *name, const json_value *root, const arch_desc *d, lb_model_info *info,
                             lb_error *err) {
    lb_status s;
    if ((s = get_bool(name, root, "tie_word_embeddings", false, &info->tied_embeddings, err)) != LB_OK) return s;
    int attention_bias = 0, mlp_bias = 0;
    if (d->bias == BIAS_KEY && (s = get_bool(name, root, "attention_bias", false, &attention_bias, err)) != LB_OK)
        return s;
    if (d->mlp_bias_key && (s = get_bool(name, root, "mlp_bias", false, &mlp_bias, err)) != LB_OK) return s;
    info->attn_bias = d->bias == BIAS_QKV_ALWAYS || (d->bias == BIAS_KEY && attention_bias);
    info->attn_out_bias = d->bias == BIAS_KEY && attention_bias;
    info->mlp_bias = mlp_bias;
    info->qk_norm = d->qk_norm;

    const char *act_key = "hidden_act";
    const json_value *act = json_get(root, act_key);
    if (absent(act)) act = json_get(root, act_key = "hidden_activation");
    if (!absent(act)) {
        const char *a = json_str(act, NULL);
        if (!a) return lb_err_set(err, LB_ERR_FORMAT, "%s: %s must be a string", name, act_key);
        if (strcmp(a, "silu") != 0 && strcmp(a, "swish") != 0)
            return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: %s \"%.32s\" is not supported (only silu)", name,
                              act_key, a);
    }
    const json_value *dt = json_get(root, "dtype");
    if (absent(dt)) dt = json_get(root, "torch_dtype");
    if (!absent(dt) && !json_str(dt, NULL))
        return lb_err_set(err, LB_ERR_FORMAT, "%s: dtype must be a string", name);

    if ((s = get_token_id(name, root, "bos_token_id", info->n_vocab, &info->bos_id, err)) != LB_OK) return s;
    return get_token_id(name, root, "eos_token_id", info->n_vocab, &info->eos_id, err);
}

static lb_status parse_named(const char *name, const char *text, size_t len, lb_model_info *info, lb_error *err) {
    if (!text || !info) return lb_err_set(err, LB_ERR_ARG, "hf_config_parse: NULL argument");
    json_doc *doc = NULL;
    lb_status s = json_parse(text, len, &doc, err);
    if (s != LB_OK) {
        json_free(doc);
        return lb_err_prefix(err, s, "%s", name);
    }
    const json_value *root = json_root(doc);
    lb_model_info mi;
    memset(&mi, 0, sizeof mi);
    const arch_desc *d = NULL;
    if (json_type(root) != JSON_OBJECT) s = lb_err_set(err, LB_ERR_FORMAT, "%s: not a JSON object", name);
    if (s == LB_OK) s = find_arch(name, root, &d, err);
    if (s == LB_OK) {
        snprintf(mi.architecture, sizeof mi.architecture, "%s", d->arch);
        snprintf(mi.model_type, sizeof mi.model_type, "%s", d->model_type);
        s = parse_sizes(name, root, d, &mi, err);
    }
    if (s == LB_OK) s = get_pos_float(name, root, "rms_norm_eps", d->eps_default, &mi.rms_eps, err);
    if (s == LB_OK) s = parse_rope(name, root, &mi, err);
    if (s == LB_OK) s = check_sliding_window(name, root, d, &mi, err);
    if (s == LB_OK) s = parse_flags(name, root, d, &mi, err);
    json_free(doc);
    if (s == LB_OK) *info = mi;
    return s;
}

lb_status hf_config_parse(const char *text, size_t len, lb_model_info *info, lb_error *err) {
    return parse_named("config.json", text, len, info, err);
}

lb_status hf_config_load(const char *dir, lb_model_info *info, lb_error *err) {
    if (!dir || !info) return lb_err_set(err, LB_ERR_ARG, "hf_config_load: NULL argument");
    char *path = lb_path_join(dir, "config.json");
    if (!path) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    lb_status s = lb_read_file(path, CONFIG_MAX_BYTES, &text, &len, err);
    if (s == LB_OK) s = parse_named(path, text, len, info, err);
    free(text);
    free(path);
    return s;
}
