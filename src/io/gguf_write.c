/*
 * gguf_write.c - the streamed GGUF v3 writer.
 *
 * Source: docs/formats.md section 1 (ggml docs/gguf.md; the layout ggml src/gguf.cpp writes): header
 * with the tensor and KV counts, the KVs, the tensor infos, zero padding to the alignment, then each
 * tensor's data in info order followed by zeros up to the alignment; offsets are running sums.
 *
 * Metadata is written to the file as it is set (the counts in the header are patched in by
 * gguf_writer_begin_data), tensor infos are kept in memory until then, and tensor data goes straight
 * from the caller's buffer to the file. Output goes through an lb_outfile (`<path>.lowbit-tmp`, locked,
 * renamed to `path` after fsync); the first failure of any kind deletes the temporary file and sticks.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WBUF_BYTES (1u << 20) /* metadata and padding are gathered in a buffer of this size */
#define MAX_KEY_BYTES 65535u  /* the spec's limit on key length */
#define GGUF_VERSION 3u
#define COUNTS_OFFSET 8       /* where the tensor and KV counts sit in the header */

typedef struct strset { /* open addressing over strdup'd strings */
    char **slots;
    size_t cap, n;
} strset;

typedef struct wtensor {
    char name[GGUF_MAX_NAME];
    lb_type type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    size_t n_bytes;
    uint64_t offset;
} wtensor;

struct gguf_writer {
    char *path;
    lb_outfile of;
    uint8_t *buf;
    size_t buf_len;
    uint64_t pos;          /* bytes written or buffered so far */
    lb_status failed;      /* LB_OK until the first failure */
    char fail_msg[LB_ERROR_MAX];
    uint32_t alignment;
    uint64_t n_kv;
    strset keys, names;
    wtensor *tensors;
    int64_t n_tensors, cap_tensors;
    bool data_begun;
    int64_t next;          /* the tensor whose data comes next */
    size_t next_done;      /* bytes of it written so far */
};

/* ---- string sets ---- */

static uint64_t hash_str(const char *s) { /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static bool strset_has(const strset *set, const char *s) {
    if (set->cap == 0) return false;
    for (size_t i = hash_str(s) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (!set->slots[i]) return false;
        if (strcmp(set->slots[i], s) == 0) return true;
    }
}

static void strset_put(strset *set, char *s) { /* s is owned by the set; there is room */
    size_t i = hash_str(s) & (set->cap - 1);
    while (set->slots[i]) i = (i + 1) & (set->cap - 1);
    set->slots[i] = s;
    set->n++;
}

static bool strset_add(strset *set, const char *s) {
    if (2 * (set->n + 1) > set->cap) {
        strset bigger = {calloc(set->cap ? 2 * set->cap : 64, sizeof(char *)), set->cap ? 2 * set->cap : 64, 0};
        if (!bigger.slots) return false;
        for (size_t i = 0; i < set->cap; i++)
            if (set->slots[i]) strset_put(&bigger, set->slots[i]);
        free(set->slots);
        *set = bigger;
    }
    char *copy = strdup(s);
    if (!copy) return false;
    strset_put(set, copy);
    return true;
}

static void strset_free(strset *set) {
    for (size_t i = 0; i < set->cap; i++) free(set->slots[i]);
    free(set->slots);
    set->slots = NULL;
    set->cap = set->n = 0;
}

/* ---- failure ---- */

static lb_status repeat(const gguf_writer *w, lb_error *err) {
    return lb_err_set(err, w->failed, "%s", w->fail_msg);
}

static void discard(gguf_writer *w) { lb_outfile_abort(&w->of); }

/* Record the first failure (message prefixed with the path), delete the temporary file, return s. */
static lb_status wfail(gguf_writer *w, lb_error *err, lb_status s, const char *fmt, ...) LB_PRINTF(4, 5);
static lb_status wfail(gguf_writer *w, lb_error *err, lb_status s, const char *fmt, ...) {
    if (w->failed == LB_OK) {
        lb_error e;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e.msg, sizeof e.msg, fmt, ap);
        va_end(ap);
        lb_err_prefix(&e, s, "%s", w->path);
        memcpy(w->fail_msg, e.msg, sizeof w->fail_msg);
        w->failed = s;
        discard(w);
    }
    return repeat(w, err);
}

