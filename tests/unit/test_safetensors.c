/*
 * test_safetensors.c - the safetensors reader on the bundled tiny model, the sharded small model in
 * ../shared, the conformance checkpoints, and crafted bad files (each checked for status and message).
 * Expected counts were computed independently by reading the headers with Python's json module.
 */
#include "io/safetensors.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

static char tmp_root[64];
static char created[64][256];
static int n_created;

static const char *tmp_path(const char *name) {
    static char buf[4][320];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_root, name);
    return buf[k];
}

static void write_bytes(const char *name, const void *data, size_t len) {
    const char *p = tmp_path(name);
    FILE *f = fopen(p, "wb");
    REQUIRE(f, "cannot create %s", p);
    REQUIRE(len == 0 || fwrite(data, 1, len, f) == len, "cannot write %s", p);
    fclose(f);
    for (int i = 0; i < n_created; i++)
        if (strcmp(created[i], p) == 0) return;
    REQUIRE(n_created < 64, "too many temp files");
    snprintf(created[n_created++], sizeof created[0], "%s", p);
}

static void remove_file(const char *name) { unlink(tmp_path(name)); }

/* A safetensors file with the given header and data_len bytes of data (byte i = i & 0xff). */
static void write_st(const char *name, const char *header, size_t data_len) {
    size_t hl = strlen(header);
    uint8_t *buf = malloc(8 + hl + data_len);
    REQUIRE(buf, "malloc");
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (uint8_t)i;
    write_bytes(name, buf, 8 + hl + data_len);
    free(buf);
}

/* Open path and expect failure with status s and every given substring in the message. */
static void expect_fail_(int line, const char *path, lb_status want, const char *sub1, const char *sub2) {
    st_file *f = NULL;
    lb_error err = {{0}};
    lb_status s = st_open(path, &f, &err);
    if (s == LB_OK) st_close(f);
    CHECK(s == want, "line %d: status %d (%s), want %d; msg: %s", line, s, lb_status_str(s), want, err.msg);
    CHECK(f == NULL, "line %d: out set on failure", line);
    CHECK(!sub1 || strstr(err.msg, sub1), "line %d: message \"%s\" lacks \"%s\"", line, err.msg, sub1);
    CHECK(!sub2 || strstr(err.msg, sub2), "line %d: message \"%s\" lacks \"%s\"", line, err.msg, sub2);
}
#define expect_fail(path, want, sub1, sub2) expect_fail_(__LINE__, path, want, sub1, sub2)

static void expect_header_fail_(int line, const char *header, size_t data_len, lb_status want, const char *sub1,
                                const char *sub2) {
    write_st("bad.safetensors", header, data_len);
    expect_fail_(line, tmp_path("bad.safetensors"), want, sub1, sub2);
}
#define expect_header_fail(h, n, want, s1, s2) expect_header_fail_(__LINE__, h, n, want, s1, s2)

static void totals(const st_file *f, int64_t *elems, size_t *bytes) {
    *elems = 0;
    *bytes = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        *elems += f->tensors[i].n_elements;
        *bytes += f->tensors[i].n_bytes;
    }
}

static void check_shape(const st_file *f, const char *name, st_dtype dt, int nd, int64_t d0, int64_t d1) {
    const st_tensor *t = st_find(f, name);
    CHECK(t != NULL, "tensor %s not found", name);
    if (!t) return;
    CHECK(strcmp(t->name, name) == 0, "st_find(%s) returned %s", name, t->name);
    CHECK(t->dtype == dt, "%s: dtype %s", name, st_dtype_name(t->dtype));
    CHECK(t->n_dims == nd, "%s: n_dims %d", name, t->n_dims);
    if (nd >= 1) CHECK(t->shape[0] == d0, "%s: shape[0] %lld", name, (long long)t->shape[0]);
    if (nd >= 2) CHECK(t->shape[1] == d1, "%s: shape[1] %lld", name, (long long)t->shape[1]);
    CHECK(t->n_bytes == (size_t)t->n_elements * st_dtype_size(dt), "%s: n_bytes %zu", name, t->n_bytes);
    /* data lies inside its shard's mapping */
    const lb_mmap *m = &f->shards[t->shard];
    CHECK(t->data >= m->data && t->data + t->n_bytes <= m->data + m->size, "%s: data outside its shard", name);
}

