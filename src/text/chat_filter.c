/*
 * chat_filter.c - the filters, tests, methods and globals chat templates call, with the behaviour of
 * jinja2's built-ins (jinja2/filters.py, jinja2/tests.py, jinja2/defaults.py), Python's str and dict
 * methods, and the globals Hugging Face adds (raise_exception, strftime_now; tojson as json.dumps with
 * ensure_ascii=False). Case mapping and whitespace stripping cover ASCII only.
 */
#include "chat_template.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Argument i (positional) or `name` (keyword); NULL when not given. */
static ct_value *arg(const ct_args *a, int i, const char *name) {
    if (i >= 0 && i < a->n_pos) return a->pos[i];
    for (int k = 0; name && k < a->n_kw; k++)
        if (!strcmp(a->kw_names[k], name)) return a->kw[k];
    return NULL;
}

static ct_value *want_str(ct_ctx *c, const ct_node *at, const char *what, ct_value *v) {
    if (v && v->kind == CT_STR) return v;
    return ct_fail(c, at, LB_ERR_ARG, "%s expects a string, got %s", what, v ? ct_kind_name(v) : "nothing");
}

/* The code point at byte i (invalid UTF-8: the byte alone, as a non-character) and its length. */
static size_t cp_at(const char *s, size_t n, size_t i, uint32_t *cp) {
    unsigned char c0 = (unsigned char)s[i];
    size_t len = c0 < 0x80 ? 1 : c0 >= 0xF0 ? 4 : c0 >= 0xE0 ? 3 : c0 >= 0xC0 ? 2 : 0;
    if (len == 0 || i + len > n) {
        *cp = 0xFFFFFFFFu;
        return 1;
    }
    uint32_t v = len == 1 ? c0 : c0 & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
        if (((unsigned char)s[i + k] & 0xC0) != 0x80) {
            *cp = 0xFFFFFFFFu;
            return 1;
        }
        v = v << 6 | ((unsigned char)s[i + k] & 0x3F);
    }
    *cp = v;
    return len;
}

/* The code point ending at byte `end` (> start) and its length. */
static size_t cp_before(const char *s, size_t start, size_t end, uint32_t *cp) {
    size_t i = end - 1;
    while (i > start && end - i < 4 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    size_t len = cp_at(s, end, i, cp);
    if (i + len != end) { /* not a whole character: the last byte alone */
        *cp = 0xFFFFFFFFu;
        return 1;
    }
    return len;
}

/* Python's str.isspace() (what strip() and split() remove). */
static bool py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}


static bool in_set(uint32_t cp, const ct_value *chars) {
    if (!chars || chars->kind != CT_STR) return py_space(cp);
    for (size_t i = 0; i < chars->n;) {
        uint32_t c;
        i += cp_at(chars->s, chars->n, i, &c);
        if (c == cp) return true;
    }
    return false;
}

/* Python's strip / lstrip / rstrip (which: 3 both, 1 left, 2 right), chars a string or whitespace. */
static ct_value *strip(ct_ctx *c, const ct_value *s, const ct_value *chars, int which) {
    size_t a = 0, b = s->n;
    uint32_t cp;
    if (which & 1)
        for (size_t len; a < b && (len = cp_at(s->s, b, a, &cp)) && in_set(cp, chars);) a += len;
    if (which & 2)
        for (size_t len; b > a && (len = cp_before(s->s, a, b, &cp)) && in_set(cp, chars);) b -= len;
    return ct_str(c, s->s + a, b - a);
}

/* Whitespace run (Python's definition) starting at i: its byte length. */
static size_t space_run(const char *s, size_t n, size_t i) {
    size_t j = i;
    uint32_t cp;
    for (size_t len; j < n && (len = cp_at(s, n, j, &cp)) && py_space(cp);) j += len;
    return j - i;
}

/* lower 1, upper 2, capitalize 3, title 4 (ASCII). */
static ct_value *recase(ct_ctx *c, const ct_value *s, int how) {
    ct_value *r = ct_str(c, s->s, s->n);
    if (!r) return NULL;
    char *p = (char *)r->s;
    bool start = true;
    for (size_t i = 0; i < r->n; i++) {
        char ch = p[i];
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        bool up = how == 2 || ((how == 3 && i == 0) || (how == 4 && start));
        if (up && ch >= 'a' && ch <= 'z') p[i] = (char)(ch - 32);
        if (!up && ch >= 'A' && ch <= 'Z') p[i] = (char)(ch + 32);
        start = !alpha;
    }
    return r;
}

static ct_value *split(ct_ctx *c, const ct_node *at, const ct_value *s, const ct_value *sep, int64_t maxsplit) {
    ct_value *l = ct_list(c, 4);
    size_t i = 0, n = s->n;
    if (!l) return NULL;
    if (!sep || sep->kind == CT_NONE) { /* runs of whitespace, none at the ends */
        for (;;) {
            i += space_run(s->s, n, i);
            if (i == n) return l;
            size_t j = i;
            uint32_t cp;
            if (maxsplit >= 0 && (int64_t)l->n >= maxsplit) /* the rest, as it is */
                j = n;
            else
                for (size_t len; j < n && (len = cp_at(s->s, n, j, &cp)) && !py_space(cp);) j += len;
            if (!ct_list_push(c, l, ct_str(c, s->s + i, j - i))) return NULL;
            i = j;
        }
    }
    if (sep->kind != CT_STR) return want_str(c, at, "split()", (ct_value *)sep);
    if (!sep->n) return ct_fail(c, at, LB_ERR_ARG, "split(): empty separator");
    for (;;) {
        size_t j = i;
        bool found = false;
        if (maxsplit < 0 || (int64_t)l->n < maxsplit)
            for (; j + sep->n <= n; j++)
                if (!memcmp(s->s + j, sep->s, sep->n)) {
                    found = true;
                    break;
                }
        if (!found) j = n;
        if (!ct_list_push(c, l, ct_str(c, s->s + i, j - i))) return NULL;
        if (!found) return l;
        i = j + sep->n;
    }
}

