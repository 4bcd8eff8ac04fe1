/*
 * calib.h - layer-by-layer calibration state for GPTQ, AWQ and importance weighting: the calibration
 * activations X (n_windows * ctx, n_embd) entering the current decoder layer, and per layer the second
 * moments H = sum_t x_t x_t^T of every matrix input and the mean absolute activation per channel.
 *
 * Only X, one layer's statistics and the layer's weights are in memory: X is advanced through each layer
 * (with its quantized weights, so later layers calibrate on what the quantized model really computes).
 */
#ifndef LB_ALGO_CALIB_H
#define LB_ALGO_CALIB_H

#include "../model/model.h"

/* the four matrix inputs of a decoder layer (lb_obs_point values) and the output head */
#define LB_CALIB_POINTS 5

typedef struct lb_calib lb_calib;

/* Windows of `tokens` chosen by p; X starts as the embedding rows (taken from `embd`, e.g. the quantized
 * token embedding, (n_vocab, n_embd)). embd_ref (NULL: none) starts a reference stream Xr, moved through
 * the unquantized layers, whose matrix inputs give the cross statistics C = sum_t xr_t x_t^T. */
lb_status lb_calib_new(const lb_model *m, const lb_weight *embd, const lb_weight *embd_ref, const int32_t *tokens, int64_t n_tokens,
                       const lb_calib_params *p, lb_calib **out, lb_error *err);
void lb_calib_free(lb_calib *c);

/* lb_imatrix_compute with the path chosen: layerwise, the sums of lb_calib's diagonal-only statistics (the windows stay
 * in the calibration state, on a GPU on the device; the unquantized layers move them on); else the forward pass's
 * observer over each window in turn. lb_imatrix_compute takes the layerwise path on a GPU. The two give the same
 * values up to the order of the double sums. */
lb_status lb_imatrix_compute_ex(const lb_model *m, const int32_t *tokens, int64_t n_tokens, const lb_calib_params *p,
                                const char *dataset, const char *out_path, bool layerwise, lb_error *err);

/* Statistics of point pt (a layer point, not LB_OBS_OUTPUT_IN) of layer il run with weights l on the
 * current X (X is not changed); with a reference stream also C, ref being the unquantized layer. They
 * replace the statistics of any earlier call. */
lb_status lb_calib_layer_stats(lb_calib *c, const lb_layer *l, const lb_layer *ref, lb_obs_point pt, int64_t il,
                               lb_error *err);
/* The imatrix method's statistics of all four layer points (ATTN_IN, ATTN_OUT_IN, FFN_IN, FFN_DOWN_IN) of layer il
 * with weights l in one run of every window: each point's H diagonal (lb_calib_h_diag) and mean |x|
 * (lb_calib_mean_abs), the same values as a diagonal-only lb_calib_layer_stats of each point, until the next
 * statistics call; no H or C. Without a reference stream only (LB_ERR_ARG). */
lb_status lb_calib_layer_diag_stats(lb_calib *c, const lb_layer *l, int64_t il, lb_error *err);
/* Move X through layer il with weights l (and Xr, if kept, through ref). */
lb_status lb_calib_layer_advance(lb_calib *c, const lb_layer *l, const lb_layer *ref, int64_t il, lb_error *err);
/*
 * GPTQ's stages: the statistics of the four points of layer il in order (ATTN_IN, ATTN_OUT_IN, FFN_IN,
 * FFN_DOWN_IN, l each time the layer with the matrices before pt quantized and the parts already run
 * unchanged), then lb_calib_stage_advance. The same statistics and the same X and Xr, to the bit, as
 * lb_calib_layer_stats for each point and lb_calib_layer_advance, but each part of the layer runs once per
 * window: the attention outputs of X are kept from the ATTN_OUT_IN stage (n_windows * ctx * n_head * head_dim
 * floats, allocated then and kept), X moves past the attention block in the FFN_IN stage and Xr (through
 * ref, required with a reference stream) past it in the ATTN_OUT_IN stage and through the rest of the layer
 * in the last. Between the first stage and the advance X and Xr are inside the layer: the other statistics
 * calls must not be mixed in. LB_ERR_ARG for a stage out of order.
 */
