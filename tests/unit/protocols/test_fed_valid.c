/* test_fed_valid.c - a federated round's vector as an fv_valid statement
 * (protocols/fed_valid.c).
 *
 * Five honest agents encode their round input both ways (fv_fed_valid_encode and the
 * uint32 path's fv_fed_encode); every honest w satisfies the statement, the integer sum
 * decodes to the uint32 path's result. Every tampering breaks exactly one check, and the
 * check's name is what the evaluation reports. Statements are evaluated by ref_eval, an
 * independent clear-text evaluator written here (128-bit integers, no field), and by
 * fv_valid_spec_eval, which must agree. fv_valid accepts the specs up to P = 250,000 and
 * n = 50 (the Lending Club teacher's sizes are printed); end to end at P = 64, five
 * agents prove (n = 5, t = 4), every holder checks, the decider accepts them and rejects
 * a sixth with a false statement by the check's name, the shares aggregate to the honest
 * sum, which decodes to the uint32 path's result.
 * Tolerances (per element of the mean update, against the float64 weighted mean of the
 * clipped updates): the validated path within n * step * (1 + 2^-6) / weight_sum (one
 * rounding step per agent, plus the 2^-20 relative slack the encoder absorbs of the
 * clip's float roundings) + 2^-23 relative (the float result); the uint32 path within
 * fv_fed_quant_bound. Counts and the loss sum: exactly equal; metrics: equal.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_fed.h"
#include "fv_fed_valid.h"
#include "fv_job.h"
#include "fv_test.h"
#include "fv_valid.h"

__extension__ typedef __int128 i128;

/* splitmix64: test-only randomness, independent of the code under test */
static uint64_t sm_state = 0x5eed;
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

/* The statement in the clear: NULL if w satisfies it, else the name of the first failed
 * check (norm first, then ranges, then equalities). */
static const char *ref_eval(const fv_valid_spec_t *s, const int64_t *w)
{
    i128 zz = 0;
    for (uint32_t j = 0; j < s->norm_len; j++)
        zz += (i128)w[s->norm_off + j] * w[s->norm_off + j];
    if (s->norm_len > 0 && zz > (i128)s->norm_sq)
        return "norm";
    i128 nn = 0;
    for (uint32_t i = 0; i < s->n_nonneg; i++) {
        if (w[s->nonneg[i]] < 0)
            return "nonneg";
        nn += w[s->nonneg[i]];
    }
    if (s->n_nonneg > 0 && nn > (i128)s->nonneg_sum)
        return "nonneg";
    for (uint32_t i = 0; i < s->n_ranges; i++) {
        const fv_valid_affine_t *a = &s->ranges[i];
        i128 e = a->constant;
        for (uint32_t k = 0; k < a->n_terms; k++)
            e += (i128)a->terms[k].coef * w[a->terms[k].index];
        if (e < 0 || e >= ((i128)1 << a->bits))
            return a->name;
    }
    for (uint32_t i = 0; i < s->n_equal; i++) {
        const fv_valid_affine_t *a = &s->equal[i];
        i128 e = a->constant;
        for (uint32_t k = 0; k < a->n_terms; k++)
            e += (i128)a->terms[k].coef * w[a->terms[k].index];
        if (e != 0)
            return a->name;
    }
    return NULL;
}

/* fv_valid_spec_eval agrees with ref_eval on honest and tampered vectors. */
static void check_eval_agrees(const fv_valid_spec_t *s, const int64_t *w)
{
    fv_diag_t d = {{0}};
    const char *want = ref_eval(s, w);
    int r = fv_valid_spec_eval(s, w, &d);
    if (want == NULL) {
        CHECK_OK(r, &d);
    } else {
        CHECK_INT_EQ(r, FV_ERANGE);
        CHECK_CONTAINS(d.msg, want);
    }
}

/* Every word outside the norm block is in exactly one single-word range or the non-negative
 * set (fv_valid's rule; the spec's own invariant). */
static void check_coverage(const fv_valid_spec_t *s)
{
    uint32_t *seen = calloc(s->dim, sizeof *seen);
    CHECK(seen);
    for (uint32_t i = 0; i < s->n_ranges; i++)
        if (s->ranges[i].n_terms == 1 && s->ranges[i].terms[0].coef == 1 &&
            s->ranges[i].constant == 0)
            seen[s->ranges[i].terms[0].index]++;
    for (uint32_t i = 0; i < s->n_nonneg; i++)
        seen[s->nonneg[i]]++;
    for (uint32_t j = 0; j < s->dim; j++)
        CHECK_UINT_EQ(seen[j], j >= s->norm_off && j < s->norm_off + s->norm_len ? 0 : 1);
    free(seen);
}

