/* job.c - the job spec: strict JSON decoding, canonical encoding, digest, SecAgg sizing.
 *
 * Purpose: a job spec is written by the federation operator and reaches every agent
 * over the network, so it is decoded like any hostile input (size cap, duplicate keys
 * refused by jansson, every key known, every type exact, every value bounded) and every
 * refusal is one sentence "ORIGIN: json.path: what is wrong; what is allowed".
 *
 * Error codes (one rule, so callers and tests can rely on it):
 *   FV_EPARSE  the bytes are not shaped like a job: invalid JSON, a wrong JSON type, an
 *              unknown key, a missing required key. (Errors of the embedded schema keep
 *              the code fv_schema_from_json gave, FV_EPARSE or FV_EVERSION.)
 *   FV_EINVAL  the shape is right but a value is not allowed: out of range, an unknown
 *              word ("kind": "rmsprop", "secagg": "on"), or a rule across fields (model
 *              vs schema, metric vs schema, SecAgg parameters vs min_agents).
 *   FV_ETOOBIG the text is larger than JOB_MAX_JSON_BYTES.
 *
 * Canonical form (fv_job_to_json): every key, in the order of fv_job.h, compact, reals
 * with 17 significant digits (so every double, and every float widened to double, reads
 * back to the same value). Only the keys that apply are written where a choice selects
 * them: "strategy" holds "kind" plus that kind's parameters, "secagg" is "off" or the
 * full object; "distill" is written (every key) only when the spec has the section, so the
 * canonical bytes, and digests, of jobs without it did not change when it was added.
 * "max_update_norm" follows the same precedent: written only when the spec sets it (0 in
 * fv_job_t means absent), so jobs without it keep their digest too; "cohort" is written
 * (both keys) only when one differs from its default, and "explain" (a boolean, default
 * false) only when true, for the same reason; "privacy" only when the spec has the section
 * (then every key: the unset one of epsilon / noise_multiplier as 0, sample_rate 0 when
 * local mode's default applies, min_honest 0 in local mode and the resolved value in
 * distributed mode, outside_budget in the order stats, metrics, explain). The decoder takes
 * those 0s as "not given", so the canonical form is a fixed point.
 * Decoding the canonical form gives an equal job, whose canonical form is
 * the same bytes; that is what makes fv_job_digest an identity.
 *
 * Floats (optimizer fields, l2, secagg.clip) are read as doubles and narrowed to float;
 * a value that narrows to something outside its range (1e-50 -> 0, 1e39 -> inf) is
 * refused, so the stored float always satisfies the rule the operator read. They are
 * written as the shortest decimal that narrows back to the same float (0.001, not
 * 0.0010000000474974513), so the canonical form reads like what the operator wrote.
 *
 * Open schemas (fv_schema.h): a job may carry a schema with open columns. It decodes,
 * encodes and digests like any other (the schema's canonical JSON writes the open
 * forms), but the model-vs-schema input count cannot be checked before the schema has a
 * layout: schema_n_features stands in 1 input, so only the model's syntax and its
 * classes are checked. fv_job_resolve_schema swaps in the closed schema and decodes the
 * result again, so a resolved job passes exactly the checks of a job written closed.
 * Spec files (fv_job_expand, fv_job_file_expand, fv_job_load): an operator's file may hold
 * full-line // comments, blanked in a copy before jansson sees it (spaces keep every
 * line:column), and "schema" may be a path, resolved against the spec file's directory,
 * checked by fv_schema_from_json under the schema file's own name, and inlined. The
 * result is plain JSON for fv_job_from_json, which refuses a string schema: bytes from
 * the network carry the schema itself (a path there would name a file on the receiver).
 *
 * Ownership: a fv_job_t owns its schema; everything else is inline. Pure: no I/O except
 * reading a spec file and the schema file it names (the functions above); no globals;
 * reentrant.
 */
#include "fv_job.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_file.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_tls.h"

/* A job is small; the embedded schema may reach the schema cap (16 MiB). */
#define JOB_MAX_JSON_BYTES (((size_t)16 << 20) + ((size_t)64 << 10))
/* Longest quoted user text in a message, in bytes. */
#define QUOTE_MAX 60
#define QUOTE_BUF (4 * QUOTE_MAX + 8)
/* Deadlines above 30 days are a typo, not a plan. */
#define DEADLINE_MAX_MS ((long long)30 * 24 * 3600 * 1000)
/* A schema file named by a spec file or --schema: the schema cap (fv_schema.h). */
#define SCHEMA_FILE_MAX_BYTES ((size_t)16 << 20)

const char *fv_strategy_name(fv_strategy_kind_t k)
{
    switch (k) {
    case FV_STRATEGY_FEDAVG:
        return "fedavg";
    case FV_STRATEGY_FEDPROX:
        return "fedprox";
    case FV_STRATEGY_FEDADAM:
        return "fedadam";
    case FV_STRATEGY_FEDYOGI:
        return "fedyogi";
    }
    return "unknown";
}

static const char *const metric_names[] = {"roc_auc", "pr_auc", "log_loss", "accuracy"};

void fv_job_free(fv_job_t *job)
{
    if (job == NULL)
        return;
    fv_schema_free(job->schema);
    free(job);
}

/* ---- message helpers --------------------------------------------------------------- */

/* s for a message: control bytes as \xNN, cut after QUOTE_MAX bytes at a UTF-8
 * boundary (jansson only hands us valid UTF-8). out has QUOTE_BUF bytes. */
static const char *quote(char *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;
    for (; p[i] != 0; i++) {
        if (i >= QUOTE_MAX && (p[i] & 0xC0) != 0x80) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (p[i] < 0x20 || p[i] == 0x7F)
            o += (size_t)snprintf(out + o, QUOTE_BUF - o, "\\x%02X", p[i]);
        else
            out[o++] = (char)p[i];
    }
    out[o] = '\0';
    return out;
}

static const char *type_name(const json_t *v)
{
    if (v == NULL)
        return "nothing";
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "something else";
}

/* Decoding context: where messages go and what they start with. */
struct jctx {
    const char *origin;
    fv_diag_t *d;
};

/* "parent.key" (or "key" at the top) into buf. */
static const char *jpath(char *buf, size_t len, const char *parent, const char *key)
{
    snprintf(buf, len, "%s%s%s", parent, *parent ? "." : "", key);
    return buf;
}

/* Every key of obj must be in allowed[] (NULL-terminated). */
static int check_keys(const struct jctx *c, const char *parent, json_t *obj,
                      const char *const *allowed, const char *expect)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t i;
        for (i = 0; allowed[i] != NULL; i++)
            if (strcmp(key, allowed[i]) == 0)
                break;
        if (allowed[i] == NULL) {
            char q[QUOTE_BUF], p[QUOTE_BUF + 64];
            return fv_diag_set(c->d, FV_EPARSE, "%s: %s: unknown key; expected only %s", c->origin,
                               jpath(p, sizeof p, parent, quote(q, key)), expect);
        }
    }
    return 0;
}

/* An optional object member: NULL if absent, else it must be an object. */
static int get_object(const struct jctx *c, json_t *obj, const char *parent, const char *key,
                      json_t **ret)
{
    json_t *v = json_object_get(obj, key);
    char p[96];
    if (v != NULL && !json_is_object(v))
        return fv_diag_set(c->d, FV_EPARSE, "%s: %s: got %s; expected an object", c->origin,
                           jpath(p, sizeof p, parent, key), type_name(v));
    *ret = v;
    return 0;
}

/* An optional integer member in [lo, hi]; def when absent. */
static int get_int(const struct jctx *c, json_t *obj, const char *parent, const char *key,
                   long long lo, long long hi, long long def, long long *ret)
{
    json_t *v = json_object_get(obj, key);
    char p[96];
    if (v == NULL) {
        *ret = def;
        return 0;
    }
    if (!json_is_integer(v))
        return fv_diag_set(c->d, FV_EPARSE, "%s: %s: got %s; expected an integer in %lld..%lld",
                           c->origin, jpath(p, sizeof p, parent, key), type_name(v), lo, hi);
    long long x = (long long)json_integer_value(v);
    if (x < lo || x > hi)
        return fv_diag_set(c->d, FV_EINVAL, "%s: %s: %lld must be in %lld..%lld", c->origin,
                           jpath(p, sizeof p, parent, key), x, lo, hi);
    *ret = x;
    return 0;
}

/* Range of a real: lo/hi with inclusive flags; an infinite bound is open. */
struct rrange {
    double lo, hi;
    bool lo_incl, hi_incl;
    const char *rule; /* "> 0", "in [0, 1)"... for the message */
};

static const struct rrange R_POS = {0.0, INFINITY, false, false, "> 0"};
static const struct rrange R_NONNEG = {0.0, INFINITY, true, false, ">= 0"};
static const struct rrange R_UNIT = {0.0, 1.0, true, false, "in [0, 1)"};
static const struct rrange R_VALFRAC = {0.0, 0.5, false, true, "in (0, 0.5]"};
static const struct rrange R_ALPHA = {0.0, 1.0, true, true, "in [0, 1]"};
static const struct rrange R_EPSILON = {0.0, 100.0, false, true, "in (0, 100]"};
static const struct rrange R_BIG = {0.0, 1e6, false, true, "in (0, 1e6]"};
static const struct rrange R_DELTA = {0.0, 0.1, false, true, "in (0, 0.1]"};
static const struct rrange R_RATE = {0.0, 1.0, false, true, "in (0, 1]"};

static bool in_range(double x, const struct rrange *r)
{
    if (!isfinite(x))
        return false;
    if (r->lo_incl ? x < r->lo : x <= r->lo)
        return false;
    if (isfinite(r->hi) && (r->hi_incl ? x > r->hi : x >= r->hi))
        return false;
    return true;
}

