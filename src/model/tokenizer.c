/*
 * tokenizer.c - Hugging Face tokenizer.json, reproduced exactly: BPE models (byte-level as GPT-2,
 * Llama-3 and Qwen2 use it, and SentencePiece-style with byte fallback), added tokens, the NFC,
 * Prepend and Replace normalizers, the GPT-2 / Llama-3 / Qwen2 split regexes as hand-written
 * matchers, and the ByteLevel, Replace, ByteFallback, Fuse and Strip decoders. This file loads
 * tokenizer.json (and what tokenizer_config.json adds for GGUF export) and builds the shared tables;
 * tokenizer_encode.c and tokenizer_decode.c run them, tokenizer_gguf.c reads and writes GGUF metadata.
 *
 * Source: the behaviour of huggingface/tokenizers 0.2x (models/bpe/word.rs merge order,
 * tokenizer/added_vocabulary.rs matching rules, pre_tokenizers/byte_level.rs, the decoders), checked
 * case by case against its output in tests/golden/conformance/tokenizers. The byte-to-unicode
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

/* ---------------------------------------------------------------------------------------------- */
/* small helpers                                                                                  */

void *tok_arena_alloc(lb_tokenizer *t, size_t n) {
    n = (n + 7) & ~(size_t)7;
    arena_blk *b = t->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ((size_t)1 << 20) ? n : ((size_t)1 << 20);
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = t->arena;
        b->used = 0;
        b->cap = cap;
        t->arena = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *tok_arena_str(lb_tokenizer *t, const char *s, size_t n) {
    char *p = tok_arena_alloc(t, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

uint64_t tok_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

uint64_t tok_hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

size_t tok_pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

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

/* Model vocabulary lookup: id or -1. */
int32_t tok_vocab_find(const lb_tokenizer *t, const void *s, size_t n) {
    size_t i = tok_hash_bytes(s, n) & t->vocab_mask;
    for (;;) {
        uint32_t v = t->vocab_slots[i];
        if (!v) return -1;
        const tok_entry *e = &t->tok[v - 1];
        if (e->mlen == n && memcmp(e->mtext, s, n) == 0) return (int32_t)(v - 1);
        i = (i + 1) & t->vocab_mask;
    }
}

const merge_slot *tok_merge_find(const lb_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = tok_hash_u64(key) & t->merge_mask;
    for (;;) {
        const merge_slot *m = &t->merge_slots[i];
        if (m->key == key) return m;
        if (m->key == EMPTY_KEY) return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

/* GPT-2 bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 bytes map to
 * U+0100.. in byte order. */
static void init_byte_alphabet(lb_tokenizer *t) {
    uint32_t next = 256;
    for (int i = 0; i < N_BYTE_CHARS; i++) t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        t->byte_char[b] = printable ? (uint32_t)b : next++;
        t->char_byte[t->byte_char[b]] = (int16_t)b;
    }
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

lb_status tok_alloc_vocab(lb_tokenizer *t, int64_t n_vocab, size_t n_strings, lb_error *err) {
    size_t cap = tok_pow2_at_least(n_strings * 2);
    t->n_vocab = n_vocab;
    t->tok = calloc((size_t)n_vocab, sizeof *t->tok);
    t->vocab_slots = calloc(cap, sizeof *t->vocab_slots);
    if (!t->tok || !t->vocab_slots) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for %lld tokens", (long long)n_vocab);
    t->vocab_mask = cap - 1;
    return LB_OK;
}

bool tok_vocab_add(lb_tokenizer *t, int32_t id, const char *s, size_t n) {
    if (tok_vocab_find(t, s, n) >= 0) return false;
    tok_entry *e = &t->tok[id];
    e->mtext = e->text = s; /* strings live in the source document, kept until tok_finish */
    e->mlen = e->len = (uint32_t)n;
    size_t k = tok_hash_bytes(s, n) & t->vocab_mask;
    while (t->vocab_slots[k]) k = (k + 1) & t->vocab_mask;
    t->vocab_slots[k] = (uint32_t)id + 1;
    return true;
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

lb_status tok_alloc_merges(lb_tokenizer *t, int64_t n, lb_error *err) {
    size_t cap = tok_pow2_at_least((size_t)n * 2 + 2);
    t->n_merges = n;
    t->merges = malloc((size_t)(n ? n : 1) * sizeof *t->merges);
    t->merge_slots = malloc(cap * sizeof *t->merge_slots);
    if (!t->merges || !t->merge_slots) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for the merges");
    t->merge_mask = cap - 1;
    for (size_t i = 0; i < cap; i++) t->merge_slots[i].key = EMPTY_KEY;
    return LB_OK;
}

int32_t tok_set_merge(lb_tokenizer *t, int64_t i, int32_t a, int32_t b) {
    const tok_entry *l = &t->tok[a], *r = &t->tok[b];
    size_t n = (size_t)l->mlen + r->mlen;
    char buf[512];
    char *joined = n <= sizeof buf ? buf : malloc(n);
    if (!joined) return -2;
    memcpy(joined, l->mtext, l->mlen);
    memcpy(joined + l->mlen, r->mtext, r->mlen);
    int32_t nid = tok_vocab_find(t, joined, n);
    if (joined != buf) free(joined);
    if (nid < 0) return -1;
    t->merges[i][0] = a;
    t->merges[i][1] = b;
    /* a repeated pair takes its later rank, as HF's HashMap collect does */
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t s = tok_hash_u64(key) & t->merge_mask;
    while (t->merge_slots[s].key != EMPTY_KEY && t->merge_slots[s].key != key) s = (s + 1) & t->merge_mask;
    t->merge_slots[s] = (merge_slot){key, (uint32_t)i, nid};
    return nid;
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

/* Group added tokens by first byte for the raw and normalized matchers. */
static lb_status build_added_sets(lb_tokenizer *t, lb_error *err) {
    added_set *sets[2] = {&t->raw_set, &t->norm_set};
    for (int64_t i = 0; i < t->n_added; i++) {
        added_tok *a = &t->added[i];
        a->norm = a->content, a->norm_len = a->len;
        if (a->normalized && t->n_norm) {
            uint8_t *o;
            size_t ol;
            if (tok_apply_norm(t, (const uint8_t *)a->content, a->len, &o, &ol))
                return lb_err_set(err, LB_ERR_NOMEM, "out of memory for added tokens");
            a->norm = tok_arena_str(t, (const char *)o, ol);
            a->norm_len = ol;
            free(o);
            if (!a->norm) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for added tokens");
        }
    }
    for (int s = 0; s < 2; s++) { /* a counting sort by first byte; empty tokens never match */
        added_set *set = sets[s];
        set->idx = malloc((size_t)(t->n_added ? t->n_added : 1) * sizeof *set->idx);
        if (!set->idx) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for added tokens");
        uint32_t count[256] = {0}, k = 0;
        for (int64_t i = 0; i < t->n_added; i++) {
            const added_tok *a = &t->added[i];
            if (a->normalized == (s == 1) && a->norm_len) count[(uint8_t)a->norm[0]]++;
        }
        for (int b = 0; b < 256; b++) {
            set->first[b] = k;
            k += count[b];
        }
        set->first[256] = k;
        uint32_t fill[256];
        memcpy(fill, set->first, sizeof fill);
        for (int64_t i = 0; i < t->n_added; i++) {
            const added_tok *a = &t->added[i];
            if (a->normalized == (s == 1) && a->norm_len) set->idx[fill[(uint8_t)a->norm[0]]++] = (int32_t)i;
        }
    }
    return LB_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* loading: normalizer, pre-tokenizer, decoder, post-processor                                     */

/* Append a step, copying its strings out of the JSON document (freed when loading ends). */
static lb_status add_step(lb_tokenizer *t, step *steps, int *n, step s, const char *what, const char *path,
                          lb_error *err) {
    if (*n >= MAX_STEPS) return file_err(err, path, LB_ERR_UNSUPPORTED, "%s has more than %d steps", what, MAX_STEPS);
    if ((s.a && !(s.a = tok_arena_str(t, s.a, s.a_len))) || (s.b && !(s.b = tok_arena_str(t, s.b, s.b_len))))
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    steps[(*n)++] = s;
    return LB_OK;
}

/* Replace's pattern must be {"String": s}; regex patterns are not supported. */
static lb_status replace_step(const json_value *o, int kind, step *s, const char *what, const char *path,
                              lb_error *err) {
    const json_value *pat = json_get(o, "pattern");
    s->kind = kind;
    s->a = json_str(json_get(pat, "String"), &s->a_len);
    s->b = json_str(json_get(o, "content"), &s->b_len);
    if (json_get(pat, "Regex")) return file_err(err, path, LB_ERR_UNSUPPORTED, "%s Replace with a Regex pattern is not supported", what);
    if (!s->a || !s->a_len || !s->b) return file_err(err, path, LB_ERR_FORMAT, "%s Replace needs pattern.String and content", what);
    return LB_OK;
}

static lb_status load_normalizer(lb_tokenizer *t, const json_value *o, const char *path, int depth, lb_error *err) {
    if (!o || json_type(o) == JSON_NULL) return LB_OK;
    const char *type = json_str(json_get(o, "type"), NULL);
    if (!type) return file_err(err, path, LB_ERR_FORMAT, "normalizer has no type");
    step s = {0};
    if (!strcmp(type, "Sequence") && depth == 0) {
        const json_value *list = json_get(o, "normalizers");
        if (json_type(list) != JSON_ARRAY) return file_err(err, path, LB_ERR_FORMAT, "normalizer Sequence has no normalizers list");
        for (size_t i = 0; i < json_len(list); i++) {
            lb_status st = load_normalizer(t, json_at(list, i), path, depth + 1, err);
            if (st) return st;
        }
        return LB_OK;
    }
    if (!strcmp(type, "NFC")) {
        s.kind = NORM_NFC;
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

static lb_status load_byte_level(lb_tokenizer *t, const json_value *o, const char *path, lb_error *err) {
    t->bl_pre = true;
    t->bl_prefix_space = false;
    t->bl_use_regex = true;
    if (!opt_bool(o, "add_prefix_space", &t->bl_prefix_space) || !opt_bool(o, "use_regex", &t->bl_use_regex))
        return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer ByteLevel: add_prefix_space or use_regex is not a bool");
    if (t->bl_use_regex) {
        if (t->split != LB_TOK_PRE_NONE)
            return file_err(err, path, LB_ERR_UNSUPPORTED, "pre_tokenizer: a Split followed by a regex ByteLevel is not supported");
        t->pre = LB_TOK_PRE_GPT2;
    }
    return LB_OK;
}

static lb_status load_split(lb_tokenizer *t, const json_value *o, const char *path, lb_error *err) {
    const json_value *pat = json_get(o, "pattern");
    const char *re = json_str(json_get(pat, "Regex"), NULL);
    bool invert = false;
    if (!re) return file_err(err, path, LB_ERR_UNSUPPORTED, "pre_tokenizer Split without a Regex pattern is not supported");
    if (!str_eq(json_get(o, "behavior"), "Isolated") || !opt_bool(o, "invert", &invert) || invert)
        return file_err(err, path, LB_ERR_UNSUPPORTED, "pre_tokenizer Split: only behavior Isolated without invert is supported");
    if (t->split != LB_TOK_PRE_NONE || t->bl_pre)
        return file_err(err, path, LB_ERR_UNSUPPORTED, "pre_tokenizer: only one Split, before ByteLevel, is supported");
    t->split = lb_tok_pre_from_regex(re);
    if (t->split == LB_TOK_PRE_NONE) return file_err(err, path, LB_ERR_UNSUPPORTED, "pre_tokenizer Split regex \"%.200s\" is not supported", re);
    t->pre = t->split;
    return LB_OK;
}

static lb_status load_pretokenizer(lb_tokenizer *t, const json_value *o, const char *path, int depth, lb_error *err) {
    if (!o || json_type(o) == JSON_NULL) return LB_OK;
    const char *type = json_str(json_get(o, "type"), NULL);
    if (!type) return file_err(err, path, LB_ERR_FORMAT, "pre_tokenizer has no type");
    if (!strcmp(type, "Sequence") && depth == 0) {
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
    return file_err(err, path, LB_ERR_UNSUPPORTED, "pre_tokenizer type \"%.64s\" is not supported", type);
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
/* loading: per-token tables                                                                      */

bool tok_parse_byte_token(const char *s, size_t n, uint8_t *b) {
    /* "<0xNN>" as HF's ByteFallback reads it: exactly six bytes, two hex digits */
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
    unsigned v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16u;
        if (d > 15) return false;
        v = v * 16 + d;
    }
    *b = (uint8_t)v;
    return true;
}

/* Byte-level: the bytes a token string stands for; false when a char is outside the alphabet. */
bool tok_byte_level_bytes(const lb_tokenizer *t, const char *s, size_t n, uint8_t *out, size_t *out_len) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp >= N_BYTE_CHARS || t->char_byte[cp] < 0) return false;
        out[o++] = (uint8_t)t->char_byte[cp];
    }
    *out_len = o;
    return true;
}

/* Replace every occurrence of a with b in s into a malloc'd buffer. */
uint8_t *tok_replace_all(const uint8_t *s, size_t n, const char *a, size_t al, const char *b, size_t bl, size_t *out_len) {
    size_t count = 0;
    for (size_t i = 0; i + al <= n;) {
        if (memcmp(s + i, a, al) == 0) count++, i += al;
        else i++;
    }
    size_t cap = n + count * bl + 1;
    uint8_t *o = malloc(cap);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (i + al <= n && memcmp(s + i, a, al) == 0) {
            memcpy(o + k, b, bl);
            k += bl, i += al;
        } else {
            o[k++] = s[i++];
        }
    }
    *out_len = k;
    return o;
}

/* Raw bytes of one token as the decoder would produce them alone (no Strip, no lossy repair). */
static lb_status token_raw_bytes(lb_tokenizer *t, tok_entry *e) {
    const char *s = e->dtext;
    size_t n = e->dlen;
    uint8_t *buf = malloc(n + 1);
    if (!buf) return LB_ERR_NOMEM;
    memcpy(buf, s, n);
    for (int i = 0; i < t->n_dec; i++) {
        const step *d = &t->dec[i];
        size_t nl = n;
        if (d->kind == DEC_BYTELEVEL) {
            uint8_t *o = malloc(n + 1);
            if (!o) {
                free(buf);
                return LB_ERR_NOMEM;
            }
            /* a token with chars outside the alphabet stays as it is, as in HF's decoder */
            if (tok_byte_level_bytes(t, (const char *)buf, n, o, &nl)) memcpy(buf, o, nl);
            else nl = n;
            free(o);
        } else if (d->kind == DEC_BYTEFALLBACK) {
            uint8_t b;
            if (tok_parse_byte_token((const char *)buf, n, &b)) buf[0] = b, nl = 1;
        } else if (d->kind == DEC_REPLACE) {
            uint8_t *o = tok_replace_all(buf, n, d->a, d->a_len, d->b, d->b_len, &nl);
            if (!o) {
                free(buf);
                return LB_ERR_NOMEM;
            }
            free(buf);
            buf = o;
        }
        n = nl;
    }
    e->bytes = tok_arena_str(t, (const char *)buf, n);
    e->blen = (uint32_t)n;
    free(buf);
    return e->bytes ? LB_OK : LB_ERR_NOMEM;
}

static lb_status finish_tables(lb_tokenizer *t, lb_error *err) {
    for (int64_t i = 0; i < t->n_added; i++) {
        const added_tok *a = &t->added[i];
        tok_entry *e = &t->tok[a->id];
        e->text = a->content;
        e->len = (uint32_t)a->len;
        e->dtext = a->norm; /* HF decodes a normalized added token as its normalized form */
        e->dlen = (uint32_t)a->norm_len;
        e->type = a->special ? LB_TOK_TYPE_CONTROL : LB_TOK_TYPE_USER_DEFINED;
    }
    for (int b = 0; b < 256; b++) {
        uint8_t u[4];
        size_t l = utf8_encode(t->byte_char[b], u);
        t->byte_id[b] = tok_vocab_find(t, u, l);
    }
    for (int64_t id = 0; id < t->n_vocab; id++) {
        tok_entry *e = &t->tok[id];
        uint8_t b;
        if (!e->text) {
            e->type = LB_TOK_TYPE_UNUSED;
            e->text = "";
        } else if (!e->type) {
            e->type = id == t->unk_id ? LB_TOK_TYPE_UNKNOWN
                      : t->model == LB_TOK_MODEL_SPM_BPE && tok_parse_byte_token(e->text, e->len, &b) ? LB_TOK_TYPE_BYTE
                                                                                              : LB_TOK_TYPE_NORMAL;
        }
        /* strings so far point into the JSON document: copy them into the arena */
        const char *txt = e->text;
        e->text = tok_arena_str(t, txt, e->len);
        if (e->mtext) e->mtext = e->mtext == txt ? e->text : tok_arena_str(t, e->mtext, e->mlen);
        if (!e->dtext || e->dtext == txt) e->dtext = e->text, e->dlen = e->len;
        if (!e->text || (e->mlen && !e->mtext) || token_raw_bytes(t, e))
            return lb_err_set(err, LB_ERR_NOMEM, "out of memory for the vocabulary");
    }
    for (int64_t i = 0; i < t->n_added; i++) {
        added_tok *a = &t->added[i];
        bool same = a->norm == a->content;
        a->content = t->tok[a->id].text;
        if (same) a->norm = a->content;
    }
    return LB_OK;
}

bool tok_pair_find(const lb_tokenizer *t, uint32_t a, uint32_t b) {
    uint64_t key = (uint64_t)a << 32 | b;
    for (size_t i = tok_hash_u64(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        if (t->pair_slots[i] == key) return true;
        if (t->pair_slots[i] == EMPTY_KEY) return false;
    }
}

/*
 * Without a pre-tokenizer the whole text is one BPE word. Every adjacent pair of characters that occurs
 * inside some vocabulary string is recorded; a boundary between two in-vocabulary characters whose pair
 * never occurs can never be merged across, so encode cuts the text there (same result, much faster).
 */
static lb_status build_pairs(lb_tokenizer *t, lb_error *err) {
    size_t total = 0;
    for (int64_t id = 0; id < t->n_vocab; id++) total += t->tok[id].mlen;
    size_t cap = tok_pow2_at_least(total * 2 + 16);
    t->pair_slots = malloc(cap * sizeof *t->pair_slots);
    if (!t->pair_slots) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    t->pair_mask = cap - 1;
    for (size_t i = 0; i < cap; i++) t->pair_slots[i] = EMPTY_KEY;
    for (int64_t id = 0; id < t->n_vocab; id++) {
        const uint8_t *s = (const uint8_t *)t->tok[id].mtext;
        size_t n = t->tok[id].mlen, l, i = 0;
        uint32_t prev = 0;
        for (; i < n; i += l) {
            uint32_t cp = utf8_cp_at(s, n, i, &l);
            if (i && !tok_pair_find(t, prev, cp)) {
                uint64_t key = (uint64_t)prev << 32 | cp;
                size_t k = tok_hash_u64(key) & t->pair_mask;
                while (t->pair_slots[k] != EMPTY_KEY) k = (k + 1) & t->pair_mask;
                t->pair_slots[k] = key;
            }
            prev = cp;
        }
    }
    return LB_OK;
}

lb_status tok_finish(lb_tokenizer *t, lb_error *err) {
    lb_status st = build_added_sets(t, err);
    if (!st) st = finish_tables(t, err);
    if (!st && !t->bl_pre && t->split == LB_TOK_PRE_NONE && !t->ignore_merges) st = build_pairs(t, err);
    return st;
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

lb_tokenizer *tok_new(void) {
    lb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    init_byte_alphabet(t);
    t->unk_id = t->bos_id = t->eos_id = -1;
    for (int i = 0; i < CONV_N_ADD; i++) t->conv.add[i] = -1;
    for (int i = 0; i < CONV_N_ID; i++) t->conv.id[i] = -1;
    return t;
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

static lb_status load_json(const char *file, lb_tokenizer **out, lb_error *err) {
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

/* Whether the file starts with the GGUF magic. */
static bool is_gguf(const char *path) { /* a map: opening a FIFO must not block */
    lb_mmap map = {0};
    bool yes = lb_mmap_open(path, &map, NULL) == LB_OK && map.size >= 4 && memcmp(map.data, "GGUF", 4) == 0;
    lb_mmap_close(&map);
    return yes;
}

static lb_status load_gguf(const char *file, lb_tokenizer **out, lb_error *err) {
    gguf_file *f = NULL;
    lb_status st = gguf_open(file, &f, err);
    if (st) return st;
    st = lb_tokenizer_from_gguf(f, out, err);
    gguf_close(f);
    return st;
}

lb_status lb_tokenizer_load(const char *path, lb_tokenizer **out, lb_error *err) {
    if (!path || !out) return lb_err_set(err, LB_ERR_ARG, "lb_tokenizer_load: path and out must not be NULL");
    bool dir = lb_path_is_dir(path);
    if (!dir && is_gguf(path)) return load_gguf(path, out, err);
    char *file = dir ? lb_path_join(path, "tokenizer.json") : strdup(path);
    if (!file) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    lb_status st = load_json(file, out, err);
    free(file);
    return st;
}

void lb_tokenizer_free(lb_tokenizer *t) {
    if (!t) return;
    for (arena_blk *b = t->arena; b;) {
        arena_blk *next = b->next;
        free(b);
        b = next;
    }
    free(t->tok);
    free(t->vocab_slots);
    free(t->merges);
    free(t->merge_slots);
    free(t->pair_slots);
    free(t->added);
    free(t->raw_set.idx);
    free(t->norm_set.idx);
    free(t);
}

/* ---------------------------------------------------------------------------------------------- */
/* accessors                                                                                      */

int64_t lb_tokenizer_n_vocab(const lb_tokenizer *t) { return t ? t->n_vocab : 0; }

const char *lb_tokenizer_token_text(const lb_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab || t->tok[id].type == LB_TOK_TYPE_UNUSED) return NULL;
    return t->tok[id].text;
}

int64_t lb_tokenizer_token_bytes(const lb_tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (!t || id < 0 || id >= t->n_vocab || t->tok[id].type == LB_TOK_TYPE_UNUSED) return -1;
    const tok_entry *e = &t->tok[id];
    if (buf) memcpy(buf, e->bytes, e->blen < cap ? e->blen : cap);
    return e->blen;
}

lb_tok_model lb_tokenizer_model_kind(const lb_tokenizer *t) { return t->model; }
lb_tok_pre lb_tokenizer_pre_kind(const lb_tokenizer *t) { return t->pre; }
int64_t lb_tokenizer_n_merges(const lb_tokenizer *t) { return t->n_merges; }

int lb_tokenizer_merge(const lb_tokenizer *t, int64_t i, const char **left, const char **right) {
    if (i < 0 || i >= t->n_merges) return 0;
    *left = t->tok[t->merges[i][0]].mtext;
    *right = t->tok[t->merges[i][1]].mtext;
    return 1;
}

lb_tok_type lb_tokenizer_token_type(const lb_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return LB_TOK_TYPE_UNUSED;
    return (lb_tok_type)t->tok[id].type;
}

int32_t lb_tokenizer_bos_id(const lb_tokenizer *t) { return t->bos_id; }
int32_t lb_tokenizer_eos_id(const lb_tokenizer *t) { return t->eos_id; }
int32_t lb_tokenizer_unk_id(const lb_tokenizer *t) { return t->unk_id; }
int lb_tokenizer_add_bos(const lb_tokenizer *t) { return t->add_bos; }

/* ---------------------------------------------------------------------------------------------- */
/* normalization                                                                                  */

/* Run the normalizer steps over s into a malloc'd buffer. Returns non-zero on allocation failure. */
lb_status tok_apply_norm(const lb_tokenizer *t, const uint8_t *s, size_t n, uint8_t **out, size_t *out_len) {
    uint8_t *cur = malloc(n + 1);
    if (!cur) return LB_ERR_NOMEM;
    memcpy(cur, s, n);
    for (int i = 0; i < t->n_norm; i++) {
        const step *st = &t->norm[i];
        uint8_t *next = NULL;
        size_t nl = 0;
        if (st->kind == NORM_NFC) {
            if (!uni_nfc(cur, n, &next, &nl)) next = NULL;
        } else if (st->kind == NORM_PREPEND) {
            if (!n) continue; /* HF prepends only to non-empty text */
            next = malloc(n + st->a_len + 1);
            if (next) {
                memcpy(next, st->a, st->a_len);
                memcpy(next + st->a_len, cur, n);
                nl = n + st->a_len;
            }
        } else {
            next = tok_replace_all(cur, n, st->a, st->a_len, st->b, st->b_len, &nl);
        }
        free(cur);
        if (!next) return LB_ERR_NOMEM;
        cur = next;
        n = nl;
    }
    *out = cur;
    *out_len = n;
    return LB_OK;
}

