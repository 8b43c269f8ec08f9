/* serve_admin.c - fedvault-serve's admin socket: a unix stream socket (mode 0600, at
 * --admin-socket, default <model-dir>/serve.sock), one JSON object per line in, one per
 * line out, in order. Whoever can open the socket is the operator (file permissions are
 * the authentication, as for the coordinator's admin socket).
 *
 * Commands (one table, `commands`):
 *   {"cmd":"status"}                    the /v1/models object
 *   {"cmd":"promote"}                   canary -> stable (fv_route_promote)
 *   {"cmd":"rollback"}                  canary withdrawn, else the previous stable back
 *   {"cmd":"canary","percent":P}        0..100
 *   {"cmd":"shadow","on":true|false}
 *   {"cmd":"reload"}                    re-reads --ca/--crl and scans the model directory
 *                                       now; answered when the scan is applied
 * and with FV_TEST_SERVE=1 the test hooks:
 *   {"cmd":"test.clock","advance_ms":N} advances the route's manual clock
 *   {"cmd":"test.delay","label":L,"us":N} makes N us the latency recorded for label L
 *                                       (a real sleep with FV_TEST_SERVE_SLEEP=1)
 *   {"cmd":"test.fail","label":L,"on":B} label L's scoring fails
 * Answers: {"ok":true, ...} or {"ok":false,"error":"sentence"}. The switch commands return
 * after the route's pointer swap: every request routed after the answer gets the new
 * version. A line over LINE_MAX bytes closes the connection; at most MAX_CLIENTS at once.
 *
 * Threads: the loop thread only.
 */
#include "serve-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096
#define MAX_CLIENTS 16

typedef struct admin admin_t;

typedef struct aclient {
    uv_pipe_t pipe;
    admin_t *a;
    struct aclient *next;
    char buf[LINE_MAX_BYTES];
    size_t len;
    bool closing, closed;
    bool waiting; /* a reload is pending: reading paused */
} aclient_t;

struct admin {
    serve_t *s;
    uv_pipe_t listener;
    aclient_t *clients;
    size_t n_clients;
    bool stopped, listener_closed;
};

typedef struct awrite {
    uv_write_t req;
    char *text;
} awrite_t;

static void admin_maybe_free(admin_t *a)
{
    if (a->stopped && a->listener_closed && a->clients == NULL)
        free(a);
}

/* Freed when its handle is closed and no reload waits on it. */
static void client_maybe_free(aclient_t *c)
{
    if (!c->closed || c->waiting)
        return;
    admin_t *a = c->a;
    for (aclient_t **p = &a->clients; *p != NULL; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    a->n_clients--;
    free(c);
    admin_maybe_free(a);
}

static void client_closed(uv_handle_t *h)
{
    aclient_t *c = h->data;
    c->closed = true;
    client_maybe_free(c);
}

static void client_close(aclient_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->pipe, client_closed);
}

static void on_awrite(uv_write_t *req, int status)
{
    awrite_t *w = (awrite_t *)req;
    (void)status;
    free(w->text);
    free(w);
}

/* Sends o (taken) as one line. */
static void client_send(aclient_t *c, json_t *o)
{
    char *t = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    awrite_t *w = malloc(sizeof *w);
    if (t == NULL || w == NULL || c->closing) {
        free(t);
        free(w);
        client_close(c);
        return;
    }
    size_t n = strlen(t);
    t[n] = '\n'; /* json_dumps' NUL becomes the newline: send n + 1 bytes */
    w->text = t;
    uv_buf_t b = uv_buf_init(t, (unsigned)n + 1);
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_awrite) != 0) {
        free(t);
        free(w);
        client_close(c);
    }
}

static json_t *err(const char *why)
{
    return json_pack("{s:b,s:s}", "ok", 0, "error", why);
}

static json_t *ok(void)
{
    return json_pack("{s:b}", "ok", 1);
}

static json_t *err_diag(const fv_diag_t *d, int r)
{
    return err(d->msg[0] ? d->msg : fv_strerror(r));
}

static int label_arg(json_t *req, fv_release_label_t *ret)
{
    const char *l = json_string_value(json_object_get(req, "label"));
    return l != NULL ? fv_release_label_parse(l, ret) : FV_EINVAL;
}

static void on_client_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void client_lines(aclient_t *c);

/* The reload's scan was applied: answer and read on. */
static void reload_done(void *arg)
{
    aclient_t *c = arg;
    c->waiting = false;
    if (c->closing) {
        client_maybe_free(c);
        return;
    }
    json_t *o = ok();
    json_object_set_new(o, "models", fv__serve_models_json(c->a->s));
    client_send(c, o);
    client_lines(c); /* lines that came with the reload */
    if (!c->closing && !c->waiting &&
        uv_read_start((uv_stream_t *)&c->pipe, on_client_alloc, on_client_read) != 0)
        client_close(c);
}

