/*
 * chat_render.c - the evaluator of the chat-template AST (see chat_template.h).
 *
 * Scoping is jinja2's: the template's top level is one frame, every iteration of a for loop gets a new
 * frame (so a `set` inside a loop is gone after it; namespace() objects carry values out), `if` blocks
 * open none. Attribute access `x.a` tries a method or attribute first, then the key; `x['a']` the key
 * first. A missing variable, key or index is Undefined (jinja2's default): it prints as nothing,
 * iterates as empty and is false, and an attribute of it, arithmetic on it or tojson of it is an error.
 */
#include "chat_template.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ct_frame {
    struct ct_frame *parent;
    const char **names;
    ct_value **vals;
    int n, cap;
} ct_frame;

static ct_value *eval(ct_ctx *c, const ct_node *n);
static void exec(ct_ctx *c, const ct_node *n);

/* ---- frames ---- */

static ct_value *lookup(ct_ctx *c, const char *name) {
    for (ct_frame *f = c->frame; f; f = f->parent)
        for (int i = f->n - 1; i >= 0; i--)
            if (!strcmp(f->names[i], name)) return f->vals[i];
    ct_value *g = ct_global(c, name);
    return g ? g : ct_undef(c, name);
}

static bool assign(ct_ctx *c, const char *name, ct_value *v) {
    if (!v) return false;
    ct_frame *f = c->frame;
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->names[i], name)) {
            f->vals[i] = v;
            return true;
        }
    if (f->n == f->cap) {
        int cap = f->cap ? f->cap * 2 : 8;
        const char **names = ct_alloc(c->arena, (size_t)cap * sizeof *names);
        ct_value **vals = ct_alloc(c->arena, (size_t)cap * sizeof *vals);
        if (!names || !vals) return ct_fail(c, NULL, LB_ERR_NOMEM, "out of memory"), false;
        if (f->n) {
            memcpy(names, f->names, (size_t)f->n * sizeof *names);
            memcpy(vals, f->vals, (size_t)f->n * sizeof *vals);
        }
        f->names = names;
        f->vals = vals;
        f->cap = cap;
    }
    f->names[f->n] = name;
    f->vals[f->n++] = v;
    return true;
}

static void push_frame(ct_ctx *c, ct_frame *f) {
    *f = (ct_frame){.parent = c->frame};
    c->frame = f;
}

static void pop_frame(ct_ctx *c) { c->frame = c->frame->parent; }

/* ---- access ---- */

static const char *describe(const ct_node *n) {
    if (n->op == CT_E_NAME) return n->name;
    if (n->op == CT_E_ATTR) return n->name;
    return "value";
}

/* Python index i of a sequence of length n (negative from the end); false when out of range. */
static bool norm_index(int64_t i, size_t n, size_t *out) {
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return false;
    *out = (size_t)i;
    return true;
}

static ct_value *get_item(ct_ctx *c, const ct_node *at, ct_value *obj, ct_value *key) {
    switch (obj->kind) {
    case CT_DICT: case CT_NS:
        for (size_t i = 0; i < obj->n; i++)
            if (ct_equal(obj->keys[i], key)) return obj->items[i];
        return NULL;
    case CT_LIST: case CT_STR: {
        size_t idx;
        if (obj->lazy) return NULL;
        if (key->kind != CT_INT && key->kind != CT_BOOL) return NULL;
        int64_t k = key->kind == CT_INT ? key->i : key->b;
        if (obj->kind == CT_LIST) return norm_index(k, obj->n, &idx) ? obj->items[idx] : NULL;
        size_t cps = ct_utf8_count(obj->s, obj->n);
        if (!norm_index(k, cps, &idx)) return NULL;
        size_t a = ct_utf8_offset(obj->s, obj->n, idx), b = ct_utf8_offset(obj->s, obj->n, idx + 1);
        return ct_str(c, obj->s + a, b - a);
    }
    default: return NULL;
    }
}

/* obj.name: a method or attribute first, then the key. */
static ct_value *get_attr(ct_ctx *c, const ct_node *at, ct_value *obj, const char *name) {
    if (obj->kind == CT_UNDEF)
        return ct_fail(c, at, LB_ERR_ARG, "'%s' is undefined (reading its attribute '%s')", obj->s ? obj->s : "value", name);
    ct_value *m = ct_method(c, at, obj, name);
    if (m || ct_failed(c)) return m;
    if (obj->kind == CT_DICT || obj->kind == CT_NS) {
        ct_value *v = ct_dict_get(obj, name, strlen(name));
        if (v) return v;
    }
    return ct_undef(c, name);
}