static lb_status io_fail(gguf_writer *w, lb_error *err, const char *what, int e) {
    return wfail(w, err, LB_ERR_IO, "%s failed (temporary file %s): %s", what, w->of.tmp ? w->of.tmp : "", strerror(e));
}

/* ---- buffered output ---- */

static lb_status raw_write(gguf_writer *w, lb_error *err, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t r = write(w->of.fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return io_fail(w, err, "write", r < 0 ? errno : EIO);
        p += r;
        n -= (size_t)r;
    }
    return LB_OK;
}

static lb_status flush(gguf_writer *w, lb_error *err) {
    lb_status s = raw_write(w, err, w->buf, w->buf_len);
    w->buf_len = 0;
    return s;
}

static lb_status put(gguf_writer *w, lb_error *err, const void *p, size_t n) {
    lb_status s = LB_OK;
    if (w->buf_len + n > WBUF_BYTES && (s = flush(w, err)) != LB_OK) return s;
    if (n >= WBUF_BYTES) s = raw_write(w, err, p, n);
    else if (n > 0) {
        memcpy(w->buf + w->buf_len, p, n);
        w->buf_len += n;
    }
    w->pos += n;
    return s;
}

static void le_bytes(uint8_t *b, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
}

static lb_status put_u32(gguf_writer *w, lb_error *err, uint32_t v) {
    uint8_t b[4];
    le_bytes(b, v, 4);
    return put(w, err, b, 4);
}

static lb_status put_u64(gguf_writer *w, lb_error *err, uint64_t v) {
    uint8_t b[8];
    le_bytes(b, v, 8);
    return put(w, err, b, 8);
}

static lb_status put_str(gguf_writer *w, lb_error *err, const char *s, size_t len) {
    lb_status st = put_u64(w, err, len);
    return st != LB_OK ? st : put(w, err, s, len);
}

static lb_status put_zeros(gguf_writer *w, lb_error *err, uint64_t n) {
    static const uint8_t zeros[4096];
    lb_status s = LB_OK;
    while (n > 0 && s == LB_OK) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        s = put(w, err, zeros, k);
        n -= k;
    }
    return s;
}

static uint64_t pad_to(uint64_t x, uint32_t a) { return (a - x % a) % a; }

/* ---- open / abort ---- */

static void release(gguf_writer *w) {
    strset_free(&w->keys);
    strset_free(&w->names);
    free(w->tensors);
    free(w->buf);
    lb_outfile_abort(&w->of);
    free(w->path);
    free(w);
}

void gguf_writer_abort(gguf_writer *w) {
    if (!w) return;
    discard(w);
    release(w);
}

lb_status gguf_writer_open(const char *path, gguf_writer **out, lb_error *err) {
    if (!path || !*path || !out) return lb_err_set(err, LB_ERR_ARG, "gguf_writer_open: no path");
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->of.fd = w->of.slot = -1;
    if (!w || !(w->path = strdup(path)) || !(w->buf = malloc(WBUF_BYTES))) {
        if (w) release(w);
        return lb_err_set(err, LB_ERR_NOMEM, "%s: out of memory", path);
    }
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    lb_status s = lb_outfile_open(&w->of, path, err);
    if (s != LB_OK) {
        release(w);
        return s;
    }
    s = put(w, err, "GGUF", 4);
    if (s == LB_OK) s = put_u32(w, err, GGUF_VERSION);
    if (s == LB_OK) s = put_zeros(w, err, 16); /* counts, patched in by begin_data */
    if (s != LB_OK) {
        gguf_writer_abort(w);
        return s;
    }
    *out = w;
    return LB_OK;
}

/* ---- metadata ---- */

/* Checks shared by every setter; nothing is written. */
static lb_status check_kv(gguf_writer *w, const char *key, gguf_vtype type, lb_error *err) {
    if (!w) return lb_err_set(err, LB_ERR_ARG, "gguf writer: NULL handle");
    if (w->failed) return repeat(w, err);
    if (w->data_begun) return wfail(w, err, LB_ERR_ARG, "key '%.80s' set after gguf_writer_begin_data", key ? key : "");
    if (!key || !*key) return wfail(w, err, LB_ERR_ARG, "empty key");
    size_t kl = strlen(key);
    if (kl > MAX_KEY_BYTES)
        return wfail(w, err, LB_ERR_ARG, "key '%.80s...' is %zu bytes (at most %u)", key, kl, MAX_KEY_BYTES);
    if (strset_has(&w->keys, key)) return wfail(w, err, LB_ERR_ARG, "duplicate key '%.80s'", key);
    if (strcmp(key, GGUF_KEY_ALIGNMENT) == 0 && type != GGUF_VT_U32)
        return wfail(w, err, LB_ERR_ARG, "key '%s' must be u32, not %s", key, gguf_vtype_name(type));
    return LB_OK;
}

