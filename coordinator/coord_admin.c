/* coord_admin.c - the coordinator's admin port and its metrics endpoint.
 *
 * Admin port: a second fv_conn server on its own address, mutual TLS with the federation
 * CA, and only certificates of the admin role get past the handshake (an agent's is
 * refused with FV_EAUTH by fv_conn's role check). The exchange is ADMIN_REQ {id, cmd,
 * args} -> ADMIN_RESP {id, status, body, data} (protocols/fv_wire.h, "ADMIN"): args and
 * body are JSON objects as text; status is 0 or a negative code with body {"error": ...}.
 *
 * Every command, reads included, is audited with the admin's certificate name as actor
 * ("admin:NAME"), the command and the outcome; a command that changes something (job
 * submit or abort, CRL reload) also writes its own record. A CRL reload closes the live
 * sessions, agents' and admins', whose certificate it revokes before it answers (with how
 * many it closed); the admin sessions are kept in a list for that. `model.read` serves a stored
 * model file in chunks of at most FV_WIRE_ADMIN_DATA_MAX bytes; the read at offset 0 is
 * audited as model.exported. A peer's args are capped by the wire decoder (FV_WIRE_SPEC_MAX)
 * and parsed by jansson; every field is type-checked before use.
 *
 * Metrics: a fv_prom registry rendered at http://ADDR/metrics (coordinator/fv_prom.h):
 * agents connected, rounds completed and failed, SecAgg phase durations, bytes in and out
 * over the agent port, refusals by reason, jobs ended by status, admin commands. Traffic
 * counters are refreshed from the connections once a second (coord_metrics_refresh); the
 * longest loop callback of each round in thread CPU time (coord_loopstat.c) is observed
 * once per round.
 *
 * Threading: the loop thread only, like everything of the daemon.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "coord-int.h"
#include "fv-config.h"

/* ---- responses --------------------------------------------------------------------- */

static void respond(fv_conn_t *conn, uint32_t id, int status, json_t *body, const uint8_t *data,
                    size_t data_len)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(body);
    fv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = FV_MSG_ADMIN_RESP;
    m.u.admin_resp.id = id;
    m.u.admin_resp.status = status;
    if (text != NULL && strlen(text) > FV_WIRE_ADMIN_BODY_MAX) {
        free(text);
        text = strdup("{\"error\":\"the answer is larger than the admin body cap\"}");
        m.u.admin_resp.status = FV_ETOOBIG;
        data_len = 0;
    }
    m.u.admin_resp.body.ptr = text != NULL ? text : "{}";
    m.u.admin_resp.body.len = strlen(m.u.admin_resp.body.ptr);
    m.u.admin_resp.data = data;
    m.u.admin_resp.data_len = data_len;
    int r = fv_conn_send(conn, &m);
    if (r != 0)
        coord_logj("warn", "admin_send_failed",
                   json_pack("{s:s,s:s}", "addr", fv_conn_peer_addr(conn), "err", fv_err_name(r)));
    free(text);
}

static json_t *err_body(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *err_body(const char *fmt, ...)
{
    char buf[FV_DIAG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return json_pack("{s:s}", "error", buf);
}

/* ---- commands ---------------------------------------------------------------------- */

typedef struct req {
    coord_t *c;
    fv_conn_t *conn;
    uint32_t id;
    const char *cmd;
    json_t *args;
    char actor[FV_NAME_MAX + 8];
    json_t *audit;    /* details for the admin.* record (the handler may add to it) */
    bool close_after; /* the asking session's certificate was revoked: closed after the answer */
} req_t;

static int cmd_status(req_t *q, json_t **body)
{
    coord_t *c = q->c;
    fv_diag_t d;
    size_t connected = 0, known = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        connected += a->conn != NULL;
    json_t *agents = NULL;
    if (fv_state_agents_json(c->st, &agents, &d) == 0)
        known = json_array_size(agents);
    json_decref(agents);
    json_t *jobs = NULL;
    int r = fv_state_jobs_json(c->st, &jobs, &d);
    if (r != 0) {
        *body = err_body("%s", d.msg);
        return r;
    }
    json_t *counts = json_pack("{s:i,s:i,s:i,s:i,s:i}", "queued", 0, "running", 0, "done", 0,
                               "failed", 0, "aborted", 0);
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j)
    {
        const char *st = json_string_value(json_object_get(j, "status"));
        json_t *n = st != NULL ? json_object_get(counts, st) : NULL;
        if (n != NULL)
            json_integer_set(n, json_integer_value(n) + 1);
    }
    json_decref(jobs);
    json_t *job = json_null();
    if (c->job != NULL) {
        json_t *live = coord_job_live(c);
        job = json_pack("{s:s,s:s,s:s}", "id", c->run.job_id, "name", c->job->name, "status",
                        "running");
        if (live != NULL) {
            json_object_update(job, live);
            json_decref(live);
        }
    }
    *body = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:o,s:o}", "federation", c->federation,
                      "coordinator", c->self_name, "version", FV_VERSION " (" FV_COMMIT ")",
                      "uptime_s", (json_int_t)((uv_now(c->net.loop) - c->t_start_ms) / 1000),
                      "agents_connected", (json_int_t)connected, "agents_known", (json_int_t)known,
                      "job", job, "jobs", counts);
    return 0;
}