static ct_value *slice(ct_ctx *c, const ct_node *at, ct_value *obj, ct_value *bounds[3]) {
    int64_t v[3];
    bool given[3];
    /* what Python refuses to slice (wrong types, step 0) is undefined, as jinja2's getitem makes it */
    for (int k = 0; k < 3; k++) {
        given[k] = bounds[k] && bounds[k]->kind != CT_NONE;
        if (given[k] && bounds[k]->kind != CT_INT && bounds[k]->kind != CT_BOOL) return ct_undef(c, "slice");
        v[k] = given[k] ? (bounds[k]->kind == CT_INT ? bounds[k]->i : bounds[k]->b) : 0;
    }
    int64_t step = given[2] ? v[2] : 1;
    if (step == 0 || (obj->kind != CT_LIST && obj->kind != CT_STR) || obj->lazy) return ct_undef(c, "slice");
    int64_t len = (int64_t)(obj->kind == CT_LIST ? obj->n : ct_utf8_count(obj->s, obj->n));
    int64_t lo = step > 0 ? 0 : -1, hi = step > 0 ? len : len - 1; /* Python's PySlice_AdjustIndices */
    int64_t start = given[0] ? v[0] : (step > 0 ? 0 : len - 1), stop = given[1] ? v[1] : (step > 0 ? len : -1);
    if (given[0]) { if (start < 0) start += len; start = start < lo ? lo : start > hi ? hi : start; }
    if (given[1]) { if (stop < 0) stop += len; stop = stop < lo ? lo : stop > hi ? hi : stop; }
    if (obj->kind == CT_STR && step == 1) {
        if (stop < start) stop = start;
        size_t a = ct_utf8_offset(obj->s, obj->n, (size_t)start), b = ct_utf8_offset(obj->s, obj->n, (size_t)stop);
        return ct_str(c, obj->s + a, b - a);
    }
    ct_value *out = ct_list(c, 0);
    ct_buf sb = {0};
    for (int64_t i = start; out && (step > 0 ? i < stop : i > stop); i += step) {
        if (obj->kind == CT_LIST) {
            if (!ct_list_push(c, out, obj->items[i])) return NULL;
        } else {
            size_t a = ct_utf8_offset(obj->s, obj->n, (size_t)i), b = ct_utf8_offset(obj->s, obj->n, (size_t)i + 1);
            ct_buf_put(&sb, obj->s + a, b - a);
        }
    }
    if (out) out->b = obj->kind == CT_LIST && obj->b; /* a tuple's slice is a tuple */
    if (obj->kind == CT_STR) {
        ct_value *s = sb.oom ? ct_fail(c, at, LB_ERR_NOMEM, "out of memory") : ct_str(c, sb.p ? sb.p : "", sb.n);
        free(sb.p);
        return s;
    }
    return out;
}

/* ---- operators ---- */

static bool is_num(const ct_value *v) { return v->kind == CT_INT || v->kind == CT_FLOAT || v->kind == CT_BOOL; }
static double num(const ct_value *v) { return v->kind == CT_FLOAT ? v->f : v->kind == CT_INT ? (double)v->i : v->b; }
static int64_t inum(const ct_value *v) { return v->kind == CT_INT ? v->i : v->b; }

static ct_value *type_error(ct_ctx *c, const ct_node *at, const char *op, const ct_value *a, const ct_value *b) {
    if (a->kind == CT_UNDEF || b->kind == CT_UNDEF) {
        const ct_value *u = a->kind == CT_UNDEF ? a : b;
        return ct_fail(c, at, LB_ERR_ARG, "'%s' is undefined (used with '%s')", u->s ? u->s : "value", op);
    }
    return ct_fail(c, at, LB_ERR_ARG, "unsupported operand types for %s: '%s' and '%s'", op, ct_kind_name(a), ct_kind_name(b));
}

/* markupsafe's escape(): & < > " ' as HTML entities. */
static ct_value *html_escape(ct_ctx *c, const ct_value *s) {
    ct_buf b = {0};
    for (size_t i = 0; i < s->n; i++) {
        const char *r = NULL;
        switch (s->s[i]) {
        case '&': r = "&amp;"; break;
        case '<': r = "&lt;"; break;
        case '>': r = "&gt;"; break;
        case '"': r = "&#34;"; break;
        case '\'': r = "&#39;"; break;
        }
        if (r) ct_buf_put(&b, r, strlen(r));
        else ct_buf_put(&b, s->s + i, 1);
    }
    ct_value *v = b.oom ? ct_fail(c, NULL, LB_ERR_NOMEM, "out of memory") : ct_str(c, b.p ? b.p : "", b.n);
    free(b.p);
    return v;
}

