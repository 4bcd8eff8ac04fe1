/*
 * regex.h - a small backtracking regular-expression engine over code points, for the split rules of
 * pre-tokenizers. Two dialects:
 *
 * RX_ONIG: Oniguruma as Hugging Face tokenizers runs it (Ruby syntax, Unicode): \p{..} / \P{..} with
 *   every general category and its one-letter group, \s = White_Space, \d = Nd, \w = letters, marks,
 *   Nd, Nl, Pc and the joiners; (?i:..) case-insensitive groups (simple case folding); possessive
 *   quantifiers and atomic groups (?>..); $ before a final newline or at the end.
 * RX_LLAMA: what llama.cpp's unicode_regex_split gives a pattern it has no hand-written splitter for:
 *   C++ std::regex (ECMAScript) over a transformed text. When the pattern names any of \p{N} \p{L}
 *   \p{P} \p{M} \p{S} \p{Lu} \p{Ll} \p{Lt} \p{Lm} \p{Lo} ("collapsed"), every code point >= 128 stands
 *   for its one-letter category (all letter categories alike, so \p{Lu} is any letter, ASCII included),
 *   non-ASCII whitespace for U+000B, and \p{X} is that class plus the ASCII members of X; otherwise the
 *   pattern runs on the code points with non-ASCII whitespace as U+000B. \s \d \w \b are ASCII-only.
 *
 * Syntax: alternation, (..) (?:..) (?=..) (?!..) (?>..) (?i:..) (?i), classes [..] [^..] with ranges and
 * escapes, \p{..} \P{..} \s \S \d \D \w \W \b \B . ^ $, quantifiers * + ? {n} {n,} {n,m} with lazy (?)
 * and possessive (+) forms, escapes \t \n \r \f \v \0 \xHH \uHHHH \x{H..}.
 */
#ifndef LB_REGEX_H
#define LB_REGEX_H

#include "../core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum rx_mode { RX_ONIG = 0, RX_LLAMA = 1 } rx_mode;

typedef struct rx rx;

/* Compile a UTF-8 pattern; LB_ERR_FORMAT naming the problem for a bad or unsupported pattern. */
lb_status rx_compile(const char *pat, size_t len, rx_mode mode, rx **out, lb_error *err);
void rx_free(rx *r);

/*
 * Leftmost match in cp[from..n) of the text cp[0..n) (code points; positions before `from` are seen by
 * \b). Returns the match start and sets *end, or returns -1. A match may be empty (*end == start).
 * A match that would need more than 10^4 nested steps (a group repeated thousands of times in one
 * match) or more than 10^6 steps from one start (catastrophic backtracking) counts as no match there,
 * and a search gives up (no match) after 5 * 10^7 steps in all, so the stack stays below about 3 MB
 * and the time bounded.
 */
int64_t rx_search(const rx *r, const uint32_t *cp, size_t n, size_t from, size_t *end);
/* The same; with no_empty_at_from an empty match at `from` itself does not count (std::regex_iterator's
 * retry after an empty match). */
int64_t rx_search_ex(const rx *r, const uint32_t *cp, size_t n, size_t from, bool no_empty_at_from, size_t *end);
rx_mode rx_mode_of(const rx *r);

/* Whether every match of r is a single code point (a class or a literal), so a split on it is
 * simply per character. */
bool rx_is_single_char(const rx *r);

#endif
