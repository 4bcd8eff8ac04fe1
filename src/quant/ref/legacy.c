/*
 * legacy.c - reference kernels of ggml's legacy 32-element block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
 * and of the activation type Q8_1: dequantization, the reference quantizers (ggml's
 * quantize_row_<t>_ref), the chunk quantizers with and without an importance matrix (ggml's
 * quantize_<t>, i.e. what ggml_quantize_chunk and llama-quantize write), and the dot products against
 * Q8_0 / Q8_1 (integer sums per block, as ggml's scalar vec_dot).
 *
 * Source: the format facts and algorithm descriptions of docs/formats.md sections 2.2 and 2.6, checked
 * bit for bit against tests/golden/ggml (ggml of llama.cpp c392e5094dea). Every float expression keeps
 * ggml's evaluation order, because the encoders must reproduce its bytes exactly.
 *
 * Non-finite or absurd inputs: ggml converts floats to int8 with C casts, which is undefined behaviour
 * for NaN or out-of-range values. Here such conversions go through cvt_trunc(), which is well defined
 * and returns what the x86 instruction ggml's casts compile to returns (INT_MIN, the "integer
 * indefinite" value, for NaN and values outside int32), then narrows modulo 256 as gcc does. On finite
 * inputs the result is the plain cast, so the goldens are unaffected.
 */
#include "../../core/core.h"
#include "../blocks.h"
#include "ref.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#define QK 32                /* elements per legacy block */
#define GROUP_MAX_EPS 1e-15f /* below this max |x| a group counts as all zero */

/* Truncating float -> int with x86 cvttss2si semantics, without C's undefined behaviour. */
static inline int cvt_trunc(float v) {
    return (v > -2147483648.0f && v < 2147483648.0f) ? (int)v : INT_MIN;
}

/* Round to nearest, ties to even, by the 1.5*2^23 trick (ggml's nearest_int; valid for |f| < 2^22). */
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* ---- block layouts ---- */

/* Split-half nibbles: element j in the low nibble of qs[j], element j+16 in the high nibble. */
static void pack_q4(uint8_t qs[QK / 2], const uint8_t L[QK]) {
    for (int j = 0; j < QK / 2; j++) qs[j] = (uint8_t)(L[j] | (L[j + QK / 2] << 4));
}

/* 5-bit codes: low nibbles as in pack_q4, bit 4 of element j in bit j of qh (a LE u32). */
static void pack_q5(uint8_t qs[QK / 2], uint8_t qh[4], const uint8_t L[QK]) {
    uint32_t h = 0;
    for (int j = 0; j < QK / 2; j++) {
        qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + QK / 2] & 0x0F) << 4));
        h |= ((L[j] & 0x10u) >> 4) << j;
        h |= ((L[j + QK / 2] & 0x10u) >> 4) << (j + QK / 2);
    }
    memcpy(qh, &h, 4);
}

static void unpack_q4(const uint8_t qs[QK / 2], int q[QK]) {
    for (int j = 0; j < QK / 2; j++) {
        q[j] = qs[j] & 0x0F;
        q[j + QK / 2] = qs[j] >> 4;
    }
}

static void unpack_q5(const uint8_t qs[QK / 2], const uint8_t qh[4], int q[QK]) {
    uint32_t h;
    memcpy(&h, qh, 4);
    unpack_q4(qs, q);
    for (int j = 0; j < QK; j++) q[j] |= (int)((h >> j) & 1) << 4;
}

/* ---- block statistics ---- */

/* The value of largest magnitude (the first one on ties) and that magnitude. */
static float signed_absmax(const float *x, float *amax_out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax_out) *amax_out = amax;
    return max;
}

static void min_max(const float *x, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < QK; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

/* ---- reference quantizers (no importance matrix) ---- */

/* Symmetric codes q in [0, 2*half): the extreme value maps to q = 0, d = max / -half. */
static float encode_sym(const float *x, int half, uint8_t L[QK]) {
    const float d = signed_absmax(x, NULL) / (float)-half;
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK; j++) L[j] = (uint8_t)imin(2 * half - 1, (int8_t)cvt_trunc(x[j] * id + ((float)half + 0.5f)));
    return d;
}

