/*
 * cuda.h - the CUDA executor of the forward pass, as the model layer sees it (C, opaque handles).
 *
 * model/forward.c owns lb_context and hands a context whose device is CUDA to this executor: one GPU
 * context per lb_context, holding the model's weights uploaded once in their stored types, an F16 KV
 * cache, activations and scratch on the GPU. The layer steps mirror forward.c's layer_forward one for
 * one (same order, same observer points), so a change to the model's arithmetic is made in both.
 * Without the CUDA build (LB_HAVE_CUDA undefined) every entry point fails with LB_ERR_DEVICE.
 */
#ifndef LB_CUDA_H
#define LB_CUDA_H

#include "../core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lb_model;
struct lb_layer;
typedef struct lb_cuda_ctx lb_cuda_ctx;

/* Upload m's weights to CUDA device `device` and allocate an n_ctx-token F16 KV cache (F32 for exact pipelines) plus activations for
 * n_batch tokens. n_batch above n_ctx (a multiple of it) makes the cache hold n_batch / n_ctx sequences of n_ctx
 * for lb_cuda_ctx_eval_windows. */
lb_status lb_cuda_ctx_new(const struct lb_model *m, int device, int64_t n_ctx, int64_t n_batch, lb_cuda_ctx **out,
                          lb_error *err);

/*
 * The same as a pipeline of n >= 1 stages: stage r on device devices[r] (a device may repeat) holds layers
 * first[r] .. first[r+1]-1 (first[0] = 0, first[n] = n_layer, each stage at least one layer) with their KV
 * cache, stage 0 the token embedding, stage n-1 the final norm, the head and the logits. A batch runs the
 * stages in order, the residual stream (T, n_embd) copied from each stage's device to the next's; every
 * layer's arithmetic is the one-device context's, so the results are its bits. The returned handle is
 * stage 0; the other entry points take it as they take a one-device context (scoring: the stages n-1 of
 * the model and its base must share a device). exact: lb_context_params' exact (an F32 KV cache, every product
 * through the fused kernels, the per-token attention).
 */
lb_status lb_cuda_ctx_new_pipeline(const struct lb_model *m, const int *devices, const int64_t *first, int n, int64_t n_ctx,
                                   int64_t n_batch, bool exact, lb_cuda_ctx **out, lb_error *err);

/* How many CUDA devices this process sees (0 without a driver or device, or without the CUDA build). */
int lb_cuda_device_count(void);
void lb_cuda_ctx_free(lb_cuda_ctx *g);
void lb_cuda_ctx_set_observer(lb_cuda_ctx *g, lb_observer_fn fn, void *user);

/*
 * Run T tokens (at most n_batch) at positions pos0.. through every layer. Logits: `want` 0 = none, 1 = the
 * last token's, 2 = all T tokens' (kept on the GPU for lb_cuda_ctx_score). `logits` (host, may be NULL)
 * receives them: (1, V) or (T, V).
 */
lb_status lb_cuda_ctx_eval(lb_cuda_ctx *g, const int32_t *tokens, int64_t T, int64_t pos0, int want, float *logits,
                           lb_error *err);

/*
 * Run T tokens as T / win independent sequences of win tokens (each from position 0, attending to its own tokens
 * only; T at most n_batch and T / win at most the sequences the cache holds), keeping every position's logits on
 * the GPU for lb_cuda_ctx_score: eval's windows several to a batch, so each weight is read and dequantized once
 * per batch instead of once per window. Every window's logits are those of its own lb_cuda_ctx_eval up to the
 * products' rounding (larger products may sum in another order).
 */
lb_status lb_cuda_ctx_eval_windows(lb_cuda_ctx *g, const int32_t *tokens, int64_t T, int64_t win, lb_error *err);

