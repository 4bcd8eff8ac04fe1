/*
 * test_gguf.c - the GGUF reader and writer: llama.cpp's files (tests/golden/gguf and
 * $LB_SHARED/golden/gguf), a round trip through every metadata type and several tensor types, a
 * byte-for-byte rewrite of llama.cpp's files, hand-built hostile files (status and message checked),
 * truncations of a real file, and writer failures (missing directory, disk full via RLIMIT_FSIZE,
 * wrong byte counts, missing tensors).
 * Expected metadata and layout values were read independently with a small Python struct parser.
 */
#include "io/gguf.h"
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp_root[64];

static const char *tmp_path(const char *name) {
    static char buf[4][320];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_root, name);
    return buf[k];
}

static uint8_t *read_all(const char *path, size_t *len) {
    char *d = NULL;
    lb_error err;
    lb_status s = lb_read_file(path, (size_t)1 << 30, &d, len, &err);
    REQUIRE(s == LB_OK, "%s", err.msg);
    return (uint8_t *)d;
}

static bool str_eq(const char *s, size_t len, const char *want) {
    return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

/* ---- llama.cpp's files ---- */

typedef struct golden {
    const char *name;
    lb_type main_type;   /* the most common type among the non-F32 tensors */
    int64_t file_type;   /* general.file_type */
    int64_t n_kv;
    size_t data_start;
} golden;

static const golden TINY[] = {
    {"tiny-f16.gguf", LB_TYPE_F16, 1, 23, 264960},
    {"tiny-q8_0.gguf", LB_TYPE_Q8_0, 7, 23, 264960},
    {"tiny-q4_0.gguf", LB_TYPE_Q4_0, 2, 23, 264960},
    {"tiny-q4_k_m.gguf", LB_TYPE_Q4_K, 15, 23, 264960},
    {"tiny-q4_k_m-imat.gguf", LB_TYPE_Q4_K, 15, 27, 265152},
    {"tiny-q2_k.gguf", LB_TYPE_Q2_K, 10, 23, 264960},
    {"tiny-q2_k-imat.gguf", LB_TYPE_Q2_K, 10, 27, 265152},
    {"tiny-q3_k_m-imat.gguf", LB_TYPE_Q3_K, 12, 27, 265152},
    {"tiny-iq4_xs.gguf", LB_TYPE_IQ4_XS, 30, 23, 264960},
};

static const golden SMALL[] = {
    {"small-q2_k-imat.gguf", LB_TYPE_Q2_K, 10, 27, 265696},
    {"small-q3_k_m-imat.gguf", LB_TYPE_Q3_K, 12, 27, 265696},
    {"small-q4_k_m-imat.gguf", LB_TYPE_Q4_K, 15, 27, 265696},
};

static void check_tokenizer(const gguf_file *f, const char *name) {
    size_t len;
    const char *s = gguf_get_str(f, "tokenizer.ggml.model", &len);
    CHECK(str_eq(s, len, "gpt2"), "%s: tokenizer.ggml.model", name);
    const gguf_kv *tok = gguf_find_kv(f, "tokenizer.ggml.tokens");
    CHECK(gguf_arr_n(tok) == 8192 && gguf_arr_type(tok) == GGUF_VT_STR, "%s: tokens", name);
    s = gguf_get_arr_str(tok, 0, &len);
    CHECK(str_eq(s, len, "<|endoftext|>"), "%s: token 0 is '%.*s'", name, (int)len, s ? s : "");
    s = gguf_get_arr_str(tok, 1, &len);
    CHECK(str_eq(s, len, "!"), "%s: token 1", name);
    CHECK(gguf_get_arr_str(tok, 8192, &len) == NULL, "%s: token 8192 exists", name);
    const gguf_kv *merges = gguf_find_kv(f, "tokenizer.ggml.merges");
    CHECK(gguf_arr_n(merges) == 7935, "%s: %llu merges", name, (unsigned long long)gguf_arr_n(merges));
    s = gguf_get_arr_str(merges, 0, &len);
    CHECK(str_eq(s, len, "\xc4\xa0 \xc4\xa0"), "%s: merge 0", name);
    const gguf_kv *tt = gguf_find_kv(f, "tokenizer.ggml.token_type");
    int64_t v = 0;
    CHECK(gguf_arr_type(tt) == GGUF_VT_I32 && gguf_get_arr_int(tt, 0, &v) && v == 3, "%s: token_type[0]", name);
    CHECK(gguf_get_arr_int(tt, 1, &v) && v == 1, "%s: token_type[1]", name);
    bool b = true;
    CHECK(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b) && !b, "%s: add_bos_token", name);
}

static void check_tensors(const gguf_file *f, const golden *g) {
    int count[LB_TYPE_COUNT] = {0};
    const uint8_t *lo = f->map.data + f->data_start, *hi = f->map.data + f->map.size;
    bool inside = true, found = true;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        count[t->type]++;
        inside &= t->data >= lo && t->data <= hi && t->n_bytes <= (size_t)(hi - t->data);
        found &= gguf_find_tensor(f, t->name) == t;
        CHECK(t->n_bytes == lb_type_row_size(t->type, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]),
              "%s: %s byte size", g->name, t->name);
    }
    CHECK(inside, "%s: a tensor lies outside the file", g->name);
    CHECK(found, "%s: gguf_find_tensor", g->name);
    int best = -1;
    for (int t = 0; t < LB_TYPE_COUNT; t++)
        if (t != LB_TYPE_F32 && (best < 0 || count[t] > count[best])) best = t;
    CHECK(best == (int)g->main_type, "%s: mostly %s, want %s", g->name, lb_type_name((lb_type)best),
          lb_type_name(g->main_type));
    CHECK(f->ggml_layout, "%s: offsets are not running sums", g->name);
    CHECK(f->data_start == g->data_start, "%s: data starts at %zu", g->name, f->data_start);
    CHECK(gguf_find_tensor(f, "no.such.tensor") == NULL, "%s: found a missing tensor", g->name);
}

