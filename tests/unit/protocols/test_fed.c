/* test_fed.c - federated-round arithmetic (protocols/fed.c).
 *
 * Every encoding is checked the way the coordinator uses it: several agents encode, the
 * words are summed mod 2^32 (what SecAgg delivers), the sum is decoded and compared with
 * a reference computed on the pooled data. Tolerances:
 *   exact encoding   bit-exact against an independent 128-bit sum of round(x * 2^32);
 *   stats moments    counts exact; sums / sums of squares within 1e-9 relative of the
 *                    pooled double moments (these differ only by double rounding order);
 *   fixed encoding   within fv_fed_quant_bound of the float64 weighted mean;
 *   server opt       within 1e-5 of a double-precision reference (the global model is
 *                    float in the implementation and rounds once per step).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_dataset.h"
#include "fv_fed.h"
#include "fv_fixed.h"
#include "fv_job.h"
#include "fv_metrics.h"
#include "fv_preproc.h"
#include "fv_schema.h"
#include "fv_secagg.h"
#include "fv_test.h"

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

/* The reference conversion of an exact sum: sign and magnitude halves, so it is exact
 * whenever the value fits the mantissa, even where long double arithmetic is carried at
 * double precision (valgrind's x87 emulation: a direct __int128 conversion of -1 gives 0
 * there). */
static long double i128_to_ld(i128 v)
{
    bool neg = v < 0;
    u128 mag = neg ? -(u128)v : (u128)v;
    long double r = (long double)(uint64_t)(mag >> 64) * 0x1p64L + (long double)(uint64_t)mag;
    return neg ? -r : r;
}

/* Whether long double arithmetic has more than double's 53 bits here (x86-64: 64 bits;
 * under valgrind: 53). */
static bool ld_is_extended(void)
{
    volatile long double one = 1.0L, eps = 0x1p-60L;
    return (one + eps) - one == eps;
}

