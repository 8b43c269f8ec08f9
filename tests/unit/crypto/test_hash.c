/* test_hash.c - fv_sha256_file (OpenSSL, streamed) against a published vector and against
 * fv_sha256 (libsodium) of the same bytes: empty, one byte short of and past the 64 KiB
 * read size, and a few MB; a missing file is its negated errno. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fv_crypto.h"
#include "fv_test.h"

static char dir[64];

static void write_file(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(n == 0 || fwrite(b, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

int main(void)
{
    CHECK_OK(fv_crypto_init(), NULL);
    snprintf(dir, sizeof dir, "/tmp/fv-test-hash-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/f", dir);
    uint8_t got[FV_HASH_BYTES], want[FV_HASH_BYTES];

    /* FIPS 180-2's "abc" */
    static const uint8_t abc_sha[FV_HASH_BYTES] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                                   0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                                   0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                                   0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    write_file(path, (const uint8_t *)"abc", 3);
    CHECK_OK(fv_sha256_file(path, got), NULL);
    CHECK(memcmp(got, abc_sha, sizeof got) == 0);

    static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 3 * 65536 + 11, 5u << 20};
    uint8_t *b = malloc(5u << 20);
    CHECK(b != NULL);
    for (size_t i = 0; i < (5u << 20); i++)
        b[i] = (uint8_t)(i * 2654435761u >> 13);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        write_file(path, b, sizes[k]);
        CHECK_OK(fv_sha256_file(path, got), NULL);
        fv_sha256(want, b, sizes[k]);
        CHECK(memcmp(got, want, sizeof got) == 0);
    }
    free(b);
    CHECK(unlink(path) == 0);
    CHECK_INT_EQ(fv_sha256_file(path, got), -ENOENT);
    CHECK(rmdir(dir) == 0);
    printf("ok\n");
    return 0;
}
