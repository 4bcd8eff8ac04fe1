/*
 * test_regex.c - the pre-tokenizer regex engine (src/text/regex.c) on cases whose results follow from
 * the two dialects' documented semantics: ECMA-262 22.2 and Oniguruma's doc/RE (backtracking order,
 * lazy / possessive quantifiers, atomic groups, lookahead, case folding, nested classes, $), and
 * llama.cpp's unicode_regex_split (the collapsed text: every letter stands for every \p{L..}, non-ASCII
 * whitespace for U+000B, \s \d \w ASCII-only). The end-to-end references are the Python tests
 * (llama.cpp and Hugging Face tokenizers on real patterns); these pin the engine's corners.
 */
#include "text/regex.h"
#include "text/unicode.h"
#include "test.h"

#include <stdint.h>

/* The matches of pat over text, as the pre-tokenizer enumerates them, joined by '|'; "(error)" when
 * the pattern does not compile. */
static const char *matches(const char *pat, rx_mode mode, const char *text) {
    static char out[512];
    rx *r = NULL;
    lb_error err;
    if (rx_compile(pat, strlen(pat), mode, &r, &err) != LB_OK) return "(error)";
    uint32_t cp[128];
    size_t off[129], n = 0, tl = strlen(text);
    for (size_t i = 0; i < tl && n < 128;) {
        off[n] = i;
        i += utf8_decode((const uint8_t *)text + i, tl - i, &cp[n++]);
    }
    off[n] = tl;
    size_t o = 0, from = 0, k = 0;
    bool no_empty = false;
    out[0] = 0;
    while (from <= n) {
        size_t end;
        int64_t st = rx_search_ex(r, cp, n, from, no_empty, &end);
        if (st < 0) break;
        o += (size_t)snprintf(out + o, sizeof out - o, "%s%.*s", k++ ? "|" : "", (int)(off[end] - off[st]), text + off[st]);
        bool empty = end == (size_t)st;
        from = empty && mode == RX_ONIG ? end + 1 : end;
        no_empty = empty && mode == RX_LLAMA;
    }
    rx_free(r);
    return out;
}

#define EXPECT(pat, mode, text, want)                                                                      \
    do {                                                                                                   \
        const char *got_ = matches(pat, mode, text);                                                       \
        CHECK(strcmp(got_, want) == 0, "%s /%s/ on \"%s\": got \"%s\", want \"%s\"", (mode) ? "llama" : "onig", \
              pat, text, got_, want);                                                                      \
    } while (0)

static void test_onig(void) {
    EXPECT("\\s+(?!\\S)|\\s+", RX_ONIG, "a   b", "  | ");       /* the run gives one space back */
    EXPECT("a+?", RX_ONIG, "aaa", "a|a|a");                     /* lazy */
    EXPECT("a++a", RX_ONIG, "aaaa", "");                        /* possessive: nothing given back */
    EXPECT("a*+b", RX_ONIG, "aab", "aab");
    EXPECT("(?>a|ab)c", RX_ONIG, "abc", "");                    /* atomic: 'a' is kept, 'c' fails */
    EXPECT("(?:a|ab)c", RX_ONIG, "abc", "abc");
    EXPECT("\\d{1,3}(?=(?:\\d{3})*\\b)", RX_ONIG, "1234567", "1|234|567");
    EXPECT("(?i:'s|'t)", RX_ONIG, "'S 'ſ 'T 'x", "'S|'ſ|'T");   /* U+017F folds to s */
    EXPECT("[^\\s[.,]]+", RX_ONIG, "ab, c.d", "ab|c|d");        /* nested class: a union */
    EXPECT("\\p{Lu}+", RX_ONIG, "ABcDÉ", "AB|DÉ");
    EXPECT("[\\p{Ll}\\p{M}]+", RX_ONIG, "e\xCC\x81" "A", "e\xCC\x81");
    EXPECT("a$", RX_ONIG, "a\n", "a");                          /* $ before a final newline */
    EXPECT("\\w+", RX_ONIG, "héllo wörld_1", "héllo|wörld_1");  /* Unicode \w */
    EXPECT("\\s+", RX_ONIG, "a\xE3\x80\x80\xC2\xA0" "b", "\xE3\x80\x80\xC2\xA0");
    EXPECT("\\P{L}+", RX_ONIG, "ab12c", "12");
    EXPECT("x*", RX_ONIG, "ab", "||");                         /* empty matches at 0, 1 and 2 */
    EXPECT("(a|b)*c", RX_ONIG, "ababc", "ababc");
    EXPECT("a{2}|b{1,}", RX_ONIG, "aaabbb", "aa|bbb");
    EXPECT("a{,2}", RX_ONIG, "a{,2}", "a{,2}");                 /* not a quantifier: literal */
    EXPECT("(?<=a)b", RX_ONIG, "ab", "(error)");                /* lookbehind: refused */
    EXPECT("[a", RX_ONIG, "a", "(error)");
    EXPECT("\\p{Nope}", RX_ONIG, "a", "(error)");
    EXPECT("[a&&b]", RX_ONIG, "a", "(error)");
}

