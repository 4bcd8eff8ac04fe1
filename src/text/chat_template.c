/*
 * chat_template.c - the lexer and parser of the chat-template Jinja subset (see chat_template.h).
 *
 * Lexing follows jinja2's lexer (jinja2/lexer.py) under Hugging Face's settings: newlines normalized to
 * "\n" and one trailing newline dropped (keep_trailing_newline off); `{%-` / `{{-` / `{#-` strip all
 * whitespace before the tag, `-%}` / `-}}` / `-#}` all whitespace after it; trim_blocks drops the one
 * newline after `%}` and `#}`; lstrip_blocks drops the spaces and tabs between a line start and `{%` or
 * `{#` (a `+` turns either off). Expressions follow jinja2's grammar and precedence (jinja2/parser.py):
 * conditional, or, and, not, comparison, `~`, `+ -`, `* / // %`, unary `- +`, `**`, then filters `|`
 * and tests `is`, then primaries with `.attr`, `[index]`, `[a:b:c]` and calls.
 */
#include "chat_template.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---- */

typedef struct ct_chunk {
    struct ct_chunk *next;
    size_t used, cap;
    max_align_t data[];
} ct_chunk;

struct ct_arena {
    ct_chunk *head;
    size_t total;
};

#define CT_MAX_ARENA ((size_t)512 << 20) /* a render holding more is a runaway template */

ct_arena *ct_arena_new(void) { return calloc(1, sizeof(ct_arena)); }

void ct_arena_free(ct_arena *a) {
    if (!a) return;
    for (ct_chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(a);
}

void *ct_alloc(ct_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!n) n = 16;
    ct_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ((size_t)1 << 16) ? n : ((size_t)1 << 16);
        if (cap > CT_MAX_ARENA || a->total > CT_MAX_ARENA - cap) return NULL;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
        a->total += cap;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *ct_strdup(ct_arena *a, const char *s, size_t n) {
    if (n == SIZE_MAX) return NULL;
    char *p = ct_alloc(a, n + 1);
    if (p) {
        if (n) memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* ---- lexer ---- */

typedef enum { TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP, TK_END } tk_kind;

typedef struct token {
    tk_kind kind;
    int line;
    const char *s; /* NAME / OP: the text; STR: decoded contents */
    size_t n;
    int64_t i;
    double f;
} token;

typedef enum { PC_TEXT, PC_OUT, PC_STMT } piece_kind;

typedef struct piece {
    piece_kind kind;
    int line;
    const char *text; /* PC_TEXT */
    size_t len;
    token *toks; /* PC_OUT / PC_STMT: ends with TK_END */
    int n_toks;
} piece;

typedef struct parser {
    lb_chat_template *t;
    ct_arena *a;
    lb_error *err;
    lb_status st;
    const char *src;
    size_t len, pos;
    int line;
    piece *pieces;
    int n_pieces, cap_pieces;
    int pi;        /* current piece while parsing */
    token *tk;     /* tokens of the current tag */
    int ti;        /* current token */
    int depth;     /* expression nesting, bounded */
    int loops;     /* for loops around the statement being parsed (break / continue need one) */
} parser;

#define MAX_DEPTH 200

static bool fail(parser *p, int line, lb_status s, const char *fmt, ...) LB_PRINTF(4, 5);
static bool fail(parser *p, int line, lb_status s, const char *fmt, ...) {
    if (p->st) return false;
    char msg[LB_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *q = msg; *q; q++) /* one line, whatever names or messages the template holds */
        if ((unsigned char)*q < 0x20) *q = ' ';
    p->st = lb_err_set(p->err, s, "chat template line %d: %s", line, msg);
    return false;
}

static bool oom(parser *p) { return fail(p, p->line, LB_ERR_NOMEM, "out of memory"); }

static bool push_piece(parser *p, piece pc) {
    if (p->n_pieces == p->cap_pieces) {
        int cap = p->cap_pieces ? p->cap_pieces * 2 : 64;
        piece *np = ct_alloc(p->a, (size_t)cap * sizeof *np);
        if (!np) return oom(p);
        if (p->n_pieces) memcpy(np, p->pieces, (size_t)p->n_pieces * sizeof *np);
        p->pieces = np;
        p->cap_pieces = cap;
    }
    p->pieces[p->n_pieces++] = pc;
    return true;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static bool is_name_start(char c) { return isalpha((unsigned char)c) || c == '_'; }
static bool is_name_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* Append code point cp as UTF-8. */
static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63)); o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string literal at p->pos (the quote), decoded with Python's escapes as jinja2 does. */
static bool lex_string(parser *p, token *t) {
    char q = p->src[p->pos];
    size_t start = ++p->pos;
    while (p->pos < p->len && p->src[p->pos] != q) {
        if (p->src[p->pos] == '\\' && p->pos + 1 < p->len) p->pos++;
        p->pos++;
    }
    if (p->pos >= p->len) return fail(p, t->line, LB_ERR_FORMAT, "unterminated string literal");
    size_t end = p->pos++;
    char *o = ct_alloc(p->a, end - start + 1);
    if (!o) return oom(p);
    size_t n = 0;
    for (size_t i = start; i < end; i++) {
        char c = p->src[i];
        if (c == '\n') p->line++;
        if (c != '\\') { o[n++] = c; continue; }
        char e = p->src[++i];
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits) {
            uint32_t cp = 0;
            for (int k = 0; k < digits; k++) {
                int h = i + 1 < end ? hexval(p->src[i + 1]) : -1;
                if (h < 0) return fail(p, t->line, LB_ERR_FORMAT, "bad \\%c escape in a string literal", e);
                cp = cp << 4 | (uint32_t)h;
                i++;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000))
                return fail(p, t->line, LB_ERR_UNSUPPORTED, "escape \\%c%X is not a Unicode scalar value", e, cp);
            n += put_utf8(o + n, cp); /* never longer than the escape it replaces */
            continue;
        }
        switch (e) {
        case 'n': o[n++] = '\n'; break;
        case 't': o[n++] = '\t'; break;
        case 'r': o[n++] = '\r'; break;
        case '\\': o[n++] = '\\'; break;
        case '\'': o[n++] = '\''; break;
        case '"': o[n++] = '"'; break;
        case '0': o[n++] = '\0'; break;
        case 'a': o[n++] = '\a'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'v': o[n++] = '\v'; break;
        case '\n': p->line++; break; /* a backslash-newline joins lines */
        default: o[n++] = '\\'; o[n++] = e; /* Python keeps unknown escapes */
        }
    }
    o[n] = 0;
    t->kind = TK_STR;
    t->s = o;
    t->n = n;
    return true;
}

