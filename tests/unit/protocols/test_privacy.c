/* test_privacy.c - an agent's privacy plan (protocols/privacy.c) against the accountant
 * called directly, and the ledger: charges, reopening, once per job, composition,
 * conservative reading of another order grid, and every corrupt file refused with its
 * path and line.
 *
 * Everything happens in a fresh mkdtemp directory that is removed at the end.
 */
#define _GNU_SOURCE /* mkdtemp */
#include "fv_dpnoise.h"
#include "fv_privacy.h"
#include "fv_test.h"
#include "fv_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static fv_diag_t diag_store;
static fv_diag_t *const D = &diag_store;
static char dir[512];

static const char SCHEMA[] =
    "{'fedvault_schema':1,'target':'y','positive':'yes','classes':['no','yes'],"
    "'unknown_category':'error','columns':[{'name':'age','type':'numeric'},"
    "{'name':'y','type':'target'}]}";

/* A job: ' for ", @ for the schema. */
static fv_job_t *job(const char *t)
{
    static char buf[4096];
    size_t o = 0;
    for (; *t; t++) {
        if (*t == '@') {
            for (const char *s = SCHEMA; *s; s++)
                buf[o++] = *s == '\'' ? '"' : *s;
        } else {
            buf[o++] = *t == '\'' ? '"' : *t;
        }
        CHECK(o + sizeof SCHEMA < sizeof buf);
    }
    buf[o] = '\0';
    fv_job_t *j = NULL;
    CHECK_OK(fv_job_from_json("job", buf, o, &j, D), D);
    return j;
}

#define J "'name':'t','schema':@,'model':'logreg'"
#define OB "'outside_budget':['stats','metrics']"

static void test_plan_off_and_local(void)
{
    fv_privacy_plan_t p;
    fv_job_t *j = job("{" J "}");
    memset(&p, 0xAB, sizeof p);
    CHECK_OK(fv_privacy_plan(j, 1000, 3, 0, &p, D), D);
    CHECK(!p.on && p.steps == 0 && p.epsilon == 0);
    fv_job_free(j);

    /* noise multiplier given: q = batch / n_train, steps = rounds * ceil(1 / q) */
    j = job("{" J ",'rounds':10,'batch_size':128,'privacy':{'mode':'local','noise_multiplier':1.1,"
            "'delta':1e-5," OB "}}");
    CHECK_OK(fv_privacy_plan(j, 1280, 3, 0, &p, D), D);
    CHECK(p.on && p.mode == FV_PRIVACY_LOCAL);
    /* q is the rate fv_dp_poisson samples at: rounded up to a multiple of 2^-32 */
    CHECK(p.q == fv_dp_rate_round(0.1) && p.q > 0.1 && p.q - 0.1 < 0x1p-32);
    CHECK_UINT_EQ(p.steps, 100);
    CHECK(p.sigma == 1.1 && p.clip == 1.0 && p.delta == 1e-5);
    double eps = 0;
    CHECK_OK(fv_rdp_sgm_epsilon(p.q, 1.1, 100, NULL, 0, 1e-5, &eps, NULL), NULL);
    CHECK_NEAR(p.epsilon, eps, 1e-12);
    CHECK(p.epsilon > 0.5 && p.epsilon < 50);
    CHECK(p.n_orders == fv_rdp_orders_default(NULL, 0));
    CHECK_NEAR(p.rdp[0], 100 * fv_rdp_sgm(p.q, 1.1, p.orders[0]), 1e-12);
    /* fewer rows: a larger q, more epsilon */
    fv_privacy_plan_t p2;
    CHECK_OK(fv_privacy_plan(j, 640, 3, 0, &p2, D), D);
    CHECK(p2.q == fv_dp_rate_round(0.2));
    CHECK_UINT_EQ(p2.steps, 50);
    CHECK(p2.epsilon > p.epsilon);
    /* batch larger than the rows: refused, naming the key, no row count */
    CHECK_INT_EQ(fv_privacy_plan(j, 100, 3, 0, &p2, D), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "privacy.sample_rate: the default, batch_size 128");
    CHECK(strstr(D->msg, "100") == NULL);
    CHECK_INT_EQ(fv_privacy_plan(j, 0, 3, 0, &p2, D), FV_EINVAL);
    fv_job_free(j);

    /* a target epsilon: calibrated within [target - 0.01, target]; distill counted */
    j = job("{" J ",'rounds':5,'local_epochs':2,'distill':{'student':'logreg','rounds':3,"
            "'local_epochs':1},'privacy':{'mode':'local','epsilon':3,'delta':1e-5,"
            "'sample_rate':0.02,'clip':0.5," OB "}}");
    CHECK_OK(fv_privacy_plan(j, 5, 3, 0, &p, D), D); /* sample_rate given: rows unused */
    CHECK(p.q == fv_dp_rate_round(0.02));
    CHECK_UINT_EQ(p.steps, fv_train_dp_steps(5 * 2 + 3, 0.02));
    CHECK_UINT_EQ(p.steps, 13 * 50);
    CHECK(p.epsilon <= 3.0 && p.epsilon >= 3.0 - 0.01);
    CHECK(p.clip == 0.5);
    CHECK_OK(fv_rdp_sgm_epsilon(p.q, p.sigma, p.steps, NULL, 0, 1e-5, &eps, NULL), NULL);
    CHECK_NEAR(p.epsilon, eps, 1e-12);
    fv_job_free(j);

    /* unreachable: epsilon tiny with every record in every step for many rounds */
    j = job("{" J ",'rounds':10000,'local_epochs':1000,'privacy':{'mode':'local',"
            "'epsilon':0.0001,'delta':1e-10,'sample_rate':1," OB "}}");
    CHECK_INT_EQ(fv_privacy_plan(j, 10, 3, 0, &p, D), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "privacy.epsilon: 0.0001");
    fv_job_free(j);
    /* a sample rate giving absurdly many steps */
    j = job("{" J ",'rounds':10000,'privacy':{'mode':'local','noise_multiplier':1,"
            "'delta':1e-5,'sample_rate':1e-9," OB "}}");
    CHECK_INT_EQ(fv_privacy_plan(j, 10, 3, 0, &p, D), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "privacy.sample_rate: 1e-09");
    fv_job_free(j);
}

