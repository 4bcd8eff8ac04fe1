/*
 * cpu.h - the CPU kernels behind lb_matmul: one canonical arithmetic, three implementations (scalar
 * reference, AVX2, AVX-512 VNNI) that give identical bits.
 *
 * Quantized weights (every block type of the type table) are multiplied with activations quantized to 8
 * bits per block of the weight's block size (lb_act: d = max|x| / 127, q = round-to-nearest-even(x / d),
 * bsum = sum of q per 16 elements). A row of weights is first unpacked (lb_qrow) into signed int8 codes, an
 * int16 sub-block scale and min multiplier per 16 elements, and per block a float scale d and a float min
 * coefficient dm, so that element e of block b is d * sc[e/16] * q[e] + dm * mn[e/16].
 *
 * The dot product of a row with a token (the canonical order; every implementation follows it exactly):
 *   acc = 0
 *   per block b, with da = the activation block's d:
 *     S = sum over the block's elements e of sc[e/16] * q[e] * a[e]            (exact int32)
 *     acc = fmaf(d[b] * da, (float)S, acc)
 *     if the type has a min term: acc = fmaf(dm[b] * da, (float)M, acc), M = sum_g mn[g] * bsum[g] (exact)
 *   result = acc
 * Integer sums are exact in any order (|S| < 2^31 for every type), so only the float steps above are fixed;
 * (float)S rounds to nearest even. One float accumulator per row and token lets a kernel keep the lanes of
 * a vector on different rows (the interleaved tiles of lb_cpu_kernels.qgemm) or reduce a row's integer
 * lanes once per block.
 *
 * Float weights (F32, F16, BF16; f32 activations): element k goes to partial k mod 8 by fmaf over the
 * first K - K % 8 elements, the partials are reduced by the same tree, then the last K % 8 elements are
 * added one by one with fmaf. The attention helpers follow the orders documented at their reference.
 *
 * Attention and the nonlinearities (every implementation follows these steps exactly):
 *   vdots:   s[p] = the float-weight dot above of q with row p (D elements), p < n.
 *   vdotsq:  the same for nq <= LB_ATT_QMAX queries over the same rows (each score the same bits as vdots).
 *   vwsum:   o[i] = 0, then o[i] = fmaf(w[p], m[p][i], o[i]) for p = 0, 1, ..., n - 1 in order.
 *   vwsumq:  the same for nq queries, query j over its own n[j] rows (each output the same bits as vwsum).
 *   vdots_h, vwsum_h, vdotsq_h, vwsumq_h: the same four over rows of F16 values (an F16 KV cache), each element
 *            converted to float exactly first: the same bits as the F32 helpers on the converted rows.
 *   softmax: v_p = s_p * scale (float), mx = the largest v_p (NaN ignored; -inf if none), e_p = lb_expf(v_p -
 *            mx), sum = the e_p in 8 double partials (e_p goes to partial p mod 8, added in order of p,
 *            partials start at +0), reduced as lb_reduce8 does in double: ((d0 + d4) + (d2 + d6)) + ((d1 + d5)
 *            + (d3 + d7)); then s_p = e_p * (float)(1.0 / sum). If sum is NaN (a NaN or +inf score, or no
 *            finite largest score: all -inf) every s_p is the quiet NaN 0x7fc00000; otherwise every s_p is in
 *            [0, 1]. The same bits for any mx of either sign of zero (lb_expf(+-0) = 1).
 *   swiglu:  g_i = g_i / (1.0f + lb_expf(-g_i)) * u_i (float division and product, in this order).
 *   vexp:    y_i = lb_expf(x_i).
 * NaN results of vdots, vwsum and swiglu are NaN, with unspecified sign and payload bits.
 */
#ifndef LB_QUANT_CPU_H
#define LB_QUANT_CPU_H

#include "../quant.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* One unpacked row of K weights of a block type with be elements per block (pointers into a buffer). */
typedef struct lb_qrow {
    int8_t *q;   /* (K) signed codes */
    int16_t *sc; /* (K / 16) scale multiplier */
    int16_t *mn; /* (K / 16) min multiplier */
    float *d;    /* (K / be) block scale */
    float *dm;   /* (K / be) min coefficient (0 for types without one) */
} lb_qrow;

