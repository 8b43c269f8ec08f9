/* test_csv.c - the RFC 4180 reader: records, positions, and every malformed input.
 *
 * Good inputs are compared as a flat dump ("L1:a|b;L2:c|d;": line, then fields), so one
 * string shows the whole parse. Each bad input checks the code and that the message
 * names the file, the line and the field (COL): "name:LINE:COL: ...".
 */
#include "fv_csv.h"
#include "fv_test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];
/* One diagnostic for the whole file, through a pointer: fv_test.h's CHECK_OK tests its
 * diag argument for NULL, and gcc -Waddress warns when that argument is `&local`. */
static fv_diag_t diag_store;
static fv_diag_t *const D = &diag_store;

/* Parses buf to the end; writes "L<line>:f1|f2;..." into out. Returns the last code
 * (0 at end of input, < 0 on error). */
static int dump(const char *buf, size_t len, char *out, size_t out_len, fv_diag_t *d)
{
    fv_csv_t *c = NULL;
    fv_csv_record_t rec;
    size_t o = 0;
    int r = fv_csv_open_mem("t.csv", buf, len, &c, d);
    out[0] = '\0';
    if (r < 0)
        return r;
    while ((r = fv_csv_next(c, &rec, d)) == 1) {
        o += (size_t)snprintf(out + o, out_len - o, "L%zu:", rec.line);
        for (size_t i = 0; i < rec.n_fields; i++)
            o += (size_t)snprintf(out + o, out_len - o, "%s%s", i ? "|" : "", rec.fields[i]);
        o += (size_t)snprintf(out + o, out_len - o, ";");
        CHECK(o < out_len);
    }
    fv_csv_free(c);
    return r;
}

#define CHECK_DUMP(lit, expect)                                                                    \
    do {                                                                                           \
        char out_[4096];                                                                           \
        CHECK_OK(dump(lit, sizeof(lit) - 1, out_, sizeof out_, D), D);                             \
        CHECK_STR_EQ(out_, expect);                                                                \
    } while (0)

/* The input fails with err and a message containing each of the given substrings. */
#define CHECK_BAD(lit, err, ...)                                                                   \
    do {                                                                                           \
        char out_[4096];                                                                           \
        const char *want_[] = {__VA_ARGS__};                                                       \
        D->msg[0] = '\0';                                                                          \
        CHECK_INT_EQ(dump(lit, sizeof(lit) - 1, out_, sizeof out_, D), err);                       \
        for (size_t k_ = 0; k_ < sizeof want_ / sizeof want_[0]; k_++)                             \
            CHECK_CONTAINS(D->msg, want_[k_]);                                                     \
    } while (0)

static void test_simple(void)
{
    CHECK_DUMP("a,b,c\n1,2,3\n", "L1:a|b|c;L2:1|2|3;");
    /* no trailing newline */
    CHECK_DUMP("a,b\n1,2", "L1:a|b;L2:1|2;");
    /* empty fields, at the start, middle and end */
    CHECK_DUMP(",x,\n,,\n", "L1:|x|;L2:||;");
    /* one column */
    CHECK_DUMP("a\n1\n2\n", "L1:a;L2:1;L3:2;");
    /* spaces are data */
    CHECK_DUMP(" a , b \n", "L1: a | b ;");
    /* empty input: no records */
    CHECK_DUMP("", "");
}

static void test_line_ends(void)
{
    CHECK_DUMP("a,b\r\n1,2\r\n", "L1:a|b;L2:1|2;");
    CHECK_DUMP("a,b\r\n1,2", "L1:a|b;L2:1|2;");
    /* lone CR (old Mac) is a line end too */
    CHECK_DUMP("a,b\r1,2\r", "L1:a|b;L2:1|2;");
    /* mixed */
    CHECK_DUMP("a\n1\r\n2\r3", "L1:a;L2:1;L3:2;L4:3;");
}

static void test_empty_lines(void)
{
    /* lines with no characters are skipped, but still counted */
    CHECK_DUMP("\n\na,b\n\n1,2\n\n\n3,4\n\n", "L3:a|b;L5:1|2;L8:3|4;");
    CHECK_DUMP("a\r\n\r\n1\r\n", "L1:a;L3:1;");
    /* a line holding "" is a record with one empty field, not an empty line */
    CHECK_DUMP("a\n\"\"\n1\n", "L1:a;L2:;L3:1;");
}

static void test_bom(void)
{
    CHECK_DUMP("\xEF\xBB\xBF"
               "a,b\n1,2\n",
               "L1:a|b;L2:1|2;");
    CHECK_DUMP("\xEF\xBB\xBF\"a\",b\n", "L1:a|b;");
    /* only at offset 0 */
    CHECK_DUMP("a\n\xEF\xBB\xBFx\n", "L1:a;L2:\xEF\xBB\xBFx;");
}

