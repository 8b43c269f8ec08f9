/* agent_schema.c - the agent's side of federated schema discovery: SCHEMA_QUERY in,
 * SCHEMA_VOCAB out, and the refusal of a JOB_OFFER whose schema is still open.
 *
 * Protocol (protocols/fv_wire.h, "SCHEMA"), as this side plays it:
 *   SCHEMA_QUERY {job, spec}  parse the spec (fv_job_from_json), check its digest is `job`
 *                             and that its schema is open; then the policy: the agent's
 *                             opt-in policy.schema_discovery.allow (default false), the
 *                             job rules that apply before any data is read (accept_jobs,
 *                             require_secure_aggregation). Allowed: fv_schema_vocab on the
 *                             data file (on the thread pool: a pass over the whole file),
 *                             values held by fewer than policy.schema_discovery.min_count
 *                             rows (default 10) suppressed; the disclosure recorded in the
 *                             audit log (schema_disclosed), then SCHEMA_VOCAB {status 0,
 *                             body: the vocabulary}. Otherwise SCHEMA_VOCAB {status < 0,
 *                             category}: "policy" (not allowed), "schema" (nothing open),
 *                             "protocol" (a spec that does not parse or hash to `job`),
 *                             "data" (the data file cannot give a vocabulary).
 *   JOB_OFFER of a job whose schema is open: refused (agent_job.c asks
 *                             fv__agent_schema_offer_open); the coordinator must resolve
 *                             the schema first, so no agent trains on an open one.
 *
 * What leaves: the category values of the open columns held by at least min_count of this
 * bank's rows, the type it sees per open column, and per column the number of values
 * suppressed; no row count per value. The audit record (schema_disclosed {job, columns,
 * values_disclosed, suppressed, min_count, vocab_sha256}) holds counts and the SHA-256 of
 * the exact body sent, never the values: the log is evidence of what left, and the body it
 * hashes is what the coordinator received (msg.sent records the frame too).
 *
 * Threads: the loop thread, except vocab_run (uv_queue_work), which touches only its own
 * work item (a copy of the data path and the parsed job it owns). Ownership: the work item
 * owns the job and the vocabulary text until vocab_done frees them. An answer is sent only
 * on the connection that asked (conn_gen); after a reconnect the coordinator asks again.
 */
#include "agent-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "fv_job.h"
#include "fv_schema.h"
#include "fv_wire.h"

typedef struct svwork {
    uv_work_t req;
    agent_t *a;
    fv_job_t *job; /* owned */
    uint8_t digest[32];
    char hex[65];
    uint64_t conn_gen; /* the connection that asked */
    uint32_t min_count;
    char *vocab; /* malloc'd by fv_schema_vocab */
    size_t vocab_len;
    int rc;
    fv_diag_t d;
} svwork_t;

/* SCHEMA_VOCAB with a refusal: no vocabulary, one category word. */
static void answer_refusal(agent_t *a, const uint8_t job[32], int code, const char *category)
{
    fv_msg_t m = {.type = FV_MSG_SCHEMA_VOCAB};
    memcpy(m.u.schema_vocab.job, job, 32);
    m.u.schema_vocab.status = code < 0 ? code : FV_EPOLICY;
    m.u.schema_vocab.category.ptr = category;
    m.u.schema_vocab.category.len = strlen(category);
    fv__agent_send_msg(a, &m);
}

static void refuse_query(agent_t *a, const uint8_t job[32], const char *hex, const char *name,
                         int code, const char *category, const char *why)
{
    char clean[FV_DIAG_MAX + 128];
    fv__agent_text_clean(why, strlen(why), clean, sizeof clean);
    fv__agent_log("warn", "schema_refused", hex, name, -1,
                  json_pack("{s:s,s:s}", "category", category, "why", clean));
    answer_refusal(a, job, code, category);
}

static bool policy_names_job(const agent_t *a, const char *name)
{
    if (a->cfg->n_accept_jobs == 0)
        return true;
    for (size_t i = 0; i < a->cfg->n_accept_jobs; i++)
        if (strcmp(a->cfg->accept_jobs[i], name) == 0)
            return true;
    return false;
}

