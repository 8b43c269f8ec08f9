/* cmd_split.c - `fedvault split`: a stratified train/test split of a CSV file.
 *
 * Writes two CSV files with the original header and rows (fields re-quoted only where
 * RFC 4180 requires it). The split is the one `fedvault train` makes for the same
 * --test-fraction and --seed, so an outside tool (scikit-learn in tests/bench) can be
 * compared on exactly the same rows.
 *
 * Both files go through fv_file_out (cli-int.h): each is written to a temporary file
 * beside it and renamed at the end, so a failed split leaves the old files (or none);
 * symlinks are written through; "-" for one of them is standard output, and the summary
 * then goes to stderr. New files get 0666 through umask, as fopen(3) would give them.
 */
#include "cli-int.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_csv.h"
#include "fv_dataset.h"
#include "fv_schema.h"

#define CMD "split"

static const char usage[] =
    "Usage: fedvault split --data FILE --target COLUMN [--positive LABEL]\n"
    "                      [--test-fraction F] [--seed N] --train-out FILE --test-out FILE\n"
    "\n"
    "Split a CSV file into stratified train and test files (the same split 'fedvault\n"
    "train' makes for the same fraction and seed).\n"
    "\n"
    "  --data FILE         CSV file (header row)\n"
    "  --target COLUMN     target column (stratification)\n"
    "  --positive LABEL    positive label (binary); omit for multi-class\n"
    "  --test-fraction F   fraction of each class in the test file (default 0.25)\n"
    "  --seed N            seed (default 0)\n"
    "  --train-out FILE    where to write the training rows\n"
    "  --test-out FILE     where to write the test rows (each replaced atomically, through\n"
    "                      a symlink; - for standard output, for one of the two)\n"
    "  -h, --help          this text\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

static const struct option long_opts[] = {
    {"data", required_argument, NULL, 'd'},
    {"target", required_argument, NULL, 't'},
    {"positive", required_argument, NULL, 'p'},
    {"test-fraction", required_argument, NULL, 'f'},
    {"seed", required_argument, NULL, 's'},
    {"train-out", required_argument, NULL, 'a'},
    {"test-out", required_argument, NULL, 'b'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void write_record(FILE *f, const fv_csv_record_t *rec)
{
    for (size_t i = 0; i < rec->n_fields; i++) {
        if (i)
            fputc(',', f);
        fv_cli_put_csv_field(f, rec->fields[i]);
    }
    fputc('\n', f);
}

int fv_cmd_split(int argc, char **argv)
{
    const char *data = NULL, *target = NULL, *positive = NULL, *train_out = NULL, *test_out = NULL;
    double frac = 0.25;
    uint64_t seed = 0;
    int c, r, rc = FV_EXIT_FAIL;
    fv_diag_t d = {""};
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    fv_csv_t *csv = NULL;
    size_t *tr = NULL, *te = NULL, n_tr = 0, n_te = 0;
    unsigned char *is_test = NULL;
    fv_cli_out_t oa = {0}, ob = {0};
    FILE *fa, *fb;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return FV_EXIT_OK;
        case 'd':
            data = optarg;
            break;
        case 't':
            target = optarg;
            break;
        case 'p':
            positive = optarg;
            break;
        case 'a':
            train_out = optarg;
            break;
        case 'b':
            test_out = optarg;
            break;
        case 'f':
            if (!fv_cli_parse_double(CMD, "--test-fraction", optarg, 0, 0.9, &frac))
                return FV_EXIT_USAGE;
            break;
        case 's':
            if (!fv_cli_parse_u64(CMD, "--seed", optarg, &seed))
                return FV_EXIT_USAGE;
            break;
        default:
            fprintf(stderr, "Try 'fedvault %s --help'.\n", CMD);
            return FV_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return fv_cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!data || !target || !train_out || !test_out)
        return fv_cli_usage_error(CMD, "--data, --target, --train-out and --test-out are required");
    if ((r = fv_cli_out_check(CMD, "--train-out", train_out, false)) != 0 ||
        (r = fv_cli_out_check(CMD, "--test-out", test_out, false)) != 0 ||
        (r = fv_cli_out_distinct(CMD, "--train-out", train_out, "--test-out", test_out)) != 0)
        return r;

    /* schema and rows: one pass over an all-numeric file (fv_dataset_infer_load) */
    if (fv_cli_infer_schema(CMD, data, target, positive, NULL, FV_UNKNOWN_ERROR, &s, &ds) != 0)
        goto out;
    if ((r = fv_dataset_split(ds, NULL, ds->n_rows, frac, seed, &tr, &n_tr, &te, &n_te)) != 0) {
        fv_cli_error(CMD, "cannot split %s: %s", data, fv_strerror(r));
        goto out;
    }
    is_test = calloc(ds->n_rows ? ds->n_rows : 1, 1);
    if (is_test == NULL) {
        fv_cli_error(CMD, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_te; i++)
        is_test[te[i]] = 1;

    if ((r = fv_csv_open(data, 0, &csv, &d)) != 0) {
        fv_cli_error(CMD, "%s", d.msg);
        goto out;
    }
    if (fv_cli_out_open(CMD, train_out, 0666, &oa) != 0 ||
        fv_cli_out_open(CMD, test_out, 0666, &ob) != 0)
        goto out;
    fa = oa.f;
    fb = ob.f;
    fv_csv_record_t rec;
    size_t row = 0;
    bool header = true;
    while ((r = fv_csv_next(csv, &rec, &d)) == 1) {
        if (header) {
            write_record(fa, &rec);
            write_record(fb, &rec);
            header = false;
            continue;
        }
        if (row >= ds->n_rows) {
            fv_cli_error(CMD, "%s changed while it was being split", data);
            goto out;
        }
        write_record(is_test[row] ? fb : fa, &rec);
        row++;
    }
    if (r < 0) {
        fv_cli_error(CMD, "%s", d.msg);
        goto out;
    }
    if (fv_cli_out_close(&oa, true) != 0 || fv_cli_out_close(&ob, true) != 0)
        goto out;
    /* the summary: on stderr when one of the files went to stdout */
    fprintf(fv_cli_out_report(train_out, test_out), "%zu rows -> %s (%zu rows), %s (%zu rows)\n",
            ds->n_rows, fv_cli_out_name(train_out), n_tr, fv_cli_out_name(test_out), n_te);
    rc = FV_EXIT_OK;
out:
    (void)fv_cli_out_close(&oa, false); /* after a failure: the temporary files go */
    (void)fv_cli_out_close(&ob, false);
    fv_csv_free(csv);
    free(is_test);
    free(tr);
    free(te);
    fv_dataset_free(ds);
    fv_schema_free(s);
    return rc;
}
