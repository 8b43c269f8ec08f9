/* test_metrics.c - exact and histogram metrics: scikit-learn known answers, brute-force
 * cross-checks, histogram properties, error cases.
 *
 * Known answers were printed by scikit-learn 1.2.1 (Debian python3-sklearn; it loads only
 * in /usr/bin/python3). Scores go through float32 first, as the C side sees them:
 *
 *   import numpy as np
 *   from sklearn.metrics import (roc_auc_score, average_precision_score, log_loss,
 *                                accuracy_score, roc_curve)
 *   f = lambda v: np.asarray(v, dtype=np.float32).astype(np.float64)
 *   cases = {   # the vectors of known[] below
 *    "v1": ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]),
 *    "v2": ([0.2, 0.2, 0.5, 0.5, 0.5, 0.9, 0.1, 0.9, 0.3, 0.3],
 *           [0, 1, 1, 0, 1, 1, 0, 0, 1, 0]),
 *    "v3": ([0.7, 0.3, 0.3, 0.9, 0.1, 0.7, 0.5, 0.3, 0.7, 0.2, 0.5, 0.9, 0.0, 1.0, 0.3, 0.6],
 *           [1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0]),
 *    "v4": ([0.5] * 6, [1, 0, 1, 0, 0, 1]),
 *   }
 *   for name, (s, y) in cases.items():
 *       s, y = f(s), np.array(y)
 *       fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
 *       rec = {m: float(tpr[fpr <= m].max()) for m in (0.0, 0.1, 0.25, 0.5, 1.0)}
 *       print(name, "roc %.17g ap %.17g ll %.17g acc %.17g" % (roc_auc_score(y, s),
 *             average_precision_score(y, s), log_loss(y, s, eps=1e-7),
 *             accuracy_score(y, (s >= 0.5).astype(int))), "rec", rec)
 *   p = f([0.0, 1.0, 0.25, 1.0]); y = [1, 1, 0, 0]
 *   print("clip ll %.17g" % log_loss(y, p, eps=1e-7, labels=[0, 1]))
 *   P = f([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.25, 0.25, 0.5],
 *          [0.4, 0.4, 0.2]]); Y = [1, 0, 1, 2, 0]
 *   print("mc acc %.17g ll %.17g" % (accuracy_score(Y, P.argmax(axis=1)),
 *                                    log_loss(Y, P, labels=[0, 1, 2])))
 *
 * Tolerances: 1e-12 for rank metrics (a handful of double additions of exact counts) and
 * log loss on these short vectors; 1e-6 for the multi-class log loss, because scikit-learn
 * renormalizes each row by its sum, and float32 rows sum to 1 only within ~1e-7.
 */
#include "fv_metrics.h"
#include "fv_rng.h"
#include "fv_test.h"

#include <stdbool.h>

#define TOL 1e-12
#define SENTINEL 42.0

typedef struct {
    const char *name;
    size_t n;
    float s[16];
    int32_t y[16];
    double roc, ap, ll, acc;
    double rec[5]; /* at max_fpr 0, 0.1, 0.25, 0.5, 1 */
} known_t;

static const double rec_fprs[5] = {0.0, 0.1, 0.25, 0.5, 1.0};

static const known_t known[] = {
    {"v1",
     4,
     {0.1f, 0.4f, 0.35f, 0.8f},
     {0, 0, 1, 1},
     0.75,
     0.83333333333333326,
     0.47228795723880856,
     0.75,
     {0.5, 0.5, 0.5, 1.0, 1.0}},
    {"v2",
     10,
     {0.2f, 0.2f, 0.5f, 0.5f, 0.5f, 0.9f, 0.1f, 0.9f, 0.3f, 0.3f},
     {0, 1, 1, 0, 1, 1, 0, 0, 1, 0},
     0.62000000000000011,
     0.56539682539682534,
     0.79859766338481986,
     0.59999999999999998,
     {0.0, 0.0, 0.2, 0.6, 1.0}},
    {"v3",
     16,
     {0.7f, 0.3f, 0.3f, 0.9f, 0.1f, 0.7f, 0.5f, 0.3f, 0.7f, 0.2f, 0.5f, 0.9f, 0.0f, 1.0f, 0.3f,
      0.6f},
     {1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0},
     0.8203125,
     0.8205128205128206,
     0.4925267904307698,
     0.6875,
     {0.375, 0.375, 0.625, 0.75, 1.0}},
    {"v4",
     6,
     {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f},
     {1, 0, 1, 0, 0, 1},
     0.5,
     0.5,
     0.69314718055994529,
     0.5,
     {0.0, 0.0, 0.0, 0.0, 1.0}},
};