/* The counts the audit record holds: per open column its name and suppressed count, and
 * the number of values disclosed over all columns. 0, or FV_EPARSE for a vocabulary not
 * in fv_schema_vocab's shape (our own library's output: a bug, refused all the same). */
static int vocab_counts(const char *text, size_t len, json_t **ret_columns, json_t **ret_supp,
                        uint64_t *ret_values)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    json_t *cols = root != NULL ? json_object_get(root, "columns") : NULL;
    if (!json_is_array(cols)) {
        json_decref(root);
        return FV_EPARSE;
    }
    json_t *names = json_array(), *supp = json_object();
    uint64_t values = 0;
    size_t i;
    json_t *col;
    json_array_foreach(cols, i, col)
    {
        json_t *n = json_object_get(col, "name"), *cats = json_object_get(col, "categories"),
               *s = json_object_get(col, "suppressed");
        if (!json_is_string(n)) {
            json_decref(root), json_decref(names), json_decref(supp);
            return FV_EPARSE;
        }
        json_array_append(names, n);
        values += json_is_array(cats) ? json_array_size(cats) : 0;
        json_object_set_new(supp, json_string_value(n),
                            json_integer(json_is_integer(s) ? json_integer_value(s) : 0));
    }
    json_decref(root);
    *ret_columns = names;
    *ret_supp = supp;
    *ret_values = values;
    return 0;
}

static void vocab_run(uv_work_t *req)
{
    svwork_t *w = req->data;
    w->rc = fv_schema_vocab(w->job->schema, w->a->cfg->data, w->min_count, &w->vocab, &w->vocab_len,
                            &w->d);
}

static void vocab_done(uv_work_t *req, int status)
{
    svwork_t *w = req->data;
    agent_t *a = w->a;
    if (a->stopping || a->conn == NULL || a->conn_gen != w->conn_gen) {
        fv__agent_log("info", "schema_dropped", w->hex, w->job->name, -1,
                      json_pack("{s:s}", "why", "the connection that asked is gone"));
        goto out;
    }
    if (status != 0 || w->rc != 0) {
        /* the sentence may quote a cell of the data file: it stays in our log */
        refuse_query(a, w->digest, w->hex, w->job->name, w->rc < 0 ? w->rc : FV_EIO, "data",
                     status != 0   ? "the vocabulary's computation was cancelled"
                     : w->d.msg[0] ? w->d.msg
                                   : fv_strerror(w->rc));
        goto out;
    }
    if (w->vocab_len > FV_WIRE_VOCAB_MAX) {
        char why[160];
        snprintf(why, sizeof why, "the vocabulary is %zu bytes, above the %u a message carries",
                 w->vocab_len, FV_WIRE_VOCAB_MAX);
        refuse_query(a, w->digest, w->hex, w->job->name, FV_ETOOBIG, "data", why);
        goto out;
    }
    json_t *cols = NULL, *supp = NULL;
    uint64_t values = 0;
    if (vocab_counts(w->vocab, w->vocab_len, &cols, &supp, &values) != 0) {
        refuse_query(a, w->digest, w->hex, w->job->name, FV_EPARSE, "data",
                     "the vocabulary is not in fv_schema_vocab's shape");
        goto out;
    }
    uint8_t h[32];
    char hh[65];
    crypto_hash_sha256(h, (const uint8_t *)w->vocab, w->vocab_len);
    fv__agent_hex32(h, hh);
    /* The disclosure is on disk before the frame is queued (a bank's rule: nothing leaves
     * unrecorded); a failed append stops the agent and nothing is sent. */
    if (fv__agent_audit_append(a, "schema_disclosed",
                               json_pack("{s:s,s:O,s:I,s:O,s:I,s:s}", "job", w->hex, "columns",
                                         cols, "values_disclosed", (json_int_t)values, "suppressed",
                                         supp, "min_count", (json_int_t)w->min_count,
                                         "vocab_sha256", hh)) != 0) {
        json_decref(cols), json_decref(supp);
        fv__agent_stop(a, 1);
        goto out;
    }
    fv__agent_log("info", "schema_disclosed", w->hex, w->job->name, -1,
                  json_pack("{s:o,s:I,s:o,s:I,s:s}", "columns", cols, "values_disclosed",
                            (json_int_t)values, "suppressed", supp, "min_count",
                            (json_int_t)w->min_count, "vocab_sha256", hh));
    fv_msg_t m = {.type = FV_MSG_SCHEMA_VOCAB};
    memcpy(m.u.schema_vocab.job, w->digest, 32);
    m.u.schema_vocab.status = 0;
    m.u.schema_vocab.category.ptr = "";
    m.u.schema_vocab.body.ptr = w->vocab;
    m.u.schema_vocab.body.len = w->vocab_len;
    fv__agent_send_msg(a, &m);
out:
    fv_job_free(w->job);
    free(w->vocab);
    free(w);
}