/* splitmix64: test-only randomness, independent of the code under test */
static uint64_t sm_state = 0x1234567;
static uint64_t sm_next(void)
{
    uint64_t z = (sm_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}
static double sm_unif(void) /* [0, 1) */
{
    return (double)(sm_next() >> 11) * 0x1p-53;
}

static void add_words(uint32_t *acc, const uint32_t *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += x[i];
}

/* ---- exact ---------------------------------------------------------------------------- */

static void test_exact_known_answers(void)
{
    uint32_t w[8];
    CHECK_OK(fv_fed_exact_encode(1.0, w), NULL);
    const uint32_t one[8] = {0, 0, 1, 0, 0, 0, 0, 0};
    CHECK(memcmp(w, one, sizeof(w)) == 0);
    CHECK_OK(fv_fed_exact_encode(-1.0, w), NULL); /* 2^128 - 2^32 */
    const uint32_t mone[8] = {0, 0, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff};
    CHECK(memcmp(w, mone, sizeof(w)) == 0);
    CHECK_OK(fv_fed_exact_encode(0x1p-33, w), NULL); /* 0.5 rounds away from zero: 1 */
    const uint32_t tiny[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    CHECK(memcmp(w, tiny, sizeof(w)) == 0);
    CHECK_OK(fv_fed_exact_encode(-0x1p-33, w), NULL); /* -1: all ones */
    for (int i = 0; i < 8; i++)
        CHECK_UINT_EQ(w[i], 0xffff);
    CHECK(fv_fed_exact_decode(w) == -0x1p-32L);
    CHECK_OK(fv_fed_exact_encode(0x1p-34, w), NULL); /* 0.25 rounds to 0 */
    for (int i = 0; i < 8; i++)
        CHECK_UINT_EQ(w[i], 0);
    CHECK_OK(fv_fed_exact_encode(-0.0, w), NULL);
    CHECK(fv_fed_exact_decode(w) == 0.0L);
    CHECK_OK(fv_fed_exact_encode(0x1.8p-1, w), NULL); /* 0.75 */
    CHECK(fv_fed_exact_decode(w) == 0.75L);
    /* limits */
    CHECK_INT_EQ(fv_fed_exact_encode(0x1p79, w), FV_ERANGE);
    CHECK_INT_EQ(fv_fed_exact_encode(-0x1p79, w), FV_ERANGE);
    CHECK_INT_EQ(fv_fed_exact_encode(INFINITY, w), FV_ERANGE);
    CHECK_INT_EQ(fv_fed_exact_encode(-INFINITY, w), FV_ERANGE);
    CHECK_INT_EQ(fv_fed_exact_encode(NAN, w), FV_ERANGE);
    CHECK_OK(fv_fed_exact_encode(nextafter(0x1p79, 0), w), NULL);
    CHECK_OK(fv_fed_exact_encode(-nextafter(0x1p79, 0), w), NULL);
}

/* Reference fixed point of moderate x (|x| < 2^30), by a different route: llround. */
static int64_t ref_fixed(double x)
{
    return llround(x * 4294967296.0);
}

static void test_exact_many_agents(void)
{
    /* The most agents there can be, values of mixed sign and magnitude (|x| < 2^14 so the
     * long double running sum of the fixed-point values is exact: |S| < 2^62 units). */
    const uint32_t n = FV_FED_MAX_AGENTS;
    uint32_t acc[8] = {0}, w[8];
    i128 ref = 0;
    long double ref_ld = 0;
    for (uint32_t k = 0; k < n; k++) {
        double mag = ldexp(1.0, (int)(sm_next() % 60) - 46); /* 2^-46 .. 2^13 */
        double x = (sm_unif() * 2 - 1) * mag;
        if (k % 1000 == 0)
            x = -(double)(2 * k + 1) * 0x1p-33; /* exactly -(k + 1/2) units: ties */
        CHECK_OK(fv_fed_exact_encode(x, w), NULL);
        add_words(acc, w, 8);
        int64_t X = ref_fixed(x);
        ref += X;
        ref_ld += (long double)X * 0x1p-32L;
    }
    long double got = fv_fed_exact_decode(acc);
    CHECK(got == i128_to_ld(ref) * 0x1p-32L);
    if (ld_is_extended())
        CHECK(got == ref_ld);
    else /* long double carried at double precision: the running sum rounds */
        CHECK(fabsl(got - ref_ld) <= 0x1p-50L * fabsl(ref_ld));

    /* All-negative: every limb of every addend is large (two's complement). */
    memset(acc, 0, sizeof(acc));
    ref = 0;
    for (uint32_t k = 0; k < 1000; k++) {
        double x = -sm_unif() * 1e6;
        CHECK_OK(fv_fed_exact_encode(x, w), NULL);
        add_words(acc, w, 8);
        ref += ref_fixed(x);
    }
    CHECK(fv_fed_exact_decode(acc) == i128_to_ld(ref) * 0x1p-32L);
    CHECK(ref < 0);

    /* Cancellation to exactly zero. */
    memset(acc, 0, sizeof(acc));
    for (uint32_t k = 0; k < 100; k++) {
        double x = (sm_unif() - 0.5) * 1e9;
        CHECK_OK(fv_fed_exact_encode(x, w), NULL);
        add_words(acc, w, 8);
        CHECK_OK(fv_fed_exact_encode(-x, w), NULL);
        add_words(acc, w, 8);
    }
    CHECK(fv_fed_exact_decode(acc) == 0.0L);
}

static void test_exact_limits(void)
{
    /* 65535 agents at the largest encodable value, both signs: X = 2^111 - 2^58, the sum
     * 65535 X is below 2^127 and must not wrap. */
    const double xmax = nextafter(0x1p79, 0); /* 2^79 - 2^26 */
    const i128 X = ((i128)1 << 111) - ((i128)1 << 58);
    const i128 S_pos = (i128)FV_FED_MAX_AGENTS * X;
    for (int neg = 0; neg < 2; neg++) {
        uint32_t acc[8] = {0}, w[8];
        CHECK_OK(fv_fed_exact_encode(neg ? -xmax : xmax, w), NULL);
        for (uint32_t k = 0; k < FV_FED_MAX_AGENTS; k++)
            add_words(acc, w, 8);
        i128 S = neg ? -S_pos : S_pos;
        long double got = fv_fed_exact_decode(acc);
        CHECK(got == i128_to_ld(S) * 0x1p-32L);
        CHECK(neg ? got < -0x1p94L : got > 0x1p94L);
    }
    /* Mixed: one huge value and many tiny ones (the tiny ones survive in the 128-bit sum,
     * and the long double conversion rounds once). */
    uint32_t acc[8] = {0}, w[8];
    CHECK_OK(fv_fed_exact_encode(0x1p60, w), NULL);
    add_words(acc, w, 8);
    CHECK_OK(fv_fed_exact_encode(-0x1p60, w), NULL);
    add_words(acc, w, 8);
    CHECK_OK(fv_fed_exact_encode(0x1p-32, w), NULL);
    add_words(acc, w, 8);
    CHECK(fv_fed_exact_decode(acc) == 0x1p-32L);
}

/* ---- stats ---------------------------------------------------------------------------- */

static double rel_err(double a, double b)
{
    double m = fmax(fabs(a), fabs(b));
    return m == 0 ? 0 : fabs(a - b) / m;
}

static void test_stats_german(void)
{
    char path[1024];
    fv_diag_t d = {{0}};
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    fv_schema_infer_opts_t o = {.target = "class", .positive = "bad"};
    fv_test_src("examples/data/german_credit.csv", path, sizeof(path));
    CHECK_OK(fv_schema_infer(path, &o, &s, &d), &d);
    CHECK_OK(fv_dataset_load(path, s, &ds, &d), &d);
    size_t N = ds->n_rows, nc = ds->n_cols;
    CHECK(N == 1000);

    fv_fed_stats_layout_t l;
    CHECK_OK(fv_fed_stats_layout_init(s, &l), NULL);
    CHECK_UINT_EQ(l.n_classes, 2);

    /* Three banks of unequal size, rows interleaved (not contiguous). */
    size_t *part[3], np[3] = {0, 0, 0};
    for (int b = 0; b < 3; b++)
        CHECK((part[b] = malloc(N * sizeof(size_t))) != NULL);
    for (size_t i = 0; i < N; i++) {
        int b = (i % 7 < 1) ? 0 : (i % 7 < 3) ? 1 : 2;
        part[b][np[b]++] = i;
    }
    uint32_t *acc = calloc(l.dim, sizeof(uint32_t)), *w = malloc(l.dim * sizeof(uint32_t));
    CHECK(acc != NULL && w != NULL);
    for (int b = 0; b < 3; b++) {
        CHECK_OK(fv_fed_stats_encode(&l, ds, part[b], np[b], w, &d), &d);
        /* one agent's vector, as the coordinator sees it without SecAgg: it checks */
        CHECK_OK(fv_fed_stats_check(&l, w, &d), &d);
        add_words(acc, w, l.dim);
    }
    {
        /* ... and every lie is refused, naming what: a count above the raw cap, a limb
         * above 16 bits, class counts not adding up, a mean square below the mean's
         * square (sum^2 > count * sumsq) */
        uint32_t *bad = malloc(l.dim * sizeof(uint32_t));
        CHECK(bad != NULL);
        CHECK_OK(fv_fed_stats_encode(&l, ds, part[0], np[0], w, &d), &d);
        memcpy(bad, w, l.dim * 4);
        bad[1] = FV_FED_RAW_MAX + 1;
        CHECK_INT_EQ(fv_fed_stats_check(&l, bad, &d), FV_EPEER);
        CHECK_CONTAINS(d.msg, "word 1 (a row count)");
        memcpy(bad, w, l.dim * 4);
        bad[1] += 1; /* class 0 one row more than the rows */
        CHECK_INT_EQ(fv_fed_stats_check(&l, bad, &d), FV_EPEER);
        CHECK_CONTAINS(d.msg, "class counts add up");
        size_t first = 1 + l.n_classes; /* the first column's words */
        size_t j0 = 0;
        while (fv_schema_column_type(s, j0) != FV_COL_NUMERIC) {
            first += fv_schema_column_type(s, j0) == FV_COL_CATEGORICAL
                         ? fv_schema_n_categories(s, j0) + 1
                         : 0;
            j0++;
        }
        memcpy(bad, w, l.dim * 4);
        bad[first + 1] = 0x10000; /* a limb of the column's sum */
        CHECK_INT_EQ(fv_fed_stats_check(&l, bad, &d), FV_EPEER);
        CHECK_CONTAINS(d.msg, "16-bit limb");
        memcpy(bad, w, l.dim * 4);
        for (int k = 0; k < FV_FED_EXACT_WORDS; k++) /* sum of squares := 0 */
            bad[first + 1 + FV_FED_EXACT_WORDS + k] = 0;
        CHECK_INT_EQ(fv_fed_stats_check(&l, bad, &d), FV_EPEER);
        CHECK_CONTAINS(d.msg, "not the moments");
        free(bad);
    }
    fv_fed_stats_t st;
    CHECK_OK(fv_fed_stats_decode(&l, acc, &st, &d), &d);

    /* Pooled references. */
    double *cnt = calloc(nc, sizeof(double)), *sum = calloc(nc, sizeof(double)),
           *sq = calloc(nc, sizeof(double));
    CHECK(cnt && sum && sq);
    fv_preproc_moments(ds, NULL, N, cnt, sum, sq);
    CHECK_UINT_EQ(st.n_rows, N);
    uint64_t cls[2] = {0, 0};
    for (size_t i = 0; i < N; i++)
        cls[ds->label[i]]++;
    CHECK_UINT_EQ(st.class_counts[0], cls[0]);
    CHECK_UINT_EQ(st.class_counts[1], cls[1]);
    CHECK_UINT_EQ(cls[1], 300); /* german credit: 300 bad */
    size_t c = 0, n_numeric = 0;
    for (size_t j = 0; j < nc; j++) {
        fv_col_type_t t = fv_schema_column_type(s, j);
        if (t == FV_COL_NUMERIC) {
            n_numeric++;
            CHECK(st.count[j] == cnt[j]);
            if (!(rel_err(st.sum[j], sum[j]) <= 1e-9 && rel_err(st.sumsq[j], sq[j]) <= 1e-9))
                FV__FAIL("column %zu: sum %.17g vs %.17g, sumsq %.17g vs %.17g", j, st.sum[j],
                         sum[j], st.sumsq[j], sq[j]);
        } else {
            CHECK(st.count[j] == 0 && st.sum[j] == 0 && st.sumsq[j] == 0);
        }
        if (t == FV_COL_CATEGORICAL) {
            size_t nk = fv_schema_n_categories(s, j);
            for (size_t k = 0; k <= nk; k++) {
                uint64_t ref = 0;
                for (size_t i = 0; i < N; i++) {
                    double v = ds->cells[i * nc + j];
                    ref += k < nk ? v == (double)k : v == FV_CELL_OTHER;
                }
                CHECK_UINT_EQ(st.category_counts[c + k], ref);
            }
            c += nk + 1;
        }
    }
    CHECK_UINT_EQ(c, st.n_category_counts);
    CHECK(n_numeric >= 5);

    /* The global standardization from the secure sum equals the pooled fit. */
    fv_preproc_t *pf = NULL, *pm = NULL;
    CHECK_OK(fv_preproc_fit(ds, NULL, N, &pf), NULL);
    CHECK_OK(fv_preproc_from_moments(s, st.count, st.sum, st.sumsq, &pm), NULL);
    CHECK_UINT_EQ(fv_preproc_n_features(pf), fv_preproc_n_features(pm));
    for (size_t j = 0; j < nc; j++) {
        if (fv_schema_column_type(s, j) != FV_COL_NUMERIC)
            continue;
        double m1 = fv_preproc_mean(pf, j), m2 = fv_preproc_mean(pm, j);
        double s1 = fv_preproc_std(pf, j), s2 = fv_preproc_std(pm, j);
        CHECK_NEAR(m2, m1, 1e-9 * fmax(1, fabs(m1)));
        CHECK_NEAR(s2, s1, 1e-9 * fmax(1, fabs(s1)));
    }
    fv_preproc_free(pf);
    fv_preproc_free(pm);

    /* A corrupt sum (one class count off) is refused. */
    acc[1]++;
    fv_fed_stats_t bad;
    CHECK_INT_EQ(fv_fed_stats_decode(&l, acc, &bad, &d), FV_EPROTO);
    acc[1]--;

    /* Raw-count cap: 65537 rows (repeats allowed) pass, 65538 do not. */
    size_t *many = calloc(FV_FED_RAW_MAX + 1, sizeof(size_t));
    CHECK(many != NULL);
    CHECK_OK(fv_fed_stats_encode(&l, ds, many, FV_FED_RAW_MAX, w, &d), &d);
    CHECK_UINT_EQ(w[0], FV_FED_RAW_MAX);
    CHECK_INT_EQ(fv_fed_stats_encode(&l, ds, many, FV_FED_RAW_MAX + 1, w, &d), FV_EOVERFLOW);
    CHECK_CONTAINS(d.msg, "65537");
    many[0] = N; /* out of range row index */
    CHECK_INT_EQ(fv_fed_stats_encode(&l, ds, many, 2, w, &d), FV_EINVAL);
    free(many);

    /* rows == NULL means all rows: same words as the sum of the parts' raw counts. */
    CHECK_OK(fv_fed_stats_encode(&l, ds, NULL, 0, w, &d), &d);
    CHECK_UINT_EQ(w[0], N);

    fv_fed_stats_close(&st);
    fv_fed_stats_close(NULL);
    free(cnt);
    free(sum);
    free(sq);
    free(acc);
    free(w);
    for (int b = 0; b < 3; b++)
        free(part[b]);
    fv_dataset_free(ds);
    fv_schema_free(s);
}

/* ---- round ---------------------------------------------------------------------------- */

static void test_layout(void)
{
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, 10, 1, 4, 0);
    CHECK_UINT_EQ(l.off_params, 0);
    CHECK_UINT_EQ(l.off_n_train, 10);
    CHECK_UINT_EQ(l.off_hist_pos, 11);
    CHECK_UINT_EQ(l.off_hist_neg, 15);
    CHECK_UINT_EQ(l.off_loss, 19);
    CHECK_UINT_EQ(l.off_n_val, 27);
    CHECK_UINT_EQ(l.dim, 28);
    fv_fed_layout_init(&l, 0, 1, 0, 0);
    CHECK_UINT_EQ(l.dim, 10);
}

#define P 2500 /* more than one 1024-parameter strip, not a multiple of it */
#define B 50
#define AGENTS 5

static void test_round_bound(uint32_t bits)
{
    const float clip = 0.5f;
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, P, 1, B, 0);
    uint32_t *acc = calloc(l.dim, sizeof(uint32_t)), *w = malloc(l.dim * sizeof(uint32_t));
    float *delta = malloc(AGENTS * P * sizeof(float));
    double *ref = calloc(P, sizeof(double));
    uint64_t hp[AGENTS][B], hn[AGENTS][B], tp[B] = {0}, tn[B] = {0};
    uint32_t n_train[AGENTS];
    double n_ref = 0, wsum = 0, loss_ref = 0;
    uint64_t nval_ref = 0;
    CHECK(acc && w && delta && ref);
    for (int k = 0; k < AGENTS; k++) {
        n_train[k] = 100 + (uint32_t)(sm_next() % 900);
        n_ref += n_train[k];
    }
    n_ref += 123; /* an agent of the job that dropped out this round */
    fv_diag_t d = {{0}};
    for (int k = 0; k < AGENTS; k++) {
        double wk = n_train[k] / n_ref;
        wsum += wk;
        for (size_t i = 0; i < P; i++) {
            /* |w delta| <= clip; a tenth of the elements sit near the clip itself */
            double a =
                (i % 10 == 0 ? (sm_unif() < 0.5 ? -0.999 : 0.999) : 2 * sm_unif() - 1) * clip;
            delta[k * P + i] = (float)(a / wk);
            ref[i] += wk * (double)delta[k * P + i];
        }
        /* validation: scores and labels, histograms, loss */
        uint32_t nv = 20 + (uint32_t)(sm_next() % 50);
        float sc[80];
        int32_t y[80];
        double loss = 0;
        for (uint32_t i = 0; i < nv; i++) {
            y[i] = sm_unif() < 0.3;
            sc[i] = (float)fmin(1, fmax(0, (y[i] ? 0.3 : 0.0) + 0.7 * sm_unif()));
            loss += -log(y[i] ? fmax(sc[i], 1e-7) : fmax(1 - sc[i], 1e-7));
        }
        memset(hp[k], 0, sizeof(hp[k]));
        memset(hn[k], 0, sizeof(hn[k]));
        fv_metrics_hist_add(sc, y, nv, B, hp[k], hn[k]);
        fv_metrics_hist_add(sc, y, nv, B, tp, tn);
        loss_ref += loss;
        nval_ref += nv;

        fv_fed_local_t in = {.delta = delta + k * P,
                             .n_train = n_train[k],
                             .n_ref = n_ref,
                             .hist_pos = hp[k],
                             .hist_neg = hn[k],
                             .loss_sum = loss,
                             .n_val = nv};
        fv_rand_t rng;
        fv_rand_seeded_u64(&rng, 1000 + k + 100 * bits);
        CHECK_OK(fv_fed_encode(&l, &in, clip, bits, &rng, w, &d), &d);
        add_words(acc, w, l.dim);

        if (k == 0) {
            /* the draw is fv_secagg_quantize's: same rng state, same words */
            fv_secagg_params_t sp;
            memset(&sp, 0, sizeof(sp));
            sp.dim = P;
            sp.quant_bits = bits;
            sp.clip = clip;
            float x[P];
            uint32_t q[P];
            for (size_t i = 0; i < P; i++)
                x[i] = (float)(wk * (double)delta[i]);
            fv_rand_seeded_u64(&rng, 1000 + k + 100 * bits);
            CHECK_OK(fv_secagg_quantize(&sp, &rng, x, q), NULL);
            CHECK(memcmp(q, w, sizeof(q)) == 0);
        }
    }
    for (size_t i = 0; i < P; i++)
        ref[i] /= wsum;

    fv_fed_result_t r;
    CHECK_OK(fv_fed_decode(&l, acc, AGENTS, clip, bits, n_ref, &r, &d), &d);
    uint64_t ntr = 0;
    for (int k = 0; k < AGENTS; k++)
        ntr += n_train[k];
    CHECK_UINT_EQ(r.n_train, ntr);
    CHECK_NEAR(r.weight_sum, wsum, 1e-12);
    double bound = fv_fed_quant_bound(AGENTS, clip, bits, r.weight_sum);
    double step = (double)AGENTS * 2 * clip / (double)((UINT64_C(1) << bits) - 1) / wsum;
    CHECK(bound >= step && bound < step + AGENTS * clip * 0x1p-21 / wsum);
    double max_err = 0;
    for (size_t i = 0; i < P; i++) {
        double e = fabs((double)r.delta_mean[i] - ref[i]);
        if (!(e <= bound))
            FV__FAIL("bits %u element %zu: |%.9g - %.9g| = %.3g > bound %.3g", bits, i,
                     (double)r.delta_mean[i], ref[i], e, bound);
        max_err = fmax(max_err, e);
    }
    /* the bound is not vacuous: the error reaches a sizeable part of it */
    CHECK(max_err > bound / 20);

    for (size_t b = 0; b < B; b++) {
        CHECK_UINT_EQ(r.hist_pos[b], tp[b]);
        CHECK_UINT_EQ(r.hist_neg[b], tn[b]);
    }
    double auc, ap;
    CHECK_OK(fv_metrics_hist_roc_auc(tp, tn, B, &auc), NULL);
    CHECK_OK(fv_metrics_hist_pr_auc(tp, tn, B, &ap), NULL);
    CHECK(r.val_roc_auc == auc);
    CHECK(r.val_pr_auc == ap);
    CHECK_UINT_EQ(r.n_val, nval_ref);
    CHECK_NEAR(r.loss_sum, loss_ref, 1e-9 * loss_ref);
    CHECK_NEAR(r.val_log_loss, loss_ref / (double)nval_ref, 1e-9);

    /* distributed DP's centered decode: the same sum decodes to the same bits; integer
     * noise that takes a word below 0 (wrapping mod 2^32) or above n (2^bits - 1) decodes
     * to its signed value, the counts unchanged */
    fv_fed_result_t rc;
    CHECK_OK(fv_fed_decode_centered(&l, acc, AGENTS, clip, bits, n_ref, &rc, &d), &d);
    CHECK(memcmp(rc.delta_mean, r.delta_mean, P * sizeof(float)) == 0);
    fv_fed_result_close(&rc);
    const double qstep = 2.0 * clip / (double)((UINT64_C(1) << bits) - 1);
    const uint64_t top = (uint64_t)AGENTS * ((UINT64_C(1) << bits) - 1);
    acc[l.off_params] = (uint32_t)-5;                  /* 5 below 0 */
    acc[l.off_params + 1] = (uint32_t)(top + 9);       /* 9 above the top */
    acc[l.off_params + 2] = acc[l.off_params + 2] - 3; /* in range, shifted */
    uint32_t w2 = acc[l.off_params + 2];
    CHECK_OK(fv_fed_decode_centered(&l, acc, AGENTS, clip, bits, n_ref, &rc, &d), &d);
    CHECK_NEAR(rc.delta_mean[0], (-5.0 * qstep - AGENTS * clip) / wsum, 1e-6);
    CHECK_NEAR(rc.delta_mean[1], ((double)(top + 9) * qstep - AGENTS * clip) / wsum, 1e-6);
    CHECK_NEAR(rc.delta_mean[2], ((double)w2 * qstep - AGENTS * clip) / wsum, 1e-6);
    CHECK_UINT_EQ(rc.n_train, r.n_train);
    CHECK(rc.val_roc_auc == r.val_roc_auc);
    fv_fed_result_close(&rc);
    fv_fed_result_close(&r);
    fv_fed_result_close(NULL);

    free(acc);
    free(w);
    free(delta);
    free(ref);
}

