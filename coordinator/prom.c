/* prom.c - Prometheus registry and its HTTP endpoint (see fv_prom.h for the contract).
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
 * Server. One uv_tcp_t listener; per connection a uv_tcp_t and a uv_timer_t, both
 * embedded in a conn_t that is freed when the second close callback has run. Life of a
 * connection:
 *   READ_HEAD (bytes appended to head[], parsed once "\r\n\r\n" or "\n\n" is there;
 *              deadline FV_PROM_TIMEOUT_MS)
 *   -> WRITING (uv_read_stop, one uv_write of two buffers: hdr[] and the body from
 *              fv_prom_render; deadline FV_PROM_TIMEOUT_MS again)
 *   -> LINGER  (uv_shutdown sent; we read and discard until the client's EOF, for at
 *              most LINGER_MS, so a client still sending does not get a reset that
 *              destroys the response before it has read it)
 *   -> CLOSING (uv_close on both handles; pending write/shutdown callbacks run with
 *              UV_ECANCELED before the close callbacks).
 * The body is freed in the close callback, after the write callback has run. The server
 * struct is freed when the listener is closed and no connection is left, so stop is
 * safe at any time, from any callback.
 *
 * The callbacks that do work run between the daemon's probe calls, if it set a probe
 * (fv_prom_server_set_probe); a probe never changes what the server does.
 *
 * Threading: everything runs on the loop thread; no locks.
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

/* ---- HTTP server ----------------------------------------------------------------- */

#define LINGER_MS 1000
#define LISTEN_BACKLOG 128

enum conn_state { ST_READ_HEAD, ST_WRITING, ST_LINGER, ST_CLOSING };

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    fv_prom_server_t *server;
    struct conn *next, *prev;
    enum conn_state state;
    int handles_open;
    size_t head_len;
    char *body; /* owned; freed in the close callback */
    size_t body_len;
    char hdr[256];
    char head[FV_PROM_MAX_HEAD_BYTES];
    char discard[512]; /* read target while lingering */
} conn_t;

struct fv_prom_server {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    fv_prom_t *prom; /* borrowed */
    conn_t *conns;
    size_t n_conns;
    bool stopping;
    bool listener_closed;
    int port;
    /* fv_prom_server_set_probe: around each callback that does work */
    void (*probe_enter)(void *ctx, const char *name);
    void (*probe_leave)(void *ctx);
    void *probe_ctx;
};

/* The server outlives these calls: it is freed only in a close callback. */
static void probe_enter(const fv_prom_server_t *s, const char *name)
{
    if (s->probe_enter != NULL)
        s->probe_enter(s->probe_ctx, name);
}

static void probe_leave(const fv_prom_server_t *s)
{
    if (s->probe_leave != NULL)
        s->probe_leave(s->probe_ctx);
}

static void server_maybe_free(fv_prom_server_t *s)
{
    if (s->stopping && s->listener_closed && s->n_conns == 0)
        free(s);
}

static void conn_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles_open > 0)
        return;
    fv_prom_server_t *s = c->server;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->n_conns--;
    free(c->body);
    free(c);
    server_maybe_free(s);
}

static void conn_close(conn_t *c)
{
    if (c->state == ST_CLOSING)
        return;
    c->state = ST_CLOSING;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
    conn_t *c = t->data;
    fv_prom_server_t *s = c->server;
    probe_enter(s, "metrics.on_timeout");
    conn_close(c);
    probe_leave(s);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    if (c->state != ST_LINGER)
        return; /* closing already (status is UV_ECANCELED) */
    fv_prom_server_t *s = c->server;
    probe_enter(s, "metrics.on_shutdown");
    if (status < 0)
        conn_close(c);
    /* else keep discarding until the client's EOF or the linger timer */
    probe_leave(s);
}

static void conn_written(conn_t *c, int status);

static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    fv_prom_server_t *s = c->server;
    probe_enter(s, "metrics.on_write");
    conn_written(c, status);
    probe_leave(s);
}

