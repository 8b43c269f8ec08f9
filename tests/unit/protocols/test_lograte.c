/* test_lograte.c - fv_lograte: the per-(peer, event) token bucket of the daemons' log,
 * driven by an injected clock. */
#include "fv_log.h"
#include "fv_error.h"
#include "fv_test.h"

#include <stdio.h>

/* Lines let through for `peer`/`event` when `n` arrive at time `t`; if any, the counts
 * of dropped lines they carried, summed, in *ret_suppressed (else it is left alone). */
static unsigned burst_at(fv_lograte_t *rl, const char *peer, const char *event, uint64_t t,
                         unsigned n, uint64_t *ret_suppressed)
{
    unsigned ok = 0;
    uint64_t sum = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t sup = 12345;
        if (fv_lograte_allow(rl, peer, event, t, &sup)) {
            ok++;
            sum += sup;
        } else {
            CHECK_UINT_EQ(sup, 12345); /* not written when the line is dropped */
        }
    }
    if (ok > 0)
        *ret_suppressed = sum;
    return ok;
}

int main(void)
{
    fv_lograte_t *rl = NULL;
    CHECK_INT_EQ(fv_lograte_new(0, 10, 10000, &rl), FV_EINVAL);
    CHECK_INT_EQ(fv_lograte_new(64, 0, 10000, &rl), FV_EINVAL);
    CHECK_INT_EQ(fv_lograte_new(64, 10, 0, &rl), FV_EINVAL);
    CHECK_INT_EQ(fv_lograte_new(1024, 10, 10000, &rl), 0); /* no evictions here */

    /* 10 lines at once, then nothing more at the same instant */
    uint64_t sup = 99;
    uint64_t t = 1000000;
    CHECK_UINT_EQ(burst_at(rl, "10.0.0.1", "unexpected_message", t, 100, &sup), 10);
    CHECK_UINT_EQ(sup, 0);
    CHECK_UINT_EQ(fv_lograte_suppressed_total(rl), 90);
    /* 9.999 s later: still nothing; at 10 s: one line, carrying the 90 + 5 dropped */
    CHECK_UINT_EQ(burst_at(rl, "10.0.0.1", "unexpected_message", t + 9999, 5, &sup), 0);
    CHECK_UINT_EQ(burst_at(rl, "10.0.0.1", "unexpected_message", t + 10000, 5, &sup), 1);
    CHECK_UINT_EQ(sup, 95);
    CHECK_UINT_EQ(fv_lograte_suppressed_total(rl), 99);
    /* steady flood of one line a second for 100 s: one line per 10 s */
    unsigned ok = 0;
    for (uint64_t s = 1; s <= 100; s++)
        ok += burst_at(rl, "10.0.0.1", "unexpected_message", t + 10000 + s * 1000, 1, &sup);
    CHECK_UINT_EQ(ok, 10);
    CHECK_UINT_EQ(sup, 9);

    /* another event of the same peer, and another peer, have their own buckets */
    CHECK_UINT_EQ(burst_at(rl, "10.0.0.1", "stale_message", t + 110000, 20, &sup), 10);
    CHECK_UINT_EQ(burst_at(rl, "10.0.0.2", "unexpected_message", t + 110000, 20, &sup), 10);

    /* a quiet pair refills to the full burst, not beyond */
    CHECK_UINT_EQ(burst_at(rl, "10.0.0.2", "unexpected_message", t + 110000 + 3600000, 50, &sup),
                  10);
    CHECK_UINT_EQ(sup, 10);

    /* NULL and long names: prefixes compared; distinct beyond 63 bytes count as one pair */
    char a[200], b[200];
    memset(a, 'x', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(b, a, sizeof b);
    b[150] = 'y';
    CHECK_UINT_EQ(burst_at(rl, a, NULL, t, 10, &sup), 10);
    CHECK_UINT_EQ(burst_at(rl, b, NULL, t, 10, &sup), 0);
    fv_lograte_free(rl);

    /* a table of 4 slots (one set): a fifth pair evicts the least recently used */
    CHECK_INT_EQ(fv_lograte_new(4, 2, 1000, &rl), 0);
    char name[16];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "p%d", i);
        CHECK_UINT_EQ(burst_at(rl, name, "e", (uint64_t)i, 5, &sup), 2);
    }
    CHECK_UINT_EQ(burst_at(rl, "p4", "e", 10, 5, &sup), 2); /* took p0's slot */
    CHECK_UINT_EQ(burst_at(rl, "p1", "e", 11, 5, &sup), 0); /* p1 still remembered */
    CHECK_UINT_EQ(burst_at(rl, "p0", "e", 12, 5, &sup), 2); /* p0 forgotten: full again */
    CHECK_UINT_EQ(sup, 0);
    CHECK_UINT_EQ(fv_lograte_suppressed_total(rl), 4 * 3 + 3 + 5 + 3);
    fv_lograte_free(rl);
    fv_lograte_free(NULL);
    return 0;
}
