/* tls.c - TLS 1.3 with mutual authentication over memory BIOs (OpenSSL 3).
 *
 * Trust. The SSL_CTX never loads the system's default verify paths. The store that
 * verifies peers holds exactly one certificate, the federation CA read from ca_file, and,
 * when crl_file is set, that CA's CRL with X509_V_FLAG_CRL_CHECK (leaf only: the CA is
 * the root and the only issuer). A missing or expired CRL therefore fails closed. The
 * store is installed with SSL_CTX_set1_verify_cert_store: SSL_new copies the reference
 * into each connection, so fv_tls_ctx_reload_crl swaps it for new connections only, and
 * a failed reload leaves the old one untouched. Both sides send SSL_VERIFY_PEER |
 * SSL_VERIFY_FAIL_IF_NO_PEER_CERT; only TLS 1.3 and only Ed25519 signatures are spoken.
 *
 * Identity. A peer is who its verified leaf certificate says: subject exactly
 * O=<federation>, OU=<role>, CN=<name> (each once, nothing else), an Ed25519 key, and a
 * federation equal to ours. That check runs inside the verify callback at depth 0, after
 * OpenSSL has verified the chain, so a refused peer gets a proper alert (the handshake
 * fails on both ends) instead of a connection we later drop; it runs again on the final
 * peer certificate after the handshake, as a belt to those braces. The callback also
 * records the first failure (OpenSSL's reason and the subject of the certificate it was
 * about) for the diag, because the error queue only says "certificate verify failed".
 *
 * TLS 1.3 and client refusals. A TLS 1.3 client considers the handshake done once it has
 * sent its Finished, before the server has judged its certificate. A server's refusal
 * ("certificate required", "unknown ca", ...) thus reaches the client as an alert on its
 * first fv_tls_read after an apparently successful handshake: fv_tls_read maps
 * certificate alerts to FV_EAUTH and fv_tls_error() says which.
 *
 * Ownership. fv_tls_ctx_t is reference counted by hand (no atomics: one thread per
 * context, see fv_tls.h): the creator holds one reference, every fv_tls_t another.
 * fv_tls_ctx_free drops the creator's; the last reference frees the SSL_CTX, the CA, the
 * CRL and the copied path strings. A fv_tls_t owns its SSL, which owns both memory BIOs
 * (SSL_set_bio); t->rbio/t->wbio are borrowed views for feeding and draining.
 *
 * Bounds. The peer controls how much ciphertext arrives: fv_tls_feed refuses to hold more
 * than FV_TLS_FEED_MAX unread bytes. Output grows only with what the caller writes
 * (fv_tls_pending is the caller's backpressure signal); with no session tickets the
 * server sends nothing unasked after the handshake. SSL_MODE_RELEASE_BUFFERS frees the
 * record buffers of idle connections.
 *
 * Errors. OpenSSL's error queue is per thread: every function here leaves it empty on
 * return, so one connection's failure never leaks into the next call's diagnosis.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sodium.h>
#include <uv.h> /* UV_EAGAIN, UV_EOF only: no loop here */

#include "crypto-int.h"
#include "fv_tls.h"

#define FV_TLS_FEED_MAX ((size_t)1 << 20)
/* The longest error text we keep per connection (for fv_tls_error). */
#define FV_TLS_ERR_MAX FV_DIAG_MAX

struct fv_tls_ctx {
    int n_refs;
    bool is_server;
    SSL_CTX *ssl_ctx;
    X509 *ca;      /* the federation CA, kept to rebuild the store on CRL reload */
    X509_CRL *crl; /* the CRL in force, or NULL */
    char *ca_file, *cert_file, *key_file, *crl_file; /* copies; crl_file may be NULL */
    fv_identity_t self;
};

struct fv_tls {
    fv_tls_ctx_t *ctx; /* holds a reference */
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    bool established;
    int err; /* sticky failure of the handshake or a read, 0 if none */
    fv_identity_t peer;
    uint8_t *peer_der; /* the verified peer's certificate, DER (OPENSSL_malloc), or NULL */
    int peer_der_len;
    /* First certificate failure seen by the verify callback. */
    bool verify_failed;
    char verify_msg[FV_TLS_ERR_MAX];
    char err_msg[FV_TLS_ERR_MAX];
};

/* ---- helpers ---------------------------------------------------------------------- */

