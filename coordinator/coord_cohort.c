/* coord_cohort.c - each agent's status in the running job, for the operator; the join
 * deadline and the job's "cohort" policies (protocols/fv_job.h).
 *
 * Status (agent_t.js), per agent, for the job being run:
 *   waiting   offered (JOB_OFFER queued), no answer yet
 *   accepted  JOB_ACCEPT (time)
 *   refused   JOB_REFUSE: its category (fv_wire.h) and sentence as the agent sent them
 *             (a sentence without the bank's data, agent/agent_refuse.c), and the time
 *   gone      a member (it had accepted) whose session closed, with the time and the
 *             round; it stays gone until it reconnects (then waiting: offered again)
 * Each change is logged (job_refused {agent, category, reason}, member_lost {agent,
 * round}, member_back {agent}), recorded in the state (fv_state_job_agent_status: job
 * show of a finished job still says who refused and why) and shown live
 * (coord__cohort_live: job show, job watch, status).
 *
 * The join deadline: a job that waits for its cohort (ST_WAITING: fewer than min_agents
 * accepted, connected and not benched) for deadlines.join_ms - from its start, or from
 * the moment it had to wait again after losing members - fails with a reason naming the
 * refusals by category, the members gone and the agents that never answered
 * (on_join_deadline "fail", the default), or waits on and says on whom ("wait": logged
 * once per wait, cohort_waiting). A member lost mid-job: on_member_lost "continue" (the
 * default) runs the next rounds with the members still connected once min_agents are
 * there (the round in flight already went on without it: fv_cround_lost); "wait" holds
 * the next round until every lost member is back with an answer (coord__cohort_hold),
 * and the join deadline does not fail a job held that way.
 *
 * Clocks: the deadline on uv_now (coord__now_ms); the times shown are wall-clock
 * (coord_wall_ms), as every time the admin port shows.
 * Threading: the loop thread only. Ownership: the statuses live in the agents (agent_t),
 * cleared at the job's end (coord__cohort_reset).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "coord-int.h"

static const char *const js_names[] = {"none", "waiting", "accepted", "refused", "gone"};

static bool running(const coord_t *c)
{
    return c->job != NULL && (c->run.state == ST_WAITING || c->run.state == ST_ROUND);
}

/* The status in memory, then in the state (a failure there is logged: the job goes on). */
static void set_status(coord_t *c, agent_t *a, uint8_t js, const char *category, const char *reason,
                       int64_t round)
{
    a->js = js;
    a->js_at_ms = coord_wall_ms();
    fv_diag_t d;
    if (fv_state_job_agent_status(c->st, c->run.job_id, a->name, js_names[js], category, reason,
                                  round, a->js_at_ms, &d) != 0)
        coord_logj("error", "state_agent_failed",
                   json_pack("{s:s,s:s}", "agent", a->name, "why", d.msg));
}

void coord__cohort_offered(coord_t *c, agent_t *a)
{
    if (!running(c))
        return;
    if (a->js == COORD_JS_GONE)
        coord_logj("info", "member_back",
                   json_pack("{s:s,s:s,s:f}", "agent", a->name, "job", c->run.job_hex, "gone_s",
                             (double)(coord_wall_ms() - a->js_at_ms) / 1000.0));
    set_status(c, a, COORD_JS_WAITING, NULL, NULL, -1);
}

void coord__cohort_accepted(coord_t *c, agent_t *a)
{
    if (!running(c))
        return;
    a->js_lost = false;
    set_status(c, a, COORD_JS_ACCEPTED, NULL, NULL, -1);
}

void coord__cohort_refused(coord_t *c, agent_t *a, const fv_msg_t *m, bool current, bool left)
{
    const char *cat = fv_refuse_category_name(m->u.job_refuse.category);
    coord_logj("warn", left ? "job_left" : "job_refused",
               json_pack("{s:s,s:s,s:s,s:s#}", "agent", a->name, "job", c->run.job_hex, "category",
                         cat, "reason", m->u.job_refuse.reason.ptr,
                         (int)m->u.job_refuse.reason.len));
    coord_audit(c, NULL, left ? "agent.left_job" : "agent.refused_job",
                json_pack("{s:s,s:s,s:s,s:s#}", "agent", a->name, "job", c->run.job_id, "category",
                          cat, "reason", m->u.job_refuse.reason.ptr,
                          (int)m->u.job_refuse.reason.len));
    if (!running(c) || !current)
        return; /* (a refusal of another job: logged, not this job's status) */
    /* the reason is printable text of at most FV_WIRE_TEXT_MAX bytes (the wire checked) */
    size_t n = m->u.job_refuse.reason.len;
    if (n > FV_WIRE_TEXT_MAX)
        n = FV_WIRE_TEXT_MAX;
    memcpy(a->js_reason, m->u.job_refuse.reason.ptr, n);
    a->js_reason[n] = '\0';
    a->js_cat = (uint8_t)m->u.job_refuse.category;
    a->js_lost = false;
    set_status(c, a, COORD_JS_REFUSED, cat, a->js_reason, -1);
}

