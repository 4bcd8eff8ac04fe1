/*
 * regex.c - the pre-tokenizer regex engine (regex.h): a recursive-descent parser into a node tree and
 * a backtracking matcher with continuations, so alternation is ordered (the first alternative that
 * lets the whole pattern match wins) and quantifiers give back as Perl-style engines do.
 *
 * Sources: ECMA-262 section 22.2 (pattern semantics: ordered alternation, greedy and lazy quantifiers,
 * empty-iteration check, lookahead); the Oniguruma syntax (doc/RE: \p{..}, (?i:..), possessive
 * quantifiers, atomic groups); llama.cpp src/unicode.cpp unicode_regex_split (the collapsed text it
 * runs std::regex on, described in regex.h).
 */
#include "regex.h"

#include "unicode.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 10000      /* nested matcher calls before a match attempt gives up: about 3 MB of stack */
#define MAX_REPEAT 100000    /* largest {n,m} count */
#define MAX_STEPS 1000000    /* matcher calls for one start position (catastrophic backtracking) */
#define MAX_TOTAL_STEPS 50000000L /* matcher calls for one search: beyond, the search gives up */
#define SENT 0x110000u       /* collapsed-text stand-ins for categories, beyond Unicode */
enum { S_L, S_N, S_P, S_M, S_S, S_OTHER };

typedef enum { N_CHAR, N_CLASS, N_ANY, N_SEQ, N_ALT, N_REP, N_LOOK, N_ATOMIC, N_BOL, N_EOL, N_WORDB } nkind;

typedef struct node {
    uint8_t kind, icase, neg, greed; /* greed: 0 lazy, 1 greedy, 2 possessive */
    uint8_t w1;                      /* every match of this node is exactly one char (lookaheads aside) */
    int32_t min, max;                /* N_REP; max -1 = unbounded */
    int32_t child;                   /* first child (SEQ/ALT list) or the only one (REP/LOOK/ATOMIC) */
    int32_t next;                    /* next node in the parent's SEQ or ALT list, -1 at the end */
    uint32_t val;                    /* N_CHAR: code point; N_CLASS: class index */
} node;

typedef enum { CI_RANGE, CI_GC, CI_SPACE, CI_DIGIT, CI_WORD, CI_SUB } ci_kind;
typedef struct citem {
    uint8_t kind, neg;
    uint32_t lo, hi; /* CI_RANGE bounds; CI_GC: the category mask in lo; CI_SUB: a nested class index */
} citem;

typedef struct cclass {
    int32_t first, n; /* items[first .. first + n) */
    bool neg, icase;
    uint64_t ascii[2]; /* membership of units below 128, final (negation applied) */
} cclass;

struct rx {
    rx_mode mode;
    bool collapsed; /* RX_LLAMA: the pattern names a category, so the text is collapsed */
    node *nodes;
    int32_t n_nodes, cap_nodes, root;
    citem *items;
    int32_t n_items, cap_items;
    cclass *classes;
    int32_t n_classes, cap_classes;
};

/* ---------------------------------------------------------------------------------------------- */
/* character tests                                                                                */

/* Simple case folding of the letters a pattern can fold (ASCII, long s, Kelvin sign, and the
 * one-to-one lowercase mappings). */
static uint32_t fold(uint32_t c) {
    if (c < 128) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if (c == 0x17F) return 's';
    if (c == 0x212A) return 'k';
    return c >= SENT ? c : uni_lower_cp(c);
}

/* The unit the matcher sees for code point c (regex.h: RX_LLAMA's transformed text). */
static inline uint32_t unit_of(const rx *r, uint32_t c) {
    if (c < 128 || r->mode == RX_ONIG) return c;
    if (uni_is_space(c)) return 0x0B;
    if (!r->collapsed) return c;
    unsigned m = UNI_GCM(uni_category(c));
    return SENT + (m & UNI_GCM_L   ? S_L
                   : m & UNI_GCM_N ? S_N
                   : m & UNI_GCM_P ? S_P
                   : m & UNI_GCM_M ? S_M
                   : m & UNI_GCM_S ? S_S
                                   : S_OTHER);
}

