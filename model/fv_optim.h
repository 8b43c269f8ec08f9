/* fv_optim.h - mini-batch optimizers: SGD with momentum, and Adam.
 *
 * The effective gradient of one step is
 *     g = grad + weight_decay * mask * theta + prox_mu * (theta - prox_ref)
 * i.e. an L2 penalty (weight_decay/2)||W||^2 on weights only (mask from
 * fv_mlp_decay_mask; biases are not decayed) and the FedProx proximal term
 * (mu/2)||theta - theta_ref||^2 on all parameters when prox_ref is set.
 *   SGD:   v = momentum * v + g;           theta -= lr * v
 *   Adam:  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *          theta -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 * All in float32, element by element, so a step is deterministic.
 */
#ifndef FV_OPTIM_H
#define FV_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"

typedef enum { FV_OPT_SGD = 0, FV_OPT_ADAM = 1 } fv_opt_kind_t;

typedef struct fv_optim_cfg {
    fv_opt_kind_t kind;
    float lr;              /* > 0 */
    float momentum;        /* SGD, [0, 1) */
    float beta1, beta2;    /* Adam, [0, 1) */
    float eps;             /* Adam, > 0 */
    float weight_decay;    /* L2 coefficient, >= 0 */
    float prox_mu;         /* FedProx mu, >= 0; used only if prox_ref != NULL */
    const float *prox_ref; /* borrowed, n_params; NULL = no proximal term */
} fv_optim_cfg_t;

/* Defaults: Adam, lr 1e-3, momentum 0.9, betas 0.9/0.999, eps 1e-8, weight decay 0.01,
 * no proximal term. */
void fv_optim_cfg_default(fv_optim_cfg_t *cfg);
/* Checks ranges; d names the bad field. */
int fv_optim_cfg_check(const fv_optim_cfg_t *cfg, fv_diag_t *d);

typedef struct fv_optim fv_optim_t;

int fv_optim_new(const fv_optim_cfg_t *cfg, size_t n_params, fv_optim_t **ret);
void fv_optim_free(fv_optim_t *o);
/* Forget moment estimates and the step count (e.g. at the start of a federated round). */
void fv_optim_reset(fv_optim_t *o);
/* decay_mask may be NULL (decay every parameter). */
void fv_optim_step(fv_optim_t *o, float *params, const float *grad, const uint8_t *decay_mask);

/* Elements [lo, hi) of step number t (1-based: the step fv_optim_step would take after
 * t - 1 earlier steps), for trainers that split one step over threads by parameter range.
 * params, grad and decay_mask are the whole vectors (indexed from 0, like the optimizer's
 * moments); only [lo, hi) of params and the moments is read or written, so threads may
 * run disjoint ranges of the same step at once. Each element gets exactly the operations
 * of fv_optim_step, so splitting a step changes no bit. Does not change the optimizer's
 * own step count (fv_optim_step's): a trainer uses one way or the other. hi <= n_params. */
void fv_optim_step_part(const fv_optim_t *o, uint64_t t, float *params, const float *grad,
                        const uint8_t *decay_mask, size_t lo, size_t hi);

#endif
