/* log.c - the daemons' JSON log lines (fv_log.h).
 *
 * The line is built in full (json_dumps) and written with one fputs + fflush, so lines
 * from two threads never interleave within a line. A field named like one of the three
 * fixed keys (ts, level, event) is dropped rather than allowed to replace it.
 *
 * fv_lograte: a table of (peer, event) pairs in sets of 4, each pair one GCRA timestamp
 * (tat, the theoretical arrival time of the pair's next line; a line passes when tat <= now +
 * (burst - 1) * interval, and moves tat to max(tat, now) + interval). A pair is found by a keyed
 * hash (crypto_shorthash, random key per limiter: a peer cannot choose names that share a set with
 * another's) and confirmed by its stored strings; a miss takes the set's least recently used slot.
 */
#include "fv_log.h"

#include "fv_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

static fv_log_level_t g_min = FV_LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error"};

int fv_log_level_parse(const char *name)
{
    for (int i = 0; name != NULL && i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

const char *fv_log_level_name(fv_log_level_t lv)
{
    return (unsigned)lv < 4 ? names[lv] : "error";
}

void fv_log_set_level(fv_log_level_t min)
{
    g_min = min;
}

bool fv_log_enabled(fv_log_level_t lv)
{
    return lv >= g_min;
}

void fv_log_iso_ms(int64_t ms, char buf[FV_LOG_TS_MAX])
{
    time_t s = (time_t)(ms / 1000);
    long rem = (long)(ms % 1000);
    if (rem < 0) {
        rem += 1000;
        s--;
    }
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, FV_LOG_TS_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, FV_LOG_TS_MAX - n, ".%03ldZ", rem);
}

void fv_log_iso_now(char buf[FV_LOG_TS_MAX])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* a timestamp for the reader, never a deadline */
    fv_log_iso_ms((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, buf);
}

void fv_log_json(fv_log_level_t lv, const char *event, json_t *fields)
{
    if (!fv_log_enabled(lv)) {
        json_decref(fields);
        return;
    }
    char ts[FV_LOG_TS_MAX];
    fv_log_iso_now(ts);
    json_t *o = json_object();
    if (o == NULL) {
        json_decref(fields);
        return;
    }
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(fv_log_level_name(lv)));
    json_object_set_new(o, "event", json_string(event));
    if (json_is_object(fields)) {
        const char *k;
        json_t *v;
        json_object_foreach(fields, k, v)
        {
            if (strcmp(k, "ts") != 0 && strcmp(k, "level") != 0 && strcmp(k, "event") != 0)
                json_object_set(o, k, v);
        }
    }
    json_decref(fields);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (s == NULL)
        return;
    size_t n = strlen(s);
    char *line = malloc(n + 2);
    if (line != NULL) {
        memcpy(line, s, n);
        line[n] = '\n';
        line[n + 1] = '\0';
        fputs(line, stderr);
        fflush(stderr);
        free(line);
    }
    free(s);
}

/* ---- fv_lograte -------------------------------------------------------------------- */

#define LR_WAYS 4
#define LR_NAME 64

typedef struct lr_slot {
    uint64_t hash;
    uint64_t tat_ms;     /* GCRA theoretical arrival time */
    uint64_t last_ms;    /* last use, for eviction */
    uint64_t suppressed; /* since the last line let through */
    bool used;
    char peer[LR_NAME], event[LR_NAME];
} lr_slot_t;

struct fv_lograte {
    lr_slot_t *slots;
    size_t n_sets;
    uint32_t burst;
    uint64_t interval_ms;
    uint64_t total;
    uint8_t key[crypto_shorthash_KEYBYTES];
};

int fv_lograte_new(size_t n_slots, uint32_t burst, uint64_t interval_ms, fv_lograte_t **ret)
{
    if (n_slots == 0 || n_slots > ((size_t)1 << 24) || burst == 0 || interval_ms == 0 ||
        interval_ms > UINT64_MAX / ((uint64_t)burst + 1))
        return FV_EINVAL;
    fv_lograte_t *rl = calloc(1, sizeof *rl);
    if (rl == NULL)
        return FV_ENOMEM;
    rl->n_sets = (n_slots + LR_WAYS - 1) / LR_WAYS;
    rl->slots = calloc(rl->n_sets * LR_WAYS, sizeof *rl->slots);
    if (rl->slots == NULL) {
        free(rl);
        return FV_ENOMEM;
    }
    rl->burst = burst;
    rl->interval_ms = interval_ms;
    randombytes_buf(rl->key, sizeof rl->key);
    *ret = rl;
    return 0;
}

void fv_lograte_free(fv_lograte_t *rl)
{
    if (rl == NULL)
        return;
    free(rl->slots);
    free(rl);
}

uint64_t fv_lograte_suppressed_total(const fv_lograte_t *rl)
{
    return rl->total;
}

static bool lr_same(const lr_slot_t *s, uint64_t h, const char *peer, const char *event)
{
    return s->used && s->hash == h && strncmp(s->peer, peer, LR_NAME - 1) == 0 &&
           strncmp(s->event, event, LR_NAME - 1) == 0;
}

bool fv_lograte_allow(fv_lograte_t *rl, const char *peer, const char *event, uint64_t now_ms,
                      uint64_t *ret_suppressed)
{
    peer = peer != NULL ? peer : "";
    event = event != NULL ? event : "";
    /* hash of the kept prefixes, so the stored strings confirm a hit */
    uint8_t buf[2 * LR_NAME], h8[crypto_shorthash_BYTES];
    size_t pl = strnlen(peer, LR_NAME - 1), el = strnlen(event, LR_NAME - 1);
    memcpy(buf, peer, pl);
    buf[pl] = 0;
    memcpy(buf + pl + 1, event, el);
    crypto_shorthash(h8, buf, pl + 1 + el, rl->key);
    uint64_t h;
    memcpy(&h, h8, sizeof h);
    lr_slot_t *set = &rl->slots[(h % rl->n_sets) * LR_WAYS], *s = NULL, *lru = &set[0];
    for (size_t i = 0; i < LR_WAYS && s == NULL; i++) {
        if (lr_same(&set[i], h, peer, event))
            s = &set[i];
        else if (!set[i].used || (lru->used && set[i].last_ms < lru->last_ms))
            lru = &set[i];
    }
    if (s == NULL) {
        s = lru;
        memset(s, 0, sizeof *s);
        s->used = true;
        s->hash = h;
        memcpy(s->peer, peer, pl);
        memcpy(s->event, event, el);
        s->tat_ms = now_ms;
    }
    s->last_ms = now_ms;
    uint64_t tolerance = (uint64_t)(rl->burst - 1) * rl->interval_ms;
    if (s->tat_ms > now_ms + tolerance) {
        s->suppressed++;
        rl->total++;
        return false;
    }
    s->tat_ms = (s->tat_ms > now_ms ? s->tat_ms : now_ms) + rl->interval_ms;
    *ret_suppressed = s->suppressed;
    s->suppressed = 0;
    return true;
}