static void test_quoted(void)
{
    /* commas, doubled quotes */
    CHECK_DUMP("\"a,b\",\"say \"\"hi\"\"\",c\n", "L1:a,b|say \"hi\"|c;");
    /* an empty quoted field and a quoted field of one quote */
    CHECK_DUMP("\"\",\"\"\"\"\n", "L1:|\";");
    /* newlines inside quotes: the record starts on line 2; the next record is on line 5 */
    CHECK_DUMP("h1,h2\n\"multi\nline\nvalue\",x\nnext,y\n",
               "L1:h1|h2;L2:multi\nline\nvalue|x;L5:next|y;");
    /* CRLF inside quotes is kept and counts as one line */
    CHECK_DUMP("\"a\r\nb\",c\r\nd,e\r\n", "L1:a\r\nb|c;L3:d|e;");
    /* lone CR inside quotes counts as one line */
    CHECK_DUMP("\"a\rb\",c\nd,e\n", "L1:a\rb|c;L3:d|e;");
    /* quoted field at the end of input, without a line end */
    CHECK_DUMP("a,\"b\"", "L1:a|b;");
    /* a quoted field that is all quotes and commas */
    CHECK_DUMP("\",\"\",\"\",\"", "L1:,\",\",;");
    /* real-file style: quoted header and values */
    CHECK_DUMP("\"x\",\"y\"\n1,\"term_36\"\n", "L1:x|y;L2:1|term_36;");
}

static void test_unterminated_quote(void)
{
    /* the message points at the line where the quote opened */
    CHECK_BAD("a,b\n1,\"open\n2,3\n4,5\n", FV_EPARSE, "t.csv:2:2:", "never closed",
              "expected a closing '\"'");
    CHECK_BAD("\"", FV_EPARSE, "t.csv:1:1:", "never closed");
}

static void test_quote_in_unquoted(void)
{
    CHECK_BAD("a,b,c\n1,ab\"c\",3\n", FV_EPARSE, "t.csv:2:2:", "quote inside an unquoted field",
              "expected");
    CHECK_BAD("a,b\n1,2\nx,5\" screen\n", FV_EPARSE, "t.csv:3:2:");
}

static void test_text_after_quote(void)
{
    CHECK_BAD("a,b\n\"x\"y,2\n", FV_EPARSE, "t.csv:2:1:", "after the closing quote",
              "expected ','");
    /* after a multi-line quoted field, the line is where the junk is */
    CHECK_BAD("a,b\n1,\"x\ny\" z\n", FV_EPARSE, "t.csv:3:2:");
}

static void test_nul(void)
{
    CHECK_BAD("a,b\n1,2\n3,x\0y\n", FV_EPARSE, "t.csv:3:2:", "NUL byte", "expected text");
    CHECK_BAD("a,\"b\0\"\n", FV_EPARSE, "t.csv:1:2:", "NUL byte");
    CHECK_BAD("a,\"b\"\0\n", FV_EPARSE, "t.csv:1:2:", "NUL byte");
    /* UTF-16LE "a,b": every other byte is NUL */
    CHECK_BAD("a\0,\0b\0\n\0", FV_EPARSE, "t.csv:1:1:", "UTF-16");
}

static void test_too_many_fields(void)
{
    size_t n = FV_CSV_MAX_FIELDS + 1;
    char *buf = malloc(2 * n + 1);
    char out[64];
    fv_csv_t *c = NULL;
    fv_csv_record_t rec;
    CHECK(buf != NULL);
    /* exactly the cap is fine */
    for (size_t i = 0; i < n - 1; i++) {
        buf[2 * i] = 'x';
        buf[2 * i + 1] = ',';
    }
    buf[2 * (n - 1) - 1] = '\n';
    CHECK_OK(fv_csv_open_mem("t.csv", buf, 2 * (n - 1), &c, D), D);
    CHECK_INT_EQ(fv_csv_next(c, &rec, D), 1);
    CHECK_UINT_EQ(rec.n_fields, FV_CSV_MAX_FIELDS);
    fv_csv_free(c);
    /* one more is an error naming the field */
    for (size_t i = 0; i < n; i++) {
        buf[2 * i] = 'x';
        buf[2 * i + 1] = ',';
    }
    buf[2 * n - 1] = '\n';
    CHECK_INT_EQ(dump(buf, 2 * n, out, sizeof out, D), FV_EPARSE);
    CHECK_CONTAINS(D->msg, "t.csv:1:4097:");
    CHECK_CONTAINS(D->msg, "more than 4096 fields");
    free(buf);
}

static void test_sticky_error(void)
{
    const char in[] = "a\n\"x\ny\n";
    fv_csv_t *c = NULL;
    fv_csv_record_t rec;
    CHECK_OK(fv_csv_open_mem("t.csv", in, sizeof in - 1, &c, D), D);
    CHECK_INT_EQ(fv_csv_next(c, &rec, D), 1);
    CHECK_INT_EQ(fv_csv_next(c, &rec, D), FV_EPARSE);
    memset(D->msg, 0, sizeof D->msg);
    CHECK_INT_EQ(fv_csv_next(c, &rec, D), FV_EPARSE);
    CHECK_CONTAINS(D->msg, "t.csv:2:1:");
    /* a NULL diag is allowed */
    CHECK_INT_EQ(fv_csv_next(c, &rec, NULL), FV_EPARSE);
    fv_csv_free(c);
}

