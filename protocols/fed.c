/* fed.c - the arithmetic of federated rounds (fv_fed.h): encodings into the secure sum,
 * their decoders, and the server-side strategies.
 *
 * Pure: no I/O, no clock, no logging; every function either fills its outputs and returns
 * 0 or returns a negative code (and a diag sentence where a person may read it).
 *
 * Word formats (all words uint32, summed mod 2^32 across the cohort):
 *   raw    one word, the count itself, 0 <= count <= FV_FED_RAW_MAX = 65537. 65535
 *          agents * 65537 = 2^32 - 1, so the cohort's sum never wraps and the decoder
 *          reads the word as is.
 *   exact  8 words. X = round(x * 2^32) (round(): half away from zero; x * 2^32 is exact
 *          in double, a power-of-two scaling) as a signed 128-bit integer, |x| < 2^79 so
 *          |X| <= 2^111. Its two's complement bits as unsigned __int128 U are cut into
 *          limbs: word i = (U >> 16 i) & 0xffff, i = 0..7 (least significant first).
 *          Each word of the cohort's sum is a sum of <= 65535 limbs < 2^16, hence < 2^32
 *          (no carry lost); the decoder forms S = sum_i w_i << 16 i mod 2^128, which is
 *          the two's complement of sum(X) because mod-2^128 addition commutes with the
 *          limb split, and |sum(X)| < 65535 * 2^111 < 2^127 means the signed reading is
 *          the true sum. Then (long double)S / 2^32: the division is exact (power of
 *          two); the conversion is exact while |S| < 2^64 and rounds once otherwise.
 *   fixed  fv_fixed_quantize of the weighted update (kernels/fixed.c), one word per
 *          parameter. Stochastic-rounding variates are drawn exactly as
 *          fv_secagg_quantize draws them: parameters in strips of FED_STRIP = 1024, one
 *          fv_rand_fill of 4 m bytes per strip of m parameters, in order; parameter j of
 *          the strip takes the little-endian uint32 at bytes 4j..4j+3, u = (w >> 8) *
 *          2^-24, a 24-bit uniform in [0, 1). So the same rng state gives the same words
 *          as SecAgg's quantizer would.
 *
 * Quantization bound (fv_fed_quant_bound). Assume every agent k's weighted update a_k =
 * w_k delta_k (computed in double) lies in [-clip, clip] element-wise (clipping is not an
 * error this bound covers). The decoded mean differs from the float64 weighted mean
 * sum(a_k) / sum(w_k) by at most
 *     n * clip * (2 / (2^bits - 1) + 2^-22) / weight_sum
 * per element, n = n_summands: each agent's stochastic rounding is off by less than one
 * step 2 clip / (2^bits - 1); three float32 roundings (a_k to float for the quantizer,
 * the dequantized sum to float, the mean to float), each at most 2^-24 relative of a
 * value of magnitude <= n clip (before dividing by weight_sum), take 3 * 2^-24; the last
 * 2^-24 covers the double-precision arithmetic (relative ~n 2^-52 <= 2^-36 for n <=
 * 65535) with room to spare.
 *
 * Cheap checks (fv_fed_update_clip, fv_fed_sum_check; issue 16's first piece, before any
 * proof of well-formed input exists): the honest agent clips its weighted update block to
 * the job's max_update_norm and never sends a non-finite one; the coordinator refuses a
 * decoded sum whose counts cannot come from honest agents (ranges, histograms vs n_val,
 * class rows, loss bounds, SecAgg word ranges, the summed block's norm vs n *
 * max_update_norm). They catch a lying agent only where its lie breaks an identity of
 * the sum; an in-range lie passes them.
 *
 * Distributed differential privacy (fv_job.h, privacy.mode distributed): every agent adds
 * discrete Gaussian noise to its parameter words before masking (round_kinds.c), so the
 * summed words may lie outside [0, n (2^bits - 1)] and wrap mod 2^32. Such a job's sum is
 * decoded centered (fv_fed_decode_centered), its words get no range check, and its norm
 * check's slack includes the summed noise's norm (ddg_noise_norm). Jobs without it decode
 * exactly as before.
 *
 * Server strategies keep their state (m, v) in double; the global model stays float and
 * takes one rounding per step. An update with a non-finite element is refused before
 * anything changes (all or nothing).
 *
 * Threading: no shared state; a fv_fed_server_opt_t belongs to one thread at a time.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fv_fed.h"
#include "fv_fixed.h"
#include "fv_metrics.h"
#include "fv_preproc.h"
#include "fv_privacy.h"

__extension__ typedef unsigned __int128 fed_u128;
__extension__ typedef __int128 fed_i128;

#define FED_STRIP 1024

/* ---- exact encoding ----------------------------------------------------------------- */

int fv_fed_exact_encode(double x, uint32_t out[FV_FED_EXACT_WORDS])
{
    if (out == NULL)
        return FV_EINVAL;
    if (!isfinite(x) || !(fabs(x) < FV_FED_EXACT_MAX_ABS))
        return FV_ERANGE;
    /* |x * 2^32| < 2^111: exact, and the rounded value fits __int128 */
    fed_i128 v = (fed_i128)round(x * 0x1p32);
    fed_u128 u = (fed_u128)v; /* two's complement (conversion is modulo 2^128) */
    for (int i = 0; i < FV_FED_EXACT_WORDS; i++)
        out[i] = (uint32_t)((u >> (16 * i)) & 0xffffu);
    return 0;
}

long double fv_fed_exact_decode(const uint32_t sum[FV_FED_EXACT_WORDS])
{
    fed_u128 s = 0;
    for (int i = 0; i < FV_FED_EXACT_WORDS; i++)
        s += (fed_u128)sum[i] << (16 * i); /* mod 2^128: unsigned wrap-around */
    /* Sign and magnitude, then the magnitude's two 64-bit halves: no cancellation
     * between a large negative high part and a large low part, so the conversion is
     * exact whenever the value fits the long double's mantissa - also where long double
     * arithmetic is carried at double precision (valgrind's x87 emulation, where the
     * direct __int128 -> long double conversion of -1 gave 0). */
    bool neg = (s >> 127) != 0;
    fed_u128 mag = neg ? ~s + 1 : s; /* 2^127 for the most negative value: still right */
    long double r = (long double)(uint64_t)(mag >> 64) * 0x1p64L + (long double)(uint64_t)mag;
    r *= 0x1p-32L;
    return neg ? -r : r;
}

/* ---- stats vector ------------------------------------------------------------------- */

/* Words per schema column in the stats vector. */
static size_t stats_col_words(const fv_schema_t *s, size_t col)
{
    switch (fv_schema_column_type(s, col)) {
    case FV_COL_NUMERIC:
        return 1 + 2 * FV_FED_EXACT_WORDS;
    case FV_COL_CATEGORICAL:
        return fv_schema_n_categories(s, col) + 1;
    default:
        return 0;
    }
}

