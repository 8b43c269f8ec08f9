/* test_prom.c - the Prometheus registry (rendering, labels, escaping, caps, names) and
 * its HTTP endpoint in-process: the server runs on a libuv loop in the main thread, a
 * client thread talks to it over blocking sockets on 127.0.0.1 and checks the answers,
 * then wakes the loop (uv_async_send) to stop the server; the loop must close cleanly.
 */
#include "fv_prom.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "fv_test.h"

static char *render(const fv_prom_t *p)
{
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(fv_prom_render(p, &text, &len), NULL);
    CHECK_UINT_EQ(strlen(text), len);
    return text;
}

static size_t count_substr(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *q = strstr(hay, needle); q != NULL; q = strstr(q + 1, needle))
        n++;
    return n;
}

static void test_empty(void)
{
    fv_prom_t *p;
    CHECK_OK(fv_prom_new(&p), NULL);
    char *t = render(p);
    CHECK_STR_EQ(t, "");
    free(t);
    fv_prom_free(p);
    fv_prom_free(NULL);
}

static void test_counter_gauge(void)
{
    fv_prom_t *p;
    fv_prom_metric_t *c, *g, *g2;
    CHECK_OK(fv_prom_new(&p), NULL);
    CHECK_OK(fv_prom_counter(p, "fv_rounds_total", "Rounds finished.", NULL, &c), NULL);
    CHECK_OK(fv_prom_gauge(p, "fv_peers", "Connected peers.", NULL, &g), NULL);
    CHECK_OK(fv_prom_gauge(p, "fv_odd", NULL, NULL, &g2), NULL);

    char *t = render(p); /* unlabelled series exist from the start */
    CHECK_STR_EQ(t, "# HELP fv_rounds_total Rounds finished.\n"
                    "# TYPE fv_rounds_total counter\n"
                    "fv_rounds_total 0\n"
                    "# HELP fv_peers Connected peers.\n"
                    "# TYPE fv_peers gauge\n"
                    "fv_peers 0\n"
                    "# HELP fv_odd \n"
                    "# TYPE fv_odd gauge\n"
                    "fv_odd 0\n");
    free(t);

    fv_prom_add(c, NULL, 1);
    fv_prom_add(c, NULL, 2.5);
    fv_prom_add(c, NULL, -1);  /* a counter never goes down: dropped */
    fv_prom_add(c, NULL, NAN); /* dropped */
    fv_prom_set(g, NULL, 7);
    fv_prom_add(g, NULL, -1.5);
    fv_prom_set(g2, NULL, 0.1);
    t = render(p);
    CHECK_CONTAINS(t, "\nfv_rounds_total 3.5\n");
    CHECK_CONTAINS(t, "\nfv_peers 5.5\n");
    CHECK_CONTAINS(t, "\nfv_odd 0.1\n"); /* shortest round-trip form, not 0.1000...01 */
    free(t);

    /* Numbers read back exactly; non-finite spelled as Prometheus does. */
    const double vals[] = {1.0 / 3, 1e300, -2.5e-300, 123456789012345678.0, 4.9e-324};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        fv_prom_set(g2, NULL, vals[i]);
        t = render(p);
        const char *line = strstr(t, "\nfv_odd ");
        CHECK(line != NULL);
        double back = strtod(line + strlen("\nfv_odd "), NULL);
        if (back != vals[i])
            FV__FAIL("%.17g printed as %s", vals[i], line + 1);
        free(t);
    }
    fv_prom_set(g2, NULL, INFINITY);
    t = render(p);
    CHECK_CONTAINS(t, "\nfv_odd +Inf\n");
    free(t);
    fv_prom_set(g2, NULL, -INFINITY);
    t = render(p);
    CHECK_CONTAINS(t, "\nfv_odd -Inf\n");
    free(t);
    fv_prom_set(g2, NULL, NAN);
    t = render(p);
    CHECK_CONTAINS(t, "\nfv_odd NaN\n");
    free(t);
    fv_prom_free(p);
}

