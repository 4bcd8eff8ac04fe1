/*
 * legacy_enc.c - lowbit's default encoders of q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl and iq4_xs: the same
 * block formats as ggml's (docs/formats.md 2.2, 2.6), with a closer search of the scales. The contract
 * and the error measure are in legacy_enc.h.
 *
 * Per block, with search weights w_j = imatrix[j] (or 1):
 * - "scale x codebook" formats (q4_0, q5_0, iq4_nl; q8_0): x^ = d * c[idx]. For a fixed code vector
 *   the best d is the weighted least-squares d = sum w x c / sum w c^2, which removes
 *   (sum w x c)^2 / sum w c^2 from sum w x^2. An exact sweep over the inverse scale s = 1/d (both signs,
 *   in a window around the range-filling scale) visits every code vector that nearest rounding
 *   produces there, each step moving one element across one rounding boundary, and keeps the best few.
 *   q8_0 instead tries the fp16 scales next to amax/127 directly.
 * - affine formats (q4_1, q5_1): x^ = d * q + m. A grid of inverse scales and rounding phases gives code
 *   vectors; each is fitted by weighted least squares in (d, m) and the best few are refined.
 * - iq4_xs: each sub-block's best continuous scale comes from the sweep; the fp16 super-scale d is
 *   chosen on a proxy (sum over sub-blocks of sum w c^2 * (d*l - scale)^2, exact for fixed codes), the
 *   best few d are evaluated exactly with the 6-bit l of each sub-block among three neighbours, then d
 *   and the l's are refitted by coordinate descent.
 * Refinement: the fitted d (and m) are rounded to their fp16 neighbours, codes are re-chosen by nearest
 * rounding against the decoded fp16 values, the error is evaluated exactly as dequantization gives it,
 * and fit <-> rounding repeats until the codes stop changing. Last, each block is compared with the
 * reference encoder's block (quantize_<t>_ref, written to y first) and the better one is kept.
 */
#include "legacy_enc.h"

#include "../core/core.h"
#include "../quant/blocks.h"
#include "../quant/quant.h"
#include "../quant/ref/ref.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#define QB 32                       /* elements per block (per iq4_xs sub-block) */
#define NSUB (QK_K / QB)            /* sub-blocks per iq4_xs super-block */
#define FP16_MAX 65504.0f           /* largest finite fp16 */
#define AMAX_MIN 1e-30f             /* below this max |x| a block is left to the reference */
#define MAX_LEVELS 32               /* largest sweep codebook (q5_0) */
#define MAX_EVENTS (QB * (MAX_LEVELS - 1))
#define NBUCKET 128                 /* slices of the sweep window for sorting its events */
#define NTOP 3                      /* candidates kept from a sweep / grid and refined */
#define REFINE_ITERS 8              /* fit <-> fp16 rounding rounds at most */
#define PICK_MARGIN 1e-9            /* relative gain needed to replace a reference block */
#define SWEEP_LO 0.6f               /* sweep window: s * amax / max|level| in [SWEEP_LO, SWEEP_HI] */
#define SWEEP_HI 1.5f
#define XS_LMIN (-32)               /* iq4_xs 6-bit sub-block scale range */
#define XS_LMAX 31
#define XS_NTOP 4                   /* iq4_xs super-scales evaluated exactly */
#define XS_PROXY_STEPS 512          /* fp16 super-scales tried on the proxy, per sign */
#define XS_ITERS 4
#define Q8_LMAX 127
#define AFF_LANES 8                 /* independent partial sums of affine_trial */
#define FP16_NEAR 2                 /* fp16 steps tried around a refined scale */

/* Round to nearest (ties to even) by the 1.5*2^23 trick; valid for |f| < 2^22. */
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* min / max without libm's NaN rules (inputs here are finite), so they compile to single instructions */
static inline float maxf(float a, float b) { return a > b ? a : b; }
static inline float minf(float a, float b) { return a < b ? a : b; }
static inline double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---- fp16 scales ---- */

static inline float h2f(uint16_t h) { return lb_fp16_to_f32(h); }

static uint16_t f2h(float f) {
    if (f > FP16_MAX) f = FP16_MAX;
    if (f < -FP16_MAX) f = -FP16_MAX;
    return lb_f32_to_fp16(f);
}

/* The finite fp16 next to h on the side of target (h itself when h decodes to target). */
static uint16_t h_toward(uint16_t h, float target) {
    const float v = h2f(h);
    if (v == target) return h;
    const bool up = target > v;
    if (h & 0x8000) {
        if (up) return h == 0x8000 ? 0x0001 : (uint16_t)(h - 1);
        return h == 0xFBFF ? h : (uint16_t)(h + 1);
    }
    if (up) return h == 0x7BFF ? h : (uint16_t)(h + 1);
    return h == 0 ? 0x8001 : (uint16_t)(h - 1);
}

