/* file.c - whole-file reads, full writes and directory fsyncs (fv_file.h).
 *
 * These were written once per folder (model/, crypto/, protocols/) and drifted in small
 * ways; this is the one copy. Each caller keeps its own wording for a person: the helper
 * writes a plain sentence and reports which step failed (fv_file_fail_t), so a caller
 * may overwrite it with one that says what the file was meant to be.
 *
 * Reads trust fstat's size only as an upper bound to allocate: the file is read to EOF or
 * to that size, whichever comes first, and never past the cap. A buffer that may hold part
 * of a secret is wiped (explicit_bzero) on every failure path before it is freed.
 *
 * Output files (fv_file_out, the cases in fv_file.h). Why each case is what it is:
 *   - A temporary file renamed over the target is what makes a replaced model crash-safe,
 *     but rename(2) replaces the name it is given: aimed at a symlink it replaces the
 *     link (the bug of `--out /dev/stdout`, which as root turned /dev/stdout into a
 *     regular file). So the chain is followed first with lstat/readlink, one link at a
 *     time (at most 40, Linux's own limit, else -ELOOP), each relative target taken
 *     against its link's directory; the temporary file goes beside the last name, and the
 *     rename stays in that directory. realpath(3) is not used: it fails on the dangling
 *     link whose target is the file to create.
 *   - A device, FIFO or socket cannot be replaced and has no "beside": it is written
 *     where it is. O_TRUNC would be meaningless or harmful there and O_CREAT would create
 *     a file if it vanished meanwhile, so neither is given.
 *   - /dev/stdout is a symlink to /proc/self/fd/1, whose "target" is a pipe:[N] or
 *     socket:[N] pseudo-name, the terminal, or the file the shell redirected to. Opening
 *     it anew would fail on a socket and, for a redirected file, start again at offset 0
 *     (clobbering what the program printed before) or, via the rename case, replace the
 *     file under the shell's open descriptor. Duplicating the descriptor behaves like any
 *     program writing to its standard output in all of these cases, so the descriptor
 *     paths are recognized by name, before anything is looked up, and "-" (the command
 *     line's name for standard output) with them. Library callers that build their paths
 *     from a directory never produce those names.
 *   - A replaced file keeps its permission bits (a model a serving team was given read
 *     access to stays readable); a new file gets the caller's mode through umask, as
 *     open(2) gives it: the temporary file is created with O_CREAT | O_EXCL and a random
 *     name rather than by mkstemp, whose 0600 would need a umask lookup to correct.
 * Lookup then open is not atomic: a path changed between the two by someone who can
 * write its directory gets what it was changed to, as with any shell redirection.
 *
 * Threading: no state; every function is safe to call from any thread.
 */
#define _GNU_SOURCE /* explicit_bzero */
#include "fv_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h> /* rename */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

int fv_file_write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fv_file_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

int fv_file_fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return fv_file_fsync_dir(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir)
        return -ENAMETOOLONG;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return fv_file_fsync_dir(dir);
}

int fv_file_read_all(const char *path, size_t max_bytes, char **ret_buf, size_t *ret_len,
                     fv_file_fail_t *fail, fv_diag_t *d)
{
    fv_file_fail_t f = {.step = FV_FILE_STEP_OPEN, .is_dir = false, .size_bytes = -1};
    char *buf = NULL;
    size_t len = 0, got = 0;
    int r;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot open: %s", path, strerror(-r));
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        f.step = FV_FILE_STEP_STAT;
        fv_diag_set(d, r, "%s: cannot stat: %s", path, strerror(-r));
        goto out;
    }
    f.size_bytes = (int64_t)st.st_size;
    if (!S_ISREG(st.st_mode)) {
        f.step = FV_FILE_STEP_TYPE;
        f.is_dir = S_ISDIR(st.st_mode);
        r = fv_diag_set(d, FV_EINVAL, "%s: not a regular file", path);
        goto out;
    }
    if ((uintmax_t)st.st_size > max_bytes) {
        f.step = FV_FILE_STEP_SIZE;
        r = fv_diag_set(d, FV_ETOOBIG, "%s: %jd bytes, over the cap of %zu bytes", path,
                        (intmax_t)st.st_size, max_bytes);
        goto out;
    }
    len = (size_t)st.st_size;
    buf = malloc(len + 1);
    if (buf == NULL) {
        f.step = FV_FILE_STEP_ALLOC;
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    while (got < len) {
        ssize_t k = read(fd, buf + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = -errno;
            f.step = FV_FILE_STEP_READ;
            fv_diag_set(d, r, "%s: cannot read: %s", path, strerror(-r));
            goto out;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    buf[got] = '\0';
    *ret_buf = buf;
    *ret_len = got;
    buf = NULL;
    r = 0;
out:
    if (buf != NULL) {
        explicit_bzero(buf, got);
        free(buf);
    }
    if (fd >= 0)
        close(fd);
    if (r < 0 && fail != NULL)
        *fail = f;
    return r;
}

/* ---- output files (fv_file.h: fv_file_out) ------------------------------------------ */

#define LINK_HOPS_MAX 40 /* symlinks followed before -ELOOP (Linux's MAXSYMLINKS) */
#define TMP_TRIES 100    /* random temporary names tried before giving up */
#define TMP_SUFFIX ".tmp.XXXXXX"

struct fv_file_out {
    int fd;
    bool direct;  /* cases 1 and 2: written in place */
    char *name;   /* for messages: the path as given, "standard output" for "-" */
    char *target; /* case 3: the end of the symlink chain, replaced by the rename */
    char *tmp;    /* case 3: the temporary file beside target; NULL once renamed */
};

/* N of a descriptor path's tail: decimal digits only, no sign, at most INT_MAX. */
static int parse_fd(const char *s)
{
    long v = 0;
    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > INT_MAX)
            return -1;
    }
    return (int)v;
}

