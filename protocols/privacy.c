/* privacy.c - an agent's privacy plan for a job (what its records get) and its ledger of
 * what each of its data files has spent.
 *
 * Purpose: the plan is the one place that turns a job's "privacy" section and this
 * agent's row counts into numbers (q, steps, sigma, the RDP curve and its epsilon), so the
 * budget check at the offer and the compute of every round run the same function of the
 * same inputs. The ledger is the agent's memory of spends across jobs and restarts.
 *
 * The plan (fv_privacy.h lists the modes):
 *   q is always fv_dp_rate_round of the rate asked for: the rate fv_dp_poisson really
 *   samples at (a multiple of 2^-32, at most 2^-32 above), so the accountant counts it.
 *   local        q = sample_rate, or batch_size / n_train; steps = fv_train_dp_steps(
 *                rounds * local_epochs + distill.rounds * distill.local_epochs, q);
 *                sigma = noise_multiplier or fv_rdp_calibrate (tol 0.01); the curve
 *                fv_rdp_sgm_curve on the default orders, epsilon fv_rdp_epsilon.
 *   distributed  q = sample_rate, steps = rounds (distill is refused by the parser). One
 *                record moves the update block v = -(lr / (q n_ref)) u by at most
 *                lr C / (q n_ref) in L2 (real units); SecAgg's quantization step is
 *                s = 2 secagg.clip / (2^bits - 1), and stochastic rounding adds at most 1
 *                per coordinate under the coupling of the contract, so the quantized
 *                sensitivity is ddg_sens = lr C / (q n_ref s) + sqrt(P). Each agent adds
 *                N_Z(0, ddg_sigma2), ddg_sigma2 = ceil((sigma ddg_sens)^2 / h), so any h
 *                honest agents' sum has variance at least (sigma ddg_sens)^2.
 *                The epsilon must not depend on n_ref (unknown at the offer, when the
 *                agent decides and charges): it is computed from an upper bound of the
 *                mechanism's zCDP valid for every n_ref. With x = ddg_sens >= sqrt(P), L1
 *                sensitivity sqrt(P) x and the actual s2 >= max(1, sigma^2 x^2 / h), every
 *                ratio fv_rdp_ddg_rho's three bounds use is at most its value at
 *                l2 / sqrt(h s2) = 1 / sigma, l1 / sqrt(h s2) = sqrt(P) / sigma, and tau
 *                only falls as s2 grows: so rho_bound = fv_rdp_ddg_rho(L, sqrt(P) L, S, h,
 *                P) with S = max(1, sigma^2 P / h), L = sqrt(h S) / sigma (those ratios,
 *                tau at the smallest s2 possible). The curve is
 *                fv_rdp_subsampled_zcdp_curve(q, rho_bound,
 *                steps); a target epsilon is met by bisection on sigma. With n_ref known the
 *                plan also checks that the noise fits SecAgg's 32-bit sums for min_agents
 *                agents (fv_privacy_ddg_fits; the round checks its actual cohort).
 *
 * The ledger file (JSON lines, one object per accepted job with a privacy section and data
 * file it trained on; a job re-offered with another data file is charged for that one too):
 *   {"job": 64 hex, "fingerprint": 64 hex (the data file's SHA-256), "mode": "local" |
 *    "distributed", "epsilon", "delta", "sigma", "q": reals, "steps", "ts": integers,
 *    "orders": [reals > 1], "rdp": [reals >= 0, or null for +inf]}
 * It is rewritten whole (fv_file_write_atomic: temporary file, fsync, rename, directory
 * fsync) on every charge, so after a crash it holds the old or the new list, never half a
 * line. Although it is the agent's own file, it is read like hostile input: at most
 * LEDGER_MAX_BYTES and LEDGER_MAX_ENTRIES, every field checked, a (job, fingerprint) pair
 * twice refused (the writer never does it); a bad file is refused with its path and line, never
 * repaired: the operator decides (a budget must not silently reset). Composition across jobs: the
 * curves of a fingerprint's entries add at each order. An entry written on another order grid is
 * read conservatively: RDP is non-decreasing in the order, so at order a it counts its value at the
 * smallest of its orders >= a (none: +inf at a).
 *
 * Threads: pure functions, plus the ledger's own file; a ledger is used by one thread.
 * Ownership: the ledger owns its entries and a copy of its path.
 */