/* One token's activations quantized in blocks of be elements. */
typedef struct lb_act {
    int8_t *q;     /* (K) */
    int16_t *bsum; /* (K / 16) */
    float *d;      /* (K / be) */
    int32_t *off;  /* (K / 32) -128 * the sum of the 32 codes: a unit-scale tile's offset correction (lb_qtile) */
} lb_act;

/* Bytes of one lb_qrow / lb_act for K elements (a multiple of be), including alignment padding. */
size_t lb_qrow_bytes(int64_t K, int64_t be);
size_t lb_act_bytes(int64_t K, int64_t be);
#define LB_ALIGN64(n) (((size_t)(n) + 63) & ~(size_t)63)

/* Lay out a row / an activation in buf (64-byte aligned, lb_qrow_bytes / lb_act_bytes long). */
/*
 * Software prefetch for the one-token products, which read a group of `group` rows (rb bytes apart) side by
 * side: row i's stream continues in row i + group (the next group, or the next task's rows). Prefetches the
 * line LB_GEMV_AHEAD bytes past offset off in that stream. The hardware does not fetch these interleaved
 * streams of short rows ahead on its own (1B q4_k_m decode at one thread 2.7x faster with it).
 */
#define LB_GEMV_AHEAD 2048
static inline void lb_prefetch_stream(const void *row, size_t off, size_t rb, int group) {
    size_t o = off + LB_GEMV_AHEAD;
    __builtin_prefetch((const char *)row + (o < rb ? o : (size_t)(group - 1) * rb + o), 0, 3);
}

/* the same for block b of sz bytes: every line of a block of 64 bytes or more, else about one per line */
static inline void lb_prefetch_block(const void *row, int64_t b, size_t sz, size_t rb, int group) {
    size_t off = (size_t)b * sz;
    if (sz >= 64) {
        for (size_t l = 0; l < sz; l += 64) lb_prefetch_stream(row, off + l, rb, group);
    } else if (off % 64 < sz) {
        lb_prefetch_stream(row, off, rb, group);
    }
}

static inline lb_qrow lb_qrow_at(void *buf, int64_t K, int64_t be) {
    uint8_t *p = (uint8_t *)buf;
    size_t g = LB_ALIGN64((size_t)(K / 16) * 2), f = LB_ALIGN64((size_t)(K / be) * 4);
    lb_qrow r = {(int8_t *)p, (int16_t *)(p + LB_ALIGN64(K)), (int16_t *)(p + LB_ALIGN64(K) + g),
                 (float *)(p + LB_ALIGN64(K) + 2 * g), (float *)(p + LB_ALIGN64(K) + 2 * g + f)};
    return r;
}

static inline lb_act lb_act_at(void *buf, int64_t K, int64_t be) {
    uint8_t *p = (uint8_t *)buf;
    size_t g = LB_ALIGN64((size_t)(K / 16) * 2), f = LB_ALIGN64((size_t)(K / be) * 4);
    lb_act a = {(int8_t *)p, (int16_t *)(p + LB_ALIGN64(K)), (float *)(p + LB_ALIGN64(K) + g),
                (int32_t *)(p + LB_ALIGN64(K) + g + f)};
    return a;
}

/* an lb_act's off from its bsum (every activation quantizer's last step) */
static inline void lb_act_fill_off(const lb_act *a, int64_t K) {
    for (int64_t g = 0; g < K / 32; g++) a->off[g] = -128 * ((int32_t)a->bsum[2 * g] + (int32_t)a->bsum[2 * g + 1]);
}

/* Quantize K floats to an lb_act (the scalar specification; lb_cpu_kernels.actq gives the same bytes). */
void lb_act_quantize(const float *x, int64_t K, int64_t be, const lb_act *a);

/* Whether type t's unpacked rows carry a min term (q4_1, q5_1, q2_K, q4_K, q5_K); exactly these have
 * non-negative codes. */
bool lb_qtype_has_min(lb_type t);

