/* agent_cohort.c - the agent's own trust in the cohort it masks with: the federation CRL
 * a JOB_OFFER carries, and the certificates of a SecAgg job's ROUND_START.
 *
 * Why (crypto/fv_trust.h argues it): SecAgg protects our input from the coordinator only
 * if it does not hold every other member's masks. The coordinator names the cohort's
 * keys (ROUND_START "pks"); taken on its word, it could invent members. So before
 * fv_around_check, every member must be certified by the federation CA, unrevoked by a
 * CRL the CA signed and fresh by our policy, and the cohort must be coherent. Any
 * violation refuses the WHOLE job: one JOB_REFUSE {job, reason, category (policy for
 * the CRL rules and a revoked or uncertified member, else protocol)}, a log line
 * "cohort_refused" and an audit record "cohort.refused" {job, round, rule, member,
 * member_name, reason}; the job is dropped and nothing else is sent for it (later round
 * messages for it are ignored as stale, fv__agent_cohort_refused).
 *
 * Rules, checked in this order; the reason starts with the rule name:
 *   JOB_OFFER (any job, when it carries a CRL)
 *     crl_invalid           "crl_invalid: <why>": not DER, or not signed by our CA
 *   JOB_OFFER and every ROUND_START of a SecAgg job
 *     crl_missing           "crl_missing: no federation CRL held ..."
 *     crl_stale             "crl_stale: the newest federation CRL held was issued A s ago,
 *                           above policy.max_crl_age_s N"
 *   ROUND_START of a SecAgg job, member by member (index order), then the whole cohort
 *     cohort_uncertified    "cohort_uncertified: ..." no "certs", or not n entries
 *     member_not_certified  "member_not_certified: member I (NAME): certificate revoked
 *                           (...)" / expired / not issued by the federation CA / ...
 *                           (fv_trust_member's sentence; NAME unverified, from the CN)
 *     member_is_coordinator "member_is_coordinator: member I (NAME): its key is the
 *                           coordinator's" (the certificate's key or pks[I] equals the key
 *                           of the certificate our TLS session authenticated)
 *     member_role           "member_role: member I (NAME): role R, not agent"
 *     member_key_mismatch   "member_key_mismatch: member I (NAME): pks[I] is not the key
 *                           of its certificate"
 *     member_duplicate      "member_duplicate: member I (NAME): same name|key as member J"
 *     member_not_self       "member_not_self: member I (NAME): the entry at our index is
 *                           not our certificate"
 * min_cohort / min_threshold then apply in fv_around_check to n, which is the verified
 * count (every member verified or the job is gone).
 *
 * Clock: certificate validity and CRL age are wall-clock facts, so now is time(NULL) (the
 * loop's uv_now is monotonic, unrelated to certificate dates).
 *
 * Threads: the loop thread only. Ownership: a->trust is the agent's (agent.c).
 */
#include "agent-int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "fv_trust.h"
#include "fv_wire.h"

#define NO_MEMBER (-1)

