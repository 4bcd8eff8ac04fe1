/*
 * json.c - strict RFC 8259 JSON parser for untrusted input (see json.h).
 *
 * Values are built on a growable stack while a container is open, then copied into an arena as one
 * contiguous child array when it closes, so the finished tree is a few large allocations.
 */
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct json_value {
    json_kind kind;
    bool is_int;         /* number with an integral value that fits int64 */
    bool int_literal;    /* number written as an integer (no fraction or exponent) that fits int64 */
    size_t n;            /* string length / child count */
    const char *key;     /* member key when inside an object */
    size_t key_len;
    union {
        double num;
        const char *str;
        json_value *items;
    } u;
    int64_t ival;
};

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    max_align_t data[];
} arena_chunk;

struct json_doc {
    arena_chunk *chunks;
    json_value root;
};

typedef struct parser {
    const char *p, *begin, *end;
    json_doc *doc;
    json_value *stack;
    size_t sp, stack_cap;
    char *sbuf; /* scratch for decoding strings */
    size_t sbuf_cap;
    lb_error *err;
    lb_status st;
} parser;

#define ARENA_CHUNK (1u << 20)

static void *arena_alloc(json_doc *d, size_t n) {
    n = (n + 15) & ~(size_t)15;
    arena_chunk *c = d->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = d->chunks;
        d->chunks = c;
    }
    void *r = (char *)c->data + c->used;
    c->used += n;
    return r;
}

