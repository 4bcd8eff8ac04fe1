/*
 * act_outliers.c - activation outlier channels of a model: for every matrix-product input (attention in,
 * attention output in, FFN in, FFN down in, head in) the largest |x| each channel reaches over calibration
 * windows, and the ratio of the largest channel's value to the median channel's. AWQ and LLM.int8 exist
 * because real models trained on trillions of tokens have channels far above the median; this measures
 * how far, per linear input, for docs/QUALITY.md. The same ratio of the channels' mean |x| is printed too:
 * a channel can be large on a few tokens (massive activations) or on all of them.
 *
 * usage: act_outliers MODEL TEXT [windows=16] [ctx=512] [threads=2]
 * Windows are the first ones of TEXT (non-overlapping). Prints one line per point and layer, then the
 * maximum and median ratio per point over layers, and a JSON summary line.
 */
#include "lowbit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_POINTS 5

static const char *POINT_NAME[N_POINTS] = {"attn_in", "attn_out_in", "ffn_in", "ffn_down_in", "output_in"};

typedef struct stats {
    float *maxabs[N_POINTS]; /* per point: (n_layer or 1, dim) */
    double *sumabs[N_POINTS]; /* the same shape: sum of |x| over tokens */
    int64_t tokens[N_POINTS];
    int64_t dim[N_POINTS];
    int64_t n_layer;
} stats;

static void observe(void *user, int64_t layer, lb_obs_point pt, const float *x, int64_t T, int64_t dim) {
    stats *s = user;
    int64_t off = (pt == LB_OBS_OUTPUT_IN ? 0 : layer) * dim;
    float *m = s->maxabs[pt] + off;
    double *sa = s->sumabs[pt] + off;
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < dim; j++) {
            float a = fabsf(x[t * dim + j]);
            if (a > m[j]) m[j] = a;
            sa[j] += a;
        }
    if (layer <= 0) s->tokens[pt] += T;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* the median of sorted v[0..n) */
static double median_sorted(const float *v, int64_t n) { return n % 2 ? v[n / 2] : 0.5 * ((double)v[n / 2 - 1] + v[n / 2]); }

/* max / median of v[0..n) (v is sorted in place) */
static double ratio(float *v, int64_t n) {
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    double med = median_sorted(v, n);
    return med > 0 ? v[n - 1] / med : INFINITY;
}

