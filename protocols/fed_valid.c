/* fed_valid.c - a federated round's vector as an fv_valid statement (fv_fed_valid.h): the
 * spec built from the round layout and the job, the honest agent's integer vector, and the
 * decoder of the validated sum.
 *
 * Invariants: the spec of a round depends only on the layout and the job's
 * max_update_norm, so every prover, holder and the decider build the same one; every word
 * of w outside the update block appears in exactly one single-word range (fv_valid's rule),
 * in w's order, and the cross-word checks (loss upper bound, rows right <= rows) follow the
 * word they bound. The names are built here, once, and are what a failed proof reports.
 *
 * Decoding reuses fv_fed_decode for everything but the update: the summed counts are
 * copied into a uint32 round vector, the summed loss word X becomes the 8 limbs of the
 * exact encoding (sum X mod 2^128, cut into 16-bit limbs: fv_fed_exact_decode recombines
 * them into exactly sum X / 2^32, the value the uint32 path decodes from the per-agent
 * limbs), the parameter words are left 0 and decoded with clip 1 and 1 bit (always
 * accepted; that delta is overwritten). So counts, loss and every metric are the uint32
 * path's, computed by the same code.
 *
 * Pure: no I/O, no clock; the rng is the caller's. Threading: none shared; a
 * fv_fed_valid_t is read-only after init and may be shared by threads.
 * Ownership: fv_fed_valid_t owns ranges, equal and terms (spec points into them).
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_fed_valid.h"

__extension__ typedef unsigned __int128 fv_u128;

#define FEDV_STRIP 1024 /* as fed.c's FED_STRIP: the same variate layout as fv_fed_encode */
#define FEDV_LOSS_UNIT 0x1p32
#define FEDV_LOSS_PER_ROW 17 /* a clipped probability's log loss is below 16.2 */

/* Builder state while filling the arrays of a fv_fed_valid_t. */
typedef struct spec_builder {
    fv_fed_valid_t *v;
    size_t n_ranges, n_equal, n_terms;
} spec_builder_t;

static fv_valid_affine_t *add_affine(spec_builder_t *b, bool range, uint32_t bits, int64_t constant,
                                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static fv_valid_affine_t *add_affine(spec_builder_t *b, bool range, uint32_t bits, int64_t constant,
                                     const char *fmt, ...)
{
    fv_valid_affine_t *a = range ? &b->v->ranges[b->n_ranges++] : &b->v->equal[b->n_equal++];
    memset(a, 0, sizeof(*a));
    a->terms = &b->v->terms[b->n_terms];
    a->constant = constant;
    a->bits = bits;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->name, sizeof(a->name), fmt, ap);
    va_end(ap);
    return a;
}

static void add_term(spec_builder_t *b, fv_valid_affine_t *a, size_t index, int64_t coef)
{
    fv_valid_term_t *t = &b->v->terms[b->n_terms++];
    t->index = (uint32_t)index;
    t->coef = coef;
    a->n_terms++;
}

/* A single-word count range: w[index] in [0, 2^17). */
#define COUNT(b, index, ...)                                                                       \
    add_term((b), add_affine((b), true, FV_FED_VALID_COUNT_BITS, 0, __VA_ARGS__), (index), 1)

/* ceil(sqrt(n)) exactly. */
static uint64_t ceil_sqrt(uint64_t n)
{
    uint64_t s = (uint64_t)sqrt((double)n);
    while (s * s < n)
        s++;
    while (s > 0 && (s - 1) * (s - 1) >= n)
        s--;
    return s;
}

