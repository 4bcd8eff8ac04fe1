/*
 * chat_value.c - the values a chat template computes with, and what Python makes of them: str() and
 * repr() (as jinja2 prints them), truthiness, equality, json.dumps (Hugging Face's tojson filter is
 * json.dumps(x, ensure_ascii=False, indent=..., sort_keys=...)), and UTF-8 code-point counting for
 * length and slicing.
 */
#include "chat_template.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ct_value *ct_fail(ct_ctx *c, const ct_node *at, lb_status s, const char *fmt, ...) {
    if (c->status) return NULL;
    char msg[LB_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *q = msg; *q; q++) /* one line, whatever names or messages the template holds */
        if ((unsigned char)*q < 0x20) *q = ' ';
    if (at) c->status = lb_err_set(c->err, s, "chat template line %d: %s", at->line, msg);
    else c->status = lb_err_set(c->err, s, "chat template: %s", msg);
    return NULL;
}

bool ct_failed(const ct_ctx *c) { return c->status != LB_OK; }

ct_value *ct_new(ct_ctx *c, ct_kind k) {
    ct_value *v = ct_alloc(c->arena, sizeof *v);
    if (!v) return ct_fail(c, NULL, LB_ERR_NOMEM, "out of memory");
    v->kind = k;
    return v;
}

ct_value *ct_undef(ct_ctx *c, const char *what) {
    ct_value *v = ct_new(c, CT_UNDEF);
    if (v) v->s = what;
    return v;
}

ct_value *ct_none(ct_ctx *c) { return ct_new(c, CT_NONE); }

ct_value *ct_bool(ct_ctx *c, bool b) {
    ct_value *v = ct_new(c, CT_BOOL);
    if (v) v->b = b;
    return v;
}

ct_value *ct_int(ct_ctx *c, int64_t i) {
    ct_value *v = ct_new(c, CT_INT);
    if (v) v->i = i;
    return v;
}

ct_value *ct_float(ct_ctx *c, double f) {
    ct_value *v = ct_new(c, CT_FLOAT);
    if (v) v->f = f;
    return v;
}

ct_value *ct_str(ct_ctx *c, const char *s, size_t n) {
    ct_value *v = ct_new(c, CT_STR);
    if (!v) return NULL;
    if (!(v->s = ct_strdup(c->arena, s, n))) return ct_fail(c, NULL, LB_ERR_NOMEM, "out of memory");
    v->n = n;
    return v;
}

ct_value *ct_list(ct_ctx *c, size_t cap) {
    ct_value *v = ct_new(c, CT_LIST);
    if (!v) return NULL;
    v->cap = cap ? cap : 4;
    if (!(v->items = ct_alloc(c->arena, v->cap * sizeof *v->items))) return ct_fail(c, NULL, LB_ERR_NOMEM, "out of memory");
    return v;
}

ct_value *ct_dict(ct_ctx *c, ct_kind k) {
    ct_value *v = ct_list(c, 4);
    if (!v) return NULL;
    v->kind = k;
    if (!(v->keys = ct_alloc(c->arena, v->cap * sizeof *v->keys))) return ct_fail(c, NULL, LB_ERR_NOMEM, "out of memory");
    return v;
}

static bool grow(ct_ctx *c, ct_value *v) {
    if (v->n < v->cap) return true;
    size_t cap = v->cap * 2;
    ct_value **items = ct_alloc(c->arena, cap * sizeof *items);
    ct_value **keys = v->keys ? ct_alloc(c->arena, cap * sizeof *keys) : NULL;
    if (!items || (v->keys && !keys)) return ct_fail(c, NULL, LB_ERR_NOMEM, "out of memory"), false;
    memcpy(items, v->items, v->n * sizeof *items);
    if (keys) memcpy(keys, v->keys, v->n * sizeof *keys);
    v->items = items;
    v->keys = keys;
    v->cap = cap;
    return true;
}

bool ct_list_push(ct_ctx *c, ct_value *list, ct_value *v) {
    if (!v || !grow(c, list)) return false;
    list->items[list->n++] = v;
    return true;
}

bool ct_dict_set(ct_ctx *c, ct_value *d, ct_value *key, ct_value *v) {
    if (!key || !v) return false;
    for (size_t i = 0; i < d->n; i++)
        if (ct_equal(d->keys[i], key)) {
            d->items[i] = v;
            return true;
        }
    if (!grow(c, d)) return false;
    d->keys[d->n] = key;
    d->items[d->n++] = v;
    return true;
}

ct_value *ct_dict_get(const ct_value *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->n; i++) {
        const ct_value *k = d->keys[i];
        if (k->kind == CT_STR && k->n == n && !memcmp(k->s, key, n)) return d->items[i];
    }
    return NULL;
}

