/*
 * tokenizer_gguf.c - the tokenizer as GGUF metadata (tokenizer.ggml.*): built from a GGUF file, and
 * written into one the way llama.cpp's converter writes it.
 *
 * Sources: docs/formats.md section 1.7; llama.cpp src/llama-vocab.cpp (what the keys mean when read:
 * the pre-tokenizer names, token types, ignore_merges and add_bos for the Llama-3 regex);
 * convert_hf_to_gguf.py get_vocab_base() and does_token_look_special() and gguf-py vocab.py
 * SpecialVocab (what is written, and in which order), checked key by key against the files llama.cpp
 * wrote for the tiny model (tests/golden/gguf/tiny-*.gguf).
 */
#include "tokenizer_impl.h"

#include "unicode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKEN_BYTES ((size_t)1 << 20) /* far above any real token (whitespace runs: a few hundred) */

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_TYPES "tokenizer.ggml.token_type"
#define KEY_MERGES "tokenizer.ggml.merges"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_SPACE_PREFIX "tokenizer.ggml.add_space_prefix"
#define KEY_BOS "tokenizer.ggml.bos_token_id"
#define KEY_EOS "tokenizer.ggml.eos_token_id"
#define KEY_CHAT "tokenizer.chat_template"

static const char *const add_keys[CONV_N_ADD] = {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                                                 "tokenizer.ggml.add_sep_token"};
static const char *const id_keys[CONV_N_ID] = {"tokenizer.ggml.unknown_token_id", "tokenizer.ggml.seperator_token_id",
                                               "tokenizer.ggml.padding_token_id", "tokenizer.ggml.cls_token_id",
                                               "tokenizer.ggml.mask_token_id"};

static lb_status gg_err(lb_error *err, const gguf_file *f, lb_status s, const char *fmt, ...) LB_PRINTF(4, 5);
static lb_status gg_err(lb_error *err, const gguf_file *f, lb_status s, const char *fmt, ...) {
    if (!err) return s;
    char msg[LB_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lb_err_set(err, s, "%s: %s", f->path ? f->path : "GGUF", msg);
}

/* ---------------------------------------------------------------------------------------------- */
/* reading                                                                                        */

/* A string-valued key: its bytes (not NUL-terminated) or NULL with an error set. */
static const char *need_str(const gguf_file *f, const char *key, size_t *len, lb_status *st, lb_error *err) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    const char *s = kv ? gguf_kv_str(kv, len) : NULL;
    if (!kv) *st = gg_err(err, f, LB_ERR_FORMAT, "%s is missing", key);
    else if (!s) *st = gg_err(err, f, LB_ERR_FORMAT, "%s is a %s, not a string", key, gguf_vtype_name(kv->type));
    return s;
}

/* An array key whose elements have type `et`; NULL with an error set when absent and `required`. */
static const gguf_kv *need_arr(const gguf_file *f, const char *key, gguf_vtype et, bool required, lb_status *st,
                               lb_error *err) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) {
        if (required) *st = gg_err(err, f, LB_ERR_FORMAT, "%s is missing", key);
        return NULL;
    }
    if (kv->type != GGUF_VT_ARR || kv->arr_type != et) {
        *st = gg_err(err, f, LB_ERR_FORMAT, "%s is a %s%s%s, not an array of %s", key, gguf_vtype_name(kv->type),
                     kv->type == GGUF_VT_ARR ? " of " : "", kv->type == GGUF_VT_ARR ? gguf_vtype_name(kv->arr_type) : "",
                     gguf_vtype_name(et));
        return NULL;
    }
    return kv;
}

/* tokenizer.ggml.model and .pre: llama.cpp's rules for the pre value (a missing one is "default",
 * as in llama.cpp), or an error naming the value. */
