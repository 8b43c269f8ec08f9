/* coord_bench.c - benching: members that hold rounds up by saying nothing sit rounds out.
 *
 * A miss: the agent was in a round's cohort and the round machine left it at a deadline
 * without the answer it was asked for (fv_cround_late: silent; not a member lost with its
 * connection, which closes its part at once and holds nobody up, nor one dropped for a
 * violation, whose connection is closed). An agent's policy sit-out is silent on the wire
 * (fv_round.h: SIT_OUT sends nothing), so it is a miss like any silence: to the
 * coordinator it costs the same phase deadline. A member that contributes to a round's sum
 * (fv_cround_contributed) starts over: misses and its bench count back to 0.
 *
 * After `after` consecutive misses (--bench-after, default 3; 0 turns benching off) the
 * agent is benched: left out of the cohorts of the next base * 2^(times-1) rounds, at most
 * max (--bench-base-rounds 2, --bench-max-rounds 32), times counting its benches since it
 * last contributed. It is then on probation: its misses stay at `after`, so one more miss
 * benches it again for twice as long, and a contribution clears both.
 *
 * The unit is rounds, not milliseconds: what a silent member costs is a phase deadline per
 * round it is in, and a bench in rounds saves exactly that many; rounds last from
 * milliseconds to many minutes, so a time backoff would be either too short to matter or
 * longer than the job. Rounds count over every job (c->bench.seq: a round started, attempts
 * included), so a bench outlives the job it was earned in. Benching is the coordinator's
 * policy, not the job's: its flags are the daemon's and do not change a job's digest.
 * Nothing of it is durable: a restart starts everyone afresh.
 *
 * min_agents: benched agents are not counted as available; when the unbenched accepted
 * agents are fewer than the job's min_agents and the benched ones would make it up, the
 * benches ending soonest are lifted (log bench_lifted, reason min_agents), so a bench
 * never stalls a job that could run: it only keeps a silent member out while enough
 * others are there.
 *
 * Threading: the loop thread only.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "coord-int.h"

int coord__bench_option(coord_bench_opts_t *o, const char *opt, const char *val)
{
    uint64_t *dst;
    uint64_t lo = 1, hi = 1u << 20;
    if (strcmp(opt, "--bench-after") == 0) {
        dst = &o->after;
        lo = 0;
        hi = 1000;
    } else if (strcmp(opt, "--bench-base-rounds") == 0) {
        dst = &o->base_rounds;
    } else if (strcmp(opt, "--bench-max-rounds") == 0) {
        dst = &o->max_rounds;
    } else {
        return 0;
    }
    char *end;
    unsigned long long u = strtoull(val, &end, 10);
    if (val[0] == '\0' || val[0] == '-' || *end != '\0' || u < lo || u > hi) {
        fprintf(stderr, "fedvault-coordinator: %s %s: expected %" PRIu64 "..%" PRIu64 "\n", opt,
                val, lo, hi);
        return -1;
    }
    *dst = u;
    return 1;
}

bool coord__benched(const coord_t *c, const agent_t *a)
{
    return a->bench_until > c->bench.seq;
}

/* Accepted, connected, not benched: a cohort member. */
bool coord__bench_eligible(const coord_t *c, const agent_t *a)
{
    return a->conn != NULL && a->accepted && !coord__benched(c, a) && !coord__valid_excluded(c, a);
}

static void lift(coord_t *c, agent_t *a, const char *reason)
{
    coord_logj("info", "bench_lifted",
               json_pack("{s:s,s:s,s:I}", "agent", a->name, "reason", reason, "rounds_left",
                         (json_int_t)(a->bench_until - c->bench.seq)));
    a->bench_until = c->bench.seq;
}

void coord__bench_fill(coord_t *c, uint32_t min_agents)
{
    size_t ready = 0, benched = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next) {
        if (a->conn == NULL || !a->accepted)
            continue;
        if (coord__benched(c, a))
            benched++;
        else
            ready++;
    }
    if (ready >= min_agents || ready + benched < min_agents)
        return; /* enough without them, or too few even with them: wait */
    while (ready < min_agents) {
        agent_t *pick = NULL;
        for (agent_t *a = c->agents; a != NULL; a = a->next)
            if (a->conn != NULL && a->accepted && coord__benched(c, a) &&
                (pick == NULL || a->bench_until < pick->bench_until ||
                 (a->bench_until == pick->bench_until && strcmp(a->name, pick->name) < 0)))
                pick = a;
        if (pick == NULL)
            return;
        lift(c, pick, "min_agents");
        ready++;
    }
}

void coord__bench_round_started(coord_t *c)
{
    c->bench.seq++;
}

void coord__bench_round_end(coord_t *c)
{
    const fv_cround_t *cr = c->rnd.cr;
    if (cr == NULL || c->bench.opts.after == 0)
        return;
    for (uint32_t i = 0; i < c->rnd.n; i++) {
        agent_t *a = c->rnd.cohort[i];
        if (fv_cround_late(cr, i)) {
            a->misses++;
            if (a->misses < c->bench.opts.after)
                continue;
            a->misses = (uint32_t)c->bench.opts.after; /* probation: the next miss benches */
            a->benched_times++;
            uint64_t rounds = c->bench.opts.base_rounds;
            for (uint32_t k = 1; k < a->benched_times && rounds < c->bench.opts.max_rounds; k++)
                rounds *= 2;
            if (rounds > c->bench.opts.max_rounds)
                rounds = c->bench.opts.max_rounds;
            a->bench_until = c->bench.seq + rounds;
            json_t *f = coord__jf(c);
            json_object_set_new(f, "agent", json_string(a->name));
            json_object_set_new(f, "misses", json_integer((json_int_t)a->misses));
            json_object_set_new(f, "bench_rounds", json_integer((json_int_t)rounds));
            json_object_set_new(f, "benched_times", json_integer((json_int_t)a->benched_times));
            coord_logj("warn", "agent_benched", f);
            coord_audit(c, NULL, "agent.benched",
                        json_pack("{s:s,s:s,s:I,s:I,s:I}", "agent", a->name, "job", c->run.job_id,
                                  "round", (json_int_t)c->rnd.round, "misses",
                                  (json_int_t)a->misses, "bench_rounds", (json_int_t)rounds));
        } else if (fv_cround_contributed(cr, i)) {
            a->misses = 0;
            a->benched_times = 0;
        }
    }
}

json_t *coord__bench_json(const coord_t *c, const agent_t *a)
{
    bool b = coord__benched(c, a);
    return json_pack("{s:I,s:b,s:I,s:I}", "misses", (json_int_t)a->misses, "benched", b,
                     "bench_rounds_left", (json_int_t)(b ? a->bench_until - c->bench.seq : 0),
                     "benched_times", (json_int_t)a->benched_times);
}

json_t *coord__bench_live(const coord_t *c)
{
    json_t *arr = json_array();
    for (const agent_t *a = c->agents; a != NULL; a = a->next) {
        if (!coord__benched(c, a) || a->conn == NULL)
            continue;
        json_t *o = coord__bench_json(c, a);
        json_object_set_new(o, "agent", json_string(a->name));
        json_array_append_new(arr, o);
    }
    return arr;
}