static bool is_word_unit(const rx *r, uint32_t u) {
    if (u < 128) return (u >= '0' && u <= '9') || (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || u == '_';
    return r->mode == RX_ONIG && (uni_flags(u) & UNI_WORD);
}

static bool class_match(const rx *r, const cclass *c, uint32_t u);

static bool item_match(const rx *r, const citem *it, uint32_t u) {
    bool y;
    switch (it->kind) {
    case CI_RANGE: y = u >= it->lo && u <= it->hi; break;
    case CI_GC:
        if (r->mode == RX_ONIG || u < 128) y = u < SENT && (it->lo & UNI_GCM(uni_category(u)));
        else
            y = (u == SENT + S_L && (it->lo & UNI_GCM_L)) || (u == SENT + S_N && (it->lo & UNI_GCM_N)) ||
                (u == SENT + S_P && (it->lo & UNI_GCM_P)) || (u == SENT + S_M && (it->lo & UNI_GCM_M)) ||
                (u == SENT + S_S && (it->lo & UNI_GCM_S));
        break;
    case CI_SPACE: y = r->mode == RX_ONIG ? uni_is_space(u) : (u >= 9 && u <= 13) || u == ' '; break;
    case CI_SUB: y = class_match(r, &r->classes[it->lo], u); break;
    case CI_DIGIT: y = r->mode == RX_ONIG ? u < SENT && uni_category(u) == UNI_GC_ND : u >= '0' && u <= '9'; break;
    default: y = is_word_unit(r, u); break;
    }
    return y != it->neg;
}

static bool class_raw(const rx *r, const cclass *c, uint32_t u) {
    for (int32_t i = 0; i < c->n; i++)
        if (item_match(r, &r->items[c->first + i], u)) return true;
    return false;
}

static bool class_match(const rx *r, const cclass *c, uint32_t u) {
    if (u < 128) return (c->ascii[u >> 6] >> (u & 63)) & 1;
    bool y = class_raw(r, c, u);
    if (!y && c->icase) {
        uint32_t f = fold(u);
        y = f != u && class_raw(r, c, f);
    }
    return y != c->neg;
}

static void class_finish(const rx *r, cclass *c) {
    c->ascii[0] = c->ascii[1] = 0;
    for (uint32_t u = 0; u < 128; u++) {
        bool y = class_raw(r, c, u);
        if (!y && c->icase) {
            uint32_t f = fold(u), g = u >= 'a' && u <= 'z' ? u - 32 : u;
            y = (f != u && class_raw(r, c, f)) || (g != u && class_raw(r, c, g)) || (u == 's' && class_raw(r, c, 0x17F)) ||
                (u == 'k' && class_raw(r, c, 0x212A));
        }
        if (y != c->neg) c->ascii[u >> 6] |= (uint64_t)1 << (u & 63);
    }
}

/* Whether single-character node nd matches unit u. */
static inline bool char_match(const rx *r, const node *nd, uint32_t u) {
    switch (nd->kind) {
    case N_CHAR: return u == nd->val || (nd->icase && fold(u) == fold(nd->val));
    case N_CLASS: return class_match(r, &r->classes[nd->val], u);
    default: return r->mode == RX_ONIG ? u != '\n' : u != '\n' && u != '\r';
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* parsing                                                                                        */

typedef struct parser {
    rx *r;
    const uint32_t *p;
    size_t n, i;
    bool icase;
    int depth;
    lb_error *err;
    lb_status st;
} parser;

static bool fail(parser *ps, const char *what) {
    if (!ps->st) ps->st = lb_err_set(ps->err, LB_ERR_FORMAT, "regex: %s at offset %zu", what, ps->i);
    return false;
}

static bool grow(parser *ps, void **p, int32_t *cap, int32_t need, size_t elem) {
    if (need <= *cap) return true;
    int32_t c = *cap ? *cap * 2 : 32;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) {
        ps->st = lb_err_set(ps->err, LB_ERR_NOMEM, "regex: out of memory");
        return false;
    }
    *p = q;
    *cap = c;
    return true;
}

static int32_t new_node(parser *ps, nkind k) {
    rx *r = ps->r;
    if (!grow(ps, (void **)&r->nodes, &r->cap_nodes, r->n_nodes + 1, sizeof *r->nodes)) return -1;
    r->nodes[r->n_nodes] = (node){.kind = (uint8_t)k, .icase = ps->icase, .child = -1, .next = -1, .greed = 1};
    return r->n_nodes++;
}

static bool add_item(parser *ps, citem it) {
    rx *r = ps->r;
    if (!grow(ps, (void **)&r->items, &r->cap_items, r->n_items + 1, sizeof *r->items)) return false;
    r->items[r->n_items++] = it;
    return true;
}

static inline bool more(const parser *ps) { return ps->i < ps->n; }
static inline uint32_t peek(const parser *ps) { return ps->i < ps->n ? ps->p[ps->i] : 0; }

static int hexval(uint32_t c) {
    return c >= '0' && c <= '9' ? (int)(c - '0') : c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10) : c >= 'A' && c <= 'F' ? (int)(c - 'A' + 10) : -1;
}

/* Category mask of a \p{name}; 0 when unknown. RX_LLAMA widens letter sub-categories to L. */
static unsigned category_mask(const parser *ps, const uint32_t *name, size_t len) {
    static const char *const names[UNI_GC_COUNT] = {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl",
                                                     "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc",
                                                     "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"};
    char s[8];
    if (len == 0 || len >= sizeof s) return 0;
    for (size_t k = 0; k < len; k++) s[k] = (char)(name[k] < 128 ? name[k] : '?');
    s[len] = 0;
    if (ps->r->mode == RX_LLAMA) {
        static const char *const ok[] = {"N", "L", "P", "M", "S", "Lu", "Ll", "Lt", "Lm", "Lo"};
        bool known = false;
        for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) known |= !strcmp(s, ok[k]);
        if (!known) return 0;
        if (s[0] == 'L') return UNI_GCM_L;
    }
    if (len == 1 || (len == 2 && (s[1] == '&' || !strcmp(s, "L&")))) {
        switch (s[0]) {
        case 'L': return UNI_GCM_L;
        case 'M': return UNI_GCM_M;
        case 'N': return UNI_GCM_N;
        case 'P': return UNI_GCM_P;
        case 'S': return UNI_GCM_S;
        case 'Z': return UNI_GCM_Z;
        case 'C': return UNI_GCM_C;
        default: return 0;
        }
    }
    for (int c = 0; c < UNI_GC_COUNT; c++)
        if (!strcmp(s, names[c])) return UNI_GCM(c);
    return 0;
}

