/* audit.c - the signed, hash-chained audit log (fv_audit.h).
 *
 * Purpose: a log a compliance reviewer can check with standard tools, in which any
 * modification, deletion, insertion, reordering or truncation is detected and the first
 * bad record named.
 *
 * ---- The record line, byte by byte -------------------------------------------------
 * A log file is a sequence of lines, each terminated by one LF (0x0a), no blank lines,
 * no CR. Line k (1-based) holds record seq = k. A line is pure ASCII, at most
 * FV_AUDIT_LINE_MAX bytes with its LF, and is exactly:
 *
 *   C[0 .. len(C)-2]  ,"hash":"H"  ,"sig":"S"  }  LF
 *
 * where C, the record's CANONICAL BYTES, is the JSON object
 *
 *   {"seq":N,"ts":"T","actor":"A","event":"E","details":D,"prev":"P"}
 *
 * serialized by jansson with JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII:
 * members in exactly this order, no whitespace anywhere (separators are bare "," and
 * ":"), strings escaped as jansson does (\" \\ \b \f \n \r \t, other control characters
 * and every non-ASCII character as \uXXXX with upper-case hex digits, surrogate pairs
 * above U+FFFF, "/" not
 * escaped), integers in decimal, reals as "%.17g" (with ".0" added if it would read as
 * an integer), D's members in the order the writer was given them.
 *   N  the sequence number, decimal, 1 for the first record
 *   T  UTC time "YYYY-MM-DDTHH:MM:SS.mmmZ" (the reader accepts 0..9 fraction digits)
 *   A  the actor (1..256 bytes), E the event (1..128 bytes)
 *   D  a JSON object (the details; {} if none)
 *   P  the previous record's H, or 64 "0" for seq 1
 * and
 *   H  = lowercase hex of SHA-256(C)                        (64 characters)
 *   S  = standard base64 (RFC 4648 section 4, with "=" padding, 88 characters) of the
 *        64-byte Ed25519 signature of C itself (pure Ed25519, RFC 8032, no prehash)
 * So C is the line up to its last `,"hash":` followed by "}": a reviewer rebuilds it
 * with sed and checks S with `openssl pkeyutl -verify -rawin` (README). Because P is
 * inside C, H chains every record to all those before it, and S covers P.
 *
 * A reader decodes each line with jansson (duplicate members refused), checks the eight
 * members and their types, re-encodes them as above, and requires the result to equal
 * the line byte for byte: whitespace, member order, escaping, upper-case hex or
 * non-canonical base64 are all tampering. Then, in this order: seq = k, P = the previous
 * record's H, H = SHA-256(C), S verifies. The first failure is reported.
 *
 * ---- The head file -----------------------------------------------------------------
 * Kept apart from the log (a file of its own, at most FV_AUDIT_HEAD_MAX bytes), exactly
 *
 *   {"seq":N,"hash":"H","ts":"T","sig":"S"} LF          (same JSON rules as above)
 *
 * N and H are the last record's seq and hash (0 and 64 zeros for an empty log), T the
 * time the head was written, and S the base64 Ed25519 signature of the ASCII message
 *
 *   "fedvault audit head v1" LF  N LF  H LF  T LF
 *
 * (N in decimal; e.g. printf 'fedvault audit head v1\n%s\n%s\n%s\n' N H T). The head is
 * replaced after each append (temporary file, fsync, rename, directory fsync). A verifier
 * with the head requires the log to end exactly at record N with hash H: removing the
 * last records is then detected, which the chain alone cannot do.
 *
 * Ownership: fv_audit_t holds the log's fd (flock'd) and the secret key in sodium_malloc'd
 * memory, wiped on close. Threading: see fv_audit.h.
 */
#define _GNU_SOURCE /* flock, timegm */
#include "fv_audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "fv_crypto.h"
#include "fv_file.h"

#define JFLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII)
#define B64_LEN 88 /* base64 of 64 bytes, padded */
#define HEAD_MAGIC "fedvault audit head v1\n"
#define READ_CHUNK 65536

static const char zero_hex[65] = "0000000000000000000000000000000000000000000000000000000000000000";

struct fv_audit {
    int fd;
    char *path, *head_path, *head_tmp, *actor_default;
    uint8_t *sk; /* sodium_malloc'd, 64 bytes */
    uint8_t pk[32];
    uint64_t last_seq;
    char last_hash[65];
    int64_t (*now_us)(void *ctx);
    void *now_ctx;
    bool broken; /* an append failed halfway: reopen to repair */
};

/* ---- small encoders ----------------------------------------------------------------- */

static void to_hex(char out[65], const uint8_t h[32])
{
    sodium_bin2hex(out, 65, h, 32);
}

