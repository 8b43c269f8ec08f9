/* cmd_job_report.c - `fedvault job report ID --out FILE`: the job's report page.
 *
 * cmd_admin_job.c parses the options and asks the coordinator's admin port for job.report (the
 * report's document: coordinator/coord_report.c); this file renders the document with
 * protocols/fv_report.h and writes the page through fv_cli_out (crash-safe replace, or
 * standard output for "-"). The page is rendered here rather than on the coordinator so
 * an old page can be re-rendered from a saved document (`--json` prints the document).
 *
 * Ownership: the document is borrowed. Threads: the CLI's one.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli-int.h"
#include "fv_report.h"

const char fv__cli_usage_job_report[] =
    "Usage: fedvault job report ID --out FILE [options]\n"
    "\n"
    "Writes the job's report, one self-contained HTML page (inline CSS and SVG; no script,\n"
    "nothing loaded from the network), to FILE (\"-\": standard output): the job, its\n"
    "global metrics per round (training and distillation), ROC and precision-recall\n"
    "curves of the final model from the secure score histograms, the compression report,\n"
    "the global explanation, the cohort of every round with the agents' data\n"
    "fingerprints, and the audit summary (the signed log verified). docs/report.md says\n"
    "where each number comes from. The coordinator also writes it as report.html in the\n"
    "job's directory when the job ends.\n"
    "\n"
    "  --out FILE         the page (required unless --json)\n"
    "  --json             print the report's document (JSON) instead of the page\n"
    "  --config FILE      the admin kit's admin.json (default $FEDVAULT_ADMIN_CONFIG,\n"
    "                     else ./admin.json)\n"
    "  --admin HOST:PORT  the coordinator's admin port\n"
    "  --timeout SECONDS  give up when connecting or an answer takes longer (default 30)\n"
    "  -h, --help         this text\n"
    "\n"
    "Exit status: 0 success, 1 the coordinator refused or the page could not be written,\n"
    "2 usage error, 3 the coordinator could not be reached.\n";

int fv__cli_job_report_write(const char *cmd, const char *out, const json_t *doc)
{
    char *html = NULL;
    size_t len = 0;
    fv_diag_t d = {""};
    int r = fv_report_html(doc, &html, &len, &d);
    if (r != 0) {
        fv_cli_diag_error(cmd, &d, r);
        return FV_EXIT_FAIL;
    }
    fv_cli_out_t o = {0};
    int rc = FV_EXIT_FAIL;
    if (fv_cli_out_open(cmd, out, 0644, &o) == 0) {
        bool ok = fwrite(html, 1, len, o.f) == len;
        if (fv_cli_out_close(&o, ok) == 0 && ok)
            rc = FV_EXIT_OK;
        else if (!ok)
            fv_cli_error(cmd, "%s: write failed", fv_cli_out_name(out));
    }
    free(html);
    if (rc == FV_EXIT_OK)
        fprintf(fv_cli_out_report(out, NULL), "wrote %s (%zu bytes)\n", fv_cli_out_name(out), len);
    return rc;
}
