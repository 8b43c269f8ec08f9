/* rdp.c - the privacy accountant (fv_rdp.h): Rényi DP of the Poisson-subsampled Gaussian,
 * conversion to (epsilon, delta), calibration, and the distributed discrete Gaussian.
 *
 * Purpose. Turn (q, sigma, steps, delta) into the epsilon an agent is charged, and back.
 * Every number here is an UPPER bound on the privacy loss: where a series is cut, the cut
 * tail is bounded and added, never dropped; where a computation cannot be trusted (NaN from
 * an extreme argument), the order gets +inf, which only removes it from the minimum.
 *
 * 1. One step of the sampled Gaussian (Mironov, Talwar, Zhang 2019, Sec. 3.3). With
 *    mu0 = N(0, sigma^2), mu1 = N(1, sigma^2), mu = (1 - q) mu0 + q mu1, the RDP at order
 *    alpha is log(A_alpha) / (alpha - 1), A_alpha = E_{z ~ mu0} [(mu(z) / mu0(z))^alpha].
 *    Integer alpha: the binomial expansion, alpha + 1 positive terms, exact:
 *      A = sum_{i=0..alpha} C(alpha, i) q^i (1 - q)^(alpha - i) exp((i^2 - i) / (2 sigma^2)).
 *    Fractional alpha: split the integral at z0 = sigma^2 log(1/q - 1) + 1/2 (where
 *    q mu1 = (1 - q) mu0) and expand each half; with j = alpha - i and
 *    E0(i) = erfc((i - z0) / (sqrt2 sigma)) / 2, E1(i) = erfc((z0 - j) / (sqrt2 sigma)) / 2:
 *      A = sum_{i>=0} C(alpha, i) [ q^i (1-q)^j exp((i^2 - i)/(2 sigma^2)) E0(i)
 *                                 + q^j (1-q)^i exp((j^2 - j)/(2 sigma^2)) E1(i) ].
 *    Both terms are computed in log space (log erfc below) and summed by a streaming
 *    log-sum-exp, positive and negative terms apart. Where the series is cut, and why that
 *    is safe: completing the square, each bracketed term equals (1-q)^alpha
 *    exp(-z0^2 / (2 sigma^2)) / sqrt(2 pi) times the Gaussian Mills ratio at (i - z0) / sigma
 *    (resp. (z0 - j) / sigma), which DEcreases as i grows; |C(alpha, i)| decreases
 *    for i >= (alpha - 1) / 2, and from i = floor(alpha) + 2 on the signs alternate. So
 *    from there on both series are alternating with decreasing magnitudes (Leibniz): the
 *    whole cut tail is at most the last computed term. We stop once the last terms are
 *    below exp(-40) of the running positive sum (under double rounding) and ADD their
 *    magnitudes as the tail bound; the cap of RDP_FRAC_MAX_TERMS terms (the series decays
 *    only polynomially, like i^-(alpha+2), for q near 1/2 and large sigma) keeps the same
 *    bound, just looser (q = 1/2 exactly, z0 = 1/2, hits the cap at alpha near 1; the slack
 *    left is far below 1e-10 of A there). Opacus sums the signed series (cut at an absolute
 *    -30) and agrees with us; dp_accounting adds the magnitudes of the negative terms too,
 *    a looser upper bound (3% above the true value at q 0.01, sigma 2.5, alpha 1.5; see
 *    test_rdp.c).
 *    Orders above RDP_SERIES_MAX_ORDER (no practical use) get the convexity bound
 *    A <= 1 - q + q exp(alpha (alpha - 1) / (2 sigma^2)) instead of a series that long.
 *    log C(alpha, i) is summed term by term (log|alpha - i + 1| - log i): no lgamma, whose
 *    sign output is a global (signgam), so the code stays thread-safe.
 *    log erfc(x): log(erfc(x)) while erfc is a normal double (x < 25), else the asymptotic
 *    series erfc(x) = exp(-x^2) / (x sqrt(pi)) (1 - 1/(2x^2) + 3/(4x^4) - ...), cut after
 *    the x^-12 term (relative error < 1e-17 at x >= 25).
 * 2. Conversion (Balle et al. 2020, Theorem 21; Opacus and dp_accounting):
 *      eps = min_a rdp(a) + log1p(-1/a) - (log(delta) + log(a)) / (a - 1),
 *    plus dp_accounting's two refinements: an order whose rdp r has delta >= sqrt(1 - e^-r)
 *    gives eps 0 (total variation bound via KL <= r), and eps is clamped at 0. A negative
 *    rdp (rounding) counts as 0, NaN as +inf. Classic (Mironov 2017, Prop. 3):
 *    eps = min_a rdp(a) - log(delta) / (a - 1).
 * 3. Calibration: Opacus' get_noise_multiplier step for step (sigma_high from 10 doubled
 *    until its epsilon is <= target, then bisection on [0, sigma_high] keeping the upper end
 *    with epsilon < target, until target - eps_high <= tol), so its test vectors come out
 *    to the last bit of the bisection. Doubling stops at 2^20 (FV_ERANGE); the bisection
 *    stops after RDP_BISECT_MAX halvings (the interval is then below double resolution;
 *    this only happens where epsilon jumps over the window, e.g. at the KL refinement's
 *    switch to 0) and returns the upper end: its epsilon is <= target, always.
 * 4. Distributed discrete Gaussian (Kairouz, Liu, Steinke 2021, "The Distributed Discrete
 *    Gaussian Mechanism for Federated Learning with Secure Aggregation", Proposition 14, as
 *    the authors' accounting code implements it: google-research/federated,
 *    distributed_dp/accounting_utils.py, compute_rdp_dgaussian). The theorem as read: n
 *    independent N_Z(0, s2)^d (s2 >= 1/4) summed hide a change Delta (integer vector) with
 *      D_alpha <= min{ alpha D2^2 / (2 n s2) + tau d,
 *                      alpha/2 (D2^2 / (n s2) + 2 tau D1 / sqrt(n s2) + tau^2 d),
 *                      alpha/2 (D2 / sqrt(n s2) + tau sqrt(d))^2 },
 *      tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s2 k / (k + 1)),  D2 = |Delta|_2, D1 = |Delta|_1.
 *    The first term's tau d is NOT multiplied by alpha; for one rho valid at every order
 *    alpha >= 1 it becomes tau d inside rho (alpha x + tau d <= alpha (x + tau d)). So
 *      rho = min{ D2^2/(2 n s2) + tau d, (D2^2/(n s2) + 2 tau D1/sqrt(n s2) + tau^2 d)/2,
 *                 (D2/sqrt(n s2) + tau sqrt(d))^2 / 2 }.
 *    n = 1: tau = 0 and rho = D2^2 / (2 s2), the single discrete Gaussian (Canonne, Kamath,
 *    Steinke 2020). We read Proposition 14 through that code, not the paper's proof.
 * 5. Subsampled rho-zCDP (Zhu and Wang 2019, "Poisson Subsampled Rényi Differential
 *    Privacy", Theorem 5, the general upper bound; the same code above implements it as
 *    _compute_rdp_subsampled(upper_bound=True)). For integer alpha >= 2 and a mechanism
 *    with RDP eps(l) = l rho, (alpha - 1) RDP <= log of
 *        (1-q)^(alpha-1) (1 + (alpha-1) q)
 *      + C(alpha,2) q^2 (1-q)^(alpha-2) exp(eps(2))
 *      + 3 sum_{l=3..alpha} C(alpha,l) q^l (1-q)^(alpha-l) exp((l-1) eps(l)).
 *    The unsampled alpha rho is a bound too (Rényi divergence is jointly quasi-convex and
 *    the sampled pair is a mixture of (P, P) and (Q, P)): we take the minimum, which is
 *    exactly alpha rho at q = 1. Integer orders above RDP_SERIES_MAX_ORDER get alpha rho.
 *
 * Invariants: results are upper bounds (above); fv_rdp_sgm is 0 at q = 0 and
 * alpha / (2 sigma^2) at q = 1 exactly. Threading: pure functions, no globals, no
 * allocation (the curve buffers live on the stack, FV_RDP_MAX_ORDERS doubles). Ownership:
 * every pointer is borrowed; out-arrays and ret_* are written only on success.
 */
