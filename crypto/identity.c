/* identity.c - participant roles and names, shared by the TLS layer and provisioning,
 * and the one parser of a certificate's subject into an fv_identity_t (used by tls.c for
 * TLS peers and by trust.c for the cohort certificates an agent verifies itself).
 *
 * A name ends up in a certificate subject, a directory name, a log field and an audit
 * record, so it is kept to a small alphabet that needs no escaping anywhere.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "crypto-int.h"
#include "fv_tls.h"

const char *fv_role_name(fv_role_t role)
{
    switch (role) {
    case FV_ROLE_COORDINATOR:
        return "coordinator";
    case FV_ROLE_AGENT:
        return "agent";
    case FV_ROLE_ADMIN:
        return "admin";
    }
    return "unknown";
}

int fv_role_parse(const char *s, fv_role_t *ret)
{
    static const fv_role_t roles[] = {FV_ROLE_COORDINATOR, FV_ROLE_AGENT, FV_ROLE_ADMIN};
    if (s == NULL)
        return FV_EINVAL;
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        if (strcmp(s, fv_role_name(roles[i])) == 0) {
            *ret = roles[i];
            return 0;
        }
    }
    return FV_EINVAL;
}

bool fv_name_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strlen(s);
    if (n == 0 || n > FV_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

/* ---- certificate subjects ---------------------------------------------------------- */

/* The single entry of nid in the subject, copied into out (FV_NAME_MAX + 1 bytes) if it
 * is a valid name (fv_name_valid). */
static int subject_field(const X509_NAME *nm, int nid, const char *what, char *out, fv_diag_t *d)
{
    int i = X509_NAME_get_index_by_NID(nm, nid, -1);
    const ASN1_STRING *v;
    const unsigned char *p;
    int n;

    if (i < 0)
        return fv_diag_set(d, FV_EPARSE, "no %s in the subject", what);
    if (X509_NAME_get_index_by_NID(nm, nid, i) >= 0)
        return fv_diag_set(d, FV_EPARSE, "more than one %s in the subject", what);
    v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i));
    p = ASN1_STRING_get0_data(v);
    n = ASN1_STRING_length(v);
    /* A BMP or Universal string holds NUL bytes and fails here, as does anything long. */
    if (p == NULL || n <= 0 || n > FV_NAME_MAX || memchr(p, 0, (size_t)n) != NULL)
        return fv_diag_set(d, FV_EPARSE, "%s is not a valid name", what);
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    if (!fv_name_valid(out))
        return fv_diag_set(d, FV_EPARSE, "%s \"%s\" is not a valid name", what, out);
    return 0;
}

int fv__identity_from_x509(X509 *x, fv_identity_t *ret, fv_diag_t *d)
{
    const X509_NAME *nm = X509_get_subject_name(x);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    EVP_PKEY *pk = X509_get0_pubkey(x);
    char role[FV_NAME_MAX + 1];
    fv_identity_t id;
    size_t pk_len = sizeof id.sign_pk;
    int r;

    memset(&id, 0, sizeof id);
    if (nm == NULL || X509_NAME_entry_count(nm) != 3)
        return fv_diag_set(d, FV_EPARSE,
                           "subject must be exactly O=<federation>, "
                           "OU=<role>, CN=<name>");
    if ((r = subject_field(nm, NID_organizationName, "O (federation)", id.federation, d)) < 0 ||
        (r = subject_field(nm, NID_organizationalUnitName, "OU (role)", role, d)) < 0 ||
        (r = subject_field(nm, NID_commonName, "CN (name)", id.name, d)) < 0)
        return r;
    if (fv_role_parse(role, &id.role) < 0)
        return fv_diag_set(d, FV_EPARSE, "OU \"%s\" is not a role (coordinator, agent, admin)",
                           role);
    if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_ED25519) {
        ERR_clear_error();
        return fv_diag_set(d, FV_EPARSE, "key is not Ed25519");
    }
    if (EVP_PKEY_get_raw_public_key(pk, id.sign_pk, &pk_len) != 1 || pk_len != sizeof id.sign_pk) {
        ERR_clear_error();
        return fv_diag_set(d, FV_EPARSE, "cannot read the Ed25519 public key");
    }
    if (serial == NULL || ASN1_STRING_type(serial) != V_ASN1_INTEGER ||
        ASN1_STRING_length(serial) <= 0 ||
        (size_t)ASN1_STRING_length(serial) * 2 >= sizeof id.serial_hex)
        return fv_diag_set(d, FV_EPARSE,
                           "serial number is negative, empty or longer than "
                           "20 bytes");
    {
        const unsigned char *s = ASN1_STRING_get0_data(serial);
        int n = ASN1_STRING_length(serial);
        for (int i = 0; i < n; i++)
            snprintf(id.serial_hex + 2 * i, 3, "%02x", s[i]);
    }
    *ret = id;
    return 0;
}