int fv_fed_valid_init(const fv_fed_layout_t *l, const fv_job_t *job, fv_fed_valid_t *ret,
                      fv_diag_t *d)
{
    if (l == NULL || job == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "validated round: missing layout, job or output");
    if (!(isfinite(job->max_update_norm) && job->max_update_norm > 0))
        return fv_diag_set(d, FV_EINVAL,
                           "validated round: job \"%s\" has no max_update_norm; input validation "
                           "needs the update's norm bound (set max_update_norm in the job spec)",
                           job->name);
    size_t P = l->n_params, M = l->n_models, B = l->hist_bins, K = l->n_classes;
    size_t D = l->plain_dim;
    /* every word but the update and the bins has a range (the loss two); the bins are
     * non-negative (four squares), bounded above by their sum, n_val */
    size_t n_ranges = (D - P) + 1 + M * K - 2 * M * B;
    size_t n_equal = (B > 0 ? M : 0) + (K > 0 ? 1 : 0);
    size_t n_terms =
        (D - P) + 2 + 2 * M * K - 2 * M * B + (B > 0 ? M * (2 * B + 1) : 0) + (K > 0 ? K + 1 : 0);
    if (D > FV_VALID_MAX_DIM || n_ranges > FV_VALID_MAX_RANGES)
        return fv_diag_set(d, FV_EINVAL,
                           "validated round: %zu words and %zu range checks, more than "
                           "fv_valid's %u and %u (n_params %zu, hist_bins %zu, %zu models, %zu "
                           "classes)",
                           D, n_ranges, FV_VALID_MAX_DIM, FV_VALID_MAX_RANGES, P, B, M, K);

    fv_fed_valid_t v;
    memset(&v, 0, sizeof(v));
    v.fed = *l;
    v.max_norm = job->max_update_norm;
    v.step = job->max_update_norm * 0x1p-14;
    /* w has the plain vector's layout: the round vector's, the loss in one word */
    v.off_n_train = l->off_n_train;
    v.off_hist_pos = l->off_hist_pos;
    v.off_hist_neg = l->off_hist_neg;
    v.off_loss = l->off_loss;
    v.off_n_val = l->off_n_val - (FV_FED_EXACT_WORDS - 1);
    v.off_class_n = l->off_class_n - (FV_FED_EXACT_WORDS - 1);
    v.off_class_right = l->off_class_right - (FV_FED_EXACT_WORDS - 1);
    v.ranges = calloc(n_ranges, sizeof(*v.ranges));
    v.equal = calloc(n_equal ? n_equal : 1, sizeof(*v.equal));
    v.terms = calloc(n_terms, sizeof(*v.terms));
    v.nonneg = calloc(2 * M * B > 0 ? 2 * M * B : 1, sizeof(*v.nonneg));
    if (!v.ranges || !v.equal || !v.terms || !v.nonneg) {
        fv_fed_valid_close(&v);
        return fv_diag_set(d, FV_ENOMEM, "validated round: no memory for %zu checks", n_ranges);
    }

    spec_builder_t b = {.v = &v};
    COUNT(&b, v.off_n_train, "n_train");
    for (size_t i = 0; i < 2 * M * B; i++) /* hist_pos then hist_neg: adjacent blocks */
        v.nonneg[i] = (uint32_t)(v.off_hist_pos + i);
    add_term(&b, add_affine(&b, true, FV_FED_VALID_LOSS_BITS, 0, "loss>=0"), v.off_loss, 1);
    fv_valid_affine_t *a =
        add_affine(&b, true, FV_FED_VALID_LOSS_BITS, 0, "loss<=%d*n_val", FEDV_LOSS_PER_ROW);
    add_term(&b, a, v.off_n_val, (int64_t)FEDV_LOSS_PER_ROW << 32);
    add_term(&b, a, v.off_loss, -1);
    COUNT(&b, v.off_n_val, "n_val");
    for (size_t k = 0; k < K; k++)
        COUNT(&b, v.off_class_n + k, "class_n[%zu]", k);
    for (size_t m = 0; m < M; m++)
        for (size_t k = 0; k < K; k++) {
            COUNT(&b, v.off_class_right + m * K + k, "class_right[m%zu][%zu]", m, k);
            a = add_affine(&b, true, FV_FED_VALID_COUNT_BITS, 0, "right<=rows[m%zu][%zu]", m, k);
            add_term(&b, a, v.off_class_n + k, 1);
            add_term(&b, a, v.off_class_right + m * K + k, -1);
        }
    for (size_t m = 0; m < M && B > 0; m++) {
        a = add_affine(&b, false, 0, 0, "hist_sum=n_val[m%zu]", m);
        for (size_t i = 0; i < B; i++)
            add_term(&b, a, v.off_hist_pos + m * B + i, 1);
        for (size_t i = 0; i < B; i++)
            add_term(&b, a, v.off_hist_neg + m * B + i, 1);
        add_term(&b, a, v.off_n_val, -1);
    }
    if (K > 0) {
        a = add_affine(&b, false, 0, 0, "class_sum=n_val");
        for (size_t k = 0; k < K; k++)
            add_term(&b, a, v.off_class_n + k, 1);
        add_term(&b, a, v.off_n_val, -1);
    }
    /* the counts above are the arrays' sizes: a mismatch is a bug here, not input */
    if (b.n_ranges != n_ranges || b.n_equal != n_equal || b.n_terms != n_terms) {
        fv_fed_valid_close(&v);
        return fv_diag_set(d, FV_EINVAL, "validated round: internal spec size mismatch");
    }

    uint64_t r = (UINT64_C(1) << FV_FED_VALID_NORM_BITS) + ceil_sqrt(P);
    v.spec.dim = (uint32_t)D;
    v.spec.norm_off = 0;
    v.spec.norm_len = (uint32_t)P;
    v.spec.norm_sq = P > 0 ? r * r : 0;
    v.spec.ranges = v.ranges;
    v.spec.n_ranges = (uint32_t)n_ranges;
    v.spec.equal = v.equal;
    v.spec.n_equal = (uint32_t)n_equal;
    v.spec.nonneg = v.nonneg;
    v.spec.n_nonneg = (uint32_t)(2 * M * B);
    v.spec.nonneg_sum = (uint64_t)M * FV_FED_RAW_MAX; /* each model's bins sum to n_val */
    *ret = v;
    return 0;
}

