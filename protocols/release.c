/* release.c - signed model releases (fv_release.h): the manifest's one encoding, the
 * envelope's strict decoder and its checks, the model file's check, and the bank's model
 * directory.
 *
 * Purpose: a release is the only way a model reaches a bank's scoring path, and its bytes
 * come from the coordinator (which may lie) or from a directory anyone with the bank's
 * file permissions could have touched. So an envelope is decoded like any hostile input:
 * a size cap first, jansson with duplicate keys refused, exactly the known keys, exact
 * types, bounded strings and ranges; then the checks that need keys, in this order:
 *   1. the manifest's federation is the CA's ("another federation's release ('f2')"):
 *      first, so a release from another federation is named for what it is rather than
 *      for the certificate that comes with it;
 *   2. the certificate: fv_trust_member (CA, validity at now_s, CRL, subject), then role
 *      coordinator: "not signed by a coordinator of federation X";
 *   3. the Ed25519 signature over exactly the manifest text's bytes, under the
 *      certificate's key: "bad signature".
 *
 * Invariants:
 *   - One encoding per manifest (manifest_encode): compact JSON, keys sorted, ASCII only
 *     (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII), "lineage" and "report" as
 *     jansson re-encodes them (reals with 17 significant digits). fv_release_sign signs
 *     that text; fv_release_verify decodes the text, re-encodes the decoded struct and
 *     refuses a text that differs ("not in canonical form"), so a verified manifest is
 *     exactly the text its struct gives, and nobody can make two texts of one release.
 *   - One field validator (release_check) serves both sides: sign refuses (FV_EINVAL)
 *     what verify would refuse (FV_EPROTO).
 *   - The certificate travels as PEM; its DER is the base64 between the BEGIN and END
 *     lines (decoded here with libsodium: protocols/ uses OpenSSL only through
 *     crypto/fv_trust.h, which parses and verifies the DER).
 *   - The model directory holds "<64 lowercase hex>.fvm" and "<same>.release.json"; a
 *     sha is checked to be 64 lowercase hex before any path is built from it, and a
 *     scan looks only at names of exactly that shape. Writes go through
 *     fv_file_write_atomic (temporary file in the same directory, fsync, rename, fsync of
 *     the directory), the model file first, so an envelope is never seen without its
 *     whole file. The manifest's model_sha256 must equal the sha its file name carries.
 *   - Every size is capped before allocation: envelope FV_RELEASE_MAX_BYTES, certificate
 *     CERT_PEM_MAX, model file FV_RELEASE_MODEL_MAX, envelopes per scan SCAN_MAX. Files
 *     are read only when regular (opened O_NONBLOCK, so a FIFO under a release's name is
 *     refused instead of hanging the scan).
 *
 * Threading: no globals; reentrant. An fv_trust_t passed in belongs to the calling thread
 * (fv_trust.h). No logging, no clock (now_s is an argument).
 *
 * Ownership: fv_release_t owns lineage_json and report_json (fv_release_free). Envelopes
 * and buffers passed in are borrowed. Scan results are the caller's
 * (fv_release_entries_free).
 */
#include "fv_audit.h"
#include "fv_release.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fv_crypto.h"
#include "fv_file.h"

#define JFLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)
#define SIG_B64_LEN 88    /* base64 of 64 bytes, padded */
#define CERT_PEM_MAX 8192 /* an Ed25519 certificate's PEM is under 1 KiB */
#define CERT_DER_MAX 6144 /* 3/4 of CERT_PEM_MAX */
#define SCAN_MAX 4096     /* envelopes per directory scan */
#define ENV_SUFFIX ".release.json"
#define MODEL_SUFFIX ".fvm"

static const char pem_begin[] = "-----BEGIN CERTIFICATE-----";
static const char pem_end[] = "-----END CERTIFICATE-----";

/* ---- labels ------------------------------------------------------------------------ */

static const char *const label_names[FV_RELEASE_N_LABELS] = {"stable", "canary", "backup"};

const char *fv_release_label_name(fv_release_label_t l)
{
    return (unsigned)l < FV_RELEASE_N_LABELS ? label_names[l] : "?";
}