static ct_value *replace(ct_ctx *c, const ct_node *at, const ct_value *s, const ct_args *a) {
    ct_value *old = arg(a, 0, "old"), *new = arg(a, 1, "new"), *cnt = arg(a, 2, "count");
    if (!want_str(c, at, "replace()", old) || !want_str(c, at, "replace()", new)) return NULL;
    int64_t limit = cnt && cnt->kind == CT_INT ? cnt->i : -1;
    ct_buf b = {0};
    size_t i = 0;
    int64_t done = 0;
    while (i <= s->n) {
        bool hit = (limit < 0 || done < limit) && i + old->n <= s->n && !memcmp(s->s + i, old->s, old->n);
        if (hit) {
            ct_buf_put(&b, new->s, new->n);
            done++;
            if (!old->n) {
                if (i < s->n) ct_buf_put(&b, s->s + i, 1);
                i++;
            } else {
                i += old->n;
            }
        } else {
            if (i < s->n) ct_buf_put(&b, s->s + i, 1);
            i++;
        }
        if (b.n > CT_MAX_OUTPUT) b.oom = true;
    }
    ct_value *r = b.oom ? ct_fail(c, at, LB_ERR_NOMEM, "replace(): result too long") : ct_str(c, b.p ? b.p : "", b.n);
    free(b.p);
    return r;
}

/* Python's str.format with plain fields only: {}, {0}, {name}, and {{ }} escapes. */
static ct_value *format(ct_ctx *c, const ct_node *at, const ct_value *s, const ct_args *a) {
    ct_buf b = {0};
    int auto_idx = 0;
    for (size_t i = 0; i < s->n && !b.oom; i++) {
        char ch = s->s[i];
        if ((ch == '{' || ch == '}') && i + 1 < s->n && s->s[i + 1] == ch) {
            ct_buf_put(&b, &ch, 1);
            i++;
            continue;
        }
        if (ch == '}') { free(b.p); return ct_fail(c, at, LB_ERR_ARG, "format(): single '}' in the format string"); }
        if (ch != '{') { ct_buf_put(&b, &ch, 1); continue; }
        size_t j = i + 1;
        while (j < s->n && s->s[j] != '}') j++;
        if (j == s->n) { free(b.p); return ct_fail(c, at, LB_ERR_ARG, "format(): single '{' in the format string"); }
        const char *f = s->s + i + 1;
        size_t fl = j - i - 1;
        ct_value *v = NULL;
        if (memchr(f, ':', fl) || memchr(f, '!', fl) || memchr(f, '.', fl) || memchr(f, '[', fl)) {
            free(b.p);
            return ct_fail(c, at, LB_ERR_UNSUPPORTED, "format(): only plain {} / {N} / {name} fields are supported");
        }
        if (fl == 0) v = arg(a, auto_idx++, NULL);
        else if (f[0] >= '0' && f[0] <= '9') v = arg(a, atoi(f), NULL);
        else
            for (int k = 0; k < a->n_kw && !v; k++)
                if (strlen(a->kw_names[k]) == fl && !memcmp(a->kw_names[k], f, fl)) v = a->kw[k];
        if (!v) { free(b.p); return ct_fail(c, at, LB_ERR_ARG, "format(): no argument for field {%.*s}", (int)fl, f); }
        ct_buf_str(&b, v);
        i = j;
    }
    ct_value *r = b.oom ? ct_fail(c, at, LB_ERR_NOMEM, "out of memory") : ct_str(c, b.p ? b.p : "", b.n);
    free(b.p);
    return r;
}

static bool affix(const ct_value *s, const ct_value *p, bool end) {
    if (p->kind != CT_STR || p->n > s->n) return false;
    return !memcmp(s->s + (end ? s->n - p->n : 0), p->s, p->n);
}

/* ---- methods ---- */

static ct_value *m_str(ct_ctx *c, const ct_node *at, const ct_value *f, const ct_args *a) {
    const ct_value *self = f->self;
    const char *name = f->fname;
    if (!strcmp(name, "strip")) return strip(c, self, arg(a, 0, "chars"), 3);
    if (!strcmp(name, "lstrip")) return strip(c, self, arg(a, 0, "chars"), 1);
    if (!strcmp(name, "rstrip")) return strip(c, self, arg(a, 0, "chars"), 2);
    if (!strcmp(name, "lower")) return recase(c, self, 1);
    if (!strcmp(name, "upper")) return recase(c, self, 2);
    if (!strcmp(name, "capitalize")) return recase(c, self, 3);
    if (!strcmp(name, "title")) return recase(c, self, 4);
    if (!strcmp(name, "replace")) return replace(c, at, self, a);
    if (!strcmp(name, "split")) {
        ct_value *ms = arg(a, 1, "maxsplit");
        return split(c, at, self, arg(a, 0, "sep"), ms && ms->kind == CT_INT ? ms->i : -1);
    }
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        ct_value *p = arg(a, 0, NULL);
        bool end = name[0] == 'e', r = false;
        if (!p) return ct_fail(c, at, LB_ERR_ARG, "%s() takes one argument", name);
        if (p->kind == CT_LIST) {
            for (size_t i = 0; i < p->n && !r; i++) r = affix(self, p->items[i], end);
        } else {
            if (!want_str(c, at, name, p)) return NULL;
            r = affix(self, p, end);
        }
        return ct_bool(c, r);
    }
    if (!strcmp(name, "format")) return format(c, at, self, a);
    if (!strcmp(name, "find")) {
        ct_value *p = want_str(c, at, "find()", arg(a, 0, NULL));
        if (!p) return NULL;
        for (size_t i = 0; i + p->n <= self->n; i++)
            if (!memcmp(self->s + i, p->s, p->n)) return ct_int(c, (int64_t)ct_utf8_count(self->s, i));
        return ct_int(c, -1);
    }
    return ct_fail(c, at, LB_ERR_UNSUPPORTED, "string method '%s' is not supported", name);
}

