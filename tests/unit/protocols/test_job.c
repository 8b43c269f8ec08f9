/* test_job.c - the job spec: defaults, canonical round trip, every refusal, digest,
 * SecAgg sizing, and the shipped Lending Club spec.
 *
 * Specs are written with ' for " and two placeholders, @B (a small binary schema: 4
 * input features after one-hot) and @M (a multi-class one), expanded by spec(). Every
 * refusal checks the error code (FV_EPARSE: not shaped like a job - JSON syntax, a
 * type, an unknown or missing key; FV_EINVAL: a value not allowed) and that the
 * message names the field by its JSON path.
 */
#include "fv_job.h"
#include "fv_test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static fv_diag_t diag_store;
static fv_diag_t *const D = &diag_store;

/* age numeric, city categorical (3), id ignored, y target: 4 features, binary. */
static const char SCHEMA_B[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\",\"classes\":[\"no\",\"yes\"],"
    "\"unknown_category\":\"error\",\"columns\":[{\"name\":\"age\",\"type\":\"numeric\"},"
    "{\"name\":\"city\",\"type\":\"categorical\",\"categories\":[\"a\",\"b\",\"c\"]},"
    "{\"name\":\"id\",\"type\":\"ignored\"},{\"name\":\"y\",\"type\":\"target\"}]}";
/* x numeric, y target with three classes. */
static const char SCHEMA_M[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":null,\"classes\":[\"cat\",\"dog\","
    "\"emu\"],\"unknown_category\":\"other\",\"columns\":[{\"name\":\"x\",\"type\":\"numeric\"},"
    "{\"name\":\"y\",\"type\":\"target\"}]}";

/* Expands ' to " and @B / @M to the schemas; static buffer (one spec at a time). */
static const char *spec(const char *t)
{
    static char buf[8192];
    size_t o = 0;
    for (; *t; t++) {
        const char *ins = NULL;
        if (*t == '@' && (t[1] == 'B' || t[1] == 'M'))
            ins = t[1] == 'B' ? SCHEMA_B : SCHEMA_M;
        if (ins != NULL) {
            size_t n = strlen(ins);
            CHECK(o + n < sizeof buf);
            memcpy(buf + o, ins, n);
            o += n;
            t++;
        } else {
            CHECK(o + 1 < sizeof buf);
            buf[o++] = *t == '\'' ? '"' : *t;
        }
    }
    buf[o] = '\0';
    return buf;
}

static int parse(const char *tmpl, fv_job_t **ret)
{
    const char *s = spec(tmpl);
    D->msg[0] = '\0';
    return fv_job_from_json("job.json", s, strlen(s), ret, D);
}

static fv_job_t *parse_ok(const char *tmpl)
{
    fv_job_t *j = NULL;
    CHECK_OK(parse(tmpl, &j), D);
    CHECK(j != NULL);
    return j;
}

static char *to_json(const fv_job_t *j)
{
    char *s = NULL;
    size_t len = 0;
    CHECK_OK(fv_job_to_json(j, &s, &len), NULL);
    CHECK_UINT_EQ(strlen(s), len);
    return s;
}

/* Field-by-field equality (a struct compare would see padding). */
static void check_equal(const fv_job_t *a, const fv_job_t *b)
{
    CHECK_STR_EQ(a->name, b->name);
    CHECK(fv_schema_equal(a->schema, b->schema));
    CHECK_STR_EQ(a->model, b->model);
    CHECK_UINT_EQ(a->rounds, b->rounds);
    CHECK_UINT_EQ(a->local_epochs, b->local_epochs);
    CHECK_UINT_EQ(a->batch_size, b->batch_size);
    CHECK_INT_EQ(a->optim.kind, b->optim.kind);
    CHECK(a->optim.lr == b->optim.lr && a->optim.momentum == b->optim.momentum);
    CHECK(a->optim.beta1 == b->optim.beta1 && a->optim.beta2 == b->optim.beta2);
    CHECK(a->optim.eps == b->optim.eps && a->optim.weight_decay == b->optim.weight_decay);
    CHECK(a->optim.prox_mu == b->optim.prox_mu && a->optim.prox_ref == b->optim.prox_ref);
    CHECK_INT_EQ(a->strategy.kind, b->strategy.kind);
    CHECK(a->strategy.mu == b->strategy.mu && a->strategy.server_lr == b->strategy.server_lr);
    CHECK(a->strategy.beta1 == b->strategy.beta1 && a->strategy.beta2 == b->strategy.beta2);
    CHECK(a->strategy.tau == b->strategy.tau);
    CHECK_INT_EQ(a->secagg.on, b->secagg.on);
    CHECK_UINT_EQ(a->secagg.threshold, b->secagg.threshold);
    CHECK_UINT_EQ(a->secagg.neighbors, b->secagg.neighbors);
    CHECK(a->secagg.clip == b->secagg.clip);
    CHECK_UINT_EQ(a->secagg.bits, b->secagg.bits);
    CHECK_UINT_EQ(a->min_agents, b->min_agents);
    CHECK_UINT_EQ(a->deadlines.join_ms, b->deadlines.join_ms);
    CHECK_UINT_EQ(a->deadlines.train_ms, b->deadlines.train_ms);
    CHECK_UINT_EQ(a->deadlines.secagg_phase_ms, b->deadlines.secagg_phase_ms);
    CHECK_INT_EQ(a->early_stopping.metric, b->early_stopping.metric);
    CHECK_UINT_EQ(a->early_stopping.patience, b->early_stopping.patience);
    CHECK(a->early_stopping.min_delta == b->early_stopping.min_delta);
    CHECK(a->validation_fraction == b->validation_fraction);
    CHECK_UINT_EQ(a->hist_bins, b->hist_bins);
    CHECK_UINT_EQ(a->seed, b->seed);
    CHECK(a->max_update_norm == b->max_update_norm);
    CHECK_INT_EQ(a->distill.on, b->distill.on);
    CHECK_STR_EQ(a->distill.student, b->distill.student);
    CHECK(a->distill.temperature == b->distill.temperature);
    CHECK(a->distill.alpha == b->distill.alpha);
    CHECK_UINT_EQ(a->distill.rounds, b->distill.rounds);
    CHECK_UINT_EQ(a->distill.local_epochs, b->distill.local_epochs);
    CHECK_INT_EQ(a->distill.early_stopping.metric, b->distill.early_stopping.metric);
    CHECK_UINT_EQ(a->distill.early_stopping.patience, b->distill.early_stopping.patience);
    CHECK(a->distill.early_stopping.min_delta == b->distill.early_stopping.min_delta);
    CHECK_INT_EQ(a->distill.quantize_int8, b->distill.quantize_int8);
    CHECK_INT_EQ(a->cohort.on_join_deadline, b->cohort.on_join_deadline);
    CHECK_INT_EQ(a->cohort.on_member_lost, b->cohort.on_member_lost);
    CHECK_INT_EQ(a->explain, b->explain);
    CHECK_INT_EQ(a->privacy.on, b->privacy.on);
    CHECK_INT_EQ(a->privacy.mode, b->privacy.mode);
    CHECK(a->privacy.epsilon == b->privacy.epsilon);
    CHECK(a->privacy.noise_multiplier == b->privacy.noise_multiplier);
    CHECK(a->privacy.delta == b->privacy.delta && a->privacy.clip == b->privacy.clip);
    CHECK(a->privacy.sample_rate == b->privacy.sample_rate);
    CHECK_UINT_EQ(a->privacy.min_honest, b->privacy.min_honest);
    CHECK_UINT_EQ(a->privacy.outside_budget, b->privacy.outside_budget);
}

/* from_json(to_json(j)) is equal to j and encodes to the same bytes. */
static void check_round_trip(const fv_job_t *j)
{
    char *a = to_json(j), *b;
    fv_job_t *k = NULL;
    D->msg[0] = '\0';
    CHECK_OK(fv_job_from_json("canonical", a, strlen(a), &k, D), D);
    check_equal(j, k);
    b = to_json(k);
    CHECK_STR_EQ(a, b);
    free(a);
    free(b);
    fv_job_free(k);
}

static void test_defaults(void)
{
    fv_job_t *j = parse_ok("{'name':'t1','schema':@B,'model':'logreg'}");
    CHECK_STR_EQ(j->name, "t1");
    CHECK_STR_EQ(j->model, "logreg");
    CHECK_UINT_EQ(fv_schema_n_columns(j->schema), 4);
    CHECK_UINT_EQ(j->rounds, 20);
    CHECK_UINT_EQ(j->local_epochs, 1);
    CHECK_UINT_EQ(j->batch_size, 128);
    CHECK_INT_EQ(j->optim.kind, FV_OPT_ADAM);
    CHECK(j->optim.lr == 1e-3f && j->optim.momentum == 0.9f);
    CHECK(j->optim.beta1 == 0.9f && j->optim.beta2 == 0.999f && j->optim.eps == 1e-8f);
    CHECK(j->optim.weight_decay == 0.01f);
    CHECK(j->optim.prox_mu == 0.0f && j->optim.prox_ref == NULL);
    CHECK_INT_EQ(j->strategy.kind, FV_STRATEGY_FEDAVG);
    CHECK(j->secagg.on);
    CHECK_UINT_EQ(j->secagg.threshold, 0);
    CHECK_UINT_EQ(j->secagg.neighbors, 0);
    CHECK(j->secagg.clip == 1.0f);
    CHECK_UINT_EQ(j->secagg.bits, 16);
    CHECK_UINT_EQ(j->min_agents, 3);
    CHECK_UINT_EQ(j->deadlines.join_ms, 60000);
    CHECK_UINT_EQ(j->deadlines.train_ms, 600000);
    CHECK_UINT_EQ(j->deadlines.secagg_phase_ms, 60000);
    CHECK_INT_EQ(j->early_stopping.metric, FV_JOB_METRIC_ROC_AUC);
    CHECK_UINT_EQ(j->early_stopping.patience, 3);
    CHECK(j->early_stopping.min_delta == 1e-4);
    CHECK(j->validation_fraction == 0.1);
    CHECK_UINT_EQ(j->hist_bins, 1000);
    CHECK_UINT_EQ(j->seed, 0);

    /* The canonical form, after the schema, byte for byte: the format others rely on. */
    char *s = to_json(j);
    CHECK(strncmp(s, "{\"name\":\"t1\",\"schema\":{\"fedvault_schema\":1,", 42) == 0);
    CHECK_CONTAINS(
        s, "]},\"model\":\"logreg\",\"rounds\":20,\"local_epochs\":1,\"batch_size\":128,"
           "\"optimizer\":{\"kind\":\"adam\",\"lr\":0.001,\"momentum\":0.90000000000000002,"
           "\"beta1\":0.90000000000000002,\"beta2\":0.999,\"eps\":1e-8},\"l2\":0.01,\"strategy\":{"
           "\"kind\":\"fedavg\"},"
           "\"secagg\":{\"threshold\":0,\"neighbors\":0,\"clip\":1.0,\"bits\":16},"
           "\"min_agents\":3,\"deadlines_ms\":{\"join\":60000,\"train\":600000,"
           "\"secagg_phase\":60000},\"early_stopping\":{\"metric\":\"roc_auc\",\"patience\":3,"
           "\"min_delta\":0.0001},\"validation_fraction\":0.10000000000000001,"
           "\"hist_bins\":1000,\"seed\":0}");
    free(s);
    check_round_trip(j);
    fv_job_free(j);
    fv_job_free(NULL);

    /* Multi-class: the default metric is the loss (AUCs need a positive class), and no
     * histograms by default (issue 13: the default spec's 1000 bins broke every round). */
    j = parse_ok("{'name':'m','schema':@M,'model':'mlp:8','hist_bins':0}");
    CHECK_INT_EQ(j->early_stopping.metric, FV_JOB_METRIC_LOG_LOSS);
    CHECK_UINT_EQ(j->hist_bins, 0);
    check_round_trip(j);
    fv_job_free(j);
    j = parse_ok("{'name':'m','schema':@M,'model':'mlp:8'}");
    CHECK_UINT_EQ(j->hist_bins, 0);
    check_round_trip(j);
    fv_job_free(j);
    j = parse_ok("{'name':'m','schema':@M,'model':'mlp:8','early_stopping':{'metric':'accuracy'},"
                 "'distill':{'student':'logreg','early_stopping':{'metric':'accuracy'}}}");
    CHECK_INT_EQ(j->early_stopping.metric, FV_JOB_METRIC_ACCURACY);
    CHECK_INT_EQ(j->distill.early_stopping.metric, FV_JOB_METRIC_ACCURACY);
    check_round_trip(j);
    fv_job_free(j);

    /* Strategy parameter defaults. */
    j = parse_ok("{'name':'a','schema':@B,'model':'logreg','strategy':{'kind':'fedadam'}}");
    CHECK_INT_EQ(j->strategy.kind, FV_STRATEGY_FEDADAM);
    CHECK(j->strategy.server_lr == 0.01 && j->strategy.beta1 == 0.9);
    CHECK(j->strategy.beta2 == 0.99 && j->strategy.tau == 1e-3);
    check_round_trip(j);
    fv_job_free(j);
    j = parse_ok("{'name':'p','schema':@B,'model':'logreg','strategy':{'kind':'fedprox',"
                 "'mu':0.5}}");
    CHECK(j->strategy.mu == 0.5 && j->optim.prox_mu == 0.5f);
    check_round_trip(j);
    fv_job_free(j);
    j = parse_ok("{'name':'o','schema':@B,'model':'logreg','secagg':'off'}");
    CHECK(!j->secagg.on);
    CHECK(j->secagg.clip == 1.0f && j->secagg.bits == 16); /* the in-clear sum quantizes too */
    check_round_trip(j);
    fv_job_free(j);

    CHECK_STR_EQ(fv_strategy_name(FV_STRATEGY_FEDAVG), "fedavg");
    CHECK_STR_EQ(fv_strategy_name(FV_STRATEGY_FEDPROX), "fedprox");
    CHECK_STR_EQ(fv_strategy_name(FV_STRATEGY_FEDADAM), "fedadam");
    CHECK_STR_EQ(fv_strategy_name(FV_STRATEGY_FEDYOGI), "fedyogi");
    CHECK_STR_EQ(fv_strategy_name((fv_strategy_kind_t)9), "unknown");
}

/* Every key set to a non-default value. */
static const char FULL[] =
    "{'name':'full-job.1','schema':@B,'model':'mlp:16,8','rounds':7,'local_epochs':3,"
    "'batch_size':64,'optimizer':{'kind':'sgd','lr':0.05,'momentum':0.5,'beta1':0.8,"
    "'beta2':0.95,'eps':1e-6},'l2':0.001,'strategy':{'kind':'fedyogi','server_lr':0.1,"
    "'beta1':0.5,'beta2':0.9,'tau':0.01},'secagg':{'threshold':3,'neighbors':4,'clip':0.5,"
    "'bits':20},'min_agents':6,'deadlines_ms':{'join':1000,'train':2000,'secagg_phase':3000},"
    "'early_stopping':{'metric':'pr_auc','patience':0,'min_delta':0.01},"
    "'validation_fraction':0.25,'hist_bins':50,'seed':9007199254740993}";

static void test_full_round_trip(void)
{
    fv_job_t *j = parse_ok(FULL);
    CHECK_STR_EQ(j->model, "mlp:16,8");
    CHECK_UINT_EQ(j->rounds, 7);
    CHECK_UINT_EQ(j->local_epochs, 3);
    CHECK_UINT_EQ(j->batch_size, 64);
    CHECK_INT_EQ(j->optim.kind, FV_OPT_SGD);
    CHECK(j->optim.lr == 0.05f && j->optim.momentum == 0.5f && j->optim.eps == 1e-6f);
    CHECK(j->optim.weight_decay == 0.001f);
    CHECK_INT_EQ(j->strategy.kind, FV_STRATEGY_FEDYOGI);
    CHECK(j->strategy.server_lr == 0.1 && j->strategy.tau == 0.01);
    CHECK_UINT_EQ(j->secagg.threshold, 3);
    CHECK_UINT_EQ(j->secagg.neighbors, 4);
    CHECK(j->secagg.clip == 0.5f);
    CHECK_UINT_EQ(j->secagg.bits, 20);
    CHECK_UINT_EQ(j->min_agents, 6);
    CHECK_UINT_EQ(j->deadlines.secagg_phase_ms, 3000);
    CHECK_INT_EQ(j->early_stopping.metric, FV_JOB_METRIC_PR_AUC);
    CHECK_UINT_EQ(j->early_stopping.patience, 0);
    CHECK(j->validation_fraction == 0.25);
    CHECK_UINT_EQ(j->hist_bins, 50);
    CHECK_UINT_EQ(j->seed, UINT64_C(9007199254740993)); /* above 2^53: kept exactly */
    check_round_trip(j);

    /* Same job written differently (key order, spacing, 1 vs 1.0): same bytes. */
    fv_job_t *k = parse_ok(
        "{ 'seed':9007199254740993, 'hist_bins':50, 'validation_fraction':0.25,"
        "  'early_stopping':{'min_delta':0.01,'patience':0,'metric':'pr_auc'},"
        "  'deadlines_ms':{'secagg_phase':3000,'train':2000,'join':1000},'min_agents':6,"
        "  'secagg':{'bits':20,'clip':0.5,'neighbors':4,'threshold':3},"
        "  'strategy':{'tau':0.01,'beta2':0.9,'beta1':0.5,'server_lr':0.1,'kind':'fedyogi'},"
        "  'l2':0.001,'optimizer':{'eps':1e-6,'beta2':0.95,'beta1':0.8,'momentum':0.5,"
        "  'lr':0.05,'kind':'sgd'},'batch_size':64,'local_epochs':3,'rounds':7,"
        "  'model':'mlp:16,8','schema':@B,'name':'full-job.1' }");
    char *a = to_json(j), *b = to_json(k);
    CHECK_STR_EQ(a, b);
    free(a);
    free(b);
    fv_job_free(k);
    fv_job_free(j);
}

struct bad {
    const char *spec;
    int err;
    const char *needle;
};

#define MIN "'name':'t','schema':@B,'model':'logreg'"
#define MINM "'name':'t','schema':@M,'model':'logreg'"

static const struct bad bads[] = {
    /* distill */
    {"{" MIN ",'distill':1}", FV_EPARSE, "job.json: distill: got an integer; expected an object"},
    {"{" MIN ",'distill':{}}", FV_EPARSE, "job.json: distill.student: missing"},
    {"{" MIN ",'distill':{'student':3}}", FV_EPARSE, "distill.student: an integer"},
    {"{" MIN ",'distill':{'student':'tree'}}", FV_EINVAL,
     "job.json: distill.student: architecture"},
    {"{" MIN ",'distill':{'student':'mlp:8,8,8,8,8,8,8,8,8'}}", FV_EINVAL,
     "4 input features, 2 classes"},
    {"{" MIN ",'distill':{'student':'logreg','alpha':1.5}}", FV_EINVAL,
     "job.json: distill.alpha: 1.5 must be in [0, 1]"},
    {"{" MIN ",'distill':{'student':'logreg','alpha':-0.1}}", FV_EINVAL,
     "distill.alpha: -0.10000000000000001 must be in [0, 1]"},
    {"{" MIN ",'distill':{'student':'logreg','temperature':0}}", FV_EINVAL,
     "job.json: distill.temperature: 0 must be > 0"},
    {"{" MIN ",'distill':{'student':'logreg','temperature':'hot'}}", FV_EPARSE,
     "distill.temperature: got a string"},
    {"{" MIN ",'distill':{'student':'logreg','rounds':0}}", FV_EINVAL,
     "job.json: distill.rounds: 0 must be in 1..10000"},
    {"{" MIN ",'distill':{'student':'logreg','local_epochs':1001}}", FV_EINVAL,
     "distill.local_epochs: 1001 must be in 1..1000"},
    {"{" MIN ",'distill':{'student':'logreg','quantize_int8':1}}", FV_EPARSE,
     "job.json: distill.quantize_int8: got an integer; expected true or false"},
    {"{" MIN ",'distill':{'student':'logreg','teacher':'x'}}", FV_EPARSE,
     "job.json: distill.teacher: unknown key"},
    {"{" MIN ",'distill':{'student':'logreg','early_stopping':{'metric':'f1'}}}", FV_EINVAL,
     "job.json: distill.early_stopping.metric: \"f1\" is not allowed"},
    {"{" MIN ",'distill':{'student':'logreg','early_stopping':{'patience':-1}}}", FV_EINVAL,
     "distill.early_stopping.patience: -1 must be in 0..10000"},
    {"{" MIN ",'distill':{'student':'logreg','early_stopping':{'bogus':1}}}", FV_EPARSE,
     "distill.early_stopping.bogus: unknown key"},
    {"{" MINM ",'distill':{'student':'logreg','early_stopping':{'metric':'roc_auc'}}}", FV_EINVAL,
     "distill.early_stopping.metric: \"roc_auc\" needs a binary schema"},
    /* shape of the document */
    {"", FV_EPARSE, "invalid JSON"},
    {"{", FV_EPARSE, "invalid JSON"},
    {"[1]", FV_EPARSE, "expected a JSON object"},
    {"{" MIN ",'name':'u'}", FV_EPARSE, "duplicate"},
    {"{" MIN ",'bogus':1}", FV_EPARSE, "bogus: unknown key"},
    /* required keys */
    {"{'schema':@B,'model':'logreg'}", FV_EPARSE, "name: missing"},
    {"{'name':'t','model':'logreg'}", FV_EPARSE, "schema: missing"},
    {"{'name':'t','schema':@B}", FV_EPARSE, "model: missing"},
    /* name */
    {"{'name':5,'schema':@B,'model':'logreg'}", FV_EPARSE, "name: an integer"},
    {"{'name':'Bad Name','schema':@B,'model':'logreg'}", FV_EINVAL, "name: 'Bad Name'"},
    {"{'name':'','schema':@B,'model':'logreg'}", FV_EINVAL, "name:"},
    {"{'name':'a\\u0000b','schema':@B,'model':'logreg'}", FV_EPARSE, "invalid JSON"},
    {"{'name':'t','schema':@B,'model':'mlp:"
     "111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111"
     "1111111111111111111111111111111111'}",
     FV_EINVAL, "model: 'mlp:111"},
    /* schema */
    {"{'name':'t','schema':'s.json','model':'logreg'}", FV_EPARSE, "schema: a string"},
    {"{'name':'t','schema':{'fedvault_schema':1},'model':'logreg'}", FV_EPARSE, "schema:"},
    /* model */
    {"{'name':'t','schema':@B,'model':7}", FV_EPARSE, "model: an integer"},
    {"{'name':'t','schema':@B,'model':'tree'}", FV_EINVAL, "model: architecture 'tree'"},
    {"{'name':'t','schema':@B,'model':'mlp:'}", FV_EINVAL, "model:"},
    {"{'name':'t','schema':@B,'model':'mlp:8,x'}", FV_EINVAL, "model:"},
    {"{'name':'t','schema':@B,'model':'mlp:70000'}", FV_EINVAL, "model:"},
    /* integers */
    {"{" MIN ",'rounds':0}", FV_EINVAL, "rounds: 0 must be in 1..10000"},
    {"{" MIN ",'rounds':10001}", FV_EINVAL, "rounds: 10001"},
    {"{" MIN ",'rounds':1.5}", FV_EPARSE, "rounds: got a real number"},
    {"{" MIN ",'rounds':'3'}", FV_EPARSE, "rounds: got a string"},
    {"{" MIN ",'rounds':true}", FV_EPARSE, "rounds: got a boolean"},
    {"{" MIN ",'local_epochs':0}", FV_EINVAL, "local_epochs"},
    {"{" MIN ",'local_epochs':1001}", FV_EINVAL, "local_epochs"},
    {"{" MIN ",'local_epochs':null}", FV_EPARSE, "local_epochs"},
    {"{" MIN ",'batch_size':0}", FV_EINVAL, "batch_size"},
    {"{" MIN ",'batch_size':65537}", FV_EINVAL, "batch_size"},
    {"{" MIN ",'batch_size':[1]}", FV_EPARSE, "batch_size"},
    {"{" MIN ",'min_agents':2}", FV_EINVAL, "min_agents: 2 must be in 3..65535"},
    {"{" MIN ",'min_agents':65536}", FV_EINVAL, "min_agents"},
    {"{" MIN ",'min_agents':3.0}", FV_EPARSE, "min_agents"},
    {"{" MIN ",'seed':-1}", FV_EINVAL, "seed"},
    {"{" MIN ",'seed':'x'}", FV_EPARSE, "seed"},
    {"{" MIN ",'seed':99999999999999999999}", FV_EPARSE, "invalid JSON"},
    /* optimizer */
    {"{" MIN ",'optimizer':[]}", FV_EPARSE, "optimizer: got an array"},
    {"{" MIN ",'optimizer':'adam'}", FV_EPARSE, "optimizer: got a string"},
    {"{" MIN ",'optimizer':{'nesterov':true}}", FV_EPARSE, "optimizer.nesterov: unknown key"},
    {"{" MIN ",'optimizer':{'kind':'rmsprop'}}", FV_EINVAL, "optimizer.kind: \"rmsprop\""},
    {"{" MIN ",'optimizer':{'kind':1}}", FV_EPARSE, "optimizer.kind"},
    {"{" MIN ",'optimizer':{'lr':0}}", FV_EINVAL, "optimizer.lr: 0 must be > 0"},
    {"{" MIN ",'optimizer':{'lr':-1}}", FV_EINVAL, "optimizer.lr"},
    {"{" MIN ",'optimizer':{'lr':'0.1'}}", FV_EPARSE, "optimizer.lr"},
    {"{" MIN ",'optimizer':{'lr':1e-50}}", FV_EINVAL, "optimizer.lr: 1e-50 becomes 0"},
    {"{" MIN ",'optimizer':{'lr':1e39}}", FV_EINVAL, "optimizer.lr"},
    {"{" MIN ",'optimizer':{'momentum':1}}", FV_EINVAL, "optimizer.momentum: 1 must be in [0, 1)"},
    {"{" MIN ",'optimizer':{'beta1':-0.1}}", FV_EINVAL, "optimizer.beta1"},
    {"{" MIN ",'optimizer':{'beta2':1.0}}", FV_EINVAL, "optimizer.beta2"},
    {"{" MIN ",'optimizer':{'eps':0}}", FV_EINVAL, "optimizer.eps"},
    {"{" MIN ",'optimizer':{'eps':null}}", FV_EPARSE, "optimizer.eps"},
    {"{" MIN ",'l2':-0.01}", FV_EINVAL, "l2: -0.01 must be >= 0"},
    {"{" MIN ",'l2':'x'}", FV_EPARSE, "l2"},
    {"{" MIN ",'l2':1e300}", FV_EINVAL, "l2"},
    {"{" MIN ",'l2':1e-300}", FV_EINVAL, "l2"},
    /* strategy */
    {"{" MIN ",'strategy':'fedavg'}", FV_EPARSE, "strategy: got a string"},
    {"{" MIN ",'strategy':{}}", FV_EPARSE, "strategy.kind: missing"},
    {"{" MIN ",'strategy':{'kind':'fedsgd'}}", FV_EINVAL, "strategy.kind"},
    {"{" MIN ",'strategy':{'kind':2}}", FV_EPARSE, "strategy.kind"},
    {"{" MIN ",'strategy':{'kind':'fedavg','mu':1}}", FV_EPARSE, "strategy.mu: unknown key"},
    {"{" MIN ",'strategy':{'kind':'fedprox'}}", FV_EPARSE, "strategy.mu: missing"},
    {"{" MIN ",'strategy':{'kind':'fedprox','mu':-1}}", FV_EINVAL,
     "job.json: strategy.mu: -1 must be > 0"},
    {"{" MIN ",'strategy':{'kind':'fedprox','mu':0}}", FV_EINVAL, "strategy.mu"},
    {"{" MIN ",'strategy':{'kind':'fedprox','mu':'1'}}", FV_EPARSE, "strategy.mu"},
    {"{" MIN ",'strategy':{'kind':'fedprox','mu':1e-60}}", FV_EINVAL, "strategy.mu"},
    {"{" MIN ",'strategy':{'kind':'fedprox','mu':1,'tau':1}}", FV_EPARSE,
     "strategy.tau: unknown key"},
    {"{" MIN ",'strategy':{'kind':'fedadam','server_lr':0}}", FV_EINVAL, "strategy.server_lr"},
    {"{" MIN ",'strategy':{'kind':'fedadam','beta1':1}}", FV_EINVAL, "strategy.beta1"},
    {"{" MIN ",'strategy':{'kind':'fedadam','beta2':-1}}", FV_EINVAL, "strategy.beta2"},
    {"{" MIN ",'strategy':{'kind':'fedadam','tau':0}}", FV_EINVAL, "strategy.tau"},
    {"{" MIN ",'strategy':{'kind':'fedadam','tau':false}}", FV_EPARSE, "strategy.tau"},
    {"{" MIN ",'strategy':{'kind':'fedadam','mu':1}}", FV_EPARSE, "strategy.mu: unknown key"},
    {"{" MIN ",'strategy':{'kind':'fedyogi','zz':1}}", FV_EPARSE, "strategy.zz: unknown key"},
    /* secagg */
    {"{" MIN ",'secagg':'on'}", FV_EINVAL, "secagg: \"on\""},
    {"{" MIN ",'secagg':true}", FV_EPARSE, "secagg: got a boolean"},
    {"{" MIN ",'secagg':{'x':1}}", FV_EPARSE, "secagg.x: unknown key"},
    {"{" MIN ",'secagg':{'bits':0}}", FV_EINVAL, "secagg.bits: 0 must be in 1..31"},
    {"{" MIN ",'secagg':{'bits':32}}", FV_EINVAL, "secagg.bits"},
    {"{" MIN ",'secagg':{'bits':16.0}}", FV_EPARSE, "secagg.bits"},
    {"{" MIN ",'secagg':{'bits':31}}", FV_EINVAL, "secagg.bits: 31 with min_agents 3"},
    {"{" MIN ",'secagg':{'bits':30},'min_agents':5}", FV_EINVAL,
     "secagg.bits: 30 with min_agents 5"},
    {"{" MIN ",'secagg':{'clip':0}}", FV_EINVAL, "secagg.clip"},
    {"{" MIN ",'secagg':{'clip':-1}}", FV_EINVAL, "secagg.clip"},
    {"{" MIN ",'secagg':{'clip':'1'}}", FV_EPARSE, "secagg.clip"},
    {"{" MIN ",'secagg':{'threshold':-1}}", FV_EINVAL, "secagg.threshold"},
    {"{" MIN ",'secagg':{'threshold':'x'}}", FV_EPARSE, "secagg.threshold"},
    {"{" MIN ",'secagg':{'threshold':6},'min_agents':5}", FV_EINVAL,
     "secagg.threshold: 6 is more than the 5 agents of min_agents"},
    {"{" MIN ",'secagg':{'threshold':2},'min_agents':5}", FV_EINVAL, "secagg.threshold: 2"},
    {"{" MIN ",'secagg':{'neighbors':3},'min_agents':9}", FV_EINVAL,
     "secagg.neighbors: 3 must be even"},
    {"{" MIN ",'secagg':{'neighbors':4},'min_agents':5}", FV_EINVAL, "secagg.neighbors: 4"},
    {"{" MIN ",'secagg':{'neighbors':-2}}", FV_EINVAL, "secagg.neighbors"},
    {"{" MIN ",'secagg':{'neighbors':2.5}}", FV_EPARSE, "secagg.neighbors"},
    {"{" MIN ",'secagg':{'neighbors':4,'threshold':2},'min_agents':6}", FV_EINVAL,
     "secagg.threshold: 2 with 4 neighbors"},
    {"{" MIN ",'secagg':{'neighbors':4,'threshold':6},'min_agents':6}", FV_EINVAL,
     "secagg.threshold: 6 with 4 neighbors"},
    /* deadlines */
    {"{" MIN ",'deadlines_ms':5}", FV_EPARSE, "deadlines_ms: got an integer"},
    {"{" MIN ",'deadlines_ms':{'total':1}}", FV_EPARSE, "deadlines_ms.total: unknown key"},
    {"{" MIN ",'deadlines_ms':{'join':0}}", FV_EINVAL, "deadlines_ms.join: 0 must be"},
    {"{" MIN ",'deadlines_ms':{'train':-5}}", FV_EINVAL, "deadlines_ms.train"},
    {"{" MIN ",'deadlines_ms':{'secagg_phase':'x'}}", FV_EPARSE, "deadlines_ms.secagg_phase"},
    {"{" MIN ",'deadlines_ms':{'train':2592000001}}", FV_EINVAL, "deadlines_ms.train"},
    /* early stopping */
    {"{" MIN ",'early_stopping':null}", FV_EPARSE, "early_stopping: got null"},
    {"{" MIN ",'early_stopping':{'mode':'max'}}", FV_EPARSE, "early_stopping.mode: unknown key"},
    {"{" MIN ",'early_stopping':{'metric':'accuracy'}}", FV_EINVAL, "early_stopping.metric"},
    {"{" MIN ",'early_stopping':{'metric':3}}", FV_EPARSE, "early_stopping.metric"},
    {"{" MINM ",'early_stopping':{'metric':'roc_auc'}}", FV_EINVAL,
     "early_stopping.metric: \"roc_auc\" needs a binary schema"},
    {"{" MINM ",'early_stopping':{'metric':'pr_auc'}}", FV_EINVAL, "early_stopping.metric"},
    {"{" MIN ",'early_stopping':{'patience':-1}}", FV_EINVAL, "early_stopping.patience"},
    {"{" MIN ",'early_stopping':{'patience':10001}}", FV_EINVAL, "early_stopping.patience"},
    {"{" MIN ",'early_stopping':{'min_delta':-1}}", FV_EINVAL, "early_stopping.min_delta"},
    {"{" MIN ",'early_stopping':{'min_delta':'0'}}", FV_EPARSE, "early_stopping.min_delta"},
    /* validation fraction, histogram */
    {"{" MIN ",'validation_fraction':0}", FV_EINVAL, "validation_fraction: 0 must be in (0, 0.5]"},
    {"{" MIN ",'validation_fraction':0.51}", FV_EINVAL, "validation_fraction"},
    {"{" MIN ",'validation_fraction':-0.1}", FV_EINVAL, "validation_fraction"},
    {"{" MIN ",'validation_fraction':'x'}", FV_EPARSE, "validation_fraction"},
    {"{" MIN ",'hist_bins':-1}", FV_EINVAL, "hist_bins"},
    {"{" MIN ",'hist_bins':100001}", FV_EINVAL, "hist_bins"},
    {"{" MIN ",'hist_bins':9}", FV_EINVAL, "hist_bins: 9"},
    {"{" MIN ",'hist_bins':0}", FV_EINVAL, "hist_bins: 0"},
    {"{" MIN ",'hist_bins':1e3}", FV_EPARSE, "hist_bins"},
    {"{" MINM ",'hist_bins':1000}", FV_EINVAL,
     "hist_bins: 1000, but the schema is multi-class with 3 classes"},
    {"{" MIN ",'distill':{'student':'logreg','early_stopping':{'metric':'accuracy'}}}", FV_EINVAL,
     "distill.early_stopping.metric: \"accuracy\" is a multi-class job's metric"},
};

static void test_refusals(void)
{
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        fv_job_t *j = (fv_job_t *)1; /* must stay untouched */
        int r = parse(bads[i].spec, &j);
        if (r != bads[i].err || strstr(D->msg, bads[i].needle) == NULL ||
            strncmp(D->msg, "job.json", 8) != 0)
            FV__FAIL("case %zu %s: got %d (%s) \"%s\"; want %d (%s) with \"%s\"", i, bads[i].spec,
                     r, fv_err_name(r), D->msg, bads[i].err, fv_err_name(bads[i].err),
                     bads[i].needle);
        CHECK(j == (fv_job_t *)1);
    }
    /* Valid edges next to the refused ones. */
    const char *oks[] = {
        "{" MIN ",'secagg':{'bits':30}}",
        "{" MIN ",'secagg':{'threshold':3,'neighbors':4},'min_agents':6}",
        "{" MIN ",'secagg':{'threshold':5,'neighbors':4},'min_agents':6}",
        "{" MIN ",'secagg':{'threshold':3},'min_agents':5}",
        "{" MIN ",'validation_fraction':0.5,'hist_bins':10,'l2':0,'rounds':10000}",
        "{" MIN ",'optimizer':{'lr':1,'momentum':0,'beta1':0}}",
        "{" MINM ",'early_stopping':{'metric':'log_loss'},'hist_bins':0}",
        "{" MIN ",'seed':9223372036854775807,'deadlines_ms':{'train':2592000000}}",
    };
    for (size_t i = 0; i < sizeof oks / sizeof oks[0]; i++) {
        fv_job_t *j = NULL;
        if (parse(oks[i], &j) != 0)
            FV__FAIL("ok case %zu %s: %s", i, oks[i], D->msg);
        check_round_trip(j);
        fv_job_free(j);
    }
    /* The schema's own refusal keeps its path under "schema". */
    fv_job_t *j = NULL;
    CHECK_INT_EQ(parse("{'name':'t','schema':{'fedvault_schema':1,'x':2},'model':'logreg'}", &j),
                 FV_EPARSE);
    CHECK_CONTAINS(D->msg, "job.json: schema: ");
    CHECK_CONTAINS(D->msg, "'x'");
    /* A two-class target without a positive label: refused before the model (a network
     * scores two classes with one output, the positive class's probability). */
    CHECK_INT_EQ(parse("{'name':'t','schema':{'fedvault_schema':1,'target':'y','positive':null,"
                       "'classes':['no','yes'],'unknown_category':'error','columns':["
                       "{'name':'x','type':'numeric'},{'name':'y','type':'target'}]},"
                       "'model':'logreg'}",
                       &j),
                 FV_EINVAL);
    CHECK_CONTAINS(D->msg, "job.json: the target has two classes ('no', 'yes') and no positive");
    /* Model vs schema: the feature and class counts are in the message. */
    CHECK_INT_EQ(parse("{'name':'t','schema':@B,'model':'mlp:8,8,8,8,8,8,8,8,8'}", &j), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "4 input features, 2 classes");
    /* API misuse */
    CHECK_INT_EQ(fv_job_from_json("job", NULL, 3, &j, D), FV_EINVAL);
    CHECK_INT_EQ(fv_job_from_json("job", "{}", 2, NULL, D), FV_EINVAL);
    CHECK_INT_EQ(fv_job_from_json(NULL, "{}", 2, &j, D), FV_EPARSE);
    CHECK_CONTAINS(D->msg, "job: name: missing");
}

/* The distill section: defaults, inheritance of early_stopping, round trip, and absence
 * leaving the canonical form (so the digest) exactly as before. */
static void test_distill(void)
{
    fv_job_t *plain = parse_ok("{" MIN "}");
    CHECK(!plain->distill.on);
    char *a = to_json(plain);
    CHECK(strstr(a, "distill") == NULL);
    free(a);

    fv_job_t *j = parse_ok("{" MIN ",'early_stopping':{'metric':'pr_auc','patience':5,"
                           "'min_delta':0.01},'distill':{'student':'logreg'}}");
    CHECK(j->distill.on);
    CHECK_STR_EQ(j->distill.student, "logreg");
    CHECK(j->distill.temperature == 2.0 && j->distill.alpha == 0.5);
    CHECK_UINT_EQ(j->distill.rounds, 10);
    CHECK_UINT_EQ(j->distill.local_epochs, 1);
    CHECK_INT_EQ(j->distill.early_stopping.metric, FV_JOB_METRIC_PR_AUC); /* the job's */
    CHECK_UINT_EQ(j->distill.early_stopping.patience, 5);
    CHECK(j->distill.early_stopping.min_delta == 0.01);
    CHECK(!j->distill.quantize_int8);
    a = to_json(j);
    CHECK_CONTAINS(a, ",\"seed\":0,\"distill\":{\"student\":\"logreg\",\"temperature\":2.0,"
                      "\"alpha\":0.5,\"rounds\":10,\"local_epochs\":1,\"early_stopping\":"
                      "{\"metric\":\"pr_auc\",\"patience\":5,\"min_delta\":0.01},"
                      "\"quantize_int8\":false}}");
    free(a);
    check_round_trip(j);
    /* The section changes the digest; its absence does not touch the rest. */
    uint8_t d1[32], d2[32];
    CHECK_OK(fv_job_digest(j, d1), NULL);
    fv_job_free(j);
    j = parse_ok("{" MIN ",'early_stopping':{'metric':'pr_auc','patience':5,"
                 "'min_delta':0.01}}");
    CHECK_OK(fv_job_digest(j, d2), NULL);
    CHECK(memcmp(d1, d2, 32) != 0);
    fv_job_free(j);

    j = parse_ok("{" MIN ",'distill':{'student':'mlp:3','temperature':4,'alpha':0,"
                 "'rounds':3,'local_epochs':2,'early_stopping':{'metric':'log_loss',"
                 "'patience':0},'quantize_int8':true}}");
    CHECK_STR_EQ(j->distill.student, "mlp:3");
    CHECK(j->distill.temperature == 4.0 && j->distill.alpha == 0.0);
    CHECK_UINT_EQ(j->distill.rounds, 3);
    CHECK_UINT_EQ(j->distill.local_epochs, 2);
    CHECK_INT_EQ(j->distill.early_stopping.metric, FV_JOB_METRIC_LOG_LOSS);
    CHECK_UINT_EQ(j->distill.early_stopping.patience, 0);
    CHECK(j->distill.early_stopping.min_delta == 1e-4); /* the job's default */
    CHECK(j->distill.quantize_int8);
    check_round_trip(j);
    fv_job_free(j);
    j = parse_ok("{" MINM ",'distill':{'student':'logreg','alpha':1}}");
    CHECK_INT_EQ(j->distill.early_stopping.metric, FV_JOB_METRIC_LOG_LOSS);
    check_round_trip(j);
    fv_job_free(j);
    fv_job_free(plain);
}

/* max_update_norm: optional (absent = 0 = no bound, not in the canonical form, so the
 * digest of a job without it is what it was), a real > 0, round trip, digest. */
static void test_max_update_norm(void)
{
    fv_job_t *plain = parse_ok("{" MIN "}");
    CHECK(plain->max_update_norm == 0);
    char *a = to_json(plain);
    CHECK(strstr(a, "max_update_norm") == NULL);
    free(a);

    fv_job_t *j = parse_ok("{" MIN ",'max_update_norm':2.5}");
    CHECK(j->max_update_norm == 2.5);
    a = to_json(j);
    CHECK_CONTAINS(a, ",\"seed\":0,\"max_update_norm\":2.5}");
    free(a);
    check_round_trip(j);
    uint8_t d1[32], d2[32];
    CHECK_OK(fv_job_digest(j, d1), NULL);
    CHECK_OK(fv_job_digest(plain, d2), NULL);
    CHECK(memcmp(d1, d2, 32) != 0);
    fv_job_free(j);
    j = parse_ok("{" MIN ",'max_update_norm':3,'distill':{'student':'logreg'}}");
    CHECK(j->max_update_norm == 3.0 && j->distill.on);
    a = to_json(j);
    CHECK_CONTAINS(a, ",\"max_update_norm\":3.0,\"distill\":{");
    free(a);
    check_round_trip(j);
    fv_job_free(j);

    j = NULL;
    CHECK_INT_EQ(parse("{" MIN ",'max_update_norm':0}", &j), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "job.json: max_update_norm: 0 must be > 0");
    CHECK_INT_EQ(parse("{" MIN ",'max_update_norm':-1.5}", &j), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "max_update_norm: -1.5 must be > 0");
    CHECK_INT_EQ(parse("{" MIN ",'max_update_norm':'big'}", &j), FV_EPARSE);
    CHECK_CONTAINS(D->msg, "max_update_norm: got a string; expected a number > 0");
    CHECK_INT_EQ(parse("{" MIN ",'max_update_norm':null}", &j), FV_EPARSE);
    CHECK(j == NULL);
    fv_job_free(plain);
}

/* "cohort": defaults fail/continue, written only when not the defaults (then both keys,
 * last), so a job without it, or with the defaults spelt out, keeps its digest. */
static void test_cohort(void)
{
    fv_job_t *plain = parse_ok("{" MIN "}");
    CHECK_INT_EQ(plain->cohort.on_join_deadline, FV_JOB_JOIN_FAIL);
    CHECK_INT_EQ(plain->cohort.on_member_lost, FV_JOB_LOST_CONTINUE);
    char *a = to_json(plain);
    CHECK(strstr(a, "cohort") == NULL);
    uint8_t d0[32], d1[32];
    CHECK_OK(fv_job_digest(plain, d0), NULL);
    static const char *const same[] = {
        "{" MIN ",'cohort':{}}",
        "{" MIN ",'cohort':{'on_join_deadline':'fail'}}",
        "{" MIN ",'cohort':{'on_join_deadline':'fail','on_member_lost':'continue'}}",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        fv_job_t *j = parse_ok(same[i]);
        char *b = to_json(j);
        CHECK_STR_EQ(a, b);
        CHECK_OK(fv_job_digest(j, d1), NULL);
        CHECK(memcmp(d0, d1, 32) == 0);
        free(b);
        fv_job_free(j);
    }
    free(a);

    fv_job_t *j = parse_ok("{" MIN ",'cohort':{'on_join_deadline':'wait'}}");
    CHECK_INT_EQ(j->cohort.on_join_deadline, FV_JOB_JOIN_WAIT);
    CHECK_INT_EQ(j->cohort.on_member_lost, FV_JOB_LOST_CONTINUE);
    a = to_json(j);
    CHECK_CONTAINS(a, ",\"cohort\":{\"on_join_deadline\":\"wait\",\"on_member_lost\":"
                      "\"continue\"}}");
    free(a);
    check_round_trip(j);
    CHECK_OK(fv_job_digest(j, d1), NULL);
    CHECK(memcmp(d0, d1, 32) != 0);
    fv_job_free(j);
    j = parse_ok("{" MIN ",'cohort':{'on_member_lost':'wait'},'distill':{'student':'logreg'}}");
    CHECK_INT_EQ(j->cohort.on_join_deadline, FV_JOB_JOIN_FAIL);
    CHECK_INT_EQ(j->cohort.on_member_lost, FV_JOB_LOST_WAIT);
    a = to_json(j);
    CHECK_CONTAINS(a, "\"quantize_int8\":false},\"cohort\":{\"on_join_deadline\":\"fail\","
                      "\"on_member_lost\":\"wait\"}}");
    free(a);
    check_round_trip(j);
    fv_job_free(j);

    j = NULL;
    CHECK_INT_EQ(parse("{" MIN ",'cohort':'wait'}", &j), FV_EPARSE);
    CHECK_CONTAINS(D->msg, "job.json: cohort: got a string; expected an object");
    CHECK_INT_EQ(parse("{" MIN ",'cohort':{'on_join_deadline':'retry'}}", &j), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "cohort.on_join_deadline: \"retry\" is not allowed; expected "
                           "\"fail\" or \"wait\"");
    CHECK_INT_EQ(parse("{" MIN ",'cohort':{'on_member_lost':'fail'}}", &j), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "cohort.on_member_lost: \"fail\" is not allowed; expected "
                           "\"continue\" or \"wait\"");
    CHECK_INT_EQ(parse("{" MIN ",'cohort':{'on_member_lost':true}}", &j), FV_EPARSE);
    CHECK_CONTAINS(D->msg, "cohort.on_member_lost: got");
    CHECK_INT_EQ(parse("{" MIN ",'cohort':{'on_join':'wait'}}", &j), FV_EPARSE);
    CHECK_CONTAINS(D->msg, "on_join");
    CHECK(j == NULL);
    fv_job_free(plain);
}

/* The privacy section: defaults, the 0 = "not given" canonical form, every rule across
 * fields, and absence leaving the canonical form (so the digest) as before. */
#define OB "'outside_budget':['stats','metrics']"
static void test_privacy(void)
{
    fv_job_t *plain = parse_ok("{" MIN "}");
    CHECK(!plain->privacy.on);
    char *a = to_json(plain);
    CHECK(strstr(a, "privacy") == NULL);
    free(a);
    fv_job_free(plain);

    fv_job_t *j = parse_ok("{" MIN ",'privacy':{'mode':'local','epsilon':8,'delta':1e-5," OB "}}");
    CHECK(j->privacy.on);
    CHECK_INT_EQ(j->privacy.mode, FV_PRIVACY_LOCAL);
    CHECK(j->privacy.epsilon == 8.0 && j->privacy.noise_multiplier == 0.0);
    CHECK(j->privacy.delta == 1e-5 && j->privacy.clip == 1.0);
    CHECK(j->privacy.sample_rate == 0.0);
    CHECK_UINT_EQ(j->privacy.min_honest, 0);
    CHECK_UINT_EQ(j->privacy.outside_budget, FV_PRIV_REL_STATS | FV_PRIV_REL_METRICS);
    a = to_json(j);
    CHECK_CONTAINS(a, ",\"privacy\":{\"mode\":\"local\",\"epsilon\":8.0,\"noise_multiplier\":0.0,"
                      "\"delta\":1.0000000000000001e-5,\"clip\":1.0,\"sample_rate\":0.0,"
                      "\"min_honest\":0,\"outside_budget\":[\"stats\",\"metrics\"]}}");
    free(a);
    check_round_trip(j);
    fv_job_free(j);

    /* distributed: min_honest resolved to min_agents; the list in canonical order */
    j = parse_ok("{" MIN ",'min_agents':5,'explain':true,'privacy':{'mode':'distributed',"
                 "'noise_multiplier':1.1,'delta':1e-6,'clip':0.5,'sample_rate':0.05,"
                 "'outside_budget':['explain','metrics','stats']}}");
    CHECK_INT_EQ(j->privacy.mode, FV_PRIVACY_DISTRIBUTED);
    CHECK(j->privacy.noise_multiplier == 1.1 && j->privacy.epsilon == 0.0);
    CHECK(j->privacy.clip == 0.5 && j->privacy.sample_rate == 0.05);
    CHECK_UINT_EQ(j->privacy.min_honest, 5);
    CHECK_UINT_EQ(j->privacy.outside_budget, 7);
    a = to_json(j);
    CHECK_CONTAINS(a, "\"min_honest\":5,\"outside_budget\":[\"stats\",\"metrics\",\"explain\"]}}");
    free(a);
    check_round_trip(j);
    uint8_t d0[32], d1[32];
    CHECK_OK(fv_job_digest(j, d0), NULL);
    j->privacy.min_honest = 4;
    CHECK_OK(fv_job_digest(j, d1), NULL);
    CHECK(memcmp(d0, d1, 32) != 0);
    fv_job_free(j);
    j = parse_ok("{" MIN ",'min_agents':5,'privacy':{'mode':'distributed','epsilon':3,"
                 "'delta':1e-5,'sample_rate':1,'min_honest':2," OB "}}");
    CHECK_UINT_EQ(j->privacy.min_honest, 2);
    fv_job_free(j);
    /* local mode with distill, validation and a sample rate */
    j = parse_ok("{" MIN ",'max_update_norm':2,'validation':{},'distill':{'student':'logreg'},"
                 "'privacy':{'mode':'local','epsilon':1,'delta':1e-5,'sample_rate':0.01," OB "}}");
    CHECK(j->privacy.sample_rate == 0.01);
    check_round_trip(j);
    fv_job_free(j);

    static const struct bad pbad[] = {
        {"{" MIN ",'privacy':true}", FV_EPARSE, "privacy: got a boolean"},
        {"{" MIN ",'privacy':{'epsilon':1,'delta':1e-5," OB "}}", FV_EPARSE,
         "privacy.mode: missing"},
        {"{" MIN ",'privacy':{'mode':'central','epsilon':1,'delta':1e-5," OB "}}", FV_EINVAL,
         "privacy.mode: \"central\" is not allowed"},
        {"{" MIN ",'privacy':{'mode':'local','delta':1e-5," OB "}}", FV_EPARSE,
         "privacy.epsilon: missing; expected exactly one of epsilon"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':0,'noise_multiplier':0,'delta':1e-5," OB
         "}}",
         FV_EPARSE, "privacy.epsilon: missing"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'noise_multiplier':1,'delta':1e-5," OB
         "}}",
         FV_EINVAL, "privacy: both epsilon (1) and noise_multiplier (1)"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':101,'delta':1e-5," OB "}}", FV_EINVAL,
         "privacy.epsilon: 101 must be in (0, 100]"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':-1,'delta':1e-5," OB "}}", FV_EINVAL,
         "privacy.epsilon: -1 must be"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':'8','delta':1e-5," OB "}}", FV_EPARSE,
         "privacy.epsilon: got a string"},
        {"{" MIN ",'privacy':{'mode':'local','noise_multiplier':2e6,'delta':1e-5," OB "}}",
         FV_EINVAL, "privacy.noise_multiplier: 2000000 must be in (0, 1e6]"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1," OB "}}", FV_EPARSE,
         "privacy.delta: missing"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':0.2," OB "}}", FV_EINVAL,
         "privacy.delta: 0.20000000000000001 must be in (0, 0.1]"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':0," OB "}}", FV_EINVAL,
         "privacy.delta: 0 must be"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':1e-5,'clip':0," OB "}}", FV_EINVAL,
         "privacy.clip: 0 must be in (0, 1e6]"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':1e-5,'sample_rate':1.5," OB "}}",
         FV_EINVAL, "privacy.sample_rate: 1.5 must be in (0, 1]"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':1e-5,'min_honest':2," OB "}}",
         FV_EINVAL, "privacy.min_honest: 2 applies to mode \"distributed\" only"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':1e-5,'seed':2," OB "}}", FV_EPARSE,
         "privacy.seed: unknown key; expected only mode, epsilon"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':1e-5}}", FV_EPARSE,
         "privacy.outside_budget: missing"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':1e-5,'outside_budget':'stats'}}",
         FV_EPARSE, "privacy.outside_budget: got a string"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':1e-5,'outside_budget':['stats',"
         "1]}}",
         FV_EPARSE, "privacy.outside_budget[1]: got an integer"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':1e-5,'outside_budget':['stats',"
         "'metrics','labels']}}",
         FV_EINVAL, "privacy.outside_budget[2]: \"labels\" is not allowed"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':1e-5,'outside_budget':['stats',"
         "'metrics','stats']}}",
         FV_EINVAL, "privacy.outside_budget[2]: \"stats\" is listed twice"},
        {"{" MIN ",'privacy':{'mode':'local','epsilon':1,'delta':1e-5,'outside_budget':["
         "'metrics']}}",
         FV_EINVAL, "privacy.outside_budget: must list \"stats\" and \"metrics\""},
        {"{" MIN ",'explain':true,'privacy':{'mode':'local','epsilon':1,'delta':1e-5," OB "}}",
         FV_EINVAL, "privacy.outside_budget: must list \"explain\""},
        {"{" MIN ",'privacy':{'mode':'distributed','epsilon':1,'delta':1e-5," OB "}}", FV_EPARSE,
         "privacy.sample_rate: missing; mode \"distributed\" needs it"},
        {"{" MIN ",'privacy':{'mode':'distributed','epsilon':1,'delta':1e-5,'sample_rate':0.1,"
         "'min_honest':4," OB "}}",
         FV_EINVAL, "privacy.min_honest: 4 must be in 0..3"},
        {"{" MIN ",'secagg':'off','privacy':{'mode':'distributed','epsilon':1,'delta':1e-5,"
         "'sample_rate':0.1," OB "}}",
         FV_EINVAL, "privacy.mode: \"distributed\" needs secure aggregation"},
        {"{" MIN ",'max_update_norm':2,'validation':{},'privacy':{'mode':'distributed',"
         "'epsilon':1,'delta':1e-5,'sample_rate':0.1," OB "}}",
         FV_EINVAL, "privacy.mode: \"distributed\" cannot be validated"},
        {"{" MIN ",'distill':{'student':'logreg'},'privacy':{'mode':'distributed','epsilon':1,"
         "'delta':1e-5,'sample_rate':0.1," OB "}}",
         FV_EINVAL, "privacy.mode: \"distributed\" does not cover distillation"},
        {"{" MIN ",'local_epochs':2,'privacy':{'mode':'distributed','epsilon':1,'delta':1e-5,"
         "'sample_rate':0.1," OB "}}",
         FV_EINVAL, "local_epochs must be 1 (got 2)"},
    };
    for (size_t i = 0; i < sizeof pbad / sizeof pbad[0]; i++) {
        j = (fv_job_t *)1; /* must stay untouched */
        int r = parse(pbad[i].spec, &j);
        if (r != pbad[i].err || strstr(D->msg, pbad[i].needle) == NULL ||
            strncmp(D->msg, "job.json: ", 10) != 0)
            FV__FAIL("privacy case %zu %s: got %d (%s) \"%s\"; want %d (%s) with \"%s\"", i,
                     pbad[i].spec, r, fv_err_name(r), D->msg, pbad[i].err, fv_err_name(pbad[i].err),
                     pbad[i].needle);
        CHECK(j == (fv_job_t *)1);
    }
}
#undef OB

