/* coord_report.c - a job's report: its document (protocols/fv_report.h) built from the
 * state, the job's directory and the audit log; the admin command job.report; report.html
 * written into the job's directory at the end of every job.
 *
 * Where each part comes from:
 *   - job, rounds (metrics per completed round), cohorts (every round row), agents (data
 *     fingerprints), privacy (the spec's section), schema (schema_part: discovered, given
 *     or open, its SHA-256 and columns), compression (the distilled version's report):
 *     the state
 *     (fv_state_job_json, fv_state_version_json), on the loop thread, which owns it;
 *   - the final model's histograms: the job's rounds.jsonl, whose line for a round whose
 *     model became the best (or, with patience 0, every training round) carries
 *     "hist_pos"/"hist_neg" (coord_finish.c); the final model's round is the last
 *     training round with "improved" (patience 0: the last training round, whose
 *     evaluated model is the one before the last update, and the label says so);
 *   - the explanation: the state's metrics of the "explain" round, else its rounds.jsonl
 *     line;
 *   - the audit summary: the signed log of the state directory, verified in full
 *     (fv_audit_verify_mem) and counted (records whose details.job is this job).
 * The second part touches files only (report_files), so at the job's end it runs on the
 * thread pool with the rendering and the atomic write (fv_file_write_atomic): nothing of
 * it blocks the loop. The loop keeps appending to the audit log meanwhile, so the worker
 * reads the head first and then the log, and verifies the log's first head-seq records
 * against that head (records are only appended, each line before its head).
 *
 * A failure to write the report is logged (report_failed) and never fails the job.
 * Threads: coord__report_job_end and coord_report_doc on the loop; report_files and the
 * rendering on the pool (the work item owns its document and copies of the paths and
 * the log's public key, and reads no coordinator field).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "coord-int.h"
#include "fv_file.h"
#include "fv_log.h"
#include "fv_report.h"
#include "fv_schema.h"

#define ROUNDS_LOG_MAX ((size_t)256 << 20) /* bytes of rounds.jsonl read */
#define AUDIT_LOG_MAX ((size_t)512 << 20)  /* bytes of the audit log verified */

/* ---- the state's part (loop) --------------------------------------------------------- */

static void copy_member(json_t *dst, const char *dk, const json_t *src, const char *sk)
{
    json_t *v = json_object_get(src, sk);
    if (v != NULL)
        json_object_set_new(dst, dk, json_deep_copy(v));
}

/* The final model's round from the rounds (see the top), 0 if none; *ret_label. */
static uint64_t final_round(const json_t *rounds, bool patience0, char *label, size_t cap)
{
    uint64_t best = 0, last = 0;
    size_t i;
    json_t *r;
    json_array_foreach(rounds, i, r)
    {
        const char *k = json_string_value(json_object_get(r, "kind"));
        if (k == NULL || strcmp(k, "train") != 0)
            continue;
        uint64_t n = (uint64_t)json_integer_value(json_object_get(r, "round"));
        last = n;
        if (json_is_true(json_object_get(json_object_get(r, "metrics"), "improved")))
            best = n;
    }
    if (patience0) {
        snprintf(label, cap,
                 "The model round %" PRIu64 " evaluated (the last training round; without early "
                 "stopping the job's final model is that model after round %" PRIu64
                 "'s update, which no round evaluated)",
                 last, last);
        return last;
    }
    snprintf(label, cap, "The final model: the best training model, evaluated in round %" PRIu64,
             best);
    return best;
}

/* The data schema the job trained on, for the report's lineage: discovered (the resolved
 * spec stored by the schema round, coord_schema.c, with the SHA-256 of its schema.json,
 * its contributors and refusals), given (the submitted spec's own schema: its SHA-256 is
 * computed here the same way, over fv_schema_to_json's canonical text), or still open (a
 * job that ended before its schema was fixed). Columns: name, type, and the number of
 * categories or "open". NULL only when out of memory. */
