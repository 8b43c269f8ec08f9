/* test_file.c - fv_file: whole-file reads with a cap, full writes, directory fsyncs.
 *
 * Everything happens in a fresh mkdtemp directory that is removed at the end. The
 * failure cases check the code, the step reported to callers that word their own
 * sentences, and that the diagnostic names the path.
 */
#define _GNU_SOURCE /* mkdtemp */
#include "fv_file.h"
#include "fv_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void path_in(char *buf, size_t cap, const char *name)
{
    CHECK((size_t)snprintf(buf, cap, "%s/%s", dir, name) < cap);
}

/* Writes len bytes of data to dir/name with fv_file_write_all. */
static void put(const char *name, const void *data, size_t len, char *path, size_t cap)
{
    path_in(path, cap, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK_INT_EQ(fv_file_write_all(fd, data, len), 0);
    CHECK_INT_EQ(close(fd), 0);
}

static void test_read_small(void)
{
    char path[512];
    fv_diag_t d = {{0}};
    char *buf = NULL;
    size_t len = 99;
    put("small.txt", "hello\nworld", 11, path, sizeof path);

    CHECK_OK(fv_file_read_all(path, 11, &buf, &len, NULL, &d), &d); /* exactly the cap */
    CHECK_UINT_EQ(len, 11);
    CHECK_STR_EQ(buf, "hello\nworld"); /* NUL-terminated */
    free(buf);
}

static void test_read_empty(void)
{
    char path[512];
    fv_diag_t d = {{0}};
    char *buf = NULL;
    size_t len = 99;
    put("empty.txt", "", 0, path, sizeof path);

    CHECK_OK(fv_file_read_all(path, 0, &buf, &len, NULL, &d), &d);
    CHECK_UINT_EQ(len, 0);
    CHECK(buf != NULL);
    CHECK_UINT_EQ(buf[0], 0);
    free(buf);
}

static void test_read_over_cap(void)
{
    char path[512];
    fv_diag_t d = {{0}};
    fv_file_fail_t why;
    char *buf = NULL;
    size_t len = 99;
    put("big.txt", "0123456789", 10, path, sizeof path);

    CHECK_INT_EQ(fv_file_read_all(path, 9, &buf, &len, &why, &d), FV_ETOOBIG);
    CHECK_INT_EQ(why.step, FV_FILE_STEP_SIZE);
    CHECK_INT_EQ(why.size_bytes, 10);
    CHECK(buf == NULL && len == 99); /* ret_* untouched on failure */
    CHECK_CONTAINS(d.msg, path);
    CHECK_CONTAINS(d.msg, "10 bytes, over the cap of 9 bytes");
}

static void test_read_missing(void)
{
    char path[512];
    fv_diag_t d = {{0}};
    fv_file_fail_t why;
    char *buf = NULL;
    size_t len = 99;
    path_in(path, sizeof path, "no-such-file.json");

    CHECK_INT_EQ(fv_file_read_all(path, 100, &buf, &len, &why, &d), -ENOENT);
    CHECK_INT_EQ(why.step, FV_FILE_STEP_OPEN);
    CHECK(buf == NULL && len == 99);
    CHECK_CONTAINS(d.msg, path);
    CHECK_CONTAINS(d.msg, ": cannot open: ");
    CHECK_CONTAINS(d.msg, strerror(ENOENT));

    /* A directory is not a regular file, whatever the cap; d may be NULL. */
    CHECK_INT_EQ(fv_file_read_all(dir, 1u << 20, &buf, &len, &why, NULL), FV_EINVAL);
    CHECK_INT_EQ(why.step, FV_FILE_STEP_TYPE);
    CHECK(why.is_dir);
    CHECK(buf == NULL);
}

static void test_write_round_trip(void)
{
    /* Large enough that a pipe or a slow disk could split the write. */
    size_t n = (size_t)3 << 20;
    unsigned char *data = malloc(n);
    CHECK(data != NULL);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 131u + 7u);
    char path[512];
    fv_diag_t d = {{0}};
    char *buf = NULL;
    size_t len = 0;
    put("round.bin", data, n, path, sizeof path);

    CHECK_OK(fv_file_read_all(path, n, &buf, &len, NULL, &d), &d);
    CHECK_UINT_EQ(len, n);
    CHECK(memcmp(buf, data, n) == 0);
    CHECK_UINT_EQ(buf[n], 0);
    free(buf);
    free(data);

    /* A closed descriptor: -EBADF, not a crash or a loop. */
    CHECK_INT_EQ(fv_file_write_all(-1, "x", 1), -EBADF);
    CHECK_INT_EQ(fv_file_write_all(-1, "", 0), 0);
}

static void test_fsync(void)
{
    char path[512];
    CHECK_INT_EQ(fv_file_fsync_dir(dir), 0);
    path_in(path, sizeof path, "round.bin");
    CHECK_INT_EQ(fv_file_fsync_parent(path), 0);
    CHECK_INT_EQ(fv_file_fsync_parent("/"), 0);
    path_in(path, sizeof path, "missing-dir/x");
    CHECK_INT_EQ(fv_file_fsync_parent(path), -ENOENT);
    path_in(path, sizeof path, "round.bin");
    CHECK_INT_EQ(fv_file_fsync_dir(path), -ENOTDIR);
}

static void cleanup(void)
{
    static const char *const names[] = {"small.txt", "empty.txt", "big.txt", "round.bin"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        path_in(path, sizeof path, names[i]);
        (void)unlink(path);
    }
    CHECK_INT_EQ(rmdir(dir), 0);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    CHECK((size_t)snprintf(dir, sizeof dir, "%s/fv-test-file-XXXXXX",
                           tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp") < sizeof dir);
    CHECK(mkdtemp(dir) != NULL);
    test_read_small();
    test_read_empty();
    test_read_over_cap();
    test_read_missing();
    test_write_round_trip();
    test_fsync();
    cleanup();
    return 0;
}
