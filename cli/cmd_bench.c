/*
 * cmd_bench.c - `lowbit bench MODEL`: prompt processing (-p N tokens in one batch) and generation (-n N
 * tokens one at a time from an empty context) in tokens/s, llama-bench style: a warm-up run, then -r
 * repetitions reported as mean and standard deviation, for each thread count of -t. It also measures the
 * machine's memory read bandwidth (a STREAM-like sum over a buffer far larger than the caches, with the
 * same thread count) and reports generation as a percentage of the ceiling bandwidth / bytes read per
 * token (every weight matrix once, plus the KV cache at the run's mean position).
 */
#include "cli.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LB_GIT_COMMIT
#define LB_GIT_COMMIT "unknown"
#endif

#define BW_BYTES ((size_t)512 << 20) /* read-bandwidth buffer */
#define MAX_THREADS 16

static void usage(FILE *f) {
    fputs("usage: lowbit bench MODEL [options]\n\n"
          "  -p N             prompt tokens per prompt test (default 512; 0 = none)\n"
          "  -n N             generated tokens per generation test (default 128; 0 = none)\n"
          "  -r N             repetitions (default 5)\n"
          "  -t N[,N...]      thread counts (default: all CPUs)\n"
          "  --json | --csv   machine-readable rows instead of the table\n"
          "  --no-bandwidth   skip the memory bandwidth measurement\n"
          "  --device D       cpu (default), cuda or cuda:N (the bandwidth ceiling is the CPU's memory's)\n"
          "  --cache-type T   KV cache on the CPU: f32 (default) or f16\n",
          f);
}

typedef struct bw_arg {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} bw_arg;

static void *bw_read(void *v) {
    bw_arg *a = v;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= a->n; i += 4) {
        s0 += a->p[i];
        s1 += a->p[i + 1];
        s2 += a->p[i + 2];
        s3 += a->p[i + 3];
    }
    a->sum = s0 + s1 + s2 + s3;
    return NULL;
}

/* best of 5 read passes over BW_BYTES with nt threads, in GB/s (1e9 bytes); 0 on failure */
static double read_bandwidth(int nt) {
    uint64_t *buf = malloc(BW_BYTES);
    if (!buf) return 0;
    size_t n = BW_BYTES / sizeof *buf;
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        pthread_t th[MAX_THREADS];
        bw_arg args[MAX_THREADS];
        double t0 = cli_now();
        int started = 0;
        for (int i = 0; i < nt; i++) {
            args[i] = (bw_arg){buf + n / (size_t)nt * (size_t)i, n / (size_t)nt, 0};
            if (i > 0 && pthread_create(&th[i], NULL, bw_read, &args[i]) == 0) started |= 1 << i;
            else if (i > 0) bw_read(&args[i]);
        }
        bw_read(&args[0]);
        for (int i = 1; i < nt; i++)
            if (started & (1 << i)) pthread_join(th[i], NULL);
        double dt = cli_now() - t0;
        for (int i = 0; i < nt; i++) sink += args[i].sum;
        if (dt > 0 && (double)BW_BYTES / dt / 1e9 > best) best = (double)BW_BYTES / dt / 1e9;
    }
    (void)sink;
    free(buf);
    return best;
}

static void cpu_model(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *c = strchr(line, ':');
        if (!c) break;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = 0;
        snprintf(out, cap, "%s", c);
        break;
    }
    fclose(f);
}

/* bytes a generated token reads: every matrix once (the token embedding only when it is also the output) */
static double weight_bytes(const lb_model *m) {
    const lb_model_info *h = lb_model_get_info(m);
    double b = 0;
    for (int64_t i = 0; i < lb_model_n_tensors(m); i++) {
        lb_tensor_info ti;
        if (lb_model_tensor(m, i, &ti) != LB_OK) continue;
        bool embd = strstr(ti.name, "embed_tokens") || strstr(ti.name, "token_embd");
        if (ti.n_dims >= 2 && (!embd || h->tied_embeddings)) b += (double)ti.n_bytes;
    }
    return b;
}

typedef struct bench_row {
    int threads;
    char test[32];
    int64_t n_tokens;
    double mean, sd, pct; /* tokens/s; pct < 0 when not applicable */
} bench_row;

/* one timed run: tokens/s; prompt (p > 0) or generation (n > 0) */
static int timed_run(lb_context *c, const int32_t *toks, int64_t p, int64_t n, float *logits, double *tps) {
    lb_error e;
    lb_status s;
    lb_context_reset(c);
    double t0 = cli_now();
    if (p > 0) {
        if ((s = lb_context_eval(c, toks, p, logits, 0, &e)) != LB_OK) return cli_fail_lb(s, &e);
    } else {
        for (int64_t i = 0; i < n; i++)
            if ((s = lb_context_eval(c, toks + i, 1, logits, 0, &e)) != LB_OK) return cli_fail_lb(s, &e);
    }
    double dt = cli_now() - t0;
    *tps = (double)(p > 0 ? p : n) / (dt > 0 ? dt : 1e-9);
    return 0;
}