/* Affine codes q in [0, nmax]: d = (max - min) / nmax, m = min. */
static float encode_affine(const float *x, int nmax, uint8_t L[QK], float *m) {
    float mn, mx;
    min_max(x, &mn, &mx);
    const float d = (mx - mn) / (float)nmax;
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK; j++) {
        const float v = (x[j] - mn) * id + 0.5f;
        /* ggml: q4_1 MIN(15, (int8_t)v), q5_1 (uint8_t)v; identical for v in [0, 32) */
        L[j] = nmax == 15 ? (uint8_t)imin(15, (int8_t)cvt_trunc(v)) : (uint8_t)cvt_trunc(v);
    }
    *m = mn;
    return d;
}

void quantize_row_q4_0_ref(const float *x, void *vy, int64_t n) {
    block_q4_0 *y = vy;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++) {
        y[i].d = lb_f32_to_fp16(encode_sym(x + i * QK, 8, L));
        pack_q4(y[i].qs, L);
    }
}

void quantize_row_q5_0_ref(const float *x, void *vy, int64_t n) {
    block_q5_0 *y = vy;
    uint8_t L[QK];
    for (int64_t i = 0; i < n / QK; i++) {
        y[i].d = lb_f32_to_fp16(encode_sym(x + i * QK, 16, L));
        pack_q5(y[i].qs, y[i].qh, L);
    }
}

void quantize_row_q4_1_ref(const float *x, void *vy, int64_t n) {
    block_q4_1 *y = vy;
    uint8_t L[QK];
    float m;
    for (int64_t i = 0; i < n / QK; i++) {
        y[i].d = lb_f32_to_fp16(encode_affine(x + i * QK, 15, L, &m));
        y[i].m = lb_f32_to_fp16(m);
        pack_q4(y[i].qs, L);
    }
}

void quantize_row_q5_1_ref(const float *x, void *vy, int64_t n) {
    block_q5_1 *y = vy;
    uint8_t L[QK];
    float m;
    for (int64_t i = 0; i < n / QK; i++) {
        y[i].d = lb_f32_to_fp16(encode_affine(x + i * QK, 31, L, &m));
        y[i].m = lb_f32_to_fp16(m);
        pack_q5(y[i].qs, y[i].qh, L);
    }
}

/* q = roundf(x / d) with d = amax / 127; returns the float d and the sum of the codes. */
static float encode_q8(const float *x, int8_t qs[QK], int *sum) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    const float d = amax / 127.0f;
    const float id = d ? 1.0f / d : 0.0f;
    int s = 0;
    for (int j = 0; j < QK; j++) {
        qs[j] = (int8_t)cvt_trunc(roundf(x[j] * id));
        s += qs[j];
    }
    *sum = s;
    return d;
}

/*
 * ggml's CPU mul_mat quantizes activations with its SIMD quantize_row_q8_0 / q8_1 (id = 127/amax,
 * round half to even), not with these _ref versions (id = 1/(amax/127), roundf). The two can differ in
 * rare elements; on every activation row of tests/golden/ggml they give identical bytes.
 */
void quantize_row_q8_0_ref(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    int sum;
    for (int64_t i = 0; i < n / QK; i++) y[i].d = lb_f32_to_fp16(encode_q8(x + i * QK, y[i].qs, &sum));
}

/* s = fp16(d * sum(qs)) with the unrounded float d, as ggml stores it. */
void quantize_row_q8_1_ref(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    int sum;
    for (int64_t i = 0; i < n / QK; i++) {
        const float d = encode_q8(x + i * QK, y[i].qs, &sum);
        y[i].d = lb_f32_to_fp16(d);
        y[i].s = lb_f32_to_fp16((float)sum * d);
    }
}

