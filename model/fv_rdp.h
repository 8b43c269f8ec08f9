/* fv_rdp.h - the privacy accountant: Rényi differential privacy (RDP) of the
 * Poisson-subsampled Gaussian mechanism, composition, conversion to (epsilon, delta), and
 * noise calibration for a target epsilon.
 *
 * The mechanism (DP-SGD's step, Abadi et al. 2016): each record is in the step's sample
 * independently with probability q (Poisson sampling); the sum of the sampled records'
 * contributions, each of L2 norm at most C, gets Gaussian noise N(0, (sigma C)^2 I).
 * sigma is the noise multiplier. Its RDP at order alpha > 1 is Mironov, Talwar and Zhang
 * 2019 ("Rényi Differential Privacy of the Sampled Gaussian Mechanism"): integer orders
 * by the binomial expansion, fractional orders by the two-series expansion, both in log
 * space (rdp.c has the formulas and where each series is cut). q = 0: 0; q = 1: the plain
 * Gaussian, alpha / (2 sigma^2).
 * Composition: RDP adds over steps (T steps: T times one step's curve), and over jobs
 * (sum the curves at the same orders).
 * Conversion: epsilon(delta) = min over orders of the bound of Balle et al. 2020 (Hypothesis
 * testing interpretations and Rényi DP, Theorem 21), the one Opacus and Google's
 * dp_accounting use:  rdp(a) + log((a - 1) / a) - (log(delta) + log(a)) / (a - 1)
 * (with dp_accounting's two refinements: 0 where delta >= sqrt(1 - exp(-rdp(a))), and
 * clamped at 0);
 * fv_rdp_epsilon_classic is Mironov 2017's rdp(a) - log(delta) / (a - 1) (looser; what
 * older TensorFlow Privacy printed).
 * Calibration: the smallest sigma (within tol in epsilon) whose epsilon is at most the
 * target, by bisection, as Opacus' get_noise_multiplier.
 *
 * Checked against the reference libraries' own test vectors (tests/unit/model/test_rdp.c
 * cites each file). Pure, no allocation, thread-safe.
 */
#ifndef FV_RDP_H
#define FV_RDP_H

#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"

#define FV_RDP_MAX_ORDERS 256

/* The default order grid, Opacus' DEFAULT_ALPHAS: 1 + x / 10 for x = 1..99, then 12..63
 * (151 orders). TF Privacy's compute_dp_sgd_privacy uses another grid (1.25..4.5, 5..63,
 * 128, 256, 512): pass it as `orders` where a function takes them. Writes at most cap
 * orders into out (NULL: none); returns how many the grid has. */
size_t fv_rdp_orders_default(double *out, size_t cap);

/* RDP at order alpha (> 1, finite) of ONE step of the Poisson-subsampled Gaussian with
 * sampling rate q (0..1) and noise multiplier sigma (> 0). NaN on a bad argument. May be
 * +inf (no bound at that order). Orders above 1e5 get the convexity bound
 * log(1 - q + q exp(alpha (alpha - 1) / (2 sigma^2))) / (alpha - 1) instead of a series. */
double fv_rdp_sgm(double q, double sigma, double alpha);

/* fv_rdp_sgm with the fractional orders' series summed as Google's dp_accounting (and so
 * TensorFlow Privacy) sums it: the negative terms added by their magnitude, a looser upper
 * bound (3% above fv_rdp_sgm at q 0.01, sigma 2.5, alpha 1.5; the same at integer orders).
 * For checking those libraries' numbers (tests/unit/model/test_rdp.c); the agents charge
 * fv_rdp_sgm, which Opacus and an mpmath quadrature of A_alpha agree with. */
double fv_rdp_sgm_abs(double q, double sigma, double alpha);

/* out[i] = steps * fv_rdp_sgm(q, sigma, orders[i]), i < n. FV_EINVAL on a bad argument
 * (q outside [0, 1], sigma <= 0 or not finite, an order <= 1, n > FV_RDP_MAX_ORDERS). */
