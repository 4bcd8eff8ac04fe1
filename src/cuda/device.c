/*
 * device.c - device names ("cpu", "cuda", "cuda:N") and, in builds without the CUDA backend, the
 * executor's entry points failing with one clear line.
 */
#include "calib.h"
#include "cuda.h"
#include "comm.h"
#include "gptq.h"

#include <stdlib.h>
#include <string.h>

lb_status lb_device_parse(const char *s, lb_device *out, lb_error *err) {
    if (!s || !out) return lb_err_set(err, LB_ERR_ARG, "lb_device_parse: NULL argument");
    lb_device d = {LB_DEVICE_CPU, 0};
    if (!strcmp(s, "cpu")) {
        *out = d;
        return LB_OK;
    }
    if (!strncmp(s, "cuda", 4) && (s[4] == 0 || s[4] == ':')) {
        d.kind = LB_DEVICE_CUDA;
        if (s[4] == ':') {
            char *end = NULL;
            long v = strtol(s + 5, &end, 10);
            if (s[5] < '0' || s[5] > '9' || *end || v < 0 || v > 1023)
                return lb_err_set(err, LB_ERR_ARG, "device '%s': the index after 'cuda:' must be a number 0..1023", s);
            d.index = (int)v;
        }
        *out = d;
        return LB_OK;
    }
    return lb_err_set(err, LB_ERR_ARG, "unknown device '%s' (cpu, cuda or cuda:N)", s);
}

lb_status lb_device_set_parse(const char *s, lb_device *out, int *n_devices, int devices[LB_MAX_DEVICES], lb_error *err) {
    if (!s || !out || !n_devices || !devices) return lb_err_set(err, LB_ERR_ARG, "lb_device_set_parse: NULL argument");
    *n_devices = 0;
    if (strncmp(s, "cuda:", 5) || (!strchr(s, ',') && strcmp(s + 5, "all"))) return lb_device_parse(s, out, err);
    lb_device d = {LB_DEVICE_CUDA, 0};
    if (!strcmp(s + 5, "all")) {
        *out = d;
        *n_devices = -1;
        return LB_OK;
    }
    int n = 0;
    for (const char *p = s + 5;;) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (*p < '0' || *p > '9' || (*end && *end != ',') || v < 0 || v > 1023)
            return lb_err_set(err, LB_ERR_ARG, "devices '%s': after 'cuda:' numbers 0..1023 separated by commas", s);
        if (n == LB_MAX_DEVICES) return lb_err_set(err, LB_ERR_ARG, "devices '%s': more than %d", s, LB_MAX_DEVICES);
        for (int i = 0; i < n; i++)
            if (devices[i] == (int)v) return lb_err_set(err, LB_ERR_ARG, "devices '%s': cuda:%ld named twice", s, v);
        devices[n++] = (int)v;
        if (!*end) break;
        p = end + 1;
    }
    d.index = devices[0];
    *out = d;
    *n_devices = n;
    return LB_OK;
}

#ifdef LB_HAVE_CUDA
int lb_cuda_compiled(void) { return 1; }
#else
int lb_cuda_compiled(void) { return 0; }

static lb_status no_cuda(lb_error *err) {
    return lb_err_set(err, LB_ERR_DEVICE, "this lowbit was built without CUDA (configure with -DLOWBIT_CUDA=ON and nvcc)");
}

