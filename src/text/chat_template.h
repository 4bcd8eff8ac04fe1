/*
 * chat_template.h - the Jinja subset that Hugging Face chat templates are written in, shared between
 * the parser (chat_template.c), the evaluator (chat_render.c), its values and filters (chat_value.c,
 * chat_filter.c) and the model-file reader (chat_source.c).
 *
 * The template is parsed once into an AST (statements and expressions, each with its source line) and
 * rendered as Hugging Face renders it: jinja2 with trim_blocks, lstrip_blocks and the loopcontrols
 * extension, keep_trailing_newline off, undefined variables as jinja2's default Undefined, and the
 * globals raise_exception, strftime_now, namespace, range and dict. Values follow Python's rules where a
 * template can see them: printing (str / repr), truthiness, comparison, `/` and `%`, slicing by code
 * point. Everything a render allocates comes from one arena released when the render ends.
 */
#ifndef LB_CHAT_TEMPLATE_H
#define LB_CHAT_TEMPLATE_H

#include "../core/core.h"
#include "../core/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- arena ---- */

typedef struct ct_arena ct_arena;
ct_arena *ct_arena_new(void);
void ct_arena_free(ct_arena *a);
/* Zeroed memory from the arena; NULL when out of memory. */
void *ct_alloc(ct_arena *a, size_t n);
char *ct_strdup(ct_arena *a, const char *s, size_t n);

/* ---- values ---- */

typedef enum ct_kind {
    CT_UNDEF, /* jinja2's Undefined: prints as "", iterates as empty, false; most other uses are errors */
    CT_NONE,
    CT_BOOL,
    CT_INT,
    CT_FLOAT,
    CT_STR,
    CT_LIST, /* lists and tuples */
    CT_DICT, /* insertion-ordered */
    CT_NS,   /* namespace(): a dict whose attributes `set` may change */
    CT_FUNC, /* a global or a bound string/dict method */
} ct_kind;

typedef struct ct_value ct_value;
typedef struct ct_ctx ct_ctx;

/* A growing byte buffer (malloc'd, NUL-terminated); oom set once an append failed or passed the limit. */
typedef struct ct_buf {
    char *p;
    size_t n, cap;
    bool oom;
} ct_buf;
typedef struct ct_node ct_node;

typedef struct ct_args {
    ct_value **pos;
    int n_pos;
    const char **kw_names;
    ct_value **kw;
    int n_kw;
} ct_args;

/* A callable: f is the CT_FUNC value itself (f->self: the bound object of a method; f->fname: its name). */
typedef ct_value *(*ct_builtin)(ct_ctx *c, const ct_node *at, const ct_value *f, const ct_args *a);

struct ct_value {
    ct_kind kind;
    bool b;        /* CT_BOOL: the value; CT_LIST: a tuple (prints with parentheses); CT_STR: Markup (|safe) */
    bool lazy;     /* CT_LIST: a generator (what map/select/reject return): true, no len(), no index, no JSON */
    int64_t i;
    double f;
    const char *s; /* CT_STR: bytes (NUL-terminated), n bytes; CT_UNDEF: the name that was missing */
    size_t n;      /* CT_STR: bytes; CT_LIST / CT_DICT / CT_NS: items */
    size_t cap;
    ct_value **items; /* CT_LIST: elements; CT_DICT / CT_NS: values */
    ct_value **keys;  /* CT_DICT / CT_NS: keys (strings, or any hashable value from a literal) */
    ct_builtin fn;    /* CT_FUNC */
    ct_value *self;   /* CT_FUNC: the bound object of a method, else NULL */
    const char *fname;
    const ct_node *macro; /* CT_FUNC of a {% macro %}: its CT_S_MACRO node */
};

/* ---- AST ---- */

typedef enum ct_op {
    /* expressions */
    CT_E_LIT,      /* value */
    CT_E_NAME,     /* name */
    CT_E_LIST,     /* kids; flag: a tuple */
    CT_E_DICT,     /* kids: key, value, key, value... */
    CT_E_ATTR,     /* kids[0] . name */
    CT_E_INDEX,    /* kids[0] [ kids[1] ] */
    CT_E_SLICE,    /* kids[0] [ kids[1] : kids[2] : kids[3] ] (NULL where absent) */
    CT_E_CALL,     /* kids[0] ( args ) */
    CT_E_FILTER,   /* kids[0] | name ( args ) */
    CT_E_TEST,     /* kids[0] is [not] name ( args ); flag = not */
    CT_E_UNARY,    /* name: "not", "-", "+" ; kids[0] */
    CT_E_BINARY,   /* name: operator; kids[0], kids[1] */
    CT_E_COND,     /* kids[0] if kids[1] else kids[2] (kids[2] may be NULL) */
    CT_E_CHAIN,    /* kids[0] targets[0] kids[1] targets[1] kids[2]...: a chained comparison (a < b < c) */
    /* statements */
    CT_S_TEXT,     /* text */
    CT_S_OUTPUT,   /* {{ kids[0] }} */
    CT_S_IF,       /* kids: cond, body, cond, body, ..., [else body] ; n_kids odd when there is an else */
    CT_S_FOR,      /* targets (names), kids[0] iterable, kids[1] filter or NULL, kids[2] body, kids[3] else */
    CT_S_SET,      /* targets (names) or name.attr (flag = attribute), kids[0] value or body (flag2) */
    CT_S_FILTER,   /* kids[0] body, kids[1] the filter chain over the name CT_FILTER_BODY */
    CT_S_MACRO,    /* name, targets = parameters, kids[0] body, kids[1 + i] default of parameter i or NULL */
    CT_S_BREAK,
    CT_S_CONTINUE,
    CT_S_BODY,     /* kids: statements */
} ct_op;