/* Runs one command; NULL when the answer comes later (reload). */
static json_t *run(aclient_t *c, json_t *req)
{
    serve_t *s = c->a->s;
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    fv_diag_t d = {""};
    int r;
    if (cmd == NULL)
        return err("each line must be a JSON object with a string \"cmd\"");
    if (strcmp(cmd, "status") == 0) {
        json_t *o = ok();
        json_object_set_new(o, "models", fv__serve_models_json(s));
        return o;
    }
    if (strcmp(cmd, "promote") == 0)
        return (r = fv_route_promote(s->route, &d)) == 0 ? ok() : err_diag(&d, r);
    if (strcmp(cmd, "rollback") == 0)
        return (r = fv_route_rollback(s->route, &d)) == 0 ? ok() : err_diag(&d, r);
    if (strcmp(cmd, "canary") == 0) {
        json_t *p = json_object_get(req, "percent");
        if (!json_is_number(p))
            return err("canary: \"percent\" must be a number 0..100");
        r = fv_route_set_canary_percent(s->route, json_number_value(p), &d);
        return r == 0 ? ok() : err_diag(&d, r);
    }
    if (strcmp(cmd, "shadow") == 0) {
        json_t *on = json_object_get(req, "on");
        if (!json_is_boolean(on))
            return err("shadow: \"on\" must be true or false");
        fv_route_set_shadow(s->route, json_is_true(on));
        return ok();
    }
    if (strcmp(cmd, "reload") == 0) {
        c->waiting = true;
        fv__serve_models_rescan(s, reload_done, c);
        return NULL;
    }
    if (strncmp(cmd, "test.", 5) == 0 && !s->cfg->test_hooks)
        return err("test hooks need FV_TEST_SERVE=1 in the server's environment");
    fv_release_label_t l;
    if (strcmp(cmd, "test.clock") == 0) {
        json_t *ms = json_object_get(req, "advance_ms");
        if (!json_is_integer(ms) || json_integer_value(ms) < 0)
            return err("test.clock: \"advance_ms\" must be an integer >= 0");
        atomic_fetch_add(&s->clock_us, (uint64_t)json_integer_value(ms) * 1000);
        return json_pack("{s:b,s:I}", "ok", 1, "clock_us", (json_int_t)atomic_load(&s->clock_us));
    }
    if (strcmp(cmd, "test.delay") == 0) {
        json_t *us = json_object_get(req, "us");
        if (label_arg(req, &l) != 0 || !json_is_integer(us) || json_integer_value(us) < 0)
            return err("test.delay: \"label\" (stable|canary|backup) and \"us\" >= 0");
        atomic_store(&s->delay_us[l], (uint64_t)json_integer_value(us));
        return ok();
    }
    if (strcmp(cmd, "test.fail") == 0) {
        json_t *on = json_object_get(req, "on");
        if (label_arg(req, &l) != 0 || !json_is_boolean(on))
            return err("test.fail: \"label\" (stable|canary|backup) and \"on\" true|false");
        atomic_store(&s->fail[l], json_is_true(on));
        return ok();
    }
    return err("unknown command (status, promote, rollback, canary, shadow, reload)");
}

/* Runs the complete lines in the buffer, stopping at a pending reload. */
static void client_lines(aclient_t *c)
{
    while (!c->waiting && !c->closing) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl == NULL)
            break;
        *nl = '\0';
        json_error_t je;
        json_t *req = json_loads(c->buf, 0, &je);
        size_t used = (size_t)(nl - c->buf) + 1;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        json_t *ans;
        if (req == NULL || !json_is_object(req)) {
            char why[256];
            snprintf(why, sizeof why, "not a JSON object: %s", req == NULL ? je.text : "");
            ans = err(why);
        } else {
            ans = run(c, req);
        }
        json_decref(req);
        if (ans != NULL)
            client_send(c, ans);
    }
    if (c->waiting)
        (void)uv_read_stop((uv_stream_t *)&c->pipe);
}

static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    aclient_t *c = h->data;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void on_client_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    aclient_t *c = st->data;
    if (nread < 0) {
        client_close(c);
        return;
    }
    c->len += (size_t)nread;
    client_lines(c);
    if (c->len == sizeof c->buf)
        client_close(c); /* a line over the cap */
}

static void on_admin_conn(uv_stream_t *server, int status)
{
    admin_t *a = server->data;
    if (status < 0)
        return;
    aclient_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->a = a;
    (void)uv_pipe_init(a->s->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = a->clients;
    a->clients = c;
    a->n_clients++;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 || a->n_clients > MAX_CLIENTS ||
        uv_read_start((uv_stream_t *)&c->pipe, on_client_alloc, on_client_read) != 0)
        client_close(c);
}

int fv__serve_admin_start(serve_t *s, fv_diag_t *d)
{
    admin_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    a->s = s;
    s->admin = a;
    const char *path = s->cfg->admin_socket;
    (void)unlink(path); /* a stale socket of an earlier run */
    (void)uv_pipe_init(s->loop, &a->listener, 0);
    a->listener.data = a;
    mode_t old = umask(077);
    int r = uv_pipe_bind(&a->listener, path);
    umask(old);
    if (r == 0)
        r = chmod(path, 0600) == 0 ? 0 : UV_EPERM;
    if (r == 0)
        r = uv_listen((uv_stream_t *)&a->listener, 8, on_admin_conn);
    if (r != 0)
        return fv_diag_set(d, r, "--admin-socket %s: %s", path, uv_strerror(r));
    return 0;
}

static void admin_closed(uv_handle_t *h)
{
    admin_t *a = h->data;
    a->listener_closed = true;
    admin_maybe_free(a);
}

void fv__serve_admin_stop(serve_t *s)
{
    admin_t *a = s->admin;
    if (a == NULL)
        return;
    for (aclient_t *c = a->clients; c != NULL; c = c->next)
        client_close(c);
    (void)unlink(s->cfg->admin_socket);
    s->admin = NULL;
    a->stopped = true;
    uv_close((uv_handle_t *)&a->listener, admin_closed);
}
