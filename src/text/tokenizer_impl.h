/*
 * tokenizer_impl.h - the lb_tokenizer struct and the table functions of tokenizer_table.c, shared by
 * the files of src/text: the loaders (tokenizer_json.c, tokenizer_gguf.c, entered from tokenizer.c),
 * tokenizer_encode.c and tokenizer_decode.c. Private to src/text; the rest of liblowbit includes text.h.
 *
 * Calls point one way: tokenizer.c -> tokenizer_json.c, tokenizer_gguf.c -> tokenizer_encode.c,
 * tokenizer_decode.c -> tokenizer_table.c -> pretok.c -> unicode.c.
 */
#ifndef LB_TOKENIZER_IMPL_H
#define LB_TOKENIZER_IMPL_H

#include "text.h"
#include "pretok.h"
#include "regex.h"

#include "../core/core.h"

#include <stdbool.h>

#define MAX_TOKEN_ID ((int64_t)1 << 24) /* far above any real vocabulary (Gemma: 262k) */
#define MAX_STEPS 16                    /* normalizer / decoder steps in a Sequence */
#define N_BYTE_CHARS 324                /* GPT-2 alphabet code points are below 256 + 68 */

#define MAX_PRE_STEPS 8 /* pre-tokenizer steps in a Sequence */

typedef enum { NORM_NFC, NORM_PREPEND, NORM_REPLACE, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWERCASE, NORM_STRIP } norm_kind;
typedef enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP } dec_kind;

/* One normalizer or decoder step; a/b are its strings (Prepend: a; Replace: a -> b, or re -> b). Strip: the
 * decoder's strip_cp/start/stop, the normalizer's left/right (start, stop non-zero). */
typedef struct step {
    int kind;
    const char *a, *b;
    size_t a_len, b_len;
    rx *re; /* normalizer Replace with a Regex pattern (owned); a is NULL then */
    uint32_t strip_cp;
    int64_t start, stop;
} step;

/* One pre-tokenizer step. The splitting kinds cut a piece into matches and the text between them,
 * then apply `behavior` (HF's SplitDelimiterBehavior; llama.cpp's are all Isolated); the others
 * rewrite the piece first (ByteLevel's prefix space, Metaspace's replacement) and then split. */
typedef enum {
    PS_SPLIT,     /* a hand-written splitter (pretok.h), always Isolated */
    PS_REGEX,     /* rx matches */
    PS_CHARS,     /* each char with a property is a match (Digits, Punctuation, WhitespaceSplit) */
    PS_LITERAL,   /* occurrences of a string (Split with a String pattern) */
    PS_BYTELEVEL, /* HF ByteLevel: prefix space, then the GPT-2 regex when use_regex */
    PS_METASPACE, /* HF Metaspace: ' ' -> replacement, prepend, split before each replacement */
} pstep_kind;
typedef enum { SB_ISOLATED, SB_REMOVED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS } split_behavior;
typedef enum { CH_NUMERIC, CH_PUNCT, CH_WHITESPACE } char_prop;
typedef enum { MS_NEVER, MS_FIRST, MS_ALWAYS } ms_prepend;

typedef struct pre_step {
    uint8_t kind, behavior, prop, prepend;
    bool invert, prefix_space, use_regex, split;
    int split_kind;    /* PS_SPLIT: a pre_split */
    rx *re;            /* PS_REGEX, owned */
    const char *lit;   /* PS_LITERAL: the string; PS_METASPACE: the replacement (arena) */
    size_t lit_len;
} pre_step;

typedef struct added_tok {
    int32_t id;
    const char *content, *norm; /* norm: content after the normalizer (for normalized tokens) */
    size_t len, norm_len;
    bool single_word, lstrip, rstrip, normalized, special;
} added_tok;

typedef struct tok_entry {
    const char *mtext; /* the model vocabulary string, NULL for ids only added tokens use */
    const char *text;  /* what id_to_token gives: the added content when there is one */
    const char *dtext; /* what the decoder sees: a normalized added token's normalized content */
    const char *bytes; /* raw output bytes of this token alone (lb_tokenizer_token_bytes) */
    uint32_t mlen, len, dlen, blen;
    uint8_t type;
} tok_entry;

typedef struct merge_slot {
    uint64_t key; /* left id << 32 | right id; EMPTY_KEY when free */
    uint32_t rank;
    int32_t new_id;
} merge_slot;
#define EMPTY_KEY UINT64_MAX

/* The GGUF metadata llama.cpp's converter (gguf-py SpecialVocab) derives from tokenizer.json and
 * tokenizer_config.json, or that a GGUF file carried: add_{bos,eos,sep}_token flags in the order it
 * sets them, special token ids besides BOS/EOS, and the chat template. */
typedef enum { CONV_BOS, CONV_EOS, CONV_SEP, CONV_N_ADD } conv_add_kind;
typedef enum { CONV_UNK, CONV_SEP_ID, CONV_PAD, CONV_CLS, CONV_MASK, CONV_N_ID } conv_id_kind;
typedef struct tok_conv {
    int8_t add[CONV_N_ADD];         /* -1 unset, 0 or 1 */
    uint8_t add_order[CONV_N_ADD];  /* the kinds in the order they were set */
    int n_add;
    int32_t id[CONV_N_ID];          /* -1 unset */
    const char *chat_template;      /* arena copy, NULL when none */
    size_t chat_template_len;
} tok_conv;

