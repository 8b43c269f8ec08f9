/* trust.c - the federation CA, its newest CRL and a cache of verified member certificates
 * (fv_trust.h says what is verified and why).
 *
 * Store. An X509_STORE holding exactly the CA certificate and, once one is held, the CRL
 * with X509_V_FLAG_CRL_CHECK (leaf only: the CA is the root and the only issuer). It is
 * rebuilt when a newer CRL is taken; no default paths are ever loaded, so no system root
 * can vouch for a member. X509_verify_cert runs at the caller's now_s
 * (X509_STORE_CTX_set_time), which keeps this file clock-free and testable.
 *
 * Invariants: crl is NULL or signed by ca with issuer name equal to ca's subject;
 * crl_issued_s is its thisUpdate; every cache entry verified against the store in force
 * (the cache is cleared whenever the store changes).
 *
 * Cache: open addressing over the first 8 bytes of the SHA-256 (uniform already), linear
 * probing, capacity a power of two kept at least twice the entries. Entries are never
 * removed one by one, only all at once, so probing needs no tombstones.
 *
 * Ownership: the fv_trust_t owns its X509 objects, the store and the table. Errors leave
 * OpenSSL's per-thread queue empty (as tls.c does).
 */
#include "fv_trust.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sodium.h>

#include "crypto-int.h"

typedef struct cache_entry {
    bool used;
    uint8_t sha[32];
    int64_t not_before_s, not_after_s;
    fv_identity_t id;
} cache_entry_t;

struct fv_trust {
    X509 *ca;
    char federation[FV_NAME_MAX + 1];
    X509_CRL *crl; /* NULL: none held */
    int64_t crl_issued_s;
    X509_STORE *store;
    cache_entry_t *tab; /* cap entries */
    size_t cap, n;
    uint64_t hits, misses;
};

/* ---- helpers ----------------------------------------------------------------------- */

static int asn1_unix(const ASN1_TIME *t, int64_t *ret)
{
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int day = 0, sec = 0;
    bool ok = epoch != NULL && t != NULL && ASN1_TIME_diff(&day, &sec, epoch, t) == 1;
    ASN1_TIME_free(epoch);
    ERR_clear_error();
    if (!ok)
        return FV_EPARSE;
    *ret = (int64_t)day * 86400 + sec;
    return 0;
}

static int read_pem(const char *path, const char *what, bool crl, void **ret, fv_diag_t *d)
{
    FILE *f = fopen(path, "r");
    void *x;
    if (f == NULL)
        return fv_diag_set(d, -errno, "%s: cannot open the %s: %s", path, what, strerror(errno));
    x = crl ? (void *)PEM_read_X509_CRL(f, NULL, NULL, NULL)
            : (void *)PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    if (x == NULL)
        return fv_diag_set(d, FV_EPARSE, "%s: not a PEM %s", path, what);
    *ret = x;
    return 0;
}

/* The CA issued crl: issuer name and signature. */
static bool crl_by_ca(X509_CRL *crl, X509 *ca)
{
    EVP_PKEY *k = X509_get0_pubkey(ca);
    bool ok = k != NULL &&
              X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) == 0 &&
              X509_CRL_verify(crl, k) == 1;
    ERR_clear_error();
    return ok;
}

static void cache_clear(fv_trust_t *t)
{
    if (t->tab != NULL)
        sodium_memzero(t->tab, t->cap * sizeof *t->tab);
    t->n = 0;
}

static size_t slot_of(const uint8_t sha[32], size_t cap)
{
    uint64_t h = 0;
    memcpy(&h, sha, sizeof h);
    return (size_t)(h & (cap - 1));
}

static cache_entry_t *cache_find(const fv_trust_t *t, const uint8_t sha[32])
{
    if (t->cap == 0)
        return NULL;
    for (size_t i = slot_of(sha, t->cap);; i = (i + 1) & (t->cap - 1)) {
        cache_entry_t *e = &t->tab[i];
        if (!e->used)
            return NULL;
        if (memcmp(e->sha, sha, 32) == 0)
            return e;
    }
}

static void cache_put_slot(cache_entry_t *tab, size_t cap, const cache_entry_t *e)
{
    size_t i = slot_of(e->sha, cap);
    while (tab[i].used)
        i = (i + 1) & (cap - 1);
    tab[i] = *e;
}

