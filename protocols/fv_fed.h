/* fv_fed.h - the arithmetic of federated rounds: what each agent adds to the secure sum,
 * what the coordinator reads out of it, and the server-side strategies. Pure: no I/O.
 *
 * Everything an agent contributes travels as ONE vector of uint32 words summed mod 2^32
 * (by SecAgg, or in the clear when a job turns SecAgg off), so the coordinator learns
 * sums over the cohort and nothing per bank. Three encodings share a vector:
 *   raw     a non-negative integer (a count) in one word; the cohort's sum must stay
 *           below 2^32: every addend is at most FV_FED_RAW_MAX = floor((2^32 - 1) /
 *           FV_FED_MAX_AGENTS) = 65537 (a larger count is FV_EOVERFLOW at encode time), so
 *           FV_FED_MAX_AGENTS addends sum to at most 2^32 - 1.
 *   exact   a real number as a signed 128-bit fixed-point integer X = round(x * 2^32)
 *           (round half away from zero), two's complement, cut into 8 limbs of 16 bits,
 *           least significant first, one limb per word. A word then sums at most
 *           FV_FED_MAX_AGENTS values below 2^16, so no carry is lost; the decoder
 *           recombines the limb sums in 128-bit arithmetic (mod 2^128). Encodable:
 *           finite |x| < FV_FED_EXACT_MAX_ABS = 2^79, so |X| <= 2^111 and a cohort's
 *           fixed-point sum is below 65535 * 2^111 < 2^127 (|real sum| < 2^95): it never
 *           wraps and is exact; decoding converts it to long double once (64-bit
 *           significand: exact while |sum| < 2^32, else one rounding, relative 2^-64).
 *           Used for moments (feature sums and sums of squares) and loss sums.
 *   fixed   an element of a model update, clipped to [-clip, clip] and stochastically
 *           rounded to `bits` bits (kernels/fv_fixed.h): the cohort's sum decodes with an
 *           error of at most n * 2clip / (2^bits - 1) per element (the documented
 *           quantization bound), and n * (2^bits - 1) < 2^32 is required.
 *
 * Stats vector (once per job, before round 1), for the job's schema:
 *   [n_rows raw] [per class: count raw] [per numeric column: count raw, sum exact,
 *   sumsq exact] [per categorical column, per vocabulary entry + <other>: count raw]
 * From its sum the coordinator and every agent build the same global standardization
 * (fv_preproc_from_moments), without any bank's own moments being revealed.
 *
 * Round vector (every training and distill round; fv_fed_round_layout is the ONE place
 * that says, from the job and the round kind, which blocks a round's vector holds: agent
 * and coordinator both call it). For a model of P parameters, m models evaluated on the
 * validation rows (1 in a training round: the global model; 2 in a distill round: the
 * student, then the teacher; 3 with quantize_int8: then the int8 student), B histogram
 * bins per model (the job's hist_bins for a binary schema, 0 for a multi-class one) and
 * K per-class counts (the schema's classes for a multi-class schema, 0 for a binary one):
 *   [P fixed: w_k * delta_k] [n_train raw] [m*B raw: histograms of each model's score on
 *   the local validation rows of the positive class, model after model] [m*B raw: the
 *   same for the negative class] [loss sum exact: sum of per-row log loss of model 0 on
 *   the validation rows] [n_val raw] [K raw: validation rows of each class] [m*K raw:
 *   validation rows of each class that each model classifies right (argmax), model
 *   after model]
 * delta_k = local model after training - global model; w_k = n_train_k / n_ref where
 * n_ref is the job's total training rows (known to all after the stats round). The
 * coordinator reads sum(w_k delta_k) / sum(w_k) (the FedAvg weighted mean over the
 * agents that actually contributed), exact global validation ROC AUC / PR AUC (binary:
 * from the summed histograms, fv_metrics_hist_*), accuracy and per-class recall
 * (multi-class: from the summed counts) of every model, and model 0's mean log loss.
 * A binary job's vector is what it was before per-class counts existed (K = 0).
 *
 * Plain vector (a job with "secagg": "off"; float32 over TLS, one element per word of
 * the round vector's blocks, the update unquantized): [P: w_k * delta_k] [n_train]
 * [m*B hist pos] [m*B hist neg] [loss sum] [n_val] [K class rows] [m*K class right];
 * plain_dim elements. Counts are exact in float32 (below 2^24: FV_FED_RAW_MAX keeps
 * them there). The coordinator sees each agent's plain vector, so it checks each one
 * (fv_fed_plain_check) before adding it to the accumulator.
 */
