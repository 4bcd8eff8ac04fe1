/*
 * kquant.c - lowbit's default k-quant encoders (q2_K, q3_K, q4_K, q5_K, q6_K): ggml's encoding, then
 * improved by coordinate descent on the true weighted squared error.
 *
 * Every k-quant super-block decodes as  y_e = fl(fl(D·sc_j)·q_e) − fl(M·m_j)  with fp16 D and M, small
 * integer scales sc_j and mins m_j per sub-block j and integer codes q_e (M = m_j = 0 for the
 * symmetric q3_K and q6_K; layouts in docs/formats.md 2.3). Starting from ggml's encoding
 * (quantize_<t>_ref), the encoder alternates two steps until the error stops falling:
 *   1. sub-blocks, with D and M fixed: try integer scales sc_j in windows around the current value,
 *      the least-squares value of the current codes and (symmetric types) its mirror (q2_K: all 16);
 *      for each take the optimal codes q = clamp(round((x + b)/a)); for the affine types each trial
 *      scale gets the least-squares integer min of the current codes, and the two best trials then
 *      alternate min and codes while that lowers the error;
 *   2. super-block, with every integer fixed: re-fit D (and M) by weighted least squares in closed form,
 *      take the best of the fp16 neighbours of the solution and the current value, re-derive the codes.
 * Neither step can raise the error. Finally each super-block keeps whichever of this result and ggml's
 * bytes decodes (through the reference dequantizer) to the smaller error, so it is never worse.
 *
 * Error metric: E = Σ_e w_e (x_e − y_e)², with w_e = imatrix[e] when an importance matrix is given
 * (E[a_e²] of the input column, so E estimates the output error of the matmul) and w_e = 1 otherwise.
 */
#include "kquant.h"

#include "../core/core.h"
#include "../quant/blocks.h"
#include "../quant/ref/ref.h"

#include <math.h>
#include <string.h>

#define MAX_SUB 16      /* sub-blocks per super-block, at most */
#define MAX_SUB_LEN 32  /* elements per sub-block, at most */
#define MAX_ITERS 3     /* rounds of (sub-block search, global re-fit); more gain little */
#define MIN_GAIN 1e-3   /* stop when a round lowers the error by less than this fraction */

typedef enum { KQ_Q2_K, KQ_Q3_K, KQ_Q4_K, KQ_Q5_K, KQ_Q6_K } kq_fmt;

/* a super-block as integers: what every k-quant format stores, unpacked */
typedef struct kq_state {
    uint16_t d, dmin;                 /* fp16 D and M */
    int sc[MAX_SUB], m[MAX_SUB];      /* sub-block scales and mins (mins 0 for symmetric types) */
    int8_t q[QK_K];                   /* codes */
} kq_state;

typedef struct kq_spec {
    int nsub, sub;         /* sub-blocks per super-block, elements per sub-block */
    int qmin, qmax;        /* code range */
    int scmin, scmax;      /* integer scale range */
    int mmax;              /* integer min range; 0 for the symmetric types */
    int radius;            /* half-width of the scale windows; 0 searches the whole range */
    size_t block_bytes;
    kq_fmt fmt;            /* which layout: unpack / pack / the reference coder through kq_* below */
} kq_spec;

/* the layouts' functions, defined with the layouts further down */
LB_HD static void kq_unpack(const kq_spec *sp, const void *blk, kq_state *st);
LB_HD static void kq_pack(const kq_spec *sp, const kq_state *st, void *blk);
LB_HD static void kq_to_float(const kq_spec *sp, const void *blk, float *y);
LB_HD static void kq_quantize_ref(const kq_spec *sp, const float *x, void *blk, const float *imatrix);

LB_HD static inline float h2f(uint16_t h) { return lb_fp16_to_f32(h); }

/*
 * round(v) clamped to [lo, hi], well defined for every input (NaN gives an end of the range): adding 1.5·2^23 rounds to
 * an integer (half to even) held in the low mantissa bits, exactly when |v| < 2^22; outside that range
 * the exponent (or the sign) of the sum says which end to clamp to. Integer selects only, no branches.
 */