/* ---- importance-weighted quantizers (ggml's quantize_row_<t>_impl) ---- */

/* Weighted sums of one trial: sum w*x*l and sum w*l*l for codes l = clamp(round(iscale*x), -nmax, nmax-1). */
static void qx_trial(const float *x, const float *w, int nmax, float iscale, float *sumlx, float *suml2) {
    float slx = 0, sl2 = 0;
    for (int i = 0; i < QK; i++) {
        const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        slx += w[i] * x[i] * (float)l;
        sl2 += w[i] * (float)l * (float)l;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

static void qx_codes(const float *x, int nmax, float iscale, uint8_t L[QK]) {
    for (int i = 0; i < QK; i++) L[i] = (uint8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
}

/*
 * Symmetric codes L in [0, 2*nmax) for x ~ scale*(L - nmax), maximizing the weighted fit
 * (sum w x l)^2 / (sum w l^2) over iscale = -(nmax + 0.1*is)/max, is = -9..9 (ggml's make_qx_quants,
 * rmse_type 1 with weights). Returns the least-squares scale; an all-zero group gives 0 and L = 0.
 */
static float make_qx_quants(int nmax, const float *x, const float *w, uint8_t L[QK]) {
    float amax = 0, max = 0;
    for (int i = 0; i < QK; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, QK);
        return 0.f;
    }
    float iscale = (float)-nmax / max, sumlx, suml2;
    qx_trial(x, w, nmax, iscale, &sumlx, &suml2);
    qx_codes(x, nmax, iscale, L);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        qx_trial(x, w, nmax, iscale, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            qx_codes(x, nmax, iscale, L);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Affine codes of one trial iscale; the weighted sums of l, l^2 and x*l. */
static void qkx_trial(const float *x, const float *w, int nmax, float iscale, float min, uint8_t Laux[QK],
                      float *sum_l, float *sum_l2, float *sum_xl) {
    float sl = 0, sl2 = 0, sxl = 0;
    for (int i = 0; i < QK; i++) {
        const int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
        Laux[i] = (uint8_t)l;
        sl += w[i] * (float)l;
        sl2 += w[i] * (float)l * (float)l;
        sxl += w[i] * (float)l * x[i];
    }
    *sum_l = sl;
    *sum_l2 = sl2;
    *sum_xl = sxl;
}

static float weighted_sq_error(const float *x, const float *w, const uint8_t L[QK], float scale, float min) {
    float err = 0;
    for (int i = 0; i < QK; i++) {
        const float diff = scale * (float)L[i] + min - x[i];
        err += w[i] * (diff * diff);
    }
    return err;
}

/*
 * Affine codes L in [0, nmax] for x ~ scale*L + min (min <= 0), minimizing the weighted squared error
 * over iscale = (nmax + rmin + rdelta*is)/(max - min), is = 0..nstep, each trial refitting scale and min
 * by weighted least squares (ggml's make_qkx3_quants with use_mad = false). Note: each trial's iscale
 * uses the best min found so far, as ggml does. Returns scale; *neg_min = -min.
 */
static float make_qkx3_quants(int nmax, const float *x, const float *w, uint8_t L[QK], float *neg_min) {
    const float rmin = -0.9f, rdelta = 0.05f;
    const int nstep = 36;
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < QK; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        memset(L, 0, QK);
        *neg_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale;
    for (int i = 0; i < QK; i++) L[i] = (uint8_t)imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
    float best = weighted_sq_error(x, w, L, scale, min);
    uint8_t Laux[QK];
    for (int is = 0; is <= nstep; ++is) {
        float sum_l, sum_l2, sum_xl;
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        qkx_trial(x, w, nmax, iscale, min, Laux, &sum_l, &sum_l2, &sum_xl);
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        const float err = weighted_sq_error(x, w, Laux, this_scale, this_min);
        if (err < best) {
            memcpy(L, Laux, QK);
            best = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *neg_min = -min;
    return scale;
}

/* sigma^2 = mean of x^2 over the whole row: the imatrix paths weight by qw*sqrt(sigma^2 + x^2). */
static float row_sigma2(const float *x, int64_t n_per_row) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n_per_row; ++j) sum_x2 += x[j] * x[j];
    return sum_x2 / (float)n_per_row;
}

static void block_weights(const float *x, const float *qw, float sigma2, float w[QK]) {
    for (int j = 0; j < QK; j++) w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
}

/* The four formats with an importance-matrix path; odd kinds are affine (q = (x - m)/d), 5-bit from Q5_0 on. */
enum imatrix_kind { KIND_Q4_0, KIND_Q4_1, KIND_Q5_0, KIND_Q5_1 };

/* One row with an importance matrix (ggml's quantize_row_<t>_impl). */
static void quantize_row_imatrix(enum imatrix_kind kind, const float *x, uint8_t *y, int64_t n_per_row, const float *qw) {
    static const size_t bytes[4] = {sizeof(block_q4_0), sizeof(block_q4_1), sizeof(block_q5_0), sizeof(block_q5_1)};
    const int bits = kind < KIND_Q5_0 ? 4 : 5;
    const bool affine = kind == KIND_Q4_1 || kind == KIND_Q5_1;
    const float sigma2 = row_sigma2(x, n_per_row);
    float w[QK], neg_min = 0;
    uint8_t L[QK];
    for (int64_t ib = 0; ib < n_per_row / QK; ib++, y += bytes[kind]) {
        const float *xb = x + ib * QK;
        block_weights(xb, qw + ib * QK, sigma2, w);
        const float d = affine ? make_qkx3_quants((1 << bits) - 1, xb, w, L, &neg_min)
                               : make_qx_quants(1 << (bits - 1), xb, w, L);
        const uint16_t hd = lb_f32_to_fp16(d), hm = lb_f32_to_fp16(-neg_min);
        memcpy(y, &hd, 2);
        if (affine) memcpy(y + 2, &hm, 2);
        uint8_t *q = y + (affine ? 4 : 2); /* q4: qs here; q5: qh here, then qs */
        if (bits == 4) pack_q4(q, L);
        else pack_q5(q + 4, q, L);
    }
}

static void quantize_chunk(enum imatrix_kind kind, const float *x, void *vy, int64_t nrows, int64_t n_per_row,
                           const float *imatrix, void (*row_ref)(const float *, void *, int64_t), size_t block_bytes) {
    if (!imatrix) {
        row_ref(x, vy, nrows * n_per_row);
        return;
    }
    uint8_t *y = vy;
    const size_t row_bytes = (size_t)(n_per_row / QK) * block_bytes;
    for (int64_t r = 0; r < nrows; r++) quantize_row_imatrix(kind, x + r * n_per_row, y + (size_t)r * row_bytes, n_per_row, imatrix);
}

void quantize_q4_0_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_chunk(KIND_Q4_0, x, y, nrows, n_per_row, imatrix, quantize_row_q4_0_ref, sizeof(block_q4_0));
}
void quantize_q4_1_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_chunk(KIND_Q4_1, x, y, nrows, n_per_row, imatrix, quantize_row_q4_1_ref, sizeof(block_q4_1));
}
void quantize_q5_0_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_chunk(KIND_Q5_0, x, y, nrows, n_per_row, imatrix, quantize_row_q5_0_ref, sizeof(block_q5_0));
}
void quantize_q5_1_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_chunk(KIND_Q5_1, x, y, nrows, n_per_row, imatrix, quantize_row_q5_1_ref, sizeof(block_q5_1));
}
/* ggml's quantize_q8_0 ignores the importance matrix; q8_1 is not a chunk type in ggml (same rule here). */
void quantize_q8_0_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_row_q8_0_ref(x, y, nrows * n_per_row);
}
void quantize_q8_1_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_row_q8_1_ref(x, y, nrows * n_per_row);
}

