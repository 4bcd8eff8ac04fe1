/*
 * tokenizer.c - Hugging Face tokenizer.json, reproduced exactly: BPE models (byte-level as GPT-2,
 * Llama-3 and Qwen2 use it, and SentencePiece-style with byte fallback), added tokens, the NFC,
 * Prepend and Replace normalizers, the GPT-2 / Llama-3 / Qwen2 split regexes as hand-written
 * matchers, and the ByteLevel, Replace, ByteFallback, Fuse and Strip decoders.
 *
 * Source: the behaviour of huggingface/tokenizers 0.2x (models/bpe/word.rs merge order,
 * tokenizer/added_vocabulary.rs matching rules, pre_tokenizers/byte_level.rs, the decoders), checked
 * case by case against its output in tests/golden/conformance/tokenizers. The byte-to-unicode
 * alphabet is GPT-2's bytes_to_unicode() (openai/gpt-2, src/encoder.py).
 */
#include "tokenizer_internal.h"

#include "../core/core.h"
#include "../core/json.h"
#include "unicode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES ((size_t)1 << 30)
#define MAX_TOKEN_ID ((int64_t)1 << 24) /* far above any real vocabulary (Gemma: 262k) */
#define MAX_STEPS 16                    /* normalizer / decoder steps in a Sequence */
#define CACHE_MAX_WORD 64               /* longer words are not cached during an encode */
#define N_BYTE_CHARS 324                /* GPT-2 alphabet code points are below 256 + 68 */

typedef enum { NORM_NFC, NORM_PREPEND, NORM_REPLACE } norm_kind;
typedef enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP } dec_kind;

/* One normalizer or decoder step; a/b are its strings (Prepend: a; Replace: a -> b). */
typedef struct step {
    int kind;
    const char *a, *b;
    size_t a_len, b_len;
    uint32_t strip_cp;
    int64_t start, stop;
} step;

typedef struct added_tok {
    int32_t id;
    const char *content, *norm; /* norm: content after the normalizer (for normalized tokens) */
    size_t len, norm_len;
    bool single_word, lstrip, rstrip, normalized, special;
} added_tok;

typedef struct tok_entry {
    const char *mtext; /* the model vocabulary string, NULL for ids only added tokens use */
    const char *text;  /* what id_to_token gives: the added content when there is one */
    const char *dtext; /* what the decoder sees: a normalized added token's normalized content */
    const char *bytes; /* raw output bytes of this token alone (lb_tokenizer_token_bytes) */
    uint32_t mlen, len, dlen, blen;
    uint8_t type;
} tok_entry;

typedef struct merge_slot {
    uint64_t key; /* left id << 32 | right id; EMPTY_KEY when free */
    uint32_t rank;
    int32_t new_id;
} merge_slot;
#define EMPTY_KEY UINT64_MAX

typedef struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    char data[];
} arena_blk;

/* Added tokens matched on raw text (normalized == false) or on normalized text, by first byte. */
typedef struct added_set {
    int32_t *idx;      /* indexes into added[], grouped by first byte */
    uint32_t first[257];
} added_set;

struct lb_tokenizer {
    lb_tok_model model;
    lb_tok_pre pre;   /* reported kind: the regex in use */
    lb_tok_pre split; /* the regex of a Split pre-tokenizer, NONE without one */
    bool bl_pre, bl_prefix_space, bl_use_regex; /* a ByteLevel pre-tokenizer and its options */
    step norm[MAX_STEPS], dec[MAX_STEPS];
    int n_norm, n_dec;
    bool has_decoder, byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id, bos_id, eos_id;
    int add_bos;
    int64_t n_vocab;
    tok_entry *tok;
    uint32_t *vocab_slots; /* id + 1 of model vocabulary strings, 0 = free */
    size_t vocab_mask;
    int32_t (*merges)[2];
    int64_t n_merges;
    merge_slot *merge_slots;
    size_t merge_mask;
    uint64_t *pair_slots; /* SentencePiece style: char pairs (cp << 32 | cp) found inside tokens */
    size_t pair_mask;
    added_tok *added;
    int64_t n_added;
    added_set raw_set, norm_set;
    int32_t byte_id[256]; /* byte-level: vocabulary id of the alphabet char of each byte, or -1 */
    uint32_t byte_char[256];
    int16_t char_byte[N_BYTE_CHARS]; /* inverse of byte_char, -1 elsewhere */
    arena_blk *arena;
};

/* ---------------------------------------------------------------------------------------------- */
/* small helpers                                                                                  */

