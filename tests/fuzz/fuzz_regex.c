/*
 * fuzz_regex.c - fuzz target for the pre-tokenizer regex engine (src/text/regex.c), whose patterns come
 * from untrusted tokenizer.json files. An input is a pattern, a 0 byte, and a text: the pattern is
 * compiled in both dialects; on success every match over the text (made valid UTF-8) is enumerated as
 * the pre-tokenizer does, and each must lie inside the text, start at or after the search position and
 * not end before it starts.
 *
 * Built with -DLB_LIBFUZZER it is a libFuzzer target (LLVMFuzzerTestOneInput). Otherwise it has a
 * main() that runs a deterministic mutation loop over seed patterns (llama.cpp's and common HF ones):
 *     fuzz_regex [iterations (default 20000)] [seed (default 1)]
 */
#include "text/regex.h"
#include "text/unicode.h"

#define FUZZ_OWN_MAIN
#include "fuzz_common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT 96 /* code points: keeps pathological backtracking short */

static long n_compiled, n_matches;

static void check(bool ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_regex: invariant broken: %s\n", what);
        abort();
    }
}

static void run(const uint8_t *pat, size_t pl, const uint32_t *cp, size_t n) {
    for (int mode = 0; mode < 2; mode++) {
        rx *r = NULL;
        lb_error err;
        if (rx_compile((const char *)pat, pl, (rx_mode)mode, &r, &err) != LB_OK) {
            check(r == NULL && err.msg[0], "a failed compile sets a message and no regex");
            continue;
        }
        n_compiled++;
        size_t from = 0;
        bool no_empty = false;
        while (from <= n) { /* each search moves on: past an empty match, or from a non-empty one's end */
            size_t end = 0;
            int64_t st = rx_search_ex(r, cp, n, from, no_empty, &end);
            if (st < 0) break;
            check((size_t)st >= from && end >= (size_t)st && end <= n, "match inside the text, after from");
            check(!(no_empty && (size_t)st == from && end == from), "no empty match where one was excluded");
            n_matches++;
            bool empty = end == (size_t)st;
            from = empty && mode == RX_ONIG ? end + 1 : end;
            no_empty = empty && mode == RX_LLAMA;
        }
        rx_free(r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *z = memchr(data, 0, size);
    size_t pl = z ? (size_t)(z - data) : size;
    const uint8_t *t = z ? z + 1 : data + size;
    size_t tl = size - pl - (z ? 1 : 0);
    uint8_t *fixed = malloc(3 * tl + 1);
    uint32_t *cp = malloc((3 * tl + 1) * sizeof *cp);
    if (!fixed || !cp) {
        free(fixed), free(cp);
        return 0;
    }
    size_t fl = utf8_lossy(t, tl, fixed), n = 0;
    for (size_t i = 0; i < fl && n < MAX_TEXT;) i += utf8_decode(fixed + i, fl - i, &cp[n++]);
    run(data, pl, cp, n);
    free(fixed);
    free(cp);
    return 0;
}

#ifndef LB_LIBFUZZER

static const char *const seeds[] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+",
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*",
    "\\d{1,3}(?=(?:\\d{3})*\\b)",
    "(?=(\\d{3})+(?!\\d))",
    " ?[^(\\s|.,!?…。，、।۔،)]+",
    "[一-龥ࠀ-一가-퟿]+|\\s+$",
    "\\p{Lu}++\\P{Ll}*?[\\x41-\\u005A]{2,}|(?>a|ab)c|\\w+\\b|[^\\w\\s]+",
    "(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\s{512}(?!\\S)|\\s{1,2}(?!\\S)",
};
static const char dict[] = "()[]{}*+?|\\^$.-:=!<>,0123pPLNsSdDwWbB{}iu";
static const char *const texts[] = {"Hello world 12345 it's", "naïve 日本語 😀 \t\n x", "aaaaaaaaaaaaaaaaaaaaab", "'S 'll 1,000.5 $$"};

static void mutate(uint8_t *buf, size_t *len, size_t cap) {
    int n = 1 + (int)(fuzz_rnd() % 4);
    for (int k = 0; k < n; k++) {
        size_t op = fuzz_rnd() % 4, i = *len ? fuzz_rnd() % *len : 0;
        if (op == 0 && *len) buf[i] = dict[fuzz_rnd() % (sizeof dict - 1)];
        else if (op == 1 && *len < cap) {
            memmove(buf + i + 1, buf + i, *len - i);
            buf[i] = dict[fuzz_rnd() % (sizeof dict - 1)];
            (*len)++;
        } else if (op == 2 && *len) {
            memmove(buf + i, buf + i + 1, *len - i - 1);
            (*len)--;
        } else if (*len) {
            buf[i] = (uint8_t)fuzz_rnd();
        }
    }
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000;
    fuzz_seed_rng(argc > 2 ? strtoull(argv[2], NULL, 10) : 1);
    uint8_t buf[1024];
    for (long it = 0; it < iters; it++) {
        const char *p = seeds[fuzz_rnd() % (sizeof seeds / sizeof seeds[0])];
        const char *t = texts[fuzz_rnd() % (sizeof texts / sizeof texts[0])];
        size_t pl = strlen(p), tl = strlen(t);
        memcpy(buf, p, pl);
        if (it) mutate(buf, &pl, 400);
        buf[pl] = 0;
        memcpy(buf + pl + 1, t, tl);
        LLVMFuzzerTestOneInput(buf, pl + 1 + tl);
    }
    printf("fuzz_regex: %ld inputs, %ld patterns compiled, %ld matches, no invariant broken\n", iters, n_compiled, n_matches);
    return 0;
}

#endif