/* An optional number member (integer or real) in range; def when absent. */
static int get_real(const struct jctx *c, json_t *obj, const char *parent, const char *key,
                    const struct rrange *r, double def, double *ret)
{
    json_t *v = json_object_get(obj, key);
    char p[96];
    if (v == NULL) {
        *ret = def;
        return 0;
    }
    if (!json_is_number(v))
        return fv_diag_set(c->d, FV_EPARSE, "%s: %s: got %s; expected a number %s", c->origin,
                           jpath(p, sizeof p, parent, key), type_name(v), r->rule);
    double x = json_number_value(v);
    if (!in_range(x, r))
        return fv_diag_set(c->d, FV_EINVAL, "%s: %s: %.17g must be %s", c->origin,
                           jpath(p, sizeof p, parent, key), x, r->rule);
    *ret = x;
    return 0;
}

/* Same, narrowed to float; the float itself must still be in range. */
static int get_float(const struct jctx *c, json_t *obj, const char *parent, const char *key,
                     const struct rrange *r, float def, float *ret)
{
    double x = 0;
    char p[96];
    int e = get_real(c, obj, parent, key, r, (double)def, &x);
    if (e < 0)
        return e;
    float f = (float)x;
    if (!in_range((double)f, r))
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: %s: %.17g becomes %g as a 32-bit float, which is not %s", c->origin,
                           jpath(p, sizeof p, parent, key), x, (double)f, r->rule);
    *ret = f;
    return 0;
}

/* An optional string member that must be one of words[] (n of them); def when absent.
 * *ret is the index. */
static int get_word(const struct jctx *c, json_t *obj, const char *parent, const char *key,
                    const char *const *words, size_t n, const char *expect, int def, int *ret)
{
    json_t *v = json_object_get(obj, key);
    char p[96], q[QUOTE_BUF];
    if (v == NULL) {
        *ret = def;
        return 0;
    }
    if (!json_is_string(v))
        return fv_diag_set(c->d, FV_EPARSE, "%s: %s: got %s; expected %s", c->origin,
                           jpath(p, sizeof p, parent, key), type_name(v), expect);
    for (size_t i = 0; i < n; i++)
        if (strcmp(json_string_value(v), words[i]) == 0) {
            *ret = (int)i;
            return 0;
        }
    return fv_diag_set(c->d, FV_EINVAL, "%s: %s: \"%s\" is not allowed; expected %s", c->origin,
                       jpath(p, sizeof p, parent, key), quote(q, json_string_value(v)), expect);
}

/* Number of model inputs the schema gives after one-hot encoding, computed by the same
 * code that builds features (a preproc from empty moments), so the two cannot drift.
 * An open schema has no layout yet: 1 stands in, so a model spec's syntax is still
 * checked (1 is the fewest inputs, so no size cap trips that the real count would pass);
 * the real check runs when the schema is resolved (fv_job_resolve_schema). */
static int schema_n_features(const fv_schema_t *s, size_t *ret)
{
    size_t n = fv_schema_n_columns(s);
    double *z;
    fv_preproc_t *p = NULL;
    int r;
    if (fv_schema_is_open(s)) {
        *ret = 1;
        return 0;
    }
    z = calloc(3 * n, sizeof *z);
    if (z == NULL)
        return FV_ENOMEM;
    r = fv_preproc_from_moments(s, z, z + n, z + 2 * n, &p);
    if (r == 0)
        *ret = fv_preproc_n_features(p);
    fv_preproc_free(p);
    free(z);
    return r;
}

/* ---- decoding ---------------------------------------------------------------------- */

static const char *const root_keys[] = {"name",
                                        "schema",
                                        "model",
                                        "rounds",
                                        "local_epochs",
                                        "batch_size",
                                        "optimizer",
                                        "l2",
                                        "strategy",
                                        "secagg",
                                        "min_agents",
                                        "deadlines_ms",
                                        "early_stopping",
                                        "validation_fraction",
                                        "hist_bins",
                                        "seed",
                                        "max_update_norm",
                                        "distill",
                                        "validation",
                                        "cohort",
                                        "explain",
                                        "privacy",
                                        NULL};
#define ROOT_EXPECT                                                                                \
    "name, schema, model, rounds, local_epochs, batch_size, optimizer, l2, strategy, secagg, "     \
    "min_agents, deadlines_ms, early_stopping, validation_fraction, hist_bins, seed, "             \
    "max_update_norm, distill, validation, cohort, explain, privacy"
static const char *const validation_keys[] = {"max_failures", NULL};
static const char *const cohort_keys[] = {"on_join_deadline", "on_member_lost", NULL};
static const char *const join_words[] = {"fail", "wait"};     /* fv_job_join_policy_t */
static const char *const lost_words[] = {"continue", "wait"}; /* fv_job_lost_policy_t */
static const char *const optim_keys[] = {"kind", "lr", "momentum", "beta1", "beta2", "eps", NULL};
static const char *const secagg_keys[] = {"threshold", "neighbors", "clip", "bits", NULL};
static const char *const deadline_keys[] = {"join", "train", "secagg_phase", NULL};
static const char *const es_keys[] = {"metric", "patience", "min_delta", NULL};
static const char *const distill_keys[] = {
    "student",      "temperature",    "alpha",         "rounds",
    "local_epochs", "early_stopping", "quantize_int8", NULL};
#define DISTILL_EXPECT                                                                             \
    "student, temperature, alpha, rounds, local_epochs, early_stopping, quantize_int8"
static const char *const strategy_kinds[] = {"fedavg", "fedprox", "fedadam", "fedyogi"};
static const char *const strategy_keys_avg[] = {"kind", NULL};
static const char *const strategy_keys_prox[] = {"kind", "mu", NULL};
static const char *const strategy_keys_adam[] = {"kind",  "server_lr", "beta1",
                                                 "beta2", "tau",       NULL};
static const char *const optim_kinds[] = {"sgd", "adam"};
static const char *const privacy_keys[] = {"mode",       "epsilon",        "noise_multiplier",
                                           "delta",      "clip",           "sample_rate",
                                           "min_honest", "outside_budget", NULL};
#define PRIVACY_EXPECT                                                                             \
    "mode, epsilon, noise_multiplier, delta, clip, sample_rate, min_honest, outside_budget"
static const char *const privacy_modes[] = {"local", "distributed"}; /* mode - 1 */
/* outside_budget's words, bit i = FV_PRIV_REL_* 1 << i; the canonical order */
static const char *const release_words[] = {"stats", "metrics", "explain"};

static int parse_optimizer(const struct jctx *c, json_t *root, fv_job_t *job)
{
    json_t *o;
    fv_optim_cfg_t cfg;
    double l2;
    int kind = 0, r;
    fv_optim_cfg_default(&cfg);
    if ((r = get_object(c, root, "", "optimizer", &o)) < 0)
        return r;
    if (o != NULL) {
        if ((r = check_keys(c, "optimizer", o, optim_keys,
                            "kind, lr, momentum, beta1, beta2, eps")) < 0 ||
            (r = get_word(c, o, "optimizer", "kind", optim_kinds, 2, "\"sgd\" or \"adam\"",
                          (int)cfg.kind, &kind)) < 0 ||
            (r = get_float(c, o, "optimizer", "lr", &R_POS, cfg.lr, &cfg.lr)) < 0 ||
            (r = get_float(c, o, "optimizer", "momentum", &R_UNIT, cfg.momentum, &cfg.momentum)) <
                0 ||
            (r = get_float(c, o, "optimizer", "beta1", &R_UNIT, cfg.beta1, &cfg.beta1)) < 0 ||
            (r = get_float(c, o, "optimizer", "beta2", &R_UNIT, cfg.beta2, &cfg.beta2)) < 0 ||
            (r = get_float(c, o, "optimizer", "eps", &R_POS, cfg.eps, &cfg.eps)) < 0)
            return r;
        cfg.kind = (fv_opt_kind_t)kind;
    }
    if ((r = get_real(c, root, "", "l2", &R_NONNEG, 0.01, &l2)) < 0)
        return r;
    cfg.weight_decay = (float)l2;
    if (!(isfinite(cfg.weight_decay) && (l2 == 0.0) == (cfg.weight_decay == 0.0f)))
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: l2: %.17g is not representable as a 32-bit float; expected 0 "
                           "or a number between 1e-38 and 1e38",
                           c->origin, l2);
    job->optim = cfg;
    return 0;
}