/* The fp16 n steps above (n > 0) or below (n < 0) h in value, stopping at the finite range. */
static uint16_t h_step(uint16_t h, int n) {
    for (; n > 0; n--) h = h_toward(h, INFINITY);
    for (; n < 0; n++) h = h_toward(h, -INFINITY);
    return h;
}

/* ---- codebooks: sorted levels c[0..K-1], uniform (c[k] = lo + k) or a table ---- */

typedef struct {
    int K;
    int lo;             /* uniform: first level */
    const float *lev;   /* table levels, or NULL for uniform */
    const float *mid;   /* table midpoints (K-1), or NULL */
} codebook;

static const float IQ4_LEV[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static const float IQ4_MID[15] = {-115.5f, -93.5f, -74, -57, -42, -28.5f, -16, -4.5f, 7, 19, 31.5f, 45.5f, 61, 79, 101};

static const codebook CB_Q4 = {16, -8, NULL, NULL};
static const codebook CB_Q5 = {32, -16, NULL, NULL};
static const codebook CB_Q8 = {2 * Q8_LMAX + 1, -Q8_LMAX, NULL, NULL};
static const codebook CB_IQ4 = {16, 0, IQ4_LEV, IQ4_MID};

static inline float cb_level(const codebook *cb, int k) { return cb->lev ? cb->lev[k] : (float)(cb->lo + k); }
static inline float cb_mid(const codebook *cb, int k) { return cb->mid ? cb->mid[k] : (float)(cb->lo + k) + 0.5f; }

/* Index of the level nearest to v (ties: either; the error is the same). NaN gives 0. */
static inline int cb_nearest(const codebook *cb, float v) {
    if (cb->mid) {
        int k = 0;
        for (int i = 0; i < cb->K - 1; i++) k += v >= cb->mid[i];
        return k;
    }
    if (!(v > (float)cb->lo)) return 0;
    if (v >= (float)(cb->lo + cb->K - 1)) return cb->K - 1;
    return nearest_int(v) - cb->lo;
}

/* Weighted error of x ~ d * c[idx] with nearest codes (written to idx), x^ rounded as dequantization does. */
static double sc_error(const float *x, const float *w, const codebook *cb, float d, uint8_t *idx, int n) {
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    double e = 0;
    for (int j = 0; j < n; j++) {
        const int k = cb_nearest(cb, x[j] * id);
        idx[j] = (uint8_t)k;
        const float y = d * cb_level(cb, k);
        const double r = (double)x[j] - (double)y;
        e += (double)w[j] * (r * r);
    }
    return e;
}

/* ---- exact sweep over the inverse scale ---- */

typedef struct {
    double score; /* (sum w x c)^2 / sum w c^2 of the code vector */
    float s;      /* a signed inverse scale inside its interval: codes = nearest(s * x) */
} cand;

static void top_insert(cand *top, int ntop, double score, float s) {
    if (!(score > top[ntop - 1].score)) return;
    int i = ntop - 1;
    for (; i > 0 && top[i - 1].score < score; i--) top[i] = top[i - 1];
    top[i] = (cand){score, s};
}

static void top_clear(cand *top, int ntop, double score) {
    for (int i = 0; i < ntop; i++) top[i] = (cand){score, 0.0f};
}

/* Event key: the crossing point t > 0 (its float bits order like t) above the element index. */
static inline uint64_t ev_key(float t, int j) {
    uint32_t b;
    memcpy(&b, &t, 4);
    return (uint64_t)b << 32 | (uint32_t)j;
}
static inline float ev_t(uint64_t k) {
    const uint32_t b = (uint32_t)(k >> 32);
    float t;
    memcpy(&t, &b, 4);
    return t;
}

/*
 * Sort the n event keys of window [s_lo, s_hi] into out: a counting pass over NBUCKET equal slices of
 * the window, then insertion sort, which only has to fix the order inside each slice.
 */
static void sort_events(const uint64_t *ev, int n, float s_lo, float s_hi, uint64_t *out) {
    int start[NBUCKET + 1] = {0};
    uint8_t bk[MAX_EVENTS];
    const float scale = (float)NBUCKET / (s_hi - s_lo);
    for (int i = 0; i < n; i++) {
        const float p = (ev_t(ev[i]) - s_lo) * scale;
        bk[i] = (uint8_t)(p > 0 ? (p < (float)NBUCKET ? (int)p : NBUCKET - 1) : 0);
        start[bk[i] + 1]++;
    }
    for (int b = 0; b < NBUCKET; b++) start[b + 1] += start[b];
    for (int i = 0; i < n; i++) out[start[bk[i]]++] = ev[i];
    for (int i = 1; i < n; i++) {
        const uint64_t v = out[i];
        int j = i;
        for (; j > 0 && out[j - 1] > v; j--) out[j] = out[j - 1];
        out[j] = v;
    }
}

/* Starting code of xj at s_lo and the events at which it moves away from zero, up to s_hi. */
static int element_events(const codebook *cb, float xj, int j, float s_lo, float s_hi, int *k0, uint64_t *ev) {
    int k = cb_nearest(cb, s_lo * xj), n = 0;
    if (xj > 0) {
        while (k + 1 < cb->K && cb_mid(cb, k) / xj <= s_lo) k++;
        for (int i = k; i + 1 < cb->K; i++) {
            const float t = cb_mid(cb, i) / xj;
            if (t > s_hi) break;
            ev[n++] = ev_key(t, j);
        }
    } else if (xj < 0) {
        while (k > 0 && cb_mid(cb, k - 1) / xj <= s_lo) k--;
        for (int i = k; i > 0; i--) {
            const float t = cb_mid(cb, i - 1) / xj;
            if (t > s_hi) break;
            ev[n++] = ev_key(t, j);
        }
    }
    *k0 = k;
    return n;
}

/*
 * Visit every code vector c = nearest(s * sign * x) for s in [s_lo, s_hi] and keep the NTOP best by
 * the least-squares gain (sum w x c)^2 / sum w c^2 (with x taken as sign * x).
 */
static void sweep(const float *x, const float *w, const codebook *cb, float sign, float s_lo, float s_hi, cand *top) {
    uint64_t raw[MAX_EVENTS], ev[MAX_EVENTS];
    int idx[QB], ne = 0;
    float xs[QB];
    double A = 0, B = 0;
    for (int j = 0; j < QB; j++) {
        xs[j] = sign * x[j];
        int k;
        if (w[j] > 0) ne += element_events(cb, xs[j], j, s_lo, s_hi, &k, raw + ne);
        else k = cb_nearest(cb, s_lo * xs[j]);
        idx[j] = k;
        const double c = cb_level(cb, k);
        A += (double)w[j] * xs[j] * c;
        B += (double)w[j] * c * c;
    }
    sort_events(raw, ne, s_lo, s_hi, ev);
    float t_cur = s_lo;
    for (int i = 0;;) {
        const float t_next = i < ne ? ev_t(ev[i]) : s_hi;
        if (B > 0) top_insert(top, NTOP, A * A / B, sign * (0.5f * (t_cur + t_next)));
        if (i == ne) break;
        t_cur = t_next;
        for (; i < ne && ev_t(ev[i]) == t_cur; i++) {
            const int j = (int)(uint32_t)ev[i];
            const double c0 = cb_level(cb, idx[j]);
            idx[j] += xs[j] > 0 ? 1 : -1;
            const double c1 = cb_level(cb, idx[j]);
            A += (double)w[j] * xs[j] * (c1 - c0);
            B += (double)w[j] * (c1 * c1 - c0 * c0);
        }
    }
}

/* Sweep both signs of the scale in the window around the range-filling inverse scale. */
static bool sweep_block(const float *x, const float *w, const codebook *cb, cand *top) {
    float amax = 0;
    for (int j = 0; j < QB; j++) amax = maxf(amax, fabsf(x[j]));
    top_clear(top, NTOP, -1.0);
    if (!(amax > AMAX_MIN)) return false;
    const float lim = maxf(-cb_level(cb, 0), cb_level(cb, cb->K - 1));
    const float s_ref = lim / amax;
    sweep(x, w, cb, 1.0f, SWEEP_LO * s_ref, SWEEP_HI * s_ref, top);
    sweep(x, w, cb, -1.0f, SWEEP_LO * s_ref, SWEEP_HI * s_ref, top);
    return top[0].score > 0;
}

/* ---- fp16 refinement of x ~ d * c[idx] ---- */

/* From codes idx: least-squares d, its fp16 neighbours, nearest codes, repeat. Returns the best exact error. */
static double refine_scale(const float *x, const float *w, const codebook *cb, const uint8_t *idx0, uint16_t *hd,
                           uint8_t *idx) {
    uint8_t cur[QB], tmp[QB];
    double best = INFINITY;
    memcpy(cur, idx0, QB);
    for (int it = 0; it < REFINE_ITERS; it++) {
        double sxc = 0, scc = 0;
        for (int j = 0; j < QB; j++) {
            const double c = cb_level(cb, cur[j]);
            sxc += (double)w[j] * x[j] * c;
            scc += (double)w[j] * c * c;
        }
        if (!(scc > 0)) break;
        const float d = (float)(sxc / scc);
        const uint16_t h0 = f2h(d), hc[2] = {h0, h_toward(h0, d)};
        bool improved = false;
        for (int c = 0; c < 2; c++) {
            if (c == 1 && hc[1] == hc[0]) break;
            const double e = sc_error(x, w, cb, h2f(hc[c]), tmp, QB);
            if (e < best) {
                best = e;
                *hd = hc[c];
                memcpy(idx, tmp, QB);
                improved = true;
            }
        }
        if (!improved || memcmp(idx, cur, QB) == 0) break;
        memcpy(cur, idx, QB);
    }
    return best;
}

/* Codes nearest(s * x) of a sweep candidate. */
static void codes_at(const float *x, const codebook *cb, float s, uint8_t *idx) {
    for (int j = 0; j < QB; j++) idx[j] = (uint8_t)cb_nearest(cb, s * x[j]);
}

/* Try the fp16 scales within FP16_NEAR steps of *hd (nearest codes); keep the best. */
static double scale_neighbours(const float *x, const float *w, const codebook *cb, double best, uint16_t *hd,
                               uint8_t *idx) {
    const uint16_t h0 = *hd;
    uint8_t tmp[QB];
    for (int k = -FP16_NEAR; k <= FP16_NEAR; k++) {
        const uint16_t h = h_step(h0, k);
        if (k == 0 || h == h0) continue;
        const double e = sc_error(x, w, cb, h2f(h), tmp, QB);
        if (e < best) {
            best = e;
            *hd = h;
            memcpy(idx, tmp, QB);
        }
    }
    return best;
}

/* Best fp16 d and codes of one block of a scale x codebook format; INFINITY when there is no candidate. */
static double search_scale_block(const float *x, const float *w, const codebook *cb, uint16_t *hd, uint8_t *idx) {
    cand top[NTOP];
    double best = INFINITY;
    if (!sweep_block(x, w, cb, top)) return best;
    for (int c = 0; c < NTOP && top[c].score > 0; c++) {
        uint8_t init[QB], out[QB];
        uint16_t h = 0;
        codes_at(x, cb, top[c].s, init);
        const double e = refine_scale(x, w, cb, init, &h, out);
        if (e < best) {
            best = e;
            *hd = h;
            memcpy(idx, out, QB);
        }
    }
    return best < INFINITY ? scale_neighbours(x, w, cb, best, hd, idx) : best;
}

/* q8_0: the fp16 scales next to amax/127 tried directly, then refined from the best. */
static double search_q8_block(const float *x, const float *w, uint16_t *hd, uint8_t *idx) {
    float amax = 0;
    for (int j = 0; j < QB; j++) amax = maxf(amax, fabsf(x[j]));
    if (!(amax > AMAX_MIN)) return INFINITY;
    const int h0 = f2h(amax / (float)Q8_LMAX);
    uint8_t tmp[QB];
    double best = INFINITY;
    for (int h = h0 - 8; h <= h0 + 2; h++) {
        if (h < 1 || h > 0x7BFF) continue;
        const double e = sc_error(x, w, &CB_Q8, h2f((uint16_t)h), tmp, QB);
        if (e < best) {
            best = e;
            *hd = (uint16_t)h;
            memcpy(idx, tmp, QB);
        }
    }
    uint16_t h2 = 0;
    uint8_t out[QB];
    const double e = refine_scale(x, w, &CB_Q8, idx, &h2, out);
    if (e < best) {
        best = e;
        *hd = h2;
        memcpy(idx, out, QB);
    }
    return best;
}

/* ---- affine formats: x ~ d * q + m, q in [0, nmax] ---- */

typedef struct {
    double sw, sl, sll, sx, sxl;
} aff_sums;

static aff_sums affine_sums(const float *x, const float *w, const uint8_t *L) {
    aff_sums s = {0, 0, 0, 0, 0};
    for (int j = 0; j < QB; j++) {
        const double wj = w[j], l = L[j];
        s.sw += wj;
        s.sl += wj * l;
        s.sll += wj * l * l;
        s.sx += wj * x[j];
        s.sxl += wj * x[j] * l;
    }
    return s;
}

/* Weighted least-squares (d, m) for fixed codes (d >= 0; m alone when the codes do not vary). */
static void affine_fit(const aff_sums *s, double *d, double *m) {
    const double D = s->sw * s->sll - s->sl * s->sl;
    *d = D > 0 ? (s->sw * s->sxl - s->sx * s->sl) / D : 0;
    if (*d < 0) *d = 0;
    *m = s->sw > 0 ? (s->sx - *d * s->sl) / s->sw : 0;
}

/* Exact error of x ~ (float)q * d + m with nearest codes (written to L). */
static double aff_error(const float *x, const float *w, int nmax, float d, float m, uint8_t *L) {
    const float id = d > 0 ? 1.0f / d : 0.0f;
    double e = 0;
    for (int j = 0; j < QB; j++) {
        const float v = (x[j] - m) * id;
        const int l = !(v > 0) ? 0 : v >= (float)nmax ? nmax : nearest_int(v);
        L[j] = (uint8_t)l;
        const float y = (float)l * d + m;
        const double r = (double)x[j] - (double)y;
        e += (double)w[j] * (r * r);
    }
    return e;
}

typedef struct {
    double err;
    uint16_t hd, hm;
    uint8_t L[QB];
} aff_best;

/* Try the fp16 neighbours of d and, for each, of the best m; keep the best into b. */
static bool affine_round(const float *x, const float *w, int nmax, const aff_sums *s, double d, aff_best *b) {
    const float df = (float)clampd(d, 0, FP16_MAX);
    const uint16_t h0 = f2h(df), hd[2] = {h0, h_toward(h0, df)};
    uint8_t tmp[QB];
    bool improved = false;
    for (int a = 0; a < 2; a++) {
        if (a == 1 && hd[1] == hd[0]) break;
        const float dv = h2f(hd[a]);
        const float m = (float)clampd((s->sx - dv * s->sl) / s->sw, -FP16_MAX, FP16_MAX);
        const uint16_t m0 = f2h(m), hm[2] = {m0, h_toward(m0, m)};
        for (int c = 0; c < 2; c++) {
            if (c == 1 && hm[1] == hm[0]) break;
            const double e = aff_error(x, w, nmax, dv, h2f(hm[c]), tmp);
            if (e < b->err) {
                *b = (aff_best){e, hd[a], hm[c], {0}};
                memcpy(b->L, tmp, QB);
                improved = true;
            }
        }
    }
    return improved;
}

/* Fit (d, m) to the codes, round to fp16, re-pick codes; repeat while it improves. */
static void refine_affine(const float *x, const float *w, int nmax, const uint8_t *L0, aff_best *b) {
    uint8_t cur[QB];
    memcpy(cur, L0, QB);
    for (int it = 0; it < REFINE_ITERS; it++) {
        const aff_sums s = affine_sums(x, w, cur);
        if (!(s.sw > 0)) return;
        double d, m;
        affine_fit(&s, &d, &m);
        if (!affine_round(x, w, nmax, &s, d, b) || memcmp(b->L, cur, QB) == 0) return;
        memcpy(cur, b->L, QB);
    }
}

/* Codes round((x - mn) * s + phase) clamped to [0, nmax] (v >= 0: truncating v + 0.5 rounds it). */
static void affine_codes(const float *x, int nmax, float mn, float s, float phase, uint8_t *L) {
    for (int j = 0; j < QB; j++) L[j] = (uint8_t)(int)(minf(maxf((x[j] - mn) * s + phase, 0.0f), (float)nmax) + 0.5f);
}

/*
 * Least-squares gain (sum w x^2 minus the fitted error) of affine_codes(), from xc = x minus its
 * weighted mean (so the fitted m drops out: gain = sw * sxl^2 / (sw * sll - sl^2)). Float sums in
 * AFF_LANES independent lanes (vectorizable): it only ranks the trials, which are then refined exactly.
 */
static float affine_trial(const float *x, const float *xc, const float *w, float sw, int nmax, float mn, float s,
                          float phase) {
    float sl[AFF_LANES] = {0}, sll[AFF_LANES] = {0}, sxl[AFF_LANES] = {0};
    for (int j0 = 0; j0 < QB; j0 += AFF_LANES)
        for (int k = 0; k < AFF_LANES; k++) {
            const int j = j0 + k;
            const float l = (float)(int)(minf(maxf((x[j] - mn) * s + phase, 0.0f), (float)nmax) + 0.5f);
            sl[k] += w[j] * l;
            sll[k] += w[j] * l * l;
            sxl[k] += w[j] * xc[j] * l;
        }
    for (int k = 1; k < AFF_LANES; k++) {
        sl[0] += sl[k];
        sll[0] += sll[k];
        sxl[0] += sxl[k];
    }
    const float D = sw * sll[0] - sl[0] * sl[0];
    return D > 0 && sxl[0] > 0 ? sw * sxl[0] * sxl[0] / D : 0.0f;
}

static const float AFF_DELTA[] = {-1.5f, -1.25f, -1.0f, -0.75f, -0.5f, -0.25f, 0.0f, 0.25f, 0.5f, 0.75f, 1.0f};
static const float AFF_PHASE[] = {-0.3f, -0.15f, 0.0f, 0.15f, 0.3f};
#define N_DELTA ((int)(sizeof AFF_DELTA / sizeof AFF_DELTA[0]))
#define N_PHASE ((int)(sizeof AFF_PHASE / sizeof AFF_PHASE[0]))

/* Best fp16 (d, m) and codes of one affine block; b->err = INFINITY when there is no candidate. */
static void search_affine_block(const float *x, const float *w, int nmax, aff_best *b) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < QB; j++) {
        mn = minf(mn, x[j]);
        mx = maxf(mx, x[j]);
    }
    uint8_t L[QB];
    b->err = INFINITY;
    const float range = mx - mn;
    if (!(range > AMAX_MIN) || !isfinite(range)) {
        memset(L, 0, QB);
        if (isfinite(range)) refine_affine(x, w, nmax, L, b);
        return;
    }
    float xc[QB], sw = 0, swx = 0;
    for (int j = 0; j < QB; j++) {
        sw += w[j];
        swx += w[j] * x[j];
    }
    if (!(sw > 0)) return;
    for (int j = 0; j < QB; j++) xc[j] = x[j] - swx / sw;
    cand top[NTOP];
    top_clear(top, NTOP, -1.0);
    for (int a = 0; a < N_DELTA; a++)
        for (int p = 0; p < N_PHASE; p++) {
            const float s = ((float)nmax + AFF_DELTA[a]) / range;
            top_insert(top, NTOP, affine_trial(x, xc, w, sw, nmax, mn, s, AFF_PHASE[p]), (float)(a * N_PHASE + p));
        }
    for (int c = 0; c < NTOP && top[c].score > -1; c++) {
        const int a = (int)top[c].s / N_PHASE, p = (int)top[c].s % N_PHASE;
        affine_codes(x, nmax, mn, ((float)nmax + AFF_DELTA[a]) / range, AFF_PHASE[p], L);
        refine_affine(x, w, nmax, L, b);
    }
}

