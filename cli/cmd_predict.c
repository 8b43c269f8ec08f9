/* cmd_predict.c - `fedvault predict`: score CSV rows with a saved model, with reason codes.
 *
 * Purpose: the model consumer's command. Every data row gets a score, or an error record
 * naming FILE:LINE:COL and the column, and scoring goes on: one bad row in a million must
 * not lose the other 999,999. Only what makes the whole run meaningless fails it (exit
 * 1): an unreadable model or data file, a header that does not match the schema, a CSV
 * syntax error (an unterminated quote leaves no way to find the next row), a write error.
 *
 * Flow: the data is decoded row by row with the model's schema (fv_dataset_reader; the
 * target column may be absent, and its cells are not checked). Good rows gather in
 * chunks of PREDICT_CHUNK (the chunk size of fv_model_predict, so a clean file is scored
 * in exactly the batches `fedvault eval` uses); each chunk is scored with
 * fv_model_predict_ws_rows and one workspace made at the start (the scores ARE the
 * model's, bit for bit fv_model_predict's), its logits come from the same preprocessing
 * and fv_mlp_logits, and with --explain each row is explained
 * (model/fv_explain.h: exact for logistic regression, integrated gradients for MLPs).
 * Then the chunk's records, good and bad, are written in input order.
 *
 * Non-finite values: a decoded row can still fail at scoring: a finite value that
 * overflows float32 once standardized (Income = 1e45), or a network that overflows on an
 * extreme but representable row (a non-finite logit or score). fv_model_predict_ws_rows
 * marks such a row with its column, and the row becomes an error record
 * "FILE:LINE:COL: column 'NAME': ..." (fv_model_bad_row_str), in both formats, with or
 * without --explain (whose rows are never explained then); a row whose reason codes come
 * out non-finite is an error record too. No non-finite number is ever written, so every
 * JSON line parses. The bad row's features are zeroed before the logits' gemm, which
 * computes each output row from its input row alone: the other rows keep their bits.
 *
 * Output: `row` is the 1-based number of the data record (the header is not counted;
 * a record may span lines, the error message gives the line). Floats are printed with
 * %.9g, so a float32 score or logit reads back bit for bit; contributions and the bias
 * (doubles) with %.9g as well (9 significant digits). Raw values are the cells as
 * written. With --out the output goes through fv_file_out (cli-int.h): to a temporary
 * file beside FILE (beside the file a symlink FILE points to), fsynced and renamed over
 * it at the end, so FILE is either untouched or complete; "-", /dev/stdout, a FIFO or a
 * device are written as the rows are scored, like standard output without --out.
 *
 * Memory: one chunk of decoded rows and, with --explain, copies of their raw cells.
 */
#include "cli-int.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "fv-config.h"
#include "fv_csv.h"
#include "fv_dataset.h"
#include "fv_explain.h"
#include "fv_file.h"
#include "fv_model.h"

#define CMD "predict"
#define PREDICT_CHUNK FV_MODEL_PREDICT_CHUNK
#define PREDICT_MAX_EXPLAIN 4096
#define PREDICT_WHAT_MAX 320 /* a scoring error's sentence, before FILE:LINE:COL */

