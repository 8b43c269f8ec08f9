/* cmd_job_status.c - how `fedvault job show`, `job watch` and `status` show each agent's
 * standing in a job: who accepted, who refused (category and the agent's sentence), who
 * is gone since when, on whom a waiting job waits, and why a job failed.
 *
 * Input: the admin port's bodies (coordinator/coord_cohort.c): a job.show body's
 * "cohort" (the stored statuses: [{agent, status, category, reason, round, at, at_ms}])
 * and "live"."cohort" of the running job ({summary, agents: [{agent, status, connected,
 * at, at_ms, category, reason, round}], waiting_on, accepted, min_agents, held, ...}).
 * Everything from the coordinator is printed through safe() (no control byte reaches the
 * terminal); an absent or malformed member prints as "-" or not at all.
 *
 * Threading: the CLI's one thread. Ownership: nothing kept but the caller's `seen`.
 */
#include "cli-int.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

/* s with control bytes as '?' (as admin_client.c's fv__cli_safe). */
static const char *clean(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (; s != NULL && *s != '\0' && o + 1 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        buf[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    buf[o] = '\0';
    return buf;
}

static const char *str_of(const json_t *o, const char *key)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *fv__cli_cohort_summary(const json_t *job, char *out, size_t cap)
{
    const json_t *live = json_object_get(job, "live");
    const json_t *co = json_object_get(json_is_object(live) ? live : job, "cohort");
    const char *s = str_of(co, "summary");
    if (s == NULL)
        return NULL;
    return clean(s, out, cap);
}

/* One agent's line: "bank-a  refused (schema) at T: reason" / "gone since T (round R)". */
static void agent_line(const json_t *a, FILE *f)
{
    char nm[128], st[32], cat[40], at[48], why[600];
    clean(str_of(a, "agent") ? str_of(a, "agent") : "-", nm, sizeof nm);
    clean(str_of(a, "status") ? str_of(a, "status") : "-", st, sizeof st);
    clean(str_of(a, "at") ? str_of(a, "at") : "-", at, sizeof at);
    fprintf(f, "  %-20s %s", nm, st);
    if (strcmp(st, "refused") == 0) {
        clean(str_of(a, "category") ? str_of(a, "category") : "unknown", cat, sizeof cat);
        clean(str_of(a, "reason") ? str_of(a, "reason") : "", why, sizeof why);
        fprintf(f, " (%s) at %s: %s", cat, at, why);
    } else if (strcmp(st, "gone") == 0) {
        const json_t *r = json_object_get(a, "round");
        fprintf(f, " since %s", at);
        if (json_is_integer(r))
            fprintf(f, " (round %" JSON_INTEGER_FORMAT ")", json_integer_value(r));
    } else if (strcmp(st, "not connected") != 0) {
        fprintf(f, " since %s", at);
    }
    fputc('\n', f);
}

void fv__cli_cohort_show(const json_t *job, FILE *f)
{
    const json_t *live = json_object_get(job, "live");
    const json_t *lco = json_is_object(live) ? json_object_get(live, "cohort") : NULL;
    /* the running job's view is the fresher one (connected agents not yet offered too) */
    const json_t *arr = json_is_object(lco) ? json_object_get(lco, "agents") : NULL;
    if (!json_is_array(arr))
        arr = json_object_get(job, "cohort");
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return;
    fprintf(f, "\ncohort:\n");
    char buf[700];
    const char *sum = fv__cli_cohort_summary(job, buf, sizeof buf);
    if (sum != NULL)
        fprintf(f, "  %s\n", sum);
    size_t i;
    const json_t *a;
    json_array_foreach(arr, i, a) agent_line(a, f);
}

int fv__cli_cohort_events(const json_t *job, json_t *seen, FILE *f)
{
    const json_t *live = json_object_get(job, "live");
    const json_t *lco = json_is_object(live) ? json_object_get(live, "cohort") : NULL;
    const json_t *arr = json_is_object(lco) ? json_object_get(lco, "agents") : NULL;
    if (!json_is_array(arr))
        arr = json_object_get(job, "cohort");
    if (!json_is_array(arr) || !json_is_object(seen))
        return 0;
    int n = 0;
    size_t i;
    const json_t *a;
    json_array_foreach(arr, i, a)
    {
        const char *nm = str_of(a, "agent"), *st = str_of(a, "status");
        const json_t *at = json_object_get(a, "at_ms");
        if (nm == NULL || st == NULL || (strcmp(st, "refused") != 0 && strcmp(st, "gone") != 0))
            continue;
        char key[160];
        snprintf(key, sizeof key, "%s %" JSON_INTEGER_FORMAT, st,
                 json_is_integer(at) ? json_integer_value(at) : 0);
        const char *was = str_of(seen, nm);
        if (was != NULL && strcmp(was, key) == 0)
            continue;
        json_object_set_new(seen, nm, json_string(key));
        fprintf(f, "agent");
        agent_line(a, f);
        n++;
    }
    return n;
}

void fv__cli_job_why(const json_t *job, FILE *f)
{
    char buf[1200];
    const char *why = str_of(job, "why");
    if (why != NULL && why[0] != '\0')
        fprintf(f, "why: %s\n", clean(why, buf, sizeof buf));
}
