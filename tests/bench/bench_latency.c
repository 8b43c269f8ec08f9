/* bench_latency.c - batch-1 scoring of the main job's student and teacher (issue 20).
 *
 * usage: bench_latency [N_IN] [SECONDS]   -> a few lines of text, then one JSON line
 * N_IN (default 119, the Lending Club job's encoded width): inputs of both networks; the
 * teacher is the job's mlp:128,64, the student its distill section's mlp:4 (binary, so one
 * output and a sigmoid), both with fv_mlp_init weights. SECONDS (default 0.5): time spent
 * on each measurement.
 *
 * Timing: fv_mlp_predict on one row, walking through 1024 pseudo-random rows
 * (fv_latency_rows), one workspace, one thread. Calls are timed in blocks of K calls per
 * pair of CLOCK_MONOTONIC reads, K doubled until one block lasts >= 20 us, so the clock's
 * own ~20-50 ns do not count; each figure is the median over the blocks of the time per
 * call, with the fastest and slowest block beside it. The same timer runs two references
 * in the same run: a plain C loop over the 119 x 4 multiply-adds of the student's only
 * hidden layer (what the student cannot beat by much), and memcpy of one encoded row.
 * It also prints what fv_mlp_latency (the compression report's measure) says for both.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fv_blas.h"
#include "fv_latency.h"
#include "fv_mlp.h"

#define ROWS 1024
#define MAX_BLOCKS 100000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_latency: %s: %s (%d)\n", what, fv_err_name(r), r);
    exit(1);
}

typedef struct job {
    const fv_mlp_t *m;
    fv_mlp_ws_t *ws;
    const float *x; /* ROWS x n_in */
    size_t n_in;
    const float *w; /* reference loop: n_in x 4 */
    float out[16];
    volatile float sink;
} job_t;

typedef void (*call_fn)(job_t *j, size_t row);

static void call_predict(job_t *j, size_t row)
{
    int r = fv_mlp_predict(j->m, j->ws, j->x + row * j->n_in, 1, j->out);
    if (r != 0)
        die("fv_mlp_predict", r);
}

/* The student's hidden layer as a plain loop: 4 outputs, n_in multiply-adds each. */
static void call_dot(job_t *j, size_t row)
{
    const float *x = j->x + row * j->n_in;
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (size_t i = 0; i < j->n_in; i++) {
        a0 += x[i] * j->w[i * 4 + 0];
        a1 += x[i] * j->w[i * 4 + 1];
        a2 += x[i] * j->w[i * 4 + 2];
        a3 += x[i] * j->w[i * 4 + 3];
    }
    j->sink = a0 + a1 + a2 + a3;
}

