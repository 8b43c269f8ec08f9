/* schema.c - the shared dataset schema: inference from a CSV, canonical JSON, strict load.
 *
 * Purpose: every bank of a federation must turn rows into the same feature vector, so
 * the schema fixes column order, types, category vocabularies and class labels once,
 * and is shipped as JSON. Two banks holding equal schemas get byte-equal JSON.
 *
 * Invariants of a fv_schema_t (established by infer and from_json, relied on by
 * dataset.c and preproc.c):
 *   - 1 <= n_cols <= FV_SCHEMA_MAX_COLUMNS, column names unique, valid UTF-8;
 *   - exactly one column has type TARGET and s->target is its index;
 *   - every categorical column's vocabulary is sorted by byte order (strcmp), without
 *     duplicates, without "" or "NA" (those mean "missing" and could never be decoded),
 *     at most FV_SCHEMA_MAX_CATEGORIES entries; other columns have no vocabulary;
 *   - classes: sorted, unique, >= 2 labels (one label cannot train anything), no
 *     missing markers; positive is an index into classes or -1 (multi-class);
 *   - by_name is a permutation of column indices sorted by name, for binary search;
 *   - open columns (fv_schema.h): a categorical column with open set, or a column of
 *     type OPEN (open set too), have no vocabulary; a schema with any open column has
 *     unknown OTHER (from_json refuses "error" there and fills it in when absent).
 *     Only from_json makes open schemas; schema_open.c reads them through the public
 *     accessors and builds closed ones through from_json, so every invariant above is
 *     checked in one place.
 * A schema is immutable after construction, so it can be shared between threads.
 *
 * Inference reads the CSV once (a small canonical integer is known to be a number without
 * parsing it; see struct strset for the vocabulary's fast paths; for fv_dataset_infer_load
 * it can keep the rows decoded, see "rows kept" below). A column is numeric if
 * every non-missing cell is a finite number in the grammar below; a column whose cells are all
 * missing is numeric (vacuously; it imputes to 0). Because a column may turn out not to be numeric
 * only at its last row, the distinct values of every analysed column are kept in a hash set while
 * reading. A set that grows past FV_SCHEMA_MAX_CATEGORIES while its column still looks numeric is
 * dropped (a numeric column needs no vocabulary, and if the column later proves categorical it has
 * too many categories anyway); so memory stays bounded by the caps, not by the number of rows.
 *
 * Numbers (identical rule in dataset.c, which decodes what this file infers):
 *   [+-]? ( digits [ '.' digits* ] | '.' digits ) [ [eE] [+-]? digits ]
 * valued as strtod_l in the "C" locale values it (so a caller's setlocale() cannot turn
 * "1.5" into 1; text.c computes most numbers without strtod, to the same bits). No surrounding
 * spaces, no hex, no "inf"/"nan": those are text. A number that overflows a double ("1e999") is not
 * finite, so its column is inferred categorical.
 *
 * Values that reach a JSON string must be UTF-8 (jansson refuses anything else), so
 * inference rejects a non-UTF-8 column name, category or label with its position.
 *
 * JSON: see fv_schema.h for the form. to_json writes keys in a fixed order, compact
 * separators, categories and classes sorted, so equal schemas give equal bytes.
 * from_json is strict: every key required, no unknown or duplicate keys, exact types,
 * and every violated rule named by its JSON path ("columns[3].categories").
 */
#define _GNU_SOURCE /* strtod_l */

#include "fv_schema.h"

#include <errno.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fv_csv.h"
#include "fv_file.h"
#include "model-int.h"

/* Same cap as a schema section of a model file (FV_MODEL_MAX_JSON_BYTES). */
#define SCHEMA_MAX_JSON_BYTES ((size_t)16 << 20)
#define SCHEMA_VERSION 1
/* Longest quoted name or value in a message, in bytes. */
#define MSG_BUF FV__MSG_BUF

struct schema_col {
    char *name;
    fv_col_type_t type;
    char **cats; /* sorted; NULL unless categorical */
    size_t n_cats;
    bool open; /* "categories": "open", or type OPEN */
};

struct fv_schema {
    size_t n_cols;
    struct schema_col *cols;
    size_t *by_name; /* column indices sorted by name */
    size_t target;
    char **classes; /* sorted */
    size_t n_classes;
    long positive; /* index into classes, -1 = multi-class */
    fv_unknown_policy_t unknown;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_strs(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Binary search in a sorted vocabulary. */
static long vocab_find(char *const *v, size_t n, const char *s)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v[mid], s);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* "'a', 'b', 'c', ... (35 in all)" into out. */
static void list_vocab(char *out, size_t len, char *const *v, size_t n)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && i < 4; i++) {
        char b[MSG_BUF];
        int k = snprintf(out + o, len - o, "%s'%s'", i ? ", " : "", fv__msg_str(b, sizeof b, v[i]));
        if (k < 0 || (size_t)k >= len - o)
            return;
        o += (size_t)k;
    }
    if (n > 4)
        snprintf(out + o, len - o, ", ... (%zu in all)", n);
}

/* ---- construction ----------------------------------------------------------------- */

void fv_schema_free(fv_schema_t *s)
{
    if (s == NULL)
        return;
    if (s->cols != NULL) {
        for (size_t i = 0; i < s->n_cols; i++) {
            free(s->cols[i].name);
            free_strs(s->cols[i].cats, s->cols[i].n_cats);
        }
    }
    free(s->cols);
    free(s->by_name);
    free_strs(s->classes, s->n_classes);
    free(s);
}

static fv_schema_t *schema_alloc(size_t n_cols)
{
    fv_schema_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->cols = calloc(n_cols, sizeof *s->cols);
    s->by_name = calloc(n_cols, sizeof *s->by_name);
    if (s->cols == NULL || s->by_name == NULL) {
        fv_schema_free(s);
        return NULL;
    }
    s->n_cols = n_cols;
    s->positive = -1;
    return s;
}

struct name_idx {
    const char *name;
    size_t idx;
};

static int cmp_name_idx(const void *a, const void *b)
{
    const struct name_idx *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Fills by_name (column indices sorted by name, ties by index). If two columns share a
 * name, stores the earliest duplicate pair (first < second, smallest second) and returns
 * 1; 0 if all names differ; FV_ENOMEM. */
static int schema_index_names(fv_schema_t *s, size_t *ret_first, size_t *ret_second)
{
    size_t n = s->n_cols;
    struct name_idx *v = malloc((n ? n : 1) * sizeof *v);
    int dup = 0;
    if (v == NULL)
        return FV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        v[i].name = s->cols[i].name;
        v[i].idx = i;
    }
    qsort(v, n, sizeof *v, cmp_name_idx);
    for (size_t i = 0; i < n; i++) {
        s->by_name[i] = v[i].idx;
        if (i > 0 && strcmp(v[i - 1].name, v[i].name) == 0 && (!dup || v[i].idx < *ret_second)) {
            *ret_first = v[i - 1].idx;
            *ret_second = v[i].idx;
            dup = 1;
        }
    }
    free(v);
    return dup;
}

/* ---- inference -------------------------------------------------------------------- */

