/* fv_tls.h - TLS 1.3 with mutual authentication, pinned to the federation CA (OpenSSL).
 *
 * Pure: no sockets. A connection's engine (fv_tls_t) runs OpenSSL over two memory BIOs:
 * the caller feeds the ciphertext it read from the network (fv_tls_feed), pulls plaintext
 * out (fv_tls_read), pushes plaintext in (fv_tls_write) and drains the ciphertext to send
 * (fv_tls_drain). The libuv stream (protocols/fv_conn.h) does the socket side.
 *
 * Identity: every certificate of a federation is issued by its CA (crypto/fv_pki.h) with
 * subject O=<federation>, OU=<role>, CN=<name> and an Ed25519 key, the same key that
 * signs the participant's SecAgg messages. A peer is who its verified certificate says,
 * never what a message claims. Both sides require a certificate (a client without one
 * fails the handshake), chains must end at the configured CA (no system roots), the
 * peer's federation must equal ours, and only TLS 1.3 is spoken.
 *
 * Revocation: with a CRL file configured, every peer certificate is checked against it
 * (a missing or expired CRL fails closed). fv_tls_ctx_reload_crl re-reads the file and
 * swaps the trust store for new connections; on failure the old store stays in force.
 *
 * Threading: one context and its connections belong to one thread (the loop thread).
 */
#ifndef FV_TLS_H
#define FV_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"

typedef enum fv_role {
    FV_ROLE_COORDINATOR = 1,
    FV_ROLE_AGENT = 2,
    FV_ROLE_ADMIN = 3,
} fv_role_t;
/* "coordinator", "agent", "admin"; "unknown" otherwise. */
const char *fv_role_name(fv_role_t role);
/* FV_EINVAL for anything but the three names. */
int fv_role_parse(const char *s, fv_role_t *ret);

/* Names of federations and participants: 1..64 bytes of [a-z0-9._-], starting with a
 * letter or digit (they become directory names, subjects and log fields). */
#define FV_NAME_MAX 64
bool fv_name_valid(const char *s);

typedef struct fv_identity {
    char federation[FV_NAME_MAX + 1];
    char name[FV_NAME_MAX + 1];
    fv_role_t role;
    uint8_t sign_pk[32]; /* the certificate's Ed25519 public key */
    char serial_hex[41]; /* certificate serial number, lowercase hex */
} fv_identity_t;

typedef struct fv_tls_ctx fv_tls_ctx_t;
typedef struct fv_tls_opts {
    const char *ca_file;   /* PEM: the federation CA certificate (required) */
    const char *cert_file; /* PEM: our certificate (required) */
    const char *key_file;  /* PEM: our Ed25519 private key (required) */
    const char *crl_file;  /* PEM CRL, or NULL for no revocation checking */
} fv_tls_opts_t;

/* Loads and checks everything: the key matches the certificate, the certificate verifies
 * against the CA (and the CRL, if any: a revoked kit or an expired CRL fails here), its
 * subject is a valid identity. Errors name the file. The options' strings are copied. */
int fv_tls_ctx_new(bool is_server, const fv_tls_opts_t *opts, fv_tls_ctx_t **ret, fv_diag_t *d);
void fv_tls_ctx_free(fv_tls_ctx_t *ctx); /* NULL-safe; live connections keep it alive */
/* Our own identity (from our certificate). */
const fv_identity_t *fv_tls_ctx_identity(const fv_tls_ctx_t *ctx);
/* Re-reads opts->crl_file (FV_EINVAL if none was configured). */
int fv_tls_ctx_reload_crl(fv_tls_ctx_t *ctx, fv_diag_t *d);
/* Number of revoked serials in the CRL in force (0 without a CRL). */
size_t fv_tls_ctx_crl_count(const fv_tls_ctx_t *ctx);
/* Whether the CRL in force lists the serial (fv_identity_t.serial_hex, hex digits of the
 * certificate's serial number): the daemons close a live session whose certificate a
 * reloaded CRL revokes (a reload alone refuses only new handshakes). false without a CRL
 * or for anything that is not 1..20 bytes of hex. */
bool fv_tls_ctx_revoked(const fv_tls_ctx_t *ctx, const char *serial_hex);

typedef struct fv_tls fv_tls_t;
int fv_tls_new(fv_tls_ctx_t *ctx, fv_tls_t **ret);
void fv_tls_free(fv_tls_t *t); /* NULL-safe */

/* Network bytes in (copied). FV_ETOOBIG if more than 1 MiB of ciphertext is buffered
 * unread: the caller must read between feeds. */
int fv_tls_feed(fv_tls_t *t, const uint8_t *in, size_t n);
/* Drives the handshake with what was fed. 0 once established (then every later call
 * returns 0 at once); UV_EAGAIN when more input is needed (drain first: the handshake
 * produces output); FV_EAUTH when the peer's certificate is refused (no certificate,
 * another CA, expired, revoked, another federation, malformed subject); FV_EPROTO for
 * any other TLS failure (not TLS at all, wrong version, bad record). The diag names the
 * reason as OpenSSL reports it ("certificate has expired", "certificate revoked", ...). */
int fv_tls_handshake(fv_tls_t *t, fv_diag_t *d);
bool fv_tls_established(const fv_tls_t *t);
/* The sentence describing this engine's last failure (handshake, read, write or
 * shutdown), "" if none; borrowed, valid until the next call on t. After a failure, drain
 * and send what is pending (the alert that tells the peer why) before closing. */
const char *fv_tls_error(const fv_tls_t *t);
/* The verified peer once the handshake succeeded, NULL before (borrowed from t). */
const fv_identity_t *fv_tls_peer(const fv_tls_t *t);
/* The verified peer's certificate in DER (borrowed from t, valid until fv_tls_free);
 * FV_EPHASE before the handshake succeeded. */
int fv_tls_peer_der(const fv_tls_t *t, const uint8_t **ret_der, size_t *ret_len);

/* Plaintext out: *ret_n bytes (0 = need more input). UV_EOF after the peer's
 * close_notify; FV_EPROTO on a bad record; FV_EAUTH when the peer refuses our certificate
 * with an alert after our side of the handshake completed (a TLS 1.3 client learns of
 * the server's refusal only here). fv_tls_error says why. */
int fv_tls_read(fv_tls_t *t, uint8_t *buf, size_t cap, size_t *ret_n);
/* Plaintext in: encrypts all n bytes into the output buffer (records of up to 16 KiB). */
int fv_tls_write(fv_tls_t *t, const uint8_t *buf, size_t n);
/* Ciphertext waiting to be sent, and taking it (returns bytes copied, <= cap). */
size_t fv_tls_pending(const fv_tls_t *t);
size_t fv_tls_drain(fv_tls_t *t, uint8_t *buf, size_t cap);
/* Queues close_notify (drain afterwards). */
int fv_tls_shutdown(fv_tls_t *t);

/* The raw Ed25519 key of a PEM private key file, as libsodium's 64-byte secret key
 * (seed || public key), for signing with fv_sign. sk is the caller's (wipe it). */
int fv_tls_load_sign_key(const char *key_file, uint8_t sk[64], fv_diag_t *d);

#endif