static lb_status read_kind(const gguf_file *f, const llama_pre **pre, char name[48], lb_error *err) {
    name[0] = 0;
    lb_status st = LB_OK;
    size_t ml, pl = 7;
    const char *model = need_str(f, KEY_MODEL, &ml, &st, err);
    if (!model) return st;
    if (ml == 5 && memcmp(model, "llama", 5) == 0) {
        *pre = NULL; /* SentencePiece: no pre-tokenizer */
        return LB_OK;
    }
    if (ml != 4 || memcmp(model, "gpt2", 4) != 0)
        return gg_err(err, f, LB_ERR_UNSUPPORTED,
                      "%s \"%.*s\" is not supported (only \"gpt2\", byte-level BPE, and \"llama\", SentencePiece)", KEY_MODEL,
                      (int)(ml < 64 ? ml : 64), model);
    const char *p = "default";
    if (gguf_find_kv(f, KEY_PRE) && !(p = need_str(f, KEY_PRE, &pl, &st, err))) return st;
    *pre = llama_pre_find(p, pl);
    if (!*pre)
        return gg_err(err, f, LB_ERR_UNSUPPORTED, "%s \"%.*s\" is not supported (llama.cpp does not know it either)", KEY_PRE,
                      (int)(pl < 64 ? pl : 64), p);
    snprintf(name, 48, "%.*s", (int)(pl < 47 ? pl : 47), p);
    return LB_OK;
}

/* Token type of id i (NORMAL without a token_type array), or an error for a value outside 0..6. */
static lb_status read_type(const gguf_file *f, const gguf_kv *types, uint64_t i, int *type, lb_error *err) {
    int64_t v = LB_TOK_TYPE_NORMAL;
    if (types) gguf_get_arr_int(types, i, &v);
    if (v < 0 || v > LB_TOK_TYPE_BYTE)
        return gg_err(err, f, LB_ERR_FORMAT, "%s[%llu] = %lld is not a token type (0..6)", KEY_TYPES, (unsigned long long)i,
                      (long long)v);
    *type = (int)v;
    return LB_OK;
}

/* Token id: vocabulary string, type, and an added token for CONTROL / USER_DEFINED. */
static lb_status read_token(lb_tokenizer *t, const gguf_file *f, const gguf_kv *tokens, int type, int32_t id,
                            lb_error *err) {
    size_t n;
    const char *s = gguf_get_arr_str(tokens, (uint64_t)id, &n);
    if (type == LB_TOK_TYPE_UNUSED) return LB_OK; /* a hole, as an id missing from tokenizer.json */
    if (!s || n == 0 || n > MAX_TOKEN_BYTES)
        return gg_err(err, f, LB_ERR_FORMAT, "%s[%d] is empty or longer than %zu bytes", KEY_TOKENS, id, MAX_TOKEN_BYTES);
    if (!utf8_valid((const uint8_t *)s, n))
        return gg_err(err, f, LB_ERR_FORMAT, "%s[%d] is not valid UTF-8", KEY_TOKENS, id);
    tok_entry *e = &t->tok[id];
    if (!tok_vocab_add(t, id, s, n)) { /* a repeated string: the first id keeps it for encoding */
        e->text = s;
        e->len = (uint32_t)n;
    }
    if (type == LB_TOK_TYPE_UNKNOWN || type == LB_TOK_TYPE_BYTE) e->type = (uint8_t)type;
    if (type == LB_TOK_TYPE_CONTROL || type == LB_TOK_TYPE_USER_DEFINED) {
        /* llama.cpp matches both in the raw text, never normalized, with no strip rules */
        t->added[t->n_added++] = (added_tok){.id = id, .content = s, .len = n, .special = type == LB_TOK_TYPE_CONTROL};
    }
    return LB_OK;
}

