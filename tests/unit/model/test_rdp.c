/* test_rdp.c - the privacy accountant (fv_rdp.h) against the reference libraries' own test
 * vectors, plus properties that must hold whatever the vectors say.
 *
 * Sources (each test cites its file, test name and the commit read):
 *   Opacus             github.com/pytorch/opacus @ 4d0ebc84613d214fbfd37fbfd1390e3747a625ce
 *                      opacus/tests/accountants_test.py
 *   TensorFlow Privacy github.com/tensorflow/privacy @ 03035d5d4a271ac795dab80f5bc1cef82fc3d462
 *                      tensorflow_privacy/privacy/analysis/compute_dp_sgd_privacy_test.py
 *                      (compute_dp_sgd_privacy in compute_dp_sgd_privacy_lib.py: its order grid
 *                      and steps = ceil(epochs * n / batch); it calls dp_accounting's RDP)
 *   dp_accounting      github.com/google/differential-privacy @
 *                      b5b0286e313b64a692abfc8c528d54ef47d960a0
 *                      python/dp_accounting/dp_accounting/rdp/rdp_privacy_accountant_test.py
 * Tolerances are the tests' own: Python's assertAlmostEqual is 7 decimal places
 * (|diff| < 5e-8), places=4 is 5e-5, np.allclose(rtol=r) is |diff| <= 1e-8 + r |expected|.
 * dp_accounting's vector at order 1.5 is matched by fv_rdp_sgm_abs (dp_accounting's own
 * summation); fv_rdp_sgm, the agents' (Opacus' summation), is 3% below it, as an mpmath
 * quadrature says it should be. TF's Test2 is met to 7e-14 relative, not 7 places: below.
 */
#include <math.h>
#include <stdint.h>

#include "fv_rdp.h"
#include "fv_test.h"

/* np.allclose / assert_allclose: |a - b| <= atol + rtol |b|. */
#define CHECK_CLOSE(a, b, rtol, atol) CHECK_NEAR((a), (b), (atol) + (rtol)*fabs((double)(b)))

/* compute_dp_sgd_privacy's orders (compute_dp_sgd_privacy_lib.py). */
static const double tf_orders[] = {
    1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5, 5,  6,  7,  8,  9,  10,  11,  12,
    13,   14,  15,   16,  17,   18,  19,  20,  21,  22,  23, 24, 25, 26, 27, 28,  29,  30,
    31,   32,  33,   34,  35,   36,  37,  38,  39,  40,  41, 42, 43, 44, 45, 46,  47,  48,
    49,   50,  51,   52,  53,   54,  55,  56,  57,  58,  59, 60, 61, 62, 63, 128, 256, 512};
#define N_TF (sizeof tf_orders / sizeof tf_orders[0])

static void test_default_grid(void)
{
    double g[FV_RDP_MAX_ORDERS];
    size_t n = fv_rdp_orders_default(g, FV_RDP_MAX_ORDERS);
    /* Opacus RDPAccountant.DEFAULT_ALPHAS: 99 of 1 + x/10, then 12..63. */
    CHECK_UINT_EQ(n, 151);
    CHECK(g[0] == 1.1 && g[98] == 1.0 + 99 / 10.0 && g[99] == 12.0 && g[150] == 63.0);
    CHECK_UINT_EQ(fv_rdp_orders_default(NULL, 0), 151);
    double small[3] = {0, 0, 0};
    CHECK_UINT_EQ(fv_rdp_orders_default(small, 2), 151);
    CHECK(small[2] == 0.0);
}

/* Opacus, accountants_test.py, AccountingTest.test_rdp_accountant (and
 * test_accountant_load_state_dict, same value): sigma 1.5, q 0.04, int(90 / 0.04) = 2250
 * steps, delta 1e-5, default alphas -> 7.32911117143 (assertAlmostEqual, 7 places). */
static void test_opacus_epsilon(void)
{
    double eps, order;
    CHECK_OK(fv_rdp_sgm_epsilon(0.04, 1.5, 2250, NULL, 0, 1e-5, &eps, &order), NULL);
    CHECK_NEAR(eps, 7.32911117143, 5e-8);
    CHECK(order == 3.9); /* fractional: the two-series path decides the vector */
}

