/* onnx.c - ONNX export of a fedvault model, with a small protobuf writer.
 *
 * Purpose: one file a bank's serving stack runs unchanged (fv_onnx.h states the input
 * contract). The graph does the preprocessing of preproc.c and the forward pass of
 * mlp.c, so raw column values go in and fedvault's scores come out.
 *
 * The graph (ai.onnx opset 13, ai.onnx.ml opset 2; every op below is in ONNX Runtime's
 * default CPU provider):
 *   numeric block (if the schema has numeric columns), columns in schema order:
 *     Concat(axis 1) of the [N,1] float inputs                  -> fv.num.raw   [N,n_num]
 *     Cast(double), Sub(fv.mean), Div(fv.std), Cast(float)      -> fv.num.scaled
 *     Where(IsNaN(fv.num.raw), 0, fv.num.scaled)                -> fv.num
 *     preproc.c computes (v - mean) / std in double and rounds once to float; the
 *     graph does the same from the float input (mean, std stored as double), so the
 *     only difference is the rounding of the input value to float32.
 *   categorical column j (C categories, width W = C, or C + 1 with "<other>"):
 *     LabelEncoder(ai.onnx.ml): category k -> k, "" and "NA" -> -1 (missing),
 *       anything else -> default_int64 = C under "other" (the <other> feature), -1
 *       under "error"                                         -> fv.cat<j>.idx [N,1]
 *     Equal(idx, fv.cat<j>.range = [0..W-1]) (broadcast), Cast(float) -> fv.cat<j> [N,W]
 *     Core-op string Equal exists only from opset 19 (ORT 1.16+), and the ml
 *     OneHotEncoder cannot tell a missing value from an unknown one; LabelEncoder-2 is
 *     in every ORT since 1.0 and maps both in one node.
 *   Concat(axis 1) of fv.num, fv.cat<j>... -> fv.features [N, n_in]. This puts the
 *     numeric features first, unlike preproc.c's schema-order layout; the rows of W_0
 *     are permuted to match (perm[] below), so Z_0 is the same sum of the same products
 *     (in another order: float rounding differs by a few ulp, as between BLAS builds).
 *   layer l: Gemm(A_l, fv.W<l> [in,out], fv.b<l> [out]); Relu on hidden layers; the
 *     last Gemm writes "logit". "probability" = Sigmoid(logit) for a binary model,
 *     Softmax(axis 1) for a multi-class one, as fv_mlp_predict.
 *
 * Protobuf encoding (https://protobuf.dev/programming-guides/encoding/): every field is
 * a key varint (field_number << 3 | wire_type), then varint (wire type 0: int64, int32,
 * enums; negative values as 10-byte two's complement), 4 little-endian bytes (wire type
 * 5: float), or a length varint and that many bytes (wire type 2: strings, bytes,
 * sub-messages, packed arrays). A sub-message is built in its own buffer, then appended
 * with its length; repeated scalars are written unpacked (one key per element), which
 * every parser accepts whatever the [packed] option. Field numbers, from onnx/onnx
 * onnx/onnx.proto (checked against the file):
 *   ModelProto          ir_version 1, producer_name 2, producer_version 3, doc_string 6,
 *                       graph 7, opset_import 8, metadata_props 14
 *   OperatorSetIdProto  domain 1, version 2
 *   StringStringEntry   key 1, value 2
 *   GraphProto          node 1, name 2, initializer 5, input 11, output 12
 *   NodeProto           input 1, output 2, name 3, op_type 4, attribute 5, domain 7
 *   AttributeProto      name 1, f 2, i 3, s 4, t 5, floats 7, ints 8, strings 9, type 20
 *                       (type enum: FLOAT 1, INT 2, STRING 3, INTS 7, STRINGS 8)
 *   TensorProto         dims 1, data_type 2, float_data 4, name 8, raw_data 9
 *                       (data types: FLOAT 1, INT64 7, STRING 8, BOOL 9, DOUBLE 11)
 *   ValueInfoProto      name 1, type 2
 *   TypeProto           tensor_type 1;  TypeProto.Tensor elem_type 1, shape 2
 *   TensorShapeProto    dim 1;  Dimension dim_value 1, dim_param 2
 * Initializers use raw_data, written byte by byte in little-endian order (not memcpy of
 * the host representation), so the file is the same on any host.
 *
 * Limits: protobuf messages are capped at 2 GiB (INT32_MAX); a larger result is
 * FV_ETOOBIG. Models are capped at 1 GiB by fv_model.h, so this needs a pathological
 * vocabulary to trigger.
 *
 * Ownership: the model is borrowed and only read; the result buffer belongs to the
 * caller. No global state: exports may run on several threads at once.
 */
