/* crypto-int.h - functions shared inside crypto/ only (not part of any public header). */
#ifndef FV_CRYPTO_INT_H
#define FV_CRYPTO_INT_H

#include <openssl/x509.h>

#include "fv_error.h"
#include "fv_tls.h"

/* The identity a certificate states: subject exactly O=<federation>, OU=<role>,
 * CN=<name> (valid names), an Ed25519 key, a serial of 1..20 bytes. Checks the form only:
 * the caller has verified the chain. FV_EPARSE with a sentence (no file or peer prefix)
 * otherwise; *ret written only on success. (identity.c) */
int fv__identity_from_x509(X509 *x, fv_identity_t *ret, fv_diag_t *d);

#endif