#ifndef FV_FED_H
#define FV_FED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_crypto.h"
#include "fv_dataset.h"
#include "fv_error.h"
#include "fv_job.h"
#include "fv_schema.h"

#define FV_FED_MAX_AGENTS 65535u
#define FV_FED_EXACT_WORDS 8
#define FV_FED_EXACT_FRAC_BITS 32
#define FV_FED_EXACT_MAX_ABS 0x1p79 /* exact encoding: |x| < 2^79 */
#define FV_FED_RAW_MAX 65537u       /* raw encoding: a count <= (2^32 - 1) / 65535 */

/* ---- exact encoding (exposed for tests) --------------------------------------------- */
/* FV_ERANGE if x is not finite or |x| >= FV_FED_EXACT_MAX_ABS (out untouched then). */
int fv_fed_exact_encode(double x, uint32_t out[FV_FED_EXACT_WORDS]);
/* Sum of limbs -> the real sum (as long double; exact fixed point converted once). */
long double fv_fed_exact_decode(const uint32_t sum[FV_FED_EXACT_WORDS]);

/* ---- stats vector ------------------------------------------------------------------- */
typedef struct fv_fed_stats_layout {
    const fv_schema_t *schema; /* borrowed */
    size_t n_classes;
    size_t dim;
} fv_fed_stats_layout_t;
/* FV_EINVAL for an open schema (fv_schema_is_open): resolve it first. */
int fv_fed_stats_layout_init(const fv_schema_t *s, fv_fed_stats_layout_t *ret);
/* This agent's words for rows[0..n) of ds (rows NULL = all). out has l->dim words. */
int fv_fed_stats_encode(const fv_fed_stats_layout_t *l, const fv_dataset_t *ds, const size_t *rows,
                        size_t n, uint32_t *out, fv_diag_t *d);
typedef struct fv_fed_stats {
    uint64_t n_rows;
    uint64_t *class_counts;      /* n_classes */
    double *count, *sum, *sumsq; /* per schema column (0 for non-numeric): feeds
                                    fv_preproc_from_moments */
    uint64_t *category_counts;   /* per categorical column, vocabulary + <other>, in
                                    schema order, concatenated */
    size_t n_category_counts;
} fv_fed_stats_t;
int fv_fed_stats_decode(const fv_fed_stats_layout_t *l, const uint32_t *sum, fv_fed_stats_t *ret,
                        fv_diag_t *d);
void fv_fed_stats_close(fv_fed_stats_t *st);
/* One agent's stats vector as received in the clear (a job with "secagg": "off"): every
 * count at most FV_FED_RAW_MAX, every limb of an exact value below 2^16, the checks of
 * fv_fed_stats_decode (class counts sum to the rows, ...), and per numeric column
 * sum^2 <= count * sumsq. FV_EPEER naming the word or column. */
int fv_fed_stats_check(const fv_fed_stats_layout_t *l, const uint32_t *v, fv_diag_t *d);

/* ---- round vector ------------------------------------------------------------------- */
/* Round kinds: the wire's ROUND_START kind and the state's round kind. */
typedef enum fv_fed_kind {
    FV_FED_KIND_STATS = 1,   /* round 0: the stats vector */
    FV_FED_KIND_TRAIN = 2,   /* rounds 1..rounds */
    FV_FED_KIND_DISTILL = 3, /* rounds+1..rounds+distill.rounds (a job with "distill") */
    FV_FED_KIND_EXPLAIN = 4, /* fv_job_last_round (a job with "explain": true) */
} fv_fed_kind_t;
/* "stats", "train", "distill", "explain"; "unknown" otherwise. */
const char *fv_fed_kind_name(uint32_t kind);
/* The kind of round `round` of job: 0 stats, 1..rounds train, then distill (a job with a
 * "distill" section), then explain (a job with "explain": the last round); 0 (not a kind)
 * beyond fv_job_last_round. */