/* After a backslash: a class escape (\d \s \w \p{..} and negations) as an item; *is_item set. Else a
 * literal code point in *cp. */
static bool parse_escape(parser *ps, citem *it, bool *is_item, uint32_t *cp) {
    if (!more(ps)) return fail(ps, "pattern ends with a backslash");
    uint32_t c = ps->p[ps->i++];
    *is_item = true;
    *it = (citem){0};
    switch (c) {
    case 'd': case 'D': it->kind = CI_DIGIT, it->neg = c == 'D'; return true;
    case 's': case 'S': it->kind = CI_SPACE, it->neg = c == 'S'; return true;
    case 'w': case 'W': it->kind = CI_WORD, it->neg = c == 'W'; return true;
    case 'p': case 'P': {
        if (peek(ps) != '{') return fail(ps, "\\p without {name}");
        size_t s = ++ps->i;
        while (more(ps) && peek(ps) != '}') ps->i++;
        if (!more(ps)) return fail(ps, "unterminated \\p{");
        unsigned m = category_mask(ps, ps->p + s, ps->i - s);
        ps->i++;
        if (!m) return fail(ps, "unknown or unsupported \\p{..} category");
        if (ps->r->mode == RX_LLAMA) ps->r->collapsed = true;
        it->kind = CI_GC, it->lo = m, it->neg = c == 'P';
        return true;
    }
    default: break;
    }
    *is_item = false;
    switch (c) {
    case 't': *cp = '\t'; return true;
    case 'n': *cp = '\n'; return true;
    case 'r': *cp = '\r'; return true;
    case 'f': *cp = '\f'; return true;
    case 'v': *cp = '\v'; return true;
    case '0': *cp = 0; return true;
    case 'x': case 'u': {
        uint32_t v = 0;
        int digits = 0, want = c == 'x' ? 2 : 4;
        bool brace = peek(ps) == '{';
        if (brace) ps->i++, want = 8;
        while (more(ps) && digits < want && hexval(peek(ps)) >= 0) v = v * 16 + (uint32_t)hexval(ps->p[ps->i++]), digits++;
        if (brace && peek(ps) == '}') ps->i++;
        else if (brace || digits != want) return fail(ps, "bad \\x or \\u escape");
        if (v > 0x10FFFF) return fail(ps, "escape beyond U+10FFFF");
        *cp = v;
        return true;
    }
    default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            return fail(ps, "unsupported escape");
        *cp = c; /* an escaped punctuation char stands for itself */
        return true;
    }
}

