/* serve_http.c - fedvault-serve's HTTP/1.1 server: libuv TCP and Debian's http_parser
 * (libhttp-parser-dev), keep-alive and pipelining, one request at a time per connection.
 *
 * A connection (conn_t, freed when its two handles - the TCP stream and its timer - are
 * closed and no job is out) goes through:
 *   HEAD    reading the request head: the parser runs over every byte read; the head
 *           is capped at SERVE_MAX_HEAD_BYTES (431) and must be complete within
 *           --header-timeout-ms of its first byte (408); a connection that sends no
 *           byte of a next request within --idle-timeout-ms is closed without an answer;
 *   BODY    the head was fine: Content-Length over --max-body is 413 before a byte of
 *           the body is read, and a chunked body is counted as it comes (413 when it
 *           passes the cap); the body must be complete within --body-timeout-ms (408);
 *   BUSY    a complete request handed to serve_api.c: reading stops (the parser is
 *           paused, unparsed pipelined bytes wait in rbuf), no timer runs while the pool
 *           scores; the answer comes through fv__serve_http_respond;
 *   WRITING the answer queued (the timer bounds the write); then back to HEAD, parsing the
 *           bytes already buffered before reading more, or closing (Connection: close,
 *           HTTP/1.0 without keep-alive, or an error answer sent mid-request);
 *   CLOSING the handles are closing.
 * A job out holds the connection (job_out): if the peer goes away meanwhile, the handles
 * close but the struct lives until the job comes back (fv__serve_http_job_back).
 *
 * Caps, as coordinator/prom_http.c: at most --max-conns connections, at most
 * --max-conns-per-source (default max(4, max_conns/4)) from one address (more are closed
 * at once, counted). At the global cap a newcomer evicts a connection that is waiting
 * for a head (not one being answered): the oldest of the source holding the most such
 * connections if it holds two more than the newcomer's source, else the oldest of all;
 * only when none is waiting is the newcomer refused. So a flood of silent connections
 * costs its own slots, not a well-behaved caller's.
 *
 * TLS (--tls-cert, serve_tls.c): reads land in cbuf and go through the engine; the
 * plaintext is pulled into rbuf only in HEAD and BODY (the engine holds the rest while a
 * request is answered); an answer is encrypted into one buffer (wbody) and written.
 *
 * Threads: the loop thread only.
 */
#include "serve-int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#define RBUF_BYTES 65536
#define TLS_READ_BYTES 16384
#define LISTEN_BACKLOG 511

enum conn_state { ST_HEAD, ST_BODY, ST_BUSY, ST_WRITING, ST_CLOSING };

struct serve_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    struct http_state *h;
    serve_conn_t *next, *prev;
    enum conn_state state;
    int handles_open;
    bool job_out;
    bool close_after; /* answer then close */
    bool got_bytes;   /* of the current request */
    bool head_done;
    int error_status; /* set by a parser callback: answer it */
    const char *error_why;
    uint8_t src[16];
    http_parser parser;
    size_t head_bytes;
    char path[2048];
    size_t path_len;
    bool path_long;
    char hname[32]; /* the header name being read, if it fits */
    size_t hname_len;
    bool hname_ct, hname_expect, in_value;
    bool expect_continue; /* "Expect: 100-continue": say so before reading the body */
    char ctype[128];
    size_t ctype_len;
    char *body;
    size_t body_len, body_cap;
    char hdr[512];
    char *wbody;
    size_t rpos, rlen; /* unparsed bytes rbuf[rpos..rlen) */
    char rbuf[RBUF_BYTES];
    serve_tls_t *tls;          /* with --tls-cert: rbuf holds the plaintext */
    char cbuf[TLS_READ_BYTES]; /* ciphertext read target */
};

typedef struct http_state {
    serve_t *s;
    uv_tcp_t tcp;
    serve_conn_t *conns; /* newest first */
    size_t n_live;
    uint64_t refused, evicted;
    bool listener_open, stopping;
    int port;
    http_parser_settings settings;
} http_t;