#include "fv_privacy.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_dpnoise.h"
#include "fv_file.h"
#include "fv_train.h"

#define LEDGER_MAX_BYTES ((size_t)64 << 20)
#define LEDGER_MAX_ENTRIES 8192 /* about 4 KiB each in memory */
#define LEDGER_MAX_LINE ((size_t)64 << 10)
/* A job of more sampled steps than this is a typo (sample_rate 1e-12), not a plan. */
#define PLAN_MAX_STEPS 1000000000ull
/* calibration: epsilon within [target - tol, target] */
#define CAL_TOL 0.01
#define CAL_SIGMA_MAX 1048576.0

static const char *mode_name(fv_privacy_mode_t m)
{
    return m == FV_PRIVACY_DISTRIBUTED ? "distributed" : "local";
}

/* ---- the plan ---------------------------------------------------------------------- */

/* steps = epochs * ceil(1 / q), refused past PLAN_MAX_STEPS before it can overflow; the
 * message names the rate as asked (q is it rounded: fv_dp_rate_round). */
static int plan_steps(uint64_t epochs, double q, double asked, uint64_t *ret, fv_diag_t *d)
{
    double per = ceil(1.0 / q);
    if (!(per * (double)epochs <= (double)PLAN_MAX_STEPS))
        return fv_diag_set(d, FV_EINVAL,
                           "privacy.sample_rate: %g over %" PRIu64
                           " epochs gives more than %llu sampled steps; expected a larger rate",
                           asked, epochs, (unsigned long long)PLAN_MAX_STEPS);
    *ret = fv_train_dp_steps(epochs, q);
    return 0;
}

/* Distributed mode's zCDP bound (the note) and the epsilon of `steps` subsampled rounds. */
static int ddg_epsilon(double q, double sigma, uint64_t steps, uint64_t n_params, uint32_t h,
                       double delta, fv_privacy_plan_t *p)
{
    double P = (double)n_params, S = fmax(1.0, sigma * sigma * P / h);
    double L = sqrt(h * S) / sigma;
    double rho = fv_rdp_ddg_rho(L, sqrt(P) * L, S, h, n_params);
    int r;
    if (!(rho >= 0) || isnan(rho))
        return FV_EINVAL;
    if ((r = fv_rdp_subsampled_zcdp_curve(q, rho, steps, p->orders, p->n_orders, p->rdp)) < 0)
        return r;
    return fv_rdp_epsilon(p->orders, p->rdp, p->n_orders, delta, &p->epsilon, NULL);
}

/* 0 when n_agents * (2^bits - 1) plus 16 standard deviations of the noise on either side
 * fits the 2^32 window of SecAgg's sums, read centered; else FV_EOVERFLOW. */
int fv_privacy_ddg_fits(const fv_privacy_plan_t *p, uint32_t bits, uint32_t n_agents, fv_diag_t *d)
{
    if (p == NULL || bits < 1 || bits > 31 || n_agents == 0)
        return fv_diag_set(d, FV_EINVAL, "fv_privacy_ddg_fits: bad arguments");
    double span = (double)n_agents * (double)((1u << bits) - 1u);
    double tail = 32.0 * sqrt((double)n_agents * (double)p->ddg_sigma2);
    if (!(span + tail < 4294967296.0))
        return fv_diag_set(d, FV_EOVERFLOW,
                           "privacy: the distributed noise (variance %" PRIu64
                           " per agent) does not fit SecAgg's 32-bit sums of %u agents at "
                           "secagg.bits %u; lower secagg.bits, raise secagg.clip or the noise's "
                           "scale (privacy.clip, sample_rate)",
                           p->ddg_sigma2, n_agents, bits);
    return 0;
}