/*
 * Score the logits of the last lb_cuda_ctx_eval(want = 2) of T tokens against next tokens tokens[1..T-1],
 * on the GPU: per position i < T-1 the log-sum-exp, the NLL of tokens[i+1], the argmax and, when base is
 * not NULL (a context on the same device holding its own logits of the same tokens), KL(base || this).
 * Arrays have T-1 entries; lse may be NULL, kl is NULL without a base. The base must have scored the same
 * tokens last (its log-sum-exps stay on the GPU for this). After lb_cuda_ctx_eval_windows, each window's
 * positions 0 .. win-2 against its own next tokens: (T / win) (win - 1) entries, window after window.
 */
lb_status lb_cuda_ctx_score(lb_cuda_ctx *g, const lb_cuda_ctx *base, const int32_t *tokens, int64_t T, double *lse,
                            double *nll, int64_t *amax, double *kl, lb_error *err);

/* LB_OK when CUDA device `device` exists and can be used; else LB_ERR_DEVICE with the reason. */
lb_status lb_cuda_device_check(int device, lb_error *err);

/* ---- one layer at a time (calibration, cuda/calib.cu) ---- */

/* A context for one-layer runs of T <= n_batch tokens at positions 0..T-1: no model weights uploaded, a
 * one-layer KV cache, no logits. Layers are uploaded into its two slots by lb_cuda_ctx_load_layer. */
lb_status lb_cuda_ctx_new_layerwise(const struct lb_model *m, int device, int64_t n_batch, lb_cuda_ctx **out, lb_error *err);

/*
 * Upload what a run of l up to point `stop` (an lb_obs_point inside a layer; -1: the whole layer) reads
 * into slot 0 or 1: the norms and biases, and the matrices that run before the point. Slot 1 keeps what it
 * holds while it is given the same l (the model's own, unchanging weights: only missing matrices are
 * uploaded); slot 0 is uploaded anew at every call (work copies that change between calls).
 */
lb_status lb_cuda_ctx_load_layer(lb_cuda_ctx *g, int slot, const struct lb_layer *l, int stop, lb_error *err);

/* Observer of device activations: x (T, dim) is on the GPU, valid until the function returns; work it
 * enqueues on lb_cuda_ctx_stream(g) is ordered before the run goes on. */
typedef lb_status (*lb_cuda_observer_fn)(void *user, int64_t layer, lb_obs_point pt, const float *x, int64_t T, int64_t dim,
                                         lb_error *err);
void lb_cuda_ctx_set_device_observer(lb_cuda_ctx *g, lb_cuda_observer_fn fn, void *user);

/* Run the layer in `slot` (as layer il) on x (T, n_embd), a device array: up to `stop` (x unchanged) or,
 * stop = -1, the whole layer (x becomes its output). Enqueued on the context's stream (not synchronized). */
lb_status lb_cuda_ctx_run_layer(lb_cuda_ctx *g, int slot, int64_t il, float *x, int64_t T, int stop, lb_error *err);
/* lb_context_run_layer_part's contract on the device (x, att device pointers): the layer of slot from point `from`
 * (LB_OBS_ATTN_IN, ATTN_OUT_IN with att the attention output to start from, or FFN_IN with x the stream after the
 * attention block) to `stop` (-1: the end); x receives the stream where the run stopped once it got past the
 * attention block (the layer's output for stop -1); att, on a run from the start past the attention, receives
 * the attention output (NULL: not kept). The slot must hold the matrices from `from` to `stop`. */
lb_status lb_cuda_ctx_run_layer_part(lb_cuda_ctx *g, int slot, int64_t il, float *x, float *att, int64_t T, int from, int stop,
                                     lb_error *err);

/* The context's stream (a cudaStream_t) and device. */
void *lb_cuda_ctx_stream(const lb_cuda_ctx *g);
int lb_cuda_ctx_device(const lb_cuda_ctx *g);

/* ---- kernel entry points for tests (host arrays in, host arrays out; synchronous) ---- */

/* out (T, N) = x (T, K) . W (N, K)^T with W of type `type` (rows row_bytes apart), on device `device`.
 * path 0: the fused dequantize-multiply kernels (T <= 16), 1: dequantize to F16 + cuBLAS, 2: dequantize
 * to F32 only (out is then W as f32, (N, K)); -1: what the forward pass picks for T. */
