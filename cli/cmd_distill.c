/* cmd_distill.c - `fedvault distill`: train a small student from a teacher model, locally.
 *
 * Pipeline (randomness from --seed only, so a run is reproducible for a given OpenBLAS
 * thread count):
 *   1. load the teacher model; decode --data with the TEACHER's schema and encode it with
 *      the teacher's preprocessing statistics (nothing is refitted: the student is a drop-in
 *      replacement that scores the same rows the same way)
 *   2. stratified validation split of --data (--val-fraction, seed + 1 as in `train`)
 *   3. the teacher's logits for every training row, once (fv_train_distill takes them as
 *      an input, so the loop never calls the teacher)
 *   4. a fresh student network (--student), trained with fv_train_distill: loss
 *      alpha * BCE(y, s) + (1 - alpha) * T^2 * KL(teacher_T || student_T) (fv_mlp.h);
 *      early stopping on the student's plain validation loss
 *   5. the student model = the teacher's schema and preprocessing + the new network + a
 *      metadata record naming the teacher; saved atomically to --out if given (through
 *      fv_file_out, cli-int.h: through symlinks, "-" is stdout and the report goes to
 *      stderr)
 *   6. with --quantize-int8 (or --int8-out): the int8 student, i.e. the student model with
 *      fv_model_t.int8 set, encoded (format version 2: int8 weights, a float32 scale and
 *      bias per unit) and decoded back, so that what is measured is exactly what the file
 *      holds: fv_mlp_quantize_int8 of the student's network; written to --int8-out if
 *      given. Its metadata is the student's plus "quantization": "int8".
 *   7. the compression report: parameters; bytes (the model file: the teacher's on disk,
 *      the students' encodings, which is what --out and --int8-out hold); scoring latency
 *      at batch 1 and batch 1024 (the network's forward pass and sigmoid/softmax on
 *      already-encoded rows, one preallocated workspace, in-process: fv_mlp_latency,
 *      blocks of K calls per pair of clock_gettime(CLOCK_MONOTONIC) reads, the median over
 *      the blocks of the time per call (fv_latency.h); CSV decoding and preprocessing are the
 *      same for every model and are left out); and with --test FILE, the test metrics of
 *      each. The int8 student is scored as its dequantized float32 network (that is all
 *      fedvault's scoring path knows), so its latency is the student's: int8 buys file
 *      size, not speed, here.
 * Latency is a measurement printed for a person, not something any test asserts (the
 * machine may be busy); the median keeps one preempted block from moving it.
 */
#include "cli-int.h"
#include "cli-metrics.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>

#include <jansson.h>

#include "fv-config.h"
#include "fv_dataset.h"
#include "fv_latency.h"
#include "fv_mlp.h"
#include "fv_model.h"
#include "fv_preproc.h"
#include "fv_schema.h"
#include "fv_train.h"

#define CMD "distill"

/* Latency measurement: rows per call, calls (at least MIN, at most MAX, stopping once
 * the budget is spent), after WARMUP untimed calls. */
#define LAT_BIG_BATCH FV_LATENCY_BIG_BATCH
#define LAT_BUDGET_S 0.5

static const char usage[] =
    "Usage: fedvault distill --teacher MODEL --data FILE [--student SPEC] [--out MODEL]\n"
    "                        [--quantize-int8] [--int8-out MODEL] [--test FILE] [options]\n"
    "\n"
    "Train a small student model from a trained teacher (knowledge distillation): the\n"
    "student learns from the labels and from the teacher's scores, with the loss\n"
    "  alpha * BCE(y, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T),\n"
    "and keeps the teacher's schema and preprocessing. Prints a compression report:\n"
    "parameters, model bytes, scoring latency (batch 1 and 1024) and, with --test, the\n"
    "test metrics of both models.\n"
    "\n"
    "With --quantize-int8 the report has a third model, student_int8: the student with its\n"
    "weights quantized to int8 (one float32 scale per output unit, float32 biases; format\n"
    "version 2 model file, about 4x smaller on weights). It is reported as the file will\n"
    "score: 'fedvault predict' and 'fedvault export' load it as the dequantized float32\n"
    "network, so its latency is the student's; its size and test metrics are its own.\n"
    "\n"
    "  --teacher MODEL        teacher model file (written by 'fedvault train') (required)\n"
    "  --data FILE            CSV file to distill on, with the teacher's columns (required)\n"
    "  --student SPEC         logreg (default) or mlp:H1,H2,...\n"
    "  --temperature T        softening temperature, > 0 (default 2)\n"
    "  --alpha A              weight of the label loss, 0..1 (default 0.5; 1 = no teacher)\n"
    "  --out MODEL            student model file to write (atomically, through a symlink;\n"
    "                         - for standard output when it is not a terminal: the\n"
    "                         report then goes to stderr)\n"
    "  --quantize-int8        also build and report the int8-quantized student\n"
    "  --int8-out MODEL       int8 student model file to write (as --out); implies\n"
    "                         --quantize-int8\n"
    "  --test FILE            CSV file to score both models on for the report\n"
    "  --val-fraction F       validation split for early stopping (default 0.1)\n"
    "  --epochs N, --batch-size N, --optimizer adam|sgd, --lr X, --momentum X,\n"
    "  --weight-decay X, --patience N, --es-metric loss|auc, --pos-weight X, --seed N,\n"
    "  --threads N            as for 'fedvault train' (same defaults)\n"
    "  --json                 print the report as one JSON object\n"
    "  --quiet                no per-epoch progress lines on stderr\n"
    "  -h, --help             this text\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