typedef void (*lb_unpack_fn)(const void *row, int64_t K, const lb_qrow *out);
/* out[r] = dot of packed row r (rows + r * row_bytes) with one token, r < R */
typedef void (*lb_gemvr_fn)(const uint8_t *rows, size_t row_bytes, int R, int64_t K, const lb_act *a, float *out);
/* out[t * ldo] = dot(w, a[t]) for t < nt (nt <= 4), K elements in blocks of be. */
typedef void (*lb_qdot_fn)(const lb_qrow *w, const lb_act *a, int nt, int64_t K, int64_t be, bool has_min, float *out,
                           int64_t ldo);
/* out[t * ldo + r] = dot(x[t], wt[r]) for t < T, r < R, f32 rows of K (the float-weight order above). */
typedef void (*lb_ftile_fn)(const float *x, int64_t T, int64_t K, const float *wt, int R, float *out, int64_t ldo);
/* R rows of an F16 / BF16 / F32 weight from row r0 to f32 (exact). */
typedef void (*lb_fconv_fn)(const lb_weight *w, int64_t r0, int R, float *dst);
/* out[t * ldo + r] = dot(x[t], row r0 + r of w) for t < T, r < R <= 16, f32 / f16 / bf16 weights (the float
 * order above); slot: lb_fgemm_slot_bytes(K) bytes, 64-byte aligned. */
typedef void (*lb_fgemm_fn)(const lb_weight *w, int64_t r0, int R, const float *x, int64_t T, float *out, int64_t ldo,
                            void *slot);
#define LB_FGEMM_MIN_T 4 /* tokens from which the products of float weights go through fgemm (lb_matmul, lb_mm_tile) */
#define lb_fgemm_slot_bytes(K) ((size_t)16 * (size_t)(K) * sizeof(float) + 64 * 16)
/* out[r] = dot(x, row r0 + r of w) for r < R, one token, f32 / f16 / bf16 weights read in place */
typedef void (*lb_fgemv_fn)(const lb_weight *w, int64_t r0, int R, const float *x, float *out);
typedef void (*lb_actq_fn)(const float *x, int64_t K, int64_t be, const lb_act *a);
typedef void (*lb_vdots_fn)(const float *q, const float *m, int64_t stride, int64_t n, int64_t D, float *s);
typedef void (*lb_vwsum_fn)(const float *w, const float *m, int64_t stride, int64_t n, int64_t D, float *o);
/* Queries per call of the several-query attention kernels. */
#define LB_ATT_QMAX 8
/* s[j * lds + p] = vdots of q + j * ldq with row p, for j < nq <= LB_ATT_QMAX and p < n */
typedef void (*lb_vdotsq_fn)(const float *q, int64_t ldq, int nq, const float *m, int64_t stride, int64_t n, int64_t D,
                             float *s, int64_t lds);
/* o + j * ldo = vwsum of weights w + j * ldw over rows p < n[j], for j < nq <= LB_ATT_QMAX */
typedef void (*lb_vwsumq_fn)(const float *w, int64_t ldw, int nq, const int64_t *n, const float *m, int64_t stride,
                             int64_t D, float *o, int64_t ldo);
/* the same four over rows of F16 values (uint16_t bit patterns) */
typedef void (*lb_vdots_h_fn)(const float *q, const uint16_t *m, int64_t stride, int64_t n, int64_t D, float *s);
typedef void (*lb_vwsum_h_fn)(const float *w, const uint16_t *m, int64_t stride, int64_t n, int64_t D, float *o);
typedef void (*lb_vdotsq_h_fn)(const float *q, int64_t ldq, int nq, const uint16_t *m, int64_t stride, int64_t n, int64_t D,
                               float *s, int64_t lds);
typedef void (*lb_vwsumq_h_fn)(const float *w, int64_t ldw, int nq, const int64_t *n, const uint16_t *m, int64_t stride,
                               int64_t D, float *o, int64_t ldo);
