/*
 * test_tokenizer_gguf.c - the tokenizer as GGUF metadata: loaded from the files llama.cpp wrote for the
 * tiny model (tests/golden/gguf) it must tokenize exactly as Hugging Face does (the conformance cases
 * and the tiny model's goldens); exported from tokenizer.json it must match what llama.cpp's converter
 * wrote key by key and value by value, and load back to the same tokenizer (GPT-2, Llama-3 and Qwen2
 * styles); malformed or unsupported metadata must give clear errors.
 */
#include "core/core.h"
#include "core/json.h"
#include "io/gguf.h"
#include "lowbit.h"
#include "text/text.h"
#include "text/unicode.h"
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF "tests/golden/conformance/tokenizers"

static char tmp_dir[64];

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

/* ids of a JSON array into a malloc'd buffer */
static int32_t *json_ids(const json_value *v, size_t *n) {
    *n = json_len(v);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    for (size_t i = 0; i < *n; i++) {
        int64_t x = -1;
        json_int(json_at(v, i), &x);
        ids[i] = (int32_t)x;
    }
    return ids;
}

static int check_encode(const lb_tokenizer *t, const char *text, size_t len, const json_value *want, const char *where) {
    int32_t *ids = NULL;
    int64_t n = 0;
    size_t nw;
    int32_t *w = json_ids(want, &nw);
    lb_error err = {{0}};
    lb_status st = lb_tokenizer_encode(t, text, len, &ids, &n, &err);
    int ok = st == LB_OK && n == (int64_t)nw && (n == 0 || memcmp(ids, w, nw * sizeof *w) == 0);
    CHECK(ok, "%s: encode mismatch for \"%.80s\" (%s)", where, text, st ? err.msg : "ids differ");
    lb_free(ids);
    free(w);
    return ok;
}

static int check_decode(const lb_tokenizer *t, const json_value *ids_v, const char *want, size_t want_len,
                        const char *where) {
    size_t n;
    int32_t *ids = json_ids(ids_v, &n);
    char *text = NULL;
    size_t len = 0;
    lb_error err = {{0}};
    lb_status st = lb_tokenizer_decode(t, ids, (int64_t)n, &text, &len, &err);
    int ok = st == LB_OK && len == want_len && memcmp(text, want, len) == 0;
    CHECK(ok, "%s: decode mismatch: want \"%.80s\" (%s)", where, want, st ? err.msg : "text differs");
    lb_free(text);
    free(ids);
    return ok;
}

/* Set while checking a GGUF Qwen2 tokenizer: llama.cpp applies no NFC, which HF's Qwen2 tokenizer.json
 * does, so encodings of text that NFC changes are not compared with HF's. */
static bool nfc_only;

static bool is_nfc(const char *s, size_t n) {
    uint8_t *o = NULL;
    size_t ol = 0;
    bool same = uni_nfc((const uint8_t *)s, n, &o, &ol) && ol == n && memcmp(o, s, n) == 0;
    free(o);
    return same;
}

/* Every case of a conformance style: encode and decode exactly as HF did. */
static void check_cases(const lb_tokenizer *t, const char *style, const char *where) {
    char path[256];
    snprintf(path, sizeof path, CONF "/%s/cases.json", style);
    json_doc *doc = read_json(path);
    REQUIRE(doc, "cannot read %s", path);
    const json_value *cases = json_get(json_root(doc), "cases");
    size_t n = json_len(cases), enc_ok = 0, dec_ok = 0, skipped = 0;
    REQUIRE(n > 0, "%s has no cases", path);
    for (size_t i = 0; i < n; i++) {
        const json_value *c = json_at(cases, i);
        size_t tl, dl;
        const char *text = json_str(json_get(c, "text"), &tl);
        const char *dec = json_str(json_get(c, "decoded"), &dl);
        REQUIRE(text && dec, "%s: case %zu lacks text or decoded", path, i);
        if (nfc_only && !is_nfc(text, tl)) skipped++;
        else enc_ok += (size_t)check_encode(t, text, tl, json_get(c, "ids"), where);
        dec_ok += (size_t)check_decode(t, json_get(c, "ids"), dec, dl, where);
    }
    printf("%-40s %-6s cases: encode %zu/%zu, decode %zu/%zu", where, style, enc_ok, n - skipped, dec_ok, n);
    printf(skipped ? " (%zu texts not in NFC not encoded: llama.cpp does not normalize)\n" : "\n", skipped);
    json_free(doc);
}

