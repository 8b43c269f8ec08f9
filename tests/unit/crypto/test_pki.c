/* test_pki.c - the federation CA and startup kits (fv_pki_*).
 *
 * In a mkdtemp directory: a CA, then a coordinator, an agent and an admin. Every
 * certificate verifies against the CA with OpenSSL's own X509_verify_cert (and the
 * purpose its role needs: TLS server for the coordinator, TLS client for everyone),
 * carries O/OU/CN as promised and an Ed25519 key matching key.pem; the coordinator's
 * subjectAltName is an IPv4, an IPv6 or a DNS name as given. Files and folders have
 * their modes (keys 0600, kits and the CA folder 0700). Refusals: a second CA, a
 * duplicate name (even a revoked one), an existing folder, invalid names, "ca", bad
 * addresses, inverted validity. Revocation: the CRL lists the serial, is signed by the
 * CA, is copied into the coordinator's and admin's kits, and makes the revoked
 * certificate fail verification while others pass. A not_after in the past is honored
 * (verification says "expired"). No temporary file or folder is left behind.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "fv_pki.h"
#include "fv_test.h"

static char root[64];

static const char *pj(char *buf, const char *a, const char *b)
{
    int n = snprintf(buf, 512, "%s/%s", a, b);
    CHECK(n > 0 && n < 512);
    return buf;
}

static int n_revoked(X509_CRL *crl)
{
    STACK_OF(X509_REVOKED) *rv = X509_CRL_get_REVOKED(crl);
    return rv == NULL ? 0 : sk_X509_REVOKED_num(rv);
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        FV__FAIL("cannot open %s", path);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL)
        FV__FAIL("%s: not a PEM certificate", path);
    return x;
}

static X509_CRL *load_crl(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        FV__FAIL("cannot open %s", path);
    X509_CRL *c = PEM_read_X509_CRL(f, NULL, NULL, NULL);
    fclose(f);
    if (c == NULL)
        FV__FAIL("%s: not a PEM CRL", path);
    return c;
}

static unsigned mode_of(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        FV__FAIL("stat %s", path);
    return (unsigned)(st.st_mode & 07777);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* X509_verify_cert of dir/<name>/cert.pem against dir/ca/ca.pem; returns the
 * verification error (X509_V_OK on success). */