static const char usage[] =
    "Usage: fedvault predict --model MODEL --data FILE [--explain N] [--out FILE]\n"
    "                        [--format csv|jsonl] [--steps N] [--threads N]\n"
    "                        [--unknown-category error|missing]\n"
    "\n"
    "Score every row of a CSV file with a saved model. With --explain N each row also gets\n"
    "its N reason codes: the columns that moved its logit most, with the row's value and\n"
    "the signed contribution. Logistic regression: exact (contribution = weight x\n"
    "standardized value, summed over a categorical column's one-hot features; bias +\n"
    "contributions = logit). MLP: integrated gradients from the baseline 'every numeric\n"
    "column at its training mean, no category set' (bias = the logit there;\n"
    "contributions sum to logit - bias up to a small integration error).\n"
    "Multi-class models: the predicted class, its probability and its logit.\n"
    "\n"
    "The file needs the columns of the model's schema; the target column may be left\n"
    "out. A row that does not fit the schema gets an error record naming line, column and\n"
    "what was expected, and so does a row whose value overflows the model's float32\n"
    "arithmetic (e.g. 1e45 where the training data held thousands); the other rows are\n"
    "still scored. No score, logit or contribution is ever written as NaN or infinity.\n"
    "\n"
    "  --model MODEL       model file written by 'fedvault train' or 'fedvault distill'\n"
    "                      (an int8 file, from --int8-out, scores as its dequantized\n"
    "                      float32 network)\n"
    "  --data FILE         CSV file to score\n"
    "  --explain N         N reason codes per row (0..4096; N past the number of columns\n"
    "                      gives every column)\n"
    "  --out FILE          write to FILE (replaced atomically, through a symlink) instead\n"
    "                      of standard output (- is standard output too)\n"
    "  --format csv|jsonl  csv (default): row,score[,logit,bias,reason_1_column,\n"
    "                      reason_1_value,reason_1_contribution,...],error\n"
    "                      jsonl: {\"row\":1,\"score\":..,\"logit\":..[,\"bias\":..,\"reasons\":\n"
    "                      [{\"column\":..,\"value\":..,\"contribution\":..}]]} or\n"
    "                      {\"row\":..,\"error\":..}\n"
    "  --steps N           integrated-gradients steps for MLPs (default 32, 1..4096)\n"
    "  --threads N         OpenBLAS threads (default 1)\n"
    "  --unknown-category error|missing\n"
    "                      a category the model's schema lacks: that row's error\n"
    "                      (default), or read as a missing value (the column's one-hot\n"
    "                      features all 0)\n"
    "  -h, --help          this text\n"
    "\n"
    "Prints \"N rows scored, M rows with errors\" to standard error.\n"
    "Exit status: 0 success (also with row errors), 1 failure, 2 usage error.\n";

static const struct option long_opts[] = {
    {"model", required_argument, NULL, 'm'},   {"data", required_argument, NULL, 'd'},
    {"explain", required_argument, NULL, 'e'}, {"out", required_argument, NULL, 'o'},
    {"format", required_argument, NULL, 'f'},  {"steps", required_argument, NULL, 's'},
    {"threads", required_argument, NULL, 't'}, {"unknown-category", required_argument, NULL, 'u'},
    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
};

/* One data record of the current chunk. */
typedef struct rec {
    size_t row;  /* 1-based data record number */
    char *error; /* malloc'd message, or NULL for a good row */
    size_t good; /* index among the chunk's good rows */
    char **raw;  /* with --explain: n_cols malloc'd raw cells (NULL if absent) */
} rec_t;

typedef struct predict {
    const fv_model_t *model;
    size_t n_cols, n_out, n_in;
    bool jsonl;
    size_t n_explain; /* reason slots per row: min(--explain, feature columns) */
    fv_explain_t *ex; /* NULL without --explain */
    FILE *out;
    /* chunk */
    rec_t recs[PREDICT_CHUNK * 2]; /* bad rows also take a slot; flushed when full */
    size_t n_recs;
    fv_dataset_t ds; /* the chunk's good rows (borrowed schema) */
    float *prob, *logit, *x;
    long *bad;               /* per good row of the chunk: fv_model_predict_ws_rows's verdict */
    fv_mlp_ws_t *ws;         /* for the logits */
    fv_model_ws_t *model_ws; /* for the scores */
    double *contrib;
    size_t *top;
    size_t n_scored, n_errors;
    const fv_dataset_reader_t *rd; /* for a bad row's CSV field number */
    const char *fn;                /* the data file's name, as the reader's messages give it */
} predict_t;

/* ---- output helpers ------------------------------------------------------------------ */

/* A JSON string. Bytes that are not valid UTF-8 become U+FFFD (jansson's check decides). */
static void put_json_str(FILE *f, const char *s)
{
    json_t *j = json_string(s);
    char *tmp = NULL;
    if (j == NULL) { /* invalid UTF-8: keep the ASCII, replace the rest */
        tmp = strdup(s);
        if (tmp != NULL) {
            for (char *p = tmp; *p; p++)
                if ((unsigned char)*p >= 0x80)
                    *p = '?';
            j = json_string(tmp);
        }
    }
    char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    fputs(d ? d : "\"\"", f);
    free(d);
    json_decref(j);
    free(tmp);
}

