/*
 * test_hardening.c - library-level guarantees on bad input and outputs that the CLI tests cannot reach:
 * the NaN/Inf policy of lb_eval_perplexity apart from the load check, lb_remove_temporaries() (what a
 * signal handler calls), the output lock, importance-matrix files at their size limits, and calls with
 * empty inputs (built under UBSan in CI: null pointer plus zero and the like), and the load check's
 * non-finite scan (lb_weight_row_nonfinite) against dequantizing every row.
 */
#include "core/core.h"
#include "io/gguf.h"
#include "io/imatrix.h"
#include "model/model.h"
#include "quant/quant.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

static char dir[64];

static const char *path_in(const char *name) {
    static char buf[4][256];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f && fwrite(p, 1, n, f) == n, "write %s", path);
    fclose(f);
}

/* eval: NaN logits are an error unless allow_nonfinite, whatever the load allowed */
static void test_eval_nonfinite(void) {
    lb_model *m = NULL;
    lb_tokenizer *tok = NULL;
    lb_error e;
    lb_model_params mp = lb_model_default_params();
    mp.allow_nonfinite = 1;
    REQUIRE(lb_model_load_with("models/tiny", &mp, &m, &e) == LB_OK, "%s", e.msg);
    m->out_norm[3] = NAN; /* the f32 vectors are the model's own copies */
    int32_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = (i * 37) % 8000 + 1;
    lb_eval_params p = lb_eval_default_params();
    p.ctx = 32;
    p.n_threads = 1;
    lb_eval_result r;
    lb_status s = lb_eval_perplexity(m, NULL, ids, 64, &p, &r, &e);
    CHECK(s == LB_ERR_FORMAT && strstr(e.msg, "logits of window 0 are not finite"), "status %d: %s", s, e.msg);
    p.allow_nonfinite = 1;
    s = lb_eval_perplexity(m, NULL, ids, 64, &p, &r, &e);
    CHECK(s == LB_OK && isnan(r.ppl), "allowed: status %d, ppl %g", s, r.ppl);
    lb_model_free(m);
    (void)tok;
}

/* the temporary of an output being written disappears with lb_remove_temporaries(); the name is locked */
static void test_temporaries(void) {
    const char *out = path_in("out.gguf"), *tmp = path_in("out.gguf.lowbit-tmp");
    gguf_writer *w = NULL, *w2 = NULL;
    lb_error e;
    REQUIRE(gguf_writer_open(out, &w, &e) == LB_OK, "%s", e.msg);
    CHECK(access(tmp, F_OK) == 0, "no temporary file %s", tmp);
    CHECK(gguf_writer_open(out, &w2, &e) == LB_ERR_IO && strstr(e.msg, "another process is writing"),
          "second writer: %s", e.msg);
    lb_remove_temporaries();
    CHECK(access(tmp, F_OK) != 0, "the temporary file is still there");
    lb_status s = gguf_writer_finish(w, &e);
    CHECK(s == LB_ERR_IO && access(out, F_OK) != 0, "finish after removal: status %d (%s)", s, e.msg);
    /* a later writer works and leaves nothing behind but its output */
    REQUIRE(gguf_writer_open(out, &w, &e) == LB_OK, "%s", e.msg);
    CHECK(gguf_writer_finish(w, &e) == LB_OK, "%s", e.msg);
    CHECK(access(out, F_OK) == 0 && access(tmp, F_OK) != 0, "after a good run");
    lb_remove_temporaries(); /* nothing live: must not touch the output */
    CHECK(access(out, F_OK) == 0, "lb_remove_temporaries removed a finished output");
    unlink(out);
}

static void test_output_check(void) {
    lb_error e;
    const char *in[1] = {"models/tiny"};
    CHECK(lb_output_check("models/tiny/x.gguf", in, 1, &e) == LB_ERR_ARG && strstr(e.msg, "inside the input directory"),
          "%s", e.msg);
    CHECK(lb_output_check("/dev/null", NULL, 0, &e) == LB_ERR_ARG && strstr(e.msg, "is a device"), "%s", e.msg); /* checks only */
    CHECK(lb_output_check(path_in("fine.gguf"), in, 1, &e) == LB_OK, "%s", e.msg);
    CHECK(lb_output_check(path_in("no/such.gguf"), in, 1, &e) == LB_ERR_IO && strstr(e.msg, "does not exist"), "%s", e.msg);
    CHECK(lb_output_check(dir, in, 1, &e) == LB_ERR_ARG && strstr(e.msg, "is a directory"), "%s", e.msg);
}

static void test_imatrix_sizes(void) {
    lb_imatrix *m = NULL;
    lb_error e;
    write_bytes(path_in("empty.dat"), "", 0);
    CHECK(lb_imatrix_load(path_in("empty.dat"), &m, &e) == LB_ERR_FORMAT && strstr(e.msg, "empty"), "%s", e.msg);
    /* an entry count the file cannot hold is refused before anything is allocated for it */
    int32_t n = 1000;
    write_bytes(path_in("count.dat"), &n, 4);
    CHECK(lb_imatrix_load(path_in("count.dat"), &m, &e) == LB_ERR_FORMAT && strstr(e.msg, "bad entry count"), "%s", e.msg);
    lb_imatrix_free(m);
}

