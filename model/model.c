/* model.c - the fedvault model file (.fvm): encode, decode, save, load, and scoring.
 *
 * A model is what a bank needs to score a row: the schema (how to read the CSV), the fitted
 * preprocessing (how to turn a row into features) and the network (how to turn features
 * into a probability), plus an optional metadata JSON object saying where it came from.
 * The file holds all of it, so a model never gets scored with statistics from another
 * fit or a schema it was not trained on.
 *
 * FILE FORMAT, VERSIONS 1 AND 2
 *
 * Version 1 holds float32 parameters; version 2 is version 1 with the fifth section
 * replaced by int8 weights ("PRM8" below). An encoder writes version 1 for every model
 * whose int8 is false, so those files are byte for byte what they were before version 2
 * existed (content-addressed model files and their hashes do not move), and version 2
 * only when int8 is true. The version is the one place that says "int8": it decides the
 * layout of the fifth section, and a reader older than version 2 refuses the file with
 * FV_EVERSION instead of misreading it. The metadata JSON stays the producer's.
 *
 * Every integer is unsigned, fixed width and little-endian (u32: 4 bytes, u64: 8 bytes,
 * least significant byte first). f32 and f64 are IEEE 754 binary32 and binary64, stored as
 * the little-endian bytes of their bit pattern. Offsets are in bytes from the start of the
 * file. The file is a 16-byte header, five sections in a fixed order and a 32-byte
 * checksum, and ends right after the checksum:
 *
 *   HEADER (16 bytes)
 *     0   8  magic: 46 56 4d 4f 44 45 4c 00 ("FVMODEL" and a NUL byte)
 *     8   4  u32 format version: 1 (float32 parameters) or 2 (int8 weights);
 *            FV_MODEL_FORMAT_VERSION is the newest this build reads
 *    12   4  u32 flags: 0. No flag is defined yet; a reader refuses any bit it does not
 *            know (FV_ENOTSUP), so a flag may only mark a change old readers must not
 *            silently misread.
 *
 *   SECTION (12 + L bytes), five times, starting at offset 16
 *     0   4  u32 tag: four ASCII letters, so the file can be read in a hex dump
 *     4   8  u64 L: length of the payload in bytes
 *    12   L  payload
 *
 *   The sections come in exactly this order; a missing, repeated, reordered or unknown
 *   section is an error:
 *
 *   1. tag "SCHM" (bytes 53 43 48 4d, u32 0x4d484353): schema
 *        The schema as the canonical JSON of fv_schema_to_json (UTF-8, no NUL byte, no
 *        terminator), read back with fv_schema_from_json. 1 <= L <= FV_MODEL_MAX_JSON_BYTES.
 *
 *   2. tag "META" (bytes 4d 45 54 41, u32 0x4154454d): metadata
 *        A JSON object chosen by the producer (tool, version, training run), stored byte
 *        for byte as given, no NUL byte. L = 0: no metadata. L <= FV_MODEL_MAX_JSON_BYTES.
 *
 *   3. tag "PREP" (bytes 50 52 45 50, u32 0x50455250): preprocessing statistics
 *        0   4  u32 n_cols: the schema's number of columns
 *        4  16  per column c = 0 .. n_cols-1, at 4 + 16c: f64 mean, then f64 std
 *        L = 4 + 16 * n_cols. A numeric column has a finite mean and a finite std > 0;
 *        every other column has NaN in both (written as 00 00 00 00 00 00 f8 7f).
 *
 *   4. tag "ARCH" (bytes 41 52 43 48, u32 0x48435241): network architecture
 *        0       4  u32 n_in: the preprocessing's feature count, 1 .. FV_MLP_MAX_WIDTH
 *        4       4  u32 H: number of hidden layers, 0 .. FV_MLP_MAX_HIDDEN (0: logistic
 *                   regression)
 *        8      4H  u32 hidden[0 .. H), each 1 .. FV_MLP_MAX_WIDTH
 *        8 + 4H  4  u32 n_out: 1 for a binary schema, K (the number of classes) for a
 *                   multi-class one
 *        L = 12 + 4 * H.
 *
 *   5. version 1: tag "PARM" (bytes 50 41 52 4d, u32 0x4d524150): parameters
 *        0   8  u64 n: the parameter count, which must equal what the architecture
 *               implies: with dims = [n_in, hidden..., n_out], the sum over layers l of
 *               dims[l] * dims[l+1] + dims[l+1]
 *        8  4n  f32 values, in the order of fv_mlp.h (W_0 row-major, b_0, W_1, b_1, ...),
 *               every one finite
 *        L = 8 + 4 * n.
 *
 *      version 2: tag "PRM8" (bytes 50 52 4d 38, u32 0x384d5250): int8 parameters
 *        0   8  u64 n: the parameter count, as for "PARM" (weights and biases)
 *        8      then each layer l = 0..H in turn, with I = dims[l], O = dims[l+1], as
 *               three blocks, no padding (an f32 after an odd-length int8 block is not
 *               4-aligned in the file; it is read byte by byte anyway):
 *          +0       4O  f32 s[j], j = 0..O-1: the scale of output unit j, finite, +0 or
 *                       more (the sign bit clear: -0 is refused)
 *          +4O      IO  i8 q (two's complement bytes) in the order of W_l in fv_mlp.h:
 *                       the weight from input i to unit j at +4O + i * O + j; each in
 *                       -127..127 (a byte 0x80, -128, is refused), 0 where s[j] = 0
 *          +4O+IO   4O  f32 b_l[j], every one finite
 *        L = 8 + sum over layers of (I * O + 8 * O).
 *        The network read back has W_l[i * O + j] = (float)q * s[j], which is exact (s has
 *        at most 17 significant bits), and b_l as stored: it is fv_mlp_quantize_int8() of
 *        the network that was written. Each unit's (s[j], q) must be exactly what
 *        fv_mlp_quantize_int8_row (fv_mlp.h, quant.c) makes of the weights it dequantizes
 *        to, else FV_ECORRUPT: the encoding is canonical, so a decoded model encodes back
 *        to the same bytes, and a crafted (s, q) pair with the same values is refused
 *        rather than silently rewritten on the next save.
 *
 *   CHECKSUM (32 bytes)
 *     0  32  SHA-256 (libsodium crypto_hash_sha256) of every byte before it
 *
 *   The whole file is at most FV_MODEL_MAX_BYTES (1 GiB).
 *
 * EXAMPLE: the 425-byte file of test_model.c's known-answer test (binary schema with a
 * numeric x, a categorical c in {a, b} and the target y; logistic regression):
 *     0  46 56 4d 4f 44 45 4c 00  01 00 00 00  00 00 00 00     magic, version 1, flags 0
 *    16  53 43 48 4d  e5 00 00 00 00 00 00 00                  "SCHM", L = 229
 *    28  7b 22 66 65 ...                                       {"fedvault_schema":1,...}
 *   257  4d 45 54 41  00 00 00 00 00 00 00 00                  "META", L = 0
 *   269  50 52 45 50  34 00 00 00 00 00 00 00                  "PREP", L = 52
 *   281  03 00 00 00                                           3 columns
 *   285  (1.5, 0.5) for x, then (NaN, NaN) for c and for y
 *   333  41 52 43 48  0c 00 00 00 00 00 00 00                  "ARCH", L = 12
 *   345  03 00 00 00  00 00 00 00  01 00 00 00                 n_in 3, H 0, n_out 1
 *   357  50 41 52 4d  18 00 00 00 00 00 00 00                  "PARM", L = 24
 *   369  04 00 00 00 00 00 00 00                               4 parameters
 *   377  00 00 00 3f  00 00 80 bf  00 00 00 40  00 00 80 3e    0.5 -1 2 0.25 (W, then b)
 *   393  4c 68 d5 6e ... 9d 07 01                              SHA-256 of bytes 0..392
 *
 * The same tiny model with int8 set is a 420-byte version-2 file: byte 8 is 02, bytes
 * 16..356 are as above, then
 *   357  50 52 4d 38  13 00 00 00 00 00 00 00                  "PRM8", L = 19
 *   369  04 00 00 00 00 00 00 00                               4 parameters
 *   377  00 02 81 3c                                           s = 2/127 to 17 bits
 *                                                              (0.015748024)
 *   381  20 c0 7f                                              q = 32, -64, 127
 *   384  00 00 80 3e                                           bias 0.25
 *   388  ...                                                   SHA-256 of bytes 0..387
 * and decodes to the weights 0.50393677, -1.0078735, 1.999999 (q * s) and bias 0.25.
 *
 * A change of layout bumps the format version; a reader refuses versions newer than its own
 * with FV_EVERSION and a message naming both versions.
 *
 * DECODING ORDER, AND WHY
 *   1. size cap, magic, then version: the version decides the layout of everything after
 *      it, including where the checksum is, so nothing else can be read before it.
 *   2. the checksum, before any section is interpreted: a flipped bit anywhere after the
 *      version is FV_ECORRUPT "checksum mismatch", not whatever odd value it produced.
 *      When it does not match, the section headers alone are walked to tell a truncated
 *      file (named: which section needs how many bytes at which offset) and one with bytes
 *      appended from a damaged one. The walk trusts nothing; a flipped bit that makes a
 *      length point past the end (but not past any possible file) reads as a truncation,
 *      still FV_ECORRUPT. A SHA-256 detects accidents, not forgery: anyone can recompute
 *      it, so it is compared with memcmp, and every check below is still made on a file
 *      whose checksum matches (a crafted file must fail cleanly).
 *   3. the flags, then the five section headers: tags in order and each length against
 *      the bytes remaining before the checksum, so the structure is known to be sound
 *      before anything is allocated (which tag the fifth section has depends on the
 *      version). No length from the file is ever used as an allocation size: payloads are
 *      read in place, and what gets allocated (schema, statistics, network) is bounded by
 *      the schema caps and by the section lengths already checked.
 *   4. the payloads, in file order, each checked against what came before it (statistics
 *      against the schema's columns, architecture against the feature count and the
 *      classes, parameter count and section length against the architecture; for int8
 *      parameters, each scale, each weight and each row's canonical form).
 *
 * PORTABILITY
 *   Integers are written and read with byte shifts, never by dumping a struct or an array,
 *   so the host's byte order does not matter. Floats are copied (memcpy) into a uint32_t or
 *   uint64_t and that integer is shifted out; this relies on the host storing IEEE 754
 *   floats with the same byte order as its integers, true on every platform fedvault
 *   builds for (x86-64, aarch64); the static assertions below pin the float formats.
 *
 * THREADING AND OWNERSHIP
 *   No global state besides libsodium's, initialized by sodium_init() (idempotent and
 *   thread-safe) before each use. A model owns its four parts; the preprocessing borrows
 *   the schema, so the schema is freed last. Scoring only reads the model and writes the
 *   caller's workspace (fv_model_predict_ws) or one it allocates for the call
 *   (fv_model_predict), so many threads may score with one model at once, each with its
 *   own workspace. Messages use strerror(), which is thread-safe for every errno value on
 *   glibc >= 2.32 (Debian 12 ships 2.36).
 */