static void test_digest(void)
{
    /* Each mutation changes one field of FULL (by text); every digest differs from all. */
    static const char *const from[] = {
        "'full-job.1'",     "'mlp:16,8'",
        "'rounds':7",       "'local_epochs':3",
        "'batch_size':64",  "'kind':'sgd'",
        "'lr':0.05",        "'momentum':0.5",
        "'beta1':0.8",      "'beta2':0.95",
        "'eps':1e-6",       "'l2':0.001",
        "'server_lr':0.1",  "'beta1':0.5",
        "'beta2':0.9,",     "'tau':0.01",
        "'threshold':3",    "'neighbors':4",
        "'clip':0.5",       "'bits':20",
        "'min_agents':6",   "'join':1000",
        "'train':2000",     "'secagg_phase':3000",
        "'pr_auc'",         "'patience':0",
        "'min_delta':0.01", "'validation_fraction':0.25",
        "'hist_bins':50",   "'seed':9007199254740993",
        "'kind':'fedyogi'",
    };
    static const char *const to[] = {
        "'full-job.2'",     "'mlp:16,9'",
        "'rounds':8",       "'local_epochs':4",
        "'batch_size':65",  "'kind':'adam'",
        "'lr':0.06",        "'momentum':0.6",
        "'beta1':0.7",      "'beta2':0.96",
        "'eps':2e-6",       "'l2':0.002",
        "'server_lr':0.2",  "'beta1':0.6",
        "'beta2':0.8,",     "'tau':0.02",
        "'threshold':4",    "'neighbors':2",
        "'clip':0.6",       "'bits':21",
        "'min_agents':7",   "'join':1001",
        "'train':2001",     "'secagg_phase':3001",
        "'roc_auc'",        "'patience':1",
        "'min_delta':0.02", "'validation_fraction':0.2",
        "'hist_bins':51",   "'seed':9007199254740992",
        "'kind':'fedadam'",
    };
    enum { N = sizeof from / sizeof from[0] };
    uint8_t dg[N + 2][32]; /* N mutations, the schema's positive label, FULL itself */
    char t[8192], *p;
    fv_job_t *j = parse_ok(FULL);
    CHECK_OK(fv_job_digest(j, dg[N + 1]), NULL);
    fv_job_free(j);
    CHECK_UINT_EQ(sizeof to / sizeof to[0], N);
    for (size_t i = 0; i < N; i++) {
        snprintf(t, sizeof t, "%s", FULL);
        p = strstr(t, from[i]);
        CHECK(p != NULL);
        /* replace from[i] by to[i] in place (lengths may differ) */
        memmove(p + strlen(to[i]), p + strlen(from[i]), strlen(p + strlen(from[i])) + 1);
        memcpy(p, to[i], strlen(to[i]));
        j = parse_ok(t);
        CHECK_OK(fv_job_digest(j, dg[i]), NULL);
        fv_job_free(j);
    }
    /* The embedded schema counts too: positive "no" instead of "yes". */
    snprintf(t, sizeof t, "%s", spec(FULL));
    p = strstr(t, "\"positive\":\"yes\"");
    CHECK(p != NULL);
    memcpy(p, "\"positive\":\"no\" ", 16);
    D->msg[0] = '\0';
    CHECK_OK(fv_job_from_json("job.json", t, strlen(t), &j, D), D);
    CHECK_OK(fv_job_digest(j, dg[N]), NULL);
    fv_job_free(j);
    for (size_t a = 0; a < N + 2; a++)
        for (size_t b = a + 1; b < N + 2; b++)
            if (memcmp(dg[a], dg[b], 32) == 0)
                FV__FAIL("digests %zu and %zu are equal", a, b);
    /* Same job, same digest. */
    uint8_t again[32];
    j = parse_ok(FULL);
    CHECK_OK(fv_job_digest(j, again), NULL);
    CHECK(memcmp(again, dg[N + 1], 32) == 0);
    fv_job_free(j);
}