/* OpenSSL's reason for the oldest queued error ("no start line", "wrong version number"),
 * or its full error string when the reason has no text; the queue is emptied. Also
 * returns the packed code of that error through ret_code (0 if the queue was empty). */
static const char *ossl_reason(char *buf, size_t len, unsigned long *ret_code)
{
    unsigned long e = ERR_get_error();
    const char *r;

    if (ret_code != NULL)
        *ret_code = e;
    ERR_clear_error();
    if (e == 0) {
        snprintf(buf, len, "no OpenSSL error reported");
        return buf;
    }
    r = ERR_reason_error_string(e);
    if (r != NULL)
        snprintf(buf, len, "%s", r);
    else
        ERR_error_string_n(e, buf, len);
    return buf;
}

static char *dup_str(const char *s)
{
    return s == NULL ? NULL : strdup(s);
}

/* A subject as "O=f,OU=agent,CN=bank-x" (in certificate order, RFC 2253 escaping). */
static void subject_text(const X509 *x, char *buf, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    long n;
    char *p;

    snprintf(buf, len, "?");
    if (b == NULL || x == NULL)
        goto out;
    if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0,
                           XN_FLAG_SEP_COMMA_PLUS | XN_FLAG_FN_SN | ASN1_STRFLGS_RFC2253) < 0)
        goto out;
    n = BIO_get_mem_data(b, &p);
    if (n >= 0)
        snprintf(buf, len, "%.*s", (int)(n < 200 ? n : 200), p);
out:
    BIO_free(b);
    ERR_clear_error();
}

/* The identity a certificate states (identity.c, shared with trust.c). Does not verify
 * anything but its form: the caller has verified the chain. */
static int identity_from_cert(X509 *x, fv_identity_t *ret, fv_diag_t *d)
{
    return fv__identity_from_x509(x, ret, d);
}

static int pem_no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1; /* never prompt on a terminal: encrypted keys are refused */
}

static int open_file(const char *path, const char *what, FILE **ret, fv_diag_t *d)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int r = -errno;
        return fv_diag_set(d, r, "%s: cannot open the %s: %s", path, what, strerror(errno));
    }
    *ret = f;
    return 0;
}

static int read_cert(const char *path, const char *what, X509 **ret, fv_diag_t *d)
{
    char why[256];
    FILE *f = NULL;
    X509 *x;
    int r;

    if ((r = open_file(path, what, &f, d)) < 0)
        return r;
    x = PEM_read_X509(f, NULL, pem_no_password, NULL);
    fclose(f);
    if (x == NULL)
        return fv_diag_set(d, FV_EPARSE, "%s: not a PEM %s (OpenSSL: %s)", path, what,
                           ossl_reason(why, sizeof why, NULL));
    *ret = x;
    return 0;
}

static int read_key(const char *path, EVP_PKEY **ret, fv_diag_t *d)
{
    char why[256];
    FILE *f = NULL;
    EVP_PKEY *k;
    int r;

    if ((r = open_file(path, "private key", &f, d)) < 0)
        return r;
    k = PEM_read_PrivateKey(f, NULL, pem_no_password, NULL);
    fclose(f);
    if (k == NULL)
        return fv_diag_set(d, FV_EPARSE,
                           "%s: not a PEM private key, or an encrypted one "
                           "(OpenSSL: %s)",
                           path, ossl_reason(why, sizeof why, NULL));
    if (EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        return fv_diag_set(d, FV_EINVAL, "%s: the private key is not Ed25519", path);
    }
    *ret = k;
    return 0;
}

/* Reads the CRL and checks that the CA signed it (a CRL from another CA would make
 * every handshake fail closed; better to refuse it now and keep the old one). */
static int read_crl(const char *path, X509 *ca, X509_CRL **ret, fv_diag_t *d)
{
    char why[256];
    FILE *f = NULL;
    X509_CRL *crl;
    EVP_PKEY *ca_key = X509_get0_pubkey(ca);
    int r;

    if ((r = open_file(path, "CRL", &f, d)) < 0)
        return r;
    crl = PEM_read_X509_CRL(f, NULL, pem_no_password, NULL);
    fclose(f);
    if (crl == NULL)
        return fv_diag_set(d, FV_EPARSE, "%s: not a PEM CRL (OpenSSL: %s)", path,
                           ossl_reason(why, sizeof why, NULL));
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) != 0 || ca_key == NULL ||
        X509_CRL_verify(crl, ca_key) != 1) {
        ERR_clear_error();
        X509_CRL_free(crl);
        return fv_diag_set(d, FV_EAUTH, "%s: the CRL is not signed by the federation CA", path);
    }
    *ret = crl;
    return 0;
}