/* The items of one class being parsed, kept apart until it ends so each class's items stay contiguous
 * (a nested class adds its own first). */
typedef struct item_list {
    citem *v;
    int32_t n, cap;
} item_list;

static bool list_add(parser *ps, item_list *l, citem it) {
    if (!grow(ps, (void **)&l->v, &l->cap, l->n + 1, sizeof *l->v)) return false;
    l->v[l->n++] = it;
    return true;
}

/* One element of a class, whose first char lo was just consumed, into l. */
static bool class_elem(parser *ps, item_list *l, uint32_t lo, int depth);
static int32_t class_body(parser *ps, int depth);

static bool class_elem(parser *ps, item_list *l, uint32_t lo, int depth) {
    citem it;
    bool is_item = false;
    if (lo == '[' && ps->r->mode == RX_ONIG) { /* Oniguruma: a nested class joins the union */
        int32_t sub = class_body(ps, depth + 1);
        return sub >= 0 && list_add(ps, l, (citem){.kind = CI_SUB, .lo = (uint32_t)sub});
    }
    if (lo == '&' && peek(ps) == '&' && ps->r->mode == RX_ONIG) return fail(ps, "class intersection (&&) is not supported");
    if (lo == '\\' && !parse_escape(ps, &it, &is_item, &lo)) return false;
    if (is_item) return list_add(ps, l, it);
    uint32_t hi = lo;
    if (peek(ps) == '-' && ps->i + 1 < ps->n && ps->p[ps->i + 1] != ']') {
        ps->i++;
        hi = ps->p[ps->i++];
        if (hi == '\\' && (!parse_escape(ps, &it, &is_item, &hi) || is_item))
            return is_item ? fail(ps, "a class escape cannot end a range") : false;
        if (hi < lo) return fail(ps, "range out of order");
    }
    return list_add(ps, l, (citem){.kind = CI_RANGE, .lo = lo, .hi = hi});
}

/* A class after its '['; returns its index. */
static int32_t class_body(parser *ps, int depth) {
    rx *r = ps->r;
    if (depth > 16) return fail(ps, "classes nested too deeply"), -1;
    cclass c = {.icase = ps->icase};
    item_list l = {0};
    if (peek(ps) == '^') c.neg = true, ps->i++;
    bool first = true, ok = true;
    while (ok && more(ps) && (peek(ps) != ']' || first)) {
        first = false;
        ok = class_elem(ps, &l, ps->p[ps->i++], depth);
    }
    if (ok && !more(ps)) ok = fail(ps, "unterminated [");
    if (ok) ps->i++;
    ok = ok && grow(ps, (void **)&r->classes, &r->cap_classes, r->n_classes + 1, sizeof *r->classes) &&
         grow(ps, (void **)&r->items, &r->cap_items, r->n_items + l.n, sizeof *r->items);
    if (!ok) {
        free(l.v);
        return -1;
    }
    c.first = r->n_items;
    c.n = l.n;
    memcpy(r->items + r->n_items, l.v, (size_t)l.n * sizeof *l.v);
    r->n_items += l.n;
    free(l.v);
    class_finish(r, &c);
    r->classes[r->n_classes] = c;
    return r->n_classes++;
}

static int32_t parse_class(parser *ps) {
    int32_t ci = class_body(ps, 0);
    if (ci < 0) return -1;
    int32_t nd = new_node(ps, N_CLASS);
    if (nd >= 0) ps->r->nodes[nd].val = (uint32_t)ci;
    return nd;
}

static int32_t parse_alt(parser *ps);

