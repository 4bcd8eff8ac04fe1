/*
 * chat_source.c - the public chat-template API: where a model keeps its template (GGUF metadata
 * tokenizer.chat_template, Hugging Face tokenizer_config.json or chat_template.jinja) and the render
 * entry points, which build the variables transformers' apply_chat_template passes.
 */
#include "chat_template.h"

#include "../io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_BYTES ((size_t)64 << 20)

void lb_chat_template_free(lb_chat_template *t) {
    if (!t) return;
    ct_arena_free(t->arena);
    free(t->source);
    free(t->bos_token);
    free(t->eos_token);
    free(t);
}

lb_status lb_chat_template_parse(const char *source, size_t len, lb_chat_template **out, lb_error *err) {
    if (!source || !out) return lb_err_set(err, LB_ERR_ARG, "lb_chat_template_parse: NULL argument");
    lb_chat_template *t = calloc(1, sizeof *t);
    if (!t || !(t->arena = ct_arena_new()) || !(t->source = malloc(len + 1))) {
        lb_chat_template_free(t);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    memcpy(t->source, source, len);
    t->source[len] = 0;
    t->source_len = len;
    lb_status st = ct_parse(t, t->source, len, err);
    if (st) {
        lb_chat_template_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
}

const char *lb_chat_template_source(const lb_chat_template *t, size_t *len) {
    if (len) *len = t ? t->source_len : 0;
    return t ? t->source : NULL;
}

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* ---- GGUF ---- */

static char *gguf_token_text(const gguf_file *f, const char *id_key) {
    int64_t id;
    const gguf_kv *toks = gguf_find_kv(f, "tokenizer.ggml.tokens");
    size_t n;
    const char *s;
    if (!gguf_get_int(f, id_key, &id) || id < 0 || !toks || !(s = gguf_get_arr_str(toks, (uint64_t)id, &n))) return NULL;
    return dup_n(s, n);
}

static lb_status load_gguf(const char *path, lb_chat_template **out, lb_error *err) {
    gguf_file *f = NULL;
    lb_status st = gguf_open(path, &f, err);
    if (st) return st;
    size_t len;
    const char *src = gguf_get_str(f, "tokenizer.chat_template", &len);
    if (!src) {
        gguf_close(f);
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: the model has no chat template (no tokenizer.chat_template)", path);
    }
    st = lb_chat_template_parse(src, len, out, err);
    if (!st) {
        (*out)->bos_token = gguf_token_text(f, "tokenizer.ggml.bos_token_id");
        (*out)->eos_token = gguf_token_text(f, "tokenizer.ggml.eos_token_id");
    }
    gguf_close(f);
    return st ? lb_err_prefix(err, st, "%s: tokenizer.chat_template", path) : LB_OK;
}

/* ---- Hugging Face directory ---- */

/* A special token in tokenizer_config.json: a string or {"content": s}. */
static char *config_token(const json_value *cfg, const char *key) {
    const json_value *v = json_get(cfg, key);
    if (json_type(v) == JSON_OBJECT) v = json_get(v, "content");
    size_t n;
    const char *s = json_str(v, &n);
    return s ? dup_n(s, n) : NULL;
}

/* chat_template as a string, or the list-of-named-templates form [{"name": ..., "template": ...}]. */
static lb_status config_template(const json_value *v, const char *path, const char **src, size_t *len, lb_error *err) {
    if ((*src = json_str(v, len))) return LB_OK;
    if (json_type(v) != JSON_ARRAY) return lb_err_set(err, LB_ERR_FORMAT, "%s: chat_template is neither a string nor a list", path);
    char names[256] = "";
    for (size_t i = 0; i < json_len(v); i++) {
        const json_value *e = json_at(v, i);
        const char *name = json_str(json_get(e, "name"), NULL);
        if (name && !strcmp(name, "default") && (*src = json_str(json_get(e, "template"), len))) return LB_OK;
        if (name && strlen(names) + strlen(name) + 3 < sizeof names) {
            if (names[0]) strcat(names, ", ");
            strcat(names, name);
        }
    }
    return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: chat_template has no template named \"default\" (it has: %s)", path,
                      names[0] ? names : "none");
}

static lb_status load_hf(const char *dir, lb_chat_template **out, lb_error *err) {
    char *cfg_path = lb_path_join(dir, "tokenizer_config.json"), *jinja_path = lb_path_join(dir, "chat_template.jinja");
    char *text = NULL, *jinja = NULL;
    size_t len = 0, src_len = 0;
    json_doc *doc = NULL;
    const json_value *cfg = NULL;
    const char *src = NULL;
    lb_status st = LB_OK;
    if (!cfg_path || !jinja_path) {
        st = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (lb_path_exists(cfg_path)) {
        if ((st = lb_read_file(cfg_path, MAX_CONFIG_BYTES, &text, &len, err)) || (st = json_parse(text, len, &doc, err))) {
            lb_err_prefix(err, st, "%s", cfg_path);
            goto done;
        }
        cfg = json_root(doc);
        const json_value *v = json_get(cfg, "chat_template");
        if (v && json_type(v) != JSON_NULL && (st = config_template(v, cfg_path, &src, &src_len, err))) goto done;
    }
    if (!src && lb_path_exists(jinja_path)) {
        if ((st = lb_read_file(jinja_path, MAX_CONFIG_BYTES, &jinja, &src_len, err))) goto done;
        src = jinja;
    }
    if (!src) {
        st = lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: the model has no chat template (tokenizer_config.json has no chat_template, "
                        "and there is no chat_template.jinja)", dir);
        goto done;
    }
    if ((st = lb_chat_template_parse(src, src_len, out, err))) {
        lb_err_prefix(err, st, "%s", jinja == src ? jinja_path : cfg_path);
        goto done;
    }
    if (cfg) {
        (*out)->bos_token = config_token(cfg, "bos_token");
        (*out)->eos_token = config_token(cfg, "eos_token");
    }
done:
    json_free(doc);
    free(text);
    free(jinja);
    free(cfg_path);
    free(jinja_path);
    return st;
}

lb_status lb_chat_template_load(const char *model_path, lb_chat_template **out, lb_error *err) {
    if (!model_path || !out) return lb_err_set(err, LB_ERR_ARG, "lb_chat_template_load: NULL argument");
    if (lb_path_is_dir(model_path)) return load_hf(model_path, out, err);
    if (!lb_path_exists(model_path)) return lb_err_set(err, LB_ERR_IO, "%s: no such file or directory", model_path);
    return load_gguf(model_path, out, err);
}

/* ---- rendering ---- */

static bool add_var(ct_ctx *c, ct_value *vars, const char *name, ct_value *v) {
    return ct_dict_set(c, vars, ct_str(c, name, strlen(name)), v);
}

/* The variables every render starts from: the model's special tokens, tools and documents none. */
static ct_value *base_vars(ct_ctx *c, const lb_chat_template *t, const char *bos, const char *eos) {
    ct_value *vars = ct_dict(c, CT_DICT);
    if (!vars) return NULL;
    bos = bos ? bos : t->bos_token;
    eos = eos ? eos : t->eos_token;
    if (bos && !add_var(c, vars, "bos_token", ct_str(c, bos, strlen(bos)))) return NULL;
    if (eos && !add_var(c, vars, "eos_token", ct_str(c, eos, strlen(eos)))) return NULL;
    if (!add_var(c, vars, "tools", ct_none(c)) || !add_var(c, vars, "documents", ct_none(c))) return NULL;
    return vars;
}

static lb_status finish(ct_ctx *c, const lb_chat_template *t, ct_value *vars, char **text, size_t *len) {
    ct_buf out = {0};
    c->out = &out;
    lb_status st = vars ? ct_render(c, t, vars) : (c->status ? c->status : LB_ERR_NOMEM);
    if (!st && out.oom) st = lb_err_set(c->err, LB_ERR_NOMEM, "chat template: out of memory");
    ct_arena_free(c->arena);
    if (st) {
        free(out.p);
        return st;
    }
    if (!out.p && !(out.p = calloc(1, 1))) return lb_err_set(c->err, LB_ERR_NOMEM, "out of memory");
    *text = out.p;
    if (len) *len = out.n;
    return LB_OK;
}

lb_status lb_chat_template_render(const lb_chat_template *t, const lb_chat_message *messages, int64_t n_messages,
                                  const lb_chat_params *params, char **text, size_t *len, lb_error *err) {
    if (!t || !text || n_messages < 0 || (n_messages && !messages))
        return lb_err_set(err, LB_ERR_ARG, "lb_chat_template_render: bad argument");
    ct_ctx c = {.arena = ct_arena_new(), .err = err};
    if (!c.arena) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    ct_value *vars = base_vars(&c, t, params ? params->bos_token : NULL, params ? params->eos_token : NULL);
    ct_value *msgs = vars ? ct_list(&c, (size_t)n_messages) : NULL;
    for (int64_t i = 0; msgs && i < n_messages; i++) {
        const lb_chat_message *m = &messages[i];
        if (!m->role || !m->content) {
            ct_arena_free(c.arena);
            return lb_err_set(err, LB_ERR_ARG, "lb_chat_template_render: message %lld has no role or content", (long long)i);
        }
        ct_value *d = ct_dict(&c, CT_DICT);
        if (!d || !add_var(&c, d, "role", ct_str(&c, m->role, strlen(m->role))) ||
            !add_var(&c, d, "content", ct_str(&c, m->content, strlen(m->content))) || !ct_list_push(&c, msgs, d))
            msgs = NULL;
    }
    if (!msgs || !add_var(&c, vars, "messages", msgs) ||
        !add_var(&c, vars, "add_generation_prompt", ct_bool(&c, params && params->add_generation_prompt)))
        vars = NULL;
    return finish(&c, t, vars, text, len);
}

lb_status lb_chat_template_render_json(const lb_chat_template *t, const char *json, size_t json_n, char **text,
                                       size_t *len, lb_error *err) {
    if (!t || !json || !text) return lb_err_set(err, LB_ERR_ARG, "lb_chat_template_render_json: NULL argument");
    json_doc *doc = NULL;
    lb_status st = json_parse(json, json_n, &doc, err);
    if (st) return lb_err_prefix(err, st, "chat template variables");
    const json_value *root = json_root(doc);
    if (json_type(root) != JSON_OBJECT) {
        json_free(doc);
        return lb_err_set(err, LB_ERR_ARG, "chat template variables: not a JSON object");
    }
    ct_ctx c = {.arena = ct_arena_new(), .err = err};
    if (!c.arena) {
        json_free(doc);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    ct_value *vars = base_vars(&c, t, NULL, NULL);
    for (size_t i = 0; vars && i < json_len(root); i++) {
        size_t n;
        const char *k = json_key_at(root, i, &n);
        if (!ct_dict_set(&c, vars, ct_str(&c, k, n), ct_from_json(&c, json_at(root, i)))) vars = NULL;
    }
    json_free(doc);
    return finish(&c, t, vars, text, len);
}