/* A fresh store: the CA, and the CRL with leaf CRL checking when crl is not NULL. */
static X509_STORE *store_new(X509 *ca, X509_CRL *crl)
{
    X509_STORE *st = X509_STORE_new();

    if (st == NULL || X509_STORE_add_cert(st, ca) != 1)
        goto fail;
    if (crl != NULL &&
        (X509_STORE_add_crl(st, crl) != 1 || X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK) != 1))
        goto fail;
    return st;
fail:
    X509_STORE_free(st);
    ERR_clear_error();
    return NULL;
}

/* ---- verification callback -------------------------------------------------------- */

static int verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    fv_tls_t *t = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);
    char subj[256];

    if (t == NULL)
        return ok;
    if (!ok) {
        if (!t->verify_failed) {
            int e = X509_STORE_CTX_get_error(xs);
            subject_text(cert, subj, sizeof subj);
            snprintf(t->verify_msg, sizeof t->verify_msg,
                     "peer certificate refused: %s (subject %s)", X509_verify_cert_error_string(e),
                     subj);
            t->verify_failed = true;
        }
        return 0;
    }
    if (X509_STORE_CTX_get_error_depth(xs) == 0) {
        fv_identity_t id;
        fv_diag_t why;
        const fv_identity_t *self = &t->ctx->self;
        int bad = 0;

        subject_text(cert, subj, sizeof subj);
        if (identity_from_cert(cert, &id, &why) < 0) {
            snprintf(t->verify_msg, sizeof t->verify_msg,
                     "peer certificate refused: %.200s (subject %s)", why.msg, subj);
            bad = 1;
        } else if (strcmp(id.federation, self->federation) != 0) {
            snprintf(t->verify_msg, sizeof t->verify_msg,
                     "peer certificate is for federation %s, we are %s (subject %s)", id.federation,
                     self->federation, subj);
            bad = 1;
        }
        if (bad) {
            t->verify_failed = true;
            /* CERT_REJECTED makes OpenSSL send a bad_certificate alert, so the peer
             * learns its certificate was refused (APPLICATION_VERIFICATION would send
             * a generic handshake_failure). */
            X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
            return 0;
        }
    }
    return 1;
}

/* ---- context ---------------------------------------------------------------------- */

static void ctx_destroy(fv_tls_ctx_t *ctx)
{
    SSL_CTX_free(ctx->ssl_ctx);
    X509_free(ctx->ca);
    X509_CRL_free(ctx->crl);
    free(ctx->ca_file);
    free(ctx->cert_file);
    free(ctx->key_file);
    free(ctx->crl_file);
    free(ctx);
}

static void ctx_unref(fv_tls_ctx_t *ctx)
{
    if (ctx != NULL && --ctx->n_refs == 0)
        ctx_destroy(ctx);
}

/* Our own certificate must verify against the CA (and the CRL, if any) for the purpose
 * the peer will check it for, so a misissued kit fails at startup, not at every peer. */
static int verify_own_cert(fv_tls_ctx_t *ctx, X509_STORE *st, X509 *cert, fv_diag_t *d)
{
    X509_STORE_CTX *xs = X509_STORE_CTX_new();
    int r = 0;

    if (xs == NULL || X509_STORE_CTX_init(xs, st, cert, NULL) != 1 ||
        X509_STORE_CTX_set_default(xs, ctx->is_server ? "ssl_server" : "ssl_client") != 1) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: cannot set up certificate verification", ctx->cert_file);
        goto out;
    }
    if (X509_verify_cert(xs) != 1) {
        int e = X509_STORE_CTX_get_error(xs);
        r = fv_diag_set(d, FV_EAUTH,
                        "%s: our certificate does not verify against the CA "
                        "in %s%s%s: %s",
                        ctx->cert_file, ctx->ca_file, ctx->crl_file ? " and the CRL in " : "",
                        ctx->crl_file ? ctx->crl_file : "", X509_verify_cert_error_string(e));
    }
out:
    X509_STORE_CTX_free(xs);
    ERR_clear_error();
    return r;
}

