/* agent_release.c - signed model releases on the bank's side: RELEASE checked against the
 * federation CA and against the bank's own receipts, the file fetched and installed in
 * the local model directory (protocols/fv_release.h), --fetch-releases.
 *
 * Protocol (protocols/fv_wire.h, "RELEASES"), as this side plays it (only with
 * --model-dir; without it RELEASE and RELEASE_SYNC are noted and ignored):
 *   RELEASE {envelope}   fv_release_verify with the agent's trust store (the kit's CA and
 *                        the newest CRL held, agent_cohort.c), then the agent's own rule:
 *                        the manifest's model SHA-256 must be one this bank's kept
 *                        receipts record (a round's "model_out", or a job receipt's
 *                        "final" / "student") - receipts are kept only for jobs it
 *                        accepted (agent_audit.c) - or one its operator pinned (--pin).
 *                        A coordinator's signature alone is not enough: the coordinator
 *                        may lie. Refused: a log line naming why, a counter, an audit
 *                        record release.refused {sha256, label, release, why}; nothing is
 *                        written to the model directory.
 *                        Accepted: if the directory already holds this envelope, nothing
 *                        to do; if it holds the file (another label's release of it), the
 *                        new envelope is installed over it; else FETCH {sha256}.
 *   FILE_CHUNK           the fetched file, in order from offset 0, its total equal to
 *                        the manifest's model_bytes (<= FV_RELEASE_MODEL_MAX); the buffer
 *                        is allocated once, at the first chunk, from the manifest's size.
 *                        When whole: fv_release_dir_install (hash checked there, atomic
 *                        writes), audit release.installed {sha256, label, release,
 *                        version, bytes, path}. A wrong hash is refused as above.
 *   FETCH_FAIL {reason}  the coordinator could not send it: refused as above (why names
 *                        the coordinator's reason).
 *   RELEASE_SYNC {n, crl} n current releases follow; the CRL is offered to the trust
 *                        store (kept only if the CA signed it and it is newer; then also
 *                        written to <model-dir>/crl.pem for fedvault-serve); with
 *                        --fetch-releases the agent stops (exit 0) once those n releases
 *                        are each installed or refused.
 * One fetch at a time; releases accepted meanwhile wait in a queue of PENDING_MAX (more
 * are refused: "too many releases pending").
 *
 * The set of shas. Built at start from the agent's own audit log (fv_audit_scan):
 * round.receipt records (kept only after the coordinator's signature verified, for jobs
 * this agent accepted) give model_out of each round and final / student of a job
 * receipt; msg.sent records of type job_accept give the jobs this agent accepted in
 * earlier runs (so a job receipt arriving after a restart is not taken for a foreign
 * job's, agent_audit.c). Extended as receipts are kept (fv__agent_release_receipt). At
 * most SHAS_MAX shas and JOBS_MAX jobs: over a cap new ones are not added (logged
 * release_set_full), so such a model's release is refused, never wrongly accepted.
 *
 * Threading: the loop thread only. Ownership: the agent's arel_t (a->rel) owns its sets,
 * the pending envelopes and manifests and the receive buffer; freed by
 * fv__agent_release_close.
 */
#include "agent-int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "fv_audit.h"
#include "fv_file.h"
#include "fv_release.h"

#define SHAS_MAX 65536 /* shas known from receipts (2 MiB) */
#define JOBS_MAX 65536 /* jobs accepted in earlier runs */
#define PENDING_MAX 16

typedef struct pend {
    fv_release_t *rel;
    char *env;
    size_t env_len;
} pend_t;

struct arel {
    uint8_t (*shas)[32];
    size_t n_shas, cap_shas;
    uint8_t (*jobs)[32];
    size_t n_jobs, cap_jobs;
    pend_t pend[PENDING_MAX];
    size_t n_pend;
    /* the fetch in flight (pend[0] when fetching) */
    bool fetching;
    uint8_t *buf;
    uint64_t have;
    /* this session's sync: RELEASE_SYNC {n} came, and how many RELEASEs since */
    bool synced;
    uint64_t expect, got;
    uint64_t installed, refused, seen;
};

/* ---- sets ------------------------------------------------------------------------- */

static bool set_has(uint8_t (*set)[32], size_t n, const uint8_t k[32])
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(set[i], k, 32) == 0)
            return true;
    return false;
}

