/* conn.c - framed TLS connections on libuv (see fv_conn.h for the contract).
 *
 * Data path, per connection:
 *   socket --read 64 KiB--> fv_tls_feed --> handshake / fv_tls_read --> fv_framer -->
 *   fv_wire_decode --> handled here (HELLO, PING, PONG, BYE, ERROR, VEC_*) or on_msg.
 *   fv_conn_send --> fv_wire_encode (one reused buffer) --> fv_tls_write --> drain the
 *   ciphertext into one heap block per write --> uv_write; the block is freed in the
 *   write callback, and `queued` counts blocks not yet written. The optional send tap
 *   (cbs.on_send) sees each encoded frame between the encoder and fv_tls_write, and may
 *   withhold it (the agent's audit log records every frame before it leaves).
 *
 * Memory bounds (what a peer can make us hold): the read buffer (64 KiB, one per server
 * since every read is consumed before the callback returns; one per client connection),
 * the plaintext buffer (64 KiB, made when the peer is authenticated), the TLS engine's
 * input (we read it out after every feed; the engine is made at the first bytes), one frame
 * body (the framer, <= max_frame_bytes), one encoded frame, and our own write queue
 * (<= max_queue_bytes for messages; vectors are pumped under low_water_bytes). A vector
 * being received lives in the application's buffer, announced and capped first.
 *
 * States: HANDSHAKE (TLS in progress) -> HELLO (TLS up, peer verified, waiting for the
 * peer's HELLO) -> OPEN -> CLOSING (final frames flushed, shutdown under a linger timer)
 * -> handles closing -> freed after on_close. The struct goes only in uv_close callbacks
 * (two handles per connection: tcp and timer); the engine and the buffers go at
 * fv_conn_close, after its last flush (nothing reads them once the state is CLOSING).
 *
 * Strangers (server side, see fv_conn.h): a connection is counted in the server's
 * unauthenticated totals from accept until ST_OPEN or close, and in the handshake totals
 * from its TLS engine's creation until ST_HELLO or close (src_acquire/src_release). The
 * per-source counts live in an open-addressing table keyed by the source address (IPv6:
 * its /64), hashed with a random per-server key (crypto_shorthash) so a peer cannot aim
 * at one slot; it holds at most max_unauth entries (an entry dies with its last
 * connection), in twice as many slots. A connection refused at accept is closed without
 * being handed on (no on_close); the server stays alive until its close callbacks ran.
 *
 * Threading: everything runs on the loop thread; no locks.
 */
#include "fv_conn.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fv_log.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <errno.h>
#include <sys/resource.h>

#define READ_BUF_BYTES 65536
#define WRITE_SLICE_BYTES 65536
#define LINGER_MS 2000
#define FRAME_OVERHEAD 64  /* msgpack keys around a chunk's data, generous */
#define SUMMARY_MS 10000   /* at most one "net_refused" line per server this often */
#define TRIM_AFTER_PEAK 64 /* strangers at once that make the end of a flood worth a trim */
#define LISTEN_BACKLOG 1024

enum conn_state { ST_CONNECTING, ST_HANDSHAKE, ST_HELLO, ST_OPEN, ST_CLOSING, ST_CLOSED };

typedef struct wreq {
    uv_write_t req;
    fv_conn_t *conn;
    size_t len;
    uint8_t data[];
} wreq_t;

struct fv_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    int handles_open;
    uv_loop_t *loop;
    fv_tls_ctx_t *ctx; /* borrowed, for the engine made at the first bytes */
    fv_tls_t *tls;     /* NULL until then, and again after close */
    fv_net_opts_t opts;
    fv_conn_cbs_t cbs;
    void *data;
    fv_server_t *server;
    fv_client_t *client;
    fv_conn_t *next, *prev; /* server's list (connections handed on only) */
    bool handed;            /* on_close is owed (not for those refused at a cap) */
    bool listed;            /* in the server's list */
    bool unauth_counted, hs_counted;
    uint8_t src_key[16]; /* the source (server side): IPv4 mapped, IPv6 /64 */
    char peer_addr[288]; /* host (<= 255) + ":" + port */
    enum conn_state state;
    bool peer_known;
    fv_identity_t peer;
    uint32_t peer_max_frame;
    bool bye_received;
    bool finishing; /* uv_close called */
    fv_framer_t framer;
    fv_buf_t enc;
    size_t queued;
    uint64_t bytes_rx, bytes_tx; /* socket bytes, TLS records included */
    bool above_low_water;
    uint64_t t_start_ms, last_rx_ms, last_tx_ms;
    uint64_t ping_seq;
    bool vtx_active;
    fv_vec_tx_t vtx;
    bool vrx_active;
    fv_vec_rx_t vrx;
    void *vrx_dst;
    int close_err;
    char close_why[384];
    uint8_t *rbuf; /* client connections only, made at the first read; servers share one */
    uint8_t *pbuf; /* READ_BUF_BYTES, made at ST_HELLO, freed at close */
};

typedef struct src_ent {
    uint8_t key[16];
    uint32_t n_unauth, n_hs; /* n_hs <= n_unauth; the entry is free when n_unauth == 0 */
} src_ent_t;

struct fv_server {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    fv_tls_ctx_t *ctx;
    fv_net_opts_t opts;
    fv_conn_cbs_t cbs;
    void *data;
    fv_conn_t *conns;
    size_t n_conns;
    size_t n_refused_closing; /* refused at accept, handles not yet closed */
    bool stopping;
    bool listener_closed;
    bool summary_closed;
    int port;
    uint8_t rbuf[READ_BUF_BYTES]; /* every server connection reads here (see on_alloc) */
    src_ent_t *src;               /* src_cap slots (power of two) */
    size_t src_cap;
    uint8_t src_hkey[crypto_shorthash_KEYBYTES];
    fv_server_stats_t st;
    uint32_t peak_since_trim;
    uv_timer_t summary; /* the refusals' summary line */
    bool summary_armed;
    fv_server_stats_t st_logged; /* counters at the last summary */
};

struct fv_client {
    uv_timer_t retry;
    uv_getaddrinfo_t gai;
    bool gai_pending;
    uv_loop_t *loop;
    fv_tls_ctx_t *ctx;
    char host[256];
    int port;
    fv_net_opts_t opts;
    fv_client_opts_t copts;
    fv_conn_cbs_t cbs;
    void *data;
    fv_conn_t *conn;
    unsigned attempts;
    bool stopping;
    bool retry_closed;
};

