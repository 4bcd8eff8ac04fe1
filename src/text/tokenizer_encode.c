/*
 * tokenizer_encode.c - encoding with a loaded tokenizer: added tokens (raw, then normalized), the
 * normalizer, the pre-tokenizer steps (each cuts its pieces into matches and gaps and applies a split
 * behavior, the next step runs on every piece) and BPE on each word; or, for a GGUF SentencePiece
 * vocabulary, llama.cpp's merging by token scores on each raw piece.
 *
 * Source: huggingface/tokenizers 0.2x: tokenizer/added_vocabulary.rs (find_matches and its flags),
 * tokenizer/normalizer.rs (split behaviors), pre_tokenizers/ (byte_level.rs, split.rs, metaspace.rs,
 * digits.rs, punctuation.rs, whitespace.rs), models/bpe/model.rs and word.rs (merge order, byte
 * fallback, unk fusing, ignore_merges); llama.cpp src/llama-vocab.cpp (llm_tokenizer_spm_session,
 * the BPE session's newline words); checked against tests/golden/conformance/tokenizers and the
 * Python tests (tokenizers, llama-cpp-python).
 */
#include "tokenizer_impl.h"

#include "unicode.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_MAX_WORD 64 /* longer words are not cached during an encode */

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

/* SentencePiece by scores: a symbol, and a candidate pair */
typedef struct ssym {
    uint32_t off, n; /* bytes of the symbol in the escaped text; n == 0 once merged away */
    int32_t prev, next;
} ssym;

typedef struct sbig {
    float score;
    int32_t left, right;
    uint32_t size;
} sbig;

typedef struct step_buf {
    uint32_t *cp; /* the piece's code points */
    size_t *off;  /* their byte offsets */
    uint8_t *txt; /* a rewritten piece (prefix space, Metaspace) */
    size_t cap_cp, cap_off, cap_txt;
} step_buf;

typedef struct enc {
    const lb_tokenizer *t;
    const uint8_t *input; /* the text being encoded */
    const uint8_t *text;  /* the normalized text of the current raw piece */
    bool at_start;        /* that raw piece starts the input (Metaspace's prepend_scheme "first") */
    bool prev_special;    /* SentencePiece: the text starts the input or follows an added token */
    ssym *ssyms;
    size_t cap_ssyms;
    sbig *sheap;
    size_t n_sheap, cap_sheap;
    step_buf sb[MAX_PRE_STEPS];
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
            ids[k] = tok_vocab_find(t, name, 6);
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
        const merge_slot *m = tok_merge_find(t, s[i].id, s[i + 1].id);
        if (m) heap_push(e, (hentry){m->rank, (uint32_t)i, m->new_id});
    }
    while (e->n_heap && !e->oom) {
        hentry top = heap_pop(e);
        sym *cur = &s[top.pos];
        if (!cur->alive || cur->next < 0) continue;
        sym *right = &s[cur->next];
        const merge_slot *m = tok_merge_find(t, cur->id, right->id);
        if (!m || m->new_id != top.new_id) continue; /* stale entry */
        cur->id = top.new_id;
        cur->next = right->next;
        right->alive = false;
        if (cur->next >= 0) s[cur->next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            m = tok_merge_find(t, s[cur->prev].id, cur->id);
            if (m) heap_push(e, (hentry){m->rank, (uint32_t)cur->prev, m->new_id});
        }
        if (cur->next >= 0) {
            m = tok_merge_find(t, cur->id, s[cur->next].id);
            if (m) heap_push(e, (hentry){m->rank, top.pos, m->new_id});
        }
    }
}

