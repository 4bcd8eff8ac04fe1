/*
 * fuzz_safetensors.c - fuzz target for the safetensors reader (and, on the same bytes, the config.json
 * parser). Each input is written to a temporary file and opened with st_open(); on success every
 * tensor's bytes are read so that ASan catches a view reaching past its mapping.
 *
 * Built with -DLB_LIBFUZZER it is a libFuzzer target (LLVMFuzzerTestOneInput). Otherwise it has a
 * main() that runs a deterministic mutation loop over built-in seed files:
 *     fuzz_safetensors [iterations (default 20000)] [seed (default 1)]
 * See tests/fuzz/README.md for the commands.
 */
#include "io/hf_config.h"
#include "io/safetensors.h"

#define FUZZ_OWN_MAIN
#include "fuzz_common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("model.safetensors", data, size);
    st_file *f = NULL;
    lb_error err;
    if (st_open(path, &f, &err) == LB_OK) {
        volatile uint8_t sink = 0;
        for (int64_t i = 0; i < f->n_tensors; i++) {
            const st_tensor *t = &f->tensors[i];
            for (size_t j = 0; j < t->n_bytes; j++) sink ^= t->data[j];
            if (st_find(f, t->name) == NULL) abort(); /* every tensor must be findable */
            if (t->shard < 0 || t->shard >= f->n_shards) abort();
        }
        (void)sink;
        st_close(f);
    }
    lb_model_info info;
    hf_config_parse((const char *)data, size, &info, &err);
    return 0;
}

#ifndef LB_LIBFUZZER

static const char *const seed_headers[] = {
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
    "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]},"
    "\"c\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[24,26]}}",
    "{\"x\":{\"dtype\":\"I32\",\"shape\":[1,1,2],\"data_offsets\":[0,8]},"
    "\"y\":{\"dtype\":\"U8\",\"shape\":[0,7],\"data_offsets\":[8,8]},"
    "\"z\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[8,24]}}  ",
    "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":32,\"hidden_size\":8,\"num_hidden_layers\":1,"
    "\"num_attention_heads\":2,\"intermediate_size\":16,\"rope_parameters\":{\"rope_type\":\"llama3\","
    "\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4,\"original_max_position_embeddings\":64}}",
};

static const char *const tokens[] = {"\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"F16\"", "\"F8_E5M2\"",
                                     "[", "]", "{", "}", ",", ":", "-1", "0", "18446744073709551615",
                                     "9223372036854775807", "4611686018427387904", "1e308", "null",
                                     "\"__metadata__\"", "\"\\u0000\"", "[0,0]", "[24,12]", "1.5"};

/* Mutate the header text in place (buffer of capacity cap), return its new length. */
static size_t mutate_text(char *h, size_t len, size_t cap) {
    int n = 1 + (int)fuzz_below(4);
    for (int k = 0; k < n; k++) {
        size_t pos = fuzz_below(len + 1);
        switch (fuzz_below(6)) {
        case 0: /* flip a bit */
            if (len) h[fuzz_below(len)] ^= (char)(1u << fuzz_below(8));
            break;
        case 1: /* change a digit */
            for (size_t i = 0; i < len; i++) {
                size_t j = (pos + i) % len;
                if (h[j] >= '0' && h[j] <= '9') {
                    h[j] = (char)('0' + fuzz_below(10));
                    break;
                }
            }
            break;
        case 2: /* delete a span */
            if (len) {
                size_t d = 1 + fuzz_below(len - pos < 16 ? len - pos + 1 : 16);
                if (pos + d > len) d = len - pos;
                memmove(h + pos, h + pos + d, len - pos - d);
                len -= d;
            }
            break;
        case 3: { /* insert a token */
            const char *t = tokens[fuzz_below(sizeof tokens / sizeof tokens[0])];
            size_t tl = strlen(t);
            if (len + tl <= cap) {
                memmove(h + pos + tl, h + pos, len - pos);
                memcpy(h + pos, t, tl);
                len += tl;
            }
            break;
        }
        case 4: /* duplicate a span */
            if (len) {
                size_t a = fuzz_below(len), d = 1 + fuzz_below(32);
                if (a + d > len) d = len - a;
                if (len + d <= cap) {
                    char tmp[32];
                    memcpy(tmp, h + a, d);
                    memmove(h + pos + d, h + pos, len - pos);
                    memcpy(h + pos, tmp, d);
                    len += d;
                }
            }
            break;
        default: /* random byte */
            if (len) h[fuzz_below(len)] = (char)fuzz_rnd();
            break;
        }
    }
    return len;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000;
    fuzz_seed_rng(argc > 2 ? strtoull(argv[2], NULL, 10) : 1);
    enum { CAP = 4096 };
    char *h = malloc(CAP);
    uint8_t *file = malloc(8 + CAP + 64);
    if (!h || !file) return 1;
    size_t n_seeds = sizeof seed_headers / sizeof seed_headers[0];
    for (long it = 0; it < iters; it++) {
        const char *seed = seed_headers[(size_t)it % n_seeds];
        size_t len = strlen(seed);
        memcpy(h, seed, len);
        if (it >= (long)n_seeds) len = mutate_text(h, len, CAP);
        size_t data_len = fuzz_below(40);
        uint64_t hl = len;
        if (fuzz_below(8) == 0) hl = fuzz_rnd(); /* an arbitrary header length now and then */
        for (int i = 0; i < 8; i++) file[i] = (uint8_t)(hl >> (8 * i));
        memcpy(file + 8, h, len);
        for (size_t i = 0; i < data_len; i++) file[8 + len + i] = (uint8_t)fuzz_rnd();
        size_t size = 8 + len + data_len;
        if (fuzz_below(16) == 0) size = fuzz_below(size + 1); /* truncate */
        if (fuzz_below(16) == 0 && size) file[fuzz_below(size)] ^= 0x80; /* raw byte damage */
        LLVMFuzzerTestOneInput(file, size);
        /* the text alone too, as a config.json */
        hf_config_parse(h, len, &(lb_model_info){0}, NULL);
    }
    free(h);
    free(file);
    printf("fuzz_safetensors: %ld iterations without a crash\n", iters);
    return 0;
}

#endif
