/*
 * gguf_read.c - the GGUF reader: maps a file, validates all of it, and serves metadata and tensor views.
 *
 * Source: docs/formats.md section 1, which follows ggml's docs/gguf.md and the reader in ggml
 * src/gguf.cpp (its stricter rules: non-empty unique keys, no nested arrays, general.alignment a u32
 * power of two, names under 64 bytes, at most 4 dims, ne[0] a multiple of the block size). Every
 * length, count and offset is checked against the bytes left before it is used, overflow-safe.
 */
#include "gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_MAGIC_SWAPPED "FUGG" /* a u32 magic written big-endian */
#define HEADER_BYTES 24u          /* magic, version, tensor count, KV count */
#define MIN_KV_BYTES 14u          /* key length + 1-byte key + type + 1-byte value */
#define MIN_TENSOR_BYTES 32u      /* name length + n_dims + one dim + type + offset */
#define MAX_KEY_SHOWN 80          /* longest key or name quoted in an error */
#define MAX_GGML_TYPE_ID 1000u    /* larger ids are garbage, not merely unknown */

/* ---- type names ---- */

static const char *const VTYPE_NAMES[GGUF_VT_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};
static const size_t VTYPE_SIZES[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_vtype_name(gguf_vtype t) { return (unsigned)t < GGUF_VT_COUNT ? VTYPE_NAMES[t] : "?"; }
size_t gguf_vtype_size(gguf_vtype t) { return (unsigned)t < GGUF_VT_COUNT ? VTYPE_SIZES[t] : 0; }

/* ggml_type ids (formats.md 1.4); NULL for removed ids */
static const char *const GGML_NAMES[] = {
    "f32", "f16", "q4_0", "q4_1", NULL, NULL, "q5_0", "q5_1", "q8_0", "q8_1", "q2_K", "q3_K", "q4_K",
    "q5_K", "q6_K", "q8_K", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs",
    "i8", "i16", "i32", "i64", "f64", "iq1_m", "bf16", NULL, NULL, NULL, "tq1_0", "tq2_0", NULL, NULL, NULL,
    "mxfp4", "nvfp4", "q1_0", "q2_0",
};

const char *gguf_ggml_type_name(int id) {
    if (id < 0 || id >= (int)(sizeof GGML_NAMES / sizeof GGML_NAMES[0]) || !GGML_NAMES[id]) return "?";
    return GGML_NAMES[id];
}

/* ---- the cursor: bounds-checked little-endian reads ---- */

typedef struct cursor {
    const uint8_t *p;
    size_t size, pos;
    const char *path;
    char ctx[MAX_KEY_SHOWN + 32]; /* "key 'x'" or "tensor 'y'", for error messages */
    lb_error *err;
} cursor;

static lb_status fail(cursor *c, lb_status s, const char *fmt, ...) LB_PRINTF(3, 4);
static lb_status fail(cursor *c, lb_status s, const char *fmt, ...) {
    char msg[LB_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->ctx[0]) return lb_err_set(c->err, s, "%s: %s: %s", c->path, c->ctx, msg);
    return lb_err_set(c->err, s, "%s: %s", c->path, msg);
}

static void set_ctx(cursor *c, const char *what, const uint8_t *name, size_t len) {
    int shown = len > MAX_KEY_SHOWN ? MAX_KEY_SHOWN : (int)len;
    snprintf(c->ctx, sizeof c->ctx, "%s '%.*s%s'", what, shown, (const char *)name, len > MAX_KEY_SHOWN ? "..." : "");
}

static size_t left(const cursor *c) { return c->size - c->pos; }

static lb_status need(cursor *c, size_t n, const char *what) {
    if (n <= left(c)) return LB_OK;
    return fail(c, LB_ERR_FORMAT, "truncated: %s needs %zu bytes at offset %zu but only %zu are left", what, n,
                c->pos, left(c));
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static lb_status rd_u32(cursor *c, uint32_t *v, const char *what) {
    lb_status s = need(c, 4, what);
    if (s != LB_OK) return s;
    *v = get_u32(c->p + c->pos);
    c->pos += 4;
    return LB_OK;
}

static lb_status rd_u64(cursor *c, uint64_t *v, const char *what) {
    lb_status s = need(c, 8, what);
    if (s != LB_OK) return s;
    *v = get_u64(c->p + c->pos);
    c->pos += 8;
    return LB_OK;
}

/* A string: u64 length then the bytes. */
static lb_status rd_str(cursor *c, const uint8_t **str, size_t *len, const char *what) {
    uint64_t n;
    lb_status s = rd_u64(c, &n, what);
    if (s != LB_OK) return s;
    if (n > left(c))
        return fail(c, LB_ERR_FORMAT, "truncated: %s of %llu bytes at offset %zu runs past the end of the file "
                    "(%zu bytes)", what, (unsigned long long)n, c->pos, c->size);
    *str = c->p + c->pos;
    *len = (size_t)n;
    c->pos += (size_t)n;
    return LB_OK;
}

/* ---- header ---- */

static lb_status parse_header(cursor *c, gguf_file *f, uint64_t *n_tensors, uint64_t *n_kv) {
    if (c->size < 4 || (memcmp(c->p, GGUF_MAGIC, 4) != 0 && memcmp(c->p, GGUF_MAGIC_SWAPPED, 4) != 0)) {
        if (c->size < 4) return fail(c, LB_ERR_FORMAT, "not a GGUF file (%zu bytes, too short for the magic)", c->size);
        return fail(c, LB_ERR_FORMAT, "not a GGUF file (magic %02x %02x %02x %02x, want \"GGUF\")", c->p[0], c->p[1],
                    c->p[2], c->p[3]);
    }
    c->pos = 4;
    uint32_t v;
    lb_status s = rd_u32(c, &v, "version");
    if (s != LB_OK) return s;
    if (memcmp(c->p, GGUF_MAGIC_SWAPPED, 4) == 0 || (v != 0 && (v & 0xffffu) == 0))
        return fail(c, LB_ERR_UNSUPPORTED, "big-endian GGUF files are not supported (version field 0x%08x)", v);
    if (v == 1) return fail(c, LB_ERR_UNSUPPORTED, "GGUF version 1 is not supported (versions 2 and 3 are)");
    if (v != 2 && v != 3)
        return fail(c, LB_ERR_UNSUPPORTED, "GGUF version %u is not supported (versions 2 and 3 are)", v);
    f->version = v;
    if ((s = rd_u64(c, n_tensors, "tensor count")) != LB_OK || (s = rd_u64(c, n_kv, "KV count")) != LB_OK) return s;
    size_t room = c->size - HEADER_BYTES;
    if (*n_kv > room / MIN_KV_BYTES)
        return fail(c, LB_ERR_FORMAT, "KV count %llu cannot fit in a file of %zu bytes", (unsigned long long)*n_kv,
                    c->size);
    if (*n_tensors > room / MIN_TENSOR_BYTES)
        return fail(c, LB_ERR_FORMAT, "tensor count %llu cannot fit in a file of %zu bytes",
                    (unsigned long long)*n_tensors, c->size);
    return LB_OK;
}

/* ---- metadata ---- */

static lb_status check_bools(cursor *c, const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1) return fail(c, LB_ERR_FORMAT, "bool value %u is not 0 or 1", p[i]);
    return LB_OK;
}

/* The elements of a string array: check each and remember where it starts. */
static lb_status parse_str_array(cursor *c, gguf_kv *kv) {
    if (kv->n > left(c) / 8)
        return fail(c, LB_ERR_FORMAT, "truncated: array of %llu strings cannot fit in the %zu bytes left",
                    (unsigned long long)kv->n, left(c));
    kv->strs_ = malloc((size_t)kv->n * sizeof *kv->strs_ + 1);
    if (!kv->strs_) return fail(c, LB_ERR_NOMEM, "out of memory for %llu strings", (unsigned long long)kv->n);
    for (uint64_t i = 0; i < kv->n; i++) {
        kv->strs_[i] = c->p + c->pos;
        const uint8_t *s;
        size_t len;
        lb_status st = rd_str(c, &s, &len, "array string");
        if (st != LB_OK) return st;
    }
    return LB_OK;
}

static lb_status parse_array(cursor *c, gguf_kv *kv) {
    uint32_t et;
    uint64_t n;
    lb_status s = rd_u32(c, &et, "array element type");
    if (s != LB_OK) return s;
    if (et == GGUF_VT_ARR) return fail(c, LB_ERR_UNSUPPORTED, "nested arrays are not supported");
    if (et >= GGUF_VT_COUNT) return fail(c, LB_ERR_FORMAT, "unknown array element type %u", et);
    if ((s = rd_u64(c, &n, "array count")) != LB_OK) return s;
    kv->arr_type = (gguf_vtype)et;
    kv->n = n;
    kv->data = c->p + c->pos;
    if (et == GGUF_VT_STR) return parse_str_array(c, kv);
    size_t es = VTYPE_SIZES[et];
    if (n > left(c) / es)
        return fail(c, LB_ERR_FORMAT, "truncated: array of %llu %s values at offset %zu runs past the end of the "
                    "file (%zu bytes)", (unsigned long long)n, VTYPE_NAMES[et], c->pos, c->size);
    if (et == GGUF_VT_BOOL && (s = check_bools(c, kv->data, n)) != LB_OK) return s;
    c->pos += (size_t)n * es;
    return LB_OK;
}

static lb_status parse_value(cursor *c, gguf_kv *kv) {
    uint32_t t;
    lb_status s = rd_u32(c, &t, "value type");
    if (s != LB_OK) return s;
    if (t >= GGUF_VT_COUNT) return fail(c, LB_ERR_FORMAT, "unknown value type %u", t);
    kv->type = (gguf_vtype)t;
    kv->arr_type = GGUF_VT_COUNT;
    kv->n = 1;
    if (t == GGUF_VT_ARR) return parse_array(c, kv);
    if (t == GGUF_VT_STR) return rd_str(c, &kv->data, &kv->str_len, "string value");
    if ((s = need(c, VTYPE_SIZES[t], "value")) != LB_OK) return s;
    kv->data = c->p + c->pos;
    if (t == GGUF_VT_BOOL && (s = check_bools(c, kv->data, 1)) != LB_OK) return s;
    c->pos += VTYPE_SIZES[t];
    return LB_OK;
}

/* One pair; the key stays in the map (key_at, key_len) until the key strings are copied out. */
static lb_status parse_kv(cursor *c, gguf_kv *kv, const uint8_t **key_at, size_t *key_len, int64_t i) {
    snprintf(c->ctx, sizeof c->ctx, "KV %lld", (long long)i);
    lb_status s = rd_str(c, key_at, key_len, "key");
    if (s != LB_OK) return s;
    if (*key_len == 0) return fail(c, LB_ERR_FORMAT, "empty key");
    if (lb_utf8_valid_prefix(*key_at, *key_len) != *key_len) return fail(c, LB_ERR_FORMAT, "key is not valid UTF-8");
    set_ctx(c, "key", *key_at, *key_len);
    if (memchr(*key_at, 0, *key_len)) return fail(c, LB_ERR_FORMAT, "key contains a NUL byte");
    return parse_value(c, kv);
}

typedef struct named {
    const char *name;
    int64_t i;
} named;

static int cmp_named(const void *a, const void *b) {
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* Indices of items sorted by name into *out; the first duplicate name, if any, into *dup. */
static lb_status sort_names(named *items, int64_t n, int64_t **out, const char **dup) {
    *dup = NULL;
    *out = malloc((size_t)n * sizeof **out + 1);
    if (!*out) return LB_ERR_NOMEM;
    if (n > 1) qsort(items, (size_t)n, sizeof *items, cmp_named);
    for (int64_t i = 0; i < n; i++) {
        (*out)[i] = items[i].i;
        if (i > 0 && !*dup && strcmp(items[i].name, items[i - 1].name) == 0) *dup = items[i].name;
    }
    return LB_OK;
}

/* Copy the keys out as NUL-terminated strings and build the sorted index. */
static lb_status index_keys(cursor *c, gguf_file *f, const uint8_t **key_at, const size_t *key_len) {
    size_t total = 1;
    for (int64_t i = 0; i < f->n_kv; i++) total += key_len[i] + 1; /* keys lie inside the file: no overflow */
    named *items = malloc((size_t)f->n_kv * sizeof *items + 1);
    f->keys_ = malloc(total);
    if (!items || !f->keys_) {
        free(items);
        return fail(c, LB_ERR_NOMEM, "out of memory for %lld keys", (long long)f->n_kv);
    }
    char *k = f->keys_;
    for (int64_t i = 0; i < f->n_kv; i++) {
        memcpy(k, key_at[i], key_len[i]);
        k[key_len[i]] = 0;
        f->kvs[i].key = k;
        items[i] = (named){k, i};
        k += key_len[i] + 1;
    }
    const char *dup;
    lb_status s = sort_names(items, f->n_kv, &f->kv_by_key_, &dup);
    c->ctx[0] = 0;
    if (s != LB_OK) s = fail(c, s, "out of memory");
    else if (dup) s = fail(c, LB_ERR_FORMAT, "duplicate key '%.*s'", MAX_KEY_SHOWN, dup);
    free(items);
    return s;
}

static lb_status parse_kvs(cursor *c, gguf_file *f) {
    f->kvs = calloc((size_t)f->n_kv + 1, sizeof *f->kvs);
    const uint8_t **key_at = malloc(((size_t)f->n_kv + 1) * sizeof *key_at);
    size_t *key_len = malloc(((size_t)f->n_kv + 1) * sizeof *key_len);
    lb_status s = LB_OK;
    if (!f->kvs || !key_at || !key_len) s = fail(c, LB_ERR_NOMEM, "out of memory for %lld KVs", (long long)f->n_kv);
    for (int64_t i = 0; s == LB_OK && i < f->n_kv; i++) s = parse_kv(c, &f->kvs[i], &key_at[i], &key_len[i], i);
    if (s == LB_OK) s = index_keys(c, f, key_at, key_len);
    free(key_at);
    free(key_len);
    return s;
}

static lb_status read_alignment(cursor *c, gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(f, GGUF_KEY_ALIGNMENT);
    if (!kv) return LB_OK;
    snprintf(c->ctx, sizeof c->ctx, "key '%s'", GGUF_KEY_ALIGNMENT);
    if (kv->type != GGUF_VT_U32) return fail(c, LB_ERR_FORMAT, "type %s, want u32", gguf_vtype_name(kv->type));
    uint32_t a = get_u32(kv->data);
    if (a == 0 || (a & (a - 1)) != 0) return fail(c, LB_ERR_FORMAT, "alignment %u is not a power of two", a);
    f->alignment = a;
    c->ctx[0] = 0;
    return LB_OK;
}

/* ---- tensor infos ---- */

static lb_status parse_dims(cursor *c, gguf_tensor *t) {
    uint32_t nd;
    lb_status s = rd_u32(c, &nd, "n_dims");
    if (s != LB_OK) return s;
    if (nd < 1 || nd > GGUF_MAX_DIMS) return fail(c, LB_ERR_FORMAT, "n_dims %u is not in 1..%d", nd, GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    t->n_elements = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims && (s = rd_u64(c, &ne, "dimension")) != LB_OK) return s;
        if (ne > (uint64_t)INT64_MAX)
            return fail(c, LB_ERR_FORMAT, "ne[%d] = %llu is negative as int64", d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        if (!lb_mul_i64(t->n_elements, t->ne[d], &t->n_elements))
            return fail(c, LB_ERR_FORMAT, "element count overflows int64");
    }
    return LB_OK;
}

static lb_status parse_type(cursor *c, gguf_tensor *t) {
    uint32_t id;
    lb_status s = rd_u32(c, &id, "ggml type");
    if (s != LB_OK) return s;
    int lt = id < MAX_GGML_TYPE_ID ? lb_type_from_gguf_id((int)id) : -1;
    if (lt < 0)
        return fail(c, LB_ERR_UNSUPPORTED, "ggml type %u (%s) is not supported", id,
                    id < MAX_GGML_TYPE_ID ? gguf_ggml_type_name((int)id) : "?");
    t->type = (lb_type)lt;
    t->ggml_type = (int)id;
    int64_t be = lb_type_block_elems(t->type);
    if (t->ne[0] % be != 0)
        return fail(c, LB_ERR_FORMAT, "ne[0] = %lld is not a multiple of the %s block size %lld", (long long)t->ne[0],
                    lb_type_name(t->type), (long long)be);
    size_t n = lb_type_block_bytes(t->type);
    if (!lb_mul_size(n, (size_t)(t->ne[0] / be), &n)) return fail(c, LB_ERR_FORMAT, "byte size overflows");
    for (int d = 1; d < GGUF_MAX_DIMS; d++)
        if (!lb_mul_size(n, (size_t)t->ne[d], &n)) return fail(c, LB_ERR_FORMAT, "byte size overflows");
    t->n_bytes = n;
    return LB_OK;
}

static lb_status parse_tensor_info(cursor *c, gguf_file *f, gguf_tensor *t, int64_t i) {
    snprintf(c->ctx, sizeof c->ctx, "tensor %lld", (long long)i);
    const uint8_t *name = NULL;
    size_t len = 0;
    lb_status s = rd_str(c, &name, &len, "name");
    if (s != LB_OK) return s;
    if (lb_utf8_valid_prefix(name, len) != len) return fail(c, LB_ERR_FORMAT, "name is not valid UTF-8");
    set_ctx(c, "tensor", name, len);
    if (len >= GGUF_MAX_NAME)
        return fail(c, LB_ERR_FORMAT, "name of %zu bytes is too long (at most %d)", len, GGUF_MAX_NAME - 1);
    if (memchr(name, 0, len)) return fail(c, LB_ERR_FORMAT, "name contains a NUL byte");
    memcpy(t->name, name, len);
    t->name[len] = 0;
    if ((s = parse_dims(c, t)) != LB_OK || (s = parse_type(c, t)) != LB_OK) return s;
    if ((s = rd_u64(c, &t->offset, "offset")) != LB_OK) return s;
    if (t->offset % f->alignment != 0)
        return fail(c, LB_ERR_FORMAT, "offset %llu is not a multiple of the alignment %u",
                    (unsigned long long)t->offset, f->alignment);
    return LB_OK;
}

/* ---- tensor data ---- */

static int cmp_by_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

static lb_status check_overlap(cursor *c, gguf_file *f) {
    const gguf_tensor **by_off = malloc((size_t)f->n_tensors * sizeof *by_off + 1);
    if (!by_off) return fail(c, LB_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < f->n_tensors; i++) by_off[i] = &f->tensors[i];
    qsort(by_off, (size_t)f->n_tensors, sizeof *by_off, cmp_by_offset);
    lb_status s = LB_OK;
    for (int64_t i = 1; i < f->n_tensors && s == LB_OK; i++) {
        const gguf_tensor *a = by_off[i - 1], *b = by_off[i];
        if (a->offset + a->n_bytes > b->offset) /* both ends are inside the file: no overflow */
            s = fail(c, LB_ERR_FORMAT, "tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", a->name,
                     (unsigned long long)a->offset, (unsigned long long)(a->offset + a->n_bytes), b->name,
                     (unsigned long long)b->offset, (unsigned long long)(b->offset + b->n_bytes));
    }
    free(by_off);
    return s;
}

static lb_status place_tensors(cursor *c, gguf_file *f) {
    c->ctx[0] = 0;
    size_t pad = (f->alignment - c->pos % f->alignment) % f->alignment;
    f->data_start = c->pos + pad;
    f->ggml_layout = true;
    if (f->n_tensors == 0) return LB_OK;
    if (pad > left(c))
        return fail(c, LB_ERR_FORMAT, "truncated: the data section would start at %zu, past the end of the file "
                    "(%zu bytes)", f->data_start, c->size);
    size_t room = c->size - f->data_start;
    uint64_t expect = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset > room || t->n_bytes > room - t->offset) {
            snprintf(c->ctx, sizeof c->ctx, "tensor '%s'", t->name);
            return fail(c, LB_ERR_FORMAT, "truncated: data [%llu, %llu + %zu) runs past the end of the file "
                        "(%zu bytes of data)", (unsigned long long)t->offset, (unsigned long long)t->offset,
                        t->n_bytes, room);
        }
        t->data = c->p + f->data_start + t->offset;
        if (t->offset != expect) f->ggml_layout = false;
        expect = t->offset + t->n_bytes + (f->alignment - t->n_bytes % f->alignment) % f->alignment;
    }
    return check_overlap(c, f);
}

