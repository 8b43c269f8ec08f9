/* test_round_job.c - whole jobs in one process: the coordinator's job machine
 * (fv_round_job.h) over the round engine's simulator (fv_round_sim.h), four banks of the
 * German credit data, SecAgg on: the stats round, training rounds with early stopping,
 * the hand-over to distillation, distill rounds, the explain round ("explain": after the
 * last phase, early-stopped or not; the same result as the job without it), the result.
 *
 * Crash and restore: the same job is run again with the coordinator "crashing" at every
 * checkpoint (the machine thrown away and restored from its checkpoint) and, in every
 * round, once in the middle of the round at a protocol point (the simulator's restart:
 * after each SecAgg phase in turn, or when the round is done but not committed). It must
 * end with the same model, bit for bit (same process, kernel and thread count), the same
 * best round and the same number of rounds. A failed round (too few agents) is run again
 * under its number.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_dataset.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_round.h"
#include "fv_round_job.h"
#include "fv_round_sim.h"
#include "fv_schema.h"
#include "fv_test.h"
#include "round_banks.h"

#define NB ROUND_BANKS

static fv_schema_t *schema;
static fv_dataset_t *ds;
static bank_t banks[NB];
static fv_mlp_arch_t arch, s_arch;

static void banks_init(const fv_job_t *job, const fv_fed_stats_layout_t *sl)
{
    round_banks_init(banks, ds, job, sl);
}

/* What each bank does with the stats round's sum (round_banks.h), with the job's model
 * (and student) architectures. */
static void banks_features(const fv_job_t *job, const fv_preproc_t *pp)
{
    size_t nf = fv_preproc_n_features(pp);
    fv_diag_t d = {{0}};
    CHECK_OK(fv_mlp_parse_arch(job->model, nf, fv_schema_n_classes(job->schema), &arch, &d), &d);
    if (job->distill.on)
        CHECK_OK(fv_mlp_parse_arch(job->distill.student, nf, fv_schema_n_classes(job->schema),
                                   &s_arch, &d),
                 &d);
    round_banks_features(banks, ds, pp, &arch, &s_arch);
}

static void banks_free(void)
{
    round_banks_free(banks);
}

typedef struct run {
    float *final;
    size_t n_final;
    uint64_t final_round, best_round, rounds_done, rounds_failed, checkpoints;
    uint64_t kinds_seen[5];
} run_t;

/* Restores the machine from its own checkpoint (a coordinator restart). */
static void crash_and_restore(fv_cjob_t **j, const fv_job_t *job)
{
    fv_cjob_ckpt_t ck;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_cjob_checkpoint(*j, &ck), NULL);
    fv_cjob_t *r = NULL;
    CHECK_OK(fv_cjob_restore(job, &ck, &r, &d), &d);
    fv_cjob_ckpt_close(&ck);
    fv_cjob_free(*j);
    *j = r;
}

/* One whole job. crash: restore at every checkpoint and restart mid-round in every round.
 * fail_round: that round's first attempt loses 3 of the 4 banks before their input. */