/* ---- dequantization ---- */

void dequantize_row_q4_0_ref(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    int q[QK];
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = lb_fp16_to_f32(x[i].d);
        unpack_q4(x[i].qs, q);
        for (int j = 0; j < QK; j++) y[j] = (float)(q[j] - 8) * d;
    }
}

void dequantize_row_q4_1_ref(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    int q[QK];
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = lb_fp16_to_f32(x[i].d), m = lb_fp16_to_f32(x[i].m);
        unpack_q4(x[i].qs, q);
        for (int j = 0; j < QK; j++) y[j] = (float)q[j] * d + m;
    }
}

void dequantize_row_q5_0_ref(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    int q[QK];
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = lb_fp16_to_f32(x[i].d);
        unpack_q5(x[i].qs, x[i].qh, q);
        for (int j = 0; j < QK; j++) y[j] = (float)(q[j] - 16) * d;
    }
}

void dequantize_row_q5_1_ref(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    int q[QK];
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = lb_fp16_to_f32(x[i].d), m = lb_fp16_to_f32(x[i].m);
        unpack_q5(x[i].qs, x[i].qh, q);
        for (int j = 0; j < QK; j++) y[j] = (float)q[j] * d + m;
    }
}

void dequantize_row_q8_0_ref(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = lb_fp16_to_f32(x[i].d);
        for (int j = 0; j < QK; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

/* Not a ggml to_float (ggml has none for Q8_1); the natural decoding y = d*qs. */
void dequantize_row_q8_1_ref(const void *vx, float *y, int64_t n) {
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = lb_fp16_to_f32(x[i].d);
        for (int j = 0; j < QK; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

/* ---- dot products: exact integer sum per block, then float scaling and accumulation ---- */

static int dot_codes(const int q[QK], int offset, const int8_t a[QK]) {
    int sum = 0;
    for (int j = 0; j < QK; j++) sum += (q[j] - offset) * a[j];
    return sum;
}

void vec_dot_q4_0_q8_0_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    int q[QK];
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        unpack_q4(x[i].qs, q);
        sumf += (float)dot_codes(q, 8, y[i].qs) * lb_fp16_to_f32(x[i].d) * lb_fp16_to_f32(y[i].d);
    }
    *s = sumf;
}

void vec_dot_q5_0_q8_0_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    int q[QK];
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        unpack_q5(x[i].qs, x[i].qh, q);
        sumf += (float)dot_codes(q, 16, y[i].qs) * lb_fp16_to_f32(x[i].d) * lb_fp16_to_f32(y[i].d);
    }
    *s = sumf;
}

