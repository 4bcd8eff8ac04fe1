/*
 * grid.c - per-element value grids of the weight block types: read a block's scales and give the
 * values one element can take (lb_grid_get), write one element's code (lb_grid_set), and say how many
 * elements share one grid (lb_grid_run; the rounding, lb_grid_nearest, is inline in grid.h).
 *
 * Source: the layouts and decode formulas of docs/formats.md sections 2.2 and 2.3, in the exact float
 * form of the reference dequantizers in this directory (legacy.c, kquants.c, iq4.c): a and b are the
 * very floats those compute (e.g. q4_K: a = d*sc, b = -(dmin*m); q6_K: a = d*sc), so a*q + b reproduces
 * their results bit for bit. Symmetric formats use b = -0.0f, the additive identity for every float
 * (+0.0f would turn a -0.0 product into +0.0).
 */
#include "../grid.h"

#include "../blocks.h"

#include <math.h>
#include <string.h>

#define NEG_ZERO (-0.0f)

/* The device copy of this file (cuda/gptq_sweep.cu, LB_DEVICE_SOURCES) serves the k-quants without a
 * codebook only: blocks.h's table is host memory, so there iq4_nl / iq4_xs would get no codebook (the
 * device code never takes those types, lb_cuda_kq_encodes). */
#ifdef LB_DEVICE_SOURCES
#define IQ4_CODEBOOK NULL
#else
#define IQ4_CODEBOOK kvalues_iq4nl
#endif

LB_HD static inline float h2f(uint16_t h) { return lb_fp16_to_f32(h); }

LB_HD static void linear(lb_grid *g, float a, float b, int qmin, int qmax) {
    g->a = a;
    g->b = b;
    g->qmin = qmin;
    g->qmax = qmax;
    g->codebook = NULL;
}

/* ---- nibble / bit-plane accessors ---- */

/* Legacy 32-element split-half nibbles: element j < 16 low nibble of qs[j], j >= 16 high nibble of qs[j-16]. */
LB_HD static void set_nibble32(uint8_t *qs, int j, int v) {
    uint8_t *p = &qs[j % 16];
    *p = j < 16 ? (uint8_t)((*p & 0xF0) | (v & 0xF)) : (uint8_t)((*p & 0x0F) | ((v & 0xF) << 4));
}

/* Bit j of a little-endian bit array. */
LB_HD static void set_bit(uint8_t *bits, int j, int v) {
    if (v) bits[j / 8] |= (uint8_t)(1u << (j % 8));
    else bits[j / 8] &= (uint8_t)~(1u << (j % 8));
}

/* Bit b of byte bits[i]. */
LB_HD static void set_bit_at(uint8_t *bits, int i, int b, int v) {
    if (v) bits[i] |= (uint8_t)(1u << b);
    else bits[i] &= (uint8_t)~(1u << b);
}

/* q2_K / q3_K 2-bit planes: element e in bits 2*(r/32) of qs[32h + r%32], h = e/128, r = e%128. */
LB_HD static void set_2bit(uint8_t *qs, int e, int v) {
    const int h = e / 128, r = e % 128, sh = 2 * (r / 32);
    uint8_t *p = &qs[32 * h + r % 32];
    *p = (uint8_t)((*p & ~(3u << sh)) | ((unsigned)(v & 3) << sh));
}

/* q4_K / q5_K nibbles: element e in byte 32*(e/64) + e%32, low nibble when e%64 < 32. */
LB_HD static void set_nibble64(uint8_t *qs, int e, int v) {
    uint8_t *p = &qs[32 * (e / 64) + e % 32];
    *p = e % 64 < 32 ? (uint8_t)((*p & 0xF0) | (v & 0xF)) : (uint8_t)((*p & 0x0F) | ((v & 0xF) << 4));
}