static void test_known_answers(void)
{
    for (size_t c = 0; c < sizeof known / sizeof known[0]; c++) {
        const known_t *k = &known[c];
        double v;
        printf("# %s\n", k->name);
        CHECK_OK(fv_metrics_roc_auc(k->s, k->y, k->n, &v), NULL);
        CHECK_NEAR(v, k->roc, TOL);
        CHECK_OK(fv_metrics_pr_auc(k->s, k->y, k->n, &v), NULL);
        CHECK_NEAR(v, k->ap, TOL);
        CHECK_OK(fv_metrics_log_loss(k->s, k->y, k->n, &v), NULL);
        CHECK_NEAR(v, k->ll, TOL);
        CHECK_OK(fv_metrics_accuracy(k->s, k->y, k->n, 0.5, &v), NULL);
        CHECK_NEAR(v, k->acc, TOL);
        for (int i = 0; i < 5; i++) {
            CHECK_OK(fv_metrics_recall_at_fpr(k->s, k->y, k->n, rec_fprs[i], &v), NULL);
            CHECK_NEAR(v, k->rec[i], TOL);
        }
    }

    /* Clipping at 1e-7: p = 0 with y = 1 costs -log(1e-7), not infinity. */
    const float p[4] = {0.0f, 1.0f, 0.25f, 1.0f};
    const int32_t y[4] = {1, 1, 0, 0};
    double v;
    CHECK_OK(fv_metrics_log_loss(p, y, 4, &v), NULL);
    CHECK_NEAR(v, 8.1309683687236962, TOL);

    /* Multi-class; row 5 ties classes 0 and 1: argmax takes 0 (numpy's rule too). */
    const float prob[15] = {0.2f, 0.5f,  0.3f,  0.6f, 0.3f, 0.1f, 0.1f, 0.1f,
                            0.8f, 0.25f, 0.25f, 0.5f, 0.4f, 0.4f, 0.2f};
    const int32_t yc[5] = {1, 0, 1, 2, 0};
    CHECK_OK(fv_metrics_mc_accuracy(prob, 5, 3, yc, &v), NULL);
    CHECK_NEAR(v, 0.80000000000000004, TOL);
    CHECK_OK(fv_metrics_mc_log_loss(prob, 5, 3, yc, &v), NULL);
    CHECK_NEAR(v, 1.0231991644343432, 1e-6);

    /* Ties to the lowest index: [0.3 0.35 0.35] predicts 1, so label 2 is a miss. */
    const float tie[3] = {0.3f, 0.35f, 0.35f};
    const int32_t y2 = 2, y1 = 1;
    CHECK_OK(fv_metrics_mc_accuracy(tie, 1, 3, &y2, &v), NULL);
    CHECK(v == 0.0);
    CHECK_OK(fv_metrics_mc_accuracy(tie, 1, 3, &y1, &v), NULL);
    CHECK(v == 1.0);
}

/* ---- brute force cross-checks, O(n^2), written from the definitions ------------------ */

static double brute_roc(const float *s, const int32_t *y, size_t n)
{
    double u = 0.0, np = 0.0, nn = 0.0;
    for (size_t i = 0; i < n; i++) {
        np += y[i] == 1;
        nn += y[i] == 0;
        if (y[i] != 1)
            continue;
        for (size_t j = 0; j < n; j++) {
            if (y[j] == 0)
                u += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
        }
    }
    return u / (np * nn);
}

/* sum over distinct thresholds t (descending) of (R(t) - R(prev)) * P(t) */
static double brute_ap(const float *s, const int32_t *y, size_t n)
{
    double np = 0.0, ap = 0.0, prev_r = 0.0;
    for (size_t i = 0; i < n; i++)
        np += y[i] == 1;
    float t = INFINITY;
    for (;;) {
        /* next lower distinct score */
        bool found = false;
        float next = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            if (s[i] < t && (!found || s[i] > next)) {
                next = s[i];
                found = true;
            }
        }
        if (!found)
            break;
        t = next;
        double tp = 0.0, fp = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] >= t) {
                tp += y[i] == 1;
                fp += y[i] == 0;
            }
        }
        double r = tp / np;
        ap += (r - prev_r) * (tp / (tp + fp));
        prev_r = r;
    }
    return ap;
}