static void test_empty_calls(void) {
    lb_tokenizer *tok = NULL;
    lb_error e;
    REQUIRE(lb_tokenizer_load("models/tiny", &tok, &e) == LB_OK, "%s", e.msg);
    char *text = NULL;
    size_t len = 99;
    int32_t one = 5;
    CHECK(lb_tokenizer_decode(tok, &one, 0, &text, &len, &e) == LB_OK && len == 0 && text && !text[0], "decode of 0 ids");
    lb_free(text);
    text = NULL;
    CHECK(lb_tokenizer_decode(tok, NULL, 0, &text, &len, &e) == LB_OK && len == 0, "decode of no ids");
    lb_free(text);
    int32_t *ids = NULL;
    int64_t n_ids = -1;
    CHECK(lb_tokenizer_encode(tok, "", 0, &ids, &n_ids, &e) == LB_OK && n_ids == 0, "encode of empty text");
    lb_free(ids);
    lb_tokenizer_free(tok);
}

/* the load check's scan of the fp16 factors / raw bits against dequantizing the row and looking at every
 * value: the same answer (column and kind) for every weight type, with non-finite factors or values put
 * in random places, and finite rows (also with the largest finite factors and random codes) pass */
static void test_nonfinite_scan(void) {
    enum { KMAX = 512 };
    static float x[KMAX], y[KMAX], scratch[KMAX];
    static uint8_t row[KMAX * 4];
    static const uint16_t h_special[3] = {0x7E00, 0x7C00, 0xFC00};       /* NaN, +inf, -inf (f16) */
    static const uint16_t b_special[3] = {0x7FC0, 0x7F80, 0xFF80};       /* the same in bf16 */
    unsigned seed = 12345;
    int types = 0;
    for (int t = 0; t < LB_TYPE_COUNT; t++) {
        const lb_type_traits *tt = lb_type_traits_get((lb_type)t);
        if (!tt || !tt->weight_type) continue;
        types++;
        for (int trial = 0; trial < 40; trial++) {
            /* float rows also of odd lengths (values after the last whole 64-bit word) */
            int64_t K = tt->is_quant ? 512 : 512 - trial % 4;
            int64_t nb = K / tt->block_elems;
            size_t rb = lb_type_row_size((lb_type)t, K);
            lb_weight w = {(lb_type)t, row, 1, K};
            for (int i = 0; i < K; i++) {
                seed = seed * 1103515245u + 12345u;
                x[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * (trial % 2 ? 1e4f : 2.0f);
            }
            tt->from_float_ref(x, row, K);
            if (trial % 4 == 3 && tt->is_quant) { /* random codes, largest finite factors */
                for (size_t i = 0; i < rb; i++) {
                    seed = seed * 1103515245u + 12345u;
                    row[i] = (uint8_t)(seed >> 16);
                }
                for (int64_t b = 0; b < nb; b++)
                    for (int f = 0; f < 2 && tt->fp16_factor[f] >= 0; f++) {
                        uint16_t big = (b + f) % 2 ? 0x7BFF : 0xFBFF;
                        memcpy(row + (size_t)b * tt->block_bytes + tt->fp16_factor[f], &big, 2);
                    }
            }
            int64_t col = -7;
            float v = 0;
            tt->to_float(row, y, K);
            int64_t first = -1;
            for (int i = 0; i < K && first < 0; i++)
                if (!isfinite(y[i])) first = i;
            CHECK(first < 0, "%s trial %d: a finite row dequantizes to a non-finite value at %lld", tt->name, trial,
                  (long long)first);
            CHECK(!lb_weight_row_nonfinite(&w, 0, scratch, &col, &v), "%s trial %d: finite row reported", tt->name, trial);
            /* one or two non-finite factors / values */
            int n_bad = 1 + trial % 2;
            for (int k = 0; k < n_bad; k++) {
                seed = seed * 1103515245u + 12345u;
                int which = (int)((seed >> 10) % 3);
                if (tt->is_quant) {
                    int nf = tt->fp16_factor[1] >= 0 ? 2 : 1;
                    int64_t b = (int64_t)((seed >> 4) % (unsigned)nb);
                    int f = (int)((seed >> 20) % (unsigned)nf);
                    memcpy(row + (size_t)b * tt->block_bytes + tt->fp16_factor[f], &h_special[which], 2);
                } else {
                    int64_t i = trial % 4 && k == 0 ? K - 1 : (int64_t)((seed >> 4) % K); /* also past the last word */
                    if (t == LB_TYPE_F16) memcpy(row + 2 * i, &h_special[which], 2);
                    else if (t == LB_TYPE_BF16) memcpy(row + 2 * i, &b_special[which], 2);
                    else {
                        float s = which == 0 ? NAN : which == 1 ? INFINITY : -INFINITY;
                        memcpy(row + 4 * i, &s, 4);
                    }
                }
            }
            tt->to_float(row, y, K);
            first = -1;
            for (int i = 0; i < K && first < 0; i++)
                if (!isfinite(y[i])) first = i;
            bool got = lb_weight_row_nonfinite(&w, 0, scratch, &col, &v);
            CHECK(first >= 0, "%s trial %d: a non-finite factor left the row finite", tt->name, trial);
            CHECK(got && col == first && isnan(v) == isnan(y[first]), "%s trial %d: scan says %d at %lld, dequantized first at %lld",
                  tt->name, trial, got, (long long)col, (long long)first);
        }
    }
    CHECK(types >= 15, "%d weight types", types);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/lb_hardening_XXXXXX");
    REQUIRE(mkdtemp(dir), "mkdtemp");
    test_eval_nonfinite();
    test_temporaries();
    test_output_check();
    test_imatrix_sizes();
    test_empty_calls();
    test_nonfinite_scan();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    TEST_DONE();
}
