/*
 * mix.h - quantization mixtures ("file types"): the llama.cpp names (q4_k_m, q8_0, ...), their
 * general.file_type ids, and the per-tensor type choice of llama-quantize (docs/formats.md 1.5 and 2.7),
 * plus lowbit's overrides (--pure, --tensor-type, --output-tensor-type, --token-embedding-type) and the
 * shape fallbacks for rows not divisible by the block size.
 */
#ifndef LB_MIX_H
#define LB_MIX_H

#include "../core/core.h"

typedef enum lb_ftype {
    LB_FTYPE_F32, LB_FTYPE_F16, LB_FTYPE_BF16, LB_FTYPE_Q8_0, LB_FTYPE_Q4_0, LB_FTYPE_Q4_1, LB_FTYPE_Q5_0,
    LB_FTYPE_Q5_1, LB_FTYPE_Q2_K, LB_FTYPE_Q3_K_S, LB_FTYPE_Q3_K_M, LB_FTYPE_Q3_K_L, LB_FTYPE_Q4_K_S,
    LB_FTYPE_Q4_K_M, LB_FTYPE_Q5_K_S, LB_FTYPE_Q5_K_M, LB_FTYPE_Q6_K, LB_FTYPE_IQ4_NL, LB_FTYPE_IQ4_XS,
    LB_FTYPE_COUNT
} lb_ftype;

typedef struct lb_ftype_info {
    const char *name;      /* "q4_k_m" */
    int llama_ftype;       /* general.file_type value */
    lb_type base;          /* the bulk type */
} lb_ftype_info;

const lb_ftype_info *lb_ftype_get(lb_ftype f);
/* The mixture called name (case-insensitive), or -1. */
int lb_ftype_from_name(const char *name);
/* Comma-separated list of all names, for messages. */
const char *lb_ftype_names(void);

/* What the mixture rules need to know about the model and the run. */
typedef struct lb_mix {
    lb_ftype ftype;
    int64_t n_layer;
    int64_t n_gqa;          /* n_head / n_head_kv */
    bool tied;              /* token_embd doubles as the output */
    bool has_imatrix;
    bool pure;
    int output_type;        /* lb_type or -1 */
    int token_embd_type;    /* lb_type or -1 */
    int n_overrides;        /* --tensor-type REGEX=TYPE, checked first, in order */
    const void *override_regex; /* array of regex_t (POSIX extended), owned by the caller */
    const lb_type *override_types;
    /* counters advanced by lb_mix_choose, in tensor order */
    int64_t i_attn_v, i_ffn_down;
} lb_mix;

/* Whether a tensor (GGUF name, n_dims) is quantized at all: >= 2 dims, name ends in "weight", not a norm. */
bool lb_mix_quantizable(const char *name, int n_dims);

/*
 * The type for a quantizable tensor with GGUF name `name` and row length ne0 (call once per tensor, in
 * file order: the attn_v / ffn_down counters advance). *fallback is set when the shape forced a
 * different type than the rules chose.
 */
lb_type lb_mix_choose(lb_mix *m, const char *name, int64_t ne0, bool *fallback);

#endif