static json_t *schema_part(coord_t *c, const char *id, const json_t *j)
{
    const json_t *sch = json_object_get(j, "schema");
    json_t *out = json_object(), *cols = json_array();
    json_t *spec = NULL;
    char *stored = NULL;
    fv_diag_t d;
    if (out == NULL || cols == NULL) {
        json_decref(out);
        json_decref(cols);
        return NULL;
    }
    bool discovered = json_is_string(json_object_get(sch, "sha256"));
    if (discovered && fv_state_job_schema_spec(c->st, id, &stored, &d) == 0)
        spec = json_loads(stored, 0, NULL);
    free(stored);
    const json_t *s = json_object_get(spec != NULL ? spec : json_object_get(j, "spec"), "schema");
    bool open = json_is_true(json_object_get(sch, "open"));
    json_object_set_new(out, "source",
                        json_string(discovered ? "discovered"
                                    : open     ? "open"
                                               : "given"));
    copy_member(out, "version", sch, "version");
    copy_member(out, "contributors", sch, "contributors");
    copy_member(out, "refused", sch, "refused");
    copy_member(out, "unknown_category", s, "unknown_category");
    if (discovered) {
        copy_member(out, "sha256", sch, "sha256");
    } else if (!open && json_is_object(s)) {
        char *text = json_dumps(s, JSON_COMPACT), *canon = NULL;
        size_t len = 0;
        fv_schema_t *parsed = NULL;
        if (text != NULL &&
            fv_schema_from_json("the job's schema", text, strlen(text), &parsed, &d) == 0 &&
            fv_schema_to_json(parsed, &canon, &len) == 0) {
            uint8_t h[32];
            char hex[65];
            crypto_hash_sha256(h, (const uint8_t *)canon, len);
            coord__hexn(h, 32, hex);
            json_object_set_new(out, "sha256", json_string(hex));
        }
        free(text);
        free(canon);
        fv_schema_free(parsed);
    }
    size_t i;
    const json_t *col;
    json_array_foreach(json_object_get(s, "columns"), i, col)
    {
        const json_t *cats = json_object_get(col, "categories");
        json_t *o = json_object();
        copy_member(o, "name", col, "name");
        copy_member(o, "type", col, "type");
        if (json_is_array(cats))
            json_object_set_new(o, "categories", json_integer((json_int_t)json_array_size(cats)));
        else if (json_is_string(cats))
            copy_member(o, "categories", col, "categories");
        json_array_append_new(cols, o);
    }
    json_object_set_new(out, "columns", cols);
    json_decref(spec);
    return out;
}