#include "fv_model.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "fv_file.h"
#include "fv_vec.h"
#include "model-int.h"

_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24 && FLT_MAX_EXP == 128,
               "f32 must be IEEE 754 binary32");
_Static_assert(sizeof(double) == 8 && DBL_MANT_DIG == 53 && DBL_MAX_EXP == 1024,
               "f64 must be IEEE 754 binary64");
_Static_assert(sizeof(size_t) >= 8, "the size arithmetic below assumes a 64-bit size_t");

#define MODEL_MAGIC "FVMODEL" /* plus its NUL: 8 bytes */
#define MODEL_MAGIC_LEN 8
#define MODEL_HEADER_LEN 16      /* magic, version, flags */
#define MODEL_SECTION_HDR_LEN 12 /* tag, length */
#define MODEL_CHECKSUM_LEN 32    /* crypto_hash_sha256_BYTES */

_Static_assert(MODEL_CHECKSUM_LEN == crypto_hash_sha256_BYTES, "SHA-256 is 32 bytes");

/* Four ASCII letters as the u32 whose little-endian bytes spell them. */
#define MODEL_TAG(a, b, c, d)                                                                      \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

enum { SEC_SCHEMA, SEC_META, SEC_PREP, SEC_ARCH, SEC_PARAMS, N_SECTIONS };

typedef struct section_desc {
    uint32_t tag;
    const char *name; /* as it appears in messages */
} section_desc_t;

static const section_desc_t section_info[N_SECTIONS] = {
    [SEC_SCHEMA] = {MODEL_TAG('S', 'C', 'H', 'M'), "schema"},
    [SEC_META] = {MODEL_TAG('M', 'E', 'T', 'A'), "metadata"},
    [SEC_PREP] = {MODEL_TAG('P', 'R', 'E', 'P'), "preprocessing"},
    [SEC_ARCH] = {MODEL_TAG('A', 'R', 'C', 'H'), "architecture"},
    [SEC_PARAMS] = {MODEL_TAG('P', 'A', 'R', 'M'), "parameters"},
};

/* Version 2 has the int8 parameters in place of the float ones. */
static const section_desc_t section_int8_params = {MODEL_TAG('P', 'R', 'M', '8'),
                                                   "int8 parameters"};

/* Section i of a file of the given (already checked) format version. */
static const section_desc_t *section_of(int i, uint32_t version)
{
    if (i == SEC_PARAMS && version == FV_MODEL_FORMAT_VERSION_INT8)
        return &section_int8_params;
    return &section_info[i];
}

/* ---- little-endian primitives ---------------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    put_u32(p, bits);
}

static float get_f32(const uint8_t *p)
{
    uint32_t bits = get_u32(p);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void put_f64(uint8_t *p, double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    put_u64(p, bits);
}

static double get_f64(const uint8_t *p)
{
    uint64_t bits = get_u64(p);
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* The one NaN writers use for the statistics of a non-numeric column. */
static const uint64_t canonical_nan_bits = UINT64_C(0x7ff8000000000000);

static int sha256(uint8_t out[MODEL_CHECKSUM_LEN], const uint8_t *buf, size_t len)
{
    if (sodium_init() < 0)
        return FV_EIO;
    crypto_hash_sha256(out, buf, (unsigned long long)len);
    return 0;
}

/* ---- consistency of the parts ----------------------------------------------------- */

/* n_out a network must have for this schema, or 0 if the schema cannot be modelled. */
static size_t expected_n_out(const fv_schema_t *s)
{
    if (fv_schema_is_binary(s))
        return 1;
    size_t k = fv_schema_n_classes(s);
    return k >= 2 ? k : 0;
}

/* Parameter count implied by an architecture whose widths are already within the caps:
 * at most 9 layers of 65536 x 65536 + 65536, far below 2^64. */
static uint64_t arch_n_params(const fv_mlp_arch_t *a)
{
    uint64_t dims[FV_MLP_MAX_HIDDEN + 2];
    size_t n_dims = 0;
    dims[n_dims++] = a->n_in;
    for (size_t i = 0; i < a->n_hidden; i++)
        dims[n_dims++] = a->hidden[i];
    dims[n_dims++] = a->n_out;
    uint64_t n = 0;
    for (size_t l = 0; l + 1 < n_dims; l++)
        n += dims[l] * dims[l + 1] + dims[l + 1];
    return n;
}

/* A metadata string is a JSON object of bounded size without NUL bytes. */
static int check_meta_json(const char *name, const char *json, size_t len, fv_diag_t *d)
{
    if (len > FV_MODEL_MAX_JSON_BYTES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: metadata is %zu bytes, the cap is %zu", name, len,
                           FV_MODEL_MAX_JSON_BYTES);
    if (memchr(json, '\0', len) != NULL)
        return fv_diag_set(d, FV_ECORRUPT, "%s: metadata holds a NUL byte", name);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (root == NULL)
        return fv_diag_set(d, FV_EPARSE, "%s: metadata: invalid JSON at line %d column %d: %s",
                           name, jerr.line, jerr.column, jerr.text);
    int is_object = json_is_object(root);
    json_decref(root);
    if (!is_object)
        return fv_diag_set(d, FV_EPARSE, "%s: metadata must be a JSON object", name);
    return 0;
}

