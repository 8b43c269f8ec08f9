/* test_csv_number.c - the number parser's fast path against strtod_l, bit for bit.
 *
 * fv__parse_number (text.c) computes most numbers as one exact IEEE operation and hands
 * the rest to strtod_l; fv__parse_number_ref hands every number to strtod_l. Both must
 * give the same code and, on FV__NUM_OK, the same 64 bits (so -0 stays -0 and a
 * subnormal is the same subnormal) on: hand-picked edges (17 significant digits, 2^53
 * around, 10^22 / 10^23, exponents near +-308, subnormals, -0, a leading '+', ".5", "5.",
 * long zero runs, the non-numbers of the grammar) and 450,000 random strings drawn
 * from the grammar's pieces, half of them inside the fast path's range. And the loader's
 * own inline path for plain integers (dataset.c), through fv_dataset_load_mem.
 */
#define _GNU_SOURCE
#include "fv_dataset.h"
#include "fv_rng.h"
#include "fv_schema.h"
#include "fv_test.h"
#include "model-int.h"

#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static locale_t loc;
static size_t n_checked, n_ok;

static uint64_t bits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static void same(const char *s)
{
    double a = 12345.0, b = 12345.0;
    int ka = fv__parse_number(s, loc, &a);
    int kb = fv__parse_number_ref(s, loc, &b);
    if (ka != kb || (ka == FV__NUM_OK && bits(a) != bits(b))) {
        fprintf(stderr, "mismatch on \"%s\": fast %d %.17g (%016llx), strtod %d %.17g (%016llx)\n",
                s, ka, a, (unsigned long long)bits(a), kb, b, (unsigned long long)bits(b));
        CHECK(0);
    }
    n_checked++;
    n_ok += ka == FV__NUM_OK;
}

