/* cmd_admin_job.c - `fedvault job submit | list | show | watch | abort | report`, admin
 * commands (admin_client.c, admin-int.h), with the group's --help text and subcommand
 * table. `job template` and `job check` are local (cmd_job_spec.c, which also reads the
 * spec file `job submit` sends); `job report`'s page is rendered by cmd_job_report.c, each
 * agent's standing (job show, job watch) by cmd_job_status.c.
 *
 * `job watch` sends job.show every --interval seconds over one connection, serviced
 * between polls (fv__cli_admin_sleep), until the job is done, failed or aborted.
 */
#include "admin-int.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "fv_wire.h"

static const char usage_job[] =
    "Usage: fedvault job submit SPEC [--schema FILE] [options]\n"
    "       fedvault job list [options]\n"
    "       fedvault job show ID [options]\n"
    "       fedvault job watch ID [--interval SECONDS] [options]\n"
    "       fedvault job abort ID [options]\n"
    "       fedvault job report ID --out FILE [options]\n"
    "       fedvault job template [--model M] [--secagg on|off] [--distill]  (local)\n"
    "       fedvault job check SPEC [--schema FILE]                          (local)\n"
    "\n"
    "submit  sends the job spec in the JSON file SPEC (- for standard input) and prints\n"
    "        the new job's id. SPEC may hold full-line // comments and give \"schema\" as\n"
    "        a path relative to its directory; --schema FILE replaces the spec's schema\n"
    "        with FILE's. The spec sent, schema inlined, may hold at most 1 MiB.\n"
    "list    lists the jobs (ids longer than 16 characters are shortened to 12 in the\n"
    "        table: any unique prefix names a job; --json gives them whole).\n"
    "show    shows one job: its fields, spec, rounds with their metrics, agents and live\n"
    "        progress. ID may be a unique prefix of the job id.\n"
    "watch   asks for the job every --interval seconds (default 1) and redraws a progress\n"
    "        display (on a terminal; otherwise prints one line whenever the progress\n"
    "        changes). Exits 0 when the job is done, 1 when it failed or was aborted.\n"
    "abort   asks the coordinator to abort the job.\n"
    "report  writes the job's report, a self-contained HTML page (job report --help).\n"
    "template prints a commented starting spec; check parses a spec as the coordinator\n"
    "        will and prints its canonical form and id (see 'fedvault job template --help',\n"
    "        'fedvault job check --help'; the reference: docs/job.schema.json).\n"
    "\n"
    "  --schema FILE       submit: the job's schema, instead of the spec's own\n"
    "  --interval SECONDS  watch: seconds between polls, 0.1..3600\n"
    "\n" COMMON_OPTS;

static const int opts_submit[] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_JSON, OPT_SCHEMA};
static const int opts_watch[] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_JSON, OPT_INTERVAL};

/* ---- a live job as text -------------------------------------------------------------- */

