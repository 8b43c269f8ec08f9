/* cmd_train.c - `fedvault train`: local training on one CSV file.
 *
 * Pipeline (every step's randomness comes from --seed, so a run is reproducible for a
 * given OpenBLAS thread count):
 *   1. schema: --schema FILE, or inferred from the data (--target, --positive, --drop)
 *   2. decode every row against the schema (errors name file:line:column); with an
 *      inferred schema, in the same pass as 1 when every feature column is numeric
 *      (fv_dataset_infer_load: the same rows and errors as a second pass)
 *   3. stratified split: test (--test-fraction) held out; from the rest a validation
 *      split (--val-fraction) for early stopping when --patience > 0
 *   4. fit imputation/standardization on the training rows only (no leakage into the
 *      validation or test rows); the statistics are saved in the model
 *   5. train (fv_train), one progress line per epoch on stderr
 *   6. score the test rows, print the metrics, save the model (with a metadata record:
 *      producer, data fingerprint, hyperparameters, metrics) atomically to --out
 * --out and --schema-out go through fv_file_out (cli-int.h): through symlinks, "-" is
 * standard output, and then the summary (or --json object) goes to stderr.
 */
#include "cli-int.h"
#include "cli-metrics.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fv-config.h"
#include "fv_dataset.h"
#include "fv_metrics.h"
#include "fv_mlp.h"
#include "fv_model.h"
#include "fv_preproc.h"
#include "fv_schema.h"
#include "fv_train.h"

#define CMD "train"

static const char usage[] =
    "Usage: fedvault train --data FILE --target COLUMN [--positive LABEL] --out MODEL [options]\n"
    "\n"
    "Train a model on one CSV file (header row, comma separated, \"\" or NA for missing)\n"
    "and save it, with its schema and preprocessing statistics, to MODEL.\n"
    "\n"
    "Data:\n"
    "  --data FILE            CSV file to train on (required)\n"
    "  --target COLUMN        target column (required unless --schema is given)\n"
    "  --positive LABEL       positive class label: binary task. Without it the task is\n"
    "                         multi-class over every label of the target column (three or\n"
    "                         more; a two-label target needs --positive)\n"
    "  --drop COL,...         columns to ignore (e.g. --drop sub_grade,int_rate)\n"
    "  --unknown error|other  unseen categories at scoring time: an error (default) or an\n"
    "                         extra '<other>' one-hot column\n"
    "  --schema FILE          use this schema (JSON) instead of inferring one\n"
    "  --schema-out FILE      also write the schema used to FILE (to share with partners;\n"
    "                         - for standard output)\n"
    "  --test-fraction F      held-out test split, stratified (default 0.25; 0 = none)\n"
    "  --val-fraction F       validation split of the rest, for early stopping (default 0.1)\n"
    "\n"
    "Model and training:\n"
    "  --model SPEC           logreg (default) or mlp:H1,H2,... (ReLU hidden layers)\n"
    "  --epochs N             maximum epochs (default 200; early stopping usually ends sooner)\n"
    "  --batch-size N         mini-batch rows (default 128)\n"
    "  --optimizer adam|sgd   default adam\n"
    "  --lr X                 learning rate (default 0.001 for adam, 0.01 for sgd)\n"
    "  --momentum X           SGD momentum (default 0.9)\n"
    "  --weight-decay X       L2 coefficient on weights (default 0.01)\n"
    "  --patience N           early stopping patience in epochs (default 3; 0 = off)\n"
    "  --es-metric loss|auc   early stopping watches validation loss (default) or ROC AUC\n"
    "  --pos-weight X         weight of the positive class in the loss (default 1)\n"
    "  --seed N               seed for splits, initialization and shuffling (default 0)\n"
    "  --threads N            training threads, each on a slice of every batch (default 1;\n"
    "                         results are reproducible for a given thread count)\n"
    "\n"
    "Output:\n"
    "  --out MODEL            model file to write (required; replaced atomically, through\n"
    "                         a symlink); - for standard output when it is not a terminal\n"
    "                         (the summary or --json object then goes to stderr)\n"
    "  --json                 print one JSON object instead of the readable summary\n"
    "  --quiet                no per-epoch progress lines on stderr\n"
    "  -h, --help             this text\n"
    "\n"
    "Exit status: 0 success, 1 failure (message on stderr names the file, line and column\n"
    "for data errors), 2 usage error.\n";

