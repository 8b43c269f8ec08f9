/* csv.c - RFC 4180 reader over an in-memory copy of the input.
 *
 * Purpose: turn a CSV file into records of NUL-terminated fields, with the physical line
 * of every record, so that schema.c and dataset.c can write "FILE:LINE:COL" messages.
 *
 * How: the whole input is read once into one buffer of len + 1 bytes (buf[len] == '\0'
 * is a sentinel, never data). fv_csv_next() parses the next record *in place*: the byte
 * that ends a field (',' or a line end) is overwritten with '\0', and a quoted field is
 * unquoted by copying it onto itself, one position to the left (the write cursor is
 * always behind the read cursor, because a quoted field loses at least its opening
 * quote). So a record costs no allocation beyond the field pointer array, and a field is
 * a pointer into the buffer. The buffer is consumed as it is parsed, which is why fields
 * are only promised until the next call.
 *
 * Grammar accepted (RFC 4180 plus what real files hold):
 *   - a UTF-8 BOM (EF BB BF) at offset 0 is skipped;
 *   - line ends are LF, CRLF or a lone CR (old Mac files); each counts as one line;
 *   - a line with no characters at all is skipped (not a record); a line holding only
 *     `""` is a record of one empty field;
 *   - a field that starts with '"' is quoted: it runs to the next '"' not doubled, may
 *     hold ',', CR, LF and doubled quotes; after the closing quote only ',' , a line end
 *     or the end of input may follow;
 *   - in an unquoted field a '"' is an error (RFC 4180 forbids it, and it is nearly
 *     always a sign of a broken export); spaces are kept as they are;
 *   - a NUL byte anywhere is an error (a binary or UTF-16 file, usually);
 *   - the last record may or may not end with a line end.
 *
 * Positions: `line` is the 1-based physical line of the byte being looked at; newlines
 * inside quoted fields are counted, so the records after a multi-line field still get
 * their true line. COL in messages is the 1-based field number in the record.
 *
 * Errors are sticky: after fv_csv_next() failed, later calls return the same code and
 * message, so a caller that loops carelessly cannot read past a broken record.
 *
 * Ownership: fv_csv_t owns its copy of the name and of the data. Not thread-safe; one
 * reader per thread.
 */
#include "fv_csv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CSV_FIELDS_INIT 64
#define CSV_READ_CHUNK ((size_t)64 << 10)

struct fv_csv {
    char *name;
    char *buf; /* len + 1 bytes; buf[len] == '\0' */
    size_t len;
    size_t pos;  /* next byte to parse */
    size_t line; /* 1-based line of buf[pos] */
    const char **fields;
    size_t cap_fields;
    int err; /* sticky error, 0 if none */
    char err_msg[FV_DIAG_MAX];
};

/* Builds the reader around an already-filled buffer (takes ownership of buf). */
static int csv_new(const char *name, char *buf, size_t len, fv_csv_t **ret)
{
    fv_csv_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return FV_ENOMEM;
    c->name = strdup(name != NULL ? name : "<memory>");
    c->fields = malloc(CSV_FIELDS_INIT * sizeof *c->fields);
    if (c->name == NULL || c->fields == NULL) {
        free(c->name);
        free(c->fields);
        free(c);
        return FV_ENOMEM;
    }
    c->cap_fields = CSV_FIELDS_INIT;
    c->buf = buf;
    c->len = len;
    c->line = 1;
    if (len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB &&
        (unsigned char)buf[2] == 0xBF)
        c->pos = 3;
    *ret = c;
    return 0;
}

/* Reads a whole file descriptor into a malloc'd buffer of *ret_len + 1 bytes.
 * Regular files: the size is checked against the cap before anything is allocated.
 * Pipes and devices: read in chunks, the cap checked as the data arrives. */