static void test_round_errors(void)
{
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, 3, 1, 2, 0);
    float delta[3] = {0.1f, -0.2f, 0.3f};
    uint64_t hp[2] = {1, 2}, hn[2] = {3, 4};
    fv_fed_local_t in = {.delta = delta,
                         .n_train = 10,
                         .n_ref = 30,
                         .hist_pos = hp,
                         .hist_neg = hn,
                         .loss_sum = 1.5,
                         .n_val = 10};
    uint32_t w[64];
    fv_rand_t rng;
    fv_diag_t d = {{0}};
    fv_rand_seeded_u64(&rng, 7);
    uint64_t ctr = rng.counter;
    CHECK_INT_EQ(fv_fed_encode(&l, &in, 1.0f, 0, &rng, w, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_fed_encode(&l, &in, 1.0f, 32, &rng, w, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_fed_encode(&l, &in, 0.0f, 16, &rng, w, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_fed_encode(&l, &in, NAN, 16, &rng, w, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_fed_encode(&l, &in, INFINITY, 16, &rng, w, &d), FV_EINVAL);
    in.n_ref = 0;
    CHECK_INT_EQ(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), FV_EINVAL);
    in.n_ref = 30;
    in.n_train = FV_FED_RAW_MAX + 1;
    CHECK_INT_EQ(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), FV_EOVERFLOW);
    in.n_train = 10;
    in.n_val = FV_FED_RAW_MAX + 1;
    CHECK_INT_EQ(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), FV_EOVERFLOW);
    in.n_val = 10;
    hn[1] = FV_FED_RAW_MAX + 1;
    CHECK_INT_EQ(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), FV_EOVERFLOW);
    hn[1] = FV_FED_RAW_MAX;
    in.loss_sum = NAN;
    CHECK_INT_EQ(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), FV_ENUMERIC);
    in.loss_sum = 0x1p80;
    CHECK_INT_EQ(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), FV_ERANGE);
    in.loss_sum = 1.5;
    CHECK(rng.counter == ctr); /* refusals never draw */
    delta[1] = NAN;
    CHECK_INT_EQ(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), FV_ENUMERIC);
    delta[1] = -0.2f;
    in.hist_pos = NULL;
    CHECK_INT_EQ(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), FV_EINVAL);
    in.hist_pos = hp;
    CHECK_OK(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), &d);
    CHECK_UINT_EQ(w[l.off_n_train], 10);
    CHECK_UINT_EQ(w[l.off_hist_neg + 1], FV_FED_RAW_MAX);

    /* decode: n * (2^bits - 1) must stay below 2^32 */
    fv_fed_result_t r;
    CHECK_OK(fv_fed_decode(&l, w, 256, 1.0f, 24, 30, &r, &d), &d);
    fv_fed_result_close(&r);
    CHECK_INT_EQ(fv_fed_decode(&l, w, 257, 1.0f, 24, 30, &r, &d), FV_EOVERFLOW);
    CHECK_INT_EQ(fv_fed_decode(&l, w, 3, 1.0f, 31, 30, &r, &d), FV_EOVERFLOW);
    CHECK_OK(fv_fed_decode(&l, w, 2, 1.0f, 31, 30, &r, &d), &d); /* 2^32 - 2 */
    fv_fed_result_close(&r);
    CHECK_INT_EQ(fv_fed_decode(&l, w, FV_FED_MAX_AGENTS + 1, 1.0f, 1, 30, &r, &d), FV_EOVERFLOW);
    CHECK_INT_EQ(fv_fed_decode(&l, w, 0, 1.0f, 16, 30, &r, &d), FV_EEMPTY);
    CHECK_INT_EQ(fv_fed_decode(&l, w, 1, 1.0f, 16, 0, &r, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_fed_decode(&l, w, 1, 1.0f, 0, 30, &r, &d), FV_EINVAL);
    w[l.off_n_train] = 0;
    CHECK_INT_EQ(fv_fed_decode(&l, w, 1, 1.0f, 16, 30, &r, &d), FV_EEMPTY);
    CHECK(isnan(fv_fed_quant_bound(5, 1.0f, 16, 0)));

    /* Multi-class: no histograms; only the loss. No validation rows: NaN loss. */
    fv_fed_layout_init(&l, 3, 1, 0, 0);
    in.hist_pos = in.hist_neg = NULL;
    in.n_val = 0;
    CHECK_OK(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), &d);
    CHECK_OK(fv_fed_decode(&l, w, 1, 1.0f, 16, 30, &r, &d), &d);
    CHECK(isnan(r.val_roc_auc) && isnan(r.val_pr_auc) && isnan(r.val_log_loss));
    CHECK_NEAR(r.weight_sum, 10.0 / 30, 1e-15);
    for (int i = 0; i < 3; i++) /* single agent, weight 1/3: mean = delta */
        CHECK_NEAR(r.delta_mean[i], delta[i], fv_fed_quant_bound(1, 1.0f, 16, r.weight_sum));
    fv_fed_result_close(&r);

    /* Binary with only one class in validation: AUCs NaN, loss fine. */
    fv_fed_layout_init(&l, 3, 1, 2, 0);
    uint64_t z[2] = {0, 0};
    in.hist_pos = z;
    in.hist_neg = hn;
    in.n_val = 10;
    CHECK_OK(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), &d);
    CHECK_OK(fv_fed_decode(&l, w, 1, 1.0f, 16, 30, &r, &d), &d);
    CHECK(isnan(r.val_roc_auc) && isnan(r.val_pr_auc));
    CHECK_NEAR(r.val_log_loss, 0.15, 1e-12);
    fv_fed_result_close(&r);
}

