/* coord_schema.c - federated schema discovery: the schema round that fixes an open job's
 * schema before the job is offered.
 *
 * When: coord__job_try_next loads a job whose submitted spec has an open schema
 * (model/fv_schema.h). If the state holds its resolved spec (state_schemas.c), the job runs
 * with that one at once (a restart: same resolved spec, same wire digest, no second round).
 * Otherwise the job is "running" in the state and ST_WAITING here, but collecting: every
 * connected agent, and each that connects while it collects, gets SCHEMA_QUERY {job (the
 * submitted spec's digest, the job's id), spec} instead of JOB_OFFER (coord__send_offer's
 * hook); nothing else a member sends is taken for the job meanwhile.
 *
 * Answers (SCHEMA_VOCAB, hostile): the job must be the query's (else a protocol error and
 * the connection closes); one answer per agent (a second is logged and dropped); an
 * answer from an agent not asked is dropped; the body is capped by the wire layer
 * (FV_WIRE_VOCAB_MAX) and the agents kept by COORD_SCHEMA_AGENTS_MAX; each vocabulary is
 * checked on arrival by fv_schema_resolve against the open schema alone (shape, column
 * names, caps: fv_schema.h), and one that fails counts as refused, category "protocol".
 * A refusal keeps its category word.
 *
 * The end: once every connected agent has answered and at least min_agents gave a
 * vocabulary (checked on every answer and every tick, so an agent that leaves without
 * answering does not block it), or at the join deadline (deadlines.join_ms after the
 * round began) with at least min_agents vocabularies: fv_schema_resolve over the
 * vocabularies in agent-name order (origins: the agents' names), fv_job_resolve_schema,
 * and in one state transaction the resolved spec stored and the audit record
 * job.schema_fixed {job, schema_sha256, version: 1, contributors, refused: [{agent,
 * category}]}; then the log line schema_fixed, c->job = the resolved job, c->run.spec its
 * canonical JSON, c->run.digest its digest (the wire id from here on; c->run.job_id stays
 * the state id), and the job runs as any other (coord__job_resolved). schema.json (the
 * resolved schema's canonical JSON) is written into the job's directory when it is made.
 * Crash point (FV_TEST_KILL_AT): schema-fixed, right after that transaction commits; the
 * restarted coordinator resumes with the stored spec (tests/integration/fed_schema.py).
 * With fewer vocabularies at the deadline the job fails with the reason: "schema
 * discovery: 2 of min_agents 4 banks disclosed a vocabulary; refused: bank-c (policy); no
 * answer from: bank-d; not connected: bank-e"; with the job's cohort.on_join_deadline
 * "wait" it goes on collecting instead (cohort_waiting logged once). A refusal does not
 * stand: an agent that reconnects (its bank may have changed its policy) is asked again;
 * a vocabulary does.
 *
 * The operator's view: while collecting, coord__cohort_live is this round's
 * (coord__schema_cohort: each agent disclosed, refused with its category, waiting, or not
 * connected, and the sentence above without its prefix), so job show, job watch and
 * status say who answered what; a refusal is also stored as the agent's status
 * (coord__cohort_schema_refused), so job show of a job that failed here names it.
 *
 * Threads: the loop thread only (resolving is a merge of a few lists: milliseconds).
 * Ownership: the collection (c->schema) owns the answers' copies; it is freed when the
 * round ends or the job is reset.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "coord-int.h"
#include "fv_schema.h"

#define COORD_SCHEMA_AGENTS_MAX 1024 /* answers kept (at most 1 MiB each) */

typedef struct sanswer {
    char name[FV_NAME_MAX + 1];
    bool asked, answered, ok;
    int64_t at_ms; /* wall clock: when it was asked, then when it answered */
    char category[FV_WIRE_CATEGORY_MAX + 1];
    char *vocab; /* ok: the vocabulary text (NUL-terminated copy) */
    size_t len;
} sanswer_t;

struct coord_schema {
    uint64_t start_ms, deadline_ms; /* coord__now_ms */
    bool wait_logged;               /* on_join_deadline "wait": past the deadline, said once */
    sanswer_t *ans;
    size_t n;
};

bool coord__schema_collecting(const coord_t *c)
{
    return c->schema != NULL;
}

