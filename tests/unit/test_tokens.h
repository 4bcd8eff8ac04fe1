/*
 * test_tokens.h - a text file as a tokenizer's ids, for the tests that calibrate or evaluate on real text (the
 * GPU tests of tests/cuda, the host-copy tests of tests/cudahost). Fails the test on any error.
 */
#ifndef LB_TEST_TOKENS_H
#define LB_TEST_TOKENS_H

#include "core/core.h"
#include "lowbit.h"
#include "test.h"

static inline int32_t *tokenize(const lb_tokenizer *tok, const char *path, int64_t *n) {
    char *text;
    size_t len;
    int32_t *ids = NULL;
    lb_error e;
    REQUIRE(lb_read_file(path, (size_t)1 << 26, &text, &len, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_tokenizer_encode(tok, text, len, &ids, n, &e) == LB_OK, "%s", e.msg);
    lb_free(text);
    return ids;
}

#endif
