/* fv_wire.h - fedvault's wire format: frames, messages, chunked vectors. Pure: no I/O.
 *
 * A frame is a 4-byte big-endian body length followed by the body: exactly one msgpack
 * map {"v": 1, "type": <uint>, ...fields}. The byte-level specification of every
 * message is the top comment of wire.c. Decoding is strict: a frame longer than the
 * configured cap, a body that is not exactly one map, an unknown version or type, a
 * missing, duplicated, unknown or mistyped field, a value out of range, or a msgpack
 * object not in its shortest encoding (what every mainstream encoder writes) is an error
 * (FV_ETOOBIG, FV_EVERSION or FV_EPROTO) with a sentence in the fv_diag_t naming the
 * field. Every size a peer controls is checked against fv_wire_limits_t before anything
 * is allocated for it.
 *
 * Large vectors (a model, a masked update) never travel in one frame: VEC_BEGIN announces
 * id, element type, length and chunk size; VEC_CHUNK frames carry consecutive pieces;
 * VEC_END carries the SHA-256 of the little-endian element bytes. fv_vec_tx produces the
 * chunk messages one at a time (so a sender queues only what its socket can take) and
 * fv_vec_rx checks order, sizes and the digest while copying into the caller's buffer.
 *
 * Decoded messages borrow: string and binary fields point into the frame body passed to
 * fv_wire_decode and stay valid only as long as it does. Strings are not NUL-terminated.
 */
#ifndef FV_WIRE_H
#define FV_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"

#define FV_WIRE_VERSION 1
#define FV_WIRE_HEADER_BYTES 4
/* Hard ceilings a configuration cannot exceed. */
#define FV_WIRE_FRAME_MAX_CEILING (64u << 20)  /* 64 MiB */
#define FV_WIRE_VEC_ELEMS_CEILING (1ull << 32) /* 16 GiB of 4-byte elements */
#define FV_WIRE_TEXT_MAX 256                   /* sw, reason, vector name (bytes) */
#define FV_WIRE_ECHO_MAX 65536                 /* echo body (bytes) */
/* The admin exchange (see "ADMIN" below). */
#define FV_WIRE_ADMIN_CMD_MAX 64          /* admin_req cmd (bytes) */
#define FV_WIRE_ADMIN_BODY_MAX (2u << 20) /* admin_resp body: 2 MiB of JSON text */
#define FV_WIRE_ADMIN_DATA_MAX (1u << 20) /* admin_resp data: 1 MiB of raw bytes */
/* The max_frame_bytes an admin port uses: the largest admin_resp (2 MiB of body, 1 MiB
 * of data and 60 bytes of keys and headers) and the largest admin_req fit it. */
#define FV_WIRE_ADMIN_FRAME_BYTES (4u << 20)
/* The receipt (see "ROUNDS"). */
#define FV_WIRE_RECEIPT_MAX 65536 /* receipt body: JSON text (bytes) */
#define FV_WIRE_SIG_BYTES 64      /* an Ed25519 signature */
/* Certified cohorts (see "ROUNDS"). */
#define FV_WIRE_CRL_MAX (1u << 20) /* job_offer crl: the federation CRL in DER (bytes) */
#define FV_WIRE_CERT_MAX 4096      /* one round_start certs entry: a DER certificate */
/* Releases (see "RELEASES"). */
#define FV_WIRE_RELEASE_MAX 65536 /* release body: the envelope (= FV_RELEASE_MAX_BYTES) */
#define FV_WIRE_FILE_MAX ((uint64_t)1 << 30) /* file_chunk total (= FV_RELEASE_MODEL_MAX) */
#define FV_WIRE_RELEASE_SYNC_MAX 65535       /* release_sync n */

typedef struct fv_wire_limits {
    uint32_t max_frame_bytes; /* body bytes; default 4 MiB, at most the ceiling */
    uint64_t max_vec_elems;   /* elements of one vector; default 2^28 (1 GiB of floats) */
} fv_wire_limits_t;
void fv_wire_limits_default(fv_wire_limits_t *lim);
/* FV_EINVAL (with a sentence) if a limit is 0 or above its ceiling, or if
 * max_frame_bytes < 4096 (too small for the fixed messages). */