static void set_add(uint8_t (**set)[32], size_t *n, size_t *cap, size_t max, const uint8_t k[32])
{
    if (set_has(*set, *n, k))
        return;
    if (*n >= max) {
        fv__agent_log("warn", "release_set_full", NULL, NULL, -1,
                      json_pack("{s:I}", "max", (json_int_t)max));
        return;
    }
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        void *p = realloc(*set, nc * 32);
        if (p == NULL)
            return;
        *set = p;
        *cap = nc;
    }
    memcpy((*set)[(*n)++], k, 32);
}

static bool hex32(const char *s, uint8_t out[32])
{
    size_t bin_len = 0;
    return s != NULL && strlen(s) == 64 &&
           sodium_hex2bin(out, 32, s, 64, NULL, &bin_len, NULL) == 0 && bin_len == 32;
}

static void add_sha_str(arel_t *r, const char *s)
{
    uint8_t k[32];
    if (hex32(s, k))
        set_add(&r->shas, &r->n_shas, &r->cap_shas, SHAS_MAX, k);
}

/* A kept receipt's body: model_out of a round, final / student of a job receipt. */
static void add_receipt(arel_t *r, const char *body, size_t len)
{
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_object(o)) {
        add_sha_str(r, json_string_value(json_object_get(o, "model_out")));
        if (json_is_string(json_object_get(o, "kind")) &&
            strcmp(json_string_value(json_object_get(o, "kind")), "job") == 0) {
            add_sha_str(r, json_string_value(json_object_get(o, "final")));
            add_sha_str(r, json_string_value(json_object_get(o, "student")));
        }
    }
    json_decref(o);
}

static int scan_cb(const fv_audit_record_t *rec, void *ctx)
{
    arel_t *r = ctx;
    if (strcmp(rec->event, "round.receipt") == 0) {
        const char *body = json_string_value(json_object_get(rec->details, "receipt"));
        if (body != NULL)
            add_receipt(r, body, strlen(body));
    } else if (strcmp(rec->event, "msg.sent") == 0) {
        const char *type = json_string_value(json_object_get(rec->details, "type"));
        uint8_t k[32];
        if (type != NULL && strcmp(type, "job_accept") == 0 &&
            hex32(json_string_value(json_object_get(rec->details, "job")), k))
            set_add(&r->jobs, &r->n_jobs, &r->cap_jobs, JOBS_MAX, k);
    }
    return 0;
}