static void put_header(predict_t *p)
{
    if (p->jsonl)
        return;
    fputs("row", p->out);
    if (p->n_out > 1)
        fputs(",class", p->out);
    fputs(",score", p->out);
    if (p->ex != NULL) {
        fputs(",logit,bias", p->out);
        for (size_t i = 1; i <= p->n_explain; i++)
            fprintf(p->out, ",reason_%zu_column,reason_%zu_value,reason_%zu_contribution", i, i, i);
    }
    fputs(",error\n", p->out);
}

static void put_error(predict_t *p, const rec_t *r)
{
    if (p->jsonl) {
        fprintf(p->out, "{\"row\":%zu,\"error\":", r->row);
        put_json_str(p->out, r->error);
        fputs("}\n", p->out);
        return;
    }
    fprintf(p->out, "%zu,", r->row);
    if (p->n_out > 1)
        fputc(',', p->out);
    if (p->ex != NULL) {
        fputs(",,", p->out);
        for (size_t i = 0; i < p->n_explain; i++)
            fputs(",,,", p->out);
    }
    fputc(',', p->out); /* after the empty score */
    fv_cli_put_csv_field(p->out, r->error);
    fputc('\n', p->out);
}

/* A row that decoded but failed at scoring: its message, "FILE:LINE:COL: column 'NAME':
 * ..." (FILE:LINE: when no column is to blame), malloc'd into r->error. 0 or FV_ENOMEM. */
static int set_score_error(predict_t *p, rec_t *r, long col, const char *what)
{
    size_t line = p->ds.line[r->good],
           field = col >= 0 ? fv_dataset_reader_field_number(p->rd, (size_t)col) : 0;
    char buf[FV_DIAG_MAX];
    if (field > 0)
        snprintf(buf, sizeof buf, "%s:%zu:%zu: %s", p->fn, line, field, what);
    else
        snprintf(buf, sizeof buf, "%s:%zu: %s", p->fn, line, what);
    free(r->error);
    r->error = strdup(buf);
    return r->error != NULL ? 0 : FV_ENOMEM;
}

/* One good row: i is its index among the chunk's good rows. Returns 1, writing nothing,
 * when a number to print is not finite (r->error then says which column), 0 when written,
 * or an FV_E* code. */
static int put_row(predict_t *p, rec_t *r, size_t i)
{
    const fv_schema_t *s = p->model->schema;
    const float *prob = p->prob + i * p->n_out, *z = p->logit + i * p->n_out;
    size_t out = 0;
    for (size_t k = 1; k < p->n_out; k++)
        if (prob[k] > prob[out])
            out = k;
    /* fv_model_predict_ws_rows passed the score, and the logit is the same computation:
     * this only guards the output. The reason codes are another computation (integrated
     * gradients may overflow where the forward pass does not): checked below. */
    if (!isfinite(prob[out]) || !isfinite(z[out])) {
        char what[PREDICT_WHAT_MAX];
        long col =
            fv_model_bad_row_str(p->model, &p->ds, i, FV_MODEL_BAD_OUTPUT, what, sizeof what);
        return set_score_error(p, r, col, what) < 0 ? FV_ENOMEM : 1;
    }
    fv_explain_result_t res = {0};
    size_t n_top = 0;
    if (p->ex != NULL) {
        int e = fv_explain_row(p->ex, p->x + i * p->n_in, out, p->contrib, &res);
        if (e != 0)
            return e;
        n_top = fv_explain_top(p->ex, p->contrib, p->n_explain, p->top);
    }
    if (p->ex != NULL && !isfinite(res.bias)) /* the logit at the baseline: a sane model's is */
        return set_score_error(p, r, -1, "the explanation's bias is not finite") < 0 ? FV_ENOMEM
                                                                                     : 1;
    for (size_t k = 0; k < n_top; k++) {
        size_t c = p->top[k];
        char what[PREDICT_WHAT_MAX];
        if (isfinite(p->contrib[c]))
            continue;
        snprintf(what, sizeof what,
                 "column '%.64s': its reason-code contribution is not finite (float32 "
                 "overflow explaining the row)",
                 fv_schema_column_name(s, c));
        return set_score_error(p, r, (long)c, what) < 0 ? FV_ENOMEM : 1;
    }
    const char *cls = p->n_out > 1 ? fv_schema_label(s, out) : NULL;
    if (p->jsonl) {
        fprintf(p->out, "{\"row\":%zu,", r->row);
        if (cls != NULL) {
            fputs("\"class\":", p->out);
            put_json_str(p->out, cls);
            fputc(',', p->out);
        }
        fprintf(p->out, "\"score\":%.9g,\"logit\":%.9g", (double)prob[out], (double)z[out]);
        if (p->ex != NULL) {
            fprintf(p->out, ",\"bias\":%.9g,\"reasons\":[", res.bias);
            for (size_t k = 0; k < n_top; k++) {
                size_t c = p->top[k];
                fputs(k ? ",{\"column\":" : "{\"column\":", p->out);
                put_json_str(p->out, fv_schema_column_name(s, c));
                fputs(",\"value\":", p->out);
                put_json_str(p->out, r->raw[c] ? r->raw[c] : "");
                fprintf(p->out, ",\"contribution\":%.9g}", p->contrib[c]);
            }
            fputc(']', p->out);
        }
        fputs("}\n", p->out);
        return 0;
    }
    fprintf(p->out, "%zu,", r->row);
    if (cls != NULL) {
        fv_cli_put_csv_field(p->out, cls);
        fputc(',', p->out);
    }
    fprintf(p->out, "%.9g", (double)prob[out]);
    if (p->ex != NULL) {
        fprintf(p->out, ",%.9g,%.9g", (double)z[out], res.bias);
        for (size_t k = 0; k < p->n_explain; k++) {
            if (k >= n_top) {
                fputs(",,,", p->out);
                continue;
            }
            size_t c = p->top[k];
            fputc(',', p->out);
            fv_cli_put_csv_field(p->out, fv_schema_column_name(s, c));
            fputc(',', p->out);
            fv_cli_put_csv_field(p->out, r->raw[c] ? r->raw[c] : "");
            fprintf(p->out, ",%.9g", p->contrib[c]);
        }
    }
    fputs(",\n", p->out);
    return 0;
}