#include <math.h>
#include <stdbool.h>

#include "fv_rdp.h"

#define RDP_SERIES_MAX_ORDER 100000.0 /* above: the convexity bound */
#define RDP_FRAC_MAX_TERMS 100000     /* fractional series cap (tail still bounded) */
#define RDP_FRAC_CUT 40.0             /* stop below exp(-40) of the running sum */
#define RDP_SIGMA_MAX 1048576.0       /* calibration: 2^20 */
#define RDP_BISECT_MAX 200
#define RDP_TAU_TERMS 1000000                  /* DDG's tau: summed exactly up to here */
#define RDP_LOG_SQRT_PI 0.57236494292470008707 /* log(sqrt(pi)) */

/* A streaming log-sum-exp: value = m + log(s). Empty: m = -inf. */
typedef struct {
    double m, s;
} lse_t;

static void lse_init(lse_t *a)
{
    a->m = -INFINITY;
    a->s = 0.0;
}

static void lse_add(lse_t *a, double t)
{
    if (t == -INFINITY)
        return;
    if (t > a->m) {
        a->s = (a->m == -INFINITY ? 0.0 : a->s * exp(a->m - t)) + 1.0;
        a->m = t;
    } else {
        a->s += exp(t - a->m);
    }
}

static double lse_value(const lse_t *a)
{
    return a->m == -INFINITY ? -INFINITY : a->m + log(a->s);
}

