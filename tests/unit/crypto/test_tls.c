/* test_tls.c - TLS 1.3 mutual authentication over memory BIOs (fv_tls_*).
 *
 * Two engines are pumped against each other in memory: pump() drains each side's output
 * into the other's input and drives both handshakes until neither moves. Certificates
 * come from the real CA code (fv_pki_*) in a temporary directory, so these tests also
 * pin down that what provisioning issues is what the TLS layer accepts.
 *
 * A fv_tls client cannot be made to hold a certificate its own CA rejects (fv_tls_ctx_new
 * refuses it), so refusals at the server of a bad client certificate (none, another CA,
 * expired, another federation) use a raw OpenSSL client that does not verify the server.
 * Certificates fv_pki cannot issue by design (another federation's subject signed by our
 * CA, a subject with an unknown role) are minted here with OpenSSL and our CA's key: they
 * model a CA that misissued, which the TLS layer must still refuse.
 *
 * The diag of every refusal is printed to stderr, so the log shows what an operator sees.
 */
#define _GNU_SOURCE /* mkdtemp, nftw */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <uv.h>

#include "fv_crypto.h"
#include "fv_pki.h"
#include "fv_test.h"
#include "fv_tls.h"

#define ADDR "127.0.0.1:7443"

static char base[256]; /* the temporary directory */

/* ---- files ------------------------------------------------------------------------ */

static const char *path_of(char *buf, const char *fed, const char *who, const char *file)
{
    snprintf(buf, 512, "%s/%s/%s/%s", base, fed, who, file);
    return buf;
}

static void fed_dir(char *buf, const char *fed)
{
    snprintf(buf, 512, "%s/%s", base, fed);
}

static void make_ca(const char *fed)
{
    char dir[512];
    fv_pki_opts_t o = {0};
    fv_diag_t d = {{0}};
    fed_dir(dir, fed);
    CHECK_OK(fv_pki_ca_create(dir, fed, &o, &d), &d);
}

static void issue(const char *fed, const char *name, fv_role_t role, int64_t not_before,
                  int64_t not_after)
{
    char dir[512];
    fv_pki_opts_t o = {.not_before = not_before, .not_after = not_after};
    fv_diag_t d = {{0}};
    fed_dir(dir, fed);
    CHECK_OK(fv_pki_issue(dir, name, role, ADDR, &o, &d), &d);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK_UINT_EQ(fwrite(data, 1, len, f), len);
    CHECK(fclose(f) == 0);
}