static void conn_parse(serve_conn_t *c);

/* The server's struct goes when the listener is closed and the last connection freed
 * (a connection with a job out outlives the stop until the pool gives the job back). */
static void http_maybe_free(http_t *h)
{
    if (h->stopping && !h->listener_open && h->conns == NULL) {
        h->s->http = NULL;
        free(h);
    }
}

/* ---- closing ------------------------------------------------------------------------ */

static void conn_maybe_free(serve_conn_t *c)
{
    if (c->handles_open > 0 || c->job_out)
        return;
    http_t *h = c->h;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->body);
    free(c->wbody);
    fv__serve_tls_free(c->tls);
    free(c);
    http_maybe_free(h);
}

static void conn_handle_closed(uv_handle_t *hd)
{
    serve_conn_t *c = hd->data;
    c->handles_open--;
    conn_maybe_free(c);
}

static void conn_close(serve_conn_t *c)
{
    if (c->state == ST_CLOSING)
        return;
    c->state = ST_CLOSING;
    c->h->n_live--;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
    serve_conn_t *c = t->data;
    if (c->state == ST_HEAD && !c->got_bytes) {
        conn_close(c); /* idle keep-alive connection */
        return;
    }
    if (c->state == ST_HEAD || c->state == ST_BODY) {
        c->close_after = true;
        fv__serve_http_error(c, 408,
                             c->state == ST_HEAD
                                 ? "request head not complete within the header timeout"
                                 : "request body not complete within the body timeout");
        return;
    }
    conn_close(c); /* a write that did not finish */
}

/* ---- writing ------------------------------------------------------------------------ */