static lb_status parse_tensors(cursor *c, gguf_file *f) {
    f->tensors = calloc((size_t)f->n_tensors + 1, sizeof *f->tensors);
    named *items = malloc(((size_t)f->n_tensors + 1) * sizeof *items);
    lb_status s = LB_OK;
    if (!f->tensors || !items) s = fail(c, LB_ERR_NOMEM, "out of memory for %lld tensors", (long long)f->n_tensors);
    for (int64_t i = 0; s == LB_OK && i < f->n_tensors; i++) {
        s = parse_tensor_info(c, f, &f->tensors[i], i);
        items[i] = (named){f->tensors[i].name, i};
    }
    if (s == LB_OK) {
        const char *dup;
        c->ctx[0] = 0;
        s = sort_names(items, f->n_tensors, &f->tensor_by_name_, &dup);
        if (s != LB_OK) s = fail(c, s, "out of memory");
        else if (dup) s = fail(c, LB_ERR_FORMAT, "duplicate tensor name '%s'", dup);
    }
    free(items);
    if (s == LB_OK) s = place_tensors(c, f);
    return s;
}

/* ---- open / close ---- */

static lb_status parse(gguf_file *f, lb_error *err) {
    cursor c = {.p = f->map.data, .size = f->map.size, .path = f->path, .err = err};
    uint64_t nt, nkv;
    lb_status s = parse_header(&c, f, &nt, &nkv);
    if (s != LB_OK) return s;
    f->n_kv = (int64_t)nkv;
    f->n_tensors = (int64_t)nt;
    if ((s = parse_kvs(&c, f)) != LB_OK || (s = read_alignment(&c, f)) != LB_OK) return s;
    return parse_tensors(&c, f);
}

