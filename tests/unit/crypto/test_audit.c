/* test_audit.c - the signed, hash-chained audit log (crypto/fv_audit.h).
 *
 * In a mkdtemp directory, with a fixed key and an injected clock: 20 records verify; the
 * first record's bytes are pinned (known answer). Then each tampering of a copy must fail
 * and name the record: every flipped bit of one record's line, a deleted line, two
 * swapped lines, an inserted well-formed line re-signed with another key, a whitespace
 * change, a truncated tail (caught only through the head), a head signed by another key.
 * Reopening continues the chain; the two crash leftovers (a torn line, a line beyond the
 * head) are repaired on open; a truncated log, a missing head and a second writer are
 * refused. Hostile input: an over-long line, an empty line, non-JSON. Scan filters.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "fv_audit.h"
#include "fv_crypto.h"
#include "fv_test.h"

static char dir[] = "/tmp/fv-audit-XXXXXX";
static uint8_t pk1[32], sk1[64], pk2[32], sk2[64];

/* 2026-11-28T10:00:00.000Z + 1 minute per call */
static int64_t fake_clock(void *ctx)
{
    int64_t *t = ctx;
    int64_t v = *t;
    *t += 60 * 1000000;
    return v;
}

static char *path_of(const char *name)
{
    static char buf[4][512];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    CHECK(b != NULL);
    CHECK(fread(b, 1, (size_t)n, f) == (size_t)n);
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const char *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(b, 1, len, f) == len);
    fclose(f);
}

/* Splits a log into its lines (each with its LF). */
typedef struct lines {
    char *l[64];
    size_t n;
} lines_t;

static void split_lines(const char *buf, lines_t *out)
{
    out->n = 0;
    const char *p = buf;
    while (*p) {
        const char *nl = strchr(p, '\n');
        CHECK(nl != NULL);
        CHECK(out->n < 64);
        out->l[out->n++] = strndup(p, (size_t)(nl - p + 1));
        p = nl + 1;
    }
}

static void free_lines(lines_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->l[i]);
    l->n = 0;
}

static char *join(char *const *l, size_t n, size_t *len)
{
    size_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += strlen(l[i]);
    char *b = malloc(t + 1), *p = b;
    CHECK(b != NULL);
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(l[i]);
        memcpy(p, l[i], k);
        p += k;
    }
    *p = '\0';
    *len = t;
    return b;
}

/* Verifies a log in memory against pk1 and the head; expects failure naming record k. */
static void expect_bad(const char *log, size_t len, const char *head, size_t head_len, uint64_t k,
                       const char *needle)
{
    fv_audit_report_t rep;
    fv_diag_t d = {""};
    int r = fv_audit_verify_mem(log, len, head, head_len, pk1, &rep, &d);
    if (r != FV_ECORRUPT || rep.ok || rep.bad_record != k)
        FV__FAIL("expected record %llu to fail (%s); got r=%d ok=%d bad=%llu: %s",
                 (unsigned long long)k, needle ? needle : "", r, rep.ok,
                 (unsigned long long)rep.bad_record, rep.reason);
    char want_rec[64], want_line[64];
    snprintf(want_rec, sizeof want_rec, "record %llu", (unsigned long long)k);
    snprintf(want_line, sizeof want_line, "line %llu", (unsigned long long)k);
    if (strstr(rep.reason, want_rec) == NULL && strstr(rep.reason, want_line) == NULL)
        FV__FAIL("reason does not name record %llu: %s", (unsigned long long)k, rep.reason);
    if (needle != NULL)
        CHECK_CONTAINS(rep.reason, needle);
    CHECK_STR_EQ(d.msg, rep.reason);
}

static void expect_ok(const char *log, size_t len, const char *head, size_t head_len, uint64_t n)
{
    fv_audit_report_t rep;
    fv_diag_t d = {""};
    CHECK_OK(fv_audit_verify_mem(log, len, head, head_len, pk1, &rep, &d), &d);
    CHECK(rep.ok);
    CHECK_UINT_EQ(rep.n_records, n);
    CHECK(rep.head_checked == (head != NULL));
}