static double brute_recall(const float *s, const int32_t *y, size_t n, double max_fpr)
{
    double np = 0.0, nn = 0.0, best = 0.0;
    for (size_t i = 0; i < n; i++) {
        np += y[i] == 1;
        nn += y[i] == 0;
    }
    for (size_t k = 0; k < n; k++) { /* threshold s[k]: flag s >= s[k] */
        double tp = 0.0, fp = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] >= s[k]) {
                tp += y[i] == 1;
                fp += y[i] == 0;
            }
        }
        if (fp / nn <= max_fpr && tp / np > best)
            best = tp / np;
    }
    return best;
}

static void test_brute_force(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 21);
    enum { N = 300 };
    float s[N];
    int32_t y[N];
    for (int trial = 0; trial < 40; trial++) {
        size_t n = 2 + (size_t)fv_rng_below(&r, N - 1);
        /* few levels -> many ties; trial 0.. use fine scores */
        uint64_t levels = trial % 4 == 0 ? 1000000 : 2 + fv_rng_below(&r, 20);
        for (size_t i = 0; i < n; i++) {
            s[i] = (float)fv_rng_below(&r, levels) / (float)levels;
            if (trial % 5 == 1)
                s[i] = -s[i]; /* negative scores and -0 == +0 */
            y[i] = fv_rng_uniform(&r) < 0.3 + 0.4 * fabs((double)s[i]);
        }
        y[0] = 1;
        y[1] = 0; /* both classes present */
        double v;
        CHECK_OK(fv_metrics_roc_auc(s, y, n, &v), NULL);
        CHECK_NEAR(v, brute_roc(s, y, n), 1e-12);
        CHECK_OK(fv_metrics_pr_auc(s, y, n, &v), NULL);
        CHECK_NEAR(v, brute_ap(s, y, n), 1e-12);
        for (int i = 0; i < 5; i++) {
            CHECK_OK(fv_metrics_recall_at_fpr(s, y, n, rec_fprs[i], &v), NULL);
            CHECK_NEAR(v, brute_recall(s, y, n, rec_fprs[i]), 1e-15);
        }
        /* Order of the input does not matter (deterministic sort, grouped ties). */
        double a1, a2, p1, p2;
        CHECK_OK(fv_metrics_roc_auc(s, y, n, &a1), NULL);
        CHECK_OK(fv_metrics_pr_auc(s, y, n, &p1), NULL);
        for (size_t i = 0; i + 1 < n; i += 2) {
            float ts = s[i];
            int32_t ty = y[i];
            s[i] = s[i + 1];
            y[i] = y[i + 1];
            s[i + 1] = ts;
            y[i + 1] = ty;
        }
        CHECK_OK(fv_metrics_roc_auc(s, y, n, &a2), NULL);
        CHECK_OK(fv_metrics_pr_auc(s, y, n, &p2), NULL);
        CHECK_NEAR(a1, a2, 1e-12);
        CHECK_NEAR(p1, p2, 1e-12);
    }

    /* Perfect and reversed rankings. */
    const float s4[4] = {0.1f, 0.2f, 0.8f, 0.9f};
    const int32_t good[4] = {0, 0, 1, 1}, bad[4] = {1, 1, 0, 0};
    double v;
    CHECK_OK(fv_metrics_roc_auc(s4, good, 4, &v), NULL);
    CHECK(v == 1.0);
    CHECK_OK(fv_metrics_pr_auc(s4, good, 4, &v), NULL);
    CHECK(v == 1.0);
    CHECK_OK(fv_metrics_roc_auc(s4, bad, 4, &v), NULL);
    CHECK(v == 0.0);
    CHECK_OK(fv_metrics_pr_auc(s4, bad, 4, &v), NULL);
    CHECK_NEAR(v, (1.0 / 3 + 2.0 / 4) / 2, TOL); /* positives found at ranks 3 and 4 */
}

/* ---- histograms ------------------------------------------------------------------------ */