static void test_plan_distributed(void)
{
    fv_privacy_plan_t p, p0;
    /* a big model: tau is negligible, rho_bound = 1 / (2 sigma^2) */
    fv_job_t *j = job("{" J ",'rounds':20,'min_agents':5,'secagg':{'bits':20,'clip':0.5},"
                      "'optimizer':{'kind':'sgd','lr':0.1},'privacy':{'mode':'distributed',"
                      "'noise_multiplier':1.0,'delta':1e-5,'sample_rate':0.05,'min_honest':3,"
                      "'clip':2," OB "}}");
    const uint64_t P = 10000;
    CHECK_OK(fv_privacy_plan(j, 777, P, 0, &p0, D), D);
    CHECK(p0.on && p0.mode == FV_PRIVACY_DISTRIBUTED);
    CHECK_UINT_EQ(p0.steps, 20);
    CHECK(p0.q == fv_dp_rate_round(0.05) && p0.sigma == 1.0);
    CHECK_UINT_EQ(p0.min_honest, 3);
    CHECK(p0.ddg_sigma2 == 0 && p0.ddg_sens == 0); /* no n_ref yet */
    double curve[FV_RDP_MAX_ORDERS], eps = 0;
    CHECK_OK(fv_rdp_subsampled_zcdp_curve(p0.q, 0.5, 20, p0.orders, p0.n_orders, curve), NULL);
    CHECK_OK(fv_rdp_epsilon(p0.orders, curve, p0.n_orders, 1e-5, &eps, NULL), NULL);
    CHECK_NEAR(p0.epsilon, eps, 1e-9 * eps);
    CHECK(isfinite(p0.epsilon) && p0.epsilon > 0);

    /* n_ref known: the same epsilon, and the noise sized by the contract's formula */
    CHECK_OK(fv_privacy_plan(j, 777, P, 40000, &p, D), D);
    CHECK(p.epsilon == p0.epsilon);
    double step = 2.0 * 0.5 / ((1 << 20) - 1);
    double sens = 0.1 * 2.0 / (0.05 * 40000) / step + sqrt((double)P);
    CHECK_NEAR(p.ddg_sens, sens, 1e-6 * sens);
    CHECK_UINT_EQ(p.ddg_sigma2, (uint64_t)ceil(sens * sens / 3.0));
    /* the sum of any 3 agents' noise has at least (sigma sens)^2 of variance */
    CHECK((double)p.ddg_sigma2 * 3 >= sens * sens);
    CHECK_OK(fv_privacy_ddg_fits(&p, 20, 5, D), D);
    fv_job_free(j);

    /* min_honest defaults to min_agents; fewer honest agents cost more epsilon in a small
     * model (tau) but the first-order term is the same */
    j = job("{" J ",'rounds':20,'min_agents':4,'privacy':{'mode':'distributed','epsilon':2,"
            "'delta':1e-5,'sample_rate':0.1," OB "}}");
    CHECK_OK(fv_privacy_plan(j, 10, 3, 0, &p, D), D);
    CHECK_UINT_EQ(p.min_honest, 4);
    CHECK(p.epsilon <= 2.0 && p.epsilon >= 2.0 - 0.01);
    fv_privacy_plan_t pg;
    fv_job_t *k = job("{" J ",'rounds':20,'min_agents':4,'privacy':{'mode':'distributed',"
                      "'noise_multiplier':1,'delta':1e-5,'sample_rate':0.1," OB "}}");
    CHECK_OK(fv_privacy_plan(k, 10, 3, 0, &pg, D), D);
    /* a fixed sigma's epsilon is monotone: the calibrated sigma's is at the target */
    CHECK((p.sigma > 1.0) == (pg.epsilon > 2.0));
    fv_job_free(k);
    CHECK_INT_EQ(fv_privacy_plan(j, 10, 0, 0, &p, D), FV_EINVAL);
    fv_job_free(j);

    /* noise past the sampler's range (2^48) is refused; below it, a plan whose noise fits
     * min_agents' sums may not fit a larger cohort's (the round checks its own) */
    j = job("{" J ",'rounds':1,'min_agents':3,'secagg':{'bits':30},'privacy':{'mode':"
            "'distributed','noise_multiplier':100,'delta':1e-5,'sample_rate':1," OB "}}");
    CHECK_INT_EQ(fv_privacy_plan(j, 10, 1000000, 1, &p, D), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "out of the sampler's range 1..2^48");
    CHECK_OK(fv_privacy_plan(j, 10, 1000000, 10, &p, D), D);
    CHECK(p.ddg_sigma2 > (uint64_t)1e12);
    CHECK_OK(fv_privacy_ddg_fits(&p, 30, 3, D), D);
    CHECK_INT_EQ(fv_privacy_ddg_fits(&p, 28, 15, D), FV_EOVERFLOW);
    CHECK_CONTAINS(D->msg, "does not fit SecAgg's 32-bit sums of 15 agents at secagg.bits 28");
    CHECK_OK(fv_privacy_plan(j, 10, 1000000, 0, &p, D), D);
    p.ddg_sigma2 = 1000;
    CHECK_OK(fv_privacy_ddg_fits(&p, 30, 3, D), D);
    CHECK_INT_EQ(fv_privacy_ddg_fits(&p, 31, 3, D), FV_EOVERFLOW);
    CHECK_INT_EQ(fv_privacy_ddg_fits(&p, 0, 3, D), FV_EINVAL);
    fv_job_free(j);
}

