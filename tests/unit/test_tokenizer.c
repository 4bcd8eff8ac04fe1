/*
 * test_tokenizer.c - the tokenizer against Hugging Face tokenizers' own output: the conformance cases
 * of four tokenizer.json styles (tests/golden/conformance/tokenizers), the tokenizer and prompt
 * goldens of the tiny and small models, hostile files and arguments, and a round trip of valid.txt.
 */
#include "core/core.h"
#include "core/json.h"
#include "lowbit.h"
#include "text/text.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

static json_doc *read_json(const char *path) {
    char *text;
    size_t len;
    json_doc *doc = NULL;
    lb_error err = {{0}};
    if (lb_read_file(path, (size_t)1 << 30, &text, &len, &err) != LB_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    if (json_parse(text, len, &doc, &err) != LB_OK) fprintf(stderr, "%s: %s\n", path, err.msg);
    free(text);
    return doc;
}

static void print_ids(const char *what, const int32_t *ids, int64_t n) {
    fprintf(stderr, "  %s (%lld):", what, (long long)n);
    for (int64_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Encode text and compare with the expected id array; returns 1 on a match. */
static int check_encode(const lb_tokenizer *t, const char *text, size_t len, const json_value *want,
                        const char *where) {
    int32_t *ids = NULL;
    int64_t n = 0;
    lb_error err = {{0}};
    lb_status st = lb_tokenizer_encode(t, text, len, &ids, &n, &err);
    int ok = st == LB_OK && n == (int64_t)json_len(want);
    for (int64_t i = 0; ok && i < n; i++) {
        int64_t v;
        ok = json_int(json_at(want, (size_t)i), &v) && v == ids[i];
    }
    CHECK(ok, "%s: encode mismatch for \"%.80s\" (%s)", where, text, st ? err.msg : "ids differ");
    if (!ok && st == LB_OK) {
        int32_t w[512];
        int64_t nw = 0;
        for (size_t i = 0; i < json_len(want) && i < 512; i++) {
            int64_t v = 0;
            json_int(json_at(want, i), &v);
            w[nw++] = (int32_t)v;
        }
        print_ids("want", w, nw);
        print_ids("got ", ids, n);
    }
    lb_free(ids);
    return ok;
}

static int check_decode(const lb_tokenizer *t, const json_value *ids_v, const char *want, size_t want_len,
                        const char *where) {
    size_t n = json_len(ids_v);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        int64_t v = 0;
        json_int(json_at(ids_v, i), &v);
        ids[i] = (int32_t)v;
    }
    char *text = NULL;
    size_t len = 0;
    lb_error err = {{0}};
    lb_status st = lb_tokenizer_decode(t, ids, (int64_t)n, &text, &len, &err);
    int ok = st == LB_OK && len == want_len && memcmp(text, want, len) == 0 && text[len] == 0;
    CHECK(ok, "%s: decode mismatch: want \"%.80s\" got \"%.80s\" (%s)", where, want, st ? "" : text,
          st ? err.msg : "text differs");
    lb_free(text);
    free(ids);
    return ok;
}

static void test_conformance(const char *style) {
    char tok_path[256], cases_path[256];
    snprintf(tok_path, sizeof tok_path, "tests/golden/conformance/tokenizers/%s/tokenizer.json", style);
    snprintf(cases_path, sizeof cases_path, "tests/golden/conformance/tokenizers/%s/cases.json", style);
    lb_tokenizer *t = NULL;
    lb_error err = {{0}};
    lb_status st = lb_tokenizer_load(tok_path, &t, &err);
    REQUIRE(st == LB_OK, "load %s: %s", tok_path, err.msg);
    json_doc *doc = read_json(cases_path);
    REQUIRE(doc, "cannot read %s", cases_path);
    const json_value *cases = json_get(json_root(doc), "cases");
    size_t n = json_len(cases), enc_ok = 0, dec_ok = 0;
    REQUIRE(n > 0, "%s has no cases", cases_path);
    for (size_t i = 0; i < n; i++) {
        const json_value *c = json_at(cases, i);
        size_t tl, dl;
        const char *text = json_str(json_get(c, "text"), &tl);
        const char *dec = json_str(json_get(c, "decoded"), &dl);
        REQUIRE(text && dec, "%s: case %zu lacks text or decoded", cases_path, i);
        enc_ok += (size_t)check_encode(t, text, tl, json_get(c, "ids"), style);
        dec_ok += (size_t)check_decode(t, json_get(c, "ids"), dec, dl, style);
    }
    printf("conformance %-8s: encode %zu/%zu, decode %zu/%zu\n", style, enc_ok, n, dec_ok, n);
    json_free(doc);
    lb_tokenizer_free(t);
}

static void test_goldens(const char *tok_dir, const char *goldens) {
    lb_tokenizer *t = NULL;
    lb_error err = {{0}};
    REQUIRE(lb_tokenizer_load(tok_dir, &t, &err) == LB_OK, "load %s: %s", tok_dir, err.msg);
    json_doc *doc = read_json(goldens);
    REQUIRE(doc, "cannot read %s", goldens);
    const char *lists[] = {"tokenizer", "prompts"};
    size_t ok = 0, total = 0;
    for (int k = 0; k < 2; k++) {
        const json_value *list = json_get(json_root(doc), lists[k]);
        CHECK(json_len(list) > 0, "%s: no %s entries", goldens, lists[k]);
        for (size_t i = 0; i < json_len(list); i++) {
            size_t tl;
            const json_value *e = json_at(list, i);
            const char *text = json_str(json_get(e, "text"), &tl);
            REQUIRE(text, "%s: %s[%zu] has no text", goldens, lists[k], i);
            ok += (size_t)check_encode(t, text, tl, json_get(e, "ids"), goldens);
            total++;
        }
    }
    printf("goldens %s: %zu/%zu\n", goldens, ok, total);
    json_free(doc);
    lb_tokenizer_free(t);
}

/* Load a tokenizer.json written from `json`; returns the status and leaves the message in err. */
static lb_status load_text(const char *json, lb_error *err) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/lb_test_tokenizer_%d.json", (int)getpid());
    FILE *f = fopen(path, "wb");
    REQUIRE(f, "cannot write %s", path);
    fputs(json, f);
    fclose(f);
    lb_tokenizer *t = NULL;
    memset(err->msg, 0, sizeof err->msg);
    lb_status st = lb_tokenizer_load(path, &t, err);
    lb_tokenizer_free(t);
    remove(path);
    if (st == LB_OK) CHECK(t != NULL, "loaded but no tokenizer");
    return st;
}

#define VOCAB "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}"
#define BPE_OK "{\"type\": \"BPE\", " VOCAB ", \"merges\": [\"a b\"]}"

static void expect_bad(const char *json, lb_status want, const char *needle) {
    lb_error err;
    lb_status st = load_text(json, &err);
    CHECK(st == want, "want status %d got %d (%s) for %.120s", want, st, err.msg, json);
    CHECK(strstr(err.msg, needle) != NULL, "message \"%s\" does not mention \"%s\"", err.msg, needle);
}

static void test_bad_files(void) {
    lb_tokenizer *t = (lb_tokenizer *)1;
    lb_error err = {{0}};
    CHECK(lb_tokenizer_load("/nonexistent/tokenizer.json", &t, &err) == LB_ERR_IO, "missing file: %s", err.msg);
    CHECK(t == (lb_tokenizer *)1, "out written on failure");
    CHECK(strstr(err.msg, "/nonexistent/tokenizer.json") != NULL, "missing file message: %s", err.msg);

    lb_error ok_err;
    CHECK(load_text("{\"model\": " BPE_OK "}", &ok_err) == LB_OK, "minimal file: %s", ok_err.msg);
    CHECK(load_text("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [[\"a\", \"b\"]]}}", &ok_err) == LB_OK,
          "pair merges: %s", ok_err.msg);

    expect_bad("{\"model\": ", LB_ERR_FORMAT, "line");
    expect_bad("[1, 2]", LB_ERR_FORMAT, "object");
    expect_bad("{\"normalizer\": null}", LB_ERR_FORMAT, "model is missing");
    expect_bad("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", LB_ERR_UNSUPPORTED, "WordPiece");
    expect_bad("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", LB_ERR_UNSUPPORTED, "Unigram");
    expect_bad("{\"model\": {\"type\": 7}}", LB_ERR_FORMAT, "model type");
    expect_bad("{\"model\": {\"type\": \"BPE\", \"merges\": []}}", LB_ERR_FORMAT, "model.vocab is missing");
    expect_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": [1], \"merges\": []}}", LB_ERR_FORMAT, "model.vocab");
    expect_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}", LB_ERR_FORMAT, "\"a\"");
    expect_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", LB_ERR_FORMAT, "valid id");
    expect_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}", LB_ERR_FORMAT, "valid id");
    expect_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999999}, \"merges\": []}}", LB_ERR_FORMAT,
               "valid id");
    expect_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 16000000}, \"merges\": []}}", LB_ERR_FORMAT,
               "far beyond");
    expect_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", LB_ERR_FORMAT,
               "used by both");
    expect_bad("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"a\": 1}, \"merges\": []}}", LB_ERR_FORMAT,
               "twice");
    expect_bad("{\"model\": {\"type\": \"BPE\", " VOCAB "}}", LB_ERR_FORMAT, "model.merges is missing");
    expect_bad("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [\"a c\"]}}", LB_ERR_FORMAT, "\"c\"");
    expect_bad("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [\"b a\"]}}", LB_ERR_FORMAT, "merged token");
    expect_bad("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [\"a  b\"]}}", LB_ERR_FORMAT, "merges[0]");
    expect_bad("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [7]}}", LB_ERR_FORMAT, "merges[0]");
    expect_bad("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [[\"a\"]]}}", LB_ERR_FORMAT, "merges[0]");
    expect_bad("{\"model\": {\"type\": \"BPE\", " VOCAB ", \"merges\": [], \"unk_token\": \"<unk>\"}}", LB_ERR_FORMAT,
               "unk_token");
    expect_bad("{\"model\": " BPE_OK ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?<=a)b\"}, "
               "\"behavior\": \"Isolated\", \"invert\": false}}",
               LB_ERR_FORMAT, "regex");
    expect_bad("{\"model\": " BPE_OK ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, "
               "\"behavior\": \"Sideways\"}}",
               LB_ERR_FORMAT, "behavior");
    expect_bad("{\"model\": " BPE_OK ", \"pre_tokenizer\": {\"type\": \"Metaspace\"}}", LB_ERR_FORMAT,
               "Metaspace");
    expect_bad("{\"model\": " BPE_OK ", \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}", LB_ERR_UNSUPPORTED,
               "BertPreTokenizer");
    expect_bad("{\"model\": " BPE_OK ", \"normalizer\": {\"type\": \"BertNormalizer\"}}", LB_ERR_UNSUPPORTED,
               "BertNormalizer");
    expect_bad("{\"model\": " BPE_OK ", \"decoder\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \" +\"}, "
               "\"content\": \"x\"}}",
               LB_ERR_UNSUPPORTED, "Regex");
    expect_bad("{\"model\": " BPE_OK ", \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"(?<=a)\"}, "
               "\"content\": \"x\"}}",
               LB_ERR_FORMAT, "regex");
    expect_bad("{\"model\": " BPE_OK ", \"decoder\": {\"type\": \"WordPiece\"}}", LB_ERR_UNSUPPORTED, "WordPiece");
    expect_bad("{\"model\": " BPE_OK ", \"added_tokens\": {}}", LB_ERR_FORMAT, "added_tokens");
    expect_bad("{\"model\": " BPE_OK ", \"added_tokens\": [{\"id\": 3}]}", LB_ERR_FORMAT, "content");
    expect_bad("{\"model\": " BPE_OK ", \"added_tokens\": [{\"id\": -3, \"content\": \"x\"}]}", LB_ERR_FORMAT, "id");
    expect_bad("{\"model\": " BPE_OK ", \"added_tokens\": [{\"id\": 3, \"content\": \"x\"}, {\"id\": 3, \"content\": "
               "\"y\"}]}",
               LB_ERR_FORMAT, "twice");
    expect_bad("{\"model\": " BPE_OK ", \"added_tokens\": [{\"id\": 3, \"content\": \"x\", \"special\": 1}]}",
               LB_ERR_FORMAT, "bool");
}