static lb_status read_tokens(lb_tokenizer *t, const gguf_file *f, lb_error *err) {
    lb_status st = LB_OK;
    const gguf_kv *tokens = need_arr(f, KEY_TOKENS, GGUF_VT_STR, true, &st, err);
    if (!tokens) return st;
    const gguf_kv *types = need_arr(f, KEY_TYPES, GGUF_VT_I32, false, &st, err);
    if (st) return st;
    uint64_t n = gguf_arr_n(tokens);
    if (n == 0 || n > (uint64_t)MAX_TOKEN_ID)
        return gg_err(err, f, LB_ERR_FORMAT, "%s has %llu entries (1..%lld)", KEY_TOKENS, (unsigned long long)n,
                      (long long)MAX_TOKEN_ID);
    if (types && gguf_arr_n(types) != n)
        return gg_err(err, f, LB_ERR_FORMAT, "%s has %llu entries but %s has %llu", KEY_TYPES,
                      (unsigned long long)gguf_arr_n(types), KEY_TOKENS, (unsigned long long)n);
    size_t n_added = 0;
    for (uint64_t i = 0; i < n && !st; i++) {
        int type = 0;
        st = read_type(f, types, i, &type, err);
        n_added += type == LB_TOK_TYPE_CONTROL || type == LB_TOK_TYPE_USER_DEFINED;
    }
    if (!st) st = tok_alloc_vocab(t, (int64_t)n, (size_t)n, err);
    if (st) return st;
    t->added = calloc(n_added ? n_added : 1, sizeof *t->added);
    if (!t->added) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for %zu added tokens", n_added);
    for (uint64_t i = 0; i < n && !st; i++) {
        int type = 0;
        st = read_type(f, types, i, &type, err);
        if (!st) st = read_token(t, f, tokens, type, (int32_t)i, err);
    }
    return st;
}