static int cmd_agents(req_t *q, json_t **body)
{
    coord_t *c = q->c;
    fv_diag_t d;
    json_t *known = NULL;
    int r = fv_state_agents_json(c->st, &known, &d);
    if (r != 0) {
        *body = err_body("%s", d.msg);
        return r;
    }
    size_t i;
    json_t *e;
    json_array_foreach(known, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        agent_t *a = NULL;
        for (agent_t *x = c->agents; x != NULL && name != NULL; x = x->next)
            if (strcmp(x->name, name) == 0)
                a = x;
        bool on = a != NULL && a->conn != NULL;
        json_object_set_new(e, "connected", json_boolean(on));
        json_object_set_new(e, "addr", on ? json_string(a->addr) : json_null());
        json_object_set_new(e, "in_job", json_boolean(on && a->accepted));
        if (a != NULL) {
            uint64_t in, out;
            coord_agent_traffic(a, &in, &out);
            json_object_set_new(e, "bytes_in", json_integer((json_int_t)in));
            json_object_set_new(e, "bytes_out", json_integer((json_int_t)out));
            json_t *bj = coord__bench_json(c, a); /* misses, bench */
            json_object_update(e, bj);
            json_decref(bj);
        }
    }
    *body = json_pack("{s:o}", "agents", known);
    return 0;
}

/* args.id: a job id or unique prefix -> the full id. */
static int job_arg(req_t *q, char id[65], json_t **body)
{
    const char *p = json_string_value(json_object_get(q->args, "id"));
    if (p == NULL) {
        *body = err_body("%s: args.id must be a string (a job id or prefix)", q->cmd);
        return FV_EINVAL;
    }
    fv_diag_t d;
    int r = fv_state_job_resolve(q->c->st, p, id, &d);
    if (r == UV_ENOENT)
        *body = err_body("no job with id %.64s", p);
    else if (r != 0)
        *body = err_body("%s", d.msg);
    else
        json_object_set_new(q->audit, "job", json_string(id));
    return r;
}

static int cmd_job_submit(req_t *q, json_t **body)
{
    json_t *spec = json_object_get(q->args, "spec");
    if (!json_is_object(spec)) {
        *body = err_body("job.submit: args.spec must be the job spec object");
        return FV_EINVAL;
    }
    char *text = json_dumps(spec, JSON_COMPACT);
    if (text == NULL)
        return FV_ENOMEM;
    fv_diag_t d;
    char id[65];
    int r = coord_job_submit(q->c, text, strlen(text), q->actor, id, &d);
    free(text);
    if (r == FV_EDUP) {
        *body = err_body("job %.16s already exists (same spec); change its seed or name to run "
                         "it again",
                         d.msg[0] != '\0' ? "" : "");
        /* name the existing id */
        fv_job_t *job = NULL;
        char *t2 = json_dumps(spec, JSON_COMPACT);
        uint8_t dg[32];
        if (t2 != NULL && fv_job_from_json("job", t2, strlen(t2), &job, &d) == 0 &&
            fv_job_digest(job, dg) == 0) {
            char hex[65];
            sodium_bin2hex(hex, sizeof hex, dg, 32);
            json_decref(*body);
            *body = err_body("job %s already exists (the same spec); change its seed or name "
                             "to run it again",
                             hex);
        }
        fv_job_free(job);
        free(t2);
        return r;
    }
    if (r != 0) {
        *body = err_body("%s", d.msg);
        return r;
    }
    json_object_set_new(q->audit, "job", json_string(id));
    char st[16] = "queued";
    fv_state_job_status(q->c->st, id, st, &d);
    *body = json_pack("{s:s,s:s,s:s}", "id", id, "name",
                      json_string_value(json_object_get(spec, "name")) != NULL
                          ? json_string_value(json_object_get(spec, "name"))
                          : "",
                      "status", st);
    return 0;
}