/* A live job's benched agents as "bank-x (2 rounds left), ..." or "-". */
static const char *benched_txt(const json_t *live, char *buf, size_t cap)
{
    const json_t *arr = json_is_object(live) ? json_object_get(live, "benched") : NULL;
    size_t i, used = 0;
    const json_t *e;
    buf[0] = '\0';
    json_array_foreach(arr, i, e)
    {
        char name[FV_NAME_MAX + 1], left[32];
        int n = snprintf(buf + used, cap - used, "%s%s (%s rounds left)", used > 0 ? ", " : "",
                         fv__cli_ftxt(e, "agent", name, sizeof name),
                         fv__cli_ftxt(e, "bench_rounds_left", left, sizeof left));
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
    return used > 0 ? buf : "-";
}

/* A validated job's failed proofs as "bank-x (2 failed, last round 3 'norm', excluded), ..."
 * or "-". */
static const char *proofs_txt(const json_t *live, char *buf, size_t cap)
{
    const json_t *arr = json_is_object(live) ? json_object_get(live, "proof_failures") : NULL;
    size_t i, used = 0;
    const json_t *e;
    buf[0] = '\0';
    json_array_foreach(arr, i, e)
    {
        char name[FV_NAME_MAX + 1], nf[32], rd[32], chk[64];
        const json_t *ex = json_object_get(e, "excluded");
        int n = snprintf(
            buf + used, cap - used, "%s%s (%s failed, last round %s '%s'%s)", used > 0 ? ", " : "",
            fv__cli_ftxt(e, "agent", name, sizeof name), fv__cli_ftxt(e, "failures", nf, sizeof nf),
            fv__cli_ftxt(e, "round", rd, sizeof rd), fv__cli_ftxt(e, "check", chk, sizeof chk),
            json_is_true(ex) ? ", excluded" : "");
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
    return used > 0 ? buf : "-";
}

/* ---- job ------------------------------------------------------------------------------ */

static int job_submit(int argc, char **argv)
{
    args_t a = {.cmd = "job submit", .usage = usage_job};
    int rc = fv__cli_admin_parse(argc, argv, opts_submit, N_OF(opts_submit), 1,
                                 "SPEC (a job spec JSON file)", &a);
    if (rc >= 0)
        return rc;
    /* comments blanked, the schema inlined (cmd_job_spec.c): the coordinator gets JSON */
    char *text = NULL;
    size_t len = 0;
    if (fv__cli_job_spec_read(a.cmd, a.pos[0], a.schema, &text, &len) < 0)
        return FV_EXIT_FAIL;
    json_t *spec = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    free(text);
    if (spec == NULL) { /* not reached: fv_job_expand wrote this text */
        fv__cli_admin_errorf("%s: out of memory", a.pos[0]);
        return FV_EXIT_FAIL;
    }
    char *args = fv__cli_admin_args_dump(json_pack("{s:o}", "spec", spec));
    if (args != NULL && strlen(args) > FV_WIRE_SPEC_MAX) {
        fv__cli_admin_errorf("%s: the job spec is too large (the request may hold %u bytes)",
                             a.pos[0], FV_WIRE_SPEC_MAX);
        free(args);
        return FV_EXIT_FAIL;
    }
    json_t *b = NULL;
    if ((rc = fv__cli_admin_call_owned(&a, "job.submit", args, &b)) >= 0)
        return rc;
    const char *id = fv__cli_fstr(b, "id");
    char buf[256], n[128], st[64];
    if (id == NULL) {
        fv__cli_admin_errorf("the coordinator's answer to 'job.submit' has no job id");
        json_decref(b);
        return FV_EXIT_FAIL;
    }
    printf("%s\n", fv__cli_safe(id, buf, sizeof buf));
    fprintf(stderr, "submitted job %s: %s\n", fv__cli_ftxt(b, "name", n, sizeof n),
            fv__cli_ftxt(b, "status", st, sizeof st));
    json_decref(b);
    return FV_EXIT_OK;
}

static const col_t job_cols[] = {
    {"ID", "id", 12},
    {"NAME", "name", 0},
    {"STATUS", "status", 0},
    {"BY", "submitted_by", 0},
    {"SUBMITTED", "submitted", 0},
    {"STARTED", "started", 0},
    {"FINISHED", "finished", 0},
    {"ROUNDS", "rounds_done", 0},
    {"FAILED", "rounds_failed", 0},
    {"MODEL", "final_version", 0},
    {"STUDENT", "student_version", 0},
    {"WHY", "why", 0},
};

static int job_list(int argc, char **argv)
{
    static const list_cmd_t l = {.cmd = "job list",
                                 .usage = usage_job,
                                 .req = "job.list",
                                 .key = "jobs",
                                 .none = "no jobs",
                                 .cols = job_cols,
                                 .n_cols = N_OF(job_cols)};
    return fv__cli_admin_list_run(argc, argv, &l);
}

#define ID_ARG "ID (a job id or a prefix)"

static char *id_args(const char *id)
{
    return fv__cli_admin_args_dump(json_pack("{s:s}", "id", id));
}

/* job show, job abort: the common options and ID, sent as {"id": ID}. */
static int id_call(int argc, char **argv, args_t *a, const char *cmd, json_t **ret_body)
{
    int rc = fv__cli_admin_parse(argc, argv, fv__cli_admin_opts_common,
                                 N_OF(fv__cli_admin_opts_common), 1, ID_ARG, a);
    return rc >= 0 ? rc : fv__cli_admin_call_owned(a, cmd, id_args(a->pos[0]), ret_body);
}

/* The job's explanation (the last explain round's metrics.explanation): its largest
 * columns by mean |contribution|, at most 10. */
static void show_explanation(const json_t *rounds)
{
    const json_t *ex = NULL, *r;
    size_t i;
    json_array_foreach(rounds, i, r)
    {
        const json_t *e = json_object_get(json_object_get(r, "metrics"), "explanation");
        if (json_is_object(e))
            ex = e;
    }
    const json_t *cols = json_object_get(ex, "columns");
    size_t n = json_array_size(cols), top[10], n_top = 0;
    for (i = 0; i < n; i++) { /* insertion into the top 10, largest first */
        double v = 0, w = 0;
        if (!fv__cli_fnum(json_array_get(cols, i), "mean_abs", &v))
            continue;
        size_t at = n_top < 10 ? n_top++ : 10;
        while (at > 0 && fv__cli_fnum(json_array_get(cols, top[at - 1]), "mean_abs", &w) && v > w) {
            if (at < 10)
                top[at] = top[at - 1];
            at--;
        }
        if (at < 10)
            top[at] = i;
    }
    if (n_top == 0)
        return;
    char b1[64], b2[64], b3[256];
    printf("\nexplanation (%s rows, %s; mean |contribution| to the logit per column, top %zu "
           "of %zu):\n",
           fv__cli_ftxt(ex, "rows", b1, sizeof b1), fv__cli_ftxt(ex, "method", b2, sizeof b2),
           n_top, n);
    for (i = 0; i < n_top; i++) {
        const json_t *c = json_array_get(cols, top[i]);
        double v = 0;
        fv__cli_fnum(c, "mean_abs", &v);
        const char *name = fv__cli_fstr(c, "name");
        printf("  %-24s  %.4f\n", fv__cli_safe(name != NULL ? name : "-", b3, sizeof b3), v);
    }
}

/* A job's schema object (job.show): the one schema discovery fixed, or "open" while it
 * is not fixed yet; nothing for a job whose schema was closed when submitted. */
static void show_job_schema(const json_t *sch)
{
    char buf[512];
    const json_t *sha = json_object_get(sch, "sha256");
    if (!json_is_string(sha)) {
        if (json_is_true(json_object_get(sch, "open")))
            printf("\nschema:\n  %-13s  %s\n", "status", "open (not fixed yet)");
        return;
    }
    printf("\nschema:\n  %-13s  %s\n", "sha256", fv__cli_ftxt(sch, "sha256", buf, sizeof buf));
    printf("  %-13s  %s\n", "version", fv__cli_ftxt(sch, "version", buf, sizeof buf));
    static const char *const lists[] = {"contributors", "refused"};
    for (size_t l = 0; l < N_OF(lists); l++) {
        const json_t *arr = json_object_get(sch, lists[l]), *e;
        size_t i;
        printf("  %-13s  ", lists[l]);
        if (json_array_size(arr) == 0)
            printf("-");
        json_array_foreach(arr, i, e)
        {
            char cat[64];
            printf("%s%s", i > 0 ? ", " : "",
                   json_is_string(e) ? fv__cli_safe(json_string_value(e), buf, sizeof buf)
                                     : fv__cli_ftxt(e, "agent", buf, sizeof buf));
            if (json_is_object(e))
                printf(" (%s)", fv__cli_ftxt(e, "category", cat, sizeof cat));
        }
        printf("\n");
    }
}

/* The job's differential privacy (job.show's "privacy": the spec's section, unset keys
 * null); nothing without it. */
static void show_job_privacy(const json_t *p)
{
    static const char *const keys[] = {"mode", "epsilon",     "noise_multiplier", "delta",
                                       "clip", "sample_rate", "min_honest"};
    char buf[256];
    if (!json_is_object(p))
        return;
    printf("\nprivacy:\n");
    for (size_t i = 0; i < N_OF(keys); i++) {
        const json_t *v = json_object_get(p, keys[i]);
        if (v == NULL || json_is_null(v)) {
            if (strcmp(keys[i], "sample_rate") == 0)
                printf("  %-16s  %s\n", keys[i], "batch_size / each agent's training rows");
            continue; /* the other of epsilon / noise_multiplier; min_honest in local mode */
        }
        printf("  %-16s  %s\n", keys[i], fv__cli_ftxt(p, keys[i], buf, sizeof buf));
    }
    const json_t *ob = json_object_get(p, "outside_budget"), *e;
    size_t i;
    printf("  %-16s  ", "outside_budget");
    if (json_array_size(ob) == 0)
        printf("-");
    json_array_foreach(ob, i, e)
    {
        printf("%s%s", i > 0 ? ", " : "",
               json_is_string(e) ? fv__cli_safe(json_string_value(e), buf, sizeof buf) : "?");
    }
    printf("\n");
}

static void show_job(const json_t *b)
{
    static const char *const keys[] = {
        "id",       "name",        "status",        "submitted_by",  "submitted", "started",
        "finished", "rounds_done", "rounds_failed", "final_version", "why"};
    /* A distilled job also shows its distill rounds and its student (after the counts
     * and the final version); other jobs print as they always did. */
    static const char *const dkeys[] = {"id",
                                        "name",
                                        "status",
                                        "submitted_by",
                                        "submitted",
                                        "started",
                                        "finished",
                                        "rounds_done",
                                        "distill_rounds_done",
                                        "rounds_failed",
                                        "final_version",
                                        "student_version",
                                        "why"};
    double n_distill = 0;
    const json_t *student = json_object_get(b, "student_version");
    if ((student != NULL && !json_is_null(student)) ||
        (fv__cli_fnum(b, "distill_rounds_done", &n_distill) && n_distill > 0))
        fv__cli_print_fields(b, dkeys, N_OF(dkeys), 19);
    else
        fv__cli_print_fields(b, keys, N_OF(keys), 13);
    if (json_is_object(json_object_get(b, "schema")))
        show_job_schema(json_object_get(b, "schema"));
    show_job_privacy(json_object_get(b, "privacy"));
    const json_t *live = json_object_get(b, "live");
    if (json_is_object(live)) {
        static const char *const lk[] = {"round",        "rounds",      "kind",        "phase",
                                         "answered",     "expected",    "val_roc_auc", "val_pr_auc",
                                         "val_accuracy", "val_log_loss"};
        char d1[64], d2[64];
        double e = 0, eta = 0;
        bool he = fv__cli_fnum(live, "elapsed_s", &e), heta = fv__cli_fnum(live, "eta_s", &eta);
        printf("\nlive:\n");
        for (size_t i = 0; i < N_OF(lk); i++) {
            char buf[256];
            printf("  %-13s  %s\n", lk[i], fv__cli_ftxt(live, lk[i], buf, sizeof buf));
        }
        char bt[1024];
        printf("  %-13s  %s\n", "benched", benched_txt(live, bt, sizeof bt));
        printf("  %-13s  %s\n", "proofs failed", proofs_txt(live, bt, sizeof bt));
        printf("  %-13s  %s\n  %-13s  %s\n", "elapsed", fv__cli_dur(e, he, d1, sizeof d1), "eta",
               fv__cli_dur(eta, heta, d2, sizeof d2));
    }
    fv__cli_cohort_show(b, stdout); /* each agent's status (cmd_job_status.c) */
    const json_t *rounds = json_object_get(b, "rounds");
    if (json_is_array(rounds) && json_array_size(rounds) > 0) {
        /* the metrics live one level down: flatten them into a copy of each row */
        json_t *flat = json_array();
        size_t i;
        const json_t *r;
        bool multiclass = false; /* accuracy instead of the AUCs */
        json_array_foreach(rounds, i, r)
        {
            json_t *row = json_is_object(r) ? json_deep_copy(r) : json_object();
            const json_t *m = json_object_get(r, "metrics");
            if (row != NULL && json_is_object(m)) {
                json_object_set(row, "roc", json_object_get(m, "val_roc_auc"));
                json_object_set(row, "pr", json_object_get(m, "val_pr_auc"));
                json_object_set(row, "acc", json_object_get(m, "val_accuracy"));
                json_object_set(row, "ll", json_object_get(m, "val_log_loss"));
                multiclass = multiclass || json_object_get(m, "val_accuracy") != NULL;
            }
            if (row != NULL)
                json_array_append_new(flat, row);
        }
        static const col_t rc[] = {
            {"ROUND", "round", 0},     {"TRY", "attempt", 0},       {"KIND", "kind", 0},
            {"STATUS", "status", 0},   {"COHORT", "cohort", 0},     {"CONTRIB", "contributors", 0},
            {"ROC_AUC", "roc", 0},     {"PR_AUC", "pr", 0},         {"LOG_LOSS", "ll", 0},
            {"STARTED", "started", 0}, {"FINISHED", "finished", 0}, {"WHY", "why", 0},
        };
        static const col_t rcm[] = {
            {"ROUND", "round", 0},       {"TRY", "attempt", 0},   {"KIND", "kind", 0},
            {"STATUS", "status", 0},     {"COHORT", "cohort", 0}, {"CONTRIB", "contributors", 0},
            {"ACCURACY", "acc", 0},      {"LOG_LOSS", "ll", 0},   {"STARTED", "started", 0},
            {"FINISHED", "finished", 0}, {"WHY", "why", 0},
        };
        printf("\nrounds:\n");
        if (multiclass)
            fv__cli_print_table(flat, rcm, N_OF(rcm));
        else
            fv__cli_print_table(flat, rc, N_OF(rc));
        json_decref(flat);
        show_explanation(rounds);
    }
    const json_t *agents = json_object_get(b, "agents");
    if (json_is_array(agents) && json_array_size(agents) > 0) {
        printf("\nagents:\n");
        size_t i;
        const json_t *ag;
        json_array_foreach(agents, i, ag)
        {
            char buf[512];
            if (json_is_string(ag)) {
                printf("  %s\n", fv__cli_safe(json_string_value(ag), buf, sizeof buf));
            } else {
                char *s = json_dumps(ag, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
                printf("  %s\n", fv__cli_safe(s != NULL ? s : "-", buf, sizeof buf));
                free(s);
            }
        }
    }
    const json_t *spec = json_object_get(b, "spec");
    if (spec != NULL && !json_is_null(spec)) {
        printf("\nspec:\n");
        fv__cli_print_json_indented(spec, 2);
    }
}

static int job_show(int argc, char **argv)
{
    args_t a = {.cmd = "job show", .usage = usage_job};
    json_t *b = NULL;
    int rc = id_call(argc, argv, &a, "job.show", &b);
    if (rc >= 0)
        return rc;
    show_job(b);
    json_decref(b);
    return FV_EXIT_OK;
}

static int job_abort(int argc, char **argv)
{
    args_t a = {.cmd = "job abort", .usage = usage_job};
    json_t *b = NULL;
    int rc = id_call(argc, argv, &a, "job.abort", &b);
    if (rc >= 0)
        return rc;
    char id[256], st[64];
    printf("job %s: %s\n", fv__cli_ftxt(b, "id", id, sizeof id),
           fv__cli_ftxt(b, "status", st, sizeof st));
    json_decref(b);
    return FV_EXIT_OK;
}

/* A metrics object that holds a global metric (binary: ROC AUC; multi-class: accuracy;
 * both: log loss). */
static bool has_metric(const json_t *m)
{
    return json_is_object(m) && (json_is_number(json_object_get(m, "val_roc_auc")) ||
                                 json_is_number(json_object_get(m, "val_accuracy")) ||
                                 json_is_number(json_object_get(m, "val_log_loss")));
}

/* The metrics of b's final model: the training round "final_round" names (a finished
 * job's final model is its best round's, not its last round's), else the last round in
 * b's "rounds" with metrics, or NULL. */
static const json_t *last_metrics(const json_t *b)
{
    const json_t *rounds = json_object_get(b, "rounds"), *best = NULL;
    const json_t *fr = json_object_get(b, "final_round");
    size_t i;
    const json_t *r;
    json_array_foreach(rounds, i, r)
    {
        const json_t *m = json_object_get(r, "metrics");
        const char *kind = fv__cli_fstr(r, "kind");
        if (json_is_integer(fr) && kind != NULL && strcmp(kind, "train") == 0 &&
            json_integer_value(json_object_get(r, "round")) == json_integer_value(fr) &&
            has_metric(m))
            return m;
        if (has_metric(m))
            best = m;
    }
    return best;
}

/* One progress display of a job.show body into out (lines; the first is the title). The
 * `stable` part (without elapsed and eta) goes to key, to print a plain line only when it
 * changed. */
static void watch_render(const json_t *b, char *out, size_t cap, char *key, size_t key_cap)
{
    const json_t *live = json_object_get(b, "live");
    if (!json_is_object(live))
        live = NULL;
    const json_t *m = live != NULL && has_metric(live) ? live : last_metrics(b);
    /* a multi-class job shows its accuracy where a binary one shows ROC and PR AUC */
    bool multiclass = m != NULL && json_object_get(m, "val_accuracy") != NULL;
    char name[128], id[80], st[64], r[32], rr[32], kd[32], ph[64], an[32], ex[32], roc[32], pr[32],
        ll[32], el[64], eta[64], bt[256], pf[256];
    double e = 0, t = 0;
    bool he = live != NULL && fv__cli_fnum(live, "elapsed_s", &e);
    bool ht = live != NULL && fv__cli_fnum(live, "eta_s", &t);
    fv__cli_ftxt(b, "name", name, sizeof name);
    fv__cli_ftxt(b, "id", id, sizeof id);
    fv__cli_ftxt(b, "status", st, sizeof st);
    if (live != NULL) {
        snprintf(r, sizeof r, "%s", fv__cli_ftxt(live, "round", (char[32]){0}, 32));
        snprintf(rr, sizeof rr, "%s", fv__cli_ftxt(live, "rounds", (char[32]){0}, 32));
        snprintf(kd, sizeof kd, "%s", fv__cli_ftxt(live, "kind", (char[32]){0}, 32));
        snprintf(ph, sizeof ph, "%s", fv__cli_ftxt(live, "phase", (char[64]){0}, 64));
        snprintf(an, sizeof an, "%s", fv__cli_ftxt(live, "answered", (char[32]){0}, 32));
        snprintf(ex, sizeof ex, "%s", fv__cli_ftxt(live, "expected", (char[32]){0}, 32));
    } else {
        snprintf(r, sizeof r, "%s", fv__cli_ftxt(b, "rounds_done", (char[32]){0}, 32));
        snprintf(rr, sizeof rr, "-");
        snprintf(kd, sizeof kd, "-");
        snprintf(ph, sizeof ph, "-");
        snprintf(an, sizeof an, "-");
        snprintf(ex, sizeof ex, "-");
    }
    snprintf(roc, sizeof roc, "%s", fv__cli_ftxt(m, "val_roc_auc", (char[32]){0}, 32));
    snprintf(pr, sizeof pr, "%s", fv__cli_ftxt(m, "val_pr_auc", (char[32]){0}, 32));
    snprintf(ll, sizeof ll, "%s", fv__cli_ftxt(m, "val_log_loss", (char[32]){0}, 32));
    snprintf(el, sizeof el, "%s", fv__cli_dur(e, he, (char[64]){0}, 64));
    snprintf(eta, sizeof eta, "%s", fv__cli_dur(t, ht, (char[64]){0}, 64));
    benched_txt(live, bt, sizeof bt);
    const char *bench = bt[0] != '\0' ? bt : "-";
    const char *proofs = proofs_txt(live, pf, sizeof pf);
    if (multiclass) {
        char acc[32];
        snprintf(acc, sizeof acc, "%s", fv__cli_ftxt(m, "val_accuracy", (char[32]){0}, 32));
        snprintf(key, key_cap,
                 "job %s (%s) status=%s round=%s/%s kind=%s phase=%s answered=%s/%s accuracy=%s "
                 "log_loss=%s benched=%s proofs_failed=%s",
                 name, id, st, r, rr, kd, ph, an, ex, acc, ll, bench, proofs);
        snprintf(out, cap,
                 "job       %s (%s)\n"
                 "status    %s\n"
                 "round     %s/%s (%s)\n"
                 "phase     %s\n"
                 "agents    %s/%s answered\n"
                 "benched   %s\n"
                 "proofs    %s\n"
                 "accuracy  %s\n"
                 "log loss  %s\n"
                 "elapsed   %s\n"
                 "eta       %s\n",
                 name, id, st, r, rr, kd, ph, an, ex, bench, proofs, acc, ll, el, eta);
        return;
    }
    snprintf(key, key_cap,
             "job %s (%s) status=%s round=%s/%s kind=%s phase=%s answered=%s/%s roc_auc=%s "
             "pr_auc=%s log_loss=%s benched=%s proofs_failed=%s",
             name, id, st, r, rr, kd, ph, an, ex, roc, pr, ll, bench, proofs);
    snprintf(out, cap,
             "job       %s (%s)\n"
             "status    %s\n"
             "round     %s/%s (%s)\n"
             "phase     %s\n"
             "agents    %s/%s answered\n"
             "benched   %s\n"
             "proofs    %s\n"
             "ROC AUC   %s\n"
             "PR AUC    %s\n"
             "log loss  %s\n"
             "elapsed   %s\n"
             "eta       %s\n",
             name, id, st, r, rr, kd, ph, an, ex, bench, proofs, roc, pr, ll, el, eta);
}

static int job_watch(int argc, char **argv)
{
    args_t a = {.cmd = "job watch", .usage = usage_job};
    int rc = fv__cli_admin_parse(argc, argv, opts_watch, N_OF(opts_watch), 1, ID_ARG, &a);
    if (rc >= 0)
        return rc;
    char *args = id_args(a.pos[0]);
    if (args == NULL)
        return FV_EXIT_FAIL;
    json_t *seen = json_object(); /* refusals and losses printed (cmd_job_status.c) */
    kit_t k;
    admin_t s;
    if ((rc = fv__cli_admin_session_open(&a, &k, &s)) != 0)
        goto out;
    bool tty = isatty(STDOUT_FILENO) == 1;
    char last_key[2048] = "";
    for (;;) {
        admin_resp_t r = {0};
        json_t *b = NULL;
        if ((rc = fv__cli_admin_request(&s, "job.show", args, &r, &b)) != 0)
            break;
        char text[4096], key[2048], sum[700];
        watch_render(b, text, sizeof text, key, sizeof key);
        if (fv__cli_cohort_summary(b, sum, sizeof sum) != NULL) {
            /* waiting for agents: on whom, and who refused, instead of an eta */
            size_t kl = strlen(key), tl = strlen(text);
            snprintf(key + kl, sizeof key - kl, " cohort=\"%s\"", sum);
            snprintf(text + tl, sizeof text - tl, "cohort    %s\n", sum);
        }
        if (a.json) {
            if (strcmp(key, last_key) != 0) {
                char *line = json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (line != NULL)
                    puts(line);
                free(line);
            }
        } else if (tty) {
            fputs("\033[H\033[2J", stdout); /* home, clear: one screen, redrawn */
            fv__cli_put_safe(text, stdout);
            printf("\n(every %g s; Ctrl-C stops watching, the job goes on)\n", a.interval_s);
        } else if (fv__cli_cohort_events(b, seen, stdout) >= 0 && strcmp(key, last_key) != 0) {
            time_t now = time(NULL);
            struct tm tmv;
            char ts[32] = "-";
            if (gmtime_r(&now, &tmv) != NULL)
                strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tmv);
            printf("%s ", ts);
            fv__cli_put_safe(key, stdout);
            /* time left, from the coordinator's mean round time (an upper bound: early
             * stopping may end the job sooner); not part of the change test */
            const json_t *live = json_object_get(b, "live");
            const json_t *eta = json_is_object(live) ? json_object_get(live, "eta_s") : NULL;
            if (json_is_number(eta))
                printf(" eta=%.0fs", json_number_value(eta));
            fputc('\n', stdout);
        }
        fflush(stdout);
        snprintf(last_key, sizeof last_key, "%s", key);
        const char *st = fv__cli_fstr(b, "status");
        int end = st == NULL                                                ? -1
                  : strcmp(st, "done") == 0                                 ? FV_EXIT_OK
                  : strcmp(st, "failed") == 0 || strcmp(st, "aborted") == 0 ? FV_EXIT_FAIL
                                                                            : -1;
        if (end > 0) {
            char b1[128], b2[64], b3[1024];
            const char *why = fv__cli_fstr(b, "why");
            fprintf(stderr, "fedvault: job %s %s%s%s\n", fv__cli_safe(a.pos[0], b1, sizeof b1),
                    fv__cli_safe(st, b2, sizeof b2), why != NULL ? ": " : "",
                    why != NULL ? fv__cli_safe(why, b3, sizeof b3) : "");
            if (!a.json)
                fv__cli_job_why(b, stdout); /* the final reason, on the watched stream too */
        }
        json_decref(b); /* st pointed into it */
        fv__cli_admin_resp_free(&r);
        if (end >= 0) {
            rc = end;
            break;
        }
        if (!fv__cli_admin_sleep(&s, (uint64_t)llround(a.interval_s * 1000.0))) {
            rc = fv__cli_admin_unreachable(&s, "the next poll of 'job.show'");
            break;
        }
    }
out:
    json_decref(seen);
    fv__cli_admin_session_close(&s, &k);
    free(args);
    return rc;
}

/* job report: the coordinator's job.report document, rendered by cmd_job_report.c. */
static int job_report(int argc, char **argv)
{
    static const int opts[] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_JSON, OPT_OUT};
    args_t a = {.cmd = "job report", .usage = fv__cli_usage_job_report};
    json_t *b = NULL;
    int rc = fv__cli_admin_parse(argc, argv, opts, N_OF(opts), 1, ID_ARG, &a);
    if (rc >= 0)
        return rc;
    if (!a.json && a.out == NULL)
        return fv_cli_usage_error(a.cmd, "--out FILE is required: where to write the page "
                                         "(\"-\" for standard output)");
    if (!a.json && (rc = fv_cli_out_check(a.cmd, "--out", a.out, false)) != 0)
        return rc;
    rc = fv__cli_admin_call_owned(&a, "job.report", id_args(a.pos[0]), &b);
    if (rc >= 0)
        return rc;
    rc = fv__cli_job_report_write(a.cmd, a.out, b);
    json_decref(b);
    return rc;
}

int fv_cmd_job(int argc, char **argv)
{
    static const sub_t subs[] = {
        {"submit", job_submit},
        {"list", job_list},
        {"show", job_show},
        {"watch", job_watch},
        {"abort", job_abort},
        {"report", job_report},
        {"template", fv__cmd_job_template},
        {"check", fv__cmd_job_check},
    };
    return fv__cli_admin_group_run(argc, argv, "job", usage_job, subs, N_OF(subs));
}
