/* cli_util.c - helpers shared by the fedvault subcommands: errors, strict option
 * parsing, list splitting, a monotonic clock, file fingerprints, loading a model and
 * its CSV, and the training options (and their metadata record) of train and distill.
 *
 * Only the CLI prints; the libraries under it return codes and diagnostics.
 */
#define _GNU_SOURCE /* memfd_create */
#include "cli-int.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "fv-config.h"
#include "fv_crypto.h"
#include "fv_blas.h"
#include "fv_dataset.h"

/* `--data -`: standard input copied into an anonymous memory file, read through its
 * /proc path (a command may read its data twice: schema inference, then the load), and
 * that path shown as "standard input" in every error. */
static char stdin_path[64], stdin_arg[80];

int fv_cli_stdin_data(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        bool sep = strcmp(argv[i], "--data") == 0 && i + 1 < argc && strcmp(argv[i + 1], "-") == 0;
        if (!sep && strcmp(argv[i], "--data=-") != 0)
            continue;
        if (stdin_path[0] == '\0') {
            int fd = memfd_create("fedvault-stdin", MFD_CLOEXEC);
            if (fd < 0) {
                fprintf(stderr, "fedvault: error: --data -: cannot hold standard input: %s\n",
                        strerror(errno));
                return -1;
            }
            char buf[1 << 16];
            for (;;) {
                ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0) {
                    fprintf(stderr, "fedvault: error: --data -: reading standard input: %s\n",
                            strerror(errno));
                    close(fd);
                    return -1;
                }
                if (n == 0)
                    break;
                for (ssize_t off = 0; off < n;) {
                    ssize_t w = write(fd, buf + off, (size_t)(n - off));
                    if (w < 0 && errno == EINTR)
                        continue;
                    if (w < 0) {
                        fprintf(stderr, "fedvault: error: --data -: holding standard input: %s\n",
                                strerror(errno));
                        close(fd);
                        return -1;
                    }
                    off += w;
                }
            }
            snprintf(stdin_path, sizeof stdin_path, "/proc/self/fd/%d", fd);
        }
        if (sep) {
            argv[i + 1] = stdin_path;
        } else {
            snprintf(stdin_arg, sizeof stdin_arg, "--data=%s", stdin_path);
            argv[i] = stdin_arg;
        }
    }
    return 0;
}

const char *fv_cli_data_name(const char *path)
{
    return path != NULL && stdin_path[0] != '\0' && strcmp(path, stdin_path) == 0 ? "standard input"
                                                                                  : path;
}

bool fv_cli_parse_unknown_read(const char *cmd, const char *arg, unsigned *ret_flags)
{
    if (strcmp(arg, "missing") == 0) {
        *ret_flags |= FV_DATASET_UNKNOWN_MISSING;
        return true;
    }
    if (strcmp(arg, "error") == 0) {
        *ret_flags &= ~FV_DATASET_UNKNOWN_MISSING;
        return true;
    }
    fv_cli_usage_error(cmd, "--unknown-category: expected 'error' or 'missing', got '%.64s'", arg);
    return false;
}

void fv_cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    char msg[8192];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "fedvault %s: error: ", cmd);
    size_t pl = strlen(stdin_path);
    for (const char *p = msg; *p != '\0';) {
        const char *hit = pl > 0 ? strstr(p, stdin_path) : NULL;
        if (hit == NULL) {
            fputs(p, stderr);
            break;
        }
        fwrite(p, 1, (size_t)(hit - p), stderr);
        fputs("standard input", stderr);
        p = hit + pl;
    }
    fputc('\n', stderr);
}

int fv_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fedvault %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'fedvault %s --help'.\n", cmd);
    return FV_EXIT_USAGE;
}

bool fv_cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *ret)
{
    char *end;
    errno = 0;
    if (s[0] == '-' || s[0] == '\0') {
        fv_cli_usage_error(cmd, "%s: expected a non-negative integer, got '%s'", opt, s);
        return false;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        fv_cli_usage_error(cmd, "%s: expected a non-negative integer, got '%s'", opt, s);
        return false;
    }
    *ret = (uint64_t)v;
    return true;
}