static void path_of(char *out, size_t cap, const char *name)
{
    CHECK((size_t)snprintf(out, cap, "%s/%s", dir, name) < cap);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    CHECK(fputs(text, f) >= 0);
    CHECK(fclose(f) == 0);
}

static const char FP1[] = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809";
static const char FP2[] = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
static const char JOB1[] = "0000000000000000000000000000000000000000000000000000000000000001";
static const char JOB2[] = "0000000000000000000000000000000000000000000000000000000000000002";
static const char JOB3[] = "0000000000000000000000000000000000000000000000000000000000000003";

static void test_ledger(void)
{
    char path[640];
    fv_privacy_ledger_t *l = NULL;
    fv_privacy_plan_t p;
    double spent = -1, with = -1;
    bool charged = true;
    path_of(path, sizeof path, "ledger.jsonl");
    fv_job_t *j = job("{" J ",'rounds':10,'privacy':{'mode':'local','noise_multiplier':1.1,"
                      "'delta':1e-5,'sample_rate':0.1," OB "}}");
    CHECK_OK(fv_privacy_plan(j, 1000, 3, 0, &p, D), D);
    fv_job_free(j);

    /* no file: nothing spent */
    CHECK_OK(fv_privacy_ledger_open(path, &l, D), D);
    CHECK_OK(fv_privacy_ledger_spent(l, FP1, JOB1, &p, 1e-5, &spent, &with, &charged, D), D);
    CHECK(spent == 0 && !charged);
    CHECK_NEAR(with, p.epsilon, 1e-12);
    CHECK_OK(fv_privacy_ledger_charge(l, FP1, JOB1, &p, 1700000000, D), D);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    /* once per job: a second charge changes nothing, and spent says charged */
    CHECK_OK(fv_privacy_ledger_charge(l, FP1, JOB1, &p, 1700000001, D), D);
    CHECK_OK(fv_privacy_ledger_spent(l, FP1, JOB1, &p, 1e-5, &spent, &with, &charged, D), D);
    CHECK(charged);
    CHECK_NEAR(spent, p.epsilon, 1e-12);
    CHECK(with == spent);
    fv_privacy_ledger_free(l);

    /* reopened (a restart): the same spend; a second job composes */
    l = NULL;
    CHECK_OK(fv_privacy_ledger_open(path, &l, D), D);
    CHECK_OK(fv_privacy_ledger_spent(l, FP1, JOB2, &p, 1e-5, &spent, &with, &charged, D), D);
    CHECK(!charged);
    CHECK_NEAR(spent, p.epsilon, 1e-12);
    double two = 0;
    CHECK_OK(fv_rdp_sgm_epsilon(p.q, 1.1, 2 * p.steps, NULL, 0, 1e-5, &two, NULL), NULL);
    CHECK_NEAR(with, two, 1e-9);
    CHECK(with > spent && with < 2 * spent); /* RDP composes better than adding epsilons */
    CHECK_OK(fv_privacy_ledger_charge(l, FP1, JOB2, &p, 1700000002, D), D);
    /* another data file has its own budget */
    CHECK_OK(fv_privacy_ledger_spent(l, FP2, JOB3, NULL, 1e-5, &spent, &with, &charged, D), D);
    CHECK(spent == 0 && with == 0);
    CHECK_OK(fv_privacy_ledger_charge(l, FP2, JOB3, &p, 1700000003, D), D);
    /* a job already charged, re-offered with another data file (FP2 swapped in for FP1):
     * the new file's records were never counted, so it is charged for them */
    CHECK_OK(fv_privacy_ledger_spent(l, FP2, JOB1, &p, 1e-5, &spent, &with, &charged, D), D);
    CHECK(!charged);
    CHECK_NEAR(spent, p.epsilon, 1e-12);
    CHECK_NEAR(with, two, 1e-9);
    CHECK_OK(fv_privacy_ledger_charge(l, FP2, JOB1, &p, 1700000004, D), D);
    CHECK_OK(fv_privacy_ledger_spent(l, FP2, JOB1, &p, 1e-5, &spent, &with, &charged, D), D);
    CHECK(charged && with == spent);
    char *js = NULL;
    CHECK_OK(fv_privacy_ledger_json(l, 1e-5, &js, D), D);
    CHECK_CONTAINS(js, "{\"entries\":[{\"job\":\"000000000000000000000000000000000000000000000000"
                       "0000000000000001\",\"fingerprint\":\"1a2b3c");
    CHECK_CONTAINS(js, "\"mode\":\"local\"");
    CHECK_CONTAINS(js, "\"ts\":1700000002");
    CHECK_CONTAINS(js, "\"totals\":[{\"fingerprint\":\"1a2b3c");
    CHECK_CONTAINS(js, "\"jobs\":2},{\"fingerprint\":\"ffff");
    CHECK_CONTAINS(js, "\"jobs\":2}]}");
    free(js);
    fv_privacy_ledger_free(l);
    l = NULL;
    CHECK_OK(fv_privacy_ledger_open(path, &l, D), D);
    CHECK_OK(fv_privacy_ledger_spent(l, FP1, NULL, NULL, 1e-5, &spent, NULL, NULL, D), D);
    CHECK_NEAR(spent, two, 1e-9);
    /* a charge that cannot be written leaves the ledger as it was */
    fv_privacy_ledger_free(l);
    char bad_path[700];
    CHECK((size_t)snprintf(bad_path, sizeof bad_path, "%s/nodir/ledger.jsonl", dir) <
          sizeof bad_path);
    l = NULL;
    CHECK_OK(fv_privacy_ledger_open(bad_path, &l, D), D);
    CHECK(fv_privacy_ledger_charge(l, FP1, JOB1, &p, 1, D) < 0);
    CHECK_CONTAINS(D->msg, "nodir");
    CHECK_OK(fv_privacy_ledger_spent(l, FP1, JOB1, NULL, 1e-5, &spent, NULL, &charged, D), D);
    CHECK(spent == 0 && !charged);
    CHECK_INT_EQ(fv_privacy_ledger_charge(l, "xyz", JOB1, &p, 1, D), FV_EINVAL);
    fv_privacy_ledger_free(l);
    unlink(path);
}