static void conn_close_fmt(fv_conn_t *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_finish(fv_conn_t *c);
static void client_schedule(fv_client_t *cl);
static void client_maybe_free(fv_client_t *cl);
static void server_maybe_free(fv_server_t *s);

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* ---- options ------------------------------------------------------------------- */

void fv_net_opts_default(fv_net_opts_t *o)
{
    memset(o, 0, sizeof *o);
    fv_wire_limits_default(&o->lim);
    o->handshake_timeout_ms = 5000;
    o->heartbeat_ms = 5000;
    o->dead_ms = 30000;
    o->max_queue_bytes = (size_t)64 << 20;
    o->low_water_bytes = (size_t)4 << 20;
    o->chunk_elems = 256u << 10;
    o->allowed_roles =
        FV_ROLE_BIT(FV_ROLE_COORDINATOR) | FV_ROLE_BIT(FV_ROLE_AGENT) | FV_ROLE_BIT(FV_ROLE_ADMIN);
    o->max_unauth = 512;
    o->max_unauth_per_source = 32;
    o->max_handshakes = 128;
    o->max_handshakes_per_source = 8;
}

void fv_client_opts_default(fv_client_opts_t *o)
{
    o->backoff_base_ms = 500;
    o->backoff_max_ms = 30000;
    o->reconnect = true;
}

uint64_t fv_backoff_delay_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, uint32_t rnd)
{
    uint64_t cap = base_ms;
    for (unsigned i = 0; i < attempt && cap != 0 && cap < max_ms; i++)
        cap = cap > UINT64_MAX / 2 ? UINT64_MAX : cap * 2;
    if (cap > max_ms)
        cap = max_ms;
    uint64_t half = cap / 2;
    return (cap - half) + (half == 0 ? 0 : (uint64_t)rnd % (half + 1));
}

/* ---- accessors ------------------------------------------------------------------- */

void fv_conn_set_data(fv_conn_t *c, void *data)
{
    c->data = data;
}
void *fv_conn_get_data(const fv_conn_t *c)
{
    return c->data;
}
const char *fv_conn_peer_addr(const fv_conn_t *c)
{
    return c->peer_addr;
}
const fv_identity_t *fv_conn_peer(const fv_conn_t *c)
{
    return c->peer_known ? &c->peer : NULL;
}
int fv_conn_peer_der(const fv_conn_t *c, const uint8_t **ret_der, size_t *ret_len)
{
    if (!c->peer_known || c->tls == NULL)
        return FV_EPHASE;
    return fv_tls_peer_der(c->tls, ret_der, ret_len);
}
bool fv_conn_is_open(const fv_conn_t *c)
{
    return c->state == ST_OPEN;
}
size_t fv_conn_queued_bytes(const fv_conn_t *c)
{
    return c->queued;
}
void fv_conn_traffic(const fv_conn_t *c, uint64_t *ret_in, uint64_t *ret_out)
{
    *ret_in = c->bytes_rx;
    *ret_out = c->bytes_tx;
}
fv_server_t *fv_conn_server(const fv_conn_t *c)
{
    return c->server;
}
fv_client_t *fv_conn_client(const fv_conn_t *c)
{
    return c->client;
}
int fv_server_port(const fv_server_t *s)
{
    return s->port;
}
void *fv_server_get_data(const fv_server_t *s)
{
    return s->data;
}
size_t fv_server_n_conns(const fv_server_t *s)
{
    return s->n_conns;
}
void *fv_client_get_data(const fv_client_t *cl)
{
    return cl->data;
}
fv_conn_t *fv_client_conn(const fv_client_t *cl)
{
    return cl->conn != NULL && cl->conn->state < ST_CLOSING ? cl->conn : NULL;
}
unsigned fv_client_attempts(const fv_client_t *cl)
{
    return cl->attempts;
}

/* ---- connection object ------------------------------------------------------------ */

static fv_conn_t *conn_new(uv_loop_t *loop, fv_tls_ctx_t *ctx, const fv_net_opts_t *opts,
                           const fv_conn_cbs_t *cbs)
{
    fv_conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->loop = loop;
    c->ctx = ctx;
    c->handed = true;
    c->opts = *opts;
    c->cbs = *cbs;
    c->peer_max_frame = opts->lim.max_frame_bytes;
    fv_framer_init(&c->framer, &opts->lim);
    snprintf(c->peer_addr, sizeof c->peer_addr, "?");
    if (uv_tcp_init(loop, &c->tcp) != 0) {
        free(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->t_start_ms = c->last_rx_ms = c->last_tx_ms = uv_now(loop);
    return c;
}

static void conn_set_peer_addr(fv_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[48] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
        snprintf(c->peer_addr, sizeof c->peer_addr, "%s:%d", ip, port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        snprintf(c->peer_addr, sizeof c->peer_addr, "[%s]:%d", ip, port);
    }
}

/* What only reading and sending need: gone at close, or with the struct. */
static void conn_release_engine(fv_conn_t *c)
{
    fv_tls_free(c->tls);
    c->tls = NULL;
    fv_framer_close(&c->framer);
    fv_buf_free(&c->enc);
    free(c->pbuf);
    c->pbuf = NULL;
    free(c->rbuf);
    c->rbuf = NULL;
}

static void conn_free(fv_conn_t *c)
{
    conn_release_engine(c);
    if (c->vtx_active)
        fv_vec_tx_close(&c->vtx);
    free(c);
}

/* ---- strangers' accounting (servers) ----------------------------------------------- */

static size_t src_slot(const fv_server_t *s, const uint8_t key[16])
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, 16, s->src_hkey);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return (size_t)v & (s->src_cap - 1);
}

/* The entry of key, made (zeroed) if absent; NULL only without a table. */
static src_ent_t *src_get(fv_server_t *s, const uint8_t key[16])
{
    if (s->src == NULL)
        return NULL;
    size_t mask = s->src_cap - 1;
    for (size_t i = src_slot(s, key);; i = (i + 1) & mask) {
        src_ent_t *e = &s->src[i];
        if (e->n_unauth == 0) {
            memcpy(e->key, key, 16);
            return e;
        }
        if (memcmp(e->key, key, 16) == 0)
            return e;
    }
}

/* Removes the emptied entry at slot i (linear probing, backward-shift deletion: no
 * tombstones, so lookups stay short however many sources came and went). */
static void src_delete(fv_server_t *s, size_t i)
{
    size_t mask = s->src_cap - 1;
    for (size_t j = (i + 1) & mask; s->src[j].n_unauth != 0; j = (j + 1) & mask) {
        size_t k = src_slot(s, s->src[j].key);
        /* j's entry may move to i when its home k is not cyclically in (i, j] */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            s->src[i] = s->src[j];
            i = j;
        }
    }
    memset(&s->src[i], 0, sizeof s->src[i]);
}