static void test_dtypes(void) {
    static const char *names[ST_DTYPE_COUNT] = {"BOOL", "U8",  "I8",  "U16", "I16",  "U32", "I32",     "U64",
                                                "I64",  "F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"};
    static const size_t sizes[ST_DTYPE_COUNT] = {1, 1, 1, 2, 2, 4, 4, 8, 8, 2, 2, 4, 8, 1, 1};
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        CHECK(strcmp(st_dtype_name((st_dtype)i), names[i]) == 0, "dtype %d name %s", i, st_dtype_name((st_dtype)i));
        CHECK(st_dtype_size((st_dtype)i) == sizes[i], "dtype %s size %zu", names[i], st_dtype_size((st_dtype)i));
    }
    CHECK(st_dtype_size(ST_DTYPE_COUNT) == 0, "size of an invalid dtype");
    CHECK(strcmp(st_dtype_name(ST_DTYPE_COUNT), "?") == 0, "name of an invalid dtype");
}

static void test_tiny(void) {
    const char *paths[2] = {"models/tiny", "models/tiny/model.safetensors"};
    for (int k = 0; k < 2; k++) {
        st_file *f = NULL;
        lb_error err = {{0}};
        lb_status s = st_open(paths[k], &f, &err);
        REQUIRE(s == LB_OK, "open %s: %s", paths[k], err.msg);
        CHECK(f->n_shards == 1, "tiny shards %d", f->n_shards);
        CHECK(f->n_tensors == 50, "tiny tensors %lld", (long long)f->n_tensors);
        int64_t elems;
        size_t bytes;
        totals(f, &elems, &bytes);
        CHECK(elems == 5247232, "tiny params %lld", (long long)elems);
        CHECK(bytes == 10494464, "tiny bytes %zu", bytes);
        CHECK(strcmp(f->tensors[0].name, "model.embed_tokens.weight") == 0, "first tensor %s", f->tensors[0].name);
        CHECK(strcmp(f->tensors[1].name, "model.layers.0.input_layernorm.weight") == 0, "second tensor %s",
              f->tensors[1].name);
        for (int64_t i = 0; i < f->n_tensors; i++)
            CHECK(f->tensors[i].dtype == ST_F16 && f->tensors[i].shard == 0, "tensor %s", f->tensors[i].name);
        check_shape(f, "model.embed_tokens.weight", ST_F16, 2, 8192, 256);
        check_shape(f, "model.layers.0.self_attn.q_proj.bias", ST_F16, 1, 256, 0);
        check_shape(f, "model.layers.0.self_attn.k_proj.weight", ST_F16, 2, 128, 256);
        check_shape(f, "model.layers.3.mlp.down_proj.weight", ST_F16, 2, 256, 768);
        CHECK(st_find(f, "lm_head.weight") == NULL, "tiny has tied embeddings");
        CHECK(st_find(f, "__metadata__") == NULL, "metadata is not a tensor");
        CHECK(st_find(f, "") == NULL && st_find(NULL, "x") == NULL, "st_find edge cases");
        /* data offsets: q_proj.bias begins at 5571840 in the data section */
        const st_tensor *t = st_find(f, "model.layers.0.self_attn.q_proj.bias");
        const st_tensor *e = st_find(f, "model.embed_tokens.weight");
        CHECK(t && e && t->data - e->data == 5571840, "q_proj.bias offset");
        CHECK(e && e->data == f->shards[0].data + 8 + 5288, "embed data starts after the 5288-byte header");
        st_close(f);
    }
}

