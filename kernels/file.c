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
 * Threading: no state; every function is safe to call from any thread.
 */
#define _GNU_SOURCE /* explicit_bzero */
#include "fv_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
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
