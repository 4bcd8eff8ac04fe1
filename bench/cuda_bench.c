/*
 * cuda_bench.c - prompt and decode speed of a model on a device, as llama-bench measures them: pp N (one
 * batch of N tokens from an empty cache, last logits) and tg N (N tokens one at a time from an empty cache,
 * logits of each; with --depth D after a prompt of D tokens, not timed, as llama-bench -d), as tokens per second. Also the weight bytes one decoded token reads (every matrix but
 * the token embedding, plus one embedding row) and that over the decode time, the achieved read rate.
 * Each figure is the median of --reps runs after one warm-up run. lb_context_eval returns when the device
 * has finished, so wall-clock time around it is the device time plus the host's share.
 *
 * usage: cuda_bench MODEL [--device cuda[:N]] [--pp 512] [--tg 128] [--reps 3] [--depth 0]
 */
#include "lowbit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* bytes of weights one decoded token reads */
static double bytes_per_token(const lb_model *m) {
    const lb_model_info *h = lb_model_get_info(m);
    double b = (double)h->n_bytes;
    for (int64_t i = 0; i < lb_model_n_tensors(m); i++) {
        lb_tensor_info t;
        if (lb_model_tensor(m, i, &t) != LB_OK) continue;
        if (!strcmp(t.name, "token_embd.weight") || !strcmp(t.name, "model.embed_tokens.weight")) {
            if (!h->tied_embeddings) b -= (double)t.n_bytes;
            b += (double)t.n_bytes / (double)h->n_vocab;
        }
    }
    return b;
}

int main(int argc, char **argv) {
    const char *path = NULL, *dev_s = "cuda";
    int64_t pp = 512, tg = 128, depth = 0;
    int reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) dev_s = argv[++i];
        else if (!strcmp(argv[i], "--pp") && i + 1 < argc) pp = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--tg") && i + 1 < argc) tg = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--depth") && i + 1 < argc) depth = atoll(argv[++i]);
        else if (!path && argv[i][0] != '-') path = argv[i];
        else {
            fprintf(stderr, "usage: %s MODEL [--device cuda[:N]] [--pp 512] [--tg 128] [--reps 3] [--depth 0]\n", argv[0]);
            return 2;
        }
    }
    if (!path || reps < 1 || reps > 100 || pp < 1 || tg < 1 || depth < 0) {
        fprintf(stderr, "usage: %s MODEL [--device cuda[:N]] [--pp 512] [--tg 128] [--reps 3] [--depth 0]\n", argv[0]);
        return 2;
    }
    lb_error e;
    lb_device dev;
    lb_model *m = NULL;
    lb_context *c = NULL;
    if (lb_device_parse(dev_s, &dev, &e) != LB_OK || lb_model_load(path, &m, &e) != LB_OK) {
        fprintf(stderr, "cuda_bench: %s\n", e.msg);
        return 1;
    }
    const lb_model_info *h = lb_model_get_info(m);
    double t0 = now();
    const int64_t n_ids = (pp > depth ? pp : depth) + tg; /* the longest sequence either measurement evaluates */
    lb_context_params cp = {.n_ctx = n_ids, .n_threads = 0, .device = dev};
    if (lb_context_new(m, &cp, &c, &e) != LB_OK) {
        fprintf(stderr, "cuda_bench: %s\n", e.msg);
        lb_model_free(m);
        return 1;
    }
    double t_load = now() - t0;
    int32_t *ids = malloc((size_t)n_ids * sizeof *ids);
    float *logits = malloc((size_t)h->n_vocab * sizeof *logits);
    for (int64_t i = 0; i < n_ids; i++) ids[i] = (int32_t)((i * 7919 + 13) % h->n_vocab);
    double tp[100], tt[100];
    for (int r = -1; r < reps; r++) { /* prompt: r = -1 is the warm-up */
        lb_context_reset(c);
        double a = now();
        if (lb_context_eval(c, ids, pp, logits, 0, &e) != LB_OK) {
            fprintf(stderr, "cuda_bench: %s\n", e.msg);
            return 1;
        }
        if (r >= 0) tp[r] = now() - a;
    }
    for (int r = -1; r < reps; r++) { /* decode, after depth prompt tokens */
        lb_context_reset(c);
        if (depth > 0 && lb_context_eval(c, ids, depth, logits, 0, &e) != LB_OK) {
            fprintf(stderr, "cuda_bench: %s\n", e.msg);
            return 1;
        }
        double a = now();
        for (int64_t i = 0; i < tg; i++)
            if (lb_context_eval(c, ids + depth + i, 1, logits, 0, &e) != LB_OK) {
                fprintf(stderr, "cuda_bench: %s\n", e.msg);
                return 1;
            }
        if (r >= 0) tt[r] = now() - a;
    }
    double mp = median(tp, reps), mt = median(tt, reps), bpt = bytes_per_token(m);
    printf("model %s  device %s  weights %.3f GB (%.3f GB read per token)  context setup + upload %.2f s\n", path, dev_s,
           (double)h->n_bytes / 1e9, bpt / 1e9, t_load);
    printf("pp%lld  %9.1f tokens/s   (%.2f ms per batch)\n", (long long)pp, (double)pp / mp, mp * 1e3);
    printf("tg%lld%s%.0lld  %9.1f tokens/s   (%.3f ms per token; weights read at %.2f TB/s)\n", (long long)tg, depth ? " @ d" : "",
           (long long)depth, (double)tg / mt,
           mt * 1e3 / (double)tg, bpt * (double)tg / mt / 1e12);
    free(ids);
    free(logits);
    lb_context_free(c);
    lb_model_free(m);
    return 0;
}
