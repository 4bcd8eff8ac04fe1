/*
 * imatrix.c - reading llama.cpp's importance-matrix files (see imatrix.h for both layouts; sources:
 * llama.cpp tools/imatrix/imatrix.cpp and tools/quantize/quantize.cpp, docs/formats.md 2.6).
 * Every count and length is checked against the file size before use.
 */
#include "imatrix.h"

#include "gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ENTRIES (1 << 20)
#define MAX_NAME 4096
#define MIN_ENTRY_BYTES 16 /* name length, a 1-byte name, ncall, nval, one value */

typedef struct cursor {
    const uint8_t *p, *end;
} cursor;

static bool read_i32(cursor *c, int32_t *v) {
    if (c->end - c->p < 4) return false;
    memcpy(v, c->p, 4);
    c->p += 4;
    return true;
}

static lb_status add_entry(lb_imatrix *m, const char *name, size_t name_len, int64_t n, lb_error *err) {
    lb_imatrix_entry *e = &m->entries[m->n_entries];
    e->name = malloc(name_len + 1);
    e->values = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!e->name || !e->values) {
        free(e->name);
        free(e->values);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    }
    memcpy(e->name, name, name_len);
    e->name[name_len] = 0;
    e->n = n;
    m->n_entries++;
    return LB_OK;
}

static lb_status load_dat(const char *path, const lb_mmap *map, lb_imatrix *m, lb_error *err) {
    cursor c = {map->data, map->data + map->size};
    int32_t n;
    if (!read_i32(&c, &n) || n <= 0 || n > MAX_ENTRIES || (size_t)n > (map->size - 4) / MIN_ENTRY_BYTES)
        return lb_err_set(err, LB_ERR_FORMAT, "%s: not an importance matrix (bad entry count)", path);
    m->entries = calloc((size_t)n, sizeof *m->entries);
    if (!m->entries) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        int32_t len, ncall, nval;
        if (!read_i32(&c, &len) || len <= 0 || len > MAX_NAME || c.end - c.p < len)
            return lb_err_set(err, LB_ERR_FORMAT, "%s: entry %d: bad name length", path, i);
        const char *name = (const char *)c.p;
        c.p += len;
        if (!read_i32(&c, &ncall) || !read_i32(&c, &nval) || nval <= 0 || (c.end - c.p) / 4 < nval)
            return lb_err_set(err, LB_ERR_FORMAT, "%s: entry %.*s: truncated or bad value count", path, (int)len, name);
        lb_status s = add_entry(m, name, (size_t)len, nval, err);
        if (s != LB_OK) return s;
        lb_imatrix_entry *e = &m->entries[m->n_entries - 1];
        for (int32_t j = 0; j < nval; j++) {
            float v;
            memcpy(&v, c.p + 4 * (size_t)j, 4);
            e->values[j] = ncall > 0 ? v / (float)ncall : v;
            if (!isfinite(e->values[j]) || e->values[j] < 0)
                return lb_err_set(err, LB_ERR_FORMAT, "%s: entry %s: value %d is negative or not finite", path, e->name, j);
        }
        c.p += 4 * (size_t)nval;
    }
    int32_t chunks, len;
    if (read_i32(&c, &chunks) && chunks > 0) m->chunks = chunks;
    if (read_i32(&c, &len) && len > 0 && len <= MAX_NAME && c.end - c.p >= len && (m->dataset = malloc((size_t)len + 1))) {
        memcpy(m->dataset, c.p, (size_t)len);
        m->dataset[len] = 0;
    }
    return LB_OK;
}

static lb_status load_gguf(const char *path, lb_imatrix *m, lb_error *err) {
    gguf_file *g = NULL;
    lb_status s = gguf_open(path, &g, err);
    if (s != LB_OK) return s;
    m->entries = calloc((size_t)g->n_tensors + 1, sizeof *m->entries);
    if (!m->entries) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    int64_t chunks = 0;
    if (gguf_get_int(g, "imatrix.chunk_count", &chunks)) m->chunks = chunks;
    for (int64_t i = 0; s == LB_OK && i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        size_t nl = strlen(t->name);
        if (nl < 8 || strcmp(t->name + nl - 8, ".in_sum2") != 0) continue;
        char cname[GGUF_MAX_NAME + 8];
        snprintf(cname, sizeof cname, "%.*s.counts", (int)(nl - 8), t->name);
        const gguf_tensor *ct = gguf_find_tensor(g, cname);
        /* in_sum2 is [ne0, n_mat] and counts one value per matrix: E[x^2] of element j divides by counts[j / ne0] */
        if (t->n_dims > 2 || t->ne[0] <= 0)
            s = lb_err_set(err, LB_ERR_FORMAT, "%s: %s has %d dimensions or is empty (an importance matrix tensor has 1 or 2)",
                           path, t->name, t->n_dims);
        else if (t->type != LB_TYPE_F32 || !ct || ct->type != LB_TYPE_F32 || ct->n_elements != t->n_elements / t->ne[0])
            s = lb_err_set(err, LB_ERR_FORMAT, "%s: %s has no matching f32 .counts tensor", path, t->name);
        if (s == LB_OK) s = add_entry(m, t->name, nl - 8, t->n_elements, err);
        if (s != LB_OK) break;
        lb_imatrix_entry *e = &m->entries[m->n_entries - 1];
        for (int64_t j = 0; s == LB_OK && j < t->n_elements; j++) {
            float v, cnt;
            memcpy(&v, t->data + 4 * (size_t)j, 4);
            memcpy(&cnt, ct->data + 4 * (size_t)(j / t->ne[0]), 4);
            e->values[j] = cnt > 0 ? v / cnt : 1.0f;
            if (s == LB_OK && (!isfinite(e->values[j]) || e->values[j] < 0))
                s = lb_err_set(err, LB_ERR_FORMAT, "%s: %s: value %lld is negative or not finite", path, e->name, (long long)j);
        }
    }
    if (s == LB_OK && m->n_entries == 0) s = lb_err_set(err, LB_ERR_FORMAT, "%s: a GGUF file without imatrix tensors", path);
    gguf_close(g);
    return s;
}

lb_status lb_imatrix_load(const char *path, lb_imatrix **out, lb_error *err) {
    lb_mmap map = {0};
    lb_status s = lb_mmap_open(path, &map, err);
    if (s != LB_OK) return s;
    lb_imatrix *m = calloc(1, sizeof *m);
    if (!m) s = lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    else if (map.size == 0) s = lb_err_set(err, LB_ERR_FORMAT, "%s: the importance matrix file is empty", path);
    else if (map.size >= 4 && memcmp(map.data, "GGUF", 4) == 0) s = load_gguf(path, m, err);
    else s = load_dat(path, &map, m, err);
    lb_mmap_close(&map);
    if (s != LB_OK) {
        lb_imatrix_free(m);
        return s;
    }
    *out = m;
    return LB_OK;
}

void lb_imatrix_free(lb_imatrix *m) {
    if (!m) return;
    for (int64_t i = 0; i < m->n_entries; i++) {
        free(m->entries[i].name);
        free(m->entries[i].values);
    }
    free(m->entries);
    free(m->dataset);
    free(m);
}

const lb_imatrix_entry *lb_imatrix_find(const lb_imatrix *m, const char *name) {
    for (int64_t i = 0; m && i < m->n_entries; i++)
        if (strcmp(m->entries[i].name, name) == 0) return &m->entries[i];
    return NULL;
}
