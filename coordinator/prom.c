/* prom.c - the Prometheus registry and its text exposition (see fv_prom.h for the
 * contract); the HTTP endpoint that serves it is prom_http.c.
 *
 * Registry. A singly linked list of families in registration order; each family holds a
 * growable array of series, one per distinct label-value set, in first-use order (so
 * the output is deterministic). Lookup is a linear scan with strcmp: at most
 * FV_PROM_MAX_SERIES + 1 series per family, and the daemon updates a handful of
 * counters per message, so a hash table would not pay for itself. Histogram series keep
 * per-bucket counts (not cumulative; the last slot is the +Inf overflow) and are made
 * cumulative while rendering. Invariant: a family never holds more than
 * FV_PROM_MAX_SERIES series plus one series whose values are all FV_PROM_OTHER; the
 * overflow path only ever looks that one up, so peers cannot grow memory.
 *
 * Rendering. fv_prom_render writes the text exposition format into one growing buffer;
 * an allocation failure is remembered and reported once at the end, so the caller gets
 * the whole text or FV_ENOMEM, never a truncated page.
 *
 * No libuv, no clock, no logging here. Ownership: the registry owns every family, series
 * and string (copies of what it was given); the rendered text is the caller's.
 * Threading: everything runs on the caller's thread (the daemon's loop); no locks.
 */
#include "fv_prom.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- registry -------------------------------------------------------------------- */

typedef struct series {
    char *values[FV_PROM_MAX_LABELS]; /* owned; n_labels of them are set */
    double value;                     /* counter, gauge */
    double sum;                       /* histogram */
    uint64_t count;                   /* histogram */
    uint64_t *buckets;                /* histogram: n_bounds + 1, not cumulative */
} series_t;

struct fv_prom_metric {
    fv_prom_type_t type;
    char *name;
    char *help;
    size_t n_labels;
    char *label_names[FV_PROM_MAX_LABELS];
    double *bounds;
    size_t n_bounds;
    series_t *series;
    size_t n_series, cap_series;
    size_t n_regular; /* series other than the overflow one; <= FV_PROM_MAX_SERIES */
    bool has_overflow;
    size_t overflow; /* index of the all-"other" series once has_overflow */
    fv_prom_metric_t *next;
};

struct fv_prom {
    fv_prom_metric_t *first, *last;
};

int fv_prom_new(fv_prom_t **ret)
{
    fv_prom_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return FV_ENOMEM;
    *ret = p;
    return 0;
}

static void family_free(fv_prom_metric_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_series; i++) {
        for (size_t j = 0; j < m->n_labels; j++)
            free(m->series[i].values[j]);
        free(m->series[i].buckets);
    }
    free(m->series);
    for (size_t j = 0; j < m->n_labels; j++)
        free(m->label_names[j]);
    free(m->bounds);
    free(m->help);
    free(m->name);
    free(m);
}

void fv_prom_free(fv_prom_t *p)
{
    if (p == NULL)
        return;
    fv_prom_metric_t *m = p->first;
    while (m != NULL) {
        fv_prom_metric_t *next = m->next;
        family_free(m);
        m = next;
    }
    free(p);
}