static void call_copy(job_t *j, size_t row)
{
    float buf[512];
    size_t n = j->n_in < 512 ? j->n_in : 512;
    memcpy(buf, j->x + row * j->n_in, n * sizeof *buf);
    __asm__ volatile("" : : "r"(buf) : "memory");
    j->sink = buf[row % n];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stat3 {
    double med_ns, min_ns, max_ns;
    size_t k, blocks;
} stat3_t;

static stat3_t measure(call_fn f, job_t *j, double seconds, double *t)
{
    size_t row = 0, k = 1;
    for (double t0 = now_s(); now_s() - t0 < 0.02;) /* warm up: caches, pages, branches */
        for (size_t i = 0; i < 64; i++, row = (row + 1) % ROWS)
            f(j, row);
    for (;;) { /* size the block */
        double t0 = now_s();
        for (size_t i = 0; i < k; i++, row = (row + 1) % ROWS)
            f(j, row);
        if (now_s() - t0 >= 20e-6 || k >= ((size_t)1 << 24))
            break;
        k *= 2;
    }
    size_t nb = 0;
    double start = now_s();
    while (nb < MAX_BLOCKS && (nb < 31 || now_s() - start < seconds)) {
        double t0 = now_s();
        for (size_t i = 0; i < k; i++, row = (row + 1) % ROWS)
            f(j, row);
        t[nb++] = (now_s() - t0) / (double)k * 1e9;
    }
    qsort(t, nb, sizeof *t, cmp_double);
    stat3_t s = {nb % 2 ? t[nb / 2] : 0.5 * (t[nb / 2 - 1] + t[nb / 2]), t[0], t[nb - 1], k, nb};
    return s;
}

static fv_mlp_t *make(const char *spec, size_t n_in, uint64_t seed)
{
    fv_mlp_arch_t a;
    fv_diag_t d;
    fv_mlp_t *m = NULL;
    int r = fv_mlp_parse_arch(spec, n_in, 2, &a, &d);
    if (r != 0 || (r = fv_mlp_new(&a, &m)) != 0)
        die(spec, r);
    fv_mlp_init(m, seed);
    return m;
}

int main(int argc, char **argv)
{
    size_t n_in = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 119;
    double seconds = argc > 2 ? strtod(argv[2], NULL) : 0.5;
    if (n_in < 1 || n_in > 4096 || !(seconds > 0)) {
        fprintf(stderr, "usage: bench_latency [N_IN 1..4096] [SECONDS > 0]\n");
        return 2;
    }
    fv_blas_set_threads(1);
    char machine[512];
    printf("machine: %s\n", fv_machine_line(machine, sizeof machine));

    fv_mlp_t *student = make("mlp:4", n_in, 1), *teacher = make("mlp:128,64", n_in, 2);
    float *x = malloc(ROWS * n_in * sizeof *x);
    double *t = malloc(MAX_BLOCKS * sizeof *t);
    fv_mlp_ws_t *ws_s = NULL, *ws_t = NULL;
    int r;
    if (x == NULL || t == NULL)
        die("malloc", FV_ENOMEM);
    if ((r = fv_mlp_ws_new(student, 1, &ws_s)) != 0 || (r = fv_mlp_ws_new(teacher, 1, &ws_t)) != 0)
        die("fv_mlp_ws_new", r);
    fv_latency_rows(x, ROWS, n_in, 7);

    job_t js = {.m = student, .ws = ws_s, .x = x, .n_in = n_in, .w = fv_mlp_params_const(student)};
    job_t jt = {.m = teacher, .ws = ws_t, .x = x, .n_in = n_in};
    stat3_t s = measure(call_predict, &js, seconds, t);
    stat3_t te = measure(call_predict, &jt, seconds, t);
    stat3_t dot = measure(call_dot, &js, seconds, t);
    stat3_t cp = measure(call_copy, &js, seconds, t);

    /* fv_mlp_latency: the compression report's figure (its own method, fv_latency.h). */
    float *xb = malloc((size_t)FV_LATENCY_BIG_BATCH * n_in * sizeof *xb);
    if (xb == NULL)
        die("malloc", FV_ENOMEM);
    fv_latency_rows(xb, FV_LATENCY_BIG_BATCH, n_in, 7);
    fv_latency_t ls, lt;
    if ((r = fv_mlp_latency(student, xb, seconds, &ls)) != 0 ||
        (r = fv_mlp_latency(teacher, xb, seconds, &lt)) != 0)
        die("fv_mlp_latency", r);

    printf("batch 1, ns per call: median [fastest block, slowest block] (calls per block x "
           "blocks)\n");
    printf("  student mlp:4       %9.1f [%.1f, %.1f] (%zu x %zu)\n", s.med_ns, s.min_ns, s.max_ns,
           s.k, s.blocks);
    printf("  teacher mlp:128,64  %9.1f [%.1f, %.1f] (%zu x %zu)\n", te.med_ns, te.min_ns,
           te.max_ns, te.k, te.blocks);
    printf("  ref %zux4 dot loop  %9.1f [%.1f, %.1f]\n", n_in, dot.med_ns, dot.min_ns, dot.max_ns);
    printf("  ref memcpy row      %9.1f [%.1f, %.1f]\n", cp.med_ns, cp.min_ns, cp.max_ns);
    printf("  teacher / student   %9.1fx\n", te.med_ns / s.med_ns);
    printf("fv_mlp_latency (the report's): student %.1f ns, teacher %.1f ns (%.1fx); "
           "batch 1024: %.1f us, %.1f us\n",
           ls.batch1_us * 1e3, lt.batch1_us * 1e3, lt.batch1_us / ls.batch1_us, ls.batch1024_us,
           lt.batch1024_us);
    printf("{\"n_in\": %zu, \"student_ns\": %.2f, \"teacher_ns\": %.2f, \"speedup\": %.2f, "
           "\"dot_ref_ns\": %.2f, \"memcpy_ref_ns\": %.2f, \"report_student_ns\": %.2f, "
           "\"report_teacher_ns\": %.2f}\n",
           n_in, s.med_ns, te.med_ns, te.med_ns / s.med_ns, dot.med_ns, cp.med_ns,
           ls.batch1_us * 1e3, lt.batch1_us * 1e3);
    fv_mlp_ws_free(ws_s);
    fv_mlp_ws_free(ws_t);
    fv_mlp_free(student);
    fv_mlp_free(teacher);
    free(x);
    free(xb);
    free(t);
    return 0;
}
