/* test_optim.c - SGD/Adam steps against hand-computed values, reset, config checks.
 *
 * Tolerance: 1e-6 absolute on parameters of magnitude <= 4. The optimizer works in
 * float32 (unit roundoff 6e-8) and a step is a handful of operations, so the error is a
 * few ulps; the hand values are exact decimals (or computed in double from the header's
 * formulas for the Adam second step).
 *
 * The optimizer's main loop handles 4 elements at a time with a scalar tail. Every case
 * uses 7 parameters whose last 3 repeat the first 3, so the same element goes once through
 * the vector body and once through the tail; the two must agree bit for bit.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fv_optim.h"
#include "fv_rng.h"
#include "fv_test.h"

#define N 7

/* theta, grad, mask and reference of the worked example (elements 4..6 repeat 0..2). */
static const float theta0[N] = {1.0f, -2.0f, 0.5f, 4.0f, 1.0f, -2.0f, 0.5f};
static const float grad0[N] = {0.1f, 0.2f, -0.3f, 0.0f, 0.1f, 0.2f, -0.3f};
static const uint8_t mask0[N] = {1, 1, 0, 0, 1, 1, 0};
static const float ref0[N] = {0.0f, 0.0f, 1.0f, 4.0f, 0.0f, 0.0f, 1.0f};

static void check_tail_matches_body(const float *p)
{
    for (size_t i = 0; i < 3; i++)
        CHECK(memcmp(&p[i], &p[i + 4], sizeof p[i]) == 0);
}

static fv_optim_cfg_t base_cfg(fv_opt_kind_t kind)
{
    fv_optim_cfg_t c;
    fv_optim_cfg_default(&c);
    c.kind = kind;
    c.lr = 0.1f;
    c.momentum = 0.9f;
    c.weight_decay = 0.5f;
    c.prox_mu = 0.25f;
    c.prox_ref = ref0;
    return c;
}

static void test_sgd(void)
{
    fv_optim_cfg_t c = base_cfg(FV_OPT_SGD);
    fv_optim_t *o = NULL;
    CHECK_OK(fv_optim_new(&c, N, &o), NULL);
    float p[N];
    memcpy(p, theta0, sizeof p);

    /* Step 1, g = grad + 0.5 * mask * theta + 0.25 * (theta - ref):
     *   g = [0.1 + 0.5 + 0.25, 0.2 - 1 - 0.5, -0.3 + 0 - 0.125, 0] = [0.85, -1.3, -0.425, 0]
     *   v = g;  theta -= 0.1 v  ->  [0.915, -1.87, 0.5425, 4] */
    fv_optim_step(o, p, grad0, mask0);
    CHECK_NEAR(p[0], 0.915, 1e-6);
    CHECK_NEAR(p[1], -1.87, 1e-6);
    CHECK_NEAR(p[2], 0.5425, 1e-6);
    CHECK_NEAR(p[3], 4.0, 0);
    check_tail_matches_body(p);

    /* Step 2, momentum accumulates (v = 0.9 v + g):
     *   g = [0.1 + 0.75 * 0.915, 0.2 - 0.75 * 1.87, -0.3 + 0.25 * (0.5425 - 1), 0]
     *     = [0.78625, -1.2025, -0.414375, 0]
     *   v = [0.765 + 0.78625, -1.17 - 1.2025, -0.3825 - 0.414375, 0]
     *     = [1.55125, -2.3725, -0.796875, 0]
     *   theta = [0.915 - 0.155125, -1.87 + 0.23725, 0.5425 + 0.0796875, 4]
     *         = [0.759875, -1.63275, 0.6221875, 4] */
    fv_optim_step(o, p, grad0, mask0);
    CHECK_NEAR(p[0], 0.759875, 1e-6);
    CHECK_NEAR(p[1], -1.63275, 1e-6);
    CHECK_NEAR(p[2], 0.6221875, 1e-6);
    CHECK_NEAR(p[3], 4.0, 0);
    check_tail_matches_body(p);

    /* Reset forgets the velocity: the next step equals a fresh optimizer's first step. */
    float q[N];
    memcpy(q, p, sizeof q);
    fv_optim_reset(o);
    fv_optim_step(o, p, grad0, mask0);
    fv_optim_t *fresh = NULL;
    CHECK_OK(fv_optim_new(&c, N, &fresh), NULL);
    fv_optim_step(fresh, q, grad0, mask0);
    CHECK(memcmp(p, q, sizeof p) == 0);
    fv_optim_free(fresh);
    fv_optim_free(o);

    /* Plain SGD: no momentum, no decay mask (everything decays), no prox reference
     * (prox_mu is then ignored): theta -= 0.1 * (grad + 0.5 theta) */
    c.momentum = 0.0f;
    c.prox_ref = NULL;
    CHECK_OK(fv_optim_new(&c, N, &o), NULL);
    memcpy(p, theta0, sizeof p);
    fv_optim_step(o, p, grad0, NULL);
    fv_optim_step(o, p, grad0, NULL);
    float want[4];
    for (size_t i = 0; i < 4; i++) {
        double t = theta0[i];
        for (int s = 0; s < 2; s++)
            t -= 0.1 * (grad0[i] + 0.5 * t);
        want[i] = (float)t;
        CHECK_NEAR(p[i], want[i], 1e-6);
    }
    CHECK_NEAR(p[3], 4.0 * 0.95 * 0.95, 1e-6); /* decayed although mask0 says no */
    check_tail_matches_body(p);
    fv_optim_free(o);
}

