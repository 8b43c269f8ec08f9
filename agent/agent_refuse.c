/* agent_refuse.c - what a refusal tells the coordinator: its category (fv_wire.h
 * fv_refuse_category_t) and a sentence without the bank's data.
 *
 * Why: the operator must see why a job has no cohort (schema, policy, version, resources,
 * data, protocol), but a refusal crosses the bank's boundary. The agent's own log keeps
 * the full sentence (the data file's path, the line, the offending cell); the wire
 * sentence names at most a column of the job's schema (public: it is in the job spec) and
 * what is wrong with it, never a cell's value nor a header name the schema lacks (the
 * bank's own file layout). So "column 'Job': unknown category "freelance"; expected one
 * of 'fixed'" leaves as "column 'Job' has a category the job's schema lacks".
 *
 * Categories, by where the refusal comes from:
 *   the spec does not parse      invalid JSON: protocol; too big / out of memory:
 *                                resources; anything else (an unknown key, a value this
 *                                build does not allow): version (a newer coordinator)
 *   the job id is not the digest protocol
 *   accept_jobs, require_secure_aggregation, the CRL (agent_cohort.c crl_*), a revoked
 *   or uncertified member       policy
 *   a cohort that is malformed or names the coordinator, a wrong role or key, a
 *   duplicate, not us           protocol
 *   loading the data            FV_ESCHEMA: schema; a file that cannot be opened or read,
 *                                ragged rows, no rows: data; memory or size caps:
 *                                resources
 *   building the model          too many parameters or rows: resources; else schema
 *
 * Threads: any (pure functions of their inputs). Ownership: nothing kept.
 */
#include "agent-int.h"

#include <stdio.h>
#include <string.h>

#include "fv_schema.h"
#include "fv_wire.h"

fv_refuse_category_t fv__agent_spec_category(int err, const char *msg)
{
    if (err == FV_ETOOBIG || err == FV_ENOMEM)
        return FV_REFUSE_RESOURCES;
    if (msg != NULL && strstr(msg, "invalid JSON") != NULL)
        return FV_REFUSE_PROTOCOL;
    return FV_REFUSE_VERSION;
}

fv_refuse_category_t fv__agent_cohort_rule_category(const char *rule)
{
    if (strncmp(rule, "crl_", 4) == 0 || strcmp(rule, "member_not_certified") == 0)
        return FV_REFUSE_POLICY;
    return FV_REFUSE_PROTOCOL;
}

/* The schema column that msg names as "column 'NAME'", or NULL. */
static const char *column_named(const fv_schema_t *s, const char *msg)
{
    char needle[FV_NAME_MAX + 512];
    const char *best = NULL;
    for (size_t j = 0; s != NULL && j < fv_schema_n_columns(s); j++) {
        const char *nm = fv_schema_column_name(s, j);
        if (nm == NULL || strlen(nm) + 16 > sizeof needle)
            continue;
        snprintf(needle, sizeof needle, "column '%s'", nm);
        /* the longest match: 'a' must not win over 'ab' */
        if (strstr(msg, needle) != NULL && (best == NULL || strlen(nm) > strlen(best)))
            best = nm;
    }
    return best;
}

fv_refuse_category_t fv__agent_load_refusal(const fv_schema_t *schema, int err, const char *msg,
                                            char *wire, size_t cap)
{
    if (msg == NULL)
        msg = "";
    if (err == FV_ENOMEM || err == FV_ETOOBIG || err == FV_EOVERFLOW) {
        snprintf(wire, cap,
                 "the job does not fit this agent's limits (%s): too many rows or parameters, "
                 "or out of memory; details in the agent's log",
                 fv_err_name(err));
        return FV_REFUSE_RESOURCES;
    }
    if (err == FV_ESCHEMA) {
        const char *col = column_named(schema, msg);
        /* column names longer than the wire's sentence are cut by the caller's clean */
        if (col != NULL && strstr(msg, "unknown target label") != NULL)
            snprintf(wire, cap, "column '%s' (the target) has a label the job's classes lack", col);
        else if (col != NULL && strstr(msg, "missing target label") != NULL)
            snprintf(wire, cap, "column '%s' (the target) has rows without a label", col);
        else if (col != NULL && strstr(msg, "unknown category") != NULL)
            snprintf(wire, cap, "column '%s' has a category the job's schema lacks", col);
        else if (col != NULL && strstr(msg, "non-finite") != NULL)
            snprintf(wire, cap, "column '%s' has a non-finite number", col);
        else if (col != NULL && strstr(msg, "is not a number") != NULL)
            snprintf(wire, cap, "column '%s' has a value that is not a number", col);
        else if (col != NULL && strstr(msg, "missing from the header") != NULL)
            snprintf(wire, cap, "column '%s' of the job's schema is missing from the data file",
                     col);
        else if (strstr(msg, "not in the schema") != NULL)
            snprintf(wire, cap, "the data file has a column the job's schema lacks");
        else if (strstr(msg, "duplicate header") != NULL)
            snprintf(wire, cap, "the data file's header names a column twice");
        else if (col != NULL)
            snprintf(wire, cap, "column '%s' does not fit the job's schema", col);
        else
            snprintf(wire, cap, "the local data does not fit the job's schema");
        return FV_REFUSE_SCHEMA;
    }
    if (err == FV_EPARSE)
        snprintf(wire, cap,
                 "the data file is not well-formed CSV (a row with another field "
                 "count than the header); details in the agent's log");
    else if (err == FV_EEMPTY)
        snprintf(wire, cap, "the data file has no rows to train on");
    else
        snprintf(wire, cap, "the data file cannot be read (%s); details in the agent's log",
                 fv_err_name(err));
    return FV_REFUSE_DATA;
}
