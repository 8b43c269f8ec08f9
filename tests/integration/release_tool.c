/* release_tool.c - fv-release-tool: signs a model release the way the coordinator does
 * (protocols/fv_release.h: fv_release_sign), for tests of the bank side (fedvault-serve,
 * the agent's model directory) that need releases without running a federation.
 *
 *   fv-release-tool --key KEY.pem --cert CERT.pem --federation F --release N
 *                   --label stable|canary|backup --version V --model FILE --out DIR
 *                   [--kind final] [--model-bytes N]
 * writes DIR/<sha256>.fvm (the model's bytes) and DIR/<sha256>.release.json (the
 * envelope), plain writes (tests then tamper with copies), and prints the SHA-256.
 * --model-bytes overrides the manifest's length (a test of a truncated file makes the
 * manifest and then cuts the file). Exit 0, or 1 with a sentence.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "fv_release.h"
#include "fv_tls.h"

static char *slurp(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap + 1);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    buf[len] = '\0';
    *ret_len = len;
    return buf;
}

static int put(const char *dir, const char *name, const char *ext, const void *buf, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "fv-release-tool: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"key", required_argument, NULL, 'k'},
                                         {"cert", required_argument, NULL, 'c'},
                                         {"federation", required_argument, NULL, 'f'},
                                         {"release", required_argument, NULL, 'r'},
                                         {"label", required_argument, NULL, 'l'},
                                         {"version", required_argument, NULL, 'v'},
                                         {"model", required_argument, NULL, 'm'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"kind", required_argument, NULL, 'K'},
                                         {"model-bytes", required_argument, NULL, 'b'},
                                         {NULL, 0, NULL, 0}};
    const char *key = NULL, *cert = NULL, *fed = NULL, *label = NULL, *model = NULL, *out = NULL;
    const char *kind = "final";
    long long release = 0, version = 0, model_bytes = -1;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'k':
            key = optarg;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'f':
            fed = optarg;
            break;
        case 'r':
            release = atoll(optarg);
            break;
        case 'l':
            label = optarg;
            break;
        case 'v':
            version = atoll(optarg);
            break;
        case 'm':
            model = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'K':
            kind = optarg;
            break;
        case 'b':
            model_bytes = atoll(optarg);
            break;
        default:
            return 2;
        }
    }
    if (!key || !cert || !fed || !label || !model || !out || release < 1 || version < 1) {
        fprintf(stderr, "fv-release-tool: --key --cert --federation --release --label --version "
                        "--model --out are required\n");
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    fv_release_t r = {0};
    snprintf(r.federation, sizeof r.federation, "%s", fed);
    r.release = (uint64_t)release;
    if (fv_release_label_parse(label, &r.label) != 0) {
        fprintf(stderr, "fv-release-tool: bad --label %s\n", label);
        return 2;
    }
    r.version = version;
    snprintf(r.kind, sizeof r.kind, "%s", kind);
    snprintf(r.by, sizeof r.by, "%s", "test");
    time_t now = time(NULL);
    strftime(r.released, sizeof r.released, "%Y-%m-%dT%H:%M:%S.000Z", gmtime(&now));
    r.lineage_json = (char *)"null";
    r.report_json = (char *)"null";
    size_t mlen = 0, clen = 0;
    char *mbuf = slurp(model, &mlen), *pem = slurp(cert, &clen);
    if (mbuf == NULL || pem == NULL) {
        fprintf(stderr, "fv-release-tool: cannot read %s or %s\n", model, cert);
        return 1;
    }
    uint8_t h[32];
    crypto_hash_sha256(h, (const uint8_t *)mbuf, mlen);
    for (int i = 0; i < 32; i++)
        snprintf(r.model_sha256 + 2 * i, 3, "%02x", h[i]);
    r.model_bytes = model_bytes >= 0 ? (uint64_t)model_bytes : mlen;
    uint8_t sk[64];
    fv_diag_t d = {""};
    char *env = NULL;
    size_t env_len = 0;
    if (fv_tls_load_sign_key(key, sk, &d) != 0 ||
        fv_release_sign(&r, sk, pem, &env, &env_len, &d) != 0) {
        fprintf(stderr, "fv-release-tool: %s\n", d.msg);
        return 1;
    }
    sodium_memzero(sk, sizeof sk);
    int rc = put(out, r.model_sha256, ".fvm", mbuf, mlen) ||
             put(out, r.model_sha256, ".release.json", env, env_len);
    if (rc == 0)
        printf("%s\n", r.model_sha256);
    free(env);
    free(mbuf);
    free(pem);
    return rc;
}