/* The descriptor paths without "-": a symlink to "-" names a file called "-". */
static int descriptor_path_fd(const char *path)
{
    if (strcmp(path, "/dev/stdout") == 0)
        return 1;
    if (strcmp(path, "/dev/stderr") == 0)
        return 2;
    if (strncmp(path, "/dev/fd/", 8) == 0)
        return parse_fd(path + 8);
    if (strncmp(path, "/proc/self/fd/", 14) == 0)
        return parse_fd(path + 14);
    return -1;
}

int fv_file_path_fd(const char *path)
{
    if (path != NULL && strcmp(path, "-") == 0)
        return 1;
    return path != NULL ? descriptor_path_fd(path) : -1;
}

/* Follows the symlink chain from path to a name that is not a symlink (an existing file
 * or nothing): *ret (malloc'd) on success. A link whose target is a descriptor path ends
 * the walk with *ret_fd set to its descriptor and *ret left alone. */
static int resolve_links(const char *name, const char *path, char **ret, int *ret_fd, fv_diag_t *d)
{
    char buf[PATH_MAX];
    char *cur = strdup(path);
    int r;

    if (cur == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", name);
    for (int hops = 0;; hops++) {
        struct stat st;
        if (lstat(cur, &st) < 0) {
            if (errno == ENOENT)
                break; /* the file to create */
            r = -errno;
            fv_diag_set(d, r, "%s: cannot look up %s: %s", name, cur, strerror(-r));
            goto fail;
        }
        if (!S_ISLNK(st.st_mode))
            break;
        if (hops == LINK_HOPS_MAX) {
            r = fv_diag_set(d, -ELOOP, "%s: more than %d symbolic links to follow: %s", name,
                            LINK_HOPS_MAX, strerror(ELOOP));
            goto fail;
        }
        ssize_t n = readlink(cur, buf, sizeof buf);
        if (n < 0 || (size_t)n >= sizeof buf) {
            r = n < 0 ? -errno : -ENAMETOOLONG;
            fv_diag_set(d, r, "%s: cannot read the symbolic link %s: %s", name, cur, strerror(-r));
            goto fail;
        }
        buf[n] = '\0';
        int fd = descriptor_path_fd(buf);
        if (fd >= 0) {
            *ret_fd = fd;
            free(cur);
            return 0;
        }
        /* a relative target is relative to the link's directory */
        const char *slash = strrchr(cur, '/');
        size_t dl = buf[0] == '/' || slash == NULL ? 0 : (size_t)(slash - cur) + 1;
        char *next = malloc(dl + (size_t)n + 1);
        if (next == NULL) {
            r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", name);
            goto fail;
        }
        memcpy(next, cur, dl);
        memcpy(next + dl, buf, (size_t)n + 1);
        free(cur);
        cur = next;
    }
    *ret = cur;
    return 0;
fail:
    free(cur);
    return r;
}

/* Creates the temporary file beside o->target: O_CREAT | O_EXCL with random names. */
static int create_tmp(fv_file_out_t *o, unsigned mode, fv_diag_t *d)
{
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t tl = strlen(o->target);
    int r = 0;

    o->tmp = malloc(tl + sizeof TMP_SUFFIX);
    if (o->tmp == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", o->name);
    memcpy(o->tmp, o->target, tl);
    memcpy(o->tmp + tl, TMP_SUFFIX, sizeof TMP_SUFFIX);
    char *x = o->tmp + tl + sizeof TMP_SUFFIX - 7; /* the six X */
    for (int i = 0; i < TMP_TRIES; i++) {
        unsigned char rnd[6];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
            r = -errno;
            break;
        }
        for (int k = 0; k < 6; k++)
            x[k] = chars[rnd[k] % (sizeof chars - 1)];
        o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOCTTY | O_CLOEXEC, (mode_t)mode);
        if (o->fd >= 0)
            return 0;
        r = -errno;
        if (errno != EEXIST)
            break;
    }
    free(o->tmp);
    o->tmp = NULL; /* nothing to remove */
    if (strcmp(o->name, o->target) == 0)
        return fv_diag_set(d, r, "%s: cannot create a temporary file next to it: %s", o->name,
                           strerror(-r));
    return fv_diag_set(d, r, "%s: cannot create a temporary file next to %s, where it links: %s",
                       o->name, o->target, strerror(-r));
}