/* y = q*d + m: sum (q*dx + m)(a*dy) = dx*dy*sum(q*a) + m*s, with s = dy*sum(a) stored in the Q8_1 block. */
void vec_dot_q4_1_q8_1_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    int q[QK];
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        unpack_q4(x[i].qs, q);
        sumf += (lb_fp16_to_f32(x[i].d) * lb_fp16_to_f32(y[i].d)) * (float)dot_codes(q, 0, y[i].qs) +
                lb_fp16_to_f32(x[i].m) * lb_fp16_to_f32(y[i].s);
    }
    *s = sumf;
}

void vec_dot_q5_1_q8_1_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    int q[QK];
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        unpack_q5(x[i].qs, x[i].qh, q);
        sumf += (lb_fp16_to_f32(x[i].d) * lb_fp16_to_f32(y[i].d)) * (float)dot_codes(q, 0, y[i].qs) +
                lb_fp16_to_f32(x[i].m) * lb_fp16_to_f32(y[i].s);
    }
    *s = sumf;
}

void vec_dot_q8_0_q8_0_ref(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float sumf = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        int sum = 0;
        for (int j = 0; j < QK; j++) sum += x[i].qs[j] * y[i].qs[j];
        sumf += (float)sum * (lb_fp16_to_f32(x[i].d) * lb_fp16_to_f32(y[i].d));
    }
    *s = sumf;
}