static int cmd_job_list(req_t *q, json_t **body)
{
    fv_diag_t d;
    json_t *jobs = NULL;
    int r = fv_state_jobs_json(q->c->st, &jobs, &d);
    if (r != 0) {
        *body = err_body("%s", d.msg);
        return r;
    }
    *body = json_pack("{s:o}", "jobs", jobs);
    return 0;
}

static int cmd_job_show(req_t *q, json_t **body)
{
    char id[65];
    int r = job_arg(q, id, body);
    if (r != 0)
        return r;
    fv_diag_t d;
    json_t *j = NULL;
    r = fv_state_job_json(q->c->st, id, &j, &d);
    if (r != 0) {
        *body = err_body("%s", d.msg);
        return r;
    }
    json_t *live =
        q->c->job != NULL && strcmp(q->c->run.job_id, id) == 0 ? coord_job_live(q->c) : NULL;
    json_object_set_new(j, "live", live != NULL ? live : json_null());
    *body = j;
    return 0;
}

/* job.report: the report's document (coord_report.c); the CLI renders it. */
static int cmd_job_report(req_t *q, json_t **body)
{
    char id[65];
    int r = job_arg(q, id, body);
    fv_diag_t d = {""};
    if (r == 0 && (r = coord_report_doc(q->c, id, body, &d)) != 0)
        *body = err_body("%s", d.msg);
    return r;
}

static int cmd_job_abort(req_t *q, json_t **body)
{
    char id[65];
    int r = job_arg(q, id, body);
    if (r != 0)
        return r;
    fv_diag_t d;
    r = coord_job_abort(q->c, id, q->actor, &d);
    if (r != 0) {
        *body = err_body("%s", d.msg);
        return r;
    }
    char st[16] = "aborted";
    fv_state_job_status(q->c->st, id, st, &d);
    *body = json_pack("{s:s,s:s}", "id", id, "status", st);
    return 0;
}

static int cmd_model_list(req_t *q, json_t **body)
{
    fv_diag_t d;
    json_t *v = NULL;
    int r = fv_state_versions_json(q->c->st, &v, &d);
    if (r != 0) {
        *body = err_body("%s", d.msg);
        return r;
    }
    *body = json_pack("{s:o}", "models", v);
    return 0;
}

static int version_arg(req_t *q, int64_t *ret, json_t **body)
{
    json_t *v = json_object_get(q->args, "version");
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        *body = err_body("%s: args.version must be a model version (an integer >= 1)", q->cmd);
        return FV_EINVAL;
    }
    *ret = json_integer_value(v);
    json_object_set_new(q->audit, "version", json_integer(*ret));
    return 0;
}

static int cmd_model_show(req_t *q, json_t **body)
{
    int64_t v;
    int r = version_arg(q, &v, body);
    if (r != 0)
        return r;
    fv_diag_t d;
    json_t *j = NULL;
    r = fv_state_version_json(q->c->st, v, &j, &d);
    if (r == UV_ENOENT)
        *body = err_body("no model version %" PRId64, v);
    else if (r != 0)
        *body = err_body("%s", d.msg);
    else
        *body = j;
    return r;
}

/* One model file at a time is kept in memory for chunked reads. */
static struct {
    char sha[65];
    uint8_t *bytes;
    size_t len;
} g_read_cache;