/* The tokenizer and prompts entries of the tiny model's goldens (HF transformers' token ids). */
static void check_goldens(const lb_tokenizer *t, const char *where) {
    const char *path = "models/tiny/goldens.json";
    json_doc *doc = read_json(path);
    REQUIRE(doc, "cannot read %s", path);
    const char *lists[] = {"tokenizer", "prompts"};
    size_t ok = 0, total = 0;
    for (int k = 0; k < 2; k++) {
        const json_value *list = json_get(json_root(doc), lists[k]);
        CHECK(json_len(list) > 0, "%s: no %s entries", path, lists[k]);
        for (size_t i = 0; i < json_len(list); i++, total++) {
            size_t tl;
            const json_value *e = json_at(list, i);
            const char *text = json_str(json_get(e, "text"), &tl);
            REQUIRE(text, "%s: %s[%zu] has no text", path, lists[k], i);
            ok += (size_t)check_encode(t, text, tl, json_get(e, "ids"), where);
        }
    }
    printf("%-40s goldens: %zu/%zu\n", where, ok, total);
    json_free(doc);
}

static lb_tokenizer *load(const char *path) {
    lb_tokenizer *t = NULL;
    lb_error err = {{0}};
    REQUIRE(lb_tokenizer_load(path, &t, &err) == LB_OK, "load %s: %s", path, err.msg);
    return t;
}

/* Write t's metadata alone into a GGUF file. */
static lb_status export_to(const lb_tokenizer *t, const char *path, int64_t n_vocab, int32_t bos, int32_t eos,
                           lb_error *err) {
    gguf_writer *w = NULL;
    lb_status st = gguf_writer_open(path, &w, err);
    if (st) return st;
    st = lb_tokenizer_write_gguf(t, w, n_vocab, bos, eos, err);
    if (st) {
        gguf_writer_abort(w);
        return st;
    }
    return gguf_writer_finish(w, err);
}

/* ---------------------------------------------------------------------------------------------- */

static void test_llamacpp_files(void) {
    const char *files[] = {test_gguf("tiny-q8_0.gguf"), test_gguf("tiny-f16.gguf")};
    for (int i = 0; i < 2; i++) {
        lb_tokenizer *t = load(files[i]);
        CHECK(lb_tokenizer_n_vocab(t) == 8192, "n_vocab %lld", (long long)lb_tokenizer_n_vocab(t));
        CHECK(lb_tokenizer_model_kind(t) == LB_TOK_MODEL_BYTE_BPE && lb_tokenizer_pre_kind(t) == LB_TOK_PRE_GPT2,
              "kinds %d %d", lb_tokenizer_model_kind(t), lb_tokenizer_pre_kind(t));
        CHECK(lb_tokenizer_bos_id(t) == 0 && lb_tokenizer_eos_id(t) == 0 && lb_tokenizer_add_bos(t) == 0, "bos/eos");
        CHECK(lb_tokenizer_token_type(t, 0) == LB_TOK_TYPE_CONTROL && lb_tokenizer_n_merges(t) == 7935, "types/merges");
        check_cases(t, "gpt2", files[i]);
        if (i == 0) check_goldens(t, files[i]);
        lb_tokenizer_free(t);
    }
}