static void collection_free(coord_t *c)
{
    if (c->schema == NULL)
        return;
    for (size_t i = 0; i < c->schema->n; i++)
        free(c->schema->ans[i].vocab);
    free(c->schema->ans);
    free(c->schema);
    c->schema = NULL;
}

void coord__schema_reset(coord_t *c)
{
    collection_free(c);
    c->run.schema_fixed = false;
}

static sanswer_t *answer_of(coord_t *c, const char *name, bool add)
{
    struct coord_schema *s = c->schema;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->ans[i].name, name) == 0)
            return &s->ans[i];
    if (!add || s->n >= COORD_SCHEMA_AGENTS_MAX)
        return NULL;
    sanswer_t *p = realloc(s->ans, (s->n + 1) * sizeof *p);
    if (p == NULL)
        return NULL;
    s->ans = p;
    memset(&p[s->n], 0, sizeof p[s->n]);
    snprintf(p[s->n].name, sizeof p[s->n].name, "%s", name);
    return &p[s->n++];
}

/* Switches the run to the resolved job: spec, wire digest, SecAgg's job id. c->job is
 * replaced (the old one freed); spec is taken. */
static int run_with(coord_t *c, fv_job_t *job, char *spec, size_t len)
{
    int r = fv_job_digest(job, c->run.digest);
    if (r != 0) {
        fv_job_free(job);
        free(spec);
        return r;
    }
    fv_job_free(c->job);
    c->job = job;
    free(c->run.spec);
    c->run.spec = spec;
    c->run.spec_len = len;
    coord__hexn(c->run.digest, 32, c->run.wire_id);
    c->run.job_id64 = 0;
    for (int i = 7; i >= 0; i--)
        c->run.job_id64 = (c->run.job_id64 << 8) | c->run.digest[i];
    c->run.schema_fixed = true;
    return 0;
}

int coord__schema_begin(coord_t *c, char *why, size_t why_len)
{
    fv_diag_t d;
    char *stored = NULL;
    int r = fv_state_job_schema_spec(c->st, c->run.job_id, &stored, &d);
    if (r == 0) {
        /* resumed: the resolved spec stored when the schema was fixed */
        fv_job_t *job = NULL;
        char *canon = NULL;
        size_t len = 0;
        if ((r = fv_job_from_json("resolved spec", stored, strlen(stored), &job, &d)) != 0)
            snprintf(why, why_len, "stored resolved spec: %.400s", d.msg);
        else if ((r = fv_job_to_json(job, &canon, &len)) != 0)
            snprintf(why, why_len, "stored resolved spec cannot be encoded");
        free(stored);
        if (r != 0) {
            fv_job_free(job);
            return r;
        }
        return run_with(c, job, canon, len);
    }
    if (r != UV_ENOENT) {
        snprintf(why, why_len, "resolved spec: %.400s", d.msg);
        return r;
    }
    c->schema = calloc(1, sizeof *c->schema);
    if (c->schema == NULL) {
        snprintf(why, why_len, "out of memory");
        return FV_ENOMEM;
    }
    c->schema->start_ms = coord__now_ms(c);
    c->schema->deadline_ms = c->schema->start_ms + c->job->deadlines.join_ms;
    char prev[16] = "";
    if (fv_state_job_status(c->st, c->run.job_id, prev, &d) != 0 ||
        (strcmp(prev, "running") != 0 && fv_state_job_set_status(c->st, c->run.job_id, "running",
                                                                 NULL, coord_wall_ms(), &d) != 0)) {
        collection_free(c);
        coord__state_fatal(c, "schema round start", FV_EIO, &d);
        return 1; /* (the daemon stops) */
    }
    coord_logj("info", "schema_round_started",
               json_pack("{s:s,s:s,s:i,s:I}", "job", c->run.job_hex, "name", c->job->name,
                         "min_agents", (int)c->job->min_agents, "join_ms",
                         (json_int_t)c->job->deadlines.join_ms));
    c->run.state = ST_WAITING;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (a->conn != NULL)
            coord__schema_query(c, a);
    return 1;
}