static void test_histogram(void)
{
    fv_prom_t *p;
    fv_prom_metric_t *h, *hl;
    const double bounds[] = {0.5, 1, 10};
    CHECK_OK(fv_prom_new(&p), NULL);
    CHECK_OK(fv_prom_histogram(p, "fv_round_seconds", "Round duration.", NULL, bounds, 3, &h),
             NULL);
    CHECK_OK(fv_prom_histogram(p, "fv_phase_seconds", "Phase duration.", "phase", bounds, 3, &hl),
             NULL);
    fv_prom_observe(h, NULL, 0.5); /* on a bound: counted in that bucket (le = <=) */
    fv_prom_observe(h, NULL, 1);
    fv_prom_observe(h, NULL, 5);
    fv_prom_observe(h, NULL, 100); /* only in +Inf */
    fv_prom_observe(h, NULL, NAN); /* dropped */
    fv_prom_observe(hl, "advertise", 0.25);
    fv_prom_observe(hl, "unmask", 20);
    fv_prom_observe(hl, "advertise", 2);
    char *t = render(p);
    CHECK_STR_EQ(t, "# HELP fv_round_seconds Round duration.\n"
                    "# TYPE fv_round_seconds histogram\n"
                    "fv_round_seconds_bucket{le=\"0.5\"} 1\n"
                    "fv_round_seconds_bucket{le=\"1\"} 2\n"
                    "fv_round_seconds_bucket{le=\"10\"} 3\n"
                    "fv_round_seconds_bucket{le=\"+Inf\"} 4\n"
                    "fv_round_seconds_sum 106.5\n"
                    "fv_round_seconds_count 4\n"
                    "# HELP fv_phase_seconds Phase duration.\n"
                    "# TYPE fv_phase_seconds histogram\n"
                    "fv_phase_seconds_bucket{phase=\"advertise\",le=\"0.5\"} 1\n"
                    "fv_phase_seconds_bucket{phase=\"advertise\",le=\"1\"} 1\n"
                    "fv_phase_seconds_bucket{phase=\"advertise\",le=\"10\"} 2\n"
                    "fv_phase_seconds_bucket{phase=\"advertise\",le=\"+Inf\"} 2\n"
                    "fv_phase_seconds_sum{phase=\"advertise\"} 2.25\n"
                    "fv_phase_seconds_count{phase=\"advertise\"} 2\n"
                    "fv_phase_seconds_bucket{phase=\"unmask\",le=\"0.5\"} 0\n"
                    "fv_phase_seconds_bucket{phase=\"unmask\",le=\"1\"} 0\n"
                    "fv_phase_seconds_bucket{phase=\"unmask\",le=\"10\"} 0\n"
                    "fv_phase_seconds_bucket{phase=\"unmask\",le=\"+Inf\"} 1\n"
                    "fv_phase_seconds_sum{phase=\"unmask\"} 20\n"
                    "fv_phase_seconds_count{phase=\"unmask\"} 1\n");
    free(t);
    fv_prom_free(p);
}

