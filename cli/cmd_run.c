/*
 * cmd_run.c - `lowbit run MODEL -p PROMPT`: tokenize the prompt, run it as one batch, then generate
 * token by token (greedy by default), streaming the text to stdout as it comes. With --chat the prompt
 * is the user's turn of a conversation, rendered by the model's chat template, and generation stops at
 * the end of the assistant's turn.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* End-of-turn markers of the common chat formats. One that the template writes and that the tokenizer
 * has as a single token ends generation, as the end-of-sequence token does. */
static const char *const END_OF_TURN[] = {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>",
                                          "<|endoftext|>", "<|END_OF_TURN_TOKEN|>", "<|end_of_turn|>", "</s>",
                                          "<|return|>", "<|turn_end|>", NULL};
#define MAX_STOP 16

typedef struct chat_opts {
    bool on;
    const char *system, *template_file;
} chat_opts;

/* The conversation [system,] user rendered with the chat template, ready to tokenize. */
static int chat_render(const char *model, const lb_tokenizer *tok, int32_t eos_id, const chat_opts *o,
                       const char *prompt, char **text, lb_chat_template **tmpl) {
    lb_error e;
    lb_status s;
    if (o->template_file) {
        char *src = NULL;
        size_t n = 0;
        if (cli_read_text(o->template_file, &src, &n) != 0) return 1;
        s = lb_chat_template_parse(src, n, tmpl, &e);
        free(src);
        if (s) return cli_fail("%s: %s", o->template_file, e.msg);
    } else if ((s = lb_chat_template_load(model, tmpl, &e)) != LB_OK) {
        return cli_fail_lb(s, &e);
    }
    lb_chat_message msgs[2] = {{"system", o->system}, {"user", prompt}};
    int32_t bos = lb_tokenizer_bos_id(tok);
    /* a template from a file knows no special tokens: take the tokenizer's */
    lb_chat_params params = {1, o->template_file && bos >= 0 ? lb_tokenizer_token_text(tok, bos) : NULL,
                             o->template_file && eos_id >= 0 ? lb_tokenizer_token_text(tok, eos_id) : NULL};
    size_t len;
    s = lb_chat_template_render(*tmpl, o->system ? msgs : msgs + 1, o->system ? 2 : 1, &params, text, &len, &e);
    return s ? cli_fail_lb(s, &e) : 0;
}

/* Token ids that end the answer: EOS, and the end-of-turn markers the template uses. */
static int stop_ids(const lb_tokenizer *tok, const lb_chat_template *tmpl, int32_t eos_id, int32_t *stop) {
    int n = 0;
    if (eos_id >= 0) stop[n++] = eos_id;
    const char *src = tmpl ? lb_chat_template_source(tmpl, NULL) : NULL;
    for (int i = 0; src && END_OF_TURN[i] && n < MAX_STOP; i++) {
        int32_t *ids = NULL;
        int64_t n_ids = 0;
        lb_error e;
        if (!strstr(src, END_OF_TURN[i])) continue;
        if (lb_tokenizer_encode(tok, END_OF_TURN[i], strlen(END_OF_TURN[i]), &ids, &n_ids, &e) == LB_OK && n_ids == 1)
            stop[n++] = ids[0];
        lb_free(ids);
    }
    return n;
}

static void usage(FILE *f) {
    fputs("usage: lowbit run MODEL -p PROMPT [options]\n\n"
          "  -p, --prompt TEXT  the prompt\n"
          "  --chat             treat the prompt as a user's message: apply the model's chat template\n"
          "                     (tokenizer.chat_template) and print only the answer\n"
          "  --system TEXT      with --chat: a system message before the question\n"
          "  --chat-template F  with --chat: use the Jinja template in file F instead of the model's\n"
          "  -n N               tokens to generate (default 64)\n"
          "  --temp T           sampling temperature (default 0: greedy)\n"
          "  --top-k K          keep the K most likely tokens (default 40 when sampling; 0 = off)\n"
          "  --top-p P          nucleus sampling threshold (default 0.95; 1 = off)\n"
          "  --seed S           random seed (default 1)\n"
          "  --ignore-eos       keep generating after the end-of-sequence token\n"
          "  -t, --threads N    worker threads (default: all CPUs)\n"
          "  --device D         cpu (default), cuda or cuda:N; cuda:N,M,... or cuda:all split the layers over\n"
          "                     those GPUs in order (a model larger than one GPU)\n"
          "  --exact            on a GPU, compute as the CPU does, operation for operation (the CPU's tokens)\n"
          "  --cache-type T     KV cache on the CPU: f32 (default) or f16 (half the memory)\n"
          "  -q, --quiet        no statistics on stderr\n",
          f);
}

