/*
 * mix.c - llama-quantize's mixture rules (llama.cpp src/llama-quant.cpp, llama_tensor_get_type_impl,
 * as summarized in docs/formats.md 2.7) for non-MoE Llama-like models, with lowbit's overrides.
 */
#include "mix.h"

#include <regex.h>
#include <string.h>
#include <strings.h>

static const lb_ftype_info FTYPES[LB_FTYPE_COUNT] = {
    [LB_FTYPE_F32] = {"f32", 0, LB_TYPE_F32},         [LB_FTYPE_F16] = {"f16", 1, LB_TYPE_F16},
    [LB_FTYPE_BF16] = {"bf16", 32, LB_TYPE_BF16},     [LB_FTYPE_Q8_0] = {"q8_0", 7, LB_TYPE_Q8_0},
    [LB_FTYPE_Q4_0] = {"q4_0", 2, LB_TYPE_Q4_0},      [LB_FTYPE_Q4_1] = {"q4_1", 3, LB_TYPE_Q4_1},
    [LB_FTYPE_Q5_0] = {"q5_0", 8, LB_TYPE_Q5_0},      [LB_FTYPE_Q5_1] = {"q5_1", 9, LB_TYPE_Q5_1},
    [LB_FTYPE_Q2_K] = {"q2_k", 10, LB_TYPE_Q2_K},     [LB_FTYPE_Q3_K_S] = {"q3_k_s", 11, LB_TYPE_Q3_K},
    [LB_FTYPE_Q3_K_M] = {"q3_k_m", 12, LB_TYPE_Q3_K}, [LB_FTYPE_Q3_K_L] = {"q3_k_l", 13, LB_TYPE_Q3_K},
    [LB_FTYPE_Q4_K_S] = {"q4_k_s", 14, LB_TYPE_Q4_K}, [LB_FTYPE_Q4_K_M] = {"q4_k_m", 15, LB_TYPE_Q4_K},
    [LB_FTYPE_Q5_K_S] = {"q5_k_s", 16, LB_TYPE_Q5_K}, [LB_FTYPE_Q5_K_M] = {"q5_k_m", 17, LB_TYPE_Q5_K},
    [LB_FTYPE_Q6_K] = {"q6_k", 18, LB_TYPE_Q6_K},     [LB_FTYPE_IQ4_NL] = {"iq4_nl", 25, LB_TYPE_IQ4_NL},
    [LB_FTYPE_IQ4_XS] = {"iq4_xs", 30, LB_TYPE_IQ4_XS},
};

const lb_ftype_info *lb_ftype_get(lb_ftype f) { return (unsigned)f < LB_FTYPE_COUNT ? &FTYPES[f] : NULL; }

int lb_ftype_from_name(const char *name) {
    for (int f = 0; f < LB_FTYPE_COUNT; f++)
        if (name && strcasecmp(name, FTYPES[f].name) == 0) return f;
    return -1;
}

