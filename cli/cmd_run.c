/*
 * cmd_run.c - `lowbit run MODEL -p PROMPT`: tokenize the prompt, run it as one batch, then generate
 * token by token (greedy by default), streaming the text to stdout as it comes.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fputs("usage: lowbit run MODEL -p PROMPT [options]\n\n"
          "  -p, --prompt TEXT  the prompt\n"
          "  -n N               tokens to generate (default 64)\n"
          "  --temp T           sampling temperature (default 0: greedy)\n"
          "  --top-k K          keep the K most likely tokens (default 40 when sampling; 0 = off)\n"
          "  --top-p P          nucleus sampling threshold (default 0.95; 1 = off)\n"
          "  --seed S           random seed (default 1)\n"
          "  --ignore-eos       keep generating after the end-of-sequence token\n"
          "  -t, --threads N    worker threads (default: all CPUs)\n"
          "  --device D         cpu (default), cuda or cuda:N\n"
          "  -q, --quiet        no statistics on stderr\n",
          f);
}

int cmd_run(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL;
    int64_t n_gen = 64, threads = 0, top_k = 40, seed = 1;
    double temp = 0.0, top_p = 0.95;
    bool ignore_eos = false, quiet = false;
    lb_device dev = {LB_DEVICE_CPU, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && v) { prompt = v; i++; }
        else if (!strcmp(a, "-n") && v) { if (!cli_int(a, v, 0, 1 << 20, &n_gen)) return 1; i++; }
        else if (!strcmp(a, "--temp") && v) { if (!cli_float(a, v, 0, 100, &temp)) return 1; i++; }
        else if (!strcmp(a, "--top-k") && v) { if (!cli_int(a, v, 0, INT32_MAX, &top_k)) return 1; i++; }
        else if (!strcmp(a, "--top-p") && v) { if (!cli_float(a, v, 0, 1, &top_p)) return 1; i++; }
        else if (!strcmp(a, "--seed") && v) { if (!cli_int(a, v, 0, INT64_MAX, &seed)) return 1; i++; }
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) { if (!cli_int(a, v, 1, 256, &threads)) return 1; i++; }
        else if (!strcmp(a, "--device") && v) { if (!cli_device(v, &dev)) return 1; i++; }
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else if (a[0] == '-') { usage(stderr); return cli_fail("run: unknown option or missing value: %s", a); }
        else if (!model) model = a;
        else { usage(stderr); return cli_fail("run: unexpected argument %s", a); }
    }
    if (!model || !prompt) {
        usage(stderr);
        return cli_fail("run: MODEL and -p PROMPT are required");
    }
    lb_error e;
    lb_status s;
    lb_model *m = NULL;
    lb_tokenizer *tok = NULL;
    lb_context *c = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    int64_t n_ids = 0;
    int rc = 0;
    if ((s = lb_model_load(model, &m, &e)) != LB_OK || (s = lb_tokenizer_load(model, &tok, &e)) != LB_OK ||
        (s = lb_tokenizer_encode(tok, prompt, strlen(prompt), &ids, &n_ids, &e)) != LB_OK) {
        rc = cli_fail_lb(s, &e);
        goto done;
    }
    const lb_model_info *h = lb_model_get_info(m);
    int32_t bos = lb_tokenizer_bos_id(tok);
    if (lb_tokenizer_add_bos(tok) && bos >= 0) {
        int32_t *w = realloc(ids, (size_t)(n_ids + 1) * sizeof *w);
        if (!w) { rc = cli_fail("out of memory"); goto done; }
        ids = w;
        memmove(ids + 1, ids, (size_t)n_ids * sizeof *ids);
        ids[0] = bos;
        n_ids++;
    }
    if (n_ids == 0) { rc = cli_fail("run: the prompt is empty"); goto done; }
    lb_context_params cp = {n_ids + n_gen, (int)threads, dev};
    if (cp.n_ctx > h->n_ctx_train && h->n_ctx_train > 0) {
        rc = cli_fail("run: prompt (%lld tokens) + %lld new tokens exceed the model's context of %lld", (long long)n_ids,
                      (long long)n_gen, (long long)h->n_ctx_train);
        goto done;
    }
    if ((s = lb_context_new(m, &cp, &c, &e)) != LB_OK) { rc = cli_fail_lb(s, &e); goto done; }
    logits = malloc((size_t)h->n_vocab * sizeof *logits);
    if (!logits) { rc = cli_fail("out of memory"); goto done; }
    fwrite(prompt, 1, strlen(prompt), stdout);
    fflush(stdout);
    double t0 = cli_now();
    if ((s = lb_context_eval(c, ids, n_ids, logits, 0, &e)) != LB_OK) { rc = cli_fail_lb(s, &e); goto done; }
    double t1 = cli_now();
    lb_sampler_params sp = {(float)temp, (int)top_k, (float)top_p, (uint64_t)seed};
    uint64_t state = (uint64_t)seed * 0x9e3779b97f4a7c15ULL + 1;
    int64_t generated = 0;
    while (generated < n_gen) {
        int32_t next = lb_sample(logits, h->n_vocab, &sp, &state);
        if (!ignore_eos && next == h->eos_id) break;
        char buf[256];
        int64_t nb = lb_tokenizer_token_bytes(tok, next, buf, sizeof buf);
        if (nb > 0) fwrite(buf, 1, (size_t)(nb < (int64_t)sizeof buf ? nb : (int64_t)sizeof buf), stdout);
        fflush(stdout);
        if (++generated == n_gen) break;
        if ((s = lb_context_eval(c, &next, 1, logits, 0, &e)) != LB_OK) { rc = cli_fail_lb(s, &e); goto done; }
    }
    double t2 = cli_now();
    fputc('\n', stdout);
    fflush(stdout);
    if (!quiet)
        fprintf(stderr, "prompt: %lld tokens, %.1f tokens/s; generation: %lld tokens, %.1f tokens/s\n", (long long)n_ids,
                (double)n_ids / (t1 - t0 > 0 ? t1 - t0 : 1e-9), (long long)generated,
                (double)generated / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
done:
    free(logits);
    lb_free(ids);
    lb_context_free(c);
    lb_tokenizer_free(tok);
    lb_model_free(m);
    return rc;
}
