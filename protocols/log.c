/* log.c - the daemons' JSON log lines (fv_log.h).
 *
 * The line is built in full (json_dumps) and written with one fputs + fflush, so lines
 * from two threads never interleave within a line. A field named like one of the three
 * fixed keys (ts, level, event) is dropped rather than allowed to replace it.
 */
#include "fv_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
