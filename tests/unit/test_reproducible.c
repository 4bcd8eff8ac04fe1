/*
 * test_reproducible.c - the forward pass gives the same bits with the reference kernels (LB_FORCE_REF=1)
 * and with the fastest kernels of this CPU: logits of every position for the bundled tiny model (F16 HF
 * weights: the float path) and for llama.cpp's GGUF files of it (q8_0, q4_0, q4_k_m, q2_k, q3_k_m, iq4_xs:
 * the quantized path), at 1 and 2 threads, and with the kernels capped at AVX2 (LB_KERNELS=avx2). The kernel
 * choice is fixed per process, so the test runs itself with "--dump" under each setting and compares bytes.
 */
#include "test.h"

#include "lowbit.h"
#include "core/core.h"

#include <stdint.h>

static const char *MODELS[] = {"models/tiny", "tiny-q8_0.gguf", "tiny-q4_0.gguf", "tiny-q4_k_m.gguf", "tiny-q2_k.gguf",
                               "tiny-q3_k_m-imat.gguf", "tiny-iq4_xs.gguf"};
#define N_MODELS (int)(sizeof MODELS / sizeof *MODELS)
#define N_TOK 40

/* kernel name, then for each model and thread count the logits of all positions, as raw floats */
static int dump(void) {
    printf("%s\n", lb_cpu_kernels_name());
    int32_t toks[N_TOK];
    for (int i = 0; i < N_TOK; i++) toks[i] = (int32_t)((i * 2654435761u) % 8000u);
    for (int k = 0; k < N_MODELS; k++) {
        const char *path = k == 0 ? MODELS[k] : test_gguf(MODELS[k]);
        lb_model *m;
        lb_error e;
        if (lb_model_load(path, &m, &e) != LB_OK) {
            fprintf(stderr, "%s: %s\n", path, e.msg);
            return 1;
        }
        int64_t V = lb_model_get_info(m)->n_vocab;
        float *lg = malloc((size_t)(N_TOK * V) * sizeof *lg);
        for (int nt = 1; nt <= 2; nt++) {
            lb_context *c;
            lb_context_params cp = {.n_ctx = N_TOK, .n_threads = nt, .device = {LB_DEVICE_CPU, 0}};
            if (!lg || lb_context_new(m, &cp, &c, &e) != LB_OK || lb_context_eval(c, toks, N_TOK, lg, 1, &e) != LB_OK) return 1;
            fwrite(lg, sizeof *lg, (size_t)(N_TOK * V), stdout);
            lb_context_free(c);
        }
        free(lg);
        lb_model_free(m);
    }
    return 0;
}

static char *run_self(const char *self, const char *env, size_t *len) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s' --dump", env, self);
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    int rc = pclose(f);
    if (rc != 0) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--dump")) return dump();
    size_t la = 0, lb = 0, lc = 0;
    char *a = run_self(argv[0], "LB_FORCE_REF=1", &la), *b = run_self(argv[0], "LB_FORCE_REF=0", &lb);
    char *c = run_self(argv[0], "LB_FORCE_REF=0 LB_KERNELS=avx2", &lc); /* AVX2 where the default is AVX-512 */
    REQUIRE(c, "the --dump run with LB_KERNELS=avx2 failed");
    char *ec = memchr(c, '\n', lc);
    REQUIRE(ec, "no kernel name in the avx2 dump");
    CHECK(lc - (size_t)(ec - c) == lb - (size_t)(memchr(b, '\n', lb) ? (char *)memchr(b, '\n', lb) - b : 0) &&
              memcmp(ec, memchr(b, '\n', lb), lc - (size_t)(ec - c)) == 0,
          "logits differ between the %.*s kernels and the default ones", (int)(ec - c), c);
    free(c);
    REQUIRE(a && b, "the --dump runs failed");
    char *ea = memchr(a, '\n', la), *eb = memchr(b, '\n', lb);
    REQUIRE(ea && eb, "no kernel name in the dumps");
    printf("kernels: \"%.*s\" and \"%.*s\"\n", (int)(ea - a), a, (int)(eb - b), b);
    CHECK(ea - a == 3 && !memcmp(a, "ref", 3), "LB_FORCE_REF=1 did not pin the reference kernels");
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && lb_cpu_has_f16c())
        CHECK(!(eb - b == 3 && !memcmp(b, "ref", 3)), "this CPU has AVX2 but the default run used the reference kernels");
#endif
    size_t pa = (size_t)(ea - a) + 1, pb = (size_t)(eb - b) + 1;
    CHECK(la - pa == lb - pb && la - pa > 0, "dump sizes differ: %zu vs %zu", la - pa, lb - pb);
    if (la - pa == lb - pb) {
        size_t per = (la - pa) / (2 * N_MODELS); /* same vocabulary for every model of tiny */
        for (int k = 0; k < N_MODELS; k++)
            for (int t = 0; t < 2; t++) {
                size_t off = (size_t)(2 * k + t) * per;
                CHECK(memcmp(a + pa + off, b + pb + off, per) == 0, "%s, %d thread(s): logits differ between the reference and the %.*s kernels",
                      MODELS[k], t + 1, (int)(eb - b), b);
            }
        /* and thread count invariance within one run */
        for (int k = 0; k < N_MODELS; k++)
            CHECK(memcmp(b + pb + (size_t)(2 * k) * per, b + pb + (size_t)(2 * k + 1) * per, per) == 0, "%s: 1 and 2 threads differ", MODELS[k]);
    }
    free(a);
    free(b);
    TEST_DONE();
}