int fv_fed_stats_layout_init(const fv_schema_t *s, fv_fed_stats_layout_t *ret)
{
    if (s == NULL || ret == NULL || fv_schema_is_open(s))
        return FV_EINVAL; /* an open schema has no layout yet */
    size_t nc = fv_schema_n_columns(s), k = fv_schema_n_classes(s);
    size_t dim = 1 + k;
    for (size_t j = 0; j < nc; j++)
        dim += stats_col_words(s, j);
    ret->schema = s;
    ret->n_classes = k;
    ret->dim = dim;
    return 0;
}

static int put_raw(uint32_t *out, uint64_t count, const char *what, fv_diag_t *d)
{
    if (count > FV_FED_RAW_MAX)
        return fv_diag_set(d, FV_EOVERFLOW,
                           "%s: count %llu exceeds %u, the most one agent may add without "
                           "risking a wrap of the cohort's 32-bit sum; split the data or "
                           "sample it down",
                           what, (unsigned long long)count, FV_FED_RAW_MAX);
    *out = (uint32_t)count;
    return 0;
}

int fv_fed_stats_encode(const fv_fed_stats_layout_t *l, const fv_dataset_t *ds, const size_t *rows,
                        size_t n, uint32_t *out, fv_diag_t *d)
{
    double *count = NULL, *sum = NULL, *sumsq = NULL;
    uint64_t *cls = NULL;
    int r;

    if (l == NULL || l->schema == NULL || ds == NULL || ds->schema == NULL || out == NULL)
        return fv_diag_set(d, FV_EINVAL, "stats encode: missing layout, dataset or output");
    const fv_schema_t *s = l->schema;
    size_t nc = fv_schema_n_columns(s);
    if (ds->schema != s && !fv_schema_equal(ds->schema, s))
        return fv_diag_set(d, FV_ESCHEMA, "stats encode: the dataset's schema is not the job's");
    if (ds->n_cols != nc)
        return fv_diag_set(d, FV_ESCHEMA, "stats encode: dataset has %zu columns, schema %zu",
                           ds->n_cols, nc);
    if (rows == NULL)
        n = ds->n_rows;
    for (size_t i = 0; rows != NULL && i < n; i++)
        if (rows[i] >= ds->n_rows)
            return fv_diag_set(d, FV_EINVAL, "stats encode: row index %zu out of %zu rows", rows[i],
                               ds->n_rows);
    if ((r = put_raw(out, n, "stats: rows", d)) < 0)
        return r;
    /* every other count below is at most n, so it fits too */

    count = malloc((nc ? nc : 1) * sizeof(*count));
    sum = malloc((nc ? nc : 1) * sizeof(*sum));
    sumsq = malloc((nc ? nc : 1) * sizeof(*sumsq));
    cls = calloc(l->n_classes ? l->n_classes : 1, sizeof(*cls));
    if (count == NULL || sum == NULL || sumsq == NULL || cls == NULL) {
        r = FV_ENOMEM;
        goto out;
    }

    size_t w = 1;
    for (size_t i = 0; i < n; i++) {
        size_t row = rows ? rows[i] : i;
        int32_t y = ds->label[row];
        if (y < 0 || (size_t)y >= l->n_classes) {
            r = fv_diag_set(d, FV_ESCHEMA, "stats encode: line %u: class index %d out of %zu",
                            ds->line ? ds->line[row] : 0, (int)y, l->n_classes);
            goto out;
        }
        cls[y]++;
    }
    for (size_t k = 0; k < l->n_classes; k++)
        out[w++] = (uint32_t)cls[k];

    fv_preproc_moments(ds, rows, n, count, sum, sumsq);
    for (size_t j = 0; j < nc; j++) {
        fv_col_type_t t = fv_schema_column_type(s, j);
        if (t == FV_COL_NUMERIC) {
            out[w++] = (uint32_t)count[j];
            if (fv_fed_exact_encode(sum[j], out + w) < 0 ||
                fv_fed_exact_encode(sumsq[j], out + w + FV_FED_EXACT_WORDS) < 0) {
                r = fv_diag_set(d, FV_ERANGE,
                                "stats encode: column '%s': sum %g or sum of squares %g is "
                                "beyond the exact encoding's 2^79; rescale the column",
                                fv_schema_column_name(s, j), sum[j], sumsq[j]);
                goto out;
            }
            w += 2 * FV_FED_EXACT_WORDS;
        } else if (t == FV_COL_CATEGORICAL) {
            size_t nk = fv_schema_n_categories(s, j);
            uint32_t *cat = out + w;
            memset(cat, 0, (nk + 1) * sizeof(*cat));
            for (size_t i = 0; i < n; i++) {
                size_t row = rows ? rows[i] : i;
                double v = ds->cells[row * nc + j];
                if (v == FV_CELL_MISSING)
                    continue;
                if (v == FV_CELL_OTHER) {
                    cat[nk]++;
                    continue;
                }
                if (!(v >= 0 && v < (double)nk)) {
                    r = fv_diag_set(d, FV_ESCHEMA,
                                    "stats encode: line %u: column '%s': category code %g "
                                    "out of %zu",
                                    ds->line ? ds->line[row] : 0, fv_schema_column_name(s, j), v,
                                    nk);
                    goto out;
                }
                cat[(size_t)v]++;
            }
            w += nk + 1;
        }
    }
    r = 0;
out:
    free(count);
    free(sum);
    free(sumsq);
    free(cls);
    return r;
}

int fv_fed_stats_decode(const fv_fed_stats_layout_t *l, const uint32_t *sum, fv_fed_stats_t *ret,
                        fv_diag_t *d)
{
    fv_fed_stats_t st;
    int r;

    if (l == NULL || l->schema == NULL || sum == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "stats decode: missing layout, sum or output");
    memset(&st, 0, sizeof(st));
    const fv_schema_t *s = l->schema;
    size_t nc = fv_schema_n_columns(s), n_cat = 0;
    for (size_t j = 0; j < nc; j++)
        if (fv_schema_column_type(s, j) == FV_COL_CATEGORICAL)
            n_cat += fv_schema_n_categories(s, j) + 1;

    st.class_counts = calloc(l->n_classes ? l->n_classes : 1, sizeof(uint64_t));
    st.count = calloc(nc ? nc : 1, sizeof(double));
    st.sum = calloc(nc ? nc : 1, sizeof(double));
    st.sumsq = calloc(nc ? nc : 1, sizeof(double));
    st.category_counts = calloc(n_cat ? n_cat : 1, sizeof(uint64_t));
    st.n_category_counts = n_cat;
    if (!st.class_counts || !st.count || !st.sum || !st.sumsq || !st.category_counts) {
        r = FV_ENOMEM;
        goto fail;
    }

    /* The checks below hold for any sum of honest vectors; failing one means a corrupt or
     * malicious contribution (or a wrap), and the moments must not be used. */
    size_t w = 0;
    st.n_rows = sum[w++];
    uint64_t total = 0;
    for (size_t k = 0; k < l->n_classes; k++) {
        st.class_counts[k] = sum[w++];
        total += st.class_counts[k];
    }
    if (total != st.n_rows) {
        r = fv_diag_set(d, FV_EPROTO,
                        "stats decode: class counts add up to %llu, not the %llu rows; a "
                        "contribution is corrupt",
                        (unsigned long long)total, (unsigned long long)st.n_rows);
        goto fail;
    }
    size_t c = 0;
    for (size_t j = 0; j < nc; j++) {
        fv_col_type_t t = fv_schema_column_type(s, j);
        if (t == FV_COL_NUMERIC) {
            uint32_t cnt = sum[w++];
            long double sm = fv_fed_exact_decode(sum + w);
            long double sq = fv_fed_exact_decode(sum + w + FV_FED_EXACT_WORDS);
            w += 2 * FV_FED_EXACT_WORDS;
            if (cnt > st.n_rows || sq < 0) {
                r = fv_diag_set(d, FV_EPROTO,
                                "stats decode: column '%s': count %u of %llu rows, sum of "
                                "squares %Lg; a contribution is corrupt",
                                fv_schema_column_name(s, j), cnt, (unsigned long long)st.n_rows,
                                sq);
                goto fail;
            }
            st.count[j] = cnt;
            st.sum[j] = (double)sm;
            st.sumsq[j] = (double)sq;
        } else if (t == FV_COL_CATEGORICAL) {
            size_t nk = fv_schema_n_categories(s, j) + 1;
            uint64_t tot = 0;
            for (size_t k = 0; k < nk; k++) {
                st.category_counts[c + k] = sum[w++];
                tot += st.category_counts[c + k];
            }
            if (tot > st.n_rows) {
                r = fv_diag_set(d, FV_EPROTO,
                                "stats decode: column '%s': %llu category counts for %llu "
                                "rows; a contribution is corrupt",
                                fv_schema_column_name(s, j), (unsigned long long)tot,
                                (unsigned long long)st.n_rows);
                goto fail;
            }
            c += nk;
        }
    }
    *ret = st;
    return 0;
fail:
    fv_fed_stats_close(&st);
    return r;
}