/* The training options (--val-fraction, --epochs .. --threads) are cli_util.c's, shared
 * with distill; FV_CLI_OPT_* values are well above these. */
enum {
    OPT_DATA = 256,
    OPT_TARGET,
    OPT_POSITIVE,
    OPT_DROP,
    OPT_UNKNOWN,
    OPT_SCHEMA,
    OPT_SCHEMA_OUT,
    OPT_TEST_FRACTION,
    OPT_MODEL,
    OPT_OUT,
    OPT_JSON,
    OPT_QUIET,
};

static const struct option long_opts[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"target", required_argument, NULL, OPT_TARGET},
    {"positive", required_argument, NULL, OPT_POSITIVE},
    {"drop", required_argument, NULL, OPT_DROP},
    {"unknown", required_argument, NULL, OPT_UNKNOWN},
    {"schema", required_argument, NULL, OPT_SCHEMA},
    {"schema-out", required_argument, NULL, OPT_SCHEMA_OUT},
    {"test-fraction", required_argument, NULL, OPT_TEST_FRACTION},
    {"val-fraction", required_argument, NULL, FV_CLI_OPT_VAL_FRACTION},
    {"model", required_argument, NULL, OPT_MODEL},
    FV_CLI_TRAIN_LONG_OPTS,
    {"out", required_argument, NULL, OPT_OUT},
    {"json", no_argument, NULL, OPT_JSON},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct train_args {
    const char *data, *target, *positive, *drop, *schema, *schema_out, *model, *out;
    fv_unknown_policy_t unknown;
    double test_fraction;
    fv_cli_train_opts_t t; /* the training options, shared with distill */
    bool json, quiet;
} train_args_t;

typedef struct progress {
    bool quiet;
    size_t epochs;
    double t_last;
} progress_t;

static int on_epoch(void *user, const fv_epoch_report_t *r)
{
    progress_t *p = user;
    double now = fv_cli_now_s();
    if (!p->quiet) {
        fprintf(stderr, "epoch %3zu/%zu  train_loss %.5f", r->epoch, p->epochs, r->train_loss);
        if (!isnan(r->val_loss))
            fprintf(stderr, "  val_loss %.5f", r->val_loss);
        if (!isnan(r->val_auc))
            fprintf(stderr, "  val_auc %.4f", r->val_auc);
        fprintf(stderr, "  %.2fs%s\n", now - p->t_last, r->improved ? "  *" : "");
    }
    p->t_last = now;
    return 0;
}

static int parse_args(int argc, char **argv, train_args_t *a)
{
    int c, r;
    memset(a, 0, sizeof *a);
    fv_cli_train_opts_init(&a->t);
    a->model = "logreg";
    a->test_fraction = 0.25;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return -1;
        case OPT_DATA:
            a->data = optarg;
            break;
        case OPT_TARGET:
            a->target = optarg;
            break;
        case OPT_POSITIVE:
            a->positive = optarg;
            break;
        case OPT_DROP:
            a->drop = optarg;
            break;
        case OPT_SCHEMA:
            a->schema = optarg;
            break;
        case OPT_SCHEMA_OUT:
            a->schema_out = optarg;
            break;
        case OPT_MODEL:
            a->model = optarg;
            break;
        case OPT_OUT:
            a->out = optarg;
            break;
        case OPT_JSON:
            a->json = true;
            break;
        case OPT_QUIET:
            a->quiet = true;
            break;
        case OPT_UNKNOWN:
            if (!fv_cli_parse_unknown(CMD, optarg, &a->unknown))
                return FV_EXIT_USAGE;
            break;
        case OPT_TEST_FRACTION:
            if (!fv_cli_parse_double(CMD, "--test-fraction", optarg, 0, 0.9, &a->test_fraction))
                return FV_EXIT_USAGE;
            break;
        default: /* the training options, or getopt's '?' */
            if ((r = fv_cli_train_opts_parse(CMD, c, optarg, &a->t)) != 0)
                return r;
            break;
        }
    }
    if (optind < argc)
        return fv_cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (a->data == NULL)
        return fv_cli_usage_error(CMD, "--data FILE is required");
    if (a->out == NULL)
        return fv_cli_usage_error(CMD, "--out MODEL is required");
    if (a->schema == NULL && a->target == NULL)
        return fv_cli_usage_error(CMD, "--target COLUMN is required (or give --schema FILE)");
    if (a->schema != NULL && (a->target || a->positive || a->drop))
        return fv_cli_usage_error(
            CMD, "--schema cannot be combined with --target, --positive or --drop");
    if ((r = fv_cli_out_check(CMD, "--out", a->out, true)) != 0 ||
        (r = fv_cli_out_check(CMD, "--schema-out", a->schema_out, false)) != 0 ||
        (r = fv_cli_out_distinct(CMD, "--out", a->out, "--schema-out", a->schema_out)) != 0)
        return r;
    fv_cli_train_opts_finish(&a->t);
    return 0;
}

