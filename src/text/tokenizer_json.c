/*
 * tokenizer_json.c - Hugging Face tokenizer.json, reproduced exactly: BPE models (byte-level as GPT-2,
 * Llama-3 and Qwen2 use it, and SentencePiece-style with byte fallback), added tokens, the normalizers
 * NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend and Replace (string or regex), the pre-tokenizers
 * ByteLevel, Split (regex or string, every behavior, invert), Digits, Punctuation, Whitespace,
 * WhitespaceSplit and Metaspace in any Sequence (the Llama-3 / Qwen2 regexes on hand-written
 * splitters, other regexes on regex.c), and the ByteLevel, Replace, ByteFallback, Fuse and Strip
 * decoders. This file loads
 * tokenizer.json (and what tokenizer_config.json adds for GGUF export) into the tables of
 * tokenizer_table.c; tokenizer_encode.c and tokenizer_decode.c run them.
 *
 * Source: the behaviour of huggingface/tokenizers 0.2x (models/bpe/word.rs merge order,
 * tokenizer/added_vocabulary.rs matching rules, pre_tokenizers/, normalizers/, the decoders), checked
 * case by case against its output in tests/golden/conformance/tokenizers and by
 * tests/python/test_tokenizer_hf.py. The byte-to-unicode
 * alphabet is GPT-2's bytes_to_unicode() (openai/gpt-2, src/encoder.py).
 */
#include "tokenizer_impl.h"

#include "../core/json.h"
#include "../io/gguf.h"
#include "unicode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES ((size_t)1 << 30)


static lb_status file_err(lb_error *err, const char *path, lb_status s, const char *fmt, ...) LB_PRINTF(4, 5);
static lb_status file_err(lb_error *err, const char *path, lb_status s, const char *fmt, ...) {
    if (!err) return s;
    char msg[LB_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lb_err_set(err, s, "%s: %s", path, msg);
}

static bool str_eq(const json_value *v, const char *s) {
    const char *x = json_str(v, NULL);
    return x && strcmp(x, s) == 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* loading: model                                                                                 */

static lb_status load_vocab(lb_tokenizer *t, const json_value *vocab, const char *path, lb_error *err) {
    if (!vocab) return file_err(err, path, LB_ERR_FORMAT, "model.vocab is missing");
    if (json_type(vocab) != JSON_OBJECT) return file_err(err, path, LB_ERR_FORMAT, "model.vocab is not an object");
    size_t n = json_len(vocab);
    if (n == 0) return file_err(err, path, LB_ERR_FORMAT, "model.vocab is empty");
    if ((int64_t)n > MAX_TOKEN_ID)
        return file_err(err, path, LB_ERR_FORMAT, "model.vocab has %zu entries, more than %lld", n,
                        (long long)MAX_TOKEN_ID);
    int64_t max_id = -1;
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        if (!json_int(json_at(vocab, i), &id) || id < 0 || id >= MAX_TOKEN_ID)
            return file_err(err, path, LB_ERR_FORMAT, "model.vocab: token \"%.64s\" has no valid id (0..%lld)",
                            json_key_at(vocab, i, NULL), (long long)MAX_TOKEN_ID - 1);
        if (id > max_id) max_id = id;
    }
    t->n_vocab = max_id + 1;
    return LB_OK;
}

/* Fill tok[] and the vocabulary hash from model.vocab (ids already checked by load_vocab). */
static lb_status index_vocab(lb_tokenizer *t, const json_value *vocab, const char *path, lb_error *err) {
    size_t n = json_len(vocab);
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        size_t klen;
        const char *key = json_key_at(vocab, i, &klen);
        json_int(json_at(vocab, i), &id);
        const tok_entry *e = &t->tok[id];
        if (e->mtext)
            return file_err(err, path, LB_ERR_FORMAT, "model.vocab: id %lld is used by both \"%.64s\" and \"%.64s\"",
                            (long long)id, e->mtext, key);
        if (klen == 0) return file_err(err, path, LB_ERR_FORMAT, "model.vocab: id %lld has an empty string", (long long)id);
        if (!tok_vocab_add(t, (int32_t)id, key, klen))
            return file_err(err, path, LB_ERR_FORMAT, "model.vocab: token \"%.64s\" appears twice", key);
    }
    return LB_OK;
}