int fv_model_new(fv_schema_t *schema, fv_preproc_t *preproc, fv_mlp_t *mlp, char *meta_json,
                 fv_model_t **ret)
{
    int r = FV_EINVAL;
    fv_model_t *m = NULL;

    if (schema == NULL || preproc == NULL || mlp == NULL || ret == NULL)
        goto out;
    const fv_mlp_arch_t *a = fv_mlp_arch(mlp);
    if (a->n_in != fv_preproc_n_features(preproc) || a->n_out != expected_n_out(schema))
        goto out;
    if (meta_json != NULL) {
        r = check_meta_json("model", meta_json, strlen(meta_json), NULL);
        if (r < 0) {
            r = FV_EINVAL;
            goto out;
        }
    }
    m = calloc(1, sizeof *m);
    if (m == NULL) {
        r = FV_ENOMEM;
        goto out;
    }
    m->schema = schema;
    m->preproc = preproc;
    m->mlp = mlp;
    m->meta_json = meta_json;
    *ret = m;
    return 0;

out:
    /* Ownership was taken: the parts go, preproc before the schema it borrows. */
    free(meta_json);
    fv_mlp_free(mlp);
    fv_preproc_free(preproc);
    fv_schema_free(schema);
    return r;
}

void fv_model_free(fv_model_t *m)
{
    if (m == NULL)
        return;
    free(m->meta_json);
    fv_mlp_free(m->mlp);
    fv_preproc_free(m->preproc);
    fv_schema_free(m->schema);
    free(m);
}

/* ---- encoding ---------------------------------------------------------------------- */

static uint8_t *put_section_hdr(uint8_t *p, int sec, uint32_t version, uint64_t len)
{
    put_u32(p, section_of(sec, version)->tag);
    put_u64(p + 4, len);
    return p + MODEL_SECTION_HDR_LEN;
}

/* dims[] = [n_in, hidden..., n_out] of an architecture within the caps; returns the
 * number of layers (n_dims - 1). */
static size_t arch_layers(const fv_mlp_arch_t *a, size_t dims[FV_MLP_MAX_HIDDEN + 2])
{
    size_t n_dims = 0;
    dims[n_dims++] = a->n_in;
    for (size_t i = 0; i < a->n_hidden; i++)
        dims[n_dims++] = a->hidden[i];
    dims[n_dims++] = a->n_out;
    return n_dims - 1;
}

/* Payload length of the "PRM8" section: 8 + sum over layers of d_in d_out + 8 d_out.
 * Below 2^37 for widths within the caps. */
static uint64_t int8_params_len(const fv_mlp_arch_t *a)
{
    size_t dims[FV_MLP_MAX_HIDDEN + 2];
    size_t n_layers = arch_layers(a, dims);
    uint64_t len = 8;
    for (size_t l = 0; l < n_layers; l++)
        len += (uint64_t)dims[l] * dims[l + 1] + 8 * (uint64_t)dims[l + 1];
    return len;
}

/* Writes the "PRM8" payload (int8_params_len bytes) of the parameters at p. q: scratch of
 * the widest layer input. FV_ENUMERIC if a weight is not finite. */
static int put_int8_params(uint8_t *p, const fv_mlp_arch_t *a, const float *params, int8_t *q)
{
    size_t dims[FV_MLP_MAX_HIDDEN + 2];
    size_t n_layers = arch_layers(a, dims), off = 0, n_params = arch_n_params(a);

    put_u64(p, n_params);
    p += 8;
    for (size_t l = 0; l < n_layers; l++) {
        size_t d_in = dims[l], d_out = dims[l + 1];
        const float *w = params + off;
        uint8_t *scales = p, *qs = p + 4 * d_out, *bias = qs + d_in * d_out;
        for (size_t j = 0; j < d_out; j++) {
            float s;
            int r = fv_mlp_quantize_int8_row(w + j, d_in, d_out, q, &s);
            if (r < 0)
                return r;
            put_f32(scales + 4 * j, s);
            for (size_t i = 0; i < d_in; i++)
                qs[i * d_out + j] = (uint8_t)q[i]; /* two's complement byte */
        }
        off += d_in * d_out;
        for (size_t j = 0; j < d_out; j++)
            put_f32(bias + 4 * j, params[off + j]);
        off += d_out;
        p = bias + 4 * d_out;
    }
    return 0;
}

int fv_model_encode(const fv_model_t *m, uint8_t **ret_buf, size_t *ret_len)
{
    int r;
    char *schema_json = NULL;
    size_t schema_len = 0;
    uint8_t *buf = NULL;
    int8_t *q = NULL;

    if (m == NULL || m->schema == NULL || m->preproc == NULL || m->mlp == NULL || ret_buf == NULL ||
        ret_len == NULL)
        return FV_EINVAL;

    r = fv_schema_to_json(m->schema, &schema_json, &schema_len);
    if (r < 0)
        goto out;
    size_t meta_len = m->meta_json != NULL ? strlen(m->meta_json) : 0;
    if (schema_len == 0 || schema_len > FV_MODEL_MAX_JSON_BYTES ||
        meta_len > FV_MODEL_MAX_JSON_BYTES) {
        r = FV_ETOOBIG;
        goto out;
    }

    const fv_mlp_arch_t *a = fv_mlp_arch(m->mlp);
    size_t n_cols = fv_schema_n_columns(m->schema);
    size_t n_params = fv_mlp_n_params(m->mlp);
    const float *params = fv_mlp_params_const(m->mlp);
    if (n_params != arch_n_params(a) || a->n_hidden > FV_MLP_MAX_HIDDEN) {
        r = FV_EINVAL;
        goto out;
    }
    /* Never write a file that decode would refuse. */
    for (size_t i = 0; i < n_params; i++) {
        if (!isfinite(params[i])) {
            r = FV_ENUMERIC;
            goto out;
        }
    }

    /* Every term is bounded (JSON by its cap, n_cols by the schema's, n_params by the
     * width caps), so the sum cannot overflow a 64-bit size_t. */
    size_t prep_len = 4 + 16 * n_cols;
    size_t arch_len = 12 + 4 * a->n_hidden;
    uint32_t version = m->int8 ? FV_MODEL_FORMAT_VERSION_INT8 : FV_MODEL_FORMAT_VERSION_FLOAT;
    size_t params_len = m->int8 ? (size_t)int8_params_len(a) : 8 + 4 * n_params;
    size_t total = MODEL_HEADER_LEN + N_SECTIONS * MODEL_SECTION_HDR_LEN + schema_len + meta_len +
                   prep_len + arch_len + params_len + MODEL_CHECKSUM_LEN;
    if (total > FV_MODEL_MAX_BYTES) {
        r = FV_ETOOBIG;
        goto out;
    }
    buf = malloc(total);
    /* Scratch for one row of int8 weights: at most FV_MLP_MAX_WIDTH bytes. */
    q = m->int8 ? malloc(FV_MLP_MAX_WIDTH) : NULL;
    if (buf == NULL || (m->int8 && q == NULL)) {
        r = FV_ENOMEM;
        goto out;
    }

    uint8_t *p = buf;
    memcpy(p, MODEL_MAGIC, MODEL_MAGIC_LEN); /* copies the NUL too */
    put_u32(p + 8, version);
    put_u32(p + 12, 0); /* flags */
    p += MODEL_HEADER_LEN;

    p = put_section_hdr(p, SEC_SCHEMA, version, schema_len);
    memcpy(p, schema_json, schema_len);
    p += schema_len;

    p = put_section_hdr(p, SEC_META, version, meta_len);
    if (meta_len > 0)
        memcpy(p, m->meta_json, meta_len);
    p += meta_len;

    p = put_section_hdr(p, SEC_PREP, version, prep_len);
    put_u32(p, (uint32_t)n_cols);
    p += 4;
    for (size_t c = 0; c < n_cols; c++) {
        if (fv_schema_column_type(m->schema, c) == FV_COL_NUMERIC) {
            double mean = fv_preproc_mean(m->preproc, c);
            double sd = fv_preproc_std(m->preproc, c);
            if (!isfinite(mean) || !isfinite(sd) || !(sd > 0)) {
                r = FV_ENUMERIC;
                goto out;
            }
            put_f64(p, mean);
            put_f64(p + 8, sd);
        } else {
            put_u64(p, canonical_nan_bits);
            put_u64(p + 8, canonical_nan_bits);
        }
        p += 16;
    }

    p = put_section_hdr(p, SEC_ARCH, version, arch_len);
    put_u32(p, (uint32_t)a->n_in);
    put_u32(p + 4, (uint32_t)a->n_hidden);
    p += 8;
    for (size_t i = 0; i < a->n_hidden; i++, p += 4)
        put_u32(p, (uint32_t)a->hidden[i]);
    put_u32(p, (uint32_t)a->n_out);
    p += 4;

    p = put_section_hdr(p, SEC_PARAMS, version, params_len);
    if (m->int8) {
        r = put_int8_params(p, a, params, q);
        if (r < 0)
            goto out;
        p += params_len;
    } else {
        put_u64(p, n_params);
        p += 8;
        for (size_t i = 0; i < n_params; i++, p += 4)
            put_f32(p, params[i]);
    }

    r = sha256(p, buf, (size_t)(p - buf));
    if (r < 0)
        goto out;
    p += MODEL_CHECKSUM_LEN;
    if ((size_t)(p - buf) != total) { /* the size computation and the writer disagree */
        r = FV_EINVAL;
        goto out;
    }

    *ret_buf = buf;
    *ret_len = total;
    buf = NULL;
    r = 0;
out:
    free(q);
    free(buf);
    free(schema_json);
    return r;
}

