/*
 * kquants.c - reference kernels of the k-quant super-block formats q2_K, q3_K, q4_K, q5_K, q6_K and of
 * their activation type q8_K: dequantization, ggml's reference encoders and integer dot products.
 *
 * Source: docs/formats.md sections 2.3 (layouts), 2.5 (encoders without an importance matrix) and 2.6
 * (imatrix encoders), which describe ggml-quants.c at llama.cpp c392e5094dea. The encoders reproduce
 * ggml's search algorithms (make_qx_quants, make_q3_quants, make_qkx2_quants, make_qkx3_quants,
 * make_qp_quants) with the same float operations in the same order, so their bytes match ggml's bit for
 * bit; tests/golden/ggml holds the vectors that check it. Where ggml relies on out-of-range conversions
 * (never on finite inputs of sane magnitude) this code stays well defined instead.
 *
 * The dot products do ggml's integer arithmetic per sub-block (q8_K bsums carry the min terms of q2_K,
 * q4_K and q5_K) and convert to float once per super-block.
 */
#include "ref.h"

#include "../../core/core.h"
#include "../blocks.h"
#include "../cpu/cpu.h"

#include <math.h>
#include <string.h>

#define GROUP_MAX_EPS 1e-15f /* a group whose max |x| is below this is encoded as all zeros */

/* ---------------------------------------------------------------- helpers */

/* Round to nearest, ties to even, by adding 1.5*2^23 (exact for |f| < 2^22; defined for any input). */
LB_HD static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

LB_HD static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
LB_HD static inline float h2f(uint16_t h) { return lb_fp16_to_f32(h); }
LB_HD static inline uint16_t f2h(float f) { return lb_f32_to_fp16(f); }

/* q4_K / q5_K 6-bit scale and min of sub-block j from the 12-byte packed array */
LB_HD static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

