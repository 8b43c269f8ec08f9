/* state_models.c - the durable state store's model files (fv_state.h): content-addressed,
 * immutable, in DIR/models.
 *
 * Files:
 *   DIR/models/<64 lowercase hex SHA-256 of the contents>.fvm   model files, immutable.
 *   DIR/models/<...>.fvm.tmp   a put in progress (removed by the next open, through
 *                              fv__state_model_tmp_remove).
 *
 * Durability: a model file is written to <name>.tmp, fsynced, renamed to <name>, and the
 * models directory is fsynced, all before fv_state_model_put returns. A row naming the
 * file (versions, checkpoints, rounds) can only be committed after that, so a committed
 * row never names a missing or partial file (fv_state_version_add, in state_jobs.c,
 * checks the file is there). A crash before the rename leaves only a .tmp file (removed
 * at open); a crash after it leaves an unreferenced, complete model file (harmless: it is
 * content-addressed, and the next put of the same bytes reuses it). A read checks the
 * contents against the name: a damaged file is FV_ECORRUPT, never a model.
 *
 * Threading: these functions touch files and s->models_dir only (set by the open, never
 * changed), never the database connection, so the coordinator may put a model file from
 * a pool thread while the loop uses the database (coord_finish.c); everything else about
 * a fv_state_t belongs to one thread. Ownership: fv_state_model_read's bytes are the
 * caller's to free.
 */
#include "state-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fv_crypto.h"
#include "fv_file.h"

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Removes <64 hex>.fvm.tmp files a crashed fv_state_model_put left behind. Safe: we hold
 * the lock, so no put is in progress. */
int fv__state_model_tmp_remove(fv_state_t *s, fv_diag_t *d)
{
    DIR *dir = opendir(s->models_dir);
    int r = 0;
    if (dir == NULL)
        return fv__state_sys_fail(-errno, s->models_dir, "cannot read the directory", d);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        char name[65];
        if (strlen(e->d_name) != 64 + 8 || strcmp(e->d_name + 64, ".fvm.tmp") != 0)
            continue;
        memcpy(name, e->d_name, 64);
        name[64] = '\0';
        if (!fv__state_is_hex64(name))
            continue;
        if (unlinkat(dirfd(dir), e->d_name, 0) != 0 && errno != ENOENT) {
            r = -errno;
            fv_diag_set(d, r, "%s/%s: cannot remove a leftover temporary file: %s", s->models_dir,
                        e->d_name, strerror(-r));
            break;
        }
    }
    closedir(dir);
    return r;
}

int fv_state_model_path(const fv_state_t *s, const char *sha, char *buf, size_t cap)
{
    if (!fv__state_is_hex64(sha))
        return FV_EINVAL;
    int n = snprintf(NULL, 0, "%s/%s.fvm", s->models_dir, sha);
    if (n < 0 || (size_t)n >= cap)
        return FV_ETOOBIG;
    snprintf(buf, cap, "%s/%s.fvm", s->models_dir, sha);
    return 0;
}

int fv_state_model_put(fv_state_t *s, const uint8_t *bytes, size_t len, char ret_sha[65],
                       fv_diag_t *d)
{
    uint8_t h[FV_HASH_BYTES];
    char sha[65], path[PATH_MAX], tmp[PATH_MAX + 8];
    int fd = -1, r;
    bool tmp_made = false;

    if (bytes == NULL && len > 0)
        return fv_diag_set(d, FV_EINVAL, "fv_state_model_put: NULL bytes");
    if (len > FV_STATE_MODEL_MAX)
        return fv_diag_set(d, FV_ETOOBIG, "model of %zu bytes is over the cap of %zu bytes", len,
                           (size_t)FV_STATE_MODEL_MAX);
    fv_sha256(h, len > 0 ? bytes : (const uint8_t *)"", len);
    to_hex(h, sizeof h, sha);
    /* The open checked the directory name leaves room for both names. */
    fv_state_model_path(s, sha, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);

    struct stat st;
    if (stat(path, &st) == 0) {
        /* Already stored: fsync the directory again, as the put that renamed it may have
         * failed at its own directory fsync. */
        if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size == len)
            goto sync_dir;
        /* Wrong size: damaged. Replaced below by the same atomic rename. */
    } else if (errno != ENOENT) {
        r = fv__state_sys_fail(-errno, path, "cannot stat", d);
        goto out;
    }

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = fv__state_sys_fail(-errno, tmp, "cannot create", d);
        goto out;
    }
    tmp_made = true;
    if ((r = fv_file_write_all(fd, bytes, len)) != 0) {
        fv__state_sys_fail(r, tmp, "cannot write", d);
        goto out;
    }
    if (fsync(fd) != 0) {
        r = fv__state_sys_fail(-errno, tmp, "cannot fsync", d);
        goto out;
    }
    r = close(fd) == 0 ? 0 : -errno;
    fd = -1;
    if (r != 0) {
        fv__state_sys_fail(r, tmp, "cannot close", d);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot rename to %s: %s", tmp, path, strerror(-r));
        goto out;
    }
    tmp_made = false;
sync_dir:
    if ((r = fv_file_fsync_dir(s->models_dir)) != 0) {
        fv__state_sys_fail(r, s->models_dir, "cannot fsync", d);
        goto out;
    }
    memcpy(ret_sha, sha, sizeof sha);
out:
    if (fd >= 0)
        close(fd);
    if (tmp_made)
        unlink(tmp); /* best effort; the next open removes it otherwise */
    return r;
}

int fv_state_model_read(fv_state_t *s, const char *sha, uint8_t **ret_bytes, size_t *ret_len,
                        fv_diag_t *d)
{
    char path[PATH_MAX], got[65];
    uint8_t h[FV_HASH_BYTES];
    char *buf = NULL;
    size_t len = 0;
    int r;

    if ((r = fv__state_check_hex64("model name", sha, d)) != 0)
        return r;
    fv_state_model_path(s, sha, path, sizeof path);
    if ((r = fv_file_read_all(path, FV_STATE_MODEL_MAX, &buf, &len, NULL, d)) != 0)
        return r;
    fv_sha256(h, buf, len);
    to_hex(h, sizeof h, got);
    if (strcmp(got, sha) != 0) {
        free(buf);
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: the contents do not match the name (their SHA-256 is %s): the "
                           "model file is damaged; restore it from a backup",
                           path, got);
    }
    *ret_bytes = (uint8_t *)buf;
    *ret_len = len;
    return 0;
}
