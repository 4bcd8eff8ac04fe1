/*
 * pre_llama.c - llama.cpp's pre-tokenizers by tokenizer.ggml.pre value (pre_llama_table.h, generated
 * from llama.cpp's src/llama-vocab.cpp by tools/gen_llama_pre.py).
 */
#include "pretok.h"

#include <stddef.h>
#include <string.h>

#include "pre_llama_table.h"

/* Whether name[0..len) is one of the '|'-separated values in list. */
static bool in_list(const char *list, const char *name, size_t len) {
    for (const char *p = list; *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == len && memcmp(p, name, len) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

const llama_pre *llama_pre_find(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof pre_llama_table / sizeof pre_llama_table[0]; i++)
        if (in_list(pre_llama_table[i].names, name, len)) return &pre_llama_table[i];
    return NULL;
}