/* Opacus, accountants_test.py, test_get_noise_multiplier_rdp_epochs: eps 8, delta 1e-5,
 * q 0.04, 90 epochs (2250 steps), epsilon_tolerance 0.01 -> 1.416 (4 places); and
 * test_get_noise_multiplier_rdp_steps: 2000 steps -> 1.3562 (4 places). */
static void test_opacus_calibrate(void)
{
    double sigma, eps;
    CHECK_OK(fv_rdp_calibrate(0.04, 2250, 8.0, 1e-5, NULL, 0, 0.01, &sigma), NULL);
    CHECK_NEAR(sigma, 1.416, 5e-5);
    CHECK_OK(fv_rdp_sgm_epsilon(0.04, sigma, 2250, NULL, 0, 1e-5, &eps, NULL), NULL);
    CHECK(eps >= 7.99 && eps <= 8.0);
    CHECK_OK(fv_rdp_calibrate(0.04, 2000, 8.0, 1e-5, NULL, 0, 0.01, &sigma), NULL);
    CHECK_NEAR(sigma, 1.3562, 5e-5);
}

/* TF Privacy, compute_dp_sgd_privacy_test.py, ComputeDpSgdPrivacyTest.
 * test_compute_dp_sgd_privacy, named parameters Test0..Test2 (eps: assertAlmostEqual, 7
 * places; order: assertEqual). q = batch / n, steps = ceil(epochs * n / batch). */
static void test_tf_privacy(void)
{
    double eps, order;
    /* Test0: n 60000, batch 150, sigma 1.3, 15 epochs, delta 1e-5. */
    CHECK_OK(fv_rdp_sgm_epsilon(150.0 / 60000, 1.3, 6000, tf_orders, N_TF, 1e-5, &eps, &order),
             NULL);
    CHECK_NEAR(eps, 0.7242234026109595, 5e-8);
    CHECK(order == 19.0);
    /* Test1: n 100000, batch 100, sigma 1.0, 30 epochs, delta 1e-7. */
    CHECK_OK(fv_rdp_sgm_epsilon(100.0 / 100000, 1.0, 30000, tf_orders, N_TF, 1e-7, &eps, &order),
             NULL);
    CHECK_NEAR(eps, 1.4154988495444842, 5e-8);
    CHECK(order == 13.0);
    /* Test2: n 1e8, batch 1024, sigma 0.1, 10 epochs (976563 steps), delta 1e-7 ->
     * 5907982.3113984 at order 1.25. Seven places on 5.9e6 is 1e-14 relative, below what
     * either summation order resolves; dp_accounting also adds the MAGNITUDES of the
     * fractional series' negative terms (see rdp.c's note), so its value is the larger.
     * We agree to 3e-12 relative: checked at 1e-9 relative, and from below. */
    CHECK_OK(fv_rdp_sgm_epsilon(1024.0 / 1e8, 0.1, 976563, tf_orders, N_TF, 1e-7, &eps, &order),
             NULL);
    CHECK_CLOSE(eps, 5907982.3113984, 1e-9, 0.0);
    CHECK(eps <= 5907982.3113984);
    CHECK(order == 1.25);
    /* ... and with dp_accounting's own summation (fv_rdp_sgm_abs), the library TF Privacy
     * calls: 5907982.3113988, 4e-7 (7e-14 relative, some hundred ulps of a sum of ~1e6
     * rounded terms) from the file's value: seven places are below what double arithmetic
     * in another summation order resolves. Checked at 1e-12 relative. */
    double rdp[N_TF];
    for (size_t i = 0; i < N_TF; i++)
        rdp[i] = 976563.0 * fv_rdp_sgm_abs(1024.0 / 1e8, 0.1, tf_orders[i]);
    CHECK_OK(fv_rdp_epsilon(tf_orders, rdp, N_TF, 1e-7, &eps, &order), NULL);
    printf("TF Test2 with dp_accounting's summation: %.7f (file 5907982.3113984)\n", eps);
    CHECK_CLOSE(eps, 5907982.3113984, 1e-12, 0.0);
    CHECK(order == 1.25);
}

