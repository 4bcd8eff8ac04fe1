/*
 * pretok.h - hand-written pre-tokenizer splitters (tokenizer_pretok.c) for the patterns tokenizers use
 * most, and the llama.cpp pre-tokenizer table (pre_llama.c). Private to src/text.
 *
 * A splitter cuts text into consecutive pieces, matches and the text between them alike (HF's
 * behavior Isolated; llama.cpp keeps both too): pre_split_end gives the end of the piece that starts
 * at byte i of valid UTF-8 text s[0..n), always > i.
 */
#ifndef LB_PRETOK_H
#define LB_PRETOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pre_split {
    SPLIT_GPT2 = 1,    /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    SPLIT_LLAMA3,      /* Llama-3's regex, (?i:..) contractions as Oniguruma folds them ('ſ is 's) */
    SPLIT_QWEN2,       /* the same with \p{N} alone */
    SPLIT_LLAMA3_CPP,  /* llama.cpp's Llama-3 splitter: contractions fold ASCII only */
    SPLIT_QWEN2_CPP,   /* llama.cpp's Qwen2 splitter */
    SPLIT_DIGIT,       /* \p{N}: each number char alone */
    SPLIT_KIMI,        /* llama.cpp's Kimi-K2 splitter (Han runs, letter words, digits by three, ...) */
    SPLIT_AFMOE,       /* llama.cpp's digit grouping: runs of digits in threes from the right, the text
                          before a run joined to its first group */
    SPLIT_NEWLINES,    /* [^\n]+|[\n]+ */
} pre_split;

size_t pre_split_end(pre_split kind, const uint8_t *s, size_t n, size_t i);

/* The splitter equal to Hugging Face's Split with this exact regex (behavior Isolated), or -1. */
int pre_split_from_regex(const char *re);

/* How llama.cpp pre-tokenizes for one tokenizer.ggml.pre value (llama-vocab.cpp). */
#define LLAMA_PRE_MAX_STEPS 6
typedef struct llama_pre_step {
    int split;          /* a pre_split, -1 for a regex, 0 for no step */
    const char *regex;  /* RX_LLAMA pattern (or RX_ONIG when onig) when split < 0 */
    bool onig;          /* a pattern llama.cpp runs with a hand-written splitter equal to Unicode regex
                           semantics (Qwen3.5) */
} llama_pre_step;

typedef struct llama_pre {
    const char *names; /* the tokenizer.ggml.pre values, separated by '|' */
    llama_pre_step steps[LLAMA_PRE_MAX_STEPS];
    bool ignore_merges, add_bos, no_bos_id;
    bool raw_utf8;      /* BPE on UTF-8 chars with <0xNN> byte fallback, not GPT-2's byte encoding */
    bool escape_spaces; /* ' ' becomes U+2581 before splitting */
    bool newline_whole; /* a word of newlines only is one token when the vocabulary has it */
} llama_pre;

/* The entry for a tokenizer.ggml.pre value (len bytes), or NULL when llama.cpp does not know it. */
const llama_pre *llama_pre_find(const char *name, size_t len);


#endif
