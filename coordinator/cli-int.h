/* cli-int.h - shared pieces of the `fedvault` command-line tool (not a library API).
 *
 * Conventions of every subcommand:
 *   exit 0  success
 *   exit 1  the work failed (bad data, unreadable file, training diverged): one line on
 *           stderr, "fedvault <cmd>: error: <what, where, what to do>"
 *   exit 2  usage error (unknown option, missing argument): message + hint to --help
 *   exit 3  (admin commands, cmd_admin.c) the coordinator could not be reached, or the
 *           TLS handshake or authentication failed
 * Progress lines go to stderr; the result (a readable summary, or one JSON object with
 * --json) goes to stdout, so `fedvault train --json ... | jq` works.
 */
#ifndef FV_CLI_INT_H
#define FV_CLI_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_schema.h"

#define FV_EXIT_OK 0
#define FV_EXIT_FAIL 1
#define FV_EXIT_USAGE 2
#define FV_EXIT_UNREACHABLE 3

int fv_cmd_train(int argc, char **argv);
int fv_cmd_eval(int argc, char **argv);
int fv_cmd_distill(int argc, char **argv);
int fv_cmd_predict(int argc, char **argv);
int fv_cmd_export(int argc, char **argv);
int fv_cmd_split(int argc, char **argv);
int fv_cmd_schema(int argc, char **argv);
int fv_cmd_bench(int argc, char **argv);
int fv_cmd_provision(int argc, char **argv);
int fv_cmd_audit(int argc, char **argv);
/* The admin commands, clients of a running coordinator's admin port (cmd_admin.c). */
int fv_cmd_status(int argc, char **argv);
int fv_cmd_agents(int argc, char **argv);
int fv_cmd_job(int argc, char **argv);
int fv_cmd_model(int argc, char **argv);
int fv_cmd_crl(int argc, char **argv);

/* Prints "fedvault <cmd>: error: <msg>" to stderr. */
void fv_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a usage error and the --help hint; returns FV_EXIT_USAGE. */
int fv_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Strict number parsing of an option value; on failure prints a usage error naming the
 * option and returns false. */
bool fv_cli_parse_size(const char *cmd, const char *opt, const char *s, size_t min, size_t max,
                       size_t *ret);
bool fv_cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *ret);
bool fv_cli_parse_double(const char *cmd, const char *opt, const char *s, double min,
                         double max, double *ret);

/* --unknown error|other; on failure prints a usage error naming the option. */
bool fv_cli_parse_unknown(const char *cmd, const char *s, fv_unknown_policy_t *ret);

/* Subcommands that share one getopt_long table (provision, audit): whether option value
 * c is among the `allowed` ones, and the usage error for one that is not
 * ("--NAME does not apply here"; returns FV_EXIT_USAGE). */
struct option;
bool fv_cli_option_allowed(int c, const int *allowed, size_t n_allowed);
int fv_cli_option_misplaced(const char *cmd, int c, const struct option *opts);

/* Splits "a,b,c" into a malloc'd array of malloc'd strings. Free with fv_cli_strv_free. */
char **fv_cli_split_list(const char *s, size_t *ret_n);
void fv_cli_strv_free(char **v, size_t n);

/* Monotonic seconds. */
double fv_cli_now_s(void);

/* SHA-256 of a file as 64 lowercase hex chars + NUL into hex[65]. 0 or negative errno. */
int fv_cli_file_sha256(const char *path, char hex[65]);

/* Infers a schema from a CSV (drop: "a,b" or NULL). Prints the error; 0 or -1. */
int fv_cli_infer_schema(const char *cmd, const char *data, const char *target,
                        const char *positive, const char *drop, fv_unknown_policy_t unknown,
                        fv_schema_t **ret);

/* OpenBLAS threads: --threads value or the build default. */
void fv_cli_set_threads(size_t n);

#endif
