/* test_state.c - the coordinator's durable state store (coordinator/fv_state.h).
 *
 * Each case works in its own mkdtemp directory: open/close/reopen keeps data; a second
 * opener (same process, and a forked child) gets UV_EBUSY naming the holder's pid; model
 * files round-trip, are content-addressed (SHA-256 known answers), are not rewritten, and
 * a flipped byte is FV_ECORRUPT; jobs (add, duplicate, prefix resolution, next-job order,
 * status times); checkpoints round-trip (NaN metric, NULL stats); rounds, versions and a
 * version's lineage; the audit outbox (order, a failing callback keeps its row);
 * ROLLBACK; crash safety with forked children SIGKILLed (by the parent) before and after
 * COMMIT; a database from a newer fedvault (FV_EVERSION) and a file that is not one.
 * Schema version 2 (distillation): distill rounds, student/distilled versions, reports,
 * a job's student, the checkpoint's distill members; a version-1 database (built here
 * with the version-1 DDL, kept verbatim below) migrated with every row intact, and a
 * migration that fails at its last step leaving version 1 untouched.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>
#include <uv.h>

#include "fv_crypto.h"
#include "fv_state.h"
#include "fv_test.h"

#define T0 1795909200123LL /* 2026-11-28T23:40:00.123Z */
#define SPEC "{\"rounds\": 3, \"lr\": 0.05}"

static const char *new_dir(void)
{
    static char bufs[16][64];
    static int n;
    char *p = bufs[n++ % 16];
    snprintf(p, 64, "/tmp/fv-state-XXXXXX");
    CHECK(mkdtemp(p) != NULL);
    return p;
}

static fv_state_t *open_ok(const char *dir)
{
    fv_diag_t d = {{0}};
    fv_state_t *s = NULL;
    CHECK_OK(fv_state_open(dir, &s, &d), &d);
    CHECK(s != NULL);
    return s;
}

/* A 64-hex id: prefix, then zeros, then a last digit. */
static const char *mkid(const char *prefix, char last)
{
    static char bufs[8][65];
    static int n;
    char *p = bufs[n++ % 8];
    memset(p, '0', 64);
    memcpy(p, prefix, strlen(prefix));
    p[63] = last;
    p[64] = '\0';
    return p;
}