/* s (n floats) = softmax(s * scale) in place, the order above */
typedef void (*lb_softmax_fn)(float *s, int64_t n, float scale);
/* g = silu(g) * u, the order above, over `rows` rows of n floats ld apart (g + r * ld, u + r * ld) */
typedef void (*lb_swiglu_fn)(float *g, const float *u, int64_t n, int64_t rows, int64_t ld);
/* y[i] = lb_expf(x[i]), i < n */
typedef void (*lb_vexp_fn)(const float *x, int64_t n, float *y);

/*
 * An interleaved tile of LB_QTILE_ROWS unpacked rows for the many-token product (qgemm): the codes of the 16
 * rows stored 4 elements at a time, so that one 64-byte vector holds elements 4s..4s+3 of every row and a
 * vector lane is a row. Codes are stored unsigned: q for the types with a min term (q >= 0), q + 128 for the
 * others, whose products then lose 128 * sum_g sc[g] * bsum[g] (gsc holds -128 * sc, |sc| <= 128 for every
 * such type, so that the correction is one vpdpwssd into the block's sum; the 32-element types' scales are
 * all 1, so theirs is the same in every row, the activation's off). Rows past R are zero.
 */
#define LB_QTILE_ROWS 16
typedef struct lb_qtile {
    uint8_t *u;   /* (K / 4, 16 rows, 4) codes */
    int32_t *sc;  /* (K / sg, 16) scale of each sg-element group (256-element types) */
    int32_t *gsc; /* (K / 32, 16) int16 pairs (-128 sc[2p], -128 sc[2p + 1]): the offset's correction */
    int32_t *gmn; /* (K / 32, 16) int16 pairs (mn[2p], mn[2p + 1]): the min term */
    float *d;     /* (K / be, 16) */
    float *dm;    /* (K / be, 16) */
    int sg;       /* elements per scale group: 16 or 32 (256-element types), be for 32-element types */
    bool has_min;
    lb_type type; /* the weights' type (its code range bounds the kernels' integer partial sums) */
} lb_qtile;

size_t lb_qtile_bytes(int64_t K, int64_t be);
/* Unpack R <= 16 rows (row_bytes apart) of type t with unpack into a tile laid out in buf (lb_qtile_bytes,
 * 64-byte aligned); tmp: lb_qrow_bytes(K, be) bytes, 64-byte aligned. */
lb_qtile lb_qtile_pack(lb_type t, lb_unpack_fn unpack, const uint8_t *rows, size_t row_bytes, int R, int64_t K, void *buf,
                       void *tmp);
/* out[t * ldo + r] = dot(row r of the tile, token t) for t < T, r < R (the order above); token t's lb_act is
 * laid out at act + t * act_stride. */
typedef void (*lb_qgemm_fn)(const lb_qtile *w, int R, const uint8_t *act, size_t act_stride, int64_t T, int64_t K,
                            int64_t be, float *out, int64_t ldo);

/*
 * The step search of ggml's make_qkx2_quants / make_qkx3_quants (ref/kquants.c, the affine sub-block fit of
 * q2_K, q4_K and q5_K): for is = 0..nstep in order, iscale = (rmin + rdelta·is + nmax) / (max − min) with
 * the best min so far, codes l_i = round(iscale·(x_i − min)) limited to [0, nmax], the weighted
 * least-squares scale and min of those codes, and their error (Σ w·|diff| or Σ w·diff², in element order);
 * a strictly smaller error replaces L, *scale, *min and *best_error. Every float operation is the
 * reference's (lb_qkx_steps_ref): a fast kernel evaluates several steps at once, one per vector lane, and
 * after a step that improves restarts from the next one with the new min, so it gives the same bits.
 */
#define LB_QKX_MAX_N 32
typedef struct lb_qkx_search {
    int n, nmax, nstep, use_mad, qkx3; /* n <= LB_QKX_MAX_N elements */
    float rmin, rdelta, max, sum_w, sum_x;
} lb_qkx_search;
typedef void (*lb_qkx_fn)(const lb_qkx_search *s, const float *x, const float *w, uint8_t *L, float *scale, float *min,
                          float *best_error);
void lb_qkx_steps_ref(const lb_qkx_search *s, const float *x, const float *w, uint8_t *L, float *scale, float *min,
                      float *best_error);

