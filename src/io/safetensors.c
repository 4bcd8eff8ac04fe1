/*
 * safetensors.c - memory-mapped safetensors reader: single files, and sharded checkpoints through
 * model.safetensors.index.json.
 *
 * Source: the safetensors format as documented by huggingface/safetensors (README and docs.rs):
 * an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON mapping tensor names to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to byte 8 + N) plus an optional
 * "__metadata__" object of strings, then the raw little-endian C-order data. The index file is the
 * transformers convention {"metadata": {...}, "weight_map": {tensor: shard file name}}.
 *
 * Every number read from a file is checked before use; errors name the file and the tensor.
 */
#include "safetensors.h"

#include "../core/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER 100000000u /* the reference implementation's limit on N */
#define ST_MAX_INDEX (100u << 20)
#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

static const struct {
    const char *name;
    size_t size;
} dtype_table[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1},        [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
    [ST_U16] = {"U16", 2},          [ST_I16] = {"I16", 2},   [ST_U32] = {"U32", 4},
    [ST_I32] = {"I32", 4},          [ST_U64] = {"U64", 8},   [ST_I64] = {"I64", 8},
    [ST_F16] = {"F16", 2},          [ST_BF16] = {"BF16", 2}, [ST_F32] = {"F32", 4},
    [ST_F64] = {"F64", 8},          [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype d) {
    return (unsigned)d < ST_DTYPE_COUNT ? dtype_table[d].name : "?";
}

size_t st_dtype_size(st_dtype d) {
    return (unsigned)d < ST_DTYPE_COUNT ? dtype_table[d].size : 0;
}

static bool dtype_from_name(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_table[i].name) == 0) {
            *out = (st_dtype)i;
            return true;
        }
    }
    return false;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* ---- the st_file being built ---- */

static lb_status add_shard(st_file *f, const char *path, lb_error *err) {
    if (f->n_shards >= (1 << 20))
        return lb_err_set(err, LB_ERR_FORMAT, "%s: too many shards", path);
    int n = f->n_shards + 1;
    lb_mmap *maps = realloc(f->shards, (size_t)n * sizeof *maps);
    if (!maps) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    f->shards = maps;
    char **paths = realloc(f->shard_paths, (size_t)n * sizeof *paths);
    if (!paths) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    f->shard_paths = paths;
    paths[n - 1] = strdup(path);
    if (!paths[n - 1]) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    memset(&maps[n - 1], 0, sizeof maps[n - 1]);
    f->n_shards = n;
    lb_status s = lb_mmap_open(path, &maps[n - 1], err);
    if (s != LB_OK) memset(&maps[n - 1], 0, sizeof maps[n - 1]);
    return s;
}

/* Used to find overlaps within one shard. */
typedef struct span {
    uint64_t begin, end;
    int64_t tensor;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static lb_status parse_shape(const char *path, const char *name, const json_value *shape, st_tensor *t,
                             lb_error *err) {
    if (json_type(shape) != JSON_ARRAY)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: tensor %s: \"shape\" is not an array", path, name);
    size_t nd = json_len(shape);
    if (nd > ST_MAX_DIMS)
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: tensor %s has %zu dimensions (at most %d supported)",
                          path, name, nd, ST_MAX_DIMS);
    int64_t n = 1;
    bool overflow = false;
    for (size_t i = 0; i < nd; i++) {
        int64_t d;
        if (!json_int(json_at(shape, i), &d) || d < 0)
            return lb_err_set(err, LB_ERR_FORMAT, "%s: tensor %s: shape[%zu] is not a non-negative integer",
                              path, name, i);
        t->shape[i] = d;
        if (!overflow && !lb_mul_i64(n, d, &n)) overflow = true;
    }
    /* A zero dimension makes the product 0 however large the others are. */
    for (size_t i = 0; i < nd; i++)
        if (t->shape[i] == 0) n = 0, overflow = false;
    if (overflow)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: tensor %s: element count of its shape overflows", path,
                          name);
    t->n_dims = (int)nd;
    t->n_elements = n;
    return LB_OK;
}