static void *arena_alloc(lb_tokenizer *t, size_t n) {
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

static char *arena_str(lb_tokenizer *t, const char *s, size_t n) {
    char *p = arena_alloc(t, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static size_t pow2_at_least(size_t n) {
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
static int32_t vocab_find(const lb_tokenizer *t, const void *s, size_t n) {
    size_t i = hash_bytes(s, n) & t->vocab_mask;
    for (;;) {
        uint32_t v = t->vocab_slots[i];
        if (!v) return -1;
        const tok_entry *e = &t->tok[v - 1];
        if (e->mlen == n && memcmp(e->mtext, s, n) == 0) return (int32_t)(v - 1);
        i = (i + 1) & t->vocab_mask;
    }
}

static const merge_slot *merge_find(const lb_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = hash_u64(key) & t->merge_mask;
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

/* Fill tok[] and the vocabulary hash from model.vocab (ids already checked by load_vocab). */
static lb_status index_vocab(lb_tokenizer *t, const json_value *vocab, const char *path, lb_error *err) {
    size_t n = json_len(vocab);
    size_t cap = pow2_at_least(n * 2);
    t->vocab_slots = calloc(cap, sizeof *t->vocab_slots);
    if (!t->vocab_slots) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for the vocabulary");
    t->vocab_mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        size_t klen;
        const char *key = json_key_at(vocab, i, &klen);
        json_int(json_at(vocab, i), &id);
        tok_entry *e = &t->tok[id];
        if (e->mtext)
            return file_err(err, path, LB_ERR_FORMAT, "model.vocab: id %lld is used by both \"%.64s\" and \"%.64s\"",
                            (long long)id, e->mtext, key);
        if (vocab_find(t, key, klen) >= 0)
            return file_err(err, path, LB_ERR_FORMAT, "model.vocab: token \"%.64s\" appears twice", key);
        if (klen == 0) return file_err(err, path, LB_ERR_FORMAT, "model.vocab: id %lld has an empty string", (long long)id);
        e->mtext = e->text = key; /* strings live in the JSON document, kept until load ends */
        e->mlen = e->len = (uint32_t)klen;
        size_t s = hash_bytes(key, klen) & t->vocab_mask;
        while (t->vocab_slots[s]) s = (s + 1) & t->vocab_mask;
        t->vocab_slots[s] = (uint32_t)id + 1;
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
    out[0] = vocab_find(t, a, al);
    out[1] = vocab_find(t, b, bl);
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
    t->n_merges = (int64_t)n;
    size_t cap = pow2_at_least(n * 2 + 2);
    t->merges = malloc((n ? n : 1) * sizeof *t->merges);
    t->merge_slots = malloc(cap * sizeof *t->merge_slots);
    if (!t->merges || !t->merge_slots) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for the merges");
    t->merge_mask = cap - 1;
    for (size_t i = 0; i < cap; i++) t->merge_slots[i].key = EMPTY_KEY;
    char buf[512];
    for (size_t i = 0; i < n; i++) {
        int32_t p[2] = {-1, -1};
        lb_status st = merge_pair(t, json_at(merges, i), i, p, path, err);
        if (st) return st;
        const tok_entry *l = &t->tok[p[0]], *r = &t->tok[p[1]];
        char *joined = (size_t)l->mlen + r->mlen <= sizeof buf ? buf : malloc((size_t)l->mlen + r->mlen);
        if (!joined) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for the merges");
        memcpy(joined, l->mtext, l->mlen);
        memcpy(joined + l->mlen, r->mtext, r->mlen);
        int32_t nid = vocab_find(t, joined, (size_t)l->mlen + r->mlen);
        if (joined != buf) free(joined);
        if (nid < 0)
            return file_err(err, path, LB_ERR_FORMAT, "model.merges[%zu]: merged token \"%.32s%.32s\" is not in model.vocab",
                            i, l->mtext, r->mtext);
        t->merges[i][0] = p[0];
        t->merges[i][1] = p[1];
        /* a repeated pair takes its later rank, as HF's HashMap collect does */
        uint64_t key = (uint64_t)(uint32_t)p[0] << 32 | (uint32_t)p[1];
        size_t s = hash_u64(key) & t->merge_mask;
        while (t->merge_slots[s].key != EMPTY_KEY && t->merge_slots[s].key != key) s = (s + 1) & t->merge_mask;
        t->merge_slots[s] = (merge_slot){key, (uint32_t)i, nid};
    }
    return LB_OK;
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
        t->unk_id = vocab_find(t, s, l);
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

static lb_status apply_norm(const lb_tokenizer *t, const uint8_t *s, size_t n, uint8_t **out, size_t *out_len);

/* Group added tokens by first byte for the raw and normalized matchers. */
static lb_status build_added_sets(lb_tokenizer *t, lb_error *err) {
    added_set *sets[2] = {&t->raw_set, &t->norm_set};
    for (int64_t i = 0; i < t->n_added; i++) {
        added_tok *a = &t->added[i];
        a->norm = a->content, a->norm_len = a->len;
        if (a->normalized && t->n_norm) {
            uint8_t *o;
            size_t ol;
            if (apply_norm(t, (const uint8_t *)a->content, a->len, &o, &ol))
                return lb_err_set(err, LB_ERR_NOMEM, "out of memory for added tokens");
            a->norm = arena_str(t, (const char *)o, ol);
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
    if ((s.a && !(s.a = arena_str(t, s.a, s.a_len))) || (s.b && !(s.b = arena_str(t, s.b, s.b_len))))
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

static bool parse_byte_token(const char *s, size_t n, uint8_t *b) {
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
static bool byte_level_bytes(const lb_tokenizer *t, const char *s, size_t n, uint8_t *out, size_t *out_len) {
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
static uint8_t *replace_all(const uint8_t *s, size_t n, const char *a, size_t al, const char *b, size_t bl, size_t *out_len) {
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
            if (byte_level_bytes(t, (const char *)buf, n, o, &nl)) memcpy(buf, o, nl);
            else nl = n;
            free(o);
        } else if (d->kind == DEC_BYTEFALLBACK) {
            uint8_t b;
            if (parse_byte_token((const char *)buf, n, &b)) buf[0] = b, nl = 1;
        } else if (d->kind == DEC_REPLACE) {
            uint8_t *o = replace_all(buf, n, d->a, d->a_len, d->b, d->b_len, &nl);
            if (!o) {
                free(buf);
                return LB_ERR_NOMEM;
            }
            free(buf);
            buf = o;
        }
        n = nl;
    }
    e->bytes = arena_str(t, (const char *)buf, n);
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
        t->byte_id[b] = vocab_find(t, u, l);
    }
    for (int64_t id = 0; id < t->n_vocab; id++) {
        tok_entry *e = &t->tok[id];
        uint8_t b;
        if (!e->text) {
            e->type = LB_TOK_TYPE_UNUSED;
            e->text = "";
        } else if (!e->type) {
            e->type = id == t->unk_id ? LB_TOK_TYPE_UNKNOWN
                      : t->model == LB_TOK_MODEL_SPM_BPE && parse_byte_token(e->text, e->len, &b) ? LB_TOK_TYPE_BYTE
                                                                                              : LB_TOK_TYPE_NORMAL;
        }
        /* strings so far point into the JSON document: copy them into the arena */
        const char *txt = e->text;
        e->text = arena_str(t, txt, e->len);
        if (e->mtext) e->mtext = e->mtext == txt ? e->text : arena_str(t, e->mtext, e->mlen);
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

static bool pair_find(const lb_tokenizer *t, uint32_t a, uint32_t b) {
    uint64_t key = (uint64_t)a << 32 | b;
    for (size_t i = hash_u64(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
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
    size_t cap = pow2_at_least(total * 2 + 16);
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
            if (i && !pair_find(t, prev, cp)) {
                uint64_t key = (uint64_t)prev << 32 | cp;
                size_t k = hash_u64(key) & t->pair_mask;
                while (t->pair_slots[k] != EMPTY_KEY) k = (k + 1) & t->pair_mask;
                t->pair_slots[k] = key;
            }
            prev = cp;
        }
    }
    return LB_OK;
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
    t->tok = calloc((size_t)t->n_vocab, sizeof *t->tok);
    if (!t->tok) return lb_err_set(err, LB_ERR_NOMEM, "out of memory for %lld tokens", (long long)t->n_vocab);
    st = load_model_tables(t, model, path, err);
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
    t->bos_id = t->eos_id = -1;
    load_post(t, json_get(root, "post_processor"), 0);
    st = build_added_sets(t, err);
    if (!st) st = finish_tables(t, err);
    if (!st && !t->bl_pre && t->split == LB_TOK_PRE_NONE && !t->ignore_merges) st = build_pairs(t, err);
    return st;
}

lb_status lb_tokenizer_load(const char *path, lb_tokenizer **out, lb_error *err) {
    if (!path || !out) return lb_err_set(err, LB_ERR_ARG, "lb_tokenizer_load: path and out must not be NULL");
    char *file = lb_path_is_dir(path) ? lb_path_join(path, "tokenizer.json") : strdup(path);
    if (!file) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    json_doc *doc = NULL;
    lb_tokenizer *t = NULL;
    lb_status st = lb_read_file(file, MAX_FILE_BYTES, &text, &len, err);
    if (!st) {
        st = json_parse(text, len, &doc, err);
        if (st) lb_err_prefix(err, st, "%s", file);
    }
    if (!st) {
        t = calloc(1, sizeof *t);
        if (!t) st = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    if (!st) {
        init_byte_alphabet(t);
        st = load_doc(t, json_root(doc), file, err);
    }
    json_free(doc);
    free(text);
    free(file);
    if (st) {
        lb_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
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
static lb_status apply_norm(const lb_tokenizer *t, const uint8_t *s, size_t n, uint8_t **out, size_t *out_len) {
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
            next = replace_all(cur, n, st->a, st->a_len, st->b, st->b_len, &nl);
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

/* ---------------------------------------------------------------------------------------------- */
/* encoding state                                                                                 */

typedef struct sym {
    int32_t id, prev, next;
    bool alive;
} sym;

typedef struct hentry {
    uint32_t rank, pos;
    int32_t new_id;
} hentry;

typedef struct cslot {
    uint32_t koff, klen, ioff, icount; /* klen == 0: free */
    uint64_t h;
} cslot;

typedef struct enc {
    const lb_tokenizer *t;
    int32_t *ids;
    size_t n_ids, cap_ids;
    sym *syms;
    size_t cap_syms;
    hentry *heap;
    size_t n_heap, cap_heap;
    uint8_t *tmp; /* the word with a prefix space, or its byte-level string */
    size_t cap_tmp;
    cslot *cache; /* words seen during this call -> their ids */
    size_t cache_mask, cache_used;
    uint8_t *ckeys;
    size_t n_ckeys, cap_ckeys;
    int32_t *cids;
    size_t n_cids, cap_cids;
    bool oom;
} enc;

static bool grow(enc *e, void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) {
        e->oom = true;
        return false;
    }
    *p = q;
    *cap = c;
    return true;
}

static void push_id(enc *e, int32_t id) {
    if (!grow(e, (void **)&e->ids, &e->cap_ids, e->n_ids + 1, sizeof *e->ids)) return;
    e->ids[e->n_ids++] = id;
}

static void heap_push(enc *e, hentry h) {
    if (!grow(e, (void **)&e->heap, &e->cap_heap, e->n_heap + 1, sizeof *e->heap)) return;
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        hentry *q = &e->heap[p];
        if (q->rank < h.rank || (q->rank == h.rank && q->pos < h.pos)) break;
        e->heap[i] = *q;
        i = p;
    }
    e->heap[i] = h;
}

static hentry heap_pop(enc *e) {
    hentry top = e->heap[0], last = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && (e->heap[c + 1].rank < e->heap[c].rank ||
                          (e->heap[c + 1].rank == e->heap[c].rank && e->heap[c + 1].pos < e->heap[c].pos)))
            c++;
        if (last.rank < e->heap[c].rank || (last.rank == e->heap[c].rank && last.pos < e->heap[c].pos)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

/* ---------------------------------------------------------------------------------------------- */
/* BPE on one word (models/bpe/model.rs merge_word + word.rs merge_all)                             */

typedef struct word_build {
    size_t n;
    int32_t unk; /* pending unk symbol, -1 when none */
} word_build;

static void add_sym(enc *e, word_build *w, int32_t id) {
    if (!grow(e, (void **)&e->syms, &e->cap_syms, w->n + 1, sizeof *e->syms)) return;
    e->syms[w->n] = (sym){id, (int32_t)w->n - 1, (int32_t)w->n + 1, true};
    w->n++;
}

/* One character of the word: its vocabulary id, else byte fallback, else unk (fused), else dropped. */
static void add_char(enc *e, word_build *w, const uint8_t *ch, size_t len, int32_t id) {
    const lb_tokenizer *t = e->t;
    if (id >= 0) {
        if (w->unk >= 0) add_sym(e, w, w->unk), w->unk = -1;
        add_sym(e, w, id);
        return;
    }
    if (t->byte_fallback) {
        int32_t ids[4];
        size_t k = 0;
        for (; k < len; k++) {
            char name[7];
            snprintf(name, sizeof name, "<0x%02X>", ch[k]);
            ids[k] = vocab_find(t, name, 6);
            if (ids[k] < 0) break;
        }
        if (k == len) { /* HF adds these without flushing a pending unk first */
            for (k = 0; k < len; k++) add_sym(e, w, ids[k]);
            return;
        }
    }
    if (t->unk_id < 0) return;
    if (w->unk >= 0 && !t->fuse_unk) add_sym(e, w, w->unk);
    w->unk = t->unk_id;
}

static void merge_all(enc *e, size_t n) {
    const lb_tokenizer *t = e->t;
    sym *s = e->syms;
    if (n) s[n - 1].next = -1;
    e->n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const merge_slot *m = merge_find(t, s[i].id, s[i + 1].id);
        if (m) heap_push(e, (hentry){m->rank, (uint32_t)i, m->new_id});
    }
    while (e->n_heap && !e->oom) {
        hentry top = heap_pop(e);
        sym *cur = &s[top.pos];
        if (!cur->alive || cur->next < 0) continue;
        sym *right = &s[cur->next];
        const merge_slot *m = merge_find(t, cur->id, right->id);
        if (!m || m->new_id != top.new_id) continue; /* stale entry */
        cur->id = top.new_id;
        cur->next = right->next;
        right->alive = false;
        if (cur->next >= 0) s[cur->next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            m = merge_find(t, s[cur->prev].id, cur->id);
            if (m) heap_push(e, (hentry){m->rank, (uint32_t)cur->prev, m->new_id});
        }
        if (cur->next >= 0) {
            m = merge_find(t, cur->id, s[cur->next].id);
            if (m) heap_push(e, (hentry){m->rank, top.pos, m->new_id});
        }
    }
}

/* Tokenize one pre-token word (raw UTF-8 bytes) and append its ids. */
static void bpe_word(enc *e, const uint8_t *w, size_t n) {
    const lb_tokenizer *t = e->t;
    bool bl = t->model == LB_TOK_MODEL_BYTE_BPE;
    if (t->ignore_merges) {
        const uint8_t *key = w;
        size_t kl = n;
        if (bl) { /* the word as its byte-level string */
            if (!grow(e, (void **)&e->tmp, &e->cap_tmp, n * 2, 1)) return;
            kl = 0;
            for (size_t i = 0; i < n; i++) kl += utf8_encode(t->byte_char[w[i]], e->tmp + kl);
            key = e->tmp;
        }
        int32_t id = vocab_find(t, key, kl);
        if (id >= 0) {
            push_id(e, id);
            return;
        }
    }
    word_build wb = {0, -1};
    for (size_t i = 0; i < n;) {
        if (bl) {
            uint8_t u[4];
            int32_t id = t->byte_id[w[i]];
            size_t ul = id >= 0 ? 0 : utf8_encode(t->byte_char[w[i]], u);
            add_char(e, &wb, u, ul, id);
            i++;
        } else {
            size_t l;
            utf8_cp_at(w, n, i, &l);
            add_char(e, &wb, w + i, l, vocab_find(t, w + i, l));
            i += l;
        }
    }
    if (wb.unk >= 0) add_sym(e, &wb, wb.unk);
    if (e->oom) return;
    merge_all(e, wb.n);
    for (size_t i = 0; i < wb.n; i++)
        if (e->syms[i].alive) push_id(e, e->syms[i].id);
}

/* ---------------------------------------------------------------------------------------------- */
/* word cache (per encode call, since a tokenizer is shared read-only between threads)              */

static cslot *cache_find(enc *e, const uint8_t *w, size_t n, uint64_t h) {
    size_t i = h & e->cache_mask;
    for (;;) {
        cslot *c = &e->cache[i];
        if (!c->klen || (c->h == h && c->klen == n && memcmp(e->ckeys + c->koff, w, n) == 0)) return c;
        i = (i + 1) & e->cache_mask;
    }
}

static bool cache_grow(enc *e) {
    size_t cap = e->cache ? (e->cache_mask + 1) * 2 : 4096;
    cslot *old = e->cache;
    size_t old_cap = old ? e->cache_mask + 1 : 0;
    e->cache = calloc(cap, sizeof *e->cache);
    if (!e->cache) {
        e->cache = old;
        e->oom = true;
        return false;
    }
    e->cache_mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].klen) continue;
        size_t j = old[i].h & e->cache_mask;
        while (e->cache[j].klen) j = (j + 1) & e->cache_mask;
        e->cache[j] = old[i];
    }
    free(old);
    return true;
}

static void encode_word(enc *e, const uint8_t *w, size_t n) {
    if (n > CACHE_MAX_WORD) {
        bpe_word(e, w, n);
        return;
    }
    if ((e->cache_used + 1) * 2 > (e->cache ? e->cache_mask + 1 : 0) && !cache_grow(e)) return;
    uint64_t h = hash_bytes(w, n);
    cslot *c = cache_find(e, w, n, h);
    if (c->klen) {
        if (grow(e, (void **)&e->ids, &e->cap_ids, e->n_ids + c->icount, sizeof *e->ids)) {
            memcpy(e->ids + e->n_ids, e->cids + c->ioff, c->icount * sizeof *e->ids);
            e->n_ids += c->icount;
        }
        return;
    }
    size_t before = e->n_ids;
    bpe_word(e, w, n);
    size_t cnt = e->n_ids - before;
    if (e->oom || !grow(e, (void **)&e->ckeys, &e->cap_ckeys, e->n_ckeys + n, 1) ||
        !grow(e, (void **)&e->cids, &e->cap_cids, e->n_cids + cnt, sizeof *e->cids))
        return;
    c = cache_find(e, w, n, h); /* the slot is still free: nothing was inserted meanwhile */
    *c = (cslot){(uint32_t)e->n_ckeys, (uint32_t)n, (uint32_t)e->n_cids, (uint32_t)cnt, h};
    memcpy(e->ckeys + e->n_ckeys, w, n);
    memcpy(e->cids + e->n_cids, e->ids + before, cnt * sizeof *e->ids);
    e->n_ckeys += n;
    e->n_cids += cnt;
    e->cache_used++;
}

/* ---------------------------------------------------------------------------------------------- */
/* the pipeline: added tokens -> normalizer -> normalized added tokens -> pre-tokenizer -> BPE     */

static void split_words(enc *e, const uint8_t *s, size_t n, lb_tok_pre kind) {
    for (size_t i = 0; i < n && !e->oom;) {
        size_t j = lb_tok_pre_match(kind, s, n, i);
        encode_word(e, s + i, j - i);
        i = j;
    }
}

/* ByteLevel stage on one piece: a prefix space if asked for, then the GPT-2 regex if use_regex. */
static void byte_level_piece(enc *e, const uint8_t *s, size_t n) {
    const lb_tokenizer *t = e->t;
    uint8_t *buf = NULL;
    if (t->bl_prefix_space && s[0] != ' ') {
        buf = malloc(n + 1);
        if (!buf) {
            e->oom = true;
            return;
        }
        buf[0] = ' ';
        memcpy(buf + 1, s, n);
        s = buf;
        n++;
    }
    if (t->bl_use_regex) split_words(e, s, n, LB_TOK_PRE_GPT2);
    else encode_word(e, s, n);
    free(buf);
}

/* One word of a tokenizer without pre-tokenizer, cut where no merge can cross (see build_pairs). Cuts
 * fall only between characters that are tokens themselves, so unk fusing and byte fallback are kept. */
static void cut_word(enc *e, const uint8_t *s, size_t n) {
    const lb_tokenizer *t = e->t;
    size_t start = 0, l;
    uint32_t prev = utf8_cp_at(s, n, 0, &l);
    bool prev_known = vocab_find(t, s, l) >= 0;
    for (size_t i = l; i < n && !e->oom; i += l) {
        uint32_t cp = utf8_cp_at(s, n, i, &l);
        bool known = vocab_find(t, s + i, l) >= 0;
        if (prev_known && known && !pair_find(t, prev, cp)) {
            encode_word(e, s + start, i - start);
            start = i;
        }
        prev = cp;
        prev_known = known;
    }
    encode_word(e, s + start, n - start);
}

static void pre_stage2(enc *e, const uint8_t *s, size_t n) {
    if (e->t->bl_pre) byte_level_piece(e, s, n);
    else if (e->t->pair_slots) cut_word(e, s, n);
    else encode_word(e, s, n);
}

/* Pre-tokenize normalized text and run the model on each word. */
static void pretokenize(enc *e, const uint8_t *s, size_t n) {
    const lb_tokenizer *t = e->t;
    if (!n) return;
    if (t->split == LB_TOK_PRE_NONE) {
        pre_stage2(e, s, n);
        return;
    }
    for (size_t i = 0; i < n && !e->oom;) {
        size_t j = lb_tok_pre_match(t->split, s, n, i);
        pre_stage2(e, s + i, j - i);
        i = j;
    }
}

static bool is_word_before(const uint8_t *s, size_t i) {
    if (!i) return false;
    size_t k = i - 1;
    while (k > 0 && (s[k] & 0xC0) == 0x80) k--;
    uint32_t cp;
    utf8_decode(s + k, i - k, &cp);
    return uni_flags(cp) & UNI_WORD;
}

static bool is_word_at(const uint8_t *s, size_t n, size_t i) {
    size_t l;
    return i < n && (uni_flags(utf8_cp_at(s, n, i, &l)) & UNI_WORD);
}

/* Longest added token of the set starting at p, or -1. */
static int64_t added_at(const lb_tokenizer *t, const added_set *set, const uint8_t *s, size_t n, size_t p) {
    int64_t best = -1;
    size_t best_len = 0;
    for (uint32_t k = set->first[s[p]]; k < set->first[s[p] + 1]; k++) {
        const added_tok *a = &t->added[set->idx[k]];
        if (a->norm_len > best_len && a->norm_len <= n - p && memcmp(s + p, a->norm, a->norm_len) == 0)
            best = set->idx[k], best_len = a->norm_len;
    }
    return best;
}

typedef void (*piece_fn)(enc *e, const uint8_t *s, size_t n);

/* Split s on the added tokens of `set` as AddedVocabulary::find_matches does (leftmost-longest,
 * single_word, lstrip, rstrip), emitting token ids and handing the text between them to fn. */
static void split_added(enc *e, const added_set *set, const uint8_t *s, size_t n, piece_fn fn) {
    const lb_tokenizer *t = e->t;
    size_t done = 0, scan = 0;
    while (set->first[256] && scan < n && !e->oom) {
        int64_t ai = -1;
        size_t p = scan;
        for (; p < n; p++)
            if (set->first[s[p]] != set->first[s[p] + 1] && (ai = added_at(t, set, s, n, p)) >= 0) break;
        if (ai < 0) break;
        const added_tok *a = &t->added[ai];
        size_t start = p, stop = p + a->norm_len;
        scan = stop;
        if (a->single_word && (is_word_before(s, start) || is_word_at(s, n, stop))) continue;
        if (a->lstrip) {
            while (start > done) {
                size_t k = start - 1;
                while (k > done && (s[k] & 0xC0) == 0x80) k--;
                uint32_t cp;
                utf8_decode(s + k, start - k, &cp);
                if (!uni_is_space(cp)) break;
                start = k;
            }
        }
        if (a->rstrip) { /* the search goes on from the match end, so matches may overlap, as in HF */
            size_t l;
            while (stop < n && uni_is_space(utf8_cp_at(s, n, stop, &l))) stop += l;
        }
        if (start > done) fn(e, s + done, start - done);
        push_id(e, a->id);
        done = stop;
    }
    if (done < n && !e->oom) fn(e, s + done, n - done);
}

static void normalized_piece(enc *e, const uint8_t *s, size_t n) {
    split_added(e, &e->t->norm_set, s, n, pretokenize);
}

static void raw_piece(enc *e, const uint8_t *s, size_t n) {
    if (!e->t->n_norm) {
        normalized_piece(e, s, n);
        return;
    }
    uint8_t *o;
    size_t ol;
    if (apply_norm(e->t, s, n, &o, &ol)) {
        e->oom = true;
        return;
    }
    normalized_piece(e, o, ol);
    free(o);
}

lb_status lb_tokenizer_encode(const lb_tokenizer *t, const char *text, size_t len, int32_t **ids, int64_t *n_ids,
                              lb_error *err) {
    if (!t || !ids || !n_ids || (!text && len))
        return lb_err_set(err, LB_ERR_ARG, "lb_tokenizer_encode: tokenizer, text, ids and n_ids must not be NULL");
    const uint8_t *s = (const uint8_t *)text;
    int64_t bad = utf8_invalid_offset(s, len);
    if (bad >= 0)
        return lb_err_set(err, LB_ERR_ARG, "text is not valid UTF-8 at byte offset %lld (byte 0x%02X)", (long long)bad,
                          s[bad]);
    enc e = {.t = t};
    if (len) split_added(&e, &t->raw_set, s, len, raw_piece);
    free(e.syms);
    free(e.heap);
    free(e.tmp);
    free(e.cache);
    free(e.ckeys);
    free(e.cids);
    if (!e.oom && !e.ids) {
        e.ids = malloc(sizeof *e.ids);
        e.oom = !e.ids;
    }
    if (e.oom) {
        free(e.ids);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory while encoding %zu bytes", len);
    }
    *ids = e.ids;
    *n_ids = (int64_t)e.n_ids;
    return LB_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* decoding: the decoder steps over a list of strings                                             */

typedef struct strlist {
    uint8_t *buf;
    size_t len, cap;
    size_t (*span)[2]; /* offset, length */
    size_t n, cap_n;
    bool oom;
} strlist;

static bool sl_reserve(strlist *l, size_t more) {
    if (l->len + more > l->cap) {
        size_t c = l->cap ? l->cap : 256;
        while (c < l->len + more) c *= 2;
        uint8_t *b = realloc(l->buf, c);
        if (!b) return !(l->oom = true);
        l->buf = b;
        l->cap = c;
    }
    return true;
}

/* Start a new string in the list. */
static void sl_begin(strlist *l) {
    if (l->oom) return;
    if (l->n == l->cap_n) {
        size_t c = l->cap_n ? l->cap_n * 2 : 64;
        void *p = realloc(l->span, c * sizeof *l->span);
        if (!p) {
            l->oom = true;
            return;
        }
        l->span = p;
        l->cap_n = c;
    }
    l->span[l->n][0] = l->len;
    l->span[l->n][1] = 0;
    l->n++;
}

/* Append bytes to the last string. */
static void sl_add(strlist *l, const void *p, size_t n) {
    if (l->oom || !n || !sl_reserve(l, n)) return;
    memcpy(l->buf + l->len, p, n);
    l->len += n;
    l->span[l->n - 1][1] += n;
}

static void sl_free(strlist *l) {
    free(l->buf);
    free(l->span);
}

#define SL_STR(l, i) ((l)->buf + (l)->span[i][0])
#define SL_LEN(l, i) ((l)->span[i][1])

static void dec_byte_level(const lb_tokenizer *t, const strlist *in, strlist *out) {
    uint8_t *raw = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < in->n; i++) cap += SL_LEN(in, i);
    raw = malloc(cap + 1);
    if (!raw) {
        out->oom = true;
        return;
    }
    for (size_t i = 0; i < in->n; i++) {
        size_t l;
        if (byte_level_bytes(t, (const char *)SL_STR(in, i), SL_LEN(in, i), raw + n, &l)) n += l;
        else memcpy(raw + n, SL_STR(in, i), SL_LEN(in, i)), n += SL_LEN(in, i);
    }
    sl_begin(out);
    if (sl_reserve(out, 3 * n)) {
        size_t w = utf8_lossy(raw, n, out->buf + out->len);
        out->len += w;
        if (!out->oom) out->span[out->n - 1][1] = w;
    }
    free(raw);
}

/* ByteFallback: runs of <0xNN> tokens become their bytes when valid UTF-8, else one U+FFFD each. */
static void dec_byte_fallback(const strlist *in, strlist *out) {
    uint8_t *run = malloc(in->n + 1);
    size_t nr = 0;
    if (!run) {
        out->oom = true;
        return;
    }
    for (size_t i = 0; i <= in->n; i++) {
        uint8_t b;
        if (i < in->n && parse_byte_token((const char *)SL_STR(in, i), SL_LEN(in, i), &b)) {
            run[nr++] = b;
            continue;
        }
        if (nr) {
            sl_begin(out);
            if (utf8_valid(run, nr)) sl_add(out, run, nr);
            else
                for (size_t k = 0; k < nr; k++) sl_add(out, "\xEF\xBF\xBD", 3);
            nr = 0;
        }
        if (i < in->n) {
            sl_begin(out);
            sl_add(out, SL_STR(in, i), SL_LEN(in, i));
        }
    }
    free(run);
}

/* Strip: drop up to `start` leading and `stop` trailing copies of one char from each string. */
static void dec_strip(const step *d, const strlist *in, strlist *out) {
    for (size_t i = 0; i < in->n; i++) {
        const uint8_t *s = SL_STR(in, i);
        size_t n = SL_LEN(in, i), a = 0, b = n, l;
        for (int64_t k = 0; k < d->start && a < n; k++) {
            if (utf8_cp_at(s, n, a, &l) != d->strip_cp) break;
            a += l;
        }
        for (int64_t k = 0; k < d->stop && b > a; k++) {
            size_t p = b - 1;
            uint32_t cp;
            while (p > a && (s[p] & 0xC0) == 0x80) p--;
            utf8_decode(s + p, b - p, &cp);
            if (cp != d->strip_cp) break;
            b = p;
        }
        sl_begin(out);
        sl_add(out, s + a, b - a);
    }
}

static void dec_step_run(const lb_tokenizer *t, const step *d, const strlist *in, strlist *out) {
    switch (d->kind) {
    case DEC_BYTELEVEL: dec_byte_level(t, in, out); break;
    case DEC_BYTEFALLBACK: dec_byte_fallback(in, out); break;
    case DEC_STRIP: dec_strip(d, in, out); break;
    case DEC_FUSE:
        sl_begin(out);
        for (size_t i = 0; i < in->n; i++) sl_add(out, SL_STR(in, i), SL_LEN(in, i));
        break;
    default: /* DEC_REPLACE */
        for (size_t i = 0; i < in->n; i++) {
            const uint8_t *s = SL_STR(in, i);
            size_t n = SL_LEN(in, i);
            sl_begin(out);
            for (size_t k = 0; k < n;) {
                if (k + d->a_len <= n && memcmp(s + k, d->a, d->a_len) == 0) {
                    sl_add(out, d->b, d->b_len);
                    k += d->a_len;
                } else {
                    sl_add(out, s + k, 1);
                    k++;
                }
            }
        }
    }
}

lb_status lb_tokenizer_decode(const lb_tokenizer *t, const int32_t *ids, int64_t n_ids, char **text, size_t *len,
                              lb_error *err) {
    if (!t || !text || !len || n_ids < 0 || (!ids && n_ids))
        return lb_err_set(err, LB_ERR_ARG, "lb_tokenizer_decode: invalid arguments");
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab || t->tok[ids[i]].type == LB_TOK_TYPE_UNUSED)
            return lb_err_set(err, LB_ERR_ARG, "token id %d at position %lld is not in the vocabulary (0..%lld)", ids[i],
                              (long long)i, (long long)t->n_vocab - 1);
    strlist a = {0}, b = {0};
    for (int64_t i = 0; i < n_ids; i++) {
        sl_begin(&a);
        sl_add(&a, t->tok[ids[i]].dtext, t->tok[ids[i]].dlen);
    }
    for (int s = 0; s < t->n_dec && !a.oom; s++) {
        b.len = b.n = 0;
        dec_step_run(t, &t->dec[s], &a, &b);
        strlist tmp = a;
        a = b;
        b = tmp;
    }
    /* the strings are joined; without any decoder HF joins them with spaces */
    strlist r = {0};
    sl_begin(&r);
    for (size_t i = 0; i < a.n; i++) {
        if (i && !t->has_decoder) sl_add(&r, " ", 1);
        sl_add(&r, SL_STR(&a, i), SL_LEN(&a, i));
    }
    sl_add(&r, "", 0);
    bool oom = a.oom || b.oom || r.oom || !sl_reserve(&r, 1);
    sl_free(&a);
    sl_free(&b);
    if (oom) {
        sl_free(&r);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory while decoding %lld tokens", (long long)n_ids);
    }
    r.buf[r.len] = 0;
    free(r.span);
    *text = (char *)r.buf;
    *len = r.len;
    return LB_OK;
}
