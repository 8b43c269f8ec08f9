/* train_pool.c - the data-parallel threads of fv_train and fv_train_distill (cfg->threads =
 * T > 1, plain and distillation training; DP-SGD stays on the calling thread). train.c's
 * loop drives them through train-int.h; T = 1 never comes here (train.c's single-threaded
 * loop, unchanged).
 *
 * T is capped at the batch size (train.c). The call starts T - 1 threads once (the
 * caller's thread is thread 0) and stops them before it returns; they never outlive
 * fv_train. Work is cut into T tasks that do not depend on which thread runs them, and any
 * thread may claim any task, so a thread the OS deschedules (two cores shared with other
 * processes) does not stall the batch: the others take its tasks.
 * Each batch is two jobs:
 *   SLICE  task k gathers slice k of the batch straight from x_train (rows lo_k ..
 *          lo_k + n_k - 1 of the batch, n_k = nb / T or one more for the first nb % T
 *          slices, so a slice is empty only after every non-empty one) into slice k's
 *          buffers and takes fv_mlp_loss_grad (or the distillation one) of it with slice
 *          k's workspace: the mean over its n_k rows, into slice k's gradient. Thread 0
 *          then checks every slice's status (the first failing slice is the error) and
 *          adds n_k * loss_k to the epoch's loss, slices in order (train.c, through
 *          fv__train_pool_slice).
 *   RANGE  task k owns range k of the parameters (T near-equal ranges, cut at multiples
 *          of 16 floats so no two tasks write one cache line) and, over it, forms
 *              g = s_0 g_0 + s_1 g_1 + ...,  s_k = (float)(n_k / nb)  (slices in order)
 *          into slice 0's gradient, which is the batch mean's gradient up to rounding,
 *          then runs fv_optim_step_part of the batch's step number on that range (the
 *          same operations per element as fv_optim_step).
 * Validation is one EVAL job: task k evaluates chunks k, k + T, ... (the single-threaded
 * chunks, each into its own loss slot and val_prob range, with the running thread's
 * workspace); thread 0 then sums the chunk losses in chunk order, exactly as train.c's
 * evaluate() does, so the validation metrics of given parameters do not depend on T.
 * Hand-off: one 64-bit claim word = job number | task count | next task. Thread 0 sets
 * the job's fields, zeroes the done count and stores a new claim word (seq_cst), then
 * claims tasks itself; every thread claims by compare-and-swap on next, runs the task,
 * and counts it done; thread 0 waits for done == T before it reads results or publishes
 * the next job, so a job's fields never change while one of its tasks runs, and
 * everything a task wrote is visible to the next job (the done count and the claim word
 * order them). Waits spin POOL_SPINS pauses (tens of microseconds: the other thread is
 * usually about to finish), then block on a condition variable, so idle threads leave
 * the shared cores to other processes; a waker signals only when someone sleeps (a
 * seq_cst store/load pair on each side, so a wake-up is never lost). The exit word
 * (task count 0xffff) makes the threads return, and they are joined.
 * A claimed task cannot be taken back, so a thread descheduled in the middle of one
 * stalls the job: when thread 0, out of tasks, has waited for two jobs in a row longer
 * than its own share took (a descheduled thread, not a slow wake-up), it runs the next
 * POOL_SOLO_JOBS jobs' tasks alone, in order (the same tasks give the same bits), then
 * hands them out again. On a machine whose cores are
 * busy with other work T threads then cost about what one does instead of more.
 * Determinism: slices, their buffers and workspaces, ranges and sums are fixed by (nb, T),
 * not by which thread ran what, so the same T gives the same bits.
 *
 * Ownership and memory: the pool borrows the model (its parameters are written by RANGE
 * tasks), train.c's state (slice 0 is its workspace and buffers; idx and the optimizer
 * are read) and the data; it owns slices 1..T-1 (workspace, rows, labels, teacher logits,
 * gradient), the chunk losses and the threads, all allocated by fv__train_pool_new before
 * the first epoch; nothing is allocated per batch.
 */
#include "train-int.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fv_metrics.h"

/* Waits spin this many pauses (about 30-60 us) before sleeping on the condition variable. */
#define POOL_SPINS 2000
/* Jobs thread 0 runs alone after two stalled ones (32 batches). */
#define POOL_SOLO_JOBS 64