const char *lb_ftype_names(void) {
    return "q8_0, q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, q4_0, q4_1, q5_0, q5_1, q3_k_l, q3_k_m, q3_k_s, q2_k, "
           "iq4_nl, iq4_xs, f16, bf16, f32";
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

bool lb_mix_quantizable(const char *name, int n_dims) {
    return n_dims >= 2 && ends_with(name, "weight") && !strstr(name, "_norm.weight") && !strstr(name, "ffn_gate_inp");
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and every third one between */
static bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* rows not divisible by the block size: the nearest type that fits (docs/formats.md 2.7) */
static lb_type shape_fallback(lb_type t, int64_t ne0, bool *fallback) {
    if (ne0 % lb_type_block_elems(t) == 0) return t;
    lb_type r;
    switch (t) {
    case LB_TYPE_Q4_K: r = LB_TYPE_Q5_0; break;
    case LB_TYPE_Q5_K: r = LB_TYPE_Q5_1; break;
    case LB_TYPE_Q6_K: r = LB_TYPE_Q8_0; break;
    case LB_TYPE_Q2_K:
    case LB_TYPE_Q3_K: r = LB_TYPE_Q4_0; break;
    case LB_TYPE_IQ4_XS: r = LB_TYPE_IQ4_NL; break;
    default: r = LB_TYPE_F16; break;
    }
    if (ne0 % lb_type_block_elems(r) != 0) r = LB_TYPE_F16;
    *fallback = true;
    return r;
}

static lb_type output_rule(const lb_mix *m) {
    if (m->ftype == LB_FTYPE_Q8_0) return LB_TYPE_Q8_0;
    if (m->ftype == LB_FTYPE_F32 || m->ftype == LB_FTYPE_F16 || m->ftype == LB_FTYPE_BF16) return FTYPES[m->ftype].base;
    return LB_TYPE_Q6_K;
}

static lb_type attn_v_rule(lb_mix *m, lb_type t) {
    int64_t i = m->i_attn_v++, n = m->n_layer;
    switch (m->ftype) {
    case LB_FTYPE_Q2_K: return m->n_gqa >= 4 ? LB_TYPE_Q4_K : LB_TYPE_Q3_K;
    case LB_FTYPE_Q3_K_M: return i < 2 ? LB_TYPE_Q5_K : LB_TYPE_Q4_K;
    case LB_FTYPE_Q3_K_L: return LB_TYPE_Q5_K;
    case LB_FTYPE_Q4_K_M:
    case LB_FTYPE_Q5_K_M: return use_more_bits(i, n) ? LB_TYPE_Q6_K : t;
    case LB_FTYPE_Q4_K_S: return i < 4 ? LB_TYPE_Q5_K : t;
    case LB_FTYPE_IQ4_NL:
    case LB_FTYPE_IQ4_XS: return m->n_gqa >= 4 ? LB_TYPE_Q5_K : t;
    default: return t;
    }
}

static lb_type ffn_down_rule(lb_mix *m, lb_type t) {
    int64_t i = m->i_ffn_down++, n = m->n_layer;
    switch (m->ftype) {
    case LB_FTYPE_Q2_K: return LB_TYPE_Q3_K;
    case LB_FTYPE_Q3_K_M: return i < n / 16 ? LB_TYPE_Q5_K : LB_TYPE_Q4_K;
    case LB_FTYPE_Q3_K_L: return LB_TYPE_Q5_K;
    case LB_FTYPE_Q4_K_M:
    case LB_FTYPE_Q5_K_M: return use_more_bits(i, n) ? LB_TYPE_Q6_K : t;
    case LB_FTYPE_Q4_K_S: return i < n / 8 ? LB_TYPE_Q5_K : t;
    case LB_FTYPE_IQ4_NL:
    case LB_FTYPE_IQ4_XS: return !m->has_imatrix && i < n / 8 ? LB_TYPE_Q5_K : t;
    case LB_FTYPE_Q4_0: return m->has_imatrix && i < n / 8 ? LB_TYPE_Q4_1 : t;
    case LB_FTYPE_Q5_0: return m->has_imatrix && i < n / 8 ? LB_TYPE_Q5_1 : t;
    default: return t;
    }
}

static lb_type attn_output_rule(const lb_mix *m, lb_type t) {
    switch (m->ftype) {
    case LB_FTYPE_Q2_K: return LB_TYPE_Q3_K;
    case LB_FTYPE_Q3_K_M: return LB_TYPE_Q4_K;
    case LB_FTYPE_Q3_K_L: return LB_TYPE_Q5_K;
    default: return t;
    }
}

lb_type lb_mix_choose(lb_mix *m, const char *name, int64_t ne0, bool *fallback) {
    *fallback = false;
    lb_type base = FTYPES[m->ftype].base, t = base;
    bool is_output = strcmp(name, "output.weight") == 0 || (m->tied && strcmp(name, "token_embd.weight") == 0);
    bool is_embd = strcmp(name, "token_embd.weight") == 0;
    /* the counters advance whatever decides the type, as in llama.cpp */
    bool is_v = strstr(name, "attn_v.weight") != NULL, is_down = strstr(name, "ffn_down.weight") != NULL;
    for (int k = 0; k < m->n_overrides; k++) {
        if (regexec((const regex_t *)m->override_regex + k, name, 0, NULL, 0) == 0) {
            if (is_v) m->i_attn_v++;
            if (is_down) m->i_ffn_down++;
            return shape_fallback(m->override_types[k], ne0, fallback);
        }
    }
    if (is_output && m->output_type >= 0) t = (lb_type)m->output_type;
    else if (is_embd && !is_output && m->token_embd_type >= 0) t = (lb_type)m->token_embd_type;
    else if (is_embd && m->tied && m->token_embd_type >= 0) t = (lb_type)m->token_embd_type;
    else if (m->pure) t = base;
    else if (is_output) t = output_rule(m);
    else if (is_v) return shape_fallback(attn_v_rule(m, base), ne0, fallback);
    else if (is_down) return shape_fallback(ffn_down_rule(m, base), ne0, fallback);
    else if (strstr(name, "attn_output.weight")) t = attn_output_rule(m, base);
    if (is_v) m->i_attn_v++;
    if (is_down) m->i_ffn_down++;
    return shape_fallback(t, ne0, fallback);
}
