/* prom_http.c - the plain-HTTP /metrics endpoint of the Prometheus registry (see fv_prom.h
 * for the contract). The registry and its rendering are prom.c; this file uses them only
 * through fv_prom_render.
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
 * safe at any time, from any callback. A client's bytes are hostile: the head is bounded
 * (FV_PROM_MAX_HEAD_BYTES, else 431) and checked byte by byte, it must be complete within
 * FV_PROM_TIMEOUT_MS of the accept, and connections are capped: FV_PROM_MAX_CONNS live
 * ones (n_live), FV_PROM_MAX_CONNS_PER_SOURCE from one address (over it: closed at once).
 * At the global cap a new connection evicts one still waiting for its head: the oldest
 * of the source holding the most such connections if it holds two more than the
 * newcomer's source (a scraper, one connection from its own address, is then never the
 * one evicted by a flood from elsewhere, even when the loop accepts a burst of
 * newcomers before it reads the scraper's request), else the oldest of all. So slow or
 * silent clients cost each other their slots, not the scraper its answer (200 slow
 * clients made every scrape fail when the newcomer was always the one refused). Only
 * when every slot is answering or lingering (bounded by the timeouts) is the newcomer
 * closed at once.
 * Evictions and refusals are counted (fv_prom_server_stats). An optional hook runs just
 * before each render (fv_prom_server_set_before_render), so the daemon can refresh
 * gauges and counters it only samples.
 *
 * The callbacks that do work run between the daemon's probe calls, if it set a probe
 * (fv_prom_server_set_probe); a probe never changes what the server does.
 *
 * Ownership: the server borrows the registry, and owns its connections and their bodies.
 * Threading: everything runs on the loop thread; no locks.
 */
#include "fv_prom.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    uint8_t src[16]; /* the client's address (IPv4 mapped), for the per-source cap */
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
    conn_t *conns;   /* newest first */
    size_t n_conns;
    size_t n_live; /* not yet ST_CLOSING: what the cap counts */
    uint64_t n_evicted, n_refused;
    void (*before_render)(void *ctx);
    void *before_render_ctx;
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
    c->server->n_live--;
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
        body = strdup(msg);
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
    if (c->server->before_render != NULL)
        c->server->before_render(c->server->before_render_ctx);
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

/* c was just accepted (counted in n_live, at the list's head): may it stay? Makes room
 * at the global cap (see the top note); false when it must be closed at once. */
static bool conn_admit(fv_prom_server_t *s, conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return false;
    if (ss.ss_family == AF_INET) {
        c->src[10] = c->src[11] = 0xff;
        memcpy(c->src + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        memcpy(c->src, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    }
    /* per source, and who waits for its head: at most FV_PROM_MAX_CONNS entries */
    size_t mine = 0;
    for (conn_t *o = s->conns; o != NULL; o = o->next)
        if (o != c && o->state != ST_CLOSING && memcmp(o->src, c->src, 16) == 0)
            mine++;
    if (mine >= FV_PROM_MAX_CONNS_PER_SOURCE)
        return false;
    if (s->n_live <= FV_PROM_MAX_CONNS)
        return true;
    conn_t *victim = NULL, *oldest = NULL;
    size_t heavy_n = 0, mine_waiting = 0;
    for (conn_t *o = s->conns; o != NULL; o = o->next) {
        if (o == c || o->state != ST_READ_HEAD)
            continue;
        oldest = o; /* newest first: the last one is the oldest */
        size_t n = 0;
        conn_t *first = NULL;
        for (conn_t *q = s->conns; q != NULL; q = q->next)
            if (q != c && q->state == ST_READ_HEAD && memcmp(q->src, o->src, 16) == 0) {
                n++;
                first = q; /* the source's oldest */
            }
        if (memcmp(o->src, c->src, 16) == 0)
            mine_waiting = n;
        if (n >= heavy_n) { /* ties: the later visited, older, wins */
            heavy_n = n;
            victim = first;
        }
    }
    if (victim == NULL || heavy_n < mine_waiting + 2)
        victim = oldest;
    if (victim == NULL)
        return false;
    conn_close(victim); /* its memory goes in its close callbacks */
    s->n_evicted++;
    return true;
}

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
    conn_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        s->n_refused++;
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
    s->n_live++;
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
        s->n_live--;
        uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
        return;
    }
    c->timer.data = c;
    c->handles_open = 2;
    r = uv_accept(ls, (uv_stream_t *)&c->tcp);
    if (r == 0 && !conn_admit(s, c)) {
        s->n_refused++;
        conn_close(c);
        return;
    }
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

void fv_prom_server_set_before_render(fv_prom_server_t *s, void (*fn)(void *ctx), void *ctx)
{
    s->before_render = fn;
    s->before_render_ctx = ctx;
}

void fv_prom_server_stats(const fv_prom_server_t *s, uint64_t *ret_evicted, uint64_t *ret_refused)
{
    *ret_evicted = s->n_evicted;
    *ret_refused = s->n_refused;
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
