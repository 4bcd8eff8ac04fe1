/*
 * safetensors_write.c - streamed writing of one safetensors file (layout in safetensors.h): the header
 * (every tensor's dtype, shape and data offsets, known up front from the shapes) is written first, then
 * each tensor row by row from a caller's fill function, so memory stays at one row. The file goes to the
 * path the caller names; making it appear atomically (temporary name, rename) is the caller's business.
 * Bytes only, no math.
 */
#include "safetensors_write.h"

#include "../core/json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* safetensors pads the header with spaces so that the data section starts 8-byte aligned */
#define ST_HEADER_ALIGN 8

/* the JSON header without its padding, into a memory buffer */
static lb_status header_json(const st_out_tensor *t, int64_t n, char **out, size_t *len, lb_error *err) {
    char *buf = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    if (!f) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    bool ok = fputs("{\"__metadata__\":{\"format\":\"pt\"}", f) >= 0;
    size_t off = 0;
    for (int64_t i = 0; ok && i < n; i++) {
        size_t bytes = st_dtype_size(t[i].dtype);
        for (int d = 0; d < t[i].n_dims; d++)
            if (t[i].shape[d] < 0 || !lb_mul_size(bytes, (size_t)t[i].shape[d], &bytes)) ok = false;
        size_t end;
        if (!ok || !lb_add_size(off, bytes, &end)) {
            fclose(f);
            free(buf);
            return lb_err_set(err, LB_ERR_ARG, "tensor %s: size overflows", t[i].name);
        }
        ok = fputc(',', f) != EOF && json_write_str(f, t[i].name, strlen(t[i].name)) &&
             fprintf(f, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t[i].dtype)) > 0;
        for (int d = 0; ok && d < t[i].n_dims; d++) ok = fprintf(f, "%s%lld", d ? "," : "", (long long)t[i].shape[d]) > 0;
        ok = ok && fprintf(f, "],\"data_offsets\":[%zu,%zu]}", off, end) > 0;
        off = end;
    }
    ok = ok && fputc('}', f) != EOF;
    if (fclose(f) != 0 || !ok) {
        free(buf);
        return lb_err_set(err, LB_ERR_NOMEM, "out of memory writing the safetensors header");
    }
    *out = buf;
    *len = blen;
    return LB_OK;
}

lb_status st_write(const char *path, const st_out_tensor *t, int64_t n, st_fill_fn fill, void *user, lb_error *err) {
    if (!path || (!t && n) || n < 0 || !fill) return lb_err_set(err, LB_ERR_ARG, "st_write: bad argument");
    for (int64_t i = 0; i < n; i++)
        if (!t[i].name || t[i].n_dims < 1 || t[i].n_dims > ST_MAX_DIMS || !st_dtype_size(t[i].dtype))
            return lb_err_set(err, LB_ERR_ARG, "st_write: tensor %lld is malformed", (long long)i);
    char *hdr = NULL;
    size_t hlen = 0;
    lb_status s = header_json(t, n, &hdr, &hlen, err);
    if (s != LB_OK) return s;
    size_t padded = (hlen + 8 + ST_HEADER_ALIGN - 1) / ST_HEADER_ALIGN * ST_HEADER_ALIGN - 8;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(hdr);
        return lb_err_set(err, LB_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    uint8_t le[8];
    for (int k = 0; k < 8; k++) le[k] = (uint8_t)((uint64_t)padded >> (8 * k));
    bool ok = fwrite(le, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
    for (size_t k = hlen; ok && k < padded; k++) ok = fputc(' ', f) != EOF;
    free(hdr);
    uint8_t *row = NULL;
    size_t row_cap = 0;
    for (int64_t i = 0; ok && s == LB_OK && i < n; i++) {
        int64_t rows = 1, cols = t[i].shape[t[i].n_dims - 1];
        for (int d = 0; d + 1 < t[i].n_dims; d++) rows *= t[i].shape[d];
        size_t rb = (size_t)cols * st_dtype_size(t[i].dtype);
        if (rb > row_cap) {
            uint8_t *nr = realloc(row, rb ? rb : 1);
            if (!nr) { s = lb_err_set(err, LB_ERR_NOMEM, "out of memory"); break; }
            row = nr;
            row_cap = rb;
        }
        for (int64_t r = 0; ok && r < rows; r++) {
            if ((s = fill(user, i, r, row, err)) != LB_OK) break;
            ok = fwrite(row, 1, rb, f) == rb;
        }
    }
    free(row);
    int e = errno;
    if (fclose(f) != 0 && ok) { ok = false; e = errno; }
    if (s != LB_OK) return s;
    if (!ok) return lb_err_set(err, LB_ERR_IO, "%s: write failed: %s", path, strerror(e));
    return LB_OK;
}
