/*
 * cmd_eval.c - `lowbit eval MODEL --text FILE`: perplexity by the windowed protocol; with --base, the
 * base model runs on the same windows and KL divergence, its 99th percentile and top-1 agreement are
 * reported. Progress on stderr, the result on stdout (--json for machine-readable output).
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define MAX_MODELS 64

static void usage(FILE *f) {
    fputs("usage: lowbit eval MODEL [MODEL...] --text FILE [options]\n\n"
          "  MODEL           HF directory or GGUF file; several models are scored on the same windows (the\n"
          "                  tokenizer is the first model's); with --base the base model runs once for all\n"
          "  --text FILE     UTF-8 text to score (tokenized whole, no BOS)\n"
          "  --ctx N         window length in tokens (default 512)\n"
          "  --chunks N      score only the first N windows (default: all full windows)\n"
          "  --base MODEL2   reference model (e.g. the F16 original): adds KL(base || model) and top-1 agreement\n"
          "  -t, --threads N worker threads (default: all CPUs)\n"
          "  --device D      cpu (default), cuda or cuda:N: where the models run and are scored; cuda:N,M,...\n"
          "                  or cuda:all split each model's layers over those GPUs in order (a model larger\n"
          "                  than one GPU; the same results as on one)\n"
          "  --cache-type T  KV cache on the CPU: f32 (default) or f16 (half the memory; keys and values\n"
          "                  rounded to F16 as llama.cpp's default cache)\n"
          "  --exact         on a GPU, compute as the CPU does, operation for operation (F32 KV cache, the\n"
          "                  CPU's 8-bit activations): the CPU's numbers to the bit, several times slower\n"
          "                  (default: F16 cache and tensor cores for prompts)\n"
          "  --json          machine-readable result on stdout\n"
          "  --allow-nonfinite  load NaN/Inf weights and report NaN results (default: an error naming them)\n"
          "  -q, --quiet     no progress on stderr\n",
          f);
}

typedef struct eval_opts {
    const char *model, *text, *base;
    const char *models[MAX_MODELS];
    int n_models;
    int64_t ctx, chunks, threads;
    bool json, quiet, allow_nonfinite, exact;
    int kv_f16; /* -1: not given */
    lb_device device;
    int n_devices, devices[LB_MAX_DEVICES];
} eval_opts;

static int parse(int argc, char **argv, eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->ctx = 512;
    o->kv_f16 = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return -1; }
        else if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o->quiet = true;
        else if (!strcmp(a, "--allow-nonfinite")) o->allow_nonfinite = true;
        else if (!strcmp(a, "--exact")) o->exact = true;
        else if (!strcmp(a, "--cache-type") && v) { if (!cli_cache_type(v, &o->kv_f16)) return 1; i++; }
        else if (!strcmp(a, "--text") && v) { o->text = v; i++; }
        else if (!strcmp(a, "--base") && v) { o->base = v; i++; }
        else if (!strcmp(a, "--device") && v) { if (!cli_device_set(v, &o->device, &o->n_devices, o->devices)) return 1; i++; }
        else if (!strcmp(a, "--ctx") && v) { if (!cli_int(a, v, 2, 1 << 20, &o->ctx)) return 1; i++; }
        else if (!strcmp(a, "--chunks") && v) { if (!cli_int(a, v, 1, INT32_MAX, &o->chunks)) return 1; i++; }
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) { if (!cli_int(a, v, 1, 256, &o->threads)) return 1; i++; }
        else if (a[0] == '-') { usage(stderr); return cli_fail("eval: unknown option or missing value: %s", a); }
        else if (o->n_models < MAX_MODELS) o->models[o->n_models++] = a;
        else { usage(stderr); return cli_fail("eval: at most %d models", MAX_MODELS); }
    }
    o->model = o->n_models ? o->models[0] : NULL;
    if (!o->model || !o->text) {
        usage(stderr);
        return cli_fail("eval: MODEL and --text FILE are required");
    }
    return cli_cache_check(o->device, o->kv_f16, o->exact) ? 0 : 1;
}

