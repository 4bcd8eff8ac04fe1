/*
 * cli.h - what the subcommands of the lowbit tool share: option parsing helpers, error exits, JSON
 * output, progress display, and loading a model with its tokenizer.
 */
#ifndef LB_CLI_H
#define LB_CLI_H

#include "lowbit.h"

#include <stdbool.h>
#include <stdio.h>

/* Print "lowbit: <msg>" on stderr and return exit status 1. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, for a failed library call. */
int cli_fail_lb(lb_status s, const lb_error *e);

/* Parse a whole-string integer / float option value; print an error naming the option and return false. */
bool cli_int(const char *opt, const char *v, int64_t lo, int64_t hi, int64_t *out);
/* --device cpu|cuda[:N]; false (after printing why) on a bad name */
bool cli_device(const char *v, lb_device *out);
/* --device with a set of GPUs: cuda:N,M,... or cuda:all (lb_device_set_parse) */
bool cli_device_set(const char *v, lb_device *out, int *n_devices, int devices[LB_MAX_DEVICES]);
bool cli_float(const char *opt, const char *v, double lo, double hi, double *out);
/* --cache-type f32|f16 (llama.cpp's cache types, for keys and values alike): *kv_f16 = 0 or 1; false (after printing
 * why) on another name */
bool cli_cache_type(const char *v, int *kv_f16);
/* The cache type (kv_f16: -1 when not given) against the device: the CPU takes either; a GPU's cache is F16, or F32 with
 * exact, so another request there is an error (printed; false). */
bool cli_cache_check(lb_device dev, int kv_f16, bool exact);

/* Write s as a JSON string literal (quotes included). */
void cli_json_str(FILE *f, const char *s);

/* A progress line on stderr: redrawn in place on a terminal, printed every 10% otherwise. */
typedef struct cli_progress {
    const char *label;
    double t0;
    int last_decile;
    bool tty, quiet;
} cli_progress;
void cli_progress_init(cli_progress *p, const char *label, bool quiet);
int cli_progress_cb(int64_t done, int64_t total, void *user);

double cli_now(void);

/* Read a text file: must exist, be non-empty and valid UTF-8. malloc'd, NUL-terminated. */
int cli_read_text(const char *path, char **text, size_t *len);

#endif
