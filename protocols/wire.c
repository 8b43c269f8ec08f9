/* wire.c - fedvault's wire format: frames holding one msgpack map, and chunked vectors.
 *
 * Pure: no I/O, no clock, no globals; reentrant. The API and its ownership rules are in
 * fv_wire.h; this comment is the byte-level specification.
 *
 * FRAME
 *
 *   offset  size  field
 *   0       4     body length L, unsigned big-endian, 1 <= L <= max_frame_bytes
 *                 (the receiver's limit: 4 MiB by default, 64 MiB at most)
 *   4       L     body: exactly one msgpack object, a map; nothing after it
 *
 * A length of 0 is FV_EPROTO, a length above the cap FV_ETOOBIG, both decided from the
 * 4 header bytes alone, before anything is allocated for the body.
 *
 * BODY
 *
 *   byte 0        0x80..0x8f: a msgpack fixmap of N <= 15 entries (our messages have
 *                 3..14). Any other first byte (map16, map32, an array, a scalar) is
 *                 refused before msgpack-c sees the body.
 *   then N pairs  key, value. Keys are msgpack str (short ASCII names, below). Every
 *                 message has "v" and "type"; the other keys depend on the type.
 *
 * Key order is free for the decoder; the encoder writes "v", "type", then the fields
 * in the order of the table below. Every msgpack object in the body must use its
 * shortest encoding (this is what msgpack-c's packer and every mainstream encoder
 * writes), so a body that decodes has exactly one encoding up to key order, and the
 * encoder's output is THE encoding of a message:
 *
 *   unsigned integer  0..127 positive fixint (0x00..0x7f); 128..255 uint8 (0xcc);
 *                     ..65535 uint16 (0xcd); ..2^32-1 uint32 (0xce); above uint64 (0xcf).
 *                     Signed formats (0xd0..0xd3) holding a value >= 0 are refused.
 *   negative integer  -32..-1 negative fixint (0xe0..0xff); ..-128 int8 (0xd0);
 *                     ..-32768 int16 (0xd1); ..-2^31 int32 (0xd2); below int64 (0xd3).
 *   str (text)        0..31 bytes fixstr (0xa0 | len); ..255 str8 (0xd9 len8);
 *                     ..65535 str16 (0xda len16); above str32 (0xdb len32).
 *   bin (bytes)       0..255 bin8 (0xc4 len8); ..65535 bin16 (0xc5 len16); above bin32
 *                     (0xc6 len32). Lengths are big-endian.
 *   (and, for the gate's sake, map16/map32/array16/array32/ext only when no shorter
 *   form exists; float, nil and bool are passed to msgpack-c and refused as a field's
 *   wrong type.)
 *
 * Common keys:
 *   "v"     uint, must equal FV_WIRE_VERSION (1). Checked first: another value is
 *           FV_EVERSION, whatever the rest of the body holds.
 *   "type"  uint, 1..29 (fv_msg_type_t); another value is FV_EPROTO "unknown message
 *           type N".
 *
 * Messages (type: keys in encoding order, msgpack type, range):
 *   1  hello       "sw" str 1..256 printable; "maxf" uint 4096..2^26 (64 MiB)
 *   2  error       "code" negative int -2^31..-1; "reason" str 0..256 printable
 *   3  ping        "seq" uint 0..2^64-1
 *   4  pong        "seq" uint (the ping's)
 *   5  bye         "reason" str 0..256 printable
 *   6  echo        "seq" uint; "body" bin 0..65536
 *   7  echo_reply  "seq" uint; "body" bin 0..65536
 *   8  vec_begin   "id" uint32; "dtype" uint 1 (f32) or 2 (u32); "n" uint
 *                  1..max_vec_elems; "chunk" uint32 >= 1 with chunk*4 + 64 <=
 *                  max_frame_bytes; "name" str 1..256 printable
 *   9  vec_chunk   "id" uint32; "seq" uint32; "data" bin, 4..max_frame_bytes bytes, a
 *                  multiple of 4: little-endian 4-byte elements
 *   10 vec_end     "id" uint32; "sha256" bin of exactly 32 bytes: SHA-256 of all the
 *                  elements' little-endian bytes, in order (the concatenated "data")
 *   11 vec_ack     "id" uint32; "sha256" bin of exactly 32 bytes (the digest checked)
 *   The round protocol (fv_wire.h, "ROUNDS"). "job" is always bin of exactly 32 bytes
 *   (the job's digest) and comes first; "round" is uint 0..2^64-1 (0 the stats round).
 *   12 job_offer   "job"; "spec" bin 1..FV_WIRE_SPEC_MAX (2^20) bytes, the canonical job
 *                  JSON (and the body must fit max_frame_bytes: the encoder says
 *                  FV_ETOOBIG, the framer refuses a longer frame); "crl" bin
 *                  0..FV_WIRE_CRL_MAX (2^20) bytes: the federation's CRL in DER, empty for
 *                  none (the agent verifies it: crypto/fv_trust.h)
 *   13 job_accept  "job"; "dsha" bin of exactly 32 bytes (SHA-256 of the agent's data
 *                  file: data_sha256; not "data", which is a vector chunk's payload);
 *                  "rows" uint 0..2^64-1; "model" bin of exactly 0 bytes (has_model
 *                  false) or 32 (the hash of the global model the agent holds)
 *   14 job_refuse  "job"; "reason" str 0..256 printable; "category" str 1..32 bytes of
 *                  [a-z_], optional (the one optional field: an agent before it sent none,
 *                  decoded as "unknown"; a word this build does not know also decodes as
 *                  "unknown"), always written by the encoder
 *   15 round_start "job"; "round"; "kind" uint 1 (stats), 2 (train) or 3 (distill); "index"
 *                  uint32;
 *                  "n" uint 3..65535; "t" uint32; "k" uint32; "gseed" bin of exactly 32
 *                  bytes; "pks" bin of exactly n*32 bytes; "model" bin of 0 or 32 bytes
 *                  as in job_accept; "nref" uint 0..2^64-1. Across fields: index < n,
 *                  1 <= t <= n, 1 <= k <= n-1 (checked in that order after n's range,
 *                  then the length of "pks"); "certs" bin: empty (no certified cohort),
 *                  or exactly n entries in index order, each
 *                    offset 0  2 bytes  L, unsigned big-endian, 1..FV_WIRE_CERT_MAX (4096)
 *                    offset 2  L bytes  a DER X.509 certificate (the agent's of that index)
 *                  and no byte after the n-th entry. Only the framing is checked here;
 *                  the agent verifies each certificate and that pks[i] is its key
 *   16 secagg      "job"; "round"; "data" bin 1..max_frame_bytes: one fv_secagg message,
 *                  any length (the multiple-of-4 rule is vec_chunk's alone: the rules
 *                  belong to the message type, the key only names the field)
 *   17 upload_go   "job"; "round"
 *   18 round_end   "job"; "round"; "status" int -2^31..0: 0 is positive fixint 0x00 (the
 *                  shortest encoding of 0), a negative code a negative int as above;
 *                  "reason" str 0..256 printable
 *   19 job_done    "job"; "rounds" uint 0..2^64-1; "model" bin of exactly 32 bytes (the
 *                  final model's hash: always present here)
 *   The admin exchange (fv_wire.h, "ADMIN") and the round receipt:
 *   20 admin_req   "id" uint32; "cmd" str 1..64 bytes, each in [a-z.]; "args" str
 *                  0..FV_WIRE_SPEC_MAX (2^20) bytes, JSON text (a JSON object; "" for {})
 *   21 admin_resp  "id" uint32 (the request's); "status" int -2^31..0, encoded as
 *                  round_end's; "body" str 0..FV_WIRE_ADMIN_BODY_MAX (2^21) bytes, JSON
 *                  text; "data" bin 0..FV_WIRE_ADMIN_DATA_MAX (2^20) bytes, any content
 *                  (a str here, unlike echo's bin "body": the rules belong to the type)
 *   22 receipt     "job"; "round"; "body" str 1..FV_WIRE_RECEIPT_MAX (65536) bytes, JSON
 *                  text (the signed receipt); "sig" bin of exactly 64 bytes (Ed25519
 *                  over the body bytes; the wire layer does not verify it)
 *   Model releases (fv_wire.h, "RELEASES"):
 *   23 release      "body" str 1..FV_WIRE_RELEASE_MAX (65536) bytes, JSON text (the
 *                   signed release envelope; the agent verifies it, not the wire layer)
 *   24 release_sync "n" uint 0..FV_WIRE_RELEASE_SYNC_MAX (65535): the RELEASE messages that
 *                   follow; "crl" bin 0..FV_WIRE_CRL_MAX (2^20) bytes, as job_offer's
 *   25 fetch        "sha256" bin of exactly 32 bytes (the released file's SHA-256)
 *   26 file_chunk   "sha256" bin of 32 bytes; "offset" uint; "total" uint
 *                   1..FV_WIRE_FILE_MAX (2^30); "data" bin 1..max_frame_bytes bytes, any
 *                   content; across fields offset + len(data) <= total
 *   27 fetch_fail   "sha256" bin of 32 bytes; "reason" str 0..256 printable
 *   Schema discovery (fv_wire.h, "SCHEMA"):
 *   28 schema_query "job"; "spec" bin 1..FV_WIRE_SPEC_MAX (2^20) bytes, the canonical
 *                   JSON of the spec as submitted (its schema open)
 *   29 schema_vocab "job"; "status" int -2^31..0, encoded as round_end's; "category" str
 *                   0..16 bytes of [a-z]; "body" str 0..FV_WIRE_VOCAB_MAX (2^20) bytes,
 *                   JSON text. Across fields: status 0 has an empty category; a negative
 *                   status has a category of 1..16 bytes and an empty body (a refusal
 *                   carries no vocabulary)
 *   As with job_offer, each of these must also fit the receiver's max_frame_bytes: the
 *   largest admin_resp is 3 MiB + 60 bytes, which is why an admin port runs with
 *   FV_WIRE_ADMIN_FRAME_BYTES (4 MiB); the largest receipt, 65536 + 148 bytes, passes a
 *   peer that announced less than 64 KiB + 148 (the encoder says FV_ETOOBIG).
 * "printable": every byte 0x20..0x7e or >= 0x80 (UTF-8 passes, control bytes do not).
 * "JSON text": every byte >= 0x20 (0x7f included), or tab, LF, CR: JSON's whitespace may
 * appear raw, any other control byte (NUL too) may not (JSON escapes them inside strings).
 * Neither rule checks UTF-8 or JSON syntax: that is the JSON parser's job at the receiver.
 *
 * Example, ping with seq 5 (19 bytes):
 *   00 00 00 0f  83  a1 76 01  a4 74 79 70 65 03  a3 73 65 71 05
 *   length 15    map "v" 1     "type" 3           "seq" 5
 *
 * Example, upload_go for job 00 01 .. 1f, round 300 (61 bytes):
 *   00 00 00 39  84  a1 76 01  a4 74 79 70 65 11  a3 6a 6f 62 c4 20 00 01 .. 1f
 *   length 57    map "v" 1     "type" 17          "job" bin8 of 32 bytes
 *   a5 72 6f 75 6e 64 cd 01 2c
 *   "round" uint16 300
 *
 * DECODER REFUSALS (all FV_EPROTO with a sentence naming the message and the field,
 * except where noted): body above max_frame_bytes (FV_ETOOBIG); empty body; first byte
 * not a fixmap; truncated object or trailing bytes; more than GATE_MAX_OBJECTS objects
 * or containers nested deeper than GATE_MAX_DEPTH;
 * a non-shortest encoding; a key that is not a str; "v" missing, mistyped or not 1
 * (FV_EVERSION for a wrong value); unknown type; a key unknown for the type; a key
 * twice; a key missing; a value of the wrong msgpack type; a value out of range.
 *
 * MEMORY. msgpack-c's msgpack_unpack_next builds a tree of msgpack_object (24 bytes on
 * LP64; 48 per map entry) in a zone, and allocates an array's or map's element table
 * from the count in its header before reading the elements. Unchecked, a 5-byte array32
 * header makes it ask for 24 x 2^32 bytes (measured with msgpack-c 4.0: dd 00 10 00 00,
 * five bytes, allocates 32 MB), and a body of one-byte elements costs 24-32x its size
 * (a 1 MiB array: 33 MB). So a gate walks the body first, without allocating (gate_walk): it
 * checks the first byte is a fixmap, that every object is complete and in its shortest
 * encoding, that the body is exactly one object, and counts objects, refusing the body
 * when a container header alone would pass GATE_MAX_OBJECTS (64; our largest message,
 * round_start, has 29: the map and 14 pairs) or containers nest deeper than GATE_MAX_DEPTH (8;
 * msgpack-c stops at 32 with an "out of memory" that must not reach a peer's diagnostic). msgpack-c
 * then allocates at most its first zone chunk (8 KiB). str and bin objects point into the input
 * buffer (msgpack_unpack_next does not copy them), which is why decoded messages borrow from the
 * body; decode checks that, too.
 *
 * VECTORS. fv_vec_tx/fv_vec_rx keep an OpenSSL SHA256_CTX inside the opaque sha_state
 * bytes, copied in and out with memcpy (no alignment or aliasing assumption; 112 bytes
 * per chunk is nothing next to hashing the chunk). OpenSSL's SHA-256 rather than
 * libsodium's: the digest runs over every byte of every vector on both sides, and
 * OpenSSL's uses the CPU's SHA extensions (1.6 GB/s here against libsodium's portable
 * ~0.3 GB/s, which made hashing half of a loopback transfer's time). The one-shot SHA256_*
 * functions are deprecated in OpenSSL 3 in favour of EVP, which allocates per context;
 * they remain supported, need no allocation (so a transfer cannot fail half-way on
 * memory) and compute the same function. Elements are
 * converted between native order and little-endian with explicit byte assembly when the
 * host is big-endian (a plain copy on little-endian hosts); floats are handled as their
 * 32-bit patterns, so the format assumes IEEE binary32 floats with the integer byte
 * order. A receiver stops at the first error (the transfer is then inactive: later
 * chunks get FV_EPHASE) and the caller drops the partial vector.
 */
