/*
 * fuzz_model.c - fuzz target for model loading and a short forward pass. An input starting with "GGUF" is
 * a GGUF model; any other is an HF checkpoint: config.json, then the line "\n--safetensors--\n", then
 * model.safetensors. On a successful load a context of (at most) 8 tokens (an F32 or, for inputs of odd length, an F16
 * KV cache) runs 3 tokens and reads the logits. Seeds: tests/fuzz/corpus/model (tests/fuzz/make_corpus.py).
 */
#define FUZZ_NAME "model"
#include "lowbit.h"

#include "fuzz_common.h"

#define SEP "\n--safetensors--\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path;
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        path = fuzz_file("model.gguf", data, size);
    } else {
        size_t n0, n1;
        const uint8_t *p1;
        fuzz_split(data, size, SEP, &n0, &p1, &n1);
        fuzz_file("config.json", data, n0);
        fuzz_file("model.safetensors", p1, n1);
        path = fuzz_dir();
    }
    lb_model *m = NULL;
    lb_error err;
    if (lb_model_load(path, &m, &err) != LB_OK) return 0;
    const lb_model_info *h = lb_model_get_info(m);
    lb_context_params cp = lb_context_default_params();
    cp.n_ctx = h->n_ctx_train > 0 && h->n_ctx_train < 8 ? h->n_ctx_train : 8;
    cp.n_threads = 1;
    cp.kv_f16 = (int)(size & 1); /* both KV cache types, by the input's length */
    lb_context *c = NULL;
    if (lb_context_new(m, &cp, &c, &err) == LB_OK) {
        int32_t tok[3] = {0, (int32_t)(1 % h->n_vocab), (int32_t)(h->n_vocab - 1)};
        int64_t n = cp.n_ctx < 3 ? cp.n_ctx : 3;
        float *logits = malloc((size_t)(n * h->n_vocab) * sizeof *logits);
        volatile float sink = 0; /* large finite weights may overflow to Inf and NaN: read, not judged */
        if (logits && lb_context_eval(c, tok, n, logits, 1, &err) == LB_OK)
            for (int64_t i = 0; i < n * h->n_vocab; i++) sink += logits[i];
        (void)sink;
        free(logits);
        lb_context_free(c);
    }
    lb_model_free(m);
    return 0;
}
