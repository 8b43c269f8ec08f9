/* cmd_admin.c - the admin commands: `fedvault status | agents | job | model | crl`; here
 * status, agents list and crl reload, with their --help texts.
 *
 * The admin commands are clients of a running coordinator's admin port: one mutually
 * authenticated TLS connection made with the admin kit of `fedvault provision`, one
 * request (or a few) over it. Their files: admin_client.c (the options, the kit, the
 * connection, the answer helpers and printers; admin-int.h), this file, cmd_admin_job.c
 * (job) and cmd_admin_model.c (model).
 *
 * Exit codes: 0 success; 1 the coordinator refused (status < 0: its sentence is printed)
 * or the command failed locally (config, kit, output file); 2 usage; 3 the coordinator
 * could not be reached, the TLS handshake or authentication failed, the connection was
 * lost or no answer came within --timeout.
 */
#include "admin-int.h"

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

/* ---- usage texts ------------------------------------------------------------------- */

static const char usage_status[] =
    "Usage: fedvault status [options]\n"
    "\n"
    "Shows the coordinator's state: federation, version, uptime, connected and known\n"
    "agents, the running job (round, phase, answers) and job counts.\n"
    "\n" COMMON_OPTS;

static const char usage_agents[] =
    "Usage: fedvault agents list [options]\n"
    "\n"
    "Lists the agents the coordinator knows: name, connected, address, certificate\n"
    "serial, first and last seen, whether it is in the running job, its consecutive\n"
    "silent rounds (MISSES) and, when benched for them, the rounds it still sits out\n"
    "(BENCHED; see fedvault-coordinator --bench-after).\n"
    "\n" COMMON_OPTS;

static const char usage_crl[] =
    "Usage: fedvault crl reload [options]\n"
    "\n"
    "Makes the coordinator re-read its certificate revocation list (after `fedvault\n"
    "provision revoke` and copying crl.pem to the coordinator's kit): new connections\n"
    "are checked against it, and the live sessions (agents' and admins') whose certificate\n"
    "it revokes are closed before the command returns (a revoked agent in a round is a\n"
    "dropout). Prints the number of revoked certificates and of sessions closed.\n"
    "\n" COMMON_OPTS;

/* ---- the commands --------------------------------------------------------------------- */

static int show_status(const json_t *b)
{
    char buf[512], d[64];
    double up = 0;
    bool have_up = fv__cli_fnum(b, "uptime_s", &up);
    printf("federation   %s\n", fv__cli_ftxt(b, "federation", buf, sizeof buf));
    printf("coordinator  %s\n", fv__cli_ftxt(b, "coordinator", buf, sizeof buf));
    printf("version      %s\n", fv__cli_ftxt(b, "version", buf, sizeof buf));
    printf("uptime       %s\n", fv__cli_dur(up, have_up, d, sizeof d));
    printf("agents       %s connected", fv__cli_ftxt(b, "agents_connected", buf, sizeof buf));
    printf(" / %s known\n", fv__cli_ftxt(b, "agents_known", buf, sizeof buf));
    const json_t *job = json_object_get(b, "job");
    if (!json_is_object(job)) {
        printf("job          none running\n");
    } else {
        char id[80]; /* 64 hex and the NUL */
        printf("job          %s", fv__cli_ftxt(job, "name", buf, sizeof buf));
        printf(" (%s): ", fv__cli_ftxt(job, "id", id, sizeof id));
        printf("%s, ", fv__cli_ftxt(job, "status", buf, sizeof buf));
        printf("round %s", fv__cli_ftxt(job, "round", buf, sizeof buf));
        printf("/%s, ", fv__cli_ftxt(job, "rounds", buf, sizeof buf));
        printf("phase %s, ", fv__cli_ftxt(job, "phase", buf, sizeof buf));
        if (fv__cli_cohort_summary(job, buf, sizeof buf) != NULL) {
            printf("%s\n", buf); /* waiting: on whom, and who refused (cmd_job_status.c) */
        } else {
            printf("%s", fv__cli_ftxt(job, "answered", buf, sizeof buf));
            printf("/%s agents answered\n", fv__cli_ftxt(job, "expected", buf, sizeof buf));
        }
    }
    const json_t *jobs = json_object_get(b, "jobs");
    static const char *const kinds[] = {"queued", "running", "done", "failed", "aborted"};
    printf("jobs        ");
    for (size_t i = 0; i < N_OF(kinds); i++)
        printf(" %s %s%s", kinds[i], fv__cli_ftxt(jobs, kinds[i], buf, sizeof buf),
               i + 1 < N_OF(kinds) ? "," : "\n");
    return FV_EXIT_OK;
}

int fv_cmd_status(int argc, char **argv)
{
    args_t a = {.cmd = "status", .usage = usage_status};
    json_t *b = NULL;
    int rc = fv__cli_admin_noarg_call(argc, argv, &a, "status", &b);
    if (rc >= 0)
        return rc;
    rc = show_status(b);
    json_decref(b);
    return rc;
}

static int agents_list(int argc, char **argv)
{
    static const col_t cols[] = {
        {"NAME", "name", 0},
        {"CONNECTED", "connected", 0},
        {"ADDR", "addr", 0},
        {"SERIAL", "serial", 12},
        {"FIRST_SEEN", "first_seen", 0},
        {"LAST_SEEN", "last_seen", 0},
        {"IN_JOB", "in_job", 0},
        {"MISSES", "misses", 0},
        {"BENCHED", "bench_rounds_left", 0},
    };
    static const list_cmd_t l = {.cmd = "agents list",
                                 .usage = usage_agents,
                                 .req = "agents.list",
                                 .key = "agents",
                                 .none = "no agents known",
                                 .cols = cols,
                                 .n_cols = N_OF(cols)};
    return fv__cli_admin_list_run(argc, argv, &l);
}

int fv_cmd_agents(int argc, char **argv)
{
    static const sub_t subs[] = {{"list", agents_list}};
    return fv__cli_admin_group_run(argc, argv, "agents", usage_agents, subs, N_OF(subs));
}

static int crl_reload(int argc, char **argv)
{
    args_t a = {.cmd = "crl reload", .usage = usage_crl};
    json_t *b = NULL;
    int rc = fv__cli_admin_noarg_call(argc, argv, &a, "crl.reload", &b);
    if (rc >= 0)
        return rc;
    char buf[64], buf2[64];
    printf("CRL reloaded: %s revoked certificate(s), %s live session(s) closed\n",
           fv__cli_ftxt(b, "revoked", buf, sizeof buf),
           fv__cli_ftxt(b, "sessions_closed", buf2, sizeof buf2));
    json_decref(b);
    return FV_EXIT_OK;
}

int fv_cmd_crl(int argc, char **argv)
{
    static const sub_t subs[] = {{"reload", crl_reload}};
    return fv__cli_admin_group_run(argc, argv, "crl", usage_crl, subs, N_OF(subs));
}