static int plan_local(const fv_job_t *job, uint64_t n_train, fv_privacy_plan_t *p, fv_diag_t *d)
{
    const struct fv_job_privacy *s = &job->privacy;
    uint64_t epochs = (uint64_t)job->rounds * job->local_epochs;
    int r;
    if (job->distill.on)
        epochs += (uint64_t)job->distill.rounds * job->distill.local_epochs;
    double asked = s->sample_rate;
    if (s->sample_rate > 0) {
        p->q = fv_dp_rate_round(s->sample_rate);
    } else {
        if (n_train == 0)
            return fv_diag_set(d, FV_EINVAL, "privacy: no training rows to sample from");
        if ((uint64_t)job->batch_size > n_train)
            return fv_diag_set(d, FV_EINVAL,
                               "privacy.sample_rate: the default, batch_size %" PRIu32
                               " / this agent's training rows, is more than 1; set "
                               "privacy.sample_rate (or a smaller batch_size)",
                               job->batch_size);
        asked = (double)job->batch_size / (double)n_train;
        p->q = fv_dp_rate_round(asked);
    }
    if ((r = plan_steps(epochs, p->q, asked, &p->steps, d)) < 0)
        return r;
    if (s->noise_multiplier > 0) {
        p->sigma = s->noise_multiplier;
    } else {
        r = fv_rdp_calibrate(p->q, p->steps, s->epsilon, s->delta, p->orders, p->n_orders, CAL_TOL,
                             &p->sigma);
        if (r == FV_ERANGE)
            return fv_diag_set(d, FV_EINVAL,
                               "privacy.epsilon: %g at delta %g cannot be reached over %" PRIu64
                               " steps at sampling rate %g with a noise multiplier up to %g; "
                               "expected a larger epsilon or fewer rounds",
                               s->epsilon, s->delta, p->steps, p->q, CAL_SIGMA_MAX);
        if (r < 0)
            return fv_diag_set(d, r, "privacy: the accountant's calibration failed: %s",
                               fv_strerror(r));
    }
    if ((r = fv_rdp_sgm_curve(p->q, p->sigma, p->steps, p->orders, p->n_orders, p->rdp)) < 0 ||
        (r = fv_rdp_epsilon(p->orders, p->rdp, p->n_orders, s->delta, &p->epsilon, NULL)) < 0)
        return fv_diag_set(d, r, "privacy: the accountant failed: %s", fv_strerror(r));
    return 0;
}

static int plan_distributed(const fv_job_t *job, uint64_t n_params, uint64_t n_ref,
                            fv_privacy_plan_t *p, fv_diag_t *d)
{
    const struct fv_job_privacy *s = &job->privacy;
    int r;
    if (n_params == 0)
        return fv_diag_set(d, FV_EINVAL, "privacy: the model has no parameters");
    p->q = fv_dp_rate_round(s->sample_rate);
    if (!(s->sample_rate > 0 && s->sample_rate <= 1))
        return fv_diag_set(d, FV_EINVAL,
                           "privacy.sample_rate: %g; mode \"distributed\" needs one in (0, 1]",
                           s->sample_rate);
    p->min_honest = s->min_honest != 0 ? s->min_honest : job->min_agents;
    if ((r = plan_steps(job->rounds, 1.0, 1.0, &p->steps, d)) < 0)
        return r;
    if (s->noise_multiplier > 0) {
        p->sigma = s->noise_multiplier;
        if ((r = ddg_epsilon(p->q, p->sigma, p->steps, n_params, p->min_honest, s->delta, p)) < 0)
            return fv_diag_set(d, r, "privacy: the accountant failed: %s", fv_strerror(r));
    } else {
        /* bisection on sigma (epsilon falls as sigma grows): the smallest sigma found with
         * epsilon in [target - tol, target], as fv_rdp_calibrate does for local mode */
        double lo = 0, hi = 1, eps_hi;
        for (;;) {
            if ((r = ddg_epsilon(p->q, hi, p->steps, n_params, p->min_honest, s->delta, p)) < 0)
                return fv_diag_set(d, r, "privacy: the accountant failed: %s", fv_strerror(r));
            if ((eps_hi = p->epsilon) <= s->epsilon)
                break;
            lo = hi;
            hi *= 2;
            if (hi > CAL_SIGMA_MAX)
                return fv_diag_set(d, FV_EINVAL,
                                   "privacy.epsilon: %g at delta %g cannot be reached over %" PRIu64
                                   " rounds at sampling rate %g with a noise multiplier up to "
                                   "%g; expected a larger epsilon or fewer rounds",
                                   s->epsilon, s->delta, p->steps, p->q, CAL_SIGMA_MAX);
        }
        for (int it = 0; it < 200 && eps_hi < s->epsilon - CAL_TOL; it++) {
            double mid = 0.5 * (lo + hi);
            if ((r = ddg_epsilon(p->q, mid, p->steps, n_params, p->min_honest, s->delta, p)) < 0)
                return fv_diag_set(d, r, "privacy: the accountant failed: %s", fv_strerror(r));
            if (p->epsilon <= s->epsilon) {
                hi = mid;
                eps_hi = p->epsilon;
            } else {
                lo = mid;
            }
        }
        p->sigma = hi; /* the curve and epsilon of hi */
        if ((r = ddg_epsilon(p->q, hi, p->steps, n_params, p->min_honest, s->delta, p)) < 0)
            return fv_diag_set(d, r, "privacy: the accountant failed: %s", fv_strerror(r));
    }
    if (n_ref > 0) {
        double step = 2.0 * (double)job->secagg.clip / (double)((1u << job->secagg.bits) - 1u);
        double sens_real = (double)job->optim.lr * p->clip / (p->q * (double)n_ref);
        double s2;
        p->ddg_sens = sens_real / step + sqrt((double)n_params);
        s2 = ceil(p->sigma * p->sigma * p->ddg_sens * p->ddg_sens / p->min_honest);
        if (!(s2 >= 1 && s2 <= 281474976710656.0)) /* 2^48: the sampler's range */
            return fv_diag_set(d, FV_EINVAL,
                               "privacy: the distributed noise's variance (%g per agent) is out "
                               "of the sampler's range 1..2^48",
                               s2);
        p->ddg_sigma2 = (uint64_t)s2;
        if ((r = fv_privacy_ddg_fits(p, job->secagg.bits, job->min_agents, d)) < 0)
            return r;
    }
    return 0;
}

