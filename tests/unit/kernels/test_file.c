/* test_file.c - fv_file: whole-file reads with a cap, full writes, directory fsyncs,
 * and output files (fv_file_out): replaced through symlinks, written in place on a FIFO
 * or a descriptor path.
 *
 * Everything happens in a fresh mkdtemp directory that is removed at the end. The
 * failure cases check the code, the step reported to callers that word their own
 * sentences, and that the diagnostic names the path.
 */
#define _GNU_SOURCE /* mkdtemp */
#include "fv_file.h"
#include "fv_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* Reads the regular file at path (up to 4095 bytes) as a string into buf. */
static void slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    ssize_t n = read(fd, buf, cap - 1);
    CHECK(n >= 0);
    buf[n] = '\0';
    close(fd);
}

static size_t count_entries(const char *d)
{
    DIR *dp = opendir(d);
    CHECK(dp != NULL);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(dp)) != NULL;)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(dp);
    return n;
}

static void test_out(void)
{
    char od[600], p[700], q[700], buf[4096];
    fv_diag_t d = {{0}};
    struct stat st;
    mode_t old_mask = umask(022);
    path_in(od, sizeof od, "out");
    CHECK(mkdir(od, 0700) == 0);
#define OUT(name) (snprintf(p, sizeof p, "%s/%s", od, name), p)

    /* fv_file_path_fd: the descriptor paths, and nothing that merely looks like one */
    CHECK_INT_EQ(fv_file_path_fd("-"), 1);
    CHECK_INT_EQ(fv_file_path_fd("/dev/stdout"), 1);
    CHECK_INT_EQ(fv_file_path_fd("/dev/stderr"), 2);
    CHECK_INT_EQ(fv_file_path_fd("/dev/fd/7"), 7);
    CHECK_INT_EQ(fv_file_path_fd("/proc/self/fd/12"), 12);
    CHECK_INT_EQ(fv_file_path_fd("/dev/fd/"), -1);
    CHECK_INT_EQ(fv_file_path_fd("/dev/fd/1x"), -1);
    CHECK_INT_EQ(fv_file_path_fd("/dev/fd/-1"), -1);
    CHECK_INT_EQ(fv_file_path_fd("/dev/fd/99999999999"), -1);
    CHECK_INT_EQ(fv_file_path_fd("./-"), -1);
    CHECK_INT_EQ(fv_file_path_fd("out.fvm"), -1);

    /* a new file: new_mode through umask, no temporary file left */
    CHECK_OK(fv_file_write_atomic(OUT("new.bin"), "one", 3, 0666, &d), &d);
    slurp(p, buf, sizeof buf);
    CHECK_STR_EQ(buf, "one");
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0644);
    CHECK_UINT_EQ(count_entries(od), 1);

    /* a replaced file keeps its mode */
    CHECK(chmod(p, 0640) == 0);
    CHECK_OK(fv_file_write_atomic(p, "two", 3, 0600, &d), &d);
    slurp(p, buf, sizeof buf);
    CHECK_STR_EQ(buf, "two");
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0640);
    CHECK_UINT_EQ(count_entries(od), 1);

    /* a relative symlink to it, and a link to that link: both stay links */
    CHECK(symlink("new.bin", OUT("link1")) == 0);
    CHECK(symlink("link1", OUT("link2")) == 0);
    CHECK_OK(fv_file_write_atomic(OUT("link2"), "three", 5, 0600, &d), &d);
    CHECK(lstat(OUT("link1"), &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(lstat(OUT("link2"), &st) == 0 && S_ISLNK(st.st_mode));
    slurp(OUT("new.bin"), buf, sizeof buf);
    CHECK_STR_EQ(buf, "three");
    CHECK_UINT_EQ(count_entries(od), 3);

    /* a dangling symlink into an existing directory: the file it names is created */
    CHECK(mkdir(OUT("sub"), 0700) == 0);
    CHECK(symlink("sub/made.bin", OUT("dangling")) == 0);
    CHECK_OK(fv_file_write_atomic(OUT("dangling"), "four", 4, 0600, &d), &d);
    CHECK(lstat(OUT("dangling"), &st) == 0 && S_ISLNK(st.st_mode));
    slurp(OUT("sub/made.bin"), buf, sizeof buf);
    CHECK_STR_EQ(buf, "four");
    CHECK_UINT_EQ(count_entries(OUT("sub")), 1);

    /* ... an absolute one whose directory is missing: ENOENT naming the link */
    snprintf(q, sizeof q, "%s/no-such-dir/x.bin", od);
    CHECK(symlink(q, OUT("nowhere")) == 0);
    CHECK_INT_EQ(fv_file_write_atomic(p, "x", 1, 0600, &d), -ENOENT);
    CHECK_CONTAINS(d.msg, p);
    CHECK_CONTAINS(d.msg, strerror(ENOENT));

    /* a loop, and a directory: refused */
    CHECK(symlink("loop", OUT("loop")) == 0);
    CHECK_INT_EQ(fv_file_write_atomic(p, "x", 1, 0600, &d), -ELOOP);
    CHECK_CONTAINS(d.msg, p);
    CHECK_INT_EQ(fv_file_write_atomic(OUT("sub"), "x", 1, 0600, &d), -EISDIR);
    CHECK_CONTAINS(d.msg, p);
    CHECK_CONTAINS(d.msg, "is a directory");

    /* abort: the temporary file goes, the target is untouched */
    fv_file_out_t *o = NULL;
    CHECK_OK(fv_file_out_open(OUT("new.bin"), 0600, &o, &d), &d);
    CHECK(!fv_file_out_is_direct(o));
    CHECK_INT_EQ(fv_file_write_all(fv_file_out_fd(o), "lost", 4), 0);
    fv_file_out_abort(o);
    fv_file_out_abort(NULL);
    slurp(OUT("new.bin"), buf, sizeof buf);
    CHECK_STR_EQ(buf, "three");
    CHECK_UINT_EQ(count_entries(od), 7); /* new.bin link1 link2 sub dangling nowhere loop */

    /* a FIFO: written in place (a reader is open), still a FIFO afterwards */
    CHECK(mkfifo(OUT("fifo"), 0600) == 0);
    int rfd = open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    CHECK(rfd >= 0);
    CHECK_OK(fv_file_write_atomic(p, "five", 4, 0600, &d), &d);
    ssize_t n = read(rfd, buf, sizeof buf - 1);
    CHECK_INT_EQ(n, 4);
    buf[4] = '\0';
    CHECK_STR_EQ(buf, "five");
    close(rfd);
    CHECK(lstat(p, &st) == 0 && S_ISFIFO(st.st_mode));

    /* a descriptor path, and a symlink to one: the descriptor is written as it stands */
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    snprintf(q, sizeof q, "/dev/fd/%d", pfd[1]);
    CHECK_OK(fv_file_out_open(q, 0600, &o, &d), &d);
    CHECK(fv_file_out_is_direct(o));
    CHECK_INT_EQ(fv_file_write_all(fv_file_out_fd(o), "six", 3), 0);
    CHECK_OK(fv_file_out_commit(o, &d), &d);
    CHECK(symlink(q, OUT("fdlink")) == 0);
    CHECK_OK(fv_file_write_atomic(p, "seven", 5, 0600, &d), &d);
    CHECK(lstat(p, &st) == 0 && S_ISLNK(st.st_mode));
    close(pfd[1]);
    n = read(pfd[0], buf, sizeof buf - 1);
    CHECK_INT_EQ(n, 8);
    buf[n] = '\0';
    CHECK_STR_EQ(buf, "sixseven");
    close(pfd[0]);
    /* ... a descriptor that is not open */
    CHECK_INT_EQ(fv_file_write_atomic("/dev/fd/999", "x", 1, 0600, &d), -EBADF);
    CHECK_CONTAINS(d.msg, "/dev/fd/999");
    CHECK_CONTAINS(d.msg, "descriptor 999 is not open");

    static const char *const names[] = {"new.bin", "link1", "link2",  "dangling",    "nowhere",
                                        "loop",    "fifo",  "fdlink", "sub/made.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECK(unlink(OUT(names[i])) == 0);
    CHECK(rmdir(OUT("sub")) == 0);
    CHECK(rmdir(od) == 0);
#undef OUT
    umask(old_mask);
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
    test_out();
    cleanup();
    return 0;
}