/* Split merge i into its two vocabulary ids: "a b" (one space) or ["a", "b"]. */
static lb_status merge_pair(lb_tokenizer *t, const json_value *m, size_t i, int32_t out[2], const char *path,
                            lb_error *err) {
    const char *a, *b;
    size_t al, bl;
    if (json_type(m) == JSON_STRING) {
        size_t len;
        const char *s = json_str(m, &len);
        const char *sp = memchr(s, ' ', len);
        if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp - s) - 1))
            return file_err(err, path, LB_ERR_FORMAT, "model.merges[%zu] \"%.64s\" is not two tokens separated by one space",
                            i, s);
        a = s, al = (size_t)(sp - s), b = sp + 1, bl = len - al - 1;
    } else if (json_type(m) == JSON_ARRAY && json_len(m) == 2 && json_str(json_at(m, 0), NULL) &&
               json_str(json_at(m, 1), NULL)) {
        a = json_str(json_at(m, 0), &al);
        b = json_str(json_at(m, 1), &bl);
    } else {
        return file_err(err, path, LB_ERR_FORMAT, "model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", i);
    }
    out[0] = tok_vocab_find(t, a, al);
    out[1] = tok_vocab_find(t, b, bl);
    if (out[0] < 0 || out[1] < 0)
        return file_err(err, path, LB_ERR_FORMAT, "model.merges[%zu]: token \"%.64s\" is not in model.vocab", i,
                        out[0] < 0 ? a : b);
    return LB_OK;
}

static lb_status load_merges(lb_tokenizer *t, const json_value *merges, const char *path, lb_error *err) {
    if (!merges) return file_err(err, path, LB_ERR_FORMAT, "model.merges is missing");
    if (json_type(merges) != JSON_ARRAY) return file_err(err, path, LB_ERR_FORMAT, "model.merges is not an array");
    size_t n = json_len(merges);
    if ((int64_t)n > MAX_TOKEN_ID) return file_err(err, path, LB_ERR_FORMAT, "model.merges has %zu entries", n);
    lb_status st = tok_alloc_merges(t, (int64_t)n, err);
    for (size_t i = 0; i < n && !st; i++) {
        int32_t p[2] = {-1, -1};
        st = merge_pair(t, json_at(merges, i), i, p, path, err);
        int32_t nid = st ? 0 : tok_set_merge(t, (int64_t)i, p[0], p[1]);
        if (nid == -2) st = lb_err_set(err, LB_ERR_NOMEM, "out of memory for the merges");
        else if (nid < 0)
            st = file_err(err, path, LB_ERR_FORMAT, "model.merges[%zu]: merged token \"%.32s%.32s\" is not in model.vocab", i,
                          t->tok[p[0]].mtext, t->tok[p[1]].mtext);
    }
    return st;
}

/* Reads the optional bool `key` of o into *out (default kept); false when present but not a bool. */
static bool opt_bool(const json_value *o, const char *key, bool *out) {
    const json_value *v = json_get(o, key);
    if (!v || json_type(v) == JSON_NULL) return true;
    return json_bool(v, out);
}

static lb_status load_model(lb_tokenizer *t, const json_value *model, const char *path, lb_error *err) {
    if (!model || json_type(model) == JSON_NULL) return file_err(err, path, LB_ERR_FORMAT, "model is missing");
    if (json_type(model) != JSON_OBJECT) return file_err(err, path, LB_ERR_FORMAT, "model is not an object");
    const json_value *type = json_get(model, "type");
    if (type && !str_eq(type, "BPE")) {
        const char *ts = json_str(type, NULL);
        return file_err(err, path, ts ? LB_ERR_UNSUPPORTED : LB_ERR_FORMAT, "model type %s%.64s%s is not supported (only BPE)",
                        ts ? "\"" : "", ts ? ts : "(not a string)", ts ? "\"" : "");
    }
    const json_value *vocab = json_get(model, "vocab");
    lb_status st = load_vocab(t, vocab, path, err);
    if (st) return st;
    const json_value *dropout = json_get(model, "dropout");
    double d = 0;
    if (dropout && json_type(dropout) != JSON_NULL && (!json_num(dropout, &d) || d != 0))
        return file_err(err, path, LB_ERR_UNSUPPORTED, "model.dropout is not supported");
    const char *keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const json_value *v = json_get(model, keys[i]);
        size_t l = 0;
        if (v && json_type(v) != JSON_NULL && (!json_str(v, &l) || l))
            return file_err(err, path, LB_ERR_UNSUPPORTED, "model.%s is not supported", keys[i]);
    }
    if (!opt_bool(model, "byte_fallback", &t->byte_fallback) || !opt_bool(model, "fuse_unk", &t->fuse_unk) ||
        !opt_bool(model, "ignore_merges", &t->ignore_merges))
        return file_err(err, path, LB_ERR_FORMAT, "model: byte_fallback, fuse_unk or ignore_merges is not a bool");
    return LB_OK;
}