/* ---- iq4_xs: fp16 d, 6-bit sub-block scales l, codes per sub-block; x^ = (d * l) * c[idx] ---- */

typedef struct {
    double err;
    uint16_t hd;
    int l[NSUB];
    uint8_t idx[QK_K];
} xs_best;

/* Best continuous scale of each sub-block (least squares on the sweep's best codes) and sum w c^2 there. */
static float xs_subscales(const float *x, const float *w, float sigma[NSUB], double bw[NSUB]) {
    float smax = 0;
    for (int ib = 0; ib < NSUB; ib++) {
        cand top[NTOP];
        sigma[ib] = 0;
        bw[ib] = 0;
        if (!sweep_block(x + ib * QB, w + ib * QB, &CB_IQ4, top)) continue;
        uint8_t idx[QB];
        codes_at(x + ib * QB, &CB_IQ4, top[0].s, idx);
        double sxc = 0, scc = 0;
        for (int j = 0; j < QB; j++) {
            const double c = IQ4_LEV[idx[j]];
            sxc += (double)w[ib * QB + j] * x[ib * QB + j] * c;
            scc += (double)w[ib * QB + j] * c * c;
        }
        sigma[ib] = (float)(sxc / scc);
        bw[ib] = scc;
        if (fabsf(sigma[ib]) > fabsf(smax)) smax = sigma[ib];
    }
    return smax;
}

