/*
 * test_hf_config.c - config.json parsing: the seven bundled configs (transformers 5 layout) with their
 * values checked against the files, the same configs rewritten into the transformers 4 layout
 * (rope_theta/rope_scaling at top level, torch_dtype), and the refusals and errors.
 */
#include "io/hf_config.h"
#include "test.h"

#include <math.h>

typedef struct expect {
    const char *dir, *arch, *model_type;
    int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    float eps, theta;
    lb_rope_scaling rope;
    float factor, low, high;
    int64_t orig_ctx;
    int tied, attn_bias, attn_out_bias, mlp_bias, qk_norm;
    int32_t bos, eos;
} expect;

static const expect configs[] = {
    {"models/tiny", "Qwen2ForCausalLM", "qwen2", 8192, 256, 4, 4, 2, 64, 768, 2048, 1e-6f, 1e4f, LB_ROPE_NONE, 1,
     0, 0, 0, 1, 1, 0, 0, 0, 0, 0},
    {"tests/golden/small", "LlamaForCausalLM", "llama", 8192, 512, 6, 8, 4, 64, 1536, 2048, 1e-5f, 1e4f,
     LB_ROPE_NONE, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"tests/golden/conformance/arch/llama3_rope", "LlamaForCausalLM", "llama", 512, 128, 2, 4, 2, 32, 256, 4096,
     1e-5f, 5e5f, LB_ROPE_LLAMA3, 8, 1, 4, 64, 0, 0, 0, 0, 0, 1, 2},
    {"tests/golden/conformance/arch/llama_tied_bf16", "LlamaForCausalLM", "llama", 512, 128, 2, 4, 2, 32, 256, 4096,
     1e-6f, 1e4f, LB_ROPE_NONE, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2},
    {"tests/golden/conformance/arch/mistral", "MistralForCausalLM", "mistral", 512, 128, 2, 4, 2, 32, 256, 4096,
     1e-5f, 1e6f, LB_ROPE_NONE, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2},
    {"tests/golden/conformance/arch/phi3", "Phi3ForCausalLM", "phi3", 512, 128, 2, 4, 4, 32, 256, 4096, 1e-5f,
     1e4f, LB_ROPE_NONE, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2},
    {"tests/golden/conformance/arch/qwen3", "Qwen3ForCausalLM", "qwen3", 512, 128, 2, 4, 2, 48, 256, 4096, 1e-6f,
     1e6f, LB_ROPE_NONE, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2},
};