static int parse_strategy(const struct jctx *c, json_t *root, fv_job_t *job)
{
    json_t *o, *k;
    int kind = 0, r;
    char q[QUOTE_BUF];
    if ((r = get_object(c, root, "", "strategy", &o)) < 0)
        return r;
    memset(&job->strategy, 0, sizeof job->strategy);
    job->strategy.kind = FV_STRATEGY_FEDAVG;
    if (o == NULL)
        return 0;
    k = json_object_get(o, "kind");
    if (k == NULL)
        return fv_diag_set(c->d, FV_EPARSE,
                           "%s: strategy.kind: missing; expected \"fedavg\", \"fedprox\", "
                           "\"fedadam\" or \"fedyogi\"",
                           c->origin);
    if ((r = get_word(c, o, "strategy", "kind", strategy_kinds, 4,
                      "\"fedavg\", \"fedprox\", \"fedadam\" or \"fedyogi\"", 0, &kind)) < 0)
        return r;
    job->strategy.kind = (fv_strategy_kind_t)kind;
    switch (job->strategy.kind) {
    case FV_STRATEGY_FEDAVG:
        return check_keys(c, "strategy", o, strategy_keys_avg, "kind (fedavg has no parameters)");
    case FV_STRATEGY_FEDPROX:
        if ((r = check_keys(c, "strategy", o, strategy_keys_prox, "kind, mu (for fedprox)")) < 0)
            return r;
        if (json_object_get(o, "mu") == NULL)
            return fv_diag_set(c->d, FV_EPARSE,
                               "%s: strategy.mu: missing; fedprox needs \"mu\", a number > 0",
                               c->origin);
        r = get_real(c, o, "strategy", "mu", &R_POS, 0.0, &job->strategy.mu);
        if (r == 0 && !((float)job->strategy.mu > 0.0f && isfinite((float)job->strategy.mu)))
            r = fv_diag_set(c->d, FV_EINVAL,
                            "%s: strategy.mu: %.17g is not representable as a 32-bit float; "
                            "expected a number between 1e-38 and 1e38",
                            c->origin, job->strategy.mu);
        if (r == 0)
            job->optim.prox_mu = (float)job->strategy.mu;
        return r;
    case FV_STRATEGY_FEDADAM:
    case FV_STRATEGY_FEDYOGI:
        if ((r = check_keys(c, "strategy", o, strategy_keys_adam,
                            "kind, server_lr, beta1, beta2, tau (for fedadam and fedyogi)")) < 0 ||
            (r = get_real(c, o, "strategy", "server_lr", &R_POS, 0.01, &job->strategy.server_lr)) <
                0 ||
            (r = get_real(c, o, "strategy", "beta1", &R_UNIT, 0.9, &job->strategy.beta1)) < 0 ||
            (r = get_real(c, o, "strategy", "beta2", &R_UNIT, 0.99, &job->strategy.beta2)) < 0 ||
            (r = get_real(c, o, "strategy", "tau", &R_POS, 1e-3, &job->strategy.tau)) < 0)
            return r;
        return 0;
    }
    return fv_diag_set(c->d, FV_EINVAL, "%s: strategy.kind: '%s' not handled", c->origin,
                       quote(q, json_string_value(k)));
}

/* Needs min_agents. */
static int parse_secagg(const struct jctx *c, json_t *root, fv_job_t *job)
{
    json_t *v = json_object_get(root, "secagg");
    long long t, k, bits;
    char q[QUOTE_BUF];
    int r;
    /* Clip and bits keep their defaults when SecAgg is off: the update vector is
     * quantized the same way and summed in the clear. */
    job->secagg.on = true;
    job->secagg.threshold = 0;
    job->secagg.neighbors = 0;
    job->secagg.clip = 1.0f;
    job->secagg.bits = 16;
    if (v == NULL)
        goto check;
    if (json_is_string(v)) {
        if (strcmp(json_string_value(v), "off") != 0)
            return fv_diag_set(c->d, FV_EINVAL,
                               "%s: secagg: \"%s\" is not allowed; expected \"off\" or an "
                               "object {threshold, neighbors, clip, bits} (SecAgg is on by "
                               "default)",
                               c->origin, quote(q, json_string_value(v)));
        job->secagg.on = false;
        return 0;
    }
    if (!json_is_object(v))
        return fv_diag_set(c->d, FV_EPARSE,
                           "%s: secagg: got %s; expected \"off\" or an object {threshold, "
                           "neighbors, clip, bits}",
                           c->origin, type_name(v));
    if ((r = check_keys(c, "secagg", v, secagg_keys, "threshold, neighbors, clip, bits")) < 0 ||
        (r = get_int(c, v, "secagg", "threshold", 0, 65535, 0, &t)) < 0 ||
        (r = get_int(c, v, "secagg", "neighbors", 0, 65534, 0, &k)) < 0 ||
        (r = get_float(c, v, "secagg", "clip", &R_POS, 1.0f, &job->secagg.clip)) < 0 ||
        (r = get_int(c, v, "secagg", "bits", 1, 31, 16, &bits)) < 0)
        return r;
    job->secagg.threshold = (uint32_t)t;
    job->secagg.neighbors = (uint32_t)k;
    job->secagg.bits = (uint32_t)bits;
check:
    /* The smallest cohort (min_agents) must be able to run the spec; fv_job_secagg_for
     * applies the same rules to the actual cohort. */
    k = job->secagg.neighbors;
    t = job->secagg.threshold;
    if (k != 0 && k % 2 != 0)
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: secagg.neighbors: %lld must be even (or 0 for every other "
                           "agent)",
                           c->origin, k);
    if (k != 0 && k + 2 > (long long)job->min_agents)
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: secagg.neighbors: %lld needs a cohort of at least %lld "
                           "(neighbors <= agents - 2) but min_agents is %" PRIu32
                           "; lower it or raise min_agents",
                           c->origin, k, k + 2, job->min_agents);
    if (t != 0 && t > (long long)job->min_agents)
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: secagg.threshold: %lld is more than the %" PRIu32
                           " agents of min_agents; expected at most %" PRIu32 " (or 0 = auto)",
                           c->origin, t, job->min_agents, job->min_agents);
    if (t != 0 && k != 0 && !(2 * t > k + 1 && t <= k + 1))
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: secagg.threshold: %lld with %lld neighbors; expected 2 * "
                           "threshold > neighbors + 1 and threshold <= neighbors + 1, i.e. "
                           "%lld..%lld (or 0 = auto)",
                           c->origin, t, k, (k + 1) / 2 + 1, k + 1);
    if (t != 0 && k == 0 && !(2 * t > (long long)job->min_agents))
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: secagg.threshold: %lld is not a majority of a cohort of "
                           "min_agents %" PRIu32 "; expected 2 * threshold > %" PRIu32
                           " (or 0 = auto)",
                           c->origin, t, job->min_agents, job->min_agents);
    if ((uint64_t)job->min_agents * ((UINT64_C(1) << job->secagg.bits) - 1) >= (UINT64_C(1) << 32))
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: secagg.bits: %" PRIu32 " with min_agents %" PRIu32 ": %" PRIu32
                           " * (2^%" PRIu32 " - 1) is not below 2^32, so the sum "
                           "could wrap; use fewer bits",
                           c->origin, job->secagg.bits, job->min_agents, job->min_agents,
                           job->secagg.bits);
    return 0;
}

#define METRIC_WORDS "\"roc_auc\", \"pr_auc\", \"accuracy\" or \"log_loss\""

/* ROC and PR AUC need a binary schema (a positive class's score); accuracy is a
 * multi-class job's (a binary job has AUCs from its histograms instead). */
static int metric_fits(const struct jctx *c, const char *field, int metric, const fv_job_t *job,
                       bool binary)
{
    if (!binary && (metric == FV_JOB_METRIC_ROC_AUC || metric == FV_JOB_METRIC_PR_AUC))
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: %s: \"%s\" needs a binary schema (a \"positive\" label) but the "
                           "schema is multi-class with %zu classes; expected \"accuracy\" or "
                           "\"log_loss\"",
                           c->origin, field, metric_names[metric],
                           fv_schema_n_classes(job->schema));
    if (binary && metric == FV_JOB_METRIC_ACCURACY)
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: %s: \"accuracy\" is a multi-class job's metric; a binary job "
                           "(positive label set) watches \"roc_auc\", \"pr_auc\" or "
                           "\"log_loss\"",
                           c->origin, field);
    return 0;
}

/* "distill": optional; needs the schema and the job's early_stopping (its defaults). */
/* "cohort": {"on_join_deadline": "fail"|"wait", "on_member_lost": "continue"|"wait"},
 * optional, each key defaulting to its first word (0 in fv_job_t). */
static int parse_cohort(const struct jctx *c, json_t *root, fv_job_t *job)
{
    json_t *o = NULL;
    int r, join = FV_JOB_JOIN_FAIL, lost = FV_JOB_LOST_CONTINUE;
    if ((r = get_object(c, root, "", "cohort", &o)) < 0)
        return r;
    if (o != NULL &&
        ((r = check_keys(c, "cohort", o, cohort_keys, "on_join_deadline, on_member_lost")) < 0 ||
         (r = get_word(c, o, "cohort", "on_join_deadline", join_words, 2, "\"fail\" or \"wait\"",
                       join, &join)) < 0 ||
         (r = get_word(c, o, "cohort", "on_member_lost", lost_words, 2, "\"continue\" or \"wait\"",
                       lost, &lost)) < 0))
        return r;
    job->cohort.on_join_deadline = (fv_job_join_policy_t)join;
    job->cohort.on_member_lost = (fv_job_lost_policy_t)lost;
    return 0;
}

/* "validation": {"max_failures": 1}: optional; present = the job's training and distill
 * rounds are validated (fv_vagg.h), which needs SecAgg on with the classic graph (every
 * member holds a share of every input), max_update_norm (the norm bound proved) and a
 * cohort of at most FV_JOB_VALIDATION_MAX_AGENTS (the loss sums' field headroom). */
static int parse_validation(const struct jctx *c, json_t *root, fv_job_t *job)
{
    json_t *o = NULL;
    long long x;
    int r;
    memset(&job->validation, 0, sizeof job->validation);
    if ((r = get_object(c, root, "", "validation", &o)) < 0 || o == NULL)
        return r;
    if ((r = check_keys(c, "validation", o, validation_keys, "max_failures")) < 0)
        return r;
    if ((r = get_int(c, o, "validation", "max_failures", 1, 1000, 1, &x)) < 0)
        return r;
    job->validation.on = true;
    job->validation.max_failures = (uint32_t)x;
    if (!job->secagg.on)
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: validation: needs secure aggregation (\"secagg\" is \"off\")",
                           c->origin);
    if (job->secagg.neighbors != 0)
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: validation: needs the classic SecAgg graph (secagg.neighbors 0, "
                           "got %u): every member holds a share of every input",
                           c->origin, job->secagg.neighbors);
    if (!(job->max_update_norm > 0))
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: validation: needs max_update_norm, the L2 bound each agent proves",
                           c->origin);
    return 0;
}