static inline int xs_clamp(int l) { return l < XS_LMIN ? XS_LMIN : l > XS_LMAX ? XS_LMAX : l; }

static int xs_round(float v) {
    if (!(v > (float)XS_LMIN)) return XS_LMIN;
    if (v >= (float)XS_LMAX) return XS_LMAX;
    return nearest_int(v);
}

/* Proxy error of super-scale dv: sum bw * (fl(dv * l) - sigma)^2 with l = round(sigma / dv). */
static double xs_proxy(float dv, const float *sigma, const double *bw) {
    double e = 0;
    for (int ib = 0; ib < NSUB; ib++) {
        const double r = (double)(dv * (float)xs_round(sigma[ib] / dv)) - sigma[ib];
        e += bw[ib] * r * r;
    }
    return e;
}

/* The XS_NTOP fp16 super-scales of lowest proxy error, the largest sub-scale at |l| in [24, 32]. */
static int xs_candidates(float smax, const float *sigma, const double *bw, uint16_t *hd) {
    cand top[XS_NTOP];
    top_clear(top, XS_NTOP, -INFINITY);
    const float a = fabsf(smax);
    for (int sg = 0; sg < 2; sg++) {
        /* sg 0: d of the sign that puts smax at l < 0 (down to -32), sg 1: at l > 0 (up to 31) */
        const int lo = f2h(a / (sg == 0 ? 32.49f : 31.49f)), hi = f2h(a / 24.0f);
        const int step = (hi - lo) / XS_PROXY_STEPS + 1;
        const uint16_t sbit = (uint16_t)(((smax < 0) == (sg == 1)) ? 0x8000 : 0);
        for (int h = lo; h <= hi; h += step) {
            const uint16_t hh = (uint16_t)(h | sbit);
            const float dv = h2f(hh);
            if (dv == 0) continue;
            top_insert(top, XS_NTOP, -xs_proxy(dv, sigma, bw), (float)hh);
        }
    }
    int n = 0;
    for (int i = 0; i < XS_NTOP && top[i].score > -INFINITY; i++) hd[n++] = (uint16_t)top[i].s;
    return n;
}