static bool lex_number(parser *p, token *t) {
    size_t s = p->pos;
    while (p->pos < p->len && (isdigit((unsigned char)p->src[p->pos]) || p->src[p->pos] == '_')) p->pos++;
    bool is_float = false;
    if (p->pos + 1 < p->len && p->src[p->pos] == '.' && isdigit((unsigned char)p->src[p->pos + 1])) {
        is_float = true;
        p->pos++;
        while (p->pos < p->len && isdigit((unsigned char)p->src[p->pos])) p->pos++;
    }
    if (p->pos < p->len && (p->src[p->pos] == 'e' || p->src[p->pos] == 'E')) {
        size_t q = p->pos + 1;
        if (q < p->len && (p->src[q] == '+' || p->src[q] == '-')) q++;
        if (q < p->len && isdigit((unsigned char)p->src[q])) {
            is_float = true;
            p->pos = q;
            while (p->pos < p->len && isdigit((unsigned char)p->src[p->pos])) p->pos++;
        }
    }
    char buf[64];
    size_t n = 0;
    for (size_t i = s; i < p->pos && n + 1 < sizeof buf; i++)
        if (p->src[i] != '_') buf[n++] = p->src[i];
    buf[n] = 0;
    if (is_float) {
        t->kind = TK_FLOAT;
        t->f = strtod(buf, NULL);
        return true;
    }
    t->kind = TK_INT;
    errno = 0;
    unsigned long long v = strtoull(buf, NULL, 10);
    if (errno || v > INT64_MAX || n + 1 >= sizeof buf) return fail(p, t->line, LB_ERR_UNSUPPORTED, "integer %s is too large", buf);
    t->i = (int64_t)v;
    return true;
}

static const char *const two_char_ops[] = {"==", "!=", "<=", ">=", "//", "**"};

/* Tokens of one tag up to its end (`}}` or `%}` at bracket depth 0, with its whitespace sign). Returns
 * the sign ('-', '+' or 0) through *sign. */
static bool lex_tag(parser *p, piece *pc, char close, char *sign) {
    int cap = 16, n = 0, depth = 0;
    token *toks = ct_alloc(p->a, (size_t)cap * sizeof *toks);
    if (!toks) return oom(p);
    for (;;) {
        while (p->pos < p->len && is_ws(p->src[p->pos])) p->line += p->src[p->pos++] == '\n';
        if (p->pos >= p->len)
            return fail(p, pc->line, LB_ERR_FORMAT, "unclosed '%s' tag (no '%s' before the end of the template)",
                        close == '}' ? "{{" : "{%", close == '}' ? "}}" : "%}");
        const char *s = p->src + p->pos;
        size_t left = p->len - p->pos;
        if (depth == 0) {
            size_t k = (s[0] == '-' || s[0] == '+') ? 1 : 0;
            if (left >= k + 2 && s[k] == close && s[k + 1] == '}') {
                *sign = k ? s[0] : 0;
                p->pos += k + 2;
                break;
            }
        }
        if (n + 1 >= cap) {
            token *nt = ct_alloc(p->a, (size_t)cap * 2 * sizeof *nt);
            if (!nt) return oom(p);
            memcpy(nt, toks, (size_t)n * sizeof *nt);
            toks = nt;
            cap *= 2;
        }
        token *t = &toks[n++];
        t->line = p->line;
        if (s[0] == '\'' || s[0] == '"') {
            if (!lex_string(p, t)) return false;
        } else if (isdigit((unsigned char)s[0])) {
            if (!lex_number(p, t)) return false;
        } else if (is_name_start(s[0])) {
            size_t k = 1;
            while (k < left && is_name_char(s[k])) k++;
            t->kind = TK_NAME;
            t->s = ct_strdup(p->a, s, k);
            t->n = k;
            if (!t->s) return oom(p);
            p->pos += k;
        } else {
            size_t k = 1;
            for (size_t j = 0; j < sizeof two_char_ops / sizeof *two_char_ops; j++)
                if (left >= 2 && s[0] == two_char_ops[j][0] && s[1] == two_char_ops[j][1]) k = 2;
            if (k == 1 && !strchr("+-*/%~|.,:()[]{}<>=", s[0]))
                return fail(p, t->line, LB_ERR_FORMAT, "unexpected character '%c' in a tag", s[0]);
            if (s[0] == '(' || s[0] == '[' || s[0] == '{') depth++;
            if ((s[0] == ')' || s[0] == ']' || s[0] == '}') && depth > 0) depth--;
            t->kind = TK_OP;
            t->s = ct_strdup(p->a, s, k);
            t->n = k;
            if (!t->s) return oom(p);
            p->pos += k;
        }
    }
    toks[n] = (token){.kind = TK_END, .line = p->line};
    pc->toks = toks;
    pc->n_toks = n + 1;
    return true;
}