/* The schema; when it is inferred, the rows as well (*ret_ds, in the same pass when the
 * file is all numeric), else *ret_ds stays NULL and the caller loads them. */
static int load_schema(const train_args_t *a, fv_schema_t **ret, fv_dataset_t **ret_ds)
{
    fv_diag_t d = {""};
    int r;
    if (a->schema != NULL) {
        if ((r = fv_schema_load(a->schema, ret, &d)) != 0) {
            fv_cli_diag_error(CMD, &d, r);
            return -1;
        }
    } else if (fv_cli_infer_schema(CMD, a->data, a->target, a->positive, a->drop, a->unknown, ret,
                                   ret_ds) != 0) {
        return -1;
    }
    /* before any training: a two-class target needs its positive label (an inferred
     * schema without --positive, or a schema file) */
    if ((r = fv_schema_check_trainable(*ret, a->schema != NULL ? a->schema : a->data, &d)) != 0) {
        fv_cli_diag_error(CMD, &d, r);
        fv_dataset_free(*ret_ds); /* borrows the schema: free it first */
        *ret_ds = NULL;
        fv_schema_free(*ret);
        *ret = NULL;
        return -1;
    }
    return 0;
}

static json_t *build_meta(const train_args_t *a, const fv_dataset_t *ds, const char *sha,
                          size_t n_fit, size_t n_val, size_t n_test, const fv_train_result_t *tr,
                          double train_s, const char *arch, json_t *test_metrics)
{
    json_t *meta = json_object();
    json_object_set_new(meta, "producer", json_string("fedvault " FV_VERSION " (" FV_COMMIT ")"));
    json_t *data = json_object();
    json_object_set_new(data, "file", json_string(fv_cli_data_name(a->data)));
    json_object_set_new(data, "sha256", json_string(sha));
    json_object_set_new(data, "rows", json_integer((json_int_t)ds->n_rows));
    json_object_set_new(meta, "data", data);
    json_t *t = json_object();
    fv_cli_train_meta_set(t, &a->t, arch, n_fit, n_val, tr, train_s);
    if (a->t.cfg.optim.kind == FV_OPT_SGD)
        json_object_set_new(t, "momentum", json_real(a->t.cfg.optim.momentum));
    json_object_set_new(t, "test_fraction", json_real(a->test_fraction));
    json_object_set_new(t, "test_rows", json_integer((json_int_t)n_test));
    json_object_set_new(meta, "training", t);
    if (test_metrics != NULL)
        json_object_set(meta, "test_metrics", test_metrics);
    return meta;
}