int fv_wire_limits_check(const fv_wire_limits_t *lim, fv_diag_t *d);

/* Why an agent refused a job (JOB_REFUSE "category"; the operator sees it per agent):
 *   SCHEMA     its data does not fit the job's schema, or the schema is still open
 *   POLICY     its own policy says no (accept_jobs, require_secure_aggregation, the CRL)
 *   VERSION    it cannot read the spec (a key or value from a newer coordinator)
 *   RESOURCES  a size or memory limit (the model is too big, too many rows)
 *   DATA       its data file cannot be read
 *   PROTOCOL   the offer itself is wrong (its id is not the spec's digest)
 *   UNKNOWN    not said (an older agent) or a word this build does not know
 * On the wire the lower-case word of fv_refuse_category_name. */
typedef enum fv_refuse_category {
    FV_REFUSE_SCHEMA,
    FV_REFUSE_POLICY,
    FV_REFUSE_VERSION,
    FV_REFUSE_RESOURCES,
    FV_REFUSE_DATA,
    FV_REFUSE_PROTOCOL,
    FV_REFUSE_UNKNOWN,
} fv_refuse_category_t;
/* "schema", "policy", "version", "resources", "data", "protocol", "unknown" (any other
 * value: "unknown"). */
const char *fv_refuse_category_name(fv_refuse_category_t x);
/* The category of a word; FV_REFUSE_UNKNOWN for any other (len bytes, not terminated). */
fv_refuse_category_t fv_refuse_category_parse(const char *word, size_t len);

typedef enum fv_msg_type {
    FV_MSG_HELLO = 1, /* first message each way after the TLS handshake */
    FV_MSG_ERROR = 2, /* the sender is about to close: why */
    FV_MSG_PING = 3,  /* heartbeat */
    FV_MSG_PONG = 4,  /* heartbeat answer, same seq */
    FV_MSG_BYE = 5,   /* orderly close */
    FV_MSG_ECHO = 6,  /* diagnostics: the receiver answers ECHO_REPLY with the body */
    FV_MSG_ECHO_REPLY = 7,
    FV_MSG_VEC_BEGIN = 8,
    FV_MSG_VEC_CHUNK = 9,
    FV_MSG_VEC_END = 10,
    FV_MSG_VEC_ACK = 11, /* receiver -> sender: vector id received whole, digest checked */
    /* The round protocol (see "ROUNDS" below). */
    FV_MSG_JOB_OFFER = 12,
    FV_MSG_JOB_ACCEPT = 13,
    FV_MSG_JOB_REFUSE = 14,
    FV_MSG_ROUND_START = 15,
    FV_MSG_SECAGG = 16,
    FV_MSG_UPLOAD_GO = 17,
    FV_MSG_ROUND_END = 18,
    FV_MSG_JOB_DONE = 19,
    /* The admin exchange (see "ADMIN" below). */
    FV_MSG_ADMIN_REQ = 20,
    FV_MSG_ADMIN_RESP = 21,
    FV_MSG_RECEIPT = 22, /* coordinator -> agent after ROUND_END (see "ROUNDS") */
    /* Model releases (see "RELEASES" below). */
    FV_MSG_RELEASE = 23,      /* coordinator -> agent: a signed release envelope */
    FV_MSG_RELEASE_SYNC = 24, /* coordinator -> agent: the current releases were sent */
    FV_MSG_FETCH = 25,        /* agent -> coordinator: send me this released file */
    FV_MSG_FILE_CHUNK = 26,   /* coordinator -> agent: a piece of that file */
    FV_MSG_FETCH_FAIL = 27,   /* coordinator -> agent: that file cannot be sent: why */
    /* Federated schema discovery (see "SCHEMA" below). */
    FV_MSG_SCHEMA_QUERY = 28, /* coordinator -> agent: your vocabulary for this open job */
    FV_MSG_SCHEMA_VOCAB = 29, /* agent -> coordinator: the vocabulary, or a refusal */
} fv_msg_type_t;
#define FV_MSG_TYPE_MAX 29
#define FV_WIRE_SPEC_MAX (1u << 20)  /* job spec JSON bytes */
#define FV_WIRE_VOCAB_MAX (1u << 20) /* schema_vocab body: the vocabulary JSON (bytes) */
#define FV_WIRE_CATEGORY_MAX 16      /* schema_vocab category: one word of [a-z] */