lb_status lb_calib_stage_stats(lb_calib *c, const lb_layer *l, const lb_layer *ref, lb_obs_point pt, int64_t il,
                               lb_error *err);
lb_status lb_calib_stage_advance(lb_calib *c, const lb_layer *l, int64_t il, lb_error *err);
/* Statistics of the output head's input: the final norm applied to X. */
lb_status lb_calib_output_stats(lb_calib *c, const float *out_norm, lb_error *err);

/* H (dim, dim) of the point of the last *_stats call (NULL for another point), its dim, mean |x| per
 * channel, and the token count. */
const double *lb_calib_h(const lb_calib *c, lb_obs_point pt, int64_t *dim);
/* H's diagonal (dim values: sum x^2 per channel) of the last *_stats call, NULL for another point. With
 * lb_calib_set_diag_only(c, true) the statistics runs (CPU or GPU) sum only this (no products: the imatrix
 * method's whole need) and lb_calib_h / _take_* return NULL; without a reference stream only. Off by default. */
const double *lb_calib_h_diag(const lb_calib *c, lb_obs_point pt);
/* The layer's F32 work copy of matrix k (0..6): a buffer of at least n floats kept in c from one layer to the next
 * (its pages stay mapped), or NULL when out of memory; lb_calib_release_work frees them all (before the output
 * head, whose own copy is larger, so that the peak does not grow). */
float *lb_calib_work_f32(lb_calib *c, int k, int64_t n);
void lb_calib_release_work(lb_calib *c);
void lb_calib_set_diag_only(lb_calib *c, bool on);
/* C (dim, dim), C[i][j] = sum_t xr_t[i] x_t[j], of the last *_stats call; NULL without a reference stream. */
const double *lb_calib_cross(const lb_calib *c, lb_obs_point pt);
/* The same buffers handed over: the caller may overwrite them and hands them back with lb_calib_give_back
 * (never free: on a GPU they are page-locked); lb_calib_h / lb_calib_cross then return NULL for what was
 * taken, and the next statistics run takes a given-back buffer or allocates anew. NULL for
 * a point other than the last statistics' (and for C without a reference stream). They let GPTQ factor
 * and overwrite H and C in place instead of in copies: the memory of calibrating the widest input. */
double *lb_calib_take_h(lb_calib *c, lb_obs_point pt);
double *lb_calib_take_cross(lb_calib *c, lb_obs_point pt);
/* A taken buffer handed back once its user is done with it (instead of free): kept for the next statistics run
 * (whose pages are then mapped, and page-locked on a GPU) or released. NULL does nothing. */
void lb_calib_give_back(lb_calib *c, double *buf);
const float *lb_calib_mean_abs(const lb_calib *c, lb_obs_point pt);
int64_t lb_calib_tokens(const lb_calib *c);
/* On a GPU: the most device memory seen in use so far (bytes); 0 on the CPU. */
size_t lb_calib_gpu_peak(const lb_calib *c);
/* Seconds spent so far in lb_calib_new and the *_stats / *_advance calls (forward passes and sums). */
double lb_calib_seconds(const lb_calib *c);
/* On a GPU with LB_CALIB_PROFILE=1: lb_cuda_calib_phase_seconds (forward, sums, copies); zeros otherwise. */
void lb_calib_gpu_phase_seconds(const lb_calib *c, double out[3]);
/* the GPUs the statistics were split over (0 on the CPU), the seconds in their all-reduces, and GPTQ's solvers
 * (lb_calib_solvers; 1 before the first GPTQ stage or with one) */
void lb_calib_gpu_split(const lb_calib *c, int *gpus, double *allreduce_seconds, int *solvers);

#include "gptq.h"

/*
 * Where GPTQ's linear algebra runs for this calibration: on a CUDA device the CUDA table (made at the first
 * call, owned by c), else NULL (the CPU). When the device's table cannot be made (no cuSOLVER, ...) the
 * reason is noted as a fallback and NULL returned, every later call too. LB_GPTQ_GPU=0 in the environment keeps
 * the solver on CPU threads (NULL). _note_fallback records a matrix that ran on the CPU (the first reason is
 * kept); _fallbacks returns how many, with that reason.
 */