int fv_cmd_train(int argc, char **argv)
{
    train_args_t a;
    fv_diag_t d = {""};
    int rc = FV_EXIT_FAIL, r;
    fv_schema_t *schema = NULL;
    fv_dataset_t *ds = NULL;
    fv_preproc_t *pp = NULL;
    fv_mlp_t *mlp = NULL;
    fv_model_t *model = NULL;
    size_t *rest = NULL, *test = NULL, *fit = NULL, *val = NULL;
    size_t n_rest = 0, n_test = 0, n_fit = 0, n_val = 0;
    float *x_fit = NULL, *x_val = NULL, *x_test = NULL, *prob = NULL;
    int32_t *y_fit = NULL, *y_val = NULL, *y_test = NULL;
    json_t *out = NULL, *test_json = NULL;
    char *meta_str = NULL;
    char sha[65] = "";
    char arch_buf[256];
    fv_cli_metrics_t tm;
    bool have_test = false;

    r = parse_args(argc, argv, &a);
    if (r != 0)
        return r < 0 ? FV_EXIT_OK : r;
    fv_cli_train_set_threads(&a.t);

    if (load_schema(&a, &schema, &ds) != 0)
        goto out;
    if (a.schema_out != NULL && (r = fv_schema_save(schema, a.schema_out, &d)) != 0) {
        fv_cli_error(CMD, "%s", d.msg);
        goto out;
    }
    if (ds == NULL && fv_cli_load_dataset(CMD, a.data, schema, NULL, &ds) != 0)
        goto out;
    if ((r = fv_cli_file_sha256(a.data, sha)) != 0) {
        fv_cli_error(CMD, "%s: cannot fingerprint: %s", a.data, strerror(-r));
        goto out;
    }

    /* Splits: test first (held out), then validation from the rest. */
    if ((r = fv_dataset_split(ds, NULL, ds->n_rows, a.test_fraction, a.t.cfg.seed, &rest, &n_rest,
                              &test, &n_test)) != 0) {
        fv_cli_error(CMD, "cannot split %s: %s", a.data, fv_strerror(r));
        goto out;
    }
    if (fv_cli_train_split_val(CMD, ds, rest, n_rest, &a.t, a.data,
                               "the test and validation splits", &fit, &n_fit, &val, &n_val) != 0)
        goto out;

    if ((r = fv_preproc_fit(ds, fit, n_fit, &pp)) != 0) {
        fv_cli_error(CMD, "fitting preprocessing: %s", fv_strerror(r));
        goto out;
    }
    size_t nf = fv_preproc_n_features(pp);
    fv_mlp_arch_t arch;
    if ((r = fv_mlp_parse_arch(a.model, nf, fv_schema_n_classes(schema), &arch, &d)) != 0) {
        fv_cli_usage_error(CMD, "--model: %s", d.msg);
        rc = FV_EXIT_USAGE;
        goto out;
    }
    if ((r = fv_mlp_new(&arch, &mlp)) != 0) {
        fv_cli_error(CMD, "creating model: %s", fv_strerror(r));
        goto out;
    }
    fv_mlp_init(mlp, a.t.cfg.seed);

    x_fit = fv_preproc_matrix_alloc(pp, n_fit);
    y_fit = malloc(n_fit * sizeof *y_fit);
    x_val = fv_preproc_matrix_alloc(pp, n_val);
    y_val = malloc((n_val ? n_val : 1) * sizeof *y_val);
    x_test = fv_preproc_matrix_alloc(pp, n_test);
    y_test = malloc((n_test ? n_test : 1) * sizeof *y_test);
    prob = malloc((n_test ? n_test : 1) * arch.n_out * sizeof *prob);
    if (!x_fit || !y_fit || !x_val || !y_val || !x_test || !y_test || !prob) {
        fv_cli_error(CMD, "out of memory for %zu rows x %zu features", ds->n_rows, nf);
        goto out;
    }
    if ((r = fv_preproc_transform(pp, ds, fit, n_fit, x_fit)) != 0 ||
        (r = fv_preproc_transform(pp, ds, val, n_val, x_val)) != 0 ||
        (r = fv_preproc_transform(pp, ds, test, n_test, x_test)) != 0) {
        fv_cli_error(CMD, "encoding features: %s", fv_strerror(r));
        goto out;
    }
    fv_dataset_labels(ds, fit, n_fit, y_fit);
    fv_dataset_labels(ds, val, n_val, y_val);
    fv_dataset_labels(ds, test, n_test, y_test);

    fv_mlp_arch_string(&arch, arch_buf, sizeof arch_buf);
    if (!a.quiet)
        fprintf(stderr,
                "fedvault train: %s, %zu rows (%zu train, %zu validation, %zu test), "
                "%zu features, model %s (%zu parameters)\n",
                fv_cli_data_name(a.data), ds->n_rows, n_fit, n_val, n_test, nf, arch_buf,
                fv_mlp_n_params(mlp));
    progress_t prog = {.quiet = a.quiet, .epochs = a.t.cfg.epochs, .t_last = fv_cli_now_s()};
    a.t.cfg.on_epoch = on_epoch;
    a.t.cfg.user = &prog;
    fv_train_result_t tr;
    double t0 = fv_cli_now_s();
    r = fv_train(mlp, x_fit, y_fit, n_fit, n_val ? x_val : NULL, n_val ? y_val : NULL, n_val,
                 &a.t.cfg, &tr, &d);
    double train_s = fv_cli_now_s() - t0;
    if (r != 0) {
        fv_cli_error(CMD, "training failed: %s", d.msg[0] ? d.msg : fv_strerror(r));
        goto out;
    }

    if (n_test > 0) {
        fv_mlp_ws_t *ws = NULL;
        const size_t chunk = 1024;
        if ((r = fv_mlp_ws_new(mlp, chunk, &ws)) != 0) {
            fv_cli_error(CMD, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n_test && r == 0; i += chunk) {
            size_t m = n_test - i < chunk ? n_test - i : chunk;
            r = fv_mlp_predict(mlp, ws, x_test + i * nf, m, prob + i * arch.n_out);
        }
        fv_mlp_ws_free(ws);
        if (r != 0 || fv_cli_metrics_compute(prob, y_test, n_test, arch.n_out, &tm) != 0) {
            fv_cli_error(CMD, "scoring the test split: %s", fv_strerror(r ? r : FV_ENOMEM));
            goto out;
        }
        have_test = true;
        test_json = fv_cli_metrics_json(&tm);
    }

    json_t *meta = build_meta(&a, ds, sha, n_fit, n_val, n_test, &tr, train_s, arch_buf, test_json);
    meta_str = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
    json_decref(meta);
    if (meta_str == NULL) {
        fv_cli_error(CMD, "out of memory");
        goto out;
    }
    r = fv_model_new(schema, pp, mlp, meta_str, &model);
    schema = NULL, pp = NULL, mlp = NULL, meta_str = NULL; /* owned by the model now */
    if (r != 0) {
        fv_cli_error(CMD, "assembling the model: %s", fv_strerror(r));
        goto out;
    }
    if ((r = fv_model_save(model, a.out, &d)) != 0) {
        fv_cli_diag_error(CMD, &d, r);
        goto out;
    }

    /* the summary: on stderr when the model or the schema went to stdout */
    FILE *rep = fv_cli_out_report(a.out, a.schema_out);
    if (a.json) {
        out = json_object();
        json_object_set_new(out, "model_file", json_string(a.out));
        json_object_set_new(out, "model", json_string(arch_buf));
        json_object_set_new(out, "parameters",
                            json_integer((json_int_t)fv_mlp_n_params(model->mlp)));
        json_object_set_new(out, "features", json_integer((json_int_t)nf));
        json_object_set_new(out, "data_sha256", json_string(sha));
        json_object_set_new(out, "train_rows", json_integer((json_int_t)n_fit));
        json_object_set_new(out, "val_rows", json_integer((json_int_t)n_val));
        json_object_set_new(out, "test_rows", json_integer((json_int_t)n_test));
        json_object_set_new(out, "epochs", json_integer((json_int_t)tr.epochs_run));
        json_object_set_new(out, "best_epoch", json_integer((json_int_t)tr.best_epoch));
        json_object_set_new(out, "stopped_early", json_boolean(tr.stopped_early));
        json_object_set_new(out, "train_seconds", json_real(train_s));
        /* work done: forward + backward over every training row of every epoch run */
        json_object_set_new(
            out, "train_flop",
            json_real(fv_mlp_flops_train(&arch) * (double)n_fit * (double)tr.epochs_run));
        json_object_set_new(out, "threads", json_integer((json_int_t)a.t.threads));
        if (have_test) {
            const char *k;
            json_t *v;
            json_object_foreach(test_json, k, v)
            {
                if (strcmp(k, "rows") != 0 && strcmp(k, "positives") != 0)
                    json_object_set(out, k, v);
            }
        }
        if (fv_cli_print_json_to(CMD, rep, out) != 0)
            goto out;
    } else {
        fprintf(rep, "Trained %s on %s: %zu epochs (best %zu%s) in %.2f s\n", arch_buf,
                fv_cli_data_name(a.data), tr.epochs_run, tr.best_epoch,
                tr.stopped_early ? ", stopped early" : "", train_s);
        fprintf(rep, "  %zu features, %zu parameters, data sha256 %s\n", nf,
                fv_mlp_n_params(model->mlp), sha);
        if (have_test)
            fv_cli_metrics_print(rep, "Test split", &tm);
        fprintf(rep, "Model written to %s\n", fv_cli_out_name(a.out));
    }
    rc = FV_EXIT_OK;
out:
    json_decref(out);
    json_decref(test_json);
    free(meta_str);
    fv_dataset_free(ds); /* borrows the schema: free it first */
    fv_model_free(model);
    fv_mlp_free(mlp);
    fv_preproc_free(pp);
    fv_schema_free(schema);
    free(rest), free(test), free(fit), free(val);
    free(x_fit), free(x_val), free(x_test), free(prob);
    free(y_fit), free(y_val), free(y_test);
    return rc;
}