/* log(erfc(x)) without underflow for large x (see the note). */
static double log_erfc(double x)
{
    if (x < 25.0)
        return log(erfc(x));
    double r = 1.0 / (x * x); /* x^-2 */
    /* 1 - 1/2 r + 3/4 r^2 - 15/8 r^3 + 105/16 r^4 - 945/32 r^5 + 10395/64 r^6 */
    double s =
        r * (-0.5 + r * (0.75 + r * (-1.875 + r * (6.5625 + r * (-29.53125 + r * 162.421875)))));
    return -x * x - log(x) - RDP_LOG_SQRT_PI + log1p(s);
}

static bool is_integer(double a)
{
    return a == floor(a);
}

/* log(A_alpha), integer alpha in [2, RDP_SERIES_MAX_ORDER], 0 < q < 1. */
static double log_a_int(double q, double sigma, double alpha)
{
    double lq = log(q), l1q = log1p(-q), inv2s2 = 1.0 / (2.0 * sigma * sigma);
    uint64_t n = (uint64_t)alpha;
    double lc = 0.0; /* log C(alpha, i) */
    lse_t acc;
    lse_init(&acc);
    for (uint64_t i = 0; i <= n; i++) {
        double di = (double)i;
        if (i > 0)
            lc += log(alpha - di + 1.0) - log(di);
        lse_add(&acc, lc + di * lq + (alpha - di) * l1q + (di * di - di) * inv2s2);
    }
    return lse_value(&acc);
}

/* log(A_alpha), fractional alpha in (1, RDP_SERIES_MAX_ORDER), 0 < q < 1. abs_neg: the
 * negative terms are added by magnitude (dp_accounting's convention: fv_rdp_sgm_abs). */