static void check_golden(const char *dir, const golden *g, bool tiny) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, g->name);
    gguf_file *f = NULL;
    lb_error err = {{0}};
    lb_status s = gguf_open(path, &f, &err);
    CHECK(s == LB_OK, "%s: %s", path, err.msg);
    if (s != LB_OK) return;
    const char *arch = tiny ? "qwen2" : "llama";
    char key[64];
    size_t len;
    int64_t v = 0;
    double d = 0;
    CHECK(f->version == 3 && f->alignment == 32, "%s: version %u alignment %u", g->name, f->version, f->alignment);
    CHECK(f->n_kv == g->n_kv && f->n_tensors == (tiny ? 50 : 57), "%s: %lld KVs %lld tensors", g->name,
          (long long)f->n_kv, (long long)f->n_tensors);
    const char *a = gguf_get_str(f, "general.architecture", &len);
    CHECK(str_eq(a, len, arch), "%s: architecture", g->name);
    snprintf(key, sizeof key, "%s.block_count", arch);
    CHECK(gguf_get_int(f, key, &v) && v == (tiny ? 4 : 6), "%s: %s = %lld", g->name, key, (long long)v);
    snprintf(key, sizeof key, "%s.embedding_length", arch);
    CHECK(gguf_get_int(f, key, &v) && v == (tiny ? 256 : 512), "%s: %s = %lld", g->name, key, (long long)v);
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    CHECK(gguf_get_float(f, key, &d) && d == 10000.0, "%s: %s", g->name, key);
    CHECK(!gguf_get_int(f, key, &v), "%s: a float read as an int", g->name);
    CHECK(gguf_get_int(f, "general.file_type", &v) && v == g->file_type, "%s: file_type %lld", g->name, (long long)v);
    CHECK(gguf_get_int(f, "general.quantization_version", &v) && v == 2, "%s: quantization_version", g->name);
    CHECK(gguf_get_str(f, "general.file_type", &len) == NULL, "%s: an int read as a string", g->name);
    CHECK(gguf_find_kv(f, "general.nothing") == NULL, "%s: found a missing key", g->name);
    check_tokenizer(f, g->name);
    check_tensors(f, g);
    gguf_close(f);
}

static void test_golden(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/golden/gguf", test_shared_dir());
    REQUIRE(lb_path_is_dir(dir), "%s is missing (set LB_SHARED)", dir);
    for (size_t i = 0; i < sizeof TINY / sizeof TINY[0]; i++) check_golden(dir, &TINY[i], true);
    for (size_t i = 0; i < sizeof SMALL / sizeof SMALL[0]; i++) check_golden(dir, &SMALL[i], false);
    /* a closer look at one file: shapes and offsets as the Python parser saw them */
    gguf_file *f = NULL;
    lb_error err;
    REQUIRE(gguf_open(test_gguf("tiny-f16.gguf"), &f, &err) == LB_OK, "%s", err.msg);
    const gguf_tensor *t = &f->tensors[0];
    CHECK(strcmp(t->name, "token_embd.weight") == 0 && t->type == LB_TYPE_F16 && t->n_dims == 2 &&
          t->ne[0] == 256 && t->ne[1] == 8192 && t->ne[2] == 1 && t->offset == 0 && t->n_bytes == 4194304,
          "tiny-f16 tensor 0");
    t = &f->tensors[1];
    CHECK(strcmp(t->name, "blk.0.attn_norm.weight") == 0 && t->type == LB_TYPE_F32 && t->n_dims == 1 &&
          t->offset == 4194304 && t->n_elements == 256, "tiny-f16 tensor 1");
    t = gguf_find_tensor(f, "output_norm.weight");
    CHECK(t && t->offset == 10502144 && t->data + t->n_bytes == f->map.data + f->map.size, "output_norm.weight");
    gguf_close(f);
}

/* ---- round trip ---- */

static const char *numbered(void *user, uint64_t i, size_t *len) {
    static char buf[32];
    (void)user;
    if (i == 7) {
        *len = 0;
        return "";
    }
    *len = (size_t)snprintf(buf, sizeof buf, "s%llu", (unsigned long long)i);
    return buf;
}

typedef struct tspec {
    const char *name;
    lb_type type;
    int n_dims;
    int64_t ne[4];
} tspec;

static const tspec RT_TENSORS[] = {
    {"f32.a", LB_TYPE_F32, 2, {5, 3}},      {"f16.b", LB_TYPE_F16, 1, {7}},
    {"q8_0.c", LB_TYPE_Q8_0, 2, {64, 3}},   {"q4_k.d", LB_TYPE_Q4_K, 2, {256, 2}},
    {"bf16.e", LB_TYPE_BF16, 4, {2, 3, 4, 5}}, {"q6_k.f", LB_TYPE_Q6_K, 1, {256}},
    {"empty", LB_TYPE_F32, 2, {0, 4}},      {"iq4_xs.g", LB_TYPE_IQ4_XS, 3, {256, 1, 2}},
    {"q4_0.h", LB_TYPE_Q4_0, 2, {32, 1}},
};
#define N_RT (sizeof RT_TENSORS / sizeof RT_TENSORS[0])

static uint8_t rt_byte(size_t t, size_t i) { return (uint8_t)(i * 31 + t * 7 + 1); }

static const int32_t RT_I32[] = {1, -2, 3};
static const float RT_F32[] = {0.5f, -1e30f, 3.25f, 0.0f};
static const double RT_F64[] = {1e-300, -7.5};
static const uint8_t RT_BOOL[] = {1, 0, 1};
static const uint64_t RT_U64[] = {0, UINT64_MAX};
static const char *const RT_STRS[] = {"alpha", "", "gamma delta"};

static void write_rt_meta(gguf_writer *w, uint32_t align) {
    lb_error err = {{0}};
    int s = LB_OK;
    s |= gguf_writer_set_u8(w, "t.u8", 200, &err);
    s |= gguf_writer_set_i8(w, "t.i8", -5, &err);
    s |= gguf_writer_set_u16(w, "t.u16", 60000, &err);
    s |= gguf_writer_set_i16(w, "t.i16", -30000, &err);
    s |= gguf_writer_set_u32(w, "t.u32", 4000000000u, &err);
    s |= gguf_writer_set_i32(w, "t.i32", -2000000000, &err);
    s |= gguf_writer_set_u64(w, "t.u64", (1ull << 63) + 5, &err);
    s |= gguf_writer_set_i64(w, "t.i64", INT64_MIN, &err);
    s |= gguf_writer_set_f32(w, "t.f32", 1.5f, &err);
    s |= gguf_writer_set_f64(w, "t.f64", -2.25e300, &err);
    s |= gguf_writer_set_bool(w, "t.bool", true, &err);
    s |= gguf_writer_set_str(w, "t.str", "hello\0world", 11, &err);
    s |= gguf_writer_set_str(w, "t.empty", NULL, 0, &err);
    if (align) s |= gguf_writer_set_u32(w, GGUF_KEY_ALIGNMENT, align, &err);
    s |= gguf_writer_set_arr(w, "a.i32", GGUF_VT_I32, RT_I32, 3, &err);
    s |= gguf_writer_set_arr(w, "a.f32", GGUF_VT_F32, RT_F32, 4, &err);
    s |= gguf_writer_set_arr(w, "a.f64", GGUF_VT_F64, RT_F64, 2, &err);
    s |= gguf_writer_set_arr(w, "a.bool", GGUF_VT_BOOL, RT_BOOL, 3, &err);
    s |= gguf_writer_set_arr(w, "a.u64", GGUF_VT_U64, RT_U64, 2, &err);
    s |= gguf_writer_set_arr(w, "a.i16.empty", GGUF_VT_I16, NULL, 0, &err);
    s |= gguf_writer_set_arr_str(w, "a.str", RT_STRS, NULL, 3, &err);
    size_t lens[2] = {3, 0};
    const char *two[2] = {"xyzzy", "ignored"};
    s |= gguf_writer_set_arr_str(w, "a.str.lens", two, lens, 2, &err);
    s |= gguf_writer_set_arr_str(w, "a.str.empty", NULL, NULL, 0, &err);
    s |= gguf_writer_set_arr_str_fn(w, "a.str.fn", 1000, numbered, NULL, &err);
    CHECK(s == LB_OK, "metadata setters: %s", err.msg);
}

