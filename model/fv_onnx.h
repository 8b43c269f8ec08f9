/* fv_onnx.h - export a fedvault model (schema + preprocessing + network) to ONNX.
 *
 * The exported graph computes what fv_model_predict computes, preprocessing included, so
 * a bank's serving stack (ONNX Runtime or any runtime with the ai.onnx opset 13 and the
 * ai.onnx.ml opset 2 LabelEncoder) feeds it raw column values and gets the same scores
 * (float32; measured max |diff| against fedvault's own scores is in
 * tests/integration/onnx_export.py, the bound asserted there is 1e-5).
 *
 * Input contract. One graph input per feature column (numeric or categorical; ignored
 * and target columns have none), in schema column order, each of shape [N, 1] where N
 * is the batch dimension (dim_param "N"):
 *   numeric      tensor(float); NaN = missing (imputed like fedvault: feature 0, i.e.
 *                the training mean). Infinities are not refused, unlike fedvault's CSV
 *                reader: they give non-finite scores.
 *   categorical  tensor(string), the cell text exactly as in the CSV (unquoted): "" or
 *                "NA" = missing (all-zero one-hot); a value outside the vocabulary goes
 *                to the "<other>" feature under the schema's "other" policy. Under the
 *                "error" policy fedvault refuses such a row, which a graph cannot do: it
 *                is encoded like a missing value (all zeros). Check categories upstream
 *                if that matters.
 * Input names are the column names sanitized: every byte outside [A-Za-z0-9_] becomes
 * '_', and a name that starts with a digit or is empty gets a leading '_'
 * (fv_onnx_input_name). Two columns that sanitize to the same name, or a column that
 * sanitizes to an output name, are refused (FV_EINVAL, naming both).
 *
 * Outputs: "logit" [N, n_out] (the network's raw outputs) and "probability" [N, n_out]:
 * sigmoid of the logit for a binary model (n_out = 1, P(positive label)), softmax over
 * the K classes (schema "classes" order) for a multi-class model.
 *
 * The file also carries metadata_props "fedvault.schema" (the schema JSON, so a consumer
 * can rebuild the input list and the labels) and "fedvault.version".
 */
#ifndef FV_ONNX_H
#define FV_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"
#include "fv_model.h"

#define FV_ONNX_OPSET 13     /* ai.onnx */
#define FV_ONNX_ML_OPSET 2   /* ai.onnx.ml (LabelEncoder-2) */
#define FV_ONNX_IR_VERSION 7 /* the IR version that goes with opset 13 */

/* Serializes m (borrowed) as an ONNX ModelProto. *ret_buf is malloc'd; caller frees.
 * Errors: FV_EINVAL (input names collide; message in d), FV_ENOMEM, FV_ETOOBIG (the
 * model would exceed protobuf's 2 GiB message limit). */
int fv_onnx_export(const fv_model_t *m, uint8_t **ret_buf, size_t *ret_len, fv_diag_t *d);

/* fv_onnx_export + fv_file_write_atomic to path (kernels/fv_file.h: temporary file,
 * fsync, rename, through symlinks; in place on standard output, a device or a FIFO). */
int fv_onnx_save(const fv_model_t *m, const char *path, fv_diag_t *d);

/* The graph input name of column name (see above) into buf. Returns buf, or NULL if
 * len is too small for the result. */
char *fv_onnx_input_name(const char *name, char *buf, size_t len);

#endif