/* Strings or lists joined (the result is a plain string / list). */
static ct_value *concat(ct_ctx *c, const ct_node *at, const ct_value *a, const ct_value *b) {
    if (a->kind == CT_STR && b->kind == CT_STR) {
        char *s = ct_alloc(c->arena, a->n + b->n + 1);
        ct_value *v = ct_new(c, CT_STR);
        if (!s || !v) return ct_fail(c, at, LB_ERR_NOMEM, "out of memory");
        memcpy(s, a->s, a->n);
        memcpy(s + a->n, b->s, b->n);
        v->s = s;
        v->n = a->n + b->n;
        return v;
    }
    ct_value *l = ct_list(c, a->n + b->n);
    for (size_t i = 0; l && i < a->n; i++) ct_list_push(c, l, a->items[i]);
    for (size_t i = 0; l && i < b->n; i++) ct_list_push(c, l, b->items[i]);
    return l;
}

static ct_value *repeat(ct_ctx *c, const ct_node *at, const ct_value *seq, int64_t times) {
    if (times < 0) times = 0;
    if ((uint64_t)times * (seq->n ? seq->n : 1) > CT_MAX_RANGE) return ct_fail(c, at, LB_ERR_UNSUPPORTED, "repetition too long");
    ct_value *r = seq->kind == CT_STR ? ct_str(c, "", 0) : ct_list(c, 0);
    for (int64_t i = 0; r && i < times; i++) r = concat(c, at, r, seq);
    return r;
}

static ct_value *arith(ct_ctx *c, const ct_node *at, const char *op, ct_value *a, ct_value *b) {
    if (is_num(a) && is_num(b)) {
        bool ints = a->kind != CT_FLOAT && b->kind != CT_FLOAT;
        int64_t x = inum(a), y = inum(b), r;
        double fx = num(a), fy = num(b);
        if (!strcmp(op, "**")) {
            if (ints && y >= 0) { /* by squaring: a huge exponent of 0, 1 or -1 must not loop y times */
                int64_t acc = 1, base = x;
                for (uint64_t k = (uint64_t)y; k; k >>= 1) {
                    /* |base| >= 2 whenever a product overflows, so the result (|acc| >= 1) would too */
                    if ((k & 1) && __builtin_mul_overflow(acc, base, &acc)) return ct_fail(c, at, LB_ERR_UNSUPPORTED, "integer too large");
                    if (k > 1 && __builtin_mul_overflow(base, base, &base)) return ct_fail(c, at, LB_ERR_UNSUPPORTED, "integer too large");
                }
                return ct_int(c, acc);
            }
            return ct_float(c, pow(fx, fy));
        }
        switch (op[0]) {
        case '+': case '-':
            if (!ints) return ct_float(c, op[0] == '+' ? fx + fy : fx - fy);
            if (op[0] == '+' ? __builtin_add_overflow(x, y, &r) : __builtin_sub_overflow(x, y, &r)) break;
            return ct_int(c, r);
        case '*':
            if (!ints) return ct_float(c, fx * fy);
            if (__builtin_mul_overflow(x, y, &r)) break;
            return ct_int(c, r);
        case '/':
            if (op[1] != '/') {
                if (fy == 0) return ct_fail(c, at, LB_ERR_ARG, "division by zero");
                return ct_float(c, fx / fy);
            }
            if (fy == 0) return ct_fail(c, at, LB_ERR_ARG, "integer division or modulo by zero");
            if (!ints) return ct_float(c, floor(fx / fy));
            if (x == INT64_MIN && y == -1) break;
            r = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) r--;
            return ct_int(c, r);
        case '%':
            if (fy == 0) return ct_fail(c, at, LB_ERR_ARG, "integer division or modulo by zero");
            if (!ints) {
                double m = fmod(fx, fy);
                if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
                return ct_float(c, m);
            }
            if (x == INT64_MIN && y == -1) return ct_int(c, 0);
            r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            return ct_int(c, r);
        default: break;
        }
        return ct_fail(c, at, LB_ERR_UNSUPPORTED, "integer too large");
    }
    if (op[0] == '+' && ((a->kind == CT_STR && b->kind == CT_STR) || (a->kind == CT_LIST && b->kind == CT_LIST && !a->lazy && !b->lazy))) {
        if (a->kind == CT_STR && a->b != b->b) { /* Markup + str escapes the str, and stays Markup (markupsafe) */
            ct_value *ea = a->b ? a : html_escape(c, a), *eb = b->b ? b : html_escape(c, b);
            ct_value *r = ea && eb ? concat(c, at, ea, eb) : NULL;
            if (r) r->b = true;
            return r;
        }
        ct_value *r = concat(c, at, a, b);
        if (r && a->kind == CT_STR) r->b = a->b && b->b;
        return r;
    }
    if (op[0] == '*' && !op[1]) {
        if ((a->kind == CT_STR || a->kind == CT_LIST) && (b->kind == CT_INT || b->kind == CT_BOOL)) return repeat(c, at, a, inum(b));
        if ((b->kind == CT_STR || b->kind == CT_LIST) && (a->kind == CT_INT || a->kind == CT_BOOL)) return repeat(c, at, b, inum(a));
    }
    return type_error(c, at, op, a, b);
}