static int parse_distill(const struct jctx *c, json_t *root, fv_job_t *job, bool binary)
{
    json_t *o = NULL, *v, *es;
    long long x;
    int metric, r;
    char q[QUOTE_BUF];
    memset(&job->distill, 0, sizeof job->distill);
    if ((r = get_object(c, root, "", "distill", &o)) < 0 || o == NULL)
        return r;
    if ((r = check_keys(c, "distill", o, distill_keys, DISTILL_EXPECT)) < 0)
        return r;
    v = json_object_get(o, "student");
    if (v == NULL || !json_is_string(v))
        return fv_diag_set(c->d, FV_EPARSE,
                           "%s: distill.student: %s; expected \"logreg\" or \"mlp:H1,H2,...\"",
                           c->origin, v == NULL ? "missing" : type_name(v));
    if (json_string_length(v) >= sizeof job->distill.student)
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: distill.student: '%s' is too long; expected \"logreg\" or "
                           "\"mlp:H1,H2,...\" of at most %zu characters",
                           c->origin, quote(q, json_string_value(v)),
                           sizeof job->distill.student - 1);
    snprintf(job->distill.student, sizeof job->distill.student, "%s", json_string_value(v));
    {
        fv_mlp_arch_t arch;
        fv_diag_t td;
        size_t n_in = 0;
        if ((r = schema_n_features(job->schema, &n_in)) < 0)
            return fv_diag_set(c->d, r, "%s: schema: cannot lay out its features: %s", c->origin,
                               fv_strerror(r));
        if (fv_mlp_parse_arch(job->distill.student, n_in, fv_schema_n_classes(job->schema), &arch,
                              &td) != 0)
            return fv_diag_set(c->d, FV_EINVAL,
                               "%s: distill.student: %s (the schema gives %zu input features, "
                               "%zu classes)",
                               c->origin, td.msg, n_in, fv_schema_n_classes(job->schema));
    }
    if ((r = get_real(c, o, "distill", "temperature", &R_POS, 2.0, &job->distill.temperature)) <
            0 ||
        (r = get_real(c, o, "distill", "alpha", &R_ALPHA, 0.5, &job->distill.alpha)) < 0)
        return r;
    if ((r = get_int(c, o, "distill", "rounds", 1, 10000, 10, &x)) < 0)
        return r;
    job->distill.rounds = (uint32_t)x;
    if ((r = get_int(c, o, "distill", "local_epochs", 1, 1000, 1, &x)) < 0)
        return r;
    job->distill.local_epochs = (uint32_t)x;

    if ((r = get_object(c, o, "distill", "early_stopping", &es)) < 0)
        return r;
    metric = (int)job->early_stopping.metric;
    job->distill.early_stopping.patience = job->early_stopping.patience;
    job->distill.early_stopping.min_delta = job->early_stopping.min_delta;
    if (es != NULL) {
        if ((r = check_keys(c, "distill.early_stopping", es, es_keys,
                            "metric, patience, min_delta")) < 0 ||
            (r = get_word(c, es, "distill.early_stopping", "metric", metric_names, 4, METRIC_WORDS,
                          metric, &metric)) < 0 ||
            (r = get_int(c, es, "distill.early_stopping", "patience", 0, 10000,
                         job->early_stopping.patience, &x)) < 0 ||
            (r = get_real(c, es, "distill.early_stopping", "min_delta", &R_NONNEG,
                          job->early_stopping.min_delta, &job->distill.early_stopping.min_delta)) <
                0)
            return r;
        job->distill.early_stopping.patience = (uint32_t)x;
    }
    job->distill.early_stopping.metric = (fv_job_metric_t)metric;
    if ((r = metric_fits(c, "distill.early_stopping.metric", metric, job, binary)) < 0)
        return r;

    v = json_object_get(o, "quantize_int8");
    if (v != NULL && !json_is_boolean(v))
        return fv_diag_set(c->d, FV_EPARSE,
                           "%s: distill.quantize_int8: got %s; expected true or false", c->origin,
                           type_name(v));
    job->distill.quantize_int8 = v != NULL && json_is_true(v);
    job->distill.on = true;
    return 0;
}

/* "privacy": optional; the job's differential privacy (fv_job.h has the section, fv_privacy.h
 * what an agent makes of it). Needs the rest of the job parsed: its rules look at secagg,
 * validation, distill, local_epochs, min_agents and explain. A 0 for epsilon,
 * noise_multiplier, sample_rate or min_honest means "not given" (the canonical form writes
 * the unset ones as 0), so the canonical form reads back to the same job. */
static int parse_privacy(const struct jctx *c, json_t *root, fv_job_t *job)
{
    struct fv_job_privacy *p = &job->privacy;
    json_t *o = NULL, *v;
    long long x;
    int mode = 0, r;
    char q[QUOTE_BUF];
    memset(p, 0, sizeof *p);
    if ((r = get_object(c, root, "", "privacy", &o)) < 0 || o == NULL)
        return r;
    if ((r = check_keys(c, "privacy", o, privacy_keys, PRIVACY_EXPECT)) < 0)
        return r;
    if (json_object_get(o, "mode") == NULL)
        return fv_diag_set(c->d, FV_EPARSE,
                           "%s: privacy.mode: missing; expected \"local\" or \"distributed\"",
                           c->origin);
    if ((r = get_word(c, o, "privacy", "mode", privacy_modes, 2, "\"local\" or \"distributed\"", 0,
                      &mode)) < 0)
        return r;
    p->mode = mode == 0 ? FV_PRIVACY_LOCAL : FV_PRIVACY_DISTRIBUTED;
    /* epsilon, noise_multiplier, sample_rate: 0 = not given; else in range */
    static const struct {
        const char *key;
        const struct rrange *r;
        size_t off;
    } opt[] = {
        {"epsilon", &R_EPSILON, offsetof(struct fv_job_privacy, epsilon)},
        {"noise_multiplier", &R_BIG, offsetof(struct fv_job_privacy, noise_multiplier)},
        {"sample_rate", &R_RATE, offsetof(struct fv_job_privacy, sample_rate)},
    };
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++) {
        double *dst = (double *)(void *)((char *)p + opt[i].off);
        v = json_object_get(o, opt[i].key);
        if (v != NULL && json_is_number(v) && json_number_value(v) == 0.0)
            *dst = 0.0;
        else if ((r = get_real(c, o, "privacy", opt[i].key, opt[i].r, 0.0, dst)) < 0)
            return r;
    }
    if (p->epsilon > 0 && p->noise_multiplier > 0)
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: privacy: both epsilon (%g) and noise_multiplier (%g) are given; "
                           "expected exactly one (the target epsilon, or the noise multiplier "
                           "whose epsilon the agents compute)",
                           c->origin, p->epsilon, p->noise_multiplier);
    if (!(p->epsilon > 0 || p->noise_multiplier > 0))
        return fv_diag_set(c->d, FV_EPARSE,
                           "%s: privacy.epsilon: missing; expected exactly one of epsilon (a "
                           "number in (0, 100]) and noise_multiplier (in (0, 1e6])",
                           c->origin);
    if (json_object_get(o, "delta") == NULL)
        return fv_diag_set(c->d, FV_EPARSE,
                           "%s: privacy.delta: missing; expected a number in (0, 0.1] (e.g. "
                           "1e-5, well below 1 / the rows of any bank)",
                           c->origin);
    if ((r = get_real(c, o, "privacy", "delta", &R_DELTA, 0.0, &p->delta)) < 0 ||
        (r = get_real(c, o, "privacy", "clip", &R_BIG, 1.0, &p->clip)) < 0)
        return r;
    if ((r = get_int(c, o, "privacy", "min_honest", 0, job->min_agents, 0, &x)) < 0)
        return r;
    p->min_honest = (uint32_t)x;

    v = json_object_get(o, "outside_budget");
    if (v == NULL || !json_is_array(v))
        return fv_diag_set(c->d, FV_EPARSE,
                           "%s: privacy.outside_budget: %s%s; expected a list of \"stats\", "
                           "\"metrics\" (both required) and \"explain\" (required with "
                           "\"explain\": true): the releases fedvault does not add noise to",
                           c->origin, v == NULL ? "" : "got ",
                           v == NULL ? "missing" : type_name(v));
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *w = json_array_get(v, i);
        size_t k;
        if (!json_is_string(w))
            return fv_diag_set(c->d, FV_EPARSE,
                               "%s: privacy.outside_budget[%zu]: got %s; expected \"stats\", "
                               "\"metrics\" or \"explain\"",
                               c->origin, i, type_name(w));
        for (k = 0; k < 3 && strcmp(json_string_value(w), release_words[k]) != 0; k++)
            ;
        if (k == 3)
            return fv_diag_set(c->d, FV_EINVAL,
                               "%s: privacy.outside_budget[%zu]: \"%s\" is not allowed; "
                               "expected \"stats\", \"metrics\" or \"explain\"",
                               c->origin, i, quote(q, json_string_value(w)));
        if (p->outside_budget & (1u << k))
            return fv_diag_set(c->d, FV_EINVAL,
                               "%s: privacy.outside_budget[%zu]: \"%s\" is listed twice", c->origin,
                               i, release_words[k]);
        p->outside_budget |= 1u << k;
    }
    if (!(p->outside_budget & FV_PRIV_REL_STATS) || !(p->outside_budget & FV_PRIV_REL_METRICS))
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: privacy.outside_budget: must list \"stats\" and \"metrics\": "
                           "the statistics round's sums and every round's validation metrics "
                           "and row counts are released without noise (outside the budget)",
                           c->origin);
    if (job->explain && !(p->outside_budget & FV_PRIV_REL_EXPLAIN))
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: privacy.outside_budget: must list \"explain\" with \"explain\": "
                           "true: the explanation round's sums are released without noise",
                           c->origin);

    if (p->mode == FV_PRIVACY_LOCAL) {
        if (p->min_honest != 0)
            return fv_diag_set(c->d, FV_EINVAL,
                               "%s: privacy.min_honest: %u applies to mode \"distributed\" only "
                               "(local mode's guarantee needs no other agent); remove it",
                               c->origin, p->min_honest);
    } else {
        if (!(p->sample_rate > 0))
            return fv_diag_set(c->d, FV_EPARSE,
                               "%s: privacy.sample_rate: missing; mode \"distributed\" needs "
                               "it, a number in (0, 1] (every agent samples its rows at the "
                               "same rate)",
                               c->origin);
        if (p->min_honest == 0)
            p->min_honest = job->min_agents;
        if (!job->secagg.on)
            return fv_diag_set(c->d, FV_EINVAL,
                               "%s: privacy.mode: \"distributed\" needs secure aggregation "
                               "(\"secagg\" is \"off\"): each agent's noise share hides "
                               "nothing unmasked",
                               c->origin);
        if (job->validation.on)
            return fv_diag_set(c->d, FV_EINVAL,
                               "%s: privacy.mode: \"distributed\" cannot be validated yet "
                               "(\"validation\"): remove one of them",
                               c->origin);
        if (job->distill.on)
            return fv_diag_set(c->d, FV_EINVAL,
                               "%s: privacy.mode: \"distributed\" does not cover distillation "
                               "yet (\"distill\"): use mode \"local\" or remove \"distill\"",
                               c->origin);
        if (job->local_epochs != 1)
            return fv_diag_set(c->d, FV_EINVAL,
                               "%s: privacy.mode: \"distributed\" sends one clipped gradient "
                               "sum per round: local_epochs must be 1 (got %u)",
                               c->origin, job->local_epochs);
    }
    p->on = true;
    return 0;
}

