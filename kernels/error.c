/* error.c - fv_strerror/fv_err_name generated from FV_ERRNO_MAP, and fv_diag_set.
 *
 * Negative values in the libuv/errno range are handed to uv_strerror/uv_err_name so a
 * daemon can report one code space whatever layer failed.
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
#define FV__ERR_STR(name, value, msg)                                                         \
    case FV_##name:                                                                       \
        return msg;
        FV_ERRNO_MAP(FV__ERR_STR)
#undef FV__ERR_STR
    default:
        break;
    }
    if (err < 0 && err > -10000)
        return uv_strerror(err);
    return "unknown error";
}

const char *fv_err_name(int err)
{
    switch (err) {
    case FV_OK:
        return "FV_OK";
#define FV__ERR_NAME(name, value, msg)                                                        \
    case FV_##name:                                                                       \
        return "FV_" #name;
        FV_ERRNO_MAP(FV__ERR_NAME)
#undef FV__ERR_NAME
    default:
        break;
    }
    if (err < 0 && err > -10000)
        return uv_err_name(err);
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
