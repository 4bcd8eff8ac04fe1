/*
 * tokenizer_pretok.c - hand-written pre-tokenizer splitters (pretok.h): GPT-2's regex (ByteLevel
 * use_regex), Llama-3's and Qwen2's (Split, behavior Isolated, as Hugging Face runs them and as
 * llama.cpp's own splitters do), single digits, and llama.cpp's Kimi-K2, digit-grouping and newline
 * splitters. Any other pattern goes through the regex engine (regex.c).
 *
 * Semantics of the regexes are Oniguruma's, which Hugging Face tokenizers uses: alternatives are tried
 * left to right and the first that matches wins; quantifiers are greedy and backtrack (\s+(?!\S) gives
 * back one whitespace char before a non-space). \p{L}, \p{N} and \s come from unicode_data.h.
 * Patterns: openai/gpt-2 src/encoder.py; meta-llama/Meta-Llama-3-8B and Qwen/Qwen2-7B tokenizer.json;
 * llama.cpp src/unicode.cpp (unicode_regex_split_custom_llama3, _kimi_k2, _afmoe, _newlines).
 */
#include "pretok.h"
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
 * match case-insensitively: ASCII, and with fold_long_s 'ſ' U+017F as 's' (Oniguruma's folding;
 * llama.cpp's splitters lowercase only, which leaves 'ſ' alone). */
static size_t contraction(const uint8_t *s, size_t n, size_t i, bool fold, bool fold_long_s) {
    if (i + 1 >= n) return 0;
    uint8_t c = s[i + 1], d = i + 2 < n ? s[i + 2] : 0;
    if (fold) {
        if (fold_long_s && c == 0xC5 && d == 0xBF) return 3; /* 'ſ */
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
        size_t k = contraction(s, n, i, false, false);
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
static size_t match_llama3(const uint8_t *s, size_t n, size_t i, size_t max_digits, bool fold_long_s) {
    size_t l0, l1, last;
    uint32_t c0 = utf8_cp_at(s, n, i, &l0);
    if (c0 == '\'') {
        size_t k = contraction(s, n, i, true, fold_long_s);
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

/* llama.cpp's unicode_cpt_is_han: the CJK ideograph blocks. */
static bool is_han(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0x2CEB0 && c <= 0x2EBEF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Code point at i, or 0xFFFFFFFF past the end (llama.cpp's OUT_OF_RANGE). */
static uint32_t cp_or_end(const uint8_t *s, size_t n, size_t i, size_t *l) {
    if (i >= n) {
        *l = 0;
        return 0xFFFFFFFFu;
    }
    return utf8_cp_at(s, n, i, l);
}

static bool is_non_han_letter(uint32_t c) { return c != 0xFFFFFFFFu && char_class(c) == C_LETTER && !is_han(c); }

/* Kimi-K2, the letter branch at i: [^\r\n\p{L}\p{N}]? then non-Han letters, then an optional
 * contraction; 0 when it does not apply. */
static size_t kimi_word(const uint8_t *s, size_t n, size_t i) {
    size_t l0, l1;
    uint32_t c0 = cp_or_end(s, n, i, &l0);
    int k0 = char_class(c0);
    bool lead = !(c0 == '\r' || c0 == '\n' || k0 == C_LETTER || k0 == C_NUMBER);
    if (!is_non_han_letter(c0) && !(lead && is_non_han_letter(cp_or_end(s, n, i + l0, &l1)))) return 0;
    size_t p = lead ? i + l0 : i;
    while (is_non_han_letter(cp_or_end(s, n, p, &l1))) p += l1;
    if (p + 1 < n && s[p] == '\'') {
        uint8_t c = s[p + 1], d = p + 2 < n ? s[p + 2] : 0;
        c = (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        d = (uint8_t)(d >= 'A' && d <= 'Z' ? d + 32 : d);
        if (c == 's' || c == 't' || c == 'm' || c == 'd') p += 2;
        else if (((c == 'r' || c == 'v') && d == 'e') || (c == 'l' && d == 'l')) p += 3;
    }
    return p;
}

/* llama.cpp's unicode_regex_split_custom_kimi_k2 at i. */
static size_t match_kimi(const uint8_t *s, size_t n, size_t i) {
    size_t l0, l1, last;
    uint32_t c0 = utf8_cp_at(s, n, i, &l0);
    if (is_han(c0)) {
        size_t p = i;
        while (p < n && is_han(utf8_cp_at(s, n, p, &l1))) p += l1;
        return p;
    }
    size_t w = kimi_word(s, n, i);
    if (w) return w;
    int k0 = char_class(c0);
    if (k0 == C_NUMBER) return run_class(s, n, i, C_NUMBER, 3, &last);
    size_t j = c0 == ' ' ? i + 1 : i;
    if (j < n && char_class(utf8_cp_at(s, n, j, &l1)) == C_OTHER) {
        size_t e = run_class(s, n, j, C_OTHER, SIZE_MAX, &last);
        while (e < n && (s[e] == '\r' || s[e] == '\n')) e++;
        return e;
    }
    size_t q = run_class(s, n, i, C_SPACE, SIZE_MAX, &last), nl_end = 0;
    for (size_t k = i; k < q; k++)
        if (s[k] == '\r' || s[k] == '\n') nl_end = k + 1;
    if (nl_end) return nl_end;
    if (k0 != C_SPACE) return i + l0;
    return match_space_tail(s, n, i, l0);
}

/* llama.cpp's unicode_regex_split_custom_afmoe at i: up to the end of the first group of the next
 * digit run (its length mod 3, or 3), the text before the run included; or the rest without one. */
static size_t match_afmoe(const uint8_t *s, size_t n, size_t i) {
    size_t l, d = i;
    while (d < n && char_class(utf8_cp_at(s, n, d, &l)) != C_NUMBER) d += l;
    if (d == n) return n;
    size_t count = 0, e = d;
    while (e < n && char_class(utf8_cp_at(s, n, e, &l)) == C_NUMBER) e += l, count++;
    size_t take = count % 3 ? count % 3 : 3, p = d;
    for (size_t k = 0; k < take; k++) utf8_cp_at(s, n, p, &l), p += l;
    return p;
}

size_t pre_split_end(pre_split kind, const uint8_t *s, size_t n, size_t i) {
    switch (kind) {
    case SPLIT_GPT2: return match_gpt2(s, n, i);
    case SPLIT_LLAMA3: return match_llama3(s, n, i, 3, true);
    case SPLIT_QWEN2: return match_llama3(s, n, i, 1, true);
    case SPLIT_LLAMA3_CPP: return match_llama3(s, n, i, 3, false);
    case SPLIT_QWEN2_CPP: return match_llama3(s, n, i, 1, false);
    case SPLIT_DIGIT: return match_digit(s, n, i);
    case SPLIT_KIMI: return match_kimi(s, n, i);
    case SPLIT_AFMOE: return match_afmoe(s, n, i);
    default: {
        bool nl = s[i] == '\n';
        while (i < n && (s[i] == '\n') == nl) i++;
        return i;
    }
    }
}

int pre_split_from_regex(const char *re) {
    if (!strcmp(re, LLAMA3_PATTERN)) return SPLIT_LLAMA3;
    if (!strcmp(re, QWEN2_PATTERN)) return SPLIT_QWEN2;
    if (!strcmp(re, GPT2_PATTERN)) return SPLIT_GPT2;
    return -1;
}