static void conn_written(conn_t *c, int status)
{
    if (c->state != ST_WRITING)
        return; /* closing already */
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->state = ST_LINGER;
    c->sreq.data = c;
    (void)uv_timer_start(&c->timer, on_timeout, LINGER_MS, 0);
    int r = uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r != 0)
        conn_close(c);
}

/* Reason phrases for the statuses we send. */
static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Internal Server Error";
    }
}

/* Queues the response; body is taken over (NULL: a short text for the status). */
static void conn_respond(conn_t *c, int status, char *body, size_t body_len)
{
    (void)uv_read_stop((uv_stream_t *)&c->tcp);
    if (body == NULL) {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "%d %s\n", status, status_text(status));
        body = dup_str(msg);
        if (body == NULL) {
            conn_close(c);
            return;
        }
        body_len = (size_t)n;
    }
    c->body = body;
    c->body_len = body_len;
    int n = snprintf(c->hdr, sizeof c->hdr,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "Connection: close\r\n"
                     "\r\n",
                     status, status_text(status), body_len, status == 405 ? "Allow: GET\r\n" : "");
    assert(n > 0 && (size_t)n < sizeof c->hdr);
    uv_buf_t bufs[2] = {uv_buf_init(c->hdr, (unsigned)n),
                        uv_buf_init(c->body, (unsigned)c->body_len)};
    c->state = ST_WRITING;
    c->wreq.data = c;
    (void)uv_timer_start(&c->timer, on_timeout, FV_PROM_TIMEOUT_MS, 0);
    int r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, body_len > 0 ? 2 : 1, on_write);
    if (r != 0)
        conn_close(c);
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* A byte that can never appear in a request head (we accept obs-text 0x80-0xff in
 * header values, as RFC 9110 allows; they are ignored anyway). */
static bool is_bad_head_byte(unsigned char ch)
{
    return (ch < 0x20 && ch != '\t' && ch != '\r' && ch != '\n') || ch == 0x7f;
}

