/* cmd_serve.c - `fedvault serve CMD --socket PATH`: a client of a running fedvault-serve's
 * admin socket (agent/serve/serve_admin.c): status, promote, rollback, canary P, shadow
 * on|off, reload. One JSON line out, one JSON line back, printed as it came (--json) or
 * as a short sentence; exit 0 when the server answered "ok": true, 1 when it refused (its
 * sentence on stderr), 2 for a usage error.
 *
 * The socket is a local unix socket whose file mode (0600) is the authorization; the
 * answer is bounded (ANSWER_MAX bytes) and must come within TIMEOUT_S.
 */
#include "cli-int.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#define CMD "serve"
#define ANSWER_MAX ((size_t)1 << 20)
#define TIMEOUT_S 60

static const char usage[] =
    "Usage: fedvault serve status|promote|rollback|reload --socket PATH [--json]\n"
    "       fedvault serve canary PERCENT --socket PATH\n"
    "       fedvault serve shadow on|off --socket PATH\n"
    "\n"
    "Commands for a running fedvault-serve over its admin socket (--admin-socket; default\n"
    "serve.sock in its model directory): status shows the resident versions, the breaker and\n"
    "the canary share; promote makes the canary stable; rollback withdraws the canary or\n"
    "puts the previous stable back; canary sets the canary's share of traffic; shadow scores\n"
    "the canary beside stable without answering with it; reload re-reads the CA and CRL and\n"
    "scans the model directory now. A switch is done when the command returns.\n"
    "\n"
    "  --socket PATH   the server's admin socket (required)\n"
    "  --json          print the server's answer as JSON\n"
    "  -h, --help      this text\n";

static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "fedvault %s: %s%s\nTry 'fedvault %s --help'.\n", CMD, msg, arg, CMD);
    return 2;
}

/* Sends line, reads one line back into *ret (malloc'd). 0, or 1 with a message printed. */
static int roundtrip(const char *path, const char *line, char **ret)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "fedvault %s: --socket %s: path too long\n", CMD, path);
        return 1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "fedvault %s: cannot connect to %s: %s (is fedvault-serve running?)\n", CMD,
                path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    struct timeval tv = {.tv_sec = TIMEOUT_S};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t n = strlen(line), off = 0;
    while (off < n) {
        ssize_t w = write(fd, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "fedvault %s: %s: write: %s\n", CMD, path, strerror(errno));
            close(fd);
            return 1;
        }
        off += (size_t)w;
    }
    char *buf = malloc(ANSWER_MAX + 1);
    size_t len = 0;
    if (buf == NULL) {
        close(fd);
        return 1;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, ANSWER_MAX - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "fedvault %s: %s: %s before a whole answer\n", CMD, path,
                    r == 0 ? "the server closed the connection" : strerror(errno));
            free(buf);
            close(fd);
            return 1;
        }
        len += (size_t)r;
        if (memchr(buf + len - (size_t)r, '\n', (size_t)r) != NULL)
            break;
        if (len == ANSWER_MAX) {
            fprintf(stderr, "fedvault %s: %s: answer over %zu bytes\n", CMD, path, ANSWER_MAX);
            free(buf);
            close(fd);
            return 1;
        }
    }
    close(fd);
    buf[len] = '\0';
    *ret = buf;
    return 0;
}

int fv_cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *sock = NULL;
    bool as_json = false;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 's':
            sock = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            return usage_error("unknown option ", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("a command is needed: status, promote, rollback, canary, shadow, "
                           "reload",
                           "");
    if (sock == NULL)
        return usage_error("--socket PATH is required", "");
    const char *cmd = argv[optind];
    const char *arg = optind + 1 < argc ? argv[optind + 1] : NULL;
    int n_args = argc - optind - 1;
    json_t *req = NULL;
    if (strcmp(cmd, "canary") == 0) {
        char *end;
        double p = arg != NULL ? strtod(arg, &end) : 0;
        if (arg == NULL || *end != '\0' || end == arg || !(p >= 0 && p <= 100) || n_args != 1)
            return usage_error("canary takes one PERCENT, 0..100", "");
        req = json_pack("{s:s,s:f}", "cmd", "canary", "percent", p);
    } else if (strcmp(cmd, "shadow") == 0) {
        if (arg == NULL || n_args != 1 || (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0))
            return usage_error("shadow takes on or off", "");
        req = json_pack("{s:s,s:b}", "cmd", "shadow", "on", strcmp(arg, "on") == 0);
    } else if (strcmp(cmd, "status") == 0 || strcmp(cmd, "promote") == 0 ||
               strcmp(cmd, "rollback") == 0 || strcmp(cmd, "reload") == 0) {
        if (n_args != 0)
            return usage_error("unexpected argument ", arg);
        req = json_pack("{s:s}", "cmd", cmd);
    } else {
        return usage_error("unknown command ", cmd);
    }
    char *line = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (line == NULL)
        return 1;
    size_t n = strlen(line);
    char *full = malloc(n + 2);
    if (full == NULL) {
        free(line);
        return 1;
    }
    memcpy(full, line, n);
    full[n] = '\n';
    full[n + 1] = '\0';
    free(line);
    char *ans = NULL;
    int rc = roundtrip(sock, full, &ans);
    free(full);
    if (rc != 0)
        return rc;
    json_error_t je;
    json_t *a = json_loads(ans, JSON_DISABLE_EOF_CHECK, &je);
    bool ok = json_is_true(json_object_get(a, "ok"));
    if (a == NULL) {
        fprintf(stderr, "fedvault %s: %s: the answer is not JSON: %s\n", CMD, sock, je.text);
        rc = 1;
    } else if (!ok) {
        const char *why = json_string_value(json_object_get(a, "error"));
        fprintf(stderr, "fedvault %s %s: refused: %s\n", CMD, cmd, why != NULL ? why : "?");
        rc = 1;
    } else if (as_json || strcmp(cmd, "status") == 0 || strcmp(cmd, "reload") == 0) {
        char *t = json_dumps(a, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (t != NULL)
            puts(t);
        free(t);
    } else {
        printf("%s: done\n", cmd);
    }
    json_decref(a);
    free(ans);
    return rc;
}
