/*
 * iq4.c - reference kernels of ggml's non-linear 4-bit formats IQ4_NL (32-element blocks, one fp16
 * scale) and IQ4_XS (256-element super-blocks, fp16 scale plus eight 6-bit sub-block scales), both
 * over the 16-entry codebook kvalues_iq4nl: dequantization, quantization with and without an
 * importance matrix, and the dot products against Q8_0 (IQ4_NL) and Q8_K (IQ4_XS).
 *
 * Source: the format facts of docs/formats.md 2.2/2.3/2.6 and the algorithm of ggml's
 * quantize_row_iq4_nl_impl (llama.cpp c392e5094dea), checked bit for bit against tests/golden/ggml.
 *
 * The encoder, per 32-element block: weights w = x^2 (or qw*sqrt(sigma2 + x^2) with an importance
 * matrix, sigma2 = 2*mean(x^2) over the super-block); a first scale d = max/-127 (ntry > 0) or
 * max/127, codes by nearest codebook entry and the weighted least-squares scale; then, for
 * itry = -ntry..ntry, trial inverse scales (itry - 127)/max, keeping the best weighted fit. IQ4_XS then
 * quantizes the eight block scales to 6 bits against d = -max_scale/32 and re-picks every code.
 * ggml's from_float_ref for IQ4_NL uses ntry = -1 (no search); its quantize_iq4_nl (llama-quantize)
 * and everything IQ4_XS use ntry = 7.
 *
 * Departures from ggml, all outside finite, non-degenerate input:
 * - ggml leaves the codes of an all-zero IQ4_NL block (max |x| < 1e-15) unset in its ntry = -1 path,
 *   so they are stack leftovers; here they are 0 (what later ggml versions write). d = 0 either way.
 * - ggml computes the first least-squares scale as sumqx/sumq2 unguarded (NaN when every weight is 0,
 *   e.g. an all-zero importance-matrix slice); here it is 0 then, as in later ggml versions.
 */
#include "../../core/core.h"
#include "../blocks.h"
#include "ref.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define QB 32                /* elements per IQ4 block / IQ4_XS sub-block */
#define NSUB (QK_K / QB)     /* sub-blocks per IQ4_XS super-block */
#define GROUP_MAX_EPS 1e-15f /* below this max |x| a block counts as all zero */
#define NTRY_SEARCH 7        /* ggml's scale search width for quantize_iq4_nl / iq4_xs */

static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* Index of the codebook entry nearest to x (upper one on exact ties), by bisection as ggml does. */
static int best_index(float x) {
    const int8_t *val = kvalues_iq4nl;
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < val[mid]) hi = mid;
        else lo = mid;
    }
    return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

/* Weighted sums sum w*q*x and sum w*q^2 of the nearest codes at inverse scale id (codes to L if given). */
static void fit_trial(const float *x, const float *w, float id, uint8_t *L, float *sumqx, float *sumq2) {
    float sqx = 0, sq2 = 0;
    for (int j = 0; j < QB; j++) {
        const int l = best_index(id * x[j]);
        if (L) L[j] = (uint8_t)l;
        const float q = kvalues_iq4nl[l];
        sqx += w[j] * q * x[j];
        sq2 += w[j] * q * q;
    }
    *sumqx = sqx;
    *sumq2 = sq2;
}