void fv_fed_stats_close(fv_fed_stats_t *st)
{
    if (st == NULL)
        return;
    free(st->class_counts);
    free(st->count);
    free(st->sum);
    free(st->sumsq);
    free(st->category_counts);
    memset(st, 0, sizeof(*st));
}

int fv_fed_stats_check(const fv_fed_stats_layout_t *l, const uint32_t *v, fv_diag_t *d)
{
    if (l == NULL || l->schema == NULL || v == NULL)
        return fv_diag_set(d, FV_EINVAL, "stats check: missing layout or vector");
    const fv_schema_t *s = l->schema;
    size_t nc = fv_schema_n_columns(s), w = 0;
    /* word by word: a count is raw (<= FV_FED_RAW_MAX), an exact value 8 limbs < 2^16 */
    for (size_t k = 0; k < 1 + l->n_classes; k++, w++)
        if (v[w] > FV_FED_RAW_MAX)
            return fv_diag_set(d, FV_EPEER, "stats vector: word %zu (a row count) is %u, above %u",
                               w, v[w], FV_FED_RAW_MAX);
    for (size_t j = 0; j < nc; j++) {
        fv_col_type_t t = fv_schema_column_type(s, j);
        size_t nw = t == FV_COL_NUMERIC       ? 1 + 2 * FV_FED_EXACT_WORDS
                    : t == FV_COL_CATEGORICAL ? fv_schema_n_categories(s, j) + 1
                                              : 0;
        for (size_t k = 0; k < nw; k++, w++) {
            bool limb = t == FV_COL_NUMERIC && k > 0;
            if (limb ? v[w] > 0xffffu : v[w] > FV_FED_RAW_MAX)
                return fv_diag_set(
                    d, FV_EPEER, "stats vector: column '%s': word %zu is %u, above the %s %u",
                    fv_schema_column_name(s, j), w, v[w], limb ? "16-bit limb's" : "count's",
                    limb ? 0xffffu : FV_FED_RAW_MAX);
        }
    }
    /* then what holds for any honest sum (fv_fed_stats_decode), and per column that
     * sum^2 <= count * sumsq (Cauchy-Schwarz: no real rows have other moments) */
    fv_fed_stats_t st;
    fv_diag_t why;
    memset(&st, 0, sizeof st);
    int r = fv_fed_stats_decode(l, v, &st, &why);
    if (r != 0)
        return fv_diag_set(d, r == FV_ENOMEM ? r : FV_EPEER, "stats vector: %s", why.msg);
    for (size_t j = 0; j < nc && r == 0; j++)
        if (st.sum[j] * st.sum[j] > st.count[j] * st.sumsq[j] * (1 + 1e-9) + 1e-9)
            r = fv_diag_set(d, FV_EPEER,
                            "stats vector: column '%s': sum %g and sum of squares %g are not "
                            "the moments of %g real values",
                            fv_schema_column_name(s, j), st.sum[j], st.sumsq[j], st.count[j]);
    fv_fed_stats_close(&st);
    return r;
}

/* ---- round vector ------------------------------------------------------------------- */

const char *fv_fed_kind_name(uint32_t kind)
{
    switch (kind) {
    case FV_FED_KIND_STATS:
        return "stats";
    case FV_FED_KIND_TRAIN:
        return "train";
    case FV_FED_KIND_DISTILL:
        return "distill";
    case FV_FED_KIND_EXPLAIN:
        return "explain";
    default:
        return "unknown";
    }
}

uint32_t fv_fed_kind_of_round(const fv_job_t *job, uint64_t round)
{
    if (round == 0)
        return FV_FED_KIND_STATS;
    if (round <= job->rounds)
        return FV_FED_KIND_TRAIN;
    uint64_t distill_end = (uint64_t)job->rounds + (job->distill.on ? job->distill.rounds : 0);
    if (round <= distill_end)
        return FV_FED_KIND_DISTILL;
    if (round <= fv_job_last_round(job))
        return FV_FED_KIND_EXPLAIN;
    return 0;
}

void fv_fed_layout_init(fv_fed_layout_t *l, size_t n_params, size_t n_models, size_t hist_bins,
                        size_t n_classes)
{
    size_t m = n_models < 1 ? 1 : n_models > FV_FED_MAX_MODELS ? FV_FED_MAX_MODELS : n_models;
    l->n_params = n_params;
    l->n_models = m;
    l->hist_bins = hist_bins;
    l->n_classes = n_classes;
    l->off_params = 0;
    l->off_n_train = n_params;
    l->off_hist_pos = l->off_n_train + 1;
    l->off_hist_neg = l->off_hist_pos + m * hist_bins;
    l->off_loss = l->off_hist_neg + m * hist_bins;
    l->off_n_val = l->off_loss + FV_FED_EXACT_WORDS;
    l->off_class_n = l->off_n_val + 1;
    l->off_class_right = l->off_class_n + n_classes;
    l->dim = l->off_class_right + m * n_classes;
    /* the plain vector: the same blocks, the loss in one element instead of 8 words */
    l->plain_dim = l->dim - FV_FED_EXACT_WORDS + 1;
}