/* A copy of a record line (with LF) with its event replaced and re-signed by sk. */
static char *forge(const char *line, const char *event, const uint8_t sk[64])
{
    const char *h = strstr(line, ",\"hash\":");
    CHECK(h != NULL);
    const char *e = strstr(line, "\"event\":\"");
    CHECK(e != NULL && e < h);
    const char *e_end = strchr(e + 9, '"');
    char canon[4096];
    int n = snprintf(canon, sizeof canon, "%.*s\"event\":\"%s%.*s}", (int)(e - line), line, event,
                     (int)(h - e_end), e_end);
    CHECK(n > 0 && (size_t)n < sizeof canon);
    uint8_t hash[32], sig[64];
    char hex[65], b64[89];
    fv_sha256(hash, canon, (size_t)n);
    sodium_bin2hex(hex, sizeof hex, hash, 32);
    CHECK_OK(fv_sign(sig, canon, (size_t)n, sk), NULL);
    sodium_bin2base64(b64, sizeof b64, sig, 64, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(8192);
    snprintf(out, 8192, "%.*s,\"hash\":\"%s\",\"sig\":\"%s\"}\n", n - 1, canon, hex, b64);
    return out;
}

static int count_cb(const fv_audit_record_t *rec, void *ctx)
{
    uint64_t *n = ctx;
    CHECK(rec->seq >= 1);
    CHECK(json_is_object(rec->details));
    (*n)++;
    return 0;
}

static uint64_t scan_count(const char *path, const fv_audit_filter_t *f)
{
    uint64_t n = 0, seen = 0;
    fv_diag_t d = {""};
    CHECK_OK(fv_audit_scan(path, f, count_cb, &n, &seen, &d), &d);
    return n;
}

int main(void)
{
    fv_diag_t d = {""};
    fv_rand_t r;
    CHECK_OK(fv_crypto_init(), NULL);
    fv_rand_seeded_u64(&r, 6);
    CHECK_OK(fv_sign_keypair(&r, pk1, sk1), NULL);
    CHECK_OK(fv_sign_keypair(&r, pk2, sk2), NULL);
    CHECK(mkdtemp(dir) != NULL);
    const char *log_p = path_of("audit.log"), *head_p = path_of("audit.head");

    /* ---- 20 records ---- */
    int64_t clk = 1795860000LL * 1000000; /* 2026-11-28T10:00:00Z */
    fv_audit_t *log = NULL;
    CHECK_OK(fv_audit_open(log_p, head_p, sk1, "coordinator", &log, &d), &d);
    fv_audit_set_clock(log, fake_clock, &clk);
    for (int i = 1; i <= 20; i++) {
        char det[256];
        snprintf(det, sizeof det,
                 "{\"job\":\"job-%d\",\"i\":%d,\"x\":0.1,\"note\":\"caf\\u00e9 \\\"q\\\" /\","
                 "\"nested\":{\"b\":[1,2],\"a\":null}}",
                 i % 3, i);
        CHECK_OK(fv_audit_append(log, i % 2 ? NULL : "admin:ops-1",
                                 i % 4 == 0 ? "job.submitted" : "round.done", det, &d),
                 &d);
    }
    CHECK_UINT_EQ(fv_audit_last_seq(log), 20);
    /* a second writer is refused while the first holds the log */
    fv_audit_t *log2 = NULL;
    CHECK_INT_EQ(fv_audit_open(log_p, head_p, sk1, NULL, &log2, &d), -EBUSY);
    CHECK(log2 == NULL);
    /* bad appends write nothing */
    CHECK_INT_EQ(fv_audit_append(log, NULL, "e", "[1]", &d), FV_EINVAL);
    CHECK_INT_EQ(fv_audit_append(log, NULL, "e", "{\"a\":1,\"a\":2}", &d), FV_EPARSE);
    CHECK_INT_EQ(fv_audit_append(log, "bad\xff", "e", NULL, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_audit_append(log, NULL, "", NULL, &d), FV_EINVAL);
    CHECK_UINT_EQ(fv_audit_last_seq(log), 20);
    fv_audit_close(log);

    fv_audit_report_t rep;
    CHECK_OK(fv_audit_verify(log_p, head_p, pk1, &rep, &d), &d);
    CHECK(rep.ok && rep.head_checked && rep.n_records == 20 && rep.head_seq == 20);
    CHECK_INT_EQ(fv_audit_verify(log_p, head_p, pk2, &rep, &d), FV_ECORRUPT);
    CHECK_UINT_EQ(rep.bad_record, 1);
    CHECK_CONTAINS(rep.reason, "record 1: bad signature");

    size_t len, head_len;
    char *orig = slurp(log_p, &len);
    char *head = slurp(head_p, &head_len);
    lines_t L;
    split_lines(orig, &L);
    CHECK_UINT_EQ(L.n, 20);
    /* Known answer: the first record, byte for byte (fixed key, clock and details). */
    printf("record 1: %s", L.l[0]);
    printf("head: %s", head);
    static const char want1[] =
        "{\"seq\":1,\"ts\":\"2026-11-28T10:00:00.000Z\",\"actor\":\"coordinator\","
        "\"event\":\"round.done\",\"details\":{\"job\":\"job-1\",\"i\":1,"
        "\"x\":0.10000000000000001,\"note\":\"caf\\u00E9 \\\"q\\\" /\",\"nested\":"
        "{\"b\":[1,2],\"a\":null}},\"prev\":\"0000000000000000000000000000000000000000"
        "000000000000000000000000\",\"hash\":\"79fa38dbd678a345f6b0f3bcfb66db5ba7422703146a2"
        "94301f5580e007ecc5e\",\"sig\":\"DGPlm9Pcx4qs08467bDjb08q1PtrcPL/7OTRdIqEOv0vZY8BDAeSGh"
        "pXU/Fu5iSCKtKAmC/HVbfS94iYSbmOAw==\"}\n";
    if (strcmp(L.l[0], want1) != 0)
        FV__FAIL("record 1 differs from the documented form:\n%s\n%s", L.l[0], want1);
    expect_ok(orig, len, head, head_len, 20);
    expect_ok(orig, len, NULL, 0, 20);

    /* ---- every flipped bit of record 7's line ---- */
    {
        size_t l7 = strlen(L.l[6]);
        for (size_t i = 0; i < l7; i++) {
            for (int b = 0; b < 8; b++) {
                char *save = L.l[6];
                char *copy = strdup(save);
                copy[i] = (char)(copy[i] ^ (1 << b));
                L.l[6] = copy;
                size_t tl;
                char *t = join(L.l, L.n, &tl);
                expect_bad(t, tl, head, head_len, 7, NULL);
                free(t);
                free(copy);
                L.l[6] = save;
            }
        }
    }

    char *t;
    size_t tl;
    /* ---- a deleted line ---- */
    {
        char *v[20];
        size_t n = 0;
        for (size_t i = 0; i < 20; i++)
            if (i != 4)
                v[n++] = L.l[i];
        t = join(v, n, &tl);
        expect_bad(t, tl, head, head_len, 5, "seq 6, expected 5");
        expect_bad(t, tl, NULL, 0, 5, "seq 6, expected 5");
        free(t);
    }
    /* ---- two swapped lines ---- */
    {
        char *v[20];
        memcpy(v, L.l, sizeof v);
        v[4] = L.l[5];
        v[5] = L.l[4];
        t = join(v, 20, &tl);
        expect_bad(t, tl, head, head_len, 5, "seq 6, expected 5");
        free(t);
    }
    /* ---- an inserted, well-formed line re-signed with another key ---- */
    {
        char *forged = forge(L.l[4], "forged", sk2);
        char *v[21];
        memcpy(v, L.l, 4 * sizeof *v);
        v[4] = forged;
        memcpy(v + 5, L.l + 4, 16 * sizeof *v);
        t = join(v, 21, &tl);
        expect_bad(t, tl, head, head_len, 5, "record 5: bad signature");
        free(t);
        /* the same in place of record 5 */
        v[5] = L.l[5];
        memcpy(v, L.l, sizeof(char *) * 20);
        v[4] = forged;
        t = join(v, 20, &tl);
        expect_bad(t, tl, head, head_len, 5, "bad signature");
        free(t);
        /* re-signed with the right key but not re-chained: record 6's prev breaks */
        char *resigned = forge(L.l[4], "changed", sk1);
        v[4] = resigned;
        t = join(v, 20, &tl);
        expect_bad(t, tl, head, head_len, 6, "record 6: prev is not record 5's hash");
        free(t);
        free(resigned);
        free(forged);
    }
    /* ---- whitespace changes ---- */
    {
        char *v[20];
        memcpy(v, L.l, sizeof v);
        const char *cases[][2] = {{"\"seq\":9", "\"seq\": 9"},
                                  {"\"details\":{", "\"details\": {"},
                                  {"\n", "\r\n"},
                                  {"\n", " \n"}};
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            char buf[4096];
            const char *at = strstr(L.l[8], cases[c][0]);
            CHECK(at != NULL);
            snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - L.l[8]), L.l[8], cases[c][1],
                     at + strlen(cases[c][0]));
            v[8] = buf;
            t = join(v, 20, &tl);
            expect_bad(t, tl, head, head_len, 9, "not in canonical form");
            free(t);
        }
        v[8] = L.l[8];
        char *w[21];
        memcpy(w, v, 9 * sizeof *w);
        w[9] = "\n";
        memcpy(w + 10, v + 9, 11 * sizeof *w);
        t = join(w, 21, &tl);
        expect_bad(t, tl, head, head_len, 10, "line 10: not a record (empty line)");
        free(t);
    }
    /* ---- a truncated tail: only the head sees it ---- */
    {
        t = join(L.l, 17, &tl);
        expect_ok(t, tl, NULL, 0, 17);
        expect_bad(t, tl, head, head_len, 18, "tail was removed");
        /* without its final newline: a torn write */
        expect_bad(t, tl - 1, NULL, 0, 17, "no newline");
        free(t);
        /* a head signed by another key */
        char h2[512];
        snprintf(h2, sizeof h2, "%s", head);
        char *sig = strstr(h2, "\"sig\":\"");
        CHECK(sig != NULL);
        sig[7] = sig[7] == 'A' ? 'B' : 'A';
        fv_audit_report_t rp;
        CHECK_INT_EQ(fv_audit_verify_mem(orig, len, h2, strlen(h2), pk1, &rp, &d), FV_ECORRUPT);
        CHECK_CONTAINS(rp.reason, "head");
    }
    /* ---- hostile lines ---- */
    {
        size_t big = FV_AUDIT_LINE_MAX + 10;
        char *b = malloc(len + big + 1);
        memcpy(b, orig, len);
        memset(b + len, 'x', big - 1);
        b[len + big - 1] = '\n';
        expect_bad(b, len + big, NULL, 0, 21, "longer than");
        memcpy(b + len, "{\"seq\":21}\n", 11);
        expect_bad(b, len + 11, NULL, 0, 21, "not a record");
        memcpy(b + len, "not json\n", 9);
        expect_bad(b, len + 9, NULL, 0, 21, "JSON error");
        free(b);
    }

    free_lines(&L);

    /* ---- reopen and continue the chain ---- */
    CHECK_INT_EQ(fv_audit_open(log_p, head_p, sk2, NULL, &log, &d), FV_ECORRUPT);
    CHECK_OK(fv_audit_open(log_p, head_p, sk1, NULL, &log, &d), &d);
    fv_audit_set_clock(log, fake_clock, &clk);
    CHECK_UINT_EQ(fv_audit_last_seq(log), 20);
    CHECK_INT_EQ(fv_audit_append(log, NULL, "x", NULL, &d), FV_EINVAL); /* no default actor */
    for (int i = 0; i < 5; i++)
        CHECK_OK(fv_audit_append(log, "admin:ops-2", "model.export", "{\"job\":7}", &d), &d);
    fv_audit_close(log);
    CHECK_OK(fv_audit_verify(log_p, head_p, pk1, &rep, &d), &d);
    CHECK_UINT_EQ(rep.n_records, 25);

    /* ---- scan filters ---- */
    CHECK_UINT_EQ(scan_count(log_p, NULL), 25);
    CHECK_UINT_EQ(scan_count(log_p, &(fv_audit_filter_t){.job = "job-1"}), 7);
    CHECK_UINT_EQ(scan_count(log_p, &(fv_audit_filter_t){.job = "7"}), 5);
    CHECK_UINT_EQ(scan_count(log_p, &(fv_audit_filter_t){.event = "job.submitted"}), 5);
    CHECK_UINT_EQ(scan_count(log_p, &(fv_audit_filter_t){.actor = "admin:ops-1"}), 10);
    /* 10:00 + 1 minute per record (the head writes take clock ticks too) */
    CHECK_UINT_EQ(scan_count(log_p, &(fv_audit_filter_t){.until = "2026-11-28T10:02"}), 2);
    CHECK_UINT_EQ(
        scan_count(log_p, &(fv_audit_filter_t){.since = "2026-11-28T10:02", .until = "2026-11-28"}),
        24);
    CHECK_UINT_EQ(scan_count(log_p, &(fv_audit_filter_t){.since = "2026-11-29"}), 0);
    CHECK(fv_audit_ts_prefix_valid("2026-11-28"));
    CHECK(fv_audit_ts_prefix_valid("2026-11-28T10:02:00"));
    CHECK(!fv_audit_ts_prefix_valid("yesterday"));
    CHECK(!fv_audit_ts_prefix_valid("2026/11/28"));

    /* ---- crash leftovers are repaired on open ---- */
    free(orig);
    free(head);
    orig = slurp(log_p, &len);
    head = slurp(head_p, &head_len);
    {
        /* a torn last line */
        char *b = malloc(len + 40);
        memcpy(b, orig, len);
        memcpy(b + len, "{\"seq\":26,\"ts\":\"2026-", 21);
        spit(log_p, b, len + 21);
        CHECK_INT_EQ(fv_audit_verify(log_p, head_p, pk1, &rep, &d), FV_ECORRUPT);
        CHECK_CONTAINS(rep.reason, "line 26");
        CHECK_OK(fv_audit_open(log_p, head_p, sk1, NULL, &log, &d), &d);
        CHECK_UINT_EQ(fv_audit_last_seq(log), 25);
        fv_audit_close(log);
        CHECK_OK(fv_audit_verify(log_p, head_p, pk1, &rep, &d), &d);
        CHECK_UINT_EQ(rep.n_records, 25);
        free(b);
        /* a record written, the head not yet */
        CHECK_OK(fv_audit_open(log_p, head_p, sk1, NULL, &log, &d), &d);
        CHECK_OK(fv_audit_append(log, "a", "e", NULL, &d), &d);
        fv_audit_close(log);
        spit(head_p, head, head_len);
        CHECK_INT_EQ(fv_audit_verify(log_p, head_p, pk1, &rep, &d), FV_ECORRUPT);
        CHECK_CONTAINS(rep.reason, "record 26: not covered by the signed head");
        CHECK_OK(fv_audit_open(log_p, head_p, sk1, NULL, &log, &d), &d);
        CHECK_UINT_EQ(fv_audit_last_seq(log), 26);
        fv_audit_close(log);
        CHECK_OK(fv_audit_verify(log_p, head_p, pk1, &rep, &d), &d);
        CHECK_UINT_EQ(rep.n_records, 26);
    }
    /* ---- refusals on open: a truncated log, a missing head ---- */
    {
        free(orig);
        orig = slurp(log_p, &len);
        split_lines(orig, &L);
        t = join(L.l, 23, &tl);
        spit(log_p, t, tl);
        CHECK_INT_EQ(fv_audit_open(log_p, head_p, sk1, NULL, &log, &d), FV_ECORRUPT);
        CHECK_CONTAINS(d.msg, "ends at record 23");
        free(t);
        spit(log_p, orig, len);
        CHECK(unlink(head_p) == 0);
        CHECK_INT_EQ(fv_audit_open(log_p, head_p, sk1, NULL, &log, &d), FV_ECORRUPT);
        CHECK_CONTAINS(d.msg, "missing");
        CHECK_INT_EQ(fv_audit_verify(log_p, head_p, pk1, &rep, &d), -ENOENT);
        unlink(log_p);
        free_lines(&L);
    }
    free(orig);
    free(head);
    rmdir(dir);
    puts("ok");
    return 0;
}