static void test_hist_bin(void)
{
    CHECK_UINT_EQ(fv_metrics_hist_bin(0.0f, 10), 0);
    CHECK_UINT_EQ(fv_metrics_hist_bin(-0.0f, 10), 0);
    CHECK_UINT_EQ(fv_metrics_hist_bin(-0.5f, 10), 0);
    CHECK_UINT_EQ(fv_metrics_hist_bin(-INFINITY, 10), 0);
    CHECK_UINT_EQ(fv_metrics_hist_bin(NAN, 10), 0);
    CHECK_UINT_EQ(fv_metrics_hist_bin(1.0f, 10), 9);
    CHECK_UINT_EQ(fv_metrics_hist_bin(1.5f, 10), 9);
    CHECK_UINT_EQ(fv_metrics_hist_bin(INFINITY, 10), 9);
    CHECK_UINT_EQ(fv_metrics_hist_bin(nextafterf(1.0f, 0.0f), 10), 9);
    CHECK_UINT_EQ(fv_metrics_hist_bin(0.5f, 10), 5);
    CHECK_UINT_EQ(fv_metrics_hist_bin(0.25f, 4), 1); /* on an edge: the upper bin */
    CHECK_UINT_EQ(fv_metrics_hist_bin(nextafterf(0.25f, 0.0f), 4), 0);
    /* The float's exact value decides: 0.1f = 0.10000000149 -> bin 1, but
     * 0.7f = 0.69999998808 -> bin 6 of 10. */
    CHECK_UINT_EQ(fv_metrics_hist_bin(0.1f, 10), 1);
    CHECK_UINT_EQ(fv_metrics_hist_bin(0.7f, 10), 6);
    CHECK_UINT_EQ(fv_metrics_hist_bin(0.999f, 1), 0);
    CHECK_UINT_EQ(fv_metrics_hist_bin(1e-30f, 1000), 0);
    /* monotone in the score */
    size_t prev = 0;
    for (float s = -0.01f; s < 1.01f; s += 0.0001f) {
        size_t b = fv_metrics_hist_bin(s, 997);
        CHECK(b >= prev && b < 997);
        prev = b;
    }
}

static void random_scores(fv_rng_t *r, float *s, int32_t *y, size_t n)
{
    /* P(y = 1 | s) = s: a calibrated, imperfect classifier (AUC about 0.83) */
    for (size_t i = 0; i < n; i++) {
        s[i] = (float)fv_rng_uniform(r);
        y[i] = fv_rng_uniform(r) < (double)s[i];
    }
}

static void test_hist_equals_exact(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 31);
    enum { BINS = 1000, N = 400 };
    /* Every score alone in its bin, at the bin's centre: N distinct bins out of 1000. */
    size_t bins[BINS];
    for (size_t i = 0; i < BINS; i++)
        bins[i] = i;
    fv_rng_shuffle(&r, bins, BINS);
    float s[N];
    int32_t y[N];
    for (size_t i = 0; i < N; i++) {
        s[i] = (float)((bins[i] + 0.5) / BINS);
        y[i] = fv_rng_uniform(&r) < (double)s[i];
        CHECK_UINT_EQ(fv_metrics_hist_bin(s[i], BINS), bins[i]);
    }
    uint64_t pos[BINS] = {0}, neg[BINS] = {0};
    fv_metrics_hist_add(s, y, N, BINS, pos, neg);
    double exact, hist;
    CHECK_OK(fv_metrics_roc_auc(s, y, N, &exact), NULL);
    CHECK_OK(fv_metrics_hist_roc_auc(pos, neg, BINS, &hist), NULL);
    CHECK_NEAR(hist, exact, 1e-12);
    CHECK_OK(fv_metrics_pr_auc(s, y, N, &exact), NULL);
    CHECK_OK(fv_metrics_hist_pr_auc(pos, neg, BINS, &hist), NULL);
    CHECK_NEAR(hist, exact, 1e-12);

    /* The scikit-learn vectors, ties included: with 100 bins each distinct score of v1..v4
     * has a bin of its own (0.9f = 0.89999998 lands in bin 89, 1.0 in bin 99), so the
     * histogram metrics reproduce scikit-learn's answers. */
    for (size_t c = 0; c < sizeof known / sizeof known[0]; c++) {
        const known_t *k = &known[c];
        uint64_t p100[100] = {0}, n100[100] = {0};
        fv_metrics_hist_add(k->s, k->y, k->n, 100, p100, n100);
        CHECK_OK(fv_metrics_hist_roc_auc(p100, n100, 100, &hist), NULL);
        CHECK_NEAR(hist, k->roc, TOL);
        CHECK_OK(fv_metrics_hist_pr_auc(p100, n100, 100, &hist), NULL);
        CHECK_NEAR(hist, k->ap, TOL);
    }
}

