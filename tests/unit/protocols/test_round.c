/* test_round.c - the round engine end to end in one process (fv_round_sim.h): both sides'
 * machines exchanging real wire messages, with dropouts and stragglers at every phase,
 * every violation the coordinator catches, a coordinator restart at every protocol point
 * of a round, and real rounds (stats and training on the German credit data) through
 * SecAgg and in the clear.
 *
 * It also adds a round kind that exists only here ("tally", below): its row and its
 * handlers are this file's only code, and the engine runs it in a job after the default
 * kinds, which is what adding a kind takes (docs/architecture.md, "A new round kind").
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
#include "fv_round_sim.h"
#include "fv_schema.h"
#include "fv_test.h"
#include "round_banks.h"

/* ---- the test-only kind: "tally" ------------------------------------------------------ */
/* An agent adds TALLY_WORDS words: word i = n_tr * (i + 1). The sum's word 0 is the
 * contributors' training rows and word i is (i + 1) times it; a plain vector that breaks
 * that pattern is refused. Rounds: two, after every default kind. */
#define TALLY_WORDS 64

static uint64_t tally_rounds(const fv_job_t *job)
{
    (void)job;
    return 2;
}

static int tally_shape(const fv_round_sizes_t *z, fv_round_shape_t *ret, fv_diag_t *d)
{
    (void)z, (void)d;
    memset(ret, 0, sizeof *ret);
    ret->words = TALLY_WORDS;
    ret->plain_n = TALLY_WORDS;
    ret->plain_dtype = FV_VEC_U32;
    return 0;
}

static int tally_compute(const fv_round_data_t *data, fv_round_work_t *w)
{
    w->dim = TALLY_WORDS;
    w->words = malloc(TALLY_WORDS * sizeof *w->words);
    if (w->words == NULL)
        return w->rc = FV_ENOMEM;
    for (uint32_t i = 0; i < TALLY_WORDS; i++)
        w->words[i] = (uint32_t)data->n_tr * (i + 1);
    return w->rc = 0;
}

static int tally_check(const fv_round_sizes_t *z, const fv_round_shape_t *s, const void *vec,
                       fv_diag_t *d)
{
    (void)z, (void)s;
    const uint32_t *v = vec;
    for (uint32_t i = 1; i < TALLY_WORDS; i++)
        if (v[i] != v[0] * (i + 1))
            return fv_diag_set(d, FV_EPEER, "tally word %u is %u, not %u x %u", i, v[i], i + 1,
                               v[0]);
    return 0;
}

static int tally_decode(const fv_round_sizes_t *z, const fv_round_shape_t *s,
                        const fv_round_sum_t *sum, double n_ref, fv_round_outcome_t *ret,
                        fv_diag_t *d)
{
    (void)n_ref;
    memset(ret, 0, sizeof *ret);
    return tally_check(z, s, sum->words, d) != 0 ? FV_ECORRUPT : 0;
}

static const fv_round_kind_t kind_tally = {.id = 77,
                                           .name = "tally",
                                           .needs = 0,
                                           .n_rounds = tally_rounds,
                                           .shape = tally_shape,
                                           .compute = tally_compute,
                                           .plain_check = tally_check,
                                           .decode = tally_decode};

/* The default kinds, then tally. */
static const fv_round_kind_t *table_kinds[8];
static fv_round_kinds_t table;

static void table_init(void)
{
    const fv_round_kinds_t *def = fv_round_kinds_default();
    CHECK(def->n + 1 <= sizeof table_kinds / sizeof *table_kinds);
    for (size_t i = 0; i < def->n; i++)
        table_kinds[i] = def->kinds[i];
    table_kinds[def->n] = &kind_tally;
    table.kinds = table_kinds;
    table.n = def->n + 1;
}

/* ---- jobs and agents ----------------------------------------------------------------- */

#define SCHEMA_B2                                                                                  \
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\",\"classes\":[\"no\",\"yes\"],"   \
    "\"unknown_category\":\"error\",\"columns\":[{\"name\":\"x\",\"type\":\"numeric\"},"           \
    "{\"name\":\"y\",\"type\":\"target\"}]}"