static void test_small(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/small", test_shared_dir());
    REQUIRE(lb_path_exists(dir), "%s is missing (set LB_SHARED)", dir);
    char idx[600];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    const char *paths[2] = {dir, idx};
    for (int k = 0; k < 2; k++) {
        st_file *f = NULL;
        lb_error err = {{0}};
        lb_status s = st_open(paths[k], &f, &err);
        REQUIRE(s == LB_OK, "open %s: %s", paths[k], err.msg);
        CHECK(f->n_shards == 4, "small shards %d", f->n_shards);
        CHECK(f->n_tensors == 57, "small tensors %lld", (long long)f->n_tensors);
        int64_t elems;
        size_t bytes;
        totals(f, &elems, &bytes);
        CHECK(elems == 27269632, "small params %lld", (long long)elems);
        CHECK(bytes == 54539264, "small bytes %zu", bytes);
        static const int per_shard[4] = {10, 22, 19, 6};
        int count[4] = {0};
        for (int64_t i = 0; i < f->n_tensors; i++) {
            const st_tensor *t = &f->tensors[i];
            CHECK(t->dtype == ST_BF16, "%s dtype %s", t->name, st_dtype_name(t->dtype));
            CHECK(t->shard >= 0 && t->shard < 4, "%s shard %d", t->name, t->shard);
            if (t->shard >= 0 && t->shard < 4) count[t->shard]++;
            if (i > 0) CHECK(t->shard >= f->tensors[i - 1].shard, "tensors grouped by shard");
        }
        for (int j = 0; j < 4; j++) {
            char want[64];
            snprintf(want, sizeof want, "model-0000%d-of-00004.safetensors", j + 1);
            CHECK(strstr(f->shard_paths[j], want) != NULL, "shard %d is %s", j, f->shard_paths[j]);
            CHECK(count[j] == per_shard[j], "shard %d holds %d tensors", j, count[j]);
        }
        check_shape(f, "model.embed_tokens.weight", ST_BF16, 2, 8192, 512);
        check_shape(f, "lm_head.weight", ST_BF16, 2, 8192, 512);
        check_shape(f, "model.layers.0.self_attn.k_proj.weight", ST_BF16, 2, 256, 512);
        check_shape(f, "model.layers.5.mlp.down_proj.weight", ST_BF16, 2, 512, 1536);
        check_shape(f, "model.norm.weight", ST_BF16, 1, 512, 0);
        const st_tensor *t = st_find(f, "lm_head.weight");
        CHECK(t && t->shard == 3, "lm_head in the fourth shard");
        t = st_find(f, "model.embed_tokens.weight");
        CHECK(t && t->shard == 0 && t == &f->tensors[0], "embed first, in the first shard");
        st_close(f);
    }
}

static void test_conformance(void) {
    static const struct {
        const char *name;
        int64_t n_tensors, n_elements;
        st_dtype dtype;
    } cases[] = {
        {"llama3_rope", 21, 426624, ST_F32}, {"llama_tied_bf16", 20, 361088, ST_BF16},
        {"mistral", 21, 426624, ST_F32},     {"phi3", 15, 459392, ST_F32},
        {"qwen3", 24, 410432, ST_F32},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/golden/conformance/arch/%s", cases[c].name);
        st_file *f = NULL;
        lb_error err = {{0}};
        lb_status s = st_open(dir, &f, &err);
        CHECK(s == LB_OK, "open %s: %s", dir, err.msg);
        if (s != LB_OK) continue;
        int64_t elems;
        size_t bytes;
        totals(f, &elems, &bytes);
        CHECK(f->n_tensors == cases[c].n_tensors, "%s: %lld tensors", dir, (long long)f->n_tensors);
        CHECK(elems == cases[c].n_elements, "%s: %lld elements", dir, (long long)elems);
        CHECK(bytes == (size_t)elems * st_dtype_size(cases[c].dtype), "%s: %zu bytes", dir, bytes);
        for (int64_t i = 0; i < f->n_tensors; i++)
            CHECK(f->tensors[i].dtype == cases[c].dtype, "%s: %s dtype", dir, f->tensors[i].name);
        if (strcmp(cases[c].name, "phi3") == 0) {
            check_shape(f, "model.layers.0.self_attn.qkv_proj.weight", ST_F32, 2, 384, 128);
            check_shape(f, "model.layers.0.mlp.gate_up_proj.weight", ST_F32, 2, 512, 128);
        }
        if (strcmp(cases[c].name, "qwen3") == 0) {
            check_shape(f, "model.layers.0.self_attn.q_norm.weight", ST_F32, 1, 48, 0);
            check_shape(f, "model.layers.0.self_attn.q_proj.weight", ST_F32, 2, 192, 128);
            check_shape(f, "model.layers.1.self_attn.o_proj.weight", ST_F32, 2, 128, 192);
        }
        st_close(f);
    }
}

