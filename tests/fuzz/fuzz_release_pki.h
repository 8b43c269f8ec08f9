/* fuzz_release_pki.h - written by gen_release_corpus.c: do not edit. The fixed
 * PKI of fuzz_release (federation "fuzz-fed"); the coordinator's seed is a
 * test key that nothing else trusts. */
#ifndef FUZZ_RELEASE_PKI_H
#define FUZZ_RELEASE_PKI_H

#include <stdint.h>

#define FUZZ_RELEASE_NOW ((int64_t)1796583241)

static const char fuzz_release_coord_seed_hex[] =
    "845052cbf1a3b5caf58e9cbca077b4c78c8cefc7a3e63e7448d17ff56312f242";

static const char fuzz_release_ca_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBVTCCAQegAwIBAgIQFo7YYLFJ5yK7ZTVFP1CnbzAFBgMrZXAwKTERMA8GA1UE\n"
    "CgwIZnV6ei1mZWQxFDASBgNVBAMMC2Z1enotZmVkIENBMB4XDTI2MTIwNjE3NTQw\n"
    "MVoXDTM2MTIwMzE3NTQwMVowKTERMA8GA1UECgwIZnV6ei1mZWQxFDASBgNVBAMM\n"
    "C2Z1enotZmVkIENBMCowBQYDK2VwAyEAWnwS0JiQk+6hO0vjqsuRQnRfj2feXMM4\n"
    "WfYuXwgE6CWjRTBDMBIGA1UdEwEB/wQIMAYBAf8CAQAwDgYDVR0PAQH/BAQDAgEG\n"
    "MB0GA1UdDgQWBBQw8yOdf2ZHoVJ3AMOwxSzE+1gzvjAFBgMrZXADQQDsAMc996N6\n"
    "rpPFCkQxHzAFu9ulY0mnQ1PEffCRsBu0yIacgBi2ndAa9crrSaIzBg1G4u7FO0AI\n"
    "GRWUhgIXb98H\n"
    "-----END CERTIFICATE-----\n";
static const char fuzz_release_crl_pem[] =
    "-----BEGIN X509 CRL-----\n"
    "MIHRMIGEAgEBMAUGAytlcDApMREwDwYDVQQKDAhmdXp6LWZlZDEUMBIGA1UEAwwL\n"
    "ZnV6ei1mZWQgQ0EXDTI2MTIwNjE3NTQwMVoXDTI3MTIwNjE4NTQwMVqgLzAtMAoG\n"
    "A1UdFAQDAgEBMB8GA1UdIwQYMBaAFDDzI51/ZkehUncAw7DFLMT7WDO+MAUGAytl\n"
    "cANBAOzQ5jjoJ2X2xJ1HexsziFeCriuSPFPT56ia2DUKwwCsHQBiahfBOL02CEur\n"
    "gr57O847TjrNcFdM/lQOZoqKigE=\n"
    "-----END X509 CRL-----\n";
static const char fuzz_release_coord_cert_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBsTCCAWOgAwIBAgIPUuW2kG1gE4B8YtB2oHKQMAUGAytlcDApMREwDwYDVQQK\n"
    "DAhmdXp6LWZlZDEUMBIGA1UEAwwLZnV6ei1mZWQgQ0EwHhcNMjYxMjA2MTc1NDAy\n"
    "WhcNMjkwMzEwMTc1NDAyWjA5MREwDwYDVQQKDAhmdXp6LWZlZDEUMBIGA1UECwwL\n"
    "Y29vcmRpbmF0b3IxDjAMBgNVBAMMBWNvb3JkMCowBQYDK2VwAyEAJAvhNKRU4f/p\n"
    "U2HR/NwI2ozXkdQCU8ottbHWzFpv5lSjgZEwgY4wDAYDVR0TAQH/BAIwADAOBgNV\n"
    "HQ8BAf8EBAMCB4AwHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCMB0GA1Ud\n"
    "DgQWBBTcrpgHVF/9u6UPzEZpnEKd0kGWFzAfBgNVHSMEGDAWgBQw8yOdf2ZHoVJ3\n"
    "AMOwxSzE+1gzvjAPBgNVHREECDAGhwR/AAABMAUGAytlcANBAEHIXSEoirLoGS+F\n"
    "fX3szWlevW7m54SwXFDuakQxKi/vUMFDe1M4ng87HSDsPDKSKCRAixJ64tuDmVEC\n"
    "xN3Asg8=\n"
    "-----END CERTIFICATE-----\n";

#endif
