/* text.c - text helpers shared by the decoders of model/ (schema.c, dataset.c).
 *
 * One number grammar for inference and loading, so a column inferred numeric always
 * loads: [+-]?(digits[.digits*]|.digits)([eE][+-]?digits)?, valued as strtod_l in the
 * C locale gives it (a caller's setlocale cannot change results). Hex, spaces, "inf" and
 * "nan" are not numbers; "inf"/"nan" spellings and overflow are reported as non-finite
 * so the message can say so. Every cell of a CSV goes through here (twice when train
 * infers its schema), so the common numbers are computed exactly in one pass without
 * strtod (fv__parse_number, Clinger's fast path); fv__parse_number_ref is the strtod_l
 * reference it falls back to and is tested against bit for bit. And one way to quote peer- or
 * file-controlled text in messages: control bytes and invalid UTF-8 as \xNN, cut at FV__MSG_STR
 * bytes.
 */
#define _GNU_SOURCE /* strtod_l */
#include "model-int.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if p does not start one.
 * Overlong forms, surrogates and code points past U+10FFFF are invalid. */
size_t fv__utf8_seq(const unsigned char *p)
{
    size_t n;
    uint32_t cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xE0) == 0xC0) {
        n = 2;
        cp = p[0] & 0x1Fu;
    } else if ((p[0] & 0xF0) == 0xE0) {
        n = 3;
        cp = p[0] & 0x0Fu;
    } else if ((p[0] & 0xF8) == 0xF0) {
        n = 4;
        cp = p[0] & 0x07u;
    } else {
        return 0;
    }
    for (size_t k = 1; k < n; k++) {
        if ((p[k] & 0xC0) != 0x80) /* also stops at the NUL terminator */
            return 0;
        cp = (cp << 6) | (p[k] & 0x3Fu);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* Copies s into out for a message: control bytes and bytes that are not UTF-8 as \xNN,
 * cut after FV__MSG_STR bytes (on a character boundary) with "...". out must hold
 * MSG_BUF bytes. Returns out. */
const char *fv__msg_str(char *out, size_t len, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "(null)");
    size_t o = 0, i = 0;
    while (p[i] != 0) {
        size_t k = fv__utf8_seq(p + i);
        if (i >= FV__MSG_STR || o + 8 > len) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (k == 0 || p[i] < 0x20 || p[i] == 0x7F) {
            o += (size_t)snprintf(out + o, len - o, "\\x%02X", p[i]);
            i++;
        } else {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        }
    }
    out[o] = '\0';
    return out;
}

bool fv__utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != 0) {
        size_t k = fv__utf8_seq(p);
        if (k == 0)
            return false;
        p += k;
    }
    return true;
}

/* The grammar check shared by both parsers; strtod_l gives the value. Kept as the
 * reference the fast path is tested against (test_csv_number: bit for bit). */
int fv__parse_number_ref(const char *s, locale_t loc, double *ret)
{
    const char *p = s;
    size_t digits = 0;
    char *end;
    double v;

    if (*p == '+' || *p == '-')
        p++;
    while (*p >= '0' && *p <= '9')
        p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++, digits++;
    }
    if (digits == 0) {
        const char *w = (*s == '+' || *s == '-') ? s + 1 : s;
        if (strcasecmp(w, "inf") == 0 || strcasecmp(w, "infinity") == 0 ||
            strcasecmp(w, "nan") == 0)
            return FV__NUM_NONFINITE;
        return FV__NUM_TEXT;
    }
    if (*p == 'e' || *p == 'E') {
        size_t ed = 0;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        while (*p >= '0' && *p <= '9')
            p++, ed++;
        if (ed == 0)
            return FV__NUM_TEXT;
    }
    if (*p != '\0')
        return FV__NUM_TEXT;
    v = strtod_l(s, &end, loc);
    if (*end != '\0')
        return FV__NUM_TEXT;
    if (!isfinite(v))
        return FV__NUM_NONFINITE;
    *ret = v;
    return FV__NUM_OK;
}

/* Powers of ten that a double holds exactly (10^22 < 2^53 * 2^22; 10^23 is not exact). */
static const double exact_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The fast path (Clinger 1990): the same grammar in one pass, the significant digits
 * gathered into an integer m and the decimal exponent into e. When m <= 2^53 and
 * |e| <= 22, both m and 10^|e| are exact doubles, so m * 10^e or m / 10^-e is a single
 * IEEE operation, correctly rounded - the same double a correctly rounded strtod gives
 * (glibc's is). Everything else (more than 19 significant digits, big exponents, m over
 * 2^53) goes to strtod_l. That needs a double evaluated in double precision, which
 * FLT_EVAL_METHOD == 0 promises (x86-64 SSE2, aarch64); elsewhere the fast path is off. */
int fv__parse_number(const char *s, locale_t loc, double *ret)
{
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    const char *p = s;
    uint64_t m = 0;
    size_t digits = 0;
    int frac = 0;      /* digits after the '.' gathered into m */
    int skipped = 0;   /* integer digits not gathered (m full): exponent + 1 each */
    bool exact = true; /* m holds every significant digit */
    bool neg = false;
    long ex = 0;

    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    while (*p >= '0' && *p <= '9') {
        if (m < 1000000000000000000ULL)
            m = m * 10 + (uint64_t)(*p - '0');
        else if (*p != '0')
            exact = false;
        else
            skipped++;
        p++, digits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (m < 1000000000000000000ULL) {
                m = m * 10 + (uint64_t)(*p - '0');
                frac++;
            } else if (*p != '0') {
                exact = false;
            }
            p++, digits++;
        }
    }
    if (digits == 0)
        return fv__parse_number_ref(s, loc, ret); /* text, or an inf/nan spelling */
    if (*p == 'e' || *p == 'E') {
        bool eneg = false;
        size_t ed = 0;
        p++;
        if (*p == '+' || *p == '-')
            eneg = *p++ == '-';
        while (*p >= '0' && *p <= '9') {
            if (ex < 100000)
                ex = ex * 10 + (*p - '0');
            p++, ed++;
        }
        if (ed == 0)
            return FV__NUM_TEXT;
        if (eneg)
            ex = -ex;
    }
    if (*p != '\0')
        return FV__NUM_TEXT;
    if (exact) {
        long e = ex + skipped - frac;
        double v;
        if (m <= ((uint64_t)1 << 53) && e >= -22 && e <= 22) { /* m == 0 too: +-0 */
            v = (double)m;
            v = e >= 0 ? v * exact_pow10[e] : v / exact_pow10[-e];
            *ret = neg ? -v : v;
            return FV__NUM_OK;
        }
        if (m == 0) { /* "0e999": zero whatever the exponent */
            *ret = neg ? -0.0 : 0.0;
            return FV__NUM_OK;
        }
    }
#endif
    return fv__parse_number_ref(s, loc, ret);
}
