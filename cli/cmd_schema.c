/* cmd_schema.c - `fedvault schema infer` and `fedvault schema merge`: write the schema a
 * federation will share.
 *
 * One bank (or the federation operator, on a sample) infers the schema once; every bank
 * then trains and scores with the same file, so the one-hot layouts agree. When banks
 * hold different categories, `schema merge` unions their inferred schemas offline
 * (fv_schema_merge); a job may also leave categories open for the federation's schema
 * round (fv_schema.h).
 */
#include "cli-int.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_schema.h"

#define CMD "schema"

static const char usage[] =
    "Usage: fedvault schema infer --data FILE --target COLUMN [--positive LABEL]\n"
    "                             [--drop COL,...] [--unknown error|other]\n"
    "                             [--open-categories] [--open COL,...] --out SCHEMA\n"
    "\n"
    "Infer a dataset schema (column types, sorted category vocabularies, target and\n"
    "positive label) from a CSV file and write it as JSON. A column is numeric when every\n"
    "non-missing cell is a finite number, categorical otherwise. With --open-categories or\n"
    "--open the schema is written open, for a job whose schema round fills it in from the\n"
    "banks' own vocabularies (README, \"What a bank discloses in the schema round\"): one\n"
    "bank's file gives the columns, no bank's categories are needed.\n"
    "\n"
    "  --data FILE            CSV file (header row)\n"
    "  --target COLUMN        target column\n"
    "  --positive LABEL       positive label (binary); omit for multi-class (three or more\n"
    "                         labels; a two-label target needs it)\n"
    "  --drop COL,...         columns to mark ignored\n"
    "  --unknown error|other  policy for unseen categories (default error; an open schema\n"
    "                         is always \"other\")\n"
    "  --open-categories      leave every categorical column's categories open\n"
    "  --open COL,...         leave these columns open: a categorical column's categories,\n"
    "                         a numeric column's type (numeric or categorical, decided by\n"
    "                         the banks' vocabularies)\n"
    "  --out SCHEMA           JSON file to write (replaced atomically, through a symlink;\n"
    "                         - for standard output, the summary then goes to stderr)\n"
    "  -h, --help             this text\n"
    "\n"
    "\n"
    "Usage: fedvault schema merge SCHEMA SCHEMA... [--out SCHEMA]\n"
    "\n"
    "Union the category vocabularies of schemas inferred by different banks. The schemas\n"
    "must have the same columns in the same order, the same types, target, classes and\n"
    "positive label; unknown_category is \"other\" if any of them says \"other\".\n"
    "\n"
    "  --out SCHEMA           JSON file to write (replaced atomically); default: standard\n"
    "                         output\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

static const struct option merge_opts[] = {
    {"out", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int cmd_merge(int argc, char **argv)
{
    const char *out = "-";
    fv_schema_t **in = NULL, *merged = NULL;
    const char **names = NULL;
    size_t n = 0;
    fv_diag_t d = {""};
    int c, r, ret = FV_EXIT_FAIL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", merge_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return FV_EXIT_OK;
        case 'o':
            out = optarg;
            break;
        default:
            fprintf(stderr, "Try 'fedvault %s --help'.\n", CMD);
            return FV_EXIT_USAGE;
        }
    }
    if (argc - optind < 2)
        return fv_cli_usage_error(CMD, "merge: expected at least two schema files");
    if ((r = fv_cli_out_check(CMD, "--out", out, false)) != 0)
        return r;
    n = (size_t)(argc - optind);
    in = calloc(n, sizeof *in);
    names = calloc(n, sizeof *names);
    if (in == NULL || names == NULL) {
        fprintf(stderr, "fedvault %s: out of memory\n", CMD);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        names[i] = argv[optind + (int)i];
        if ((r = fv_schema_load(names[i], &in[i], &d)) != 0) {
            fv_cli_diag_error(CMD, &d, r);
            goto out;
        }
    }
    r = fv_schema_merge((const fv_schema_t *const *)in, names, n, &merged, &d);
    if (r == 0)
        r = fv_schema_save(merged, out, &d);
    if (r != 0) {
        fv_cli_diag_error(CMD, &d, r);
        goto out;
    }
    if (strcmp(out, "-") != 0)
        printf("Merged %zu schemas into %s\n", n, out);
    ret = FV_EXIT_OK;
out:
    for (size_t i = 0; in != NULL && i < n; i++)
        fv_schema_free(in[i]);
    free(in);
    free(names);
    fv_schema_free(merged);
    return ret;
}

