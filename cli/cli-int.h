/* cli-int.h - shared pieces of the `fedvault` command-line tool (not a library API).
 *
 * Conventions of every subcommand:
 *   exit 0  success
 *   exit 1  the work failed (bad data, unreadable file, training diverged): one line on
 *           stderr, "fedvault <cmd>: error: <what, where, what to do>"
 *   exit 2  usage error (unknown option, missing argument): message + hint to --help
 *   exit 3  (admin commands, cmd_admin*.c) the coordinator could not be reached, or the
 *           TLS handshake or authentication failed
 * Progress lines go to stderr; the result (a readable summary, or one JSON object with
 * --json) goes to stdout, so `fedvault train --json ... | jq` works.
 */
#ifndef FV_CLI_INT_H
#define FV_CLI_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "fv_dataset.h"
#include "fv_file.h"
#include "fv_model.h"
#include "fv_schema.h"
#include "fv_train.h"

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
/* cmd_bench_rounds.c: `fedvault bench rounds` (argv[0] is "rounds"). */
int fv__cmd_bench_rounds(int argc, char **argv);
/* cmd_bench_valid.c: `fedvault bench secagg --validate` (argv[0] is "secagg"). */
int fv__cmd_bench_valid(int argc, char **argv);
int fv_cmd_provision(int argc, char **argv);
int fv_cmd_audit(int argc, char **argv);
int fv_cmd_serve(int argc, char **argv); /* cmd_serve.c: fedvault-serve's admin socket */
/* The admin commands, clients of a running coordinator's admin port (cmd_admin.c: status,
 * agents, crl; cmd_admin_job.c: job; cmd_admin_model.c: model; admin_client.c). */
int fv_cmd_status(int argc, char **argv);
int fv_cmd_agents(int argc, char **argv);
int fv_cmd_job(int argc, char **argv);
int fv_cmd_model(int argc, char **argv);
int fv_cmd_crl(int argc, char **argv);
/* cmd_job_report.c: `job report`'s --help, and its page rendered from the report's
 * document (borrowed) and written to out ("-": standard output); an exit code. */
extern const char fv__cli_usage_job_report[];
int fv__cli_job_report_write(const char *cmd, const char *out, const json_t *doc);
/* cmd_job_spec.c: the local `job` subcommands (argv[0] is "template" / "check"), and the
 * spec file reading `job submit` shares: SPEC (or "-", standard input) with its comments
 * blanked and its schema inlined (fv_job_expand; schema_path: --schema, or NULL), as
 * malloc'd JSON text. 0, or -1 with the error printed. */
int fv__cmd_job_template(int argc, char **argv);
int fv__cmd_job_check(int argc, char **argv);
int fv__cli_job_spec_read(const char *cmd, const char *path, const char *schema_path,
                          char **ret_json, size_t *ret_len);

/* Prints "fedvault <cmd>: error: <msg>" to stderr. */
void fv_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `--data -` in argv: standard input read whole into a memory file and the argument
 * replaced by its path (errors print it as "standard input"). -1 with a message printed. */
int fv_cli_stdin_data(int argc, char **argv);
/* What to show or record for a --data argument: "standard input" for the memory file
 * fv_cli_stdin_data put in its place, the path itself otherwise. */
const char *fv_cli_data_name(const char *path);
/* --unknown-category error|missing (eval, predict): *ret_flags gains
 * FV_DATASET_UNKNOWN_MISSING for "missing". false with a usage error printed. */
bool fv_cli_parse_unknown_read(const char *cmd, const char *arg, unsigned *ret_flags);
/* Prints a usage error and the --help hint; returns FV_EXIT_USAGE. */
int fv_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict number parsing of an option value; on failure prints a usage error naming the
 * option and returns false. */
bool fv_cli_parse_size(const char *cmd, const char *opt, const char *s, size_t min, size_t max,
                       size_t *ret);
bool fv_cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *ret);
bool fv_cli_parse_double(const char *cmd, const char *opt, const char *s, double min, double max,
                         double *ret);

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

/* Infers a schema from a CSV (drop: "a,b" or NULL). Prints the error; 0 or -1. With
 * ret_ds, the rows too, decoded against that schema (fv_dataset_infer_load: one pass
 * over an all-numeric file); the dataset borrows *ret. */
int fv_cli_infer_schema(const char *cmd, const char *data, const char *target, const char *positive,
                        const char *drop, fv_unknown_policy_t unknown, fv_schema_t **ret,
                        fv_dataset_t **ret_ds);

/* OpenBLAS threads: --threads value or the build default. */
void fv_cli_set_threads(size_t n);

/* Writes one CSV field to f, RFC 4180 quoted ("" for a quote) when it holds a comma,
 * quote, CR or LF, else as is. */
void fv_cli_put_csv_field(FILE *f, const char *s);

/* Prints one JSON result object to stdout (indented, 10 significant digits), as
 * every --json does; 0, or -1 with the error printed when out of memory. _to: to f
 * (stderr when the command's data goes to stdout: fv_cli_out_report). */