void coord__cohort_schema_refused(coord_t *c, agent_t *a, const char *category, const char *reason)
{
    if (!running(c))
        return;
    snprintf(a->js_reason, sizeof a->js_reason, "%s", reason);
    a->js_cat = (uint8_t)fv_refuse_category_parse(category, strlen(category));
    a->js_lost = false;
    set_status(c, a, COORD_JS_REFUSED, fv_refuse_category_name(a->js_cat), a->js_reason, -1);
}

void coord__cohort_closed(coord_t *c, agent_t *a)
{
    if (!running(c) || !a->accepted || c->stopping)
        return;
    a->js_round = c->rnd.round;
    a->js_lost = true;
    set_status(c, a, COORD_JS_GONE, NULL, NULL, (int64_t)a->js_round);
    const char *policy = c->job->cohort.on_member_lost == FV_JOB_LOST_WAIT ? "wait" : "continue";
    coord_logj("warn", "member_lost",
               json_pack("{s:s,s:s,s:I,s:s}", "agent", a->name, "job", c->run.job_hex, "round",
                         (json_int_t)a->js_round, "on_member_lost", policy));
    coord_audit(c, NULL, "agent.lost",
                json_pack("{s:s,s:s,s:I}", "agent", a->name, "job", c->run.job_id, "round",
                          (json_int_t)a->js_round));
}

void coord__cohort_reset(coord_t *c)
{
    for (agent_t *a = c->agents; a != NULL; a = a->next) {
        a->js = COORD_JS_NONE;
        a->js_lost = false;
        a->js_reason[0] = '\0';
    }
    c->run.wait_since = 0;
    c->run.wait_logged = false;
}

bool coord__cohort_hold(const coord_t *c)
{
    if (c->job == NULL || c->job->cohort.on_member_lost != FV_JOB_LOST_WAIT)
        return false;
    for (const agent_t *a = c->agents; a != NULL; a = a->next)
        if (a->js_lost)
            return true;
    return false;
}

size_t coord__cohort_n_accepted(const coord_t *c)
{
    size_t n = 0;
    for (const agent_t *a = c->agents; a != NULL; a = a->next)
        n += a->conn != NULL && a->accepted;
    return n;
}

/* ---- the sentence ---------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t cap, len;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf_t *b, const char *fmt, ...)
{
    if (b->len + 1 >= b->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    b->len += (size_t)n;
    if (b->len >= b->cap) { /* cut: say so */
        b->len = b->cap - 1;
        if (b->cap > 4)
            memcpy(b->p + b->cap - 4, "...", 4);
    }
}

/* "HH:MM:SSZ" of a wall-clock time. */
void coord__clock_txt(int64_t ms, char out[16])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, 16, "%H:%M:%SZ", &tm) == 0)
        snprintf(out, 16, "?");
}

/* One group of agents in the sentence: "; <label>: a (x), b (y)". */
static void list_group(const coord_t *c, sbuf_t *b, uint8_t js, bool connected_only,
                       const char *label)
{
    bool first = true;
    for (const agent_t *a = c->agents; a != NULL; a = a->next) {
        if (a->js != js || (connected_only && a->conn == NULL))
            continue;
        sb_add(b, "%s%s", first ? "; " : ", ", first ? label : "");
        if (first)
            sb_add(b, ": ");
        first = false;
        if (js == COORD_JS_REFUSED)
            sb_add(b, "%s (%s)", a->name, fv_refuse_category_name(a->js_cat));
        else if (js == COORD_JS_GONE) {
            char t[16];
            coord__clock_txt(a->js_at_ms, t);
            sb_add(b, "%s (since %s, round %" PRIu64 ")", a->name, t, a->js_round);
        } else
            sb_add(b, "%s", a->name);
    }
}

/* "A of min_agents M accepted; refused: ...; gone: ...; <silent>: ...; not connected: ..."
 * (silent: "waiting on" live, "no answer from" in a failure). */
static void cohort_sentence(const coord_t *c, sbuf_t *b, const char *silent)
{
    sb_add(b, "%zu of min_agents %u accepted", coord__cohort_n_accepted(c),
           (unsigned)c->job->min_agents);
    list_group(c, b, COORD_JS_REFUSED, false, "refused");
    list_group(c, b, COORD_JS_GONE, false, "gone");
    list_group(c, b, COORD_JS_WAITING, false, silent);
    list_group(c, b, COORD_JS_NONE, false, "not connected");
}

/* ---- the join deadline ------------------------------------------------------------ */

