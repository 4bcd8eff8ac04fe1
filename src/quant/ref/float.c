/*
 * float.c - reference kernels of the plain float types F32, F16 and BF16 (ggml's conventions: F16 via
 * IEEE round-to-nearest-even, BF16 rounding as in docs/formats.md 2.4, dots accumulated in double as
 * ggml's ggml_vec_dot_f16 reference does in float; the importance matrix is ignored).
 */
#include "../../core/core.h"
#include "ref.h"

#include <string.h>

void dequantize_row_f32_ref(const void *x, float *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }
void quantize_row_f32_ref(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }
void quantize_f32_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    memcpy(y, x, (size_t)(nrows * n_per_row) * sizeof(float));
}

void dequantize_row_f16_ref(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = lb_fp16_to_f32(h);
    }
}
void quantize_row_f16_ref(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = lb_f32_to_fp16(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}
void quantize_f16_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_row_f16_ref(x, y, nrows * n_per_row);
}

void dequantize_row_bf16_ref(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = lb_bf16_to_f32(h);
    }
}
void quantize_row_bf16_ref(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = lb_f32_to_bf16(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}
void quantize_bf16_ref(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    quantize_row_bf16_ref(x, y, nrows * n_per_row);
}

static void dot_generic(int64_t n, float *s, const void *x, const void *y, void (*to_float)(const void *, float *, int64_t),
                        size_t es) {
    double acc = 0.0;
    float a[64], b[64];
    for (int64_t i = 0; i < n; i += 64) {
        int64_t m = n - i < 64 ? n - i : 64;
        to_float((const uint8_t *)x + (size_t)i * es, a, m);
        to_float((const uint8_t *)y + (size_t)i * es, b, m);
        for (int64_t j = 0; j < m; j++) acc += (double)a[j] * (double)b[j];
    }
    *s = (float)acc;
}

void vec_dot_f32_f32_ref(int64_t n, float *s, const void *x, const void *y) { dot_generic(n, s, x, y, dequantize_row_f32_ref, 4); }
void vec_dot_f16_f16_ref(int64_t n, float *s, const void *x, const void *y) { dot_generic(n, s, x, y, dequantize_row_f16_ref, 2); }
void vec_dot_bf16_bf16_ref(int64_t n, float *s, const void *x, const void *y) { dot_generic(n, s, x, y, dequantize_row_bf16_ref, 2); }
