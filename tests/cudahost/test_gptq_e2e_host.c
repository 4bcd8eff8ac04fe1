/*
 * test_gptq_e2e_host.c - gptq.c's device paths end to end without a GPU: models/tiny to q4_k_m by GPTQ (4,096
 * calibration tokens of wikitext-2, statistics on the CPU) once on CPU threads and once through a table whose
 * passes, block encoders and coordinate descent are the host copies of what the GPU runs (host_dev.h), set
 * through calib.h's test hook. The host copies follow the CPU's arithmetic, so the two files must be the same
 * bytes: a difference is in how the calibration drives a device table (which matrices, which importance, which
 * pass is kept), not in the GPU's rounding. CUDA builds only.
 */
#include "algo/calib.h"
#include "core/core.h"
#include "host_dev.h"
#include "lowbit.h"
#include "test_tokens.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void quantize(const int32_t *calib, int64_t n_calib, const char *path) {
    lb_quantize_params qp = lb_quantize_default_params();
    qp.ftype = "q4_k_m";
    qp.n_threads = 2;
    qp.method = LB_METHOD_GPTQ;
    qp.calib_tokens = calib;
    qp.n_calib_tokens = n_calib;
    qp.calib_n_tokens = 4096;
    lb_quantize_report r;
    lb_error e;
    REQUIRE(lb_quantize_model("models/tiny", path, &qp, &r, &e) == LB_OK, "%s", e.msg);
    lb_quantize_report_free(&r);
}

static bool same_file(const char *a, const char *b, size_t *first) {
    char *x, *y;
    size_t nx, ny;
    lb_error e;
    REQUIRE(lb_read_file(a, (size_t)1 << 30, &x, &nx, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_read_file(b, (size_t)1 << 30, &y, &ny, &e) == LB_OK, "%s", e.msg);
    size_t i = 0;
    while (i < nx && i < ny && x[i] == y[i]) i++;
    *first = i;
    bool same = nx == ny && i == nx;
    lb_free(x), lb_free(y);
    return same;
}

int main(void) {
    lb_tokenizer *tok = NULL;
    lb_error e;
    REQUIRE(lb_tokenizer_load("models/tiny", &tok, &e) == LB_OK, "%s", e.msg);
    int64_t n_calib;
    int32_t *calib = tokenize(tok, "tests/golden/data/wikitext-2-test.txt", &n_calib);
    char a[128], b[128];
    snprintf(a, sizeof a, "/tmp/lowbit-gptq-e2e-host-%d-cpu.gguf", (int)getpid());
    snprintf(b, sizeof b, "/tmp/lowbit-gptq-e2e-host-%d-host.gguf", (int)getpid());
    quantize(calib, n_calib, a);
    host_dev hd = {0};
    lb_gptq_ops o = host_dev_ops(&hd);
    lb_calib_test_gptq_ops = &o;
    quantize(calib, n_calib, b);
    lb_calib_test_gptq_ops = NULL;
    printf("through the host copies: %d passes, %d encodes, %d descents, %d matrices with the factor kept\n", hd.passes, hd.encodes,
           hd.cds, hd.kept);
    CHECK(hd.passes > 0 && hd.cds > 0, "the table's passes (%d) or descents (%d) were not used", hd.passes, hd.cds);
    CHECK(hd.kept > 0, "the factor was never kept in the table (inv_upper_keep / begin_kept unused)");
    size_t first;
    CHECK(same_file(a, b, &first), "tiny q4_k_m gptq through the host copies differs from CPU threads, first at byte %zu", first);
    host_dev_free(&hd);
    remove(a), remove(b);
    lb_free(calib);
    lb_tokenizer_free(tok);
    TEST_DONE();
}