int fv_privacy_plan(const fv_job_t *job, uint64_t n_train, uint64_t n_params, uint64_t n_ref,
                    fv_privacy_plan_t *ret, fv_diag_t *d)
{
    fv_privacy_plan_t *p;
    int r;
    if (job == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_privacy_plan: job and ret are required");
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return fv_diag_set(d, FV_ENOMEM, "privacy: out of memory");
    if (!job->privacy.on) {
        *ret = *p;
        free(p);
        return 0;
    }
    p->on = true;
    p->mode = job->privacy.mode;
    p->clip = job->privacy.clip;
    p->delta = job->privacy.delta;
    p->n_orders = fv_rdp_orders_default(p->orders, FV_RDP_MAX_ORDERS);
    if (p->n_orders == 0 || p->n_orders > FV_RDP_MAX_ORDERS)
        r = fv_diag_set(d, FV_EINVAL, "privacy: the accountant has no order grid");
    else if (p->mode == FV_PRIVACY_LOCAL)
        r = plan_local(job, n_train, p, d);
    else if (p->mode == FV_PRIVACY_DISTRIBUTED)
        r = plan_distributed(job, n_params, n_ref, p, d);
    else
        r = fv_diag_set(d, FV_EINVAL, "privacy.mode: %d is not a mode", (int)p->mode);
    if (r == 0 && !(p->epsilon >= 0 && isfinite(p->epsilon)))
        r = fv_diag_set(
            d, FV_EINVAL,
            "privacy: the job gives no finite epsilon (noise multiplier %g over %" PRIu64
            " steps at sampling rate %g); expected more noise",
            p->sigma, p->steps, p->q);
    if (r == 0)
        *ret = *p;
    free(p);
    return r;
}

/* ---- the ledger -------------------------------------------------------------------- */

typedef struct lentry {
    char job[65], fp[65];
    fv_privacy_mode_t mode;
    double epsilon, delta, sigma, q;
    uint64_t steps;
    int64_t ts;
    size_t n_orders;
    double orders[FV_RDP_MAX_ORDERS];
    double rdp[FV_RDP_MAX_ORDERS];
} lentry_t;

struct fv_privacy_ledger {
    char *path;
    lentry_t *e;
    size_t n, cap;
};

static bool hex64(const char *s)
{
    if (s == NULL || strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static int grow(fv_privacy_ledger_t *l)
{
    if (l->n < l->cap)
        return 0;
    size_t cap = l->cap == 0 ? 8 : 2 * l->cap;
    lentry_t *e = realloc(l->e, cap * sizeof *e);
    if (e == NULL)
        return FV_ENOMEM;
    l->e = e;
    l->cap = cap;
    return 0;
}

static bool num(json_t *o, const char *key, double lo, double *ret)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v))
        return false;
    *ret = json_number_value(v);
    return isfinite(*ret) && *ret >= lo;
}