static void run_job(const fv_job_t *job, bool crash, uint64_t fail_round, run_t *out)
{
    memset(out, 0, sizeof *out);
    fv_diag_t d = {{0}};
    fv_cjob_t *j = NULL;
    CHECK_OK(fv_cjob_new(job, &j, &d), &d);
    banks_init(job, fv_cjob_stats_layout(j));
    fv_round_sim_agent_t ag[NB];
    bool failed_once = false;
    for (int guard = 0; guard < 100; guard++) {
        if (fv_cjob_phase_over(j)) {
            if (!fv_cjob_distilling(j) && job->distill.on && fv_cjob_best(j) != NULL) {
                CHECK_OK(fv_cjob_distill_begin(j, &d), &d);
                out->checkpoints++;
                if (crash)
                    crash_and_restore(&j, job);
                for (int k = 0; k < NB; k++)
                    banks[k].data.s_n_params = fv_mlp_n_params(fv_cjob_global(j));
                continue;
            }
            /* the explain round (a job with "explain"): after the last phase, also one
             * that early stopping ended */
            if (fv_cjob_explain_due(j)) {
                CHECK_OK(fv_cjob_explain_begin(j, &d), &d);
                if (crash)
                    crash_and_restore(&j, job);
                CHECK_UINT_EQ(fv_cjob_round(j), fv_job_last_round(job));
                CHECK(fv_cjob_phase_over(j) && fv_cjob_explain_due(j));
                CHECK_UINT_EQ(fv_cjob_kind(j), FV_FED_KIND_EXPLAIN);
            } else {
                break;
            }
        }
        uint64_t round = fv_cjob_round(j);
        uint32_t kind = fv_cjob_kind(j);
        CHECK(fv_cjob_round_kind(j) ==
              fv_round_kind_of(fv_round_kinds_default(), job, round, NULL));
        memset(ag, 0, sizeof ag);
        for (int k = 0; k < NB; k++)
            ag[k].data = &banks[k].data;
        if (round == fail_round && !failed_once) {
            for (int k = 1; k < NB; k++)
                ag[k].fault = FV_RSIM_DROP, ag[k].phase = 2;
        }
        fv_round_sim_cfg_t c;
        memset(&c, 0, sizeof c);
        c.job = job;
        c.sizes = fv_cjob_sizes(j);
        c.round = round;
        c.n_agents = NB;
        c.agents = ag;
        c.n_ref = fv_cjob_n_ref(j);
        c.seed = 1000 + round;
        c.restart_at = -1;
        for (int k = 0; k < NB; k++)
            banks[k].data.pp = fv_cjob_preproc(j);
        if (kind == FV_FED_KIND_EXPLAIN) {
            c.global = fv_mlp_params_const(fv_cjob_explained(j));
        } else if (kind != FV_FED_KIND_STATS) {
            c.global = fv_mlp_params_const(fv_cjob_global(j));
            if (fv_cjob_teacher(j) != NULL)
                c.teacher = fv_mlp_params_const(fv_cjob_teacher(j));
        }
        static const int points[] = {0, 1, 2, 3, FV_RSIM_AT_DONE};
        if (crash) {
            c.restart_at = points[round % 5];
            c.defer_close = true; /* the unmask handed out, as the daemon does */
        }
        fv_round_sim_result_t r;
        CHECK_OK(fv_round_sim_run(&c, &r, &d), &d);
        bool ok = r.status == 0;
        if (round == fail_round && !failed_once) {
            CHECK(!ok); /* one contributor is below SecAgg's threshold */
            failed_once = true;
        } else if (!ok) {
            FV__FAIL("round %llu (%s) failed: %s: %s", (unsigned long long)round,
                     fv_fed_kind_name(kind), fv_err_name(r.status), r.why);
        }
        if (ok) {
            CHECK_INT_EQ(r.decode_status, 0);
            out->kinds_seen[kind]++;
            /* what the round does to the job: the kind's apply (the job machine) */
            const fv_round_kind_t *rk = fv_cjob_round_kind(j);
            fv_round_sum_t sum = {.secagg = true, .words = r.sum, .n_summands = r.n_summands};
            bool imp = false;
            if (rk->apply != NULL)
                CHECK_OK(rk->apply(j, &sum, &r.outcome, &imp, &d), &d);
            if (kind == FV_FED_KIND_EXPLAIN) {
                CHECK(r.outcome.has_explanation && rk->apply == NULL); /* changes no model */
            } else if (kind == FV_FED_KIND_STATS) {
                banks_features(job, fv_cjob_preproc(j));
                for (int k = 0; k < NB; k++) {
                    banks[k].data.n_params = fv_mlp_n_params(fv_cjob_global(j));
                    banks[k].data.s_n_params = 0;
                }
            } else {
                CHECK(r.outcome.has_result);
                CHECK(isfinite(fv_cjob_best_metric(j)));
            }
        }
        fv_round_sim_result_close(&r);
        fv_cjob_round_done(j, ok);
        out->checkpoints++;
        if (crash)
            crash_and_restore(&j, job);
    }
    const fv_mlp_t *final = fv_cjob_final(j, &out->final_round);
    CHECK(final != NULL);
    out->n_final = fv_mlp_n_params(final);
    CHECK((out->final = malloc(out->n_final * sizeof(float))) != NULL);
    memcpy(out->final, fv_mlp_params_const(final), out->n_final * sizeof(float));
    out->best_round = fv_cjob_best_round(j);
    out->rounds_done = fv_cjob_rounds_done(j);
    out->rounds_failed = fv_cjob_rounds_failed(j);
    fv_cjob_free(j);
    banks_free();
}

static fv_job_t *german_job(const char *extra)
{
    char *sj = NULL;
    size_t sl = 0;
    CHECK_OK(fv_schema_to_json(schema, &sj, &sl), NULL);
    size_t cap = sl + 1024;
    char *js = malloc(cap);
    CHECK(js != NULL);
    snprintf(js, cap,
             "{\"name\":\"german\",\"schema\":%s,\"model\":\"mlp:8\",\"rounds\":5,"
             "\"local_epochs\":1,\"hist_bins\":100,\"seed\":11,\"min_agents\":3%s}",
             sj, extra);
    free(sj);
    fv_job_t *j = NULL;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_job_from_json("job", js, strlen(js), &j, &d), &d);
    free(js);
    return j;
}