static void where(const parser *ps, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (const char *q = ps->begin; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static bool fail(parser *ps, lb_status st, const char *what) {
    if (ps->st == LB_OK) {
        int line, col;
        where(ps, &line, &col);
        ps->st = lb_err_set(ps->err, st, "line %d, column %d: %s", line, col, what);
    }
    return false;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static bool push(parser *ps, const json_value *v) {
    if (ps->sp == ps->stack_cap) {
        size_t cap = ps->stack_cap ? ps->stack_cap * 2 : 256;
        json_value *s = realloc(ps->stack, cap * sizeof *s);
        if (!s) return fail(ps, LB_ERR_NOMEM, "out of memory");
        ps->stack = s;
        ps->stack_cap = cap;
    }
    ps->stack[ps->sp++] = *v;
    return true;
}

static bool sbuf_reserve(parser *ps, size_t n) {
    if (n <= ps->sbuf_cap) return true;
    size_t cap = ps->sbuf_cap ? ps->sbuf_cap : 256;
    while (cap < n) cap *= 2;
    char *b = realloc(ps->sbuf, cap);
    if (!b) return fail(ps, LB_ERR_NOMEM, "out of memory");
    ps->sbuf = b;
    ps->sbuf_cap = cap;
    return true;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *ps, uint32_t *out) {
    if (ps->end - ps->p < 4) return fail(ps, LB_ERR_FORMAT, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(ps->p[i]);
        if (h < 0) return fail(ps, LB_ERR_FORMAT, "invalid \\u escape");
        v = v * 16 + (uint32_t)h;
    }
    ps->p += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

size_t lb_utf8_valid_prefix(const void *p, size_t n) {
    const unsigned char *s = p;
    size_t i = 0;
    while (i < n) {
        size_t l = utf8_valid_len(s + i, n - i);
        if (l == 0) break;
        i += l;
    }
    return i;
}

/* Parse a string at ps->p (on the opening quote); result copied into the arena. */
static bool parse_string(parser *ps, const char **out, size_t *out_len) {
    ps->p++;
    size_t n = 0;
    for (;;) {
        if (ps->p >= ps->end) return fail(ps, LB_ERR_FORMAT, "unterminated string");
        unsigned char c = (unsigned char)*ps->p;
        if (!sbuf_reserve(ps, n + 8)) return false;
        if (c == '"') { ps->p++; break; }
        if (c < 0x20) return fail(ps, LB_ERR_FORMAT, "control character in string");
        if (c == '\\') {
            if (ps->end - ps->p < 2) return fail(ps, LB_ERR_FORMAT, "truncated escape");
            char e = ps->p[1];
            ps->p += 2;
            switch (e) {
            case '"': ps->sbuf[n++] = '"'; break;
            case '\\': ps->sbuf[n++] = '\\'; break;
            case '/': ps->sbuf[n++] = '/'; break;
            case 'b': ps->sbuf[n++] = '\b'; break;
            case 'f': ps->sbuf[n++] = '\f'; break;
            case 'n': ps->sbuf[n++] = '\n'; break;
            case 'r': ps->sbuf[n++] = '\r'; break;
            case 't': ps->sbuf[n++] = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (!read_hex4(ps, &cp)) return false;
                if (cp >= 0xdc00 && cp <= 0xdfff) return fail(ps, LB_ERR_FORMAT, "lone low surrogate in \\u escape");
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    uint32_t lo;
                    if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
                        return fail(ps, LB_ERR_FORMAT, "lone high surrogate in \\u escape");
                    ps->p += 2;
                    if (!read_hex4(ps, &lo)) return false;
                    if (lo < 0xdc00 || lo > 0xdfff) return fail(ps, LB_ERR_FORMAT, "invalid surrogate pair");
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                n += put_utf8(ps->sbuf + n, cp);
                break;
            }
            default: return fail(ps, LB_ERR_FORMAT, "invalid escape");
            }
            continue;
        }
        size_t l = utf8_valid_len((const unsigned char *)ps->p, (size_t)(ps->end - ps->p));
        if (l == 0) return fail(ps, LB_ERR_FORMAT, "invalid UTF-8 in string");
        memcpy(ps->sbuf + n, ps->p, l);
        n += l;
        ps->p += l;
    }
    char *s = arena_alloc(ps->doc, n + 1);
    if (!s) return fail(ps, LB_ERR_NOMEM, "out of memory");
    if (n) memcpy(s, ps->sbuf, n);
    s[n] = 0;
    *out = s;
    *out_len = n;
    return true;
}

static bool parse_number(parser *ps, json_value *v) {
    const char *s = ps->p;
    const char *q = s;
    bool integral = true;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end) return fail(ps, LB_ERR_FORMAT, "invalid number");
    if (*q == '0') {
        q++;
    } else if (*q >= '1' && *q <= '9') {
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    } else {
        return fail(ps, LB_ERR_FORMAT, "invalid number");
    }
    if (q < ps->end && *q == '.') {
        integral = false;
        q++;
        if (q >= ps->end || *q < '0' || *q > '9') return fail(ps, LB_ERR_FORMAT, "invalid number");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        integral = false;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || *q < '0' || *q > '9') return fail(ps, LB_ERR_FORMAT, "invalid number");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    size_t len = (size_t)(q - s);
    char tmp[64];
    char *buf = tmp;
    if (len >= sizeof tmp) {
        if (!sbuf_reserve(ps, len + 1)) return false;
        buf = ps->sbuf;
    }
    memcpy(buf, s, len);
    buf[len] = 0;
    v->kind = JSON_NUMBER;
    v->u.num = strtod(buf, NULL);
    v->is_int = v->int_literal = false;
    if (integral) {
        /* exact int64 parse */
        const char *d = buf;
        bool neg = *d == '-';
        if (neg) d++;
        uint64_t acc = 0;
        bool ok = true;
        for (; *d; d++) {
            unsigned dig = (unsigned)(*d - '0');
            if (acc > (UINT64_MAX - dig) / 10) { ok = false; break; }
            acc = acc * 10 + dig;
        }
        if (ok && (neg ? acc <= (uint64_t)INT64_MAX + 1 : acc <= (uint64_t)INT64_MAX)) {
            v->is_int = v->int_literal = true;
            v->ival = neg ? (int64_t)(0 - acc) : (int64_t)acc;
        }
    } else if (isfinite(v->u.num) && v->u.num == floor(v->u.num) && fabs(v->u.num) < 9.0e18) {
        v->is_int = true;
        v->ival = (int64_t)v->u.num;
    }
    ps->p = q;
    return true;
}

static bool parse_value(parser *ps, json_value *v, int depth);

static bool parse_container(parser *ps, json_value *v, int depth, bool is_obj) {
    if (depth >= JSON_MAX_DEPTH) return fail(ps, LB_ERR_FORMAT, "nesting too deep");
    char close = is_obj ? '}' : ']';
    ps->p++;
    size_t base = ps->sp;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
    } else {
        for (;;) {
            json_value child;
            memset(&child, 0, sizeof child);
            skip_ws(ps);
            if (is_obj) {
                if (ps->p >= ps->end || *ps->p != '"') return fail(ps, LB_ERR_FORMAT, "expected a string key");
                if (!parse_string(ps, &child.key, &child.key_len)) return false;
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') return fail(ps, LB_ERR_FORMAT, "expected ':'");
                ps->p++;
                skip_ws(ps);
            }
            const char *key = child.key;
            size_t key_len = child.key_len;
            if (!parse_value(ps, &child, depth + 1)) return false;
            child.key = key;
            child.key_len = key_len;
            if (!push(ps, &child)) return false;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
            if (ps->p < ps->end && *ps->p == close) { ps->p++; break; }
            return fail(ps, LB_ERR_FORMAT, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    size_t n = ps->sp - base;
    v->kind = is_obj ? JSON_OBJECT : JSON_ARRAY;
    v->n = n;
    v->u.items = NULL;
    if (n) {
        size_t bytes;
        if (!lb_mul_size(n, sizeof(json_value), &bytes)) return fail(ps, LB_ERR_NOMEM, "out of memory");
        v->u.items = arena_alloc(ps->doc, bytes);
        if (!v->u.items) return fail(ps, LB_ERR_NOMEM, "out of memory");
        memcpy(v->u.items, ps->stack + base, bytes);
    }
    ps->sp = base;
    return true;
}

static bool match_lit(parser *ps, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0) return fail(ps, LB_ERR_FORMAT, "invalid literal");
    ps->p += n;
    return true;
}

static bool parse_value(parser *ps, json_value *v, int depth) {
    skip_ws(ps);
    if (ps->p >= ps->end) return fail(ps, LB_ERR_FORMAT, "unexpected end of input");
    switch (*ps->p) {
    case '{': return parse_container(ps, v, depth, true);
    case '[': return parse_container(ps, v, depth, false);
    case '"': {
        const char *s;
        size_t n;
        if (!parse_string(ps, &s, &n)) return false;
        v->kind = JSON_STRING;
        v->u.str = s;
        v->n = n;
        return true;
    }
    case 't': v->kind = JSON_TRUE; return match_lit(ps, "true");
    case 'f': v->kind = JSON_FALSE; return match_lit(ps, "false");
    case 'n': v->kind = JSON_NULL; return match_lit(ps, "null");
    default: return parse_number(ps, v);
    }
}

lb_status json_parse(const char *text, size_t len, json_doc **out, lb_error *err) {
    json_doc *d = calloc(1, sizeof *d);
    if (!d) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    parser ps = {.p = text, .begin = text, .end = text + len, .doc = d, .err = err, .st = LB_OK};
    bool ok = parse_value(&ps, &d->root, 0);
    if (ok) {
        skip_ws(&ps);
        if (ps.p != ps.end) ok = fail(&ps, LB_ERR_FORMAT, "trailing characters after the JSON value");
    }
    free(ps.stack);
    free(ps.sbuf);
    if (!ok) {
        json_free(d);
        return ps.st;
    }
    *out = d;
    return LB_OK;
}

void json_free(json_doc *d) {
    if (!d) return;
    arena_chunk *c = d->chunks;
    while (c) {
        arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    free(d);
}

const json_value *json_root(const json_doc *d) { return d ? &d->root : NULL; }
json_kind json_type(const json_value *v) { return v ? v->kind : JSON_NULL; }

size_t json_len(const json_value *v) {
    return v && (v->kind == JSON_ARRAY || v->kind == JSON_OBJECT) ? v->n : 0;
}

const json_value *json_at(const json_value *v, size_t i) {
    return i < json_len(v) ? &v->u.items[i] : NULL;
}

const char *json_key_at(const json_value *v, size_t i, size_t *len) {
    if (!v || v->kind != JSON_OBJECT || i >= v->n) return NULL;
    if (len) *len = v->u.items[i].key_len;
    return v->u.items[i].key;
}

const json_value *json_get(const json_value *v, const char *key) {
    if (!v || v->kind != JSON_OBJECT) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < v->n; i++) {
        const json_value *c = &v->u.items[i];
        if (c->key_len == kl && memcmp(c->key, key, kl) == 0) return c;
    }
    return NULL;
}

const char *json_str(const json_value *v, size_t *len) {
    if (!v || v->kind != JSON_STRING) return NULL;
    if (len) *len = v->n;
    return v->u.str;
}

bool json_num(const json_value *v, double *out) {
    if (!v || v->kind != JSON_NUMBER) return false;
    *out = v->u.num;
    return true;
}

bool json_int(const json_value *v, int64_t *out) {
    if (!v || v->kind != JSON_NUMBER || !v->is_int) return false;
    *out = v->ival;
    return true;
}

bool json_int_literal(const json_value *v, int64_t *out) {
    if (!v || v->kind != JSON_NUMBER || !v->int_literal) return false;
    *out = v->ival;
    return true;
}

bool json_bool(const json_value *v, bool *out) {
    if (!v || (v->kind != JSON_TRUE && v->kind != JSON_FALSE)) return false;
    *out = v->kind == JSON_TRUE;
    return true;
}

bool json_write_str(FILE *f, const char *s, size_t n) {
    bool ok = fputc('"', f) != EOF;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') ok = fprintf(f, "\\%c", c) > 0;
        else if (c == '\n') ok = fputs("\\n", f) >= 0;
        else if (c == '\t') ok = fputs("\\t", f) >= 0;
        else if (c == '\r') ok = fputs("\\r", f) >= 0;
        else if (c < 0x20) ok = fprintf(f, "\\u%04x", c) > 0;
        else ok = fputc(c, f) != EOF;
    }
    return ok && fputc('"', f) != EOF;
}