int fv_release_label_parse(const char *s, fv_release_label_t *ret)
{
    for (int i = 0; s != NULL && i < FV_RELEASE_N_LABELS; i++)
        if (strcmp(s, label_names[i]) == 0) {
            *ret = (fv_release_label_t)i;
            return 0;
        }
    return FV_EINVAL;
}

/* ---- field rules ------------------------------------------------------------------- */

static bool is_lower_hex64(const char *s)
{
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[64] == '\0';
}

static bool kind_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 15)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'a' || s[i] > 'z')
            return false;
    return true;
}

static bool terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

/* A key for a sentence: at most 40 bytes, anything but printable ASCII as '?' and '"' as
 * '\''. */
static void quote_key(char out[48], const char *key)
{
    size_t i = 0;
    for (; key[i] != '\0' && i < 40; i++)
        out[i] = key[i] == '"' ? '\'' : (key[i] >= 0x20 && key[i] < 0x7f) ? key[i] : '?';
    snprintf(out + i, 48 - i, "%s", key[i] != '\0' ? "..." : "");
}

/* Every field of a decoded or to-be-signed manifest: 0, or code with "NAME: manifest
 * field F: what is wrong". lineage_json / report_json are checked by the encoder. */
static int release_check(const fv_release_t *r, const char *name, int code, fv_diag_t *d)
{
    const char *f = NULL, *why = NULL;
    if (!terminated(r->federation, sizeof r->federation) ||
        !terminated(r->model_sha256, sizeof r->model_sha256) ||
        !terminated(r->job, sizeof r->job) || !terminated(r->kind, sizeof r->kind) ||
        !terminated(r->released, sizeof r->released) || !terminated(r->by, sizeof r->by))
        return fv_diag_set(d, code, "%s: a manifest string is not NUL-terminated", name);
    if (!fv_name_valid(r->federation))
        f = "federation", why = "not a federation name";
    else if (r->release < 1 || r->release > (uint64_t)INT64_MAX)
        f = "release", why = "not in 1..2^63-1";
    else if ((unsigned)r->label >= FV_RELEASE_N_LABELS)
        f = "label", why = "not stable, canary or backup";
    else if (r->version < 1)
        f = "version", why = "not at least 1";
    else if (!is_lower_hex64(r->model_sha256))
        f = "model_sha256", why = "not 64 lowercase hex digits";
    else if (r->model_bytes < 1 || r->model_bytes > FV_RELEASE_MODEL_MAX)
        f = "model_bytes", why = "not in 1..2^30";
    else if (r->job[0] != '\0' && !is_lower_hex64(r->job))
        f = "job", why = "neither \"\" nor 64 lowercase hex digits";
    else if (!kind_valid(r->kind))
        f = "kind", why = "not 1..15 letters a-z";
    else if (!fv_audit_ts_valid(r->released))
        f = "released", why = "not a UTC time YYYY-MM-DDTHH:MM:SS[.fff]Z";
    else if (!fv_name_valid(r->by))
        f = "by", why = "not a participant name";
    if (f == NULL)
        return 0;
    return fv_diag_set(d, code, "%s: manifest field \"%s\": %s", name, f, why);
}

/* ---- the manifest's one encoding ---------------------------------------------------- */