static bool is_lower_hex64(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static void to_b64(char out[B64_LEN + 1], const uint8_t sig[64])
{
    sodium_bin2base64(out, B64_LEN + 1, sig, 64, sodium_base64_VARIANT_ORIGINAL);
}

static bool from_b64(const char *s, uint8_t sig[64])
{
    size_t n = 0;
    const char *end = NULL;
    size_t len = strlen(s);
    if (len != B64_LEN)
        return false;
    if (sodium_base642bin(sig, 64, s, len, NULL, &n, &end, sodium_base64_VARIANT_ORIGINAL) != 0)
        return false;
    return n == 64 && end == s + len;
}

bool fv_audit_ts_valid(const char *s)
{
    static const char tmpl[] = "dddd-dd-ddTdd:dd:dd";
    size_t i;
    for (i = 0; i < sizeof tmpl - 1; i++) {
        if (tmpl[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != tmpl[i])
            return false;
    }
    if (s[i] == '.') {
        size_t n = 0;
        for (i++; s[i] >= '0' && s[i] <= '9'; i++)
            n++;
        if (n < 1 || n > 9)
            return false;
    }
    return s[i] == 'Z' && s[i + 1] == '\0';
}

bool fv_audit_ts_prefix_valid(const char *s)
{
    static const char tmpl[] = "dddd-dd-ddTdd:dd:dd";
    size_t len = strlen(s);
    if (len < 4 || len > sizeof tmpl - 1)
        return false;
    for (size_t i = 0; i < len; i++)
        if (tmpl[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != tmpl[i])
            return false;
    return true;
}

/* Canonical bytes C of a record (malloc'd, caller frees; NUL-terminated). NULL on
 * failure (out of memory, or a string jansson refuses: invalid UTF-8). */
static char *encode_canonical(uint64_t seq, const char *ts, const char *actor, const char *event,
                              const json_t *details, const char *prev_hex)
{
    json_t *o = json_object();
    char *s = NULL;
    if (o == NULL || seq > (uint64_t)INT64_MAX)
        goto out;
    /* json_object_set_new with a NULL value fails and returns -1, which we check. The
     * details are deep-copied: the object is borrowed and const. */
    if (json_object_set_new(o, "seq", json_integer((json_int_t)seq)) != 0 ||
        json_object_set_new(o, "ts", json_string(ts)) != 0 ||
        json_object_set_new(o, "actor", json_string(actor)) != 0 ||
        json_object_set_new(o, "event", json_string(event)) != 0 ||
        json_object_set_new(o, "details", json_deep_copy(details)) != 0 ||
        json_object_set_new(o, "prev", json_string(prev_hex)) != 0)
        goto out;
    s = json_dumps(o, JFLAGS);
out:
    json_decref(o);
    return s;
}

/* The full line (with LF) from C, H and S. malloc'd; *ret_len bytes plus a NUL. */
static char *encode_line(const char *canon, const char *hash_hex, const char *sig_b64,
                         size_t *ret_len)
{
    size_t clen = strlen(canon);
    if (clen < 2 || canon[clen - 1] != '}')
        return NULL;
    size_t n = clen - 1 + strlen(",\"hash\":\"\",\"sig\":\"\"}\n") + 64 + strlen(sig_b64);
    char *line = malloc(n + 1);
    if (line == NULL)
        return NULL;
    int w = snprintf(line, n + 1, "%.*s,\"hash\":\"%s\",\"sig\":\"%s\"}\n", (int)(clen - 1), canon,
                     hash_hex, sig_b64);
    if (w < 0 || (size_t)w != n) {
        free(line);
        return NULL;
    }
    *ret_len = n;
    return line;
}

/* ---- decoding one record -------------------------------------------------------------- */

typedef struct rec {
    json_t *root; /* owns everything below */
    uint64_t seq;
    const char *ts, *actor, *event, *prev, *hash, *sig;
    const json_t *details;
    uint8_t hash_bin[32];
} rec_t;

static void rec_clear(rec_t *r)
{
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

/* Checks line k (len bytes, no LF). expect_seq 0: any seq; prev_hex NULL: any prev;
 * pk NULL: no signature check. On success fills *r (rec_clear it). On failure writes the
 * reason into why and returns FV_ECORRUPT; *r is cleared. */
static int rec_decode(const char *line, size_t len, uint64_t k, uint64_t expect_seq,
                      const char *prev_hex, const uint8_t *pk, rec_t *r, char *why, size_t why_len)
{
    static const char *const names[] = {"seq",     "ts",   "actor", "event",
                                        "details", "prev", "hash",  "sig"};
    json_error_t jerr;
    char *canon = NULL, *rebuilt = NULL;
    size_t rebuilt_len = 0;
    uint8_t sig[64];
    int rc = FV_ECORRUPT;

    memset(r, 0, sizeof *r);
    if (len == 0) {
        snprintf(why, why_len, "line %" PRIu64 ": not a record (empty line)", k);
        return FV_ECORRUPT;
    }
    r->root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (r->root == NULL) {
        snprintf(why, why_len, "line %" PRIu64 ": not a record (JSON error at column %d: %s)", k,
                 jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(r->root) || json_object_size(r->root) != 8) {
        snprintf(why, why_len,
                 "line %" PRIu64 ": not a record (an object with exactly seq, ts, actor, "
                 "event, details, prev, hash, sig expected)",
                 k);
        goto out;
    }
    for (size_t i = 0; i < 8; i++) {
        json_t *v = json_object_get(r->root, names[i]);
        bool ok = v != NULL && (i == 0   ? json_is_integer(v) && json_integer_value(v) >= 1
                                : i == 4 ? json_is_object(v)
                                         : json_is_string(v));
        if (!ok) {
            snprintf(why, why_len, "record %" PRIu64 ": member '%s' is missing or mistyped", k,
                     names[i]);
            goto out;
        }
    }
    r->seq = (uint64_t)json_integer_value(json_object_get(r->root, "seq"));
    r->ts = json_string_value(json_object_get(r->root, "ts"));
    r->actor = json_string_value(json_object_get(r->root, "actor"));
    r->event = json_string_value(json_object_get(r->root, "event"));
    r->details = json_object_get(r->root, "details");
    r->prev = json_string_value(json_object_get(r->root, "prev"));
    r->hash = json_string_value(json_object_get(r->root, "hash"));
    r->sig = json_string_value(json_object_get(r->root, "sig"));
    if (!fv_audit_ts_valid(r->ts)) {
        snprintf(why, why_len, "record %" PRIu64 ": ts is not a UTC time YYYY-MM-DDTHH:MM:SS[.f]Z",
                 k);
        goto out;
    }
    if (r->actor[0] == '\0' || strlen(r->actor) > FV_AUDIT_ACTOR_MAX || r->event[0] == '\0' ||
        strlen(r->event) > FV_AUDIT_EVENT_MAX) {
        snprintf(why, why_len, "record %" PRIu64 ": actor or event empty or too long", k);
        goto out;
    }
    if (!is_lower_hex64(r->prev) || !is_lower_hex64(r->hash)) {
        snprintf(why, why_len, "record %" PRIu64 ": prev or hash is not 64 lowercase hex digits",
                 k);
        goto out;
    }
    if (!from_b64(r->sig, sig)) {
        snprintf(why, why_len, "record %" PRIu64 ": sig is not a base64 Ed25519 signature", k);
        goto out;
    }
    canon = encode_canonical(r->seq, r->ts, r->actor, r->event, r->details, r->prev);
    char sig_b64[B64_LEN + 1];
    to_b64(sig_b64, sig);
    if (canon == NULL || (rebuilt = encode_line(canon, r->hash, sig_b64, &rebuilt_len)) == NULL) {
        snprintf(why, why_len, "record %" PRIu64 ": cannot be re-encoded (out of memory?)", k);
        rc = FV_ENOMEM;
        goto out;
    }
    if (rebuilt_len != len + 1 || memcmp(rebuilt, line, len) != 0) {
        snprintf(why, why_len,
                 "record %" PRIu64 ": not in canonical form (spacing, member order, escaping "
                 "or encoding differs from what the writer produces)",
                 k);
        goto out;
    }
    if (expect_seq != 0 && r->seq != expect_seq) {
        snprintf(why, why_len, "record %" PRIu64 ": seq %" PRIu64 ", expected %" PRIu64, k, r->seq,
                 expect_seq);
        goto out;
    }
    if (prev_hex != NULL && strcmp(r->prev, prev_hex) != 0) {
        if (expect_seq == 1)
            snprintf(why, why_len, "record 1: prev is not 64 zeros (the first record)");
        else
            snprintf(why, why_len, "record %" PRIu64 ": prev is not record %" PRIu64 "'s hash", k,
                     k - 1);
        goto out;
    }
    fv_sha256(r->hash_bin, canon, strlen(canon));
    char h[65];
    to_hex(h, r->hash_bin);
    if (strcmp(h, r->hash) != 0) {
        snprintf(why, why_len, "record %" PRIu64 ": hash does not match its content", k);
        goto out;
    }
    if (pk != NULL && fv_sign_verify(sig, canon, strlen(canon), pk) != 0) {
        snprintf(why, why_len, "record %" PRIu64 ": bad signature", k);
        goto out;
    }
    rc = 0;
out:
    free(canon);
    free(rebuilt);
    if (rc != 0)
        rec_clear(r);
    return rc;
}

/* ---- the head --------------------------------------------------------------------------- */

static int head_message(char *buf, size_t len, uint64_t seq, const char *hash_hex, const char *ts)
{
    int n = snprintf(buf, len, HEAD_MAGIC "%" PRIu64 "\n%s\n%s\n", seq, hash_hex, ts);
    return n < 0 || (size_t)n >= len ? -1 : n;
}

static char *head_encode(uint64_t seq, const char *hash_hex, const char *ts, const char *sig_b64)
{
    json_t *o = json_object();
    char *s = NULL, *line = NULL;
    if (o == NULL || seq > (uint64_t)INT64_MAX ||
        json_object_set_new(o, "seq", json_integer((json_int_t)seq)) != 0 ||
        json_object_set_new(o, "hash", json_string(hash_hex)) != 0 ||
        json_object_set_new(o, "ts", json_string(ts)) != 0 ||
        json_object_set_new(o, "sig", json_string(sig_b64)) != 0 ||
        (s = json_dumps(o, JFLAGS)) == NULL)
        goto out;
    size_t n = strlen(s);
    line = malloc(n + 2);
    if (line != NULL) {
        memcpy(line, s, n);
        line[n] = '\n';
        line[n + 1] = '\0';
    }
out:
    free(s);
    json_decref(o);
    return line;
}

/* Decodes and checks a head (buf, len bytes, hostile). FV_ECORRUPT with why. */
static int head_decode(const char *buf, size_t len, const uint8_t pk[32], uint64_t *ret_seq,
                       char ret_hash[65], char *why, size_t why_len)
{
    json_error_t jerr;
    json_t *o = NULL;
    char *again = NULL;
    uint8_t sig[64];
    int rc = FV_ECORRUPT;

    if (len == 0 || len > FV_AUDIT_HEAD_MAX || buf[len - 1] != '\n') {
        snprintf(why, why_len, "head: not a head file (empty, too long or no final newline)");
        return FV_ECORRUPT;
    }
    o = json_loadb(buf, len - 1, JSON_REJECT_DUPLICATES, &jerr);
    json_t *jseq = json_object_get(o, "seq"), *jhash = json_object_get(o, "hash"),
           *jts = json_object_get(o, "ts"), *jsig = json_object_get(o, "sig");
    if (o == NULL || !json_is_object(o) || json_object_size(o) != 4 || !json_is_integer(jseq) ||
        json_integer_value(jseq) < 0 || !json_is_string(jhash) || !json_is_string(jts) ||
        !json_is_string(jsig)) {
        snprintf(why, why_len, "head: not a head file (%s)",
                 o == NULL ? jerr.text : "members seq, hash, ts, sig expected");
        goto out;
    }
    uint64_t seq = (uint64_t)json_integer_value(jseq);
    const char *hash = json_string_value(jhash), *ts = json_string_value(jts);
    if (!is_lower_hex64(hash) || !fv_audit_ts_valid(ts) ||
        !from_b64(json_string_value(jsig), sig)) {
        snprintf(why, why_len, "head: malformed hash, ts or sig");
        goto out;
    }
    char sig_b64[B64_LEN + 1];
    to_b64(sig_b64, sig);
    again = head_encode(seq, hash, ts, sig_b64);
    if (again == NULL || strlen(again) != len || memcmp(again, buf, len) != 0) {
        snprintf(why, why_len, "head: not in canonical form");
        goto out;
    }
    char msg[256];
    int n = head_message(msg, sizeof msg, seq, hash, ts);
    if (n < 0 || fv_sign_verify(sig, msg, (size_t)n, pk) != 0) {
        snprintf(why, why_len, "head: bad signature (not signed by this key)");
        goto out;
    }
    *ret_seq = seq;
    memcpy(ret_hash, hash, 65);
    rc = 0;
out:
    free(again);
    json_decref(o);
    return rc;
}

/* ---- line sources: memory or a file, lines capped --------------------------------------- */

typedef struct lsrc {
    const char *mem; /* memory source, or NULL */
    size_t mem_len, pos;
    int fd;    /* file source */
    char *buf; /* READ_CHUNK bytes */
    size_t buf_len, buf_pos;
    bool eof;
    char *line; /* a file line being assembled, FV_AUDIT_LINE_MAX bytes */
    uint64_t k; /* lines returned so far */
} lsrc_t;

/* Next line: 1 (ret_line/ret_len, without LF; *ret_nl whether an LF ended it), 0 at end,
 * FV_ETOOBIG for a line over the cap, -errno on a read error. */
static int lsrc_next(lsrc_t *s, const char **ret_line, size_t *ret_len, bool *ret_nl)
{
    if (s->mem != NULL || s->fd < 0) {
        if (s->pos >= s->mem_len)
            return 0;
        const char *p = s->mem + s->pos;
        size_t rest = s->mem_len - s->pos;
        const char *nl = memchr(p, '\n', rest);
        size_t n = nl ? (size_t)(nl - p) : rest;
        if (n + 1 > FV_AUDIT_LINE_MAX)
            return FV_ETOOBIG;
        s->pos += n + (nl ? 1 : 0);
        s->k++;
        *ret_line = p;
        *ret_len = n;
        *ret_nl = nl != NULL;
        return 1;
    }
    size_t n = 0;
    for (;;) {
        if (s->buf_pos == s->buf_len) {
            if (s->eof)
                break;
            ssize_t got;
            do
                got = read(s->fd, s->buf, READ_CHUNK);
            while (got < 0 && errno == EINTR);
            if (got < 0)
                return -errno;
            if (got == 0) {
                s->eof = true;
                break;
            }
            s->buf_len = (size_t)got;
            s->buf_pos = 0;
        }
        const char *p = s->buf + s->buf_pos;
        size_t avail = s->buf_len - s->buf_pos;
        const char *nl = memchr(p, '\n', avail);
        size_t take = nl ? (size_t)(nl - p) : avail;
        if (n + take + 1 > FV_AUDIT_LINE_MAX)
            return FV_ETOOBIG;
        memcpy(s->line + n, p, take);
        n += take;
        s->buf_pos += take + (nl ? 1 : 0);
        if (nl) {
            s->k++;
            *ret_line = s->line;
            *ret_len = n;
            *ret_nl = true;
            return 1;
        }
    }
    if (n == 0)
        return 0;
    s->k++;
    *ret_line = s->line;
    *ret_len = n;
    *ret_nl = false;
    return 1;
}

/* ---- the verification engine ------------------------------------------------------------ */

typedef int (*rec_cb_t)(const rec_t *r, const char *line, size_t len, uint64_t k, void *ctx);

/* Reads every line of s; checks each record (signature only if pk). Stops at the first
 * bad record (FV_ECORRUPT, rep filled) or a callback's non-zero return. */
static int walk(lsrc_t *s, const uint8_t *pk, rec_cb_t cb, void *ctx, fv_audit_report_t *rep)
{
    char prev[65];
    memcpy(prev, zero_hex, 65);
    for (;;) {
        const char *line = NULL;
        size_t len = 0;
        bool nl = false;
        uint64_t k = s->k + 1;
        int r = lsrc_next(s, &line, &len, &nl);
        if (r == 0)
            break;
        rep->bad_line = rep->bad_record = k;
        if (r == FV_ETOOBIG) {
            snprintf(rep->reason, sizeof rep->reason,
                     "line %" PRIu64 ": not a record (longer than %u bytes)", k, FV_AUDIT_LINE_MAX);
            return FV_ECORRUPT;
        }
        if (r < 0) {
            snprintf(rep->reason, sizeof rep->reason, "line %" PRIu64 ": read error: %s", k,
                     fv_strerror(r));
            return r;
        }
        if (!nl) {
            snprintf(rep->reason, sizeof rep->reason,
                     "line %" PRIu64 ": incomplete last line (no newline: a torn write)", k);
            return FV_ECORRUPT;
        }
        rec_t rec;
        r = rec_decode(line, len, k, k, prev, pk, &rec, rep->reason, sizeof rep->reason);
        if (r != 0)
            return r;
        memcpy(prev, rec.hash, 65);
        r = cb ? cb(&rec, line, len, k, ctx) : 0;
        rec_clear(&rec);
        rep->n_records = k;
        memcpy(rep->last_hash, prev, 65);
        rep->bad_line = rep->bad_record = 0;
        rep->reason[0] = '\0';
        if (r != 0)
            return r;
    }
    return 0;
}

static int check_head(const char *head, size_t head_len, const uint8_t pk[32],
                      fv_audit_report_t *rep)
{
    uint64_t hseq;
    char hhash[65];
    if (head_decode(head, head_len, pk, &hseq, hhash, rep->reason, sizeof rep->reason) != 0)
        return FV_ECORRUPT;
    rep->head_checked = true;
    rep->head_seq = hseq;
    uint64_t n = rep->n_records;
    if (hseq > n) {
        rep->bad_record = n + 1;
        snprintf(rep->reason, sizeof rep->reason,
                 "record %" PRIu64 ": missing: the log ends at record %" PRIu64
                 " but the signed head says it has %" PRIu64 " (the tail was removed)",
                 n + 1, n, hseq);
        return FV_ECORRUPT;
    }
    if (hseq < n) {
        rep->bad_record = rep->bad_line = hseq + 1;
        snprintf(rep->reason, sizeof rep->reason,
                 "record %" PRIu64 ": not covered by the signed head (seq %" PRIu64
                 "): written after the head (a crash: reopening the log with its key repairs "
                 "it) or added later",
                 hseq + 1, hseq);
        return FV_ECORRUPT;
    }
    if (strcmp(hhash, rep->last_hash) != 0) {
        rep->bad_record = rep->bad_line = n;
        snprintf(rep->reason, sizeof rep->reason,
                 "record %" PRIu64 ": hash differs from the one the signed head records", n);
        return FV_ECORRUPT;
    }
    return 0;
}

static int verify_src(lsrc_t *s, const char *head, size_t head_len, bool have_head,
                      const uint8_t pk[32], fv_audit_report_t *report, fv_diag_t *d)
{
    fv_audit_report_t rep;
    memset(&rep, 0, sizeof rep);
    memcpy(rep.last_hash, zero_hex, 65);
    int r = walk(s, pk, NULL, NULL, &rep);
    if (r == 0 && have_head)
        r = check_head(head, head_len, pk, &rep);
    if (r != 0 && r != FV_ECORRUPT)
        return fv_diag_set(d, r, "%s", rep.reason);
    rep.ok = r == 0;
    if (r != 0)
        fv_diag_set(d, r, "%s", rep.reason);
    *report = rep;
    return r;
}

int fv_audit_verify_mem(const char *log, size_t log_len, const char *head, size_t head_len,
                        const uint8_t pk[32], fv_audit_report_t *report, fv_diag_t *d)
{
    if (pk == NULL || report == NULL || (log == NULL && log_len > 0))
        return fv_diag_set(d, FV_EINVAL, "fv_audit_verify_mem: NULL argument");
    lsrc_t s = {.mem = log, .mem_len = log_len, .fd = -1};
    return verify_src(&s, head, head_len, head != NULL, pk, report, d);
}

static int open_src(const char *path, lsrc_t *s, fv_diag_t *d)
{
    memset(s, 0, sizeof *s);
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
        int r = -errno;
        return fv_diag_set(d, r, "%s: cannot open the audit log: %s", path, strerror(-r));
    }
    struct stat st;
    if (fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(s->fd);
        s->fd = -1;
        return fv_diag_set(d, FV_EINVAL, "%s: not a regular file", path);
    }
    s->buf = malloc(READ_CHUNK);
    s->line = malloc(FV_AUDIT_LINE_MAX);
    if (s->buf == NULL || s->line == NULL) {
        free(s->buf);
        free(s->line);
        close(s->fd);
        s->fd = -1;
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    }
    return 0;
}

static void close_src(lsrc_t *s)
{
    free(s->buf);
    free(s->line);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

int fv_audit_verify(const char *path, const char *head_path, const uint8_t pk[32],
                    fv_audit_report_t *report, fv_diag_t *d)
{
    char *head = NULL;
    size_t head_len = 0;
    lsrc_t s;
    int r;
    if (path == NULL || pk == NULL || report == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_audit_verify: NULL argument");
    if (head_path != NULL &&
        (r = fv_file_read_all(head_path, FV_AUDIT_HEAD_MAX, &head, &head_len, NULL, d)) != 0)
        return r;
    if ((r = open_src(path, &s, d)) != 0)
        goto out;
    fv_diag_t inner = {""};
    r = verify_src(&s, head, head_len, head_path != NULL, pk, report, &inner);
    if (r != 0 && r != FV_ECORRUPT)
        fv_diag_set(d, r, "%s: %s", path, inner.msg); /* a read error */
    else if (r != 0)
        fv_diag_set(d, r, "%s", inner.msg);
    close_src(&s);
out:
    free(head);
    return r;
}

/* ---- scanning ---------------------------------------------------------------------------- */

typedef struct scan_ctx {
    const fv_audit_filter_t *f;
    int (*cb)(const fv_audit_record_t *rec, void *ctx);
    void *ctx;
} scan_ctx_t;

static bool job_matches(const json_t *details, const char *job)
{
    const json_t *j = json_object_get(details, "job");
    if (json_is_string(j))
        return strcmp(json_string_value(j), job) == 0;
    if (json_is_integer(j)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        return strcmp(buf, job) == 0;
    }
    return false;
}

static int scan_one(const rec_t *r, const char *line, size_t len, uint64_t k, void *vctx)
{
    scan_ctx_t *c = vctx;
    const fv_audit_filter_t *f = c->f;
    if (f != NULL) {
        if (f->since && strncmp(r->ts, f->since, strlen(f->since)) < 0)
            return 0;
        if (f->until && strncmp(r->ts, f->until, strlen(f->until)) > 0)
            return 0;
        if (f->actor && strcmp(r->actor, f->actor) != 0)
            return 0;
        if (f->event && strcmp(r->event, f->event) != 0)
            return 0;
        if (f->job && !job_matches(r->details, f->job))
            return 0;
    }
    fv_audit_record_t out = {
        .line = k,
        .seq = r->seq,
        .ts = r->ts,
        .actor = r->actor,
        .event = r->event,
        .details = r->details,
        .prev = r->prev,
        .hash = r->hash,
        .sig = r->sig,
        .text = line,
        .text_len = len,
    };
    return c->cb(&out, c->ctx);
}

int fv_audit_scan(const char *path, const fv_audit_filter_t *f,
                  int (*cb)(const fv_audit_record_t *rec, void *ctx), void *ctx,
                  uint64_t *ret_n_seen, fv_diag_t *d)
{
    lsrc_t s;
    fv_audit_report_t rep;
    if (path == NULL || cb == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_audit_scan: NULL argument");
    int r = open_src(path, &s, d);
    if (r != 0)
        return r;
    memset(&rep, 0, sizeof rep);
    scan_ctx_t c = {f, cb, ctx};
    r = walk(&s, NULL, scan_one, &c, &rep);
    if (r != 0 && rep.reason[0] != '\0')
        fv_diag_set(d, r, "%s: %s", path, rep.reason);
    if (ret_n_seen != NULL)
        *ret_n_seen = rep.n_records;
    close_src(&s);
    return r;
}

/* ---- certificates ------------------------------------------------------------------------- */

int fv_audit_cert_pk(const char *cert_file, uint8_t pk[32], fv_diag_t *d)
{
    BIO *b = BIO_new_file(cert_file, "r");
    X509 *x = NULL;
    int r = 0;
    if (b == NULL) {
        ERR_clear_error();
        return fv_diag_set(d, -ENOENT, "%s: cannot open the certificate", cert_file);
    }
    x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    EVP_PKEY *k = x ? X509_get0_pubkey(x) : NULL;
    size_t n = 32;
    if (k == NULL || EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519 ||
        EVP_PKEY_get_raw_public_key(k, pk, &n) != 1 || n != 32)
        r = fv_diag_set(d, FV_EPARSE, "%s: not a PEM certificate with an Ed25519 key", cert_file);
    X509_free(x);
    BIO_free(b);
    ERR_clear_error();
    return r;
}

/* ---- the writer ----------------------------------------------------------------------------- */

static int64_t clock_realtime_us(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void format_ts(char out[32], int64_t us)
{
    time_t sec = (time_t)(us / 1000000);
    int ms = (int)((us % 1000000) / 1000);
    if (us < 0) {
        sec = 0;
        ms = 0;
    }
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", ms);
}

static int write_head(fv_audit_t *log, fv_diag_t *d)
{
    char ts[32], msg[256], sig_b64[B64_LEN + 1];
    uint8_t sig[64];
    format_ts(ts, log->now_us(log->now_ctx));
    int n = head_message(msg, sizeof msg, log->last_seq, log->last_hash, ts);
    if (n < 0)
        return fv_diag_set(d, FV_EINVAL, "head message too long");
    fv_sign(sig, msg, (size_t)n, log->sk);
    to_b64(sig_b64, sig);
    char *line = head_encode(log->last_seq, log->last_hash, ts, sig_b64);
    if (line == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    int r = 0;
    int fd = open(log->head_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot create: %s", log->head_tmp, strerror(-r));
        goto out;
    }
    if ((r = fv_file_write_all(fd, line, strlen(line))) != 0 || (fsync(fd) != 0 && (r = -errno))) {
        fv_diag_set(d, r, "%s: cannot write: %s", log->head_tmp, strerror(-r));
        close(fd);
        unlink(log->head_tmp);
        goto out;
    }
    close(fd);
    if (rename(log->head_tmp, log->head_path) != 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot rename to %s: %s", log->head_tmp, log->head_path,
                    strerror(-r));
        unlink(log->head_tmp);
        goto out;
    }
    if ((r = fv_file_fsync_parent(log->head_path)) != 0)
        fv_diag_set(d, r, "%s: cannot fsync its directory: %s", log->head_path, strerror(-r));
out:
    free(line);
    return r;
}

void fv_audit_close(fv_audit_t *log)
{
    if (log == NULL)
        return;
    if (log->fd >= 0)
        close(log->fd); /* releases the flock */
    fv_secret_free(log->sk);
    free(log->path);
    free(log->head_path);
    free(log->head_tmp);
    free(log->actor_default);
    sodium_memzero(log, sizeof *log);
    free(log);
}

void fv_audit_set_clock(fv_audit_t *log, int64_t (*now_us)(void *ctx), void *ctx)
{
    log->now_us = now_us ? now_us : clock_realtime_us;
    log->now_ctx = ctx;
}

uint64_t fv_audit_last_seq(const fv_audit_t *log)
{
    return log->last_seq;
}

/* Finds the last complete record of the open log and the size of a torn tail after it,
 * checks that record (form, hash, signature), and reconciles with the head. */
static int recover_tail(fv_audit_t *log, fv_diag_t *d)
{
    struct stat st;
    char *buf = NULL, *head = NULL;
    size_t head_len = 0;
    char why[FV_DIAG_MAX];
    rec_t rec = {0};
    int r;

    if (fstat(log->fd, &st) != 0)
        return fv_diag_set(d, -errno, "%s: cannot stat", log->path);
    if (!S_ISREG(st.st_mode))
        return fv_diag_set(d, FV_EINVAL, "%s: not a regular file", log->path);
    uint64_t size = (uint64_t)st.st_size;
    size_t want = size > 2 * (uint64_t)FV_AUDIT_LINE_MAX ? 2 * FV_AUDIT_LINE_MAX : (size_t)size;
    uint64_t base = size - want; /* file offset of buf[0] */
    buf = malloc(want + 1);
    if (buf == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(log->fd, buf + got, want - got, (off_t)(base + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = fv_diag_set(d, n < 0 ? -errno : FV_ECORRUPT, "%s: cannot read its end", log->path);
            goto out;
        }
        got += (size_t)n;
    }
    /* complete part: [0, end) of buf ends with LF; torn: [end, want) */
    size_t end = want;
    while (end > 0 && buf[end - 1] != '\n')
        end--;
    size_t torn = want - end;
    if (end == 0 && base > 0) {
        r = fv_diag_set(d, FV_ECORRUPT, "%s: the last line is longer than %u bytes", log->path,
                        FV_AUDIT_LINE_MAX);
        goto out;
    }
    uint64_t last_seq = 0;
    char last_hash[65];
    memcpy(last_hash, zero_hex, 65);
    if (end > 0) {
        size_t start = end - 1;
        while (start > 0 && buf[start - 1] != '\n')
            start--;
        if (start == 0 && base > 0) {
            r = fv_diag_set(d, FV_ECORRUPT, "%s: the last record is longer than %u bytes",
                            log->path, FV_AUDIT_LINE_MAX);
            goto out;
        }
        if (rec_decode(buf + start, end - 1 - start, 0, 0, NULL, log->pk, &rec, why, sizeof why) !=
            0) {
            r = fv_diag_set(d, FV_ECORRUPT,
                            "%s: its last record is bad (%s): run 'fedvault audit verify'",
                            log->path, why);
            goto out;
        }
        last_seq = rec.seq;
        memcpy(last_hash, rec.hash, 65);
    }

    uint64_t hseq = 0;
    char hhash[65];
    r = fv_file_read_all(log->head_path, FV_AUDIT_HEAD_MAX, &head, &head_len, NULL, d);
    if (r == -ENOENT && size == 0) {
        /* a new log */
    } else if (r == -ENOENT) {
        r = fv_diag_set(d, FV_ECORRUPT,
                        "%s: the head file %s is missing beside a non-empty log: a removed "
                        "tail could not be detected; restore the head",
                        log->path, log->head_path);
        goto out;
    } else if (r != 0) {
        goto out;
    } else if (head_decode(head, head_len, log->pk, &hseq, hhash, why, sizeof why) != 0) {
        r = fv_diag_set(d, FV_ECORRUPT, "%s: %s", log->head_path, why);
        goto out;
    } else if (hseq == last_seq && strcmp(hhash, last_hash) == 0) {
        /* consistent */
    } else if (end > 0 && hseq + 1 == last_seq && strcmp(rec.prev, hhash) == 0) {
        /* crash between the line's fsync and the head's rename: the line stands */
    } else {
        r = fv_diag_set(d, FV_ECORRUPT,
                        "%s: ends at record %" PRIu64 " but the signed head %s is at record "
                        "%" PRIu64 ": the log was truncated or replaced; run 'fedvault audit "
                        "verify'",
                        log->path, last_seq, log->head_path, hseq);
        goto out;
    }
    if (torn > 0) {
        if (ftruncate(log->fd, (off_t)(size - torn)) != 0 || fsync(log->fd) != 0) {
            r = fv_diag_set(d, -errno, "%s: cannot cut its torn last line: %s", log->path,
                            strerror(errno));
            goto out;
        }
    }
    log->last_seq = last_seq;
    memcpy(log->last_hash, last_hash, 65);
    if (r != 0 || hseq != last_seq || strcmp(hhash, last_hash) != 0)
        r = write_head(log, d);
out:
    rec_clear(&rec);
    free(buf);
    free(head);
    return r;
}

int fv_audit_open(const char *path, const char *head_path, const uint8_t sk[64],
                  const char *actor_default, fv_audit_t **ret, fv_diag_t *d)
{
    if (path == NULL || head_path == NULL || sk == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_audit_open: NULL argument");
    if (strcmp(path, head_path) == 0)
        return fv_diag_set(d, FV_EINVAL, "%s: the head must be a file of its own", path);
    if (actor_default != NULL &&
        (actor_default[0] == '\0' || strlen(actor_default) > FV_AUDIT_ACTOR_MAX))
        return fv_diag_set(d, FV_EINVAL, "default actor: 1..%d bytes", FV_AUDIT_ACTOR_MAX);
    int r = fv_crypto_init();
    if (r != 0)
        return fv_diag_set(d, r, "libsodium cannot initialise");
    fv_audit_t *log = calloc(1, sizeof *log);
    if (log == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    log->fd = -1;
    log->now_us = clock_realtime_us;
    size_t hl = strlen(head_path);
    log->path = strdup(path);
    log->head_path = strdup(head_path);
    log->head_tmp = malloc(hl + 5);
    log->actor_default = actor_default ? strdup(actor_default) : NULL;
    log->sk = fv_secret_alloc(64);
    if (log->path == NULL || log->head_path == NULL || log->head_tmp == NULL || log->sk == NULL ||
        (actor_default != NULL && log->actor_default == NULL)) {
        r = fv_diag_set(d, FV_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(log->head_tmp, head_path, hl);
    memcpy(log->head_tmp + hl, ".tmp", 5);
    memcpy(log->sk, sk, 64);
    memcpy(log->pk, sk + 32, 32); /* libsodium's sk is seed || pk */

    log->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (log->fd < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot open the audit log: %s", path, strerror(-r));
        goto fail;
    }
    if (flock(log->fd, LOCK_EX | LOCK_NB) != 0) {
        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        fv_diag_set(d, r, "%s: another process is writing this audit log", path);
        goto fail;
    }
    if ((r = recover_tail(log, d)) != 0)
        goto fail;
    *ret = log;
    return 0;
fail:
    fv_audit_close(log);
    return r;
}

int fv_audit_append_obj(fv_audit_t *log, const char *actor, const char *event,
                        const json_t *details, fv_diag_t *d)
{
    char *canon = NULL, *line = NULL, why[FV_DIAG_MAX];
    json_t *empty = NULL;
    size_t line_len = 0;
    rec_t rec = {0};
    int r;

    if (log == NULL || event == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_audit_append: NULL argument");
    if (log->broken)
        return fv_diag_set(d, -EIO, "%s: an earlier append failed: reopen the log", log->path);
    if (actor == NULL)
        actor = log->actor_default;
    if (actor == NULL || actor[0] == '\0' || strlen(actor) > FV_AUDIT_ACTOR_MAX)
        return fv_diag_set(d, FV_EINVAL, "actor: 1..%d bytes required", FV_AUDIT_ACTOR_MAX);
    if (event[0] == '\0' || strlen(event) > FV_AUDIT_EVENT_MAX)
        return fv_diag_set(d, FV_EINVAL, "event: 1..%d bytes required", FV_AUDIT_EVENT_MAX);
    if (details == NULL)
        details = empty = json_object();
    if (!json_is_object(details)) {
        r = fv_diag_set(d, FV_EINVAL, "details must be a JSON object");
        goto out;
    }
    if (log->last_seq >= (uint64_t)INT64_MAX) {
        r = fv_diag_set(d, FV_ERANGE, "%s: sequence numbers exhausted", log->path);
        goto out;
    }
    char ts[32];
    format_ts(ts, log->now_us(log->now_ctx));
    uint64_t seq = log->last_seq + 1;
    canon = encode_canonical(seq, ts, actor, event, details, log->last_hash);
    if (canon == NULL) {
        r = fv_diag_set(d, FV_EINVAL, "actor, event or details: not valid UTF-8 text");
        goto out;
    }
    uint8_t h[32], sig[64];
    char hash_hex[65], sig_b64[B64_LEN + 1];
    size_t clen = strlen(canon);
    fv_sha256(h, canon, clen);
    to_hex(hash_hex, h);
    fv_sign(sig, canon, clen, log->sk);
    to_b64(sig_b64, sig);
    line = encode_line(canon, hash_hex, sig_b64, &line_len);
    if (line == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "out of memory");
        goto out;
    }
    if (line_len > FV_AUDIT_LINE_MAX) {
        r = fv_diag_set(d, FV_ETOOBIG, "record of %zu bytes exceeds the %u-byte line cap", line_len,
                        FV_AUDIT_LINE_MAX);
        goto out;
    }
    /* What we write, a reader must accept: decode it as verify will (a real that does not
     * survive a round trip, say, is refused here rather than breaking the chain). */
    if (rec_decode(line, line_len - 1, seq, seq, log->last_hash, log->pk, &rec, why, sizeof why) !=
        0) {
        r = fv_diag_set(d, FV_EINVAL, "record does not re-read as written: %s", why);
        goto out;
    }
    if ((r = fv_file_write_all(log->fd, line, line_len)) != 0 ||
        (fdatasync(log->fd) != 0 && (r = -errno) != 0)) {
        log->broken = true;
        fv_diag_set(d, r, "%s: cannot append: %s", log->path, strerror(-r));
        goto out;
    }
    log->last_seq = seq;
    memcpy(log->last_hash, hash_hex, 65);
    if ((r = write_head(log, d)) != 0)
        log->broken = true;
out:
    rec_clear(&rec);
    json_decref(empty);
    free(canon);
    free(line);
    return r;
}

int fv_audit_append(fv_audit_t *log, const char *actor, const char *event, const char *details_json,
                    fv_diag_t *d)
{
    json_t *o = NULL;
    if (details_json != NULL) {
        json_error_t jerr;
        o = json_loads(details_json, JSON_REJECT_DUPLICATES, &jerr);
        if (o == NULL)
            return fv_diag_set(d, FV_EPARSE, "details: not JSON (column %d: %s)", jerr.column,
                               jerr.text);
        if (!json_is_object(o)) {
            json_decref(o);
            return fv_diag_set(d, FV_EINVAL, "details must be a JSON object");
        }
    }
    int r = fv_audit_append_obj(log, actor, event, o, d);
    json_decref(o);
    return r;
}
