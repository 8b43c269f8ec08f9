/* bench_fixed.c - throughput of the fixed-point kernels on vectors far larger than the
 * caches, against a plain copy of the same number of 32-bit words measured in the same run
 * (the memory-bandwidth yardstick: mod_add streams two arrays in and one out, the copy one
 * in and one out).
 *
 * usage: bench_fixed [N] [REPS]   -> one JSON line, throughputs in G elements/s
 * N elements (default 100,000,000, 400 MB per array, four arrays), best of REPS (default
 * 5) after one warm-up run of each kernel. The mask keystream is a counter, so that
 * number is the cost of the fused block loop and the accumulator traffic, not of a PRG.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fv_blas.h"
#include "fv_fixed.h"
#include "fv_rng.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
    uint32_t next;
} counter_t;

static int counter_stream(void *state, uint32_t *out, size_t n)
{
    counter_t *c = state;
    for (size_t i = 0; i < n; i++)
        out[i] = c->next + (uint32_t)i;
    c->next += (uint32_t)n;
    return 0;
}

enum { K_COPY, K_MOD_ADD, K_QUANTIZE, K_MASK, N_KERNELS };
static const char *const names[N_KERNELS] = {"copy", "mod_add", "quantize", "mask_accumulate"};

typedef struct {
    size_t n;
    uint32_t *a, *b;
    float *x, *u;
} arrays_t;

static int run(int kernel, arrays_t *ar)
{
    switch (kernel) {
    case K_COPY:
        memcpy(ar->b, ar->a, ar->n * sizeof *ar->a);
        return 0;
    case K_MOD_ADD:
        fv_mod_add(ar->n, ar->a, ar->b);
        return 0;
    case K_QUANTIZE:
        return fv_fixed_quantize(ar->n, ar->x, ar->u, 1.0f, 16, ar->a);
    case K_MASK: {
        counter_t c = {1};
        return fv_mask_accumulate(ar->b, ar->n, 1, counter_stream, &c);
    }
    default:
        return -1;
    }
}

int main(int argc, char **argv)
{
    char machine[384];
    fprintf(stderr, "machine: %s\n", fv_machine_line(machine, sizeof machine));
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 100000000;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (n < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_fixed [N] [REPS]\n");
        return 2;
    }
    arrays_t ar = {.n = n};
    ar.a = malloc(n * sizeof *ar.a);
    ar.b = malloc(n * sizeof *ar.b);
    ar.x = malloc(n * sizeof *ar.x);
    ar.u = malloc(n * sizeof *ar.u);
    if (!ar.a || !ar.b || !ar.x || !ar.u) {
        fprintf(stderr, "bench_fixed: out of memory for N=%zu\n", n);
        return 1;
    }
    fv_rng_t r;
    fv_rng_seed(&r, 1);
    for (size_t i = 0; i < n; i++) { /* also faults every page in before timing */
        uint64_t w = fv_rng_next(&r);
        ar.a[i] = (uint32_t)w;
        ar.b[i] = (uint32_t)(w >> 32);
        ar.x[i] = (float)((int32_t)(w >> 8) % 30000) * 1e-4f; /* [-3, 3], clips at 1 */
        ar.u[i] = (float)(w >> 40) * 0x1p-24f;
    }
    double best[N_KERNELS];
    for (int k = 0; k < N_KERNELS; k++) {
        if (run(k, &ar) != 0) {
            fprintf(stderr, "bench_fixed: %s failed\n", names[k]);
            return 1;
        }
        best[k] = 1e30;
        for (int i = 0; i < reps; i++) {
            double t0 = now_s();
            int err = run(k, &ar);
            double t = now_s() - t0;
            if (err != 0) {
                fprintf(stderr, "bench_fixed: %s failed\n", names[k]);
                return 1;
            }
            if (t < best[k])
                best[k] = t;
        }
    }
    uint32_t check = ar.a[n / 2] ^ ar.b[n - 1]; /* keep the results observable */
    printf("{\"n\": %zu, \"reps\": %d", n, reps);
    for (int k = 0; k < N_KERNELS; k++)
        printf(", \"%s_gelem_s\": %.3f", names[k], (double)n / best[k] * 1e-9);
    printf(", \"mod_add_vs_copy\": %.3f, \"check\": %u}\n", best[K_COPY] / best[K_MOD_ADD],
           (unsigned)check);
    free(ar.a);
    free(ar.b);
    free(ar.x);
    free(ar.u);
    return 0;
}