/* Set of distinct strings, for the vocabulary of every analysed column. Rows are the
 * bank's own data, so a hash-flooding adversary is not in the threat model here; the cap
 * still bounds it. Two open-addressing tables, one count: strings of 1..8 bytes (nearly
 * every cell of a real file: numbers, codes, short labels) are kept as their bytes
 * zero-padded into a uint64_t key (a string holds no NUL, so the key is one-to-one, and
 * never 0, the empty slot), found by one multiply and integer compares, no allocation;
 * longer strings are strdup'd, hashed with FNV-1a and compared with strcmp. Inference
 * adds every cell of a column while it still looks numeric, so this is on the hot path,
 * and with hundreds of columns the tables outgrow the cache: a probe is a cache miss. So
 * the commonest cells of all, small integers written the canonical way ("0" to "1023",
 * no sign, no leading zero: pixels, counts, ages, codes, class labels), are a bit in a
 * 128-byte bitmap per column. The three parts never hold the same string (which part a
 * string goes to depends on the string alone), so n is their sum. */
#define SMALL_INTS 1024

struct strset {
    char **slots;
    size_t cap; /* power of two, or 0 */
    size_t n_long;
    uint64_t *keys;
    size_t kcap;     /* power of two, or 0 */
    unsigned kshift; /* 64 - log2(kcap) */
    size_t n_short;
    uint64_t small[SMALL_INTS / 64]; /* bit v: the string "v" (canonical decimal) is in */
    size_t n_small;
    size_t n; /* n_long + n_short + n_small */
};

/* FNV-1a of a NUL-terminated string (model-int.h): the vocabulary sets' hash here and
 * in schema_open.c. */
uint64_t fv__str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static void strset_free(struct strset *st)
{
    if (st->slots != NULL)
        for (size_t i = 0; i < st->cap; i++)
            free(st->slots[i]);
    free(st->slots);
    free(st->keys);
    memset(st, 0, sizeof *st);
}

/* s (1..8 bytes) as a key; false for "" or a longer string. */
static bool short_key(const char *s, uint64_t *ret)
{
    uint64_t k = 0;
    size_t i;
    for (i = 0; i < 8 && s[i] != '\0'; i++)
        k |= (uint64_t)(unsigned char)s[i] << (8 * i);
    if (i == 0 || (i == 8 && s[8] != '\0'))
        return false;
    *ret = k;
    return true;
}

static size_t key_slot(uint64_t k, unsigned shift)
{
    return (size_t)((k * 0x9E3779B97F4A7C15ULL) >> shift);
}

/* 1: inserted, 0: already there, FV_ENOMEM. */
static int strset_add_short(struct strset *st, uint64_t k)
{
    size_t i, mask;
    if ((st->n_short + 1) * 2 > st->kcap) {
        size_t ncap = st->kcap ? st->kcap * 2 : 16;
        unsigned nshift = st->kcap ? st->kshift - 1 : 60;
        uint64_t *nk = calloc(ncap, sizeof *nk);
        if (nk == NULL)
            return FV_ENOMEM;
        for (size_t q = 0; q < st->kcap; q++) {
            if (st->keys[q] == 0)
                continue;
            size_t j = key_slot(st->keys[q], nshift);
            while (nk[j] != 0)
                j = (j + 1) & (ncap - 1);
            nk[j] = st->keys[q];
        }
        free(st->keys);
        st->keys = nk;
        st->kcap = ncap;
        st->kshift = nshift;
    }
    mask = st->kcap - 1;
    for (i = key_slot(k, st->kshift); st->keys[i] != 0; i = (i + 1) & mask)
        if (st->keys[i] == k)
            return 0;
    st->keys[i] = k;
    st->n_short++;
    st->n++;
    return 1;
}

/* The value of s if it is "0" or a decimal without sign or leading zero under
 * SMALL_INTS, else -1. */