static int cmd_model_read(req_t *q, json_t **body, const uint8_t **data, size_t *data_len)
{
    int64_t v;
    int r = version_arg(q, &v, body);
    if (r != 0)
        return r;
    json_t *jo = json_object_get(q->args, "offset"), *jl = json_object_get(q->args, "len");
    if (!json_is_integer(jo) || json_integer_value(jo) < 0 || !json_is_integer(jl) ||
        json_integer_value(jl) < 1) {
        *body = err_body("model.read: args.offset (>= 0) and args.len (>= 1) must be integers");
        return FV_EINVAL;
    }
    uint64_t off = (uint64_t)json_integer_value(jo);
    uint64_t len = (uint64_t)json_integer_value(jl);
    if (len > FV_WIRE_ADMIN_DATA_MAX)
        len = FV_WIRE_ADMIN_DATA_MAX;
    fv_diag_t d;
    char sha[65];
    r = fv_state_version_sha(q->c->st, v, sha, &d);
    if (r == UV_ENOENT) {
        *body = err_body("no model version %" PRId64, v);
        return r;
    }
    if (r == 0 && strcmp(sha, g_read_cache.sha) != 0) {
        free(g_read_cache.bytes);
        memset(&g_read_cache, 0, sizeof g_read_cache);
        r = fv_state_model_read(q->c->st, sha, &g_read_cache.bytes, &g_read_cache.len, &d);
        if (r == 0)
            memcpy(g_read_cache.sha, sha, 65);
    }
    if (r != 0) {
        *body = err_body("%s", d.msg);
        return r;
    }
    if (off > g_read_cache.len) {
        *body = err_body("model.read: offset %" PRIu64 " is past the end (%zu bytes)", off,
                         g_read_cache.len);
        return FV_ERANGE;
    }
    if (len > g_read_cache.len - off)
        len = g_read_cache.len - off;
    *data = g_read_cache.bytes + off;
    *data_len = (size_t)len;
    *body = json_pack("{s:I,s:s,s:I,s:I}", "version", (json_int_t)v, "sha256", sha, "bytes",
                      (json_int_t)g_read_cache.len, "offset", (json_int_t)off);
    if (off == 0)
        coord_audit(q->c, q->actor, "model.exported",
                    json_pack("{s:I,s:s,s:I}", "version", (json_int_t)v, "sha256", sha, "bytes",
                              (json_int_t)g_read_cache.len));
    return 0;
}

static int cmd_crl_reload(req_t *q, json_t **body)
{
    fv_diag_t d;
    unsigned closed = 0;
    int r = coord_reload_crl(q->c, q->actor, q->conn, &closed, &d);
    if (r != 0) {
        *body = err_body("%s", d.msg);
        return r;
    }
    const fv_identity_t *self = fv_conn_peer(q->conn);
    q->close_after = self != NULL && fv_tls_ctx_revoked(q->c->net.ctx, self->serial_hex);
    json_object_set_new(q->audit, "sessions_closed", json_integer((json_int_t)closed));
    *body = json_pack("{s:I,s:I}", "revoked", (json_int_t)fv_tls_ctx_crl_count(q->c->net.ctx),
                      "sessions_closed", (json_int_t)closed);
    return 0;
}

static int cmd_model_release(req_t *q, json_t **body)
{
    return coord_model_release(q->c, q->actor, q->args, q->audit, body);
}

static int cmd_model_releases(req_t *q, json_t **body)
{
    return coord_model_releases(q->c, body);
}

/* The admin port's commands: one row each (the wire name and its handler). A handler
 * fills *body (a JSON object); model.read, the one command that returns raw bytes (a
 * chunk of a model file), has a handler that fills those too. */
typedef struct admin_cmd {
    const char *name;
    int (*fn)(req_t *q, json_t **body);
    int (*fn_data)(req_t *q, json_t **body, const uint8_t **data, size_t *data_len);
} admin_cmd_t;

/* clang-format off: one row per command */
static const admin_cmd_t admin_cmds[] = {
    {"status", cmd_status, NULL},
    {"agents.list", cmd_agents, NULL},
    {"job.submit", cmd_job_submit, NULL},
    {"job.list", cmd_job_list, NULL},
    {"job.show", cmd_job_show, NULL},
    {"job.abort", cmd_job_abort, NULL},
    {"job.report", cmd_job_report, NULL},
    {"model.list", cmd_model_list, NULL},
    {"model.show", cmd_model_show, NULL},
    {"model.read", NULL, cmd_model_read},
    {"crl.reload", cmd_crl_reload, NULL},
    {"model.release", cmd_model_release, NULL},
    {"model.releases", cmd_model_releases, NULL},
};
/* clang-format on */

static const admin_cmd_t *admin_handler(const char *name)
{
    for (size_t i = 0; i < sizeof admin_cmds / sizeof admin_cmds[0]; i++)
        if (strcmp(admin_cmds[i].name, name) == 0)
            return &admin_cmds[i];
    return NULL;
}