/* Whether two pairs hold the same value (type, element type, count and bytes / strings). */
static bool same_kv(const gguf_kv *a, const gguf_kv *b) {
    if (a->type != b->type || gguf_arr_n(a) != gguf_arr_n(b)) return false;
    if (a->type == GGUF_VT_STR) return a->str_len == b->str_len && memcmp(a->data, b->data, a->str_len) == 0;
    if (a->type != GGUF_VT_ARR) return memcmp(a->data, b->data, gguf_vtype_size(a->type)) == 0;
    if (a->arr_type != b->arr_type) return false;
    if (a->arr_type != GGUF_VT_STR) return memcmp(a->data, b->data, a->n * gguf_vtype_size(a->arr_type)) == 0;
    for (uint64_t i = 0; i < a->n; i++) {
        size_t la, lb;
        const char *sa = gguf_get_arr_str(a, i, &la), *sb = gguf_get_arr_str(b, i, &lb);
        if (!sa || !sb || la != lb || memcmp(sa, sb, la) != 0) {
            fprintf(stderr, "  %s[%llu] differs: \"%.*s\" vs \"%.*s\"\n", a->key, (unsigned long long)i, (int)la, sa,
                    (int)lb, sb);
            return false;
        }
    }
    return true;
}

/* Every tokenizer.* key of want, in the same order, with the same value, and no other. */
static void compare_tokenizer_keys(const gguf_file *got, const gguf_file *want) {
    int64_t ig = 0, iw = 0, n = 0;
    for (;; ig++, iw++) {
        while (ig < got->n_kv && strncmp(got->kvs[ig].key, "tokenizer.", 10) != 0) ig++;
        while (iw < want->n_kv && strncmp(want->kvs[iw].key, "tokenizer.", 10) != 0) iw++;
        if (ig >= got->n_kv || iw >= want->n_kv) break;
        const gguf_kv *g = &got->kvs[ig], *w = &want->kvs[iw];
        CHECK(strcmp(g->key, w->key) == 0, "key %lld: %s, llama.cpp wrote %s", (long long)n, g->key, w->key);
        if (!strcmp(g->key, w->key)) CHECK(same_kv(g, w), "%s differs from llama.cpp's", g->key);
        n++;
    }
    CHECK(ig >= got->n_kv && iw >= want->n_kv, "key counts differ (extra %s)",
          ig < got->n_kv ? got->kvs[ig].key : iw < want->n_kv ? want->kvs[iw].key : "?");
    printf("exported tokenizer.* keys compared with llama.cpp's: %lld\n", (long long)n);
}

static void test_export_tiny(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/tiny.gguf", tmp_dir);
    lb_tokenizer *t = load("models/tiny");
    lb_error err = {{0}};
    REQUIRE(export_to(t, path, 8192, 0, 0, &err) == LB_OK, "export: %s", err.msg);
    lb_tokenizer_free(t);
    gguf_file *got = NULL, *want = NULL;
    REQUIRE(gguf_open(path, &got, &err) == LB_OK, "open %s: %s", path, err.msg);
    REQUIRE(gguf_open(test_gguf("tiny-f16.gguf"), &want, &err) == LB_OK, "open tiny-f16: %s", err.msg);
    compare_tokenizer_keys(got, want);
    gguf_close(got);
    gguf_close(want);
    t = load(path);
    check_cases(t, "gpt2", "exported tiny");
    check_goldens(t, "exported tiny");
    lb_tokenizer_free(t);
}