static void src_key_of(const struct sockaddr_storage *ss, uint8_t key[16])
{
    memset(key, 0, 16);
    if (ss->ss_family == AF_INET) {
        key[10] = key[11] = 0xff; /* ::ffff:a.b.c.d */
        memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(key, a, memcmp(a, v4mapped, 12) == 0 ? 16 : 8); /* one peer holds a /64 */
    }
}

static void on_summary(uv_timer_t *t);

/* One rate-limited line for everything refused since the last one. */
static void server_note_refusal(fv_server_t *s)
{
    if (s->summary_armed || s->stopping)
        return;
    s->summary_armed = true;
    uv_timer_start(&s->summary, on_summary, SUMMARY_MS, 0);
}

static void on_summary(uv_timer_t *t)
{
    fv_server_t *s = t->data;
    const fv_server_stats_t *n = &s->st, *o = &s->st_logged;
    s->summary_armed = false;
    json_t *f = json_pack("{s:i,s:i,s:i,s:i}", "port", s->port, "window_s", SUMMARY_MS / 1000,
                          "unauth_now", (int)n->n_unauth, "peak_unauth", (int)n->peak_unauth);
    const struct {
        const char *name;
        uint64_t now, then;
    } d[] = {
        {"over_unauth", n->refused_unauth, o->refused_unauth},
        {"over_unauth_per_source", n->refused_unauth_source, o->refused_unauth_source},
        {"over_handshakes", n->refused_handshakes, o->refused_handshakes},
        {"evicted", n->evicted, o->evicted},
        {"handshake_timeouts", n->handshake_timeouts, o->handshake_timeouts},
        {"accept_errors", n->accept_errors, o->accept_errors},
    };
    for (size_t i = 0; f != NULL && i < sizeof d / sizeof d[0]; i++)
        json_object_set_new(f, d[i].name, json_integer((json_int_t)(d[i].now - d[i].then)));
    fv_log_json(FV_LOG_WARN, "net_refused", f);
    s->st_logged = s->st;
}

/* At a global cap, max-min fairness between sources: the oldest stranger (hs: the
 * oldest handshake) of the source that holds the most, if it holds at least two more than
 * the newcomer's source, else NULL. Then many flooding sources cannot keep a quiet one
 * out by filling the global cap together: they would need max_unauth sources of one
 * connection each. O(table + connections), paid only at the global cap. */
static fv_conn_t *src_victim(fv_server_t *s, const uint8_t key[16], bool hs)
{
    if (s->src == NULL)
        return NULL;
    const src_ent_t *heavy = NULL;
    uint32_t heavy_n = 0, mine_n = 0;
    for (size_t i = 0; i < s->src_cap; i++) {
        const src_ent_t *e = &s->src[i];
        if (e->n_unauth == 0)
            continue;
        uint32_t n = hs ? e->n_hs : e->n_unauth;
        if (memcmp(e->key, key, 16) == 0)
            mine_n = n;
        if (n > heavy_n) {
            heavy = e;
            heavy_n = n;
        }
    }
    if (heavy == NULL || heavy_n < mine_n + 2)
        return NULL;
    fv_conn_t *victim = NULL; /* the list is newest first: the last match is the oldest */
    for (fv_conn_t *c = s->conns; c != NULL; c = c->next)
        if ((hs ? c->hs_counted : c->unauth_counted) && c->state < ST_CLOSING &&
            memcmp(c->src_key, heavy->key, 16) == 0)
            victim = c;
    return victim;
}

static void src_evict(fv_server_t *s, fv_conn_t *victim)
{
    s->st.evicted++;
    server_note_refusal(s);
    victim->handed = false; /* counted, not reported one by one */
    fv_conn_close(victim, UV_EBUSY, "evicted for a stranger from a quieter source");
}

/* Counts c as a stranger (at accept). 0, or the counter c was refused under. */
static uint64_t *src_admit(fv_server_t *s, fv_conn_t *c)
{
    const fv_net_opts_t *o = &s->opts;
    if (o->max_unauth != 0 && s->st.n_unauth >= o->max_unauth) {
        fv_conn_t *v = src_victim(s, c->src_key, false);
        if (v == NULL)
            return &s->st.refused_unauth;
        src_evict(s, v);
    }
    src_ent_t *e = src_get(s, c->src_key);
    if (e != NULL && o->max_unauth_per_source != 0 && e->n_unauth >= o->max_unauth_per_source)
        return &s->st.refused_unauth_source;
    if (e != NULL)
        e->n_unauth++;
    c->unauth_counted = true;
    s->st.n_unauth++;
    if (s->st.n_unauth > s->st.peak_unauth)
        s->st.peak_unauth = s->st.n_unauth;
    if (s->st.n_unauth > s->peak_since_trim)
        s->peak_since_trim = s->st.n_unauth;
    return NULL;
}

/* Counts c's TLS engine (at its first bytes). false: over a cap (counted). */
static bool src_admit_handshake(fv_server_t *s, fv_conn_t *c)
{
    const fv_net_opts_t *o = &s->opts;
    if (o->max_handshakes != 0 && s->st.n_handshakes >= o->max_handshakes) {
        fv_conn_t *v = src_victim(s, c->src_key, true);
        if (v != NULL)
            src_evict(s, v);
    }
    src_ent_t *e = src_get(s, c->src_key);
    if ((o->max_handshakes != 0 && s->st.n_handshakes >= o->max_handshakes) ||
        (e != NULL && o->max_handshakes_per_source != 0 &&
         e->n_hs >= o->max_handshakes_per_source)) {
        s->st.refused_handshakes++;
        server_note_refusal(s);
        return false;
    }
    if (e != NULL)
        e->n_hs++;
    c->hs_counted = true;
    s->st.n_handshakes++;
    return true;
}

/* Ends c's handshake and, with unauth, its stranger status (both idempotent). */
static void src_release(fv_conn_t *c, bool unauth)
{
    fv_server_t *s = c->server;
    if (s == NULL || (!c->hs_counted && !(unauth && c->unauth_counted)))
        return;
    src_ent_t *e = src_get(s, c->src_key);
    if (c->hs_counted) {
        c->hs_counted = false;
        s->st.n_handshakes--;
        if (e != NULL)
            e->n_hs--;
    }
    if (unauth && c->unauth_counted) {
        c->unauth_counted = false;
        s->st.n_unauth--;
        if (e != NULL && --e->n_unauth == 0)
            src_delete(s, (size_t)(e - s->src));
    }
}