/* After check_kv: record the key and write it with the value type. */
static lb_status write_kv_head(gguf_writer *w, const char *key, gguf_vtype type, lb_error *err) {
    if (!strset_add(&w->keys, key)) return wfail(w, err, LB_ERR_NOMEM, "out of memory");
    w->n_kv++;
    lb_status s = put_str(w, err, key, strlen(key));
    return s != LB_OK ? s : put_u32(w, err, (uint32_t)type);
}

/* A scalar of a fixed-size type, value given as its little-endian bytes. */
static lb_status set_scalar(gguf_writer *w, const char *key, gguf_vtype t, const uint8_t *v, lb_error *err) {
    lb_status s = check_kv(w, key, t, err);
    if (s != LB_OK) return s;
    if (t == GGUF_VT_BOOL && v[0] > 1) return wfail(w, err, LB_ERR_ARG, "key '%.80s': bool value %u", key, v[0]);
    if (strcmp(key, GGUF_KEY_ALIGNMENT) == 0) {
        uint32_t a = (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 24;
        if (a == 0 || (a & (a - 1)) != 0) return wfail(w, err, LB_ERR_ARG, "%s %u is not a power of two", key, a);
        w->alignment = a;
    }
    s = write_kv_head(w, key, t, err);
    return s != LB_OK ? s : put(w, err, v, gguf_vtype_size(t));
}

static lb_status set_uint(gguf_writer *w, const char *key, gguf_vtype t, uint64_t v, lb_error *err) {
    uint8_t b[8];
    le_bytes(b, v, gguf_vtype_size(t));
    return set_scalar(w, key, t, b, err);
}

lb_status gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v, lb_error *err) {
    return set_uint(w, key, GGUF_VT_U8, v, err);
}
lb_status gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v, lb_error *err) {
    return set_uint(w, key, GGUF_VT_I8, (uint8_t)v, err);
}
lb_status gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v, lb_error *err) {
    return set_uint(w, key, GGUF_VT_U16, v, err);
}
lb_status gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v, lb_error *err) {
    return set_uint(w, key, GGUF_VT_I16, (uint16_t)v, err);
}
lb_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, lb_error *err) {
    return set_uint(w, key, GGUF_VT_U32, v, err);
}
lb_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, lb_error *err) {
    return set_uint(w, key, GGUF_VT_I32, (uint32_t)v, err);
}
lb_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v, lb_error *err) {
    return set_uint(w, key, GGUF_VT_U64, v, err);
}
lb_status gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v, lb_error *err) {
    return set_uint(w, key, GGUF_VT_I64, (uint64_t)v, err);
}
lb_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, lb_error *err) {
    return set_uint(w, key, GGUF_VT_BOOL, v ? 1 : 0, err);
}

lb_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v, lb_error *err) {
    union { float f; uint32_t u; } x = {.f = v};
    return set_uint(w, key, GGUF_VT_F32, x.u, err);
}

lb_status gguf_writer_set_f64(gguf_writer *w, const char *key, double v, lb_error *err) {
    union { double d; uint64_t u; } x = {.d = v};
    return set_uint(w, key, GGUF_VT_F64, x.u, err);
}

lb_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *s, size_t len, lb_error *err) {
    lb_status st = check_kv(w, key, GGUF_VT_STR, err);
    if (st != LB_OK) return st;
    if (!s && len) return wfail(w, err, LB_ERR_ARG, "key '%.80s': NULL string", key);
    st = write_kv_head(w, key, GGUF_VT_STR, err);
    return st != LB_OK ? st : put_str(w, err, s, len);
}