/* tokenizer.json -> GGUF -> tokenizer, for a conformance style; `extra` padding ids. */
static void test_round_trip(const char *style, const char *pre, int extra) {
    char src[256], path[128], where[64];
    snprintf(src, sizeof src, CONF "/%s/tokenizer.json", style);
    snprintf(path, sizeof path, "%s/%s.gguf", tmp_dir, style);
    snprintf(where, sizeof where, "round trip %s (+%d ids)", style, extra);
    lb_tokenizer *t = load(src);
    int64_t nv = lb_tokenizer_n_vocab(t);
    lb_error err = {{0}};
    REQUIRE(export_to(t, path, nv + extra, -1, 0, &err) == LB_OK, "export %s: %s", style, err.msg);
    gguf_file *f = NULL;
    REQUIRE(gguf_open(path, &f, &err) == LB_OK, "open %s: %s", path, err.msg);
    size_t len = 0;
    const char *p = gguf_get_str(f, "tokenizer.ggml.pre", &len);
    CHECK(p && len == strlen(pre) && memcmp(p, pre, len) == 0, "%s: pre is %.*s", style, (int)len, p ? p : "");
    CHECK(!gguf_find_kv(f, "tokenizer.ggml.bos_token_id"), "%s: bos written for -1", style);
    if (extra) {
        const gguf_kv *tok = gguf_find_kv(f, "tokenizer.ggml.tokens"), *ty = gguf_find_kv(f, "tokenizer.ggml.token_type");
        char want[32];
        snprintf(want, sizeof want, "[PAD%lld]", (long long)nv + extra - 1);
        const char *s = gguf_get_arr_str(tok, (uint64_t)(nv + extra - 1), &len);
        int64_t type = 0;
        CHECK(s && len == strlen(want) && !memcmp(s, want, len), "%s: last token %.*s", style, (int)len, s ? s : "");
        CHECK(gguf_get_arr_int(ty, (uint64_t)(nv + extra - 1), &type) && type == LB_TOK_TYPE_UNUSED, "pad type");
    }
    gguf_close(f);
    lb_tokenizer *back = load(path);
    CHECK(lb_tokenizer_n_vocab(back) == nv + extra && lb_tokenizer_pre_kind(back) == lb_tokenizer_pre_kind(t),
          "%s: n_vocab %lld", style, (long long)lb_tokenizer_n_vocab(back));
    CHECK(lb_tokenizer_eos_id(back) == 0 && lb_tokenizer_bos_id(back) == -1, "%s: special ids", style);
    CHECK(!extra || lb_tokenizer_token_text(back, (int32_t)nv) == NULL, "%s: a padding id has text", style);
    bool same = lb_tokenizer_n_merges(back) == lb_tokenizer_n_merges(t);
    for (int32_t id = 0; id < nv && same; id++) {
        const char *a = lb_tokenizer_token_text(t, id), *b = lb_tokenizer_token_text(back, id);
        same = lb_tokenizer_token_type(t, id) == lb_tokenizer_token_type(back, id) && (a == b || (a && b && !strcmp(a, b)));
    }
    CHECK(same, "%s: tokens, types or merges differ after the round trip", style);
    nfc_only = !strcmp(pre, "qwen2");
    check_cases(back, style, where);
    nfc_only = false;
    lb_tokenizer_free(back);
    lb_tokenizer_free(t);
}

/* SmolLM2's tokenizer.json pre-tokenizer (Digits individual, then ByteLevel) is written as "smollm",
 * and the GGUF tokenizer read back (llama.cpp's rules) encodes like the tokenizer.json one (HF's rules,
 * both checked against their references by the Python tests). */