static fv_job_t *job_of(const char *json)
{
    fv_job_t *j = NULL;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_job_from_json("job", json, strlen(json), &j, &d), &d);
    return j;
}

/* A job of 3 training rounds (so tally owns rounds 4 and 5), SecAgg on or off. */
static fv_job_t *tally_job(bool secagg)
{
    return job_of(secagg ? "{\"name\":\"t\",\"schema\":" SCHEMA_B2 ",\"model\":\"logreg\","
                           "\"rounds\":3}"
                         : "{\"name\":\"t\",\"schema\":" SCHEMA_B2 ",\"model\":\"logreg\","
                           "\"rounds\":3,\"secagg\":\"off\"}");
}

#define NA 7
static fv_round_data_t tally_data[NA];
static fv_round_sim_agent_t agents[NA];

static void agents_reset(const fv_job_t *job)
{
    memset(agents, 0, sizeof agents);
    for (uint32_t i = 0; i < NA; i++) {
        memset(&tally_data[i], 0, sizeof tally_data[i]);
        tally_data[i].job = job;
        tally_data[i].n_tr = 100 + 10 * i;
        agents[i].data = &tally_data[i];
    }
}

static fv_round_sim_cfg_t tally_cfg(const fv_job_t *job, uint64_t seed)
{
    fv_round_sim_cfg_t c;
    memset(&c, 0, sizeof c);
    c.kinds = &table;
    c.job = job;
    c.round = 4;
    c.n_agents = NA;
    c.agents = agents;
    c.n_ref = 1;
    c.max_uploads = 2;
    c.seed = seed;
    c.restart_at = -1;
    return c;
}

