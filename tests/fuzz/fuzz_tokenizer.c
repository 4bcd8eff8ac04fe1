/*
 * fuzz_tokenizer.c - fuzz target for tokenizer.json (with tokenizer_config.json): the input is
 * tokenizer.json, optionally followed by the line "\n--config--\n" and tokenizer_config.json; both are
 * written to a scratch directory and loaded with lb_tokenizer_load(). A tokenizer that loads must encode
 * and decode a few texts (ids in range) and give every token's bytes and text. Seeds:
 * tests/fuzz/corpus/tokenizer (tests/fuzz/make_corpus.py).
 */
#define FUZZ_NAME "tokenizer"
#include "lowbit.h"

#include "fuzz_common.h"

#define SEP "\n--config--\n"

static const char *const TEXTS[] = {"Hello world, it's 2024!", "  a\tb\n\nc  ", "\xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80",
                                    "<|endoftext|><s></s>[INST]", ""};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t n0, n1;
    const uint8_t *p1;
    fuzz_split(data, size, SEP, &n0, &p1, &n1);
    char cfg[320];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", fuzz_dir());
    if (n1) fuzz_file("tokenizer_config.json", p1, n1);
    else unlink(cfg);
    fuzz_file("tokenizer.json", data, n0);
    lb_tokenizer *t = NULL;
    lb_error err;
    if (lb_tokenizer_load(fuzz_dir(), &t, &err) != LB_OK) return 0;
    int64_t nv = lb_tokenizer_n_vocab(t);
    for (size_t k = 0; k < sizeof TEXTS / sizeof TEXTS[0]; k++) {
        int32_t *ids = NULL;
        int64_t n = 0;
        if (lb_tokenizer_encode(t, TEXTS[k], strlen(TEXTS[k]), &ids, &n, &err) == LB_OK) {
            for (int64_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= nv) abort();
            char *text = NULL;
            size_t len;
            if (lb_tokenizer_decode(t, ids, n, &text, &len, &err) == LB_OK && text[len] != 0) abort();
            lb_free(text);
        }
        lb_free(ids);
    }
    char buf[64];
    for (int32_t id = 0; id < nv && id < 4096; id++) {
        lb_tokenizer_token_bytes(t, id, buf, sizeof buf);
        lb_tokenizer_token_text(t, id);
    }
    lb_tokenizer_free(t);
    return 0;
}