typedef struct lb_cpu_kernels {
    const char *name; /* "ref", "avx2", "avx512vnni" */
    lb_unpack_fn unpack[LB_TYPE_COUNT]; /* NULL for types that are not quantized weight types */
    lb_gemvr_fn gemvr[LB_TYPE_COUNT];   /* fused one-token product over several rows, where a type has one (else NULL) */
    lb_qdot_fn qdot;
    lb_qgemm_fn qgemm; /* many tokens against an interleaved tile, or NULL (then unpack + qdot) */
    lb_actq_fn actq; /* lb_act_quantize */
    lb_ftile_fn ftile;
    lb_fgemm_fn fgemm; /* many tokens against 16 float rows, or NULL (then fconv + ftile) */
    lb_fgemv_fn fgemv; /* one token against float rows, or NULL (then fconv + ftile) */
    lb_fconv_fn fconv;
    lb_vdots_fn vdots;
    lb_vwsum_fn vwsum;
    lb_vdotsq_fn vdotsq;
    lb_vwsumq_fn vwsumq;
    lb_vdots_h_fn vdots_h;
    lb_vwsum_h_fn vwsum_h;
    lb_vdotsq_h_fn vdotsq_h;
    lb_vwsumq_h_fn vwsumq_h;
    lb_softmax_fn softmax;
    lb_swiglu_fn swiglu;
    lb_vexp_fn vexp;
    lb_qkx_fn qkx;
} lb_cpu_kernels;

/* The implementations; avx2 / avx512vnni return NULL when the CPU lacks the features they need. */
const lb_cpu_kernels *lb_cpu_kernels_ref(void);
const lb_cpu_kernels *lb_cpu_kernels_avx2(void);
const lb_cpu_kernels *lb_cpu_kernels_avx512vnni(void);
/* The best for this CPU, chosen once: the reference under LB_FORCE_REF=1, at most AVX2 under LB_KERNELS=avx2. */
const lb_cpu_kernels *lb_cpu_kernels_best(void);

/*
 * GPTQ's element loops (algo/gptq.c); each implementation rounds every product and every difference to float
 * in this order (no fused multiply-add), so all give the same bits:
 *   axpy:         y[i] = y[i] - a * x[i], i < n
 *   update_chunk: for k = 0..nb-1 in order, t[i] = t[i] - er[k] * U[k ld + i], i < w <= LB_GPTQ_CHUNK
 *   quad:         acc[k] = sum over l < n, in order, of (double)ht[l ld + k] * d[l], k < n <= 32 (products
 *                 exact in double)
 */
#define LB_GPTQ_CHUNK 32
typedef struct lb_gptq_kernels {
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    void (*update_chunk)(float *t, const float *er, int64_t nb, const float *U, int64_t ld, int64_t w);
    void (*quad)(const float *ht, int64_t ld, const float *d, int n, double *acc);
} lb_gptq_kernels;
/* impl 0 the scalar reference, 1 AVX2, 2 AVX-512 (NULL where the CPU lacks it); _best: the reference under
 * LB_FORCE_REF=1, else the vector width of lb_cpu_kernels_best() */
const lb_gptq_kernels *lb_gptq_kernels_impl(int impl);
const lb_gptq_kernels *lb_gptq_kernels_best(void);

/* The canonical reduction of 8 partials. */
LB_HD static inline float lb_reduce8(const float *a) {
    float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
    return (s0 + s2) + (s1 + s3);
}
/* The same tree in double (softmax's sum of exponentials). */
LB_HD static inline double lb_reduce8d(const double *d) {
    return ((d[0] + d[4]) + (d[2] + d[6])) + ((d[1] + d[5]) + (d[3] + d[7]));
}

