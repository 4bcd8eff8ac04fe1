/*
 * cmd_inspect.c - `lowbit inspect MODEL [--json]`: architecture, hyperparameters, parameter count and
 * the tensor table of a checkpoint.
 */
#include "cli.h"

#include <string.h>

static void usage(FILE *f) {
    fputs("usage: lowbit inspect MODEL [--json]\n\n"
          "  MODEL     a Hugging Face model directory (config.json + *.safetensors)\n"
          "  --json    machine-readable output on stdout\n",
          f);
}

static void shape_str(const lb_tensor_info *t, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int d = 0; d < t->n_dims && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
}

static void print_json(const char *path, const lb_model *m) {
    const lb_model_info *h = lb_model_get_info(m);
    printf("{\"path\": ");
    cli_json_str(stdout, path);
    printf(", \"architecture\": ");
    cli_json_str(stdout, h->architecture);
    printf(", \"model_type\": ");
    cli_json_str(stdout, h->model_type);
    printf(", \"n_params\": %lld, \"n_bytes\": %zu, \"n_vocab\": %lld, \"n_embd\": %lld, \"n_layer\": %lld, "
           "\"n_head\": %lld, \"n_head_kv\": %lld, \"head_dim\": %lld, \"n_ff\": %lld, \"n_ctx_train\": %lld, "
           "\"rms_eps\": %g, \"rope_theta\": %g, \"tied_embeddings\": %s, \"tensors\": [",
           (long long)h->n_params, h->n_bytes, (long long)h->n_vocab, (long long)h->n_embd, (long long)h->n_layer,
           (long long)h->n_head, (long long)h->n_head_kv, (long long)h->head_dim, (long long)h->n_ff,
           (long long)h->n_ctx_train, h->rms_eps, h->rope_theta, h->tied_embeddings ? "true" : "false");
    for (int64_t i = 0; i < lb_model_n_tensors(m); i++) {
        lb_tensor_info t;
        lb_model_tensor(m, i, &t);
        printf("%s\n  {\"name\": ", i ? "," : "");
        cli_json_str(stdout, t.name);
        printf(", \"type\": \"%s\", \"shape\": [", lb_type_name(t.type));
        for (int d = 0; d < t.n_dims; d++) printf("%s%lld", d ? ", " : "", (long long)t.shape[d]);
        printf("], \"n_elements\": %lld, \"n_bytes\": %zu}", (long long)t.n_elements, t.n_bytes);
    }
    printf("]}\n");
}

static void print_text(const char *path, const lb_model *m) {
    const lb_model_info *h = lb_model_get_info(m);
    static const char *rope[] = {"none", "linear", "llama3"};
    printf("model         %s\n", path);
    printf("architecture  %s (%s)\n", h->architecture, h->model_type);
    printf("parameters    %lld (%.2fM)\n", (long long)h->n_params, (double)h->n_params / 1e6);
    printf("size          %zu bytes (%.2f MiB)\n", h->n_bytes, (double)h->n_bytes / 1048576.0);
    printf("layers %lld, hidden %lld, ffn %lld, heads %lld / kv %lld, head_dim %lld, vocab %lld, ctx %lld\n",
           (long long)h->n_layer, (long long)h->n_embd, (long long)h->n_ff, (long long)h->n_head,
           (long long)h->n_head_kv, (long long)h->head_dim, (long long)h->n_vocab, (long long)h->n_ctx_train);
    printf("rms_eps %g, rope theta %g, scaling %s, tied embeddings %s, qkv bias %s, qk norm %s\n\n", h->rms_eps,
           h->rope_theta, rope[h->rope_scaling], h->tied_embeddings ? "yes" : "no", h->attn_bias ? "yes" : "no",
           h->qk_norm ? "yes" : "no");
    printf("%-52s %-16s %-5s %12s\n", "tensor", "shape", "type", "bytes");
    for (int64_t i = 0; i < lb_model_n_tensors(m); i++) {
        lb_tensor_info t;
        char shp[64];
        lb_model_tensor(m, i, &t);
        shape_str(&t, shp, sizeof shp);
        printf("%-52s %-16s %-5s %12zu\n", t.name, shp, lb_type_name(t.type), t.n_bytes);
    }
    printf("%lld tensors, %zu bytes\n", (long long)lb_model_n_tensors(m), h->n_bytes);
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else if (argv[i][0] == '-') { usage(stderr); return cli_fail("inspect: unknown option %s", argv[i]); }
        else if (!path) path = argv[i];
        else { usage(stderr); return cli_fail("inspect: more than one MODEL given"); }
    }
    if (!path) {
        usage(stderr);
        return cli_fail("inspect: MODEL is required");
    }
    lb_model *m = NULL;
    lb_error e;
    lb_model_params mp = lb_model_default_params();
    mp.allow_nonfinite = 1; /* metadata only: no pass over the weights */
    lb_status s = lb_model_load_with(path, &mp, &m, &e);
    if (s != LB_OK) return cli_fail_lb(s, &e);
    if (json) print_json(path, m);
    else print_text(path, m);
    lb_model_free(m);
    return 0;
}
