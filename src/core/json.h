/*
 * json.h - a strict RFC 8259 JSON reader for untrusted input (config.json, tokenizer.json,
 * safetensors headers, index files, goldens).
 *
 * The whole document is parsed into an immutable tree owned by a json_doc. Strings are decoded to UTF-8
 * (escapes resolved, surrogate pairs joined), NUL-terminated, with their byte length kept since they may
 * contain U+0000. Nesting deeper than JSON_MAX_DEPTH, invalid UTF-8, lone surrogates, trailing garbage,
 * and duplicate-free checks are errors; duplicate object keys are kept (json_get returns the first).
 * Accessors accept NULL and wrong-kind values and then report "absent", so lookups chain safely.
 */
#ifndef LB_JSON_H
#define LB_JSON_H

#include "core.h"

#include <stdio.h>

#define JSON_MAX_DEPTH 256

typedef enum json_kind {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_kind;

typedef struct json_value json_value;
typedef struct json_doc json_doc;

/* Parse len bytes. On failure err says where ("line 3, column 14: expected ':'"). */
lb_status json_parse(const char *text, size_t len, json_doc **out, lb_error *err);
void json_free(json_doc *d);
const json_value *json_root(const json_doc *d);

json_kind json_type(const json_value *v); /* JSON_NULL for a NULL pointer */
/* Member count of an object or element count of an array; 0 otherwise. */
size_t json_len(const json_value *v);
/* Element i of an array, or the value of member i of an object; NULL out of range. */
const json_value *json_at(const json_value *v, size_t i);
/* Key of member i of an object (NUL-terminated; *len gets its byte length if len != NULL). */
const char *json_key_at(const json_value *v, size_t i, size_t *len);
/* First member named key of an object; NULL when absent or v is not an object. */
const json_value *json_get(const json_value *v, const char *key);

/* String contents (NUL-terminated) or NULL when v is not a string. */
const char *json_str(const json_value *v, size_t *len);
/* true and *out set when v is a number. */
bool json_num(const json_value *v, double *out);
/* true when v is a number holding an integer exactly representable as int64 (written without
 * fraction/exponent, or with ones that leave it integral). */
bool json_int(const json_value *v, int64_t *out);
/* true when v is a number written as an integer (no fraction or exponent) that fits int64: what Python's
 * json.loads makes an int rather than a float. */
bool json_int_literal(const json_value *v, int64_t *out);
/* true when v is true/false. */
bool json_bool(const json_value *v, bool *out);

/* Write the n bytes of s to f as a JSON string literal: quote, backslash and control characters escaped
 * (\n \t \r by name, the others as \u00XX), other bytes as they are. false on a write error. */
bool json_write_str(FILE *f, const char *s, size_t n);

#endif