int fv__agent_release_init(agent_t *a, fv_diag_t *d)
{
    arel_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    a->rel = r;
    if (a->cfg->model_dir != NULL) {
        struct stat sb;
        if (stat(a->cfg->model_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return fv_diag_set(d, FV_EINVAL, "--model-dir %s: not a directory", a->cfg->model_dir);
    }
    int rc = fv_audit_scan(a->cfg->audit_log, NULL, scan_cb, r, NULL, d);
    return rc == -ENOENT ? 0 : rc; /* (the sizes are in the release_sync line) */
}

static void pend_free(pend_t *p)
{
    fv_release_free(p->rel);
    free(p->env);
    memset(p, 0, sizeof *p);
}

void fv__agent_release_close(agent_t *a)
{
    arel_t *r = a->rel;
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_pend; i++)
        pend_free(&r->pend[i]);
    free(r->buf);
    free(r->shas);
    free(r->jobs);
    free(r);
    a->rel = NULL;
}

void fv__agent_release_receipt(agent_t *a, const char *body, size_t len)
{
    if (a->rel != NULL)
        add_receipt(a->rel, body, len);
}

bool fv__agent_release_job_accepted(const agent_t *a, const uint8_t job[32])
{
    return a->rel != NULL && set_has(a->rel->jobs, a->rel->n_jobs, job);
}

/* ---- the rule, refusals, installs --------------------------------------------------- */

static bool pinned(const agent_t *a, const char *sha)
{
    for (size_t i = 0; i < a->cfg->n_pins; i++)
        if (strcmp(a->cfg->pins[i], sha) == 0)
            return true;
    return false;
}

/* Stops a --fetch-releases agent once the sync is complete. */
static void maybe_done(agent_t *a)
{
    arel_t *r = a->rel;
    if (!a->cfg->fetch_releases || !r->synced || r->got < r->expect || r->n_pend > 0 || a->stopping)
        return;
    fv__agent_log("info", "releases_synced", NULL, NULL, -1,
                  json_pack("{s:I,s:I,s:I}", "releases", (json_int_t)r->seen, "installed",
                            (json_int_t)r->installed, "refused", (json_int_t)r->refused));
    fv__agent_stop(a, 0);
}

/* A release record appended; a failed append stops the agent as everywhere (the
 * connection closes, on_close stops it with exit 1). */
static void audit(agent_t *a, const char *event, json_t *details)
{
    int r = fv__agent_audit_append(a, event, details);
    if (r != 0 && a->conn != NULL)
        fv_conn_close(a->conn, r, "the agent's audit log cannot be written");
}

static void refuse(agent_t *a, const char *sha, const char *label, uint64_t release,
                   const char *why)
{
    a->rel->refused++;
    fv__agent_log("warn", "release_refused", NULL, NULL, -1,
                  json_pack("{s:s,s:s,s:I,s:s}", "sha256", sha, "label", label, "release",
                            (json_int_t)release, "why", why));
    audit(a, "release.refused",
          json_pack("{s:s,s:s,s:I,s:s}", "sha256", sha, "label", label, "release",
                    (json_int_t)release, "why", why));
}

static void install(agent_t *a, pend_t *p, const uint8_t *buf, size_t len)
{
    fv_diag_t d = {""};
    const fv_release_t *rel = p->rel;
    const char *label = fv_release_label_name(rel->label);
    int r = fv_release_dir_install(a->cfg->model_dir, rel, p->env, p->env_len, buf, len, &d);
    if (r != 0) {
        refuse(a, rel->model_sha256, label, rel->release, d.msg);
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.fvm", a->cfg->model_dir, rel->model_sha256);
    a->rel->installed++;
    fv__agent_log("info", "release_installed", NULL, NULL, -1,
                  json_pack("{s:s,s:s,s:I,s:I,s:I,s:s}", "sha256", rel->model_sha256, "label",
                            label, "release", (json_int_t)rel->release, "version",
                            (json_int_t)rel->version, "bytes", (json_int_t)rel->model_bytes, "path",
                            path));
    audit(a, "release.installed",
          json_pack("{s:s,s:s,s:I,s:I,s:I,s:s}", "sha256", rel->model_sha256, "label", label,
                    "release", (json_int_t)rel->release, "version", (json_int_t)rel->version,
                    "bytes", (json_int_t)rel->model_bytes, "path", path));
}

/* Reads path whole when it is exactly want bytes; NULL otherwise. */
static uint8_t *read_exact(const char *path, uint64_t want)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct stat sb;
    uint8_t *buf = NULL;
    if (fstat(fileno(f), &sb) == 0 && (uint64_t)sb.st_size == want &&
        (buf = malloc((size_t)want)) != NULL && fread(buf, 1, (size_t)want, f) != want) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* Whether the directory holds exactly this envelope already. */
static bool env_installed(const agent_t *a, const pend_t *p)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.release.json", a->cfg->model_dir, p->rel->model_sha256);
    uint8_t *have = read_exact(path, p->env_len);
    bool same = have != NULL && memcmp(have, p->env, p->env_len) == 0;
    free(have);
    return same;
}

/* Works through the queue: installs what needs no fetch, starts the next fetch. */
static void pump(agent_t *a)
{
    arel_t *r = a->rel;
    while (r->n_pend > 0 && !r->fetching) {
        pend_t *p = &r->pend[0];
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.fvm", a->cfg->model_dir, p->rel->model_sha256);
        uint8_t *have = NULL;
        if (env_installed(a, p)) {
            fv__agent_log("info", "release_present", NULL, NULL, -1,
                          json_pack("{s:s,s:s,s:I}", "sha256", p->rel->model_sha256, "label",
                                    fv_release_label_name(p->rel->label), "release",
                                    (json_int_t)p->rel->release));
        } else if ((have = read_exact(path, p->rel->model_bytes)) != NULL) {
            install(a, p, have, (size_t)p->rel->model_bytes); /* checked again there */
            free(have);
        } else if (a->conn != NULL) {
            fv_msg_t m;
            memset(&m, 0, sizeof m);
            m.type = FV_MSG_FETCH;
            if (sodium_hex2bin(m.u.fetch.sha256, 32, p->rel->model_sha256, 64, NULL, NULL, NULL) ==
                    0 &&
                fv__agent_send_msg(a, &m) == 0) {
                r->fetching = true;
                r->have = 0;
                return;
            }
            refuse(a, p->rel->model_sha256, fv_release_label_name(p->rel->label), p->rel->release,
                   "the FETCH could not be sent");
        } else {
            return; /* disconnected: the next session's RELEASEs come again */
        }
        pend_free(p);
        memmove(&r->pend[0], &r->pend[1], (r->n_pend - 1) * sizeof r->pend[0]);
        r->n_pend--;
    }
    maybe_done(a);
}

static void pend_pop(arel_t *r)
{
    pend_free(&r->pend[0]);
    memmove(&r->pend[0], &r->pend[1], (r->n_pend - 1) * sizeof r->pend[0]);
    r->n_pend--;
    free(r->buf);
    r->buf = NULL;
    r->fetching = false;
    r->have = 0;
}

/* ---- messages ------------------------------------------------------------------------ */

void fv__agent_on_release(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    arel_t *r = a->rel;
    r->seen++;
    r->got++;
    if (a->cfg->model_dir == NULL) {
        fv__agent_log("info", "release_ignored", NULL, NULL, -1,
                      json_pack("{s:s}", "why", "no --model-dir"));
        return;
    }
    fv_diag_t d = {""};
    fv_release_t *rel = NULL;
    int rc = fv_release_verify(a->trust, "the coordinator's RELEASE", m->u.release.body.ptr,
                               m->u.release.body.len, (int64_t)time(NULL), &rel, &d);
    if (rc != 0) {
        refuse(a, "", "?", 0, d.msg);
        maybe_done(a);
        return;
    }
    const char *label = fv_release_label_name(rel->label);
    uint8_t k[32];
    char why[256] = "";
    if (!hex32(rel->model_sha256, k))
        snprintf(why, sizeof why, "the manifest's model_sha256 is not 64 hex digits");
    else if (!set_has(r->shas, r->n_shas, k) && !pinned(a, rel->model_sha256))
        snprintf(why, sizeof why,
                 "model %.16s is in none of this bank's receipts (no job it took part in "
                 "produced it) and is not pinned",
                 rel->model_sha256);
    else if (r->n_pend >= PENDING_MAX)
        snprintf(why, sizeof why, "too many releases pending (%d)", PENDING_MAX);
    if (why[0] != '\0') {
        refuse(a, rel->model_sha256, label, rel->release, why);
        fv_release_free(rel);
        maybe_done(a);
        return;
    }
    char *env = malloc(m->u.release.body.len + 1);
    if (env == NULL) {
        refuse(a, rel->model_sha256, label, rel->release, "out of memory");
        fv_release_free(rel);
        return;
    }
    memcpy(env, m->u.release.body.ptr, m->u.release.body.len);
    env[m->u.release.body.len] = '\0';
    fv__agent_log("info", "release_accepted", NULL, NULL, -1,
                  json_pack("{s:s,s:s,s:I,s:I,s:s}", "sha256", rel->model_sha256, "label", label,
                            "release", (json_int_t)rel->release, "version",
                            (json_int_t)rel->version, "by",
                            pinned(a, rel->model_sha256) ? "pin" : "receipt"));
    r->pend[r->n_pend++] = (pend_t){rel, env, m->u.release.body.len};
    (void)c;
    pump(a);
}

/* The CRL the CA signed, newer than the one held, handed to fedvault-serve as
 * "<model-dir>/crl.pem" (written atomically): the agent is the bank's only connection out,
 * and the server verifies releases against the CA and this CRL (its default --crl). PEM is
 * the DER in base64 lines of 64 between the standard markers (RFC 7468). Any process that
 * can write the directory could put an older CRL there; the server takes it only if the CA
 * signed it, and the directory is the bank's own. A failure is logged, not fatal: the
 * server keeps the CRL it has. */
static void write_crl(agent_t *a, const uint8_t *der, size_t len)
{
    size_t b64 = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    size_t cap = 64 + b64 + b64 / 64 + 64;
    char *pem = malloc(cap), *line = malloc(b64);
    char path[4096] = "";
    fv_diag_t d = {"out of memory"};
    int r = FV_ENOMEM;
    if (pem != NULL && line != NULL &&
        snprintf(path, sizeof path, "%s/crl.pem", a->cfg->model_dir) < (int)sizeof path) {
        sodium_bin2base64(line, b64, der, len, sodium_base64_VARIANT_ORIGINAL);
        size_t n = strlen(line), o = 0;
        o += (size_t)snprintf(pem + o, cap - o, "-----BEGIN X509 CRL-----\n");
        for (size_t i = 0; i < n; i += 64)
            o += (size_t)snprintf(pem + o, cap - o, "%.*s\n", (int)(n - i < 64 ? n - i : 64),
                                  line + i);
        o += (size_t)snprintf(pem + o, cap - o, "-----END X509 CRL-----\n");
        r = fv_file_write_atomic(path, pem, o, 0644, &d);
    }
    fv__agent_log(r == 0 ? "info" : "warn", r == 0 ? "crl_written" : "crl_write_failed", NULL, NULL,
                  -1,
                  json_pack("{s:s,s:I,s:s?}", "path", path, "bytes", (json_int_t)len, "err",
                            r == 0 ? NULL : d.msg));
    free(pem);
    free(line);
}

void fv__agent_on_release_sync(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    (void)c;
    arel_t *r = a->rel;
    r->synced = true;
    r->expect = m->u.release_sync.n;
    r->got = 0;
    /* the federation CRL, as a JOB_OFFER's: kept only if the CA signed it and it is newer */
    bool newer = false;
    fv_diag_t d = {""};
    int rc = m->u.release_sync.crl_len == 0
                 ? 0
                 : fv_trust_offer_crl(a->trust, m->u.release_sync.crl, m->u.release_sync.crl_len,
                                      &newer, &d);
    if (rc == 0 && newer && a->cfg->model_dir != NULL)
        write_crl(a, m->u.release_sync.crl, m->u.release_sync.crl_len);
    fv__agent_log(rc == 0 ? "info" : "warn", "release_sync", NULL, NULL, -1,
                  json_pack("{s:I,s:b,s:s,s:s?,s:I,s:I}", "releases",
                            (json_int_t)m->u.release_sync.n, "crl_taken", newer, "crl_refused",
                            rc == 0 ? "" : d.msg, "model_dir", a->cfg->model_dir, "receipt_shas",
                            (json_int_t)r->n_shas, "pins", (json_int_t)a->cfg->n_pins));
    maybe_done(a);
}

void fv__agent_on_file_chunk(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    arel_t *r = a->rel;
    const __typeof__(m->u.file_chunk) *fc = &m->u.file_chunk;
    char hex[65];
    fv__agent_hex32(fc->sha256, hex);
    if (!r->fetching || strcmp(hex, r->pend[0].rel->model_sha256) != 0) {
        fv__agent_violation(a, c, NULL, -1, FV_EPROTO, "FILE_CHUNK of %.16s, which was not fetched",
                            hex);
        return;
    }
    const fv_release_t *rel = r->pend[0].rel;
    if (fc->total != rel->model_bytes || fc->offset != r->have) {
        fv__agent_violation(a, c, NULL, -1, FV_EPROTO,
                            "FILE_CHUNK of %.16s: offset %" PRIu64 " of %" PRIu64
                            " bytes, expected offset %" PRIu64 " of %" PRIu64,
                            hex, fc->offset, fc->total, r->have, rel->model_bytes);
        return;
    }
    if (r->buf == NULL && (r->buf = malloc((size_t)rel->model_bytes)) == NULL) {
        refuse(a, hex, fv_release_label_name(rel->label), rel->release, "out of memory");
        pend_pop(r);
        pump(a);
        return;
    }
    memcpy(r->buf + r->have, fc->data, fc->len); /* the wire checked offset + len <= total */
    r->have += fc->len;
    if (r->have < rel->model_bytes)
        return;
    install(a, &r->pend[0], r->buf, (size_t)r->have);
    pend_pop(r);
    pump(a);
}

void fv__agent_on_fetch_fail(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    arel_t *r = a->rel;
    char hex[65], reason[FV_WIRE_TEXT_MAX + 1], why[FV_WIRE_TEXT_MAX + 64];
    fv__agent_hex32(m->u.fetch_fail.sha256, hex);
    if (!r->fetching || strcmp(hex, r->pend[0].rel->model_sha256) != 0) {
        fv__agent_violation(a, c, NULL, -1, FV_EPROTO, "FETCH_FAIL of %.16s, which was not fetched",
                            hex);
        return;
    }
    fv__agent_text_clean(m->u.fetch_fail.reason.ptr, m->u.fetch_fail.reason.len, reason,
                         sizeof reason);
    snprintf(why, sizeof why, "the coordinator could not send it: %s", reason);
    refuse(a, hex, fv_release_label_name(r->pend[0].rel->label), r->pend[0].rel->release, why);
    pend_pop(r);
    pump(a);
}

void fv__agent_release_session_end(agent_t *a)
{
    arel_t *r = a->rel;
    if (r == NULL)
        return;
    /* a transfer cannot survive its connection: the next session repeats the releases */
    while (r->n_pend > 0)
        pend_pop(r);
    r->synced = false;
    r->expect = r->got = 0;
}
