/*
 * pool.c - a small pthread pool. lb_pool_run() hands out task indices from an atomic counter to the
 * workers and the caller, then waits for all of them.
 *
 * Between runs a worker first polls the run counter for a short while (LB_POOL_SPIN_US, default 200
 * microseconds) and only then sleeps on a condition variable; the caller likewise polls for the workers'
 * completion before it sleeps. Decoding one token issues a few hundred short runs, and a condition-variable
 * wake-up costs tens of microseconds on a virtual machine, more than many of those runs take: polling
 * keeps the hand-over in the cache. The polling is bounded so that an idle pool costs no CPU, and a
 * loaded machine loses at most one poll window per run. Which thread runs which task never affects the
 * results (see lb_pool_run's contract), so none of this changes any output.
 *
 * lb_pool_run_stages() runs several dependent steps as one run: the threads pass from one stage to the next
 * through a shared count of finished tasks, as a barrier would, without a new hand-over per step; a thread
 * waiting there polls for the same bounded time and then sleeps.
 */
#include "core.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The counters every task touches (next, done) and the run's hand-over (generation, active) each have a
 * cache line of their own, apart from the fields that are only read during a run. */
#define LINE 64

struct lb_pool {
    int n_threads;
    pthread_t *threads;
    int64_t spin_ns;          /* how long to poll before sleeping */
    lb_task_fn fn;            /* a plain run, or */
    lb_stage_fn sfn;          /* a staged run, with */
    const int64_t *ends;      /* its stages' ends */
    void *arg;
    int64_t n_tasks;
    atomic_int stage_sleepers; /* threads asleep on stage_cv, waiting for `done` */
    pthread_mutex_t mu;
    pthread_cond_t start_cv, done_cv, stage_cv;
    _Alignas(LINE) atomic_ullong generation; /* bumped per run, after fn/arg/n_tasks/next are set */
    atomic_int active;        /* workers still inside the current run */
    atomic_int stop;
    _Alignas(LINE) atomic_llong next;
    _Alignas(LINE) atomic_llong done; /* tasks of a staged run finished */
};

typedef struct worker_arg {
    lb_pool *pool;
    int id;
} worker_arg;

int lb_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Poll until done(p, v) or spin_ns have passed; returns whether done. */
static bool poll_until(const lb_pool *p, bool (*done)(const lb_pool *, uint64_t), uint64_t v) {
    if (done(p, v)) return true;
    if (p->spin_ns <= 0) return false;
    int64_t t_end = now_ns() + p->spin_ns;
    for (;;) {
        for (int i = 0; i < 32; i++) {
            cpu_relax();
            if (done(p, v)) return true;
        }
        if (now_ns() >= t_end) return false;
    }
}

static bool run_started(const lb_pool *p, uint64_t seen) {
    return atomic_load_explicit(&((lb_pool *)p)->generation, memory_order_acquire) != seen ||
           atomic_load_explicit(&((lb_pool *)p)->stop, memory_order_relaxed);
}

static bool workers_done(const lb_pool *p, uint64_t unused) {
    (void)unused;
    return atomic_load_explicit(&((lb_pool *)p)->active, memory_order_acquire) == 0;
}

/* Tasks are handed out in index order, so when a task of stage s is handed out every task before it is
 * running or done, and `done` reaching the stage's first index means all of those have finished: tasks of
 * stage s and later cannot finish before that. A thread's stage only moves forward. */
static bool stage_ready(const lb_pool *p, uint64_t need) {
    return (uint64_t)atomic_load(&((lb_pool *)p)->done) >= need;
}

/* Wait until `need` tasks have finished: poll, then sleep (a loaded machine may have descheduled the thread
 * that runs the last of them; polling would keep it off the core). The sleeper count and `done` are both
 * sequentially consistent, so a finishing thread either sees the sleeper or the sleeper sees its count. */
static void wait_stage(lb_pool *p, int64_t need) {
    if (poll_until(p, stage_ready, (uint64_t)need)) return;
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->stage_sleepers, 1);
    while (!stage_ready(p, (uint64_t)need)) pthread_cond_wait(&p->stage_cv, &p->mu);
    atomic_fetch_sub(&p->stage_sleepers, 1);
    pthread_mutex_unlock(&p->mu);
}