static void copy_file(const char *from, const char *to)
{
    char buf[65536];
    FILE *f = fopen(from, "rb");
    CHECK(f != NULL);
    size_t n = fread(buf, 1, sizeof buf, f);
    CHECK(n < sizeof buf);
    fclose(f);
    write_file(to, buf, n);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* ---- contexts --------------------------------------------------------------------- */

/* A context from a kit: DIR/<fed>/<who>/{ca,cert,key}.pem, plus its crl.pem if with_crl. */
static int ctx_from_kit(bool is_server, const char *fed, const char *who, bool with_crl,
                        fv_tls_ctx_t **ret, fv_diag_t *d)
{
    char ca[512], cert[512], key[512], crl[512];
    fv_tls_opts_t o = {
        .ca_file = path_of(ca, fed, who, "ca.pem"),
        .cert_file = path_of(cert, fed, who, "cert.pem"),
        .key_file = path_of(key, fed, who, "key.pem"),
        .crl_file = with_crl ? path_of(crl, fed, who, "crl.pem") : NULL,
    };
    return fv_tls_ctx_new(is_server, &o, ret, d);
}

static fv_tls_ctx_t *kit_ctx(bool is_server, const char *fed, const char *who, bool with_crl)
{
    fv_tls_ctx_t *ctx = NULL;
    fv_diag_t d = {{0}};
    CHECK_OK(ctx_from_kit(is_server, fed, who, with_crl, &ctx, &d), &d);
    return ctx;
}

/* ---- pumping ---------------------------------------------------------------------- */

/* Moves everything from's output holds into to's input. Returns bytes moved. */
static size_t move(fv_tls_t *from, fv_tls_t *to)
{
    uint8_t buf[16384];
    size_t n, total = 0;
    while ((n = fv_tls_drain(from, buf, sizeof buf)) > 0) {
        CHECK_OK(fv_tls_feed(to, buf, n), NULL);
        total += n;
    }
    CHECK_UINT_EQ(fv_tls_pending(from), 0);
    return total;
}

struct hs {
    int rc_c, rc_s;
    fv_diag_t dc, ds;
};

/* Drives both handshakes until neither side produces output; a failed side's alert is
 * still delivered to the other. */
static void pump(fv_tls_t *c, fv_tls_t *s, struct hs *h)
{
    memset(h, 0, sizeof *h);
    h->rc_c = h->rc_s = UV_EAGAIN;
    for (int round = 0; round < 50; round++) {
        if (h->rc_c == UV_EAGAIN)
            h->rc_c = fv_tls_handshake(c, &h->dc);
        size_t m = move(c, s);
        if (h->rc_s == UV_EAGAIN)
            h->rc_s = fv_tls_handshake(s, &h->ds);
        m += move(s, c);
        if (m == 0 && (h->rc_c != UV_EAGAIN || h->rc_s != UV_EAGAIN))
            return;
    }
    FV__FAIL("handshake did not settle (client %d, server %d)", h->rc_c, h->rc_s);
}

/* Reads what is buffered on t (after move()) into out, returns bytes read; rc from the
 * last read through ret_rc. */
static size_t read_all(fv_tls_t *t, uint8_t *out, size_t cap, int *ret_rc)
{
    size_t total = 0, n = 0;
    int rc;
    do {
        size_t want = cap - total < 7001 ? cap - total : 7001; /* odd, < one record */
        rc = fv_tls_read(t, out + total, want, &n);
        if (rc < 0)
            break;
        total += n;
    } while (n > 0 && total < cap);
    *ret_rc = rc;
    return total;
}

static void connect_ok(fv_tls_ctx_t *cc, fv_tls_ctx_t *sc, fv_tls_t **ret_c, fv_tls_t **ret_s)
{
    struct hs h;
    CHECK_OK(fv_tls_new(cc, ret_c), NULL);
    CHECK_OK(fv_tls_new(sc, ret_s), NULL);
    pump(*ret_c, *ret_s, &h);
    CHECK_OK(h.rc_c, &h.dc);
    CHECK_OK(h.rc_s, &h.ds);
    CHECK(fv_tls_established(*ret_c));
    CHECK(fv_tls_established(*ret_s));
}

/* Sends msg from a to b and checks it arrives. */
static void exchange(fv_tls_t *a, fv_tls_t *b, const char *msg)
{
    uint8_t buf[256];
    int rc;
    CHECK_OK(fv_tls_write(a, (const uint8_t *)msg, strlen(msg)), NULL);
    move(a, b);
    size_t n = read_all(b, buf, sizeof buf, &rc);
    CHECK_INT_EQ(rc, 0);
    CHECK_UINT_EQ(n, strlen(msg));
    CHECK(memcmp(buf, msg, n) == 0);
}

/* A client that must be refused: its handshake either fails, or (TLS 1.3: the client is
 * done before the server judges it) its first read reports the server's alert. */
static void client_sees_refusal(fv_tls_t *c, const struct hs *h, const char *needle)
{
    if (h->rc_c == 0) {
        uint8_t buf[64];
        size_t n = 0;
        int rc = fv_tls_read(c, buf, sizeof buf, &n);
        CHECK_INT_EQ(rc, FV_EAUTH);
        fprintf(stderr, "  client read: %s: %s\n", fv_err_name(rc), fv_tls_error(c));
        CHECK_CONTAINS(fv_tls_error(c), needle);
    } else {
        CHECK_INT_EQ(h->rc_c, FV_EAUTH);
        fprintf(stderr, "  client handshake: %s\n", h->dc.msg);
        CHECK_CONTAINS(h->dc.msg, needle);
    }
}

/* ---- a raw OpenSSL client (for client certificates fv_tls_ctx_new would refuse) ---- */

/* Runs a handshake of a raw client (cert/key may be NULL: no certificate) against a
 * fv_tls server; returns the server's result. The raw client does not verify. */
static int raw_client_version(const char *cert, const char *key, int version, fv_tls_ctx_t *sctx,
                              fv_diag_t *ds)
{
    SSL_CTX *cx = SSL_CTX_new(TLS_client_method());
    CHECK(cx != NULL);
    CHECK(SSL_CTX_set_min_proto_version(cx, version) == 1);
    CHECK(SSL_CTX_set_max_proto_version(cx, version) == 1);
    SSL_CTX_set_verify(cx, SSL_VERIFY_NONE, NULL);
    if (cert != NULL) {
        CHECK(SSL_CTX_use_certificate_file(cx, cert, SSL_FILETYPE_PEM) == 1);
        CHECK(SSL_CTX_use_PrivateKey_file(cx, key, SSL_FILETYPE_PEM) == 1);
    }
    SSL *ssl = SSL_new(cx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    CHECK(ssl != NULL && rb != NULL && wb != NULL);
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);

    fv_tls_t *s = NULL;
    CHECK_OK(fv_tls_new(sctx, &s), NULL);
    int rc_s = UV_EAGAIN, rc_c = 0;
    uint8_t buf[16384];
    for (int round = 0; round < 50; round++) {
        size_t m = 0;
        int n;
        rc_c = SSL_do_handshake(ssl);
        while ((n = BIO_read(wb, buf, sizeof buf)) > 0) {
            CHECK_OK(fv_tls_feed(s, buf, (size_t)n), NULL);
            m += (size_t)n;
        }
        if (rc_s == UV_EAGAIN)
            rc_s = fv_tls_handshake(s, ds);
        size_t k;
        while ((k = fv_tls_drain(s, buf, sizeof buf)) > 0) {
            CHECK(BIO_write(rb, buf, (int)k) == (int)k);
            m += k;
        }
        if (m == 0 && rc_s != UV_EAGAIN)
            break;
    }
    /* What the raw client makes of the server's answer, for the log. */
    if (rc_s != 0) {
        uint8_t b[16];
        size_t n;
        if (SSL_read_ex(ssl, b, sizeof b, &n) != 1 || rc_c != 1) {
            char e[256];
            ERR_error_string_n(ERR_peek_last_error(), e, sizeof e);
            fprintf(stderr, "  raw client saw: %s\n", e);
        }
    }
    ERR_clear_error();
    fv_tls_free(s);
    SSL_free(ssl);
    SSL_CTX_free(cx);
    return rc_s;
}

static int raw_client(const char *cert, const char *key, fv_tls_ctx_t *sctx, fv_diag_t *ds)
{
    return raw_client_version(cert, key, TLS1_3_VERSION, sctx, ds);
}

/* A certificate signed by fed's CA key with any subject (a misissuing CA). */
static void mint(const char *fed, const char *o, const char *ou, const char *cn,
                 const char *cert_out, const char *key_out)
{
    char p[512];
    FILE *f;
    snprintf(p, sizeof p, "%s/%s/ca/ca.key", base, fed);
    CHECK((f = fopen(p, "r")) != NULL);
    EVP_PKEY *ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    snprintf(p, sizeof p, "%s/%s/ca/ca.pem", base, fed);
    CHECK((f = fopen(p, "r")) != NULL);
    X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    CHECK(ca_key != NULL && ca != NULL);

    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    X509 *x = X509_new();
    CHECK(k != NULL && x != NULL);
    CHECK(X509_set_version(x, 2) == 1);
    CHECK(ASN1_INTEGER_set(X509_get_serialNumber(x), 424242) == 1);
    CHECK(X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL);
    CHECK(X509_gmtime_adj(X509_getm_notAfter(x), 86400) != NULL);
    X509_NAME *nm = X509_get_subject_name(x);
    CHECK(X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)o, -1, -1, 0) ==
          1);
    CHECK(X509_NAME_add_entry_by_txt(nm, "OU", MBSTRING_ASC, (const unsigned char *)ou, -1, -1,
                                     0) == 1);
    CHECK(X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                     0) == 1);
    CHECK(X509_set_issuer_name(x, X509_get_subject_name(ca)) == 1);
    CHECK(X509_set_pubkey(x, k) == 1);
    CHECK(X509_sign(x, ca_key, NULL) > 0);
    CHECK((f = fopen(cert_out, "w")) != NULL);
    CHECK(PEM_write_X509(f, x) == 1);
    fclose(f);
    CHECK((f = fopen(key_out, "w")) != NULL);
    CHECK(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
}