/* The training options (--val-fraction, --epochs .. --threads) are cli_util.c's, shared
 * with train; FV_CLI_OPT_* values are well above these. */
enum {
    OPT_TEACHER = 256,
    OPT_DATA,
    OPT_STUDENT,
    OPT_TEMPERATURE,
    OPT_ALPHA,
    OPT_OUT,
    OPT_TEST,
    OPT_JSON,
    OPT_QUIET,
    OPT_QUANTIZE_INT8,
    OPT_INT8_OUT,
};

static const struct option long_opts[] = {
    {"teacher", required_argument, NULL, OPT_TEACHER},
    {"data", required_argument, NULL, OPT_DATA},
    {"student", required_argument, NULL, OPT_STUDENT},
    {"temperature", required_argument, NULL, OPT_TEMPERATURE},
    {"alpha", required_argument, NULL, OPT_ALPHA},
    {"out", required_argument, NULL, OPT_OUT},
    {"quantize-int8", no_argument, NULL, OPT_QUANTIZE_INT8},
    {"int8-out", required_argument, NULL, OPT_INT8_OUT},
    {"test", required_argument, NULL, OPT_TEST},
    {"val-fraction", required_argument, NULL, FV_CLI_OPT_VAL_FRACTION},
    FV_CLI_TRAIN_LONG_OPTS,
    {"json", no_argument, NULL, OPT_JSON},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct distill_args {
    const char *teacher, *data, *student, *out, *test;
    const char *int8_out;  /* NULL: not written */
    fv_cli_train_opts_t t; /* the training options, shared with train */
    fv_distill_cfg_t dc;
    bool json, quiet;
    bool quantize_int8; /* --quantize-int8, or implied by --int8-out */
} distill_args_t;

static int on_epoch(void *user, const fv_epoch_report_t *r)
{
    const distill_args_t *a = user;
    if (!a->quiet) {
        fprintf(stderr, "epoch %3zu/%zu  distill_loss %.5f", r->epoch, a->t.cfg.epochs,
                r->train_loss);
        if (!isnan(r->val_loss))
            fprintf(stderr, "  val_loss %.5f", r->val_loss);
        if (!isnan(r->val_auc))
            fprintf(stderr, "  val_auc %.4f", r->val_auc);
        fprintf(stderr, "%s\n", r->improved ? "  *" : "");
    }
    return 0;
}

static int parse_args(int argc, char **argv, distill_args_t *a)
{
    int c, r;
    memset(a, 0, sizeof *a);
    fv_cli_train_opts_init(&a->t);
    fv_distill_cfg_default(&a->dc);
    a->student = "logreg";
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return -1;
        case OPT_TEACHER:
            a->teacher = optarg;
            break;
        case OPT_DATA:
            a->data = optarg;
            break;
        case OPT_STUDENT:
            a->student = optarg;
            break;
        case OPT_OUT:
            a->out = optarg;
            break;
        case OPT_QUANTIZE_INT8:
            a->quantize_int8 = true;
            break;
        case OPT_INT8_OUT:
            a->int8_out = optarg;
            a->quantize_int8 = true;
            break;
        case OPT_TEST:
            a->test = optarg;
            break;
        case OPT_JSON:
            a->json = true;
            break;
        case OPT_QUIET:
            a->quiet = true;
            break;
        case OPT_TEMPERATURE:
            if (!fv_cli_parse_double(CMD, "--temperature", optarg, 1e-3, 1e3, &a->dc.temperature))
                return FV_EXIT_USAGE;
            break;
        case OPT_ALPHA:
            if (!fv_cli_parse_double(CMD, "--alpha", optarg, 0, 1, &a->dc.alpha))
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
    if (a->teacher == NULL)
        return fv_cli_usage_error(CMD, "--teacher MODEL is required");
    if (a->data == NULL)
        return fv_cli_usage_error(CMD, "--data FILE is required");
    if ((r = fv_cli_out_check(CMD, "--out", a->out, true)) != 0 ||
        (r = fv_cli_out_check(CMD, "--int8-out", a->int8_out, true)) != 0 ||
        (r = fv_cli_out_distinct(CMD, "--int8-out", a->int8_out, "--out", a->out)) != 0)
        return r;
    fv_cli_train_opts_finish(&a->t);
    return 0;
}

/* ---- the report ------------------------------------------------------------------ */

typedef struct side {
    char arch[256];
    size_t params;
    long long bytes;
    double lat1_us, lat1024_us; /* median over blocks of the time per call */
    size_t calls1, calls1024;
    bool have_test;
    fv_cli_metrics_t test;
} side_t;

/* x_big: LAT_BIG_BATCH encoded rows (fv_latency.h: blocks of calls per clock read,
 * in-process). */
static int measure(const fv_mlp_t *m, const float *x_big, side_t *s)
{
    fv_latency_t lat;
    int r = fv_mlp_latency(m, x_big, LAT_BUDGET_S, &lat);
    if (r == 0) {
        s->lat1_us = lat.batch1_us;
        s->lat1024_us = lat.batch1024_us;
        s->calls1 = lat.calls1;
        s->calls1024 = lat.calls1024;
    }
    return r;
}

static int score_test(const fv_model_t *m, const fv_dataset_t *ds, side_t *s)
{
    size_t n_out = fv_mlp_arch(m->mlp)->n_out;
    float *prob = malloc((ds->n_rows ? ds->n_rows : 1) * n_out * sizeof *prob);
    int r = FV_ENOMEM;
    if (prob != NULL && (r = fv_model_predict(m, ds, NULL, ds->n_rows, prob)) == 0) {
        r = fv_cli_metrics_compute(prob, ds->label, ds->n_rows, n_out, &s->test) == 0 ? 0
                                                                                      : FV_ENOMEM;
        s->have_test = r == 0;
    }
    free(prob);
    return r;
}

static json_t *side_json(const side_t *s)
{
    json_t *o = json_object(), *lat = json_object();
    json_object_set_new(o, "model", json_string(s->arch));
    json_object_set_new(o, "parameters", json_integer((json_int_t)s->params));
    json_object_set_new(o, "bytes", json_integer((json_int_t)s->bytes));
    json_object_set_new(lat, "batch_1_us", json_real(s->lat1_us));
    json_object_set_new(lat, "batch_1024_us", json_real(s->lat1024_us));
    json_object_set_new(lat, "batch_1_calls", json_integer((json_int_t)s->calls1));
    json_object_set_new(lat, "batch_1024_calls", json_integer((json_int_t)s->calls1024));
    json_object_set_new(o, "latency", lat);
    if (s->have_test)
        json_object_set_new(o, "test", fv_cli_metrics_json(&s->test));
    return o;
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : NAN;
}

static json_t *jratio(double a, double b)
{
    double r = ratio(a, b);
    return isfinite(r) ? json_real(r) : json_null();
}

/* Teacher-to-student ratios (> 1: the student is smaller or faster; null if undefined). */
static json_t *compression_json(const side_t *t, const side_t *s)
{
    return json_pack(
        "{s:o,s:o,s:o,s:o}", "parameters", jratio((double)t->params, (double)s->params), "bytes",
        jratio((double)t->bytes, (double)s->bytes), "latency_batch_1",
        jratio(t->lat1_us, s->lat1_us), "latency_batch_1024", jratio(t->lat1024_us, s->lat1024_us));
}

static json_t *build_meta(const distill_args_t *a, const char *data_sha, const char *teacher_sha,
                          const char *teacher_arch, const char *student_arch, size_t n_rows,
                          size_t n_fit, size_t n_val, const fv_train_result_t *tr, double train_s)
{
    json_t *meta = json_object(), *data = json_object(), *t = json_object(), *dist = json_object();
    json_object_set_new(meta, "producer", json_string("fedvault " FV_VERSION " (" FV_COMMIT ")"));
    json_object_set_new(data, "file", json_string(fv_cli_data_name(a->data)));
    json_object_set_new(data, "sha256", json_string(data_sha));
    json_object_set_new(data, "rows", json_integer((json_int_t)n_rows));
    json_object_set_new(meta, "data", data);
    fv_cli_train_meta_set(t, &a->t, student_arch, n_fit, n_val, tr, train_s);
    json_object_set_new(meta, "training", t);
    json_object_set_new(dist, "teacher_file", json_string(a->teacher));
    json_object_set_new(dist, "teacher_sha256", json_string(teacher_sha));
    json_object_set_new(dist, "teacher_model", json_string(teacher_arch));
    json_object_set_new(dist, "temperature", json_real(a->dc.temperature));
    json_object_set_new(dist, "alpha", json_real(a->dc.alpha));
    json_object_set_new(meta, "distillation", dist);
    return meta;
}

/* One line of the table: teacher, student, [student_int8,] then teacher/student [and
 * teacher/student_int8] (or, for metrics, the difference from the teacher). */
static void print_row(FILE *f, const char *label, int decimals, double t, double s, const side_t *q,
                      double qv, bool diff)
{
    fprintf(f, "  %-22s%14.*f %14.*f", label, decimals, t, decimals, s);
    if (q != NULL)
        fprintf(f, " %14.*f", decimals, qv);
    if (diff)
        fprintf(f, " %+10.4f", s - t);
    else
        fprintf(f, " %9.1fx", ratio(t, s));
    if (q != NULL) {
        if (diff)
            fprintf(f, " %+10.4f", qv - t);
        else
            fprintf(f, " %9.1fx", ratio(t, qv));
    }
    fprintf(f, "\n");
}

/* q: the int8 student, or NULL. To f: stdout, or stderr when a model went to stdout. */
static void print_report(FILE *f, const distill_args_t *a, const side_t *t, const side_t *s,
                         const side_t *q, const fv_train_result_t *tr, double train_s)
{
    fprintf(f,
            "Distilled %s from %s (%s) on %s: %zu epochs (best %zu%s) in %.2f s, "
            "temperature %g, alpha %g\n",
            s->arch, t->arch, a->teacher, fv_cli_data_name(a->data), tr->epochs_run, tr->best_epoch,
            tr->stopped_early ? ", stopped early" : "", train_s, a->dc.temperature, a->dc.alpha);
    if (q != NULL)
        fprintf(f, "                        %14s %14s %14s %10s %10s\n", "teacher", "student",
                "student_int8", "ratio", "ratio_int8");
    else
        fprintf(f, "                        %14s %14s %10s\n", "teacher", "student", "ratio");
    double qv = 0;
    print_row(f, "parameters", 0, (double)t->params, (double)s->params, q,
              q ? (double)q->params : qv, false);
    print_row(f, "bytes (model file)", 0, (double)t->bytes, (double)s->bytes, q,
              q ? (double)q->bytes : qv, false);
    print_row(f, "latency batch 1, us", 3, t->lat1_us, s->lat1_us, q, q ? q->lat1_us : qv, false);
    print_row(f, "latency batch 1024, us", 2, t->lat1024_us, s->lat1024_us, q,
              q ? q->lat1024_us : qv, false);
    bool test = t->have_test && s->have_test && (q == NULL || q->have_test);
    if (test && t->test.binary) {
        print_row(f, "test ROC AUC", 4, t->test.roc_auc, s->test.roc_auc, q,
                  q ? q->test.roc_auc : qv, true);
        print_row(f, "test PR AUC", 4, t->test.pr_auc, s->test.pr_auc, q, q ? q->test.pr_auc : qv,
                  true);
    } else if (test) {
        print_row(f, "test accuracy", 4, t->test.accuracy, s->test.accuracy, q,
                  q ? q->test.accuracy : qv, true);
    }
    fprintf(f,
            "  (latency: the network on encoded rows, in-process, median over blocks of calls of "
            "the time per call%s)\n",
            q != NULL ? "; the int8 student runs as its dequantized float32 network" : "");
    if (a->out != NULL)
        fprintf(f, "Student written to %s\n", fv_cli_out_name(a->out));
    if (a->int8_out != NULL)
        fprintf(f, "Int8 student written to %s\n", fv_cli_out_name(a->int8_out));
}

int fv_cmd_distill(int argc, char **argv)
{
    distill_args_t a;
    fv_diag_t d = {""};
    int rc = FV_EXIT_FAIL, r;
    fv_model_t *teacher = NULL, *student = NULL, *student8 = NULL;
    fv_dataset_t *ds = NULL, *ds_test = NULL;
    fv_mlp_t *mlp = NULL;
    fv_mlp_ws_t *ws = NULL;
    size_t *fit = NULL, *val = NULL, n_fit = 0, n_val = 0;
    float *x_fit = NULL, *x_val = NULL, *zt = NULL, *x_big = NULL;
    int32_t *y_fit = NULL, *y_val = NULL;
    uint8_t *enc = NULL, *enc8 = NULL;
    size_t enc_len = 0, enc8_len = 0;
    json_t *out = NULL;
    char *meta_str = NULL, *meta8_str = NULL;
    char data_sha[65] = "", teacher_sha[65] = "";
    side_t ts, ss, qs;
    memset(&ts, 0, sizeof ts);
    memset(&ss, 0, sizeof ss);
    memset(&qs, 0, sizeof qs);

    r = parse_args(argc, argv, &a);
    if (r != 0)
        return r < 0 ? FV_EXIT_OK : r;
    fv_cli_train_set_threads(&a.t);

    if (fv_cli_load_model_data(CMD, a.teacher, a.data, "the data must have the teacher's columns",
                               &teacher, &ds) != 0)
        goto out;
    if ((r = fv_cli_file_sha256(a.data, data_sha)) != 0 ||
        (r = fv_cli_file_sha256(a.teacher, teacher_sha)) != 0) {
        fv_cli_error(CMD, "cannot fingerprint %s or %s: %s", a.data, a.teacher, strerror(-r));
        goto out;
    }
    if (fv_cli_train_split_val(CMD, ds, NULL, ds->n_rows, &a.t, a.data, "the validation split",
                               &fit, &n_fit, &val, &n_val) != 0)
        goto out;

    const fv_mlp_arch_t *tarch = fv_mlp_arch(teacher->mlp);
    size_t nf = fv_preproc_n_features(teacher->preproc), n_out = tarch->n_out;
    fv_mlp_arch_t sarch;
    if ((r = fv_mlp_parse_arch(a.student, nf, fv_schema_n_classes(teacher->schema), &sarch, &d)) !=
        0) {
        rc = fv_cli_usage_error(CMD, "--student: %s", d.msg);
        goto out;
    }
    fv_mlp_arch_string(tarch, ts.arch, sizeof ts.arch);
    fv_mlp_arch_string(&sarch, ss.arch, sizeof ss.arch);

    x_fit = fv_preproc_matrix_alloc(teacher->preproc, n_fit);
    y_fit = malloc(n_fit * sizeof *y_fit);
    x_val = fv_preproc_matrix_alloc(teacher->preproc, n_val);
    y_val = malloc((n_val ? n_val : 1) * sizeof *y_val);
    zt = malloc(n_fit * n_out * sizeof *zt);
    x_big = malloc(LAT_BIG_BATCH * nf * sizeof *x_big);
    if (!x_fit || !y_fit || !x_val || !y_val || !zt || !x_big) {
        fv_cli_error(CMD, "out of memory for %zu rows x %zu features", ds->n_rows, nf);
        goto out;
    }
    if ((r = fv_preproc_transform(teacher->preproc, ds, fit, n_fit, x_fit)) != 0 ||
        (r = fv_preproc_transform(teacher->preproc, ds, val, n_val, x_val)) != 0) {
        fv_cli_error(CMD, "encoding features: %s", fv_strerror(r));
        goto out;
    }
    fv_dataset_labels(ds, fit, n_fit, y_fit);
    fv_dataset_labels(ds, val, n_val, y_val);

    /* The teacher's logits for every training row, in chunks of LAT_BIG_BATCH. */
    if ((r = fv_mlp_ws_new(teacher->mlp, LAT_BIG_BATCH, &ws)) != 0) {
        fv_cli_error(CMD, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_fit && r == 0; i += LAT_BIG_BATCH) {
        size_t m = n_fit - i < LAT_BIG_BATCH ? n_fit - i : LAT_BIG_BATCH;
        r = fv_mlp_logits(teacher->mlp, ws, x_fit + i * nf, m, zt + i * n_out);
    }
    fv_mlp_ws_free(ws);
    ws = NULL;
    if (r != 0) {
        fv_cli_error(CMD, "scoring the training rows with the teacher: %s", fv_strerror(r));
        goto out;
    }

    if ((r = fv_mlp_new(&sarch, &mlp)) != 0) {
        fv_cli_error(CMD, "creating the student: %s", fv_strerror(r));
        goto out;
    }
    fv_mlp_init(mlp, a.t.cfg.seed);
    if (!a.quiet)
        fprintf(stderr,
                "fedvault distill: %s, %zu rows (%zu train, %zu validation), %zu features; "
                "teacher %s (%zu parameters) -> student %s (%zu parameters), T %g, alpha %g\n",
                fv_cli_data_name(a.data), ds->n_rows, n_fit, n_val, nf, ts.arch,
                fv_mlp_n_params(teacher->mlp), ss.arch, fv_mlp_n_params(mlp), a.dc.temperature,
                a.dc.alpha);
    a.t.cfg.on_epoch = on_epoch;
    a.t.cfg.user = &a;
    fv_train_result_t tr;
    double t0 = fv_cli_now_s();
    r = fv_train_distill(mlp, x_fit, y_fit, zt, n_fit, n_val ? x_val : NULL, n_val ? y_val : NULL,
                         n_val, &a.t.cfg, &a.dc, &tr, &d);
    double train_s = fv_cli_now_s() - t0;
    if (r != 0) {
        fv_cli_error(CMD, "distillation failed: %s", d.msg[0] ? d.msg : fv_strerror(r));
        goto out;
    }

    /* The student: the teacher's schema and preprocessing (a second decode of the
     * teacher's file gives owned copies) with the new network and metadata. */
    json_t *meta = build_meta(&a, data_sha, teacher_sha, ts.arch, ss.arch, ds->n_rows, n_fit, n_val,
                              &tr, train_s);
    meta_str = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
    if (a.quantize_int8) {
        json_object_set_new(meta, "quantization", json_string("int8"));
        meta8_str = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
    }
    json_decref(meta);
    if (meta_str == NULL || (a.quantize_int8 && meta8_str == NULL)) {
        fv_cli_error(CMD, "out of memory");
        goto out;
    }
    if (fv_cli_load_model(CMD, a.teacher, &student) != 0)
        goto out;
    fv_mlp_free(student->mlp);
    student->mlp = mlp;
    mlp = NULL;
    free(student->meta_json);
    student->meta_json = meta_str;
    meta_str = NULL;
    if ((r = fv_model_encode(student, &enc, &enc_len)) != 0) {
        fv_cli_error(CMD, "encoding the student model: %s", fv_strerror(r));
        goto out;
    }
    if (a.out != NULL && (r = fv_model_save(student, a.out, &d)) != 0) {
        fv_cli_diag_error(CMD, &d, r);
        goto out;
    }

    /* The int8 student: the same model encoded with int8 weights, then decoded, so the
     * network reported (and scored) is the one the file holds. */
    if (a.quantize_int8) {
        char *keep = student->meta_json;
        student->meta_json = meta8_str;
        student->int8 = true;
        r = fv_model_encode(student, &enc8, &enc8_len);
        student->int8 = false;
        student->meta_json = keep;
        if (r != 0) {
            fv_cli_error(CMD, "encoding the int8 student model: %s", fv_strerror(r));
            goto out;
        }
        if ((r = fv_model_decode("the int8 student", enc8, enc8_len, &student8, &d)) != 0) {
            fv_cli_diag_error(CMD, &d, r);
            goto out;
        }
        if (a.int8_out != NULL && (r = fv_model_save(student8, a.int8_out, &d)) != 0) {
            fv_cli_diag_error(CMD, &d, r);
            goto out;
        }
        snprintf(qs.arch, sizeof qs.arch, "%.240s int8", ss.arch);
    }

    /* The report. */
    struct stat st;
    if (stat(a.teacher, &st) != 0) {
        fv_cli_error(CMD, "%s: cannot stat: %s", a.teacher, strerror(errno));
        goto out;
    }
    ts.params = fv_mlp_n_params(teacher->mlp);
    ts.bytes = (long long)st.st_size;
    ss.params = fv_mlp_n_params(student->mlp);
    ss.bytes = (long long)enc_len;
    if (student8 != NULL) {
        qs.params = fv_mlp_n_params(student8->mlp);
        qs.bytes = (long long)enc8_len;
    }
    for (size_t i = 0; i < LAT_BIG_BATCH; i++) /* training rows, repeated if fewer */
        memcpy(x_big + i * nf, x_fit + (i % n_fit) * nf, nf * sizeof *x_big);
    if ((r = measure(teacher->mlp, x_big, &ts)) != 0 ||
        (r = measure(student->mlp, x_big, &ss)) != 0 ||
        (student8 != NULL && (r = measure(student8->mlp, x_big, &qs)) != 0)) {
        fv_cli_error(CMD, "timing the models: %s", fv_strerror(r));
        goto out;
    }
    if (a.test != NULL) {
        if (fv_cli_load_dataset(CMD, a.test, teacher->schema, NULL, &ds_test) != 0)
            goto out;
        if ((r = score_test(teacher, ds_test, &ts)) != 0 ||
            (r = score_test(student, ds_test, &ss)) != 0 ||
            (student8 != NULL && (r = score_test(student8, ds_test, &qs)) != 0)) {
            fv_cli_error(CMD, "scoring %s: %s", a.test, fv_strerror(r));
            goto out;
        }
    }

    /* the report: on stderr when a model went to stdout */
    FILE *rep = fv_cli_out_report(a.out, a.int8_out);
    if (a.json) {
        out = json_object();
        json_object_set_new(out, "teacher_file", json_string(a.teacher));
        json_object_set_new(out, "student_file", a.out ? json_string(a.out) : json_null());
        if (student8 != NULL)
            json_object_set_new(out, "student_int8_file",
                                a.int8_out ? json_string(a.int8_out) : json_null());
        json_object_set_new(out, "data", json_string(fv_cli_data_name(a.data)));
        json_object_set_new(out, "data_sha256", json_string(data_sha));
        json_object_set_new(out, "test_data", a.test ? json_string(a.test) : json_null());
        json_object_set_new(out, "temperature", json_real(a.dc.temperature));
        json_object_set_new(out, "alpha", json_real(a.dc.alpha));
        json_object_set_new(out, "features", json_integer((json_int_t)nf));
        json_object_set_new(out, "train_rows", json_integer((json_int_t)n_fit));
        json_object_set_new(out, "val_rows", json_integer((json_int_t)n_val));
        json_object_set_new(out, "epochs", json_integer((json_int_t)tr.epochs_run));
        json_object_set_new(out, "best_epoch", json_integer((json_int_t)tr.best_epoch));
        json_object_set_new(out, "stopped_early", json_boolean(tr.stopped_early));
        json_object_set_new(out, "train_seconds", json_real(train_s));
        json_object_set_new(out, "threads", json_integer((json_int_t)a.t.threads));
        json_object_set_new(out, "teacher", side_json(&ts));
        json_object_set_new(out, "student", side_json(&ss));
        json_object_set_new(out, "compression", compression_json(&ts, &ss));
        if (student8 != NULL) {
            json_object_set_new(out, "student_int8", side_json(&qs));
            json_object_set_new(out, "compression_int8", compression_json(&ts, &qs));
        }
        if (fv_cli_print_json_to(CMD, rep, out) != 0)
            goto out;
    } else {
        print_report(rep, &a, &ts, &ss, student8 != NULL ? &qs : NULL, &tr, train_s);
    }
    rc = FV_EXIT_OK;
out:
    json_decref(out);
    free(meta_str);
    free(meta8_str);
    free(enc);
    free(enc8);
    fv_mlp_ws_free(ws);
    fv_mlp_free(mlp);
    fv_dataset_free(ds); /* borrow the teacher's schema: freed before it */
    fv_dataset_free(ds_test);
    fv_model_free(student8);
    fv_model_free(student);
    fv_model_free(teacher);
    free(fit), free(val);
    free(x_fit), free(x_val), free(zt), free(x_big);
    free(y_fit), free(y_val);
    return rc;
}
