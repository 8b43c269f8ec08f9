/* fv_prom.h - Prometheus metrics for the coordinator daemon: a registry and an HTTP
 * endpoint that serves it in the text exposition format, version 0.0.4.
 *
 * Two halves:
 *   - The registry (fv_prom_t) is pure: no loop, no sockets, no clock. The daemon
 *     registers metric families once at start-up, updates them from the loop thread, and
 *     fv_prom_render() turns them into text. Not thread-safe: one thread (the loop's)
 *     owns it.
 *   - The server (fv_prom_server_t) answers "GET /metrics" on a libuv loop with the
 *     rendered registry. It serves plain HTTP/1.1, one request per connection.
 *
 * SECURITY: the endpoint has no TLS and no authentication. It is meant to listen on a
 * loopback or management-network address that the operator chooses (never the address
 * agents connect to), and it exposes only counts and durations: no keys, identities,
 * model values or data. Label values must follow that rule too (phases, reasons from a
 * fixed list), never anything copied from a peer's message.
 *
 * Bounds (what a scraper or a peer can make us hold):
 *   - per family, at most FV_PROM_MAX_SERIES distinct label-value sets; values seen after
 *     that are counted under the value "other" in every label (one extra series), and so
 *     are values that are longer than FV_PROM_MAX_VALUE_BYTES or not valid UTF-8;
 *   - per connection, a request head of at most FV_PROM_MAX_HEAD_BYTES (else 431), a
 *     deadline of FV_PROM_TIMEOUT_MS to send it and again to read the answer;
 *   - at most FV_PROM_MAX_CONNS connections at once, FV_PROM_MAX_CONNS_PER_SOURCE from one
 *     address (more are closed at once); at the global cap a new one evicts one that
 *     has not sent its whole head yet, from the source holding the most, and is closed
 *     at once only if none is waiting.
 */
#ifndef FV_PROM_H
#define FV_PROM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "fv_error.h"

#define FV_PROM_MAX_LABELS 3        /* label names per family */
#define FV_PROM_MAX_SERIES 256      /* distinct label-value sets per family, + "other" */
#define FV_PROM_MAX_VALUE_BYTES 128 /* longer label values count as "other" */
#define FV_PROM_MAX_BOUNDS 64       /* histogram bucket bounds, +Inf not included */
#define FV_PROM_OTHER "other"       /* the label value overflow goes to */

#define FV_PROM_MAX_HEAD_BYTES 8192    /* request line + headers */
#define FV_PROM_TIMEOUT_MS 5000        /* to send the head; again to read the response */
#define FV_PROM_MAX_CONNS 64           /* concurrent connections */
#define FV_PROM_MAX_CONNS_PER_SOURCE 8 /* from one client address */

typedef enum fv_prom_type {
    FV_PROM_COUNTER,
    FV_PROM_GAUGE,
    FV_PROM_HISTOGRAM,
} fv_prom_type_t;

typedef struct fv_prom fv_prom_t;
/* One metric family (name, help, type, label names) and all its series. Owned by the
 * registry: valid until fv_prom_free(). */
typedef struct fv_prom_metric fv_prom_metric_t;

/* ---- registry (pure) ------------------------------------------------------------- */

/* A new, empty registry; caller frees with fv_prom_free(). FV_ENOMEM. */
int fv_prom_new(fv_prom_t **ret);
/* Frees the registry and every family in it. NULL is fine. A server using it must have
 * been stopped, and its loop run, first. */
void fv_prom_free(fv_prom_t *p);

/* Registers a family. Strings are copied. Families render in registration order.
 *   name        [a-zA-Z_:][a-zA-Z0-9_:]*, unique in the registry (FV_EDUP otherwise);
 *   help        any text (backslash and newline are escaped on output); NULL means "";
 *   label_names 0..FV_PROM_MAX_LABELS names, each [a-zA-Z_][a-zA-Z0-9_]*, distinct, not
 *               starting with "__", and not "le" for a histogram;
 *   bounds      histograms only: 1..FV_PROM_MAX_BOUNDS finite, strictly increasing upper
 *               bounds (the +Inf bucket is implicit); NULL/0 for the other types.
 * An unlabelled family has its one series from the start (renders 0); a labelled one
 * gets a series the first time a label value is used.
 * Returns 0 and *ret (borrowed, owned by p), or FV_EINVAL, FV_EDUP, FV_ENOMEM. */
int fv_prom_family(fv_prom_t *p, fv_prom_type_t type, const char *name, const char *help,
                   const char *const *label_names, size_t n_labels, const double *bounds,
                   size_t n_bounds, fv_prom_metric_t **ret);

/* Shorthands with zero or one label (label_name NULL = no label). */
int fv_prom_counter(fv_prom_t *p, const char *name, const char *help, const char *label_name,
                    fv_prom_metric_t **ret);
int fv_prom_gauge(fv_prom_t *p, const char *name, const char *help, const char *label_name,
                  fv_prom_metric_t **ret);