#include "fv_wire.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <sodium.h>
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init/Update/Final: see VECTORS above */
#include <openssl/sha.h>

/* Most msgpack objects a body may hold (all levels); our largest message (round_start)
 * has 29. */
#define GATE_MAX_OBJECTS 64
/* Deepest nesting of containers inside a value; ours hold none. msgpack-c's own limit is
 * 32 levels, past which it reports "out of memory": the gate must refuse first. */
#define GATE_MAX_DEPTH 8
/* vec_begin: a chunk frame must fit chunk_elems * 4 bytes of data plus the rest. */
#define VEC_CHUNK_OVERHEAD 64
#define FV_WIRE_FRAME_MIN 4096
/* round_start: a SecAgg cohort has 3..65535 members (fv_wire.h). */
#define ROUND_N_MIN 3
#define ROUND_N_MAX 65535
#define HASH_BYTES 32 /* "job", "dsha", "gseed", "model", one "pks" entry */
/* The largest admin_resp body: fixmap, "v" 1, "type" 21, "id" uint32, "status" int32,
 * "body" str32 header, "data" bin32 header = 1 + 3 + 6 + 8 + 12 + 10 + 10 = 50 bytes
 * besides the two payloads. */
_Static_assert((uint64_t)FV_WIRE_ADMIN_BODY_MAX + FV_WIRE_ADMIN_DATA_MAX + 64 <=
                   FV_WIRE_ADMIN_FRAME_BYTES,
               "the largest admin_resp must fit an admin port's frame");
_Static_assert((uint64_t)FV_WIRE_SPEC_MAX + 64 <= FV_WIRE_ADMIN_FRAME_BYTES,
               "the largest admin_req must fit an admin port's frame");
_Static_assert(FV_WIRE_ADMIN_FRAME_BYTES <= FV_WIRE_FRAME_MAX_CEILING, "admin frame cap");
#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- keys and message layouts ------------------------------------------------------ */

enum key_id {
    K_V,
    K_TYPE,
    K_SW,
    K_MAXF,
    K_CODE,
    K_REASON,
    K_SEQ,
    K_BODY,
    K_ID,
    K_DTYPE,
    K_N,
    K_CHUNK,
    K_NAME,
    K_DATA,
    K_SHA256,
    K_JOB,
    K_SPEC,
    K_DSHA,
    K_ROWS,
    K_MODEL,
    K_ROUND,
    K_KIND,
    K_INDEX,
    K_T,
    K_K,
    K_GSEED,
    K_PKS,
    K_NREF,
    K_STATUS,
    K_ROUNDS,
    K_CMD,
    K_ARGS,
    K_SIG,
    K_CRL,
    K_CERTS,
    K_OFFSET,
    K_TOTAL,
    K_CATEGORY,
    K__COUNT
};

/* One name per key; a key shared by several types ("n", "data", "reason", "seq", "id",
 * "model", "body", "status") may have a different C field, msgpack type and range in each:
 * pack_field, extract and check_msg decide by message type. */
static const char *const key_names[K__COUNT] = {
    "v",     "type",  "sw",    "maxf", "code",   "reason", "seq",   "body",     "id",     "dtype",
    "n",     "chunk", "name",  "data", "sha256", "job",    "spec",  "dsha",     "rows",   "model",
    "round", "kind",  "index", "t",    "k",      "gseed",  "pks",   "nref",     "status", "rounds",
    "cmd",   "args",  "sig",   "crl",  "certs",  "offset", "total", "category",
};

/* The fields of each type after "v" and "type", in encoding order. */
#define LAYOUT_MAX 12 /* round_start */
typedef struct layout {
    uint8_t n;
    uint8_t k[LAYOUT_MAX];
} layout_t;

static const layout_t layouts[FV_MSG_TYPE_MAX + 1] = {
    [FV_MSG_HELLO] = {2, {K_SW, K_MAXF}},
    [FV_MSG_ERROR] = {2, {K_CODE, K_REASON}},
    [FV_MSG_PING] = {1, {K_SEQ}},
    [FV_MSG_PONG] = {1, {K_SEQ}},
    [FV_MSG_BYE] = {1, {K_REASON}},
    [FV_MSG_ECHO] = {2, {K_SEQ, K_BODY}},
    [FV_MSG_ECHO_REPLY] = {2, {K_SEQ, K_BODY}},
    [FV_MSG_VEC_BEGIN] = {5, {K_ID, K_DTYPE, K_N, K_CHUNK, K_NAME}},
    [FV_MSG_VEC_CHUNK] = {3, {K_ID, K_SEQ, K_DATA}},
    [FV_MSG_VEC_END] = {2, {K_ID, K_SHA256}},
    [FV_MSG_VEC_ACK] = {2, {K_ID, K_SHA256}},
    [FV_MSG_JOB_OFFER] = {3, {K_JOB, K_SPEC, K_CRL}},
    [FV_MSG_JOB_ACCEPT] = {4, {K_JOB, K_DSHA, K_ROWS, K_MODEL}},
    [FV_MSG_JOB_REFUSE] = {3, {K_JOB, K_REASON, K_CATEGORY}},
    [FV_MSG_ROUND_START] = {12,
                            {K_JOB, K_ROUND, K_KIND, K_INDEX, K_N, K_T, K_K, K_GSEED, K_PKS,
                             K_MODEL, K_NREF, K_CERTS}},
    [FV_MSG_SECAGG] = {3, {K_JOB, K_ROUND, K_DATA}},
    [FV_MSG_UPLOAD_GO] = {2, {K_JOB, K_ROUND}},
    [FV_MSG_ROUND_END] = {4, {K_JOB, K_ROUND, K_STATUS, K_REASON}},
    [FV_MSG_JOB_DONE] = {3, {K_JOB, K_ROUNDS, K_MODEL}},
    [FV_MSG_ADMIN_REQ] = {3, {K_ID, K_CMD, K_ARGS}},
    [FV_MSG_ADMIN_RESP] = {4, {K_ID, K_STATUS, K_BODY, K_DATA}},
    [FV_MSG_RECEIPT] = {4, {K_JOB, K_ROUND, K_BODY, K_SIG}},
    [FV_MSG_RELEASE] = {1, {K_BODY}},
    [FV_MSG_RELEASE_SYNC] = {2, {K_N, K_CRL}},
    [FV_MSG_FETCH] = {1, {K_SHA256}},
    [FV_MSG_FILE_CHUNK] = {4, {K_SHA256, K_OFFSET, K_TOTAL, K_DATA}},
    [FV_MSG_FETCH_FAIL] = {2, {K_SHA256, K_REASON}},
    [FV_MSG_SCHEMA_QUERY] = {2, {K_JOB, K_SPEC}},
    [FV_MSG_SCHEMA_VOCAB] = {4, {K_JOB, K_STATUS, K_CATEGORY, K_BODY}},
};
/* A fixmap holds 15 entries: "v", "type" and at most 13 fields. */
_Static_assert(LAYOUT_MAX + 2 <= 15, "a message must fit a msgpack fixmap");

static const char *const type_names[FV_MSG_TYPE_MAX + 1] = {
    [FV_MSG_HELLO] = "hello",
    [FV_MSG_ERROR] = "error",
    [FV_MSG_PING] = "ping",
    [FV_MSG_PONG] = "pong",
    [FV_MSG_BYE] = "bye",
    [FV_MSG_ECHO] = "echo",
    [FV_MSG_ECHO_REPLY] = "echo_reply",
    [FV_MSG_VEC_BEGIN] = "vec_begin",
    [FV_MSG_VEC_CHUNK] = "vec_chunk",
    [FV_MSG_VEC_END] = "vec_end",
    [FV_MSG_VEC_ACK] = "vec_ack",
    [FV_MSG_JOB_OFFER] = "job_offer",
    [FV_MSG_JOB_ACCEPT] = "job_accept",
    [FV_MSG_JOB_REFUSE] = "job_refuse",
    [FV_MSG_ROUND_START] = "round_start",
    [FV_MSG_SECAGG] = "secagg",
    [FV_MSG_UPLOAD_GO] = "upload_go",
    [FV_MSG_ROUND_END] = "round_end",
    [FV_MSG_JOB_DONE] = "job_done",
    [FV_MSG_ADMIN_REQ] = "admin_req",
    [FV_MSG_ADMIN_RESP] = "admin_resp",
    [FV_MSG_RECEIPT] = "receipt",
    [FV_MSG_RELEASE] = "release",
    [FV_MSG_RELEASE_SYNC] = "release_sync",
    [FV_MSG_FETCH] = "fetch",
    [FV_MSG_FILE_CHUNK] = "file_chunk",
    [FV_MSG_FETCH_FAIL] = "fetch_fail",
    [FV_MSG_SCHEMA_QUERY] = "schema_query",
    [FV_MSG_SCHEMA_VOCAB] = "schema_vocab",
};

/* The longest category word on the wire. */
#define CATEGORY_MAX 32
static const char *const category_names[] = {
    [FV_REFUSE_SCHEMA] = "schema",   [FV_REFUSE_POLICY] = "policy",
    [FV_REFUSE_VERSION] = "version", [FV_REFUSE_RESOURCES] = "resources",
    [FV_REFUSE_DATA] = "data",       [FV_REFUSE_PROTOCOL] = "protocol",
    [FV_REFUSE_UNKNOWN] = "unknown",
};

const char *fv_refuse_category_name(fv_refuse_category_t x)
{
    return (unsigned)x < sizeof category_names / sizeof category_names[0]
               ? category_names[x]
               : category_names[FV_REFUSE_UNKNOWN];
}

fv_refuse_category_t fv_refuse_category_parse(const char *word, size_t len)
{
    for (unsigned i = 0; word != NULL && i < FV_REFUSE_UNKNOWN; i++)
        if (strlen(category_names[i]) == len && memcmp(category_names[i], word, len) == 0)
            return (fv_refuse_category_t)i;
    return FV_REFUSE_UNKNOWN;
}

/* A field a message may leave out (decoded as its default): job_refuse's "category". */
static bool key_optional(fv_msg_type_t type, int key)
{
    return type == FV_MSG_JOB_REFUSE && key == K_CATEGORY;
}

const char *fv_msg_type_name(int type)
{
    if (type < 1 || type > FV_MSG_TYPE_MAX)
        return "unknown";
    return type_names[type];
}

static bool type_known(int type)
{
    return type >= 1 && type <= FV_MSG_TYPE_MAX;
}

/* ---- limits -------------------------------------------------------------------------- */

void fv_wire_limits_default(fv_wire_limits_t *lim)
{
    lim->max_frame_bytes = 4u << 20;
    lim->max_vec_elems = 1ull << 28;
}

int fv_wire_limits_check(const fv_wire_limits_t *lim, fv_diag_t *d)
{
    if (lim->max_frame_bytes < FV_WIRE_FRAME_MIN ||
        lim->max_frame_bytes > FV_WIRE_FRAME_MAX_CEILING)
        return fv_diag_set(d, FV_EINVAL,
                           "wire limits: max_frame_bytes %" PRIu32
                           " is outside %d..%u (the fixed messages need 4 KiB)",
                           lim->max_frame_bytes, FV_WIRE_FRAME_MIN, FV_WIRE_FRAME_MAX_CEILING);
    if (lim->max_vec_elems == 0 || lim->max_vec_elems > FV_WIRE_VEC_ELEMS_CEILING)
        return fv_diag_set(d, FV_EINVAL,
                           "wire limits: max_vec_elems %" PRIu64 " is outside 1..%llu",
                           lim->max_vec_elems, FV_WIRE_VEC_ELEMS_CEILING);
    return 0;
}

/* ---- fields several round messages share ------------------------------------------ */

/* The "job" digest of a round-protocol message (NULL for the other types). Written as a
 * switch rather than through the union's common initial sequence, so each access names
 * the member it means. */
static uint8_t *msg_job(fv_msg_t *m)
{
    switch (m->type) {
    case FV_MSG_JOB_OFFER:
        return m->u.job_offer.job;
    case FV_MSG_JOB_ACCEPT:
        return m->u.job_accept.job;
    case FV_MSG_JOB_REFUSE:
        return m->u.job_refuse.job;
    case FV_MSG_ROUND_START:
        return m->u.round_start.job;
    case FV_MSG_SECAGG:
        return m->u.secagg.job;
    case FV_MSG_UPLOAD_GO:
        return m->u.upload_go.job;
    case FV_MSG_ROUND_END:
        return m->u.round_end.job;
    case FV_MSG_JOB_DONE:
        return m->u.job_done.job;
    case FV_MSG_RECEIPT:
        return m->u.receipt.job;
    case FV_MSG_SCHEMA_QUERY:
        return m->u.schema_query.job;
    case FV_MSG_SCHEMA_VOCAB:
        return m->u.schema_vocab.job;
    default:
        return NULL;
    }
}