static fv_job_t test_job(double max_norm)
{
    fv_job_t job;
    memset(&job, 0, sizeof job);
    strcpy(job.name, "valid-test");
    job.secagg.on = true;
    job.secagg.clip = 0.05f;
    job.secagg.bits = 16;
    job.max_update_norm = max_norm;
    return job;
}

/* ---- the spec ------------------------------------------------------------------------- */

static void test_spec_shape(void)
{
    fv_diag_t d = {{0}};
    fv_job_t job = test_job(0.05);
    fv_fed_layout_t l;
    fv_fed_valid_t v;

    /* binary, two models: 300 params, 20 bins */
    fv_fed_layout_init(&l, 300, 2, 20, 0);
    CHECK_OK(fv_fed_valid_init(&l, &job, &v, &d), &d);
    CHECK_UINT_EQ(v.spec.dim, l.plain_dim);
    CHECK_UINT_EQ(v.spec.dim, 300 + 1 + 80 + 1 + 1);
    CHECK_UINT_EQ(v.spec.norm_len, 300);
    CHECK_UINT_EQ(v.spec.norm_sq, (16384u + 18u) * (16384u + 18u)); /* ceil(sqrt(300)) = 18 */
    CHECK_UINT_EQ(v.spec.n_ranges, 4);
    CHECK_UINT_EQ(v.spec.n_equal, 2);
    CHECK_NEAR(v.step, 0.05 / 16384, 0);
    CHECK_STR_EQ(v.ranges[0].name, "n_train");
    CHECK_UINT_EQ(v.spec.n_nonneg, 80); /* the bins: 2 models x 20 bins x pos/neg */
    CHECK_UINT_EQ(v.spec.nonneg[3], v.off_hist_pos + 3);
    CHECK_UINT_EQ(v.spec.nonneg[40 + 20 + 7], v.off_hist_neg + 20 + 7);
    CHECK_UINT_EQ(v.spec.nonneg_sum, 2u * 65537u);
    CHECK_STR_EQ(v.ranges[1].name, "loss>=0");
    CHECK_UINT_EQ(v.ranges[1].bits, 53);
    CHECK_STR_EQ(v.ranges[2].name, "loss<=17*n_val");
    CHECK_STR_EQ(v.ranges[3].name, "n_val");
    CHECK_STR_EQ(v.equal[0].name, "hist_sum=n_val[m0]");
    CHECK_STR_EQ(v.equal[1].name, "hist_sum=n_val[m1]");
    CHECK_UINT_EQ(v.equal[1].n_terms, 41);
    check_coverage(&v.spec);
    fv_fed_valid_close(&v);
    fv_fed_valid_close(&v); /* closed twice: zeroed, harmless */
    fv_fed_valid_close(NULL);

    /* multi-class, two models, 3 classes */
    fv_fed_layout_init(&l, 300, 2, 0, 3);
    CHECK_OK(fv_fed_valid_init(&l, &job, &v, &d), &d);
    CHECK_UINT_EQ(v.spec.dim, 300 + 1 + 1 + 1 + 3 + 6);
    CHECK_UINT_EQ(v.spec.n_ranges, 12 + 1 + 6);
    CHECK_UINT_EQ(v.spec.n_equal, 1);
    CHECK_STR_EQ(v.ranges[6].name, "class_n[2]");
    CHECK_STR_EQ(v.ranges[7].name, "class_right[m0][0]");
    CHECK_STR_EQ(v.ranges[8].name, "right<=rows[m0][0]");
    CHECK_STR_EQ(v.ranges[18].name, "right<=rows[m1][2]");
    CHECK_STR_EQ(v.equal[0].name, "class_sum=n_val");
    check_coverage(&v.spec);
    fv_fed_valid_close(&v);

    /* a perfect square: ceil(sqrt(256)) = 16 */
    fv_fed_layout_init(&l, 256, 1, 4, 0);
    CHECK_OK(fv_fed_valid_init(&l, &job, &v, &d), &d);
    CHECK_UINT_EQ(v.spec.norm_sq, (16384u + 16u) * (16384u + 16u));
    fv_fed_valid_close(&v);

    /* no max_update_norm: no validation */
    job.max_update_norm = 0;
    CHECK_INT_EQ(fv_fed_valid_init(&l, &job, &v, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "max_update_norm");
    job.max_update_norm = NAN;
    CHECK_INT_EQ(fv_fed_valid_init(&l, &job, &v, &d), FV_EINVAL);
    job.max_update_norm = 0.05;
    /* over fv_valid's dimension cap */
    fv_fed_layout_init(&l, (size_t)FV_VALID_MAX_DIM, 1, 20, 0);
    CHECK_INT_EQ(fv_fed_valid_init(&l, &job, &v, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "more than");
    CHECK_INT_EQ(fv_fed_valid_init(NULL, &job, &v, &d), FV_EINVAL);
}

/* ---- an honest cohort ----------------------------------------------------------------- */

enum { N_AGENTS = 5, MAX_P = 512, MAX_M = 3, MAX_B = 20, MAX_K = 4 };

typedef struct agent {
    float delta[MAX_P];
    uint64_t hp[MAX_M * MAX_B], hn[MAX_M * MAX_B], cn[MAX_K], cr[MAX_M * MAX_K];
    fv_fed_local_t in;
} agent_t;

/* Agent k's local input for layout l, its update clipped to job's max_update_norm.
 * big: every update well over the bound (so the clip binds). */
static void make_agent(const fv_fed_layout_t *l, const fv_job_t *job, double n_ref, bool big,
                       agent_t *a)
{
    fv_diag_t d = {{0}};
    memset(a, 0, sizeof *a);
    uint32_t n_train = 100 + (uint32_t)(sm_next() % 400), nv = 30 + (uint32_t)(sm_next() % 20);
    double loss = 0;
    for (uint32_t i = 0; i < nv; i++) {
        uint32_t y = (uint32_t)(sm_next() % (l->n_classes ? l->n_classes : 2));
        loss += 16.0 * sm_unif();
        for (size_t m = 0; m < l->n_models; m++) {
            if (l->hist_bins > 0) {
                size_t b = (size_t)(sm_next() % l->hist_bins);
                (y ? a->hp : a->hn)[m * l->hist_bins + b]++;
            }
            if (l->n_classes > 0 && sm_unif() < 0.6)
                a->cr[m * l->n_classes + y]++;
        }
        if (l->n_classes > 0)
            a->cn[y]++;
    }
    for (size_t i = 0; i < l->n_params; i++)
        a->delta[i] = (float)((sm_unif() - 0.5) * (big ? 3.0 : 0.002));
    double norm;
    bool clipped;
    CHECK_OK(fv_fed_update_clip(a->delta, l->n_params, n_train / n_ref, job->max_update_norm, &norm,
                                &clipped, &d),
             &d);
    CHECK(clipped == big);
    a->in = (fv_fed_local_t){.delta = a->delta,
                             .n_train = n_train,
                             .n_ref = n_ref,
                             .hist_pos = a->hp,
                             .hist_neg = a->hn,
                             .loss_sum = loss,
                             .n_val = nv,
                             .class_n = a->cn,
                             .class_right = a->cr};
}

static void check_same_metrics(const fv_fed_result_t *a, const fv_fed_result_t *b,
                               const fv_fed_layout_t *l)
{
    CHECK_UINT_EQ(a->n_train, b->n_train);
    CHECK_UINT_EQ(a->n_val, b->n_val);
    CHECK(a->weight_sum == b->weight_sum);
    CHECK(a->loss_sum == b->loss_sum); /* the same integer sum of round(loss * 2^32) */
    for (size_t i = 0; i < l->n_models * l->hist_bins; i++) {
        CHECK_UINT_EQ(a->hist_pos[i], b->hist_pos[i]);
        CHECK_UINT_EQ(a->hist_neg[i], b->hist_neg[i]);
    }
    for (size_t k = 0; k < l->n_classes; k++)
        CHECK_UINT_EQ(a->class_n[k], b->class_n[k]);
    for (size_t k = 0; k < l->n_models * l->n_classes; k++)
        CHECK_UINT_EQ(a->class_right[k], b->class_right[k]);
    for (size_t m = 0; m < FV_FED_MAX_MODELS; m++) {
        CHECK(a->model[m].roc_auc == b->model[m].roc_auc ||
              (isnan(a->model[m].roc_auc) && isnan(b->model[m].roc_auc)));
        CHECK(a->model[m].pr_auc == b->model[m].pr_auc ||
              (isnan(a->model[m].pr_auc) && isnan(b->model[m].pr_auc)));
        CHECK(a->model[m].accuracy == b->model[m].accuracy ||
              (isnan(a->model[m].accuracy) && isnan(b->model[m].accuracy)));
    }
    CHECK(a->val_log_loss == b->val_log_loss);
}

/* One tampering of w: exactly the named check fails. */
static void check_tamper(const fv_fed_valid_t *v, const int64_t *w, int64_t *bad, const char *name)
{
    check_eval_agrees(&v->spec, bad); /* fv_valid's own evaluation names it too */
    const char *got = ref_eval(&v->spec, bad);
    if (got == NULL || strcmp(got, name) != 0)
        fprintf(stderr, "tamper %s: ref_eval says %s\n", name, got ? got : "(ok)");
    CHECK(got != NULL);
    CHECK_STR_EQ(got, name);
    memcpy(bad, w, v->spec.dim * sizeof *bad);
}

/* Five agents on layout l: honest encodings pass, tamperings fail by name, the validated
 * sum decodes to the uint32 path's result. */
static void test_cohort(size_t P, size_t M, size_t B, size_t K, bool big)
{
    fv_diag_t d = {{0}};
    fv_job_t job = test_job(0.05);
    const double n_ref = 4000;
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, P, M, B, K);
    fv_fed_valid_t v;
    CHECK_OK(fv_fed_valid_init(&l, &job, &v, &d), &d);
    size_t D = v.spec.dim;
    int64_t *w = malloc(D * sizeof *w), *bad = malloc(D * sizeof *bad),
            *sum = calloc(D, sizeof *sum);
    uint32_t *u = malloc(l.dim * sizeof *u), *usum = calloc(l.dim, sizeof *usum);
    double *truth = calloc(P, sizeof *truth);
    agent_t *a = malloc(sizeof *a);
    CHECK(w && bad && sum && u && usum && truth && a);
    double ws = 0;
    for (int k = 0; k < N_AGENTS; k++) {
        make_agent(&l, &job, n_ref, big, a);
        fv_rand_t rng;
        fv_rand_seeded_u64(&rng, 100 + (uint64_t)k);
        CHECK_OK(fv_fed_valid_encode(&v, &a->in, &rng, w, &d), &d);
        const char *fail = ref_eval(&v.spec, w);
        if (fail != NULL)
            fprintf(stderr, "honest agent %d fails %s\n", k, fail);
        CHECK(fail == NULL);
        check_eval_agrees(&v.spec, w);
        fv_rand_seeded_u64(&rng, 200 + (uint64_t)k);
        CHECK_OK(fv_fed_encode(&l, &a->in, job.secagg.clip, job.secagg.bits, &rng, u, &d), &d);
        for (size_t i = 0; i < D; i++)
            sum[i] += w[i];
        for (size_t i = 0; i < l.dim; i++)
            usum[i] += u[i];
        double wk = a->in.n_train / n_ref;
        ws += wk;
        for (size_t i = 0; i < P; i++)
            truth[i] += wk * (double)a->delta[i];

        if (k != 0)
            continue;
        /* tamperings of agent 0's vector, each breaking one check */
        memcpy(bad, w, D * sizeof *bad);
        bad[v.off_n_train] = 1 << 17;
        check_tamper(&v, w, bad, "n_train");
        bad[v.off_loss] = 17 * (INT64_C(1) << 32) * w[v.off_n_val] + 1;
        check_tamper(&v, w, bad, "loss<=17*n_val");
        bad[v.off_loss] = -1;
        check_tamper(&v, w, bad, "loss>=0");
        for (size_t i = 0; i < P; i++) /* 10 % over the norm */
            bad[i] = (int64_t)llround(1.1 * 16384.0 / sqrt((double)P)) * (i % 2 ? 1 : -1);
        check_tamper(&v, w, bad, "norm");
        for (size_t i = 0; i < P; i++) /* +clip on every coordinate */
            bad[i] = (int64_t)llround(job.secagg.clip / v.step);
        check_tamper(&v, w, bad, "norm");
        for (size_t i = 0; i < P; i++) /* the 2^31 attack */
            bad[i] += INT64_C(1) << 31;
        check_tamper(&v, w, bad, "norm");
        if (B > 0) {
            /* a bin at -1, its neighbour +1: the sum still holds, non-negativity fails */
            bad[v.off_hist_pos + 3] = -1;
            bad[v.off_hist_pos + 4] += w[v.off_hist_pos + 3] + 1;
            check_tamper(&v, w, bad, "nonneg");
            bad[v.off_hist_neg + (M - 1) * B + 7]++;
            char name[48];
            snprintf(name, sizeof name, "hist_sum=n_val[m%zu]", M - 1);
            check_tamper(&v, w, bad, name);
        }
        if (K > 0) {
            bad[v.off_class_n + 1]++;
            check_tamper(&v, w, bad, "class_sum=n_val");
            bad[v.off_class_right + (M - 1) * K + 2] = w[v.off_class_n + 2] + 1;
            char name[48];
            snprintf(name, sizeof name, "right<=rows[m%zu][2]", M - 1);
            check_tamper(&v, w, bad, name);
            bad[v.off_class_right + 1] = -1;
            check_tamper(&v, w, bad, "class_right[m0][1]");
        }
    }

    /* the validated sum decodes to the uint32 path's result */
    fv_fed_result_t rv, ru;
    CHECK_OK(fv_fed_valid_decode(&v, sum, N_AGENTS, n_ref, &rv, &d), &d);
    CHECK_OK(fv_fed_decode(&l, usum, N_AGENTS, job.secagg.clip, job.secagg.bits, n_ref, &ru, &d),
             &d);
    check_same_metrics(&rv, &ru, &l);
    CHECK_OK(fv_fed_sum_check(&l, &job, NULL, N_AGENTS, n_ref, &rv, &d), &d);
    double qb = fv_fed_quant_bound(N_AGENTS, job.secagg.clip, job.secagg.bits, ru.weight_sum);
    double vb = N_AGENTS * v.step * (1 + 0x1p-6) / ws;
    double worst = 0;
    for (size_t i = 0; i < P; i++) {
        double t = truth[i] / ws;
        CHECK_NEAR(rv.delta_mean[i], t, vb + fabs(t) * 0x1p-23);
        CHECK_NEAR(ru.delta_mean[i], t, qb);
        CHECK_NEAR(rv.delta_mean[i], ru.delta_mean[i], vb + qb + fabs(t) * 0x1p-23);
        double e = fabs(rv.delta_mean[i] - t) / vb;
        worst = e > worst ? e : worst;
    }
    printf("cohort P=%zu M=%zu B=%zu K=%zu%s: validated update within %.3f of its bound %.3g\n", P,
           M, B, K, big ? " (clipped)" : "", worst, vb);
    fv_fed_result_close(&rv);
    fv_fed_result_close(&ru);

    /* decode refusals */
    CHECK_INT_EQ(fv_fed_valid_decode(&v, sum, 0, n_ref, &rv, &d), FV_EEMPTY);
    CHECK_INT_EQ(fv_fed_valid_decode(&v, sum, FV_FED_VALID_MAX_SUMMANDS + 1, n_ref, &rv, &d),
                 FV_EOVERFLOW);
    CHECK_INT_EQ(fv_fed_valid_decode(&v, sum, N_AGENTS, 0, &rv, &d), FV_EINVAL);
    memcpy(bad, sum, D * sizeof *bad);
    bad[v.off_n_val] = -3;
    CHECK_INT_EQ(fv_fed_valid_decode(&v, bad, N_AGENTS, n_ref, &rv, &d), FV_EPEER);
    CHECK_CONTAINS(d.msg, "is -3, outside");
    bad[v.off_n_val] = sum[v.off_n_val];
    bad[v.off_loss] = -1;
    CHECK_INT_EQ(fv_fed_valid_decode(&v, bad, N_AGENTS, n_ref, &rv, &d), FV_EPEER);
    CHECK_CONTAINS(d.msg, "loss");
    bad[v.off_loss] = sum[v.off_loss];
    bad[v.off_n_train] = 0;
    CHECK_INT_EQ(fv_fed_valid_decode(&v, bad, N_AGENTS, n_ref, &rv, &d), FV_EEMPTY);

    free(w), free(bad), free(sum), free(u), free(usum), free(truth), free(a);
    fv_fed_valid_close(&v);
}

/* ---- the encoder's refusals ----------------------------------------------------------- */

static void test_encode_errors(void)
{
    fv_diag_t d = {{0}};
    fv_job_t job = test_job(0.05);
    const double n_ref = 4000;
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, 100, 1, 10, 0);
    fv_fed_valid_t v;
    CHECK_OK(fv_fed_valid_init(&l, &job, &v, &d), &d);
    agent_t *a = malloc(sizeof *a);
    int64_t *w = malloc(v.spec.dim * sizeof *w);
    CHECK(a && w);
    make_agent(&l, &job, n_ref, true, a);
    fv_rand_t rng, ref;
    uint8_t x[16], y[16];
#define REFUSED(stmt, undo, code, needle)                                                          \
    do {                                                                                           \
        stmt;                                                                                      \
        fv_rand_seeded_u64(&rng, 9);                                                               \
        fv_rand_seeded_u64(&ref, 9);                                                               \
        CHECK_INT_EQ(fv_fed_valid_encode(&v, &a->in, &rng, w, &d), code);                          \
        CHECK_CONTAINS(d.msg, needle);                                                             \
        fv_rand_fill(&rng, x, sizeof x); /* the rng was not touched */                             \
        fv_rand_fill(&ref, y, sizeof y);                                                           \
        CHECK(memcmp(x, y, sizeof x) == 0);                                                        \
        undo;                                                                                      \
    } while (0)
    uint64_t keep = a->hp[3];
    REFUSED(a->hp[3] = FV_FED_RAW_MAX + 1, a->hp[3] = keep, FV_EOVERFLOW, "histogram bin 3");
    double loss = a->in.loss_sum;
    REFUSED(a->in.loss_sum = -1, a->in.loss_sum = loss, FV_ERANGE, "outside [0, 17 * n_val");
    REFUSED(a->in.loss_sum = 17.5 * a->in.n_val, a->in.loss_sum = loss, FV_ERANGE,
            "outside [0, 17");
    REFUSED(a->in.loss_sum = NAN, a->in.loss_sum = loss, FV_ENUMERIC, "loss sum is nan");
    float kd = a->delta[7];
    REFUSED(a->delta[7] = NAN, a->delta[7] = kd, FV_ENUMERIC, "parameter 7 is nan");
    /* an unclipped update: the caller's bug, refused */
    REFUSED(a->delta[7] += 1.0f, a->delta[7] = kd, FV_ERANGE, "clip it first");
    REFUSED(a->in.n_ref = 0, a->in.n_ref = n_ref, FV_EINVAL, "n_ref");
#undef REFUSED
    fv_rand_seeded_u64(&rng, 9);
    CHECK_OK(fv_fed_valid_encode(&v, &a->in, &rng, w, &d), &d);
    CHECK(ref_eval(&v.spec, w) == NULL);
    CHECK_INT_EQ(fv_fed_valid_encode(&v, NULL, &rng, w, &d), FV_EINVAL);
    free(a), free(w);
    fv_fed_valid_close(&v);
}