int fv_tls_ctx_new(bool is_server, const fv_tls_opts_t *opts, fv_tls_ctx_t **ret, fv_diag_t *d)
{
    fv_tls_ctx_t *ctx = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    X509_STORE *st = NULL;
    fv_diag_t why;
    char reason[256];
    int r = 0;

    if (opts == NULL || opts->ca_file == NULL || opts->cert_file == NULL ||
        opts->key_file == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "TLS needs a CA, a certificate and a key file");
    ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    ctx->n_refs = 1;
    ctx->is_server = is_server;
    ctx->ca_file = dup_str(opts->ca_file);
    ctx->cert_file = dup_str(opts->cert_file);
    ctx->key_file = dup_str(opts->key_file);
    ctx->crl_file = dup_str(opts->crl_file);
    if (!ctx->ca_file || !ctx->cert_file || !ctx->key_file || (opts->crl_file && !ctx->crl_file)) {
        r = fv_diag_set(d, FV_ENOMEM, "out of memory");
        goto out;
    }

    if ((r = read_cert(ctx->ca_file, "CA certificate", &ctx->ca, d)) < 0 ||
        (r = read_cert(ctx->cert_file, "certificate", &cert, d)) < 0 ||
        (r = read_key(ctx->key_file, &key, d)) < 0)
        goto out;
    if (ctx->crl_file != NULL && (r = read_crl(ctx->crl_file, ctx->ca, &ctx->crl, d)) < 0)
        goto out;
    if ((r = identity_from_cert(cert, &ctx->self, &why)) < 0) {
        r = fv_diag_set(d, r, "%s: not a fedvault identity: %s", ctx->cert_file, why.msg);
        goto out;
    }

    ctx->ssl_ctx = SSL_CTX_new(TLS_method());
    st = store_new(ctx->ca, ctx->crl);
    if (ctx->ssl_ctx == NULL || st == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "cannot create the TLS context: %s",
                        ossl_reason(reason, sizeof reason, NULL));
        goto out;
    }
    if ((r = verify_own_cert(ctx, st, cert, d)) < 0)
        goto out;

    if (SSL_CTX_use_certificate(ctx->ssl_ctx, cert) != 1) {
        r = fv_diag_set(d, FV_EINVAL, "%s: certificate refused by OpenSSL: %s", ctx->cert_file,
                        ossl_reason(reason, sizeof reason, NULL));
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx->ssl_ctx, key) != 1 ||
        SSL_CTX_check_private_key(ctx->ssl_ctx) != 1) {
        r = fv_diag_set(d, FV_EINVAL,
                        "%s: the private key does not match the certificate "
                        "in %s: %s",
                        ctx->key_file, ctx->cert_file, ossl_reason(reason, sizeof reason, NULL));
        goto out;
    }
    if (SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx->ssl_ctx, TLS1_3_VERSION) != 1 ||
        /* Every key is Ed25519, so nothing else is ever needed or accepted. */
        SSL_CTX_set1_sigalgs_list(ctx->ssl_ctx, "ed25519") != 1 ||
        SSL_CTX_set1_client_sigalgs_list(ctx->ssl_ctx, "ed25519") != 1 ||
        SSL_CTX_set_num_tickets(ctx->ssl_ctx, 0) != 1 ||
        /* Takes a reference of its own; ours is dropped at out. New SSLs copy it. */
        SSL_CTX_set1_verify_cert_store(ctx->ssl_ctx, st) != 1) {
        r = fv_diag_set(d, FV_ENOMEM, "cannot configure the TLS context: %s",
                        ossl_reason(reason, sizeof reason, NULL));
        goto out;
    }
    SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx->ssl_ctx, SSL_SESS_CACHE_OFF);
    /* Partial writes stay off: fv_tls_write encrypts everything into the memory BIO. */
    SSL_CTX_set_mode(ctx->ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx->ssl_ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    /* Leaf and root; one spare in case the CA ever uses an intermediate. */
    SSL_CTX_set_verify_depth(ctx->ssl_ctx, 2);

out:
    X509_STORE_free(st); /* set1 took its own reference */
    X509_free(cert);     /* SSL_CTX_use_* took their own references */
    EVP_PKEY_free(key);
    ERR_clear_error();
    if (r < 0) {
        ctx_destroy(ctx);
        return r;
    }
    *ret = ctx;
    return 0;
}

void fv_tls_ctx_free(fv_tls_ctx_t *ctx)
{
    ctx_unref(ctx);
}

const fv_identity_t *fv_tls_ctx_identity(const fv_tls_ctx_t *ctx)
{
    return &ctx->self;
}