static int measure(const lb_model *m, const lb_context_params *base, int nt, int64_t p, int64_t n, int reps, const int32_t *toks,
                   bench_row *row) {
    lb_context *c = NULL;
    lb_error e;
    lb_context_params cp = *base;
    cp.n_ctx = (p > n ? p : n) + 1, cp.n_threads = nt;
    lb_status s = lb_context_new(m, &cp, &c, &e);
    if (s != LB_OK) return cli_fail_lb(s, &e);
    float *logits = malloc((size_t)lb_model_get_info(m)->n_vocab * sizeof *logits);
    double *v = malloc((size_t)(reps + 1) * sizeof *v);
    int rc = !logits || !v ? cli_fail("out of memory") : 0;
    for (int r = 0; rc == 0 && r <= reps; r++) rc = timed_run(c, toks, p, n, logits, &v[r]); /* run 0: warm-up */
    if (rc == 0) {
        double mean = 0, var = 0;
        for (int r = 1; r <= reps; r++) mean += v[r] / reps;
        for (int r = 1; r <= reps; r++) var += (v[r] - mean) * (v[r] - mean);
        row->mean = mean;
        row->sd = reps > 1 ? sqrt(var / (reps - 1)) : 0;
    }
    free(v);
    free(logits);
    lb_context_free(c);
    return rc;
}

static int parse_threads(const char *v, int *th, int *n) {
    *n = 0;
    const char *s = v;
    while (*s) {
        char buf[16];
        size_t len = strcspn(s, ",");
        if (len == 0 || len >= sizeof buf || *n == MAX_THREADS) return cli_fail("bench: bad thread list \"%s\"", v);
        memcpy(buf, s, len);
        buf[len] = 0;
        int64_t t;
        if (!cli_int("-t", buf, 1, MAX_THREADS, &t)) return 1;
        th[(*n)++] = (int)t;
        s += len + (s[len] == ',');
    }
    return *n ? 0 : cli_fail("bench: empty thread list");
}

typedef struct bench_info {
    const char *model;
    char cpu[256];
    double size_mib, params_m, bytes_tok, bw[MAX_THREADS + 1];
    const char *kv; /* the KV cache's type: "f32" or "f16" */
} bench_info;

static void print_rows(const bench_info *bi, const bench_row *rows, int nr, int fmt) {
    const char *isa = lb_cpu_kernels_name();
    if (fmt == 1) printf("[\n");
    if (fmt == 2) printf("model,size_mib,params_m,cpu,isa,commit,threads,test,n_tokens,tps_mean,tps_sd,bandwidth_gbs,bw_ceiling_pct,kv_cache\n");
    if (fmt == 0) {
        printf("| model | size | params | cpu | isa | commit | threads | test | t/s | %% of bw ceiling |\n");
        printf("| --- | ---: | ---: | --- | --- | --- | ---: | --- | ---: | ---: |\n");
    }
    for (int i = 0; i < nr; i++) {
        const bench_row *r = &rows[i];
        double bw = bi->bw[r->threads];
        if (fmt == 0) {
            printf("| %s | %.2f MiB | %.2f M | %s | %s | %s | %d | %s | %.2f ± %.2f | ", bi->model, bi->size_mib, bi->params_m,
                   bi->cpu, isa, LB_GIT_COMMIT, r->threads, r->test, r->mean, r->sd);
            if (r->pct >= 0) printf("%.1f %% |\n", r->pct);
            else printf("|\n");
        } else if (fmt == 1) {
            printf("  {\"model\": ");
            cli_json_str(stdout, bi->model);
            printf(", \"size_mib\": %.3f, \"params_m\": %.3f, \"cpu\": ", bi->size_mib, bi->params_m);
            cli_json_str(stdout, bi->cpu);
            printf(", \"isa\": \"%s\", \"kv_cache\": \"%s\", \"commit\": \"%s\", \"threads\": %d, \"test\": \"%s\", \"n_tokens\": %lld, "
                   "\"tps_mean\": %.4f, \"tps_sd\": %.4f, \"bytes_per_token\": %.0f, \"bandwidth_gbs\": %.3f, "
                   "\"bw_ceiling_pct\": ",
                   isa, bi->kv, LB_GIT_COMMIT, r->threads, r->test, (long long)r->n_tokens, r->mean, r->sd, bi->bytes_tok, bw);
            if (r->pct >= 0) printf("%.2f}", r->pct);
            else printf("null}");
            printf("%s\n", i + 1 < nr ? "," : "");
        } else {
            printf("\"%s\",%.3f,%.3f,\"%s\",%s,%s,%d,%s,%lld,%.4f,%.4f,%.3f,", bi->model, bi->size_mib, bi->params_m, bi->cpu, isa,
                   LB_GIT_COMMIT, r->threads, r->test, (long long)r->n_tokens, r->mean, r->sd, bw);
            if (r->pct >= 0) printf("%.2f", r->pct);
            printf(",%s\n", bi->kv);
        }
    }
    if (fmt == 1) printf("]\n");
    if (fmt == 0) {
        printf("\nKV cache %s; bytes read per generated token: %.2f MiB", bi->kv, bi->bytes_tok / 1048576.0);
        for (int t = 1; t <= MAX_THREADS; t++)
            if (bi->bw[t] > 0) printf("; read bandwidth (%d thread%s): %.2f GB/s", t, t > 1 ? "s" : "", bi->bw[t]);
        printf("\n");
    }
}