/* Best scale of one 32-element block (codes of the first trial to L); 0 for an all-zero block. */
static float block_scale(const float *x, const float *w, int ntry, uint8_t L[QB]) {
    float amax = 0, max = 0;
    for (int j = 0; j < QB; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, QB);
        return 0;
    }
    const float v0 = kvalues_iq4nl[0];
    float sumqx, sumq2;
    fit_trial(x, w, 1 / (ntry > 0 ? -max / v0 : max / v0), L, &sumqx, &sumq2);
    float d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
        fit_trial(x, w, (float)(itry + kvalues_iq4nl[0]) / max, NULL, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

static void block_weights(const float *x, const float *qw, float sigma2, float w[QB]) {
    for (int j = 0; j < QB; j++) w[j] = qw ? qw[j] * sqrtf(sigma2 + x[j] * x[j]) : x[j] * x[j];
}

/* sigma2 = 2*mean(x^2) over n elements (the super-block for IQ4_XS, the block for IQ4_NL). */
static float sigma2_of(const float *x, int n) {
    float s = 0;
    for (int j = 0; j < n; j++) s += x[j] * x[j];
    return s * (2.f / (float)n);
}

static void pack_nibbles(uint8_t qs[QB / 2], const uint8_t L[QB]) {
    for (int j = 0; j < QB / 2; j++) qs[j] = (uint8_t)(L[j] | (L[j + QB / 2] << 4));
}

static void codes_at(const float *x, float id, uint8_t L[QB]) {
    for (int j = 0; j < QB; j++) L[j] = (uint8_t)best_index(id * x[j]);
}

/* One IQ4_NL block (qw: its 32 importance values or NULL). */
static void encode_iq4_nl(const float *x, block_iq4_nl *y, const float *qw, int ntry) {
    float w[QB];
    uint8_t L[QB];
    block_weights(x, qw, sigma2_of(x, QB), w);
    const float d = block_scale(x, w, ntry, L);
    y->d = lb_f32_to_fp16(d);
    if (ntry > 0) codes_at(x, d ? 1 / d : 0, L);
    pack_nibbles(y->qs, L);
}

/* One IQ4_XS super-block (qw: its 256 importance values or NULL); always ntry = 7 in ggml. */
static void encode_iq4_xs(const float *x, block_iq4_xs *y, const float *qw, int ntry) {
    const float sigma2 = sigma2_of(x, QK_K);
    float scales[NSUB], w[QB], max_scale = 0, amax_scale = 0;
    uint8_t L[QB];
    for (int ib = 0; ib < NSUB; ib++) {
        block_weights(x + ib * QB, qw ? qw + ib * QB : NULL, sigma2, w);
        scales[ib] = block_scale(x + ib * QB, w, ntry, L);
        if (fabsf(scales[ib]) > amax_scale) {
            amax_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    const float d = -max_scale / 32;
    const float id = d ? 1 / d : 0.f;
    uint16_t scales_h = 0;
    y->d = lb_f32_to_fp16(d);
    for (int ib = 0; ib < NSUB; ib++) {
        int l = nearest_int(id * scales[ib]);
        l = l < -32 ? -32 : l > 31 ? 31 : l;
        const float dl = d * (float)l;
        codes_at(x + ib * QB, dl ? 1 / dl : 0.f, L);
        pack_nibbles(y->qs + ib * (QB / 2), L);
        l += 32;
        if (ib % 2 == 0) y->scales_l[ib / 2] = (uint8_t)(l & 0xF);
        else y->scales_l[ib / 2] |= (uint8_t)((l & 0xF) << 4);
        scales_h |= (uint16_t)((l >> 4) << (2 * ib));
    }
    y->scales_h = scales_h;
}

void quantize_row_iq4_nl_ref(const float *x, void *vy, int64_t n) {
    block_iq4_nl *y = vy;
    for (int64_t i = 0; i < n / QB; i++) encode_iq4_nl(x + i * QB, &y[i], NULL, -1);
}

void quantize_iq4_nl_ref(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    block_iq4_nl *y = vy;
    const int64_t nb = n_per_row / QB;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            encode_iq4_nl(x + r * n_per_row + i * QB, &y[r * nb + i], imatrix ? imatrix + i * QB : NULL, NTRY_SEARCH);
}

void quantize_iq4_xs_ref(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    block_iq4_xs *y = vy;
    const int64_t nb = n_per_row / QK_K;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            encode_iq4_xs(x + r * n_per_row + i * QK_K, &y[r * nb + i], imatrix ? imatrix + i * QK_K : NULL, NTRY_SEARCH);
}

/* ggml's quantize_row_iq4_xs_ref is its chunk quantizer on one row without importance matrix. */
void quantize_row_iq4_xs_ref(const float *x, void *y, int64_t n) { quantize_iq4_xs_ref(x, y, 1, n, NULL); }

/* ---- dequantization ---- */

static void decode_block(const uint8_t qs[QB / 2], float d, float *y) {
    for (int j = 0; j < QB / 2; j++) {
        y[j] = d * kvalues_iq4nl[qs[j] & 0xF];
        y[j + QB / 2] = d * kvalues_iq4nl[qs[j] >> 4];
    }
}

void dequantize_row_iq4_nl_ref(const void *vx, float *y, int64_t n) {
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < n / QB; i++) decode_block(x[i].qs, lb_fp16_to_f32(x[i].d), y + i * QB);
}

/* 6-bit scale of sub-block ib, biased by 32: low 4 bits in scales_l, high 2 bits in scales_h. */
static int xs_scale(const block_iq4_xs *b, int ib) {
    return (((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4)) - 32;
}

void dequantize_row_iq4_xs_ref(const void *vx, float *y, int64_t n) {
    const block_iq4_xs *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = lb_fp16_to_f32(x[i].d);
        for (int ib = 0; ib < NSUB; ib++) decode_block(x[i].qs + ib * (QB / 2), d * (float)xs_scale(&x[i], ib), y + i * QK_K + ib * QB);
    }
}

/* ---- dot products: exact integer sum per 32 elements, then float scaling and accumulation ---- */

static int dot_block(const uint8_t qs[QB / 2], const int8_t *a) {
    int sum = 0;
    for (int j = 0; j < QB / 2; j++) sum += a[j] * kvalues_iq4nl[qs[j] & 0xF] + a[j + QB / 2] * kvalues_iq4nl[qs[j] >> 4];
    return sum;
}

void vec_dot_iq4_nl_q8_0_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QB; i++)
        sumf += lb_fp16_to_f32(x[i].d) * lb_fp16_to_f32(y[i].d) * (float)dot_block(x[i].qs, y[i].qs);
    *s = sumf;
}

/* Q8_K rows are read as bytes: its f32 d sits at offset 0 and the 292-byte blocks need not be aligned. */
void vec_dot_iq4_xs_q8_K_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_xs *x = vx;
    const uint8_t *yb = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK_K; i++, yb += sizeof(block_q8_K)) {
        float dy;
        memcpy(&dy, yb + offsetof(block_q8_K, d), sizeof dy);
        const int8_t *a = (const int8_t *)(yb + offsetof(block_q8_K, qs));
        const float d4d8 = lb_fp16_to_f32(x[i].d) * dy;
        for (int ib = 0; ib < NSUB; ib++)
            sumf += d4d8 * (float)xs_scale(&x[i], ib) * (float)dot_block(x[i].qs + ib * (QB / 2), a + ib * QB);
    }
    *s = sumf;
}