/* ROUNDS. One job at a time per connection; "job" is the job's digest (fv_job_digest).
 *   coordinator -> agent  JOB_OFFER {job, spec, crl}: the canonical job JSON; the
 *                         federation's CRL in DER (0..FV_WIRE_CRL_MAX bytes, empty: none),
 *                         which the agent verifies against its CA and keeps if newer.
 *   agent -> coordinator  JOB_ACCEPT {job, dsha (SHA-256 of its data file), rows,
 *                         model (hash of the global model it holds, or empty)}
 *                         or JOB_REFUSE {job, reason, category}: reason a sentence that
 *                         names fields or columns but never the bank's data values (the
 *                         agent's own log keeps the full one); category one word of
 *                         fv_refuse_category_t below (absent from an older agent: UNKNOWN).
 *   Per round r (round 0 = the stats round, 1..rounds = training rounds, then, for a job
 *   with a "distill" section, rounds+1..rounds+distill.rounds = distill rounds, kind 3;
 *   then, for a job with "explain", fv_job_last_round = the explain round, kind 4, whose
 *   model is the final training model: the teacher when distilling, else sent as VEC
 *   "model" with id r, fv_round_explain.h):
 *   coordinator -> agent  [VEC "model", id r, f32: the global parameters, only if the
 *                         agent does not hold them: its hash is the vector's SHA-256]
 *                         [distill rounds: VEC "teacher", id 0, f32: the teacher's
                         parameters, once per session; VEC "student", id r, f32: the
                         student's global parameters, as "model" above; ROUND_START's
                         model hash is then the student's]
                         ROUND_START {job, round, kind (1 stats, 2 train, 3 distill), index (this
 *                         agent's SecAgg id), n, t, k, gseed, pks (n x 32 bytes: the
 *                         cohort's Ed25519 keys in index order), model (hash, train
 *                         rounds), nref (total training rows, train rounds), certs (the
 *                         cohort's certificates in index order, each a 2-byte big-endian
 *                         length and DER; empty for a job without SecAgg)}
 *                         The agent verifies every certificate itself (federation CA,
 *                         its CRL, role agent, key equal to pks[i], no duplicates, not
 *                         the coordinator) and refuses the whole job with JOB_REFUSE if
 *                         one fails: the coordinator cannot invent members.
 *   With SecAgg: SECAGG {job, round, data} both ways carry the fv_secagg messages except
 *   MASKED; an agent whose masked input is ready waits for UPLOAD_GO {job, round} and
 *   then sends VEC "masked", id r, u32: the MASKED message's bytes as little-endian
 *   words (its length is a multiple of 4). The coordinator grants a few uploads at a
 *   time, so its memory does not grow with the cohort.
 *   Without SecAgg: after UPLOAD_GO the agent sends VEC "update", id r, u32: its plain
 *   fv_fed vector (over TLS); the coordinator adds it into one accumulator.
 *   coordinator -> agent  ROUND_END {job, round, status (0, or the negative code that
 *                         aborted the round), reason}; after the stats round the
 *                         coordinator also sends VEC "stats", id 0, u32: the summed stats
 *                         vector, from which every agent builds the global preprocessing.
 *   coordinator -> agent  RECEIPT {job, round, body (the signed receipt: JSON text,
 *                         1..FV_WIRE_RECEIPT_MAX bytes), sig (64 bytes: the Ed25519
 *                         signature by the coordinator's key over exactly the body
 *                         bytes)}, after ROUND_END. The agent verifies sig with the key
 *                         of the coordinator's certificate (the one its TLS session
 *                         authenticated), refuses the receipt if it does not verify, and
 *                         keeps body and sig in its audit log.
 *   coordinator -> agent  JOB_DONE {job, rounds, model (hash of the final model)}.
 */
