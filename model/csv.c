/* csv.c - RFC 4180 reader: a window over a regular file, or an in-memory copy.
 *
 * Purpose: turn a CSV file into records of NUL-terminated fields, with the physical line
 * of every record, so that schema.c and dataset.c can write "FILE:LINE:COL" messages,
 * at the speed the disk gives (issue 18: reading was most of `fedvault train`).
 *
 * How: the bytes sit in one buffer with a sentinel: buf[len] == '\0', never data. A
 * regular file is read through a window (CSV_WINDOW bytes, grown only for a record
 * longer than that), so the buffer stays in the cache and no page of a file-sized copy
 * is ever faulted in; a small file, a pipe or device (read whole, the cap checked as the
 * data arrives) and fv_csv_open_mem's copy are one window holding everything.
 * fv_csv_next() first makes sure the window holds the whole next record (csv_fill):
 * the record ends at the first line end outside quotes, found with memchr for '\n',
 * '\r' and '"' (a byte loop only from the first quote on); if the window ends first,
 * the unparsed tail moves to the front and more is read. Only then is the record parsed
 * *in place*: the byte that ends a field (',' or a line end) is overwritten with '\0',
 * and a quoted field is unquoted by copying it onto itself, one position to the left
 * (the write cursor is always behind the read cursor, because a quoted field loses at
 * least its opening quote). So a record costs no allocation (the field pointer array
 * holds FV_CSV_MAX_FIELDS from the start), and a field is a pointer into the window.
 * The window is overwritten as it is parsed and refilled, which is why fields are only
 * promised until the next call. Parsing a complete record never needs more bytes, so
 * the parser below is the same whether the file came whole or through the window.
 *
 * Why the quote parity finds the record end the parser finds: in any prefix the parser
 * accepts, quotes come as an opening one, doubled pairs inside, a closing one; so an odd
 * count since the record's start means "inside a quoted field". Input the parser refuses
 * is refused at a byte before the end the scan found (or at the end of the file), with
 * the same message as if the file were read whole. A CR at the very end of the window
 * is never taken as a lone CR before the next byte is read (it may be half a CRLF).
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
 * message, so a caller that loops carelessly cannot read past a broken record. A read
 * error in the middle of a file is one of them.
 *
 * Ownership: fv_csv_t owns its copy of the name, the window and the file descriptor of
 * a windowed file (closed by fv_csv_free). Not thread-safe; one reader per thread.
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

#define CSV_READ_CHUNK ((size_t)64 << 10)
#define CSV_WINDOW FV_CSV_WINDOW_BYTES
#define CSV_PAD 8 /* zero bytes after the sentinel: csv_scan reads 8 at a time */

struct fv_csv {
    char *name;
    char *buf;           /* cap + 1 + CSV_PAD bytes; buf[len .. len + CSV_PAD] are '\0' */
    size_t cap;          /* window bytes (the whole input when fd < 0) */
    size_t len;          /* bytes of data in buf */
    size_t pos;          /* next byte to parse */
    size_t line;         /* 1-based line of buf[pos] */
    int fd;              /* windowed regular file, or -1: everything is in buf */
    size_t left;         /* bytes of the file not yet read (its size at open) */
    size_t base;         /* input offset of buf[0] */
    size_t total;        /* input size: the file's at open, or len */
    const char **fields; /* FV_CSV_MAX_FIELDS entries */
    int err;             /* sticky error, 0 if none */
    char err_msg[FV_DIAG_MAX];
};

/* Builds the reader around an already-filled buffer of len + 1 bytes (takes ownership of
 * buf; the caller sets fd, cap and left for a window). */
static int csv_new(const char *name, char *buf, size_t len, fv_csv_t **ret)
{
    fv_csv_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return FV_ENOMEM;
    c->name = strdup(name != NULL ? name : "<memory>");
    c->fields = malloc(FV_CSV_MAX_FIELDS * sizeof *c->fields);
    if (c->name == NULL || c->fields == NULL) {
        free(c->name);
        free(c->fields);
        free(c);
        return FV_ENOMEM;
    }
    c->buf = buf;
    c->len = c->cap = c->total = len;
    c->fd = -1;
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
    buf = malloc(cap + 1 + CSV_PAD);
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
            char *nb = realloc(buf, ncap + 1 + CSV_PAD);
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
    memset(buf + len, 0, 1 + CSV_PAD);
    *ret_buf = buf;
    *ret_len = len;
    return 0;
out:
    free(buf);
    return r;
}

