/* schema_open.c - open schemas: an agent's vocabulary, the coordinator's resolution, and
 * the offline merge of closed schemas.
 *
 * Purpose: a consortium should not have to pool data (or hand-merge category lists) to
 * agree on a schema. A job may leave categories, or a column's type, open (fv_schema.h);
 * each agent that allows it discloses the vocabulary of the open columns it sees
 * (fv_schema_vocab), values held by fewer than min_count of its rows suppressed and only
 * counted; the coordinator unions the vocabularies into one closed schema
 * (fv_schema_resolve). fv_schema_merge is the same union for closed schema files, offline.
 *
 * What a vocabulary discloses, and what it does not: per open column, the type the agent
 * sees, the sorted list of values held by >= min_count rows, and how many distinct values
 * were suppressed. No per-value counts, no row count, no value of a numeric column.
 *
 * Trust: vocabularies come from the network (peer-controlled JSON). fv_schema_resolve
 * reads each one under caps checked before anything is kept (bytes, columns, categories
 * per column, bytes per value), refuses control bytes and missing markers, requires the
 * open columns named exactly once each, and names the origin in every refusal. The union
 * is bounded by FV_SCHEMA_MAX_CATEGORIES per column.
 *
 * Construction: closed schemas are never assembled field by field here. The result is
 * written as schema JSON (the input schema's canonical JSON with the open columns filled
 * in) and read back with fv_schema_from_json, so schema.c alone establishes and checks
 * the invariants of a fv_schema_t.
 *
 * Memory: fv_schema_vocab streams the CSV; it holds one hash map of distinct values per
 * open column, each capped at FV_SCHEMA_MAX_CATEGORIES entries while the column is
 * categorical (a column that still looks numeric drops its map at the cap, as inference
 * does). Pure: no globals, no logging; reentrant.
 */
#define _GNU_SOURCE /* newlocale */

#include <jansson.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_csv.h"
#include "fv_schema.h"
#include "model-int.h"

#define VOCAB_VERSION 1
#define MSG_BUF FV__MSG_BUF

/* ---- a counting hash map of strings ------------------------------------------------ */

/* Open addressing, FNV-1a. In fv_schema_vocab the keys are the bank's own cells; in
 * resolve and merge they are already capped per column, so flooding is bounded. */
struct cmap {
    char **keys;
    uint64_t *counts;
    size_t cap; /* power of two, or 0 */
    size_t n;
};

static void cmap_free(struct cmap *m)
{
    if (m->keys != NULL)
        for (size_t i = 0; i < m->cap; i++)
            free(m->keys[i]);
    free(m->keys);
    free(m->counts);
    memset(m, 0, sizeof *m);
}

/* Adds one to key's count (inserting it at 1). 0 or FV_ENOMEM. */
static int cmap_add(struct cmap *m, const char *key)
{
    size_t i;
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 16;
        char **nk = calloc(ncap, sizeof *nk);
        uint64_t *nc = calloc(ncap, sizeof *nc);
        if (nk == NULL || nc == NULL) {
            free(nk);
            free(nc);
            return FV_ENOMEM;
        }
        for (size_t k = 0; k < m->cap; k++) {
            if (m->keys[k] == NULL)
                continue;
            size_t j = (size_t)fv__str_hash(m->keys[k]) & (ncap - 1);
            while (nk[j] != NULL)
                j = (j + 1) & (ncap - 1);
            nk[j] = m->keys[k];
            nc[j] = m->counts[k];
        }
        free(m->keys);
        free(m->counts);
        m->keys = nk;
        m->counts = nc;
        m->cap = ncap;
    }
    for (i = (size_t)fv__str_hash(key) & (m->cap - 1); m->keys[i] != NULL;
         i = (i + 1) & (m->cap - 1))
        if (strcmp(m->keys[i], key) == 0) {
            m->counts[i]++;
            return 0;
        }
    m->keys[i] = strdup(key);
    if (m->keys[i] == NULL)
        return FV_ENOMEM;
    m->counts[i] = 1;
    m->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys with count >= min_count, sorted (borrowed from the map); *ret_n of them. */
static int cmap_sorted(const struct cmap *m, uint64_t min_count, const char ***ret, size_t *ret_n)
{
    const char **v = malloc((m->n ? m->n : 1) * sizeof *v);
    size_t k = 0;
    if (v == NULL)
        return FV_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] != NULL && m->counts[i] >= min_count)
            v[k++] = m->keys[i];
    qsort(v, k, sizeof *v, cmp_str);
    *ret = v;
    *ret_n = k;
    return 0;
}

