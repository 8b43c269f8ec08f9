/* bench_dpnoise.c - cost of DP's samplers (crypto/fv_dpnoise.h), each against the raw
 * ChaCha20 keystream of the same number of bytes, measured in the same run. Prints one
 * JSON line.
 *
 * Cases: fv_dp_gauss_add_f32 on N floats (DP-SGD's noise: ~4.2 keystream bytes per float),
 * fv_dp_dgauss_add_u32 at sigma2 = 2^20 and 2^40 (distributed mode's noise: the bytes it
 * used are read off the stream's position), fv_dp_poisson at q = 0.01 (~1 byte per row).
 * For each: ns per sample (best of REPS), the keystream's ns for the same bytes
 * (libsodium crypto_stream_chacha20_ietf, best of REPS, each of its runs right after one of
 * the sampler's so both see the same load) and their ratio. Times are the thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID): the development host is shared, and wall time there counts
 * other processes' slices. Timings belong here, not in the unit tests.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "fv_blas.h"
#include "fv_dpnoise.h"

#define NF ((size_t)1 << 20) /* floats */
#define NZ ((size_t)1 << 18) /* discrete Gaussian samples */
#define REPS 9

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const uint8_t key[32] = {1, 2, 3, 4, 5, 6, 7, 8};
static uint8_t *ks;
static volatile uint32_t sink;

/* seconds for the raw keystream of len bytes, once */
static double keystream_s(size_t len)
{
    static const uint8_t nonce[12] = {2};
    double t0 = now_s();
    crypto_stream_chacha20_ietf(ks, len, nonce, key);
    double dt = now_s() - t0;
    sink += ks[len - 1];
    return dt;
}

static double min2(double a, double b)
{
    return a < b ? a : b;
}

static size_t used_bytes(const fv_dp_stream_t *s)
{
    return (size_t)(s->block * 64 - (sizeof s->buf - s->pos));
}

static void report(const char *name, double s, double ks_s, size_t n, size_t bytes, int last)
{
    printf("\"%s\": {\"ns_per_sample\": %.2f, \"keystream_ns_per_sample\": %.2f, "
           "\"bytes_per_sample\": %.2f, \"ratio\": %.2f}%s",
           name, 1e9 * s / (double)n, 1e9 * ks_s / (double)n, (double)bytes / (double)n, s / ks_s,
           last ? "" : ", ");
}

int main(void)
{
    char machine[384];
    fprintf(stderr, "machine: %s\n", fv_machine_line(machine, sizeof machine));
    fv_dp_stream_t s;
    float *f = calloc(NF, sizeof *f);
    uint32_t *u = calloc(NZ, sizeof *u);
    size_t *idx = malloc(NF * sizeof *idx);

    if (sodium_init() < 0 || !f || !u || !idx || !(ks = malloc(NF * 8))) {
        fprintf(stderr, "bench_dpnoise: setup failed\n");
        return 1;
    }
    printf("{\"bench\": \"dpnoise\", \"floats\": %zu, \"dgauss_samples\": %zu, \"reps\": %d, ", NF,
           NZ, REPS);

    double best = 1e30, ksb = 1e30;
    size_t bytes = 0;
    for (int r = 0; r < REPS; r++) {
        fv_dp_stream_init(&s, key, FV_DP_DOMAIN_NOISE, (uint64_t)r);
        double t0 = now_s();
        fv_dp_gauss_add_f32(&s, 1.0, f, NF);
        double dt = now_s() - t0;
        bytes = used_bytes(&s);
        sink += (uint32_t)f[NF / 2];
        best = min2(best, dt);
        ksb = min2(ksb, keystream_s(bytes));
    }
    report("gauss_add_f32", best, ksb, NF, bytes, 0);

    static const uint64_t sig[2] = {UINT64_C(1) << 20, UINT64_C(1) << 40};
    static const char *names[2] = {"dgauss_2^20", "dgauss_2^40"};
    for (int k = 0; k < 2; k++) {
        best = ksb = 1e30;
        for (int r = 0; r < REPS; r++) {
            fv_dp_stream_init(&s, key, FV_DP_DOMAIN_DDG, (uint64_t)r);
            double t0 = now_s();
            fv_dp_dgauss_add_u32(&s, sig[k], u, NZ);
            double dt = now_s() - t0;
            bytes = used_bytes(&s);
            sink += u[NZ / 2];
            best = min2(best, dt);
            ksb = min2(ksb, keystream_s(bytes));
        }
        report(names[k], best, ksb, NZ, bytes, 0);
    }

    best = ksb = 1e30;
    for (int r = 0; r < REPS; r++) {
        fv_dp_stream_init(&s, key, FV_DP_DOMAIN_SAMPLE, (uint64_t)r);
        double t0 = now_s();
        size_t m = fv_dp_poisson(&s, 0.01, NF, idx);
        double dt = now_s() - t0;
        bytes = used_bytes(&s);
        sink += (uint32_t)m;
        best = min2(best, dt);
        ksb = min2(ksb, keystream_s(bytes));
    }
    report("poisson_q0.01", best, ksb, NF, bytes, 1);
    printf("}\n");
    fv_dp_stream_wipe(&s);
    free(f);
    free(u);
    free(idx);
    free(ks);
    return 0;
}