/* Adam step from the header's formula, in double: the oracle for later steps. */
static void adam_ref(const fv_optim_cfg_t *c, double *th, double *m, double *v, int t,
                     const uint8_t *mask)
{
    for (size_t i = 0; i < N; i++) {
        double g = grad0[i] + c->weight_decay * (mask ? mask[i] : 1) * th[i];
        if (c->prox_ref)
            g += c->prox_mu * (th[i] - c->prox_ref[i]);
        m[i] = c->beta1 * m[i] + (1 - (double)c->beta1) * g;
        v[i] = c->beta2 * v[i] + (1 - (double)c->beta2) * g * g;
        double mh = m[i] / (1 - pow(c->beta1, t)), vh = v[i] / (1 - pow(c->beta2, t));
        th[i] -= c->lr * mh / (sqrt(vh) + c->eps);
    }
}

static void test_adam(void)
{
    fv_optim_cfg_t c = base_cfg(FV_OPT_ADAM); /* betas 0.9 / 0.999, eps 1e-8 */
    fv_optim_t *o = NULL;
    CHECK_OK(fv_optim_new(&c, N, &o), NULL);
    float p[N];
    memcpy(p, theta0, sizeof p);

    /* Step 1: g = [0.85, -1.3, -0.425, 0] as for SGD; m = 0.1 g, v = 0.001 g^2, so after
     * bias correction mhat = g, vhat = g^2 and theta -= 0.1 * g / (|g| + 1e-8), i.e. 0.1
     * against the sign of g (1e-8 moves that by < 1e-9); a zero gradient leaves theta. */
    fv_optim_step(o, p, grad0, mask0);
    CHECK_NEAR(p[0], 0.9, 1e-6);
    CHECK_NEAR(p[1], -1.9, 1e-6);
    CHECK_NEAR(p[2], 0.6, 1e-6);
    CHECK_NEAR(p[3], 4.0, 0);
    check_tail_matches_body(p);

    /* Steps 2..5 against the double oracle. */
    double th[N], m[N] = {0}, v[N] = {0};
    for (size_t i = 0; i < N; i++)
        th[i] = theta0[i];
    adam_ref(&c, th, m, v, 1, mask0);
    for (int t = 2; t <= 5; t++) {
        fv_optim_step(o, p, grad0, mask0);
        adam_ref(&c, th, m, v, t, mask0);
        for (size_t i = 0; i < N; i++)
            CHECK_NEAR(p[i], th[i], 2e-6);
        check_tail_matches_body(p);
    }

    /* Reset: step count and moments forgotten (bias correction restarts at t = 1). */
    float q[N];
    memcpy(q, p, sizeof q);
    fv_optim_reset(o);
    fv_optim_step(o, p, grad0, mask0);
    fv_optim_t *fresh = NULL;
    CHECK_OK(fv_optim_new(&c, N, &fresh), NULL);
    fv_optim_step(fresh, q, grad0, mask0);
    CHECK(memcmp(p, q, sizeof p) == 0);
    fv_optim_free(fresh);
    fv_optim_free(o);

    /* eps where it shows: eps = 0.5, theta -= 0.1 g / (|g| + 0.5):
     *   [1 - 0.085 / 1.35, -2 + 0.13 / 1.8, 0.5 + 0.0425 / 0.925, 4]
     *   = [0.937037037, -1.927777778, 0.545945946, 4] */
    c.eps = 0.5f;
    CHECK_OK(fv_optim_new(&c, N, &o), NULL);
    memcpy(p, theta0, sizeof p);
    fv_optim_step(o, p, grad0, mask0);
    CHECK_NEAR(p[0], 0.937037037, 1e-6);
    CHECK_NEAR(p[1], -1.927777778, 1e-6);
    CHECK_NEAR(p[2], 0.545945946, 1e-6);
    CHECK_NEAR(p[3], 4.0, 0);
    check_tail_matches_body(p);
    fv_optim_free(o);

    /* No mask (all decay), no prox, different betas: against the oracle. */
    c.eps = 1e-8f;
    c.beta1 = 0.5f;
    c.beta2 = 0.75f;
    c.prox_ref = NULL;
    CHECK_OK(fv_optim_new(&c, N, &o), NULL);
    memcpy(p, theta0, sizeof p);
    double th2[N], m2[N] = {0}, v2[N] = {0};
    for (size_t i = 0; i < N; i++)
        th2[i] = theta0[i];
    for (int t = 1; t <= 4; t++) {
        fv_optim_step(o, p, grad0, NULL);
        adam_ref(&c, th2, m2, v2, t, NULL);
        for (size_t i = 0; i < N; i++)
            CHECK_NEAR(p[i], th2[i], 2e-6);
    }
    CHECK(p[3] != 4.0f); /* element 3 decays here */
    fv_optim_free(o);
}