/* Tokenize one pre-token word (raw UTF-8 bytes) and append its ids. */
static void bpe_word(enc *e, const uint8_t *w, size_t n) {
    const lb_tokenizer *t = e->t;
    bool bl = t->model == LB_TOK_MODEL_BYTE_BPE;
    if (t->newline_whole && n && w[0] == '\n') {
        size_t k = 0;
        while (k < n && w[k] == '\n') k++;
        int32_t id = k == n ? tok_vocab_find(t, w, n) : -1;
        if (id >= 0) {
            push_id(e, id);
            return;
        }
    }
    if (t->ignore_merges) {
        const uint8_t *key = w;
        size_t kl = n;
        if (bl) { /* the word as its byte-level string */
            if (!grow(e, (void **)&e->tmp, &e->cap_tmp, n * 2, 1)) return;
            kl = 0;
            for (size_t i = 0; i < n; i++) kl += utf8_encode(t->byte_char[w[i]], e->tmp + kl);
            key = e->tmp;
        }
        int32_t id = tok_vocab_find(t, key, kl);
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
            add_char(e, &wb, w + i, l, tok_vocab_find(t, w + i, l));
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
    uint64_t h = tok_hash_bytes(w, n);
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
    if (n) memcpy(e->ckeys + e->n_ckeys, w, n);
    if (cnt) memcpy(e->cids + e->n_cids, e->ids + before, cnt * sizeof *e->ids); /* a word may give no id (ids still NULL) */
    e->n_ckeys += n;
    e->n_cids += cnt;
    e->cache_used++;
}

/* ---------------------------------------------------------------------------------------------- */
/* the pipeline: added tokens -> normalizer -> normalized added tokens -> pre-tokenizer -> BPE     */

/* One word of a tokenizer without pre-tokenizer, cut where no merge can cross (see build_pairs). Cuts
 * fall only between characters that are tokens themselves, so unk fusing and byte fallback are kept. */
static void cut_word(enc *e, const uint8_t *s, size_t n) {
    const lb_tokenizer *t = e->t;
    size_t start = 0, l;
    uint32_t prev = utf8_cp_at(s, n, 0, &l);
    bool prev_known = tok_vocab_find(t, s, l) >= 0;
    for (size_t i = l; i < n && !e->oom; i += l) {
        uint32_t cp = utf8_cp_at(s, n, i, &l);
        bool known = tok_vocab_find(t, s + i, l) >= 0;
        if (prev_known && known && !tok_pair_find(t, prev, cp)) {
            encode_word(e, s + start, i - start);
            start = i;
        }
        prev = cp;
        prev_known = known;
    }
    encode_word(e, s + start, n - start);
}

/* One char of s[0..n) with a Digits / Punctuation / WhitespaceSplit property (Rust's char methods). */
static bool has_prop(int prop, uint32_t c) {
    switch (prop) {
    case CH_NUMERIC: return uni_is_number(c);
    case CH_PUNCT: return (c < 128 && ispunct((int)c)) || (UNI_GCM(uni_category(c)) & UNI_GCM_P);
    default: return uni_is_space(c);
    }
}

static void pre_run(enc *e, int k, const uint8_t *s, size_t n, bool first);

/* The SplitDelimiterBehavior stream of one step: segments come in order, matches flagged. */
typedef struct segs {
    enc *e;
    int k;
    const pre_step *st;
    const uint8_t *s;
    bool first;
    bool have, pend_match, prev_match;
    size_t ps, pe;
} segs;

static void seg_out(segs *g, size_t a, size_t b) {
    if (a < b && !g->e->oom) pre_run(g->e, g->k + 1, g->s + a, b - a, g->first && a == 0);
}

static void seg_flush(segs *g) {
    if (g->have) seg_out(g, g->ps, g->pe);
    g->have = false;
}

static void seg_push(segs *g, size_t a, size_t b, bool m) {
    m = m != g->st->invert;
    switch (g->st->behavior) {
    case SB_ISOLATED: seg_out(g, a, b); return;
    case SB_REMOVED:
        if (!m) seg_out(g, a, b);
        return;
    case SB_CONTIGUOUS:
        if (g->have && m == g->pend_match) {
            g->pe = b;
            return;
        }
        break;
    case SB_MERGED_PREV:
        if (m && !g->prev_match && g->have) {
            g->pe = b;
            g->prev_match = m;
            return;
        }
        g->prev_match = m;
        break;
    default: /* SB_MERGED_NEXT: a match joins the piece after it when that one is no match */
        if (g->have && g->pend_match && !m) {
            g->pe = b;
            g->pend_match = false;
            seg_flush(g);
            return;
        }
        break;
    }
    seg_flush(g);
    g->have = true;
    g->ps = a, g->pe = b, g->pend_match = m;
}

/* Decode s into e's code point buffer of step k: cp[i] starts at byte off[i]; off[count] = n. */
static size_t decode_piece(enc *e, int k, const uint8_t *s, size_t n) {
    step_buf *b = &e->sb[k];
    if (!grow(e, (void **)&b->cp, &b->cap_cp, n + 1, sizeof *b->cp) ||
        !grow(e, (void **)&b->off, &b->cap_off, n + 1, sizeof *b->off))
        return 0;
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        size_t l;
        b->off[m] = i;
        b->cp[m++] = utf8_cp_at(s, n, i, &l);
        i += l;
    }
    b->off[m] = n;
    return m;
}

