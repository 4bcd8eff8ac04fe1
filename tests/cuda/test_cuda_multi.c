/*
 * test_cuda_multi.c - NCCL collectives between the GPUs this process sees (cuda/comm.h), on as many as there
 * are, one included (a one-rank communicator). Needs a GPU.
 *
 * - all-reduce of doubles: every rank's array becomes the sum over the ranks, exactly (the values are small
 *   multiples of 1/4, whose sums are exact in any order), for sizes 1, 1000 and 3,000,017 (not a multiple
 *   of anything NCCL chunks by), and twice in a row on the same communicator; size 0 does nothing;
 * - every subset size 1..n of the visible devices, in reverse order too (rank r need not be device r);
 * - a device named twice, a device that does not exist, zero devices: LB_ERR_ARG / LB_ERR_DEVICE, one line.
 * - calibrated quantize (tiny, q4_k_m, imatrix and gptq) with its statistics over the set of all visible GPUs
 *   (cuda:all, algo/calib_gpus.c): with one GPU the one-rank path gives the one-device file byte for byte
 *   (the all-reduce of one rank changes nothing); with several, the windows are split and the sums meet in
 *   NCCL's order, so KL divergence within 0.5 % of the one-device file's (the bound), and the same
 *   bytes for two runs.
 * - GPTQ's matrices of a layer stage solved side by side (lb_calib_solvers): two solvers on the first GPU
 *   (LB_CALIB_SOLVERS=2) give the one-solver file byte for byte; over several GPUs the set runs one per rank.
 * - the layers of a model split over a pipeline of GPUs (eval / run with cuda:N,M,...): tiny (F32) and tiny
 *   at q4_k_m through pipelines of 2 and 4 stages on device 0 repeated (the whole path on one GPU: the
 *   residual stream copied between stages, each stage's own KV cache and weights), and through the set of
 *   all visible GPUs when there are several: a 40-token prompt's logits at every position, six decode steps
 *   and the scoring against a base (NLL, argmax, KL), all bit for bit the one-device context's.
 */
#include "cuda/comm.h"
#include "cuda/cuda.h"
#include "test.h"
#include "cuda_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void check_allreduce(const int *dev, int n, size_t len) {
    lb_cuda_comm *c = NULL;
    lb_error e;
    REQUIRE(lb_cuda_comm_new(dev, n, &c, &e) == LB_OK, "%s", e.msg);
    CHECK(lb_cuda_comm_size(c) == n, "size %d, not %d", lb_cuda_comm_size(c), n);
    double *h[LB_MAX_RANKS];
    for (int round = 0; round < 2; round++) {
        for (int r = 0; r < n; r++) {
            h[r] = malloc((len ? len : 1) * sizeof **h);
            REQUIRE(h[r], "out of memory");
            for (size_t i = 0; i < len; i++) h[r][i] = 0.25 * (double)((i * 7 + (size_t)r * 13 + (size_t)round) % 101) - 3.0 * r;
        }
        REQUIRE(lb_cuda_comm_allreduce_host_f64(c, h, len, &e) == LB_OK, "%s", e.msg);
        size_t bad = 0;
        for (size_t i = 0; i < len; i++) {
            double want = 0;
            for (int r = 0; r < n; r++) want += 0.25 * (double)((i * 7 + (size_t)r * 13 + (size_t)round) % 101) - 3.0 * r;
            for (int r = 0; r < n; r++) bad += h[r][i] != want;
        }
        CHECK(bad == 0, "all-reduce of %zu doubles over %d ranks (round %d): %zu wrong", len, n, round, bad);
        for (int r = 0; r < n; r++) free(h[r]);
    }
    CHECK(lb_cuda_comm_allreduce_f64(c, NULL, 0, &e) == LB_OK, "an all-reduce of nothing failed");
    lb_cuda_comm_free(c);
}