ct_value *ct_from_json(ct_ctx *c, const json_value *j) {
    switch (json_type(j)) {
    case JSON_NULL: return ct_none(c);
    case JSON_FALSE: return ct_bool(c, false);
    case JSON_TRUE: return ct_bool(c, true);
    case JSON_NUMBER: {
        int64_t i;
        double f = 0;
        if (json_int_literal(j, &i)) return ct_int(c, i); /* 3 is an int, 3.0 a float, as in Python */
        json_num(j, &f);
        return ct_float(c, f);
    }
    case JSON_STRING: {
        size_t n;
        const char *s = json_str(j, &n);
        return ct_str(c, s, n);
    }
    case JSON_ARRAY: {
        ct_value *l = ct_list(c, json_len(j));
        for (size_t i = 0; l && i < json_len(j); i++)
            if (!ct_list_push(c, l, ct_from_json(c, json_at(j, i)))) return NULL;
        return l;
    }
    case JSON_OBJECT: {
        ct_value *d = ct_dict(c, CT_DICT);
        for (size_t i = 0; d && i < json_len(j); i++) {
            size_t n;
            const char *k = json_key_at(j, i, &n);
            if (!ct_dict_set(c, d, ct_str(c, k, n), ct_from_json(c, json_at(j, i)))) return NULL;
        }
        return d;
    }
    }
    return ct_none(c);
}

bool ct_truthy(const ct_value *v) {
    switch (v->kind) {
    case CT_UNDEF: case CT_NONE: return false;
    case CT_BOOL: return v->b;
    case CT_INT: return v->i != 0;
    case CT_FLOAT: return v->f != 0;
    case CT_LIST: return v->lazy || v->n != 0; /* a generator object is always true */
    case CT_STR: case CT_DICT: return v->n != 0;
    default: return true;
    }
}

static bool numeric(const ct_value *v) { return v->kind == CT_INT || v->kind == CT_FLOAT || v->kind == CT_BOOL; }
static double as_double(const ct_value *v) { return v->kind == CT_FLOAT ? v->f : v->kind == CT_INT ? (double)v->i : v->b; }

bool ct_equal(const ct_value *a, const ct_value *b) {
    if ((a->kind == CT_LIST && a->lazy) || (b->kind == CT_LIST && b->lazy)) return a == b;
    if (numeric(a) && numeric(b)) {
        if (a->kind != CT_FLOAT && b->kind != CT_FLOAT)
            return (a->kind == CT_INT ? a->i : a->b) == (b->kind == CT_INT ? b->i : b->b);
        return as_double(a) == as_double(b);
    }
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case CT_UNDEF: case CT_NONE: return true;
    case CT_STR: return a->n == b->n && !memcmp(a->s, b->s, a->n);
    case CT_LIST:
        if (a->n != b->n || a->b != b->b) return false; /* a tuple never equals a list */
        for (size_t i = 0; i < a->n; i++)
            if (!ct_equal(a->items[i], b->items[i])) return false;
        return true;
    case CT_DICT:
        if (a->n != b->n) return false;
        for (size_t i = 0; i < a->n; i++) {
            bool found = false;
            for (size_t k = 0; k < b->n && !found; k++)
                if (ct_equal(a->keys[i], b->keys[k])) {
                    if (!ct_equal(a->items[i], b->items[k])) return false;
                    found = true;
                }
            if (!found) return false;
        }
        return true;
    default: return a == b;
    }
}

const char *ct_kind_name(const ct_value *v) {
    if (v->kind == CT_LIST && v->lazy) return "generator";
    if (v->kind == CT_LIST && v->b) return "tuple";
    static const char *const names[] = {"Undefined", "NoneType", "bool", "int", "float", "str", "list", "dict", "Namespace", "function"};
    return names[v->kind];
}

size_t ct_utf8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

size_t ct_utf8_offset(const char *s, size_t n, size_t i) {
    size_t k = 0, o = 0;
    for (; o < n; o++)
        if (((unsigned char)s[o] & 0xC0) != 0x80 && k++ == i) return o;
    return n;
}

/* ---- text ---- */

void ct_buf_put(ct_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1) {
            if (cap > CT_MAX_OUTPUT * 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void put_cstr(ct_buf *b, const char *s) { ct_buf_put(b, s, strlen(s)); }

/* Python's repr(float): the shortest digits that read back, fixed notation for 1e-4 <= |x| < 1e16. */
static void put_float(ct_buf *b, double f, bool json) {
    char buf[64];
    if (isnan(f)) { put_cstr(b, json ? "NaN" : "nan"); return; }
    if (isinf(f)) { put_cstr(b, f < 0 ? (json ? "-Infinity" : "-inf") : (json ? "Infinity" : "inf")); return; }
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f) break;
    }
    int exp = atoi(strchr(buf, 'e') + 1);
    if (exp >= -4 && exp < 16) {
        int dec = prec - 1 - exp;
        snprintf(buf, sizeof buf, "%.*f", dec > 0 ? dec : 0, f);
        put_cstr(b, buf);
        if (dec <= 0) put_cstr(b, ".0");
        return;
    }
    put_cstr(b, buf);
}

