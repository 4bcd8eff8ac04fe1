/*
 * test_mix.c - the mixture rules (src/algo/mix.c) against what llama-quantize actually chose: every
 * tensor type in the GGUF files llama.cpp wrote from our models (tests/golden/gguf, and the small-*
 * files in $LB_SHARED/golden/gguf), with and without an importance matrix; plus the shape fallbacks,
 * --pure and the overrides.
 */
#include "algo/mix.h"
#include "io/gguf.h"
#include "quant/quant.h"
#include "test.h"

#include <regex.h>

static void check_file(const char *path, const char *ftype, bool imatrix) {
    gguf_file *g = NULL;
    lb_error e;
    REQUIRE(gguf_open(path, &g, &e) == LB_OK, "%s", e.msg);
    int64_t n_layer = 0, n_head = 0, n_kv = 0;
    size_t al;
    const char *arch = gguf_get_str(g, "general.architecture", &al);
    char key[128];
    snprintf(key, sizeof key, "%.*s.block_count", (int)al, arch);
    gguf_get_int(g, key, &n_layer);
    snprintf(key, sizeof key, "%.*s.attention.head_count", (int)al, arch);
    gguf_get_int(g, key, &n_head);
    snprintf(key, sizeof key, "%.*s.attention.head_count_kv", (int)al, arch);
    gguf_get_int(g, key, &n_kv);
    lb_mix m = {(lb_ftype)lb_ftype_from_name(ftype), n_layer, n_head / n_kv, gguf_find_tensor(g, "output.weight") == NULL,
                imatrix, false, -1, -1, 0, NULL, NULL, 0, 0};
    int bad = 0, n = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        lb_type want = t->type, got = LB_TYPE_F32;
        bool fb;
        if (lb_mix_quantizable(t->name, t->n_dims)) got = lb_mix_choose(&m, t->name, t->ne[0], &fb);
        n++;
        if (got != want) {
            bad++;
            fprintf(stderr, "  %s %s: llama.cpp %s, lowbit %s\n", path, t->name, lb_type_name(want), lb_type_name(got));
        }
    }
    CHECK(bad == 0, "%s: %d of %d tensor types differ from llama-quantize's", path, bad, n);
    printf("%s (%s%s): %d tensors, types as llama-quantize chose\n", path, ftype, imatrix ? " + imatrix" : "", n - bad);
    gguf_close(g);
}

static void test_fallbacks(void) {
    lb_mix m = {LB_FTYPE_Q4_K_M, 32, 1, false, false, false, -1, -1, 0, NULL, NULL, 0, 0};
    bool fb;
    CHECK(lb_mix_choose(&m, "blk.0.ffn_gate.weight", 4096, &fb) == LB_TYPE_Q4_K && !fb, "q4_k bulk");
    CHECK(lb_mix_choose(&m, "blk.0.ffn_gate.weight", 4096 + 32, &fb) == LB_TYPE_Q5_0 && fb, "q4_k -> q5_0 fallback");
    CHECK(lb_mix_choose(&m, "blk.0.ffn_gate.weight", 4096 + 16, &fb) == LB_TYPE_F16 && fb, "-> f16 fallback");
    CHECK(lb_mix_choose(&m, "output.weight", 4096 + 32, &fb) == LB_TYPE_Q8_0 && fb, "q6_k -> q8_0 fallback");
    m.ftype = LB_FTYPE_IQ4_XS;
    CHECK(lb_mix_choose(&m, "blk.0.attn_q.weight", 4096 + 32, &fb) == LB_TYPE_IQ4_NL && fb, "iq4_xs -> iq4_nl");
    m.ftype = LB_FTYPE_Q2_K;
    CHECK(lb_mix_choose(&m, "blk.0.attn_q.weight", 4096 + 32, &fb) == LB_TYPE_Q4_0 && fb, "q2_k -> q4_0");
    /* use_more_bits on 32 layers: 0-3, 6, 9, ..., 27, 28-31 get Q6_K for q4_k_m attn_v */
    lb_mix q = {LB_FTYPE_Q4_K_M, 32, 1, false, false, false, -1, -1, 0, NULL, NULL, 0, 0};
    const int more[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    int k = 0, ok = 1;
    for (int i = 0; i < 32; i++) {
        bool want = k < 16 && more[k] == i;
        if (want) k++;
        ok &= (lb_mix_choose(&q, "blk.x.attn_v.weight", 4096, &fb) == LB_TYPE_Q6_K) == want;
    }
    CHECK(ok, "use_more_bits layer set for 32 layers");
    /* --pure and overrides */
    regex_t re[2];
    REQUIRE(regcomp(&re[0], "ffn_down", REG_EXTENDED | REG_NOSUB) == 0, "regcomp");
    REQUIRE(regcomp(&re[1], "^blk\\.0\\.", REG_EXTENDED | REG_NOSUB) == 0, "regcomp");
    lb_type ot[2] = {LB_TYPE_Q8_0, LB_TYPE_Q5_K};
    lb_mix p = {LB_FTYPE_Q4_K_M, 8, 1, true, false, true, -1, LB_TYPE_Q4_0, 2, re, ot, 0, 0};
    CHECK(lb_mix_choose(&p, "token_embd.weight", 4096, &fb) == LB_TYPE_Q4_0, "token embedding type on a tied model");
    CHECK(lb_mix_choose(&p, "blk.3.attn_v.weight", 4096, &fb) == LB_TYPE_Q4_K, "pure: no bump");
    CHECK(lb_mix_choose(&p, "blk.3.ffn_down.weight", 4096, &fb) == LB_TYPE_Q8_0, "override 1");
    CHECK(lb_mix_choose(&p, "blk.0.attn_q.weight", 4096, &fb) == LB_TYPE_Q5_K, "override 2");
    p.pure = false;
    p.token_embd_type = -1;
    p.output_type = LB_TYPE_Q8_0;
    CHECK(lb_mix_choose(&p, "token_embd.weight", 4096, &fb) == LB_TYPE_Q8_0, "output type applies to the tied embedding");
    regfree(&re[0]);
    regfree(&re[1]);
    CHECK(lb_ftype_from_name("Q4_K_M") == LB_FTYPE_Q4_K_M && lb_ftype_from_name("q4_k_x") < 0, "names");
}

int main(void) {
    const char *tiny[][2] = {{"q8_0", "q8_0"}, {"q4_0", "q4_0"}, {"q4_k_m", "q4_k_m"}, {"q2_k", "q2_k"}, {"iq4_xs", "iq4_xs"}};
    char path[512];
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++) {
        snprintf(path, sizeof path, "%s/golden/gguf/tiny-%s.gguf", test_shared_dir(), tiny[i][0]);
        check_file(path, tiny[i][1], false);
    }
    const char *imat[] = {"q4_k_m", "q3_k_m", "q2_k"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/golden/gguf/tiny-%s-imat.gguf", test_shared_dir(), imat[i]);
        check_file(path, imat[i], true);
        snprintf(path, sizeof path, "%s/golden/gguf/small-%s-imat.gguf", test_shared_dir(), imat[i]);
        check_file(path, imat[i], true);
    }
    test_fallbacks();
    TEST_DONE();
}