/* Merge i "left right" as two vocabulary ids. */
static lb_status read_merge(lb_tokenizer *t, const gguf_file *f, const gguf_kv *merges, uint64_t i, lb_error *err) {
    size_t n;
    const char *s = gguf_get_arr_str(merges, i, &n);
    const char *sp = s ? memchr(s, ' ', n) : NULL;
    if (!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', n - (size_t)(sp - s) - 1))
        return gg_err(err, f, LB_ERR_FORMAT, "%s[%llu] \"%.*s\" is not two tokens separated by one space", KEY_MERGES,
                      (unsigned long long)i, (int)(n < 64 ? n : 64), s ? s : "");
    size_t al = (size_t)(sp - s), bl = n - al - 1;
    int32_t a = tok_vocab_find(t, s, al), b = tok_vocab_find(t, sp + 1, bl);
    if (a < 0 || b < 0)
        return gg_err(err, f, LB_ERR_FORMAT, "%s[%llu]: token \"%.*s\" is not in %s", KEY_MERGES, (unsigned long long)i,
                      a < 0 ? (int)(al < 64 ? al : 64) : (int)(bl < 64 ? bl : 64), a < 0 ? s : sp + 1, KEY_TOKENS);
    int32_t nid = tok_set_merge(t, (int64_t)i, a, b);
    if (nid == -2) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for the merges");
    if (nid < 0)
        return gg_err(err, f, LB_ERR_FORMAT, "%s[%llu]: merged token \"%.*s%.*s\" is not in %s", KEY_MERGES,
                      (unsigned long long)i, (int)(al < 32 ? al : 32), s, (int)(bl < 32 ? bl : 32), sp + 1, KEY_TOKENS);
    return LB_OK;
}

static lb_status read_merges(lb_tokenizer *t, const gguf_file *f, lb_error *err) {
    lb_status st = LB_OK;
    const gguf_kv *merges = need_arr(f, KEY_MERGES, GGUF_VT_STR, true, &st, err);
    if (!merges) return st;
    uint64_t n = gguf_arr_n(merges);
    if (n > (uint64_t)MAX_TOKEN_ID)
        return gg_err(err, f, LB_ERR_FORMAT, "%s has %llu entries", KEY_MERGES, (unsigned long long)n);
    st = tok_alloc_merges(t, (int64_t)n, err);
    for (uint64_t i = 0; i < n && !st; i++) st = read_merge(t, f, merges, i, err);
    return st;
}

/* A token id key: the id, or -1 when absent, not an integer or out of range (llama.cpp ignores those). */
static int32_t read_id(const lb_tokenizer *t, const gguf_file *f, const char *key) {
    int64_t v;
    return gguf_get_int(f, key, &v) && v >= 0 && v < t->n_vocab ? (int32_t)v : -1;
}

/* bos/eos, the other special ids, add_*_token (kept in file order) and the chat template. */
static lb_status read_specials(lb_tokenizer *t, const gguf_file *f, lb_error *err) {
    t->bos_id = read_id(t, f, KEY_BOS);
    t->eos_id = read_id(t, f, KEY_EOS);
    for (int k = 0; k < CONV_N_ID; k++) t->conv.id[k] = read_id(t, f, id_keys[k]);
    for (int64_t i = 0; i < f->n_kv; i++) {
        bool b;
        for (int k = 0; k < CONV_N_ADD; k++) {
            if (strcmp(f->kvs[i].key, add_keys[k]) != 0 || !gguf_kv_bool(&f->kvs[i], &b) || t->conv.add[k] >= 0) continue;
            t->conv.add[k] = b;
            t->conv.add_order[t->conv.n_add++] = (uint8_t)k;
        }
    }
    int add_bos = t->conv.add[CONV_BOS] >= 0 ? t->conv.add[CONV_BOS] : t->add_bos;
    t->add_bos = add_bos && t->bos_id >= 0;
    size_t len;
    const char *tmpl = gguf_get_str(f, KEY_CHAT, &len);
    if (tmpl) {
        t->conv.chat_template = tok_arena_str(t, tmpl, len);
        t->conv.chat_template_len = len;
        if (!t->conv.chat_template) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    return LB_OK;
}

/* The pipeline llama.cpp runs for a "gpt2" model: the split steps of its pre value, byte-level BPE
 * (merges ignored for words in the vocabulary where llama.cpp sets ignore_merges), the ByteLevel decoder;
 * for the values without byte encoding, spaces escaped as U+2581 where llama.cpp escapes them, BPE on
 * UTF-8 chars with <0xNN> byte fallback, and a SentencePiece-style decoder. */
static lb_status set_rules(lb_tokenizer *t, const llama_pre *pre, const char *name, const gguf_file *f, lb_error *err) {
    t->model = pre->raw_utf8 ? LB_TOK_MODEL_SPM_BPE : LB_TOK_MODEL_BYTE_BPE;
    t->bl_pre = !pre->raw_utf8;
    t->byte_fallback = pre->raw_utf8;
    t->ignore_merges = pre->ignore_merges;
    t->newline_whole = pre->newline_whole;
    snprintf(t->pre_name, sizeof t->pre_name, "%s", name);
    static const char sp[] = "\xE2\x96\x81";
    if (pre->escape_spaces) t->norm[t->n_norm++] = (step){.kind = NORM_REPLACE, .a = " ", .a_len = 1, .b = sp, .b_len = 3};
    if (pre->raw_utf8) {
        t->dec[t->n_dec++] = (step){.kind = DEC_REPLACE, .a = sp, .a_len = 3, .b = " ", .b_len = 1};
        t->dec[t->n_dec++] = (step){.kind = DEC_BYTEFALLBACK};
        t->dec[t->n_dec++] = (step){.kind = DEC_FUSE};
    } else {
        t->dec[t->n_dec++] = (step){.kind = DEC_BYTELEVEL};
    }
    t->has_decoder = true;
    for (int i = 0; i < LLAMA_PRE_MAX_STEPS && pre->steps[i].split; i++) {
        const llama_pre_step *ls = &pre->steps[i];
        pre_step *ps = &t->pre_steps[t->n_pre++];
        *ps = (pre_step){.kind = PS_SPLIT, .split_kind = ls->split, .behavior = SB_ISOLATED};
        if (ls->split > 0) continue;
        ps->kind = PS_REGEX;
        lb_status st = rx_compile(ls->regex, strlen(ls->regex), ls->onig ? RX_ONIG : RX_LLAMA, &ps->re, err);
        if (st) return lb_err_prefix(err, st, "%s: %s \"%s\"", f->path ? f->path : "GGUF", KEY_PRE, name);
    }
    const pre_step *p = t->pre_steps;
    if (t->n_pre == 1 && p[0].kind == PS_SPLIT)
        t->pre = p[0].split_kind == SPLIT_GPT2 ? LB_TOK_PRE_GPT2 : p[0].split_kind == SPLIT_LLAMA3_CPP ? LB_TOK_PRE_LLAMA3
                 : p[0].split_kind == SPLIT_QWEN2_CPP ? LB_TOK_PRE_QWEN2 : LB_TOK_PRE_OTHER;
    else if (t->n_pre == 2 && p[0].kind == PS_SPLIT && p[0].split_kind == SPLIT_DIGIT && p[1].kind == PS_SPLIT &&
             p[1].split_kind == SPLIT_GPT2)
        t->pre = LB_TOK_PRE_SMOLLM;
    else t->pre = LB_TOK_PRE_OTHER;
    return LB_OK;
}

/* llama.cpp's SentencePiece model: scores, the space prefix, BOS added by default, and the decoder
 * of a Llama-2 tokenizer.json (U+2581 back to spaces, byte tokens, the leading space dropped). */
static lb_status set_spm(lb_tokenizer *t, const gguf_file *f, lb_error *err) {
    t->model = LB_TOK_MODEL_SPM;
    t->pre = LB_TOK_PRE_NONE;
    bool b = true;
    const gguf_kv *kv = gguf_find_kv(f, KEY_SPACE_PREFIX);
    t->add_space_prefix = !kv || !gguf_kv_bool(kv, &b) || b;
    static const char sp[] = "\xE2\x96\x81";
    t->dec[0] = (step){.kind = DEC_REPLACE, .a = sp, .a_len = 3, .b = " ", .b_len = 1};
    t->dec[1] = (step){.kind = DEC_BYTEFALLBACK};
    t->dec[2] = (step){.kind = DEC_FUSE};
    t->dec[3] = (step){.kind = DEC_STRIP, .strip_cp = ' ', .start = 1, .stop = 0};
    t->n_dec = 4;
    t->has_decoder = true;
    lb_status st = LB_OK;
    const gguf_kv *scores = need_arr(f, KEY_SCORES, GGUF_VT_F32, false, &st, err);
    if (st) return st;
    if (scores && gguf_arr_n(scores) != (uint64_t)t->n_vocab)
        return gg_err(err, f, LB_ERR_FORMAT, "%s has %llu entries but %s has %lld", KEY_SCORES,
                      (unsigned long long)gguf_arr_n(scores), KEY_TOKENS, (long long)t->n_vocab);
    t->scores = calloc((size_t)t->n_vocab, sizeof *t->scores);
    if (!t->scores) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for the scores");
    for (int64_t i = 0; scores && i < t->n_vocab; i++) {
        double v = 0;
        gguf_get_arr_float(scores, (uint64_t)i, &v);
        t->scores[i] = (float)v;
    }
    return LB_OK;
}

lb_status lb_tokenizer_from_gguf(const gguf_file *f, lb_tokenizer **out, lb_error *err) {
    if (!f || !out) return lb_err_set(err, LB_ERR_ARG, "lb_tokenizer_from_gguf: f and out must not be NULL");
    const llama_pre *pre = NULL;
    char name[48];
    lb_status st = read_kind(f, &pre, name, err);
    if (st) return st;
    lb_tokenizer *t = tok_new();
    if (!t) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (pre) st = set_rules(t, pre, name, f, err);
    if (!st) st = read_tokens(t, f, err);
    if (!st) st = pre ? read_merges(t, f, err) : set_spm(t, f, err);
    if (!st) {
        t->add_bos = pre ? pre->add_bos : true; /* llama.cpp's default when add_bos_token is absent */
        st = read_specials(t, f, err);
    }
    if (!st && pre && pre->no_bos_id) t->bos_id = -1, t->add_bos = 0; /* llama.cpp drops the BOS id */
    if (!st) st = tok_finish(t, err);
    if (st) {
        lb_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* writing                                                                                        */

/* The converter's does_token_look_special(): added tokens it types CONTROL even when not special. */
static bool looks_special(const char *s, size_t n) {
    static const char *const exact[] = {"<pad>", "<mask>", "<2mass>", "[@BOS@]"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strlen(exact[i]) == n && memcmp(exact[i], s, n) == 0) return true;
#define HAS(pre, suf) \
    (n >= strlen(pre) && n >= strlen(suf) && !memcmp(s, pre, strlen(pre)) && !memcmp(s + n - strlen(suf), suf, strlen(suf)))
    return HAS("<|", "|>") || HAS("<\xEF\xBD\x9C", "\xEF\xBD\x9C>") || HAS("<unused", ">");
#undef HAS
}

typedef struct exporter {
    const lb_tokenizer *t;
    int64_t n_vocab;
    char **text;   /* per added token: the text the converter writes (malloc'd) */
    size_t *len;
    int32_t *type; /* per id, the token_type written */
    int32_t *added_of; /* per id of t: index into t->added, or -1 */
    char *buf;     /* scratch for [PAD<id>] and merges */
    size_t cap;
    bool oom;
} exporter;

static bool ex_reserve(exporter *x, size_t n) {
    if (n <= x->cap) return true;
    char *b = realloc(x->buf, n);
    if (!b) return !(x->oom = true);
    x->buf = b;
    x->cap = n;
    return true;
}

/* An added token as the converter writes it: a non-normalized one goes through decode(encode(.)),
 * then CONTROL when special or special-looking, else USER_DEFINED with U+2581 turned into spaces. */
static lb_status ex_added(exporter *x, int64_t i, lb_error *err) {
    const added_tok *a = &x->t->added[i];
    char *s = NULL;
    size_t n = a->len;
    lb_status st = LB_OK;
    if (!a->normalized) {
        int32_t *ids = NULL;
        int64_t n_ids = 0;
        st = lb_tokenizer_encode(x->t, a->content, a->len, &ids, &n_ids, err);
        if (!st) st = lb_tokenizer_decode(x->t, ids, n_ids, &s, &n, err);
        free(ids);
    } else if ((s = malloc(n + 1))) {
        memcpy(s, a->content, n);
    }
    if (!st && !s) st = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (st) return st;
    bool control = a->special || looks_special(s, n);
    if (!control) {
        size_t m = 0;
        for (size_t k = 0; k < n; k++) {
            if (k + 3 <= n && memcmp(s + k, "\xE2\x96\x81", 3) == 0) s[m++] = ' ', k += 2;
            else s[m++] = s[k];
        }
        n = m;
    }
    x->text[i] = s;
    x->len[i] = n;
    x->type[a->id] = control ? LB_TOK_TYPE_CONTROL : LB_TOK_TYPE_USER_DEFINED;
    return LB_OK;
}

static lb_status ex_prepare(exporter *x, lb_error *err) {
    const lb_tokenizer *t = x->t;
    size_t na = (size_t)(t->n_added ? t->n_added : 1);
    x->text = calloc(na, sizeof *x->text);
    x->len = calloc(na, sizeof *x->len);
    x->type = malloc((size_t)x->n_vocab * sizeof *x->type);
    x->added_of = malloc((size_t)t->n_vocab * sizeof *x->added_of);
    if (!x->text || !x->len || !x->type || !x->added_of) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    for (int64_t id = 0; id < x->n_vocab; id++) {
        bool hole = id >= t->n_vocab || t->tok[id].type == LB_TOK_TYPE_UNUSED;
        x->type[id] = hole ? LB_TOK_TYPE_UNUSED : LB_TOK_TYPE_NORMAL;
        if (id < t->n_vocab) x->added_of[id] = -1;
    }
    for (int64_t i = 0; i < t->n_added; i++) {
        lb_status st = ex_added(x, i, err);
        if (st) return st;
        x->added_of[t->added[i].id] = (int32_t)i;
    }
    return LB_OK;
}

static void ex_free(exporter *x) {
    for (int64_t i = 0; x->text && i < x->t->n_added; i++) free(x->text[i]);
    free(x->text);
    free(x->len);
    free(x->type);
    free(x->added_of);
    free(x->buf);
}

static const char *ex_token(void *user, uint64_t i, size_t *len) {
    exporter *x = user;
    const lb_tokenizer *t = x->t;
    if (x->type[i] == LB_TOK_TYPE_UNUSED) {
        if (!ex_reserve(x, 32)) return NULL;
        *len = (size_t)snprintf(x->buf, 32, "[PAD%llu]", (unsigned long long)i);
        return x->buf;
    }
    int32_t a = x->added_of[i];
    if (a >= 0) {
        *len = x->len[a];
        return x->text[a];
    }
    *len = t->tok[i].len;
    return t->tok[i].text;
}

/* Append a merge part, a space written as U+0120 as the converter does for list-form merges. */
static size_t ex_part(char *o, const char *s, size_t n) {
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        if (s[k] == ' ') o[m++] = (char)0xC4, o[m++] = (char)0xA0;
        else o[m++] = s[k];
    }
    return m;
}

static const char *ex_merge(void *user, uint64_t i, size_t *len) {
    exporter *x = user;
    const tok_entry *l = &x->t->tok[x->t->merges[i][0]], *r = &x->t->tok[x->t->merges[i][1]];
    if (!ex_reserve(x, 2 * ((size_t)l->mlen + r->mlen) + 1)) return NULL;
    size_t m = ex_part(x->buf, l->mtext, l->mlen);
    x->buf[m++] = ' ';
    m += ex_part(x->buf + m, r->mtext, r->mlen);
    *len = m;
    return x->buf;
}

/* The tokenizer.ggml.pre value: the one read from GGUF, else the one matching the split rules. */
static const char *pre_value(const lb_tokenizer *t) {
    if (t->pre_name[0]) return t->pre_name;
    return t->pre == LB_TOK_PRE_GPT2     ? "gpt-2"
           : t->pre == LB_TOK_PRE_LLAMA3 ? "llama-bpe"
           : t->pre == LB_TOK_PRE_SMOLLM ? "smollm"
                                         : "qwen2";
}

/* Whether GGUF (model "gpt2" and a pre value) says everything this tokenizer does. */
static lb_status check_exportable(const lb_tokenizer *t, lb_error *err) {
    const char *what = NULL;
    if (t->model != LB_TOK_MODEL_BYTE_BPE)
        what = "it is a SentencePiece-style BPE tokenizer (only byte-level BPE can be written now)";
    else if (t->pre_name[0])
        what = NULL; /* read from GGUF: written back as it was */
    else if (t->pre == LB_TOK_PRE_NONE || t->pre == LB_TOK_PRE_OTHER)
        what = "its pre-tokenizer is not one GGUF names (GPT-2, Llama-3 or Qwen2 regex, or smollm's digits + GPT-2), "
               "so no tokenizer.ggml.pre value fits";
    else if (t->pre == LB_TOK_PRE_QWEN2 ? !(t->n_norm == 1 && t->norm[0].kind == NORM_NFC) : t->n_norm != 0)
        what = t->pre == LB_TOK_PRE_QWEN2 ? "the Qwen2 pre-tokenizer in GGUF implies an NFC normalizer, and it has another"
                                          : "it has a normalizer, which its tokenizer.ggml.pre value does not imply";
    return what ? lb_err_set(err, LB_ERR_UNSUPPORTED, "tokenizer cannot be written as GGUF metadata: %s", what) : LB_OK;
}

static lb_status check_ids(const lb_tokenizer *t, int64_t *n_vocab, int32_t bos, int32_t eos, lb_error *err) {
    if (*n_vocab == 0) *n_vocab = t->n_vocab;
    if (*n_vocab < t->n_vocab || *n_vocab > MAX_TOKEN_ID)
        return lb_err_set(err, LB_ERR_ARG, "vocabulary size %lld is below the tokenizer's %lld tokens or above %lld",
                          (long long)*n_vocab, (long long)t->n_vocab, (long long)MAX_TOKEN_ID);
    if (bos < -1 || bos >= *n_vocab || eos < -1 || eos >= *n_vocab)
        return lb_err_set(err, LB_ERR_ARG, "bos %d / eos %d is outside the vocabulary (0..%lld, or -1 for none)", bos, eos,
                          (long long)*n_vocab - 1);
    return LB_OK;
}

/* Token ids, add_*_token flags and the chat template, in SpecialVocab.add_to_gguf's order. */
static lb_status write_specials(const lb_tokenizer *t, gguf_writer *w, int64_t n_vocab, int32_t bos, int32_t eos,
                                lb_error *err) {
    lb_status st = LB_OK;
    if (bos >= 0) st = gguf_writer_set_u32(w, KEY_BOS, (uint32_t)bos, err);
    if (!st && eos >= 0) st = gguf_writer_set_u32(w, KEY_EOS, (uint32_t)eos, err);
    for (int k = 0; k < CONV_N_ID && !st; k++)
        if (t->conv.id[k] >= 0 && t->conv.id[k] < n_vocab) st = gguf_writer_set_u32(w, id_keys[k], (uint32_t)t->conv.id[k], err);
    for (int i = 0; i < t->conv.n_add && !st; i++) {
        int k = t->conv.add_order[i];
        st = gguf_writer_set_bool(w, add_keys[k], t->conv.add[k] == 1, err);
    }
    if (!st && t->conv.chat_template)
        st = gguf_writer_set_str(w, KEY_CHAT, t->conv.chat_template, t->conv.chat_template_len, err);
    return st;
}

lb_status lb_tokenizer_write_gguf(const lb_tokenizer *t, gguf_writer *w, int64_t n_vocab, int32_t bos, int32_t eos,
                                  lb_error *err) {
    if (!t || !w) return lb_err_set(err, LB_ERR_ARG, "lb_tokenizer_write_gguf: t and w must not be NULL");
    lb_status st = check_exportable(t, err);
    if (!st) st = check_ids(t, &n_vocab, bos, eos, err);
    if (st) return st;
    exporter x = {.t = t, .n_vocab = n_vocab};
    st = ex_prepare(&x, err);
    if (!st) st = gguf_writer_set_str(w, KEY_MODEL, "gpt2", 4, err);
    if (!st) st = gguf_writer_set_str(w, KEY_PRE, pre_value(t), strlen(pre_value(t)), err);
    if (!st) st = gguf_writer_set_arr_str_fn(w, KEY_TOKENS, (uint64_t)n_vocab, ex_token, &x, err);
    if (!st) st = gguf_writer_set_arr(w, KEY_TYPES, GGUF_VT_I32, x.type, (uint64_t)n_vocab, err);
    if (!st) st = gguf_writer_set_arr_str_fn(w, KEY_MERGES, (uint64_t)t->n_merges, ex_merge, &x, err);
    if (!st) st = write_specials(t, w, n_vocab, bos, eos, err);
    if (x.oom) st = lb_err_set(err, LB_ERR_NOMEM, "out of memory while writing the tokenizer");
    ex_free(&x);
    return st;
}