/* RELEASES. Signed model releases (protocols/fv_release.h) on the agent connection:
 *   coordinator -> agent  RELEASE_SYNC {n (how many RELEASE messages follow,
 *                         0..FV_WIRE_RELEASE_SYNC_MAX), crl (the federation's CRL in DER,
 *                         0..FV_WIRE_CRL_MAX bytes, empty: none; as in JOB_OFFER, so an
 *                         agent that takes no job can check certificates)} after the
 *                         agent's HELLO, then n RELEASE {body (the release envelope: JSON
 *                         text, 1..FV_WIRE_RELEASE_MAX bytes)}: the latest release of each
 *                         label, so an agent that only syncs knows when it has seen every
 *                         current release; later, each new release as it is made.
 *                         The agent verifies the envelope itself and applies its own rule
 *                         (its receipts or its operator's pins: agent/agent_release.c).
 *   agent -> coordinator  FETCH {sha256 (32 bytes: a released model file's SHA-256)}
 *   coordinator -> agent  FILE_CHUNK {sha256, offset, total (1..FV_WIRE_FILE_MAX: the
 *                         file's length), data (1..max_frame_bytes bytes)} in order from
 *                         offset 0, with offset + len(data) <= total, until offset +
 *                         len(data) == total; or FETCH_FAIL {sha256, reason} when the
 *                         coordinator will not send it (not released, unreadable). The
 *                         agent checks the bytes against the manifest's size and hash.
 */
/* SCHEMA. Before a job whose schema leaves categories (or column types) open is offered
 * (model/fv_schema.h, "open schemas"), the coordinator asks every agent for its local
 * vocabulary:
 *   coordinator -> agent  SCHEMA_QUERY {job (the digest of the spec as submitted), spec
 *                         (its canonical JSON, 1..FV_WIRE_SPEC_MAX bytes)}
 *   agent -> coordinator  SCHEMA_VOCAB {job (the query's), status (0: a vocabulary
 *                         follows; else the negative code of a refusal), category (empty
 *                         when status is 0, else one word of [a-z], 1..16 bytes: "policy",
 *                         "schema", "data", ...: fv_refuse_category_name), body (status
 *                         0: the vocabulary JSON of fv_schema_vocab, 0..FV_WIRE_VOCAB_MAX
 *                         bytes; a refusal: empty)}
 * The vocabulary is a disclosure the agent's policy must allow (schema_discovery); the
 * agent records it in its audit log. The coordinator then fixes the schema, and the
 * JOB_OFFER that follows carries the resolved spec under its own digest.
 */
/* ADMIN. The coordinator's admin port: same frames, same mutual TLS (the client presents
 * an admin certificate from the federation's CA; the port accepts the admin role only),
 * same HELLO/PING/BYE/ERROR, with max_frame_bytes = FV_WIRE_ADMIN_FRAME_BYTES on both
 * sides. The admin CLI opens a connection, sends requests and reads one response per
 * request:
 *   admin -> coordinator  ADMIN_REQ {id (chosen by the client, echoed back), cmd
 *                         ("status", "job.submit", ...: 1..64 bytes of [a-z.]), args
 *                         (a JSON object as text, 0..FV_WIRE_SPEC_MAX bytes; "" means
 *                         {})}
 *   coordinator -> admin  ADMIN_RESP {id (the request's), status (0, or the negative
 *                         FV_E* / UV_E* code of the failure), body (JSON text,
 *                         0..FV_WIRE_ADMIN_BODY_MAX bytes; on failure {"error":
 *                         "sentence"}), data (raw bytes, 0..FV_WIRE_ADMIN_DATA_MAX: a
 *                         chunk of a model file for "model.read", empty otherwise)}
 * The wire layer checks sizes and the cmd alphabet; what the JSON says is the
 * coordinator's and the CLI's business (they parse it as hostile input).
 */
/* "hello", "error", ...; "unknown" for anything else. Never NULL. */
const char *fv_msg_type_name(int type);

typedef enum fv_vec_dtype { FV_VEC_F32 = 1, FV_VEC_U32 = 2 } fv_vec_dtype_t;
#define FV_VEC_ELEM_BYTES 4