static void admin_msg(coord_t *c, fv_conn_t *conn, const fv_msg_t *m)
{
    const fv_identity_t *peer = fv_conn_peer(conn);
    if (m->type != FV_MSG_ADMIN_REQ || peer == NULL) {
        fv_conn_close(conn, FV_EPROTO, "the admin port takes admin_req messages only");
        return;
    }
    req_t q;
    memset(&q, 0, sizeof q);
    q.c = c;
    q.conn = conn;
    q.id = m->u.admin_req.id;
    char cmd[FV_WIRE_ADMIN_CMD_MAX + 1];
    snprintf(cmd, sizeof cmd, "%.*s", (int)m->u.admin_req.cmd.len, m->u.admin_req.cmd.ptr);
    q.cmd = cmd;
    snprintf(q.actor, sizeof q.actor, "admin:%s", peer->name);
    q.audit = json_object();
    json_t *body = NULL;
    const uint8_t *data = NULL;
    size_t data_len = 0;
    int r;
    json_error_t je;
    const admin_cmd_t *h;
    if (m->u.admin_req.args.len == 0)
        q.args = json_object();
    else
        q.args = json_loadb(m->u.admin_req.args.ptr, m->u.admin_req.args.len,
                            JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(q.args)) {
        r = FV_EPARSE;
        body = q.args == NULL ? err_body("%s: args: %s (column %d)", cmd, je.text, je.column)
                              : err_body("%s: args must be a JSON object", cmd);
    } else if (c->stopping) {
        r = FV_EPHASE;
        body = err_body("the coordinator is stopping");
    } else if ((h = admin_handler(cmd)) == NULL) {
        r = FV_ENOTSUP;
        body = err_body("unknown admin command '%s'", cmd);
    } else {
        r = h->fn != NULL ? h->fn(&q, &body) : h->fn_data(&q, &body, &data, &data_len);
    }
    if (r != 0 && body == NULL)
        body = err_body("%s: %s", cmd, fv_strerror(r));
    if (c->metrics.admin != NULL) {
        const char *lv[2] = {cmd, r == 0 ? "ok" : "error"};
        fv_prom_addv(c->metrics.admin, lv, 1);
    }
    /* Every admin command is audited, except the follow-up chunks of one export. */
    bool chunk = strcmp(cmd, "model.read") == 0 && r == 0 &&
                 json_integer_value(json_object_get(q.args, "offset")) > 0;
    if (!chunk) {
        json_object_set_new(q.audit, "status", json_string(r == 0 ? "ok" : fv_err_name(r)));
        if (r != 0)
            json_object_set(q.audit, "error", json_object_get(body, "error"));
        json_object_set_new(q.audit, "addr", json_string(fv_conn_peer_addr(conn)));
        char ev[FV_WIRE_ADMIN_CMD_MAX + 8];
        snprintf(ev, sizeof ev, "admin.%s", cmd);
        coord_audit(c, q.actor, ev, q.audit);
        q.audit = NULL;
    }
    json_decref(q.audit);
    coord_logj(
        r == 0 ? "info" : "warn", "admin_command",
        json_pack("{s:s,s:s,s:s}", "admin", peer->name, "cmd", cmd, "status", fv_err_name(r)));
    respond(conn, q.id, r, body, data, data_len);
    json_decref(q.args);
    if (q.close_after)
        fv_conn_close(conn, FV_EAUTH, "the certificate was revoked (CRL reloaded): session closed");
}

/* The live admin sessions (past the handshake and HELLO), for a CRL reload to close the
 * revoked ones; a session leaves the list in its on_close. */
typedef struct admin_sess {
    struct admin_sess *next;
    fv_conn_t *conn;
} admin_sess_t;
static admin_sess_t *g_admins;

static void admin_open(coord_t *c, fv_conn_t *conn, const fv_identity_t *peer)
{
    admin_sess_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        fv_conn_close(conn, FV_ENOMEM, "out of memory");
        return;
    }
    s->conn = conn;
    s->next = g_admins;
    g_admins = s;
    coord_logj("info", "admin_connected",
               json_pack("{s:s,s:s}", "admin", peer->name, "addr", fv_conn_peer_addr(conn)));
    fv_conn_set_data(conn, c); /* marks a session that got past the handshake and HELLO */
}