/* (..) and its variants, after the '('. */
static int32_t parse_group(parser *ps) {
    nkind kind = N_SEQ;
    bool neg = false, save = ps->icase;
    if (peek(ps) == '?') {
        ps->i++;
        uint32_t c = more(ps) ? ps->p[ps->i++] : 0;
        if (c == ':') kind = N_SEQ;
        else if (c == '=' || c == '!') kind = N_LOOK, neg = c == '!';
        else if (c == '>' && ps->r->mode == RX_ONIG) kind = N_ATOMIC;
        else if (c == 'i' && ps->r->mode == RX_ONIG) {
            ps->icase = true;
            if (peek(ps) == ')') { /* (?i) applies to the rest of the enclosing group */
                ps->i++;
                return -2;
            }
            if (peek(ps) != ':') return fail(ps, "unsupported (?i.. group"), -1;
            ps->i++;
        } else {
            return fail(ps, "unsupported (? group"), -1;
        }
    }
    int32_t inner = parse_alt(ps);
    ps->icase = save;
    if (inner < 0) return -1;
    if (peek(ps) != ')') return fail(ps, "missing )"), -1;
    ps->i++;
    if (kind == N_SEQ) return inner;
    int32_t nd = new_node(ps, kind);
    if (nd >= 0) ps->r->nodes[nd].child = inner, ps->r->nodes[nd].neg = neg;
    return nd;
}

static bool parse_count(parser *ps, int32_t *v) {
    int64_t x = 0;
    size_t s = ps->i;
    while (more(ps) && peek(ps) >= '0' && peek(ps) <= '9') {
        x = x * 10 + (peek(ps) - '0');
        if (x > MAX_REPEAT) return false;
        ps->i++;
    }
    *v = (int32_t)x;
    return ps->i > s;
}

/* A {n}, {n,} or {n,m} at i; false (i unchanged) when the brace is a literal. */
static bool parse_braces(parser *ps, int32_t *mn, int32_t *mx) {
    size_t save = ps->i;
    ps->i++;
    if (!parse_count(ps, mn)) goto literal;
    *mx = *mn;
    if (peek(ps) == ',') {
        ps->i++;
        *mx = -1;
        if (peek(ps) != '}' && !parse_count(ps, mx)) goto literal;
    }
    if (peek(ps) != '}' || (*mx >= 0 && *mx < *mn)) goto literal;
    ps->i++;
    return true;
literal:
    ps->i = save;
    return false;
}

/* Quantifiers after atom a. */
static int32_t parse_quant(parser *ps, int32_t a) {
    for (;;) {
        uint32_t c = peek(ps);
        int32_t mn, mx;
        if (c == '*') mn = 0, mx = -1, ps->i++;
        else if (c == '+') mn = 1, mx = -1, ps->i++;
        else if (c == '?') mn = 0, mx = 1, ps->i++;
        else if (c == '{' && parse_braces(ps, &mn, &mx)) {
        } else return a;
        int32_t nd = new_node(ps, N_REP);
        if (nd < 0) return -1;
        node *q = &ps->r->nodes[nd];
        q->child = a, q->min = mn, q->max = mx;
        if (peek(ps) == '?') q->greed = 0, ps->i++;
        else if (peek(ps) == '+' && ps->r->mode == RX_ONIG) q->greed = 2, ps->i++;
        a = nd;
    }
}

static int32_t parse_atom(parser *ps) {
    uint32_t c = ps->p[ps->i++];
    int32_t nd;
    switch (c) {
    case '(': return parse_group(ps);
    case '[': return parse_class(ps);
    case '.': return new_node(ps, N_ANY);
    case '^': return new_node(ps, N_BOL);
    case '$': return new_node(ps, N_EOL);
    case '*': case '+': case '?': return fail(ps, "quantifier without an atom"), -1;
    case '\\': {
        if (peek(ps) == 'b' || peek(ps) == 'B') {
            nd = new_node(ps, N_WORDB);
            if (nd >= 0) ps->r->nodes[nd].neg = ps->p[ps->i] == 'B';
            ps->i++;
            return nd;
        }
        citem it;
        bool is_item;
        uint32_t cp;
        if (!parse_escape(ps, &it, &is_item, &cp)) return -1;
        if (is_item) {
            rx *r = ps->r;
            if (!grow(ps, (void **)&r->classes, &r->cap_classes, r->n_classes + 1, sizeof *r->classes)) return -1;
            int32_t ci = r->n_classes++;
            cclass cl = {.first = r->n_items, .n = 1, .icase = ps->icase};
            if (!add_item(ps, it)) return -1;
            class_finish(r, &cl);
            r->classes[ci] = cl;
            nd = new_node(ps, N_CLASS);
            if (nd >= 0) r->nodes[nd].val = (uint32_t)ci;
            return nd;
        }
        c = cp;
        break;
    }
    default:
        if (c >= 128 && ps->r->mode == RX_LLAMA && ps->r->collapsed)
            return fail(ps, "non-ASCII literal in a pattern that names a category"), -1;
        break;
    }
    nd = new_node(ps, N_CHAR);
    if (nd >= 0) ps->r->nodes[nd].val = c;
    return nd;
}