static lb_status check_arr(gguf_writer *w, const char *key, gguf_vtype et, const void *data, uint64_t n,
                           lb_error *err) {
    size_t bytes, es = gguf_vtype_size(et);
    if (es == 0)
        return wfail(w, err, LB_ERR_ARG, "key '%.80s': array element type %d is not a fixed-size type", key, (int)et);
    if (n > SIZE_MAX || !lb_mul_size(es, (size_t)n, &bytes) || (!data && n))
        return wfail(w, err, LB_ERR_ARG, "key '%.80s': bad array (%llu elements)", key, (unsigned long long)n);
    if (et == GGUF_VT_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1)
                return wfail(w, err, LB_ERR_ARG, "key '%.80s': bool value at %llu is not 0 or 1", key,
                        (unsigned long long)i);
    return LB_OK;
}

lb_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype elem_type, const void *data, uint64_t n,
                              lb_error *err) {
    lb_status s = check_kv(w, key, GGUF_VT_ARR, err);
    if (s == LB_OK) s = check_arr(w, key, elem_type, data, n, err);
    if (s == LB_OK) s = write_kv_head(w, key, GGUF_VT_ARR, err);
    if (s == LB_OK) s = put_u32(w, err, (uint32_t)elem_type);
    if (s == LB_OK) s = put_u64(w, err, n);
    return s != LB_OK ? s : put(w, err, data, gguf_vtype_size(elem_type) * (size_t)n);
}

lb_status gguf_writer_set_arr_str_fn(gguf_writer *w, const char *key, uint64_t n, gguf_str_fn fn, void *user,
                                     lb_error *err) {
    lb_status s = check_kv(w, key, GGUF_VT_ARR, err);
    if (s != LB_OK) return s;
    if (!fn) return wfail(w, err, LB_ERR_ARG, "key '%.80s': no string callback", key);
    s = write_kv_head(w, key, GGUF_VT_ARR, err);
    if (s == LB_OK) s = put_u32(w, err, GGUF_VT_STR);
    if (s == LB_OK) s = put_u64(w, err, n);
    for (uint64_t i = 0; i < n && s == LB_OK; i++) {
        size_t len = 0;
        const char *str = fn(user, i, &len);
        if (!str)
            return wfail(w, err, LB_ERR_ARG, "key '%.80s': no string for element %llu", key, (unsigned long long)i);
        s = put_str(w, err, str, len);
    }
    return s;
}

typedef struct str_list {
    const char *const *strs;
    const size_t *lens;
} str_list;

static const char *str_list_get(void *user, uint64_t i, size_t *len) {
    const str_list *l = user;
    const char *s = l->strs[i];
    if (s) *len = l->lens ? l->lens[i] : strlen(s);
    return s;
}

lb_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                                  uint64_t n, lb_error *err) {
    if (!strs && n) {
        lb_status s = check_kv(w, key, GGUF_VT_ARR, err);
        return s != LB_OK ? s : wfail(w, err, LB_ERR_ARG, "key '%.80s': NULL string list", key);
    }
    str_list l = {strs, lens};
    return gguf_writer_set_arr_str_fn(w, key, n, str_list_get, &l, err);
}

static const char *kv_str_get(void *user, uint64_t i, size_t *len) { return gguf_get_arr_str(user, i, len); }

lb_status gguf_writer_set_kv(gguf_writer *w, const gguf_kv *kv, lb_error *err) {
    if (!kv) return w ? wfail(w, err, LB_ERR_ARG, "NULL kv") : lb_err_set(err, LB_ERR_ARG, "NULL kv");
    if (kv->type == GGUF_VT_STR) return gguf_writer_set_str(w, kv->key, (const char *)kv->data, kv->str_len, err);
    if (kv->type != GGUF_VT_ARR) return set_scalar(w, kv->key, kv->type, kv->data, err);
    if (kv->arr_type == GGUF_VT_STR) return gguf_writer_set_arr_str_fn(w, kv->key, kv->n, kv_str_get, (void *)kv, err);
    return gguf_writer_set_arr(w, kv->key, kv->arr_type, kv->data, kv->n, err);
}

/* ---- tensors ---- */