static void test_end_is_sticky(void)
{
    const char in[] = "a\n";
    fv_csv_t *c = NULL;
    fv_csv_record_t rec;
    CHECK_OK(fv_csv_open_mem(NULL, in, sizeof in - 1, &c, D), D);
    CHECK_STR_EQ(fv_csv_name(c), "<memory>");
    CHECK_INT_EQ(fv_csv_next(c, &rec, D), 1);
    CHECK_INT_EQ(fv_csv_next(c, &rec, D), 0);
    CHECK_INT_EQ(fv_csv_next(c, &rec, D), 0);
    fv_csv_free(c);
    fv_csv_free(NULL);
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK_UINT_EQ(fwrite(data, 1, len, f), len);
    CHECK(fclose(f) == 0);
}

static void test_file(void)
{
    char path[512];
    fv_csv_t *c = NULL;
    fv_csv_record_t rec;
    snprintf(path, sizeof path, "%s/ok.csv", tmpdir);
    write_file(path, "x,y\n1,2\n", 8);
    CHECK_OK(fv_csv_open(path, 0, &c, D), D);
    CHECK_STR_EQ(fv_csv_name(c), path);
    CHECK_INT_EQ(fv_csv_next(c, &rec, D), 1);
    CHECK_STR_EQ(rec.fields[1], "y");
    CHECK_INT_EQ(fv_csv_next(c, &rec, D), 1);
    CHECK_STR_EQ(rec.fields[0], "1");
    CHECK_INT_EQ(fv_csv_next(c, &rec, D), 0);
    fv_csv_free(c);

    /* a file of exactly the cap is fine, one byte over is refused before reading */
    c = NULL;
    CHECK_OK(fv_csv_open(path, 8, &c, D), D);
    fv_csv_free(c);
    c = NULL;
    CHECK_INT_EQ(fv_csv_open(path, 7, &c, D), FV_ETOOBIG);
    CHECK(c == NULL);
    CHECK_CONTAINS(D->msg, path);
    CHECK_CONTAINS(D->msg, "8 bytes, over the cap of 7 bytes");
    CHECK_CONTAINS(D->msg, "expected at most 7 bytes");

    /* an empty file has no records */
    snprintf(path, sizeof path, "%s/empty.csv", tmpdir);
    write_file(path, "", 0);
    CHECK_OK(fv_csv_open(path, 0, &c, D), D);
    CHECK_INT_EQ(fv_csv_next(c, &rec, D), 0);
    fv_csv_free(c);
}

static void test_unreadable(void)
{
    char path[512];
    fv_csv_t *c = NULL;

    snprintf(path, sizeof path, "%s/does-not-exist.csv", tmpdir);
    CHECK_INT_EQ(fv_csv_open(path, 0, &c, D), -ENOENT);
    CHECK(c == NULL);
    CHECK_CONTAINS(D->msg, path);
    CHECK_CONTAINS(D->msg, strerror(ENOENT));

    CHECK_INT_EQ(fv_csv_open(tmpdir, 0, &c, D), -EISDIR);
    CHECK(c == NULL);
    CHECK_CONTAINS(D->msg, tmpdir);
    CHECK_CONTAINS(D->msg, strerror(EISDIR));
}

static void test_pipe_over_cap(void)
{
    /* A non-regular file is read in chunks and the cap checked as data arrives. */
    fv_csv_t *c = NULL;
    /* /dev/zero is endless: the cap must stop it */
    CHECK_INT_EQ(fv_csv_open("/dev/zero", 100000, &c, D), FV_ETOOBIG);
    CHECK_CONTAINS(D->msg, "/dev/zero: input is over the cap of 100000 bytes");
    /* /dev/null is a character device with no data */
    CHECK_OK(fv_csv_open("/dev/null", 0, &c, D), D);
    fv_csv_free(c);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fv_test_csv.XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);

    test_simple();
    test_line_ends();
    test_empty_lines();
    test_bom();
    test_quoted();
    test_unterminated_quote();
    test_quote_in_unquoted();
    test_text_after_quote();
    test_nul();
    test_too_many_fields();
    test_sticky_error();
    test_end_is_sticky();
    test_file();
    test_unreadable();
    test_pipe_over_cap();

    {
        static const char *const made[] = {"ok.csv", "empty.csv"};
        char path[512];
        for (size_t i = 0; i < sizeof made / sizeof made[0]; i++) {
            snprintf(path, sizeof path, "%s/%s", tmpdir, made[i]);
            CHECK(unlink(path) == 0);
        }
        CHECK(rmdir(tmpdir) == 0);
    }
    return 0;
}