/* Exact error at super-scale hd, each sub-block taking the best l in center[ib] +- 1 (nearest codes). */
static double xs_eval(const float *x, const float *w, uint16_t hd, const int *center, xs_best *out) {
    const float dv = h2f(hd);
    uint8_t tmp[QB];
    double total = 0;
    for (int ib = 0; ib < NSUB; ib++) {
        double be = INFINITY;
        for (int l = xs_clamp(center[ib] - 1); l <= xs_clamp(center[ib] + 1); l++) {
            const double e = sc_error(x + ib * QB, w + ib * QB, &CB_IQ4, dv * (float)l, tmp, QB);
            if (e < be) {
                be = e;
                out->l[ib] = l;
                memcpy(out->idx + ib * QB, tmp, QB);
            }
        }
        total += be;
    }
    out->err = total;
    out->hd = hd;
    return total;
}

/* Least-squares super-scale for fixed l and codes. */
static float xs_fit(const float *x, const float *w, const xs_best *b) {
    double num = 0, den = 0;
    for (int ib = 0; ib < NSUB; ib++)
        for (int j = 0; j < QB; j++) {
            const double u = (double)b->l[ib] * IQ4_LEV[b->idx[ib * QB + j]];
            num += (double)w[ib * QB + j] * x[ib * QB + j] * u;
            den += (double)w[ib * QB + j] * u * u;
        }
    return den > 0 ? (float)(num / den) : 0.0f;
}

