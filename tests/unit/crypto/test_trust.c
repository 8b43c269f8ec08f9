/* test_trust.c - an agent's own verification of cohort certificates and CRLs (fv_trust_*).
 *
 * Certificates come from the real CA code (fv_pki_*) in a temporary directory, as in
 * test_tls.c and test_pki.c. CRLs are minted here with OpenSSL and a CA's key, so their
 * thisUpdate is chosen (fv_pki stamps "now - 1 hour", and two CRLs minted in one second
 * would be equally new). Certificates fv_pki cannot issue by design (another federation's
 * subject signed by our CA) are minted too: they model a CA that misissued. Every
 * refusal's sentence is printed to stderr and checked for the rule it names.
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
#include <openssl/x509.h>

#include "fv_crypto.h"
#include "fv_pki.h"
#include "fv_test.h"
#include "fv_tls.h"
#include "fv_trust.h"

#define ADDR "127.0.0.1:7443"

static char base[256];
static int64_t now;

static void path_of(char *buf, const char *dir, const char *who, const char *file)
{
    snprintf(buf, 512, "%s/%s/%s/%s", base, dir, who, file);
}

static void make_ca(const char *dir, const char *fed)
{
    char p[512];
    fv_pki_opts_t o = {0};
    fv_diag_t d = {{0}};
    snprintf(p, sizeof p, "%s/%s", base, dir);
    CHECK_OK(fv_pki_ca_create(p, fed, &o, &d), &d);
}

static void issue(const char *dir, const char *name, fv_role_t role, int64_t nb, int64_t na)
{
    char p[512];
    fv_pki_opts_t o = {.not_before = nb, .not_after = na};
    fv_diag_t d = {{0}};
    snprintf(p, sizeof p, "%s/%s", base, dir);
    CHECK_OK(fv_pki_issue(p, name, role, ADDR, &o, &d), &d);
}

static X509 *read_x509(const char *path)
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    CHECK(x != NULL);
    return x;
}

/* A kit's certificate as DER (caller frees with OPENSSL_free). */
static uint8_t *kit_der(const char *dir, const char *who, const char *file, size_t *ret_len)
{
    char p[512];
    path_of(p, dir, who, file);
    X509 *x = read_x509(p);
    uint8_t *der = NULL;
    int n = i2d_X509(x, &der);
    CHECK(n > 0);
    X509_free(x);
    *ret_len = (size_t)n;
    return der;
}

static EVP_PKEY *ca_key_of(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s/ca/ca.key", base, dir);
    FILE *f = fopen(p, "r");
    CHECK(f != NULL);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    CHECK(k != NULL);
    return k;
}

static X509 *ca_cert_of(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s/ca/ca.pem", base, dir);
    return read_x509(p);
}

/* A CRL signed by dir's CA: thisUpdate now + last_s, nextUpdate now + next_s, revoking
 * the certificate of kit `revoked` in dir (NULL: none). DER, OPENSSL_free. */
static uint8_t *mint_crl(const char *dir, int64_t last_s, int64_t next_s, const char *revoked,
                         size_t *ret_len)
{
    EVP_PKEY *key = ca_key_of(dir);
    X509 *ca = ca_cert_of(dir);
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *last = ASN1_TIME_set(NULL, (time_t)(now + last_s));
    ASN1_TIME *next = ASN1_TIME_set(NULL, (time_t)(now + next_s));
    CHECK(crl != NULL && last != NULL && next != NULL);
    CHECK(X509_CRL_set_version(crl, 1) == 1);
    CHECK(X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) == 1);
    CHECK(X509_CRL_set1_lastUpdate(crl, last) == 1);
    CHECK(X509_CRL_set1_nextUpdate(crl, next) == 1);
    if (revoked != NULL) {
        char p[512];
        path_of(p, dir, revoked, "cert.pem");
        X509 *x = read_x509(p);
        X509_REVOKED *rv = X509_REVOKED_new();
        CHECK(rv != NULL);
        CHECK(X509_REVOKED_set_serialNumber(rv, X509_get_serialNumber(x)) == 1);
        CHECK(X509_REVOKED_set_revocationDate(rv, last) == 1);
        CHECK(X509_CRL_add0_revoked(crl, rv) == 1);
        CHECK(X509_CRL_sort(crl) == 1);
        X509_free(x);
    }
    CHECK(X509_CRL_sign(crl, key, NULL) > 0);
    uint8_t *der = NULL;
    int n = i2d_X509_CRL(crl, &der);
    CHECK(n > 0);
    *ret_len = (size_t)n;
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    X509_free(ca);
    EVP_PKEY_free(key);
    return der;
}