int cmd_bench(int argc, char **argv) {
    const char *model = NULL;
    int64_t p = 512, n = 128, reps = 5;
    int th[MAX_THREADS] = {0}, nth = 0, fmt = 0;
    bool bandwidth = true;
    lb_device dev = {LB_DEVICE_CPU, 0};
    int kv_f16 = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-p") && v) { if (!cli_int(a, v, 0, 1 << 16, &p)) return 1; i++; }
        else if (!strcmp(a, "-n") && v) { if (!cli_int(a, v, 0, 1 << 16, &n)) return 1; i++; }
        else if (!strcmp(a, "-r") && v) { if (!cli_int(a, v, 1, 1000, &reps)) return 1; i++; }
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) { if (parse_threads(v, th, &nth)) return 1; i++; }
        else if (!strcmp(a, "--json")) fmt = 1;
        else if (!strcmp(a, "--csv")) fmt = 2;
        else if (!strcmp(a, "--no-bandwidth")) bandwidth = false;
        else if (!strcmp(a, "--device") && v) { if (!cli_device(v, &dev)) return 1; i++; }
        else if (!strcmp(a, "--cache-type") && v) { if (!cli_cache_type(v, &kv_f16)) return 1; i++; }
        else if (a[0] == '-') { usage(stderr); return cli_fail("bench: unknown option or missing value: %s", a); }
        else if (!model) model = a;
        else { usage(stderr); return cli_fail("bench: unexpected argument %s", a); }
    }
    if (!model) { usage(stderr); return cli_fail("bench: MODEL is required"); }
    if (p == 0 && n == 0) return cli_fail("bench: -p and -n are both 0: nothing to measure");
    if (!cli_cache_check(dev, kv_f16, false)) return 1;
    lb_context_params cpb = lb_context_default_params();
    cpb.device = dev, cpb.kv_f16 = kv_f16 == 1;
    if (nth == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        th[nth++] = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (int)cpus;
    }
    lb_model *m = NULL;
    lb_error e;
    lb_status s = lb_model_load(model, &m, &e);
    if (s != LB_OK) return cli_fail_lb(s, &e);
    const lb_model_info *h = lb_model_get_info(m);
    if (h->n_ctx_train > 0 && (p > h->n_ctx_train || n > h->n_ctx_train)) {
        lb_model_free(m);
        return cli_fail("bench: %lld tokens exceed the model's context of %lld", (long long)(p > n ? p : n), (long long)h->n_ctx_train);
    }
    const bool kv16 = cpb.kv_f16 || dev.kind == LB_DEVICE_CUDA; /* a GPU context's cache is F16 */
    bench_info bi = {.model = strrchr(model, '/') ? strrchr(model, '/') + 1 : model, .kv = kv16 ? "f16" : "f32"};
    cpu_model(bi.cpu, sizeof bi.cpu);
    bi.size_mib = (double)h->n_bytes / 1048576.0;
    bi.params_m = (double)h->n_params / 1e6;
    double kv_tok = 2.0 * (double)h->n_layer * (double)(h->n_head_kv * h->head_dim) * (kv16 ? 2 : sizeof(float));
    bi.bytes_tok = weight_bytes(m) + kv_tok * (double)(n + 1) / 2.0;
    int64_t nt_tok = p > n ? p : n;
    int32_t *toks = malloc((size_t)nt_tok * sizeof *toks);
    bench_row rows[2 * MAX_THREADS];
    int nr = 0, rc = toks ? 0 : cli_fail("out of memory");
    uint64_t st = 0x2545F4914F6CDD1DULL;
    for (int64_t i = 0; rc == 0 && i < nt_tok; i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        toks[i] = (int32_t)(st % (uint64_t)h->n_vocab);
    }
    for (int k = 0; rc == 0 && k < nth; k++) {
        if (bandwidth && n > 0 && bi.bw[th[k]] == 0) bi.bw[th[k]] = read_bandwidth(th[k]);
        if (p > 0) {
            bench_row *r = &rows[nr++];
            *r = (bench_row){th[k], "", p, 0, 0, -1};
            snprintf(r->test, sizeof r->test, "pp%lld", (long long)p);
            rc = measure(m, &cpb, th[k], p, 0, (int)reps, toks, r);
        }
        if (rc == 0 && n > 0) {
            bench_row *r = &rows[nr++];
            *r = (bench_row){th[k], "", n, 0, 0, -1};
            snprintf(r->test, sizeof r->test, "tg%lld", (long long)n);
            rc = measure(m, &cpb, th[k], 0, n, (int)reps, toks, r);
            double bw = bi.bw[th[k]];
            if (bw > 0) r->pct = 100.0 * r->mean / (bw * 1e9 / bi.bytes_tok);
        }
    }
    if (rc == 0) print_rows(&bi, rows, nr, fmt);
    free(toks);
    lb_model_free(m);
    return rc;
}