static void test_labels_escaping(void)
{
    fv_prom_t *p;
    fv_prom_metric_t *c, *two;
    CHECK_OK(fv_prom_new(&p), NULL);
    CHECK_OK(
        fv_prom_counter(p, "fv_refused_total", "Refused: a \\ b\nsecond \"line\"", "reason", &c),
        NULL);
    const char *names[] = {"phase", "reason"};
    CHECK_OK(fv_prom_family(p, FV_PROM_COUNTER, "fv_drop_total", "Drops.", names, 2, NULL, 0, &two),
             NULL);
    char *t = render(p); /* labelled families have no series until used */
    CHECK_STR_EQ(t, "# HELP fv_refused_total Refused: a \\\\ b\\nsecond \"line\"\n"
                    "# TYPE fv_refused_total counter\n"
                    "# HELP fv_drop_total Drops.\n"
                    "# TYPE fv_drop_total counter\n");
    free(t);

    fv_prom_add(c, "bad certificate", 1);
    fv_prom_add(c, "a\"b\\c\nd", 2);
    fv_prom_add(c, "bad certificate", 1);
    fv_prom_add(c, NULL, 1); /* NULL in a labelled family: the empty value */
    const char *v1[] = {"advertise", "timeout"};
    const char *v2[] = {"unmask", NULL};
    fv_prom_addv(two, v1, 3);
    fv_prom_addv(two, v2, 1);
    fv_prom_addv(two, v1, 1);
    t = render(p);
    CHECK_STR_EQ(t, "# HELP fv_refused_total Refused: a \\\\ b\\nsecond \"line\"\n"
                    "# TYPE fv_refused_total counter\n"
                    "fv_refused_total{reason=\"bad certificate\"} 2\n"
                    "fv_refused_total{reason=\"a\\\"b\\\\c\\nd\"} 2\n"
                    "fv_refused_total{reason=\"\"} 1\n"
                    "# HELP fv_drop_total Drops.\n"
                    "# TYPE fv_drop_total counter\n"
                    "fv_drop_total{phase=\"advertise\",reason=\"timeout\"} 4\n"
                    "fv_drop_total{phase=\"unmask\",reason=\"\"} 1\n");
    free(t);
    fv_prom_free(p);
}

static void test_label_cap(void)
{
    fv_prom_t *p;
    fv_prom_metric_t *c, *g;
    CHECK_OK(fv_prom_new(&p), NULL);
    CHECK_OK(fv_prom_counter(p, "fv_cap_total", "Cap.", "v", &c), NULL);
    CHECK_OK(fv_prom_gauge(p, "fv_bad", "Bad values.", "v", &g), NULL);
    char val[32];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < FV_PROM_MAX_SERIES + 50; i++) {
            snprintf(val, sizeof val, "peer-%d", i);
            fv_prom_add(c, val, 1);
        }
    }
    char *t = render(p);
    CHECK_UINT_EQ(count_substr(t, "fv_cap_total{v="), FV_PROM_MAX_SERIES + 1);
    CHECK_CONTAINS(t, "fv_cap_total{v=\"peer-0\"} 2\n");
    snprintf(val, sizeof val, "{v=\"peer-%d\"} 2\n", FV_PROM_MAX_SERIES - 1);
    CHECK_CONTAINS(t, val);
    snprintf(val, sizeof val, "{v=\"peer-%d\"}", FV_PROM_MAX_SERIES);
    CHECK(strstr(t, val) == NULL);
    CHECK_CONTAINS(t, "fv_cap_total{v=\"other\"} 100\n");
    free(t);

    /* Values too long or not UTF-8 count as "other" too, even under the cap. */
    char longv[FV_PROM_MAX_VALUE_BYTES + 2];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    fv_prom_set(g, "ok", 1);
    fv_prom_set(g, longv, 2);
    fv_prom_add(g, "\xff\xfe", 3);
    fv_prom_add(g, "\xc0\xaf", 4);     /* overlong '/' */
    fv_prom_add(g, "\xed\xa0\x80", 5); /* surrogate */
    fv_prom_set(g, "caf\xc3\xa9", 6);  /* valid UTF-8: its own series */
    longv[FV_PROM_MAX_VALUE_BYTES] = '\0';
    fv_prom_set(g, longv, 7); /* exactly at the length cap: its own series */
    t = render(p);
    CHECK_CONTAINS(t, "fv_bad{v=\"ok\"} 1\n");
    CHECK_CONTAINS(t, "fv_bad{v=\"other\"} 14\n");
    CHECK_CONTAINS(t, "fv_bad{v=\"caf\xc3\xa9\"} 6\n");
    CHECK_UINT_EQ(count_substr(t, "fv_bad{v="), 4);
    free(t);
    fv_prom_free(p);
}