LB_HD static void set_scale_min_k4(int j, uint8_t *q, uint8_t ls, uint8_t lm) {
    if (j < 4) {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        q[j - 4] |= (uint8_t)((ls >> 4) << 6);
        q[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* q3_K signed 6-bit scale j (-32..31) from the 12-byte packed array */
LB_HD static inline int q3_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

/* store l (0..63, the scale biased by 32) as q3_K scale j; s must start zeroed */
LB_HD static void q3_set_scale(uint8_t *s, int j, int l) {
    if (j < 8)
        s[j] = (uint8_t)(l & 0xF);
    else
        s[j - 8] |= (uint8_t)((l & 0xF) << 4);
    s[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
}

/* 2-bit codes of 256 elements: byte 32h+l holds elements 128h+l+32k in bits 2k..2k+1 (q2_K, q3_K) */
LB_HD static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* 4-bit codes: byte 32c+l holds element 64c+l (low nibble) and 64c+32+l (high nibble) (q4_K, q5_K) */
LB_HD static void pack_4bit_k(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 64)
        for (int l = 0; l < 32; ++l) qs[j / 2 + l] = (uint8_t)((L[j + l] & 0xF) | ((L[j + l + 32] & 0xF) << 4));
}

/* q5_K: the fifth bit of element e is bit e/32 of qh[e%32] */
LB_HD static void pack_q5_K(const uint8_t *L, block_q5_K *b) {
    pack_4bit_k(L, b->qs);
    memset(b->qh, 0, sizeof b->qh);
    for (int e = 0; e < QK_K; ++e)
        if (L[e] > 15) b->qh[e % 32] |= (uint8_t)(1u << (e / 32));
}

/* q3_K: codes 0..7; the high bit of element e goes to bit e/32 of hmask[e%32] */
LB_HD static void pack_q3_K(uint8_t *L, block_q3_K *b) {
    memset(b->hmask, 0, sizeof b->hmask);
    for (int e = 0; e < QK_K; ++e) {
        if (L[e] > 3) {
            b->hmask[e % 32] |= (uint8_t)(1u << (e / 32));
            L[e] -= 4;
        }
    }
    pack_2bit(L, b->qs);
}

/* q6_K: codes 0..63; low nibbles in ql, high 2 bits in qh (formats.md 2.3) */
LB_HD static void pack_q6_K(const uint8_t *L, block_q6_K *b) {
    for (int j = 0; j < QK_K; j += 128) {
        uint8_t *ql = b->ql + j / 2, *qh = b->qh + j / 4;
        for (int l = 0; l < 32; ++l) {
            const uint8_t *p = L + j + l;
            ql[l] = (uint8_t)((p[0] & 0xF) | ((p[64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((p[32] & 0xF) | ((p[96] & 0xF) << 4));
            qh[l] = (uint8_t)((p[0] >> 4) | ((p[32] >> 4) << 2) | ((p[64] >> 4) << 4) | ((p[96] >> 4) << 6));
        }
    }
}

/* ---------------------------------------------------------------- scale searches (ggml's algorithms) */

/*
 * Symmetric codes l in [-nmax, nmax-1] (stored as l+nmax in L) for x ≈ scale·l, weights qw (x² when
 * NULL); tries iscale = -(nmax + 0.1·is)/max, is = -9..9, and keeps the best least-squares scale.
 * (ggml make_qx_quants with rmse_type 1.)
 */
LB_HD static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) L[i] = (int8_t)(nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* one pass of q3's coordinate search: move single codes to their best value for the current scale */
LB_HD static int q3_refine_pass(int n, int nmax, const float *x, int8_t *L, float *sumlx, float *suml2) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
        float w = x[i] * x[i];
        float slx = *sumlx - w * x[i] * L[i];
        if (slx > 0) {
            float sl2 = *suml2 - w * L[i] * L[i];
            int new_l = clampi(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
            if (new_l != L[i]) {
                slx += w * x[i] * new_l;
                sl2 += w * new_l * new_l;
                if (sl2 > 0 && slx * slx * *suml2 > *sumlx * *sumlx * sl2) {
                    L[i] = (int8_t)new_l;
                    *sumlx = slx;
                    *suml2 = sl2;
                    ++n_changed;
                }
            }
        }
    }
    return n_changed;
}

/* q3_K codes l in [-nmax, nmax-1] (stored l+nmax), weights x², up to 5 refinement passes (make_q3_quants) */
LB_HD static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry)
        if (!q3_refine_pass(n, nmax, x, L, &sumlx, &suml2)) break;
    for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* weighted error of x ≈ scale·L + min (|diff| when use_mad, else diff²) */
LB_HD static float affine_error(int n, const float *x, const float *w, const uint8_t *L, float scale, float min,
                          int use_mad) {
    float err = 0;
    for (int i = 0; i < n; ++i) {
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        err += w[i] * diff;
    }
    return err;
}

#ifdef LB_DEVICE_SOURCES
LB_HD void lb_qkx_steps_ref(const lb_qkx_search *s, const float *x, const float *w, uint8_t *L, float *scale, float *pmin,
                            float *best_error);
#endif

/*
 * Affine codes L in [0, nmax] for x ≈ scale·L + min with min ≤ 0; returns scale, *the_min = -min.
 * Tries iscale = (rmin + rdelta·is + nmax)/(max − min), is = 0..nstep, each with a weighted
 * least-squares refit of scale and min (ggml make_qkx2_quants; qkx3 = 1 gives make_qkx3_quants, which
 * measures the range against the best min found so far).
 */
LB_HD static float make_qkx_quants(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                             float rmin, float rdelta, int nstep, int use_mad, int qkx3) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (!(max > min)) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale;
    for (int i = 0; i < n; ++i) L[i] = (uint8_t)clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
    float best_error = affine_error(n, x, w, L, scale, min, use_mad);
    const lb_qkx_search s = {n, nmax, nstep, use_mad, qkx3, rmin, rdelta, max, sum_w, sum_x};
#ifdef LB_DEVICE_SOURCES
    /* the GPU: the specification itself (the parentheses keep C++'s argument-dependent lookup from also
     * finding the CPU's declaration) */
    (lb_qkx_steps_ref)(&s, x, w, L, &scale, &min, &best_error);
#else
    lb_cpu_kernels_best()->qkx(&s, x, w, L, &scale, &min, &best_error);
#endif
    *the_min = -min;
    return scale;
}

/* make_qkx_quants' steps (the specification of lb_cpu_kernels.qkx) */
LB_HD void lb_qkx_steps_ref(const lb_qkx_search *s, const float *x, const float *w, uint8_t *L, float *scale, float *pmin,
                      float *best_error) {
    const int n = s->n, nmax = s->nmax;
    const float max = s->max, sum_w = s->sum_w, sum_x = s->sum_x;
    float min = *pmin;
    uint8_t Laux[LB_QKX_MAX_N];
    for (int is = 0; is <= s->nstep; ++is) {
        const float iscale = (s->rmin + s->rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            float v = iscale * (x[i] - min);
            int l = s->qkx3 ? (v > 0 ? nearest_int(v < nmax ? v : (float)nmax) : 0) : clampi(nearest_int(v), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = affine_error(n, x, w, Laux, this_scale, this_min, s->use_mad);
            if (cur_error < *best_error) {
                memcpy(L, Laux, (size_t)n);
                *best_error = cur_error;
                *scale = this_scale;
                min = this_min;
            }
        }
    }
    *pmin = min;
}

/* weighted squared error of x ≈ scale·l with l = min(nmax, round(iscale·x)) (make_qp_quants' probe) */
LB_HD static float qp_probe(int n, int nmax, const float *x, const float *w, float iscale) {
    float scale = 1 / iscale, mse = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        if (l > nmax) l = nmax;
        float diff = x[i] - scale * l;
        mse += w[i] * diff * diff;
    }
    return mse;
}

/* one pass of make_qp_quants' coordinate search (codes in L are uint8, as in ggml) */
LB_HD static int qp_refine_pass(int n, int nmax, const float *x, const float *w, uint8_t *L, float *sumlx, float *suml2) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
        float slx = *sumlx - w[i] * x[i] * L[i];
        float sl2 = *suml2 - w[i] * L[i] * L[i];
        if (slx > 0 && sl2 > 0) {
            int new_l = nearest_int(x[i] * sl2 / slx);
            if (new_l > nmax) new_l = nmax;
            if (new_l != L[i]) {
                slx += w[i] * x[i] * new_l;
                sl2 += w[i] * new_l * new_l;
                if (slx * slx * *suml2 > *sumlx * *sumlx * sl2) {
                    L[i] = (uint8_t)new_l;
                    *sumlx = slx;
                    *suml2 = sl2;
                    ++n_changed;
                }
            }
        }
    }
    return n_changed;
}

/*
 * Non-negative codes L in [0, nmax] for non-negative x (sub-block scales or mins) ≈ scale·L, weights w:
 * best of iscale = (nmax + 0.1·is)/max, is = -4..4, then up to 5 coordinate passes (make_qp_quants).
 */
LB_HD static float make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *w) {
    float max = 0;
    for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i];
    if (max < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; ++i) L[i] = (uint8_t)nearest_int(iscale * x[i]);
    float scale = 1 / iscale, best_mse = 0;
    for (int i = 0; i < n; ++i) {
        float diff = x[i] - scale * L[i];
        best_mse += w[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        float iscale_is = (0.1f * is + nmax) / max;
        float mse = qp_probe(n, nmax, x, w, iscale_is);
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        if (l > nmax) l = nmax;
        L[i] = (uint8_t)l;
        sumlx += w[i] * x[i] * l;
        suml2 += w[i] * l * l;
    }
    for (int itry = 0; itry < 5; ++itry)
        if (!qp_refine_pass(n, nmax, x, w, L, &sumlx, &suml2)) break;
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ---------------------------------------------------------------- q2_K */

LB_HD void dequantize_row_q2_K_ref(const void *vx, float *y, int64_t n) {
    const block_q2_K *x = (const block_q2_K *)vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        for (int e = 0; e < QK_K; ++e) {
            const uint8_t sc = x[i].scales[e / 16];
            const int h = e / 128, r = e % 128;
            const int q = (x[i].qs[32 * h + r % 32] >> (2 * (r / 32))) & 3;
            const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
            y[QK_K * i + e] = dl * q - ml;
        }
    }
}

/* re-derive the codes of every sub-block from the block's final (fp16) scales; q = clamp(round((x+m)/d)) */
LB_HD static void q2_requantize(const float *x, const block_q2_K *b, uint8_t *L) {
    const float dm = h2f(b->d), mm = h2f(b->dmin);
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = dm * (b->scales[j] & 0xF);
        if (!d) continue;
        const float m = mm * (b->scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = (uint8_t)clampi(nearest_int((x[16 * j + ii] + m) / d), 0, 3);
    }
}

LB_HD void quantize_row_q2_K_ref(const float *x, void *vy, int64_t n) {
    block_q2_K *y = (block_q2_K *)vy;
    uint8_t L[QK_K];
    float weights[16], mins[QK_K / 16], scales[QK_K / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, 1, 0);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        y[i].d = y[i].dmin = f2h(0.f);
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = f2h(max_scale / q4scale);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] |= (uint8_t)((unsigned)nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = f2h(max_min / q4scale);
        }
        q2_requantize(x, &y[i], L);
        pack_2bit(L, y[i].qs);
    }
}

