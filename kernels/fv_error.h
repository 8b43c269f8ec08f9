/* fv_error.h - the one table of fedvault error codes, and diagnostics.
 *
 * Fallible functions return int: 0 on success, a negative code on failure. Codes are
 * project codes (FV_E*, from -10001 down, never renumbered) or libuv's UV_E* passed
 * through unchanged (they live in -1..-4095 and never collide with ours).
 *
 * A code says *what kind* of failure; a fv_diag_t says *where* and *what to do*:
 * functions that read files or peer input take an optional fv_diag_t* and, on failure,
 * write one human-readable sentence into it ("data.csv:17:4: column 'age': expected a
 * number, got \"abc\""). Libraries never print; callers decide where the sentence goes.
 */
#ifndef FV_ERROR_H
#define FV_ERROR_H

#include <stddef.h>

/* XX(name, value, message). Append only; never renumber or reuse a value. */
#define FV_ERRNO_MAP(XX)                                                                           \
    XX(EINVAL, -10001, "invalid argument")                                                         \
    XX(ENOMEM, -10002, "out of memory")                                                            \
    XX(EIO, -10003, "input/output error")                                                          \
    XX(EPARSE, -10004, "malformed input")                                                          \
    XX(ESCHEMA, -10005, "data does not match the schema")                                          \
    XX(ECORRUPT, -10006, "corrupt or truncated file")                                              \
    XX(EVERSION, -10007, "unsupported format version")                                             \
    XX(ERANGE, -10008, "value out of range")                                                       \
    XX(EEMPTY, -10009, "no data")                                                                  \
    XX(ENOTSUP, -10010, "not supported")                                                           \
    XX(ETOOBIG, -10011, "input exceeds a configured size cap")                                     \
    XX(ENUMERIC, -10012, "numerical failure (NaN or infinity)")                                    \
    XX(EAUTH, -10013, "signature or authentication tag check failed")                              \
    XX(EPROTO, -10014, "malformed or truncated protocol message")                                  \
    XX(EPHASE, -10015, "message for the wrong protocol phase")                                     \
    XX(EROUND, -10016, "message for the wrong job or round")                                       \
    XX(EDUP, -10017, "duplicate message")                                                          \
    XX(EPEER, -10018, "unknown peer")                                                              \
    XX(EPOLICY, -10019, "refused by local policy")                                                 \
    XX(EBOTHSHARES, -10020, "asked to reveal both secret shares of one peer")                      \
    XX(ETHRESHOLD, -10021, "fewer participants than the threshold")                                \
    XX(EOVERFLOW, -10022, "quantized sum could wrap the modulus")

enum {
    FV_OK = 0,
#define FV__ERR_ENUM(name, value, msg) FV_##name = value,
    FV_ERRNO_MAP(FV__ERR_ENUM)
#undef FV__ERR_ENUM
};

/* Message for a project code, a libuv code or a negated errno. Never NULL. */
const char *fv_strerror(int err);
/* Symbolic name ("FV_EPARSE", "UV_ENOENT"...). Never NULL. */
const char *fv_err_name(int err);

/* A diagnostic sentence a library fills on failure. Always NUL-terminated. */
#define FV_DIAG_MAX 512
typedef struct fv_diag {
    char msg[FV_DIAG_MAX];
} fv_diag_t;

/* printf-style; d may be NULL (then nothing happens). Returns err, so callers can write
 * `return fv_diag_set(d, FV_EPARSE, "...", ...);`. */
int fv_diag_set(fv_diag_t *d, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
