/* bench_csv_reader.c - the CSV reader of model/ alone, in process, on one file.
 *
 * usage: bench_csv_reader FILE TARGET [REPS]   -> one JSON line, times in seconds
 * Times (wall, and the process's CPU time: this machine may be shared), median of REPS
 * (default 3) runs each, the file read from the page cache:
 *   tokenize  fv_csv_open + fv_csv_next to the end (read, split into fields);
 *   infer     fv_schema_infer with TARGET as a multi-class target (what `fedvault train`
 *             does first without --schema: types and vocabularies from the whole file);
 *   load      fv_dataset_load against that schema (every cell decoded to a double).
 * bench_csv.py turns them into MB/s beside cat, wc -l and pandas measured in the same run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "fv_blas.h"
#include "fv_csv.h"
#include "fv_dataset.h"
#include "fv_schema.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what, const fv_diag_t *d)
{
    fprintf(stderr, "bench_csv_reader: %s: %s\n", what, d->msg);
    exit(1);
}

int main(int argc, char **argv)
{
    char machine[384];
    fprintf(stderr, "machine: %s\n", fv_machine_line(machine, sizeof machine));
    enum { MAX_REPS = 15 };
    double t_tok[MAX_REPS], t_inf[MAX_REPS], t_load[MAX_REPS];
    double c_tok[MAX_REPS], c_inf[MAX_REPS], c_load[MAX_REPS];
    size_t n_records = 0, n_fields = 0, n_rows = 0, n_cols = 0;
    struct stat st;
    int reps;

    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: bench_csv_reader FILE TARGET [REPS]\n");
        return 2;
    }
    reps = argc == 4 ? atoi(argv[3]) : 3;
    if (reps < 1 || reps > MAX_REPS || stat(argv[1], &st) != 0) {
        fprintf(stderr, "bench_csv_reader: bad REPS or unreadable FILE\n");
        return 2;
    }
    for (int i = 0; i < reps; i++) {
        fv_diag_t d = {""};
        fv_csv_t *c = NULL;
        fv_csv_record_t rec;
        fv_schema_infer_opts_t o = {.target = argv[2], .unknown = FV_UNKNOWN_ERROR};
        fv_schema_t *s = NULL;
        fv_dataset_t *ds = NULL;
        double t0 = now_s(), c0 = cpu_s();
        int r;

        if (fv_csv_open(argv[1], 0, &c, &d) != 0)
            die("open", &d);
        n_records = n_fields = 0;
        while ((r = fv_csv_next(c, &rec, &d)) == 1) {
            n_records++;
            n_fields += rec.n_fields;
        }
        if (r < 0)
            die("tokenize", &d);
        fv_csv_free(c);
        t_tok[i] = now_s() - t0;
        c_tok[i] = cpu_s() - c0;

        t0 = now_s();
        c0 = cpu_s();
        if (fv_schema_infer(argv[1], &o, &s, &d) != 0)
            die("infer", &d);
        t_inf[i] = now_s() - t0;
        c_inf[i] = cpu_s() - c0;

        t0 = now_s();
        c0 = cpu_s();
        if (fv_dataset_load(argv[1], s, &ds, &d) != 0)
            die("load", &d);
        t_load[i] = now_s() - t0;
        c_load[i] = cpu_s() - c0;
        n_rows = ds->n_rows;
        n_cols = ds->n_cols;
        fv_dataset_free(ds);
        fv_schema_free(s);
    }
    printf("{\"bytes\":%jd,\"records\":%zu,\"fields\":%zu,\"rows\":%zu,\"cols\":%zu,"
           "\"reps\":%d,\"tokenize_s\":%.4f,\"infer_s\":%.4f,\"load_s\":%.4f,"
           "\"tokenize_cpu_s\":%.4f,\"infer_cpu_s\":%.4f,\"load_cpu_s\":%.4f}\n",
           (intmax_t)st.st_size, n_records, n_fields, n_rows, n_cols, reps, median(t_tok, reps),
           median(t_inf, reps), median(t_load, reps), median(c_tok, reps), median(c_inf, reps),
           median(c_load, reps));
    return 0;
}