uint32_t fv_fed_kind_of_round(const fv_job_t *job, uint64_t round);

#define FV_FED_MAX_MODELS 3
typedef struct fv_fed_layout {
    size_t n_params;  /* P */
    size_t n_models;  /* m: models evaluated on the validation rows, 1..3 */
    size_t hist_bins; /* B per model */
    size_t n_classes; /* K */
    size_t off_params, off_n_train, off_hist_pos, off_hist_neg, off_loss, off_n_val, off_class_n,
        off_class_right;
    size_t dim;       /* words of the round vector */
    size_t plain_dim; /* elements of the plain vector */
} fv_fed_layout_t;
/* The layout from its sizes (tests; daemons use fv_fed_round_layout). n_models is
 * clamped to 1..FV_FED_MAX_MODELS. */
void fv_fed_layout_init(fv_fed_layout_t *l, size_t n_params, size_t n_models, size_t hist_bins,
                        size_t n_classes);
/* The layout of a training (FV_FED_KIND_TRAIN, n_params of the job's model) or distill
 * round (FV_FED_KIND_DISTILL, n_params of the student) of job. FV_EINVAL for another kind
 * or a distill round of a job without distillation. */
int fv_fed_round_layout(const fv_job_t *job, uint32_t kind, size_t n_params, fv_fed_layout_t *ret);

typedef struct fv_fed_local {
    const float *delta; /* n_params: local - global */
    uint32_t n_train;
    double n_ref;             /* > 0: total training rows of the job */
    const uint64_t *hist_pos; /* n_models * hist_bins each (NULL when hist_bins is 0) */
    const uint64_t *hist_neg;
    double loss_sum;
    uint32_t n_val;
    const uint64_t *class_n;     /* n_classes (NULL when n_classes is 0) */
    const uint64_t *class_right; /* n_models * n_classes */
} fv_fed_local_t;
/* Writes l->dim words (undefined on error). Parameter k's word is
 * fv_fixed_quantize((float)(n_train / n_ref * delta_k), u_k, clip, bits); the variates u_k
 * are drawn as fv_secagg_quantize draws them: parameters in strips of 1024, one
 * fv_rand_fill of 4m bytes per strip of m, parameter j of a strip taking the little-endian
 * uint32 at bytes 4j..4j+3, u = (word >> 8) * 2^-24 (24-bit uniform in [0, 1)). The rng is
 * not touched when a count, the loss or an argument is refused. The caller checks
 * cohort * (2^bits - 1) < 2^32 (fv_fixed_check_range; decode refuses it). FV_EINVAL for
 * bad bits/clip/n_ref, FV_EOVERFLOW when a count exceeds FV_FED_RAW_MAX, FV_ERANGE for a
 * loss sum beyond FV_FED_EXACT_MAX_ABS, FV_ENUMERIC for NaN (delta or loss). */
int fv_fed_encode(const fv_fed_layout_t *l, const fv_fed_local_t *in, float clip, uint32_t bits,
                  fv_rand_t *rng, uint32_t *out, fv_diag_t *d);

/* What the cohort's sum says of one evaluated model (NaN where undefined: AUCs of a
 * multi-class job, accuracy of a binary one, anything without validation rows). */
typedef struct fv_fed_model_metrics {
    double roc_auc, pr_auc, accuracy;
} fv_fed_model_metrics_t;

typedef struct fv_fed_result {
    float *delta_mean; /* n_params: sum(w delta) / sum(w) (malloc'd) */
    double weight_sum; /* sum(w) = sum(n_train) / n_ref */
    uint64_t n_train;
    uint64_t *hist_pos, *hist_neg; /* n_models * hist_bins each (malloc'd) */
    double loss_sum;
    uint64_t n_val;
    uint64_t *class_n;     /* n_classes (malloc'd) */
    uint64_t *class_right; /* n_models * n_classes (malloc'd) */
    size_t n_models, n_classes;
    fv_fed_model_metrics_t model[FV_FED_MAX_MODELS]; /* per evaluated model */
    /* model 0's (the global model, or the student): */
    double val_roc_auc, val_pr_auc, val_log_loss, val_accuracy;
} fv_fed_result_t;
/* sum: l->dim words, the mod-2^32 sum of n_summands agents' vectors. FV_EEMPTY if the sum
 * holds no training rows (or n_summands is 0); FV_EOVERFLOW if n_summands >
 * FV_FED_MAX_AGENTS or n_summands * (2^bits - 1) >= 2^32; FV_EINVAL for bad bits, clip or
 * n_ref. *ret written only on success. */
