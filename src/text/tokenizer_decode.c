/*
 * tokenizer_decode.c - decoding: token strings through the decoder steps (ByteLevel, Replace,
 * ByteFallback, Fuse, Strip), then joined.
 *
 * Source: huggingface/tokenizers 0.2x decoders/ (byte_level.rs, byte_fallback.rs, fuse.rs,
 * strip.rs, and Replace from normalizers/replace.rs); checked against tests/golden/conformance/tokenizers.
 */
#include "tokenizer_impl.h"

#include "unicode.h"

#include <stdlib.h>
#include <string.h>

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
    if (l->len + more > l->cap || !l->buf) { /* always a buffer: SL_STR of an empty string must not offset NULL */
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
    if (l->oom || !sl_reserve(l, 0)) return;
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
        if (tok_byte_level_bytes(t, (const char *)SL_STR(in, i), SL_LEN(in, i), raw + n, &l)) n += l;
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
        if (i < in->n && tok_parse_byte_token((const char *)SL_STR(in, i), SL_LEN(in, i), &b)) {
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