static void print_result(const eval_opts *o, const char *model, const lb_eval_result *r, int64_t ctx) {
    /* every model and the base ran over the windows: their tokens over the whole run, and over the windows alone
     * (the contexts' making, a GPU's weight upload, left out) */
    const double ntok = (double)(r->chunks * ctx * (o->n_models + (r->has_base ? 1 : 0)));
    const double tps = r->seconds > 0 ? ntok / r->seconds : 0, wsec = r->seconds - r->load_seconds;
    const double wtps = wsec > 0 ? ntok / wsec : 0;
    if (o->json) {
        printf("{\"model\": ");
        cli_json_str(stdout, model);
        printf(", \"text\": ");
        cli_json_str(stdout, o->text);
        printf(", \"ctx\": %lld, \"chunks\": %lld, \"n_tokens\": %lld, \"tokens_scored\": %lld, \"mean_nll\": %.8f, "
               "\"ppl\": %.6f",
               (long long)ctx, (long long)r->chunks, (long long)r->n_tokens, (long long)r->n_scored, r->mean_nll, r->ppl);
        if (r->has_base) {
            printf(", \"base\": ");
            cli_json_str(stdout, o->base);
            printf(", \"base_ppl\": %.6f, \"base_mean_nll\": %.8f, \"kld_mean\": %.8f, \"kld_p99\": %.8f, "
                   "\"kld_max\": %.8f, \"top1\": %.6f",
                   r->base_ppl, r->base_mean_nll, r->kld_mean, r->kld_p99, r->kld_max, r->top1);
        }
        printf(", \"seconds\": %.3f, \"tokens_per_second\": %.1f, \"load_seconds\": %.3f, \"eval_tokens_per_second\": %.1f}\n",
               r->seconds, tps, r->load_seconds, wtps);
        return;
    }
    printf("model       %s\n", model);
    printf("text        %s: %lld tokens, %lld windows of %lld (%lld positions scored)\n", o->text, (long long)r->n_tokens,
           (long long)r->chunks, (long long)ctx, (long long)r->n_scored);
    printf("perplexity  %.4f   (mean NLL %.6f)\n", r->ppl, r->mean_nll);
    if (r->has_base) {
        printf("base        %s: perplexity %.4f (mean NLL %.6f)\n", o->base, r->base_ppl, r->base_mean_nll);
        printf("KL div      mean %.6f   p99 %.6f   max %.6f   (KL(base || model), nats)\n", r->kld_mean, r->kld_p99,
               r->kld_max);
        printf("top-1       %.2f %% agreement with the base\n", 100.0 * r->top1);
    }
    printf("time        %.2f s (%.0f tokens/s); %.2f s of it loading, the windows %.0f tokens/s\n", r->seconds, tps, r->load_seconds,
           wtps);
}

int cmd_eval(int argc, char **argv) {
    eval_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    lb_error e;
    lb_status s = LB_OK;
    lb_model *ms[MAX_MODELS] = {0}, *base = NULL;
    lb_tokenizer *tok = NULL;
    lb_eval_result res[MAX_MODELS];
    char *text = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    size_t len;
    if ((rc = cli_read_text(o.text, &text, &len))) return rc;
    lb_model_params mp = lb_model_default_params();
    mp.allow_nonfinite = o.allow_nonfinite;
    for (int k = 0; s == LB_OK && k < o.n_models; k++) s = lb_model_load_with(o.models[k], &mp, &ms[k], &e);
    if (s == LB_OK) s = lb_tokenizer_load(o.model, &tok, &e);
    if (s == LB_OK && o.base) s = lb_model_load_with(o.base, &mp, &base, &e);
    if (s != LB_OK) {
        rc = cli_fail_lb(s, &e);
        goto done;
    }
    for (int k = 0; k <= o.n_models; k++) { /* the window must fit every model's trained context */
        const lb_model *m = k < o.n_models ? ms[k] : base;
        int64_t n_ctx = m ? lb_model_get_info(m)->n_ctx_train : 0;
        if (n_ctx > 0 && o.ctx > n_ctx) {
            rc = cli_fail("--ctx %lld exceeds the max_position_embeddings (%lld) of %s", (long long)o.ctx, (long long)n_ctx,
                          k < o.n_models ? o.models[k] : o.base);
            goto done;
        }
    }
    if (!o.quiet) fprintf(stderr, "tokenizing %s (%zu bytes)\n", o.text, len);
    if ((s = lb_tokenizer_encode(tok, text, len, &ids, &n_ids, &e)) != LB_OK) {
        rc = cli_fail("%s: %s", o.text, e.msg);
        goto done;
    }
    if (n_ids < o.ctx) {
        rc = cli_fail("%s: the text has %lld tokens, fewer than one %lld-token window (use a longer text or a smaller --ctx)",
                      o.text, (long long)n_ids, (long long)o.ctx);
        goto done;
    }
    cli_progress prog;
    cli_progress_init(&prog, "eval", o.quiet);
    lb_eval_params p = lb_eval_default_params();
    p.ctx = o.ctx;
    p.max_chunks = o.chunks;
    p.n_threads = (int)o.threads;
    p.device = o.device;
    p.n_devices = o.n_devices;
    memcpy(p.devices, o.devices, sizeof p.devices);
    p.progress = cli_progress_cb;
    p.progress_user = &prog;
    p.allow_nonfinite = o.allow_nonfinite;
    p.exact = o.exact;
    p.kv_f16 = o.kv_f16 == 1;
    if ((s = lb_eval_perplexity_multi((const lb_model *const *)ms, o.n_models, base, ids, n_ids, &p, res, &e)) != LB_OK) {
        rc = cli_fail_lb(s, &e);
        goto done;
    }
    for (int k = 0; k < o.n_models; k++) {
        if (k && !o.json) putchar('\n');
        print_result(&o, o.models[k], &res[k], o.ctx);
    }
done:
    lb_free(ids);
    free(text);
    lb_tokenizer_free(tok);
    for (int k = 0; k < o.n_models; k++) lb_model_free(ms[k]);
    lb_model_free(base);
    return rc;
}
