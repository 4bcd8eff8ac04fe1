/*
 * cuda_test.h - what the GPU calibration tests (test_cuda_calib, test_cuda_gptq) share: tiny quantized with
 * a method on a device, two files compared byte for byte, a file's KL divergence against its base on the
 * GPU, a text file tokenized, and the GPTQ objective of a quantized matrix.
 */
#ifndef LB_CUDA_TEST_H
#define LB_CUDA_TEST_H

#include "lowbit.h"
#include "model/model.h"
#include "test.h"
#include "gptq_test.h"
#include "test_tokens.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const lb_device cuda0 = {LB_DEVICE_CUDA, 0};

/* models/tiny to q4_k_m at path by method on dev (n_devices: lb_quantize_params' device set, 0 for dev alone),
 * 4,096 calibration tokens of calib; on a GPU the report must show its peak and no matrix fallen back to the CPU */
static inline void quantize_tiny_set(const char *method, lb_device dev, int n_devices, const int32_t *calib, int64_t n_calib,
                                     const char *path) {
    lb_quantize_params qp = lb_quantize_default_params();
    qp.ftype = "q4_k_m";
    qp.n_threads = 0; /* all CPUs: the result is the same for any count */
    qp.method = (lb_method)lb_method_from_name(method);
    qp.calib_tokens = calib;
    qp.n_calib_tokens = n_calib;
    qp.calib_n_tokens = 4096;
    qp.device = dev;
    qp.n_devices = n_devices;
    lb_quantize_report r;
    lb_error e;
    REQUIRE(lb_quantize_model("models/tiny", path, &qp, &r, &e) == LB_OK, "%s on %s (%d devices): %s", method,
            dev.kind ? "cuda" : "cpu", n_devices, e.msg);
    CHECK((r.gpu_peak_bytes > 0) == (dev.kind == LB_DEVICE_CUDA), "%s: gpu_peak_bytes %zu", method, r.gpu_peak_bytes);
    CHECK(r.gpu_fallbacks == 0, "%s: %lld fallbacks (%s)", method, (long long)r.gpu_fallbacks, r.gpu_fallback_reason);
    lb_quantize_report_free(&r);
}
static inline void quantize_tiny(const char *method, lb_device dev, const int32_t *calib, int64_t n_calib, const char *path) {
    quantize_tiny_set(method, dev, 0, calib, n_calib, path);
}

/* where two byte arrays first differ, as "byte O (block B, row R)" for blocks of bb bytes in rows of rb bytes
 * (what a failed comparison prints, so that a mismatch on the GPU says where it is); "nowhere" when equal */
static inline const char *where_differ(const void *a, const void *b, size_t n, size_t bb, size_t rb) {
    static char buf[96];
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    size_t i = 0, count = 0;
    while (i < n && x[i] == y[i]) i++;
    if (i == n) return "nowhere";
    for (size_t k = i; k < n; k++) count += x[k] != y[k];
    snprintf(buf, sizeof buf, "byte %zu (row %zu, block %zu, byte %zu of it; %zu bytes differ)", i, rb ? i / rb : 0,
             rb && bb ? i % rb / bb : 0, bb ? i % rb % bb : 0, count);
    return buf;
}

static inline bool same_file(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    lb_error e;
    REQUIRE(lb_read_file(a, (size_t)1 << 30, &x, &nx, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_read_file(b, (size_t)1 << 30, &y, &ny, &e) == LB_OK, "%s", e.msg);
    bool same = nx == ny && !memcmp(x, y, nx);
    lb_free(x);
    lb_free(y);
    return same;
}

/* mean KL(base || the model at path) over 16 windows of 256 tokens of ids, evaluated on dev (kld: the GPU) */
static inline double kld_on(const char *path, const lb_model *base, const int32_t *ids, int64_t n_ids, lb_device dev) {
    lb_model *m = NULL;
    lb_error e;
    REQUIRE(lb_model_load(path, &m, &e) == LB_OK, "%s", e.msg);
    lb_eval_params p = lb_eval_default_params();
    p.ctx = 256;
    p.max_chunks = 16;
    p.device = dev;
    lb_eval_result r;
    REQUIRE(lb_eval_perplexity(m, base, ids, n_ids, &p, &r, &e) == LB_OK, "%s", e.msg);
    lb_model_free(m);
    return r.kld_mean;
}
static inline double kld(const char *path, const lb_model *base, const int32_t *ids, int64_t n_ids) {
    return kld_on(path, base, ids, n_ids, cuda0);
}

/* models/tiny, its tokenizer, and the calibration and validation texts as its tokens */
typedef struct tiny_fixture {
    lb_model *m;
    lb_tokenizer *tok;
    int32_t *calib, *valid;
    int64_t n_calib, n_valid;
} tiny_fixture;

static inline tiny_fixture tiny_load(void) {
    tiny_fixture f;
    lb_error e;
    REQUIRE(lb_model_load("models/tiny", &f.m, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_tokenizer_load("models/tiny", &f.tok, &e) == LB_OK, "%s", e.msg);
    f.calib = tokenize(f.tok, "tests/golden/data/wikitext-2-test.txt", &f.n_calib);
    f.valid = tokenize(f.tok, "tests/golden/data/valid.txt", &f.n_valid);
    return f;
}

static inline void tiny_free(tiny_fixture *f) {
    lb_free(f->calib), lb_free(f->valid);
    lb_tokenizer_free(f->tok);
    lb_model_free(f->m);
}

/* the GPTQ objective tr(E H E^T) / 2 of E = W0 - Q, rows x d, H (d, d) */
static inline double objective(const float *W0, const float *Q, int64_t rows, int64_t d, const double *H) {
    return gptq_proxy(W0, Q, rows, d, H) / 2;
}

#endif
