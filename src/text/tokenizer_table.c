/*
 * tokenizer_table.c - the tables every tokenizer is made of, whatever it was loaded from: the string
 * arena, the vocabulary and merge hashes, the added-token sets, the per-token strings and bytes, the
 * GPT-2 byte alphabet, the normalizer steps; plus the accessors and lb_tokenizer_free. Loaders
 * (tokenizer_json.c, tokenizer_gguf.c) fill a tokenizer through these functions; encode and decode read it.
 *
 * Source: huggingface/tokenizers 0.2x (models/bpe merge ranks, tokenizer/added_vocabulary.rs); the
 * byte-to-unicode alphabet is GPT-2's bytes_to_unicode() (openai/gpt-2, src/encoder.py).
 */
#include "tokenizer_impl.h"

#include "unicode.h"

#include <stdlib.h>
#include <string.h>

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
    if (!st && t->model == LB_TOK_MODEL_SPM_BPE && !t->n_pre && !t->ignore_merges) st = build_pairs(t, err);
    return st;
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

void lb_tokenizer_free(lb_tokenizer *t) {
    if (!t) return;
    for (arena_blk *b = t->arena; b;) {
        arena_blk *next = b->next;
        free(b);
        b = next;
    }
    for (int i = 0; i < t->n_pre; i++) rx_free(t->pre_steps[i].re);
    for (int i = 0; i < t->n_norm; i++) rx_free(t->norm[i].re);
    free(t->tok);
    free(t->scores);
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
/* Replace every match of st->re in s with st->b (Oniguruma's match iteration: an empty match right
 * where the previous one ended is skipped); malloc'd, NULL when out of memory. */
static uint8_t *replace_regex(const step *st, const uint8_t *s, size_t n, size_t *out_len) {
    uint32_t *cp = malloc((n + 1) * sizeof *cp);
    size_t *off = malloc((n + 1) * sizeof *off), m = 0;
    uint8_t *o = NULL;
    if (!cp || !off) goto done;
    for (size_t i = 0, l; i < n; i += l) off[m] = i, cp[m++] = utf8_cp_at(s, n, i, &l);
    off[m] = n;
    size_t count = 0, from = 0, last_end = SIZE_MAX, end;
    int64_t b;
    for (from = 0; from <= m && (b = rx_search(st->re, cp, m, from, &end)) >= 0;) {
        bool skip = (size_t)b == end && end == last_end;
        count += !skip;
        last_end = end;
        from = (size_t)b == end ? end + 1 : end;
    }
    if (!(o = malloc(n + count * st->b_len + 1))) goto done;
    size_t k = 0, prev = 0;
    last_end = SIZE_MAX;
    for (from = 0; from <= m && (b = rx_search(st->re, cp, m, from, &end)) >= 0;) {
        if (!((size_t)b == end && end == last_end)) {
            memcpy(o + k, s + off[prev], off[b] - off[prev]), k += off[b] - off[prev];
            memcpy(o + k, st->b, st->b_len), k += st->b_len;
            prev = end;
        }
        last_end = end;
        from = (size_t)b == end ? end + 1 : end;
    }
    memcpy(o + k, s + off[prev], n - off[prev]);
    *out_len = k + n - off[prev];
done:
    free(cp);
    free(off);
    return o;
}

lb_status tok_apply_norm(const lb_tokenizer *t, const uint8_t *s, size_t n, uint8_t **out, size_t *out_len) {
    static const uni_form forms[] = {[NORM_NFC] = UNI_NFC, [NORM_NFD] = UNI_NFD, [NORM_NFKC] = UNI_NFKC, [NORM_NFKD] = UNI_NFKD};
    uint8_t *cur = malloc(n + 1);
    if (!cur) return LB_ERR_NOMEM;
    memcpy(cur, s, n);
    for (int i = 0; i < t->n_norm; i++) {
        const step *st = &t->norm[i];
        uint8_t *next = NULL;
        size_t nl = 0;
        switch (st->kind) {
        case NORM_NFC:
        case NORM_NFD:
        case NORM_NFKC:
        case NORM_NFKD:
            if (!uni_normalize(forms[st->kind], cur, n, &next, &nl)) next = NULL;
            break;
        case NORM_LOWERCASE:
            if (!uni_lowercase(cur, n, &next, &nl)) next = NULL;
            break;
        case NORM_STRIP: {
            size_t a = 0, b = n, l;
            while (st->start && a < b && uni_is_space(utf8_cp_at(cur, n, a, &l))) a += l;
            while (st->stop && b > a) {
                size_t k = b - 1;
                while (k > a && (cur[k] & 0xC0) == 0x80) k--;
                if (!uni_is_space(utf8_cp_at(cur, n, k, &l))) break;
                b = k;
            }
            if ((next = malloc(b - a + 1))) memcpy(next, cur + a, b - a), nl = b - a;
            break;
        }
        case NORM_PREPEND:
            if (!n) continue; /* HF prepends only to non-empty text */
            next = malloc(n + st->a_len + 1);
            if (next) {
                memcpy(next, st->a, st->a_len);
                memcpy(next + st->a_len, cur, n);
                nl = n + st->a_len;
            }
            break;
        default:
            next = st->re ? replace_regex(st, cur, n, &nl) : tok_replace_all(cur, n, st->a, st->a_len, st->b, st->b_len, &nl);
            break;
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