/* The "round" number (NULL for types without one). */
static uint64_t *msg_round(fv_msg_t *m)
{
    switch (m->type) {
    case FV_MSG_ROUND_START:
        return &m->u.round_start.round;
    case FV_MSG_SECAGG:
        return &m->u.secagg.round;
    case FV_MSG_UPLOAD_GO:
        return &m->u.upload_go.round;
    case FV_MSG_ROUND_END:
        return &m->u.round_end.round;
    case FV_MSG_RECEIPT:
        return &m->u.receipt.round;
    default:
        return NULL;
    }
}

/* The 32-byte "sha256" field (vec_end, vec_ack and the release messages). */
static uint8_t *msg_sha(fv_msg_t *m)
{
    switch (m->type) {
    case FV_MSG_FETCH:
        return m->u.fetch.sha256;
    case FV_MSG_FILE_CHUNK:
        return m->u.file_chunk.sha256;
    case FV_MSG_FETCH_FAIL:
        return m->u.fetch_fail.sha256;
    default:
        return m->u.vec_end.sha256;
    }
}

/* ---- range checks shared by the encoder (FV_EINVAL) and the decoder (FV_EPROTO) ------ */

static bool text_printable(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

static int check_text(const fv_wire_str_t *s, size_t min_len, const char *tname, int key, int err,
                      fv_diag_t *d)
{
    if (s->len > 0 && s->ptr == NULL)
        return fv_diag_set(d, err, "%s: field '%s': NULL with length %zu", tname, key_names[key],
                           s->len);
    if (s->len < min_len || s->len > FV_WIRE_TEXT_MAX)
        return fv_diag_set(d, err, "%s: field '%s': %zu bytes, outside %zu..%d", tname,
                           key_names[key], s->len, min_len, FV_WIRE_TEXT_MAX);
    if (!text_printable(s->ptr, s->len))
        return fv_diag_set(d, err,
                           "%s: field '%s': contains a control byte (text must be printable)",
                           tname, key_names[key]);
    return 0;
}

static int check_chunk_elems(uint64_t chunk, const fv_wire_limits_t *lim, const char *tname,
                             int err, fv_diag_t *d)
{
    if (chunk == 0 || chunk > UINT32_MAX ||
        chunk * FV_VEC_ELEM_BYTES + VEC_CHUNK_OVERHEAD > lim->max_frame_bytes)
        return fv_diag_set(d, err,
                           "%s: field 'chunk': %" PRIu64 " elements per chunk, outside 1..%" PRIu32
                           " (chunk*4 + %d must fit max_frame_bytes %" PRIu32 ")",
                           tname, chunk,
                           lim->max_frame_bytes > VEC_CHUNK_OVERHEAD
                               ? (lim->max_frame_bytes - VEC_CHUNK_OVERHEAD) / FV_VEC_ELEM_BYTES
                               : 0,
                           VEC_CHUNK_OVERHEAD, lim->max_frame_bytes);
    return 0;
}

static int check_n_elems(uint64_t n, const fv_wire_limits_t *lim, const char *tname, int err,
                         fv_diag_t *d)
{
    if (n == 0 || n > lim->max_vec_elems)
        return fv_diag_set(
            d, err, "%s: field 'n': %" PRIu64 " elements, outside 1..%" PRIu64 " (max_vec_elems)",
            tname, n, lim->max_vec_elems);
    return 0;
}

/* A byte field of min_len..max_len bytes (job spec, secagg data). */
static int check_bin(const uint8_t *p, size_t len, size_t min_len, size_t max_len,
                     const char *tname, int key, int err, fv_diag_t *d)
{
    if (len > 0 && p == NULL)
        return fv_diag_set(d, err, "%s: field '%s': NULL with length %zu", tname, key_names[key],
                           len);
    if (len < min_len || len > max_len)
        return fv_diag_set(d, err, "%s: field '%s': %zu bytes, outside %zu..%zu", tname,
                           key_names[key], len, min_len, max_len);
    return 0;
}

/* JSON text: JSON's whitespace (tab, LF, CR) may appear raw, no other control byte. */
static bool text_json(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return false;
    }
    return true;
}

static int check_json_text(const fv_wire_str_t *s, size_t min_len, size_t max_len,
                           const char *tname, int key, int err, fv_diag_t *d)
{
    if (s->len > 0 && s->ptr == NULL)
        return fv_diag_set(d, err, "%s: field '%s': NULL with length %zu", tname, key_names[key],
                           s->len);
    if (s->len < min_len || s->len > max_len)
        return fv_diag_set(d, err, "%s: field '%s': %zu bytes, outside %zu..%zu", tname,
                           key_names[key], s->len, min_len, max_len);
    if (!text_json(s->ptr, s->len))
        return fv_diag_set(d, err,
                           "%s: field '%s': contains a control byte other than tab, LF, CR "
                           "(JSON text)",
                           tname, key_names[key]);
    return 0;
}

/* admin_req "cmd": 1..64 bytes of [a-z.]. */
static int check_cmd(const fv_wire_str_t *s, const char *tname, int err, fv_diag_t *d)
{
    if (s->len > 0 && s->ptr == NULL)
        return fv_diag_set(d, err, "%s: field 'cmd': NULL with length %zu", tname, s->len);
    if (s->len < 1 || s->len > FV_WIRE_ADMIN_CMD_MAX)
        return fv_diag_set(d, err, "%s: field 'cmd': %zu bytes, outside 1..%d", tname, s->len,
                           FV_WIRE_ADMIN_CMD_MAX);
    for (size_t i = 0; i < s->len; i++) {
        char c = s->ptr[i];
        if (!((c >= 'a' && c <= 'z') || c == '.'))
            return fv_diag_set(d, err, "%s: field 'cmd': byte %zu (0x%02x) is not in [a-z.]", tname,
                               i, (unsigned)(unsigned char)c);
    }
    return 0;
}

/* schema_vocab: status, "category" (a word of [a-z]) and "body" across fields. */
static int check_schema_vocab(const fv_msg_t *m, const char *tname, int err, fv_diag_t *d)
{
    const fv_wire_str_t *cat = &m->u.schema_vocab.category;
    int r;
    if (m->u.schema_vocab.status > 0)
        return fv_diag_set(d, err,
                           "%s: field 'status': %" PRId32
                           " is positive (0, or the negative code of a refusal)",
                           tname, m->u.schema_vocab.status);
    if (cat->len > 0 && cat->ptr == NULL)
        return fv_diag_set(d, err, "%s: field 'category': NULL with length %zu", tname, cat->len);
    if (cat->len > FV_WIRE_CATEGORY_MAX)
        return fv_diag_set(d, err, "%s: field 'category': %zu bytes, above %d", tname, cat->len,
                           FV_WIRE_CATEGORY_MAX);
    for (size_t i = 0; i < cat->len; i++)
        if (cat->ptr[i] < 'a' || cat->ptr[i] > 'z')
            return fv_diag_set(d, err, "%s: field 'category': byte %zu (0x%02x) is not in [a-z]",
                               tname, i, (unsigned)(unsigned char)cat->ptr[i]);
    if ((r = check_json_text(&m->u.schema_vocab.body, 0, FV_WIRE_VOCAB_MAX, tname, K_BODY, err,
                             d)) < 0)
        return r;
    if (m->u.schema_vocab.status == 0 && cat->len != 0)
        return fv_diag_set(d, err, "%s: field 'category': not empty with status 0 (a vocabulary)",
                           tname);
    if (m->u.schema_vocab.status < 0 && cat->len == 0)
        return fv_diag_set(d, err,
                           "%s: field 'category': empty with a negative status (a refusal "
                           "names its category)",
                           tname);
    if (m->u.schema_vocab.status < 0 && m->u.schema_vocab.body.len != 0)
        return fv_diag_set(d, err,
                           "%s: field 'body': %zu bytes with a negative status (a refusal carries "
                           "no vocabulary)",
                           tname, m->u.schema_vocab.body.len);
    return 0;
}

/* round_start "certs": empty, or exactly n entries of a 2-byte big-endian length
 * 1..FV_WIRE_CERT_MAX and that many bytes, nothing after the last. The DER inside is the
 * agent's to verify (crypto/fv_trust.h); here only the framing. */
static int check_certs(const uint8_t *p, size_t len, uint32_t n, const char *tname, int err,
                       fv_diag_t *d)
{
    if (len > 0 && p == NULL)
        return fv_diag_set(d, err, "%s: field 'certs': NULL with length %zu", tname, len);
    if (len == 0)
        return 0;
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (len - off < 2)
            return fv_diag_set(d, err,
                               "%s: field 'certs': %" PRIu32 " entries, expected n = %" PRIu32
                               " (one certificate per agent)",
                               tname, i, n);
        size_t l = ((size_t)p[off] << 8) | p[off + 1];
        if (l < 1 || l > FV_WIRE_CERT_MAX)
            return fv_diag_set(d, err,
                               "%s: field 'certs': entry %" PRIu32 " is %zu bytes, outside 1..%d",
                               tname, i, l, FV_WIRE_CERT_MAX);
        if (len - off - 2 < l)
            return fv_diag_set(
                d, err, "%s: field 'certs': entry %" PRIu32 " announces %zu bytes, %zu remain",
                tname, i, l, len - off - 2);
        off += 2 + l;
    }
    if (off != len)
        return fv_diag_set(d, err,
                           "%s: field 'certs': %zu bytes after the %" PRIu32
                           " entries (n certificates, nothing more)",
                           tname, len - off, n);
    return 0;
}

int fv_wire_cert_at(const uint8_t *certs, size_t certs_len, uint32_t i, const uint8_t **ret_der,
                    size_t *ret_len)
{
    if (certs == NULL)
        return FV_EPROTO;
    size_t off = 0;
    for (uint32_t j = 0;; j++) {
        if (certs_len - off < 2)
            return FV_EPROTO;
        size_t l = ((size_t)certs[off] << 8) | certs[off + 1];
        if (l < 1 || l > FV_WIRE_CERT_MAX || certs_len - off - 2 < l)
            return FV_EPROTO;
        if (j == i) {
            *ret_der = certs + off + 2;
            *ret_len = l;
            return 0;
        }
        off += 2 + l;
    }
}

/* n's range first, then the fields bounded by n, then the key list's length, then the
 * certificates' framing. */
static int check_round_start(const fv_msg_t *m, const char *tname, int err, fv_diag_t *d)
{
    uint32_t n = m->u.round_start.n;
    /* a round kind's id (fv_round.h's table: 1 stats, 2 train, 3 distill, ...); which
     * ids exist and which round number each owns is the agent's check (fv_around_check) */
    if (m->u.round_start.kind < 1 || m->u.round_start.kind > 255)
        return fv_diag_set(d, err, "%s: field 'kind': %" PRIu32 " is not a round kind id (1..255)",
                           tname, m->u.round_start.kind);
    if (n < ROUND_N_MIN || n > ROUND_N_MAX)
        return fv_diag_set(d, err, "%s: field 'n': %" PRIu32 " agents, outside %d..%d", tname, n,
                           ROUND_N_MIN, ROUND_N_MAX);
    if (m->u.round_start.index >= n)
        return fv_diag_set(d, err, "%s: field 'index': %" PRIu32 " is not below n %" PRIu32, tname,
                           m->u.round_start.index, n);
    if (m->u.round_start.t < 1 || m->u.round_start.t > n)
        return fv_diag_set(d, err, "%s: field 't': %" PRIu32 " is outside 1..n (%" PRIu32 ")",
                           tname, m->u.round_start.t, n);
    if (m->u.round_start.k < 1 || m->u.round_start.k > n - 1)
        return fv_diag_set(d, err, "%s: field 'k': %" PRIu32 " is outside 1..n-1 (%" PRIu32 ")",
                           tname, m->u.round_start.k, n - 1);
    if (m->u.round_start.pks_len > 0 && m->u.round_start.pks == NULL)
        return fv_diag_set(d, err, "%s: field 'pks': NULL with length %zu", tname,
                           m->u.round_start.pks_len);
    if (m->u.round_start.pks_len != (size_t)n * HASH_BYTES)
        return fv_diag_set(d, err,
                           "%s: field 'pks': %zu bytes, expected n*32 = %zu (one Ed25519 key "
                           "per agent)",
                           tname, m->u.round_start.pks_len, (size_t)n * HASH_BYTES);
    return check_certs(m->u.round_start.certs, m->u.round_start.certs_len, n, tname, err, d);
}