int fv_cli_print_json(const char *cmd, const json_t *out);
int fv_cli_print_json_to(const char *cmd, FILE *f, const json_t *out);

/* ---- output files: --out, --schema-out, --train-out, --test-out, --int8-out ----------
 * Every file a command writes goes through fv_file_out (kernels/fv_file.h; the library
 * save functions use it too): a file is replaced crash-safely (temporary file beside
 * it, fsync, rename), through symlinks (the symlink survives; a dangling one names the
 * file to create); a device, FIFO or socket is written in place; "-", /dev/stdout and
 * /dev/fd/N write to that descriptor as it stands (terminal, pipe or redirected file).
 * When the data goes to standard output the command's summary (or --json object) goes
 * to stderr, so stdout carries the data and nothing else. */

/* Whether path sends the data to standard output: "-", /dev/stdout, /dev/fd/1,
 * /proc/self/fd/1, or a path to what descriptor 1 is (a symlink to /dev/stdout, the
 * terminal's /dev/pts/N). NULL: false. */
bool fv_cli_out_is_stdout(const char *path);
/* Checks an output option's value (path NULL: not given, fine) before any work: not
 * empty, not ending in '/'; binary data (a model file, ONNX) is not written to standard
 * output when that is a terminal (refused like gzip does: it would garble the terminal
 * and nobody reads it there). 0, or FV_EXIT_USAGE with the usage error printed. */
int fv_cli_out_check(const char *cmd, const char *opt, const char *path, bool binary);
/* Two output options of one command (either may be NULL) must not name the same path,
 * nor both standard output. 0, or FV_EXIT_USAGE with the usage error printed. */
int fv_cli_out_distinct(const char *cmd, const char *opt_a, const char *a, const char *opt_b,
                        const char *b);
/* path for a message: "standard output" for "-", else path itself. */
const char *fv_cli_out_name(const char *path);
/* Where the summary goes: stderr when out_a or out_b (either may be NULL) is standard
 * output, else stdout. */
FILE *fv_cli_out_report(const char *out_a, const char *out_b);

/* A streamed output file: fv_file_out with a stdio stream on it. */
typedef struct fv_cli_out {
    const char *cmd;  /* borrowed */
    const char *name; /* for messages: the path, or "standard output" for "-" (borrowed) */
    fv_file_out_t *fo;
    FILE *f; /* write here; on a duplicate of fo's descriptor */
} fv_cli_out_t;
/* Opens path (borrowed; must outlive o) with fv_file_out_open; new_mode for a new file.
 * 0, or -1 with the error printed (and *o left closed: fv_cli_out_close is a no-op). */
int fv_cli_out_open(const char *cmd, const char *path, unsigned new_mode, fv_cli_out_t *o);
/* commit: flushes the stream (a write error fails it) and commits the file; otherwise
 * discards it (the temporary file is removed; written to a device or stdout, what was
 * written stays). 0, or -1 with the error printed. A zeroed or closed o: 0. */
int fv_cli_out_close(fv_cli_out_t *o, bool commit);

/* Prints a library failure as "fedvault <cmd>: error: <d->msg>", or fv_strerror(r) when
 * the library left no diagnostic. */
void fv_cli_diag_error(const char *cmd, const fv_diag_t *d, int r);

/* Loading, with the error printed (fv_cli_diag_error) and -1 returned on failure; the
 * ret_* pointer is written only on success, and the caller frees what it gets.
 * fv_cli_load_dataset decodes `data` against `schema` (borrowed by the dataset: free the
 * dataset first); `hint`, when not NULL, is appended to its error (" (...)").
 * fv_cli_load_model_data does both for the commands that score a CSV with a model's
 * schema: on failure neither *ret_model nor *ret_ds is written and nothing is kept. */
int fv_cli_load_model(const char *cmd, const char *path, fv_model_t **ret);
int fv_cli_load_dataset(const char *cmd, const char *data, const fv_schema_t *schema,
                        const char *hint, fv_dataset_t **ret);
int fv_cli_load_model_data(const char *cmd, const char *model_path, const char *data,
                           const char *hint, fv_model_t **ret_model, fv_dataset_t **ret_ds);

/* The training options `train` and `distill` both take (--val-fraction, --epochs,
 * --batch-size, --optimizer, --lr, --momentum, --weight-decay, --patience, --es-metric,
 * --pos-weight, --seed, --threads), parsed the same way with the same ranges into one
 * struct. Each command keeps its own getopt_long table (the order of its entries shows
 * in glibc's "ambiguous option" message) and puts these entries in it with the option
 * values below: {"val-fraction", ...FV_CLI_OPT_VAL_FRACTION} and FV_CLI_TRAIN_LONG_OPTS
 * (--epochs .. --threads, in that order). */