static int parse_rest(const struct jctx *c, json_t *root, fv_job_t *job)
{
    json_t *o, *v;
    long long x;
    int metric, r;
    bool binary = fv_schema_positive(job->schema) != NULL;

    if ((r = get_int(c, root, "", "rounds", 1, 10000, 20, &x)) < 0)
        return r;
    job->rounds = (uint32_t)x;
    if ((r = get_int(c, root, "", "local_epochs", 1, 1000, 1, &x)) < 0)
        return r;
    job->local_epochs = (uint32_t)x;
    if ((r = get_int(c, root, "", "batch_size", 1, 65536, 128, &x)) < 0)
        return r;
    job->batch_size = (uint32_t)x;
    if ((r = parse_optimizer(c, root, job)) < 0 || (r = parse_strategy(c, root, job)) < 0)
        return r;
    {
        fv_diag_t td;
        if (fv_optim_cfg_check(&job->optim, &td) != 0) /* a backstop: the fields above */
            return fv_diag_set(c->d, FV_EINVAL, "%s: optimizer: %s", c->origin, td.msg);
    }
    if ((r = get_int(c, root, "", "min_agents", 3, 65535, 3, &x)) < 0)
        return r;
    job->min_agents = (uint32_t)x;
    if ((r = parse_secagg(c, root, job)) < 0)
        return r;

    if ((r = get_object(c, root, "", "deadlines_ms", &o)) < 0)
        return r;
    {
        long long j = 60000, t = 600000, s = 60000;
        if (o != NULL &&
            ((r = check_keys(c, "deadlines_ms", o, deadline_keys, "join, train, secagg_phase")) <
                 0 ||
             (r = get_int(c, o, "deadlines_ms", "join", 1, DEADLINE_MAX_MS, j, &j)) < 0 ||
             (r = get_int(c, o, "deadlines_ms", "train", 1, DEADLINE_MAX_MS, t, &t)) < 0 ||
             (r = get_int(c, o, "deadlines_ms", "secagg_phase", 1, DEADLINE_MAX_MS, s, &s)) < 0))
            return r;
        job->deadlines.join_ms = (uint64_t)j;
        job->deadlines.train_ms = (uint64_t)t;
        job->deadlines.secagg_phase_ms = (uint64_t)s;
    }

    if ((r = get_object(c, root, "", "early_stopping", &o)) < 0)
        return r;
    /* Default metric: ROC AUC needs a binary target; a multi-class job watches the loss. */
    metric = binary ? FV_JOB_METRIC_ROC_AUC : FV_JOB_METRIC_LOG_LOSS;
    job->early_stopping.patience = 3;
    job->early_stopping.min_delta = 1e-4;
    if (o != NULL) {
        if ((r = check_keys(c, "early_stopping", o, es_keys, "metric, patience, min_delta")) < 0 ||
            (r = get_word(c, o, "early_stopping", "metric", metric_names, 4, METRIC_WORDS, metric,
                          &metric)) < 0 ||
            (r = get_int(c, o, "early_stopping", "patience", 0, 10000, 3, &x)) < 0 ||
            (r = get_real(c, o, "early_stopping", "min_delta", &R_NONNEG, 1e-4,
                          &job->early_stopping.min_delta)) < 0)
            return r;
        job->early_stopping.patience = (uint32_t)x;
    }
    job->early_stopping.metric = (fv_job_metric_t)metric;
    if ((r = metric_fits(c, "early_stopping.metric", metric, job, binary)) < 0)
        return r;

    if ((r = get_real(c, root, "", "validation_fraction", &R_VALFRAC, 0.1,
                      &job->validation_fraction)) < 0)
        return r;
    if ((r = get_int(c, root, "", "hist_bins", 0, 100000, binary ? 1000 : 0, &x)) < 0)
        return r;
    if (!binary && x != 0)
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: hist_bins: %lld, but the schema is multi-class with %zu classes: "
                           "score histograms (for ROC/PR AUC) need a binary schema (a "
                           "\"positive\" label); a multi-class job's global metrics are "
                           "accuracy, per-class recall and log loss from summed counts. Remove "
                           "\"hist_bins\" (or set 0)",
                           c->origin, x, fv_schema_n_classes(job->schema));
    if (binary && x < 10)
        return fv_diag_set(c->d, FV_EINVAL,
                           "%s: hist_bins: %lld is too few for a binary job's ROC/PR AUC; "
                           "expected 10..100000",
                           c->origin, x);
    job->hist_bins = (uint32_t)x;
    if ((r = get_int(c, root, "", "seed", 0, INT64_MAX, 0, &x)) < 0)
        return r;
    job->seed = (uint64_t)x;
    /* optional, no default: 0 in the struct means "absent" (no bound) */
    if ((r = get_real(c, root, "", "max_update_norm", &R_POS, 0.0, &job->max_update_norm)) < 0)
        return r;
    if ((r = parse_validation(c, root, job)) < 0 || (r = parse_cohort(c, root, job)) < 0)
        return r;
    v = json_object_get(root, "explain"); /* boolean, default false */
    if (v != NULL && !json_is_boolean(v))
        return fv_diag_set(c->d, FV_EPARSE, "%s: explain: got %s; expected true or false",
                           c->origin, type_name(v));
    job->explain = v != NULL && json_is_true(v);
    if ((r = parse_distill(c, root, job, binary)) < 0)
        return r;
    return parse_privacy(c, root, job);
}