static int check_msg(const fv_msg_t *m, const fv_wire_limits_t *lim, int err, fv_diag_t *d)
{
    const char *tn = fv_msg_type_name((int)m->type);
    int r;
    switch (m->type) {
    case FV_MSG_HELLO:
        if ((r = check_text(&m->u.hello.sw, 1, tn, K_SW, err, d)) < 0)
            return r;
        if (m->u.hello.max_frame_bytes < FV_WIRE_FRAME_MIN ||
            m->u.hello.max_frame_bytes > FV_WIRE_FRAME_MAX_CEILING)
            return fv_diag_set(d, err, "hello: field 'maxf': %" PRIu32 " is outside %d..%u",
                               m->u.hello.max_frame_bytes, FV_WIRE_FRAME_MIN,
                               FV_WIRE_FRAME_MAX_CEILING);
        return 0;
    case FV_MSG_ERROR:
        if (m->u.error.code >= 0)
            return fv_diag_set(d, err, "error: field 'code': %" PRId32 " is not negative",
                               m->u.error.code);
        return check_text(&m->u.error.reason, 0, tn, K_REASON, err, d);
    case FV_MSG_PING:
    case FV_MSG_PONG:
        return 0;
    case FV_MSG_BYE:
        return check_text(&m->u.bye.reason, 0, tn, K_REASON, err, d);
    case FV_MSG_ECHO:
    case FV_MSG_ECHO_REPLY:
        if (m->u.echo.body_len > 0 && m->u.echo.body == NULL)
            return fv_diag_set(d, err, "%s: field 'body': NULL with length %zu", tn,
                               m->u.echo.body_len);
        if (m->u.echo.body_len > FV_WIRE_ECHO_MAX)
            return fv_diag_set(d, err, "%s: field 'body': %zu bytes, above %d", tn,
                               m->u.echo.body_len, FV_WIRE_ECHO_MAX);
        return 0;
    case FV_MSG_VEC_BEGIN:
        if (m->u.vec_begin.dtype != FV_VEC_F32 && m->u.vec_begin.dtype != FV_VEC_U32)
            return fv_diag_set(d, err,
                               "vec_begin: field 'dtype': %d is not an element type (1 f32, "
                               "2 u32)",
                               (int)m->u.vec_begin.dtype);
        if ((r = check_n_elems(m->u.vec_begin.n_elems, lim, tn, err, d)) < 0)
            return r;
        if ((r = check_chunk_elems(m->u.vec_begin.chunk_elems, lim, tn, err, d)) < 0)
            return r;
        return check_text(&m->u.vec_begin.name, 1, tn, K_NAME, err, d);
    case FV_MSG_VEC_CHUNK:
        if (m->u.vec_chunk.len > 0 && m->u.vec_chunk.data == NULL)
            return fv_diag_set(d, err, "vec_chunk: field 'data': NULL with length %zu",
                               m->u.vec_chunk.len);
        if (m->u.vec_chunk.len == 0)
            return fv_diag_set(d, err,
                               "vec_chunk: field 'data': empty (a chunk holds at "
                               "least one element)");
        if (m->u.vec_chunk.len % FV_VEC_ELEM_BYTES != 0)
            return fv_diag_set(d, err, "vec_chunk: field 'data': %zu bytes is not a multiple of %d",
                               m->u.vec_chunk.len, FV_VEC_ELEM_BYTES);
        if (m->u.vec_chunk.len > lim->max_frame_bytes)
            return fv_diag_set(d, err,
                               "vec_chunk: field 'data': %zu bytes, above max_frame_bytes %" PRIu32,
                               m->u.vec_chunk.len, lim->max_frame_bytes);
        return 0;
    case FV_MSG_VEC_END:
    case FV_MSG_VEC_ACK:
        return 0;
    case FV_MSG_JOB_OFFER:
        if ((r = check_bin(m->u.job_offer.spec, m->u.job_offer.spec_len, 1, FV_WIRE_SPEC_MAX, tn,
                           K_SPEC, err, d)) < 0)
            return r;
        return check_bin(m->u.job_offer.crl, m->u.job_offer.crl_len, 0, FV_WIRE_CRL_MAX, tn, K_CRL,
                         err, d);
    case FV_MSG_JOB_ACCEPT:
    case FV_MSG_UPLOAD_GO:
    case FV_MSG_JOB_DONE:
        return 0;
    case FV_MSG_JOB_REFUSE:
        return check_text(&m->u.job_refuse.reason, 0, tn, K_REASON, err, d);
    case FV_MSG_ROUND_START:
        return check_round_start(m, tn, err, d);
    case FV_MSG_SECAGG:
        return check_bin(m->u.secagg.data, m->u.secagg.len, 1, lim->max_frame_bytes, tn, K_DATA,
                         err, d);
    case FV_MSG_ROUND_END:
        if (m->u.round_end.status > 0)
            return fv_diag_set(d, err,
                               "round_end: field 'status': %" PRId32
                               " is positive (0, or the negative code that aborted the round)",
                               m->u.round_end.status);
        return check_text(&m->u.round_end.reason, 0, tn, K_REASON, err, d);
    case FV_MSG_ADMIN_REQ:
        if ((r = check_cmd(&m->u.admin_req.cmd, tn, err, d)) < 0)
            return r;
        return check_json_text(&m->u.admin_req.args, 0, FV_WIRE_SPEC_MAX, tn, K_ARGS, err, d);
    case FV_MSG_ADMIN_RESP:
        if (m->u.admin_resp.status > 0)
            return fv_diag_set(d, err,
                               "admin_resp: field 'status': %" PRId32
                               " is positive (0, or the negative code of the failure)",
                               m->u.admin_resp.status);
        if ((r = check_json_text(&m->u.admin_resp.body, 0, FV_WIRE_ADMIN_BODY_MAX, tn, K_BODY, err,
                                 d)) < 0)
            return r;
        return check_bin(m->u.admin_resp.data, m->u.admin_resp.data_len, 0, FV_WIRE_ADMIN_DATA_MAX,
                         tn, K_DATA, err, d);
    case FV_MSG_RECEIPT:
        return check_json_text(&m->u.receipt.body, 1, FV_WIRE_RECEIPT_MAX, tn, K_BODY, err, d);
    case FV_MSG_RELEASE:
        return check_json_text(&m->u.release.body, 1, FV_WIRE_RELEASE_MAX, tn, K_BODY, err, d);
    case FV_MSG_RELEASE_SYNC:
        if (m->u.release_sync.n > FV_WIRE_RELEASE_SYNC_MAX)
            return fv_diag_set(d, err, "release_sync: field 'n': %" PRIu32 " is above %d",
                               m->u.release_sync.n, FV_WIRE_RELEASE_SYNC_MAX);
        return check_bin(m->u.release_sync.crl, m->u.release_sync.crl_len, 0, FV_WIRE_CRL_MAX, tn,
                         K_CRL, err, d);
    case FV_MSG_FETCH:
        return 0;
    case FV_MSG_FILE_CHUNK:
        if (m->u.file_chunk.total < 1 || m->u.file_chunk.total > FV_WIRE_FILE_MAX)
            return fv_diag_set(d, err,
                               "file_chunk: field 'total': %" PRIu64 " is outside 1..%" PRIu64,
                               m->u.file_chunk.total, FV_WIRE_FILE_MAX);
        if ((r = check_bin(m->u.file_chunk.data, m->u.file_chunk.len, 1, lim->max_frame_bytes, tn,
                           K_DATA, err, d)) < 0)
            return r;
        if (m->u.file_chunk.offset > m->u.file_chunk.total ||
            m->u.file_chunk.len > m->u.file_chunk.total - m->u.file_chunk.offset)
            return fv_diag_set(d, err,
                               "file_chunk: field 'offset': %" PRIu64 " + %zu bytes passes the "
                               "total %" PRIu64,
                               m->u.file_chunk.offset, m->u.file_chunk.len, m->u.file_chunk.total);
        return 0;
    case FV_MSG_FETCH_FAIL:
        return check_text(&m->u.fetch_fail.reason, 0, tn, K_REASON, err, d);
    case FV_MSG_SCHEMA_QUERY:
        return check_bin(m->u.schema_query.spec, m->u.schema_query.spec_len, 1, FV_WIRE_SPEC_MAX,
                         tn, K_SPEC, err, d);
    case FV_MSG_SCHEMA_VOCAB:
        return check_schema_vocab(m, tn, err, d);
    }
    return fv_diag_set(d, err, "unknown message type %d", (int)m->type);
}

/* ---- encoder ------------------------------------------------------------------------- */

