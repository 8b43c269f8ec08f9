/* fv_csv.h - RFC 4180 CSV reader with positions for error messages.
 *
 * Records are returned one at a time from a window over the file (a small file, a pipe or
 * a buffer is held whole; the input is capped: FV_CSV_MAX_BYTES by default). Quoted fields may hold
 * commas, doubled quotes and newlines; CRLF and LF line ends are accepted; a UTF-8 BOM at the start
 * is skipped. A record's `line` is the 1-based physical line on which it starts, so a message can
 * point at it. Fields of a record are valid until the next fv_csv_next() or fv_csv_free().
 *
 * Errors (fv_diag_t filled, "FILE:LINE:COL: ..."): unreadable file, file over the cap,
 * unterminated quoted field, a quote in the middle of an unquoted field, text after a
 * closing quote, a record with more than FV_CSV_MAX_FIELDS fields, a NUL byte, a read
 * error in the middle of a windowed file ("FILE:LINE: cannot read: ...").
 */
#ifndef FV_CSV_H
#define FV_CSV_H

#include <stddef.h>

#include "fv_error.h"

#define FV_CSV_MAX_BYTES ((size_t)1 << 30) /* 1 GiB */
#define FV_CSV_MAX_FIELDS 4096
/* A regular file larger than this is read through a window of this many bytes (grown for
 * a longer record); smaller inputs are held whole. Records and errors are the same. */
#define FV_CSV_WINDOW_BYTES ((size_t)1 << 20)

typedef struct fv_csv fv_csv_t;

typedef struct fv_csv_record {
    size_t n_fields;
    const char *const *fields; /* NUL-terminated, unquoted; borrowed */
    size_t line;               /* 1-based line where the record starts */
} fv_csv_record_t;

/* Opens and reads `path`. max_bytes == 0 means FV_CSV_MAX_BYTES. */
int fv_csv_open(const char *path, size_t max_bytes, fv_csv_t **ret, fv_diag_t *d);
/* Same over a buffer (copied); `name` is used in messages. */
int fv_csv_open_mem(const char *name, const char *buf, size_t len, fv_csv_t **ret, fv_diag_t *d);
/* 1 and *ret_rec filled: a record; 0: end of input; < 0: error (d filled).
 * A completely empty line (no characters) is skipped, not returned. */
int fv_csv_next(fv_csv_t *c, fv_csv_record_t *ret_rec, fv_diag_t *d);
/* Bytes of the input parsed so far (the records returned, and the lines skipped) and its
 * total size (a file's at open), so a caller can size its output from the first records;
 * both 0 for NULL. A file that shrinks while read ends early: treat total as a hint. */
void fv_csv_progress(const fv_csv_t *c, size_t *ret_done, size_t *ret_total);
/* The name given at open (path or buffer name); borrowed. */
const char *fv_csv_name(const fv_csv_t *c);
void fv_csv_free(fv_csv_t *c);

#endif
