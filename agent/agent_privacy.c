/* agent_privacy.c - the agent's differential-privacy policy, its ledger, and the budget
 * check at JOB_OFFER.
 *
 * Policy (agent.json "policy": {"privacy": {...}}, every key optional):
 *   epsilon_max            > 0: the most epsilon (at delta below) all jobs together may
 *                          spend on one data file (its SHA-256, the fingerprint JOB_ACCEPT
 *                          declares); absent: no limit (the ledger still records)
 *   delta                  (0, 0.1], default 1e-5: the delta epsilon_max is read at
 *   required               true: a job without a "privacy" section is refused
 *   allow_outside_budget   the releases a job may declare outside the budget (job
 *                          privacy.outside_budget), default all of "stats", "metrics",
 *                          "explain"; a job declaring one not listed is refused
 * The ledger: agent.json "privacy_ledger" (default privacy/ledger.jsonl beside the config;
 * missing directories made 0700), protocols/fv_privacy.h's format.
 *
 * At JOB_OFFER, in this order: the policy's words (fv__agent_privacy_offer, before the
 * data is loaded: required, allow_outside_budget); on the thread pool, after the data is
 * loaded and split, the job's plan for this agent's training rows (agent_job.c calls
 * fv_privacy_plan); then, on the loop (fv__agent_privacy_charge), the ledger: a job it
 * already holds for this data fingerprint (a re-offer after a reconnect, a restarted
 * coordinator or agent) is not charged again and is accepted (the same job on a new data
 * file is charged for it); else the epsilon of the fingerprint's spends plus this
 * job's, at the policy's delta, must be at most epsilon_max (else JOB_REFUSE, category
 * POLICY, a sentence with the epsilons and the fingerprint's first 8 hex digits, no row
 * count nor other data values; audited policy.refused, rule privacy_budget), and the
 * charge is audited (privacy_spent) and then written (atomic, fsynced) before JOB_ACCEPT
 * goes: never a spend in the ledger without its record (a crash between them leaves a
 * record alone, and a second one when the job is charged on its next offer).
 * A ledger that cannot be read or written refuses the job (POLICY), never resets a budget.
 *
 * `fedvault-agent --config F --privacy-ledger [--json]` prints the ledger and exits.
 *
 * Threads: the loop thread (the ledger file is read and written there: a few KiB per
 * job, one fsync'd rename, like an audit append), except fv__agent_cfg_privacy and
 * fv__agent_privacy_print, which run before the loop.
 */
#include "agent-int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "fv_privacy.h"

static const char *const release_words[] = {"stats", "metrics", "explain"}; /* FV_PRIV_REL_* */

int fv__agent_cfg_privacy(json_t *pol, const char *path, fv_agent_cfg_t *c, char *msg, size_t cap)
{
    const char *k;
    json_t *v;
    c->priv_delta = 1e-5;
    c->priv_epsilon_max = 0;
    c->priv_required = false;
    c->priv_allow_outside = FV_PRIV_REL_STATS | FV_PRIV_REL_METRICS | FV_PRIV_REL_EXPLAIN;
    if (pol == NULL)
        return 0;
#define BAD(...) (snprintf(msg, cap, __VA_ARGS__), 1)
    if (!json_is_object(pol))
        return BAD("%s: policy.privacy must be an object {\"epsilon_max\", \"delta\", "
                   "\"required\", \"allow_outside_budget\"}",
                   path);
    json_object_foreach(pol, k, v)
    {
        if (strcmp(k, "epsilon_max") != 0 && strcmp(k, "delta") != 0 &&
            strcmp(k, "required") != 0 && strcmp(k, "allow_outside_budget") != 0)
            return BAD("%s: unknown key \"policy.privacy.%.64s\" (known: epsilon_max, delta, "
                       "required, allow_outside_budget)",
                       path, k);
    }
    if ((v = json_object_get(pol, "epsilon_max")) != NULL) {
        if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v)) ||
            json_number_value(v) > 1e6)
            return BAD("%s: policy.privacy.epsilon_max must be a number in (0, 1e6] (leave it "
                       "out for no limit)",
                       path);
        c->priv_epsilon_max = json_number_value(v);
    }
    if ((v = json_object_get(pol, "delta")) != NULL) {
        if (!json_is_number(v) || !(json_number_value(v) > 0 && json_number_value(v) <= 0.1))
            return BAD("%s: policy.privacy.delta must be a number in (0, 0.1]", path);
        c->priv_delta = json_number_value(v);
    }
    if ((v = json_object_get(pol, "required")) != NULL) {
        if (!json_is_boolean(v))
            return BAD("%s: policy.privacy.required must be true or false", path);
        c->priv_required = json_is_true(v);
    }
    if ((v = json_object_get(pol, "allow_outside_budget")) != NULL) {
        size_t i;
        json_t *w;
        if (!json_is_array(v))
            return BAD("%s: policy.privacy.allow_outside_budget must be a list of \"stats\", "
                       "\"metrics\", \"explain\"",
                       path);
        c->priv_allow_outside = 0;
        json_array_foreach(v, i, w)
        {
            size_t b;
            for (b = 0; b < 3; b++)
                if (json_is_string(w) && strcmp(json_string_value(w), release_words[b]) == 0)
                    break;
            if (b == 3)
                return BAD("%s: policy.privacy.allow_outside_budget[%zu]: expected \"stats\", "
                           "\"metrics\" or \"explain\"",
                           path, i);
            c->priv_allow_outside |= 1u << b;
        }
    }
