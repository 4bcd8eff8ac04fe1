/*
 * types.c - THE type table: one row per lb_type. Adding a type = its block struct (blocks.h), its
 * reference functions (ref/), one row here; the table-driven tests then cover it.
 */
#include "quant.h"

#include "blocks.h"
#include "ref/ref.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#define ROW(T, nm, be, bb, gid, q, w, vdt, t, f0, f1)                                                      \
    [T] = {nm, be, bb, gid, q, w, vdt, dequantize_row_##t##_ref, quantize_row_##t##_ref, quantize_##t##_ref, NULL, {f0, f1}}
#define F(blk, field) (int)offsetof(blk, field)

static lb_type_traits TYPES[LB_TYPE_COUNT] = {
    ROW(LB_TYPE_F32, "f32", 1, 4, 0, false, true, LB_TYPE_F32, f32, -1, -1),
    ROW(LB_TYPE_F16, "f16", 1, 2, 1, false, true, LB_TYPE_F16, f16, -1, -1),
    ROW(LB_TYPE_BF16, "bf16", 1, 2, 30, false, true, LB_TYPE_BF16, bf16, -1, -1),
    ROW(LB_TYPE_Q4_0, "q4_0", QK4_0, sizeof(block_q4_0), 2, true, true, LB_TYPE_Q8_0, q4_0, F(block_q4_0, d), -1),
    ROW(LB_TYPE_Q4_1, "q4_1", QK4_1, sizeof(block_q4_1), 3, true, true, LB_TYPE_Q8_1, q4_1, F(block_q4_1, d), F(block_q4_1, m)),
    ROW(LB_TYPE_Q5_0, "q5_0", QK5_0, sizeof(block_q5_0), 6, true, true, LB_TYPE_Q8_0, q5_0, F(block_q5_0, d), -1),
    ROW(LB_TYPE_Q5_1, "q5_1", QK5_1, sizeof(block_q5_1), 7, true, true, LB_TYPE_Q8_1, q5_1, F(block_q5_1, d), F(block_q5_1, m)),
    ROW(LB_TYPE_Q8_0, "q8_0", QK8_0, sizeof(block_q8_0), 8, true, true, LB_TYPE_Q8_0, q8_0, F(block_q8_0, d), -1),
    ROW(LB_TYPE_Q8_1, "q8_1", QK8_1, sizeof(block_q8_1), 9, true, false, LB_TYPE_Q8_1, q8_1, -1, -1),
    ROW(LB_TYPE_Q2_K, "q2_k", QK_K, sizeof(block_q2_K), 10, true, true, LB_TYPE_Q8_K, q2_K, F(block_q2_K, d), F(block_q2_K, dmin)),
    ROW(LB_TYPE_Q3_K, "q3_k", QK_K, sizeof(block_q3_K), 11, true, true, LB_TYPE_Q8_K, q3_K, F(block_q3_K, d), -1),
    ROW(LB_TYPE_Q4_K, "q4_k", QK_K, sizeof(block_q4_K), 12, true, true, LB_TYPE_Q8_K, q4_K, F(block_q4_K, d), F(block_q4_K, dmin)),
    ROW(LB_TYPE_Q5_K, "q5_k", QK_K, sizeof(block_q5_K), 13, true, true, LB_TYPE_Q8_K, q5_K, F(block_q5_K, d), F(block_q5_K, dmin)),
    ROW(LB_TYPE_Q6_K, "q6_k", QK_K, sizeof(block_q6_K), 14, true, true, LB_TYPE_Q8_K, q6_K, F(block_q6_K, d), -1),
    ROW(LB_TYPE_Q8_K, "q8_k", QK_K, sizeof(block_q8_K), 15, true, false, LB_TYPE_Q8_K, q8_K, -1, -1),
    ROW(LB_TYPE_IQ4_NL, "iq4_nl", QK4_NL, sizeof(block_iq4_nl), 20, true, true, LB_TYPE_Q8_0, iq4_nl, F(block_iq4_nl, d), -1),
    ROW(LB_TYPE_IQ4_XS, "iq4_xs", QK_K, sizeof(block_iq4_xs), 23, true, true, LB_TYPE_Q8_K, iq4_xs, F(block_iq4_xs, d), -1),
};

/* vec_dot kernels, by weight type (activation types have none) */
static void set_dots(void) {
    TYPES[LB_TYPE_F32].vec_dot_ref = vec_dot_f32_f32_ref;
    TYPES[LB_TYPE_F16].vec_dot_ref = vec_dot_f16_f16_ref;
    TYPES[LB_TYPE_BF16].vec_dot_ref = vec_dot_bf16_bf16_ref;
    TYPES[LB_TYPE_Q4_0].vec_dot_ref = vec_dot_q4_0_q8_0_ref;
    TYPES[LB_TYPE_Q4_1].vec_dot_ref = vec_dot_q4_1_q8_1_ref;
    TYPES[LB_TYPE_Q5_0].vec_dot_ref = vec_dot_q5_0_q8_0_ref;
    TYPES[LB_TYPE_Q5_1].vec_dot_ref = vec_dot_q5_1_q8_1_ref;
    TYPES[LB_TYPE_Q8_0].vec_dot_ref = vec_dot_q8_0_q8_0_ref;
    TYPES[LB_TYPE_Q2_K].vec_dot_ref = vec_dot_q2_K_q8_K_ref;
    TYPES[LB_TYPE_Q3_K].vec_dot_ref = vec_dot_q3_K_q8_K_ref;
    TYPES[LB_TYPE_Q4_K].vec_dot_ref = vec_dot_q4_K_q8_K_ref;
    TYPES[LB_TYPE_Q5_K].vec_dot_ref = vec_dot_q5_K_q8_K_ref;
    TYPES[LB_TYPE_Q6_K].vec_dot_ref = vec_dot_q6_K_q8_K_ref;
    TYPES[LB_TYPE_IQ4_NL].vec_dot_ref = vec_dot_iq4_nl_q8_0_ref;
    TYPES[LB_TYPE_IQ4_XS].vec_dot_ref = vec_dot_iq4_xs_q8_K_ref;
}

static pthread_once_t dots_once = PTHREAD_ONCE_INIT;

const lb_type_traits *lb_type_traits_get(lb_type t) {
    /* once (pthread_once): a thread must never see the table before its kernels are in */
    (void)pthread_once(&dots_once, set_dots);
    return (unsigned)t < LB_TYPE_COUNT ? &TYPES[t] : NULL;
}

const char *lb_type_name(lb_type t) { return (unsigned)t < LB_TYPE_COUNT ? TYPES[t].name : "?"; }

int lb_type_from_name(const char *name) {
    for (int t = 0; t < LB_TYPE_COUNT; t++)
        if (name && strcasecmp(name, TYPES[t].name) == 0) return t;
    return -1;
}

int64_t lb_type_block_elems(lb_type t) { return (unsigned)t < LB_TYPE_COUNT ? TYPES[t].block_elems : 0; }
size_t lb_type_block_bytes(lb_type t) { return (unsigned)t < LB_TYPE_COUNT ? TYPES[t].block_bytes : 0; }
int lb_type_gguf_id(lb_type t) { return (unsigned)t < LB_TYPE_COUNT ? TYPES[t].gguf_id : -1; }

int lb_type_from_gguf_id(int id) {
    for (int t = 0; t < LB_TYPE_COUNT; t++)
        if (TYPES[t].gguf_id == id) return t;
    return -1;
}

size_t lb_type_row_size(lb_type t, int64_t n) {
    if ((unsigned)t >= LB_TYPE_COUNT || n < 0 || n % TYPES[t].block_elems) return 0;
    return (size_t)(n / TYPES[t].block_elems) * TYPES[t].block_bytes;
}

float lb_weight_get(const lb_weight *w, int64_t r, int64_t i) {
    const lb_type_traits *tt = lb_type_traits_get(w->type);
    int64_t be = tt->block_elems, b = i / be;
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * lb_weight_row_bytes(w);
    float buf[QK_K];
    tt->to_float(row + (size_t)b * tt->block_bytes, buf, be);
    return buf[i - b * be];
}

void lb_weight_row_f32(const lb_weight *w, int64_t r, float *out) {
    const lb_type_traits *tt = lb_type_traits_get(w->type);
    tt->to_float((const uint8_t *)w->data + (size_t)r * lb_weight_row_bytes(w), out, w->cols);
}

/* whether a row's raw values or blocks' fp16 factors include a NaN or infinity (exponent bits all ones) */
static bool row_has_special(lb_type t, const lb_type_traits *tt, const uint8_t *row, int64_t cols) {
    unsigned bad = 0;
    if (tt->is_quant) {
        int64_t nb = cols / tt->block_elems;
        for (int f = 0; f < 2 && tt->fp16_factor[f] >= 0; f++)
            for (int64_t b = 0; b < nb; b++) {
                uint16_t h;
                memcpy(&h, row + (size_t)b * tt->block_bytes + tt->fp16_factor[f], 2);
                bad |= (h & 0x7C00u) == 0x7C00u;
            }
    } else { /* 4 halves or 2 floats per 64-bit word: a lane is special when its exponent bits are all ones */
        uint64_t e = t == LB_TYPE_F16 ? 0x7C007C007C007C00u : t == LB_TYPE_BF16 ? 0x7F807F807F807F80u : 0x7F8000007F800000u;
        uint64_t low = tt->block_bytes == 2 ? 0x0001000100010001u : 0x0000000100000001u;
        uint64_t high = tt->block_bytes == 2 ? 0x8000800080008000u : 0x8000000080000000u;
        size_t n = (size_t)cols * tt->block_bytes, i = 0;
        uint64_t any = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t u;
            memcpy(&u, row + i, 8);
            uint64_t z = (u & e) ^ e; /* a lane is zero exactly when it is special; lanes stay below their top bit */
            any |= (z - low) & ~z & high;
        }
        bad = any != 0;
        const uint32_t m = (uint32_t)(tt->block_bytes == 2 ? e & 0xFFFF : e & 0xFFFFFFFF);
        for (; i < n; i += tt->block_bytes) { /* the values after the last whole word */
            uint32_t u = 0;
            memcpy(&u, row + i, tt->block_bytes); /* little-endian: the value in the low bits */
            bad |= (u & m) == m;
        }
    }
    return bad != 0;
}

bool lb_weight_row_nonfinite(const lb_weight *w, int64_t r, float *scratch, int64_t *col, float *v) {
    const lb_type_traits *tt = lb_type_traits_get(w->type);
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * lb_weight_row_bytes(w);
    bool fast = !tt->is_quant || tt->fp16_factor[0] >= 0;
    if (fast && !row_has_special(w->type, tt, row, w->cols)) return false;
    tt->to_float(row, scratch, w->cols);
    for (int64_t i = 0; i < w->cols; i++)
        if (!isfinite(scratch[i])) {
            *col = i;
            *v = scratch[i];
            return true;
        }
    return false;
}