static void drain_stages(lb_pool *p, int id) {
    const int64_t *ends = p->ends, n = p->n_tasks;
    lb_stage_fn fn = p->sfn;
    void *arg = p->arg;
    int s = 0;
    for (;;) {
        int64_t t = atomic_fetch_add(&p->next, 1);
        if (t >= n) break;
        while (t >= ends[s]) s++;
        int64_t start = s ? ends[s - 1] : 0;
        if (start > 0) wait_stage(p, start);
        fn(arg, s, t - start, id);
        atomic_fetch_add(&p->done, 1);
        if (atomic_load(&p->stage_sleepers) > 0) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_broadcast(&p->stage_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void drain(lb_pool *p, int id) {
    if (p->sfn) {
        drain_stages(p, id);
        return;
    }
    const int64_t n = p->n_tasks;
    lb_task_fn fn = p->fn;
    void *arg = p->arg;
    for (;;) {
        int64_t t = atomic_fetch_add(&p->next, 1);
        if (t >= n) break;
        fn(arg, t, id);
    }
}

static void *worker_main(void *v) {
    worker_arg *wa = v;
    lb_pool *p = wa->pool;
    int id = wa->id;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        if (!poll_until(p, run_started, seen)) {
            pthread_mutex_lock(&p->mu);
            while (!run_started(p, seen)) pthread_cond_wait(&p->start_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        drain(p, id);
        if (atomic_fetch_sub_explicit(&p->active, 1, memory_order_acq_rel) == 1) {
            /* the last worker out wakes the caller in case it went to sleep (it checks under mu) */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

static int64_t spin_ns_from_env(void) {
    const char *e = getenv("LB_POOL_SPIN_US");
    if (e && *e) {
        char *end;
        long v = strtol(e, &end, 10);
        if (*end == 0 && v >= 0 && v <= 1000000) return (int64_t)v * 1000;
    }
    return 200 * 1000;
}

lb_pool *lb_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    lb_pool *p = aligned_alloc(LINE, sizeof *p);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->n_threads = n_threads;
    p->spin_ns = spin_ns_from_env();
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    pthread_cond_init(&p->stage_cv, NULL);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            lb_pool_free(p);
            return NULL;
        }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) {
                wa->pool = p;
                wa->id = i;
            }
            if (!wa || pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                p->n_threads = i; /* only i-1 workers exist */
                lb_pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void lb_pool_free(lb_pool *p) {
    if (!p) return;
    if (p->threads) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->stop, 1);
        pthread_cond_broadcast(&p->start_cv);
        pthread_mutex_unlock(&p->mu);
        for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i - 1], NULL);
        free(p->threads);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start_cv);
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->stage_cv);
    free(p);
}

int lb_pool_size(const lb_pool *p) { return p ? p->n_threads : 1; }

/* hand the run set up in p->fn / p->sfn, p->arg, p->n_tasks to the workers, take part, wait for them */
static void run_all(lb_pool *p) {
    /* every worker has left the previous run (active reached 0), so these plain stores are unobserved
       until the release of the new generation below */
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->active, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu); /* a worker about to sleep checks the generation under mu */
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    if (!poll_until(p, workers_done, 0)) {
        pthread_mutex_lock(&p->mu);
        while (!workers_done(p, 0)) pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

void lb_pool_run(lb_pool *p, int64_t n_tasks, lb_task_fn fn, void *arg) {
    if (n_tasks <= 0) return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    p->fn = fn;
    p->sfn = NULL;
    p->arg = arg;
    p->n_tasks = n_tasks;
    run_all(p);
}

void lb_pool_run_stages(lb_pool *p, int n_stages, const int64_t *ends, lb_stage_fn fn, void *arg) {
    int64_t n_tasks = n_stages > 0 ? ends[n_stages - 1] : 0;
    if (n_tasks <= 0) return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int s = 0; s < n_stages; s++)
            for (int64_t t = s ? ends[s - 1] : 0; t < ends[s]; t++) fn(arg, s, t - (s ? ends[s - 1] : 0), 0);
        return;
    }
    p->fn = NULL;
    p->sfn = fn;
    p->ends = ends;
    p->arg = arg;
    p->n_tasks = n_tasks;
    run_all(p);
}

bool lb_cpu_has_f16c(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
#else
    return false;
#endif
}