static void put_int(ct_buf *b, int64_t i) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)i);
    put_cstr(b, buf);
}

static void put_repr_str(ct_buf *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    ct_buf_put(b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char e[8];
        if (ch == '\\' || ch == (unsigned char)q) { e[0] = '\\'; e[1] = (char)ch; ct_buf_put(b, e, 2); }
        else if (ch == '\n') put_cstr(b, "\\n");
        else if (ch == '\r') put_cstr(b, "\\r");
        else if (ch == '\t') put_cstr(b, "\\t");
        else if (ch < 0x20 || ch == 0x7f) { snprintf(e, sizeof e, "\\x%02x", ch); put_cstr(b, e); }
        else ct_buf_put(b, (const char *)&ch, 1);
    }
    ct_buf_put(b, &q, 1);
}

#define MAX_PRINT_DEPTH 64 /* a namespace may hold itself: print "..." below this depth */

static void put_str(ct_buf *b, const ct_value *v, int depth);

static void put_repr(ct_buf *b, const ct_value *v, int depth) {
    if (v->kind == CT_STR) put_repr_str(b, v->s, v->n);
    else put_str(b, v, depth);
}

void ct_buf_repr(ct_buf *b, const ct_value *v) { put_repr(b, v, 0); }
void ct_buf_str(ct_buf *b, const ct_value *v) { put_str(b, v, 0); }

static void put_str(ct_buf *b, const ct_value *v, int depth) {
    if (depth > MAX_PRINT_DEPTH) {
        put_cstr(b, "...");
        return;
    }
    switch (v->kind) {
    case CT_UNDEF: return;
    case CT_NONE: put_cstr(b, "None"); return;
    case CT_BOOL: put_cstr(b, v->b ? "True" : "False"); return;
    case CT_INT: put_int(b, v->i); return;
    case CT_FLOAT: put_float(b, v->f, false); return;
    case CT_STR: ct_buf_put(b, v->s, v->n); return;
    case CT_LIST:
        if (v->lazy) { /* jinja2 prints the object with its address; no render can match that */
            put_cstr(b, "<generator object>");
            return;
        }
        put_cstr(b, v->b ? "(" : "[");
        for (size_t i = 0; i < v->n; i++) {
            if (i) put_cstr(b, ", ");
            put_repr(b, v->items[i], depth + 1);
        }
        put_cstr(b, v->b ? (v->n == 1 ? ",)" : ")") : "]");
        return;
    case CT_DICT: case CT_NS:
        put_cstr(b, v->kind == CT_NS ? "<Namespace {" : "{");
        for (size_t i = 0; i < v->n; i++) {
            if (i) put_cstr(b, ", ");
            put_repr(b, v->keys[i], depth + 1);
            put_cstr(b, ": ");
            put_repr(b, v->items[i], depth + 1);
        }
        put_cstr(b, v->kind == CT_NS ? "}>" : "}");
        return;
    case CT_FUNC: put_cstr(b, "<function "); put_cstr(b, v->fname ? v->fname : "?"); put_cstr(b, ">"); return;
    }
}

ct_value *ct_to_str(ct_ctx *c, const ct_value *v) {
    if (v->kind == CT_STR) return (ct_value *)v;
    ct_buf b = {0};
    ct_buf_str(&b, v);
    if (b.oom) {
        free(b.p);
        return ct_fail(c, NULL, LB_ERR_NOMEM, "out of memory");
    }
    ct_value *r = ct_str(c, b.p ? b.p : "", b.n);
    free(b.p);
    return r;
}

/* ---- json.dumps ---- */

/* Non-ASCII as \uXXXX (UTF-16, surrogate pairs above U+FFFF), as json.dumps(ensure_ascii=True). */
static size_t put_json_ascii(ct_buf *b, const char *s, size_t n, size_t i) {
    unsigned char c0 = (unsigned char)s[i];
    size_t len = c0 >= 0xF0 ? 4 : c0 >= 0xE0 ? 3 : c0 >= 0xC0 ? 2 : 1;
    if (i + len > n) len = 1;
    uint32_t cp = len == 1 ? 0xFFFD : c0 & (0x7F >> len);
    for (size_t k = 1; k < len; k++) cp = cp << 6 | ((unsigned char)s[i + k] & 0x3F);
    char e[16];
    if (cp >= 0x10000) {
        cp -= 0x10000;
        snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
    } else {
        snprintf(e, sizeof e, "\\u%04x", cp);
    }
    put_cstr(b, e);
    return len;
}