/* Second half of model loading, once tok[] exists: vocabulary index, merges, unk token. */
static lb_status load_model_tables(lb_tokenizer *t, const json_value *model, const char *path, lb_error *err) {
    lb_status st = index_vocab(t, json_get(model, "vocab"), path, err);
    if (st) return st;
    st = load_merges(t, json_get(model, "merges"), path, err);
    if (st) return st;
    const json_value *unk = json_get(model, "unk_token");
    t->unk_id = -1;
    if (unk && json_type(unk) != JSON_NULL) {
        size_t l;
        const char *s = json_str(unk, &l);
        if (!s) return file_err(err, path, LB_ERR_FORMAT, "model.unk_token is not a string");
        t->unk_id = tok_vocab_find(t, s, l);
        if (t->unk_id < 0) return file_err(err, path, LB_ERR_FORMAT, "model.unk_token \"%.64s\" is not in model.vocab", s);
    }
    return LB_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* loading: added tokens                                                                          */

static lb_status scan_added(lb_tokenizer *t, const json_value *list, const char *path, lb_error *err) {
    if (!list || json_type(list) == JSON_NULL) return LB_OK;
    if (json_type(list) != JSON_ARRAY) return file_err(err, path, LB_ERR_FORMAT, "added_tokens is not an array");
    size_t n = json_len(list);
    if ((int64_t)n > MAX_TOKEN_ID) return file_err(err, path, LB_ERR_FORMAT, "added_tokens has %zu entries", n);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for added tokens");
    for (size_t i = 0; i < n; i++) {
        const json_value *o = json_at(list, i);
        added_tok *a = &t->added[i];
        int64_t id;
        if (json_type(o) != JSON_OBJECT) return file_err(err, path, LB_ERR_FORMAT, "added_tokens[%zu] is not an object", i);
        if (!json_int(json_get(o, "id"), &id) || id < 0 || id >= MAX_TOKEN_ID)
            return file_err(err, path, LB_ERR_FORMAT, "added_tokens[%zu].id is missing or out of range", i);
        a->content = json_str(json_get(o, "content"), &a->len);
        if (!a->content) return file_err(err, path, LB_ERR_FORMAT, "added_tokens[%zu].content is missing", i);
        if (!utf8_valid((const uint8_t *)a->content, a->len))
            return file_err(err, path, LB_ERR_FORMAT, "added_tokens[%zu].content is not valid UTF-8", i);
        a->id = (int32_t)id;
        if (!opt_bool(o, "special", &a->special)) goto bad_flag;
        a->normalized = !a->special; /* HF's default */
        if (!opt_bool(o, "single_word", &a->single_word) || !opt_bool(o, "lstrip", &a->lstrip) ||
            !opt_bool(o, "rstrip", &a->rstrip) || !opt_bool(o, "normalized", &a->normalized))
            goto bad_flag;
        if (id >= t->n_vocab) t->n_vocab = id + 1;
        t->n_added++;
        continue;
    bad_flag:
        return file_err(err, path, LB_ERR_FORMAT, "added_tokens[%zu]: a flag is not a bool", i);
    }
    return LB_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* loading: normalizer, pre-tokenizer, decoder, post-processor                                     */

/* Append a step, copying its strings out of the JSON document (freed when loading ends). */
static lb_status add_step(lb_tokenizer *t, step *steps, int *n, step s, const char *what, const char *path,
                          lb_error *err) {
    if (*n >= MAX_STEPS) {
        rx_free(s.re);
        return file_err(err, path, LB_ERR_UNSUPPORTED, "%s has more than %d steps", what, MAX_STEPS);
    }
    steps[(*n)++] = s; /* owns s.re from here */
    if ((s.a && !(steps[*n - 1].a = tok_arena_str(t, s.a, s.a_len))) || (s.b && !(steps[*n - 1].b = tok_arena_str(t, s.b, s.b_len))))
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    return LB_OK;
}

/* Replace's pattern must be {"String": s}; regex patterns are not supported. */
static lb_status replace_step(const json_value *o, int kind, step *s, const char *what, const char *path,
                              lb_error *err) {
    const json_value *pat = json_get(o, "pattern");
    size_t rl = 0;
    const char *re = json_str(json_get(pat, "Regex"), &rl);
    s->kind = kind;
    s->a = json_str(json_get(pat, "String"), &s->a_len);
    s->b = json_str(json_get(o, "content"), &s->b_len);
    if (re && kind == NORM_REPLACE && s->b) {
        lb_status st = rx_compile(re, rl, RX_ONIG, &s->re, err);
        return st ? lb_err_prefix(err, st, "%s: %s Replace", path, what) : LB_OK;
    }
    if (re) return file_err(err, path, LB_ERR_UNSUPPORTED, "%s Replace with a Regex pattern is not supported", what);
    if (!s->a || !s->a_len || !s->b) return file_err(err, path, LB_ERR_FORMAT, "%s Replace needs pattern.String and content", what);
    return LB_OK;
}

static lb_status load_normalizer(lb_tokenizer *t, const json_value *o, const char *path, int depth, lb_error *err) {
    if (!o || json_type(o) == JSON_NULL) return LB_OK;
    const char *type = json_str(json_get(o, "type"), NULL);
    if (!type) return file_err(err, path, LB_ERR_FORMAT, "normalizer has no type");
    step s = {0};
    if (!strcmp(type, "Sequence") && depth < 4) {
        const json_value *list = json_get(o, "normalizers");
        if (json_type(list) != JSON_ARRAY) return file_err(err, path, LB_ERR_FORMAT, "normalizer Sequence has no normalizers list");
        for (size_t i = 0; i < json_len(list); i++) {
            lb_status st = load_normalizer(t, json_at(list, i), path, depth + 1, err);
            if (st) return st;
        }
        return LB_OK;
    }
    static const struct {
        const char *name;
        norm_kind kind;
    } plain[] = {{"NFC", NORM_NFC}, {"NFD", NORM_NFD}, {"NFKC", NORM_NFKC}, {"NFKD", NORM_NFKD}, {"Lowercase", NORM_LOWERCASE}};
    s.kind = -1;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (!strcmp(type, plain[i].name)) s.kind = plain[i].kind;
    if (s.kind >= 0) {
    } else if (!strcmp(type, "Strip")) {
        bool l = true, r = true;
        if (!opt_bool(o, "strip_left", &l) || !opt_bool(o, "strip_right", &r))
            return file_err(err, path, LB_ERR_FORMAT, "normalizer Strip: strip_left or strip_right is not a bool");
        s.kind = NORM_STRIP, s.start = l, s.stop = r;
    } else if (!strcmp(type, "Prepend")) {
        s.kind = NORM_PREPEND;
        s.a = json_str(json_get(o, "prepend"), &s.a_len);
        if (!s.a) return file_err(err, path, LB_ERR_FORMAT, "normalizer Prepend has no prepend string");
    } else if (!strcmp(type, "Replace")) {
        lb_status st = replace_step(o, NORM_REPLACE, &s, "normalizer", path, err);
        if (st) return st;
    } else {
        return file_err(err, path, LB_ERR_UNSUPPORTED, "normalizer type \"%.64s\" is not supported", type);
    }
    return add_step(t, t->norm, &t->n_norm, s, "normalizer", path, err);
}

/* Append a pre-tokenizer step; the caller has filled it. */
static lb_status add_pre(lb_tokenizer *t, pre_step ps, const char *path, lb_error *err) {
    if (t->n_pre >= MAX_PRE_STEPS) {
        rx_free(ps.re);
        return file_err(err, path, LB_ERR_UNSUPPORTED, "pre_tokenizer has more than %d steps", MAX_PRE_STEPS);
    }
    t->pre_steps[t->n_pre++] = ps;
    return LB_OK;
}

static lb_status load_byte_level(lb_tokenizer *t, const json_value *o, const char *path, lb_error *err) {
    pre_step ps = {.kind = PS_BYTELEVEL, .use_regex = true};
    if (!opt_bool(o, "add_prefix_space", &ps.prefix_space) || !opt_bool(o, "use_regex", &ps.use_regex))
        return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer ByteLevel: add_prefix_space or use_regex is not a bool");
    t->bl_pre = true;
    return add_pre(t, ps, path, err);
}

/* A SplitDelimiterBehavior name; false when unknown. */
static bool read_behavior(const json_value *v, uint8_t *out) {
    static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (str_eq(v, names[i])) return *out = (uint8_t)i, true;
    return false;
}

static lb_status load_split(lb_tokenizer *t, const json_value *o, const char *path, lb_error *err) {
    const json_value *pat = json_get(o, "pattern");
    size_t len = 0;
    const char *re = json_str(json_get(pat, "Regex"), &len), *lit = json_str(json_get(pat, "String"), &len);
    pre_step ps = {.kind = PS_REGEX};
    if (!re && !lit) return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer Split needs pattern.Regex or pattern.String");
    if (!read_behavior(json_get(o, "behavior"), &ps.behavior) || !opt_bool(o, "invert", &ps.invert))
        return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer Split: unknown behavior or invert not a bool");
    int kind = re && ps.behavior == SB_ISOLATED && !ps.invert ? pre_split_from_regex(re) : -1;
    if (kind >= 0) {
        ps.kind = PS_SPLIT, ps.split_kind = kind;
        t->pre = kind == SPLIT_LLAMA3 ? LB_TOK_PRE_LLAMA3 : kind == SPLIT_QWEN2 ? LB_TOK_PRE_QWEN2 : LB_TOK_PRE_OTHER;
    } else if (re) {
        lb_status st = rx_compile(re, len, RX_ONIG, &ps.re, err);
        if (st) return lb_err_prefix(err, st, "%s: pre_tokenizer Split", path);
    } else {
        ps.kind = PS_LITERAL;
        if (!(ps.lit = tok_arena_str(t, lit, len))) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        ps.lit_len = len;
    }
    return add_pre(t, ps, path, err);
}

static lb_status load_metaspace(lb_tokenizer *t, const json_value *o, const char *path, lb_error *err) {
    size_t len = 0;
    const char *rep = json_str(json_get(o, "replacement"), &len);
    pre_step ps = {.kind = PS_METASPACE, .split = true, .prepend = MS_ALWAYS};
    if (!rep || !len) return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer Metaspace needs a replacement char");
    const json_value *scheme = json_get(o, "prepend_scheme");
    bool add = true;
    if (str_eq(scheme, "first")) ps.prepend = MS_FIRST;
    else if (str_eq(scheme, "never")) ps.prepend = MS_NEVER;
    else if (scheme && !str_eq(scheme, "always")) return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer Metaspace: unknown prepend_scheme");
    else if (!scheme && opt_bool(o, "add_prefix_space", &add) && !add) ps.prepend = MS_NEVER; /* older files */
    if (!opt_bool(o, "split", &ps.split)) return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer Metaspace: split is not a bool");
    if (!(ps.lit = tok_arena_str(t, rep, len))) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    ps.lit_len = len;
    return add_pre(t, ps, path, err);
}

static lb_status load_pretokenizer(lb_tokenizer *t, const json_value *o, const char *path, int depth, lb_error *err) {
    if (!o || json_type(o) == JSON_NULL) return LB_OK;
    const char *type = json_str(json_get(o, "type"), NULL);
    if (!type) return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer has no type");
    if (!strcmp(type, "Sequence") && depth < 4) {
        const json_value *list = json_get(o, "pretokenizers");
        if (json_type(list) != JSON_ARRAY)
            return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer Sequence has no pretokenizers list");
        for (size_t i = 0; i < json_len(list); i++) {
            lb_status st = load_pretokenizer(t, json_at(list, i), path, depth + 1, err);
            if (st) return st;
        }
        return LB_OK;
    }
    if (t->bl_pre) return file_err(err, path, LB_ERR_UNSUPPORTED, "pre_tokenizer: nothing may follow ByteLevel");
    if (!strcmp(type, "ByteLevel")) return load_byte_level(t, o, path, err);
    if (!strcmp(type, "Split")) return load_split(t, o, path, err);
    if (!strcmp(type, "Metaspace")) return load_metaspace(t, o, path, err);
    pre_step ps = {.kind = PS_CHARS};
    if (!strcmp(type, "Digits")) {
        bool single = false;
        if (!opt_bool(o, "individual_digits", &single))
            return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer Digits: individual_digits is not a bool");
        ps.prop = CH_NUMERIC, ps.behavior = single ? SB_ISOLATED : SB_CONTIGUOUS;
    } else if (!strcmp(type, "Punctuation")) {
        ps.prop = CH_PUNCT, ps.behavior = SB_ISOLATED;
        const json_value *b = json_get(o, "behavior");
        if (b && !read_behavior(b, &ps.behavior)) return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer Punctuation: unknown behavior");
    } else if (!strcmp(type, "WhitespaceSplit")) {
        ps.prop = CH_WHITESPACE, ps.behavior = SB_REMOVED;
    } else if (!strcmp(type, "Whitespace")) {
        static const char re[] = "\\w+|[^\\w\\s]+";
        ps.kind = PS_REGEX, ps.behavior = SB_REMOVED, ps.invert = true;
        lb_status st = rx_compile(re, sizeof re - 1, RX_ONIG, &ps.re, err);
        if (st) return st;
    } else {
        return file_err(err, path, LB_ERR_UNSUPPORTED, "pre_tokenizer type \"%.64s\" is not supported", type);
    }
    return add_pre(t, ps, path, err);
}

/* What GGUF would call the pre-tokenizer: GPT-2 (a regex ByteLevel alone), Llama-3 or Qwen2 (their
 * Split, then ByteLevel without regex), smollm (single digits, then a regex ByteLevel). */
static lb_tok_pre pre_kind(const lb_tokenizer *t) {
    const pre_step *p = t->pre_steps;
    bool bl_last = t->n_pre && p[t->n_pre - 1].kind == PS_BYTELEVEL && !p[t->n_pre - 1].prefix_space;
    if (!t->n_pre) return LB_TOK_PRE_NONE;
    if (!bl_last) return LB_TOK_PRE_OTHER;
    bool rx_bl = p[t->n_pre - 1].use_regex;
    if (t->n_pre == 1) return rx_bl ? LB_TOK_PRE_GPT2 : LB_TOK_PRE_OTHER;
    if (t->n_pre != 2) return LB_TOK_PRE_OTHER;
    if (rx_bl) return p[0].kind == PS_CHARS && p[0].prop == CH_NUMERIC && p[0].behavior == SB_ISOLATED ? LB_TOK_PRE_SMOLLM : LB_TOK_PRE_OTHER;
    if (p[0].kind != PS_SPLIT) return LB_TOK_PRE_OTHER;
    return p[0].split_kind == SPLIT_LLAMA3 ? LB_TOK_PRE_LLAMA3 : p[0].split_kind == SPLIT_QWEN2 ? LB_TOK_PRE_QWEN2 : LB_TOK_PRE_OTHER;
}

static lb_status load_decoder(lb_tokenizer *t, const json_value *o, const char *path, int depth, lb_error *err) {
    if (!o || json_type(o) == JSON_NULL) return LB_OK;
    const char *type = json_str(json_get(o, "type"), NULL);
    if (!type) return file_err(err, path, LB_ERR_FORMAT, "decoder has no type");
    t->has_decoder = true;
    step s = {0};
    if (!strcmp(type, "Sequence") && depth == 0) {
        const json_value *list = json_get(o, "decoders");
        if (json_type(list) != JSON_ARRAY) return file_err(err, path, LB_ERR_FORMAT, "decoder Sequence has no decoders list");
        for (size_t i = 0; i < json_len(list); i++) {
            lb_status st = load_decoder(t, json_at(list, i), path, depth + 1, err);
            if (st) return st;
        }
        return LB_OK;
    }
    if (!strcmp(type, "ByteLevel")) s.kind = DEC_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) s.kind = DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) s.kind = DEC_FUSE;
    else if (!strcmp(type, "Replace")) {
        lb_status st = replace_step(o, DEC_REPLACE, &s, "decoder", path, err);
        if (st) return st;
    } else if (!strcmp(type, "Strip")) {
        size_t l;
        const char *c = json_str(json_get(o, "content"), &l);
        s.kind = DEC_STRIP;
        if (!c || !l || !json_int(json_get(o, "start"), &s.start) || !json_int(json_get(o, "stop"), &s.stop) ||
            s.start < 0 || s.stop < 0 || utf8_invalid_offset((const uint8_t *)c, l) >= 0)
            return file_err(err, path, LB_ERR_FORMAT, "decoder Strip needs a content char and start/stop counts");
        size_t cl = utf8_decode((const uint8_t *)c, l, &s.strip_cp);
        if (cl != l) return file_err(err, path, LB_ERR_FORMAT, "decoder Strip content must be one character");
    } else {
        return file_err(err, path, LB_ERR_UNSUPPORTED, "decoder type \"%.64s\" is not supported", type);
    }
    return add_step(t, t->dec, &t->n_dec, s, "decoder", path, err);
}

