/* test_round_explain.c - the explain round (fv_round_explain.h) end to end in the round
 * simulator: four banks of the German credit data explain one MLP through SecAgg and in
 * the clear, and the decoded mean |contribution| per column must equal the pooled mean
 * computed here directly with fv_explain on every bank's validation rows (to the stated
 * precision: SecAgg's fixed point, float32 in the clear), clipped rows included; hostile
 * plain vectors and sums are refused; an agent refuses a ROUND_START of kind explain that
 * names a model other than the final one it holds; the spec key and the round numbering.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fv_dataset.h"
#include "fv_explain.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_round.h"
#include "fv_round_explain.h"
#include "fv_round_sim.h"
#include "fv_schema.h"
#include "fv_test.h"
#include "round_banks.h"

#define NB ROUND_BANKS

static fv_job_t *job_of(const char *json)
{
    fv_job_t *j = NULL;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_job_from_json("job", json, strlen(json), &j, &d), &d);
    return j;
}

/* A job on schema s: mlp:8, 3 rounds, explain on, SecAgg on or off (extra: more keys). */
static fv_job_t *explain_job(const fv_schema_t *s, bool secagg, const char *extra)
{
    char *sj = NULL;
    size_t sl = 0;
    CHECK_OK(fv_schema_to_json(s, &sj, &sl), NULL);
    size_t cap = sl + 512;
    char *js = malloc(cap);
    CHECK(js != NULL);
    snprintf(js, cap,
             "{\"name\":\"x\",\"schema\":%s,\"model\":\"mlp:8\",\"rounds\":3,\"min_agents\":3,"
             "\"hist_bins\":100,\"explain\":true%s%s}",
             sj, secagg ? "" : ",\"secagg\":\"off\"", extra);
    fv_job_t *j = job_of(js);
    free(js);
    free(sj);
    return j;
}

/* The pooled mean of min(|contribution|, cap) per explained column over every bank's
 * validation rows, computed directly; *ret_rows, *ret_clipped the rows and clipped rows. */
static void pooled(const bank_t *b, const fv_mlp_t *m, const fv_preproc_t *pp, const fv_schema_t *s,
                   const size_t *cols, size_t C, double *mean, uint64_t *ret_rows,
                   uint64_t *ret_clipped)
{
    fv_explain_t *e = NULL;
    CHECK_OK(fv_explain_new(m, pp, s, FV_ROUND_EXPLAIN_STEPS, &e), NULL);
    double *contrib = malloc(fv_schema_n_columns(s) * sizeof *contrib);
    CHECK(contrib != NULL);
    memset(mean, 0, C * sizeof *mean);
    uint64_t rows = 0, clipped = 0;
    for (int k = 0; k < NB; k++)
        for (size_t i = 0; i < b[k].n_va; i++) {
            fv_explain_result_t res;
            CHECK_OK(fv_explain_row(e, b[k].x_va + i * b[k].data.n_feat, 0, contrib, &res), NULL);
            bool cl = false;
            for (size_t c = 0; c < C; c++) {
                double a = fabs(contrib[cols[c]]);
                cl = cl || a > FV_ROUND_EXPLAIN_CAP;
                mean[c] += a > FV_ROUND_EXPLAIN_CAP ? FV_ROUND_EXPLAIN_CAP : a;
            }
            clipped += cl;
            rows++;
        }
    for (size_t c = 0; c < C; c++)
        mean[c] /= (double)rows;
    *ret_rows = rows;
    *ret_clipped = clipped;
    free(contrib);
    fv_explain_free(e);
}

/* The decoded explanation equals the pooled one: SecAgg to its fixed point (each agent's
 * sum rounded once by <= 2^-33: NB * 2^-33 / rows, plus double rounding), in the clear to
 * float32 (each agent's sum rounded by a relative 2^-24). */