/* Python's ordering of two values: -1, 0, 1, or -2 when they cannot be ordered. Lists compare item by
 * item. */
static int order(const ct_value *a, const ct_value *b) {
    if (is_num(a) && is_num(b)) {
        if (a->kind != CT_FLOAT && b->kind != CT_FLOAT) return inum(a) < inum(b) ? -1 : inum(a) > inum(b);
        return num(a) < num(b) ? -1 : num(a) > num(b);
    }
    if (a->kind == CT_STR && b->kind == CT_STR) {
        size_t m = a->n < b->n ? a->n : b->n;
        int cmp = memcmp(a->s, b->s, m);
        if (cmp) return cmp < 0 ? -1 : 1;
        return a->n < b->n ? -1 : a->n > b->n;
    }
    if (a->kind == CT_LIST && b->kind == CT_LIST && !a->lazy && !b->lazy && a->b == b->b) {
        for (size_t i = 0; i < a->n && i < b->n; i++)
            if (!ct_equal(a->items[i], b->items[i])) return order(a->items[i], b->items[i]);
        return a->n < b->n ? -1 : a->n > b->n;
    }
    return -2;
}

static int compare(ct_ctx *c, const ct_node *at, const char *op, ct_value *a, ct_value *b) {
    int cmp = order(a, b);
    if (cmp == -2) {
        type_error(c, at, op, a, b);
        return -1;
    }
    if (!strcmp(op, "<")) return cmp < 0;
    if (!strcmp(op, ">")) return cmp > 0;
    if (!strcmp(op, "<=")) return cmp <= 0;
    return cmp >= 0;
}

static int contains(ct_ctx *c, const ct_node *at, ct_value *item, ct_value *seq) {
    switch (seq->kind) {
    case CT_STR:
        if (item->kind != CT_STR) return ct_fail(c, at, LB_ERR_ARG, "'in <string>' requires string as left operand, not %s", ct_kind_name(item)), -1;
        if (!item->n) return 1;
        for (size_t i = 0; i + item->n <= seq->n; i++)
            if (!memcmp(seq->s + i, item->s, item->n)) return 1;
        return 0;
    case CT_LIST:
        for (size_t i = 0; i < seq->n; i++)
            if (ct_equal(seq->items[i], item)) return 1;
        return 0;
    case CT_DICT: case CT_NS:
        for (size_t i = 0; i < seq->n; i++)
            if (ct_equal(seq->keys[i], item)) return 1;
        return 0;
    case CT_UNDEF: return 0; /* jinja2's Undefined iterates as empty */
    default:
        ct_fail(c, at, LB_ERR_ARG, "argument of type '%s' is not iterable", ct_kind_name(seq));
        return -1;
    }
}

static ct_value *apply_op(ct_ctx *c, const ct_node *n, const char *op, ct_value *a, ct_value *b);

static ct_value *binary(ct_ctx *c, const ct_node *n) {
    const char *op = n->name;
    ct_value *a = eval(c, n->kids[0]);
    if (!a) return NULL;
    if (!strcmp(op, "and")) return ct_truthy(a) ? eval(c, n->kids[1]) : a;
    if (!strcmp(op, "or")) return ct_truthy(a) ? a : eval(c, n->kids[1]);
    ct_value *b = eval(c, n->kids[1]);
    return b ? apply_op(c, n, op, a, b) : NULL;
}

/* a < b <= c ...: each comparison in turn, stopping at the first false one. */
static ct_value *chain(ct_ctx *c, const ct_node *n) {
    ct_value *a = eval(c, n->kids[0]), *r = NULL;
    for (int i = 0; a && i < n->n_targets; i++) {
        ct_value *b = eval(c, n->kids[i + 1]);
        if (!b || !(r = apply_op(c, n, n->targets[i], a, b))) return NULL;
        if (!ct_truthy(r)) return r;
        a = b;
    }
    return r;
}