static lb_status tensor_size(gguf_writer *w, wtensor *t, lb_error *err) {
    int64_t be = lb_type_block_elems(t->type), n_el = 1;
    for (int d = 0; d < t->n_dims; d++) {
        if (t->ne[d] < 0)
            return wfail(w, err, LB_ERR_ARG, "tensor '%s': ne[%d] = %lld is negative", t->name, d,
                    (long long)t->ne[d]);
        if (!lb_mul_i64(n_el, t->ne[d], &n_el))
            return wfail(w, err, LB_ERR_ARG, "tensor '%s': element count overflows", t->name);
    }
    if (t->ne[0] % be != 0)
        return wfail(w, err, LB_ERR_ARG, "tensor '%s': ne[0] = %lld is not a multiple of the %s block size %lld",
                t->name,
                     (long long)t->ne[0], lb_type_name(t->type), (long long)be);
    size_t n = lb_type_block_bytes(t->type);
    bool ok = lb_mul_size(n, (size_t)(t->ne[0] / be), &n);
    for (int d = 1; d < t->n_dims && ok; d++) ok = lb_mul_size(n, (size_t)t->ne[d], &n);
    if (!ok) return wfail(w, err, LB_ERR_ARG, "tensor '%s': byte size overflows", t->name);
    t->n_bytes = n;
    return LB_OK;
}