/* ---- server strategies ------------------------------------------------------------------ */

#define NP 40

static void test_server_opt(fv_strategy_kind_t kind)
{
    fv_job_t job;
    memset(&job, 0, sizeof(job));
    job.strategy.kind = kind;
    job.strategy.server_lr = 0.05;
    job.strategy.beta1 = 0.9;
    job.strategy.beta2 = 0.99;
    job.strategy.tau = 1e-2;
    fv_fed_server_opt_t *o = NULL;
    CHECK_OK(fv_fed_server_opt_new(&job, NP, &o), NULL);

    float g[NP];
    double rg[NP], m[NP], v[NP];
    for (size_t i = 0; i < NP; i++) {
        g[i] = (float)(sm_unif() - 0.5);
        rg[i] = g[i];
        m[i] = 0;
        v[i] = job.strategy.tau * job.strategy.tau;
    }
    for (int t = 0; t < 5; t++) {
        float dm[NP];
        /* magnitudes vary by step so Yogi's sign(v - d^2) takes both values */
        double scale = (t % 2 == 0) ? 0.2 : 0.001;
        for (size_t i = 0; i < NP; i++)
            dm[i] = (float)((sm_unif() - 0.5) * scale);
        CHECK_OK(fv_fed_server_opt_apply(o, g, dm), NULL);
        for (size_t i = 0; i < NP; i++) {
            double dd = dm[i];
            switch (kind) {
            case FV_STRATEGY_FEDAVG:
            case FV_STRATEGY_FEDPROX:
                rg[i] += dd;
                break;
            case FV_STRATEGY_FEDADAM:
            case FV_STRATEGY_FEDYOGI:
                m[i] = 0.9 * m[i] + 0.1 * dd;
                if (kind == FV_STRATEGY_FEDADAM)
                    v[i] = 0.99 * v[i] + 0.01 * dd * dd;
                else
                    v[i] = v[i] - 0.01 * dd * dd * (v[i] > dd * dd ? 1 : v[i] < dd * dd ? -1 : 0);
                rg[i] += 0.05 * m[i] / (sqrt(v[i]) + 0.01);
                break;
            }
        }
        for (size_t i = 0; i < NP; i++)
            CHECK_NEAR(g[i], rg[i], 1e-5);
    }
    /* a non-finite update changes nothing */
    float before[NP], bad[NP];
    memcpy(before, g, sizeof(g));
    for (size_t i = 0; i < NP; i++)
        bad[i] = 0.1f;
    bad[NP - 1] = INFINITY;
    CHECK_INT_EQ(fv_fed_server_opt_apply(o, g, bad), FV_ENUMERIC);
    CHECK(memcmp(before, g, sizeof(g)) == 0);
    fv_fed_server_opt_free(o);
    fv_fed_server_opt_free(NULL);
}