typedef struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    char data[];
} arena_blk;

/* Added tokens matched on raw text (normalized == false) or on normalized text, by first byte. */
typedef struct added_set {
    int32_t *idx;      /* indexes into added[], grouped by first byte */
    uint32_t first[257];
} added_set;

struct lb_tokenizer {
    lb_tok_model model;
    lb_tok_pre pre;  /* reported kind: what GGUF would call the pre-tokenizer */
    char pre_name[48]; /* the tokenizer.ggml.pre value read from a GGUF file, "" otherwise */
    pre_step pre_steps[MAX_PRE_STEPS];
    int n_pre;
    bool bl_pre; /* byte-level BPE: a ByteLevel pre-tokenizer, or GGUF model "gpt2" */
    float *scores;         /* LB_TOK_MODEL_SPM: per id */
    bool add_space_prefix; /* LB_TOK_MODEL_SPM */
    step norm[MAX_STEPS], dec[MAX_STEPS];
    int n_norm, n_dec;
    bool has_decoder, byte_fallback, fuse_unk, ignore_merges;
    bool newline_whole; /* a word of '\n' only is looked up whole first (llama.cpp, Gemma 4) */
    int32_t unk_id, bos_id, eos_id;
    int add_bos;
    tok_conv conv; /* what llama.cpp's converter would write beside the vocabulary */
    int64_t n_vocab;
    tok_entry *tok;
    uint32_t *vocab_slots; /* id + 1 of model vocabulary strings, 0 = free */
    size_t vocab_mask;
    int32_t (*merges)[2];
    int64_t n_merges;
    merge_slot *merge_slots;
    size_t merge_mask;
    uint64_t *pair_slots; /* SentencePiece style: char pairs (cp << 32 | cp) found inside tokens */
    size_t pair_mask;
    added_tok *added;
    int64_t n_added;
    added_set raw_set, norm_set;
    int32_t byte_id[256]; /* byte-level: vocabulary id of the alphabet char of each byte, or -1 */
    uint32_t byte_char[256];
    int16_t char_byte[N_BYTE_CHARS]; /* inverse of byte_char, -1 elsewhere */
    arena_blk *arena;
};

/* ---- helpers (tokenizer_table.c) ---- */

void *tok_arena_alloc(lb_tokenizer *t, size_t n);
/* NUL-terminated arena copy of n bytes; NULL on allocation failure. */
char *tok_arena_str(lb_tokenizer *t, const char *s, size_t n);
uint64_t tok_hash_bytes(const void *p, size_t n);
uint64_t tok_hash_u64(uint64_t x);
size_t tok_pow2_at_least(size_t n);
/* Model vocabulary lookup: id or -1. */
int32_t tok_vocab_find(const lb_tokenizer *t, const void *s, size_t n);
const merge_slot *tok_merge_find(const lb_tokenizer *t, int32_t a, int32_t b);
bool tok_pair_find(const lb_tokenizer *t, uint32_t a, uint32_t b);
/* "<0xNN>" as HF's ByteFallback reads it. */
bool tok_parse_byte_token(const char *s, size_t n, uint8_t *b);
/* Byte-level: the bytes a token string stands for; false when a char is outside the alphabet. */
bool tok_byte_level_bytes(const lb_tokenizer *t, const char *s, size_t n, uint8_t *out, size_t *out_len);
/* Replace every occurrence of a with b in s into a malloc'd buffer. */
uint8_t *tok_replace_all(const uint8_t *s, size_t n, const char *a, size_t al, const char *b, size_t bl,
                         size_t *out_len);
/* Run the normalizer steps over s into a malloc'd buffer (LB_ERR_NOMEM on allocation failure). */
lb_status tok_apply_norm(const lb_tokenizer *t, const uint8_t *s, size_t n, uint8_t **out, size_t *out_len);

/* ---- building a tokenizer (tokenizer_table.c; used by the loaders) ---- */

/* A zeroed tokenizer with the byte alphabet set up, no tables; NULL when out of memory. */
lb_tokenizer *tok_new(void);
/* Allocate tok[] for n_vocab ids and an empty vocabulary hash sized for n_strings strings. */
lb_status tok_alloc_vocab(lb_tokenizer *t, int64_t n_vocab, size_t n_strings, lb_error *err);
/* Make tok[id] a model vocabulary string (s stays valid until tok_finish). false when s is already
 * in the vocabulary, which is then left alone. */
bool tok_vocab_add(lb_tokenizer *t, int32_t id, const char *s, size_t n);
/* Allocate room for n merges. */
lb_status tok_alloc_merges(lb_tokenizer *t, int64_t n, lb_error *err);
/* Set merge i (rank order) of two vocabulary ids; the id of the merged string, -1 when that string
 * is not in the vocabulary, -2 when out of memory (nothing is set then). */
int32_t tok_set_merge(lb_tokenizer *t, int64_t i, int32_t a, int32_t b);
/* Once vocabulary, merges, added tokens and steps are in: build the added-token sets and the
 * per-token tables, copying every string into the tokenizer. */
lb_status tok_finish(lb_tokenizer *t, lb_error *err);

/* ---- loaders ---- */

/* A Hugging Face tokenizer.json file, with tokenizer_config.json beside it when there is one
 * (tokenizer_json.c). */
lb_status tok_load_json(const char *file, lb_tokenizer **out, lb_error *err);

#endif
