/* fv_release.h - signed model releases: the manifest the coordinator signs, its check
 * against the federation CA, and the bank's local model directory.
 *
 * Why. A model reaches a bank's scoring path only as a release: the federation operator
 * releases a stored model version under a label (stable, canary, backup); the
 * coordinator signs a manifest naming the model file's SHA-256; each bank's agent fetches
 * the manifest and the file over its one outbound connection and installs both in a local
 * model directory; fedvault-serve loads a model only from there and only when the
 * manifest verifies against the federation CA and the file's hash is the manifest's. A
 * coordinator's signature is not enough for the agent (the coordinator may lie): the agent
 * also requires the hash to be one its own signed round receipts record for a job it took
 * part in, or one its operator pinned (agent/agent_release.c); that is the agent's rule,
 * not this module's.
 *
 * The envelope (a file "<sha256>.release.json" in the model directory, and the bytes the
 * coordinator sends) is a JSON object:
 *   {"manifest": "<text>", "sig": "<base64 Ed25519 signature over exactly the text's
 *    bytes>", "cert": "<PEM certificate of the signer>"}
 * and the manifest text is itself a JSON object (compact, sorted keys):
 *   {"federation": name, "release": n (the coordinator's release counter, 1, 2, ...: a
 *    later release of a label supersedes an earlier one), "label": "stable"|"canary"|
 *    "backup", "version": n (the coordinator's model version), "model_sha256": 64 hex,
 *    "model_bytes": n, "job": 64 hex or "", "kind": "final"|"student"|"global"|...,
 *    "lineage": {...} (a summary: job, round, parents; at most FV_RELEASE_MAX_BYTES in
 *    all), "report": {...} or null (the compression report of a student), "released":
 *    "2026-12-06T18:40:00.000Z", "by": the admin who released it}
 * Unknown keys are refused (a manifest is a statement; a field we do not understand is
 * one we would sign off on without reading).
 *
 * What fv_release_verify checks, each a refusal with a sentence naming the envelope:
 *   - sizes: the envelope at most FV_RELEASE_MAX_BYTES; the manifest's strings bounded;
 *   - JSON shape: the three envelope fields and the manifest's fields, types and ranges;
 *   - the certificate: fv_trust_member (issued by the federation CA, valid at now_s, not
 *     revoked, a federation identity of the CA's federation) and role coordinator:
 *     "not signed by a coordinator of federation X";
 *   - the signature: Ed25519 over the manifest text under the certificate's key;
 *   - the manifest's federation is the CA's: "another federation's release ('f2')".
 * fv_release_check_model checks a file's bytes against a verified manifest (length, then
 * SHA-256): "truncated", "hash mismatch".
 *
 * The model directory (fv_release_dir_*): "<sha>.fvm" and "<sha>.release.json" per
 * released model (the latest envelope for that file), written atomically (a temporary
 * file in the directory, fsync, rename, fsync of the directory): model file first, then
 * the envelope, so a reader that sees an envelope sees its whole file. A reader
 * (fedvault-serve) scans the directory, verifies each envelope and each file, and takes
 * per label the verified release with the highest "release" counter.
 *
 * Threading: no global state; an fv_trust_t belongs to one thread (fv_trust.h). No
 * logging: every refusal is an error code with a sentence in fv_diag_t.
 */
#ifndef FV_RELEASE_H
#define FV_RELEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"
#include "fv_trust.h"

#define FV_RELEASE_MAX_BYTES ((size_t)65536)     /* envelope, all included */
#define FV_RELEASE_MODEL_MAX ((uint64_t)1 << 30) /* a released model file, bytes */

typedef enum fv_release_label {
    FV_RELEASE_STABLE = 0,
    FV_RELEASE_CANARY = 1,
    FV_RELEASE_BACKUP = 2,
    FV_RELEASE_N_LABELS = 3
} fv_release_label_t;

/* "stable", "canary", "backup"; "?" otherwise. */
const char *fv_release_label_name(fv_release_label_t l);
/* FV_EINVAL for anything but the three names. */
int fv_release_label_parse(const char *s, fv_release_label_t *ret);

