/* cmd_eval.c - `fedvault eval`: score a CSV file with a saved model and report metrics.
 *
 * The file is decoded with the model's own schema and preprocessing statistics (nothing
 * is refitted), so a bank evaluates exactly the model it was given.
 */
#include "cli-int.h"
#include "cli-metrics.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fv-config.h"
#include "fv_dataset.h"
#include "fv_model.h"

#define CMD "eval"

static const char usage[] =
    "Usage: fedvault eval --model MODEL --data FILE [--json] [--threads N]\n"
    "                     [--unknown-category error|missing]\n"
    "\n"
    "Score every row of a CSV file with a saved model and report metrics (ROC AUC, PR AUC,\n"
    "log loss, accuracy, recall at 1 % and 5 % false-positive rate; accuracy and log loss\n"
    "for multi-class models). The file must have the columns of the model's schema.\n"
    "\n"
    "  --model MODEL   model file written by 'fedvault train'\n"
    "  --data FILE     CSV file with the target column\n"
    "  --json          print one JSON object instead of the readable summary\n"
    "  --threads N     OpenBLAS threads (default 1)\n"
    "  --unknown-category error|missing\n"
    "                  a category the model's schema lacks: an error naming file:line:col\n"
    "                  (default), or read as a missing value (the column's one-hot\n"
    "                  features all 0); a schema with unknown_category \"other\" puts it in\n"
    "                  its \"<other>\" bucket either way\n"
    "  -h, --help      this text\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

static const struct option long_opts[] = {
    {"model", required_argument, NULL, 'm'},
    {"data", required_argument, NULL, 'd'},
    {"json", no_argument, NULL, 'j'},
    {"threads", required_argument, NULL, 't'},
    {"unknown-category", required_argument, NULL, 'u'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static json_t *meta_get(json_t *meta, const char *section, const char *key)
{
    json_t *s = meta ? json_object_get(meta, section) : NULL;
    return s ? json_object_get(s, key) : NULL;
}

int fv_cmd_eval(int argc, char **argv)
{
    const char *model_path = NULL, *data = NULL;
    bool as_json = false;
    unsigned flags = 0; /* FV_DATASET_* */
    size_t threads = FV_DEFAULT_BLAS_THREADS;
    int c, r, rc = FV_EXIT_FAIL;
    fv_model_t *model = NULL;
    fv_dataset_t *ds = NULL;
    float *prob = NULL;
    json_t *meta = NULL, *out = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return FV_EXIT_OK;
        case 'm':
            model_path = optarg;
            break;
        case 'd':
            data = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 't':
            if (!fv_cli_parse_size(CMD, "--threads", optarg, 1, 256, &threads))
                return FV_EXIT_USAGE;
            break;
        case 'u':
            if (!fv_cli_parse_unknown_read(CMD, optarg, &flags))
                return FV_EXIT_USAGE;
            break;
        default:
            fprintf(stderr, "Try 'fedvault %s --help'.\n", CMD);
            return FV_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return fv_cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (model_path == NULL || data == NULL)
        return fv_cli_usage_error(CMD, "--model MODEL and --data FILE are required");
    fv_cli_set_threads(threads);

    if (fv_cli_load_model(CMD, model_path, &model) != 0)
        goto out;
    fv_diag_t d = {""};
    if ((r = fv_dataset_load_flags(data, model->schema, flags, &ds, &d)) != 0) {
        fv_cli_diag_error(CMD, &d, r);
        goto out;
    }
    size_t n_out = fv_mlp_arch(model->mlp)->n_out;
    prob = malloc((ds->n_rows ? ds->n_rows : 1) * n_out * sizeof *prob);
    int32_t *y = ds->label;
    if (prob == NULL) {
        fv_cli_error(CMD, "out of memory");
        goto out;
    }
    double t0 = fv_cli_now_s();
    if ((r = fv_model_predict(model, ds, NULL, ds->n_rows, prob)) != 0) {
        fv_cli_error(CMD, "scoring %s: %s", data, fv_strerror(r));
        goto out;
    }
    double score_s = fv_cli_now_s() - t0;
    fv_cli_metrics_t m;
    if (fv_cli_metrics_compute(prob, y, ds->n_rows, n_out, &m) != 0) {
        fv_cli_error(CMD, "out of memory");
        goto out;
    }
    if (model->meta_json != NULL)
        meta = json_loads(model->meta_json, 0, NULL);
    json_t *epochs = meta_get(meta, "training", "epochs");
    json_t *train_s = meta_get(meta, "training", "train_seconds");
    json_t *arch = meta_get(meta, "training", "model");
    if (as_json) {
        out = fv_cli_metrics_json(&m);
        json_object_set_new(out, "model_file", json_string(model_path));
        json_object_set_new(out, "data", json_string(fv_cli_data_name(data)));
        json_object_set_new(out, "score_seconds", json_real(score_s));
        json_object_set(out, "epochs", epochs ? epochs : json_null());
        json_object_set(out, "train_seconds", train_s ? train_s : json_null());
        json_object_set(out, "model", arch ? arch : json_null());
        if (fv_cli_print_json(CMD, out) != 0)
            goto out;
    } else {
        printf("Model %s", model_path);
        if (arch && json_is_string(arch))
            printf(" (%s", json_string_value(arch));
        if (epochs && json_is_integer(epochs))
            printf(", %lld epochs", (long long)json_integer_value(epochs));
        if (arch && json_is_string(arch))
            printf(")");
        printf("\n");
        fv_cli_metrics_print(stdout, fv_cli_data_name(data), &m);
        printf("  scored in %.3f s\n", score_s);
    }
    rc = FV_EXIT_OK;
out:
    json_decref(out);
    json_decref(meta);
    free(prob);
    fv_dataset_free(ds);
    fv_model_free(model);
    return rc;
}