void coord__schema_query(coord_t *c, agent_t *a)
{
    sanswer_t *e = answer_of(c, a->name, true);
    if (e == NULL || (e->answered && e->ok))
        return; /* (disclosed before a reconnect: its vocabulary stands) */
    /* a refusal does not stand: a bank that changed its policy and reconnected is asked
     * again (on_join_deadline "wait" waits for exactly that) */
    e->answered = false;
    e->category[0] = '\0';
    e->asked = true;
    e->at_ms = coord_wall_ms();
    fv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = FV_MSG_SCHEMA_QUERY;
    memcpy(m.u.schema_query.job, c->run.digest, 32);
    m.u.schema_query.spec = (const uint8_t *)c->run.spec;
    m.u.schema_query.spec_len = c->run.spec_len;
    coord__oq_push_msg(a, &m, c->run.spec, c->run.spec_len, (const void **)&m.u.schema_query.spec);
}

/* An agent's standing in the schema round. */
typedef enum { SA_NOT_CONNECTED, SA_WAITING, SA_DISCLOSED, SA_REFUSED } sa_t;
static const char *const sa_names[] = {"not connected", "waiting", "disclosed", "refused"};

static sa_t standing(coord_t *c, const agent_t *a, const sanswer_t **ret)
{
    const sanswer_t *e = answer_of(c, a->name, false);
    *ret = e;
    if (e != NULL && e->answered)
        return e->ok ? SA_DISCLOSED : SA_REFUSED;
    if (a->conn != NULL && e != NULL && e->asked)
        return SA_WAITING;
    return SA_NOT_CONNECTED;
}

