/*
 * calib_gpus.h - the calibration statistics on one GPU or a set of them (algo/calib_layers.c's GPU side;
 * ARCHITECTURE.md "Several GPUs"). One device given as cuda or cuda:N is cuda/calib.h's state itself,
 * called as before. A device set (cuda:0,1,... or cuda:all; lb_calib_params.n_devices != 0) is data parallel:
 * rank r holds the contiguous windows [n_win r / R, n_win (r + 1) / R) of both streams on its device, the
 * ranks run their windows at once (one host thread each) and their sums are added by an NCCL all-reduce
 * (cuda/comm.h), so the caller receives the statistics of all windows. A set of one device runs that path
 * with one rank. The same entry points and contracts as cuda/calib.h's.
 */
#ifndef LB_ALGO_CALIB_GPUS_H
#define LB_ALGO_CALIB_GPUS_H

#include "../cuda/calib.h"

typedef struct lb_calib_gpus lb_calib_gpus;

/* device alone (n_devices 0), or the set devices[0..n_devices) (-1: every visible GPU) */
lb_status lb_calib_gpus_new(const struct lb_model *m, int device, int n_devices, const int *devices, int64_t n_win, int64_t win,
                            int with_ref, int64_t dmax, lb_calib_gpus **out, lb_error *err);
void lb_calib_gpus_free(lb_calib_gpus *g);
/* rows [row0, row0 + n) of stream s, within one window */
lb_status lb_calib_gpus_upload(lb_calib_gpus *g, int s, int64_t row0, const float *x, int64_t n, lb_error *err);
lb_status lb_calib_gpus_stats(lb_calib_gpus *g, const struct lb_layer *l, const struct lb_layer *ref, int64_t il, lb_obs_point pt,
                              double *h, double *cx, double *abs_sum, lb_error *err);
/* Diagonal mode on every rank (lb_cuda_calib_set_diag_only): _stats and _output_stats give H's diagonal in h (dim
 * values) and no C. */
void lb_calib_gpus_set_diag_only(lb_calib_gpus *g, bool on);
/* GPTQ's stages run part by part on the devices (lb_cuda_calib_stage_stats; the default, LB_GPU_STAGES=0 not), and their advance */
bool lb_calib_gpus_stages(const lb_calib_gpus *g);
lb_status lb_calib_gpus_stage_stats(lb_calib_gpus *g, const struct lb_layer *l, const struct lb_layer *ref, int64_t il, lb_obs_point pt,
                                    double *h, double *cx, double *abs_sum, lb_error *err);
lb_status lb_calib_gpus_stage_advance(lb_calib_gpus *g, const struct lb_layer *l, int64_t il, lb_error *err);
/* lb_calib_layer_diag_stats on the devices: sq and abs_sum (4, dmax) receive each layer point's sums of x^2 and |x|,
 * summed over the ranks. */
lb_status lb_calib_gpus_diag_stats(lb_calib_gpus *g, const struct lb_layer *l, int64_t il, double *sq, double *abs_sum, lb_error *err);
lb_status lb_calib_gpus_advance(lb_calib_gpus *g, const struct lb_layer *l, const struct lb_layer *ref, int64_t il, lb_error *err);
lb_status lb_calib_gpus_output_stats(lb_calib_gpus *g, const float *out_norm, double *h, double *cx, double *abs_sum, lb_error *err);
/* the most GPU memory in use on any rank's device; rank 0's phase split (lb_cuda_calib_phase_seconds) */
size_t lb_calib_gpus_peak(const lb_calib_gpus *g);
void lb_calib_gpus_phase_seconds(const lb_calib_gpus *g, double out[3]);
/* the ranks (1 for one device), rank 0's device (where GPTQ's solver runs) and rank r's */
int lb_calib_gpus_ranks(const lb_calib_gpus *g);
int lb_calib_gpus_first_device(const lb_calib_gpus *g);
int lb_calib_gpus_device(const lb_calib_gpus *g, int r);
/* the seconds spent in all-reduces of the ranks' sums (0 for one device) */
double lb_calib_gpus_allreduce_seconds(const lb_calib_gpus *g);

#endif
