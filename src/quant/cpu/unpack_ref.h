/*
 * unpack_ref.h - the reference unpacking of every block type's rows into lb_qrow form (cpu.h: signed int8 codes,
 * an int16 scale and min multiplier per 16 elements, a float scale and min coefficient per block), included by
 * cpu_ref.c (the scalar reference kernels) and compiled once more for the device by cuda/exact.cu (an exact
 * context's products), so that both read every weight through the same source. Static functions; the includer
 * provides LB_HD (core.h), lb_fp16_to_f32, the block structs (blocks.h), lb_qrow (cpu.h), memcpy, and may define
 * LB_IQ4NL(c), the IQ4_NL codebook value of code c (default: kvalues_iq4nl[c]).
 * Weight layouts: docs/formats.md section 2 (ggml's block formats).
 */
#ifndef LB_QUANT_CPU_UNPACK_REF_H
#define LB_QUANT_CPU_UNPACK_REF_H

#ifndef LB_IQ4NL
#define LB_IQ4NL(c) kvalues_iq4nl[c]
#endif

LB_HD static inline float h2f(uint16_t h) { return lb_fp16_to_f32(h); }

/* block b of a 32-element type: scale 1 for both 16-groups, min multiplier mn */
LB_HD static void set32(const lb_qrow *o, int64_t b, float d, float dm, int mn) {
    o->sc[2 * b] = o->sc[2 * b + 1] = 1;
    o->mn[2 * b] = o->mn[2 * b + 1] = (int16_t)mn;
    o->d[b] = d;
    o->dm[b] = dm;
}

LB_HD static void unpack_q4_0_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_q4_0 *x = (const block_q4_0 *)row;
    for (int64_t b = 0; b < K / 32; b++) {
        for (int j = 0; j < 16; j++) {
            o->q[32 * b + j] = (int8_t)((x[b].qs[j] & 0xF) - 8);
            o->q[32 * b + j + 16] = (int8_t)((x[b].qs[j] >> 4) - 8);
        }
        set32(o, b, h2f(x[b].d), 0.0f, 0);
    }
}

LB_HD static void unpack_q4_1_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_q4_1 *x = (const block_q4_1 *)row;
    for (int64_t b = 0; b < K / 32; b++) {
        for (int j = 0; j < 16; j++) {
            o->q[32 * b + j] = (int8_t)(x[b].qs[j] & 0xF);
            o->q[32 * b + j + 16] = (int8_t)(x[b].qs[j] >> 4);
        }
        set32(o, b, h2f(x[b].d), h2f(x[b].m), 1);
    }
}

LB_HD static void q5_codes(const uint8_t *qs, const uint8_t *qh, int8_t *q, int off) {
    uint32_t h;
    memcpy(&h, qh, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 0xF) | (((h >> j) & 1) << 4)) - off);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4)) - off);
    }
}

LB_HD static void unpack_q5_0_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_q5_0 *x = (const block_q5_0 *)row;
    for (int64_t b = 0; b < K / 32; b++) {
        q5_codes(x[b].qs, x[b].qh, o->q + 32 * b, 16);
        set32(o, b, h2f(x[b].d), 0.0f, 0);
    }
}

LB_HD static void unpack_q5_1_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_q5_1 *x = (const block_q5_1 *)row;
    for (int64_t b = 0; b < K / 32; b++) {
        q5_codes(x[b].qs, x[b].qh, o->q + 32 * b, 0);
        set32(o, b, h2f(x[b].d), h2f(x[b].m), 1);
    }
}

LB_HD static void unpack_q8_0_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_q8_0 *x = (const block_q8_0 *)row;
    for (int64_t b = 0; b < K / 32; b++) {
        memcpy(o->q + 32 * b, x[b].qs, 32);
        set32(o, b, h2f(x[b].d), 0.0f, 0);
    }
}

LB_HD static void unpack_iq4_nl_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_iq4_nl *x = (const block_iq4_nl *)row;
    for (int64_t b = 0; b < K / 32; b++) {
        for (int j = 0; j < 16; j++) {
            o->q[32 * b + j] = LB_IQ4NL(x[b].qs[j] & 0xF);
            o->q[32 * b + j + 16] = LB_IQ4NL(x[b].qs[j] >> 4);
        }
        set32(o, b, h2f(x[b].d), 0.0f, 0);
    }
}

LB_HD static void unpack_q2_K_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_q2_K *x = (const block_q2_K *)row;
    for (int64_t b = 0; b < K / QK_K; b++) {
        int8_t *q = o->q + QK_K * b;
        for (int e = 0; e < QK_K; e++) q[e] = (int8_t)((x[b].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3);
        for (int g = 0; g < 16; g++) {
            o->sc[16 * b + g] = x[b].scales[g] & 0xF;
            o->mn[16 * b + g] = x[b].scales[g] >> 4;
        }
        o->d[b] = h2f(x[b].d);
        o->dm[b] = -h2f(x[b].dmin);
    }
}