static void out_free(fv_file_out_t *o)
{
    if (o->fd >= 0)
        close(o->fd);
    if (o->tmp != NULL)
        unlink(o->tmp);
    free(o->tmp);
    free(o->target);
    free(o->name);
    free(o);
}

int fv_file_out_open(const char *path, unsigned new_mode, fv_file_out_t **ret, fv_diag_t *d)
{
    fv_file_out_t *o = NULL;
    struct stat st;
    bool exists = false;
    int fd, r;

    if (path == NULL || path[0] == '\0' || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_file_out_open: no path");
    o = calloc(1, sizeof *o);
    if (o == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", path);
    o->fd = -1;
    o->name = strdup(strcmp(path, "-") == 0 ? "standard output" : path);
    if (o->name == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", path);
        goto fail;
    }

    fd = fv_file_path_fd(path); /* case 1, by name */
    if (fd < 0) {
        if (stat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                r = fv_diag_set(d, -EISDIR, "%s: is a directory; expected a file name", path);
                goto fail;
            }
            if (!S_ISREG(st.st_mode)) { /* case 2 */
                o->direct = true;
                o->fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
                if (o->fd < 0) {
                    r = -errno;
                    fv_diag_set(d, r, "%s: cannot open for writing: %s", path, strerror(-r));
                    goto fail;
                }
                *ret = o;
                return 0;
            }
            exists = true;
        } else if (errno != ENOENT) {
            r = -errno;
            fv_diag_set(d, r, "%s: cannot look up: %s", path, strerror(-r));
            goto fail;
        }
        if ((r = resolve_links(o->name, path, &o->target, &fd, d)) != 0)
            goto fail;
    }
    if (fd >= 0) { /* case 1: a descriptor path, named or linked to */
        o->direct = true;
        o->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (o->fd < 0) {
            r = -errno;
            if (r == -EBADF)
                fv_diag_set(d, r, "%s: descriptor %d is not open", o->name, fd);
            else
                fv_diag_set(d, r, "%s: cannot use descriptor %d: %s", o->name, fd, strerror(-r));
            goto fail;
        }
        *ret = o;
        return 0;
    }

    /* case 3: the temporary file beside the end of the chain */
    if ((r = create_tmp(o, new_mode, d)) != 0)
        goto fail;
    if (exists && fchmod(o->fd, st.st_mode & 0777) < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot give %s the mode of the file it replaces: %s", o->name,
                    o->tmp, strerror(-r));
        goto fail;
    }
    *ret = o;
    return 0;
fail:
    out_free(o);
    return r;
}

int fv_file_out_fd(const fv_file_out_t *o)
{
    return o->fd;
}

bool fv_file_out_is_direct(const fv_file_out_t *o)
{
    return o->direct;
}

int fv_file_out_commit(fv_file_out_t *o, fv_diag_t *d)
{
    struct stat st;
    int r = 0;

    if (o->direct) {
        /* fsync only what can be synced: a pipe or a terminal refuses it (EINVAL) */
        if (fstat(o->fd, &st) == 0 && S_ISREG(st.st_mode) && fsync(o->fd) < 0) {
            r = -errno;
            fv_diag_set(d, r, "%s: cannot fsync: %s", o->name, strerror(-r));
        }
        int cr = close(o->fd);
        o->fd = -1;
        if (cr < 0 && r == 0) {
            r = -errno;
            fv_diag_set(d, r, "%s: cannot close: %s", o->name, strerror(-r));
        }
        goto out;
    }
    if (fsync(o->fd) < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot fsync %s: %s", o->name, o->tmp, strerror(-r));
        goto out;
    }
    int cr = close(o->fd);
    o->fd = -1;
    if (cr < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot close %s: %s", o->name, o->tmp, strerror(-r));
        goto out;
    }
    if (rename(o->tmp, o->target) < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot rename %s over %s: %s", o->name, o->tmp, o->target,
                    strerror(-r));
        goto out;
    }
    free(o->tmp);
    o->tmp = NULL; /* renamed: nothing left to remove */
    if ((r = fv_file_fsync_parent(o->target)) < 0)
        /* The new file is in place but the rename may not survive a crash. */
        fv_diag_set(d, r, "%s: saved, but cannot fsync the directory of %s: %s", o->name, o->target,
                    strerror(-r));
out:
    out_free(o);
    return r;
}

void fv_file_out_abort(fv_file_out_t *o)
{
    if (o != NULL)
        out_free(o);
}

int fv_file_write_atomic(const char *path, const void *data, size_t len, unsigned new_mode,
                         fv_diag_t *d)
{
    fv_file_out_t *o = NULL;
    int r = fv_file_out_open(path, new_mode, &o, d);
    if (r != 0)
        return r;
    if ((r = fv_file_write_all(fv_file_out_fd(o), data, len)) != 0) {
        fv_diag_set(d, r, "%s: cannot write: %s", o->name, strerror(-r));
        fv_file_out_abort(o);
        return r;
    }
    return fv_file_out_commit(o, d);
}