int fv_job_from_json(const char *origin, const char *json, size_t len, fv_job_t **ret, fv_diag_t *d)
{
    struct jctx c = {origin != NULL ? origin : "job", d};
    json_t *root = NULL, *v;
    json_error_t je;
    fv_job_t *job = NULL;
    char *sjson = NULL, q[QUOTE_BUF], sorigin[QUOTE_BUF + 16];
    int r;

    if (ret == NULL || (json == NULL && len > 0))
        return fv_diag_set(d, FV_EINVAL, "fv_job_from_json: json and ret are required");
    if (len > JOB_MAX_JSON_BYTES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: %zu bytes; expected a job of at most %zu bytes",
                           c.origin, len, JOB_MAX_JSON_BYTES);
    root = json_loadb(json != NULL ? json : "", len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return fv_diag_set(d, FV_EPARSE, "%s:%d:%d: invalid JSON: %s; expected a job object",
                           c.origin, je.line, je.column, je.text);
    if (!json_is_object(root)) {
        r = fv_diag_set(d, FV_EPARSE, "%s: got %s; expected a JSON object (the job spec)", c.origin,
                        type_name(root));
        goto out;
    }
    if ((r = check_keys(&c, "", root, root_keys, ROOT_EXPECT)) < 0)
        goto out;
    job = calloc(1, sizeof *job);
    if (job == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", c.origin);
        goto out;
    }

    v = json_object_get(root, "name");
    if (v == NULL || !json_is_string(v)) {
        r = fv_diag_set(d, FV_EPARSE,
                        "%s: name: %s; expected a string of 1..%d characters "
                        "[a-z0-9._-], starting with a letter or digit",
                        c.origin, v == NULL ? "missing" : type_name(v), FV_NAME_MAX);
        goto out;
    }
    /* jansson refuses "\u0000" (no JSON_ALLOW_NUL), so the string is all of the value. */
    if (!fv_name_valid(json_string_value(v))) {
        r = fv_diag_set(d, FV_EINVAL,
                        "%s: name: '%s' is not a valid name; expected 1..%d "
                        "characters [a-z0-9._-], starting with a letter or digit",
                        c.origin, quote(q, json_string_value(v)), FV_NAME_MAX);
        goto out;
    }
    snprintf(job->name, sizeof job->name, "%s", json_string_value(v));

    v = json_object_get(root, "schema");
    if (json_is_string(v)) {
        /* A path means something only beside the file it was written in (fv_job_load);
         * a spec from the network or the admin port carries the schema itself. */
        r = fv_diag_set(d, FV_EPARSE,
                        "%s: schema: a string ('%s'), a schema file's path, is allowed only in a "
                        "job spec file (fedvault job submit, job check, the coordinator's "
                        "--job), which inlines it; here the spec must carry the schema object",
                        c.origin, quote(q, json_string_value(v)));
        goto out;
    }
    if (v == NULL || !json_is_object(v)) {
        r = fv_diag_set(d, FV_EPARSE,
                        "%s: schema: %s; expected the schema object (the output "
                        "of 'fedvault schema infer')",
                        c.origin, v == NULL ? "missing" : type_name(v));
        goto out;
    }
    {
        size_t slen = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
        sjson = slen > 0 ? malloc(slen) : NULL;
        if (sjson == NULL ||
            json_dumpb(v, sjson, slen, JSON_COMPACT | JSON_PRESERVE_ORDER) != slen) {
            r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", c.origin);
            goto out;
        }
        snprintf(sorigin, sizeof sorigin, "%s: schema", c.origin);
        if ((r = fv_schema_from_json(sorigin, sjson, slen, &job->schema, d)) < 0)
            goto out;
    }

    if ((r = fv_schema_check_trainable(job->schema, c.origin, d)) < 0)
        goto out;
    v = json_object_get(root, "model");
    if (v == NULL || !json_is_string(v)) {
        r = fv_diag_set(d, FV_EPARSE, "%s: model: %s; expected \"logreg\" or \"mlp:H1,H2,...\"",
                        c.origin, v == NULL ? "missing" : type_name(v));
        goto out;
    }
    if (json_string_length(v) >= sizeof job->model) {
        r = fv_diag_set(d, FV_EINVAL,
                        "%s: model: '%s' is too long; expected "
                        "\"logreg\" or \"mlp:H1,H2,...\" of at most %zu characters",
                        c.origin, quote(q, json_string_value(v)), sizeof job->model - 1);
        goto out;
    }
    snprintf(job->model, sizeof job->model, "%s", json_string_value(v));
    {
        fv_mlp_arch_t arch;
        fv_diag_t td;
        size_t n_in = 0;
        if ((r = schema_n_features(job->schema, &n_in)) < 0) {
            fv_diag_set(d, r, "%s: schema: cannot lay out its features: %s", c.origin,
                        fv_strerror(r));
            goto out;
        }
        if (fv_mlp_parse_arch(job->model, n_in, fv_schema_n_classes(job->schema), &arch, &td) !=
            0) {
            r = fv_diag_set(d, FV_EINVAL,
                            "%s: model: %s (the schema gives %zu input features, "
                            "%zu classes)",
                            c.origin, td.msg, n_in, fv_schema_n_classes(job->schema));
            goto out;
        }
    }

    if ((r = parse_rest(&c, root, job)) < 0)
        goto out;
    *ret = job;
    job = NULL;
    r = 0;
out:
    free(sjson);
    fv_job_free(job);
    json_decref(root);
    return r;
}

/* ---- spec files: comments and the schema by path -------------------------------------- */

/* Blanks every full-line // comment of text[0..len) in place: from the // to the end of
 * the line becomes spaces, so jansson's line:column of any error still points into the
 * file as the operator sees it. A JSON string cannot hold a raw line break, so the start
 * of a line is never inside a string and a // there is always a comment. */
static void strip_comment_lines(char *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && (text[j] == ' ' || text[j] == '\t'))
            j++;
        if (j + 1 < len && text[j] == '/' && text[j + 1] == '/')
            while (j < len && text[j] != '\n' && text[j] != '\r')
                text[j++] = ' ';
        while (j < len && text[j] != '\n')
            j++;
        i = j + 1;
    }
}

/* The schema file `path` (named `shown` in messages: as the operator wrote it) as a JSON
 * object; checked with fv_schema_from_json here so that its errors name the schema file
 * rather than the job. `why` says where the path came from. */
static int load_schema_file(const char *origin, const char *path, const char *shown,
                            const char *why, json_t **ret, fv_diag_t *d)
{
    fv_file_fail_t ff;
    char *buf = NULL, q[QUOTE_BUF];
    size_t len = 0;
    json_error_t je;
    fv_schema_t *s = NULL;
    int r = fv_file_read_all(path, SCHEMA_FILE_MAX_BYTES, &buf, &len, &ff, d);
    if (r < 0) {
        if (ff.step == FV_FILE_STEP_OPEN)
            return fv_diag_set(d, r, "%s: schema: cannot open '%s' (%s): %s", origin,
                               quote(q, path), why, strerror(-r));
        if (ff.step == FV_FILE_STEP_TYPE)
            return fv_diag_set(d, r, "%s: schema: '%s' (%s) is not a regular file", origin,
                               quote(q, path), why);
        if (ff.step == FV_FILE_STEP_SIZE)
            return fv_diag_set(d, r,
                               "%s: schema: '%s' (%s) is %jd bytes; expected a schema of at "
                               "most %zu bytes",
                               origin, quote(q, path), why, (intmax_t)ff.size_bytes,
                               SCHEMA_FILE_MAX_BYTES);
        return r; /* fv_file_read_all's sentence names the path */
    }
    if ((r = fv_schema_from_json(shown, buf, len, &s, d)) < 0) {
        free(buf);
        return r;
    }
    fv_schema_free(s);
    *ret = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (*ret == NULL) /* not reached: fv_schema_from_json parsed the same bytes */
        return fv_diag_set(d, FV_EPARSE, "%s:%d:%d: invalid JSON: %s", shown, je.line, je.column,
                           je.text);
    return 0;
}

int fv_job_expand(const char *origin, const char *text, size_t len, const char *base_dir,
                  const char *schema_path, char **ret_json, size_t *ret_len, fv_diag_t *d)
{
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17);
    json_t *root = NULL, *schema = NULL, *v;
    json_error_t je;
    char *copy = NULL, *out = NULL, *full = NULL;
    size_t n;
    int r;

    if (origin == NULL)
        origin = "job";
    if (ret_json == NULL || (text == NULL && len > 0))
        return fv_diag_set(d, FV_EINVAL, "fv_job_expand: text and ret_json are required");
    if (len > JOB_MAX_JSON_BYTES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: %zu bytes; expected a job of at most %zu bytes",
                           origin, len, JOB_MAX_JSON_BYTES);
    copy = malloc(len + 1);
    if (copy == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", origin);
    if (len > 0)
        memcpy(copy, text, len);
    copy[len] = '\0';
    strip_comment_lines(copy, len);
    root = json_loadb(copy, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        r = fv_diag_set(d, FV_EPARSE, "%s:%d:%d: invalid JSON: %s; expected a job object", origin,
                        je.line, je.column, je.text);
        goto out;
    }
    if (!json_is_object(root)) {
        r = fv_diag_set(d, FV_EPARSE, "%s: got %s; expected a JSON object (the job spec)", origin,
                        type_name(root));
        goto out;
    }
    v = json_object_get(root, "schema");
    if (schema_path != NULL) {
        /* --schema F: F as given (relative to the working directory), whatever the spec has */
        if ((r = load_schema_file(origin, schema_path, schema_path, "given by --schema", &schema,
                                  d)) < 0)
            goto out;
    } else if (json_is_string(v)) {
        const char *p = json_string_value(v);
        if (p[0] == '\0') {
            r = fv_diag_set(d, FV_EINVAL,
                            "%s: schema: an empty path; expected the schema object or the path "
                            "of a schema JSON file, relative to the spec's directory",
                            origin);
            goto out;
        }
        if (p[0] == '/' || base_dir == NULL || base_dir[0] == '\0' || strcmp(base_dir, ".") == 0) {
            full = strdup(p);
        } else {
            n = strlen(base_dir) + 1 + strlen(p) + 1;
            full = malloc(n);
            if (full != NULL)
                snprintf(full, n, "%s/%s", base_dir, p);
        }
        if (full == NULL) {
            r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", origin);
            goto out;
        }
        if ((r = load_schema_file(origin, full, full,
                                  "the spec's \"schema\", relative to its "
                                  "directory",
                                  &schema, d)) < 0)
            goto out;
    }
    if (schema != NULL) {
        if (json_object_set_new(root, "schema", schema) != 0) {
            r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", origin);
            goto out;
        }
    }
    n = json_dumpb(root, NULL, 0, flags);
    out = n > 0 ? malloc(n + 1) : NULL;
    if (out == NULL || json_dumpb(root, out, n, flags) != n) {
        free(out);
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", origin);
        goto out;
    }
    out[n] = '\0';
    *ret_json = out;
    if (ret_len != NULL)
        *ret_len = n;
    r = 0;
out:
    free(full);
    free(copy);
    json_decref(root);
    return r;
}

