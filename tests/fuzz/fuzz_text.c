/*
 * fuzz_text.c - fuzz target for text through every tokenizer: the input is UTF-8 text (or not: invalid
 * UTF-8 must be refused cleanly), encoded by each tokenizer of tests/golden/conformance/tokenizers and of
 * models/tiny, and by tiny's tokenizer as read back from a GGUF file; the ids must be in range and decode.
 * Run from the repository root. Seeds: tests/fuzz/corpus/text.
 */
#define FUZZ_NAME "text"
#include "lowbit.h"

#include "fuzz_common.h"

#define MAX_TOK 16

static lb_tokenizer *toks[MAX_TOK];
static int n_toks = -1;

static void load(const char *path) {
    lb_error err;
    if (n_toks < MAX_TOK && lb_tokenizer_load(path, &toks[n_toks], &err) == LB_OK) n_toks++;
    else fprintf(stderr, "fuzz_text: %s: %s\n", path, err.msg);
}

static void free_all(void) {
    for (int i = 0; i < n_toks; i++) lb_tokenizer_free(toks[i]);
}

static void load_all(void) {
    n_toks = 0;
    const char *root = "tests/golden/conformance/tokenizers";
    DIR *d = opendir(root);
    for (struct dirent *e; d && (e = readdir(d));) {
        char p[512];
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", root, e->d_name);
        load(p);
    }
    if (d) closedir(d);
    load("models/tiny");
    /* the GGUF tokenizer: tiny written as a GGUF file */
    char out[320];
    snprintf(out, sizeof out, "%s/tiny.gguf", fuzz_dir());
    lb_quantize_params qp = lb_quantize_default_params();
    qp.ftype = "f32"; /* only the tokenizer matters: the cheapest conversion */
    qp.n_threads = 1;
    lb_error err;
    if (lb_quantize_model("models/tiny", out, &qp, NULL, &err) == LB_OK) load(out);
    else fprintf(stderr, "fuzz_text: %s\n", err.msg);
    if (n_toks < 2) abort(); /* not run from the repository root: models/tiny is missing */
    atexit(free_all);
}

#ifdef LB_LIBFUZZER
/* the tokenizers are loaded before libFuzzer starts timing units */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    load_all();
    return 0;
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (n_toks < 0) load_all();
    for (int k = 0; k < n_toks; k++) {
        int32_t *ids = NULL;
        int64_t n = 0;
        lb_error err;
        if (lb_tokenizer_encode(toks[k], (const char *)data, size, &ids, &n, &err) == LB_OK) {
            int64_t nv = lb_tokenizer_n_vocab(toks[k]);
            for (int64_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= nv) abort();
            char *text = NULL;
            size_t len;
            if (lb_tokenizer_decode(toks[k], ids, n, &text, &len, &err) != LB_OK) abort();
            lb_free(text);
        }
        lb_free(ids);
    }
    return 0;
}
