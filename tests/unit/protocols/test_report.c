/* test_report.c - the job report's renderer (protocols/fv_report.h): hostile names are
 * escaped, absent and malformed sections render as notes, NaN metrics are gaps, a job of
 * one round still plots its point, and the ROC/PR points are those fv_report.h defines. */
#include <jansson.h>

#include "fv_report.h"
#include "fv_test.h"

static char *render(const char *doc_text, size_t *ret_len)
{
    json_error_t je;
    json_t *doc = json_loads(doc_text, 0, &je);
    if (doc == NULL)
        FV__FAIL("test document: %s (line %d)", je.text, je.line);
    char *html = NULL;
    size_t len = 0;
    fv_diag_t d = {""};
    CHECK_OK(fv_report_html(doc, &html, &len, &d), &d);
    CHECK_UINT_EQ(strlen(html), len);
    json_decref(doc);
    if (ret_len != NULL)
        *ret_len = len;
    return html;
}

/* Nothing in the page loads anything or runs anything. */
static void check_inert(const char *html)
{
    CHECK(strstr(html, "<script") == NULL);
    CHECK(strstr(html, "http://") == NULL);
    CHECK(strstr(html, "https://") == NULL);
    CHECK(strstr(html, "<img") == NULL);
    CHECK(strstr(html, "<link") == NULL);
    CHECK(strstr(html, "url(") == NULL);
    CHECK(strstr(html, "@import") == NULL);
}

static void test_hostile_names(void)
{
    const char *doc =
        "{\"job\":{\"id\":\"ab<cd\",\"name\":\"<script>alert(1)</script>\",\"status\":\"done\","
        "\"why\":\"a & b \\u001b[31m\"},"
        "\"rounds\":[{\"round\":1,\"kind\":\"train\",\"metrics\":{\"val_roc_auc\":0.7}}],"
        "\"agents\":[{\"name\":\"\\\"><img src=x onerror=alert(1)>\",\"rows\":10,"
        "\"data_sha256\":\"<b>\"}],"
        "\"cohorts\":[{\"round\":1,\"attempt\":1,\"kind\":\"train\",\"status\":\"ok\","
        "\"cohort\":[\"<i>x</i>\"],\"contributors\":[\"'quote'\"]}],"
        "\"explanation\":{\"rows\":5,\"columns\":[{\"name\":\"</svg><script>x\","
        "\"mean_abs\":0.5},{\"name\":\"http://evil.example/a.png\",\"mean_abs\":0.1}]},"
        "\"audit\":{\"records\":3,\"verified\":false,\"reason\":\"<bad>\","
        "\"job_events\":{\"<ev>\":2}}}";
    char *html = render(doc, NULL);
    CHECK(strstr(html, "<script") == NULL);
    CHECK(strstr(html, "<img") == NULL);
    CHECK(strstr(html, "<i>x") == NULL);
    CHECK(strstr(html, "<b>") == NULL);
    CHECK(strstr(html, "<bad>") == NULL);
    CHECK(strstr(html, "<ev>") == NULL);
    CHECK(strstr(html, "\x1b") == NULL);
    /* a column named like a URL is text, and escaped; the check below is on markup */
    CHECK(strstr(html, "src=\"http") == NULL);
    CHECK_CONTAINS(html, "&lt;script&gt;alert(1)&lt;/script&gt;");
    CHECK_CONTAINS(html, "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;");
    CHECK_CONTAINS(html, "&#39;quote&#39;");
    CHECK_CONTAINS(html, "a &amp; b \xef\xbf\xbd[31m");
    CHECK_CONTAINS(html, "data-name=\"&lt;/svg&gt;&lt;script&gt;x\"");
    CHECK_CONTAINS(html, "did NOT verify: &lt;bad&gt;");
    free(html);
}