int fv_fed_round_layout(const fv_job_t *job, uint32_t kind, size_t n_params, fv_fed_layout_t *ret)
{
    if (job == NULL || ret == NULL || (kind != FV_FED_KIND_TRAIN && kind != FV_FED_KIND_DISTILL) ||
        (kind == FV_FED_KIND_DISTILL && !job->distill.on))
        return FV_EINVAL;
    bool binary = fv_schema_positive(job->schema) != NULL;
    size_t m = kind == FV_FED_KIND_DISTILL ? (job->distill.quantize_int8 ? 3 : 2) : 1;
    fv_fed_layout_init(ret, n_params, m, binary ? job->hist_bins : 0,
                       binary ? 0 : fv_schema_n_classes(job->schema));
    return 0;
}

/* Plain-vector offsets: the round vector's, less the 7 words the loss saves. */
static size_t plain_off(const fv_fed_layout_t *l, size_t off)
{
    return off > l->off_loss ? off - (FV_FED_EXACT_WORDS - 1) : off;
}

static bool quant_params_ok(float clip, uint32_t bits)
{
    return bits >= 1 && bits <= 31 && isfinite(clip) && clip > 0;
}

/* The result's arrays for layout l (zeroed). */
static int result_alloc(const fv_fed_layout_t *l, fv_fed_result_t *res)
{
    size_t mb = l->n_models * l->hist_bins, mk = l->n_models * l->n_classes;
    res->n_models = l->n_models;
    res->n_classes = l->n_classes;
    res->delta_mean = malloc((l->n_params ? l->n_params : 1) * sizeof(float));
    res->hist_pos = calloc(mb ? mb : 1, sizeof(uint64_t));
    res->hist_neg = calloc(mb ? mb : 1, sizeof(uint64_t));
    res->class_n = calloc(l->n_classes ? l->n_classes : 1, sizeof(uint64_t));
    res->class_right = calloc(mk ? mk : 1, sizeof(uint64_t));
    if (!res->delta_mean || !res->hist_pos || !res->hist_neg || !res->class_n || !res->class_right)
        return FV_ENOMEM;
    return 0;
}

/* Every model's metrics from the summed counts, and model 0's as val_*. */
static void result_metrics(const fv_fed_layout_t *l, fv_fed_result_t *res)
{
    size_t B = l->hist_bins, K = l->n_classes;
    for (size_t m = 0; m < FV_FED_MAX_MODELS; m++) {
        fv_fed_model_metrics_t *mm = &res->model[m];
        mm->roc_auc = mm->pr_auc = mm->accuracy = NAN;
        if (m >= l->n_models)
            continue;
        double v;
        if (B > 0 &&
            fv_metrics_hist_roc_auc(res->hist_pos + m * B, res->hist_neg + m * B, B, &v) == 0)
            mm->roc_auc = v;
        if (B > 0 &&
            fv_metrics_hist_pr_auc(res->hist_pos + m * B, res->hist_neg + m * B, B, &v) == 0)
            mm->pr_auc = v;
        uint64_t rows = 0, right = 0;
        for (size_t k = 0; k < K; k++) {
            rows += res->class_n[k];
            right += res->class_right[m * K + k];
        }
        if (K > 0 && rows > 0)
            mm->accuracy = (double)right / (double)rows;
    }
    res->val_roc_auc = res->model[0].roc_auc;
    res->val_pr_auc = res->model[0].pr_auc;
    res->val_accuracy = res->model[0].accuracy;
    res->val_log_loss = res->n_val > 0 ? res->loss_sum / (double)res->n_val : NAN;
}

int fv_fed_encode(const fv_fed_layout_t *l, const fv_fed_local_t *in, float clip, uint32_t bits,
                  fv_rand_t *rng, uint32_t *out, fv_diag_t *d)
{
    int r;

    if (l == NULL || in == NULL || rng == NULL || out == NULL ||
        (l->n_params > 0 && in->delta == NULL) ||
        (l->hist_bins > 0 && (in->hist_pos == NULL || in->hist_neg == NULL)) ||
        (l->n_classes > 0 && (in->class_n == NULL || in->class_right == NULL)))
        return fv_diag_set(d, FV_EINVAL, "round encode: missing layout, input, rng or output");
    if (!quant_params_ok(clip, bits))
        return fv_diag_set(d, FV_EINVAL,
                           "round encode: clip %g must be finite and > 0, bits "
                           "%u in 1..31",
                           (double)clip, bits);
    if (!(isfinite(in->n_ref) && in->n_ref > 0))
        return fv_diag_set(d, FV_EINVAL, "round encode: n_ref %g must be finite and > 0",
                           in->n_ref);
    if (!isfinite(in->loss_sum))
        return fv_diag_set(d, FV_ENUMERIC, "round encode: validation loss sum is %g", in->loss_sum);

    /* Everything that can be refused is checked before the rng is touched. */
    if ((r = put_raw(out + l->off_n_train, in->n_train, "round: training rows", d)) < 0 ||
        (r = put_raw(out + l->off_n_val, in->n_val, "round: validation rows", d)) < 0)
        return r;
    for (size_t b = 0; b < l->n_models * l->hist_bins; b++)
        if ((r = put_raw(out + l->off_hist_pos + b, in->hist_pos[b], "round: histogram bin", d)) <
                0 ||
            (r = put_raw(out + l->off_hist_neg + b, in->hist_neg[b], "round: histogram bin", d)) <
                0)
            return r;
    for (size_t k = 0; k < l->n_classes; k++)
        if ((r = put_raw(out + l->off_class_n + k, in->class_n[k], "round: class rows", d)) < 0)
            return r;
    for (size_t k = 0; k < l->n_models * l->n_classes; k++)
        if ((r = put_raw(out + l->off_class_right + k, in->class_right[k],
                         "round: class rows right", d)) < 0)
            return r;
    if (fv_fed_exact_encode(in->loss_sum, out + l->off_loss) < 0)
        return fv_diag_set(d, FV_ERANGE, "round encode: validation loss sum %g beyond 2^79",
                           in->loss_sum);

    double w = (double)in->n_train / in->n_ref;
    float x[FED_STRIP], u[FED_STRIP];
    uint8_t raw[4 * FED_STRIP];
    for (size_t i = 0; i < l->n_params; i += FED_STRIP) {
        size_t m = l->n_params - i < FED_STRIP ? l->n_params - i : FED_STRIP;
        fv_rand_fill(rng, raw, 4 * m);
        for (size_t j = 0; j < m; j++) {
            const uint8_t *p = raw + 4 * j;
            uint32_t v =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            u[j] = (float)(v >> 8) * (1.0f / 16777216.0f); /* [0, 1), 24 bits */
            x[j] = (float)(w * (double)in->delta[i + j]);  /* NaN stays NaN; inf clips */
        }
        r = fv_fixed_quantize(m, x, u, clip, bits, out + l->off_params + i);
        if (r < 0)
            return fv_diag_set(d, r,
                               "round encode: the model update holds NaN near "
                               "parameter %zu",
                               i);
    }
    return 0;
}

static int fed_decode(const fv_fed_layout_t *l, const uint32_t *sum, uint32_t n_summands,
                      float clip, uint32_t bits, double n_ref, bool centered, fv_fed_result_t *ret,
                      fv_diag_t *d);