/* dp_accounting, rdp_privacy_accountant_test.py,
 * RdpPrivacyAccountantTest.test_compute_rdp_poisson_sampled_gaussian: q 0.01, sigma 2.5,
 * 50 steps, orders 1.5, 2.5, 5, 50, 100 (and inf, which our API refuses), np.allclose with
 * rtol 1e-4. Orders 2.5..100 match. Order 1.5 does NOT: the file's 6.70579741e-04 is
 * dp_accounting's own fractional series, which adds |negative terms| (an upper bound 3%
 * above the true value there). The true value, by the file's own check
 * (_compute_a_mp: mpmath quadrature of A_alpha, test_compute_log_a_equals_mp, rtol 1e-4),
 * is 50 * log(A) / 0.5 with log(A) = 6.500708971867387e-06 (mpmath, 30 digits, computed
 * with that function): we match that, and stay below dp_accounting's bound. Opacus' signed
 * series gives 6.500708974e-06 too. */
static void test_dp_accounting_vector(void)
{
    static const double orders[] = {1.5, 2.5, 5, 50, 100};
    static const double expect[] = {6.70579741e-04, 1.08548710e-03, 2.18075656e-03, 2.38460375e-02,
                                    1.67416308e02};
    double rdp[5];
    CHECK_OK(fv_rdp_sgm_curve(0.01, 2.5, 50, orders, 5, rdp), NULL);
    for (size_t i = 1; i < 5; i++)
        CHECK_CLOSE(rdp[i], expect[i], 1e-4, 1e-8);
    CHECK_CLOSE(rdp[0], 50 * 6.500708971867387e-06 / 0.5, 1e-4, 1e-8);
    CHECK(rdp[0] < expect[0]);
    /* dp_accounting's own summation (fv_rdp_sgm_abs): every value of the file, order 1.5
     * included, to the file's tolerance (np.allclose, rtol 1e-4, atol 1e-8). */
    for (size_t i = 0; i < 5; i++)
        CHECK_CLOSE(50.0 * fv_rdp_sgm_abs(0.01, 2.5, orders[i]), expect[i], 1e-4, 1e-8);
    double inf_order = INFINITY;
    CHECK_INT_EQ(fv_rdp_sgm_curve(0.01, 2.5, 50, &inf_order, 1, rdp), FV_EINVAL);
}

/* dp_accounting, rdp_privacy_accountant_test.py, test_compute_log_a_equals_mp: log(A) of
 * the series against the file's mpmath quadrature (_compute_a_mp, values computed with that
 * function verbatim), assert_allclose rtol 1e-4, atol 1e-8. The extremes of both series:
 * alpha 1.01, 256.1, q 1e-7 and 0.999, sigma 0.1 and 100. */
static void test_dp_accounting_log_a(void)
{
    static const struct {
        double q, sigma, order, log_a_mp;
    } p[] = {
        {1e-7, 0.1, 1.01, 4.003415962982348e-08}, {1e-6, 0.1, 256, 3260234.5099259755},
        {1e-5, 0.1, 256.1, 3263356.2822869574},   {1e-6, 1, 27, 8.769502897783603e-10},
        {1e-4, 1.0, 1.5, 6.442687029768869e-09},  {1e-3, 1.0, 2, 1.7182803521333247e-06},
        {0.01, 10, 20, 0.00019129699912815486},   {0.1, 100, 20.5, 0.00019991818458118805},
        {0.99, 0.1, 256, 3263768.707742836},      {0.999, 100, 256.1, 3.260108037973113},
    };
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
        double log_a = fv_rdp_sgm(p[i].q, p[i].sigma, p[i].order) * (p[i].order - 1.0);
        CHECK_CLOSE(log_a, p[i].log_a_mp, 1e-4, 1e-8);
    }
}

/* dp_accounting, rdp_privacy_accountant_test.py: test_compute_rdp_gaussian (q = 1 is the
 * Gaussian alpha / (2 sigma^2), 7 places), test_compute_epsilon_delta_pure_dp (orders
 * 2..32, rdp 1.1, delta 1e-5 -> 1.32783806176 at order 32, 7 places),
 * test_compute_epsilon_delta_gaussian (q 1, sigma 4.530877117 "chosen to obtain exactly
 * (1, 1e-6)-DP", orders 0.001 i for i in 1000..99999 -> eps 1, 7 places). That grid has
 * 99000 orders: the minimum is taken over chunks of FV_RDP_MAX_ORDERS; order 1.0 itself is
 * left out (we refuse orders <= 1; dp_accounting gives it eps inf). */