int fv_job_file_expand(const char *path, const char *schema_path, char **ret_json, size_t *ret_len,
                       fv_diag_t *d)
{
    fv_file_fail_t why;
    char *buf = NULL, *dir = NULL;
    const char *slash;
    size_t len = 0;
    int r;

    if (path == NULL || ret_json == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_job_file_expand: path and ret_json are required");
    r = fv_file_read_all(path, JOB_MAX_JSON_BYTES, &buf, &len, &why, d);
    if (r < 0) {
        /* fv_file_read_all's sentence, said in terms of a job where that helps. */
        if (why.step == FV_FILE_STEP_OPEN)
            fv_diag_set(d, r, "%s: cannot open: %s; expected a readable job JSON file", path,
                        strerror(-r));
        else if (why.step == FV_FILE_STEP_TYPE)
            fv_diag_set(d, r, "%s: not a regular file; expected a job JSON file", path);
        else if (why.step == FV_FILE_STEP_SIZE)
            fv_diag_set(d, r, "%s: file is %jd bytes; expected a job of at most %zu bytes", path,
                        (intmax_t)why.size_bytes, JOB_MAX_JSON_BYTES);
        return r;
    }
    /* the spec's directory: what a relative "schema" path starts from */
    slash = strrchr(path, '/');
    if (slash != NULL) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(n + 1);
        if (dir == NULL) {
            free(buf);
            return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", path);
        }
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    r = fv_job_expand(path, buf, len, dir != NULL ? dir : ".", schema_path, ret_json, ret_len, d);
    free(dir);
    free(buf);
    return r;
}

int fv_job_load(const char *path, fv_job_t **ret, fv_diag_t *d)
{
    char *json = NULL;
    size_t len = 0;
    int r;

    if (path == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_job_load: path and ret are required");
    if ((r = fv_job_file_expand(path, NULL, &json, &len, d)) < 0)
        return r;
    r = fv_job_from_json(path, json, len, ret, d);
    free(json);
    return r;
}

/* ---- encoding ---------------------------------------------------------------------- */

/* A float as the shortest decimal (at most 9 significant digits) that reads back to
 * the same float, as a double: 0.001f is written 0.001, not 0.0010000000474974513. The
 * decimal text goes through jansson both ways, so the C locale is not needed. Reading
 * that double back and narrowing gives f again, which keeps the canonical form a fixed
 * point. */
static json_t *json_float(float f)
{
    for (size_t p = 1; p <= 9; p++) {
        char txt[64];
        json_t *v = json_real((double)f), *w;
        size_t n = v != NULL
                       ? json_dumpb(v, txt, sizeof txt, JSON_ENCODE_ANY | JSON_REAL_PRECISION(p))
                       : 0;
        json_decref(v);
        if (n == 0 || n > sizeof txt)
            return NULL;
        w = json_loadb(txt, n, JSON_DECODE_ANY, NULL);
        if (w == NULL)
            return NULL;
        if (json_is_real(w) && (float)json_real_value(w) == f)
            return w;
        json_decref(w);
    }
    return json_real((double)f); /* not reached: 9 digits always round-trip a float */
}

/* json_object_set_new steals the value even on failure; jansson keeps insertion order,
 * which is the canonical order. Returns nonzero on any failure. */
static int put(json_t *o, const char *key, json_t *v)
{
    return v == NULL || json_object_set_new(o, key, v) != 0;
}

static json_t *encode(const fv_job_t *job)
{
    json_t *root = json_object(), *o, *schema = NULL;
    char *sjson = NULL;
    size_t slen = 0;
    int bad = root == NULL;

    if (!bad && fv_schema_to_json(job->schema, &sjson, &slen) == 0)
        schema = json_loadb(sjson, slen, 0, NULL);
    free(sjson);
    bad = bad || schema == NULL;
    bad = bad || put(root, "name", json_string(job->name));
    if (!bad) {
        bad = put(root, "schema", schema);
        schema = NULL; /* stolen, even on failure */
    }
    bad = bad || put(root, "model", json_string(job->model));
    bad = bad || put(root, "rounds", json_integer(job->rounds));
    bad = bad || put(root, "local_epochs", json_integer(job->local_epochs));
    bad = bad || put(root, "batch_size", json_integer(job->batch_size));
    if (!bad) {
        o = json_object();
        bad = put(root, "optimizer", o) ||
              put(o, "kind", json_string(job->optim.kind == FV_OPT_SGD ? "sgd" : "adam")) ||
              put(o, "lr", json_float(job->optim.lr)) ||
              put(o, "momentum", json_float(job->optim.momentum)) ||
              put(o, "beta1", json_float(job->optim.beta1)) ||
              put(o, "beta2", json_float(job->optim.beta2)) ||
              put(o, "eps", json_float(job->optim.eps));
    }
    bad = bad || put(root, "l2", json_float(job->optim.weight_decay));
    if (!bad) {
        o = json_object();
        bad = put(root, "strategy", o) ||
              put(o, "kind", json_string(fv_strategy_name(job->strategy.kind)));
        if (!bad && job->strategy.kind == FV_STRATEGY_FEDPROX)
            bad = put(o, "mu", json_real(job->strategy.mu));
        if (!bad && (job->strategy.kind == FV_STRATEGY_FEDADAM ||
                     job->strategy.kind == FV_STRATEGY_FEDYOGI))
            bad = put(o, "server_lr", json_real(job->strategy.server_lr)) ||
                  put(o, "beta1", json_real(job->strategy.beta1)) ||
                  put(o, "beta2", json_real(job->strategy.beta2)) ||
                  put(o, "tau", json_real(job->strategy.tau));
    }
    if (!bad && !job->secagg.on) {
        bad = put(root, "secagg", json_string("off"));
    } else if (!bad) {
        o = json_object();
        bad = put(root, "secagg", o) || put(o, "threshold", json_integer(job->secagg.threshold)) ||
              put(o, "neighbors", json_integer(job->secagg.neighbors)) ||
              put(o, "clip", json_float(job->secagg.clip)) ||
              put(o, "bits", json_integer(job->secagg.bits));
    }
    bad = bad || put(root, "min_agents", json_integer(job->min_agents));
    if (!bad) {
        o = json_object();
        bad = put(root, "deadlines_ms", o) ||
              put(o, "join", json_integer((json_int_t)job->deadlines.join_ms)) ||
              put(o, "train", json_integer((json_int_t)job->deadlines.train_ms)) ||
              put(o, "secagg_phase", json_integer((json_int_t)job->deadlines.secagg_phase_ms));
    }
    if (!bad) {
        o = json_object();
        bad = put(root, "early_stopping", o) ||
              (unsigned)job->early_stopping.metric > FV_JOB_METRIC_ACCURACY ||
              put(o, "metric", json_string(metric_names[job->early_stopping.metric])) ||
              put(o, "patience", json_integer(job->early_stopping.patience)) ||
              put(o, "min_delta", json_real(job->early_stopping.min_delta));
    }
    bad = bad || put(root, "validation_fraction", json_real(job->validation_fraction));
    bad = bad || put(root, "hist_bins", json_integer(job->hist_bins));
    bad = bad || put(root, "seed", json_integer((json_int_t)job->seed));
    if (!bad && job->max_update_norm > 0) /* only when present: older jobs keep their digest */
        bad = put(root, "max_update_norm", json_real(job->max_update_norm));
    if (!bad && job->validation.on) { /* only when present: older jobs keep their digest */
        o = json_object();
        bad = put(root, "validation", o) ||
              put(o, "max_failures", json_integer(job->validation.max_failures));
    }
    if (!bad && job->distill.on) { /* only when present: older jobs keep their digest */
        json_t *es;
        o = json_object();
        bad = put(root, "distill", o) || put(o, "student", json_string(job->distill.student)) ||
              put(o, "temperature", json_real(job->distill.temperature)) ||
              put(o, "alpha", json_real(job->distill.alpha)) ||
              put(o, "rounds", json_integer(job->distill.rounds)) ||
              put(o, "local_epochs", json_integer(job->distill.local_epochs));
        if (!bad) {
            es = json_object();
            bad =
                put(o, "early_stopping", es) ||
                (unsigned)job->distill.early_stopping.metric > FV_JOB_METRIC_ACCURACY ||
                put(es, "metric", json_string(metric_names[job->distill.early_stopping.metric])) ||
                put(es, "patience", json_integer(job->distill.early_stopping.patience)) ||
                put(es, "min_delta", json_real(job->distill.early_stopping.min_delta));
        }
        bad = bad || put(o, "quantize_int8", json_boolean(job->distill.quantize_int8));
    }
    /* only when not the defaults: older jobs keep their digest */
    if (!bad && (job->cohort.on_join_deadline != FV_JOB_JOIN_FAIL ||
                 job->cohort.on_member_lost != FV_JOB_LOST_CONTINUE)) {
        o = json_object();
        bad = put(root, "cohort", o) || (unsigned)job->cohort.on_join_deadline > 1 ||
              (unsigned)job->cohort.on_member_lost > 1 ||
              put(o, "on_join_deadline", json_string(join_words[job->cohort.on_join_deadline])) ||
              put(o, "on_member_lost", json_string(lost_words[job->cohort.on_member_lost]));
    }
    if (!bad && job->explain) /* only when true: older jobs keep their digest */
        bad = put(root, "explain", json_true());
    if (!bad && job->privacy.on) { /* only when present: older jobs keep their digest */
        const struct fv_job_privacy *p = &job->privacy;
        json_t *l = json_array();
        for (unsigned k = 0; l != NULL && k < 3; k++)
            if ((p->outside_budget & (1u << k)) &&
                json_array_append_new(l, json_string(release_words[k])) != 0) {
                json_decref(l);
                l = NULL;
            }
        o = json_object();
        bad = put(root, "privacy", o) ||
              (p->mode != FV_PRIVACY_LOCAL && p->mode != FV_PRIVACY_DISTRIBUTED) ||
              put(o, "mode", json_string(privacy_modes[p->mode == FV_PRIVACY_LOCAL ? 0 : 1])) ||
              put(o, "epsilon", json_real(p->epsilon)) ||
              put(o, "noise_multiplier", json_real(p->noise_multiplier)) ||
              put(o, "delta", json_real(p->delta)) || put(o, "clip", json_real(p->clip)) ||
              put(o, "sample_rate", json_real(p->sample_rate)) ||
              put(o, "min_honest", json_integer(p->min_honest));
        if (!bad)
            bad = put(o, "outside_budget", l); /* steals l */
        else
            json_decref(l);
    }
    json_decref(schema);
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int fv_job_to_json(const fv_job_t *job, char **ret_json, size_t *ret_len)
{
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17);
    json_t *root;
    char *out = NULL;
    size_t len;
    int r = FV_ENOMEM;

    if (job == NULL || job->schema == NULL || ret_json == NULL)
        return FV_EINVAL;
    root = encode(job);
    if (root == NULL)
        return FV_ENOMEM; /* or a field jansson refuses (NaN): a job not from from_json */
    /* Dumped into our own malloc'd buffer, so the caller can free() it whatever
     * allocator jansson was given. */
    len = json_dumpb(root, NULL, 0, flags);
    if (len == 0)
        goto out;
    out = malloc(len + 1);
    if (out == NULL || json_dumpb(root, out, len, flags) != len) {
        free(out);
        goto out;
    }
    out[len] = '\0';
    *ret_json = out;
    if (ret_len != NULL)
        *ret_len = len;
    r = 0;
out:
    json_decref(root);
    return r;
}

int fv_job_digest(const fv_job_t *job, uint8_t ret[32])
{
    char *json = NULL;
    size_t len = 0;
    int r = fv_job_to_json(job, &json, &len);
    if (r < 0)
        return r;
    fv_sha256(ret, json, len);
    free(json);
    return 0;
}

/* ---- SecAgg sizing ----------------------------------------------------------------- */

uint64_t fv_job_last_round(const fv_job_t *job)
{
    return (uint64_t)job->rounds + (job->distill.on ? job->distill.rounds : 0) +
           (job->explain ? 1 : 0);
}

int fv_job_secagg_for(const fv_job_t *job, uint32_t n, uint32_t *ret_threshold,
                      uint32_t *ret_neighbors, fv_diag_t *d)
{
    uint64_t k, t;
    if (job == NULL || ret_threshold == NULL || ret_neighbors == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_job_secagg_for: job and ret are required");
    if (!job->secagg.on)
        return fv_diag_set(d, FV_EINVAL, "job '%s': SecAgg is off; there is no threshold",
                           job->name);
    if (n < 3 || n < job->min_agents)
        return fv_diag_set(d, FV_EINVAL,
                           "job '%s': a cohort of %" PRIu32 " agents is too small; SecAgg needs "
                           "at least 3 and the job's min_agents is %" PRIu32,
                           job->name, n, job->min_agents);
    if ((uint64_t)n * ((UINT64_C(1) << job->secagg.bits) - 1) >= (UINT64_C(1) << 32))
        return fv_diag_set(d, FV_EOVERFLOW,
                           "job '%s': %" PRIu32 " agents * (2^%" PRIu32 " - 1) is not below "
                           "2^32, so the quantized sum could wrap; use fewer secagg.bits or a "
                           "smaller cohort",
                           job->name, n, job->secagg.bits);
    k = job->secagg.neighbors;
    if (k == 0) {
        k = n - 1;
    } else if (k % 2 != 0 || k < 2 || k + 2 > n) {
        return fv_diag_set(d, FV_EINVAL,
                           "job '%s': secagg.neighbors %" PRIu64
                           " does not fit a cohort of %" PRIu32
                           "; expected an even number in 2..%" PRIu32 " (or 0 = every other agent)",
                           job->name, k, n, n - 2);
    }
    t = job->secagg.threshold;
    if (t == 0) {
        t = 2 * (k + 1) / 3 + 1;
    } else if (!(2 * t > k + 1 && t <= k + 1)) {
        return fv_diag_set(d, FV_EINVAL,
                           "job '%s': secagg.threshold %" PRIu64 " does not fit %" PRIu64
                           " neighbors (cohort %" PRIu32 "); expected %" PRIu64 "..%" PRIu64
                           " (2t > k+1, t <= k+1)",
                           job->name, t, k, n, (k + 1) / 2 + 1, k + 1);
    }
    *ret_threshold = (uint32_t)t;
    *ret_neighbors = (uint32_t)k;
    return 0;
}

/* ---- open schemas ------------------------------------------------------------------ */

/* Whether closed refines open: same names in order, fixed columns unchanged, open
 * columns now closed (a "categories": "open" column categorical, a "type": "open" one
 * numeric or categorical), same target, classes and positive, unknown "other". */
static int check_refines(const char *origin, const fv_schema_t *open, const fv_schema_t *closed,
                         fv_diag_t *d)
{
    size_t n = fv_schema_n_columns(open);
    const char *po = fv_schema_positive(open), *pc = fv_schema_positive(closed);
    char q1[QUOTE_BUF], q2[QUOTE_BUF];

    if (fv_schema_is_open(closed))
        return fv_schema_check_closed(closed, origin, d);
    if (fv_schema_n_columns(closed) != n)
        return fv_diag_set(d, FV_EINVAL,
                           "%s: the resolved schema has %zu columns, the job's has %zu; "
                           "expected the same columns",
                           origin, fv_schema_n_columns(closed), n);
    for (size_t j = 0; j < n; j++) {
        const char *name = fv_schema_column_name(open, j);
        fv_col_type_t to = fv_schema_column_type(open, j), tc = fv_schema_column_type(closed, j);
        bool ok;
        if (strcmp(name, fv_schema_column_name(closed, j)) != 0)
            return fv_diag_set(d, FV_EINVAL,
                               "%s: schema.columns[%zu]: '%s' in the resolved schema, '%s' in "
                               "the job's; expected the same columns in the same order",
                               origin, j, quote(q1, fv_schema_column_name(closed, j)),
                               quote(q2, name));
        if (to == FV_COL_OPEN)
            ok = tc == FV_COL_NUMERIC || tc == FV_COL_CATEGORICAL;
        else if (fv_schema_column_open(open, j))
            ok = tc == FV_COL_CATEGORICAL;
        else if (to != tc)
            ok = false;
        else {
            size_t k = fv_schema_n_categories(open, j);
            ok = k == fv_schema_n_categories(closed, j);
            for (size_t i = 0; ok && i < k; i++)
                ok = strcmp(fv_schema_category(open, j, i), fv_schema_category(closed, j, i)) == 0;
        }
        if (!ok)
            return fv_diag_set(d, FV_EINVAL,
                               "%s: schema.columns[%zu] '%s': the resolved schema changes a "
                               "column the job fixed (or leaves an open one undecided); "
                               "expected only open columns filled in",
                               origin, j, quote(q1, name));
    }
    {
        bool same = fv_schema_n_labels(open) == fv_schema_n_labels(closed) &&
                    fv_schema_target(open) == fv_schema_target(closed) &&
                    (po == NULL) == (pc == NULL) && (po == NULL || strcmp(po, pc) == 0);
        for (size_t k = 0; same && k < fv_schema_n_labels(open); k++)
            same = strcmp(fv_schema_label(open, k), fv_schema_label(closed, k)) == 0;
        if (!same)
            return fv_diag_set(d, FV_EINVAL,
                               "%s: schema: the resolved schema changes the target, classes or "
                               "positive label; expected those of the job",
                               origin);
    }
    if (fv_schema_is_open(open) && fv_schema_unknown_policy(closed) != FV_UNKNOWN_OTHER)
        return fv_diag_set(d, FV_EINVAL,
                           "%s: schema.unknown_category: \"error\" in the resolved schema; "
                           "expected \"other\" (values an agent suppressed land there)",
                           origin);
    return 0;
}

int fv_job_resolve_schema(const fv_job_t *open, const fv_schema_t *closed, fv_job_t **ret,
                          fv_diag_t *d)
{
    char origin[sizeof open->name + 32];
    char *jjson = NULL, *sjson = NULL, *out = NULL;
    size_t jlen = 0, slen = 0, olen;
    json_t *root = NULL, *sch = NULL;
    int r;

    if (open == NULL || open->schema == NULL || closed == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL,
                           "fv_job_resolve_schema: job, closed schema and ret are required");
    snprintf(origin, sizeof origin, "job '%s' (resolved)", open->name);
    if ((r = check_refines(origin, open->schema, closed, d)) < 0)
        return r;
    /* The canonical job with the closed schema in place of the open one, decoded again:
     * every rule of fv_job_from_json, the model's inputs included, applies as written. */
    if ((r = fv_job_to_json(open, &jjson, &jlen)) < 0 ||
        (r = fv_schema_to_json(closed, &sjson, &slen)) < 0) {
        fv_diag_set(d, r, "%s: cannot encode: %s", origin, fv_strerror(r));
        goto out;
    }
    root = json_loadb(jjson, jlen, 0, NULL);
    sch = json_loadb(sjson, slen, 0, NULL);
    if (root == NULL || sch == NULL || json_object_set(root, "schema", sch) != 0) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", origin);
        goto out;
    }
    olen = json_dumpb(root, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
    out = olen > 0 ? malloc(olen) : NULL;
    if (out == NULL || json_dumpb(root, out, olen, JSON_COMPACT | JSON_PRESERVE_ORDER) != olen) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", origin);
        goto out;
    }
    r = fv_job_from_json(origin, out, olen, ret, d);
out:
    free(out);
    free(jjson);
    free(sjson);
    json_decref(sch);
    json_decref(root);
    return r;
}