/* An empty CRL signed by fed's CA whose nextUpdate has passed. */
static void mint_expired_crl(const char *fed, const char *out)
{
    char p[512];
    FILE *f;
    snprintf(p, sizeof p, "%s/%s/ca/ca.key", base, fed);
    CHECK((f = fopen(p, "r")) != NULL);
    EVP_PKEY *ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    snprintf(p, sizeof p, "%s/%s/ca/ca.pem", base, fed);
    CHECK((f = fopen(p, "r")) != NULL);
    X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    CHECK(ca_key != NULL && ca != NULL);

    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *last = X509_gmtime_adj(NULL, -10 * 86400), *next = X509_gmtime_adj(NULL, -86400);
    CHECK(crl != NULL && last != NULL && next != NULL);
    CHECK(X509_CRL_set_version(crl, 1) == 1);
    CHECK(X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) == 1);
    CHECK(X509_CRL_set1_lastUpdate(crl, last) == 1);
    CHECK(X509_CRL_set1_nextUpdate(crl, next) == 1);
    CHECK(X509_CRL_sign(crl, ca_key, NULL) > 0);
    CHECK((f = fopen(out, "w")) != NULL);
    CHECK(PEM_write_X509_CRL(f, crl) == 1);
    fclose(f);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
}

/* ---- tests ------------------------------------------------------------------------ */

