/*
 * err.c - status names and error-message formatting.
 */
#include "core.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *lb_status_str(lb_status s) {
    switch (s) {
    case LB_OK: return "ok";
    case LB_ERR_IO: return "I/O error";
    case LB_ERR_FORMAT: return "format error";
    case LB_ERR_UNSUPPORTED: return "unsupported";
    case LB_ERR_NOMEM: return "out of memory";
    case LB_ERR_ARG: return "invalid argument";
    case LB_ERR_CANCELLED: return "cancelled";
    case LB_ERR_DEVICE: return "device error";
    }
    return "unknown status";
}

void lb_free(void *p) { free(p); }

lb_status lb_err_set(lb_error *err, lb_status s, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

lb_status lb_err_prefix(lb_error *err, lb_status s, const char *fmt, ...) {
    if (err) {
        char prefix[LB_ERROR_MAX], old[LB_ERROR_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        old[sizeof old - 1] = 0;
        /* messages longer than LB_ERROR_MAX are cut short on purpose */
        size_t pl = strlen(prefix);
        if (pl > sizeof err->msg - 3) pl = sizeof err->msg - 3;
        memcpy(err->msg, prefix, pl);
        memcpy(err->msg + pl, ": ", 2);
        size_t rest = sizeof err->msg - pl - 3, ol = strlen(old);
        if (ol > rest) ol = rest;
        memcpy(err->msg + pl + 2, old, ol);
        err->msg[pl + 2 + ol] = 0;
    }
    return s;
}

int64_t lb_first_nonfinite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

lb_status lb_err_nonfinite(lb_error *err, const char *name, int64_t r, int64_t c, float v) {
    const char *what = isnan(v) ? "NaN" : "infinite";
    if (c < 0) return lb_err_set(err, LB_ERR_FORMAT, "tensor %s: element %lld is %s", name, (long long)r, what);
    return lb_err_set(err, LB_ERR_FORMAT, "tensor %s: element [%lld, %lld] is %s", name, (long long)r, (long long)c, what);
}