/* Stochastic rounding is unbiased: the mean of many encodings of one update is the
 * update within 4 standard errors (each z_j's variance is at most 1/4). */
static void test_rounding_unbiased(void)
{
    fv_diag_t d = {{0}};
    fv_job_t job = test_job(1.0);
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, 8, 1, 1, 0);
    fv_fed_valid_t v;
    CHECK_OK(fv_fed_valid_init(&l, &job, &v, &d), &d);
    float delta[8];
    for (int i = 0; i < 8; i++)
        delta[i] = (float)((i - 3.5) * 0.37 / 16384); /* fractional numbers of steps */
    uint64_t hp[1] = {1}, hn[1] = {0};
    fv_fed_local_t in = {.delta = delta,
                         .n_train = 10,
                         .n_ref = 10,
                         .hist_pos = hp,
                         .hist_neg = hn,
                         .loss_sum = 0.5,
                         .n_val = 1};
    int64_t w[8 + 5];
    double acc[8] = {0};
    fv_rand_t rng;
    fv_rand_seeded_u64(&rng, 5);
    const int T = 4000;
    for (int t = 0; t < T; t++) {
        CHECK_OK(fv_fed_valid_encode(&v, &in, &rng, w, &d), &d);
        for (int i = 0; i < 8; i++)
            acc[i] += (double)w[i];
    }
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(acc[i] / T, (double)delta[i] * 16384, 4 * 0.5 / sqrt(T));
    fv_fed_valid_close(&v);
}