static void test_api(void) {
    lb_tokenizer *t = NULL;
    lb_error err = {{0}};
    REQUIRE(lb_tokenizer_load("models/tiny", &t, &err) == LB_OK, "load models/tiny: %s", err.msg);
    CHECK(lb_tokenizer_n_vocab(t) == 8192, "n_vocab %lld", (long long)lb_tokenizer_n_vocab(t));
    CHECK(lb_tokenizer_token_text(t, 0) && !strcmp(lb_tokenizer_token_text(t, 0), "<|endoftext|>"), "token 0");
    CHECK(lb_tokenizer_token_text(t, 8192) == NULL && lb_tokenizer_token_text(t, -1) == NULL, "token out of range");
    CHECK(lb_tokenizer_model_kind(t) == LB_TOK_MODEL_BYTE_BPE, "model kind");
    CHECK(lb_tokenizer_pre_kind(t) == LB_TOK_PRE_GPT2, "pre kind");
    CHECK(lb_tokenizer_token_type(t, 0) == LB_TOK_TYPE_CONTROL, "type of 0");
    CHECK(lb_tokenizer_token_type(t, 100) == LB_TOK_TYPE_NORMAL, "type of 100");
    CHECK(lb_tokenizer_n_merges(t) > 0, "merges");
    const char *l = NULL, *r = NULL;
    CHECK(lb_tokenizer_merge(t, 0, &l, &r) && l && r, "merge 0");
    CHECK(!lb_tokenizer_merge(t, lb_tokenizer_n_merges(t), &l, &r), "merge out of range");
    CHECK(lb_tokenizer_unk_id(t) == -1 && lb_tokenizer_add_bos(t) == 0, "unk/bos");

    /* empty text, invalid UTF-8, bad ids */
    int32_t *ids = NULL;
    int64_t n = -1;
    CHECK(lb_tokenizer_encode(t, "", 0, &ids, &n, &err) == LB_OK && n == 0, "empty text");
    lb_free(ids);
    ids = NULL;
    lb_status st = lb_tokenizer_encode(t, "abc\xC3(x", 6, &ids, &n, &err);
    CHECK(st == LB_ERR_ARG && strstr(err.msg, "offset 3"), "invalid UTF-8: %d %s", st, err.msg);
    st = lb_tokenizer_encode(t, "ab\xED\xA0\x80", 5, &ids, &n, &err); /* a surrogate */
    CHECK(st == LB_ERR_ARG && strstr(err.msg, "offset 2"), "surrogate: %d %s", st, err.msg);
    st = lb_tokenizer_encode(t, "\xC0\xAF", 2, &ids, &n, &err); /* overlong */
    CHECK(st == LB_ERR_ARG && strstr(err.msg, "offset 0"), "overlong: %d %s", st, err.msg);
    int32_t bad[] = {5, 8192};
    char *text = NULL;
    size_t len;
    st = lb_tokenizer_decode(t, bad, 2, &text, &len, &err);
    CHECK(st == LB_ERR_ARG && strstr(err.msg, "8192"), "bad id: %d %s", st, err.msg);
    int32_t neg[] = {-1};
    CHECK(lb_tokenizer_decode(t, neg, 1, &text, &len, &err) == LB_ERR_ARG, "negative id");
    CHECK(lb_tokenizer_decode(t, NULL, 0, &text, &len, &err) == LB_OK && len == 0 && text[0] == 0, "empty decode");
    lb_free(text);

    /* byte tokens: lossy decoding groups maximal subparts as Rust's from_utf8_lossy */
    int32_t byte_tok[256];
    for (int b = 0; b < 256; b++) byte_tok[b] = -1;
    for (int32_t id = 0; id < 8192; id++) {
        char buf[8];
        if (lb_tokenizer_token_bytes(t, id, buf, sizeof buf) == 1) byte_tok[(uint8_t)buf[0]] = id;
    }
    CHECK(lb_tokenizer_token_bytes(t, 8192, NULL, 0) == -1, "token_bytes out of range");
    struct {
        uint8_t in[4];
        int n;
        const char *want;
    } lossy[] = {
        {{0xE2, 0x82, 'A'}, 3, "\xEF\xBF\xBD" "A"},
        {{0xE2, 'A'}, 2, "\xEF\xBF\xBD" "A"},
        {{0x80, 0x80}, 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},
        {{0xE0, 0x80, 'A'}, 3, "\xEF\xBF\xBD\xEF\xBF\xBD" "A"},
        {{0xF0, 0x9F, 0x9A}, 3, "\xEF\xBF\xBD"},
        {{0xE2, 0x82, 0xAC}, 3, "\xE2\x82\xAC"},
    };
    for (size_t i = 0; i < sizeof lossy / sizeof lossy[0]; i++) {
        int32_t in[4];
        int ok = 1;
        for (int k = 0; k < lossy[i].n; k++) ok &= (in[k] = byte_tok[lossy[i].in[k]]) >= 0;
        REQUIRE(ok, "no single-byte tokens for lossy case %zu", i);
        st = lb_tokenizer_decode(t, in, lossy[i].n, &text, &len, &err);
        CHECK(st == LB_OK && !strcmp(text, lossy[i].want), "lossy case %zu: got \"%s\"", i, st ? err.msg : text);
        if (st == LB_OK) lb_free(text);
    }
    lb_tokenizer_free(t);
    lb_tokenizer_free(NULL);

    REQUIRE(lb_tokenizer_load("tests/golden/conformance/tokenizers/spm_bpe/tokenizer.json", &t, &err) == LB_OK, "spm: %s",
            err.msg);
    CHECK(lb_tokenizer_model_kind(t) == LB_TOK_MODEL_SPM_BPE, "spm kind");
    CHECK(lb_tokenizer_pre_kind(t) == LB_TOK_PRE_NONE, "spm pre");
    CHECK(lb_tokenizer_unk_id(t) == 0, "spm unk");
    CHECK(lb_tokenizer_token_type(t, 0) == LB_TOK_TYPE_CONTROL, "spm <unk> is an added special token");
    int byte_types = 0;
    for (int32_t id = 0; id < lb_tokenizer_n_vocab(t); id++) byte_types += lb_tokenizer_token_type(t, id) == LB_TOK_TYPE_BYTE;
    CHECK(byte_types == 256, "spm byte tokens: %d", byte_types);
    char b[8];
    int32_t nl = -1;
    for (int32_t id = 0; id < lb_tokenizer_n_vocab(t); id++)
        if (!strcmp(lb_tokenizer_token_text(t, id), "<0x0A>")) nl = id;
    CHECK(nl >= 0 && lb_tokenizer_token_bytes(t, nl, b, sizeof b) == 1 && b[0] == '\n', "spm <0x0A> bytes");
    /* an invalid byte run decodes to one U+FFFD per byte */
    int32_t e2 = -1, a41 = -1;
    for (int32_t id = 0; id < lb_tokenizer_n_vocab(t); id++) {
        if (!strcmp(lb_tokenizer_token_text(t, id), "<0xE2>")) e2 = id;
        if (!strcmp(lb_tokenizer_token_text(t, id), "<0x41>")) a41 = id;
    }
    int32_t run[] = {e2, e2, a41};
    REQUIRE(e2 >= 0 && a41 >= 0, "spm byte tokens missing");
    st = lb_tokenizer_decode(t, run, 3, &text, &len, &err);
    CHECK(st == LB_OK && !strcmp(text, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"), "spm invalid bytes: \"%s\"",
          st ? err.msg : text);
    if (st == LB_OK) lb_free(text);
    lb_tokenizer_free(t);
}

/* Whole-file round trip: decode(encode(text)) == text, with the encode rate. */
static void test_round_trip(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/data/%s", test_shared_dir(), name);
    char *text;
    size_t len;
    lb_error err = {{0}};
    if (lb_read_file(path, (size_t)1 << 30, &text, &len, &err) != LB_OK) {
        printf("skip round trip of %s: %s\n", name, err.msg);
        return;
    }
    const char *styles[] = {"models/tiny", "tests/golden/conformance/tokenizers/spm_bpe",
                            "tests/golden/conformance/tokenizers/qwen2"};
    for (int s = 0; s < 3; s++) {
        lb_tokenizer *t = NULL;
        REQUIRE(lb_tokenizer_load(styles[s], &t, &err) == LB_OK, "load %s: %s", styles[s], err.msg);
        int32_t *ids = NULL;
        int64_t n = 0;
        double t0 = lb_time_sec();
        lb_status st = lb_tokenizer_encode(t, text, len, &ids, &n, &err);
        double t1 = lb_time_sec();
        CHECK(st == LB_OK, "encode %s: %s", name, err.msg);
        char *back = NULL;
        size_t blen = 0;
        st = lb_tokenizer_decode(t, ids, n, &back, &blen, &err);
        double t2 = lb_time_sec();
        CHECK(st == LB_OK && blen == len && memcmp(back, text, len) == 0, "%s round trip of %s differs", styles[s], name);
        printf("%s with %s: %zu bytes -> %lld tokens, encode %.3f s (%.1f MB/s), decode %.3f s\n", name, styles[s], len,
               (long long)n, t1 - t0, len / 1e6 / (t1 - t0), t2 - t1);
        lb_free(ids);
        lb_free(back);
        lb_tokenizer_free(t);
    }
    free(text);
}

int main(void) {
    /* *_added: the same with added tokens using every flag (tools/gen_tokenizer_variants.py) */
    const char *styles[] = {"gpt2", "llama3", "qwen2", "spm_bpe", "gpt2_added", "spm_bpe_added"};
    for (int i = 0; i < 6; i++) test_conformance(styles[i]);
    test_goldens("models/tiny", "models/tiny/goldens.json");
    test_goldens("tests/golden/small", "tests/golden/small/goldens.json");
    test_bad_files();
    test_api();
    test_round_trip("valid.txt");
    test_round_trip("wikitext-2-test.txt");
    TEST_DONE();
}