static void check_info(const char *what, const lb_model_info *i, const expect *e) {
    CHECK(strcmp(i->architecture, e->arch) == 0, "%s: architecture %s", what, i->architecture);
    CHECK(strcmp(i->model_type, e->model_type) == 0, "%s: model_type %s", what, i->model_type);
    CHECK(i->n_vocab == e->n_vocab, "%s: n_vocab %lld", what, (long long)i->n_vocab);
    CHECK(i->n_embd == e->n_embd, "%s: n_embd %lld", what, (long long)i->n_embd);
    CHECK(i->n_layer == e->n_layer, "%s: n_layer %lld", what, (long long)i->n_layer);
    CHECK(i->n_head == e->n_head, "%s: n_head %lld", what, (long long)i->n_head);
    CHECK(i->n_head_kv == e->n_head_kv, "%s: n_head_kv %lld", what, (long long)i->n_head_kv);
    CHECK(i->head_dim == e->head_dim, "%s: head_dim %lld", what, (long long)i->head_dim);
    CHECK(i->n_ff == e->n_ff, "%s: n_ff %lld", what, (long long)i->n_ff);
    CHECK(i->n_ctx_train == e->n_ctx, "%s: n_ctx_train %lld", what, (long long)i->n_ctx_train);
    CHECK(i->rms_eps == e->eps, "%s: rms_eps %g", what, (double)i->rms_eps);
    CHECK(i->rope_theta == e->theta, "%s: rope_theta %g", what, (double)i->rope_theta);
    CHECK(i->rope_scaling == e->rope, "%s: rope_scaling %d", what, (int)i->rope_scaling);
    CHECK(i->rope_factor == e->factor, "%s: rope_factor %g", what, (double)i->rope_factor);
    CHECK(i->rope_low_freq_factor == e->low, "%s: low_freq_factor %g", what, (double)i->rope_low_freq_factor);
    CHECK(i->rope_high_freq_factor == e->high, "%s: high_freq_factor %g", what, (double)i->rope_high_freq_factor);
    CHECK(i->rope_orig_ctx == e->orig_ctx, "%s: rope_orig_ctx %lld", what, (long long)i->rope_orig_ctx);
    CHECK(i->tied_embeddings == e->tied, "%s: tied %d", what, i->tied_embeddings);
    CHECK(i->attn_bias == e->attn_bias, "%s: attn_bias %d", what, i->attn_bias);
    CHECK(i->attn_out_bias == e->attn_out_bias, "%s: attn_out_bias %d", what, i->attn_out_bias);
    CHECK(i->mlp_bias == e->mlp_bias, "%s: mlp_bias %d", what, i->mlp_bias);
    CHECK(i->qk_norm == e->qk_norm, "%s: qk_norm %d", what, i->qk_norm);
    CHECK(i->bos_id == e->bos, "%s: bos %d", what, i->bos_id);
    CHECK(i->eos_id == e->eos, "%s: eos %d", what, i->eos_id);
    CHECK(i->n_params == 0 && i->n_bytes == 0, "%s: n_params/n_bytes are not the parser's", what);
}

/* ---- string helpers ---- */

static char *read_config(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = NULL;
    size_t len = 0;
    lb_error err = {{0}};
    REQUIRE(lb_read_file(path, 1 << 20, &text, &len, &err) == LB_OK, "%s", err.msg);
    return text;
}

/* A copy of s with the first occurrence of old replaced by new_ (which must occur). */
static char *replace(const char *s, const char *old, const char *new_) {
    const char *p = strstr(s, old);
    REQUIRE(p, "\"%s\" not found in config text", old);
    size_t a = (size_t)(p - s), ol = strlen(old), nl = strlen(new_), rest = strlen(p + ol);
    char *out = malloc(a + nl + rest + 1);
    REQUIRE(out, "malloc");
    memcpy(out, s, a);
    memcpy(out + a, new_, nl);
    memcpy(out + a + nl, p + ol, rest + 1);
    return out;
}

/* replace() that frees its input. */
static char *edit(char *s, const char *old, const char *new_) {
    char *r = replace(s, old, new_);
    free(s);
    return r;
}

static void trim(const char **b, const char **e) {
    while (*b < *e && strchr(" \t\r\n", **b)) (*b)++;
    while (*e > *b && strchr(" \t\r\n", (*e)[-1])) (*e)--;
}

/*
 * Rewrite a transformers-5 config.json into the transformers-4 layout: rope_parameters becomes a
 * top-level rope_theta plus rope_scaling (null for the default rope; with "type" instead of "rope_type"
 * when old_type_key), partial_rotary_factor moves to the top level, dtype becomes torch_dtype.
 * Works on the flat rope_parameters objects the bundled configs have.
 */