static void split_regex(enc *e, segs *g, const uint8_t *s, size_t n) {
    size_t m = decode_piece(e, g->k, s, n), from = 0, prev = 0;
    const size_t *off = e->sb[g->k].off;
    const uint32_t *cp = e->sb[g->k].cp;
    bool llama = rx_mode_of(g->st->re) == RX_LLAMA, no_empty_at_from = false;
    while (from <= m && !e->oom) {
        size_t end;
        int64_t st = rx_search_ex(g->st->re, cp, m, from, no_empty_at_from, &end);
        if (st < 0) break;
        if ((size_t)st > prev) seg_push(g, off[prev], off[st], false);
        seg_push(g, off[st], off[end], true);
        prev = end;
        /* after an empty match: std::regex retries a non-empty one there, Oniguruma moves on */
        if (end == (size_t)st) {
            if (llama) from = end, no_empty_at_from = true;
            else from = end + 1;
        } else {
            from = end, no_empty_at_from = false;
        }
    }
    if (prev < m) seg_push(g, off[prev], n, false);
}

static void split_step(enc *e, segs *g, const uint8_t *s, size_t n) {
    const pre_step *st = g->st;
    if (st->kind == PS_SPLIT) {
        for (size_t i = 0; i < n && !e->oom;) {
            size_t j = pre_split_end((pre_split)st->split_kind, s, n, i);
            seg_out(g, i, j);
            i = j;
        }
    } else if (st->kind == PS_REGEX) {
        split_regex(e, g, s, n);
    } else if (st->kind == PS_CHARS) {
        size_t gap = 0, l;
        for (size_t i = 0; i < n; i += l) {
            if (!has_prop(st->prop, utf8_cp_at(s, n, i, &l))) continue;
            if (gap < i) seg_push(g, gap, i, false);
            seg_push(g, i, i + l, true);
            gap = i + l;
        }
        if (gap < n) seg_push(g, gap, n, false);
    } else { /* PS_LITERAL and Metaspace's split */
        size_t gap = 0, i = 0, L = st->lit_len;
        while (L && i + L <= n) {
            if (memcmp(s + i, st->lit, L) != 0) {
                i++;
                continue;
            }
            if (gap < i) seg_push(g, gap, i, false);
            seg_push(g, i, i + L, true);
            gap = i = i + L;
        }
        if (gap < n) seg_push(g, gap, n, false);
    }
    seg_flush(g);
}

/* Metaspace: every ' ' becomes the replacement, which is prepended as the scheme says; into the
 * step's text buffer. */