void fv__agent_on_schema_query(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    (void)c;
    const uint8_t *job_id = m->u.schema_query.job;
    char hex[65];
    fv__agent_hex32(job_id, hex);
    fv_diag_t d = {""};
    fv_job_t *job = NULL;
    int r = fv_job_from_json("schema query", (const char *)m->u.schema_query.spec,
                             m->u.schema_query.spec_len, &job, &d);
    if (r != 0) {
        refuse_query(a, job_id, hex, NULL, r, "protocol", d.msg[0] ? d.msg : fv_strerror(r));
        return;
    }
    uint8_t dig[32];
    if ((r = fv_job_digest(job, dig)) != 0 || memcmp(dig, job_id, 32) != 0) {
        refuse_query(a, job_id, hex, job->name, r != 0 ? r : FV_EPROTO, "protocol",
                     "the job id is not the SHA-256 of the spec's canonical JSON");
        goto out;
    }
    if (!fv_schema_is_open(job->schema)) {
        refuse_query(a, job_id, hex, job->name, FV_EINVAL, "schema",
                     "the job's schema has no open column: there is nothing to discover");
        goto out;
    }
    const char *rule = NULL;
    char why[FV_WIRE_TEXT_MAX * 2];
    if (!a->cfg->schema_allow) {
        rule = "schema_discovery";
        snprintf(why, sizeof why,
                 "schema_discovery.allow is false: this agent does not disclose its data's "
                 "category values");
    } else if (!policy_names_job(a, job->name)) {
        rule = "accept_jobs";
        snprintf(why, sizeof why, "job '%s' is not in this agent's accept_jobs policy", job->name);
    } else if (a->cfg->require_secagg && !job->secagg.on) {
        rule = "require_secure_aggregation";
        snprintf(why, sizeof why,
                 "require_secure_aggregation: job '%s' has \"secagg\": \"off\"; the job "
                 "would be refused, so its schema is not discovered either",
                 job->name);
    }
    if (rule != NULL) {
        if (fv__agent_audit_append(a, "policy.refused",
                                   json_pack("{s:s,s:s,s:s,s:s}", "job", hex, "scope", "schema",
                                             "rule", rule, "why", why)) != 0) {
            fv__agent_stop(a, 1); /* no record, no answer either: the agent stops */
            goto out;
        }
        refuse_query(a, job_id, hex, job->name, FV_EPOLICY, "policy", why);
        goto out;
    }
    svwork_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        refuse_query(a, job_id, hex, job->name, FV_ENOMEM, "resources", "out of memory");
        goto out;
    }
    w->a = a;
    w->job = job;
    memcpy(w->digest, job_id, 32);
    memcpy(w->hex, hex, sizeof hex);
    w->conn_gen = a->conn_gen;
    w->min_count = a->cfg->schema_min_count;
    w->req.data = w;
    fv__agent_log("info", "schema_query", hex, job->name, -1,
                  json_pack("{s:I}", "min_count", (json_int_t)w->min_count));
    if ((r = uv_queue_work(a->loop, &w->req, vocab_run, vocab_done)) != 0) {
        refuse_query(a, job_id, hex, job->name, r, "resources", "cannot queue the vocabulary");
        free(w);
        goto out;
    }
    return; /* the work owns the job now */
out:
    fv_job_free(job);
}

bool fv__agent_schema_offer_open(const fv_job_t *job)
{
    return job != NULL && job->schema != NULL && fv_schema_is_open(job->schema);
}
