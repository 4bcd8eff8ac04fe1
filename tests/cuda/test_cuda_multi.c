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
 */
#include "cuda/comm.h"
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

/* tiny to q4_k_m by method with 4,096 calibration tokens on one GPU (n_devices 0) or the set of all */
static void quantize_set(const char *method, int n_devices, const int32_t *calib, int64_t n_calib, const char *path) {
    lb_quantize_params qp = lb_quantize_default_params();
    qp.ftype = "q4_k_m";
    qp.method = (lb_method)lb_method_from_name(method);
    qp.calib_tokens = calib;
    qp.n_calib_tokens = n_calib;
    qp.calib_n_tokens = 4096;
    qp.device = cuda0;
    qp.n_devices = n_devices;
    lb_quantize_report r;
    lb_error e;
    REQUIRE(lb_quantize_model("models/tiny", path, &qp, &r, &e) == LB_OK, "%s over %d devices: %s", method, n_devices, e.msg);
    CHECK(r.gpu_fallbacks == 0, "%s: %lld fallbacks (%s)", method, (long long)r.gpu_fallbacks, r.gpu_fallback_reason);
    lb_quantize_report_free(&r);
}

static void check_calibration(int nd) {
    lb_error e;
    lb_model *tiny = NULL;
    lb_tokenizer *tok = NULL;
    REQUIRE(lb_model_load("models/tiny", &tiny, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_tokenizer_load("models/tiny", &tok, &e) == LB_OK, "%s", e.msg);
    int64_t n_calib, n_valid;
    int32_t *calib = tokenize(tok, "tests/golden/data/wikitext-2-test.txt", &n_calib);
    int32_t *valid = tokenize(tok, "tests/golden/data/valid.txt", &n_valid);
    const char *methods[] = {"imatrix", "gptq"};
    for (int i = 0; i < 2; i++) {
        char a[128], b[128], c[128];
        snprintf(a, sizeof a, "/tmp/lowbit-multi-%d-%s-one.gguf", (int)getpid(), methods[i]);
        snprintf(b, sizeof b, "/tmp/lowbit-multi-%d-%s-set.gguf", (int)getpid(), methods[i]);
        snprintf(c, sizeof c, "/tmp/lowbit-multi-%d-%s-set2.gguf", (int)getpid(), methods[i]);
        quantize_set(methods[i], 0, calib, n_calib, a);
        quantize_set(methods[i], -1, calib, n_calib, b);
        quantize_set(methods[i], -1, calib, n_calib, c);
        CHECK(same_file(b, c), "%s over the set: two runs differ", methods[i]);
        if (nd == 1) {
            CHECK(same_file(a, b), "%s: the one-rank set gives another file than one device", methods[i]);
            printf("%s: one rank of the set = one device, byte for byte\n", methods[i]);
        } else {
            const double k1 = kld(a, tiny, valid, n_valid), ks = kld(b, tiny, valid, n_valid);
            printf("%s: KL(base||q) one GPU %.6f, %d GPUs %.6f (%+.2f %%)\n", methods[i], k1, nd, ks, 100 * (ks / k1 - 1));
            CHECK(fabs(ks / k1 - 1) < 0.005, "%s: KL over %d GPUs %.6g against one GPU %.6g", methods[i], nd, ks, k1);
        }
        remove(a), remove(b), remove(c);
    }
    lb_free(calib), lb_free(valid);
    lb_tokenizer_free(tok);
    lb_model_free(tiny);
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
    TEST_DONE();
}