static void write_rt(const char *path, uint32_t align) {
    gguf_writer *w = NULL;
    lb_error err = {{0}};
    REQUIRE(gguf_writer_open(path, &w, &err) == LB_OK, "%s", err.msg);
    write_rt_meta(w, align);
    for (size_t t = 0; t < N_RT; t++) {
        const tspec *ts = &RT_TENSORS[t];
        CHECK(gguf_writer_add_tensor(w, ts->name, ts->type, ts->n_dims, ts->ne, &err) == LB_OK, "%s", err.msg);
    }
    CHECK(gguf_writer_begin_data(w, &err) == LB_OK, "begin_data: %s", err.msg);
    for (size_t t = 0; t < N_RT; t++) {
        size_t n = gguf_writer_tensor_bytes(w, (int64_t)t);
        uint8_t *d = malloc(n + 1);
        REQUIRE(d, "malloc");
        for (size_t i = 0; i < n; i++) d[i] = rt_byte(t, i);
        if (t == 3) { /* in three pieces */
            CHECK(gguf_writer_write_tensor_part(w, 3, d, 100, &err) == LB_OK, "%s", err.msg);
            CHECK(gguf_writer_write_tensor_part(w, 3, d + 100, 0, &err) == LB_OK, "%s", err.msg);
            CHECK(gguf_writer_write_tensor_part(w, 3, d + 100, n - 100, &err) == LB_OK, "%s", err.msg);
        } else {
            CHECK(gguf_writer_write_tensor(w, (int64_t)t, d, n, &err) == LB_OK, "%s", err.msg);
        }
        free(d);
    }
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.lowbit-tmp", path);
    CHECK(lb_path_exists(tmp) && !lb_path_exists(path), "the temporary file is not where it should be");
    CHECK(gguf_writer_finish(w, &err) == LB_OK, "finish: %s", err.msg);
    CHECK(!lb_path_exists(tmp) && lb_path_exists(path), "rename");
}

static void check_rt_scalars(const gguf_file *f) {
    int64_t v = 0;
    double d = 0;
    bool b = false;
    size_t len = 99;
    CHECK(gguf_get_int(f, "t.u8", &v) && v == 200, "u8");
    CHECK(gguf_get_int(f, "t.i8", &v) && v == -5, "i8");
    CHECK(gguf_get_int(f, "t.u16", &v) && v == 60000, "u16");
    CHECK(gguf_get_int(f, "t.i16", &v) && v == -30000, "i16");
    CHECK(gguf_get_int(f, "t.u32", &v) && v == 4000000000ll, "u32");
    CHECK(gguf_get_int(f, "t.i32", &v) && v == -2000000000, "i32");
    v = 42;
    CHECK(!gguf_get_int(f, "t.u64", &v) && v == 42, "u64 above INT64_MAX read as int64");
    const gguf_kv *kv = gguf_find_kv(f, "t.u64");
    uint64_t u = 0;
    if (kv) memcpy(&u, kv->data, 8);
    CHECK(kv && kv->type == GGUF_VT_U64 && u == (1ull << 63) + 5, "u64 raw");
    CHECK(gguf_get_int(f, "t.i64", &v) && v == INT64_MIN, "i64");
    CHECK(gguf_get_float(f, "t.f32", &d) && d == 1.5, "f32");
    CHECK(gguf_get_float(f, "t.f64", &d) && d == -2.25e300, "f64");
    CHECK(gguf_get_bool(f, "t.bool", &b) && b, "bool");
    CHECK(!gguf_get_bool(f, "t.u8", &b) && !gguf_get_float(f, "t.u8", &d), "u8 as bool / float");
    const char *s = gguf_get_str(f, "t.str", &len);
    CHECK(s && len == 11 && memcmp(s, "hello\0world", 11) == 0, "str");
    s = gguf_get_str(f, "t.empty", &len);
    CHECK(s && len == 0, "empty str");
    CHECK(gguf_arr_n(gguf_find_kv(f, "t.str")) == 0 && gguf_arr_type(gguf_find_kv(f, "t.str")) == GGUF_VT_COUNT,
          "a scalar as an array");
}