/* One line's object into e; NULL, or the name of the first field that is wrong. */
static const char *entry_decode(json_t *o, lentry_t *e)
{
    static const char *const keys[] = {"job", "fingerprint", "mode", "epsilon", "delta", "sigma",
                                       "q",   "steps",       "ts",   "orders",  "rdp",   NULL};
    const char *key, *s;
    json_t *v, *ov, *rv;
    json_object_foreach(o, key, v)
    {
        size_t i;
        for (i = 0; keys[i] != NULL && strcmp(keys[i], key) != 0; i++)
            ;
        if (keys[i] == NULL)
            return "an unknown key";
    }
    s = json_string_value(json_object_get(o, "job"));
    if (!hex64(s))
        return "job";
    memcpy(e->job, s, 65);
    s = json_string_value(json_object_get(o, "fingerprint"));
    if (!hex64(s))
        return "fingerprint";
    memcpy(e->fp, s, 65);
    s = json_string_value(json_object_get(o, "mode"));
    if (s != NULL && strcmp(s, "local") == 0)
        e->mode = FV_PRIVACY_LOCAL;
    else if (s != NULL && strcmp(s, "distributed") == 0)
        e->mode = FV_PRIVACY_DISTRIBUTED;
    else
        return "mode";
    if (!num(o, "epsilon", 0, &e->epsilon))
        return "epsilon";
    if (!num(o, "delta", 0, &e->delta) || !(e->delta > 0 && e->delta < 1))
        return "delta";
    if (!num(o, "sigma", 0, &e->sigma))
        return "sigma";
    if (!num(o, "q", 0, &e->q) || e->q > 1)
        return "q";
    v = json_object_get(o, "steps");
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return "steps";
    e->steps = (uint64_t)json_integer_value(v);
    v = json_object_get(o, "ts");
    if (!json_is_integer(v))
        return "ts";
    e->ts = (int64_t)json_integer_value(v);
    ov = json_object_get(o, "orders");
    rv = json_object_get(o, "rdp");
    if (!json_is_array(ov) || json_array_size(ov) == 0 || json_array_size(ov) > FV_RDP_MAX_ORDERS)
        return "orders";
    if (!json_is_array(rv) || json_array_size(rv) != json_array_size(ov))
        return "rdp";
    e->n_orders = json_array_size(ov);
    for (size_t i = 0; i < e->n_orders; i++) {
        json_t *a = json_array_get(ov, i), *b = json_array_get(rv, i);
        if (!json_is_number(a) || !isfinite(json_number_value(a)) || !(json_number_value(a) > 1) ||
            (i > 0 && !(json_number_value(a) > e->orders[i - 1])))
            return "orders (each > 1, increasing)";
        e->orders[i] = json_number_value(a);
        if (json_is_null(b))
            e->rdp[i] = INFINITY;
        else if (json_is_number(b) && isfinite(json_number_value(b)) && json_number_value(b) >= 0)
            e->rdp[i] = json_number_value(b);
        else
            return "rdp (each >= 0, or null for no bound)";
    }
    return NULL;
}

static void ledger_free_parts(fv_privacy_ledger_t *l)
{
    free(l->e);
    free(l->path);
    free(l);
}

void fv_privacy_ledger_free(fv_privacy_ledger_t *l)
{
    if (l != NULL)
        ledger_free_parts(l);
}

/* The entry of (job, fingerprint): a charge is per job and data file, so a file swapped
 * under a job that is already charged is charged too (its records were never counted). */
static const lentry_t *find_charge(const fv_privacy_ledger_t *l, const char *job, const char *fp)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->e[i].job, job) == 0 && strcmp(l->e[i].fp, fp) == 0)
            return &l->e[i];
    return NULL;
}