static void test_whole_job_restores(void)
{
    fv_job_t *job = german_job(",\"early_stopping\":{\"patience\":2},"
                               "\"distill\":{\"student\":\"logreg\",\"rounds\":3,"
                               "\"quantize_int8\":true}");
    run_t a, b;
    run_job(job, false, UINT64_MAX, &a);
    CHECK_UINT_EQ(a.kinds_seen[FV_FED_KIND_STATS], 1);
    CHECK(a.kinds_seen[FV_FED_KIND_TRAIN] >= 1 && a.kinds_seen[FV_FED_KIND_TRAIN] <= 5);
    CHECK(a.kinds_seen[FV_FED_KIND_DISTILL] >= 1 && a.kinds_seen[FV_FED_KIND_DISTILL] <= 3);
    CHECK(a.best_round > 5 && a.best_round <= 8); /* the result is a distilled student */
    CHECK_UINT_EQ(a.rounds_failed, 0);
    run_job(job, true, UINT64_MAX, &b);
    CHECK_UINT_EQ(b.checkpoints, a.checkpoints);
    CHECK_UINT_EQ(b.rounds_done, a.rounds_done);
    CHECK_UINT_EQ(b.best_round, a.best_round);
    CHECK_UINT_EQ(b.final_round, a.final_round);
    CHECK_UINT_EQ(b.n_final, a.n_final);
    CHECK(memcmp(a.final, b.final, a.n_final * sizeof(float)) == 0);
    printf("whole job: %llu rounds (%llu train, %llu distill), best round %llu, %llu "
           "checkpoints: the same student after a restore at each\n",
           (unsigned long long)a.rounds_done, (unsigned long long)a.kinds_seen[2],
           (unsigned long long)a.kinds_seen[3], (unsigned long long)a.best_round,
           (unsigned long long)a.checkpoints);
    free(a.final), free(b.final);
    fv_job_free(job);
}

/* patience 0: every training round runs, the result is the last update (labelled with
 * the last round, 5 of 5); a round that fails once is run again under its number and changes
 * nothing. */
static void test_failed_round_is_rerun(void)
{
    fv_job_t *job = german_job(",\"early_stopping\":{\"patience\":0}");
    run_t a, b;
    run_job(job, false, UINT64_MAX, &a);
    CHECK_UINT_EQ(a.kinds_seen[FV_FED_KIND_TRAIN], 5);
    CHECK_UINT_EQ(a.final_round, 5);
    run_job(job, false, 3, &b);
    CHECK_UINT_EQ(b.rounds_failed, 1);
    CHECK_UINT_EQ(b.rounds_done, a.rounds_done);
    CHECK(memcmp(a.final, b.final, a.n_final * sizeof(float)) == 0);
    free(a.final), free(b.final);
    fv_job_free(job);
}

/* "explain": one explain round after the last phase (early stopping ended training or
 * distillation early, or every training round ran), which changes nothing of the result:
 * the same final model, round label and best round as the job without it, also with a
 * restore at every checkpoint. */
static void test_explain_keeps_result(void)
{
    static const char *const extras[3] = {
        ",\"early_stopping\":{\"patience\":2},\"distill\":{\"student\":\"logreg\","
        "\"rounds\":3}",
        ",\"early_stopping\":{\"patience\":0}",
        ",\"early_stopping\":{\"patience\":1,\"min_delta\":0.5}"};
    for (int i = 0; i < 3; i++) {
        char with[512];
        snprintf(with, sizeof with, "%s,\"explain\":true", extras[i]);
        fv_job_t *off = german_job(extras[i]), *on = german_job(with);
        run_t a, b, c;
        run_job(off, false, UINT64_MAX, &a);
        run_job(on, false, UINT64_MAX, &b);
        run_job(on, true, UINT64_MAX, &c);
        CHECK_UINT_EQ(a.kinds_seen[FV_FED_KIND_EXPLAIN], 0);
        CHECK_UINT_EQ(b.kinds_seen[FV_FED_KIND_EXPLAIN], 1);
        CHECK_UINT_EQ(c.kinds_seen[FV_FED_KIND_EXPLAIN], 1);
        CHECK_UINT_EQ(b.rounds_done, a.rounds_done + 1);
        for (const run_t *x = &b; x != NULL; x = x == &b ? &c : NULL) {
            CHECK_UINT_EQ(x->final_round, a.final_round);
            CHECK_UINT_EQ(x->best_round, a.best_round);
            CHECK_UINT_EQ(x->n_final, a.n_final);
            CHECK(memcmp(x->final, a.final, a.n_final * sizeof(float)) == 0);
        }
        if (i == 2) /* min_delta 0.5: no round after the first improves: stopped early */
            CHECK_UINT_EQ(b.kinds_seen[FV_FED_KIND_TRAIN], 2);
        printf("explain: %s job, %llu train rounds, %llu rounds with the explanation, final "
               "round %llu: the same result as without it\n",
               i == 0   ? "a distilling"
               : i == 1 ? "a patience-0"
                        : "an early-stopped",
               (unsigned long long)b.kinds_seen[FV_FED_KIND_TRAIN],
               (unsigned long long)b.rounds_done, (unsigned long long)b.final_round);
        free(a.final), free(b.final), free(c.final);
        fv_job_free(off), fv_job_free(on);
    }
}

