/*
 * cmd_tokenize.c - `lowbit tokenize MODEL (--text FILE | -p STRING) [--ids | --json]`: the token ids a
 * model's tokenizer gives a text, without BOS/EOS, as `lowbit eval` tokenizes its text.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fputs("usage: lowbit tokenize MODEL (--text FILE | -p STRING) [--ids | --json]\n\n"
          "  MODEL        a GGUF file, a tokenizer.json, or the directory holding it\n"
          "  --text FILE  UTF-8 text to tokenize\n"
          "  -p STRING    the text on the command line\n"
          "  --ids        only the ids, one line separated by spaces\n"
          "  --json       {\"n_tokens\": N, \"ids\": [...]} on stdout\n"
          "  default      one token a line: id and its text\n",
          f);
}

typedef struct tok_opts {
    const char *model, *text, *prompt;
    bool ids, json;
} tok_opts;

/* 0 to go on, -1 after --help, else an exit status. */
static int parse(int argc, char **argv, tok_opts *o) {
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return -1;
        }
        if (!strcmp(a, "--ids")) o->ids = true;
        else if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "--text") && v) o->text = v, i++;
        else if (!strcmp(a, "-p") && v) o->prompt = v, i++;
        else if (a[0] == '-' && a[1]) {
            usage(stderr);
            return cli_fail("tokenize: unknown option or missing value: %s", a);
        } else if (!o->model) o->model = a;
        else return cli_fail("tokenize: more than one MODEL (%s, %s)", o->model, a);
    }
    if (!o->model || !o->text == !o->prompt) {
        usage(stderr);
        return cli_fail("tokenize: MODEL and exactly one of --text FILE or -p STRING are required");
    }
    if (o->ids && o->json) return cli_fail("tokenize: --ids and --json exclude each other");
    return 0;
}

static void print_tokens(const tok_opts *o, const lb_tokenizer *t, const int32_t *ids, int64_t n) {
    if (o->json) {
        printf("{\"n_tokens\": %lld, \"ids\": [", (long long)n);
        for (int64_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
        printf("]}\n");
        return;
    }
    if (o->ids) {
        for (int64_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const char *s = lb_tokenizer_token_text(t, ids[i]);
        printf("%7d  ", ids[i]);
        cli_json_str(stdout, s ? s : "");
        printf("\n");
    }
}

int cmd_tokenize(int argc, char **argv) {
    tok_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    char *text = NULL;
    size_t len;
    if (o.text && (rc = cli_read_text(o.text, &text, &len))) return rc;
    lb_error e;
    lb_tokenizer *t = NULL;
    int32_t *ids = NULL;
    int64_t n = 0;
    lb_status s = lb_tokenizer_load(o.model, &t, &e);
    if (s == LB_OK)
        s = o.text ? lb_tokenizer_encode(t, text, len, &ids, &n, &e)
                   : lb_tokenizer_encode(t, o.prompt, strlen(o.prompt), &ids, &n, &e);
    if (s == LB_OK) print_tokens(&o, t, ids, n);
    else rc = cli_fail_lb(s, &e);
    lb_free(ids);
    lb_tokenizer_free(t);
    free(text);
    return rc;
}
