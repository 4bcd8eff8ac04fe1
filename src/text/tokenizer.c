/*
 * tokenizer.c - lb_tokenizer_load, the way in: a GGUF file (its tokenizer.ggml.* metadata,
 * tokenizer_gguf.c) or a Hugging Face tokenizer.json (tokenizer_json.c).
 */
#include "tokenizer_impl.h"

#include "../io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* Whether the file starts with the GGUF magic. */
static bool is_gguf(const char *path) { /* a map: opening a FIFO must not block */
    lb_mmap map = {0};
    bool yes = lb_mmap_open(path, &map, NULL) == LB_OK && map.size >= 4 && memcmp(map.data, "GGUF", 4) == 0;
    lb_mmap_close(&map);
    return yes;
}

static lb_status load_gguf(const char *file, lb_tokenizer **out, lb_error *err) {
    gguf_file *f = NULL;
    lb_status st = gguf_open(file, &f, err);
    if (st) return st;
    st = lb_tokenizer_from_gguf(f, out, err);
    gguf_close(f);
    return st;
}

lb_status lb_tokenizer_load(const char *path, lb_tokenizer **out, lb_error *err) {
    if (!path || !out) return lb_err_set(err, LB_ERR_ARG, "lb_tokenizer_load: path and out must not be NULL");
    bool dir = lb_path_is_dir(path);
    if (!dir && is_gguf(path)) return load_gguf(path, out, err);
    char *file = dir ? lb_path_join(path, "tokenizer.json") : strdup(path);
    if (!file) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    lb_status st = tok_load_json(file, out, err);
    free(file);
    return st;
}