int fv_fed_decode(const fv_fed_layout_t *l, const uint32_t *sum, uint32_t n_summands, float clip,
                  uint32_t bits, double n_ref, fv_fed_result_t *ret, fv_diag_t *d);
/* The same for a distributed-DP job (fv_job.h, privacy.mode distributed), whose agents add
 * discrete Gaussian noise to their parameter words: those are read centered mod 2^32
 * (fv_fixed_dequantize_centered), so a noisy sum below 0 or above n_summands * (2^bits -
 * 1) decodes to its signed value; the counts and the loss decode as fv_fed_decode's. */
int fv_fed_decode_centered(const fv_fed_layout_t *l, const uint32_t *sum, uint32_t n_summands,
                           float clip, uint32_t bits, double n_ref, fv_fed_result_t *ret,
                           fv_diag_t *d);
/* Recall of class k of model i (NaN when the class has no validation rows). */
double fv_fed_result_recall(const fv_fed_result_t *r, size_t model, size_t k);
void fv_fed_result_close(fv_fed_result_t *r);

/* Plain vectors. encode: l->plain_dim floats of in (the weighted update unquantized);
 * FV_ENUMERIC for a non-finite element, FV_EOVERFLOW for a count above FV_FED_RAW_MAX.
 * check: one agent's plain vector as received: every element finite, |w delta| <= 2^32,
 * counts whole numbers in 0..FV_FED_RAW_MAX, n_train >= 1 (checked first), every model's histogram
 * bins summing to n_val, class rows summing to n_val, right <= rows per class, loss sum in [0,
 * n_val * 17] (log loss of a probability clipped at 1e-7 is below 16.2); FV_EPEER with the first
 * bad element named. decode: acc holds the element-wise sum (in double) of n_summands checked plain
 * vectors. */
int fv_fed_plain_encode(const fv_fed_layout_t *l, const fv_fed_local_t *in, float *out,
                        fv_diag_t *d);
int fv_fed_plain_check(const fv_fed_layout_t *l, const float *v, fv_diag_t *d);
int fv_fed_plain_decode(const fv_fed_layout_t *l, const double *acc, uint32_t n_summands,
                        double n_ref, fv_fed_result_t *ret, fv_diag_t *d);

/* ---- cheap checks (issue 16's first piece) ------------------------------------------ */
/* The honest agent's norm clip of its update block (fv_job.h, max_update_norm): the block
 * is a = w * delta, w = n_train / n_ref >= 0 (finite). Computes ||a||_2 in double, in
 * index order, into *ret_norm (the norm BEFORE clipping). If max_norm > 0 and ||a|| >
 * max_norm, every delta_i is scaled by max_norm / ||a|| (in double, rounded to float
 * once) and *ret_clipped is true, so the block the encoders then form, (float)(w *
 * delta_i), has norm max_norm within a relative 2^-21 (two float32 roundings per element,
 * 2^-23, plus the double sums). max_norm 0: no bound, the norm only. FV_ENUMERIC, naming
 * the first parameter, when an element of delta is NaN or infinite (the agent must not
 * send it: it sits the round out); FV_EINVAL for a bad w or max_norm. delta and ret_*
 * untouched on error. */
int fv_fed_update_clip(float *delta, size_t n, double w, double max_norm, double *ret_norm,
                       bool *ret_clipped, fv_diag_t *d);
