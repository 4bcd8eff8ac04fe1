/*
 * gguf.h - GGUF (v2 and v3) files: a memory-mapped, fully validated reader and a streamed writer.
 * Bytes only, no math.
 *
 * Format (docs/formats.md section 1; ggml docs/gguf.md and src/gguf.cpp): "GGUF", u32 version,
 * u64 tensor count, u64 KV count, the KV pairs (string key, u32 value type, value), the tensor infos
 * (string name, u32 n_dims, n_dims x u64 ne, u32 ggml type, u64 offset), zero padding to the alignment
 * (general.alignment, default 32), then the tensor data; each offset is relative to the data start.
 * All little-endian; strings are a u64 byte count then the bytes, with no NUL.
 *
 * The reader checks everything before use and holds the ggml reader's stricter rules: non-empty unique
 * keys, no nested arrays, general.alignment a u32 power of two, unique tensor names under 64 bytes,
 * 1..4 dims, ne[0] a multiple of the type's block, offsets aligned, data inside the file and tensors
 * not overlapping. It accepts any such layout; `ggml_layout` says whether the offsets are also the
 * running sums of the padded sizes that llama.cpp requires. ggml types lowbit has no row for
 * (lb_type_from_gguf_id() < 0), big-endian files and version 1 are LB_ERR_UNSUPPORTED.
 *
 * The writer streams: metadata goes to the file as it is set, tensor infos are kept (about 100 bytes
 * a tensor) until gguf_writer_begin_data(), then tensor data is written in declaration order. It
 * writes `<path>.lowbit-tmp` (an lb_outfile: locked, never replacing a non-regular file) and renames it
 * to `path` only in gguf_writer_finish(); any failure deletes
 * the temporary file, so no partial file ever appears at `path`. Its output is the layout llama.cpp
 * writes: offsets are running sums, every tensor (the last one included) is padded with zeros.
 */
#ifndef LB_GGUF_H
#define LB_GGUF_H

#include "../core/core.h"

#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64            /* tensor names are at most GGUF_MAX_NAME - 1 bytes */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_KEY_ALIGNMENT "general.alignment"

/* Metadata value types, with their ids in the file. */
typedef enum gguf_vtype {
    GGUF_VT_U8 = 0,
    GGUF_VT_I8 = 1,
    GGUF_VT_U16 = 2,
    GGUF_VT_I16 = 3,
    GGUF_VT_U32 = 4,
    GGUF_VT_I32 = 5,
    GGUF_VT_F32 = 6,
    GGUF_VT_BOOL = 7,   /* one byte, 0 or 1 */
    GGUF_VT_STR = 8,
    GGUF_VT_ARR = 9,
    GGUF_VT_U64 = 10,
    GGUF_VT_I64 = 11,
    GGUF_VT_F64 = 12,
    GGUF_VT_COUNT
} gguf_vtype;

/* "u8", "str", "arr", ...; "?" for an unknown value. */
const char *gguf_vtype_name(gguf_vtype t);
/* Bytes of one value of a fixed-size type; 0 for STR, ARR and unknown values. */
size_t gguf_vtype_size(gguf_vtype t);
/* ggml's name for a ggml type id ("q4_K", "iq2_xxs"), also for ids lowbit cannot handle; "?" if none. */
const char *gguf_ggml_type_name(int id);

/* ---- reader ---- */

/* One metadata pair. Everything points into the file's map. */
typedef struct gguf_kv {
    const char *key;        /* NUL-terminated copy owned by the gguf_file */
    gguf_vtype type;
    gguf_vtype arr_type;    /* element type when type == GGUF_VT_ARR (never ARR) */
    uint64_t n;             /* elements of an array; 1 for a scalar or a string */
    const uint8_t *data;    /* the scalar, the string's bytes, or the first array element (unaligned) */
    size_t str_len;         /* bytes of a STR value */
    const uint8_t **strs_;  /* private: where each element of a string array starts (its length) */
} gguf_kv;

typedef struct gguf_tensor {
    char name[GGUF_MAX_NAME];
    lb_type type;
    int ggml_type;          /* the id in the file */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* GGUF order: ne[0] is contiguous; unused dims are 1 */
    int64_t n_elements;
    size_t n_bytes;
    uint64_t offset;        /* relative to the data section */
    const uint8_t *data;    /* into the map; n_bytes bytes */
} gguf_tensor;

typedef struct gguf_file {
    char *path;
    lb_mmap map;
    bool owns_map_;         /* private: false for gguf_open_memory */
    uint32_t version;
    uint32_t alignment;     /* general.alignment or 32 */
    int64_t n_kv;
    gguf_kv *kvs;           /* in file order */
    int64_t n_tensors;
    gguf_tensor *tensors;   /* in file (info) order */
    size_t data_start;      /* file offset of the data section */
    bool ggml_layout;       /* offsets are the running sums llama.cpp requires */
    char *keys_;            /* private: the key strings */
    int64_t *kv_by_key_;    /* private: KV indices sorted by key */
    int64_t *tensor_by_name_; /* private: tensor indices sorted by name */
} gguf_file;

/*
 * Map and validate `path`. On failure *out is untouched and err names the file and the key or tensor
 * at fault: LB_ERR_IO (cannot open/map), LB_ERR_FORMAT (malformed), LB_ERR_UNSUPPORTED (version 1 or
 * newer than 3, big-endian, nested arrays, a ggml type lowbit lacks), LB_ERR_NOMEM.
 */
lb_status gguf_open(const char *path, gguf_file **out, lb_error *err);
/* The same over `size` bytes in memory, which must outlive the gguf_file; `name` is used in errors. */
lb_status gguf_open_memory(const void *data, size_t size, const char *name, gguf_file **out, lb_error *err);
void gguf_close(gguf_file *f);