/* After a flood glibc keeps the freed heap; give it back once the strangers are gone. */
static void server_maybe_trim(fv_server_t *s)
{
    if (s->st.n_unauth != 0 || s->n_refused_closing != 0 || s->peak_since_trim < TRIM_AFTER_PEAK)
        return;
    /* Strangers' engines and buffers went at their close; what may linger (under
     * LINGER_MS) is their small structs, which do not pin much. */
    s->peak_since_trim = 0;
    s->st.trims++;
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

/* Both handles closed: tell the application, unlink, free. */
static void conn_handle_closed(uv_handle_t *h)
{
    fv_conn_t *c = h->data;
    if (--c->handles_open > 0)
        return;
    c->state = ST_CLOSED;
    if (c->handed && c->cbs.on_close != NULL)
        c->cbs.on_close(c, c->close_err, c->close_why);
    fv_server_t *s = c->server;
    fv_client_t *cl = c->client;
    if (s != NULL && !c->listed) {
        s->n_refused_closing--;
        conn_free(c);
        server_maybe_trim(s);
        server_maybe_free(s);
        return;
    }
    if (s != NULL) {
        if (c->prev != NULL)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next != NULL)
            c->next->prev = c->prev;
        s->n_conns--;
    }
    conn_free(c);
    if (s != NULL) {
        server_maybe_trim(s);
        server_maybe_free(s);
    }
    if (cl != NULL) {
        cl->conn = NULL;
        if (cl->stopping || !cl->copts.reconnect)
            client_maybe_free(cl);
        else
            client_schedule(cl);
    }
}

static void conn_finish(fv_conn_t *c)
{
    if (c->finishing)
        return;
    c->finishing = true;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

/* ---- writing --------------------------------------------------------------------- */

static void pump_vec(fv_conn_t *c);

static void on_write(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    fv_conn_t *c = w->conn;
    c->queued -= w->len;
    free(w);
    if (status < 0) {
        if (c->state < ST_CLOSING)
            conn_close_fmt(c, status, "write to %s failed: %s", c->peer_addr, uv_strerror(status));
        return;
    }
    if (c->state != ST_OPEN)
        return;
    if (c->vtx_active && c->queued < c->opts.low_water_bytes)
        pump_vec(c);
    if (c->above_low_water && c->queued < c->opts.low_water_bytes && c->state == ST_OPEN) {
        c->above_low_water = false;
        if (c->cbs.on_drain != NULL)
            c->cbs.on_drain(c);
    }
}

/* Hands every pending ciphertext byte to libuv as one write. */
static int conn_flush(fv_conn_t *c)
{
    if (c->tls == NULL)
        return 0;
    size_t n = fv_tls_pending(c->tls);
    if (n == 0)
        return 0;
    wreq_t *w = malloc(sizeof *w + n);
    if (w == NULL)
        return FV_ENOMEM;
    w->conn = c;
    w->len = fv_tls_drain(c->tls, w->data, n);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (r != 0) {
        free(w);
        return r;
    }
    c->queued += w->len;
    c->bytes_tx += w->len;
    c->last_tx_ms = uv_now(c->loop);
    if (c->queued >= c->opts.low_water_bytes)
        c->above_low_water = true;
    return 0;
}

static const char *peer_label(const fv_conn_t *c, char *buf, size_t cap)
{
    if (c->peer_known)
        snprintf(buf, cap, "%s (%s %s)", c->peer_addr, fv_role_name(c->peer.role), c->peer.name);
    else
        snprintf(buf, cap, "%s", c->peer_addr);
    return buf;
}

/* Encodes and queues m. enforce_cap: drop the peer rather than pass max_queue_bytes. */
static int conn_send_internal(fv_conn_t *c, const fv_msg_t *m, bool enforce_cap)
{
    fv_wire_limits_t lim = c->opts.lim;
    if (c->peer_max_frame < lim.max_frame_bytes)
        lim.max_frame_bytes = c->peer_max_frame;
    c->enc.len = 0;
    int r = fv_wire_encode(m, &lim, &c->enc);
    if (r != 0)
        return r;
    if (enforce_cap && c->queued + c->enc.len > c->opts.max_queue_bytes) {
        char who[384];
        conn_close_fmt(c, UV_ENOBUFS,
                       "peer %s is not reading: %zu bytes queued, a %s message of %zu bytes "
                       "would pass the cap of %zu",
                       peer_label(c, who, sizeof who), c->queued, fv_msg_type_name(m->type),
                       c->enc.len, c->opts.max_queue_bytes);
        return UV_ENOBUFS;
    }
    if (c->cbs.on_send != NULL) {
        r = c->cbs.on_send(c, m, c->enc.data + FV_WIRE_HEADER_BYTES,
                           c->enc.len - FV_WIRE_HEADER_BYTES);
        if (r != 0) {
            char who[384];
            c->enc.len = 0;
            if (c->state < ST_CLOSING)
                conn_close_fmt(c, r, "%s to %s withheld by this side: %s",
                               fv_msg_type_name(m->type), peer_label(c, who, sizeof who),
                               fv_strerror(r));
            return r;
        }
    }
    /* Encrypt and hand to libuv in slices: the TLS output buffer then never holds more
     * than a slice, whatever the frame size (it keeps its largest size for the
     * connection's life). */
    for (size_t off = 0; r == 0 && off < c->enc.len; off += WRITE_SLICE_BYTES) {
        size_t n = c->enc.len - off < WRITE_SLICE_BYTES ? c->enc.len - off : WRITE_SLICE_BYTES;
        r = fv_tls_write(c->tls, c->enc.data + off, n);
        if (r == 0)
            r = conn_flush(c);
    }
    if (c->enc.cap > ((size_t)1 << 20) + 4096 && m->type != FV_MSG_VEC_CHUNK) {
        fv_buf_free(&c->enc); /* do not keep a large buffer for small messages */
    }
    if (r != 0 && c->state < ST_CLOSING)
        conn_close_fmt(c, r, "sending %s to %s failed: %s", fv_msg_type_name(m->type), c->peer_addr,
                       fv_strerror(r));
    return r;
}

int fv_conn_send(fv_conn_t *c, const fv_msg_t *m)
{
    if (c->state != ST_OPEN)
        return UV_ENOTCONN;
    return conn_send_internal(c, m, true);
}

static void pump_vec(fv_conn_t *c)
{
    while (c->vtx_active && c->state == ST_OPEN && c->queued < c->opts.low_water_bytes) {
        fv_msg_t m;
        if (fv_vec_tx_next(&c->vtx, &m) == 0) {
            uint32_t id = c->vtx.id;
            fv_vec_tx_close(&c->vtx);
            c->vtx_active = false;
            fv_buf_free(&c->enc); /* chunk-sized: not kept for small messages */
            if (c->cbs.on_vec_sent != NULL)
                c->cbs.on_vec_sent(c, id);
            return;
        }
        if (conn_send_internal(c, &m, false) != 0)
            return;
    }
}

int fv_conn_send_vec(fv_conn_t *c, uint32_t id, fv_vec_dtype_t dtype, const void *vec,
                     uint64_t n_elems, const char *name)
{
    if (c->state != ST_OPEN)
        return UV_ENOTCONN;
    if (c->vtx_active)
        return UV_EBUSY;
    uint32_t chunk = c->opts.chunk_elems;
    uint32_t fit = (c->peer_max_frame - FRAME_OVERHEAD) / FV_VEC_ELEM_BYTES;
    if (chunk > fit)
        chunk = fit;
    int r = fv_vec_tx_init(&c->vtx, id, dtype, vec, n_elems, chunk, name);
    if (r != 0)
        return r;
    c->vtx_active = true;
    pump_vec(c);
    return 0;
}

/* ---- closing --------------------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    conn_finish(req->data);
}

static void on_linger(uv_timer_t *t)
{
    conn_finish(t->data);
}

void fv_conn_close(fv_conn_t *c, int err, const char *why)
{
    if (c->state >= ST_CLOSING)
        return;
    c->close_err = err;
    snprintf(c->close_why, sizeof c->close_why, "%s", why != NULL ? why : "");
    enum conn_state was = c->state;
    c->state = ST_CLOSING;
    if (c->vtx_active) {
        fv_vec_tx_close(&c->vtx);
        c->vtx_active = false;
    }
    if (was == ST_HELLO || was == ST_OPEN) {
        /* The last frames bypass the queue cap: they are small and bounded. */
        fv_msg_t m;
        memset(&m, 0, sizeof m);
        if (err == 0) {
            if (!c->bye_received) {
                m.type = FV_MSG_BYE;
                m.u.bye.reason.ptr = c->close_why;
                m.u.bye.reason.len = strnlen(c->close_why, FV_WIRE_TEXT_MAX);
                conn_send_internal(c, &m, false);
            }
        } else if (err != FV_EPEER) { /* FV_EPEER: the peer's own ERROR; no echo */
            m.type = FV_MSG_ERROR;
            m.u.error.code = err;
            m.u.error.reason.ptr = c->close_why;
            m.u.error.reason.len = strnlen(c->close_why, FV_WIRE_TEXT_MAX);
            conn_send_internal(c, &m, false);
        }
    }
    if (was >= ST_HANDSHAKE && c->tls != NULL) {
        if (was != ST_HANDSHAKE)
            fv_tls_shutdown(c->tls);
        conn_flush(c); /* close_notify, or the TLS alert of a failed handshake */
    }
    conn_release_engine(c); /* the ciphertext left is in libuv's write requests */
    src_release(c, true);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    if (was == ST_CONNECTING) {
        conn_finish(c);
        return;
    }
    uv_timer_start(&c->timer, on_linger, LINGER_MS, 0);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_finish(c);
}

