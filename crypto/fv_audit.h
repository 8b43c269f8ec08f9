/* fv_audit.h - the tamper-evident audit log: signed, hash-chained JSON Lines.
 *
 * One record per line (the exact bytes are specified at the top of audit.c):
 *   {"seq":1,"ts":"2026-11-28T22:01:18.123Z","actor":"coordinator","event":"job.submitted",
 *    "details":{...},"prev":"<64 hex>","hash":"<64 hex>","sig":"<base64>"}
 * seq counts 1, 2, ...; prev is the previous record's hash (64 zeros for seq 1); hash is
 * SHA-256 of the record's canonical bytes (the line without its hash and sig members);
 * sig is Ed25519 over those same canonical bytes, so `openssl pkeyutl -verify -rawin`
 * checks one record with no fedvault code (README: "Checking an audit record with
 * openssl"). A separate head file holds the signed (seq, hash) of the last record, so a
 * removed tail is detected too.
 *
 * Writer: one process appends (an exclusive flock on the log; a second writer gets
 * UV_EBUSY). Each append writes the line and fsyncs it, then replaces the head atomically
 * (temporary file, fsync, rename, fsync of the directory). A crash between the two leaves
 * one record beyond the head, or a torn last line: fv_audit_open repairs both (it rewrites
 * the head, or cuts the torn line), and refuses anything else that disagrees with the head.
 *
 * Reader: everything read from a log or head file is hostile. Lines are capped at
 * FV_AUDIT_LINE_MAX bytes; a record must be exactly what the writer would produce (so an
 * added space is tampering too). Verification stops at the first bad record and names it.
 *
 * Threading: a fv_audit_t belongs to one thread. The verify and scan functions keep no
 * state. Timestamps come from the wall clock (CLOCK_REALTIME) unless a clock is injected
 * with fv_audit_set_clock (tests): a record's time is a fact to record, not a deadline.
 */
#ifndef FV_AUDIT_H
#define FV_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "fv_error.h"

#define FV_AUDIT_LINE_MAX (1u << 20) /* bytes of one record line, newline included */
#define FV_AUDIT_HEAD_MAX 4096       /* bytes of a head file */
#define FV_AUDIT_ACTOR_MAX 256       /* bytes of actor */
#define FV_AUDIT_EVENT_MAX 128       /* bytes of event */

typedef struct fv_audit fv_audit_t;

/* Opens the log at path for appending, creating it (mode 0640) and its head (head_path)
 * if neither exists. sk is libsodium's 64-byte Ed25519 secret key (fv_tls_load_sign_key):
 * it is copied into sodium_malloc'd memory, wiped on close; the caller keeps and wipes its
 * own. actor_default (copied; may be NULL) is used when an append passes actor NULL.
 * The last record is checked (form, hash, signature with sk's public key) and must agree
 * with the signed head: a log shorter than its head (truncated), a head missing beside a
 * non-empty log, or a head signed by another key is FV_ECORRUPT with a sentence. Two
 * crash leftovers are repaired (see above). UV_EBUSY if another writer holds the log. */
int fv_audit_open(const char *path, const char *head_path, const uint8_t sk[64],
                  const char *actor_default, fv_audit_t **ret, fv_diag_t *d);
/* Closes the file and wipes the key. NULL-safe. */
void fv_audit_close(fv_audit_t *log);

/* Injects the clock (microseconds since the Unix epoch, UTC) for later appends. */
void fv_audit_set_clock(fv_audit_t *log, int64_t (*now_us)(void *ctx), void *ctx);

/* Appends one record. actor: NULL for the default (FV_EINVAL if there is none); actor
 * and event: 1..FV_AUDIT_*_MAX bytes of valid UTF-8. details_json: a JSON object as
 * text, or NULL for {}; borrowed. A record whose line would exceed FV_AUDIT_LINE_MAX is
 * FV_ETOOBIG, nothing written. Returns only after the line and the new head are on disk.
 * On an I/O failure the log is left as a crash would leave it, and further appends fail
 * (UV_EIO): reopen to repair. */
int fv_audit_append(fv_audit_t *log, const char *actor, const char *event, const char *details_json,
                    fv_diag_t *d);
