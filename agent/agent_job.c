/* agent_job.c - the agent's job: JOB_OFFER, JOB_DONE, and a job's lifetime (one job at
 * a time, a->job: its data, splits, global model and preprocessing; it lives across
 * reconnects).
 *
 * Protocol (protocols/fv_wire.h, "ROUNDS"), as this side plays it:
 *   JOB_OFFER {job, spec, crl} parse the spec, check its digest is `job`, check the local
 *                             policy (accept_jobs; require_secure_aggregation: a job
 *                             with "secagg": "off" is refused, whatever else it says)
 *                             policy.privacy's required and allow_outside_budget, and
 *                             the CRL (agent_cohort.c); then, on the thread pool,
 *                             load the data file against the job's schema, fingerprint
 *                             it (SHA-256, streamed), split it (stratified; seed = job
 *                             seed ^ H(agent name)), plan the job's privacy for the
 *                             training rows; on the loop, a job with privacy is checked
 *                             against the budget and charged (agent_privacy.c); reply
 *                             JOB_ACCEPT {job, data, rows (0 unless
 *                             policy.disclose_rows), model}
 *                             or JOB_REFUSE {reason, category} on the connection that
 *                             offered it (agent_refuse.c says which category and what
 *                             the sentence may say).
 *                             The same job offered again (after a reconnect) reuses the
 *                             loaded data and answers with the hash of the model it holds.
 *                             Anything for the job before the accept is a violation.
 *   JOB_DONE                  logs; with --once the daemon stops and exits 0. Also the
 *                             job being loaded (a job's end may reach us while a re-offer
 *                             of it loads). The end of a job we do not hold is a repeat
 *                             (the coordinator says it on every connection): noted.
 * Every job this agent sent JOB_ACCEPT for is remembered (a->accepted, a ring of the
 * last FV_AGENT_ACCEPTED_JOBS_KEPT): a RECEIPT (agent_audit.c) must name one.
 *
 * Threads: the loop thread, except job_load_run (uv_queue_work), which fills a job
 * nobody else reads until it returns (the job is marked loading). A job that goes away
 * while its load or a work item reads it is detached (job->n_busy) and freed by the last
 * after-work callback (job_loaded here, work_done in agent_round.c).
 *
 * Ownership: the agent owns the job (a->job), the job owns its round. A refusal's reason
 * about the local data stays in our log; the coordinator gets a sentence without path or
 * cell (refuse).
 */
#include "agent-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "fv_dataset.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_schema.h"
#include "fv_secagg.h"
#include "fv_wire.h"

/* ---- job lifetime ------------------------------------------------------------------- */

void fv__agent_job_destroy(ajob_t *j)
{
    fv__agent_round_free(j->round);
    fv_dataset_free(j->ds);
    fv_job_free(j->job);
    free(j->tr), free(j->va);
    free(j->global);
    free(j->teacher), free(j->student);
    free(j->stats_sum);
    free(j->x_tr), free(j->x_va), free(j->y_tr), free(j->y_va);
    fv_preproc_free(j->pp);
    free(j);
}

/* Detaches the job from the agent; freed now or when its last work item returns. */
void fv__agent_job_release(agent_t *a, ajob_t *j)
{
    if (j == NULL)
        return;
    if (a->job == j)
        a->job = NULL;
    if (a->rx_job == j)
        a->rx_job = NULL; /* the buffer itself stays the agent's until on_vec/on_close */
    if (a->tx_job == j)
        a->tx_job = NULL;
    fv__agent_round_free(j->round);
    j->round = NULL;
    j->detached = true;
    if (j->n_busy == 0)
        fv__agent_job_destroy(j);
}

/* ---- JOB_OFFER ---------------------------------------------------------------------- */

/* reason goes to the local log; wire_reason (NULL: the same) to the coordinator, with
 * the category (agent_refuse.c). A sentence about the local data names a local path and
 * may quote a cell: it stays here, and the coordinator gets one without either (no byte
 * of a row leaves the bank). */