LB_HD static int q3_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

LB_HD static void unpack_q3_K_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_q3_K *x = (const block_q3_K *)row;
    for (int64_t b = 0; b < K / QK_K; b++) {
        int8_t *q = o->q + QK_K * b;
        for (int e = 0; e < QK_K; e++) {
            int low = (x[b].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            q[e] = (int8_t)(low - (((x[b].hmask[e % 32] >> (e / 32)) & 1) ? 0 : 4));
        }
        for (int g = 0; g < 16; g++) {
            o->sc[16 * b + g] = (int16_t)q3_scale(x[b].scales, g);
            o->mn[16 * b + g] = 0;
        }
        o->d[b] = h2f(x[b].d);
        o->dm[b] = 0.0f;
    }
}

LB_HD static void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* q4_K / q5_K: codes from qs (and qh), 6-bit scales and mins per 32 elements */
LB_HD static void unpack_k4(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, int8_t *q, int16_t *sc, int16_t *mn) {
    for (int e = 0; e < QK_K; e++) {
        int c = e / 64, l = e % 32;
        int v = (e % 64 < 32) ? qs[32 * c + l] & 0xF : qs[32 * c + l] >> 4;
        if (qh && ((qh[l] >> (e / 32)) & 1)) v += 16;
        q[e] = (int8_t)v;
    }
    for (int j = 0; j < 8; j++) {
        int s, m;
        scale_min_k4(j, scales, &s, &m);
        sc[2 * j] = sc[2 * j + 1] = (int16_t)s;
        mn[2 * j] = mn[2 * j + 1] = (int16_t)m;
    }
}

LB_HD static void unpack_q4_K_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_q4_K *x = (const block_q4_K *)row;
    for (int64_t b = 0; b < K / QK_K; b++) {
        unpack_k4(x[b].scales, x[b].qs, NULL, o->q + QK_K * b, o->sc + 16 * b, o->mn + 16 * b);
        o->d[b] = h2f(x[b].d);
        o->dm[b] = -h2f(x[b].dmin);
    }
}

LB_HD static void unpack_q5_K_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_q5_K *x = (const block_q5_K *)row;
    for (int64_t b = 0; b < K / QK_K; b++) {
        unpack_k4(x[b].scales, x[b].qs, x[b].qh, o->q + QK_K * b, o->sc + 16 * b, o->mn + 16 * b);
        o->d[b] = h2f(x[b].d);
        o->dm[b] = -h2f(x[b].dmin);
    }
}

LB_HD static void unpack_q6_K_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_q6_K *x = (const block_q6_K *)row;
    for (int64_t b = 0; b < K / QK_K; b++) {
        int8_t *q = o->q + QK_K * b;
        for (int e = 0; e < QK_K; e++) {
            int h = e / 128, r = e % 128, l = r % 32, k = r / 32;
            uint8_t ql = x[b].ql[64 * h + (k & 1) * 32 + l];
            int low = k < 2 ? ql & 0xF : ql >> 4;
            q[e] = (int8_t)((low | (((x[b].qh[32 * h + l] >> (2 * k)) & 3) << 4)) - 32);
        }
        for (int g = 0; g < 16; g++) {
            o->sc[16 * b + g] = x[b].scales[g];
            o->mn[16 * b + g] = 0;
        }
        o->d[b] = h2f(x[b].d);
        o->dm[b] = 0.0f;
    }
}

LB_HD static void unpack_iq4_xs_ref(const void *row, int64_t K, const lb_qrow *o) {
    const block_iq4_xs *x = (const block_iq4_xs *)row;
    for (int64_t b = 0; b < K / QK_K; b++) {
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *qs = x[b].qs + 16 * ib;
            int8_t *q = o->q + QK_K * b + 32 * ib;
            for (int j = 0; j < 16; j++) {
                q[j] = LB_IQ4NL(qs[j] & 0xF);
                q[j + 16] = LB_IQ4NL(qs[j] >> 4);
            }
            int ls = (((x[b].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[b].scales_h >> (2 * ib)) & 3) << 4)) - 32;
            o->sc[16 * b + 2 * ib] = o->sc[16 * b + 2 * ib + 1] = (int16_t)ls;
            o->mn[16 * b + 2 * ib] = o->mn[16 * b + 2 * ib + 1] = 0;
        }
        o->d[b] = h2f(x[b].d);
        o->dm[b] = 0.0f;
    }
}

#endif