static void check_rt_arrays(const gguf_file *f) {
    int64_t v = 0;
    double d = 0;
    size_t len;
    const gguf_kv *kv = gguf_find_kv(f, "a.i32");
    CHECK(gguf_arr_n(kv) == 3 && gguf_arr_type(kv) == GGUF_VT_I32, "a.i32");
    for (uint64_t i = 0; i < 3; i++) CHECK(gguf_get_arr_int(kv, i, &v) && v == RT_I32[i], "a.i32[%llu]", (unsigned long long)i);
    CHECK(!gguf_get_arr_int(kv, 3, &v) && !gguf_get_arr_float(kv, 0, &d) && !gguf_get_arr_str(kv, 0, &len), "a.i32 misuse");
    kv = gguf_find_kv(f, "a.f32");
    for (uint64_t i = 0; i < 4; i++) CHECK(gguf_get_arr_float(kv, i, &d) && d == RT_F32[i], "a.f32[%llu]", (unsigned long long)i);
    kv = gguf_find_kv(f, "a.f64");
    CHECK(gguf_get_arr_float(kv, 0, &d) && d == 1e-300 && gguf_get_arr_float(kv, 1, &d) && d == -7.5, "a.f64");
    kv = gguf_find_kv(f, "a.bool");
    CHECK(gguf_arr_type(kv) == GGUF_VT_BOOL && gguf_get_arr_int(kv, 0, &v) && v == 1 && gguf_get_arr_int(kv, 1, &v) &&
          v == 0, "a.bool");
    kv = gguf_find_kv(f, "a.u64");
    CHECK(gguf_get_arr_int(kv, 0, &v) && v == 0 && !gguf_get_arr_int(kv, 1, &v), "a.u64");
    kv = gguf_find_kv(f, "a.i16.empty");
    CHECK(kv && gguf_arr_n(kv) == 0 && gguf_arr_type(kv) == GGUF_VT_I16 && !gguf_get_arr_int(kv, 0, &v), "empty i16 array");
    kv = gguf_find_kv(f, "a.str");
    for (uint64_t i = 0; i < 3; i++) {
        const char *s = gguf_get_arr_str(kv, i, &len);
        CHECK(str_eq(s, len, RT_STRS[i]), "a.str[%llu]", (unsigned long long)i);
    }
    const char *s = gguf_get_arr_str(gguf_find_kv(f, "a.str.lens"), 0, &len);
    CHECK(str_eq(s, len, "xyz"), "a.str.lens[0]");
    s = gguf_get_arr_str(gguf_find_kv(f, "a.str.lens"), 1, &len);
    CHECK(s && len == 0, "a.str.lens[1]");
    CHECK(gguf_arr_n(gguf_find_kv(f, "a.str.empty")) == 0 && gguf_find_kv(f, "a.str.empty"), "empty string array");
    kv = gguf_find_kv(f, "a.str.fn");
    CHECK(gguf_arr_n(kv) == 1000, "a.str.fn count");
    bool ok = true;
    for (uint64_t i = 999; i + 1 > 0; i--) { /* random access, backwards */
        char want[32];
        snprintf(want, sizeof want, "s%llu", (unsigned long long)i);
        s = gguf_get_arr_str(kv, i, &len);
        ok &= i == 7 ? (s && len == 0) : str_eq(s, len, want);
    }
    CHECK(ok, "a.str.fn elements");
}

static void check_rt_layout(const gguf_file *f, uint32_t align) {
    CHECK(f->alignment == (align ? align : 32), "alignment %u", f->alignment);
    CHECK(f->data_start % f->alignment == 0, "data start %zu", f->data_start);
    CHECK(f->ggml_layout, "layout");
    uint64_t expect = 0;
    for (size_t t = 0; t < N_RT && (int64_t)t < f->n_tensors; t++) {
        const gguf_tensor *g = &f->tensors[t];
        const tspec *ts = &RT_TENSORS[t];
        CHECK(strcmp(g->name, ts->name) == 0 && g->type == ts->type && g->n_dims == ts->n_dims, "tensor %zu", t);
        int64_t n_el = 1;
        for (int d = 0; d < 4; d++) {
            int64_t want = d < ts->n_dims ? ts->ne[d] : 1;
            CHECK(g->ne[d] == want, "%s ne[%d] = %lld", g->name, d, (long long)g->ne[d]);
            n_el *= want;
        }
        size_t rows = (size_t)(g->ne[1] * g->ne[2] * g->ne[3]);
        CHECK(g->n_elements == n_el && g->n_bytes == lb_type_row_size(ts->type, ts->ne[0]) * rows, "%s size", g->name);
        CHECK(g->offset == expect, "%s offset %llu, want %llu", g->name, (unsigned long long)g->offset, (unsigned long long)expect);
        bool same = true;
        for (size_t i = 0; i < g->n_bytes; i++) same &= g->data[i] == rt_byte(t, i);
        CHECK(same, "%s data", g->name);
        uint64_t end = g->offset + g->n_bytes, next = end + (f->alignment - end % f->alignment) % f->alignment;
        bool zeros = true;
        for (uint64_t i = end; i < next; i++) zeros &= f->map.data[f->data_start + i] == 0;
        CHECK(zeros, "%s padding", g->name);
        expect = next;
    }
    CHECK(f->map.size == f->data_start + expect, "file size %zu, want %zu", f->map.size, (size_t)(f->data_start + expect));
}

static void test_roundtrip(uint32_t align) {
    const char *path = tmp_path(align ? "rt_align.gguf" : "rt.gguf");
    write_rt(path, align);
    gguf_file *f = NULL;
    lb_error err = {{0}};
    lb_status s = gguf_open(path, &f, &err);
    CHECK(s == LB_OK, "round trip: %s", err.msg);
    if (s != LB_OK) return;
    CHECK(f->version == 3 && f->n_kv == (align ? 24 : 23) && f->n_tensors == (int64_t)N_RT, "counts %lld %lld",
          (long long)f->n_kv, (long long)f->n_tensors);
    CHECK(f->n_kv > 2 && strcmp(f->kvs[0].key, "t.u8") == 0 && strcmp(f->kvs[f->n_kv - 1].key, "a.str.fn") == 0, "KV order");
    check_rt_scalars(f);
    check_rt_arrays(f);
    check_rt_layout(f, align);
    gguf_close(f);
    unlink(path);
}

/* ---- rewrite llama.cpp's files ---- */

static lb_status rewrite(const gguf_file *f, const char *path, lb_error *err) {
    gguf_writer *w = NULL;
    lb_status s = gguf_writer_open(path, &w, err);
    if (s != LB_OK) return s;
    for (int64_t i = 0; i < f->n_kv && s == LB_OK; i++) s = gguf_writer_set_kv(w, &f->kvs[i], err);
    for (int64_t i = 0; i < f->n_tensors && s == LB_OK; i++) {
        const gguf_tensor *t = &f->tensors[i];
        s = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, err);
    }
    if (s == LB_OK) s = gguf_writer_begin_data(w, err);
    for (int64_t i = 0; i < f->n_tensors && s == LB_OK; i++)
        s = gguf_writer_write_tensor(w, i, f->tensors[i].data, f->tensors[i].n_bytes, err);
    if (s != LB_OK) {
        gguf_writer_abort(w);
        return s;
    }
    return gguf_writer_finish(w, err);
}