static void conn_close_fmt(fv_conn_t *c, int err, const char *fmt, ...)
{
    char why[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fv_conn_close(c, err, why);
}

/* ---- reading --------------------------------------------------------------------- */

static void conn_send_hello(fv_conn_t *c)
{
    static const char sw[] = "fedvault wire 1";
    fv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = FV_MSG_HELLO;
    m.u.hello.sw.ptr = sw;
    m.u.hello.sw.len = sizeof sw - 1;
    m.u.hello.max_frame_bytes = c->opts.lim.max_frame_bytes;
    conn_send_internal(c, &m, false);
}

static void handle_frame(fv_conn_t *c, const uint8_t *body, size_t len)
{
    char who[384];
    fv_msg_t m;
    fv_diag_t d;
    int r = fv_wire_decode(body, len, &c->opts.lim, &m, &d);
    if (r != 0) {
        conn_close_fmt(c, r, "malformed message from %s: %s", peer_label(c, who, sizeof who),
                       d.msg);
        return;
    }
    if (m.type == FV_MSG_ERROR) {
        int code = m.u.error.code;
        conn_close_fmt(c, FV_EPEER, "peer %s reported %s: %.*s", peer_label(c, who, sizeof who),
                       fv_err_name(code), (int)m.u.error.reason.len, m.u.error.reason.ptr);
        return;
    }
    if (c->state == ST_HELLO) {
        if (m.type != FV_MSG_HELLO) {
            conn_close_fmt(c, FV_EPROTO, "peer %s sent %s before hello",
                           peer_label(c, who, sizeof who), fv_msg_type_name(m.type));
            return;
        }
        c->peer_max_frame = m.u.hello.max_frame_bytes;
        if (c->peer_max_frame < 4096) {
            conn_close_fmt(c, FV_EPROTO, "peer %s accepts frames of only %" PRIu32 " bytes",
                           peer_label(c, who, sizeof who), c->peer_max_frame);
            return;
        }
        c->state = ST_OPEN;
        src_release(c, true);
        if (c->client != NULL)
            c->client->attempts = 0;
        if (c->cbs.on_open != NULL)
            c->cbs.on_open(c, &c->peer);
        return;
    }
    switch (m.type) {
    case FV_MSG_HELLO:
        conn_close_fmt(c, FV_EPROTO, "peer %s sent a second hello", peer_label(c, who, sizeof who));
        return;
    case FV_MSG_PING: {
        fv_msg_t p = {.type = FV_MSG_PONG};
        p.u.ping.seq = m.u.ping.seq;
        conn_send_internal(c, &p, true);
        return;
    }
    case FV_MSG_PONG:
        return;
    case FV_MSG_BYE:
        c->bye_received = true;
        conn_close_fmt(c, 0, "peer %s said bye: %.*s", peer_label(c, who, sizeof who),
                       (int)m.u.bye.reason.len, m.u.bye.reason.ptr);
        return;
    case FV_MSG_VEC_BEGIN: {
        if (c->vrx_active) {
            conn_close_fmt(c, FV_EPROTO,
                           "peer %s began vector %" PRIu32 " while vector %" PRIu32
                           " was incomplete",
                           peer_label(c, who, sizeof who), m.u.vec_begin.id, c->vrx.id);
            return;
        }
        r = fv_vec_rx_begin(&c->vrx, &m, &c->opts.lim, &d);
        if (r != 0) {
            conn_close_fmt(c, r, "vector from %s refused: %s", peer_label(c, who, sizeof who),
                           d.msg);
            return;
        }
        void *dst = c->cbs.on_vec_begin != NULL ? c->cbs.on_vec_begin(c, &m) : NULL;
        if (c->state != ST_OPEN)
            return;
        if (dst == NULL) {
            conn_close_fmt(c, FV_EPOLICY, "vector '%.*s' from %s refused by the receiver",
                           (int)m.u.vec_begin.name.len, m.u.vec_begin.name.ptr,
                           peer_label(c, who, sizeof who));
            return;
        }
        c->vrx_dst = dst;
        c->vrx_active = true;
        return;
    }
    case FV_MSG_VEC_CHUNK:
    case FV_MSG_VEC_END: {
        if (!c->vrx_active) {
            conn_close_fmt(c, FV_EPROTO, "peer %s sent %s outside a vector",
                           peer_label(c, who, sizeof who), fv_msg_type_name(m.type));
            return;
        }
        if (m.type == FV_MSG_VEC_CHUNK) {
            r = fv_vec_rx_chunk(&c->vrx, &m, c->vrx_dst, &d);
            if (r != 0)
                conn_close_fmt(c, r, "vector from %s: %s", peer_label(c, who, sizeof who), d.msg);
            return;
        }
        r = fv_vec_rx_end(&c->vrx, &m, &d);
        if (r != 0) {
            conn_close_fmt(c, r, "vector from %s: %s", peer_label(c, who, sizeof who), d.msg);
            return;
        }
        c->vrx_active = false;
        fv_msg_t ack = {.type = FV_MSG_VEC_ACK};
        ack.u.vec_end.id = m.u.vec_end.id;
        memcpy(ack.u.vec_end.sha256, m.u.vec_end.sha256, 32);
        void *dst = c->vrx_dst;
        c->vrx_dst = NULL;
        if (conn_send_internal(c, &ack, true) != 0)
            return;
        if (c->cbs.on_vec != NULL)
            c->cbs.on_vec(c, ack.u.vec_end.id, dst, c->vrx.n_elems);
        return;
    }
    default:
        if (c->cbs.on_msg != NULL)
            c->cbs.on_msg(c, &m);
        return;
    }
}

static void read_plaintext(fv_conn_t *c)
{
    char who[384];
    if (c->pbuf == NULL && (c->pbuf = malloc(READ_BUF_BYTES)) == NULL) {
        conn_close_fmt(c, FV_ENOMEM, "no memory to read from %s", peer_label(c, who, sizeof who));
        return;
    }
    while (c->state == ST_HELLO || c->state == ST_OPEN) {
        size_t n = 0;
        int r = fv_tls_read(c->tls, c->pbuf, READ_BUF_BYTES, &n);
        if (r == UV_EOF) {
            conn_close_fmt(c, c->bye_received ? 0 : UV_ECONNRESET, "peer %s closed the TLS session",
                           peer_label(c, who, sizeof who));
            return;
        }
        if (r != 0) {
            const char *e = fv_tls_error(c->tls);
            conn_close_fmt(c, r, "TLS session with %s failed: %s", peer_label(c, who, sizeof who),
                           e != NULL && e[0] != '\0' ? e : fv_strerror(r));
            return;
        }
        if (n == 0)
            return;
        size_t off = 0;
        while (off < n && (c->state == ST_HELLO || c->state == ST_OPEN)) {
            size_t used = 0, blen = 0;
            const uint8_t *body = NULL;
            fv_diag_t d;
            r = fv_framer_feed(&c->framer, c->pbuf + off, n - off, &used, &body, &blen, &d);
            if (r < 0) {
                conn_close_fmt(c, r, "bad frame from %s: %s", peer_label(c, who, sizeof who),
                               d.msg);
                return;
            }
            off += used;
            if (r == 1)
                handle_frame(c, body, blen);
        }
    }
}

static void handshake_step(fv_conn_t *c)
{
    char who[384];
    fv_diag_t d;
    int r = fv_tls_handshake(c->tls, &d);
    if (r == UV_EAGAIN) {
        int f = conn_flush(c);
        if (f != 0)
            conn_close_fmt(c, f, "write to %s failed: %s", c->peer_addr, fv_strerror(f));
        return;
    }
    if (r != 0) {
        conn_close_fmt(c, r, "TLS handshake with %s failed: %s", c->peer_addr, d.msg);
        return;
    }
    c->peer = *fv_tls_peer(c->tls);
    c->peer_known = true;
    c->state = ST_HELLO;
    src_release(c, false); /* the handshake is over; still a stranger until HELLO */
    if ((c->opts.allowed_roles & FV_ROLE_BIT(c->peer.role)) == 0) {
        conn_close_fmt(c, FV_EAUTH, "peer %s has role %s, which is not accepted here",
                       peer_label(c, who, sizeof who), fv_role_name(c->peer.role));
        return;
    }
    conn_send_hello(c);
}

/* libuv calls this right before each read and hands the bytes to on_read at once, which
 * consumes them before it returns: one buffer per server serves all its connections. A
 * zero-length buffer (no memory) makes libuv report UV_ENOBUFS to on_read. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    fv_conn_t *c = h->data;
    if (c->server != NULL) {
        *buf = uv_buf_init((char *)c->server->rbuf, sizeof c->server->rbuf);
        return;
    }
    if (c->rbuf == NULL)
        c->rbuf = malloc(READ_BUF_BYTES);
    *buf = uv_buf_init((char *)c->rbuf, c->rbuf != NULL ? READ_BUF_BYTES : 0);
}

/* The TLS engine, made when the peer's first bytes arrive (server) or at connect
 * (client); a stranger's engine counts against the handshake caps. 0 or an error (the
 * connection is then closed, and not handed on if a cap refused it). */
static int conn_tls(fv_conn_t *c)
{
    if (c->tls != NULL)
        return 0;
    if (c->server != NULL && !src_admit_handshake(c->server, c)) {
        c->handed = false; /* counted and summed up by the server, not reported one by one */
        fv_conn_close(c, UV_EBUSY, "too many handshakes");
        return UV_EBUSY;
    }
    int r = fv_tls_new(c->ctx, &c->tls);
    if (r != 0)
        conn_close_fmt(c, r, "no TLS engine for %s: %s", c->peer_addr, fv_strerror(r));
    return r;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fv_conn_t *c = s->data;
    char who[384];
    if (c->state >= ST_CLOSING)
        return;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF && c->state == ST_HANDSHAKE)
            conn_close_fmt(c, FV_EPROTO, "%s closed the connection during the TLS handshake",
                           c->peer_addr);
        else if (nread == UV_EOF)
            conn_close_fmt(c, c->bye_received ? 0 : UV_ECONNRESET, "peer %s closed the connection",
                           peer_label(c, who, sizeof who));
        else
            conn_close_fmt(c, (int)nread, "read from %s failed: %s", peer_label(c, who, sizeof who),
                           uv_strerror((int)nread));
        return;
    }
    c->last_rx_ms = uv_now(c->loop);
    c->bytes_rx += (uint64_t)nread;
    if (conn_tls(c) != 0)
        return;
    int r = fv_tls_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread);
    if (r != 0) {
        conn_close_fmt(c, r, "TLS input from %s: %s", c->peer_addr, fv_strerror(r));
        return;
    }
    if (c->state == ST_HANDSHAKE) {
        handshake_step(c);
        if (c->state != ST_HELLO)
            return;
    }
    read_plaintext(c);
    if (c->state < ST_CLOSING) {
        int f = conn_flush(c); /* TLS may answer on its own (key updates) */
        if (f != 0)
            conn_close_fmt(c, f, "write to %s failed: %s", c->peer_addr, fv_strerror(f));
    }
}