/* A leaf with any subject, signed by dir's CA key (a misissuing CA). DER. */
static uint8_t *mint_leaf(const char *dir, const char *o, const char *ou, const char *cn,
                          size_t *ret_len)
{
    EVP_PKEY *ca_key = ca_key_of(dir);
    X509 *ca = ca_cert_of(dir);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    X509 *x = X509_new();
    CHECK(k != NULL && x != NULL);
    CHECK(X509_set_version(x, 2) == 1);
    CHECK(ASN1_INTEGER_set(X509_get_serialNumber(x), 424242) == 1);
    CHECK(X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL);
    CHECK(X509_gmtime_adj(X509_getm_notAfter(x), 86400) != NULL);
    X509_NAME *nm = X509_get_subject_name(x);
    CHECK(X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)o, -1, -1, 0));
    CHECK(X509_NAME_add_entry_by_txt(nm, "OU", MBSTRING_ASC, (const unsigned char *)ou, -1, -1, 0));
    CHECK(X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0));
    CHECK(X509_set_issuer_name(x, X509_get_subject_name(ca)) == 1);
    CHECK(X509_set_pubkey(x, k) == 1);
    CHECK(X509_sign(x, ca_key, NULL) > 0);
    uint8_t *der = NULL;
    int n = i2d_X509(x, &der);
    CHECK(n > 0);
    *ret_len = (size_t)n;
    X509_free(x);
    EVP_PKEY_free(k);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return der;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* fv_trust_member must refuse with code and a sentence containing rule. */
static void refused(fv_trust_t *t, const uint8_t *der, size_t len, int64_t at, int code,
                    const char *what, const char *rule)
{
    fv_identity_t id;
    fv_diag_t d = {{0}};
    int r = fv_trust_member(t, der, len, at, &id, &d);
    fprintf(stderr, "%s: %s: %s\n", what, fv_err_name(r), d.msg);
    CHECK_INT_EQ(r, code);
    CHECK_CONTAINS(d.msg, rule);
}

static fv_trust_t *trust_of(const char *dir, const char *crl_file)
{
    char ca[512];
    fv_trust_t *t = NULL;
    fv_diag_t d = {{0}};
    path_of(ca, dir, "bank-x", "ca.pem");
    CHECK_OK(fv_trust_new(ca, crl_file, &t, &d), &d);
    return t;
}

static void offer(fv_trust_t *t, const uint8_t *der, size_t len, bool want_newer)
{
    bool newer = !want_newer;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_trust_offer_crl(t, der, len, &newer, &d), &d);
    CHECK(newer == want_newer);
}