/* Integer and other dtypes, a scalar, an empty tensor and metadata, in a crafted file. */
static void test_crafted_dtypes(void) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
                    "\"i32\":{\"dtype\":\"I32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                    "\"i8\":{\"dtype\":\"I8\",\"shape\":[5],\"data_offsets\":[24,29]},"
                    "\"u8\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[29,32]},"
                    "\"i64\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[32,48]},"
                    "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[48,52]},"
                    "\"empty\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[52,52]},"
                    "\"bool\":{\"dtype\":\"BOOL\",\"shape\":[1,1,1,1,1,1,1,4],\"data_offsets\":[52,56]},"
                    "\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[56,58]},"
                    "\"u16\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[58,60]},"
                    "\"f64\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[64,72]}}   ";
    write_st("ints.safetensors", h, 72);
    st_file *f = NULL;
    lb_error err = {{0}};
    lb_status s = st_open(tmp_path("ints.safetensors"), &f, &err);
    REQUIRE(s == LB_OK, "crafted file: %s", err.msg);
    CHECK(f->n_tensors == 10, "%lld tensors", (long long)f->n_tensors);
    check_shape(f, "i32", ST_I32, 2, 2, 3);
    check_shape(f, "i8", ST_I8, 1, 5, 0);
    check_shape(f, "u8", ST_U8, 1, 3, 0);
    check_shape(f, "i64", ST_I64, 1, 2, 0);
    check_shape(f, "u16", ST_U16, 1, 1, 0);
    check_shape(f, "f64", ST_F64, 1, 1, 0);
    check_shape(f, "f8", ST_F8_E4M3, 1, 2, 0);
    const st_tensor *t = st_find(f, "scalar");
    CHECK(t && t->n_dims == 0 && t->n_elements == 1 && t->n_bytes == 4, "0-dim scalar");
    t = st_find(f, "empty");
    CHECK(t && t->n_dims == 2 && t->n_elements == 0 && t->n_bytes == 0, "empty tensor");
    t = st_find(f, "bool");
    CHECK(t && t->n_dims == 8 && t->n_elements == 4 && t->shape[7] == 4, "8-dim tensor");
    t = st_find(f, "i64");
    CHECK(t && t->data[0] == 32 && t->data[15] == 47, "i64 bytes come from the data section");
    t = st_find(f, "i32");
    CHECK(t && t->data[0] == 0 && t->data[23] == 23, "i32 bytes");
    CHECK(strcmp(f->tensors[0].name, "i32") == 0 && strcmp(f->tensors[9].name, "f64") == 0, "header order");
    st_close(f);
    st_close(NULL);
}