/* ---- decoding ---------------------------------------------------------------------- */

typedef struct section {
    const uint8_t *data; /* points into the caller's buffer */
    size_t len;
    size_t offset; /* of the payload, for messages */
} section_t;

static int truncated(fv_diag_t *d, const char *name, const char *what, uint64_t need, size_t offset,
                     size_t len)
{
    return fv_diag_set(d, FV_ECORRUPT,
                       "%s: truncated: %s needs %" PRIu64 " bytes at offset %zu, file has %zu",
                       name, what, need, offset, len);
}

/* The checksum did not match (or the file is too short to hold one): walk the section
 * headers, trusting nothing, to name a truncation or appended bytes. Anything else is
 * reported as damage. Always returns FV_ECORRUPT. */
static int diagnose_damage(const char *name, const uint8_t *buf, size_t len, fv_diag_t *d)
{
    char what[64];
    size_t pos = MODEL_HEADER_LEN;
    uint32_t version = get_u32(buf + 8); /* check_header accepted it */

    for (int i = 0; i < N_SECTIONS; i++) {
        const section_desc_t *sd = section_of(i, version);
        if (len - pos < MODEL_SECTION_HDR_LEN) {
            snprintf(what, sizeof what, "section '%s' header", sd->name);
            return truncated(d, name, what, MODEL_SECTION_HDR_LEN, pos, len);
        }
        if (get_u32(buf + pos) != sd->tag)
            goto damaged; /* not where a section should start: the bytes are wrong */
        uint64_t sec_len = get_u64(buf + pos + 4);
        pos += MODEL_SECTION_HDR_LEN;
        if (sec_len > len - pos) {
            /* A length no valid file can have is a damaged length, not a short file. */
            if (sec_len > FV_MODEL_MAX_BYTES - pos)
                goto damaged;
            snprintf(what, sizeof what, "section '%s'", sd->name);
            return truncated(d, name, what, sec_len, pos, len);
        }
        pos += (size_t)sec_len;
    }
    if (len - pos < MODEL_CHECKSUM_LEN)
        return truncated(d, name, "checksum", MODEL_CHECKSUM_LEN, pos, len);
    if (len - pos > MODEL_CHECKSUM_LEN)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: %zu unexpected bytes after the checksum at offset %zu "
                           "(the file ends at offset %zu)",
                           name, len - pos - MODEL_CHECKSUM_LEN, pos + MODEL_CHECKSUM_LEN,
                           pos + MODEL_CHECKSUM_LEN);
damaged:
    return fv_diag_set(d, FV_ECORRUPT,
                       "%s: checksum mismatch: the file is damaged (the SHA-256 of its first "
                       "%zu bytes differs from the one stored after them); restore it from a "
                       "good copy",
                       name, len >= MODEL_CHECKSUM_LEN ? len - MODEL_CHECKSUM_LEN : 0);
}

/* Magic and version: all that can be read before the checksum. */
static int check_header(const char *name, const uint8_t *buf, size_t len, fv_diag_t *d)
{
    size_t n = len < MODEL_MAGIC_LEN ? len : MODEL_MAGIC_LEN;
    if (memcmp(buf, MODEL_MAGIC, n) != 0)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: not a fedvault model file (it does not start with "
                           "\"FVMODEL\\0\")",
                           name);
    if (len < MODEL_HEADER_LEN)
        return truncated(d, name, "header", MODEL_HEADER_LEN, 0, len);
    uint32_t version = get_u32(buf + 8);
    if (version > FV_MODEL_FORMAT_VERSION)
        return fv_diag_set(d, FV_EVERSION,
                           "%s: model format version %" PRIu32 " is newer than this build "
                           "reads (version %d); upgrade fedvault to load it",
                           name, version, FV_MODEL_FORMAT_VERSION);
    if (version == 0)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: model format version 0 does not exist: the header is damaged",
                           name);
    return 0;
}

/* The file's checksum already matched: split it into its sections, checking tags and
 * lengths against the bytes before the checksum (a crafted file can still lie). */
static int split_sections(const char *name, const uint8_t *buf, size_t len, uint32_t version,
                          section_t sec[N_SECTIONS], fv_diag_t *d)
{
    size_t end = len - MODEL_CHECKSUM_LEN;
    size_t pos = MODEL_HEADER_LEN;

    for (int i = 0; i < N_SECTIONS; i++) {
        const section_desc_t *sd = section_of(i, version);
        if (end - pos < MODEL_SECTION_HDR_LEN)
            return fv_diag_set(d, FV_ECORRUPT,
                               "%s: section '%s' is missing: its header needs %d bytes at "
                               "offset %zu, only %zu remain before the checksum",
                               name, sd->name, MODEL_SECTION_HDR_LEN, pos, end - pos);
        uint32_t tag = get_u32(buf + pos);
        if (tag != sd->tag)
            return fv_diag_set(d, FV_ECORRUPT,
                               "%s: expected section '%s' (tag 0x%08" PRIx32 ") at offset "
                               "%zu, found tag 0x%08" PRIx32,
                               name, sd->name, sd->tag, pos, tag);
        uint64_t sec_len = get_u64(buf + pos + 4);
        pos += MODEL_SECTION_HDR_LEN;
        if (sec_len > end - pos)
            return fv_diag_set(d, FV_ECORRUPT,
                               "%s: section '%s' at offset %zu declares %" PRIu64 " bytes, "
                               "only %zu remain before the checksum",
                               name, sd->name, pos, sec_len, end - pos);
        sec[i].data = buf + pos;
        sec[i].len = (size_t)sec_len;
        sec[i].offset = pos;
        pos += (size_t)sec_len;
    }
    if (pos != end)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: %zu unexpected bytes between the last section and the "
                           "checksum, at offset %zu",
                           name, end - pos, pos);
    return 0;
}

static int decode_schema(const char *name, const section_t *sec, fv_schema_t **ret, fv_diag_t *d)
{
    if (sec->len == 0)
        return fv_diag_set(d, FV_ECORRUPT, "%s: section 'schema' is empty", name);
    if (sec->len > FV_MODEL_MAX_JSON_BYTES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: section 'schema' is %zu bytes, the cap is %zu", name,
                           sec->len, FV_MODEL_MAX_JSON_BYTES);
    if (memchr(sec->data, '\0', sec->len) != NULL)
        return fv_diag_set(d, FV_ECORRUPT, "%s: section 'schema' holds a NUL byte", name);
    char sname[FV_DIAG_MAX / 2];
    snprintf(sname, sizeof sname, "%s: section 'schema'", name);
    /* The JSON is parsed in place: from_json takes a length, no terminator needed. */
    int r = fv_schema_from_json(sname, (const char *)sec->data, sec->len, ret, d);
    if (r == 0 && (r = fv_schema_check_closed(*ret, sname, d)) < 0) {
        fv_schema_free(*ret); /* a model's features need a closed schema */
        *ret = NULL;
    }
    return r;
}

