/* test_release.c - signed model releases and the bank's model directory (fv_release_*).
 *
 * A real PKI in a temporary directory (fv_pki_*, as test_trust.c): federation "fed-one"
 * with a coordinator, an agent and an admin, and federation "fed-two" with its own
 * coordinator. Envelopes are signed with the kits' keys (fv_tls_load_sign_key). Tampered
 * envelopes are rebuilt with jansson (and re-signed where the point is to get past the
 * signature to a later check), so each refusal is reached on its own and checked for its
 * code and its sentence.
 */
#define _GNU_SOURCE /* mkdtemp, nftw */
#include <ftw.h>
#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fv_crypto.h"
#include "fv_file.h"
#include "fv_pki.h"
#include "fv_release.h"
#include "fv_test.h"
#include "fv_trust.h"

#define ADDR "127.0.0.1:7443"

static char base[256];
static int64_t now;

typedef struct kit {
    uint8_t sk[64];
    char *cert_pem;
} kit_t;

static void make_ca(const char *dir, const char *fed)
{
    char p[512];
    fv_diag_t d = {{0}};
    snprintf(p, sizeof p, "%s/%s", base, dir);
    CHECK_OK(fv_pki_ca_create(p, fed, NULL, &d), &d);
}

static void issue(const char *dir, const char *name, fv_role_t role, kit_t *k)
{
    char p[512];
    fv_diag_t d = {{0}};
    size_t n;
    snprintf(p, sizeof p, "%s/%s", base, dir);
    CHECK_OK(fv_pki_issue(p, name, role, ADDR, NULL, &d), &d);
    snprintf(p, sizeof p, "%s/%s/%s/key.pem", base, dir, name);
    CHECK_OK(fv_tls_load_sign_key(p, k->sk, &d), &d);
    snprintf(p, sizeof p, "%s/%s/%s/cert.pem", base, dir, name);
    CHECK_OK(fv_file_read_all(p, 65536, &k->cert_pem, &n, NULL, &d), &d);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void sha_hex(char out[65], const uint8_t *buf, size_t len)
{
    uint8_t h[32];
    fv_sha256(h, buf, len);
    sodium_bin2hex(out, 65, h, 32);
}

/* A release of model (buf, len); lineage and report owned by the struct (strdup'd). */
static void make_release(fv_release_t *r, const char *fed, uint64_t counter, fv_release_label_t l,
                         const uint8_t *buf, size_t len)
{
    memset(r, 0, sizeof *r);
    snprintf(r->federation, sizeof r->federation, "%s", fed);
    r->release = counter;
    r->label = l;
    r->version = 12;
    sha_hex(r->model_sha256, buf, len);
    r->model_bytes = len;
    memset(r->job, 'a', 64);
    snprintf(r->kind, sizeof r->kind, "student");
    snprintf(r->released, sizeof r->released, "2026-12-06T18:40:00.000Z");
    snprintf(r->by, sizeof r->by, "alice");
    r->lineage_json = strdup("{\"round\":7,\"job\":\"x\",\"parents\":[3,4]}");
    r->report_json = strdup("{\"auc_drop\":0.0012,\"params\":1234}");
    CHECK(r->lineage_json != NULL && r->report_json != NULL);
}

static void release_clear(fv_release_t *r)
{
    free(r->lineage_json);
    free(r->report_json);
    r->lineage_json = r->report_json = NULL;
}

static char *sign_ok(const fv_release_t *r, const kit_t *k, size_t *len)
{
    char *env = NULL;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_release_sign(r, k->sk, k->cert_pem, &env, len, &d), &d);
    CHECK(strlen(env) == *len);
    return env;
}

/* An envelope of any manifest text, signed by k over exactly that text (sig_flip >= 0:
 * that byte of the signature flipped). */