int fv_tls_ctx_reload_crl(fv_tls_ctx_t *ctx, fv_diag_t *d)
{
    X509_CRL *crl = NULL;
    X509_STORE *st = NULL;
    int r;

    if (ctx->crl_file == NULL)
        return fv_diag_set(d, FV_EINVAL, "no CRL file is configured: nothing to reload");
    if ((r = read_crl(ctx->crl_file, ctx->ca, &crl, d)) < 0)
        return r;
    st = store_new(ctx->ca, crl);
    if (st == NULL || SSL_CTX_set1_verify_cert_store(ctx->ssl_ctx, st) != 1) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: cannot install the new CRL", ctx->crl_file);
        X509_CRL_free(crl);
        goto out;
    }
    X509_CRL_free(ctx->crl);
    ctx->crl = crl;
out:
    X509_STORE_free(st);
    ERR_clear_error();
    return r;
}

size_t fv_tls_ctx_crl_count(const fv_tls_ctx_t *ctx)
{
    if (ctx == NULL || ctx->crl == NULL)
        return 0;
    STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(ctx->crl);
    int n = rev != NULL ? sk_X509_REVOKED_num(rev) : 0;
    return n > 0 ? (size_t)n : 0;
}

/* ---- connections ------------------------------------------------------------------ */

int fv_tls_new(fv_tls_ctx_t *ctx, fv_tls_t **ret)
{
    fv_tls_t *t = calloc(1, sizeof *t);
    BIO *rbio = NULL, *wbio = NULL;

    if (t == NULL)
        return FV_ENOMEM;
    t->ssl = SSL_new(ctx->ssl_ctx);
    rbio = BIO_new(BIO_s_mem());
    wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || rbio == NULL || wbio == NULL) {
        BIO_free(rbio);
        BIO_free(wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return FV_ENOMEM;
    }
    /* An empty memory BIO reads as "retry", not as end of file. */
    BIO_set_mem_eof_return(rbio, -1);
    BIO_set_mem_eof_return(wbio, -1);
    SSL_set_bio(t->ssl, rbio, wbio);
    t->rbio = rbio;
    t->wbio = wbio;
    SSL_set_app_data(t->ssl, t);
    if (ctx->is_server)
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    t->ctx = ctx;
    ctx->n_refs++;
    *ret = t;
    return 0;
}

void fv_tls_free(fv_tls_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    OPENSSL_free(t->peer_der);
    ctx_unref(t->ctx);
    free(t);
}

int fv_tls_feed(fv_tls_t *t, const uint8_t *in, size_t n)
{
    size_t pending = BIO_ctrl_pending(t->rbio);

    if (n == 0)
        return 0;
    if (n > FV_TLS_FEED_MAX || pending > FV_TLS_FEED_MAX - n)
        return FV_ETOOBIG;
    if (BIO_write(t->rbio, in, (int)n) != (int)n) {
        ERR_clear_error();
        return FV_ENOMEM;
    }
    return 0;
}

/* Records the failure (sticky) and reports it through d. */
static int tls_fail(fv_tls_t *t, int err, fv_diag_t *d, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int tls_fail(fv_tls_t *t, int err, fv_diag_t *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err_msg, sizeof t->err_msg, fmt, ap);
    va_end(ap);
    t->err = err;
    return fv_diag_set(d, err, "%s", t->err_msg);
}

/* TLS alerts that mean "your certificate was not accepted". */
static bool alert_is_cert_refusal(int alert)
{
    switch (alert) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED:
        return true;
    default:
        return false;
    }
}

/* Classifies an SSL_ERROR_SSL (or SYSCALL) failure from the error queue and the verify
 * state: FV_EAUTH for certificate refusals on either side, FV_EPROTO otherwise. */