enum {
    FV_CLI_OPT_VAL_FRACTION = 0x1000,
    FV_CLI_OPT_EPOCHS,
    FV_CLI_OPT_BATCH_SIZE,
    FV_CLI_OPT_OPTIMIZER,
    FV_CLI_OPT_LR,
    FV_CLI_OPT_MOMENTUM,
    FV_CLI_OPT_WEIGHT_DECAY,
    FV_CLI_OPT_PATIENCE,
    FV_CLI_OPT_ES_METRIC,
    FV_CLI_OPT_POS_WEIGHT,
    FV_CLI_OPT_SEED,
    FV_CLI_OPT_THREADS,
};

/* clang-format off */
#define FV_CLI_TRAIN_LONG_OPTS                                                   \
    {"epochs", required_argument, NULL, FV_CLI_OPT_EPOCHS},                      \
    {"batch-size", required_argument, NULL, FV_CLI_OPT_BATCH_SIZE},              \
    {"optimizer", required_argument, NULL, FV_CLI_OPT_OPTIMIZER},                \
    {"lr", required_argument, NULL, FV_CLI_OPT_LR},                              \
    {"momentum", required_argument, NULL, FV_CLI_OPT_MOMENTUM},                  \
    {"weight-decay", required_argument, NULL, FV_CLI_OPT_WEIGHT_DECAY},          \
    {"patience", required_argument, NULL, FV_CLI_OPT_PATIENCE},                  \
    {"es-metric", required_argument, NULL, FV_CLI_OPT_ES_METRIC},                \
    {"pos-weight", required_argument, NULL, FV_CLI_OPT_POS_WEIGHT},              \
    {"seed", required_argument, NULL, FV_CLI_OPT_SEED},                          \
    {"threads", required_argument, NULL, FV_CLI_OPT_THREADS}
/* clang-format on */

typedef struct fv_cli_train_opts {
    fv_train_cfg_t cfg;  /* fv_train_cfg_default, then the options */
    double val_fraction; /* default 0.1 */
    size_t threads;      /* default FV_DEFAULT_BLAS_THREADS */
    bool lr_set;         /* --lr given: keep it even with --optimizer sgd */
} fv_cli_train_opts_t;

/* The defaults above. */
void fv_cli_train_opts_init(fv_cli_train_opts_t *o);
/* --threads N of train and distill: N data-parallel training threads (cfg.threads,
 * fv_train.h) over single-threaded OpenBLAS (OpenBLAS' own threads busy-wait: on shared,
 * busy cores they slow training down; docs/architecture.md "Threads"). Call before any
 * model work: it sets OpenBLAS (process-global) to 1 thread. */
void fv_cli_train_set_threads(fv_cli_train_opts_t *o);
/* The `default:` of a command's getopt_long switch: option value c with argument arg
 * parsed into *o (0), or FV_EXIT_USAGE with the usage error printed, for a bad value or
 * for a c that is none of the training options (getopt_long's '?', whose message it has
 * printed: the "Try 'fedvault <cmd> --help'." hint follows it). */
int fv_cli_train_opts_parse(const char *cmd, int c, const char *arg, fv_cli_train_opts_t *o);
/* After the last option: the SGD learning-rate default (0.01) unless --lr was given. */
void fv_cli_train_opts_finish(fv_cli_train_opts_t *o);
/* Splits off the validation rows from rows[0..n_rows) (NULL: every row of ds) for early
 * stopping: --val-fraction when --patience > 0, else none, seeded with --seed + 1. Prints
 * the error and returns -1 on failure, or when no training rows are left ("after
 * <after>", e.g. "the validation split"); the ret_* are written only on success and the
 * caller frees *ret_fit and *ret_val. */
int fv_cli_train_split_val(const char *cmd, const fv_dataset_t *ds, const size_t *rows,
                           size_t n_rows, const fv_cli_train_opts_t *o, const char *data,
                           const char *after, size_t **ret_fit, size_t *ret_n_fit, size_t **ret_val,
                           size_t *ret_n_val);
/* The "training" record of a model's metadata that train and distill share (arch, the
 * options, rows per split, the run's outcome), added to t (borrowed). */
void fv_cli_train_meta_set(json_t *t, const fv_cli_train_opts_t *o, const char *arch, size_t n_fit,
                           size_t n_val, const fv_train_result_t *tr, double train_s);

/* cmd_job_status.c: each agent's standing in a job (job show, job watch, status). */
/* live.cohort.summary of a job.show or status "job" body ("waiting for agents: 0 of
 * min_agents 4 accepted; refused: ..."), cleaned into out; NULL when there is none. */
const char *fv__cli_cohort_summary(const json_t *job, char *out, size_t cap);
/* job show: a "cohort:" section (the summary, then one line per agent). */
void fv__cli_cohort_show(const json_t *job, FILE *f);
/* job watch: one line per refusal or loss not printed before (seen: {agent: key}, the
 * caller's object, updated); returns how many. */
int fv__cli_cohort_events(const json_t *job, json_t *seen, FILE *f);
/* "why: ..." of a job that failed (nothing when it has no reason). */
void fv__cli_job_why(const json_t *job, FILE *f);

#endif