static int decode_meta(const char *name, const section_t *sec, char **ret, fv_diag_t *d)
{
    if (sec->len == 0) {
        *ret = NULL;
        return 0;
    }
    int r = check_meta_json(name, (const char *)sec->data, sec->len, d);
    if (r < 0)
        return r;
    char *s = malloc(sec->len + 1); /* bounded: len <= FV_MODEL_MAX_JSON_BYTES */
    if (s == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory for the metadata", name);
    memcpy(s, sec->data, sec->len);
    s[sec->len] = '\0';
    *ret = s;
    return 0;
}

static int decode_preproc(const char *name, const section_t *sec, const fv_schema_t *s,
                          fv_preproc_t **ret, fv_diag_t *d)
{
    int r;
    double *mean = NULL, *sd = NULL;
    size_t n_schema = fv_schema_n_columns(s);

    if (sec->len < 4)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section 'preprocessing' is %zu bytes, too short for its column "
                           "count",
                           name, sec->len);
    uint32_t n_cols = get_u32(sec->data);
    if (n_cols != n_schema)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section 'preprocessing' has statistics for %" PRIu32
                           " columns, the schema has %zu",
                           name, n_cols, n_schema);
    if (sec->len != 4 + 16 * (size_t)n_cols)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section 'preprocessing' is %zu bytes, %" PRIu32 " columns need %zu",
                           name, sec->len, n_cols, 4 + 16 * (size_t)n_cols);

    /* n_cols equals the schema's column count, which the schema caps. */
    mean = malloc((n_cols ? n_cols : 1) * sizeof *mean);
    sd = malloc((n_cols ? n_cols : 1) * sizeof *sd);
    if (mean == NULL || sd == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory for the statistics", name);
        goto out;
    }
    for (size_t c = 0; c < n_cols; c++) {
        const uint8_t *p = sec->data + 4 + 16 * c;
        mean[c] = get_f64(p);
        sd[c] = get_f64(p + 8);
        const char *col = fv_schema_column_name(s, c);
        if (fv_schema_column_type(s, c) == FV_COL_NUMERIC) {
            if (!isfinite(mean[c]) || !isfinite(sd[c]) || !(sd[c] > 0)) {
                r = fv_diag_set(d, FV_ECORRUPT,
                                "%s: section 'preprocessing': numeric column '%s' has mean %g "
                                "and std %g; both must be finite and std > 0",
                                name, col, mean[c], sd[c]);
                goto out;
            }
        } else if (!isnan(mean[c]) || !isnan(sd[c])) {
            r = fv_diag_set(d, FV_ECORRUPT,
                            "%s: section 'preprocessing': non-numeric column '%s' has mean %g "
                            "and std %g; both must be NaN",
                            name, col, mean[c], sd[c]);
            goto out;
        }
    }
    r = fv__preproc_from_stats(s, mean, sd, ret);
    if (r < 0)
        fv_diag_set(d, r, "%s: section 'preprocessing': cannot rebuild the preprocessing: %s", name,
                    fv_strerror(r));
out:
    free(mean);
    free(sd);
    return r;
}

static int decode_arch(const char *name, const section_t *sec, const fv_schema_t *s,
                       const fv_preproc_t *pp, fv_mlp_arch_t *ret, fv_diag_t *d)
{
    fv_mlp_arch_t a;
    memset(&a, 0, sizeof a);

    if (sec->len < 8)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section 'architecture' is %zu bytes, at least "
                           "12 are needed",
                           name, sec->len);
    uint32_t n_in = get_u32(sec->data);
    uint32_t n_hidden = get_u32(sec->data + 4);
    if (n_hidden > FV_MLP_MAX_HIDDEN)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section 'architecture': %" PRIu32 " hidden layers, at most %d "
                           "are supported",
                           name, n_hidden, FV_MLP_MAX_HIDDEN);
    if (sec->len != 12 + 4 * (size_t)n_hidden)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section 'architecture' is %zu bytes, %" PRIu32
                           " hidden layers need %zu",
                           name, sec->len, n_hidden, 12 + 4 * (size_t)n_hidden);
    a.n_in = n_in;
    a.n_hidden = n_hidden;
    for (size_t i = 0; i < n_hidden; i++) {
        uint32_t w = get_u32(sec->data + 8 + 4 * i);
        if (w < 1 || w > FV_MLP_MAX_WIDTH)
            return fv_diag_set(d, FV_ECORRUPT,
                               "%s: section 'architecture': hidden layer %zu has width %" PRIu32
                               ", it must be 1..%d",
                               name, i + 1, w, FV_MLP_MAX_WIDTH);
        a.hidden[i] = w;
    }
    a.n_out = get_u32(sec->data + 8 + 4 * (size_t)n_hidden);

    size_t n_features = fv_preproc_n_features(pp);
    if (a.n_in != n_features)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section 'architecture': the network takes %zu inputs, the "
                           "preprocessing makes %zu features",
                           name, a.n_in, n_features);
    if (a.n_in < 1 || a.n_in > FV_MLP_MAX_WIDTH)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section 'architecture': %zu inputs, it must be 1..%d", name, a.n_in,
                           FV_MLP_MAX_WIDTH);
    size_t want_out = expected_n_out(s);
    if (want_out == 0)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section 'schema': a multi-class schema needs at least 2 "
                           "classes, it has %zu",
                           name, fv_schema_n_classes(s));
    if (a.n_out != want_out)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section 'architecture': %zu outputs, the schema's %s task "
                           "needs %zu",
                           name, a.n_out, fv_schema_is_binary(s) ? "binary" : "multi-class",
                           want_out);
    *ret = a;
    return 0;
}

/* The parameter count both parameter sections start with (u64) must be the
 * architecture's. */
static int check_param_count(const char *name, const char *what, const section_t *sec,
                             const fv_mlp_arch_t *a, fv_diag_t *d)
{
    char spec[128];
    if (sec->len < 8)
        return fv_diag_set(d, FV_ECORRUPT, "%s: section '%s' is %zu bytes, too short for its count",
                           name, what, sec->len);
    uint64_t n = get_u64(sec->data);
    uint64_t want = arch_n_params(a);
    if (n != want)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section '%s' holds %" PRIu64 " values, architecture "
                           "'%s' with %zu inputs and %zu outputs needs %" PRIu64,
                           name, what, n, fv_mlp_arch_string(a, spec, sizeof spec), a->n_in,
                           a->n_out, want);
    return 0;
}

static int decode_params(const char *name, const section_t *sec, const fv_mlp_arch_t *a,
                         fv_mlp_t **ret, fv_diag_t *d)
{
    int r;
    fv_mlp_t *mlp = NULL;
    char spec[128];

    if ((r = check_param_count(name, section_info[SEC_PARAMS].name, sec, a, d)) != 0)
        return r;
    uint64_t n = get_u64(sec->data);
    /* n == the architecture's count < 2^36, so 8 + 4n cannot overflow. */
    if (sec->len != 8 + 4 * n)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section 'parameters' is %zu bytes, %" PRIu64
                           " values need %" PRIu64,
                           name, sec->len, n, 8 + 4 * n);

    /* The section holds 4 bytes per parameter and fits in the file, so the network about
     * to be allocated is no larger than the (capped) file. */
    r = fv_mlp_new(a, &mlp);
    if (r < 0) {
        fv_diag_set(d, r, "%s: cannot build the network '%s': %s", name,
                    fv_mlp_arch_string(a, spec, sizeof spec), fv_strerror(r));
        goto out;
    }
    float *params = fv_mlp_params(mlp);
    const uint8_t *p = sec->data + 8;
    for (size_t i = 0; i < n; i++, p += 4) {
        params[i] = get_f32(p);
        if (!isfinite(params[i])) {
            r = fv_diag_set(d, FV_ENUMERIC,
                            "%s: parameter %zu (at offset %zu) is %s; the model diverged "
                            "before it was saved",
                            name, i, sec->offset + 8 + 4 * i,
                            isnan(params[i]) ? "NaN" : "infinite");
            goto out;
        }
    }
    *ret = mlp;
    mlp = NULL;
