/* cli_util.c - helpers shared by the fedvault subcommands: errors, strict option
 * parsing, list splitting, a monotonic clock and file fingerprints.
 *
 * Only the CLI prints; the libraries under it return codes and diagnostics.
 */
#include "cli-int.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "fv_blas.h"

void fv_cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fedvault %s: error: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int fv_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fedvault %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'fedvault %s --help'.\n", cmd);
    return FV_EXIT_USAGE;
}

bool fv_cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *ret)
{
    char *end;
    errno = 0;
    if (s[0] == '-' || s[0] == '\0') {
        fv_cli_usage_error(cmd, "%s: expected a non-negative integer, got '%s'", opt, s);
        return false;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        fv_cli_usage_error(cmd, "%s: expected a non-negative integer, got '%s'", opt, s);
        return false;
    }
    *ret = (uint64_t)v;
    return true;
}

bool fv_cli_parse_size(const char *cmd, const char *opt, const char *s, size_t min, size_t max,
                       size_t *ret)
{
    uint64_t v;
    if (!fv_cli_parse_u64(cmd, opt, s, &v))
        return false;
    if (v < min || v > max) {
        fv_cli_usage_error(cmd, "%s: %s is out of range [%zu, %zu]", opt, s, min, max);
        return false;
    }
    *ret = (size_t)v;
    return true;
}

bool fv_cli_parse_double(const char *cmd, const char *opt, const char *s, double min,
                         double max, double *ret)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v)) {
        fv_cli_usage_error(cmd, "%s: expected a number, got '%s'", opt, s);
        return false;
    }
    if (v < min || v > max) {
        fv_cli_usage_error(cmd, "%s: %s is out of range [%g, %g]", opt, s, min, max);
        return false;
    }
    *ret = v;
    return true;
}

bool fv_cli_parse_unknown(const char *cmd, const char *s, fv_unknown_policy_t *ret)
{
    if (strcmp(s, "error") == 0)
        *ret = FV_UNKNOWN_ERROR;
    else if (strcmp(s, "other") == 0)
        *ret = FV_UNKNOWN_OTHER;
    else {
        fv_cli_usage_error(cmd, "--unknown: expected 'error' or 'other', got '%s'", s);
        return false;
    }
    return true;
}

char **fv_cli_split_list(const char *s, size_t *ret_n)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += (*p == ',');
    char **v = calloc(n, sizeof *v);
    if (v == NULL)
        return NULL;
    size_t i = 0;
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == ',' || *p == '\0') {
            size_t len = (size_t)(p - start);
            v[i] = malloc(len + 1);
            if (v[i] == NULL) {
                fv_cli_strv_free(v, i);
                return NULL;
            }
            memcpy(v[i], start, len);
            v[i][len] = '\0';
            i++;
            if (*p == '\0')
                break;
            start = p + 1;
        }
    }
    *ret_n = n;
    return v;
}

void fv_cli_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

double fv_cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int fv_cli_file_sha256(const char *path, char hex[65])
{
    unsigned char buf[65536];
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_state st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    crypto_hash_sha256_init(&st);
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            close(fd);
            return e;
        }
        if (r == 0)
            break;
        crypto_hash_sha256_update(&st, buf, (unsigned long long)r);
    }
    close(fd);
    crypto_hash_sha256_final(&st, digest);
    sodium_bin2hex(hex, 65, digest, sizeof digest);
    return 0;
}

void fv_cli_set_threads(size_t n)
{
    fv_blas_set_threads(n > INT_MAX ? INT_MAX : (int)n);
}

int fv_cli_infer_schema(const char *cmd, const char *data, const char *target,
                        const char *positive, const char *drop, fv_unknown_policy_t unknown,
                        fv_schema_t **ret)
{
    fv_diag_t d = {""};
    size_t n_drop = 0;
    char **dropv = NULL;
    if (drop != NULL) {
        dropv = fv_cli_split_list(drop, &n_drop);
        if (dropv == NULL) {
            fv_cli_error(cmd, "out of memory");
            return -1;
        }
    }
    fv_schema_infer_opts_t o = {
        .target = target, .positive = positive, .drop = (const char *const *)dropv,
        .n_drop = n_drop, .unknown = unknown,
    };
    int r = fv_schema_infer(data, &o, ret, &d);
    fv_cli_strv_free(dropv, n_drop);
    if (r != 0) {
        fv_cli_error(cmd, "%s", d.msg[0] ? d.msg : fv_strerror(r));
        return -1;
    }
    return 0;
}

bool fv_cli_option_allowed(int c, const int *allowed, size_t n_allowed)
{
    for (size_t i = 0; i < n_allowed; i++)
        if (allowed[i] == c)
            return true;
    return false;
}

int fv_cli_option_misplaced(const char *cmd, int c, const struct option *opts)
{
    for (const struct option *o = opts; o->name != NULL; o++)
        if (o->val == c)
            return fv_cli_usage_error(cmd, "--%s does not apply here", o->name);
    return fv_cli_usage_error(cmd, "unknown option");
}
