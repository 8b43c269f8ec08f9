/* report.c - a job's report document rendered as one self-contained HTML page
 * (fv_report.h; the charts are report_svg.c's).
 *
 * Purpose: what an operator, a bank's model-risk officer or an auditor reads after a job,
 * offline: the job, its per-round global metrics, the final model's ROC and PR curves from
 * the secure histograms, the compression report, the global explanation, the cohort of
 * every round with the agents' data fingerprints, and the audit summary.
 *
 * Invariants:
 *   - The document is hostile: it comes over the admin port, and its texts are names a
 *     peer or an operator chose. Every member is type-checked where it is read (a wrong
 *     type reads as absent), every text goes through fv__rsb_esc, counts are capped
 *     (FV_REPORT_MAX_ROUNDS, FV_REPORT_MAX_BINS, 4096 explanation columns) and the page
 *     itself (FV_REPORT_MAX_BYTES).
 *   - Nothing in the page loads anything: no <script>, no link, no URL, fonts from the
 *     system ("system-ui"); style is one <style> element.
 *   - A chart plots exactly the numbers it carries in its data-* attributes
 *     (report_svg.c), taken unchanged from the document; the ROC/PR points are computed
 *     here from the histograms as fv_report.h says, the AUCs beside them by
 *     model/fv_metrics.h's histogram functions.
 *
 * Ownership: doc is borrowed; the page is the caller's. Pure; threads: any.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_metrics.h"
#include "fv_report.h"
#include "report-int.h"

#define MAX_EXPLAIN_COLUMNS 4096

/* ---- the text buffer ------------------------------------------------------------------ */