static void recs_clear(predict_t *p)
{
    for (size_t i = 0; i < p->n_recs; i++) {
        rec_t *r = &p->recs[i];
        free(r->error);
        if (r->raw != NULL)
            for (size_t c = 0; c < p->n_cols; c++)
                free(r->raw[c]);
        free(r->raw);
        memset(r, 0, sizeof *r);
    }
    p->n_recs = 0;
    p->ds.n_rows = 0;
}

/* Scores the chunk's good rows and writes all its records. 0 or an FV_E* code. */
static int flush_chunk(predict_t *p)
{
    size_t k = p->ds.n_rows;
    int r = 0;
    if (k > 0) {
        r = fv_model_predict_ws_rows(p->model, p->model_ws, &p->ds, NULL, k, p->prob, p->bad);
        if (r == 0)
            r = fv_preproc_transform(p->model->preproc, &p->ds, NULL, k, p->x);
        if (r != 0)
            goto out;
        /* What fv_model_predict_ws_rows did: a bad row's features to 0 before the gemm. */
        for (size_t g = 0; g < k; g++)
            if (p->bad[g] != -1)
                memset(p->x + g * p->n_in, 0, p->n_in * sizeof *p->x);
        r = fv_mlp_logits(p->model->mlp, p->ws, p->x, k, p->logit);
        if (r != 0)
            goto out;
    }
    for (size_t i = 0; i < p->n_recs; i++) {
        rec_t *rc = &p->recs[i];
        if (rc->error == NULL && p->bad[rc->good] != -1) {
            char what[PREDICT_WHAT_MAX];
            long col = fv_model_bad_row_str(p->model, &p->ds, rc->good, p->bad[rc->good], what,
                                            sizeof what);
            if ((r = set_score_error(p, rc, col, what)) != 0)
                goto out;
        }
        if (rc->error == NULL) {
            r = put_row(p, rc, rc->good);
            if (r < 0)
                goto out;
            if (r == 0) {
                p->n_scored++;
                continue;
            }
            r = 0; /* 1: the row became an error record */
        }
        put_error(p, rc);
        p->n_errors++;
    }
out:
    recs_clear(p);
    return r;
}

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

/* ---- the command ---------------------------------------------------------------------- */

