/* test_onnx.c - the ONNX exporter: known-answer bytes of the ModelProto head, the graph's
 * inputs, outputs, ops and initializers read back with a minimal protobuf reader written
 * here (independent of onnx.c's writer), the W_0 row permutation, input-name
 * sanitization and its refusals, and fv_onnx_save.
 *
 * That the graph computes fedvault's scores is checked end to end in ONNX Runtime by
 * tests/integration/onnx_export.py.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fv_dataset.h"
#include "fv_model.h"
#include "fv_onnx.h"
#include "fv_test.h"

/* ---- a minimal protobuf reader ---- */

typedef struct field {
    unsigned num, wt;
    uint64_t v;       /* wire type 0 / 5 */
    const uint8_t *p; /* wire type 2 */
    size_t n;
} field_t;

static int rd_varint(const uint8_t *b, size_t len, size_t *pos, uint64_t *ret)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return -1;
        uint8_t c = b[(*pos)++];
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *ret = v;
            return 0;
        }
    }
    return -1;
}

/* Next field of a message; 1 = got one, 0 = end, -1 = malformed. */
static int rd_next(const uint8_t *b, size_t len, size_t *pos, field_t *f)
{
    uint64_t key;
    if (*pos == len)
        return 0;
    if (rd_varint(b, len, pos, &key) != 0)
        return -1;
    f->num = (unsigned)(key >> 3);
    f->wt = key & 7;
    switch (f->wt) {
    case 0:
        return rd_varint(b, len, pos, &f->v) == 0 ? 1 : -1;
    case 5:
        if (len - *pos < 4)
            return -1;
        f->v = b[*pos] | (uint32_t)b[*pos + 1] << 8 | (uint32_t)b[*pos + 2] << 16 |
               (uint32_t)b[*pos + 3] << 24;
        *pos += 4;
        return 1;
    case 2:
        if (rd_varint(b, len, pos, &f->v) != 0 || f->v > len - *pos)
            return -1;
        f->p = b + *pos;
        f->n = (size_t)f->v;
        *pos += f->n;
        return 1;
    default:
        return -1;
    }
}

/* Checks the whole message parses; returns the number of fields numbered num. */
static size_t count_fields(const uint8_t *b, size_t len, unsigned num)
{
    size_t pos = 0, n = 0;
    field_t f;
    int r;
    while ((r = rd_next(b, len, &pos, &f)) == 1)
        n += f.num == num;
    CHECK(r == 0);
    return n;
}

/* The idx-th field numbered num (length-delimited); CHECKs it exists. */
static field_t get_field(const uint8_t *b, size_t len, unsigned num, size_t idx)
{
    size_t pos = 0;
    field_t f;
    while (rd_next(b, len, &pos, &f) == 1)
        if (f.num == num && idx-- == 0)
            return f;
    FV__FAIL("field %u #%zu not found", num, idx);
    return f;
}

static int str_is(const field_t *f, const char *s)
{
    return f->wt == 2 && f->n == strlen(s) && memcmp(f->p, s, f->n) == 0;
}

/* ---- fixtures ---- */

/* cat first, so preproc's layout (cat=a, cat=b, cat=<other>, x 1, 9col) differs from the
 * graph's (x 1, 9col, a, b, <other>). */
static const char tiny_csv[] = "cat,x 1,9col,y\n"
                               "a,1,10,bad\n"
                               "b,2,20,good\n"
                               "a,3,,good\n"
                               "b,NA,40,bad\n";

static fv_model_t *build_tiny(const char *csv, fv_unknown_policy_t unknown)
{
    fv_diag_t d = {{0}};
    fv_schema_infer_opts_t opts;
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    fv_preproc_t *pp = NULL;
    fv_mlp_t *mlp = NULL;
    fv_mlp_arch_t arch;
    fv_model_t *m = NULL;

    memset(&opts, 0, sizeof opts);
    opts.target = "y";
    opts.positive = "bad";
    opts.unknown = unknown;
    CHECK_OK(fv_schema_infer_mem("tiny.csv", csv, strlen(csv), &opts, &s, &d), &d);
    CHECK_OK(fv_dataset_load_mem("tiny.csv", csv, strlen(csv), s, &ds, &d), &d);
    CHECK_OK(fv_preproc_fit(ds, NULL, ds->n_rows, &pp), NULL);
    CHECK_OK(fv_mlp_parse_arch("logreg", fv_preproc_n_features(pp), 2, &arch, &d), &d);
    CHECK_OK(fv_mlp_new(&arch, &mlp), NULL);
    float *p = fv_mlp_params(mlp);
    for (size_t i = 0; i < fv_mlp_n_params(mlp); i++)
        p[i] = (float)(i + 1); /* W_0 rows 1..n_in, then b = n_in + 1 */
    fv_dataset_free(ds);
    CHECK_OK(fv_model_new(s, pp, mlp, NULL, &m), NULL);
    return m;
}

