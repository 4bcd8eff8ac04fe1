/*
 * matmul.c - the matrix product of the forward pass (see matmul.h): the driver that splits the work into
 * tasks over the thread pool; the arithmetic is in quant/cpu.
 */
#include "matmul.h"

#include "cpu/cpu.h"
#include "mm_tile.h"

#include <stdlib.h>
#include <string.h>

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static size_t act_bytes(int64_t K, int64_t T) { return K % 32 ? 0 : align64((size_t)T * lb_mm_act_row_bytes(K, 32)); }

size_t lb_matmul_scratch_floats(int64_t K, int64_t T, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    return (act_bytes(K, T) + (size_t)n_threads * lb_mm_slot_bytes(K) + 64) / sizeof(float);
}

typedef struct mm_job {
    lb_mm_in in;
    const lb_weight *w;
    float *out;
    int64_t ldo;
    uint8_t *slots; /* per-thread slots of lb_mm_slot_bytes */
    size_t slot_stride;
} mm_job;

static void tile_task(void *arg, int64_t task, int thread) {
    const mm_job *j = arg;
    int64_t r0 = task * MM_TILE_ROWS;
    int R = (int)(j->w->rows - r0 < MM_TILE_ROWS ? j->w->rows - r0 : MM_TILE_ROWS);
    lb_mm_tile(&j->in, j->w, r0, R, j->out, j->ldo, j->slots + (size_t)thread * j->slot_stride);
}

static void act_task(void *arg, int64_t t, int thread) {
    const mm_job *j = arg;
    lb_mm_quantize(&j->in, t, 0, j->in.K);
}

/* several weights' tasks in one pool run: task i of the run is task i - first[p] of job p */
typedef struct mm_multi {
    mm_job jobs[LB_MATMUL_MULTI_MAX];
    int64_t first[LB_MATMUL_MULTI_MAX + 1];
    int n;
} mm_multi;

static void multi_task(void *arg, int64_t task, int thread) {
    const mm_multi *m = arg;
    int p = 0;
    while (task >= m->first[p + 1]) p++;
    tile_task((void *)&m->jobs[p], task - m->first[p], thread);
}

static void run(const lb_cpu_kernels *k, lb_pool *pool, float *scratch, const float *x, int64_t T, const lb_weight *const *w, float *const *out,
                const int64_t *ldo, int n) {
    int64_t K = w[0]->cols, be = lb_mm_act_block(w[0]);
    uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    mm_multi m;
    m.n = n;
    m.first[0] = 0;
    for (int p = 0; p < n; p++) {
        m.jobs[p] = (mm_job){{x, be ? base : NULL, T, K, be, k}, w[p], out[p], ldo[p], base + act_bytes(K, T), lb_mm_slot_bytes(K)};
        m.first[p + 1] = m.first[p] + (w[p]->rows + MM_TILE_ROWS - 1) / MM_TILE_ROWS;
    }
    if (be) { /* the activations once, for every weight */
        if (T == 1) act_task(&m.jobs[0], 0, 0);
        else lb_pool_run(pool, T, act_task, &m.jobs[0]);
    }
    if (n == 1) lb_pool_run(pool, m.first[1], tile_task, &m.jobs[0]);
    else lb_pool_run(pool, m.first[n], multi_task, &m);
}

void lb_matmul(lb_pool *pool, float *scratch, const float *x, int64_t T, const lb_weight *w, float *out, int64_t ldo) {
    run(lb_cpu_kernels_best(), pool, scratch, x, T, &w, &out, &ldo, 1);
}

void lb_matmul_multi(lb_pool *pool, float *scratch, const float *x, int64_t T, const lb_weight *const *w, float *const *out,
                     const int64_t *ldo, int n) {
    int s = 0;
    while (s < n) { /* runs of weights that share the activation format */
        int e = s + 1;
        int64_t be = lb_mm_act_block(w[s]);
        while (e < n && e - s < LB_MATMUL_MULTI_MAX && lb_mm_act_block(w[e]) == be) e++;
        run(lb_cpu_kernels_best(), pool, scratch, x, T, w + s, out + s, ldo + s, e - s);
        s = e;
    }
}

void lb_matmul_ref(float *scratch, const float *x, int64_t T, const lb_weight *w, float *out, int64_t ldo) {
    run(lb_cpu_kernels_ref(), NULL, scratch, x, T, &w, &out, &ldo, 1);
}

void lb_vec_dots(const float *q, const void *m, int f16, int64_t stride, int64_t n, int64_t D, float *s) {
    const lb_cpu_kernels *k = lb_cpu_kernels_best();
    if (f16) k->vdots_h(q, m, stride, n, D, s);
    else k->vdots(q, m, stride, n, D, s);
}

void lb_vec_wsum(const float *w, const void *m, int f16, int64_t stride, int64_t n, int64_t D, float *o) {
    const lb_cpu_kernels *k = lb_cpu_kernels_best();
    if (f16) k->vwsum_h(w, m, stride, n, D, o);
    else k->vwsum(w, m, stride, n, D, o);
}

void lb_vec_dotsq(const float *q, int64_t ldq, int nq, const void *m, int f16, int64_t stride, int64_t n, int64_t D, float *s,
                  int64_t lds) {
    const lb_cpu_kernels *k = lb_cpu_kernels_best();
    if (f16) k->vdotsq_h(q, ldq, nq, m, stride, n, D, s, lds);
    else k->vdotsq(q, ldq, nq, m, stride, n, D, s, lds);
}

void lb_vec_wsumq(const float *w, int64_t ldw, int nq, const int64_t *n, const void *m, int f16, int64_t stride, int64_t D,
                  float *o, int64_t ldo) {
    const lb_cpu_kernels *k = lb_cpu_kernels_best();
    if (f16) k->vwsumq_h(w, ldw, nq, n, m, stride, D, o, ldo);
    else k->vwsumq(w, ldw, nq, n, m, stride, D, o, ldo);
}

void lb_vec_softmax(float *s, int64_t n, float scale) { lb_cpu_kernels_best()->softmax(s, n, scale); }

void lb_vec_swiglu(float *g, const float *u, int64_t n, int64_t rows, int64_t ld) {
    lb_cpu_kernels_best()->swiglu(g, u, n, rows, ld);
}

const char *lb_matmul_impl(void) { return lb_cpu_kernels_best()->name; }

const char *lb_cpu_kernels_name(void) { return lb_matmul_impl(); }