/* Adds e; a failure to grow only means the certificate is verified again next time. */
static void cache_add(fv_trust_t *t, const cache_entry_t *e)
{
    if (t->n >= FV_TRUST_CACHE_MAX)
        cache_clear(t);
    if ((t->n + 1) * 2 > t->cap) {
        size_t ncap = t->cap > 0 ? t->cap * 2 : 64;
        cache_entry_t *tab = calloc(ncap, sizeof *tab);
        if (tab == NULL)
            return;
        for (size_t i = 0; i < t->cap; i++)
            if (t->tab[i].used)
                cache_put_slot(tab, ncap, &t->tab[i]);
        free(t->tab);
        t->tab = tab;
        t->cap = ncap;
    }
    cache_put_slot(t->tab, t->cap, e);
    t->n++;
}

static int store_rebuild(fv_trust_t *t)
{
    X509_STORE *st = X509_STORE_new();
    if (st == NULL || X509_STORE_add_cert(st, t->ca) != 1 ||
        (t->crl != NULL && (X509_STORE_add_crl(st, t->crl) != 1 ||
                            X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK) != 1))) {
        X509_STORE_free(st);
        ERR_clear_error();
        return FV_ENOMEM;
    }
    X509_STORE_free(t->store);
    t->store = st;
    return 0;
}

/* Takes crl (ownership) if newer; the caller checked the signature. */
static int crl_take(fv_trust_t *t, X509_CRL *crl, bool *ret_newer, fv_diag_t *d)
{
    int64_t issued = 0;
    X509_CRL *old = t->crl;
    int r;
    if (asn1_unix(X509_CRL_get0_lastUpdate(crl), &issued) < 0) {
        X509_CRL_free(crl);
        return fv_diag_set(d, FV_EPROTO, "the CRL's thisUpdate cannot be read");
    }
    if (old != NULL && issued <= t->crl_issued_s) {
        X509_CRL_free(crl);
        *ret_newer = false;
        return 0;
    }
    t->crl = crl;
    if ((r = store_rebuild(t)) < 0) {
        t->crl = old;
        X509_CRL_free(crl);
        return fv_diag_set(d, r, "out of memory building the trust store");
    }
    X509_CRL_free(old);
    t->crl_issued_s = issued;
    cache_clear(t);
    *ret_newer = true;
    return 0;
}

/* ---- public ------------------------------------------------------------------------ */

int fv_trust_new(const char *ca_file, const char *crl_file, fv_trust_t **ret, fv_diag_t *d)
{
    fv_trust_t *t = calloc(1, sizeof *t);
    void *x = NULL;
    bool newer = false;
    int r;
    if (t == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    if ((r = read_pem(ca_file, "CA certificate", false, &x, d)) < 0)
        goto fail;
    t->ca = x;
    {
        /* the federation is the CA subject's O (pki.c: O=<federation>, CN=<federation> CA) */
        const X509_NAME *nm = X509_get_subject_name(t->ca);
        int i = X509_NAME_get_index_by_NID(nm, NID_organizationName, -1);
        const ASN1_STRING *v = i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i)) : NULL;
        int n = v != NULL ? ASN1_STRING_length(v) : 0;
        if (n <= 0 || n > FV_NAME_MAX) {
            r = fv_diag_set(d, FV_EPARSE, "%s: the CA's subject names no federation (O)", ca_file);
            goto fail;
        }
        memcpy(t->federation, ASN1_STRING_get0_data(v), (size_t)n);
        t->federation[n] = '\0';
        if (!fv_name_valid(t->federation)) {
            r = fv_diag_set(d, FV_EPARSE, "%s: the CA's federation is not a valid name", ca_file);
            goto fail;
        }
    }
    if ((r = store_rebuild(t)) < 0) {
        fv_diag_set(d, r, "out of memory building the trust store");
        goto fail;
    }
    if (crl_file != NULL) {
        if ((r = read_pem(crl_file, "CRL", true, &x, d)) < 0)
            goto fail;
        if (!crl_by_ca(x, t->ca)) {
            X509_CRL_free(x);
            r = fv_diag_set(d, FV_EAUTH, "%s: the CRL is not signed by the federation CA in %s",
                            crl_file, ca_file);
            goto fail;
        }
        if ((r = crl_take(t, x, &newer, d)) < 0)
            goto fail;
    }
    *ret = t;
    return 0;
fail:
    fv_trust_free(t);
    return r;
}