static void test_known_head_and_graph(void)
{
    fv_model_t *m = build_tiny(tiny_csv, FV_UNKNOWN_OTHER);
    fv_diag_t d = {{0}};
    uint8_t *buf = NULL;
    size_t len = 0;

    CHECK_OK(fv_onnx_export(m, &buf, &len, &d), &d);
    /* ir_version 7; opset_import {"" 13}; opset_import {"ai.onnx.ml" 2};
     * producer_name "fedvault" */
    static const uint8_t head[] = {
        0x08, 0x07,                         /* field 1 varint 7 */
        0x42, 0x04, 0x0a, 0x00, 0x10, 0x0d, /* field 8 {1: "", 2: 13} */
        0x42, 0x0e, 0x0a, 0x0a, 'a',  'i',  '.', 'o', 'n', 'n',
        'x',  '.',  'm',  'l',  0x10, 0x02, /* field 8 {1: "ai.onnx.ml", 2: 2} */
        0x12, 0x08, 'f',  'e',  'd',  'v',  'a', 'u', 'l', 't', /* field 2 "fedvault" */
    };
    CHECK(len > sizeof head);
    CHECK(memcmp(buf, head, sizeof head) == 0);
    CHECK_UINT_EQ(count_fields(buf, len, 7), 1);  /* one graph */
    CHECK_UINT_EQ(count_fields(buf, len, 14), 2); /* metadata_props */

    field_t g = get_field(buf, len, 7, 0);
    /* inputs: one per feature column in schema order, sanitized names */
    CHECK_UINT_EQ(count_fields(g.p, g.n, 11), 3);
    static const char *const in_names[] = {"cat", "x_1", "_9col"};
    static const uint64_t in_types[] = {8, 1, 1}; /* STRING, FLOAT */
    for (size_t i = 0; i < 3; i++) {
        field_t vi = get_field(g.p, g.n, 11, i);
        field_t name = get_field(vi.p, vi.n, 1, 0);
        CHECK(str_is(&name, in_names[i]));
        field_t type = get_field(vi.p, vi.n, 2, 0);
        field_t tt = get_field(type.p, type.n, 1, 0);
        size_t pos = 0;
        field_t et;
        CHECK(rd_next(tt.p, tt.n, &pos, &et) == 1 && et.num == 1);
        CHECK_UINT_EQ(et.v, in_types[i]);
        field_t shape = get_field(tt.p, tt.n, 2, 0);
        CHECK_UINT_EQ(count_fields(shape.p, shape.n, 1), 2);
        field_t d0 = get_field(shape.p, shape.n, 1, 0);
        field_t dp = get_field(d0.p, d0.n, 2, 0);
        CHECK(str_is(&dp, "N"));
    }
    CHECK_UINT_EQ(count_fields(g.p, g.n, 12), 2);
    field_t o0 = get_field(g.p, g.n, 12, 0), o1 = get_field(g.p, g.n, 12, 1);
    field_t n0 = get_field(o0.p, o0.n, 1, 0), n1 = get_field(o1.p, o1.n, 1, 0);
    CHECK(str_is(&n0, "probability"));
    CHECK(str_is(&n1, "logit"));

    /* ops: exactly one LabelEncoder (ai.onnx.ml), ending with Gemm then Sigmoid */
    size_t n_nodes = count_fields(g.p, g.n, 1), n_le = 0;
    CHECK(n_nodes >= 10);
    for (size_t i = 0; i < n_nodes; i++) {
        field_t nd = get_field(g.p, g.n, 1, i);
        field_t op = get_field(nd.p, nd.n, 4, 0);
        if (str_is(&op, "LabelEncoder")) {
            field_t dom = get_field(nd.p, nd.n, 7, 0);
            CHECK(str_is(&dom, "ai.onnx.ml"));
            n_le++;
        }
        if (i == n_nodes - 2)
            CHECK(str_is(&op, "Gemm"));
        if (i == n_nodes - 1)
            CHECK(str_is(&op, "Sigmoid"));
    }
    CHECK_UINT_EQ(n_le, 1);

    /* W_0: graph rows (x 1, 9col, a, b, <other>) = preproc rows (3, 4, 0, 1, 2), whose
     * values build_tiny set to row index + 1. b_0 = 6. */
    static const float want_w[] = {4, 5, 1, 2, 3};
    int seen_w = 0, seen_b = 0;
    for (size_t i = 0; i < count_fields(g.p, g.n, 5); i++) {
        field_t t = get_field(g.p, g.n, 5, i);
        field_t name = get_field(t.p, t.n, 8, 0);
        field_t raw = get_field(t.p, t.n, 9, 0);
        if (str_is(&name, "fv.W0")) {
            CHECK_UINT_EQ(raw.n, sizeof want_w);
            for (size_t k = 0; k < 5; k++) {
                const uint8_t *q = raw.p + 4 * k;
                uint32_t u =
                    q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
                float f;
                memcpy(&f, &u, 4);
                CHECK(f == want_w[k]);
            }
            CHECK_UINT_EQ(count_fields(t.p, t.n, 1), 2); /* dims [5, 1] */
            seen_w = 1;
        }
        if (str_is(&name, "fv.b0")) {
            CHECK_UINT_EQ(raw.n, 4);
            seen_b = 1;
        }
    }
    CHECK(seen_w && seen_b);

    /* fv_onnx_save writes the same bytes */
    char path[] = "/tmp/fv-test-onnx-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(fv_onnx_save(m, path, &d), &d);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    uint8_t *back = malloc(len + 1);
    CHECK(back != NULL);
    CHECK_UINT_EQ(fread(back, 1, len + 1, f), len);
    CHECK(memcmp(back, buf, len) == 0);
    fclose(f);
    unlink(path);
    free(back);

    /* deterministic */
    uint8_t *buf2 = NULL;
    size_t len2 = 0;
    CHECK_OK(fv_onnx_export(m, &buf2, &len2, &d), &d);
    CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
    free(buf2);
    free(buf);
    fv_model_free(m);
}