static void test_round_trip_smollm(void) {
    char *text = NULL, src[256], dir[160], path[192];
    size_t len = 0;
    lb_error err = {{0}};
    REQUIRE(lb_read_file(CONF "/gpt2/tokenizer.json", 1 << 26, &text, &len, &err) == LB_OK, "%s", err.msg);
    /* the pre_tokenizer object (one ByteLevel, no nested braces) becomes Sequence[Digits, ByteLevel] */
    char *at = strstr(text, "\"pre_tokenizer\": {\"type\": \"ByteLevel\"");
    char *end = at ? strchr(at, '}') : NULL;
    REQUIRE(end, "gpt2 tokenizer.json has no ByteLevel pre_tokenizer");
    snprintf(dir, sizeof dir, "%s/smollm", tmp_dir);
    snprintf(src, sizeof src, "%s/tokenizer.json", dir);
    snprintf(path, sizeof path, "%s/smollm.gguf", tmp_dir);
    REQUIRE(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    FILE *f = fopen(src, "wb");
    REQUIRE(f, "cannot write %s", src);
    fwrite(text, 1, (size_t)(at - text), f);
    fputs("\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": "
          "true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}]}",
          f);
    fwrite(end + 1, 1, len - (size_t)(end + 1 - text), f);
    REQUIRE(fclose(f) == 0, "write %s", src);
    free(text);
    lb_tokenizer *t = NULL;
    lb_status st = lb_tokenizer_load(src, &t, &err);
    REQUIRE(st == LB_OK, "load %s: %s", src, err.msg);
    CHECK(lb_tokenizer_pre_kind(t) == LB_TOK_PRE_SMOLLM, "kind %d", lb_tokenizer_pre_kind(t));
    REQUIRE(export_to(t, path, 0, -1, 0, &err) == LB_OK, "export: %s", err.msg);
    gguf_file *g = NULL;
    REQUIRE(gguf_open(path, &g, &err) == LB_OK, "open %s: %s", path, err.msg);
    const char *p = gguf_get_str(g, "tokenizer.ggml.pre", &len);
    CHECK(p && len == 6 && !memcmp(p, "smollm", 6), "pre is %.*s", (int)len, p ? p : "");
    gguf_close(g);
    lb_tokenizer *back = load(path);
    const char *texts[] = {"Hello world 12345 it's 3.14", "x  ２３ ٣٤ Ⅻ ½ 1,000,000\n\n  end", "a1b22c333 'll 99"};
    for (int i = 0; i < 3; i++) {
        int32_t *a = NULL, *b = NULL;
        int64_t na = 0, nb = 0;
        CHECK(lb_tokenizer_encode(t, texts[i], strlen(texts[i]), &a, &na, &err) == LB_OK &&
                  lb_tokenizer_encode(back, texts[i], strlen(texts[i]), &b, &nb, &err) == LB_OK && na == nb &&
                  !memcmp(a, b, (size_t)na * sizeof *a),
              "smollm round trip differs on \"%s\"", texts[i]);
        lb_free(a);
        lb_free(b);
    }
    lb_tokenizer_free(back);
    lb_tokenizer_free(t);
    remove(src);
    rmdir(dir);
    remove(path);
}

static void test_export_errors(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/bad_export.gguf", tmp_dir);
    lb_error err = {{0}};
    lb_tokenizer *t = load(CONF "/spm_bpe/tokenizer.json");
    CHECK(export_to(t, path, 0, -1, -1, &err) == LB_ERR_UNSUPPORTED && strstr(err.msg, "SentencePiece"), "spm: %s",
          err.msg);
    lb_tokenizer_free(t);
    t = load("models/tiny");
    CHECK(export_to(t, path, 100, 0, 0, &err) == LB_ERR_ARG && strstr(err.msg, "100"), "small vocab: %s", err.msg);
    CHECK(export_to(t, path, 0, 9000, 0, &err) == LB_ERR_ARG && strstr(err.msg, "9000"), "bad bos: %s", err.msg);
    CHECK(access(path, F_OK) != 0, "a failed export left %s", path);
    lb_tokenizer_free(t);
}

/* ---------------------------------------------------------------------------------------------- */
/* hand-made metadata                                                                             */

enum { BAD_NONE, BAD_NO_TOKENS, BAD_TOKENS_I32, BAD_TYPES_F32, BAD_MERGE_UNKNOWN, BAD_MODEL_BERT, BAD_MODEL_LLAMA,
       BAD_PRE, BAD_NO_PRE, BAD_TYPES_LEN, BAD_MERGE_NO_SPACE, BAD_MERGE_RESULT, BAD_NO_MERGES, BAD_EMPTY_TOKENS,
       BAD_MODEL_U32, BAD_TYPE_VALUE, BAD_COUNT };

/* A five-token byte-level vocabulary: a, b, ab, <u> (user-defined), <|s|> (control); merge "a b". */
static lb_status write_small(const char *path, int bad, lb_error *err) {
    const char *tokens[] = {"a", "b", "ab", "<u>", "<|s|>"};
    int32_t types[] = {1, 1, 1, 4, 3, 9};
    const char *merges[] = {bad == BAD_MERGE_UNKNOWN ? "a zz" : bad == BAD_MERGE_NO_SPACE ? "ab" : bad == BAD_MERGE_RESULT ? "b a" : "a b"};
    float f[5] = {0};
    gguf_writer *w = NULL;
    lb_status st = gguf_writer_open(path, &w, err);
    if (st) return st;
    if (bad == BAD_MODEL_U32) st = gguf_writer_set_u32(w, "tokenizer.ggml.model", 2, err);
    else {
        const char *m = bad == BAD_MODEL_BERT ? "bert" : bad == BAD_MODEL_LLAMA ? "llama" : "gpt2";
        st = gguf_writer_set_str(w, "tokenizer.ggml.model", m, strlen(m), err);
    }
    const char *pre = bad == BAD_PRE ? "mystery" : "gpt-2";
    if (!st && bad != BAD_NO_PRE) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, strlen(pre), err);
    uint64_t nt = bad == BAD_EMPTY_TOKENS ? 0 : 5;
    if (!st && bad == BAD_TOKENS_I32) st = gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_VT_I32, types, 5, err);
    else if (!st && bad != BAD_NO_TOKENS) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens, NULL, nt, err);
    if (bad == BAD_TYPE_VALUE) types[1] = 9;
    if (!st && bad == BAD_TYPES_F32) st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_F32, f, 5, err);
    else if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, types, bad == BAD_TYPES_LEN ? 6 : nt, err);
    if (!st && bad != BAD_NO_MERGES) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 1, err);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 4, err);
    if (st) {
        gguf_writer_abort(w);
        return st;
    }
    return gguf_writer_finish(w, err);
}

