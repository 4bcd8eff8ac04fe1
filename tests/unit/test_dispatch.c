/*
 * test_dispatch.c - the CPU kernel tables are safe to ask for from several threads at once.
 *
 * The encoders ask for lb_cpu_kernels_best() from the pool's threads, so in a fresh process the first
 * calls can come at the same moment. Every caller must get a complete table: a table whose name is set
 * while an entry is still NULL makes the caller jump to address 0. Each round forks a fresh process
 * (the tables are chosen once per process), starts threads that wait at a spin barrier, and has every
 * thread check the table it got. The tables are also checked once more in this process, each alone.
 * No interleaving can be forced from outside: the rounds make a bad one likely (with the tables filled
 * by a plain first-call copy, this test saw 1-2 bad rounds in every run of 400 on a 2-core machine).
 */
#include "quant/cpu/cpu.h"
#include "test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 8
#define ROUNDS 400

static atomic_int arrived, go;

/* Whether every entry a kernel table must have is set (the optional ones may be NULL by design). */
static int complete(const lb_cpu_kernels *k) {
    if (!k || !k->name || !k->qdot || !k->actq || !k->ftile || !k->fconv || !k->vdots || !k->vwsum ||
        !k->vdotsq || !k->vwsumq || !k->vdots_h || !k->vwsum_h || !k->vdotsq_h || !k->vwsumq_h ||
        !k->softmax || !k->swiglu || !k->vexp || !k->qkx)
        return 0;
    static const lb_type weights[] = {LB_TYPE_Q4_0, LB_TYPE_Q4_1, LB_TYPE_Q5_0, LB_TYPE_Q5_1, LB_TYPE_Q8_0,
                                      LB_TYPE_Q2_K, LB_TYPE_Q3_K, LB_TYPE_Q4_K, LB_TYPE_Q5_K, LB_TYPE_Q6_K,
                                      LB_TYPE_IQ4_NL, LB_TYPE_IQ4_XS};
    for (size_t i = 0; i < sizeof weights / sizeof weights[0]; i++)
        if (!k->unpack[weights[i]]) return 0;
    return 1;
}

typedef struct {
    int which; /* 0 best, 1 avx2, 2 avx512vnni, 3 the type table */
    int ok;
} job;

static void *racer(void *v) {
    job *j = v;
    atomic_fetch_add(&arrived, 1);
    while (!atomic_load(&go)) {
    }
    if (j->which == 3) {
        j->ok = 1;
        for (int t = 0; t < LB_TYPE_COUNT; t++) {
            const lb_type_traits *tr = lb_type_traits_get((lb_type)t);
            if (tr && tr->weight_type && !tr->vec_dot_ref) j->ok = 0;
        }
        return NULL;
    }
    const lb_cpu_kernels *k = j->which == 0 ? lb_cpu_kernels_best()
                            : j->which == 1 ? lb_cpu_kernels_avx2()
                                            : lb_cpu_kernels_avx512vnni();
    j->ok = j->which == 0 ? complete(k) : (k == NULL || complete(k)); /* NULL: the CPU lacks the features */
    return NULL;
}

/* One fresh process: THREADS threads ask for the tables at once; exit status 0 when all got complete ones. */
static int one_round(int round) {
    pthread_t t[THREADS];
    job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i].which = (i + round) % 4;
        jobs[i].ok = 0;
        if (pthread_create(&t[i], NULL, racer, &jobs[i]) != 0) return 2;
    }
    while (atomic_load(&arrived) < THREADS) sched_yield();
    atomic_store(&go, 1);
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        bad += !jobs[i].ok;
    }
    return bad ? 1 : 0;
}

int main(void) {
    int failed = 0, crashed = 0;
    for (int r = 0; r < ROUNDS; r++) {
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork failed");
        if (pid == 0) _exit(one_round(r));
        int st = 0;
        REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid failed");
        if (WIFSIGNALED(st))
            crashed++;
        else if (WEXITSTATUS(st) != 0)
            failed++;
    }
    CHECK(crashed == 0, "%d of %d rounds crashed", crashed, ROUNDS);
    CHECK(failed == 0, "%d of %d rounds saw an incomplete kernel table", failed, ROUNDS);

    CHECK(complete(lb_cpu_kernels_ref()), "the reference table is incomplete");
    CHECK(complete(lb_cpu_kernels_best()), "the chosen table is incomplete");
    const lb_cpu_kernels *a = lb_cpu_kernels_avx2(), *z = lb_cpu_kernels_avx512vnni();
    CHECK(!a || complete(a), "the AVX2 table is incomplete");
    CHECK(!z || complete(z), "the AVX-512 table is incomplete");
    printf("tables: best %s, avx2 %s, avx512vnni %s\n", lb_cpu_kernels_best()->name, a ? "yes" : "no",
           z ? "yes" : "no");
    TEST_DONE();
}
