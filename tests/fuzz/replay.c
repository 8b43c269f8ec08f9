/* replay.c - runs a fuzz target over a checked-in corpus, as an ordinary test.
 *
 * Linked with one fuzz_*.c file in place of libFuzzer's main, so every decoder's corpus
 * (seeds plus every crasher ever found, fixed) is replayed by `meson test --suite
 * fuzz-regress` on every build, sanitizers or not, with no clang needed (the idea of
 * systemd's src/fuzz/fuzz-main.c).
 *
 * Usage: replay PATH...   Each PATH is a file or a directory; a directory is read one
 * level deep (regular files only, hidden files skipped, in name order so runs are
 * reproducible). Each file is read whole into a buffer of exactly its size (so ASan
 * sees a read past the end) and handed to LLVMFuzzerTestOneInput. The test fails if a
 * path is missing or no input ran at all: an empty corpus tests nothing and must not pass
 * quietly. A crash or an abort() in the target fails the test by itself.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs bigger than this are not fuzz inputs; refusing them keeps a stray file from
 * making the test slow. */
#define REPLAY_MAX_INPUT ((size_t)64 << 20)

static int run_file(const char *path, size_t *n_ran)
{
    int r = -1;
    uint8_t *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || st.st_size < 0 || (uint64_t)st.st_size > REPLAY_MAX_INPUT) {
        fprintf(stderr, "%s: cannot stat, or larger than %zu bytes\n", path, REPLAY_MAX_INPUT);
        goto out;
    }
    size_t len = (size_t)st.st_size;
    /* Exactly len bytes (malloc(0) may return NULL: ask for 1 then, pass size 0). */
    buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        fprintf(stderr, "%s: out of memory\n", path);
        goto out;
    }
    if (len > 0 && fread(buf, 1, len, f) != len) {
        fprintf(stderr, "%s: short read\n", path);
        goto out;
    }
    LLVMFuzzerTestOneInput(buf, len);
    (*n_ran)++;
    r = 0;
out:
    free(buf);
    fclose(f);
    return r;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, size_t *n_ran)
{
    int r = -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    DIR *dp = opendir(dir);
    if (dp == NULL) {
        fprintf(stderr, "%s: cannot open the corpus directory: %s\n", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 64;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (nn == NULL)
                goto out;
            names = nn;
            cap = ncap;
        }
        names[n] = strdup(e->d_name);
        if (names[n] == NULL)
            goto out;
        n++;
    }
    if (n > 0)
        qsort(names, n, sizeof *names, cmp_names);
    r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        size_t plen = strlen(dir) + 1 + strlen(names[i]) + 1;
        char *path = malloc(plen);
        if (path == NULL) {
            r = -1;
            break;
        }
        snprintf(path, plen, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            r = run_file(path, n_ran);
        free(path);
    }
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(dp);
    return r;
}

int main(int argc, char **argv)
{
    size_t n_ran = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        int r = S_ISDIR(st.st_mode) ? run_dir(argv[i], &n_ran) : run_file(argv[i], &n_ran);
        if (r < 0)
            return 1;
    }
    if (n_ran == 0) {
        fprintf(stderr, "%s: no input ran: the corpus is empty\n", argv[0]);
        return 1;
    }
    printf("%s: %zu inputs ran\n", argv[0], n_ran);
    return 0;
}
