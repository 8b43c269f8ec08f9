/* cmd_export.c - `fedvault export`: write a saved model in a format other tools run.
 *
 * Only ONNX for now (model/fv_onnx.h: the graph includes the preprocessing, so a bank's
 * serving stack feeds raw column values). The output is written crash-safely
 * (temporary file, fsync, rename: fv_onnx_save), so a failed export never leaves a
 * half-written file under the requested name; a symlink is written through, and
 * "--out -" is standard output (refused when that is a terminal: cli-int.h).
 * An int8 model file (format version 2, fv_model.h) decodes to the dequantized float32
 * network, so it exports like any other: float32 initializers, the same graph.
 */
#include "cli-int.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "fv_model.h"
#include "fv_onnx.h"

#define CMD "export"

static const char usage[] =
    "Usage: fedvault export --model MODEL --format onnx --out FILE\n"
    "\n"
    "Write a saved model, preprocessing included, in another format.\n"
    "\n"
    "  --model MODEL    model file written by 'fedvault train' (or exported from a\n"
    "                   coordinator with 'fedvault model export'); an int8 model file\n"
    "                   (format version 2) exports as its dequantized float32 network\n"
    "  --format onnx    ONNX (ai.onnx opset 13 + ai.onnx.ml opset 2), for ONNX Runtime\n"
    "                   and other ONNX serving stacks\n"
    "  --out FILE       output file (replaced atomically, through a symlink); - for\n"
    "                   standard output (not a terminal)\n"
    "  -h, --help       this text\n"
    "\n"
    "ONNX inputs: one [N,1] tensor per feature column, named after the column (bytes\n"
    "outside [A-Za-z0-9_] become '_', a leading digit gets a '_' prefix): float for\n"
    "numeric columns (NaN = missing), string for categorical columns (\"\" or \"NA\" =\n"
    "missing). Outputs: 'probability' [N,1] (binary: P(positive)) or [N,K] (softmax),\n"
    "and 'logit'. The schema JSON is in the metadata property 'fedvault.schema'.\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

static const struct option long_opts[] = {
    {"model", required_argument, NULL, 'm'},
    {"format", required_argument, NULL, 'f'},
    {"out", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int fv_cmd_export(int argc, char **argv)
{
    const char *model_path = NULL, *format = NULL, *out_path = NULL;
    fv_diag_t d = {""};
    fv_model_t *model = NULL;
    int c, r, rc = FV_EXIT_FAIL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return FV_EXIT_OK;
        case 'm':
            model_path = optarg;
            break;
        case 'f':
            format = optarg;
            break;
        case 'o':
            out_path = optarg;
            break;
        default:
            fprintf(stderr, "Try 'fedvault %s --help'.\n", CMD);
            return FV_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return fv_cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (model_path == NULL || format == NULL || out_path == NULL)
        return fv_cli_usage_error(CMD, "--model MODEL, --format onnx and --out FILE are "
                                       "required");
    if (strcmp(format, "onnx") != 0)
        return fv_cli_usage_error(CMD,
                                  "--format '%s': unknown; the supported format is "
                                  "'onnx'",
                                  format);
    if ((rc = fv_cli_out_check(CMD, "--out", out_path, true)) != 0)
        return rc;
    rc = FV_EXIT_FAIL;

    if ((r = fv_model_load(model_path, &model, &d)) != 0) {
        fv_cli_error(CMD, "%s", d.msg[0] ? d.msg : fv_strerror(r));
        goto out;
    }
    if ((r = fv_onnx_save(model, out_path, &d)) != 0) {
        fv_cli_error(CMD, "%s: %s", model_path, d.msg[0] ? d.msg : fv_strerror(r));
        goto out;
    }
    rc = FV_EXIT_OK;
out:
    fv_model_free(model);
    return rc;
}
