/*
 * text.h - the one way into src/text for the rest of liblowbit (the public tokenizer API is in
 * include/lowbit.h): what it reads from a loaded tokenizer beyond that API: the model and pre-tokenizer kinds, the merge list and per-token types; and the tokenizer as
 * GGUF metadata (tokenizer.ggml.*), read from a GGUF file and written into one (tokenizer_gguf.c).
 */
#ifndef LB_TEXT_H
#define LB_TEXT_H

#include "lowbit.h"
#include "../io/gguf.h"

#include <stddef.h>
#include <stdint.h>

typedef enum lb_tok_model {
    LB_TOK_MODEL_BYTE_BPE = 0, /* byte-level BPE (GPT-2 byte-to-unicode alphabet) */
    LB_TOK_MODEL_SPM_BPE = 1,  /* SentencePiece-style BPE ("▁" for spaces, <0xNN> byte fallback) */
    LB_TOK_MODEL_SPM = 2,      /* SentencePiece by token scores, as llama.cpp runs GGUF model "llama" */
} lb_tok_model;

/* What a tokenizer's pre-tokenizer is, as far as GGUF export cares. */
typedef enum lb_tok_pre {
    LB_TOK_PRE_NONE = 0,   /* no splitting (SentencePiece style) */
    LB_TOK_PRE_GPT2 = 1,   /* ByteLevel's own GPT-2 regex */
    LB_TOK_PRE_LLAMA3 = 2, /* Split with Llama-3's regex (digits in groups of up to 3) */
    LB_TOK_PRE_QWEN2 = 3,  /* Split with Qwen2's regex (single digits) */
    LB_TOK_PRE_SMOLLM = 4, /* every \\p{N} char alone, then the GPT-2 regex (llama.cpp "smollm") */
    LB_TOK_PRE_OTHER = 5,  /* any other split rules (another GGUF pre value, other pre-tokenizers) */
} lb_tok_pre;

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

/*
 * GGUF metadata (docs/formats.md 1.7; llama.cpp src/llama-vocab.cpp reads it, convert_hf_to_gguf.py
 * and gguf-py vocab.py write it).
 *
 * lb_tokenizer_from_gguf builds a tokenizer from f's tokenizer.ggml.* keys, which must stay valid only
 * during the call. Supported: tokenizer.ggml.model "llama" (SentencePiece: spaces escaped as U+2581,
 * one prefixed to text that starts the input or follows an added token unless add_space_prefix is
 * false, pieces merged by the highest tokenizer.ggml.scores first, <0xNN> byte fallback: llama.cpp's
 * llm_tokenizer_spm), and "gpt2" (BPE) with every tokenizer.ggml.pre value llama.cpp's llama-vocab.cpp
 * accepts (pre_llama_table.h: its split steps, ignore_merges and add_bos defaults, byte-level or raw
 * UTF-8 BPE, escaped spaces; a missing value is "default", as there), split exactly as llama.cpp does
 * (regex.h RX_LLAMA). Token types CONTROL become special
 * added tokens and USER_DEFINED non-special ones, both matched in the raw text; UNUSED ids are holes.
 * bos/eos ids, add_bos_token and the other keys the converter writes are kept, so
 * lb_tokenizer_write_gguf reproduces them. Errors: LB_ERR_UNSUPPORTED naming any other model or pre
 * value, LB_ERR_FORMAT for missing or mistyped keys, a token_type array
 * of another length, merges naming unknown tokens, LB_ERR_NOMEM.
 */
lb_status lb_tokenizer_from_gguf(const gguf_file *f, lb_tokenizer **out, lb_error *err);

/*
 * Write t's tokenizer.ggml.* metadata into w as llama.cpp's convert_hf_to_gguf.py writes it for the
 * same tokenizer.json (and tokenizer_config.json beside it): model, pre, tokens (ids 0..n_vocab-1; an
 * id without a token is "[PAD<id>]" of type UNUSED), token_type, merges ("left right"), bos/eos ids
 * (u32, each only when >= 0), the other special token ids tokenizer_config.json names, add_bos_token /
 * add_eos_token / add_sep_token as the converter derives them, and the chat template. n_vocab is the
 * model's vocabulary size (config.json vocab_size), at least lb_tokenizer_n_vocab(t); 0 means exactly
 * that. Only byte-level BPE tokenizers whose rules GGUF can express are exportable: anything else is
 * LB_ERR_UNSUPPORTED. Writer failures come back as the writer reports them.
 */
lb_status lb_tokenizer_write_gguf(const lb_tokenizer *t, gguf_writer *w, int64_t n_vocab, int32_t bos, int32_t eos,
                                  lb_error *err);

#endif