/* An entry on another grid is read at the smallest of its orders >= each order. */
static void test_other_grid(void)
{
    char path[640], text[1024];
    fv_privacy_ledger_t *l = NULL;
    path_of(path, sizeof path, "grid.jsonl");
    snprintf(text, sizeof text,
             "{\"job\":\"%s\",\"fingerprint\":\"%s\",\"mode\":\"distributed\",\"epsilon\":1.0,"
             "\"delta\":1e-5,\"sigma\":1.0,\"q\":1.0,\"steps\":1,\"ts\":0,"
             "\"orders\":[2.0,4.0,8.5],\"rdp\":[0.5,1.0,null]}\n",
             JOB1, FP1);
    write_file(path, text);
    CHECK_OK(fv_privacy_ledger_open(path, &l, D), D);
    double orders[FV_RDP_MAX_ORDERS], acc[FV_RDP_MAX_ORDERS], want = 0, spent = 0;
    size_t n = fv_rdp_orders_default(orders, FV_RDP_MAX_ORDERS);
    for (size_t i = 0; i < n; i++)
        acc[i] = orders[i] <= 2.0 ? 0.5 : orders[i] <= 4.0 ? 1.0 : INFINITY;
    CHECK_OK(fv_rdp_epsilon(orders, acc, n, 1e-5, &want, NULL), NULL);
    CHECK_OK(fv_privacy_ledger_spent(l, FP1, NULL, NULL, 1e-5, &spent, NULL, NULL, D), D);
    CHECK_NEAR(spent, want, 1e-12);
    CHECK(isfinite(spent));
    fv_privacy_ledger_free(l);
}

