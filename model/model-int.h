/* model-int.h - folder-private declarations of model/ (not installed, not for callers). */
#ifndef FV_MODEL_INT_H
#define FV_MODEL_INT_H

#include <locale.h>
#include <stdbool.h>
#include <stddef.h>

#include "fv_mlp.h"
#include "fv_preproc.h"

/* What model/ saves (model files, schemas, ONNX) is derived from bank data: a new file
 * is created with this mode (through umask), not world-readable unless someone decides
 * so; fv_file_write_atomic (kernels/fv_file.h) writes it crash-safely, through symlinks,
 * or in place on a device, a pipe or standard output ("-"). */
#define FV__SAVE_MODE 0600

/* text.c: see its top note for the number grammar and message quoting. */
#define FV__MSG_STR 60                     /* bytes of a quoted value in a message */
#define FV__MSG_BUF (4 * FV__MSG_STR + 16) /* buffer for fv__msg_str */
enum { FV__NUM_OK = 0, FV__NUM_TEXT = 1, FV__NUM_NONFINITE = 2 };

/* Length (1..4) of the valid UTF-8 sequence at p, or 0 (overlong, surrogate, > U+10FFFF). */
size_t fv__utf8_seq(const unsigned char *p);
bool fv__utf8_valid(const char *s);
/* s quoted for a message into out (len >= FV__MSG_BUF). Returns out. */
const char *fv__msg_str(char *out, size_t len, const char *s);
/* FV__NUM_OK (and *ret set), FV__NUM_TEXT or FV__NUM_NONFINITE; loc is a C locale. */
int fv__parse_number(const char *s, locale_t loc, double *ret);
/* The same with strtod_l for every number: the reference fv__parse_number's fast path is
 * tested against, bit for bit (tests/unit/model/test_csv_number.c). */
int fv__parse_number_ref(const char *s, locale_t loc, double *ret);

/* dataset.c: the meaning of a categorical cell (missing, category index, FV_CELL_OTHER),
 * FV_ESCHEMA for an unseen value under policy "error"; and the "'a', 'b', ... (N in all)"
 * list of a column's categories (labels: the target's classes) for messages. Shared by the
 * CSV decoder and the JSON scoring decoder (score_json.c) so the two agree. */
int fv__dataset_cat_cell(const fv_schema_t *s, size_t col, const char *cell, double *ret);
/* dataset.c: asks for transparent huge pages on the 2 MiB-aligned part of [p, p + len),
 * for a large block about to be written front to back (a hint: refusal costs nothing). */
void fv__hint_huge_pages(void *p, size_t len);
/* dataset.c: grows ds's cells, label and line arrays (capacity *cap_rows rows) to hold
 * at least one more row, sized from c's progress (its top note); 0 or FV_ENOMEM (ds as
 * it was). Shared with inference's kept rows (schema.c), so both grow alike. */
int fv__dataset_grow(fv_dataset_t *ds, size_t *cap_rows, const fv_csv_t *c);
/* schema.c: fv_schema_infer over an open reader that also returns in *ret_ds the rows
 * decoded as fv_dataset_load would decode them against the schema inferred (borrowing
 * it), when every column but the target and the dropped ones is numeric; else *ret_ds is
 * NULL and the caller loads the file again (fv_dataset_infer_load). On error *ret_ds is
 * NULL and nothing else is returned. */
int fv__schema_infer_keep(fv_csv_t *c, const fv_schema_infer_opts_t *o, fv_schema_t **ret,
                          fv_dataset_t **ret_ds, fv_diag_t *d);
/* FNV-1a of a NUL-terminated string (schema.c): the vocabulary sets' hash. */
uint64_t fv__str_hash(const char *s);
void fv__dataset_list_cats(char *out, size_t len, const fv_schema_t *s, size_t col, bool labels);

/* Rebuilds a fitted preproc from saved statistics (used by the model decoder):
 * mean[] and std[] have fv_schema_n_columns(s) entries; only numeric columns are read;
 * every used std must be finite and > 0 and every used mean finite, else FV_ECORRUPT. */
int fv__preproc_from_stats(const fv_schema_t *s, const double *mean, const double *std,
                           fv_preproc_t **ret);