/* The same with details as a jansson object (borrowed; NULL for {}). */
int fv_audit_append_obj(fv_audit_t *log, const char *actor, const char *event,
                        const json_t *details, fv_diag_t *d);
/* seq of the last record (0 for an empty log). */
uint64_t fv_audit_last_seq(const fv_audit_t *log);

/* ---- verification --------------------------------------------------------------- */
typedef struct fv_audit_report {
    uint64_t n_records;       /* records read that verified (all of them when ok) */
    bool ok;                  /* every record verified, and the head if one was given */
    bool head_checked;        /* a head was given and checked */
    uint64_t head_seq;        /* the seq the head signs (when head_checked) */
    uint64_t bad_line;        /* 1-based line of the first bad record; 0 if none or the head */
    uint64_t bad_record;      /* its record number (= the seq it should carry); 0 if none */
    char last_hash[65];       /* hash of the last good record (64 zeros if none) */
    char reason[FV_DIAG_MAX]; /* "record 7 (line 7): bad signature", "" when ok */
} fv_audit_report_t;

/* Verifies the whole log at path against pk (the signer's 32-byte Ed25519 public key),
 * and the head at head_path if it is not NULL. Returns 0 when everything verified,
 * FV_ECORRUPT when a record or the head is bad (report->reason and d name the first bad
 * record), or another negative code when a file cannot be read (nothing verified). The
 * report is written for 0 and FV_ECORRUPT. Without a head, a removed tail goes unnoticed:
 * report->head_checked says so. */
int fv_audit_verify(const char *path, const char *head_path, const uint8_t pk[32],
                    fv_audit_report_t *report, fv_diag_t *d);
/* The same over memory (the fuzz target): log and head buffers are borrowed, need no NUL;
 * head NULL means no head. */
int fv_audit_verify_mem(const char *log, size_t log_len, const char *head, size_t head_len,
                        const uint8_t pk[32], fv_audit_report_t *report, fv_diag_t *d);

/* The Ed25519 public key of a PEM certificate (the signer's cert.pem), via OpenSSL.
 * FV_EPARSE if it is not an Ed25519 certificate. */
int fv_audit_cert_pk(const char *cert_file, uint8_t pk[32], fv_diag_t *d);

/* ---- reading -------------------------------------------------------------------- */
typedef struct fv_audit_record {
    uint64_t line; /* 1-based */
    uint64_t seq;
    const char *ts, *actor, *event;
    const json_t *details;         /* an object */
    const char *prev, *hash, *sig; /* as in the line */
    const char *text;              /* the whole line, without its newline */
    size_t text_len;
} fv_audit_record_t;

/* A filter for fv_audit_scan; NULL members match everything. since/until compare the
 * first strlen(since/until) characters of ts (so "2026-11-28" means that whole day for
 * until); job matches details.job as a string or an integer's decimal form. */
typedef struct fv_audit_filter {
    const char *since, *until, *actor, *event, *job;
} fv_audit_filter_t;
/* Streams the records of path that match f (NULL: all) to cb, in order; everything in
 * the record is borrowed for the call only. Each record is checked as verify does except
 * the signature (form, seq, prev, hash): the first bad one stops the scan with
 * FV_ECORRUPT and a sentence naming it. A non-zero return of cb stops it and is returned.
 * *ret_n_seen (may be NULL) counts the records read. */
int fv_audit_scan(const char *path, const fv_audit_filter_t *f,
                  int (*cb)(const fv_audit_record_t *rec, void *ctx), void *ctx,
                  uint64_t *ret_n_seen, fv_diag_t *d);
/* Whether s is a timestamp as the log writes them: "YYYY-MM-DDTHH:MM:SS", then optionally
 * "." and 1..9 digits, then "Z" (also the release manifests' "released"). */
bool fv_audit_ts_valid(const char *s);
/* Whether a timestamp argument is usable by the filter: a prefix of
 * YYYY-MM-DDTHH:MM:SS (at least YYYY, digits and separators where they belong). */
bool fv_audit_ts_prefix_valid(const char *s);

#endif