/* one q2_K super-block with importance weights qw (ggml quantize_row_q2_K_impl) */
LB_HD static void quantize_block_q2_K_imatrix(const float *x, block_q2_K *y, const float *qw) {
    uint8_t L[QK_K], Ls[QK_K / 16], Lm[QK_K / 16];
    float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], weight[16];
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    float sigma2 = sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
        sw[j] = 0;
        for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
        for (int l = 0; l < 16; ++l) sw[j] += weight[l];
        scales[j] = make_qkx_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], -0.9f, 0.05f, 36, 0, 1);
    }
    float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
    float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
    y->d = f2h(dm);
    y->dmin = f2h(mm);
    for (int j = 0; j < QK_K / 16; ++j) y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    q2_requantize(x, y, L);
    pack_2bit(L, y->qs);
}

LB_HD void quantize_q2_K_ref(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (!imatrix) {
        quantize_row_q2_K_ref(x, vy, nrows * n_per_row);
        return;
    }
    block_q2_K *y = (block_q2_K *)vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < n_per_row / QK_K; i++, y++, x += QK_K) quantize_block_q2_K_imatrix(x, y, imatrix + QK_K * i);
}

LB_HD void vec_dot_q2_K_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q2_K *x = (const block_q2_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int summs = 0, isum = 0;
        for (int j = 0; j < 16; ++j) {
            const uint8_t sc = x[i].scales[j];
            int isuml = 0;
            for (int e = 16 * j; e < 16 * j + 16; ++e) {
                const int h = e / 128, r = e % 128;
                isuml += y[i].qs[e] * ((x[i].qs[32 * h + r % 32] >> (2 * (r / 32))) & 3);
            }
            isum += (sc & 0xF) * isuml;
            summs += y[i].bsums[j] * (sc >> 4);
        }
        const float dall = y[i].d * h2f(x[i].d), dmin = y[i].d * h2f(x[i].dmin);
        sumf += dall * isum - dmin * summs;
    }
    *s = sumf;
}