/* The sum is the contributors' tally, and exactly those the caller expects contributed. */
static void check_tally(const fv_round_sim_result_t *r, const bool *expect)
{
    if (r->status != 0)
        FV__FAIL("the round failed: %s: %s", fv_err_name(r->status), r->why);
    CHECK_INT_EQ(r->decode_status, 0);
    CHECK(r->sum != NULL);
    uint32_t rows = 0, n = 0;
    for (uint32_t i = 0; i < NA; i++) {
        if (expect != NULL && r->contributed[i] != expect[i])
            FV__FAIL("agent %u: contributed %d, expected %d", i, r->contributed[i], expect[i]);
        if (r->contributed[i])
            rows += (uint32_t)tally_data[i].n_tr, n++;
    }
    CHECK_UINT_EQ(r->n_summands, n);
    CHECK_UINT_EQ(r->sum[0], rows);
    CHECK_UINT_EQ(r->sum[TALLY_WORDS - 1], rows * TALLY_WORDS);
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_kinds_table(void)
{
    fv_job_t *job = tally_job(true);
    uint64_t first = 99;
    CHECK(fv_round_kind_of(&table, job, 0, &first) == fv_round_kind_by_id(&table, 1));
    CHECK_UINT_EQ(first, 0);
    CHECK(fv_round_kind_of(&table, job, 3, &first)->id == FV_FED_KIND_TRAIN);
    CHECK_UINT_EQ(first, 1);
    /* the job has no distill section: distill owns no number, tally comes next */
    CHECK(fv_round_kind_of(&table, job, 4, &first) == &kind_tally);
    CHECK_UINT_EQ(first, 4);
    CHECK(fv_round_kind_of(&table, job, 5, NULL) == &kind_tally);
    CHECK(fv_round_kind_of(&table, job, 6, NULL) == NULL);
    CHECK_UINT_EQ(fv_round_last(&table, job), 5);
    CHECK(fv_round_kind_by_id(&table, 77) == &kind_tally);
    CHECK(fv_round_kind_by_id(fv_round_kinds_default(), 77) == NULL);
    /* the default table numbers rounds as fv_fed_kind_of_round always did */
    const fv_round_kinds_t *def = fv_round_kinds_default();
    for (uint64_t r = 0; r < 6; r++) {
        const fv_round_kind_t *k = fv_round_kind_of(def, job, r, NULL);
        CHECK_UINT_EQ(k != NULL ? k->id : 0, fv_fed_kind_of_round(job, r));
    }
    CHECK_UINT_EQ(fv_round_last(def, job), fv_job_last_round(job));
    fv_job_free(job);
}

/* Every agent answers: all contribute, with SecAgg and without. */
static void test_tally_round(void)
{
    for (int secagg = 0; secagg < 2; secagg++) {
        fv_job_t *job = tally_job(secagg);
        agents_reset(job);
        fv_round_sim_cfg_t c = tally_cfg(job, 11);
        fv_round_sim_result_t r;
        fv_diag_t d = {{0}};
        CHECK_OK(fv_round_sim_run(&c, &r, &d), &d);
        check_tally(&r, NULL);
        CHECK_UINT_EQ(r.n_summands, NA);
        CHECK_UINT_EQ(r.drops + r.violations + r.sit_outs + r.deadlines, 0);
        CHECK_UINT_EQ(r.attempts, 1);
        fv_round_sim_result_close(&r);
        fv_job_free(job);
    }
}

/* One agent drops out (its connection goes) or goes silent (a straggler the deadline
 * closes the phase on) before each phase it would answer: the round ends with the others,
 * and with the agent's input when it had been sent (masked input in, then gone: its mask
 * is removed by the others' shares; SecAgg phases 3 and 4). */
static void test_dropouts_and_stragglers(void)
{
    for (int secagg = 0; secagg < 2; secagg++)
        for (int fault = FV_RSIM_DROP; fault <= FV_RSIM_SILENT; fault++)
            for (int phase = 0; phase <= (secagg ? 4 : 2); phase++) {
                if (!secagg && phase == 1)
                    continue; /* plain rounds: round start (0) and the upload (2) */
                fv_job_t *job = tally_job(secagg);
                agents_reset(job);
                agents[3].fault = (fv_rsim_fault_t)fault;
                agents[3].phase = phase;
                fv_round_sim_cfg_t c = tally_cfg(job, 100 + (uint64_t)phase);
                c.defer_close = phase % 2 == 1; /* the unmask closed inline, or handed out */
                fv_round_sim_result_t r;
                fv_diag_t d = {{0}};
                CHECK_OK(fv_round_sim_run(&c, &r, &d), &d);
                bool expect[NA];
                for (int i = 0; i < NA; i++)
                    expect[i] = i != 3 || (secagg && phase >= 3);
                check_tally(&r, expect);
                if (fault == FV_RSIM_SILENT)
                    CHECK(r.deadlines >= 1); /* only a deadline ends a straggler's phase */
                else
                    CHECK_UINT_EQ(r.deadlines, 0);
                fv_round_sim_result_close(&r);
                fv_job_free(job);
            }
}

/* An agent whose local work returns only after the coordinator forwarded its shares:
 * the forwarded shares wait for the input (fv_round.h, an agent's side). */
static void test_slow_compute(void)
{
    fv_job_t *job = tally_job(true);
    agents_reset(job);
    agents[0].fault = FV_RSIM_SLOW;
    agents[5].fault = FV_RSIM_SLOW;
    fv_round_sim_cfg_t c = tally_cfg(job, 5);
    fv_round_sim_result_t r;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_round_sim_run(&c, &r, &d), &d);
    check_tally(&r, NULL);
    CHECK_UINT_EQ(r.n_summands, NA);
    fv_round_sim_result_close(&r);
    fv_job_free(job);
}

/* Each violation the coordinator's machine catches: the agent is dropped (its connection
 * closed), left out of the sum, and the round ends with the others without a deadline. */
static void test_violations(void)
{
    static const struct {
        fv_rsim_fault_t fault;
        bool secagg;
    } cases[] = {
        {FV_RSIM_BAD_SENDER, true},  {FV_RSIM_OTHER_JOB, true},    {FV_RSIM_MASKED_SECAGG, true},
        {FV_RSIM_UPLOAD_LEN, true},  {FV_RSIM_UPLOAD_NAME, true},  {FV_RSIM_MASKED_FORGED, true},
        {FV_RSIM_UPLOAD_LEN, false}, {FV_RSIM_UPLOAD_NAME, false}, {FV_RSIM_PLAIN_HUGE, false},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        fv_job_t *job = tally_job(cases[k].secagg);
        agents_reset(job);
        agents[2].fault = cases[k].fault;
        fv_round_sim_cfg_t c = tally_cfg(job, 31 + k);
        fv_round_sim_result_t r;
        fv_diag_t d = {{0}};
        CHECK_OK(fv_round_sim_run(&c, &r, &d), &d);
        bool expect[NA];
        for (int i = 0; i < NA; i++)
            expect[i] = i != 2;
        if (r.drops != 1)
            FV__FAIL("case %zu (fault %d, secagg %d): %u drops", k, (int)cases[k].fault,
                     cases[k].secagg, r.drops);
        check_tally(&r, expect);
        CHECK_UINT_EQ(r.deadlines, 0);
        fv_round_sim_result_close(&r);
        fv_job_free(job);
    }
}

