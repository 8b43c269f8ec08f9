/* test_backoff.c - the reconnect delay: equal jitter over a capped exponential. */
#include "fv_conn.h"
#include "fv_test.h"

int main(void)
{
    /* attempt 0: cap = base; delay in [base/2, base]. */
    CHECK_UINT_EQ(fv_backoff_delay_ms(0, 500, 30000, 0), 250);
    CHECK_UINT_EQ(fv_backoff_delay_ms(0, 500, 30000, 250), 500);
    CHECK_UINT_EQ(fv_backoff_delay_ms(0, 500, 30000, 251), 250); /* rnd mod 251 */
    /* doubling */
    CHECK_UINT_EQ(fv_backoff_delay_ms(1, 500, 30000, 0), 500);
    CHECK_UINT_EQ(fv_backoff_delay_ms(3, 500, 30000, 0), 2000);
    CHECK_UINT_EQ(fv_backoff_delay_ms(3, 500, 30000, 2000), 4000);
    /* capped, also for absurd attempt counts (no overflow) */
    CHECK_UINT_EQ(fv_backoff_delay_ms(10, 500, 30000, 0), 15000);
    CHECK_UINT_EQ(fv_backoff_delay_ms(10, 500, 30000, 15000), 30000);
    CHECK_UINT_EQ(fv_backoff_delay_ms(4000000000u, 500, 30000, 0xffffffffu) <= 30000, 1);
    CHECK_UINT_EQ(fv_backoff_delay_ms(4000000000u, 500, 30000, 0) >= 15000, 1);
    /* every delay lies in [cap/2, cap] and the draws spread over the range */
    for (unsigned a = 0; a < 12; a++) {
        uint64_t cap = 100;
        for (unsigned i = 0; i < a && cap < 5000; i++)
            cap *= 2;
        if (cap > 5000)
            cap = 5000;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (uint32_t r = 0; r <= cap; r++) {
            uint64_t d = fv_backoff_delay_ms(a, 100, 5000, r);
            CHECK(d >= cap - cap / 2 && d <= cap);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        CHECK_UINT_EQ(lo, cap - cap / 2);
        CHECK_UINT_EQ(hi, cap);
    }
    /* base 0 stays 0; base 1 */
    CHECK_UINT_EQ(fv_backoff_delay_ms(5, 0, 100, 12345), 0);
    CHECK_UINT_EQ(fv_backoff_delay_ms(0, 1, 100, 12345), 1);
    return 0;
}
