/*
 * fuzz_common.h - what the fuzz targets share: scratch files for parsers that read paths, and (without
 * -DLB_LIBFUZZER) a main() that runs a deterministic mutation loop over the target's seed corpus:
 *     fuzz_<name> [iterations (default 2000)] [seed (default 1)] [corpus dir (default tests/fuzz/corpus/<name>)]
 * Each iteration takes a seed file, applies 1-4 byte-level mutations (bit flips, interesting integers,
 * deleted, duplicated or truncated spans) and calls LLVMFuzzerTestOneInput. A target defines FUZZ_NAME
 * before including this file. A target whose inputs want a structure-aware mutator (a grammar's tokens, a
 * header rebuilt around mutated text) defines FUZZ_OWN_MAIN instead and writes its own main() with
 * fuzz_seed_rng / fuzz_rnd / fuzz_below. See tests/fuzz/README.md.
 */
#ifndef LB_FUZZ_COMMON_H
#define LB_FUZZ_COMMON_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir_[64];

static void fuzz_cleanup_(void) {
    if (!fuzz_dir_[0]) return;
    DIR *d = opendir(fuzz_dir_);
    for (struct dirent *e; d && (e = readdir(d));) {
        char p[320];
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", fuzz_dir_, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(fuzz_dir_);
}

/* A private scratch directory (tmpfs when there is one), removed at exit. */
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_[0]) {
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/lb_fuzz_XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(fuzz_dir_)) abort();
        atexit(fuzz_cleanup_);
    }
    return fuzz_dir_;
}

/* Write n bytes to `name` in the scratch directory; returns its path (a static buffer per slot 0-3). */
static inline const char *fuzz_file(const char *name, const void *data, size_t n) {
    static char paths[4][320];
    static int next;
    char *p = paths[next++ & 3];
    snprintf(p, sizeof paths[0], "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    if (n && fwrite(data, 1, n, f) != n) abort();
    fclose(f);
    return p;
}

/* Split data at the first occurrence of sep: part 0 before it, part 1 after (empty when absent). */
static inline void fuzz_split(const uint8_t *data, size_t size, const char *sep, size_t *n0, const uint8_t **p1, size_t *n1) {
    size_t sl = strlen(sep);
    for (size_t i = 0; i + sl <= size; i++)
        if (memcmp(data + i, sep, sl) == 0) {
            *n0 = i;
            *p1 = data + i + sl;
            *n1 = size - i - sl;
            return;
        }
    *n0 = size;
    *p1 = data + size;
    *n1 = 0;
}

#ifndef LB_LIBFUZZER

static uint64_t fuzz_rng_;

static inline uint64_t fuzz_rnd(void) { /* xorshift64* */
    fuzz_rng_ ^= fuzz_rng_ >> 12;
    fuzz_rng_ ^= fuzz_rng_ << 25;
    fuzz_rng_ ^= fuzz_rng_ >> 27;
    return fuzz_rng_ * 2685821657736338717ull;
}

static inline size_t fuzz_below(size_t n) { return n ? (size_t)(fuzz_rnd() % n) : 0; }

/* Seed the generator from the command line's seed argument (never zero: xorshift would stay at zero). */
static inline void fuzz_seed_rng(uint64_t seed) { fuzz_rng_ = 0x9e3779b97f4a7c15ull * seed + 1; }

#ifndef FUZZ_OWN_MAIN

typedef struct fuzz_seed_ {
    uint8_t *p;
    size_t n;
} fuzz_seed_;

static size_t fuzz_mutate_(uint8_t *b, size_t n, size_t cap) {
    static const uint64_t interesting[] = {0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fffffff, 0x80000000u, 0xffffffffu,
                                           0x7fffffffffffffffull, 0xffffffffffffffffull, 0x7fc00000u /* NaN */};
    int k = 1 + (int)fuzz_below(4);
    for (int i = 0; i < k && n > 0; i++) {
        size_t pos = fuzz_below(n);
        switch (fuzz_below(6)) {
        case 0: b[pos] ^= (uint8_t)(1u << fuzz_below(8)); break;
        case 1: b[pos] = (uint8_t)fuzz_rnd(); break;
        case 2: { /* an interesting integer, 1-8 bytes little-endian */
            uint64_t v = interesting[fuzz_below(sizeof interesting / sizeof interesting[0])];
            size_t w = (size_t)1 << fuzz_below(4);
            for (size_t j = 0; j < w && pos + j < n; j++) b[pos + j] = (uint8_t)(v >> (8 * j));
            break;
        }
        case 3: { /* delete a span */
            size_t d = 1 + fuzz_below(n - pos < 64 ? n - pos : 64);
            memmove(b + pos, b + pos + d, n - pos - d);
            n -= d;
            break;
        }
        case 4: { /* duplicate a span */
            size_t d = 1 + fuzz_below(64);
            if (pos + d > n) d = n - pos;
            if (n + d <= cap) {
                memmove(b + pos + d, b + pos, n - pos);
                n += d;
            }
            break;
        }
        default: n = pos + (n - pos) / 2; break; /* truncate */
        }
    }
    return n;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 2000;
    fuzz_seed_rng((uint64_t)(argc > 2 ? atol(argv[2]) : 1));
    char dir[512];
    snprintf(dir, sizeof dir, "%s", argc > 3 ? argv[3] : "tests/fuzz/corpus/" FUZZ_NAME);
    fuzz_seed_ seeds[64];
    int n_seeds = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fuzz_%s: cannot open the corpus %s\n", FUZZ_NAME, dir);
        return 1;
    }
    char *names[64];
    int n_names = 0;
    for (struct dirent *e; n_names < 64 && (e = readdir(d));)
        if (e->d_name[0] != '.') names[n_names++] = strdup(e->d_name);
    closedir(d);
    for (int i = 0; i < n_names; i++) /* readdir order is not fixed: sort for a deterministic run */
        for (int j = i + 1; j < n_names; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (int i = 0; i < n_names; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        FILE *f = fopen(p, "rb");
        struct stat st;
        if (f && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
            seeds[n_seeds].n = (size_t)st.st_size;
            seeds[n_seeds].p = malloc(seeds[n_seeds].n + 1);
            if (seeds[n_seeds].p && fread(seeds[n_seeds].p, 1, seeds[n_seeds].n, f) == seeds[n_seeds].n) n_seeds++;
        }
        if (f) fclose(f);
        free(names[i]);
    }
    if (n_seeds == 0) {
        fprintf(stderr, "fuzz_%s: no seeds in %s\n", FUZZ_NAME, dir);
        return 1;
    }
    for (int i = 0; i < n_seeds; i++) LLVMFuzzerTestOneInput(seeds[i].p, seeds[i].n); /* the seeds as they are */
    for (long it = 0; it < iters; it++) {
        const fuzz_seed_ *s = &seeds[fuzz_below((size_t)n_seeds)];
        size_t cap = s->n + 256;
        uint8_t *b = malloc(cap);
        if (!b) return 1;
        memcpy(b, s->p, s->n);
        size_t n = fuzz_mutate_(b, s->n, cap);
        uint8_t *exact = malloc(n ? n : 1); /* an exact-size copy, so ASan sees any over-read */
        memcpy(exact, b, n);
        LLVMFuzzerTestOneInput(exact, n);
        free(exact);
        free(b);
    }
    for (int i = 0; i < n_seeds; i++) free(seeds[i].p);
    printf("fuzz_%s: %ld mutations of %d seeds, no failure\n", FUZZ_NAME, iters, n_seeds);
    return 0;
}

#endif /* FUZZ_OWN_MAIN */
#endif /* LB_LIBFUZZER */

#endif