static const uint8_t *metaspace(enc *e, int k, const pre_step *st, const uint8_t *s, size_t *n, bool first) {
    step_buf *b = &e->sb[k];
    size_t cap = (*n + 1) * (st->lit_len > 1 ? st->lit_len : 1) + 1;
    if (!grow(e, (void **)&b->txt, &b->cap_txt, cap, 1)) return NULL;
    size_t o = 0;
    bool starts = *n >= st->lit_len && memcmp(s, st->lit, st->lit_len) == 0;
    bool lead_space = *n && s[0] == ' '; /* becomes the replacement itself */
    if (!starts && !lead_space && (st->prepend == MS_ALWAYS || (st->prepend == MS_FIRST && first)))
        memcpy(b->txt, st->lit, st->lit_len), o = st->lit_len;
    for (size_t i = 0; i < *n; i++) {
        if (s[i] == ' ') memcpy(b->txt + o, st->lit, st->lit_len), o += st->lit_len;
        else b->txt[o++] = s[i];
    }
    *n = o;
    return b->txt;
}

/* Pre-tokenizer step k on one piece; past the last step the piece is a word for the model. */
static void pre_run(enc *e, int k, const uint8_t *s, size_t n, bool first) {
    const lb_tokenizer *t = e->t;
    if (k == t->n_pre) {
        if (!t->n_pre && !t->bl_pre && t->pair_slots) cut_word(e, s, n);
        else encode_word(e, s, n);
        return;
    }
    const pre_step *st = &t->pre_steps[k];
    segs g = {.e = e, .k = k, .st = st, .s = s, .first = first};
    pre_step sub; /* the split a ByteLevel or Metaspace step runs */
    if (st->kind == PS_BYTELEVEL) {
        if (st->prefix_space && s[0] != ' ') {
            step_buf *b = &e->sb[k];
            if (!grow(e, (void **)&b->txt, &b->cap_txt, n + 1, 1)) return;
            b->txt[0] = ' ';
            memcpy(b->txt + 1, s, n);
            s = g.s = b->txt;
            n++;
        }
        if (!st->use_regex) {
            pre_run(e, k + 1, s, n, first);
            return;
        }
        sub = (pre_step){.kind = PS_SPLIT, .split_kind = SPLIT_GPT2};
        g.st = &sub;
        split_step(e, &g, s, n);
        return;
    }
    if (st->kind == PS_METASPACE) {
        if (!(s = metaspace(e, k, st, s, &n, first))) return;
        g.s = s;
        if (!st->split) {
            pre_run(e, k + 1, s, n, first);
            return;
        }
        sub = (pre_step){.kind = PS_LITERAL, .behavior = SB_MERGED_NEXT, .lit = st->lit, .lit_len = st->lit_len};
        g.st = &sub;
    }
    split_step(e, &g, s, n);
}

/* ---------------------------------------------------------------------------------------------- */
/* SentencePiece by scores (llama.cpp's llm_tokenizer_spm_session)                                 */

/* Max-heap order: higher score first, then the leftmost pair. */
static bool sbig_before(const sbig *a, const sbig *b) { return a->score > b->score || (a->score == b->score && a->left < b->left); }

static void sheap_push(enc *e, sbig b) {
    if (!grow(e, (void **)&e->sheap, &e->cap_sheap, e->n_sheap + 1, sizeof *e->sheap)) return;
    size_t i = e->n_sheap++;
    while (i > 0 && sbig_before(&b, &e->sheap[(i - 1) / 2])) {
        e->sheap[i] = e->sheap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->sheap[i] = b;
}

static sbig sheap_pop(enc *e) {
    sbig top = e->sheap[0], last = e->sheap[--e->n_sheap];
    size_t i = 0, n = e->n_sheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && sbig_before(&e->sheap[c + 1], &e->sheap[c])) c++;
        if (!sbig_before(&e->sheap[c], &last)) break;
        e->sheap[i] = e->sheap[c];
        i = c;
    }
    if (n) e->sheap[i] = last;
    return top;
}

static void spm_bigram(enc *e, const uint8_t *s, const ssym *sy, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    uint32_t size = sy[l].n + sy[r].n;
    int32_t id = tok_vocab_find(e->t, s + sy[l].off, size);
    if (id >= 0) sheap_push(e, (sbig){e->t->scores[id], l, r, size});
}