/* A restarted coordinator loads the saved state: the next steps equal an uninterrupted run's. */
static void test_server_opt_resume(fv_strategy_kind_t kind)
{
    fv_job_t job;
    memset(&job, 0, sizeof(job));
    job.strategy.kind = kind;
    job.strategy.server_lr = 0.05;
    job.strategy.beta1 = 0.9;
    job.strategy.beta2 = 0.99;
    job.strategy.tau = 1e-2;
    fv_fed_server_opt_t *a = NULL, *b = NULL;
    CHECK_OK(fv_fed_server_opt_new(&job, NP, &a), NULL);
    float ga[NP], gb[NP], dm[NP];
    for (size_t i = 0; i < NP; i++)
        ga[i] = (float)(sm_unif() - 0.5);
    for (int t = 0; t < 3; t++) {
        for (size_t i = 0; i < NP; i++)
            dm[i] = (float)((sm_unif() - 0.5) * 0.1);
        CHECK_OK(fv_fed_server_opt_apply(a, ga, dm), NULL);
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(fv_fed_server_opt_save(a, &buf, &len), NULL);
    bool adaptive = kind == FV_STRATEGY_FEDADAM || kind == FV_STRATEGY_FEDYOGI;
    CHECK_INT_EQ((long long)len, adaptive ? 16 + 16 * NP : 0);
    CHECK_OK(fv_fed_server_opt_new(&job, NP, &b), NULL);
    CHECK_OK(fv_fed_server_opt_load(b, buf, len), NULL);
    memcpy(gb, ga, sizeof(ga));
    for (int t = 0; t < 3; t++) {
        for (size_t i = 0; i < NP; i++)
            dm[i] = (float)((sm_unif() - 0.5) * 0.1);
        CHECK_OK(fv_fed_server_opt_apply(a, ga, dm), NULL);
        CHECK_OK(fv_fed_server_opt_apply(b, gb, dm), NULL);
    }
    CHECK(memcmp(ga, gb, sizeof(ga)) == 0);
    if (adaptive) {
        /* every flipped header byte and a wrong length are refused */
        for (size_t i = 0; i < 16; i++) {
            buf[i] ^= 0x01;
            CHECK_INT_EQ(fv_fed_server_opt_load(b, buf, len), FV_ECORRUPT);
            buf[i] ^= 0x01;
        }
        CHECK_INT_EQ(fv_fed_server_opt_load(b, buf, len - 8), FV_ECORRUPT);
    } else {
        uint8_t one = 0;
        CHECK_INT_EQ(fv_fed_server_opt_load(b, &one, 1), FV_ECORRUPT);
    }
    free(buf);
    fv_fed_server_opt_free(a);
    fv_fed_server_opt_free(b);
}

static void test_server_opt_errors(void)
{
    fv_job_t job;
    memset(&job, 0, sizeof(job));
    fv_fed_server_opt_t *o = NULL;
    job.strategy.kind = FV_STRATEGY_FEDADAM; /* server_lr, tau 0 */
    CHECK_INT_EQ(fv_fed_server_opt_new(&job, 3, &o), FV_EINVAL);
    job.strategy.server_lr = 1;
    job.strategy.tau = 1e-3;
    job.strategy.beta2 = 1.0;
    CHECK_INT_EQ(fv_fed_server_opt_new(&job, 3, &o), FV_EINVAL);
    job.strategy.beta2 = 0.99;
    job.strategy.kind = (fv_strategy_kind_t)9;
    CHECK_INT_EQ(fv_fed_server_opt_new(&job, 3, &o), FV_EINVAL);
    CHECK(o == NULL);
    job.strategy.kind = FV_STRATEGY_FEDYOGI;
    CHECK_OK(fv_fed_server_opt_new(&job, 0, &o), NULL); /* empty model: no-op */
    CHECK_OK(fv_fed_server_opt_apply(o, NULL, NULL), NULL);
    fv_fed_server_opt_free(o);
}

/* ---- round layouts from the job, multi-class, plain vectors (issue 13) ----------------- */

static fv_job_t *job_of(const char *json)
{
    fv_job_t *j = NULL;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_job_from_json("job", json, strlen(json), &j, &d), &d);
    return j;
}

#define SCHEMA_B2                                                                                  \
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\",\"classes\":[\"no\",\"yes\"],"   \
    "\"unknown_category\":\"error\",\"columns\":[{\"name\":\"x\",\"type\":\"numeric\"},"           \
    "{\"name\":\"y\",\"type\":\"target\"}]}"
#define SCHEMA_M4                                                                                  \
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":null,\"classes\":[\"a\",\"b\",\"c\","    \
    "\"d\"],\"unknown_category\":\"error\",\"columns\":[{\"name\":\"x\",\"type\":\"numeric\"},"    \
    "{\"name\":\"y\",\"type\":\"target\"}]}"

/* One table for both sides: which blocks a round holds follows from the job and the kind
 * alone. The default spec of a multi-class job has no histogram block. */
static void test_round_layout_of_job(void)
{
    fv_job_t *b = job_of("{\"name\":\"b\",\"schema\":" SCHEMA_B2 ",\"model\":\"logreg\","
                         "\"rounds\":4,\"distill\":{\"student\":\"logreg\",\"rounds\":2,"
                         "\"quantize_int8\":true}}");
    fv_job_t *m = job_of("{\"name\":\"m\",\"schema\":" SCHEMA_M4 ",\"model\":\"logreg\","
                         "\"rounds\":4,\"distill\":{\"student\":\"logreg\",\"rounds\":2}}");
    fv_fed_layout_t l;
    CHECK_OK(fv_fed_round_layout(b, FV_FED_KIND_TRAIN, 10, &l), NULL);
    CHECK_UINT_EQ(l.n_models, 1);
    CHECK_UINT_EQ(l.hist_bins, 1000);
    CHECK_UINT_EQ(l.n_classes, 0);
    CHECK_UINT_EQ(l.dim, 10 + 1 + 2000 + 8 + 1); /* a binary job's vector as before */
    CHECK_UINT_EQ(l.plain_dim, 10 + 1 + 2000 + 1 + 1);
    CHECK_OK(fv_fed_round_layout(b, FV_FED_KIND_DISTILL, 10, &l), NULL);
    CHECK_UINT_EQ(l.n_models, 3); /* student, teacher, int8 student */
    CHECK_UINT_EQ(l.dim, 10 + 1 + 6000 + 8 + 1);
    CHECK_OK(fv_fed_round_layout(m, FV_FED_KIND_TRAIN, 10, &l), NULL);
    CHECK_UINT_EQ(l.hist_bins, 0);
    CHECK_UINT_EQ(l.n_classes, 4);
    CHECK_UINT_EQ(l.off_class_n, 10 + 1 + 8 + 1);
    CHECK_UINT_EQ(l.off_class_right, l.off_class_n + 4);
    CHECK_UINT_EQ(l.dim, 10 + 1 + 8 + 1 + 4 + 4);
    CHECK_UINT_EQ(l.plain_dim, l.dim - 7);
    CHECK_OK(fv_fed_round_layout(m, FV_FED_KIND_DISTILL, 7, &l), NULL);
    CHECK_UINT_EQ(l.n_models, 2);
    CHECK_UINT_EQ(l.dim, 7 + 1 + 8 + 1 + 4 + 8);
    CHECK_INT_EQ(fv_fed_round_layout(m, FV_FED_KIND_STATS, 7, &l), FV_EINVAL);
    CHECK_INT_EQ(fv_fed_round_layout(m, 9, 7, &l), FV_EINVAL);
    /* kinds by round number */
    CHECK_UINT_EQ(fv_fed_kind_of_round(b, 0), FV_FED_KIND_STATS);
    CHECK_UINT_EQ(fv_fed_kind_of_round(b, 1), FV_FED_KIND_TRAIN);
    CHECK_UINT_EQ(fv_fed_kind_of_round(b, 4), FV_FED_KIND_TRAIN);
    CHECK_UINT_EQ(fv_fed_kind_of_round(b, 5), FV_FED_KIND_DISTILL);
    CHECK_UINT_EQ(fv_fed_kind_of_round(b, 6), FV_FED_KIND_DISTILL);
    CHECK_UINT_EQ(fv_fed_kind_of_round(b, 7), 0);
    CHECK(strcmp(fv_fed_kind_name(FV_FED_KIND_DISTILL), "distill") == 0);
    CHECK(strcmp(fv_fed_kind_name(0), "unknown") == 0);
    fv_job_free(b);
    fv_job_free(m);
}