int fv_privacy_ledger_open(const char *path, fv_privacy_ledger_t **ret, fv_diag_t *d)
{
    fv_privacy_ledger_t *l;
    char *buf = NULL;
    size_t len = 0, line = 0;
    fv_file_fail_t fail;
    int r = 0;
    if (path == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_privacy_ledger_open: path and ret are required");
    l = calloc(1, sizeof *l);
    if (l == NULL || (l->path = strdup(path)) == NULL) {
        free(l);
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", path);
    }
    r = fv_file_read_all(path, LEDGER_MAX_BYTES, &buf, &len, &fail, d);
    if (r < 0 && fail.step == FV_FILE_STEP_OPEN && r == -ENOENT) {
        *ret = l; /* no file yet: nothing spent */
        return 0;
    }
    if (r < 0) {
        if (fail.step == FV_FILE_STEP_SIZE)
            r = fv_diag_set(d, FV_ETOOBIG,
                            "%s: the privacy ledger is larger than %zu bytes; refusing to read "
                            "it (move it aside only if you mean to forget every spend)",
                            path, LEDGER_MAX_BYTES);
        ledger_free_parts(l);
        return r;
    }
    for (char *p = buf, *end = buf + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl != NULL ? nl : end) - p);
        json_error_t je;
        json_t *o;
        const char *bad;
        line++;
        if (n == 0) {
            p += 1;
            continue;
        }
        if (n > LEDGER_MAX_LINE) {
            r = fv_diag_set(d, FV_EPARSE,
                            "%s:%zu: a line of more than %zu bytes; the privacy ledger is "
                            "corrupt (fix or restore it; jobs with privacy are refused until then)",
                            path, line, LEDGER_MAX_LINE);
            break;
        }
        if (l->n >= LEDGER_MAX_ENTRIES) {
            r = fv_diag_set(d, FV_ETOOBIG,
                            "%s:%zu: more than %d entries; the privacy ledger is "
                            "refused",
                            path, line, LEDGER_MAX_ENTRIES);
            break;
        }
        if ((r = grow(l)) < 0) {
            r = fv_diag_set(d, r, "%s: out of memory", path);
            break;
        }
        o = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je);
        if (o == NULL) {
            r = fv_diag_set(d, FV_EPARSE,
                            "%s:%zu:%d: invalid JSON (%s); the privacy ledger is corrupt (fix "
                            "or restore it; jobs with privacy are refused until then)",
                            path, line, je.column, je.text);
            break;
        }
        bad = json_is_object(o) ? entry_decode(o, &l->e[l->n]) : "the line (not an object)";
        json_decref(o);
        if (bad != NULL) {
            r = fv_diag_set(d, FV_EPARSE,
                            "%s:%zu: %s is missing or out of range; the privacy ledger is "
                            "corrupt (fix or restore it; jobs with privacy are refused until then)",
                            path, line, bad);
            break;
        }
        if (find_charge(l, l->e[l->n].job, l->e[l->n].fp) != NULL) {
            r = fv_diag_set(d, FV_EPARSE,
                            "%s:%zu: job %.16s... is charged twice for data %.16s...; the privacy "
                            "ledger is corrupt (fix or restore it)",
                            path, line, l->e[l->n].job, l->e[l->n].fp);
            break;
        }
        l->n++;
        p += n + 1;
    }
    free(buf);
    if (r < 0) {
        ledger_free_parts(l);
        return r;
    }
    *ret = l;
    return 0;
}

/* acc[i] += the entry's curve read at order orders[i] (the note: the smallest of its
 * orders >= orders[i], +inf when none). */
static void add_curve(const double *orders, double *acc, size_t n, const double *e_orders,
                      const double *e_rdp, size_t m)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        while (j < m && e_orders[j] < orders[i] * (1 - 1e-12))
            j++;
        acc[i] += j < m ? e_rdp[j] : INFINITY;
    }
}

