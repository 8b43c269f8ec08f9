/* fuzz_model.c - fuzz target for the model file decoder (fv_model_decode).
 *
 * Each input is decoded twice:
 *   1. as it is, which mostly exercises the header checks and the damage diagnosis (a
 *      random mutation almost never leaves the SHA-256 trailer valid);
 *   2. with its last 32 bytes replaced by the SHA-256 of the bytes before them, which is
 *      what a hostile writer can always do; this gets the fuzzer past the checksum and
 *      into the section parser, where the interesting bugs live.
 * Whenever a decode succeeds, the model must survive encode -> decode -> encode with
 * identical bytes both times; abort() otherwise, so the fuzzer reports it. Everything is
 * freed (a leak is a bug, and LeakSanitizer reports it).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fv_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(fv_model_t *m)
{
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    fv_model_t *m2 = NULL;
    fv_diag_t d;

    if (fv_model_encode(m, &b1, &n1) != 0)
        abort(); /* a model that decoded must encode */
    if (fv_model_decode("fuzz-reencoded", b1, n1, &m2, &d) != 0)
        abort(); /* and what we write we must read */
    if (fv_model_encode(m2, &b2, &n2) != 0)
        abort();
    if (n1 != n2 || memcmp(b1, b2, n1) != 0)
        abort(); /* encoding is a function of the decoded model */
    fv_model_free(m2);
    free(b1);
    free(b2);
}

static void decode_one(const uint8_t *data, size_t size)
{
    fv_model_t *m = NULL;
    fv_diag_t d;
    if (fv_model_decode("fuzz.fvm", data, size, &m, &d) == 0) {
        check_round_trip(m);
        fv_model_free(m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode_one(data, size);

    if (size >= crypto_hash_sha256_BYTES && sodium_init() >= 0) {
        uint8_t *fixed = malloc(size);
        if (fixed == NULL)
            return 0;
        size_t body = size - crypto_hash_sha256_BYTES;
        memcpy(fixed, data, body);
        crypto_hash_sha256(fixed + body, fixed, body);
        decode_one(fixed, size);
        free(fixed);
    }
    return 0;
}
