/*
 * fuzz_gguf.c - fuzz target for the GGUF reader and, on what it accepts, the writer. Each input is
 * opened with gguf_open_memory() (an exact-size buffer, so ASan sees any over-read); on success every
 * getter runs over every KV, every tensor's bytes are read, and the file is rewritten with
 * gguf_writer and read back, which must give the same metadata and tensor bytes.
 *
 * Built with -DLB_LIBFUZZER it is a libFuzzer target (LLVMFuzzerTestOneInput). Otherwise it has a
 * main() that runs a deterministic mutation loop over seed files made with the writer:
 *     fuzz_gguf [iterations (default 20000)] [seed (default 1)]
 * See tests/fuzz/README.md for the commands.
 */
#include "io/gguf.h"

#define FUZZ_OWN_MAIN
#include "fuzz_common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The writer's output (in the scratch directory: tmpfs when there is one, where fsync is cheap). */
static const char *scratch_path(void) {
    static char p[128];
    if (!p[0]) snprintf(p, sizeof p, "%s/out.gguf", fuzz_dir());
    return p;
}

static void check(bool ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_gguf: invariant broken: %s\n", what);
        abort();
    }
}

static void exercise_kv(const gguf_file *f, const gguf_kv *kv) {
    int64_t i64;
    double d;
    bool b;
    size_t len;
    check(gguf_find_kv(f, kv->key) == kv, "every key is found");
    gguf_kv_int(kv, &i64);
    gguf_kv_float(kv, &d);
    gguf_kv_bool(kv, &b);
    const char *s = gguf_kv_str(kv, &len);
    volatile char sink = 0;
    if (s && len) sink ^= s[len - 1];
    uint64_t n = gguf_arr_n(kv);
    for (uint64_t j = 0; j < n; j = j < 16 ? j + 1 : j * 2 + 1) {
        gguf_get_arr_int(kv, j, &i64);
        gguf_get_arr_float(kv, j, &d);
        s = gguf_get_arr_str(kv, j, &len);
        if (s && len) sink ^= s[len - 1];
    }
    if (n) gguf_get_arr_str(kv, n - 1, &len);
    check(!gguf_get_arr_int(kv, n, &i64) && !gguf_get_arr_str(kv, n, &len), "no element past the end");
    (void)sink;
}

static void exercise(const gguf_file *f) {
    for (int64_t i = 0; i < f->n_kv; i++) exercise_kv(f, &f->kvs[i]);
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        check(gguf_find_tensor(f, t->name) == t, "every tensor is found");
        check(t->data >= f->map.data && (size_t)(t->data - f->map.data) + t->n_bytes <= f->map.size, "data inside");
        for (size_t j = 0; j < t->n_bytes; j++) sink ^= t->data[j];
    }
    (void)sink;
}

/* Write f again and check the copy reads back the same. Skips what the writer rightly refuses. */
static void rewrite(const gguf_file *f) {
    for (int64_t i = 0; i < f->n_kv; i++)
        if (strlen(f->kvs[i].key) > 65535) return;
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (!f->tensors[i].name[0]) return;
    const char *path = scratch_path();
    gguf_writer *w = NULL;
    lb_error err;
    if (gguf_writer_open(path, &w, &err) != LB_OK) return; /* e.g. a stale file: not the code under test */
    lb_status s = LB_OK;
    for (int64_t i = 0; i < f->n_kv && s == LB_OK; i++) s = gguf_writer_set_kv(w, &f->kvs[i], &err);
    for (int64_t i = 0; i < f->n_tensors && s == LB_OK; i++) {
        const gguf_tensor *t = &f->tensors[i];
        s = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, &err);
    }
    if (s == LB_OK) s = gguf_writer_begin_data(w, &err);
    for (int64_t i = 0; i < f->n_tensors && s == LB_OK; i++)
        s = gguf_writer_write_tensor(w, i, f->tensors[i].data, f->tensors[i].n_bytes, &err);
    s = s == LB_OK ? gguf_writer_finish(w, &err) : (gguf_writer_abort(w), s);
    check(s == LB_OK, "the writer takes what the reader accepted");
    gguf_file *g = NULL;
    check(gguf_open(path, &g, &err) == LB_OK, "the rewrite reads back");
    check(g->n_kv == f->n_kv && g->n_tensors == f->n_tensors && g->ggml_layout, "same counts");
    for (int64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *a = &f->kvs[i], *b = &g->kvs[i];
        check(strcmp(a->key, b->key) == 0 && a->type == b->type && a->n == b->n && a->str_len == b->str_len, "same KV");
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *a = &f->tensors[i], *b = &g->tensors[i];
        check(strcmp(a->name, b->name) == 0 && a->type == b->type && a->n_bytes == b->n_bytes &&
              memcmp(a->ne, b->ne, sizeof a->ne) == 0 && (a->n_bytes == 0 || memcmp(a->data, b->data, a->n_bytes) == 0),
              "same tensor");
    }
    gguf_close(g);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = NULL;
    lb_error err;
    if (gguf_open_memory(data, size, "fuzz.gguf", &f, &err) == LB_OK) {
        exercise(f);
        rewrite(f);
        gguf_close(f);
    }
    return 0;
}

#ifndef LB_LIBFUZZER

static const char *seed_str(void *user, uint64_t i, size_t *len) {
    static const char *const s[] = {"<s>", "", "\xc4\xa0the", "a b"};
    (void)user;
    *len = strlen(s[i % 4]);
    return s[i % 4];
}