static int classify_failure(fv_tls_t *t, const char *during, fv_diag_t *d)
{
    char why[256];
    unsigned long e;
    long vr = SSL_get_verify_result(t->ssl);
    int reason;

    ossl_reason(why, sizeof why, &e);
    reason = ERR_GET_REASON(e);
    if (t->verify_failed)
        return tls_fail(t, FV_EAUTH, d, "%s", t->verify_msg);
    if (vr != X509_V_OK)
        return tls_fail(t, FV_EAUTH, d, "peer certificate refused: %s",
                        X509_verify_cert_error_string(vr));
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        return tls_fail(t, FV_EAUTH, d, "peer sent no certificate (one is required)");
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason > SSL_AD_REASON_OFFSET &&
        reason < SSL_AD_REASON_OFFSET + 256) {
        int alert = reason - SSL_AD_REASON_OFFSET;
        if (alert_is_cert_refusal(alert))
            return tls_fail(t, FV_EAUTH, d,
                            "peer refused our certificate (TLS alert "
                            "\"%s\"); check that our kit is from the peer's federation "
                            "CA, current and not revoked",
                            SSL_alert_desc_string_long(alert));
        return tls_fail(t, FV_EPROTO, d, "%s failed: peer sent TLS alert \"%s\"", during,
                        SSL_alert_desc_string_long(alert));
    }
    if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
        (reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST ||
         reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_UNSUPPORTED_PROTOCOL ||
         reason == SSL_R_PACKET_LENGTH_TOO_LONG))
        return tls_fail(t, FV_EPROTO, d, "%s failed: %s (the peer does not speak TLS 1.3)", during,
                        why);
    return tls_fail(t, FV_EPROTO, d, "%s failed: %s", during, why);
}

int fv_tls_handshake(fv_tls_t *t, fv_diag_t *d)
{
    fv_identity_t id;
    fv_diag_t why;
    X509 *peer;
    int rc, r;

    if (t->established)
        return 0;
    if (t->err < 0)
        return fv_diag_set(d, t->err, "%s", t->err_msg);
    ERR_clear_error();
    rc = SSL_do_handshake(t->ssl);
    if (rc != 1) {
        int e = SSL_get_error(t->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            return UV_EAGAIN;
        }
        return classify_failure(t, "TLS handshake", d);
    }

    /* OpenSSL verified the chain and the callback the identity; read it back from the
     * certificate the session settled on. */
    peer = SSL_get1_peer_certificate(t->ssl);
    if (peer == NULL)
        return tls_fail(t, FV_EAUTH, d, "peer sent no certificate (one is required)");
    r = identity_from_cert(peer, &id, &why);
    if (r == 0 && t->peer_der == NULL && (t->peer_der_len = i2d_X509(peer, &t->peer_der)) <= 0) {
        ERR_clear_error();
        X509_free(peer);
        return tls_fail(t, FV_ENOMEM, d, "cannot encode the peer certificate");
    }
    X509_free(peer);
    if (r < 0)
        return tls_fail(t, FV_EAUTH, d, "peer certificate refused: %s", why.msg);
    if (strcmp(id.federation, t->ctx->self.federation) != 0)
        return tls_fail(t, FV_EAUTH, d, "peer certificate is for federation %s, we are %s",
                        id.federation, t->ctx->self.federation);
    t->peer = id;
    t->established = true;
    return 0;
}

bool fv_tls_established(const fv_tls_t *t)
{
    return t->established;
}

const fv_identity_t *fv_tls_peer(const fv_tls_t *t)
{
    return t->established ? &t->peer : NULL;
}

int fv_tls_peer_der(const fv_tls_t *t, const uint8_t **ret_der, size_t *ret_len)
{
    if (!t->established || t->peer_der == NULL)
        return FV_EPHASE;
    *ret_der = t->peer_der;
    *ret_len = (size_t)t->peer_der_len;
    return 0;
}

const char *fv_tls_error(const fv_tls_t *t)
{
    return t->err_msg;
}

int fv_tls_read(fv_tls_t *t, uint8_t *buf, size_t cap, size_t *ret_n)
{
    size_t n = 0;
    int e;

    if (t->err < 0)
        return t->err;
    if (!t->established)
        return FV_EINVAL;
    if (cap == 0) {
        *ret_n = 0;
        return 0;
    }
    ERR_clear_error();
    if (SSL_read_ex(t->ssl, buf, cap, &n) == 1) {
        *ret_n = n;
        return 0;
    }
    e = SSL_get_error(t->ssl, 0);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        *ret_n = 0;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        snprintf(t->err_msg, sizeof t->err_msg, "peer closed the TLS session");
        return UV_EOF; /* not sticky: further reads say the same anyway */
    default:
        return classify_failure(t, "TLS read", NULL);
    }
}