void fv_fed_valid_close(fv_fed_valid_t *v)
{
    if (v == NULL)
        return;
    free(v->ranges);
    free(v->equal);
    free(v->nonneg);
    free(v->terms);
    memset(v, 0, sizeof(*v));
}

/* w[off] = count, refusing what fv_fed_encode refuses (a count above FV_FED_RAW_MAX). */
static int put_count(int64_t *w, size_t off, uint64_t count, const char *what, size_t i,
                     fv_diag_t *d)
{
    if (count > FV_FED_RAW_MAX)
        return fv_diag_set(d, FV_EOVERFLOW,
                           "validated round encode: %s %zu is %" PRIu64 ", more than %u", what, i,
                           count, FV_FED_RAW_MAX);
    w[off] = (int64_t)count;
    return 0;
}

int fv_fed_valid_encode(const fv_fed_valid_t *v, const fv_fed_local_t *in, fv_rand_t *rng,
                        int64_t *w, fv_diag_t *d)
{
    int r;
    if (v == NULL || in == NULL || rng == NULL || w == NULL)
        return fv_diag_set(d, FV_EINVAL, "validated round encode: missing spec, input or output");
    const fv_fed_layout_t *l = &v->fed;
    size_t P = l->n_params, M = l->n_models, B = l->hist_bins, K = l->n_classes;
    if ((P > 0 && in->delta == NULL) || (B > 0 && (in->hist_pos == NULL || in->hist_neg == NULL)) ||
        (K > 0 && (in->class_n == NULL || in->class_right == NULL)))
        return fv_diag_set(d, FV_EINVAL, "validated round encode: missing input block");
    if (!(isfinite(in->n_ref) && in->n_ref > 0))
        return fv_diag_set(d, FV_EINVAL, "validated round encode: n_ref %g must be finite and > 0",
                           in->n_ref);
    if (!isfinite(in->loss_sum))
        return fv_diag_set(d, FV_ENUMERIC, "validated round encode: validation loss sum is %g",
                           in->loss_sum);

    /* the metric words, refused as fv_fed_encode refuses them */
    if ((r = put_count(w, v->off_n_train, in->n_train, "training rows", 0, d)) < 0 ||
        (r = put_count(w, v->off_n_val, in->n_val, "validation rows", 0, d)) < 0)
        return r;
    for (size_t i = 0; i < M * B; i++)
        if ((r = put_count(w, v->off_hist_pos + i, in->hist_pos[i], "histogram bin", i, d)) < 0 ||
            (r = put_count(w, v->off_hist_neg + i, in->hist_neg[i], "histogram bin", i, d)) < 0)
            return r;
    for (size_t k = 0; k < K; k++)
        if ((r = put_count(w, v->off_class_n + k, in->class_n[k], "class rows", k, d)) < 0)
            return r;
    for (size_t k = 0; k < M * K; k++)
        if ((r = put_count(w, v->off_class_right + k, in->class_right[k], "class rows right", k,
                           d)) < 0)
            return r;
    /* X = round(loss * 2^32) (half away from zero, as the exact encoding rounds) */
    double xl = round(in->loss_sum * FEDV_LOSS_UNIT);
    double xmax = (double)in->n_val * FEDV_LOSS_PER_ROW * FEDV_LOSS_UNIT; /* < 2^53: exact */
    if (!(xl >= 0 && xl <= xmax))
        return fv_diag_set(d, FV_ERANGE,
                           "validated round encode: validation loss sum %g outside [0, %d * n_val "
                           "= %g]",
                           in->loss_sum, FEDV_LOSS_PER_ROW, xmax / FEDV_LOSS_UNIT);
    w[v->off_loss] = (int64_t)xl;

    /* the update: a = w_k delta in double, its norm against B */
    double wk = (double)in->n_train / in->n_ref, ss = 0;
    for (size_t i = 0; i < P; i++) {
        if (!isfinite(in->delta[i]))
            return fv_diag_set(d, FV_ENUMERIC,
                               "validated round encode: the model update's parameter %zu is %g", i,
                               (double)in->delta[i]);
        double a = wk * (double)in->delta[i];
        ss += a * a;
    }
    double norm = sqrt(ss), scale = 1 / v->step;
    if (norm > v->max_norm) {
        /* the float roundings of fv_fed_update_clip leave it up to 2^-21 over; more means
         * the caller did not clip */
        if (norm > v->max_norm * (1 + 0x1p-20))
            return fv_diag_set(d, FV_ERANGE,
                               "validated round encode: the update's norm %.17g is over "
                               "max_update_norm %g; clip it first (fv_fed_update_clip)",
                               norm, v->max_norm);
        scale *= v->max_norm / norm * (1 - 0x1p-40);
    }

    /* stochastic rounding, variates drawn as fv_fed_encode draws them */
    uint8_t raw[4 * FEDV_STRIP];
    for (size_t i = 0; i < P; i += FEDV_STRIP) {
        size_t m = P - i < FEDV_STRIP ? P - i : FEDV_STRIP;
        fv_rand_fill(rng, raw, 4 * m);
        for (size_t j = 0; j < m; j++) {
            const uint8_t *p = raw + 4 * j;
            uint32_t u32 =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            double u = (double)(u32 >> 8) * 0x1p-24;          /* [0, 1), 24 bits */
            double x = wk * (double)in->delta[i + j] * scale; /* |x| <= 2^14 */
            double f = floor(x);
            w[i + j] = (int64_t)f + (u < x - f ? 1 : 0);
        }
    }
    /* the norm statement, exactly: ||z|| < ||x|| + sqrt(P) <= 2^14 + ceil(sqrt(P)) */
    uint64_t zz = 0;
    for (size_t i = 0; i < P; i++)
        zz += (uint64_t)(w[i] * w[i]); /* |z| <= 2^14 + 1: no overflow below 2^34 params */
    if (P > 0 && zz > v->spec.norm_sq)
        return fv_diag_set(d, FV_ERANGE,
                           "validated round encode: the rounded update's squared norm %" PRIu64
                           " is over %" PRIu64,
                           zz, v->spec.norm_sq);
    return 0;
}

