/* netpeer.c - a test peer for the transport: a server and a client over fv_conn.
 *
 * Test tool, not a product: the integration tests (net_*.py) start it as real processes
 * on 127.0.0.1 to drive the TLS stream end to end. It stands in for the coordinator and
 * the agent until those daemons exist, with exactly the transport they will use.
 *
 *   fv-netpeer serve --kit DIR [--listen HOST:PORT] [--admin-listen HOST:PORT]
 *                    [--crl FILE] [--max-frame N] [--handshake-timeout-ms N]
 *                    [--heartbeat-ms N] [--dead-ms N] [--max-queue N]
 *     Prints {"event":"listening","port":P,"admin_port":Q} on stdout, then one JSON line
 *     per event on stdout (open, close with err/why, crl_reloaded, vec_received). The
 *     main port accepts agents, the admin port admins only. Answers ECHO with
 *     ECHO_REPLY; an ECHO whose body is "send-vec N" makes it send back a vector of N
 *     floats (element i = i * 0.5, as float) after the reply. SIGHUP reloads the CRL;
 *     SIGUSR1 prints a "stats" line (fv_server_stats of the main port; also printed at
 *     the stop); SIGINT/SIGTERM stop it (exit 0). --max-unauth, --max-unauth-per-source,
 *     --max-handshakes, --max-handshakes-per-source set the caps on strangers.
 *
 *   fv-netpeer connect --kit DIR --to HOST:PORT [--echo N] [--send-vec N]
 *                      [--recv-vec N] [--hold-ms N] [--reconnect] [--max-attempts N]
 *                      [--min-connections N]
 *     Connects (as the kit's participant), sends N echoes, sends a vector of N floats
 *     (same content rule) and waits for its VEC_ACK, asks for a vector of N floats and
 *     checks its content, stays connected --hold-ms more, then closes with BYE. With
 *     --reconnect it reconnects after a loss (backoff 100 ms doubling to 2 s) and is done
 *     only after --min-connections successful opens (echoes are sent on every open). Prints
 *     one JSON result on stdout: ok, peer, echoes, vec_sent_acked, vec_received_ok,
 *     connections, max_rss_kb, err/why on failure. Exit 0 when everything asked for
 *     happened, 1 otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "fv_conn.h"
#include "fv_crypto.h"
#include "fv_tls.h"
#include "fv_wire.h"

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void emit(json_t *o)
{
    json_object_set_new(o, "rss_kb", json_integer(max_rss_kb()));
    char *s = json_dumps(o, JSON_COMPACT);
    if (s != NULL) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(s);
    }
    json_decref(o);
}

static json_t *identity_json(const fv_identity_t *id)
{
    return json_pack("{s:s,s:s,s:s}", "federation", id->federation, "name", id->name, "role",
                     fv_role_name(id->role));
}

static int split_hostport(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= cap)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static float *make_vec(uint64_t n)
{
    float *v = malloc(n * sizeof *v);
    if (v != NULL)
        for (uint64_t i = 0; i < n; i++)
            v[i] = (float)(i % 1000003) * 0.5f;
    return v;
}

static bool check_vec(const float *v, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (v[i] != (float)(i % 1000003) * 0.5f)
            return false;
    return true;
}

/* ---- common options --------------------------------------------------------------- */

typedef struct opts {
    const char *kit;
    const char *listen;
    const char *admin_listen;
    const char *crl;
    const char *to;
    fv_net_opts_t net;
    uint64_t echo, send_vec, recv_vec, hold_ms, max_attempts, min_connections;
    bool reconnect;
} opts_t;

static int parse_u64(const char *s, uint64_t *ret)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || s[0] == '\0' || s[0] == '-')
        return -1;
    *ret = v;
    return 0;
}

static int load_ctx(const opts_t *o, bool server, fv_tls_ctx_t **ret)
{
    char ca[1024], cert[1024], key[1024], crl[1024];
    snprintf(ca, sizeof ca, "%s/ca.pem", o->kit);
    snprintf(cert, sizeof cert, "%s/cert.pem", o->kit);
    snprintf(key, sizeof key, "%s/key.pem", o->kit);
    if (o->crl != NULL)
        snprintf(crl, sizeof crl, "%s", o->crl);
    fv_tls_opts_t to = {
        .ca_file = ca, .cert_file = cert, .key_file = key, .crl_file = o->crl != NULL ? crl : NULL};
    fv_diag_t d;
    int r = fv_tls_ctx_new(server, &to, ret, &d);
    if (r != 0)
        fprintf(stderr, "fv-netpeer: error: %s\n", d.msg);
    return r;
}