/* Reads until buf[0..want) is full or the file ends; returns bytes read or -errno. */
static ssize_t csv_read_full(int fd, char *buf, size_t want)
{
    size_t got = 0;
    while (got < want) {
        ssize_t k = read(fd, buf + got, want - got);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

int fv_csv_open(const char *path, size_t max_bytes, fv_csv_t **ret, fv_diag_t *d)
{
    char *buf = NULL;
    size_t len = 0;
    struct stat st;
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
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uintmax_t)st.st_size > CSV_WINDOW &&
        (uintmax_t)st.st_size <= (uintmax_t)max_bytes) {
        /* A large regular file: a window, read as records are asked for. */
        ssize_t k;
        buf = malloc(CSV_WINDOW + 1 + CSV_PAD);
        if (buf == NULL) {
            close(fd);
            return fv_diag_set(d, FV_ENOMEM, "%s: out of memory reading %zu bytes", path,
                               CSV_WINDOW);
        }
        k = csv_read_full(fd, buf, CSV_WINDOW);
        if (k < 0) {
            free(buf);
            close(fd);
            return fv_diag_set(d, (int)k, "%s: cannot read: %s; expected a readable CSV file", path,
                               strerror((int)-k));
        }
        memset(buf + k, 0, 1 + CSV_PAD);
        r = csv_new(path, buf, (size_t)k, ret);
        if (r < 0) {
            free(buf);
            close(fd);
            return fv_diag_set(d, r, "%s: out of memory", path);
        }
        (*ret)->cap = CSV_WINDOW;
        (*ret)->fd = fd;
        (*ret)->left = (size_t)st.st_size - (size_t)k;
        (*ret)->total = (size_t)st.st_size;
        if ((size_t)k < CSV_WINDOW)
            (*ret)->left = 0; /* the file shrank: what was read is all */
        return 0;
    }
    /* Anything else (small, over the cap, a pipe, a device, a directory) is read whole,
     * with the cap and error messages of csv_read_fd. */
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
    copy = malloc(len + 1 + CSV_PAD);
    if (copy == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory copying %zu bytes", nm, len);
    if (len > 0)
        memcpy(copy, buf, len);
    memset(copy + len, 0, 1 + CSV_PAD);
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

/* Bytes that end an unquoted field or need a closer look: ',' '\n' '\r' '"' and NUL. A
 * table lookup per byte, and no bounds test in the scan: buf[len] is a NUL, which stops
 * it (a NUL before end is data, and an error). */
static const unsigned char csv_special[256] = {
    [','] = 1, ['\n'] = 1, ['\r'] = 1, ['"'] = 1, ['\0'] = 1};

/* Moves the unparsed bytes to the front of the window and reads more of the file; grows
 * the window when one record fills it. 0, or < 0 with a sticky error. */
static int csv_refill(fv_csv_t *c, fv_diag_t *d)
{
    size_t want;
    ssize_t k;
    if (c->pos > 0) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->base += c->pos;
        c->len -= c->pos;
        c->pos = 0;
    }
    if (c->len == c->cap) {
        /* bounded by the file's size, itself under the cap checked at open */
        size_t ncap = c->cap <= c->left ? c->cap * 2 : c->cap + c->left;
        char *nb = realloc(c->buf, ncap + 1 + CSV_PAD);
        if (nb == NULL) {
            c->err = FV_ENOMEM;
            snprintf(c->err_msg, sizeof c->err_msg,
                     "%s:%zu: out of memory reading a record of over %zu bytes", c->name, c->line,
                     c->len);
            return fv_diag_set(d, c->err, "%s", c->err_msg);
        }
        c->buf = nb;
        c->cap = ncap;
    }
    want = c->cap - c->len < c->left ? c->cap - c->len : c->left;
    k = csv_read_full(c->fd, c->buf + c->len, want);
    if (k < 0) {
        c->err = (int)k;
        snprintf(c->err_msg, sizeof c->err_msg,
                 "%s:%zu: cannot read: %s; expected a readable CSV file", c->name, c->line,
                 strerror((int)-k));
        return fv_diag_set(d, c->err, "%s", c->err_msg);
    }
    c->len += (size_t)k;
    c->left = (size_t)k < want ? 0 : c->left - (size_t)k; /* a file that shrank ends here */
    memset(c->buf + c->len, 0, 1 + CSV_PAD);
    return 0;
}

/* The line end (LF or CR) outside quotes that ends the record starting at p, or NULL if
 * [p, end) holds none. memchr (vectorised in libc) finds the first LF, then any quote or
 * CR before it; only a record with a quote is walked byte by byte, from that quote. */
static const char *csv_record_end(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *lim = nl != NULL ? nl : end;
    const char *qt = memchr(p, '"', (size_t)(lim - p));
    const char *cr = memchr(p, '\r', (size_t)((qt != NULL ? qt : lim) - p));
    bool inq = false;
    if (cr != NULL)
        return cr;
    if (qt == NULL)
        return nl;
    for (const char *s = qt; s < end; s++) {
        if (*s == '"')
            inq = !inq;
        else if (!inq && (*s == '\n' || *s == '\r'))
            return s;
    }
    return NULL;
}

/* Makes the window hold the next record whole (after any empty lines), or everything up
 * to the end of the file. A CR last in the window may be half a CRLF: more is read. */
static int csv_fill(fv_csv_t *c, fv_diag_t *d)
{
    while (c->left > 0) {
        const char *p = c->buf + c->pos, *end = c->buf + c->len;
        while (p < end && (*p == '\n' || *p == '\r'))
            p++;
        if (p < end) {
            const char *e = csv_record_end(p, end);
            if (e != NULL && !(*e == '\r' && e + 1 == end))
                return 0;
        }
        int r = csv_refill(c, d);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The first byte at or after q that csv_special marks. Eight bytes at a time where the
 * byte order allows (SWAR): a mask flags bytes below 0x0E (NUL, LF, CR, and other
 * controls, which the table then rejects), '"' and ','; the classic borrow trick can flag
 * a byte above a flagged one falsely, never below, so the lowest flag is a true one. One
 * predictable branch per field, where a byte loop mispredicts at every field's end.
 * Stops at the sentinel at the latest; reads at most CSV_PAD bytes past it. */
static inline char *csv_scan(char *q)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    for (;;) {
        uint64_t w, x1, x2, m;
        memcpy(&w, q, sizeof w);
        x1 = w ^ (ones * '"');
        x2 = w ^ (ones * ',');
        m = (((w - ones * 0x0E) & ~w) | ((x1 - ones) & ~x1) | ((x2 - ones) & ~x2)) & high;
        if (m == 0) {
            q += 8;
            continue;
        }
        q += __builtin_ctzll(m) >> 3;
        if (csv_special[(unsigned char)*q])
            return q;
        q++;
    }
#else
    while (!csv_special[(unsigned char)*q])
        q++;
    return q;
#endif
}

int fv_csv_next(fv_csv_t *c, fv_csv_record_t *ret_rec, fv_diag_t *d)
{
    char *p, *end;
    size_t n = 0, rec_line;

    if (c == NULL || ret_rec == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_csv_next: reader and record are required");
    if (c->err != 0)
        return fv_diag_set(d, c->err, "%s", c->err_msg);
    if (c->left > 0) {
        int r = csv_fill(c, d);
        if (r < 0)
            return r;
    }

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
            q = csv_scan(p);
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

void fv_csv_progress(const fv_csv_t *c, size_t *ret_done, size_t *ret_total)
{
    *ret_done = c != NULL ? c->base + c->pos : 0;
    *ret_total = c != NULL ? c->total : 0;
}

const char *fv_csv_name(const fv_csv_t *c)
{
    return c != NULL ? c->name : "";
}

void fv_csv_free(fv_csv_t *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->name);
    free(c->buf);
    free(c->fields);
    free(c);
}