static ct_value *apply_op(ct_ctx *c, const ct_node *n, const char *op, ct_value *a, ct_value *b) {
    if (!strcmp(op, "==")) return ct_bool(c, ct_equal(a, b));
    if (!strcmp(op, "!=")) return ct_bool(c, !ct_equal(a, b));
    if (!strcmp(op, "~")) {
        ct_value *sa = ct_to_str(c, a), *sb = sa ? ct_to_str(c, b) : NULL;
        return sb ? concat(c, n, sa, sb) : NULL;
    }
    if (!strcmp(op, "in") || !strcmp(op, "not in")) {
        int r = contains(c, n, a, b);
        return r < 0 ? NULL : ct_bool(c, op[0] == 'i' ? r : !r);
    }
    if (op[0] == '<' || op[0] == '>') {
        int r = compare(c, n, op, a, b);
        return r < 0 ? NULL : ct_bool(c, r);
    }
    return arith(c, n, op, a, b);
}

static ct_value *unary_op(ct_ctx *c, const ct_node *n) {
    ct_value *a = eval(c, n->kids[0]);
    if (!a) return NULL;
    if (!strcmp(n->name, "not")) return ct_bool(c, !ct_truthy(a));
    if (!is_num(a)) return ct_fail(c, n, LB_ERR_ARG, "bad operand type for unary %s: '%s'", n->name, ct_kind_name(a));
    if (n->name[0] == '+') return a->kind == CT_BOOL ? ct_int(c, a->b) : a;
    if (a->kind == CT_FLOAT) return ct_float(c, -a->f);
    if (inum(a) == INT64_MIN) return ct_fail(c, n, LB_ERR_UNSUPPORTED, "integer too large");
    return ct_int(c, -inum(a));
}

/* ---- calls ---- */

/* Evaluate kids[first..] as call arguments (keyword ones last, names in n->kw_names). */
static bool eval_args(ct_ctx *c, const ct_node *n, int first, ct_args *a) {
    int total = n->n_kids - first;
    a->n_kw = n->n_kw;
    a->n_pos = total - n->n_kw;
    a->kw_names = n->kw_names;
    a->pos = ct_alloc(c->arena, (size_t)(total + 1) * sizeof *a->pos);
    if (!a->pos) return ct_fail(c, n, LB_ERR_NOMEM, "out of memory"), false;
    a->kw = a->pos + a->n_pos;
    for (int i = 0; i < total; i++)
        if (!(a->pos[i] = eval(c, n->kids[first + i]))) return false;
    return true;
}

static ct_value *call(ct_ctx *c, const ct_node *n) {
    ct_value *f = eval(c, n->kids[0]);
    if (!f) return NULL;
    if (f->kind != CT_FUNC) {
        if (f->kind == CT_UNDEF) return ct_fail(c, n, LB_ERR_UNSUPPORTED, "'%s' is undefined (called as a function)", describe(n->kids[0]));
        return ct_fail(c, n, LB_ERR_ARG, "'%s' object is not callable", ct_kind_name(f));
    }
    ct_args a;
    if (!eval_args(c, n, 1, &a)) return NULL;
    return f->fn(c, n, f, &a);
}

static ct_value *eval_dict(ct_ctx *c, const ct_node *n) {
    ct_value *d = ct_dict(c, CT_DICT);
    for (int i = 0; d && i + 1 < n->n_kids; i += 2) {
        ct_value *k = eval(c, n->kids[i]), *v = k ? eval(c, n->kids[i + 1]) : NULL;
        if (!v) return NULL;
        if (k->kind == CT_LIST || k->kind == CT_DICT || k->kind == CT_UNDEF)
            return ct_fail(c, n, LB_ERR_ARG, "unhashable dict key of type '%s'", ct_kind_name(k));
        if (!ct_dict_set(c, d, k, v)) return NULL;
    }
    return d;
}