/* ---- server ---------------------------------------------------------------------- */

typedef struct srv {
    uv_loop_t *loop;
    fv_tls_ctx_t *ctx;
    fv_server_t *main, *admin;
    uv_signal_t sighup, sigint, sigterm, sigusr1;
} srv_t;

typedef struct srv_conn {
    void *rx;  /* vector being received */
    float *tx; /* vector being sent */
} srv_conn_t;

static srv_conn_t *sc_of(fv_conn_t *c)
{
    srv_conn_t *sc = fv_conn_get_data(c);
    if (sc == NULL) {
        sc = calloc(1, sizeof *sc);
        fv_conn_set_data(c, sc);
    }
    return sc;
}

static void srv_on_open(fv_conn_t *c, const fv_identity_t *peer)
{
    json_t *o = json_pack("{s:s,s:s,s:o}", "event", "open", "addr", fv_conn_peer_addr(c), "peer",
                          identity_json(peer));
    emit(o);
}

static void srv_on_msg(fv_conn_t *c, const fv_msg_t *m)
{
    if (m->type != FV_MSG_ECHO)
        return;
    fv_msg_t r = *m;
    r.type = FV_MSG_ECHO_REPLY;
    if (fv_conn_send(c, &r) != 0)
        return;
    char cmd[64];
    size_t n = m->u.echo.body_len < sizeof cmd - 1 ? m->u.echo.body_len : sizeof cmd - 1;
    memcpy(cmd, m->u.echo.body, n);
    cmd[n] = '\0';
    uint64_t want;
    if (strncmp(cmd, "send-vec ", 9) == 0 && parse_u64(cmd + 9, &want) == 0 && want > 0 &&
        want <= ((uint64_t)1 << 28)) {
        srv_conn_t *sc = sc_of(c);
        if (sc == NULL || sc->tx != NULL)
            return;
        sc->tx = make_vec(want);
        if (sc->tx == NULL || fv_conn_send_vec(c, 7, FV_VEC_F32, sc->tx, want, "test") != 0) {
            free(sc->tx);
            sc->tx = NULL;
        }
    }
}

static void *srv_on_vec_begin(fv_conn_t *c, const fv_msg_t *b)
{
    srv_conn_t *sc = sc_of(c);
    if (sc == NULL)
        return NULL;
    free(sc->rx);
    sc->rx = malloc(b->u.vec_begin.n_elems * FV_VEC_ELEM_BYTES);
    return sc->rx;
}

static void srv_on_vec(fv_conn_t *c, uint32_t id, void *vec, uint64_t n)
{
    srv_conn_t *sc = sc_of(c);
    bool ok = check_vec(vec, n);
    emit(json_pack("{s:s,s:s,s:i,s:I,s:b}", "event", "vec_received", "addr", fv_conn_peer_addr(c),
                   "id", (int)id, "n", (json_int_t)n, "content_ok", ok));
    free(sc->rx);
    sc->rx = NULL;
}

static void srv_on_vec_sent(fv_conn_t *c, uint32_t id)
{
    srv_conn_t *sc = sc_of(c);
    (void)id;
    free(sc->tx);
    sc->tx = NULL;
}

static void srv_on_close(fv_conn_t *c, int err, const char *why)
{
    const fv_identity_t *p = fv_conn_peer(c);
    json_t *o =
        json_pack("{s:s,s:s,s:i,s:s,s:s}", "event", err == 0 ? "close" : "refused", "addr",
                  fv_conn_peer_addr(c), "err", err, "err_name", fv_err_name(err), "why", why);
    if (p != NULL)
        json_object_set_new(o, "peer", identity_json(p));
    emit(o);
    srv_conn_t *sc = fv_conn_get_data(c);
    if (sc != NULL) {
        free(sc->rx);
        free(sc->tx);
        free(sc);
    }
}