static uint64_t tick_ms(const fv_net_opts_t *o)
{
    uint64_t t = o->heartbeat_ms;
    if (o->handshake_timeout_ms < t)
        t = o->handshake_timeout_ms;
    if (o->dead_ms < t)
        t = o->dead_ms;
    t /= 4;
    return t < 20 ? 20 : t > 1000 ? 1000 : t;
}

static void on_tick(uv_timer_t *t)
{
    fv_conn_t *c = t->data;
    char who[384];
    uint64_t now = uv_now(c->loop);
    if (c->state == ST_HANDSHAKE || c->state == ST_HELLO) {
        if (now - c->t_start_ms >= c->opts.handshake_timeout_ms && c->server != NULL) {
            c->server->st.handshake_timeouts++;
            server_note_refusal(c->server);
        }
        if (now - c->t_start_ms >= c->opts.handshake_timeout_ms)
            conn_close_fmt(c, UV_ETIMEDOUT, "%s did not finish the handshake within %" PRIu64 " ms",
                           peer_label(c, who, sizeof who), c->opts.handshake_timeout_ms);
        return;
    }
    if (c->state != ST_OPEN)
        return;
    if (now - c->last_rx_ms >= c->opts.dead_ms) {
        conn_close_fmt(c, UV_ETIMEDOUT, "peer %s silent for %" PRIu64 " ms (dead-peer timeout)",
                       peer_label(c, who, sizeof who), now - c->last_rx_ms);
        return;
    }
    if (now - c->last_tx_ms >= c->opts.heartbeat_ms) {
        fv_msg_t p = {.type = FV_MSG_PING};
        p.u.ping.seq = ++c->ping_seq;
        conn_send_internal(c, &p, true);
    }
}