static void test_bad_single(void) {
    write_bytes("short.safetensors", "\x05\0\0\0\0", 5);
    expect_fail(tmp_path("short.safetensors"), LB_ERR_FORMAT, "short.safetensors", "too short");
    write_bytes("empty.safetensors", "", 0);
    expect_fail(tmp_path("empty.safetensors"), LB_ERR_FORMAT, "empty.safetensors", "too short");

    uint8_t past[18] = {0xe8, 0x03}; /* N = 1000, file of 18 bytes */
    memcpy(past + 8, "{}        ", 10);
    write_bytes("past.safetensors", past, sizeof past);
    expect_fail(tmp_path("past.safetensors"), LB_ERR_FORMAT, "past.safetensors",
                "header length 1000 exceeds file size 18");

    uint8_t huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80}; /* N = 2^63 */
    write_bytes("huge.safetensors", huge, sizeof huge);
    expect_fail(tmp_path("huge.safetensors"), LB_ERR_FORMAT, "huge.safetensors", "exceeds file size");

    expect_header_fail("{\"a\": nope}", 0, LB_ERR_FORMAT, "bad.safetensors: header", "line 1");
    expect_header_fail("[1, 2]", 0, LB_ERR_FORMAT, "bad.safetensors", "not a JSON object");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, LB_ERR_FORMAT,
                       "bad.safetensors: tensor a", "exceed the data section of 8 bytes");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16, LB_ERR_FORMAT,
                       "tensor a", "shape holds 3 F32 elements but data_offsets [0, 16] span 16 bytes");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,4]}}", 16, LB_ERR_FORMAT,
                       "tensor a", "end before they begin");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                       24, LB_ERR_FORMAT, "bad.safetensors: tensors a and b overlap", NULL);
    expect_header_fail("{\"x\":{\"dtype\":\"F7\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, LB_ERR_UNSUPPORTED,
                       "bad.safetensors: tensor x has unknown dtype \"F7\"", NULL);
    expect_header_fail("{\"x\":{\"shape\":[4],\"data_offsets\":[0,4]}}", 4, LB_ERR_FORMAT, "tensor x",
                       "missing \"dtype\"");
    expect_header_fail("{\"x\":{\"dtype\":\"U8\",\"shape\":[-4],\"data_offsets\":[0,4]}}", 4, LB_ERR_FORMAT,
                       "tensor x", "shape[0] is not a non-negative integer");
    expect_header_fail("{\"x\":{\"dtype\":\"U8\",\"shape\":[2, 1.5],\"data_offsets\":[0,3]}}", 4, LB_ERR_FORMAT,
                       "tensor x", "shape[1] is not a non-negative integer");
    expect_header_fail("{\"x\":{\"dtype\":\"U8\",\"shape\":\"4\",\"data_offsets\":[0,4]}}", 4, LB_ERR_FORMAT,
                       "tensor x", "not an array");
    expect_header_fail("{\"x\":{\"dtype\":\"U8\",\"shape\":[4611686018427387904, 8],\"data_offsets\":[0,4]}}", 4,
                       LB_ERR_FORMAT, "tensor x", "overflows");
    /* 2^61 F32 elements: the element count fits int64 but the byte count does not */
    expect_header_fail("{\"x\":{\"dtype\":\"F32\",\"shape\":[2305843009213693952],\"data_offsets\":[0,4]}}", 4,
                       LB_ERR_FORMAT, "tensor x", "shape holds");
    expect_header_fail("{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 4,
                       LB_ERR_UNSUPPORTED, "tensor x", "9 dimensions");
    expect_header_fail("{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0]}}", 4, LB_ERR_FORMAT,
                       "tensor x", "data_offsets");
    expect_header_fail("{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4, 0]}}", 4, LB_ERR_FORMAT,
                       "tensor x", "data_offsets");
    expect_header_fail("{\"__metadata__\":{\"a\":1}}", 0, LB_ERR_FORMAT, "__metadata__", NULL);
    expect_header_fail("{\"__metadata__\":[]}", 0, LB_ERR_FORMAT, "__metadata__", "not an object");
    expect_header_fail("{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                       "\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                       8, LB_ERR_FORMAT, "tensor x appears twice", NULL);
    expect_header_fail("{\"x\":5}", 0, LB_ERR_FORMAT, "tensor x", "not an object");

    /* The tiny model cut in half: its header is intact, its later tensors run past the end. */
    char *data = NULL;
    size_t len = 0;
    lb_error err = {{0}};
    REQUIRE(lb_read_file("models/tiny/model.safetensors", 64u << 20, &data, &len, &err) == LB_OK, "%s", err.msg);
    write_bytes("half.safetensors", data, len / 2);
    free(data);
    expect_fail(tmp_path("half.safetensors"), LB_ERR_FORMAT, "half.safetensors: tensor", "truncated");

    expect_fail(tmp_path("does-not-exist.safetensors"), LB_ERR_IO, "does-not-exist.safetensors",
                "No such file or directory");
    /* a directory holding neither file */
    char msg[400];
    snprintf(msg, sizeof msg, "%s: no model.safetensors or model.safetensors.index.json", tmp_root);
    expect_fail(tmp_root, LB_ERR_IO, msg, NULL);
    st_file *f = (st_file *)&err;
    CHECK(st_open(NULL, &f, NULL) == LB_ERR_ARG, "NULL path");
}

static const char *shard_a = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
static const char *shard_b = "{\"c\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}";

static void write_index(const char *body) {
    char buf[1024];
    snprintf(buf, sizeof buf, "{\"metadata\":{\"total_size\":16},\"weight_map\":{%s}}", body);
    write_bytes("model.safetensors.index.json", buf, strlen(buf));
}