void fv_buf_free(fv_buf_t *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

static int buf_reserve(fv_buf_t *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return FV_ENOMEM;
    size_t ncap = b->cap > 0 ? b->cap : 64;
    while (ncap - b->len < extra)
        ncap *= 2;
    uint8_t *p = realloc(b->data, ncap);
    if (p == NULL)
        return FV_ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

/* msgpack_packer callbacks: the first pass counts, the second appends into space that
 * buf_reserve made for exactly the counted bytes. */
static int count_cb(void *data, const char *buf, size_t len)
{
    (void)buf;
    *(size_t *)data += len;
    return 0;
}

static int append_cb(void *data, const char *buf, size_t len)
{
    fv_buf_t *b = data;
    if (len > b->cap - b->len)
        return -1; /* cannot happen: the space was reserved after the counting pass */
    if (len > 0)
        memcpy(b->data + b->len, buf, len);
    b->len += len;
    return 0;
}

/* The msgpack_pack_* calls must run in order: each is its own statement. */
static int pack_key(msgpack_packer *pk, int key)
{
    size_t n = strlen(key_names[key]);
    if (msgpack_pack_str(pk, n) != 0)
        return -1;
    return msgpack_pack_str_body(pk, key_names[key], n);
}

static int pack_text(msgpack_packer *pk, const fv_wire_str_t *s)
{
    if (msgpack_pack_str(pk, s->len) != 0)
        return -1;
    return msgpack_pack_str_body(pk, s->ptr, s->len);
}

static int pack_bin(msgpack_packer *pk, const void *p, size_t n)
{
    if (msgpack_pack_bin(pk, n) != 0)
        return -1;
    return msgpack_pack_bin_body(pk, p, n);
}

/* "model" as bin of 0 bytes (none) or 32 bytes. */
static int pack_opt_hash(msgpack_packer *pk, bool has, const uint8_t hash[HASH_BYTES])
{
    return pack_bin(pk, hash, has ? HASH_BYTES : 0);
}

static int pack_field(msgpack_packer *pk, const fv_msg_t *m, int key)
{
    /* the accessors do not write; they take a non-const message to serve extract too */
    fv_msg_t *mm = (fv_msg_t *)(uintptr_t)m;
    switch (key) {
    case K_SW:
        return pack_text(pk, &m->u.hello.sw);
    case K_MAXF:
        return msgpack_pack_uint32(pk, m->u.hello.max_frame_bytes);
    case K_CODE:
        return msgpack_pack_int32(pk, m->u.error.code);
    case K_REASON:
        switch (m->type) {
        case FV_MSG_ERROR:
            return pack_text(pk, &m->u.error.reason);
        case FV_MSG_JOB_REFUSE:
            return pack_text(pk, &m->u.job_refuse.reason);
        case FV_MSG_ROUND_END:
            return pack_text(pk, &m->u.round_end.reason);
        case FV_MSG_FETCH_FAIL:
            return pack_text(pk, &m->u.fetch_fail.reason);
        default:
            return pack_text(pk, &m->u.bye.reason);
        }
    case K_CATEGORY: {
        if (m->type == FV_MSG_SCHEMA_VOCAB)
            return pack_text(pk, &m->u.schema_vocab.category);
        const char *w = fv_refuse_category_name(m->u.job_refuse.category);
        size_t n = strlen(w);
        if (msgpack_pack_str(pk, n) != 0)
            return -1;
        return msgpack_pack_str_body(pk, w, n);
    }
    case K_SEQ:
        if (m->type == FV_MSG_VEC_CHUNK)
            return msgpack_pack_uint32(pk, m->u.vec_chunk.seq);
        if (m->type == FV_MSG_PING || m->type == FV_MSG_PONG)
            return msgpack_pack_uint64(pk, m->u.ping.seq);
        return msgpack_pack_uint64(pk, m->u.echo.seq);
    case K_BODY:
        if (m->type == FV_MSG_ADMIN_RESP)
            return pack_text(pk, &m->u.admin_resp.body);
        if (m->type == FV_MSG_RECEIPT)
            return pack_text(pk, &m->u.receipt.body);
        if (m->type == FV_MSG_RELEASE)
            return pack_text(pk, &m->u.release.body);
        if (m->type == FV_MSG_SCHEMA_VOCAB)
            return pack_text(pk, &m->u.schema_vocab.body);
        return pack_bin(pk, m->u.echo.body, m->u.echo.body_len);
    case K_ID:
        if (m->type == FV_MSG_ADMIN_REQ)
            return msgpack_pack_uint32(pk, m->u.admin_req.id);
        if (m->type == FV_MSG_ADMIN_RESP)
            return msgpack_pack_uint32(pk, m->u.admin_resp.id);
        if (m->type == FV_MSG_VEC_BEGIN)
            return msgpack_pack_uint32(pk, m->u.vec_begin.id);
        if (m->type == FV_MSG_VEC_CHUNK)
            return msgpack_pack_uint32(pk, m->u.vec_chunk.id);
        return msgpack_pack_uint32(pk, m->u.vec_end.id);
    case K_DTYPE:
        return msgpack_pack_uint32(pk, (uint32_t)m->u.vec_begin.dtype);
    case K_N:
        if (m->type == FV_MSG_ROUND_START)
            return msgpack_pack_uint32(pk, m->u.round_start.n);
        if (m->type == FV_MSG_RELEASE_SYNC)
            return msgpack_pack_uint32(pk, m->u.release_sync.n);
        return msgpack_pack_uint64(pk, m->u.vec_begin.n_elems);
    case K_CHUNK:
        return msgpack_pack_uint32(pk, m->u.vec_begin.chunk_elems);
    case K_NAME:
        return pack_text(pk, &m->u.vec_begin.name);
    case K_DATA:
        if (m->type == FV_MSG_SECAGG)
            return pack_bin(pk, m->u.secagg.data, m->u.secagg.len);
        if (m->type == FV_MSG_ADMIN_RESP)
            return pack_bin(pk, m->u.admin_resp.data, m->u.admin_resp.data_len);
        if (m->type == FV_MSG_FILE_CHUNK)
            return pack_bin(pk, m->u.file_chunk.data, m->u.file_chunk.len);
        return pack_bin(pk, m->u.vec_chunk.data, m->u.vec_chunk.len);
    case K_SHA256:
        return pack_bin(pk, msg_sha(mm), HASH_BYTES);
    case K_JOB: {
        const uint8_t *job = msg_job(mm);
        return job != NULL ? pack_bin(pk, job, HASH_BYTES) : -1; /* every layout with "job"
                                                                     has one */
    }
    case K_SPEC:
        if (m->type == FV_MSG_SCHEMA_QUERY)
            return pack_bin(pk, m->u.schema_query.spec, m->u.schema_query.spec_len);
        return pack_bin(pk, m->u.job_offer.spec, m->u.job_offer.spec_len);
    case K_DSHA:
        return pack_bin(pk, m->u.job_accept.data_sha256, HASH_BYTES);
    case K_ROWS:
        return msgpack_pack_uint64(pk, m->u.job_accept.rows);
    case K_MODEL:
        if (m->type == FV_MSG_JOB_ACCEPT)
            return pack_opt_hash(pk, m->u.job_accept.has_model, m->u.job_accept.model);
        if (m->type == FV_MSG_ROUND_START)
            return pack_opt_hash(pk, m->u.round_start.has_model, m->u.round_start.model);
        return pack_bin(pk, m->u.job_done.model, HASH_BYTES);
    case K_ROUND: {
        const uint64_t *round = msg_round(mm);
        return round != NULL ? msgpack_pack_uint64(pk, *round) : -1;
    }
    case K_KIND:
        return msgpack_pack_uint32(pk, m->u.round_start.kind);
    case K_INDEX:
        return msgpack_pack_uint32(pk, m->u.round_start.index);
    case K_T:
        return msgpack_pack_uint32(pk, m->u.round_start.t);
    case K_K:
        return msgpack_pack_uint32(pk, m->u.round_start.k);
    case K_GSEED:
        return pack_bin(pk, m->u.round_start.gseed, HASH_BYTES);
    case K_PKS:
        return pack_bin(pk, m->u.round_start.pks, m->u.round_start.pks_len);
    case K_NREF:
        return msgpack_pack_uint64(pk, m->u.round_start.n_ref);
    case K_STATUS:
        if (m->type == FV_MSG_ADMIN_RESP)
            return msgpack_pack_int32(pk, m->u.admin_resp.status);
        if (m->type == FV_MSG_SCHEMA_VOCAB)
            return msgpack_pack_int32(pk, m->u.schema_vocab.status);
        return msgpack_pack_int32(pk, m->u.round_end.status);
    case K_ROUNDS:
        return msgpack_pack_uint64(pk, m->u.job_done.rounds);
    case K_CMD:
        return pack_text(pk, &m->u.admin_req.cmd);
    case K_ARGS:
        return pack_text(pk, &m->u.admin_req.args);
    case K_SIG:
        return pack_bin(pk, m->u.receipt.sig, sizeof(m->u.receipt.sig));
    case K_CRL:
        if (m->type == FV_MSG_RELEASE_SYNC)
            return pack_bin(pk, m->u.release_sync.crl, m->u.release_sync.crl_len);
        return pack_bin(pk, m->u.job_offer.crl, m->u.job_offer.crl_len);
    case K_CERTS:
        return pack_bin(pk, m->u.round_start.certs, m->u.round_start.certs_len);
    case K_OFFSET:
        return msgpack_pack_uint64(pk, m->u.file_chunk.offset);
    case K_TOTAL:
        return msgpack_pack_uint64(pk, m->u.file_chunk.total);
    }
    return -1;
}

static int pack_msg(msgpack_packer *pk, const fv_msg_t *m)
{
    const layout_t *l = &layouts[m->type];
    /* JOB_REFUSE's category "unknown" is the field left out (an older agent's message),
     * so a message has one encoding */
    bool skip_cat = m->type == FV_MSG_JOB_REFUSE && m->u.job_refuse.category == FV_REFUSE_UNKNOWN;
    if (msgpack_pack_map(pk, 2u + l->n - (skip_cat ? 1u : 0u)) != 0 || pack_key(pk, K_V) != 0 ||
        msgpack_pack_uint32(pk, FV_WIRE_VERSION) != 0 || pack_key(pk, K_TYPE) != 0 ||
        msgpack_pack_uint32(pk, (uint32_t)m->type) != 0)
        return -1;
    for (unsigned i = 0; i < l->n; i++) {
        if (skip_cat && l->k[i] == K_CATEGORY)
            continue;
        if (pack_key(pk, l->k[i]) != 0 || pack_field(pk, m, l->k[i]) != 0)
            return -1;
    }
    return 0;
}

int fv_wire_encode(const fv_msg_t *m, const fv_wire_limits_t *lim, fv_buf_t *out)
{
    assert(m != NULL && lim != NULL && out != NULL);
    if (!type_known((int)m->type))
        return FV_EINVAL;
    if (check_msg(m, lim, FV_EINVAL, NULL) < 0)
        return FV_EINVAL;

    msgpack_packer pk;
    size_t body_len = 0;
    msgpack_packer_init(&pk, &body_len, count_cb);
    if (pack_msg(&pk, m) != 0)
        return FV_EINVAL;
    if (body_len > lim->max_frame_bytes)
        return FV_ETOOBIG;
    if (buf_reserve(out, FV_WIRE_HEADER_BYTES + body_len) < 0)
        return FV_ENOMEM;

    size_t start = out->len;
    uint8_t *h = out->data + out->len;
    h[0] = (uint8_t)(body_len >> 24);
    h[1] = (uint8_t)(body_len >> 16);
    h[2] = (uint8_t)(body_len >> 8);
    h[3] = (uint8_t)body_len;
    out->len += FV_WIRE_HEADER_BYTES;
    msgpack_packer_init(&pk, out, append_cb);
    if (pack_msg(&pk, m) != 0 || out->len - start != FV_WIRE_HEADER_BYTES + body_len) {
        out->len = start; /* cannot happen: both passes write the same bytes */
        return FV_EINVAL;
    }
    return 0;
}

/* ---- the gate: a bounded walk over the raw body before msgpack-c unpacks it --------- */

typedef struct gate {
    const uint8_t *p, *end;
    unsigned budget;       /* objects still allowed, GATE_MAX_OBJECTS in all */
    const char *noncanon;  /* first non-shortest encoding seen, described */
    size_t noncanon_entry; /* top-level entry it was in */
    bool noncanon_in_key;
} gate_t;

static bool gate_read(gate_t *g, unsigned n_bytes, uint64_t *ret)
{
    if ((size_t)(g->end - g->p) < n_bytes)
        return false;
    uint64_t v = 0;
    for (unsigned i = 0; i < n_bytes; i++)
        v = v << 8 | g->p[i];
    g->p += n_bytes;
    *ret = v;
    return true;
}

/* Skips one complete object (containers with their contents, iteratively: left[i] is
 * the number of objects still to read at depth i). Returns 0, or -1 with *why set.
 * Records the first non-shortest encoding in g->noncanon. */
static int gate_skip(gate_t *g, const char **why)
{
    uint64_t left[GATE_MAX_DEPTH + 1];
    uint64_t pending = 1; /* sum of left[0..top] */
    int top = 0;
    left[0] = 1;
    while (pending > 0) {
        while (left[top] == 0)
            top--;
        left[top]--;
        pending--;
        if (g->budget == 0) {
            *why = "more than " STR(GATE_MAX_OBJECTS) " msgpack objects";
            return -1;
        }
        g->budget--;
        if (g->p >= g->end) {
            *why = "truncated msgpack object";
            return -1;
        }
        uint8_t b = *g->p++;
        uint64_t v = 0, skip = 0, children = 0;
        const char *nc = NULL;
        bool ok = true;
        if (b <= 0x7f || b >= 0xe0) {
            /* positive or negative fixint */
        } else if (b <= 0x8f) {
            children = 2u * (b & 0x0fu);
        } else if (b <= 0x9f) {
            children = b & 0x0fu;
        } else if (b <= 0xbf) {
            skip = b & 0x1fu;
        } else {
            switch (b) {
            case 0xc0: /* nil */
            case 0xc2: /* false */
            case 0xc3: /* true */
                break;
            case 0xc1:
                *why = "byte 0xc1 (never used in msgpack)";
                return -1;
            case 0xc4: /* bin8: the shortest bin form for any length up to 255 */
                ok = gate_read(g, 1, &skip);
                break;
            case 0xc5:
                ok = gate_read(g, 2, &skip);
                nc = skip < 256 ? "bin16 for fewer than 256 bytes" : NULL;
                break;
            case 0xc6:
                ok = gate_read(g, 4, &skip);
                nc = skip < 65536 ? "bin32 for fewer than 65536 bytes" : NULL;
                break;
            case 0xc7:
                ok = gate_read(g, 1, &v);
                skip = v + 1;
                nc = (v == 1 || v == 2 || v == 4 || v == 8 || v == 16) ? "ext8 for a fixext size"
                                                                       : NULL;
                break;
            case 0xc8:
                ok = gate_read(g, 2, &v);
                skip = v + 1;
                nc = v < 256 ? "ext16 for fewer than 256 bytes" : NULL;
                break;
            case 0xc9:
                ok = gate_read(g, 4, &v);
                skip = v + 1;
                nc = v < 65536 ? "ext32 for fewer than 65536 bytes" : NULL;
                break;
            case 0xca: /* float32 */
                skip = 4;
                break;
            case 0xcb: /* float64 */
                skip = 8;
                break;
            case 0xcc:
                ok = gate_read(g, 1, &v);
                nc = v < 128 ? "uint8 for a value below 128" : NULL;
                break;
            case 0xcd:
                ok = gate_read(g, 2, &v);
                nc = v < 256 ? "uint16 for a value below 256" : NULL;
                break;
            case 0xce:
                ok = gate_read(g, 4, &v);
                nc = v < 65536 ? "uint32 for a value below 65536" : NULL;
                break;
            case 0xcf:
                ok = gate_read(g, 8, &v);
                nc = v <= UINT32_MAX ? "uint64 for a value below 2^32" : NULL;
                break;
            case 0xd0: /* int8: shortest only for -128..-33 */
                ok = gate_read(g, 1, &v);
                nc = (v & 0x80u) == 0 || v >= 0xe0 ? "int8 for a value with a shorter form" : NULL;
                break;
            case 0xd1: /* int16: only for -32768..-129 */
                ok = gate_read(g, 2, &v);
                nc = (v & 0x8000u) == 0 || v >= 0xff80u ? "int16 for a value with a shorter form"
                                                        : NULL;
                break;
            case 0xd2:
                ok = gate_read(g, 4, &v);
                nc = (v & 0x80000000u) == 0 || v >= 0xffff8000u
                         ? "int32 for a value with a shorter form"
                         : NULL;
                break;
            case 0xd3:
                ok = gate_read(g, 8, &v);
                nc = (v >> 63) == 0 || v >= 0xffffffff80000000u
                         ? "int64 for a value with a shorter form"
                         : NULL;
                break;
            case 0xd4:
            case 0xd5:
            case 0xd6:
            case 0xd7:
            case 0xd8: /* fixext 1, 2, 4, 8, 16: type byte + data */
                skip = 1 + (1u << (b - 0xd4));
                break;
            case 0xd9:
                ok = gate_read(g, 1, &skip);
                nc = skip < 32 ? "str8 for fewer than 32 bytes" : NULL;
                break;
            case 0xda:
                ok = gate_read(g, 2, &skip);
                nc = skip < 256 ? "str16 for fewer than 256 bytes" : NULL;
                break;
            case 0xdb:
                ok = gate_read(g, 4, &skip);
                nc = skip < 65536 ? "str32 for fewer than 65536 bytes" : NULL;
                break;
            case 0xdc:
                ok = gate_read(g, 2, &children);
                nc = children < 16 ? "array16 for fewer than 16 elements" : NULL;
                break;
            case 0xdd:
                ok = gate_read(g, 4, &children);
                nc = children < 65536 ? "array32 for fewer than 65536 elements" : NULL;
                break;
            case 0xde:
                ok = gate_read(g, 2, &v);
                children = 2 * v;
                nc = v < 16 ? "map16 for fewer than 16 entries" : NULL;
                break;
            case 0xdf:
                ok = gate_read(g, 4, &v);
                children = 2 * v;
                nc = v < 65536 ? "map32 for fewer than 65536 entries" : NULL;
                break;
            }
        }
        if (!ok || skip > (size_t)(g->end - g->p)) {
            *why = "truncated msgpack object";
            return -1;
        }
        g->p += skip;
        /* Checked on the container's header, before msgpack-c would allocate a table of
         * `children` objects for it. */
        if (children > g->budget - pending) {
            *why = "more than " STR(GATE_MAX_OBJECTS) " msgpack objects";
            return -1;
        }
        if (children > 0) {
            if (top == GATE_MAX_DEPTH) {
                *why = "containers nested deeper than " STR(GATE_MAX_DEPTH) " levels";
                return -1;
            }
            left[++top] = children;
            pending += children;
        }
        if (nc != NULL && g->noncanon == NULL)
            g->noncanon = nc;
    }
    return 0;
}

static int gate_walk(const uint8_t *body, size_t len, gate_t *g, fv_diag_t *d)
{
    memset(g, 0, sizeof(*g));
    if (len == 0)
        return fv_diag_set(d, FV_EPROTO, "wire body: empty");
    if (body[0] < 0x80 || body[0] > 0x8f)
        return fv_diag_set(d, FV_EPROTO,
                           "wire body: first byte 0x%02x is not a msgpack map of at most 15 "
                           "entries",
                           body[0]);
    size_t n = body[0] & 0x0fu;
    g->p = body + 1;
    g->end = body + len;
    g->budget = GATE_MAX_OBJECTS - 1;
    const char *why = NULL;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 2; k++) {
            bool had = g->noncanon != NULL;
            if (gate_skip(g, &why) < 0)
                return fv_diag_set(d, FV_EPROTO, "wire body: entry %zu: %s", i, why);
            if (!had && g->noncanon != NULL) {
                g->noncanon_entry = i;
                g->noncanon_in_key = k == 0;
            }
        }
    }
    if (g->p != g->end)
        return fv_diag_set(d, FV_EPROTO, "wire body: %zu trailing bytes after the map",
                           (size_t)(g->end - g->p));
    return 0;
}