/* Too few left for SecAgg's threshold: the round fails (it is not a sum of too few). */
static void test_below_threshold(void)
{
    fv_job_t *job = tally_job(true);
    agents_reset(job);
    for (int i = 0; i < 4; i++) {
        agents[i].fault = FV_RSIM_DROP;
        agents[i].phase = 1;
    }
    fv_round_sim_cfg_t c = tally_cfg(job, 9);
    fv_round_sim_result_t r;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_round_sim_run(&c, &r, &d), &d);
    CHECK(r.status != 0);
    CHECK(r.sum == NULL);
    for (int i = 0; i < NA; i++)
        CHECK(!r.contributed[i]);
    fv_round_sim_result_close(&r);
    fv_job_free(job);
}

/* The coordinator crashes before the round's commit, at each protocol point: the round
 * runs again (a new machine, new SecAgg keys and graph) and the sum is the same words. */
static void test_restart_everywhere(void)
{
    for (int secagg = 0; secagg < 2; secagg++) {
        fv_job_t *job = tally_job(secagg);
        agents_reset(job);
        fv_round_sim_cfg_t c = tally_cfg(job, 77);
        fv_round_sim_result_t ref;
        fv_diag_t d = {{0}};
        CHECK_OK(fv_round_sim_run(&c, &ref, &d), &d);
        check_tally(&ref, NULL);
        static const int points[] = {0, 1, 2, 3, 4, FV_RSIM_AT_DONE};
        for (size_t p = 0; p < sizeof points / sizeof *points; p++) {
            if (!secagg && points[p] != FV_RSIM_AT_DONE)
                continue;
            c.restart_at = points[p];
            c.defer_close = p % 2 == 0;
            fv_round_sim_result_t r;
            CHECK_OK(fv_round_sim_run(&c, &r, &d), &d);
            CHECK_UINT_EQ(r.attempts, 2);
            check_tally(&r, NULL);
            CHECK(memcmp(r.sum, ref.sum, TALLY_WORDS * sizeof *r.sum) == 0);
            fv_round_sim_result_close(&r);
        }
        fv_round_sim_result_close(&ref);
        fv_job_free(job);
    }
}

/* ---- real kinds: stats and a training round on the German credit data --------------- */

#define NB ROUND_BANKS

static char *job_json_with_schema(const fv_schema_t *s, bool secagg)
{
    char *sj = NULL;
    size_t sl = 0;
    CHECK_OK(fv_schema_to_json(s, &sj, &sl), NULL);
    size_t cap = sl + 512;
    char *j = malloc(cap);
    CHECK(j != NULL);
    snprintf(j, cap,
             "{\"name\":\"german\",\"schema\":%s,\"model\":\"mlp:8\",\"rounds\":2,"
             "\"local_epochs\":1,\"hist_bins\":200,\"seed\":5%s}",
             sj, secagg ? "" : ",\"secagg\":\"off\"");
    free(sj);
    return j;
}

