/* coord_valid.c - what the coordinator does with a validated round's verdicts (issue 16).
 *
 * A validated round (fv_vagg.h, the job's "validation") ends with a verdict per prover: its
 * proof passed, or it failed a named check ("norm", "wraparound", a range's or equality's
 * name such as "hist_sum=n_val[m0]", "complaints", "consistency", "gadget"). The round
 * machine already logged each failure (proof_failed) and left the prover out of the sum:
 * to the round it is a dropout. Here, at the round's end:
 *   - each failure counts against the agent in this job, and goes to the signed audit log
 *     (proof.failed: agent, job, round, kind, check, complaints);
 *   - at the job's validation.max_failures the agent is excluded from the job's later
 *     cohorts (log member_excluded, audit agent.excluded); it stays connected and may take
 *     part in other jobs;
 *   - `job show` and `job watch` list the agents with failures, the last failed check and
 *     whether they are excluded (coord__valid_live, the live object's "proof_failures").
 * A failed proof is the agent's own statement about its input failing; a holder named as an
 * outlier (holder_outlier) is logged by the round machine but not counted here: an outlier
 * may be the holder lying or the prover having sent it a share off its polynomial, and the
 * round already went on without that share.
 * Counts are per job and not durable (like benching): a coordinator restart starts them
 * over, and the audit log keeps every failure.
 * Threading: the loop thread only.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "coord-int.h"

/* The agent's counters belong to the current job: start over for a new one. */
static void for_job(const coord_t *c, agent_t *a)
{
    if (a->valid_job != c->run.job_id64) {
        a->valid_job = c->run.job_id64;
        a->proof_failures = 0;
        a->fail_round = 0;
        a->fail_check[0] = '\0';
        a->excluded = false;
    }
}

bool coord__valid_excluded(const coord_t *c, const agent_t *a)
{
    return c->job != NULL && c->job->validation.on && a->valid_job == c->run.job_id64 &&
           a->excluded;
}

void coord__valid_round_end(coord_t *c)
{
    const fv_cround_t *cr = c->rnd.cr;
    if (cr == NULL || c->job == NULL || !c->job->validation.on)
        return;
    for (uint32_t i = 0; i < c->rnd.n; i++) {
        agent_t *a = c->rnd.cohort[i];
        fv_valid_verdict_t v;
        uint32_t complaints = 0;
        if (a == NULL || !fv_cround_verdict(cr, i, &v, &complaints) || v.ok)
            continue;
        for_job(c, a);
        a->proof_failures++;
        a->fail_round = c->rnd.round;
        snprintf(a->fail_check, sizeof a->fail_check, "%s", v.check);
        coord_audit(c, NULL, "proof.failed",
                    json_pack("{s:s,s:s,s:I,s:s,s:s,s:i}", "agent", a->name, "job", c->run.job_id,
                              "round", (json_int_t)c->rnd.round, "kind", coord__kind_name(c),
                              "check", v.check, "complaints", (int)complaints));
        if (!a->excluded && a->proof_failures >= c->job->validation.max_failures) {
            a->excluded = true;
            json_t *f = coord__jf(c);
            json_object_set_new(f, "agent", json_string(a->name));
            json_object_set_new(f, "failures", json_integer((json_int_t)a->proof_failures));
            json_object_set_new(f, "check", json_string(v.check));
            coord_logj("warn", "member_excluded", f);
            coord_audit(c, NULL, "agent.excluded",
                        json_pack("{s:s,s:s,s:I,s:i,s:s}", "agent", a->name, "job", c->run.job_id,
                                  "round", (json_int_t)c->rnd.round, "failures",
                                  (int)a->proof_failures, "check", v.check));
        }
    }
}

json_t *coord__valid_live(const coord_t *c)
{
    json_t *arr = json_array();
    for (const agent_t *a = c->agents; a != NULL; a = a->next) {
        if (a->valid_job != c->run.job_id64 || a->proof_failures == 0)
            continue;
        json_array_append_new(arr,
                              json_pack("{s:s,s:i,s:I,s:s,s:b}", "agent", a->name, "failures",
                                        (int)a->proof_failures, "round", (json_int_t)a->fail_round,
                                        "check", a->fail_check, "excluded", a->excluded));
    }
    return arr;
}