static ct_value *m_dict(ct_ctx *c, const ct_node *at, const ct_value *f, const ct_args *a) {
    const ct_value *self = f->self;
    const char *name = f->fname;
    if (!strcmp(name, "get")) {
        ct_value *k = arg(a, 0, NULL), *d = arg(a, 1, NULL);
        for (size_t i = 0; k && i < self->n; i++)
            if (ct_equal(self->keys[i], k)) return self->items[i];
        return d ? d : ct_none(c);
    }
    ct_value *l = ct_list(c, self->n);
    for (size_t i = 0; l && i < self->n; i++) {
        ct_value *v = self->items[i];
        if (!strcmp(name, "keys")) v = self->keys[i];
        else if (!strcmp(name, "items")) {
            v = ct_list(c, 2);
            if (!v || !ct_list_push(c, v, self->keys[i]) || !ct_list_push(c, v, self->items[i])) return NULL;
            v->b = true; /* Python's items are tuples */
        }
        if (!ct_list_push(c, l, v)) return NULL;
    }
    return l;
}

ct_value *ct_method(ct_ctx *c, const ct_node *at, ct_value *obj, const char *name) {
    static const char *const str_methods[] = {"strip", "lstrip", "rstrip", "lower", "upper", "capitalize", "title",
                                              "replace", "split", "startswith", "endswith", "find", "format", NULL};
    static const char *const dict_methods[] = {"get", "keys", "values", "items", NULL};
    const char *const *names = obj->kind == CT_STR ? str_methods : obj->kind == CT_DICT ? dict_methods : NULL;
    for (int i = 0; names && names[i]; i++)
        if (!strcmp(names[i], name)) {
            ct_value *f = ct_new(c, CT_FUNC);
            if (!f) return NULL;
            f->fn = obj->kind == CT_STR ? m_str : m_dict;
            f->self = obj;
            f->fname = names[i];
            return f;
        }
    if (obj->kind == CT_STR || obj->kind == CT_LIST) {
        static const char *const other[] = {"join", "count", "index", "rfind", "rsplit", "splitlines",
                                            "zfill", "isdigit", "isalpha", "append", "pop", "extend", "insert", NULL};
        for (int i = 0; other[i]; i++)
            if (!strcmp(other[i], name))
                return ct_fail(c, at, LB_ERR_UNSUPPORTED, "%s method '%s' is not supported", ct_kind_name(obj), name);
    }
    return NULL;
}

/* ---- tests ---- */

int ct_apply_test(ct_ctx *c, const ct_node *at, const char *name, ct_value *v, const ct_args *a) {
    ct_value *x = arg(a, 0, NULL);
    ct_kind k = v->kind;
    if (!strcmp(name, "defined")) return k != CT_UNDEF;
    if (!strcmp(name, "undefined")) return k == CT_UNDEF;
    if (!strcmp(name, "none")) return k == CT_NONE;
    if (!strcmp(name, "boolean")) return k == CT_BOOL;
    if (!strcmp(name, "true")) return k == CT_BOOL && v->b;
    if (!strcmp(name, "false")) return k == CT_BOOL && !v->b;
    if (!strcmp(name, "integer")) return k == CT_INT;
    if (!strcmp(name, "float")) return k == CT_FLOAT;
    if (!strcmp(name, "number")) return k == CT_INT || k == CT_FLOAT || k == CT_BOOL;
    if (!strcmp(name, "string")) return k == CT_STR;
    if (!strcmp(name, "mapping")) return k == CT_DICT;
    if (!strcmp(name, "iterable")) return k == CT_STR || k == CT_LIST || k == CT_DICT || k == CT_UNDEF;
    if (!strcmp(name, "sequence")) return k == CT_STR || k == CT_LIST || k == CT_DICT;
    if (!strcmp(name, "callable")) return k == CT_FUNC;
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (k != CT_STR) return 0;
        for (size_t i = 0; i < v->n; i++)
            if (name[0] == 'l' ? (v->s[i] >= 'A' && v->s[i] <= 'Z') : (v->s[i] >= 'a' && v->s[i] <= 'z')) return 0;
        return 1;
    }
    if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        int64_t d = !strcmp(name, "divisibleby") ? (x && (x->kind == CT_INT || x->kind == CT_BOOL) ? (x->kind == CT_INT ? x->i : x->b) : 0) : 2;
        if ((k != CT_INT && k != CT_BOOL) || d == 0) return ct_fail(c, at, LB_ERR_ARG, "test '%s' needs integers", name), -1;
        int64_t r = (k == CT_INT ? v->i : v->b) % d;
        return name[0] == 'o' ? r != 0 : r == 0;
    }
    if (!x && strcmp(name, "in"))
        return ct_fail(c, at, LB_ERR_UNSUPPORTED, "test '%s' is not supported (or lacks its argument)", name), -1;
    if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) return ct_equal(v, x);
    if (!strcmp(name, "ne") || !strcmp(name, "!=")) return !ct_equal(v, x);
    if (!strcmp(name, "sameas")) return ct_equal(v, x) && v->kind == x->kind;
    if (!strcmp(name, "in")) {
        if (!x) return ct_fail(c, at, LB_ERR_ARG, "test 'in' needs a sequence"), -1;
        if (x->kind == CT_STR && v->kind == CT_STR) {
            for (size_t i = 0; i + v->n <= x->n; i++)
                if (!memcmp(x->s + i, v->s, v->n)) return 1;
            return 0;
        }
        for (size_t i = 0; i < x->n && (x->kind == CT_LIST || x->kind == CT_DICT); i++)
            if (ct_equal(x->kind == CT_LIST ? x->items[i] : x->keys[i], v)) return 1;
        return 0;
    }
    if (!strcmp(name, "lt") || !strcmp(name, "gt") || !strcmp(name, "le") || !strcmp(name, "ge") ||
        !strcmp(name, "<") || !strcmp(name, ">") || !strcmp(name, "<=") || !strcmp(name, ">=")) {
        bool nums = (k == CT_INT || k == CT_FLOAT) && (x->kind == CT_INT || x->kind == CT_FLOAT);
        if (!nums) return ct_fail(c, at, LB_ERR_UNSUPPORTED, "test '%s' supports numbers only", name), -1;
        double p = k == CT_INT ? (double)v->i : v->f, q = x->kind == CT_INT ? (double)x->i : x->f;
        bool lt = name[0] == 'l' || name[0] == '<', eq = name[1] == 'e' || name[1] == '=';
        return lt ? (eq ? p <= q : p < q) : (eq ? p >= q : p > q);
    }
    return ct_fail(c, at, LB_ERR_UNSUPPORTED, "test '%s' is not supported", name), -1;
}