#include "fv_onnx.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv-config.h"
#include "fv_file.h"
#include "model-int.h"

/* ---- protobuf writer ----------------------------------------------------------- */

enum { WT_VARINT = 0, WT_LEN = 2, WT_I32 = 5 };

typedef struct pb {
    uint8_t *b;
    size_t len, cap;
    bool oom; /* sticky: set by the first failed allocation, checked once at the end */
} pb_t;

static void pb_free(pb_t *p)
{
    free(p->b);
    memset(p, 0, sizeof *p);
}

static void pb_put(pb_t *p, const void *data, size_t n)
{
    if (p->oom || n == 0)
        return;
    if (n > SIZE_MAX / 2 - p->len) {
        p->oom = true;
        return;
    }
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap < p->len + n)
            cap *= 2;
        uint8_t *nb = realloc(p->b, cap);
        if (nb == NULL) {
            p->oom = true;
            return;
        }
        p->b = nb;
        p->cap = cap;
    }
    memcpy(p->b + p->len, data, n);
    p->len += n;
}

static void pb_varint(pb_t *p, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        tmp[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    pb_put(p, tmp, n);
}

static void pb_key(pb_t *p, unsigned field, unsigned wire_type)
{
    pb_varint(p, ((uint64_t)field << 3) | wire_type);
}

static void pb_int(pb_t *p, unsigned field, int64_t v)
{
    pb_key(p, field, WT_VARINT);
    pb_varint(p, (uint64_t)v);
}

static void pb_bytes(pb_t *p, unsigned field, const void *data, size_t n)
{
    pb_key(p, field, WT_LEN);
    pb_varint(p, n);
    pb_put(p, data, n);
}

static void pb_str(pb_t *p, unsigned field, const char *s)
{
    pb_bytes(p, field, s, strlen(s));
}

/* Appends child as a length-delimited field and frees it. */
static void pb_sub(pb_t *p, unsigned field, pb_t *child)
{
    if (child->oom)
        p->oom = true;
    else
        pb_bytes(p, field, child->b, child->len);
    pb_free(child);
}

static void le32(uint8_t *o, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        o[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *o, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        o[i] = (uint8_t)(v >> (8 * i));
}

/* ---- ONNX messages --------------------------------------------------------------- */

/* onnx.proto enums */
enum { DT_FLOAT = 1, DT_INT64 = 7, DT_STRING = 8, DT_DOUBLE = 11 };
enum { AT_INT = 2, AT_INTS = 7, AT_STRINGS = 8 };

/* ModelProto */
enum {
    MP_IR_VERSION = 1,
    MP_PRODUCER_NAME = 2,
    MP_PRODUCER_VERSION = 3,
    MP_DOC = 6,
    MP_GRAPH = 7,
    MP_OPSET_IMPORT = 8,
    MP_METADATA = 14
};
/* GraphProto */
enum { GP_NODE = 1, GP_NAME = 2, GP_INITIALIZER = 5, GP_INPUT = 11, GP_OUTPUT = 12 };
/* NodeProto */
enum { NP_INPUT = 1, NP_OUTPUT = 2, NP_NAME = 3, NP_OP_TYPE = 4, NP_ATTRIBUTE = 5, NP_DOMAIN = 7 };
/* AttributeProto */
enum { AP_NAME = 1, AP_I = 3, AP_INTS = 8, AP_STRINGS = 9, AP_TYPE = 20 };
/* TensorProto */
enum { TP_DIMS = 1, TP_DATA_TYPE = 2, TP_NAME = 8, TP_RAW_DATA = 9 };

#define ML_DOMAIN "ai.onnx.ml"
#define BATCH_DIM "N"

/* ValueInfoProto of a [N, cols] tensor as graph input or output (field). */
static void value_info(pb_t *g, unsigned field, const char *name, int elem_type, size_t cols)
{
    pb_t vi = {0}, type = {0}, tensor = {0}, shape = {0}, dim = {0};

    pb_str(&dim, 2, BATCH_DIM);     /* Dimension.dim_param */
    pb_sub(&shape, 1, &dim);        /* TensorShapeProto.dim */
    pb_int(&dim, 1, (int64_t)cols); /* Dimension.dim_value */
    pb_sub(&shape, 1, &dim);
    pb_int(&tensor, 1, elem_type); /* TypeProto.Tensor.elem_type */
    pb_sub(&tensor, 2, &shape);    /* TypeProto.Tensor.shape */
    pb_sub(&type, 1, &tensor);     /* TypeProto.tensor_type */
    pb_str(&vi, 1, name);          /* ValueInfoProto.name */
    pb_sub(&vi, 2, &type);         /* ValueInfoProto.type */
    pb_sub(g, field, &vi);
}

/* A TensorProto initializer; data holds n elements of 4 (float) or 8 (int64, double)
 * bytes, converted to little-endian here. dims: n_dims entries (0 = scalar). */
static void initializer(pb_t *g, const char *name, int data_type, const int64_t *dims,
                        size_t n_dims, const void *data, size_t n)
{
    pb_t t = {0}, raw = {0};
    uint8_t tmp[8];

    for (size_t i = 0; i < n_dims; i++)
        pb_int(&t, TP_DIMS, dims[i]);
    pb_int(&t, TP_DATA_TYPE, data_type);
    pb_str(&t, TP_NAME, name);
    for (size_t i = 0; i < n; i++) {
        if (data_type == DT_FLOAT) {
            uint32_t u;
            memcpy(&u, (const float *)data + i, 4);
            le32(tmp, u);
            pb_put(&raw, tmp, 4);
        } else { /* DT_INT64, DT_DOUBLE: 8 bytes */
            uint64_t u;
            memcpy(&u, (const uint8_t *)data + 8 * i, 8);
            le64(tmp, u);
            pb_put(&raw, tmp, 8);
        }
    }
    if (raw.oom)
        t.oom = true;
    pb_bytes(&t, TP_RAW_DATA, raw.b, raw.len);
    pb_free(&raw);
    pb_sub(g, GP_INITIALIZER, &t);
}

typedef struct node {
    pb_t pb;
} node_t;

/* Starts a node: op_type, domain (NULL = ai.onnx), and its name (its first output's). */
static void node_begin(node_t *n, const char *op, const char *domain)
{
    memset(n, 0, sizeof *n);
    pb_str(&n->pb, NP_OP_TYPE, op);
    if (domain != NULL)
        pb_str(&n->pb, NP_DOMAIN, domain);
}

static void node_in(node_t *n, const char *name)
{
    pb_str(&n->pb, NP_INPUT, name);
}

static void node_out(node_t *n, const char *name)
{
    pb_str(&n->pb, NP_OUTPUT, name);
    pb_str(&n->pb, NP_NAME, name); /* node named after its output: unique in the graph */
}

static void attr_int(node_t *n, const char *name, int64_t v)
{
    pb_t a = {0};
    pb_str(&a, AP_NAME, name);
    pb_int(&a, AP_TYPE, AT_INT);
    pb_int(&a, AP_I, v);
    pb_sub(&n->pb, NP_ATTRIBUTE, &a);
}

static void attr_ints(node_t *n, const char *name, const int64_t *v, size_t count)
{
    pb_t a = {0};
    pb_str(&a, AP_NAME, name);
    pb_int(&a, AP_TYPE, AT_INTS);
    for (size_t i = 0; i < count; i++)
        pb_int(&a, AP_INTS, v[i]);
    pb_sub(&n->pb, NP_ATTRIBUTE, &a);
}

/* strings[0..count) then extra[0..n_extra) */
static void attr_strings(node_t *n, const char *name, const char *const *v, size_t count,
                         const char *const *extra, size_t n_extra)
{
    pb_t a = {0};
    pb_str(&a, AP_NAME, name);
    pb_int(&a, AP_TYPE, AT_STRINGS);
    for (size_t i = 0; i < count; i++)
        pb_str(&a, AP_STRINGS, v[i]);
    for (size_t i = 0; i < n_extra; i++)
        pb_str(&a, AP_STRINGS, extra[i]);
    pb_sub(&n->pb, NP_ATTRIBUTE, &a);
}

static void node_end(pb_t *g, node_t *n)
{
    pb_sub(g, GP_NODE, &n->pb);
}

/* Unary op in -> out (with an optional int attribute, name NULL = none). */
static void node1(pb_t *g, const char *op, const char *in, const char *out, const char *attr,
                  int64_t v)
{
    node_t n;
    node_begin(&n, op, NULL);
    node_in(&n, in);
    node_out(&n, out);
    if (attr != NULL)
        attr_int(&n, attr, v);
    node_end(g, &n);
}

static void node2(pb_t *g, const char *op, const char *a, const char *b, const char *out)
{
    node_t n;
    node_begin(&n, op, NULL);
    node_in(&n, a);
    node_in(&n, b);
    node_out(&n, out);
    node_end(g, &n);
}

/* ---- names ----------------------------------------------------------------------- */

char *fv_onnx_input_name(const char *name, char *buf, size_t len)
{
    size_t n = strlen(name), o = 0;
    bool prefix = n == 0 || (name[0] >= '0' && name[0] <= '9');

    if (buf == NULL || len < n + (prefix ? 1 : 0) + 1)
        return NULL;
    if (prefix)
        buf[o++] = '_';
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok =
            (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        buf[o++] = ok ? c : '_';
    }
    buf[o] = '\0';
    return buf;
}

/* ---- the graph ------------------------------------------------------------------- */

typedef struct exporter {
    const fv_model_t *m;
    const fv_schema_t *s;
    const fv_mlp_arch_t *arch;
    size_t n_cols;
    char **in_name; /* n_cols; NULL for columns without an input */
    size_t *fv_off; /* n_cols; preproc.c's first feature of the column */
    size_t *perm;   /* n_in; graph feature p is preproc feature perm[p] */
    size_t n_num, n_cat;
} exporter_t;

static void exporter_close(exporter_t *e)
{
    for (size_t j = 0; e->in_name != NULL && j < e->n_cols; j++)
        free(e->in_name[j]);
    free(e->in_name);
    free(e->fv_off);
    free(e->perm);
}

static bool has_input(const fv_schema_t *s, size_t j)
{
    fv_col_type_t t = fv_schema_column_type(s, j);
    return t == FV_COL_NUMERIC || t == FV_COL_CATEGORICAL;
}

/* Names, layout and permutation; checks the model's parts agree. */
static int exporter_init(exporter_t *e, const fv_model_t *m, fv_diag_t *d)
{
    bool other;
    size_t off = 0, p = 0;

    memset(e, 0, sizeof *e);
    if (m == NULL || m->schema == NULL || m->preproc == NULL || m->mlp == NULL)
        return fv_diag_set(d, FV_EINVAL, "ONNX export: incomplete model");
    e->m = m;
    e->s = m->schema;
    e->arch = fv_mlp_arch(m->mlp);
    e->n_cols = fv_schema_n_columns(e->s);
    other = fv_schema_unknown_policy(e->s) == FV_UNKNOWN_OTHER;
    e->in_name = calloc(e->n_cols ? e->n_cols : 1, sizeof *e->in_name);
    e->fv_off = calloc(e->n_cols ? e->n_cols : 1, sizeof *e->fv_off);
    e->perm = calloc(e->arch->n_in, sizeof *e->perm);
    if (e->in_name == NULL || e->fv_off == NULL || e->perm == NULL)
        return FV_ENOMEM;

    /* preproc.c's layout (fv_preproc.h): schema order, numeric 1 feature, categorical
     * one per category plus <other> under the "other" policy. */
    for (size_t j = 0; j < e->n_cols; j++) {
        e->fv_off[j] = off;
        if (fv_schema_column_type(e->s, j) == FV_COL_NUMERIC) {
            off += 1;
            e->n_num++;
        } else if (fv_schema_column_type(e->s, j) == FV_COL_CATEGORICAL) {
            off += fv_schema_n_categories(e->s, j) + (other ? 1 : 0);
            e->n_cat++;
        }
    }
    if (off != e->arch->n_in || off != fv_preproc_n_features(m->preproc))
        return fv_diag_set(d, FV_EINVAL,
                           "ONNX export: the schema gives %zu features, the preprocessing "
                           "%zu and the network takes %zu: inconsistent model",
                           off, fv_preproc_n_features(m->preproc), e->arch->n_in);
    /* Graph order: numeric features first, then the categorical blocks. */
    for (size_t j = 0; j < e->n_cols; j++)
        if (fv_schema_column_type(e->s, j) == FV_COL_NUMERIC)
            e->perm[p++] = e->fv_off[j];
    for (size_t j = 0; j < e->n_cols; j++) {
        if (fv_schema_column_type(e->s, j) != FV_COL_CATEGORICAL)
            continue;
        size_t w = fv_schema_n_categories(e->s, j) + (other ? 1 : 0);
        for (size_t k = 0; k < w; k++)
            e->perm[p++] = e->fv_off[j] + k;
    }

    for (size_t j = 0; j < e->n_cols; j++) {
        if (!has_input(e->s, j))
            continue;
        const char *col = fv_schema_column_name(e->s, j);
        size_t len = strlen(col) + 2;
        if ((e->in_name[j] = malloc(len)) == NULL)
            return FV_ENOMEM;
        fv_onnx_input_name(col, e->in_name[j], len);
        if (strcmp(e->in_name[j], "logit") == 0 || strcmp(e->in_name[j], "probability") == 0)
            return fv_diag_set(d, FV_EINVAL,
                               "ONNX export: column '%.200s' would be named '%s', which is "
                               "an output name; rename the column",
                               col, e->in_name[j]);
        for (size_t k = 0; k < j; k++)
            if (e->in_name[k] != NULL && strcmp(e->in_name[k], e->in_name[j]) == 0)
                return fv_diag_set(d, FV_EINVAL,
                                   "ONNX export: columns '%.200s' and '%.200s' both become "
                                   "input '%.200s' (bytes outside [A-Za-z0-9_] become '_'); "
                                   "rename one of them",
                                   fv_schema_column_name(e->s, k), col, e->in_name[j]);
    }
    return 0;
}

static int numeric_block(exporter_t *e, pb_t *g)
{
    double *mean = malloc(e->n_num * sizeof *mean), *sd = malloc(e->n_num * sizeof *sd);
    int64_t dims[1] = {(int64_t)e->n_num};
    const float zero = 0.0f;
    node_t n;
    size_t i = 0;

    if (mean == NULL || sd == NULL) {
        free(mean);
        free(sd);
        return FV_ENOMEM;
    }
    node_begin(&n, "Concat", NULL);
    for (size_t j = 0; j < e->n_cols; j++) {
        if (fv_schema_column_type(e->s, j) != FV_COL_NUMERIC)
            continue;
        node_in(&n, e->in_name[j]);
        mean[i] = fv_preproc_mean(e->m->preproc, j);
        sd[i] = fv_preproc_std(e->m->preproc, j);
        i++;
    }
    node_out(&n, "fv.num.raw");
    attr_int(&n, "axis", 1);
    node_end(g, &n);
    initializer(g, "fv.mean", DT_DOUBLE, dims, 1, mean, e->n_num);
    initializer(g, "fv.std", DT_DOUBLE, dims, 1, sd, e->n_num);
    initializer(g, "fv.zero", DT_FLOAT, NULL, 0, &zero, 1);
    free(mean);
    free(sd);

    node1(g, "Cast", "fv.num.raw", "fv.num.raw64", "to", DT_DOUBLE);
    node2(g, "Sub", "fv.num.raw64", "fv.mean", "fv.num.centered");
    node2(g, "Div", "fv.num.centered", "fv.std", "fv.num.scaled64");
    node1(g, "Cast", "fv.num.scaled64", "fv.num.scaled", "to", DT_FLOAT);
    node1(g, "IsNaN", "fv.num.raw", "fv.num.missing", NULL, 0);
    node_begin(&n, "Where", NULL);
    node_in(&n, "fv.num.missing");
    node_in(&n, "fv.zero");
    node_in(&n, "fv.num.scaled");
    node_out(&n, "fv.num");
    node_end(g, &n);
    return 0;
}

static int categorical_block(exporter_t *e, pb_t *g, size_t j)
{
    static const char *const missing[] = {"", "NA"}; /* fv_schema_is_missing */
    size_t n_cats = fv_schema_n_categories(e->s, j);
    bool other = fv_schema_unknown_policy(e->s) == FV_UNKNOWN_OTHER;
    size_t w = n_cats + (other ? 1 : 0);
    const char **cats = malloc((n_cats ? n_cats : 1) * sizeof *cats);
    int64_t *vals = malloc((n_cats + 2) * sizeof *vals);
    int64_t *range = malloc((w ? w : 1) * sizeof *range);
    char idx[48], rng[48], eq[48], out[48];
    node_t n;

    if (cats == NULL || vals == NULL || range == NULL) {
        free(cats);
        free(vals);
        free(range);
        return FV_ENOMEM;
    }
    for (size_t k = 0; k < n_cats; k++) {
        cats[k] = fv_schema_category(e->s, j, k);
        vals[k] = (int64_t)k;
    }
    vals[n_cats] = vals[n_cats + 1] = -1;
    for (size_t k = 0; k < w; k++)
        range[k] = (int64_t)k;
    snprintf(idx, sizeof idx, "fv.cat%zu.idx", j);
    snprintf(rng, sizeof rng, "fv.cat%zu.range", j);
    snprintf(eq, sizeof eq, "fv.cat%zu.eq", j);
    snprintf(out, sizeof out, "fv.cat%zu", j);

    node_begin(&n, "LabelEncoder", ML_DOMAIN);
    node_in(&n, e->in_name[j]);
    node_out(&n, idx);
    attr_strings(&n, "keys_strings", cats, n_cats, missing, 2);
    attr_ints(&n, "values_int64s", vals, n_cats + 2);
    attr_int(&n, "default_int64", other ? (int64_t)n_cats : -1);
    node_end(g, &n);
    int64_t dims[1] = {(int64_t)w};
    initializer(g, rng, DT_INT64, dims, 1, range, w);
    node2(g, "Equal", idx, rng, eq);
    node1(g, "Cast", eq, out, "to", DT_FLOAT);
    free(cats);
    free(vals);
    free(range);
    return 0;
}

/* The network on fv.features; writes "logit" and "probability". */
static int network(exporter_t *e, pb_t *g)
{
    const fv_mlp_arch_t *a = e->arch;
    const float *params = fv_mlp_params_const(e->m->mlp);
    size_t dims[FV_MLP_MAX_HIDDEN + 2], n_layers = a->n_hidden + 1, off = 0;
    char in[32] = "fv.features", z[32], w_name[32], b_name[32];

    dims[0] = a->n_in;
    for (size_t l = 0; l < a->n_hidden; l++)
        dims[l + 1] = a->hidden[l];
    dims[n_layers] = a->n_out;
    for (size_t l = 0; l < n_layers; l++) {
        size_t ni = dims[l], no = dims[l + 1];
        const float *w = params + off, *b = params + off + ni * no;
        int64_t wd[2] = {(int64_t)ni, (int64_t)no}, bd[1] = {(int64_t)no};
        bool last = l + 1 == n_layers;

        snprintf(w_name, sizeof w_name, "fv.W%zu", l);
        snprintf(b_name, sizeof b_name, "fv.b%zu", l);
        if (l == 0) {
            /* Row p of the graph's W_0 is row perm[p] of fedvault's. */
            float *wp = malloc(ni * no * sizeof *wp);
            if (wp == NULL)
                return FV_ENOMEM;
            for (size_t p = 0; p < ni; p++)
                memcpy(wp + p * no, w + e->perm[p] * no, no * sizeof *wp);
            initializer(g, w_name, DT_FLOAT, wd, 2, wp, ni * no);
            free(wp);
        } else {
            initializer(g, w_name, DT_FLOAT, wd, 2, w, ni * no);
        }
        initializer(g, b_name, DT_FLOAT, bd, 1, b, no);
        off += ni * no + no;

        snprintf(z, sizeof z, last ? "logit" : "fv.z%zu", l);
        node_t n;
        node_begin(&n, "Gemm", NULL);
        node_in(&n, in);
        node_in(&n, w_name);
        node_in(&n, b_name);
        node_out(&n, z);
        node_end(g, &n);
        if (!last) {
            snprintf(in, sizeof in, "fv.h%zu", l + 1);
            node1(g, "Relu", z, in, NULL, 0);
        }
    }
    if (off != fv_mlp_n_params(e->m->mlp))
        return FV_EINVAL; /* the layout of fv_mlp.h changed without this file */
    if (a->n_out == 1)
        node1(g, "Sigmoid", "logit", "probability", NULL, 0);
    else
        node1(g, "Softmax", "logit", "probability", "axis", 1);
    return 0;
}

static int build_graph(exporter_t *e, pb_t *g)
{
    int r;
    node_t n;

    pb_str(g, GP_NAME, "fedvault");
    for (size_t j = 0; j < e->n_cols; j++) {
        if (e->in_name[j] == NULL)
            continue;
        value_info(g, GP_INPUT, e->in_name[j],
                   fv_schema_column_type(e->s, j) == FV_COL_NUMERIC ? DT_FLOAT : DT_STRING, 1);
    }
    value_info(g, GP_OUTPUT, "probability", DT_FLOAT, e->arch->n_out);
    value_info(g, GP_OUTPUT, "logit", DT_FLOAT, e->arch->n_out);

    if (e->n_num > 0 && (r = numeric_block(e, g)) != 0)
        return r;
    for (size_t j = 0; j < e->n_cols; j++)
        if (fv_schema_column_type(e->s, j) == FV_COL_CATEGORICAL &&
            (r = categorical_block(e, g, j)) != 0)
            return r;
    node_begin(&n, "Concat", NULL);
    if (e->n_num > 0)
        node_in(&n, "fv.num");
    for (size_t j = 0; j < e->n_cols; j++) {
        char name[48];
        if (fv_schema_column_type(e->s, j) != FV_COL_CATEGORICAL)
            continue;
        snprintf(name, sizeof name, "fv.cat%zu", j);
        node_in(&n, name);
    }
    node_out(&n, "fv.features");
    attr_int(&n, "axis", 1);
    node_end(g, &n);
    return network(e, g);
}

static void opset(pb_t *mp, const char *domain, int64_t version)
{
    pb_t o = {0};
    pb_str(&o, 1, domain);  /* OperatorSetIdProto.domain ("" = ai.onnx) */
    pb_int(&o, 2, version); /* OperatorSetIdProto.version */
    pb_sub(mp, MP_OPSET_IMPORT, &o);
}

static void metadata(pb_t *mp, const char *key, const char *value)
{
    pb_t kv = {0};
    pb_str(&kv, 1, key);   /* StringStringEntryProto.key */
    pb_str(&kv, 2, value); /* StringStringEntryProto.value */
    pb_sub(mp, MP_METADATA, &kv);
}

int fv_onnx_export(const fv_model_t *m, uint8_t **ret_buf, size_t *ret_len, fv_diag_t *d)
{
    exporter_t e;
    pb_t mp = {0}, g = {0};
    char *schema_json = NULL;
    size_t schema_len;
    int r;

    if (ret_buf == NULL || ret_len == NULL)
        return fv_diag_set(d, FV_EINVAL, "ONNX export: no output buffer");
    if ((r = exporter_init(&e, m, d)) != 0)
        goto out;
    if ((r = fv_schema_to_json(e.s, &schema_json, &schema_len)) != 0)
        goto out;
    if ((r = build_graph(&e, &g)) != 0)
        goto out;

    pb_int(&mp, MP_IR_VERSION, FV_ONNX_IR_VERSION);
    opset(&mp, "", FV_ONNX_OPSET);
    opset(&mp, ML_DOMAIN, FV_ONNX_ML_OPSET);
    pb_str(&mp, MP_PRODUCER_NAME, "fedvault");
    pb_str(&mp, MP_PRODUCER_VERSION, FV_VERSION);
    pb_str(&mp, MP_DOC,
           "fedvault model with its preprocessing. Inputs: one [N,1] tensor per feature "
           "column, named after the column (bytes outside [A-Za-z0-9_] -> '_'); numeric "
           "columns float (NaN = missing), categorical columns string (\"\" or \"NA\" = "
           "missing). Outputs: probability, logit. Schema in metadata fedvault.schema.");
    pb_sub(&mp, MP_GRAPH, &g);
    metadata(&mp, "fedvault.schema", schema_json);
    metadata(&mp, "fedvault.version", FV_VERSION);
    if (mp.oom) {
        r = FV_ENOMEM;
        goto out;
    }
    if (mp.len > INT32_MAX) {
        r = fv_diag_set(d, FV_ETOOBIG,
                        "ONNX export: %zu bytes, over protobuf's 2 GiB message limit", mp.len);
        goto out;
    }
    *ret_buf = mp.b;
    *ret_len = mp.len;
    mp.b = NULL;
    r = 0;
out:
    if (r == FV_ENOMEM)
        fv_diag_set(d, r, "ONNX export: out of memory");
    pb_free(&g);
    pb_free(&mp);
    free(schema_json);
    exporter_close(&e);
    return r;
}

int fv_onnx_save(const fv_model_t *m, const char *path, fv_diag_t *d)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int r = fv_onnx_export(m, &buf, &len, d);
    if (r != 0)
        return r;
    r = fv_file_write_atomic(path, buf, len, FV__SAVE_MODE, d);
    free(buf);
    return r;
}