static void put_json_str(ct_buf *b, const char *s, size_t n, bool ascii) {
    put_cstr(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char e[8];
        if (ascii && ch >= 0x80) {
            i += put_json_ascii(b, s, n, i) - 1;
            continue;
        }
        switch (ch) {
        case '"': put_cstr(b, "\\\""); break;
        case '\\': put_cstr(b, "\\\\"); break;
        case '\n': put_cstr(b, "\\n"); break;
        case '\r': put_cstr(b, "\\r"); break;
        case '\t': put_cstr(b, "\\t"); break;
        case '\b': put_cstr(b, "\\b"); break;
        case '\f': put_cstr(b, "\\f"); break;
        default:
            if (ch < 0x20) {
                snprintf(e, sizeof e, "\\u%04x", ch);
                put_cstr(b, e);
            } else {
                ct_buf_put(b, (const char *)&ch, 1);
            }
        }
    }
    put_cstr(b, "\"");
}

static void json_newline(ct_buf *b, int indent, int depth) {
    put_cstr(b, "\n");
    for (int i = 0; i < indent * depth; i++) put_cstr(b, " ");
}

/* Key order of a dict for json.dumps: insertion order, or sorted by key text when sort_keys. */
static void key_order(const ct_value *v, size_t *ord, bool sort) {
    for (size_t i = 0; i < v->n; i++) ord[i] = i;
    if (!sort) return;
    for (size_t i = 1; i < v->n; i++) /* insertion sort: dicts in templates are small */
        for (size_t k = i; k > 0; k--) {
            const ct_value *a = v->keys[ord[k - 1]], *bb = v->keys[ord[k]];
            size_t m = a->n < bb->n ? a->n : bb->n;
            int cmp = memcmp(a->s, bb->s, m);
            if (cmp < 0 || (cmp == 0 && a->n <= bb->n)) break;
            size_t t = ord[k];
            ord[k] = ord[k - 1];
            ord[k - 1] = t;
        }
}

bool ct_buf_json(ct_ctx *c, const ct_node *at, ct_buf *b, const ct_value *v, int indent, int flags, int depth) {
    bool sort = flags & CT_JSON_SORT, ascii = flags & CT_JSON_ASCII;
    if (depth > 100) return ct_fail(c, at, LB_ERR_UNSUPPORTED, "tojson: value nested too deeply"), false;
    switch (v->kind) {
    case CT_NONE: put_cstr(b, "null"); return true;
    case CT_BOOL: put_cstr(b, v->b ? "true" : "false"); return true;
    case CT_INT: put_int(b, v->i); return true;
    case CT_FLOAT: put_float(b, v->f, true); return true;
    case CT_STR: put_json_str(b, v->s, v->n, ascii); return true;
    case CT_LIST:
        if (v->lazy) return ct_fail(c, at, LB_ERR_ARG, "tojson: Object of type generator is not JSON serializable"), false;
        if (!v->n) { put_cstr(b, "[]"); return true; }
        put_cstr(b, "[");
        for (size_t i = 0; i < v->n; i++) {
            if (i) put_cstr(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_newline(b, indent, depth + 1);
            if (!ct_buf_json(c, at, b, v->items[i], indent, flags, depth + 1)) return false;
        }
        if (indent >= 0) json_newline(b, indent, depth);
        put_cstr(b, "]");
        return true;
    case CT_DICT: {
        if (!v->n) { put_cstr(b, "{}"); return true; }
        size_t *ord = ct_alloc(c->arena, v->n * sizeof *ord);
        if (!ord) return ct_fail(c, at, LB_ERR_NOMEM, "out of memory"), false;
        for (size_t i = 0; i < v->n; i++)
            if (v->keys[i]->kind != CT_STR)
                return ct_fail(c, at, LB_ERR_UNSUPPORTED, "tojson: a dict key is a %s, not a string", ct_kind_name(v->keys[i])), false;
        key_order(v, ord, sort);
        put_cstr(b, "{");
        for (size_t i = 0; i < v->n; i++) {
            if (i) put_cstr(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_newline(b, indent, depth + 1);
            put_json_str(b, v->keys[ord[i]]->s, v->keys[ord[i]]->n, ascii);
            put_cstr(b, ": ");
            if (!ct_buf_json(c, at, b, v->items[ord[i]], indent, flags, depth + 1)) return false;
        }
        if (indent >= 0) json_newline(b, indent, depth);
        put_cstr(b, "}");
        return true;
    }
    default:
        return ct_fail(c, at, LB_ERR_ARG, "tojson: Object of type %s is not JSON serializable", ct_kind_name(v)), false;
    }
}