static void test_edges(void)
{
    static const char *const v[] = {
        "0",
        "-0",
        "+0",
        "0.0",
        "-0.0",
        "-0e5",
        "0e999",
        "-0e-999",
        "00000",
        "000.000",
        "1",
        "-1",
        "+1",
        "12",
        "255",
        "-3.5",
        "1e-3",
        "1E3",
        "1e+3",
        ".5",
        "-.5",
        "+.5",
        "5.",
        "-5.",
        "5.e3",
        ".5e-3",
        "0.1",
        "0.2",
        "0.3",
        "3.14159",
        "2.718281828459045",
        /* 17 significant digits, and 19 (the fast path's integer limit), and 20 */
        "0.10000000000000001",
        "1.7976931348623157",
        "12345678901234567",
        "1234567890123456789",
        "12345678901234567890",
        "99999999999999999999",
        "9007199254740992",
        "9007199254740993",
        "9007199254740991",
        "-9007199254740993",
        "9007199254740992e1",
        "9007199254740993e-1",
        "4503599627370497.5",
        /* exact powers of ten and just past */
        "1e22",
        "1e23",
        "1e-22",
        "1e-23",
        "9e22",
        "123e20",
        "123e-20",
        "1e15",
        "1e16",
        /* extremes */
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "1e308",
        "-1e308",
        "2e308",
        "1e309",
        "1e999",
        "-1e999",
        "1e-307",
        "1e-308",
        "2.2250738585072014e-308",
        "2.2250738585072011e-308",
        "4.9406564584124654e-324",
        "5e-324",
        "2e-324",
        "3e-324",
        "1e-324",
        "1e-400",
        "-4.9e-324",
        "0.000000000000000000000000000001",
        "100000000000000000000000000000",
        "1000000000000000000",
        "10000000000000000000",
        "1000000000000000000.5",
        "0.00000000000000000000000000000000000000000000000000000000000000000001e60",
        "123456789012345678901234567890e-10",
        "1.00000000000000000000000000001",
        "1e0000000000000000000022",
        "1e-0000000000000022",
        "7e-10",
        "7e-22",
        /* not numbers (text or non-finite): codes must agree too */
        "",
        "+",
        "-",
        ".",
        "-.",
        "e5",
        ".e5",
        "1e",
        "1e+",
        "1e-",
        "1.2.3",
        "1,5",
        " 1",
        "1 ",
        "0x10",
        "inf",
        "-inf",
        "Infinity",
        "+INF",
        "nan",
        "-NaN",
        "NA",
        "1d",
        "1f",
        "--1",
        "+-1",
        "1e5.0",
        "1..",
        "١",
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        same(v[i]);
}

/* Random strings built from the grammar's pieces (and a few that break it). */
static void test_random(void)
{
    fv_rng_t r;
    char s[128];
    fv_rng_seed(&r, 20251206);
    for (int it = 0; it < 300000; it++) {
        size_t o = 0;
        uint64_t u = fv_rng_next(&r);
        int sign = (int)(u & 3);
        size_t n_int = (size_t)fv_rng_below(&r, (u >> 2) & 1 ? 24 : 8);
        size_t n_frac = (size_t)fv_rng_below(&r, (u >> 3) & 1 ? 24 : 6);
        bool dot = ((u >> 4) & 3) != 0;
        bool exp = ((u >> 6) & 3) == 0;
        if (sign == 1)
            s[o++] = '-';
        else if (sign == 2)
            s[o++] = '+';
        for (size_t k = 0; k < n_int; k++)
            s[o++] = (char)('0' + (((u >> 8) & 7) == 0 && k == 0 ? 0 : fv_rng_below(&r, 10)));
        if (dot) {
            s[o++] = '.';
            for (size_t k = 0; k < n_frac; k++)
                s[o++] = (char)('0' + fv_rng_below(&r, 10));
        }
        if (exp) {
            s[o++] = (u >> 11) & 1 ? 'e' : 'E';
            if ((u >> 12) & 1)
                s[o++] = (u >> 13) & 1 ? '-' : '+';
            o += (size_t)snprintf(s + o, sizeof s - o, "%d",
                                  (int)fv_rng_below(&r, (u >> 14) & 1 ? 30 : 340));
        }
        if (((u >> 20) & 1023) == 0)
            s[o++] = 'x'; /* now and then, not a number */
        s[o] = '\0';
        same(s);
    }
    /* doubles printed as %.17g, %.15g, %g: round trips and short forms */
    for (int it = 0; it < 50000; it++) {
        uint64_t b = fv_rng_next(&r);
        double v;
        memcpy(&v, &b, sizeof v);
        if (!isfinite(v))
            continue;
        snprintf(s, sizeof s, it % 3 == 0 ? "%.17g" : it % 3 == 1 ? "%.15g" : "%g", v);
        same(s);
        snprintf(s, sizeof s, "%.6f", fv_rng_uniform(&r) * 1000.0);
        same(s);
        snprintf(s, sizeof s, "%lld", (long long)(fv_rng_next(&r) >> (fv_rng_below(&r, 64))));
        same(s);
    }
}

/* dataset.c decodes plain integers of up to 15 digits itself: same bits as strtod_l. */
static void test_dataset_integers(void)
{
    static const char *const v[] = {
        "0",
        "-0",
        "+0",
        "+5",
        "-5",
        "007",
        "-007",
        "255",
        "123456789012345",
        "-123456789012345",
        "999999999999999",
        "1234567890123456",
        "9007199254740993",
        "0000000000000000001",
        "-0000000000000000000",
        "18446744073709551616",
        "1.5",
        "5.",
    };
    enum { N = sizeof v / sizeof v[0] };
    char csv[2048];
    size_t o = (size_t)snprintf(csv, sizeof csv, "x,y\n");
    fv_schema_infer_opts_t opts = {.target = "y", .unknown = FV_UNKNOWN_ERROR};
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    fv_diag_t d = {""};
    for (size_t i = 0; i < N; i++)
        o += (size_t)snprintf(csv + o, sizeof csv - o, "%s,%s\n", v[i], i % 2 ? "a" : "b");
    CHECK(o < sizeof csv);
    CHECK(fv_schema_infer_mem("n.csv", csv, o, &opts, &s, &d) == 0);
    CHECK_INT_EQ(fv_schema_column_type(s, 0), FV_COL_NUMERIC);
    CHECK(fv_dataset_load_mem("n.csv", csv, o, s, &ds, &d) == 0);
    CHECK_UINT_EQ(ds->n_rows, N);
    for (size_t i = 0; i < N; i++) {
        double want = 0;
        CHECK_INT_EQ(fv__parse_number_ref(v[i], loc, &want), FV__NUM_OK);
        if (bits(want) != bits(ds->cells[i * ds->n_cols])) {
            fprintf(stderr, "\"%s\" loaded as %.17g, strtod gives %.17g\n", v[i],
                    ds->cells[i * ds->n_cols], want);
            CHECK(0);
        }
    }
    fv_dataset_free(ds);
    fv_schema_free(s);
}

int main(void)
{
    loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    CHECK(loc != (locale_t)0);
    test_edges();
    test_random();
    test_dataset_integers();
    /* the random set did reach both paths' numbers, not only text */
    CHECK(n_ok > n_checked / 2);
    freelocale(loc);
    return 0;
}
