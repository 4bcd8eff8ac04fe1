/*
 * test_quantize.c - lb_quantize_model end to end:
 * - with the reference encoder, every tensor of models/tiny comes out byte-identical to the GGUF files
 *   llama-quantize wrote from the same checkpoint (tests/golden/gguf/tiny-<type>.gguf), and with the same
 *   type and shape; the tokenizer and hyperparameter metadata match what llama.cpp's converter wrote;
 * - output bytes are identical for 1 and 3 threads;
 * - a GGUF F16 input gives the same tensors as the HF input;
 * - bad inputs leave no output file.
 */
#include "core/core.h"
#include "io/gguf.h"
#include "test.h"

#include <unistd.h>

static char tmpdir[] = "/tmp/lb_quant_XXXXXX";

static lb_status quantize(const char *in, const char *out, const char *type, lb_encoder enc, int threads, lb_error *e) {
    lb_quantize_params p = lb_quantize_default_params();
    p.ftype = type;
    p.encoder = enc;
    p.n_threads = threads;
    lb_quantize_report r;
    lb_status s = lb_quantize_model(in, out, &p, &r, e);
    if (s == LB_OK) lb_quantize_report_free(&r);
    return s;
}

/* every tensor of `a` is in `b` with the same type, shape and bytes */
static int same_tensors(const char *a_path, const char *b_path, bool must_match_count) {
    gguf_file *a = NULL, *b = NULL;
    lb_error e;
    REQUIRE(gguf_open(a_path, &a, &e) == LB_OK, "%s", e.msg);
    REQUIRE(gguf_open(b_path, &b, &e) == LB_OK, "%s", e.msg);
    int bad = 0;
    if (must_match_count && a->n_tensors != b->n_tensors) bad++;
    for (int64_t i = 0; i < a->n_tensors; i++) {
        const gguf_tensor *x = &a->tensors[i], *y = gguf_find_tensor(b, x->name);
        if (!y || x->type != y->type || x->n_bytes != y->n_bytes || memcmp(x->ne, y->ne, sizeof x->ne) ||
            memcmp(x->data, y->data, x->n_bytes)) {
            if (bad++ < 5)
                fprintf(stderr, "  %s: %s differs (%s vs %s)\n", b_path, x->name, lb_type_name(x->type),
                        y ? lb_type_name(y->type) : "missing");
        }
    }
    gguf_close(a);
    gguf_close(b);
    return bad;
}

static void test_matches_llamacpp(void) {
    const char *types[] = {"q8_0", "q4_0", "q4_k_m", "q2_k", "iq4_xs", "f16"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char out[256], golden[256];
        lb_error e;
        snprintf(out, sizeof out, "%s/tiny-%s.gguf", tmpdir, types[i]);
        snprintf(golden, sizeof golden, "%s/golden/gguf/tiny-%s.gguf", test_shared_dir(), types[i]);
        REQUIRE(quantize("models/tiny", out, types[i], LB_ENCODER_REF, 2, &e) == LB_OK, "%s", e.msg);
        int bad = same_tensors(golden, out, true);
        CHECK(bad == 0, "%s: %d tensors differ from llama-quantize's", types[i], bad);
        if (!bad) printf("%s: every tensor byte-identical to llama.cpp's %s\n", types[i], golden);
    }
}

/* with llama.cpp's importance matrix, the reference encoder reproduces llama-quantize --imatrix */
static void test_matches_llamacpp_imatrix(void) {
    const char *types[] = {"q4_k_m", "q3_k_m", "q2_k"};
    for (size_t i = 0; i < 3; i++) {
        char out[256], golden[256];
        lb_error e;
        snprintf(out, sizeof out, "%s/tiny-%s-imat.gguf", tmpdir, types[i]);
        snprintf(golden, sizeof golden, "%s/golden/gguf/tiny-%s-imat.gguf", test_shared_dir(), types[i]);
        lb_quantize_params p = lb_quantize_default_params();
        p.ftype = types[i];
        p.encoder = LB_ENCODER_REF;
        p.imatrix = test_gguf("tiny.imatrix");
        lb_quantize_report r;
        REQUIRE(lb_quantize_model("models/tiny", out, &p, &r, &e) == LB_OK, "%s", e.msg);
        lb_quantize_report_free(&r);
        int bad = same_tensors(golden, out, true);
        CHECK(bad == 0, "%s + imatrix: %d tensors differ from llama-quantize's", types[i], bad);
        if (!bad) printf("%s + imatrix: every tensor byte-identical to llama.cpp's %s\n", types[i], golden);
        gguf_file *g = NULL;
        REQUIRE(gguf_open(out, &g, &e) == LB_OK, "%s", e.msg);
        int64_t n = 0;
        size_t dl = 0;
        const char *ds = gguf_get_str(g, "quantize.imatrix.dataset", &dl);
        CHECK(gguf_get_int(g, "quantize.imatrix.entries_count", &n) && n == 28 && ds && dl == 9 && !memcmp(ds, "calib.txt", 9),
              "imatrix metadata");
        gguf_close(g);
    }
}

