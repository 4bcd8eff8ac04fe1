/*
 * sampler.c - next-token choice: greedy, or temperature + top-k + top-p (nucleus) sampling with a
 * splitmix64-seeded xorshift64* generator, deterministic for a given state.
 */
#include "../core/core.h"

#include <math.h>
#include <stdlib.h>

static uint64_t next_u64(uint64_t *s) {
    if (*s == 0) *s = 0x9e3779b97f4a7c15ULL;
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

typedef struct cand {
    float logit;
    int32_t id;
} cand;

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

int32_t lb_sample(float *logits, int64_t n_vocab, const lb_sampler_params *p, uint64_t *state) {
    if (n_vocab <= 0) return -1;
    int64_t best = 0;
    for (int64_t i = 1; i < n_vocab; i++)
        if (logits[i] > logits[best]) best = i;
    if (!p || p->temperature <= 0.0f) return (int32_t)best;
    cand *c = malloc((size_t)n_vocab * sizeof *c);
    if (!c) return (int32_t)best;
    for (int64_t i = 0; i < n_vocab; i++) c[i] = (cand){logits[i] / p->temperature, (int32_t)i};
    qsort(c, (size_t)n_vocab, sizeof *c, cmp_cand);
    int64_t n = n_vocab;
    if (p->top_k > 0 && p->top_k < n) n = p->top_k;
    double sum = 0.0;
    double *pr = malloc((size_t)n * sizeof *pr);
    if (!pr) {
        free(c);
        return (int32_t)best;
    }
    for (int64_t i = 0; i < n; i++) sum += pr[i] = exp((double)(c[i].logit - c[0].logit));
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        double acc = 0.0;
        int64_t keep = n;
        for (int64_t i = 0; i < n; i++) {
            acc += pr[i] / sum;
            if (acc >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += pr[i];
    }
    double u = (double)(next_u64(state) >> 11) * (1.0 / 9007199254740992.0) * sum, acc = 0.0;
    int32_t pick = c[n - 1].id;
    for (int64_t i = 0; i < n; i++) {
        acc += pr[i];
        if (u < acc) {
            pick = c[i].id;
            break;
        }
    }
    free(pr);
    free(c);
    return pick;
}