static void test_corrupt(void)
{
    char path[640], line[1024];
    snprintf(line, sizeof line,
             "{\"job\":\"%s\",\"fingerprint\":\"%s\",\"mode\":\"local\",\"epsilon\":1.0,"
             "\"delta\":1e-5,\"sigma\":1.0,\"q\":0.5,\"steps\":1,\"ts\":0,"
             "\"orders\":[2.0],\"rdp\":[0.5]}\n",
             JOB1, FP1);
    path_of(path, sizeof path, "bad.jsonl");
    static const struct {
        const char *from, *to, *needle;
    } cases[] = {
        {"\"mode\":\"local\"", "\"mode\":\"central\"", "bad.jsonl:2: mode is missing"},
        {"\"q\":0.5", "\"q\":1.5", "bad.jsonl:2: q is missing"},
        {"\"delta\":1e-5", "\"delta\":0", "bad.jsonl:2: delta"},
        {"\"steps\":1", "\"steps\":-1", "bad.jsonl:2: steps"},
        {"\"orders\":[2.0]", "\"orders\":[1.0]", "bad.jsonl:2: orders"},
        {"\"rdp\":[0.5]", "\"rdp\":[-0.5]", "bad.jsonl:2: rdp"},
        {"\"rdp\":[0.5]", "\"rdp\":[0.5,1]", "bad.jsonl:2: rdp"},
        {"\"ts\":0", "\"ts\":0,\"x\":1", "bad.jsonl:2: an unknown key"},
        {"\"fingerprint\":\"1a", "\"fingerprint\":\"1A", "bad.jsonl:2: fingerprint"},
        {"{\"job\"", "[{\"job\"", "bad.jsonl:2:"},
        {"\"ts\":0,", "\"ts\":0,\"ts\":1,", "bad.jsonl:2:"},
    };
    char good2[1024];
    snprintf(good2, sizeof good2, "%s", line);
    char *at = strstr(good2, JOB1);
    at[63] = '9'; /* another job on line 1 */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[4096], bad[1024];
        const char *f = strstr(line, cases[i].from);
        CHECK(f != NULL);
        snprintf(bad, sizeof bad, "%.*s%s%s", (int)(f - line), line, cases[i].to,
                 f + strlen(cases[i].from));
        snprintf(text, sizeof text, "%s%s", good2, bad);
        write_file(path, text);
        fv_privacy_ledger_t *l = (fv_privacy_ledger_t *)1;
        int r = fv_privacy_ledger_open(path, &l, D);
        if (r != FV_EPARSE || strstr(D->msg, cases[i].needle) == NULL)
            FV__FAIL("corrupt case %zu: got %d \"%s\"; want FV_EPARSE with \"%s\"", i, r, D->msg,
                     cases[i].needle);
        CHECK(l == (fv_privacy_ledger_t *)1);
    }
    /* a job charged twice; a blank line is fine */
    char text[4096];
    snprintf(text, sizeof text, "%s\n%s", line, line);
    write_file(path, text);
    fv_privacy_ledger_t *l = NULL;
    CHECK_INT_EQ(fv_privacy_ledger_open(path, &l, D), FV_EPARSE);
    CHECK_CONTAINS(D->msg, "bad.jsonl:3: job 0000000000000000... is charged twice");
    snprintf(text, sizeof text, "%s\n%s", good2, line);
    write_file(path, text);
    CHECK_OK(fv_privacy_ledger_open(path, &l, D), D);
    fv_privacy_ledger_free(l);
    /* a line without its end (a torn write never happens: the file is replaced whole) */
    write_file(path, "{\"job\":");
    CHECK_INT_EQ(fv_privacy_ledger_open(path, &l, D), FV_EPARSE);
    CHECK_CONTAINS(D->msg, "bad.jsonl:1:");
    /* caps: a very long line, a file too big (sparse) */
    {
        size_t n = (64 << 10) + 10;
        char *big = malloc(n + 1);
        CHECK(big != NULL);
        memset(big, ' ', n);
        big[0] = '{';
        big[n - 1] = '}';
        big[n] = '\0';
        write_file(path, big);
        free(big);
        CHECK_INT_EQ(fv_privacy_ledger_open(path, &l, D), FV_EPARSE);
        CHECK_CONTAINS(D->msg, "bad.jsonl:1: a line of more than 65536 bytes");
    }
    CHECK(truncate(path, (off_t)((64 << 20) + 1)) == 0);
    CHECK_INT_EQ(fv_privacy_ledger_open(path, &l, D), FV_ETOOBIG);
    CHECK_CONTAINS(D->msg, "bad.jsonl: the privacy ledger is larger than");
    /* a directory */
    CHECK(fv_privacy_ledger_open(dir, &l, D) < 0);
    unlink(path);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    CHECK((size_t)snprintf(dir, sizeof dir, "%s/fvpriv.XXXXXX",
                           tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp") < sizeof dir);
    CHECK(mkdtemp(dir) != NULL);
    test_plan_off_and_local();
    test_plan_distributed();
    test_ledger();
    test_other_grid();
    test_corrupt();
    char p[640];
    path_of(p, sizeof p, "grid.jsonl");
    unlink(p);
    CHECK(rmdir(dir) == 0);
    return 0;
}