LB_HD static inline int round_clamp(float v, int lo, int hi) {
    const float t = v + 12582912.f;
    uint32_t u;
    memcpy(&u, &t, sizeof u);
    const uint32_t ex = u >> 23;
    int i = (int)(u & 0x007fffff) - 0x00400000;
    i = ex == 0x96 ? i : ex < 0x96 || ex > 0xFF ? lo : hi; /* 0x96: the biased exponent of 2^23 */
    i = i < lo ? lo : i;
    return i > hi ? hi : i;
}

/* ---------------------------------------------------------------- one sub-block */

/* Σ e[i] over n (a multiple of 8) in 8 fixed lanes, so that the compiler can vectorize it */
LB_HD static inline float sum8(const float *e, int n) {
    float acc[8] = {0};
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += e[i + k];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/*
 * Optimal codes for y = a·q − b (as floats), their error Σ w (x − y)² computed with the
 * decoder's float operations, and *lsnum = Σ w (y − x) (the least-squares b is b + lsnum/Σw).
 */
LB_HD static float sub_fit(const kq_spec *sp, const float *restrict x, const float *restrict w, float a, float b,
                     float *restrict q, float *lsnum) {
    const float ia = (a != 0 && isfinite(a)) ? 1.0f / a : 0.0f;
    float e[MAX_SUB_LEN], nm[MAX_SUB_LEN];
    for (int i = 0; i < sp->sub; i++) {
        const float qq = (float)round_clamp((x[i] + b) * ia, sp->qmin, sp->qmax);
        const float d = x[i] - (a * qq - b);
        q[i] = qq;
        e[i] = w[i] * d * d;
        nm[i] = w[i] * d;
    }
    *lsnum = -sum8(nm, sp->sub);
    return sum8(e, sp->sub);
}

/* affine sub-block at scale a: codes for min m0, then the least-squares min while it lowers the error */
LB_HD static float sub_try_affine(const kq_spec *sp, const float *x, const float *w, float inv_swM, float a, float M,
                            int m0, int *m_out, float *q) {
    float qt[MAX_SUB_LEN], num, numt;
    int m = m0;
    float err = sub_fit(sp, x, w, a, M * m, q, &num);
    for (int t = 0; t < 4 && inv_swM != 0; t++) {
        const int mt = round_clamp(num * inv_swM + (float)m, 0, sp->mmax); /* b* = b + Σw(y−x)/Σw */
        if (mt == m) break;
        const float et = sub_fit(sp, x, w, a, M * mt, qt, &numt);
        if (!(et < err)) break;
        m = mt;
        err = et;
        num = numt;
        memcpy(q, qt, (size_t)sp->sub * sizeof *q);
    }
    *m_out = m;
    return err;
}

/* least-squares scale of the current codes, in units of D (x ≈ s·q + c, affine; x ≈ s·q, symmetric) */
LB_HD static float sub_ls_center(const kq_spec *sp, const float *x, const float *w, const float *q, float D) {
    double Sw = 0, Sq = 0, Sqq = 0, Sx = 0, Sxq = 0;
    for (int i = 0; i < sp->sub; ++i) {
        Sw += w[i];
        Sq += (double)w[i] * q[i];
        Sqq += (double)w[i] * q[i] * q[i];
        Sx += (double)w[i] * x[i];
        Sxq += (double)w[i] * x[i] * q[i];
    }
    double s = 0;
    if (sp->mmax) {
        double det = Sw * Sqq - Sq * Sq;
        if (det > 0) s = (Sw * Sxq - Sx * Sq) / det;
    } else if (Sqq > 0) {
        s = Sxq / Sqq;
    }
    return D != 0 ? (float)(s / D) : 0.f;
}

/* the scales to try: windows around the current value, the least-squares value and (symmetric) its mirror */
LB_HD static int sub_candidates(const kq_spec *sp, int cur, float center, int *list) {
    int n = 0;
    const int R = sp->radius;
    if (!R) {
        for (int s = sp->scmin; s <= sp->scmax; s++) list[n++] = s;
        return n;
    }
    uint8_t seen[256] = {0};
    int c = round_clamp(center, sp->scmin, sp->scmax);
    int centers[3] = {cur, c, sp->mmax ? c : round_clamp(-center, sp->scmin, sp->scmax)};
    for (int k = 0; k < 3; k++)
        for (int s = centers[k] - R; s <= centers[k] + R; s++)
            if (s >= sp->scmin && s <= sp->scmax && !seen[s - sp->scmin]) {
                seen[s - sp->scmin] = 1;
                list[n++] = s;
            }
    return n;
}

/* Σw, Σw·q and Σw·x of a sub-block (for the least-squares min of a trial scale) */
LB_HD static void sub_sums(const kq_spec *sp, const float *x, const float *w, const float *q, float *sw, float *swq, float *swx) {
    float e0[MAX_SUB_LEN], e1[MAX_SUB_LEN];
    for (int i = 0; i < sp->sub; ++i) {
        e0[i] = w[i] * q[i];
        e1[i] = w[i] * x[i];
    }
    *sw = sum8(w, sp->sub);
    *swq = sum8(e0, sp->sub);
    *swx = sum8(e1, sp->sub);
}

/*
 * Best (sc, m, codes) of one sub-block for fixed D and M; never worse than the current. Affine types
 * screen every trial scale once, with the min that is least-squares for the current codes, and refine
 * the two best by alternating min and codes.
 */
LB_HD static void sub_search(const kq_spec *sp, const float *x, const float *w, float D, float M, int *sc, int *m, int8_t *q) {
    float qbest[MAX_SUB_LEN], qt[MAX_SUB_LEN], num, sw, swq, swx;
    int list[256], top[2] = {-1, -1}, mtop[2] = {0, 0};
    float etop[2] = {INFINITY, INFINITY};
    float best = sub_fit(sp, x, w, D * *sc, M * *m, qbest, &num);
    const int n = sub_candidates(sp, *sc, sub_ls_center(sp, x, w, qbest, D), list);
    sub_sums(sp, x, w, qbest, &sw, &swq, &swx);
    const float swM = sw * M, inv_swM = (sp->mmax && swM != 0 && isfinite(1.0f / swM)) ? 1.0f / swM : 0.0f;
    for (int k = 0; k < n; k++) {
        const float a = D * list[k];
        const int mg = inv_swM != 0 ? round_clamp((a * swq - swx) * inv_swM, 0, sp->mmax) : *m;
        const float e = sub_fit(sp, x, w, a, M * mg, qt, &num);
        if (e < best) {
            best = e;
            *sc = list[k];
            *m = mg;
            memcpy(qbest, qt, (size_t)sp->sub * sizeof *qt);
        }
        const int slot = e < etop[0] ? 0 : e < etop[1] ? 1 : 2;
        if (sp->mmax && slot < 2) {
            if (slot == 0) { top[1] = top[0]; mtop[1] = mtop[0]; etop[1] = etop[0]; }
            top[slot] = list[k];
            mtop[slot] = mg;
            etop[slot] = e;
        }
    }
    for (int k = 0; k < 2 && inv_swM != 0; k++) {
        if (top[k] < 0) continue;
        int mt;
        const float e = sub_try_affine(sp, x, w, inv_swM, D * top[k], M, mtop[k], &mt, qt);
        if (e < best) {
            best = e;
            *sc = top[k];
            *m = mt;
            memcpy(qbest, qt, (size_t)sp->sub * sizeof *qt);
        }
    }
    for (int i = 0; i < sp->sub; ++i) q[i] = (int8_t)qbest[i];
}

/* ---------------------------------------------------------------- the whole super-block */

/* exact error of a state, accumulated in double */
LB_HD static double state_error(const kq_spec *sp, const float *x, const float *w, const kq_state *st) {
    const float D = h2f(st->d), M = h2f(st->dmin);
    double e = 0;
    for (int j = 0; j < sp->nsub; j++) {
        const float a = D * st->sc[j], b = M * st->m[j];
        for (int i = j * sp->sub; i < (j + 1) * sp->sub; i++) {
            float d = x[i] - (a * st->q[i] - b);
            e += (double)w[i] * d * d;
        }
    }
    return e;
}

/* re-derive every code for the current D, M, scales and mins */
LB_HD static void requantize(const kq_spec *sp, const float *x, const float *w, kq_state *st) {
    const float D = h2f(st->d), M = h2f(st->dmin);
    float q[MAX_SUB_LEN], num;
    for (int j = 0; j < sp->nsub; j++) {
        const int o = j * sp->sub;
        sub_fit(sp, x + o, w + o, D * st->sc[j], M * st->m[j], q, &num);
        for (int i = 0; i < sp->sub; ++i) st->q[o + i] = (int8_t)q[i];
    }
}

/* fp16 h and its two neighbours (finite ones only); returns how many went into out */
LB_HD static int fp16_neighbours(double v, uint16_t *out) {
    uint16_t h = lb_f32_to_fp16((float)v);
    int n = 0;
    for (int k = -1; k <= 1; k++) {
        uint16_t c = (uint16_t)(h + k);
        if (isfinite(h2f(c))) out[n++] = c;
    }
    return n;
}

/* weighted least-squares D (and M) for fixed integers, rounded to the best nearby fp16 values */
LB_HD static void refit_global(const kq_spec *sp, const float *x, const float *w, kq_state *st) {
    double Suu = 0, Suv = 0, Svv = 0, Sxu = 0, Sxv = 0;
    for (int e = 0; e < QK_K; e++) {
        const double u = (double)st->sc[e / sp->sub] * st->q[e], v = st->m[e / sp->sub], wx = (double)w[e] * x[e];
        Suu += w[e] * u * u;
        Suv += w[e] * u * v;
        Svv += w[e] * v * v;
        Sxu += wx * u;
        Sxv += wx * v;
    }
    double D = h2f(st->d), M = h2f(st->dmin), det = Suu * Svv - Suv * Suv;
    if (sp->mmax && Svv > 0 && det > 1e-9 * Suu * Svv) {
        D = (Sxu * Svv - Suv * Sxv) / det;
        M = (Suv * Sxu - Suu * Sxv) / det;
    } else if (Suu > 0) {
        D = (Sxu + M * Suv) / Suu;
    }
    uint16_t dc[4] = {st->d}, mc[4] = {st->dmin};
    int nd = 1 + fp16_neighbours(D, dc + 1), nm = sp->mmax ? 1 + fp16_neighbours(M, mc + 1) : 1;
    double best = INFINITY;
    uint16_t bd = st->d, bm = st->dmin;
    for (int i = 0; i < nd; i++)
        for (int k = 0; k < nm; k++) {
            const double d = h2f(dc[i]), m = h2f(mc[k]);
            const double e = -2 * d * Sxu + 2 * m * Sxv + d * d * Suu + m * m * Svv - 2 * d * m * Suv;
            if (e < best) {
                best = e;
                bd = dc[i];
                bm = mc[k];
            }
        }
    st->d = bd;
    st->dmin = bm;
}

/* coordinate descent from *st; returns the final (never higher) error */
LB_HD static double optimize(const kq_spec *sp, const float *x, const float *w, kq_state *st) {
    double err = state_error(sp, x, w, st);
    for (int it = 0; it < MAX_ITERS; it++) {
        kq_state t = *st;
        const float D = h2f(t.d), M = h2f(t.dmin);
        for (int j = 0; j < sp->nsub; j++) {
            const int o = j * sp->sub;
            sub_search(sp, x + o, w + o, D, M, &t.sc[j], &t.m[j], t.q + o);
        }
        double e1 = state_error(sp, x, w, &t);
        kq_state u = t;
        refit_global(sp, x, w, &u);
        requantize(sp, x, w, &u);
        double e2 = state_error(sp, x, w, &u);
        if (e2 < e1) {
            t = u;
            e1 = e2;
        }
        if (!(e1 < err)) break;
        const double gain = err - e1;
        *st = t;
        err = e1;
        if (gain <= MIN_GAIN * err) break;
    }
    return err;
}

/* Σ w (x − y)² of a packed block, through the type's reference dequantizer */
LB_HD static double block_error(const kq_spec *sp, const float *x, const float *w, const void *blk) {
    float y[QK_K];
    kq_to_float(sp, blk, y);
    double e = 0;
    for (int i = 0; i < QK_K; i++) {
        const double d = (double)x[i] - y[i];
        e += w[i] * d * d;
    }
    return e;
}

/* improve one super-block already holding ggml's encoding; keep ggml's bytes unless ours are better */
LB_HD static void improve_block(const kq_spec *sp, const float *x, const float *w, uint8_t *blk) {
    uint8_t mine[256];
    kq_state st;
    kq_unpack(sp, blk, &st);
    optimize(sp, x, w, &st);
    kq_pack(sp, &st, mine);
    if (block_error(sp, x, w, mine) < block_error(sp, x, w, blk)) memcpy(blk, mine, sp->block_bytes);
}

/* one super-block: ggml's encoding, then improved (im: the block's importance weights, or NULL) */
LB_HD static void encode_block(const kq_spec *sp, const float *x, const float *im, uint8_t *blk) {
    float ones[QK_K];
    kq_quantize_ref(sp, x, blk, im);
    if (!im)
        for (int i = 0; i < QK_K; i++) ones[i] = 1.0f;
    improve_block(sp, x, im ? im : ones, blk);
}

#ifndef LB_DEVICE_SOURCES
static kq_spec kq_spec_of(kq_fmt f);

static void quantize_rows(kq_fmt fmt, const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    const kq_spec sp = kq_spec_of(fmt);
    uint8_t *y = (uint8_t *)vy;
    const int64_t nb = n_per_row / QK_K;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            encode_block(&sp, x + r * n_per_row + i * QK_K, imatrix ? imatrix + i * QK_K : NULL,
                         y + (size_t)(r * nb + i) * sp.block_bytes);
}
#endif

/* ---------------------------------------------------------------- block layouts (formats.md 2.3) */

/* 2-bit field of element e (q2_K codes, q3_K low bits) */
LB_HD static inline int get_2bit(const uint8_t *qs, int e) { return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3; }

LB_HD static void put_2bit(const int *L, uint8_t *qs) {
    memset(qs, 0, QK_K / 4);
    for (int e = 0; e < QK_K; e++) qs[32 * (e / 128) + e % 32] |= (uint8_t)((L[e] & 3) << (2 * ((e % 128) / 32)));
}

LB_HD static void unpack_q2_K(const void *blk, kq_state *st) {
    const block_q2_K *b = (const block_q2_K *)blk;
    st->d = b->d;
    st->dmin = b->dmin;
    for (int j = 0; j < 16; j++) {
        st->sc[j] = b->scales[j] & 0xF;
        st->m[j] = b->scales[j] >> 4;
    }
    for (int e = 0; e < QK_K; e++) st->q[e] = (int8_t)get_2bit(b->qs, e);
}

LB_HD static void pack_q2_K(const kq_state *st, void *blk) {
    block_q2_K *b = (block_q2_K *)blk;
    int L[QK_K];
    b->d = st->d;
    b->dmin = st->dmin;
    for (int j = 0; j < 16; j++) b->scales[j] = (uint8_t)(st->sc[j] | (st->m[j] << 4));
    for (int e = 0; e < QK_K; e++) L[e] = st->q[e];
    put_2bit(L, b->qs);
}

LB_HD static void unpack_q3_K(const void *blk, kq_state *st) {
    const block_q3_K *b = (const block_q3_K *)blk;
    st->d = b->d;
    st->dmin = 0;
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? b->scales[j] & 0xF : b->scales[j - 8] >> 4;
        st->sc[j] = (lo | (((b->scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
        st->m[j] = 0;
    }
    for (int e = 0; e < QK_K; e++) st->q[e] = (int8_t)(get_2bit(b->qs, e) - (((b->hmask[e % 32] >> (e / 32)) & 1) ? 0 : 4));
}

LB_HD static void pack_q3_K(const kq_state *st, void *blk) {
    block_q3_K *b = (block_q3_K *)blk;
    int L[QK_K];
    b->d = st->d;
    memset(b->scales, 0, sizeof b->scales);
    for (int j = 0; j < 16; j++) {
        const int l = st->sc[j] + 32;
        if (j < 8)
            b->scales[j] = (uint8_t)(l & 0xF);
        else
            b->scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
        b->scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
    memset(b->hmask, 0, sizeof b->hmask);
    for (int e = 0; e < QK_K; e++) {
        L[e] = st->q[e] + 4;
        if (L[e] > 3) b->hmask[e % 32] |= (uint8_t)(1u << (e / 32));
    }
    put_2bit(L, b->qs);
}

/* q4_K / q5_K: 6-bit scales and mins packed in 12 bytes, codes in nibbles split per 64 (+ qh for q5_K) */
LB_HD static void unpack_k4(const uint8_t *s, const uint8_t *qs, const uint8_t *qh, kq_state *st) {
    for (int j = 0; j < 8; j++) {
        st->sc[j] = j < 4 ? s[j] & 63 : (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        st->m[j] = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
    for (int e = 0; e < QK_K; e++) {
        const uint8_t byte = qs[32 * (e / 64) + e % 32];
        int q = (e % 64 < 32) ? byte & 0xF : byte >> 4;
        if (qh && ((qh[e % 32] >> (e / 32)) & 1)) q += 16;
        st->q[e] = (int8_t)q;
    }
}

LB_HD static void pack_k4(const kq_state *st, uint8_t *s, uint8_t *qs, uint8_t *qh) {
    for (int j = 0; j < 8; j++) {
        const int ls = st->sc[j], lm = st->m[j];
        if (j < 4) {
            s[j] = (uint8_t)ls;
            s[j + 4] = (uint8_t)lm;
        } else {
            s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            s[j - 4] |= (uint8_t)((ls >> 4) << 6);
            s[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    memset(qs, 0, QK_K / 2);
    if (qh) memset(qh, 0, QK_K / 8);
    for (int e = 0; e < QK_K; e++) {
        const int q = st->q[e];
        qs[32 * (e / 64) + e % 32] |= (uint8_t)((q & 0xF) << ((e % 64 < 32) ? 0 : 4));
        if (qh && q > 15) qh[e % 32] |= (uint8_t)(1u << (e / 32));
    }
}

LB_HD static void unpack_q4_K(const void *blk, kq_state *st) {
    const block_q4_K *b = (const block_q4_K *)blk;
    st->d = b->d;
    st->dmin = b->dmin;
    unpack_k4(b->scales, b->qs, NULL, st);
}

LB_HD static void pack_q4_K(const kq_state *st, void *blk) {
    block_q4_K *b = (block_q4_K *)blk;
    b->d = st->d;
    b->dmin = st->dmin;
    pack_k4(st, b->scales, b->qs, NULL);
}

LB_HD static void unpack_q5_K(const void *blk, kq_state *st) {
    const block_q5_K *b = (const block_q5_K *)blk;
    st->d = b->d;
    st->dmin = b->dmin;
    unpack_k4(b->scales, b->qs, b->qh, st);
}

LB_HD static void pack_q5_K(const kq_state *st, void *blk) {
    block_q5_K *b = (block_q5_K *)blk;
    b->d = st->d;
    b->dmin = st->dmin;
    pack_k4(st, b->scales, b->qs, b->qh);
}

/* q6_K: int8 scales; code = low 4 bits in ql, high 2 bits in qh, minus 32 */
LB_HD static void unpack_q6_K(const void *blk, kq_state *st) {
    const block_q6_K *b = (const block_q6_K *)blk;
    st->d = b->d;
    st->dmin = 0;
    for (int j = 0; j < 16; j++) {
        st->sc[j] = b->scales[j];
        st->m[j] = 0;
    }
    for (int e = 0; e < QK_K; e++) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32;
        const uint8_t ql = b->ql[64 * h + (k & 1) * 32 + l];
        const int low = k < 2 ? ql & 0xF : ql >> 4;
        st->q[e] = (int8_t)((low | (((b->qh[32 * h + l] >> (2 * k)) & 3) << 4)) - 32);
    }
}

LB_HD static void pack_q6_K(const kq_state *st, void *blk) {
    block_q6_K *b = (block_q6_K *)blk;
    b->d = st->d;
    for (int j = 0; j < 16; j++) b->scales[j] = (int8_t)st->sc[j];
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int e = 0; e < QK_K; e++) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32, L = st->q[e] + 32;
        b->ql[64 * h + (k & 1) * 32 + l] |= (uint8_t)((L & 0xF) << (k < 2 ? 0 : 4));
        b->qh[32 * h + l] |= (uint8_t)((L >> 4) << (2 * k));
    }
}

/* ---------------------------------------------------------------- the five encoders */

/* the five formats' parameters (kq_spec's order) */
LB_HD static kq_spec kq_spec_of(kq_fmt f) {
    const kq_spec specs[5] = {
        {16, 16, 0, 3, 0, 15, 15, 0, sizeof(block_q2_K), KQ_Q2_K}, {16, 16, -4, 3, -32, 31, 0, 3, sizeof(block_q3_K), KQ_Q3_K},
        {8, 32, 0, 15, 0, 63, 63, 3, sizeof(block_q4_K), KQ_Q4_K},  {8, 32, 0, 31, 0, 63, 63, 3, sizeof(block_q5_K), KQ_Q5_K},
        {16, 16, -32, 31, -128, 127, 0, 3, sizeof(block_q6_K), KQ_Q6_K}};
    return specs[f];
}

LB_HD static void kq_unpack(const kq_spec *sp, const void *blk, kq_state *st) {
    switch (sp->fmt) {
    case KQ_Q2_K: unpack_q2_K(blk, st); break;
    case KQ_Q3_K: unpack_q3_K(blk, st); break;
    case KQ_Q4_K: unpack_q4_K(blk, st); break;
    case KQ_Q5_K: unpack_q5_K(blk, st); break;
    case KQ_Q6_K: unpack_q6_K(blk, st); break;
    }
}

LB_HD static void kq_pack(const kq_spec *sp, const kq_state *st, void *blk) {
    switch (sp->fmt) {
    case KQ_Q2_K: pack_q2_K(st, blk); break;
    case KQ_Q3_K: pack_q3_K(st, blk); break;
    case KQ_Q4_K: pack_q4_K(st, blk); break;
    case KQ_Q5_K: pack_q5_K(st, blk); break;
    case KQ_Q6_K: pack_q6_K(st, blk); break;
    }
}

LB_HD static void kq_to_float(const kq_spec *sp, const void *blk, float *y) {
    switch (sp->fmt) {
    case KQ_Q2_K: dequantize_row_q2_K_ref(blk, y, QK_K); break;
    case KQ_Q3_K: dequantize_row_q3_K_ref(blk, y, QK_K); break;
    case KQ_Q4_K: dequantize_row_q4_K_ref(blk, y, QK_K); break;
    case KQ_Q5_K: dequantize_row_q5_K_ref(blk, y, QK_K); break;
    case KQ_Q6_K: dequantize_row_q6_K_ref(blk, y, QK_K); break;
    }
}

/* ggml's encoding of one super-block (blocks are encoded independently: the same bytes as in a whole row) */
LB_HD static void kq_quantize_ref(const kq_spec *sp, const float *x, void *blk, const float *imatrix) {
    switch (sp->fmt) {
    case KQ_Q2_K: quantize_q2_K_ref(x, blk, 1, QK_K, imatrix); break;
    case KQ_Q3_K: quantize_q3_K_ref(x, blk, 1, QK_K, imatrix); break;
    case KQ_Q4_K: quantize_q4_K_ref(x, blk, 1, QK_K, imatrix); break;
    case KQ_Q5_K: quantize_q5_K_ref(x, blk, 1, QK_K, imatrix); break;
    case KQ_Q6_K: quantize_q6_K_ref(x, blk, 1, QK_K, imatrix); break;
    }
}

#ifndef LB_DEVICE_SOURCES
/* This file is compiled three times: as itself (the baseline x86-64 code, which LB_FORCE_REF=1 pins), through
 * kquant_avx2.c for AVX2 (LB_KQUANT_AVX2) and, up to encode_block and the layouts, as device code through
 * cuda/kq_encode.cu (LB_DEVICE_SOURCES; what is below is left out there). The C is the same, so are the float operations and their order
 * (ISO C: no contraction into fused multiply-adds, no reassociation): the same bytes, more lanes per
 * instruction where the compiler vectorizes (sub_fit, state_error, the sums). */
#ifdef LB_KQUANT_AVX2
#define KQ_ENTRY(name) name##_avx2
#else
#define KQ_ENTRY(name) name##_base
#endif

void KQ_ENTRY(quantize_q2_K_best)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void KQ_ENTRY(quantize_q3_K_best)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void KQ_ENTRY(quantize_q4_K_best)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void KQ_ENTRY(quantize_q5_K_best)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void KQ_ENTRY(quantize_q6_K_best)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);

void KQ_ENTRY(quantize_q2_K_best)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_rows(KQ_Q2_K, x, y, nrows, n_per_row, imatrix);
}

void KQ_ENTRY(quantize_q3_K_best)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_rows(KQ_Q3_K, x, y, nrows, n_per_row, imatrix);
}

void KQ_ENTRY(quantize_q4_K_best)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_rows(KQ_Q4_K, x, y, nrows, n_per_row, imatrix);
}

void KQ_ENTRY(quantize_q5_K_best)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_rows(KQ_Q5_K, x, y, nrows, n_per_row, imatrix);
}

void KQ_ENTRY(quantize_q6_K_best)(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_rows(KQ_Q6_K, x, y, nrows, n_per_row, imatrix);
}

#ifndef LB_KQUANT_AVX2
#if defined(__x86_64__) && defined(__GNUC__)
void quantize_q2_K_best_avx2(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q3_K_best_avx2(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q4_K_best_avx2(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q5_K_best_avx2(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
void quantize_q6_K_best_avx2(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix);
#define KQ_AVX2(name) (!lb_force_ref() && __builtin_cpu_supports("avx2") ? name##_avx2 : name##_base)
#else
#define KQ_AVX2(name) name##_base
#endif

void quantize_q2_K_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    KQ_AVX2(quantize_q2_K_best)(x, y, nrows, n_per_row, imatrix);
}

void quantize_q3_K_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    KQ_AVX2(quantize_q3_K_best)(x, y, nrows, n_per_row, imatrix);
}

void quantize_q4_K_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    KQ_AVX2(quantize_q4_K_best)(x, y, nrows, n_per_row, imatrix);
}

void quantize_q5_K_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    KQ_AVX2(quantize_q5_K_best)(x, y, nrows, n_per_row, imatrix);
}

void quantize_q6_K_best(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    KQ_AVX2(quantize_q6_K_best)(x, y, nrows, n_per_row, imatrix);
}
#endif
#endif /* LB_DEVICE_SOURCES */
