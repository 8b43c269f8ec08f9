/* train-int.h - what train.c (the training loop) and train_pool.c (its data-parallel
 * threads) share; folder-private, not installed. train_pool.c's note has the design. */
#ifndef FV_TRAIN_INT_H
#define FV_TRAIN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "fv_mlp.h"
#include "fv_optim.h"

/* Everything one run allocates, released in one place (train.c). */
typedef struct train_state {
    fv_mlp_ws_t *ws;
    fv_optim_t *opt;
    float *xb;       /* batch rows, bs x n_in */
    int32_t *yb;     /* batch labels */
    float *grad;     /* n_params */
    size_t *idx;     /* n_train */
    float *start;    /* parameters at entry, restored on failure */
    float *best;     /* parameters of the best epoch (early stopping only) */
    float *val_prob; /* n_val (binary with a validation set only) */
    float *tb;       /* batch teacher logits, bs x n_out (distillation only) */
    float *gchunk;   /* DP-SGD: a chunk's clipped sum after the first, n_params */
} train_state_t;

/* The data-parallel threads of one run: thread 0 is the caller's, which alone calls the
 * functions below. */
typedef struct train_pool train_pool_t;

/* Starts n - 1 threads (n >= 2) and allocates slices 1..n-1 (slice 0 uses s's ws, xb, yb,
 * tb and grad). Borrows m, s, the training data, t_logits and dc (NULL for plain training)
 * until fv__train_pool_free; the tasks read s->idx and s->opt, and write m's parameters.
 * bs: the batch size; n_val and val_chunk: the validation rows and chunk. FV_ENOMEM if
 * anything (a thread included) cannot be had; nothing is left running. */
int fv__train_pool_new(size_t n, fv_mlp_t *m, train_state_t *s, const float *x_train,
                       const int32_t *y_train, const float *t_logits, const fv_distill_cfg_t *dc,
                       float pos_weight, size_t bs, size_t n_val, size_t val_chunk,
                       train_pool_t **ret);
/* Joins the threads and frees the pool's own buffers. Accepts NULL. */
void fv__train_pool_free(train_pool_t *p);
/* Threads, which is also the number of slices. */
size_t fv__train_pool_n(const train_pool_t *p);
/* The batch at s->idx[b0 .. b0 + nb - 1] (nb >= 1): each slice's gradient and mean loss. */
void fv__train_pool_grad(train_pool_t *p, size_t b0, size_t nb);
/* Slice t's status in the last fv__train_pool_grad; on 0, its rows and mean loss. */
int fv__train_pool_slice(const train_pool_t *p, size_t t, size_t *ret_rows, double *ret_loss);
/* After a fv__train_pool_grad whose slices all succeeded: sums the slices' gradients,
 * weighted by their rows, and takes optimizer step number `step` (1-based) on m's
 * parameters. */
void fv__train_pool_step(train_pool_t *p, uint64_t step);
/* train.c's evaluate() over the threads, with the same chunks and the same sums. val_prob:
 * n rows, written for binary models only. */
int fv__train_pool_evaluate(train_pool_t *p, const float *x, const int32_t *y, size_t n,
                            size_t chunk, float *val_prob, double *ret_loss, double *ret_auc);

#endif