out:
    fv_mlp_free(mlp);
    return r;
}

/* The "PRM8" section of a version-2 file: per layer the scales, the int8 weights and the
 * float biases (layout in the top note). Every row must be canonical: exactly what
 * fv_mlp_quantize_int8_row makes of the weights it dequantizes to, so that a decoded
 * model encodes back to the same bytes. */
static int decode_int8_params(const char *name, const section_t *sec, const fv_mlp_arch_t *a,
                              fv_mlp_t **ret, fv_diag_t *d)
{
    int r;
    fv_mlp_t *mlp = NULL;
    int8_t *q = NULL;
    char spec[128];
    size_t dims[FV_MLP_MAX_HIDDEN + 2];
    size_t n_layers = arch_layers(a, dims);
    const char *what = section_int8_params.name;

    if ((r = check_param_count(name, what, sec, a, d)) != 0)
        return r;
    uint64_t want_len = int8_params_len(a); /* < 2^37: no overflow */
    if (sec->len != want_len)
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: section '%s' is %zu bytes, architecture '%s' needs %" PRIu64
                           " (int8 weights, a float32 scale and bias per unit)",
                           name, what, sec->len, fv_mlp_arch_string(a, spec, sizeof spec),
                           want_len);

    /* The section holds at least one byte per parameter and fits in the (capped) file,
     * so the network about to be allocated is at most 4x the file. */
    r = fv_mlp_new(a, &mlp);
    if (r < 0) {
        fv_diag_set(d, r, "%s: cannot build the network '%s': %s", name,
                    fv_mlp_arch_string(a, spec, sizeof spec), fv_strerror(r));
        goto out;
    }
    q = malloc(FV_MLP_MAX_WIDTH); /* one row, for the canonical check */
    if (q == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory for the int8 parameters", name);
        goto out;
    }
    float *params = fv_mlp_params(mlp);
    const uint8_t *p = sec->data + 8;
    size_t off = 0;
    for (size_t l = 0; l < n_layers; l++) {
        size_t d_in = dims[l], d_out = dims[l + 1];
        const uint8_t *scales = p, *qs = p + 4 * d_out, *bias = qs + d_in * d_out;
        float *w = params + off;
        for (size_t j = 0; j < d_out; j++) {
            size_t at = sec->offset + (size_t)(scales + 4 * j - sec->data);
            uint32_t bits = get_u32(scales + 4 * j);
            float s = get_f32(scales + 4 * j);
            if (!isfinite(s) || (bits >> 31) != 0) {
                r = fv_diag_set(d, FV_ECORRUPT,
                                "%s: section '%s': layer %zu, unit %zu: scale %g (at offset %zu) "
                                "must be finite and >= +0",
                                name, what, l + 1, j, (double)s, at);
                goto out;
            }
            for (size_t i = 0; i < d_in; i++) {
                int8_t v = (int8_t)qs[i * d_out + j];
                if (v < -FV_MLP_INT8_MAX || (s == 0.0f && v != 0)) {
                    r = fv_diag_set(d, FV_ECORRUPT,
                                    "%s: section '%s': layer %zu, unit %zu, input %zu: weight "
                                    "%d (at offset %zu) %s",
                                    name, what, l + 1, j, i, v,
                                    sec->offset + (size_t)(qs + i * d_out + j - sec->data),
                                    v < -FV_MLP_INT8_MAX ? "is out of range: int8 weights "
                                                           "are -127..127"
                                                         : "is not 0 in a row whose scale is 0");
                    goto out;
                }
                w[i * d_out + j] = (float)v * s; /* exact, or infinite if s is absurd */
            }
            float s2;
            r = fv_mlp_quantize_int8_row(w + j, d_in, d_out, q, &s2);
            if (r == FV_ENUMERIC) {
                r = fv_diag_set(d, FV_ECORRUPT,
                                "%s: section '%s': layer %zu, unit %zu: scale %g (at offset %zu) "
                                "times its weights overflows float32",
                                name, what, l + 1, j, (double)s, at);
                goto out;
            }
            if (r < 0) { /* FV_EINVAL: not with these arguments */
                fv_diag_set(d, r, "%s: section '%s': %s", name, what, fv_strerror(r));
                goto out;
            }
            bool same = memcmp(&s, &s2, sizeof s) == 0;
            for (size_t i = 0; same && i < d_in; i++)
                same = q[i] == (int8_t)qs[i * d_out + j];
            if (!same) {
                r = fv_diag_set(d, FV_ECORRUPT,
                                "%s: section '%s': layer %zu, unit %zu: scale %.9g (at offset "
                                "%zu) and its weights are not what quantizing their values "
                                "gives (scale %.9g); the file was not written by fedvault",
                                name, what, l + 1, j, (double)s, at, (double)s2);
                goto out;
            }
        }
        off += d_in * d_out;
        for (size_t j = 0; j < d_out; j++) {
            float b = get_f32(bias + 4 * j);
            if (!isfinite(b)) {
                r = fv_diag_set(d, FV_ENUMERIC,
                                "%s: section '%s': layer %zu, bias %zu (at offset %zu) is %s; "
                                "the model diverged before it was saved",
                                name, what, l + 1, j,
                                sec->offset + (size_t)(bias + 4 * j - sec->data),
                                isnan(b) ? "NaN" : "infinite");
                goto out;
            }
            params[off + j] = b;
        }
        off += d_out;
        p = bias + 4 * d_out;
    }
    *ret = mlp;
    mlp = NULL;
    r = 0;
out:
    free(q);
    fv_mlp_free(mlp);
    return r;
}

int fv_model_decode(const char *name, const uint8_t *buf, size_t len, fv_model_t **ret,
                    fv_diag_t *d)
{
    int r;
    section_t sec[N_SECTIONS];
    uint8_t sum[MODEL_CHECKSUM_LEN];
    fv_schema_t *schema = NULL;
    fv_preproc_t *pp = NULL;
    fv_mlp_t *mlp = NULL;
    char *meta = NULL;
    fv_mlp_arch_t arch;

    if (name == NULL)
        name = "model";
    if ((buf == NULL && len > 0) || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "%s: invalid arguments to fv_model_decode", name);
    if (len > FV_MODEL_MAX_BYTES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: %zu bytes, over the model file cap of %zu", name,
                           len, FV_MODEL_MAX_BYTES);
    if (len == 0)
        return fv_diag_set(d, FV_ECORRUPT, "%s: empty file, not a fedvault model", name);

    r = check_header(name, buf, len, d);
    if (r < 0)
        return r;
    if (len < MODEL_HEADER_LEN + MODEL_CHECKSUM_LEN)
        return diagnose_damage(name, buf, len, d);
    r = sha256(sum, buf, len - MODEL_CHECKSUM_LEN);
    if (r < 0)
        return fv_diag_set(d, r, "%s: libsodium failed to initialize", name);
    if (memcmp(sum, buf + len - MODEL_CHECKSUM_LEN, MODEL_CHECKSUM_LEN) != 0)
        return diagnose_damage(name, buf, len, d);

    uint32_t flags = get_u32(buf + 12);
    if (flags != 0)
        return fv_diag_set(d, FV_ENOTSUP,
                           "%s: header flags 0x%08" PRIx32 " are not supported by this build "
                           "(it knows none); upgrade fedvault to load this model",
                           name, flags);

    uint32_t version = get_u32(buf + 8); /* 1 or 2: check_header */
    r = split_sections(name, buf, len, version, sec, d);
    if (r < 0)
        return r;

    r = decode_schema(name, &sec[SEC_SCHEMA], &schema, d);
    if (r < 0)
        goto out;
    r = decode_meta(name, &sec[SEC_META], &meta, d);
    if (r < 0)
        goto out;
    r = decode_preproc(name, &sec[SEC_PREP], schema, &pp, d);
    if (r < 0)
        goto out;
    r = decode_arch(name, &sec[SEC_ARCH], schema, pp, &arch, d);
    if (r < 0)
        goto out;
    if (version == FV_MODEL_FORMAT_VERSION_INT8)
        r = decode_int8_params(name, &sec[SEC_PARAMS], &arch, &mlp, d);
    else
        r = decode_params(name, &sec[SEC_PARAMS], &arch, &mlp, d);
    if (r < 0)
        goto out;

    r = fv_model_new(schema, pp, mlp, meta, ret); /* takes the four parts, even on failure */
    schema = NULL;
    pp = NULL;
    mlp = NULL;
    meta = NULL;
    if (r < 0)
        fv_diag_set(d, r, "%s: the decoded parts do not form a model: %s", name, fv_strerror(r));
    else
        (*ret)->int8 = version == FV_MODEL_FORMAT_VERSION_INT8;
out:
    free(meta);
    fv_mlp_free(mlp);
    fv_preproc_free(pp);
    fv_schema_free(schema);
    return r;
}