static char *to_v4(const char *v5, int old_type_key) {
    const char *key = "\"rope_parameters\": {";
    const char *p = strstr(v5, key);
    REQUIRE(p, "no rope_parameters");
    const char *body = p + strlen(key), *end = strchr(body, '}');
    REQUIRE(end, "unterminated rope_parameters");
    char theta[64] = "", partial[64] = "", scaling[1024] = "";
    size_t sl = 0;
    int is_default = 0;
    for (const char *m = body; m < end;) {
        const char *comma = memchr(m, ',', (size_t)(end - m));
        const char *me = comma ? comma : end;
        const char *b = m, *e = me;
        trim(&b, &e);
        const char *colon = memchr(b, ':', (size_t)(e - b));
        REQUIRE(colon, "bad rope_parameters member");
        const char *vb = colon + 1, *ve = e, *kb = b, *ke = colon;
        trim(&vb, &ve);
        trim(&kb, &ke);
        int kl = (int)(ke - kb), vl = (int)(ve - vb);
        if (kl == 12 && strncmp(kb, "\"rope_theta\"", 12) == 0) {
            snprintf(theta, sizeof theta, "%.*s", vl, vb);
        } else if (kl == 23 && strncmp(kb, "\"partial_rotary_factor\"", 23) == 0) {
            snprintf(partial, sizeof partial, "%.*s", vl, vb);
        } else {
            if (kl == 11 && strncmp(kb, "\"rope_type\"", 11) == 0) {
                if (strncmp(vb, "\"default\"", 9) == 0) is_default = 1;
                if (old_type_key) kb = "\"type\"", kl = 6;
            }
            sl += (size_t)snprintf(scaling + sl, sizeof scaling - sl, "%s%.*s: %.*s", sl ? ", " : "", kl, kb, vl, vb);
            REQUIRE(sl < sizeof scaling, "rope_parameters too long");
        }
        m = comma ? comma + 1 : end;
    }
    REQUIRE(theta[0], "rope_parameters without rope_theta");
    char repl[1400];
    snprintf(repl, sizeof repl, "\"rope_scaling\": %s%s%s, \"rope_theta\": %s%s%s", is_default ? "null" : "{",
             is_default ? "" : scaling, is_default ? "" : "}", theta, partial[0] ? ", \"partial_rotary_factor\": " : "",
             partial);
    size_t a = (size_t)(p - v5), rest = strlen(end + 1);
    char *out = malloc(a + strlen(repl) + rest + 1);
    REQUIRE(out, "malloc");
    memcpy(out, v5, a);
    strcpy(out + a, repl);
    strcat(out + a, end + 1);
    if (strstr(out, "\"dtype\"")) out = edit(out, "\"dtype\"", "\"torch_dtype\"");
    return out;
}

static lb_status parse_text(const char *text, lb_model_info *info, lb_error *err) {
    return hf_config_parse(text, strlen(text), info, err);
}

static void expect_fail_(int line, const char *text, lb_status want, const char *sub1, const char *sub2) {
    lb_model_info info;
    memset(&info, 0x5a, sizeof info);
    lb_error err = {{0}};
    lb_status s = parse_text(text, &info, &err);
    CHECK(s == want, "line %d: status %d, want %d; msg: %s", line, s, want, err.msg);
    CHECK(!sub1 || strstr(err.msg, sub1), "line %d: message \"%s\" lacks \"%s\"", line, err.msg, sub1);
    CHECK(!sub2 || strstr(err.msg, sub2), "line %d: message \"%s\" lacks \"%s\"", line, err.msg, sub2);
    CHECK(info.n_vocab == 0x5a5a5a5a5a5a5a5aLL, "line %d: info written on failure", line);
}
#define expect_fail(text, want, sub1, sub2) expect_fail_(__LINE__, text, want, sub1, sub2)

/* Apply one edit to base and expect failure. */
#define expect_edit_fail(base, old, new_, want, sub1, sub2)                                                         \
    do {                                                                                                            \
        char *t_ = replace(base, old, new_);                                                                        \
        expect_fail_(__LINE__, t_, want, sub1, sub2);                                                               \
        free(t_);                                                                                                   \
    } while (0)

static lb_status parse_edit(const char *base, const char *old, const char *new_, lb_model_info *info, lb_error *err) {
    char *t = replace(base, old, new_);
    lb_status s = parse_text(t, info, err);
    free(t);
    return s;
}

/* ---- tests ---- */