int fv_fed_decode(const fv_fed_layout_t *l, const uint32_t *sum, uint32_t n_summands, float clip,
                  uint32_t bits, double n_ref, fv_fed_result_t *ret, fv_diag_t *d)
{
    return fed_decode(l, sum, n_summands, clip, bits, n_ref, false, ret, d);
}

int fv_fed_decode_centered(const fv_fed_layout_t *l, const uint32_t *sum, uint32_t n_summands,
                           float clip, uint32_t bits, double n_ref, fv_fed_result_t *ret,
                           fv_diag_t *d)
{
    return fed_decode(l, sum, n_summands, clip, bits, n_ref, true, ret, d);
}

static int fed_decode(const fv_fed_layout_t *l, const uint32_t *sum, uint32_t n_summands,
                      float clip, uint32_t bits, double n_ref, bool centered, fv_fed_result_t *ret,
                      fv_diag_t *d)
{
    fv_fed_result_t res;
    int r;

    if (l == NULL || sum == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "round decode: missing layout, sum or output");
    if (!quant_params_ok(clip, bits))
        return fv_diag_set(d, FV_EINVAL,
                           "round decode: clip %g must be finite and > 0, bits "
                           "%u in 1..31",
                           (double)clip, bits);
    if (!(isfinite(n_ref) && n_ref > 0))
        return fv_diag_set(d, FV_EINVAL, "round decode: n_ref %g must be finite and > 0", n_ref);
    if (n_summands == 0)
        return fv_diag_set(d, FV_EEMPTY, "round decode: no agent contributed");
    if (n_summands > FV_FED_MAX_AGENTS)
        return fv_diag_set(d, FV_EOVERFLOW,
                           "round decode: %u agents, more than the %u "
                           "whose counts cannot wrap",
                           n_summands, FV_FED_MAX_AGENTS);
    if (fv_fixed_check_range(bits, n_summands) != 0)
        return fv_diag_set(d, FV_EOVERFLOW,
                           "round decode: %u agents * (2^%u - 1) can wrap the 32-bit sum; "
                           "lower secagg.bits or the cohort",
                           n_summands, bits);

    memset(&res, 0, sizeof(res));
    res.n_train = sum[l->off_n_train];
    if (res.n_train == 0)
        return fv_diag_set(d, FV_EEMPTY, "round decode: the cohort reported no training rows");
    res.weight_sum = (double)res.n_train / n_ref;
    res.n_val = sum[l->off_n_val];
    res.loss_sum = (double)fv_fed_exact_decode(sum + l->off_loss);
    if ((r = result_alloc(l, &res)) != 0)
        goto fail;
    if (centered)
        fv_fixed_dequantize_centered(l->n_params, sum + l->off_params, clip, bits, n_summands,
                                     res.delta_mean);
    else
        fv_fixed_dequantize(l->n_params, sum + l->off_params, clip, bits, n_summands,
                            res.delta_mean);
    for (size_t i = 0; i < l->n_params; i++)
        res.delta_mean[i] = (float)((double)res.delta_mean[i] / res.weight_sum);
    for (size_t b = 0; b < l->n_models * l->hist_bins; b++) {
        res.hist_pos[b] = sum[l->off_hist_pos + b];
        res.hist_neg[b] = sum[l->off_hist_neg + b];
    }
    for (size_t k = 0; k < l->n_classes; k++)
        res.class_n[k] = sum[l->off_class_n + k];
    for (size_t k = 0; k < l->n_models * l->n_classes; k++)
        res.class_right[k] = sum[l->off_class_right + k];
    result_metrics(l, &res);
    *ret = res;
    return 0;
fail:
    fv_fed_result_close(&res);
    return r;
}

double fv_fed_result_recall(const fv_fed_result_t *r, size_t model, size_t k)
{
    if (r == NULL || model >= r->n_models || k >= r->n_classes || r->class_n[k] == 0)
        return NAN;
    return (double)r->class_right[model * r->n_classes + k] / (double)r->class_n[k];
}

/* ---- plain vectors ------------------------------------------------------------------ */

int fv_fed_plain_encode(const fv_fed_layout_t *l, const fv_fed_local_t *in, float *out,
                        fv_diag_t *d)
{
    if (l == NULL || in == NULL || out == NULL || (l->n_params > 0 && in->delta == NULL) ||
        (l->hist_bins > 0 && (in->hist_pos == NULL || in->hist_neg == NULL)) ||
        (l->n_classes > 0 && (in->class_n == NULL || in->class_right == NULL)))
        return fv_diag_set(d, FV_EINVAL, "plain encode: missing layout, input or output");
    if (!(isfinite(in->n_ref) && in->n_ref > 0))
        return fv_diag_set(d, FV_EINVAL, "plain encode: n_ref %g must be finite and > 0",
                           in->n_ref);
    uint32_t w32;
    int r;
    size_t mb = l->n_models * l->hist_bins, mk = l->n_models * l->n_classes;
    if ((r = put_raw(&w32, in->n_train, "round: training rows", d)) < 0 ||
        (r = put_raw(&w32, in->n_val, "round: validation rows", d)) < 0)
        return r;
    for (size_t b = 0; b < mb; b++)
        if ((r = put_raw(&w32, in->hist_pos[b], "round: histogram bin", d)) < 0 ||
            (r = put_raw(&w32, in->hist_neg[b], "round: histogram bin", d)) < 0)
            return r;
    for (size_t k = 0; k < l->n_classes; k++)
        if ((r = put_raw(&w32, in->class_n[k], "round: class rows", d)) < 0)
            return r;
    for (size_t k = 0; k < mk; k++)
        if ((r = put_raw(&w32, in->class_right[k], "round: class rows right", d)) < 0)
            return r;
    double wk = (double)in->n_train / in->n_ref;
    for (size_t i = 0; i < l->n_params; i++)
        out[i] = (float)(wk * (double)in->delta[i]);
    out[plain_off(l, l->off_n_train)] = (float)in->n_train;
    for (size_t b = 0; b < mb; b++) {
        out[plain_off(l, l->off_hist_pos) + b] = (float)in->hist_pos[b];
        out[plain_off(l, l->off_hist_neg) + b] = (float)in->hist_neg[b];
    }
    out[plain_off(l, l->off_loss)] = (float)in->loss_sum;
    out[plain_off(l, l->off_n_val)] = (float)in->n_val;
    for (size_t k = 0; k < l->n_classes; k++)
        out[plain_off(l, l->off_class_n) + k] = (float)in->class_n[k];
    for (size_t k = 0; k < mk; k++)
        out[plain_off(l, l->off_class_right) + k] = (float)in->class_right[k];
    for (size_t i = 0; i < l->plain_dim; i++)
        if (!isfinite(out[i]))
            return fv_diag_set(d, FV_ENUMERIC, "plain encode: element %zu of the update is %g", i,
                               (double)out[i]);
    return 0;
}

/* A count element: a whole number in 0..FV_FED_RAW_MAX. */
static bool plain_count_ok(float x)
{
    return x >= 0 && x <= (float)FV_FED_RAW_MAX && x == floorf(x);
}