/* A multi-class distill round (2 models, 4 classes) from 3 agents, through the SecAgg
 * encoding and through the plain one: both decode to the same counts and metrics, which
 * are the pooled ones. */
static void test_round_multiclass(void)
{
    enum { NA = 3, K = 4, M = 2, MC_P = 5 };
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, MC_P, M, 0, K);
    uint64_t cn[NA][K], cr[NA][M * K], tn[K] = {0}, tr[M * K] = {0};
    float delta[MC_P] = {0.1f, -0.2f, 0.3f, 0.0f, 0.05f};
    uint32_t *acc = calloc(l.dim, 4), *w = malloc(l.dim * 4);
    double *accf = calloc(l.plain_dim, sizeof(double));
    float *pv = malloc(l.plain_dim * sizeof(float));
    CHECK(acc && w && accf && pv);
    fv_diag_t d = {{0}};
    uint64_t nval = 0;
    double loss = 0;
    for (int a = 0; a < NA; a++) {
        uint32_t nv = 0;
        for (int k = 0; k < K; k++) {
            cn[a][k] = (uint64_t)(3 + (sm_next() % 20));
            nv += (uint32_t)cn[a][k];
            tn[k] += cn[a][k];
            for (int m = 0; m < M; m++) {
                cr[a][m * K + k] = sm_next() % (cn[a][k] + 1);
                tr[m * K + k] += cr[a][m * K + k];
            }
        }
        nval += nv;
        double ls = 0.7 * nv;
        loss += ls;
        fv_fed_local_t in = {.delta = delta,
                             .n_train = 100,
                             .n_ref = 300,
                             .loss_sum = ls,
                             .n_val = nv,
                             .class_n = cn[a],
                             .class_right = cr[a]};
        fv_rand_t rng;
        fv_rand_seeded_u64(&rng, 7 + a);
        CHECK_OK(fv_fed_encode(&l, &in, 1.0f, 16, &rng, w, &d), &d);
        add_words(acc, w, l.dim);
        CHECK_OK(fv_fed_plain_encode(&l, &in, pv, &d), &d);
        CHECK_OK(fv_fed_plain_check(&l, pv, &d), &d);
        for (size_t i = 0; i < l.plain_dim; i++)
            accf[i] += pv[i];
    }
    fv_fed_result_t rs, rp;
    CHECK_OK(fv_fed_decode(&l, acc, NA, 1.0f, 16, 300, &rs, &d), &d);
    CHECK_OK(fv_fed_plain_decode(&l, accf, NA, 300, &rp, &d), &d);
    const fv_fed_result_t *both[2] = {&rs, &rp};
    for (int t = 0; t < 2; t++) {
        const fv_fed_result_t *r = both[t];
        CHECK_UINT_EQ(r->n_models, M);
        CHECK_UINT_EQ(r->n_classes, K);
        CHECK_UINT_EQ(r->n_val, nval);
        CHECK_NEAR(r->val_log_loss, loss / (double)nval, 1e-6);
        for (int m = 0; m < M; m++) {
            uint64_t right = 0;
            for (int k = 0; k < K; k++) {
                CHECK_UINT_EQ(r->class_right[m * K + k], tr[m * K + k]);
                right += tr[m * K + k];
                CHECK(fv_fed_result_recall(r, (size_t)m, (size_t)k) ==
                      (double)tr[m * K + k] / (double)tn[k]);
            }
            CHECK(r->model[m].accuracy == (double)right / (double)nval);
            CHECK(isnan(r->model[m].roc_auc) && isnan(r->model[m].pr_auc));
        }
        for (int k = 0; k < K; k++)
            CHECK_UINT_EQ(r->class_n[k], tn[k]);
        CHECK(r->val_accuracy == r->model[0].accuracy);
        CHECK(isnan(r->model[2].accuracy));
        CHECK(isnan(fv_fed_result_recall(r, 2, 0)) && isnan(fv_fed_result_recall(r, 0, K)));
        CHECK(isnan(r->val_roc_auc));
        CHECK_NEAR(r->delta_mean[0], 0.1, 1e-3);
    }
    fv_fed_result_close(&rs);
    fv_fed_result_close(&rp);
    free(acc), free(w), free(accf), free(pv);
}

/* The coordinator sees plain vectors: every count, sum and bound in one is checked, and
 * each broken claim is refused with the element named. */
static void test_plain_check(void)
{
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, 3, 2, 2, 0); /* binary distill: 2 models of 2 bins */
    float delta[3] = {1, 2, 3};
    uint64_t hp[4] = {1, 2, 0, 3}, hn[4] = {4, 1, 5, 0};
    fv_fed_local_t in = {.delta = delta,
                         .n_train = 10,
                         .n_ref = 20,
                         .hist_pos = hp,
                         .hist_neg = hn,
                         .loss_sum = 4.0,
                         .n_val = 8};
    float v[64], bad[64];
    fv_diag_t d = {{0}};
    CHECK(l.plain_dim <= 64);
    CHECK_OK(fv_fed_plain_encode(&l, &in, v, &d), &d);
    CHECK_OK(fv_fed_plain_check(&l, v, &d), &d);
    CHECK(v[0] == 0.5f && v[3] == 10.0f); /* w delta = 10/20 * 1; n_train */
    struct {
        size_t i;
        float x;
        const char *needle;
    } cases[] = {
        {0, NAN, "parameter 0"},
        {1, 0x1p33f, "parameter 1"},
        {3, -1, "element 3"},   /* n_train */
        {4, 0.5f, "element 4"}, /* a bin */
        {4, 9, "model 0's histograms hold"},
        {6, 2, "model 1's histograms hold"},
        {12, -0.1f, "validation loss sum"},
        {12, 8 * 17 + 1, "validation loss sum"},
        {13, 70000, "element 13"}, /* n_val above FV_FED_RAW_MAX */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memcpy(bad, v, sizeof v);
        bad[cases[c].i] = cases[c].x;
        d.msg[0] = '\0';
        CHECK_INT_EQ(fv_fed_plain_check(&l, bad, &d), FV_EPEER);
        CHECK_CONTAINS(d.msg, cases[c].needle);
    }
    /* multi-class: class rows must add up to n_val, right <= rows */
    fv_fed_layout_init(&l, 1, 1, 0, 3);
    uint64_t cn[3] = {2, 3, 4}, cr[3] = {2, 1, 0};
    fv_fed_local_t mi = {.delta = delta,
                         .n_train = 5,
                         .n_ref = 5,
                         .loss_sum = 1,
                         .n_val = 9,
                         .class_n = cn,
                         .class_right = cr};
    CHECK_OK(fv_fed_plain_encode(&l, &mi, v, &d), &d);
    CHECK_OK(fv_fed_plain_check(&l, v, &d), &d);
    memcpy(bad, v, sizeof v);
    bad[l.off_class_n - 7] = 3; /* class 0 rows 2 -> 3 */
    CHECK_INT_EQ(fv_fed_plain_check(&l, bad, &d), FV_EPEER);
    CHECK_CONTAINS(d.msg, "class rows sum to 10");
    memcpy(bad, v, sizeof v);
    bad[l.off_class_right - 7 + 1] = 4; /* class 1: 4 right of 3 */
    CHECK_INT_EQ(fv_fed_plain_check(&l, bad, &d), FV_EPEER);
    CHECK_CONTAINS(d.msg, "4 rows of class 1 right, of 3");
    /* encode refuses what it cannot represent */
    cn[0] = FV_FED_RAW_MAX + 1;
    CHECK_INT_EQ(fv_fed_plain_encode(&l, &mi, v, &d), FV_EOVERFLOW);
    cn[0] = 2;
    delta[0] = NAN;
    CHECK_INT_EQ(fv_fed_plain_encode(&l, &mi, v, &d), FV_ENUMERIC);
}