static void test_sharded(void) {
    const char *idx = tmp_path("model.safetensors.index.json");
    write_st("model-00001-of-00002.safetensors", shard_a, 12);
    write_st("model-00002-of-00002.safetensors", shard_b, 4);
    /* listed out of file order: shards still come in file-name order */
    write_index("\"c\":\"model-00002-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
                "\"a\":\"model-00001-of-00002.safetensors\"");
    st_file *f = NULL;
    lb_error err = {{0}};
    lb_status s = st_open(tmp_root, &f, &err); /* the directory: index preferred */
    CHECK(s == LB_OK, "good index: %s", err.msg);
    if (s == LB_OK) {
        CHECK(f->n_shards == 2 && f->n_tensors == 3, "%d shards, %lld tensors", f->n_shards, (long long)f->n_tensors);
        CHECK(strcmp(f->tensors[0].name, "a") == 0 && strcmp(f->tensors[2].name, "c") == 0, "order");
        const st_tensor *t = st_find(f, "c");
        CHECK(t && t->shard == 1 && t->dtype == ST_U8 && t->data[3] == 3, "tensor c");
        st_close(f);
    }

    /* a missing shard */
    write_index("\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
                "\"c\":\"model-00003-of-00003.safetensors\"");
    expect_fail(idx, LB_ERR_IO, "model-00003-of-00003.safetensors: cannot open: No such file or directory", NULL);
    /* a tensor absent from its shard */
    write_index("\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
                "\"c\":\"model-00002-of-00002.safetensors\",\"d\":\"model-00002-of-00002.safetensors\"");
    expect_fail(idx, LB_ERR_FORMAT, "model-00002-of-00002.safetensors: tensor d", "missing");
    /* a tensor placed in the wrong shard */
    write_index("\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00002-of-00002.safetensors\","
                "\"c\":\"model-00002-of-00002.safetensors\"");
    expect_fail(idx, LB_ERR_FORMAT, "model-00002-of-00002.safetensors: tensor b", "missing");
    /* a shard tensor the index does not list */
    write_index("\"a\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"");
    expect_fail(idx, LB_ERR_FORMAT, "model-00001-of-00002.safetensors: tensor b is not listed", NULL);
    /* path traversal */
    write_index("\"a\":\"../model-00001-of-00002.safetensors\"");
    expect_fail(idx, LB_ERR_FORMAT, "model.safetensors.index.json: shard name \"../model-00001-of-00002.safetensors\"",
                "not a plain file name");
    write_index("\"a\":\"/etc/passwd\"");
    expect_fail(idx, LB_ERR_FORMAT, "not a plain file name", NULL);
    write_index("\"a\":\"sub/x.safetensors\"");
    expect_fail(idx, LB_ERR_FORMAT, "not a plain file name", NULL);
    /* duplicate tensor across shards */
    write_st("dup.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
    write_index("\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
                "\"c\":\"dup.safetensors\"");
    expect_fail(idx, LB_ERR_FORMAT, "tensor a appears in both", "dup.safetensors");
    /* malformed index files */
    write_bytes("model.safetensors.index.json", "{\"weight_map\": ", 15);
    expect_fail(idx, LB_ERR_FORMAT, "model.safetensors.index.json", "line 1");
    write_index("");
    expect_fail(idx, LB_ERR_FORMAT, "model.safetensors.index.json: missing or empty \"weight_map\"", NULL);
    write_index("\"a\": 3");
    expect_fail(idx, LB_ERR_FORMAT, "weight_map entry for a is not a string", NULL);
    /* a bad shard is reported by its own name */
    write_bytes("model-00002-of-00002.safetensors", "tiny", 4);
    write_index("\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\","
                "\"c\":\"model-00002-of-00002.safetensors\"");
    expect_fail(idx, LB_ERR_FORMAT, "model-00002-of-00002.safetensors: file of 4 bytes is too short", NULL);

    /* without the index, the directory falls back on model.safetensors */
    remove_file("model.safetensors.index.json");
    write_st("model.safetensors", shard_b, 4);
    s = st_open(tmp_root, &f, &err);
    CHECK(s == LB_OK, "fallback to model.safetensors: %s", err.msg);
    if (s == LB_OK) {
        CHECK(f->n_tensors == 1 && st_find(f, "c"), "model.safetensors content");
        st_close(f);
    }
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/lb_test_st_XXXXXX");
    REQUIRE(mkdtemp(tmp_root), "mkdtemp failed");

    test_dtypes();
    test_tiny();
    test_small();
    test_conformance();
    test_crafted_dtypes();
    test_bad_single();
    test_sharded();

    for (int i = 0; i < n_created; i++) unlink(created[i]);
    rmdir(tmp_root);
    TEST_DONE();
}
