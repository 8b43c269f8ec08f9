/* test_csv_window.c - the windowed reader against the whole-buffer reader, and the
 * loaders built on them, on large inputs.
 *
 * A regular file over FV_CSV_WINDOW_BYTES is read through a window that is refilled
 * between records; fv_csv_open_mem holds everything. Both must return the same records
 * (line, fields) and, on bad input, the same code and message. Checked on:
 *   - every tricky construct placed across the first window's end at every offset
 *     (a CRLF split between CR and LF, a quoted field with doubled quotes, commas and
 *     newlines, empty lines, a lone CR, a BOM-less start, an unterminated quote, a quote
 *     inside an unquoted field, a NUL byte, a record longer than the window);
 *   - random files of a few MB mixing all of them (later windows end anywhere);
 * and a large random round trip: numbers written as %.17g / %g / integers, NA and empty
 * cells, loaded from a windowed file by fv_dataset_load against an inferred schema,
 * every cell equal bit for bit to strtod_l's value (fv__parse_number_ref) or NaN; and
 * inference's vocabulary (small integers, short and long strings kept apart inside)
 * sorted and complete.
 */
#define _GNU_SOURCE
#include "fv_csv.h"
#include "fv_dataset.h"
#include "fv_rng.h"
#include "fv_schema.h"
#include "fv_test.h"
#include "model-int.h"

#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];
static char path[512];
static fv_diag_t diag_a, diag_b;
static fv_diag_t *const DA = &diag_a;
static fv_diag_t *const DB = &diag_b;
static size_t n_compared, n_errors;

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        CHECK(b->p != NULL);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void write_file(const struct buf *b)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(b->p, 1, b->len, f) == b->len);
    CHECK(fclose(f) == 0);
}

/* Reads b through the file (windowed when large) and from memory, record by record. */
static void compare(const struct buf *b)
{
    fv_csv_t *ca = NULL, *cb = NULL;
    fv_csv_record_t ra, rb;
    int xa, xb;
    write_file(b);
    CHECK_OK(fv_csv_open(path, 0, &ca, DA), DA);
    CHECK_OK(fv_csv_open_mem(path, b->p, b->len, &cb, DB), DB);
    for (;;) {
        xa = fv_csv_next(ca, &ra, DA);
        xb = fv_csv_next(cb, &rb, DB);
        CHECK_INT_EQ(xa, xb);
        if (xa != 1)
            break;
        CHECK_UINT_EQ(ra.line, rb.line);
        CHECK_UINT_EQ(ra.n_fields, rb.n_fields);
        for (size_t i = 0; i < ra.n_fields; i++)
            CHECK_STR_EQ(ra.fields[i], rb.fields[i]);
    }
    if (xa < 0) {
        CHECK_STR_EQ(DA->msg, DB->msg);
        n_errors++;
    }
    n_compared++;
    fv_csv_free(ca);
    fv_csv_free(cb);
}

/* Filler records ("123,abc,4.5\n" style, LF) up to exactly `upto` bytes. */
static void filler(struct buf *b, size_t upto, fv_rng_t *r)
{
    char line[64];
    while (b->len < upto) {
        size_t room = upto - b->len;
        int k = snprintf(line, sizeof line, "%llu,x%llu,%.3f\n",
                         (unsigned long long)fv_rng_below(r, 100000),
                         (unsigned long long)fv_rng_below(r, 1000), fv_rng_uniform(r));
        if ((size_t)k <= room && room - (size_t)k >= 8) {
            put(b, line, (size_t)k);
        } else { /* pad the last line to land exactly on upto */
            while (b->len < upto - 1)
                put(b, "7", 1);
            put(b, "\n", 1);
        }
    }
}