#undef BAD
    return 0;
}

/* policy.refused {job, scope "job", rule, why}: 0, or -1 when the append failed (the
 * caller stops the agent). */
static int audit_refusal(agent_t *a, const char *hex, const char *rule, const char *why)
{
    return fv__agent_audit_append(a, "policy.refused",
                                  json_pack("{s:s,s:s,s:s,s:s}", "job", hex, "scope", "job", "rule",
                                            rule, "why", why)) != 0
               ? -1
               : 0;
}

int fv__agent_privacy_offer(agent_t *a, const fv_job_t *job, const char *hex, char *reason,
                            size_t cap)
{
    const fv_agent_cfg_t *c = a->cfg;
    const char *rule = NULL;
    if (!job->privacy.on && c->priv_required) {
        rule = "privacy_required";
        snprintf(reason, cap,
                 "privacy required: job '%s' has no \"privacy\" section; this agent's policy "
                 "(policy.privacy.required) takes only jobs with differential privacy",
                 job->name);
    } else if (job->privacy.on && (job->privacy.outside_budget & ~c->priv_allow_outside) != 0) {
        uint32_t extra = job->privacy.outside_budget & ~c->priv_allow_outside;
        size_t b = extra & FV_PRIV_REL_STATS ? 0 : extra & FV_PRIV_REL_METRICS ? 1 : 2;
        rule = "privacy_outside_budget";
        snprintf(reason, cap,
                 "privacy: job '%s' releases \"%s\" outside its privacy budget (without noise); "
                 "this agent's policy.privacy.allow_outside_budget does not allow it",
                 job->name, release_words[b]);
    }
    if (rule == NULL)
        return 0;
    fv__agent_log("warn", "policy_refusal", hex, job->name, -1,
                  json_pack("{s:s,s:s}", "rule", rule, "why", reason));
    return audit_refusal(a, hex, rule, reason) < 0 ? -1 : 1;
}

int fv__agent_privacy_charge(agent_t *a, ajob_t *j, char *reason, size_t cap, char *wire,
                             size_t wire_cap)
{
    const fv_agent_cfg_t *c = a->cfg;
    const fv_privacy_plan_t *p = &j->priv;
    fv_privacy_ledger_t *l = NULL;
    fv_diag_t d = {""};
    char fp[65];
    double spent = 0, with = 0;
    bool charged = false;
    int r, ret = 1;
    if (!j->job->privacy.on || !p->on)
        return 0;
    fv__agent_hex32(j->data_sha, fp);
    if ((r = fv_privacy_ledger_open(c->privacy_ledger, &l, &d)) < 0 ||
        (r = fv_privacy_ledger_spent(l, fp, j->hex, p, c->priv_delta, &spent, &with, &charged,
                                     &d)) < 0) {
        snprintf(reason, cap, "privacy ledger: %s", d.msg);
        snprintf(wire, wire_cap, "this agent's privacy ledger cannot be read; details in its log");
        goto out;
    }
    if (charged) { /* a re-offer: paid when first accepted */
        fv__agent_log_job("info", "privacy_already_charged", j, -1,
                          json_pack("{s:f,s:f}", "epsilon", p->epsilon, "total_epsilon", spent));
        ret = 0;
        goto out;
    }
    if (c->priv_epsilon_max > 0 && !(with <= c->priv_epsilon_max)) {
        snprintf(reason, cap,
                 "privacy budget: this job needs epsilon %.2f (delta %.0e); data fingerprint "
                 "%.8s.. has spent %.2f of epsilon_max %.2f (delta %.0e), and would reach %.2f",
                 p->epsilon, p->delta, fp, spent, c->priv_epsilon_max, c->priv_delta, with);
        snprintf(wire, wire_cap, "%s", reason);
        fv__agent_log_job("warn", "policy_refusal", j, -1,
                          json_pack("{s:s,s:s}", "rule", "privacy_budget", "why", reason));
        if (audit_refusal(a, j->hex, "privacy_budget", reason) < 0)
            ret = -1;
        goto out;
    }
    /* The audit record first, then the ledger: a spend is never in the ledger without its
     * record. A crash between the two leaves a record without an entry (the job, offered
     * again, is charged then, with a second record); a failed ledger write is recorded as
     * privacy_spend_failed. The audit log over-reports, never under-reports. */
    if (fv__agent_audit_append(
            a, "privacy_spent",
            json_pack("{s:s,s:s,s:s,s:f,s:f,s:f,s:f,s:I,s:f}", "job", j->hex, "fingerprint", fp,
                      "mode", p->mode == FV_PRIVACY_LOCAL ? "local" : "distributed", "epsilon",
                      p->epsilon, "delta", p->delta, "sigma", p->sigma, "q", p->q, "steps",
                      (json_int_t)p->steps, "total_epsilon", with)) != 0) {
        ret = -1;
        goto out;
    }
    fv__agent_kill_point("privacy-audited", 0); /* tests: recorded, not yet in the ledger */
    if ((r = fv__agent_mkdir_parents(c->privacy_ledger)) < 0 ||
        (r = fv_privacy_ledger_charge(l, fp, j->hex, p, (int64_t)time(NULL), &d)) < 0) {
        snprintf(reason, cap, "privacy ledger %s: cannot record the spend: %s", c->privacy_ledger,
                 d.msg[0] ? d.msg : fv_strerror(r));
        snprintf(wire, wire_cap,
                 "this agent cannot record the job's privacy spend; details in its log");
        if (fv__agent_audit_append(
                a, "privacy_spend_failed",
                json_pack("{s:s,s:s,s:s}", "job", j->hex, "fingerprint", fp, "why", reason)) != 0)
            ret = -1;
        goto out;
    }
    fv__agent_log_job("info", "privacy_spent", j, -1,
                      json_pack("{s:f,s:f,s:f,s:f}", "epsilon", p->epsilon, "delta", p->delta,
                                "total_epsilon", with, "epsilon_max", c->priv_epsilon_max));
    ret = 0;
out:
    fv_privacy_ledger_free(l);
    return ret;
}