static ct_value *eval(ct_ctx *c, const ct_node *n) {
    if (ct_failed(c)) return NULL;
    switch (n->op) {
    case CT_E_LIT: return n->value;
    case CT_E_NAME: return lookup(c, n->name);
    case CT_E_LIST: {
        ct_value *l = ct_list(c, (size_t)n->n_kids);
        for (int i = 0; l && i < n->n_kids; i++)
            if (!ct_list_push(c, l, eval(c, n->kids[i]))) return NULL;
        if (l) l->b = n->flag;
        return l;
    }
    case CT_E_DICT: return eval_dict(c, n);
    case CT_E_ATTR: {
        ct_value *o = eval(c, n->kids[0]);
        return o ? get_attr(c, n, o, n->name) : NULL;
    }
    case CT_E_INDEX: {
        ct_value *o = eval(c, n->kids[0]), *k = o ? eval(c, n->kids[1]) : NULL;
        if (!k) return NULL;
        if (o->kind == CT_UNDEF)
            return ct_fail(c, n, LB_ERR_ARG, "'%s' is undefined (indexing it)", o->s ? o->s : "value");
        if (k->kind == CT_LIST || k->kind == CT_DICT || k->kind == CT_NS) return ct_undef(c, "item"); /* unhashable */
        ct_value *v = get_item(c, n, o, k);
        if (v || ct_failed(c)) return v;
        if (k->kind == CT_STR) return get_attr(c, n, o, k->s); /* then the attribute */
        return ct_undef(c, "item");
    }
    case CT_E_SLICE: {
        ct_value *o = eval(c, n->kids[0]), *b[3] = {NULL, NULL, NULL};
        if (!o) return NULL;
        if (o->kind == CT_UNDEF) return ct_fail(c, n, LB_ERR_ARG, "'%s' is undefined (slicing it)", o->s ? o->s : "value");
        for (int i = 0; i < 3; i++)
            if (n->kids[i + 1] && !(b[i] = eval(c, n->kids[i + 1]))) return NULL;
        return slice(c, n, o, b);
    }
    case CT_E_CALL: return call(c, n);
    case CT_E_FILTER: {
        ct_args a;
        ct_value *v = eval(c, n->kids[0]);
        if (!v || !eval_args(c, n, 1, &a)) return NULL;
        return ct_apply_filter(c, n, n->name, v, &a);
    }
    case CT_E_TEST: {
        ct_args a;
        ct_value *v = eval(c, n->kids[0]);
        if (!v || !eval_args(c, n, 1, &a)) return NULL;
        int r = ct_apply_test(c, n, n->name, v, &a);
        return r < 0 ? NULL : ct_bool(c, n->flag ? !r : r);
    }
    case CT_E_UNARY: return unary_op(c, n);
    case CT_E_BINARY: return binary(c, n);
    case CT_E_CHAIN: return chain(c, n);
    case CT_E_COND: {
        ct_value *cond = eval(c, n->kids[1]);
        if (!cond) return NULL;
        if (ct_truthy(cond)) return eval(c, n->kids[0]);
        return n->kids[2] ? eval(c, n->kids[2]) : ct_undef(c, "else");
    }
    default: return ct_fail(c, n, LB_ERR_FORMAT, "internal: statement used as an expression");
    }
}

/* ---- statements ---- */

static void emit(ct_ctx *c, const ct_node *at, const char *s, size_t n) {
    ct_buf_put(c->out, s, n);
    if (c->out->oom || c->out->n > CT_MAX_OUTPUT)
        ct_fail(c, at, c->out->oom ? LB_ERR_NOMEM : LB_ERR_UNSUPPORTED, "output longer than %zu bytes", CT_MAX_OUTPUT);
}

static void exec_body(ct_ctx *c, const ct_node *body) {
    for (int i = 0; i < body->n_kids && !ct_failed(c) && !c->ctrl; i++) exec(c, body->kids[i]);
}

/* The items a for loop walks: a list's elements, a dict's keys, a string's characters. */
static ct_value *iter_items(ct_ctx *c, const ct_node *at, ct_value *v) {
    if (v->kind == CT_LIST) return v;
    ct_value *l = ct_list(c, v->n);
    if (!l) return NULL;
    if (v->kind == CT_DICT || v->kind == CT_NS) {
        for (size_t i = 0; i < v->n; i++) ct_list_push(c, l, v->keys[i]);
    } else if (v->kind == CT_STR) {
        size_t cps = ct_utf8_count(v->s, v->n);
        for (size_t i = 0; i < cps; i++) {
            size_t a = ct_utf8_offset(v->s, v->n, i), b = ct_utf8_offset(v->s, v->n, i + 1);
            if (!ct_list_push(c, l, ct_str(c, v->s + a, b - a))) return NULL;
        }
    } else if (v->kind != CT_UNDEF) {
        return ct_fail(c, at, LB_ERR_ARG, "'%s' object is not iterable", ct_kind_name(v));
    }
    return l;
}

static bool bind_targets(ct_ctx *c, const ct_node *n, ct_value *item) {
    if (n->n_targets == 1) return assign(c, n->targets[0], item);
    if (item->kind != CT_LIST || item->n != (size_t)n->n_targets)
        return ct_fail(c, n, LB_ERR_ARG, "cannot unpack a %s into %d variables", ct_kind_name(item), n->n_targets), false;
    for (int i = 0; i < n->n_targets; i++)
        if (!assign(c, n->targets[i], item->items[i])) return false;
    return true;
}