/* Differential privacy (issue 19): a DP round's sampling and noise come from streams keyed
 * by each agent's secret and the (job, round) (crypto/fv_dpnoise.h), so a job restored at
 * every checkpoint and restarted mid-round, or whose round 2 is lost and run again, ends
 * with the same model bit for bit: a rerun draws the same noise, never fresh noise (which
 * would spend budget twice). And the noise is there: the same job without privacy ends
 * elsewhere. Local DP-SGD and distributed noise. */
static void test_private_jobs_rerun_same_noise(void)
{
    static const char *const priv[2] = {
        ",\"privacy\":{\"mode\":\"local\",\"noise_multiplier\":1.0,\"delta\":1e-5,"
        "\"outside_budget\":[\"stats\",\"metrics\"]}",
        ",\"privacy\":{\"mode\":\"distributed\",\"noise_multiplier\":1.0,\"delta\":1e-5,"
        "\"sample_rate\":0.2,\"min_honest\":2,\"outside_budget\":[\"stats\",\"metrics\"]}"};
    static const char *const base = ",\"early_stopping\":{\"patience\":0},"
                                    "\"optimizer\":{\"kind\":\"sgd\",\"lr\":0.5},"
                                    "\"secagg\":{\"bits\":20}";
    char extra[1024];
    snprintf(extra, sizeof extra, "%s", base);
    fv_job_t *plain = german_job(extra);
    run_t p;
    run_job(plain, false, UINT64_MAX, &p);
    for (int m = 0; m < 2; m++) {
        snprintf(extra, sizeof extra, "%s%s", base, priv[m]);
        fv_job_t *job = german_job(extra);
        run_t a, b, c;
        run_job(job, false, UINT64_MAX, &a);
        run_job(job, true, UINT64_MAX, &b);
        run_job(job, false, 2, &c);
        CHECK_UINT_EQ(a.rounds_failed, 0);
        CHECK_UINT_EQ(c.rounds_failed, 1);
        CHECK_UINT_EQ(b.n_final, a.n_final);
        CHECK_UINT_EQ(c.n_final, a.n_final);
        CHECK(memcmp(a.final, b.final, a.n_final * sizeof(float)) == 0);
        CHECK(memcmp(a.final, c.final, a.n_final * sizeof(float)) == 0);
        CHECK_UINT_EQ(p.n_final, a.n_final);
        CHECK(memcmp(a.final, p.final, a.n_final * sizeof(float)) != 0);
        printf("privacy (%s): %llu rounds; restored at every checkpoint and with round 2 run "
               "twice: the same model bit for bit, not the non-private one\n",
               m == 0 ? "local" : "distributed", (unsigned long long)a.rounds_done);
        free(a.final), free(b.final), free(c.final);
        fv_job_free(job);
    }
    free(p.final);
    fv_job_free(plain);
}

/* A checkpoint that does not fit the job is refused, naming what. */
static void test_restore_refuses(void)
{
    fv_job_t *job = german_job("");
    fv_cjob_ckpt_t ck;
    memset(&ck, 0, sizeof ck);
    uint32_t words[3] = {1, 2, 3};
    ck.stats_sum = words;
    ck.stats_words = 3;
    fv_cjob_t *j = NULL;
    fv_diag_t d = {{0}};
    CHECK_INT_EQ(fv_cjob_restore(job, &ck, &j, &d), FV_ECORRUPT);
    CHECK(j == NULL);
    CHECK_CONTAINS(d.msg, "stats vector has 3 words");
    fv_job_free(job);
}

int main(void)
{
    char path[1024];
    fv_diag_t d = {{0}};
    fv_schema_infer_opts_t o = {.target = "class", .positive = "bad"};
    fv_test_src("examples/data/german_credit.csv", path, sizeof(path));
    CHECK_OK(fv_schema_infer(path, &o, &schema, &d), &d);
    CHECK_OK(fv_dataset_load(path, schema, &ds, &d), &d);
    test_restore_refuses();
    test_failed_round_is_rerun();
    test_explain_keeps_result();
    test_whole_job_restores();
    test_private_jobs_rerun_same_noise();
    fv_dataset_free(ds);
    fv_schema_free(schema);
    printf("test_round_job: ok\n");
    return 0;
}