static void check_sizing(const fv_job_t *j, uint32_t n, uint32_t want_t, uint32_t want_k)
{
    uint32_t t = 0, k = 0;
    CHECK_OK(fv_job_secagg_for(j, n, &t, &k, D), D);
    CHECK_UINT_EQ(t, want_t);
    CHECK_UINT_EQ(k, want_k);
}

static void check_sizing_bad(const fv_job_t *j, uint32_t n, int err, const char *needle)
{
    uint32_t t = 77, k = 77;
    D->msg[0] = '\0';
    CHECK_INT_EQ(fv_job_secagg_for(j, n, &t, &k, D), err);
    CHECK_CONTAINS(D->msg, needle);
    CHECK(t == 77 && k == 77); /* written only on success */
}

static void test_secagg_for(void)
{
    fv_job_t *j = parse_ok("{" MIN "}");
    /* classic: k = n-1, t = floor(2n/3)+1 */
    check_sizing(j, 3, 3, 2);
    check_sizing(j, 4, 3, 3);
    check_sizing(j, 5, 4, 4);
    check_sizing(j, 10, 7, 9);
    check_sizing(j, 100, 67, 99);
    check_sizing_bad(j, 2, FV_EINVAL, "cohort of 2 agents");
    check_sizing_bad(j, 0, FV_EINVAL, "cohort of 0 agents");
    /* n * (2^16 - 1) must stay below 2^32 */
    check_sizing(j, 65537, 43692, 65536);
    check_sizing_bad(j, 65538, FV_EOVERFLOW, "65538 agents * (2^16 - 1)");
    /* explicit threshold, classic graph: 2t > n and t <= n per cohort */
    j->secagg.threshold = 5;
    check_sizing(j, 9, 5, 8);
    check_sizing_bad(j, 10, FV_EINVAL, "threshold 5");
    j->secagg.threshold = 11;
    check_sizing_bad(j, 10, FV_EINVAL, "threshold 11");
    /* explicit neighbours */
    j->secagg.threshold = 0;
    j->secagg.neighbors = 4;
    check_sizing(j, 6, 4, 4);
    check_sizing(j, 1000, 4, 4);
    check_sizing_bad(j, 5, FV_EINVAL, "neighbors 4 does not fit a cohort of 5");
    j->secagg.threshold = 3;
    check_sizing(j, 6, 3, 4);
    j->secagg.threshold = 2;
    check_sizing_bad(j, 6, FV_EINVAL, "threshold 2");
    j->secagg.threshold = 0;
    j->secagg.neighbors = 3;
    check_sizing_bad(j, 10, FV_EINVAL, "neighbors 3");
    /* min_agents */
    j->secagg.neighbors = 0;
    j->min_agents = 7;
    check_sizing_bad(j, 6, FV_EINVAL, "min_agents is 7");
    check_sizing(j, 7, 5, 6);
    /* bits */
    j->min_agents = 3;
    j->secagg.bits = 30;
    check_sizing(j, 4, 3, 3);
    check_sizing_bad(j, 5, FV_EOVERFLOW, "5 agents * (2^30 - 1)");
    /* off */
    j->secagg.on = false;
    check_sizing_bad(j, 5, FV_EINVAL, "SecAgg is off");
    fv_job_free(j);

    /* Parsed, not poked: the spec's rules hold for its smallest cohort. */
    j = parse_ok("{" MIN ",'secagg':{'neighbors':4,'threshold':3},'min_agents':6}");
    check_sizing(j, 6, 3, 4);
    check_sizing(j, 50, 3, 4);
    fv_job_free(j);
}