/* Text up to the next tag, with the tag's opening whitespace control applied. */
static bool emit_text(parser *p, size_t start, size_t end, int line, char open, char sign, bool line_starting) {
    if (sign == '-') {
        while (end > start && is_ws(p->src[end - 1])) end--;
    } else if (sign != '+' && (open == '%' || open == '#')) { /* lstrip_blocks */
        size_t l = end;
        while (l > start && p->src[l - 1] != '\n') l--;
        bool all_ws = l < end;
        for (size_t i = l; i < end && all_ws; i++) all_ws = p->src[i] == ' ' || p->src[i] == '\t' || p->src[i] == '\r' || p->src[i] == '\v' || p->src[i] == '\f';
        if (all_ws && (l > start || line_starting)) end = l;
    }
    if (end == start) return true;
    return push_piece(p, (piece){.kind = PC_TEXT, .line = line, .text = p->src + start, .len = end - start});
}

/* After a tag's end: `-` strips all whitespace, trim_blocks one newline after a block or comment.
 * Returns whether what was consumed ends with a newline (jinja2's line_starting). */
static bool after_tag(parser *p, char sign, bool block) {
    bool nl = false;
    if (sign == '-') {
        while (p->pos < p->len && is_ws(p->src[p->pos])) {
            nl = p->src[p->pos] == '\n';
            p->line += nl;
            p->pos++;
        }
    } else if (sign != '+' && block && p->pos < p->len && p->src[p->pos] == '\n') {
        p->pos++;
        p->line++;
        nl = true;
    }
    return nl;
}

static bool lex_all(parser *p) {
    bool line_starting = true;
    while (p->pos < p->len) {
        size_t start = p->pos;
        int line = p->line;
        size_t i = start;
        while (i + 1 < p->len && !(p->src[i] == '{' && (p->src[i + 1] == '{' || p->src[i + 1] == '%' || p->src[i + 1] == '#')))
            i++;
        if (i + 1 >= p->len) i = p->len;
        for (size_t k = start; k < i; k++) p->line += p->src[k] == '\n';
        if (i == p->len) return emit_text(p, start, i, line, 0, 0, line_starting);
        char open = p->src[i + 1];
        char sign = i + 2 < p->len && (p->src[i + 2] == '-' || p->src[i + 2] == '+') ? p->src[i + 2] : 0;
        if (!emit_text(p, start, i, line, open, sign, line_starting)) return false;
        p->pos = i + 2 + (sign ? 1 : 0);
        int tag_line = p->line;
        char end_sign = 0;
        if (open == '#') {
            const char *e = NULL;
            for (size_t k = p->pos; k + 1 < p->len; k++)
                if (p->src[k] == '#' && p->src[k + 1] == '}') { e = p->src + k; break; }
            if (!e) return fail(p, tag_line, LB_ERR_FORMAT, "unclosed comment '{#' (no '#}')");
            size_t k = (size_t)(e - p->src);
            if (k > p->pos && (p->src[k - 1] == '-' || p->src[k - 1] == '+')) end_sign = p->src[k - 1];
            for (size_t j = p->pos; j < k; j++) p->line += p->src[j] == '\n';
            p->pos = k + 2;
            line_starting = after_tag(p, end_sign, true);
            continue;
        }
        piece pc = {.kind = open == '{' ? PC_OUT : PC_STMT, .line = tag_line};
        if (!lex_tag(p, &pc, open == '{' ? '}' : '%', &end_sign) || !push_piece(p, pc)) return false;
        line_starting = after_tag(p, end_sign, open == '%');
    }
    return true;
}

/* ---- AST construction ---- */

static ct_node *node(parser *p, ct_op op, int line) {
    ct_node *n = ct_alloc(p->a, sizeof *n);
    if (!n) {
        oom(p);
        return NULL;
    }
    n->op = op;
    n->line = line;
    return n;
}

/* Kids are collected in a small growable array, then copied into the arena. */
typedef struct kids {
    ct_node **v;
    const char **names;
    int n, cap;
} kids;

static bool kids_push(parser *p, kids *k, ct_node *n, const char *name) {
    if (!n) return false;
    if (k->n == k->cap) {
        int cap = k->cap ? k->cap * 2 : 8;
        ct_node **nv = ct_alloc(p->a, (size_t)cap * sizeof *nv);
        const char **nn = ct_alloc(p->a, (size_t)cap * sizeof *nn);
        if (!nv || !nn) return oom(p);
        if (k->n) {
            memcpy(nv, k->v, (size_t)k->n * sizeof *nv);
            memcpy(nn, k->names, (size_t)k->n * sizeof *nn);
        }
        k->v = nv;
        k->names = nn;
        k->cap = cap;
    }
    k->names[k->n] = name;
    k->v[k->n++] = n;
    return true;
}

static void set_kids(ct_node *n, kids *k) {
    n->kids = k->v;
    n->n_kids = k->n;
}

static token *cur(parser *p) { return &p->tk[p->ti]; }
static bool is_op(parser *p, const char *op) { return cur(p)->kind == TK_OP && !strcmp(cur(p)->s, op); }
static bool is_name(parser *p, const char *nm) { return cur(p)->kind == TK_NAME && !strcmp(cur(p)->s, nm); }

static const char *tok_desc(const token *t) {
    switch (t->kind) {
    case TK_END: return "the end of the tag";
    case TK_STR: return "a string";
    case TK_INT: case TK_FLOAT: return "a number";
    default: return t->s;
    }
}

static bool expect_op(parser *p, const char *op) {
    if (is_op(p, op)) {
        p->ti++;
        return true;
    }
    return fail(p, cur(p)->line, LB_ERR_FORMAT, "expected '%s', found '%s'", op, tok_desc(cur(p)));
}

static ct_node *parse_expr(parser *p);
static ct_node *parse_or(parser *p);
static ct_node *parse_unary(parser *p, bool with_filter);
static ct_node *parse_postfix(parser *p, ct_node *n);
static ct_node *parse_primary(parser *p);