int fv_prom_histogram(fv_prom_t *p, const char *name, const char *help, const char *label_name,
                      const double *bounds, size_t n_bounds, fv_prom_metric_t **ret);

/* Updates, for families with zero or one label. label_value is NULL for an unlabelled
 * family (and ignored there); in a labelled family NULL means the empty value. Values
 * are borrowed (copied when a new series is made). Updates never fail: out of memory
 * or past the series cap, the update goes to the "other" series, or is dropped if even
 * that cannot be made.
 *   fv_prom_add      counters (v >= 0; negative or NaN is dropped) and gauges (any v);
 *   fv_prom_set      gauges only;
 *   fv_prom_observe  histograms only; a NaN observation is dropped.
 * Calling one on the wrong type is a programmer error: asserted, ignored in release. */
void fv_prom_add(fv_prom_metric_t *m, const char *label_value, double v);
void fv_prom_set(fv_prom_metric_t *m, const char *label_value, double v);
void fv_prom_observe(fv_prom_metric_t *m, const char *label_value, double v);

/* The same for any number of labels: label_values has one entry per label name of the
 * family (NULL entries mean ""); NULL for an unlabelled family. */
void fv_prom_addv(fv_prom_metric_t *m, const char *const *label_values, double v);
void fv_prom_setv(fv_prom_metric_t *m, const char *const *label_values, double v);
void fv_prom_observev(fv_prom_metric_t *m, const char *const *label_values, double v);

/* Renders the registry in the text format 0.0.4: per family "# HELP", "# TYPE", then one
 * line per sample; histograms as name_bucket{...,le="..."} (cumulative, ending with
 * le="+Inf"), name_sum and name_count. Numbers print in the shortest form that reads
 * back to the same double ("+Inf", "-Inf", "NaN" spelled as Prometheus does); counts of
 * observations print as integers. Assumes the C locale's decimal point (the daemon never
 * calls setlocale). *ret_text is NUL-terminated, *ret_len excludes the NUL; the caller
 * frees *ret_text with free(). FV_ENOMEM. */
int fv_prom_render(const fv_prom_t *p, char **ret_text, size_t *ret_len);

/* ---- HTTP endpoint (libuv, daemon side) ------------------------------------------ */

typedef struct fv_prom_server fv_prom_server_t;

/* Listens on host (an IPv4 or IPv6 address literal, no name lookup) and port (0 = any
 * free port, see fv_prom_server_port()). p is borrowed: it must outlive the server until
 * the loop has run after fv_prom_server_stop(). Runs on loop's thread only.
 * Requests:
 *   GET /metrics[?query]  -> 200, Content-Type: text/plain; version=0.0.4; charset=utf-8
 *   GET any other path    -> 404
 *   any other method      -> 405 with Allow: GET
 *   malformed head        -> 400; HTTP version other than 1.0/1.1 -> 505
 *   head over the cap     -> 431
 * Every response carries Content-Length and Connection: close; the server then shuts
 * the connection down and closes it. A client that does not send its head, or does not
 * read the response, within FV_PROM_TIMEOUT_MS is closed.
 * Returns 0 and *ret (stop it with fv_prom_server_stop), FV_EINVAL (bad host or port),
 * FV_ENOMEM or a UV_E* code from bind/listen, with a sentence in d (may be NULL). */
int fv_prom_server_start(uv_loop_t *loop, const char *host, int port, fv_prom_t *p,
                         fv_prom_server_t **ret, fv_diag_t *d);

/* An optional probe around every callback the server's handles run that does work
 * (a connection accepted, bytes read and the answer rendered, a write or shutdown done, a
 * deadline): enter(ctx, name) before it, leave(ctx) after it; name is a static string
 * ("metrics.on_read", ...). The allocation and close callbacks, bookkeeping only, are not
 * probed. The daemon times its loop's callbacks with it. NULL functions: no probe. */
void fv_prom_server_set_probe(fv_prom_server_t *s, void (*enter)(void *ctx, const char *name),
                              void (*leave)(void *ctx), void *ctx);

/* fn(ctx) runs on the loop thread right before each render of a 200 answer (the daemon
 * refreshes sampled values there). NULL fn: none. */
void fv_prom_server_set_before_render(fv_prom_server_t *s, void (*fn)(void *ctx), void *ctx);

/* Connections evicted to make room (the oldest still sending its head) and closed at
 * once (no slot could be freed), since start. */
void fv_prom_server_stats(const fv_prom_server_t *s, uint64_t *ret_evicted, uint64_t *ret_refused);

/* The port actually bound (useful after port 0). */
int fv_prom_server_port(const fv_prom_server_t *s);

/* Closes the listener and every connection. Memory is freed in the close callbacks: run
 * the loop afterwards (then uv_loop_close() returns 0). s must not be used after this
 * call. NULL is fine. */
void fv_prom_server_stop(fv_prom_server_t *s);

#endif
