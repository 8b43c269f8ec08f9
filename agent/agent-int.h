/* agent-int.h - what agent_main.c (command line, configuration) hands to agent.c (the
 * daemon). Folder-private. */
#ifndef FV_AGENT_INT_H
#define FV_AGENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define FV_AGENT_MAX_ACCEPT_JOBS 256

/* Every path is absolute or relative to the working directory (agent_main.c resolves
 * the config's paths against the config file's directory). Strings are owned by the
 * caller and outlive fv__agent_run. */
typedef struct fv_agent_cfg {
    const char *config_path;
    const char *federation; /* from the config: checked against our certificate */
    const char *name;
    const char *host;
    int port;
    const char *ca, *cert, *key, *crl; /* crl may be NULL */
    const char *data;
    const char *audit_log;  /* the agent's signed audit log (agent.c, "AUDIT") */
    const char *audit_head; /* its head file: audit_log + ".head" */
    const char *accept_jobs[FV_AGENT_MAX_ACCEPT_JOBS]; /* empty: any job name */
    size_t n_accept_jobs;
    uint32_t min_cohort;    /* 0: no minimum beyond the protocol's */
    uint32_t min_threshold; /* 0: no minimum beyond the protocol's */
    bool once;
    size_t threads; /* OpenBLAS threads for local training */
} fv_agent_cfg_t;

/* Runs the daemon until --once is satisfied or a signal stops it. Returns the process
 * exit status (0 ok, 1 failure). */
int fv__agent_run(const fv_agent_cfg_t *cfg);

/* One JSON line on stderr: {"ts","level","event",...extra}. extra (an object, may be
 * NULL) is consumed. job_hex / job_name may be NULL; round < 0 means none. */
void fv__agent_log(const char *level, const char *event, const char *job_hex, const char *job_name,
                   int64_t round, json_t *extra);

#endif