static int verify(const char *dir, const char *name, int purpose, bool with_crl)
{
    char p[512], kit[512];
    X509 *ca = load_cert(pj(p, dir, "ca/ca.pem"));
    X509 *leaf = load_cert(pj(p, pj(kit, dir, name), "cert.pem"));
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    CHECK(store != NULL && ctx != NULL);
    CHECK(X509_STORE_add_cert(store, ca) == 1);
    if (with_crl) {
        X509_CRL *crl = load_crl(pj(p, dir, "ca/crl.pem"));
        CHECK(X509_STORE_add_crl(store, crl) == 1);
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
        X509_CRL_free(crl);
    }
    CHECK(X509_STORE_CTX_init(ctx, store, leaf, NULL) == 1);
    CHECK(X509_STORE_CTX_set_purpose(ctx, purpose) == 1);
    int ok = X509_verify_cert(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    CHECK(ok == 1 ? err == X509_V_OK : err != X509_V_OK);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(leaf);
    X509_free(ca);
    return err;
}

static void check_subject(X509 *x, const char *o, const char *ou, const char *cn)
{
    char buf[128];
    X509_NAME *n = X509_get_subject_name(x);
    CHECK(X509_NAME_get_text_by_NID(n, NID_organizationName, buf, sizeof buf) > 0);
    CHECK_STR_EQ(buf, o);
    CHECK(X509_NAME_get_text_by_NID(n, NID_organizationalUnitName, buf, sizeof buf) > 0);
    CHECK_STR_EQ(buf, ou);
    CHECK(X509_NAME_get_text_by_NID(n, NID_commonName, buf, sizeof buf) > 0);
    CHECK_STR_EQ(buf, cn);
}

/* The kit's files, modes, key type and subject. */
static void check_kit(const char *dir, const char *fed, const char *name, const char *role)
{
    char kit[512], p[512], cfg[64];
    pj(kit, dir, name);
    CHECK_UINT_EQ(mode_of(kit), 0700);
    CHECK_UINT_EQ(mode_of(pj(p, kit, "key.pem")), 0600);
    CHECK(exists(pj(p, kit, "cert.pem")));
    CHECK(exists(pj(p, kit, "ca.pem")));
    CHECK(exists(pj(p, kit, "crl.pem")) == (strcmp(role, "agent") != 0));

    X509 *x = load_cert(pj(p, kit, "cert.pem"));
    check_subject(x, fed, role, name);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    CHECK(pub != NULL && EVP_PKEY_is_a(pub, "ED25519"));
    FILE *f = fopen(pj(p, kit, "key.pem"), "r");
    CHECK(f != NULL);
    char line[64];
    CHECK(fgets(line, sizeof line, f) != NULL);
    CHECK_STR_EQ(line, "-----BEGIN PRIVATE KEY-----\n"); /* PKCS#8, unencrypted */
    rewind(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    CHECK(k != NULL && EVP_PKEY_is_a(k, "ED25519"));
    CHECK(X509_check_private_key(x, k) == 1);
    EVP_PKEY_free(k);
    CHECK(X509_get_version(x) == 2);
    CHECK(X509_check_ca(x) == 0);
    uint32_t eku = X509_get_extended_key_usage(x);
    CHECK((eku & XKU_SSL_CLIENT) != 0);
    CHECK(((eku & XKU_SSL_SERVER) != 0) == (strcmp(role, "coordinator") == 0));
    CHECK(X509_get_key_usage(x) == KU_DIGITAL_SIGNATURE);
    CHECK(X509_get0_authority_key_id(x) != NULL);
    X509_free(x);

    snprintf(cfg, sizeof cfg, "%s.json", role);
    json_error_t je;
    json_t *j = json_load_file(pj(p, kit, cfg), 0, &je);
    if (j == NULL)
        FV__FAIL("%s: %s", p, je.text);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "federation")), fed);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "name")), name);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "role")), role);
    CHECK_STR_EQ(json_string_value(json_object_get(j, "ca")), "ca.pem");
    CHECK_STR_EQ(json_string_value(json_object_get(j, "cert")), "cert.pem");
    CHECK_STR_EQ(json_string_value(json_object_get(j, "key")), "key.pem");
    const char *addr_key = strcmp(role, "coordinator") == 0 ? "listen" : "coordinator";
    CHECK(json_is_string(json_object_get(j, addr_key)));
    CHECK((json_object_get(j, "crl") != NULL) == (strcmp(role, "coordinator") == 0));
    json_decref(j);
}

static const char *addr_of(const char *dir, const char *name, const char *role)
{
    static char out[300];
    char p[512], kit[512], cfg[64];
    snprintf(cfg, sizeof cfg, "%s.json", role);
    json_t *j = json_load_file(pj(p, pj(kit, dir, name), cfg), 0, NULL);
    CHECK(j != NULL);
    snprintf(out, sizeof out, "%s",
             json_string_value(
                 json_object_get(j, strcmp(role, "coordinator") == 0 ? "listen" : "coordinator")));
    json_decref(j);
    return out;
}

/* The one subjectAltName of the coordinator: type and bytes. */
static void check_san(const char *dir, int type, const void *want, size_t len)
{
    char p[512];
    X509 *x = load_cert(pj(p, dir, "coordinator/cert.pem"));
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    CHECK(gens != NULL);
    CHECK_INT_EQ(sk_GENERAL_NAME_num(gens), 1);
    GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, 0);
    CHECK_INT_EQ(g->type, type);
    const ASN1_STRING *s = type == GEN_DNS ? g->d.dNSName : g->d.iPAddress;
    CHECK_UINT_EQ((size_t)ASN1_STRING_length(s), len);
    CHECK(memcmp(ASN1_STRING_get0_data(s), want, len) == 0);
    GENERAL_NAMES_free(gens);
    X509_free(x);
}

static void check_no_temporaries(const char *dir)
{
    DIR *dh = opendir(dir);
    CHECK(dh != NULL);
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp") != NULL)
            FV__FAIL("%s/%s: temporary left behind", dir, e->d_name);
    }
    closedir(dh);
}