/* A final symbol: its token, else its bytes as <0xNN> tokens (or the byte itself as a token). */
static void spm_emit(enc *e, const uint8_t *s, size_t n) {
    const lb_tokenizer *t = e->t;
    int32_t id = tok_vocab_find(t, s, n);
    if (id >= 0) {
        push_id(e, id);
        return;
    }
    for (size_t k = 0; k < n; k++) {
        char name[7];
        snprintf(name, sizeof name, "<0x%02X>", s[k]);
        int32_t b = tok_vocab_find(t, name, 6);
        if (b < 0) b = tok_vocab_find(t, s + k, 1);
        if (b < 0) b = t->unk_id;
        if (b >= 0) push_id(e, b);
    }
}

/* One piece of raw text: the space prefix, spaces escaped, then merges by score. */
static void spm_piece(enc *e, const uint8_t *s0, size_t n0) {
    const lb_tokenizer *t = e->t;
    bool prefix = t->add_space_prefix && e->prev_special;
    e->prev_special = false;
    size_t spaces = prefix;
    for (size_t i = 0; i < n0; i++) spaces += s0[i] == ' ';
    if (!grow(e, (void **)&e->tmp, &e->cap_tmp, n0 + 2 * spaces + 1, 1)) return;
    uint8_t *s = e->tmp;
    size_t n = 0;
    if (prefix) memcpy(s, "\xE2\x96\x81", 3), n = 3;
    for (size_t i = 0; i < n0; i++) {
        if (s0[i] == ' ') memcpy(s + n, "\xE2\x96\x81", 3), n += 3;
        else s[n++] = s0[i];
    }
    if (!grow(e, (void **)&e->ssyms, &e->cap_ssyms, n + 1, sizeof *e->ssyms)) return; /* a symbol per char */
    ssym *sy = e->ssyms;
    int32_t m = 0;
    for (size_t i = 0; i < n; m++) {
        size_t l;
        utf8_cp_at(s, n, i, &l);
        sy[m] = (ssym){(uint32_t)i, (uint32_t)l, m - 1, i + l == n ? -1 : m + 1};
        i += l;
    }
    e->n_sheap = 0;
    for (int32_t i = 1; i < m; i++) spm_bigram(e, s, sy, i - 1, i);
    while (e->n_sheap && !e->oom) {
        sbig b = sheap_pop(e);
        ssym *l = &sy[b.left], *r = &sy[b.right];
        if (!l->n || !r->n || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sy[r->next].prev = b.left;
        spm_bigram(e, s, sy, l->prev, b.left);
        spm_bigram(e, s, sy, b.left, l->next);
    }
    for (int32_t i = 0; m && i != -1 && !e->oom; i = sy[i].next) spm_emit(e, s + sy[i].off, sy[i].n);
}

/* Pre-tokenize normalized text and run the model on each word. */
static void pretokenize(enc *e, const uint8_t *s, size_t n) {
    if (!n) return;
    if (e->t->model == LB_TOK_MODEL_SPM) spm_piece(e, s, n);
    else pre_run(e, 0, s, n, e->at_start && s == e->text);
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
        e->prev_special = true;
        done = stop;
    }
    if (done < n && !e->oom) fn(e, s + done, n - done);
}

static void normalized_piece(enc *e, const uint8_t *s, size_t n) {
    split_added(e, &e->t->norm_set, s, n, pretokenize);
}

static void raw_piece(enc *e, const uint8_t *s, size_t n) {
    e->at_start = s == e->input;
    if (!e->t->n_norm) {
        e->text = s;
        normalized_piece(e, s, n);
        return;
    }
    uint8_t *o;
    size_t ol;
    if (tok_apply_norm(e->t, s, n, &o, &ol)) {
        e->oom = true;
        return;
    }
    e->text = o;
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
    enc e = {.t = t, .input = s, .prev_special = true};
    if (len) split_added(&e, &t->raw_set, s, len, raw_piece);
    for (int k = 0; k < MAX_PRE_STEPS; k++) free(e.sb[k].cp), free(e.sb[k].off), free(e.sb[k].txt);
    free(e.ssyms);
    free(e.sheap);
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