/* ---- files ------------------------------------------------------------------------- */

int fv_model_save(const fv_model_t *m, const char *path, fv_diag_t *d)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int r;

    if (m == NULL || path == NULL || path[0] == '\0')
        return fv_diag_set(d, FV_EINVAL, "fv_model_save: no model or no path");
    r = fv_model_encode(m, &buf, &len);
    if (r < 0)
        return fv_diag_set(d, r, "%s: cannot encode the model: %s", path, fv_strerror(r));
    r = fv_file_write_atomic(path, buf, len, FV__SAVE_MODE, d);
    free(buf);
    return r;
}

int fv_model_load(const char *path, fv_model_t **ret, fv_diag_t *d)
{
    fv_file_fail_t why;
    char *buf = NULL;
    size_t len = 0;
    int r;

    if (path == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_model_load: no path");
    /* fv_file_read_all reads what fstat promised; if the file shrank meanwhile, decode
     * names the truncation. Its sentences are said in terms of a model here. */
    r = fv_file_read_all(path, FV_MODEL_MAX_BYTES, &buf, &len, &why, d);
    if (r < 0) {
        switch (why.step) {
        case FV_FILE_STEP_OPEN:
            fv_diag_set(d, r, "%s: cannot open the model: %s", path, strerror(-r));
            break;
        case FV_FILE_STEP_STAT:
            fv_diag_set(d, r, "%s: cannot stat the model: %s", path, strerror(-r));
            break;
        case FV_FILE_STEP_TYPE:
            r = fv_diag_set(d, FV_EIO, "%s: not a regular file", path);
            break;
        case FV_FILE_STEP_SIZE:
            fv_diag_set(d, r, "%s: %jd bytes, over the model file cap of %zu", path,
                        (intmax_t)why.size_bytes, FV_MODEL_MAX_BYTES);
            break;
        case FV_FILE_STEP_ALLOC:
            fv_diag_set(d, r, "%s: out of memory for %jd bytes", path, (intmax_t)why.size_bytes);
            break;
        case FV_FILE_STEP_READ:
            fv_diag_set(d, r, "%s: cannot read the model: %s", path, strerror(-r));
            break;
        }
        return r;
    }
    r = fv_model_decode(path, (const uint8_t *)buf, len, ret, d);
    free(buf);
    return r;
}

/* ---- scoring ----------------------------------------------------------------------- */

/* The scratch of fv_model_predict_ws, sized once for max_batch rows. It keeps no pointer
 * to the model it was made for: it records the shape it fits (the network's architecture
 * and the feature count), and every call checks the model against it. */
struct fv_model_ws {
    fv_mlp_arch_t arch; /* of the network it was made for */
    size_t n_features;  /* of the preprocessing it was made for (= arch.n_in when valid) */
    size_t max_batch;
    float *x;         /* owned, max_batch x n_features: the encoded rows of a chunk */
    size_t *idx;      /* owned, max_batch: the chunk's row numbers */
    fv_mlp_ws_t *mlp; /* owned, for max_batch rows */
};

int fv_model_ws_new(const fv_model_t *m, size_t max_batch, fv_model_ws_t **ret)
{
    fv_model_ws_t *ws;

    if (m == NULL || m->mlp == NULL || m->preproc == NULL || ret == NULL || max_batch == 0 ||
        max_batch > FV_MODEL_WS_MAX_BATCH)
        return FV_EINVAL;
    ws = calloc(1, sizeof *ws);
    if (ws == NULL)
        return FV_ENOMEM;
    ws->arch = *fv_mlp_arch(m->mlp);
    ws->n_features = fv_preproc_n_features(m->preproc);
    ws->max_batch = max_batch;
    /* max_batch <= 2^16 and n_features <= FV_MLP_MAX_WIDTH (2^16, checked when the model
     * was built or decoded): at most 2^32 floats, no overflow in a 64-bit size_t. */
    ws->x = malloc(max_batch * (ws->n_features ? ws->n_features : 1) * sizeof *ws->x);
    ws->idx = malloc(max_batch * sizeof *ws->idx);
    if (ws->x == NULL || ws->idx == NULL || fv_mlp_ws_new(m->mlp, max_batch, &ws->mlp) != 0) {
        fv_model_ws_free(ws);
        return FV_ENOMEM;
    }
    *ret = ws;
    return 0;
}

void fv_model_ws_free(fv_model_ws_t *ws)
{
    if (ws == NULL)
        return;
    fv_mlp_ws_free(ws->mlp);
    free(ws->idx);
    free(ws->x);
    free(ws);
}

/* The workspace was made for a model of m's shape. */
static bool ws_fits(const fv_model_t *m, const fv_model_ws_t *ws)
{
    const fv_mlp_arch_t *a = fv_mlp_arch(m->mlp), *b = &ws->arch;
    if (a->n_in != b->n_in || a->n_hidden != b->n_hidden || a->n_out != b->n_out ||
        fv_preproc_n_features(m->preproc) != ws->n_features)
        return false;
    for (size_t i = 0; i < a->n_hidden; i++)
        if (a->hidden[i] != b->hidden[i])
            return false;
    return true;
}

/* The argument checks both entry points share (the workspace aside). */
static int predict_check(const fv_model_t *m, const fv_dataset_t *ds, const size_t *rows, size_t n,
                         const float *ret_prob)
{
    if (m == NULL || ds == NULL || (ret_prob == NULL && n > 0))
        return FV_EINVAL;
    if (n == 0)
        return 0;
    if (ds->schema != m->schema && !fv_schema_equal(ds->schema, m->schema))
        return FV_ESCHEMA;
    if (rows == NULL && n > ds->n_rows)
        return FV_EINVAL;
    for (size_t i = 0; rows != NULL && i < n; i++)
        if (rows[i] >= ds->n_rows)
            return FV_EINVAL;
    return 0;
}

int fv_model_predict_ws(const fv_model_t *m, fv_model_ws_t *ws, const fv_dataset_t *ds,
                        const size_t *rows, size_t n, float *ret_prob)
{
    int r = predict_check(m, ds, rows, n, ret_prob);

    if (r != 0)
        return r;
    if (ws == NULL || !ws_fits(m, ws))
        return FV_EINVAL;

    size_t n_out = fv_mlp_arch(m->mlp)->n_out, chunk = ws->max_batch;
    for (size_t start = 0; start < n; start += chunk) {
        size_t k = n - start < chunk ? n - start : chunk;
        /* A row list is passed through as it is; rows NULL is numbered here. */
        const size_t *idx = rows != NULL ? rows + start : ws->idx;
        for (size_t i = 0; rows == NULL && i < k; i++)
            ws->idx[i] = start + i;
        r = fv_preproc_transform(m->preproc, ds, idx, k, ws->x);
        if (r < 0)
            return r;
        r = fv_mlp_predict(m->mlp, ws->mlp, ws->x, k, ret_prob + start * n_out);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The workspace is sized min(n, FV_MODEL_PREDICT_CHUNK) rows, so the chunks, and with them
 * every score bit, are what they were before fv_model_predict_ws existed. */
int fv_model_predict(const fv_model_t *m, const fv_dataset_t *ds, const size_t *rows, size_t n,
                     float *ret_prob)
{
    fv_model_ws_t *ws = NULL;
    int r = predict_check(m, ds, rows, n, ret_prob);

    if (r != 0 || n == 0)
        return r;
    r = fv_model_ws_new(m, n < FV_MODEL_PREDICT_CHUNK ? n : FV_MODEL_PREDICT_CHUNK, &ws);
    if (r == 0)
        r = fv_model_predict_ws(m, ws, ds, rows, n, ret_prob);
    fv_model_ws_free(ws);
    return r;
}

/* Whether x[0..n) are all finite (a float is not when its exponent bits are all set). Eight
 * independent ORs and no early exit, so GCC's -O2 vectorizes it (an isfinite() loop with a
 * break is not: it cost a third of a small network's scoring time at batch 1000; this
 * form checks 61,000 floats in about 6 us, against 45 us for a plain OR loop). A chunk is
 * checked whole first; rows are looked at one by one only when it holds a non-finite
 * value. */
static bool all_finite(const float *x, size_t n)
{
    uint32_t acc[8] = {0}, bad = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++) {
            uint32_t u;
            memcpy(&u, &x[i + j], sizeof u);
            acc[j] |= (~u & UINT32_C(0x7f800000)) == 0 ? 1u : 0u;
        }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        bad |= (~u & UINT32_C(0x7f800000)) == 0 ? 1u : 0u;
    }
    for (size_t j = 0; j < 8; j++)
        bad |= acc[j];
    return bad == 0;
}

/* Scores like fv_model_predict_ws, with a verdict per row. Per chunk: the rows are encoded
 * (fv_preproc_transform); a row with a non-finite feature is marked with that feature's
 * schema column and its features are set to 0, so nothing non-finite enters the network;
 * the chunk's logits come from fv_mlp_logits, are checked per row, and the sigmoid or
 * softmax is applied in place exactly as fv_mlp_predict does (the same kernels, on the
 * same buffer, in the same order), so a good row's score is fv_model_predict_ws's bit for
 * bit. Zeroing a bad row changes nothing for the others: the gemm computes output row i
 * from input row i alone (OpenBLAS blocks by shape, never by value), and
 * test_predict_rows.c checks both that and that a NaN row left in the batch (what
 * fv_model_predict_ws does) does not move another row's bits either. A bad row's
 * ret_prob entries are NaN. */
int fv_model_predict_ws_rows(const fv_model_t *m, fv_model_ws_t *ws, const fv_dataset_t *ds,
                             const size_t *rows, size_t n, float *ret_prob, long *ret_bad)
{
    int r = predict_check(m, ds, rows, n, ret_prob);

    if (r != 0)
        return r;
    if (ws == NULL || !ws_fits(m, ws) || (ret_bad == NULL && n > 0))
        return FV_EINVAL;

    size_t n_out = fv_mlp_arch(m->mlp)->n_out, n_f = ws->n_features, chunk = ws->max_batch;
    for (size_t start = 0; start < n; start += chunk) {
        size_t k = n - start < chunk ? n - start : chunk;
        const size_t *idx = rows != NULL ? rows + start : ws->idx;
        float *prob = ret_prob + start * n_out;
        long *bad = ret_bad + start;
        for (size_t i = 0; rows == NULL && i < k; i++)
            ws->idx[i] = start + i;
        r = fv_preproc_transform(m->preproc, ds, idx, k, ws->x);
        if (r < 0)
            return r;
        bool any_bad = false;
        for (size_t i = 0; i < k; i++)
            bad[i] = -1;
        bool scan = !all_finite(ws->x, k * n_f);
        for (size_t i = 0; scan && i < k; i++) {
            float *x = ws->x + i * n_f;
            for (size_t j = 0; j < n_f; j++) {
                if (isfinite(x[j]))
                    continue;
                bad[i] = fv_preproc_feature_column(m->preproc, j);
                memset(x, 0, n_f * sizeof *x); /* nothing non-finite enters the gemm */
                any_bad = true;
                break;
            }
        }
        r = fv_mlp_logits(m->mlp, ws->mlp, ws->x, k, prob);
        if (r < 0)
            return r;
        scan = !all_finite(prob, k * n_out);
        for (size_t i = 0; scan && i < k; i++)
            if (bad[i] == -1 && !all_finite(prob + i * n_out, n_out)) {
                bad[i] = FV_MODEL_BAD_OUTPUT;
                any_bad = true;
            }
        if (n_out == 1)
            fv_vec_sigmoid(k, prob, prob);
        else
            fv_vec_softmax_rows(k, n_out, prob);
        scan = !all_finite(prob, k * n_out);
        for (size_t i = 0; scan && i < k; i++)
            if (bad[i] == -1 && !all_finite(prob + i * n_out, n_out)) {
                bad[i] = FV_MODEL_BAD_OUTPUT;
                any_bad = true;
            }
        for (size_t i = 0; any_bad && i < k; i++)
            if (bad[i] != -1)
                for (size_t c = 0; c < n_out; c++)
                    prob[i * n_out + c] = NAN;
    }
    return 0;
}

/* fv_model_bad_row_str blames a column for a non-finite output only past this many
 * standard deviations from the training mean. */
#define FV__BLAME_Z 1e3

/* The numeric column of a row with the largest |(x - mean) / std|, or -1 (none numeric,
 * or every value missing). */
static long extreme_column(const fv_model_t *m, const double *x, size_t n_cols, double *ret_z)
{
    long best = -1;
    double bz = -1.0;
    for (size_t j = 0; j < n_cols; j++) {
        double z;
        if (fv_schema_column_type(m->schema, j) != FV_COL_NUMERIC || isnan(x[j]))
            continue;
        z = fabs((x[j] - fv_preproc_mean(m->preproc, j)) / fv_preproc_std(m->preproc, j));
        if (z > bz) {
            bz = z;
            best = (long)j;
        }
    }
    *ret_z = bz;
    return best;
}

long fv_model_bad_row_str(const fv_model_t *m, const fv_dataset_t *ds, size_t row, long bad,
                          char *buf, size_t len)
{
    char b1[FV__MSG_BUF];
    const double *x;
    double z;
    long col;

    if (buf == NULL || len == 0)
        return -1;
    buf[0] = '\0';
    if (m == NULL || ds == NULL || row >= ds->n_rows ||
        ds->n_cols != fv_schema_n_columns(m->schema))
        return -1;
    x = ds->cells + row * ds->n_cols;
    if (bad >= 0 && (size_t)bad < ds->n_cols &&
        fv_schema_column_type(m->schema, (size_t)bad) == FV_COL_NUMERIC) {
        double mean = fv_preproc_mean(m->preproc, (size_t)bad);
        double sd = fv_preproc_std(m->preproc, (size_t)bad);
        snprintf(buf, len,
                 "column '%s': value %.9g overflows float32 once standardized ((value - "
                 "mean) / std = %.3g); expected |value| below %.3g",
                 fv__msg_str(b1, sizeof b1, fv_schema_column_name(m->schema, (size_t)bad)), x[bad],
                 (x[bad] - mean) / sd, (double)FLT_MAX * sd + fabs(mean));
        return bad;
    }
    if (bad >= 0 && (size_t)bad < ds->n_cols) { /* only a numeric feature can overflow */
        snprintf(buf, len, "column '%s': encoded value not finite",
                 fv__msg_str(b1, sizeof b1, fv_schema_column_name(m->schema, (size_t)bad)));
        return bad;
    }
    /* A value far outside the training data is the likely cause; a row of ordinary values
     * that overflows points at the model instead, and naming a column would mislead. */
    col = extreme_column(m, x, ds->n_cols, &z);
    if (col < 0 || !(z > FV__BLAME_Z)) {
        snprintf(buf, len,
                 "score not finite (float32 overflow in the network) with every value "
                 "within %g standard deviations of the training mean: the model's weights "
                 "overflow (a damaged model?)",
                 FV__BLAME_Z);
        return -1;
    }
    snprintf(buf, len,
             "column '%s': score not finite (float32 overflow in the network); value %.9g "
             "is %.3g standard deviations from the training mean, the row's most extreme",
             fv__msg_str(b1, sizeof b1, fv_schema_column_name(m->schema, (size_t)col)), x[col], z);
    return col;
}
