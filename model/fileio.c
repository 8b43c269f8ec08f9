/* fileio.c - crash-safe file replacement for model/ (model files, schemas).
 *
 * fv__file_write_atomic writes a temporary file next to the target (mkstemp: mode 0600,
 * since what model/ saves is derived from bank data), fsyncs it, renames it over the
 * target and fsyncs the directory: after a crash at any point the target holds either
 * its old contents or the new ones, never a mix. On failure the temporary is removed.
 * System errors return -errno (libuv's UV_E* values), with a sentence naming the path.
 */
#include "model-int.h"

#include "fv_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fv__file_write_atomic(const char *path, const void *data, size_t len, fv_diag_t *d)
{
    const uint8_t *buf = data;
    char *tmp = NULL;
    int fd = -1;
    int r;

    /* The temporary file lives in the same directory so the rename is atomic. mkstemp
     * creates it 0600: a model is derived from bank data and is not world-readable
     * unless someone decides so. */
    size_t plen = strlen(path);
    static const char suffix[] = ".tmp.XXXXXX";
    tmp = malloc(plen + sizeof suffix);
    if (tmp == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, suffix, sizeof suffix);
    fd = mkstemp(tmp);
    if (fd < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot create a temporary file next to it: %s", path,
                    strerror(errno));
        free(tmp);
        tmp = NULL; /* nothing to remove */
        goto out;
    }
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);

    r = fv_file_write_all(fd, buf, len);
    if (r < 0) {
        fv_diag_set(d, r, "%s: cannot write %s: %s", path, tmp, strerror(-r));
        goto out;
    }
    if (fsync(fd) < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot fsync %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    int cr = close(fd);
    fd = -1;
    if (cr < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot close %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL; /* renamed: nothing left to remove */
    r = fv_file_fsync_parent(path);
    if (r < 0) {
        /* The new file is in place but the rename may not survive a crash. */
        fv_diag_set(d, r, "%s: saved, but cannot fsync its directory: %s", path, strerror(-r));
        goto out;
    }
    r = 0;
out:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL) {
        unlink(tmp);
        free(tmp);
    }
    return r;
}