static void test_bundled(void) {
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        const expect *e = &configs[c];
        lb_model_info info;
        lb_error err = {{0}};
        lb_status s = hf_config_load(e->dir, &info, &err);
        CHECK(s == LB_OK, "%s: %s", e->dir, err.msg);
        if (s == LB_OK) check_info(e->dir, &info, e);

        char *v5 = read_config(e->dir);
        for (int old_key = 0; old_key < 2; old_key++) {
            char *v4 = to_v4(v5, old_key);
            CHECK(strstr(v4, "rope_parameters") == NULL && strstr(v4, "\"rope_scaling\"") &&
                      strstr(v4, "\"torch_dtype\""),
                  "%s: rewrite failed", e->dir);
            char what[300];
            snprintf(what, sizeof what, "%s (v4%s)", e->dir, old_key ? ", \"type\"" : "");
            s = parse_text(v4, &info, &err);
            CHECK(s == LB_OK, "%s: %s", what, err.msg);
            if (s == LB_OK) check_info(what, &info, e);
            free(v4);
        }
        free(v5);
    }
}

static void test_v4_variants(void) {
    char *base = read_config("tests/golden/conformance/arch/llama3_rope");
    char *v4 = to_v4(base, 0);
    CHECK(strstr(v4, "\"rope_scaling\": {\"factor\": 8.0") && strstr(v4, "\"rope_type\": \"llama3\"}") &&
              strstr(v4, "\"rope_theta\": 500000.0"),
          "llama3 v4 text: %s", v4);

    /* A hand-written transformers-4 Llama-3.1-style config. */
    const char *llama31 =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 1000,\n"
        " \"hidden_size\": 256, \"intermediate_size\": 512, \"num_hidden_layers\": 3, \"num_attention_heads\": 8,\n"
        " \"num_key_value_heads\": 2, \"max_position_embeddings\": 131072, \"rms_norm_eps\": 1e-05,\n"
        " \"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0,\n"
        " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},\n"
        " \"torch_dtype\": \"bfloat16\", \"bos_token_id\": 998, \"eos_token_id\": [999, 997, 996],\n"
        " \"hidden_act\": \"silu\", \"tie_word_embeddings\": false, \"attention_bias\": true, \"mlp_bias\": true,\n"
        " \"pretraining_tp\": 1, \"transformers_version\": \"4.43.0\"}";
    lb_model_info info;
    lb_error err = {{0}};
    lb_status s = parse_text(llama31, &info, &err);
    CHECK(s == LB_OK, "llama31: %s", err.msg);
    if (s == LB_OK) {
        CHECK(info.head_dim == 32 && info.n_head_kv == 2 && info.n_ctx_train == 131072, "llama31 sizes");
        CHECK(info.rope_scaling == LB_ROPE_LLAMA3 && info.rope_factor == 8.0f && info.rope_low_freq_factor == 1.0f &&
                  info.rope_high_freq_factor == 4.0f && info.rope_orig_ctx == 8192 && info.rope_theta == 500000.0f,
              "llama31 rope");
        CHECK(info.bos_id == 998 && info.eos_id == 999, "llama31 bos %d eos %d", info.bos_id, info.eos_id);
        CHECK(info.attn_bias && info.attn_out_bias && info.mlp_bias && !info.qk_norm && !info.tied_embeddings,
              "llama31 flags");
    }

    /* A transformers-4 linear rope, spelled with "type". */
    char *lin = replace(llama31, "{\"factor\": 8.0, \"low_freq_factor\": 1.0,\n"
                                 " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, "
                                 "\"rope_type\": \"llama3\"}",
                        "{\"type\": \"linear\", \"factor\": 2.0}");
    s = parse_text(lin, &info, &err);
    CHECK(s == LB_OK && info.rope_scaling == LB_ROPE_LINEAR && info.rope_factor == 2.0f && info.rope_orig_ctx == 0,
          "v4 linear: %s", err.msg);
    /* transformers 5 linear */
    s = parse_edit(base, "\"rope_type\": \"llama3\"", "\"rope_type\": \"linear\"", &info, &err);
    CHECK(s == LB_OK && info.rope_scaling == LB_ROPE_LINEAR && info.rope_factor == 8.0f, "v5 linear: %s", err.msg);
    /* rope_scaling {"type": "default"} and rope_scaling null */
    s = parse_edit(lin, "\"type\": \"linear\", \"factor\": 2.0", "\"type\": \"default\"", &info, &err);
    CHECK(s == LB_OK && info.rope_scaling == LB_ROPE_NONE && info.rope_factor == 1.0f, "v4 default: %s", err.msg);
    s = parse_edit(lin, "{\"type\": \"linear\", \"factor\": 2.0}", "null", &info, &err);
    CHECK(s == LB_OK && info.rope_scaling == LB_ROPE_NONE && info.rope_theta == 500000.0f, "v4 null: %s", err.msg);
    /* rope_theta absent: 10000 */
    s = parse_edit(lin, "\"rope_theta\": 500000.0,", "", &info, &err);
    CHECK(s == LB_OK && info.rope_theta == 10000.0f, "default theta: %s", err.msg);
    /* no architectures: model_type alone */
    s = parse_edit(lin, "\"architectures\": [\"LlamaForCausalLM\"],", "", &info, &err);
    CHECK(s == LB_OK && strcmp(info.architecture, "LlamaForCausalLM") == 0, "model_type only: %s", err.msg);
    /* num_key_value_heads absent; eos absent; bos null; head_dim null */
    char *t = edit(replace(lin, "\"num_key_value_heads\": 2,", ""), "\"eos_token_id\": [999, 997, 996],", "");
    t = edit(t, "\"bos_token_id\": 998", "\"bos_token_id\": null, \"head_dim\": null");
    s = parse_text(t, &info, &err);
    CHECK(s == LB_OK && info.n_head_kv == 8 && info.bos_id == -1 && info.eos_id == -1 && info.head_dim == 32,
          "defaults: %s", err.msg);
    free(t);
    /* hidden_activation spelling */
    s = parse_edit(lin, "\"hidden_act\"", "\"hidden_activation\"", &info, &err);
    CHECK(s == LB_OK, "hidden_activation: %s", err.msg);

    /* Qwen2 sliding window configured but switched off, and a window as long as the context */
    char *tiny = read_config("models/tiny");
    s = parse_edit(tiny, "\"sliding_window\": null", "\"sliding_window\": 512", &info, &err);
    CHECK(s == LB_OK, "qwen2 window unused: %s", err.msg);
    char *mis = read_config("tests/golden/conformance/arch/mistral");
    s = parse_edit(mis, "\"sliding_window\": null", "\"sliding_window\": 4096", &info, &err);
    CHECK(s == LB_OK, "mistral window = context: %s", err.msg);
    /* Qwen2 v4 layout (no layer_types) with use_sliding_window but every layer below max_window_layers */
    t = edit(replace(tiny, "\"sliding_window\": null", "\"sliding_window\": 512"), "\"use_sliding_window\": false",
             "\"use_sliding_window\": true");
    t = edit(t, "\"layer_types\": [", "\"unused_layer_types\": [");
    s = parse_text(t, &info, &err);
    CHECK(s == LB_OK, "qwen2 window below max_window_layers: %s", err.msg);
    expect_edit_fail(t, "\"max_window_layers\": 28", "\"max_window_layers\": 2", LB_ERR_UNSUPPORTED,
                     "config.json: sliding-window attention (sliding_window 512", "not supported");
    free(t);

    free(tiny);
    free(mis);
    free(lin);
    free(v4);
    free(base);
}

