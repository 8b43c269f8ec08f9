/* fv_model.h - a complete scoring model (schema + preprocessing + network) and its file.
 *
 * The model file format is specified byte by byte in the top comment of model.c. In
 * short: magic "FVMODEL\0", format version, then length-prefixed sections (schema JSON,
 * metadata JSON, preprocessing statistics, architecture, parameters), then a SHA-256 of
 * everything before it. Version 1 stores the parameters as float32; version 2, written
 * only for a model with int8 set, stores the weights as int8 with one float32 scale per
 * output unit (fv_mlp.h) and the biases as float32, about 4x smaller. Decoding checks
 * every length against the remaining bytes and the caps below before allocating, so a
 * corrupt, truncated or hostile file is an error with a message, never a crash. save()
 * goes through fv_file_write_atomic (kernels/fv_file.h): a temporary file beside the
 * target (the end of its symlink chain), fsynced and renamed, so a crash leaves either
 * the old file or the new one and a symlinked target stays a symlink; "-", /dev/stdout
 * and other descriptor paths, devices and FIFOs are written in place.
 */
#ifndef FV_MODEL_H
#define FV_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_dataset.h"
#include "fv_error.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_schema.h"

#define FV_MODEL_FORMAT_VERSION 2                  /* the newest version this build reads */
#define FV_MODEL_FORMAT_VERSION_FLOAT 1            /* written when int8 is false */
#define FV_MODEL_FORMAT_VERSION_INT8 2             /* written when int8 is true */
#define FV_MODEL_MAX_BYTES ((size_t)1 << 30)       /* 1 GiB */
#define FV_MODEL_MAX_JSON_BYTES ((size_t)16 << 20) /* schema or metadata section */

typedef struct fv_model {
    fv_schema_t *schema;   /* owned */
    fv_preproc_t *preproc; /* owned; borrows schema */
    fv_mlp_t *mlp;         /* owned */
    char *meta_json;       /* owned, may be NULL: a JSON object (producer, training info) */
    /* false (fv_model_new): the file stores float32 parameters (format version 1).
     * true: the file stores the weights quantized to int8 (format version 2), and decoding
     * gives back fv_mlp_quantize_int8() of the encoded network, bit for bit. Scoring
     * always uses mlp as it is: to score as the file will, set mlp to its quantized copy
     * (fv_model_decode of an int8 file does; a caller setting int8 should too). */
    bool int8;
} fv_model_t;

/* Takes ownership of all four parts (also on failure: they are freed). */
int fv_model_new(fv_schema_t *schema, fv_preproc_t *preproc, fv_mlp_t *mlp, char *meta_json,
                 fv_model_t **ret);
void fv_model_free(fv_model_t *m);

/* *ret_buf is malloc'd; caller frees. */
int fv_model_encode(const fv_model_t *m, uint8_t **ret_buf, size_t *ret_len);
/* name is used in messages (e.g. the file path). */
int fv_model_decode(const char *name, const uint8_t *buf, size_t len, fv_model_t **ret,
                    fv_diag_t *d);
int fv_model_save(const fv_model_t *m, const char *path, fv_diag_t *d);
int fv_model_load(const char *path, fv_model_t **ret, fv_diag_t *d);

/* ---- scoring ----
 * Scoring a row is its preprocessing (fv_preproc_transform) and the network
 * (fv_mlp_predict), done in chunks of rows. The scratch for a chunk (encoded features, row
 * numbers, the network's activations: about max_batch x (n_features + the layer widths)
 * floats) lives in a workspace. A loop that scores again and again (a server, a batch
 * scorer) makes one workspace and reuses it with fv_model_predict_ws, which allocates
 * nothing; fv_model_predict makes one per call. */
#define FV_MODEL_WS_MAX_BATCH ((size_t)65536) /* rows per chunk, at most */
#define FV_MODEL_PREDICT_CHUNK ((size_t)1024) /* the chunk fv_model_predict scores in */

typedef struct fv_model_ws fv_model_ws_t;

