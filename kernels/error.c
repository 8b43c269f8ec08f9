/* error.c - fv_strerror/fv_err_name generated from FV_ERRNO_MAP, and fv_diag_set.
 *
 * Negative values in the libuv range are named from libuv's own UV_ERRNO_MAP, so a daemon
 * reports one code space whatever layer failed (and nothing allocates: uv_strerror would
 * leak a fresh string for codes libuv does not know).
 */
#include "fv_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <uv.h>

const char *fv_strerror(int err)
{
    switch (err) {
    case FV_OK:
        return "success";
#define FV__ERR_STR(name, value, msg)                                                              \
    case FV_##name:                                                                                \
        return msg;
        FV_ERRNO_MAP(FV__ERR_STR)
#undef FV__ERR_STR
    default:
        break;
    }
    switch (err) {
#define FV__UV_STR(name, msg)                                                                      \
    case UV_##name:                                                                                \
        return msg;
        UV_ERRNO_MAP(FV__UV_STR)
#undef FV__UV_STR
    default:
        break;
    }
    /* Not uv_strerror(): for codes libuv does not know it allocates a fresh string. */
    return "unknown error";
}

const char *fv_err_name(int err)
{
    switch (err) {
    case FV_OK:
        return "FV_OK";
#define FV__ERR_NAME(name, value, msg)                                                             \
    case FV_##name:                                                                                \
        return "FV_" #name;
        FV_ERRNO_MAP(FV__ERR_NAME)
#undef FV__ERR_NAME
    default:
        break;
    }
    switch (err) {
#define FV__UV_NAME(name, msg)                                                                     \
    case UV_##name:                                                                                \
        return "UV_" #name;
        UV_ERRNO_MAP(FV__UV_NAME)
#undef FV__UV_NAME
    default:
        break;
    }
    return "FV_EUNKNOWN";
}

int fv_diag_set(fv_diag_t *d, int err, const char *fmt, ...)
{
    if (d != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->msg, sizeof d->msg, fmt, ap);
        va_end(ap);
    }
    return err;
}