static void test_members(void)
{
    fv_trust_t *t = trust_of("fed-a", NULL);
    CHECK_STR_EQ(fv_trust_federation(t), "fed-a");
    CHECK_INT_EQ(fv_trust_crl_issued(t), 0);
    size_t nx = 0, nc = 0, ny = 0;
    uint8_t *x = kit_der("fed-a", "bank-x", "cert.pem", &nx);
    uint8_t *coord = kit_der("fed-a", "coord", "cert.pem", &nc);
    uint8_t *y = kit_der("fed-a", "bank-y", "cert.pem", &ny);

    /* no CRL held: refused, whatever the certificate */
    refused(t, x, nx, now, FV_EAUTH, "valid member, no CRL held", "no federation CRL held");

    size_t n1 = 0;
    uint8_t *crl1 = mint_crl("fed-a", -7200, 86400, NULL, &n1);
    offer(t, crl1, n1, true);
    CHECK_INT_EQ(fv_trust_crl_issued(t), now - 7200);
    CHECK_UINT_EQ(fv_trust_crl_count(t), 0);

    /* a valid member: its identity */
    fv_identity_t id;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_trust_member(t, x, nx, now, &id, &d), &d);
    CHECK_STR_EQ(id.name, "bank-x");
    CHECK_STR_EQ(id.federation, "fed-a");
    CHECK_INT_EQ(id.role, FV_ROLE_AGENT);
    {
        char kp[512];
        uint8_t sk[64];
        path_of(kp, "fed-a", "bank-x", "key.pem");
        CHECK_OK(fv_tls_load_sign_key(kp, sk, &d), &d);
        CHECK(memcmp(id.sign_pk, sk + 32, 32) == 0);
        fv_crypto_wipe(sk, sizeof sk);
    }
    /* the coordinator's certificate is a valid identity too (the role is the caller's
     * rule) */
    CHECK_OK(fv_trust_member(t, coord, nc, now, &id, &d), &d);
    CHECK_INT_EQ(id.role, FV_ROLE_COORDINATOR);
    char name[FV_NAME_MAX + 1];
    fv_trust_cert_name(y, ny, name);
    CHECK_STR_EQ(name, "bank-y");
    fv_trust_cert_name((const uint8_t *)"junk", 4, name);
    CHECK_STR_EQ(name, "?");

    /* malformed DER, trailing bytes, nothing */
    refused(t, (const uint8_t *)"\x30\x03\x02\x01\x00", 5, now, FV_EPROTO, "not a certificate",
            "not DER");
    uint8_t *x2 = malloc(nx + 1);
    CHECK(x2 != NULL);
    memcpy(x2, x, nx);
    x2[nx] = 0;
    refused(t, x2, nx + 1, now, FV_EPROTO, "trailing byte", "trailing");
    free(x2);
    refused(t, NULL, 0, now, FV_EPROTO, "empty", "empty");

    /* another CA with the same federation name and the same CA subject */
    size_t no = 0;
    uint8_t *other = kit_der("fed-a-other", "bank-x", "cert.pem", &no);
    refused(t, other, no, now, FV_EAUTH, "same name, another CA",
            "not issued by the federation CA");
    /* the CA itself presented as a member */
    size_t nca = 0;
    uint8_t *ca = kit_der("fed-a", "bank-x", "ca.pem", &nca);
    refused(t, ca, nca, now, FV_EAUTH, "the CA as a member", "not issued by the federation CA");
    /* our CA's signature on another federation's subject, and on a malformed subject */
    size_t nf = 0, nr = 0;
    uint8_t *fedb = mint_leaf("fed-a", "fed-b", "agent", "bank-z", &nf);
    refused(t, fedb, nf, now, FV_EAUTH, "another federation", "another federation");
    uint8_t *bad = mint_leaf("fed-a", "fed-a", "teller", "bank-z", &nr);
    refused(t, bad, nr, now, FV_EAUTH, "unknown role", "not a federation identity");

    /* expired: a kit issued expired, and a valid one checked after its notAfter (the
     * cache must not serve it then) */
    size_t ne = 0;
    uint8_t *old = kit_der("fed-a", "bank-old", "cert.pem", &ne);
    refused(t, old, ne, now, FV_EAUTH, "expired kit", "certificate expired");
    refused(t, x, nx, now + 900LL * 86400, FV_EAUTH, "valid kit, 900 days later",
            "certificate expired");
    refused(t, x, nx, now - 30LL * 86400, FV_EAUTH, "valid kit, before its notBefore",
            "not yet valid");

    /* the CRL's own validity: past its nextUpdate nothing verifies */
    refused(t, y, ny, now + 2 * 86400, FV_EAUTH, "held CRL expired", "the federation CRL expired");

    OPENSSL_free(x);
    OPENSSL_free(coord);
    OPENSSL_free(y);
    OPENSSL_free(crl1);
    OPENSSL_free(other);
    OPENSSL_free(ca);
    OPENSSL_free(fedb);
    OPENSSL_free(bad);
    OPENSSL_free(old);
    fv_trust_free(t);
}

