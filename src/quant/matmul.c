/*
 * matmul.c - the matrix product of the forward pass (see matmul.h): the driver that splits the work into
 * tasks over the thread pool; the arithmetic is in quant/cpu.
 */
#include "matmul.h"

#include "cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

/* Tokens per cache block of the quantized product: their activations stay resident while the tile's rows
 * pass over them. */
#define MM_QTOKENS 64

_Static_assert(MM_TILE_ROWS == LB_QTILE_ROWS, "a task's rows are one interleaved tile");

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* bytes of one thread's slot: an f32 tile or an unpacked tile, whichever is larger */
static size_t slot_bytes(int64_t K) {
    size_t f = lb_fgemm_slot_bytes(K), q = 0;
    if (K % 32 == 0) {
        q = (size_t)MM_TILE_ROWS * lb_qrow_bytes(K, 32);
        size_t it = lb_qtile_bytes(K, 32) + lb_qrow_bytes(K, 32);
        if (it > q) q = it;
    }
    return align64(f > q ? f : q);
}

static size_t act_bytes(int64_t K, int64_t T) { return K % 32 ? 0 : align64((size_t)T * lb_act_bytes(K, 32)); }

size_t lb_matmul_scratch_floats(int64_t K, int64_t T, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    return (act_bytes(K, T) + (size_t)n_threads * slot_bytes(K) + 64) / sizeof(float);
}

typedef struct mm_job {
    const lb_cpu_kernels *k;
    const float *x;
    int64_t T;
    const lb_weight *w;
    float *out;
    int64_t ldo;
    uint8_t *act, *slots; /* quantized activations (T rows), per-thread slots */
    size_t act_stride, slot_stride, row_stride;
    int64_t be;
} mm_job;

static void float_task(void *arg, int64_t task, int thread) {
    const mm_job *j = arg;
    int64_t r0 = task * MM_TILE_ROWS, K = j->w->cols;
    int R = (int)(j->w->rows - r0 < MM_TILE_ROWS ? j->w->rows - r0 : MM_TILE_ROWS);
    if (j->k->fgemv && j->T == 1) {
        j->k->fgemv(j->w, r0, R, j->x, j->out + r0);
        return;
    }
    if (j->k->fgemm && j->T >= LB_FGEMM_MIN_T) {
        j->k->fgemm(j->w, r0, R, j->x, j->T, j->out + r0, j->ldo, j->slots + (size_t)thread * j->slot_stride);
        return;
    }
    const float *wt;
    if (j->w->type == LB_TYPE_F32) {
        wt = (const float *)j->w->data + r0 * K;
    } else {
        float *buf = (float *)(j->slots + (size_t)thread * j->slot_stride);
        j->k->fconv(j->w, r0, R, buf);
        wt = buf;
    }
    j->k->ftile(j->x, j->T, K, wt, R, j->out + r0, j->ldo);
}

static void quant_task(void *arg, int64_t task, int thread) {
    const mm_job *j = arg;
    int64_t r0 = task * MM_TILE_ROWS, K = j->w->cols;
    int R = (int)(j->w->rows - r0 < MM_TILE_ROWS ? j->w->rows - r0 : MM_TILE_ROWS);
    uint8_t *slot = j->slots + (size_t)thread * j->slot_stride;
    size_t wrow = lb_weight_row_bytes(j->w);
    if (j->T > 1 && j->k->qgemm) { /* an interleaved tile against every token */
        const uint8_t *src = (const uint8_t *)j->w->data + (size_t)r0 * wrow;
        lb_qtile tile = lb_qtile_pack(j->w->type, j->k->unpack[j->w->type], src, wrow, R, K, slot, slot + lb_qtile_bytes(K, j->be));
        j->k->qgemm(&tile, R, j->act, j->act_stride, j->T, K, j->be, j->out + r0, j->ldo);
        return;
    }
    bool has_min = lb_qtype_has_min(j->w->type);
    lb_qrow rows[MM_TILE_ROWS];
    for (int r = 0; r < R; r++) {
        rows[r] = lb_qrow_at(slot + (size_t)r * j->row_stride, K, j->be);
        j->k->unpack[j->w->type]((const uint8_t *)j->w->data + (size_t)(r0 + r) * wrow, K, &rows[r]);
    }
    for (int64_t t0 = 0; t0 < j->T; t0 += MM_QTOKENS) {
        int64_t t1 = j->T - t0 < MM_QTOKENS ? j->T : t0 + MM_QTOKENS;
        for (int r = 0; r < R; r++)
            for (int64_t t = t0; t < t1; t += 4) {
                lb_act a[4];
                int nt = (int)(t1 - t < 4 ? t1 - t : 4);
                for (int i = 0; i < nt; i++) a[i] = lb_act_at(j->act + (size_t)(t + i) * j->act_stride, K, j->be);
                j->k->qdot(&rows[r], a, nt, K, j->be, has_min, j->out + t * j->ldo + r0 + r, j->ldo);
            }
    }
}

