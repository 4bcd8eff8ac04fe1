/*
 * core.h - internal helpers shared by every layer: error text, checked arithmetic, fp16/bf16
 * conversion, whole-file reads and memory maps, paths, and the thread pool.
 */
#ifndef LB_CORE_H
#define LB_CORE_H

#include "lowbit.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* LB_HD marks the functions of the sources that cuda/kq_encode.cu compiles a second time, as C++ for the
 * device and the host (core/fp16.c, quant/ref/kquants.c, algo/kquant.c: the k-quant encoders):
 * __host__ __device__ there, where the including file defines LB_DEVICE_SOURCES, and nothing in C. One
 * source, so the GPU's encoders perform the CPU's float operations in the same order and give the same
 * bytes; the host copy lets a machine without a GPU check that translation. */
#if defined(__CUDACC__) && defined(LB_DEVICE_SOURCES)
#define LB_HD __host__ __device__
#else
#define LB_HD
#endif

#if defined(__GNUC__)
#define LB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LB_PRINTF(a, b)
#endif

/* Write a formatted message into err (if not NULL) and return `s`. */
lb_status lb_err_set(lb_error *err, lb_status s, const char *fmt, ...) LB_PRINTF(3, 4);
/* Prefix err->msg with "prefix: " (used to add a file or tensor name as an error travels up). */
lb_status lb_err_prefix(lb_error *err, lb_status s, const char *fmt, ...) LB_PRINTF(3, 4);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool lb_mul_size(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool lb_add_size(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool lb_mul_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }

/* Index of the first NaN or infinite value of x[0..n), or -1. */
int64_t lb_first_nonfinite(const float *x, int64_t n);
/* The error for such a value: "tensor NAME: element [r, c] is NaN" (c < 0: a vector, "element r"). */
lb_status lb_err_nonfinite(lb_error *err, const char *name, int64_t r, int64_t c, float v);

/* Bytes of the longest valid UTF-8 prefix of p[0..n) (n when all of it is valid). */
size_t lb_utf8_valid_prefix(const void *p, size_t n);

/* ---- fp16 / bf16 (exact IEEE conversions; round-to-nearest-even on the way down) ---- */
float lb_fp16_to_f32(uint16_t h);
uint16_t lb_f32_to_fp16(float f);
static inline float lb_bf16_to_f32(uint16_t b) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)b << 16;
    return v.f;
}
uint16_t lb_f32_to_bf16(float f);

/* ---- files ---- */

/* Read a whole file into a NUL-terminated malloc'd buffer (release with free). Fails above max_bytes. */
lb_status lb_read_file(const char *path, size_t max_bytes, char **data, size_t *len, lb_error *err);

/* A read-only memory map of a whole file. */
typedef struct lb_mmap {
    const uint8_t *data;
    size_t size;
} lb_mmap;
lb_status lb_mmap_open(const char *path, lb_mmap *m, lb_error *err);
void lb_mmap_close(lb_mmap *m);
/* Tell the kernel the mapped pages wholly inside [p, p+n) are not needed for now (they stay readable and
 * are paged in again on access), so streaming through a large map keeps resident memory bounded. */
void lb_mmap_release(const void *p, size_t n);
/* Ask the kernel to read [p, p + n) of a file mapping ahead (MADV_WILLNEED; a hint, no error; heap memory is
 * left as it is). */
void lb_mmap_prefetch(const void *p, size_t n);
/* Peak resident set size of this process in bytes (0 if unknown). */
size_t lb_peak_rss(void);

/* Whether LB_FORCE_REF is set to something other than "" or "0": every fast kernel then gives way to its
 * scalar reference. */
bool lb_force_ref(void);

bool lb_path_is_dir(const char *path);
bool lb_path_exists(const char *path);
/* dir + "/" + name into a malloc'd string; NULL on allocation failure. */
char *lb_path_join(const char *dir, const char *name);
/* Copy of the directory part of path ("." when none); NULL on allocation failure. */
char *lb_path_dirname(const char *path);

/* ---- output files (outfile.c): see lb_output_check() in lowbit.h for the rules ---- */

/* An output being written: `path` is replaced only by lb_outfile_commit(). */
typedef struct lb_outfile {
    char *path, *tmp; /* tmp = path + ".lowbit-tmp", locked (flock) while open */
    int fd;
    int slot;         /* entry in the list lb_remove_temporaries() deletes */
} lb_outfile;
/* Refuses an existing `path` that is not a regular file, and a temporary another process holds. */
lb_status lb_outfile_open(lb_outfile *o, const char *path, lb_error *err);
lb_status lb_outfile_write(lb_outfile *o, const void *data, size_t n, lb_error *err);
/* fsync, check `path` is still replaceable, rename; on failure the temporary is deleted. Either way o is
 * released. */
lb_status lb_outfile_commit(lb_outfile *o, lb_error *err);
/* Delete the temporary and release o; a released or zeroed o is a no-op. */
void lb_outfile_abort(lb_outfile *o);

/* ---- threads ---- */

/* Number of online CPUs (at least 1). */
int lb_cpu_count(void);
/* Whether the CPU has F16C (through cpuid: clang before 19 does not know __builtin_cpu_supports("f16c")). */
bool lb_cpu_has_f16c(void);

typedef struct lb_pool lb_pool;
/* A pool of n_threads workers counting the caller (n_threads - 1 threads are started). NULL on failure. */
lb_pool *lb_pool_new(int n_threads);
void lb_pool_free(lb_pool *p);
int lb_pool_size(const lb_pool *p);
/*
 * Run fn(arg, task, thread) for task in [0, n_tasks) on the pool, the caller included, and return when
 * all are done. `thread` is in [0, pool size) and identifies a per-thread scratch slot. Tasks must write
 * disjoint outputs; which thread runs which task is not fixed, so results must not depend on it.
 */
typedef void (*lb_task_fn)(void *arg, int64_t task, int thread);
void lb_pool_run(lb_pool *p, int64_t n_tasks, lb_task_fn fn, void *arg);
/*
 * Several dependent steps in one run: stage s holds tasks [ends[s-1], ends[s]) (ends[-1] = 0; a stage may
 * be empty), and no task of a stage starts before every task of the stages before it has finished.
 * fn(arg, stage, task, thread) receives the task's index within its stage. A run of several stages costs
 * about as much as one plain run, which is the point: fewer wake-ups and nothing left to the caller alone
 * between the steps. Same contract as lb_pool_run otherwise.
 */
typedef void (*lb_stage_fn)(void *arg, int stage, int64_t task, int thread);
void lb_pool_run_stages(lb_pool *p, int n_stages, const int64_t *ends, lb_stage_fn fn, void *arg);

/* Monotonic seconds. */
double lb_time_sec(void);

#endif
