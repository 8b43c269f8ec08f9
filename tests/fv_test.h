/* fv_test.h - tiny assertion helpers for fedvault tests.
 *
 * Each test file is its own executable. Checks print both sides and the place, and keep
 * going is NOT the policy: the first failed check ends the test with exit code 1, so a
 * later check never runs on broken state. These checks are independent of assert() and
 * NDEBUG, so the release build runs the same checks.
 */
#ifndef FV_TEST_H
#define FV_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FV__FAIL(...)                                                                              \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: check failed: ", __FILE__, __LINE__);                              \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            FV__FAIL("%s", #cond);                                                                 \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                                         \
    do {                                                                                           \
        long long fv__a = (long long)(a), fv__b = (long long)(b);                                  \
        if (fv__a != fv__b)                                                                        \
            FV__FAIL("%s == %s (%lld vs %lld)", #a, #b, fv__a, fv__b);                             \
    } while (0)

#define CHECK_UINT_EQ(a, b)                                                                        \
    do {                                                                                           \
        unsigned long long fv__a = (unsigned long long)(a), fv__b = (unsigned long long)(b);       \
        if (fv__a != fv__b)                                                                        \
            FV__FAIL("%s == %s (%llu vs %llu)", #a, #b, fv__a, fv__b);                             \
    } while (0)

/* Returns 0 from a fallible call: prints the code and diag message otherwise. */
#define CHECK_OK(expr, diagp)                                                                      \
    do {                                                                                           \
        int fv__r = (expr);                                                                        \
        const fv_diag_t *fv__d = (diagp);                                                          \
        if (fv__r != 0)                                                                            \
            FV__FAIL("%s returned %d (%s): %s", #expr, fv__r, fv_err_name(fv__r),                  \
                     fv__d ? fv__d->msg : "");                                                     \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double fv__a = (double)(a), fv__b = (double)(b), fv__t = (double)(tol);                    \
        if (!(fabs(fv__a - fv__b) <= fv__t))                                                       \
            FV__FAIL("|%s - %s| <= %g (%.9g vs %.9g, diff %.3g)", #a, #b, fv__t, fv__a, fv__b,     \
                     fabs(fv__a - fv__b));                                                         \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *fv__a = (a), *fv__b = (b);                                                     \
        if (fv__a == NULL || fv__b == NULL || strcmp(fv__a, fv__b) != 0)                           \
            FV__FAIL("%s == %s (\"%s\" vs \"%s\")", #a, #b, fv__a ? fv__a : "(null)",              \
                     fv__b ? fv__b : "(null)");                                                    \
    } while (0)

/* The message contains the substring. */
#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *fv__h = (hay), *fv__n = (needle);                                              \
        if (fv__h == NULL || strstr(fv__h, fv__n) == NULL)                                         \
            FV__FAIL("\"%s\" contains \"%s\"", fv__h ? fv__h : "(null)", fv__n);                   \
    } while (0)

/* Hex string (2*len characters) to bytes; a malformed string fails the test. */
static inline void fv_test_unhex(const char *h, unsigned char *out, size_t len)
{
    CHECK_UINT_EQ(strlen(h), 2 * len);
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        CHECK(sscanf(h + 2 * i, "%2x", &v) == 1);
        out[i] = (unsigned char)v;
    }
}

/* Path of a file shipped with the sources, from the FV_SOURCE_ROOT environment variable
 * that meson sets for every test. */
static inline const char *fv_test_src(const char *rel, char *buf, size_t len)
{
    const char *root = getenv("FV_SOURCE_ROOT");
    snprintf(buf, len, "%s/%s", root ? root : ".", rel);
    return buf;
}

#endif
