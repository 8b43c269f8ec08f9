/* fv_file.h - the small file-I/O routines every library folder needs, written once.
 *
 * Whole-file reads with a size cap (model files, schemas, jobs, PEM files), full writes
 * that survive short writes and EINTR, and directory fsyncs for crash-safe renames.
 * Pure: no logging, no loop. System errors are returned as -errno (libuv's UV_E*
 * values), project errors as FV_E*.
 */
#ifndef FV_FILE_H
#define FV_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"

/* Writes all len bytes of buf (borrowed) to fd, retrying short writes and EINTR.
 * Returns 0 or -errno. */
int fv_file_write_all(int fd, const void *buf, size_t len);

/* fsyncs the directory dir, so a rename into it survives a crash. Returns 0 or -errno. */
int fv_file_fsync_dir(const char *dir);

/* fsyncs the directory holding path ("." for a bare name, "/" for "/x").
 * Returns 0 or -errno (-ENAMETOOLONG if the directory name is PATH_MAX or longer). */
int fv_file_fsync_parent(const char *path);

/* Which step of fv_file_read_all failed, for callers that word their own sentences. */
typedef enum fv_file_step {
    FV_FILE_STEP_OPEN,  /* open(2): -errno */
    FV_FILE_STEP_STAT,  /* fstat(2): -errno */
    FV_FILE_STEP_TYPE,  /* not a regular file: FV_EINVAL */
    FV_FILE_STEP_SIZE,  /* over max_bytes: FV_ETOOBIG */
    FV_FILE_STEP_ALLOC, /* FV_ENOMEM */
    FV_FILE_STEP_READ,  /* read(2): -errno */
} fv_file_step_t;

typedef struct fv_file_fail {
    fv_file_step_t step;
    bool is_dir;        /* STEP_TYPE: the path is a directory */
    int64_t size_bytes; /* from STEP_TYPE on: the size fstat reported */
} fv_file_fail_t;

/* Reads the regular file path into a malloc'd buffer (caller frees) of *ret_len bytes
 * plus a NUL, so text can be parsed in place. The size is checked against max_bytes with
 * fstat before anything is allocated, and at most that many bytes are read (a file that
 * shrinks meanwhile yields what was there; callers' decoders name the truncation).
 *
 * On failure: returns the code listed in fv_file_step_t, writes a sentence naming path
 * into d ("PATH: cannot open: No such file or directory"), fills *fail if it is not NULL
 * (the only out-parameter written on failure), and leaves ret_* alone. A partly filled
 * buffer is wiped before it is freed, so the helper may read key material; on success
 * wiping the buffer before freeing it is the caller's job. */
int fv_file_read_all(const char *path, size_t max_bytes, char **ret_buf, size_t *ret_len,
                     fv_file_fail_t *fail, fv_diag_t *d);

#endif
