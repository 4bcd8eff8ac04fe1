/*
 * unicode.h - the Unicode the tokenizer needs: UTF-8 coding (strict validation and Rust-style lossy
 * repair), the character classes of the pre-tokenizer regexes (\p{L}, \p{N}, \s) and NFC.
 */
#ifndef LB_UNICODE_H
#define LB_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    UNI_LETTER = 1,  /* general category L* */
    UNI_NUMBER = 2,  /* general category N* */
    UNI_SPACE = 4,   /* \s of Oniguruma (= White_Space): 9-D, 20, 85, A0, 1680, 2000-200A, 2028-9, 202F, 205F, 3000 */
    UNI_DECOMP = 8,  /* has a canonical decomposition */
    UNI_CCC = 16,    /* non-zero canonical combining class */
    UNI_WORD = 32,   /* \w of Rust regex (L, M, Nd, Nl, Pc, ZWNJ/ZWJ): word boundaries of added tokens */
};

/* Flags of a code point (0 beyond U+10FFFF). */
unsigned uni_flags(uint32_t cp);
static inline bool uni_is_letter(uint32_t cp) { return uni_flags(cp) & UNI_LETTER; }
static inline bool uni_is_number(uint32_t cp) { return uni_flags(cp) & UNI_NUMBER; }
static inline bool uni_is_space(uint32_t cp) { return uni_flags(cp) & UNI_SPACE; }

/* Unicode version of the tables ("14.0.0"). */
const char *uni_version(void);

/* Decode the character at s[0..n) of text already known to be valid UTF-8; returns its length. */
size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* The code point at byte i of valid UTF-8 text s[0..n); *len gets its byte length. */
static inline uint32_t utf8_cp_at(const uint8_t *s, size_t n, size_t i, size_t *len) {
    uint32_t cp;
    if (s[i] < 0x80) {
        *len = 1;
        return s[i];
    }
    *len = utf8_decode(s + i, n - i, &cp);
    return cp;
}
/* Encode cp (<= U+10FFFF) into out; returns 1..4. */
size_t utf8_encode(uint32_t cp, uint8_t out[4]);
/* Byte offset of the first invalid UTF-8 sequence, or -1 when all of s is valid. */
int64_t utf8_invalid_offset(const uint8_t *s, size_t n);
/* Copy s to out replacing each maximal invalid subpart with U+FFFD, as Rust's String::from_utf8_lossy
 * does. out must hold 3 * n bytes; returns the bytes written. */
size_t utf8_lossy(const uint8_t *s, size_t n, uint8_t *out);
/* true when s is entirely valid UTF-8. */
static inline bool utf8_valid(const uint8_t *s, size_t n) { return utf8_invalid_offset(s, n) < 0; }

/* NFC of valid UTF-8 text into a malloc'd buffer (*out, *out_len); false on allocation failure. */
bool uni_nfc(const uint8_t *s, size_t n, uint8_t **out, size_t *out_len);

#endif