/* Id of a TemplateProcessing piece {"SpecialToken": {"id": name}}, or -1. */
static int32_t template_special(const json_value *piece, const json_value *specials) {
    const char *name = json_str(json_get(json_get(piece, "SpecialToken"), "id"), NULL);
    if (!name) return -1;
    const json_value *ids = json_get(json_get(specials, name), "ids");
    int64_t id;
    if (json_len(ids) != 1 || !json_int(json_at(ids, 0), &id) || id < 0 || id >= MAX_TOKEN_ID) return -1;
    return (int32_t)id;
}

/* BOS/EOS from a TemplateProcessing post-processor (possibly inside a Sequence); anything else is
 * accepted and ignored, since encode never adds special tokens. */
static void load_post(lb_tokenizer *t, const json_value *o, int depth) {
    const char *type = json_str(json_get(o, "type"), NULL);
    if (!type) return;
    if (!strcmp(type, "Sequence") && depth == 0) {
        const json_value *list = json_get(o, "processors");
        for (size_t i = 0; i < json_len(list); i++) load_post(t, json_at(list, i), depth + 1);
        return;
    }
    if (strcmp(type, "TemplateProcessing") != 0) return;
    const json_value *single = json_get(o, "single"), *specials = json_get(o, "special_tokens");
    size_t n = json_len(single);
    bool seen_seq = false;
    for (size_t i = 0; i < n; i++) {
        const json_value *p = json_at(single, i);
        if (json_get(p, "Sequence")) {
            seen_seq = true;
            continue;
        }
        int32_t id = template_special(p, specials);
        if (id < 0 || id >= t->n_vocab) continue;
        if (!seen_seq && i == 0) {
            t->bos_id = id;
            t->add_bos = 1;
        } else if (seen_seq) {
            t->eos_id = id;
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* loading: entry point                                                                           */

static lb_status load_doc(lb_tokenizer *t, const json_value *root, const char *path, lb_error *err) {
    if (json_type(root) != JSON_OBJECT) return file_err(err, path, LB_ERR_FORMAT, "top level is not an object");
    const json_value *model = json_get(root, "model");
    lb_status st = load_model(t, model, path, err);
    if (!st) st = scan_added(t, json_get(root, "added_tokens"), path, err);
    if (!st) st = load_normalizer(t, json_get(root, "normalizer"), path, 0, err);
    if (!st) st = load_pretokenizer(t, json_get(root, "pre_tokenizer"), path, 0, err);
    if (!st) st = load_decoder(t, json_get(root, "decoder"), path, 0, err);
    if (st) return st;
    if ((int64_t)json_len(json_get(model, "vocab")) * 2 + t->n_added + 1024 < t->n_vocab)
        return file_err(err, path, LB_ERR_FORMAT, "token id %lld is far beyond the %zu vocabulary entries",
                        (long long)t->n_vocab - 1, json_len(json_get(model, "vocab")));
    t->model = t->bl_pre ? LB_TOK_MODEL_BYTE_BPE : LB_TOK_MODEL_SPM_BPE;
    t->pre = pre_kind(t);
    st = tok_alloc_vocab(t, t->n_vocab, json_len(json_get(model, "vocab")), err);
    if (!st) st = load_model_tables(t, model, path, err);
    if (st) return st;
    uint8_t *seen = calloc((size_t)t->n_vocab, 1);
    if (!seen) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < t->n_added; i++) {
        if (seen[t->added[i].id]++) {
            free(seen);
            return file_err(err, path, LB_ERR_FORMAT, "added_tokens: id %d appears twice", t->added[i].id);
        }
    }
    free(seen);
    load_post(t, json_get(root, "post_processor"), 0);
    return tok_finish(t, err);
}

/* ---------------------------------------------------------------------------------------------- */
/* what llama.cpp's converter adds from tokenizer.json and tokenizer_config.json (gguf-py vocab.py,  */
/* SpecialVocab._try_load_from_tokenizer_json)                                                    */

static void conv_set_add(tok_conv *c, conv_add_kind k, bool v) {
    if (c->add[k] < 0) c->add_order[c->n_add++] = (uint8_t)k;
    c->add[k] = v;
}

/* Python truthiness of an optional JSON value (null, "", false, 0, [] and {} are false). */
static bool truthy(const json_value *v) {
    if (!v) return false;
    double d;
    switch (json_type(v)) {
    case JSON_NULL:
    case JSON_FALSE: return false;
    case JSON_TRUE: return true;
    case JSON_NUMBER: return json_num(v, &d) && d != 0;
    case JSON_STRING: return json_str(v, NULL)[0] != 0;
    default: return json_len(v) > 0;
    }
}

/* TemplateProcessing's single template decides add_bos/add_eos: a special token first (when it is
 * tokenizer_config's bos or cls token, or there is no tokenizer_config) or last. */
static void conv_template(tok_conv *c, const json_value *proc, const json_value *cfg) {
    const json_value *single = json_get(proc, "single");
    size_t n = json_len(single);
    if (n <= 1) return;
    const char *first = json_str(json_get(json_get(json_at(single, 0), "SpecialToken"), "id"), NULL);
    const char *last = json_str(json_get(json_get(json_at(single, n - 1), "SpecialToken"), "id"), NULL);
    if (first && *first) {
        const json_value *bos = json_get(cfg, "bos_token"), *cls = json_get(cfg, "cls_token");
        if (!truthy(bos)) bos = cls; /* the converter falls back to cls_token */
        bool known = !cfg || str_eq(bos, first) || str_eq(cls, first);
        conv_set_add(c, CONV_BOS, known);
    }
    if (last && *last) conv_set_add(c, CONV_EOS, true);
}

static void conv_post(tok_conv *c, const json_value *post, const json_value *cfg) {
    if (!truthy(post)) return;
    const json_value *list = json_get(post, "processors");
    size_t n = list ? json_len(list) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_value *p = list ? json_at(list, i) : post;
        const json_value *type = json_get(p, "type");
        if (str_eq(type, "RobertaProcessing")) {
            conv_set_add(c, CONV_BOS, true);
            conv_set_add(c, CONV_EOS, true);
            conv_set_add(c, CONV_SEP, true);
        } else if (str_eq(type, "TemplateProcessing")) {
            conv_template(c, p, cfg);
            return;
        }
    }
}

/* Id of the first added token whose content is tokenizer_config's `key` entry (a string or
 * {"content": s}), or -1. */
static int32_t conv_token_id(const lb_tokenizer *t, const json_value *cfg, const char *key) {
    const json_value *v = json_get(cfg, key);
    if (json_type(v) == JSON_OBJECT) v = json_get(v, "content");
    size_t len;
    const char *s = json_str(v, &len);
    for (int64_t i = 0; s && i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].content, s, len) == 0) return t->added[i].id;
    return -1;
}