static lb_status check_tensor_args(gguf_writer *w, const char *name, lb_type type, int n_dims, const int64_t *ne,
                                   lb_error *err) {
    if (w->data_begun)
        return wfail(w, err, LB_ERR_ARG, "tensor '%.63s' added after gguf_writer_begin_data", name ? name : "");
    if (!name || !*name) return wfail(w, err, LB_ERR_ARG, "empty tensor name");
    if (strlen(name) >= GGUF_MAX_NAME)
        return wfail(w, err, LB_ERR_ARG, "tensor name '%.80s' is %zu bytes (at most %d)", name, strlen(name),
                GGUF_MAX_NAME - 1);
    if (strset_has(&w->names, name)) return wfail(w, err, LB_ERR_ARG, "duplicate tensor name '%s'", name);
    if ((unsigned)type >= LB_TYPE_COUNT || lb_type_gguf_id(type) < 0)
        return wfail(w, err, LB_ERR_ARG, "tensor '%s': unknown type %d", name, (int)type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
        return wfail(w, err, LB_ERR_ARG, "tensor '%s': n_dims %d is not in 1..%d", name, n_dims, GGUF_MAX_DIMS);
    return LB_OK;
}

lb_status gguf_writer_add_tensor(gguf_writer *w, const char *name, lb_type type, int n_dims, const int64_t *ne,
                                 lb_error *err) {
    if (!w) return lb_err_set(err, LB_ERR_ARG, "gguf writer: NULL handle");
    if (w->failed) return repeat(w, err);
    lb_status s = check_tensor_args(w, name, type, n_dims, ne, err);
    if (s != LB_OK) return s;
    if (w->n_tensors == w->cap_tensors) {
        int64_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        wtensor *t = realloc(w->tensors, (size_t)cap * sizeof *t);
        if (!t) return wfail(w, err, LB_ERR_NOMEM, "out of memory");
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name); /* length checked above */
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    if ((s = tensor_size(w, t, err)) != LB_OK) return s;
    if (!strset_add(&w->names, name)) return wfail(w, err, LB_ERR_NOMEM, "out of memory");
    w->n_tensors++;
    return LB_OK;
}

size_t gguf_writer_tensor_bytes(const gguf_writer *w, int64_t i) {
    return w && i >= 0 && i < w->n_tensors ? w->tensors[i].n_bytes : 0;
}

/* ---- data ---- */

static lb_status put_tensor_info(gguf_writer *w, const wtensor *t, lb_error *err) {
    lb_status s = put_str(w, err, t->name, strlen(t->name));
    if (s == LB_OK) s = put_u32(w, err, (uint32_t)t->n_dims);
    for (int d = 0; d < t->n_dims && s == LB_OK; d++) s = put_u64(w, err, (uint64_t)t->ne[d]);
    if (s == LB_OK) s = put_u32(w, err, (uint32_t)lb_type_gguf_id(t->type));
    return s != LB_OK ? s : put_u64(w, err, t->offset);
}

static lb_status patch_counts(gguf_writer *w, lb_error *err) {
    uint8_t b[16];
    le_bytes(b, (uint64_t)w->n_tensors, 8);
    le_bytes(b + 8, w->n_kv, 8);
    size_t done = 0;
    while (done < sizeof b) {
        ssize_t r = pwrite(w->of.fd, b + done, sizeof b - done, (off_t)(COUNTS_OFFSET + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return io_fail(w, err, "write", r < 0 ? errno : EIO);
        done += (size_t)r;
    }
    return LB_OK;
}

lb_status gguf_writer_begin_data(gguf_writer *w, lb_error *err) {
    if (!w) return lb_err_set(err, LB_ERR_ARG, "gguf writer: NULL handle");
    if (w->failed) return repeat(w, err);
    if (w->data_begun) return wfail(w, err, LB_ERR_ARG, "gguf_writer_begin_data called twice");
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        wtensor *t = &w->tensors[i];
        t->offset = off;
        if (__builtin_add_overflow(off, (uint64_t)t->n_bytes + pad_to(t->n_bytes, w->alignment), &off))
            return wfail(w, err, LB_ERR_ARG, "tensor data exceeds 2^64 bytes");
    }
    w->data_begun = true;
    lb_status s = LB_OK;
    for (int64_t i = 0; i < w->n_tensors && s == LB_OK; i++) s = put_tensor_info(w, &w->tensors[i], err);
    if (s == LB_OK) s = put_zeros(w, err, pad_to(w->pos, w->alignment));
    if (s == LB_OK) s = flush(w, err);
    return s != LB_OK ? s : patch_counts(w, err);
}

lb_status gguf_writer_write_tensor_part(gguf_writer *w, int64_t i, const void *data, size_t n, lb_error *err) {
    if (!w) return lb_err_set(err, LB_ERR_ARG, "gguf writer: NULL handle");
    if (w->failed) return repeat(w, err);
    if (!w->data_begun) return wfail(w, err, LB_ERR_ARG, "tensor data written before gguf_writer_begin_data");
    if (i != w->next || i >= w->n_tensors)
        return wfail(w, err, LB_ERR_ARG, "tensor %lld written out of order (next is %lld of %lld)", (long long)i,
                     (long long)w->next, (long long)w->n_tensors);
    const wtensor *t = &w->tensors[i];
    if (n > t->n_bytes - w->next_done || (!data && n))
        return wfail(w, err, LB_ERR_ARG, "tensor '%s': %zu more bytes given, %zu expected", t->name, n,
                t->n_bytes - w->next_done);
    lb_status s = put(w, err, data, n);
    if (s != LB_OK) return s;
    w->next_done += n;
    if (w->next_done == t->n_bytes) {
        w->next++;
        w->next_done = 0;
        return put_zeros(w, err, pad_to(t->n_bytes, w->alignment));
    }
    return LB_OK;
}

lb_status gguf_writer_write_tensor(gguf_writer *w, int64_t i, const void *data, size_t n_bytes, lb_error *err) {
    if (w && !w->failed && i >= 0 && i < w->n_tensors && (w->next_done != 0 || n_bytes != w->tensors[i].n_bytes))
        return wfail(w, err, LB_ERR_ARG, "tensor '%s': %zu bytes given, it takes %zu", w->tensors[i].name, n_bytes,
                     w->tensors[i].n_bytes);
    return gguf_writer_write_tensor_part(w, i, data, n_bytes, err);
}

/* ---- finish ---- */

static lb_status complete(gguf_writer *w, lb_error *err) {
    lb_status s = LB_OK;
    if (!w->data_begun && (s = gguf_writer_begin_data(w, err)) != LB_OK) return s;
    if (w->next < w->n_tensors)
        return wfail(w, err, LB_ERR_ARG, "tensor %lld '%s' (of %lld) was not written", (long long)w->next,
                     w->tensors[w->next].name, (long long)w->n_tensors);
    if ((s = flush(w, err)) != LB_OK) return s;
    lb_error e;
    if ((s = lb_outfile_commit(&w->of, &e)) != LB_OK) return wfail(w, err, s, "%s", e.msg + strlen(w->path) + 2);
    return LB_OK;
}

uint64_t gguf_writer_size(const gguf_writer *w) { return w ? w->pos : 0; }

lb_status gguf_writer_finish(gguf_writer *w, lb_error *err) {
    if (!w) return lb_err_set(err, LB_ERR_ARG, "gguf writer: NULL handle");
    lb_status s = w->failed ? repeat(w, err) : complete(w, err);
    if (s != LB_OK) discard(w);
    release(w);
    return s;
}