/* The pair called key, or NULL. */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
/* The tensor called name, or NULL. */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/*
 * Typed reads of a scalar. Each returns false (and leaves *out alone) when the value has another type
 * or does not fit. int: any integer type (a u64 above INT64_MAX does not fit); float: F32 or F64;
 * bool: BOOL; str: STR, returning a pointer into the map that is NOT NUL-terminated, with *len bytes.
 * The gguf_get_* forms look the key up first (false / NULL when it is absent).
 */
bool gguf_kv_int(const gguf_kv *kv, int64_t *out);
bool gguf_kv_float(const gguf_kv *kv, double *out);
bool gguf_kv_bool(const gguf_kv *kv, bool *out);
const char *gguf_kv_str(const gguf_kv *kv, size_t *len);
bool gguf_get_int(const gguf_file *f, const char *key, int64_t *out);
bool gguf_get_float(const gguf_file *f, const char *key, double *out);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
const char *gguf_get_str(const gguf_file *f, const char *key, size_t *len);

/* Arrays: the element count and type (0 and GGUF_VT_COUNT when kv is not an array), and element i
 * (random access, also for strings). Out of range or the wrong type: NULL / false. arr_int accepts
 * integer and bool elements, arr_float F32 and F64. */
uint64_t gguf_arr_n(const gguf_kv *kv);
gguf_vtype gguf_arr_type(const gguf_kv *kv);
const char *gguf_get_arr_str(const gguf_kv *kv, uint64_t i, size_t *len);
bool gguf_get_arr_int(const gguf_kv *kv, uint64_t i, int64_t *out);
bool gguf_get_arr_float(const gguf_kv *kv, uint64_t i, double *out);

/* ---- writer ---- */

typedef struct gguf_writer gguf_writer;

/*
 * Start writing `path` (through `<path>.lowbit-tmp` in the same directory). Every later call fails once
 * one has failed: the first failure deletes the temporary file and later calls repeat its status and
 * message. Argument errors are LB_ERR_ARG, write errors (ENOSPC, EFBIG, EIO) LB_ERR_IO naming the path.
 * The handle is released by gguf_writer_finish() or gguf_writer_abort(), whatever happened.
 */
lb_status gguf_writer_open(const char *path, gguf_writer **out, lb_error *err);

/*
 * Metadata, written in call order, before gguf_writer_begin_data(). Keys must be non-empty, at most
 * 65535 bytes and unique. general.alignment must be a u32 power of two; it sets the data alignment.
 */
lb_status gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v, lb_error *err);
lb_status gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v, lb_error *err);
lb_status gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v, lb_error *err);
lb_status gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v, lb_error *err);
lb_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, lb_error *err);
lb_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, lb_error *err);
lb_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v, lb_error *err);
lb_status gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v, lb_error *err);
lb_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v, lb_error *err);
lb_status gguf_writer_set_f64(gguf_writer *w, const char *key, double v, lb_error *err);
lb_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, lb_error *err);
/* `len` bytes of s (any bytes; no NUL needed). */
lb_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *s, size_t len, lb_error *err);
/* n elements of a fixed-size type (not STR or ARR), little-endian in memory as in the file. */
lb_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype elem_type, const void *data,
                              uint64_t n, lb_error *err);
/* n strings; lens may be NULL, then each string is NUL-terminated. */
lb_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                                  uint64_t n, lb_error *err);
/* n strings produced one at a time (streamed): fn returns element i and its length, or NULL on error. */
typedef const char *(*gguf_str_fn)(void *user, uint64_t i, size_t *len);
lb_status gguf_writer_set_arr_str_fn(gguf_writer *w, const char *key, uint64_t n, gguf_str_fn fn, void *user,
                                     lb_error *err);
/* A copy of a pair read by gguf_open (any type), under its own key. */
lb_status gguf_writer_set_kv(gguf_writer *w, const gguf_kv *kv, lb_error *err);

/* Declare the next tensor: name under 64 bytes and unique, 1..4 dims, ne in GGUF order (ne[0]
 * contiguous, a multiple of the type's block). Before gguf_writer_begin_data(). */
lb_status gguf_writer_add_tensor(gguf_writer *w, const char *name, lb_type type, int n_dims, const int64_t *ne,
                                 lb_error *err);
/* Bytes tensor i takes (0 for an unknown index). */
size_t gguf_writer_tensor_bytes(const gguf_writer *w, int64_t i);

/* Write the header, the tensor infos and the padding up to the data section. */
lb_status gguf_writer_begin_data(gguf_writer *w, lb_error *err);
/* The data of tensor i, which must be the next one in declaration order, all n_bytes of it at once
 * (n_bytes must equal its size); the padding up to the alignment follows. */
lb_status gguf_writer_write_tensor(gguf_writer *w, int64_t i, const void *data, size_t n_bytes, lb_error *err);
/* The same in pieces: appends n bytes to tensor i (the next one); it is complete when all its bytes are in. */
lb_status gguf_writer_write_tensor_part(gguf_writer *w, int64_t i, const void *data, size_t n, lb_error *err);

/* Bytes of the file so far (all of it once every tensor is written). */
uint64_t gguf_writer_size(const gguf_writer *w);
/* Check every tensor was written (calling begin_data first if nobody did), flush, fsync, close and
 * rename to `path`. Releases w, on success and on failure (when the temporary file is deleted). */
lb_status gguf_writer_finish(gguf_writer *w, lb_error *err);
/* Delete the temporary file and release w. NULL is a no-op. */
void gguf_writer_abort(gguf_writer *w);

#endif
