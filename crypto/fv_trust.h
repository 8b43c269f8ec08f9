/* fv_trust.h - an agent's own verification of the cohort it masks with (OpenSSL).
 *
 * Why. Secure aggregation hides an agent's input from the coordinator only if the
 * coordinator does not know the pairwise masks of the other members: with the masks of
 * every other member of the cohort it removes them from the sum and is left with the
 * agent's input. A coordinator that chooses the cohort's keys itself (ROUND_START "pks")
 * can invent members whose keys it holds. So an agent takes a member only on evidence
 * the coordinator cannot forge: a certificate issued by the federation CA (whose key is
 * offline), valid now, not revoked by a CRL the CA signed, naming an agent of the
 * federation whose key is the one in pks. The coordinator can still withhold CRLs (hence
 * the agent's maximum CRL age, agent/agent_cohort.c) and collude with real members; it
 * can no longer make members up.
 *
 * What fv_trust_member verifies, each a refusal (FV_EAUTH) with a sentence:
 *   - the certificate parses as DER (FV_EPROTO otherwise);
 *   - it chains to the federation CA in ca_file, directly (a chain of exactly the leaf
 *     and the CA; no system roots, no intermediate, not the CA itself): "not issued by
 *     the federation CA";
 *   - it is valid at now_s: "expired", "not yet valid";
 *   - a CRL is held ("no federation CRL held"), it covers now_s ("the federation CRL
 *     expired") and does not list the certificate: "revoked";
 *   - its subject is an identity (O=<federation>, OU=<role>, CN=<name>, Ed25519 key) of
 *     the CA's federation: "not a federation identity", "another federation".
 * The role, the key against pks, duplicates and the coordinator's own key are the
 * caller's rules (they concern the cohort, not one certificate).
 *
 * CRLs. fv_trust_offer_crl takes a DER CRL from anyone (the coordinator relays it) and
 * keeps it only if the CA signed it (issuer name and signature) and its thisUpdate is
 * later than the held one's: a coordinator cannot roll an agent back to an older CRL
 * once it saw a newer one.
 *
 * Cache. A verified certificate is remembered by the SHA-256 of its DER (identity and
 * validity), so a member is verified once per CRL, not per round: the validity period is
 * re-checked on a hit (a cheap comparison); a newer CRL clears the cache. At most
 * FV_TRUST_CACHE_MAX entries (only verified certificates get in; a full cache is
 * emptied).
 *
 * Threading: an fv_trust_t belongs to one thread. Pure: no clock (now_s is an argument),
 * no logging.
 */
#ifndef FV_TRUST_H
#define FV_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"
#include "fv_tls.h"

#define FV_TRUST_CACHE_MAX 65536

typedef struct fv_trust fv_trust_t;

/* Reads the CA certificate (PEM) and, if crl_file is not NULL, a first CRL (PEM), which
 * must be signed by the CA (FV_EAUTH otherwise). Errors name the file. */
int fv_trust_new(const char *ca_file, const char *crl_file, fv_trust_t **ret, fv_diag_t *d);
void fv_trust_free(fv_trust_t *t); /* NULL-safe */

/* The federation named by the CA (its subject's O); borrowed. */
const char *fv_trust_federation(const fv_trust_t *t);

/* A CRL in DER (borrowed, len bytes). FV_EPROTO if it does not parse; FV_EAUTH if the
 * CA did not issue it (issuer name or signature). 0 otherwise, with *ret_newer true if
 * it was taken (thisUpdate later than the held CRL's, or none held; the cache is then
 * cleared) and false if it is not newer (the held one stays). */
int fv_trust_offer_crl(fv_trust_t *t, const uint8_t *der, size_t len, bool *ret_newer,
                       fv_diag_t *d);
/* thisUpdate of the held CRL in unix seconds; 0 when none is held. */
int64_t fv_trust_crl_issued(const fv_trust_t *t);
/* Revoked entries in the held CRL (0 without one). */
size_t fv_trust_crl_count(const fv_trust_t *t);

/* Verifies one member certificate (DER, borrowed) at now_s (unix seconds), as above.
 * 0 with *ret the identity it states; FV_EAUTH / FV_EPROTO with a sentence otherwise. */
int fv_trust_member(fv_trust_t *t, const uint8_t *der, size_t len, int64_t now_s,
                    fv_identity_t *ret, fv_diag_t *d);
/* The CN of a certificate's subject, NOT verified, for naming a member in a refusal
 * ("member 2 (bank-x): certificate revoked"): out gets the name if it is a valid name
 * (fv_name_valid), else "?". */
void fv_trust_cert_name(const uint8_t *der, size_t len, char out[FV_NAME_MAX + 1]);
/* Member verifications served from the cache, and verified in full, since fv_trust_new. */
void fv_trust_cache_stats(const fv_trust_t *t, uint64_t *ret_hits, uint64_t *ret_misses);

/* A PEM CRL file as DER (for the coordinator to relay in JOB_OFFER): *ret_der is the
 * caller's (free()), at most max_len bytes (FV_ETOOBIG above). Parses only: the
 * receivers verify. */
int fv_trust_crl_file_der(const char *path, size_t max_len, uint8_t **ret_der, size_t *ret_len,
                          fv_diag_t *d);

#endif