/* ---- filters ---- */

static ct_value *items_of(ct_ctx *c, const ct_node *at, ct_value *v) {
    if (v->kind == CT_LIST) return v;
    ct_value *l = ct_list(c, v->n);
    if (!l) return NULL;
    if (v->kind == CT_DICT) {
        for (size_t i = 0; i < v->n; i++) ct_list_push(c, l, v->keys[i]);
        return l;
    }
    if (v->kind == CT_STR) {
        size_t cps = ct_utf8_count(v->s, v->n);
        for (size_t i = 0; i < cps; i++) {
            size_t a = ct_utf8_offset(v->s, v->n, i), b = ct_utf8_offset(v->s, v->n, i + 1);
            if (!ct_list_push(c, l, ct_str(c, v->s + a, b - a))) return NULL;
        }
        return l;
    }
    if (v->kind == CT_UNDEF) return l;
    return ct_fail(c, at, LB_ERR_ARG, "'%s' object is not iterable", ct_kind_name(v));
}

static ct_value *attr_of(ct_ctx *c, ct_value *v, ct_value *name) {
    if (v->kind == CT_DICT || v->kind == CT_NS) {
        ct_value *r = ct_dict_get(v, name->s, name->n);
        if (r) return r;
    }
    return ct_undef(c, name->s);
}

static ct_value *lazy_empty(ct_ctx *c) {
    ct_value *l = ct_list(c, 0);
    if (l) l->lazy = true;
    return l;
}

/* select / reject / selectattr / rejectattr: a generator, as jinja2's. */
static ct_value *select_items(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a, bool keep, bool by_attr) {
    if (!ct_truthy(v)) return lazy_empty(c); /* jinja2 walks the sequence only `if seq` */
    ct_value *l = items_of(c, at, v), *out = l ? ct_list(c, l->n) : NULL;
    int first = by_attr ? 1 : 0;
    ct_value *attr = by_attr ? want_str(c, at, "selectattr", arg(a, 0, NULL)) : NULL;
    ct_value *test = arg(a, first, NULL);
    if (!out || (by_attr && !attr)) return NULL;
    if (test && test->kind != CT_STR) return ct_fail(c, at, LB_ERR_ARG, "the test name must be a string");
    ct_args ta = {a->pos + first + 1, a->n_pos > first + 1 ? a->n_pos - first - 1 : 0, NULL, NULL, 0};
    for (size_t i = 0; i < l->n; i++) {
        ct_value *x = by_attr ? attr_of(c, l->items[i], attr) : l->items[i];
        if (!x) return NULL;
        int r = test ? ct_apply_test(c, at, test->s, x, &ta) : ct_truthy(x);
        if (r < 0) return NULL;
        if ((r != 0) == keep && !ct_list_push(c, out, l->items[i])) return NULL;
    }
    out->lazy = true;
    return out;
}

static ct_value *join(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_value *l = items_of(c, at, v), *sep = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
    if (!l) return NULL;
    if (sep && sep->kind != CT_STR) return want_str(c, at, "join", sep);
    ct_buf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (i && sep) ct_buf_put(&b, sep->s, sep->n);
        ct_value *x = attr && attr->kind == CT_STR ? attr_of(c, l->items[i], attr) : l->items[i];
        if (x) ct_buf_str(&b, x);
    }
    ct_value *r = b.oom ? ct_fail(c, at, LB_ERR_NOMEM, "out of memory") : ct_str(c, b.p ? b.p : "", b.n);
    free(b.p);
    return r;
}