static void test_invalid(void)
{
    fv_prom_t *p;
    fv_prom_metric_t *m = NULL;
    CHECK_OK(fv_prom_new(&p), NULL);
    const char *bad_names[] = {"", "1abc", "a-b", "a b", "é", "a\n", "fv_x{"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        CHECK_INT_EQ(fv_prom_counter(p, bad_names[i], "h", NULL, &m), FV_EINVAL);
    CHECK_INT_EQ(fv_prom_counter(p, NULL, "h", NULL, &m), FV_EINVAL);
    CHECK_OK(fv_prom_counter(p, "a:b_C9", "h", NULL, &m), NULL);
    CHECK_OK(fv_prom_gauge(p, ":x", "h", NULL, &m), NULL);
    CHECK_OK(fv_prom_gauge(p, "_y", "h", "_l9", &m), NULL);
    CHECK_INT_EQ(fv_prom_gauge(p, "a:b_C9", "h", NULL, &m), FV_EDUP);

    /* label names: no colon, no "__" prefix, no "le" in a histogram, distinct */
    CHECK_INT_EQ(fv_prom_counter(p, "c1", "h", "a:b", &m), FV_EINVAL);
    CHECK_INT_EQ(fv_prom_counter(p, "c1", "h", "__name", &m), FV_EINVAL);
    CHECK_INT_EQ(fv_prom_counter(p, "c1", "h", "", &m), FV_EINVAL);
    CHECK_INT_EQ(fv_prom_counter(p, "c1", "h", "9a", &m), FV_EINVAL);
    const double b[] = {1, 2};
    CHECK_INT_EQ(fv_prom_histogram(p, "h1", "h", "le", b, 2, &m), FV_EINVAL);
    CHECK_OK(fv_prom_counter(p, "c_le", "h", "le", &m), NULL); /* fine outside histograms */
    const char *dup[] = {"x", "x"};
    CHECK_INT_EQ(fv_prom_family(p, FV_PROM_GAUGE, "g1", "h", dup, 2, NULL, 0, &m), FV_EINVAL);
    const char *four[] = {"x", "y", "z", "w"}; /* one more than FV_PROM_MAX_LABELS (3) */
    CHECK_INT_EQ(fv_prom_family(p, FV_PROM_GAUGE, "g1", "h", four, 4, NULL, 0, &m), FV_EINVAL);

    /* bounds: finite, strictly increasing, 1..FV_PROM_MAX_BOUNDS; none for other types */
    const double same[] = {1, 1}, down[] = {2, 1}, nan_b[] = {1, NAN}, inf_b[] = {INFINITY};
    CHECK_INT_EQ(fv_prom_histogram(p, "h1", "h", NULL, same, 2, &m), FV_EINVAL);
    CHECK_INT_EQ(fv_prom_histogram(p, "h1", "h", NULL, down, 2, &m), FV_EINVAL);
    CHECK_INT_EQ(fv_prom_histogram(p, "h1", "h", NULL, nan_b, 2, &m), FV_EINVAL);
    CHECK_INT_EQ(fv_prom_histogram(p, "h1", "h", NULL, inf_b, 1, &m), FV_EINVAL);
    CHECK_INT_EQ(fv_prom_histogram(p, "h1", "h", NULL, NULL, 0, &m), FV_EINVAL);
    CHECK_INT_EQ(fv_prom_histogram(p, "h1", "h", NULL, b, 0, &m), FV_EINVAL);
    double many[FV_PROM_MAX_BOUNDS + 1];
    for (size_t i = 0; i < FV_PROM_MAX_BOUNDS + 1; i++)
        many[i] = (double)i;
    CHECK_INT_EQ(fv_prom_histogram(p, "h1", "h", NULL, many, FV_PROM_MAX_BOUNDS + 1, &m),
                 FV_EINVAL);
    CHECK_OK(fv_prom_histogram(p, "h1", "h", NULL, many, FV_PROM_MAX_BOUNDS, &m), NULL);
    CHECK_INT_EQ(fv_prom_family(p, FV_PROM_GAUGE, "g2", "h", NULL, 0, b, 2, &m), FV_EINVAL);
    fv_prom_free(p);
}

/* ---- HTTP ------------------------------------------------------------------------ */

static fv_prom_server_t *g_srv;
static int g_port;
static char *g_expected_body;
static uv_async_t g_done;
/* fv_prom_server_stats, at each render */
static _Atomic uint64_t g_evicted_at_render, g_refused_at_render;

static void before_render(void *ctx)
{
    uint64_t ev, refused;
    fv_prom_server_stats(ctx, &ev, &refused);
    atomic_store(&g_evicted_at_render, ev);
    atomic_store(&g_refused_at_render, refused);
}
#define N_HELD 3
static int g_held[N_HELD]; /* connections still open when the server stops */

/* A connection from 127.0.0.<src> (0: the default source, 127.0.0.1). */
static int tcp_connect_from(int src)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    if (src != 0) {
        struct sockaddr_in me = {.sin_family = AF_INET};
        me.sin_addr.s_addr = htonl(INADDR_LOOPBACK - 1 + (uint32_t)src);
        if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0)
            FV__FAIL("bind 127.0.0.%d: %s", src, strerror(errno));
    }
    struct timeval tv = {.tv_sec = 15};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        FV__FAIL("connect 127.0.0.1:%d: %s", g_port, strerror(errno));
    return fd;
}