/* ---- with fv_valid (protocols/valid.c) ------------------------------------------------ */

/* fv_valid accepts the round specs up to P = 250,000 and n = 50; prints the Lending Club
 * teacher's numbers (P = 23,681: 119 inputs (17 numeric, 102 one-hot) -> 128 -> 64 -> 1,
 * a training round: 1 model, 1000 bins). */
static void test_layouts(void)
{
    fv_diag_t d = {{0}};
    fv_job_t job = test_job(1.0);
    const size_t Ps[] = {1, 64, 23681, 250000};
    const uint32_t ns[] = {3, 5, 6, 10, 50};
    const size_t shapes[][3] = {{1, 1000, 0}, {3, 1000, 0}, {1, 0, 50}, {3, 0, 50}};
    for (size_t p = 0; p < sizeof Ps / sizeof *Ps; p++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            fv_fed_layout_t l;
            fv_fed_layout_init(&l, Ps[p], shapes[s][0], shapes[s][1], shapes[s][2]);
            fv_fed_valid_t v;
            CHECK_OK(fv_fed_valid_init(&l, &job, &v, &d), &d);
            for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
                fv_valid_layout_t vl;
                CHECK_OK(fv_valid_layout_init(&v.spec, ns[k], ns[k] / 2 + 1, &vl, &d), &d);
                CHECK_UINT_EQ(vl.d, Ps[p]);
            }
            fv_fed_valid_close(&v);
        }
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, 23681, 1, 1000, 0);
    fv_fed_valid_t v;
    CHECK_OK(fv_fed_valid_init(&l, &job, &v, &d), &d);
    const uint32_t lc[][2] = {{6, 4}, {10, 6}};
    for (size_t k = 0; k < 2; k++) {
        fv_valid_layout_t vl;
        CHECK_OK(fv_valid_layout_init(&v.spec, lc[k][0], lc[k][1], &vl, &d), &d);
        printf("lending-club teacher n=%u t=%u: D=%u d=%u K=%u (range %u, slack %u, proj %u; "
               "bp %u) m=%u L=%u S=%u payload %zu B, header %zu B, vshare %zu B, aggshare %zu "
               "B; per prover out (n-1)*payload = %zu B\n",
               vl.n, vl.t, v.spec.dim, vl.d, vl.n_range_bits + vl.bs + vl.n_proj_bits,
               vl.n_range_bits, vl.bs, vl.n_proj_bits, vl.bp, vl.m, vl.L, vl.S, vl.payload_bytes,
               vl.header_bytes, vl.vshare_bytes, vl.aggshare_bytes,
               (size_t)(vl.n - 1) * vl.payload_bytes);
    }
    fv_fed_valid_close(&v);
}