/* ---------------------------------------------------------------- q3_K */

LB_HD static inline int q3_code(const block_q3_K *b, int e) {
    const int h = e / 128, r = e % 128;
    const int low = (b->qs[32 * h + r % 32] >> (2 * (r / 32))) & 3;
    return low - ((b->hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4);
}

LB_HD void dequantize_row_q3_K_ref(const void *vx, float *y, int64_t n) {
    const block_q3_K *x = (const block_q3_K *)vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d_all = h2f(x[i].d);
        for (int j = 0; j < QK_K / 16; ++j) {
            const float dl = d_all * q3_scale(x[i].scales, j);
            for (int e = 16 * j; e < 16 * j + 16; ++e) y[QK_K * i + e] = dl * q3_code(&x[i], e);
        }
    }
}

/* codes from the block's final scales, q = clamp(round(x/d), -4, 3) + 4, then pack */
LB_HD static void q3_requantize_pack(const float *x, block_q3_K *b, int8_t *L) {
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = h2f(b->d) * q3_scale(b->scales, j);
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = (int8_t)(clampi(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    pack_q3_K((uint8_t *)L, b);
}

LB_HD void quantize_row_q3_K_ref(const float *x, void *vy, int64_t n) {
    block_q3_K *y = (block_q3_K *)vy;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            float scale = fabsf(scales[j]);
            if (scale > amax) { amax = scale; max_scale = scales[j]; }
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; ++j) {
                int8_t l = (int8_t)nearest_int(iscale * scales[j]);
                q3_set_scale(y[i].scales, j, clampi(l, -32, 31) + 32);
            }
            y[i].d = f2h(1 / iscale);
        } else {
            y[i].d = f2h(0.f);
        }
        q3_requantize_pack(x, &y[i], L);
    }
}

