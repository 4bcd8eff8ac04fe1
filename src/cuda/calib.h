/*
 * calib.h - the calibration statistics of algo/calib_layers.c on a CUDA device (C interface; cuda/calib.cu).
 *
 * The two activation streams (X through the quantized layers, Xr through the unquantized ones), each
 * (n_win * win, n_embd) F32, live on the GPU and are moved through one layer at a time by the executor
 * (cuda.h's layerwise context). The statistics of one matrix input (H = sum_t x_t x_t^T, C = sum_t xr_t
 * x_t^T, sum_t |x_t|) are summed on the GPU, per batch of windows an F32-class cuBLAS product (TF32 tensor
 * cores on a split of each value, LB_CALIB_PREC; calib.cu) added into double, and copied to the host when the
 * point is complete. Without the CUDA build every entry point fails with
 * LB_ERR_DEVICE.
 */
#ifndef LB_CUDA_CALIB_H
#define LB_CUDA_CALIB_H

#include "cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lb_cuda_calib lb_cuda_calib;

/* n_win windows of win tokens on device `device`; with_ref keeps the reference stream Xr too; dmax: the
 * widest matrix input. The streams start undefined: lb_cuda_calib_upload fills them. */
lb_status lb_cuda_calib_new(const struct lb_model *m, int device, int64_t n_win, int64_t win, int with_ref, int64_t dmax,
                            lb_cuda_calib **out, lb_error *err);
void lb_cuda_calib_free(lb_cuda_calib *c);

/* Rows [row0, row0 + n) of stream s (0: X, 1: Xr) from x (n, n_embd) on the host. */
lb_status lb_cuda_calib_upload(lb_cuda_calib *c, int s, int64_t row0, const float *x, int64_t n, lb_error *err);

/*
 * Statistics of point pt of layer il run with weights l on every window of X, each window first run through
 * ref (when not NULL: the unquantized layer, on Xr) for C. h, cx (dim, dim; cx may be NULL without ref) and
 * abs_sum (dim) receive the sums, h full and symmetric. l may be the model's own layer il (then it is
 * uploaded once for the layer's calls) or work copies (uploaded at every call).
 */
lb_status lb_cuda_calib_stats(lb_cuda_calib *c, const struct lb_layer *l, const struct lb_layer *ref, int64_t il,
                              lb_obs_point pt, double *h, double *cx, double *abs_sum, lb_error *err);
/* Move X through layer il with weights l, and Xr (when kept) through ref. */
lb_status lb_cuda_calib_advance(lb_cuda_calib *c, const struct lb_layer *l, const struct lb_layer *ref, int64_t il,
                                lb_error *err);
/* Statistics of the output head's input, the final norm (out_norm, n_embd) applied to X (and Xr for C). */
lb_status lb_cuda_calib_output_stats(lb_cuda_calib *c, const float *out_norm, double *h, double *cx, double *abs_sum,
                                     lb_error *err);
/* For a data-parallel set (algo/calib_gpus.c): with keep, _stats and _output_stats leave a point's sums on the
 * device (h and cx are not written); _sums gives their device addresses (H and C dim x dim, sum |x| dim, in
 * double; cx NULL without a reference stream), to be all-reduced there, and _read_sums copies them to the
 * host as _stats would have. */
void lb_cuda_calib_keep_sums(lb_cuda_calib *c, bool keep);
/* Diagonal mode (off by default): _stats and _output_stats sum x^2 per channel instead of H (h receives dim
 * values, H's diagonal) and form no C (cx is not written): no products at all. */
void lb_cuda_calib_set_diag_only(lb_cuda_calib *c, bool on);
/* The four layer points' sums of x^2 and |x| (sq and abs_sum, (4, dmax): point k's dim values at k dmax) of layer il
 * with weights l in one run of every window of X (no reference); with keep they stay on the device (_sums's h and
 * abs_sum) and _read_diag copies them. */
lb_status lb_cuda_calib_diag_stats(lb_cuda_calib *c, const struct lb_layer *l, int64_t il, double *sq, double *abs_sum,
                                   lb_error *err);
lb_status lb_cuda_calib_read_diag(lb_cuda_calib *c, double *sq, double *abs_sum, lb_error *err);
/* GPTQ's stages (calib.h's lb_calib_stage_stats) with each part of the layer run once per window, as on the CPU: X's
 * attention outputs kept on the device between the ATTN_OUT_IN and FFN_IN stages, X moved past the attention block in
 * the FFN_IN stage, Xr (through ref) past it in the ATTN_OUT_IN stage and to the layer's end in the last; then
 * _stage_advance takes X through the rest of the layer. The statistics and streams of _stats / _advance per point,
 * bit for bit. Only when _stages says so (the default; LB_GPU_STAGES=0 at _new: per point). */
bool lb_cuda_calib_stages(const lb_cuda_calib *c);
lb_status lb_cuda_calib_stage_stats(lb_cuda_calib *c, const struct lb_layer *l, const struct lb_layer *ref, int64_t il, lb_obs_point pt,
                                    double *h, double *cx, double *abs_sum, lb_error *err);
lb_status lb_cuda_calib_stage_advance(lb_cuda_calib *c, const struct lb_layer *l, int64_t il, lb_error *err);
void lb_cuda_calib_sums(lb_cuda_calib *c, double **h, double **cx, double **abs_sum);
lb_status lb_cuda_calib_read_sums(lb_cuda_calib *c, lb_obs_point pt, double *h, double *cx, double *abs_sum, lb_error *err);
/* The width of point pt's input (the statistics are dim x dim): n_embd for the output head's. */
int64_t lb_cuda_calib_point_dim(const lb_cuda_calib *c, lb_obs_point pt);
/* With LB_CALIB_PROFILE=1 in the environment at lb_cuda_calib_new the calls wait for the device at the end of
 * each phase and time it (a profile: the waits cost some overlap): out[0] the forward passes (layer uploads
 * included), out[1] the statistics' products and sums, out[2] the copies of the sums to the host, in
 * seconds so far; zeros without it. */
void lb_cuda_calib_phase_seconds(const lb_cuda_calib *c, double out[3]);
/* Page-locked host memory (portable across devices; the context of `device` makes it) for buffers the device's
 * sums are copied into, so that the copies run at the bus's speed: NULL when the runtime cannot give it (no
 * driver, too much locked, or a build without CUDA); release with lb_cuda_host_free. */
void *lb_cuda_host_alloc(int device, size_t bytes);
void lb_cuda_host_free(void *p);
/* Peak GPU memory in use so far by the process on the device, in bytes (0 when unknown). */
size_t lb_cuda_calib_peak_bytes(const lb_cuda_calib *c);

#ifdef __cplusplus
}
#endif

#endif