int fv_fed_valid_decode(const fv_fed_valid_t *v, const int64_t *sum, uint32_t n_summands,
                        double n_ref, fv_fed_result_t *ret, fv_diag_t *d)
{
    if (v == NULL || sum == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "validated round decode: missing spec, sum or output");
    if (!(isfinite(n_ref) && n_ref > 0))
        return fv_diag_set(d, FV_EINVAL, "validated round decode: n_ref %g must be finite and > 0",
                           n_ref);
    if (n_summands == 0)
        return fv_diag_set(d, FV_EEMPTY, "validated round decode: no agent contributed");
    if (n_summands > FV_FED_VALID_MAX_SUMMANDS)
        return fv_diag_set(d, FV_EOVERFLOW,
                           "validated round decode: %u provers, more than the %u whose loss sums "
                           "cannot wrap the field",
                           n_summands, FV_FED_VALID_MAX_SUMMANDS);
    const fv_fed_layout_t *l = &v->fed;
    size_t P = l->n_params;
    uint32_t *words = calloc(l->dim ? l->dim : 1, sizeof(*words));
    if (words == NULL)
        return fv_diag_set(d, FV_ENOMEM, "validated round decode: no memory");
    int r = 0;
    /* every metric word but the loss maps one to one (w's index i >= P, the round
     * vector's index: i before the loss, i + 7 after it) */
    for (size_t i = P; i < v->spec.dim; i++) {
        if (i == v->off_loss)
            continue;
        if (sum[i] < 0 || sum[i] > (int64_t)UINT32_MAX) {
            r = fv_diag_set(d, FV_EPEER,
                            "validated round decode: summed word %zu (a count) is %" PRId64
                            ", outside [0, 2^32)",
                            i, sum[i]);
            goto out;
        }
        words[i > v->off_loss ? i + (FV_FED_EXACT_WORDS - 1) : i] = (uint32_t)sum[i];
    }
    int64_t x = sum[v->off_loss];
    if (x < 0) {
        r = fv_diag_set(d, FV_EPEER, "validated round decode: the summed loss word is negative");
        goto out;
    }
    for (int k = 0; k < FV_FED_EXACT_WORDS; k++)
        words[l->off_loss + (size_t)k] = (uint32_t)(((fv_u128)x >> (16 * k)) & 0xffffu);

    fv_fed_result_t res;
    if ((r = fv_fed_decode(l, words, n_summands, 1.0f, 1, n_ref, &res, d)) != 0)
        goto out;
    for (size_t i = 0; i < P; i++)
        res.delta_mean[i] = (float)((double)sum[i] * v->step / res.weight_sum);
    *ret = res;
out:
    free(words);
    return r;
}