/* one q3_K super-block with importance weights qw (ggml quantize_row_q3_K_impl) */
LB_HD static void quantize_block_q3_K_imatrix(const float *x, block_q3_K *y, const float *qw) {
    int8_t L[QK_K], Ls[QK_K / 16];
    float scales[QK_K / 16], weight[16], sw[QK_K / 16];
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    float sigma2 = 2 * sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
        for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 16; ++l) sumw += weight[l];
        sw[j] = sumw;
        scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
    }
    memset(y->scales, 0, sizeof y->scales);
    float d_block = make_qx_quants(QK_K / 16, 32, scales, Ls, sw);
    for (int j = 0; j < QK_K / 16; ++j) q3_set_scale(y->scales, j, Ls[j]);
    y->d = f2h(d_block);
    q3_requantize_pack(x, y, L);
}

LB_HD void quantize_q3_K_ref(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (!imatrix) {
        quantize_row_q3_K_ref(x, vy, nrows * n_per_row);
        return;
    }
    block_q3_K *y = (block_q3_K *)vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < n_per_row / QK_K; i++, y++, x += QK_K) quantize_block_q3_K_imatrix(x, y, imatrix + QK_K * i);
}

LB_HD void vec_dot_q3_K_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = (const block_q3_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int isum = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            int isub = 0;
            for (int e = 16 * j; e < 16 * j + 16; ++e) isub += y[i].qs[e] * q3_code(&x[i], e);
            isum += q3_scale(x[i].scales, j) * isub;
        }
        sumf += h2f(x[i].d) * y[i].d * isum;
    }
    *s = sumf;
}

/* ---------------------------------------------------------------- q4_K and q5_K (shared encoder) */

/* code of element e: low nibble (q4_K), plus the qh bit (q5_K when qh != NULL) */
LB_HD static inline int k4_code(const uint8_t *qs, const uint8_t *qh, int e) {
    const int c = e / 64, l = e % 32;
    int q = (e % 64 < 32) ? qs[32 * c + l] & 0xF : qs[32 * c + l] >> 4;
    if (qh && ((qh[l] >> (e / 32)) & 1)) q += 16;
    return q;
}

LB_HD static void dequantize_k4(const uint16_t dh, const uint16_t mh, const uint8_t *scales, const uint8_t *qs,
                          const uint8_t *qh, float *y) {
    const float d = h2f(dh), min = h2f(mh);
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        for (int e = 32 * j; e < 32 * j + 32; ++e) y[e] = d1 * k4_code(qs, qh, e) - m1;
    }
}

LB_HD void dequantize_row_q4_K_ref(const void *vx, float *y, int64_t n) {
    const block_q4_K *x = (const block_q4_K *)vx;
    for (int64_t i = 0; i < n / QK_K; i++) dequantize_k4(x[i].d, x[i].dmin, x[i].scales, x[i].qs, NULL, y + QK_K * i);
}

LB_HD void dequantize_row_q5_K_ref(const void *vx, float *y, int64_t n) {
    const block_q5_K *x = (const block_q5_K *)vx;
    for (int64_t i = 0; i < n / QK_K; i++) dequantize_k4(x[i].d, x[i].dmin, x[i].scales, x[i].qs, x[i].qh, y + QK_K * i);
}

/* the common part of a q4_K / q5_K super-block: fp16 d, dmin, 12 scale bytes, and 256 codes in 0..nmax */
typedef struct { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t L[QK_K]; } k4_block;

/* codes from the block's final scales: q = clamp(round((x + dmin·m)/(d·sc)), 0, nmax) */
LB_HD static void k4_requantize(const float *x, k4_block *b, int nmax) {
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, b->scales, &sc, &m);
        const float d = h2f(b->d) * sc;
        if (!d) continue;
        const float dm = h2f(b->dmin) * m;
        for (int ii = 0; ii < 32; ++ii) b->L[32 * j + ii] = (uint8_t)clampi(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax);
    }
}