static int small_int(const char *s)
{
    int v = 0;
    if (s[0] == '0')
        return s[1] == '\0' ? 0 : -1;
    for (int i = 0; i < 4; i++) {
        if (s[i] == '\0')
            return i > 0 && v < SMALL_INTS ? v : -1;
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return s[4] == '\0' && v < SMALL_INTS ? v : -1;
}

/* Adds the string "v", v = small_int(it) >= 0. 1: inserted, 0: already there. */
static int strset_add_small(struct strset *st, int v)
{
    uint64_t bit = (uint64_t)1 << (v & 63);
    if (st->small[v >> 6] & bit)
        return 0;
    st->small[v >> 6] |= bit;
    st->n_small++;
    st->n++;
    return 1;
}

/* 1: inserted, 0: already there, FV_ENOMEM. */
static int strset_add(struct strset *st, const char *s)
{
    uint64_t h, k;
    size_t i;
    int v = small_int(s);
    if (v >= 0)
        return strset_add_small(st, v);
    if (short_key(s, &k))
        return strset_add_short(st, k);
    h = fv__str_hash(s);
    if ((st->n_long + 1) * 2 > st->cap) {
        size_t ncap = st->cap ? st->cap * 2 : 16;
        char **ns = calloc(ncap, sizeof *ns);
        if (ns == NULL)
            return FV_ENOMEM;
        for (size_t q = 0; q < st->cap; q++) {
            if (st->slots[q] == NULL)
                continue;
            size_t j = (size_t)fv__str_hash(st->slots[q]) & (ncap - 1);
            while (ns[j] != NULL)
                j = (j + 1) & (ncap - 1);
            ns[j] = st->slots[q];
        }
        free(st->slots);
        st->slots = ns;
        st->cap = ncap;
    }
    for (i = (size_t)h & (st->cap - 1); st->slots[i] != NULL; i = (i + 1) & (st->cap - 1))
        if (strcmp(st->slots[i], s) == 0)
            return 0;
    st->slots[i] = strdup(s);
    if (st->slots[i] == NULL)
        return FV_ENOMEM;
    st->n_long++;
    st->n++;
    return 1;
}

/* Moves the set's strings into a sorted array (the set is left empty). */
static int strset_take_sorted(struct strset *st, char ***ret, size_t *ret_n)
{
    char **v = malloc((st->n ? st->n : 1) * sizeof *v);
    size_t k = 0;
    if (v == NULL)
        return FV_ENOMEM;
    for (size_t i = 0; i < st->cap; i++)
        if (st->slots[i] != NULL) {
            v[k++] = st->slots[i];
            st->slots[i] = NULL;
        }
    for (size_t i = 0; i < st->kcap; i++) {
        char b[9];
        if (st->keys[i] == 0)
            continue;
        for (size_t q = 0; q < 8; q++)
            b[q] = (char)(st->keys[i] >> (8 * q));
        b[8] = '\0';
        v[k] = strdup(b);
        if (v[k] == NULL) {
            while (k > 0)
                free(v[--k]);
            free(v);
            strset_free(st);
            return FV_ENOMEM;
        }
        k++;
    }
    for (int x = 0; x < SMALL_INTS; x++) {
        char b[8];
        if (!(st->small[x >> 6] & ((uint64_t)1 << (x & 63))))
            continue;
        snprintf(b, sizeof b, "%d", x);
        v[k] = strdup(b);
        if (v[k] == NULL) {
            while (k > 0)
                free(v[--k]);
            free(v);
            strset_free(st);
            return FV_ENOMEM;
        }
        k++;
    }
    qsort(v, k, sizeof *v, cmp_str);
    strset_free(st);
    *ret = v;
    *ret_n = k;
    return 0;
}

/* ---- the rows kept by inference (fv__schema_infer_keep) ---------------------------- *
 * While every column but the target and the dropped ones still looks numeric, each row
 * is decoded into a dataset as fv_dataset_load would decode it against the schema being
 * inferred (dataset.c's top note): a numeric cell is the number inference parsed anyway
 * (a small canonical integer's value, or fv__parse_number's, the parser loading uses:
 * the same double, test_dataset checks it), a missing, ignored or target cell NaN. A
 * row's label is a provisional id (the label's rank of first appearance) until the
 * classes are sorted, then becomes fv_schema_class_of's index, as loading would give.
 * The first column to turn out categorical drops what was kept (its cells would be
 * category indices, unknown until the vocabulary is complete), and so does running out
 * of memory: the caller then loads the file in a second pass, as before. */

struct keep {
    fv_dataset_t *ds; /* NULL: not keeping (never asked, or dropped) */
    size_t cap_rows;
    char **label;    /* label strings by provisional id */
    size_t n_labels; /* <= FV_SCHEMA_MAX_CATEGORIES + 1 */
    size_t label_cap;
    uint32_t *slot;  /* open addressing: provisional id + 1, 0 = empty */
    size_t slot_cap; /* power of two, >= 2 * n_labels */
};

static void keep_drop(struct keep *k)
{
    fv_dataset_free(k->ds);
    free_strs(k->label, k->n_labels);
    free(k->slot);
    memset(k, 0, sizeof *k);
}

/* The provisional id of a target label (added when new), or -1: out of memory. */
static int32_t keep_label_id(struct keep *k, const char *s)
{
    size_t i, mask;
    if ((k->n_labels + 1) * 2 > k->slot_cap) {
        size_t ncap = k->slot_cap ? k->slot_cap * 2 : 64;
        uint32_t *ns = calloc(ncap, sizeof *ns);
        if (ns == NULL)
            return -1;
        for (size_t q = 0; q < k->n_labels; q++) {
            size_t j = (size_t)fv__str_hash(k->label[q]) & (ncap - 1);
            while (ns[j] != 0)
                j = (j + 1) & (ncap - 1);
            ns[j] = (uint32_t)q + 1;
        }
        free(k->slot);
        k->slot = ns;
        k->slot_cap = ncap;
    }
    mask = k->slot_cap - 1;
    for (i = (size_t)fv__str_hash(s) & mask; k->slot[i] != 0; i = (i + 1) & mask)
        if (strcmp(k->label[k->slot[i] - 1], s) == 0)
            return (int32_t)(k->slot[i] - 1);
    if (k->n_labels == k->label_cap) {
        size_t ncap = k->label_cap ? k->label_cap * 2 : 16;
        char **nl = realloc(k->label, ncap * sizeof *nl);
        if (nl == NULL)
            return -1;
        k->label = nl;
        k->label_cap = ncap;
    }
    k->label[k->n_labels] = strdup(s);
    if (k->label[k->n_labels] == NULL)
        return -1;
    k->slot[i] = (uint32_t)k->n_labels + 1;
    return (int32_t)k->n_labels++;
}

/* Provisional ids -> class indices (fv_schema_class_of on the finished schema). False
 * (nothing changed) if a label has no class, which inference rules out. */
static bool keep_finish(struct keep *k, const fv_schema_t *s)
{
    int32_t *map = malloc((k->n_labels ? k->n_labels : 1) * sizeof *map);
    fv_dataset_t *ds = k->ds;
    if (map == NULL)
        return false;
    for (size_t q = 0; q < k->n_labels; q++) {
        long c = fv_schema_class_of(s, k->label[q]);
        if (c < 0 || c > INT32_MAX) {
            free(map);
            return false;
        }
        map[q] = (int32_t)c;
    }
    for (size_t i = 0; i < ds->n_rows; i++)
        ds->label[i] = map[ds->label[i]];
    free(map);
    ds->schema = s;
    return true;
}

struct infer_col {
    bool numeric;  /* every non-missing value so far is a finite number */
    bool overflow; /* set dropped: more than FV_SCHEMA_MAX_CATEGORIES distinct values */
    struct strset set;
};

static bool is_dropped(const fv_schema_infer_opts_t *o, const char *name)
{
    for (size_t i = 0; i < o->n_drop; i++)
        if (o->drop[i] != NULL && strcmp(o->drop[i], name) == 0)
            return true;
    return false;
}

/* ret_ds NULL: inference only; else the rows kept (struct keep), or NULL in *ret_ds. */
static int schema_infer_csv(fv_csv_t *c, const fv_schema_infer_opts_t *o, fv_schema_t **ret,
                            fv_dataset_t **ret_ds, fv_diag_t *d)
{
    const char *fn = fv_csv_name(c);
    fv_csv_record_t rec;
    fv_schema_t *s = NULL;
    struct keep kp = {0};
    double *scratch = NULL; /* the row's cells go here when no row is kept */
    struct infer_col *ic = NULL;
    locale_t loc = (locale_t)0;
    size_t n = 0, n_rows = 0, last_line = 1;
    char b1[MSG_BUF], b2[MSG_BUF], lst[300];
    int r;

    r = fv_csv_next(c, &rec, d);
    if (r < 0)
        goto out;
    if (r == 0) {
        r = fv_diag_set(d, FV_EEMPTY,
                        "%s:1:1: empty file; expected a header line naming the columns, then "
                        "data rows",
                        fn);
        goto out;
    }
    n = rec.n_fields;
    if (n > FV_SCHEMA_MAX_COLUMNS) {
        r = fv_diag_set(d, FV_ETOOBIG,
                        "%s:%zu: header has %zu columns; expected at most %d columns", fn, rec.line,
                        n, FV_SCHEMA_MAX_COLUMNS);
        goto out;
    }
    last_line = rec.line;
    s = schema_alloc(n);
    ic = calloc(n, sizeof *ic);
    scratch = malloc(n * sizeof *scratch);
    loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (s == NULL || ic == NULL || scratch == NULL || loc == (locale_t)0) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory inferring the schema", fn);
        goto out;
    }
    s->unknown = o->unknown == FV_UNKNOWN_OTHER ? FV_UNKNOWN_OTHER : FV_UNKNOWN_ERROR;
    for (size_t j = 0; j < n; j++) {
        if (!fv__utf8_valid(rec.fields[j])) {
            r = fv_diag_set(d, FV_EPARSE,
                            "%s:%zu:%zu: column name '%s' is not valid UTF-8; expected UTF-8 "
                            "text (convert the file, e.g. iconv -f latin1 -t utf-8)",
                            fn, rec.line, j + 1, fv__msg_str(b1, sizeof b1, rec.fields[j]));
            goto out;
        }
        s->cols[j].name = strdup(rec.fields[j]);
        if (s->cols[j].name == NULL) {
            r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", fn);
            goto out;
        }
    }
    {
        size_t a = 0, b = 0;
        int dup = schema_index_names(s, &a, &b);
        if (dup < 0) {
            r = fv_diag_set(d, dup, "%s: out of memory", fn);
            goto out;
        }
        if (dup) {
            r = fv_diag_set(d, FV_ESCHEMA,
                            "%s:%zu:%zu: column '%s': duplicate header name (also column "
                            "%zu); expected unique column names",
                            fn, rec.line, b + 1, fv__msg_str(b1, sizeof b1, s->cols[b].name),
                            a + 1);
            goto out;
        }
    }
    {
        long t = fv_schema_column_index(s, o->target);
        if (t < 0) {
            r = fv_diag_set(d, FV_ESCHEMA,
                            "%s:%zu: target column '%s' is not in the header; expected one "
                            "of the %zu header names",
                            fn, rec.line, fv__msg_str(b1, sizeof b1, o->target), n);
            goto out;
        }
        s->target = (size_t)t;
    }
    for (size_t k = 0; k < o->n_drop; k++) {
        long j = o->drop[k] != NULL ? fv_schema_column_index(s, o->drop[k]) : -1;
        if (j < 0) {
            r = fv_diag_set(d, FV_ESCHEMA,
                            "%s:%zu: drop column '%s' is not in the header; expected one of "
                            "the %zu header names",
                            fn, rec.line, fv__msg_str(b1, sizeof b1, o->drop[k]), n);
            goto out;
        }
        if ((size_t)j == s->target) {
            r = fv_diag_set(d, FV_EINVAL,
                            "%s:%zu:%ld: column '%s': the target cannot be dropped; expected "
                            "drop columns other than the target",
                            fn, rec.line, j + 1, fv__msg_str(b1, sizeof b1, o->drop[k]));
            goto out;
        }
    }
    for (size_t j = 0; j < n; j++) {
        if (j == s->target)
            s->cols[j].type = FV_COL_TARGET;
        else if (is_dropped(o, s->cols[j].name))
            s->cols[j].type = FV_COL_IGNORED;
        else
            s->cols[j].type = FV_COL_NUMERIC; /* until a non-number shows up */
        ic[j].numeric = s->cols[j].type == FV_COL_NUMERIC;
    }
    if (ret_ds != NULL) {
        kp.ds = calloc(1, sizeof *kp.ds);
        if (kp.ds != NULL)
            kp.ds->n_cols = n;
    }

    while ((r = fv_csv_next(c, &rec, d)) == 1) {
        double *row = scratch; /* the kept row while keeping */
        last_line = rec.line;
        if (rec.n_fields != n) {
            size_t col = rec.n_fields > n ? n + 1 : rec.n_fields + 1;
            if (rec.n_fields > n)
                r = fv_diag_set(d, FV_EPARSE,
                                "%s:%zu:%zu: row has %zu fields, the header has %zu; expected "
                                "%zu fields (an unquoted comma in a value?)",
                                fn, rec.line, col, rec.n_fields, n, n);
            else
                r = fv_diag_set(d, FV_EPARSE,
                                "%s:%zu:%zu: column '%s': row has %zu fields, the header has "
                                "%zu; expected %zu fields (a missing comma?)",
                                fn, rec.line, col,
                                fv__msg_str(b1, sizeof b1, s->cols[col - 1].name), rec.n_fields, n,
                                n);
            goto out;
        }
        n_rows++;
        if (kp.ds != NULL) {
            if (kp.ds->n_rows == kp.cap_rows && fv__dataset_grow(kp.ds, &kp.cap_rows, c) < 0)
                keep_drop(&kp); /* the second pass will say whether memory is short */
            else
                row = kp.ds->cells + kp.ds->n_rows * n;
        }
        for (size_t j = 0; j < n; j++) {
            const char *cell = rec.fields[j];
            fv_col_type_t ty = s->cols[j].type;
            double v = NAN;
            int si = -1;
            if (ty == FV_COL_IGNORED) {
                row[j] = NAN;
                continue;
            }
            if (cell[0] == '\0' || (cell[0] == 'N' && cell[1] == 'A' && cell[2] == '\0')) {
                /* fv_schema_is_missing, inlined: this loop sees every cell */
                if (ty == FV_COL_TARGET) {
                    r = fv_diag_set(d, FV_ESCHEMA,
                                    "%s:%zu:%zu: column '%s': missing target label (empty or "
                                    "NA); expected a class label in every row",
                                    fn, rec.line, j + 1,
                                    fv__msg_str(b1, sizeof b1, s->cols[j].name));
                    goto out;
                }
                row[j] = NAN;
                continue;
            }
            /* a small canonical integer is a number: no need to parse it */
            if (ic[j].numeric) {
                si = small_int(cell);
                if (si >= 0) {
                    v = (double)si;
                } else if (fv__parse_number(cell, loc, &v) != FV__NUM_OK) {
                    ic[j].numeric = false; /* categorical: no row can be kept */
                    keep_drop(&kp);
                    row = scratch;
                }
                row[j] = v;
            } else if (ty == FV_COL_TARGET) {
                int32_t id = kp.ds != NULL ? keep_label_id(&kp, cell) : -1;
                if (id >= 0) {
                    kp.ds->label[kp.ds->n_rows] = id;
                } else if (kp.ds != NULL) { /* out of memory for the label */
                    keep_drop(&kp);
                    row = scratch;
                }
                row[j] = NAN;
            }
            if (ic[j].overflow && ic[j].numeric)
                continue; /* still numeric: no vocabulary needed */
            if (!ic[j].numeric && !fv__utf8_valid(cell)) {
                r = fv_diag_set(d, FV_EPARSE,
                                "%s:%zu:%zu: column '%s': value \"%s\" is not valid UTF-8; "
                                "expected UTF-8 text (convert the file, e.g. iconv -f latin1 "
                                "-t utf-8)",
                                fn, rec.line, j + 1, fv__msg_str(b1, sizeof b1, s->cols[j].name),
                                fv__msg_str(b2, sizeof b2, cell));
                goto out;
            }
            if (!ic[j].overflow) {
                r = si >= 0 ? strset_add_small(&ic[j].set, si) : strset_add(&ic[j].set, cell);
                if (r < 0) {
                    fv_diag_set(d, r, "%s:%zu: out of memory", fn, rec.line);
                    goto out;
                }
                if (ic[j].set.n > FV_SCHEMA_MAX_CATEGORIES) {
                    strset_free(&ic[j].set);
                    ic[j].overflow = true;
                }
            }
            /* A dropped set belongs to a column that looked numeric; once it is not, it
             * has more categories than the cap. */
            if (ic[j].overflow && !ic[j].numeric) {
                r = fv_diag_set(d, FV_ETOOBIG,
                                "%s:%zu:%zu: column '%s': more than %d distinct %s; expected "
                                "at most %d (drop the column or clean its values)",
                                fn, rec.line, j + 1, fv__msg_str(b1, sizeof b1, s->cols[j].name),
                                FV_SCHEMA_MAX_CATEGORIES,
                                ty == FV_COL_TARGET ? "labels" : "categories",
                                FV_SCHEMA_MAX_CATEGORIES);
                goto out;
            }
        }
        if (kp.ds != NULL) {
            kp.ds->line[kp.ds->n_rows] = rec.line > UINT32_MAX ? UINT32_MAX : (uint32_t)rec.line;
            kp.ds->n_rows++;
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

    for (size_t j = 0; j < n; j++) {
        struct schema_col *col = &s->cols[j];
        if (col->type == FV_COL_TARGET) {
            r = strset_take_sorted(&ic[j].set, &s->classes, &s->n_classes);
        } else if (col->type == FV_COL_NUMERIC && !ic[j].numeric) {
            col->type = FV_COL_CATEGORICAL;
            r = strset_take_sorted(&ic[j].set, &col->cats, &col->n_cats);
        } else {
            strset_free(&ic[j].set);
        }
        if (r < 0) {
            fv_diag_set(d, r, "%s: out of memory", fn);
            goto out;
        }
    }
    if (o->positive != NULL) {
        s->positive = vocab_find(s->classes, s->n_classes, o->positive);
        if (s->positive < 0) {
            list_vocab(lst, sizeof lst, s->classes, s->n_classes);
            r = fv_diag_set(d, FV_ESCHEMA,
                            "%s: column '%s': positive label '%s' never appears in the target "
                            "column; expected one of %s",
                            fn, fv__msg_str(b1, sizeof b1, s->cols[s->target].name),
                            fv__msg_str(b2, sizeof b2, o->positive), lst);
            goto out;
        }
    }
    if (s->n_classes < 2) {
        r = fv_diag_set(d, FV_ESCHEMA,
                        "%s: column '%s': the target has a single label '%s'; expected at "
                        "least two labels",
                        fn, fv__msg_str(b1, sizeof b1, s->cols[s->target].name),
                        fv__msg_str(b2, sizeof b2, s->classes[0]));
        goto out;
    }
    if (kp.ds != NULL && !keep_finish(&kp, s))
        keep_drop(&kp);
    if (ret_ds != NULL) {
        *ret_ds = kp.ds;
        kp.ds = NULL;
    }
    *ret = s;
    s = NULL;
    r = 0;
out:
    keep_drop(&kp);
    free(scratch);
    if (ic != NULL)
        for (size_t j = 0; j < n; j++)
            strset_free(&ic[j].set);
    free(ic);
    if (loc != (locale_t)0)
        freelocale(loc);
    fv_schema_free(s);
    return r;
}

static int infer_check_opts(const fv_schema_infer_opts_t *o, fv_diag_t *d)
{
    if (o == NULL || o->target == NULL)
        return fv_diag_set(d, FV_EINVAL, "schema inference: a target column name is required");
    if (o->n_drop > 0 && o->drop == NULL)
        return fv_diag_set(d, FV_EINVAL, "schema inference: n_drop > 0 but drop is NULL");
    return 0;
}

int fv_schema_infer(const char *csv_path, const fv_schema_infer_opts_t *opts, fv_schema_t **ret,
                    fv_diag_t *d)
{
    fv_csv_t *c = NULL;
    int r = infer_check_opts(opts, d);
    if (r < 0 || ret == NULL)
        return r < 0 ? r : fv_diag_set(d, FV_EINVAL, "fv_schema_infer: ret is required");
    r = fv_csv_open(csv_path, 0, &c, d);
    if (r < 0)
        return r;
    r = schema_infer_csv(c, opts, ret, NULL, d);
    fv_csv_free(c);
    return r;
}

int fv__schema_infer_keep(fv_csv_t *c, const fv_schema_infer_opts_t *opts, fv_schema_t **ret,
                          fv_dataset_t **ret_ds, fv_diag_t *d)
{
    int r = infer_check_opts(opts, d);
    if (r < 0 || c == NULL || ret == NULL || ret_ds == NULL)
        return r < 0 ? r
                     : fv_diag_set(d, FV_EINVAL,
                                   "fv__schema_infer_keep: c, ret and ret_ds are required");
    *ret_ds = NULL;
    return schema_infer_csv(c, opts, ret, ret_ds, d);
}

int fv_schema_infer_mem(const char *name, const char *buf, size_t len,
                        const fv_schema_infer_opts_t *opts, fv_schema_t **ret, fv_diag_t *d)
{
    fv_csv_t *c = NULL;
    int r = infer_check_opts(opts, d);
    if (r < 0 || ret == NULL)
        return r < 0 ? r : fv_diag_set(d, FV_EINVAL, "fv_schema_infer_mem: ret is required");
    r = fv_csv_open_mem(name, buf, len, &c, d);
    if (r < 0)
        return r;
    r = schema_infer_csv(c, opts, ret, NULL, d);
    fv_csv_free(c);
    return r;
}

/* ---- JSON ------------------------------------------------------------------------- */

static const char *const type_names[] = {"numeric", "categorical", "ignored", "target", "open"};
#define N_TYPE_NAMES (sizeof type_names / sizeof type_names[0])

static json_t *str_array(char *const *v, size_t n)
{
    json_t *a = json_array();
    if (a == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(a, json_string(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

int fv_schema_to_json(const fv_schema_t *s, char **ret_json, size_t *ret_len)
{
    json_t *root = NULL, *cols = NULL;
    char *out = NULL;
    size_t len;
    int r = FV_ENOMEM;

    if (s == NULL || ret_json == NULL)
        return FV_EINVAL;
    /* json_object_set_new steals its value even on failure, and jansson builds objects
     * in insertion order, which is the canonical key order. */
    root = json_object();
    cols = json_array();
    if (root == NULL || cols == NULL)
        goto out;
    if (json_object_set_new(root, "fedvault_schema", json_integer(SCHEMA_VERSION)) != 0 ||
        json_object_set_new(root, "target", json_string(s->cols[s->target].name)) != 0 ||
        json_object_set_new(root, "positive",
                            s->positive >= 0 ? json_string(s->classes[s->positive])
                                             : json_null()) != 0 ||
        json_object_set_new(root, "classes", str_array(s->classes, s->n_classes)) != 0 ||
        json_object_set_new(root, "unknown_category",
                            json_string(s->unknown == FV_UNKNOWN_OTHER ? "other" : "error")) != 0)
        goto out;
    for (size_t j = 0; j < s->n_cols; j++) {
        const struct schema_col *c = &s->cols[j];
        json_t *o = json_object();
        if (o == NULL || json_array_append_new(cols, o) != 0)
            goto out;
        if (json_object_set_new(o, "name", json_string(c->name)) != 0 ||
            json_object_set_new(o, "type", json_string(type_names[c->type])) != 0)
            goto out;
        if (c->type == FV_COL_CATEGORICAL &&
            json_object_set_new(o, "categories",
                                c->open ? json_string("open") : str_array(c->cats, c->n_cats)) != 0)
            goto out;
    }
    if (json_object_set_new(root, "columns", cols) != 0) {
        cols = NULL;
        goto out;
    }
    cols = NULL;
    /* Dumped into our own malloc'd buffer, so the caller can free() it whatever
     * allocator jansson was given. */
    len = json_dumpb(root, NULL, 0, JSON_COMPACT);
    if (len == 0)
        goto out;
    out = malloc(len + 1);
    if (out == NULL || json_dumpb(root, out, len, JSON_COMPACT) != len) {
        free(out);
        goto out;
    }
    out[len] = '\0';
    *ret_json = out;
    if (ret_len != NULL)
        *ret_len = len;
    r = 0;
out:
    json_decref(cols);
    json_decref(root);
    return r;
}

/* Message helper: "NAME: PATH: what; expected WHAT". */
#define JFAIL(err, ...)                                                                            \
    do {                                                                                           \
        r = fv_diag_set(d, (err), __VA_ARGS__);                                                    \
        goto out;                                                                                  \
    } while (0)

/* Rejects keys of obj not in allowed[]; path names obj in the message. */
static int check_keys(const char *fn, const char *path, json_t *obj, const char *const *allowed,
                      size_t n_allowed, const char *expect, fv_diag_t *d)
{
    const char *key;
    json_t *v;
    char b[MSG_BUF];
    json_object_foreach(obj, key, v)
    {
        size_t i;
        for (i = 0; i < n_allowed; i++)
            if (strcmp(key, allowed[i]) == 0)
                break;
        if (i == n_allowed)
            return fv_diag_set(d, FV_EPARSE, "%s: %s%sunknown key '%s'; expected only %s", fn, path,
                               *path ? ": " : "", fv__msg_str(b, sizeof b, key), expect);
    }
    return 0;
}

/* Reads a sorted, unique array of category/label strings at `path`. */
static int read_vocab(const char *fn, const char *path, json_t *a, size_t min_n, char ***ret,
                      size_t *ret_n, fv_diag_t *d)
{
    char **v = NULL;
    size_t n, i = 0;
    char b1[MSG_BUF], b2[MSG_BUF];
    int r;

    if (!json_is_array(a))
        return fv_diag_set(d, FV_EPARSE, "%s: %s: expected an array of strings", fn, path);
    n = json_array_size(a);
    if (n > FV_SCHEMA_MAX_CATEGORIES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: %s: %zu entries; expected at most %d", fn, path, n,
                           FV_SCHEMA_MAX_CATEGORIES);
    if (n < min_n)
        return fv_diag_set(d, FV_EPARSE, "%s: %s: %zu entries; expected at least %zu", fn, path, n,
                           min_n);
    v = calloc(n ? n : 1, sizeof *v);
    if (v == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", fn);
    for (i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i);
        if (!json_is_string(e))
            JFAIL(FV_EPARSE, "%s: %s: expected an array of strings (entry %zu is not a string)", fn,
                  path, i);
        const char *sv = json_string_value(e);
        if (fv_schema_is_missing(sv))
            JFAIL(FV_EPARSE,
                  "%s: %s[%zu]: \"%s\" means a missing value; expected a real category or "
                  "label",
                  fn, path, i, sv);
        if (i > 0) {
            int c = strcmp(v[i - 1], sv);
            if (c == 0)
                JFAIL(FV_EPARSE,
                      "%s: %s[%zu]: '%s' appears twice; expected each value once, sorted by "
                      "byte order",
                      fn, path, i, fv__msg_str(b1, sizeof b1, sv));
            if (c > 0)
                JFAIL(FV_EPARSE,
                      "%s: %s[%zu]: '%s' comes after '%s'; expected values sorted by byte "
                      "order",
                      fn, path, i, fv__msg_str(b1, sizeof b1, sv),
                      fv__msg_str(b2, sizeof b2, v[i - 1]));
        }
        v[i] = strdup(sv);
        if (v[i] == NULL)
            JFAIL(FV_ENOMEM, "%s: out of memory", fn);
    }
    *ret = v;
    *ret_n = n;
    return 0;
out:
    free_strs(v, i);
    return r;
}

static const char *const root_keys[] = {"fedvault_schema", "target",           "positive",
                                        "classes",         "unknown_category", "columns"};
static const char *const col_keys[] = {"name", "type", "categories"};

int fv_schema_from_json(const char *name, const char *json, size_t len, fv_schema_t **ret,
                        fv_diag_t *d)
{
    const char *fn = name != NULL ? name : "<schema>";
    json_t *root = NULL, *v, *cols;
    json_error_t je;
    fv_schema_t *s = NULL;
    size_t n, n_targets = 0, first_target = 0;
    char path[64], b1[MSG_BUF], b2[MSG_BUF];
    const char *target, *positive = NULL;
    fv_unknown_policy_t unknown;
    bool unknown_given, any_open = false;
    size_t first_open = 0;
    int r;

    if (ret == NULL || (json == NULL && len > 0))
        return fv_diag_set(d, FV_EINVAL, "fv_schema_from_json: json and ret are required");
    if (len > SCHEMA_MAX_JSON_BYTES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: %zu bytes; expected a schema of at most %zu bytes",
                           fn, len, SCHEMA_MAX_JSON_BYTES);
    root = json_loadb(json != NULL ? json : "", len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return fv_diag_set(d, FV_EPARSE, "%s:%d:%d: invalid JSON: %s; expected a schema object", fn,
                           je.line, je.column, je.text);
    if (!json_is_object(root))
        JFAIL(FV_EPARSE, "%s: expected a JSON object with key \"fedvault_schema\"", fn);
    r = check_keys(fn, "", root, root_keys, 6,
                   "fedvault_schema, target, positive, classes, unknown_category, columns", d);
    if (r < 0)
        goto out;

    v = json_object_get(root, "fedvault_schema");
    if (v == NULL || !json_is_integer(v))
        JFAIL(FV_EPARSE, "%s: fedvault_schema: %s; expected the integer %d", fn,
              v == NULL ? "missing" : "not an integer", SCHEMA_VERSION);
    if (json_integer_value(v) != SCHEMA_VERSION)
        JFAIL(FV_EVERSION,
              "%s: fedvault_schema: version %" JSON_INTEGER_FORMAT " is not supported; expected %d",
              fn, json_integer_value(v), SCHEMA_VERSION);

    v = json_object_get(root, "target");
    if (!json_is_string(v))
        JFAIL(FV_EPARSE, "%s: target: %s; expected a string naming the target column", fn,
              v == NULL ? "missing" : "wrong type");
    target = json_string_value(v);

    v = json_object_get(root, "positive");
    if (v == NULL || !(json_is_string(v) || json_is_null(v)))
        JFAIL(FV_EPARSE, "%s: positive: %s; expected a string (binary task) or null (multi-class)",
              fn, v == NULL ? "missing" : "wrong type");
    if (json_is_string(v))
        positive = json_string_value(v);

    /* Absent is allowed only in an open schema (checked after the columns). */
    v = json_object_get(root, "unknown_category");
    unknown_given = v != NULL;
    if (v != NULL && (!json_is_string(v) || (strcmp(json_string_value(v), "error") != 0 &&
                                             strcmp(json_string_value(v), "other") != 0)))
        JFAIL(FV_EPARSE, "%s: unknown_category: wrong value; expected \"error\" or \"other\"", fn);
    unknown = v != NULL && strcmp(json_string_value(v), "other") == 0 ? FV_UNKNOWN_OTHER
                                                                      : FV_UNKNOWN_ERROR;

    cols = json_object_get(root, "columns");
    if (!json_is_array(cols))
        JFAIL(FV_EPARSE, "%s: columns: %s; expected an array of column objects", fn,
              cols == NULL ? "missing" : "wrong type");
    n = json_array_size(cols);
    if (n == 0 || n > FV_SCHEMA_MAX_COLUMNS)
        JFAIL(n == 0 ? FV_EPARSE : FV_ETOOBIG, "%s: columns: %zu columns; expected 1 to %d", fn, n,
              FV_SCHEMA_MAX_COLUMNS);
    if (json_object_get(root, "classes") == NULL)
        JFAIL(FV_EPARSE, "%s: classes: missing; expected an array of strings", fn);

    s = schema_alloc(n);
    if (s == NULL)
        JFAIL(FV_ENOMEM, "%s: out of memory", fn);
    s->unknown = unknown;
    r = read_vocab(fn, "classes", json_object_get(root, "classes"), 2, &s->classes, &s->n_classes,
                   d);
    if (r < 0)
        goto out;

    for (size_t j = 0; j < n; j++) {
        json_t *o = json_array_get(cols, j), *nm, *ty, *ca;
        struct schema_col *c = &s->cols[j];
        size_t t;
        snprintf(path, sizeof path, "columns[%zu]", j);
        if (!json_is_object(o))
            JFAIL(FV_EPARSE, "%s: %s: expected an object with name and type", fn, path);
        r = check_keys(fn, path, o, col_keys, 3, "name, type, categories", d);
        if (r < 0)
            goto out;
        nm = json_object_get(o, "name");
        if (!json_is_string(nm))
            JFAIL(FV_EPARSE, "%s: %s.name: %s; expected a string", fn, path,
                  nm == NULL ? "missing" : "wrong type");
        c->name = strdup(json_string_value(nm));
        if (c->name == NULL)
            JFAIL(FV_ENOMEM, "%s: out of memory", fn);
        ty = json_object_get(o, "type");
        for (t = 0; t < N_TYPE_NAMES && json_is_string(ty); t++)
            if (strcmp(json_string_value(ty), type_names[t]) == 0)
                break;
        if (!json_is_string(ty) || t == N_TYPE_NAMES)
            JFAIL(FV_EPARSE,
                  "%s: %s.type: %s; expected \"numeric\", \"categorical\", \"ignored\", "
                  "\"target\" or \"open\"",
                  fn, path, ty == NULL ? "missing" : "wrong value");
        c->type = (fv_col_type_t)t;
        c->open = c->type == FV_COL_OPEN;
        ca = json_object_get(o, "categories");
        if (c->type == FV_COL_CATEGORICAL && json_is_string(ca) &&
            strcmp(json_string_value(ca), "open") == 0) {
            c->open = true; /* discovered later (fv_schema_resolve) */
        } else if (c->type == FV_COL_CATEGORICAL) {
            char cpath[80];
            if (ca == NULL)
                JFAIL(FV_EPARSE,
                      "%s: %s.categories: missing; expected an array of strings or \"open\"", fn,
                      path);
            snprintf(cpath, sizeof cpath, "%s.categories", path);
            r = read_vocab(fn, cpath, ca, 0, &c->cats, &c->n_cats, d);
            if (r < 0)
                goto out;
        } else if (ca != NULL && c->type == FV_COL_OPEN) {
            JFAIL(FV_EPARSE,
                  "%s: %s.categories: present on a column of type \"open\"; expected no "
                  "categories (an open type has open categories)",
                  fn, path);
        } else if (ca != NULL) {
            JFAIL(FV_EPARSE,
                  "%s: %s.categories: present on a %s column; expected categories only on a "
                  "categorical column",
                  fn, path, type_names[t]);
        }
        if (c->open && !any_open) {
            any_open = true;
            first_open = j;
        }
        if (c->type == FV_COL_TARGET) {
            if (n_targets > 0)
                JFAIL(FV_EPARSE,
                      "%s: %s.type: a second target column '%s' (the first is columns[%zu] "
                      "'%s'); expected exactly one target column",
                      fn, path, fv__msg_str(b1, sizeof b1, c->name), first_target,
                      fv__msg_str(b2, sizeof b2, s->cols[first_target].name));
            n_targets++;
            first_target = j;
        }
    }
    {
        size_t a = 0, b = 0;
        int dup = schema_index_names(s, &a, &b);
        if (dup < 0)
            JFAIL(dup, "%s: out of memory", fn);
        if (dup)
            JFAIL(FV_EPARSE,
                  "%s: columns[%zu].name: duplicate column name '%s' (also columns[%zu]); "
                  "expected unique names",
                  fn, b, fv__msg_str(b1, sizeof b1, s->cols[b].name), a);
    }
    if (n_targets == 0)
        JFAIL(FV_EPARSE,
              "%s: columns: no column has type \"target\"; expected exactly one, named '%s'", fn,
              fv__msg_str(b1, sizeof b1, target));
    if (strcmp(s->cols[first_target].name, target) != 0)
        JFAIL(FV_EPARSE,
              "%s: target: '%s' but the target column is columns[%zu] '%s'; expected the name "
              "of the column with type \"target\"",
              fn, fv__msg_str(b1, sizeof b1, target), first_target,
              fv__msg_str(b2, sizeof b2, s->cols[first_target].name));
    s->target = first_target;
    if (any_open && unknown_given && unknown == FV_UNKNOWN_ERROR)
        JFAIL(FV_EINVAL,
              "%s: unknown_category: \"error\" with an open column (columns[%zu] '%s'); "
              "expected \"other\" (or no key): values an agent suppressed must land in the "
              "\"other\" bucket",
              fn, first_open, fv__msg_str(b1, sizeof b1, s->cols[first_open].name));
    if (!any_open && !unknown_given)
        JFAIL(FV_EPARSE, "%s: unknown_category: missing; expected \"error\" or \"other\"", fn);
    if (any_open)
        s->unknown = FV_UNKNOWN_OTHER;
    if (positive != NULL) {
        s->positive = vocab_find(s->classes, s->n_classes, positive);
        if (s->positive < 0)
            JFAIL(FV_EPARSE, "%s: positive: '%s' is not in classes; expected one of the classes",
                  fn, fv__msg_str(b1, sizeof b1, positive));
    }
    *ret = s;
    s = NULL;
    r = 0;
out:
    json_decref(root);
    fv_schema_free(s);
    return r;
}
#undef JFAIL

int fv_schema_save(const fv_schema_t *s, const char *path, fv_diag_t *d)
{
    char *json = NULL;
    size_t len = 0;
    int r;

    if (s == NULL || path == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_schema_save: schema and path are required");
    r = fv_schema_to_json(s, &json, &len);
    if (r < 0)
        return fv_diag_set(d, r, "%s: cannot encode the schema: %s", path, fv_strerror(r));
    json[len] = '\n'; /* replaces the NUL: written as len + 1 bytes, never read as a string */
    r = fv_file_write_atomic(path, json, len + 1, FV__SAVE_MODE, d);
    free(json);
    return r;
}

int fv_schema_load(const char *path, fv_schema_t **ret, fv_diag_t *d)
{
    fv_file_fail_t why;
    char *buf = NULL;
    size_t len = 0;
    int r;

    if (path == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_schema_load: path and ret are required");
    r = fv_file_read_all(path, SCHEMA_MAX_JSON_BYTES, &buf, &len, &why, d);
    if (r < 0) {
        /* fv_file_read_all's sentence, said in terms of a schema where that helps. */
        if (why.step == FV_FILE_STEP_OPEN)
            fv_diag_set(d, r, "%s: cannot open: %s; expected a readable schema JSON file", path,
                        strerror(-r));
        else if (why.step == FV_FILE_STEP_TYPE && why.is_dir)
            r = fv_diag_set(d, -EISDIR, "%s: cannot read: %s; expected a regular schema JSON file",
                            path, strerror(EISDIR));
        else if (why.step == FV_FILE_STEP_TYPE)
            fv_diag_set(d, r,
                        "%s: cannot read: not a regular file; expected a regular schema "
                        "JSON file",
                        path);
        else if (why.step == FV_FILE_STEP_SIZE)
            fv_diag_set(d, r, "%s: file is %jd bytes; expected a schema of at most %zu bytes", path,
                        (intmax_t)why.size_bytes, SCHEMA_MAX_JSON_BYTES);
        return r;
    }
    r = fv_schema_from_json(path, buf, len, ret, d);
    free(buf);
    return r;
}

/* ---- queries ---------------------------------------------------------------------- */

static bool strs_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

bool fv_schema_equal(const fv_schema_t *a, const fv_schema_t *b)
{
    if (a == b)
        return true;
    if (a == NULL || b == NULL)
        return false;
    if (a->n_cols != b->n_cols || a->target != b->target || a->positive != b->positive ||
        a->unknown != b->unknown || !strs_equal(a->classes, a->n_classes, b->classes, b->n_classes))
        return false;
    for (size_t j = 0; j < a->n_cols; j++) {
        const struct schema_col *x = &a->cols[j], *y = &b->cols[j];
        if (x->type != y->type || x->open != y->open || strcmp(x->name, y->name) != 0 ||
            !strs_equal(x->cats, x->n_cats, y->cats, y->n_cats))
            return false;
    }
    return true;
}

size_t fv_schema_n_columns(const fv_schema_t *s)
{
    return s->n_cols;
}

const char *fv_schema_column_name(const fv_schema_t *s, size_t col)
{
    return col < s->n_cols ? s->cols[col].name : NULL;
}

fv_col_type_t fv_schema_column_type(const fv_schema_t *s, size_t col)
{
    return col < s->n_cols ? s->cols[col].type : FV_COL_IGNORED;
}

long fv_schema_column_index(const fv_schema_t *s, const char *name)
{
    size_t lo = 0, hi = s->n_cols;
    if (name == NULL)
        return -1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->cols[s->by_name[mid]].name, name);
        if (c == 0)
            return (long)s->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

size_t fv_schema_n_categories(const fv_schema_t *s, size_t col)
{
    return col < s->n_cols && s->cols[col].type == FV_COL_CATEGORICAL ? s->cols[col].n_cats : 0;
}

const char *fv_schema_category(const fv_schema_t *s, size_t col, size_t k)
{
    if (col >= s->n_cols || s->cols[col].type != FV_COL_CATEGORICAL || k >= s->cols[col].n_cats)
        return NULL;
    return s->cols[col].cats[k];
}

long fv_schema_category_index(const fv_schema_t *s, size_t col, const char *value)
{
    if (col >= s->n_cols || s->cols[col].type != FV_COL_CATEGORICAL || value == NULL)
        return -1;
    return vocab_find(s->cols[col].cats, s->cols[col].n_cats, value);
}

size_t fv_schema_target(const fv_schema_t *s)
{
    return s->target;
}

bool fv_schema_is_binary(const fv_schema_t *s)
{
    return s->positive >= 0;
}

const char *fv_schema_positive(const fv_schema_t *s)
{
    return s->positive >= 0 ? s->classes[s->positive] : NULL;
}

size_t fv_schema_n_classes(const fv_schema_t *s)
{
    return s->positive >= 0 ? 2 : s->n_classes;
}

int fv_schema_check_trainable(const fv_schema_t *s, const char *origin, fv_diag_t *d)
{
    if (s->positive >= 0 || s->n_classes != 2)
        return 0;
    char b1[FV__MSG_BUF], b2[FV__MSG_BUF];
    return fv_diag_set(d, FV_EINVAL,
                       "%s: the target has two classes ('%s', '%s') and no positive label; a "
                       "two-class task is binary: name the positive class (\"positive\" in the "
                       "schema, --positive when it is inferred)",
                       origin, fv__msg_str(b1, sizeof b1, s->classes[0]),
                       fv__msg_str(b2, sizeof b2, s->classes[1]));
}

size_t fv_schema_n_labels(const fv_schema_t *s)
{
    return s->n_classes;
}

const char *fv_schema_label(const fv_schema_t *s, size_t k)
{
    return k < s->n_classes ? s->classes[k] : NULL;
}

long fv_schema_class_of(const fv_schema_t *s, const char *label)
{
    long k;
    if (label == NULL)
        return -1;
    k = vocab_find(s->classes, s->n_classes, label);
    if (k < 0 || s->positive < 0)
        return k;
    return k == s->positive ? 1 : 0;
}

fv_unknown_policy_t fv_schema_unknown_policy(const fv_schema_t *s)
{
    return s->unknown;
}

bool fv_schema_column_open(const fv_schema_t *s, size_t col)
{
    return s != NULL && col < s->n_cols && s->cols[col].open;
}

bool fv_schema_is_open(const fv_schema_t *s)
{
    for (size_t j = 0; s != NULL && j < s->n_cols; j++)
        if (s->cols[j].open)
            return true;
    return false;
}

int fv_schema_check_closed(const fv_schema_t *s, const char *origin, fv_diag_t *d)
{
    char lst[3 * FV__MSG_BUF], b[FV__MSG_BUF];
    size_t o = 0, n_open = 0;
    if (!fv_schema_is_open(s))
        return 0;
    lst[0] = '\0';
    for (size_t j = 0; j < s->n_cols; j++) {
        if (!s->cols[j].open)
            continue;
        if (n_open++ < 2 && o < sizeof lst) {
            int k = snprintf(lst + o, sizeof lst - o, "%scolumns[%zu] '%s'", o ? ", " : "", j,
                             fv__msg_str(b, sizeof b, s->cols[j].name));
            if (k > 0)
                o += (size_t)k;
        }
    }
    if (n_open > 2 && o < sizeof lst)
        snprintf(lst + o, sizeof lst - o, ", ... (%zu in all)", n_open);
    return fv_diag_set(d, FV_EINVAL,
                       "%s: schema has open columns (%s): resolve it first (a feature layout "
                       "needs every column's type and categories)",
                       origin != NULL ? origin : "schema", lst);
}

bool fv_schema_is_missing(const char *cell)
{
    return cell == NULL || cell[0] == '\0' || strcmp(cell, "NA") == 0;
}