static void test_names(void)
{
    char b[16];
    CHECK(strcmp(fv_onnx_input_name("", b, sizeof b), "_") == 0);
    CHECK(strcmp(fv_onnx_input_name("9x", b, sizeof b), "_9x") == 0);
    CHECK(strcmp(fv_onnx_input_name("a-b.c d", b, sizeof b), "a_b_c_d") == 0);
    CHECK(strcmp(fv_onnx_input_name("Az_09", b, sizeof b), "Az_09") == 0);
    CHECK(strcmp(fv_onnx_input_name("\xc3\xa9t\xc3\xa9", b, sizeof b), "__t__") == 0);
    CHECK(fv_onnx_input_name("abcd", b, 4) == NULL);
    CHECK(fv_onnx_input_name("9bc", b, 4) == NULL);
    CHECK(fv_onnx_input_name("abc", b, 4) != NULL);
}

static void test_refusals(void)
{
    static const char collide[] = "a b,a_b,y\n1,2,bad\n3,4,good\n";
    static const char output[] = "logit,z,y\n1,2,bad\n3,4,good\n";
    fv_diag_t d = {{0}};
    uint8_t *buf = NULL;
    size_t len = 12345;

    fv_model_t *m = build_tiny(collide, FV_UNKNOWN_ERROR);
    CHECK_INT_EQ(fv_onnx_export(m, &buf, &len, &d), FV_EINVAL);
    CHECK(strstr(d.msg, "'a b'") != NULL && strstr(d.msg, "'a_b'") != NULL);
    CHECK(buf == NULL && len == 12345); /* out-parameters untouched on failure */
    fv_model_free(m);

    m = build_tiny(output, FV_UNKNOWN_ERROR);
    CHECK_INT_EQ(fv_onnx_export(m, &buf, &len, &d), FV_EINVAL);
    CHECK(strstr(d.msg, "logit") != NULL);
    fv_model_free(m);

    CHECK_INT_EQ(fv_onnx_export(NULL, &buf, &len, &d), FV_EINVAL);
}

int main(void)
{
    test_known_head_and_graph();
    test_names();
    test_refusals();
    printf("test_onnx: all checks passed\n");
    return 0;
}