static void check_explanation(const fv_round_explanation_t *e, const size_t *cols, size_t C,
                              const double *mean, uint64_t rows, uint64_t clipped, bool secagg)
{
    CHECK_UINT_EQ(e->rows, rows);
    CHECK_UINT_EQ(e->clipped_rows, clipped);
    CHECK_UINT_EQ(e->n_columns, C);
    double worst = 0;
    for (size_t c = 0; c < C; c++) {
        CHECK_UINT_EQ(e->column[c], cols[c]);
        double tol = secagg ? NB * 0x1p-33 / (double)rows + 1e-12 * (1 + mean[c])
                            : 0x1p-24 * mean[c] + 1e-12;
        CHECK_NEAR(e->mean_abs[c], mean[c], tol);
        CHECK(e->mean_abs[c] >= 0 && isfinite(e->mean_abs[c]));
        if (fabs(e->mean_abs[c] - mean[c]) > worst)
            worst = fabs(e->mean_abs[c] - mean[c]);
    }
    printf("  explain (%s): %llu rows, %llu clipped, %zu columns, max |decoded - pooled| = %.3g\n",
           secagg ? "SecAgg" : "plain", (unsigned long long)rows, (unsigned long long)clipped, C,
           worst);
}

/* ---- the round in the simulator, against the pooled explanation ---------------------- */