static double log_a_frac(double q, double sigma, double alpha, bool abs_neg)
{
    double lq = log(q), l1q = log1p(-q), inv2s2 = 1.0 / (2.0 * sigma * sigma);
    double z0 = sigma * sigma * (l1q - lq) + 0.5;
    double s2s = M_SQRT2 * sigma;
    double alt_from = floor(alpha) + 2.0; /* signs alternate, magnitudes decrease */
    lse_t pos, neg;
    lse_init(&pos);
    lse_init(&neg);
    double lc = 0.0; /* log |C(alpha, i)| */
    bool negative = false;
    double s0 = 0.0, s1 = 0.0;
    for (uint64_t k = 0; k < RDP_FRAC_MAX_TERMS; k++) {
        double i = (double)k, j = alpha - i;
        if (k > 0) {
            double f = alpha - i + 1.0;
            lc += log(fabs(f)) - log(i);
            if (f < 0)
                negative = !negative;
        }
        s0 = lc + i * lq + j * l1q + (i * i - i) * inv2s2 - M_LN2 + log_erfc((i - z0) / s2s);
        s1 = lc + j * lq + i * l1q + (j * j - j) * inv2s2 - M_LN2 + log_erfc((z0 - j) / s2s);
        if (isnan(s0) || isnan(s1))
            return NAN; /* an extreme sigma: the caller turns it into +inf */
        lse_add(negative && !abs_neg ? &neg : &pos, s0);
        lse_add(negative && !abs_neg ? &neg : &pos, s1);
        if (i >= alt_from && fmax(s0, s1) < lse_value(&pos) - RDP_FRAC_CUT)
            break;
    }
    /* The cut tail (Leibniz): at most the last terms' magnitudes. */
    lse_add(&pos, s0);
    lse_add(&pos, s1);
    double lp = lse_value(&pos), ln = lse_value(&neg);
    if (ln == -INFINITY)
        return lp;
    if (!(ln < lp))
        return INFINITY; /* cannot happen for A >= 1; refuse to guess */
    return lp + log1p(-exp(ln - lp));
}

static double sgm(double q, double sigma, double alpha, bool abs_neg)
{
    if (!(q >= 0.0 && q <= 1.0) || !(sigma > 0.0) || !isfinite(sigma) || !(alpha > 1.0) ||
        !isfinite(alpha))
        return NAN;
    if (q == 0.0)
        return 0.0;
    if (q == 1.0)
        return alpha / (2.0 * sigma * sigma);
    double la;
    if (alpha > RDP_SERIES_MAX_ORDER) {
        /* Convexity: A <= (1 - q) + q exp(alpha (alpha - 1) / (2 sigma^2)). */
        lse_t acc;
        lse_init(&acc);
        lse_add(&acc, log1p(-q));
        lse_add(&acc, log(q) + alpha * (alpha - 1.0) / (2.0 * sigma * sigma));
        la = lse_value(&acc);
    } else if (is_integer(alpha)) {
        la = log_a_int(q, sigma, alpha);
    } else {
        la = log_a_frac(q, sigma, alpha, abs_neg);
    }
    if (isnan(la))
        return INFINITY;
    double r = la / (alpha - 1.0);
    return r < 0.0 ? 0.0 : r; /* A >= 1 in exact arithmetic */
}

double fv_rdp_sgm(double q, double sigma, double alpha)
{
    return sgm(q, sigma, alpha, false);
}

double fv_rdp_sgm_abs(double q, double sigma, double alpha)
{
    return sgm(q, sigma, alpha, true);
}

static bool orders_ok(const double *orders, size_t n)
{
    if (n > FV_RDP_MAX_ORDERS || (n > 0 && orders == NULL))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(orders[i] > 1.0) || !isfinite(orders[i]))
            return false;
    return true;
}

size_t fv_rdp_orders_default(double *out, size_t cap)
{
    size_t n = 0;
    for (int x = 1; x <= 99; x++, n++)
        if (out && n < cap)
            out[n] = 1.0 + x / 10.0;
    for (int a = 12; a <= 63; a++, n++)
        if (out && n < cap)
            out[n] = a;
    return n;
}