/* Parses an owned "lineage"/"report" text as a JSON object or null (NULL = null). */
static json_t *sub_from_text(const char *text)
{
    if (text == NULL)
        return json_null();
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    if (j != NULL && !json_is_object(j) && !json_is_null(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* The canonical manifest text of r (malloc'd, NUL-terminated, *ret_len bytes). */
static int manifest_encode(const fv_release_t *r, const char *name, int code, char **ret,
                           size_t *ret_len, fv_diag_t *d)
{
    json_t *o = json_object(), *lin = sub_from_text(r->lineage_json),
           *rep = sub_from_text(r->report_json);
    char *s = NULL;
    int rc = 0;
    if (lin == NULL || rep == NULL) {
        rc = fv_diag_set(d, code, "%s: manifest field \"%s\": not a JSON object or null", name,
                         lin == NULL ? "lineage" : "report");
        goto out;
    }
    if (o == NULL || json_object_set_new(o, "federation", json_string(r->federation)) ||
        json_object_set_new(o, "release", json_integer((json_int_t)r->release)) ||
        json_object_set_new(o, "label", json_string(fv_release_label_name(r->label))) ||
        json_object_set_new(o, "version", json_integer((json_int_t)r->version)) ||
        json_object_set_new(o, "model_sha256", json_string(r->model_sha256)) ||
        json_object_set_new(o, "model_bytes", json_integer((json_int_t)r->model_bytes)) ||
        json_object_set_new(o, "job", json_string(r->job)) ||
        json_object_set_new(o, "kind", json_string(r->kind)) ||
        json_object_set(o, "lineage", lin) || json_object_set(o, "report", rep) ||
        json_object_set_new(o, "released", json_string(r->released)) ||
        json_object_set_new(o, "by", json_string(r->by)) || (s = json_dumps(o, JFLAGS)) == NULL) {
        rc = fv_diag_set(d, FV_ENOMEM, "%s: out of memory encoding the manifest", name);
        goto out;
    }
    *ret_len = strlen(s);
    *ret = s;
out:
    json_decref(lin);
    json_decref(rep);
    json_decref(o);
    return rc;
}

/* ---- decoding ----------------------------------------------------------------------- */

static int copy_str(const json_t *o, const char *key, char *out, size_t cap, const char *name,
                    fv_diag_t *d)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return fv_diag_set(d, FV_EPROTO, "%s: manifest field \"%s\": missing or not a string", name,
                           key);
    size_t n = json_string_length(v);
    if (n >= cap || strlen(json_string_value(v)) != n)
        return fv_diag_set(d, FV_EPROTO, "%s: manifest field \"%s\": longer than %zu bytes", name,
                           key, cap - 1);
    memcpy(out, json_string_value(v), n + 1);
    return 0;
}

static int get_int(const json_t *o, const char *key, json_int_t *ret, const char *name,
                   fv_diag_t *d)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return fv_diag_set(d, FV_EPROTO, "%s: manifest field \"%s\": missing or not an integer",
                           name, key);
    *ret = json_integer_value(v);
    return 0;
}

static int get_sub(const json_t *o, const char *key, char **ret, const char *name, fv_diag_t *d)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_object(v) && !json_is_null(v))
        return fv_diag_set(d, FV_EPROTO, "%s: manifest field \"%s\": missing or not an object",
                           name, key);
    if ((*ret = json_dumps(v, JFLAGS | JSON_ENCODE_ANY)) == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", name);
    return 0;
}

static const char *const manifest_keys[] = {"by",      "federation", "job",         "kind",
                                            "label",   "lineage",    "model_bytes", "model_sha256",
                                            "release", "released",   "report",      "version"};
#define N_MANIFEST_KEYS (sizeof manifest_keys / sizeof manifest_keys[0])

/* The manifest text (len bytes) to a struct, shape and ranges checked, canonical form
 * required. *ret is the caller's. */
static int manifest_decode(const char *text, size_t len, const char *name, fv_release_t **ret,
                           fv_diag_t *d)
{
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    fv_release_t *r = NULL;
    char *canon = NULL;
    size_t canon_len = 0;
    json_int_t n = 0;
    int rc = 0;
    const char *key;
    json_t *v;

    if (o == NULL) {
        rc = fv_diag_set(d, FV_EPROTO, "%s: the manifest is not JSON (%s at byte %d)", name,
                         je.text, je.position);
        goto out;
    }
    if (!json_is_object(o)) {
        rc = fv_diag_set(d, FV_EPROTO, "%s: the manifest is not a JSON object", name);
        goto out;
    }
    json_object_foreach(o, key, v)
    {
        size_t i = 0;
        while (i < N_MANIFEST_KEYS && strcmp(key, manifest_keys[i]) != 0)
            i++;
        if (i == N_MANIFEST_KEYS) {
            char q[48];
            quote_key(q, key);
            rc = fv_diag_set(d, FV_EPROTO, "%s: manifest has an unknown key \"%s\"", name, q);
            goto out;
        }
    }
    if ((r = calloc(1, sizeof *r)) == NULL) {
        rc = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", name);
        goto out;
    }
    char label[16];
    if ((rc = copy_str(o, "federation", r->federation, sizeof r->federation, name, d)) < 0 ||
        (rc = copy_str(o, "label", label, sizeof label, name, d)) < 0 ||
        (rc = copy_str(o, "model_sha256", r->model_sha256, sizeof r->model_sha256, name, d)) < 0 ||
        (rc = copy_str(o, "job", r->job, sizeof r->job, name, d)) < 0 ||
        (rc = copy_str(o, "kind", r->kind, sizeof r->kind, name, d)) < 0 ||
        (rc = copy_str(o, "released", r->released, sizeof r->released, name, d)) < 0 ||
        (rc = copy_str(o, "by", r->by, sizeof r->by, name, d)) < 0)
        goto out;
    if (fv_release_label_parse(label, &r->label) < 0) {
        rc = fv_diag_set(d, FV_EPROTO, "%s: manifest field \"label\": not stable, canary or backup",
                         name);
        goto out;
    }
    if ((rc = get_int(o, "release", &n, name, d)) < 0)
        goto out;
    r->release = n < 1 ? 0 : (uint64_t)n;
    if ((rc = get_int(o, "version", &n, name, d)) < 0)
        goto out;
    r->version = (int64_t)n;
    if ((rc = get_int(o, "model_bytes", &n, name, d)) < 0)
        goto out;
    r->model_bytes = n < 1 ? 0 : (uint64_t)n;
    if ((rc = get_sub(o, "lineage", &r->lineage_json, name, d)) < 0 ||
        (rc = get_sub(o, "report", &r->report_json, name, d)) < 0 ||
        (rc = release_check(r, name, FV_EPROTO, d)) < 0 ||
        (rc = manifest_encode(r, name, FV_EPROTO, &canon, &canon_len, d)) < 0)
        goto out;
    if (canon_len != len || memcmp(canon, text, len) != 0) {
        rc = fv_diag_set(d, FV_EPROTO,
                         "%s: the manifest is not in canonical form (compact, sorted keys)", name);
        goto out;
    }
    *ret = r;
    r = NULL;
out:
    free(canon);
    fv_release_free(r);
    json_decref(o);
    return rc;
}

/* PEM "-----BEGIN CERTIFICATE-----\n<base64 lines>-----END CERTIFICATE-----\n" (one
 * certificate, nothing before it, only whitespace after it) to DER. */
static int pem_to_der(const char *pem, size_t len, uint8_t *der, size_t cap, size_t *ret_len)
{
    const size_t nb = sizeof pem_begin - 1, ne = sizeof pem_end - 1;
    if (len < nb || memcmp(pem, pem_begin, nb) != 0)
        return FV_EPROTO;
    const char *body = pem + nb, *end = NULL;
    for (const char *p = body; p + ne <= pem + len; p++)
        if (memcmp(p, pem_end, ne) == 0) {
            end = p;
            break;
        }
    if (end == NULL)
        return FV_EPROTO;
    for (const char *p = end + ne; p < pem + len; p++)
        if (*p != '\n' && *p != '\r')
            return FV_EPROTO;
    size_t n = 0;
    const char *stop = NULL;
    if (sodium_base642bin(der, cap, body, (size_t)(end - body), "\r\n", &n, &stop,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        stop != end || n == 0)
        return FV_EPROTO;
    *ret_len = n;
    return 0;
}

static const char *const envelope_keys[] = {"cert", "manifest", "sig"};

int fv_release_verify(fv_trust_t *trust, const char *name, const char *envelope, size_t len,
                      int64_t now_s, fv_release_t **ret, fv_diag_t *d)
{
    json_t *o = NULL;
    fv_release_t *r = NULL;
    uint8_t *der = NULL, sig[64];
    size_t der_len = 0, sig_len = 0;
    json_error_t je;
    const char *key, *stop = NULL;
    json_t *v, *jm, *js, *jc;
    int rc;

    if (len > FV_RELEASE_MAX_BYTES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: %zu bytes, more than the %zu a release may have",
                           name, len, FV_RELEASE_MAX_BYTES);
    if ((rc = fv_crypto_init()) < 0)
        return fv_diag_set(d, rc, "%s: libsodium cannot initialise", name);
    if (envelope == NULL)
        envelope = "", len = 0;
    o = json_loadb(envelope, len, JSON_REJECT_DUPLICATES, &je);
    if (o == NULL) {
        rc = fv_diag_set(d, FV_EPROTO, "%s: not a JSON release envelope (%s at byte %d)", name,
                         je.text, je.position);
        goto out;
    }
    if (!json_is_object(o)) {
        rc = fv_diag_set(d, FV_EPROTO, "%s: the release envelope is not a JSON object", name);
        goto out;
    }
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, envelope_keys[0]) && strcmp(key, envelope_keys[1]) &&
            strcmp(key, envelope_keys[2])) {
            char q[48];
            quote_key(q, key);
            rc = fv_diag_set(d, FV_EPROTO, "%s: the release envelope has an unknown key \"%s\"",
                             name, q);
            goto out;
        }
    }
    jm = json_object_get(o, "manifest");
    js = json_object_get(o, "sig");
    jc = json_object_get(o, "cert");
    if (!json_is_string(jm) || !json_is_string(js) || !json_is_string(jc)) {
        rc = fv_diag_set(d, FV_EPROTO,
                         "%s: the release envelope's \"%s\" is missing or not a string", name,
                         !json_is_string(jm)   ? "manifest"
                         : !json_is_string(js) ? "sig"
                                               : "cert");
        goto out;
    }
    if (json_string_length(js) != SIG_B64_LEN ||
        sodium_base642bin(sig, sizeof sig, json_string_value(js), SIG_B64_LEN, NULL, &sig_len,
                          &stop, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        sig_len != sizeof sig || stop != json_string_value(js) + SIG_B64_LEN) {
        rc = fv_diag_set(d, FV_EPROTO, "%s: \"sig\" is not a base64 Ed25519 signature", name);
        goto out;
    }
    if (json_string_length(jc) > CERT_PEM_MAX) {
        rc = fv_diag_set(d, FV_EPROTO, "%s: \"cert\" is longer than %d bytes", name, CERT_PEM_MAX);
        goto out;
    }
    if ((der = malloc(CERT_DER_MAX)) == NULL) {
        rc = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", name);
        goto out;
    }
    if (pem_to_der(json_string_value(jc), json_string_length(jc), der, CERT_DER_MAX, &der_len) <
        0) {
        rc = fv_diag_set(d, FV_EPROTO, "%s: \"cert\" is not one PEM certificate", name);
        goto out;
    }
    if ((rc = manifest_decode(json_string_value(jm), json_string_length(jm), name, &r, d)) < 0)
        goto out;

    const char *fed = fv_trust_federation(trust);
    if (strcmp(r->federation, fed) != 0) {
        rc = fv_diag_set(d, FV_EAUTH, "%s: another federation's release ('%s'; we are '%s')", name,
                         r->federation, fed);
        goto out;
    }
    fv_diag_t why = {{0}};
    if (fv_trust_member(trust, der, der_len, now_s, &r->signer, &why) < 0) {
        rc = fv_diag_set(d, FV_EAUTH, "%s: not signed by a coordinator of federation %s (%s)", name,
                         fed, why.msg);
        goto out;
    }
    if (r->signer.role != FV_ROLE_COORDINATOR) {
        rc = fv_diag_set(d, FV_EAUTH,
                         "%s: not signed by a coordinator of federation %s (the signer %s is "
                         "an %s)",
                         name, fed, r->signer.name, fv_role_name(r->signer.role));
        goto out;
    }
    if (fv_sign_verify(sig, json_string_value(jm), json_string_length(jm), r->signer.sign_pk) !=
        0) {
        rc = fv_diag_set(d, FV_EAUTH,
                         "%s: bad signature (the manifest is not what coordinator %s signed)", name,
                         r->signer.name);
        goto out;
    }
    *ret = r;
    r = NULL;
    rc = 0;
out:
    fv_release_free(r);
    free(der);
    json_decref(o);
    return rc;
}