/* q4_K / q5_K 6-bit scale and min of sub-block j (formats.md 2.3, get_scale_min_k4). */
LB_HD static void k4_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* q3_K signed 6-bit scale of sub-block j. */
LB_HD static int q3_scale(const uint8_t *s, int j) {
    const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

/* iq4_xs 6-bit scale of sub-block ib, unbiased. */
LB_HD static int xs_scale(const block_iq4_xs *b, int ib) {
    return (((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4)) - 32;
}

/* ---- grids ---- */

LB_HD static void get_legacy(lb_type t, const void *blk, lb_grid *g) {
    switch (t) {
    case LB_TYPE_Q4_0: linear(g, h2f(((const block_q4_0 *)blk)->d), NEG_ZERO, -8, 7); break;
    case LB_TYPE_Q4_1: {
        const block_q4_1 *b = (const block_q4_1 *)blk;
        linear(g, h2f(b->d), h2f(b->m), 0, 15);
        break;
    }
    case LB_TYPE_Q5_0: linear(g, h2f(((const block_q5_0 *)blk)->d), NEG_ZERO, -16, 15); break;
    case LB_TYPE_Q5_1: {
        const block_q5_1 *b = (const block_q5_1 *)blk;
        linear(g, h2f(b->d), h2f(b->m), 0, 31);
        break;
    }
    case LB_TYPE_Q8_0: linear(g, h2f(((const block_q8_0 *)blk)->d), NEG_ZERO, -127, 127); break;
    default: /* LB_TYPE_IQ4_NL */
        linear(g, h2f(((const block_iq4_nl *)blk)->d), NEG_ZERO, 0, 15);
        g->codebook = IQ4_CODEBOOK;
        break;
    }
}

LB_HD static void get_kquant(lb_type t, const void *blk, int e, lb_grid *g) {
    int sc, m;
    switch (t) {
    case LB_TYPE_Q2_K: {
        const block_q2_K *b = (const block_q2_K *)blk;
        const uint8_t s = b->scales[e / 16];
        linear(g, h2f(b->d) * (float)(s & 0xF), -(h2f(b->dmin) * (float)(s >> 4)), 0, 3);
        break;
    }
    case LB_TYPE_Q3_K: {
        const block_q3_K *b = (const block_q3_K *)blk;
        linear(g, h2f(b->d) * (float)q3_scale(b->scales, e / 16), NEG_ZERO, -4, 3);
        break;
    }
    case LB_TYPE_Q4_K: {
        const block_q4_K *b = (const block_q4_K *)blk;
        k4_scale_min(b->scales, e / 32, &sc, &m);
        linear(g, h2f(b->d) * (float)sc, -(h2f(b->dmin) * (float)m), 0, 15);
        break;
    }
    case LB_TYPE_Q5_K: {
        const block_q5_K *b = (const block_q5_K *)blk;
        k4_scale_min(b->scales, e / 32, &sc, &m);
        linear(g, h2f(b->d) * (float)sc, -(h2f(b->dmin) * (float)m), 0, 31);
        break;
    }
    case LB_TYPE_Q6_K: {
        const block_q6_K *b = (const block_q6_K *)blk;
        linear(g, h2f(b->d) * (float)b->scales[e / 16], NEG_ZERO, -32, 31);
        break;
    }
    default: { /* LB_TYPE_IQ4_XS */
        const block_iq4_xs *b = (const block_iq4_xs *)blk;
        linear(g, h2f(b->d) * (float)xs_scale(b, e / 32), NEG_ZERO, 0, 15);
        g->codebook = IQ4_CODEBOOK;
        break;
    }
    }
}

LB_HD bool lb_grid_supported(lb_type t) {
    switch (t) {
    case LB_TYPE_Q4_0: case LB_TYPE_Q4_1: case LB_TYPE_Q5_0: case LB_TYPE_Q5_1: case LB_TYPE_Q8_0:
    case LB_TYPE_Q2_K: case LB_TYPE_Q3_K: case LB_TYPE_Q4_K: case LB_TYPE_Q5_K: case LB_TYPE_Q6_K:
    case LB_TYPE_IQ4_NL: case LB_TYPE_IQ4_XS: return true;
    default: return false;
    }
}

LB_HD void lb_grid_get(lb_type t, const void *block, int j, lb_grid *g) {
    switch (t) {
    case LB_TYPE_Q4_0: case LB_TYPE_Q4_1: case LB_TYPE_Q5_0: case LB_TYPE_Q5_1: case LB_TYPE_Q8_0:
    case LB_TYPE_IQ4_NL: get_legacy(t, block, g); break;
    case LB_TYPE_Q2_K: case LB_TYPE_Q3_K: case LB_TYPE_Q4_K: case LB_TYPE_Q5_K: case LB_TYPE_Q6_K:
    case LB_TYPE_IQ4_XS: get_kquant(t, block, j, g); break;
    default: linear(g, 0.0f, 0.0f, 0, 0); break;
    }
}

/* ---- codes ---- */

LB_HD static void set_legacy(lb_type t, void *blk, int j, int q) {
    switch (t) {
    case LB_TYPE_Q4_0: set_nibble32(((block_q4_0 *)blk)->qs, j, q + 8); break;
    case LB_TYPE_Q4_1: set_nibble32(((block_q4_1 *)blk)->qs, j, q); break;
    case LB_TYPE_Q5_0: {
        block_q5_0 *b = (block_q5_0 *)blk;
        set_nibble32(b->qs, j, q + 16);
        set_bit(b->qh, j, (q + 16) >> 4);
        break;
    }
    case LB_TYPE_Q5_1: {
        block_q5_1 *b = (block_q5_1 *)blk;
        set_nibble32(b->qs, j, q);
        set_bit(b->qh, j, q >> 4);
        break;
    }
    case LB_TYPE_Q8_0: ((block_q8_0 *)blk)->qs[j] = (int8_t)q; break;
    default: set_nibble32(((block_iq4_nl *)blk)->qs, j, q); break; /* LB_TYPE_IQ4_NL */
    }
}

/* q6_K: low nibble in ql[64h + 32*(k&1) + l] (low half for k < 2), high 2 bits at bit 2k of qh[32h + l]. */
LB_HD static void set_q6_K(block_q6_K *b, int e, int q) {
    const int v = q + 32, h = e / 128, r = e % 128, l = r % 32, k = r / 32;
    uint8_t *ql = &b->ql[64 * h + (k & 1) * 32 + l], *qh = &b->qh[32 * h + l];
    *ql = k < 2 ? (uint8_t)((*ql & 0xF0) | (v & 0xF)) : (uint8_t)((*ql & 0x0F) | ((v & 0xF) << 4));
    *qh = (uint8_t)((*qh & ~(3u << (2 * k))) | ((unsigned)(v >> 4) << (2 * k)));
}

LB_HD static void set_kquant(lb_type t, void *blk, int e, int q) {
    switch (t) {
    case LB_TYPE_Q2_K: set_2bit(((block_q2_K *)blk)->qs, e, q); break;
    case LB_TYPE_Q3_K: {
        block_q3_K *b = (block_q3_K *)blk;
        set_2bit(b->qs, e, (q + 4) & 3);
        set_bit_at(b->hmask, e % 32, e / 32, (q + 4) >> 2);
        break;
    }
    case LB_TYPE_Q4_K: set_nibble64(((block_q4_K *)blk)->qs, e, q); break;
    case LB_TYPE_Q5_K: {
        block_q5_K *b = (block_q5_K *)blk;
        set_nibble64(b->qs, e, q);
        set_bit_at(b->qh, e % 32, e / 32, q >> 4);
        break;
    }
    case LB_TYPE_Q6_K: set_q6_K((block_q6_K *)blk, e, q); break;
    default: /* LB_TYPE_IQ4_XS: sub-block e/32 uses qs[16*(e/32) ..], split-half nibbles */
        set_nibble32(((block_iq4_xs *)blk)->qs + 16 * (e / 32), e % 32, q);
        break;
    }
}

LB_HD void lb_grid_set(lb_type t, void *block, int j, int q) {
    switch (t) {
    case LB_TYPE_Q4_0: case LB_TYPE_Q4_1: case LB_TYPE_Q5_0: case LB_TYPE_Q5_1: case LB_TYPE_Q8_0:
    case LB_TYPE_IQ4_NL: set_legacy(t, block, j, q); break;
    case LB_TYPE_Q2_K: case LB_TYPE_Q3_K: case LB_TYPE_Q4_K: case LB_TYPE_Q5_K: case LB_TYPE_Q6_K:
    case LB_TYPE_IQ4_XS: set_kquant(t, block, j, q); break;
    default: break;
    }
}

/* ---- sub-block parameters ---- */

/* q4_K / q5_K: write the 6-bit scale (which 0) or min (which 1) of sub-block j, inverse of k4_scale_min. */
LB_HD static void k4_set(uint8_t *s, int j, int which, int v) {
    if (j < 4) {
        uint8_t *p = &s[j + 4 * which];
        *p = (uint8_t)((*p & 0xC0) | (v & 63));
    } else {
        uint8_t *lo = &s[j + 4], *hi = &s[j - 4 + 4 * which];
        *lo = which ? (uint8_t)((*lo & 0x0F) | ((v & 0xF) << 4)) : (uint8_t)((*lo & 0xF0) | (v & 0xF));
        *hi = (uint8_t)((*hi & 0x3F) | ((v >> 4) << 6));
    }
}

/* q3_K: write the signed 6-bit scale of sub-block j, inverse of q3_scale. */
LB_HD static void q3_set(uint8_t *s, int j, int v) {
    const int u = v + 32, sh = 2 * (j / 4);
    uint8_t *lo = &s[j % 8], *hi = &s[8 + j % 4];
    *lo = j < 8 ? (uint8_t)((*lo & 0xF0) | (u & 0xF)) : (uint8_t)((*lo & 0x0F) | ((u & 0xF) << 4));
    *hi = (uint8_t)((*hi & ~(3u << sh)) | ((unsigned)(u >> 4) << sh));
}

LB_HD int lb_grid_n_params(lb_type t) {
    switch (t) {
    case LB_TYPE_Q2_K: return 32;
    case LB_TYPE_Q3_K: case LB_TYPE_Q6_K: return 16;
    case LB_TYPE_Q4_K: case LB_TYPE_Q5_K: return 16;
    case LB_TYPE_IQ4_XS: return 8;
    default: return 0;
    }
}

LB_HD void lb_grid_param_info(lb_type t, int p, lb_grid_param *info) {
    int sub = 16, lo = 0, hi = 15, j = p;
    switch (t) {
    case LB_TYPE_Q2_K: j = p % 16; break; /* 0..15 scales, 16..31 mins */
    case LB_TYPE_Q3_K: lo = -32; hi = 31; break;
    case LB_TYPE_Q6_K: lo = -128; hi = 127; break;
    case LB_TYPE_Q4_K: case LB_TYPE_Q5_K: sub = 32; j = p % 8; hi = 63; break; /* 0..7 scales, 8..15 mins */
    default: sub = 32; lo = -32; hi = 31; break; /* LB_TYPE_IQ4_XS */
    }
    info->first = j * sub;
    info->n = sub;
    info->lo = lo;
    info->hi = hi;
}

LB_HD int lb_grid_param_get(lb_type t, const void *block, int p) {
    int sc, m;
    switch (t) {
    case LB_TYPE_Q2_K: {
        const uint8_t s = ((const block_q2_K *)block)->scales[p % 16];
        return p < 16 ? s & 0xF : s >> 4;
    }
    case LB_TYPE_Q3_K: return q3_scale(((const block_q3_K *)block)->scales, p);
    case LB_TYPE_Q6_K: return ((const block_q6_K *)block)->scales[p];
    case LB_TYPE_Q4_K: case LB_TYPE_Q5_K:
        k4_scale_min(t == LB_TYPE_Q4_K ? ((const block_q4_K *)block)->scales : ((const block_q5_K *)block)->scales,
                     p % 8, &sc, &m);
        return p < 8 ? sc : m;
    default: return xs_scale((const block_iq4_xs *)block, p); /* LB_TYPE_IQ4_XS */
    }
}

LB_HD void lb_grid_param_set(lb_type t, void *block, int p, int v) {
    switch (t) {
    case LB_TYPE_Q2_K: {
        uint8_t *s = &((block_q2_K *)block)->scales[p % 16];
        *s = p < 16 ? (uint8_t)((*s & 0xF0) | (v & 0xF)) : (uint8_t)((*s & 0x0F) | ((v & 0xF) << 4));
        break;
    }
    case LB_TYPE_Q3_K: q3_set(((block_q3_K *)block)->scales, p, v); break;
    case LB_TYPE_Q6_K: ((block_q6_K *)block)->scales[p] = (int8_t)v; break;
    case LB_TYPE_Q4_K: k4_set(((block_q4_K *)block)->scales, p % 8, p >= 8, v); break;
    case LB_TYPE_Q5_K: k4_set(((block_q5_K *)block)->scales, p % 8, p >= 8, v); break;
    case LB_TYPE_IQ4_XS: {
        block_iq4_xs *b = (block_iq4_xs *)block;
        const int u = v + 32;
        uint8_t *lo = &b->scales_l[p / 2];
        *lo = (uint8_t)((*lo & ~(0xFu << (4 * (p % 2)))) | ((unsigned)(u & 0xF) << (4 * (p % 2))));
        b->scales_h = (uint16_t)((b->scales_h & ~(3u << (2 * p))) | ((unsigned)(u >> 4) << (2 * p)));
        break;
    }
    default: break;
    }
}

/* ---- runs ---- */

int lb_grid_run(lb_type t) { /* host only: the type table */
    switch (t) {
    case LB_TYPE_Q2_K: case LB_TYPE_Q3_K: case LB_TYPE_Q6_K: return 16;
    case LB_TYPE_Q4_K: case LB_TYPE_Q5_K: case LB_TYPE_IQ4_XS: return 32;
    default: return lb_grid_supported(t) ? (int)lb_type_block_elems(t) : 1;
    }
}
