/* fv_file.h - the small file-I/O routines every library folder needs, written once.
 *
 * Whole-file reads with a size cap (model files, schemas, jobs, PEM files), full writes
 * that survive short writes and EINTR, directory fsyncs for crash-safe renames, and
 * output files (fv_file_out) that are replaced crash-safely, written through symlinks,
 * or written in place when they are a device, a pipe or standard output.
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

/* ---- writing a file: fv_file_out ---------------------------------------------------
 * How fv_file_out_open writes path (every command-line output and every saved model,
 * schema and ONNX file goes through it; file.c's note says why each case is so):
 *   1. "-", /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N (fv_file_path_fd): that
 *      descriptor is duplicated and written where it stands (its current offset, no
 *      truncation, no temporary file), be it a terminal, a pipe or a file the shell
 *      redirected. So is a symlink whose chain reaches one of these names.
 *   2. a path that exists and is not a regular file (character device, FIFO, socket),
 *      symlinks followed: opened O_WRONLY (no O_CREAT, no O_TRUNC) and written directly.
 *   3. otherwise (a regular file, or nothing yet): the symlink chain is followed to its
 *      end, which may be a dangling link's target in an existing directory; the data goes
 *      to a temporary file beside that final name (same directory, so one file system)
 *      and commit fsyncs it, renames it over the final name and fsyncs the directory.
 *      Symlinks on the way stay symlinks; after a crash the final file holds its old or
 *      its new contents. A new file is created with new_mode & ~umask; a file replaced
 *      keeps its permission bits.
 * A directory is refused (-EISDIR). Errors are -errno (UV_E*) or FV_E*, with a sentence
 * in d naming the path ("standard output" for "-") and the reason. */
typedef struct fv_file_out fv_file_out_t;

/* The descriptor a descriptor path names ("-" and /dev/stdout: 1, /dev/stderr: 2,
 * /dev/fd/N and /proc/self/fd/N: N), or -1 for any other path. */
int fv_file_path_fd(const char *path);

/* Opens path (borrowed) for writing as above. On success *ret is the caller's, to be
 * ended by fv_file_out_commit or fv_file_out_abort. */
int fv_file_out_open(const char *path, unsigned new_mode, fv_file_out_t **ret, fv_diag_t *d);
/* The descriptor to write to (owned by o: do not close it). */
int fv_file_out_fd(const fv_file_out_t *o);
/* Cases 1 and 2: bytes written reach the target at once and cannot be taken back. */
bool fv_file_out_is_direct(const fv_file_out_t *o);
/* Ends the write and frees o, also on failure. Case 3: fsync, close, rename over the
 * final name, fsync the directory (on failure before the rename the temporary file is
 * removed and the target is untouched). Cases 1 and 2: close (after an fsync when the
 * descriptor is a regular file). 0 or a negative code with d set. */
int fv_file_out_commit(fv_file_out_t *o, fv_diag_t *d);
/* Ends the write without committing it: the temporary file is removed (case 3; cases 1
 * and 2 keep what was written). Frees o. NULL is a no-op. */
void fv_file_out_abort(fv_file_out_t *o);

/* fv_file_out_open + fv_file_write_all of len bytes of data (borrowed) + commit. */
int fv_file_write_atomic(const char *path, const void *data, size_t len, unsigned new_mode,
                         fv_diag_t *d);

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