int cmd_run(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL;
    int64_t n_gen = 64, threads = 0, top_k = 40, seed = 1;
    double temp = 0.0, top_p = 0.95;
    bool ignore_eos = false, quiet = false, exact = false;
    int kv_f16 = -1;
    chat_opts chat = {false, NULL, NULL};
    lb_device dev = {LB_DEVICE_CPU, 0};
    int n_devices = 0, devices[LB_MAX_DEVICES] = {0};
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
        else if (!strcmp(a, "--device") && v) { if (!cli_device_set(v, &dev, &n_devices, devices)) return 1; i++; }
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = true;
        else if (!strcmp(a, "--exact")) exact = true;
        else if (!strcmp(a, "--cache-type") && v) { if (!cli_cache_type(v, &kv_f16)) return 1; i++; }
        else if (!strcmp(a, "--chat")) chat.on = true;
        else if (!strcmp(a, "--system") && v) { chat.system = v; i++; }
        else if (!strcmp(a, "--chat-template") && v) { chat.template_file = v; i++; }
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else if (a[0] == '-') { usage(stderr); return cli_fail("run: unknown option or missing value: %s", a); }
        else if (!model) model = a;
        else { usage(stderr); return cli_fail("run: unexpected argument %s", a); }
    }
    if (!model || !prompt) {
        usage(stderr);
        return cli_fail("run: MODEL and -p PROMPT are required");
    }
    if (!cli_cache_check(dev, kv_f16, exact)) return 1;
    if ((chat.system || chat.template_file) && !chat.on) return cli_fail("run: --system and --chat-template need --chat");
    lb_error e;
    lb_status s;
    lb_model *m = NULL;
    lb_tokenizer *tok = NULL;
    lb_context *c = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    int64_t n_ids = 0;
    int rc = 0;
    lb_chat_template *tmpl = NULL;
    char *chat_text = NULL;
    int32_t stop[MAX_STOP];
    if ((s = lb_model_load(model, &m, &e)) != LB_OK || (s = lb_tokenizer_load(model, &tok, &e)) != LB_OK) {
        rc = cli_fail_lb(s, &e);
        goto done;
    }
    const lb_model_info *h = lb_model_get_info(m);
    if (chat.on && (rc = chat_render(model, tok, h->eos_id, &chat, prompt, &chat_text, &tmpl)) != 0) goto done;
    const char *text = chat.on ? chat_text : prompt;
    if ((s = lb_tokenizer_encode(tok, text, strlen(text), &ids, &n_ids, &e)) != LB_OK) {
        rc = cli_fail_lb(s, &e);
        goto done;
    }
    int n_stop = stop_ids(tok, tmpl, h->eos_id, stop);
    int32_t bos = lb_tokenizer_bos_id(tok);
    if (lb_tokenizer_add_bos(tok) && bos >= 0 && !(n_ids > 0 && ids[0] == bos)) { /* a template may write BOS itself */
        int32_t *w = realloc(ids, (size_t)(n_ids + 1) * sizeof *w);
        if (!w) { rc = cli_fail("out of memory"); goto done; }
        ids = w;
        memmove(ids + 1, ids, (size_t)n_ids * sizeof *ids);
        ids[0] = bos;
        n_ids++;
    }
    if (n_ids == 0) { rc = cli_fail("run: the prompt is empty"); goto done; }
    lb_context_params cp = {.n_ctx = n_ids + n_gen, .n_threads = (int)threads, .device = dev, .n_devices = n_devices, .exact = exact,
                            .kv_f16 = kv_f16 == 1};
    memcpy(cp.devices, devices, sizeof cp.devices);
    if (cp.n_ctx > h->n_ctx_train && h->n_ctx_train > 0) {
        rc = cli_fail("run: prompt (%lld tokens) + %lld new tokens exceed the model's context of %lld", (long long)n_ids,
                      (long long)n_gen, (long long)h->n_ctx_train);
        goto done;
    }
    if ((s = lb_context_new(m, &cp, &c, &e)) != LB_OK) { rc = cli_fail_lb(s, &e); goto done; }
    logits = malloc((size_t)h->n_vocab * sizeof *logits);
    if (!logits) { rc = cli_fail("out of memory"); goto done; }
    if (!chat.on) fwrite(prompt, 1, strlen(prompt), stdout);
    fflush(stdout);
    double t0 = cli_now();
    if ((s = lb_context_eval(c, ids, n_ids, logits, 0, &e)) != LB_OK) { rc = cli_fail_lb(s, &e); goto done; }
    double t1 = cli_now();
    lb_sampler_params sp = {(float)temp, (int)top_k, (float)top_p, (uint64_t)seed};
    uint64_t state = (uint64_t)seed * 0x9e3779b97f4a7c15ULL + 1;
    int64_t generated = 0;
    while (generated < n_gen) {
        int32_t next = lb_sample(logits, h->n_vocab, &sp, &state);
        bool is_stop = false;
        for (int k = 0; k < n_stop; k++) is_stop |= next == stop[k];
        if (!ignore_eos && is_stop) break;
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
    lb_free(chat_text);
    lb_chat_template_free(tmpl);
    free(logits);
    lb_free(ids);
    lb_context_free(c);
    lb_tokenizer_free(tok);
    lb_model_free(m);
    return rc;
}
