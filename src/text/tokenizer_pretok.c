/*
 * tokenizer_pretok.c - the pre-tokenizer regexes of byte-level BPE tokenizers, hand-coded: GPT-2's
 * (ByteLevel use_regex), Llama-3's and Qwen2's (Split, behavior Isolated). Only these exact pattern
 * strings are recognized; there is no general regex engine.
 *
 * Semantics are Oniguruma's, which Hugging Face tokenizers uses: alternatives are tried left to right
 * and the first that matches wins; quantifiers are greedy and backtrack (\s+(?!\S) gives back one
 * whitespace char before a non-space). \p{L}, \p{N} and \s come from unicode_data.h.
 * Patterns: openai/gpt-2 src/encoder.py; meta-llama/Meta-Llama-3-8B and Qwen/Qwen2-7B tokenizer.json.
 */
#include "text.h"
#include "unicode.h"

#include <string.h>

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_PATTERN[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_PATTERN[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

enum { C_LETTER, C_NUMBER, C_SPACE, C_OTHER };

static inline int char_class(uint32_t cp) {
    unsigned f = uni_flags(cp);
    return f & UNI_LETTER ? C_LETTER : f & UNI_NUMBER ? C_NUMBER : f & UNI_SPACE ? C_SPACE : C_OTHER;
}

/* End of the run of class k starting at i (at most `max` chars); *last gets the last char's start. */
static size_t run_class(const uint8_t *s, size_t n, size_t i, int k, size_t max, size_t *last) {
    size_t count = 0;
    *last = i;
    while (i < n && count < max) {
        size_t l;
        uint32_t cp = utf8_cp_at(s, n, i, &l);
        if (char_class(cp) != k) break;
        *last = i;
        i += l;
        count++;
    }
    return i;
}

/* Length of a contraction 's 't 're 've 'm 'll 'd at i (s[i] == '\''), or 0. With fold, letters
 * match case-insensitively (Unicode simple case folding: 'ſ' U+017F folds to 's'). */
static size_t contraction(const uint8_t *s, size_t n, size_t i, bool fold) {
    if (i + 1 >= n) return 0;
    uint8_t c = s[i + 1], d = i + 2 < n ? s[i + 2] : 0;
    if (fold) {
        if (c == 0xC5 && d == 0xBF) return 3; /* 'ſ */
        c = (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        d = (uint8_t)(d >= 'A' && d <= 'Z' ? d + 32 : d);
    }
    if (c == 's' || c == 't' || c == 'm' || c == 'd') return 2;
    if ((c == 'r' || c == 'v') && d == 'e') return 3;
    if (c == 'l' && d == 'l') return 3;
    return 0;
}

/* \s+(?!\S)|\s+ at i (s[i] is whitespace): the run, less its last char when a non-space follows. */
static size_t match_space_tail(const uint8_t *s, size_t n, size_t i, size_t l0) {
    size_t last;
    size_t q = run_class(s, n, i, C_SPACE, SIZE_MAX, &last);
    if (q == n) return q;
    if (last > i) return last;
    return i + l0;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const uint8_t *s, size_t n, size_t i) {
    size_t l0, l1, last;
    uint32_t c0 = utf8_cp_at(s, n, i, &l0);
    if (c0 == '\'') {
        size_t k = contraction(s, n, i, false);
        if (k) return i + k;
    }
    if (c0 == ' ' && i + 1 < n) {
        int k1 = char_class(utf8_cp_at(s, n, i + 1, &l1));
        if (k1 != C_SPACE) return run_class(s, n, i + 1, k1, SIZE_MAX, &last);
    }
    int k0 = char_class(c0);
    if (k0 != C_SPACE) return run_class(s, n, i, k0, SIZE_MAX, &last);
    return match_space_tail(s, n, i, l0);
}

/* Llama-3 (max_digits 3) and Qwen2 (max_digits 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t match_llama3(const uint8_t *s, size_t n, size_t i, size_t max_digits) {
    size_t l0, l1, last;
    uint32_t c0 = utf8_cp_at(s, n, i, &l0);
    if (c0 == '\'') {
        size_t k = contraction(s, n, i, true);
        if (k) return i + k;
    }
    int k0 = char_class(c0);
    if (k0 == C_LETTER) return run_class(s, n, i, C_LETTER, SIZE_MAX, &last);
    if (k0 != C_NUMBER && c0 != '\r' && c0 != '\n' && i + l0 < n &&
        char_class(utf8_cp_at(s, n, i + l0, &l1)) == C_LETTER)
        return run_class(s, n, i + l0, C_LETTER, SIZE_MAX, &last);
    if (k0 == C_NUMBER) return run_class(s, n, i, C_NUMBER, max_digits, &last);
    size_t j = c0 == ' ' ? i + 1 : i;
    if (j < n && char_class(utf8_cp_at(s, n, j, &l1)) == C_OTHER) {
        size_t e = run_class(s, n, j, C_OTHER, SIZE_MAX, &last);
        while (e < n && (s[e] == '\r' || s[e] == '\n')) e++;
        return e;
    }
    /* c0 is whitespace: \s*[\r\n]+ ends after the last CR/LF of the whitespace run */
    size_t q = run_class(s, n, i, C_SPACE, SIZE_MAX, &last), nl_end = 0;
    for (size_t k = i; k < q; k++)
        if (s[k] == '\r' || s[k] == '\n') nl_end = k + 1;
    if (nl_end) return nl_end;
    return match_space_tail(s, n, i, l0);
}

/* \p{N} with every match isolated: one number char, or the run of other chars up to the next. */
static size_t match_digit(const uint8_t *s, size_t n, size_t i) {
    size_t l;
    if (char_class(utf8_cp_at(s, n, i, &l)) == C_NUMBER) return i + l;
    while (i < n && char_class(utf8_cp_at(s, n, i, &l)) != C_NUMBER) i += l;
    return i;
}

size_t lb_tok_pre_match(lb_tok_pre kind, const uint8_t *s, size_t n, size_t i) {
    switch (kind) {
    case LB_TOK_PRE_DIGITS: return match_digit(s, n, i);
    case LB_TOK_PRE_GPT2: return match_gpt2(s, n, i);
    case LB_TOK_PRE_LLAMA3: return match_llama3(s, n, i, 3);
    case LB_TOK_PRE_QWEN2: return match_llama3(s, n, i, 1);
    default: return n;
    }
}

lb_tok_pre lb_tok_pre_from_regex(const char *re) {
    if (!strcmp(re, LLAMA3_PATTERN)) return LB_TOK_PRE_LLAMA3;
    if (!strcmp(re, QWEN2_PATTERN)) return LB_TOK_PRE_QWEN2;
    if (!strcmp(re, GPT2_PATTERN)) return LB_TOK_PRE_GPT2;
    return LB_TOK_PRE_NONE;
}