int fv__agent_privacy_print(const fv_agent_cfg_t *c, bool as_json)
{
    fv_privacy_ledger_t *l = NULL;
    fv_diag_t d = {""};
    char *s = NULL;
    json_t *root = NULL, *v;
    size_t i;
    int r = fv_privacy_ledger_open(c->privacy_ledger, &l, &d);
    if (r == 0)
        r = fv_privacy_ledger_json(l, c->priv_delta, &s, &d);
    fv_privacy_ledger_free(l);
    if (r != 0) {
        fprintf(stderr, "fedvault-agent: %s\n", d.msg);
        return 1;
    }
    if (as_json) {
        printf("%s\n", s);
        free(s);
        return 0;
    }
    root = json_loads(s, 0, NULL);
    free(s);
    if (root == NULL)
        return 1;
    printf("privacy ledger %s\n", c->privacy_ledger);
    if (c->priv_epsilon_max > 0)
        printf("epsilon_max %.2f at delta %.0e per data file\n", c->priv_epsilon_max,
               c->priv_delta);
    else
        printf("no epsilon_max (no limit); totals at delta %.0e\n", c->priv_delta);
    json_array_foreach(json_object_get(root, "totals"), i, v)
    {
        json_t *e = json_object_get(v, "epsilon");
        printf("data %s: epsilon %s%.2f over %d job%s\n",
               json_string_value(json_object_get(v, "fingerprint")), json_is_number(e) ? "" : "inf",
               json_is_number(e) ? json_number_value(e) : 0.0,
               (int)json_integer_value(json_object_get(v, "jobs")),
               json_integer_value(json_object_get(v, "jobs")) == 1 ? "" : "s");
    }
    json_array_foreach(json_object_get(root, "entries"), i, v)
    {
        time_t ts = (time_t)json_integer_value(json_object_get(v, "ts"));
        struct tm tm;
        char when[32] = "?";
        if (gmtime_r(&ts, &tm) != NULL)
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("  job %.16s.. data %.8s.. %s epsilon %.3f delta %.0e sigma %.4g q %.4g steps %lld "
               "at %s\n",
               json_string_value(json_object_get(v, "job")),
               json_string_value(json_object_get(v, "fingerprint")),
               json_string_value(json_object_get(v, "mode")),
               json_number_value(json_object_get(v, "epsilon")),
               json_number_value(json_object_get(v, "delta")),
               json_number_value(json_object_get(v, "sigma")),
               json_number_value(json_object_get(v, "q")),
               (long long)json_integer_value(json_object_get(v, "steps")), when);
    }
    if (json_array_size(json_object_get(root, "entries")) == 0)
        printf("no spends recorded\n");
    json_decref(root);
    return 0;
}