/* Lowercase hex serial of a kit's certificate. */
static void serial_of(const char *dir, const char *name, char out[64])
{
    char p[512], kit[512];
    X509 *x = load_cert(pj(p, pj(kit, dir, name), "cert.pem"));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    CHECK(bn != NULL && !BN_is_negative(bn) && BN_num_bits(bn) > 64);
    char *h = BN_bn2hex(bn);
    snprintf(out, 64, "%s", h);
    for (char *c = out; *c; c++)
        if (*c >= 'A' && *c <= 'F')
            *c = (char)(*c - 'A' + 'a');
    OPENSSL_free(h);
    BN_free(bn);
    X509_free(x);
}

static bool crl_lists(X509_CRL *crl, const char *dir, const char *name)
{
    char p[512], kit[512];
    X509 *x = load_cert(pj(p, pj(kit, dir, name), "cert.pem"));
    X509_REVOKED *rv = NULL;
    int r = X509_CRL_get0_by_serial(crl, &rv, X509_get0_serialNumber(x));
    X509_free(x);
    return r == 1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    static char buf[3][8192];
    static int k;
    char *b = buf[k++ % 3];
    size_t n = fread(b, 1, sizeof buf[0] - 1, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

static void test_federation(void)
{
    char dir[512], p[512];
    fv_diag_t d = {""};
    pj(dir, root, "fed");

    CHECK_OK(fv_pki_ca_create(dir, "acme-banks", NULL, &d), &d);
    CHECK_UINT_EQ(mode_of(dir), 0700);
    CHECK_UINT_EQ(mode_of(pj(p, dir, "ca")), 0700);
    CHECK_UINT_EQ(mode_of(pj(p, dir, "ca/ca.key")), 0600);
    CHECK_UINT_EQ(mode_of(pj(p, dir, "ca/registry.json")), 0600);
    CHECK(exists(pj(p, dir, "ca/ca.pem")));
    CHECK(exists(pj(p, dir, "ca/crl.pem")));
    X509 *ca = load_cert(pj(p, dir, "ca/ca.pem"));
    CHECK(X509_check_ca(ca) == 1);
    CHECK(EVP_PKEY_is_a(X509_get0_pubkey(ca), "ED25519"));
    CHECK(X509_get_key_usage(ca) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    CHECK(X509_get_pathlen(ca) == 0);
    CHECK(X509_get0_subject_key_id(ca) != NULL);
    X509_CRL *crl = load_crl(pj(p, dir, "ca/crl.pem"));
    CHECK_INT_EQ(n_revoked(crl), 0);
    CHECK(X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1);
    X509_CRL_free(crl);

    /* a second CA in the same place is refused and changes nothing */
    char before[8192];
    snprintf(before, sizeof before, "%s", slurp(pj(p, dir, "ca/ca.pem")));
    CHECK_INT_EQ(fv_pki_ca_create(dir, "acme-banks", NULL, &d), UV_EEXIST);
    CHECK_CONTAINS(d.msg, "already exists");
    CHECK_STR_EQ(slurp(pj(p, dir, "ca/ca.pem")), before);
    CHECK_INT_EQ(fv_pki_ca_create(pj(p, root, "fed-x"), "Bad Name", NULL, &d), FV_EINVAL);
    CHECK(!exists(p));

    /* agents before any coordinator: no address to give them */
    CHECK_INT_EQ(fv_pki_issue(dir, "early", FV_ROLE_AGENT, NULL, NULL, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "coordinator");

    CHECK_OK(fv_pki_issue(dir, "coordinator", FV_ROLE_COORDINATOR, "127.0.0.1:7443", NULL, &d), &d);
    CHECK_OK(fv_pki_issue(dir, "bank-a", FV_ROLE_AGENT, NULL, NULL, &d), &d);
    CHECK_OK(fv_pki_issue(dir, "bank-b", FV_ROLE_AGENT, "127.0.0.1:7443", NULL, &d), &d);
    CHECK_OK(fv_pki_issue(dir, "ops-1", FV_ROLE_ADMIN, NULL, NULL, &d), &d);
    check_kit(dir, "acme-banks", "coordinator", "coordinator");
    check_kit(dir, "acme-banks", "bank-a", "agent");
    check_kit(dir, "acme-banks", "bank-b", "agent");
    check_kit(dir, "acme-banks", "ops-1", "admin");
    CHECK_STR_EQ(addr_of(dir, "coordinator", "coordinator"), "127.0.0.1:7443");
    CHECK_STR_EQ(addr_of(dir, "bank-a", "agent"), "127.0.0.1:7443");
    CHECK_STR_EQ(addr_of(dir, "ops-1", "admin"), "127.0.0.1:7443");
    static const uint8_t lo4[4] = {127, 0, 0, 1};
    check_san(dir, GEN_IPADD, lo4, 4);
    CHECK_STR_EQ(slurp(pj(p, dir, "bank-a/ca.pem")), before);

    CHECK_INT_EQ(verify(dir, "coordinator", X509_PURPOSE_SSL_SERVER, false), X509_V_OK);
    CHECK_INT_EQ(verify(dir, "coordinator", X509_PURPOSE_SSL_CLIENT, false), X509_V_OK);
    CHECK_INT_EQ(verify(dir, "bank-a", X509_PURPOSE_SSL_CLIENT, false), X509_V_OK);
    CHECK_INT_EQ(verify(dir, "ops-1", X509_PURPOSE_SSL_CLIENT, true), X509_V_OK);
    CHECK(verify(dir, "bank-a", X509_PURPOSE_SSL_SERVER, false) != X509_V_OK);

    char sa[64], sb[64];
    serial_of(dir, "bank-a", sa);
    serial_of(dir, "bank-b", sb);
    CHECK(strcmp(sa, sb) != 0);

    /* refusals, none of which leaves anything behind */
    CHECK_INT_EQ(fv_pki_issue(dir, "bank-a", FV_ROLE_AGENT, NULL, NULL, &d), UV_EEXIST);
    CHECK_CONTAINS(d.msg, "bank-a");
    CHECK_INT_EQ(fv_pki_issue(dir, "bank-a", FV_ROLE_ADMIN, NULL, NULL, &d), UV_EEXIST);
    CHECK_INT_EQ(fv_pki_issue(dir, "ca", FV_ROLE_AGENT, NULL, NULL, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "reserved");
    static const char *const bad_names[] = {
        "",
        "Bank-A",
        "-bank",
        ".hidden",
        "a/b",
        "a b",
        "x2345678901234567890123456789012345678901234567890123456789012345"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        CHECK_INT_EQ(fv_pki_issue(dir, bad_names[i], FV_ROLE_AGENT, NULL, NULL, &d), FV_EINVAL);
        CHECK_CONTAINS(d.msg, "invalid");
    }
    CHECK(mkdir(pj(p, dir, "stray"), 0700) == 0); /* a folder not in the registry */
    CHECK_INT_EQ(fv_pki_issue(dir, "stray", FV_ROLE_AGENT, NULL, NULL, &d), UV_EEXIST);
    CHECK_CONTAINS(d.msg, "stray");
    CHECK(rmdir(p) == 0);
    CHECK_INT_EQ(fv_pki_issue(dir, "x", (fv_role_t)7, NULL, NULL, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_pki_issue(pj(p, root, "nowhere"), "x", FV_ROLE_AGENT, "h:1", NULL, &d),
                 -ENOENT);
    CHECK_CONTAINS(d.msg, "nowhere/ca");
    fv_pki_opts_t inverted = {.not_before = 2000000000, .not_after = 1999999999};
    CHECK_INT_EQ(fv_pki_issue(dir, "inv", FV_ROLE_AGENT, NULL, &inverted, &d), FV_EINVAL);
    fv_pki_opts_t too_long = {.days = 40000};
    CHECK_INT_EQ(fv_pki_issue(dir, "inv", FV_ROLE_AGENT, NULL, &too_long, &d), FV_EINVAL);
    static const char *const bad_addrs[] = {"nohost", "::1:80",  "h:99999",    "a b:1",  "h:",
                                            ":80",    "[::1]80", "[nothex]:1", "a..b:1", "h:-1"};
    for (size_t i = 0; i < sizeof bad_addrs / sizeof bad_addrs[0]; i++) {
        int r = fv_pki_issue(dir, "coord2", FV_ROLE_COORDINATOR, bad_addrs[i], NULL, &d);
        if (r != FV_EINVAL)
            FV__FAIL("address '%s' accepted (%d)", bad_addrs[i], r);
    }
    CHECK(!exists(pj(p, dir, "coord2")));
    CHECK(!exists(pj(p, dir, "inv")));
    check_no_temporaries(dir);

    /* expired on purpose: not_after in the past */
    int64_t now = (int64_t)time(NULL);
    fv_pki_opts_t past = {.not_before = now - 10 * 86400, .not_after = now - 86400};
    CHECK_OK(fv_pki_issue(dir, "bank-old", FV_ROLE_AGENT, NULL, &past, &d), &d);
    {
        X509 *x = load_cert(pj(p, dir, "bank-old/cert.pem"));
        CHECK(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), (time_t)past.not_after) == 0);
        CHECK(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), (time_t)past.not_before) == 0);
        X509_free(x);
    }
    CHECK_INT_EQ(verify(dir, "bank-old", X509_PURPOSE_SSL_CLIENT, false),
                 X509_V_ERR_CERT_HAS_EXPIRED);
    /* explicit days */
    fv_pki_opts_t days = {.days = 10};
    CHECK_OK(fv_pki_issue(dir, "bank-short", FV_ROLE_AGENT, NULL, &days, &d), &d);
    {
        X509 *x = load_cert(pj(p, dir, "bank-short/cert.pem"));
        int dd = 0, ds = 0;
        CHECK(ASN1_TIME_diff(&dd, &ds, X509_get0_notBefore(x), X509_get0_notAfter(x)) == 1);
        CHECK_INT_EQ(dd, 10);
        CHECK_INT_EQ(ds, 0);
        X509_free(x);
    }

    /* revocation */
    char coord_before[8192];
    snprintf(coord_before, sizeof coord_before, "%s", slurp(pj(p, dir, "coordinator/cert.pem")));
    CHECK_OK(fv_pki_revoke(dir, "bank-a", &d), &d);
    crl = load_crl(pj(p, dir, "ca/crl.pem"));
    CHECK(X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1);
    CHECK_INT_EQ(X509_CRL_get_version(crl), 1);
    CHECK_INT_EQ(n_revoked(crl), 1);
    CHECK(crl_lists(crl, dir, "bank-a"));
    CHECK(!crl_lists(crl, dir, "bank-b"));
    CHECK(X509_cmp_time(X509_CRL_get0_lastUpdate(crl), NULL) < 0);
    CHECK(X509_cmp_time(X509_CRL_get0_nextUpdate(crl), NULL) > 0);
    X509_CRL_free(crl);
    char crl_text[8192];
    snprintf(crl_text, sizeof crl_text, "%s", slurp(pj(p, dir, "ca/crl.pem")));
    CHECK_STR_EQ(slurp(pj(p, dir, "coordinator/crl.pem")), crl_text);
    CHECK_STR_EQ(slurp(pj(p, dir, "ops-1/crl.pem")), crl_text);
    CHECK(!exists(pj(p, dir, "bank-a/crl.pem")));
    CHECK_STR_EQ(slurp(pj(p, dir, "coordinator/cert.pem")), coord_before);
    CHECK_INT_EQ(verify(dir, "bank-a", X509_PURPOSE_SSL_CLIENT, true), X509_V_ERR_CERT_REVOKED);
    CHECK_INT_EQ(verify(dir, "bank-b", X509_PURPOSE_SSL_CLIENT, true), X509_V_OK);
    CHECK_INT_EQ(verify(dir, "coordinator", X509_PURPOSE_SSL_SERVER, true), X509_V_OK);

    CHECK_OK(fv_pki_revoke(dir, "bank-a", &d), &d); /* idempotent */
    CHECK_OK(fv_pki_revoke(dir, "bank-old", &d), &d);
    crl = load_crl(pj(p, dir, "ca/crl.pem"));
    CHECK_INT_EQ(n_revoked(crl), 2);
    CHECK(crl_lists(crl, dir, "bank-a") && crl_lists(crl, dir, "bank-old"));
    X509_CRL_free(crl);
    CHECK_INT_EQ(fv_pki_revoke(dir, "nobody", &d), FV_EPEER);
    CHECK_CONTAINS(d.msg, "nobody");
    CHECK_INT_EQ(fv_pki_issue(dir, "bank-a", FV_ROLE_AGENT, NULL, NULL, &d), UV_EEXIST);
    CHECK_CONTAINS(d.msg, "revoked");
    CHECK_OK(fv_pki_crl_refresh(dir, &d), &d);
    crl = load_crl(pj(p, dir, "ca/crl.pem"));
    CHECK_INT_EQ(n_revoked(crl), 2);
    CHECK(X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1);
    X509_CRL_free(crl);

    /* the registry records it all */
    json_t *reg = json_load_file(pj(p, dir, "ca/registry.json"), 0, NULL);
    CHECK(reg != NULL);
    CHECK_STR_EQ(json_string_value(json_object_get(reg, "federation")), "acme-banks");
    CHECK_STR_EQ(json_string_value(json_object_get(reg, "coordinator")), "127.0.0.1:7443");
    json_t *parts = json_object_get(reg, "participants");
    CHECK_UINT_EQ(json_array_size(parts), 6);
    bool seen_a = false;
    for (size_t i = 0; i < json_array_size(parts); i++) {
        json_t *e = json_array_get(parts, i);
        if (strcmp(json_string_value(json_object_get(e, "name")), "bank-a") == 0) {
            seen_a = true;
            CHECK_STR_EQ(json_string_value(json_object_get(e, "serial")), sa);
            CHECK(json_is_true(json_object_get(e, "revoked")));
        }
    }
    CHECK(seen_a);
    json_decref(reg);

    /* a damaged registry is refused with its name, not trusted */
    FILE *f = fopen(pj(p, dir, "ca/registry.json"), "r+");
    CHECK(f != NULL && fputs("{\"version\": 2", f) >= 0 && fclose(f) == 0);
    CHECK(fv_pki_issue(dir, "bank-z", FV_ROLE_AGENT, NULL, NULL, &d) < 0);
    CHECK_CONTAINS(d.msg, "registry.json");
    CHECK(!exists(pj(p, dir, "bank-z")));
    check_no_temporaries(dir);
    X509_free(ca);
}

/* IPv6 and DNS subjectAltNames, in federations of their own. */
static void test_san(void)
{
    char dir[512];
    fv_diag_t d = {""};
    static const uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

    pj(dir, root, "fed6");
    CHECK_OK(fv_pki_ca_create(dir, "v6", NULL, &d), &d);
    CHECK_OK(fv_pki_issue(dir, "coordinator", FV_ROLE_COORDINATOR, "[::1]:0", NULL, &d), &d);
    check_san(dir, GEN_IPADD, lo6, 16);
    CHECK_OK(fv_pki_issue(dir, "b1", FV_ROLE_AGENT, NULL, NULL, &d), &d);
    CHECK_STR_EQ(addr_of(dir, "b1", "agent"), "[::1]:0");

    pj(dir, root, "feddns");
    fv_pki_opts_t ca_opts = {.days = 30};
    CHECK_OK(fv_pki_ca_create(dir, "dns.fed", &ca_opts, &d), &d);
    CHECK_OK(fv_pki_issue(dir, "coord-1", FV_ROLE_COORDINATOR, "coord.example.org:443", NULL, &d),
             &d);
    char p[512];
    X509 *x = load_cert(pj(p, dir, "coord-1/cert.pem"));
    CHECK(X509_check_host(x, "coord.example.org", 0, 0, NULL) == 1);
    CHECK(X509_check_host(x, "other.example.org", 0, 0, NULL) != 1);
    X509_free(x);
    CHECK_INT_EQ(verify(dir, "coord-1", X509_PURPOSE_SSL_SERVER, true), X509_V_OK);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/fv-test-pki-XXXXXX");
    CHECK(mkdtemp(root) != NULL);
    test_federation();
    test_san();
    CHECK(nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS) == 0);
    printf("test_pki: OK\n");
    return 0;
}