static const char *jstr(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static long long jint(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    CHECK(json_is_integer(v));
    return (long long)json_integer_value(v);
}

static void check_null(const json_t *o, const char *k)
{
    if (!json_is_null(json_object_get(o, k)))
        FV__FAIL("member \"%s\" is not null", k);
}

static void rm_rf(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* ---- open / reopen / lock ------------------------------------------------------------ */

static void test_open_reopen(void)
{
    const char *dir = new_dir();
    char path[256];
    fv_diag_t d = {{0}};
    fv_state_t *s = open_ok(dir);
    CHECK_STR_EQ(fv_state_dir(s), dir);
    CHECK_OK(fv_state_agent_seen(s, "bank-b", "0A1b", T0, &d), &d);
    CHECK_OK(fv_state_agent_seen(s, "bank-a", "01", T0, &d), &d);
    CHECK_OK(fv_state_agent_seen(s, "bank-a", "02", T0 + 1000, &d), &d);
    CHECK_OK(fv_state_job_add(s, mkid("aa", '1'), SPEC, "first", "alice", T0, &d), &d);
    CHECK_INT_EQ(fv_state_agent_seen(s, "", "01", T0, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_state_agent_seen(s, "bank-x", "zz", T0, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_state_agent_seen(s, "bank-\xff", "01", T0, &d), FV_EINVAL);
    fv_state_close(s);
    fv_state_close(NULL);

    struct stat st;
    CHECK(stat(dir, &st) == 0);
    snprintf(path, sizeof path, "%s/models", dir);
    CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_UINT_EQ(st.st_mode & 0777, 0700);
    snprintf(path, sizeof path, "%s/state.db", dir);
    CHECK(stat(path, &st) == 0);
    CHECK_UINT_EQ(st.st_mode & 0777, 0600);

    s = open_ok(dir);
    json_t *a = NULL;
    CHECK_OK(fv_state_agents_json(s, &a, &d), &d);
    CHECK_UINT_EQ(json_array_size(a), 2);
    json_t *a0 = json_array_get(a, 0), *a1 = json_array_get(a, 1);
    CHECK_STR_EQ(jstr(a0, "name"), "bank-a");
    CHECK_STR_EQ(jstr(a0, "serial"), "02");
    CHECK_STR_EQ(jstr(a0, "first_seen"), "2026-11-28T23:40:00.123Z");
    CHECK_STR_EQ(jstr(a0, "last_seen"), "2026-11-28T23:40:01.123Z");
    CHECK_STR_EQ(jstr(a1, "name"), "bank-b");
    CHECK_STR_EQ(jstr(a1, "serial"), "0A1b");
    json_decref(a);
    char status[16];
    CHECK_OK(fv_state_job_status(s, mkid("aa", '1'), status, &d), &d);
    CHECK_STR_EQ(status, "queued");
    fv_state_close(s);
    rm_rf(dir);
}

static void test_busy(void)
{
    const char *dir = new_dir();
    char want[128];
    fv_diag_t d = {{0}};
    fv_state_t *s2 = NULL;
    int go[2];
    snprintf(want, sizeof want, "%s is in use by another coordinator (pid %ld)", dir,
             (long)getpid());

    /* The child is forked before the parent opens anything (an SQLite connection must
     * not cross a fork); it waits until the parent holds the directory. */
    CHECK(pipe(go) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1)
            _exit(2);
        fv_diag_t cd = {{0}};
        fv_state_t *cs = NULL;
        int r = fv_state_open(dir, &cs, &cd);
        if (r != UV_EBUSY || strstr(cd.msg, want) == NULL) {
            fprintf(stderr, "child: fv_state_open returned %d (%s): %s\n", r, fv_err_name(r),
                    cd.msg);
            fv_state_close(cs);
            _exit(1);
        }
        _exit(0);
    }
    close(go[0]);
    fv_state_t *s = open_ok(dir);
    CHECK(write(go[1], "g", 1) == 1);
    close(go[1]);
    int wst = 0;
    CHECK(waitpid(pid, &wst, 0) == pid);
    CHECK(WIFEXITED(wst));
    CHECK_INT_EQ(WEXITSTATUS(wst), 0);

    /* flock locks belong to the open file description: a second open in this process
     * conflicts too. */
    CHECK_INT_EQ(fv_state_open(dir, &s2, &d), UV_EBUSY);
    CHECK(s2 == NULL);
    CHECK_CONTAINS(d.msg, want);

    fv_state_close(s);
    s = open_ok(dir); /* released on close */
    fv_state_close(s);
    rm_rf(dir);
}

/* ---- model files --------------------------------------------------------------------- */

static void test_models(void)
{
    const char *dir = new_dir();
    fv_diag_t d = {{0}};
    fv_state_t *s = open_ok(dir);
    char sha[65], path[512], want_path[512];
    uint8_t *got = NULL;
    size_t got_len = 0;

    CHECK_OK(fv_state_model_put(s, (const uint8_t *)"abc", 3, sha, &d), &d);
    CHECK_STR_EQ(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_OK(fv_state_model_path(s, sha, path, sizeof path), NULL);
    snprintf(want_path, sizeof want_path, "%s/models/%s.fvm", dir, sha);
    CHECK_STR_EQ(path, want_path);
    CHECK_INT_EQ(fv_state_model_path(s, sha, path, strlen(want_path)), FV_ETOOBIG);
    CHECK_OK(fv_state_model_path(s, sha, path, strlen(want_path) + 1), NULL);
    CHECK_INT_EQ(
        fv_state_model_path(s, "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                            path, sizeof path),
        FV_EINVAL);
    CHECK_INT_EQ(fv_state_model_path(s, "ba78", path, sizeof path), FV_EINVAL);

    CHECK_OK(fv_state_model_read(s, sha, &got, &got_len, &d), &d);
    CHECK_UINT_EQ(got_len, 3);
    CHECK(memcmp(got, "abc", 3) == 0);
    free(got);

    /* Idempotent: same name, and the file is not rewritten (same inode). */
    struct stat st1, st2;
    CHECK(stat(want_path, &st1) == 0);
    CHECK_UINT_EQ(st1.st_mode & 0777, 0600);
    char sha2[65];
    CHECK_OK(fv_state_model_put(s, (const uint8_t *)"abc", 3, sha2, &d), &d);
    CHECK_STR_EQ(sha2, sha);
    CHECK(stat(want_path, &st2) == 0);
    CHECK_UINT_EQ(st1.st_ino, st2.st_ino);

    /* The empty model. */
    CHECK_OK(fv_state_model_put(s, NULL, 0, sha2, &d), &d);
    CHECK_STR_EQ(sha2, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_OK(fv_state_model_read(s, sha2, &got, &got_len, &d), &d);
    CHECK_UINT_EQ(got_len, 0);
    free(got);

    /* A bigger one, read back. */
    size_t big_len = 1000003;
    uint8_t *big = malloc(big_len);
    CHECK(big != NULL);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 2654435761u >> 13);
    char big_sha[65];
    CHECK_OK(fv_state_model_put(s, big, big_len, big_sha, &d), &d);
    CHECK_OK(fv_state_model_read(s, big_sha, &got, &got_len, &d), &d);
    CHECK_UINT_EQ(got_len, big_len);
    CHECK(memcmp(got, big, big_len) == 0);
    free(got);
    free(big);

    /* One flipped byte: FV_ECORRUPT naming the file. */
    FILE *f = fopen(want_path, "r+b");
    CHECK(f != NULL);
    CHECK(fputc('X', f) == 'X');
    CHECK(fclose(f) == 0);
    got = NULL;
    CHECK_INT_EQ(fv_state_model_read(s, sha, &got, &got_len, &d), FV_ECORRUPT);
    CHECK(got == NULL);
    CHECK_CONTAINS(d.msg, want_path);

    /* Missing: UV_ENOENT. Bad name: FV_EINVAL. */
    CHECK_INT_EQ(fv_state_model_read(s, mkid("ee", '1'), &got, &got_len, &d), UV_ENOENT);
    CHECK_INT_EQ(fv_state_model_read(s, "../state", &got, &got_len, &d), FV_EINVAL);

    /* A temporary file left by a crashed put is removed by the next open. */
    fv_state_close(s);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/models/%s.fvm.tmp", dir, mkid("cc", '2'));
    f = fopen(tmp, "wb");
    CHECK(f != NULL);
    CHECK(fclose(f) == 0);
    s = open_ok(dir);
    CHECK(access(tmp, F_OK) != 0 && errno == ENOENT);
    CHECK(access(want_path, F_OK) == 0); /* only temporary files */
    fv_state_close(s);
    rm_rf(dir);
}

/* ---- jobs ---------------------------------------------------------------------------- */

static void test_jobs(void)
{
    const char *dir = new_dir();
    fv_diag_t d = {{0}};
    fv_state_t *s = open_ok(dir);
    char id[65], status[16], *spec = NULL;
    const char *a = mkid("abcd00", '1'), *b = mkid("abcd01", '2'), *c = mkid("1234", '3');

    CHECK_INT_EQ(fv_state_job_next(s, id, &spec, &d), UV_ENOENT);
    CHECK_OK(fv_state_job_add(s, a, SPEC, "job a", "alice", T0, &d), &d);
    CHECK_OK(fv_state_job_add(s, b, "{\"n\":2}", NULL, NULL, T0 + 1, &d), &d);
    CHECK_OK(fv_state_job_add(s, c, "{}", "job c", "carol", T0 + 2, &d), &d);
    CHECK_INT_EQ(fv_state_job_add(s, a, SPEC, "again", "alice", T0, &d), FV_EDUP);
    CHECK_CONTAINS(d.msg, a);
    CHECK_INT_EQ(fv_state_job_add(s, mkid("ff", '1'), "{\"x\":", NULL, NULL, T0, &d), FV_EPARSE);
    CHECK_INT_EQ(fv_state_job_add(s, mkid("ff", '1'), "[1]", NULL, NULL, T0, &d), FV_ESCHEMA);
    CHECK_INT_EQ(fv_state_job_add(s, "ABCD", SPEC, NULL, NULL, T0, &d), FV_EINVAL);

    /* Prefixes. */
    CHECK_OK(fv_state_job_resolve(s, "1234", id, &d), &d);
    CHECK_STR_EQ(id, c);
    CHECK_OK(fv_state_job_resolve(s, "ABCD01", id, &d), &d); /* uppercase accepted */
    CHECK_STR_EQ(id, b);
    CHECK_OK(fv_state_job_resolve(s, a, id, &d), &d);
    CHECK_STR_EQ(id, a);
    CHECK_INT_EQ(fv_state_job_resolve(s, "abcd", id, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "job prefix 'abcd' is ambiguous (2 jobs)");
    CHECK_INT_EQ(fv_state_job_resolve(s, "ffff", id, &d), UV_ENOENT);
    CHECK_INT_EQ(fv_state_job_resolve(s, "zzzz", id, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_state_job_resolve(s, "abc", id, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_state_job_resolve(s, "abcd%", id, &d), FV_EINVAL);

    /* Next: the oldest queued, then a running one before any queued one. */
    CHECK_OK(fv_state_job_next(s, id, &spec, &d), &d);
    CHECK_STR_EQ(id, a);
    CHECK_STR_EQ(spec, SPEC);
    free(spec);
    CHECK_OK(fv_state_job_set_status(s, b, "running", NULL, T0 + 10, &d), &d);
    CHECK_OK(fv_state_job_next(s, id, &spec, &d), &d);
    CHECK_STR_EQ(id, b);
    CHECK_STR_EQ(spec, "{\"n\":2}");
    free(spec);
    CHECK_OK(fv_state_job_status(s, b, status, &d), &d);
    CHECK_STR_EQ(status, "running");

    /* started is set once; finished by done/failed/aborted. */
    CHECK_OK(fv_state_job_set_status(s, b, "running", NULL, T0 + 20, &d), &d);
    CHECK_OK(fv_state_job_set_status(s, b, "failed", "round 3: FV_ETHRESHOLD", T0 + 30, &d), &d);
    CHECK_OK(fv_state_job_set_status(s, a, "aborted", "by alice", T0 + 40, &d), &d);
    CHECK_OK(fv_state_job_next(s, id, &spec, &d), &d);
    CHECK_STR_EQ(id, c);
    free(spec);
    CHECK_INT_EQ(fv_state_job_set_status(s, mkid("99", '9'), "done", NULL, T0, &d), UV_ENOENT);
    CHECK_INT_EQ(fv_state_job_set_status(s, a, "paused", NULL, T0, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_state_job_status(s, mkid("99", '9'), status, &d), UV_ENOENT);

    json_t *jobs = NULL;
    CHECK_OK(fv_state_jobs_json(s, &jobs, &d), &d);
    CHECK_UINT_EQ(json_array_size(jobs), 3);
    json_t *ja = json_array_get(jobs, 0), *jb = json_array_get(jobs, 1),
           *jc = json_array_get(jobs, 2);
    CHECK_STR_EQ(jstr(ja, "id"), a);
    CHECK_STR_EQ(jstr(ja, "name"), "job a");
    CHECK_STR_EQ(jstr(ja, "status"), "aborted");
    CHECK_STR_EQ(jstr(ja, "submitted_by"), "alice");
    CHECK_STR_EQ(jstr(ja, "submitted"), "2026-11-28T23:40:00.123Z");
    check_null(ja, "started");
    CHECK_STR_EQ(jstr(ja, "finished"), "2026-11-28T23:40:00.163Z");
    CHECK_STR_EQ(jstr(ja, "why"), "by alice");
    CHECK_STR_EQ(jstr(jb, "id"), b);
    check_null(jb, "name");
    check_null(jb, "submitted_by");
    CHECK_STR_EQ(jstr(jb, "status"), "failed");
    CHECK_STR_EQ(jstr(jb, "started"), "2026-11-28T23:40:00.133Z");
    CHECK_STR_EQ(jstr(jb, "finished"), "2026-11-28T23:40:00.153Z");
    CHECK_STR_EQ(jstr(jb, "why"), "round 3: FV_ETHRESHOLD");
    CHECK_INT_EQ(jint(jb, "rounds_done"), 0);
    CHECK_INT_EQ(jint(jb, "rounds_failed"), 0);
    check_null(jb, "final_version");
    CHECK_STR_EQ(jstr(jc, "id"), c);
    check_null(jc, "started");
    check_null(jc, "finished");
    check_null(jc, "why");
    json_decref(jobs);

    /* Re-queued: finished cleared, started kept. */
    CHECK_OK(fv_state_job_set_status(s, b, "queued", NULL, T0 + 50, &d), &d);
    json_t *one = NULL;
    CHECK_OK(fv_state_job_json(s, b, &one, &d), &d);
    check_null(one, "finished");
    CHECK_STR_EQ(jstr(one, "started"), "2026-11-28T23:40:00.133Z");
    CHECK_INT_EQ(jint(json_object_get(one, "spec"), "n"), 2);
    CHECK_UINT_EQ(json_array_size(json_object_get(one, "rounds")), 0);
    CHECK_UINT_EQ(json_array_size(json_object_get(one, "agents")), 0);
    check_null(one, "privacy"); /* no "privacy" section in its spec */
    json_decref(one);
    /* A job with differential privacy: the view shows the spec's section, 0s as null. */
    const char *dp = mkid("dd", '1');
    CHECK_OK(fv_state_job_add(s, dp,
                              "{\"rounds\":2,\"privacy\":{\"mode\":\"distributed\",\"epsilon\":0.0,"
                              "\"noise_multiplier\":1.1,\"delta\":1e-05,\"clip\":1.0,"
                              "\"sample_rate\":0.05,\"min_honest\":3,\"outside_budget\":"
                              "[\"stats\",\"metrics\"]}}",
                              "dp", "alice", T0 + 60, &d),
             &d);
    CHECK_OK(fv_state_job_json(s, dp, &one, &d), &d);
    {
        json_t *pv = json_object_get(one, "privacy");
        char *txt = json_dumps(pv, JSON_COMPACT | JSON_PRESERVE_ORDER);
        CHECK_STR_EQ(
            txt,
            "{\"mode\":\"distributed\",\"epsilon\":null,\"noise_multiplier\":1.1000000000000001,"
            "\"delta\":1.0000000000000001e-5,\"clip\":1.0,\"sample_rate\":0.050000000000000003,"
            "\"min_honest\":3,\"outside_budget\":[\"stats\",\"metrics\"]}");
        free(txt);
    }
    json_decref(one);
    CHECK_INT_EQ(fv_state_job_json(s, mkid("99", '9'), &one, &d), UV_ENOENT);
    fv_state_close(s);
    rm_rf(dir);
}

/* ---- checkpoints --------------------------------------------------------------------- */

static void test_ckpt(void)
{
    const char *dir = new_dir();
    fv_diag_t d = {{0}};
    fv_state_t *s = open_ok(dir);
    const char *job = mkid("cafe", '1');
    uint32_t stats[] = {1, 2, 0xffffffffu, 0x01020304u};
    uint8_t opt[] = {9, 8, 7, 0, 6};

    CHECK_OK(fv_state_job_add(s, job, SPEC, NULL, NULL, T0, &d), &d);
    fv_state_ckpt_t ck = {
        .next_round = 7,
        .rounds_done = 5,
        .rounds_failed = 1,
        .n_ref = 123456,
        .stats_sum = stats,
        .stats_words = 4,
        .global_version = 6,
        .opt_state = opt,
        .opt_len = sizeof opt,
        .best_version = 4,
        .best_metric = NAN,
        .best_round = 4,
        .since_best = 2,
    };
    memcpy(ck.global_sha, mkid("aa", '1'), 65);
    memcpy(ck.best_sha, mkid("bb", '2'), 65);
    fv_state_ckpt_t got = {0};
    CHECK_INT_EQ(fv_state_ckpt_load(s, job, &got, &d), UV_ENOENT);
    CHECK_OK(fv_state_ckpt_save(s, job, &ck, &d), &d);
    fv_state_close(s);
    s = open_ok(dir);
    CHECK_OK(fv_state_ckpt_load(s, job, &got, &d), &d);
    CHECK_UINT_EQ(got.next_round, 7);
    CHECK_UINT_EQ(got.rounds_done, 5);
    CHECK_UINT_EQ(got.rounds_failed, 1);
    CHECK_UINT_EQ(got.n_ref, 123456);
    CHECK_UINT_EQ(got.stats_words, 4);
    CHECK(got.stats_sum != NULL);
    for (size_t i = 0; i < 4; i++)
        CHECK_UINT_EQ(got.stats_sum[i], stats[i]);
    CHECK_STR_EQ(got.global_sha, ck.global_sha);
    CHECK_INT_EQ(got.global_version, 6);
    CHECK_UINT_EQ(got.opt_len, sizeof opt);
    CHECK(memcmp(got.opt_state, opt, sizeof opt) == 0);
    CHECK_STR_EQ(got.best_sha, ck.best_sha);
    CHECK_INT_EQ(got.best_version, 4);
    CHECK(isnan(got.best_metric));
    CHECK_UINT_EQ(got.best_round, 4);
    CHECK_UINT_EQ(got.since_best, 2);
    CHECK(!got.distill);
    CHECK_STR_EQ(got.teacher_sha, "");
    CHECK_INT_EQ(got.teacher_version, 0);
    CHECK(got.teacher_json == NULL);
    fv_state_ckpt_close(&got);
    CHECK(got.stats_sum == NULL && got.opt_state == NULL);
    fv_state_ckpt_close(NULL);

    /* The distillation members round-trip; teacher_json byte for byte. */
    char teacher[] = "{\"arch\": \"mlp:128,64\", \"roc_auc\": 0.75}";
    fv_state_ckpt_t dk = ck;
    dk.distill = true;
    memcpy(dk.teacher_sha, mkid("7e", '3'), 65);
    dk.teacher_version = 22;
    dk.teacher_json = teacher;
    CHECK_OK(fv_state_ckpt_save(s, job, &dk, &d), &d);
    fv_state_close(s);
    s = open_ok(dir);
    CHECK_OK(fv_state_ckpt_load(s, job, &got, &d), &d);
    CHECK(got.distill);
    CHECK_STR_EQ(got.teacher_sha, dk.teacher_sha);
    CHECK_INT_EQ(got.teacher_version, 22);
    CHECK(got.teacher_json != NULL && got.teacher_json != teacher);
    CHECK_STR_EQ(got.teacher_json, teacher);
    CHECK_UINT_EQ(got.next_round, 7); /* and the rest as before */
    CHECK_UINT_EQ(got.stats_sum[3], 0x01020304u);
    fv_state_ckpt_close(&got);
    CHECK(got.teacher_json == NULL);
    dk.teacher_json = "[1]";
    CHECK_INT_EQ(fv_state_ckpt_save(s, job, &dk, &d), FV_ESCHEMA);
    dk.teacher_json = "{\"a\":";
    CHECK_INT_EQ(fv_state_ckpt_save(s, job, &dk, &d), FV_EPARSE);
    dk.teacher_json = NULL;
    memcpy(dk.teacher_sha, "7E", 3);
    CHECK_INT_EQ(fv_state_ckpt_save(s, job, &dk, &d), FV_EINVAL);

    /* Replaced: before the stats round (NULL stats, no shas), a finite metric. */
    fv_state_ckpt_t ck0 = {.best_metric = 0.8125, .since_best = 0xffffffffu};
    CHECK_OK(fv_state_ckpt_save(s, job, &ck0, &d), &d);
    CHECK_OK(fv_state_ckpt_load(s, job, &got, &d), &d);
    CHECK(got.stats_sum == NULL);
    CHECK_UINT_EQ(got.stats_words, 0);
    CHECK(got.opt_state == NULL);
    CHECK_UINT_EQ(got.opt_len, 0);
    CHECK_STR_EQ(got.global_sha, "");
    CHECK_STR_EQ(got.best_sha, "");
    CHECK_NEAR(got.best_metric, 0.8125, 0);
    CHECK_UINT_EQ(got.since_best, 0xffffffffu);
    CHECK(!got.distill);
    CHECK_STR_EQ(got.teacher_sha, "");
    CHECK(got.teacher_json == NULL);
    fv_state_ckpt_close(&got);

    /* Bad input. */
    fv_state_ckpt_t bad = ck0;
    bad.next_round = UINT64_MAX;
    CHECK_INT_EQ(fv_state_ckpt_save(s, job, &bad, &d), FV_ERANGE);
    bad = ck0;
    bad.stats_words = 3;
    CHECK_INT_EQ(fv_state_ckpt_save(s, job, &bad, &d), FV_EINVAL);
    bad = ck0;
    memcpy(bad.global_sha, "abc", 4);
    CHECK_INT_EQ(fv_state_ckpt_save(s, job, &bad, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_state_ckpt_save(s, mkid("dd", '1'), &ck0, &d), UV_ENOENT);
    fv_state_close(s);
    rm_rf(dir);
}

/* ---- rounds, versions, lineage ------------------------------------------------------ */

static void add_round(fv_state_t *s, const char *job, uint64_t round, uint32_t attempt,
                      const char *kind, const char *status, const char *cohort, const char *in,
                      const char *out)
{
    fv_diag_t d = {{0}};
    fv_state_round_t r = {
        .job = job,
        .round = round,
        .attempt = attempt,
        .kind = kind,
        .status = status,
        .why = strcmp(status, "ok") == 0 ? NULL : "3 of 5 agents answered, threshold 4",
        .cohort_json = cohort,
        .contributors_json = cohort,
        .metrics_json = strcmp(status, "ok") == 0 ? "{\"loss\": 0.5}" : NULL,
        .model_in_sha = in,
        .model_out_sha = out,
        .started_ms = T0 + (int64_t)round * 1000,
        .finished_ms = T0 + (int64_t)round * 1000 + 500,
    };
    CHECK_OK(fv_state_round_add(s, &r, &d), &d);
}

static void test_rounds_versions(void)
{
    const char *dir = new_dir();
    fv_diag_t d = {{0}};
    fv_state_t *s = open_ok(dir);
    const char *job = mkid("beef", '1');
    char m1[65], m2[65], sha[65];
    const char *fp_a1 = mkid("a1", '1'), *fp_a2 = mkid("a2", '2'), *fp_b = mkid("b0", '3');

    CHECK_OK(fv_state_job_add(s, job, SPEC, "lineage", "alice", T0, &d), &d);
    CHECK_OK(fv_state_model_put(s, (const uint8_t *)"model one", 9, m1, &d), &d);
    CHECK_OK(fv_state_model_put(s, (const uint8_t *)"model two!", 10, m2, &d), &d);

    add_round(s, job, 0, 1, "stats", "ok", "[\"bank-b\",\"bank-a\"]", NULL, NULL);
    add_round(s, job, 1, 1, "train", "FV_ETHRESHOLD", "[\"bank-x\"]", m1, NULL);
    add_round(s, job, 1, 2, "train", "ok", "[\"bank-a\", \"bank-c\"]", m1, m2);
    add_round(s, job, 2, 1, "train", "ok", "[\"bank-d\"]", m2, m2);
    /* the attempts recorded per round number: a retry takes the next one */
    uint32_t tries = 99;
    CHECK_OK(fv_state_round_attempts(s, job, 1, &tries, &d), &d);
    CHECK_UINT_EQ(tries, 2);
    CHECK_OK(fv_state_round_attempts(s, job, 2, &tries, &d), &d);
    CHECK_UINT_EQ(tries, 1);
    CHECK_OK(fv_state_round_attempts(s, job, 7, &tries, &d), &d);
    CHECK_UINT_EQ(tries, 0);
    CHECK_INT_EQ(fv_state_round_attempts(s, "nothex", 1, &tries, &d), FV_EINVAL);

    fv_state_round_t r = {
        .job = job,
        .round = 1,
        .attempt = 2,
        .kind = "train",
        .status = "ok",
        .cohort_json = "[]",
        .contributors_json = "[]",
    };
    CHECK_INT_EQ(fv_state_round_add(s, &r, &d), FV_EDUP);
    r.attempt = 3;
    r.cohort_json = "[\"a\",";
    CHECK_INT_EQ(fv_state_round_add(s, &r, &d), FV_EPARSE);
    r.cohort_json = "[\"a\", 1]";
    CHECK_INT_EQ(fv_state_round_add(s, &r, &d), FV_ESCHEMA);
    r.cohort_json = "[]";
    r.metrics_json = "[]";
    CHECK_INT_EQ(fv_state_round_add(s, &r, &d), FV_ESCHEMA);
    r.metrics_json = NULL;
    r.kind = "eval";
    CHECK_INT_EQ(fv_state_round_add(s, &r, &d), FV_EINVAL);
    r.kind = "train";
    r.model_in_sha = "xyz";
    CHECK_INT_EQ(fv_state_round_add(s, &r, &d), FV_EINVAL);
    r.model_in_sha = NULL;
    r.job = mkid("dead", '0');
    CHECK_INT_EQ(fv_state_round_add(s, &r, &d), UV_ENOENT);

    CHECK_OK(fv_state_job_agent(s, job, "bank-a", fp_a1, 100, T0, &d), &d);
    CHECK_OK(fv_state_job_agent(s, job, "bank-a", fp_a2, 150, T0 + 5, &d), &d); /* latest wins */
    CHECK_OK(fv_state_job_agent(s, job, "bank-b", fp_b, 200, T0, &d), &d);
    CHECK_INT_EQ(fv_state_job_agent(s, mkid("dead", '0'), "bank-a", fp_b, 1, T0, &d), UV_ENOENT);
    CHECK_INT_EQ(fv_state_job_agent(s, job, "bank-a", "nothex", 1, T0, &d), FV_EINVAL);

    int64_t v1 = 0, v2 = 0, v3 = 0;
    CHECK_OK(fv_state_version_add(s, job, 1, m1, 0, "global", "fedvault 0.1.0 (abc123)", T0 + 2000,
                                  &v1, &d),
             &d);
    CHECK_OK(fv_state_version_add(s, job, 2, m2, v1, "final", "fedvault 0.1.0 (abc123)", T0 + 3000,
                                  &v2, &d),
             &d);
    CHECK_INT_EQ(v1, 1);
    CHECK_INT_EQ(v2, 2);
    CHECK_INT_EQ(fv_state_version_add(s, job, 2, mkid("00", '7'), v1, "global", "p", T0, &v3, &d),
                 UV_ENOENT);
    CHECK_CONTAINS(d.msg, "no such model file");
    CHECK_INT_EQ(fv_state_version_add(s, job, 2, m2, 99, "global", "p", T0, &v3, &d), UV_ENOENT);
    CHECK_INT_EQ(fv_state_version_add(s, job, 2, m2, 0, "best", "p", T0, &v3, &d), FV_EINVAL);
    CHECK_INT_EQ(v3, 0);
    CHECK_OK(fv_state_version_sha(s, v2, sha, &d), &d);
    CHECK_STR_EQ(sha, m2);
    CHECK_INT_EQ(fv_state_version_sha(s, 42, sha, &d), UV_ENOENT);

    CHECK_INT_EQ(fv_state_job_set_final(s, job, 42, &d), UV_ENOENT);
    CHECK_OK(fv_state_job_set_final(s, job, v2, &d), &d);

    json_t *vs = NULL;
    CHECK_OK(fv_state_versions_json(s, &vs, &d), &d);
    CHECK_UINT_EQ(json_array_size(vs), 2);
    json_t *o1 = json_array_get(vs, 0), *o2 = json_array_get(vs, 1);
    CHECK_INT_EQ(jint(o1, "version"), 1);
    CHECK_STR_EQ(jstr(o1, "sha256"), m1);
    CHECK_STR_EQ(jstr(o1, "job"), job);
    CHECK_INT_EQ(jint(o1, "round"), 1);
    CHECK_STR_EQ(jstr(o1, "kind"), "global");
    check_null(o1, "parent");
    CHECK_STR_EQ(jstr(o1, "created"), "2026-11-28T23:40:02.123Z");
    CHECK_INT_EQ(jint(o1, "bytes"), 9);
    CHECK_STR_EQ(jstr(o1, "producer"), "fedvault 0.1.0 (abc123)");
    CHECK_INT_EQ(jint(o2, "parent"), 1);
    CHECK_INT_EQ(jint(o2, "bytes"), 10);
    CHECK_STR_EQ(jstr(o2, "kind"), "final");
    json_decref(vs);

    /* Lineage of version 1 (round 1): ok rounds 0 and 1 (attempt 2, not the failed
     * attempt 1), agents of those cohorts sorted, bank-c without a fingerprint. */
    json_t *v = NULL;
    CHECK_OK(fv_state_version_json(s, v1, &v, &d), &d);
    CHECK_STR_EQ(jstr(v, "sha256"), m1);
    json_t *lin = json_object_get(v, "lineage");
    CHECK(json_is_object(lin));
    check_null(lin, "parent");
    CHECK_STR_EQ(jstr(lin, "job"), job);
    CHECK_STR_EQ(jstr(lin, "producer"), "fedvault 0.1.0 (abc123)");
    CHECK_INT_EQ(jint(json_object_get(lin, "hyperparameters"), "rounds"), 3);
    check_null(lin, "privacy"); /* the job's spec has none */
    json_t *lr = json_object_get(lin, "rounds");
    CHECK_UINT_EQ(json_array_size(lr), 2);
    CHECK_INT_EQ(jint(json_array_get(lr, 0), "round"), 0);
    CHECK_STR_EQ(jstr(json_array_get(lr, 0), "kind"), "stats");
    CHECK_INT_EQ(jint(json_array_get(lr, 1), "round"), 1);
    CHECK_STR_EQ(jstr(json_array_get(lr, 1), "kind"), "train");
    json_t *coh = json_object_get(json_array_get(lr, 1), "cohort");
    CHECK_UINT_EQ(json_array_size(coh), 2);
    CHECK_STR_EQ(json_string_value(json_array_get(coh, 1)), "bank-c");
    CHECK(json_is_array(json_object_get(json_array_get(lr, 1), "contributors")));
    json_t *la = json_object_get(lin, "agents");
    CHECK_UINT_EQ(json_array_size(la), 3);
    CHECK_STR_EQ(jstr(json_array_get(la, 0), "name"), "bank-a");
    CHECK_STR_EQ(jstr(json_array_get(la, 0), "data_sha256"), fp_a2);
    CHECK_INT_EQ(jint(json_array_get(la, 0), "rows"), 150);
    CHECK_STR_EQ(jstr(json_array_get(la, 1), "name"), "bank-b");
    CHECK_STR_EQ(jstr(json_array_get(la, 1), "data_sha256"), fp_b);
    CHECK_STR_EQ(jstr(json_array_get(la, 2), "name"), "bank-c");
    check_null(json_array_get(la, 2), "data_sha256");
    check_null(json_array_get(la, 2), "rows");
    json_decref(v);

    /* Version 2 (final, round 2): all three ok rounds, four agents. */
    CHECK_OK(fv_state_version_json(s, v2, &v, &d), &d);
    lin = json_object_get(v, "lineage");
    CHECK_INT_EQ(jint(lin, "parent"), 1);
    CHECK_UINT_EQ(json_array_size(json_object_get(lin, "rounds")), 3);
    CHECK_UINT_EQ(json_array_size(json_object_get(lin, "agents")), 4);
    json_decref(v);
    CHECK_INT_EQ(fv_state_version_json(s, 42, &v, &d), UV_ENOENT);

    /* The job view: derived counts, round rows, agents. */
    json_t *j = NULL;
    CHECK_OK(fv_state_job_json(s, job, &j, &d), &d);
    CHECK_INT_EQ(jint(j, "rounds_done"), 2);
    CHECK_INT_EQ(jint(j, "rounds_failed"), 1);
    CHECK_INT_EQ(jint(j, "final_version"), 2);
    json_t *rounds = json_object_get(j, "rounds");
    CHECK_UINT_EQ(json_array_size(rounds), 4);
    json_t *r1 = json_array_get(rounds, 1);
    CHECK_INT_EQ(jint(r1, "round"), 1);
    CHECK_INT_EQ(jint(r1, "attempt"), 1);
    CHECK_STR_EQ(jstr(r1, "status"), "FV_ETHRESHOLD");
    CHECK_STR_EQ(jstr(r1, "why"), "3 of 5 agents answered, threshold 4");
    check_null(r1, "metrics");
    CHECK_STR_EQ(jstr(r1, "model_in"), m1);
    check_null(r1, "model_out");
    CHECK_STR_EQ(jstr(r1, "started"), "2026-11-28T23:40:01.123Z");
    CHECK_STR_EQ(jstr(r1, "finished"), "2026-11-28T23:40:01.623Z");
    json_t *r2 = json_array_get(rounds, 2);
    CHECK_INT_EQ(jint(r2, "attempt"), 2);
    check_null(r2, "why");
    CHECK_NEAR(json_real_value(json_object_get(json_object_get(r2, "metrics"), "loss")), 0.5, 0);
    CHECK_STR_EQ(jstr(r2, "model_out"), m2);
    CHECK(json_is_array(json_object_get(r2, "cohort")));
    json_t *ag = json_object_get(j, "agents");
    CHECK_UINT_EQ(json_array_size(ag), 2);
    CHECK_STR_EQ(jstr(json_array_get(ag, 0), "name"), "bank-a");
    CHECK_INT_EQ(jint(json_array_get(ag, 0), "rows"), 150);
    CHECK_STR_EQ(jstr(json_array_get(ag, 0), "accepted"), "2026-11-28T23:40:00.128Z");
    json_decref(j);

    /* A version of another job cannot be this job's final one. */
    const char *other = mkid("0f", '1');
    CHECK_OK(fv_state_job_add(s, other, SPEC, NULL, NULL, T0, &d), &d);
    CHECK_INT_EQ(fv_state_job_set_final(s, other, v2, &d), FV_EINVAL);
    fv_state_close(s);
    rm_rf(dir);
}

/* ---- outbox -------------------------------------------------------------------------- */

typedef struct drained {
    int64_t ids[16];
    char events[16][32];
    int n;
    int fail_at; /* return -7 when n reaches this (0: never) */
} drained_t;

static int drain_cb(int64_t id, const char *actor, const char *event, const char *details,
                    void *ctx)
{
    drained_t *dr = ctx;
    CHECK_STR_EQ(actor, "coordinator");
    if (dr->fail_at != 0 && dr->n + 1 == dr->fail_at)
        return -7;
    CHECK(dr->n < 16);
    dr->ids[dr->n] = id;
    snprintf(dr->events[dr->n], sizeof dr->events[0], "%s", event);
    if (strcmp(event, "job.submitted") == 0)
        CHECK_STR_EQ(details, "{\"job\": \"x\"}");
    else
        CHECK(details == NULL);
    dr->n++;
    return 0;
}

static void test_outbox(void)
{
    const char *dir = new_dir();
    fv_diag_t d = {{0}};
    fv_state_t *s = open_ok(dir);
    int64_t id1 = 0, id2 = 0, id3 = 0;

    CHECK_OK(fv_state_outbox_add(s, "coordinator", "job.submitted", "{\"job\": \"x\"}", &id1, &d),
             &d);
    CHECK_OK(fv_state_outbox_add(s, "coordinator", "round.done", NULL, &id2, &d), &d);
    CHECK_OK(fv_state_outbox_add(s, "coordinator", "round.failed", NULL, &id3, &d), &d);
    CHECK(id1 < id2 && id2 < id3);
    CHECK_INT_EQ(fv_state_outbox_add(s, "coordinator", "x", "[]", NULL, &d), FV_ESCHEMA);
    CHECK_INT_EQ(fv_state_outbox_add(s, "", "x", NULL, NULL, &d), FV_EINVAL);

    drained_t dr = {.fail_at = 2};
    CHECK_INT_EQ(fv_state_outbox_drain(s, drain_cb, &dr, &d), -7);
    CHECK_INT_EQ(dr.n, 1);
    CHECK_INT_EQ(dr.ids[0], id1);

    fv_state_close(s); /* the kept rows survive a restart */
    s = open_ok(dir);
    dr = (drained_t){.fail_at = 0};
    CHECK_OK(fv_state_outbox_drain(s, drain_cb, &dr, &d), &d);
    CHECK_INT_EQ(dr.n, 2);
    CHECK_INT_EQ(dr.ids[0], id2);
    CHECK_STR_EQ(dr.events[0], "round.done");
    CHECK_INT_EQ(dr.ids[1], id3);
    dr = (drained_t){.fail_at = 0};
    CHECK_OK(fv_state_outbox_drain(s, drain_cb, &dr, &d), &d);
    CHECK_INT_EQ(dr.n, 0);

    /* Ids keep increasing after deletes (AUTOINCREMENT). */
    int64_t id4 = 0;
    CHECK_OK(fv_state_outbox_add(s, "coordinator", "round.done", NULL, &id4, &d), &d);
    CHECK(id4 > id3);

    CHECK_OK(fv_state_begin(s, &d), &d);
    CHECK_INT_EQ(fv_state_outbox_drain(s, drain_cb, &dr, &d), FV_EINVAL);
    fv_state_rollback(s);
    fv_state_close(s);
    rm_rf(dir);
}

/* ---- transactions and crashes -------------------------------------------------------- */

static void test_rollback(void)
{
    const char *dir = new_dir();
    fv_diag_t d = {{0}};
    fv_state_t *s = open_ok(dir);
    const char *job = mkid("77", '1');
    char status[16];

    CHECK_INT_EQ(fv_state_commit(s, &d), FV_EINVAL);
    CHECK_OK(fv_state_begin(s, &d), &d);
    CHECK_INT_EQ(fv_state_in_transaction(s), 1);
    CHECK_INT_EQ(fv_state_begin(s, &d), FV_EINVAL);
    CHECK_OK(fv_state_job_add(s, job, SPEC, NULL, NULL, T0, &d), &d);
    CHECK_OK(fv_state_outbox_add(s, "coordinator", "job.submitted", NULL, NULL, &d), &d);
    CHECK_OK(fv_state_job_status(s, job, status, &d), &d); /* visible inside */
    fv_state_rollback(s);
    CHECK_INT_EQ(fv_state_in_transaction(s), 0);
    fv_state_rollback(s); /* no transaction: nothing happens */
    CHECK_INT_EQ(fv_state_job_status(s, job, status, &d), UV_ENOENT);
    drained_t dr = {.fail_at = 0};
    CHECK_OK(fv_state_outbox_drain(s, drain_cb, &dr, &d), &d);
    CHECK_INT_EQ(dr.n, 0);

    /* A failed call inside a transaction leaves the earlier ones. */
    CHECK_OK(fv_state_begin(s, &d), &d);
    CHECK_OK(fv_state_job_add(s, job, SPEC, NULL, NULL, T0, &d), &d);
    CHECK_INT_EQ(fv_state_job_add(s, job, SPEC, NULL, NULL, T0, &d), FV_EDUP);
    CHECK_OK(fv_state_commit(s, &d), &d);
    CHECK_OK(fv_state_job_status(s, job, status, &d), &d);

    /* Close with an open transaction rolls it back. */
    CHECK_OK(fv_state_begin(s, &d), &d);
    CHECK_OK(fv_state_job_set_status(s, job, "running", NULL, T0, &d), &d);
    fv_state_close(s);
    s = open_ok(dir);
    CHECK_OK(fv_state_job_status(s, job, status, &d), &d);
    CHECK_STR_EQ(status, "queued");
    fv_state_close(s);
    rm_rf(dir);
}

/* In a child: open dir, write a job, its checkpoint, a round and an audit record in one
 * transaction, commit if asked, then tell the parent (one byte on ready) and wait to be
 * SIGKILLed, holding everything open. */
static void crash_child(const char *dir, const char *job, int commit, int ready)
{
    fv_diag_t d = {{0}};
    fv_state_t *s = NULL;
    uint32_t stats[] = {11, 22, 33};
    if (fv_state_open(dir, &s, &d) != 0)
        goto fail;
    fv_state_ckpt_t ck = {.next_round = 2,
                          .rounds_done = 1,
                          .n_ref = 99,
                          .stats_sum = stats,
                          .stats_words = 3,
                          .best_metric = NAN};
    fv_state_round_t r = {.job = job,
                          .round = 0,
                          .attempt = 1,
                          .kind = "stats",
                          .status = "ok",
                          .cohort_json = "[\"bank-a\"]",
                          .contributors_json = "[\"bank-a\"]",
                          .started_ms = T0,
                          .finished_ms = T0 + 1};
    if (fv_state_begin(s, &d) != 0 || fv_state_job_add(s, job, SPEC, "crash", NULL, T0, &d) != 0 ||
        fv_state_job_set_status(s, job, "running", NULL, T0, &d) != 0 ||
        fv_state_round_add(s, &r, &d) != 0 || fv_state_ckpt_save(s, job, &ck, &d) != 0 ||
        fv_state_outbox_add(s, "coordinator", "round.done", NULL, NULL, &d) != 0)
        goto fail;
    if (commit && fv_state_commit(s, &d) != 0)
        goto fail;
    if (write(ready, "r", 1) != 1)
        goto fail;
    for (;;)
        pause();
fail:
    fprintf(stderr, "crash child: %s\n", d.msg);
    _exit(3);
}

/* The kill comes from outside, as a crash would: the child's exit path never runs. */
static void run_crash_child(const char *dir, const char *job, int commit)
{
    int ready[2];
    char c;
    CHECK(pipe(ready) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        crash_child(dir, job, commit, ready[1]);
    }
    close(ready[1]);
    ssize_t n = read(ready[0], &c, 1);
    close(ready[0]);
    CHECK(kill(pid, SIGKILL) == 0);
    int wst = 0;
    CHECK(waitpid(pid, &wst, 0) == pid);
    CHECK_INT_EQ(n, 1); /* 0: the child failed before it was ready (its stderr says why) */
    if (!WIFSIGNALED(wst))
        FV__FAIL("crash child exited with status %d instead of being killed",
                 WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
    CHECK_INT_EQ(WTERMSIG(wst), SIGKILL);
}

static void test_crash(void)
{
    const char *dir = new_dir();
    fv_diag_t d = {{0}};
    const char *lost = mkid("dead", '1'), *kept = mkid("600d", '2');
    char status[16], id[65], *spec = NULL;
    fv_state_ckpt_t ck = {0};
    drained_t dr = {.fail_at = 0};

    /* The first child creates the directory and schema (committed by its open), then
     * dies inside its transaction. */
    run_crash_child(dir, lost, 0);
    fv_state_t *s = open_ok(dir); /* the dead child's lock is gone with it */
    CHECK_INT_EQ(fv_state_job_status(s, lost, status, &d), UV_ENOENT);
    CHECK_INT_EQ(fv_state_ckpt_load(s, lost, &ck, &d), UV_ENOENT);
    CHECK_INT_EQ(fv_state_job_next(s, id, &spec, &d), UV_ENOENT);
    CHECK_OK(fv_state_outbox_drain(s, drain_cb, &dr, &d), &d);
    CHECK_INT_EQ(dr.n, 0);
    fv_state_close(s);

    run_crash_child(dir, kept, 1);
    s = open_ok(dir);
    CHECK_OK(fv_state_job_status(s, kept, status, &d), &d);
    CHECK_STR_EQ(status, "running");
    CHECK_OK(fv_state_job_next(s, id, &spec, &d), &d);
    CHECK_STR_EQ(id, kept);
    free(spec);
    CHECK_OK(fv_state_ckpt_load(s, kept, &ck, &d), &d);
    CHECK_UINT_EQ(ck.next_round, 2);
    CHECK_UINT_EQ(ck.n_ref, 99);
    CHECK_UINT_EQ(ck.stats_words, 3);
    CHECK_UINT_EQ(ck.stats_sum[2], 33);
    fv_state_ckpt_close(&ck);
    json_t *j = NULL;
    CHECK_OK(fv_state_job_json(s, kept, &j, &d), &d);
    CHECK_UINT_EQ(json_array_size(json_object_get(j, "rounds")), 1);
    json_decref(j);
    CHECK_OK(fv_state_outbox_drain(s, drain_cb, &dr, &d), &d);
    CHECK_INT_EQ(dr.n, 1);
    CHECK_STR_EQ(dr.events[0], "round.done");
    CHECK_INT_EQ(fv_state_job_status(s, lost, status, &d), UV_ENOENT);
    fv_state_close(s);
    rm_rf(dir);
}

/* ---- versions and damaged databases -------------------------------------------------- */

static void test_schema_version(void)
{
    const char *dir = new_dir();
    char path[256];
    fv_diag_t d = {{0}};
    fv_state_t *s = open_ok(dir);
    fv_state_close(s);

    snprintf(path, sizeof path, "%s/state.db", dir);
    sqlite3 *db = NULL;
    CHECK_INT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    int64_t v = 0;
    sqlite3_stmt *st = NULL;
    CHECK_INT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    CHECK_INT_EQ(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    CHECK_INT_EQ(v, FV_STATE_SCHEMA_VERSION);
    CHECK_INT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    CHECK_INT_EQ(sqlite3_step(st), SQLITE_ROW);
    CHECK_STR_EQ((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    CHECK_INT_EQ(sqlite3_exec(db, "PRAGMA user_version = 4", NULL, NULL, NULL), SQLITE_OK);
    CHECK_INT_EQ(sqlite3_close(db), SQLITE_OK);

    s = NULL;
    CHECK_INT_EQ(fv_state_open(dir, &s, &d), FV_EVERSION);
    CHECK(s == NULL);
    CHECK_CONTAINS(d.msg, path);
    CHECK_CONTAINS(d.msg, "newer fedvault");

    /* Not a database at all: FV_ECORRUPT naming the file. */
    const char *dir2 = new_dir();
    snprintf(path, sizeof path, "%s/state.db", dir2);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    for (int i = 0; i < 64; i++)
        fputs("this is not an SQLite database, ", f);
    CHECK(fclose(f) == 0);
    CHECK_INT_EQ(fv_state_open(dir2, &s, &d), FV_ECORRUPT);
    CHECK_CONTAINS(d.msg, path);
    CHECK(s == NULL);

    /* Hostile arguments. */
    CHECK_INT_EQ(fv_state_open("", &s, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_state_open("/proc/fv-no-such/dir", &s, &d), UV_ENOENT);
    rm_rf(dir);
    rm_rf(dir2);
}

/* ---- schema version 2: distillation ------------------------------------------------- */

static void test_distill(void)
{
    const char *dir = new_dir();
    fv_diag_t d = {{0}};
    fv_state_t *s = open_ok(dir);
    const char *job = mkid("d1", '1'), *other = mkid("d2", '2');
    char teacher[65], student[65];
    int64_t vg = 0, vf = 0, vs = 0, vd = 0, vo = 0;

    CHECK_OK(fv_state_job_add(s, job, SPEC, "distill", NULL, T0, &d), &d);
    CHECK_OK(fv_state_job_add(s, other, SPEC, NULL, NULL, T0, &d), &d);
    CHECK_OK(fv_state_model_put(s, (const uint8_t *)"teacher", 7, teacher, &d), &d);
    CHECK_OK(fv_state_model_put(s, (const uint8_t *)"student", 7, student, &d), &d);

    add_round(s, job, 0, 1, "stats", "ok", "[\"bank-a\"]", NULL, NULL);
    add_round(s, job, 1, 1, "train", "ok", "[\"bank-a\"]", NULL, teacher);
    add_round(s, job, 2, 1, "distill", "ok", "[\"bank-a\"]", teacher, student);
    add_round(s, job, 3, 1, "distill", "FV_ETHRESHOLD", "[\"bank-a\"]", teacher, NULL);
    add_round(s, job, 3, 2, "distill", "ok", "[\"bank-a\"]", teacher, student);

    const char *prod = "fedvault 0.2.0 (test)";
    CHECK_OK(fv_state_version_add(s, job, 1, teacher, 0, "global", prod, T0, &vg, &d), &d);
    CHECK_OK(fv_state_version_add(s, job, 1, teacher, vg, "final", prod, T0, &vf, &d), &d);
    CHECK_OK(fv_state_version_add(s, job, 2, student, vf, "student", prod, T0, &vs, &d), &d);
    CHECK_OK(fv_state_version_add(s, job, 3, student, vs, "distilled", prod, T0, &vd, &d), &d);
    CHECK_OK(fv_state_version_add(s, other, 0, student, 0, "distilled", prod, T0, &vo, &d), &d);
    CHECK_INT_EQ(fv_state_version_add(s, job, 3, student, 0, "teacher", prod, T0, NULL, &d),
                 FV_EINVAL);

    /* The job's student: only a 'distilled' version of the same job. */
    CHECK_INT_EQ(fv_state_job_set_student(s, job, vs, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "not 'distilled'");
    CHECK_INT_EQ(fv_state_job_set_student(s, job, vf, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_state_job_set_student(s, job, vo, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "belongs to another job");
    CHECK_INT_EQ(fv_state_job_set_student(s, job, 999, &d), UV_ENOENT);
    CHECK_INT_EQ(fv_state_job_set_student(s, mkid("d3", '3'), vd, &d), UV_ENOENT);
    CHECK_INT_EQ(fv_state_job_set_student(s, "D1", vd, &d), FV_EINVAL);
    CHECK_OK(fv_state_job_set_final(s, job, vf, &d), &d);
    CHECK_OK(fv_state_job_set_student(s, job, vd, &d), &d);

    json_t *j = NULL;
    CHECK_OK(fv_state_job_json(s, job, &j, &d), &d);
    CHECK_INT_EQ(jint(j, "rounds_done"), 1);
    CHECK_INT_EQ(jint(j, "distill_rounds_done"), 2);
    CHECK_INT_EQ(jint(j, "rounds_failed"), 1);
    CHECK_INT_EQ(jint(j, "final_version"), vf);
    CHECK_INT_EQ(jint(j, "student_version"), vd);
    CHECK_STR_EQ(jstr(json_array_get(json_object_get(j, "rounds"), 2), "kind"), "distill");
    json_decref(j);
    json_t *jobs = NULL;
    CHECK_OK(fv_state_jobs_json(s, &jobs, &d), &d);
    CHECK_INT_EQ(jint(json_array_get(jobs, 0), "student_version"), vd);
    CHECK_INT_EQ(jint(json_array_get(jobs, 0), "distill_rounds_done"), 2);
    check_null(json_array_get(jobs, 1), "student_version");
    CHECK_INT_EQ(jint(json_array_get(jobs, 1), "distill_rounds_done"), 0);
    json_decref(jobs);

    /* Reports: set, read back parsed, re-encoded compactly, replaced, removed. */
    const char *report = "{\"teacher\": {\"version\": 1, \"params\": 23681, \"latency_us\": "
                         "{\"batch_1\": 4.5}}, \"ratios\": {\"params\": 48.8},\n"
                         "  \"temperature\": 2.0, \"distill_rounds\": 10}";
    json_t *v = NULL;
    CHECK_OK(fv_state_version_json(s, vd, &v, &d), &d);
    check_null(v, "report");
    CHECK(json_is_false(json_object_get(v, "has_report")));
    json_decref(v);
    CHECK_OK(fv_state_version_set_report(s, vd, report, &d), &d);
    CHECK_OK(fv_state_version_json(s, vd, &v, &d), &d);
    CHECK_STR_EQ(jstr(v, "kind"), "distilled");
    CHECK(json_is_true(json_object_get(v, "has_report")));
    json_t *rep = json_object_get(v, "report");
    CHECK(json_is_object(rep));
    CHECK_INT_EQ(jint(json_object_get(rep, "teacher"), "params"), 23681);
    CHECK_NEAR(json_number_value(json_object_get(
                   json_object_get(json_object_get(rep, "teacher"), "latency_us"), "batch_1")),
               4.5, 0);
    CHECK_INT_EQ(jint(rep, "distill_rounds"), 10);
    json_decref(v);
    CHECK_OK(fv_state_versions_json(s, &v, &d), &d);
    CHECK(json_is_false(json_object_get(json_array_get(v, 0), "has_report")));
    CHECK(json_is_true(json_object_get(json_array_get(v, 3), "has_report")));
    CHECK(json_object_get(json_array_get(v, 3), "report") == NULL); /* not in the list */
    json_decref(v);

    CHECK_INT_EQ(fv_state_version_set_report(s, 999, "{}", &d), UV_ENOENT);
    CHECK_CONTAINS(d.msg, "999");
    CHECK_INT_EQ(fv_state_version_set_report(s, vd, "[1, 2]", &d), FV_ESCHEMA);
    CHECK_INT_EQ(fv_state_version_set_report(s, vd, "{\"a\": ", &d), FV_EPARSE);
    CHECK_INT_EQ(fv_state_version_set_report(s, vd, "{\"a\": 1, \"a\": 2}", &d), FV_EPARSE);
    size_t big_len = FV_STATE_JSON_MAX + 1;
    char *big = malloc(big_len + 1);
    CHECK(big != NULL);
    memset(big, ' ', big_len);
    big[0] = '{';
    big[big_len - 1] = '}';
    big[big_len] = '\0';
    CHECK_INT_EQ(fv_state_version_set_report(s, vd, big, &d), FV_ETOOBIG);
    free(big);

    /* Inside a transaction: undone by a rollback, kept by a commit. */
    CHECK_OK(fv_state_begin(s, &d), &d);
    CHECK_OK(fv_state_version_set_report(s, vs, "{\"x\": 1}", &d), &d);
    CHECK_OK(fv_state_version_set_report(s, vd, NULL, &d), &d);
    fv_state_rollback(s);
    CHECK_OK(fv_state_version_json(s, vs, &v, &d), &d);
    check_null(v, "report");
    json_decref(v);
    CHECK_OK(fv_state_begin(s, &d), &d);
    CHECK_OK(fv_state_version_set_report(s, vs, "{ \"x\" : [1, {\"y\": null}] }", &d), &d);
    CHECK_OK(fv_state_commit(s, &d), &d);
    fv_state_close(s);

    /* Stored compactly. */
    char path[256];
    snprintf(path, sizeof path, "%s/state.db", dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    CHECK_INT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_INT_EQ(
        sqlite3_prepare_v2(db, "SELECT report FROM versions WHERE version = ?1", -1, &st, NULL),
        SQLITE_OK);
    CHECK_INT_EQ(sqlite3_bind_int64(st, 1, vs), SQLITE_OK);
    CHECK_INT_EQ(sqlite3_step(st), SQLITE_ROW);
    CHECK_STR_EQ((const char *)sqlite3_column_text(st, 0), "{\"x\":[1,{\"y\":null}]}");
    sqlite3_finalize(st);
    CHECK_INT_EQ(sqlite3_close(db), SQLITE_OK);

    s = open_ok(dir);
    CHECK_OK(fv_state_version_set_report(s, vd, NULL, &d), &d); /* removed */
    CHECK_OK(fv_state_version_json(s, vd, &v, &d), &d);
    check_null(v, "report");
    CHECK(json_is_false(json_object_get(v, "has_report")));
    json_decref(v);
    fv_state_close(s);
    rm_rf(dir);
}

/* The schema of fedvault before distillation (user_version 1), verbatim from state.c of
 * that time: the fixture of the migration tests. Do not update it with the schema. */
static const char schema_v1_sql[] =
    "CREATE TABLE agents ("
    "  name TEXT PRIMARY KEY,"
    "  serial TEXT NOT NULL,"
    "  first_seen INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL);"
    "CREATE TABLE jobs ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  name TEXT,"
    "  spec TEXT NOT NULL,"
    "  submitted_by TEXT,"
    "  submitted INTEGER NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('queued','running','done','failed','aborted')),"
    "  why TEXT,"
    "  started INTEGER,"
    "  finished INTEGER,"
    "  final_version INTEGER REFERENCES versions(version));"
    "CREATE TABLE job_agents ("
    "  job TEXT NOT NULL REFERENCES jobs(id),"
    "  agent TEXT NOT NULL,"
    "  data_sha256 TEXT NOT NULL,"
    "  rows INTEGER NOT NULL,"
    "  accepted INTEGER NOT NULL,"
    "  PRIMARY KEY (job, agent));"
    "CREATE TABLE rounds ("
    "  job TEXT NOT NULL REFERENCES jobs(id),"
    "  round INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('stats','train')),"
    "  status TEXT NOT NULL,"
    "  why TEXT,"
    "  cohort TEXT NOT NULL,"
    "  contributors TEXT NOT NULL,"
    "  metrics TEXT,"
    "  model_in TEXT,"
    "  model_out TEXT,"
    "  started INTEGER NOT NULL,"
    "  finished INTEGER NOT NULL,"
    "  PRIMARY KEY (job, round, attempt));"
    "CREATE TABLE checkpoints ("
    "  job TEXT PRIMARY KEY REFERENCES jobs(id),"
    "  next_round INTEGER NOT NULL,"
    "  rounds_done INTEGER NOT NULL,"
    "  rounds_failed INTEGER NOT NULL,"
    "  n_ref INTEGER NOT NULL,"
    "  stats_sum BLOB,"
    "  global_sha TEXT,"
    "  global_version INTEGER NOT NULL,"
    "  opt_state BLOB,"
    "  best_sha TEXT,"
    "  best_version INTEGER NOT NULL,"
    "  best_metric REAL,"
    "  best_round INTEGER NOT NULL,"
    "  since_best INTEGER NOT NULL);"
    "CREATE TABLE versions ("
    "  version INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  sha256 TEXT NOT NULL,"
    "  job TEXT NOT NULL REFERENCES jobs(id),"
    "  round INTEGER NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('global','final')),"
    "  parent INTEGER REFERENCES versions(version),"
    "  created INTEGER NOT NULL,"
    "  bytes INTEGER NOT NULL,"
    "  producer TEXT NOT NULL);"
    "CREATE INDEX versions_job ON versions(job);"
    "CREATE TABLE outbox ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  actor TEXT NOT NULL,"
    "  event TEXT NOT NULL,"
    "  details TEXT);"
    "PRAGMA user_version = 1;";

static sqlite3 *raw_open(const char *dir)
{
    char path[256];
    sqlite3 *db = NULL;
    snprintf(path, sizeof path, "%s/state.db", dir);
    CHECK_INT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        FV__FAIL("sqlite3_exec: %s: %s", err ? err : "?", sql);
}

/* The first column of the first row of sql, as text ("" for none or NULL), in buf. */
static const char *raw_text(sqlite3 *db, const char *sql, const char *arg, char *buf, size_t cap)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        FV__FAIL("prepare: %s: %s", sqlite3_errmsg(db), sql);
    if (arg != NULL)
        CHECK_INT_EQ(sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC), SQLITE_OK);
    int rc = sqlite3_step(st);
    const char *v = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    snprintf(buf, cap, "%s", v ? v : "");
    sqlite3_finalize(st);
    return buf;
}

static long long raw_int(sqlite3 *db, const char *sql)
{
    char buf[64];
    return atoll(raw_text(db, sql, NULL, buf, sizeof buf));
}

/* A version-1 state directory: one job with its agent fingerprint, rounds (stats, a failed
 * and a retried train round, a second one), two versions (the final one referenced by
 * jobs.final_version, the AUTOINCREMENT counter at 5), a checkpoint and an audit record. */
static void make_v1(const char *dir, const char *job)
{
    char sql[4096], fp[65], aa[65], bb[65], cc[65];
    /* Copied: mkid's buffers are reused after 8 calls. */
    memcpy(fp, mkid("fa", '1'), 65);
    memcpy(aa, mkid("aa", '1'), 65);
    memcpy(bb, mkid("bb", '2'), 65);
    memcpy(cc, mkid("cc", '3'), 65);
    sqlite3 *db = raw_open(dir);
    raw_exec(db, "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;");
    raw_exec(db, "BEGIN");
    raw_exec(db, schema_v1_sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO agents VALUES ('bank-a', '0a', %lld, %lld);"
             "INSERT INTO jobs (id, name, spec, submitted_by, submitted, status, why, started, "
             "  finished) VALUES ('%s', 'old', '{\"rounds\": 2}', 'alice', %lld, 'done', NULL, "
             "  %lld, %lld);"
             "INSERT INTO job_agents VALUES ('%s', 'bank-a', '%s', 100, %lld);"
             "INSERT INTO rounds VALUES ('%s', 0, 1, 'stats', 'ok', NULL, '[\"bank-a\"]', "
             "  '[\"bank-a\"]', NULL, NULL, NULL, %lld, %lld);"
             "INSERT INTO rounds VALUES ('%s', 1, 1, 'train', 'FV_ETHRESHOLD', 'too few', "
             "  '[\"bank-a\"]', '[]', NULL, '%s', NULL, %lld, %lld);"
             "INSERT INTO rounds VALUES ('%s', 1, 2, 'train', 'ok', NULL, '[\"bank-a\"]', "
             "  '[\"bank-a\"]', '{\"val_roc_auc\":0.75}', '%s', '%s', %lld, %lld);"
             "INSERT INTO rounds VALUES ('%s', 2, 1, 'train', 'ok', NULL, '[\"bank-a\"]', "
             "  '[\"bank-a\"]', '{\"val_roc_auc\":0.8}', '%s', '%s', %lld, %lld);"
             "INSERT INTO versions VALUES (1, '%s', '%s', 1, 'global', NULL, %lld, 9, 'fv 0.1');"
             "INSERT INTO versions VALUES (2, '%s', '%s', 2, 'final', 1, %lld, 10, 'fv 0.1');"
             "UPDATE sqlite_sequence SET seq = 5 WHERE name = 'versions';"
             "UPDATE jobs SET final_version = 2 WHERE id = '%s';"
             "INSERT INTO checkpoints VALUES ('%s', 3, 2, 1, 4242, x'0100000002000000', '%s', 2, "
             "  x'0908', '%s', 2, 0.8, 2, 0);"
             "INSERT INTO outbox (actor, event, details) VALUES ('coordinator', 'job.submitted', "
             "  '{\"job\": \"x\"}');",
             T0, T0, job, T0, T0 + 1, T0 + 9, job, fp, T0, job, T0, T0 + 1, job, aa, T0 + 2, T0 + 3,
             job, aa, bb, T0 + 4, T0 + 5, job, bb, cc, T0 + 6, T0 + 7, bb, job, T0 + 5, cc, job,
             T0 + 7, job, job, cc, cc);
    raw_exec(db, sql);
    raw_exec(db, "COMMIT");
    CHECK_INT_EQ(raw_int(db, "PRAGMA user_version"), 1);
    CHECK_INT_EQ(sqlite3_close(db), SQLITE_OK);
}

/* Per table: its columns (name:type:notnull:default:pk) and foreign keys, as one line. */
static void table_shape(sqlite3 *db, const char *table, char *buf, size_t cap)
{
    char cols[2048], fks[1024];
    raw_text(db,
             "SELECT group_concat(name || ':' || type || ':' || \"notnull\" || ':' || "
             "coalesce(dflt_value, '') || ':' || pk, ',') FROM pragma_table_info(?1)",
             table, cols, sizeof cols);
    raw_text(db,
             "SELECT group_concat(\"from\" || '->' || \"table\" || '.' || \"to\", ',') "
             "FROM pragma_foreign_key_list(?1)",
             table, fks, sizeof fks);
    snprintf(buf, cap, "%s | %s", cols, fks);
}

static void test_migrate_v1(void)
{
    const char *dir = new_dir(), *fresh = new_dir();
    char job[65];
    memcpy(job, mkid("01d", '1'), 65); /* mkid's buffers are reused */
    fv_diag_t d = {{0}};
    char buf[256];

    make_v1(dir, job);
    fv_state_t *s = open_ok(dir); /* migrates */

    /* Every row survived. */
    json_t *a = NULL;
    CHECK_OK(fv_state_agents_json(s, &a, &d), &d);
    CHECK_UINT_EQ(json_array_size(a), 1);
    CHECK_STR_EQ(jstr(json_array_get(a, 0), "serial"), "0a");
    json_decref(a);
    json_t *j = NULL;
    CHECK_OK(fv_state_job_json(s, job, &j, &d), &d);
    CHECK_STR_EQ(jstr(j, "name"), "old");
    CHECK_STR_EQ(jstr(j, "status"), "done");
    CHECK_STR_EQ(jstr(j, "submitted_by"), "alice");
    CHECK_STR_EQ(jstr(j, "finished"), "2026-11-28T23:40:00.132Z");
    CHECK_INT_EQ(jint(j, "rounds_done"), 2);
    CHECK_INT_EQ(jint(j, "distill_rounds_done"), 0);
    CHECK_INT_EQ(jint(j, "rounds_failed"), 1);
    CHECK_INT_EQ(jint(j, "final_version"), 2);
    check_null(j, "student_version");
    CHECK_INT_EQ(jint(json_object_get(j, "spec"), "rounds"), 2);
    json_t *rounds = json_object_get(j, "rounds");
    CHECK_UINT_EQ(json_array_size(rounds), 4);
    CHECK_STR_EQ(jstr(json_array_get(rounds, 0), "kind"), "stats");
    CHECK_STR_EQ(jstr(json_array_get(rounds, 1), "status"), "FV_ETHRESHOLD");
    CHECK_STR_EQ(jstr(json_array_get(rounds, 1), "why"), "too few");
    CHECK_STR_EQ(jstr(json_array_get(rounds, 1), "model_in"), mkid("aa", '1'));
    CHECK_INT_EQ(jint(json_array_get(rounds, 2), "attempt"), 2);
    CHECK_NEAR(json_real_value(json_object_get(
                   json_object_get(json_array_get(rounds, 3), "metrics"), "val_roc_auc")),
               0.8, 0);
    CHECK_STR_EQ(jstr(json_array_get(rounds, 3), "model_out"), mkid("cc", '3'));
    CHECK_STR_EQ(jstr(json_array_get(rounds, 3), "finished"), "2026-11-28T23:40:00.130Z");
    CHECK_UINT_EQ(json_array_size(json_object_get(j, "agents")), 1);
    CHECK_INT_EQ(jint(json_array_get(json_object_get(j, "agents"), 0), "rows"), 100);
    json_decref(j);

    json_t *vs = NULL;
    CHECK_OK(fv_state_versions_json(s, &vs, &d), &d);
    CHECK_UINT_EQ(json_array_size(vs), 2);
    CHECK_STR_EQ(jstr(json_array_get(vs, 0), "kind"), "global");
    CHECK_STR_EQ(jstr(json_array_get(vs, 0), "sha256"), mkid("bb", '2'));
    check_null(json_array_get(vs, 0), "parent");
    CHECK_INT_EQ(jint(json_array_get(vs, 1), "parent"), 1);
    CHECK_INT_EQ(jint(json_array_get(vs, 1), "bytes"), 10);
    CHECK_STR_EQ(jstr(json_array_get(vs, 1), "producer"), "fv 0.1");
    CHECK(json_is_false(json_object_get(json_array_get(vs, 1), "has_report")));
    json_decref(vs);
    json_t *v = NULL;
    CHECK_OK(fv_state_version_json(s, 2, &v, &d), &d);
    check_null(v, "report");
    CHECK_UINT_EQ(json_array_size(json_object_get(json_object_get(v, "lineage"), "rounds")), 3);
    json_decref(v);

    fv_state_ckpt_t ck = {0};
    CHECK_OK(fv_state_ckpt_load(s, job, &ck, &d), &d);
    CHECK_UINT_EQ(ck.next_round, 3);
    CHECK_UINT_EQ(ck.rounds_done, 2);
    CHECK_UINT_EQ(ck.n_ref, 4242);
    CHECK_UINT_EQ(ck.stats_words, 2);
    CHECK_UINT_EQ(ck.stats_sum[1], 2);
    CHECK_UINT_EQ(ck.opt_len, 2);
    CHECK_STR_EQ(ck.global_sha, mkid("cc", '3'));
    CHECK_NEAR(ck.best_metric, 0.8, 0);
    CHECK(!ck.distill);
    CHECK_STR_EQ(ck.teacher_sha, "");
    CHECK_INT_EQ(ck.teacher_version, 0);
    CHECK(ck.teacher_json == NULL);
    fv_state_ckpt_close(&ck);

    /* The new kinds are accepted; the version counter went on from 5. */
    char m[65];
    int64_t vd = 0;
    CHECK_OK(fv_state_model_put(s, (const uint8_t *)"student", 7, m, &d), &d);
    add_round(s, job, 3, 1, "distill", "ok", "[\"bank-a\"]", mkid("cc", '3'), m);
    CHECK_OK(fv_state_version_add(s, job, 3, m, 2, "student", "fv 0.2", T0, NULL, &d), &d);
    CHECK_OK(fv_state_version_add(s, job, 3, m, 2, "distilled", "fv 0.2", T0, &vd, &d), &d);
    CHECK_INT_EQ(vd, 7);
    CHECK_OK(fv_state_version_set_report(s, vd, "{\"ratios\": {\"params\": 48.8}}", &d), &d);
    CHECK_OK(fv_state_job_set_student(s, job, vd, &d), &d);
    ck = (fv_state_ckpt_t){
        .next_round = 4, .distill = true, .teacher_version = 2, .best_metric = NAN};
    memcpy(ck.teacher_sha, mkid("cc", '3'), 65);
    CHECK_OK(fv_state_ckpt_save(s, job, &ck, &d), &d);
    fv_state_close(s);

    /* Reopened (no second migration), the outbox record still there. */
    s = open_ok(dir);
    CHECK_OK(fv_state_job_json(s, job, &j, &d), &d);
    CHECK_INT_EQ(jint(j, "distill_rounds_done"), 1);
    CHECK_INT_EQ(jint(j, "student_version"), vd);
    json_decref(j);
    drained_t dr = {.fail_at = 0};
    CHECK_OK(fv_state_outbox_drain(s, drain_cb, &dr, &d), &d);
    CHECK_INT_EQ(dr.n, 1);
    fv_state_close(s);

    /* The file: version 2, no leftover table, consistent, and shaped as a new one. */
    fv_state_close(open_ok(fresh));
    sqlite3 *db = raw_open(dir), *fdb = raw_open(fresh);
    CHECK_INT_EQ(raw_int(db, "PRAGMA user_version"), 3); /* 1 -> 2 -> 3 (explain) */
    CHECK_STR_EQ(raw_text(db, "PRAGMA integrity_check", NULL, buf, sizeof buf), "ok");
    CHECK_INT_EQ(raw_int(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
    CHECK_INT_EQ(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'new_%'"), 0);
    CHECK_INT_EQ(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                             "name = 'versions_job' AND tbl_name = 'versions'"),
                 1);
    static const char *const tables[] = {"agents",      "jobs",     "job_agents", "rounds",
                                         "checkpoints", "versions", "outbox"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char got[4096], want[4096];
        table_shape(db, tables[i], got, sizeof got);
        table_shape(fdb, tables[i], want, sizeof want);
        CHECK_STR_EQ(got, want);
    }
    /* The CHECKs still refuse what they should, in both. */
    sqlite3 *dbs[] = {db, fdb};
    for (int i = 0; i < 2; i++) {
        char sql[512];
        snprintf(sql, sizeof sql,
                 "INSERT INTO rounds VALUES ('%s', 9, 1, 'eval', 'ok', NULL, '[]', '[]', NULL, "
                 "NULL, NULL, 0, 0)",
                 job);
        CHECK_INT_EQ(sqlite3_exec(dbs[i], sql, NULL, NULL, NULL), SQLITE_CONSTRAINT);
        snprintf(sql, sizeof sql,
                 "INSERT INTO versions (sha256, job, round, kind, created, bytes, producer) "
                 "VALUES ('%s', '%s', 0, 'best', 0, 0, 'p')",
                 m, job);
        CHECK_INT_EQ(sqlite3_exec(dbs[i], sql, NULL, NULL, NULL), SQLITE_CONSTRAINT);
        snprintf(sql, sizeof sql,
                 "INSERT INTO checkpoints (job, next_round, rounds_done, rounds_failed, n_ref, "
                 "global_version, best_version, best_round, since_best, phase) "
                 "VALUES ('%s', 0, 0, 0, 0, 0, 0, 0, 0, 'eval')",
                 mkid("f0", '0'));
        CHECK_INT_EQ(sqlite3_exec(dbs[i], sql, NULL, NULL, NULL), SQLITE_CONSTRAINT);
    }
    CHECK_INT_EQ(sqlite3_close(db), SQLITE_OK);
    CHECK_INT_EQ(sqlite3_close(fdb), SQLITE_OK);
    rm_rf(dir);
    rm_rf(fresh);
}

/* A migration that fails at its last check (a dangling jobs.final_version, which SQLite's
 * foreign_key_check finds after every table was rebuilt) is rolled back whole: version 1
 * as it was, and the next open fails the same way. */
static void test_migrate_fails(void)
{
    const char *dir = new_dir();
    char job[65];
    memcpy(job, mkid("02d", '2'), 65); /* mkid's buffers are reused */
    fv_diag_t d = {{0}};
    fv_state_t *s = NULL;
    char buf[4096], before[4096];

    make_v1(dir, job);
    sqlite3 *db = raw_open(dir);
    raw_exec(db, "PRAGMA foreign_keys = OFF; UPDATE jobs SET final_version = 99;");
    raw_text(db, "SELECT group_concat(sql, ';') FROM sqlite_master", NULL, before, sizeof before);
    CHECK_INT_EQ(sqlite3_close(db), SQLITE_OK);

    for (int attempt = 0; attempt < 2; attempt++) {
        CHECK_INT_EQ(fv_state_open(dir, &s, &d), FV_ECORRUPT);
        CHECK(s == NULL);
        CHECK_CONTAINS(d.msg, "migrating the schema from version 1 to 2");
        CHECK_CONTAINS(d.msg, "table jobs refers to a missing row of table versions");
        CHECK_CONTAINS(d.msg, "left at version 1");
    }
    db = raw_open(dir);
    CHECK_INT_EQ(raw_int(db, "PRAGMA user_version"), 1);
    CHECK_STR_EQ(
        raw_text(db, "SELECT group_concat(sql, ';') FROM sqlite_master", NULL, buf, sizeof buf),
        before);
    CHECK_INT_EQ(raw_int(db, "SELECT count(*) FROM rounds"), 4);
    CHECK_INT_EQ(raw_int(db, "SELECT count(*) FROM versions"), 2);
    CHECK_INT_EQ(raw_int(db, "SELECT seq FROM sqlite_sequence WHERE name = 'versions'"), 5);
    CHECK_INT_EQ(raw_int(db, "SELECT count(*) FROM checkpoints"), 1);
    CHECK_INT_EQ(raw_int(db, "SELECT final_version FROM jobs"), 99);
    CHECK_INT_EQ(
        sqlite3_exec(db, "UPDATE rounds SET kind = 'distill' WHERE round = 0", NULL, NULL, NULL),
        SQLITE_CONSTRAINT);

    /* Repaired by hand, it migrates. */
    raw_exec(db, "UPDATE jobs SET final_version = 2;");
    CHECK_INT_EQ(sqlite3_close(db), SQLITE_OK);
    s = open_ok(dir);
    fv_state_close(s);
    rm_rf(dir);
}

/* ---- releases ------------------------------------------------------------------------ */

static void test_releases(void)
{
    const char *dir = new_dir();
    fv_state_t *s = open_ok(dir);
    fv_diag_t d = {{0}};
    int64_t next = 0, rel = 0;
    char sha[65], *env = NULL;
    const char *a = mkid("aa", '1'), *b = mkid("bb", '2');
    CHECK_OK(fv_state_release_next(s, &next, &d), &d);
    CHECK_INT_EQ(next, 1);
    CHECK_INT_EQ(fv_state_release_latest(s, "stable", &rel, sha, &env, &d), -ENOENT);
    CHECK_OK(fv_state_release_add(s, 1, "stable", 3, a, "{\"e\":1}", T0, &d), &d);
    CHECK_OK(fv_state_release_next(s, &next, &d), &d);
    CHECK_INT_EQ(next, 2);
    /* a counter is never taken twice; labels and shas are checked */
    CHECK(fv_state_release_add(s, 1, "canary", 4, b, "{}", T0, &d) < 0);
    CHECK_INT_EQ(fv_state_release_add(s, 2, "gold", 4, b, "{}", T0, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_state_release_add(s, 2, "canary", 4, "xyz", "{}", T0, &d), FV_EINVAL);
    CHECK_OK(fv_state_release_add(s, 2, "canary", 4, b, "{\"e\":2}", T0 + 1, &d), &d);
    CHECK_OK(fv_state_release_add(s, 3, "stable", 5, b, "{\"e\":3}", T0 + 2, &d), &d);
    /* the latest of a label is its highest counter */
    CHECK_OK(fv_state_release_latest(s, "stable", &rel, sha, &env, &d), &d);
    CHECK_INT_EQ(rel, 3);
    CHECK_STR_EQ(sha, b);
    CHECK_STR_EQ(env, "{\"e\":3}");
    free(env);
    bool has = false;
    CHECK_OK(fv_state_release_has_sha(s, a, &has, &d), &d);
    CHECK(has);
    CHECK_OK(fv_state_release_has_sha(s, mkid("cc", '3'), &has, &d), &d);
    CHECK(!has);
    CHECK_OK(fv_state_release_has_sha(s, "not hex", &has, &d), &d);
    CHECK(!has);
    json_t *list = NULL;
    CHECK_OK(fv_state_releases_json(s, &list, &d), &d);
    CHECK_INT_EQ(json_array_size(list), 3);
    CHECK_INT_EQ(jint(json_array_get(list, 1), "release"), 2);
    CHECK_STR_EQ(jstr(json_array_get(list, 1), "label"), "canary");
    CHECK_INT_EQ(jint(json_array_get(list, 1), "version"), 4);
    CHECK(json_object_get(json_array_get(list, 0), "envelope") == NULL); /* not listed */
    json_decref(list);
    /* the counter survives a restart */
    fv_state_close(s);
    s = open_ok(dir);
    CHECK_OK(fv_state_release_next(s, &next, &d), &d);
    CHECK_INT_EQ(next, 4);
    fv_state_close(s);
    rm_rf(dir);
}

int main(void)
{
    test_open_reopen();
    test_busy();
    test_models();
    test_jobs();
    test_ckpt();
    test_rounds_versions();
    test_outbox();
    test_rollback();
    test_crash();
    test_schema_version();
    test_distill();
    test_migrate_v1();
    test_migrate_fails();
    test_releases();
    printf("test_state: ok\n");
    return 0;
}