bool fv_cli_parse_size(const char *cmd, const char *opt, const char *s, size_t min, size_t max,
                       size_t *ret)
{
    uint64_t v;
    if (!fv_cli_parse_u64(cmd, opt, s, &v))
        return false;
    if (v < min || v > max) {
        fv_cli_usage_error(cmd, "%s: %s is out of range [%zu, %zu]", opt, s, min, max);
        return false;
    }
    *ret = (size_t)v;
    return true;
}

bool fv_cli_parse_double(const char *cmd, const char *opt, const char *s, double min, double max,
                         double *ret)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v)) {
        fv_cli_usage_error(cmd, "%s: expected a number, got '%s'", opt, s);
        return false;
    }
    if (v < min || v > max) {
        fv_cli_usage_error(cmd, "%s: %s is out of range [%g, %g]", opt, s, min, max);
        return false;
    }
    *ret = v;
    return true;
}

bool fv_cli_parse_unknown(const char *cmd, const char *s, fv_unknown_policy_t *ret)
{
    if (strcmp(s, "error") == 0)
        *ret = FV_UNKNOWN_ERROR;
    else if (strcmp(s, "other") == 0)
        *ret = FV_UNKNOWN_OTHER;
    else {
        fv_cli_usage_error(cmd, "--unknown: expected 'error' or 'other', got '%s'", s);
        return false;
    }
    return true;
}

char **fv_cli_split_list(const char *s, size_t *ret_n)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += (*p == ',');
    char **v = calloc(n, sizeof *v);
    if (v == NULL)
        return NULL;
    size_t i = 0;
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == ',' || *p == '\0') {
            size_t len = (size_t)(p - start);
            v[i] = malloc(len + 1);
            if (v[i] == NULL) {
                fv_cli_strv_free(v, i);
                return NULL;
            }
            memcpy(v[i], start, len);
            v[i][len] = '\0';
            i++;
            if (*p == '\0')
                break;
            start = p + 1;
        }
    }
    *ret_n = n;
    return v;
}

void fv_cli_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

double fv_cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int fv_cli_file_sha256(const char *path, char hex[65])
{
    uint8_t digest[FV_HASH_BYTES];
    int r = fv_sha256_file(path, digest); /* OpenSSL's: fv_crypto.h says why */
    if (r == 0)
        sodium_bin2hex(hex, 65, digest, sizeof digest);
    /* callers print strerror(-r): OpenSSL's failures as errnos */
    return r == FV_ENOMEM ? -ENOMEM : r == FV_EIO ? -EIO : r;
}

void fv_cli_set_threads(size_t n)
{
    fv_blas_set_threads(n > INT_MAX ? INT_MAX : (int)n);
}

int fv_cli_infer_schema(const char *cmd, const char *data, const char *target, const char *positive,
                        const char *drop, fv_unknown_policy_t unknown, fv_schema_t **ret,
                        fv_dataset_t **ret_ds)
{
    fv_diag_t d = {""};
    size_t n_drop = 0;
    char **dropv = NULL;
    if (drop != NULL) {
        dropv = fv_cli_split_list(drop, &n_drop);
        if (dropv == NULL) {
            fv_cli_error(cmd, "out of memory");
            return -1;
        }
    }
    fv_schema_infer_opts_t o = {
        .target = target,
        .positive = positive,
        .drop = (const char *const *)dropv,
        .n_drop = n_drop,
        .unknown = unknown,
    };
    int r = ret_ds != NULL ? fv_dataset_infer_load(data, &o, ret, ret_ds, &d)
                           : fv_schema_infer(data, &o, ret, &d);
    fv_cli_strv_free(dropv, n_drop);
    if (r != 0) {
        fv_cli_error(cmd, "%s", d.msg[0] ? d.msg : fv_strerror(r));
        return -1;
    }
    return 0;
}

bool fv_cli_option_allowed(int c, const int *allowed, size_t n_allowed)
{
    for (size_t i = 0; i < n_allowed; i++)
        if (allowed[i] == c)
            return true;
    return false;
}

int fv_cli_option_misplaced(const char *cmd, int c, const struct option *opts)
{
    for (const struct option *o = opts; o->name != NULL; o++)
        if (o->val == c)
            return fv_cli_usage_error(cmd, "--%s does not apply here", o->name);
    return fv_cli_usage_error(cmd, "unknown option");
}