static void check_serial(const char *hex)
{
    size_t n = strlen(hex);
    CHECK(n >= 2 && n <= 40 && n % 2 == 0);
    for (size_t i = 0; i < n; i++)
        CHECK((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
}

static void test_mutual(void)
{
    fv_tls_ctx_t *sc = kit_ctx(true, "fed-a", "coord", true);
    fv_tls_ctx_t *cc = kit_ctx(false, "fed-a", "bank-x", false);
    fv_tls_t *c, *s;
    char kp[512];
    uint8_t sk[64], sig[FV_SIGN_BYTES];
    fv_diag_t d = {{0}};

    CHECK_STR_EQ(fv_tls_ctx_identity(sc)->name, "coord");
    CHECK_STR_EQ(fv_tls_ctx_identity(sc)->federation, "fed-a");
    CHECK_INT_EQ(fv_tls_ctx_identity(sc)->role, FV_ROLE_COORDINATOR);
    CHECK_UINT_EQ(fv_tls_ctx_crl_count(sc), 0);
    CHECK_UINT_EQ(fv_tls_ctx_crl_count(cc), 0);
    CHECK_INT_EQ(fv_tls_ctx_reload_crl(cc, &d), FV_EINVAL); /* none configured */

    connect_ok(cc, sc, &c, &s);
    const fv_identity_t *ps = fv_tls_peer(s), *pc = fv_tls_peer(c);
    CHECK(ps != NULL && pc != NULL);
    CHECK_STR_EQ(ps->name, "bank-x");
    CHECK_STR_EQ(ps->federation, "fed-a");
    CHECK_INT_EQ(ps->role, FV_ROLE_AGENT);
    CHECK_STR_EQ(pc->name, "coord");
    CHECK_STR_EQ(pc->federation, "fed-a");
    CHECK_INT_EQ(pc->role, FV_ROLE_COORDINATOR);
    check_serial(ps->serial_hex);
    check_serial(pc->serial_hex);
    CHECK(strcmp(ps->serial_hex, pc->serial_hex) != 0);
    CHECK_STR_EQ(ps->serial_hex, fv_tls_ctx_identity(cc)->serial_hex);
    CHECK(memcmp(ps->sign_pk, fv_tls_ctx_identity(cc)->sign_pk, 32) == 0);
    CHECK(memcmp(pc->sign_pk, fv_tls_ctx_identity(sc)->sign_pk, 32) == 0);

    /* The TLS key is the signing key: what the kit's key signs, the peer's
     * certificate key verifies. */
    CHECK_OK(fv_tls_load_sign_key(path_of(kp, "fed-a", "bank-x", "key.pem"), sk, &d), &d);
    CHECK(memcmp(sk + 32, ps->sign_pk, 32) == 0);
    CHECK_OK(fv_sign(sig, "round 1", 7, sk), NULL);
    CHECK_OK(fv_sign_verify(sig, "round 1", 7, ps->sign_pk), NULL);
    fv_crypto_wipe(sk, sizeof sk);
    CHECK(fv_tls_load_sign_key(path_of(kp, "fed-a", "bank-x", "cert.pem"), sk, &d) < 0);
    fprintf(stderr, "  load_sign_key(cert.pem): %s\n", d.msg);
    CHECK(fv_tls_load_sign_key(path_of(kp, "fed-a", "nobody", "key.pem"), sk, &d) == UV_ENOENT);
    fprintf(stderr, "  load_sign_key(missing): %s\n", d.msg);

    exchange(c, s, "hello coordinator");
    exchange(s, c, "hello agent");
    /* Read with no input: nothing, not an error. */
    uint8_t b[8];
    size_t n = 99;
    CHECK_OK(fv_tls_read(s, b, sizeof b, &n), NULL);
    CHECK_UINT_EQ(n, 0);
    /* Handshake once established: 0 at once. */
    CHECK_OK(fv_tls_handshake(c, &d), &d);

    /* The contexts may go first: connections keep them alive. */
    fv_tls_ctx_free(sc);
    fv_tls_ctx_free(cc);
    exchange(c, s, "still here");

    /* close_notify: the reader sees UV_EOF. */
    CHECK_OK(fv_tls_shutdown(c), NULL);
    CHECK(fv_tls_pending(c) > 0);
    move(c, s);
    CHECK_INT_EQ(fv_tls_read(s, b, sizeof b, &n), UV_EOF);
    CHECK_INT_EQ(fv_tls_read(s, b, sizeof b, &n), UV_EOF);
    fv_tls_free(c);
    fv_tls_free(s);
}

/* 5 MB each way, written in uneven pieces, both directions interleaved, read with a
 * small odd buffer: many records, nothing lost or reordered. */
static void test_bulk(void)
{
    enum { TOTAL = 5 * 1000 * 1000 };
    fv_tls_ctx_t *sc = kit_ctx(true, "fed-a", "coord", true);
    fv_tls_ctx_t *cc = kit_ctx(false, "fed-a", "bank-x", false);
    fv_tls_t *c, *s;
    uint8_t *up = malloc(TOTAL), *down = malloc(TOTAL), *got_up = malloc(TOTAL),
            *got_down = malloc(TOTAL);
    size_t sent = 0, n_up = 0, n_down = 0;
    fv_rand_t r;
    int rc;

    CHECK(up && down && got_up && got_down);
    fv_rand_seeded_u64(&r, 7);
    fv_rand_fill(&r, up, TOTAL);
    fv_rand_fill(&r, down, TOTAL);
    connect_ok(cc, sc, &c, &s);
    fv_tls_ctx_free(sc);
    fv_tls_ctx_free(cc);
    while (sent < TOTAL) {
        size_t piece = 1 + (sent * 7919 + 12345) % 200000;
        if (piece > TOTAL - sent)
            piece = TOTAL - sent;
        CHECK_OK(fv_tls_write(c, up + sent, piece), NULL);
        CHECK_OK(fv_tls_write(s, down + sent, piece), NULL);
        sent += piece;
        move(c, s);
        move(s, c);
        n_up += read_all(s, got_up + n_up, TOTAL - n_up, &rc);
        CHECK_INT_EQ(rc, 0);
        n_down += read_all(c, got_down + n_down, TOTAL - n_down, &rc);
        CHECK_INT_EQ(rc, 0);
        CHECK_UINT_EQ(n_up, sent);
        CHECK_UINT_EQ(n_down, sent);
    }
    CHECK(memcmp(up, got_up, TOTAL) == 0);
    CHECK(memcmp(down, got_down, TOTAL) == 0);
    CHECK_OK(fv_tls_write(c, up, 0), NULL);
    fv_tls_free(c);
    fv_tls_free(s);
    free(up);
    free(down);
    free(got_up);
    free(got_down);
}

static void test_no_client_cert(void)
{
    fv_tls_ctx_t *sc = kit_ctx(true, "fed-a", "coord", true);
    fv_diag_t d = {{0}};
    fprintf(stderr, "no client certificate:\n");
    int rc = raw_client(NULL, NULL, sc, &d);
    fprintf(stderr, "  server: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EAUTH);
    CHECK_CONTAINS(d.msg, "no certificate");
    fv_tls_ctx_free(sc);
}

/* A client whose certificate another CA issued (it trusts ours, so it would get as far
 * as sending it): refused at the server. */
static void test_client_other_ca(void)
{
    fv_tls_ctx_t *sc = kit_ctx(true, "fed-a", "coord", true);
    char cert[512], key[512];
    fv_diag_t d = {{0}};
    fprintf(stderr, "client certificate from another CA:\n");
    int rc = raw_client(path_of(cert, "fed-b", "bank-b", "cert.pem"),
                        path_of(key, "fed-b", "bank-b", "key.pem"), sc, &d);
    fprintf(stderr, "  server: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EAUTH);
    CHECK_CONTAINS(d.msg, "peer certificate refused");
    CHECK_CONTAINS(d.msg, "CN=bank-b");
    fv_tls_ctx_free(sc);
}

/* Both ends are fv_tls: each trusts only its own CA; the client refuses first, and the
 * server learns why from the alert. */
static void test_server_other_ca(void)
{
    fv_tls_ctx_t *sc = kit_ctx(true, "fed-b", "coord-b", true);
    fv_tls_ctx_t *cc = kit_ctx(false, "fed-a", "bank-x", false);
    fv_tls_t *c, *s;
    struct hs h;
    fprintf(stderr, "server certificate from another CA:\n");
    CHECK_OK(fv_tls_new(cc, &c), NULL);
    CHECK_OK(fv_tls_new(sc, &s), NULL);
    pump(c, s, &h);
    fprintf(stderr, "  client: %s: %s\n", fv_err_name(h.rc_c), h.dc.msg);
    fprintf(stderr, "  server: %s: %s\n", fv_err_name(h.rc_s), h.ds.msg);
    CHECK_INT_EQ(h.rc_c, FV_EAUTH);
    CHECK_CONTAINS(h.dc.msg, "CN=coord-b");
    CHECK_INT_EQ(h.rc_s, FV_EAUTH);
    CHECK_CONTAINS(h.ds.msg, "peer refused our certificate");
    CHECK(!fv_tls_established(c));
    CHECK(fv_tls_peer(c) == NULL);
    /* Sticky: asking again gives the same answer. */
    fv_diag_t d2 = {{0}};
    CHECK_INT_EQ(fv_tls_handshake(c, &d2), FV_EAUTH);
    CHECK_STR_EQ(d2.msg, h.dc.msg);
    uint8_t b[8];
    size_t n;
    CHECK_INT_EQ(fv_tls_write(c, b, sizeof b), FV_EAUTH);
    CHECK_INT_EQ(fv_tls_read(c, b, sizeof b, &n), FV_EAUTH);
    fv_tls_free(c);
    fv_tls_free(s);
    fv_tls_ctx_free(sc);
    fv_tls_ctx_free(cc);
}

static void test_expired(void)
{
    fv_tls_ctx_t *sc = kit_ctx(true, "fed-a", "coord", true), *cc = NULL;
    char cert[512], key[512];
    fv_diag_t d = {{0}};
    fprintf(stderr, "expired client certificate:\n");
    int rc = raw_client(path_of(cert, "fed-a", "bank-old", "cert.pem"),
                        path_of(key, "fed-a", "bank-old", "key.pem"), sc, &d);
    fprintf(stderr, "  server: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EAUTH);
    CHECK_CONTAINS(d.msg, "expired");
    CHECK_CONTAINS(d.msg, "CN=bank-old");
    /* Our own expired kit is refused at startup. */
    rc = ctx_from_kit(false, "fed-a", "bank-old", false, &cc, &d);
    fprintf(stderr, "  ctx_new: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EAUTH);
    CHECK_CONTAINS(d.msg, "expired");
    CHECK_CONTAINS(d.msg, "bank-old/cert.pem");
    fv_tls_ctx_free(sc);
}

/* A certificate from our CA for another federation, and one with a role that does not
 * exist: both misissued, both refused. */
static void test_misissued(void)
{
    fv_tls_ctx_t *sc = kit_ctx(true, "fed-a", "coord", true);
    fv_tls_ctx_t *cc = kit_ctx(false, "fed-a", "bank-x", false), *zc = NULL;
    char cert[512], key[512], ca[512];
    fv_diag_t d = {{0}};
    int rc;

    snprintf(cert, sizeof cert, "%s/rogue-cert.pem", base);
    snprintf(key, sizeof key, "%s/rogue-key.pem", base);
    mint("fed-a", "fed-z", "agent", "rogue", cert, key);
    fprintf(stderr, "client certificate for another federation, same CA:\n");
    rc = raw_client(cert, key, sc, &d);
    fprintf(stderr, "  server: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EAUTH);
    CHECK_CONTAINS(d.msg, "peer certificate is for federation fed-z, we are fed-a");

    /* The same certificate as a fv_tls server: it believes it is in fed-z, so it is the
     * client (fed-a) that refuses it. */
    fv_tls_opts_t o = {
        .ca_file = path_of(ca, "fed-a", "coord", "ca.pem"), .cert_file = cert, .key_file = key};
    CHECK_OK(fv_tls_ctx_new(true, &o, &zc, &d), &d);
    CHECK_STR_EQ(fv_tls_ctx_identity(zc)->federation, "fed-z");
    fv_tls_t *c, *s;
    struct hs h;
    CHECK_OK(fv_tls_new(cc, &c), NULL);
    CHECK_OK(fv_tls_new(zc, &s), NULL);
    pump(c, s, &h);
    fprintf(stderr, "server certificate for another federation, same CA:\n");
    fprintf(stderr, "  client: %s: %s\n", fv_err_name(h.rc_c), h.dc.msg);
    fprintf(stderr, "  server: %s: %s\n", fv_err_name(h.rc_s), h.ds.msg);
    CHECK_INT_EQ(h.rc_c, FV_EAUTH);
    CHECK_CONTAINS(h.dc.msg, "peer certificate is for federation fed-z, we are fed-a");
    CHECK_INT_EQ(h.rc_s, FV_EAUTH);
    fv_tls_free(c);
    fv_tls_free(s);
    fv_tls_ctx_free(zc);

    mint("fed-a", "fed-a", "janitor", "mop", cert, key);
    fprintf(stderr, "client certificate with an unknown role:\n");
    rc = raw_client(cert, key, sc, &d);
    fprintf(stderr, "  server: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EAUTH);
    CHECK_CONTAINS(d.msg, "janitor");
    /* ... which fv_tls_ctx_new refuses as our own, too. */
    rc = fv_tls_ctx_new(false, &o, &zc, &d);
    fprintf(stderr, "  ctx_new: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EPARSE);
    fv_tls_ctx_free(sc);
    fv_tls_ctx_free(cc);
}

static void test_revoked(void)
{
    fv_tls_ctx_t *sc = kit_ctx(true, "fed-a", "coord", true);
    fv_tls_ctx_t *cc = kit_ctx(false, "fed-a", "bank-r", false);
    fv_tls_ctx_t *xc = kit_ctx(false, "fed-a", "bank-x", false);
    fv_tls_t *c, *s, *c_old, *s_old;
    char dir[512], crl[512], crl_b[512];
    fv_diag_t d = {{0}};
    struct hs h;
    int rc;

    connect_ok(cc, sc, &c_old, &s_old);
    fed_dir(dir, "fed-a");
    CHECK_OK(fv_pki_revoke(dir, "bank-r", &d), &d);
    /* Not reloaded yet: still accepted. */
    connect_ok(cc, sc, &c, &s);
    fv_tls_free(c);
    fv_tls_free(s);
    {
        /* Before the reload nobody is revoked; the live session's serial is the kit's. */
        const fv_identity_t *old_peer = fv_tls_peer(s_old);
        CHECK(old_peer != NULL);
        CHECK(!fv_tls_ctx_revoked(sc, old_peer->serial_hex));
    }
    CHECK_OK(fv_tls_ctx_reload_crl(sc, &d), &d);
    CHECK_UINT_EQ(fv_tls_ctx_crl_count(sc), 1);
    {
        /* The reloaded CRL revokes the live session's certificate (the daemon closes it),
         * not the others'; anything that is not a serial is not revoked. */
        char upper[41];
        const char *serial = fv_tls_peer(s_old)->serial_hex;
        CHECK(fv_tls_ctx_revoked(sc, serial));
        CHECK(fv_tls_ctx_revoked(sc, fv_tls_ctx_identity(cc)->serial_hex));
        CHECK(!fv_tls_ctx_revoked(sc, fv_tls_ctx_identity(xc)->serial_hex));
        CHECK(!fv_tls_ctx_revoked(sc, fv_tls_ctx_identity(sc)->serial_hex));
        CHECK(!fv_tls_ctx_revoked(cc, serial)); /* no CRL configured */
        snprintf(upper, sizeof upper, "%s", serial);
        for (char *p = upper; *p != '\0'; p++)
            *p = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
        CHECK(fv_tls_ctx_revoked(sc, upper)); /* hex digits in either case */
        upper[strlen(upper) - 1] = '\0';
        CHECK(!fv_tls_ctx_revoked(sc, upper)); /* odd length */
        CHECK(!fv_tls_ctx_revoked(sc, ""));
        CHECK(!fv_tls_ctx_revoked(sc, NULL));
        CHECK(!fv_tls_ctx_revoked(sc, "zz"));
        CHECK(!fv_tls_ctx_revoked(sc, "000102030405060708090a0b0c0d0e0f1011121314")); /* 21 bytes */
    }

    fprintf(stderr, "revoked client certificate:\n");
    CHECK_OK(fv_tls_new(cc, &c), NULL);
    CHECK_OK(fv_tls_new(sc, &s), NULL);
    pump(c, s, &h);
    fprintf(stderr, "  server: %s: %s\n", fv_err_name(h.rc_s), h.ds.msg);
    CHECK_INT_EQ(h.rc_s, FV_EAUTH);
    CHECK_CONTAINS(h.ds.msg, "revoked");
    CHECK_CONTAINS(h.ds.msg, "CN=bank-r");
    client_sees_refusal(c, &h, "revoked");
    fv_tls_free(c);
    fv_tls_free(s);
    /* A connection established before the reload lives on (the caller drops it if it
     * wants to: fv_tls_peer says who it is). */
    exchange(c_old, s_old, "old session");
    fv_tls_free(c_old);
    fv_tls_free(s_old);

    /* A corrupt CRL: the reload fails, the old CRL stays in force. */
    path_of(crl, "fed-a", "coord", "crl.pem");
    write_file(crl, "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n", 60);
    rc = fv_tls_ctx_reload_crl(sc, &d);
    fprintf(stderr, "reload of a corrupt CRL: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EPARSE);
    CHECK_CONTAINS(d.msg, "coord/crl.pem");
    /* Another CA's CRL: refused too. */
    copy_file(path_of(crl_b, "fed-b", "coord-b", "crl.pem"), crl);
    rc = fv_tls_ctx_reload_crl(sc, &d);
    fprintf(stderr, "reload of another CA's CRL: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EAUTH);
    unlink(crl);
    rc = fv_tls_ctx_reload_crl(sc, &d);
    fprintf(stderr, "reload of a missing CRL: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, UV_ENOENT);
    CHECK_UINT_EQ(fv_tls_ctx_crl_count(sc), 1);
    CHECK_OK(fv_tls_new(cc, &c), NULL);
    CHECK_OK(fv_tls_new(sc, &s), NULL);
    pump(c, s, &h);
    CHECK_INT_EQ(h.rc_s, FV_EAUTH);
    CHECK_CONTAINS(h.ds.msg, "revoked");
    fv_tls_free(c);
    fv_tls_free(s);
    connect_ok(xc, sc, &c, &s); /* others still get in */
    fv_tls_free(c);
    fv_tls_free(s);

    /* A server configured with a CRL that is missing fails at startup, naming it. */
    fv_tls_ctx_t *bad = NULL;
    rc = ctx_from_kit(true, "fed-a", "coord", true, &bad, &d);
    fprintf(stderr, "ctx_new with a missing CRL: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, UV_ENOENT);
    CHECK(bad == NULL);
    /* An expired CRL (signed by our CA) installs, and fails closed: nobody gets in. */
    mint_expired_crl("fed-a", crl);
    rc = ctx_from_kit(true, "fed-a", "coord", true, &bad, &d);
    fprintf(stderr, "ctx_new with an expired CRL: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EAUTH);
    CHECK_CONTAINS(d.msg, "CRL has expired");
    CHECK_OK(fv_tls_ctx_reload_crl(sc, &d), &d);
    CHECK_UINT_EQ(fv_tls_ctx_crl_count(sc), 0);
    CHECK_OK(fv_tls_new(xc, &c), NULL);
    CHECK_OK(fv_tls_new(sc, &s), NULL);
    pump(c, s, &h);
    fprintf(stderr, "client checked against an expired CRL:\n  server: %s: %s\n",
            fv_err_name(h.rc_s), h.ds.msg);
    CHECK_INT_EQ(h.rc_s, FV_EAUTH);
    CHECK_CONTAINS(h.ds.msg, "CRL has expired");
    client_sees_refusal(c, &h, "peer refused our certificate");
    fv_tls_free(c);
    fv_tls_free(s);

    /* Restore the CA's CRL for later tests. */
    snprintf(crl_b, sizeof crl_b, "%s/fed-a/ca/crl.pem", base);
    copy_file(crl_b, crl);
    fv_tls_ctx_free(sc);
    fv_tls_ctx_free(cc);
    fv_tls_ctx_free(xc);
}

/* Bytes that are not TLS: the server (and a client) fail with FV_EPROTO. */
static void test_garbage(void)
{
    fv_tls_ctx_t *sc = kit_ctx(true, "fed-a", "coord", true);
    fv_tls_ctx_t *cc = kit_ctx(false, "fed-a", "bank-x", false);
    static const char http[] = "GET / HTTP/1.1\r\nHost: coord\r\n\r\n";
    static const uint8_t junk[64] = {0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff};
    fv_tls_t *t;
    fv_diag_t d = {{0}};
    int rc;

    CHECK_OK(fv_tls_new(sc, &t), NULL);
    CHECK_OK(fv_tls_feed(t, (const uint8_t *)http, sizeof http - 1), NULL);
    rc = fv_tls_handshake(t, &d);
    fprintf(stderr, "HTTP to the server: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EPROTO);
    fv_tls_free(t);

    CHECK_OK(fv_tls_new(sc, &t), NULL);
    CHECK_OK(fv_tls_feed(t, junk, sizeof junk), NULL);
    rc = fv_tls_handshake(t, &d);
    fprintf(stderr, "bad handshake record to the server: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EPROTO);
    fv_tls_free(t);

    CHECK_OK(fv_tls_new(cc, &t), NULL);
    CHECK_INT_EQ(fv_tls_handshake(t, &d), UV_EAGAIN);
    CHECK(fv_tls_pending(t) > 0); /* the ClientHello */
    CHECK_OK(fv_tls_feed(t, (const uint8_t *)http, sizeof http - 1), NULL);
    rc = fv_tls_handshake(t, &d);
    fprintf(stderr, "HTTP to the client: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EPROTO);
    fv_tls_free(t);

    /* A TLS 1.2 client with a good certificate: wrong version. */
    char cert[512], key[512];
    rc = raw_client_version(path_of(cert, "fed-a", "bank-x", "cert.pem"),
                            path_of(key, "fed-a", "bank-x", "key.pem"), TLS1_2_VERSION, sc, &d);
    fprintf(stderr, "TLS 1.2 client: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EPROTO);

    /* Before the handshake, reading and writing are refused. */
    uint8_t b[4];
    size_t n;
    CHECK_OK(fv_tls_new(cc, &t), NULL);
    CHECK_INT_EQ(fv_tls_read(t, b, sizeof b, &n), FV_EINVAL);
    CHECK_INT_EQ(fv_tls_write(t, b, sizeof b), FV_EINVAL);
    CHECK_INT_EQ(fv_tls_shutdown(t), FV_EINVAL);
    CHECK(fv_tls_peer(t) == NULL);
    fv_tls_free(t);
    fv_tls_ctx_free(sc);
    fv_tls_ctx_free(cc);
}

static void test_feed_cap(void)
{
    fv_tls_ctx_t *sc = kit_ctx(true, "fed-a", "coord", true);
    fv_tls_t *t;
    uint8_t *buf = calloc(1, 65536);
    CHECK(buf != NULL);
    CHECK_OK(fv_tls_new(sc, &t), NULL);
    for (int i = 0; i < 16; i++)
        CHECK_OK(fv_tls_feed(t, buf, 65536), NULL); /* exactly 1 MiB unread */
    CHECK_INT_EQ(fv_tls_feed(t, buf, 1), FV_ETOOBIG);
    CHECK_OK(fv_tls_feed(t, buf, 0), NULL);
    fv_tls_free(t);
    CHECK_OK(fv_tls_new(sc, &t), NULL);
    CHECK_INT_EQ(fv_tls_feed(t, buf, ((size_t)1 << 20) + 1), FV_ETOOBIG);
    fv_tls_free(t);
    fv_tls_ctx_free(sc);
    free(buf);
}

static void test_ctx_errors(void)
{
    char ca[512], cert[512], key[512];
    fv_tls_ctx_t *ctx = NULL;
    fv_diag_t d = {{0}};
    int rc;

    /* Missing file. */
    fv_tls_opts_t o = {.ca_file = path_of(ca, "fed-a", "nobody", "ca.pem"),
                       .cert_file = path_of(cert, "fed-a", "bank-x", "cert.pem"),
                       .key_file = path_of(key, "fed-a", "bank-x", "key.pem")};
    rc = fv_tls_ctx_new(false, &o, &ctx, &d);
    fprintf(stderr, "ctx_new, missing CA: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, UV_ENOENT);
    CHECK_CONTAINS(d.msg, "nobody/ca.pem");
    /* Not PEM. */
    o.ca_file = path_of(ca, "fed-a", "bank-x", "key.pem");
    rc = fv_tls_ctx_new(false, &o, &ctx, &d);
    fprintf(stderr, "ctx_new, key as CA: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EPARSE);
    CHECK_CONTAINS(d.msg, "bank-x/key.pem");
    /* Another participant's key. */
    o.ca_file = path_of(ca, "fed-a", "bank-x", "ca.pem");
    o.key_file = path_of(key, "fed-a", "coord", "key.pem");
    rc = fv_tls_ctx_new(false, &o, &ctx, &d);
    fprintf(stderr, "ctx_new, wrong key: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EINVAL);
    CHECK_CONTAINS(d.msg, "coord/key.pem");
    /* Another federation's CA. */
    o.ca_file = path_of(ca, "fed-b", "bank-b", "ca.pem");
    o.key_file = path_of(key, "fed-a", "bank-x", "key.pem");
    rc = fv_tls_ctx_new(false, &o, &ctx, &d);
    fprintf(stderr, "ctx_new, other CA: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EAUTH);
    CHECK_CONTAINS(d.msg, "bank-x/cert.pem");
    o.ca_file = NULL;
    CHECK_INT_EQ(fv_tls_ctx_new(false, &o, &ctx, &d), FV_EINVAL);
    CHECK(ctx == NULL);
    fv_tls_ctx_free(NULL);
    fv_tls_free(NULL);
}

int main(void)
{
    time_t now = time(NULL);

    CHECK_OK(fv_crypto_init(), NULL);
    const char *tmp = getenv("TMPDIR");
    snprintf(base, sizeof base, "%s/fv-tls-XXXXXX", tmp ? tmp : "/tmp");
    CHECK(mkdtemp(base) != NULL);

    make_ca("fed-a");
    issue("fed-a", "coord", FV_ROLE_COORDINATOR, 0, 0);
    issue("fed-a", "bank-x", FV_ROLE_AGENT, 0, 0);
    issue("fed-a", "bank-r", FV_ROLE_AGENT, 0, 0);
    issue("fed-a", "bank-old", FV_ROLE_AGENT, now - 10 * 86400, now - 86400);
    make_ca("fed-b");
    issue("fed-b", "coord-b", FV_ROLE_COORDINATOR, 0, 0);
    issue("fed-b", "bank-b", FV_ROLE_AGENT, 0, 0);

    test_mutual();
    test_bulk();
    test_no_client_cert();
    test_client_other_ca();
    test_server_other_ca();
    test_expired();
    test_misissued();
    test_revoked();
    test_garbage();
    test_feed_cap();
    test_ctx_errors();

    CHECK(nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
    /* OpenSSL's per-thread error state and caches, so leak checkers see a clean exit. */
    OPENSSL_cleanup();
    return 0;
}