static void emit_stats(fv_server_t *srv)
{
    fv_server_stats_t st;
    fv_server_stats(srv, &st);
    emit(json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "event", "stats", "accepted",
                   (json_int_t)st.accepted, "refused_unauth", (json_int_t)st.refused_unauth,
                   "refused_unauth_source", (json_int_t)st.refused_unauth_source,
                   "refused_handshakes", (json_int_t)st.refused_handshakes, "evicted",
                   (json_int_t)st.evicted, "handshake_timeouts", (json_int_t)st.handshake_timeouts,
                   "n_unauth", (json_int_t)st.n_unauth, "n_handshakes", (json_int_t)st.n_handshakes,
                   "peak_unauth", (json_int_t)st.peak_unauth));
}

static void srv_on_signal(uv_signal_t *h, int signum)
{
    srv_t *s = h->data;
    if (signum == SIGUSR1) {
        emit_stats(s->main);
        return;
    }
    if (signum == SIGHUP) {
        fv_diag_t d;
        int r = fv_tls_ctx_reload_crl(s->ctx, &d);
        if (r == 0)
            emit(json_pack("{s:s,s:I}", "event", "crl_reloaded", "revoked",
                           (json_int_t)fv_tls_ctx_crl_count(s->ctx)));
        else
            emit(json_pack("{s:s,s:s}", "event", "crl_reload_failed", "why", d.msg));
        return;
    }
    emit_stats(s->main);
    fv_server_stop(s->main);
    if (s->admin != NULL)
        fv_server_stop(s->admin);
    uv_close((uv_handle_t *)&s->sigusr1, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

static int cmd_serve(opts_t *o)
{
    srv_t s;
    memset(&s, 0, sizeof s);
    s.loop = uv_default_loop();
    if (load_ctx(o, true, &s.ctx) != 0)
        return 1;
    fv_conn_cbs_t cbs = {.on_open = srv_on_open,
                         .on_msg = srv_on_msg,
                         .on_vec_begin = srv_on_vec_begin,
                         .on_vec = srv_on_vec,
                         .on_vec_sent = srv_on_vec_sent,
                         .on_close = srv_on_close};
    char host[256];
    int port;
    if (split_hostport(o->listen, host, sizeof host, &port) != 0) {
        fprintf(stderr, "fv-netpeer: error: --listen %s: expected HOST:PORT\n", o->listen);
        return 2;
    }
    fv_net_opts_t main_opts = o->net;
    main_opts.allowed_roles = FV_ROLE_BIT(FV_ROLE_AGENT);
    int r = fv_server_start(s.loop, s.ctx, host, port, &main_opts, &cbs, &s, &s.main);
    if (r != 0) {
        fprintf(stderr, "fv-netpeer: error: listen on %s: %s\n", o->listen, fv_strerror(r));
        return 1;
    }
    int admin_port = -1;
    if (o->admin_listen != NULL) {
        fv_net_opts_t admin_opts = o->net;
        admin_opts.allowed_roles = FV_ROLE_BIT(FV_ROLE_ADMIN);
        if (split_hostport(o->admin_listen, host, sizeof host, &port) != 0)
            return 2;
        r = fv_server_start(s.loop, s.ctx, host, port, &admin_opts, &cbs, &s, &s.admin);
        if (r != 0) {
            fprintf(stderr, "fv-netpeer: error: listen on %s: %s\n", o->admin_listen,
                    fv_strerror(r));
            return 1;
        }
        admin_port = fv_server_port(s.admin);
    }
    uv_signal_init(s.loop, &s.sighup);
    uv_signal_init(s.loop, &s.sigint);
    uv_signal_init(s.loop, &s.sigterm);
    uv_signal_init(s.loop, &s.sigusr1);
    s.sighup.data = s.sigint.data = s.sigterm.data = s.sigusr1.data = &s;
    uv_signal_start(&s.sigusr1, srv_on_signal, SIGUSR1);
    uv_signal_start(&s.sighup, srv_on_signal, SIGHUP);
    uv_signal_start(&s.sigint, srv_on_signal, SIGINT);
    uv_signal_start(&s.sigterm, srv_on_signal, SIGTERM);
    emit(json_pack("{s:s,s:i,s:i}", "event", "listening", "port", fv_server_port(s.main),
                   "admin_port", admin_port));
    uv_run(s.loop, UV_RUN_DEFAULT);
    fv_tls_ctx_free(s.ctx);
    r = uv_loop_close(s.loop);
    emit(json_pack("{s:s,s:b}", "event", "stopped", "loop_closed", r == 0));
    return r == 0 ? 0 : 1;
}

/* ---- client ---------------------------------------------------------------------- */

typedef struct cli {
    opts_t *o;
    uv_loop_t *loop;
    fv_client_t *client;
    uv_timer_t hold;
    json_t *peer;
    uint64_t echoes_sent, echoes_ok;
    bool vec_sent_acked, vec_received_ok, vec_requested;
    float *tx, *rx;
    unsigned connections, closes;
    uint64_t t_send_ns, t_acked_ns, t_request_ns, t_received_ns; /* uv_hrtime */
    int err;
    char why[384];
    bool done, stopping;
} cli_t;

static void cli_stop(cli_t *c)
{
    if (c->stopping)
        return;
    c->stopping = true;
    uv_close((uv_handle_t *)&c->hold, NULL);
    fv_client_stop(c->client);
}

static bool cli_all_done(const cli_t *c)
{
    return c->connections >= c->o->min_connections && c->echoes_ok >= c->o->echo &&
           (c->o->send_vec == 0 || c->vec_sent_acked) &&
           (c->o->recv_vec == 0 || c->vec_received_ok);
}

static void on_hold(uv_timer_t *t)
{
    cli_t *c = t->data;
    c->done = true;
    cli_stop(c);
}

static void cli_check_done(cli_t *c)
{
    if (cli_all_done(c) && !c->done && !uv_is_active((uv_handle_t *)&c->hold))
        uv_timer_start(&c->hold, on_hold, c->o->hold_ms, 0);
}

static void cli_send_echo(cli_t *c, fv_conn_t *conn, const char *body)
{
    fv_msg_t m = {.type = FV_MSG_ECHO};
    m.u.echo.seq = ++c->echoes_sent;
    m.u.echo.body = (const uint8_t *)body;
    m.u.echo.body_len = strlen(body);
    fv_conn_send(conn, &m);
}

/* One vector in flight at a time: the one we receive is asked for after ours was
 * acknowledged, so each side holds one vector at its peak. */
static void cli_request_vec(cli_t *c, fv_conn_t *conn)
{
    if (c->o->recv_vec == 0 || c->vec_requested)
        return;
    char body[64];
    snprintf(body, sizeof body, "send-vec %" PRIu64, c->o->recv_vec);
    c->t_request_ns = uv_hrtime();
    cli_send_echo(c, conn, body);
    c->echoes_sent--; /* not counted as a test echo */
    c->vec_requested = true;
}

static void cli_on_open(fv_conn_t *conn, const fv_identity_t *peer)
{
    cli_t *c = fv_conn_get_data(conn);
    c->connections++;
    json_decref(c->peer);
    c->peer = identity_json(peer);
    for (uint64_t i = 0; i < c->o->echo; i++)
        cli_send_echo(c, conn, "hello from the client");
    if (c->o->send_vec == 0 || c->vec_sent_acked)
        cli_request_vec(c, conn);
    if (c->o->send_vec > 0 && !c->vec_sent_acked) {
        if (c->tx == NULL)
            c->tx = make_vec(c->o->send_vec);
        c->t_send_ns = uv_hrtime();
        if (c->tx == NULL ||
            fv_conn_send_vec(conn, 42, FV_VEC_F32, c->tx, c->o->send_vec, "test") != 0) {
            c->err = FV_ENOMEM;
            snprintf(c->why, sizeof c->why, "could not send the vector");
            cli_stop(c);
            return;
        }
    }
    cli_check_done(c);
}

static void cli_on_msg(fv_conn_t *conn, const fv_msg_t *m)
{
    cli_t *c = fv_conn_get_data(conn);
    if (m->type == FV_MSG_ECHO_REPLY) {
        static const char want[] = "hello from the client";
        if (m->u.echo.body_len == sizeof want - 1 &&
            memcmp(m->u.echo.body, want, sizeof want - 1) == 0)
            c->echoes_ok++;
    } else if (m->type == FV_MSG_VEC_ACK && m->u.vec_end.id == 42) {
        c->vec_sent_acked = true;
        c->t_acked_ns = uv_hrtime();
        free(c->tx);
        c->tx = NULL;
        cli_request_vec(c, conn);
    }
    cli_check_done(c);
}

static void *cli_on_vec_begin(fv_conn_t *conn, const fv_msg_t *b)
{
    cli_t *c = fv_conn_get_data(conn);
    if (b->u.vec_begin.n_elems != c->o->recv_vec)
        return NULL;
    free(c->rx);
    c->rx = malloc(b->u.vec_begin.n_elems * FV_VEC_ELEM_BYTES);
    return c->rx;
}

static void cli_on_vec(fv_conn_t *conn, uint32_t id, void *vec, uint64_t n)
{
    cli_t *c = fv_conn_get_data(conn);
    (void)id;
    c->t_received_ns = uv_hrtime();
    c->vec_received_ok = check_vec(vec, n);
    free(c->rx);
    c->rx = NULL;
    cli_check_done(c);
}

static void cli_on_close(fv_conn_t *conn, int err, const char *why)
{
    cli_t *c = fv_conn_get_data(conn);
    c->closes++;
    if (err != 0) {
        c->err = err;
        snprintf(c->why, sizeof c->why, "%s", why);
        fprintf(stderr, "fv-netpeer: connection closed: %s: %s\n", fv_err_name(err), why);
    }
    if (c->stopping)
        return;
    if (!c->o->reconnect || (c->o->max_attempts > 0 && c->closes >= c->o->max_attempts))
        cli_stop(c);
}

static int cmd_connect(opts_t *o)
{
    cli_t c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.loop = uv_default_loop();
    fv_tls_ctx_t *ctx;
    if (load_ctx(o, false, &ctx) != 0)
        return 1;
    char host[256];
    int port;
    if (o->to == NULL || split_hostport(o->to, host, sizeof host, &port) != 0) {
        fprintf(stderr, "fv-netpeer: error: --to HOST:PORT is required\n");
        fv_tls_ctx_free(ctx);
        return 2;
    }
    fv_conn_cbs_t cbs = {.on_open = cli_on_open,
                         .on_msg = cli_on_msg,
                         .on_vec_begin = cli_on_vec_begin,
                         .on_vec = cli_on_vec,
                         .on_close = cli_on_close};
    fv_client_opts_t copts;
    fv_client_opts_default(&copts);
    copts.backoff_base_ms = 100;
    copts.backoff_max_ms = 2000;
    fv_net_opts_t net = o->net;
    net.allowed_roles = FV_ROLE_BIT(FV_ROLE_COORDINATOR);
    uv_timer_init(c.loop, &c.hold);
    c.hold.data = &c;
    int r = fv_client_start(c.loop, ctx, host, port, &net, &copts, &cbs, &c, &c.client);
    if (r != 0) {
        fprintf(stderr, "fv-netpeer: error: %s\n", fv_strerror(r));
        return 1;
    }
    uv_run(c.loop, UV_RUN_DEFAULT);
    fv_tls_ctx_free(ctx);
    int lc = uv_loop_close(c.loop);
    bool ok = c.done && lc == 0;
    json_t *res =
        json_pack("{s:b,s:I,s:I,s:b,s:b,s:i,s:b}", "ok", ok, "echoes", (json_int_t)c.echoes_ok,
                  "connections", (json_int_t)c.connections, "vec_sent_acked", c.vec_sent_acked,
                  "vec_received_ok", c.vec_received_ok, "err", c.err, "loop_closed", lc == 0);
    json_object_set_new(res, "err_name", json_string(fv_err_name(c.err)));
    json_object_set_new(res, "why", json_string(c.why));
    /* Seconds from handing the vector to fv_conn to its VEC_ACK, and from asking for a
     * vector to holding it whole (digest checked): the transport's own time. */
    if (c.vec_sent_acked)
        json_object_set_new(res, "vec_send_s",
                            json_real((double)(c.t_acked_ns - c.t_send_ns) / 1e9));
    if (c.vec_received_ok)
        json_object_set_new(res, "vec_recv_s",
                            json_real((double)(c.t_received_ns - c.t_request_ns) / 1e9));
    if (c.peer != NULL)
        json_object_set_new(res, "peer", c.peer);
    emit(res);
    free(c.tx);
    free(c.rx);
    return ok ? 0 : 1;
}

/* ---- main ------------------------------------------------------------------------ */

static const char usage[] =
    "Usage: fv-netpeer serve --kit DIR [--listen HOST:PORT] [--admin-listen HOST:PORT]\n"
    "                        [--crl FILE] [net options]\n"
    "       fv-netpeer connect --kit DIR --to HOST:PORT [--echo N] [--send-vec N]\n"
    "                        [--recv-vec N] [--hold-ms N] [--reconnect]\n"
    "                        [--max-attempts N] [--min-connections N] [net options]\n"
    "net options: --max-frame BYTES --handshake-timeout-ms N --heartbeat-ms N --dead-ms N\n"
    "             --max-queue BYTES --chunk-elems N --max-unauth N\n"
    "             --max-unauth-per-source N --max-handshakes N --max-handshakes-per-source N\n"
    "serve: SIGUSR1 prints {\"event\":\"stats\",...} (fv_server_stats of the main port;\n"
    "       also printed at the stop)\n"
    "A test peer for fedvault's TLS transport (see the top of netpeer.c).\n";

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (sodium_init() < 0 || fv_crypto_init() != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    opts_t o;
    memset(&o, 0, sizeof o);
    o.listen = "127.0.0.1:0";
    fv_net_opts_default(&o.net);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u = 0;
        bool num = v != NULL && parse_u64(v, &u) == 0;
        if (strcmp(a, "--reconnect") == 0) {
            o.reconnect = true;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "fv-netpeer: %s needs a value\n%s", a, usage);
            return 2;
        }
        i++;
        if (strcmp(a, "--kit") == 0)
            o.kit = v;
        else if (strcmp(a, "--listen") == 0)
            o.listen = v;
        else if (strcmp(a, "--admin-listen") == 0)
            o.admin_listen = v;
        else if (strcmp(a, "--crl") == 0)
            o.crl = v;
        else if (strcmp(a, "--to") == 0)
            o.to = v;
        else if (!num) {
            fprintf(stderr, "fv-netpeer: unknown option or bad number: %s %s\n%s", a, v, usage);
            return 2;
        } else if (strcmp(a, "--echo") == 0)
            o.echo = u;
        else if (strcmp(a, "--send-vec") == 0)
            o.send_vec = u;
        else if (strcmp(a, "--recv-vec") == 0)
            o.recv_vec = u;
        else if (strcmp(a, "--hold-ms") == 0)
            o.hold_ms = u;
        else if (strcmp(a, "--max-attempts") == 0)
            o.max_attempts = u;
        else if (strcmp(a, "--min-connections") == 0)
            o.min_connections = u;
        else if (strcmp(a, "--max-frame") == 0)
            o.net.lim.max_frame_bytes = (uint32_t)u;
        else if (strcmp(a, "--handshake-timeout-ms") == 0)
            o.net.handshake_timeout_ms = u;
        else if (strcmp(a, "--heartbeat-ms") == 0)
            o.net.heartbeat_ms = u;
        else if (strcmp(a, "--dead-ms") == 0)
            o.net.dead_ms = u;
        else if (strcmp(a, "--max-queue") == 0)
            o.net.max_queue_bytes = u;
        else if (strcmp(a, "--chunk-elems") == 0)
            o.net.chunk_elems = (uint32_t)u;
        else if (strcmp(a, "--max-unauth") == 0)
            o.net.max_unauth = (uint32_t)u;
        else if (strcmp(a, "--max-unauth-per-source") == 0)
            o.net.max_unauth_per_source = (uint32_t)u;
        else if (strcmp(a, "--max-handshakes") == 0)
            o.net.max_handshakes = (uint32_t)u;
        else if (strcmp(a, "--max-handshakes-per-source") == 0)
            o.net.max_handshakes_per_source = (uint32_t)u;
        else {
            fprintf(stderr, "fv-netpeer: unknown option %s\n%s", a, usage);
            return 2;
        }
    }
    if (o.kit == NULL) {
        fprintf(stderr, "fv-netpeer: --kit DIR is required\n%s", usage);
        return 2;
    }
    if (strcmp(argv[1], "serve") == 0)
        return cmd_serve(&o);
    if (strcmp(argv[1], "connect") == 0)
        return cmd_connect(&o);
    fprintf(stderr, "fv-netpeer: unknown mode %s\n%s", argv[1], usage);
    return 2;
}