static int state_part(coord_t *c, const char *id, json_t **ret, uint64_t *ret_final, fv_diag_t *d)
{
    json_t *j = NULL;
    int r = fv_state_job_json(c->st, id, &j, d);
    if (r != 0)
        return r;
    json_t *doc = json_object(), *job = json_object(), *rounds = json_array(),
           *cohorts = json_array();
    char ts[FV_LOG_TS_MAX];
    fv_log_iso_now(ts);
    json_object_set_new(doc, "fedvault_report", json_integer(FV_REPORT_VERSION));
    json_object_set_new(doc, "generated", json_string(ts));
    static const char *const keys[] = {"id",
                                       "name",
                                       "status",
                                       "why",
                                       "submitted",
                                       "started",
                                       "finished",
                                       "submitted_by",
                                       "rounds_done",
                                       "distill_rounds_done",
                                       "rounds_failed",
                                       "final_version",
                                       "student_version"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        copy_member(job, keys[i], j, keys[i]);
    const json_t *spec = json_object_get(j, "spec");
    copy_member(job, "model", spec, "model");
    copy_member(job, "rounds", spec, "rounds");
    json_t *sa = json_object_get(spec, "secagg");
    json_object_set_new(job, "secagg",
                        json_string(json_is_string(sa) ? json_string_value(sa) : "on"));
    const json_t *es = json_object_get(spec, "early_stopping");
    copy_member(job, "metric", es, "metric");
    json_t *hb = json_object_get(spec, "hist_bins");
    json_object_set_new(job, "task",
                        json_string(json_integer_value(hb) > 0 ? "binary" : "multiclass"));
    bool patience0 = json_is_integer(json_object_get(es, "patience")) &&
                     json_integer_value(json_object_get(es, "patience")) == 0;
    json_object_set_new(doc, "job", job);
    size_t i;
    json_t *rr;
    json_t *expl = NULL;
    json_array_foreach(json_object_get(j, "rounds"), i, rr)
    {
        json_t *co = json_object();
        static const char *const ck[] = {"round", "attempt", "kind",        "status",
                                         "why",   "cohort",  "contributors"};
        for (size_t k = 0; k < sizeof ck / sizeof ck[0]; k++)
            copy_member(co, ck[k], rr, ck[k]);
        json_array_append_new(cohorts, co);
        const char *kind = json_string_value(json_object_get(rr, "kind"));
        const char *st = json_string_value(json_object_get(rr, "status"));
        json_t *met = json_object_get(rr, "metrics");
        if (kind == NULL || strcmp(kind, "stats") == 0 || st == NULL || strcmp(st, "ok") != 0 ||
            !json_is_object(met))
            continue;
        json_array_append_new(rounds,
                              json_pack("{s:O,s:s,s:O}", "round", json_object_get(rr, "round"),
                                        "kind", kind, "metrics", met));
        if (strcmp(kind, "explain") == 0 && json_is_object(json_object_get(met, "explanation"))) {
            json_decref(expl);
            expl = json_deep_copy(json_object_get(met, "explanation"));
            json_object_set(expl, "round", json_object_get(rr, "round"));
        }
    }
    char label[320];
    uint64_t fr = final_round(rounds, patience0, label, sizeof label);
    json_object_set_new(doc, "rounds", rounds);
    json_object_set_new(doc, "cohorts", cohorts);
    copy_member(doc, "agents", j, "agents");
    copy_member(doc, "privacy", j, "privacy"); /* the spec's section (state_json.c) */
    json_t *schema = schema_part(c, id, j);
    json_object_set_new(doc, "schema", schema != NULL ? schema : json_null());
    if (fr > 0 && json_integer_value(hb) > 0)
        json_object_set_new(doc, "final",
                            json_pack("{s:I,s:s}", "round", (json_int_t)fr, "label", label));
    else
        json_object_set_new(doc, "final",
                            json_pack("{s:s}", "absent",
                                      json_integer_value(hb) > 0
                                          ? "no training round of this job completed"
                                          : "a multi-class job: its rounds sum per-class counts, "
                                            "not score histograms, so there is no ROC curve"));
    json_object_set_new(doc, "explanation",
                        expl != NULL ? expl : json_pack("{s:s}", "absent", "no explain round"));
    json_t *sv = json_object_get(j, "student_version"), *v = NULL;
    if (json_is_integer(sv) && fv_state_version_json(c->st, json_integer_value(sv), &v, d) == 0)
        copy_member(doc, "compression", v, "report");
    json_decref(v);
    if (json_object_get(doc, "compression") == NULL)
        json_object_set_new(doc, "compression", json_null());
    json_decref(j);
    *ret = doc;
    *ret_final = json_object_get(json_object_get(doc, "final"), "round") != NULL ? fr : 0;
    return 0;
}

/* ---- the files' part (any thread) ----------------------------------------------------- */

typedef struct report_src {
    char job_id[65];
    char dir[3072]; /* the job's directory, "" without --out */
    char audit_log[4096], audit_head[4096];
    uint8_t pk[32]; /* the audit log's signer (the coordinator's public key) */
    uint64_t final_round;
} report_src_t;

/* rounds.jsonl: the final round's histograms, and the explanation when the state had none. */
static void from_rounds_log(json_t *doc, const report_src_t *s)
{
    json_t *final = json_object_get(doc, "final");
    bool want_hist = s->final_round > 0;
    bool want_expl = json_object_get(json_object_get(doc, "explanation"), "absent") != NULL;
    if (s->dir[0] == '\0') {
        if (want_hist)
            json_object_set_new(doc, "final",
                                json_pack("{s:s}", "absent",
                                          "the coordinator ran without --out: the final model's "
                                          "histograms are kept in the job's rounds.jsonl only"));
        return;
    }
    char path[4096], *buf = NULL;
    size_t len = 0;
    fv_diag_t d;
    snprintf(path, sizeof path, "%s/rounds.jsonl", s->dir);
    int r = fv_file_read_all(path, ROUNDS_LOG_MAX, &buf, &len, NULL, &d);
    json_t *hp = NULL, *hn = NULL, *expl = NULL;
    for (size_t off = 0; r == 0 && off < len;) {
        char *nl = memchr(buf + off, '\n', len - off);
        size_t n = nl != NULL ? (size_t)(nl - (buf + off)) : len - off;
        json_t *o = json_loadb(buf + off, n, 0, NULL);
        off += n + 1;
        const char *kind = json_string_value(json_object_get(o, "kind"));
        json_t *rn = json_object_get(o, "round");
        if (kind != NULL && json_is_integer(rn) && strcmp(kind, "train") == 0 &&
            (uint64_t)json_integer_value(rn) == s->final_round &&
            json_is_array(json_object_get(o, "hist_pos")) &&
            json_is_array(json_object_get(o, "hist_neg"))) {
            json_decref(hp);
            json_decref(hn);
            hp = json_incref(json_object_get(o, "hist_pos"));
            hn = json_incref(json_object_get(o, "hist_neg"));
        }
        if (kind != NULL && strcmp(kind, "explain") == 0 &&
            json_is_object(json_object_get(o, "explanation"))) {
            json_decref(expl);
            expl = json_deep_copy(json_object_get(o, "explanation"));
            json_object_set(expl, "round", rn);
        }
        json_decref(o);
    }
    free(buf);
    if (want_hist && hp != NULL) {
        json_object_set_new(final, "hist_pos", hp);
        json_object_set_new(final, "hist_neg", hn);
    } else if (want_hist) {
        json_decref(hp);
        json_decref(hn);
        char why[FV_DIAG_MAX + 128];
        snprintf(why, sizeof why, "%s", r != 0 ? d.msg : "");
        if (r == 0)
            snprintf(why, sizeof why,
                     "round %" PRIu64 "'s line in rounds.jsonl has no histograms (written by "
                     "an older coordinator?)",
                     s->final_round);
        json_object_set_new(doc, "final", json_pack("{s:s}", "absent", why));
    }
    if (want_expl && expl != NULL)
        json_object_set_new(doc, "explanation", expl);
    else
        json_decref(expl);
}

/* The head's seq (0 when it cannot be read: the log is then verified without it). */
static uint64_t head_seq(const char *head, size_t len)
{
    json_t *o = json_loadb(head, len, 0, NULL);
    json_t *v = json_object_get(o, "seq");
    uint64_t seq =
        json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
    json_decref(o);
    return seq;
}

/* The audit summary: the log verified up to its head, and this job's records counted. */
static json_t *audit_summary(const report_src_t *s)
{
    char *head = NULL, *log = NULL;
    size_t head_len = 0, log_len = 0;
    fv_diag_t d;
    json_t *out = NULL;
    /* the head first: the log then holds at least the records it signs */
    int r = fv_file_read_all(s->audit_head, FV_AUDIT_HEAD_MAX, &head, &head_len, NULL, &d);
    if (r == 0)
        r = fv_file_read_all(s->audit_log, AUDIT_LOG_MAX, &log, &log_len, NULL, &d);
    if (r != 0) {
        out = json_pack("{s:s}", "absent", d.msg);
        goto done;
    }
    uint64_t want = head_seq(head, head_len), lines = 0;
    size_t cut = 0;
    while (cut < log_len && lines < want) {
        char *nl = memchr(log + cut, '\n', log_len - cut);
        if (nl == NULL)
            break;
        cut = (size_t)(nl - log) + 1;
        lines++;
    }
    fv_audit_report_t rep;
    memset(&rep, 0, sizeof rep);
    r = fv_audit_verify_mem(log, cut, head, head_len, s->pk, &rep, &d);
    json_t *ev = json_object();
    for (size_t off = 0; off < cut;) {
        char *nl = memchr(log + off, '\n', cut - off);
        size_t n = nl != NULL ? (size_t)(nl - (log + off)) : cut - off;
        json_t *o = json_loadb(log + off, n, 0, NULL);
        off += n + 1;
        const char *job = json_string_value(json_object_get(json_object_get(o, "details"), "job"));
        const char *e = json_string_value(json_object_get(o, "event"));
        if (job != NULL && e != NULL && strcmp(job, s->job_id) == 0) {
            json_t *cnt = json_object_get(ev, e);
            json_object_set_new(ev, e, json_integer(json_integer_value(cnt) + 1));
        }
        json_decref(o);
    }
    out = json_pack("{s:I,s:o,s:b,s:b,s:s}", "records", (json_int_t)rep.n_records, "job_events", ev,
                    "verified", r == 0 && rep.ok, "head_checked", rep.head_checked, "reason",
                    r == 0 ? "" : (rep.reason[0] != '\0' ? rep.reason : d.msg));
done:
    free(head);
    free(log);
    return out;
}

static void report_files(json_t *doc, const report_src_t *s)
{
    from_rounds_log(doc, s);
    json_t *a = audit_summary(s);
    json_object_set_new(doc, "audit", a != NULL ? a : json_pack("{s:s}", "absent", "no memory"));
}

static int report_src_init(coord_t *c, const char *id, const char *dir, uint64_t fr,
                           report_src_t *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->job_id, sizeof s->job_id, "%s", id);
    snprintf(s->dir, sizeof s->dir, "%s", dir != NULL ? dir : "");
    snprintf(s->audit_log, sizeof s->audit_log, "%s/audit.log", fv_state_dir(c->st));
    snprintf(s->audit_head, sizeof s->audit_head, "%s/audit.log.head", fv_state_dir(c->st));
    s->final_round = fr;
    return crypto_sign_ed25519_sk_to_pk(s->pk, c->sign_sk);
}

