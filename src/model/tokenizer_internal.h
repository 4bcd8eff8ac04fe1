/*
 * tokenizer_internal.h - what the rest of liblowbit (the GGUF writer) reads from a loaded tokenizer
 * beyond the public API: the model and pre-tokenizer kinds, the merge list and per-token types.
 */
#ifndef LB_TOKENIZER_INTERNAL_H
#define LB_TOKENIZER_INTERNAL_H

#include "lowbit.h"

#include <stddef.h>
#include <stdint.h>

typedef enum lb_tok_model {
    LB_TOK_MODEL_BYTE_BPE = 0, /* byte-level BPE (GPT-2 byte-to-unicode alphabet) */
    LB_TOK_MODEL_SPM_BPE = 1,  /* SentencePiece-style BPE ("▁" for spaces, <0xNN> byte fallback) */
} lb_tok_model;

typedef enum lb_tok_pre {
    LB_TOK_PRE_NONE = 0,   /* no splitting (SentencePiece style) */
    LB_TOK_PRE_GPT2 = 1,   /* ByteLevel's own GPT-2 regex */
    LB_TOK_PRE_LLAMA3 = 2, /* Split with Llama-3's regex (digits in groups of up to 3) */
    LB_TOK_PRE_QWEN2 = 3,  /* Split with Qwen2's regex (single digits) */
} lb_tok_pre;

/* The pre-tokenizer kind whose regex is exactly `re`; LB_TOK_PRE_NONE for any other pattern. */
lb_tok_pre lb_tok_pre_from_regex(const char *re);
/* End of the pre-token starting at byte i of valid UTF-8 text s[0..n) under the regex of `kind`
 * (GPT-2, Llama-3 or Qwen2); always > i. */
size_t lb_tok_pre_match(lb_tok_pre kind, const uint8_t *s, size_t n, size_t i);

/* Token types, numbered as GGUF's tokenizer.ggml.token_type. */
typedef enum lb_tok_type {
    LB_TOK_TYPE_NORMAL = 1,
    LB_TOK_TYPE_UNKNOWN = 2,      /* the model's unk_token */
    LB_TOK_TYPE_CONTROL = 3,      /* special added token */
    LB_TOK_TYPE_USER_DEFINED = 4, /* non-special added token */
    LB_TOK_TYPE_UNUSED = 5,       /* an id no token uses (a hole in the vocabulary) */
    LB_TOK_TYPE_BYTE = 6,         /* <0xNN> byte-fallback token */
} lb_tok_type;

lb_tok_model lb_tokenizer_model_kind(const lb_tokenizer *t);
lb_tok_pre lb_tokenizer_pre_kind(const lb_tokenizer *t);

int64_t lb_tokenizer_n_merges(const lb_tokenizer *t);
/* Merge i (0 = highest priority) as its two vocabulary strings; false when i is out of range. */
int lb_tokenizer_merge(const lb_tokenizer *t, int64_t i, const char **left, const char **right);

/* Type of token id; LB_TOK_TYPE_UNUSED for an id outside the vocabulary. */
lb_tok_type lb_tokenizer_token_type(const lb_tokenizer *t, int32_t id);

/* Ids known from tokenizer.json alone, -1 when unknown: BOS and EOS from a TemplateProcessing
 * post-processor (a special token before / after $A), UNK from model.unk_token. */
int32_t lb_tokenizer_bos_id(const lb_tokenizer *t);
int32_t lb_tokenizer_eos_id(const lb_tokenizer *t);
int32_t lb_tokenizer_unk_id(const lb_tokenizer *t);
/* 1 when the post-processor adds BOS in front of a single sequence, 0 otherwise (or absent). */
int lb_tokenizer_add_bos(const lb_tokenizer *t);

#endif
