/* round_banks.h - four banks of one dataset for the round engine's tests (test_round.c,
 * test_round_job.c): each bank's rows, and the features it builds from the stats round's
 * sum, as an agent does.
 *
 * Banks of unequal size (1, 2, 3 and 4 of every 10 rows, interleaved); each keeps every
 * fifth block of ten rows for validation. Ownership: the bank owns its arrays until
 * round_banks_free; `data` borrows them and the dataset, job and layout given.
 */
#ifndef FV_TEST_ROUND_BANKS_H
#define FV_TEST_ROUND_BANKS_H

#include <stdlib.h>
#include <string.h>

#include "fv_dataset.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_round.h"
#include "fv_test.h"

#define ROUND_BANKS 4

typedef struct bank {
    size_t *tr, *va, n_tr, n_va;
    float *x_tr, *x_va;
    int32_t *y_tr, *y_va;
    fv_round_data_t data;
} bank_t;

/* The banks' rows of ds, and their data (job, rows, stats layout). */
static inline void round_banks_init(bank_t b[ROUND_BANKS], const fv_dataset_t *ds,
                                    const fv_job_t *job, const fv_fed_stats_layout_t *sl)
{
    size_t N = ds->n_rows;
    memset(b, 0, ROUND_BANKS * sizeof *b);
    for (int k = 0; k < ROUND_BANKS; k++) {
        CHECK((b[k].tr = malloc(N * sizeof(size_t))) != NULL);
        CHECK((b[k].va = malloc(N * sizeof(size_t))) != NULL);
    }
    for (size_t i = 0; i < N; i++) {
        int k = (int)(i % 10 < 1 ? 0 : i % 10 < 3 ? 1 : i % 10 < 6 ? 2 : 3);
        if ((i / 10) % 5 == 4)
            b[k].va[b[k].n_va++] = i;
        else
            b[k].tr[b[k].n_tr++] = i;
    }
    for (int k = 0; k < ROUND_BANKS; k++) {
        fv_round_data_t *d = &b[k].data;
        d->job = job;
        d->ds = ds;
        d->tr = b[k].tr, d->n_tr = b[k].n_tr;
        d->va = b[k].va, d->n_va = b[k].n_va;
        d->sl = sl;
    }
}

/* What each bank does with the stats round's sum: the same preprocessing as the
 * coordinator's (pp, from the same sum), its own rows transformed and labelled; arch (and
 * s_arch, may be NULL) the models its computes build. */
static inline void round_banks_features(bank_t b[ROUND_BANKS], const fv_dataset_t *ds,
                                        const fv_preproc_t *pp, const fv_mlp_arch_t *arch,
                                        const fv_mlp_arch_t *s_arch)
{
    size_t nf = fv_preproc_n_features(pp);
    for (int k = 0; k < ROUND_BANKS; k++) {
        bank_t *x = &b[k];
        free(x->x_tr), free(x->x_va), free(x->y_tr), free(x->y_va);
        CHECK((x->x_tr = malloc(x->n_tr * nf * sizeof(float))) != NULL);
        CHECK((x->x_va = malloc(x->n_va * nf * sizeof(float))) != NULL);
        CHECK((x->y_tr = malloc(x->n_tr * sizeof(int32_t))) != NULL);
        CHECK((x->y_va = malloc(x->n_va * sizeof(int32_t))) != NULL);
        CHECK_OK(fv_preproc_transform(pp, ds, x->tr, x->n_tr, x->x_tr), NULL);
        CHECK_OK(fv_preproc_transform(pp, ds, x->va, x->n_va, x->x_va), NULL);
        fv_dataset_labels(ds, x->tr, x->n_tr, x->y_tr);
        fv_dataset_labels(ds, x->va, x->n_va, x->y_va);
        x->data.x_tr = x->x_tr, x->data.x_va = x->x_va;
        x->data.y_tr = x->y_tr, x->data.y_va = x->y_va;
        x->data.n_feat = nf;
        x->data.arch = arch;
        x->data.s_arch = s_arch;
    }
}

static inline void round_banks_free(bank_t b[ROUND_BANKS])
{
    for (int k = 0; k < ROUND_BANKS; k++)
        free(b[k].tr), free(b[k].va), free(b[k].x_tr), free(b[k].x_va), free(b[k].y_tr),
            free(b[k].y_va);
    memset(b, 0, ROUND_BANKS * sizeof *b);
}

#endif