static lb_status parse_entry(const char *path, const char *name, const json_value *v, uint64_t data_size,
                             st_tensor *t, uint64_t *begin_out, lb_error *err) {
    if (json_type(v) != JSON_OBJECT)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: tensor %s: entry is not an object", path, name);
    const char *dt = json_str(json_get(v, "dtype"), NULL);
    if (!dt) return lb_err_set(err, LB_ERR_FORMAT, "%s: tensor %s: missing \"dtype\" string", path, name);
    if (!dtype_from_name(dt, &t->dtype))
        return lb_err_set(err, LB_ERR_UNSUPPORTED, "%s: tensor %s has unknown dtype \"%.32s\"", path, name, dt);
    const json_value *shape = json_get(v, "shape");
    if (!shape) return lb_err_set(err, LB_ERR_FORMAT, "%s: tensor %s: missing \"shape\"", path, name);
    lb_status s = parse_shape(path, name, shape, t, err);
    if (s != LB_OK) return s;

    const json_value *off = json_get(v, "data_offsets");
    int64_t b, e;
    if (json_type(off) != JSON_ARRAY || json_len(off) != 2 || !json_int(json_at(off, 0), &b) ||
        !json_int(json_at(off, 1), &e) || b < 0 || e < 0)
        return lb_err_set(err, LB_ERR_FORMAT,
                          "%s: tensor %s: \"data_offsets\" is not a pair of non-negative integers", path, name);
    if (b > e)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: tensor %s: data_offsets [%lld, %lld] end before they begin",
                          path, name, (long long)b, (long long)e);
    if ((uint64_t)e > data_size)
        return lb_err_set(err, LB_ERR_FORMAT,
                          "%s: tensor %s: data_offsets [%lld, %lld] exceed the data section of %llu bytes (file "
                          "truncated?)",
                          path, name, (long long)b, (long long)e, (unsigned long long)data_size);
    size_t n_bytes;
    if (!lb_mul_size((size_t)t->n_elements, st_dtype_size(t->dtype), &n_bytes) ||
        n_bytes != (size_t)(e - b))
        return lb_err_set(err, LB_ERR_FORMAT,
                          "%s: tensor %s: shape holds %lld %s elements but data_offsets [%lld, %lld] span %lld "
                          "bytes",
                          path, name, (long long)t->n_elements, dt, (long long)b, (long long)e,
                          (long long)(e - b));
    t->n_bytes = n_bytes;
    *begin_out = (uint64_t)b;
    return LB_OK;
}

static lb_status check_metadata(const char *path, const json_value *meta, lb_error *err) {
    if (json_type(meta) != JSON_OBJECT)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: \"__metadata__\" is not an object", path);
    for (size_t i = 0; i < json_len(meta); i++)
        if (json_type(json_at(meta, i)) != JSON_STRING)
            return lb_err_set(err, LB_ERR_FORMAT, "%s: __metadata__ value \"%.64s\" is not a string", path,
                              json_key_at(meta, i, NULL));
    return LB_OK;
}

static lb_status check_overlaps(const char *path, st_file *f, int64_t first, uint64_t *begins, lb_error *err) {
    int64_t n = f->n_tensors - first;
    if (n < 2) return LB_OK;
    span *sp = malloc((size_t)n * sizeof *sp);
    if (!sp) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        if (f->tensors[first + i].n_bytes == 0) continue; /* empty tensors occupy nothing */
        sp[k].begin = begins[i];
        sp[k].end = begins[i] + f->tensors[first + i].n_bytes;
        sp[k].tensor = first + i;
        k++;
    }
    qsort(sp, (size_t)k, sizeof *sp, cmp_span);
    lb_status s = LB_OK;
    for (int64_t i = 1; i < k; i++) {
        if (sp[i].begin < sp[i - 1].end) {
            s = lb_err_set(err, LB_ERR_FORMAT, "%s: tensors %s and %s overlap", path,
                           f->tensors[sp[i - 1].tensor].name, f->tensors[sp[i].tensor].name);
            break;
        }
    }
    free(sp);
    return s;
}