/* A sequence up to '|' or ')' or the end. */
static int32_t parse_seq(parser *ps) {
    int32_t seq = new_node(ps, N_SEQ), last = -1;
    if (seq < 0) return -1;
    while (more(ps) && peek(ps) != '|' && peek(ps) != ')') {
        int32_t a = parse_atom(ps);
        if (a == -2) continue; /* (?i) */
        if (a < 0) return -1;
        a = parse_quant(ps, a);
        if (a < 0) return -1;
        if (last < 0) ps->r->nodes[seq].child = a;
        else ps->r->nodes[last].next = a;
        last = a;
    }
    return seq;
}

static int32_t parse_alt(parser *ps) {
    if (++ps->depth > 200) return fail(ps, "groups nested too deeply"), -1;
    int32_t alt = new_node(ps, N_ALT), last = -1;
    if (alt < 0) return -1;
    for (;;) {
        int32_t s = parse_seq(ps);
        if (s < 0) return -1;
        if (last < 0) ps->r->nodes[alt].child = s;
        else ps->r->nodes[last].next = s;
        last = s;
        if (peek(ps) != '|' || !more(ps)) break;
        ps->i++;
    }
    ps->depth--;
    return alt;
}

/* Mark the nodes whose every match is exactly one char: a char test, an alternation of such nodes, or
 * a sequence of lookaheads around one such node. A repeat of one is counted without recursion. */
static bool mark_w1(rx *r, int32_t ni) {
    node *nd = &r->nodes[ni];
    bool w = false;
    int n_w1 = 0, n_other = 0;
    switch (nd->kind) {
    case N_CHAR:
    case N_CLASS:
    case N_ANY: w = true; break;
    case N_ALT:
        w = nd->child >= 0;
        for (int32_t a = nd->child; a >= 0; a = r->nodes[a].next) w &= mark_w1(r, a);
        break;
    case N_SEQ:
        for (int32_t a = nd->child; a >= 0; a = r->nodes[a].next) {
            bool y = mark_w1(r, a);
            if (y) n_w1++;
            else if (r->nodes[a].kind != N_LOOK) n_other++;
        }
        w = n_w1 == 1 && n_other == 0;
        break;
    default:
        if (nd->child >= 0) mark_w1(r, nd->child);
        break;
    }
    nd->w1 = w;
    return w;
}