int fv_fed_plain_check(const fv_fed_layout_t *l, const float *v, fv_diag_t *d)
{
    if (l == NULL || v == NULL)
        return fv_diag_set(d, FV_EINVAL, "plain check: missing layout or vector");
    if (!(v[plain_off(l, l->off_n_train)] >= 1))
        return fv_diag_set(d, FV_EPEER,
                           "plain update: n_train (element %zu) is %g; an agent contributes "
                           "at least one training row",
                           plain_off(l, l->off_n_train), (double)v[plain_off(l, l->off_n_train)]);
    for (size_t i = 0; i < l->n_params; i++)
        if (!(isfinite(v[i]) && fabsf(v[i]) <= 0x1p32f))
            return fv_diag_set(d, FV_EPEER,
                               "plain update: parameter %zu is %g (finite, |x| <= 2^32 expected)",
                               i, (double)v[i]);
    size_t p_val = plain_off(l, l->off_n_val);
    size_t p_hp = plain_off(l, l->off_hist_pos), p_hn = plain_off(l, l->off_hist_neg);
    size_t p_cn = plain_off(l, l->off_class_n), p_cr = plain_off(l, l->off_class_right);
    for (size_t i = l->n_params; i < l->plain_dim; i++)
        if (i != plain_off(l, l->off_loss) && !plain_count_ok(v[i]))
            return fv_diag_set(d, FV_EPEER,
                               "plain update: element %zu is %g, a count (a whole number in "
                               "0..%u) expected",
                               i, (double)v[i], FV_FED_RAW_MAX);
    double n_val = v[p_val], loss = v[plain_off(l, l->off_loss)];
    if (!(loss >= 0 && loss <= n_val * 17.0))
        return fv_diag_set(d, FV_EPEER,
                           "plain update: validation loss sum %g outside [0, 17 * n_val = %g]",
                           loss, n_val * 17.0);
    for (size_t m = 0; m < l->n_models && l->hist_bins > 0; m++) {
        double s = 0;
        for (size_t b = 0; b < l->hist_bins; b++)
            s += (double)v[p_hp + m * l->hist_bins + b] + (double)v[p_hn + m * l->hist_bins + b];
        if (s != n_val)
            return fv_diag_set(d, FV_EPEER,
                               "plain update: model %zu's histograms hold %.0f rows, n_val is %.0f",
                               m, s, n_val);
    }
    if (l->n_classes > 0) {
        double s = 0;
        for (size_t k = 0; k < l->n_classes; k++)
            s += v[p_cn + k];
        if (s != n_val)
            return fv_diag_set(d, FV_EPEER, "plain update: class rows sum to %.0f, n_val is %.0f",
                               s, n_val);
        for (size_t m = 0; m < l->n_models; m++)
            for (size_t k = 0; k < l->n_classes; k++)
                if (v[p_cr + m * l->n_classes + k] > v[p_cn + k])
                    return fv_diag_set(d, FV_EPEER,
                                       "plain update: model %zu classifies %.0f rows of class %zu "
                                       "right, of %.0f",
                                       m, (double)v[p_cr + m * l->n_classes + k], k,
                                       (double)v[p_cn + k]);
    }
    return 0;
}

int fv_fed_plain_decode(const fv_fed_layout_t *l, const double *acc, uint32_t n_summands,
                        double n_ref, fv_fed_result_t *ret, fv_diag_t *d)
{
    fv_fed_result_t res;
    int r;
    if (l == NULL || acc == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "plain decode: missing layout, sum or output");
    if (!(isfinite(n_ref) && n_ref > 0))
        return fv_diag_set(d, FV_EINVAL, "plain decode: n_ref %g must be finite and > 0", n_ref);
    if (n_summands == 0)
        return fv_diag_set(d, FV_EEMPTY, "plain decode: no agent contributed");
    memset(&res, 0, sizeof(res));
    res.n_train = (uint64_t)llround(acc[plain_off(l, l->off_n_train)]);
    if (res.n_train == 0)
        return fv_diag_set(d, FV_EEMPTY, "plain decode: the cohort reported no training rows");
    res.weight_sum = (double)res.n_train / n_ref;
    res.n_val = (uint64_t)llround(acc[plain_off(l, l->off_n_val)]);
    res.loss_sum = acc[plain_off(l, l->off_loss)];
    if ((r = result_alloc(l, &res)) != 0) {
        fv_fed_result_close(&res);
        return r;
    }
    for (size_t i = 0; i < l->n_params; i++)
        res.delta_mean[i] = (float)(acc[i] / res.weight_sum);
    for (size_t b = 0; b < l->n_models * l->hist_bins; b++) {
        res.hist_pos[b] = (uint64_t)llround(acc[plain_off(l, l->off_hist_pos) + b]);
        res.hist_neg[b] = (uint64_t)llround(acc[plain_off(l, l->off_hist_neg) + b]);
    }
    for (size_t k = 0; k < l->n_classes; k++)
        res.class_n[k] = (uint64_t)llround(acc[plain_off(l, l->off_class_n) + k]);
    for (size_t k = 0; k < l->n_models * l->n_classes; k++)
        res.class_right[k] = (uint64_t)llround(acc[plain_off(l, l->off_class_right) + k]);
    result_metrics(l, &res);
    *ret = res;
    return 0;
}

void fv_fed_result_close(fv_fed_result_t *r)
{
    if (r == NULL)
        return;
    free(r->delta_mean);
    free(r->hist_pos);
    free(r->hist_neg);
    free(r->class_n);
    free(r->class_right);
    memset(r, 0, sizeof(*r));
}

double fv_fed_quant_bound(uint32_t n_summands, float clip, uint32_t bits, double weight_sum)
{
    if (!quant_params_ok(clip, bits) || !(weight_sum > 0))
        return NAN;
    double m = (double)((UINT64_C(1) << bits) - 1);
    return (double)n_summands * (double)clip * (2.0 / m + 0x1p-22) / weight_sum;
}

/* ---- cheap checks --------------------------------------------------------------------- */

int fv_fed_update_clip(float *delta, size_t n, double w, double max_norm, double *ret_norm,
                       bool *ret_clipped, fv_diag_t *d)
{
    if ((n > 0 && delta == NULL) || ret_norm == NULL || ret_clipped == NULL)
        return fv_diag_set(d, FV_EINVAL, "update clip: missing update or output");
    if (!(isfinite(w) && w >= 0) || !(isfinite(max_norm) && max_norm >= 0))
        return fv_diag_set(d, FV_EINVAL, "update clip: weight %g, bound %g", w, max_norm);
    double ss = 0; /* |w delta_i| <= 65537 * FLT_MAX: squares and their sum stay finite */
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(delta[i]))
            return fv_diag_set(d, FV_ENUMERIC,
                               "the model update's parameter %zu is %g; a non-finite update is "
                               "never sent",
                               i, (double)delta[i]);
        double a = w * (double)delta[i];
        ss += a * a;
    }
    double norm = sqrt(ss);
    bool clipped = max_norm > 0 && norm > max_norm;
    if (clipped) {
        double s = max_norm / norm;
        for (size_t i = 0; i < n; i++)
            delta[i] = (float)(s * (double)delta[i]);
    }
    *ret_norm = norm;
    *ret_clipped = clipped;
    return 0;
}