/* A manifest, decoded. Strings are NUL-terminated copies; lineage_json and report_json
 * are compact JSON text ("null" when absent), owned by the struct. */
typedef struct fv_release {
    char federation[FV_NAME_MAX + 1];
    uint64_t release; /* >= 1 */
    fv_release_label_t label;
    int64_t version; /* >= 1 */
    char model_sha256[65];
    uint64_t model_bytes; /* 1..FV_RELEASE_MODEL_MAX */
    char job[65];         /* 64 hex, or "" */
    char kind[16];        /* [a-z]{1,15} */
    char released[40];
    char by[FV_NAME_MAX + 1];
    char *lineage_json;
    char *report_json;
    fv_identity_t signer; /* filled by fv_release_verify: the certificate's identity */
} fv_release_t;

/* The coordinator's side: the manifest text of r (r->signer ignored) signed with the
 * Ed25519 secret key sk (64 bytes, libsodium layout) whose certificate is cert_pem, as an
 * envelope (*ret, NUL-terminated, the caller's: free()). FV_EINVAL for a field out of
 * range (named), FV_ETOOBIG over FV_RELEASE_MAX_BYTES. */
int fv_release_sign(const fv_release_t *r, const uint8_t sk[64], const char *cert_pem, char **ret,
                    size_t *ret_len, fv_diag_t *d);

/* Verifies an envelope (len bytes, borrowed; name for messages, e.g. its path or "the
 * coordinator's RELEASE") at now_s (unix seconds) as above. 0 with *ret (the caller's,
 * fv_release_free); FV_EAUTH (certificate, role, signature, federation), FV_EPROTO
 * (shape), FV_ETOOBIG otherwise, with a sentence. */
int fv_release_verify(fv_trust_t *trust, const char *name, const char *envelope, size_t len,
                      int64_t now_s, fv_release_t **ret, fv_diag_t *d);
void fv_release_free(fv_release_t *r); /* NULL-safe */

/* The model file's bytes against the verified manifest: FV_EAUTH "NAME: truncated (N of M
 * bytes)" / "NAME: hash mismatch (sha256 X, the release says Y)". */
int fv_release_check_model(const fv_release_t *r, const char *name, const uint8_t *buf, size_t len,
                           fv_diag_t *d);

/* ---- the model directory ---- */

/* Installs a verified release: writes "<sha>.fvm" (buf, len: checked again with
 * fv_release_check_model first) unless an identical file is there, then
 * "<sha>.release.json" (the envelope), each atomically as above. The directory must
 * exist. Errors name the path. */
int fv_release_dir_install(const char *dir, const fv_release_t *r, const char *envelope,
                           size_t envelope_len, const uint8_t *buf, size_t len, fv_diag_t *d);

/* One entry of a directory scan. */
typedef struct fv_release_entry {
    fv_release_t *rel;   /* verified manifest (NULL if refused) */
    char path[4096];     /* the model file's path ("<dir>/<sha>.fvm") */
    char envelope[4096]; /* the envelope's path */
    int status;          /* 0, or the refusal's code */
    char why[512];       /* the refusal's sentence ("" when accepted) */
} fv_release_entry_t;

/* Scans dir: every "*.release.json" is verified (fv_release_verify) and its model file
 * read and checked (fv_release_check_model, at most FV_RELEASE_MODEL_MAX bytes). *ret is
 * an array of *ret_n entries, accepted and refused alike (the caller logs and counts the
 * refused), sorted by label then release counter (highest first); free with
 * fv_release_entries_free. At most 4096 envelopes (FV_ETOOBIG beyond). When ret_models is
 * not NULL, (*ret_models)[i] gets the accepted entry's file bytes (malloc'd, NULL for a
 * refused one), so the caller decodes exactly the bytes that were checked. */
int fv_release_dir_scan(const char *dir, fv_trust_t *trust, int64_t now_s, fv_release_entry_t **ret,
                        size_t *ret_n, uint8_t ***ret_models, size_t **ret_model_lens,
                        fv_diag_t *d);
void fv_release_entries_free(fv_release_entry_t *e, size_t n, uint8_t **models, size_t *model_lens);

#endif
