/*
 * synth_checkpoint.c - writes a synthetic Hugging Face Llama checkpoint (config.json, bf16 weights drawn
 * from N(0, 0.02^2) with norms at 1 in model.safetensors or in shards with model.safetensors.index.json,
 * and a copy of a given tokenizer.json) for memory and speed benchmarks. Shapes:
 *   llama3.2-1b (default): Llama-3.2-1B's (hidden 2048, 16 layers, ffn 8192, 32 heads / 8 KV heads,
 *                          head_dim 64) with an 8192-token vocabulary: about 1.0e9 parameters, 2.0 GB;
 *   tinyllama:             TinyLlama-1.1B's (hidden 2048, 22 layers, ffn 5632, 32 heads / 4 KV heads,
 *                          head_dim 64, vocabulary 32000): about 1.1e9 parameters, 2.2 GB;
 *   mid:                   half TinyLlama's width (hidden 1024, 24 layers, ffn 2816, 16 heads / 4 KV
 *                          heads, head_dim 64, vocabulary 8192): about 2.9e8 parameters, 0.57 GB;
 *   llama3-8b:             Llama-3-8B's (hidden 4096, 32 layers, ffn 14336, 32 heads / 8 KV heads, head_dim
 *                          128, vocabulary 128256, rope theta 500000): about 8.0e9 parameters, 16.1 GB. Its
 *                          rows are windows at random offsets of one pool of 2^24 N(0, 0.02^2) values (the
 *                          same distribution, written at disk speed), for the GPU speed benchmarks;
 *   llama3-70b:            Llama-3-70B's (hidden 8192, 80 layers, ffn 28672, 64 heads / 8 KV heads, head_dim
 *                          128, vocabulary 128256): 1.7 GB of bf16 per layer, 4.2 GB for the embedding and
 *                          the head; pooled like llama3-8b. Give a few layers (n_layer) to time per layer;
 *   llama3-405b:           Llama-3.1-405B's (hidden 16384, 126 layers, ffn 53248, 128 heads / 8 KV heads,
 *                          head_dim 128, vocabulary 128256): 6.5 GB per layer, 8.4 GB for the embedding and
 *                          the head; pooled.
 * The tokenizer may have fewer tokens than the vocabulary (the rest are padding rows).
 *
 * --vocab N replaces the shape's vocabulary size (Llama-3.2-1B's own is 128256).
 *
 * usage: synth_checkpoint OUT_DIR TOKENIZER_JSON [n_layer] [--shape NAME] [--shards N] [--vocab N]
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct shape { const char *name; int E, F, H, KV, D, V, L; double rope_theta; int pooled; } shape;
static const shape SHAPES[] = {
    {"llama3.2-1b", 2048, 8192, 32, 8, 64, 8192, 16, 500000.0, 0},
    {"tinyllama", 2048, 5632, 32, 4, 64, 32000, 22, 10000.0, 0},
    {"mid", 1024, 2816, 16, 4, 64, 8192, 24, 10000.0, 0},
    {"llama3-8b", 4096, 14336, 32, 8, 128, 128256, 32, 500000.0, 1},
    {"llama3-70b", 8192, 28672, 64, 8, 128, 128256, 80, 500000.0, 1},
    {"llama3-405b", 16384, 53248, 128, 8, 128, 128256, 126, 500000.0, 1},
};

#define POOL_BITS 24
static uint16_t *pool; /* 2^POOL_BITS bf16 N(0, 0.02^2) values plus one row of slack, for pooled shapes */

typedef struct tensor { char name[96]; int64_t rows, cols; int norm; } tensor;

static uint64_t rng = 0x12345678abcdefULL;
static double uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static float gauss(void) { return (float)(sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform())); }
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
static uint64_t tensor_bytes(const tensor *t) { return (uint64_t)t->rows * (uint64_t)(t->cols ? t->cols : 1) * 2; }