static int csv_read_fd(int fd, const char *path, size_t max_bytes, char **ret_buf, size_t *ret_len,
                       fv_diag_t *d)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int r;

    if (fstat(fd, &st) != 0) {
        r = -errno;
        return fv_diag_set(d, r, "%s: cannot stat: %s; expected a readable CSV file", path,
                           strerror(-r));
    }
    if (S_ISDIR(st.st_mode))
        return fv_diag_set(d, -EISDIR, "%s: cannot read: %s; expected a CSV file", path,
                           strerror(EISDIR));
    if (S_ISREG(st.st_mode)) {
        if ((uintmax_t)st.st_size > (uintmax_t)max_bytes)
            return fv_diag_set(d, FV_ETOOBIG,
                               "%s: file is %jd bytes, over the cap of %zu bytes; expected "
                               "at most %zu bytes (split the file or raise the cap)",
                               path, (intmax_t)st.st_size, max_bytes, max_bytes);
        cap = (size_t)st.st_size;
    } else {
        cap = CSV_READ_CHUNK < max_bytes ? CSV_READ_CHUNK : max_bytes;
    }
    buf = malloc(cap + 1);
    if (buf == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory reading %zu bytes", path, cap);

    for (;;) {
        if (len == cap) {
            /* Regular files stop at the size fstat gave (a file growing while we read
             * is read as it was); other inputs grow up to the cap. */
            if (S_ISREG(st.st_mode))
                break;
            if (cap == max_bytes) {
                char probe;
                ssize_t k = read(fd, &probe, 1);
                if (k == 0)
                    break;
                r = fv_diag_set(d, FV_ETOOBIG,
                                "%s: input is over the cap of %zu bytes; expected at most "
                                "%zu bytes (split the file or raise the cap)",
                                path, max_bytes, max_bytes);
                goto out;
            }
            size_t ncap = cap > max_bytes / 2 ? max_bytes : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (nb == NULL) {
                r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory reading %zu bytes", path, ncap);
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t k = read(fd, buf + len, cap - len);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            fv_diag_set(d, r, "%s: cannot read: %s; expected a readable CSV file", path,
                        strerror(-r));
            goto out;
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    buf[len] = '\0';
    *ret_buf = buf;
    *ret_len = len;
    return 0;
out:
    free(buf);
    return r;
}

int fv_csv_open(const char *path, size_t max_bytes, fv_csv_t **ret, fv_diag_t *d)
{
    char *buf = NULL;
    size_t len = 0;
    int fd, r;

    if (path == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_csv_open: path and ret are required");
    if (max_bytes == 0)
        max_bytes = FV_CSV_MAX_BYTES;
    if (max_bytes > SIZE_MAX - 1)
        max_bytes = SIZE_MAX - 1;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        /* -errno equals libuv's UV_E* code on Unix, so fv_strerror() knows it. */
        r = -errno;
        return fv_diag_set(d, r, "%s: cannot open: %s; expected a readable CSV file", path,
                           strerror(-r));
    }
    r = csv_read_fd(fd, path, max_bytes, &buf, &len, d);
    close(fd);
    if (r < 0)
        return r;
    r = csv_new(path, buf, len, ret);
    if (r < 0) {
        free(buf);
        return fv_diag_set(d, r, "%s: out of memory", path);
    }
    return 0;
}

int fv_csv_open_mem(const char *name, const char *buf, size_t len, fv_csv_t **ret, fv_diag_t *d)
{
    const char *nm = name != NULL ? name : "<memory>";
    char *copy;
    int r;

    if (ret == NULL || (buf == NULL && len > 0))
        return fv_diag_set(d, FV_EINVAL, "fv_csv_open_mem: ret and buf are required");
    if (len > FV_CSV_MAX_BYTES)
        return fv_diag_set(d, FV_ETOOBIG,
                           "%s: input is %zu bytes, over the cap of %zu bytes; expected at "
                           "most %zu bytes",
                           nm, len, FV_CSV_MAX_BYTES, FV_CSV_MAX_BYTES);
    copy = malloc(len + 1);
    if (copy == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory copying %zu bytes", nm, len);
    if (len > 0)
        memcpy(copy, buf, len);
    copy[len] = '\0';
    r = csv_new(nm, copy, len, ret);
    if (r < 0) {
        free(copy);
        return fv_diag_set(d, r, "%s: out of memory", nm);
    }
    return 0;
}

/* Records the error in the reader (sticky) and in d. */
__attribute__((format(printf, 3, 4))) static int csv_fail(fv_csv_t *c, fv_diag_t *d,
                                                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err_msg, sizeof c->err_msg, fmt, ap);
    va_end(ap);
    c->err = FV_EPARSE;
    return fv_diag_set(d, c->err, "%s", c->err_msg);
}

/* Bytes that end an unquoted field or need a closer look. */
static bool csv_is_special(unsigned char ch)
{
    return ch == ',' || ch == '\n' || ch == '\r' || ch == '"' || ch == '\0';
}

int fv_csv_next(fv_csv_t *c, fv_csv_record_t *ret_rec, fv_diag_t *d)
{
    char *p, *end;
    size_t n = 0, rec_line;

    if (c == NULL || ret_rec == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_csv_next: reader and record are required");
    if (c->err != 0)
        return fv_diag_set(d, c->err, "%s", c->err_msg);

    end = c->buf + c->len;
    p = c->buf + c->pos;
    /* Skip lines with no characters at all. */
    while (p < end && (*p == '\n' || *p == '\r')) {
        if (*p == '\r' && p + 1 < end && p[1] == '\n')
            p++;
        p++;
        c->line++;
    }
    if (p >= end) {
        c->pos = c->len;
        return 0;
    }
    rec_line = c->line;

    for (;;) {
        char *field, *q;
        size_t col = n + 1;

        if (n == FV_CSV_MAX_FIELDS)
            return csv_fail(c, d,
                            "%s:%zu:%zu: record has more than %d fields; expected at most %d "
                            "fields",
                            c->name, c->line, col, FV_CSV_MAX_FIELDS, FV_CSV_MAX_FIELDS);
        if (n == c->cap_fields) {
            size_t ncap = c->cap_fields * 2;
            const char **nf;
            if (ncap > FV_CSV_MAX_FIELDS)
                ncap = FV_CSV_MAX_FIELDS;
            nf = realloc(c->fields, ncap * sizeof *nf);
            if (nf == NULL) {
                c->err = FV_ENOMEM;
                snprintf(c->err_msg, sizeof c->err_msg, "%s:%zu: out of memory", c->name, c->line);
                return fv_diag_set(d, c->err, "%s", c->err_msg);
            }
            c->fields = nf;
            c->cap_fields = ncap;
        }

        field = p;
        if (*p == '"') {
            size_t open_line = c->line;
            char *w = p;
            q = p + 1;
            for (;;) {
                if (q >= end)
                    return csv_fail(c, d,
                                    "%s:%zu:%zu: quoted field never closed; expected a "
                                    "closing '\"' before the end of the file",
                                    c->name, open_line, col);
                if (*q == '"') {
                    if (q + 1 < end && q[1] == '"') {
                        *w++ = '"';
                        q += 2;
                        continue;
                    }
                    q++; /* closing quote */
                    break;
                }
                if (*q == '\0')
                    return csv_fail(c, d,
                                    "%s:%zu:%zu: NUL byte in the data; expected text (is "
                                    "this a binary or UTF-16 file?)",
                                    c->name, c->line, col);
                if (*q == '\n' || (*q == '\r' && !(q + 1 < end && q[1] == '\n')))
                    c->line++;
                *w++ = *q++;
            }
            *w = '\0'; /* w < q: only consumed bytes are overwritten */
            if (q < end && *q != ',' && *q != '\n' && *q != '\r') {
                if (*q == '\0')
                    return csv_fail(c, d,
                                    "%s:%zu:%zu: NUL byte in the data; expected text (is "
                                    "this a binary or UTF-16 file?)",
                                    c->name, c->line, col);
                return csv_fail(c, d,
                                "%s:%zu:%zu: text after the closing quote of a quoted field; "
                                "expected ',' or the end of the line (write a quote inside "
                                "a quoted field as \"\")",
                                c->name, c->line, col);
            }
        } else {
            q = p;
            while (q < end && !csv_is_special((unsigned char)*q))
                q++;
            if (q < end && *q == '"')
                return csv_fail(c, d,
                                "%s:%zu:%zu: quote inside an unquoted field; expected the "
                                "whole field in quotes with inner quotes doubled (\"a \"\"b\"\"\")",
                                c->name, c->line, col);
            if (q < end && *q == '\0')
                return csv_fail(c, d,
                                "%s:%zu:%zu: NUL byte in the data; expected text (is this a "
                                "binary or UTF-16 file?)",
                                c->name, c->line, col);
        }
        c->fields[n++] = field;

        /* q is at the delimiter, a line end or the end of input. */
        if (q >= end) {
            *q = '\0'; /* the sentinel */
            p = end;
            break;
        }
        if (*q == ',') {
            *q = '\0';
            p = q + 1;
            continue;
        }
        /* line end: LF, CRLF or lone CR */
        {
            bool crlf = *q == '\r' && q + 1 < end && q[1] == '\n';
            *q = '\0';
            p = q + (crlf ? 2 : 1);
            c->line++;
        }
        break;
    }
    c->pos = (size_t)(p - c->buf);
    ret_rec->n_fields = n;
    ret_rec->fields = c->fields;
    ret_rec->line = rec_line;
    return 1;
}

const char *fv_csv_name(const fv_csv_t *c)
{
    return c != NULL ? c->name : "";
}

void fv_csv_free(fv_csv_t *c)
{
    if (c == NULL)
        return;
    free(c->name);
    free(c->buf);
    free(c->fields);
    free(c);
}