/* Sends JOB_REFUSE {job, "<rule>: <text>"}, logs and audits it, remembers the job. */
static void cohort_refuse(agent_t *a, const uint8_t job[32], const char *job_name, int64_t round,
                          const char *rule, int64_t member, const char *member_name,
                          const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static void cohort_refuse(agent_t *a, const uint8_t job[32], const char *job_name, int64_t round,
                          const char *rule, int64_t member, const char *member_name,
                          const char *fmt, ...)
{
    char text[FV_DIAG_MAX + 128], full[FV_DIAG_MAX + 256], clean[FV_DIAG_MAX + 256];
    char wire[FV_WIRE_TEXT_MAX + 1], hex[65];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (member >= 0)
        snprintf(full, sizeof full, "%s: member %" PRId64 " (%s): %s", rule, member,
                 member_name != NULL ? member_name : "?", text);
    else
        snprintf(full, sizeof full, "%s: %s", rule, text);
    fv__agent_text_clean(full, strlen(full), clean, sizeof clean);
    fv__agent_text_clean(clean, strlen(clean), wire, sizeof wire);
    fv__agent_hex32(job, hex);
    json_t *f = json_pack("{s:s,s:s}", "rule", rule, "reason", clean);
    if (f != NULL && member >= 0) {
        json_object_set_new(f, "member", json_integer(member));
        json_object_set_new(f, "member_name", json_string(member_name != NULL ? member_name : "?"));
    }
    fv__agent_log("warn", "cohort_refused", hex, job_name, round, json_incref(f));
    /* the structured reason in the audit log, before the frame (whose own msg.sent
     * record carries the reason text) */
    if (f != NULL) {
        json_object_set_new(f, "job", json_string(hex));
        if (round >= 0)
            json_object_set_new(f, "round", json_integer(round));
    }
    fv__agent_audit_append(a, "cohort.refused", f);
    fv_msg_t m = {.type = FV_MSG_JOB_REFUSE};
    memcpy(m.u.job_refuse.job, job, 32);
    m.u.job_refuse.reason.ptr = wire;
    m.u.job_refuse.reason.len = strlen(wire);
    m.u.job_refuse.category = fv__agent_cohort_rule_category(rule);
    fv__agent_send_msg(a, &m);
    a->refused_on = true;
    memcpy(a->refused_job, job, 32);
}

/* crl_missing / crl_stale for a SecAgg job: 0 if the newest CRL held is fresh. */
static int crl_fresh(agent_t *a, const uint8_t job[32], const char *job_name, int64_t round)
{
    int64_t issued = fv_trust_crl_issued(a->trust);
    int64_t now = (int64_t)time(NULL);
    if (issued == 0) {
        cohort_refuse(a, job, job_name, round, "crl_missing", NO_MEMBER, NULL,
                      "no federation CRL held (the offer carried none and the config has no "
                      "\"crl\"): revoked members could not be refused");
        return FV_EPOLICY;
    }
    if (now - issued > a->cfg->max_crl_age_s) {
        cohort_refuse(a, job, job_name, round, "crl_stale", NO_MEMBER, NULL,
                      "the newest federation CRL held was issued %" PRId64
                      " s ago, above policy.max_crl_age_s %" PRId64,
                      now - issued, a->cfg->max_crl_age_s);
        return FV_EPOLICY;
    }
    return 0;
}

int fv__agent_cohort_offer(agent_t *a, const fv_msg_t *m, const fv_job_t *job)
{
    const uint8_t *dg = m->u.job_offer.job;
    if (m->u.job_offer.crl_len > 0) {
        fv_diag_t d = {""};
        bool newer = false;
        int r =
            fv_trust_offer_crl(a->trust, m->u.job_offer.crl, m->u.job_offer.crl_len, &newer, &d);
        if (r != 0) {
            cohort_refuse(a, dg, job->name, -1, "crl_invalid", NO_MEMBER, NULL, "%s", d.msg);
            return r;
        }
        if (newer) {
            char hex[65];
            fv__agent_hex32(dg, hex);
            fv__agent_log("info", "crl_taken", hex, job->name, -1,
                          json_pack("{s:I,s:I}", "issued",
                                    (json_int_t)fv_trust_crl_issued(a->trust), "revoked",
                                    (json_int_t)fv_trust_crl_count(a->trust)));
        }
    }
    if (job->secagg.on && crl_fresh(a, dg, job->name, -1) != 0)
        return FV_EPOLICY;
    a->refused_on = false; /* a job taken up again is judged afresh */
    return 0;
}

bool fv__agent_cohort_refused(agent_t *a, const fv_msg_t *m)
{
    const uint8_t *job = NULL;
    uint64_t round = 0;
    switch (m->type) {
    case FV_MSG_ROUND_START:
        job = m->u.round_start.job, round = m->u.round_start.round;
        break;
    case FV_MSG_SECAGG:
        job = m->u.secagg.job, round = m->u.secagg.round;
        break;
    case FV_MSG_UPLOAD_GO:
        job = m->u.upload_go.job, round = m->u.upload_go.round;
        break;
    case FV_MSG_ROUND_END:
        job = m->u.round_end.job, round = m->u.round_end.round;
        break;
    default:
        return false;
    }
    if (!a->refused_on || memcmp(job, a->refused_job, 32) != 0 ||
        (a->job != NULL && memcmp(a->job->digest, job, 32) == 0))
        return false;
    char hex[65];
    fv__agent_hex32(job, hex);
    fv__agent_log("info", "stale_message", hex, NULL, (int64_t)round,
                  json_pack("{s:s,s:s}", "type", fv_msg_type_name(m->type), "why",
                            "the job was refused for its cohort"));
    return true;
}

/* Sorting members by name or key to find duplicates in O(n log n). */
typedef struct member_ref {
    const fv_identity_t *id;
    uint32_t index;
} member_ref_t;

static int by_name(const void *x, const void *y)
{
    const member_ref_t *p = x, *q = y;
    int c = strcmp(p->id->name, q->id->name);
    return c != 0 ? c : (p->index > q->index) - (p->index < q->index);
}

static int by_key(const void *x, const void *y)
{
    const member_ref_t *p = x, *q = y;
    int c = memcmp(p->id->sign_pk, q->id->sign_pk, 32);
    return c != 0 ? c : (p->index > q->index) - (p->index < q->index);
}

/* The cohort's rules across members; 0 or refused. */
static int cohort_distinct(agent_t *a, ajob_t *j, int64_t rn, const fv_identity_t *ids, uint32_t n)
{
    member_ref_t *refs = malloc((size_t)n * sizeof *refs);
    int r = 0;
    if (refs == NULL) {
        cohort_refuse(a, j->digest, j->job->name, rn, "cohort_uncertified", NO_MEMBER, NULL,
                      "out of memory checking the cohort");
        return FV_ENOMEM;
    }
    for (int pass = 0; pass < 2 && r == 0; pass++) {
        for (uint32_t i = 0; i < n; i++)
            refs[i] = (member_ref_t){&ids[i], i};
        qsort(refs, n, sizeof *refs, pass == 0 ? by_name : by_key);
        for (uint32_t i = 1; i < n && r == 0; i++) {
            const fv_identity_t *p = refs[i - 1].id, *q = refs[i].id;
            if (pass == 0 ? strcmp(p->name, q->name) != 0 : memcmp(p->sign_pk, q->sign_pk, 32) != 0)
                continue;
            cohort_refuse(a, j->digest, j->job->name, rn, "member_duplicate", refs[i].index,
                          refs[i].id->name, "same %s as member %" PRIu32,
                          pass == 0 ? "name" : "key", refs[i - 1].index);
            r = FV_EPOLICY;
        }
    }
    free(refs);
    return r;
}

int fv__agent_cohort_check(agent_t *a, fv_conn_t *c, ajob_t *j, const fv_msg_t *m)
{
    const __typeof__(m->u.round_start) *rs = &m->u.round_start;
    int64_t rn = (int64_t)rs->round;
    const fv_identity_t *coord = fv_conn_peer(c);
    fv_identity_t *ids = NULL;
    int r = crl_fresh(a, j->digest, j->job->name, rn);
    if (r != 0)
        goto refused;
    if (rs->certs_len == 0) {
        cohort_refuse(a, j->digest, j->job->name, rn, "cohort_uncertified", NO_MEMBER, NULL,
                      "ROUND_START of a SecAgg job carries no member certificates");
        r = FV_EPOLICY;
        goto refused;
    }
    ids = calloc(rs->n, sizeof *ids);
    if (ids == NULL || rs->pks_len != (size_t)rs->n * 32) {
        cohort_refuse(a, j->digest, j->job->name, rn, "cohort_uncertified", NO_MEMBER, NULL, "%s",
                      ids == NULL ? "out of memory checking the cohort" : "pks is not n keys");
        r = FV_EPOLICY;
        goto refused;
    }
    int64_t now = (int64_t)time(NULL);
    const uint8_t *rest = rs->certs; /* entry i starts here: one pass, O(n) */
    size_t rest_len = rs->certs_len;
    for (uint32_t i = 0; i < rs->n; i++) {
        const uint8_t *der = NULL;
        size_t len = 0;
        char name[FV_NAME_MAX + 1];
        const uint8_t *pk = rs->pks + (size_t)i * 32;
        fv_diag_t d = {""};
        if (fv_wire_cert_at(rest, rest_len, 0, &der, &len) != 0) {
            cohort_refuse(a, j->digest, j->job->name, rn, "cohort_uncertified", NO_MEMBER, NULL,
                          "no certificate for member %" PRIu32 " of %" PRIu32, i, rs->n);
            r = FV_EPOLICY;
            goto refused;
        }
        rest += 2 + len;
        rest_len -= 2 + len;
        if ((r = fv_trust_member(a->trust, der, len, now, &ids[i], &d)) != 0) {
            fv_trust_cert_name(der, len, name);
            cohort_refuse(a, j->digest, j->job->name, rn, "member_not_certified", i, name, "%s",
                          d.msg);
            goto refused;
        }
        r = FV_EPOLICY;
        if (coord != NULL && (sodium_memcmp(ids[i].sign_pk, coord->sign_pk, 32) == 0 ||
                              sodium_memcmp(pk, coord->sign_pk, 32) == 0)) {
            cohort_refuse(a, j->digest, j->job->name, rn, "member_is_coordinator", i, ids[i].name,
                          "its key is the coordinator's (%s)", coord->name);
            goto refused;
        }
        if (ids[i].role != FV_ROLE_AGENT) {
            cohort_refuse(a, j->digest, j->job->name, rn, "member_role", i, ids[i].name,
                          "role %s, not agent", fv_role_name(ids[i].role));
            goto refused;
        }
        if (sodium_memcmp(ids[i].sign_pk, pk, 32) != 0) {
            cohort_refuse(a, j->digest, j->job->name, rn, "member_key_mismatch", i, ids[i].name,
                          "pks[%" PRIu32 "] is not the key of its certificate", i);
            goto refused;
        }
    }
    if ((r = cohort_distinct(a, j, rn, ids, rs->n)) != 0)
        goto refused;
    if (strcmp(ids[rs->index].name, a->cfg->name) != 0 ||
        sodium_memcmp(ids[rs->index].sign_pk, a->pk, 32) != 0) {
        cohort_refuse(a, j->digest, j->job->name, rn, "member_not_self", rs->index,
                      ids[rs->index].name, "the entry at our index is not our certificate (%s)",
                      a->cfg->name);
        r = FV_EPOLICY;
        goto refused;
    }
    free(ids);
    {
        uint64_t hits = 0, misses = 0;
        fv_trust_cache_stats(a->trust, &hits, &misses);
        fv__agent_log_job("debug", "cohort_verified", j, rn,
                          json_pack("{s:I,s:I,s:I}", "members", (json_int_t)rs->n, "cache_hits",
                                    (json_int_t)hits, "cache_misses", (json_int_t)misses));
    }
    return 0;
refused:
    free(ids);
    fv__agent_job_release(a, j);
    return r != 0 ? r : FV_EPOLICY;
}
