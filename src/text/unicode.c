/*
 * unicode.c - UTF-8 coding, character classes, general categories, the four normalization forms and
 * lowercasing for the tokenizer.
 *
 * Sources: Unicode Standard ch. 3.9 (UTF-8, Table 3-7 well-formed byte sequences) and 3.11
 * (canonical ordering, the canonical composition algorithm, Hangul syllables), UAX #15 (NFC, NFD,
 * NFKC, NFKD).
 * Lossy decoding follows Rust's String::from_utf8_lossy: one U+FFFD per maximal subpart of an
 * ill-formed sequence (Unicode ch. 3.9, "U+FFFD substitution of maximal subparts").
 * Tables come from tools/gen_unicode.py (unicode_data.h).
 */
#include "unicode.h"
#include "unicode_data.h"

#include <stdlib.h>
#include <string.h>

uni_gc uni_category(uint32_t cp) {
    if (cp >= 0x110000) return UNI_GC_CN;
    return (uni_gc)uni_gc_stage2[uni_gc_stage1[cp >> UNI_BLOCK_SHIFT]][cp & UNI_BLOCK_MASK];
}

unsigned uni_flags(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    return uni_stage2[uni_stage1[cp >> UNI_BLOCK_SHIFT]][cp & UNI_BLOCK_MASK];
}

const char *uni_version(void) { return UNI_DATA_VERSION; }

/* ---- UTF-8 ---- */

/*
 * Length of the well-formed sequence at s (1..4), or 0 when ill-formed; then *bad is the length of the
 * maximal subpart to replace (at least 1).
 */
static size_t utf8_seq(const uint8_t *s, size_t n, size_t *bad) {
    uint8_t b = s[0];
    if (b < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        if (b == 0xE0) lo = 0xA0;      /* no overlongs */
        else if (b == 0xED) hi = 0x9F; /* no surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        if (b == 0xF0) lo = 0x90;
        else if (b == 0xF4) hi = 0x8F; /* <= U+10FFFF */
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t k = 1; k < need; k++) {
        uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (k >= n || s[k] < l || s[k] > h) {
            *bad = k;
            return 0;
        }
    }
    return need;
}