static void check_calibration(int nd) {
    tiny_fixture f = tiny_load();
    const char *methods[] = {"imatrix", "gptq"};
    for (int i = 0; i < 2; i++) {
        char a[128], b[128], c[128];
        snprintf(a, sizeof a, "/tmp/lowbit-multi-%d-%s-one.gguf", (int)getpid(), methods[i]);
        snprintf(b, sizeof b, "/tmp/lowbit-multi-%d-%s-set.gguf", (int)getpid(), methods[i]);
        snprintf(c, sizeof c, "/tmp/lowbit-multi-%d-%s-set2.gguf", (int)getpid(), methods[i]);
        quantize_tiny_set(methods[i], cuda0, 0, f.calib, f.n_calib, a);
        quantize_tiny_set(methods[i], cuda0, -1, f.calib, f.n_calib, b);
        quantize_tiny_set(methods[i], cuda0, -1, f.calib, f.n_calib, c);
        CHECK(same_file(b, c), "%s over the set: two runs differ", methods[i]);
        if (i == 1) { /* a stage's matrices solved side by side by two GPTQ tables on the first device: the same file */
            char d[128];
            snprintf(d, sizeof d, "/tmp/lowbit-multi-%d-%s-solvers.gguf", (int)getpid(), methods[i]);
            setenv("LB_CALIB_SOLVERS", "2", 1);
            quantize_tiny_set(methods[i], cuda0, 0, f.calib, f.n_calib, d);
            unsetenv("LB_CALIB_SOLVERS");
            CHECK(same_file(a, d), "%s: two solvers on one GPU give another file than one", methods[i]);
            printf("%s: two solvers side by side on cuda:0 = one, byte for byte\n", methods[i]);
            remove(d);
        }
        if (nd == 1) {
            CHECK(same_file(a, b), "%s: the one-rank set gives another file than one device", methods[i]);
            printf("%s: one rank of the set = one device, byte for byte\n", methods[i]);
        } else {
            const double k1 = kld(a, f.m, f.valid, f.n_valid), ks = kld(b, f.m, f.valid, f.n_valid);
            printf("%s: KL(base||q) one GPU %.6f, %d GPUs %.6f (%+.2f %%)\n", methods[i], k1, nd, ks, 100 * (ks / k1 - 1));
            CHECK(fabs(ks / k1 - 1) < 0.005, "%s: KL over %d GPUs %.6g against one GPU %.6g", methods[i], nd, ks, k1);
        }
        remove(a), remove(b), remove(c);
    }
    tiny_free(&f);
}

/* what a context computes: all logits of a prompt, the last logits of decode steps, and its scores against a
 * base (the base's scores when base is NULL) */
typedef struct run_out {
    float *prompt, *steps;
    double nll[64], kl[64];
    int64_t amax[64];
} run_out;

#define P_TOK 40
#define P_STEPS 6