static void test_real_rounds(void)
{
    char path[1024];
    fv_diag_t d = {{0}};
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    fv_schema_infer_opts_t o = {.target = "class", .positive = "bad"};
    fv_test_src("examples/data/german_credit.csv", path, sizeof(path));
    CHECK_OK(fv_schema_infer(path, &o, &s, &d), &d);
    CHECK_OK(fv_dataset_load(path, s, &ds, &d), &d);
    fv_job_t *jobs[2];
    for (int k = 0; k < 2; k++) {
        char *js = job_json_with_schema(s, k == 0); /* 0: SecAgg, 1: in the clear */
        jobs[k] = job_of(js);
        free(js);
    }
    const fv_job_t *job = jobs[0];
    fv_fed_stats_layout_t sl;
    CHECK_OK(fv_fed_stats_layout_init(job->schema, &sl), NULL);
    bank_t b[NB];
    round_banks_init(b, ds, job, &sl);
    fv_round_sim_agent_t ag[NB];
    memset(ag, 0, sizeof ag);
    size_t n_ref = 0;
    for (int k = 0; k < NB; k++) {
        ag[k].data = &b[k].data;
        n_ref += b[k].n_tr;
    }
    /* round 0, stats, through SecAgg: the pooled moments of the training rows */
    fv_round_sim_cfg_t c;
    memset(&c, 0, sizeof c);
    c.job = job;
    c.sizes.sl = &sl;
    c.round = 0;
    c.n_agents = NB;
    c.agents = ag;
    c.seed = 3;
    c.restart_at = -1;
    fv_round_sim_result_t st;
    CHECK_OK(fv_round_sim_run(&c, &st, &d), &d);
    CHECK_INT_EQ(st.status, 0);
    CHECK_INT_EQ(st.decode_status, 0);
    CHECK(st.outcome.has_stats);
    CHECK_UINT_EQ(st.outcome.stats.n_rows, n_ref);
    fv_preproc_t *pp = NULL;
    CHECK_OK(fv_preproc_from_moments(job->schema, st.outcome.stats.count, st.outcome.stats.sum,
                                     st.outcome.stats.sumsq, &pp),
             NULL);
    /* every bank standardizes its own rows with the global statistics */
    size_t nf = fv_preproc_n_features(pp);
    fv_mlp_arch_t arch;
    CHECK_OK(fv_mlp_parse_arch(job->model, nf, fv_schema_n_classes(job->schema), &arch, &d), &d);
    round_banks_features(b, ds, pp, &arch, NULL);
    fv_mlp_t *g = NULL;
    CHECK_OK(fv_mlp_new(&arch, &g), NULL);
    fv_mlp_init(g, job->seed);
    size_t P = fv_mlp_n_params(g);
    for (int k = 0; k < NB; k++)
        b[k].data.n_params = P;
    /* round 1, train: the same round through SecAgg and in the clear (its own job) decodes
     * to the same training rows and histograms, and the update agrees to the quantization
     * bound; in the clear, a bank sending NaN is dropped and the others' update stands */
    fv_round_sim_result_t tr[2];
    for (int k = 0; k < 2; k++) {
        for (int a = 0; a < NB; a++)
            b[a].data.job = jobs[k];
        c.job = jobs[k];
        c.round = 1;
        c.sizes.n_params = P;
        c.global = fv_mlp_params(g);
        c.n_ref = n_ref;
        CHECK_OK(fv_round_sim_run(&c, &tr[k], &d), &d);
        CHECK_INT_EQ(tr[k].status, 0);
        CHECK_INT_EQ(tr[k].decode_status, 0);
        CHECK(tr[k].outcome.has_result);
        CHECK_UINT_EQ(tr[k].outcome.res.n_train, n_ref);
    }
    const fv_fed_result_t *sa = &tr[0].outcome.res, *pl = &tr[1].outcome.res;
    CHECK_UINT_EQ(sa->n_val, pl->n_val);
    CHECK(memcmp(sa->hist_pos, pl->hist_pos, 200 * sizeof *sa->hist_pos) == 0);
    CHECK(memcmp(sa->hist_neg, pl->hist_neg, 200 * sizeof *sa->hist_neg) == 0);
    CHECK_NEAR(sa->val_roc_auc, pl->val_roc_auc, 1e-12);
    /* the plain vector carries each agent's loss sum in float32 (relative 2^-24) */
    CHECK_NEAR(sa->val_log_loss, pl->val_log_loss, 1e-6);
    double bound =
        fv_fed_quant_bound(NB, jobs[0]->secagg.clip, jobs[0]->secagg.bits, sa->weight_sum);
    for (size_t i = 0; i < P; i++)
        CHECK_NEAR(sa->delta_mean[i], pl->delta_mean[i], bound + 1e-6);
    ag[1].fault = FV_RSIM_PLAIN_NAN;
    fv_round_sim_result_t bad;
    CHECK_OK(fv_round_sim_run(&c, &bad, &d), &d);
    CHECK_INT_EQ(bad.status, 0);
    CHECK_UINT_EQ(bad.drops, 1);
    CHECK(!bad.contributed[1]);
    CHECK_UINT_EQ(bad.outcome.res.n_train, n_ref - b[1].n_tr);
    fv_round_sim_result_close(&bad);
    ag[1].fault = FV_RSIM_NONE;

    /* The coordinator's sum checks sit in the kind's decode: the SecAgg sum with one
     * histogram bin more than n_val (what one lying bank does to the sum) is refused with
     * the check named; the honest sum passes. */
    {
        const fv_round_kind_t *tk =
            fv_round_kind_by_id(fv_round_kinds_default(), FV_FED_KIND_TRAIN);
        fv_round_sizes_t z = {.job = jobs[0], .sl = &sl, .n_params = P};
        const fv_fed_layout_t *lay = &tr[0].shape.lay;
        uint32_t *w = malloc(lay->dim * sizeof *w);
        CHECK(w != NULL && tr[0].sum != NULL);
        memcpy(w, tr[0].sum, lay->dim * sizeof *w);
        fv_round_sum_t sum = {.secagg = true, .words = w, .n_summands = tr[0].n_summands};
        fv_round_outcome_t oc;
        CHECK_OK(tk->decode(&z, &tr[0].shape, &sum, (double)n_ref, &oc, &d), &d);
        fv_round_outcome_close(&oc);
        w[lay->off_hist_neg + 5]++;
        CHECK_INT_EQ(tk->decode(&z, &tr[0].shape, &sum, (double)n_ref, &oc, &d), FV_EPEER);
        CHECK_CONTAINS(d.msg, "sum check: histograms: model 0's summed histograms hold");
        CHECK(!oc.has_result);
        fv_round_outcome_close(&oc);
        free(w);
    }

    /* max_update_norm: every agent clips its weighted update in its compute, so the summed
     * block's norm stays within NB bounds (plus the quantization's slack) and the round
     * passes the coordinator's norm check; the update is far smaller than without it. */
    {
        const double mun = 1e-3;
        jobs[0]->max_update_norm = mun;
        for (int a = 0; a < NB; a++)
            b[a].data.job = jobs[0];
        c.job = jobs[0];
        fv_round_sim_result_t cl;
        CHECK_OK(fv_round_sim_run(&c, &cl, &d), &d);
        CHECK_INT_EQ(cl.status, 0);
        CHECK_INT_EQ(cl.decode_status, 0);
        CHECK_UINT_EQ(cl.n_summands, NB);
        double ss = 0, ss0 = 0;
        for (size_t i = 0; i < P; i++) {
            double a = (double)cl.outcome.res.delta_mean[i] * cl.outcome.res.weight_sum;
            double a0 = (double)sa->delta_mean[i] * sa->weight_sum;
            ss += a * a, ss0 += a0 * a0;
        }
        double step =
            2.0 * jobs[0]->secagg.clip / (double)((UINT64_C(1) << jobs[0]->secagg.bits) - 1);
        CHECK(sqrt(ss) <= NB * mun + sqrt((double)P) * NB * step);
        /* the bound did bite: unclipped, the summed block's norm is 0.036 here */
        CHECK(sqrt(ss0) > 5 * NB * mun && sqrt(ss) < sqrt(ss0) / 5);
        fv_round_sim_result_close(&cl);
        jobs[0]->max_update_norm = 0;
    }
    for (int k = 0; k < 2; k++)
        fv_round_sim_result_close(&tr[k]);
    fv_round_sim_result_close(&st);
    fv_mlp_free(g);
    fv_preproc_free(pp);
    round_banks_free(b);
    for (int k = 0; k < 2; k++)
        fv_job_free(jobs[k]);
    fv_dataset_free(ds);
    fv_schema_free(s);
}

int main(void)
{
    table_init();
    test_kinds_table();
    test_tally_round();
    test_dropouts_and_stragglers();
    test_slow_compute();
    test_violations();
    test_below_threshold();
    test_restart_everywhere();
    test_real_rounds();
    printf("test_round: ok\n");
    return 0;
}