static void test_boundary(void)
{
    static const char *const construct[] = {
        "a,b\r\nc,d\r\n",
        "\"q,\"\"x\"\"\ny\",z\n",
        "\"multi\r\nline\rfield\",2\r\n",
        "\n\n\r\n\r\r\n1,2\n",
        "e,f\rg,h\r",
        "\"\",\"\"\"\"\n",
        ",,NA,\n",
        "x,\"open\nnever closed",
        "x,y\"z\n",
        "x,\"a\"b\n",
        "x,ab\0c\n1,2\n",
        "last,without,newline",
    };
    fv_rng_t r;
    fv_rng_seed(&r, 7);
    for (size_t c = 0; c < sizeof construct / sizeof construct[0]; c++) {
        /* the literal's length, NUL included for the one that holds a NUL */
        size_t n = c == 10 ? 12 : strlen(construct[c]);
        for (size_t shift = 0; shift <= n + 1; shift++) {
            struct buf b = {0};
            filler(&b, FV_CSV_WINDOW_BYTES - shift, &r);
            put(&b, construct[c], n);
            filler(&b, b.len + 5000, &r);
            compare(&b);
            free(b.p);
        }
    }
    /* a record longer than the window (the window grows), then more records */
    {
        struct buf b = {0};
        filler(&b, 1000, &r);
        puts_(&b, "\"");
        for (size_t i = 0; i < 3 * FV_CSV_WINDOW_BYTES / 10; i++)
            puts_(&b, "ab,\n\"\"cd");
        puts_(&b, "\",end\n");
        for (size_t i = 0; i < 2 * FV_CSV_WINDOW_BYTES / 8; i++)
            puts_(&b, "1,2,3\r\n");
        compare(&b);
        free(b.p);
    }
}

/* Random files of a few MB from the same pieces; every ~40th file holds a defect. */
static void test_random_files(void)
{
    static const char *const piece[] = {
        "1",       "22",         "-3.5",       "",           "NA",   "abc", "\"q\"",
        "\"a,b\"", "\"x\"\"y\"", "\"l1\nl2\"", "\"c\r\nr\"", "\"\"", " s ", "\xC3\xA9t\xC3\xA9",
    };
    static const char *const ends[] = {"\n", "\r\n", "\r", "\n\n", "\r\n\r\n"};
    static const char *const defect[] = {"a\"b", "\"x\"y", "\"unclosed"};
    fv_rng_t r;
    fv_rng_seed(&r, 11);
    for (int f = 0; f < 8; f++) {
        struct buf b = {0};
        size_t target = FV_CSV_WINDOW_BYTES * (2 + fv_rng_below(&r, 2));
        bool bad = f % 4 == 3;
        size_t bad_at = bad ? (size_t)fv_rng_below(&r, target) : SIZE_MAX;
        while (b.len < target) {
            size_t nf = 1 + fv_rng_below(&r, 12);
            for (size_t i = 0; i < nf; i++) {
                if (i)
                    puts_(&b, ",");
                if (b.len >= bad_at) {
                    puts_(&b, defect[fv_rng_below(&r, 3)]);
                    bad_at = SIZE_MAX;
                } else {
                    puts_(&b, piece[fv_rng_below(&r, sizeof piece / sizeof piece[0])]);
                }
            }
            puts_(&b, ends[fv_rng_below(&r, 100) < 90 ? 0 : fv_rng_below(&r, 5)]);
        }
        compare(&b);
        free(b.p);
    }
}