void fv_release_free(fv_release_t *r)
{
    if (r == NULL)
        return;
    free(r->lineage_json);
    free(r->report_json);
    free(r);
}

/* ---- signing ------------------------------------------------------------------------ */

int fv_release_sign(const fv_release_t *r, const uint8_t sk[64], const char *cert_pem, char **ret,
                    size_t *ret_len, fv_diag_t *d)
{
    const char *name = "release";
    char *text = NULL, *env = NULL, b64[SIG_B64_LEN + 1];
    size_t text_len = 0, pem_len = cert_pem != NULL ? strlen(cert_pem) : 0, der_len;
    uint8_t sig[64], der[CERT_DER_MAX];
    json_t *o = NULL;
    int rc;

    if ((rc = fv_crypto_init()) < 0)
        return fv_diag_set(d, rc, "libsodium cannot initialise");
    if ((rc = release_check(r, name, FV_EINVAL, d)) < 0)
        return rc;
    if (pem_len > CERT_PEM_MAX || pem_to_der(cert_pem, pem_len, der, sizeof der, &der_len) < 0)
        return fv_diag_set(d, FV_EINVAL, "release: the certificate is not one PEM certificate");
    if ((rc = manifest_encode(r, name, FV_EINVAL, &text, &text_len, d)) < 0)
        return rc;
    if ((rc = fv_sign(sig, text, text_len, sk)) < 0) {
        fv_diag_set(d, rc, "release: signing failed");
        goto out;
    }
    sodium_bin2base64(b64, sizeof b64, sig, sizeof sig, sodium_base64_VARIANT_ORIGINAL);
    o = json_object();
    if (o == NULL || json_object_set_new(o, "manifest", json_stringn(text, text_len)) ||
        json_object_set_new(o, "sig", json_string(b64)) ||
        json_object_set_new(o, "cert", json_stringn(cert_pem, pem_len)) ||
        (env = json_dumps(o, JFLAGS)) == NULL) {
        rc = fv_diag_set(d, FV_ENOMEM, "release: out of memory encoding the envelope");
        goto out;
    }
    size_t n = strlen(env);
    if (n > FV_RELEASE_MAX_BYTES) {
        rc = fv_diag_set(d, FV_ETOOBIG, "release: the envelope has %zu bytes, more than %zu", n,
                         FV_RELEASE_MAX_BYTES);
        free(env);
        goto out;
    }
    *ret = env;
    *ret_len = n;
out:
    json_decref(o);
    free(text);
    return rc;
}