/* mlp.c's internals, shared with mlp_dp.c (DP-SGD's clipped gradient sum); mlp.c's top
 * note describes the layout. */
#define FV_MLP_MAX_LAYERS (FV_MLP_MAX_HIDDEN + 1)

struct fv_mlp {
    fv_mlp_arch_t arch;
    size_t n_layers;                    /* n_hidden + 1 */
    size_t dims[FV_MLP_MAX_LAYERS + 1]; /* n_in, hidden..., n_out */
    size_t w_off[FV_MLP_MAX_LAYERS];
    size_t b_off[FV_MLP_MAX_LAYERS];
    size_t n_params;
    float *params;       /* owned, n_params */
    uint8_t *decay_mask; /* owned, n_params */
};

struct fv_mlp_ws {
    size_t n_layers;
    size_t dims[FV_MLP_MAX_LAYERS + 1];
    size_t max_batch;
    float *act[FV_MLP_MAX_LAYERS]; /* act[l], l = 1..n_layers-1: input of layer l */
    float *logits;                 /* max_batch x n_out */
    float *delta[2];               /* max_batch x max(dims[1..n_layers]) each */
    float *block;                  /* owns all of the above */
    /* mlp_dp.c's, allocated by its first fv_mlp_clipped_grad_sum (NULL until then), freed
     * with the workspace: every layer's deltas (max_batch x dims[l + 1] for each l) and
     * 2 * max_batch doubles (row norms, scales) after them. */
    float *dp_block;
};

/* The workspace was made for this architecture and holds n rows. */
int fv__mlp_ws_fits(const fv_mlp_t *m, const fv_mlp_ws_t *ws, size_t n);
/* Forward pass of n rows; the logits go to out (n x n_out), hidden activations stay in
 * the workspace for the backward pass. */
void fv__mlp_forward(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t n, float *out);
/* Scoring's forward pass (mlp_dense.c; fv_mlp_logits, fv_mlp_predict): a layer of n rows and o
 * outputs goes through fv__mlp_dense (bias and ReLU fused) when fv__mlp_direct says so,
 * else through fv_gemm and the bias and ReLU passes as in fv__mlp_forward. Training keeps
 * fv__mlp_forward (all gemm), so its results are what they were, bit for bit. */
void fv__mlp_forward_score(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t n,
                           float *out);
/* Where the direct path is faster than cblas_sgemm (measured, mlp_dense.c's top note):
 * up to FV__MLP_DIRECT_ROWS rows of any layer, and any number of rows of a layer with 1
 * or 4 outputs (the kernels made for them). */
#define FV__MLP_DIRECT_ROWS 3
static inline bool fv__mlp_direct(size_t n, size_t o)
{
    return n <= FV__MLP_DIRECT_ROWS || o == 1 || o == 4;
}
/* mlp_dense.c: z (n x o) = x (n x in) W (in x o, row-major) + b, then ReLU if relu; no
 * allocation, no BLAS. isa FV__MLP_ISA_BASE: the baseline build; FV__MLP_ISA_AVX2: the
 * AVX2+FMA copy where the CPU has it (fv__mlp_dense_has), else the baseline. Agrees with
 * the gemm path to rounding (mlp_dense.c's top note has the bound). */
enum { FV__MLP_ISA_BASE = 0, FV__MLP_ISA_AVX2 = 1 };
void fv__mlp_dense(int isa, const float *x, size_t n, size_t in, const float *w, const float *b,
                   size_t o, bool relu, float *z);
/* Whether fv__mlp_dense runs the given copy on this build and CPU. */
bool fv__mlp_dense_has(int isa);
/* fv__mlp_forward_score with the copy chosen as for fv__mlp_dense (for the tests). */
void fv__mlp_forward_score_isa(int isa, const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x,
                               size_t n, float *out);
/* Mean loss of n rows from their logits z; if delta != NULL, also dLoss/dz (n x n_out,
 * scaled by w_i / n). With t_logits (n x n_out) and dc, the distillation loss. */
int fv__mlp_loss_from_logits(const fv_mlp_t *m, const float *z, const int32_t *y,
                             const float *row_w, size_t n, float pos_weight, const float *t_logits,
                             const fv_distill_cfg_t *dc, float *delta, double *ret_loss);

#endif