/* RX_LLAMA: whether the pattern names a category llama.cpp collapses (it checks the plain text). */
static bool names_category(const char *pat, size_t len) {
    static const char *const keys[] = {"\\p{N}", "\\p{L}", "\\p{P}", "\\p{M}", "\\p{S}",
                                       "\\p{Lu}", "\\p{Ll}", "\\p{Lt}", "\\p{Lm}", "\\p{Lo}"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (memmem(pat, len, keys[k], strlen(keys[k]))) return true;
    return false;
}

lb_status rx_compile(const char *pat, size_t len, rx_mode mode, rx **out, lb_error *err) {
    if (!utf8_valid((const uint8_t *)pat, len)) return lb_err_set(err, LB_ERR_FORMAT, "regex: pattern is not valid UTF-8");
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    rx *r = calloc(1, sizeof *r);
    if (!cps || !r) {
        free(cps), free(r);
        return lb_err_set(err, LB_ERR_NOMEM, "regex: out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) i += utf8_decode((const uint8_t *)pat + i, len - i, &cps[n++]);
    r->mode = mode;
    r->collapsed = mode == RX_LLAMA && names_category(pat, len);
    parser ps = {.r = r, .p = cps, .n = n, .err = err};
    r->root = parse_alt(&ps);
    if (r->root >= 0 && more(&ps)) fail(&ps, "unbalanced )");
    if (r->root >= 0 && !ps.st) mark_w1(r, r->root);
    free(cps);
    if (ps.st || r->root < 0) {
        rx_free(r);
        return ps.st ? ps.st : lb_err_set(err, LB_ERR_FORMAT, "regex: cannot parse");
    }
    *out = r;
    return LB_OK;
}

void rx_free(rx *r) {
    if (!r) return;
    free(r->nodes);
    free(r->items);
    free(r->classes);
    free(r);
}

bool rx_is_single_char(const rx *r) {
    const node *alt = &r->nodes[r->root];
    const node *seq = &r->nodes[alt->child];
    if (seq->next >= 0 || seq->child < 0) return false;
    const node *a = &r->nodes[seq->child];
    return a->next < 0 && (a->kind == N_CHAR || a->kind == N_CLASS || a->kind == N_ANY);
}

/* ---------------------------------------------------------------------------------------------- */
/* matching                                                                                       */

typedef enum { K_END, K_SEQ, K_REP } kkind;

typedef struct kont {
    kkind kind;
    int32_t node;  /* K_SEQ: next node of the sequence (-1: sequence done); K_REP: the repeat node */
    int32_t count; /* K_REP: iterations done */
    size_t start;  /* K_REP: where the last iteration began */
    size_t *endp;  /* K_END: receives the end */
    const struct kont *next;
} kont;

typedef struct mctx {
    const rx *r;
    const uint32_t *cp;
    size_t n;
    size_t no_empty_at; /* an end here is rejected (SIZE_MAX: none) */
    size_t *top_end; /* the K_END of the whole match (inner K_ENDs end lookaheads and atomic groups) */
    int depth;
    long steps; /* matcher calls from this start */
    long scan;  /* chars tested by one-char repeats from this start */
    bool overflow;
} mctx;

static bool m(mctx *c, int32_t ni, size_t pos, const kont *k);
static bool run(mctx *c, const kont *k, size_t pos);

static inline uint32_t unit_at(const mctx *c, size_t pos) { return unit_of(c->r, c->cp[pos]); }

static bool w1_match(mctx *c, int32_t ni, size_t pos);

/* Repeat node ni having done `count` iterations, now at pos. */
static bool rep_step(mctx *c, int32_t ni, int32_t count, size_t pos, const kont *k) {
    const node *nd = &c->r->nodes[ni];
    const node *ch = &c->r->nodes[nd->child];
    bool can_more = nd->max < 0 || count < nd->max;
    if (ch->w1) { /* one char per iteration: count, then give back */
        size_t j = pos, lim = nd->max < 0 ? c->n : pos + (size_t)(nd->max - count);
        if (lim > c->n) lim = c->n;
        if (nd->greed == 0) {
            for (;; j++) {
                if ((int64_t)(j - pos) + count >= nd->min && run(c, k, j)) return true;
                if (j >= lim || !w1_match(c, nd->child, j)) return false;
            }
        }
        while (j < lim && w1_match(c, nd->child, j)) j++;
        c->scan += (long)(j - pos);
        for (;; j--) {
            if ((int64_t)(j - pos) + count < nd->min) return false;
            if (run(c, k, j)) return true;
            if (j == pos || nd->greed == 2) return false;
        }
    }
    if (nd->greed == 2) {
        while (nd->max < 0 || count < nd->max) {
            size_t e = pos;
            kont end = {.kind = K_END, .endp = &e};
            if (!m(c, nd->child, pos, &end) || e == pos) break;
            pos = e;
            count++;
        }
        return count >= nd->min && run(c, k, pos);
    }
    kont again = {.kind = K_REP, .node = ni, .count = count + 1, .start = pos, .next = k};
    if (nd->greed == 0) {
        if (count >= nd->min && run(c, k, pos)) return true;
        return can_more && m(c, nd->child, pos, &again);
    }
    if (can_more && m(c, nd->child, pos, &again)) return true;
    return count >= nd->min && run(c, k, pos);
}

static bool run(mctx *c, const kont *k, size_t pos) {
    switch (k->kind) {
    case K_END:
        if (k->endp == c->top_end && pos == c->no_empty_at) return false;
        *k->endp = pos;
        return true;
    case K_SEQ:
        if (k->node < 0) return run(c, k->next, pos);
        {
            kont nk = {.kind = K_SEQ, .node = c->r->nodes[k->node].next, .next = k->next};
            return m(c, k->node, pos, &nk);
        }
    default: {
        const node *nd = &c->r->nodes[k->node];
        if (pos == k->start && k->count > nd->min) return false; /* an empty iteration ends the loop */
        return rep_step(c, k->node, k->count, pos, k->next);
    }
    }
}

/* Whether w1 node ni matches the char at pos. */
static bool w1_match(mctx *c, int32_t ni, size_t pos) {
    const node *nd = &c->r->nodes[ni];
    switch (nd->kind) {
    case N_CHAR:
    case N_CLASS:
    case N_ANY: return pos < c->n && char_match(c->r, nd, unit_at(c, pos));
    case N_ALT:
        for (int32_t a = nd->child; a >= 0; a = c->r->nodes[a].next)
            if (w1_match(c, a, pos)) return true;
        return false;
    default: /* N_SEQ: lookaheads at pos or pos + 1 around the one char */
        for (int32_t a = nd->child; a >= 0; a = c->r->nodes[a].next) {
            const node *x = &c->r->nodes[a];
            if (x->w1) {
                if (!w1_match(c, a, pos)) return false;
                pos++;
                continue;
            }
            size_t e = pos;
            kont end = {.kind = K_END, .endp = &e};
            if (m(c, x->child, pos, &end) == x->neg) return false;
        }
        return true;
    }
}

static bool wordb(const mctx *c, size_t pos) {
    bool a = pos > 0 && is_word_unit(c->r, unit_at(c, pos - 1));
    bool b = pos < c->n && is_word_unit(c->r, unit_at(c, pos));
    return a != b;
}

static bool m_inner(mctx *c, int32_t ni, size_t pos, const kont *k) {
    const node *nd = &c->r->nodes[ni];
    switch (nd->kind) {
    case N_CHAR:
    case N_CLASS:
    case N_ANY: return pos < c->n && char_match(c->r, nd, unit_at(c, pos)) && run(c, k, pos + 1);
    case N_SEQ: {
        if (nd->child < 0) return run(c, k, pos);
        kont nk = {.kind = K_SEQ, .node = c->r->nodes[nd->child].next, .next = k};
        return m(c, nd->child, pos, &nk);
    }
    case N_ALT:
        for (int32_t a = nd->child; a >= 0; a = c->r->nodes[a].next)
            if (m(c, a, pos, k)) return true;
        return false;
    case N_REP: return rep_step(c, ni, 0, pos, k);
    case N_LOOK:
    case N_ATOMIC: {
        size_t e = pos;
        kont end = {.kind = K_END, .endp = &e};
        bool y = m(c, nd->child, pos, &end);
        if (nd->kind == N_ATOMIC) return y && run(c, k, e);
        return y != nd->neg && run(c, k, pos);
    }
    case N_BOL: return pos == 0 && run(c, k, pos);
    case N_EOL: {
        bool at = pos == c->n || (c->r->mode == RX_ONIG && c->cp[pos] == '\n');
        return at && run(c, k, pos);
    }
    default: return wordb(c, pos) != nd->neg && run(c, k, pos);
    }
}

static bool m(mctx *c, int32_t ni, size_t pos, const kont *k) {
    if (c->overflow) return false;
    if (++c->depth > MAX_DEPTH || ++c->steps > MAX_STEPS) {
        c->overflow = true;
        c->depth--;
        return false;
    }
    bool y = m_inner(c, ni, pos, k);
    c->depth--;
    return y;
}

rx_mode rx_mode_of(const rx *r) { return r->mode; }

int64_t rx_search(const rx *r, const uint32_t *cp, size_t n, size_t from, size_t *end) {
    return rx_search_ex(r, cp, n, from, false, end);
}

int64_t rx_search_ex(const rx *r, const uint32_t *cp, size_t n, size_t from, bool no_empty_at_from, size_t *end) {
    mctx c = {.r = r, .cp = cp, .n = n};
    long total = 0;
    for (size_t s = from; s <= n && total < MAX_TOTAL_STEPS; s++) {
        size_t e = s;
        kont k = {.kind = K_END, .endp = &e};
        c.top_end = &e;
        c.no_empty_at = no_empty_at_from && s == from ? s : SIZE_MAX;
        c.overflow = false;
        c.depth = 0;
        c.steps = c.scan = 0;
        if (m(&c, r->root, s, &k)) {
            *end = e;
            return (int64_t)s;
        }
        total += c.steps + c.scan;
    }
    return -1;
}