static void test_small(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/small.gguf", tmp_dir);
    lb_error err = {{0}};
    REQUIRE(write_small(path, BAD_NONE, &err) == LB_OK, "write: %s", err.msg);
    lb_tokenizer *t = load(path);
    const char *text = "ab<u>a<|s|>bab";
    int32_t *ids = NULL, want[] = {2, 3, 0, 4, 1, 2};
    int64_t n = 0;
    CHECK(lb_tokenizer_encode(t, text, strlen(text), &ids, &n, &err) == LB_OK && n == 6 && !memcmp(ids, want, sizeof want),
          "small encode (%lld ids)", (long long)n);
    char *back = NULL;
    size_t len = 0;
    CHECK(lb_tokenizer_decode(t, ids, n, &back, &len, &err) == LB_OK && len == strlen(text) && !memcmp(back, text, len),
          "small decode");
    CHECK(lb_tokenizer_token_type(t, 3) == LB_TOK_TYPE_USER_DEFINED && lb_tokenizer_token_type(t, 4) == LB_TOK_TYPE_CONTROL,
          "small types");
    CHECK(lb_tokenizer_bos_id(t) == 4 && lb_tokenizer_add_bos(t) == 0, "small bos");
    lb_free(ids);
    lb_free(back);
    lb_tokenizer_free(t);
    /* model "llama": SentencePiece by scores (all 0 here, so the leftmost pair merges first); a space
     * is prefixed and escaped as U+2581, absent from this vocabulary, so it falls back to bytes: none
     * exist, so it is dropped */
    REQUIRE(write_small(path, BAD_MODEL_LLAMA, &err) == LB_OK, "write: %s", err.msg);
    t = load(path);
    CHECK(lb_tokenizer_model_kind(t) == LB_TOK_MODEL_SPM && lb_tokenizer_add_bos(t) == 1, "llama: kind / add_bos");
    int32_t want_spm[] = {2, 3, 2};
    CHECK(lb_tokenizer_encode(t, "ab<u>ab", 7, &ids, &n, &err) == LB_OK && n == 3 && !memcmp(ids, want_spm, sizeof want_spm),
          "llama encode (%lld ids)", (long long)n);
    lb_free(ids);
    lb_tokenizer_free(t);
    /* without tokenizer.ggml.pre llama.cpp uses its "default" rules, and so does lowbit */
    REQUIRE(write_small(path, BAD_NO_PRE, &err) == LB_OK, "write: %s", err.msg);
    t = load(path);
    CHECK(lb_tokenizer_pre_kind(t) == LB_TOK_PRE_OTHER, "no pre: kind %d", lb_tokenizer_pre_kind(t));
    lb_tokenizer_free(t);
}