static void refuse(agent_t *a, const uint8_t job[32], const char *job_hex, const char *job_name,
                   fv_refuse_category_t cat, const char *reason, const char *wire_reason)
{
    char wire[FV_WIRE_TEXT_MAX + 1];
    if (wire_reason == NULL)
        wire_reason = reason;
    fv__agent_text_clean(wire_reason, strlen(wire_reason), wire, sizeof wire);
    char full[FV_DIAG_MAX + 128];
    fv__agent_text_clean(reason, strlen(reason), full, sizeof full);
    fv__agent_log("warn", "job_refused", job_hex, job_name, -1,
                  json_pack("{s:s,s:s,s:s}", "category", fv_refuse_category_name(cat), "reason",
                            full, "sent", wire));
    fv_msg_t m = {.type = FV_MSG_JOB_REFUSE};
    memcpy(m.u.job_refuse.job, job, 32);
    m.u.job_refuse.category = cat;
    m.u.job_refuse.reason.ptr = wire;
    m.u.job_refuse.reason.len = strlen(wire);
    fv__agent_send_msg(a, &m);
}

static void accept_job(agent_t *a, ajob_t *j)
{
    fv_msg_t m = {.type = FV_MSG_JOB_ACCEPT};
    memcpy(m.u.job_accept.job, j->digest, 32);
    memcpy(m.u.job_accept.data_sha256, j->data_sha, 32);
    /* The row count is a disclosure the policy must allow; 0 means withheld (an agent
     * with no rows never accepts: job_prepare refuses an empty training split). */
    m.u.job_accept.rows = a->cfg->disclose_rows ? j->ds->n_rows : 0;
    m.u.job_accept.has_model = j->has_global;
    if (j->has_global)
        memcpy(m.u.job_accept.model, j->global_hash, 32);
    char dh[65], mh[65];
    fv__agent_hex32(j->data_sha, dh);
    fv__agent_hex32(j->global_hash, mh);
    bool known = false;
    for (size_t i = 0; i < a->n_accepted && i < FV_AGENT_ACCEPTED_JOBS_KEPT; i++)
        known = known || memcmp(a->accepted[i].digest, j->digest, 32) == 0;
    if (!known) {
        size_t slot = a->n_accepted++ % FV_AGENT_ACCEPTED_JOBS_KEPT;
        memcpy(a->accepted[slot].digest, j->digest, 32);
        a->accepted[slot].rounds = fv_job_last_round(j->job);
    }
    json_t *x = json_pack("{s:s,s:I,s:I,s:I,s:I,s:s,s:b}", "data_sha256", dh, "rows",
                          (json_int_t)j->ds->n_rows, "train_rows", (json_int_t)j->n_tr, "val_rows",
                          (json_int_t)j->n_va, "params", (json_int_t)j->n_params, "model",
                          j->job->model, "secagg", j->job->secagg.on);
    if (x != NULL && j->has_global) /* a global model already held (a resumed job) */
        json_object_set_new(x, "global_sha256", json_string(mh));
    fv__agent_log_job("info", "job_accepted", j, -1, x);
    fv__agent_send_msg(a, &m);
}

static int job_prepare_do(agent_t *a, ajob_t *j, char *reason, size_t cap);

/* Loads and checks everything a job needs from the local side. On failure, *reason
 * holds the sentence for the local log, and j->load_wire / j->load_cat what JOB_REFUSE
 * says (agent_refuse.c). */
static int job_prepare(agent_t *a, ajob_t *j, char *reason, size_t cap)
{
    j->load_wire[0] = '\0';
    int r = job_prepare_do(a, j, reason, cap);
    if (r != 0 && j->load_wire[0] == '\0') /* the data: its sentence stays here */
        j->load_cat =
            fv__agent_load_refusal(j->job->schema, r, reason, j->load_wire, sizeof j->load_wire);
    else if (r == FV_EPOLICY) /* the job's privacy gives no plan for this agent */
        j->load_cat = FV_REFUSE_POLICY;
    else if (r != 0) /* the job's own model: the sentence names nothing of the bank's */
        j->load_cat = r == FV_ETOOBIG || r == FV_ENOMEM ? FV_REFUSE_RESOURCES : FV_REFUSE_VERSION;
    return r;
}