static void test_hist_close_and_additive(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 32);
    enum { BINS = 1000, N = 5000, NA = 1800 };
    static float s[N];
    static int32_t y[N];
    random_scores(&r, s, y, N);

    /* Binning merges pairs within one bin into ties; with 1000 bins about 1/1000 of the
     * positive-negative pairs share a bin, each off by at most 1/2, so |hist - exact| is
     * of order 5e-4 for ROC AUC. Average precision moves by a similar amount. */
    static uint64_t pos[BINS], neg[BINS];
    fv_metrics_hist_add(s, y, N, BINS, pos, neg);
    double exact, hist;
    CHECK_OK(fv_metrics_roc_auc(s, y, N, &exact), NULL);
    CHECK_OK(fv_metrics_hist_roc_auc(pos, neg, BINS, &hist), NULL);
    printf("# roc exact %.6f hist %.6f\n", exact, hist);
    CHECK_NEAR(hist, exact, 0.002);
    CHECK_NEAR(exact, 5.0 / 6.0, 0.03); /* the model's population AUC, a sanity check */
    CHECK_OK(fv_metrics_pr_auc(s, y, N, &exact), NULL);
    CHECK_OK(fv_metrics_hist_pr_auc(pos, neg, BINS, &hist), NULL);
    printf("# pr exact %.6f hist %.6f\n", exact, hist);
    CHECK_NEAR(hist, exact, 0.002);

    /* Two parties bin separately; the sum of their counts is the histogram of the union
     * (hist_add accumulates, it does not clear). */
    static uint64_t pa[BINS], na[BINS], pb[BINS], nb[BINS], ps[BINS], ns[BINS];
    fv_metrics_hist_add(s, y, NA, BINS, pa, na);
    fv_metrics_hist_add(s + NA, y + NA, N - NA, BINS, pb, nb);
    for (size_t b = 0; b < BINS; b++) {
        ps[b] = pa[b] + pb[b];
        ns[b] = na[b] + nb[b];
        CHECK_UINT_EQ(ps[b], pos[b]);
        CHECK_UINT_EQ(ns[b], neg[b]);
    }
    double u_roc, u_pr, s_roc, s_pr;
    CHECK_OK(fv_metrics_hist_roc_auc(pos, neg, BINS, &u_roc), NULL);
    CHECK_OK(fv_metrics_hist_pr_auc(pos, neg, BINS, &u_pr), NULL);
    CHECK_OK(fv_metrics_hist_roc_auc(ps, ns, BINS, &s_roc), NULL);
    CHECK_OK(fv_metrics_hist_pr_auc(ps, ns, BINS, &s_pr), NULL);
    CHECK(u_roc == s_roc);
    CHECK(u_pr == s_pr);
    /* accumulate party b into party a's arrays directly */
    fv_metrics_hist_add(s + NA, y + NA, N - NA, BINS, pa, na);
    CHECK(memcmp(pa, pos, sizeof pa) == 0 && memcmp(na, neg, sizeof na) == 0);
}

/* ---- errors ---------------------------------------------------------------------------- */

#define CHECK_ERR(expr, code)                                                                      \
    do {                                                                                           \
        v = SENTINEL;                                                                              \
        CHECK_INT_EQ((expr), (code));                                                              \
        CHECK(v == SENTINEL); /* out-parameter written only on success */                          \
    } while (0)