static ct_value *tojson(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_value *ind = arg(a, 1, "indent"), *sort = arg(a, 3, "sort_keys"), *ascii = arg(a, 0, "ensure_ascii");
    ct_value *sep = arg(a, 2, "separators");
    if (sep && sep->kind != CT_NONE) return ct_fail(c, at, LB_ERR_UNSUPPORTED, "tojson(separators=...) is not supported");
    int indent = ind && ind->kind == CT_INT ? (int)(ind->i < 0 ? 0 : ind->i > 64 ? 64 : ind->i) : -1;
    ct_buf b = {0};
    int flags = (sort && ct_truthy(sort) ? CT_JSON_SORT : 0) | (ascii && ct_truthy(ascii) ? CT_JSON_ASCII : 0);
    bool ok = ct_buf_json(c, at, &b, v, indent, flags, 0);
    ct_value *r = !ok ? NULL : b.oom ? ct_fail(c, at, LB_ERR_NOMEM, "out of memory") : ct_str(c, b.p ? b.p : "", b.n);
    free(b.p);
    return r;
}

static ct_value *map(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    if (!ct_truthy(v)) return lazy_empty(c); /* as jinja2's do_map */
    ct_value *l = items_of(c, at, v), *attr = arg(a, -1, "attribute"), *f = arg(a, 0, NULL);
    ct_value *out = l ? ct_list(c, l->n) : NULL;
    if (!out) return NULL;
    if (!attr && (!f || f->kind != CT_STR)) return ct_fail(c, at, LB_ERR_UNSUPPORTED, "map needs attribute= or a filter name");
    ct_args fa = {a->pos + 1, a->n_pos > 1 ? a->n_pos - 1 : 0, NULL, NULL, 0};
    for (size_t i = 0; i < l->n; i++) {
        ct_value *x = attr ? attr_of(c, l->items[i], attr) : ct_apply_filter(c, at, f->s, l->items[i], &fa);
        if (!ct_list_push(c, out, x)) return NULL;
    }
    out->lazy = true;
    return out;
}

/* jinja2's dictsort: (key, value) pairs sorted by key (or by value with by='value'), strings compared
 * case-insensitively unless case_sensitive. */
static int sort_cmp(const ct_value *x, const ct_value *y, bool cs) {
    if (x->kind == CT_STR && y->kind == CT_STR) {
        for (size_t i = 0; i < x->n && i < y->n; i++) {
            int p = (unsigned char)x->s[i], q = (unsigned char)y->s[i];
            if (!cs && p >= 'A' && p <= 'Z') p += 32;
            if (!cs && q >= 'A' && q <= 'Z') q += 32;
            if (p != q) return p < q ? -1 : 1;
        }
        return x->n < y->n ? -1 : x->n > y->n;
    }
    double p = x->kind == CT_FLOAT ? x->f : x->kind == CT_BOOL ? x->b : (double)x->i;
    double q = y->kind == CT_FLOAT ? y->f : y->kind == CT_BOOL ? y->b : (double)y->i;
    return p < q ? -1 : p > q;
}

static ct_value *dictsort(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    if (v->kind != CT_DICT) return ct_fail(c, at, LB_ERR_ARG, "dictsort expects a mapping, got %s", ct_kind_name(v));
    ct_value *cs = arg(a, 0, "case_sensitive"), *by = arg(a, 1, "by"), *rev = arg(a, 2, "reverse");
    bool by_value = by && by->kind == CT_STR && !strcmp(by->s, "value"), sens = cs && ct_truthy(cs);
    bool reverse = rev && ct_truthy(rev);
    ct_value *l = ct_list(c, v->n);
    for (size_t i = 0; l && i < v->n; i++) {
        const ct_value *k = by_value ? v->items[i] : v->keys[i];
        if (k->kind != CT_STR && k->kind != CT_INT && k->kind != CT_FLOAT)
            return ct_fail(c, at, LB_ERR_UNSUPPORTED, "dictsort: cannot order a %s", ct_kind_name(k));
        ct_value *p = ct_list(c, 2);
        if (!p || !ct_list_push(c, p, v->keys[i]) || !ct_list_push(c, p, v->items[i]) || !ct_list_push(c, l, p)) return NULL;
        p->b = true;
        if ((k->kind == CT_STR) != (l->items[0]->items[by_value]->kind == CT_STR))
            return ct_fail(c, at, LB_ERR_ARG, "dictsort: cannot compare a string with a number");
    }
    for (size_t i = 1; l && i < l->n; i++) /* insertion sort: stable, and dicts in templates are small */
        for (size_t j = i; j > 0; j--) {
            int r = sort_cmp(l->items[j - 1]->items[by_value], l->items[j]->items[by_value], sens);
            if (reverse ? r >= 0 : r <= 0) break;
            ct_value *t = l->items[j];
            l->items[j] = l->items[j - 1];
            l->items[j - 1] = t;
        }
    return l;
}

/* min / max: the smallest / largest item (by `attribute`), strings compared case-insensitively unless
 * case_sensitive; an empty sequence gives undefined. */
static ct_value *min_max(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a, bool max) {
    ct_value *l = items_of(c, at, v), *cs = arg(a, 0, "case_sensitive"), *attr = arg(a, 1, "attribute");
    ct_value *best = NULL, *best_key = NULL;
    for (size_t i = 0; l && i < l->n; i++) {
        ct_value *k = attr && attr->kind == CT_STR ? attr_of(c, l->items[i], attr) : l->items[i];
        if (!k) return NULL;
        bool num = k->kind == CT_INT || k->kind == CT_FLOAT;
        if (!num && k->kind != CT_STR) return ct_fail(c, at, LB_ERR_ARG, "%s: cannot order a %s", max ? "max" : "min", ct_kind_name(k));
        if (best_key && (best_key->kind == CT_STR) != (k->kind == CT_STR))
            return ct_fail(c, at, LB_ERR_ARG, "%s: cannot compare a string with a number", max ? "max" : "min");
        int r = best_key ? sort_cmp(k, best_key, cs && ct_truthy(cs)) : 0;
        if (!best_key || (max ? r > 0 : r < 0)) {
            best = l->items[i];
            best_key = k;
        }
    }
    return l ? (best ? best : ct_undef(c, max ? "max" : "min")) : NULL;
}