static ct_node *lit(parser *p, int line, ct_kind k) {
    ct_node *n = node(p, CT_E_LIT, line);
    if (!n) return NULL;
    n->value = ct_alloc(p->a, sizeof *n->value);
    if (!n->value) {
        oom(p);
        return NULL;
    }
    n->value->kind = k;
    return n;
}

/* Call arguments after '(' : positional, then name=value. */
static bool parse_args(parser *p, kids *k) {
    int n_kw = 0, n_args = 0;
    while (!is_op(p, ")")) {
        if (n_args++ && !expect_op(p, ",")) return false;
        if (is_op(p, ")")) break; /* trailing comma */
        if (cur(p)->kind == TK_NAME && p->tk[p->ti + 1].kind == TK_OP && !strcmp(p->tk[p->ti + 1].s, "=")) {
            const char *name = cur(p)->s;
            p->ti += 2;
            if (!kids_push(p, k, parse_expr(p), name)) return false;
            n_kw++;
        } else {
            if (n_kw) return fail(p, cur(p)->line, LB_ERR_FORMAT, "positional argument after a keyword argument");
            if (!kids_push(p, k, parse_expr(p), NULL)) return false;
        }
    }
    p->ti++;
    return true;
}

/* Arguments become kids[first..]; keyword names go to n->kw_names (the last n_kw kids). */
static void finish_args(ct_node *n, kids *k, int first) {
    set_kids(n, k);
    int n_kw = 0;
    for (int i = first; i < k->n; i++) n_kw += k->names[i] != NULL;
    n->n_kw = n_kw;
    n->kw_names = k->names + (k->n - n_kw);
}

static ct_node *parse_list_literal(parser *p, const char *close, int line) {
    ct_node *n = node(p, CT_E_LIST, line);
    kids k = {0};
    while (n && !is_op(p, close)) {
        if (k.n && !expect_op(p, ",")) return NULL;
        if (is_op(p, close)) break;
        if (!kids_push(p, &k, parse_expr(p), NULL)) return NULL;
    }
    if (!n) return NULL;
    p->ti++;
    set_kids(n, &k);
    return n;
}

static ct_node *parse_dict_literal(parser *p, int line) {
    ct_node *n = node(p, CT_E_DICT, line);
    kids k = {0};
    while (n && !is_op(p, "}")) {
        if (k.n && !expect_op(p, ",")) return NULL;
        if (is_op(p, "}")) break;
        if (!kids_push(p, &k, parse_expr(p), NULL) || !expect_op(p, ":") || !kids_push(p, &k, parse_expr(p), NULL))
            return NULL;
    }
    if (!n) return NULL;
    p->ti++;
    set_kids(n, &k);
    return n;
}

static ct_node *parse_primary(parser *p) {
    token *t = cur(p);
    int line = t->line;
    ct_node *n = NULL;
    if (t->kind == TK_STR) {
        /* adjacent string literals concatenate */
        size_t total = 0;
        int j = p->ti;
        while (p->tk[j].kind == TK_STR) total += p->tk[j++].n;
        if (!(n = lit(p, line, CT_STR))) return NULL;
        char *s = ct_alloc(p->a, total + 1);
        if (!s) return oom(p), NULL;
        size_t o = 0;
        while (cur(p)->kind == TK_STR) {
            memcpy(s + o, cur(p)->s, cur(p)->n);
            o += cur(p)->n;
            p->ti++;
        }
        n->value->s = s;
        n->value->n = total;
        return n;
    }
    if (t->kind == TK_INT || t->kind == TK_FLOAT) {
        if (!(n = lit(p, line, t->kind == TK_INT ? CT_INT : CT_FLOAT))) return NULL;
        n->value->i = t->i;
        n->value->f = t->f;
        p->ti++;
        return n;
    }
    if (t->kind == TK_NAME) {
        p->ti++;
        const char *s = t->s;
        if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "false") || !strcmp(s, "False")) {
            if ((n = lit(p, line, CT_BOOL))) n->value->b = s[0] == 't' || s[0] == 'T';
            return n;
        }
        if (!strcmp(s, "none") || !strcmp(s, "None")) return lit(p, line, CT_NONE);
        if ((n = node(p, CT_E_NAME, line))) n->name = s;
        return n;
    }
    if (t->kind == TK_OP && !strcmp(t->s, "(")) {
        p->ti++;
        if (is_op(p, ")")) { /* empty tuple */
            p->ti++;
            if ((n = node(p, CT_E_LIST, line))) n->flag = true;
            return n;
        }
        n = parse_expr(p);
        if (n && is_op(p, ",")) { /* a tuple: evaluated as a list */
            ct_node *l = node(p, CT_E_LIST, line);
            kids k = {0};
            if (!l || !kids_push(p, &k, n, NULL)) return NULL;
            l->flag = true;
            while (is_op(p, ",")) {
                p->ti++;
                if (is_op(p, ")")) break;
                if (!kids_push(p, &k, parse_expr(p), NULL)) return NULL;
            }
            set_kids(l, &k);
            n = l;
        }
        if (!n || !expect_op(p, ")")) return NULL;
        return n;
    }
    if (t->kind == TK_OP && !strcmp(t->s, "[")) {
        p->ti++;
        return parse_list_literal(p, "]", line);
    }
    if (t->kind == TK_OP && !strcmp(t->s, "{")) {
        p->ti++;
        return parse_dict_literal(p, line);
    }
    fail(p, line, LB_ERR_FORMAT, "unexpected '%s' in an expression", tok_desc(t));
    return NULL;
}