static void test_crls(void)
{
    fv_trust_t *t = trust_of("fed-a", NULL);
    size_t nr = 0, n1 = 0, n2 = 0, n0 = 0, nbad = 0, nsame = 0;
    uint8_t *r = kit_der("fed-a", "bank-r", "cert.pem", &nr);
    uint8_t *crl1 = mint_crl("fed-a", -7200, 86400, NULL, &n1);
    uint8_t *crl2 = mint_crl("fed-a", -3600, 86400, "bank-r", &n2);    /* newer: revokes */
    uint8_t *crl0 = mint_crl("fed-a", -3 * 3600, 86400, NULL, &n0);    /* older: clean */
    uint8_t *same = mint_crl("fed-a", -3600, 86400, NULL, &nsame);     /* as new as crl2 */
    uint8_t *other = mint_crl("fed-a-other", -60, 86400, NULL, &nbad); /* another CA */
    fv_identity_t id;
    fv_diag_t d = {{0}};
    bool newer = false;

    offer(t, crl1, n1, true);
    CHECK_OK(fv_trust_member(t, r, nr, now, &id, &d), &d); /* not revoked yet */
    offer(t, crl2, n2, true);
    CHECK_INT_EQ(fv_trust_crl_issued(t), now - 3600);
    CHECK_UINT_EQ(fv_trust_crl_count(t), 1);
    refused(t, r, nr, now, FV_EAUTH, "revoked member", "certificate revoked");

    /* an older CRL (a coordinator rolling us back) and an equally new one: not taken */
    offer(t, crl0, n0, false);
    offer(t, same, nsame, false);
    CHECK_INT_EQ(fv_trust_crl_issued(t), now - 3600);
    CHECK_UINT_EQ(fv_trust_crl_count(t), 1);
    refused(t, r, nr, now, FV_EAUTH, "still revoked after an older CRL", "revoked");

    /* a CRL another CA signed (same issuer name): refused, the held one stays */
    int rc = fv_trust_offer_crl(t, other, nbad, &newer, &d);
    fprintf(stderr, "CRL of another CA: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EAUTH);
    CHECK_CONTAINS(d.msg, "not signed by the federation CA");
    /* tampered: one bit of the signature flipped */
    uint8_t *tam = malloc(n2);
    CHECK(tam != NULL);
    memcpy(tam, crl2, n2);
    tam[n2 - 1] ^= 1;
    CHECK_INT_EQ(fv_trust_offer_crl(t, tam, n2, &newer, &d), FV_EAUTH);
    free(tam);
    rc = fv_trust_offer_crl(t, (const uint8_t *)"\x30\x00", 2, &newer, &d);
    fprintf(stderr, "not a CRL: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EPROTO);
    CHECK_INT_EQ(fv_trust_crl_issued(t), now - 3600);

    /* fv_trust_new with the kit's CRL file, and its DER for JOB_OFFER */
    char crlp[512], cap[512];
    path_of(crlp, "fed-a", "coord", "crl.pem");
    fv_trust_t *t2 = trust_of("fed-a", crlp);
    CHECK(fv_trust_crl_issued(t2) > 0);
    uint8_t *der = NULL;
    size_t dl = 0;
    CHECK_OK(fv_trust_crl_file_der(crlp, (size_t)1 << 20, &der, &dl, &d), &d);
    offer(t2, der, dl, false); /* the same CRL: not newer */
    CHECK_INT_EQ(fv_trust_crl_file_der(crlp, 10, &der, &dl, &d), FV_ETOOBIG);
    free(der);
    fv_trust_free(t2);
    /* a CRL file of another CA is refused at start */
    path_of(crlp, "fed-a-other", "ca", "crl.pem");
    snprintf(crlp, sizeof crlp, "%s/fed-a-other/ca/crl.pem", base);
    path_of(cap, "fed-a", "bank-x", "ca.pem");
    fv_trust_t *t3 = NULL;
    rc = fv_trust_new(cap, crlp, &t3, &d);
    fprintf(stderr, "trust_new with another CA's CRL: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK_INT_EQ(rc, FV_EAUTH);
    CHECK(t3 == NULL);

    OPENSSL_free(r);
    OPENSSL_free(crl1);
    OPENSSL_free(crl2);
    OPENSSL_free(crl0);
    OPENSSL_free(same);
    OPENSSL_free(other);
    fv_trust_free(t);
}

/* Each member is verified once per CRL: later lookups are cache hits; a newer CRL empties
 * the cache. */
static void test_cache(void)
{
    fv_trust_t *t = trust_of("fed-a", NULL);
    const char *who[] = {"bank-x", "bank-y", "bank-r", "coord"};
    uint8_t *der[4];
    size_t len[4];
    uint64_t hits = 0, misses = 0;
    fv_identity_t id;
    fv_diag_t d = {{0}};
    size_t n1 = 0, n2 = 0;
    uint8_t *crl1 = mint_crl("fed-a", -7200, 86400, NULL, &n1);
    uint8_t *crl2 = mint_crl("fed-a", -3600, 86400, NULL, &n2);
    for (int i = 0; i < 4; i++)
        der[i] = kit_der("fed-a", who[i], "cert.pem", &len[i]);
    offer(t, crl1, n1, true);
    for (int round = 0; round < 5; round++)
        for (int i = 0; i < 4; i++)
            CHECK_OK(fv_trust_member(t, der[i], len[i], now, &id, &d), &d);
    fv_trust_cache_stats(t, &hits, &misses);
    fprintf(stderr, "cache after 5 rounds of 4 members: %llu hits, %llu misses\n",
            (unsigned long long)hits, (unsigned long long)misses);
    CHECK_UINT_EQ(misses, 4);
    CHECK_UINT_EQ(hits, 16);
    /* a hit returns the same identity as the full check */
    CHECK_OK(fv_trust_member(t, der[1], len[1], now, &id, &d), &d);
    CHECK_STR_EQ(id.name, "bank-y");
    /* a refusal is never cached: asked again, it is verified again */
    size_t nf = 0;
    uint8_t *fedb = mint_leaf("fed-a", "fed-b", "agent", "bank-z", &nf);
    refused(t, fedb, nf, now, FV_EAUTH, "another federation", "another federation");
    refused(t, fedb, nf, now, FV_EAUTH, "another federation, again", "another federation");
    fv_trust_cache_stats(t, &hits, &misses);
    CHECK_UINT_EQ(misses, 6);
    CHECK_UINT_EQ(hits, 17);
    /* a newer CRL: every member verified once more */
    offer(t, crl2, n2, true);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 4; i++)
            CHECK_OK(fv_trust_member(t, der[i], len[i], now, &id, &d), &d);
    fv_trust_cache_stats(t, &hits, &misses);
    CHECK_UINT_EQ(misses, 10);
    CHECK_UINT_EQ(hits, 21);
    for (int i = 0; i < 4; i++)
        OPENSSL_free(der[i]);
    OPENSSL_free(fedb);
    OPENSSL_free(crl1);
    OPENSSL_free(crl2);
    fv_trust_free(t);
}

static void test_new_errors(void)
{
    fv_trust_t *t = NULL;
    fv_diag_t d = {{0}};
    char p[512];
    snprintf(p, sizeof p, "%s/nope.pem", base);
    int rc = fv_trust_new(p, NULL, &t, &d);
    fprintf(stderr, "missing CA file: %s: %s\n", fv_err_name(rc), d.msg);
    CHECK(rc < 0);
    CHECK_CONTAINS(d.msg, "nope.pem");
    CHECK(t == NULL);
    path_of(p, "fed-a", "bank-x", "key.pem");
    rc = fv_trust_new(p, NULL, &t, &d);
    CHECK_INT_EQ(rc, FV_EPARSE);
    CHECK(t == NULL);
    fv_trust_free(NULL);
}

int main(void)
{
    CHECK(fv_crypto_init() == 0);
    snprintf(base, sizeof base, "/tmp/fv-trust-XXXXXX");
    CHECK(mkdtemp(base) != NULL);
    now = (int64_t)time(NULL);
    make_ca("fed-a", "fed-a");
    make_ca("fed-a-other", "fed-a"); /* another CA, same federation name */
    issue("fed-a", "coord", FV_ROLE_COORDINATOR, 0, 0);
    issue("fed-a", "bank-x", FV_ROLE_AGENT, 0, 0);
    issue("fed-a", "bank-y", FV_ROLE_AGENT, 0, 0);
    issue("fed-a", "bank-r", FV_ROLE_AGENT, 0, 0);
    issue("fed-a", "bank-old", FV_ROLE_AGENT, now - 3 * 86400, now - 86400);
    issue("fed-a-other", "coord", FV_ROLE_COORDINATOR, 0, 0);
    issue("fed-a-other", "bank-x", FV_ROLE_AGENT, 0, 0);

    test_members();
    test_crls();
    test_cache();
    test_new_errors();

    nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    puts("test_trust: ok");
    return 0;
}