static void test_dp_accounting_conversion(void)
{
    CHECK_NEAR(fv_rdp_sgm(1.0, 2.71828, 3.14159), 3.14159 / (2 * 2.71828 * 2.71828), 5e-8);

    double orders[FV_RDP_MAX_ORDERS], rdp[FV_RDP_MAX_ORDERS], eps, order;
    for (int i = 0; i < 31; i++) {
        orders[i] = 2 + i;
        rdp[i] = 1.1;
    }
    CHECK_OK(fv_rdp_epsilon(orders, rdp, 31, 1e-5, &eps, &order), NULL);
    CHECK_NEAR(eps, 1.32783806176, 5e-8);
    CHECK(order == 32.0);

    double best = INFINITY;
    for (int i = 1001; i < 100000;) {
        size_t n = 0;
        for (; n < FV_RDP_MAX_ORDERS && i < 100000; n++, i++)
            orders[n] = 0.001 * i;
        CHECK_OK(fv_rdp_sgm_curve(1.0, 4.530877117, 1, orders, n, rdp), NULL);
        CHECK_OK(fv_rdp_epsilon(orders, rdp, n, 1e-6, &eps, NULL), NULL);
        best = fmin(best, eps);
    }
    CHECK_NEAR(best, 1.0, 5e-8);
}

/* Properties. */
static void test_sgm_properties(void)
{
    static const double orders[] = {1.1, 1.5, 2, 2.5, 3, 7.3, 12, 32, 63, 128};
    for (size_t k = 0; k < sizeof orders / sizeof orders[0]; k++) {
        double a = orders[k];
        /* q = 1: the plain Gaussian; q = 0: nothing. */
        CHECK(fv_rdp_sgm(1.0, 0.7, a) == a / (2 * 0.7 * 0.7));
        CHECK(fv_rdp_sgm(0.0, 0.7, a) == 0.0);
        /* Monotone: down in sigma, up in q; never above the unsampled Gaussian. */
        double prev = INFINITY;
        for (double s = 0.5; s <= 8.0; s *= 1.5) {
            double r = fv_rdp_sgm(0.05, s, a);
            CHECK(r >= 0.0 && r < prev && r <= a / (2 * s * s));
            prev = r;
        }
        prev = 0.0;
        for (double q = 1e-4; q < 1.0; q *= 3.0) {
            double r = fv_rdp_sgm(q, 1.1, a);
            CHECK(r > prev);
            prev = r;
        }
    }
    /* The two expansions agree where they meet: alpha just off an integer (fractional
     * series) against the integer one; the RDP is smooth in alpha. q = 0.5 puts z0 at 1/2,
     * where the fractional series decays slowest and the term cap with its Leibniz tail
     * bound decides the value. */
    static const double ints[] = {2, 3, 5, 12, 40};
    static const double qs[] = {0.02, 0.5};
    for (size_t k = 0; k < 5; k++) {
        for (size_t m = 0; m < 2; m++) {
            for (double s = 0.8; s <= 60.0; s *= 3.0) {
                double ri = fv_rdp_sgm(qs[m], s, ints[k]);
                double rf = fv_rdp_sgm(qs[m], s, ints[k] + 1e-9);
                double rb = fv_rdp_sgm(qs[m], s, ints[k] - 1e-9);
                CHECK_CLOSE(rf, ri, 1e-6, 1e-15);
                CHECK_CLOSE(rb, ri, 1e-6, 1e-15);
            }
        }
    }
    /* Composition is linear in steps; steps 0 is no release. */
    double a = 4.5, one, many[1];
    one = fv_rdp_sgm(0.01, 1.2, a);
    CHECK_OK(fv_rdp_sgm_curve(0.01, 1.2, 1000, &a, 1, many), NULL);
    CHECK_CLOSE(many[0], 1000 * one, 1e-15, 0.0);
    CHECK_OK(fv_rdp_sgm_curve(0.01, 1.2, 0, &a, 1, many), NULL);
    CHECK(many[0] == 0.0);
}

