/*
 * outfile.c - safe output files: the checks made before anything is computed (lb_output_check), the
 * locked temporary file every output is written through (lb_outfile_*), and the list of live temporaries
 * a signal handler may delete (lb_remove_temporaries).
 *
 * Rules: an output is never the same file (device and inode) as an input, never lies inside an input
 * checkpoint directory, and never replaces anything but a regular file. It is written to
 * `<path>.lowbit-tmp`, locked with flock() while it is written (a second writer of the same output fails
 * at once; the lock dies with the process, so a temporary left by a killed run is simply reused), and
 * renamed over `path` when complete.
 */
#include "core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_SUFFIX ".lowbit-tmp"
#define MAX_LIVE 8          /* temporaries open at once in one process */
#define LIVE_PATH 4096

/* ---- live temporaries, for lb_remove_temporaries() (async-signal-safe: only atomics and unlink) ---- */

enum { SLOT_FREE = 0, SLOT_FILLING = 1, SLOT_LIVE = 2 };
static struct {
    int state;
    char path[LIVE_PATH];
} live[MAX_LIVE];

static int live_add(const char *path) {
    if (strlen(path) >= LIVE_PATH) return -1;
    for (int i = 0; i < MAX_LIVE; i++) {
        int expect = SLOT_FREE;
        if (__atomic_compare_exchange_n(&live[i].state, &expect, SLOT_FILLING, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            memcpy(live[i].path, path, strlen(path) + 1);
            __atomic_store_n(&live[i].state, SLOT_LIVE, __ATOMIC_RELEASE);
            return i;
        }
    }
    return -1;
}

static void live_drop(int slot) {
    if (slot >= 0) __atomic_store_n(&live[slot].state, SLOT_FREE, __ATOMIC_RELEASE);
}

void lb_remove_temporaries(void) {
    for (int i = 0; i < MAX_LIVE; i++)
        if (__atomic_load_n(&live[i].state, __ATOMIC_ACQUIRE) == SLOT_LIVE) unlink(live[i].path);
}

/* ---- checks ---- */

static const char *kind_of(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISLNK(m)) return "a symbolic link";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

/* The existing `path` must be a regular file (not a link to one either). */
static lb_status check_replaceable(const char *path, lb_error *err) {
    struct stat st;
    if (lstat(path, &st) != 0) return LB_OK;
    if (!S_ISREG(st.st_mode))
        return lb_err_set(err, LB_ERR_ARG, "%s: the output exists and is %s; lowbit only replaces regular files", path,
                          kind_of(st.st_mode));
    return LB_OK;
}

/* Whether directory `dir` (dev, ino) is `path` or one of its ancestors; `path` is a resolved directory. */
static bool dir_contains(const struct stat *dir, const char *resolved) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", resolved);
    for (;;) {
        struct stat st;
        if (stat(buf, &st) == 0 && st.st_dev == dir->st_dev && st.st_ino == dir->st_ino) return true;
        char *slash = strrchr(buf, '/');
        if (!slash || slash == buf) break;
        *slash = 0;
    }
    struct stat root;
    return stat("/", &root) == 0 && root.st_dev == dir->st_dev && root.st_ino == dir->st_ino;
}

/* Whether a file of directory `dir` (one level, links followed) is the output (dev, ino). */
static const char *dir_holds(const char *dir, const struct stat *out, char *name, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    const char *hit = NULL;
    for (struct dirent *e; !hit && (e = readdir(d));) {
        char *p = lb_path_join(dir, e->d_name);
        struct stat st;
        if (p && stat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == out->st_dev && st.st_ino == out->st_ino) {
            snprintf(name, cap, "%s", e->d_name);
            hit = name;
        }
        free(p);
    }
    closedir(d);
    return hit;
}

static lb_status check_against(const char *output, const char *resolved_dir, bool out_exists, const struct stat *ost,
                               const char *input, lb_error *err) {
    struct stat in;
    if (!input || stat(input, &in) != 0) return LB_OK; /* a missing input is reported by whoever reads it */
    if (S_ISDIR(in.st_mode)) {
        char name[256];
        if (dir_contains(&in, resolved_dir))
            return lb_err_set(err, LB_ERR_ARG, "%s: the output lies inside the input directory %s; write it elsewhere", output, input);
        if (out_exists && dir_holds(input, ost, name, sizeof name))
            return lb_err_set(err, LB_ERR_ARG, "%s: the output is the input file %s/%s (the same file under another name)",
                              output, input, name);
    } else if (out_exists && in.st_dev == ost->st_dev && in.st_ino == ost->st_ino) {
        return lb_err_set(err, LB_ERR_ARG, "%s: the output is the input %s (the same file); write it elsewhere", output, input);
    }
    return LB_OK;
}