static void test_errors(void)
{
    double v;
    const float s[4] = {0.1f, 0.9f, 0.4f, 0.6f};
    const int32_t pos_only[4] = {1, 1, 1, 1}, neg_only[4] = {0, 0, 0, 0};
    const int32_t y[4] = {0, 1, 0, 1}, y_bad[4] = {0, 1, 2, 1}, y_neg[4] = {0, -1, 0, 1};
    const float s_nan[4] = {0.1f, NAN, 0.4f, 0.6f};

    /* Undefined: a class missing, or nothing at all. */
    CHECK_ERR(fv_metrics_roc_auc(s, pos_only, 4, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_roc_auc(s, neg_only, 4, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_roc_auc(s, y, 0, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_roc_auc(NULL, NULL, 0, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_pr_auc(s, pos_only, 4, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_pr_auc(s, neg_only, 4, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_pr_auc(s, y, 0, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_recall_at_fpr(s, neg_only, 4, 0.1, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_recall_at_fpr(s, pos_only, 4, 0.1, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_log_loss(s, y, 0, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_accuracy(s, y, 0, 0.5, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_mc_accuracy(s, 0, 2, y, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_mc_log_loss(s, 0, 2, y, &v), FV_EEMPTY);
    /* one class is fine where the metric is defined */
    CHECK_OK(fv_metrics_log_loss(s, pos_only, 4, &v), NULL);
    CHECK_OK(fv_metrics_accuracy(s, neg_only, 4, 0.5, &v), NULL);
    CHECK(v == 0.5);

    /* Bad labels and arguments. */
    CHECK_ERR(fv_metrics_roc_auc(s, y_bad, 4, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_pr_auc(s, y_neg, 4, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_log_loss(s, y_bad, 4, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_accuracy(s, y_bad, 4, 0.5, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_accuracy(s, y, 4, NAN, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_recall_at_fpr(s, y, 4, -0.1, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_recall_at_fpr(s, y, 4, 1.5, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_recall_at_fpr(s, y, 4, NAN, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_roc_auc(NULL, y, 4, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_roc_auc(s, NULL, 4, &v), FV_EINVAL);
    CHECK_INT_EQ(fv_metrics_roc_auc(s, y, 4, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_metrics_hist_roc_auc(NULL, NULL, 4, NULL), FV_EINVAL);
    const int32_t yc[2] = {0, 3};
    const float pc[6] = {0.5f, 0.25f, 0.25f, 0.2f, 0.3f, 0.5f};
    CHECK_ERR(fv_metrics_mc_accuracy(pc, 2, 3, yc, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_mc_log_loss(pc, 2, 3, yc, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_mc_accuracy(pc, 2, 0, yc, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_mc_accuracy(pc, SIZE_MAX / 2, 3, yc, &v), FV_EINVAL);
    const int32_t ycn[2] = {0, -1};
    CHECK_ERR(fv_metrics_mc_log_loss(pc, 2, 3, ycn, &v), FV_EINVAL);

    /* NaN is a numerical failure upstream, not a ranking. */
    CHECK_ERR(fv_metrics_roc_auc(s_nan, y, 4, &v), FV_ENUMERIC);
    CHECK_ERR(fv_metrics_pr_auc(s_nan, y, 4, &v), FV_ENUMERIC);
    CHECK_ERR(fv_metrics_recall_at_fpr(s_nan, y, 4, 0.5, &v), FV_ENUMERIC);
    CHECK_ERR(fv_metrics_log_loss(s_nan, y, 4, &v), FV_ENUMERIC);
    CHECK_ERR(fv_metrics_accuracy(s_nan, y, 4, 0.5, &v), FV_ENUMERIC);
    const float pc_nan[6] = {0.5f, 0.25f, 0.25f, 0.2f, NAN, 0.5f};
    const int32_t yc_ok[2] = {0, 2};
    CHECK_ERR(fv_metrics_mc_accuracy(pc_nan, 2, 3, yc_ok, &v), FV_ENUMERIC);
    CHECK_ERR(fv_metrics_mc_log_loss(pc_nan, 2, 3, yc_ok, &v), FV_ENUMERIC);

    /* Histograms: no bins, an empty class, counts that overflow when summed. */
    uint64_t hp[3] = {1, 2, 3}, hn[3] = {0, 0, 0};
    CHECK_ERR(fv_metrics_hist_roc_auc(hp, hp, 0, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_hist_pr_auc(hp, hp, 0, &v), FV_EINVAL);
    CHECK_ERR(fv_metrics_hist_roc_auc(hp, hn, 3, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_hist_pr_auc(hn, hp, 3, &v), FV_EEMPTY);
    CHECK_ERR(fv_metrics_hist_roc_auc(hn, hn, 3, &v), FV_EEMPTY);
    uint64_t hbig[3] = {UINT64_MAX, 1, 0};
    CHECK_ERR(fv_metrics_hist_roc_auc(hbig, hp, 3, &v), FV_ERANGE);
    CHECK_ERR(fv_metrics_hist_pr_auc(hp, hbig, 3, &v), FV_ERANGE);

    /* Infinite scores rank like any other (only NaN is refused). */
    const float s_inf[4] = {-INFINITY, INFINITY, 0.0f, 0.5f};
    CHECK_OK(fv_metrics_roc_auc(s_inf, y, 4, &v), NULL);
    CHECK(v == 1.0);
}

int main(void)
{
    test_known_answers();
    test_brute_force();
    test_hist_bin();
    test_hist_equals_exact();
    test_hist_close_and_additive();
    test_errors();
    return 0;
}