/* ---- decoder ------------------------------------------------------------------------- */

/* A peer-chosen byte string made safe for a diagnostic: printable ASCII kept (except
 * quote and backslash), the rest as \xNN, at most 24 input bytes. */
static const char *esc(const char *p, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < 24 && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    if (n > 24 && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static const char *obj_type_name(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "a boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "an unsigned integer";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "a negative integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "a float";
    case MSGPACK_OBJECT_STR:
        return "a string";
    case MSGPACK_OBJECT_BIN:
        return "binary";
    case MSGPACK_OBJECT_ARRAY:
        return "an array";
    case MSGPACK_OBJECT_MAP:
        return "a map";
    case MSGPACK_OBJECT_EXT:
        return "an extension";
    }
    return "an unknown type";
}

static bool key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->via.str.size == n && memcmp(k->via.str.ptr, name, n) == 0;
}

/* The decoder's context for diagnostics. */
typedef struct dctx {
    const char *tname; /* message type name, or "wire body" before the type is known */
    const uint8_t *body;
    size_t len;
    const fv_wire_limits_t *lim;
    fv_diag_t *d;
} dctx_t;

static int get_uint(const dctx_t *c, const msgpack_object *o, int key, uint64_t max, uint64_t *ret)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return fv_diag_set(c->d, FV_EPROTO, "%s: field '%s': expected an unsigned integer, got %s",
                           c->tname, key_names[key], obj_type_name(o));
    if (o->via.u64 > max)
        return fv_diag_set(c->d, FV_EPROTO, "%s: field '%s': %" PRIu64 " is above %" PRIu64,
                           c->tname, key_names[key], o->via.u64, max);
    *ret = o->via.u64;
    return 0;
}

static int get_u32(const dctx_t *c, const msgpack_object *o, int key, uint32_t *ret)
{
    uint64_t v = 0;
    int r = get_uint(c, o, key, UINT32_MAX, &v);
    if (r == 0)
        *ret = (uint32_t)v;
    return r;
}

/* str or bin: the pointer must lie in the body (msgpack_unpack_next references the
 * input; a library that copied would leave us dangling pointers after the zone goes). */
static int get_raw(const dctx_t *c, const msgpack_object *o, int key, bool bin, const char **ret_p,
                   size_t *ret_n)
{
    msgpack_object_type want = bin ? MSGPACK_OBJECT_BIN : MSGPACK_OBJECT_STR;
    if (o->type != want)
        return fv_diag_set(c->d, FV_EPROTO, "%s: field '%s': expected %s, got %s", c->tname,
                           key_names[key], bin ? "binary" : "a string", obj_type_name(o));
    const char *p = bin ? o->via.bin.ptr : o->via.str.ptr;
    size_t n = bin ? o->via.bin.size : o->via.str.size;
    const char *b = (const char *)c->body;
    if (n > 0 && (p < b || p > b + c->len || n > (size_t)(b + c->len - p)))
        return fv_diag_set(c->d, FV_ENOTSUP,
                           "%s: field '%s': msgpack-c copied the value out of the body "
                           "(unexpected library behaviour)",
                           c->tname, key_names[key]);
    *ret_p = p;
    *ret_n = n;
    return 0;
}

static int get_text(const dctx_t *c, const msgpack_object *o, int key, fv_wire_str_t *ret)
{
    return get_raw(c, o, key, false, &ret->ptr, &ret->len);
}

static int get_bin(const dctx_t *c, const msgpack_object *o, int key, const uint8_t **ret_p,
                   size_t *ret_n)
{
    const char *p = NULL;
    int r = get_raw(c, o, key, true, &p, ret_n);
    if (r == 0)
        *ret_p = (const uint8_t *)p;
    return r;
}

/* bin of exactly 32 bytes ("job", "dsha", "gseed", job_done's "model"), or, with
 * ret_has != NULL, of 0 or 32 bytes (an optional "model"). */
static int get_hash(const dctx_t *c, const msgpack_object *o, int key, bool *ret_has,
                    uint8_t ret[HASH_BYTES])
{
    const uint8_t *p = NULL;
    size_t n = 0;
    int r = get_bin(c, o, key, &p, &n);
    if (r < 0)
        return r;
    if (ret_has != NULL && n == 0) {
        *ret_has = false;
        return 0;
    }
    if (n != HASH_BYTES)
        return fv_diag_set(c->d, FV_EPROTO, "%s: field '%s': %zu bytes, expected %s32", c->tname,
                           key_names[key], n, ret_has != NULL ? "0 (none) or " : "");
    memcpy(ret, p, HASH_BYTES);
    if (ret_has != NULL)
        *ret_has = true;
    return 0;
}

/* "status" of round_end and admin_resp: 0 arrives as positive fixint 0x00 (its shortest
 * form), a failure as a negative int of at least INT32_MIN. */
static int get_status(const dctx_t *c, const msgpack_object *o, int32_t *ret)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 != 0)
            return fv_diag_set(c->d, FV_EPROTO,
                               "%s: field 'status': %" PRIu64
                               " is positive (0, or a negative error code)",
                               c->tname, o->via.u64);
        *ret = 0;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        if (o->via.i64 < INT32_MIN)
            return fv_diag_set(c->d, FV_EPROTO, "%s: field 'status': %" PRId64 " is below %" PRId32,
                               c->tname, o->via.i64, INT32_MIN);
        *ret = (int32_t)o->via.i64;
        return 0;
    }
    return fv_diag_set(c->d, FV_EPROTO,
                       "%s: field 'status': expected 0 or a negative integer, got %s", c->tname,
                       obj_type_name(o));
}

/* The round-protocol fields that are the same in every message that has them. */
static int extract_job_round(const dctx_t *c, const msgpack_object *const *val, fv_msg_t *m)
{
    uint8_t *job = msg_job(m);
    uint64_t *round = msg_round(m);
    if (job == NULL)
        return fv_diag_set(c->d, FV_EPROTO, "%s: no job field (internal)", c->tname);
    int r = get_hash(c, val[K_JOB], K_JOB, NULL, job);
    if (r == 0 && round != NULL)
        r = get_uint(c, val[K_ROUND], K_ROUND, UINT64_MAX, round);
    return r;
}