static ct_value *loop_object(ct_ctx *c, ct_value *items, size_t i) {
    size_t len = items->n;
    ct_value *d = ct_dict(c, CT_DICT);
    struct { const char *k; ct_value *v; } f[] = {
        {"index", ct_int(c, (int64_t)i + 1)},         {"index0", ct_int(c, (int64_t)i)},
        {"first", ct_bool(c, i == 0)},                {"last", ct_bool(c, i + 1 == len)},
        {"length", ct_int(c, (int64_t)len)},          {"revindex", ct_int(c, (int64_t)(len - i))},
        {"revindex0", ct_int(c, (int64_t)(len - i - 1))},
        {"previtem", i > 0 ? items->items[i - 1] : ct_undef(c, "previtem")},
        {"nextitem", i + 1 < len ? items->items[i + 1] : ct_undef(c, "nextitem")},
    };
    for (size_t k = 0; d && k < sizeof f / sizeof *f; k++)
        if (!ct_dict_set(c, d, ct_str(c, f[k].k, strlen(f[k].k)), f[k].v)) return NULL;
    return d;
}

static void exec_for(ct_ctx *c, const ct_node *n) {
    ct_value *src = eval(c, n->kids[0]);
    ct_value *items = src ? iter_items(c, n, src) : NULL;
    if (!items) return;
    if (n->kids[1]) { /* `for x in xs if cond`: filter first, so loop.* counts what is kept */
        ct_value *kept = ct_list(c, items->n);
        for (size_t i = 0; kept && i < items->n; i++) {
            if (++c->steps > CT_MAX_STEPS) {
                ct_fail(c, n, LB_ERR_UNSUPPORTED, "the template runs more than %d loop iterations", CT_MAX_STEPS);
                return;
            }
            ct_frame f;
            push_frame(c, &f);
            ct_value *cond = bind_targets(c, n, items->items[i]) ? eval(c, n->kids[1]) : NULL;
            pop_frame(c);
            if (!cond) return;
            if (ct_truthy(cond) && !ct_list_push(c, kept, items->items[i])) return;
        }
        items = kept;
        if (!items) return;
    }
    c->loop_depth++;
    for (size_t i = 0; i < items->n && !ct_failed(c); i++) {
        if (++c->steps > CT_MAX_STEPS) {
            ct_fail(c, n, LB_ERR_UNSUPPORTED, "the template runs more than %d loop iterations", CT_MAX_STEPS);
            break;
        }
        ct_frame f;
        push_frame(c, &f);
        if (bind_targets(c, n, items->items[i]) && assign(c, "loop", loop_object(c, items, i))) exec_body(c, n->kids[2]);
        pop_frame(c);
        int ctrl = c->ctrl;
        c->ctrl = 0;
        if (ctrl == 1) break;
    }
    c->loop_depth--;
    if (!items->n && n->kids[3] && !ct_failed(c)) exec_body(c, n->kids[3]);
}

static void exec_set(ct_ctx *c, const ct_node *n) {
    ct_value *v;
    if (n->flag2) { /* {% set x %}body{% endset %} */
        ct_buf b = {0}, *saved = c->out;
        c->out = &b;
        exec_body(c, n->kids[0]);
        c->out = saved;
        v = ct_failed(c) ? NULL : b.oom ? ct_fail(c, n, LB_ERR_NOMEM, "out of memory") : ct_str(c, b.p ? b.p : "", b.n);
        free(b.p);
    } else {
        v = eval(c, n->kids[0]);
    }
    if (!v) return;
    if (n->flag) { /* ns.attr = v */
        ct_value *ns = lookup(c, n->targets[0]);
        if (!ns) return;
        if (ns->kind != CT_NS) {
            ct_fail(c, n, LB_ERR_ARG, "cannot assign attribute '%s' on '%s', which is a %s, not a namespace()", n->targets[1],
                    n->targets[0], ct_kind_name(ns));
            return;
        }
        ct_dict_set(c, ns, ct_str(c, n->targets[1], strlen(n->targets[1])), v);
        return;
    }
    bind_targets(c, n, v);
}

#define MAX_CALL_DEPTH 64