/* Coordinate descent: refit d to the codes, round to fp16, re-pick l and codes around the current l. */
static void xs_refine(const float *x, const float *w, xs_best *b) {
    xs_best t;
    for (int it = 0; it < XS_ITERS; it++) {
        const float d = xs_fit(x, w, b);
        if (d == 0) return;
        const uint16_t h0 = f2h(d), hc[2] = {h0, h_toward(h0, d)};
        bool improved = false;
        int center[NSUB];
        memcpy(center, b->l, sizeof center);
        for (int c = 0; c < 2; c++) {
            if (c == 1 && hc[1] == hc[0]) break;
            if (xs_eval(x, w, hc[c], center, &t) < b->err) {
                *b = t;
                improved = true;
            }
        }
        if (!improved) return;
    }
}

static void search_xs_superblock(const float *x, const float *w, xs_best *b) {
    float sigma[NSUB];
    double bw[NSUB];
    uint16_t hd[XS_NTOP];
    b->err = INFINITY;
    const float smax = xs_subscales(x, w, sigma, bw);
    if (smax == 0) return;
    const int n = xs_candidates(smax, sigma, bw, hd);
    xs_best t;
    for (int c = 0; c < n; c++) {
        const float dv = h2f(hd[c]);
        int center[NSUB];
        for (int ib = 0; ib < NSUB; ib++) center[ib] = xs_round(sigma[ib] / dv);
        if (xs_eval(x, w, hd[c], center, &t) < b->err) *b = t;
    }
    if (b->err < INFINITY) xs_refine(x, w, b);
}

