/* gen_release_corpus.c - writes fuzz_release's fixed PKI (fuzz_release_pki.h) and its
 * seeds (corpus/release/) from a real PKI made with fv_pki_* in a temporary directory.
 * Run by hand (not a test); rerun both outputs together, since the seeds are signed by the
 * header's keys:
 *
 *   ninja -C build tests/fuzz/gen_release_corpus &&
 *   build/tests/fuzz/gen_release_corpus tests/fuzz/corpus/release tests/fuzz/fuzz_release_pki.h &&
 *   clang-format -i tests/fuzz/fuzz_release_pki.h
 *
 * The header holds federation "fuzz-fed"'s CA certificate and CRL (PEM), its coordinator's
 * certificate and Ed25519 seed (a test key made for this purpose, nothing else trusts it),
 * and FUZZ_RELEASE_NOW, the generation time: the target verifies at that fixed time, so
 * the seeds verify on any later day.
 *
 * Seeds: valid-* verify (stable with lineage and report, canary without, backup with
 * unicode in the lineage); bad-* are refused at a different check each: an agent's
 * signature, another federation's release and its coordinator, a flipped signature bit,
 * an unknown manifest key, an unknown envelope key, a non-canonical manifest, a wrong type,
 * a cut envelope (half, all but one byte), not an object, and bytes that are not JSON.
 */
#define _GNU_SOURCE /* mkdtemp, nftw */
#include <ftw.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fv_crypto.h"
#include "fv_file.h"
#include "fv_pki.h"
#include "fv_release.h"

#define ADDR "127.0.0.1:7443"

static char base[256];

static void die(const char *what, const fv_diag_t *d)
{
    fprintf(stderr, "gen_release_corpus: %s: %s\n", what, d ? d->msg : "");
    exit(1);
}

static char *slurp(const char *dir, const char *file)
{
    char p[512], *buf = NULL;
    size_t n;
    fv_diag_t d = {{0}};
    snprintf(p, sizeof p, "%s/%s/%s", base, dir, file);
    if (fv_file_read_all(p, 65536, &buf, &n, NULL, &d) < 0)
        die(p, &d);
    return buf;
}

static void kit(const char *dir, const char *name, fv_role_t role, uint8_t sk[64])
{
    char p[512];
    fv_diag_t d = {{0}};
    snprintf(p, sizeof p, "%s/%s", base, dir);
    if (fv_pki_issue(p, name, role, ADDR, NULL, &d) < 0)
        die("issue", &d);
    snprintf(p, sizeof p, "%s/%s/%s/key.pem", base, dir, name);
    if (fv_tls_load_sign_key(p, sk, &d) < 0)
        die("key", &d);
}

static const char *outdir;

static void put(const char *name, const char *buf, size_t len)
{
    char p[1024];
    fv_diag_t d = {{0}};
    snprintf(p, sizeof p, "%s/%s", outdir, name);
    if (fv_file_write_atomic(p, buf, len, 0644, &d) < 0)
        die(p, &d);
}

static void release_of(fv_release_t *r, const char *fed, fv_release_label_t l, int with_json)
{
    uint8_t h[32];
    static const char model[] = "not a real model, only bytes to hash";
    memset(r, 0, sizeof *r);
    snprintf(r->federation, sizeof r->federation, "%s", fed);
    r->release = 3 + (uint64_t)l;
    r->label = l;
    r->version = 4;
    fv_sha256(h, model, sizeof model - 1);
    sodium_bin2hex(r->model_sha256, sizeof r->model_sha256, h, 32);
    r->model_bytes = sizeof model - 1;
    if (with_json)
        memset(r->job, 'c', 64);
    snprintf(r->kind, sizeof r->kind, "%s", l == FV_RELEASE_BACKUP ? "final" : "student");
    snprintf(r->released, sizeof r->released, "2026-12-06T18:40:00.000Z");
    snprintf(r->by, sizeof r->by, "admin");
    if (with_json == 1) {
        r->lineage_json = "{\"job\":\"cc\",\"round\":9,\"parents\":[1,2,3]}";
        r->report_json = "{\"auc_teacher\":0.81,\"auc_student\":0.8,\"ratio\":12.5}";
    } else if (with_json == 2) {
        r->lineage_json = "{\"note\":\"r\\u00e9sum\\u00e9\",\"round\":1}";
    }
}

static char *sign(const fv_release_t *r, const uint8_t sk[64], const char *cert, size_t *n)
{
    char *env = NULL;
    fv_diag_t d = {{0}};
    if (fv_release_sign(r, sk, cert, &env, n, &d) < 0)
        die("sign", &d);
    return env;
}

/* The envelope with its manifest replaced by text, re-signed by sk (flip >= 0: that
 * signature byte flipped), and an extra key if given. */