/* A borrowed byte string (not NUL-terminated). */
typedef struct fv_wire_str {
    const char *ptr;
    size_t len;
} fv_wire_str_t;

typedef struct fv_msg {
    fv_msg_type_t type;
    union {
        struct {
            fv_wire_str_t sw;         /* "fedvault 0.4.0 (abc1234)", 1..256 bytes */
            uint32_t max_frame_bytes; /* the largest frame the sender accepts,
                                         4096..FV_WIRE_FRAME_MAX_CEILING */
        } hello;
        struct {
            int32_t code;         /* an FV_E* / UV_E* code, negative */
            fv_wire_str_t reason; /* 0..256 bytes */
        } error;
        struct {
            uint64_t seq;
        } ping; /* also PONG */
        struct {
            fv_wire_str_t reason; /* 0..256 bytes */
        } bye;
        struct {
            uint64_t seq;
            const uint8_t *body; /* 0..FV_WIRE_ECHO_MAX bytes */
            size_t body_len;
        } echo; /* also ECHO_REPLY */
        struct {
            uint32_t id;
            fv_vec_dtype_t dtype;
            uint64_t n_elems;     /* 1..max_vec_elems */
            uint32_t chunk_elems; /* 1..; chunk_elems*4 + 64 <= max_frame_bytes */
            fv_wire_str_t name;   /* 1..256 bytes */
        } vec_begin;
        struct {
            uint32_t id;
            uint32_t seq;        /* 0, 1, 2, ... */
            const uint8_t *data; /* elements, little-endian; len a multiple of 4,
                                    at least 4 */
            size_t len;
        } vec_chunk;
        struct {
            uint32_t id;
            uint8_t sha256[32];
        } vec_end; /* also VEC_ACK */
        struct {
            uint8_t job[32];
            const uint8_t *spec; /* 1..FV_WIRE_SPEC_MAX bytes (and the frame cap) */
            size_t spec_len;
            const uint8_t *crl; /* 0..FV_WIRE_CRL_MAX bytes: DER; empty = none */
            size_t crl_len;
        } job_offer;
        struct {
            uint8_t job[32];
            uint8_t data_sha256[32]; /* key "dsha" on the wire (wire.c) */
            uint64_t rows;
            bool has_model; /* "model" bin of 0 or 32 bytes */
            uint8_t model[32];
        } job_accept;
        struct {
            uint8_t job[32];
            fv_wire_str_t reason;          /* 0..256 */
            fv_refuse_category_t category; /* "category" on the wire (optional) */
        } job_refuse;
        struct {
            uint8_t job[32];
            uint64_t round;
            uint32_t kind;  /* 1..255: a round kind's id (fv_round.h: 1 stats, 2 train,
                               3 distill); the agent checks it against its table */
            uint32_t index; /* < n */
            uint32_t n;     /* 3..65535 */
            uint32_t t;     /* 1..n */
            uint32_t k;     /* 1..n-1 */
            uint8_t gseed[32];
            const uint8_t *pks; /* exactly n * 32 bytes */
            size_t pks_len;
            bool has_model; /* "model" bin of 0 or 32 bytes */
            uint8_t model[32];
            uint64_t n_ref; /* "nref" */
            /* empty, or exactly n entries {2-byte big-endian length 1..FV_WIRE_CERT_MAX,
               DER}: read them with fv_wire_cert_at */
            const uint8_t *certs;
            size_t certs_len;
        } round_start;
        struct {
            uint8_t job[32];
            uint64_t round;
            const uint8_t *data; /* 1..max_frame_bytes */
            size_t len;
        } secagg;
        struct {
            uint8_t job[32];
            uint64_t round;
        } upload_go;
        struct {
            uint8_t job[32];
            uint64_t round;
            int32_t status;       /* 0 or negative, INT32_MIN..0 */
            fv_wire_str_t reason; /* 0..256 */
        } round_end;
        struct {
            uint8_t job[32];
            uint64_t rounds;
            uint8_t model[32]; /* always present: bin of exactly 32 bytes */
        } job_done;
        struct {
            uint32_t id;
            fv_wire_str_t cmd;  /* 1..FV_WIRE_ADMIN_CMD_MAX bytes of [a-z.] */
            fv_wire_str_t args; /* JSON text, 0..FV_WIRE_SPEC_MAX ("" = {}) */
        } admin_req;
        struct {
            uint32_t id;
            int32_t status;      /* 0 or negative, INT32_MIN..0 */
            fv_wire_str_t body;  /* JSON text, 0..FV_WIRE_ADMIN_BODY_MAX */
            const uint8_t *data; /* 0..FV_WIRE_ADMIN_DATA_MAX bytes */
            size_t data_len;
        } admin_resp;
        struct {
            uint8_t job[32];
            uint64_t round;
            fv_wire_str_t body; /* JSON text, 1..FV_WIRE_RECEIPT_MAX */
            uint8_t sig[FV_WIRE_SIG_BYTES];
        } receipt;
        struct {
            fv_wire_str_t body; /* JSON text, 1..FV_WIRE_RELEASE_MAX: the envelope */
        } release;
        struct {
            uint32_t n;         /* 0..FV_WIRE_RELEASE_SYNC_MAX */
            const uint8_t *crl; /* 0..FV_WIRE_CRL_MAX bytes: DER; empty = none */
            size_t crl_len;
        } release_sync;
        struct {
            uint8_t sha256[32];
        } fetch;
        struct {
            uint8_t sha256[32];
            uint64_t offset;     /* offset + len <= total */
            uint64_t total;      /* 1..FV_WIRE_FILE_MAX */
            const uint8_t *data; /* 1..max_frame_bytes bytes */
            size_t len;
        } file_chunk;
        struct {
            uint8_t sha256[32];
            fv_wire_str_t reason; /* 0..256 printable */
        } fetch_fail;
        struct {
            uint8_t job[32];
            const uint8_t *spec; /* 1..FV_WIRE_SPEC_MAX bytes */
            size_t spec_len;
        } schema_query;
        struct {
            uint8_t job[32];
            int32_t status;         /* 0 or negative, INT32_MIN..0 */
            fv_wire_str_t category; /* status 0: empty; else 1..16 bytes of [a-z] */
            fv_wire_str_t body;     /* status 0: JSON text 0..FV_WIRE_VOCAB_MAX; else empty */
        } schema_vocab;
    } u;
} fv_msg_t;

