/* bench_sgemm.c - OpenBLAS sgemm throughput through fv_gemm, the reference "peak" that
 * training throughput is reported against.
 *
 * usage: bench_sgemm THREADS [N] [REPS]   -> one JSON line {"n":..,"threads":..,"gflops":..}
 * Square N x N x N products (default 1024), best of REPS (default 10) after one warm-up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fv_blas.h"
#include "fv_rng.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    size_t n = argc > 2 ? (size_t)atol(argv[2]) : 1024;
    int reps = argc > 3 ? atoi(argv[3]) : 10;
    if (threads < 1 || n < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_sgemm THREADS [N] [REPS]\n");
        return 2;
    }
    fv_blas_set_threads(threads);
    float *a = malloc(n * n * sizeof *a), *b = malloc(n * n * sizeof *b),
          *c = malloc(n * n * sizeof *c);
    if (!a || !b || !c)
        return 1;
    fv_rng_t r;
    fv_rng_seed(&r, 1);
    for (size_t i = 0; i < n * n; i++) {
        a[i] = (float)fv_rng_uniform(&r) - 0.5f;
        b[i] = (float)fv_rng_uniform(&r) - 0.5f;
    }
    fv_gemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        fv_gemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t = now_s() - t0;
        if (t < best)
            best = t;
    }
    char machine[384];
    printf(
        "{\"n\": %zu, \"threads\": %d, \"core\": \"%s\", \"gflops\": %.3f, \"machine\": \"%s\"}\n",
        n, threads, fv_blas_core_name(), 2.0 * (double)n * (double)n * (double)n / best * 1e-9,
        fv_machine_line(machine, sizeof machine));
    free(a);
    free(b);
    free(c);
    return 0;
}