static int die(const char *what, lb_status s, const lb_error *e) {
    fprintf(stderr, "act_outliers: %s: %s (%s)\n", what, e->msg, lb_status_str(s));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: act_outliers MODEL TEXT [windows=16] [ctx=512] [threads=2]\n");
        return 2;
    }
    int64_t nw = argc > 3 ? atoll(argv[3]) : 16, ctx = argc > 4 ? atoll(argv[4]) : 512;
    int threads = argc > 5 ? atoi(argv[5]) : 2;
    if (nw < 1 || ctx < 2 || threads < 1) {
        fprintf(stderr, "act_outliers: windows, ctx and threads must be positive\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    if (!text || fread(text, 1, (size_t)len, f) != (size_t)len) { fclose(f); fprintf(stderr, "act_outliers: cannot read %s\n", argv[2]); return 1; }
    fclose(f);

    lb_error e;
    lb_model *m = NULL;
    lb_tokenizer *tok = NULL;
    lb_context *c = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    lb_status s;
    if ((s = lb_model_load(argv[1], &m, &e)) != LB_OK) return die("load", s, &e);
    if ((s = lb_tokenizer_load(argv[1], &tok, &e)) != LB_OK) return die("tokenizer", s, &e);
    if ((s = lb_tokenizer_encode(tok, text, (size_t)len, &ids, &n_ids, &e)) != LB_OK) return die("tokenize", s, &e);
    if (n_ids / ctx < nw) nw = n_ids / ctx;
    if (nw < 1) { fprintf(stderr, "act_outliers: text shorter than one window\n"); return 1; }
    const lb_model_info *h = lb_model_get_info(m);
    stats st = {{NULL}, {NULL}, {0}, {h->n_embd, h->n_head * h->head_dim, h->n_embd, h->n_ff, h->n_embd}, h->n_layer};
    for (int k = 0; k < N_POINTS; k++) {
        size_t n = (size_t)(k == LB_OBS_OUTPUT_IN ? 1 : h->n_layer) * (size_t)st.dim[k];
        st.maxabs[k] = calloc(n, sizeof(float));
        st.sumabs[k] = calloc(n, sizeof(double));
        if (!st.maxabs[k] || !st.sumabs[k]) { fprintf(stderr, "act_outliers: out of memory\n"); return 1; }
    }
    lb_context_params cp = {.n_ctx = ctx, .n_threads = threads, .device = {LB_DEVICE_CPU, 0}};
    if ((s = lb_context_new(m, &cp, &c, &e)) != LB_OK) return die("context", s, &e);
    lb_context_set_observer(c, observe, &st);
    float *logits = malloc((size_t)ctx * (size_t)h->n_vocab * sizeof *logits); /* the head runs only for logits */
    if (!logits) { fprintf(stderr, "act_outliers: out of memory\n"); return 1; }
    for (int64_t w = 0; w < nw; w++) {
        lb_context_reset(c);
        if ((s = lb_context_eval(c, ids + w * ctx, ctx, logits, 1, &e)) != LB_OK) return die("eval", s, &e);
    }
    printf("model %s, %lld windows of %lld tokens of %s\n", argv[1], (long long)nw, (long long)ctx, argv[2]);
    printf("%-12s %6s %12s %12s %10s %12s\n", "input", "layer", "max |x|", "median", "max/median", "mean |x| r.");
    double worst[N_POINTS] = {0}, med_of_ratio[N_POINTS] = {0}, worst_mean[N_POINTS] = {0};
    for (int k = 0; k < N_POINTS; k++) {
        int64_t nl = k == LB_OBS_OUTPUT_IN ? 1 : h->n_layer, d = st.dim[k];
        float *r = malloc((size_t)nl * sizeof *r), *tmp = malloc((size_t)d * sizeof *tmp);
        if (!r || !tmp) { fprintf(stderr, "act_outliers: out of memory\n"); return 1; }
        for (int64_t l = 0; l < nl; l++) {
            memcpy(tmp, st.maxabs[k] + l * d, (size_t)d * sizeof *tmp);
            double q = ratio(tmp, d);
            double med = median_sorted(tmp, d), maxv = tmp[d - 1];
            for (int64_t j = 0; j < d; j++) tmp[j] = (float)(st.sumabs[k][l * d + j] / (double)(st.tokens[k] ? st.tokens[k] : 1));
            double qm = ratio(tmp, d);
            if (qm > worst_mean[k]) worst_mean[k] = qm;
            printf("%-12s %6lld %12.4g %12.4g %10.1f %12.1f\n", POINT_NAME[k], (long long)(k == LB_OBS_OUTPUT_IN ? -1 : l),
                   maxv, med, q, qm);
            r[l] = (float)q;
            if (q > worst[k]) worst[k] = q;
        }
        qsort(r, (size_t)nl, sizeof *r, cmp_float);
        med_of_ratio[k] = median_sorted(r, nl);
        free(r);
        free(tmp);
    }
    printf("\n%-12s %14s %18s %16s\n", "input", "max ratio", "median over layers", "max mean-|x| r.");
    for (int k = 0; k < N_POINTS; k++) printf("%-12s %14.1f %18.1f %16.1f\n", POINT_NAME[k], worst[k], med_of_ratio[k], worst_mean[k]);
    printf("{\"model\": \"%s\", \"windows\": %lld, \"ctx\": %lld", argv[1], (long long)nw, (long long)ctx);
    for (int k = 0; k < N_POINTS; k++)
        printf(", \"%s_max\": %.2f, \"%s_median\": %.2f, \"%s_mean_abs_max\": %.2f", POINT_NAME[k], worst[k], POINT_NAME[k],
               med_of_ratio[k], POINT_NAME[k], worst_mean[k]);
    printf("}\n");
    for (int k = 0; k < N_POINTS; k++) {
        free(st.maxabs[k]);
        free(st.sumabs[k]);
    }
    free(logits);
    lb_context_free(c);
    lb_free(ids);
    lb_tokenizer_free(tok);
    lb_model_free(m);
    free(text);
    return 0;
}