static bool rsb_grow(fv__rsb_t *b, size_t more)
{
    if (b->err != 0)
        return false;
    if (more > FV_REPORT_MAX_BYTES || b->len + more + 1 > FV_REPORT_MAX_BYTES) {
        b->err = FV_ETOOBIG;
        return false;
    }
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->err = FV_ENOMEM;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void fv__rsb_addn(fv__rsb_t *b, const char *s, size_t n)
{
    if (!rsb_grow(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void fv__rsb_add(fv__rsb_t *b, const char *s)
{
    fv__rsb_addn(b, s, strlen(s));
}

void fv__rsb_printf(fv__rsb_t *b, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = b->err ? b->err : FV_ENOMEM;
        return;
    }
    if ((size_t)n < sizeof buf) {
        fv__rsb_addn(b, buf, (size_t)n);
        return;
    }
    if (!rsb_grow(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void fv__rsb_esc(fv__rsb_t *b, const char *s)
{
    if (s == NULL)
        return;
    const char *run = s;
    for (const char *p = s;; p++) {
        unsigned char ch = (unsigned char)*p;
        const char *rep = NULL;
        switch (ch) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            if (ch != 0 && (ch >= 0x20 || ch == '\t' || ch == '\n') && ch != 0x7f)
                continue;
            if (ch != 0)
                rep = "\xef\xbf\xbd";
        }
        fv__rsb_addn(b, run, (size_t)(p - run));
        if (ch == 0)
            return;
        fv__rsb_add(b, rep);
        run = p + 1;
    }
}

void fv__rsb_num(fv__rsb_t *b, double v)
{
    if (isfinite(v))
        fv__rsb_printf(b, "%.17g", v);
    else
        fv__rsb_add(b, "null");
}

/* ---- reading the document (a wrong type reads as absent) ------------------------------ */

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static double jnum(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* A cell: the text escaped, or a dash. */
static void cell_str(fv__rsb_t *b, const char *s)
{
    if (s != NULL && s[0] != '\0')
        fv__rsb_esc(b, s);
    else
        fv__rsb_add(b, "<span class=\"na\">&#8211;</span>");
}

/* A number with `decimals` decimals (-1: 6 significant digits), then suffix. */
static void cell_num(fv__rsb_t *b, double v, int decimals, const char *suffix)
{
    if (isfinite(v) && decimals < 0)
        fv__rsb_printf(b, "%.6g%s", v, suffix);
    else if (isfinite(v))
        fv__rsb_printf(b, "%.*f%s", decimals, v, suffix);
    else
        fv__rsb_add(b, "<span class=\"na\">&#8211;</span>");
}

/* A member shown as a number or a string, whichever it is. */
static void cell_json(fv__rsb_t *b, const json_t *v)
{
    if (json_is_integer(v))
        fv__rsb_printf(b, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        cell_num(b, json_real_value(v), -1, "");
    else if (json_is_boolean(v))
        fv__rsb_add(b, json_is_true(v) ? "yes" : "no");
    else
        cell_str(b, json_string_value(v));
}

static void kv_row(fv__rsb_t *b, const char *key, const json_t *v)
{
    fv__rsb_printf(b, "<tr><th>%s</th><td>", key);
    cell_json(b, v);
    fv__rsb_add(b, "</td></tr>");
}

/* ---- sections ------------------------------------------------------------------------ */

static const char css[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d1d1f;"
    "margin:0;background:#f6f7f9}"
    "main{max-width:1180px;margin:0 auto;padding:16px 28px 48px}"
    "h1{font-size:1.6em;margin:.6em 0 .1em}h2{font-size:1.2em;margin:1.6em 0 .5em;"
    "border-bottom:1px solid #d5d8dd;padding-bottom:.2em}"
    "h3{font-size:1em;margin:1em 0 .4em}"
    ".sub{color:#555;margin:0 0 1em}.mono,code{font-family:ui-monospace,'DejaVu Sans Mono',"
    "monospace;font-size:.88em;word-break:break-all}"
    "nav a{margin-right:1em;color:#1f5fa8}"
    "table{border-collapse:collapse;background:#fff;margin:.4em 0 1em;font-size:.92em}"
    "th,td{border:1px solid #dde0e4;padding:3px 8px;text-align:left;vertical-align:top}"
    "th{background:#eef0f3;font-weight:600}td.n{text-align:right;font-variant-numeric:"
    "tabular-nums}"
    ".na{color:#999}.note{color:#555;font-style:italic}.ok{color:#1a7f37;font-weight:600}"
    ".bad{color:#b42318;font-weight:600}"
    ".figs{display:flex;flex-wrap:wrap;gap:12px}"
    "figure{margin:0;background:#fff;border:1px solid #dde0e4;padding:8px 10px}"
    "figcaption{font-weight:600;font-size:.92em;margin-bottom:4px}"
    "svg{display:block;font-size:11px}svg text{fill:#333}svg .label{font-size:12px}"
    "svg .plot{fill:#fff;stroke:#999}svg .grid{stroke:#e5e7ea}"
    "svg .ref{stroke:#aaa;stroke-dasharray:4 3}svg polyline{stroke-width:2}"
    ".legend{list-style:none;padding:0;margin:4px 0 0;font-size:.85em;display:flex;"
    "flex-wrap:wrap;gap:12px}.swatch{display:inline-block;width:12px;height:12px;"
    "margin-right:4px;vertical-align:-1px}"
    "details{margin:.4em 0}";

static void section_summary(fv__rsb_t *b, const json_t *job, const json_t *doc)
{
    fv__rsb_add(b, "<section id=\"summary\"><h2>Job</h2><table class=\"kv\">");
    fv__rsb_add(b, "<tr><th>id</th><td class=\"mono\">");
    cell_str(b, jstr(job, "id"));
    fv__rsb_add(b, "</td></tr>");
    static const char *const keys[] = {"name",
                                       "status",
                                       "why",
                                       "model",
                                       "task",
                                       "secagg",
                                       "rounds",
                                       "metric",
                                       "submitted_by",
                                       "submitted",
                                       "started",
                                       "finished",
                                       "rounds_done",
                                       "distill_rounds_done",
                                       "rounds_failed",
                                       "final_version",
                                       "student_version"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(job, keys[i]);
        if (v != NULL && !json_is_null(v))
            kv_row(b, keys[i], v);
    }
    kv_row(b, "report generated", json_object_get(doc, "generated"));
    fv__rsb_add(b, "</table></section>");
}

/* The job's differential privacy (the spec's "privacy" section, as job show has it) and
 * what stays outside its budget; absent or null: one line saying there is none. */
static void section_privacy(fv__rsb_t *b, const json_t *p)
{
    fv__rsb_add(b, "<section id=\"privacy\"><h2>Privacy</h2>");
    if (!json_is_object(p)) {
        fv__rsb_add(b, "<p class=\"note\">no differential privacy (the job has no "
                       "\"privacy\" section)</p></section>");
        return;
    }
    fv__rsb_add(b, "<table class=\"kv\">");
    static const char *const keys[] = {"mode", "epsilon",     "noise_multiplier", "delta",
                                       "clip", "sample_rate", "min_honest"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(p, keys[i]);
        if (v != NULL && !json_is_null(v))
            kv_row(b, keys[i], v);
    }
    fv__rsb_add(b, "<tr><th>outside the budget</th><td>");
    const json_t *ob = json_object_get(p, "outside_budget"), *w;
    size_t i;
    json_array_foreach(ob, i, w)
    {
        if (i > 0)
            fv__rsb_add(b, ", ");
        cell_str(b, json_string_value(w));
    }
    if (json_array_size(ob) == 0)
        cell_str(b, NULL);
    fv__rsb_add(b, "</td></tr></table><p class=\"note\">epsilon is per record of each "
                   "agent's data, at delta, for the whole job; each agent computes its own "
                   "plan and charges its own ledger. The releases listed outside the budget "
                   "carry no noise.</p></section>");
}

/* The data schema the job trained on (its lineage): where it came from, its SHA-256, who
 * contributed a vocabulary and who refused, and its columns. */
static void section_schema(fv__rsb_t *b, const json_t *sc)
{
    fv__rsb_add(b, "<section id=\"schema\"><h2>Data schema</h2>");
    if (!json_is_object(sc)) {
        fv__rsb_add(b, "<p class=\"note\">not recorded</p></section>");
        return;
    }
    const char *src = jstr(sc, "source");
    fv__rsb_add(b, "<table class=\"kv\" id=\"schema-table\"><tr><th>source</th><td>");
    cell_str(b, src == NULL                      ? NULL
                : strcmp(src, "discovered") == 0 ? "discovered: the schema round's union of "
                                                   "the banks' vocabularies"
                : strcmp(src, "given") == 0      ? "given in the job spec"
                : strcmp(src, "open") == 0       ? "open: the job ended before its schema was fixed"
                                                 : src);
    fv__rsb_add(b, "</td></tr><tr><th>sha256</th><td class=\"mono\" id=\"schema-sha256\">");
    cell_str(b, jstr(sc, "sha256"));
    fv__rsb_add(b, "</td></tr>");
    json_t *v = json_object_get(sc, "version");
    if (v != NULL && !json_is_null(v))
        kv_row(b, "version", v);
    const json_t *w;
    size_t i;
    if (src != NULL && strcmp(src, "discovered") == 0) {
        fv__rsb_add(b, "<tr><th>vocabularies from</th><td>");
        json_array_foreach(json_object_get(sc, "contributors"), i, w)
        {
            if (i > 0)
                fv__rsb_add(b, ", ");
            cell_str(b, json_string_value(w));
        }
        fv__rsb_add(b, "</td></tr><tr><th>refused</th><td>");
        json_array_foreach(json_object_get(sc, "refused"), i, w)
        {
            if (i > 0)
                fv__rsb_add(b, ", ");
            cell_str(b, jstr(w, "agent"));
            fv__rsb_add(b, " (");
            cell_str(b, jstr(w, "category"));
            fv__rsb_add(b, ")");
        }
        if (json_array_size(json_object_get(sc, "refused")) == 0)
            cell_str(b, NULL);
        fv__rsb_add(b, "</td></tr>");
    }
    v = json_object_get(sc, "unknown_category");
    if (json_is_string(v))
        kv_row(b, "unknown_category", v);
    fv__rsb_add(b, "</table><table id=\"schema-columns\"><tr><th>#</th><th>column</th>"
                   "<th>type</th><th>categories</th></tr>");
    json_array_foreach(json_object_get(sc, "columns"), i, w)
    {
        fv__rsb_printf(b, "<tr><td class=\"n\">%zu</td><td>", i + 1);
        cell_str(b, jstr(w, "name"));
        fv__rsb_add(b, "</td><td>");
        cell_str(b, jstr(w, "type"));
        fv__rsb_add(b, "</td><td class=\"n\">");
        json_t *cats = json_object_get(w, "categories");
        if (json_is_integer(cats) || json_is_string(cats))
            cell_json(b, cats);
        fv__rsb_add(b, "</td></tr>");
        if (i + 1 >= FV_REPORT_MAX_COLUMNS)
            break;
    }
    fv__rsb_add(b, "</table><p class=\"note\">The SHA-256 is over the schema's canonical "
                   "JSON (schema.json in the job's directory for a discovered schema); a "
                   "model's lineage names the same one.</p></section>");
}

/* The metric curves of one round kind. */
typedef struct mgroup {
    const char *title, *y_label;
    const char *keys[6], *labels[6];
} mgroup_t;

static void section_curves(fv__rsb_t *b, const json_t *rounds, const char *kind,
                           const char *heading, bool student)
{
    static const mgroup_t groups[] = {
        {"ROC AUC and PR AUC",
         "area under the curve",
         {"val_roc_auc", "val_pr_auc", "teacher_roc_auc", "teacher_pr_auc", "int8_roc_auc",
          "int8_pr_auc"},
         {"ROC AUC", "PR AUC", "teacher ROC AUC", "teacher PR AUC", "int8 ROC AUC", "int8 PR AUC"}},
        {"accuracy",
         "accuracy",
         {"val_accuracy", "teacher_accuracy", "int8_accuracy"},
         {"accuracy", "teacher accuracy", "int8 accuracy"}},
        {"log loss", "mean log loss", {"val_log_loss"}, {"log loss"}},
    };
    size_t n = 0, total = json_array_size(rounds);
    double *x = malloc(sizeof(double) * (total ? total : 1));
    double *ys = malloc(sizeof(double) * (total ? total : 1) * 6);
    if (x == NULL || ys == NULL) {
        b->err = b->err ? b->err : FV_ENOMEM;
        free(x);
        free(ys);
        return;
    }
    fv__rsb_printf(b, "<h3>%s</h3>", heading);
    size_t i;
    json_t *r;
    json_array_foreach(rounds, i, r)
    {
        const char *k = jstr(r, "kind");
        if (k != NULL && strcmp(k, kind) == 0 && json_is_number(json_object_get(r, "round")) &&
            n < FV_REPORT_MAX_ROUNDS)
            x[n++] = jnum(r, "round");
    }
    if (n == 0) {
        fv__rsb_printf(b, "<p class=\"note\">no %s round completed</p>", kind);
        free(x);
        free(ys);
        return;
    }
    bool any = false;
    fv__rsb_add(b, "<div class=\"figs\">");
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        fv__rseries_t s[6];
        char lab[6][48];
        size_t ns = 0;
        for (size_t kk = 0; kk < 6 && groups[g].keys[kk] != NULL; kk++) {
            const char *key = groups[g].keys[kk];
            bool present = false;
            size_t m = 0;
            double *y = ys + ns * (total ? total : 1);
            json_array_foreach(rounds, i, r)
            {
                const char *k = jstr(r, "kind");
                if (k == NULL || strcmp(k, kind) != 0 ||
                    !json_is_number(json_object_get(r, "round")) || m >= n)
                    continue;
                json_t *met = json_object_get(r, "metrics");
                present = present || json_object_get(met, key) != NULL;
                y[m++] = jnum(met, key);
            }
            if (!present)
                continue;
            snprintf(lab[ns], sizeof lab[ns], "%s%s",
                     student && strncmp(key, "val_", 4) == 0 ? "student " : "",
                     groups[g].labels[kk]);
            s[ns] = (fv__rseries_t){.key = key, .label = lab[ns], .x = x, .y = y, .n = m};
            ns++;
        }
        if (ns > 0) {
            char title[96];
            snprintf(title, sizeof title, "%s: %s per round", kind, groups[g].title);
            any = fv__report_round_chart(b, title, groups[g].y_label, s, ns) || any;
        }
    }
    fv__rsb_add(b, "</div>");
    if (!any)
        fv__rsb_add(b, "<p class=\"note\">no metric of these rounds is defined</p>");
    free(x);
    free(ys);
}

/* The final model's histograms: B counts each, copied into pos/neg (malloc'd). */
static int read_hist(const json_t *final, uint64_t **ret_pos, uint64_t **ret_neg, size_t *ret_n,
                     const char **why)
{
    const json_t *hp = json_object_get(final, "hist_pos"), *hn = json_object_get(final, "hist_neg");
    size_t n = json_array_size(hp);
    if (!json_is_array(hp) || !json_is_array(hn) || n == 0 || n != json_array_size(hn) ||
        n > FV_REPORT_MAX_BINS) {
        *why = "the document's histograms are missing or malformed";
        return FV_EINVAL;
    }
    uint64_t *pos = calloc(n, sizeof *pos), *neg = calloc(n, sizeof *neg);
    if (pos == NULL || neg == NULL) {
        free(pos);
        free(neg);
        *why = "out of memory";
        return FV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(hp, i), *c = json_array_get(hn, i);
        if (!json_is_integer(a) || !json_is_integer(c) || json_integer_value(a) < 0 ||
            json_integer_value(c) < 0) {
            free(pos);
            free(neg);
            *why = "a histogram bin is not a non-negative integer";
            return FV_EINVAL;
        }
        pos[i] = (uint64_t)json_integer_value(a);
        neg[i] = (uint64_t)json_integer_value(c);
    }
    *ret_pos = pos;
    *ret_neg = neg;
    *ret_n = n;
    return 0;
}

static void section_final(fv__rsb_t *b, const json_t *final)
{
    fv__rsb_add(b, "<section id=\"final\"><h2>Final model: ROC and precision-recall</h2>");
    const char *absent = jstr(final, "absent");
    uint64_t *pos = NULL, *neg = NULL;
    size_t nb = 0;
    const char *why = NULL;
    if (absent != NULL || !json_is_object(final)) {
        fv__rsb_add(b, "<p class=\"note\">");
        cell_str(b, absent != NULL ? absent : "not in the report's document");
        fv__rsb_add(b, "</p></section>");
        return;
    }
    if (read_hist(final, &pos, &neg, &nb, &why) != 0) {
        fv__rsb_add(b, "<p class=\"note\">");
        fv__rsb_esc(b, why);
        fv__rsb_add(b, "</p></section>");
        return;
    }
    double P = 0, N = 0;
    size_t nonempty = 0;
    for (size_t i = 0; i < nb; i++) {
        P += (double)pos[i];
        N += (double)neg[i];
        nonempty += pos[i] + neg[i] > 0;
    }
    fv__rsb_add(b, "<p>");
    cell_str(b, jstr(final, "label"));
    fv__rsb_printf(
        b,
        ". Curves from the cohort's summed score histograms (%zu bins; %.0f positive and "
        "%.0f negative validation rows); no bank's own counts are known to anyone.",
        nb, P, N);
    if (P == 0 || N == 0) {
        fv__rsb_add(b, " The histograms hold no positive or no negative row: no curve.</p>");
        goto out;
    }
    double roc_auc = NAN, pr_auc = NAN;
    fv_metrics_hist_roc_auc(pos, neg, nb, &roc_auc);
    fv_metrics_hist_pr_auc(pos, neg, nb, &pr_auc);
    fv__rsb_add(b, " ROC AUC ");
    cell_num(b, roc_auc, 4, "");
    fv__rsb_add(b, ", PR AUC (average precision) ");
    cell_num(b, pr_auc, 4, "");
    fv__rsb_add(b, ".</p>");
    double *roc = malloc(sizeof(double) * 2 * (nonempty + 1));
    double *pr = malloc(sizeof(double) * 2 * (nonempty + 1));
    if (roc == NULL || pr == NULL) {
        free(roc);
        free(pr);
        b->err = b->err ? b->err : FV_ENOMEM;
        goto out;
    }
    size_t nr = 0, np = 0;
    roc[0] = roc[1] = 0;
    nr = 1;
    double tp = 0, fp = 0;
    for (size_t i = nb; i > 0; i--) {
        if (pos[i - 1] + neg[i - 1] == 0)
            continue;
        tp += (double)pos[i - 1];
        fp += (double)neg[i - 1];
        roc[2 * nr] = fp / N;
        roc[2 * nr + 1] = tp / P;
        nr++;
        pr[2 * np] = tp / P;
        pr[2 * np + 1] = tp / (tp + fp);
        np++;
    }
    fv__rsb_add(b, "<div class=\"figs\">");
    fv__report_curve_chart(b, "ROC curve", "roc", "false positive rate", "true positive rate", roc,
                           nr, true, -1);
    fv__report_curve_chart(b, "Precision-recall curve", "pr", "recall", "precision", pr, np, false,
                           P / (P + N));
    fv__rsb_add(b, "</div>");
    free(roc);
    free(pr);
out:
    free(pos);
    free(neg);
    fv__rsb_add(b, "</section>");
}

static void compression_side(fv__rsb_t *b, const char *name, const json_t *s)
{
    if (!json_is_object(s))
        return;
    const json_t *lat = json_object_get(s, "latency_us");
    fv__rsb_printf(b, "<tr><th>%s</th><td>", name);
    cell_str(b, jstr(s, "arch"));
    fv__rsb_add(b, "</td><td class=\"n\">");
    cell_json(b, json_object_get(s, "version"));
    fv__rsb_add(b, "</td><td class=\"n\">");
    cell_json(b, json_object_get(s, "params"));
    fv__rsb_add(b, "</td><td class=\"n\">");
    cell_json(b, json_object_get(s, "bytes"));
    fv__rsb_add(b, "</td><td class=\"n\">");
    cell_num(b, jnum(s, "roc_auc"), 4, "");
    fv__rsb_add(b, "</td><td class=\"n\">");
    cell_num(b, jnum(s, "pr_auc"), 4, "");
    fv__rsb_add(b, "</td><td class=\"n\">");
    cell_num(b, jnum(s, "accuracy"), 4, "");
    fv__rsb_add(b, "</td><td class=\"n\">");
    cell_num(b, jnum(lat, "batch_1"), 3, ""); /* a student scores in tens of ns */
    fv__rsb_add(b, "</td><td class=\"n\">");
    cell_num(b, jnum(lat, "batch_1024"), 1, "");
    fv__rsb_add(b, "</td></tr>");
}

static void section_compression(fv__rsb_t *b, const json_t *c)
{
    fv__rsb_add(b, "<section id=\"compression\"><h2>Compression (distillation)</h2>");
    if (!json_is_object(c)) {
        fv__rsb_add(b, "<p class=\"note\">no distilled student in this job (spec key "
                       "distill)</p></section>");
        return;
    }
    fv__rsb_add(b, "<table id=\"compression-table\"><tr><th></th><th>architecture</th>"
                   "<th>version</th><th>parameters</th><th>bytes</th><th>ROC AUC</th>"
                   "<th>PR AUC</th><th>accuracy</th><th>latency, 1 row (&#181;s)</th>"
                   "<th>latency, 1024 rows (&#181;s)</th></tr>");
    compression_side(b, "teacher", json_object_get(c, "teacher"));
    compression_side(b, "student", json_object_get(c, "student"));
    compression_side(b, "student int8", json_object_get(c, "student_int8"));
    fv__rsb_add(b, "</table><table class=\"kv\">");
    const json_t *ratios = json_object_get(c, "ratios");
    static const char *const rk[] = {"params", "bytes", "latency_batch_1", "latency_batch_1024"};
    for (size_t i = 0; i < 4; i++) {
        fv__rsb_printf(b, "<tr><th>teacher / student: %s</th><td class=\"n\">", rk[i]);
        cell_num(b, jnum(ratios, rk[i]), 2, "&#215;");
        fv__rsb_add(b, "</td></tr>");
    }
    static const char *const ok[] = {"roc_auc_gap", "accuracy_gap", "round",         "n_val",
                                     "temperature", "alpha",        "distill_rounds"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (json_object_get(c, ok[i]) != NULL)
            kv_row(b, ok[i], json_object_get(c, ok[i]));
    fv__rsb_add(b, "</table><p class=\"note\">");
    cell_str(b, jstr(c, "latency_method"));
    fv__rsb_add(b, "</p></section>");
}

typedef struct bar {
    const char *name;
    double v;
} bar_t;

static int bar_cmp(const void *a, const void *b)
{
    double x = ((const bar_t *)a)->v, y = ((const bar_t *)b)->v;
    if (isnan(x) || isnan(y))
        return isnan(x) - isnan(y);
    if (x != y)
        return x > y ? -1 : 1;
    return strcmp(((const bar_t *)a)->name, ((const bar_t *)b)->name);
}

static void section_explain(fv__rsb_t *b, const json_t *e)
{
    fv__rsb_add(b, "<section id=\"explanation\"><h2>Global explanation</h2>");
    const json_t *cols = json_object_get(e, "columns");
    if (!json_is_object(e) || jstr(e, "absent") != NULL || !json_is_array(cols)) {
        fv__rsb_add(b, "<p class=\"note\">no explanation round in this job (spec key "
                       "explain)</p></section>");
        return;
    }
    size_t n = json_array_size(cols);
    if (n > MAX_EXPLAIN_COLUMNS)
        n = MAX_EXPLAIN_COLUMNS;
    bar_t *bars = calloc(n ? n : 1, sizeof *bars);
    if (bars == NULL) {
        b->err = b->err ? b->err : FV_ENOMEM;
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(cols, i);
        if (jstr(c, "name") == NULL)
            continue;
        bars[m].name = jstr(c, "name");
        bars[m].v = jnum(c, "mean_abs");
        m++;
    }
    qsort(bars, m, sizeof *bars, bar_cmp);
    fv__rsb_add(b, "<p>Mean absolute reason-code contribution per column of the final model, "
                   "over ");
    cell_json(b, json_object_get(e, "rows"));
    fv__rsb_add(b, " validation rows of every agent (round ");
    cell_json(b, json_object_get(e, "round"));
    fv__rsb_add(b, "): each agent summed |contribution| over its own rows and the sums were "
                   "added securely, so no bank's own figures are revealed.</p>");
    size_t drawn = m < FV_REPORT_MAX_BARS ? m : FV_REPORT_MAX_BARS;
    const char **names = calloc(drawn ? drawn : 1, sizeof *names);
    double *vals = calloc(drawn ? drawn : 1, sizeof *vals);
    if (names == NULL || vals == NULL) {
        b->err = b->err ? b->err : FV_ENOMEM;
    } else if (drawn > 0) {
        for (size_t i = 0; i < drawn; i++) {
            names[i] = bars[i].name;
            vals[i] = bars[i].v;
        }
        char title[96];
        snprintf(title, sizeof title, "mean |contribution| per column (largest %zu of %zu)", drawn,
                 m);
        fv__report_bar_chart(b, title, names, vals, drawn);
    }
    free(names);
    free(vals);
    fv__rsb_printf(b,
                   "<details><summary>all %zu columns</summary><table><tr><th>#</th>"
                   "<th>column</th><th>mean |contribution|</th></tr>",
                   m);
    for (size_t i = 0; i < m; i++) {
        fv__rsb_printf(b, "<tr><td class=\"n\">%zu</td><td>", i + 1);
        fv__rsb_esc(b, bars[i].name);
        fv__rsb_add(b, "</td><td class=\"n\">");
        cell_num(b, bars[i].v, -1, "");
        fv__rsb_add(b, "</td></tr>");
    }
    fv__rsb_add(b, "</table></details></section>");
    free(bars);
}

static void names_list(fv__rsb_t *b, const json_t *arr)
{
    size_t i;
    json_t *v;
    bool first = true;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v))
            continue;
        if (!first)
            fv__rsb_add(b, ", ");
        fv__rsb_esc(b, json_string_value(v));
        first = false;
    }
    if (first)
        fv__rsb_add(b, "<span class=\"na\">&#8211;</span>");
}

static void section_cohorts(fv__rsb_t *b, const json_t *cohorts, const json_t *agents)
{
    fv__rsb_add(b, "<section id=\"cohorts\"><h2>Agents and data fingerprints</h2>");
    if (json_array_size(agents) == 0) {
        fv__rsb_add(b, "<p class=\"note\">no agent accepted this job</p>");
    } else {
        fv__rsb_add(b, "<table id=\"agents-table\"><tr><th>agent</th><th>rows</th>"
                       "<th>data SHA-256 (as the agent declared it)</th></tr>");
        size_t i;
        json_t *a;
        json_array_foreach(agents, i, a)
        {
            fv__rsb_add(b, "<tr><td>");
            cell_str(b, jstr(a, "name"));
            fv__rsb_add(b, "</td><td class=\"n\">");
            cell_json(b, json_object_get(a, "rows"));
            fv__rsb_add(b, "</td><td class=\"mono\">");
            cell_str(b, jstr(a, "data_sha256"));
            fv__rsb_add(b, "</td></tr>");
        }
        fv__rsb_add(b, "</table>");
    }
    fv__rsb_add(b, "<h3>Cohort of every round</h3>");
    if (json_array_size(cohorts) == 0) {
        fv__rsb_add(b, "<p class=\"note\">no round recorded</p></section>");
        return;
    }
    fv__rsb_add(b, "<table id=\"cohorts-table\"><tr><th>round</th><th>attempt</th><th>kind</th>"
                   "<th>status</th><th>contributors</th><th>cohort</th></tr>");
    size_t i;
    json_t *r;
    json_array_foreach(cohorts, i, r)
    {
        if (i >= FV_REPORT_MAX_ROUNDS)
            break;
        fv__rsb_add(b, "<tr><td class=\"n\">");
        cell_json(b, json_object_get(r, "round"));
        fv__rsb_add(b, "</td><td class=\"n\">");
        cell_json(b, json_object_get(r, "attempt"));
        fv__rsb_add(b, "</td><td>");
        cell_str(b, jstr(r, "kind"));
        const char *st = jstr(r, "status");
        fv__rsb_printf(b, "</td><td class=\"%s\">",
                       st != NULL && strcmp(st, "ok") == 0 ? "ok" : "bad");
        cell_str(b, st);
        if (jstr(r, "why") != NULL) {
            fv__rsb_add(b, ": ");
            fv__rsb_esc(b, jstr(r, "why"));
        }
        fv__rsb_printf(b, "</td><td>%zu: ", json_array_size(json_object_get(r, "contributors")));
        names_list(b, json_object_get(r, "contributors"));
        fv__rsb_printf(b, "</td><td>%zu: ", json_array_size(json_object_get(r, "cohort")));
        names_list(b, json_object_get(r, "cohort"));
        fv__rsb_add(b, "</td></tr>");
    }
    fv__rsb_add(b, "</table></section>");
}

static void section_audit(fv__rsb_t *b, const json_t *a)
{
    fv__rsb_add(b, "<section id=\"audit\"><h2>Audit</h2>");
    if (!json_is_object(a) || jstr(a, "absent") != NULL) {
        fv__rsb_add(b, "<p class=\"note\">");
        cell_str(b, json_is_object(a) ? jstr(a, "absent") : "no audit summary in the document");
        fv__rsb_add(b, "</p></section>");
        return;
    }
    bool ok = json_is_true(json_object_get(a, "verified"));
    fv__rsb_printf(b, "<p id=\"audit-verdict\" class=\"%s\">", ok ? "ok" : "bad");
    if (ok) {
        fv__rsb_add(b, "The signed audit log verified: ");
        cell_json(b, json_object_get(a, "records"));
        fv__rsb_add(b, json_is_true(json_object_get(a, "head_checked"))
                           ? " records, every signature and hash link, and the signed head."
                           : " records, every signature and hash link (no head checked).");
    } else {
        fv__rsb_add(b, "The audit log did NOT verify: ");
        cell_str(b, jstr(a, "reason"));
    }
    fv__rsb_add(b, "</p>");
    json_t *ev = json_object_get(a, "job_events");
    fv__rsb_add(b, "<table id=\"audit-table\"><tr><th>event (records naming this job)</th>"
                   "<th>count</th></tr>");
    const char *k;
    json_t *v;
    json_object_foreach(ev, k, v)
    {
        fv__rsb_add(b, "<tr><td>");
        fv__rsb_esc(b, k);
        fv__rsb_add(b, "</td><td class=\"n\">");
        cell_json(b, v);
        fv__rsb_add(b, "</td></tr>");
    }
    fv__rsb_add(b, "</table></section>");
}

int fv_report_html(const json_t *doc, char **ret, size_t *ret_len, fv_diag_t *d)
{
    if (!json_is_object(doc) || ret == NULL || ret_len == NULL)
        return fv_diag_set(d, FV_EINVAL, "the report's document must be a JSON object");
    fv__rsb_t b = {0};
    const json_t *job = json_object_get(doc, "job");
    const json_t *rounds = json_object_get(doc, "rounds");
    if (!json_is_array(rounds))
        rounds = NULL;
    const char *name = jstr(job, "name");
    fv__rsb_add(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                    "<meta name=\"viewport\" content=\"width=device-width\">"
                    "<title>fedvault job report: ");
    fv__rsb_esc(&b, name != NULL ? name : "(unnamed job)");
    fv__rsb_add(&b, "</title><style>");
    fv__rsb_add(&b, css);
    fv__rsb_add(&b, "</style></head><body><main><h1>Job report: ");
    fv__rsb_esc(&b, name != NULL ? name : "(unnamed job)");
    fv__rsb_add(&b, "</h1><p class=\"sub\">fedvault &#183; job <span class=\"mono\">");
    cell_str(&b, jstr(job, "id"));
    fv__rsb_add(&b, "</span> &#183; ");
    cell_str(&b, jstr(job, "status"));
    fv__rsb_add(&b, "</p><nav><a href=\"#summary\">job</a><a href=\"#rounds\">rounds</a>"
                    "<a href=\"#final\">final model</a><a href=\"#compression\">compression</a>"
                    "<a href=\"#explanation\">explanation</a><a href=\"#schema\">schema</a>"
                    "<a href=\"#cohorts\">cohorts</a>"
                    "<a href=\"#audit\">audit</a></nav>");
    section_summary(&b, job, doc);
    section_privacy(&b, json_object_get(doc, "privacy"));
    section_schema(&b, json_object_get(doc, "schema"));
    fv__rsb_add(&b, "<section id=\"rounds\"><h2>Global metrics per round</h2><p>Measured on "
                    "every agent's validation rows and summed securely: each round evaluates "
                    "the global model it started from.</p>");
    section_curves(&b, rounds, "train", "Training rounds", false);
    section_curves(&b, rounds, "distill", "Distillation rounds", true);
    fv__rsb_add(&b, "</section>");
    section_final(&b, json_object_get(doc, "final"));
    section_compression(&b, json_object_get(doc, "compression"));
    section_explain(&b, json_object_get(doc, "explanation"));
    section_cohorts(&b, json_object_get(doc, "cohorts"), json_object_get(doc, "agents"));
    section_audit(&b, json_object_get(doc, "audit"));
    fv__rsb_add(&b, "</main></body></html>\n");
    if (b.err != 0) {
        free(b.p);
        return fv_diag_set(d, b.err,
                           b.err == FV_ETOOBIG ? "the report would exceed %zu bytes"
                                               : "out of memory building the report (%zu bytes)",
                           FV_REPORT_MAX_BYTES);
    }
    *ret = b.p;
    *ret_len = b.len;
    return 0;
}
