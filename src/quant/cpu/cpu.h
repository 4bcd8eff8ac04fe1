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
 */
#ifndef LB_QUANT_CPU_H
#define LB_QUANT_CPU_H

#include "../quant.h"

#include <stdint.h>

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
} lb_act;

/* Bytes of one lb_qrow / lb_act for K elements (a multiple of be), including alignment padding. */
size_t lb_qrow_bytes(int64_t K, int64_t be);
size_t lb_act_bytes(int64_t K, int64_t be);
#define LB_ALIGN64(n) (((size_t)(n) + 63) & ~(size_t)63)

/* Lay out a row / an activation in buf (64-byte aligned, lb_qrow_bytes / lb_act_bytes long). */
static inline lb_qrow lb_qrow_at(void *buf, int64_t K, int64_t be) {
    uint8_t *p = buf;
    size_t g = LB_ALIGN64((size_t)(K / 16) * 2), f = LB_ALIGN64((size_t)(K / be) * 4);
    lb_qrow r = {(int8_t *)p, (int16_t *)(p + LB_ALIGN64(K)), (int16_t *)(p + LB_ALIGN64(K) + g),
                 (float *)(p + LB_ALIGN64(K) + 2 * g), (float *)(p + LB_ALIGN64(K) + 2 * g + f)};
    return r;
}

static inline lb_act lb_act_at(void *buf, int64_t K, int64_t be) {
    uint8_t *p = buf;
    lb_act a = {(int8_t *)p, (int16_t *)(p + LB_ALIGN64(K)), (float *)(p + LB_ALIGN64(K) + LB_ALIGN64((size_t)(K / 16) * 2))};
    return a;
}

/* Quantize K floats to an lb_act (the scalar specification; lb_cpu_kernels.actq gives the same bytes). */
void lb_act_quantize(const float *x, int64_t K, int64_t be, const lb_act *a);

/* Whether type t's unpacked rows carry a min term (q4_1, q5_1, q2_K, q4_K, q5_K); exactly these have
 * non-negative codes. */
bool lb_qtype_has_min(lb_type t);

typedef void (*lb_unpack_fn)(const void *row, int64_t K, const lb_qrow *out);
/* dot of one packed row of K weights with one token (activation blocks of the type's size) */
typedef float (*lb_gemv1_fn)(const void *row, int64_t K, const lb_act *a);
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

/*
 * An interleaved tile of LB_QTILE_ROWS unpacked rows for the many-token product (qgemm): the codes of the 16
 * rows stored 4 elements at a time, so that one 64-byte vector holds elements 4s..4s+3 of every row and a
 * vector lane is a row. Codes are stored unsigned: q for the types with a min term (q >= 0), q + 128 for the
 * others, whose products then lose 128 * sum_g sc[g] * bsum[g] (gsc). Rows past R are zero.
 */
#define LB_QTILE_ROWS 16
typedef struct lb_qtile {
    uint8_t *u;   /* (K / 4, 16 rows, 4) codes */
    int32_t *sc;  /* (K / sg, 16) scale of each sg-element group (256-element types) */
    int32_t *gsc; /* (K / 32, 16) int16 pairs (sc[2p], sc[2p + 1]): the offset's correction */
    int32_t *gmn; /* (K / 32, 16) int16 pairs (mn[2p], mn[2p + 1]): the min term */
    float *d;     /* (K / be, 16) */
    float *dm;    /* (K / be, 16) */
    int sg;       /* elements per scale group: 16 or 32 (256-element types), be for 32-element types */
    bool has_min;
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
    lb_gemv1_fn gemv1[LB_TYPE_COUNT];   /* fused one-token product, where a type has one (else NULL) */
    lb_gemvr_fn gemvr[LB_TYPE_COUNT];   /* the same over several rows at once, where a type has one (else NULL) */
    lb_qdot_fn qdot;
    lb_qgemm_fn qgemm; /* many tokens against an interleaved tile, or NULL (then unpack + qdot) */
    lb_actq_fn actq; /* lb_act_quantize */
    lb_ftile_fn ftile;
    lb_fgemm_fn fgemm; /* many tokens against 16 float rows, or NULL (then fconv + ftile) */
    lb_fgemv_fn fgemv; /* one token against float rows, or NULL (then fconv + ftile) */
    lb_fconv_fn fconv;
    lb_vdots_fn vdots;
    lb_vwsum_fn vwsum;
    lb_qkx_fn qkx;
} lb_cpu_kernels;

/* The implementations; avx2 / avx512vnni return NULL when the CPU lacks the features they need. */
const lb_cpu_kernels *lb_cpu_kernels_ref(void);
const lb_cpu_kernels *lb_cpu_kernels_avx2(void);
const lb_cpu_kernels *lb_cpu_kernels_avx512vnni(void);
/* The best for this CPU, chosen once: the reference under LB_FORCE_REF=1, at most AVX2 under LB_KERNELS=avx2. */
const lb_cpu_kernels *lb_cpu_kernels_best(void);

/* The canonical reduction of 8 partials. */
static inline float lb_reduce8(const float *a) {
    float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
    return (s0 + s2) + (s1 + s3);
}

#endif