static char *resign(const char *text, const uint8_t sk[64], const char *cert, int flip,
                    const char *extra)
{
    uint8_t sig[64];
    char b64[89];
    fv_sign(sig, text, strlen(text), sk);
    if (flip >= 0)
        sig[flip] ^= 0x20;
    sodium_bin2base64(b64, sizeof b64, sig, 64, sodium_base64_VARIANT_ORIGINAL);
    json_t *o = json_pack("{s:s,s:s,s:s}", "manifest", text, "sig", b64, "cert", cert);
    if (extra != NULL)
        json_object_set_new(o, extra, json_integer(1));
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

static char *manifest_of(const char *env)
{
    json_t *o = json_loads(env, 0, NULL);
    char *m = strdup(json_string_value(json_object_get(o, "manifest")));
    json_decref(o);
    return m;
}

static char *replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    if (p == NULL)
        die(from, NULL);
    char *o = malloc(strlen(s) - strlen(from) + strlen(to) + 1);
    memcpy(o, s, (size_t)(p - s));
    strcpy(o + (p - s), to);
    strcat(o, p + strlen(from));
    return o;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* A PEM as a C string literal, line by line. */
static void c_string(FILE *f, const char *name, const char *pem)
{
    fprintf(f, "static const char %s[] =\n", name);
    for (const char *p = pem; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(f, "    \"%.*s%s\"\n", (int)n, p, nl ? "\\n" : "");
        p += n + (nl ? 1 : 0);
    }
    fprintf(f, "    ;\n");
}

int main(int argc, char **argv)
{
    fv_diag_t d = {{0}};
    uint8_t sk_coord[64], sk_agent[64], sk_other[64];
    char p[512], hex[129];
    size_t n;

    if (argc != 3) {
        fprintf(stderr, "usage: gen_release_corpus OUTDIR HEADER\n");
        return 2;
    }
    outdir = argv[1];
    if (fv_crypto_init() < 0)
        die("libsodium", NULL);
    int64_t now = (int64_t)time(NULL);
    snprintf(base, sizeof base, "/tmp/fv-gen-release-XXXXXX");
    if (mkdtemp(base) == NULL)
        die("mkdtemp", NULL);
    snprintf(p, sizeof p, "%s/f1", base);
    if (fv_pki_ca_create(p, "fuzz-fed", NULL, &d) < 0)
        die("ca", &d);
    snprintf(p, sizeof p, "%s/f2", base);
    if (fv_pki_ca_create(p, "other-fed", NULL, &d) < 0)
        die("ca2", &d);
    kit("f1", "coord", FV_ROLE_COORDINATOR, sk_coord);
    kit("f1", "bank-a", FV_ROLE_AGENT, sk_agent);
    kit("f2", "coord", FV_ROLE_COORDINATOR, sk_other);
    char *ca = slurp("f1", "ca/ca.pem"), *crl = slurp("f1", "ca/crl.pem"),
         *cert = slurp("f1", "coord/cert.pem"), *cert_agent = slurp("f1", "bank-a/cert.pem"),
         *cert_other = slurp("f2", "coord/cert.pem");

    FILE *h = fopen(argv[2], "w");
    if (h == NULL)
        die(argv[2], NULL);
    fprintf(h, "/* fuzz_release_pki.h - written by gen_release_corpus.c: do not edit. The fixed\n"
               " * PKI of fuzz_release (federation \"fuzz-fed\"); the coordinator's seed is a\n"
               " * test key that nothing else trusts. */\n"
               "#ifndef FUZZ_RELEASE_PKI_H\n#define FUZZ_RELEASE_PKI_H\n\n"
               "#include <stdint.h>\n\n");
    fprintf(h, "#define FUZZ_RELEASE_NOW ((int64_t)%lld)\n\n", (long long)now);
    sodium_bin2hex(hex, sizeof hex, sk_coord, 32);
    fprintf(h, "static const char fuzz_release_coord_seed_hex[] = \"%s\";\n\n", hex);
    c_string(h, "fuzz_release_ca_pem", ca);
    c_string(h, "fuzz_release_crl_pem", crl);
    c_string(h, "fuzz_release_coord_cert_pem", cert);
    fprintf(h, "\n#endif\n");
    fclose(h);

    fv_release_t r;
    release_of(&r, "fuzz-fed", FV_RELEASE_STABLE, 1);
    char *env = sign(&r, sk_coord, cert, &n);
    put("valid-stable", env, n);
    put("bad-cut-half", env, n / 2);
    put("bad-cut-one", env, n - 1);
    char *man = manifest_of(env);
    free(env);
    release_of(&r, "fuzz-fed", FV_RELEASE_CANARY, 0);
    env = sign(&r, sk_coord, cert, &n);
    put("valid-canary-null", env, n);
    free(env);
    release_of(&r, "fuzz-fed", FV_RELEASE_BACKUP, 2);
    env = sign(&r, sk_coord, cert, &n);
    put("valid-backup-unicode", env, n);
    free(env);
    env = resign(man, sk_agent, cert_agent, -1, NULL);
    put("bad-agent-signer", env, strlen(env));
    free(env);
    release_of(&r, "other-fed", FV_RELEASE_STABLE, 1);
    env = sign(&r, sk_other, cert_other, &n);
    put("bad-other-federation", env, n);
    free(env);
    env = resign(man, sk_other, cert_other, -1, NULL);
    put("bad-other-coordinator", env, strlen(env));
    free(env);
    env = resign(man, sk_coord, cert, 5, NULL);
    put("bad-sig-bit", env, strlen(env));
    free(env);
    env = resign(man, sk_coord, cert, -1, "extra");
    put("bad-envelope-key", env, strlen(env));
    free(env);
    char *m2 = replace(man, "{\"by\"", "{\"bonus\":true,\"by\"");
    env = resign(m2, sk_coord, cert, -1, NULL);
    put("bad-manifest-key", env, strlen(env));
    free(env);
    free(m2);
    m2 = replace(man, "{\"by\"", "{ \"by\"");
    env = resign(m2, sk_coord, cert, -1, NULL);
    put("bad-not-canonical", env, strlen(env));
    free(env);
    free(m2);
    m2 = replace(man, "\"version\":4", "\"version\":\"4\"");
    env = resign(m2, sk_coord, cert, -1, NULL);
    put("bad-wrong-type", env, strlen(env));
    free(env);
    free(m2);
    put("bad-array", "[{\"manifest\":\"{}\"}]", 19);
    put("bad-junk", "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
    put("bad-empty-object", "{}", 2);

    free(man);
    free(ca);
    free(crl);
    free(cert);
    free(cert_agent);
    free(cert_other);
    nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