static bool file_bytes_equal(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    lb_error e;
    REQUIRE(lb_read_file(a, 1u << 30, &x, &nx, &e) == LB_OK, "%s", e.msg);
    REQUIRE(lb_read_file(b, 1u << 30, &y, &ny, &e) == LB_OK, "%s", e.msg);
    bool eq = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

static void test_determinism_and_gguf_input(void) {
    char a[256], b[256], c[256];
    lb_error e;
    const char *types[] = {"q4_k_m", "q5_1", "iq4_nl"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "%s/t1-%s.gguf", tmpdir, types[i]);
        snprintf(b, sizeof b, "%s/t3-%s.gguf", tmpdir, types[i]);
        REQUIRE(quantize("models/tiny", a, types[i], LB_ENCODER_DEFAULT, 1, &e) == LB_OK, "%s", e.msg);
        REQUIRE(quantize("models/tiny", b, types[i], LB_ENCODER_DEFAULT, 3, &e) == LB_OK, "%s", e.msg);
        CHECK(file_bytes_equal(a, b), "%s: 1 and 3 threads give different files", types[i]);
    }
    /* F16 GGUF input (llama.cpp's conversion of the same checkpoint) -> the same tensors */
    snprintf(c, sizeof c, "%s/from-gguf-q4_k_m.gguf", tmpdir);
    REQUIRE(quantize(test_gguf("tiny-f16.gguf"), c, "q4_k_m", LB_ENCODER_REF, 2, &e) == LB_OK, "%s", e.msg);
    CHECK(same_tensors(test_gguf("tiny-q4_k_m.gguf"), c, true) == 0, "GGUF F16 input differs");
}

static void test_errors(void) {
    char out[256];
    lb_error e;
    snprintf(out, sizeof out, "%s/bad.gguf", tmpdir);
    CHECK(quantize("models/tiny", out, "q4_k_x", LB_ENCODER_DEFAULT, 1, &e) == LB_ERR_ARG && strstr(e.msg, "q4_k_x"), "%s", e.msg);
    CHECK(!lb_path_exists(out), "no output after an unknown type");
    CHECK(quantize("models/nonexistent", out, "q8_0", LB_ENCODER_DEFAULT, 1, &e) == LB_ERR_IO && strstr(e.msg, "nonexistent"), "%s", e.msg);
    CHECK(quantize(test_gguf("tiny-q4_0.gguf"), out, "q8_0", LB_ENCODER_DEFAULT, 1, &e) == LB_ERR_ARG &&
              strstr(e.msg, "already quantized") && strstr(e.msg, "--allow-requantize"), "%s", e.msg);
    CHECK(!lb_path_exists(out), "no output after a refused requantization");
    CHECK(quantize("models/tiny", "/nonexistent-dir/x.gguf", "q8_0", LB_ENCODER_DEFAULT, 1, &e) == LB_ERR_IO &&
              strstr(e.msg, "/nonexistent-dir/x.gguf"), "%s", e.msg);
    lb_quantize_params p = lb_quantize_default_params();
    p.ftype = "q8_0";
    p.allow_requantize = 1;
    lb_quantize_report r;
    CHECK(lb_quantize_model(test_gguf("tiny-q4_0.gguf"), out, &p, &r, &e) == LB_OK, "%s", e.msg);
    CHECK(r.requantized, "report says requantized");
    lb_quantize_report_free(&r);
    remove(out);
    const char *pat[1] = {"(unclosed"};
    lb_type ty[1] = {LB_TYPE_Q8_0};
    p.allow_requantize = 0;
    p.n_tensor_types = 1;
    p.tensor_type_patterns = pat;
    p.tensor_type_types = ty;
    CHECK(lb_quantize_model("models/tiny", out, &p, &r, &e) == LB_ERR_ARG && strstr(e.msg, "(unclosed"), "%s", e.msg);
    CHECK(!lb_path_exists(out), "no output after a bad pattern");
}

int main(void) {
    REQUIRE(mkdtemp(tmpdir), "mkdtemp");
    test_matches_llamacpp();
    test_matches_llamacpp_imatrix();
    test_determinism_and_gguf_input();
    test_errors();
    TEST_DONE();
}
