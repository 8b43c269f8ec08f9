/* fv_conn.h - framed, mutually authenticated TLS connections on a libuv loop.
 *
 * This is the one part of protocols/ that owns sockets and timers: it is built as its
 * own library (fv_net) so the decoders and state machines in fv_protocols stay free of
 * the loop. It joins three pure pieces: the TCP socket (libuv), the TLS engine over
 * memory BIOs (crypto/fv_tls.h) and the wire format (protocols/fv_wire.h).
 *
 * Life of a connection:
 *   TCP connect/accept -> TLS 1.3 handshake (deadline handshake_timeout_ms) -> peer
 *   certificate checked (CA, CRL, federation, allowed role) -> both sides send HELLO ->
 *   on_open(peer) -> messages both ways -> orderly close (BYE, close_notify, shutdown).
 * A refusal at any step (bad certificate, role not allowed, plain TCP, garbage, frame over
 * the cap, malformed message, silence past the deadline) closes only that connection: the
 * peer gets an ERROR message when the TLS session is up, on_close reports the code and a
 * sentence, and the server goes on serving everyone else.
 *
 * Liveness: one timer per connection. A PING goes out when nothing was sent for
 * heartbeat_ms; a peer that sends nothing (not even a PONG) for dead_ms is closed
 * (UV_ETIMEDOUT). PING/PONG/HELLO/BYE/ERROR and the vector frames are handled here;
 * every other message reaches on_msg.
 *
 * Backpressure: the bytes handed to libuv and not yet written are counted. fv_conn_send
 * refuses (UV_ENOBUFS) and closes the connection when a message would take the queue past
 * max_queue_bytes: a peer that does not read is dropped, not buffered without bound.
 * Vectors are pumped: a new chunk is encoded only while the queue is under
 * low_water_bytes, so sending a vector of any size costs O(chunk) memory besides the
 * vector itself; on_drain fires when the queue falls under low_water_bytes.
 *
 * Strangers (servers). Before TLS and HELLO are done a peer is a stranger, and what a
 * stranger can cost is capped, globally and per source address (IPv4 address, IPv6 /64):
 *   - max_unauth (512) / max_unauth_per_source (32) connections accepted and not yet
 *     open. Over a cap the new connection is accepted and closed at once, so the backlog
 *     keeps draining; it is counted (fv_server_stats), never handed to the application
 *     (no on_close) and never logged one by one: one "net_refused" summary line per
 *     server at most every 10 s. 512 is about 1 MiB of connection structs, and 32 per
 *     source is far more than one bank's agents behind one NAT address will ever open at
 *     once, while 16 flooding addresses cannot fill the global cap alone. At a global
 *     cap the newcomer evicts the oldest stranger of the source holding the most, if
 *     that source holds two or more than the newcomer's (max-min fairness), so many
 *     flooding sources together do not lock a quiet one out either;
 *   - max_handshakes (128) / max_handshakes_per_source (8) TLS engines: an engine (an
 *     OpenSSL SSL object and its memory BIOs, tens of KiB once a ClientHello is in)
 *     is made only when the first bytes arrive; over a cap the connection is closed
 *     (counted as above). A handshake takes about 1 ms of CPU here, so 128 at once is
 *     already more than the loop would serve in a deadline;
 *   - handshake_timeout_ms (5000) from accept to the peer's HELLO, whatever the peer sends
 *     (nothing, part of a ClientHello, a stalled handshake). Three round trips plus the
 *     certificate checks take well under a second even across continents; 5 s still
 *     allows a busy loop and a slow link, and halves the time a staller holds its slot.
 * Memory is held only while needed: a connection's read buffer is shared by the server,
 * the plaintext buffer is made at the peer's authentication, and the TLS engine, the
 * plaintext and encode buffers and the framer are freed when the connection closes (not
 * when its handles are closed). When the strangers are all gone after a flood (peak 64
 * or more), the server calls malloc_trim(0) once (glibc keeps freed heap otherwise).
 * Listener errors (EMFILE) are counted: libuv then accepts and closes the waiting
 * connections with its reserved descriptor, so the loop does not spin.
 *
 * Callbacks run on the loop thread. on_close runs exactly once per connection that was
 * handed to the application (accepted within the caps, or connected), after which the fv_conn_t is
 * freed by the library (at the end of the current loop iteration). Within a callback the connection
 * may be closed; it stays valid until on_close returns.
 */
#ifndef FV_CONN_H
#define FV_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "fv_tls.h"
#include "fv_wire.h"