/* Fills m's fields from val[] (every key of the type's layout is present). */
static int extract(const dctx_t *c, const msgpack_object *const *val, fv_msg_t *m)
{
    int r = 0;
    uint64_t v = 0;
    switch (m->type) {
    case FV_MSG_HELLO:
        if ((r = get_text(c, val[K_SW], K_SW, &m->u.hello.sw)) < 0)
            return r;
        return get_u32(c, val[K_MAXF], K_MAXF, &m->u.hello.max_frame_bytes);
    case FV_MSG_ERROR: {
        const msgpack_object *o = val[K_CODE];
        if (o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return fv_diag_set(c->d, FV_EPROTO,
                               "error: field 'code': expected a negative integer, got %s",
                               obj_type_name(o));
        if (o->via.i64 < INT32_MIN)
            return fv_diag_set(c->d, FV_EPROTO,
                               "error: field 'code': %" PRId64 " is below %" PRId32, o->via.i64,
                               INT32_MIN);
        m->u.error.code = (int32_t)o->via.i64;
        return get_text(c, val[K_REASON], K_REASON, &m->u.error.reason);
    }
    case FV_MSG_PING:
    case FV_MSG_PONG:
        return get_uint(c, val[K_SEQ], K_SEQ, UINT64_MAX, &m->u.ping.seq);
    case FV_MSG_BYE:
        return get_text(c, val[K_REASON], K_REASON, &m->u.bye.reason);
    case FV_MSG_ECHO:
    case FV_MSG_ECHO_REPLY:
        if ((r = get_uint(c, val[K_SEQ], K_SEQ, UINT64_MAX, &m->u.echo.seq)) < 0)
            return r;
        return get_bin(c, val[K_BODY], K_BODY, &m->u.echo.body, &m->u.echo.body_len);
    case FV_MSG_VEC_BEGIN:
        if ((r = get_u32(c, val[K_ID], K_ID, &m->u.vec_begin.id)) < 0)
            return r;
        if ((r = get_uint(c, val[K_DTYPE], K_DTYPE, UINT64_MAX, &v)) < 0)
            return r;
        if (v != FV_VEC_F32 && v != FV_VEC_U32)
            return fv_diag_set(
                c->d, FV_EPROTO,
                "vec_begin: field 'dtype': %" PRIu64 " is not an element type (1 f32, 2 u32)", v);
        m->u.vec_begin.dtype = (fv_vec_dtype_t)v;
        if ((r = get_uint(c, val[K_N], K_N, UINT64_MAX, &m->u.vec_begin.n_elems)) < 0)
            return r;
        if ((r = get_uint(c, val[K_CHUNK], K_CHUNK, UINT64_MAX, &v)) < 0)
            return r;
        /* range-checked before the narrowing, with the sentence check_msg gives */
        if ((r = check_chunk_elems(v, c->lim, c->tname, FV_EPROTO, c->d)) < 0)
            return r;
        m->u.vec_begin.chunk_elems = (uint32_t)v;
        return get_text(c, val[K_NAME], K_NAME, &m->u.vec_begin.name);
    case FV_MSG_VEC_CHUNK:
        if ((r = get_u32(c, val[K_ID], K_ID, &m->u.vec_chunk.id)) < 0)
            return r;
        if ((r = get_u32(c, val[K_SEQ], K_SEQ, &m->u.vec_chunk.seq)) < 0)
            return r;
        return get_bin(c, val[K_DATA], K_DATA, &m->u.vec_chunk.data, &m->u.vec_chunk.len);
    case FV_MSG_VEC_END:
    case FV_MSG_VEC_ACK: {
        const uint8_t *p = NULL;
        size_t n = 0;
        if ((r = get_u32(c, val[K_ID], K_ID, &m->u.vec_end.id)) < 0)
            return r;
        if ((r = get_bin(c, val[K_SHA256], K_SHA256, &p, &n)) < 0)
            return r;
        if (n != sizeof(m->u.vec_end.sha256))
            return fv_diag_set(c->d, FV_EPROTO,
                               "%s: field 'sha256': %zu bytes, a SHA-256 digest has 32", c->tname,
                               n);
        memcpy(m->u.vec_end.sha256, p, n);
        return 0;
    }
    case FV_MSG_JOB_OFFER:
        if ((r = extract_job_round(c, val, m)) < 0)
            return r;
        if ((r = get_bin(c, val[K_SPEC], K_SPEC, &m->u.job_offer.spec, &m->u.job_offer.spec_len)) <
            0)
            return r;
        return get_bin(c, val[K_CRL], K_CRL, &m->u.job_offer.crl, &m->u.job_offer.crl_len);
    case FV_MSG_JOB_ACCEPT:
        if ((r = extract_job_round(c, val, m)) < 0 ||
            (r = get_hash(c, val[K_DSHA], K_DSHA, NULL, m->u.job_accept.data_sha256)) < 0 ||
            (r = get_uint(c, val[K_ROWS], K_ROWS, UINT64_MAX, &m->u.job_accept.rows)) < 0)
            return r;
        return get_hash(c, val[K_MODEL], K_MODEL, &m->u.job_accept.has_model,
                        m->u.job_accept.model);
    case FV_MSG_JOB_REFUSE:
        if ((r = extract_job_round(c, val, m)) < 0 ||
            (r = get_text(c, val[K_REASON], K_REASON, &m->u.job_refuse.reason)) < 0)
            return r;
        m->u.job_refuse.category = FV_REFUSE_UNKNOWN; /* absent: an older agent */
        if (val[K_CATEGORY] != NULL) {
            fv_wire_str_t w;
            if ((r = get_text(c, val[K_CATEGORY], K_CATEGORY, &w)) < 0)
                return r;
            bool ok = w.len >= 1 && w.len <= CATEGORY_MAX;
            for (size_t i = 0; ok && i < w.len; i++)
                ok = (w.ptr[i] >= 'a' && w.ptr[i] <= 'z') || w.ptr[i] == '_';
            if (!ok)
                return fv_diag_set(c->d, FV_EPROTO,
                                   "%s: field 'category': %zu bytes, not a word of 1..%d "
                                   "letters a-z or '_'",
                                   c->tname, w.len, CATEGORY_MAX);
            m->u.job_refuse.category = fv_refuse_category_parse(w.ptr, w.len);
            if (m->u.job_refuse.category == FV_REFUSE_UNKNOWN)
                /* "unknown" is the field left out; another word is no category of this
                 * protocol version (one encoding per message: a word kept as "unknown"
                 * would not encode back to its bytes) */
                return fv_diag_set(c->d, FV_EPROTO,
                                   "%s: field 'category': not one of schema, policy, version, "
                                   "resources, data, protocol",
                                   c->tname);
        }
        return 0;
    case FV_MSG_ROUND_START:
        /* narrow to uint32 here; check_msg then applies the ranges and the cross-field
         * rules with the encoder's sentences */
        if ((r = extract_job_round(c, val, m)) < 0 ||
            (r = get_u32(c, val[K_KIND], K_KIND, &m->u.round_start.kind)) < 0 ||
            (r = get_u32(c, val[K_INDEX], K_INDEX, &m->u.round_start.index)) < 0 ||
            (r = get_u32(c, val[K_N], K_N, &m->u.round_start.n)) < 0 ||
            (r = get_u32(c, val[K_T], K_T, &m->u.round_start.t)) < 0 ||
            (r = get_u32(c, val[K_K], K_K, &m->u.round_start.k)) < 0 ||
            (r = get_hash(c, val[K_GSEED], K_GSEED, NULL, m->u.round_start.gseed)) < 0 ||
            (r = get_bin(c, val[K_PKS], K_PKS, &m->u.round_start.pks, &m->u.round_start.pks_len)) <
                0 ||
            (r = get_hash(c, val[K_MODEL], K_MODEL, &m->u.round_start.has_model,
                          m->u.round_start.model)) < 0)
            return r;
        if ((r = get_uint(c, val[K_NREF], K_NREF, UINT64_MAX, &m->u.round_start.n_ref)) < 0)
            return r;
        return get_bin(c, val[K_CERTS], K_CERTS, &m->u.round_start.certs,
                       &m->u.round_start.certs_len);
    case FV_MSG_SECAGG:
        if ((r = extract_job_round(c, val, m)) < 0)
            return r;
        return get_bin(c, val[K_DATA], K_DATA, &m->u.secagg.data, &m->u.secagg.len);
    case FV_MSG_UPLOAD_GO:
        return extract_job_round(c, val, m);
    case FV_MSG_ROUND_END:
        if ((r = extract_job_round(c, val, m)) < 0 ||
            (r = get_status(c, val[K_STATUS], &m->u.round_end.status)) < 0)
            return r;
        return get_text(c, val[K_REASON], K_REASON, &m->u.round_end.reason);
    case FV_MSG_JOB_DONE:
        if ((r = extract_job_round(c, val, m)) < 0 ||
            (r = get_uint(c, val[K_ROUNDS], K_ROUNDS, UINT64_MAX, &m->u.job_done.rounds)) < 0)
            return r;
        return get_hash(c, val[K_MODEL], K_MODEL, NULL, m->u.job_done.model);
    case FV_MSG_ADMIN_REQ:
        if ((r = get_u32(c, val[K_ID], K_ID, &m->u.admin_req.id)) < 0 ||
            (r = get_text(c, val[K_CMD], K_CMD, &m->u.admin_req.cmd)) < 0)
            return r;
        return get_text(c, val[K_ARGS], K_ARGS, &m->u.admin_req.args);
    case FV_MSG_ADMIN_RESP:
        if ((r = get_u32(c, val[K_ID], K_ID, &m->u.admin_resp.id)) < 0 ||
            (r = get_status(c, val[K_STATUS], &m->u.admin_resp.status)) < 0 ||
            (r = get_text(c, val[K_BODY], K_BODY, &m->u.admin_resp.body)) < 0)
            return r;
        return get_bin(c, val[K_DATA], K_DATA, &m->u.admin_resp.data, &m->u.admin_resp.data_len);
    case FV_MSG_RECEIPT: {
        const uint8_t *p = NULL;
        size_t n = 0;
        if ((r = extract_job_round(c, val, m)) < 0 ||
            (r = get_text(c, val[K_BODY], K_BODY, &m->u.receipt.body)) < 0 ||
            (r = get_bin(c, val[K_SIG], K_SIG, &p, &n)) < 0)
            return r;
        if (n != FV_WIRE_SIG_BYTES)
            return fv_diag_set(c->d, FV_EPROTO,
                               "receipt: field 'sig': %zu bytes, an Ed25519 signature has %d", n,
                               FV_WIRE_SIG_BYTES);
        memcpy(m->u.receipt.sig, p, n);
        return 0;
    }
    case FV_MSG_RELEASE:
        return get_text(c, val[K_BODY], K_BODY, &m->u.release.body);
    case FV_MSG_RELEASE_SYNC:
        if ((r = get_u32(c, val[K_N], K_N, &m->u.release_sync.n)) < 0)
            return r;
        return get_bin(c, val[K_CRL], K_CRL, &m->u.release_sync.crl, &m->u.release_sync.crl_len);
    case FV_MSG_FETCH:
        return get_hash(c, val[K_SHA256], K_SHA256, NULL, m->u.fetch.sha256);
    case FV_MSG_FILE_CHUNK:
        if ((r = get_hash(c, val[K_SHA256], K_SHA256, NULL, m->u.file_chunk.sha256)) < 0 ||
            (r = get_uint(c, val[K_OFFSET], K_OFFSET, UINT64_MAX, &m->u.file_chunk.offset)) < 0 ||
            (r = get_uint(c, val[K_TOTAL], K_TOTAL, UINT64_MAX, &m->u.file_chunk.total)) < 0)
            return r;
        return get_bin(c, val[K_DATA], K_DATA, &m->u.file_chunk.data, &m->u.file_chunk.len);
    case FV_MSG_FETCH_FAIL:
        if ((r = get_hash(c, val[K_SHA256], K_SHA256, NULL, m->u.fetch_fail.sha256)) < 0)
            return r;
        return get_text(c, val[K_REASON], K_REASON, &m->u.fetch_fail.reason);
    case FV_MSG_SCHEMA_QUERY:
        if ((r = extract_job_round(c, val, m)) < 0)
            return r;
        return get_bin(c, val[K_SPEC], K_SPEC, &m->u.schema_query.spec,
                       &m->u.schema_query.spec_len);
    case FV_MSG_SCHEMA_VOCAB:
        if ((r = extract_job_round(c, val, m)) < 0 ||
            (r = get_status(c, val[K_STATUS], &m->u.schema_vocab.status)) < 0 ||
            (r = get_text(c, val[K_CATEGORY], K_CATEGORY, &m->u.schema_vocab.category)) < 0)
            return r;
        return get_text(c, val[K_BODY], K_BODY, &m->u.schema_vocab.body);
    }
    return fv_diag_set(c->d, FV_EPROTO, "unknown message type %d", (int)m->type);
}

/* After the gate and msgpack-c: the map's entries to a message. */
static int decode_map(const msgpack_object *root, const gate_t *g, dctx_t *c, fv_msg_t *m)
{
    const msgpack_object_map *map = &root->via.map;
    const msgpack_object *vobj = NULL, *tobj = NULL;
    char eb[128];
    int r;

    /* 1. keys are strings; "v" and "type" once each, then the version */
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return fv_diag_set(c->d, FV_EPROTO, "wire body: key %" PRIu32 " is %s, not a string", i,
                               obj_type_name(k));
        const msgpack_object **slot = key_is(k, "v") ? &vobj : key_is(k, "type") ? &tobj : NULL;
        if (slot == NULL)
            continue;
        if (*slot != NULL)
            return fv_diag_set(c->d, FV_EPROTO, "wire body: duplicate field '%s'",
                               slot == &vobj ? "v" : "type");
        *slot = &map->ptr[i].val;
    }
    if (vobj == NULL)
        return fv_diag_set(c->d, FV_EPROTO, "wire body: missing field 'v'");
    if (vobj->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return fv_diag_set(c->d, FV_EPROTO,
                           "wire body: field 'v': expected an unsigned integer, got %s",
                           obj_type_name(vobj));
    if (vobj->via.u64 != FV_WIRE_VERSION)
        return fv_diag_set(c->d, FV_EVERSION,
                           "wire body: version %" PRIu64 ", this build speaks version %d only",
                           vobj->via.u64, FV_WIRE_VERSION);
    if (tobj == NULL)
        return fv_diag_set(c->d, FV_EPROTO, "wire body: missing field 'type'");
    if (tobj->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return fv_diag_set(c->d, FV_EPROTO,
                           "wire body: field 'type': expected an unsigned integer, got %s",
                           obj_type_name(tobj));
    if (tobj->via.u64 < 1 || tobj->via.u64 > FV_MSG_TYPE_MAX)
        return fv_diag_set(c->d, FV_EPROTO, "unknown message type %" PRIu64, tobj->via.u64);
    m->type = (fv_msg_type_t)tobj->via.u64;
    c->tname = fv_msg_type_name((int)m->type);

    /* 2. the shortest-encoding rule, now that the message has a name */
    if (g->noncanon != NULL) {
        const msgpack_object *k = &map->ptr[g->noncanon_entry].key;
        return fv_diag_set(c->d, FV_EPROTO, "%s: %s '%s': %s (the shortest encoding is required)",
                           c->tname, g->noncanon_in_key ? "key" : "field",
                           esc(k->via.str.ptr, k->via.str.size, eb, sizeof(eb)), g->noncanon);
    }

    /* 3. every key known for this type, none twice, none missing */
    const layout_t *l = &layouts[m->type];
    const msgpack_object *val[K__COUNT] = {0};
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        int key = -1;
        for (unsigned j = 0; j < l->n && key < 0; j++)
            if (key_is(k, key_names[l->k[j]]))
                key = l->k[j];
        if (key < 0) {
            if (key_is(k, "v") || key_is(k, "type"))
                continue;
            return fv_diag_set(c->d, FV_EPROTO, "%s: unknown field '%s'", c->tname,
                               esc(k->via.str.ptr, k->via.str.size, eb, sizeof(eb)));
        }
        if (val[key] != NULL)
            return fv_diag_set(c->d, FV_EPROTO, "%s: duplicate field '%s'", c->tname,
                               key_names[key]);
        val[key] = &map->ptr[i].val;
    }
    for (unsigned j = 0; j < l->n; j++)
        if (val[l->k[j]] == NULL && !key_optional(m->type, l->k[j]))
            return fv_diag_set(c->d, FV_EPROTO, "%s: missing field '%s'", c->tname,
                               key_names[l->k[j]]);

    /* 4. msgpack types and ranges */
    if ((r = extract(c, val, m)) < 0)
        return r;
    return check_msg(m, c->lim, FV_EPROTO, c->d);
}

int fv_wire_frame_len(const uint8_t hdr[FV_WIRE_HEADER_BYTES], const fv_wire_limits_t *lim,
                      uint32_t *ret_len, fv_diag_t *d)
{
    uint32_t len =
        (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | (uint32_t)hdr[3];
    if (len == 0)
        return fv_diag_set(d, FV_EPROTO, "wire frame: body length 0 (a body is one map)");
    if (len > lim->max_frame_bytes)
        return fv_diag_set(d, FV_ETOOBIG,
                           "wire frame: body of %" PRIu32 " bytes, above max_frame_bytes %" PRIu32,
                           len, lim->max_frame_bytes);
    *ret_len = len;
    return 0;
}

int fv_wire_decode(const uint8_t *body, size_t len, const fv_wire_limits_t *lim, fv_msg_t *ret,
                   fv_diag_t *d)
{
    assert(lim != NULL && ret != NULL);
    if (len > lim->max_frame_bytes)
        return fv_diag_set(d, FV_ETOOBIG, "wire body: %zu bytes, above max_frame_bytes %" PRIu32,
                           len, lim->max_frame_bytes);
    if (len > 0 && body == NULL)
        return fv_diag_set(d, FV_EINVAL, "wire body: NULL with length %zu", len);

    gate_t g;
    int r = gate_walk(body, len, &g, d);
    if (r < 0)
        return r;

    msgpack_unpacked up;
    size_t off = 0;
    msgpack_unpacked_init(&up);
    msgpack_unpack_return ur = msgpack_unpack_next(&up, (const char *)body, len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
        r = fv_diag_set(d, FV_ENOMEM, "wire body: out of memory in msgpack-c");
        goto out;
    }
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len || up.data.type != MSGPACK_OBJECT_MAP) {
        /* the gate accepted it: msgpack-c and the gate disagree */
        r = fv_diag_set(d, FV_EPROTO, "wire body: msgpack-c refused it (result %d at byte %zu)",
                        (int)ur, off);
        goto out;
    }

    fv_msg_t m;
    memset(&m, 0, sizeof(m));
    dctx_t c = {"wire body", body, len, lim, d};
    r = decode_map(&up.data, &g, &c, &m);
    if (r == 0)
        *ret = m;
out:
    msgpack_unpacked_destroy(&up);
    return r;
}

/* ---- framer -------------------------------------------------------------------------- */

void fv_framer_init(fv_framer_t *f, const fv_wire_limits_t *lim)
{
    memset(f, 0, sizeof(*f));
    f->lim = *lim;
}

void fv_framer_close(fv_framer_t *f)
{
    if (f == NULL)
        return;
    free(f->body);
    memset(f, 0, sizeof(*f));
}

/* States: hdr_have < 4 (reading the header; body NULL); hdr_have == 4 with body set
 * (reading or, once body_have == body_len, just delivered the body); hdr_have == 4 with
 * body NULL: a bad header or no memory, the framer is dead. */
int fv_framer_feed(fv_framer_t *f, const uint8_t *in, size_t n, size_t *ret_used,
                   const uint8_t **ret_body, size_t *ret_len, fv_diag_t *d)
{
    size_t used = 0;
    int r = 0;

    if (f->hdr_have == FV_WIRE_HEADER_BYTES && f->body == NULL) {
        *ret_used = 0;
        return fv_diag_set(d, FV_EINVAL, "wire framer: used again after an error");
    }
    if (f->body != NULL && f->body_have == f->body_len) {
        /* the frame delivered by the previous call: its buffer lived until now */
        free(f->body);
        f->body = NULL;
        f->body_len = f->body_have = 0;
        f->hdr_have = 0;
    }
    if (f->hdr_have < FV_WIRE_HEADER_BYTES) {
        size_t take = FV_WIRE_HEADER_BYTES - f->hdr_have;
        if (take > n)
            take = n;
        if (take > 0)
            memcpy(f->hdr + f->hdr_have, in, take);
        f->hdr_have += take;
        used += take;
        if (f->hdr_have < FV_WIRE_HEADER_BYTES)
            goto out;
        uint32_t len = 0;
        if ((r = fv_wire_frame_len(f->hdr, &f->lim, &len, d)) < 0)
            goto out;
        f->body = malloc(len); /* len <= max_frame_bytes: checked just above */
        if (f->body == NULL) {
            r = fv_diag_set(d, FV_ENOMEM, "wire framer: no memory for a %" PRIu32 "-byte frame",
                            len);
            goto out;
        }
        f->body_len = len;
        f->body_have = 0;
    }
    size_t take = f->body_len - f->body_have;
    if (take > n - used)
        take = n - used;
    if (take > 0)
        memcpy(f->body + f->body_have, in + used, take);
    f->body_have += (uint32_t)take;
    used += take;
    if (f->body_have == f->body_len) {
        *ret_body = f->body;
        *ret_len = f->body_len;
        r = 1;
    }
out:
    *ret_used = used;
    return r;
}

/* ---- chunked vectors ----------------------------------------------------------------- */

_Static_assert(sizeof(SHA256_CTX) <= sizeof(((fv_vec_tx_t *)0)->sha_state),
               "fv_vec_tx_t.sha_state too small for SHA256_CTX");
_Static_assert(sizeof(SHA256_CTX) <= sizeof(((fv_vec_rx_t *)0)->sha_state),
               "fv_vec_rx_t.sha_state too small for SHA256_CTX");

static void sha_init(uint8_t *st)
{
    SHA256_CTX s;
    SHA256_Init(&s);
    memcpy(st, &s, sizeof(s));
}

static void sha_update(uint8_t *st, const uint8_t *p, size_t n)
{
    SHA256_CTX s;
    memcpy(&s, st, sizeof(s));
    SHA256_Update(&s, p, n);
    memcpy(st, &s, sizeof(s));
}

static void sha_final(uint8_t *st, uint8_t out[32])
{
    SHA256_CTX s;
    memcpy(&s, st, sizeof(s));
    SHA256_Final(out, &s);
    memset(st, 0, sizeof(s));
}

static bool host_is_le(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* n native 4-byte elements at src to little-endian bytes at dst. */
static void elems_to_le(uint8_t *dst, const uint8_t *src, size_t n)
{
    if (host_is_le()) {
        memcpy(dst, src, n * FV_VEC_ELEM_BYTES);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, src + 4 * i, 4);
        dst[4 * i] = (uint8_t)v;
        dst[4 * i + 1] = (uint8_t)(v >> 8);
        dst[4 * i + 2] = (uint8_t)(v >> 16);
        dst[4 * i + 3] = (uint8_t)(v >> 24);
    }
}

/* n little-endian 4-byte elements at src to native order at dst. */
static void elems_from_le(uint8_t *dst, const uint8_t *src, size_t n)
{
    if (host_is_le()) {
        memcpy(dst, src, n * FV_VEC_ELEM_BYTES);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = src + 4 * i;
        uint32_t v =
            (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
        memcpy(dst + 4 * i, &v, 4);
    }
}

int fv_vec_tx_init(fv_vec_tx_t *tx, uint32_t id, fv_vec_dtype_t dtype, const void *vec,
                   uint64_t n_elems, uint32_t chunk_elems, const char *name)
{
    if (dtype != FV_VEC_F32 && dtype != FV_VEC_U32)
        return FV_EINVAL;
    if (vec == NULL || n_elems == 0 || n_elems > FV_WIRE_VEC_ELEMS_CEILING ||
        n_elems > SIZE_MAX / FV_VEC_ELEM_BYTES)
        return FV_EINVAL;
    if (chunk_elems == 0 ||
        (uint64_t)chunk_elems * FV_VEC_ELEM_BYTES + VEC_CHUNK_OVERHEAD > FV_WIRE_FRAME_MAX_CEILING)
        return FV_EINVAL;
    if (name == NULL)
        return FV_EINVAL;
    size_t name_len = strlen(name);
    if (name_len < 1 || name_len > FV_WIRE_TEXT_MAX || !text_printable(name, name_len))
        return FV_EINVAL;

    memset(tx, 0, sizeof(*tx));
    if (!host_is_le()) {
        uint64_t k = chunk_elems < n_elems ? chunk_elems : n_elems;
        tx->scratch = malloc((size_t)k * FV_VEC_ELEM_BYTES);
        if (tx->scratch == NULL)
            return FV_ENOMEM;
    }
    tx->id = id;
    tx->dtype = dtype;
    tx->vec = vec;
    tx->n_elems = n_elems;
    tx->chunk_elems = chunk_elems;
    tx->name.ptr = name;
    tx->name.len = name_len;
    sha_init(tx->sha_state);
    return 0;
}

int fv_vec_tx_next(fv_vec_tx_t *tx, fv_msg_t *ret)
{
    if (tx->stage < 0 || tx->stage > 2)
        return 0; /* done: *ret untouched */
    memset(ret, 0, sizeof(*ret));
    switch (tx->stage) {
    case 0:
        ret->type = FV_MSG_VEC_BEGIN;
        ret->u.vec_begin.id = tx->id;
        ret->u.vec_begin.dtype = tx->dtype;
        ret->u.vec_begin.n_elems = tx->n_elems;
        ret->u.vec_begin.chunk_elems = tx->chunk_elems;
        ret->u.vec_begin.name = tx->name;
        tx->stage = 1;
        return 1;
    case 1: {
        uint64_t left = tx->n_elems - tx->next_elem;
        size_t k = (size_t)(left < tx->chunk_elems ? left : tx->chunk_elems);
        const uint8_t *src = (const uint8_t *)tx->vec + (size_t)tx->next_elem * FV_VEC_ELEM_BYTES;
        const uint8_t *data = src;
        if (tx->scratch != NULL) {
            elems_to_le(tx->scratch, src, k);
            data = tx->scratch;
        }
        sha_update(tx->sha_state, data, k * FV_VEC_ELEM_BYTES);
        ret->type = FV_MSG_VEC_CHUNK;
        ret->u.vec_chunk.id = tx->id;
        ret->u.vec_chunk.seq = tx->next_seq++;
        ret->u.vec_chunk.data = data;
        ret->u.vec_chunk.len = k * FV_VEC_ELEM_BYTES;
        tx->next_elem += k;
        if (tx->next_elem == tx->n_elems)
            tx->stage = 2;
        return 1;
    }
    case 2:
        ret->type = FV_MSG_VEC_END;
        ret->u.vec_end.id = tx->id;
        sha_final(tx->sha_state, ret->u.vec_end.sha256);
        tx->stage = 3;
        return 1;
    default:
        return 0;
    }
}

void fv_vec_tx_close(fv_vec_tx_t *tx)
{
    if (tx == NULL)
        return;
    free(tx->scratch);
    memset(tx, 0, sizeof(*tx));
}

int fv_vec_rx_begin(fv_vec_rx_t *rx, const fv_msg_t *begin, const fv_wire_limits_t *lim,
                    fv_diag_t *d)
{
    int r;
    rx->active = false;
    if (begin->type != FV_MSG_VEC_BEGIN)
        return fv_diag_set(d, FV_EINVAL, "vector receiver: begin with a %s message",
                           fv_msg_type_name((int)begin->type));
    const char *tn = "vec_begin";
    if (begin->u.vec_begin.dtype != FV_VEC_F32 && begin->u.vec_begin.dtype != FV_VEC_U32)
        return fv_diag_set(d, FV_EPROTO, "vec_begin: field 'dtype': %d is not an element type",
                           (int)begin->u.vec_begin.dtype);
    if ((r = check_n_elems(begin->u.vec_begin.n_elems, lim, tn, FV_EPROTO, d)) < 0)
        return r;
    if (begin->u.vec_begin.n_elems > SIZE_MAX / FV_VEC_ELEM_BYTES)
        return fv_diag_set(d, FV_ETOOBIG, "vec_begin: %" PRIu64 " elements do not fit memory",
                           begin->u.vec_begin.n_elems);
    if ((r = check_chunk_elems(begin->u.vec_begin.chunk_elems, lim, tn, FV_EPROTO, d)) < 0)
        return r;
    memset(rx, 0, sizeof(*rx));
    rx->id = begin->u.vec_begin.id;
    rx->dtype = begin->u.vec_begin.dtype;
    rx->n_elems = begin->u.vec_begin.n_elems;
    rx->chunk_elems = begin->u.vec_begin.chunk_elems;
    sha_init(rx->sha_state);
    rx->active = true;
    return 0;
}

int fv_vec_rx_chunk(fv_vec_rx_t *rx, const fv_msg_t *chunk, void *dst, fv_diag_t *d)
{
    if (chunk->type != FV_MSG_VEC_CHUNK)
        return fv_diag_set(d, FV_EINVAL, "vector receiver: chunk with a %s message",
                           fv_msg_type_name((int)chunk->type));
    if (!rx->active)
        return fv_diag_set(d, FV_EPHASE, "vec_chunk: no vector transfer in progress");
    rx->active = false; /* until this chunk is accepted */
    if (chunk->u.vec_chunk.id != rx->id)
        return fv_diag_set(d, FV_EPROTO, "vec_chunk: vector id %" PRIu32 ", expected %" PRIu32,
                           chunk->u.vec_chunk.id, rx->id);
    if (rx->have_elems == rx->n_elems)
        return fv_diag_set(d, FV_EPROTO,
                           "vec_chunk: vector %" PRIu32 ": chunk %" PRIu32 " after all %" PRIu64
                           " elements",
                           rx->id, chunk->u.vec_chunk.seq, rx->n_elems);
    if (chunk->u.vec_chunk.seq != rx->next_seq)
        return fv_diag_set(d, FV_EPROTO,
                           "vec_chunk: vector %" PRIu32 ": chunk %" PRIu32 ", expected %" PRIu32,
                           rx->id, chunk->u.vec_chunk.seq, rx->next_seq);
    uint64_t left = rx->n_elems - rx->have_elems;
    uint64_t k = left < rx->chunk_elems ? left : rx->chunk_elems;
    if (chunk->u.vec_chunk.len != k * FV_VEC_ELEM_BYTES ||
        (chunk->u.vec_chunk.len > 0 && chunk->u.vec_chunk.data == NULL))
        return fv_diag_set(d, FV_EPROTO,
                           "vec_chunk: vector %" PRIu32 ": chunk %" PRIu32 " holds %zu bytes, "
                           "expected %" PRIu64,
                           rx->id, chunk->u.vec_chunk.seq, chunk->u.vec_chunk.len,
                           k * FV_VEC_ELEM_BYTES);
    sha_update(rx->sha_state, chunk->u.vec_chunk.data, chunk->u.vec_chunk.len);
    elems_from_le((uint8_t *)dst + (size_t)rx->have_elems * FV_VEC_ELEM_BYTES,
                  chunk->u.vec_chunk.data, (size_t)k);
    rx->have_elems += k;
    rx->next_seq++;
    rx->active = true;
    return 0;
}

int fv_vec_rx_end(fv_vec_rx_t *rx, const fv_msg_t *end, fv_diag_t *d)
{
    if (end->type != FV_MSG_VEC_END)
        return fv_diag_set(d, FV_EINVAL, "vector receiver: end with a %s message",
                           fv_msg_type_name((int)end->type));
    if (!rx->active)
        return fv_diag_set(d, FV_EPHASE, "vec_end: no vector transfer in progress");
    rx->active = false; /* the transfer ends here, whatever the outcome */
    if (end->u.vec_end.id != rx->id)
        return fv_diag_set(d, FV_EPROTO, "vec_end: vector id %" PRIu32 ", expected %" PRIu32,
                           end->u.vec_end.id, rx->id);
    if (rx->have_elems != rx->n_elems)
        return fv_diag_set(d, FV_EPROTO,
                           "vec_end: vector %" PRIu32 ": %" PRIu64 " of %" PRIu64
                           " elements received",
                           rx->id, rx->have_elems, rx->n_elems);
    uint8_t digest[32];
    sha_final(rx->sha_state, digest);
    if (sodium_memcmp(digest, end->u.vec_end.sha256, sizeof(digest)) != 0)
        return fv_diag_set(d, FV_EAUTH,
                           "vec_end: vector %" PRIu32 ": SHA-256 of the %" PRIu64
                           " elements received does not match the sender's",
                           rx->id, rx->n_elems);
    return 0;
}