/* One safetensors file holding tensors [t0, t1). */
static int write_file(const char *path, const tensor *t, int t0, int t1, uint16_t *buf) {
    size_t cap = 1 << 20, len = 0;
    char *hdr = malloc(cap);
    uint64_t off = 0;
    len += (size_t)snprintf(hdr + len, cap - len, "{");
    for (int i = t0; i < t1; i++) {
        const uint64_t bytes = tensor_bytes(&t[i]);
        if (t[i].cols)
            len += (size_t)snprintf(hdr + len, cap - len, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%" PRId64 ",%" PRId64 "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                    i > t0 ? "," : "", t[i].name, t[i].rows, t[i].cols, off, off + bytes);
        else
            len += (size_t)snprintf(hdr + len, cap - len, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%" PRId64 "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                    i > t0 ? "," : "", t[i].name, t[i].rows, off, off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while ((len + 8) % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, len, f);
    free(hdr);
    for (int i = t0; i < t1; i++) {
        int64_t cols = t[i].cols ? t[i].cols : t[i].rows, rows = t[i].cols ? t[i].rows : 1;
        for (int64_t r = 0; r < rows; r++) {
            const uint16_t *src = buf;
            if (pool && !t[i].norm) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                src = pool + (rng >> (64 - POOL_BITS));
            } else {
                for (int64_t c = 0; c < cols; c++) buf[c] = t[i].norm ? to_bf16(1.0f) : to_bf16(0.02f * gauss());
            }
            if (fwrite(src, 2, (size_t)cols, f) != (size_t)cols) {
                fprintf(stderr, "%s: write failed: %s\n", path, strerror(errno));
                return 1;
            }
        }
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const shape *sh = &SHAPES[0];
    int n_layer = -1, shards = 1, pos = 0, vocab = 0;
    const char *out = NULL, *tok = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            const char *nm = argv[++i];
            sh = NULL;
            for (size_t k = 0; k < sizeof SHAPES / sizeof *SHAPES; k++)
                if (!strcmp(nm, SHAPES[k].name)) sh = &SHAPES[k];
            if (!sh) {
                fprintf(stderr, "unknown shape %s (llama3.2-1b, tinyllama, mid, llama3-8b, llama3-70b, llama3-405b)\n", nm);
                return 2;
            }
        } else if (!strcmp(argv[i], "--shards") && i + 1 < argc) {
            shards = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) {
            vocab = atoi(argv[++i]);
        } else if (pos == 0) out = argv[i], pos++;
        else if (pos == 1) tok = argv[i], pos++;
        else if (pos == 2) n_layer = atoi(argv[i]), pos++;
        else pos = 99;
    }
    if (!out || !tok || pos > 3 || shards < 1 || shards > 99 || vocab < 0 || vocab > (1 << 20)) {
        fprintf(stderr, "usage: %s OUT_DIR TOKENIZER_JSON [n_layer] [--shape llama3.2-1b|tinyllama|mid|llama3-8b|llama3-70b|llama3-405b] [--shards N] [--vocab N]\n", argv[0]);
        return 2;
    }
    if (n_layer < 0) n_layer = sh->L;
    const int E = sh->E, F = sh->F, H = sh->H, KV = sh->KV, D = sh->D, V = vocab > 0 ? vocab : sh->V;
    mkdir(out, 0755);
    tensor *t = calloc((size_t)(4 + 9 * n_layer), sizeof *t);
    int n = 0;
    snprintf(t[n].name, 96, "model.embed_tokens.weight"), t[n].rows = V, t[n++].cols = E;
    for (int l = 0; l < n_layer; l++) {
        struct { const char *nm; int64_t r, c; int norm; } L[] = {
            {"input_layernorm", E, 0, 1}, {"self_attn.q_proj", H * D, E, 0}, {"self_attn.k_proj", KV * D, E, 0},
            {"self_attn.v_proj", KV * D, E, 0}, {"self_attn.o_proj", E, H * D, 0}, {"post_attention_layernorm", E, 0, 1},
            {"mlp.gate_proj", F, E, 0}, {"mlp.up_proj", F, E, 0}, {"mlp.down_proj", E, F, 0},
        };
        for (int k = 0; k < 9; k++) {
            snprintf(t[n].name, 96, "model.layers.%d.%s.weight", l, L[k].nm);
            t[n].rows = L[k].r, t[n].cols = L[k].c, t[n++].norm = L[k].norm;
        }
    }
    snprintf(t[n].name, 96, "model.norm.weight"), t[n].rows = E, t[n++].norm = 1;
    snprintf(t[n].name, 96, "lm_head.weight"), t[n].rows = V, t[n++].cols = E;

    uint64_t total = 0;
    for (int i = 0; i < n; i++) total += tensor_bytes(&t[i]);
    int wide = E > F ? E : F;
    uint16_t *buf = malloc((size_t)(wide > H * D ? wide : H * D) * 2);
    if (sh->pooled) {
        size_t np = ((size_t)1 << POOL_BITS) + (size_t)(wide > H * D ? wide : H * D);
        pool = malloc(np * 2);
        for (size_t i = 0; i < np; i++) pool[i] = to_bf16(0.02f * gauss());
    }
    char path[4096];
    if (shards == 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", out);
        if (write_file(path, t, 0, n, buf)) return 1;
    } else { /* shards of about total / shards bytes, whole tensors each, and the index */
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
        FILE *ix = fopen(path, "w");
        if (!ix) {
            fprintf(stderr, "%s: %s\n", path, strerror(errno));
            return 1;
        }
        fprintf(ix, "{\"metadata\": {\"total_size\": %" PRIu64 "}, \"weight_map\": {", total);
        uint64_t done = 0;
        for (int s = 0, t0 = 0; s < shards; s++) {
            int t1 = t0;
            while (t1 < n && (s == shards - 1 || t1 == t0 || done + tensor_bytes(&t[t1]) <= total * (uint64_t)(s + 1) / (uint64_t)shards))
                done += tensor_bytes(&t[t1++]);
            char name[64];
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, shards);
            for (int i = t0; i < t1; i++) fprintf(ix, "%s\"%s\": \"%s\"", i ? ", " : "", t[i].name, name);
            snprintf(path, sizeof path, "%s/%s", out, name);
            if (write_file(path, t, t0, t1, buf)) return 1;
            t0 = t1;
        }
        fprintf(ix, "}}\n");
        fclose(ix);
    }
    snprintf(path, sizeof path, "%s/config.json", out);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
               "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
               "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"max_position_embeddings\": 2048, "
               "\"rms_norm_eps\": 1e-05, \"rope_theta\": %.1f, \"hidden_act\": \"silu\", \"tie_word_embeddings\": false, "
               "\"bos_token_id\": 0, \"eos_token_id\": 0, \"torch_dtype\": \"bfloat16\"}\n",
            E, F, n_layer, H, KV, D, V, sh->rope_theta);
    fclose(f);
    snprintf(path, sizeof path, "cp '%s' '%s/tokenizer.json'", tok, out);
    if (system(path) != 0) return 1;
    printf("%s: %s shape, %d layers, %d tensors in %d file(s), %" PRIu64 " bytes of bf16 weights\n", out, sh->name,
           n_layer, n, shards, total);
    return 0;
}