size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b = s[0];
    if (b < 0x80 || n < 2) {
        *cp = b;
        return 1;
    }
    if (b < 0xE0) {
        *cp = ((uint32_t)(b & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (b < 0xF0 || n < 4) {
        if (n < 3) { *cp = b; return 1; }
        *cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
          (s[3] & 0x3F);
    return 4;
}

size_t utf8_encode(uint32_t cp, uint8_t out[4]) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

int64_t utf8_invalid_offset(const uint8_t *s, size_t n) {
    size_t i = 0, bad;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_seq(s + i, n - i, &bad);
        if (!l) return (int64_t)i;
        i += l;
    }
    return -1;
}

size_t utf8_lossy(const uint8_t *s, size_t n, uint8_t *out) {
    size_t i = 0, o = 0, bad = 0;
    while (i < n) {
        size_t l = s[i] < 0x80 ? 1 : utf8_seq(s + i, n - i, &bad);
        if (l) {
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        } else {
            out[o++] = 0xEF, out[o++] = 0xBF, out[o++] = 0xBD;
            i += bad;
        }
    }
    return o;
}

/* ---- NFC ---- */

enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7 };
enum { L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

static unsigned ccc_of(uint32_t cp) {
    if (!(uni_flags(cp) & UNI_CCC)) return 0;
    size_t lo = 0, hi = sizeof uni_ccc / sizeof uni_ccc[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uni_ccc[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < sizeof uni_ccc / sizeof uni_ccc[0] && uni_ccc[lo][0] == cp ? uni_ccc[lo][1] : 0;
}

/* Index of cp in a sorted (code point, offset, length) table, or -1. */
static long map_find(const uint32_t (*map)[3], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (map[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && map[lo][0] == cp ? (long)lo : -1;
}

/* Full decomposition of cp appended at buf[*n] (the caller ensures room for UNI_KDECOMP_MAX);
 * compatibility decompositions too when compat. */
static void decompose(uint32_t cp, uint32_t *buf, size_t *n, bool compat) {
    if (compat && cp >= 0xA0) {
        long k = map_find(uni_kdecomp, sizeof uni_kdecomp / sizeof uni_kdecomp[0], cp);
        if (k >= 0) {
            for (uint32_t j = 0; j < uni_kdecomp[k][2]; j++) buf[(*n)++] = uni_kdecomp_pool[uni_kdecomp[k][1] + j];
            return;
        }
    }
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t si = cp - S_BASE;
        buf[(*n)++] = L_BASE + si / N_COUNT;
        buf[(*n)++] = V_BASE + (si % N_COUNT) / T_COUNT;
        if (si % T_COUNT) buf[(*n)++] = T_BASE + si % T_COUNT;
        return;
    }
    if (uni_flags(cp) & UNI_DECOMP) {
        size_t lo = 0, hi = sizeof uni_decomp / sizeof uni_decomp[0];
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (uni_decomp[mid][0] < cp) lo = mid + 1;
            else hi = mid;
        }
        if (lo < sizeof uni_decomp / sizeof uni_decomp[0] && uni_decomp[lo][0] == cp) {
            for (uint32_t k = 0; k < uni_decomp[lo][2]; k++) buf[(*n)++] = uni_decomp_pool[uni_decomp[lo][1] + k];
            return;
        }
    }
    buf[(*n)++] = cp;
}

/* Primary composite of (a, b), or 0 when there is none. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE && b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    size_t lo = 0, hi = sizeof uni_comp / sizeof uni_comp[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uni_comp[mid][0] < a || (uni_comp[mid][0] == a && uni_comp[mid][1] < b)) lo = mid + 1;
        else hi = mid;
    }
    if (lo < sizeof uni_comp / sizeof uni_comp[0] && uni_comp[lo][0] == a && uni_comp[lo][1] == b)
        return uni_comp[lo][2];
    return 0;
}

/* Stable sort of each run of non-starters by combining class (canonical ordering). */
static void canonical_order(uint32_t *cp, uint8_t *cc, size_t n) {
    for (size_t i = 1; i < n; i++) {
        if (!cc[i]) continue;
        for (size_t j = i; j > 0 && cc[j - 1] > cc[j]; j--) {
            uint32_t t = cp[j]; cp[j] = cp[j - 1]; cp[j - 1] = t;
            uint8_t u = cc[j]; cc[j] = cc[j - 1]; cc[j - 1] = u;
        }
    }
}

/* Canonical composition in place; returns the new length. */
static size_t canonical_compose(uint32_t *cp, uint8_t *cc, size_t n) {
    if (!n) return 0;
    size_t starter = 0, out = 1;
    bool have_starter = cc[0] == 0;
    int last = cc[0] ? 256 : 0; /* a leading non-starter blocks everything after it */
    for (size_t i = 1; i < n; i++) {
        uint32_t c = cp[i];
        int k = cc[i];
        if (have_starter && (last < k || last == 0)) {
            uint32_t comp = compose(cp[starter], c);
            if (comp) {
                cp[starter] = comp;
                continue;
            }
        }
        if (k == 0) {
            starter = out;
            have_starter = true;
        }
        last = k;
        cp[out] = c;
        cc[out] = (uint8_t)k;
        out++;
    }
    return out;
}

bool uni_normalize(uni_form form, const uint8_t *s, size_t n, uint8_t **out, size_t *out_len) {
    bool compat = form == UNI_NFKC || form == UNI_NFKD, compose_ = form == UNI_NFC || form == UNI_NFKC;
    size_t i = 0;
    if (form == UNI_NFC)
        while (i < n && s[i] < 0xCC) i++; /* bytes below 0xCC start code points below U+0300 */
    else
        while (i < n && s[i] < 0x80) i++; /* decomposing forms change Latin-1 letters too */
    if (i == n) { /* fast path: nothing here can change */
        uint8_t *o = malloc(n + 1);
        if (!o) return false;
        memcpy(o, s, n);
        *out = o;
        *out_len = n;
        return true;
    }
    /* a code point takes at least one byte and decomposes into at most UNI_KDECOMP_MAX code points */
    size_t cap = n * (compat ? UNI_KDECOMP_MAX : 4) + 8;
    uint32_t *cp = malloc(cap * sizeof *cp);
    uint8_t *cc = malloc(cap);
    if (!cp || !cc) {
        free(cp), free(cc);
        return false;
    }
    size_t m = 0;
    for (i = 0; i < n;) {
        uint32_t c;
        i += utf8_decode(s + i, n - i, &c);
        size_t before = m;
        decompose(c, cp, &m, compat);
        for (size_t k = before; k < m; k++) cc[k] = (uint8_t)ccc_of(cp[k]);
    }
    canonical_order(cp, cc, m);
    if (compose_) m = canonical_compose(cp, cc, m);
    uint8_t *o = malloc(m * 4 + 1);
    if (!o) {
        free(cp), free(cc);
        return false;
    }
    size_t ol = 0;
    for (size_t k = 0; k < m; k++) ol += utf8_encode(cp[k], o + ol);
    free(cp);
    free(cc);
    *out = o;
    *out_len = ol;
    return true;
}

bool uni_nfc(const uint8_t *s, size_t n, uint8_t **out, size_t *out_len) { return uni_normalize(UNI_NFC, s, n, out, out_len); }

uint32_t uni_lower_cp(uint32_t c) {
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    long k = map_find(uni_lower, sizeof uni_lower / sizeof uni_lower[0], c);
    return k >= 0 && uni_lower[k][2] == 1 ? uni_lower_pool[uni_lower[k][1]] : c;
}

bool uni_lowercase(const uint8_t *s, size_t n, uint8_t **out, size_t *out_len) {
    uint8_t *o = malloc(n * 3 + 1); /* a mapping at most triples the bytes (U+0130: 2 -> 3) */
    if (!o) return false;
    size_t ol = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t l = utf8_decode(s + i, n - i, &c);
        if (c < 0x80) {
            o[ol++] = (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        } else {
            long k = map_find(uni_lower, sizeof uni_lower / sizeof uni_lower[0], c);
            if (k < 0) memcpy(o + ol, s + i, l), ol += l;
            else
                for (uint32_t j = 0; j < uni_lower[k][2]; j++) ol += utf8_encode(uni_lower_pool[uni_lower[k][1] + j], o + ol);
        }
        i += l;
    }
    *out = o;
    *out_len = ol;
    return true;
}