int fv_cmd_predict(int argc, char **argv)
{
    const char *model_path = NULL, *data = NULL, *out_path = NULL, *format = "csv";
    size_t threads = FV_DEFAULT_BLAS_THREADS, n_explain = 0, steps = 0;
    unsigned rflags = 0; /* --unknown-category: FV_DATASET_UNKNOWN_MISSING */
    bool explain = false;
    int c, r, rc = FV_EXIT_FAIL;
    fv_diag_t d = {""};
    fv_model_t *model = NULL;
    fv_csv_t *csv = NULL;
    fv_dataset_reader_t *rd = NULL;
    predict_t *p = NULL;
    fv_cli_out_t o = {0};
    double *cells = NULL;

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
        case 'o':
            out_path = optarg;
            break;
        case 'f':
            format = optarg;
            break;
        case 'e':
            if (!fv_cli_parse_size(CMD, "--explain", optarg, 0, PREDICT_MAX_EXPLAIN, &n_explain))
                return FV_EXIT_USAGE;
            explain = n_explain > 0;
            break;
        case 's':
            if (!fv_cli_parse_size(CMD, "--steps", optarg, 1, FV_EXPLAIN_MAX_STEPS, &steps))
                return FV_EXIT_USAGE;
            break;
        case 't':
            if (!fv_cli_parse_size(CMD, "--threads", optarg, 1, 256, &threads))
                return FV_EXIT_USAGE;
            break;
        case 'u':
            if (!fv_cli_parse_unknown_read(CMD, optarg, &rflags))
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
    if (strcmp(format, "csv") != 0 && strcmp(format, "jsonl") != 0)
        return fv_cli_usage_error(CMD, "--format: expected 'csv' or 'jsonl', got '%s'", format);
    if ((r = fv_cli_out_check(CMD, "--out", out_path, false)) != 0)
        return r;
    fv_cli_set_threads(threads);

    if (fv_cli_load_model(CMD, model_path, &model) != 0)
        goto out;
    if ((r = fv_csv_open(data, 0, &csv, &d)) != 0 ||
        (r = fv_dataset_reader_new(csv, model->schema, FV_DATASET_TARGET_OPTIONAL | rflags, &rd,
                                   &d)) != 0) {
        fv_cli_diag_error(CMD, &d, r);
        goto out;
    }

    p = calloc(1, sizeof *p);
    if (p == NULL)
        goto oom;
    p->model = model;
    p->n_cols = fv_schema_n_columns(model->schema);
    p->n_out = fv_mlp_arch(model->mlp)->n_out;
    p->n_in = fv_mlp_arch(model->mlp)->n_in;
    p->jsonl = strcmp(format, "jsonl") == 0;
    p->ds.schema = model->schema;
    p->ds.n_cols = p->n_cols;
    /* n_cols <= FV_SCHEMA_MAX_COLUMNS, n_in and n_out <= FV_MLP_MAX_WIDTH: no overflow */
    p->ds.cells = malloc(PREDICT_CHUNK * (p->n_cols ? p->n_cols : 1) * sizeof *p->ds.cells);
    p->ds.label = malloc(PREDICT_CHUNK * sizeof *p->ds.label);
    p->ds.line = malloc(PREDICT_CHUNK * sizeof *p->ds.line);
    p->prob = malloc(PREDICT_CHUNK * p->n_out * sizeof *p->prob);
    p->bad = malloc(PREDICT_CHUNK * sizeof *p->bad);
    p->rd = rd;
    p->fn = fv_csv_name(csv);
    p->logit = malloc(PREDICT_CHUNK * p->n_out * sizeof *p->logit);
    p->x = malloc(PREDICT_CHUNK * (p->n_in ? p->n_in : 1) * sizeof *p->x);
    p->contrib = malloc((p->n_cols ? p->n_cols : 1) * sizeof *p->contrib);
    p->top = malloc((p->n_cols ? p->n_cols : 1) * sizeof *p->top);
    cells = malloc((p->n_cols ? p->n_cols : 1) * sizeof *cells);
    if (p->ds.cells == NULL || p->ds.label == NULL || p->ds.line == NULL || p->prob == NULL ||
        p->logit == NULL || p->x == NULL || p->bad == NULL || p->contrib == NULL ||
        p->top == NULL || cells == NULL || fv_mlp_ws_new(model->mlp, PREDICT_CHUNK, &p->ws) != 0 ||
        fv_model_ws_new(model, PREDICT_CHUNK, &p->model_ws) != 0)
        goto oom;
    if (explain) {
        r = fv_explain_new(model->mlp, model->preproc, model->schema, steps, &p->ex);
        if (r == FV_ENOMEM)
            goto oom;
        if (r != 0) {
            fv_cli_error(CMD,
                         "%s: the network does not match the schema's feature layout; "
                         "cannot explain it (%s)",
                         model_path, fv_strerror(r));
            goto out;
        }
        p->n_explain =
            n_explain < fv_explain_n_columns(p->ex) ? n_explain : fv_explain_n_columns(p->ex);
    }

    if (out_path != NULL) {
        if (fv_cli_out_open(CMD, out_path, 0644, &o) != 0)
            goto out;
        p->out = o.f;
    } else {
        p->out = stdout;
    }

    put_header(p);
    size_t row_no = 0;
    for (;;) {
        int32_t label;
        r = fv_dataset_reader_next(rd, cells, &label, &d);
        if (r == FV_DATASET_END)
            break;
        if (r < 0) { /* CSV syntax: the rest of the file cannot be located */
            fv_cli_error(CMD, "%s (after %zu data rows; nothing after this point can be read)",
                         d.msg[0] ? d.msg : fv_strerror(r), row_no);
            goto out;
        }
        rec_t *rec = &p->recs[p->n_recs++];
        rec->row = ++row_no;
        if (r == FV_DATASET_BAD_ROW) {
            rec->error = xstrdup(d.msg);
            if (rec->error == NULL)
                goto oom;
        } else {
            size_t g = p->ds.n_rows++;
            size_t line = fv_dataset_reader_line(rd);
            rec->good = g;
            memcpy(p->ds.cells + g * p->n_cols, cells, p->n_cols * sizeof *cells);
            p->ds.label[g] = label;
            p->ds.line[g] = line > UINT32_MAX ? UINT32_MAX : (uint32_t)line;
            if (p->ex != NULL) {
                rec->raw = calloc(p->n_cols, sizeof *rec->raw);
                if (rec->raw == NULL)
                    goto oom;
                for (size_t j = 0; j < p->n_cols; j++) {
                    const char *f = fv_dataset_reader_field(rd, j);
                    if (f != NULL && (rec->raw[j] = strdup(f)) == NULL)
                        goto oom;
                }
            }
        }
        if (p->ds.n_rows == PREDICT_CHUNK || p->n_recs == PREDICT_CHUNK * 2) {
            if ((r = flush_chunk(p)) != 0)
                goto score_fail;
        }
    }
    if ((r = flush_chunk(p)) != 0)
        goto score_fail;

    if (out_path != NULL) {
        p->out = NULL; /* o.f: closed, flushed and committed here */
        if (fv_cli_out_close(&o, true) != 0)
            goto out;
    } else if (fflush(stdout) != 0 || ferror(stdout)) {
        fv_cli_error(CMD, "standard output: write failed: %s", strerror(errno));
        goto out;
    }
    fprintf(stderr, "%zu rows scored, %zu rows with errors\n", p->n_scored, p->n_errors);
    rc = FV_EXIT_OK;
    goto out;

score_fail:
    fv_cli_error(CMD, "scoring %s: %s", data, fv_strerror(r));
    goto out;
oom:
    fv_cli_error(CMD, "out of memory");
out:
    if (p != NULL) {
        recs_clear(p);
        if (p->out == stdout)
            fflush(stdout);
        fv_explain_free(p->ex);
        fv_mlp_ws_free(p->ws);
        fv_model_ws_free(p->model_ws);
        free(p->top);
        free(p->contrib);
        free(p->x);
        free(p->logit);
        free(p->prob);
        free(p->bad);
        free(p->ds.line);
        free(p->ds.label);
        free(p->ds.cells);
        free(p);
    }
    (void)fv_cli_out_close(&o, false); /* after a failure: the temporary file goes */
    free(cells);
    fv_dataset_reader_free(rd);
    fv_csv_free(csv);
    fv_model_free(model);
    return rc;
}