void fv_trust_free(fv_trust_t *t)
{
    if (t == NULL)
        return;
    X509_STORE_free(t->store);
    X509_CRL_free(t->crl);
    X509_free(t->ca);
    free(t->tab);
    free(t);
}

const char *fv_trust_federation(const fv_trust_t *t)
{
    return t->federation;
}

int fv_trust_offer_crl(fv_trust_t *t, const uint8_t *der, size_t len, bool *ret_newer, fv_diag_t *d)
{
    const unsigned char *p = der;
    X509_CRL *crl;
    if (der == NULL || len == 0 || len > (size_t)INT32_MAX)
        return fv_diag_set(d, FV_EPROTO, "the CRL is empty or too long");
    crl = d2i_X509_CRL(NULL, &p, (long)len);
    ERR_clear_error();
    if (crl == NULL || p != der + len) {
        X509_CRL_free(crl);
        return fv_diag_set(d, FV_EPROTO, "the CRL is not DER (or has trailing bytes)");
    }
    if (!crl_by_ca(crl, t->ca)) {
        X509_CRL_free(crl);
        return fv_diag_set(d, FV_EAUTH, "the CRL is not signed by the federation CA");
    }
    return crl_take(t, crl, ret_newer, d);
}

int64_t fv_trust_crl_issued(const fv_trust_t *t)
{
    return t->crl != NULL ? t->crl_issued_s : 0;
}

size_t fv_trust_crl_count(const fv_trust_t *t)
{
    if (t->crl == NULL)
        return 0;
    STACK_OF(X509_REVOKED) *rv = X509_CRL_get_REVOKED(t->crl);
    int n = rv != NULL ? sk_X509_REVOKED_num(rv) : 0;
    return n > 0 ? (size_t)n : 0;
}

void fv_trust_cache_stats(const fv_trust_t *t, uint64_t *ret_hits, uint64_t *ret_misses)
{
    *ret_hits = t->hits;
    *ret_misses = t->misses;
}

/* OpenSSL's verification error as the rule it broke. OpenSSL checks revocation before
 * the leaf's dates, so a CRL out of date would hide an expired certificate: the
 * certificate's own dates are named first. */
static const char *rule_of(int e, X509 *x, int64_t now_s)
{
    int64_t nb = 0, na = 0;
    if ((e == X509_V_ERR_CRL_HAS_EXPIRED || e == X509_V_ERR_CRL_NOT_YET_VALID) &&
        asn1_unix(X509_get0_notBefore(x), &nb) == 0 && asn1_unix(X509_get0_notAfter(x), &na) == 0)
        e = now_s > na   ? X509_V_ERR_CERT_HAS_EXPIRED
            : now_s < nb ? X509_V_ERR_CERT_NOT_YET_VALID
                         : e;
    switch (e) {
    case X509_V_ERR_CERT_REVOKED:
        return "certificate revoked";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "certificate not yet valid";
    case X509_V_ERR_CRL_HAS_EXPIRED:
        return "the federation CRL expired (past its nextUpdate)";
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return "the federation CRL is not yet valid";
    case X509_V_ERR_UNABLE_TO_GET_CRL:
        return "no federation CRL held";
    default:
        return "certificate not issued by the federation CA";
    }
}

static int verify_full(fv_trust_t *t, X509 *x, int64_t now_s, cache_entry_t *e, fv_diag_t *d)
{
    X509_STORE_CTX *xs = X509_STORE_CTX_new();
    fv_diag_t why;
    int r = 0;
    if (xs == NULL || X509_STORE_CTX_init(xs, t->store, x, NULL) != 1) {
        r = fv_diag_set(d, FV_ENOMEM, "cannot set up certificate verification");
        goto out;
    }
    X509_STORE_CTX_set_time(xs, 0, (time_t)now_s);
    if (X509_verify_cert(xs) != 1) {
        int err = X509_STORE_CTX_get_error(xs);
        r = fv_diag_set(d, FV_EAUTH, "%s (OpenSSL: %s)", rule_of(err, x, now_s),
                        X509_verify_cert_error_string(err));
        goto out;
    }
    /* the leaf and the CA, nothing else: the CA itself, presented as a member, is a chain
     * of one */
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(xs);
    if (chain == NULL || sk_X509_num(chain) != 2 || X509_cmp(x, t->ca) == 0) {
        r = fv_diag_set(d, FV_EAUTH, "certificate not issued by the federation CA (it is the CA)");
        goto out;
    }
    if (fv__identity_from_x509(x, &e->id, &why) < 0) {
        r = fv_diag_set(d, FV_EAUTH, "certificate not a federation identity: %s", why.msg);
        goto out;
    }
    if (strcmp(e->id.federation, t->federation) != 0) {
        r = fv_diag_set(d, FV_EAUTH, "certificate for another federation (%s, we are %s)",
                        e->id.federation, t->federation);
        goto out;
    }
    if (asn1_unix(X509_get0_notBefore(x), &e->not_before_s) < 0 ||
        asn1_unix(X509_get0_notAfter(x), &e->not_after_s) < 0)
        r = fv_diag_set(d, FV_EAUTH, "certificate validity cannot be read");
out:
    X509_STORE_CTX_free(xs);
    ERR_clear_error();
    return r;
}