static int job_prepare_do(agent_t *a, ajob_t *j, char *reason, size_t cap)
{
    fv_diag_t d = {""};
    const fv_job_t *job = j->job;
    int r = fv_dataset_load(a->cfg->data, job->schema, &j->ds, &d);
    if (r != 0) {
        snprintf(reason, cap, "%s", d.msg[0] ? d.msg : fv_strerror(r));
        return r;
    }
    if ((r = fv_sha256_file(a->cfg->data, j->data_sha)) != 0) {
        snprintf(reason, cap, "%s: cannot read to fingerprint it: %s", a->cfg->data,
                 fv_strerror(r));
        return UV_EIO;
    }
    uint64_t split_seed = job->seed ^ a->name_hash;
    r = fv_dataset_split(j->ds, NULL, j->ds->n_rows, job->validation_fraction, split_seed, &j->tr,
                         &j->n_tr, &j->va, &j->n_va);
    if (r != 0) {
        snprintf(reason, cap, "%s: cannot split the rows: %s", a->cfg->data, fv_strerror(r));
        return r;
    }
    if (j->n_tr == 0) {
        snprintf(reason, cap, "%s: no training rows left after the validation split", a->cfg->data);
        return FV_EEMPTY;
    }
    if (j->n_tr > FV_FED_RAW_MAX || j->ds->n_rows > FV_FED_RAW_MAX) {
        snprintf(reason, cap,
                 "%s: %zu rows is more than the %u one agent may contribute to a round's "
                 "counts",
                 a->cfg->data, j->ds->n_rows, FV_FED_RAW_MAX);
        return FV_EOVERFLOW;
    }
    /* from here on the job's model, not the bank's data: the sentence may be sent */
#define JOB_FAIL(rc)                                                                               \
    do {                                                                                           \
        snprintf(j->load_wire, sizeof j->load_wire, "%s", reason);                                 \
        return (rc);                                                                               \
    } while (0)
    if ((r = fv_fed_stats_layout_init(job->schema, &j->sl)) != 0) {
        snprintf(reason, cap, "job '%s': cannot lay out the stats vector: %s", job->name,
                 fv_strerror(r));
        JOB_FAIL(r);
    }
    /* The feature count depends on the schema only: a placeholder preprocessing from
     * zero moments gives it, so the model size is known before the stats round. */
    size_t nc = fv_schema_n_columns(job->schema);
    double *zero = calloc(nc ? nc : 1, sizeof *zero);
    fv_preproc_t *pp = NULL;
    if (zero == NULL || (r = fv_preproc_from_moments(job->schema, zero, zero, zero, &pp)) != 0) {
        free(zero);
        snprintf(reason, cap, "job '%s': cannot build the preprocessing", job->name);
        JOB_FAIL(r != 0 ? r : FV_ENOMEM);
    }
    free(zero);
    j->n_feat = fv_preproc_n_features(pp);
    fv_preproc_free(pp);
    r = fv_mlp_parse_arch(job->model, j->n_feat, fv_schema_n_classes(job->schema), &j->arch, &d);
    if (r != 0) {
        snprintf(reason, cap, "job '%s': model: %s", job->name, d.msg);
        JOB_FAIL(r);
    }
    fv_mlp_t *m = NULL;
    if ((r = fv_mlp_new(&j->arch, &m)) != 0) {
        snprintf(reason, cap, "job '%s': cannot build the model: %s", job->name, fv_strerror(r));
        JOB_FAIL(r);
    }
    j->n_params = fv_mlp_n_params(m);
    fv_mlp_free(m);
    m = NULL;
    if (j->n_params > FV_SECAGG_MAX_DIM / 2) {
        snprintf(reason, cap, "job '%s': %zu parameters is too large", job->name, j->n_params);
        JOB_FAIL(FV_ETOOBIG);
    }
    if (job->distill.on) {
        r = fv_mlp_parse_arch(job->distill.student, j->n_feat, fv_schema_n_classes(job->schema),
                              &j->s_arch, &d);
        if (r == 0)
            r = fv_mlp_new(&j->s_arch, &m);
        if (r != 0) {
            snprintf(reason, cap, "job '%s': distill.student: %s", job->name,
                     d.msg[0] ? d.msg : fv_strerror(r));
            JOB_FAIL(r);
        }
        j->s_n_params = fv_mlp_n_params(m);
        fv_mlp_free(m);
        if (j->s_n_params > FV_SECAGG_MAX_DIM / 2) {
            snprintf(reason, cap, "job '%s': distill.student: %zu parameters is too large",
                     job->name, j->s_n_params);
            JOB_FAIL(FV_ETOOBIG);
        }
    }
    /* The job's privacy for this agent's rows (agent_privacy.c charges it on the loop).
     * The sentence may tell the row count apart: the coordinator gets one without it. */
    size_t np = j->n_params > j->s_n_params ? j->n_params : j->s_n_params;
    if ((r = fv_privacy_plan(job, j->n_tr, np, 0, &j->priv, &d)) != 0) {
        snprintf(reason, cap, "job '%s': %s", job->name, d.msg);
        snprintf(j->load_wire, sizeof j->load_wire,
                 "job '%s': its privacy section gives no plan for this agent's data (sampling "
                 "rate or noise out of range); details in the agent's log",
                 job->name);
        return FV_EPOLICY;
    }
    return 0;
#undef JOB_FAIL
}