static int conn_start(fv_conn_t *c)
{
    c->state = ST_HANDSHAKE;
    c->t_start_ms = c->last_rx_ms = c->last_tx_ms = uv_now(c->loop);
    conn_set_peer_addr(c);
    uv_tcp_nodelay(&c->tcp, 1);
    uint64_t tick = tick_ms(&c->opts);
    int r = uv_timer_start(&c->timer, on_tick, tick, tick);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    return r;
}

/* ---- server ---------------------------------------------------------------------- */

static void server_maybe_free(fv_server_t *s)
{
    if (s->stopping && s->listener_closed && s->summary_closed && s->n_conns == 0 &&
        s->n_refused_closing == 0) {
        free(s->src);
        free(s);
    }
}

static void on_summary_closed(uv_handle_t *h)
{
    fv_server_t *s = h->data;
    s->summary_closed = true;
    server_maybe_free(s);
}

static void on_listener_closed(uv_handle_t *h)
{
    fv_server_t *s = h->data;
    s->listener_closed = true;
    server_maybe_free(s);
}

static void on_connection(uv_stream_t *ls, int status)
{
    fv_server_t *s = ls->data;
    if (status < 0) {
        /* EMFILE/ENFILE: libuv has already accepted and closed the waiting connections
         * with its reserved descriptor (uv__emfile_trick), so the listener does not
         * spin; count it, and sum it up in the next summary line. */
        s->st.accept_errors++;
        server_note_refusal(s);
        return;
    }
    if (s->stopping)
        return;
    /* Always accept: a connection left in the backlog stops libuv's accept loop. */
    fv_conn_t *c = conn_new(s->loop, s->ctx, &s->opts, &s->cbs);
    if (c == NULL) {
        /* Out of memory: accept and drop, so the backlog does not spin. */
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
    c->state = ST_CONNECTING;
    s->st.accepted++;
    int r = uv_accept(ls, (uv_stream_t *)&c->tcp);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (r == 0)
        r = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
    uint64_t *refused = NULL;
    if (r == 0) {
        src_key_of(&ss, c->src_key);
        refused = src_admit(s, c);
    }
    if (r != 0 || refused != NULL) {
        /* Over a cap (or gone already): closed at once, never handed on. */
        if (refused != NULL) {
            (*refused)++;
            server_note_refusal(s);
        }
        c->handed = false;
        s->n_refused_closing++;
        c->finishing = true;
        uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
        uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
        return;
    }
    c->listed = true;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    r = conn_start(c);
    if (r != 0)
        conn_close_fmt(c, r, "accepting a connection failed: %s", uv_strerror(r));
}

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss)
{
    if (port < 0 || port > 65535)
        return FV_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return FV_EINVAL;
}