int fv_trust_member(fv_trust_t *t, const uint8_t *der, size_t len, int64_t now_s,
                    fv_identity_t *ret, fv_diag_t *d)
{
    cache_entry_t e;
    const unsigned char *p = der;
    X509 *x;
    int r;
    if (der == NULL || len == 0 || len > (size_t)INT32_MAX)
        return fv_diag_set(d, FV_EPROTO, "certificate empty or too long");
    if (t->crl == NULL)
        return fv_diag_set(d, FV_EAUTH, "no federation CRL held (revocation cannot be checked)");
    memset(&e, 0, sizeof e);
    crypto_hash_sha256(e.sha, der, len);
    cache_entry_t *hit = cache_find(t, e.sha);
    if (hit != NULL && now_s >= hit->not_before_s && now_s <= hit->not_after_s) {
        t->hits++;
        *ret = hit->id;
        return 0;
    }
    t->misses++;
    x = d2i_X509(NULL, &p, (long)len);
    ERR_clear_error();
    if (x == NULL || p != der + len) {
        X509_free(x);
        return fv_diag_set(d, FV_EPROTO, "certificate not DER (or has trailing bytes)");
    }
    r = verify_full(t, x, now_s, &e, d);
    X509_free(x);
    if (r < 0)
        return r;
    e.used = true;
    if (hit == NULL)
        cache_add(t, &e);
    *ret = e.id;
    return 0;
}

void fv_trust_cert_name(const uint8_t *der, size_t len, char out[FV_NAME_MAX + 1])
{
    const unsigned char *p = der;
    X509 *x =
        der != NULL && len > 0 && len <= (size_t)INT32_MAX ? d2i_X509(NULL, &p, (long)len) : NULL;
    snprintf(out, FV_NAME_MAX + 1, "?");
    if (x != NULL) {
        const X509_NAME *nm = X509_get_subject_name(x);
        int i = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
        const ASN1_STRING *v = i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i)) : NULL;
        int n = v != NULL ? ASN1_STRING_length(v) : 0;
        if (n > 0 && n <= FV_NAME_MAX && memchr(ASN1_STRING_get0_data(v), 0, (size_t)n) == NULL) {
            char name[FV_NAME_MAX + 1];
            memcpy(name, ASN1_STRING_get0_data(v), (size_t)n);
            name[n] = '\0';
            if (fv_name_valid(name))
                memcpy(out, name, (size_t)n + 1);
        }
    }
    X509_free(x);
    ERR_clear_error();
}

int fv_trust_crl_file_der(const char *path, size_t max_len, uint8_t **ret_der, size_t *ret_len,
                          fv_diag_t *d)
{
    void *crl = NULL;
    unsigned char *der = NULL;
    int n, r;
    if ((r = read_pem(path, "CRL", true, &crl, d)) < 0)
        return r;
    n = i2d_X509_CRL(crl, &der);
    X509_CRL_free(crl);
    ERR_clear_error();
    if (n <= 0)
        return fv_diag_set(d, FV_ENOMEM, "%s: cannot encode the CRL as DER", path);
    if ((size_t)n > max_len) {
        OPENSSL_free(der);
        return fv_diag_set(d, FV_ETOOBIG, "%s: the CRL is %d bytes in DER, above %zu", path, n,
                           max_len);
    }
    *ret_der = malloc((size_t)n);
    if (*ret_der == NULL) {
        OPENSSL_free(der);
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    }
    memcpy(*ret_der, der, (size_t)n);
    OPENSSL_free(der);
    *ret_len = (size_t)n;
    return 0;
}
