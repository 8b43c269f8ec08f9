/* test_latency.c - in-process scoring latency (model/fv_latency.h).
 *
 * Only the contract, never a speed: both batch sizes are timed, medians are positive and
 * finite, FV_LATENCY_MIN_BLOCKS..FV_LATENCY_MAX_BLOCKS blocks of 1..FV_LATENCY_MAX_PER_BLOCK
 * calls stand behind each median (calls = blocks x calls per block), arguments are
 * checked, and the row pattern is fixed by its seed and stays in [-2, 2).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_test.h"

#include "fv_latency.h"
#include "fv_mlp.h"

static void test_rows(void)
{
    enum { N = 64, F = 7 };
    float a[N * F], b[N * F], c[N * F];
    fv_latency_rows(a, N, F, 42);
    fv_latency_rows(b, N, F, 42);
    fv_latency_rows(c, N, F, 43);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    double lo = 2, hi = -2;
    for (size_t i = 0; i < N * F; i++) {
        CHECK(a[i] >= -2.0f && a[i] < 2.0f);
        lo = a[i] < lo ? a[i] : lo;
        hi = a[i] > hi ? a[i] : hi;
    }
    CHECK(lo < -1.5 && hi > 1.5); /* spread over the range, not a constant */
    fv_latency_rows(a, N, F, 0);  /* seed 0 is allowed (a fixed non-zero state) */
    CHECK(isfinite(a[0]));
}

static void test_measure(const char *spec, size_t n_in)
{
    fv_mlp_arch_t arch;
    fv_mlp_t *m = NULL;
    fv_diag_t d;
    CHECK_OK(fv_mlp_parse_arch(spec, n_in, 2, &arch, &d), &d);
    CHECK_OK(fv_mlp_new(&arch, &m), NULL);
    fv_mlp_init(m, 1);
    float *x = malloc((size_t)FV_LATENCY_BIG_BATCH * n_in * sizeof *x);
    CHECK(x != NULL);
    fv_latency_rows(x, FV_LATENCY_BIG_BATCH, n_in, 7);
    fv_latency_t lat;
    memset(&lat, 0, sizeof lat);
    CHECK_OK(fv_mlp_latency(m, x, 0.01, &lat), NULL);
    CHECK(isfinite(lat.batch1_us) && lat.batch1_us > 0);
    CHECK(isfinite(lat.batch1024_us) && lat.batch1024_us > 0);
    CHECK(lat.blocks1 >= FV_LATENCY_MIN_BLOCKS && lat.blocks1 <= FV_LATENCY_MAX_BLOCKS);
    CHECK(lat.blocks1024 >= FV_LATENCY_MIN_BLOCKS && lat.blocks1024 <= FV_LATENCY_MAX_BLOCKS);
    CHECK(lat.per_block1 >= 1 && lat.per_block1 <= FV_LATENCY_MAX_PER_BLOCK);
    CHECK(lat.per_block1024 >= 1 && lat.per_block1024 <= FV_LATENCY_MAX_PER_BLOCK);
    CHECK(lat.calls1 == lat.blocks1 * lat.per_block1);
    CHECK(lat.calls1024 == lat.blocks1024 * lat.per_block1024);
    /* the block size is a power of two (doubled from 1) */
    CHECK((lat.per_block1 & (lat.per_block1 - 1)) == 0);
    CHECK((lat.per_block1024 & (lat.per_block1024 - 1)) == 0);
    /* refused arguments leave *ret alone */
    fv_latency_t keep = lat;
    CHECK_INT_EQ(fv_mlp_latency(m, x, 0, &lat), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_latency(m, x, NAN, &lat), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_latency(NULL, x, 0.01, &lat), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_latency(m, NULL, 0.01, &lat), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_latency(m, x, 0.01, NULL), FV_EINVAL);
    CHECK(memcmp(&keep, &lat, sizeof lat) == 0);
    free(x);
    fv_mlp_free(m);
}

int main(void)
{
    test_rows();
    test_measure("logreg", 5);
    test_measure("mlp:8,4", 12);
    printf("test_latency: ok\n");
    return 0;
}
