/*
 * safetensors.h - memory-mapped reading of safetensors checkpoints, single file or sharded through
 * model.safetensors.index.json. Bytes only, no math.
 *
 * Format (https://github.com/huggingface/safetensors): u64 LE header length N, N bytes of JSON
 * {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data section; offsets are relative to the data section's start (8 + N).
 * Everything is validated before use: header length against file size, JSON, dtype names, shape
 * products x dtype size == end - begin (overflow-checked), offsets within the data section, no two
 * tensors overlapping, unique names across shards, every shard named by the index present and every
 * tensor the index names found in its shard.
 */
#ifndef LB_SAFETENSORS_H
#define LB_SAFETENSORS_H

#include "../core/core.h"

typedef enum st_dtype {
    ST_BOOL, ST_U8, ST_I8, ST_U16, ST_I16, ST_U32, ST_I32, ST_U64, ST_I64,
    ST_F16, ST_BF16, ST_F32, ST_F64, ST_F8_E4M3, ST_F8_E5M2,
    ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype d); /* "F16" etc. */
size_t st_dtype_size(st_dtype d);      /* bytes per element */

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    int64_t n_elements;
    const uint8_t *data; /* into the mapped shard */
    size_t n_bytes;
    int shard;           /* index into st_file's shards */
} st_tensor;

typedef struct st_file {
    int n_shards;
    lb_mmap *shards;
    char **shard_paths;
    int64_t n_tensors;
    st_tensor *tensors;  /* in header order, shard by shard (shards in file-name order) */
    int64_t *by_name;    /* private: tensor indices sorted by name, for st_find */
} st_file;

/*
 * Open `path`: a .safetensors file, a model.safetensors.index.json, or a directory holding one of them
 * (the index is preferred when both exist). Errors name the file and the offending tensor.
 */
lb_status st_open(const char *path, st_file **out, lb_error *err);
void st_close(st_file *f);
/* The tensor called name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);

#endif