static void test_rewrite(void) {
    for (size_t g = 0; g < sizeof TINY / sizeof TINY[0]; g++) {
        char src[256];
        snprintf(src, sizeof src, "%s", test_gguf(TINY[g].name));
        gguf_file *f = NULL;
        lb_error err = {{0}};
        REQUIRE(gguf_open(src, &f, &err) == LB_OK, "%s", err.msg);
        const char *out = tmp_path("rewrite.gguf");
        lb_status s = rewrite(f, out, &err);
        CHECK(s == LB_OK, "rewrite %s: %s", TINY[g].name, err.msg);
        size_t n = 0;
        uint8_t *bytes = s == LB_OK ? read_all(out, &n) : NULL;
        size_t diff = 0;
        while (bytes && diff < n && diff < f->map.size && bytes[diff] == f->map.data[diff]) diff++;
        CHECK(bytes && n == f->map.size && diff == n, "%s: rewrite differs at byte %zu (sizes %zu, %zu)", TINY[g].name,
              diff, n, f->map.size);
        free(bytes);
        unlink(out);
        gguf_close(f);
    }
}

/* ---- hostile files ---- */

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        REQUIRE(b->p, "realloc");
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_u32(bytes *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}

static void put_u64(bytes *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(bytes *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

enum defect {
    D_NONE, D_V2, D_MAGIC, D_V1, D_V4, D_BIG_ENDIAN, D_NT_HUGE, D_NKV_HUGE, D_STRLEN_EOF, D_VTYPE, D_NESTED,
    D_ARR_HUGE, D_DUP_KEY, D_EMPTY_KEY, D_BOOL2, D_DUP_NAME, D_LONG_NAME, D_NAME63, D_NDIMS0, D_NDIMS5,
    D_NE_NEG, D_NE_OVERFLOW, D_UNALIGNED, D_DATA_EOF, D_OFFSET_HUGE, D_OVERLAP, D_GAP, D_NE0_BLOCK,
    D_GGML_TYPE, D_GGML_TYPE_UNKNOWN, D_ALIGN_NPOT, D_ALIGN_ZERO, D_ALIGN_TYPE, D_ALIGN_64, D_COUNT
};

/* KVs of the hand-built file */
static void build_kvs(bytes *b, enum defect d) {
    put_str(b, d == D_EMPTY_KEY ? "" : "general.architecture");
    put_u32(b, GGUF_VT_STR);
    if (d == D_STRLEN_EOF) put_u64(b, 1ull << 40), put(b, "test", 4);
    else put_str(b, "test");
    put_str(b, d == D_DUP_KEY ? "general.architecture" : "a.u32");
    put_u32(b, d == D_VTYPE ? 13 : GGUF_VT_U32);
    put_u32(b, 7);
    put_str(b, "a.arr");
    put_u32(b, GGUF_VT_ARR);
    put_u32(b, d == D_NESTED ? GGUF_VT_ARR : GGUF_VT_I32);
    put_u64(b, d == D_ARR_HUGE ? (1ull << 62) + 1 : 3);
    put_u32(b, 1), put_u32(b, 2), put_u32(b, 3);
    put_str(b, "a.strs");
    put_u32(b, GGUF_VT_ARR);
    put_u32(b, GGUF_VT_STR);
    put_u64(b, 2);
    put_str(b, "x"), put_str(b, "yy");
    put_str(b, "a.bool");
    put_u32(b, GGUF_VT_BOOL);
    uint8_t bv = d == D_BOOL2 ? 2 : 1;
    put(b, &bv, 1);
    put_str(b, GGUF_KEY_ALIGNMENT);
    put_u32(b, d == D_ALIGN_TYPE ? GGUF_VT_U64 : GGUF_VT_U32);
    uint32_t align = d == D_ALIGN_NPOT ? 48 : d == D_ALIGN_ZERO ? 0 : d == D_ALIGN_64 ? 64 : 32;
    if (d == D_ALIGN_TYPE) put_u64(b, 32);
    else put_u32(b, align);
}

static void build_info(bytes *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) put_u64(b, ne[i]);
    put_u32(b, type);
    put_u64(b, off);
}

/* Three tensors: w F32 [8, 2] at 0 (64 bytes), q Q8_0 [32, 2] at 64 (68 bytes), b F16 [16] at 160. */
static void build_infos(bytes *b, enum defect d, uint32_t align) {
    char long_name[80];
    memset(long_name, 'n', sizeof long_name);
    long_name[d == D_NAME63 ? 63 : 64] = 0;
    uint64_t ne_w[5] = {8, 2, 1, 1, 1};
    if (d == D_NE_NEG) ne_w[1] = (uint64_t)-2;
    if (d == D_NE_OVERFLOW) ne_w[0] = 1ull << 40, ne_w[1] = 1ull << 40;
    uint32_t nd = d == D_NDIMS0 ? 0 : d == D_NDIMS5 ? 5 : 2;
    build_info(b, d == D_LONG_NAME || d == D_NAME63 ? long_name : "w", nd, ne_w, 0, 0);
    uint64_t ne_q[2] = {d == D_NE0_BLOCK ? 40 : 32, 2};
    uint32_t tq = d == D_GGML_TYPE ? 16 : d == D_GGML_TYPE_UNKNOWN ? 4000000000u : 8;
    build_info(b, "q", 2, ne_q, tq, 64);
    uint64_t ne_b[1] = {d == D_DATA_EOF ? 64 : 16};
    uint64_t off = align == 64 ? 192 : 160;
    if (d == D_UNALIGNED) off = 168;
    if (d == D_OVERLAP) off = 128;
    if (d == D_GAP) off = 192;
    if (d == D_OFFSET_HUGE) off = 1ull << 63;
    build_info(b, d == D_DUP_NAME ? "w" : "b", 1, ne_b, 1, off);
}

static uint8_t *build(enum defect d, size_t *len) {
    bytes b = {0};
    put(&b, d == D_MAGIC ? "GGML" : "GGUF", 4);
    uint32_t version = d == D_V1 ? 1 : d == D_V4 ? 4 : d == D_V2 ? 2 : 3;
    if (d == D_BIG_ENDIAN) version = 0x03000000;
    put_u32(&b, version);
    put_u64(&b, d == D_NT_HUGE ? 1ull << 40 : 3);
    put_u64(&b, d == D_NKV_HUGE ? UINT64_MAX : 6);
    build_kvs(&b, d);
    uint32_t align = d == D_ALIGN_64 ? 64 : 32;
    build_infos(&b, d, align);
    while (b.n % align) put(&b, "", 1);
    size_t data = d == D_GAP ? 224 : align == 64 ? 224 : 192;
    for (size_t i = 0; i < data; i++) {
        uint8_t v = (uint8_t)(i * 13);
        put(&b, &v, 1);
    }
    *len = b.n;
    return b.p;
}

static lb_status open_bytes(const uint8_t *p, size_t n, gguf_file **f, lb_error *err) {
    uint8_t *copy = malloc(n ? n : 1); /* exact-size copy so that ASan sees any over-read */
    REQUIRE(copy, "malloc");
    memcpy(copy, p, n);
    lb_status s = gguf_open_memory(copy, n, "bad.gguf", f, err);
    if (s == LB_OK) gguf_close(*f);
    free(copy);
    return s;
}

static void expect_(int line, enum defect d, lb_status want, const char *sub1, const char *sub2) {
    size_t n;
    uint8_t *p = build(d, &n);
    gguf_file *f = NULL;
    lb_error err = {{0}};
    lb_status s = open_bytes(p, n, &f, &err);
    free(p);
    CHECK(s == want, "line %d (defect %d): status %d (%s), want %d; msg: %s", line, d, s, lb_status_str(s), want, err.msg);
    if (want == LB_OK) return;
    CHECK(strncmp(err.msg, "bad.gguf: ", 10) == 0, "line %d: message \"%s\" does not name the file", line, err.msg);
    CHECK(!sub1 || strstr(err.msg, sub1), "line %d: message \"%s\" lacks \"%s\"", line, err.msg, sub1);
    CHECK(!sub2 || strstr(err.msg, sub2), "line %d: message \"%s\" lacks \"%s\"", line, err.msg, sub2);
}
#define expect(...) expect_(__LINE__, __VA_ARGS__)

static void test_hostile(void) {
    expect(D_NONE, LB_OK, NULL, NULL);
    expect(D_V2, LB_OK, NULL, NULL);
    expect(D_ALIGN_64, LB_OK, NULL, NULL);
    expect(D_NAME63, LB_OK, NULL, NULL);
    expect(D_MAGIC, LB_ERR_FORMAT, "not a GGUF file", "47 47 4d 4c");
    expect(D_V1, LB_ERR_UNSUPPORTED, "version 1", NULL);
    expect(D_V4, LB_ERR_UNSUPPORTED, "version 4", NULL);
    expect(D_BIG_ENDIAN, LB_ERR_UNSUPPORTED, "big-endian", NULL);
    expect(D_NT_HUGE, LB_ERR_FORMAT, "tensor count 1099511627776", "cannot fit");
    expect(D_NKV_HUGE, LB_ERR_FORMAT, "KV count 18446744073709551615", "cannot fit");
    expect(D_STRLEN_EOF, LB_ERR_FORMAT, "key 'general.architecture'", "runs past the end");
    expect(D_VTYPE, LB_ERR_FORMAT, "key 'a.u32'", "unknown value type 13");
    expect(D_NESTED, LB_ERR_UNSUPPORTED, "key 'a.arr'", "nested arrays");
    expect(D_ARR_HUGE, LB_ERR_FORMAT, "key 'a.arr'", "4611686018427387905 i32 values");
    expect(D_DUP_KEY, LB_ERR_FORMAT, "duplicate key 'general.architecture'", NULL);
    expect(D_EMPTY_KEY, LB_ERR_FORMAT, "KV 0", "empty key");
    expect(D_BOOL2, LB_ERR_FORMAT, "key 'a.bool'", "bool value 2");
    expect(D_DUP_NAME, LB_ERR_FORMAT, "duplicate tensor name 'w'", NULL);
    expect(D_LONG_NAME, LB_ERR_FORMAT, "name of 64 bytes is too long", "tensor 'nnnn");
    expect(D_NDIMS0, LB_ERR_FORMAT, "tensor 'w'", "n_dims 0");
    expect(D_NDIMS5, LB_ERR_FORMAT, "tensor 'w'", "n_dims 5");
    expect(D_NE_NEG, LB_ERR_FORMAT, "tensor 'w'", "ne[1] = 18446744073709551614 is negative");
    expect(D_NE_OVERFLOW, LB_ERR_FORMAT, "tensor 'w'", "element count overflows");
    expect(D_UNALIGNED, LB_ERR_FORMAT, "tensor 'b'", "offset 168 is not a multiple of the alignment 32");
    expect(D_DATA_EOF, LB_ERR_FORMAT, "tensor 'b'", "runs past the end");
    expect(D_OFFSET_HUGE, LB_ERR_FORMAT, "tensor 'b'", "runs past the end");
    expect(D_OVERLAP, LB_ERR_FORMAT, "tensors 'q' [64, 132) and 'b' [128, 160) overlap", NULL);
    expect(D_NE0_BLOCK, LB_ERR_FORMAT, "tensor 'q'", "ne[0] = 40 is not a multiple of the q8_0 block size 32");
    expect(D_GGML_TYPE, LB_ERR_UNSUPPORTED, "tensor 'q'", "ggml type 16 (iq2_xxs) is not supported");
    expect(D_GGML_TYPE_UNKNOWN, LB_ERR_UNSUPPORTED, "tensor 'q'", "ggml type 4000000000 (?)");
    expect(D_ALIGN_NPOT, LB_ERR_FORMAT, "general.alignment", "48 is not a power of two");
    expect(D_ALIGN_ZERO, LB_ERR_FORMAT, "general.alignment", "0 is not a power of two");
    expect(D_ALIGN_TYPE, LB_ERR_FORMAT, "general.alignment", "type u64, want u32");

    /* a gap before the last tensor is valid GGUF, but not the layout llama.cpp loads */
    size_t n;
    uint8_t *p = build(D_GAP, &n);
    gguf_file *f = NULL;
    lb_error err = {{0}};
    CHECK(gguf_open_memory(p, n, "gap.gguf", &f, &err) == LB_OK && !f->ggml_layout, "gap: %s", err.msg);
    gguf_close(f);
    free(p);
    p = build(D_NONE, &n);
    CHECK(gguf_open_memory(p, n, "ok.gguf", &f, &err) == LB_OK && f->ggml_layout && f->tensors[2].data[0] == (uint8_t)(160 * 13),
          "hand-built file: %s", err.msg);
    gguf_close(f);
    /* every truncation of the hand-built file fails as a format error */
    int bad = 0;
    for (size_t cut = 0; cut < n; cut++) {
        lb_status s = open_bytes(p, cut, &f, &err);
        bad += s != LB_ERR_FORMAT || (!strstr(err.msg, "truncated") && !strstr(err.msg, "cannot fit") &&
                                     !strstr(err.msg, "not a GGUF"));
    }
    CHECK(bad == 0, "%d truncations of the hand-built file were not format errors", bad);
    free(p);
    CHECK(gguf_open(tmp_path("missing.gguf"), &f, &err) == LB_ERR_IO && strstr(err.msg, "missing.gguf"), "missing: %s", err.msg);
}

/* Cut tiny-q8_0.gguf every 97 bytes through its header and at points through its data. */
static void test_truncated(void) {
    size_t n;
    uint8_t *p = read_all(test_gguf("tiny-q8_0.gguf"), &n);
    gguf_file *f = NULL;
    lb_error err;
    REQUIRE(gguf_open_memory(p, n, "q8", &f, &err) == LB_OK, "%s", err.msg);
    size_t data_start = f->data_start, data_end = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        size_t e = data_start + f->tensors[i].offset + f->tensors[i].n_bytes;
        if (e > data_end) data_end = e;
    }
    gguf_close(f);
    int cuts = 0, bad = 0;
    for (size_t cut = 0; cut < data_start; cut += 97, cuts++) {
        lb_status s = open_bytes(p, cut, &f, &err);
        bool ok = s == LB_ERR_FORMAT && (strstr(err.msg, "truncated") || strstr(err.msg, "cannot fit") ||
                                         strstr(err.msg, "not a GGUF"));
        if (!ok && bad++ < 5) fprintf(stderr, "cut at %zu: status %d: %s\n", cut, s, err.msg);
    }
    for (size_t cut = data_start; cut < n; cut += 65521, cuts++) {
        lb_status s = open_bytes(p, cut, &f, &err);
        bool ok = cut >= data_end ? s == LB_OK
                                  : s == LB_ERR_FORMAT && strstr(err.msg, "runs past the end") && strstr(err.msg, "tensor '");
        if (!ok && bad++ < 5) fprintf(stderr, "cut at %zu: status %d: %s\n", cut, s, err.msg);
    }
    CHECK(bad == 0, "%d of %d truncations misjudged", bad, cuts);
    CHECK(open_bytes(p, data_end, &f, &err) == LB_OK && data_end == n, "the whole file: %s", err.msg);
    CHECK(open_bytes(p, data_end - 1, &f, &err) == LB_ERR_FORMAT, "one byte short");
    free(p);
}