static bool policy_allows(const agent_t *a, const char *name)
{
    if (a->cfg->n_accept_jobs == 0)
        return true;
    for (size_t i = 0; i < a->cfg->n_accept_jobs; i++)
        if (strcmp(a->cfg->accept_jobs[i], name) == 0)
            return true;
    return false;
}

/* Loading the CSV and hashing the file may take seconds: on the thread pool, so the
 * connection keeps answering heartbeats. The work touches only j and the read-only
 * configuration. */
static void job_load_run(uv_work_t *req)
{
    ajob_t *j = req->data;
    j->load_rc = job_prepare(j->a, j, j->load_reason, sizeof j->load_reason);
}

static void job_loaded(uv_work_t *req, int status)
{
    ajob_t *j = req->data;
    agent_t *a = j->a;
    j->n_busy--;
    j->loading = false;
    if (j->detached) {
        if (j->n_busy == 0)
            fv__agent_job_destroy(j);
        return;
    }
    /* Answer only the connection that (re-)offered the job; after a reconnect without
     * a new offer yet, the re-offer is answered from what was loaded. */
    bool answer = a->conn != NULL && j->offered_conn == a->conn_gen;
    if (status != 0 || j->load_rc != 0) {
        if (answer)
            refuse(a, j->digest, j->hex, j->job->name,
                   status != 0 ? FV_REFUSE_RESOURCES : j->load_cat,
                   status != 0 ? "the data load was cancelled" : j->load_reason,
                   status != 0 ? NULL : j->load_wire);
        else
            fv__agent_log_job("warn", "job_refused", j, -1,
                              json_pack("{s:s}", "reason", j->load_reason));
        fv__agent_job_release(a, j);
        return;
    }
    if (answer && j->priv.on) { /* the budget, charged before JOB_ACCEPT (agent_privacy.c) */
        char wire[FV_WIRE_TEXT_MAX + 1] = "";
        int pr = fv__agent_privacy_charge(a, j, j->load_reason, sizeof j->load_reason, wire,
                                          sizeof wire);
        if (pr < 0) {
            fv__agent_stop(a, 1); /* the audit log failed: nothing more leaves */
            return;
        }
        if (pr > 0) {
            refuse(a, j->digest, j->hex, j->job->name, FV_REFUSE_POLICY, j->load_reason, wire);
            fv__agent_job_release(a, j);
            return;
        }
    }
    if (answer)
        accept_job(a, j);
}