struct ct_node {
    ct_op op;
    int line;
    bool flag, flag2;
    const char *name; /* NUL-terminated */
    ct_value *value;  /* CT_E_LIT */
    const char *text; /* CT_S_TEXT */
    size_t text_len;
    ct_node **kids;
    int n_kids;
    const char **targets; /* CT_S_FOR / CT_S_SET */
    int n_targets;
    const char **kw_names; /* CT_E_CALL / FILTER / TEST: keyword arguments are the last n_kw kids */
    int n_kw;
};

#define CT_FILTER_BODY " filter body" /* not a name a template can write */

/* A parsed template: its AST, the arena holding it, and what the model files said beside it. */
struct lb_chat_template {
    ct_arena *arena;
    ct_node *root;
    char *source; /* malloc'd copy of the source, NUL-terminated */
    size_t source_len;
    char *bos_token, *eos_token; /* from the model files; NULL when they did not say */
};

/* Parse a template into t->root (t->arena must exist). Errors name the line and the construct. */
lb_status ct_parse(lb_chat_template *t, const char *src, size_t len, lb_error *err);

/* ---- rendering ---- */

#define CT_MAX_OUTPUT ((size_t)64 << 20) /* a render producing more is stopped (a runaway template) */
#define CT_MAX_RANGE 1000000             /* range() and string repetition past this are refused */
#define CT_MAX_STEPS 2000000             /* loop iterations + macro calls in one render */

struct ct_ctx {
    ct_arena *arena;
    lb_error *err;
    lb_status status; /* first failure; once set every evaluation unwinds */
    ct_buf *out;      /* where text goes (a `set` block captures into its own) */
    struct ct_frame *frame;
    struct ct_frame *top; /* the template's top-level frame, which macros see */
    int loop_depth, call_depth;
    int64_t steps;
    int ctrl; /* 1 break, 2 continue pending */
};

/* Set the first failure ("chat template line N: ...") and return NULL. */
ct_value *ct_fail(ct_ctx *c, const ct_node *at, lb_status s, const char *fmt, ...) LB_PRINTF(4, 5);
bool ct_failed(const ct_ctx *c);

ct_value *ct_new(ct_ctx *c, ct_kind k);
ct_value *ct_undef(ct_ctx *c, const char *what);
ct_value *ct_none(ct_ctx *c);
ct_value *ct_bool(ct_ctx *c, bool b);
ct_value *ct_int(ct_ctx *c, int64_t i);
ct_value *ct_float(ct_ctx *c, double f);
ct_value *ct_str(ct_ctx *c, const char *s, size_t n); /* copies */
ct_value *ct_list(ct_ctx *c, size_t cap);
ct_value *ct_dict(ct_ctx *c, ct_kind k);
bool ct_list_push(ct_ctx *c, ct_value *list, ct_value *v);
bool ct_dict_set(ct_ctx *c, ct_value *d, ct_value *key, ct_value *v);
ct_value *ct_dict_get(const ct_value *d, const char *key, size_t n); /* NULL when absent */
ct_value *ct_from_json(ct_ctx *c, const json_value *j);

bool ct_truthy(const ct_value *v);
bool ct_equal(const ct_value *a, const ct_value *b);
const char *ct_kind_name(const ct_value *v); /* Python's type name as jinja2 errors say it */
/* Python's str() and repr() of a value, appended to a growing buffer (ct_buf above). */
void ct_buf_put(ct_buf *b, const char *s, size_t n);
void ct_buf_str(ct_buf *b, const ct_value *v);
void ct_buf_repr(ct_buf *b, const ct_value *v);
/* str(v) as a new string value. */
ct_value *ct_to_str(ct_ctx *c, const ct_value *v);
/* json.dumps(v, ensure_ascii=flags & CT_JSON_ASCII, indent=indent (<0: none), sort_keys=flags & CT_JSON_SORT)
 * into b; false on a value JSON cannot hold (the error is set). */
enum { CT_JSON_SORT = 1, CT_JSON_ASCII = 2 };
bool ct_buf_json(ct_ctx *c, const ct_node *at, ct_buf *b, const ct_value *v, int indent, int flags, int depth);
/* Number of code points of a UTF-8 string, and the byte offset of code point i (0 <= i <= count). */
size_t ct_utf8_count(const char *s, size_t n);
size_t ct_utf8_offset(const char *s, size_t n, size_t i);

/* Filters, tests, methods and globals (chat_filter.c). */
ct_value *ct_apply_filter(ct_ctx *c, const ct_node *at, const char *name, ct_value *v, const ct_args *a);
/* Returns -1 on failure (error set), else 0 / 1. */
int ct_apply_test(ct_ctx *c, const ct_node *at, const char *name, ct_value *v, const ct_args *a);
ct_value *ct_method(ct_ctx *c, const ct_node *at, ct_value *obj, const char *name);
ct_value *ct_global(ct_ctx *c, const char *name);

/* Render t with the variables of `vars` (a CT_DICT made in c's arena) into c->out. */
lb_status ct_render(ct_ctx *c, const lb_chat_template *t, ct_value *vars);

#endif