/* ---- the filter table ---- */

static ct_value *f_default(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_value *d = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
    bool use = v->kind == CT_UNDEF || (boolean && ct_truthy(boolean) && !ct_truthy(v));
    return use ? (d ? d : ct_str(c, "", 0)) : v;
}

static ct_value *f_safe(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_value *m = ct_to_str(c, v); /* a Markup string: `+` with a plain string escapes that one */
    if (m && !m->b && (m = ct_str(c, m->s, m->n))) m->b = true;
    return m;
}

static ct_value *f_string(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return ct_to_str(c, v); }

static ct_value *f_length(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_kind k = v->kind;
    if (k == CT_STR) return ct_int(c, (int64_t)ct_utf8_count(v->s, v->n));
    if ((k == CT_LIST && !v->lazy) || k == CT_DICT || k == CT_NS) return ct_int(c, (int64_t)v->n);
    if (k == CT_UNDEF) return ct_int(c, 0);
    return ct_fail(c, at, LB_ERR_ARG, "object of type '%s' has no len()", ct_kind_name(v));
}

static ct_value *f_list(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_value *l = items_of(c, at, v);
    if (l == v && (v->b || v->lazy)) { /* a tuple or generator becomes a list */
        l = ct_list(c, v->n);
        for (size_t i = 0; l && i < v->n; i++) ct_list_push(c, l, v->items[i]);
    }
    return l;
}

static ct_value *first_last(ct_ctx *c, const ct_node *at, ct_value *v, bool last) {
    if (last && v->kind == CT_LIST && v->lazy) return ct_fail(c, at, LB_ERR_ARG, "'generator' object is not reversible");
    ct_value *l = items_of(c, at, v);
    if (!l) return NULL;
    if (!l->n) return ct_undef(c, last ? "last" : "first");
    return l->items[last ? l->n - 1 : 0];
}

static ct_value *f_first(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return first_last(c, at, v, false); }
static ct_value *f_last(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return first_last(c, at, v, true); }

static ct_value *f_items(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    if (v->kind == CT_UNDEF) return ct_list(c, 0);
    if (v->kind != CT_DICT) return ct_fail(c, at, LB_ERR_ARG, "filter 'items' expects a mapping, got %s", ct_kind_name(v));
    ct_value *l = ct_list(c, v->n);
    for (size_t i = 0; l && i < v->n; i++) {
        ct_value *p = ct_list(c, 2);
        if (!p || !ct_list_push(c, p, v->keys[i]) || !ct_list_push(c, p, v->items[i]) || !ct_list_push(c, l, p)) return NULL;
        p->b = true;
    }
    return l;
}

static ct_value *f_min(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return min_max(c, at, v, a, false); }
static ct_value *f_max(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return min_max(c, at, v, a, true); }
static ct_value *f_select(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return select_items(c, at, v, a, true, false); }
static ct_value *f_reject(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return select_items(c, at, v, a, false, false); }
static ct_value *f_selectattr(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return select_items(c, at, v, a, true, true); }
static ct_value *f_rejectattr(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return select_items(c, at, v, a, false, true); }

static ct_value *f_int(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_kind k = v->kind;
    if (k == CT_UNDEF) return ct_fail(c, at, LB_ERR_ARG, "'%s' is undefined (filter 'int')", v->s ? v->s : "value");
    if (k == CT_INT || k == CT_BOOL) return ct_int(c, k == CT_INT ? v->i : v->b);
    if (k == CT_FLOAT && isfinite(v->f) && fabs(v->f) < 9e18) return ct_int(c, (int64_t)v->f);
    if (k == CT_STR) {
        char *e;
        long long r = strtoll(v->s, &e, 10);
        if (e != v->s && !*e) return ct_int(c, r);
    }
    ct_value *d = arg(a, 0, "default");
    return d ? d : ct_int(c, 0);
}

static ct_value *f_float(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_kind k = v->kind;
    if (k == CT_UNDEF) return ct_fail(c, at, LB_ERR_ARG, "'%s' is undefined (filter 'float')", v->s ? v->s : "value");
    if (k == CT_INT || k == CT_BOOL || k == CT_FLOAT) return ct_float(c, k == CT_FLOAT ? v->f : k == CT_INT ? (double)v->i : v->b);
    if (k == CT_STR) {
        char *e;
        double f = strtod(v->s, &e);
        if (e != v->s && !*e) return ct_float(c, f);
    }
    ct_value *d = arg(a, 0, "default");
    return d ? d : ct_float(c, 0.0);
}

static ct_value *f_abs(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    if (v->kind == CT_BOOL) return ct_int(c, v->b);
    if (v->kind == CT_INT && v->i != INT64_MIN) return ct_int(c, v->i < 0 ? -v->i : v->i);
    if (v->kind == CT_FLOAT) return ct_float(c, fabs(v->f));
    return ct_fail(c, at, LB_ERR_ARG, "bad operand type for abs(): '%s'", ct_kind_name(v));
}

/* Python's round(value, precision): halves to even; an int stays an int. */
static ct_value *f_round(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_value *pr = arg(a, 0, "precision"), *m = arg(a, 1, "method");
    ct_kind k = v->kind;
    if (k != CT_INT && k != CT_FLOAT && k != CT_BOOL) return ct_fail(c, at, LB_ERR_ARG, "round: not a number");
    if (m && m->kind == CT_STR && strcmp(m->s, "common"))
        return ct_fail(c, at, LB_ERR_UNSUPPORTED, "round: method '%s' is not supported", m->s);
    if (k != CT_FLOAT) return ct_int(c, k == CT_INT ? v->i : v->b);
    int prec = pr && pr->kind == CT_INT ? (int)(pr->i < 0 ? 0 : pr->i > 15 ? 15 : pr->i) : 0;
    double scale = pow(10.0, prec);
    return ct_float(c, nearbyint(v->f * scale) / scale);
}