/* [index] or [a:b:c] after the object n. */
static ct_node *parse_subscript(parser *p, ct_node *obj, int line) {
    ct_node *parts[3] = {NULL, NULL, NULL};
    int n_colon = 0;
    for (;;) {
        if (is_op(p, "]")) break;
        if (is_op(p, ":")) {
            if (++n_colon > 2) return fail(p, line, LB_ERR_FORMAT, "too many ':' in a slice"), NULL;
            p->ti++;
            continue;
        }
        if (parts[n_colon]) return fail(p, line, LB_ERR_FORMAT, "expected ']' or ':' in a subscript"), NULL;
        if (!(parts[n_colon] = parse_expr(p))) return NULL;
    }
    p->ti++;
    ct_node *n = node(p, n_colon ? CT_E_SLICE : CT_E_INDEX, line);
    if (!n) return NULL;
    if (!n_colon && !parts[0]) return fail(p, line, LB_ERR_FORMAT, "empty subscript '[]'"), NULL;
    n->n_kids = n_colon ? 4 : 2;
    n->kids = ct_alloc(p->a, 4 * sizeof *n->kids);
    if (!n->kids) return oom(p), NULL;
    n->kids[0] = obj;
    for (int i = 0; i < 3; i++) n->kids[i + 1] = parts[i];
    return n;
}

static ct_node *parse_postfix(parser *p, ct_node *n) {
    while (n) {
        int line = cur(p)->line;
        if (is_op(p, ".")) {
            p->ti++;
            token *t = cur(p);
            if (t->kind != TK_NAME && t->kind != TK_INT)
                return fail(p, line, LB_ERR_FORMAT, "expected an attribute name after '.'"), NULL;
            ct_node *a = node(p, t->kind == TK_NAME ? CT_E_ATTR : CT_E_INDEX, line);
            if (!a) return NULL;
            a->kids = ct_alloc(p->a, 2 * sizeof *a->kids);
            if (!a->kids) return oom(p), NULL;
            a->kids[0] = n;
            a->n_kids = 1;
            if (t->kind == TK_NAME) {
                a->name = t->s;
            } else { /* x.0 is x[0] */
                if (!(a->kids[1] = lit(p, line, CT_INT))) return NULL;
                a->kids[1]->value->i = t->i;
                a->n_kids = 2;
            }
            p->ti++;
            n = a;
        } else if (is_op(p, "[")) {
            p->ti++;
            n = parse_subscript(p, n, line);
        } else if (is_op(p, "(")) {
            p->ti++;
            ct_node *c = node(p, CT_E_CALL, line);
            kids k = {0};
            if (!c || !kids_push(p, &k, n, NULL) || !parse_args(p, &k)) return NULL;
            finish_args(c, &k, 1);
            n = c;
        } else {
            break;
        }
    }
    return n;
}

/* One filter or test applied to n, from its name on: name, name(args), or a test's one bare argument. */
static ct_node *filter_call(parser *p, ct_node *n, bool filter, bool negate, int line) {
    if (cur(p)->kind != TK_NAME)
        return fail(p, line, LB_ERR_FORMAT, "expected a %s name after '%s'", filter ? "filter" : "test", filter ? "|" : "is"), NULL;
    ct_node *f = node(p, filter ? CT_E_FILTER : CT_E_TEST, line);
    if (!f) return NULL;
    f->name = cur(p)->s;
    f->flag = negate;
    p->ti++;
    kids k = {0};
    if (!kids_push(p, &k, n, NULL)) return NULL;
    if (is_op(p, "(")) {
        p->ti++;
        if (!parse_args(p, &k)) return NULL;
    } else if (!filter) { /* `is divisibleby 3`, `is sameas none` */
        token *t = cur(p);
        bool starts = t->kind == TK_STR || t->kind == TK_INT || t->kind == TK_FLOAT ||
                      (t->kind == TK_NAME && strcmp(t->s, "else") && strcmp(t->s, "or") && strcmp(t->s, "and")) ||
                      (t->kind == TK_OP && (!strcmp(t->s, "[") || !strcmp(t->s, "{")));
        if (starts && !kids_push(p, &k, parse_postfix(p, parse_primary(p)), NULL)) return NULL;
    }
    finish_args(f, &k, 1);
    return f;
}

/* `| name(args)` and `is [not] name(args)` after n. */
static ct_node *parse_filters(parser *p, ct_node *n) {
    while (n) {
        int line = cur(p)->line;
        bool filter = is_op(p, "|"), test = is_name(p, "is");
        if (!filter && !test) break;
        p->ti++;
        bool negate = test && is_name(p, "not");
        if (negate) p->ti++;
        n = filter_call(p, n, filter, negate, line);
    }
    return n;
}

static ct_node *binary(parser *p, const char *op, ct_node *l, ct_node *r, int line) {
    if (!l || !r) return NULL;
    ct_node *n = node(p, CT_E_BINARY, line);
    if (!n) return NULL;
    n->name = op;
    n->kids = ct_alloc(p->a, 2 * sizeof *n->kids);
    if (!n->kids) return oom(p), NULL;
    n->kids[0] = l;
    n->kids[1] = r;
    n->n_kids = 2;
    return n;
}

static ct_node *unary(parser *p, const char *op, ct_node *x, int line) {
    if (!x) return NULL;
    ct_node *n = node(p, CT_E_UNARY, line);
    if (!n) return NULL;
    n->name = op;
    n->kids = ct_alloc(p->a, sizeof *n->kids);
    if (!n->kids) return oom(p), NULL;
    n->kids[0] = x;
    n->n_kids = 1;
    return n;
}

/* Operands of `**` are unary expressions with their filters, as in jinja2: -2 ** 2 is (-2) ** 2. */
static ct_node *parse_pow(parser *p) {
    ct_node *l = parse_unary(p, true);
    while (l && is_op(p, "**")) {
        int line = cur(p)->line;
        p->ti++;
        l = binary(p, "**", l, parse_unary(p, true), line);
    }
    return l;
}