static bool sum_count_ok(uint64_t x, uint64_t cap)
{
    return x <= cap;
}

/* The bound on the L2 norm (real units) of the summed distributed noise of n agents, each
 * adding N_Z(0, s2) to every parameter word (s2 from the job's privacy plan,
 * fv_privacy.h): the sum has variance n s2 per coordinate and is sub-Gaussian with that
 * parameter (Canonne, Kamath and Steinke 2020, Corollary 9, and sums of independent
 * sub-Gaussians), so its norm exceeds sqrt(n s2) (sqrt(P) + t) with probability at most
 * about exp(-t^2 / 2); the bound takes 2 sqrt(P) + 20 (generous: an honest round must
 * never fail it), times one quantization step 2 clip / (2^bits - 1). It also refuses a
 * sum with no room for that noise (fv_privacy_ddg_fits for this cohort: the centered
 * decode reads the right value while the noise stays within 2^31 - n (2^bits - 1) / 2 of
 * the middle). */
static int ddg_noise_norm(const fv_fed_layout_t *l, const fv_job_t *job, uint32_t n_summands,
                          double n_ref, double *ret, fv_diag_t *d)
{
    fv_privacy_plan_t *p = malloc(sizeof *p);
    if (p == NULL)
        return fv_diag_set(d, FV_ENOMEM, "sum check: out of memory");
    uint64_t nr = n_ref >= 1 && n_ref < 0x1p63 ? (uint64_t)n_ref : 1;
    int r = fv_privacy_plan(job, nr, l->n_params, nr, p, d);
    if (r == 0)
        r = fv_privacy_ddg_fits(p, job->secagg.bits, n_summands, d);
    double s2 = (double)p->ddg_sigma2;
    free(p);
    if (r != 0)
        return r;
    double q = (double)((UINT64_C(1) << job->secagg.bits) - 1);
    double sd = sqrt((double)n_summands * s2);
    *ret = sd * (2 * sqrt((double)l->n_params) + 20) * 2.0 * (double)job->secagg.clip / q;
    return 0;
}

int fv_fed_sum_check(const fv_fed_layout_t *l, const fv_job_t *job, const uint32_t *words,
                     uint32_t n_summands, double n_ref, const fv_fed_result_t *res, fv_diag_t *d)
{
    if (l == NULL || job == NULL || res == NULL || n_summands == 0 ||
        (l->n_params > 0 && res->delta_mean == NULL))
        return fv_diag_set(d, FV_EINVAL, "sum check: missing layout, job, result or summands");
    uint64_t n = n_summands, cap = n * FV_FED_RAW_MAX;
    uint64_t per_train = n_ref >= 1 && n_ref < FV_FED_RAW_MAX ? (uint64_t)n_ref : FV_FED_RAW_MAX;
    size_t B = l->hist_bins, K = l->n_classes, M = l->n_models;
    if (res->n_train < n || res->n_train > n * per_train)
        return fv_diag_set(d, FV_EPEER,
                           "sum check: n_train: the %u contributors report %" PRIu64
                           " training rows, outside [%" PRIu64 ", %" PRIu64
                           "] (at least 1 and at most min(n_ref %.0f, %u) each)",
                           n_summands, res->n_train, n, n * per_train, n_ref, FV_FED_RAW_MAX);
    if (!sum_count_ok(res->n_val, cap))
        return fv_diag_set(d, FV_EPEER,
                           "sum check: n_val: %" PRIu64 " validation rows from %u contributors, "
                           "more than %" PRIu64,
                           res->n_val, n_summands, cap);
    for (size_t m = 0; m < M && B > 0; m++) {
        uint64_t rows = 0;
        for (size_t b = 0; b < B; b++) {
            uint64_t p = res->hist_pos[m * B + b], q = res->hist_neg[m * B + b];
            if (!sum_count_ok(p, cap) || !sum_count_ok(q, cap))
                return fv_diag_set(d, FV_EPEER,
                                   "sum check: range: model %zu's histogram bin %zu holds %" PRIu64
                                   " positive and %" PRIu64 " negative rows, more than %" PRIu64
                                   " from %u contributors",
                                   m, b, p, q, cap, n_summands);
            rows += p + q;
        }
        if (rows != res->n_val)
            return fv_diag_set(d, FV_EPEER,
                               "sum check: histograms: model %zu's summed histograms hold %" PRIu64
                               " rows, the summed n_val is %" PRIu64,
                               m, rows, res->n_val);
    }
    if (K > 0) {
        uint64_t rows = 0;
        for (size_t k = 0; k < K; k++) {
            if (!sum_count_ok(res->class_n[k], cap))
                return fv_diag_set(d, FV_EPEER,
                                   "sum check: range: class %zu has %" PRIu64
                                   " validation rows, more than %" PRIu64 " from %u contributors",
                                   k, res->class_n[k], cap, n_summands);
            rows += res->class_n[k];
        }
        if (rows != res->n_val)
            return fv_diag_set(d, FV_EPEER,
                               "sum check: class rows: the summed class rows are %" PRIu64
                               ", the summed n_val is %" PRIu64,
                               rows, res->n_val);
        for (size_t m = 0; m < M; m++)
            for (size_t k = 0; k < K; k++)
                if (res->class_right[m * K + k] > res->class_n[k])
                    return fv_diag_set(d, FV_EPEER,
                                       "sum check: class rows: model %zu classifies %" PRIu64
                                       " rows of class %zu right, of %" PRIu64,
                                       m, res->class_right[m * K + k], k, res->class_n[k]);
    }
    if (!(res->loss_sum >= 0 && res->loss_sum <= 17.0 * (double)res->n_val))
        return fv_diag_set(d, FV_EPEER,
                           "sum check: loss: the summed validation loss %g is outside [0, 17 * "
                           "n_val = %g]",
                           res->loss_sum, 17.0 * (double)res->n_val);
    double slack = 0;
    bool ddg = job->privacy.on && job->privacy.mode == FV_PRIVACY_DISTRIBUTED;
    if (words != NULL && ddg && job->max_update_norm > 0) {
        /* distributed DP: the words carry the agents' discrete Gaussian noise, so they may
         * leave [0, n (2^bits - 1)] (decoded centered): no range check; the norm check's
         * slack gets the summed noise's norm (this file's note). Only when there is a norm
         * check: the plan's calibration costs up to a second. */
        double noise = 0;
        int r = ddg_noise_norm(l, job, n_summands, n_ref, &noise, d);
        if (r != 0)
            return r;
        double q = (double)((UINT64_C(1) << job->secagg.bits) - 1);
        slack =
            sqrt((double)l->n_params) * (double)n * (double)job->secagg.clip * (2.0 / q + 0x1p-22) +
            noise;
    } else if (words != NULL && !ddg) {
        uint64_t qmax = n * ((UINT64_C(1) << job->secagg.bits) - 1);
        for (size_t i = 0; i < l->n_params; i++)
            if (words[l->off_params + i] > qmax)
                return fv_diag_set(d, FV_EPEER,
                                   "sum check: range: parameter %zu's summed word is %" PRIu32
                                   ", more than %u contributors * (2^%u - 1) = %" PRIu64,
                                   i, words[l->off_params + i], n_summands, job->secagg.bits, qmax);
        double q = (double)((UINT64_C(1) << job->secagg.bits) - 1);
        slack =
            sqrt((double)l->n_params) * (double)n * (double)job->secagg.clip * (2.0 / q + 0x1p-22);
    }
    if (job->max_update_norm > 0) {
        double ss = 0;
        for (size_t i = 0; i < l->n_params; i++) {
            double a = (double)res->delta_mean[i] * res->weight_sum;
            ss += a * a;
        }
        double norm = sqrt(ss), bound = ((double)n * job->max_update_norm + slack) * (1 + 0x1p-16);
        if (!(norm <= bound))
            return fv_diag_set(d, FV_EPEER,
                               "sum check: norm: the summed update's L2 norm is %g, more than "
                               "%u contributors * max_update_norm %g (+ quantization %g)",
                               norm, n_summands, job->max_update_norm, slack);
    }
    return 0;
}