/* The coordinator's consistency checks of a decoded round sum (fv_fed_decode's or
 * fv_fed_plain_decode's res, from n_summands contributors), before anything uses it. A
 * SecAgg coordinator sees only the sum, so this is where a lie in the counts shows:
 *   - n_train in [n_summands, n_summands * min(n_ref, FV_FED_RAW_MAX)] (every contributor
 *     has at least one training row; an honest agent refuses a ROUND_START whose n_ref is
 *     below its own rows, fv_around_check_start, and encodes no count above RAW_MAX);
 *   - n_val and every summed count (histogram bin, class rows, rows right) at most
 *     n_summands * FV_FED_RAW_MAX (non-negative by construction: a negative addend wraps
 *     mod 2^32 to a huge count, which this catches);
 *   - per model, the positive and negative histograms together hold n_val rows; class
 *     rows sum to n_val; per model and class, rows right <= rows of the class;
 *   - the loss sum in [0, 17 * n_val] (a clipped probability's log loss is below 16.2);
 *   - words != NULL (the SecAgg sum, l->dim words): every parameter word at most
 *     n_summands * (2^bits - 1), the most honest quantized words can sum to (not for a
 *     distributed-DP job, whose noise may take them anywhere mod 2^32: its norm bound gets
 *     the summed noise's norm as more slack, fed.c's ddg_noise_norm);
 *   - job->max_update_norm > 0: ||sum of the blocks|| = ||delta_mean * weight_sum|| at
 *     most n_summands * max_update_norm (triangle inequality) plus the quantization's
 *     slack (SecAgg: sqrt(P) * n_summands * clip * (2 / (2^bits - 1) + 2^-22)) and a
 *     relative 2^-16 for float roundings. The agents' declared JOB_ACCEPT rows are not
 *     used (agents may withhold them).
 * FV_EPEER with a sentence naming the check and its numbers (the round is refused and run
 * again); FV_EINVAL for missing arguments. */
int fv_fed_sum_check(const fv_fed_layout_t *l, const fv_job_t *job, const uint32_t *words,
                     uint32_t n_summands, double n_ref, const fv_fed_result_t *res, fv_diag_t *d);

/* The bound on |decoded delta_mean - true weighted mean| per element, where the true mean
 * is sum(w_k delta_k) / sum(w_k) in float64 and every |w_k delta_k| <= clip (clipping
 * error is not covered):
 *     n_summands * clip * (2 / (2^bits - 1) + 2^-22) / weight_sum
 * (one quantization step 2 clip / (2^bits - 1) per agent, plus 4 * 2^-24 relative for the
 * three float32 roundings and double arithmetic; see protocols/fed.c). NaN for bad
 * arguments. */
double fv_fed_quant_bound(uint32_t n_summands, float clip, uint32_t bits, double weight_sum);

/* ---- server strategies -------------------------------------------------------------- */
/* FedAvg and FedProx: global += delta_mean. FedAdam / FedYogi (Reddi et al., "Adaptive
 * Federated Optimization", ICLR 2021): m = b1 m + (1-b1) d; v = b2 v + (1-b2) d^2 (Adam)
 * or v = v - (1-b2) d^2 sign(v - d^2) (Yogi); global += server_lr * m / (sqrt(v) + tau).
 * m starts at 0, v at tau^2 (as in the paper). */
typedef struct fv_fed_server_opt fv_fed_server_opt_t;
int fv_fed_server_opt_new(const fv_job_t *job, size_t n_params, fv_fed_server_opt_t **ret);
int fv_fed_server_opt_apply(fv_fed_server_opt_t *o, float *global, const float *delta_mean);
void fv_fed_server_opt_free(fv_fed_server_opt_t *o);
/* The optimizer's state (m and v of the adaptive strategies; nothing for FedAvg/FedProx)
 * as bytes, so a restarted coordinator continues exactly where it stopped. Layout:
 * "FVSO", u32 strategy kind, u64 n, then n doubles m and n doubles v, all little-endian.
 * save: *ret_buf malloc'd (NULL with *ret_len 0 when there is no state). load: the bytes
 * must come from the same strategy and size (FV_ECORRUPT otherwise; nothing changed). */
int fv_fed_server_opt_save(const fv_fed_server_opt_t *o, uint8_t **ret_buf, size_t *ret_len);
int fv_fed_server_opt_load(fv_fed_server_opt_t *o, const uint8_t *buf, size_t len);

#endif