static uint64_t bits(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

/* 30,000 rows x 12 columns of numbers in several spellings, NA and empty cells: infer,
 * load from a windowed file, compare every cell with strtod_l. */
static void test_round_trip(void)
{
    enum { ROWS = 30000, COLS = 12 };
    locale_t loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    fv_schema_infer_opts_t o = {.target = "y", .unknown = FV_UNKNOWN_ERROR};
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    struct buf b = {0};
    char **text = calloc((size_t)ROWS * COLS, sizeof *text);
    fv_rng_t r;
    char cell[64];

    CHECK(loc != (locale_t)0 && text != NULL);
    fv_rng_seed(&r, 3);
    for (int j = 0; j < COLS; j++) {
        snprintf(cell, sizeof cell, "%sc%d", j ? "," : "", j);
        puts_(&b, cell);
    }
    puts_(&b, ",y\n");
    for (int i = 0; i < ROWS; i++) {
        for (int j = 0; j < COLS; j++) {
            uint64_t u = fv_rng_next(&r);
            double v;
            switch (j % 6) {
            case 0: /* pixels */
                snprintf(cell, sizeof cell, "%d", (int)(u % 256));
                break;
            case 1: /* any finite double, round-trip form */
                memcpy(&v, &u, sizeof v);
                if (!isfinite(v))
                    v = 0.5;
                snprintf(cell, sizeof cell, "%.17g", v);
                break;
            case 2: /* money-like */
                snprintf(cell, sizeof cell, "%.2f", (double)(int64_t)(u % 2000001) / 100 - 5000);
                break;
            case 3: /* short %g, signs */
                snprintf(cell, sizeof cell, "%+g", fv_rng_normal(&r) * 1e3);
                break;
            case 4: /* big integers and leading zeros */
                snprintf(cell, sizeof cell, u & 1 ? "%llu" : "%020llu",
                         (unsigned long long)(u >> (u % 64)));
                break;
            default: /* missing now and then, -0, exponents */
                if (u % 7 == 0)
                    snprintf(cell, sizeof cell, "%s", u % 2 ? "NA" : "");
                else if (u % 7 == 1)
                    snprintf(cell, sizeof cell, "-0");
                else
                    snprintf(cell, sizeof cell, "%.3e", fv_rng_uniform(&r) * 1e300);
                break;
            }
            text[(size_t)i * COLS + j] = strdup(cell);
            if (j)
                puts_(&b, ",");
            puts_(&b, cell);
        }
        puts_(&b, i % 2 ? ",yes\n" : ",no\n");
    }
    CHECK(b.len > FV_CSV_WINDOW_BYTES);
    write_file(&b);
    CHECK_OK(fv_schema_infer(path, &o, &s, DA), DA);
    for (int j = 0; j < COLS; j++)
        CHECK_INT_EQ(fv_schema_column_type(s, (size_t)j), FV_COL_NUMERIC);
    CHECK_OK(fv_dataset_load(path, s, &ds, DA), DA);
    CHECK_UINT_EQ(ds->n_rows, ROWS);
    for (size_t i = 0; i < ROWS; i++) {
        CHECK_UINT_EQ(ds->line[i], i + 2);
        CHECK_INT_EQ(ds->label[i], i % 2 ? 1 : 0);
        for (size_t j = 0; j < COLS; j++) {
            const char *t = text[i * COLS + j];
            double want = NAN, got = ds->cells[i * ds->n_cols + j];
            if (t[0] == '\0' || strcmp(t, "NA") == 0) {
                CHECK(isnan(got));
            } else {
                CHECK_INT_EQ(fv__parse_number_ref(t, loc, &want), FV__NUM_OK);
                if (bits(want) != bits(got)) {
                    fprintf(stderr, "cell \"%s\": %.17g, expected %.17g\n", t, got, want);
                    CHECK(0);
                }
            }
        }
    }
    fv_dataset_free(ds);
    fv_schema_free(s);
    for (size_t k = 0; k < (size_t)ROWS * COLS; k++)
        free(text[k]);
    free(text);
    free(b.p);
    freelocale(loc);
}

/* Inference keeps small integers, short strings and long strings in three places: the
 * vocabulary is still every distinct value once, sorted by bytes. */
static void test_vocabulary(void)
{
    static const char csv[] = "v,y\n"
                              "0,a\n1023,a\n1024,b\n007,a\n0,b\n12345678,a\n123456789,b\n"
                              "x,a\n-1,b\n+1,a\n1023,b\n123456789,a\n12345678,b\n1.0,a\n"
                              "1,a\n"
                              "\xC3\xA9"
                              ",b\n,a\nNA,b\n9999,a\n99999,b\n";
    static const char *const want[] = {"+1",   "-1",    "0",    "007",      "1",
                                       "1.0",  "1023",  "1024", "12345678", "123456789",
                                       "9999", "99999", "x",    "\xC3\xA9"};
    fv_schema_infer_opts_t o = {.target = "y", .unknown = FV_UNKNOWN_ERROR};
    fv_schema_t *s = NULL;
    CHECK_OK(fv_schema_infer_mem("v.csv", csv, sizeof csv - 1, &o, &s, DA), DA);
    CHECK_INT_EQ(fv_schema_column_type(s, 0), FV_COL_CATEGORICAL);
    CHECK_UINT_EQ(fv_schema_n_categories(s, 0), sizeof want / sizeof want[0]);
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        CHECK_STR_EQ(fv_schema_category(s, 0, k), want[k]);
    fv_schema_free(s);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fv_test_csv_window.XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    snprintf(path, sizeof path, "%s/big.csv", tmpdir);

    test_boundary();
    test_random_files();
    CHECK(n_errors > 0 && n_errors < n_compared); /* both kinds were exercised */
    test_round_trip();
    test_vocabulary();

    CHECK(unlink(path) == 0);
    CHECK(rmdir(tmpdir) == 0);
    return 0;
}
