/*
 * unicode.h - the Unicode the tokenizer needs: UTF-8 coding (strict validation and Rust-style lossy
 * repair), general categories and the character classes of the pre-tokenizer regexes (\p{L}, \p{N},
 * \s), the normalization forms and lowercasing.
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

/* Unicode general categories, in this order (unicode_data.h's tables use these numbers). */
typedef enum uni_gc {
    UNI_GC_LU, UNI_GC_LL, UNI_GC_LT, UNI_GC_LM, UNI_GC_LO, UNI_GC_MN, UNI_GC_MC, UNI_GC_ME, UNI_GC_ND, UNI_GC_NL,
    UNI_GC_NO, UNI_GC_PC, UNI_GC_PD, UNI_GC_PS, UNI_GC_PE, UNI_GC_PI, UNI_GC_PF, UNI_GC_PO, UNI_GC_SM, UNI_GC_SC,
    UNI_GC_SK, UNI_GC_SO, UNI_GC_ZS, UNI_GC_ZL, UNI_GC_ZP, UNI_GC_CC, UNI_GC_CF, UNI_GC_CS, UNI_GC_CO, UNI_GC_CN,
    UNI_GC_COUNT
} uni_gc;
/* Bit masks over uni_gc for the one-letter categories. */
#define UNI_GCM(c) (1u << (c))
#define UNI_GCM_L (UNI_GCM(UNI_GC_LU) | UNI_GCM(UNI_GC_LL) | UNI_GCM(UNI_GC_LT) | UNI_GCM(UNI_GC_LM) | UNI_GCM(UNI_GC_LO))
#define UNI_GCM_M (UNI_GCM(UNI_GC_MN) | UNI_GCM(UNI_GC_MC) | UNI_GCM(UNI_GC_ME))
#define UNI_GCM_N (UNI_GCM(UNI_GC_ND) | UNI_GCM(UNI_GC_NL) | UNI_GCM(UNI_GC_NO))
#define UNI_GCM_P \
    (UNI_GCM(UNI_GC_PC) | UNI_GCM(UNI_GC_PD) | UNI_GCM(UNI_GC_PS) | UNI_GCM(UNI_GC_PE) | UNI_GCM(UNI_GC_PI) | \
     UNI_GCM(UNI_GC_PF) | UNI_GCM(UNI_GC_PO))
#define UNI_GCM_S (UNI_GCM(UNI_GC_SM) | UNI_GCM(UNI_GC_SC) | UNI_GCM(UNI_GC_SK) | UNI_GCM(UNI_GC_SO))
#define UNI_GCM_Z (UNI_GCM(UNI_GC_ZS) | UNI_GCM(UNI_GC_ZL) | UNI_GCM(UNI_GC_ZP))
#define UNI_GCM_C \
    (UNI_GCM(UNI_GC_CC) | UNI_GCM(UNI_GC_CF) | UNI_GCM(UNI_GC_CS) | UNI_GCM(UNI_GC_CO) | UNI_GCM(UNI_GC_CN))

/* General category of a code point (Cn beyond U+10FFFF). */
uni_gc uni_category(uint32_t cp);

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

typedef enum uni_form { UNI_NFC, UNI_NFD, UNI_NFKC, UNI_NFKD } uni_form;

/* A normalization form of valid UTF-8 text into a malloc'd buffer (*out, *out_len); false on
 * allocation failure. uni_nfc is uni_normalize(UNI_NFC, ...). */
bool uni_normalize(uni_form form, const uint8_t *s, size_t n, uint8_t **out, size_t *out_len);
bool uni_nfc(const uint8_t *s, size_t n, uint8_t **out, size_t *out_len);
/* Each code point replaced by its full lowercase mapping (no final-sigma context), as Rust's
 * char::to_lowercase; malloc'd, false on allocation failure. */
bool uni_lowercase(const uint8_t *s, size_t n, uint8_t **out, size_t *out_len);
/* The lowercase of one code point when it is one code point, else cp itself. */
uint32_t uni_lower_cp(uint32_t cp);

#endif
