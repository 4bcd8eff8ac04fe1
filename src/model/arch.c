/*
 * arch.c - GGUF tensor names of the decoder-layer roles (llama.cpp gguf-py constants.py TENSOR_NAMES).
 */
#include "arch.h"

static const char *SUFFIX[LB_ROLE_LAYER_COUNT] = {
    [LB_ROLE_ATTN_NORM] = "attn_norm.weight",  [LB_ROLE_ATTN_Q] = "attn_q.weight",
    [LB_ROLE_ATTN_Q_BIAS] = "attn_q.bias",     [LB_ROLE_ATTN_K] = "attn_k.weight",
    [LB_ROLE_ATTN_K_BIAS] = "attn_k.bias",     [LB_ROLE_ATTN_V] = "attn_v.weight",
    [LB_ROLE_ATTN_V_BIAS] = "attn_v.bias",     [LB_ROLE_ATTN_Q_NORM] = "attn_q_norm.weight",
    [LB_ROLE_ATTN_K_NORM] = "attn_k_norm.weight", [LB_ROLE_ATTN_OUT] = "attn_output.weight",
    [LB_ROLE_FFN_NORM] = "ffn_norm.weight",    [LB_ROLE_FFN_GATE] = "ffn_gate.weight",
    [LB_ROLE_FFN_UP] = "ffn_up.weight",        [LB_ROLE_FFN_DOWN] = "ffn_down.weight",
};

const char *lb_role_gguf_suffix(lb_role r) { return (unsigned)r < LB_ROLE_LAYER_COUNT ? SUFFIX[r] : "?"; }