/* Map one .safetensors file as shard number f->n_shards and append its tensors in header order. */
static lb_status load_shard(st_file *f, const char *path, lb_error *err) {
    lb_status s = add_shard(f, path, err);
    if (s != LB_OK) return s;
    int shard = f->n_shards - 1;
    const lb_mmap *m = &f->shards[shard];
    if (m->size < 8)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: file of %zu bytes is too short for a safetensors header",
                          path, m->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | m->data[i];
    if (hlen > (uint64_t)(m->size - 8))
        return lb_err_set(err, LB_ERR_FORMAT, "%s: header length %llu exceeds file size %zu", path,
                          (unsigned long long)hlen, m->size);
    if (hlen > ST_MAX_HEADER)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit", path,
                          (unsigned long long)hlen, ST_MAX_HEADER);
    const uint8_t *data = m->data + 8 + hlen;
    uint64_t data_size = (uint64_t)(m->size - 8 - hlen);

    json_doc *doc = NULL;
    s = json_parse((const char *)m->data + 8, (size_t)hlen, &doc, err);
    if (s != LB_OK) {
        json_free(doc);
        return lb_err_prefix(err, s, "%s: header", path);
    }
    const json_value *root = json_root(doc);
    if (json_type(root) != JSON_OBJECT) {
        json_free(doc);
        return lb_err_set(err, LB_ERR_FORMAT, "%s: header is not a JSON object", path);
    }
    size_t n_entries = json_len(root);
    int64_t first = f->n_tensors;
    size_t cap;
    uint64_t *begins = NULL;
    if (!lb_add_size((size_t)first, n_entries, &cap) || !lb_mul_size(cap, sizeof(st_tensor), &cap) ||
        !(begins = malloc((n_entries ? n_entries : 1) * sizeof *begins))) {
        json_free(doc);
        return lb_err_set(err, LB_ERR_NOMEM, "%s: out of memory for %zu tensors", path, n_entries);
    }
    st_tensor *ts = realloc(f->tensors, cap ? cap : sizeof(st_tensor));
    if (!ts) {
        free(begins);
        json_free(doc);
        return lb_err_set(err, LB_ERR_NOMEM, "%s: out of memory for %zu tensors", path, n_entries);
    }
    f->tensors = ts;

    for (size_t i = 0; i < n_entries && s == LB_OK; i++) {
        size_t klen;
        const char *key = json_key_at(root, i, &klen);
        if (strcmp(key, "__metadata__") == 0) {
            s = check_metadata(path, json_at(root, i), err);
            continue;
        }
        if (strlen(key) != klen || klen == 0) {
            s = lb_err_set(err, LB_ERR_FORMAT, "%s: tensor name is empty or holds a NUL byte", path);
            break;
        }
        st_tensor t;
        memset(&t, 0, sizeof t);
        t.shard = shard;
        uint64_t b = 0;
        s = parse_entry(path, key, json_at(root, i), data_size, &t, &b, err);
        if (s != LB_OK) break;
        t.data = data + b;
        t.name = strdup(key);
        if (!t.name) {
            s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
            break;
        }
        begins[f->n_tensors - first] = b;
        f->tensors[f->n_tensors++] = t;
    }
    json_free(doc);
    if (s == LB_OK) s = check_overlaps(path, f, first, begins, err);
    free(begins);
    return s;
}

/* ---- name lookup ---- */

static int cmp_by_name(const void *a, const void *b, void *ctx) {
    const st_tensor *ts = ctx;
    return strcmp(ts[*(const int64_t *)a].name, ts[*(const int64_t *)b].name);
}

/* qsort with a context pointer, written out since qsort_r is not C11. A plain heap sort: O(n log n)
 * whatever the input, which matters for hostile headers. */