static lb_status open_common(gguf_file *f, gguf_file **out, lb_error *err) {
    lb_status s = parse(f, err);
    if (s != LB_OK) {
        gguf_close(f);
        return s;
    }
    *out = f;
    return LB_OK;
}

lb_status gguf_open(const char *path, gguf_file **out, lb_error *err) {
    gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return lb_err_set(err, LB_ERR_NOMEM, "%s: out of memory", path);
    }
    lb_status s = lb_mmap_open(path, &f->map, err);
    if (s != LB_OK) {
        gguf_close(f);
        return s;
    }
    f->owns_map_ = true;
    return open_common(f, out, err);
}

lb_status gguf_open_memory(const void *data, size_t size, const char *name, gguf_file **out, lb_error *err) {
    gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(name ? name : "(memory)"))) {
        free(f);
        return lb_err_set(err, LB_ERR_NOMEM, "%s: out of memory", name ? name : "(memory)");
    }
    f->map.data = data;
    f->map.size = size;
    return open_common(f, out, err);
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (int64_t i = 0; f->kvs && i < f->n_kv; i++) free(f->kvs[i].strs_);
    free(f->kvs);
    free(f->tensors);
    free(f->keys_);
    free(f->kv_by_key_);
    free(f->tensor_by_name_);
    if (f->owns_map_) lb_mmap_close(&f->map);
    free(f->path);
    free(f);
}