/* ---- the model file ----------------------------------------------------------------- */

int fv_release_check_model(const fv_release_t *r, const char *name, const uint8_t *buf, size_t len,
                           fv_diag_t *d)
{
    uint8_t h[32];
    char hex[65];
    if ((uint64_t)len < r->model_bytes)
        return fv_diag_set(d, FV_EAUTH, "%s: truncated (%zu of %" PRIu64 " bytes)", name, len,
                           r->model_bytes);
    if ((uint64_t)len > r->model_bytes)
        return fv_diag_set(d, FV_EAUTH, "%s: too long (%zu bytes, the release says %" PRIu64 ")",
                           name, len, r->model_bytes);
    if (fv_crypto_init() < 0)
        return fv_diag_set(d, FV_EIO, "%s: libsodium cannot initialise", name);
    fv_sha256(h, buf, len);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    if (strcmp(hex, r->model_sha256) != 0)
        return fv_diag_set(d, FV_EAUTH, "%s: hash mismatch (sha256 %s, the release says %s)", name,
                           hex, r->model_sha256);
    return 0;
}

/* ---- the model directory ------------------------------------------------------------ */

/* Reads the regular file path (at most max_bytes) into a malloc'd buffer. Like
 * fv_file_read_all, but opened O_NONBLOCK: a FIFO (or a device) planted under a release's
 * name is refused at fstat instead of blocking the scanning thread in open(2). */
