/*
 * synth_checkpoint.c - writes a synthetic Hugging Face Llama checkpoint (config.json, model.safetensors
 * with bf16 weights drawn from N(0, 0.02^2), norms at 1, and a copy of a given tokenizer.json) for
 * memory and speed benchmarks. The default shape is Llama-3.2-1B's (hidden 2048, 16 layers, ffn 8192,
 * 32 heads / 8 KV heads, head_dim 64) with an 8192-token vocabulary: about 1.0e9 parameters, 2.0 GB.
 *
 * usage: synth_checkpoint OUT_DIR TOKENIZER_JSON [n_layer]
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define E 2048
#define F 8192
#define H 32
#define KV 8
#define D 64
#define V 8192

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

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s OUT_DIR TOKENIZER_JSON [n_layer]\n", argv[0]);
        return 2;
    }
    int n_layer = argc > 3 ? atoi(argv[3]) : 16;
    mkdir(argv[1], 0755);
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

    /* header */
    size_t cap = 1 << 20, len = 0;
    char *hdr = malloc(cap);
    uint64_t off = 0;
    len += (size_t)snprintf(hdr + len, cap - len, "{");
    for (int i = 0; i < n; i++) {
        uint64_t bytes = (uint64_t)t[i].rows * (uint64_t)(t[i].cols ? t[i].cols : 1) * 2;
        if (t[i].cols)
            len += (size_t)snprintf(hdr + len, cap - len, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%" PRId64 ",%" PRId64 "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                    i ? "," : "", t[i].name, t[i].rows, t[i].cols, off, off + bytes);
        else
            len += (size_t)snprintf(hdr + len, cap - len, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%" PRId64 "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                    i ? "," : "", t[i].name, t[i].rows, off, off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while ((len + 8) % 8) hdr[len++] = ' ';
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, len, f);
    uint16_t *buf = malloc((size_t)F * 2);
    for (int i = 0; i < n; i++) {
        int64_t cols = t[i].cols ? t[i].cols : t[i].rows, rows = t[i].cols ? t[i].rows : 1;
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) buf[c] = t[i].norm ? to_bf16(1.0f) : to_bf16(0.02f * gauss());
            if (fwrite(buf, 2, (size_t)cols, f) != (size_t)cols) {
                fprintf(stderr, "%s: write failed: %s\n", path, strerror(errno));
                return 1;
            }
        }
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/config.json", argv[1]);
    f = fopen(path, "w");
    fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
               "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
               "\"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"max_position_embeddings\": 2048, "
               "\"rms_norm_eps\": 1e-05, \"rope_theta\": 500000.0, \"hidden_act\": \"silu\", \"tie_word_embeddings\": false, "
               "\"bos_token_id\": 0, \"eos_token_id\": 0, \"torch_dtype\": \"bfloat16\"}\n",
            E, F, n_layer, H, KV, D, V);
    fclose(f);
    snprintf(path, sizeof path, "cp '%s' '%s/tokenizer.json'", argv[2], argv[1]);
    if (system(path) != 0) return 1;
    printf("%s: %d tensors, %" PRIu64 " bytes of bf16 weights\n", argv[1], n, off);
    return 0;
}