static void test_explain_rounds(void)
{
    char path[1024];
    fv_diag_t d = {{0}};
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    fv_schema_infer_opts_t o = {.target = "class", .positive = "bad"};
    fv_test_src("examples/data/german_credit.csv", path, sizeof(path));
    CHECK_OK(fv_schema_infer(path, &o, &s, &d), &d);
    CHECK_OK(fv_dataset_load(path, s, &ds, &d), &d);
    fv_job_t *jobs[2] = {explain_job(s, true, ""), explain_job(s, false, "")};
    fv_fed_stats_layout_t sl;
    CHECK_OK(fv_fed_stats_layout_init(jobs[0]->schema, &sl), NULL);
    bank_t b[NB];
    round_banks_init(b, ds, jobs[0], &sl);
    /* the global preprocessing (what the stats round gives everyone): fitted here on every
     * bank's training rows */
    size_t n_ref = 0, at = 0;
    for (int k = 0; k < NB; k++)
        n_ref += b[k].n_tr;
    size_t *all = malloc(n_ref * sizeof *all);
    CHECK(all != NULL);
    for (int k = 0; k < NB; k++)
        for (size_t i = 0; i < b[k].n_tr; i++)
            all[at++] = b[k].tr[i];
    fv_preproc_t *pp = NULL;
    CHECK_OK(fv_preproc_fit(ds, all, n_ref, &pp), NULL);
    free(all);
    fv_mlp_arch_t arch;
    CHECK_OK(fv_mlp_parse_arch(jobs[0]->model, fv_preproc_n_features(pp),
                               fv_schema_n_classes(jobs[0]->schema), &arch, &d),
             &d);
    round_banks_features(b, ds, pp, &arch, NULL);
    fv_mlp_t *m = NULL;
    CHECK_OK(fv_mlp_new(&arch, &m), NULL);
    fv_mlp_init(m, 7);
    size_t P = fv_mlp_n_params(m);
    fv_round_sim_agent_t ag[NB];
    memset(ag, 0, sizeof ag);
    for (int k = 0; k < NB; k++) {
        b[k].data.n_params = P;
        b[k].data.pp = pp;
        ag[k].data = &b[k].data;
    }
    size_t *cols = malloc(fv_schema_n_columns(s) * sizeof *cols);
    CHECK(cols != NULL);
    size_t C = fv_round_explain_columns(jobs[0]->schema, cols);
    CHECK_UINT_EQ(C, fv_schema_n_columns(s) - 1); /* every column but the target */
    double *mean = malloc(C * sizeof *mean);
    CHECK(mean != NULL);
    uint64_t rows = 0, clipped = 0;

    fv_round_sim_cfg_t c;
    memset(&c, 0, sizeof c);
    c.sizes.sl = &sl;
    c.sizes.n_params = P;
    c.n_agents = NB;
    c.agents = ag;
    c.n_ref = n_ref;
    c.seed = 5;
    c.restart_at = -1;
    c.global = fv_mlp_params(m);
    /* the same model unscaled, then with its weights x 10, so some (not all) rows' contributions
     * pass the cap and are clipped */
    for (int scale = 0; scale < 2; scale++) {
        if (scale == 1) {
            float *p = fv_mlp_params(m);
            for (size_t i = 0; i < P; i++)
                p[i] *= 10.0f;
        }
        pooled(b, m, pp, jobs[0]->schema, cols, C, mean, &rows, &clipped);
        CHECK(scale == 0 ? clipped == 0 : clipped > 0 && clipped < rows);
        for (int k = 0; k < 2; k++) {
            for (int a = 0; a < NB; a++)
                b[a].data.job = jobs[k];
            c.job = jobs[k];
            c.round = fv_job_last_round(jobs[k]);
            CHECK_UINT_EQ(c.round, 4);
            fv_round_sim_result_t r;
            CHECK_OK(fv_round_sim_run(&c, &r, &d), &d);
            if (r.status != 0)
                FV__FAIL("explain round: %s: %s", fv_err_name(r.status), r.why);
            CHECK_INT_EQ(r.decode_status, 0);
            CHECK_UINT_EQ(r.n_summands, NB);
            CHECK(r.outcome.has_explanation && !r.outcome.has_result);
            CHECK_UINT_EQ(r.shape.words, 2 + 8 * C);
            CHECK_UINT_EQ(r.shape.plain_n, 2 + C);
            check_explanation(&r.outcome.expl, cols, C, mean, rows, clipped, k == 0);
            fv_round_sim_result_close(&r);
        }
    }

    /* in the clear, a bank whose vector holds NaN is dropped by plain_check, and the
     * others' rows stand */
    for (int a = 0; a < NB; a++)
        b[a].data.job = jobs[1];
    c.job = jobs[1];
    c.round = fv_job_last_round(jobs[1]);
    ag[2].fault = FV_RSIM_PLAIN_NAN;
    fv_round_sim_result_t bad;
    CHECK_OK(fv_round_sim_run(&c, &bad, &d), &d);
    CHECK_INT_EQ(bad.status, 0);
    CHECK_UINT_EQ(bad.drops, 1);
    CHECK(!bad.contributed[2]);
    CHECK(bad.outcome.has_explanation);
    CHECK_UINT_EQ(bad.outcome.expl.rows, rows - b[2].n_va);
    fv_round_sim_result_close(&bad);
    ag[2].fault = FV_RSIM_NONE;

    /* a SecAgg sum one malformed input bent: a column sum below 0 or above rows * cap is
     * refused (the round runs again); a sum without rows explains nothing */
    {
        const fv_round_kind_t *k = fv_round_kind_by_id(fv_round_kinds_default(), 4);
        CHECK(k == fv_round_kind_explain());
        fv_round_sizes_t z = {.job = jobs[0], .sl = &sl, .n_params = P};
        fv_round_shape_t sh;
        CHECK_OK(k->shape(&z, &sh, &d), &d);
        uint32_t *w = calloc(sh.words, sizeof *w);
        CHECK(w != NULL);
        w[0] = 100;
        for (size_t j = 0; j < C; j++)
            CHECK_OK(fv_fed_exact_encode(0.5 * (double)j, w + 2 + 8 * j), NULL);
        fv_round_sum_t sum = {.secagg = true, .words = w, .n_summands = NB};
        fv_round_outcome_t oc;
        CHECK_OK(k->decode(&z, &sh, &sum, 1.0, &oc, &d), &d);
        CHECK_NEAR(oc.expl.mean_abs[C - 1], 0.5 * (double)(C - 1) / 100.0, 1e-12);
        fv_round_outcome_close(&oc);
        CHECK_OK(fv_fed_exact_encode(-1.0, w + 2), NULL);
        CHECK_INT_EQ(k->decode(&z, &sh, &sum, 1.0, &oc, &d), FV_EPEER);
        CHECK_CONTAINS(d.msg, "sums to -1");
        CHECK(!oc.has_explanation);
        CHECK_OK(fv_fed_exact_encode(100 * FV_ROUND_EXPLAIN_CAP * 1.01, w + 2), NULL);
        CHECK_INT_EQ(k->decode(&z, &sh, &sum, 1.0, &oc, &d), FV_EPEER);
        w[2] = 0x12345678; /* a limb no honest agent adds: the value leaves the range */
        CHECK_INT_EQ(k->decode(&z, &sh, &sum, 1.0, &oc, &d), FV_EPEER);
        CHECK_OK(fv_fed_exact_encode(1.0, w + 2), NULL);
        w[1] = 101; /* more clipped rows than rows */
        CHECK_INT_EQ(k->decode(&z, &sh, &sum, 1.0, &oc, &d), FV_EPEER);
        memset(w, 0, sh.words * sizeof *w);
        CHECK_INT_EQ(k->decode(&z, &sh, &sum, 1.0, &oc, &d), FV_EEMPTY);
        free(w);
    }

    fv_mlp_free(m);
    fv_preproc_free(pp);
    free(cols);
    free(mean);
    round_banks_free(b);
    fv_job_free(jobs[0]);
    fv_job_free(jobs[1]);
    fv_dataset_free(ds);
    fv_schema_free(s);
}