/* ---- cheap checks: the agent's norm clip, the coordinator's sum checks ------------- */

/* The block the encoders form from a clipped delta: (float)(w * delta_i), its norm. */
static double block_norm(const float *delta, size_t n, double w)
{
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        double a = (double)(float)(w * (double)delta[i]);
        ss += a * a;
    }
    return sqrt(ss);
}

static void test_update_clip(void)
{
    enum { N = 2500 };
    static float delta[N], orig[N];
    fv_diag_t d = {{0}};
    double w = 700.0 / 9000.0, norm = -1, ss = 0;
    bool clipped = true;
    for (size_t i = 0; i < N; i++) {
        orig[i] = delta[i] = (float)(2 * sm_unif() - 1);
        ss += (w * (double)orig[i]) * (w * (double)orig[i]);
    }
    /* no bound: the norm only, nothing changed */
    CHECK_OK(fv_fed_update_clip(delta, N, w, 0, &norm, &clipped, &d), &d);
    CHECK(!clipped);
    CHECK_NEAR(norm, sqrt(ss), 1e-12 * sqrt(ss));
    CHECK(memcmp(delta, orig, sizeof delta) == 0);
    /* a bound above the norm: unchanged */
    CHECK_OK(fv_fed_update_clip(delta, N, w, norm * 1.01, &norm, &clipped, &d), &d);
    CHECK(!clipped);
    CHECK(memcmp(delta, orig, sizeof delta) == 0);
    /* a bound below: scaled to it, within the stated relative 2^-21 */
    double before = norm, bound = before / 3.7;
    CHECK_OK(fv_fed_update_clip(delta, N, w, bound, &norm, &clipped, &d), &d);
    CHECK(clipped);
    CHECK(norm == before); /* the norm before clipping is what is reported */
    double after = block_norm(delta, N, w);
    CHECK_NEAR(after, bound, bound * 0x1p-21);
    for (size_t i = 0; i < N; i++) /* a scaling: directions kept */
        CHECK_NEAR(delta[i], orig[i] / 3.7, 1e-6);
    /* clipping again at the same bound changes nothing of note (idempotent within 2^-21) */
    CHECK_OK(fv_fed_update_clip(delta, N, w, bound, &norm, &clipped, &d), &d);
    CHECK_NEAR(block_norm(delta, N, w), bound, bound * 0x1p-21);
    /* a large update (|delta| ~ 1e30) and a heavy weight: still finite, still the bound */
    for (size_t i = 0; i < N; i++)
        delta[i] = orig[i] * 1e30f;
    CHECK_OK(fv_fed_update_clip(delta, N, 65537.0, 1.0, &norm, &clipped, &d), &d);
    CHECK(clipped && isfinite(norm) && norm > 1e33);
    CHECK_NEAR(block_norm(delta, N, 65537.0), 1.0, 0x1p-21);

    /* NaN or infinity: refused, nothing touched, the parameter named */
    memcpy(delta, orig, sizeof delta);
    delta[1234] = NAN;
    norm = -1;
    clipped = false;
    CHECK_INT_EQ(fv_fed_update_clip(delta, N, w, bound, &norm, &clipped, &d), FV_ENUMERIC);
    CHECK_CONTAINS(d.msg, "parameter 1234 is nan");
    CHECK(norm == -1 && !clipped);
    CHECK(delta[0] == orig[0] && delta[N - 1] == orig[N - 1]);
    delta[1234] = -INFINITY;
    CHECK_INT_EQ(fv_fed_update_clip(delta, N, w, 0, &norm, &clipped, &d), FV_ENUMERIC);
    CHECK_CONTAINS(d.msg, "parameter 1234 is -inf");
    /* bad arguments */
    CHECK_INT_EQ(fv_fed_update_clip(orig, N, NAN, 1, &norm, &clipped, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_fed_update_clip(orig, N, w, -1, &norm, &clipped, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_fed_update_clip(NULL, N, w, 1, &norm, &clipped, &d), FV_EINVAL);
    /* an empty update has norm 0 */
    CHECK_OK(fv_fed_update_clip(NULL, 0, w, 1, &norm, &clipped, &d), &d);
    CHECK(norm == 0 && !clipped);
}

enum { SC_AGENTS = 5, SC_P = 300, SC_B = 20, SC_K = 3, SC_M = 2 };

/* An honest cohort of SC_AGENTS agents for layout l (binary: SC_B bins; multi-class:
 * SC_K classes), each clipping its update to max_norm: the SecAgg sum (words) and the
 * plain sum (acc, l->plain_dim). */
static void honest_cohort(const fv_fed_layout_t *l, const fv_job_t *job, double n_ref,
                          uint32_t *words, double *acc)
{
    fv_diag_t d = {{0}};
    uint32_t *w = malloc(l->dim * sizeof *w);
    float *pv = malloc(l->plain_dim * sizeof *pv);
    float delta[SC_P];
    CHECK(w && pv);
    memset(words, 0, l->dim * sizeof *words);
    memset(acc, 0, l->plain_dim * sizeof *acc);
    for (int k = 0; k < SC_AGENTS; k++) {
        uint32_t n_train = 100 + (uint32_t)(sm_next() % 400), nv = 30 + (uint32_t)(sm_next() % 20);
        uint64_t hp[SC_M * SC_B] = {0}, hn[SC_M * SC_B] = {0};
        uint64_t cn[SC_K] = {0}, cr[SC_M * SC_K] = {0};
        double loss = 0;
        for (uint32_t i = 0; i < nv; i++) {
            uint32_t y = (uint32_t)(sm_next() % (l->n_classes ? l->n_classes : 2));
            loss += 16.0 * sm_unif();
            for (size_t m = 0; m < l->n_models; m++) {
                if (l->hist_bins > 0) {
                    size_t b = (size_t)(sm_next() % l->hist_bins);
                    (y ? hp : hn)[m * l->hist_bins + b]++;
                }
                if (l->n_classes > 0 && sm_unif() < 0.6)
                    cr[m * l->n_classes + y]++;
            }
            if (l->n_classes > 0)
                cn[y]++;
        }
        for (size_t i = 0; i < l->n_params; i++)
            delta[i] = (float)(3 * sm_unif() - 1.5);
        double norm;
        bool clipped;
        CHECK_OK(fv_fed_update_clip(delta, l->n_params, n_train / n_ref, job->max_update_norm,
                                    &norm, &clipped, &d),
                 &d);
        fv_fed_local_t in = {.delta = delta,
                             .n_train = n_train,
                             .n_ref = n_ref,
                             .hist_pos = hp,
                             .hist_neg = hn,
                             .loss_sum = loss,
                             .n_val = nv,
                             .class_n = cn,
                             .class_right = cr};
        fv_rand_t rng;
        fv_rand_seeded_u64(&rng, 77 + (uint64_t)k);
        CHECK_OK(fv_fed_encode(l, &in, job->secagg.clip, job->secagg.bits, &rng, w, &d), &d);
        add_words(words, w, l->dim);
        CHECK_OK(fv_fed_plain_encode(l, &in, pv, &d), &d);
        CHECK_OK(fv_fed_plain_check(l, pv, &d), &d);
        for (size_t i = 0; i < l->plain_dim; i++)
            acc[i] += pv[i];
    }
    free(w);
    free(pv);
}

/* Decodes words (SecAgg) or acc (plain) and runs the sum checks: their return code. */
static int decode_check(const fv_fed_layout_t *l, const fv_job_t *job, double n_ref,
                        const uint32_t *words, const double *acc, fv_diag_t *d)
{
    fv_fed_result_t r;
    int rc = words != NULL ? fv_fed_decode(l, words, SC_AGENTS, job->secagg.clip, job->secagg.bits,
                                           n_ref, &r, d)
                           : fv_fed_plain_decode(l, acc, SC_AGENTS, n_ref, &r, d);
    CHECK_OK(rc, d);
    d->msg[0] = '\0';
    rc = fv_fed_sum_check(l, job, words, SC_AGENTS, n_ref, &r, d);
    fv_fed_result_close(&r);
    return rc;
}

static void test_sum_check_binary(void)
{
    fv_job_t job;
    memset(&job, 0, sizeof job);
    job.secagg.on = true;
    job.secagg.clip = 0.05f;
    job.secagg.bits = 16;
    job.max_update_norm = 0.05; /* the honest agents clip to it: 5 of them sum to <= 0.25 */
    const double n_ref = 4000;
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, SC_P, SC_M, SC_B, 0); /* a distill-like layout: 2 models */
    uint32_t *sum = malloc(l.dim * sizeof *sum), *bad = malloc(l.dim * sizeof *bad);
    double *acc = malloc(l.plain_dim * sizeof *acc), *pbad = malloc(l.plain_dim * sizeof *pbad);
    CHECK(sum && bad && acc && pbad);
    fv_diag_t d = {{0}};
    honest_cohort(&l, &job, n_ref, sum, acc);
    CHECK_OK(decode_check(&l, &job, n_ref, sum, NULL, &d), &d);
    CHECK_OK(decode_check(&l, &job, n_ref, NULL, acc, &d), &d);

#define TAMPER(stmt, needle)                                                                       \
    do {                                                                                           \
        memcpy(bad, sum, l.dim * sizeof *bad);                                                     \
        stmt;                                                                                      \
        CHECK_INT_EQ(decode_check(&l, &job, n_ref, bad, NULL, &d), FV_EPEER);                      \
        CHECK_CONTAINS(d.msg, needle);                                                             \
    } while (0)
    /* histograms that do not add up to n_val (hostile_agent.py's "sum": 101 vs 100) */
    TAMPER(bad[l.off_hist_pos + 3]++, "model 0's summed histograms hold");
    TAMPER(bad[l.off_hist_neg + SC_B + 7]++, "model 1's summed histograms hold");
    TAMPER(bad[l.off_n_val]++, "summed histograms hold");
    /* a negative count wraps to a huge one: out of range */
    TAMPER(bad[l.off_hist_pos + 4] = UINT32_MAX, "sum check: range: model 0's histogram bin 4");
    TAMPER(bad[l.off_n_val] = 0x80000000u, "sum check: n_val: 2147483648 validation rows");
    /* n_train: below one per contributor, above n_ref per contributor */
    TAMPER(bad[l.off_n_train] = SC_AGENTS - 1, "n_train: the 5 contributors report 4 training");
    TAMPER(bad[l.off_n_train] = SC_AGENTS * 4000 + 1, "outside [5, 20000]");
    /* the loss: negative, or more than 17 per row */
    TAMPER(fv_fed_exact_encode(-1.0, bad + l.off_loss), "sum check: loss: the summed");
    TAMPER(fv_fed_exact_encode(17.0 * 300, bad + l.off_loss), "outside [0, 17 * n_val");
    /* a parameter word beyond what 5 honest quantized words can sum to (the 2^31 attack) */
    TAMPER(bad[l.off_params + 17] += 0x80000000u, "parameter 17's summed word is");
    /* every coordinate at +clip (norm clip * sqrt(P) = 0.87): in range word by word, over
     * the norm bound 5 * 0.05 */
    TAMPER(for (size_t i = 0; i < SC_P; i++) bad[l.off_params + i] += 65535u / 2 - 1,
           "sum check: norm: the summed update's L2 norm");
#undef TAMPER
    /* without a max_update_norm the norm is not checked */
    memcpy(bad, sum, l.dim * sizeof *bad);
    for (size_t i = 0; i < SC_P; i++)
        bad[l.off_params + i] += 65535u / 2 - 1;
    job.max_update_norm = 0;
    CHECK_OK(decode_check(&l, &job, n_ref, bad, NULL, &d), &d);
    job.max_update_norm = 0.05;

    /* the plain sum gets the same checks (defence in depth: its addends were checked) */
    memcpy(pbad, acc, l.plain_dim * sizeof *pbad);
    pbad[l.off_hist_pos + 2] += 1; /* plain offsets equal the round vector's before the loss */
    CHECK_INT_EQ(decode_check(&l, &job, n_ref, NULL, pbad, &d), FV_EPEER);
    CHECK_CONTAINS(d.msg, "model 0's summed histograms hold");
    memcpy(pbad, acc, l.plain_dim * sizeof *pbad);
    for (size_t i = 0; i < SC_P; i++)
        pbad[i] += 0.1;
    CHECK_INT_EQ(decode_check(&l, &job, n_ref, NULL, pbad, &d), FV_EPEER);
    CHECK_CONTAINS(d.msg, "sum check: norm");

    /* arguments */
    fv_fed_result_t r;
    CHECK_OK(fv_fed_decode(&l, sum, SC_AGENTS, job.secagg.clip, job.secagg.bits, n_ref, &r, &d),
             &d);
    CHECK_INT_EQ(fv_fed_sum_check(&l, &job, sum, 0, n_ref, &r, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_fed_sum_check(&l, NULL, sum, SC_AGENTS, n_ref, &r, &d), FV_EINVAL);
    fv_fed_result_close(&r);
    free(sum), free(bad), free(acc), free(pbad);
}

static void test_sum_check_multiclass(void)
{
    fv_job_t job;
    memset(&job, 0, sizeof job);
    job.secagg.on = true;
    job.secagg.clip = 0.05f;
    job.secagg.bits = 12;
    const double n_ref = 3000;
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, SC_P, SC_M, 0, SC_K);
    uint32_t *sum = malloc(l.dim * sizeof *sum), *bad = malloc(l.dim * sizeof *bad);
    double *acc = malloc(l.plain_dim * sizeof *acc);
    CHECK(sum && bad && acc);
    fv_diag_t d = {{0}};
    honest_cohort(&l, &job, n_ref, sum, acc);
    CHECK_OK(decode_check(&l, &job, n_ref, sum, NULL, &d), &d);
    CHECK_OK(decode_check(&l, &job, n_ref, NULL, acc, &d), &d);
    memcpy(bad, sum, l.dim * sizeof *bad);
    bad[l.off_class_n + 1]++;
    CHECK_INT_EQ(decode_check(&l, &job, n_ref, bad, NULL, &d), FV_EPEER);
    CHECK_CONTAINS(d.msg, "sum check: class rows: the summed class rows are");
    memcpy(bad, sum, l.dim * sizeof *bad);
    bad[l.off_class_right + SC_K + 2] = bad[l.off_class_n + 2] + 1;
    CHECK_INT_EQ(decode_check(&l, &job, n_ref, bad, NULL, &d), FV_EPEER);
    CHECK_CONTAINS(d.msg, "model 1 classifies");
    memcpy(bad, sum, l.dim * sizeof *bad);
    bad[l.off_class_n] += 0x80000000u, bad[l.off_n_val] += 0x80000000u;
    CHECK_INT_EQ(decode_check(&l, &job, n_ref, bad, NULL, &d), FV_EPEER);
    CHECK_CONTAINS(d.msg, "sum check: n_val:");
    memcpy(bad, sum, l.dim * sizeof *bad);
    bad[l.off_params] = SC_AGENTS * 4095u + 1; /* 12 bits */
    CHECK_INT_EQ(decode_check(&l, &job, n_ref, bad, NULL, &d), FV_EPEER);
    CHECK_CONTAINS(d.msg, "parameter 0's summed word is 20476, more than 5 contributors");
    free(sum), free(bad), free(acc);
}

int main(void)
{
    test_exact_known_answers();
    test_exact_many_agents();
    test_exact_limits();
    test_stats_german();
    test_layout();
    test_round_bound(8);
    test_round_bound(16);
    test_round_bound(24);
    test_round_errors();
    test_round_layout_of_job();
    test_round_multiclass();
    test_plain_check();
    test_update_clip();
    test_sum_check_binary();
    test_sum_check_multiclass();
    test_server_opt(FV_STRATEGY_FEDAVG);
    test_server_opt(FV_STRATEGY_FEDPROX);
    test_server_opt(FV_STRATEGY_FEDADAM);
    test_server_opt(FV_STRATEGY_FEDYOGI);
    test_server_opt_resume(FV_STRATEGY_FEDAVG);
    test_server_opt_resume(FV_STRATEGY_FEDADAM);
    test_server_opt_resume(FV_STRATEGY_FEDYOGI);
    test_server_opt_errors();
    return 0;
}