static ct_node *parse_unary(parser *p, bool with_filter) {
    int line = cur(p)->line;
    ct_node *n;
    if (++p->depth > MAX_DEPTH) return fail(p, line, LB_ERR_UNSUPPORTED, "expression nested too deeply"), NULL;
    if (is_op(p, "-") || is_op(p, "+")) {
        const char *op = cur(p)->s;
        p->ti++;
        n = unary(p, op, parse_unary(p, false), line);
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    p->depth--;
    return with_filter ? parse_filters(p, n) : n;
}

static ct_node *parse_math2(parser *p) {
    ct_node *l = parse_pow(p);
    while (l && (is_op(p, "*") || is_op(p, "/") || is_op(p, "//") || is_op(p, "%"))) {
        const char *op = cur(p)->s;
        int line = cur(p)->line;
        p->ti++;
        l = binary(p, op, l, parse_pow(p), line);
    }
    return l;
}

static ct_node *parse_math1(parser *p) {
    ct_node *l = parse_math2(p);
    while (l && (is_op(p, "+") || is_op(p, "-"))) {
        const char *op = cur(p)->s;
        int line = cur(p)->line;
        p->ti++;
        l = binary(p, op, l, parse_math2(p), line);
    }
    return l;
}

static ct_node *parse_concat(parser *p) {
    ct_node *l = parse_math1(p);
    while (l && is_op(p, "~")) {
        int line = cur(p)->line;
        p->ti++;
        l = binary(p, "~", l, parse_math1(p), line);
    }
    return l;
}

static ct_node *parse_compare(parser *p) {
    ct_node *l = parse_concat(p);
    static const char *const ops[] = {"==", "!=", "<", ">", "<=", ">="};
    kids operands = {0}, names = {0};
    int line0 = cur(p)->line;
    if (l && !kids_push(p, &operands, l, NULL)) return NULL;
    while (l) {
        const char *op = NULL;
        for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
            if (is_op(p, ops[i])) op = ops[i];
        if (op) {
            p->ti++;
        } else if (is_name(p, "in")) {
            op = "in";
            p->ti++;
        } else if (is_name(p, "not") && p->tk[p->ti + 1].kind == TK_NAME && !strcmp(p->tk[p->ti + 1].s, "in")) {
            op = "not in";
            p->ti += 2;
        } else {
            break;
        }
        ct_node *r = parse_concat(p);
        if (!r || !kids_push(p, &operands, r, NULL) || !kids_push(p, &names, operands.v[0], op)) return NULL;
    }
    if (!l || operands.n == 1) return l;
    if (operands.n == 2) return binary(p, names.names[0], operands.v[0], operands.v[1], line0);
    ct_node *n = node(p, CT_E_CHAIN, line0); /* a < b < c is (a < b) and (b < c), b evaluated once */
    if (!n) return NULL;
    set_kids(n, &operands);
    n->targets = names.names;
    n->n_targets = names.n;
    return n;
}

static ct_node *parse_not(parser *p) {
    if (is_name(p, "not")) {
        int line = cur(p)->line;
        p->ti++;
        if (++p->depth > MAX_DEPTH) return fail(p, line, LB_ERR_UNSUPPORTED, "expression nested too deeply"), NULL;
        ct_node *n = unary(p, "not", parse_not(p), line);
        p->depth--;
        return n;
    }
    return parse_compare(p);
}

static ct_node *parse_and(parser *p) {
    ct_node *l = parse_not(p);
    while (l && is_name(p, "and")) {
        int line = cur(p)->line;
        p->ti++;
        l = binary(p, "and", l, parse_not(p), line);
    }
    return l;
}

static ct_node *parse_or(parser *p) {
    ct_node *l = parse_and(p);
    while (l && is_name(p, "or")) {
        int line = cur(p)->line;
        p->ti++;
        l = binary(p, "or", l, parse_and(p), line);
    }
    return l;
}

/* x if cond else y (the else part optional: then undefined). */
static ct_node *parse_expr(parser *p) {
    if (++p->depth > MAX_DEPTH) return fail(p, cur(p)->line, LB_ERR_UNSUPPORTED, "expression nested too deeply"), NULL;
    ct_node *n = parse_or(p);
    while (n && is_name(p, "if")) {
        int line = cur(p)->line;
        p->ti++;
        ct_node *c = node(p, CT_E_COND, line);
        if (!c || !(c->kids = ct_alloc(p->a, 3 * sizeof *c->kids))) return oom(p), NULL;
        c->n_kids = 3;
        c->kids[0] = n;
        if (!(c->kids[1] = parse_or(p))) return NULL;
        if (is_name(p, "else")) { /* a if x else b if y else c: the else part is itself conditional */
            p->ti++;
            if (!(c->kids[2] = parse_expr(p))) return NULL;
        }
        n = c;
    }
    p->depth--;
    return n;
}

/* ---- statements ---- */

static ct_node *parse_body(parser *p, const char *const *ends, const char **found);

static bool tag_done(parser *p) {
    if (cur(p)->kind == TK_END) return true;
    return fail(p, cur(p)->line, LB_ERR_FORMAT, "unexpected '%s' at the end of a tag", tok_desc(cur(p)));
}

/* Enter the statement piece pi: its keyword, tokens positioned after it. */
static const char *stmt_keyword(parser *p, int pi) {
    piece *pc = &p->pieces[pi];
    p->tk = pc->toks;
    p->ti = 0;
    if (pc->toks[0].kind != TK_NAME) return NULL;
    p->ti = 1;
    return pc->toks[0].s;
}

static bool parse_targets(parser *p, const char ***out, int *n_out) {
    const char *buf[8];
    int n = 0;
    for (;;) {
        if (cur(p)->kind != TK_NAME) return fail(p, cur(p)->line, LB_ERR_FORMAT, "expected a variable name, found '%s'", tok_desc(cur(p)));
        if (n == 8) return fail(p, cur(p)->line, LB_ERR_UNSUPPORTED, "more than 8 loop variables");
        buf[n++] = cur(p)->s;
        p->ti++;
        if (!is_op(p, ",")) break;
        p->ti++;
    }
    *out = ct_alloc(p->a, (size_t)n * sizeof **out);
    if (!*out) return oom(p);
    memcpy(*out, buf, (size_t)n * sizeof *buf);
    *n_out = n;
    return true;
}

static ct_node *parse_if(parser *p, int line) {
    ct_node *n = node(p, CT_S_IF, line);
    kids k = {0};
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    const char *found = "elif";
    ct_node *cond = parse_expr(p);
    if (!n || !cond || !tag_done(p) || !kids_push(p, &k, cond, NULL)) return NULL;
    for (;;) {
        ct_node *body = parse_body(p, ends, &found);
        if (!kids_push(p, &k, body, NULL)) return NULL;
        if (!strcmp(found, "endif")) break;
        if (!strcmp(found, "else")) {
            static const char *const end_only[] = {"endif", NULL};
            if (!tag_done(p) || !kids_push(p, &k, parse_body(p, end_only, &found), NULL)) return NULL;
            break;
        }
        if (!kids_push(p, &k, parse_expr(p), NULL) || !tag_done(p)) return NULL;
    }
    if (!tag_done(p)) return NULL;
    set_kids(n, &k);
    return n;
}

static ct_node *parse_for(parser *p, int line) {
    ct_node *n = node(p, CT_S_FOR, line);
    if (!n || !parse_targets(p, &n->targets, &n->n_targets)) return NULL;
    if (!is_name(p, "in")) return fail(p, cur(p)->line, LB_ERR_FORMAT, "expected 'in' in a for loop"), NULL;
    p->ti++;
    if (!(n->kids = ct_alloc(p->a, 4 * sizeof *n->kids))) return oom(p), NULL;
    n->n_kids = 4;
    if (!(n->kids[0] = parse_or(p))) return NULL; /* no conditional here: `if` starts the loop filter */
    if (is_name(p, "if")) {
        p->ti++;
        if (!(n->kids[1] = parse_expr(p))) return NULL;
    }
    if (is_name(p, "recursive")) return fail(p, line, LB_ERR_UNSUPPORTED, "recursive for loops are not supported"), NULL;
    if (!tag_done(p)) return NULL;
    static const char *const ends[] = {"else", "endfor", NULL};
    const char *found;
    p->depth++;
    p->loops++;
    n->kids[2] = parse_body(p, ends, &found);
    p->loops--;
    if (!n->kids[2]) return NULL;
    if (!strcmp(found, "else")) {
        static const char *const end_only[] = {"endfor", NULL};
        if (!tag_done(p) || !(n->kids[3] = parse_body(p, end_only, &found))) return NULL;
    }
    p->depth--;
    return tag_done(p) ? n : NULL;
}

static ct_node *parse_set(parser *p, int line) {
    ct_node *n = node(p, CT_S_SET, line);
    if (!n) return NULL;
    if (cur(p)->kind == TK_NAME && p->tk[p->ti + 1].kind == TK_OP && !strcmp(p->tk[p->ti + 1].s, ".")) {
        n->flag = true; /* ns.attr = value */
        if (p->tk[p->ti + 2].kind != TK_NAME) return fail(p, line, LB_ERR_FORMAT, "expected an attribute name after '.'"), NULL;
        n->targets = ct_alloc(p->a, 2 * sizeof *n->targets);
        if (!n->targets) return oom(p), NULL;
        n->targets[0] = cur(p)->s;
        n->targets[1] = p->tk[p->ti + 2].s;
        n->n_targets = 2;
        p->ti += 3;
    } else if (!parse_targets(p, &n->targets, &n->n_targets)) {
        return NULL;
    }
    if (!(n->kids = ct_alloc(p->a, sizeof *n->kids))) return oom(p), NULL;
    n->n_kids = 1;
    if (is_op(p, "=")) {
        p->ti++;
        if (!(n->kids[0] = parse_expr(p))) return NULL;
        return tag_done(p) ? n : NULL;
    }
    if (n->flag || n->n_targets != 1) return fail(p, line, LB_ERR_FORMAT, "expected '=' in a set statement"), NULL;
    if (is_op(p, "|")) return fail(p, line, LB_ERR_UNSUPPORTED, "filtered set blocks are not supported"), NULL;
    if (!tag_done(p)) return NULL;
    static const char *const ends[] = {"endset", NULL};
    const char *found;
    n->flag2 = true; /* {% set x %}...{% endset %} */
    if (!(n->kids[0] = parse_body(p, ends, &found))) return NULL;
    return tag_done(p) ? n : NULL;
}

/* {% macro name(a, b=default) %}body{% endmacro %} */
static ct_node *parse_macro(parser *p, int line) {
    ct_node *n = node(p, CT_S_MACRO, line);
    if (!n) return NULL;
    if (cur(p)->kind != TK_NAME) return fail(p, line, LB_ERR_FORMAT, "expected a macro name"), NULL;
    n->name = cur(p)->s;
    p->ti++;
    if (!expect_op(p, "(")) return NULL;
    kids k = {0}, names = {0};
    if (!kids_push(p, &k, node(p, CT_S_BODY, line), NULL)) return NULL; /* body placeholder */
    while (!is_op(p, ")")) {
        if (names.n && !expect_op(p, ",")) return NULL;
        if (cur(p)->kind != TK_NAME) return fail(p, line, LB_ERR_FORMAT, "expected a parameter name in macro '%s'", n->name), NULL;
        const char *param = cur(p)->s;
        p->ti++;
        ct_node *def = NULL;
        if (is_op(p, "=")) {
            p->ti++;
            if (!(def = parse_expr(p))) return NULL;
        }
        if (!kids_push(p, &names, node(p, CT_E_LIT, line), param)) return NULL;
        if (!kids_push(p, &k, def ? def : node(p, CT_E_LIT, line), NULL)) return NULL;
        if (!def) k.v[k.n - 1] = NULL;
    }
    p->ti++;
    if (!tag_done(p)) return NULL;
    static const char *const ends[] = {"endmacro", NULL};
    const char *found;
    int loops = p->loops;
    p->loops = 0; /* a macro body is not inside the caller's loop */
    k.v[0] = parse_body(p, ends, &found);
    p->loops = loops;
    if (!k.v[0]) return NULL;
    set_kids(n, &k);
    n->targets = names.names;
    n->n_targets = names.n;
    return tag_done(p) ? n : NULL;
}

/* {% filter name(args) | name2 %}body{% endfilter %}: the body's text through the filters. The body is
 * bound to a name no template can write (CT_FILTER_BODY) that the filter chain reads. */
static ct_node *parse_filter_block(parser *p, int line) {
    ct_node *n = node(p, CT_S_FILTER, line), *body = node(p, CT_E_NAME, line);
    if (!n || !body) return NULL;
    body->name = CT_FILTER_BODY;
    if (!(n->kids = ct_alloc(p->a, 2 * sizeof *n->kids))) return oom(p), NULL;
    n->n_kids = 2;
    if (!(n->kids[1] = parse_filters(p, filter_call(p, body, true, false, line))) || !tag_done(p)) return NULL;
    static const char *const ends[] = {"endfilter", NULL};
    const char *found;
    if (!(n->kids[0] = parse_body(p, ends, &found))) return NULL;
    return tag_done(p) ? n : NULL;
}

static const char *const unsupported_stmts[] = {"call", "block", "extends", "include", "import",
                                                "from", "with", "raw", "autoescape", "do", "generation", NULL};

/* Statements until one of `ends` (NULL-terminated; NULL itself: the end of the template). */
static ct_node *parse_body(parser *p, const char *const *ends, const char **found) {
    int open_line = p->pi > 0 && p->pi <= p->n_pieces ? p->pieces[p->pi - 1].line : 1;
    ct_node *body = node(p, CT_S_BODY, open_line);
    kids k = {0};
    if (!body) return NULL;
    if (++p->depth > MAX_DEPTH) return fail(p, open_line, LB_ERR_UNSUPPORTED, "blocks nested too deeply"), NULL;
    while (p->pi < p->n_pieces) {
        piece *pc = &p->pieces[p->pi++];
        ct_node *n = NULL;
        if (pc->kind == PC_TEXT) {
            if ((n = node(p, CT_S_TEXT, pc->line))) {
                n->text = pc->text;
                n->text_len = pc->len;
            }
        } else if (pc->kind == PC_OUT) {
            p->tk = pc->toks;
            p->ti = 0;
            if ((n = node(p, CT_S_OUTPUT, pc->line)) && (n->kids = ct_alloc(p->a, sizeof *n->kids))) {
                n->n_kids = 1;
                if (!(n->kids[0] = parse_expr(p)) || !tag_done(p)) n = NULL;
            } else {
                n = NULL;
            }
        } else {
            const char *kw = stmt_keyword(p, p->pi - 1);
            if (!kw) return fail(p, pc->line, LB_ERR_FORMAT, "a statement tag must start with a keyword"), NULL;
            for (int i = 0; ends && ends[i]; i++)
                if (!strcmp(kw, ends[i])) {
                    *found = ends[i];
                    set_kids(body, &k);
                    p->depth--;
                    return body;
                }
            if (!strcmp(kw, "if")) n = parse_if(p, pc->line);
            else if (!strcmp(kw, "for")) n = parse_for(p, pc->line);
            else if (!strcmp(kw, "set")) n = parse_set(p, pc->line);
            else if (!strcmp(kw, "macro")) n = parse_macro(p, pc->line);
            else if (!strcmp(kw, "filter")) n = parse_filter_block(p, pc->line);
            else if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
                if (!p->loops) return fail(p, pc->line, LB_ERR_FORMAT, "'{%% %s %%}' outside a for loop", kw), NULL;
                if ((n = node(p, kw[0] == 'b' ? CT_S_BREAK : CT_S_CONTINUE, pc->line)) && !tag_done(p)) n = NULL;
            } else {
                for (int i = 0; unsupported_stmts[i]; i++)
                    if (!strcmp(kw, unsupported_stmts[i]))
                        return fail(p, pc->line, LB_ERR_UNSUPPORTED, "'{%% %s %%}' is not supported by lowbit's template engine", kw), NULL;
                if (ends && ends[0]) {
                    const char *last = ends[0];
                    for (int i = 0; ends[i]; i++) last = ends[i];
                    return fail(p, pc->line, LB_ERR_FORMAT, "unexpected '{%% %s %%}' (expected '{%% %s %%}')", kw, last), NULL;
                }
                return fail(p, pc->line, LB_ERR_FORMAT, "unexpected '{%% %s %%}'", kw), NULL;
            }
        }
        if (!kids_push(p, &k, n, NULL)) return NULL;
    }
    if (ends && ends[0]) {
        const char *last = ends[0];
        for (int i = 0; ends[i]; i++) last = ends[i];
        return fail(p, open_line, LB_ERR_FORMAT, "block opened here is never closed (no '{%% %s %%}')", last), NULL;
    }
    *found = NULL;
    set_kids(body, &k);
    p->depth--;
    return body;
}

lb_status ct_parse(lb_chat_template *t, const char *src, size_t len, lb_error *err) {
    parser p = {.t = t, .a = t->arena, .err = err, .line = 1};
    /* newlines to "\n", then drop one trailing newline */
    char *s = ct_alloc(t->arena, len + 1);
    if (!s) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;
    p.src = s;
    p.len = n;
    if (!lex_all(&p)) return p.st;
    const char *found = NULL;
    ct_node *root = parse_body(&p, NULL, &found);
    if (!root) return p.st ? p.st : lb_err_set(err, LB_ERR_FORMAT, "chat template: parse error");
    t->root = root;
    return LB_OK;
}