/* Vectors of many lengths (so every mix of the 8-wide, 4-wide and scalar paths occurs):
 * every element equals the 7-element result for the same inputs, bit for bit (no
 * dependence on position, alignment or length). */
static void test_lengths(void)
{
    enum { M = 1001 };
    static float p[M], g[M], r[M];
    static uint8_t mk[M];
    static const size_t lens[] = {1, 3, 4, 5, 8, 9, 12, 13, 15, 16, 17, 31, M};
    fv_optim_cfg_t c = base_cfg(FV_OPT_ADAM);
    fv_optim_t *small = NULL;
    CHECK_OK(fv_optim_new(&c, N, &small), NULL);
    float q[N];
    memcpy(q, theta0, sizeof q);
    fv_optim_step(small, q, grad0, mask0);
    fv_optim_step(small, q, grad0, mask0);
    fv_optim_free(small);

    for (int kind = 0; kind < 2; kind++) {
        fv_optim_cfg_t ck = base_cfg(kind ? FV_OPT_ADAM : FV_OPT_SGD);
        float want[N];
        memcpy(want, theta0, sizeof want);
        CHECK_OK(fv_optim_new(&ck, N, &small), NULL);
        fv_optim_step(small, want, grad0, mask0);
        fv_optim_step(small, want, grad0, mask0);
        fv_optim_free(small);
        if (kind)
            CHECK(memcmp(want, q, sizeof q) == 0);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li];
            for (size_t i = 0; i < n; i++) {
                p[i] = theta0[i % N];
                g[i] = grad0[i % N];
                mk[i] = mask0[i % N];
                r[i] = ref0[i % N];
            }
            ck.prox_ref = r;
            fv_optim_t *o = NULL;
            CHECK_OK(fv_optim_new(&ck, n, &o), NULL);
            fv_optim_step(o, p, g, mk);
            fv_optim_step(o, p, g, mk);
            for (size_t i = 0; i < n; i++)
                CHECK(memcmp(&p[i], &want[i % N], sizeof want[0]) == 0);
            fv_optim_free(o);
        }
    }
}