static double num_of(const ct_value *x) { return x->kind == CT_FLOAT ? x->f : x->kind == CT_INT ? (double)x->i : x->b; }

static ct_value *f_sum(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_value *l = items_of(c, at, v), *attr = arg(a, 0, "attribute"), *acc = arg(a, 1, "start");
    if (!acc) acc = ct_int(c, 0);
    for (size_t i = 0; l && acc && i < l->n; i++) {
        ct_value *x = attr && attr->kind == CT_STR ? attr_of(c, l->items[i], attr) : l->items[i];
        bool ok = (acc->kind == CT_INT || acc->kind == CT_FLOAT || acc->kind == CT_BOOL) &&
                  (x->kind == CT_INT || x->kind == CT_FLOAT || x->kind == CT_BOOL);
        if (!ok) return ct_fail(c, at, LB_ERR_ARG, "sum: unsupported operand types '%s' and '%s'", ct_kind_name(acc), ct_kind_name(x));
        int64_t r;
        if (acc->kind == CT_FLOAT || x->kind == CT_FLOAT) acc = ct_float(c, num_of(acc) + num_of(x));
        else if (__builtin_add_overflow(acc->kind == CT_INT ? acc->i : acc->b, x->kind == CT_INT ? x->i : x->b, &r))
            return ct_fail(c, at, LB_ERR_UNSUPPORTED, "sum: integer too large");
        else acc = ct_int(c, r);
    }
    return l ? acc : NULL;
}

static ct_value *f_reverse(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_value *l = items_of(c, at, v);
    if (!l) return NULL;
    if (v->kind == CT_STR) {
        ct_buf b = {0};
        for (size_t i = l->n; i > 0; i--) ct_buf_put(&b, l->items[i - 1]->s, l->items[i - 1]->n);
        ct_value *r = b.oom ? ct_fail(c, at, LB_ERR_NOMEM, "out of memory") : ct_str(c, b.p ? b.p : "", b.n);
        free(b.p);
        return r;
    }
    ct_value *r = ct_list(c, l->n);
    for (size_t i = l->n; r && i > 0; i--) ct_list_push(c, r, l->items[i - 1]);
    if (r && v->kind == CT_LIST) r->lazy = true; /* jinja2 returns reversed(), an iterator */
    return r;
}

/* sort (reverse, case_sensitive, attribute) and unique (case_sensitive, attribute). */
static ct_value *sort_unique(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a, bool sort) {
    ct_value *rev = sort ? arg(a, 0, "reverse") : NULL, *cs = arg(a, sort ? 1 : 0, "case_sensitive");
    ct_value *attr = arg(a, sort ? 2 : 1, "attribute");
    ct_value *l = items_of(c, at, v), *r = l ? ct_list(c, l->n) : NULL;
    bool sens = cs && ct_truthy(cs), reverse = rev && ct_truthy(rev), by_attr = attr && attr->kind == CT_STR;
    for (size_t i = 0; r && i < l->n; i++) {
        ct_value *x = l->items[i], *kx = by_attr ? attr_of(c, x, attr) : x;
        if (kx->kind != CT_STR && kx->kind != CT_INT && kx->kind != CT_FLOAT && kx->kind != CT_BOOL)
            return ct_fail(c, at, LB_ERR_UNSUPPORTED, "%s: cannot order a %s", sort ? "sort" : "unique", ct_kind_name(kx));
        bool dup = false;
        for (size_t q = 0; q < r->n && !sort && !dup; q++) {
            ct_value *kq = by_attr ? attr_of(c, r->items[q], attr) : r->items[q];
            dup = (kq->kind == CT_STR) == (kx->kind == CT_STR) && sort_cmp(kq, kx, sens) == 0;
        }
        if (dup || !ct_list_push(c, r, x)) continue;
        for (size_t j = r->n - 1; sort && j > 0; j--) { /* insertion sort, stable */
            ct_value *kp = by_attr ? attr_of(c, r->items[j - 1], attr) : r->items[j - 1];
            if ((kp->kind == CT_STR) != (kx->kind == CT_STR))
                return ct_fail(c, at, LB_ERR_ARG, "sort: cannot compare a string with a number");
            int cmp = sort_cmp(kp, kx, sens);
            if (reverse ? cmp >= 0 : cmp <= 0) break;
            r->items[j] = r->items[j - 1];
            r->items[j - 1] = x;
        }
    }
    if (r && !sort) r->lazy = true; /* unique yields, as jinja2's */
    return r;
}

static ct_value *f_sort(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return sort_unique(c, at, v, a, true); }
static ct_value *f_unique(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return sort_unique(c, at, v, a, false); }

/* The string filters: jinja2 converts the value with str() first. */
static ct_value *f_trim(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_value *s = ct_to_str(c, v);
    return s ? strip(c, s, arg(a, 0, "chars"), 3) : NULL;
}
static ct_value *case_filter(ct_ctx *c, ct_value *v, int how) {
    ct_value *s = ct_to_str(c, v);
    return s ? recase(c, s, how) : NULL;
}
static ct_value *f_lower(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return case_filter(c, v, 1); }
static ct_value *f_upper(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return case_filter(c, v, 2); }
static ct_value *f_capitalize(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return case_filter(c, v, 3); }
static ct_value *f_title(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) { return case_filter(c, v, 4); }
static ct_value *f_replace(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a) {
    ct_value *s = ct_to_str(c, v);
    return s ? replace(c, at, s, a) : NULL;
}