lb_status lb_output_check(const char *output, const char *const *inputs, int n_inputs, lb_error *err) {
    if (!output || !*output) return lb_err_set(err, LB_ERR_ARG, "no output path");
    lb_status s = check_replaceable(output, err);
    if (s != LB_OK) return s;
    size_t n = strlen(output);
    if (output[n - 1] == '/') return lb_err_set(err, LB_ERR_ARG, "%s: the output must be a file name, not a directory", output);
    char *dir = lb_path_dirname(output), resolved[PATH_MAX];
    if (!dir) return lb_err_set(err, LB_ERR_NOMEM, "out of memory");
    if (!realpath(dir, resolved) || !lb_path_is_dir(resolved)) {
        s = lb_err_set(err, LB_ERR_IO, "%s: the output directory %s does not exist", output, dir);
    } else if (access(resolved, W_OK | X_OK) != 0) {
        s = lb_err_set(err, LB_ERR_IO, "%s: cannot write into %s: %s", output, dir, strerror(errno));
    }
    free(dir);
    struct stat ost;
    bool exists = s == LB_OK && stat(output, &ost) == 0;
    for (int i = 0; s == LB_OK && i < n_inputs; i++) s = check_against(output, resolved, exists, &ost, inputs[i], err);
    return s;
}

/* ---- the temporary file ---- */

/* Open and lock `tmp`; fails when another process holds it. The lock is checked to be on the file that
 * still has the name (a writer may have renamed it away between our open and our lock). */
static lb_status open_locked(const char *path, const char *tmp, int *fd_out, lb_error *err) {
    for (int attempt = 0; attempt < 8; attempt++) {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0644);
        if (fd < 0) return lb_err_set(err, LB_ERR_IO, "%s: cannot create the temporary file %s: %s", path, tmp, strerror(errno));
        struct stat a, b;
        if (fstat(fd, &a) != 0 || !S_ISREG(a.st_mode)) {
            close(fd);
            return lb_err_set(err, LB_ERR_IO, "%s: the temporary file %s is not a regular file", path, tmp);
        }
        /* a file system without flock (some network ones) is written unlocked rather than refused */
        if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno != ENOLCK && errno != EOPNOTSUPP) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK)
                return lb_err_set(err, LB_ERR_IO, "%s: another process is writing this output (its temporary file %s is locked)",
                                  path, tmp);
            return lb_err_set(err, LB_ERR_IO, "%s: cannot lock %s: %s", path, tmp, strerror(e));
        }
        if (stat(tmp, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            if (ftruncate(fd, 0) != 0 || fcntl(fd, F_SETFL, 0) != 0) {
                int e = errno;
                close(fd);
                return lb_err_set(err, LB_ERR_IO, "%s: cannot truncate %s: %s", path, tmp, strerror(e));
            }
            *fd_out = fd;
            return LB_OK;
        }
        close(fd); /* renamed away under us: try the new file of that name */
    }
    return lb_err_set(err, LB_ERR_IO, "%s: cannot lock the temporary file %s", path, tmp);
}

lb_status lb_outfile_open(lb_outfile *o, const char *path, lb_error *err) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->slot = -1;
    lb_status s = check_replaceable(path, err);
    if (s != LB_OK) return s;
    size_t n = strlen(path);
    o->path = strdup(path);
    o->tmp = malloc(n + sizeof TMP_SUFFIX);
    if (!o->path || !o->tmp) {
        lb_outfile_abort(o);
        return lb_err_set(err, LB_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(o->tmp, path, n);
    memcpy(o->tmp + n, TMP_SUFFIX, sizeof TMP_SUFFIX);
    /* listed before it is created, so that a signal never leaves it behind; a signal in the instant before a
     * failed lock is noticed could delete another writer's temporary, which then fails cleanly at its rename */
    o->slot = live_add(o->tmp);
    s = open_locked(path, o->tmp, &o->fd, err);
    if (s != LB_OK) {
        live_drop(o->slot);
        o->slot = -1;
        free(o->tmp); /* not ours (or not there): never unlink it */
        o->tmp = NULL;
        lb_outfile_abort(o);
    }
    return s;
}

lb_status lb_outfile_write(lb_outfile *o, const void *data, size_t n, lb_error *err) {
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t r = write(o->fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return lb_err_set(err, LB_ERR_IO, "%s: write failed (temporary file %s): %s", o->path, o->tmp,
                              strerror(r < 0 ? errno : EIO));
        p += r;
        n -= (size_t)r;
    }
    return LB_OK;
}

static void sync_dir(const char *path) { /* best effort: make the rename durable */
    char *dir = lb_path_dirname(path);
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

lb_status lb_outfile_commit(lb_outfile *o, lb_error *err) {
    lb_status s = LB_OK;
    const char *what = NULL;
    if (fsync(o->fd) != 0) what = "fsync";
    else if ((s = check_replaceable(o->path, err)) != LB_OK) {
    } else if (rename(o->tmp, o->path) != 0) what = "rename";
    if (what) s = lb_err_set(err, LB_ERR_IO, "%s: %s failed (temporary file %s): %s", o->path, what, o->tmp, strerror(errno));
    if (s != LB_OK) {
        lb_outfile_abort(o);
        return s;
    }
    sync_dir(o->path);
    live_drop(o->slot);
    close(o->fd); /* after the rename: the lock covers it */
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->slot = -1;
    return LB_OK;
}

void lb_outfile_abort(lb_outfile *o) {
    if (!o) return;
    if (o->tmp && o->fd >= 0) unlink(o->tmp); /* while still locked */
    live_drop(o->slot);
    if (o->fd >= 0) close(o->fd);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->slot = -1;
}
