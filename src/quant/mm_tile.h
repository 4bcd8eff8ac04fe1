/*
 * mm_tile.h - the forward pass's matrix product (matmul.h) one tile of weight rows at a time, for drivers
 * that run several products, and the steps between them, in one pool run (model/forward.c).
 *
 * lb_mm_tile computes rows [r0, r0 + R) of out (T, N) = x (T, K) . W (N, K)^T with exactly the kernels and
 * the arithmetic of lb_matmul: every output element is the same float whichever tiles, threads or calls
 * compute it. Quantized weights read the activations as lb_mm_quantize left them (8 bits per block of the
 * weight type's size, quant/cpu/cpu.h); float weights read x. The caller quantizes each input once per block
 * size and shares it among the products that read it.
 */
#ifndef LB_MM_TILE_H
#define LB_MM_TILE_H

#include "../core/core.h"
#include "quant.h"

/* Block size of the activations a product with w reads: 0 for float weights (f32 activations). */
int64_t lb_mm_act_block(const lb_weight *w);

/* Bytes of one token's quantized activations of K elements in blocks of be (K % be == 0), 64-aligned. */
size_t lb_mm_act_row_bytes(int64_t K, int64_t be);

/* Bytes of one thread's scratch slot for tiles of up to K columns. */
size_t lb_mm_slot_bytes(int64_t K);

/* The input of products: T tokens of K floats and, for block size be > 0, their quantized rows. */
typedef struct lb_mm_in {
    const float *x;  /* (T, K) */
    uint8_t *act;    /* T rows of lb_mm_act_row_bytes(K, be), 64-byte aligned (be > 0) */
    int64_t T, K, be;
    const struct lb_cpu_kernels *k; /* the kernels; NULL: the best for this CPU (lb_cpu_kernels_best) */
} lb_mm_in;

/* Quantize elements [k0, k0 + n) of token t of in->x into in->act (k0 and n multiples of in->be and of 16);
 * the same bytes as quantizing the whole row at once. */
void lb_mm_quantize(const lb_mm_in *in, int64_t t, int64_t k0, int64_t n);

/* out[t * ldo + r] for t < in->T and r in [r0, r0 + R), R <= LB_MM_TILE; slot: lb_mm_slot_bytes(K) bytes,
 * 64-byte aligned, used by one thread at a time. in->be must be lb_mm_act_block(w). */
#define LB_MM_TILE 16
void lb_mm_tile(const lb_mm_in *in, const lb_weight *w, int64_t r0, int R, float *out, int64_t ldo, void *slot);

#endif