static void test_errors(void) {
    char *small = read_config("tests/golden/small");
    char *tiny = read_config("models/tiny");
    char *phi3 = read_config("tests/golden/conformance/arch/phi3");
    char *mis = read_config("tests/golden/conformance/arch/mistral");
    char *l3 = read_config("tests/golden/conformance/arch/llama3_rope");

    expect_edit_fail(small, "\"LlamaForCausalLM\"", "\"GPTNeoXForCausalLM\"", LB_ERR_UNSUPPORTED,
                     "config.json: architecture \"GPTNeoXForCausalLM\" is not supported (supported: ",
                     "Qwen3ForCausalLM");
    expect_edit_fail(small, "\"model_type\": \"llama\"", "\"model_type\": \"qwen2\"", LB_ERR_FORMAT,
                     "model_type \"qwen2\" does not match architecture \"LlamaForCausalLM\"", NULL);
    expect_edit_fail(l3, "\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\"", LB_ERR_UNSUPPORTED,
                     "config.json: rope type \"yarn\" is not supported", NULL);
    char *v4 = to_v4(l3, 1);
    expect_edit_fail(v4, "\"type\": \"llama3\"", "\"type\": \"yarn\"", LB_ERR_UNSUPPORTED,
                     "rope type \"yarn\" is not supported", NULL);
    expect_edit_fail(v4, "\"type\": \"llama3\"", "\"type\": \"dynamic\"", LB_ERR_UNSUPPORTED,
                     "rope type \"dynamic\" is not supported", NULL);
    expect_edit_fail(v4, "\"low_freq_factor\": 1.0,", "", LB_ERR_FORMAT, "missing low_freq_factor", NULL);
    expect_edit_fail(v4, "\"high_freq_factor\": 4.0", "\"high_freq_factor\": 1.0", LB_ERR_FORMAT,
                     "high_freq_factor must exceed low_freq_factor", NULL);
    expect_edit_fail(l3, "\"factor\": 8.0,", "", LB_ERR_FORMAT, "missing factor", NULL);
    expect_edit_fail(l3, "\"factor\": 8.0,", "\"factor\": -1,", LB_ERR_FORMAT, "factor must be a positive", NULL);
    expect_edit_fail(l3, "\"rope_theta\": 500000.0", "\"rope_theta\": 0", LB_ERR_FORMAT,
                     "rope_theta must be a positive", NULL);
    expect_edit_fail(mis, "\"sliding_window\": null", "\"sliding_window\": 1024", LB_ERR_UNSUPPORTED,
                     "config.json: sliding-window attention (sliding_window 1024 < max_position_embeddings 4096)",
                     "not supported");
    expect_edit_fail(phi3, "\"sliding_window\": null", "\"sliding_window\": 2047", LB_ERR_UNSUPPORTED,
                     "sliding-window attention", NULL);
    /* Qwen2 in the transformers-5 layout: a sliding layer */
    char *t = edit(replace(tiny, "\"sliding_window\": null", "\"sliding_window\": 512"), "\"full_attention\",\n",
                   "\"sliding_attention\",\n");
    expect_fail(t, LB_ERR_UNSUPPORTED, "sliding-window attention (sliding_window 512", NULL);
    free(t);
    expect_edit_fail(phi3, "\"partial_rotary_factor\": 1.0", "\"partial_rotary_factor\": 0.5", LB_ERR_UNSUPPORTED,
                     "partial_rotary_factor 0.5 is not supported", NULL);
    char *pv4 = to_v4(phi3, 0);
    CHECK(strstr(pv4, "\"partial_rotary_factor\": 1.0") != NULL, "phi3 v4 text keeps partial_rotary_factor");
    expect_edit_fail(pv4, "\"partial_rotary_factor\": 1.0", "\"partial_rotary_factor\": 0.75", LB_ERR_UNSUPPORTED,
                     "partial_rotary_factor 0.75 is not supported", NULL);
    expect_edit_fail(pv4, "\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": [1]}",
                     LB_ERR_UNSUPPORTED, "rope type \"longrope\" is not supported", NULL);
    free(pv4);
    expect_edit_fail(small, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", LB_ERR_UNSUPPORTED,
                     "hidden_act \"gelu\" is not supported", NULL);
    expect_edit_fail(small, "\"hidden_size\": 512,", "", LB_ERR_FORMAT, "config.json: missing hidden_size", NULL);
    expect_edit_fail(small, "\"vocab_size\": 8192", "\"vocab_size\": null", LB_ERR_FORMAT, "missing vocab_size", NULL);
    expect_edit_fail(small, "\"num_attention_heads\": 8", "\"num_attention_heads\": 0", LB_ERR_FORMAT,
                     "config.json: num_attention_heads must be positive", NULL);
    expect_edit_fail(small, "\"num_hidden_layers\": 6", "\"num_hidden_layers\": -6", LB_ERR_FORMAT,
                     "num_hidden_layers must be positive", NULL);
    expect_edit_fail(small, "\"intermediate_size\": 1536", "\"intermediate_size\": 15.5", LB_ERR_FORMAT,
                     "intermediate_size must be an integer", NULL);
    expect_edit_fail(small, "\"hidden_size\": 512", "\"hidden_size\": \"512\"", LB_ERR_FORMAT,
                     "hidden_size must be an integer", NULL);
    expect_edit_fail(small, "\"vocab_size\": 8192", "\"vocab_size\": 2147483648", LB_ERR_FORMAT,
                     "vocab_size 2147483648 is too large", NULL);
    /* heads that do not divide (tiny has no head_dim key) */
    expect_edit_fail(tiny, "\"num_attention_heads\": 4", "\"num_attention_heads\": 3", LB_ERR_FORMAT,
                     "hidden_size 256 is not divisible by num_attention_heads 3", NULL);
    expect_edit_fail(small, "\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3", LB_ERR_FORMAT,
                     "num_attention_heads 8 is not a multiple of num_key_value_heads 3", NULL);
    expect_edit_fail(small, "\"num_key_value_heads\": 4", "\"num_key_value_heads\": 16", LB_ERR_FORMAT,
                     "num_attention_heads 8 is not a multiple of num_key_value_heads 16", NULL);
    expect_edit_fail(small, "\"eos_token_id\": 0", "\"eos_token_id\": 8192", LB_ERR_FORMAT,
                     "eos_token_id 8192 is outside the vocabulary", NULL);
    expect_edit_fail(small, "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0", LB_ERR_FORMAT,
                     "tie_word_embeddings must be true or false", NULL);
    expect_edit_fail(small, "\"rope_parameters\": {", "\"rope_parameters\": [{", LB_ERR_FORMAT, "config.json: line",
                     NULL);
    expect_edit_fail(small, "\"bos_token_id\": 0,", "\"bos_token_id\": 0", LB_ERR_FORMAT, "config.json: line", NULL);
    expect_fail("", LB_ERR_FORMAT, "config.json", NULL);
    expect_fail("[]", LB_ERR_FORMAT, "config.json: not a JSON object", NULL);
    expect_fail("{}", LB_ERR_FORMAT, "config.json: missing architectures and model_type", NULL);
    expect_fail("{\"model_type\": \"gpt2\"}", LB_ERR_UNSUPPORTED, "model_type \"gpt2\" is not supported", NULL);
    expect_fail("{\"architectures\": []}", LB_ERR_FORMAT, "architectures must be", NULL);

    lb_model_info info;
    lb_error err = {{0}};
    CHECK(hf_config_load("/nonexistent-dir", &info, &err) == LB_ERR_IO &&
              strstr(err.msg, "/nonexistent-dir/config.json: cannot open"),
          "missing config.json: %s", err.msg);
    CHECK(hf_config_parse(NULL, 0, &info, NULL) == LB_ERR_ARG, "NULL text");

    free(v4);
    free(small);
    free(tiny);
    free(phi3);
    free(mis);
    free(l3);
}

int main(void) {
    test_bundled();
    test_v4_variants();
    test_errors();
    TEST_DONE();
}