int fv_tls_write(fv_tls_t *t, const uint8_t *buf, size_t n)
{
    char why[256];

    if (t->err < 0)
        return t->err;
    if (!t->established)
        return FV_EINVAL;
    while (n > 0) {
        /* SSL_write_ex takes a size_t, but keep each call to a sane size. */
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        size_t done = 0;
        ERR_clear_error();
        if (SSL_write_ex(t->ssl, buf, chunk, &done) != 1) {
            snprintf(t->err_msg, sizeof t->err_msg, "TLS write failed: %s",
                     ossl_reason(why, sizeof why, NULL));
            t->err = FV_EPROTO;
            return FV_EPROTO;
        }
        buf += done;
        n -= done;
    }
    return 0;
}

size_t fv_tls_pending(const fv_tls_t *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t fv_tls_drain(fv_tls_t *t, uint8_t *buf, size_t cap)
{
    int n;

    if (cap == 0)
        return 0;
    n = BIO_read(t->wbio, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    return n > 0 ? (size_t)n : 0;
}

int fv_tls_shutdown(fv_tls_t *t)
{
    if (!t->established)
        return FV_EINVAL;
    ERR_clear_error();
    /* 0: close_notify queued, the peer's not yet seen; 1: both done. Either is fine:
     * we never wait for the peer's close_notify. */
    if (SSL_shutdown(t->ssl) < 0) {
        char why[256];
        snprintf(t->err_msg, sizeof t->err_msg, "TLS shutdown failed: %s",
                 ossl_reason(why, sizeof why, NULL));
        return FV_EPROTO;
    }
    return 0;
}

/* ---- signing key ------------------------------------------------------------------ */

int fv_tls_load_sign_key(const char *key_file, uint8_t sk[64], fv_diag_t *d)
{
    EVP_PKEY *k = NULL;
    uint8_t seed[32], pk[32], pk_cert[32], out[64];
    size_t seed_len = sizeof seed, pk_len = sizeof pk_cert;
    int r;

    if (sodium_init() < 0)
        return fv_diag_set(d, FV_EIO, "libsodium cannot initialise");
    if ((r = read_key(key_file, &k, d)) < 0)
        return r;
    if (EVP_PKEY_get_raw_private_key(k, seed, &seed_len) != 1 || seed_len != sizeof seed ||
        EVP_PKEY_get_raw_public_key(k, pk_cert, &pk_len) != 1 || pk_len != sizeof pk_cert) {
        r = fv_diag_set(d, FV_EPARSE, "%s: cannot read the raw Ed25519 key", key_file);
        goto out;
    }
    if (crypto_sign_seed_keypair(pk, out, seed) != 0 || sodium_memcmp(pk, pk_cert, 32) != 0) {
        r = fv_diag_set(d, FV_ECORRUPT,
                        "%s: the Ed25519 seed does not give the stored "
                        "public key",
                        key_file);
        goto out;
    }
    memcpy(sk, out, sizeof out);
out:
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(out, sizeof out);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return r;
}

/* ---- revocation of live sessions ------------------------------------------------- */

/* A session's serial (fv_identity_t.serial_hex: the certificate's serial number bytes as
 * lowercase hex) against the revoked entries of the CRL in force. The
 * serial is decoded into an ASN1_INTEGER the way the certificate's was read, so the
 * comparison is the CRL's own (X509_CRL_get0_by_serial); an expired CRL still lists what
 * it lists (its expiry refuses new handshakes, it revokes nobody in particular). */
bool fv_tls_ctx_revoked(const fv_tls_ctx_t *ctx, const char *serial_hex)
{
    unsigned char bin[20];
    size_t n = 0, len = serial_hex != NULL ? strlen(serial_hex) : 0;
    bool revoked = false;

    if (ctx == NULL || ctx->crl == NULL || len == 0 || len % 2 != 0 || len / 2 > sizeof bin)
        return false;
    for (size_t i = 0; i < len; i++) {
        const char *digits = "0123456789abcdef";
        const char *p = strchr(digits, serial_hex[i] | 0x20);
        if (serial_hex[i] == '\0' || p == NULL)
            return false;
        if (i % 2 == 0)
            bin[n] = (unsigned char)((p - digits) << 4);
        else
            bin[n++] |= (unsigned char)(p - digits);
    }
    ASN1_INTEGER *serial = ASN1_INTEGER_new();
    X509_REVOKED *rev = NULL;
    if (serial != NULL && ASN1_STRING_set(serial, bin, (int)n) == 1)
        revoked = X509_CRL_get0_by_serial(ctx->crl, &rev, serial) == 1;
    ASN1_INTEGER_free(serial);
    ERR_clear_error();
    return revoked;
}