/* The job's directory under --out (whether or not it exists: rounds.jsonl is read if so). */
static void job_dir_of(const coord_t *c, const char *id, char *out, size_t cap)
{
    if (c->out_dir == NULL)
        out[0] = '\0';
    else
        snprintf(out, cap, "%s/jobs/%s", c->out_dir, id);
}

int coord_report_doc(coord_t *c, const char *id, json_t **ret, fv_diag_t *d)
{
    json_t *doc = NULL;
    uint64_t fr = 0;
    int r = state_part(c, id, &doc, &fr, d);
    if (r != 0)
        return r;
    report_src_t *s = malloc(sizeof *s);
    char dir[3072];
    job_dir_of(c, id, dir, sizeof dir);
    if (s == NULL || report_src_init(c, id, dir, fr, s) != 0) {
        free(s);
        json_decref(doc);
        return fv_diag_set(d, FV_ENOMEM, "job.report: out of memory");
    }
    report_files(doc, s);
    free(s);
    *ret = doc;
    return 0;
}

/* ---- report.html at the job's end (the pool) ----------------------------------------- */

typedef struct report_work {
    uv_work_t req;
    report_src_t src;
    json_t *doc;
    int rc;
    fv_diag_t d;
    size_t bytes;
    uint64_t t0_ns, ns;
    char path[4096];
} report_work_t;