lb_status lb_cuda_test_matmul(int device, lb_type type, const void *w, int64_t N, int64_t K, const float *x, int64_t T,
                              float *out, int path, lb_error *err);

/* The same product added into out: out (T, N) = base (T, N) + x . W^T through the fused kernels' accumulating write
 * (T <= 16), the residual add of the forward pass's o and down products. */
lb_status lb_cuda_test_matmul_add(int device, lb_type type, const void *w, int64_t N, int64_t K, const float *x, int64_t T,
                                  const float *base, float *out, lb_error *err);

/* A producer that rounds its result for the next product in the same launch, against the separate kernels: op 0
 * RMSNorm of T rows of n (x, weights w), op 1 silu(x) * y. out_fused / act_fused: the fused kernel's result and the
 * 8-bit activations it wrote for a weight of type `type`; out_sep: the separate kernel's result (cu_rmsnorm,
 * cu_silu_mul); act_sep: cu_act_prepare of out_fused. act_*: T n + T n / 32 * 8 bytes. */
lb_status lb_cuda_test_fused_act(int device, lb_type type, int op, const float *x, const float *y, const float *w, int64_t T,
                                 int64_t n, float eps, float *out_fused, float *out_sep, void *act_fused, void *act_sep,
                                 lb_error *err);

/* Causal grouped-query attention of T queries q (T, H D) at positions pos0.. over the F16 caches kc, vc (rows of
 * KV D halves; rows 0 .. pos0 + T - 1 read) into out (T, H D), on device `device`: flash 0 the forward pass's
 * kernel for decode (one block per token and head group), 1 the tensor-core flash kernel for prompts
 * (LB_ERR_UNSUPPORTED when the shape has none), 2 the kernel split over the positions (flash-decoding), whatever
 * LB_CUDA_FLASH and LB_CUDA_ATT_SPLIT say; 3 the split kernel rounding its output for the o product (checked against
 * cu_act_prepare here); 4 and 5 (one token) the split kernel rotating q and the new key itself (cache row pos0 taken
 * as the unrotated key and value; 5 the interleaved layout), checked here bit for bit against the rotary launch then
 * the split kernel (output and caches): out is the rotated query's attention; 6-9 as 2-5 with the single launch for short
 * contexts (k_att_one, whatever LB_CUDA_ATT_ONE says; LB_ERR_UNSUPPORTED where the context or rounding does not fit it). */
lb_status lb_cuda_test_attention(int device, const float *q, const uint16_t *kc, const uint16_t *vc, float *out, int T, int H, int KV,
                                 int D, int64_t pos0, int flash, lb_error *err);

/* The unpacking of block-type rows that an exact context's products run on the device (cuda/exact.cu compiles
 * quant/cpu/unpack_ref.h once more, as C++), its host copy: the K elements of one row of type t, one weight block at a
 * time as the kernel calls it, into o (quant/cpu/cpu.h's lb_qrow). CUDA builds only: tests/cudahost compares it with
 * the C build's unpacking. */
struct lb_qrow;
void lb_cuda_unpack_host(lb_type t, const void *row, int64_t K, const struct lb_qrow *o);
/* The same file's arithmetic of one exact product, row against token, on the host (the helpers its kernels call, in
 * the kernels' order): float types take x (K floats), block types the CPU's 8-bit activations (xq: K codes, xd: one
 * scale per weight block; lb_act's q and d). CUDA builds only: tests/cudahost compares it with lb_matmul_ref. */
void lb_cuda_exact_dot_host(lb_type t, const void *row, int64_t K, const float *x, const int8_t *xq, const float *xd, float *out);

/* Whether the fused kernels (path 0) multiply weights of this type with activations rounded to 8 bits per 32
 * elements (lb_act_quantize's rounding) rather than to F16. */
bool lb_cuda_mv_q8(lb_type type);

#ifdef __cplusplus
}
#endif

#endif