static void test_empty_and_absent(void)
{
    char *html = render("{}", NULL);
    check_inert(html);
    CHECK_CONTAINS(html, "no train round completed");
    CHECK_CONTAINS(html, "no distill round completed");
    CHECK_CONTAINS(html, "no explanation round in this job (spec key explain)");
    CHECK_CONTAINS(html, "no distilled student in this job");
    CHECK_CONTAINS(html, "no audit summary in the document");
    CHECK_CONTAINS(html, "no differential privacy (the job has no \"privacy\" section)");
    CHECK_CONTAINS(html, "<h2>Data schema</h2><p class=\"note\">not recorded</p>");
    CHECK(strstr(html, "<svg") == NULL);
    free(html);
    /* the privacy section: the spec's keys, null ones left out, the words escaped */
    html = render("{\"privacy\":{\"mode\":\"local\",\"epsilon\":3.0,\"noise_multiplier\":null,"
                  "\"delta\":1e-05,\"clip\":1.0,\"sample_rate\":null,\"min_honest\":null,"
                  "\"outside_budget\":[\"stats\",\"metrics\",\"<x>\"]}}",
                  NULL);
    check_inert(html);
    CHECK_CONTAINS(html, "<h2>Privacy</h2><table class=\"kv\"><tr><th>mode</th><td>local</td>"
                         "</tr><tr><th>epsilon</th><td>3</td></tr><tr><th>delta</th><td>1e-05"
                         "</td></tr><tr><th>clip</th><td>1</td></tr><tr><th>outside the budget"
                         "</th><td>stats, metrics, &lt;x&gt;</td></tr></table>");
    free(html);
    /* the data schema: a discovered one with its lineage, hostile names escaped */
    html = render("{\"schema\":{\"source\":\"discovered\",\"sha256\":\"ab12\",\"version\":1,"
                  "\"contributors\":[\"bank-a\",\"<b>\"],\"refused\":[{\"agent\":\"bank-c\","
                  "\"category\":\"policy\"}],\"unknown_category\":\"other\",\"columns\":[{"
                  "\"name\":\"job\",\"type\":\"categorical\",\"categories\":4},{\"name\":"
                  "\"amount\",\"type\":\"numeric\"}]}}",
                  NULL);
    check_inert(html);
    CHECK_CONTAINS(html, "<th>source</th><td>discovered: the schema round&#39;s union of the "
                         "banks&#39; vocabularies</td>");
    CHECK_CONTAINS(html, "<td class=\"mono\" id=\"schema-sha256\">ab12</td>");
    CHECK_CONTAINS(html, "<th>vocabularies from</th><td>bank-a, &lt;b&gt;</td>");
    CHECK_CONTAINS(html, "<th>refused</th><td>bank-c (policy)</td>");
    CHECK_CONTAINS(html, "<tr><td class=\"n\">1</td><td>job</td><td>categorical</td><td "
                         "class=\"n\">4</td></tr><tr><td class=\"n\">2</td><td>amount</td><td>"
                         "numeric</td><td class=\"n\"></td></tr>");
    free(html);
    html = render("{\"schema\":{\"source\":\"given\",\"sha256\":\"cd34\",\"columns\":[]}}", NULL);
    CHECK_CONTAINS(html, "given in the job spec");
    CHECK(strstr(html, "vocabularies from") == NULL);
    free(html);
    html = render("{\"job\":7,\"rounds\":{},\"final\":{\"absent\":\"multi <class>\"},"
                  "\"explanation\":{\"absent\":\"no explain round\"},\"cohorts\":\"x\","
                  "\"agents\":null,\"audit\":{\"absent\":\"cannot read audit.log\"},"
                  "\"compression\":[1]}",
                  NULL);
    check_inert(html);
    CHECK_CONTAINS(html, "multi &lt;class&gt;");
    CHECK_CONTAINS(html, "no explanation round in this job (spec key explain)");
    CHECK_CONTAINS(html, "cannot read audit.log");
    free(html);
    /* malformed histograms: a note, no curve */
    static const char *const bad[] = {
        "{\"final\":{\"round\":2,\"hist_pos\":[1,2],\"hist_neg\":[1]}}",
        "{\"final\":{\"round\":2,\"hist_pos\":[1,-2],\"hist_neg\":[1,1]}}",
        "{\"final\":{\"round\":2,\"hist_pos\":[1,0.5],\"hist_neg\":[1,1]}}",
        "{\"final\":{\"round\":2,\"hist_pos\":[],\"hist_neg\":[]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        html = render(bad[i], NULL);
        CHECK_CONTAINS(html, "histogram");
        CHECK(strstr(html, "data-series=\"roc\"") == NULL);
        free(html);
    }
    html = render("{\"final\":{\"round\":2,\"hist_pos\":[0,0],\"hist_neg\":[3,1]}}", NULL);
    CHECK_CONTAINS(html, "no positive or no negative row");
    CHECK(strstr(html, "data-series=\"roc\"") == NULL);
    free(html);
    json_t *notobj = json_array();
    char *p = NULL;
    size_t len = 0;
    fv_diag_t d = {""};
    CHECK_INT_EQ(fv_report_html(notobj, &p, &len, &d), FV_EINVAL);
    CHECK(p == NULL);
    json_decref(notobj);
}