static void sort_idx(int64_t *v, int64_t n, int (*cmp)(const void *, const void *, void *), void *ctx) {
    for (int64_t start = n / 2 - 1, end = n;;) {
        int64_t root;
        if (start >= 0) {
            root = start--;
        } else {
            if (--end <= 0) break;
            int64_t tmp = v[0];
            v[0] = v[end];
            v[end] = tmp;
            root = 0;
        }
        for (;;) {
            int64_t child = 2 * root + 1;
            if (child >= end) break;
            if (child + 1 < end && cmp(&v[child], &v[child + 1], ctx) < 0) child++;
            if (cmp(&v[root], &v[child], ctx) >= 0) break;
            int64_t tmp = v[root];
            v[root] = v[child];
            v[child] = tmp;
            root = child;
        }
    }
}

/* Build f->by_name and reject duplicate names. */
static lb_status build_name_index(st_file *f, lb_error *err) {
    f->by_name = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *f->by_name);
    if (!f->by_name) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < f->n_tensors; i++) f->by_name[i] = i;
    sort_idx(f->by_name, f->n_tensors, cmp_by_name, f->tensors);
    for (int64_t i = 1; i < f->n_tensors; i++) {
        const st_tensor *a = &f->tensors[f->by_name[i - 1]], *b = &f->tensors[f->by_name[i]];
        if (strcmp(a->name, b->name) == 0) {
            if (a->shard == b->shard)
                return lb_err_set(err, LB_ERR_FORMAT, "%s: tensor %s appears twice", f->shard_paths[a->shard],
                                  a->name);
            return lb_err_set(err, LB_ERR_FORMAT, "tensor %s appears in both %s and %s", a->name,
                              f->shard_paths[a->shard], f->shard_paths[b->shard]);
        }
    }
    return LB_OK;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    if (!f || !name || !f->by_name) return NULL;
    int64_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- index files ---- */

typedef struct map_entry {
    const char *tensor;
    const char *shard_name;
    int64_t order;  /* position in weight_map */
    int shard;      /* shard number, once known */
} map_entry;