void coord__cohort_tick(coord_t *c)
{
    /* The schema round (coord_schema.c) keeps its own join deadline: no job machine
     * exists before the schema is fixed, and this one's clock starts after it. */
    if (!running(c) || c->run.state != ST_WAITING || c->run.files_busy || c->run.abort_requested ||
        coord__schema_collecting(c) || c->model.jm == NULL) {
        c->run.wait_since = 0;
        c->run.wait_logged = false;
        return;
    }
    uint64_t now = coord__now_ms(c);
    if (c->run.wait_since == 0)
        c->run.wait_since = now;
    if (now - c->run.wait_since < c->job->deadlines.join_ms)
        return;
    bool hold = coord__cohort_hold(c);
    double join_s = (double)c->job->deadlines.join_ms / 1000.0;
    char text[480];
    sbuf_t b = {text, sizeof text, 0};
    text[0] = '\0';
    if (hold || c->job->cohort.on_join_deadline == FV_JOB_JOIN_WAIT) {
        if (c->run.wait_logged)
            return;
        c->run.wait_logged = true;
        cohort_sentence(c, &b, "waiting on");
        coord_logj("warn", "cohort_waiting",
                   json_pack("{s:s,s:f,s:s,s:s}", "job", c->run.job_hex, "join_s", join_s, "why",
                             hold ? "on_member_lost: wait (a lost member is not back)"
                                  : "on_join_deadline: wait",
                             "cohort", text));
        return;
    }
    cohort_sentence(c, &b, "no answer from");
    snprintf(c->run.fail_why, sizeof c->run.fail_why,
             "cohort not formed by the join deadline (%g s): %s", join_s, text);
    coord_logj("error", "cohort_not_formed",
               json_pack("{s:s,s:f,s:I,s:i,s:s}", "job", c->run.job_hex, "join_s", join_s,
                         "accepted", (json_int_t)coord__cohort_n_accepted(c), "min_agents",
                         (int)c->job->min_agents, "why", c->run.fail_why));
    c->run.exit_code = EXIT_FAIL;
    c->run.wait_since = 0;
    coord__job_finish(c);
}

/* ---- live ----------------------------------------------------------------------- */

json_t *coord__cohort_live(coord_t *c)
{
    if (!running(c))
        return json_null();
    if (coord__schema_collecting(c)) /* no offer yet: who disclosed, refused, is asked */
        return coord__schema_cohort(c);
    json_t *agents = json_array(), *waiting_on = json_array();
    for (agent_t *a = c->agents; a != NULL; a = a->next) {
        json_t *o = json_pack("{s:s,s:s,s:b}", "agent", a->name, "status",
                              a->js == COORD_JS_NONE ? "not connected" : js_names[a->js],
                              "connected", a->conn != NULL);
        if (o == NULL)
            continue;
        if (a->js != COORD_JS_NONE) {
            char t[16];
            coord__clock_txt(a->js_at_ms, t);
            json_object_set_new(o, "at_ms", json_integer(a->js_at_ms));
            json_object_set_new(o, "at", json_string(t));
        }
        if (a->js == COORD_JS_REFUSED) {
            json_object_set_new(o, "category", json_string(fv_refuse_category_name(a->js_cat)));
            json_object_set_new(o, "reason", json_string(a->js_reason));
        }
        if (a->js == COORD_JS_GONE)
            json_object_set_new(o, "round", json_integer((json_int_t)a->js_round));
        if (a->js == COORD_JS_WAITING || (a->js_lost && a->js == COORD_JS_GONE))
            json_array_append_new(waiting_on, json_string(a->name));
        json_array_append_new(agents, o);
    }
    char text[600];
    sbuf_t b = {text, sizeof text, 0};
    text[0] = '\0';
    bool hold = coord__cohort_hold(c);
    if (c->run.state == ST_WAITING) {
        sb_add(&b, "%s: ", hold ? "waiting for lost members" : "waiting for agents");
        cohort_sentence(c, &b, "waiting on");
    }
    json_t *o = json_pack(
        "{s:o,s:o,s:I,s:i,s:s,s:s,s:b}", "agents", agents, "waiting_on", waiting_on, "accepted",
        (json_int_t)coord__cohort_n_accepted(c), "min_agents", (int)c->job->min_agents,
        "on_join_deadline", c->job->cohort.on_join_deadline == FV_JOB_JOIN_WAIT ? "wait" : "fail",
        "on_member_lost", c->job->cohort.on_member_lost == FV_JOB_LOST_WAIT ? "wait" : "continue",
        "held", hold);
    if (o == NULL)
        return json_null();
    json_object_set_new(o, "summary", text[0] != '\0' ? json_string(text) : json_null());
    uint64_t now = coord__now_ms(c);
    json_object_set_new(o, "waiting_s",
                        c->run.state == ST_WAITING && c->run.wait_since != 0
                            ? json_real((double)(now - c->run.wait_since) / 1000.0)
                            : json_null());
    json_object_set_new(o, "join_s", json_real((double)c->job->deadlines.join_ms / 1000.0));
    return o;
}
