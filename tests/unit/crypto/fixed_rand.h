/* fixed_rand.h - a random source that returns a fixed 32-byte value, so key generation
 * from a published seed (RFC 8032, RFC 7748 vectors) can be checked. Tests only. */
#ifndef FV_TEST_FIXED_RAND_H
#define FV_TEST_FIXED_RAND_H

#include <string.h>

#include "fv_crypto.h"
#include "fv_test.h"

static inline void fixed_fill(fv_rand_t *r, void *buf, size_t len)
{
    if (len > sizeof r->key)
        FV__FAIL("fixed source asked for %zu bytes", len);
    memcpy(buf, r->key, len);
}

static inline void fixed_rand(fv_rand_t *r, const uint8_t seed[32])
{
    memset(r, 0, sizeof *r);
    r->fill = fixed_fill;
    memcpy(r->key, seed, 32);
}

#endif