typedef ct_value *(*filter_fn)(ct_ctx *c, const ct_node *at, ct_value *v, const ct_args *a);

static const struct {
    const char *name;
    filter_fn fn;
} FILTERS[] = {
    {"default", f_default}, {"d", f_default},       {"safe", f_safe},
    {"string", f_string},   {"tojson", tojson},     {"length", f_length},
    {"count", f_length},    {"list", f_list},       {"first", f_first},
    {"last", f_last},       {"items", f_items},     {"join", join},
    {"dictsort", dictsort}, {"min", f_min},         {"max", f_max},
    {"map", map},           {"select", f_select},   {"reject", f_reject},
    {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr},
    {"int", f_int},         {"float", f_float},     {"abs", f_abs},
    {"round", f_round},     {"sum", f_sum},         {"reverse", f_reverse},
    {"sort", f_sort},       {"unique", f_unique},   {"trim", f_trim},
    {"lower", f_lower},     {"upper", f_upper},     {"capitalize", f_capitalize},
    {"title", f_title},     {"replace", f_replace},
};

ct_value *ct_apply_filter(ct_ctx *c, const ct_node *at, const char *name, ct_value *v, const ct_args *a) {
    for (size_t i = 0; i < sizeof FILTERS / sizeof *FILTERS; i++)
        if (!strcmp(FILTERS[i].name, name)) return FILTERS[i].fn(c, at, v, a);
    return ct_fail(c, at, LB_ERR_UNSUPPORTED, "filter '%s' is not supported by lowbit's template engine", name);
}

/* ---- globals ---- */

static ct_value *g_raise(ct_ctx *c, const ct_node *at, const ct_value *f, const ct_args *a) {
    ct_value *m = arg(a, 0, NULL);
    ct_value *s = m ? ct_to_str(c, m) : NULL;
    return ct_fail(c, at, LB_ERR_ARG, "raise_exception: %s", s ? s->s : "(no message)");
}

static ct_value *g_namespace(ct_ctx *c, const ct_node *at, const ct_value *f, const ct_args *a) {
    ct_value *ns = ct_dict(c, CT_NS);
    ct_value *init = arg(a, 0, NULL);
    if (init && init->kind == CT_DICT)
        for (size_t i = 0; ns && i < init->n; i++) ct_dict_set(c, ns, init->keys[i], init->items[i]);
    for (int i = 0; ns && i < a->n_kw; i++)
        if (!ct_dict_set(c, ns, ct_str(c, a->kw_names[i], strlen(a->kw_names[i])), a->kw[i])) return NULL;
    return ns;
}

static ct_value *g_dict(ct_ctx *c, const ct_node *at, const ct_value *f, const ct_args *a) {
    ct_value *d = g_namespace(c, at, f, a);
    if (d) d->kind = CT_DICT;
    return d;
}

static ct_value *g_range(ct_ctx *c, const ct_node *at, const ct_value *f, const ct_args *a) {
    int64_t v[3] = {0, 0, 1};
    if (a->n_pos < 1 || a->n_pos > 3) return ct_fail(c, at, LB_ERR_ARG, "range() takes 1 to 3 arguments");
    for (int i = 0; i < a->n_pos; i++) {
        if (a->pos[i]->kind != CT_INT) return ct_fail(c, at, LB_ERR_ARG, "range() arguments must be integers");
        v[a->n_pos == 1 ? 1 : i] = a->pos[i]->i;
    }
    if (v[2] == 0) return ct_fail(c, at, LB_ERR_ARG, "range() step must not be zero");
    double count = ((double)v[1] - (double)v[0]) / (double)v[2];
    if (count > CT_MAX_RANGE) return ct_fail(c, at, LB_ERR_UNSUPPORTED, "range() longer than %d", CT_MAX_RANGE);
    if (count > 0 && (c->steps += (int64_t)count) > CT_MAX_STEPS)
        return ct_fail(c, at, LB_ERR_UNSUPPORTED, "the template's range() calls pass %d elements", CT_MAX_STEPS);
    ct_value *l = ct_list(c, count > 0 ? (size_t)count + 1 : 1);
    for (int64_t i = v[0]; l && (v[2] > 0 ? i < v[1] : i > v[1]); i += v[2])
        if (!ct_list_push(c, l, ct_int(c, i))) return NULL;
    return l;
}

static ct_value *g_strftime_now(ct_ctx *c, const ct_node *at, const ct_value *f, const ct_args *a) {
    ct_value *fmt = want_str(c, at, "strftime_now", arg(a, 0, NULL));
    if (!fmt) return NULL;
    time_t now = time(NULL);
    struct tm tm;
    char buf[256];
    if (!localtime_r(&now, &tm)) return ct_fail(c, at, LB_ERR_IO, "strftime_now: no local time");
    size_t n = strftime(buf, sizeof buf, fmt->s, &tm);
    return ct_str(c, buf, n);
}

ct_value *ct_global(ct_ctx *c, const char *name) {
    static const struct { const char *name; ct_builtin fn; } globals[] = {
        {"raise_exception", g_raise}, {"namespace", g_namespace}, {"dict", g_dict},
        {"range", g_range},           {"strftime_now", g_strftime_now},
    };
    for (size_t i = 0; i < sizeof globals / sizeof *globals; i++)
        if (!strcmp(globals[i].name, name)) {
            ct_value *f = ct_new(c, CT_FUNC);
            if (f) {
                f->fn = globals[i].fn;
                f->fname = globals[i].name;
            }
            return f;
        }
    return NULL;
}