/* A {% macro %} called: a new frame over the top level, parameters bound, the body rendered to a string. */
static ct_value *call_macro(ct_ctx *c, const ct_node *at, const ct_value *f, const ct_args *a) {
    const ct_node *m = f->macro;
    if (++c->steps > CT_MAX_STEPS) return ct_fail(c, at, LB_ERR_UNSUPPORTED, "the template makes more than %d calls", CT_MAX_STEPS);
    if (c->call_depth >= MAX_CALL_DEPTH) return ct_fail(c, at, LB_ERR_UNSUPPORTED, "macros nested deeper than %d", MAX_CALL_DEPTH);
    if (a->n_pos > m->n_targets)
        return ct_fail(c, at, LB_ERR_ARG, "macro '%s' takes %d arguments, got %d", m->name, m->n_targets, a->n_pos);
    for (int k = 0; k < a->n_kw; k++) {
        bool known = false;
        for (int i = 0; i < m->n_targets; i++) known |= !strcmp(m->targets[i], a->kw_names[k]);
        if (!known) return ct_fail(c, at, LB_ERR_ARG, "macro '%s' has no parameter '%s'", m->name, a->kw_names[k]);
    }
    ct_frame fr = {.parent = c->top}, *saved_frame = c->frame;
    ct_buf b = {0}, *saved_out = c->out;
    int saved_loops = c->loop_depth;
    c->frame = &fr;
    for (int i = 0; i < m->n_targets && !ct_failed(c); i++) {
        ct_value *v = i < a->n_pos ? a->pos[i] : NULL;
        for (int k = 0; !v && k < a->n_kw; k++)
            if (!strcmp(m->targets[i], a->kw_names[k])) v = a->kw[k];
        if (!v) v = m->kids[1 + i] ? eval(c, m->kids[1 + i]) : ct_undef(c, m->targets[i]);
        assign(c, m->targets[i], v);
    }
    c->out = &b;
    c->loop_depth = 0;
    c->call_depth++;
    exec_body(c, m->kids[0]);
    c->call_depth--;
    c->loop_depth = saved_loops;
    c->out = saved_out;
    c->frame = saved_frame;
    ct_value *r = ct_failed(c) ? NULL : b.oom ? ct_fail(c, at, LB_ERR_NOMEM, "out of memory") : ct_str(c, b.p ? b.p : "", b.n);
    free(b.p);
    return r;
}

static void exec(ct_ctx *c, const ct_node *n) {
    if (ct_failed(c)) return;
    switch (n->op) {
    case CT_S_TEXT: emit(c, n, n->text, n->text_len); return;
    case CT_S_OUTPUT: {
        ct_value *v = eval(c, n->kids[0]);
        if (!v) return;
        if (v->kind == CT_STR) {
            emit(c, n, v->s, v->n);
            return;
        }
        ct_value *s = ct_to_str(c, v);
        if (s) emit(c, n, s->s, s->n);
        return;
    }
    case CT_S_IF:
        for (int i = 0; i + 1 < n->n_kids; i += 2) {
            ct_value *cond = eval(c, n->kids[i]);
            if (!cond) return;
            if (ct_truthy(cond)) {
                exec_body(c, n->kids[i + 1]);
                return;
            }
        }
        if (n->n_kids % 2) exec_body(c, n->kids[n->n_kids - 1]);
        return;
    case CT_S_FOR: exec_for(c, n); return;
    case CT_S_SET: exec_set(c, n); return;
    case CT_S_FILTER: {
        ct_buf b = {0}, *saved = c->out;
        ct_frame f;
        c->out = &b;
        exec_body(c, n->kids[0]);
        c->out = saved;
        push_frame(c, &f);
        ct_value *body = ct_failed(c) ? NULL : b.oom ? ct_fail(c, n, LB_ERR_NOMEM, "out of memory") : ct_str(c, b.p ? b.p : "", b.n);
        ct_value *v = body && assign(c, CT_FILTER_BODY, body) ? eval(c, n->kids[1]) : NULL;
        pop_frame(c);
        free(b.p);
        ct_value *s = v ? ct_to_str(c, v) : NULL;
        if (s) emit(c, n, s->s, s->n);
        return;
    }
    case CT_S_MACRO: {
        ct_value *f = ct_new(c, CT_FUNC);
        if (!f) return;
        f->fn = call_macro;
        f->macro = n;
        f->fname = n->name;
        assign(c, n->name, f);
        return;
    }
    case CT_S_BREAK: case CT_S_CONTINUE:
        if (!c->loop_depth) {
            ct_fail(c, n, LB_ERR_FORMAT, "'%s' outside a for loop", n->op == CT_S_BREAK ? "break" : "continue");
            return;
        }
        c->ctrl = n->op == CT_S_BREAK ? 1 : 2;
        return;
    case CT_S_BODY: exec_body(c, n); return;
    default: ct_fail(c, n, LB_ERR_FORMAT, "internal: expression used as a statement"); return;
    }
}

lb_status ct_render(ct_ctx *c, const lb_chat_template *t, ct_value *vars) {
    ct_frame top;
    push_frame(c, &top);
    c->top = &top;
    for (size_t i = 0; i < vars->n && !ct_failed(c); i++) {
        const ct_value *k = vars->keys[i];
        if (k->kind == CT_STR) assign(c, k->s, vars->items[i]);
    }
    exec_body(c, t->root);
    pop_frame(c);
    return c->status;
}