/* Scratch for scoring up to max_batch rows per chunk (1..FV_MODEL_WS_MAX_BATCH, else
 * FV_EINVAL) with m: the encoded feature block, the row numbers and the network's
 * workspace. *ret is the caller's, freed with fv_model_ws_free. It keeps no pointer to m:
 * it serves m and any model of the same shape (network architecture and feature count,
 * e.g. the int8-quantized copy). One per thread. FV_EINVAL, FV_ENOMEM. */
int fv_model_ws_new(const fv_model_t *m, size_t max_batch, fv_model_ws_t **ret);
void fv_model_ws_free(fv_model_ws_t *ws); /* NULL-safe */

/* Scores rows of a dataset decoded with the model's schema (rows NULL = 0..n-1; a row list
 * is borrowed). ret_prob: n x n_out (binary: P(positive); multi-class: a row of K
 * probabilities). n may exceed the workspace's max_batch: rows are scored in chunks of
 * max_batch, and a row's score is the same bits for the same chunk layout (the gemm may
 * round a row differently in a chunk of another size, by a few ulp). Allocates nothing;
 * writes only ws and ret_prob, so threads may share m, each with its own ws.
 * FV_EINVAL: NULL m, ds, ws (or ret_prob with n > 0), a row out of range, or a workspace
 * made for a model of another shape; FV_ESCHEMA: ds was decoded with another schema.
 * n == 0 scores nothing and returns 0 (the workspace is still checked). */
int fv_model_predict_ws(const fv_model_t *m, fv_model_ws_t *ws, const fv_dataset_t *ds,
                        const size_t *rows, size_t n, float *ret_prob);

/* fv_model_predict_ws, and for each of the n rows ret_bad[i]: -1 when the row's encoded
 * features and its scores are finite; otherwise the schema column index whose encoded
 * feature is not finite (a finite input that overflows float32 once scaled, e.g. Income =
 * 1e41), or FV_MODEL_BAD_OUTPUT when the features are finite but a score is not (nor a
 * logit: a logit of +inf gives the finite score 1, and is bad too). A bad
 * row's ret_prob entries are NaN and the other rows' are what fv_model_predict_ws gives
 * (the same chunk layout). Callers report a bad row by row and column (fedvault predict,
 * fedvault-serve) instead of writing a non-finite score. Errors as fv_model_predict_ws
 * (also FV_EINVAL for ret_bad NULL with n > 0); after a failure ret_prob and ret_bad
 * hold unspecified values (a later chunk may fail after earlier ones were written). */
#define FV_MODEL_BAD_OUTPUT (-2L)
int fv_model_predict_ws_rows(const fv_model_t *m, fv_model_ws_t *ws, const fv_dataset_t *ds,
                             const size_t *rows, size_t n, float *ret_prob, long *ret_bad);

/* The sentence for dataset row `row` that fv_model_predict_ws_rows found bad (`bad` its
 * ret_bad entry), into buf (len bytes; cut to fit, always NUL-terminated). A column:
 * "column 'Income': value 1e+45 overflows float32 once standardized ((value - mean) / std
 * = 3.57e+41); expected |value| below 9.5e+42". FV_MODEL_BAD_OUTPUT: the numeric column
 * farthest from its training mean is named as the likely cause when it is more than 1000
 * standard deviations away ("column 'Income': score not finite (float32 overflow in the
 * network); value 1e+41 is 3.5e+37 standard deviations from the training mean, the row's
 * most extreme"); otherwise no column is blamed and the sentence says the model's
 * weights overflow. Returns the schema column named, or -1 (none blamed; or bad
 * arguments, buf then ""). Callers put the row (and file position) in front. Reads only;
 * thread-safe. */
long fv_model_bad_row_str(const fv_model_t *m, const fv_dataset_t *ds, size_t row, long bad,
                          char *buf, size_t len);

/* fv_model_predict_ws with a workspace of min(n, FV_MODEL_PREDICT_CHUNK) rows made and
 * freed in the call (so also FV_ENOMEM). For one-off scoring; a loop should keep a
 * workspace. */
int fv_model_predict(const fv_model_t *m, const fv_dataset_t *ds, const size_t *rows, size_t n,
                     float *ret_prob);

#endif