int fv_rdp_sgm_curve(double q, double sigma, uint64_t steps, const double *orders, size_t n,
                     double *out)
{
    if (!(q >= 0.0 && q <= 1.0) || !(sigma > 0.0) || !isfinite(sigma) || !orders_ok(orders, n) ||
        (n > 0 && out == NULL))
        return FV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        double r = fv_rdp_sgm(q, sigma, orders[i]);
        out[i] = (steps == 0 || r == 0.0) ? 0.0 : (double)steps * r;
    }
    return 0;
}

/* Shared by both conversions: tight selects Balle et al., else Mironov's. */
static int rdp_to_eps(const double *orders, const double *rdp, size_t n, double delta, bool tight,
                      double *ret_eps, double *ret_order)
{
    if (n == 0 || !orders_ok(orders, n) || rdp == NULL || !(delta > 0.0 && delta < 1.0))
        return FV_EINVAL;
    double best = INFINITY, best_order = NAN;
    double ld = log(delta);
    for (size_t i = 0; i < n; i++) {
        double a = orders[i], r = rdp[i];
        if (isnan(r) || r == INFINITY)
            continue;
        if (r < 0.0)
            r = 0.0;
        double e;
        if (!tight)
            e = r - ld / (a - 1.0);
        else if (delta * delta + expm1(-r) > 0.0)
            e = 0.0; /* delta >= sqrt(1 - exp(-KL)) >= total variation */
        else
            e = r + log1p(-1.0 / a) - (ld + log(a)) / (a - 1.0);
        if (e < best) {
            best = e;
            best_order = a;
        }
    }
    if (ret_eps)
        *ret_eps = best < 0.0 ? 0.0 : best;
    if (ret_order)
        *ret_order = best_order;
    return 0;
}

int fv_rdp_epsilon(const double *orders, const double *rdp, size_t n, double delta, double *ret_eps,
                   double *ret_order)
{
    return rdp_to_eps(orders, rdp, n, delta, true, ret_eps, ret_order);
}

int fv_rdp_epsilon_classic(const double *orders, const double *rdp, size_t n, double delta,
                           double *ret_eps, double *ret_order)
{
    return rdp_to_eps(orders, rdp, n, delta, false, ret_eps, ret_order);
}

int fv_rdp_sgm_epsilon(double q, double sigma, uint64_t steps, const double *orders, size_t n,
                       double delta, double *ret_eps, double *ret_order)
{
    double grid[FV_RDP_MAX_ORDERS], curve[FV_RDP_MAX_ORDERS];
    if (orders == NULL && n == 0) {
        n = fv_rdp_orders_default(grid, FV_RDP_MAX_ORDERS);
        orders = grid;
    }
    if (n == 0)
        return FV_EINVAL;
    int rc = fv_rdp_sgm_curve(q, sigma, steps, orders, n, curve);
    if (rc != 0)
        return rc;
    return fv_rdp_epsilon(orders, curve, n, delta, ret_eps, ret_order);
}

int fv_rdp_calibrate(double q, uint64_t steps, double target_eps, double delta,
                     const double *orders, size_t n, double tol, double *ret_sigma)
{
    double grid[FV_RDP_MAX_ORDERS];
    if (orders == NULL && n == 0) {
        n = fv_rdp_orders_default(grid, FV_RDP_MAX_ORDERS);
        orders = grid;
    }
    if (!(q > 0.0 && q <= 1.0) || steps == 0 || !(target_eps > 0.0) || !isfinite(target_eps) ||
        !(delta > 0.0 && delta < 1.0) || !(tol > 0.0) || !isfinite(tol) || n == 0 ||
        !orders_ok(orders, n) || ret_sigma == NULL)
        return FV_EINVAL;
    double lo = 0.0, hi = 10.0, eps_hi = INFINITY, eps;
    int rc;
    while (eps_hi > target_eps) {
        if (hi >= RDP_SIGMA_MAX)
            return FV_ERANGE;
        hi = fmin(2.0 * hi, RDP_SIGMA_MAX);
        if ((rc = fv_rdp_sgm_epsilon(q, hi, steps, orders, n, delta, &eps_hi, NULL)) != 0)
            return rc;
    }
    for (int it = 0; it < RDP_BISECT_MAX && target_eps - eps_hi > tol; it++) {
        double mid = (lo + hi) / 2.0;
        if ((rc = fv_rdp_sgm_epsilon(q, mid, steps, orders, n, delta, &eps, NULL)) != 0)
            return rc;
        if (eps < target_eps) {
            hi = mid;
            eps_hi = eps;
        } else {
            lo = mid;
        }
    }
    *ret_sigma = hi;
    return 0;
}