static int cmp_entry_shard(const void *a, const void *b) {
    const map_entry *x = a, *y = b;
    int c = strcmp(x->shard_name, y->shard_name);
    if (c) return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_entry_tensor(const void *a, const void *b) {
    const map_entry *x = a, *y = b;
    return strcmp(x->tensor, y->tensor);
}

static bool plain_file_name(const char *s, size_t len) {
    return len > 0 && strlen(s) == len && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

static lb_status check_index_covers(const st_file *f, const char *index_path, map_entry *e, size_t n,
                                    lb_error *err) {
    /* e is sorted by tensor name here. */
    for (size_t i = 1; i < n; i++)
        if (strcmp(e[i - 1].tensor, e[i].tensor) == 0)
            return lb_err_set(err, LB_ERR_FORMAT, "%s: weight_map lists tensor %s twice", index_path,
                              e[i].tensor);
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_find(f, e[i].tensor);
        if (!t || t->shard != e[i].shard)
            return lb_err_set(err, LB_ERR_FORMAT, "%s: tensor %s, which %s places in this shard, is missing",
                              f->shard_paths[e[i].shard], e[i].tensor, index_path);
    }
    if ((size_t)f->n_tensors != n) {
        for (int64_t i = 0; i < f->n_tensors; i++) {
            map_entry key = {.tensor = f->tensors[i].name};
            if (!bsearch(&key, e, n, sizeof *e, cmp_entry_tensor))
                return lb_err_set(err, LB_ERR_FORMAT, "%s: tensor %s is not listed in %s",
                                  f->shard_paths[f->tensors[i].shard], f->tensors[i].name, index_path);
        }
    }
    return LB_OK;
}

static lb_status load_index(st_file *f, const char *index_path, lb_error *err) {
    char *text = NULL;
    size_t len = 0;
    lb_status s = lb_read_file(index_path, ST_MAX_INDEX, &text, &len, err);
    if (s != LB_OK) return s;
    json_doc *doc = NULL;
    s = json_parse(text, len, &doc, err);
    free(text);
    if (s != LB_OK) {
        json_free(doc);
        return lb_err_prefix(err, s, "%s", index_path);
    }
    const json_value *wm = json_get(json_root(doc), "weight_map");
    size_t n = json_len(wm);
    if (json_type(wm) != JSON_OBJECT || n == 0) {
        json_free(doc);
        return lb_err_set(err, LB_ERR_FORMAT, "%s: missing or empty \"weight_map\" object", index_path);
    }
    map_entry *e = malloc(n * sizeof *e);
    char *dir = lb_path_dirname(index_path);
    if (!e || !dir) {
        free(e);
        free(dir);
        json_free(doc);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && s == LB_OK; i++) {
        size_t klen, slen = 0;
        e[i].tensor = json_key_at(wm, i, &klen);
        e[i].shard_name = json_str(json_at(wm, i), &slen);
        e[i].order = (int64_t)i;
        e[i].shard = -1;
        if (strlen(e[i].tensor) != klen || klen == 0)
            s = lb_err_set(err, LB_ERR_FORMAT, "%s: weight_map has an empty tensor name or one holding NUL",
                           index_path);
        else if (!e[i].shard_name)
            s = lb_err_set(err, LB_ERR_FORMAT, "%s: weight_map entry for %s is not a string", index_path,
                           e[i].tensor);
        else if (!plain_file_name(e[i].shard_name, slen))
            s = lb_err_set(err, LB_ERR_FORMAT, "%s: shard name \"%.128s\" for tensor %s is not a plain file name",
                           index_path, e[i].shard_name, e[i].tensor);
    }

    /* Distinct shards, opened once each, numbered in file-name order (model-00001-of-N first). */
    if (s == LB_OK) {
        qsort(e, n, sizeof *e, cmp_entry_shard);
        for (size_t i = 0; i < n && s == LB_OK; i++) {
            if (i > 0 && strcmp(e[i - 1].shard_name, e[i].shard_name) == 0) {
                e[i].shard = e[i - 1].shard;
                continue;
            }
            e[i].shard = f->n_shards;
            char *p = lb_path_join(dir, e[i].shard_name);
            if (!p) {
                s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
                break;
            }
            s = load_shard(f, p, err);
            free(p);
        }
    }
    if (s == LB_OK) s = build_name_index(f, err);
    if (s == LB_OK) {
        qsort(e, n, sizeof *e, cmp_entry_tensor);
        s = check_index_covers(f, index_path, e, n, err);
    }
    free(e);
    free(dir);
    json_free(doc);
    return s;
}

/* ---- public ---- */

lb_status st_open(const char *path, st_file **out, lb_error *err) {
    if (!path || !out) return lb_err_set(err, LB_ERR_ARG, "st_open: NULL argument");
    st_file *f = calloc(1, sizeof *f);
    if (!f) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    lb_status s;
    char *file = NULL;
    if (lb_path_is_dir(path)) {
        file = lb_path_join(path, ST_INDEX_NAME);
        if (file && !lb_path_exists(file)) {
            free(file);
            file = lb_path_join(path, ST_SINGLE_NAME);
            if (file && !lb_path_exists(file)) {
                free(file);
                st_close(f);
                return lb_err_set(err, LB_ERR_IO, "%s: no %s or %s", path, ST_SINGLE_NAME, ST_INDEX_NAME);
            }
        }
        if (!file) {
            st_close(f);
            return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
        }
        path = file;
    }
    if (ends_with(path, ".json")) {
        s = load_index(f, path, err);
    } else {
        s = load_shard(f, path, err);
        if (s == LB_OK) s = build_name_index(f, err);
    }
    free(file);
    if (s != LB_OK) {
        st_close(f);
        return s;
    }
    *out = f;
    return LB_OK;
}

void st_close(st_file *f) {
    if (!f) return;
    for (int64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_shards; i++) {
        if (f->shards[i].data) lb_mmap_close(&f->shards[i]);
        free(f->shard_paths[i]);
    }
    free(f->shards);
    free(f->shard_paths);
    free(f->by_name);
    free(f);
}