/* ---- writer failures ---- */

static bool tmp_exists(const char *path) {
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.lowbit-tmp", path);
    return lb_path_exists(tmp);
}

static void expect_open_fails(const char *path, const char *sub) {
    gguf_writer *w = NULL;
    lb_error err = {{0}};
    lb_status s = gguf_writer_open(path, &w, &err);
    CHECK(s == LB_ERR_IO && w == NULL, "%s: status %d", path, s);
    CHECK(strstr(err.msg, path) && strstr(err.msg, sub), "%s: message \"%s\" lacks \"%s\"", path, err.msg, sub);
    CHECK(!lb_path_exists(path) && !tmp_exists(path), "%s: a file appeared", path);
    if (s == LB_OK) gguf_writer_abort(w);
}

static void test_writer_paths(void) {
    expect_open_fails(tmp_path("no/such/dir/out.gguf"), strerror(ENOENT));
    const char *file = tmp_path("plain");
    FILE *fp = fopen(file, "w");
    REQUIRE(fp, "create %s", file);
    fclose(fp);
    char under[400];
    snprintf(under, sizeof under, "%s/out.gguf", file);
    expect_open_fails(under, strerror(ENOTDIR));
    unlink(file);
    if (geteuid() != 0) { /* root ignores directory permissions */
        const char *ro = tmp_path("readonly");
        REQUIRE(mkdir(ro, 0555) == 0, "mkdir %s", ro);
        snprintf(under, sizeof under, "%s/out.gguf", ro);
        expect_open_fails(under, strerror(EACCES));
        rmdir(ro);
    }
    expect_open_fails("/proc/lowbit-test-out.gguf", "cannot create");
}