static void test_llama(void) {
    EXPECT("\\p{Lu}+", RX_LLAMA, "abÉ1", "abÉ");               /* collapsed: any letter is \p{Lu} */
    EXPECT("\\s+|\\p{L}", RX_LLAMA, "a\xE3\x80\x80\xC2\xA0" "b", "a|\xE3\x80\x80\xC2\xA0|b");
    EXPECT("[^\\s]+", RX_LLAMA, "a\xE3\x80\x80" "b", "a|b");   /* wide text: U+3000 stands as U+000B */
    EXPECT("\\d+", RX_LLAMA, "12٣4", "12|4");                   /* \d is ASCII */
    EXPECT("[^a-z\\p{N}]+", RX_LLAMA, "abÉc1", "É");            /* a letter is no a-z in the collapsed text */
    EXPECT("[一-龥]+", RX_LLAMA, "x中文y", "中文");              /* wide text keeps code points */
    EXPECT("\\p{N}[x]", RX_LLAMA, "٣x1x", "٣x|1x");
    EXPECT("(?i:a)", RX_LLAMA, "a", "(error)");                /* not ECMAScript */
    EXPECT("\\p{L}é", RX_LLAMA, "aé", "(error)");              /* llama.cpp refuses both at once */
    EXPECT("(?=(\\d{3})+(?!\\d))", RX_LLAMA, "1234567", "|"); /* empty matches before 234 and 567 */
    EXPECT("\\s+$", RX_LLAMA, "a  \n", "  \n");                 /* $ only at the end */
}

static void test_limits(void) {
    const char *pat = "(a*)*b";
    char text[64];
    memset(text, 'a', 40);
    text[40] = 0;
    EXPECT(pat, RX_ONIG, text, ""); /* catastrophic backtracking: bounded, counts as no match */
    char *big = malloc(200001);
    REQUIRE(big, "out of memory");
    memset(big, 'a', 200000);
    big[200000] = 0;
    uint32_t *cp = malloc(200000 * sizeof *cp);
    REQUIRE(cp, "out of memory");
    for (int i = 0; i < 200000; i++) cp[i] = 'a';
    const char *pats[3] = {"(?:(?=[\\p{L}])[^A-Z])+", "(?:ab|a)*c", "a+c"};
    size_t end = 0;
    rx *r = NULL;
    lb_error err;
    for (int i = 0; i < 3; i++) { /* the last two would take quadratic time from every start */
        REQUIRE(rx_compile(pats[i], strlen(pats[i]), RX_ONIG, &r, &err) == LB_OK, "%s", err.msg);
        int64_t st = rx_search(r, cp, 200000, 0, &end);
        if (i == 0) CHECK(st == 0 && end == 200000, "a one-char group over 200000 chars: %lld..%zu", (long long)st, end);
        else CHECK(st < 0, "pattern %d over 200000 chars: bounded, no match (got %lld)", i, (long long)st);
        rx_free(r);
    }
    free(cp);
    free(big);
}

int main(void) {
    test_onig();
    test_llama();
    test_limits();
    TEST_DONE();
}
