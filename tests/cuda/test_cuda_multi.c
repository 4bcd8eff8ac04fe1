/*
 * test_cuda_multi.c - NCCL collectives between the GPUs this process sees (cuda/comm.h), on as many as there
 * are, one included (a one-rank communicator). Needs a GPU.
 *
 * - all-reduce of doubles: every rank's array becomes the sum over the ranks, exactly (the values are small
 *   multiples of 1/4, whose sums are exact in any order), for sizes 1, 1000 and 3,000,017 (not a multiple
 *   of anything NCCL chunks by), and twice in a row on the same communicator; size 0 does nothing;
 * - every subset size 1..n of the visible devices, in reverse order too (rank r need not be device r);
 * - a device named twice, a device that does not exist, zero devices: LB_ERR_ARG / LB_ERR_DEVICE, one line.
 */
#include "cuda/comm.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    TEST_DONE();
}