lb_status lb_cuda_ctx_new(const struct lb_model *m, int device, int64_t n_ctx, int64_t n_batch, lb_cuda_ctx **out,
                          lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_ctx_new_pipeline(const struct lb_model *m, const int *devices, const int64_t *first, int n, int64_t n_ctx,
                                   int64_t n_batch, bool exact, lb_cuda_ctx **out, lb_error *err) {
    return no_cuda(err);
}
void lb_cuda_ctx_free(lb_cuda_ctx *g) {}
void lb_cuda_ctx_set_observer(lb_cuda_ctx *g, lb_observer_fn fn, void *user) {}
lb_status lb_cuda_ctx_eval(lb_cuda_ctx *g, const int32_t *tokens, int64_t T, int64_t pos0, int want, float *logits,
                           lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_ctx_eval_windows(lb_cuda_ctx *g, const int32_t *tokens, int64_t T, int64_t win, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_ctx_score(lb_cuda_ctx *g, const lb_cuda_ctx *base, const int32_t *tokens, int64_t T, double *lse,
                            double *nll, int64_t *amax, double *kl, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_test_matmul(int device, lb_type type, const void *w, int64_t N, int64_t K, const float *x, int64_t T,
                              float *out, int path, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_test_attention(int device, const float *q, const uint16_t *kc, const uint16_t *vc, float *out, int T, int H, int KV,
                                 int D, int64_t pos0, int flash, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_test_matmul_add(int device, lb_type type, const void *w, int64_t N, int64_t K, const float *x, int64_t T,
                                  const float *base, float *out, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_test_fused_act(int device, lb_type type, int op, const float *x, const float *y, const float *w, int64_t T,
                                 int64_t n, float eps, float *out_fused, float *out_sep, void *act_fused, void *act_sep,
                                 lb_error *err) {
    return no_cuda(err);
}
bool lb_cuda_mv_q8(lb_type type) { return false; }
lb_status lb_cuda_device_check(int device, lb_error *err) { return no_cuda(err); }
lb_status lb_cuda_ctx_new_layerwise(const struct lb_model *m, int device, int64_t n_batch, lb_cuda_ctx **out, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_ctx_load_layer(lb_cuda_ctx *g, int slot, const struct lb_layer *l, int stop, lb_error *err) {
    return no_cuda(err);
}
void lb_cuda_ctx_set_device_observer(lb_cuda_ctx *g, lb_cuda_observer_fn fn, void *user) {}
lb_status lb_cuda_ctx_run_layer(lb_cuda_ctx *g, int slot, int64_t il, float *x, int64_t T, int stop, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_ctx_run_layer_part(lb_cuda_ctx *g, int slot, int64_t il, float *x, float *att, int64_t T, int from, int stop,
                                     lb_error *err) {
    return no_cuda(err);
}
void *lb_cuda_ctx_stream(const lb_cuda_ctx *g) { return NULL; }
int lb_cuda_ctx_device(const lb_cuda_ctx *g) { return 0; }
lb_status lb_cuda_calib_new(const struct lb_model *m, int device, int64_t n_win, int64_t win, int with_ref, int64_t dmax,
                            lb_cuda_calib **out, lb_error *err) {
    return no_cuda(err);
}
void lb_cuda_calib_free(lb_cuda_calib *c) {}
lb_status lb_cuda_calib_upload(lb_cuda_calib *c, int s, int64_t row0, const float *x, int64_t n, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_calib_stats(lb_cuda_calib *c, const struct lb_layer *l, const struct lb_layer *ref, int64_t il,
                              lb_obs_point pt, double *h, double *cx, double *abs_sum, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_calib_advance(lb_cuda_calib *c, const struct lb_layer *l, const struct lb_layer *ref, int64_t il,
                                lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_calib_output_stats(lb_cuda_calib *c, const float *out_norm, double *h, double *cx, double *abs_sum,
                                     lb_error *err) {
    return no_cuda(err);
}
size_t lb_cuda_calib_peak_bytes(const lb_cuda_calib *c) { return 0; }
void lb_cuda_calib_phase_seconds(const lb_cuda_calib *c, double out[3]) { out[0] = out[1] = out[2] = 0; }
void *lb_cuda_host_alloc(int device, size_t bytes) { return NULL; }
void lb_cuda_host_free(void *p) {}
int64_t lb_cuda_calib_point_dim(const lb_cuda_calib *c, lb_obs_point pt) { return 0; }
void lb_cuda_calib_keep_sums(lb_cuda_calib *c, bool keep) {}
void lb_cuda_calib_set_diag_only(lb_cuda_calib *c, bool on) {}
lb_status lb_cuda_calib_diag_stats(lb_cuda_calib *c, const struct lb_layer *l, int64_t il, double *sq, double *abs_sum, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_calib_read_diag(lb_cuda_calib *c, double *sq, double *abs_sum, lb_error *err) { return no_cuda(err); }
bool lb_cuda_calib_stages(const lb_cuda_calib *c) { return false; }
lb_status lb_cuda_calib_stage_stats(lb_cuda_calib *c, const struct lb_layer *l, const struct lb_layer *ref, int64_t il, lb_obs_point pt,
                                    double *h, double *cx, double *abs_sum, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_calib_stage_advance(lb_cuda_calib *c, const struct lb_layer *l, int64_t il, lb_error *err) { return no_cuda(err); }
void lb_cuda_calib_sums(lb_cuda_calib *c, double **h, double **cx, double **abs_sum) { *h = *cx = *abs_sum = NULL; }
lb_status lb_cuda_calib_read_sums(lb_cuda_calib *c, lb_obs_point pt, double *h, double *cx, double *abs_sum, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_gptq_new(int device, lb_cuda_gptq **out, lb_error *err) { return no_cuda(err); }
void lb_cuda_gptq_free(lb_cuda_gptq *g) {}
lb_status lb_cuda_gptq_reserve(lb_cuda_gptq *g, int64_t rows, int64_t n, bool cd, lb_error *err) { return no_cuda(err); }
lb_status lb_cuda_gptq_inv_upper(lb_cuda_gptq *g, double *A, int64_t n, bool *ok, lb_error *err) { return no_cuda(err); }
lb_status lb_cuda_gptq_inv_upper_keep(lb_cuda_gptq *g, const double *A, int64_t n, bool *ok, lb_error *err) { return no_cuda(err); }
lb_status lb_cuda_gptq_begin_kept(lb_cuda_gptq *g, const float *hf_diag, int64_t rows, int64_t n, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_gptq_read_kept(lb_cuda_gptq *g, float *U, float *Hf, int64_t n, lb_error *err) { return no_cuda(err); }
lb_status lb_cuda_gptq_begin(lb_cuda_gptq *g, const float *U, const float *Hf, int64_t rows, int64_t n, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_gptq_load(lb_cuda_gptq *g, const float *T, int64_t rows, int64_t n, lb_error *err) { return no_cuda(err); }
lb_status lb_cuda_gptq_update(lb_cuda_gptq *g, float *T, int64_t rows, int64_t n, const float *E, int64_t lde, int64_t i1,
                              int64_t i2, int64_t i3, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_gptq_h_times_e(lb_cuda_gptq *g, const float *W, const float *Q, float *G, int64_t rows, int64_t n,
                                 const bool *sel, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_gptq_matmul(lb_cuda_gptq *g, const float *x, int64_t rows, const float *w, int64_t n, int64_t K,
                              float *out, lb_error *err) {
    return no_cuda(err);
}
size_t lb_cuda_gptq_peak_bytes(const lb_cuda_gptq *g) { return 0; }
bool lb_cuda_kq_encodes(lb_type t, lb_encoder enc) { return false; }
lb_status lb_cuda_comm_new(const int *devices, int n, lb_cuda_comm **out, lb_error *err) {
    *out = NULL;
    return no_cuda(err);
}
void lb_cuda_comm_free(lb_cuda_comm *c) {}
int lb_cuda_comm_size(const lb_cuda_comm *c) { return 0; }
int lb_cuda_comm_nccl_version(void) { return 0; }
lb_status lb_cuda_comm_allreduce_f64(lb_cuda_comm *c, double *const *buf, size_t n, lb_error *err) { return no_cuda(err); }
lb_status lb_cuda_comm_allreduce_host_f64(lb_cuda_comm *c, double *const *host, size_t n, lb_error *err) { return no_cuda(err); }
int lb_cuda_device_count(void) { return 0; }
lb_status lb_cuda_gptq_cd(lb_cuda_gptq *g, lb_type t, const float *W, float *Q, uint8_t *out, size_t row_bytes, float *G, int64_t rows,
                          int64_t n, int sweeps, bool scales, const float *Ht, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_gptq_cd_rows_host(const lb_cd_rows *a, lb_error *err) { return no_cuda(err); }
lb_status lb_cuda_awq_clip(lb_cuda_gptq *g, float *w, int64_t rows, int64_t d, const double *H, lb_type t, lb_encoder enc,
                           const float *imatrix, uint8_t *choice, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_awq_search(lb_cuda_gptq *g, int n_mat, const float *const *w, const int64_t *rows, const lb_type *types, int64_t d,
                             const double *H, const float *cands, int n_cand, int *best, double *best_loss, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_awq_clip_host(float *w, int64_t rows, int64_t d, const double *H, lb_type t, lb_encoder enc, const float *imatrix,
                                uint8_t *choice, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_gptq_ref_factor(lb_cuda_gptq *g, const double *H, int64_t n, double lam, bool upload, bool *ok, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_gptq_ref_apply(lb_cuda_gptq *g, const double *C, const float *s, int64_t n, double lam, float *W, int64_t rows,
                                 bool upload, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_gptq_pass(lb_cuda_gptq *g, lb_type t, const float *W, int64_t rows, int64_t n, int64_t batch, const float *imp,
                            bool static_scales, uint8_t *out, size_t row_bytes, double *loss, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_gptq_pass_host(lb_type t, const float *W, int64_t rows, int64_t n, int64_t batch, const float *U, const float *imp,
                                 bool static_scales, float *T, float *P, float *E, uint8_t *out, size_t row_bytes, double *loss,
                                 lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_kq_encode_host(lb_type t, const float *x, int64_t ldx, int64_t rows, int64_t nblk, const float *imp, uint8_t *y,
                                 int64_t ldy, lb_error *err) {
    return no_cuda(err);
}
lb_status lb_cuda_gptq_encode(lb_cuda_gptq *g, lb_type t, const float *S, int64_t ld, int64_t rows, int64_t c0, int64_t c1,
                              const float *imp, uint8_t *out, size_t row_bytes, lb_error *err) {
    return no_cuda(err);
}
#endif