/* Sorted key array as a JSON array of strings. NULL on failure. */
static json_t *json_strs(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++)
        if (json_array_append_new(a, json_string(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* Whether a value may travel in a vocabulary: at most FV_SCHEMA_VOCAB_MAX_VALUE bytes,
 * no control byte; NULL if so, else what is wrong. (UTF-8 is checked by the caller.) */
static const char *value_problem(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
        if (*p < 0x20 || *p == 0x7f)
            return "holds a control byte";
    return n > FV_SCHEMA_VOCAB_MAX_VALUE ? "is longer than the cap" : NULL;
}

/* Dumps root compactly into a malloc'd NUL-terminated buffer. */
static int dump_json(json_t *root, char **ret, size_t *ret_len)
{
    size_t len = json_dumpb(root, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char *out;
    if (len == 0)
        return FV_ENOMEM;
    out = malloc(len + 1);
    if (out == NULL)
        return FV_ENOMEM;
    if (json_dumpb(root, out, len, JSON_COMPACT | JSON_PRESERVE_ORDER) != len) {
        free(out);
        return FV_ENOMEM;
    }
    out[len] = '\0';
    *ret = out;
    if (ret_len != NULL)
        *ret_len = len;
    return 0;
}

/* The schema's canonical JSON as a jansson tree (to fill in and read back). */
static int schema_tree(const fv_schema_t *s, json_t **ret)
{
    char *js = NULL;
    size_t len = 0;
    int r = fv_schema_to_json(s, &js, &len);
    if (r < 0)
        return r;
    *ret = json_loadb(js, len, 0, NULL);
    free(js);
    return *ret != NULL ? 0 : FV_ENOMEM;
}

/* Reads the filled-in tree back as a schema (every invariant checked by schema.c). */
static int tree_schema(json_t *root, const char *name, fv_schema_t **ret, fv_diag_t *d)
{
    char *js = NULL;
    size_t len = 0;
    int r = dump_json(root, &js, &len);
    if (r < 0)
        return fv_diag_set(d, r, "%s: out of memory", name);
    r = fv_schema_from_json(name, js, len, ret, d);
    free(js);
    return r;
}

/* ---- the agent's vocabulary -------------------------------------------------------- */

struct vcol {
    size_t col;        /* schema column */
    size_t field;      /* CSV field index */
    bool found;        /* in the header */
    bool declared_cat; /* "categories": "open" (always categorical) */
    bool numeric;      /* every non-missing cell so far is a number (type "open" only) */
    bool overflow;     /* map dropped at the cap while the column looked numeric */
    struct cmap m;
};

static int vocab_csv(const fv_schema_t *s, fv_csv_t *c, uint32_t min_count, char **ret_json,
                     size_t *ret_len, fv_diag_t *d)
{
    const char *fn;
    fv_csv_record_t rec;
    struct vcol *vc = NULL;
    size_t nv = 0, n_fields = 0, n_rows = 0, last_line = 1;
    locale_t loc = (locale_t)0;
    json_t *root = NULL, *cols = NULL;
    const char **kept = NULL;
    char b1[MSG_BUF], b2[MSG_BUF];
    int r;

    for (size_t j = 0; j < fv_schema_n_columns(s); j++)
        nv += fv_schema_column_open(s, j);
    if (nv == 0)
        return fv_diag_set(d, FV_EINVAL,
                           "fv_schema_vocab: the schema has no open column; expected an open "
                           "schema (\"categories\": \"open\" or \"type\": \"open\")");
    vc = calloc(nv, sizeof *vc);
    loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (vc == NULL || loc == (locale_t)0) {
        r = fv_diag_set(d, FV_ENOMEM, "out of memory reading the vocabulary");
        goto out;
    }
    for (size_t j = 0, k = 0; j < fv_schema_n_columns(s); j++)
        if (fv_schema_column_open(s, j)) {
            vc[k].col = j;
            vc[k].declared_cat = fv_schema_column_type(s, j) == FV_COL_CATEGORICAL;
            vc[k].numeric = !vc[k].declared_cat;
            k++;
        }

    fn = fv_csv_name(c);
    r = fv_csv_next(c, &rec, d);
    if (r <= 0) {
        if (r == 0)
            r = fv_diag_set(d, FV_EEMPTY,
                            "%s:1:1: empty file; expected a header line naming the schema's "
                            "columns",
                            fn);
        goto out;
    }
    n_fields = rec.n_fields;
    last_line = rec.line;
    for (size_t f = 0; f < rec.n_fields; f++)
        for (size_t k = 0; k < nv; k++) {
            if (strcmp(rec.fields[f], fv_schema_column_name(s, vc[k].col)) != 0)
                continue;
            if (vc[k].found) {
                r = fv_diag_set(d, FV_ESCHEMA,
                                "%s:%zu:%zu: column '%s': appears twice in the header (also "
                                "field %zu); expected unique column names",
                                fn, rec.line, f + 1, fv__msg_str(b1, sizeof b1, rec.fields[f]),
                                vc[k].field + 1);
                goto out;
            }
            vc[k].found = true;
            vc[k].field = f;
        }
    for (size_t k = 0; k < nv; k++)
        if (!vc[k].found) {
            r = fv_diag_set(d, FV_ESCHEMA,
                            "%s:%zu: column '%s': open in the job's schema but missing from the "
                            "header; expected every open column",
                            fn, rec.line,
                            fv__msg_str(b1, sizeof b1, fv_schema_column_name(s, vc[k].col)));
            goto out;
        }

    while ((r = fv_csv_next(c, &rec, d)) == 1) {
        last_line = rec.line;
        if (rec.n_fields != n_fields) {
            r = fv_diag_set(d, FV_EPARSE,
                            "%s:%zu: row has %zu fields, the header has %zu; expected %zu "
                            "fields",
                            fn, rec.line, rec.n_fields, n_fields, n_fields);
            goto out;
        }
        n_rows++;
        for (size_t k = 0; k < nv; k++) {
            struct vcol *v = &vc[k];
            const char *cell = rec.fields[v->field];
            double x;
            if (fv_schema_is_missing(cell))
                continue;
            if (v->numeric && fv__parse_number(cell, loc, &x) != FV__NUM_OK)
                v->numeric = false;
            if (v->overflow && v->numeric)
                continue; /* still numeric: no vocabulary needed */
            if (!v->overflow && (r = cmap_add(&v->m, cell)) < 0) {
                fv_diag_set(d, r, "%s:%zu: out of memory", fn, rec.line);
                goto out;
            }
            if (!v->overflow && v->m.n > FV_SCHEMA_MAX_CATEGORIES && v->numeric) {
                cmap_free(&v->m); /* a numeric column needs no vocabulary */
                v->overflow = true;
            }
            /* A dropped map belongs to a column that looked numeric; once it is not, it
             * has more distinct values than the cap. */
            if ((v->overflow && !v->numeric) ||
                (!v->overflow && v->m.n > FV_SCHEMA_MAX_CATEGORIES)) {
                r = fv_diag_set(d, FV_ETOOBIG,
                                "%s:%zu:%zu: column '%s': more than %d distinct values; "
                                "expected at most %d (make the column \"ignored\" in the job's "
                                "schema, or clean its values)",
                                fn, rec.line, v->field + 1,
                                fv__msg_str(b1, sizeof b1, fv_schema_column_name(s, v->col)),
                                FV_SCHEMA_MAX_CATEGORIES, FV_SCHEMA_MAX_CATEGORIES);
                goto out;
            }
        }
    }
    if (r < 0)
        goto out;
    if (n_rows == 0) {
        r = fv_diag_set(d, FV_EEMPTY,
                        "%s:%zu: header but no data rows; expected at least one row after the "
                        "header",
                        fn, last_line + 1);
        goto out;
    }

    root = json_object();
    cols = json_array();
    if (root == NULL || cols == NULL ||
        json_object_set_new(root, "fedvault_vocab", json_integer(VOCAB_VERSION)) != 0)
        goto nomem;
    for (size_t k = 0; k < nv; k++) {
        struct vcol *v = &vc[k];
        bool numeric = !v->declared_cat && v->numeric;
        size_t n_kept = 0;
        json_t *o = json_object();
        if (o == NULL || json_array_append_new(cols, o) != 0)
            goto nomem;
        if (!numeric && cmap_sorted(&v->m, min_count, &kept, &n_kept) < 0)
            goto nomem;
        for (size_t i = 0; i < n_kept; i++) {
            const char *why =
                !fv__utf8_valid(kept[i]) ? "is not valid UTF-8" : value_problem(kept[i]);
            if (why != NULL) {
                r = fv_diag_set(d, FV_EINVAL,
                                "%s: column '%s': category '%s' %s; a vocabulary carries UTF-8 "
                                "text of at most %d bytes without control bytes (clean the "
                                "value or make the column \"ignored\")",
                                fn, fv__msg_str(b1, sizeof b1, fv_schema_column_name(s, v->col)),
                                fv__msg_str(b2, sizeof b2, kept[i]), why,
                                FV_SCHEMA_VOCAB_MAX_VALUE);
                goto out;
            }
        }
        if (json_object_set_new(o, "name", json_string(fv_schema_column_name(s, v->col))) != 0 ||
            json_object_set_new(o, "type", json_string(numeric ? "numeric" : "categorical")) != 0 ||
            json_object_set_new(o, "categories", json_strs(kept, n_kept)) != 0 ||
            json_object_set_new(o, "suppressed",
                                json_integer(numeric ? 0 : (json_int_t)(v->m.n - n_kept))) != 0)
            goto nomem;
        free(kept);
        kept = NULL;
    }
    if (json_object_set_new(root, "columns", cols) != 0) {
        cols = NULL;
        goto nomem;
    }
    cols = NULL;
    {
        char *out = NULL;
        size_t len = 0;
        if (dump_json(root, &out, &len) < 0)
            goto nomem;
        if (len > FV_SCHEMA_VOCAB_MAX_BYTES) {
            free(out);
            r = fv_diag_set(d, FV_ETOOBIG,
                            "%s: the vocabulary is %zu bytes; expected at most %zu (raise the "
                            "policy's min_count, or close the schema's largest columns)",
                            fn, len, FV_SCHEMA_VOCAB_MAX_BYTES);
            goto out;
        }
        *ret_json = out;
        if (ret_len != NULL)
            *ret_len = len;
    }
    r = 0;
    goto out;
nomem:
    r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory writing the vocabulary", fn);
out:
    free(kept);
    json_decref(cols);
    json_decref(root);
    for (size_t k = 0; vc != NULL && k < nv; k++)
        cmap_free(&vc[k].m);
    free(vc);
    if (loc != (locale_t)0)
        freelocale(loc);
    return r;
}

static int vocab_args(const fv_schema_t *s, uint32_t min_count, char **ret_json, fv_diag_t *d)
{
    if (s == NULL || ret_json == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_schema_vocab: schema and ret_json are required");
    if (min_count < 1)
        return fv_diag_set(d, FV_EINVAL,
                           "fv_schema_vocab: min_count 0; expected at least 1 (values held by "
                           "fewer rows are suppressed)");
    return 0;
}

int fv_schema_vocab(const fv_schema_t *open, const char *csv_path, uint32_t min_count,
                    char **ret_json, size_t *ret_len, fv_diag_t *d)
{
    fv_csv_t *c = NULL;
    int r = vocab_args(open, min_count, ret_json, d);
    if (r < 0)
        return r;
    if ((r = fv_csv_open(csv_path, 0, &c, d)) < 0)
        return r;
    r = vocab_csv(open, c, min_count, ret_json, ret_len, d);
    fv_csv_free(c);
    return r;
}

int fv_schema_vocab_mem(const fv_schema_t *open, const char *name, const char *buf, size_t len,
                        uint32_t min_count, char **ret_json, size_t *ret_len, fv_diag_t *d)
{
    fv_csv_t *c = NULL;
    int r = vocab_args(open, min_count, ret_json, d);
    if (r < 0)
        return r;
    if ((r = fv_csv_open_mem(name, buf, len, &c, d)) < 0)
        return r;
    r = vocab_csv(open, c, min_count, ret_json, ret_len, d);
    fv_csv_free(c);
    return r;
}

/* ---- resolution -------------------------------------------------------------------- */

/* Per open column of the schema being resolved. */
struct rcol {
    size_t col;       /* schema column */
    bool categorical; /* some vocabulary saw a non-number (or declared categorical) */
    struct cmap u;    /* union of categories */
};

static bool only_keys(json_t *o, const char *const *keys, size_t n, const char **ret_bad)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        size_t i;
        for (i = 0; i < n; i++)
            if (strcmp(k, keys[i]) == 0)
                break;
        if (i == n) {
            *ret_bad = k;
            return false;
        }
    }
    return true;
}

/* Checks one vocabulary and adds it into rc[] (nr open columns). seen: nr bytes, scratch. */
static int resolve_one(const fv_schema_t *s, struct rcol *rc, size_t nr, unsigned char *seen,
                       const char *org, const char *text, size_t len, fv_diag_t *d)
{
    static const char *const root_keys[] = {"fedvault_vocab", "columns"};
    static const char *const col_keys[] = {"name", "type", "categories", "suppressed"};
    json_t *root = NULL, *v, *cols;
    json_error_t je;
    const char *bad = NULL;
    char b1[MSG_BUF], b2[MSG_BUF];
    size_t n;
    int r = 0;

#define VFAIL(err, ...)                                                                            \
    do {                                                                                           \
        r = fv_diag_set(d, (err), __VA_ARGS__);                                                    \
        goto out;                                                                                  \
    } while (0)
    if (text == NULL && len > 0)
        return fv_diag_set(d, FV_EINVAL, "%s: vocabulary: no bytes", org);
    if (len > FV_SCHEMA_VOCAB_MAX_BYTES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: vocabulary: %zu bytes; expected at most %zu", org,
                           len, FV_SCHEMA_VOCAB_MAX_BYTES);
    /* No JSON_ALLOW_NUL: "\u0000" is refused, so every string is all of its value. */
    root = json_loadb(text != NULL ? text : "", len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return fv_diag_set(d, FV_EPARSE, "%s: vocabulary:%d:%d: invalid JSON: %s", org, je.line,
                           je.column, je.text);
    if (!json_is_object(root))
        VFAIL(FV_EPARSE, "%s: vocabulary: expected a JSON object with key \"fedvault_vocab\"", org);
    if (!only_keys(root, root_keys, 2, &bad))
        VFAIL(FV_EPARSE, "%s: vocabulary: unknown key '%s'; expected only fedvault_vocab, columns",
              org, fv__msg_str(b1, sizeof b1, bad));
    v = json_object_get(root, "fedvault_vocab");
    if (!json_is_integer(v) || json_integer_value(v) != VOCAB_VERSION)
        VFAIL(v == NULL || !json_is_integer(v) ? FV_EPARSE : FV_EVERSION,
              "%s: vocabulary: fedvault_vocab: %s; expected the integer %d", org,
              v == NULL            ? "missing"
              : json_is_integer(v) ? "unsupported version"
                                   : "wrong type",
              VOCAB_VERSION);
    cols = json_object_get(root, "columns");
    if (!json_is_array(cols))
        VFAIL(FV_EPARSE, "%s: vocabulary: columns: %s; expected an array of column objects", org,
              cols == NULL ? "missing" : "wrong type");
    n = json_array_size(cols);
    if (n > FV_SCHEMA_MAX_COLUMNS)
        VFAIL(FV_ETOOBIG, "%s: vocabulary: columns: %zu entries; expected at most %d", org, n,
              FV_SCHEMA_MAX_COLUMNS);
    memset(seen, 0, nr);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(cols, i), *nm, *ty, *ca, *su;
        const char *name;
        long col;
        size_t k, nc;
        bool numeric;
        if (!json_is_object(o))
            VFAIL(FV_EPARSE, "%s: vocabulary: columns[%zu]: expected an object", org, i);
        if (!only_keys(o, col_keys, 4, &bad))
            VFAIL(FV_EPARSE,
                  "%s: vocabulary: columns[%zu]: unknown key '%s'; expected only name, type, "
                  "categories, suppressed",
                  org, i, fv__msg_str(b1, sizeof b1, bad));
        nm = json_object_get(o, "name");
        ty = json_object_get(o, "type");
        ca = json_object_get(o, "categories");
        su = json_object_get(o, "suppressed");
        if (!json_is_string(nm))
            VFAIL(FV_EPARSE, "%s: vocabulary: columns[%zu].name: %s; expected a string", org, i,
                  nm == NULL ? "missing" : "wrong type");
        name = json_string_value(nm);
        col = fv_schema_column_index(s, name);
        for (k = 0; k < nr && col >= 0 && rc[k].col != (size_t)col; k++)
            ;
        if (col < 0 || k == nr)
            VFAIL(FV_EINVAL,
                  "%s: vocabulary: columns[%zu].name: '%s' is not an open column of the job's "
                  "schema; expected only its open columns",
                  org, i, fv__msg_str(b1, sizeof b1, name));
        if (seen[k])
            VFAIL(FV_EINVAL,
                  "%s: vocabulary: columns[%zu].name: '%s' appears twice; expected each open "
                  "column once",
                  org, i, fv__msg_str(b1, sizeof b1, name));
        seen[k] = 1;
        if (!json_is_string(ty) || (strcmp(json_string_value(ty), "numeric") != 0 &&
                                    strcmp(json_string_value(ty), "categorical") != 0))
            VFAIL(FV_EPARSE,
                  "%s: vocabulary: columns[%zu].type: %s; expected \"numeric\" or "
                  "\"categorical\"",
                  org, i, ty == NULL ? "missing" : "wrong value");
        numeric = strcmp(json_string_value(ty), "numeric") == 0;
        if (numeric && fv_schema_column_type(s, rc[k].col) == FV_COL_CATEGORICAL)
            VFAIL(FV_EINVAL,
                  "%s: vocabulary: columns[%zu] '%s': type \"numeric\" for a column the schema "
                  "declares categorical; expected \"categorical\"",
                  org, i, fv__msg_str(b1, sizeof b1, name));
        if (!json_is_integer(su) || json_integer_value(su) < 0)
            VFAIL(FV_EPARSE, "%s: vocabulary: columns[%zu].suppressed: %s; expected a count >= 0",
                  org, i, su == NULL ? "missing" : "wrong value");
        if (!json_is_array(ca))
            VFAIL(FV_EPARSE,
                  "%s: vocabulary: columns[%zu].categories: %s; expected an array of strings", org,
                  i, ca == NULL ? "missing" : "wrong type");
        nc = json_array_size(ca);
        if (nc > FV_SCHEMA_MAX_CATEGORIES)
            VFAIL(FV_ETOOBIG,
                  "%s: vocabulary: columns[%zu].categories: %zu entries; expected at most %d", org,
                  i, nc, FV_SCHEMA_MAX_CATEGORIES);
        if (numeric && nc > 0)
            VFAIL(FV_EINVAL,
                  "%s: vocabulary: columns[%zu] '%s': categories on a numeric column; expected "
                  "[] (a numeric column discloses no value)",
                  org, i, fv__msg_str(b1, sizeof b1, name));
        if (!numeric)
            rc[k].categorical = true;
        for (size_t e = 0; e < nc; e++) {
            json_t *ev = json_array_get(ca, e);
            const char *sv, *why;
            if (!json_is_string(ev))
                VFAIL(FV_EPARSE,
                      "%s: vocabulary: columns[%zu].categories[%zu]: wrong type; expected a "
                      "string",
                      org, i, e);
            sv = json_string_value(ev);
            if (fv_schema_is_missing(sv))
                VFAIL(FV_EINVAL,
                      "%s: vocabulary: columns[%zu].categories[%zu]: \"%s\" means a missing "
                      "value; expected a real category",
                      org, i, e, sv);
            if ((why = value_problem(sv)) != NULL)
                VFAIL(json_string_length(ev) > FV_SCHEMA_VOCAB_MAX_VALUE ? FV_ETOOBIG : FV_EINVAL,
                      "%s: vocabulary: columns[%zu].categories[%zu] (%zu bytes) %s; expected "
                      "text of at most %d bytes without control bytes",
                      org, i, e, json_string_length(ev), why, FV_SCHEMA_VOCAB_MAX_VALUE);
            if (e > 0 && strcmp(json_string_value(json_array_get(ca, e - 1)), sv) >= 0)
                VFAIL(FV_EINVAL,
                      "%s: vocabulary: columns[%zu].categories[%zu]: '%s' after '%s'; expected "
                      "unique values sorted by byte order",
                      org, i, e, fv__msg_str(b1, sizeof b1, sv),
                      fv__msg_str(b2, sizeof b2, json_string_value(json_array_get(ca, e - 1))));
            if ((r = cmap_add(&rc[k].u, sv)) < 0)
                VFAIL(r, "%s: out of memory", org);
            if (rc[k].u.n > FV_SCHEMA_MAX_CATEGORIES)
                VFAIL(FV_ETOOBIG,
                      "%s: column '%s': the union of the vocabularies reaches more than %d "
                      "categories; expected at most %d (raise the agents' min_count or make "
                      "the column \"ignored\")",
                      org, fv__msg_str(b1, sizeof b1, name), FV_SCHEMA_MAX_CATEGORIES,
                      FV_SCHEMA_MAX_CATEGORIES);
        }
    }
    for (size_t k = 0; k < nr; k++)
        if (!seen[k])
            VFAIL(FV_EINVAL,
                  "%s: vocabulary: open column '%s' is missing; expected every open column of "
                  "the job's schema once",
                  org, fv__msg_str(b1, sizeof b1, fv_schema_column_name(s, rc[k].col)));
    r = 0;
out:
#undef VFAIL
    json_decref(root);
    return r;
}

int fv_schema_resolve(const fv_schema_t *open, const char *const *vocabs, const size_t *lens,
                      const char *const *origins, size_t n, fv_schema_t **ret, fv_diag_t *d)
{
    struct rcol *rc = NULL;
    unsigned char *seen = NULL;
    json_t *root = NULL;
    const char **sorted = NULL;
    size_t nr = 0;
    int r;

    if (open == NULL || ret == NULL || (n > 0 && (vocabs == NULL || lens == NULL)))
        return fv_diag_set(d, FV_EINVAL,
                           "fv_schema_resolve: schema, vocabularies and ret are "
                           "required");
    if (!fv_schema_is_open(open))
        return fv_diag_set(d, FV_EINVAL, "fv_schema_resolve: the schema has no open column");
    if (n == 0)
        return fv_diag_set(d, FV_EINVAL,
                           "schema: no vocabulary to resolve the open columns from; expected at "
                           "least one agent's");
    for (size_t j = 0; j < fv_schema_n_columns(open); j++)
        nr += fv_schema_column_open(open, j);
    rc = calloc(nr, sizeof *rc);
    seen = calloc(nr, 1);
    if (rc == NULL || seen == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "schema: out of memory");
        goto out;
    }
    for (size_t j = 0, k = 0; j < fv_schema_n_columns(open); j++)
        if (fv_schema_column_open(open, j)) {
            rc[k].col = j;
            rc[k].categorical = fv_schema_column_type(open, j) == FV_COL_CATEGORICAL;
            k++;
        }
    for (size_t i = 0; i < n; i++) {
        char org[FV_DIAG_MAX / 4];
        if (origins != NULL && origins[i] != NULL)
            snprintf(org, sizeof org, "%s", origins[i]);
        else
            snprintf(org, sizeof org, "vocabulary %zu", i + 1);
        if ((r = resolve_one(open, rc, nr, seen, org, vocabs[i], lens[i], d)) < 0)
            goto out;
    }

    if ((r = schema_tree(open, &root)) < 0) {
        fv_diag_set(d, r, "schema: out of memory");
        goto out;
    }
    {
        json_t *cols = json_object_get(root, "columns");
        for (size_t k = 0; k < nr; k++) {
            json_t *o = json_array_get(cols, rc[k].col);
            size_t nk = 0;
            if (rc[k].categorical) {
                if (cmap_sorted(&rc[k].u, 1, &sorted, &nk) < 0 ||
                    json_object_set_new(o, "type", json_string("categorical")) != 0 ||
                    json_object_set_new(o, "categories", json_strs(sorted, nk)) != 0)
                    goto nomem;
                free(sorted);
                sorted = NULL;
            } else {
                if (json_object_set_new(o, "type", json_string("numeric")) != 0)
                    goto nomem;
                json_object_del(o, "categories");
            }
        }
        if (json_object_set_new(root, "unknown_category", json_string("other")) != 0)
            goto nomem;
    }
    r = tree_schema(root, "resolved schema", ret, d);
    goto out;
nomem:
    r = fv_diag_set(d, FV_ENOMEM, "schema: out of memory");
out:
    free(sorted);
    json_decref(root);
    for (size_t k = 0; rc != NULL && k < nr; k++)
        cmap_free(&rc[k].u);
    free(rc);
    free(seen);
    return r;
}

/* ---- offline merge ----------------------------------------------------------------- */

static const char *const col_type_names[] = {"numeric", "categorical", "ignored", "target", "open"};

static bool labels_equal(const fv_schema_t *a, const fv_schema_t *b)
{
    if (fv_schema_n_labels(a) != fv_schema_n_labels(b))
        return false;
    for (size_t k = 0; k < fv_schema_n_labels(a); k++)
        if (strcmp(fv_schema_label(a, k), fv_schema_label(b, k)) != 0)
            return false;
    return true;
}

/* Whether b has a's shape (columns, types, target, classes, positive); else FV_EINVAL
 * naming both. */
static int same_shape(const fv_schema_t *a, const char *an, const fv_schema_t *b, const char *bn,
                      fv_diag_t *d)
{
    char b1[MSG_BUF], b2[MSG_BUF];
    size_t n = fv_schema_n_columns(a);
    const char *pa = fv_schema_positive(a), *pb = fv_schema_positive(b);
    if (fv_schema_n_columns(b) != n)
        return fv_diag_set(d, FV_EINVAL,
                           "%s: %zu columns but %s has %zu; expected the same columns in the "
                           "same order",
                           bn, fv_schema_n_columns(b), an, n);
    for (size_t j = 0; j < n; j++) {
        fv_col_type_t ta = fv_schema_column_type(a, j), tb = fv_schema_column_type(b, j);
        if (strcmp(fv_schema_column_name(a, j), fv_schema_column_name(b, j)) != 0)
            return fv_diag_set(d, FV_EINVAL,
                               "%s: columns[%zu] is '%s' but in %s it is '%s'; expected the "
                               "same columns in the same order",
                               bn, j, fv__msg_str(b1, sizeof b1, fv_schema_column_name(b, j)), an,
                               fv__msg_str(b2, sizeof b2, fv_schema_column_name(a, j)));
        if (ta != tb)
            return fv_diag_set(d, FV_EINVAL,
                               "%s: column '%s' is %s but in %s it is %s; expected the same "
                               "type (edit one schema, e.g. make the column \"categorical\" in "
                               "both)",
                               bn, fv__msg_str(b1, sizeof b1, fv_schema_column_name(b, j)),
                               col_type_names[tb], an, col_type_names[ta]);
    }
    if (!labels_equal(a, b))
        return fv_diag_set(d, FV_EINVAL,
                           "%s: classes differ from %s's (%zu and %zu labels); expected the same "
                           "target labels (infer each schema from data holding every class)",
                           bn, an, fv_schema_n_labels(b), fv_schema_n_labels(a));
    if ((pa == NULL) != (pb == NULL) || (pa != NULL && strcmp(pa, pb) != 0))
        return fv_diag_set(d, FV_EINVAL,
                           "%s: positive label '%s' but %s has '%s'; expected the same", bn,
                           pb != NULL ? fv__msg_str(b1, sizeof b1, pb) : "(none)", an,
                           pa != NULL ? fv__msg_str(b2, sizeof b2, pa) : "(none)");
    return 0;
}

int fv_schema_merge(const fv_schema_t *const *in, const char *const *names, size_t n,
                    fv_schema_t **ret, fv_diag_t *d)
{
    json_t *root = NULL;
    struct cmap u = {0};
    const char **sorted = NULL;
    bool other = false;
    char n0[FV_DIAG_MAX / 4], ni[FV_DIAG_MAX / 4];
    int r = 0;

    if (in == NULL || ret == NULL || n == 0)
        return fv_diag_set(d, FV_EINVAL, "fv_schema_merge: at least one schema is required");
    snprintf(n0, sizeof n0, "%s", names != NULL && names[0] != NULL ? names[0] : "schema 1");
    for (size_t i = 0; i < n; i++) {
        if (names != NULL && names[i] != NULL)
            snprintf(ni, sizeof ni, "%s", names[i]);
        else
            snprintf(ni, sizeof ni, "schema %zu", i + 1);
        if (in[i] == NULL)
            return fv_diag_set(d, FV_EINVAL, "fv_schema_merge: %s is NULL", ni);
        if ((r = fv_schema_check_closed(in[i], ni, d)) < 0)
            return r;
        if (i > 0 && (r = same_shape(in[0], n0, in[i], ni, d)) < 0)
            return r;
        other = other || fv_schema_unknown_policy(in[i]) == FV_UNKNOWN_OTHER;
    }
    if ((r = schema_tree(in[0], &root)) < 0)
        return fv_diag_set(d, r, "schema merge: out of memory");
    for (size_t j = 0; j < fv_schema_n_columns(in[0]); j++) {
        size_t nk = 0;
        if (fv_schema_column_type(in[0], j) != FV_COL_CATEGORICAL)
            continue;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < fv_schema_n_categories(in[i], j); k++)
                if (cmap_add(&u, fv_schema_category(in[i], j, k)) < 0)
                    goto nomem;
        if (u.n > FV_SCHEMA_MAX_CATEGORIES) {
            char b1[MSG_BUF];
            r = fv_diag_set(d, FV_ETOOBIG,
                            "schema merge: column '%s': the union holds %zu categories; expected "
                            "at most %d",
                            fv__msg_str(b1, sizeof b1, fv_schema_column_name(in[0], j)), u.n,
                            FV_SCHEMA_MAX_CATEGORIES);
            goto out;
        }
        if (cmap_sorted(&u, 1, &sorted, &nk) < 0 ||
            json_object_set_new(json_array_get(json_object_get(root, "columns"), j), "categories",
                                json_strs(sorted, nk)) != 0)
            goto nomem;
        free(sorted);
        sorted = NULL;
        cmap_free(&u);
    }
    if (json_object_set_new(root, "unknown_category", json_string(other ? "other" : "error")) != 0)
        goto nomem;
    r = tree_schema(root, "merged schema", ret, d);
    goto out;
nomem:
    r = fv_diag_set(d, FV_ENOMEM, "schema merge: out of memory");
out:
    free(sorted);
    cmap_free(&u);
    json_decref(root);
    return r;
}

/* ---- opening a closed schema (the operator's starting point for a schema round) ------- */

int fv_schema_open(const fv_schema_t *closed, const char *const *cols, size_t n_cols,
                   bool all_categorical, fv_schema_t **ret, fv_diag_t *d)
{
    json_t *root = NULL, *jcols;
    char b1[MSG_BUF];
    size_t n_opened = 0;
    int r;

    if (closed == NULL || ret == NULL || (n_cols > 0 && cols == NULL))
        return fv_diag_set(d, FV_EINVAL, "fv_schema_open: invalid arguments");
    if ((r = fv_schema_check_closed(closed, "schema", d)) < 0)
        return r;
    if ((r = schema_tree(closed, &root)) < 0)
        return fv_diag_set(d, r, "schema open: out of memory");
    jcols = json_object_get(root, "columns");
    for (size_t i = 0; i < n_cols; i++) {
        long j = fv_schema_column_index(closed, cols[i]);
        if (j < 0) {
            r = fv_diag_set(d, FV_EINVAL, "column '%s' is not in the schema",
                            fv__msg_str(b1, sizeof b1, cols[i]));
            goto out;
        }
        fv_col_type_t t = fv_schema_column_type(closed, (size_t)j);
        if (t != FV_COL_NUMERIC && t != FV_COL_CATEGORICAL) {
            r = fv_diag_set(d, FV_EINVAL,
                            "column '%s' is %s; expected a numeric or categorical column "
                            "(only features can be open)",
                            fv__msg_str(b1, sizeof b1, cols[i]),
                            t == FV_COL_TARGET ? "the target" : "ignored");
            goto out;
        }
    }
    for (size_t j = 0; j < fv_schema_n_columns(closed); j++) {
        fv_col_type_t t = fv_schema_column_type(closed, j);
        bool named = false;
        for (size_t i = 0; i < n_cols && !named; i++)
            named = strcmp(cols[i], fv_schema_column_name(closed, j)) == 0;
        json_t *c = json_array_get(jcols, j);
        if (t == FV_COL_CATEGORICAL && (named || all_categorical)) {
            if (json_object_set_new(c, "categories", json_string("open")) != 0)
                goto nomem;
            n_opened++;
        } else if (t == FV_COL_NUMERIC && named) {
            /* numeric or categorical, decided by the banks' vocabularies */
            if (json_object_set_new(c, "type", json_string("open")) != 0)
                goto nomem;
            json_object_del(c, "categories");
            n_opened++;
        }
    }
    if (n_opened == 0) {
        r = fv_diag_set(d, FV_EINVAL,
                        "no column to open (the schema has no categorical column and none "
                        "was named)");
        goto out;
    }
    /* values an agent suppressed must land somewhere (fv_schema.h) */
    if (json_object_set_new(root, "unknown_category", json_string("other")) != 0)
        goto nomem;
    r = tree_schema(root, "opened schema", ret, d);
    goto out;
nomem:
    r = fv_diag_set(d, FV_ENOMEM, "schema open: out of memory");
out:
    json_decref(root);
    return r;
}