static lb_status conv_config(lb_tokenizer *t, const json_value *cfg, const char *dir, lb_error *err) {
    static const char *const add_keys[CONV_N_ADD] = {"add_bos_token", "add_eos_token", "add_sep_token"};
    static const char *const id_keys[CONV_N_ID] = {"unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
    for (int k = 0; k < CONV_N_ADD; k++) {
        bool b;
        if (json_bool(json_get(cfg, add_keys[k]), &b)) conv_set_add(&t->conv, (conv_add_kind)k, b);
    }
    for (int k = 0; k < CONV_N_ID; k++) t->conv.id[k] = conv_token_id(t, cfg, id_keys[k]);
    size_t len = 0;
    const char *tmpl = json_str(json_get(cfg, "chat_template"), &len);
    char *alt = NULL;
    if (!tmpl && !json_get(cfg, "chat_template")) { /* else the chat_template.jinja file, if any */
        char *p = lb_path_join(dir, "chat_template.jinja");
        lb_error e2 = {{0}};
        if (p && lb_path_exists(p) && lb_read_file(p, MAX_FILE_BYTES, &alt, &len, &e2) == LB_OK) tmpl = alt;
        free(p);
    }
    if (tmpl) {
        t->conv.chat_template = tok_arena_str(t, tmpl, len);
        t->conv.chat_template_len = len;
        free(alt);
        if (!t->conv.chat_template) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    return LB_OK;
}

/* Read tokenizer_config.json beside the tokenizer, if there is one (an unreadable one is ignored,
 * as it does not change tokenization), and derive the converter's metadata. */
static lb_status load_conv(lb_tokenizer *t, const json_value *root, const char *file, lb_error *err) {
    char *dir = lb_path_dirname(file);
    char *cfg_path = dir ? lb_path_join(dir, "tokenizer_config.json") : NULL;
    if (!cfg_path) {
        free(dir);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    char *text = NULL;
    size_t len = 0;
    json_doc *doc = NULL;
    lb_error e2 = {{0}};
    const json_value *cfg = NULL;
    if (lb_path_exists(cfg_path) && lb_read_file(cfg_path, MAX_FILE_BYTES, &text, &len, &e2) == LB_OK &&
        json_parse(text, len, &doc, &e2) == LB_OK && json_type(json_root(doc)) == JSON_OBJECT)
        cfg = json_root(doc);
    conv_post(&t->conv, json_get(root, "post_processor"), cfg);
    lb_status st = cfg ? conv_config(t, cfg, dir, err) : LB_OK;
    json_free(doc);
    free(text);
    free(cfg_path);
    free(dir);
    return st;
}

/* ---------------------------------------------------------------------------------------------- */
/* the public entry point                                                                         */

lb_status tok_load_json(const char *file, lb_tokenizer **out, lb_error *err) {
    char *text = NULL;
    size_t len = 0;
    json_doc *doc = NULL;
    lb_tokenizer *t = NULL;
    lb_status st = lb_read_file(file, MAX_FILE_BYTES, &text, &len, err);
    if (!st) {
        st = json_parse(text, len, &doc, err);
        if (st) lb_err_prefix(err, st, "%s", file);
    }
    if (!st && !(t = tok_new())) st = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (!st) st = load_doc(t, json_root(doc), file, err);
    if (!st) st = load_conv(t, json_root(doc), file, err);
    json_free(doc);
    free(text);
    if (st) {
        lb_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
}