static int tcp_connect(void)
{
    return tcp_connect_from(0);
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            FV__FAIL("send: %s", strerror(errno));
        data += n;
        len -= (size_t)n;
    }
}

/* Reads until the server closes; returns the bytes read (NUL-terminated in buf). A reset
 * after some bytes counts as the end too. */
static size_t recv_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        CHECK(len < cap - 1);
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == ECONNRESET)
            break;
        if (n < 0)
            FV__FAIL("recv: %s", strerror(errno));
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

typedef struct resp {
    int status;
    char raw[65536];
    size_t len;
    const char *body;
    size_t body_len;
} resp_t;

static void check_response_shape(resp_t *r)
{
    CHECK(sscanf(r->raw, "HTTP/1.1 %d ", &r->status) == 1);
    char *end = strstr(r->raw, "\r\n\r\n");
    CHECK(end != NULL);
    r->body = end + 4;
    r->body_len = r->len - (size_t)(r->body - r->raw);
    char *cl = strstr(r->raw, "\r\nContent-Length: ");
    CHECK(cl != NULL && cl < end);
    CHECK_UINT_EQ(strtoull(cl + strlen("\r\nContent-Length: "), NULL, 10), r->body_len);
    CHECK_CONTAINS(r->raw, "\r\nConnection: close\r\n");
    CHECK_CONTAINS(r->raw, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n");
}

static void request(const char *data, size_t len, resp_t *r)
{
    int fd = tcp_connect();
    send_all(fd, data, len);
    r->len = recv_all(fd, r->raw, sizeof r->raw);
    close(fd);
    check_response_shape(r);
}

#define REQ(str, r) request((str), sizeof(str) - 1, (r))

static void client_tests(void)
{
    static resp_t r;

    REQ("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body, g_expected_body);

    REQ("GET /metrics?name[]=x&a=1 HTTP/1.0\n\n", &r); /* query ignored, bare LF is fine */
    CHECK_INT_EQ(r.status, 200);
    CHECK_STR_EQ(r.body, g_expected_body);

    REQ("GET / HTTP/1.1\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 404);
    REQ("GET /metricsx HTTP/1.1\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 404);

    REQ("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 405);
    CHECK_CONTAINS(r.raw, "\r\nAllow: GET\r\n");
    REQ("HEAD /metrics HTTP/1.1\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 405);

    REQ("hello\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 400);
    REQ("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 400);
    REQ("GET  /metrics HTTP/1.1\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 400);
    REQ("GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 400);
    REQ("GET /metrics HTTP/1.1\r\nX: a\rb\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 400);
    REQ("GET metrics HTTP/1.1\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 400);
    REQ("GET /metrics HTTP/2.0\r\n\r\n", &r);
    CHECK_INT_EQ(r.status, 505);
    /* A TLS ClientHello: refused at the first bytes, without waiting for a head end. */
    REQ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", &r);
    CHECK_INT_EQ(r.status, 400);

    /* Head over the cap: 431, while the client is still sending (the server reads and
     * discards the rest before closing, so the answer is not lost to a reset). */
    static char big[3 * FV_PROM_MAX_HEAD_BYTES];
    size_t n = (size_t)snprintf(big, sizeof big, "GET /metrics HTTP/1.1\r\nX-Pad: ");
    memset(big + n, 'a', sizeof big - n);
    request(big, sizeof big, &r);
    CHECK_INT_EQ(r.status, 431);

    /* The head in pieces, the terminator split between two sends. */
    int fd = tcp_connect();
    send_all(fd, "GET /met", 8);
    usleep(50 * 1000);
    send_all(fd, "rics HTTP/1.1\r\n\r", 16);
    usleep(50 * 1000);
    send_all(fd, "\n", 1);
    r.len = recv_all(fd, r.raw, sizeof r.raw);
    close(fd);
    check_response_shape(&r);
    CHECK_INT_EQ(r.status, 200);

    /* Per-source cap: FV_PROM_MAX_CONNS_PER_SOURCE idle connections from 127.0.0.40 are
     * held; the next one from there is closed at once (counted as refused; the scrape
     * that reads the count comes from another address). */
    int idle[FV_PROM_MAX_CONNS];
    CHECK_UINT_EQ(atomic_load(&g_refused_at_render), 0);
    for (size_t i = 0; i < FV_PROM_MAX_CONNS_PER_SOURCE; i++)
        idle[i] = tcp_connect_from(40);
    fd = tcp_connect_from(40);
    CHECK_UINT_EQ(recv_all(fd, r.raw, sizeof r.raw), 0);
    close(fd);
    fd = tcp_connect_from(41);
    send_all(fd, "GET /metrics HTTP/1.1\r\n\r\n", 25);
    r.len = recv_all(fd, r.raw, sizeof r.raw);
    close(fd);
    check_response_shape(&r);
    CHECK_INT_EQ(r.status, 200);
    CHECK_UINT_EQ(atomic_load(&g_refused_at_render), 1);
    for (size_t i = 0; i < FV_PROM_MAX_CONNS_PER_SOURCE; i++)
        close(idle[i]);

    /* Global cap: FV_PROM_MAX_CONNS idle connections from 8 addresses (127.0.0.2-9, 8
     * each; idle[0] first, and it has sent part of a head). A scrape from 127.0.0.1 is
     * still answered: the newcomer evicts the oldest connection, still waiting for its
     * head, of the source holding the most (all hold 8: the oldest of them wins, idle[0];
     * connections of earlier tests still lingering may make evictions start a little
     * earlier, and they take idle[0] first all the same). idle[0] sees the server's
     * close; idle[5], of the same source, was not touched and is answered. */
    CHECK_UINT_EQ(atomic_load(&g_evicted_at_render), 0);
    for (size_t i = 0; i < FV_PROM_MAX_CONNS; i++)
        idle[i] = tcp_connect_from(2 + (int)(i / 8));
    send_all(idle[0], "GET /met", 8);
    fd = tcp_connect();
    send_all(fd, "GET /metrics HTTP/1.1\r\n\r\n", 25);
    r.len = recv_all(fd, r.raw, sizeof r.raw);
    close(fd);
    check_response_shape(&r);
    CHECK_INT_EQ(r.status, 200);
    CHECK(atomic_load(&g_evicted_at_render) >= 1);            /* before this answer */
    CHECK_UINT_EQ(recv_all(idle[0], r.raw, sizeof r.raw), 0); /* evicted, no answer */
    send_all(idle[5], "GET /metrics HTTP/1.1\r\n\r\n", 25);
    r.len = recv_all(idle[5], r.raw, sizeof r.raw);
    check_response_shape(&r);
    CHECK_INT_EQ(r.status, 200);
    for (size_t i = 0; i < FV_PROM_MAX_CONNS; i++)
        close(idle[i]);

    /* A client that sends nothing is closed after the timeout (FV_PROM_TIMEOUT_MS; our
     * receive timeout is 15 s, so a server that never closes fails the test). */
    fd = tcp_connect();
    send_all(fd, "GET /metr", 9);
    CHECK_UINT_EQ(recv_all(fd, r.raw, sizeof r.raw), 0);
    close(fd);

    /* Held open across the stop: the server must close them itself. */
    for (size_t i = 0; i < N_HELD; i++)
        g_held[i] = tcp_connect();
    send_all(g_held[1], "GET /me", 7);
}

static void client_main(void *arg)
{
    (void)arg;
    client_tests();
    CHECK(uv_async_send(&g_done) == 0);
}

static void on_done(uv_async_t *a)
{
    fv_prom_server_stop(g_srv);
    uv_close((uv_handle_t *)a, NULL);
}

static void test_server(void)
{
    fv_prom_t *p;
    fv_prom_metric_t *c, *h;
    CHECK_OK(fv_prom_new(&p), NULL);
    CHECK_OK(fv_prom_counter(p, "fv_refused_total", "Refused connections.", "reason", &c), NULL);
    const double b[] = {0.1, 1};
    CHECK_OK(fv_prom_histogram(p, "fv_round_seconds", "Round time.", NULL, b, 2, &h), NULL);
    fv_prom_add(c, "bad certificate", 3);
    fv_prom_observe(h, NULL, 0.5);
    g_expected_body = render(p);

    uv_loop_t loop;
    CHECK_OK(uv_loop_init(&loop), NULL);
    fv_diag_t d = {{0}};
    CHECK_OK(fv_prom_server_start(&loop, "127.0.0.1", 0, p, &g_srv, &d), &d);
    g_port = fv_prom_server_port(g_srv);
    CHECK(g_port > 0);
    fv_prom_server_set_before_render(g_srv, before_render, g_srv);

    fv_prom_server_t *other = NULL;
    CHECK_INT_EQ(fv_prom_server_start(&loop, "localhost", 0, p, &other, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "'localhost'");
    CHECK_INT_EQ(fv_prom_server_start(&loop, "127.0.0.1", 70000, p, &other, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_prom_server_start(&loop, "127.0.0.1", g_port, p, &other, &d), UV_EADDRINUSE);
    CHECK_CONTAINS(d.msg, "address already in use");
    CHECK(other == NULL);

    CHECK_OK(uv_async_init(&loop, &g_done, on_done), NULL);
    uv_thread_t th;
    CHECK_OK(uv_thread_create(&th, client_main, NULL), NULL);
    CHECK_OK(uv_run(&loop, UV_RUN_DEFAULT), NULL);
    CHECK_OK(uv_thread_join(&th), NULL);
    CHECK_INT_EQ(uv_loop_close(&loop), 0);

    /* The server closed the held connections when it stopped. */
    static char buf[4096];
    for (size_t i = 0; i < N_HELD; i++) {
        CHECK_UINT_EQ(recv_all(g_held[i], buf, sizeof buf), 0);
        close(g_held[i]);
    }
    free(g_expected_body);
    fv_prom_free(p);
}

/* Stop right after start, and with nothing ever connected: the loop still closes. */
static void test_server_stop_at_once(void)
{
    fv_prom_t *p;
    CHECK_OK(fv_prom_new(&p), NULL);
    uv_loop_t loop;
    CHECK_OK(uv_loop_init(&loop), NULL);
    fv_prom_server_t *s;
    CHECK_OK(fv_prom_server_start(&loop, "::1", 0, p, &s, NULL), NULL);
    CHECK(fv_prom_server_port(s) > 0);
    fv_prom_server_stop(s);
    fv_prom_server_stop(NULL);
    CHECK_OK(uv_run(&loop, UV_RUN_DEFAULT), NULL);
    CHECK_INT_EQ(uv_loop_close(&loop), 0);
    fv_prom_free(p);
}

int main(void)
{
    test_empty();
    test_counter_gauge();
    test_histogram();
    test_labels_escaping();
    test_label_cap();
    test_invalid();
    test_server();
    test_server_stop_at_once();
    printf("test_prom: ok\n");
    return 0;
}