double fv_rdp_ddg_rho(double l2_sens, double l1_sens, double s2, uint64_t n_honest, uint64_t dim)
{
    if (!(l2_sens >= 0.0) || !isfinite(l2_sens) || !(l1_sens >= 0.0) || !isfinite(l1_sens) ||
        !(s2 >= 0.25) || !isfinite(s2) || n_honest == 0 || dim == 0)
        return NAN;
    /* The terms shrink as k grows (k / (k + 1) rises): past RDP_TAU_TERMS, or once one
     * underflows, each remaining term is at most the last one, added as a bound. */
    double tau = 0.0, t = 0.0;
    uint64_t k = 1;
    for (; k < n_honest && k <= RDP_TAU_TERMS; k++) {
        t = exp(-2.0 * M_PI * M_PI * s2 * (double)k / (double)(k + 1));
        tau += t;
        if (t == 0.0)
            break;
    }
    if (k < n_honest && t > 0.0)
        tau += (double)(n_honest - k) * t;
    tau *= 10.0;
    double ns2 = (double)n_honest * s2, d = (double)dim, sq = sqrt(ns2);
    double r1 = l2_sens * l2_sens / (2.0 * ns2) + tau * d;
    double r2 = (l2_sens * l2_sens / ns2 + 2.0 * tau * l1_sens / sq + tau * tau * d) / 2.0;
    double r3 = (l2_sens / sq + tau * sqrt(d)) * (l2_sens / sq + tau * sqrt(d)) / 2.0;
    return fmin(r1, fmin(r2, r3));
}

int fv_rdp_subsampled_zcdp_curve(double q, double rho, uint64_t steps, const double *orders,
                                 size_t n, double *out)
{
    if (!(q >= 0.0 && q <= 1.0) || !(rho >= 0.0) || !isfinite(rho) || !orders_ok(orders, n) ||
        (n > 0 && out == NULL))
        return FV_EINVAL;
    for (size_t o = 0; o < n; o++) {
        double a = orders[o], r;
        if (!is_integer(a)) {
            out[o] = INFINITY;
            continue;
        }
        if (q == 0.0 || rho == 0.0 || steps == 0) {
            out[o] = 0.0;
            continue;
        }
        r = a * rho;
        if (q < 1.0 && a <= RDP_SERIES_MAX_ORDER) {
            double lq = log(q), l1q = log1p(-q);
            lse_t acc;
            lse_init(&acc);
            lse_add(&acc, (a - 1.0) * l1q + log1p((a - 1.0) * q));
            double lc = log(a) + log(a - 1.0) - M_LN2; /* log C(a, 2) */
            lse_add(&acc, lc + 2.0 * lq + (a - 2.0) * l1q + 2.0 * rho);
            for (double l = 3.0; l <= a; l += 1.0) {
                lc += log(a - l + 1.0) - log(l);
                lse_add(&acc, log(3.0) + lc + l * lq + (a - l) * l1q + (l - 1.0) * l * rho);
            }
            double zw = lse_value(&acc) / (a - 1.0);
            if (zw < r) /* NaN keeps alpha rho */
                r = zw < 0.0 ? 0.0 : zw;
        }
        out[o] = (double)steps * r;
    }
    return 0;
}
