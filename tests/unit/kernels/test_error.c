/* test_error.c - the error table, its names and messages, libuv pass-through, fv_diag_set.
 *
 * The numeric values are checked against literals on purpose: codes are never renumbered
 * (fv_error.h), and a test that only compared the table with itself would not notice.
 */
#include "fv_error.h"
#include "fv_test.h"

#include <uv.h>

static void test_table(void)
{
    /* Every code: its message and its name come from the one X-macro table. */
#define CHECK_CODE(name, value, msg)                                                               \
    do {                                                                                           \
        CHECK_INT_EQ(FV_##name, value);                                                            \
        CHECK_STR_EQ(fv_strerror(FV_##name), msg);                                                 \
        CHECK_STR_EQ(fv_err_name(FV_##name), "FV_" #name);                                         \
        /* our range never meets libuv's (-1 .. -4095) */                                          \
        CHECK((value) <= -10001);                                                                  \
    } while (0);
    FV_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE

    /* Never renumbered: the values as first published. */
    CHECK_INT_EQ(FV_EINVAL, -10001);
    CHECK_INT_EQ(FV_ENOMEM, -10002);
    CHECK_INT_EQ(FV_EIO, -10003);
    CHECK_INT_EQ(FV_EPARSE, -10004);
    CHECK_INT_EQ(FV_ESCHEMA, -10005);
    CHECK_INT_EQ(FV_ECORRUPT, -10006);
    CHECK_INT_EQ(FV_EVERSION, -10007);
    CHECK_INT_EQ(FV_ERANGE, -10008);
    CHECK_INT_EQ(FV_EEMPTY, -10009);
    CHECK_INT_EQ(FV_ENOTSUP, -10010);
    CHECK_INT_EQ(FV_ETOOBIG, -10011);
    CHECK_INT_EQ(FV_ENUMERIC, -10012);
    CHECK_INT_EQ(FV_EAUTH, -10013);
    CHECK_INT_EQ(FV_EPROTO, -10014);
    CHECK_INT_EQ(FV_EPHASE, -10015);
    CHECK_INT_EQ(FV_EROUND, -10016);
    CHECK_INT_EQ(FV_EDUP, -10017);
    CHECK_INT_EQ(FV_EPEER, -10018);
    CHECK_INT_EQ(FV_EPOLICY, -10019);
    CHECK_INT_EQ(FV_EBOTHSHARES, -10020);
    CHECK_INT_EQ(FV_ETHRESHOLD, -10021);
    CHECK_INT_EQ(FV_EOVERFLOW, -10022);

    /* Values are unique. */
    static const int all[] = {
#define LIST_CODE(name, value, msg) FV_##name,
        FV_ERRNO_MAP(LIST_CODE)
#undef LIST_CODE
    };
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++)
            CHECK(all[i] != all[j]);
    }

    CHECK_INT_EQ(FV_OK, 0);
    CHECK(fv_strerror(FV_OK) != NULL && fv_strerror(FV_OK)[0] != '\0');
    CHECK_STR_EQ(fv_err_name(FV_OK), "FV_OK");
}

static void test_libuv_passthrough(void)
{
    /* libuv codes keep their libuv name and message. */
    CHECK_STR_EQ(fv_err_name(UV_ENOENT), "UV_ENOENT");
    CHECK_STR_EQ(fv_strerror(UV_ENOENT), uv_strerror(UV_ENOENT));
    CHECK_STR_EQ(fv_err_name(UV_ECONNRESET), "UV_ECONNRESET");
    CHECK_STR_EQ(fv_strerror(UV_ETIMEDOUT), uv_strerror(UV_ETIMEDOUT));
    CHECK_STR_EQ(fv_err_name(UV_EOF), "UV_EOF");

    /* Codes in no table still get a non-NULL, non-empty string. (Unknown codes inside the
     * libuv range are not probed: uv_strerror/uv_err_name allocate a string for them.) */
    static const int unknown[] = {-10000, -10999, -20000, -2147483647 - 1, 1, 7};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *m = fv_strerror(unknown[i]), *nm = fv_err_name(unknown[i]);
        CHECK(m != NULL && m[0] != '\0');
        CHECK(nm != NULL && nm[0] != '\0');
    }
}

static void test_diag(void)
{
    /* NULL diag: nothing happens, the code comes back. */
    CHECK_INT_EQ(fv_diag_set(NULL, FV_EPARSE, "line %d", 3), FV_EPARSE);

    fv_diag_t d;
    memset(&d, 'x', sizeof d);
    CHECK_INT_EQ(fv_diag_set(&d, FV_ESCHEMA, "%s:%d:%d: column '%s': expected a number", "data.csv",
                             17, 4, "age"),
                 FV_ESCHEMA);
    CHECK_STR_EQ(d.msg, "data.csv:17:4: column 'age': expected a number");

    /* A long message is truncated to FV_DIAG_MAX - 1 characters and NUL-terminated. */
    char longs[3 * FV_DIAG_MAX];
    for (size_t i = 0; i < sizeof longs - 1; i++)
        longs[i] = (char)('a' + i % 26);
    longs[sizeof longs - 1] = '\0';
    memset(&d, 'x', sizeof d);
    CHECK_INT_EQ(fv_diag_set(&d, FV_ETOOBIG, "%s", longs), FV_ETOOBIG);
    CHECK_UINT_EQ(strlen(d.msg), FV_DIAG_MAX - 1);
    CHECK(d.msg[FV_DIAG_MAX - 1] == '\0');
    CHECK(memcmp(d.msg, longs, FV_DIAG_MAX - 1) == 0);

    /* Exactly FV_DIAG_MAX - 1 characters fit; one more is cut. */
    longs[FV_DIAG_MAX - 1] = '\0';
    fv_diag_set(&d, FV_EIO, "%s", longs);
    CHECK_STR_EQ(d.msg, longs);
    longs[FV_DIAG_MAX - 1] = 'Z';
    longs[FV_DIAG_MAX] = '\0';
    fv_diag_set(&d, FV_EIO, "%s", longs);
    CHECK_UINT_EQ(strlen(d.msg), FV_DIAG_MAX - 1);
    CHECK(d.msg[FV_DIAG_MAX - 2] == longs[FV_DIAG_MAX - 2]);

    /* A later call replaces, not appends. */
    fv_diag_set(&d, FV_EIO, "short");
    CHECK_STR_EQ(d.msg, "short");
}

int main(void)
{
    test_table();
    test_libuv_passthrough();
    test_diag();
    return 0;
}