static bool name_ok(const char *s, bool colon)
{
    if (s == NULL || s[0] == '\0')
        return false;
    for (size_t i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool label_name_ok(const char *s, fv_prom_type_t type)
{
    if (!name_ok(s, false))
        return false;
    if (strncmp(s, "__", 2) == 0)
        return false; /* reserved for Prometheus' internal labels */
    if (type == FV_PROM_HISTOGRAM && strcmp(s, "le") == 0)
        return false;
    return true;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* Appends a series with the given values (already checked); returns its index or
 * (size_t)-1 when out of memory. */
static size_t series_add(fv_prom_metric_t *m, const char *const *values)
{
    if (m->n_series == m->cap_series) {
        size_t cap = m->cap_series ? 2 * m->cap_series : 4;
        series_t *ns = realloc(m->series, cap * sizeof *ns);
        if (ns == NULL)
            return (size_t)-1;
        m->series = ns;
        m->cap_series = cap;
    }
    series_t *s = &m->series[m->n_series];
    memset(s, 0, sizeof *s);
    if (m->type == FV_PROM_HISTOGRAM) {
        s->buckets = calloc(m->n_bounds + 1, sizeof *s->buckets);
        if (s->buckets == NULL)
            return (size_t)-1;
    }
    for (size_t j = 0; j < m->n_labels; j++) {
        s->values[j] = dup_str(values[j]);
        if (s->values[j] == NULL) {
            for (size_t k = 0; k < j; k++)
                free(s->values[k]);
            free(s->buckets);
            return (size_t)-1;
        }
    }
    return m->n_series++;
}

int fv_prom_family(fv_prom_t *p, fv_prom_type_t type, const char *name, const char *help,
                   const char *const *label_names, size_t n_labels, const double *bounds,
                   size_t n_bounds, fv_prom_metric_t **ret)
{
    if (p == NULL || !name_ok(name, true) || n_labels > FV_PROM_MAX_LABELS ||
        (n_labels > 0 && label_names == NULL))
        return FV_EINVAL;
    if (type != FV_PROM_COUNTER && type != FV_PROM_GAUGE && type != FV_PROM_HISTOGRAM)
        return FV_EINVAL;
    for (size_t j = 0; j < n_labels; j++) {
        if (!label_name_ok(label_names[j], type))
            return FV_EINVAL;
        for (size_t k = 0; k < j; k++)
            if (strcmp(label_names[j], label_names[k]) == 0)
                return FV_EINVAL;
    }
    if (type == FV_PROM_HISTOGRAM) {
        if (bounds == NULL || n_bounds == 0 || n_bounds > FV_PROM_MAX_BOUNDS)
            return FV_EINVAL;
        for (size_t i = 0; i < n_bounds; i++) {
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                return FV_EINVAL;
        }
    } else if (bounds != NULL || n_bounds != 0) {
        return FV_EINVAL;
    }
    for (const fv_prom_metric_t *o = p->first; o != NULL; o = o->next)
        if (strcmp(o->name, name) == 0)
            return FV_EDUP;

    fv_prom_metric_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return FV_ENOMEM;
    m->type = type;
    m->n_labels = n_labels;
    m->name = dup_str(name);
    m->help = dup_str(help ? help : "");
    bool ok = m->name != NULL && m->help != NULL;
    for (size_t j = 0; ok && j < n_labels; j++) {
        m->label_names[j] = dup_str(label_names[j]);
        ok = m->label_names[j] != NULL;
    }
    if (ok && type == FV_PROM_HISTOGRAM) {
        m->bounds = malloc(n_bounds * sizeof *m->bounds);
        ok = m->bounds != NULL;
        if (ok) {
            memcpy(m->bounds, bounds, n_bounds * sizeof *m->bounds);
            m->n_bounds = n_bounds;
        }
    }
    if (ok && n_labels == 0) {
        ok = series_add(m, NULL) != (size_t)-1;
        m->n_regular = 1;
    }
    if (!ok) {
        family_free(m);
        return FV_ENOMEM;
    }
    if (p->last != NULL)
        p->last->next = m;
    else
        p->first = m;
    p->last = m;
    *ret = m;
    return 0;
}

int fv_prom_counter(fv_prom_t *p, const char *name, const char *help, const char *label_name,
                    fv_prom_metric_t **ret)
{
    return fv_prom_family(p, FV_PROM_COUNTER, name, help, &label_name, label_name ? 1 : 0, NULL, 0,
                          ret);
}

int fv_prom_gauge(fv_prom_t *p, const char *name, const char *help, const char *label_name,
                  fv_prom_metric_t **ret)
{
    return fv_prom_family(p, FV_PROM_GAUGE, name, help, &label_name, label_name ? 1 : 0, NULL, 0,
                          ret);
}

int fv_prom_histogram(fv_prom_t *p, const char *name, const char *help, const char *label_name,
                      const double *bounds, size_t n_bounds, fv_prom_metric_t **ret)
{
    return fv_prom_family(p, FV_PROM_HISTOGRAM, name, help, &label_name, label_name ? 1 : 0, bounds,
                          n_bounds, ret);
}

/* Well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static bool utf8_ok(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s != 0) {
        unsigned c = *s;
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            s++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
                return false;
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        s += n + 1;
    }
    return true;
}

/* The series for these values: an existing one, a new one while under the cap, else the
 * all-"other" series. NULL only when even that cannot be allocated. */
static series_t *series_get(fv_prom_metric_t *m, const char *const *label_values)
{
    if (m->n_labels == 0)
        return &m->series[0];
    const char *vals[FV_PROM_MAX_LABELS];
    bool usable = true;
    for (size_t j = 0; j < m->n_labels; j++) {
        vals[j] = (label_values != NULL && label_values[j] != NULL) ? label_values[j] : "";
        if (strlen(vals[j]) > FV_PROM_MAX_VALUE_BYTES || !utf8_ok(vals[j]))
            usable = false;
    }
    if (usable) {
        for (size_t i = 0; i < m->n_series; i++) {
            size_t j = 0;
            while (j < m->n_labels && strcmp(m->series[i].values[j], vals[j]) == 0)
                j++;
            if (j == m->n_labels)
                return &m->series[i];
        }
        if (m->n_regular < FV_PROM_MAX_SERIES) {
            size_t i = series_add(m, vals);
            if (i != (size_t)-1) {
                m->n_regular++;
                return &m->series[i];
            }
        }
    }
    /* Over the cap, unusable value, or out of memory: the overflow series. If values
     * that happen to be all "other" were used explicitly under the cap, the scan above
     * found that series; a second one is never made. */
    if (!m->has_overflow) {
        const char *other[FV_PROM_MAX_LABELS];
        for (size_t j = 0; j < m->n_labels; j++)
            other[j] = FV_PROM_OTHER;
        for (size_t i = 0; i < m->n_series; i++) {
            size_t j = 0;
            while (j < m->n_labels && strcmp(m->series[i].values[j], FV_PROM_OTHER) == 0)
                j++;
            if (j == m->n_labels) {
                m->has_overflow = true;
                m->overflow = i;
                break;
            }
        }
        if (!m->has_overflow) {
            size_t i = series_add(m, other);
            if (i == (size_t)-1)
                return NULL;
            m->has_overflow = true;
            m->overflow = i;
        }
    }
    return &m->series[m->overflow];
}

void fv_prom_addv(fv_prom_metric_t *m, const char *const *label_values, double v)
{
    assert(m->type == FV_PROM_COUNTER || m->type == FV_PROM_GAUGE);
    if (m->type == FV_PROM_HISTOGRAM)
        return;
    if (isnan(v) || (m->type == FV_PROM_COUNTER && v < 0))
        return; /* a counter only goes up */
    series_t *s = series_get(m, label_values);
    if (s != NULL)
        s->value += v;
}

void fv_prom_setv(fv_prom_metric_t *m, const char *const *label_values, double v)
{
    assert(m->type == FV_PROM_GAUGE);
    if (m->type != FV_PROM_GAUGE)
        return;
    series_t *s = series_get(m, label_values);
    if (s != NULL)
        s->value = v;
}

void fv_prom_observev(fv_prom_metric_t *m, const char *const *label_values, double v)
{
    assert(m->type == FV_PROM_HISTOGRAM);
    if (m->type != FV_PROM_HISTOGRAM || isnan(v))
        return;
    series_t *s = series_get(m, label_values);
    if (s == NULL)
        return;
    size_t b = 0;
    while (b < m->n_bounds && !(v <= m->bounds[b]))
        b++;
    s->buckets[b]++; /* b == n_bounds: the +Inf bucket */
    s->count++;
    s->sum += v;
}

void fv_prom_add(fv_prom_metric_t *m, const char *label_value, double v)
{
    fv_prom_addv(m, &label_value, v);
}

void fv_prom_set(fv_prom_metric_t *m, const char *label_value, double v)
{
    fv_prom_setv(m, &label_value, v);
}

void fv_prom_observe(fv_prom_metric_t *m, const char *label_value, double v)
{
    fv_prom_observev(m, &label_value, v);
}

/* ---- rendering ------------------------------------------------------------------- */

typedef struct outbuf {
    char *data;
    size_t len, cap;
    bool oom;
} outbuf_t;

static void out_mem(outbuf_t *o, const char *s, size_t n)
{
    if (o->oom)
        return;
    if (o->cap - o->len < n + 1) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap - o->len < n + 1)
            cap *= 2;
        char *d = realloc(o->data, cap);
        if (d == NULL) {
            o->oom = true;
            return;
        }
        o->data = d;
        o->cap = cap;
    }
    memcpy(o->data + o->len, s, n);
    o->len += n;
    o->data[o->len] = '\0';
}

static void out_str(outbuf_t *o, const char *s)
{
    out_mem(o, s, strlen(s));
}

/* Escapes backslash and newline, and double quote when quoted (label values). */
static void out_escaped(outbuf_t *o, const char *s, bool quoted)
{
    const char *run = s;
    for (; *s != '\0'; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (quoted && *s == '"')
            esc = "\\\"";
        if (esc != NULL) {
            out_mem(o, run, (size_t)(s - run));
            out_str(o, esc);
            run = s + 1;
        }
    }
    out_mem(o, run, (size_t)(s - run));
}

/* Shortest of %.15g..%.17g that reads back to v; Prometheus' spellings of the
 * non-finite values. */
static void fmt_double(char *buf, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void out_double(outbuf_t *o, double v)
{
    char buf[40];
    fmt_double(buf, sizeof buf, v);
    out_str(o, buf);
}

/* name{l1="v1",l2="v2",le="x"} with an optional le; no braces when nothing is in them. */
static void out_sample_name(outbuf_t *o, const fv_prom_metric_t *m, const char *suffix,
                            const series_t *s, const char *le)
{
    out_str(o, m->name);
    out_str(o, suffix);
    if (m->n_labels == 0 && le == NULL)
        return;
    out_str(o, "{");
    for (size_t j = 0; j < m->n_labels; j++) {
        if (j > 0)
            out_str(o, ",");
        out_str(o, m->label_names[j]);
        out_str(o, "=\"");
        out_escaped(o, s->values[j], true);
        out_str(o, "\"");
    }
    if (le != NULL) {
        if (m->n_labels > 0)
            out_str(o, ",");
        out_str(o, "le=\"");
        out_str(o, le);
        out_str(o, "\"");
    }
    out_str(o, "}");
}

static void out_u64(outbuf_t *o, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    out_str(o, buf);
}

static void render_family(outbuf_t *o, const fv_prom_metric_t *m)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    out_str(o, "# HELP ");
    out_str(o, m->name);
    out_str(o, " ");
    out_escaped(o, m->help, false);
    out_str(o, "\n# TYPE ");
    out_str(o, m->name);
    out_str(o, " ");
    out_str(o, type_names[m->type]);
    out_str(o, "\n");
    for (size_t i = 0; i < m->n_series; i++) {
        const series_t *s = &m->series[i];
        if (m->type != FV_PROM_HISTOGRAM) {
            out_sample_name(o, m, "", s, NULL);
            out_str(o, " ");
            out_double(o, s->value);
            out_str(o, "\n");
            continue;
        }
        uint64_t cum = 0;
        char le[40];
        for (size_t b = 0; b <= m->n_bounds; b++) {
            cum += s->buckets[b];
            if (b < m->n_bounds)
                fmt_double(le, sizeof le, m->bounds[b]);
            else
                snprintf(le, sizeof le, "+Inf");
            out_sample_name(o, m, "_bucket", s, le);
            out_str(o, " ");
            out_u64(o, cum);
            out_str(o, "\n");
        }
        out_sample_name(o, m, "_sum", s, NULL);
        out_str(o, " ");
        out_double(o, s->sum);
        out_str(o, "\n");
        out_sample_name(o, m, "_count", s, NULL);
        out_str(o, " ");
        out_u64(o, s->count);
        out_str(o, "\n");
    }
}

int fv_prom_render(const fv_prom_t *p, char **ret_text, size_t *ret_len)
{
    outbuf_t o = {0};
    out_mem(&o, "", 0); /* an empty registry still gives a valid empty string */
    for (const fv_prom_metric_t *m = p->first; m != NULL; m = m->next)
        render_family(&o, m);
    if (o.oom) {
        free(o.data);
        return FV_ENOMEM;
    }
    *ret_text = o.data;
    *ret_len = o.len;
    return 0;
}