static void test_bad_metadata(void) {
    static const struct {
        int bad;
        lb_status want;
        const char *needle;
    } cases[] = {
        {BAD_NO_TOKENS, LB_ERR_FORMAT, "tokenizer.ggml.tokens is missing"},
        {BAD_TOKENS_I32, LB_ERR_FORMAT, "tokenizer.ggml.tokens is a arr of i32, not an array of str"},
        {BAD_TYPES_F32, LB_ERR_FORMAT, "tokenizer.ggml.token_type is a arr of f32"},
        {BAD_MERGE_UNKNOWN, LB_ERR_FORMAT, "token \"zz\" is not in tokenizer.ggml.tokens"},
        {BAD_MODEL_BERT, LB_ERR_UNSUPPORTED, "tokenizer.ggml.model \"bert\" is not supported"},
        {BAD_PRE, LB_ERR_UNSUPPORTED, "tokenizer.ggml.pre \"mystery\" is not supported"},
        {BAD_TYPES_LEN, LB_ERR_FORMAT, "tokenizer.ggml.token_type has 6 entries but tokenizer.ggml.tokens has 5"},
        {BAD_MERGE_NO_SPACE, LB_ERR_FORMAT, "not two tokens separated by one space"},
        {BAD_MERGE_RESULT, LB_ERR_FORMAT, "merged token \"ba\""},
        {BAD_NO_MERGES, LB_ERR_FORMAT, "tokenizer.ggml.merges is missing"},
        {BAD_EMPTY_TOKENS, LB_ERR_FORMAT, "tokenizer.ggml.tokens has 0 entries"},
        {BAD_MODEL_U32, LB_ERR_FORMAT, "tokenizer.ggml.model is a u32, not a string"},
        {BAD_TYPE_VALUE, LB_ERR_FORMAT, "token_type[1] = 9"},
    };
    char path[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/bad%zu.gguf", tmp_dir, i);
        lb_error err = {{0}};
        REQUIRE(write_small(path, cases[i].bad, &err) == LB_OK, "write bad %zu: %s", i, err.msg);
        lb_tokenizer *t = (lb_tokenizer *)1;
        lb_status st = lb_tokenizer_load(path, &t, &err);
        CHECK(st == cases[i].want, "bad %d: status %d, want %d (%s)", cases[i].bad, st, cases[i].want, err.msg);
        CHECK(strstr(err.msg, cases[i].needle) && strstr(err.msg, path), "bad %d: message \"%s\" lacks \"%s\"",
              cases[i].bad, err.msg, cases[i].needle);
        CHECK(t == (lb_tokenizer *)1, "out written on failure");
        remove(path);
    }
    lb_error err = {{0}};
    CHECK(lb_tokenizer_from_gguf(NULL, NULL, &err) == LB_ERR_ARG, "NULL arguments");
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/lb_test_tok_gguf_XXXXXX");
    REQUIRE(mkdtemp(tmp_dir), "mkdtemp failed");
    test_llamacpp_files();
    test_export_tiny();
    test_round_trip("gpt2", "gpt-2", 0);
    test_round_trip("llama3", "llama-bpe", 5);
    test_round_trip("qwen2", "qwen2", 0);
    test_round_trip_smollm();
    test_export_errors();
    test_small();
    test_bad_metadata();
    const char *names[] = {"tiny.gguf", "gpt2.gguf", "llama3.gguf", "qwen2.gguf", "small.gguf"};
    for (int i = 0; i < 5; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", tmp_dir, names[i]);
        remove(p);
    }
    rmdir(tmp_dir);
    TEST_DONE();
}
