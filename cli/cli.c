/*
 * cli.c - helpers shared by the subcommands (see cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("lowbit: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_fail_lb(lb_status s, const lb_error *e) { return cli_fail("%s (%s)", e->msg, lb_status_str(s)); }

bool cli_int(const char *opt, const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi) {
        cli_fail("%s expects an integer in [%lld, %lld], got \"%s\"", opt, (long long)lo, (long long)hi, v ? v : "");
        return false;
    }
    *out = x;
    return true;
}

bool cli_device(const char *v, lb_device *out) {
    lb_error e;
    lb_status s = lb_device_parse(v, out, &e);
    if (s != LB_OK) cli_fail("--device: %s", e.msg);
    return s == LB_OK;
}

bool cli_device_set(const char *v, lb_device *out, int *n_devices, int devices[LB_MAX_DEVICES]) {
    lb_error e;
    lb_status s = lb_device_set_parse(v, out, n_devices, devices, &e);
    if (s != LB_OK) cli_fail("--device: %s", e.msg);
    return s == LB_OK;
}

bool cli_cache_type(const char *v, int *kv_f16) {
    if (v && !strcmp(v, "f32")) *kv_f16 = 0;
    else if (v && !strcmp(v, "f16")) *kv_f16 = 1;
    else {
        cli_fail("--cache-type expects f32 or f16, got \"%s\"", v ? v : "");
        return false;
    }
    return true;
}

bool cli_cache_check(lb_device dev, int kv_f16, bool exact) {
    if (dev.kind == LB_DEVICE_CPU || kv_f16 < 0) return true;
    if (kv_f16 == 0 && !exact) {
        cli_fail("--cache-type f32: a GPU context's KV cache is F16; --exact gives it an F32 cache and the CPU's arithmetic");
        return false;
    }
    if (kv_f16 == 1 && exact) {
        cli_fail("--cache-type f16 with --exact: an exact GPU context keeps its KV cache in F32");
        return false;
    }
    return true;
}

bool cli_float(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || errno || !(x >= lo && x <= hi)) {
        cli_fail("%s expects a number in [%g, %g], got \"%s\"", opt, lo, hi, v ? v : "");
        return false;
    }
    *out = x;
    return true;
}

static size_t utf8_bad_offset(const unsigned char *s, size_t n);

void cli_json_str(FILE *f, const char *s) {
    fputc('"', f);
    size_t n = strlen(s);
    for (const unsigned char *p = (const unsigned char *)s, *end = p + n; p < end; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else if (*p < 0x80) fputc(*p, f);
        else { /* a valid UTF-8 sequence as it is; each byte of an invalid one as U+FFFD (JSON is UTF-8) */
            size_t len = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : 2;
            if (utf8_bad_offset(p, (size_t)(end - p)) == 0) {
                fputs("\\ufffd", f);
            } else {
                fwrite(p, 1, len, f);
                p += len - 1;
            }
        }
    }
    fputc('"', f);
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, const char *label, bool quiet) {
    p->label = label;
    p->t0 = cli_now();
    p->last_decile = -1;
    p->tty = isatty(2);
    p->quiet = quiet;
}

int cli_progress_cb(int64_t done, int64_t total, void *user) {
    cli_progress *p = user;
    if (p->quiet || total <= 0) return 0;
    double el = cli_now() - p->t0, eta = done > 0 ? el * (double)(total - done) / (double)done : 0;
    int decile = (int)(10 * done / total);
    if (p->tty) {
        int w = 30, fill = (int)(w * done / total);
        fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld  %.1fs elapsed, ~%.0fs left ", p->label, fill,
                "##############################", w - fill, "", (long long)done, (long long)total, el, eta);
        if (done == total) fputc('\n', stderr);
    } else if (decile != p->last_decile || done == total) {
        fprintf(stderr, "%s %lld/%lld  %.1fs elapsed\n", p->label, (long long)done, (long long)total, el);
    }
    p->last_decile = decile;
    fflush(stderr);
    return 0;
}

static size_t utf8_bad_offset(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; min = 0x80; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; min = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

int cli_read_text(const char *path, char **text, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block: it is refused below */
    if (fd < 0) return cli_fail("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cli_fail("%s: not a regular file", path);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return cli_fail("%s: cannot open: %s", path, strerror(errno));
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return cli_fail("%s: out of memory", path);
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return cli_fail("%s: read failed", path);
    }
    buf[n] = 0;
    if (n == 0) {
        free(buf);
        return cli_fail("%s: the text file is empty", path);
    }
    size_t bad = utf8_bad_offset((const unsigned char *)buf, n);
    if (bad < n) {
        unsigned char byte = (unsigned char)buf[bad];
        free(buf);
        return cli_fail("%s: not valid UTF-8 (invalid byte 0x%02x at offset %zu)", path, byte, bad);
    }
    *text = buf;
    *len = n;
    return 0;
}