/* A writer with 2 tensors declared and begun; `path` must not exist afterwards when it fails. */
static gguf_writer *two_tensor_writer(const char *path) {
    gguf_writer *w = NULL;
    lb_error err;
    REQUIRE(gguf_writer_open(path, &w, &err) == LB_OK, "%s", err.msg);
    int64_t ne[2] = {32, 2};
    REQUIRE(gguf_writer_add_tensor(w, "a", LB_TYPE_Q8_0, 2, ne, &err) == LB_OK, "%s", err.msg);
    REQUIRE(gguf_writer_add_tensor(w, "b", LB_TYPE_F32, 1, ne, &err) == LB_OK, "%s", err.msg);
    REQUIRE(gguf_writer_begin_data(w, &err) == LB_OK, "%s", err.msg);
    return w;
}

static void expect_writer_fail_(int line, lb_status s, const lb_error *err, const char *path, const char *sub) {
    CHECK(s == LB_ERR_ARG, "line %d: status %d: %s", line, s, err->msg);
    CHECK(strstr(err->msg, path) && strstr(err->msg, sub), "line %d: message \"%s\" lacks \"%s\"", line, err->msg, sub);
    CHECK(!tmp_exists(path), "line %d: temporary file left behind", line);
}
#define expect_writer_fail(...) expect_writer_fail_(__LINE__, __VA_ARGS__)

static void test_writer_misuse(void) {
    const char *path = tmp_path("misuse.gguf");
    uint8_t buf[256] = {0};
    lb_error err = {{0}};
    gguf_writer *w = two_tensor_writer(path);
    lb_status s = gguf_writer_write_tensor(w, 0, buf, 67, &err);
    expect_writer_fail(s, &err, path, "tensor 'a': 67 bytes given, it takes 68");
    lb_error err2 = {{0}};
    s = gguf_writer_write_tensor(w, 0, buf, 68, &err2);
    CHECK(s == LB_ERR_ARG && strcmp(err.msg, err2.msg) == 0, "the failure does not stick: %s", err2.msg);
    CHECK(gguf_writer_finish(w, &err2) == LB_ERR_ARG && !lb_path_exists(path), "finish after failure");

    w = two_tensor_writer(path);
    CHECK(gguf_writer_write_tensor(w, 0, buf, 68, &err) == LB_OK, "%s", err.msg);
    s = gguf_writer_finish(w, &err);
    expect_writer_fail(s, &err, path, "tensor 1 'b' (of 2) was not written");
    CHECK(!lb_path_exists(path), "finish before all tensors wrote the file");

    w = two_tensor_writer(path);
    s = gguf_writer_write_tensor(w, 1, buf, 128, &err);
    expect_writer_fail(s, &err, path, "tensor 1 written out of order (next is 0 of 2)");
    gguf_writer_abort(w);

    w = two_tensor_writer(path);
    s = gguf_writer_set_u32(w, "late", 1, &err);
    expect_writer_fail(s, &err, path, "key 'late' set after gguf_writer_begin_data");
    gguf_writer_abort(w);

    w = two_tensor_writer(path);
    CHECK(gguf_writer_write_tensor_part(w, 0, buf, 60, &err) == LB_OK, "%s", err.msg);
    s = gguf_writer_write_tensor_part(w, 0, buf, 9, &err);
    expect_writer_fail(s, &err, path, "9 more bytes given, 8 expected");
    gguf_writer_abort(w);
    CHECK(!lb_path_exists(path), "abort left a file");
}