const lb_gptq_ops *lb_calib_gptq_ops(lb_calib *c);
/* Test hook: where set, a calibration on the CPU (no GPU) solves GPTQ through this table instead of CPU threads
 * (tests/cudahost: the host copies of the GPU's passes, encoders and descent, to check gptq.c's device paths end
 * to end without a GPU). NULL by default; set it before quantizing, never during. */
extern const lb_gptq_ops *lb_calib_test_gptq_ops;
/* GPTQ's time per phase (lb_gptq_stats.seconds; sec may be NULL) and of the reference target, summed;
 * _gptq_seconds reads the sums back: out[LB_GPTQ_PHASES] = the reference target's. */
void lb_calib_note_gptq(lb_calib *c, const double *sec, double ref_seconds);
void lb_calib_gptq_seconds(const lb_calib *c, double out[LB_GPTQ_PHASES + 1]);
void lb_calib_note_fallback(lb_calib *c, const char *why);
/* Time spent reading the layers' matrices into their F32 work copies, summed (lb_calib_quantize_layer). */
void lb_calib_note_convert(lb_calib *c, double seconds);
double lb_calib_convert_seconds(const lb_calib *c);
int64_t lb_calib_fallbacks(const lb_calib *c, const char **why);

/*
 * GPTQ's solvers: where the matrices of one stage of a layer (q, k, v; gate, up) are solved side by side.
 * On a set of several GPUs, one per rank: its device's GPTQ table (solver 0: lb_calib_gptq_ops) and a share
 * of pool's threads for the CPU's part; elsewhere one solver (the device's table or the CPU, with pool). For a
 * check of the mechanics on one GPU or the CPU, LB_CALIB_SOLVERS=N asks for N solvers (on the ranks' devices
 * in turn, or CPU threads). Made at the first
 * call (owned by c); a rank whose table cannot be made leaves the set at the ranks before it (the reason
 * noted as a fallback). Returns their count; *runner is a pool with one thread per solver (NULL for one).
 * Each matrix's bytes do not depend on its solver (the same arithmetic, any thread count).
 */
typedef struct lb_calib_solver {
    const lb_gptq_ops *ops; /* NULL: the CPU */
    lb_pool *pool;
    lb_gptq_scratch *scratch; /* host buffers kept between its matrices (a device table's), or NULL */
} lb_calib_solver;
int lb_calib_solvers(lb_calib *c, lb_pool *pool, const lb_calib_solver **solvers, lb_pool **runner);
/* The solver on the calling thread: the calibration's GPTQ table (lb_calib_gptq_ops) and pool, with host buffers
 * kept between matrices when the table is a device's (the CPU path allocates per matrix, as its memory plan
 * counts on). */
lb_calib_solver lb_calib_main_solver(lb_calib *c, lb_pool *pool);

/*
 * Quantize decoder layer il from its statistics on the current calibration activations, then move the
 * activations through the quantized layer. The 7 matrices in the order q, k, v, o, gate, up, down (rows
 * in the model's own order) get types[k]; out[k] receives malloc'd blocks (the caller frees them).
 * norms[0], norms[1] are copies of the attention and FFN norm weights and bv a copy of the v bias (or
 * NULL); AWQ divides them by its scales, and they must be written in place of the originals.
 */
lb_status lb_calib_quantize_layer(lb_calib *c, lb_pool *pool, const lb_model *m, int64_t il, lb_method method,
                                  lb_encoder enc, const lb_gptq_params *gp, const lb_type types[7], uint8_t *out[7],
                                  float *norms[2], float *bv, lb_error *err);
/* The output head (untied models) from the statistics of the final-norm output: GPTQ for the GPTQ methods,
 * the importance-weighted encoder otherwise. out: rows of blocks of type t. */
lb_status lb_calib_quantize_output(lb_calib *c, lb_pool *pool, const lb_model *m, lb_type t, lb_method method,
                                   lb_encoder enc, const lb_gptq_params *gp, uint8_t *out, lb_error *err);

#endif