/* End to end at P = 64: 5 agents (n = 5, t = 4) prove, every holder checks, the decider
 * decides, a sixth prover with a false statement is rejected by name and left out, the
 * holders' aggregate shares give the honest sum, which decodes to the uint32 path's
 * result. */
enum { E2E_N = 5, E2E_T = 4, E2E_P = 64 };
static void test_end_to_end(size_t M, size_t B, size_t K, const char *attack)
{
    fv_diag_t d = {{0}};
    fv_job_t job = test_job(0.05);
    const double n_ref = 4000;
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, E2E_P, M, B, K);
    fv_fed_valid_t v;
    CHECK_OK(fv_fed_valid_init(&l, &job, &v, &d), &d);
    fv_valid_layout_t vl;
    CHECK_OK(fv_valid_layout_init(&v.spec, E2E_N, E2E_T, &vl, &d), &d);
    size_t D = v.spec.dim;
    int64_t *w = malloc(D * sizeof *w), *sum = calloc(D, sizeof *sum),
            *out = malloc(D * sizeof *out);
    uint32_t *u = malloc(l.dim * sizeof *u), *usum = calloc(l.dim, sizeof *usum);
    agent_t *a = malloc(sizeof *a);
    CHECK(w && sum && out && u && usum && a);
    /* held[x-1][k]: holder x's shares of prover k's input (accepted provers only) */
    fv_valid_held_t *held[E2E_N][E2E_N + 1];
    uint32_t n_acc = 0;
    for (uint32_t k = 0; k <= E2E_N; k++) { /* prover E2E_N is the cheater */
        make_agent(&l, &job, n_ref, true, a);
        fv_rand_t rng;
        fv_rand_seeded_u64(&rng, 300 + k);
        CHECK_OK(fv_fed_valid_encode(&v, &a->in, &rng, w, &d), &d);
        check_eval_agrees(&v.spec, w);
        bool cheat = k == E2E_N;
        if (cheat) {
            if (strcmp(attack, "norm") == 0)
                for (size_t i = 0; i < E2E_P; i++) /* +clip on every coordinate */
                    w[i] = (int64_t)llround(job.secagg.clip / v.step);
            else if (strcmp(attack, "nonneg") == 0) { /* a bin at -1, the sum kept */
                w[v.off_hist_pos + 2] += w[v.off_hist_pos + 1] + 1;
                w[v.off_hist_pos + 1] = -1;
            } else if (B > 0)
                w[v.off_hist_pos + 1]++;
            else
                w[v.off_class_n + 1]++;
            check_eval_agrees(&v.spec, w);
        }
        uint8_t pk[FV_SIGN_PK_BYTES], ctx[FV_HASH_BYTES];
        memset(pk, (int)k + 1, sizeof pk);
        fv_valid_context("valid-fed", 7, 3, k, pk, ctx);
        fv_valid_proof_t *pf = NULL;
        if (cheat) {
            CHECK_INT_EQ(fv_valid_prove(&v.spec, E2E_N, E2E_T, ctx, w, &rng, &pf, &d), FV_ERANGE);
            CHECK_CONTAINS(d.msg, attack);
            CHECK_OK(fv_valid_prove_unchecked(&v.spec, E2E_N, E2E_T, ctx, w, &rng, &pf, &d), &d);
        } else {
            CHECK_OK(fv_valid_prove(&v.spec, E2E_N, E2E_T, ctx, w, &rng, &pf, &d), &d);
        }
        fv_valid_held_t *h[E2E_N];
        uint8_t *vs[E2E_N];
        size_t vlen[E2E_N];
        for (uint32_t x = 1; x <= E2E_N; x++)
            CHECK_OK(fv_valid_holder_check(&v.spec, E2E_N, E2E_T, x, ctx, pf->header,
                                           pf->header_len, pf->payloads[x - 1], pf->payload_len,
                                           &h[x - 1], &vs[x - 1], &vlen[x - 1], &d),
                     &d);
        fv_valid_verdict_t vd;
        CHECK_OK(fv_valid_decide(&v.spec, E2E_N, E2E_T, pf->header, pf->header_len,
                                 (const uint8_t *const *)vs, vlen, E2E_N, &vd, &d),
                 &d);
        CHECK(vd.ok == !cheat);
        if (cheat) {
            printf("end to end M=%zu B=%zu K=%zu: attack %s rejected by check \"%s\"\n", M, B, K,
                   attack, vd.check);
            /* +clip everywhere: the norm identity or, first, the projections' range */
            if (strcmp(attack, "norm") == 0 && strstr(vd.check, "norm") == NULL)
                CHECK_STR_EQ(vd.check, "wraparound");
            else
                CHECK_CONTAINS(vd.check, attack);
            for (uint32_t x = 0; x < E2E_N; x++)
                fv_valid_held_free(h[x]);
        } else {
            for (uint32_t x = 0; x < E2E_N; x++)
                held[x][n_acc] = h[x];
            n_acc++;
            for (size_t i = 0; i < D; i++)
                sum[i] += w[i];
            fv_rand_seeded_u64(&rng, 400 + k);
            CHECK_OK(fv_fed_encode(&l, &a->in, job.secagg.clip, job.secagg.bits, &rng, u, &d), &d);
            for (size_t i = 0; i < l.dim; i++)
                usum[i] += u[i];
        }
        for (uint32_t x = 0; x < E2E_N; x++)
            free(vs[x]);
        fv_valid_proof_free(pf);
    }
    CHECK_UINT_EQ(n_acc, E2E_N);

    /* aggregation on the shares */
    uint8_t sum_id[FV_HASH_BYTES];
    memset(sum_id, 0x5a, sizeof sum_id);
    uint8_t *ag[E2E_N];
    size_t aglen[E2E_N];
    for (uint32_t x = 0; x < E2E_N; x++)
        CHECK_OK(fv_valid_aggshare(&vl, sum_id, (const fv_valid_held_t *const *)held[x], n_acc,
                                   &ag[x], &aglen[x], &d),
                 &d);
    uint32_t outlier = 99;
    CHECK_OK(fv_valid_aggregate(&vl, sum_id, (const uint8_t *const *)ag, aglen, E2E_N, out,
                                &outlier, &d),
             &d);
    CHECK_UINT_EQ(outlier, 0);
    for (size_t i = 0; i < D; i++)
        CHECK_INT_EQ(out[i], sum[i]);

    fv_fed_result_t rv, ru;
    CHECK_OK(fv_fed_valid_decode(&v, out, n_acc, n_ref, &rv, &d), &d);
    CHECK_OK(fv_fed_decode(&l, usum, n_acc, job.secagg.clip, job.secagg.bits, n_ref, &ru, &d), &d);
    check_same_metrics(&rv, &ru, &l);
    double qb = fv_fed_quant_bound(n_acc, job.secagg.clip, job.secagg.bits, ru.weight_sum);
    double vb = n_acc * v.step * (1 + 0x1p-6) / rv.weight_sum;
    for (size_t i = 0; i < E2E_P; i++)
        CHECK_NEAR(rv.delta_mean[i], ru.delta_mean[i],
                   vb + qb + fabs((double)ru.delta_mean[i]) * 0x1p-22);
    fv_fed_result_close(&rv);
    fv_fed_result_close(&ru);
    for (uint32_t x = 0; x < E2E_N; x++) {
        free(ag[x]);
        for (uint32_t k = 0; k < n_acc; k++)
            fv_valid_held_free(held[x][k]);
    }
    free(w), free(sum), free(out), free(u), free(usum), free(a);
    fv_fed_valid_close(&v);
}

int main(void)
{
    test_spec_shape();
    test_encode_errors();
    test_rounding_unbiased();
    test_cohort(300, 1, 20, 0, true);  /* a training round, binary, every update clipped */
    test_cohort(300, 2, 20, 0, false); /* a distill round, binary */
    test_cohort(257, 3, 20, 0, true);  /* quantize_int8: three models */
    test_cohort(300, 2, 0, 4, true);   /* multi-class */
    test_cohort(64, 1, 0, 3, false);
    test_layouts();
    test_end_to_end(1, 20, 0, "hist_sum=n_val[m0]");
    test_end_to_end(1, 20, 0, "norm");
    test_end_to_end(2, 20, 0, "nonneg");
    test_end_to_end(2, 0, 3, "class_sum=n_val");
    return 0;
}