static void test_conversion_properties(void)
{
    double orders[FV_RDP_MAX_ORDERS], rdp[FV_RDP_MAX_ORDERS], et, ec, ot, oc;
    size_t n = fv_rdp_orders_default(orders, FV_RDP_MAX_ORDERS);
    CHECK_OK(fv_rdp_sgm_curve(0.01, 1.0, 5000, orders, n, rdp), NULL);
    CHECK_OK(fv_rdp_epsilon(orders, rdp, n, 1e-5, &et, &ot), NULL);
    CHECK_OK(fv_rdp_epsilon_classic(orders, rdp, n, 1e-5, &ec, &oc), NULL);
    CHECK(et > 0.0 && et < ec); /* Balle et al. is strictly tighter at every order */
    /* Classic by hand at its order: rdp - log(delta) / (a - 1). */
    for (size_t i = 0; i < n; i++)
        if (orders[i] == oc)
            CHECK_NEAR(ec, rdp[i] - log(1e-5) / (oc - 1), 1e-12);
    /* Larger delta, smaller epsilon. */
    double e2;
    CHECK_OK(fv_rdp_epsilon(orders, rdp, n, 1e-3, &e2, NULL), NULL);
    CHECK(e2 < et);
    /* All-infinite curve: +inf, order NaN; one finite order is picked. */
    for (size_t i = 0; i < n; i++)
        rdp[i] = INFINITY;
    CHECK_OK(fv_rdp_epsilon(orders, rdp, n, 1e-5, &et, &ot), NULL);
    CHECK(et == INFINITY && isnan(ot));
    rdp[7] = 0.5;
    CHECK_OK(fv_rdp_epsilon(orders, rdp, n, 1e-5, &et, &ot), NULL);
    CHECK(isfinite(et) && ot == orders[7]);
    /* Tiny rdp at a large delta: the KL refinement gives 0, never a negative epsilon. */
    rdp[7] = 1e-12;
    CHECK_OK(fv_rdp_epsilon(orders, rdp, n, 0.5, &et, NULL), NULL);
    CHECK(et == 0.0);
}

static void test_calibrate_round_trip(void)
{
    static const struct {
        double q;
        uint64_t steps;
        double eps, delta;
    } c[] = {{0.01, 1000, 1.0, 1e-5},
             {0.05, 300, 3.0, 1e-5},
             {0.2, 50, 8.0, 1e-6},
             {1.0, 10, 2.0, 1e-5},
             {0.001, 100000, 0.5, 1e-7}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        double sigma, eps, eps_below;
        CHECK_OK(fv_rdp_calibrate(c[i].q, c[i].steps, c[i].eps, c[i].delta, NULL, 0, 0.01, &sigma),
                 NULL);
        CHECK_OK(fv_rdp_sgm_epsilon(c[i].q, sigma, c[i].steps, NULL, 0, c[i].delta, &eps, NULL),
                 NULL);
        CHECK(eps <= c[i].eps && eps >= c[i].eps - 0.01);
        /* And a visibly smaller sigma no longer meets the target. */
        CHECK_OK(fv_rdp_sgm_epsilon(c[i].q, sigma * 0.95, c[i].steps, NULL, 0, c[i].delta,
                                    &eps_below, NULL),
                 NULL);
        CHECK(eps_below > c[i].eps);
    }
    /* TF's grid passed in. */
    double sigma, eps;
    CHECK_OK(
        fv_rdp_calibrate(0.0025, 6000, 0.7242234026109595, 1e-5, tf_orders, N_TF, 1e-4, &sigma),
        NULL);
    CHECK_NEAR(sigma, 1.3, 1e-3);
    CHECK_OK(fv_rdp_sgm_epsilon(0.0025, sigma, 6000, tf_orders, N_TF, 1e-5, &eps, NULL), NULL);
    CHECK(eps <= 0.7242234026109595 && eps >= 0.7242234026109595 - 1e-4);
    /* Out of reach: q 1, 2^60 steps, eps 1 needs sigma ~ 5e9 > 2^20. */
    CHECK_INT_EQ(fv_rdp_calibrate(1.0, (uint64_t)1 << 60, 1.0, 1e-5, NULL, 0, 0.01, &sigma),
                 FV_ERANGE);
}