/*
 * lb_expf: the exponential every implementation computes (softmax, SwiGLU), specified in IEEE basic operations
 * that vector instructions reproduce exactly (fmaf, float add / sub / mul, min / max, integer exponent bits):
 *   NaN: x + x (the input, quieted).
 *   xc = x clamped to [LB_EXP_LO, LB_EXP_HI] by (x > LO ? x : LO), then (xc < HI ? xc : HI).
 *   kf = fmaf(xc, log2(e), 1.5 * 2^23) - 1.5 * 2^23         (round to nearest even of xc * log2(e); |k| <= 150)
 *   r = fmaf(-kf, ln2_hi, xc); r = fmaf(-kf, ln2_lo, r)     (Cody-Waite: ln2_hi has 9 significant bits)
 *   p = c5; p = fmaf(p, r, c_i) for c4 .. c1 (c1 = 1/2), then p = fmaf(p, r, 1), p = fmaf(p, r, 1)   (Horner)
 *   k1 = floor(k / 2), k2 = k - k1; result = (p * 2^k1) * 2^k2  (the first product exact, the second rounds
 *   once, so results below 2^-126 are correctly rounded denormals and results past FLT_MAX are +inf).
 * So x <= -103.972... gives +0 (-inf too), x >= 88.7228... gives +inf (+inf too), lb_expf(+-0) = 1.
 * Error against exp in double precision: at most 0.878 ulp (at x = -59.95...) over every float in [-110, 90]
 * (an exhaustive check), denormal results included (ulp 2^-149); tests/unit/test_kernels.c samples it.
 * Independent of the rounding mode only in round-to-nearest, the mode lowbit runs in; FTZ / DAZ modes are
 * not used.
 */
#define LB_EXP_LO (-104.0f)
#define LB_EXP_HI 89.0f
#define LB_EXP_LOG2E 1.44269502f /* 0x3fb8aa3b */
#define LB_EXP_MAGIC 12582912.0f /* 1.5 * 2^23 */
#define LB_EXP_LN2HI 0.693359375f
#define LB_EXP_LN2LO (-2.12194440e-4f)
#define LB_EXP_C5 0.000198527617612853646278381f
#define LB_EXP_C4 0.00139304355252534151077271f
#define LB_EXP_C3 0.00833336077630519866943359f
#define LB_EXP_C2 0.0416664853692054748535156f
#define LB_EXP_C1 0.166666671633720397949219f
#define LB_EXP_C0 0.5f

LB_HD static inline float lb_f32_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

LB_HD static inline float lb_expf(float x) {
    if (x != x) return x + x;
    float xc = x > LB_EXP_LO ? x : LB_EXP_LO;
    xc = xc < LB_EXP_HI ? xc : LB_EXP_HI;
    float kf = fmaf(xc, LB_EXP_LOG2E, LB_EXP_MAGIC) - LB_EXP_MAGIC;
    float r = fmaf(-kf, LB_EXP_LN2HI, xc);
    r = fmaf(-kf, LB_EXP_LN2LO, r);
    float p = LB_EXP_C5;
    p = fmaf(p, r, LB_EXP_C4);
    p = fmaf(p, r, LB_EXP_C3);
    p = fmaf(p, r, LB_EXP_C2);
    p = fmaf(p, r, LB_EXP_C1);
    p = fmaf(p, r, LB_EXP_C0);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t k = (int32_t)kf, k1 = (k + 256) / 2 - 128, k2 = k - k1; /* k1 = floor(k / 2) */
    return (p * lb_f32_bits((uint32_t)(k1 + 127) << 23)) * lb_f32_bits((uint32_t)(k2 + 127) << 23);
}

/* SwiGLU of one element, the order cpu.h's swiglu specifies: g / (1 + lb_expf(-g)) * u */
LB_HD static inline float lb_swiglu1(float g, float u) { return g / (1.0f + lb_expf(-g)) * u; }

/* RMSNorm's scale of a row of n (model/forward.c): the squares summed in double in element order, then
 * r = (float)(1 / sqrt(mean + eps)); out = w * (x * r). An exact context's kernel on a GPU (cuda/exact.cu) calls the same. */
LB_HD static inline float lb_rms_scale(const float *x, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    return (float)(1.0 / sqrt(ss / (double)n + (double)eps));
}

/* The canonical quiet NaN of softmax rows without a finite result. */
#define LB_NAN_BITS 0x7fc00000u

#endif