static void report_run(uv_work_t *req)
{
    report_work_t *w = req->data;
    report_files(w->doc, &w->src);
    char *html = NULL;
    size_t len = 0;
    w->rc = fv_report_html(w->doc, &html, &len, &w->d);
    if (w->rc == 0)
        w->rc = fv_file_write_atomic(w->path, html, len, 0644, &w->d);
    w->bytes = len;
    free(html);
    w->ns = uv_hrtime() - w->t0_ns;
}

static void report_done(uv_work_t *req, int status)
{
    report_work_t *w = req->data;
    if (status != 0 || w->rc != 0)
        coord_logj("error", "report_failed",
                   json_pack("{s:s,s:s,s:s}", "path", w->path, "err",
                             fv_err_name(status != 0 ? status : w->rc), "why",
                             status != 0 ? "cancelled" : w->d.msg));
    else
        coord_logj("info", "report_written",
                   json_pack("{s:s,s:I,s:f}", "path", w->path, "bytes", (json_int_t)w->bytes, "ms",
                             (double)w->ns / 1e6));
    json_decref(w->doc);
    free(w);
}

void coord__report_job_end(coord_t *c)
{
    if (c->run.dir[0] == '\0')
        return;
    report_work_t *w = calloc(1, sizeof *w);
    fv_diag_t d = {""};
    uint64_t fr = 0;
    int r = w == NULL ? FV_ENOMEM : state_part(c, c->run.job_id, &w->doc, &fr, &d);
    if (r == 0 && report_src_init(c, c->run.job_id, c->run.dir, fr, &w->src) != 0)
        r = FV_EINVAL;
    if (w != NULL)
        snprintf(w->path, sizeof w->path, "%s/report.html", c->run.dir);
    if (r == 0) {
        w->req.data = w;
        w->t0_ns = uv_hrtime();
        r = uv_queue_work(c->net.loop, &w->req, report_run, report_done);
    }
    if (r != 0) {
        coord_logj("error", "report_failed",
                   json_pack("{s:s,s:s,s:s}", "path", w != NULL ? w->path : c->run.dir, "err",
                             fv_err_name(r), "why", d.msg));
        if (w != NULL)
            json_decref(w->doc);
        free(w);
    }
}