/* ggml quantize_row_q4_K_ref / q5_K_ref for one super-block */
LB_HD static void k4_encode_ref(const float *x, k4_block *b, int nmax, float rmin, int nstep) {
    float weights[32], mins[QK_K / 32], scales[QK_K / 32], max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx_quants(32, nmax, x + 32 * j, weights, b->L + 32 * j, &mins[j], rmin, 0.1f, nstep, 0, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]), lm = (uint8_t)nearest_int(inv_min * mins[j]);
        set_scale_min_k4(j, b->scales, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
    }
    b->d = f2h(max_scale / 63.f);
    b->dmin = f2h(max_min / 63.f);
    k4_requantize(x, b, nmax);
}

/* ggml quantize_row_q4_K_impl / q5_K_impl for one super-block (with importance weights qw) */
LB_HD static void k4_encode_imatrix(const float *x, k4_block *b, int nmax, const float *qw) {
    uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
    float weights[32], sw[QK_K / 32], mins[QK_K / 32], scales[QK_K / 32];
    float sum_x2 = 0;
    for (int l = 0; l < QK_K; ++l) sum_x2 += x[l] * x[l];
    float sigma2 = 2 * sum_x2 / QK_K;
    for (int j = 0; j < QK_K / 32; ++j) {
        for (int l = 0; l < 32; ++l) weights[l] = qw[32 * j + l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = make_qkx_quants(32, nmax, x + 32 * j, weights, b->L + 32 * j, &mins[j], -0.9f, 0.05f, 36, 0, 1);
    }
    float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
    float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
    for (int j = 0; j < QK_K / 32; ++j) set_scale_min_k4(j, b->scales, Ls[j], Lm[j]);
    b->d = f2h(d_block);
    b->dmin = f2h(m_block);
    k4_requantize(x, b, nmax);
}

LB_HD static void store_q4_K(const k4_block *k, block_q4_K *y) {
    y->d = k->d;
    y->dmin = k->dmin;
    memcpy(y->scales, k->scales, K_SCALE_SIZE);
    pack_4bit_k(k->L, y->qs);
}

LB_HD static void store_q5_K(const k4_block *k, block_q5_K *y) {
    y->d = k->d;
    y->dmin = k->dmin;
    memcpy(y->scales, k->scales, K_SCALE_SIZE);
    pack_q5_K(k->L, y);
}

LB_HD void quantize_row_q4_K_ref(const float *x, void *vy, int64_t n) {
    block_q4_K *y = (block_q4_K *)vy;
    for (int64_t i = 0; i < n / QK_K; i++) {
        k4_block k;
        k4_encode_ref(x + QK_K * i, &k, 15, -1.f, 20);
        store_q4_K(&k, &y[i]);
    }
}

LB_HD void quantize_row_q5_K_ref(const float *x, void *vy, int64_t n) {
    block_q5_K *y = (block_q5_K *)vy;
    for (int64_t i = 0; i < n / QK_K; i++) {
        k4_block k;
        k4_encode_ref(x + QK_K * i, &k, 31, -0.5f, 15);
        store_q5_K(&k, &y[i]);
    }
}

LB_HD void quantize_q4_K_ref(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (!imatrix) {
        quantize_row_q4_K_ref(x, vy, nrows * n_per_row);
        return;
    }
    block_q4_K *y = (block_q4_K *)vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < n_per_row / QK_K; i++, y++, x += QK_K) {
            k4_block k;
            k4_encode_imatrix(x, &k, 15, imatrix + QK_K * i);
            store_q4_K(&k, y);
        }
}

LB_HD void quantize_q5_K_ref(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (!imatrix) {
        quantize_row_q5_K_ref(x, vy, nrows * n_per_row);
        return;
    }
    block_q5_K *y = (block_q5_K *)vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < n_per_row / QK_K; i++, y++, x += QK_K) {
            k4_block k;
            k4_encode_imatrix(x, &k, 31, imatrix + QK_K * i);
            store_q5_K(&k, y);
        }
}

/* one q4_K/q5_K super-block against q8_K: d·Σ sc_j·(Σ q·q8) − dmin·Σ m_j·(bsums of sub-block j) */
LB_HD static float dot_k4_block(uint16_t dh, uint16_t mh, const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                          const block_q8_K *y) {
    int isum = 0, summs = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        int isub = 0;
        for (int e = 32 * j; e < 32 * j + 32; ++e) isub += y->qs[e] * k4_code(qs, qh, e);
        isum += sc * isub;
        summs += m * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    return h2f(dh) * y->d * isum - h2f(mh) * y->d * summs;
}