static char *envelope_of(const char *manifest, const kit_t *k, int sig_flip, const char *extra_key)
{
    uint8_t sig[64];
    char b64[89];
    CHECK_OK(fv_sign(sig, manifest, strlen(manifest), k->sk), NULL);
    if (sig_flip >= 0)
        sig[sig_flip] ^= 0x01;
    sodium_bin2base64(b64, sizeof b64, sig, 64, sodium_base64_VARIANT_ORIGINAL);
    json_t *o = json_pack("{s:s,s:s,s:s}", "manifest", manifest, "sig", b64, "cert", k->cert_pem);
    CHECK(o != NULL);
    if (extra_key != NULL)
        CHECK(json_object_set_new(o, extra_key, json_true()) == 0);
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    CHECK(s != NULL);
    return s;
}

/* The manifest text of an envelope (malloc'd). */
static char *manifest_of(const char *env)
{
    json_t *o = json_loads(env, 0, NULL);
    CHECK(o != NULL);
    char *m = strdup(json_string_value(json_object_get(o, "manifest")));
    json_decref(o);
    CHECK(m != NULL);
    return m;
}

/* Replaces the first occurrence of from by to in s (a new string). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    CHECK(p != NULL);
    size_t n = strlen(s) - strlen(from) + strlen(to);
    char *o = malloc(n + 1);
    CHECK(o != NULL);
    memcpy(o, s, (size_t)(p - s));
    strcpy(o + (p - s), to);
    strcat(o, p + strlen(from));
    return o;
}

static fv_trust_t *trust;

static void refused(const char *env, size_t len, int code, const char *needle)
{
    fv_diag_t d = {{0}};
    fv_release_t *r = (fv_release_t *)(uintptr_t)0x1;
    int rc = fv_release_verify(trust, "rel.json", env, len, now, &r, &d);
    fprintf(stderr, "refused: %s\n", d.msg);
    CHECK_INT_EQ(rc, code);
    CHECK(r == (fv_release_t *)(uintptr_t)0x1); /* untouched */
    CHECK_CONTAINS(d.msg, "rel.json: ");
    CHECK_CONTAINS(d.msg, needle);
}

static void refused_s(const char *env, int code, const char *needle)
{
    refused(env, strlen(env), code, needle);
}