static void add_text(char *out, size_t cap, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_text(char *out, size_t cap, size_t *used, const char *fmt, ...)
{
    if (*used + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *used, cap - *used, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *used += (size_t)n < cap - *used ? (size_t)n : cap - *used - 1;
}

/* "<prefix>2 of min_agents 4 banks disclosed a vocabulary; refused: bank-c (policy),
 * bank-d (protocol); <silent>: bank-e; not connected: bank-f" (the failure's reason:
 * prefix "schema discovery: ", silent "no answer from"; the live summary: no prefix,
 * silent "waiting on"). Agents in the coordinator's list order; "refused: none" when no
 * one refused. */
static void schema_sentence(coord_t *c, char *out, size_t cap, const char *prefix,
                            const char *silent)
{
    size_t used = 0, ok = 0;
    for (size_t i = 0; i < c->schema->n; i++)
        ok += c->schema->ans[i].answered && c->schema->ans[i].ok;
    out[0] = '\0';
    add_text(out, cap, &used, "%s%zu of min_agents %u banks disclosed a vocabulary", prefix, ok,
             (unsigned)c->job->min_agents);
    static const sa_t groups[] = {SA_REFUSED, SA_WAITING, SA_NOT_CONNECTED};
    for (size_t g = 0; g < 3; g++) {
        bool first = true;
        for (const agent_t *a = c->agents; a != NULL; a = a->next) {
            const sanswer_t *e;
            if (standing(c, a, &e) != groups[g])
                continue;
            add_text(out, cap, &used, "%s%s%s", first ? "; " : ", ",
                     first ? (g == 0   ? "refused: "
                              : g == 1 ? silent
                                       : "not connected: ")
                           : "",
                     first && g == 1 ? ": " : "");
            if (groups[g] == SA_REFUSED)
                add_text(out, cap, &used, "%s (%s)", a->name, e->category);
            else
                add_text(out, cap, &used, "%s", a->name);
            first = false;
        }
        if (first && g == 0)
            add_text(out, cap, &used, "; refused: none");
    }
}

static int cmp_ans(const void *x, const void *y)
{
    return strcmp(((const sanswer_t *)x)->name, ((const sanswer_t *)y)->name);
}

/* Resolves from the vocabularies received, stores, audits, and runs the job. */
static void resolve(coord_t *c)
{
    struct coord_schema *s = c->schema;
    qsort(s->ans, s->n, sizeof *s->ans, cmp_ans);
    const char **vocabs = calloc(s->n + 1, sizeof *vocabs);
    const char **origins = calloc(s->n + 1, sizeof *origins);
    size_t *lens = calloc(s->n + 1, sizeof *lens);
    json_t *contrib = json_array(), *refused = json_array();
    fv_schema_t *closed = NULL;
    fv_job_t *job = NULL;
    char *spec = NULL, *sjson = NULL, *ctext = NULL, *rtext = NULL, why[768] = "";
    size_t spec_len = 0, sjson_len = 0, n = 0;
    fv_diag_t d;
    int r = FV_ENOMEM;
    if (vocabs == NULL || origins == NULL || lens == NULL || contrib == NULL || refused == NULL)
        goto out;
    for (size_t i = 0; i < s->n; i++) {
        const sanswer_t *e = &s->ans[i];
        if (e->answered && e->ok) {
            vocabs[n] = e->vocab, lens[n] = e->len, origins[n] = e->name, n++;
            json_array_append_new(contrib, json_string(e->name));
        } else if (e->answered)
            json_array_append_new(
                refused, json_pack("{s:s,s:s}", "agent", e->name, "category", e->category));
    }
    if ((r = fv_schema_resolve(c->job->schema, vocabs, lens, origins, n, &closed, &d)) != 0 ||
        (r = fv_job_resolve_schema(c->job, closed, &job, &d)) != 0) {
        snprintf(why, sizeof why, "schema discovery: %.600s", d.msg);
        goto out;
    }
    uint8_t h[32];
    char sha[65];
    if ((r = fv_job_to_json(job, &spec, &spec_len)) != 0 ||
        (r = fv_schema_to_json(job->schema, &sjson, &sjson_len)) != 0) {
        snprintf(why, sizeof why, "schema discovery: the resolved job cannot be encoded");
        goto out;
    }
    crypto_hash_sha256(h, (const uint8_t *)sjson, sjson_len);
    coord__hexn(h, 32, sha);
    ctext = json_dumps(contrib, JSON_COMPACT);
    rtext = json_dumps(refused, JSON_COMPACT);
    if (ctext == NULL || rtext == NULL) {
        r = FV_ENOMEM;
        snprintf(why, sizeof why, "schema discovery: out of memory");
        goto out;
    }
    if (coord__txn_begin(c) != 0)
        goto out_quiet;
    if ((r = fv_state_job_schema_set(c->st, c->run.job_id, spec, sha, 1, ctext, rtext,
                                     coord_wall_ms(), &d)) != 0) {
        c->in_txn = false;
        fv_state_rollback(c->st);
        coord__state_fatal(c, "resolved schema", r, &d);
        goto out_quiet;
    }
    coord_audit(c, NULL, "job.schema_fixed",
                json_pack("{s:s,s:s,s:i,s:O,s:O}", "job", c->run.job_id, "schema_sha256", sha,
                          "version", 1, "contributors", contrib, "refused", refused));
    if (coord__txn_commit(c) != 0)
        goto out_quiet;
    coord__crash_point("schema-fixed"); /* stored and audited, the job not yet offered */
    coord_logj("info", "schema_fixed",
               json_pack("{s:s,s:s,s:i,s:O,s:O}", "job", c->run.job_hex, "schema_sha256", sha,
                         "version", 1, "contributors", contrib, "refused", refused));
    collection_free(c);
    if (run_with(c, job, spec, spec_len) != 0) {
        job = NULL, spec = NULL;
        coord__job_unrunnable(c, FV_EINVAL, "schema discovery: the resolved job has no digest");
        goto out_quiet;
    }
    job = NULL, spec = NULL; /* taken */
    coord__job_resolved(c);
    goto out_quiet;
out:
    if (r != 0) {
        collection_free(c);
        coord__job_unrunnable(c, r, why[0] ? why : "schema discovery failed");
    }
out_quiet:
    free(vocabs), free(origins), free(lens);
    json_decref(contrib), json_decref(refused);
    fv_schema_free(closed);
    fv_job_free(job);
    free(spec), free(sjson), free(ctext), free(rtext);
}

/* Every connected agent answered and enough gave a vocabulary; or the deadline. */
static void check_done(coord_t *c)
{
    struct coord_schema *s = c->schema;
    size_t ok = 0, waiting = 0;
    for (size_t i = 0; i < s->n; i++)
        ok += s->ans[i].answered && s->ans[i].ok;
    for (agent_t *a = c->agents; a != NULL; a = a->next) {
        if (a->conn == NULL)
            continue;
        const sanswer_t *e = answer_of(c, a->name, false);
        waiting += e == NULL || !e->answered;
    }
    bool late = coord__now_ms(c) >= s->deadline_ms;
    if (ok >= c->job->min_agents && (waiting == 0 || late)) {
        resolve(c);
        return;
    }
    if (!late)
        return;
    char why[512];
    if (c->job->cohort.on_join_deadline == FV_JOB_JOIN_WAIT) {
        /* the job's policy: go on collecting, and say once on whom it waits */
        if (!s->wait_logged) {
            s->wait_logged = true;
            schema_sentence(c, why, sizeof why, "", "waiting on");
            coord_logj("warn", "cohort_waiting",
                       json_pack("{s:s,s:f,s:s,s:s}", "job", c->run.job_hex, "join_s",
                                 (double)c->job->deadlines.join_ms / 1000.0, "why",
                                 "on_join_deadline: wait", "cohort", why));
        }
        return;
    }
    schema_sentence(c, why, sizeof why, "schema discovery: ", "no answer from");
    collection_free(c);
    coord__job_unrunnable(c, UV_ETIMEDOUT, why);
}

void coord__schema_tick(coord_t *c)
{
    if (c->schema != NULL && !c->stopping)
        check_done(c);
}

bool coord__schema_on_msg(coord_t *c, agent_t *a, const fv_msg_t *m)
{
    if (m->type != FV_MSG_SCHEMA_VOCAB && c->schema == NULL)
        return false;
    if (c->schema == NULL) {
        coord_logj_peer(c, "info", a->name, "stale_message",
                        json_pack("{s:s,s:s}", "agent", a->name, "type", "schema_vocab"));
        return true;
    }
    if (m->type != FV_MSG_SCHEMA_VOCAB) {
        /* nothing but the vocabulary counts for a job whose schema is being fixed */
        coord_logj_peer(c, "warn", a->name, "stale_message",
                        json_pack("{s:s,s:s,s:s}", "agent", a->name, "type",
                                  fv_msg_type_name(m->type), "why",
                                  "schema discovery in progress"));
        return true;
    }
    if (sodium_memcmp(m->u.schema_vocab.job, c->run.digest, 32) != 0) {
        if (a->conn != NULL)
            fv_conn_close(a->conn, FV_EPROTO, "schema_vocab for another job");
        return true;
    }
    sanswer_t *e = answer_of(c, a->name, false);
    if (e == NULL || !e->asked || e->answered) {
        coord_logj_peer(c, "warn", a->name, "schema_answer_dropped",
                        json_pack("{s:s,s:s}", "agent", a->name, "why",
                                  e != NULL && e->answered ? "a second answer" : "not asked"));
        return true;
    }
    e->answered = true;
    e->at_ms = coord_wall_ms();
    fv_diag_t d;
    if (m->u.schema_vocab.status != 0) {
        snprintf(e->category, sizeof e->category, "%.*s", (int)m->u.schema_vocab.category.len,
                 m->u.schema_vocab.category.ptr);
        coord_logj("warn", "schema_refused",
                   json_pack("{s:s,s:s,s:s,s:s}", "agent", a->name, "job", c->run.job_hex,
                             "category", e->category, "err",
                             fv_err_name(m->u.schema_vocab.status)));
        char reason[96];
        snprintf(reason, sizeof reason, "schema discovery: no vocabulary disclosed (%s)",
                 fv_err_name(m->u.schema_vocab.status));
        coord__cohort_schema_refused(c, a, e->category, reason);
    } else {
        /* checked alone now, so a bad one is this agent's refusal, not the round's end */
        const char *text = m->u.schema_vocab.body.ptr;
        size_t len = m->u.schema_vocab.body.len;
        const char *origin = a->name;
        fv_schema_t *one = NULL;
        int r = fv_schema_resolve(c->job->schema, &text, &len, &origin, 1, &one, &d);
        fv_schema_free(one);
        e->vocab = r == 0 ? malloc(len + 1) : NULL;
        if (e->vocab == NULL) {
            snprintf(e->category, sizeof e->category, "protocol");
            coord_logj_peer(c, "warn", a->name, "schema_vocab_refused",
                            json_pack("{s:s,s:s,s:s}", "agent", a->name, "job", c->run.job_hex,
                                      "why", r != 0 ? d.msg : "out of memory"));
            coord__cohort_schema_refused(c, a, e->category,
                                         r != 0 ? "schema discovery: its vocabulary was refused "
                                                  "(the coordinator's log says why)"
                                                : "schema discovery: out of memory");
        } else {
            memcpy(e->vocab, text, len);
            e->vocab[len] = '\0';
            e->len = len;
            e->ok = true;
            coord_logj("info", "schema_vocab",
                       json_pack("{s:s,s:s,s:I}", "agent", a->name, "job", c->run.job_hex, "bytes",
                                 (json_int_t)len));
        }
    }
    check_done(c);
    return true;
}

void coord__schema_write_file(coord_t *c)
{
    if (!c->run.schema_fixed || c->run.dir[0] == '\0' || c->job == NULL)
        return;
    char *js = NULL, path[4096], tmp[4096];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/schema.json", c->run.dir);
    snprintf(tmp, sizeof tmp, "%s/.schema.json.tmp", c->run.dir);
    if (fv_schema_to_json(c->job->schema, &js, &len) != 0)
        return;
    FILE *f = fopen(tmp, "w");
    bool ok = f != NULL && fwrite(js, 1, len, f) == len && fputc('\n', f) != EOF;
    if (f != NULL && fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, path) != 0)
        ok = false;
    free(js);
    coord_logj(ok ? "info" : "error", "schema_written",
               json_pack("{s:s,s:s,s:b}", "job", c->run.job_hex, "path", path, "ok", ok));
}

json_t *coord__schema_live(coord_t *c)
{
    if (c->schema == NULL)
        return NULL;
    size_t ok = 0, refused = 0;
    for (size_t i = 0; i < c->schema->n; i++) {
        ok += c->schema->ans[i].answered && c->schema->ans[i].ok;
        refused += c->schema->ans[i].answered && !c->schema->ans[i].ok;
    }
    return json_pack("{s:I,s:I,s:f}", "vocabularies", (json_int_t)ok, "refused",
                     (json_int_t)refused, "elapsed_s",
                     (double)(coord__now_ms(c) - c->schema->start_ms) / 1000.0);
}

size_t coord__schema_answered(coord_t *c)
{
    size_t n = 0;
    for (size_t i = 0; c->schema != NULL && i < c->schema->n; i++)
        n += c->schema->ans[i].answered;
    return n;
}

json_t *coord__schema_cohort(coord_t *c)
{
    if (c->schema == NULL)
        return json_null();
    json_t *agents = json_array(), *waiting_on = json_array();
    size_t ok = 0;
    for (agent_t *a = c->agents; a != NULL && agents != NULL && waiting_on != NULL; a = a->next) {
        const sanswer_t *e;
        sa_t st = standing(c, a, &e);
        json_t *o = json_pack("{s:s,s:s,s:b}", "agent", a->name, "status", sa_names[st],
                              "connected", a->conn != NULL);
        if (o == NULL)
            continue;
        if (e != NULL && st != SA_NOT_CONNECTED) {
            char t[16];
            coord__clock_txt(e->at_ms, t);
            json_object_set_new(o, "at_ms", json_integer(e->at_ms));
            json_object_set_new(o, "at", json_string(t));
        }
        if (st == SA_REFUSED) {
            json_object_set_new(o, "category", json_string(e->category));
            json_object_set_new(o, "reason", json_string(a->js_reason));
        }
        ok += st == SA_DISCLOSED;
        if (st == SA_WAITING)
            json_array_append_new(waiting_on, json_string(a->name));
        json_array_append_new(agents, o);
    }
    char text[600];
    uint64_t now = coord__now_ms(c);
    /* past the deadline only with on_join_deadline "wait": say that it waits on */
    schema_sentence(c, text, sizeof text,
                    now >= c->schema->deadline_ms ? "past the join deadline, waiting: " : "",
                    "waiting on");
    return json_pack(
        "{s:s,s:o*,s:o*,s:I,s:I,s:i,s:s,s:s,s:b,s:s,s:f,s:f}", "round", "schema", "agents", agents,
        "waiting_on", waiting_on, "accepted", (json_int_t)0, "disclosed", (json_int_t)ok,
        "min_agents", (int)c->job->min_agents, "on_join_deadline",
        c->job->cohort.on_join_deadline == FV_JOB_JOIN_WAIT ? "wait" : "fail", "on_member_lost",
        c->job->cohort.on_member_lost == FV_JOB_LOST_WAIT ? "wait" : "continue", "held", false,
        "summary", text, "waiting_s", (double)(now - c->schema->start_ms) / 1000.0, "join_s",
        (double)c->job->deadlines.join_ms / 1000.0);
}