/* Text fields (sw, reason, name) must be printable: bytes 0x20..0x7e or >= 0x80 (UTF-8
 * is passed through, control bytes are refused) so they are safe to log. JSON text
 * fields (admin args and body, receipt body, release body) may also hold tab, LF and CR (JSON's
 * whitespace) and 0x7f; any other byte below 0x20 (NUL included) is refused. Neither
 * kind is checked for UTF-8 validity or JSON syntax here: the JSON parser does that. */

/* Entry i of a round_start "certs" field (borrowed from certs): 0, or FV_EPROTO when i
 * is past the end or the framing is broken (a decoded message's certs never is). */
int fv_wire_cert_at(const uint8_t *certs, size_t certs_len, uint32_t i, const uint8_t **ret_der,
                    size_t *ret_len);

/* ---- growable output buffer ------------------------------------------------------- */
typedef struct fv_buf {
    uint8_t *data; /* caller frees with fv_buf_free */
    size_t len;
    size_t cap;
} fv_buf_t;
void fv_buf_free(fv_buf_t *b);

/* Appends one whole frame (header + body) for m to out. FV_EINVAL if a field is out of
 * range (the encoder checks what the decoder checks); FV_ETOOBIG if the body would pass
 * lim->max_frame_bytes (nothing appended then). */
int fv_wire_encode(const fv_msg_t *m, const fv_wire_limits_t *lim, fv_buf_t *out);

/* The body length from a 4-byte header: FV_EPROTO for 0, FV_ETOOBIG above the cap. */
int fv_wire_frame_len(const uint8_t hdr[FV_WIRE_HEADER_BYTES], const fv_wire_limits_t *lim,
                      uint32_t *ret_len, fv_diag_t *d);
