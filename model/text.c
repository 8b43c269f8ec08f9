/* text.c - text helpers shared by the decoders of model/ (schema.c, dataset.c).
 *
 * One number grammar for inference and loading, so a column inferred numeric always
 * loads: [+-]?(digits[.digits*]|.digits)([eE][+-]?digits)?, parsed with strtod_l in the
 * C locale (a caller's setlocale cannot change results). Hex, spaces, "inf" and "nan" are
 * not numbers; "inf"/"nan" spellings and overflow are reported as non-finite so the
 * message can say so. And one way to quote peer- or file-controlled text in messages:
 * control bytes and invalid UTF-8 as \xNN, cut at FV__MSG_STR bytes.
 */
#define _GNU_SOURCE /* strtod_l */
#include "model-int.h"

#include <math.h>
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

int fv__parse_number(const char *s, locale_t loc, double *ret)
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