/* ---- server strategies -------------------------------------------------------------- */

struct fv_fed_server_opt {
    fv_strategy_kind_t kind;
    size_t n;
    double lr, beta1, beta2, tau;
    double *m, *v; /* adaptive strategies only */
};

int fv_fed_server_opt_new(const fv_job_t *job, size_t n_params, fv_fed_server_opt_t **ret)
{
    if (job == NULL || ret == NULL)
        return FV_EINVAL;
    fv_strategy_kind_t k = job->strategy.kind;
    bool adaptive = k == FV_STRATEGY_FEDADAM || k == FV_STRATEGY_FEDYOGI;
    if (!adaptive && k != FV_STRATEGY_FEDAVG && k != FV_STRATEGY_FEDPROX)
        return FV_EINVAL;
    if (adaptive &&
        !(isfinite(job->strategy.server_lr) && job->strategy.server_lr > 0 &&
          job->strategy.beta1 >= 0 && job->strategy.beta1 < 1 && job->strategy.beta2 >= 0 &&
          job->strategy.beta2 < 1 && isfinite(job->strategy.tau) && job->strategy.tau > 0))
        return FV_EINVAL;

    fv_fed_server_opt_t *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return FV_ENOMEM;
    o->kind = k;
    o->n = n_params;
    o->lr = job->strategy.server_lr;
    o->beta1 = job->strategy.beta1;
    o->beta2 = job->strategy.beta2;
    o->tau = job->strategy.tau;
    if (adaptive) {
        o->m = calloc(n_params ? n_params : 1, sizeof(double));
        o->v = malloc((n_params ? n_params : 1) * sizeof(double));
        if (o->m == NULL || o->v == NULL) {
            fv_fed_server_opt_free(o);
            return FV_ENOMEM;
        }
        for (size_t i = 0; i < n_params; i++)
            o->v[i] = o->tau * o->tau;
    }
    *ret = o;
    return 0;
}

int fv_fed_server_opt_apply(fv_fed_server_opt_t *o, float *global, const float *delta_mean)
{
    if (o == NULL || (o->n > 0 && (global == NULL || delta_mean == NULL)))
        return FV_EINVAL;
    for (size_t i = 0; i < o->n; i++)
        if (!isfinite(delta_mean[i]))
            return FV_ENUMERIC;

    switch (o->kind) {
    case FV_STRATEGY_FEDAVG:
    case FV_STRATEGY_FEDPROX:
        for (size_t i = 0; i < o->n; i++)
            global[i] = (float)((double)global[i] + (double)delta_mean[i]);
        return 0;
    case FV_STRATEGY_FEDADAM:
    case FV_STRATEGY_FEDYOGI:
        for (size_t i = 0; i < o->n; i++) {
            double dl = delta_mean[i], d2 = dl * dl;
            o->m[i] = o->beta1 * o->m[i] + (1 - o->beta1) * dl;
            if (o->kind == FV_STRATEGY_FEDADAM) {
                o->v[i] = o->beta2 * o->v[i] + (1 - o->beta2) * d2;
            } else {
                double g = o->v[i] - d2;
                double sg = (g > 0) - (g < 0);
                o->v[i] = o->v[i] - (1 - o->beta2) * d2 * sg;
            }
            global[i] = (float)((double)global[i] + o->lr * o->m[i] / (sqrt(o->v[i]) + o->tau));
        }
        return 0;
    }
    return FV_EINVAL;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int fv_fed_server_opt_save(const fv_fed_server_opt_t *o, uint8_t **ret_buf, size_t *ret_len)
{
    if (o == NULL || ret_buf == NULL || ret_len == NULL)
        return FV_EINVAL;
    if (o->m == NULL) {
        *ret_buf = NULL;
        *ret_len = 0;
        return 0;
    }
    if (o->n > (SIZE_MAX - 16) / 16)
        return FV_ETOOBIG;
    size_t len = 16 + 16 * o->n;
    uint8_t *b = malloc(len);
    if (b == NULL)
        return FV_ENOMEM;
    memcpy(b, "FVSO", 4);
    for (int i = 0; i < 4; i++)
        b[4 + i] = (uint8_t)((uint32_t)o->kind >> (8 * i));
    put_le64(b + 8, o->n);
    for (size_t i = 0; i < o->n; i++) {
        uint64_t u;
        memcpy(&u, &o->m[i], 8);
        put_le64(b + 16 + 8 * i, u);
        memcpy(&u, &o->v[i], 8);
        put_le64(b + 16 + 8 * (o->n + i), u);
    }
    *ret_buf = b;
    *ret_len = len;
    return 0;
}

int fv_fed_server_opt_load(fv_fed_server_opt_t *o, const uint8_t *buf, size_t len)
{
    if (o == NULL || (buf == NULL && len > 0))
        return FV_EINVAL;
    if (o->m == NULL)
        return len == 0 ? 0 : FV_ECORRUPT;
    if (len != 16 + 16 * o->n || memcmp(buf, "FVSO", 4) != 0 ||
        (uint32_t)(buf[4] | buf[5] << 8 | buf[6] << 16 | (uint32_t)buf[7] << 24) !=
            (uint32_t)o->kind ||
        get_le64(buf + 8) != o->n)
        return FV_ECORRUPT;
    for (size_t i = 0; i < o->n; i++) {
        uint64_t u = get_le64(buf + 16 + 8 * i);
        double m, v;
        memcpy(&m, &u, 8);
        u = get_le64(buf + 16 + 8 * (o->n + i));
        memcpy(&v, &u, 8);
        if (!isfinite(m) || !isfinite(v))
            return FV_ECORRUPT;
    }
    for (size_t i = 0; i < o->n; i++) {
        uint64_t u = get_le64(buf + 16 + 8 * i);
        memcpy(&o->m[i], &u, 8);
        u = get_le64(buf + 16 + 8 * (o->n + i));
        memcpy(&o->v[i], &u, 8);
    }
    return 0;
}

void fv_fed_server_opt_free(fv_fed_server_opt_t *o)
{
    if (o == NULL)
        return;
    free(o->m);
    free(o->v);
    free(o);
}