/* one token: fused products straight from the packed rows */
static void gemv_task(void *arg, int64_t task, int thread) {
    const mm_job *j = arg;
    int64_t r0 = task * MM_TILE_ROWS, K = j->w->cols;
    int64_t r1 = j->w->rows - r0 < MM_TILE_ROWS ? j->w->rows : r0 + MM_TILE_ROWS;
    size_t wrow = lb_weight_row_bytes(j->w);
    lb_gemv1_fn f = j->k->gemv1[j->w->type];
    lb_act a = lb_act_at(j->act, K, j->be);
    const uint8_t *base = j->w->data;
    if (j->k->gemvr[j->w->type]) {
        j->k->gemvr[j->w->type](base + (size_t)r0 * wrow, wrow, (int)(r1 - r0), K, &a, j->out + r0);
        return;
    }
    for (int64_t r = r0; r < r1; r++) j->out[r] = f(base + (size_t)r * wrow, K, &a);
}

static void act_task(void *arg, int64_t t, int thread) {
    const mm_job *j = arg;
    int64_t K = j->w->cols;
    lb_act a = lb_act_at(j->act + (size_t)t * j->act_stride, K, j->be);
    j->k->actq(j->x + t * K, K, j->be, &a);
}

/* several weights' tasks in one pool run: task i of the run is task i - first[p] of job p */
typedef struct mm_multi {
    mm_job jobs[LB_MATMUL_MULTI_MAX];
    lb_task_fn fn[LB_MATMUL_MULTI_MAX];
    int64_t first[LB_MATMUL_MULTI_MAX + 1];
    int n;
} mm_multi;

static void multi_task(void *arg, int64_t task, int thread) {
    const mm_multi *m = arg;
    int p = 0;
    while (task >= m->first[p + 1]) p++;
    m->fn[p]((void *)&m->jobs[p], task - m->first[p], thread);
}

static bool quant_path(const lb_cpu_kernels *k, const lb_weight *w) {
    return lb_type_traits_get(w->type)->is_quant && k->unpack[w->type];
}

static void run(const lb_cpu_kernels *k, lb_pool *pool, float *scratch, const float *x, int64_t T, const lb_weight *const *w,
                float *const *out, const int64_t *ldo, int n) {
    int64_t K = w[0]->cols;
    uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    bool quant = quant_path(k, w[0]);
    int64_t be = lb_type_traits_get(w[0]->type)->block_elems;
    mm_multi m;
    m.n = n;
    m.first[0] = 0;
    for (int p = 0; p < n; p++) {
        mm_job j = {k, x, T, w[p], out[p], ldo[p], NULL, base, 0, slot_bytes(K), 0, be};
        if (quant) {
            j.act = base;
            j.slots = base + act_bytes(K, T);
            j.act_stride = lb_act_bytes(K, be);
            j.row_stride = lb_qrow_bytes(K, be);
            m.fn[p] = T == 1 && (k->gemv1[w[p]->type] || k->gemvr[w[p]->type]) ? gemv_task : quant_task;
        } else {
            m.fn[p] = float_task;
        }
        m.jobs[p] = j;
        m.first[p + 1] = m.first[p] + (w[p]->rows + MM_TILE_ROWS - 1) / MM_TILE_ROWS;
    }
    if (quant) { /* the activations once, for every weight */
        if (T == 1) act_task(&m.jobs[0], 0, 0);
        else lb_pool_run(pool, T, act_task, &m.jobs[0]);
    }
    if (n == 1) lb_pool_run(pool, m.first[1], m.fn[0], &m.jobs[0]);
    else lb_pool_run(pool, m.first[n], multi_task, &m);
}

void lb_matmul(lb_pool *pool, float *scratch, const float *x, int64_t T, const lb_weight *w, float *out, int64_t ldo) {
    run(lb_cpu_kernels_best(), pool, scratch, x, T, &w, &out, &ldo, 1);
}

void lb_matmul_multi(lb_pool *pool, float *scratch, const float *x, int64_t T, const lb_weight *const *w, float *const *out,
                     const int64_t *ldo, int n) {
    const lb_cpu_kernels *k = lb_cpu_kernels_best();
    int s = 0;
    while (s < n) { /* runs of weights that share the activation format */
        int e = s + 1;
        bool q = quant_path(k, w[s]);
        int64_t be = lb_type_traits_get(w[s]->type)->block_elems;
        while (e < n && e - s < LB_MATMUL_MULTI_MAX && quant_path(k, w[e]) == q &&
               (!q || lb_type_traits_get(w[e]->type)->block_elems == be))
            e++;
        run(k, pool, scratch, x, T, w + s, out + s, ldo + s, e - s);
        s = e;
    }
}

void lb_matmul_ref(float *scratch, const float *x, int64_t T, const lb_weight *w, float *out, int64_t ldo) {
    run(lb_cpu_kernels_ref(), NULL, scratch, x, T, &w, &out, &ldo, 1);
}

void lb_vec_dots(const float *q, const float *m, int64_t stride, int64_t n, int64_t D, float *s) {
    lb_cpu_kernels_best()->vdots(q, m, stride, n, D, s);
}

void lb_vec_wsum(const float *w, const float *m, int64_t stride, int64_t n, int64_t D, float *o) {
    lb_cpu_kernels_best()->vwsum(w, m, stride, n, D, o);
}

const char *lb_matmul_impl(void) { return lb_cpu_kernels_best()->name; }

const char *lb_cpu_kernels_name(void) { return lb_matmul_impl(); }