int fv_server_start(uv_loop_t *loop, fv_tls_ctx_t *ctx, const char *host, int port,
                    const fv_net_opts_t *opts, const fv_conn_cbs_t *cbs, void *data,
                    fv_server_t **ret)
{
    struct sockaddr_storage ss;
    int r = parse_addr(host, port, &ss);
    if (r != 0)
        return r;
    if (fv_wire_limits_check(&opts->lim, NULL) != 0)
        return FV_EINVAL;
    fv_server_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return FV_ENOMEM;
    s->loop = loop;
    s->ctx = ctx;
    s->opts = *opts;
    s->cbs = *cbs;
    s->data = data;
    /* At most max_unauth live entries, in at least twice as many slots. The per-source
     * caps need this table, so they apply only with a global cap (max_unauth != 0). */
    if (opts->max_unauth != 0) {
        s->src_cap = 16;
        while (s->src_cap < (size_t)opts->max_unauth * 2)
            s->src_cap *= 2;
        s->src = calloc(s->src_cap, sizeof *s->src);
        if (s->src == NULL) {
            free(s);
            return FV_ENOMEM;
        }
        randombytes_buf(s->src_hkey, sizeof s->src_hkey);
    }
    r = uv_tcp_init(loop, &s->tcp);
    if (r != 0) {
        free(s->src);
        free(s);
        return r;
    }
    s->tcp.data = s;
    uv_timer_init(loop, &s->summary);
    s->summary.data = s;
    r = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&s->tcp, LISTEN_BACKLOG, on_connection);
    if (r == 0) {
        struct sockaddr_storage bound;
        int len = sizeof bound;
        r = uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &len);
        if (r == 0)
            s->port =
                ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                 : ((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    if (r != 0) {
        s->stopping = true;
        uv_close((uv_handle_t *)&s->tcp, on_listener_closed);
        uv_close((uv_handle_t *)&s->summary, on_summary_closed);
        return r; /* freed in the close callbacks */
    }
    *ret = s;
    return 0;
}

void fv_server_stop(fv_server_t *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    uv_close((uv_handle_t *)&s->tcp, on_listener_closed);
    uv_close((uv_handle_t *)&s->summary, on_summary_closed);
    for (fv_conn_t *c = s->conns; c != NULL; c = c->next)
        fv_conn_close(c, 0, "server stopping");
}

void fv_server_stats(const fv_server_t *s, fv_server_stats_t *ret)
{
    *ret = s->st;
}

/* ---- process --------------------------------------------------------------------- */

int fv_net_raise_nofile(uint64_t *ret_soft_before, uint64_t *ret_soft, uint64_t *ret_hard)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    uint64_t before = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    int r = 0;
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            r = -errno;
        if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
            return -errno;
    }
    *ret_soft_before = before;
    *ret_soft = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    *ret_hard = rl.rlim_max == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_max;
    return r;
}

/* ---- client ---------------------------------------------------------------------- */

static void client_connect(fv_client_t *cl, const struct sockaddr *addr);

static void client_maybe_free(fv_client_t *cl)
{
    if (cl->conn != NULL || cl->gai_pending)
        return;
    if (!cl->retry_closed) {
        cl->retry_closed = true;
        uv_close((uv_handle_t *)&cl->retry, free_handle); /* retry is cl's first member */
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    fv_conn_t *c = req->data;
    if (c->state != ST_CONNECTING)
        return;
    if (status < 0) {
        conn_close_fmt(c, status, "connecting to %s:%d failed: %s", c->client->host,
                       c->client->port, uv_strerror(status));
        return;
    }
    int r = conn_start(c);
    if (r == 0 && conn_tls(c) != 0)
        return;
    if (r == 0)
        handshake_step(c); /* sends the ClientHello */
    else
        conn_close_fmt(c, r, "starting the connection to %s failed: %s", c->peer_addr,
                       uv_strerror(r));
}

static void client_connect(fv_client_t *cl, const struct sockaddr *addr)
{
    fv_conn_t *c = conn_new(cl->loop, cl->ctx, &cl->opts, &cl->cbs);
    if (c == NULL) {
        client_schedule(cl);
        return;
    }
    c->client = cl;
    c->data = cl->data;
    c->state = ST_CONNECTING;
    cl->conn = c;
    snprintf(c->peer_addr, sizeof c->peer_addr, "%s:%d", cl->host, cl->port);
    c->connect_req.data = c;
    int r = uv_tcp_connect(&c->connect_req, &c->tcp, addr, on_connect);
    if (r != 0)
        conn_close_fmt(c, r, "connecting to %s:%d failed: %s", cl->host, cl->port, uv_strerror(r));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    fv_client_t *cl = req->data;
    cl->gai_pending = false;
    if (cl->stopping) {
        uv_freeaddrinfo(res);
        client_maybe_free(cl);
        return;
    }
    if (status < 0 || res == NULL) {
        uv_freeaddrinfo(res);
        cl->attempts++;
        client_schedule(cl);
        return;
    }
    client_connect(cl, res->ai_addr);
    uv_freeaddrinfo(res);
}

static void client_attempt(fv_client_t *cl)
{
    struct sockaddr_storage ss;
    if (parse_addr(cl->host, cl->port, &ss) == 0) {
        client_connect(cl, (const struct sockaddr *)&ss);
        return;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", cl->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    cl->gai.data = cl;
    if (uv_getaddrinfo(cl->loop, &cl->gai, on_resolved, cl->host, port, &hints) == 0) {
        cl->gai_pending = true;
        return;
    }
    cl->attempts++;
    client_schedule(cl);
}

static void on_retry(uv_timer_t *t)
{
    fv_client_t *cl = t->data;
    if (!cl->stopping)
        client_attempt(cl);
}

static void client_schedule(fv_client_t *cl)
{
    if (cl->stopping || !cl->copts.reconnect) {
        client_maybe_free(cl);
        return;
    }
    uint64_t delay = fv_backoff_delay_ms(cl->attempts, cl->copts.backoff_base_ms,
                                         cl->copts.backoff_max_ms, randombytes_random());
    cl->attempts++;
    uv_timer_start(&cl->retry, on_retry, delay, 0);
}

int fv_client_start(uv_loop_t *loop, fv_tls_ctx_t *ctx, const char *host, int port,
                    const fv_net_opts_t *opts, const fv_client_opts_t *copts,
                    const fv_conn_cbs_t *cbs, void *data, fv_client_t **ret)
{
    if (host == NULL || strlen(host) >= sizeof((fv_client_t *)0)->host || port <= 0 ||
        port > 65535 || fv_wire_limits_check(&opts->lim, NULL) != 0)
        return FV_EINVAL;
    fv_client_t *cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return FV_ENOMEM;
    cl->loop = loop;
    cl->ctx = ctx;
    snprintf(cl->host, sizeof cl->host, "%s", host);
    cl->port = port;
    cl->opts = *opts;
    cl->copts = *copts;
    cl->cbs = *cbs;
    cl->data = data;
    uv_timer_init(loop, &cl->retry);
    cl->retry.data = cl;
    client_attempt(cl);
    *ret = cl;
    return 0;
}

void fv_client_stop(fv_client_t *cl)
{
    if (cl->stopping)
        return;
    cl->stopping = true;
    uv_timer_stop(&cl->retry);
    if (cl->gai_pending)
        uv_cancel((uv_req_t *)&cl->gai);
    if (cl->conn != NULL)
        fv_conn_close(cl->conn, 0, "client stopping");
    client_maybe_free(cl);
}