static int read_file_capped(const char *path, size_t max_bytes, char **ret, size_t *ret_len,
                            fv_diag_t *d)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), rc = 0;
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    if (fd < 0)
        return fv_diag_set(d, -errno, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        rc = fv_diag_set(d, -errno, "%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = fv_diag_set(d, FV_EINVAL, "%s: not a regular file", path);
        goto out;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)max_bytes) {
        rc = fv_diag_set(d, FV_ETOOBIG, "%s: %lld bytes, more than the %zu allowed", path,
                         (long long)st.st_size, max_bytes);
        goto out;
    }
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
        rc = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = fv_diag_set(d, -errno, "%s: cannot read: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break; /* shrank meanwhile: the caller's checks name the truncation */
        got += (size_t)n;
    }
    buf[got] = '\0';
    *ret = buf;
    *ret_len = got;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

static int dir_path(char out[4096], const char *dir, const char *sha, const char *suffix,
                    fv_diag_t *d)
{
    int n = snprintf(out, 4096, "%s/%s%s", dir, sha, suffix);
    if (n < 0 || n >= 4096)
        return fv_diag_set(d, -ENAMETOOLONG, "%s: directory name too long", dir);
    return 0;
}

int fv_release_dir_install(const char *dir, const fv_release_t *r, const char *envelope,
                           size_t envelope_len, const uint8_t *buf, size_t len, fv_diag_t *d)
{
    char mpath[4096], epath[4096];
    char *old = NULL;
    size_t old_len = 0;
    int rc;

    if (!is_lower_hex64(r->model_sha256))
        return fv_diag_set(d, FV_EINVAL, "%s: the release's model_sha256 is not 64 lowercase hex",
                           dir);
    if (envelope_len == 0 || envelope_len > FV_RELEASE_MAX_BYTES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: an envelope of %zu bytes (1..%zu allowed)", dir,
                           envelope_len, FV_RELEASE_MAX_BYTES);
    if ((rc = dir_path(mpath, dir, r->model_sha256, MODEL_SUFFIX, d)) < 0 ||
        (rc = dir_path(epath, dir, r->model_sha256, ENV_SUFFIX, d)) < 0)
        return rc;
    if ((rc = fv_release_check_model(r, mpath, buf, len, d)) < 0)
        return rc;
    /* An identical file already there is kept (a re-release of the same model under
     * another label or counter rewrites only its envelope). */
    bool same = read_file_capped(mpath, (size_t)r->model_bytes, &old, &old_len, NULL) == 0 &&
                old_len == len && memcmp(old, buf, len) == 0;
    free(old);
    if (!same && (rc = fv_file_write_atomic(mpath, buf, len, 0644, d)) < 0)
        return rc;
    return fv_file_write_atomic(epath, envelope, envelope_len, 0644, d);
}

