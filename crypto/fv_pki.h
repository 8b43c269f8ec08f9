/* fv_pki.h - the federation's certificate authority and startup kits (OpenSSL).
 *
 * `fedvault provision` is a thin CLI over these functions. Everything is Ed25519: the CA
 * key, every participant key (so the key in a participant's certificate also signs its
 * SecAgg messages and audit records). Layout of a federation directory:
 *
 *   DIR/ca/ca.key        CA private key, PEM PKCS#8, mode 0600 (keep it offline)
 *   DIR/ca/ca.pem        CA certificate (self-signed, basicConstraints CA:TRUE)
 *   DIR/ca/crl.pem       certificate revocation list, signed by the CA (may be empty)
 *   DIR/ca/registry.json participants issued so far: name, role, serial, validity,
 *                        revoked flag (the CA's own record; never shipped)
 *   DIR/<name>/          one startup kit per participant, mode 0700:
 *       key.pem          its private key, mode 0600
 *       cert.pem         its certificate: subject O=<federation>, OU=<role>, CN=<name>;
 *                        the coordinator's also carries the HOST of --coordinator as a
 *                        subjectAltName (DNS or IP)
 *       ca.pem           copy of the CA certificate
 *       crl.pem          (coordinator and admin kits) copy of the CRL
 *       <role>.json      a configuration to start from (see fv_pki_issue)
 *
 * Serial numbers are 128-bit random. Every file is written to a temporary name, fsynced
 * and renamed, so a crash never leaves half a key or half a registry. Private keys are
 * created with mode 0600 from the start (never world-readable, not even briefly). An
 * existing kit is never overwritten: FV_EEXIST-like refusal (UV_EEXIST).
 */
#ifndef FV_PKI_H
#define FV_PKI_H

#include <stdint.h>

#include "fv_error.h"
#include "fv_tls.h"

/* Default validity in days: participants' certificates, the CA's certificate, and the
 * CRL (nextUpdate = now + FV_PKI_CRL_DAYS; every revoke and fv_pki_crl_refresh re-signs
 * it, and a peer whose CRL is past nextUpdate fails closed, so refresh it well before). */
#define FV_PKI_DAYS 825
#define FV_PKI_CA_DAYS 3650
#define FV_PKI_CRL_DAYS 365

/* opts may be NULL (all defaults). A not_after in the past is allowed (it makes an
 * already expired certificate, for tests); not_after <= not_before is FV_EINVAL. */
typedef struct fv_pki_opts {
    int64_t not_before;     /* unix seconds; 0 = now - 1 hour (clock skew) */
    int64_t not_after;      /* unix seconds; 0 = not_before + days */
    int days;               /* validity when not_after is 0; 0 = FV_PKI_DAYS for
                               participants, FV_PKI_CA_DAYS for the CA; at most 36500 */
    const char *admin_addr; /* coordinator kit only, optional: "HOST:PORT" of its admin
                               port (fedvault CLI); recorded in the registry like the
                               coordinator's address */
} fv_pki_opts_t;

/* Creates DIR (mode 0700, its parent must exist) if needed, and DIR/ca with the CA key,
 * its certificate, an empty CRL and an empty registry. Refuses if DIR/ca exists at all:
 * UV_EEXIST. */
int fv_pki_ca_create(const char *dir, const char *federation, const fv_pki_opts_t *opts,
                     fv_diag_t *d);

/* Issues a kit DIR/<name>/ for a participant (refuses an existing name in the registry,
 * even a revoked one, or an existing kit folder: UV_EEXIST; the name "ca" is reserved:
 * FV_EINVAL). No other kit is touched. coordinator_addr is "HOST:PORT" (an IPv6 address
 * as "[ADDR]:PORT"; port 0..65535): it goes into the coordinator's subjectAltName and
 * into every kit's config file:
 *   coordinator.json {"federation","name","role","listen":"HOST:PORT","ca","cert","key","crl"}
 *                    (+ "admin_listen":"HOST:PORT" when opts->admin_addr is given)
 *   agent.json       {"federation","name","role","coordinator":"HOST:PORT","ca","cert","key"}
 *   admin.json       {"federation","name","role","coordinator":"HOST:PORT","ca","cert","key"}
 *                    (+ "admin":"HOST:PORT" when the registry records an admin address)
 * (paths in the config are relative to the kit folder). It is required for the
 * coordinator (whose address the registry then records); for agents and admins NULL
 * means the address recorded in the registry (FV_EINVAL if none yet). UV_EBUSY if
 * another process is issuing or revoking in DIR at the same moment. */
int fv_pki_issue(const char *dir, const char *name, fv_role_t role, const char *coordinator_addr,
                 const fv_pki_opts_t *opts, fv_diag_t *d);

/* Checks a coordinator address as fv_pki_issue will ("HOST:PORT", "[IPV6]:PORT"; HOST
 * an IP address or a DNS name): FV_EINVAL with a sentence otherwise. Lets a caller
 * refuse a bad address before creating anything. */
int fv_pki_addr_check(const char *addr, fv_diag_t *d);

/* Marks a participant revoked in the registry and rewrites DIR/ca/crl.pem (and the CRL
 * copies in the coordinator and admin kits still in DIR). FV_EPEER for an unknown name.
 * Revoking a revoked participant succeeds (its revocation date is kept; the CRL is
 * re-signed). */
int fv_pki_revoke(const char *dir, const char *name, fv_diag_t *d);

/* Re-signs the CRL (same entries, lastUpdate now - 1 hour, nextUpdate now +
 * FV_PKI_CRL_DAYS) and refreshes the kits' copies as fv_pki_revoke does. */
int fv_pki_crl_refresh(const char *dir, fv_diag_t *d);

#endif