static void run_ctx(lb_cuda_ctx *g, lb_cuda_ctx *base, const lb_model *m, run_out *o) {
    const int64_t V = m->info.n_vocab;
    int32_t ids[P_TOK + P_STEPS];
    for (int i = 0; i < P_TOK + P_STEPS; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
    lb_error e;
    o->prompt = malloc((size_t)(P_TOK * V) * sizeof(float));
    o->steps = malloc((size_t)(P_STEPS * V) * sizeof(float));
    REQUIRE(o->prompt && o->steps, "out of memory");
    if (base) REQUIRE(lb_cuda_ctx_eval(base, ids, P_TOK, 0, 2, NULL, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_cuda_ctx_eval(g, ids, P_TOK, 0, 2, o->prompt, &e) == LB_OK, "%s", e.msg);
    if (base) REQUIRE(lb_cuda_ctx_score(base, NULL, ids, P_TOK, NULL, o->nll, o->amax, NULL, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_cuda_ctx_score(g, base, ids, P_TOK, NULL, o->nll, o->amax, base ? o->kl : NULL, &e) == LB_OK, "%s", e.msg);
    for (int i = 0; i < P_STEPS; i++)
        REQUIRE(lb_cuda_ctx_eval(g, ids + P_TOK + i, 1, P_TOK + i, 1, o->steps + (size_t)i * (size_t)V, &e) == LB_OK, "%s", e.msg);
}

static void run_free(run_out *o) { free(o->prompt), free(o->steps); }

static void same_run(const run_out *a, const run_out *b, int64_t V, const char *what) {
    CHECK(!memcmp(a->prompt, b->prompt, (size_t)(P_TOK * V) * sizeof(float)), "%s: the prompt's logits differ", what);
    CHECK(!memcmp(a->steps, b->steps, (size_t)(P_STEPS * V) * sizeof(float)), "%s: the decode steps' logits differ", what);
    CHECK(!memcmp(a->nll, b->nll, (P_TOK - 1) * sizeof(double)) && !memcmp(a->amax, b->amax, (P_TOK - 1) * sizeof(int64_t)) &&
              !memcmp(a->kl, b->kl, (P_TOK - 1) * sizeof(double)),
          "%s: the scores differ", what);
}

/* m through a pipeline of R stages on devs (and its base, the same model, likewise) against ref, bit for bit */
static void pipeline_vs(const lb_model *m, const int *devs, int R, const run_out *ref, const char *what) {
    lb_error e;
    int64_t first[LB_MAX_DEVICES + 1];
    REQUIRE(lb_model_pipeline_split(m, R, first, &e) == LB_OK, "%s", e.msg);
    lb_cuda_ctx *p = NULL, *pb = NULL;
    REQUIRE(lb_cuda_ctx_new_pipeline(m, devs, first, R, 64, 64, false, &p, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_cuda_ctx_new_pipeline(m, devs, first, R, 64, 64, false, &pb, &e) == LB_OK, "%s", e.msg);
    run_out o;
    memset(&o, 0, sizeof o);
    run_ctx(p, pb, m, &o);
    same_run(ref, &o, m->info.n_vocab, what);
    printf("%s: the one-device bits\n", what);
    run_free(&o);
    lb_cuda_ctx_free(p), lb_cuda_ctx_free(pb);
}

/* model m (base: the same model, scored against) on one device and through pipelines */
static void check_pipeline_model(const lb_model *m, const char *name, int nd) {
    const int64_t V = m->info.n_vocab, L = m->info.n_layer, n_ctx = 64, n_batch = 64;
    lb_error e;
    lb_cuda_ctx *one = NULL, *one_b = NULL;
    REQUIRE(lb_cuda_ctx_new(m, 0, n_ctx, n_batch, &one, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_cuda_ctx_new(m, 0, n_ctx, n_batch, &one_b, &e) == LB_OK, "%s", e.msg);
    run_out ref;
    memset(&ref, 0, sizeof ref);
    run_ctx(one, one_b, m, &ref);
    for (int R = 2; R <= 4 && R <= L; R += 2) { /* device 0 repeated */
        const int devs[4] = {0, 0, 0, 0};
        char what[96];
        snprintf(what, sizeof what, "%s, %d stages on cuda:0", name, R);
        pipeline_vs(m, devs, R, &ref, what);
    }
    if (nd > 1 && nd <= L) { /* every visible GPU, through the public context */
        int devs[LB_MAX_DEVICES];
        for (int r = 0; r < nd && r < LB_MAX_DEVICES; r++) devs[r] = r;
        char what[96];
        snprintf(what, sizeof what, "%s over %d GPUs", name, nd);
        pipeline_vs(m, devs, nd, &ref, what);
        /* the public context with cuda:all: the prompt's logits, the one-device bits */
        lb_context_params cp = lb_context_default_params();
        cp.n_ctx = n_ctx, cp.device = cuda0, cp.n_devices = -1;
        lb_context *c = NULL;
        REQUIRE(lb_context_new(m, &cp, &c, &e) == LB_OK, "cuda:all: %s", e.msg);
        int32_t ids[P_TOK];
        for (int i = 0; i < P_TOK; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
        float *lg = malloc((size_t)(P_TOK * V) * sizeof *lg);
        REQUIRE(lg && lb_context_eval(c, ids, P_TOK, lg, 1, &e) == LB_OK, "%s", e.msg);
        CHECK(!memcmp(lg, ref.prompt, (size_t)(P_TOK * V) * sizeof *lg), "%s, lb_context cuda:all: the logits differ", name);
        free(lg);
        lb_context_free(c);
    }
    run_free(&ref);
    lb_cuda_ctx_free(one), lb_cuda_ctx_free(one_b);
}

static void check_pipeline(int nd) {
    lb_error e;
    lb_model *m = NULL;
    REQUIRE(lb_model_load("models/tiny", &m, &e) == LB_OK, "%s", e.msg);
    check_pipeline_model(m, "tiny", nd);
    lb_model_free(m);
    char q[128];
    snprintf(q, sizeof q, "/tmp/lowbit-multi-%d-q4_k_m.gguf", (int)getpid());
    lb_quantize_params qp = lb_quantize_default_params();
    qp.ftype = "q4_k_m";
    lb_quantize_report r;
    REQUIRE(lb_quantize_model("models/tiny", q, &qp, &r, &e) == LB_OK, "%s", e.msg);
    lb_quantize_report_free(&r);
    REQUIRE(lb_model_load(q, &m, &e) == LB_OK, "%s", e.msg);
    check_pipeline_model(m, "tiny q4_k_m", nd);
    lb_model_free(m);
    remove(q);
    /* more stages than layers, a missing device: one line each, no context */
    REQUIRE(lb_model_load("models/tiny", &m, &e) == LB_OK, "%s", e.msg);
    lb_context_params cp = lb_context_default_params();
    cp.n_ctx = 32, cp.device = cuda0, cp.n_devices = 5;
    for (int i = 0; i < 5; i++) cp.devices[i] = 0;
    lb_context *c = NULL;
    CHECK(lb_context_new(m, &cp, &c, &e) == LB_ERR_ARG && strstr(e.msg, "fewer than") && !c, "5 stages of 4 layers: '%s'", e.msg);
    cp.n_devices = 2, cp.devices[1] = nd + 3;
    CHECK(lb_context_new(m, &cp, &c, &e) == LB_ERR_DEVICE && strstr(e.msg, "does not exist") && !c, "a missing device: '%s'", e.msg);
    lb_model_free(m);
}

int main(void) {
    const int nd = lb_cuda_device_count();
    REQUIRE(nd >= 1, "no CUDA device (this test needs a GPU)");
    const int n = nd < LB_MAX_RANKS ? nd : LB_MAX_RANKS;
    printf("%d visible GPU(s)\n", nd);
    int dev[LB_MAX_RANKS], rev[LB_MAX_RANKS];
    for (int i = 0; i < n; i++) dev[i] = i, rev[i] = n - 1 - i;
    for (int k = 1; k <= n; k++) {
        const size_t sizes[] = {1, 1000, 3000017};
        for (int s = 0; s < 3; s++) check_allreduce(dev, k, sizes[s]);
        check_allreduce(rev + (n - k), k, 1000);
    }
    printf("NCCL %d: all-reduce over 1..%d ranks exact\n", lb_cuda_comm_nccl_version(), n);
    lb_cuda_comm *c = NULL;
    lb_error e;
    const int twice[2] = {0, 0}, missing[1] = {nd + 3};
    CHECK(lb_cuda_comm_new(twice, 2, &c, &e) == LB_ERR_ARG && strstr(e.msg, "twice") && !c, "a device named twice: '%s'", e.msg);
    CHECK(lb_cuda_comm_new(missing, 1, &c, &e) == LB_ERR_DEVICE && strstr(e.msg, "does not exist") && !c, "a missing device: '%s'",
          e.msg);
    CHECK(lb_cuda_comm_new(dev, 0, &c, &e) == LB_ERR_ARG && !c, "zero devices: '%s'", e.msg);
    check_calibration(nd);
    check_pipeline(nd);
    TEST_DONE();
}