/* "<64 lowercase hex>.release.json": the sha (NUL-terminated) in sha, else false. */
static bool envelope_name(const char *n, char sha[65])
{
    if (strlen(n) != 64 + sizeof ENV_SUFFIX - 1 || strcmp(n + 64, ENV_SUFFIX) != 0)
        return false;
    memcpy(sha, n, 64);
    sha[64] = '\0';
    return is_lower_hex64(sha);
}

/* Accepted first, by label, then release counter (highest first), then path; refused
 * last, by path. */
static int entry_cmp(const fv_release_entry_t *a, const fv_release_entry_t *b)
{
    if ((a->rel == NULL) != (b->rel == NULL))
        return a->rel == NULL ? 1 : -1;
    if (a->rel != NULL) {
        if (a->rel->label != b->rel->label)
            return a->rel->label < b->rel->label ? -1 : 1;
        if (a->rel->release != b->rel->release)
            return a->rel->release > b->rel->release ? -1 : 1;
    }
    return strcmp(a->envelope, b->envelope);
}

/* One envelope of a scan: e->rel and *ret_model on success; e->status/why otherwise. */
static void scan_one(const char *dir, const char *sha, fv_trust_t *trust, int64_t now_s,
                     fv_release_entry_t *e, uint8_t **ret_model, size_t *ret_model_len)
{
    fv_diag_t d = {{0}};
    char *env = NULL, *model = NULL;
    size_t env_len = 0, model_len = 0;
    fv_release_t *r = NULL;
    int rc;

    snprintf(e->path, sizeof e->path, "%s/%s%s", dir, sha, MODEL_SUFFIX);
    snprintf(e->envelope, sizeof e->envelope, "%s/%s%s", dir, sha, ENV_SUFFIX);
    if ((rc = read_file_capped(e->envelope, FV_RELEASE_MAX_BYTES, &env, &env_len, &d)) < 0 ||
        (rc = fv_release_verify(trust, e->envelope, env, env_len, now_s, &r, &d)) < 0)
        goto out;
    if (strcmp(r->model_sha256, sha) != 0) {
        rc = fv_diag_set(&d, FV_EAUTH, "%s: the release names model %s, not the file's %s",
                         e->envelope, r->model_sha256, sha);
        goto out;
    }
    if ((rc = read_file_capped(e->path, (size_t)FV_RELEASE_MODEL_MAX, &model, &model_len, &d)) <
            0 ||
        (rc = fv_release_check_model(r, e->path, (const uint8_t *)model, model_len, &d)) < 0)
        goto out;
    e->rel = r;
    r = NULL;
    *ret_model = (uint8_t *)model;
    *ret_model_len = model_len;
    model = NULL;
out:
    if (rc < 0) {
        e->status = rc;
        snprintf(e->why, sizeof e->why, "%s", d.msg);
    }
    fv_release_free(r);
    free(model);
    free(env);
}