static void check_bad(const fv_optim_cfg_t *c, const char *field)
{
    fv_diag_t d;
    d.msg[0] = '\0';
    CHECK_INT_EQ(fv_optim_cfg_check(c, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, field);
    fv_optim_t *o = NULL;
    CHECK_INT_EQ(fv_optim_new(c, 10, &o), FV_EINVAL);
    CHECK(o == NULL);
}

static void test_cfg(void)
{
    fv_optim_cfg_t c;
    fv_optim_cfg_default(&c);
    CHECK_INT_EQ(c.kind, FV_OPT_ADAM);
    CHECK(c.lr == 1e-3f && c.momentum == 0.9f && c.beta1 == 0.9f && c.beta2 == 0.999f);
    CHECK(c.eps == 1e-8f && c.weight_decay == 0.01f && c.prox_mu == 0.0f);
    CHECK(c.prox_ref == NULL);
    fv_diag_t d;
    fv_diag_t *dp = &d;
    CHECK_OK(fv_optim_cfg_check(&c, dp), dp);

    fv_optim_cfg_t b;
    b = c, b.lr = 0.0f;
    check_bad(&b, "lr = 0");
    b = c, b.lr = -1e-3f;
    check_bad(&b, "lr = -0.001: must be finite and > 0");
    b = c, b.lr = NAN;
    check_bad(&b, "lr");
    b = c, b.lr = INFINITY;
    check_bad(&b, "lr");
    b = c, b.beta1 = 1.0f;
    check_bad(&b, "beta1 = 1: must be in [0, 1)");
    b = c, b.beta1 = -0.1f;
    check_bad(&b, "beta1");
    b = c, b.beta2 = 1.0f;
    check_bad(&b, "beta2");
    b = c, b.momentum = 1.0f;
    check_bad(&b, "momentum");
    b = c, b.eps = 0.0f;
    check_bad(&b, "eps");
    b = c, b.weight_decay = -0.01f;
    check_bad(&b, "weight_decay = -0.01: must be finite and >= 0");
    b = c, b.weight_decay = NAN;
    check_bad(&b, "weight_decay");
    b = c, b.prox_mu = -1.0f;
    check_bad(&b, "prox_mu");
    b = c, b.kind = (fv_opt_kind_t)7;
    check_bad(&b, "kind");
    CHECK_INT_EQ(fv_optim_cfg_check(NULL, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_optim_cfg_check(&b, NULL), FV_EINVAL); /* d may be NULL */

    /* Edge values that are allowed. */
    b = c, b.beta1 = 0.0f, b.momentum = 0.0f, b.weight_decay = 0.0f;
    CHECK_OK(fv_optim_cfg_check(&b, dp), dp);

    fv_optim_t *o = NULL;
    CHECK_INT_EQ(fv_optim_new(&c, 0, &o), FV_EINVAL);
    CHECK_INT_EQ(fv_optim_new(NULL, 3, &o), FV_EINVAL);
    fv_optim_free(NULL);
}

/* fv_optim_step_part: a step split into ranges (odd cuts, so elements change between the
 * AVX2, SSE2 and scalar paths) is the whole step bit for bit, for SGD and Adam, with the
 * mask and the proximal term. */
static void test_step_part(void)
{
    enum { P = 203 };
    static float th[P], g[P], ref[P], a[P], b[P];
    static uint8_t mask[P];
    fv_rng_t r;
    fv_rng_seed(&r, 42);
    for (size_t i = 0; i < P; i++) {
        th[i] = (float)fv_rng_normal(&r);
        ref[i] = (float)fv_rng_normal(&r);
        mask[i] = (uint8_t)(i % 5 != 0);
    }
    static const size_t cuts[] = {0, 3, 17, 64, 65, 150, 203};
    for (int kind = 0; kind < 2; kind++) {
        fv_optim_cfg_t c = base_cfg(kind == 0 ? FV_OPT_SGD : FV_OPT_ADAM);
        c.prox_ref = ref;
        c.prox_mu = 0.25f;
        fv_optim_t *whole = NULL, *split = NULL;
        CHECK_OK(fv_optim_new(&c, P, &whole), NULL);
        CHECK_OK(fv_optim_new(&c, P, &split), NULL);
        memcpy(a, th, sizeof th);
        memcpy(b, th, sizeof th);
        for (uint64_t t = 1; t <= 3; t++) {
            for (size_t i = 0; i < P; i++)
                g[i] = (float)fv_rng_normal(&r);
            fv_optim_step(whole, a, g, mask);
            for (size_t k = 0; k + 1 < sizeof cuts / sizeof cuts[0]; k++)
                fv_optim_step_part(split, t, b, g, mask, cuts[k], cuts[k + 1]);
            CHECK(memcmp(a, b, sizeof a) == 0);
        }
        fv_optim_free(whole);
        fv_optim_free(split);
    }
}

int main(void)
{
    test_step_part();
    test_sgd();
    test_adam();
    test_lengths();
    test_cfg();
    puts("ok");
    return 0;
}
