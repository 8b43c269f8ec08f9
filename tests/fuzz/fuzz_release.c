/* fuzz_release.c - fuzz target for the release envelope's decoder and checks
 * (fv_release_verify: protocols/release.c).
 *
 * Input: envelope bytes. The trust is fixed: federation "fuzz-fed"'s CA and CRL from
 * fuzz_release_pki.h (written with the seeds by gen_release_corpus.c), written to a
 * temporary directory at the first call, read by fv_trust_new and removed; verification
 * runs at the fixed FUZZ_RELEASE_NOW, so the seeds verify on any day. Each input is
 * verified twice: as is, and, when it is a JSON object whose "manifest" is a string, with
 * that manifest re-signed by the header's coordinator key and the coordinator's
 * certificate put in "cert" (what a hostile coordinator can always do), so mutations of
 * the manifest get past the signature to the accepting path.
 *
 * Properties (a violation abort()s): a refusal is FV_EPROTO, FV_EAUTH or FV_ETOOBIG,
 * leaves the output pointer alone and says which envelope ("fuzz: ..."); an accepted
 * release has every field in range, was signed by a coordinator of "fuzz-fed", and when
 * its signer is the header's coordinator, signing the decoded struct again gives exactly
 * the manifest text that was accepted (one encoding per manifest), which verifies to an
 * equal struct.
 */
#define _GNU_SOURCE /* mkdtemp */
#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_release_pki.h"
#include "fv_crypto.h"
#include "fv_file.h"
#include "fv_release.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fv_trust_t *trust;
static uint8_t sk[64], pk[32];

static void setup(void)
{
    char dir[] = "/tmp/fv-fuzz-release-XXXXXX", ca[64], crl[64];
    uint8_t seed[32];
    fv_diag_t d = {{0}};
    if (fv_crypto_init() < 0 || mkdtemp(dir) == NULL)
        abort();
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(crl, sizeof crl, "%s/crl.pem", dir);
    if (fv_file_write_atomic(ca, fuzz_release_ca_pem, strlen(fuzz_release_ca_pem), 0600, &d) < 0 ||
        fv_file_write_atomic(crl, fuzz_release_crl_pem, strlen(fuzz_release_crl_pem), 0600, &d) <
            0 ||
        fv_trust_new(ca, crl, &trust, &d) < 0) {
        fprintf(stderr, "fuzz_release: %s\n", d.msg);
        abort();
    }
    unlink(ca);
    unlink(crl);
    rmdir(dir);
    if (sodium_hex2bin(seed, sizeof seed, fuzz_release_coord_seed_hex, 64, NULL, NULL, NULL) != 0 ||
        crypto_sign_seed_keypair(pk, sk, seed) != 0)
        abort();
}

static bool same_release(const fv_release_t *a, const fv_release_t *b)
{
    return strcmp(a->federation, b->federation) == 0 && a->release == b->release &&
           a->label == b->label && a->version == b->version &&
           strcmp(a->model_sha256, b->model_sha256) == 0 && a->model_bytes == b->model_bytes &&
           strcmp(a->job, b->job) == 0 && strcmp(a->kind, b->kind) == 0 &&
           strcmp(a->released, b->released) == 0 && strcmp(a->by, b->by) == 0 &&
           strcmp(a->lineage_json, b->lineage_json) == 0 &&
           strcmp(a->report_json, b->report_json) == 0 &&
           memcmp(a->signer.sign_pk, b->signer.sign_pk, 32) == 0;
}

static void check_accepted(const fv_release_t *r, const char *manifest, size_t manifest_len)
{
    if (r->release < 1 || (unsigned)r->label >= FV_RELEASE_N_LABELS || r->version < 1 ||
        r->model_bytes < 1 || r->model_bytes > FV_RELEASE_MODEL_MAX ||
        strlen(r->model_sha256) != 64 || (r->job[0] != '\0' && strlen(r->job) != 64) ||
        strcmp(r->federation, "fuzz-fed") != 0 || r->signer.role != FV_ROLE_COORDINATOR ||
        strcmp(r->signer.federation, "fuzz-fed") != 0 || r->lineage_json == NULL ||
        r->report_json == NULL)
        abort();
    if (memcmp(r->signer.sign_pk, pk, 32) != 0 || manifest == NULL)
        return;
    char *env = NULL;
    size_t n = 0;
    fv_diag_t d = {{0}};
    fv_release_t *again = NULL;
    if (fv_release_sign(r, sk, fuzz_release_coord_cert_pem, &env, &n, &d) < 0 ||
        fv_release_verify(trust, "fuzz", env, n, FUZZ_RELEASE_NOW, &again, &d) < 0 ||
        !same_release(r, again))
        abort();
    json_t *o = json_loadb(env, n, 0, NULL);
    const json_t *m = json_object_get(o, "manifest");
    if (!json_is_string(m) || json_string_length(m) != manifest_len ||
        memcmp(json_string_value(m), manifest, manifest_len) != 0)
        abort();
    json_decref(o);
    fv_release_free(again);
    free(env);
}

/* Verifies buf (len bytes, an exact-length copy so ASan sees a read past the end). */
static void run(const char *buf, size_t len, const char *manifest, size_t manifest_len)
{
    fv_release_t *sentinel = (fv_release_t *)(uintptr_t)0x10, *r = sentinel;
    fv_diag_t d = {{0}};
    int rc = fv_release_verify(trust, "fuzz", buf, len, FUZZ_RELEASE_NOW, &r, &d);
    if (rc == 0) {
        check_accepted(r, manifest, manifest_len);
        fv_release_free(r);
        return;
    }
    if ((rc != FV_EPROTO && rc != FV_EAUTH && rc != FV_ETOOBIG) || r != sentinel ||
        strncmp(d.msg, "fuzz: ", 6) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (trust == NULL)
        setup();
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        abort();
    memcpy(buf, data, size);
    run(buf, size, NULL, 0);
    free(buf);

    /* Second pass: the manifest re-signed by the fixed coordinator. */
    if (size > FV_RELEASE_MAX_BYTES)
        return 0;
    json_t *o = json_loadb((const char *)data, size, 0, NULL);
    const json_t *m = json_object_get(o, "manifest");
    if (json_is_object(o) && json_is_string(m)) {
        uint8_t sig[64];
        char b64[89];
        const char *text = json_string_value(m);
        size_t text_len = json_string_length(m);
        fv_sign(sig, text, text_len, sk);
        sodium_bin2base64(b64, sizeof b64, sig, 64, sodium_base64_VARIANT_ORIGINAL);
        if (json_object_set_new(o, "sig", json_string(b64)) == 0 &&
            json_object_set_new(o, "cert", json_string(fuzz_release_coord_cert_pem)) == 0) {
            char *env = json_dumps(o, JSON_COMPACT);
            if (env != NULL) {
                size_t n = strlen(env);
                char *copy = malloc(n ? n : 1);
                if (copy == NULL)
                    abort();
                memcpy(copy, env, n);
                run(copy, n, text, text_len);
                free(copy);
                free(env);
            }
        }
    }
    json_decref(o);
    return 0;
}