void fv__agent_on_job_offer(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    char hex[65], reason[FV_DIAG_MAX + 256];
    fv__agent_hex32(m->u.job_offer.job, hex);
    /* The same job again (we reconnected): keep everything, answer with what we hold. */
    if (a->job != NULL && memcmp(a->job->digest, m->u.job_offer.job, 32) == 0) {
        a->job->offered_conn = a->conn_gen;
        if (a->job->loading)
            return; /* job_loaded answers on this connection */
        if (fv__agent_cohort_offer(a, m, a->job->job) != 0) {
            fv__agent_job_release(a, a->job); /* refused: the CRL (agent_cohort.c) */
            return;
        }
        fv__agent_round_free(a->job->round);
        a->job->round = NULL;
        a->job->started = false; /* a restarted coordinator may resume at any round */
        if (a->job->priv.on) {   /* charged once: a no-op unless the first answer never went */
            char wire[FV_WIRE_TEXT_MAX + 1] = "";
            int pr = fv__agent_privacy_charge(a, a->job, reason, sizeof reason, wire, sizeof wire);
            if (pr != 0) {
                if (pr > 0)
                    refuse(a, a->job->digest, a->job->hex, a->job->job->name, FV_REFUSE_POLICY,
                           reason, wire);
                else
                    fv__agent_stop(a, 1);
                fv__agent_job_release(a, a->job);
                return;
            }
        }
        accept_job(a, a->job);
        return;
    }
    if (a->job != NULL) {
        fv__agent_log_job("warn", "job_dropped", a->job, -1,
                          json_pack("{s:s}", "why", "the coordinator offered another job"));
        fv__agent_job_release(a, a->job);
    }
    fv_diag_t d = {""};
    fv_job_t *job = NULL;
    int r = fv_job_from_json("job", (const char *)m->u.job_offer.spec, m->u.job_offer.spec_len,
                             &job, &d);
    if (r != 0) {
        refuse(a, m->u.job_offer.job, hex, NULL, fv__agent_spec_category(r, d.msg),
               d.msg[0] ? d.msg : fv_strerror(r), NULL);
        return;
    }
    uint8_t dig[32];
    if ((r = fv_job_digest(job, dig)) != 0 || memcmp(dig, m->u.job_offer.job, 32) != 0) {
        char want[65];
        fv__agent_hex32(dig, want);
        if (r == 0) /* what the id should have been: public, and it helps debugging */
            fv__agent_log_job("warn", "job_id_mismatch", NULL, -1,
                              json_pack("{s:s,s:s}", "offered", hex, "canonical", want));
        refuse(a, m->u.job_offer.job, hex, job->name, FV_REFUSE_PROTOCOL,
               "the job id is not the SHA-256 of the spec's canonical JSON", NULL);
        fv_job_free(job);
        return;
    }
    if (fv__agent_schema_offer_open(job)) {
        /* no agent trains on an open schema: the coordinator fixes it first (SCHEMA_QUERY,
         * agent_schema.c), and offers the resolved spec under its own digest */
        refuse(a, m->u.job_offer.job, hex, job->name, FV_REFUSE_SCHEMA,
               "the job's schema is still open: the coordinator must fix it by schema discovery "
               "before offering the job",
               NULL);
        fv_job_free(job);
        return;
    }
    if (!policy_allows(a, job->name)) {
        snprintf(reason, sizeof reason, "job '%s' is not in this agent's accept_jobs policy",
                 job->name);
        fv__agent_log("warn", "policy_refusal", hex, job->name, -1,
                      json_pack("{s:s}", "why", reason));
        refuse(a, m->u.job_offer.job, hex, job->name, FV_REFUSE_POLICY, reason, NULL);
        fv_job_free(job);
        return;
    }
    if (a->cfg->require_secagg && !job->secagg.on) {
        /* The agent's own rule, whatever the coordinator says: without SecAgg the stats
         * vector, the update and the validation histograms would leave in the clear. */
        snprintf(reason, sizeof reason,
                 "require_secure_aggregation: job '%s' has \"secagg\": \"off\", so this "
                 "bank's statistics, update and metrics would reach the coordinator in the "
                 "clear; this agent's policy requires secure aggregation",
                 job->name);
        fv__agent_log("warn", "policy_refusal", hex, job->name, -1,
                      json_pack("{s:s,s:s}", "rule", "require_secure_aggregation", "why", reason));
        if (fv__agent_audit_append(a, "policy.refused",
                                   json_pack("{s:s,s:s,s:s,s:s}", "job", hex, "scope", "job",
                                             "rule", "require_secure_aggregation", "why",
                                             reason)) != 0) {
            fv_job_free(job);
            fv__agent_stop(a, 1);
            return; /* no record, no refusal either: the agent stops */
        }
        refuse(a, m->u.job_offer.job, hex, job->name, FV_REFUSE_POLICY, reason, NULL);
        fv_job_free(job);
        return;
    }
    if ((r = fv__agent_privacy_offer(a, job, hex, reason, sizeof reason)) != 0) {
        if (r > 0) /* policy.privacy: required, allow_outside_budget (agent_privacy.c) */
            refuse(a, m->u.job_offer.job, hex, job->name, FV_REFUSE_POLICY, reason, NULL);
        else
            fv__agent_stop(a, 1); /* no record, no refusal either: the agent stops */
        fv_job_free(job);
        return;
    }
    if (fv__agent_cohort_offer(a, m, job) != 0) { /* the CRL it carries (agent_cohort.c) */
        fv_job_free(job);
        return;
    }
    ajob_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        refuse(a, m->u.job_offer.job, hex, job->name, FV_REFUSE_RESOURCES, "out of memory", NULL);
        fv_job_free(job);
        return;
    }
    j->a = a;
    j->job = job;
    memcpy(j->digest, dig, 32);
    memcpy(j->hex, hex, sizeof hex);
    j->offered_conn = a->conn_gen;
    j->loading = true;
    j->load_req.data = j;
    (void)c;
    if ((r = uv_queue_work(a->loop, &j->load_req, job_load_run, job_loaded)) != 0) {
        refuse(a, dig, hex, job->name, FV_REFUSE_RESOURCES, "cannot queue the data load", NULL);
        fv__agent_job_destroy(j);
        return;
    }
    j->n_busy++;
    a->job = j;
}

/* ---- JOB_DONE ----------------------------------------------------------------------- */

void fv__agent_on_job_done(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    ajob_t *j = a->job;
    if (j == NULL || memcmp(m->u.job_done.job, j->digest, 32) != 0) {
        /* The coordinator repeats the end of the last job an agent took part in on each of
         * its connections (it cannot know whether one reached us before a reconnect): the
         * end of a job this agent no longer holds (heard before, or accepted by an earlier
         * run of this daemon) changes nothing here, so it is noted, not a violation. */
        char jh[65];
        fv__agent_hex32(m->u.job_done.job, jh);
        fv__agent_log_job("info", "stale_message", j, -1,
                          json_pack("{s:s,s:s}", "type", "job_done", "of_job", jh));
        return;
    }
    char h[65];
    fv__agent_hex32(m->u.job_done.model, h);
    fv__agent_log_job(
        "info", "job_done", j, -1,
        json_pack("{s:I,s:s,s:b}", "rounds", (json_int_t)m->u.job_done.rounds, "model", h,
                  "holds_final_model",
                  j->has_global && memcmp(j->global_hash, m->u.job_done.model, 32) == 0));
    fv__agent_job_release(a, j);
    if (a->cfg->once)
        fv__agent_stop(a, 0);
}