static void test_bad_arguments(void)
{
    double o[2] = {2.0, 3.0}, r[2] = {0.1, 0.2}, out[2], e, s;
    CHECK(isnan(fv_rdp_sgm(-0.1, 1.0, 2.0)));
    CHECK(isnan(fv_rdp_sgm(1.1, 1.0, 2.0)));
    CHECK(isnan(fv_rdp_sgm(NAN, 1.0, 2.0)));
    CHECK(isnan(fv_rdp_sgm(0.1, 0.0, 2.0)));
    CHECK(isnan(fv_rdp_sgm(0.1, INFINITY, 2.0)));
    CHECK(isnan(fv_rdp_sgm(0.1, 1.0, 1.0)));
    CHECK(isnan(fv_rdp_sgm(0.1, 1.0, INFINITY)));

    CHECK_INT_EQ(fv_rdp_sgm_curve(1.5, 1.0, 1, o, 2, out), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_sgm_curve(0.1, -1.0, 1, o, 2, out), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_sgm_curve(0.1, 1.0, 1, NULL, 2, out), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_sgm_curve(0.1, 1.0, 1, o, 2, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_sgm_curve(0.1, 1.0, 1, o, FV_RDP_MAX_ORDERS + 1, out), FV_EINVAL);
    double bad_o[2] = {2.0, 0.5};
    CHECK_INT_EQ(fv_rdp_sgm_curve(0.1, 1.0, 1, bad_o, 2, out), FV_EINVAL);

    CHECK_INT_EQ(fv_rdp_epsilon(o, r, 2, 0.0, &e, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_epsilon(o, r, 2, 1.0, &e, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_epsilon(o, r, 0, 1e-5, &e, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_epsilon(o, NULL, 2, 1e-5, &e, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_epsilon(bad_o, r, 2, 1e-5, &e, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_epsilon_classic(o, r, 2, -1.0, &e, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_sgm_epsilon(0.1, 1.0, 10, NULL, 0, 2.0, &e, NULL), FV_EINVAL);

    CHECK_INT_EQ(fv_rdp_calibrate(0.0, 100, 1.0, 1e-5, NULL, 0, 0.01, &s), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_calibrate(0.1, 0, 1.0, 1e-5, NULL, 0, 0.01, &s), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_calibrate(0.1, 100, 0.0, 1e-5, NULL, 0, 0.01, &s), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_calibrate(0.1, 100, 1.0, 0.0, NULL, 0, 0.01, &s), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_calibrate(0.1, 100, 1.0, 1e-5, NULL, 0, 0.0, &s), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_calibrate(0.1, 100, 1.0, 1e-5, bad_o, 2, 0.01, &s), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_calibrate(0.1, 100, 1.0, 1e-5, NULL, 0, 0.01, NULL), FV_EINVAL);

    CHECK(isnan(fv_rdp_ddg_rho(-1.0, 1.0, 100.0, 3, 10)));
    CHECK(isnan(fv_rdp_ddg_rho(1.0, 1.0, 0.1, 3, 10)));
    CHECK(isnan(fv_rdp_ddg_rho(1.0, 1.0, 100.0, 0, 10)));
    CHECK(isnan(fv_rdp_ddg_rho(1.0, 1.0, 100.0, 3, 0)));
    CHECK(isnan(fv_rdp_ddg_rho(1.0, NAN, 100.0, 3, 10)));

    CHECK_INT_EQ(fv_rdp_subsampled_zcdp_curve(-0.5, 0.1, 1, o, 2, out), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_subsampled_zcdp_curve(0.5, -0.1, 1, o, 2, out), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_subsampled_zcdp_curve(0.5, 0.1, 1, bad_o, 2, out), FV_EINVAL);
    CHECK_INT_EQ(fv_rdp_subsampled_zcdp_curve(0.5, 0.1, 1, o, 2, NULL), FV_EINVAL);
}

/* Kairouz, Liu, Steinke 2021, Prop. 14 (rdp.c's note): hand values. */
static void test_ddg_rho(void)
{
    /* One agent: tau = 0, the single discrete Gaussian, D2^2 / (2 s2). */
    CHECK_NEAR(fv_rdp_ddg_rho(3.0, 9.0, 2.0, 1, 100), 9.0 / 4.0, 1e-15);
    /* Large s2: tau underflows to 0 for n agents: D2^2 / (2 n s2). */
    CHECK_NEAR(fv_rdp_ddg_rho(40.0, 400.0, 1e4, 5, 1000), 1600.0 / (2 * 5 * 1e4), 1e-15);
    /* s2 = 1, n = 3: tau = 10 (exp(-pi^2) + exp(-4 pi^2 / 3)), d = 4, D2 = 2, D1 = 3:
     * terms 4/6 + 4 tau, (4/3 + 2 tau 3/sqrt3 + 4 tau^2)/2, (2/sqrt3 + 2 tau)^2 / 2. */
    double tau = 10.0 * (exp(-M_PI * M_PI) + exp(-4.0 * M_PI * M_PI / 3.0));
    double t1 = 4.0 / 6.0 + 4.0 * tau;
    double t2 = (4.0 / 3.0 + 2.0 * tau * 3.0 / sqrt(3.0) + 4.0 * tau * tau) / 2.0;
    double t3 = (2.0 / sqrt(3.0) + 2.0 * tau) * (2.0 / sqrt(3.0) + 2.0 * tau) / 2.0;
    CHECK_NEAR(fv_rdp_ddg_rho(2.0, 3.0, 1.0, 3, 4), fmin(t1, fmin(t2, t3)), 1e-15);
    CHECK(fv_rdp_ddg_rho(2.0, 3.0, 1.0, 3, 4) > 4.0 / 6.0); /* tau costs something */
    /* dim 1, D2 = D1 = 3: the first bound is the least, 9/6 + tau whole (not tau / 2: the
     * proposition's tau d is not scaled by alpha). */
    CHECK_NEAR(fv_rdp_ddg_rho(3.0, 3.0, 1.0, 3, 1), 1.5 + tau, 1e-15);
    /* A huge n (a bad config, not a real job): tau's sum is cut at 1e6 terms with the rest
     * bounded by the last, so this returns at once, finite. */
    double big = fv_rdp_ddg_rho(2.0, 3.0, 0.25, (uint64_t)1 << 40, 4);
    CHECK(isfinite(big) && big > 0.0);
    /* More honest agents, less rho. */
    CHECK(fv_rdp_ddg_rho(2.0, 3.0, 10.0, 5, 4) < fv_rdp_ddg_rho(2.0, 3.0, 10.0, 4, 4));
}

/* Zhu & Wang 2019, Thm 5 for a rho-zCDP mechanism (rdp.c's note). */
static void test_subsampled_zcdp(void)
{
    static const double orders[] = {2, 3, 4, 8, 16, 32, 64, 2.5};
    const size_t n = sizeof orders / sizeof orders[0];
    double full[8], sub[8];
    const double rho = 0.08;
    CHECK_OK(fv_rdp_subsampled_zcdp_curve(1.0, rho, 7, orders, n, full), NULL);
    for (size_t i = 0; i + 1 < n; i++)
        CHECK(full[i] == 7 * orders[i] * rho);
    CHECK(full[n - 1] == INFINITY); /* not an integer: out of the minimum */
    for (double q = 0.001; q < 1.0; q *= 4.0) {
        CHECK_OK(fv_rdp_subsampled_zcdp_curve(q, rho, 7, orders, n, sub), NULL);
        for (size_t i = 0; i + 1 < n; i++)
            CHECK(sub[i] >= 0.0 && sub[i] <= full[i]);
    }
    /* Real amplification at small q: at q 0.01 the low orders shrink by more than 10x. */
    CHECK_OK(fv_rdp_subsampled_zcdp_curve(0.01, rho, 7, orders, n, sub), NULL);
    CHECK(sub[0] < full[0] / 10 && sub[1] < full[1] / 10);
    /* A general bound is no tighter than the exact one: for the Gaussian
     * (rho = 1 / (2 sigma^2)) it must lie above the sampled Gaussian's own RDP. */
    const double sigma = 2.5;
    CHECK_OK(fv_rdp_subsampled_zcdp_curve(0.01, 1.0 / (2 * sigma * sigma), 1, orders, n - 1, sub),
             NULL);
    for (size_t i = 0; i + 1 < n; i++)
        CHECK(sub[i] >= fv_rdp_sgm(0.01, sigma, orders[i]) * (1 - 1e-12));
    /* q = 0 or rho = 0: nothing. */
    CHECK_OK(fv_rdp_subsampled_zcdp_curve(0.0, rho, 7, orders, n - 1, sub), NULL);
    CHECK(sub[0] == 0.0 && sub[n - 2] == 0.0);
}

int main(void)
{
    test_default_grid();
    test_opacus_epsilon();
    test_opacus_calibrate();
    test_tf_privacy();
    test_dp_accounting_vector();
    test_dp_accounting_log_a();
    test_dp_accounting_conversion();
    test_sgm_properties();
    test_conversion_properties();
    test_calibrate_round_trip();
    test_bad_arguments();
    test_ddg_rho();
    test_subsampled_zcdp();
    return 0;
}