/* Seed files made with the writer, read back into memory. */
static uint8_t *make_seed(int kind, size_t *len) {
    const char *path = scratch_path();
    gguf_writer *w = NULL;
    lb_error err;
    if (gguf_writer_open(path, &w, &err) != LB_OK) return NULL;
    static const int32_t i32[] = {1, 2, 3, -4};
    static const float f32[] = {0.5f, 2.0f};
    static const uint8_t bools[] = {1, 0};
    static const uint8_t block[512];
    gguf_writer_set_str(w, "general.architecture", "llama", 5, &err);
    gguf_writer_set_u32(w, "llama.block_count", 2, &err);
    gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f, &err);
    gguf_writer_set_arr_str_fn(w, "tokenizer.ggml.tokens", kind == 2 ? 9 : 4, seed_str, NULL, &err);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, i32, 4, &err);
    if (kind == 1) {
        gguf_writer_set_u32(w, GGUF_KEY_ALIGNMENT, 64, &err);
        gguf_writer_set_arr(w, "x.f32", GGUF_VT_F32, f32, 2, &err);
        gguf_writer_set_bool(w, "x.bool", true, &err);
        gguf_writer_set_u64(w, "x.u64", 1ull << 40, &err);
    } else {
        gguf_writer_set_arr(w, "x.bools", GGUF_VT_BOOL, bools, 2, &err);
        gguf_writer_set_i8(w, "x.i8", -1, &err);
        gguf_writer_set_f64(w, "x.f64", 0.25, &err);
    }
    if (kind != 2) {
        gguf_writer_add_tensor(w, "token_embd.weight", LB_TYPE_F32, 2, (int64_t[]){4, 3}, &err);
        gguf_writer_add_tensor(w, "blk.0.attn_q.weight", kind ? LB_TYPE_Q4_K : LB_TYPE_Q8_0, 2,
                               (int64_t[]){kind ? 256 : 32, 1}, &err);
        gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", LB_TYPE_F16, 4, (int64_t[]){2, 1, 2, 1}, &err);
        gguf_writer_begin_data(w, &err);
        for (int64_t i = 0; i < 3; i++) gguf_writer_write_tensor(w, i, block, gguf_writer_tensor_bytes(w, i), &err);
    }
    if (gguf_writer_finish(w, &err) != LB_OK) return NULL;
    char *d = NULL;
    lb_status s = lb_read_file(path, 1 << 20, &d, len, &err);
    unlink(path);
    return s == LB_OK ? (uint8_t *)d : NULL;
}

static uint64_t interesting(size_t size, size_t pos) {
    static const uint64_t v[] = {0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 31, 32, 33, 63, 64, 255, 256, 0x7fffffff,
                                 0xffffffff, 1ull << 32, 1ull << 62, 1ull << 63, UINT64_MAX, INT64_MAX};
    size_t k = fuzz_below(sizeof v / sizeof v[0] + 2);
    if (k == sizeof v / sizeof v[0]) return size;
    if (k > sizeof v / sizeof v[0]) return size - pos;
    return v[k];
}

/* Mutate buf (length *len, capacity cap) in place. */
static void mutate(uint8_t *buf, size_t *len, size_t cap) {
    int n = 1 + (int)fuzz_below(3);
    for (int k = 0; k < n && *len > 0; k++) {
        size_t pos = fuzz_below(*len);
        switch (fuzz_below(6)) {
        case 0: buf[pos] ^= (uint8_t)(1u << fuzz_below(8)); break;
        case 1: buf[pos] = (uint8_t)fuzz_rnd(); break;
        case 2: { /* an interesting u32 or u64 */
            uint64_t v = interesting(*len, pos);
            size_t w = fuzz_below(2) ? 4 : 8;
            for (size_t i = 0; i < w && pos + i < *len; i++) buf[pos + i] = (uint8_t)(v >> (8 * i));
            break;
        }
        case 3: { /* delete a span */
            size_t d = 1 + fuzz_below(16);
            if (pos + d > *len) d = *len - pos;
            memmove(buf + pos, buf + pos + d, *len - pos - d);
            *len -= d;
            break;
        }
        case 4: { /* duplicate a span */
            size_t a = fuzz_below(*len), d = 1 + fuzz_below(32);
            if (a + d > *len) d = *len - a;
            if (*len + d <= cap) {
                uint8_t tmp[32];
                memcpy(tmp, buf + a, d);
                memmove(buf + pos + d, buf + pos, *len - pos);
                memcpy(buf + pos, tmp, d);
                *len += d;
            }
            break;
        }
        default: *len = fuzz_below(*len + 1); break; /* truncate */
        }
    }
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000;
    fuzz_seed_rng(argc > 2 ? strtoull(argv[2], NULL, 10) : 1);
    enum { N_SEEDS = 3, CAP = 1 << 16 };
    uint8_t *seeds[N_SEEDS];
    size_t seed_len[N_SEEDS];
    for (int i = 0; i < N_SEEDS; i++) {
        seeds[i] = make_seed(i, &seed_len[i]);
        if (!seeds[i] || seed_len[i] > CAP) {
            fprintf(stderr, "fuzz_gguf: cannot make seed %d\n", i);
            return 1;
        }
    }
    uint8_t *buf = malloc(CAP);
    if (!buf) return 1;
    for (long it = 0; it < iters; it++) {
        int k = (int)(it % N_SEEDS);
        size_t len = seed_len[k];
        memcpy(buf, seeds[k], len);
        if (it >= N_SEEDS) mutate(buf, &len, CAP);
        uint8_t *exact = malloc(len ? len : 1); /* exact size: ASan catches any read past the input */
        if (!exact) return 1;
        memcpy(exact, buf, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    for (int i = 0; i < N_SEEDS; i++) free(seeds[i]);
    free(buf);
    printf("fuzz_gguf: %ld iterations without a crash\n", iters);
    return 0;
}

#endif