int fv_rdp_sgm_curve(double q, double sigma, uint64_t steps, const double *orders, size_t n,
                     double *out);

/* The tight conversion above: *ret_eps = min over i, *ret_order the order reaching it
 * (either may be NULL). delta in (0, 1). FV_EINVAL on bad arguments; an all-infinite curve
 * gives +inf. */
int fv_rdp_epsilon(const double *orders, const double *rdp, size_t n, double delta, double *ret_eps,
                   double *ret_order);
/* The classic conversion, same contract. */
int fv_rdp_epsilon_classic(const double *orders, const double *rdp, size_t n, double delta,
                           double *ret_eps, double *ret_order);

/* epsilon at delta of `steps` steps of the sampled Gaussian (q, sigma), on the given
 * orders (NULL, 0: the default grid), tight conversion. */
int fv_rdp_sgm_epsilon(double q, double sigma, uint64_t steps, const double *orders, size_t n,
                       double delta, double *ret_eps, double *ret_order);

/* The noise multiplier for a target epsilon at delta over `steps` steps of rate q:
 * bisection on sigma until the epsilon it gives is in [target - tol, target] (Opacus'
 * get_noise_multiplier, epsilon_tolerance tol > 0). orders NULL, 0: the default grid.
 * FV_EINVAL on bad arguments (q = 0 and steps = 0 included: nothing to calibrate),
 * FV_ERANGE when no sigma up to 2^20 reaches the target. At most 200 halvings: where the
 * epsilon jumps over the window (the conversion's switch to 0), the result's epsilon is
 * still <= target, maybe below target - tol. */
int fv_rdp_calibrate(double q, uint64_t steps, double target_eps, double delta,
                     const double *orders, size_t n, double tol, double *ret_sigma);

/* Distributed noise (each honest agent adds discrete Gaussian noise N_Z(0, s2) in the
 * integer domain; the sum over at least n_honest of them hides one record's change of L2
 * norm l2_sens and L1 norm l1_sens, over dim coordinates). The sum of discrete Gaussians is
 * not exactly one: Kairouz, Liu and Steinke 2021 (The Distributed Discrete Gaussian
 * Mechanism for Federated Learning with Secure Aggregation, Proposition 14 and its tau,
 * s2 >= 1/4) bound it; as rho-zero-concentrated DP (RDP alpha * rho at every order
 * alpha >= 1):
 *   rho = min( l2^2 / (2 n s2) + tau * dim,
 *              (l2^2 / (n s2) + 2 tau l1 / sqrt(n s2) + tau^2 dim) / 2,
 *              (l2 / sqrt(n s2) + tau * sqrt(dim))^2 / 2 ),
 *   tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 s2 k / (k + 1))        (n = n_honest)
 * (rdp.c states the proposition as read: its first bound adds tau * dim NOT scaled by alpha,
 * so it enters rho whole). NaN on a bad argument (s2 < 1/4 included). */
double fv_rdp_ddg_rho(double l2_sens, double l1_sens, double s2, uint64_t n_honest, uint64_t dim);

/* RDP at integer orders alpha >= 2 of `steps` Poisson-subsampled (rate q) steps of ANY
 * mechanism whose unsampled RDP is alpha * rho (rho-zCDP, e.g. fv_rdp_ddg_rho): the general
 * amplification bound of Zhu and Wang 2019 (Poisson Subsampled Rényi Differential Privacy,
 * Theorem 5, the general upper bound), capped by the unsampled alpha * rho. Orders that are
 * not integers get +inf (they take no part in the minimum of the conversion).
 * q = 1: steps * alpha * rho. FV_EINVAL on bad arguments. */
int fv_rdp_subsampled_zcdp_curve(double q, double rho, uint64_t steps, const double *orders,
                                 size_t n, double *out);

#endif