LB_HD void vec_dot_q4_K_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = (const block_q4_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) sumf += dot_k4_block(x[i].d, x[i].dmin, x[i].scales, x[i].qs, NULL, &y[i]);
    *s = sumf;
}

LB_HD void vec_dot_q5_K_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = (const block_q5_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) sumf += dot_k4_block(x[i].d, x[i].dmin, x[i].scales, x[i].qs, x[i].qh, &y[i]);
    *s = sumf;
}

/* ---------------------------------------------------------------- q6_K */

LB_HD static inline int q6_code(const block_q6_K *b, int e) {
    const int h = e / 128, r = e % 128, l = r % 32, k = r / 32;
    const uint8_t ql = b->ql[64 * h + (k & 1) * 32 + l];
    const int low = k < 2 ? ql & 0xF : ql >> 4;
    return (low | (((b->qh[32 * h + l] >> (2 * k)) & 3) << 4)) - 32;
}

LB_HD void dequantize_row_q6_K_ref(const void *vx, float *y, int64_t n) {
    const block_q6_K *x = (const block_q6_K *)vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d);
        for (int e = 0; e < QK_K; ++e) y[QK_K * i + e] = d * x[i].scales[e / 16] * q6_code(&x[i], e);
    }
}

/* one q6_K super-block; qw = importance weights or NULL (x² weights; ggml q6_K_ref / q6_K_impl) */
LB_HD static void quantize_block_q6_K(const float *x, block_q6_K *y, const float *qw) {
    int8_t L[QK_K];
    float scales[QK_K / 16], max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : NULL);
        if (fabsf(scales[ib]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        y->d = f2h(0.f);
        return;
    }
    float iscale = -128.f / max_scale;
    y->d = f2h(1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        int l = nearest_int(iscale * scales[ib]);
        y->scales[ib] = (int8_t)(l < 127 ? l : 127);
    }
    for (int j = 0; j < QK_K / 16; ++j) {
        float d = h2f(y->d) * y->scales[j];
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = (int8_t)(clampi(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    pack_q6_K((const uint8_t *)L, y);
}

LB_HD void quantize_row_q6_K_ref(const float *x, void *vy, int64_t n) {
    block_q6_K *y = (block_q6_K *)vy;
    for (int64_t i = 0; i < n / QK_K; i++) quantize_block_q6_K(x + QK_K * i, &y[i], NULL);
}

LB_HD void quantize_q6_K_ref(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (!imatrix) {
        quantize_row_q6_K_ref(x, vy, nrows * n_per_row);
        return;
    }
    block_q6_K *y = (block_q6_K *)vy;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < n_per_row / QK_K; i++, y++, x += QK_K) quantize_block_q6_K(x, y, imatrix + QK_K * i);
}

LB_HD void vec_dot_q6_K_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = (const block_q6_K *)vx;
    const block_q8_K *y = (const block_q8_K *)vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int isum = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            int isub = 0;
            for (int e = 16 * j; e < 16 * j + 16; ++e) isub += y[i].qs[e] * q6_code(&x[i], e);
            isum += x[i].scales[j] * isub;
        }
        sumf += h2f(x[i].d) * y[i].d * isum;
    }
    *s = sumf;
}

/* ---------------------------------------------------------------- q8_K */

LB_HD void dequantize_row_q8_K_ref(const void *vx, float *y, int64_t n) {
    const block_q8_K *x = (const block_q8_K *)vx;
    for (int64_t i = 0; i < n / QK_K; i++)
        for (int e = 0; e < QK_K; ++e) y[QK_K * i + e] = x[i].d * x[i].qs[e];
}

/* d = max/−127 of the signed value with the largest |x|, q = min(127, round(x/d)); bsums per 16 */
LB_HD void quantize_row_q8_K_ref(const float *x, void *vy, int64_t n) {
    block_q8_K *y = (block_q8_K *)vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; ++j) {
            float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        memset(y[i].bsums, 0, sizeof y[i].bsums);
        if (!amax) {
            y[i].d = 0;
            memset(y[i].qs, 0, QK_K);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; ++j) {
            int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[16 * j + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

LB_HD void quantize_q8_K_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    (void)imatrix;
    quantize_row_q8_K_ref(x, y, nrows * n_per_row);
}