/* Task kinds of a job: a batch is a SLICE job (T tasks, one per slice) then, when every
 * slice succeeded, a RANGE job (T tasks, one per parameter range); validation is an EVAL
 * job (T tasks, one per stripe of chunks). */
typedef enum { JOB_SLICE, JOB_RANGE, JOB_EVAL } job_kind_t;

/* The claim word: job number (32 bits) | task count (16) | next unclaimed task (16). A
 * task count of CLAIM_EXIT tells the threads to return. */
#define CLAIM_EXIT 0xffffu
#define CLAIM_WORD(gen, n, next) (((uint64_t)(gen) << 32) | ((uint64_t)(n) << 16) | (next))

typedef struct slice {
    fv_mlp_ws_t *ws; /* slice 0: the state's (borrowed); else owned */
    float *xb;       /* the slice's rows */
    int32_t *yb;
    float *tb;   /* the slice's teacher logits (distillation) */
    float *grad; /* n_params; slice 0's receives the batch's sum */
    /* results of the current SLICE job */
    size_t rows;
    double loss;
    int rc;
} slice_t;

typedef struct worker_arg worker_arg_t;

struct train_pool {
    size_t n;           /* threads and slices, >= 2 */
    worker_arg_t *args; /* n (0 unused) */
    slice_t *sl;
    pthread_t *tid; /* n - 1 */
    size_t n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int have_sync;
    _Atomic uint64_t claim;
    atomic_uint done;     /* tasks of the current job finished */
    atomic_uint sleepers; /* threads blocked (or about to block) on cv */
    uint32_t gen;         /* thread 0's job counter */
    unsigned stalls;      /* consecutive jobs thread 0 had to block on (thread 0 only) */
    unsigned solo;        /* jobs thread 0 still runs alone (thread 0 only) */
    /* the current job (written by thread 0 only while no task of a job is pending) */
    job_kind_t kind;
    size_t b0, nb; /* SLICE, RANGE: the batch */
    uint64_t step; /* RANGE: the optimizer step number, 1-based */
    /* the run, read-only while the threads run (params: see the top note) */
    const fv_mlp_t *m;
    float *params;
    const uint8_t *mask;
    const fv_optim_t *opt;
    const float *x_train;
    const int32_t *y_train;
    const float *t_logits;
    const fv_distill_cfg_t *dc;
    const size_t *idx;
    float pos_weight;
    size_t n_in, n_out, n_params;
    /* validation */
    const float *xv;
    const int32_t *yv;
    size_t nv, chunk;
    double *chunk_loss; /* one per chunk */
    float *val_prob;    /* nv, binary only (else NULL) */
    int *eval_rc;       /* one per stripe */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Wakes the sleepers after a state change (the change is seq_cst, so either a sleeper
 * that is about to block sees it under the mutex, or this sees the sleeper). */
static void pool_notify(train_pool_t *p)
{
    if (atomic_load(&p->sleepers) == 0)
        return;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Until the claim word's job number differs from gen (workers) ... */
static int gen_changed(train_pool_t *p, uint32_t gen)
{
    return (uint32_t)(atomic_load(&p->claim) >> 32) != gen;
}

/* ... or until all n tasks of the job are done (thread 0). */
static int all_done(train_pool_t *p, uint32_t n)
{
    return atomic_load(&p->done) == n;
}

/* Returns 1 if it had to block. */
static int pool_wait(train_pool_t *p, int (*ready)(train_pool_t *, uint32_t), uint32_t arg)
{
    for (int i = 0; i < POOL_SPINS; i++) {
        if (ready(p, arg))
            return 0;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    while (!ready(p, arg))
        pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return 1;
}

/* Slice k's rows of nb: the first nb % T slices take one row more. */
static void slice_of(size_t nb, size_t n_slices, size_t k, size_t *lo, size_t *n)
{
    size_t q = nb / n_slices, r = nb % n_slices;
    *lo = k * q + (k < r ? k : r);
    *n = q + (k < r);
}

/* Range k of the parameters, cut at multiples of 16 floats (64 bytes). */
static void range_of(size_t n_params, size_t n_ranges, size_t k, size_t *lo, size_t *hi)
{
    size_t units = (n_params + 15) / 16;
    *lo = 16 * (k * units / n_ranges);
    *hi = 16 * ((k + 1) * units / n_ranges);
    if (*lo > n_params)
        *lo = n_params;
    if (*hi > n_params)
        *hi = n_params;
}

/* SLICE task k: gather slice k of the batch and take its gradient, with slice k's own
 * buffers whichever thread runs it (so the bits do not depend on the thread). */
static void slice_task(train_pool_t *p, size_t k)
{
    slice_t *s = &p->sl[k];
    size_t lo, n;
    slice_of(p->nb, p->n, k, &lo, &n);
    s->rows = n;
    s->loss = 0.0;
    s->rc = 0;
    if (n == 0)
        return;
    for (size_t j = 0; j < n; j++) {
        size_t row = p->idx[p->b0 + lo + j];
        memcpy(s->xb + j * p->n_in, p->x_train + row * p->n_in, p->n_in * sizeof *s->xb);
        s->yb[j] = p->y_train[row];
        if (p->t_logits != NULL)
            memcpy(s->tb + j * p->n_out, p->t_logits + row * p->n_out, p->n_out * sizeof *s->tb);
    }
    if (p->t_logits != NULL)
        s->rc = fv_mlp_distill_loss_grad(p->m, s->ws, s->xb, s->yb, s->tb, NULL, n, p->pos_weight,
                                         p->dc, s->grad, &s->loss);
    else
        s->rc =
            fv_mlp_loss_grad(p->m, s->ws, s->xb, s->yb, NULL, n, p->pos_weight, s->grad, &s->loss);
}

/* RANGE task k: over parameter range k, the slices' gradients summed with weights
 * n_t / nb into slice 0's, then the optimizer's share of the step. */
static void range_task(train_pool_t *p, size_t k)
{
    size_t n_used = 0; /* non-empty slices: a prefix */
    for (size_t t = 0; t < p->n; t++)
        if (p->sl[t].rows > 0)
            n_used = t + 1;
    size_t lo, hi;
    range_of(p->n_params, p->n, k, &lo, &hi);
    if (hi <= lo)
        return;
    float *g0 = p->sl[0].grad;
    const double inv_nb = 1.0 / (double)p->nb;
    const float s0 = (float)((double)p->sl[0].rows * inv_nb);
    if (n_used == 2) { /* the common case, one pass */
        const float s1 = (float)((double)p->sl[1].rows * inv_nb);
        const float *g1 = p->sl[1].grad;
        for (size_t i = lo; i < hi; i++)
            g0[i] = s0 * g0[i] + s1 * g1[i];
    } else {
        if (s0 != 1.0f)
            for (size_t i = lo; i < hi; i++)
                g0[i] = s0 * g0[i];
        for (size_t t = 1; t < n_used; t++) {
            const float st = (float)((double)p->sl[t].rows * inv_nb);
            const float *gt = p->sl[t].grad;
            for (size_t i = lo; i < hi; i++)
                g0[i] = g0[i] + st * gt[i];
        }
    }
    fv_optim_step_part(p->opt, p->step, p->params, g0, p->mask, lo, hi);
}

/* EVAL task k on thread `self`: validation chunks k, k + T, ..., each chunk's mean loss
 * into chunk_loss and its probabilities into val_prob, with the thread's workspace (the
 * slice workspace of the same index: no SLICE job runs meanwhile). */
static void eval_task(train_pool_t *p, size_t k, size_t self)
{
    fv_mlp_ws_t *ws = p->sl[self].ws;
    p->eval_rc[k] = 0;
    size_t n_chunks = (p->nv + p->chunk - 1) / p->chunk;
    for (size_t c = k; c < n_chunks; c += p->n) {
        size_t i = c * p->chunk;
        size_t nc = p->nv - i < p->chunk ? p->nv - i : p->chunk;
        int r = fv_mlp_loss(p->m, ws, p->xv + i * p->n_in, p->yv + i, NULL, nc, p->pos_weight,
                            &p->chunk_loss[c]);
        if (r == 0 && p->val_prob != NULL)
            r = fv_mlp_predict(p->m, ws, p->xv + i * p->n_in, nc, p->val_prob + i);
        if (r != 0) {
            p->eval_rc[k] = r;
            return;
        }
    }
}

static void run_task(train_pool_t *p, size_t k, size_t self)
{
    if (p->kind == JOB_SLICE)
        slice_task(p, k);
    else if (p->kind == JOB_RANGE)
        range_task(p, k);
    else
        eval_task(p, k, self);
}

/* Claims and runs tasks of the job in s (as loaded) until none is left. Returns the last
 * claim word seen (its job may be a newer one, or the exit word). */
static uint64_t run_tasks(train_pool_t *p, uint64_t s, size_t self)
{
    for (;;) {
        unsigned n = (unsigned)(s >> 16) & 0xffffu, next = (unsigned)s & 0xffffu;
        if (n == CLAIM_EXIT || next >= n)
            return s;
        if (!atomic_compare_exchange_weak(&p->claim, &s, s + 1))
            continue; /* s was reloaded */
        run_task(p, next, self);
        if (atomic_fetch_add(&p->done, 1) + 1 == n)
            pool_notify(p);
        s = atomic_load(&p->claim);
    }
}

struct worker_arg {
    train_pool_t *pool;
    size_t self;
};

static void *worker_main(void *arg)
{
    train_pool_t *p = ((worker_arg_t *)arg)->pool;
    size_t self = ((worker_arg_t *)arg)->self;
    for (;;) {
        uint64_t s = run_tasks(p, atomic_load(&p->claim), self);
        if (((unsigned)(s >> 16) & 0xffffu) == CLAIM_EXIT)
            return NULL;
        pool_wait(p, gen_changed, (uint32_t)(s >> 32));
    }
}

static double pool_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Thread 0: publish a job of n tasks (its fields already set), take part, and wait until
 * every task is done. */
static void pool_run(train_pool_t *p, job_kind_t kind, unsigned n)
{
    p->kind = kind;
    if (p->solo > 0) { /* the same tasks, on this thread: the same bits */
        p->solo--;
        for (unsigned k = 0; k < n; k++)
            run_task(p, k, 0);
        return;
    }
    atomic_store(&p->done, 0);
    p->gen++;
    double t0 = pool_now();
    atomic_store(&p->claim, CLAIM_WORD(p->gen, n, 0));
    pool_notify(p);
    run_tasks(p, atomic_load(&p->claim), 0);
    /* Nothing left to claim: a task another thread claimed is still running. Waiting for
     * it longer than this thread took for its own share means that thread was
     * descheduled (the cores are busy): twice in a row, and thread 0 runs the next
     * POOL_SOLO_JOBS jobs alone, then tries again. A shorter wait (a wake-up's latency,
     * one slice a little slower than the other) is not a stall. The clock only decides
     * who runs the tasks, never what they compute. */
    double t1 = pool_now();
    int blocked = pool_wait(p, all_done, n);
    if (!blocked || pool_now() - t1 <= t1 - t0)
        p->stalls = 0;
    else if (++p->stalls >= 2) {
        p->stalls = 0;
        p->solo = POOL_SOLO_JOBS;
    }
}

void fv__train_pool_free(train_pool_t *p)
{
    if (p == NULL)
        return;
    if (p->n_started > 0) {
        p->gen++;
        atomic_store(&p->claim, CLAIM_WORD(p->gen, CLAIM_EXIT, 0));
        pool_notify(p);
        for (size_t t = 0; t < p->n_started; t++)
            pthread_join(p->tid[t], NULL);
    }
    if (p->have_sync) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
    }
    if (p->sl != NULL)
        for (size_t t = 1; t < p->n; t++) {
            fv_mlp_ws_free(p->sl[t].ws);
            free(p->sl[t].xb);
            free(p->sl[t].yb);
            free(p->sl[t].tb);
            free(p->sl[t].grad);
        }
    free(p->sl);
    free(p->tid);
    free(p->chunk_loss);
    free(p->eval_rc);
    free(p->args);
    free(p);
}

/* Threads 1..n-1 and slices 1..n-1 with their buffers; slice 0 uses the state's.
 * FV_ENOMEM if anything (a thread included) cannot be had; nothing is left running. */
int fv__train_pool_new(size_t n, fv_mlp_t *m, train_state_t *s, const float *x_train,
                       const int32_t *y_train, const float *t_logits, const fv_distill_cfg_t *dc,
                       float pos_weight, size_t bs, size_t n_val, size_t val_chunk,
                       train_pool_t **ret)
{
    const int distill = t_logits != NULL;
    const size_t n_in = fv_mlp_arch(m)->n_in, n_out = fv_mlp_arch(m)->n_out;
    const size_t n_params = fv_mlp_n_params(m);
    const size_t slice_rows = (bs + n - 1) / n;
    const size_t ws_rows = n_val > 0 && val_chunk > slice_rows ? val_chunk : slice_rows;
    train_pool_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return FV_ENOMEM;
    p->n = n;
    /* the run, read-only while the threads run (set before they start) */
    p->m = m;
    p->params = fv_mlp_params(m);
    p->mask = fv_mlp_decay_mask(m);
    p->opt = s->opt;
    p->x_train = x_train;
    p->y_train = y_train;
    p->t_logits = t_logits;
    p->dc = dc;
    p->idx = s->idx;
    p->pos_weight = pos_weight;
    p->n_in = n_in;
    p->n_out = n_out;
    p->n_params = n_params;
    atomic_init(&p->claim, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    p->sl = calloc(n, sizeof *p->sl);
    p->tid = calloc(n - 1, sizeof *p->tid);
    p->eval_rc = calloc(n, sizeof *p->eval_rc);
    if (n_val > 0)
        p->chunk_loss = malloc((n_val + val_chunk - 1) / val_chunk * sizeof *p->chunk_loss);
    if (p->sl == NULL || p->tid == NULL || p->eval_rc == NULL ||
        (n_val > 0 && p->chunk_loss == NULL))
        goto fail;
    p->sl[0].ws = s->ws;
    p->sl[0].xb = s->xb;
    p->sl[0].yb = s->yb;
    p->sl[0].tb = s->tb;
    p->sl[0].grad = s->grad;
    for (size_t t = 1; t < n; t++) {
        slice_t *sl = &p->sl[t];
        if (fv_mlp_ws_new(m, ws_rows, &sl->ws) != 0)
            goto fail;
        sl->xb = malloc(slice_rows * n_in * sizeof *sl->xb);
        sl->yb = malloc(slice_rows * sizeof *sl->yb);
        sl->grad = malloc(n_params * sizeof *sl->grad);
        if (distill)
            sl->tb = malloc(slice_rows * n_out * sizeof *sl->tb);
        if (sl->xb == NULL || sl->yb == NULL || sl->grad == NULL || (distill && sl->tb == NULL))
            goto fail;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->have_sync = 1;
    p->args = calloc(n, sizeof *p->args);
    if (p->args == NULL)
        goto fail;
    for (size_t t = 1; t < n; t++) {
        p->args[t].pool = p;
        p->args[t].self = t;
        if (pthread_create(&p->tid[t - 1], NULL, worker_main, &p->args[t]) != 0)
            goto fail;
        p->n_started = t;
    }
    *ret = p;
    return 0;
fail:
    fv__train_pool_free(p); /* started threads see the exit word and return */
    return FV_ENOMEM;
}

size_t fv__train_pool_n(const train_pool_t *p)
{
    return p->n;
}

void fv__train_pool_grad(train_pool_t *p, size_t b0, size_t nb)
{
    p->b0 = b0;
    p->nb = nb;
    pool_run(p, JOB_SLICE, (unsigned)p->n);
}

int fv__train_pool_slice(const train_pool_t *p, size_t t, size_t *ret_rows, double *ret_loss)
{
    const slice_t *sl = &p->sl[t];
    if (sl->rc != 0)
        return sl->rc;
    *ret_rows = sl->rows;
    *ret_loss = sl->loss;
    return 0;
}

void fv__train_pool_step(train_pool_t *p, uint64_t step)
{
    p->step = step;
    pool_run(p, JOB_RANGE, (unsigned)p->n);
}

/* evaluate() over the pool's threads: the same chunks, the same sums. */
int fv__train_pool_evaluate(train_pool_t *p, const float *x, const int32_t *y, size_t n,
                            size_t chunk, float *val_prob, double *ret_loss, double *ret_auc)
{
    p->xv = x;
    p->yv = y;
    p->nv = n;
    p->chunk = chunk;
    p->val_prob = fv_mlp_arch(p->m)->n_out == 1 ? val_prob : NULL;
    pool_run(p, JOB_EVAL, (unsigned)p->n);
    for (size_t t = 0; t < p->n; t++)
        if (p->eval_rc[t] != 0)
            return p->eval_rc[t];
    double sum = 0.0;
    for (size_t c = 0, i = 0; i < n; c++, i += chunk) {
        size_t nc = n - i < chunk ? n - i : chunk;
        sum += p->chunk_loss[c] * (double)nc;
    }
    *ret_loss = sum / (double)n;
    *ret_auc = NAN;
    if (p->val_prob != NULL && fv_metrics_roc_auc(val_prob, y, n, ret_auc) != 0)
        *ret_auc = NAN;
    return 0;
}