/* ---- block packing (layouts of blocks.h; docs/formats.md 2.2) ---- */

static void pack_nibbles(uint8_t qs[QB / 2], const uint8_t *L) {
    for (int j = 0; j < QB / 2; j++) qs[j] = (uint8_t)((L[j] & 0xF) | (L[j + QB / 2] & 0xF) << 4);
}

static void pack_qh(uint8_t qh[4], const uint8_t *L) {
    uint32_t h = 0;
    for (int j = 0; j < QB; j++) h |= (uint32_t)((L[j] >> 4) & 1) << j;
    memcpy(qh, &h, 4);
}

static bool enc_q4_0(const float *x, const float *w, void *out) {
    block_q4_0 *b = out;
    uint8_t L[QB];
    if (!(search_scale_block(x, w, &CB_Q4, &b->d, L) < INFINITY)) return false;
    pack_nibbles(b->qs, L);
    return true;
}

static bool enc_q5_0(const float *x, const float *w, void *out) {
    block_q5_0 *b = out;
    uint8_t L[QB];
    if (!(search_scale_block(x, w, &CB_Q5, &b->d, L) < INFINITY)) return false;
    pack_nibbles(b->qs, L);
    pack_qh(b->qh, L);
    return true;
}

static bool enc_iq4_nl(const float *x, const float *w, void *out) {
    block_iq4_nl *b = out;
    uint8_t L[QB];
    if (!(search_scale_block(x, w, &CB_IQ4, &b->d, L) < INFINITY)) return false;
    pack_nibbles(b->qs, L);
    return true;
}

static bool enc_q8_0(const float *x, const float *w, void *out) {
    block_q8_0 *b = out;
    uint8_t L[QB];
    if (!(search_q8_block(x, w, &b->d, L) < INFINITY)) return false;
    for (int j = 0; j < QB; j++) b->qs[j] = (int8_t)((int)L[j] - Q8_LMAX);
    return true;
}

static bool enc_q4_1(const float *x, const float *w, void *out) {
    block_q4_1 *b = out;
    aff_best a;
    search_affine_block(x, w, 15, &a);
    if (!(a.err < INFINITY)) return false;
    b->d = a.hd;
    b->m = a.hm;
    pack_nibbles(b->qs, a.L);
    return true;
}

static bool enc_q5_1(const float *x, const float *w, void *out) {
    block_q5_1 *b = out;
    aff_best a;
    search_affine_block(x, w, 31, &a);
    if (!(a.err < INFINITY)) return false;
    b->d = a.hd;
    b->m = a.hm;
    pack_nibbles(b->qs, a.L);
    pack_qh(b->qh, a.L);
    return true;
}