/* The epsilon at delta of the fingerprint's entries (and p's, when not NULL). */
static int spent_eps(const fv_privacy_ledger_t *l, const char *fp, const fv_privacy_plan_t *p,
                     double delta, double *ret, size_t *ret_jobs)
{
    double orders[FV_RDP_MAX_ORDERS], acc[FV_RDP_MAX_ORDERS] = {0};
    size_t n = fv_rdp_orders_default(orders, FV_RDP_MAX_ORDERS), jobs = 0;
    if (n == 0 || n > FV_RDP_MAX_ORDERS)
        return FV_EINVAL;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->e[i].fp, fp) == 0) {
            add_curve(orders, acc, n, l->e[i].orders, l->e[i].rdp, l->e[i].n_orders);
            jobs++;
        }
    if (p != NULL && p->on) {
        add_curve(orders, acc, n, p->orders, p->rdp, p->n_orders);
        jobs++;
    }
    if (ret_jobs != NULL)
        *ret_jobs = jobs;
    if (jobs == 0) {
        *ret = 0;
        return 0;
    }
    return fv_rdp_epsilon(orders, acc, n, delta, ret, NULL);
}

int fv_privacy_ledger_spent(const fv_privacy_ledger_t *l, const char *fingerprint, const char *job,
                            const fv_privacy_plan_t *p, double delta, double *ret_spent,
                            double *ret_with, bool *ret_charged, fv_diag_t *d)
{
    double spent = 0, with = 0;
    bool charged;
    int r;
    if (l == NULL || fingerprint == NULL || !(delta > 0 && delta < 1))
        return fv_diag_set(d, FV_EINVAL, "fv_privacy_ledger_spent: bad arguments");
    charged = job != NULL && find_charge(l, job, fingerprint) != NULL;
    if ((r = spent_eps(l, fingerprint, NULL, delta, &spent, NULL)) < 0)
        return fv_diag_set(d, r, "%s: the accountant failed: %s", l->path, fv_strerror(r));
    with = spent;
    if (p != NULL && p->on && !charged &&
        (r = spent_eps(l, fingerprint, p, delta, &with, NULL)) < 0)
        return fv_diag_set(d, r, "%s: the accountant failed: %s", l->path, fv_strerror(r));
    if (ret_spent != NULL)
        *ret_spent = spent;
    if (ret_with != NULL)
        *ret_with = with;
    if (ret_charged != NULL)
        *ret_charged = charged;
    return 0;
}

static json_t *entry_json(const lentry_t *e)
{
    json_t *o = json_object(), *ov = json_array(), *rv = json_array();
    int bad = o == NULL || ov == NULL || rv == NULL;
    for (size_t i = 0; !bad && i < e->n_orders; i++)
        bad = json_array_append_new(ov, json_real(e->orders[i])) != 0 ||
              json_array_append_new(rv, isfinite(e->rdp[i]) ? json_real(e->rdp[i]) : json_null()) !=
                  0;
    bad = bad || json_object_set_new(o, "job", json_string(e->job)) != 0 ||
          json_object_set_new(o, "fingerprint", json_string(e->fp)) != 0 ||
          json_object_set_new(o, "mode", json_string(mode_name(e->mode))) != 0 ||
          json_object_set_new(o, "epsilon", json_real(e->epsilon)) != 0 ||
          json_object_set_new(o, "delta", json_real(e->delta)) != 0 ||
          json_object_set_new(o, "sigma", json_real(e->sigma)) != 0 ||
          json_object_set_new(o, "q", json_real(e->q)) != 0 ||
          json_object_set_new(o, "steps", json_integer((json_int_t)e->steps)) != 0 ||
          json_object_set_new(o, "ts", json_integer((json_int_t)e->ts)) != 0;
    if (!bad) {
        bad = json_object_set_new(o, "orders", ov) != 0;
        ov = NULL;
        bad = bad || json_object_set_new(o, "rdp", rv) != 0;
        rv = NULL;
    }
    json_decref(ov);
    json_decref(rv);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The whole file's text (malloc'd). */
static int ledger_text(const fv_privacy_ledger_t *l, char **ret, size_t *ret_len)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return FV_ENOMEM;
    for (size_t i = 0; i < l->n; i++) {
        json_t *o = entry_json(&l->e[i]);
        char *s = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        size_t n = s != NULL ? strlen(s) : 0;
        json_decref(o);
        if (s == NULL) {
            free(buf);
            return FV_ENOMEM;
        }
        if (len + n + 2 > cap) {
            size_t nc = 2 * (len + n + 2);
            char *nb = realloc(buf, nc);
            if (nb == NULL) {
                free(s);
                free(buf);
                return FV_ENOMEM;
            }
            buf = nb;
            cap = nc;
        }
        memcpy(buf + len, s, n);
        len += n;
        buf[len++] = '\n';
        free(s);
    }
    buf[len] = '\0';
    *ret = buf;
    *ret_len = len;
    return 0;
}