typedef struct fv_net_opts {
    fv_wire_limits_t lim;
    uint64_t handshake_timeout_ms; /* default 5000; covers TLS and HELLO */
    uint64_t heartbeat_ms;         /* default 5000 */
    uint64_t dead_ms;              /* default 30000 */
    size_t max_queue_bytes;        /* default 64 MiB */
    size_t low_water_bytes;        /* default 4 MiB */
    uint32_t chunk_elems;          /* vector chunk size; default 256 Ki elements (1 MiB) */
    unsigned allowed_roles;        /* bit (1u << role) per accepted peer role */
    /* Servers only (see "Strangers" above); 0 means no cap. The per-source caps apply
     * only with max_unauth != 0 (they share its table). */
    uint32_t max_unauth;                /* default 512: accepted, not yet past TLS + HELLO */
    uint32_t max_unauth_per_source;     /* default 32 */
    uint32_t max_handshakes;            /* default 128: TLS engines of unauthenticated peers */
    uint32_t max_handshakes_per_source; /* default 8 */
} fv_net_opts_t;
void fv_net_opts_default(fv_net_opts_t *o);
#define FV_ROLE_BIT(r) (1u << (unsigned)(r))

typedef struct fv_conn fv_conn_t;

typedef struct fv_conn_cbs {
    /* The peer is authenticated and said HELLO. */
    void (*on_open)(fv_conn_t *c, const fv_identity_t *peer);
    /* A message other than those handled here. m borrows: copy what you keep. */
    void (*on_msg)(fv_conn_t *c, const fv_msg_t *m);
    /* VEC_BEGIN arrived: return a buffer of begin->u.vec_begin.n_elems * 4 bytes that
     * stays valid until on_vec or on_close, or NULL to refuse (connection closed). */
    void *(*on_vec_begin)(fv_conn_t *c, const fv_msg_t *begin);
    /* A whole vector arrived and its digest checked (VEC_ACK was sent back). */
    void (*on_vec)(fv_conn_t *c, uint32_t id, void *vec, uint64_t n_elems);
    /* Our vector was fully queued (not yet acknowledged: watch for VEC_ACK in on_msg). */
    void (*on_vec_sent)(fv_conn_t *c, uint32_t id);
    void (*on_drain)(fv_conn_t *c);
    /* The send tap (may be NULL: then it costs one comparison per frame). Called for
     * every frame this side is about to queue - HELLO, PING, PONG, BYE, ERROR, VEC_ACK,
     * VEC_BEGIN/CHUNK/END and every application message - after it was encoded and passed
     * the queue cap, before any of its bytes reach the TLS engine. m is the message as
     * given to the encoder, body/body_len the exact msgpack frame body (without the
     * 4-byte length header); both borrowed for the call. Return 0 to let the frame go; a
     * negative code withholds it: nothing of it is queued, and the connection is closed
     * with that code (the ERROR frame of that close passes through here too, and may be
     * withheld as well). The tap must not send on, or close, c itself. A 0 return
     * records an intent: if queueing fails afterwards, the connection closes and
     * on_close says why. */
    int (*on_send)(fv_conn_t *c, const fv_msg_t *m, const uint8_t *body, size_t body_len);
    /* Exactly once. err 0 for an orderly close by either side, else the reason; why is
     * a sentence for the log ("peer certificate refused: certificate has expired"). */
    void (*on_close)(fv_conn_t *c, int err, const char *why);
} fv_conn_cbs_t;

/* ---- one connection ------------------------------------------------------------- */
void fv_conn_set_data(fv_conn_t *c, void *data);
void *fv_conn_get_data(const fv_conn_t *c);
/* "127.0.0.1:54321" (the TCP peer), valid for the connection's life. */
const char *fv_conn_peer_addr(const fv_conn_t *c);
/* NULL before on_open. */
const fv_identity_t *fv_conn_peer(const fv_conn_t *c);
/* The verified peer's certificate in DER (borrowed, valid until the connection is
 * freed); FV_EPHASE before on_open. */
int fv_conn_peer_der(const fv_conn_t *c, const uint8_t **ret_der, size_t *ret_len);
bool fv_conn_is_open(const fv_conn_t *c);
/* Bytes queued to the socket and not yet written. */
size_t fv_conn_queued_bytes(const fv_conn_t *c);
/* Bytes read from and queued to the socket so far (TLS records, so handshake included). */
void fv_conn_traffic(const fv_conn_t *c, uint64_t *ret_in, uint64_t *ret_out);
/* Encodes, encrypts and queues one message. UV_ENOTCONN before on_open or after close;
 * UV_ENOBUFS (connection then closed) over max_queue_bytes; FV_EINVAL/FV_ETOOBIG from
 * the encoder (connection stays). */