static bool enc_iq4_xs(const float *x, const float *w, void *out) {
    block_iq4_xs *b = out;
    xs_best s;
    search_xs_superblock(x, w, &s);
    if (!(s.err < INFINITY)) return false;
    b->d = s.hd;
    b->scales_h = 0;
    memset(b->scales_l, 0, sizeof b->scales_l);
    for (int ib = 0; ib < NSUB; ib++) {
        const int ls = s.l[ib] - XS_LMIN;
        b->scales_l[ib / 2] |= (uint8_t)((ls & 0xF) << (4 * (ib % 2)));
        b->scales_h |= (uint16_t)((ls >> 4) << (2 * ib));
        pack_nibbles(b->qs + ib * (QB / 2), s.idx + ib * QB);
    }
    return true;
}

/* ---- driver: reference row first, then block by block the better of the two ---- */

typedef struct {
    int elems;          /* elements per block */
    size_t bytes;       /* bytes per block */
    lb_quantize_fn ref; /* quantize_<t>_ref */
    void (*dequant)(const void *, float *, int64_t);
    bool (*encode)(const float *x, const float *w, void *out); /* false: no candidate */
} enc_kind;

#define MAX_ELEMS QK_K
#define MAX_BYTES sizeof(block_iq4_xs)

/* E_b of legacy_enc.h: sum w_j ((double)x_j - (double)x^_j)^2 in element order (w NULL: 1). */
static double block_error(const float *x, const float *xh, const float *w, int n) {
    double e = 0;
    for (int j = 0; j < n; j++) {
        const double r = (double)x[j] - (double)xh[j];
        e += (w ? (double)w[j] : 1.0) * (r * r);
    }
    return e;
}

static bool all_finite(const float *x, int n) {
    for (int j = 0; j < n; j++)
        if (!isfinite(x[j])) return false;
    return true;
}

/* Search weights: the imatrix where it is a finite non-negative number, else 0; 1 without one. */
static void search_weights(const float *qw, float *w, int n) {
    for (int j = 0; j < n; j++) w[j] = !qw ? 1.0f : (isfinite(qw[j]) && qw[j] > 0) ? qw[j] : 0.0f;
}

/* Replace the reference block y by the encoder's candidate when that is strictly better. */
static void improve_block(const enc_kind *k, const float *x, const float *qw, uint8_t *y) {
    float w[MAX_ELEMS], xr[MAX_ELEMS], xc[MAX_ELEMS];
    uint8_t cand_b[MAX_BYTES];
    if (!all_finite(x, k->elems)) return;
    search_weights(qw, w, k->elems);
    memset(cand_b, 0, sizeof cand_b);
    if (!k->encode(x, w, cand_b)) return;
    k->dequant(y, xr, k->elems);
    k->dequant(cand_b, xc, k->elems);
    double er = block_error(x, xr, qw, k->elems);
    const double ec = block_error(x, xc, qw, k->elems);
    if (isnan(er)) er = INFINITY;
    if (isfinite(ec) && ec < er * (1.0 - PICK_MARGIN)) memcpy(y, cand_b, k->bytes);
}

static void quantize_rows(const enc_kind *k, const float *x, void *vy, int64_t nrows, int64_t n_per_row,
                          const float *imatrix) {
    uint8_t *y = vy;
    const int64_t nb = n_per_row / k->elems;
    const size_t row_bytes = (size_t)nb * k->bytes;
    for (int64_t r = 0; r < nrows; r++) {
        const float *xr = x + r * n_per_row;
        uint8_t *yr = y + (size_t)r * row_bytes;
        k->ref(xr, yr, 1, n_per_row, imatrix);
        for (int64_t b = 0; b < nb; b++)
            improve_block(k, xr + b * k->elems, imatrix ? imatrix + b * k->elems : NULL, yr + (size_t)b * k->bytes);
    }
}

#define DEFINE_BEST(t, E, block, enc)                                                                          \
    void quantize_##t##_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) { \
        static const enc_kind kind = {E, sizeof(block), quantize_##t##_ref, dequantize_row_##t##_ref, enc};    \
        quantize_rows(&kind, x, y, nrows, n_per_row, imatrix);                                                 \
    }

DEFINE_BEST(q4_0, QB, block_q4_0, enc_q4_0)
DEFINE_BEST(q4_1, QB, block_q4_1, enc_q4_1)
DEFINE_BEST(q5_0, QB, block_q5_0, enc_q5_0)
DEFINE_BEST(q5_1, QB, block_q5_1, enc_q5_1)
DEFINE_BEST(q8_0, QB, block_q8_0, enc_q8_0)
DEFINE_BEST(iq4_nl, QB, block_iq4_nl, enc_iq4_nl)
DEFINE_BEST(iq4_xs, QK_K, block_iq4_xs, enc_iq4_xs)