int fv_privacy_ledger_charge(fv_privacy_ledger_t *l, const char *fingerprint, const char *job,
                             const fv_privacy_plan_t *p, int64_t ts_unix, fv_diag_t *d)
{
    lentry_t *e;
    char *text = NULL;
    size_t len = 0;
    int r;
    if (l == NULL || !hex64(fingerprint) || !hex64(job) || p == NULL || !p->on ||
        p->n_orders == 0 || p->n_orders > FV_RDP_MAX_ORDERS)
        return fv_diag_set(d, FV_EINVAL, "fv_privacy_ledger_charge: bad arguments");
    if (find_charge(l, job, fingerprint) != NULL)
        return 0; /* charged once per data file, whatever the re-offers */
    if (l->n >= LEDGER_MAX_ENTRIES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: the privacy ledger holds %d entries, its cap",
                           l->path, LEDGER_MAX_ENTRIES);
    if ((r = grow(l)) < 0)
        return fv_diag_set(d, r, "%s: out of memory", l->path);
    e = &l->e[l->n];
    memset(e, 0, sizeof *e);
    memcpy(e->job, job, 65);
    memcpy(e->fp, fingerprint, 65);
    e->mode = p->mode;
    e->epsilon = p->epsilon;
    e->delta = p->delta;
    e->sigma = p->sigma;
    e->q = p->q;
    e->steps = p->steps;
    e->ts = ts_unix;
    e->n_orders = p->n_orders;
    memcpy(e->orders, p->orders, p->n_orders * sizeof *e->orders);
    for (size_t i = 0; i < p->n_orders; i++)
        e->rdp[i] = p->rdp[i] >= 0 ? p->rdp[i] : INFINITY; /* NaN counts as no bound */
    l->n++;
    if ((r = ledger_text(l, &text, &len)) < 0) {
        l->n--;
        return fv_diag_set(d, r, "%s: out of memory", l->path);
    }
    r = fv_file_write_atomic(l->path, text, len, 0600, d);
    free(text);
    if (r < 0)
        l->n--; /* the file holds the old list: so does memory */
    return r;
}

int fv_privacy_ledger_json(const fv_privacy_ledger_t *l, double delta, char **ret, fv_diag_t *d)
{
    json_t *root, *entries, *totals;
    char *s;
    int bad;
    if (l == NULL || ret == NULL || !(delta > 0 && delta < 1))
        return fv_diag_set(d, FV_EINVAL, "fv_privacy_ledger_json: bad arguments");
    root = json_object();
    entries = json_array();
    totals = json_array();
    bad = root == NULL || entries == NULL || totals == NULL;
    for (size_t i = 0; !bad && i < l->n; i++) {
        json_t *o = entry_json(&l->e[i]);
        bad = o == NULL || json_array_append_new(entries, o) != 0;
    }
    for (size_t i = 0; !bad && i < l->n; i++) {
        size_t k, jobs = 0;
        double eps = 0;
        for (k = 0; k < i && strcmp(l->e[k].fp, l->e[i].fp) != 0; k++)
            ;
        if (k < i)
            continue; /* that fingerprint has its total already */
        if (spent_eps(l, l->e[i].fp, NULL, delta, &eps, &jobs) < 0) {
            bad = 1;
            break;
        }
        bad = json_array_append_new(
                  totals, json_pack("{s:s,s:o,s:f,s:I}", "fingerprint", l->e[i].fp, "epsilon",
                                    isfinite(eps) ? json_real(eps) : json_null(), "delta", delta,
                                    "jobs", (json_int_t)jobs)) != 0;
    }
    if (!bad) {
        bad = json_object_set_new(root, "entries", entries) != 0;
        entries = NULL;
        bad = bad || json_object_set_new(root, "totals", totals) != 0;
        totals = NULL;
    }
    json_decref(entries);
    json_decref(totals);
    s = bad ? NULL : json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (s == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", l->path);
    *ret = s;
    return 0;
}
