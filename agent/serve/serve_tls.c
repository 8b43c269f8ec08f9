/* serve_tls.c - optional TLS (and mTLS) for fedvault-serve's HTTP listener: OpenSSL over
 * memory BIOs, so serve_http.c keeps owning the socket and its buffers.
 *
 * This is not the federation's TLS (crypto/fv_tls.h: both ends federation identities):
 * the callers here are the bank's own services. --tls-cert/--tls-key are the server's
 * certificate and key (any key type OpenSSL takes); with --tls-client-ca every client
 * must present a certificate issued by that CA (mTLS; the handshake fails otherwise).
 * TLS 1.2 at least.
 *
 * Per connection: an SSL with a read BIO (ciphertext from the socket, fed by serve_http.c)
 * and a write BIO (ciphertext to send, taken by serve_http.c after every feed and every
 * write). SSL_read drives the handshake. Plaintext is pulled only while the connection
 * is reading a request, so a pipelining client's bytes wait inside the SSL while one is
 * answered (the same backpressure as plain TCP).
 *
 * Threads: the loop thread only. Ownership: the context lives in serve_t; each
 * connection owns its engine (freed with the connection).
 */
#include "serve-int.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct serve_tls {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
};

static int ssl_fail(fv_diag_t *d, const char *what, const char *path)
{
    char err[256];
    ERR_error_string_n(ERR_get_error(), err, sizeof err);
    return fv_diag_set(d, FV_EINVAL, "%s %s: %s", what, path, err);
}

int fv__serve_tls_ctx_new(const serve_cfg_t *cfg, void **ret, fv_diag_t *d)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return fv_diag_set(d, FV_ENOMEM, "cannot make a TLS context");
    int r = 0;
    (void)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1)
        r = ssl_fail(d, "--tls-cert", cfg->tls_cert);
    else if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1)
        r = ssl_fail(d, "--tls-key", cfg->tls_key);
    else if (SSL_CTX_check_private_key(ctx) != 1)
        r = fv_diag_set(d, FV_EINVAL, "--tls-key %s is not the key of --tls-cert %s", cfg->tls_key,
                        cfg->tls_cert);
    else if (cfg->tls_client_ca != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls_client_ca, NULL) != 1)
            r = ssl_fail(d, "--tls-client-ca", cfg->tls_client_ca);
        else
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    if (r != 0) {
        SSL_CTX_free(ctx);
        return r;
    }
    *ret = ctx;
    return 0;
}

void fv__serve_tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

serve_tls_t *fv__serve_tls_new(void *ctx)
{
    serve_tls_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    return t;
}

void fv__serve_tls_free(serve_tls_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t);
}

int fv__serve_tls_feed(serve_tls_t *t, const char *in, size_t n)
{
    return BIO_write(t->rbio, in, (int)n) == (int)n ? 0 : FV_ENOMEM;
}

/* Plaintext into buf: 0 with *ret_n (0: nothing yet), UV_EOF at the peer's close_notify,
 * FV_EPROTO for a failed handshake or a bad record. */
int fv__serve_tls_read(serve_tls_t *t, char *buf, size_t cap, size_t *ret_n)
{
    *ret_n = 0;
    if (cap == 0)
        return 0;
    int n = SSL_read(t->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
    if (n > 0) {
        *ret_n = (size_t)n;
        return 0;
    }
    int e = SSL_get_error(t->ssl, n);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    return e == SSL_ERROR_ZERO_RETURN ? UV_EOF : FV_EPROTO;
}

int fv__serve_tls_write(serve_tls_t *t, const char *buf, size_t n)
{
    if (n == 0)
        return 0;
    int w = SSL_write(t->ssl, buf, (int)n);
    ERR_clear_error();
    return w == (int)n ? 0 : FV_EPROTO;
}

/* The ciphertext waiting to be sent, as a malloc'd buffer (*ret NULL when none). */
int fv__serve_tls_take(serve_tls_t *t, char **ret, size_t *ret_len)
{
    *ret = NULL;
    *ret_len = 0;
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0)
        return 0;
    char *b = malloc(n);
    if (b == NULL)
        return FV_ENOMEM;
    int got = BIO_read(t->wbio, b, (int)n);
    if (got != (int)n) {
        free(b);
        return FV_EPROTO;
    }
    *ret = b;
    *ret_len = n;
    return 0;
}

typedef struct twrite {
    uv_write_t req;
    char *buf;
} twrite_t;

static void on_twrite(uv_write_t *req, int status)
{
    twrite_t *w = (twrite_t *)req;
    (void)status; /* a failed write shows as a read error or EOF */
    free(w->buf);
    free(w);
}

/* Sends the engine's pending ciphertext (handshake records, alerts) on st. */
int fv__serve_tls_flush(serve_tls_t *t, uv_stream_t *st)
{
    char *b;
    size_t n;
    int r = fv__serve_tls_take(t, &b, &n);
    if (r != 0 || b == NULL)
        return r;
    twrite_t *w = malloc(sizeof *w);
    if (w == NULL) {
        free(b);
        return FV_ENOMEM;
    }
    w->buf = b;
    uv_buf_t ub = uv_buf_init(b, (unsigned)n);
    if ((r = uv_write(&w->req, st, &ub, 1, on_twrite)) != 0) {
        free(b);
        free(w);
    }
    return r;
}

/* Decrypts into buf[*len..cap) until the engine has nothing more (or buf is full). */
int fv__serve_tls_pull(serve_tls_t *t, char *buf, size_t *len, size_t cap)
{
    for (;;) {
        size_t n;
        int r = fv__serve_tls_read(t, buf + *len, cap - *len, &n);
        if (r != 0)
            return r;
        if (n == 0)
            return 0;
        *len += n;
    }
}
