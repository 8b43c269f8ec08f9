/* fv_log.h - the daemons' log: one JSON object per line on stderr, the same shape from
 * fedvault-coordinator and fedvault-agent.
 *
 * A line is {"ts": "2026-11-28T23:40:00.123Z", "level": "info", "event": "round_done",
 * ...the event's fields in the order they were added}. Levels: debug < info < warn <
 * error; lines below the threshold (fv_log_set_level; default info) are dropped, and a
 * caller with costly fields asks fv_log_enabled() before building them. The timestamp is
 * wall-clock time for a reader; deadlines never use it (uv_now).
 *
 * Part of fv_net (the daemons' I/O layer), not of the pure libraries: they return codes
 * and never log. Thread-safe for whole lines (one fputs of a complete line, then fflush);
 * the daemons log from their loop thread.
 */
#ifndef FV_LOG_H
#define FV_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef enum fv_log_level {
    FV_LOG_DEBUG = 0,
    FV_LOG_INFO = 1,
    FV_LOG_WARN = 2,
    FV_LOG_ERROR = 3,
} fv_log_level_t;

#define FV_LOG_TS_MAX 32 /* "2026-11-28T23:40:00.123Z" and its NUL */

/* "debug", "info", "warn", "error" -> the level; -1 for anything else. */
int fv_log_level_parse(const char *name);
const char *fv_log_level_name(fv_log_level_t lv);
void fv_log_set_level(fv_log_level_t min);
bool fv_log_enabled(fv_log_level_t lv);

/* UTC time as "YYYY-MM-DDTHH:MM:SS.mmmZ": now, or of ms since the Unix epoch. */
void fv_log_iso_now(char buf[FV_LOG_TS_MAX]);
void fv_log_iso_ms(int64_t ms, char buf[FV_LOG_TS_MAX]);

/* Writes one line: ts, level, event, then fields' members (fields: taken, may be NULL;
 * a NULL from a failed json_pack still logs the event). */
void fv_log_json(fv_log_level_t lv, const char *event, json_t *fields);

/* ---- rate limit per (peer, event) ------------------------------------------------ */
/* A peer controls how often some lines are written (a message it should not have sent,
 * a connection it dropped): each (peer, event) pair gets a token bucket of `burst` lines
 * that refills one line per `interval_ms` (a GCRA: one timestamp per pair). A line not
 * let through is counted; the next one let through for the pair carries that count
 * (fv_lograte_allow's *ret_suppressed: write it in the line). The pairs live in a
 * fixed table of n_slots (4-way sets, least recently used evicted: a forgotten pair
 * starts with a full bucket and its pending count is lost from the lines, never from
 * the total). The clock is the caller's (now_ms, monotonic): pure, no loop, no locks
 * (one thread owns a limiter). Peer and event strings are borrowed; only a keyed hash
 * and their first 63 bytes are kept. */
typedef struct fv_lograte fv_lograte_t;
/* n_slots rounded up to a multiple of 4; burst >= 1; interval_ms >= 1. FV_EINVAL/ENOMEM. */
int fv_lograte_new(size_t n_slots, uint32_t burst, uint64_t interval_ms, fv_lograte_t **ret);
void fv_lograte_free(fv_lograte_t *rl); /* NULL-safe */
/* true: write the line (*ret_suppressed: lines of this pair dropped since the last one
 * let through); false: drop it (counted). */
bool fv_lograte_allow(fv_lograte_t *rl, const char *peer, const char *event, uint64_t now_ms,
                      uint64_t *ret_suppressed);
/* Lines dropped so far, all pairs. */
uint64_t fv_lograte_suppressed_total(const fv_lograte_t *rl);

#endif