static void test_lending_club(void)
{
    char path[4096];
    fv_job_t *j = NULL;
    CHECK_OK(fv_job_load(fv_test_src("examples/lending-club/job.json", path, sizeof path), &j, D),
             D);
    CHECK_STR_EQ(j->name, "lending-club");
    CHECK_STR_EQ(j->model, "mlp:128,64");
    CHECK_STR_EQ(fv_schema_positive(j->schema), "bad");
    CHECK_UINT_EQ(fv_schema_n_columns(j->schema), 23);
    CHECK_UINT_EQ(j->rounds, 20);
    CHECK_UINT_EQ(j->local_epochs, 5);
    CHECK_UINT_EQ(j->batch_size, 128);
    CHECK_INT_EQ(j->optim.kind, FV_OPT_ADAM);
    CHECK(j->optim.lr == 0.001f && j->optim.weight_decay == 0.01f);
    CHECK_INT_EQ(j->strategy.kind, FV_STRATEGY_FEDAVG);
    CHECK(j->secagg.on && j->secagg.clip == 1.0f && j->secagg.bits == 16);
    CHECK_UINT_EQ(j->min_agents, 5);
    CHECK_INT_EQ(j->early_stopping.metric, FV_JOB_METRIC_ROC_AUC);
    CHECK_UINT_EQ(j->early_stopping.patience, 3);
    /* the main job distills its teacher into a small student (20 distill rounds after
     * the 20 training rounds: the last round number is 40) */
    CHECK(j->distill.on);
    CHECK_STR_EQ(j->distill.student, "mlp:4");
    CHECK(j->distill.temperature == 2.0 && j->distill.alpha == 0.5);
    CHECK_UINT_EQ(j->distill.rounds, 20);
    CHECK_UINT_EQ(j->distill.local_epochs, 5);
    CHECK_UINT_EQ(j->distill.early_stopping.patience, 3);
    CHECK(j->distill.quantize_int8);
    /* and explains its final training model in one round after those (round 41) */
    CHECK(j->explain);
    CHECK_UINT_EQ(fv_job_last_round(j), 41);
    check_sizing(j, 5, 4, 4);
    check_round_trip(j);
    /* Without "explain", its digest is the one computed with job.c before max_update_norm
     * existed (commit 494d3fc): a job without the keys keeps its identity. */
    j->explain = false;
    {
        static const char before[] =
            "54502523e42436d219e42275f2a826d1976f5370500c52632fdfa663536db3f8";
        uint8_t dg[32];
        char hex[65];
        CHECK(j->max_update_norm == 0);
        CHECK_OK(fv_job_digest(j, dg), NULL);
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", dg[i]);
        CHECK_STR_EQ(hex, before);
    }
    j->distill.on = false; /* without the section the last round is the last training one */
    CHECK_UINT_EQ(fv_job_last_round(j), 20);
    fv_job_free(j);

    CHECK(fv_job_load("/nonexistent/job.json", &j, D) < 0);
    CHECK_CONTAINS(D->msg, "/nonexistent/job.json: cannot open");
    CHECK_INT_EQ(fv_job_load(fv_test_src("examples", path, sizeof path), &j, D), FV_EINVAL);
}

int main(void)
{
    test_defaults();
    test_full_round_trip();
    test_refusals();
    test_digest();
    test_distill();
    test_max_update_norm();
    test_cohort();
    test_privacy();
    test_secagg_for();
    test_lending_club();
    return 0;
}