int main(void)
{
    fv_diag_t d = {{0}};
    char p[1024], p2[512];
    kit_t coord, agent, admin, coord2;

    CHECK_OK(fv_crypto_init(), NULL);
    now = (int64_t)time(NULL);
    snprintf(base, sizeof base, "/tmp/fv-test-release-XXXXXX");
    CHECK(mkdtemp(base) != NULL);
    make_ca("f1", "fed-one");
    make_ca("f2", "fed-two");
    issue("f1", "coord", FV_ROLE_COORDINATOR, &coord);
    issue("f1", "bank-a", FV_ROLE_AGENT, &agent);
    issue("f1", "alice", FV_ROLE_ADMIN, &admin);
    issue("f2", "coord2", FV_ROLE_COORDINATOR, &coord2);
    snprintf(p, sizeof p, "%s/f1/ca/ca.pem", base);
    snprintf(p2, sizeof p2, "%s/f1/ca/crl.pem", base);
    CHECK_OK(fv_trust_new(p, p2, &trust, &d), &d);

    /* labels */
    fv_release_label_t lab;
    CHECK_STR_EQ(fv_release_label_name(FV_RELEASE_CANARY), "canary");
    CHECK_STR_EQ(fv_release_label_name((fv_release_label_t)7), "?");
    CHECK_OK(fv_release_label_parse("backup", &lab), NULL);
    CHECK_INT_EQ(lab, FV_RELEASE_BACKUP);
    CHECK_INT_EQ(fv_release_label_parse("Stable", &lab), FV_EINVAL);
    CHECK_INT_EQ(fv_release_label_parse(NULL, &lab), FV_EINVAL);

    uint8_t model[1000];
    for (size_t i = 0; i < sizeof model; i++)
        model[i] = (uint8_t)(i * 7 + 3);

    /* ---- a good envelope verifies and round-trips every field ---- */
    fv_release_t rel;
    make_release(&rel, "fed-one", 5, FV_RELEASE_STABLE, model, sizeof model);
    size_t env_len;
    char *env = sign_ok(&rel, &coord, &env_len);
    fv_release_t *got = NULL;
    CHECK_OK(fv_release_verify(trust, "rel.json", env, env_len, now, &got, &d), &d);
    CHECK_STR_EQ(got->federation, "fed-one");
    CHECK_UINT_EQ(got->release, 5);
    CHECK_INT_EQ(got->label, FV_RELEASE_STABLE);
    CHECK_INT_EQ(got->version, 12);
    CHECK_STR_EQ(got->model_sha256, rel.model_sha256);
    CHECK_UINT_EQ(got->model_bytes, sizeof model);
    CHECK_STR_EQ(got->job, rel.job);
    CHECK_STR_EQ(got->kind, "student");
    CHECK_STR_EQ(got->released, "2026-12-06T18:40:00.000Z");
    CHECK_STR_EQ(got->by, "alice");
    CHECK_STR_EQ(got->lineage_json, "{\"job\":\"x\",\"parents\":[3,4],\"round\":7}");
    CHECK_CONTAINS(got->report_json, "\"params\":1234");
    CHECK_STR_EQ(got->signer.name, "coord");
    CHECK_STR_EQ(got->signer.federation, "fed-one");
    CHECK_INT_EQ(got->signer.role, FV_ROLE_COORDINATOR);
    /* the decoded struct signs to the same bytes (one encoding per manifest) */
    size_t env2_len;
    char *env2 = sign_ok(got, &coord, &env2_len);
    CHECK_UINT_EQ(env2_len, env_len);
    CHECK(memcmp(env, env2, env_len) == 0);
    free(env2);
    /* the model's bytes check; one byte short, one changed, one extra are refused */
    CHECK_OK(fv_release_check_model(got, "m.fvm", model, sizeof model, &d), &d);
    CHECK_INT_EQ(fv_release_check_model(got, "m.fvm", model, sizeof model - 1, &d), FV_EAUTH);
    CHECK_STR_EQ(d.msg, "m.fvm: truncated (999 of 1000 bytes)");
    model[500] ^= 1;
    CHECK_INT_EQ(fv_release_check_model(got, "m.fvm", model, sizeof model, &d), FV_EAUTH);
    CHECK_CONTAINS(d.msg, "m.fvm: hash mismatch (sha256 ");
    CHECK_CONTAINS(d.msg, rel.model_sha256);
    model[500] ^= 1;
    uint8_t longer[1001];
    memcpy(longer, model, sizeof model);
    CHECK_INT_EQ(fv_release_check_model(got, "m.fvm", longer, sizeof longer, &d), FV_EAUTH);
    CHECK_CONTAINS(d.msg, "too long");
    fv_release_free(got);
    /* lineage and report absent: "null" */
    {
        fv_release_t r2 = rel;
        r2.lineage_json = NULL;
        r2.report_json = NULL;
        size_t n;
        char *e = sign_ok(&r2, &coord, &n);
        CHECK_OK(fv_release_verify(trust, "rel.json", e, n, now, &got, &d), &d);
        CHECK_STR_EQ(got->lineage_json, "null");
        CHECK_STR_EQ(got->report_json, "null");
        fv_release_free(got);
        free(e);
    }

    /* ---- refusals ---- */
    char *man = manifest_of(env);
    /* bad signature: a flipped bit of the signature, or a changed manifest byte */
    char *e = envelope_of(man, &coord, 10, NULL);
    refused_s(e, FV_EAUTH, "bad signature");
    free(e);
    {
        char *m2 = replace(man, "\"version\":12", "\"version\":13");
        char *good = envelope_of(man, &coord, -1, NULL);
        json_t *o = json_loads(good, 0, NULL);
        json_object_set_new(o, "manifest", json_string(m2));
        char *s = json_dumps(o, JSON_COMPACT);
        refused_s(s, FV_EAUTH, "bad signature");
        free(s);
        json_decref(o);
        free(good);
        free(m2);
    }
    /* every single-bit flip of the signature is refused */
    for (int i = 0; i < 64; i += 7) {
        e = envelope_of(man, &coord, i, NULL);
        refused_s(e, FV_EAUTH, "bad signature");
        free(e);
    }
    /* another federation's release, signed by its own coordinator */
    {
        fv_release_t r2;
        make_release(&r2, "fed-two", 1, FV_RELEASE_STABLE, model, sizeof model);
        size_t n;
        char *e2 = sign_ok(&r2, &coord2, &n);
        refused(e2, n, FV_EAUTH, "another federation's release ('fed-two'");
        free(e2);
        release_clear(&r2);
        /* ... and one that claims to be ours */
        make_release(&r2, "fed-one", 1, FV_RELEASE_STABLE, model, sizeof model);
        e2 = sign_ok(&r2, &coord2, &n);
        refused(e2, n, FV_EAUTH, "not signed by a coordinator of federation fed-one");
        free(e2);
        release_clear(&r2);
    }
    /* an agent's and an admin's signature */
    e = envelope_of(man, &agent, -1, NULL);
    refused_s(e, FV_EAUTH,
              "not signed by a coordinator of federation fed-one (the signer bank-a "
              "is an agent)");
    free(e);
    e = envelope_of(man, &admin, -1, NULL);
    refused_s(e, FV_EAUTH, "is an admin");
    free(e);
    /* a certificate that is not a PEM certificate */
    {
        kit_t bad = coord;
        bad.cert_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        e = envelope_of(man, &bad, -1, NULL);
        refused_s(e, FV_EAUTH, "not signed by a coordinator");
        free(e);
        bad.cert_pem = "hello";
        e = envelope_of(man, &bad, -1, NULL);
        refused_s(e, FV_EPROTO, "\"cert\" is not one PEM certificate");
        free(e);
    }
    /* at a time past the certificate's validity */
    {
        fv_release_t *r3 = NULL;
        CHECK_INT_EQ(
            fv_release_verify(trust, "rel.json", env, env_len, now + 900LL * 86400, &r3, &d),
            FV_EAUTH);
        CHECK_CONTAINS(d.msg, "not signed by a coordinator of federation fed-one (");
    }
    /* unknown keys: in the manifest (signed), in the envelope */
    {
        char *m2 = replace(man, "{\"by\"", "{\"bonus\":1,\"by\"");
        e = envelope_of(m2, &coord, -1, NULL);
        refused_s(e, FV_EPROTO, "manifest has an unknown key \"bonus\"");
        free(e);
        free(m2);
        e = envelope_of(man, &coord, -1, "zz");
        refused_s(e, FV_EPROTO, "the release envelope has an unknown key \"zz\"");
        free(e);
    }
    /* wrong types and ranges, signed, so the shape check is what refuses */
    {
        static const char *const cases[][3] = {
            {"\"version\":12", "\"version\":\"12\"", "\"version\": missing or not an integer"},
            {"\"version\":12", "\"version\":0", "\"version\": not at least 1"},
            {"\"release\":5", "\"release\":-5", "\"release\": not in 1..2^63-1"},
            {"\"model_bytes\":1000", "\"model_bytes\":1073741825", "\"model_bytes\": not in"},
            {"\"label\":\"stable\"", "\"label\":\"gold\"", "\"label\": not stable"},
            {"\"kind\":\"student\"", "\"kind\":\"Student\"", "\"kind\": not 1..15"},
            {"\"released\":\"2026-12-06T18:40:00.000Z\"", "\"released\":\"yesterday\"",
             "\"released\""},
            {"\"by\":\"alice\"", "\"by\":\"Alice!\"", "\"by\": not a participant name"},
            {"\"job\":\"aaaa", "\"job\":\"Aaaa", "\"job\": neither"},
            {"\"lineage\":{", "\"lineage\":[{", "\"lineage\": missing or not an object"},
            {"\"by\":\"alice\",", "", "\"by\": missing or not a string"},
            {"{\"by\"", "{ \"by\"", "not in canonical form"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            char *m2 = replace(man, cases[i][0], cases[i][1]);
            if (strstr(cases[i][1], "[{") != NULL) {
                char *m3 = replace(m2, "},\"model_bytes\"", "}],\"model_bytes\"");
                free(m2);
                m2 = m3;
            }
            e = envelope_of(m2, &coord, -1, NULL);
            refused_s(e, FV_EPROTO, cases[i][2]);
            free(e);
            free(m2);
        }
    }
    /* malformed JSON: a cut envelope, not an object, a manifest that is not JSON, a
     * duplicate key, a short signature */
    refused(env, env_len / 2, FV_EPROTO, "not a JSON release envelope");
    refused(env, 0, FV_EPROTO, "not a JSON release envelope");
    refused_s("[1,2]", FV_EPROTO, "not a JSON object");
    refused_s("{\"manifest\":1,\"sig\":\"\",\"cert\":\"\"}", FV_EPROTO,
              "\"manifest\" is missing or not a string");
    e = envelope_of("{\"by\":", &coord, -1, NULL);
    refused_s(e, FV_EPROTO, "the manifest is not JSON");
    free(e);
    {
        char *m2 = replace(man, "{\"by\":\"alice\"", "{\"by\":\"alice\",\"by\":\"alice\"");
        e = envelope_of(m2, &coord, -1, NULL);
        refused_s(e, FV_EPROTO, "the manifest is not JSON");
        free(e);
        free(m2);
        char *s = replace(env, "\"sig\":\"", "\"sig\":\"AAAA");
        refused_s(s, FV_EPROTO, "\"sig\" is not a base64 Ed25519 signature");
        free(s);
    }
    /* oversize: an envelope over the cap; signing a manifest that would make one */
    {
        char *big = malloc(FV_RELEASE_MAX_BYTES + 2);
        CHECK(big != NULL);
        memcpy(big, env, env_len);
        memset(big + env_len, ' ', FV_RELEASE_MAX_BYTES + 1 - env_len);
        big[FV_RELEASE_MAX_BYTES + 1] = '\0';
        refused(big, FV_RELEASE_MAX_BYTES + 1, FV_ETOOBIG, "more than the 65536");
        /* exactly at the cap is decoded (trailing whitespace is allowed JSON) */
        CHECK_OK(fv_release_verify(trust, "rel.json", big, FV_RELEASE_MAX_BYTES, now, &got, &d),
                 &d);
        fv_release_free(got);
        fv_release_t r2 = rel;
        memset(big, 'x', FV_RELEASE_MAX_BYTES);
        memcpy(big, "{\"pad\":\"", 8);
        strcpy(big + FV_RELEASE_MAX_BYTES - 2, "\"}");
        r2.lineage_json = big;
        char *out = NULL;
        size_t n = 0;
        CHECK_INT_EQ(fv_release_sign(&r2, coord.sk, coord.cert_pem, &out, &n, &d), FV_ETOOBIG);
        CHECK(out == NULL);
        free(big);
    }
    /* sign refuses what verify would refuse */
    {
        fv_release_t r2 = rel;
        char *out = NULL;
        size_t n = 0;
        r2.version = 0;
        CHECK_INT_EQ(fv_release_sign(&r2, coord.sk, coord.cert_pem, &out, &n, &d), FV_EINVAL);
        CHECK_CONTAINS(d.msg, "\"version\"");
        r2 = rel;
        r2.lineage_json = "[1]";
        CHECK_INT_EQ(fv_release_sign(&r2, coord.sk, coord.cert_pem, &out, &n, &d), FV_EINVAL);
        CHECK_CONTAINS(d.msg, "\"lineage\": not a JSON object or null");
        r2 = rel;
        CHECK_INT_EQ(fv_release_sign(&r2, coord.sk, "nope", &out, &n, &d), FV_EINVAL);
        CHECK(out == NULL);
    }
    free(man);

    /* ---- the model directory ---- */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models", base);
    CHECK(mkdir(dir, 0700) == 0);
    uint8_t mb[1200], mc[800];
    for (size_t i = 0; i < sizeof mb; i++)
        mb[i] = (uint8_t)(i * 13 + 1);
    for (size_t i = 0; i < sizeof mc; i++)
        mc[i] = (uint8_t)(i * 5 + 2);
    fv_release_t rb, rc_;
    make_release(&rb, "fed-one", 7, FV_RELEASE_STABLE, mb, sizeof mb);
    make_release(&rc_, "fed-one", 6, FV_RELEASE_CANARY, mc, sizeof mc);
    size_t eb_len, ec_len;
    char *eb = sign_ok(&rb, &coord, &eb_len), *ec = sign_ok(&rc_, &coord, &ec_len);
    CHECK_OK(fv_release_dir_install(dir, &rel, env, env_len, model, sizeof model, &d), &d);
    CHECK_OK(fv_release_dir_install(dir, &rb, eb, eb_len, mb, sizeof mb, &d), &d);
    CHECK_OK(fv_release_dir_install(dir, &rc_, ec, ec_len, mc, sizeof mc, &d), &d);
    /* again (an identical file is kept; the envelope is rewritten) */
    CHECK_OK(fv_release_dir_install(dir, &rb, eb, eb_len, mb, sizeof mb, &d), &d);
    /* the bytes must be the release's; the sha must be 64 lowercase hex */
    CHECK_INT_EQ(fv_release_dir_install(dir, &rb, eb, eb_len, mc, sizeof mc, &d), FV_EAUTH);
    {
        fv_release_t r2 = rb;
        snprintf(r2.model_sha256, sizeof r2.model_sha256, "../../etc/passwd");
        CHECK_INT_EQ(fv_release_dir_install(dir, &r2, eb, eb_len, mb, sizeof mb, &d), FV_EINVAL);
    }
    /* files a scan ignores */
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    CHECK_OK(fv_file_write_atomic(p, "hi", 2, 0644, &d), &d);
    snprintf(p, sizeof p, "%s/%.64s.release.json", dir,
             "ABCDEF0000000000000000000000000000000000000000000000000000000000");
    CHECK_OK(fv_file_write_atomic(p, "{}", 2, 0644, &d), &d);

    fv_release_entry_t *ents = NULL;
    size_t n_ents = 0, *lens = NULL;
    uint8_t **models = NULL;
    CHECK_OK(fv_release_dir_scan(dir, trust, now, &ents, &n_ents, &models, &lens, &d), &d);
    CHECK_UINT_EQ(n_ents, 3);
    /* stable 7, stable 5, canary 6 */
    for (size_t i = 0; i < 3; i++) {
        CHECK_INT_EQ(ents[i].status, 0);
        CHECK_STR_EQ(ents[i].why, "");
        CHECK(ents[i].rel != NULL && models[i] != NULL);
    }
    CHECK_UINT_EQ(ents[0].rel->release, 7);
    CHECK_UINT_EQ(ents[1].rel->release, 5);
    CHECK_UINT_EQ(ents[2].rel->release, 6);
    CHECK_INT_EQ(ents[2].rel->label, FV_RELEASE_CANARY);
    CHECK_UINT_EQ(lens[0], sizeof mb);
    CHECK(memcmp(models[0], mb, sizeof mb) == 0);
    CHECK(memcmp(models[1], model, sizeof model) == 0);
    CHECK(memcmp(models[2], mc, sizeof mc) == 0);
    snprintf(p, sizeof p, "%s/%s.fvm", dir, rb.model_sha256);
    CHECK_STR_EQ(ents[0].path, p);
    snprintf(p, sizeof p, "%s/%s.release.json", dir, rb.model_sha256);
    CHECK_STR_EQ(ents[0].envelope, p);
    fv_release_entries_free(ents, n_ents, models, lens);

    /* a tampered model file is refused, the others stay; without ret_models */
    snprintf(p, sizeof p, "%s/%s.fvm", dir, rb.model_sha256);
    mb[3] ^= 0x10;
    CHECK_OK(fv_file_write_atomic(p, mb, sizeof mb, 0644, &d), &d);
    mb[3] ^= 0x10;
    /* a truncated one too */
    snprintf(p, sizeof p, "%s/%s.fvm", dir, rc_.model_sha256);
    CHECK_OK(fv_file_write_atomic(p, mc, sizeof mc - 8, 0644, &d), &d);
    CHECK_OK(fv_release_dir_scan(dir, trust, now, &ents, &n_ents, NULL, NULL, &d), &d);
    CHECK_UINT_EQ(n_ents, 3);
    CHECK(ents[0].rel != NULL);
    CHECK_UINT_EQ(ents[0].rel->release, 5);
    for (size_t i = 1; i < 3; i++) {
        CHECK(ents[i].rel == NULL);
        CHECK_INT_EQ(ents[i].status, FV_EAUTH);
        fprintf(stderr, "scan refused: %s\n", ents[i].why);
    }
    /* refused ones sorted by path: find each */
    bool saw_hash = false, saw_trunc = false;
    for (size_t i = 1; i < 3; i++) {
        if (strstr(ents[i].why, "hash mismatch") != NULL) {
            CHECK_CONTAINS(ents[i].why, rb.model_sha256);
            saw_hash = true;
        }
        if (strstr(ents[i].why, "truncated (792 of 800 bytes)") != NULL)
            saw_trunc = true;
    }
    CHECK(saw_hash && saw_trunc);
    fv_release_entries_free(ents, n_ents, NULL, NULL);

    /* an envelope under another model's name; a garbage envelope */
    snprintf(p, sizeof p, "%s/%s.release.json", dir, rc_.model_sha256);
    CHECK_OK(fv_file_write_atomic(p, eb, eb_len, 0644, &d), &d);
    snprintf(p, sizeof p, "%s/%.64s.release.json", dir,
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    CHECK_OK(fv_file_write_atomic(p, "{\"manifest\":", 12, 0644, &d), &d);
    CHECK_OK(fv_release_dir_scan(dir, trust, now, &ents, &n_ents, NULL, NULL, &d), &d);
    CHECK_UINT_EQ(n_ents, 4);
    CHECK(ents[0].rel != NULL && ents[1].rel == NULL && ents[2].rel == NULL && ents[3].rel == NULL);
    bool saw_name = false, saw_garbage = false;
    for (size_t i = 1; i < 4; i++) {
        saw_name |= strstr(ents[i].why, "not the file's") != NULL;
        if (strstr(ents[i].why, "0123456789abcdef") != NULL) {
            CHECK_INT_EQ(ents[i].status, FV_EPROTO);
            saw_garbage = true;
        }
    }
    CHECK(saw_name && saw_garbage);
    fv_release_entries_free(ents, n_ents, NULL, NULL);

    /* a FIFO under a release's name is refused, not waited on */
    snprintf(p, sizeof p, "%s/%.64s.release.json", dir,
             "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
    CHECK(mkfifo(p, 0600) == 0);
    CHECK_OK(fv_release_dir_scan(dir, trust, now, &ents, &n_ents, NULL, NULL, &d), &d);
    CHECK_UINT_EQ(n_ents, 5);
    bool saw_fifo = false;
    for (size_t i = 1; i < 5; i++)
        if (strstr(ents[i].why, "ffffffff") != NULL) {
            CHECK_CONTAINS(ents[i].why, "not a regular file");
            saw_fifo = true;
        }
    CHECK(saw_fifo);
    fv_release_entries_free(ents, n_ents, NULL, NULL);

    /* a missing directory */
    snprintf(p, sizeof p, "%s/none", base);
    CHECK(fv_release_dir_scan(p, trust, now, &ents, &n_ents, NULL, NULL, &d) < 0);
    CHECK_CONTAINS(d.msg, "cannot open the model directory");

    release_clear(&rel);
    release_clear(&rb);
    release_clear(&rc_);
    free(env);
    free(eb);
    free(ec);
    fv_trust_free(trust);
    kit_t *kits[] = {&coord, &agent, &admin, &coord2};
    for (size_t i = 0; i < 4; i++) {
        fv_crypto_wipe(kits[i]->sk, 64);
        free(kits[i]->cert_pem);
    }
    nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    printf("release: ok\n");
    return 0;
}
