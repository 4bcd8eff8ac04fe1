/*
 * arch.h - per-architecture naming: Hugging Face tensor names <-> GGUF tensor names and roles, GGUF
 * architecture strings, and llama.cpp's Q/K row permutation for arch "llama" (docs/formats.md 1.8, 1.9).
 */
#ifndef LB_ARCH_H
#define LB_ARCH_H

#include "../core/core.h"

/* Roles of the tensors of a decoder layer, in the order a GGUF file lists them. */
typedef enum lb_role {
    LB_ROLE_ATTN_NORM, LB_ROLE_ATTN_Q, LB_ROLE_ATTN_Q_BIAS, LB_ROLE_ATTN_K, LB_ROLE_ATTN_K_BIAS, LB_ROLE_ATTN_V,
    LB_ROLE_ATTN_V_BIAS, LB_ROLE_ATTN_Q_NORM, LB_ROLE_ATTN_K_NORM, LB_ROLE_ATTN_OUT, LB_ROLE_FFN_NORM,
    LB_ROLE_FFN_GATE, LB_ROLE_FFN_UP, LB_ROLE_FFN_DOWN,
    LB_ROLE_LAYER_COUNT
} lb_role;

/* GGUF name suffix of a layer role ("attn_q.weight"): the tensor is "blk.N.<suffix>". */
const char *lb_role_gguf_suffix(lb_role r);

/* The HF row that GGUF row r of a llama-arch q or k weight comes from (heads of D rows each):
 * within a head, GGUF row 2i+p = HF row p*(D/2)+i. */
static inline int64_t lb_llama_qk_hf_row(int64_t r, int64_t D) {
    int64_t j = r % D;
    return r - j + (j % 2) * (D / 2) + j / 2;
}

#endif
