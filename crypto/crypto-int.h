/* crypto-int.h - functions shared inside crypto/ only (not part of any public header). */
#ifndef FV_CRYPTO_INT_H
#define FV_CRYPTO_INT_H

#include <openssl/x509.h>

#include "fv_dpnoise.h"
#include "fv_error.h"
#include "fv_tls.h"

/* The identity a certificate states: subject exactly O=<federation>, OU=<role>,
 * CN=<name> (valid names), an Ed25519 key, a serial of 1..20 bytes. Checks the form only:
 * the caller has verified the chain. FV_EPARSE with a sentence (no file or peer prefix)
 * otherwise; *ret written only on success. (identity.c) */
int fv__identity_from_x509(X509 *x, fv_identity_t *ret, fv_diag_t *d);

/* Bernoulli(exp(-u^2 / den)) as exp(-u m / den)^k exp(-u r / den), u = m k + r, so that no
 * numerator exceeds u * m: the discrete Gaussian's path for u >= 2^64 (m = 2^38), exposed
 * so tests can run it with small m. Needs u * m < 2^128. (dpnoise.c) */
bool fv__dp_bernoulli_exp_sq(fv_dp_stream_t *s, fv_dp_u128 u, fv_dp_u128 den, fv_dp_u128 m);
/* exp(x), x <= 0: the ziggurat's wedge test. (dpnoise.c) */
double fv__dp_exp_neg(double x);
/* ln((x + 1) 2^-53), x < 2^53: the ziggurat's tail. (dpnoise.c) */
double fv__dp_log_u53(uint64_t x);

#endif