static void admin_closed(coord_t *c, fv_conn_t *conn, int err, const char *why)
{
    for (admin_sess_t **p = &g_admins; *p != NULL; p = &(*p)->next)
        if ((*p)->conn == conn) {
            admin_sess_t *s = *p;
            *p = s->next;
            free(s);
            break;
        }
    if (err != 0 && fv_conn_get_data(conn) == NULL && c != NULL && !c->stopping) {
        /* refused at the handshake: another role, another CA, revoked, not TLS ... */
        char host[256];
        coord__peer_host(fv_conn_peer_addr(conn), host, sizeof host);
        coord_logj_peer(c, "warn", host, "admin_refused",
                        json_pack("{s:s,s:s,s:s}", "addr", fv_conn_peer_addr(conn), "err",
                                  fv_err_name(err), "why", why));
        coord_audit_refusal(c, "admin.refused",
                            json_pack("{s:s,s:s,s:s}", "addr", fv_conn_peer_addr(conn), "err",
                                      fv_err_name(err), "why", why));
        if (c->metrics.refusals != NULL)
            fv_prom_add(c->metrics.refusals, fv_err_name(err), 1);
    }
}

unsigned coord__admin_close_revoked(coord_t *c, const char *by, fv_conn_t *keep)
{
    unsigned n = 0;
    for (admin_sess_t *s = g_admins; s != NULL; s = s->next) {
        const fv_identity_t *peer = fv_conn_peer(s->conn);
        if (peer == NULL || !fv_conn_is_open(s->conn) ||
            !fv_tls_ctx_revoked(c->net.ctx, peer->serial_hex))
            continue;
        n++;
        coord_logj("warn", "session_revoked",
                   json_pack("{s:s,s:s,s:s,s:s,s:s}", "role", "admin", "admin", peer->name,
                             "serial", peer->serial_hex, "addr", fv_conn_peer_addr(s->conn), "by",
                             by));
        coord_audit(
            c, by, "admin.session_revoked",
            json_pack("{s:s,s:s,s:s}", "admin", peer->name, "serial", peer->serial_hex, "by", by));
        if (s->conn != keep) /* (the list changes only in on_close, which comes later) */
            fv_conn_close(s->conn, FV_EAUTH,
                          "the certificate was revoked (CRL reloaded): session closed");
    }
    return n;
}

/* The admin port's callbacks, each measured (coord_loopstat.c); c is read before the
 * handler runs, since on_close's connection is freed when it returns. */
static void admin_on_open(fv_conn_t *conn, const fv_identity_t *peer)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    coord__loopstat_begin(c, "admin.on_open");
    admin_open(c, conn, peer);
    coord__loopstat_end(c);
}

static void admin_on_msg(fv_conn_t *conn, const fv_msg_t *m)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    coord__loopstat_begin(c, "admin.on_msg");
    admin_msg(c, conn, m);
    coord__loopstat_end(c);
}

static void *admin_on_vec_begin(fv_conn_t *conn, const fv_msg_t *b)
{
    (void)b;
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    coord__loopstat_begin(c, "admin.on_vec_begin");
    coord__loopstat_end(c);
    return NULL; /* the admin port takes no vectors (fv_conn closes the connection) */
}

static void admin_on_close(fv_conn_t *conn, int err, const char *why)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    coord__loopstat_begin(c, "admin.on_close");
    admin_closed(c, conn, err, why);
    coord__loopstat_end(c);
}

int coord_admin_start(coord_t *c, const char *host, int port, fv_diag_t *d)
{
    fv_net_opts_t net;
    fv_net_opts_default(&net);
    net.allowed_roles = FV_ROLE_BIT(FV_ROLE_ADMIN);
    net.lim.max_frame_bytes = FV_WIRE_ADMIN_FRAME_BYTES;
    net.max_queue_bytes = (size_t)16 << 20;
    fv_conn_cbs_t cbs = {.on_open = admin_on_open,
                         .on_msg = admin_on_msg,
                         .on_vec_begin = admin_on_vec_begin,
                         .on_close = admin_on_close};
    int r = fv_server_start(c->net.loop, c->net.ctx, host, port, &net, &cbs, c, &c->net.admin);
    if (r != 0)
        snprintf(d->msg, sizeof d->msg, "%s", fv_strerror(r));
    return r;
}

/* ---- metrics ------------------------------------------------------------------------ */