int fv_conn_send(fv_conn_t *c, const fv_msg_t *m);
/* Starts sending a vector (borrowed until on_vec_sent or on_close). UV_EBUSY if one is
 * still being sent. */
int fv_conn_send_vec(fv_conn_t *c, uint32_t id, fv_vec_dtype_t dtype, const void *vec,
                     uint64_t n_elems, const char *name);
/* Closes: err 0 sends BYE, else ERROR{err, why}; then close_notify, flush (bounded by a
 * 2 s linger), close. Idempotent. on_close follows. */
void fv_conn_close(fv_conn_t *c, int err, const char *why);

/* ---- server --------------------------------------------------------------------- */
typedef struct fv_server fv_server_t;
/* Listens on host:port (port 0 = any; read it back with fv_server_port). ctx is borrowed
 * and must outlive the server. */
int fv_server_start(uv_loop_t *loop, fv_tls_ctx_t *ctx, const char *host, int port,
                    const fv_net_opts_t *opts, const fv_conn_cbs_t *cbs, void *data,
                    fv_server_t **ret);
int fv_server_port(const fv_server_t *s);
void *fv_server_get_data(const fv_server_t *s);
fv_server_t *fv_conn_server(const fv_conn_t *c); /* NULL for client connections */
size_t fv_server_n_conns(const fv_server_t *s);
/* What strangers cost the server so far (counters) and now (gauges). */
typedef struct fv_server_stats {
    uint64_t accepted;               /* every accepted TCP connection, refused ones too */
    uint64_t refused_unauth;         /* over max_unauth at accept */
    uint64_t refused_unauth_source;  /* over max_unauth_per_source at accept */
    uint64_t refused_handshakes;     /* over a handshake cap when the first bytes came */
    uint64_t handshake_timeouts;     /* closed at handshake_timeout_ms */
    uint64_t evicted;                /* closed for a stranger from a quieter source */
    uint64_t accept_errors;          /* listener errors (EMFILE, ENFILE, ...) */
    uint64_t trims;                  /* malloc_trim calls after a flood */
    uint32_t n_unauth, n_handshakes; /* now */
    uint32_t peak_unauth;            /* since start */
} fv_server_stats_t;
void fv_server_stats(const fv_server_t *s, fv_server_stats_t *ret);
/* Stops listening and closes every connection (on_close for each); the server is freed
 * once all handles closed. */
void fv_server_stop(fv_server_t *s);

/* ---- client with reconnect ------------------------------------------------------ */
/* Keeps one connection to host:port alive: after a close (other than fv_client_stop) it
 * reconnects after a jittered exponential backoff (fv_backoff_delay_ms with
 * backoff_base_ms, backoff_max_ms); the attempt count resets when a connection opens.
 * Every connection reports through cbs as above. */
typedef struct fv_client fv_client_t;
typedef struct fv_client_opts {
    uint64_t backoff_base_ms; /* default 500 */
    uint64_t backoff_max_ms;  /* default 30000 */
    bool reconnect;           /* default true */
} fv_client_opts_t;
void fv_client_opts_default(fv_client_opts_t *o);
int fv_client_start(uv_loop_t *loop, fv_tls_ctx_t *ctx, const char *host, int port,
                    const fv_net_opts_t *opts, const fv_client_opts_t *copts,
                    const fv_conn_cbs_t *cbs, void *data, fv_client_t **ret);
void *fv_client_get_data(const fv_client_t *cl);
fv_client_t *fv_conn_client(const fv_conn_t *c); /* NULL for server connections */
/* The live connection, or NULL while (re)connecting. */
fv_conn_t *fv_client_conn(const fv_client_t *cl);
/* Attempts made since the last successful open. */
unsigned fv_client_attempts(const fv_client_t *cl);
void fv_client_stop(fv_client_t *cl);

/* ---- process ------------------------------------------------------------------ */
/* Raises the RLIMIT_NOFILE soft limit to the hard limit, so a flood meets the server's
 * caps before EMFILE. Returns 0 or a negative errno; the limits before and after in
 * *ret_soft_before, *ret_soft, *ret_hard (RLIM_INFINITY reported as UINT64_MAX). */
int fv_net_raise_nofile(uint64_t *ret_soft_before, uint64_t *ret_soft, uint64_t *ret_hard);

/* ---- backoff (pure) ------------------------------------------------------------- */
/* "Equal jitter": cap = min(max_ms, base_ms * 2^attempt); the delay is cap/2 plus a
 * uniform draw in [0, cap/2] taken from rnd. attempt 0 is the first retry. */
uint64_t fv_backoff_delay_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, uint32_t rnd);

#endif
