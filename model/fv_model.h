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
 * writes a temporary file, fsyncs it and renames it, so a crash leaves either the old
 * file or the new one.
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

/* Scores rows of a dataset decoded with the model's schema (rows NULL = 0..n-1).
 * ret_prob: n x n_out (binary: P(positive)). Works in chunks; allocates its own scratch. */
int fv_model_predict(const fv_model_t *m, const fv_dataset_t *ds, const size_t *rows, size_t n,
                     float *ret_prob);

#endif
