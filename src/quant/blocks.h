/*
 * blocks.h - every ggml block format as a fixed-width little-endian struct, with static asserts on size
 * and field offsets. Source: ggml src/ggml-common.h (see docs/formats.md section 2 for the layouts).
 * fp16 fields are raw uint16_t bit patterns (lb_fp16_to_f32 / lb_f32_to_fp16). Blocks are read and
 * written in place from memory-mapped files, so every struct has alignment 1 or 2 at most; use memcpy
 * for multi-byte fields of types whose offset is not naturally aligned in a packed row (Q8_K's d is f32
 * at offset 0 and the block is 292 bytes, so rows of Q8_K stay 4-byte aligned).
 */
#ifndef LB_BLOCKS_H
#define LB_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK4_NL 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct { uint16_t d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
typedef struct { uint16_t d; int8_t qs[QK8_0]; } block_q8_0;
/* activation type of q4_1 / q5_1 dot products: s = fp16(d_f32 * sum(qs)) */
typedef struct { uint16_t d, s; int8_t qs[QK8_1]; } block_q8_1;
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; } block_q2_K;
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; } block_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_K;
/* activation type of k-quant dot products; bsums[j] = sum of qs[16j .. 16j+15] */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;
typedef struct { uint16_t d; uint8_t qs[QK4_NL / 2]; } block_iq4_nl;
typedef struct { uint16_t d, scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; } block_iq4_xs;

#ifdef __cplusplus /* the CUDA sources include this too */
#define LB_ASSERT_BLOCK(T, size) static_assert(sizeof(T) == (size), #T " size")
#define LB_ASSERT_FIELD(T, f, off) static_assert(offsetof(T, f) == (off), #T "." #f " offset")
#else
#define LB_ASSERT_BLOCK(T, size) _Static_assert(sizeof(T) == (size), #T " size")
#define LB_ASSERT_FIELD(T, f, off) _Static_assert(offsetof(T, f) == (off), #T "." #f " offset")
#endif

LB_ASSERT_BLOCK(block_q4_0, 18);
LB_ASSERT_FIELD(block_q4_0, qs, 2);
LB_ASSERT_BLOCK(block_q4_1, 20);
LB_ASSERT_FIELD(block_q4_1, m, 2);
LB_ASSERT_FIELD(block_q4_1, qs, 4);
LB_ASSERT_BLOCK(block_q5_0, 22);
LB_ASSERT_FIELD(block_q5_0, qh, 2);
LB_ASSERT_FIELD(block_q5_0, qs, 6);
LB_ASSERT_BLOCK(block_q5_1, 24);
LB_ASSERT_FIELD(block_q5_1, qh, 4);
LB_ASSERT_FIELD(block_q5_1, qs, 8);
LB_ASSERT_BLOCK(block_q8_0, 34);
LB_ASSERT_FIELD(block_q8_0, qs, 2);
LB_ASSERT_BLOCK(block_q8_1, 36);
LB_ASSERT_FIELD(block_q8_1, s, 2);
LB_ASSERT_FIELD(block_q8_1, qs, 4);
LB_ASSERT_BLOCK(block_q2_K, 84);
LB_ASSERT_FIELD(block_q2_K, qs, 16);
LB_ASSERT_FIELD(block_q2_K, d, 80);
LB_ASSERT_FIELD(block_q2_K, dmin, 82);
LB_ASSERT_BLOCK(block_q3_K, 110);
LB_ASSERT_FIELD(block_q3_K, qs, 32);
LB_ASSERT_FIELD(block_q3_K, scales, 96);
LB_ASSERT_FIELD(block_q3_K, d, 108);
LB_ASSERT_BLOCK(block_q4_K, 144);
LB_ASSERT_FIELD(block_q4_K, scales, 4);
LB_ASSERT_FIELD(block_q4_K, qs, 16);
LB_ASSERT_BLOCK(block_q5_K, 176);
LB_ASSERT_FIELD(block_q5_K, qh, 16);
LB_ASSERT_FIELD(block_q5_K, qs, 48);
LB_ASSERT_BLOCK(block_q6_K, 210);
LB_ASSERT_FIELD(block_q6_K, qh, 128);
LB_ASSERT_FIELD(block_q6_K, scales, 192);
LB_ASSERT_FIELD(block_q6_K, d, 208);
LB_ASSERT_BLOCK(block_q8_K, 292);
LB_ASSERT_FIELD(block_q8_K, qs, 4);
LB_ASSERT_FIELD(block_q8_K, bsums, 260);
LB_ASSERT_BLOCK(block_iq4_nl, 18);
LB_ASSERT_FIELD(block_iq4_nl, qs, 2);
LB_ASSERT_BLOCK(block_iq4_xs, 136);
LB_ASSERT_FIELD(block_iq4_xs, scales_h, 2);
LB_ASSERT_FIELD(block_iq4_xs, scales_l, 4);
LB_ASSERT_FIELD(block_iq4_xs, qs, 8);

/* IQ4_NL / IQ4_XS codebook */
static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

#endif