/* Finds the end of the head: the index just past "\r\n\r\n" or "\n\n", or 0. */
static size_t head_end(const char *h, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (h[i] != '\n')
            continue;
        if (h[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && h[i + 1] == '\r' && h[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Parses a complete head; returns the HTTP status to answer with. */
static int parse_head(const char *h, size_t len)
{
    /* Split into lines; each ends with "\n", optionally preceded by "\r". A bare CR
     * anywhere else is malformed. */
    size_t pos = 0, line_no = 0;
    const char *method = NULL, *target = NULL;
    size_t method_len = 0, target_len = 0;
    int version_status = 0;
    while (pos < len) {
        const char *nl = memchr(h + pos, '\n', len - pos);
        if (nl == NULL)
            return 400;
        size_t end = (size_t)(nl - h);
        size_t llen = end - pos;
        if (llen > 0 && h[end - 1] == '\r')
            llen--;
        const char *l = h + pos;
        pos = end + 1;
        for (size_t i = 0; i < llen; i++)
            if (l[i] == '\r' || is_bad_head_byte((unsigned char)l[i]))
                return 400;
        if (line_no++ == 0) {
            /* method SP request-target SP HTTP-version */
            const char *sp1 = memchr(l, ' ', llen);
            if (sp1 == NULL || sp1 == l)
                return 400;
            const char *rest = sp1 + 1;
            size_t rest_len = llen - (size_t)(rest - l);
            const char *sp2 = memchr(rest, ' ', rest_len);
            if (sp2 == NULL || sp2 == rest)
                return 400;
            method = l;
            method_len = (size_t)(sp1 - l);
            target = rest;
            target_len = (size_t)(sp2 - rest);
            const char *ver = sp2 + 1;
            size_t ver_len = llen - (size_t)(ver - l);
            for (size_t i = 0; i < method_len; i++)
                if (!is_tchar((unsigned char)method[i]))
                    return 400;
            for (size_t i = 0; i < target_len; i++)
                if ((unsigned char)target[i] <= 0x20 || (unsigned char)target[i] >= 0x7f)
                    return 400;
            if (ver_len != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[5] < '0' || ver[5] > '9' ||
                ver[6] != '.' || ver[7] < '0' || ver[7] > '9')
                return 400;
            if (memcmp(ver, "HTTP/1.", 7) != 0)
                version_status = 505;
            continue;
        }
        if (llen == 0)
            break; /* the empty line that ends the head */
        /* field-name ":" OWS field-value OWS; no obs-fold, no space before the colon */
        const char *colon = memchr(l, ':', llen);
        if (colon == NULL || colon == l)
            return 400;
        for (const char *q = l; q < colon; q++)
            if (!is_tchar((unsigned char)*q))
                return 400;
    }
    if (method == NULL)
        return 400;
    if (version_status != 0)
        return version_status;
    if (target_len == 0 || (target[0] != '/' && !(target_len == 1 && target[0] == '*')))
        return 400;
    if (method_len != 3 || memcmp(method, "GET", 3) != 0)
        return 405;
    const char *q = memchr(target, '?', target_len);
    size_t path_len = q ? (size_t)(q - target) : target_len;
    if (path_len == 8 && memcmp(target, "/metrics", 8) == 0)
        return 200;
    return 404;
}

static void conn_head_done(conn_t *c, int status)
{
    if (status != 200) {
        conn_respond(c, status, NULL, 0);
        return;
    }
    char *text;
    size_t len;
    if (fv_prom_render(c->server->prom, &text, &len) != 0) {
        conn_respond(c, 500, NULL, 0);
        return;
    }
    conn_respond(c, 200, text, len);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    if (c->state == ST_READ_HEAD) {
        /* on_read answers 431 when the head is full, so there is always room here */
        *buf = uv_buf_init(c->head + c->head_len, (unsigned)(sizeof c->head - c->head_len));
    } else {
        *buf = uv_buf_init(c->discard, sizeof c->discard);
    }
}

static void conn_read(conn_t *c, ssize_t nread);

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = st->data;
    fv_prom_server_t *s = c->server;
    (void)buf; /* the bytes are in c->head (on_alloc) */
    probe_enter(s, "metrics.on_read");
    conn_read(c, nread);
    probe_leave(s);
}

static void conn_read(conn_t *c, ssize_t nread)
{
    if (nread == 0)
        return; /* EAGAIN */
    if (nread < 0) {
        /* EOF or error: before a full head, the client went away; while lingering, the
         * client has read our answer and closed. Either way we are done. */
        conn_close(c);
        return;
    }
    if (c->state != ST_READ_HEAD)
        return; /* lingering: discard */
    size_t old = c->head_len;
    c->head_len += (size_t)nread;
    /* Early refusal: a byte no request head contains (e.g. a TLS ClientHello). */
    for (size_t i = old; i < c->head_len; i++) {
        if (is_bad_head_byte((unsigned char)c->head[i])) {
            conn_head_done(c, 400);
            return;
        }
    }
    /* The terminator may straddle reads: search again from just before the new bytes. */
    size_t from = old > 3 ? old - 3 : 0;
    size_t e = head_end(c->head + from, c->head_len - from);
    if (e != 0) {
        conn_head_done(c, parse_head(c->head, from + e));
        return;
    }
    if (c->head_len == sizeof c->head)
        conn_head_done(c, 431);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void accept_conn(fv_prom_server_t *s, uv_stream_t *ls);

static void on_connection(uv_stream_t *ls, int status)
{
    fv_prom_server_t *s = ls->data;
    if (status < 0 || s->stopping)
        return;
    probe_enter(s, "metrics.on_connection");
    accept_conn(s, ls);
    probe_leave(s);
}

static void accept_conn(fv_prom_server_t *s, uv_stream_t *ls)
{
    conn_t *c = NULL;
    if (s->n_conns < FV_PROM_MAX_CONNS)
        c = calloc(1, sizeof *c);
    if (c == NULL) {
        /* Over the cap (or out of memory): accept and close at once, so the backlog
         * neither grows nor makes the listener spin. */
        uv_tcp_t *tmp = malloc(sizeof *tmp);
        if (tmp != NULL && uv_tcp_init(s->loop, tmp) == 0) {
            (void)uv_accept(ls, (uv_stream_t *)tmp);
            uv_close((uv_handle_t *)tmp, free_handle);
        } else {
            free(tmp);
        }
        return;
    }
    c->server = s;
    c->state = ST_READ_HEAD;
    if (uv_tcp_init(s->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    c->handles_open = 1;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    int r = uv_timer_init(s->loop, &c->timer);
    if (r != 0) {
        c->state = ST_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
        return;
    }
    c->timer.data = c;
    c->handles_open = 2;
    r = uv_accept(ls, (uv_stream_t *)&c->tcp);
    if (r == 0)
        r = uv_timer_start(&c->timer, on_timeout, FV_PROM_TIMEOUT_MS, 0);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r != 0)
        conn_close(c);
}

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss)
{
    if (host == NULL || port < 0 || port > 65535)
        return FV_EINVAL;
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return FV_EINVAL;
}

static void on_listener_closed(uv_handle_t *h)
{
    fv_prom_server_t *s = h->data;
    s->listener_closed = true;
    server_maybe_free(s);
}

int fv_prom_server_start(uv_loop_t *loop, const char *host, int port, fv_prom_t *p,
                         fv_prom_server_t **ret, fv_diag_t *d)
{
    struct sockaddr_storage ss;
    if (loop == NULL || p == NULL)
        return fv_diag_set(d, FV_EINVAL, "metrics endpoint: no loop or registry given");
    if (parse_addr(host, port, &ss) != 0)
        return fv_diag_set(d, FV_EINVAL,
                           "metrics endpoint: '%s' port %d is not an IP address and port "
                           "(0-65535); give a loopback or management-network address",
                           host ? host : "(null)", port);
    fv_prom_server_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return fv_diag_set(d, FV_ENOMEM, "metrics endpoint: out of memory");
    s->loop = loop;
    s->prom = p;
    int r = uv_tcp_init(loop, &s->tcp);
    if (r != 0) {
        free(s);
        return fv_diag_set(d, r, "metrics endpoint: creating the socket failed: %s",
                           uv_strerror(r));
    }
    s->tcp.data = s;
    const char *step = "binding";
    r = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&ss, 0);
    if (r == 0) {
        step = "listening";
        r = uv_listen((uv_stream_t *)&s->tcp, LISTEN_BACKLOG, on_connection);
    }
    if (r == 0) {
        step = "reading the bound address";
        struct sockaddr_storage bound;
        int len = sizeof bound;
        r = uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &len);
        if (r == 0)
            s->port =
                ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                 : ((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    if (r != 0) {
        fv_diag_set(d, r,
                    "metrics endpoint: %s %s port %d failed: %s; choose a free port or "
                    "an address of this host",
                    step, host, port, uv_strerror(r));
        s->stopping = true;
        uv_close((uv_handle_t *)&s->tcp, on_listener_closed); /* frees s */
        return r;
    }
    *ret = s;
    return 0;
}

void fv_prom_server_set_probe(fv_prom_server_t *s, void (*enter)(void *ctx, const char *name),
                              void (*leave)(void *ctx), void *ctx)
{
    s->probe_enter = enter;
    s->probe_leave = leave;
    s->probe_ctx = ctx;
}

int fv_prom_server_port(const fv_prom_server_t *s)
{
    return s->port;
}

void fv_prom_server_stop(fv_prom_server_t *s)
{
    if (s == NULL || s->stopping)
        return;
    s->stopping = true;
    uv_close((uv_handle_t *)&s->tcp, on_listener_closed);
    for (conn_t *c = s->conns; c != NULL; c = c->next)
        conn_close(c);
}