static const struct option long_opts[] = {
    {"data", required_argument, NULL, 'd'},
    {"target", required_argument, NULL, 't'},
    {"positive", required_argument, NULL, 'p'},
    {"drop", required_argument, NULL, 'x'},
    {"unknown", required_argument, NULL, 'u'},
    {"out", required_argument, NULL, 'o'},
    {"open-categories", no_argument, NULL, 'C'},
    {"open", required_argument, NULL, 'O'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int fv_cmd_schema(int argc, char **argv)
{
    const char *data = NULL, *target = NULL, *positive = NULL, *drop = NULL, *out = NULL;
    const char *open_cols = NULL;
    bool open_cats = false;
    fv_unknown_policy_t unknown = FV_UNKNOWN_ERROR;
    fv_schema_t *s = NULL;
    fv_diag_t d = {""};
    int c;

    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage, stdout);
        return FV_EXIT_OK;
    }
    if (argc >= 2 && strcmp(argv[1], "merge") == 0)
        return cmd_merge(argc - 1, argv + 1);
    if (argc < 2 || strcmp(argv[1], "infer") != 0)
        return fv_cli_usage_error(CMD, "expected the subcommand 'infer' or 'merge'");
    argc--, argv++;
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
        case 'x':
            drop = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'C':
            open_cats = true;
            break;
        case 'O':
            open_cols = optarg;
            break;
        case 'u':
            if (!fv_cli_parse_unknown(CMD, optarg, &unknown))
                return FV_EXIT_USAGE;
            break;
        default:
            fprintf(stderr, "Try 'fedvault %s --help'.\n", CMD);
            return FV_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return fv_cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (data == NULL || target == NULL || out == NULL)
        return fv_cli_usage_error(CMD, "--data, --target and --out are required");
    int r = fv_cli_out_check(CMD, "--out", out, false);
    if (r != 0)
        return r;
    if (fv_cli_infer_schema(CMD, data, target, positive, drop, unknown, &s, NULL) != 0)
        return FV_EXIT_FAIL;
    /* a schema is written to train with: a two-class target needs --positive */
    r = fv_schema_check_trainable(s, data, &d);
    if (r == 0 && (open_cats || open_cols != NULL)) {
        size_t n_open = 0;
        char **openv = open_cols != NULL ? fv_cli_split_list(open_cols, &n_open) : NULL;
        fv_schema_t *o = NULL;
        if (open_cols != NULL && openv == NULL) {
            r = fv_diag_set(&d, FV_ENOMEM, "out of memory");
        } else {
            r = fv_schema_open(s, (const char *const *)openv, n_open, open_cats, &o, &d);
            fv_cli_strv_free(openv, n_open);
            if (r != 0) { /* name the option and the file the columns came from */
                char why[FV_DIAG_MAX];
                snprintf(why, sizeof why, "%s", d.msg);
                fv_diag_set(&d, r, "%s (the schema inferred from %s): %s",
                            open_cols ? "--open" : "--open-categories", data, why);
            }
        }
        if (r == 0) {
            fv_schema_free(s);
            s = o;
        }
    }
    if (r == 0)
        r = fv_schema_save(s, out, &d);
    if (r != 0) {
        fv_cli_diag_error(CMD, &d, r);
        fv_schema_free(s);
        return FV_EXIT_FAIL;
    }
    size_t n_num = 0, n_cat = 0, n_ign = 0, n_open = 0;
    for (size_t i = 0; i < fv_schema_n_columns(s); i++) {
        fv_col_type_t t = fv_schema_column_type(s, i);
        n_num += (t == FV_COL_NUMERIC);
        n_cat += (t == FV_COL_CATEGORICAL);
        n_ign += (t == FV_COL_IGNORED);
        n_open += fv_schema_column_open(s, i);
    }
    char open_note[64] = "";
    if (n_open > 0)
        snprintf(open_note, sizeof open_note, ", %zu open (categories or type)", n_open);
    /* the summary: on stderr when the schema itself went to stdout */
    fprintf(fv_cli_out_report(out, NULL),
            "Schema written to %s: %zu numeric, %zu categorical, %zu ignored columns%s; "
            "target '%s', %s\n",
            fv_cli_out_name(out), n_num, n_cat, n_ign, open_note,
            fv_schema_column_name(s, fv_schema_target(s)),
            fv_schema_is_binary(s) ? "binary" : "multi-class");
    fv_schema_free(s);
    return FV_EXIT_OK;
}