static const char *status_text(int status)
{
    static const struct {
        int status;
        const char *text;
    } texts[] = {{200, "OK"},
                 {400, "Bad Request"},
                 {404, "Not Found"},
                 {405, "Method Not Allowed"},
                 {408, "Request Timeout"},
                 {413, "Content Too Large"},
                 {415, "Unsupported Media Type"},
                 {422, "Unprocessable Content"},
                 {431, "Request Header Fields Too Large"},
                 {503, "Service Unavailable"},
                 {505, "HTTP Version Not Supported"}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (texts[i].status == status)
            return texts[i].text;
    return "Internal Server Error";
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static int tls_flush(serve_conn_t *c)
{
    return fv__serve_tls_flush(c->tls, (uv_stream_t *)&c->tcp);
}

/* Decrypts what the engine holds into rbuf (compacted first). 0 or an error. */
static int tls_pull(serve_conn_t *c)
{
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    int r = fv__serve_tls_pull(c->tls, c->rbuf, &c->rlen, sizeof c->rbuf);
    return r != 0 ? r : tls_flush(c);
}

static void conn_next_request(serve_conn_t *c)
{
    c->state = ST_HEAD;
    c->got_bytes = false;
    c->head_done = false;
    c->head_bytes = 0;
    c->path_len = 0;
    c->path_long = false;
    c->hname_len = 0;
    c->ctype_len = 0;
    c->body_len = 0;
    c->error_status = 0;
    http_parser_pause(&c->parser, 0);
    (void)uv_timer_start(&c->timer, on_timeout, c->h->s->cfg->idle_timeout_ms, 0);
    if (c->tls != NULL && tls_pull(c) != 0) {
        conn_close(c);
        return;
    }
    if (c->rpos < c->rlen) {
        conn_parse(c); /* pipelined bytes first */
        if (c->state != ST_HEAD && c->state != ST_BODY)
            return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

static void on_write(uv_write_t *req, int status)
{
    serve_conn_t *c = req->data;
    free(c->wbody);
    c->wbody = NULL;
    if (c->state != ST_WRITING)
        return; /* closing already */
    if (status < 0 || c->close_after || c->h->s->stopping) {
        conn_close(c);
        return;
    }
    conn_next_request(c);
}

void fv__serve_http_respond(serve_conn_t *c, int status, const char *content_type, char *body,
                            size_t body_len, const char *extra_headers)
{
    if (c->state == ST_CLOSING || c->state == ST_WRITING) {
        free(body);
        return;
    }
    (void)uv_read_stop((uv_stream_t *)&c->tcp);
    if (!http_should_keep_alive(&c->parser) || !c->head_done)
        c->close_after = true;
    if (status >= 400 && c->state != ST_BUSY)
        c->close_after = true; /* refused mid-request: the rest of it is not read */
    c->wbody = body;
    int n = snprintf(c->hdr, sizeof c->hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, status_text(status), content_type, body_len,
                     extra_headers != NULL ? extra_headers : "",
                     c->close_after ? "Connection: close\r\n" : "");
    assert(n > 0 && (size_t)n < sizeof c->hdr);
    uv_buf_t bufs[2] = {uv_buf_init(c->hdr, (unsigned)n),
                        uv_buf_init(body != NULL ? body : c->hdr, (unsigned)body_len)};
    unsigned n_bufs = body_len > 0 ? 2 : 1;
    if (c->tls != NULL) { /* one buffer of ciphertext replaces the two */
        char *cipher = NULL;
        size_t clen = 0;
        int r = fv__serve_tls_write(c->tls, c->hdr, (size_t)n);
        if (r == 0)
            r = fv__serve_tls_write(c->tls, body, body_len);
        if (r == 0)
            r = fv__serve_tls_take(c->tls, &cipher, &clen);
        free(c->wbody);
        c->wbody = cipher;
        if (r != 0 || cipher == NULL) {
            conn_close(c);
            return;
        }
        bufs[0] = uv_buf_init(cipher, (unsigned)clen);
        n_bufs = 1;
    }
    c->state = ST_WRITING;
    c->wreq.data = c;
    (void)uv_timer_start(&c->timer, on_timeout, c->h->s->cfg->body_timeout_ms, 0);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n_bufs, on_write) != 0) {
        free(c->wbody);
        c->wbody = NULL;
        conn_close(c);
    }
}

void fv__serve_http_error(serve_conn_t *c, int status, const char *why)
{
    json_t *o = json_pack("{s:s}", "error", why);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL) {
        conn_close(c);
        return;
    }
    size_t n = strlen(text);
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    fv_prom_add(c->h->s->m_http, code, 1);
    fv__serve_http_respond(c, status, "application/json", text, n, NULL);
}

void fv__serve_http_job_out(serve_conn_t *c)
{
    c->job_out = true;
}

bool fv__serve_http_job_back(serve_conn_t *c)
{
    c->job_out = false;
    if (c->state == ST_CLOSING) {
        conn_maybe_free(c);
        return false;
    }
    return true;
}

/* ---- parsing ------------------------------------------------------------------------ */

static serve_conn_t *conn_of(http_parser *p)
{
    return p->data;
}

static int head_add(serve_conn_t *c, size_t n)
{
    c->head_bytes += n;
    if (c->head_bytes > SERVE_MAX_HEAD_BYTES) {
        c->error_status = 431;
        c->error_why = "request head over 8192 bytes";
        return 1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    serve_conn_t *c = conn_of(p);
    c->got_bytes = true; /* the head's deadline runs from its first byte */
    (void)uv_timer_start(&c->timer, on_timeout, c->h->s->cfg->header_timeout_ms, 0);
    c->expect_continue = false;
    c->hname_expect = false;
    c->hname_len = 0;
    c->hname_ct = false;
    c->in_value = false;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    serve_conn_t *c = conn_of(p);
    if (head_add(c, n))
        return 1;
    if (c->path_len + n >= sizeof c->path) {
        c->path_long = true;
        return 0;
    }
    memcpy(c->path + c->path_len, at, n);
    c->path_len += n;
    return 0;
}

/* A field name or value may come in several calls (split across reads). */
static int on_header_field(http_parser *p, const char *at, size_t n)
{
    serve_conn_t *c = conn_of(p);
    if (head_add(c, n + 4))
        return 1;
    if (c->in_value) { /* a new header starts */
        c->hname_len = 0;
        c->in_value = false;
    }
    if (c->hname_len + n < sizeof c->hname) {
        memcpy(c->hname + c->hname_len, at, n);
        c->hname_len += n;
    } else {
        c->hname_len = sizeof c->hname; /* too long to be one we read */
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    serve_conn_t *c = conn_of(p);
    if (head_add(c, n))
        return 1;
    if (!c->in_value) {
        c->in_value = true;
        c->hname_ct = c->hname_len == 12 && strncasecmp(c->hname, "content-type", 12) == 0;
        if (c->hname_ct)
            c->ctype_len = 0;
        c->hname_expect = c->hname_len == 6 && strncasecmp(c->hname, "expect", 6) == 0;
    }
    if (c->hname_expect && n >= 12 && strncasecmp(at, "100-continue", 12) == 0)
        c->expect_continue = true;
    if (c->hname_ct && c->ctype_len + n < sizeof c->ctype) {
        memcpy(c->ctype + c->ctype_len, at, n);
        c->ctype_len += n;
    }
    return 0;
}

/* application/json, optionally with parameters ("; charset=utf-8"). */
static bool ctype_is_json(const serve_conn_t *c)
{
    const char *t = "application/json";
    size_t n = strlen(t);
    if (c->ctype_len < n || strncasecmp(c->ctype, t, n) != 0)
        return false;
    return c->ctype_len == n || c->ctype[n] == ';' || c->ctype[n] == ' ';
}

static int on_headers_complete(http_parser *p)
{
    serve_conn_t *c = conn_of(p);
    c->head_done = true;
    c->state = ST_BODY;
    (void)uv_timer_start(&c->timer, on_timeout, c->h->s->cfg->body_timeout_ms, 0);
    if (c->path_long) {
        c->error_status = 431;
        c->error_why = "request target over 2047 bytes";
        return -1; /* 1 would mean "skip the body" to http_parser */
    }
    if (p->http_major != 1) {
        c->error_status = 505;
        c->error_why = "only HTTP/1.x is served";
        return -1;
    }
    /* Content-Length over the cap: refused before a byte of the body is read */
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->h->s->cfg->max_body) {
        c->error_status = 413;
        c->error_why = "request body over --max-body";
        return -1;
    }
    if (c->expect_continue) { /* 25 bytes into an empty socket buffer: a try is enough */
        static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init(cont, sizeof cont - 1);
        (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    serve_conn_t *c = conn_of(p);
    size_t cap = c->h->s->cfg->max_body;
    if (n > cap - c->body_len) { /* a chunked body passing the cap */
        c->error_status = 413;
        c->error_why = "request body over --max-body";
        return 1;
    }
    if (c->body_len + n > c->body_cap) {
        size_t nc = c->body_cap ? c->body_cap : 4096;
        while (nc < c->body_len + n)
            nc *= 2;
        if (nc > cap)
            nc = cap;
        char *nb = realloc(c->body, nc);
        if (nb == NULL) {
            c->error_status = 500;
            c->error_why = "out of memory";
            return 1;
        }
        c->body = nb;
        c->body_cap = nc;
    }
    memcpy(c->body + c->body_len, at, n);
    c->body_len += n;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    serve_conn_t *c = conn_of(p);
    c->state = ST_BUSY;
    (void)uv_timer_stop(&c->timer);
    http_parser_pause(p, 1); /* one request at a time: the rest waits in rbuf */
    return 0;
}

/* Runs the parser over the buffered bytes; dispatches a complete request. */
static void conn_parse(serve_conn_t *c)
{
    http_t *h = c->h;
    size_t n = c->rlen - c->rpos;
    if (n == 0)
        return; /* 0 bytes would tell http_parser "EOF" (a TLS record not complete yet) */
    size_t used = http_parser_execute(&c->parser, &h->settings, c->rbuf + c->rpos, n);
    c->rpos += used;
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->error_status != 0) {
        fv__serve_http_error(c, c->error_status, c->error_why);
        return;
    }
    if (c->state == ST_BUSY) {
        (void)uv_read_stop((uv_stream_t *)&c->tcp);
        const char *path = c->path;
        size_t plen = c->path_len;
        const char *q = memchr(path, '?', plen);
        if (q != NULL)
            plen = (size_t)(q - path);
        fv__serve_api_request(h->s, c, (int)c->parser.method, path, plen, c->body, c->body_len,
                              ctype_is_json(c));
        return;
    }
    if (e != HPE_OK) {
        char why[160];
        snprintf(why, sizeof why, "malformed request: %s", http_errno_description(e));
        fv__serve_http_error(c, 400, why);
    }
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    serve_conn_t *c = hd->data;
    if (c->tls != NULL) {
        *buf = uv_buf_init(c->cbuf, sizeof c->cbuf);
        return;
    }
    if (c->rpos > 0) { /* compact */
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(sizeof c->rbuf - c->rlen));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    serve_conn_t *c = st->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        conn_close(c); /* EOF or error: nothing more to answer */
        return;
    }
    if (c->tls != NULL) {
        if (fv__serve_tls_feed(c->tls, c->cbuf, (size_t)nread) != 0 || tls_flush(c) != 0 ||
            ((c->state == ST_HEAD || c->state == ST_BODY) && tls_pull(c) != 0)) {
            conn_close(c); /* a failed handshake (no or a refused client certificate) */
            return;
        }
    } else {
        c->rlen += (size_t)nread;
    }
    if (c->state != ST_HEAD && c->state != ST_BODY)
        return; /* kept for after the answer */
    conn_parse(c);
}

/* ---- accepting ---------------------------------------------------------------------- */

static void addr_key(const struct sockaddr_storage *ss, uint8_t out[16])
{
    memset(out, 0, 16);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    }
}

static size_t count_source(http_t *h, const uint8_t src[16], bool waiting_only)
{
    size_t n = 0;
    for (serve_conn_t *c = h->conns; c != NULL; c = c->next)
        if (c->state != ST_CLOSING && memcmp(c->src, src, 16) == 0 &&
            (!waiting_only || c->state == ST_HEAD))
            n++;
    return n;
}

/* At the global cap: a connection to evict for a newcomer from src, or NULL. */
static serve_conn_t *pick_victim(http_t *h, const uint8_t src[16])
{
    serve_conn_t *oldest = NULL, *worst = NULL;
    size_t worst_n = 0;
    for (serve_conn_t *c = h->conns; c != NULL; c = c->next) {
        if (c->state != ST_HEAD)
            continue;
        oldest = c; /* the list is newest first */
        size_t n = count_source(h, c->src, true);
        if (n >= worst_n) {
            worst_n = n;
            worst = c;
        }
    }
    if (worst != NULL && worst_n >= count_source(h, src, true) + 2) {
        serve_conn_t *v = worst;
        for (serve_conn_t *c = worst; c != NULL; c = c->next)
            if (c->state == ST_HEAD && memcmp(c->src, worst->src, 16) == 0)
                v = c;
        return v;
    }
    return oldest;
}

static void on_refused_closed(uv_handle_t *hd)
{
    free(hd);
}

static void on_connection(uv_stream_t *server, int status)
{
    http_t *h = server->data;
    serve_t *s = h->s;
    if (status < 0 || s->stopping)
        return;
    serve_conn_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        uv_tcp_t *t = malloc(sizeof *t);
        if (t != NULL && uv_tcp_init(s->loop, t) == 0 && uv_accept(server, (uv_stream_t *)t) == 0)
            uv_close((uv_handle_t *)t, on_refused_closed);
        else
            free(t);
        return;
    }
    c->h = h;
    (void)uv_tcp_init(s->loop, &c->tcp);
    (void)uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    c->state = ST_HEAD;
    c->next = h->conns;
    if (h->conns != NULL)
        h->conns->prev = c;
    h->conns = c;
    h->n_live++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        addr_key(&ss, c->src);
    (void)uv_tcp_nodelay(&c->tcp, 1);
    if (count_source(h, c->src, false) > s->cfg->max_conns_per_source) {
        h->refused++;
        fv_prom_add(s->m_conns_refused, "per_source", 1);
        conn_close(c);
        return;
    }
    if (h->n_live > s->cfg->max_conns) {
        serve_conn_t *v = pick_victim(h, c->src);
        if (v == NULL || v == c) {
            h->refused++;
            fv_prom_add(s->m_conns_refused, "global", 1);
            conn_close(c);
            return;
        }
        h->evicted++;
        fv_prom_add(s->m_conns_refused, "evicted", 1);
        conn_close(v);
    }
    if (s->tls_ctx != NULL && (c->tls = fv__serve_tls_new(s->tls_ctx)) == NULL) {
        conn_close(c);
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    conn_next_request(c);
}

/* ---- start and stop ----------------------------------------------------------------- */

int fv__serve_http_start(serve_t *s, fv_diag_t *d)
{
    http_t *h = calloc(1, sizeof *h);
    if (h == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    h->s = s;
    h->settings.on_message_begin = on_message_begin;
    h->settings.on_url = on_url;
    h->settings.on_header_field = on_header_field;
    h->settings.on_header_value = on_header_value;
    h->settings.on_headers_complete = on_headers_complete;
    h->settings.on_body = on_body;
    h->settings.on_message_complete = on_message_complete;
    struct sockaddr_storage ss;
    int r = uv_ip4_addr(s->cfg->host, s->cfg->port, (struct sockaddr_in *)&ss);
    if (r != 0)
        r = uv_ip6_addr(s->cfg->host, s->cfg->port, (struct sockaddr_in6 *)&ss);
    if (r != 0) {
        free(h);
        return fv_diag_set(d, FV_EINVAL, "--listen: '%s' is not an IPv4 or IPv6 address",
                           s->cfg->host);
    }
    (void)uv_tcp_init(s->loop, &h->tcp);
    h->tcp.data = h;
    h->listener_open = true;
    s->http = h;
    r = uv_tcp_bind(&h->tcp, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&h->tcp, LISTEN_BACKLOG, on_connection);
    if (r != 0)
        return fv_diag_set(d, r, "--listen %s:%d: %s", s->cfg->host, s->cfg->port, uv_strerror(r));
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    if (uv_tcp_getsockname(&h->tcp, (struct sockaddr *)&bound, &blen) == 0)
        h->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                   : ((struct sockaddr_in6 *)&bound)->sin6_port);
    return 0;
}

int fv__serve_http_port(serve_t *s)
{
    return ((http_t *)s->http)->port;
}

void fv__serve_http_stats(serve_t *s, uint64_t *ret_live, uint64_t *ret_refused,
                          uint64_t *ret_evicted)
{
    http_t *h = s->http;
    *ret_live = h->n_live;
    *ret_refused = h->refused;
    *ret_evicted = h->evicted;
}

static void on_listener_closed(uv_handle_t *hd)
{
    http_t *h = hd->data;
    h->listener_open = false;
    http_maybe_free(h);
}

/* Closes the listener and every connection; connections with a job out are freed when
 * it comes back (the pool is drained before the loop's last run). */
void fv__serve_http_stop(serve_t *s)
{
    http_t *h = s->http;
    if (h == NULL)
        return;
    for (serve_conn_t *c = h->conns, *next; c != NULL; c = next) {
        next = c->next;
        conn_close(c);
    }
    h->stopping = true;
    uv_close((uv_handle_t *)&h->tcp, on_listener_closed);
}