int coord_metrics_init(coord_t *c)
{
    static const double secs[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
    int r = fv_prom_new(&c->metrics.prom);
    if (r == 0)
        r = fv_prom_gauge(c->metrics.prom, "fedvault_agents_connected",
                          "Agents connected to the agent port.", NULL, &c->metrics.agents);
    if (r == 0)
        r = fv_prom_counter(c->metrics.prom, "fedvault_rounds_completed_total",
                            "Rounds completed (stats and training).", NULL, &c->metrics.rounds_ok);
    if (r == 0)
        r = fv_prom_counter(c->metrics.prom, "fedvault_rounds_failed_total",
                            "Rounds aborted (too few agents, bad input, deadline).", NULL,
                            &c->metrics.rounds_failed);
    if (r == 0)
        r = fv_prom_histogram(c->metrics.prom, "fedvault_phase_duration_seconds",
                              "Duration of each SecAgg phase of a round.", "phase", secs,
                              sizeof secs / sizeof secs[0], &c->metrics.phase_s);
    if (r == 0)
        r = fv_prom_counter(c->metrics.prom, "fedvault_agent_bytes_received_total",
                            "Bytes received from agents (TLS records).", NULL,
                            &c->metrics.bytes_in);
    if (r == 0)
        r = fv_prom_counter(c->metrics.prom, "fedvault_agent_bytes_sent_total",
                            "Bytes sent to agents (TLS records).", NULL, &c->metrics.bytes_out);
    if (r == 0)
        r = fv_prom_counter(c->metrics.prom, "fedvault_refusals_total",
                            "Connections refused before or at the handshake, by reason.", "reason",
                            &c->metrics.refusals);
    if (r == 0)
        r = fv_prom_counter(c->metrics.prom, "fedvault_jobs_ended_total", "Jobs ended, by status.",
                            "status", &c->metrics.jobs);
    if (r == 0) {
        const char *labels[2] = {"command", "outcome"};
        r = fv_prom_family(c->metrics.prom, FV_PROM_COUNTER, "fedvault_admin_commands_total",
                           "Admin commands served, by command and outcome.", labels, 2, NULL, 0,
                           &c->metrics.admin);
    }
    if (r == 0) {
        static const double cpu_s[] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                       0.1,   0.25,  0.5,   1,    2.5,  5};
        r = fv_prom_histogram(c->metrics.prom, "fedvault_loop_callback_max_cpu_seconds",
                              "The longest single callback the loop ran into the coordinator, "
                              "in thread CPU seconds: one observation per round (the callbacks "
                              "since the previous round ended) and one per job end.",
                              NULL, cpu_s, sizeof cpu_s / sizeof cpu_s[0], &c->metrics.loop_max);
    }
    if (r == 0)
        r = coord__guard_metrics_init(c);
    if (r != 0)
        fprintf(stderr, "fedvault-coordinator: error: metrics registry: %s\n", fv_strerror(r));
    return r;
}

void coord_metrics_refresh(coord_t *c)
{
    static uint64_t last_in, last_out;
    if (c->metrics.prom == NULL)
        return;
    uint64_t in = 0, out = 0, n = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next) {
        uint64_t i, o;
        coord_agent_traffic(a, &i, &o);
        in += i;
        out += o;
        n += a->conn != NULL;
    }
    fv_prom_set(c->metrics.agents, NULL, (double)n);
    if (in > last_in)
        fv_prom_add(c->metrics.bytes_in, NULL, (double)(in - last_in));
    if (out > last_out)
        fv_prom_add(c->metrics.bytes_out, NULL, (double)(out - last_out));
    last_in = in > last_in ? in : last_in;
    last_out = out > last_out ? out : last_out;
}

static void prom_enter(void *ctx, const char *cb)
{
    coord__loopstat_begin(ctx, cb);
}

static void prom_leave(void *ctx)
{
    coord__loopstat_end(ctx);
}

int coord_metrics_start(coord_t *c, const char *host, int port, fv_diag_t *d)
{
    int r = fv_prom_server_start(c->net.loop, host, port, c->metrics.prom, &c->net.prom_srv, d);
    if (r == 0)
        fv_prom_server_set_probe(c->net.prom_srv, prom_enter, prom_leave, c);
    if (r == 0)
        fv_prom_server_set_before_render(c->net.prom_srv, coord__guard_metrics_refresh, c);
    return r;
}