/* Decodes one frame body (without its header). ret borrows from body. */
int fv_wire_decode(const uint8_t *body, size_t len, const fv_wire_limits_t *lim, fv_msg_t *ret,
                   fv_diag_t *d);

/* ---- frame reassembly from a byte stream ------------------------------------------ */
/* Feed arbitrary slices of the stream; each complete frame body comes out whole. The
 * body buffer is allocated only after the header passed the cap, and holds one frame. */
typedef struct fv_framer {
    fv_wire_limits_t lim;
    uint8_t hdr[FV_WIRE_HEADER_BYTES];
    size_t hdr_have;
    uint8_t *body;
    uint32_t body_len;
    uint32_t body_have;
} fv_framer_t;
void fv_framer_init(fv_framer_t *f, const fv_wire_limits_t *lim);
void fv_framer_close(fv_framer_t *f);
/* Consumes bytes from in[0..n). Sets *ret_used to how many were consumed; when a frame
 * is complete returns 1 and sets *ret_body / *ret_len (valid until the next call); 0 when
 * all of in was consumed without completing a frame; negative on a bad header (the
 * framer is then unusable). Call again with in + *ret_used until it returns 0. */
int fv_framer_feed(fv_framer_t *f, const uint8_t *in, size_t n, size_t *ret_used,
                   const uint8_t **ret_body, size_t *ret_len, fv_diag_t *d);

/* ---- chunked vectors -------------------------------------------------------------- */
/* Sender: borrows vec (n_elems 4-byte elements, native floats/uint32 written
 * little-endian on the wire) until done. */
typedef struct fv_vec_tx {
    uint32_t id;
    fv_vec_dtype_t dtype;
    const void *vec;
    uint64_t n_elems;
    uint32_t chunk_elems;
    uint64_t next_elem;
    uint32_t next_seq;
    int stage;              /* 0 begin, 1 chunks, 2 end, 3 done */
    uint8_t sha_state[128]; /* OpenSSL SHA256_CTX, opaque here */
    uint8_t *scratch;       /* little-endian copy of one chunk on big-endian hosts */
    fv_wire_str_t name;
} fv_vec_tx_t;
/* name is copied by reference (must outlive the sender). FV_EINVAL for bad sizes. */
int fv_vec_tx_init(fv_vec_tx_t *tx, uint32_t id, fv_vec_dtype_t dtype, const void *vec,
                   uint64_t n_elems, uint32_t chunk_elems, const char *name);
/* Next message to send (BEGIN, CHUNK..., END); returns 1 with *ret filled (borrowing
 * from the vector), 0 when everything was produced (*ret untouched then). */
int fv_vec_tx_next(fv_vec_tx_t *tx, fv_msg_t *ret);
void fv_vec_tx_close(fv_vec_tx_t *tx);

/* Receiver. */
typedef struct fv_vec_rx {
    uint32_t id;
    fv_vec_dtype_t dtype;
    uint64_t n_elems;
    uint32_t chunk_elems;
    uint64_t have_elems;
    uint32_t next_seq;
    bool active;
    uint8_t sha_state[128];
} fv_vec_rx_t;
/* Checks a VEC_BEGIN against the limits (n_elems, chunk size) and starts. The caller
 * then provides a destination of n_elems * 4 bytes to every _chunk call. */
int fv_vec_rx_begin(fv_vec_rx_t *rx, const fv_msg_t *begin, const fv_wire_limits_t *lim,
                    fv_diag_t *d);
/* A VEC_CHUNK: right id, next seq, exactly chunk_elems elements (the last one: the
 * remainder). Copies into dst (converted to native order). */
int fv_vec_rx_chunk(fv_vec_rx_t *rx, const fv_msg_t *chunk, void *dst, fv_diag_t *d);
/* A VEC_END: right id, every element received, digest equal (FV_EAUTH otherwise).
 * Any error of _begin, _chunk or _end ends the transfer (later chunks: FV_EPHASE); the
 * caller drops what it received. */
int fv_vec_rx_end(fv_vec_rx_t *rx, const fv_msg_t *end, fv_diag_t *d);

#endif
