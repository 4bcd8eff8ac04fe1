/*
 * matmul.h - out (T, N) = x (T, K) . W (N, K)^T for weights of any supported lb_type, the one matrix
 * product the forward pass uses, on the kernels of quant/cpu (cpu.h gives the arithmetic).
 *
 * Quantized weights: the T activation rows are quantized to 8 bits once per call (blocks of the weight
 * type's size). One token: each task multiplies MM_TILE_ROWS packed rows with it in place (fused kernels).
 * Several tokens: each task unpacks MM_TILE_ROWS rows into an interleaved tile (a vector lane per row; the
 * AVX-512 VNNI kernels) or into unpacked rows (AVX2, reference) and multiplies it with every token. Float
 * weights (F32, F16, BF16): one token reads the rows in place; several tokens multiply a tile converted to
 * f32 (row pairs per 512-bit vector on AVX-512). Rows of W are split into fixed tiles handed to the thread
 * pool and every output element is computed by the same code whatever the thread count, so results are
 * identical for any number of threads; the reference, AVX2 and AVX-512 kernels follow one arithmetic order
 * (quant/cpu/cpu.h), so they are identical too.
 */
#ifndef LB_MATMUL_H
#define LB_MATMUL_H

#include "../core/core.h"
#include "quant.h"

/* Rows of W per task. */
#define MM_TILE_ROWS 16

/* Floats of scratch lb_matmul needs for up to T activation rows of inner dimension K on n_threads threads. */
size_t lb_matmul_scratch_floats(int64_t K, int64_t T, int n_threads);

/*
 * x: (T, K) row-major; w: (N, K); out: (T, ldo) with ldo >= N, columns [0, N) written.
 * scratch: lb_matmul_scratch_floats(K, T, lb_pool_size(pool)) floats.
 */
void lb_matmul(lb_pool *pool, float *scratch, const float *x, int64_t T, const lb_weight *w, float *out, int64_t ldo);

/* out[i] (T, ldo[i]) = x . w[i]^T for n weights with the same cols (q, k and v; gate and up): the same bits as
 * n lb_matmul calls, with fewer pool runs (the tasks of up to LB_MATMUL_MULTI_MAX weights whose activations
 * share a format go in one run) and the activations quantized once per run. scratch as for lb_matmul. */
#define LB_MATMUL_MULTI_MAX 4
void lb_matmul_multi(lb_pool *pool, float *scratch, const float *x, int64_t T, const lb_weight *const *w, float *const *out,
                     const int64_t *ldo, int n);

/* The product through the scalar reference kernels whatever the CPU (the specification; single-threaded).
 * scratch as for lb_matmul with one thread. */
void lb_matmul_ref(float *scratch, const float *x, int64_t T, const lb_weight *w, float *out, int64_t ldo);

/* Attention helpers over n rows of a (n, stride) matrix m holding D-wide vectors, F32 (f16 = 0) or F16 bit patterns
 * (f16 = 1, an F16 KV cache: each element converted exactly, so the bits of the F32 helpers on the converted rows):
 * s[p] = q . m[p] for p in [0, n), and o = sum_p w[p] * m[p] (o has D floats). */
void lb_vec_dots(const float *q, const void *m, int f16, int64_t stride, int64_t n, int64_t D, float *s);
void lb_vec_wsum(const float *w, const void *m, int f16, int64_t stride, int64_t n, int64_t D, float *o);
/* The same for nq <= 8 queries at once (each result the same bits as one query at a time): s[j * lds + p] =
 * q_j . m[p] for p < n with q_j = q + j * ldq; o_j = o + j * ldo = sum over p < n[j] of w_j[p] * m[p] with
 * w_j = w + j * ldw. */
void lb_vec_dotsq(const float *q, int64_t ldq, int nq, const void *m, int f16, int64_t stride, int64_t n, int64_t D, float *s,
                  int64_t lds);
void lb_vec_wsumq(const float *w, int64_t ldw, int nq, const int64_t *n, const void *m, int f16, int64_t stride, int64_t D,
                  float *o, int64_t ldo);
/* s = softmax(s * scale) over n floats, in place; g = silu(g) * u over rows of n floats ld apart (quant/cpu/cpu.h: lb_expf and
 * the fixed orders every kernel set follows). */
void lb_vec_softmax(float *s, int64_t n, float scale);
void lb_vec_swiglu(float *g, const float *u, int64_t n, int64_t rows, int64_t ld);

/* Which kernels lb_matmul uses: "avx512vnni", "avx2" or "ref" (LB_FORCE_REF=1 pins "ref"). */
const char *lb_matmul_impl(void);

#endif