/* ---- plain_check: what a hostile bank sends in the clear ------------------------------ */

static void test_plain_check(void)
{
    fv_job_t *job = job_of(
        "{\"name\":\"p\",\"schema\":{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\","
        "\"classes\":[\"no\",\"yes\"],\"unknown_category\":\"error\",\"columns\":["
        "{\"name\":\"a\",\"type\":\"numeric\"},{\"name\":\"b\",\"type\":\"ignored\"},"
        "{\"name\":\"c\",\"type\":\"categorical\",\"categories\":[\"u\",\"v\"]},"
        "{\"name\":\"y\",\"type\":\"target\"}]},\"model\":\"logreg\",\"secagg\":\"off\","
        "\"explain\":true}");
    const fv_round_kind_t *k = fv_round_kind_explain();
    fv_round_sizes_t z = {.job = job};
    fv_round_shape_t sh;
    fv_diag_t d = {{0}};
    CHECK_OK(k->shape(&z, &sh, &d), &d);
    CHECK_UINT_EQ(sh.plain_n, 4); /* rows, clipped, a, c: b and y have no contribution */
    CHECK_INT_EQ(sh.plain_dtype, FV_VEC_F32);
    float ok[4] = {10, 1, 3.5f, 640};
    CHECK_OK(k->plain_check(&z, &sh, ok, &d), &d);
    static const struct {
        int at;
        float v;
        const char *needle;
    } bad[] = {
        {2, NAN, "element 2 is nan"},
        {3, INFINITY, "element 3 is inf"},
        {2, -0.5f, "element 2 is -0.5"},
        {0, 1.5f, "element 0 (rows) is 1.5"},
        {0, 65538, "element 0 (rows) is 65538"},
        {1, 11, "element 1 (clipped rows) is 11"},
        {1, 0.5f, "element 1 (clipped rows) is 0.5"},
        {3, 641, "element 3 (a column's sum) is 641"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        float v[4];
        memcpy(v, ok, sizeof v);
        v[bad[i].at] = bad[i].v;
        CHECK_INT_EQ(k->plain_check(&z, &sh, v, &d), FV_EPEER);
        CHECK_CONTAINS(d.msg, bad[i].needle);
    }
    fv_job_free(job);
}

/* ---- an agent checks the explain round's model ---------------------------------------- */

static void test_agent_check(void)
{
    static const char *const specs[2] = {
        "{\"name\":\"a\",\"schema\":{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\","
        "\"classes\":[\"no\",\"yes\"],\"unknown_category\":\"error\",\"columns\":["
        "{\"name\":\"a\",\"type\":\"numeric\"},{\"name\":\"y\",\"type\":\"target\"}]},"
        "\"model\":\"logreg\",\"rounds\":2,\"explain\":true}",
        "{\"name\":\"a\",\"schema\":{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\","
        "\"classes\":[\"no\",\"yes\"],\"unknown_category\":\"error\",\"columns\":["
        "{\"name\":\"a\",\"type\":\"numeric\"},{\"name\":\"y\",\"type\":\"target\"}]},"
        "\"model\":\"logreg\",\"rounds\":2,\"explain\":true,\"distill\":{\"student\":\"logreg\","
        "\"rounds\":2}}"};
    uint8_t pk[32], sk[64], pks[3 * 32];
    crypto_sign_keypair(pk, sk);
    memset(pks, 7, sizeof pks);
    memcpy(pks, pk, 32);
    for (int distill = 0; distill < 2; distill++) {
        fv_job_t *job = job_of(specs[distill]);
        uint64_t last = fv_job_last_round(job);
        CHECK_UINT_EQ(last, distill ? 5 : 3);
        fv_around_held_t h;
        memset(&h, 0, sizeof h);
        h.kinds = fv_round_kinds_default();
        h.job = job;
        memset(h.digest, 0xab, 32);
        h.name = "bank";
        h.pk = pk;
        h.sk = sk;
        h.has_global = h.has_student = h.has_teacher = h.has_features = true;
        memset(h.global_hash, 1, 32);
        memset(h.student_hash, 2, 32);
        memset(h.teacher_hash, 3, 32);
        h.n_tr = 10;
        fv_msg_t m;
        memset(&m, 0, sizeof m);
        m.type = FV_MSG_ROUND_START;
        memcpy(m.u.round_start.job, h.digest, 32);
        m.u.round_start.round = last;
        m.u.round_start.kind = FV_FED_KIND_EXPLAIN;
        m.u.round_start.index = 0;
        m.u.round_start.n = 3;
        m.u.round_start.pks = pks;
        m.u.round_start.pks_len = sizeof pks;
        m.u.round_start.has_model = true;
        m.u.round_start.n_ref = 30;
        /* the final training model: the teacher in a distilling job, else the model held */
        const uint8_t *final = distill ? h.teacher_hash : h.global_hash;
        memcpy(m.u.round_start.model, final, 32);
        char why[256] = "";
        CHECK_OK(fv_around_check(&h, &m, why, sizeof why), NULL);
        /* any other model (the student, the last global model, a forged hash) is refused */
        const uint8_t *others[2] = {h.student_hash, distill ? h.global_hash : h.teacher_hash};
        for (int i = 0; i < 2; i++) {
            memcpy(m.u.round_start.model, others[i], 32);
            CHECK_INT_EQ(fv_around_check(&h, &m, why, sizeof why), FV_EPROTO);
            CHECK_CONTAINS(why, "the announced model hash is not the final model");
        }
        memcpy(m.u.round_start.model, final, 32);
        m.u.round_start.model[31] ^= 1;
        CHECK_INT_EQ(fv_around_check(&h, &m, why, sizeof why), FV_EPROTO);
        m.u.round_start.model[31] ^= 1;
        m.u.round_start.has_model = false;
        CHECK_INT_EQ(fv_around_check(&h, &m, why, sizeof why), FV_EPROTO);
        m.u.round_start.has_model = true;
        if (distill)
            h.has_teacher = false;
        else
            h.has_global = false;
        CHECK_INT_EQ(fv_around_check(&h, &m, why, sizeof why), FV_EPROTO);
        CHECK_CONTAINS(why, "was sent before the explain round");
        if (distill)
            h.has_teacher = true;
        else
            h.has_global = true;
        /* the explain kind at another number, or another kind at the explain's */
        m.u.round_start.round = last - 1;
        CHECK_INT_EQ(fv_around_check(&h, &m, why, sizeof why), FV_EPROTO);
        m.u.round_start.round = last;
        m.u.round_start.kind = distill ? FV_FED_KIND_DISTILL : FV_FED_KIND_TRAIN;
        CHECK_INT_EQ(fv_around_check(&h, &m, why, sizeof why), FV_EPROTO);
        fv_job_free(job);
    }
}

/* ---- the spec key and the numbering --------------------------------------------------- */

#define SPEC_HEAD                                                                                  \
    "{\"name\":\"n\",\"schema\":{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\","     \
    "\"classes\":[\"no\",\"yes\"],\"unknown_category\":\"error\",\"columns\":["                    \
    "{\"name\":\"a\",\"type\":\"numeric\"},{\"name\":\"y\",\"type\":\"target\"}]},"                \
    "\"model\":\"logreg\",\"rounds\":4"

static void test_spec_and_numbering(void)
{
    fv_job_t *off = job_of(SPEC_HEAD "}"), *off2 = job_of(SPEC_HEAD ",\"explain\":false}"),
             *on = job_of(SPEC_HEAD ",\"explain\":true}"),
             *dist = job_of(SPEC_HEAD ",\"explain\":true,\"distill\":{\"student\":\"logreg\","
                                      "\"rounds\":3}}");
    CHECK(!off->explain && !off2->explain && on->explain);
    char *j1 = NULL, *j2 = NULL, *j3 = NULL;
    size_t l1, l2, l3;
    CHECK_OK(fv_job_to_json(off, &j1, &l1), NULL);
    CHECK_OK(fv_job_to_json(off2, &j2, &l2), NULL);
    CHECK_OK(fv_job_to_json(on, &j3, &l3), NULL);
    /* false is the default: not written, so a job without the key keeps its digest */
    CHECK(l1 == l2 && memcmp(j1, j2, l1) == 0);
    CHECK(strstr(j1, "explain") == NULL);
    CHECK_CONTAINS(j3, ",\"explain\":true");
    fv_job_t *back = job_of(j3);
    CHECK(back->explain);
    fv_job_free(back);
    free(j1), free(j2), free(j3);
    fv_job_t *bad = NULL;
    fv_diag_t d = {{0}};
    const char *wrong = SPEC_HEAD ",\"explain\":1}";
    CHECK_INT_EQ(fv_job_from_json("job.json", wrong, strlen(wrong), &bad, &d), FV_EPARSE);
    CHECK_CONTAINS(d.msg, "job.json: explain: got ");
    CHECK(bad == NULL);
    /* numbering: explain is the last round, after training (and distillation) */
    CHECK_UINT_EQ(fv_job_last_round(off), 4);
    CHECK_UINT_EQ(fv_job_last_round(on), 5);
    CHECK_UINT_EQ(fv_job_last_round(dist), 8);
    const fv_round_kinds_t *t = fv_round_kinds_default();
    CHECK_UINT_EQ(t->n, 4);
    const fv_job_t *js[3] = {off, on, dist};
    for (int i = 0; i < 3; i++) {
        CHECK_UINT_EQ(fv_round_last(t, js[i]), fv_job_last_round(js[i]));
        for (uint64_t r = 0; r <= fv_job_last_round(js[i]) + 1; r++) {
            const fv_round_kind_t *k = fv_round_kind_of(t, js[i], r, NULL);
            CHECK_UINT_EQ(k != NULL ? k->id : 0, fv_fed_kind_of_round(js[i], r));
        }
    }
    CHECK_UINT_EQ(fv_fed_kind_of_round(on, 5), FV_FED_KIND_EXPLAIN);
    CHECK_UINT_EQ(fv_fed_kind_of_round(dist, 7), FV_FED_KIND_DISTILL);
    CHECK_UINT_EQ(fv_fed_kind_of_round(dist, 8), FV_FED_KIND_EXPLAIN);
    CHECK_UINT_EQ(fv_fed_kind_of_round(off, 5), 0);
    CHECK(strcmp(fv_fed_kind_name(FV_FED_KIND_EXPLAIN), "explain") == 0);
    fv_job_free(off), fv_job_free(off2), fv_job_free(on), fv_job_free(dist);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    test_spec_and_numbering();
    test_plain_check();
    test_agent_check();
    test_explain_rounds();
    printf("test_round_explain: ok\n");
    return 0;
}