void fv_cli_put_csv_field(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int fv_cli_print_json_to(const char *cmd, FILE *f, const json_t *out)
{
    char *s = json_dumps(out, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    if (s == NULL) {
        fv_cli_error(cmd, "out of memory");
        return -1;
    }
    fputs(s, f);
    fputc('\n', f);
    free(s);
    return 0;
}

int fv_cli_print_json(const char *cmd, const json_t *out)
{
    return fv_cli_print_json_to(cmd, stdout, out);
}

/* ---- output files --------------------------------------------------------------------
 * Standard output is recognized by name (fv_file_path_fd) and, for a symlink to
 * /dev/stdout or the terminal's own device, by being the same file as descriptor 1. */

bool fv_cli_out_is_stdout(const char *path)
{
    struct stat a, b;
    if (path == NULL)
        return false;
    if (fv_file_path_fd(path) == STDOUT_FILENO)
        return true;
    return stat(path, &a) == 0 && fstat(STDOUT_FILENO, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

int fv_cli_out_check(const char *cmd, const char *opt, const char *path, bool binary)
{
    if (path == NULL)
        return 0;
    size_t n = strlen(path);
    if (n == 0 || path[n - 1] == '/')
        return fv_cli_usage_error(cmd,
                                  "%s: expected a file name (or - for standard output), "
                                  "got '%s'",
                                  opt, path);
    if (binary && fv_cli_out_is_stdout(path) && isatty(STDOUT_FILENO))
        return fv_cli_usage_error(cmd,
                                  "%s %s: standard output is a terminal; the binary "
                                  "file is not written there (redirect it: > FILE, or "
                                  "| COMMAND)",
                                  opt, path);
    return 0;
}

int fv_cli_out_distinct(const char *cmd, const char *opt_a, const char *a, const char *opt_b,
                        const char *b)
{
    if (a == NULL || b == NULL)
        return 0;
    if (fv_cli_out_is_stdout(a) && fv_cli_out_is_stdout(b))
        return fv_cli_usage_error(cmd, "%s and %s both name standard output ('%s', '%s')", opt_a,
                                  opt_b, a, b);
    if (strcmp(a, b) == 0)
        return fv_cli_usage_error(cmd, "%s and %s name the same file '%s'", opt_a, opt_b, a);
    return 0;
}

const char *fv_cli_out_name(const char *path)
{
    return strcmp(path, "-") == 0 ? "standard output" : path;
}

FILE *fv_cli_out_report(const char *out_a, const char *out_b)
{
    return fv_cli_out_is_stdout(out_a) || fv_cli_out_is_stdout(out_b) ? stderr : stdout;
}

int fv_cli_out_open(const char *cmd, const char *path, unsigned new_mode, fv_cli_out_t *o)
{
    fv_diag_t d = {""};
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    o->name = fv_cli_out_name(path);
    /* stdout's own buffer first: nothing printed before may land after the data */
    fflush(stdout);
    int r = fv_file_out_open(path, new_mode, &o->fo, &d);
    if (r != 0) {
        fv_cli_diag_error(cmd, &d, r);
        return -1;
    }
    int fd = fcntl(fv_file_out_fd(o->fo), F_DUPFD_CLOEXEC, 3);
    if (fd < 0 || (o->f = fdopen(fd, "w")) == NULL) {
        fv_cli_error(cmd, "%s: %s", o->name, strerror(errno));
        if (fd >= 0)
            close(fd);
        fv_file_out_abort(o->fo);
        o->fo = NULL;
        return -1;
    }
    return 0;
}

int fv_cli_out_close(fv_cli_out_t *o, bool commit)
{
    fv_diag_t d = {""};
    int rc = 0;
    if (o->f != NULL) {
        /* fclose flushes; a failed earlier write left the stream's error flag set */
        bool bad = ferror(o->f) != 0;
        int e = fclose(o->f) != 0 ? errno : (bad ? EIO : 0);
        o->f = NULL;
        if (commit && e != 0) {
            fv_cli_error(o->cmd, "%s: cannot write: %s", o->name, strerror(e));
            commit = false;
            rc = -1;
        }
    }
    if (o->fo == NULL)
        return rc;
    if (!commit) {
        fv_file_out_abort(o->fo);
    } else {
        int r = fv_file_out_commit(o->fo, &d);
        if (r != 0) {
            fv_cli_diag_error(o->cmd, &d, r);
            rc = -1;
        }
    }
    o->fo = NULL;
    return rc;
}

void fv_cli_diag_error(const char *cmd, const fv_diag_t *d, int r)
{
    fv_cli_error(cmd, "%s", d->msg[0] ? d->msg : fv_strerror(r));
}

int fv_cli_load_model(const char *cmd, const char *path, fv_model_t **ret)
{
    fv_diag_t d = {""};
    int r = fv_model_load(path, ret, &d);
    if (r != 0) {
        fv_cli_diag_error(cmd, &d, r);
        return -1;
    }
    return 0;
}

int fv_cli_load_dataset(const char *cmd, const char *data, const fv_schema_t *schema,
                        const char *hint, fv_dataset_t **ret)
{
    fv_diag_t d = {""};
    int r = fv_dataset_load(data, schema, ret, &d);
    if (r != 0) {
        if (hint != NULL)
            fv_cli_error(cmd, "%s (%s)", d.msg[0] ? d.msg : fv_strerror(r), hint);
        else
            fv_cli_diag_error(cmd, &d, r);
        return -1;
    }
    return 0;
}

int fv_cli_load_model_data(const char *cmd, const char *model_path, const char *data,
                           const char *hint, fv_model_t **ret_model, fv_dataset_t **ret_ds)
{
    fv_model_t *model = NULL;
    if (fv_cli_load_model(cmd, model_path, &model) != 0)
        return -1;
    if (fv_cli_load_dataset(cmd, data, model->schema, hint, ret_ds) != 0) {
        fv_model_free(model);
        return -1;
    }
    *ret_model = model;
    return 0;
}

void fv_cli_train_opts_init(fv_cli_train_opts_t *o)
{
    memset(o, 0, sizeof *o);
    fv_train_cfg_default(&o->cfg);
    o->val_fraction = 0.1;
    o->threads = FV_DEFAULT_BLAS_THREADS;
}

void fv_cli_train_set_threads(fv_cli_train_opts_t *o)
{
    fv_cli_set_threads(1);
    o->cfg.threads = o->threads;
}

int fv_cli_train_opts_parse(const char *cmd, int c, const char *arg, fv_cli_train_opts_t *o)
{
    double v;
    uint64_t u;
    switch (c) {
    case FV_CLI_OPT_VAL_FRACTION:
        if (!fv_cli_parse_double(cmd, "--val-fraction", arg, 0, 0.9, &o->val_fraction))
            return FV_EXIT_USAGE;
        return 0;
    case FV_CLI_OPT_EPOCHS:
        if (!fv_cli_parse_size(cmd, "--epochs", arg, 1, 1000000, &o->cfg.epochs))
            return FV_EXIT_USAGE;
        return 0;
    case FV_CLI_OPT_BATCH_SIZE:
        if (!fv_cli_parse_size(cmd, "--batch-size", arg, 1, 1 << 20, &o->cfg.batch_size))
            return FV_EXIT_USAGE;
        return 0;
    case FV_CLI_OPT_OPTIMIZER:
        if (strcmp(arg, "adam") == 0)
            o->cfg.optim.kind = FV_OPT_ADAM;
        else if (strcmp(arg, "sgd") == 0)
            o->cfg.optim.kind = FV_OPT_SGD;
        else
            return fv_cli_usage_error(cmd, "--optimizer: expected 'adam' or 'sgd', got '%s'", arg);
        return 0;
    case FV_CLI_OPT_LR:
        if (!fv_cli_parse_double(cmd, "--lr", arg, 1e-12, 10, &v))
            return FV_EXIT_USAGE;
        o->cfg.optim.lr = (float)v;
        o->lr_set = true;
        return 0;
    case FV_CLI_OPT_MOMENTUM:
        if (!fv_cli_parse_double(cmd, "--momentum", arg, 0, 0.999999, &v))
            return FV_EXIT_USAGE;
        o->cfg.optim.momentum = (float)v;
        return 0;
    case FV_CLI_OPT_WEIGHT_DECAY:
        if (!fv_cli_parse_double(cmd, "--weight-decay", arg, 0, 1e6, &v))
            return FV_EXIT_USAGE;
        o->cfg.optim.weight_decay = (float)v;
        return 0;
    case FV_CLI_OPT_PATIENCE:
        if (!fv_cli_parse_size(cmd, "--patience", arg, 0, 1000000, &o->cfg.patience))
            return FV_EXIT_USAGE;
        return 0;
    case FV_CLI_OPT_ES_METRIC:
        if (strcmp(arg, "loss") == 0)
            o->cfg.es_metric = FV_ES_LOSS;
        else if (strcmp(arg, "auc") == 0)
            o->cfg.es_metric = FV_ES_ROC_AUC;
        else
            return fv_cli_usage_error(cmd, "--es-metric: expected 'loss' or 'auc', got '%s'", arg);
        return 0;
    case FV_CLI_OPT_POS_WEIGHT:
        if (!fv_cli_parse_double(cmd, "--pos-weight", arg, 1e-6, 1e6, &v))
            return FV_EXIT_USAGE;
        o->cfg.pos_weight = (float)v;
        return 0;
    case FV_CLI_OPT_SEED:
        if (!fv_cli_parse_u64(cmd, "--seed", arg, &u))
            return FV_EXIT_USAGE;
        o->cfg.seed = u;
        return 0;
    case FV_CLI_OPT_THREADS:
        if (!fv_cli_parse_size(cmd, "--threads", arg, 1, 256, &o->threads))
            return FV_EXIT_USAGE;
        return 0;
    default:
        fprintf(stderr, "Try 'fedvault %s --help'.\n", cmd);
        return FV_EXIT_USAGE;
    }
}

void fv_cli_train_opts_finish(fv_cli_train_opts_t *o)
{
    if (!o->lr_set && o->cfg.optim.kind == FV_OPT_SGD)
        o->cfg.optim.lr = 0.01f;
}

int fv_cli_train_split_val(const char *cmd, const fv_dataset_t *ds, const size_t *rows,
                           size_t n_rows, const fv_cli_train_opts_t *o, const char *data,
                           const char *after, size_t **ret_fit, size_t *ret_n_fit, size_t **ret_val,
                           size_t *ret_n_val)
{
    size_t *fit = NULL, *val = NULL, n_fit = 0, n_val = 0;
    double vf = o->cfg.patience > 0 ? o->val_fraction : 0.0;
    int r = fv_dataset_split(ds, rows, n_rows, vf, o->cfg.seed + 1, &fit, &n_fit, &val, &n_val);
    if (r != 0) {
        fv_cli_error(cmd, "cannot split %s: %s", data, fv_strerror(r));
        return -1;
    }
    if (n_fit == 0) {
        fv_cli_error(cmd, "%s: no rows left to train on after %s", data, after);
        free(fit);
        free(val);
        return -1;
    }
    *ret_fit = fit, *ret_n_fit = n_fit;
    *ret_val = val, *ret_n_val = n_val;
    return 0;
}

void fv_cli_train_meta_set(json_t *t, const fv_cli_train_opts_t *o, const char *arch, size_t n_fit,
                           size_t n_val, const fv_train_result_t *tr, double train_s)
{
    const fv_train_cfg_t *cfg = &o->cfg;
    json_object_set_new(t, "model", json_string(arch));
    json_object_set_new(t, "optimizer",
                        json_string(cfg->optim.kind == FV_OPT_ADAM ? "adam" : "sgd"));
    json_object_set_new(t, "lr", json_real(cfg->optim.lr));
    json_object_set_new(t, "weight_decay", json_real(cfg->optim.weight_decay));
    json_object_set_new(t, "batch_size", json_integer((json_int_t)cfg->batch_size));
    json_object_set_new(t, "max_epochs", json_integer((json_int_t)cfg->epochs));
    json_object_set_new(t, "patience", json_integer((json_int_t)cfg->patience));
    json_object_set_new(t, "es_metric", json_string(cfg->es_metric == FV_ES_LOSS ? "loss" : "auc"));
    json_object_set_new(t, "pos_weight", json_real(cfg->pos_weight));
    json_object_set_new(t, "seed", json_integer((json_int_t)cfg->seed));
    json_object_set_new(t, "threads", json_integer((json_int_t)o->threads));
    json_object_set_new(t, "val_fraction", json_real(o->val_fraction));
    json_object_set_new(t, "train_rows", json_integer((json_int_t)n_fit));
    json_object_set_new(t, "val_rows", json_integer((json_int_t)n_val));
    json_object_set_new(t, "epochs", json_integer((json_int_t)tr->epochs_run));
    json_object_set_new(t, "best_epoch", json_integer((json_int_t)tr->best_epoch));
    json_object_set_new(t, "stopped_early", json_boolean(tr->stopped_early));
    json_object_set_new(t, "train_seconds", json_real(train_s));
}