/* ---- lookups ---- */

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    if (!f || !key || !f->kv_by_key_) return NULL;
    int64_t lo = 0, hi = f->n_kv;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const gguf_kv *kv = &f->kvs[f->kv_by_key_[mid]];
        int c = strcmp(kv->key, key);
        if (c == 0) return kv;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    if (!f || !name || !f->tensor_by_name_) return NULL;
    int64_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const gguf_tensor *t = &f->tensors[f->tensor_by_name_[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- typed values ---- */

static bool value_int(const uint8_t *p, gguf_vtype t, int64_t *out) {
    switch (t) {
    case GGUF_VT_U8: *out = p[0]; return true;
    case GGUF_VT_I8: *out = (int8_t)p[0]; return true;
    case GGUF_VT_U16: *out = (uint16_t)(p[0] | p[1] << 8); return true;
    case GGUF_VT_I16: *out = (int16_t)(uint16_t)(p[0] | p[1] << 8); return true;
    case GGUF_VT_U32: *out = get_u32(p); return true;
    case GGUF_VT_I32: *out = (int32_t)get_u32(p); return true;
    case GGUF_VT_I64: *out = (int64_t)get_u64(p); return true;
    case GGUF_VT_U64: {
        uint64_t v = get_u64(p);
        if (v > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v;
        return true;
    }
    default: return false;
    }
}

static bool value_float(const uint8_t *p, gguf_vtype t, double *out) {
    if (t == GGUF_VT_F32) {
        union { uint32_t u; float f; } v = {.u = get_u32(p)};
        *out = v.f;
        return true;
    }
    if (t == GGUF_VT_F64) {
        union { uint64_t u; double d; } v = {.u = get_u64(p)};
        *out = v.d;
        return true;
    }
    return false;
}

bool gguf_kv_int(const gguf_kv *kv, int64_t *out) {
    return kv && kv->type != GGUF_VT_ARR && value_int(kv->data, kv->type, out);
}
bool gguf_kv_float(const gguf_kv *kv, double *out) { return kv && value_float(kv->data, kv->type, out); }

bool gguf_kv_bool(const gguf_kv *kv, bool *out) {
    if (!kv || kv->type != GGUF_VT_BOOL) return false;
    *out = kv->data[0] != 0;
    return true;
}

const char *gguf_kv_str(const gguf_kv *kv, size_t *len) {
    if (!kv || kv->type != GGUF_VT_STR) return NULL;
    if (len) *len = kv->str_len;
    return (const char *)kv->data;
}

bool gguf_get_int(const gguf_file *f, const char *key, int64_t *out) {
    return gguf_kv_int(gguf_find_kv(f, key), out);
}
bool gguf_get_float(const gguf_file *f, const char *key, double *out) {
    return gguf_kv_float(gguf_find_kv(f, key), out);
}
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    return gguf_kv_bool(gguf_find_kv(f, key), out);
}
const char *gguf_get_str(const gguf_file *f, const char *key, size_t *len) {
    return gguf_kv_str(gguf_find_kv(f, key), len);
}

uint64_t gguf_arr_n(const gguf_kv *kv) { return kv && kv->type == GGUF_VT_ARR ? kv->n : 0; }
gguf_vtype gguf_arr_type(const gguf_kv *kv) {
    return kv && kv->type == GGUF_VT_ARR ? kv->arr_type : GGUF_VT_COUNT;
}

const char *gguf_get_arr_str(const gguf_kv *kv, uint64_t i, size_t *len) {
    if (!kv || kv->type != GGUF_VT_ARR || kv->arr_type != GGUF_VT_STR || i >= kv->n) return NULL;
    if (len) *len = (size_t)get_u64(kv->strs_[i]);
    return (const char *)kv->strs_[i] + 8;
}

bool gguf_get_arr_int(const gguf_kv *kv, uint64_t i, int64_t *out) {
    if (!kv || kv->type != GGUF_VT_ARR || i >= kv->n) return false;
    const uint8_t *p = kv->data + i * gguf_vtype_size(kv->arr_type);
    if (kv->arr_type == GGUF_VT_BOOL) {
        *out = p[0];
        return true;
    }
    return value_int(p, kv->arr_type, out);
}

bool gguf_get_arr_float(const gguf_kv *kv, uint64_t i, double *out) {
    if (!kv || kv->type != GGUF_VT_ARR || i >= kv->n) return false;
    return value_float(kv->data + i * gguf_vtype_size(kv->arr_type), kv->arr_type, out);
}