int fv_release_dir_scan(const char *dir, fv_trust_t *trust, int64_t now_s, fv_release_entry_t **ret,
                        size_t *ret_n, uint8_t ***ret_models, size_t **ret_model_lens, fv_diag_t *d)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    char(*shas)[65] = NULL;
    size_t n = 0;
    fv_release_entry_t *e = NULL, *sorted = NULL;
    uint8_t **models = NULL, **smodels = NULL;
    size_t *lens = NULL, *slens = NULL, *idx = NULL;
    int rc = 0;

    if (strlen(dir) > 4096 - 64 - sizeof ENV_SUFFIX - 2) {
        if (dp != NULL)
            closedir(dp);
        return fv_diag_set(d, -ENAMETOOLONG, "%s: directory name too long", dir);
    }
    if (dp == NULL)
        return fv_diag_set(d, -errno, "%s: cannot open the model directory: %s", dir,
                           strerror(errno));
    if ((shas = malloc(SCAN_MAX * sizeof *shas)) == NULL) {
        rc = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", dir);
        goto out;
    }
    for (errno = 0; (de = readdir(dp)) != NULL; errno = 0) {
        char sha[65];
        if (!envelope_name(de->d_name, sha))
            continue;
        if (n == SCAN_MAX) {
            rc = fv_diag_set(d, FV_ETOOBIG, "%s: more than %d release envelopes", dir, SCAN_MAX);
            goto out;
        }
        memcpy(shas[n++], sha, 65);
    }
    if (errno != 0) {
        rc =
            fv_diag_set(d, -errno, "%s: cannot read the model directory: %s", dir, strerror(errno));
        goto out;
    }
    size_t cap = n ? n : 1;
    e = calloc(cap, sizeof *e);
    sorted = calloc(cap, sizeof *sorted);
    models = calloc(cap, sizeof *models);
    lens = calloc(cap, sizeof *lens);
    smodels = calloc(cap, sizeof *smodels);
    slens = calloc(cap, sizeof *slens);
    idx = calloc(cap, sizeof *idx);
    if (e == NULL || sorted == NULL || models == NULL || lens == NULL || smodels == NULL ||
        slens == NULL || idx == NULL) {
        rc = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", dir);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        scan_one(dir, shas[i], trust, now_s, &e[i], &models[i], &lens[i]);
        /* Without ret_models the bytes were only checked: drop them at once, so a scan
         * holds one model file at a time. */
        if (ret_models == NULL) {
            free(models[i]);
            models[i] = NULL;
        }
        idx[i] = i;
    }
    /* Insertion sort of indices (n <= SCAN_MAX; directories hold a handful). */
    for (size_t i = 1; i < n; i++) {
        size_t k = idx[i], j = i;
        while (j > 0 && entry_cmp(&e[idx[j - 1]], &e[k]) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = k;
    }
    for (size_t i = 0; i < n; i++) {
        sorted[i] = e[idx[i]];
        smodels[i] = models[idx[i]];
        slens[i] = lens[idx[i]];
    }
    *ret = sorted;
    *ret_n = n;
    sorted = NULL;
    if (ret_models != NULL) {
        *ret_models = smodels;
        smodels = NULL;
        if (ret_model_lens != NULL) {
            *ret_model_lens = slens;
            slens = NULL;
        }
    }
    free(models);
    free(lens);
    free(e);
    models = NULL;
    lens = NULL;
    e = NULL;
out:
    if (e != NULL)
        fv_release_entries_free(e, n, models, lens);
    else {
        free(models);
        free(lens);
    }
    free(sorted);
    free(smodels);
    free(slens);
    free(idx);
    free(shas);
    closedir(dp);
    return rc;
}

void fv_release_entries_free(fv_release_entry_t *e, size_t n, uint8_t **models, size_t *model_lens)
{
    for (size_t i = 0; e != NULL && i < n; i++)
        fv_release_free(e[i].rel);
    for (size_t i = 0; models != NULL && i < n; i++)
        free(models[i]);
    free(e);
    free(models);
    free(model_lens);
}