typedef lb_status (*misuse_fn)(gguf_writer *w, lb_error *err);

static lb_status m_dup_key(gguf_writer *w, lb_error *err) {
    gguf_writer_set_u32(w, "k", 1, err);
    return gguf_writer_set_str(w, "k", "x", 1, err);
}
static lb_status m_empty_key(gguf_writer *w, lb_error *err) { return gguf_writer_set_u8(w, "", 1, err); }
static lb_status m_align(gguf_writer *w, lb_error *err) { return gguf_writer_set_u32(w, GGUF_KEY_ALIGNMENT, 24, err); }
static lb_status m_align_type(gguf_writer *w, lb_error *err) { return gguf_writer_set_u64(w, GGUF_KEY_ALIGNMENT, 32, err); }
static lb_status m_arr_type(gguf_writer *w, lb_error *err) { return gguf_writer_set_arr(w, "a", GGUF_VT_STR, "x", 1, err); }
static lb_status m_long_name(gguf_writer *w, lb_error *err) {
    char name[65];
    memset(name, 'x', 64);
    name[64] = 0;
    return gguf_writer_add_tensor(w, name, LB_TYPE_F32, 1, (int64_t[]){4}, err);
}
static lb_status m_dup_name(gguf_writer *w, lb_error *err) {
    gguf_writer_add_tensor(w, "t", LB_TYPE_F32, 1, (int64_t[]){4}, err);
    return gguf_writer_add_tensor(w, "t", LB_TYPE_F16, 1, (int64_t[]){4}, err);
}
static lb_status m_block(gguf_writer *w, lb_error *err) { return gguf_writer_add_tensor(w, "t", LB_TYPE_Q4_K, 1, (int64_t[]){128}, err); }
static lb_status m_dims(gguf_writer *w, lb_error *err) { return gguf_writer_add_tensor(w, "t", LB_TYPE_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, err); }
static lb_status m_neg(gguf_writer *w, lb_error *err) { return gguf_writer_add_tensor(w, "t", LB_TYPE_F32, 2, (int64_t[]){4, -1}, err); }
static lb_status m_type(gguf_writer *w, lb_error *err) { return gguf_writer_add_tensor(w, "t", LB_TYPE_COUNT, 1, (int64_t[]){4}, err); }

static void test_writer_args(void) {
    static const struct {
        misuse_fn fn;
        const char *sub;
    } cases[] = {
        {m_dup_key, "duplicate key 'k'"},
        {m_empty_key, "empty key"},
        {m_align, "general.alignment 24 is not a power of two"},
        {m_align_type, "key 'general.alignment' must be u32, not u64"},
        {m_arr_type, "array element type 8 is not a fixed-size type"},
        {m_long_name, "is 64 bytes (at most 63)"},
        {m_dup_name, "duplicate tensor name 't'"},
        {m_block, "ne[0] = 128 is not a multiple of the q4_k block size 256"},
        {m_dims, "n_dims 5 is not in 1..4"},
        {m_neg, "ne[1] = -1 is negative"},
        {m_type, "unknown type"},
    };
    const char *path = tmp_path("args.gguf");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gguf_writer *w = NULL;
        lb_error err = {{0}};
        REQUIRE(gguf_writer_open(path, &w, &err) == LB_OK, "%s", err.msg);
        lb_status s = cases[i].fn(w, &err);
        expect_writer_fail(s, &err, path, cases[i].sub);
        CHECK(gguf_writer_finish(w, &err) == LB_ERR_ARG && !lb_path_exists(path), "case %zu: finish", i);
    }
}

/* In a child with RLIMIT_FSIZE = limit and SIGXFSZ ignored, writes fail with EFBIG. Exit codes:
 * 0 = failed as it should, 1 = wrong status, 2 = wrong message, 3 = succeeded. */
static int disk_full_child(const char *path, rlim_t limit) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {limit, limit};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) return 4;
    static uint8_t big[3 << 20];
    gguf_writer *w = NULL;
    lb_error err = {{0}};
    lb_status s = gguf_writer_open(path, &w, &err);
    if (s == LB_OK) s = gguf_writer_set_str(w, "general.name", "disk full", 9, &err);
    if (s == LB_OK) s = gguf_writer_add_tensor(w, "big", LB_TYPE_F32, 2, (int64_t[]){1024, 768}, &err);
    if (s == LB_OK) s = gguf_writer_add_tensor(w, "small", LB_TYPE_F32, 1, (int64_t[]){1000}, &err);
    if (s == LB_OK) s = gguf_writer_begin_data(w, &err);
    if (s == LB_OK) s = gguf_writer_write_tensor(w, 0, big, sizeof big, &err);
    if (s == LB_OK) s = gguf_writer_write_tensor(w, 1, big, 4000, &err);
    lb_status f = w ? gguf_writer_finish(w, &err) : s;
    if (s == LB_OK && f == LB_OK) return 3;
    if ((s != LB_OK && s != LB_ERR_IO) || f != LB_ERR_IO) return 1;
    return strstr(err.msg, path) && strstr(err.msg, strerror(EFBIG)) ? 0 : 2;
}

static void test_disk_full(void) {
    const char *path = tmp_path("full.gguf");
    /* the limits hit: the first flush of metadata, the big tensor, the padding, the last bytes */
    static const rlim_t limits[] = {10, 100, 4096, 2 << 20, 3145728 + 1000, 3145728 + 4100};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork");
        if (pid == 0) _exit(disk_full_child(path, limits[i]));
        int st = 0;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "limit %llu: child status %d", (unsigned long long)limits[i],
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        CHECK(!lb_path_exists(path) && !tmp_exists(path), "limit %llu: a file was left",
              (unsigned long long)limits[i]);
    }
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/lb_gguf_XXXXXX");
    REQUIRE(mkdtemp(tmp_root), "mkdtemp");
    test_golden();
    test_roundtrip(0);
    test_roundtrip(64);
    test_rewrite();
    test_hostile();
    test_truncated();
    test_writer_paths();
    test_writer_misuse();
    test_writer_args();
    test_disk_full();
    rmdir(tmp_root);
    TEST_DONE();
}