static void test_nan_and_one_round(void)
{
    /* NaN metrics arrive as null: gaps, and a series of nothing but gaps draws no chart */
    char *html = render("{\"rounds\":[{\"round\":1,\"kind\":\"train\",\"metrics\":"
                        "{\"val_roc_auc\":0.61,\"val_log_loss\":null}},"
                        "{\"round\":2,\"kind\":\"train\",\"metrics\":{\"val_roc_auc\":null,"
                        "\"val_log_loss\":null}},"
                        "{\"round\":3,\"kind\":\"train\",\"metrics\":{\"val_roc_auc\":0.65,"
                        "\"val_log_loss\":null}}]}",
                        NULL);
    check_inert(html);
    CHECK_CONTAINS(html, "data-series=\"val_roc_auc\" data-x=\"[1,2,3]\" "
                         "data-values=\"[0.60999999999999999,null,0.65000000000000002]\"");
    CHECK(strstr(html, "data-series=\"val_log_loss\"") == NULL);
    /* two runs of one point each: no polyline in that series, a circle per point */
    const char *g = strstr(html, "data-series=\"val_roc_auc\"");
    const char *end = strstr(g, "</g>");
    const char *pl = strstr(g, "<polyline");
    CHECK(pl == NULL || pl > end);
    free(html);
    html = render("{\"rounds\":[{\"round\":1,\"kind\":\"train\",\"metrics\":"
                  "{\"val_roc_auc\":0.7,\"val_pr_auc\":0.4,\"val_log_loss\":0.5}}]}",
                  NULL);
    CHECK_CONTAINS(html, "data-series=\"val_pr_auc\" data-x=\"[1]\" data-values=\"[0.40000");
    CHECK_CONTAINS(html, "<circle");
    CHECK_CONTAINS(html, "no distill round completed");
    /* the single round sits inside a window of non-zero width */
    CHECK_CONTAINS(html, "data-x0=\"0\" data-x1=\"2\"");
    free(html);
}

static void test_curves_and_bars(void)
{
    char *html = render("{\"final\":{\"round\":4,\"label\":\"round 4\",\"hist_pos\":[0,1,2],"
                        "\"hist_neg\":[2,1,0]},\"explanation\":{\"round\":9,\"rows\":30,"
                        "\"columns\":[{\"name\":\"a\",\"mean_abs\":0.1},{\"name\":\"b\","
                        "\"mean_abs\":0.3},{\"name\":\"c\",\"mean_abs\":null}]}}",
                        NULL);
    check_inert(html);
    /* thresholds from the top bin down: (FP/N, TP/P) and (TP/P, TP/(TP+FP)) */
    CHECK_CONTAINS(html, "data-series=\"roc\" data-points=\"[[0,0],[0,0.66666666666666663],"
                         "[0.33333333333333331,1],[1,1]]\"");
    CHECK_CONTAINS(html, "data-series=\"pr\" data-points=\"[[0.66666666666666663,1],[1,0.75],"
                         "[1,0.5]]\"");
    CHECK_CONTAINS(html, "ROC AUC 0.9444"); /* (2*3 + 1*2*0.5... ) = 8.5/9 */
    const char *b = strstr(html, "class=\"bar\" data-name=\"");
    CHECK(b != NULL);
    CHECK(strncmp(b, "class=\"bar\" data-name=\"b\" data-value=\"0.29999999999999999\"", 58) == 0);
    b = strstr(b + 1, "class=\"bar\" data-name=\"");
    CHECK(strncmp(b, "class=\"bar\" data-name=\"a\"", 25) == 0);
    b = strstr(b + 1, "class=\"bar\" data-name=\"");
    CHECK(strncmp(b, "class=\"bar\" data-name=\"c\" data-value=\"null\"", 43) == 0);
    free(html);
}

int main(void)
{
    test_hostile_names();
    test_empty_and_absent();
    test_nan_and_one_round();
    test_curves_and_bars();
    printf("ok\n");
    return 0;
}
