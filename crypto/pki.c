/* pki.c - the federation's certificate authority and startup kits (OpenSSL 3).
 *
 * Everything is composed from OpenSSL's X.509 code: Ed25519 keys (EVP_PKEY_Q_keygen),
 * v3 certificates and a v2 CRL signed with X509_sign / X509_CRL_sign (md NULL: Ed25519
 * hashes internally). Nothing here is a primitive of our own.
 *
 * Certificates.
 *   CA    subject O=<federation>, CN=<federation> CA; basicConstraints critical CA:TRUE,
 *         pathlen:0; keyUsage critical keyCertSign,cRLSign; subjectKeyIdentifier.
 *   leaf  subject O=<federation>, OU=<role>, CN=<name>; basicConstraints critical
 *         CA:FALSE; keyUsage critical digitalSignature; extendedKeyUsage clientAuth
 *         (the coordinator: serverAuth,clientAuth); subject and authority key
 *         identifiers; the coordinator's subjectAltName is DNS:<host> or IP:<addr>.
 *   Serials are 16 bytes from RAND_bytes read as an unsigned (so positive) integer: at
 *   most 17 DER octets, inside RFC 5280's 20.
 *
 * The registry (DIR/ca/registry.json, mode 0600) is the CA's own record and the source
 * of truth for revocation:
 *   {"version":1, "federation":"...", "coordinator":"HOST:PORT" or null,
 *    "ca_serial":"hex", "crl_number":N,
 *    "participants":[{"name","role","serial":"lowercase hex","not_before":unix s,
 *                     "not_after":unix s,"revoked":bool[,"revoked_at":unix s]}...]}
 * It is read back as hostile input (types, names, sizes checked) because it is a file.
 *
 * Crash safety. Every file goes to a mkstemp name next to its target (O_CREAT|O_EXCL,
 * mode 0600 from the first byte), is fsynced, chmodded and renamed, and the directory is
 * fsynced. A CA or a kit is assembled in a hidden temporary directory (DIR/.<name>.tmp-*,
 * 0700) and renamed into place with RENAME_NOREPLACE, so DIR/<name> is either absent or
 * complete. Issuing writes the registry *before* renaming the kit into place: after a
 * crash in between, the registry lists a serial nobody received (harmless, and it can
 * still be revoked), never a certificate in the field the registry does not know. A
 * failed rename rolls the registry back.
 *
 * Concurrency: issue, revoke and CRL refresh hold an exclusive flock on the DIR/ca
 * directory, so two `fedvault provision` runs on one DIR cannot lose a registry update;
 * the second fails at once with UV_EBUSY.
 *
 * Time: validity is wall-clock time by nature, so unlike the rest of crypto/ this file
 * reads time(). Callers that need fixed times pass them in fv_pki_opts_t.
 *
 * Secrets: private keys live in EVP_PKEYs (freed with EVP_PKEY_free, which clears them)
 * and are serialized only into BIO_s_secmem buffers that are OPENSSL_cleanse'd before
 * being freed.
 *
 * Threading: no global state; concurrent calls on different DIRs are fine.
 */
#define _GNU_SOURCE /* renameat2, RENAME_NOREPLACE */
#include "fv_pki.h"

#include "fv_file.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <uv.h>

#define REGISTRY_VERSION 1
#define REGISTRY_MAX_BYTES (64u << 20) /* a registry is ~200 bytes per participant */
#define REGISTRY_MAX_PARTICIPANTS 100000
#define PEM_MAX_BYTES (16u << 20) /* ca.pem, crl.pem copied into kits */
#define KEY_MAX_BYTES (64u << 10) /* ca.key: an Ed25519 PEM is 119 bytes */
#define SKEW_S 3600               /* not_before / lastUpdate back-dating */
#define DAY_S 86400
#define MAX_DAYS 36500
#define MAX_UNIX 253402300799LL /* 9999-12-31T23:59:59Z, the X.509 limit */

/* ---- small helpers ------------------------------------------------------------------ */

/* The first queued OpenSSL error as text (or a fallback); clears the queue. */
static const char *ossl_err(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, cap, "unknown OpenSSL error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

static int path_join(char *out, size_t cap, const char *a, const char *b, fv_diag_t *d)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        return fv_diag_set(d, FV_ERANGE, "%s/%s: path too long", a, b);
    return 0;
}

static int fsync_dir(const char *dir, fv_diag_t *d)
{
    int r = fv_file_fsync_dir(dir);
    if (r < 0)
        return fv_diag_set(d, r, "%s: cannot fsync the directory: %s", dir, strerror(-r));
    return 0;
}

/* fsyncs the directory holding path. The directory's name is worked out here rather
 * than by fv_file_fsync_parent because the sentence on failure names it. */
static int fsync_parent(const char *path, fv_diag_t *d)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return fsync_dir(".", d);
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir)
        return fv_diag_set(d, FV_ERANGE, "%s: path too long", path);
    memcpy(dir, path, n);
    dir[n] = '\0';
    return fsync_dir(dir, d);
}

/* Crash-safe replacement of path by data: temp (O_EXCL, 0600) + fsync + chmod + rename +
 * fsync of the directory. The mode is applied before the rename, so the target never
 * exists with a wider mode than asked, and a key is never readable by others. */
static int write_file(const char *path, const void *data, size_t len, mode_t mode, fv_diag_t *d)
{
    char tmp[PATH_MAX];
    int fd = -1, r;
    bool created = false;

    int n = snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return fv_diag_set(d, FV_ERANGE, "%s: path too long", path);
    fd = mkstemp(tmp); /* O_CREAT | O_EXCL, mode 0600 */
    if (fd < 0) {
        r = -errno;
        fv_diag_set(d, r,
                    "%s: cannot create a temporary file next to it: %s "
                    "(check the directory's permissions and free space)",
                    path, strerror(-r));
        goto out;
    }
    created = true;
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    if ((r = fv_file_write_all(fd, data, len)) < 0) {
        fv_diag_set(d, r, "%s: cannot write %s: %s (check free space)", path, tmp, strerror(-r));
        goto out;
    }
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot chmod/fsync %s: %s", path, tmp, strerror(-r));
        goto out;
    }
    int cr = close(fd);
    fd = -1;
    if (cr < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot close %s: %s", path, tmp, strerror(-r));
        goto out;
    }
    if (rename(tmp, path) < 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot rename %s over it: %s", path, tmp, strerror(-r));
        goto out;
    }
    created = false;
    r = fsync_parent(path, d);
out:
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    return r;
}

/* Writes the contents of a memory BIO to path, then wipes the BIO's buffer (it may hold
 * a private key). */
static int write_bio(const char *path, BIO *bio, mode_t mode, fv_diag_t *d)
{
    char *p = NULL;
    long n = BIO_get_mem_data(bio, &p);
    if (n <= 0 || p == NULL)
        return fv_diag_set(d, FV_EIO, "%s: nothing to write (OpenSSL encoder failed)", path);
    int r = write_file(path, p, (size_t)n, mode, d);
    OPENSSL_cleanse(p, (size_t)n);
    return r;
}

/* Reads a small file (<= cap bytes) into a malloc'd, NUL-terminated buffer. A buffer
 * that may hold a key is wiped by fv_file_read_all if the read fails, by the caller
 * otherwise. */
static int read_file(const char *path, size_t cap, char **ret, size_t *ret_len, fv_diag_t *d)
{
    fv_file_fail_t why;
    int r = fv_file_read_all(path, cap, ret, ret_len, &why, d);
    if (r < 0 && (why.step == FV_FILE_STEP_TYPE || why.step == FV_FILE_STEP_SIZE))
        r = fv_diag_set(d, FV_ETOOBIG, "%s: not a regular file of at most %zu bytes", path, cap);
    return r;
}

/* Removes a temporary directory this file created (only plain files inside). */
static void rm_tmpdir(const char *path)
{
    DIR *dh = opendir(path);
    if (dh != NULL) {
        struct dirent *e;
        while ((e = readdir(dh)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            (void)unlinkat(dirfd(dh), e->d_name, 0);
        }
        closedir(dh);
    }
    (void)rmdir(path);
}

/* Renames a complete temporary directory to its final name, refusing to replace
 * anything (rename(2) alone would replace an empty directory). */
static int rename_noreplace(const char *from, const char *to, fv_diag_t *d)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    int e = errno;
    if (e == EINVAL || e == ENOSYS) {
        /* A file system without RENAME_NOREPLACE: check, then rename (racy only against
         * someone creating an empty directory by hand in between). */
        struct stat st;
        if (lstat(to, &st) == 0)
            e = EEXIST;
        else if (rename(from, to) == 0)
            return 0;
        else
            e = errno;
    }
    if (e == EEXIST || e == ENOTEMPTY)
        return fv_diag_set(d, UV_EEXIST, "%s already exists: refusing to replace it", to);
    return fv_diag_set(d, -e, "%s: cannot rename %s to it: %s", to, from, strerror(e));
}

/* ---- validity ------------------------------------------------------------------------ */

static int validity(const fv_pki_opts_t *o, int default_days, int64_t now, int64_t *nb, int64_t *na,
                    fv_diag_t *d)
{
    int days = o != NULL && o->days != 0 ? o->days : default_days;
    if (days < 1 || days > MAX_DAYS)
        return fv_diag_set(d, FV_EINVAL, "validity of %d days is out of range [1, %d]", days,
                           MAX_DAYS);
    *nb = o != NULL && o->not_before != 0 ? o->not_before : now - SKEW_S;
    *na = o != NULL && o->not_after != 0 ? o->not_after : *nb + (int64_t)days * DAY_S;
    if (*nb < 0 || *nb > MAX_UNIX || *na < 0 || *na > MAX_UNIX)
        return fv_diag_set(d, FV_ERANGE,
                           "validity %lld..%lld is outside the X.509 range (1970..9999)",
                           (long long)*nb, (long long)*na);
    if (*na <= *nb)
        return fv_diag_set(d, FV_EINVAL,
                           "not_after (%lld) must be later than not_before "
                           "(%lld)",
                           (long long)*na, (long long)*nb);
    return 0;
}

/* ---- certificates -------------------------------------------------------------------- */

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value, char *err, size_t cap)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL) {
        ossl_err(err, cap);
        return -1;
    }
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (!ok) {
        ossl_err(err, cap);
        return -1;
    }
    return 0;
}

static int set_serial(X509 *x)
{
    uint8_t b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return -1;
    BIGNUM *bn = BN_bin2bn(b, sizeof b, NULL); /* unsigned: never negative */
    int r = -1;
    if (bn != NULL && !BN_is_zero(bn)) {
        ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
        if (ai != NULL && X509_set_serialNumber(x, ai))
            r = 0;
        ASN1_INTEGER_free(ai);
    }
    BN_free(bn);
    return r;
}

/* Lowercase hex of an ASN1 serial into out[41]. */
static int serial_hex(const ASN1_INTEGER *ai, char out[41])
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
    char *h = bn != NULL ? BN_bn2hex(bn) : NULL;
    int r = -1;
    if (h != NULL && strlen(h) <= 40) {
        for (size_t i = 0; h[i]; i++)
            out[i] = (char)tolower((unsigned char)h[i]);
        out[strlen(h)] = '\0';
        r = 0;
    }
    OPENSSL_free(h);
    BN_free(bn);
    return r;
}

static int name_add(X509_NAME *n, const char *field, const char *value)
{
    return X509_NAME_add_entry_by_txt(n, field, MBSTRING_UTF8, (const unsigned char *)value, -1, -1,
                                      0)
               ? 0
               : -1;
}

/* Builds and signs a certificate. ca == NULL: self-signed CA for federation. Otherwise a
 * leaf for (name, role) signed by ca/ca_key, with san ("DNS:..." / "IP:...") or NULL. */
static int cert_build(const char *federation, const char *name, fv_role_t role, const char *san,
                      EVP_PKEY *pkey, X509 *ca, EVP_PKEY *ca_key, int64_t nb, int64_t na,
                      X509 **ret, fv_diag_t *d)
{
    char err[256];
    const char *what = "";
    X509 *x = X509_new();
    X509_NAME *subj = X509_NAME_new();
    int r = FV_EIO;
    X509V3_CTX ctx;

    if (x == NULL || subj == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "out of memory building a certificate");
        goto out;
    }
    what = "subject";
    if (name_add(subj, "O", federation) < 0)
        goto fail;
    if (ca == NULL) {
        char cn[FV_NAME_MAX + 8];
        snprintf(cn, sizeof cn, "%s CA", federation);
        if (name_add(subj, "CN", cn) < 0)
            goto fail;
    } else if (name_add(subj, "OU", fv_role_name(role)) < 0 || name_add(subj, "CN", name) < 0) {
        goto fail;
    }
    what = "fields";
    if (!X509_set_version(x, 2) || set_serial(x) < 0 || !X509_set_subject_name(x, subj) ||
        !X509_set_issuer_name(x, ca != NULL ? X509_get_subject_name(ca) : subj) ||
        ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na) == NULL || !X509_set_pubkey(x, pkey))
        goto fail;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, ca != NULL ? ca : x, x, NULL, NULL, 0);
    what = "extensions";
    if (ca == NULL) {
        if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", err, sizeof err) <
                0 ||
            add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign", err, sizeof err) < 0 ||
            add_ext(x, &ctx, NID_subject_key_identifier, "hash", err, sizeof err) < 0)
            goto fail_err;
    } else {
        const char *eku = role == FV_ROLE_COORDINATOR ? "serverAuth,clientAuth" : "clientAuth";
        if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE", err, sizeof err) < 0 ||
            add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature", err, sizeof err) < 0 ||
            add_ext(x, &ctx, NID_ext_key_usage, eku, err, sizeof err) < 0 ||
            add_ext(x, &ctx, NID_subject_key_identifier, "hash", err, sizeof err) < 0 ||
            add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always", err, sizeof err) < 0)
            goto fail_err;
        if (san != NULL && add_ext(x, &ctx, NID_subject_alt_name, san, err, sizeof err) < 0)
            goto fail_err;
    }
    what = "signature";
    if (X509_sign(x, ca_key != NULL ? ca_key : pkey, NULL) <= 0)
        goto fail;
    *ret = x;
    x = NULL;
    r = 0;
    goto out;
fail:
    ossl_err(err, sizeof err);
fail_err:
    r = fv_diag_set(d, FV_EIO, "cannot build the certificate of '%s' (%s): %s",
                    ca == NULL ? federation : name, what, err);
out:
    X509_NAME_free(subj);
    X509_free(x);
    return r;
}

/* "HOST:PORT" or "[V6]:PORT" -> "DNS:host" / "IP:addr" for the subjectAltName. */
static int san_from_addr(const char *addr, char *san, size_t cap, fv_diag_t *d)
{
    char host[256];
    const char *port;
    size_t hn;

    if (addr == NULL || addr[0] == '\0')
        return fv_diag_set(d, FV_EINVAL, "coordinator address is empty: expected HOST:PORT");
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return fv_diag_set(d, FV_EINVAL, "coordinator address '%s': expected [IPV6]:PORT",
                               addr);
        hn = (size_t)(close - addr - 1);
        if (hn == 0 || hn >= sizeof host)
            return fv_diag_set(d, FV_EINVAL, "coordinator address '%s': bad IPv6 host", addr);
        memcpy(host, addr + 1, hn);
        port = close + 2;
    } else {
        const char *colon = strrchr(addr, ':');
        if (colon == NULL)
            return fv_diag_set(d, FV_EINVAL, "coordinator address '%s': expected HOST:PORT", addr);
        hn = (size_t)(colon - addr);
        if (hn == 0 || hn >= sizeof host || memchr(addr, ':', hn) != NULL)
            return fv_diag_set(d, FV_EINVAL,
                               "coordinator address '%s': expected HOST:PORT "
                               "(write an IPv6 address as [ADDR]:PORT)",
                               addr);
        memcpy(host, addr, hn);
        port = colon + 1;
    }
    host[hn] = '\0';
    size_t pn = strlen(port);
    long pv = 0;
    if (pn == 0 || pn > 5)
        pv = -1;
    for (size_t i = 0; i < pn && pv >= 0; i++)
        pv = isdigit((unsigned char)port[i]) ? pv * 10 + (port[i] - '0') : -1;
    if (pv < 0 || pv > 65535)
        return fv_diag_set(d, FV_EINVAL, "coordinator address '%s': port must be 0..65535", addr);

    unsigned char bin[16];
    if (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1) {
        snprintf(san, cap, "IP:%s", host);
        return 0;
    }
    if (addr[0] == '[')
        return fv_diag_set(d, FV_EINVAL,
                           "coordinator address '%s': '%s' is not an IPv6 "
                           "address",
                           addr, host);
    /* A DNS name: letters, digits, hyphens and dots, labels of 1..63 bytes. */
    size_t label = 0;
    for (size_t i = 0; i < hn; i++) {
        char c = host[i];
        if (c == '.') {
            if (label == 0)
                break;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)c) && c != '-')
            return fv_diag_set(d, FV_EINVAL,
                               "coordinator address '%s': '%s' is neither an "
                               "IP address nor a DNS name",
                               addr, host);
        if (++label > 63)
            return fv_diag_set(d, FV_EINVAL, "coordinator address '%s': DNS label too long", addr);
    }
    if (label == 0 && host[hn - 1] != '.')
        return fv_diag_set(d, FV_EINVAL, "coordinator address '%s': empty DNS label", addr);
    for (size_t i = 1; i < hn; i++)
        if (host[i] == '.' && host[i - 1] == '.')
            return fv_diag_set(d, FV_EINVAL, "coordinator address '%s': empty DNS label", addr);
    if (host[0] == '.')
        return fv_diag_set(d, FV_EINVAL, "coordinator address '%s': empty DNS label", addr);
    snprintf(san, cap, "DNS:%s", host);
    return 0;
}

/* A fresh Ed25519 key as PEM PKCS#8 in path (mode 0600); the key is returned. */
static int key_new_write(const char *path, EVP_PKEY **ret, fv_diag_t *d)
{
    char err[256];
    int r;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *bio = BIO_new(BIO_s_secmem());
    if (k == NULL || bio == NULL) {
        r = fv_diag_set(d, FV_EIO, "%s: cannot generate an Ed25519 key: %s", path,
                        ossl_err(err, sizeof err));
        goto out;
    }
    if (!PEM_write_bio_PKCS8PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL)) {
        r = fv_diag_set(d, FV_EIO, "%s: cannot encode the key: %s", path,
                        ossl_err(err, sizeof err));
        goto out;
    }
    if ((r = write_bio(path, bio, 0600, d)) < 0)
        goto out;
    *ret = k;
    k = NULL;
out:
    BIO_free(bio); /* secmem: the buffer is cleared on free too */
    EVP_PKEY_free(k);
    return r;
}

static int pem_cert_write(const char *path, X509 *x, fv_diag_t *d)
{
    char err[256];
    BIO *bio = BIO_new(BIO_s_mem());
    int r;
    if (bio == NULL || !PEM_write_bio_X509(bio, x))
        r = fv_diag_set(d, FV_EIO, "%s: cannot encode the certificate: %s", path,
                        ossl_err(err, sizeof err));
    else
        r = write_bio(path, bio, 0644, d);
    BIO_free(bio);
    return r;
}

/* Never prompts for a pass phrase (an encrypted CA key is refused, not asked for). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* ---- the CA directory ---------------------------------------------------------------- */

typedef struct ca {
    char dir[PATH_MAX];      /* DIR */
    char ca_dir[PATH_MAX];   /* DIR/ca */
    char registry[PATH_MAX]; /* DIR/ca/registry.json */
    int lock_fd;
    X509 *cert;
    EVP_PKEY *key;
    char *cert_pem;
    size_t cert_pem_len;
    json_t *reg;
} ca_t;

static void ca_close(ca_t *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    free(ca->cert_pem);
    json_decref(ca->reg);
    if (ca->lock_fd >= 0)
        close(ca->lock_fd); /* releases the flock */
    ca->cert = NULL;
    ca->key = NULL;
    ca->cert_pem = NULL;
    ca->reg = NULL;
    ca->lock_fd = -1;
}

static bool is_hex_serial(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return false;
    return true;
}

/* Loads and checks DIR/ca/registry.json. */
static int registry_load(const char *path, json_t **ret, fv_diag_t *d)
{
    struct stat st;
    json_error_t je;
    if (stat(path, &st) < 0) {
        int r = -errno;
        return fv_diag_set(d, r, "%s: cannot read the CA registry: %s", path, strerror(-r));
    }
    if ((uint64_t)st.st_size > REGISTRY_MAX_BYTES)
        return fv_diag_set(d, FV_ETOOBIG, "%s: larger than %u bytes", path, REGISTRY_MAX_BYTES);
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return fv_diag_set(d, FV_EPARSE,
                           "%s:%d:%d: %s (the CA registry is damaged: restore "
                           "it from a backup)",
                           path, je.line, je.column, je.text);
    const char *bad = NULL;
    json_t *v = json_object_get(root, "version");
    json_t *fed = json_object_get(root, "federation");
    json_t *coord = json_object_get(root, "coordinator");
    json_t *num = json_object_get(root, "crl_number");
    json_t *parts = json_object_get(root, "participants");
    if (!json_is_object(root))
        bad = "not a JSON object";
    else if (!json_is_integer(v) || json_integer_value(v) != REGISTRY_VERSION)
        bad = "\"version\" is not 1";
    else if (!json_is_string(fed) || !fv_name_valid(json_string_value(fed)))
        bad = "\"federation\" is not a valid name";
    else if (coord != NULL && !json_is_null(coord) &&
             (!json_is_string(coord) || json_string_length(coord) > 300))
        bad = "\"coordinator\" is not a HOST:PORT string";
    else if (json_object_get(root, "admin") != NULL &&
             (!json_is_string(json_object_get(root, "admin")) ||
              json_string_length(json_object_get(root, "admin")) > 300))
        bad = "\"admin\" is not a HOST:PORT string";
    else if (!json_is_integer(num) || json_integer_value(num) < 0)
        bad = "\"crl_number\" is not a non-negative integer";
    else if (!json_is_array(parts) || json_array_size(parts) > REGISTRY_MAX_PARTICIPANTS)
        bad = "\"participants\" is not an array (of at most 100000)";
    for (size_t i = 0; bad == NULL && i < json_array_size(parts); i++) {
        json_t *p = json_array_get(parts, i);
        fv_role_t role;
        json_t *rv = json_object_get(p, "revoked");
        if (!json_is_object(p) || !json_is_string(json_object_get(p, "name")) ||
            !fv_name_valid(json_string_value(json_object_get(p, "name"))) ||
            fv_role_parse(json_string_value(json_object_get(p, "role")), &role) != 0 ||
            !json_is_string(json_object_get(p, "serial")) ||
            !is_hex_serial(json_string_value(json_object_get(p, "serial"))) ||
            !json_is_integer(json_object_get(p, "not_before")) ||
            !json_is_integer(json_object_get(p, "not_after")) || !json_is_boolean(rv) ||
            (json_is_true(rv) && !json_is_integer(json_object_get(p, "revoked_at"))))
            bad = "a participant lacks name/role/serial/not_before/not_after/revoked";
    }
    if (bad != NULL) {
        json_decref(root);
        return fv_diag_set(d, FV_ESCHEMA,
                           "%s: %s (the CA registry is damaged: restore it "
                           "from a backup)",
                           path, bad);
    }
    *ret = root;
    return 0;
}

static int registry_save(const char *path, const json_t *reg, fv_diag_t *d)
{
    char *s = json_dumps(reg, JSON_INDENT(2));
    if (s == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory encoding the registry", path);
    size_t n = strlen(s);
    char *buf = realloc(s, n + 2);
    if (buf == NULL) {
        free(s);
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory encoding the registry", path);
    }
    buf[n] = '\n';
    buf[n + 1] = '\0';
    int r = write_file(path, buf, n + 1, 0600, d);
    free(buf);
    return r;
}

static json_t *registry_find(const json_t *reg, const char *name)
{
    json_t *parts = json_object_get(reg, "participants");
    for (size_t i = 0; i < json_array_size(parts); i++) {
        json_t *p = json_array_get(parts, i);
        if (strcmp(json_string_value(json_object_get(p, "name")), name) == 0)
            return p;
    }
    return NULL;
}

/* Opens DIR/ca: takes the lock, loads the registry, the CA key and certificate. */
static int ca_open(const char *dir, ca_t *ca, fv_diag_t *d)
{
    char err[256], path[PATH_MAX];
    char *key_pem = NULL;
    size_t key_len = 0;
    int r;
    BIO *bio = NULL;

    memset(ca, 0, sizeof *ca);
    ca->lock_fd = -1;
    if ((size_t)snprintf(ca->dir, sizeof ca->dir, "%s", dir) >= sizeof ca->dir)
        return fv_diag_set(d, FV_ERANGE, "%s: path too long", dir);
    if ((r = path_join(ca->ca_dir, sizeof ca->ca_dir, dir, "ca", d)) < 0 ||
        (r = path_join(ca->registry, sizeof ca->registry, ca->ca_dir, "registry.json", d)) < 0)
        return r;
    ca->lock_fd = open(ca->ca_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ca->lock_fd < 0) {
        r = -errno;
        return fv_diag_set(d, r,
                           "%s: cannot open the CA directory: %s (create the "
                           "federation first: fedvault provision --federation ...)",
                           ca->ca_dir, strerror(-r));
    }
    if (flock(ca->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        r = errno == EWOULDBLOCK ? UV_EBUSY : -errno;
        fv_diag_set(d, r,
                    "%s: another 'fedvault provision' is working on this federation "
                    "(wait for it to finish)",
                    ca->ca_dir);
        goto fail;
    }
    if ((r = registry_load(ca->registry, &ca->reg, d)) < 0)
        goto fail;

    if ((r = path_join(path, sizeof path, ca->ca_dir, "ca.pem", d)) < 0 ||
        (r = read_file(path, PEM_MAX_BYTES, &ca->cert_pem, &ca->cert_pem_len, d)) < 0)
        goto fail;
    bio = BIO_new_mem_buf(ca->cert_pem, (int)ca->cert_pem_len);
    if (bio == NULL || (ca->cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) == NULL) {
        r = fv_diag_set(d, FV_EPARSE, "%s: not a PEM certificate: %s", path,
                        ossl_err(err, sizeof err));
        goto fail;
    }
    BIO_free(bio);
    bio = NULL;

    /* The key is read with read(2) into our own buffer, wiped below, rather than through
     * stdio, whose buffer would be freed unwiped. */
    if ((r = path_join(path, sizeof path, ca->ca_dir, "ca.key", d)) < 0)
        goto fail;
    if ((r = read_file(path, KEY_MAX_BYTES, &key_pem, &key_len, d)) < 0) {
        if (r == UV_ENOENT)
            fv_diag_set(d, r,
                        "%s: no CA key here (is this the CA's machine? the key is "
                        "kept offline)",
                        path);
        goto fail;
    }
    bio = BIO_new_mem_buf(key_pem, (int)key_len);
    ca->key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    if (ca->key == NULL || !EVP_PKEY_is_a(ca->key, "ED25519")) {
        r = fv_diag_set(d, FV_EPARSE, "%s: not an unencrypted Ed25519 PEM private key: %s", path,
                        ossl_err(err, sizeof err));
        goto fail;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        r = fv_diag_set(d, FV_EAUTH,
                        "%s does not match %s/ca.pem: restore the CA directory "
                        "from a backup",
                        path, ca->ca_dir);
        goto fail;
    }
    r = 0;
    goto out;
fail:
    ca_close(ca);
out:
    BIO_free(bio);
    if (key_pem != NULL) {
        OPENSSL_cleanse(key_pem, key_len);
        free(key_pem);
    }
    ERR_clear_error();
    return r;
}

/* Builds the CRL for the registry and writes it to path (PEM, 0644). The registry's
 * crl_number is used as is: the caller bumps and saves it first. */
static int crl_write(const char *path, X509 *cert, EVP_PKEY *key, const json_t *reg, int64_t now,
                     fv_diag_t *d)
{
    char err[256];
    int r = FV_EIO;
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *t = NULL;
    ASN1_INTEGER *num = NULL;
    BIGNUM *bn = NULL;
    BIO *bio = NULL;
    X509_EXTENSION *ext = NULL;
    X509V3_CTX ctx;

    if (crl == NULL || !X509_CRL_set_version(crl, 1) ||
        !X509_CRL_set_issuer_name(crl, X509_get_subject_name(cert)) ||
        (t = ASN1_TIME_set(NULL, (time_t)(now - SKEW_S))) == NULL ||
        !X509_CRL_set1_lastUpdate(crl, t) ||
        ASN1_TIME_set(t, (time_t)(now + (int64_t)FV_PKI_CRL_DAYS * DAY_S)) == NULL ||
        !X509_CRL_set1_nextUpdate(crl, t))
        goto fail;
    json_t *parts = json_object_get(reg, "participants");
    for (size_t i = 0; i < json_array_size(parts); i++) {
        json_t *p = json_array_get(parts, i);
        if (!json_is_true(json_object_get(p, "revoked")))
            continue;
        X509_REVOKED *rv = X509_REVOKED_new();
        ASN1_INTEGER *ai = NULL;
        bool ok =
            rv != NULL && BN_hex2bn(&bn, json_string_value(json_object_get(p, "serial"))) > 0 &&
            (ai = BN_to_ASN1_INTEGER(bn, NULL)) != NULL && X509_REVOKED_set_serialNumber(rv, ai) &&
            ASN1_TIME_set(t, (time_t)json_integer_value(json_object_get(p, "revoked_at"))) !=
                NULL &&
            X509_REVOKED_set_revocationDate(rv, t) && X509_CRL_add0_revoked(crl, rv);
        ASN1_INTEGER_free(ai);
        BN_free(bn);
        bn = NULL;
        if (!ok) {
            X509_REVOKED_free(rv);
            goto fail;
        }
    }
    if (!X509_CRL_sort(crl))
        goto fail;
    num = ASN1_INTEGER_new();
    if (num == NULL ||
        !ASN1_INTEGER_set_int64(num,
                                (int64_t)json_integer_value(json_object_get(reg, "crl_number"))) ||
        !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0))
        goto fail;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, NULL, NULL, crl, 0);
    if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always")) ==
            NULL ||
        !X509_CRL_add_ext(crl, ext, -1))
        goto fail;
    if (X509_CRL_sign(crl, key, NULL) <= 0)
        goto fail;
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || !PEM_write_bio_X509_CRL(bio, crl))
        goto fail;
    r = write_bio(path, bio, 0644, d);
    goto out;
fail:
    r = fv_diag_set(d, FV_EIO, "%s: cannot build the CRL: %s", path, ossl_err(err, sizeof err));
out:
    X509_EXTENSION_free(ext);
    BIO_free(bio);
    BN_free(bn);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    return r;
}

/* ---- public API ---------------------------------------------------------------------- */

int fv_pki_ca_create(const char *dir, const char *federation, const fv_pki_opts_t *opts,
                     fv_diag_t *d)
{
    char ca_dir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], serial[41];
    int64_t now = (int64_t)time(NULL), nb, na;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    json_t *reg = NULL;
    bool have_tmp = false;
    int r;
    struct stat st;

    if (dir == NULL || dir[0] == '\0')
        return fv_diag_set(d, FV_EINVAL, "no federation directory given");
    if (!fv_name_valid(federation))
        return fv_diag_set(d, FV_EINVAL,
                           "federation name '%s' is invalid: use 1..64 of "
                           "[a-z0-9._-], starting with a letter or digit",
                           federation ? federation : "(null)");
    if ((r = validity(opts, FV_PKI_CA_DAYS, now, &nb, &na, d)) < 0)
        return r;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        return fv_diag_set(d, r, "%s: cannot create the federation directory: %s", dir,
                           strerror(-r));
    }
    if ((r = path_join(ca_dir, sizeof ca_dir, dir, "ca", d)) < 0 ||
        (r = path_join(tmp, sizeof tmp, dir, ".ca.tmp-XXXXXX", d)) < 0)
        return r;
    if (lstat(ca_dir, &st) == 0)
        return fv_diag_set(d, UV_EEXIST,
                           "%s already exists: this federation already has a "
                           "CA (add participants with 'fedvault provision add-agent')",
                           ca_dir);
    if (mkdtemp(tmp) == NULL) {
        r = -errno;
        return fv_diag_set(d, r, "%s: cannot create a temporary directory in it: %s", dir,
                           strerror(-r));
    }
    have_tmp = true;

    if ((r = path_join(path, sizeof path, tmp, "ca.key", d)) < 0 ||
        (r = key_new_write(path, &key, d)) < 0)
        goto out;
    if ((r = cert_build(federation, NULL, 0, NULL, key, NULL, NULL, nb, na, &cert, d)) < 0)
        goto out;
    if ((r = path_join(path, sizeof path, tmp, "ca.pem", d)) < 0 ||
        (r = pem_cert_write(path, cert, d)) < 0)
        goto out;
    if (serial_hex(X509_get0_serialNumber(cert), serial) < 0) {
        r = fv_diag_set(d, FV_EIO, "cannot encode the CA serial");
        goto out;
    }
    reg =
        json_pack("{s:i, s:s, s:n, s:s, s:i, s:[]}", "version", REGISTRY_VERSION, "federation",
                  federation, "coordinator", "ca_serial", serial, "crl_number", 1, "participants");
    if (reg == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "out of memory building the registry");
        goto out;
    }
    if ((r = path_join(path, sizeof path, tmp, "registry.json", d)) < 0 ||
        (r = registry_save(path, reg, d)) < 0)
        goto out;
    if ((r = path_join(path, sizeof path, tmp, "crl.pem", d)) < 0 ||
        (r = crl_write(path, cert, key, reg, now, d)) < 0)
        goto out;
    if ((r = rename_noreplace(tmp, ca_dir, d)) < 0)
        goto out;
    have_tmp = false;
    r = fsync_dir(dir, d);
out:
    if (have_tmp)
        rm_tmpdir(tmp);
    json_decref(reg);
    X509_free(cert);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return r;
}

static int kit_config_write(const char *path, const char *federation, const char *name,
                            fv_role_t role, const char *addr, const char *admin_addr, fv_diag_t *d)
{
    json_t *cfg = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "federation", federation, "name",
                            name, "role", fv_role_name(role),
                            role == FV_ROLE_COORDINATOR ? "listen" : "coordinator", addr, "ca",
                            "ca.pem", "cert", "cert.pem", "key", "key.pem");
    const char *admin_key = role == FV_ROLE_COORDINATOR ? "admin_listen"
                            : role == FV_ROLE_ADMIN     ? "admin"
                                                        : NULL;
    if (cfg == NULL ||
        (role == FV_ROLE_COORDINATOR &&
         json_object_set_new(cfg, "crl", json_string("crl.pem")) < 0) ||
        (admin_key != NULL && admin_addr != NULL &&
         json_object_set_new(cfg, admin_key, json_string(admin_addr)) < 0)) {
        json_decref(cfg);
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", path);
    }
    char *s = json_dumps(cfg, JSON_INDENT(2));
    json_decref(cfg);
    if (s == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", path);
    size_t n = strlen(s);
    s[n] = '\n'; /* json_dumps' NUL becomes the final newline; length n + 1 */
    int r = write_file(path, s, n + 1, 0644, d);
    free(s);
    return r;
}

/* Copies DIR/ca/<file> to kit/<file>. */
static int copy_from_ca(const ca_t *ca, const char *kit, const char *file, fv_diag_t *d)
{
    char src[PATH_MAX], dst[PATH_MAX];
    char *buf = NULL;
    size_t len = 0;
    int r;
    if ((r = path_join(src, sizeof src, ca->ca_dir, file, d)) < 0 ||
        (r = path_join(dst, sizeof dst, kit, file, d)) < 0 ||
        (r = read_file(src, PEM_MAX_BYTES, &buf, &len, d)) < 0)
        return r;
    r = write_file(dst, buf, len, 0644, d);
    free(buf);
    return r;
}

int fv_pki_issue(const char *dir, const char *name, fv_role_t role, const char *coordinator_addr,
                 const fv_pki_opts_t *opts, fv_diag_t *d)
{
    char kit[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], san[300], serial[41];
    char *old_reg = NULL;
    int64_t now = (int64_t)time(NULL), nb, na;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    bool have_tmp = false;
    ca_t ca = {.lock_fd = -1};
    int r;
    struct stat st;

    if (dir == NULL || dir[0] == '\0')
        return fv_diag_set(d, FV_EINVAL, "no federation directory given");
    if (!fv_name_valid(name))
        return fv_diag_set(d, FV_EINVAL,
                           "participant name '%s' is invalid: use 1..64 of "
                           "[a-z0-9._-], starting with a letter or digit",
                           name ? name : "(null)");
    if (strcmp(name, "ca") == 0)
        return fv_diag_set(d, FV_EINVAL,
                           "participant name 'ca' is reserved (%s/ca holds the "
                           "CA): choose another name",
                           dir);
    if (role != FV_ROLE_COORDINATOR && role != FV_ROLE_AGENT && role != FV_ROLE_ADMIN)
        return fv_diag_set(d, FV_EINVAL, "unknown role %d", (int)role);
    if ((r = validity(opts, FV_PKI_DAYS, now, &nb, &na, d)) < 0)
        return r;
    if (role == FV_ROLE_COORDINATOR && coordinator_addr == NULL)
        return fv_diag_set(d, FV_EINVAL, "the coordinator's kit needs its HOST:PORT");
    if (coordinator_addr != NULL && (r = san_from_addr(coordinator_addr, san, sizeof san, d)) < 0)
        return r;

    if ((r = ca_open(dir, &ca, d)) < 0)
        return r;
    const char *federation = json_string_value(json_object_get(ca.reg, "federation"));
    if (coordinator_addr == NULL) {
        coordinator_addr = json_string_value(json_object_get(ca.reg, "coordinator"));
        if (coordinator_addr == NULL) {
            r = fv_diag_set(d, FV_EINVAL,
                            "%s records no coordinator address: issue the "
                            "coordinator's kit first, or give its HOST:PORT",
                            ca.registry);
            goto out;
        }
    }
    const char *admin_addr = role == FV_ROLE_COORDINATOR && opts != NULL ? opts->admin_addr : NULL;
    if (admin_addr != NULL && (r = fv_pki_addr_check(admin_addr, d)) < 0)
        goto out;
    if (role == FV_ROLE_ADMIN)
        admin_addr = json_string_value(json_object_get(ca.reg, "admin"));
    json_t *prev = registry_find(ca.reg, name);
    if (prev != NULL) {
        r = fv_diag_set(d, UV_EEXIST,
                        "%s already lists '%s' (%s, serial %s%s): names are "
                        "never reused, choose another one",
                        ca.registry, name, json_string_value(json_object_get(prev, "role")),
                        json_string_value(json_object_get(prev, "serial")),
                        json_is_true(json_object_get(prev, "revoked")) ? ", revoked" : "");
        goto out;
    }
    if ((r = path_join(kit, sizeof kit, dir, name, d)) < 0)
        goto out;
    if (lstat(kit, &st) == 0) {
        r = fv_diag_set(d, UV_EEXIST,
                        "%s already exists: refusing to overwrite a kit "
                        "(choose another name, or move it away)",
                        kit);
        goto out;
    }

    /* Assemble the kit in a hidden temporary directory. */
    int n = snprintf(tmp, sizeof tmp, "%s/.%s.tmp-XXXXXX", dir, name);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        r = fv_diag_set(d, FV_ERANGE, "%s: path too long", kit);
        goto out;
    }
    if (mkdtemp(tmp) == NULL) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot create a temporary directory in it: %s", dir, strerror(-r));
        goto out;
    }
    have_tmp = true;
    if ((r = path_join(path, sizeof path, tmp, "key.pem", d)) < 0 ||
        (r = key_new_write(path, &key, d)) < 0)
        goto out;
    if ((r = cert_build(federation, name, role, role == FV_ROLE_COORDINATOR ? san : NULL, key,
                        ca.cert, ca.key, nb, na, &cert, d)) < 0)
        goto out;
    if ((r = path_join(path, sizeof path, tmp, "cert.pem", d)) < 0 ||
        (r = pem_cert_write(path, cert, d)) < 0 || (r = copy_from_ca(&ca, tmp, "ca.pem", d)) < 0)
        goto out;
    if (role != FV_ROLE_AGENT && (r = copy_from_ca(&ca, tmp, "crl.pem", d)) < 0)
        goto out;
    char cfg_name[32];
    snprintf(cfg_name, sizeof cfg_name, "%s.json", fv_role_name(role));
    if ((r = path_join(path, sizeof path, tmp, cfg_name, d)) < 0 ||
        (r = kit_config_write(path, federation, name, role, coordinator_addr, admin_addr, d)) < 0)
        goto out;
    if ((r = fsync_dir(tmp, d)) < 0)
        goto out;

    /* Registry first (see the design note), then the kit into place. */
    if (serial_hex(X509_get0_serialNumber(cert), serial) < 0) {
        r = fv_diag_set(d, FV_EIO, "cannot encode the serial of '%s'", name);
        goto out;
    }
    old_reg = json_dumps(ca.reg, JSON_INDENT(2));
    json_t *entry = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "name", name, "role",
                              fv_role_name(role), "serial", serial, "not_before", (json_int_t)nb,
                              "not_after", (json_int_t)na, "revoked", 0);
    if (old_reg == NULL || entry == NULL ||
        json_array_append_new(json_object_get(ca.reg, "participants"), entry) < 0 ||
        (role == FV_ROLE_COORDINATOR &&
         json_object_set_new(ca.reg, "coordinator", json_string(coordinator_addr)) < 0) ||
        (role == FV_ROLE_COORDINATOR && admin_addr != NULL &&
         json_object_set_new(ca.reg, "admin", json_string(admin_addr)) < 0)) {
        r = fv_diag_set(d, FV_ENOMEM, "out of memory updating %s", ca.registry);
        goto out;
    }
    if ((r = registry_save(ca.registry, ca.reg, d)) < 0)
        goto out;
    if ((r = rename_noreplace(tmp, kit, d)) < 0) {
        /* Roll back: the registry must not list a certificate nobody has. */
        fv_diag_t d2;
        json_t *old = json_loads(old_reg, 0, NULL);
        if ((old == NULL || registry_save(ca.registry, old, &d2) < 0) && d != NULL) {
            char first[FV_DIAG_MAX];
            memcpy(first, d->msg, sizeof first);
            fv_diag_set(d, r, "%s (and %s now lists '%s' without a kit: revoke it)", first,
                        ca.registry, name);
        }
        json_decref(old);
        goto out;
    }
    have_tmp = false;
    r = fsync_dir(dir, d);
out:
    if (have_tmp)
        rm_tmpdir(tmp);
    free(old_reg);
    X509_free(cert);
    EVP_PKEY_free(key);
    ca_close(&ca);
    ERR_clear_error();
    return r;
}

/* Bumps the CRL number, saves the registry, writes DIR/ca/crl.pem and the copies in the
 * coordinator and admin kits that exist. */
static int crl_publish(ca_t *ca, int64_t now, fv_diag_t *d)
{
    char path[PATH_MAX], kit[PATH_MAX];
    json_t *num = json_object_get(ca->reg, "crl_number");
    int r;
    if (json_integer_set(num, json_integer_value(num) + 1) < 0)
        return fv_diag_set(d, FV_EIO, "%s: cannot bump crl_number", ca->registry);
    if ((r = registry_save(ca->registry, ca->reg, d)) < 0)
        return r;
    if ((r = path_join(path, sizeof path, ca->ca_dir, "crl.pem", d)) < 0 ||
        (r = crl_write(path, ca->cert, ca->key, ca->reg, now, d)) < 0)
        return r;
    json_t *parts = json_object_get(ca->reg, "participants");
    for (size_t i = 0; i < json_array_size(parts); i++) {
        json_t *p = json_array_get(parts, i);
        if (strcmp(json_string_value(json_object_get(p, "role")), "agent") == 0)
            continue;
        struct stat st;
        if ((r = path_join(kit, sizeof kit, ca->dir, json_string_value(json_object_get(p, "name")),
                           d)) < 0)
            return r;
        if (lstat(kit, &st) < 0 || !S_ISDIR(st.st_mode))
            continue; /* shipped and removed from here, or never completed */
        if ((r = copy_from_ca(ca, kit, "crl.pem", d)) < 0)
            return r;
    }
    return 0;
}

int fv_pki_addr_check(const char *addr, fv_diag_t *d)
{
    char san[300];
    return san_from_addr(addr, san, sizeof san, d);
}

int fv_pki_revoke(const char *dir, const char *name, fv_diag_t *d)
{
    ca_t ca;
    int64_t now = (int64_t)time(NULL);
    int r;
    if (dir == NULL || dir[0] == '\0')
        return fv_diag_set(d, FV_EINVAL, "no federation directory given");
    if (!fv_name_valid(name))
        return fv_diag_set(d, FV_EINVAL, "participant name '%s' is invalid",
                           name ? name : "(null)");
    if ((r = ca_open(dir, &ca, d)) < 0)
        return r;
    json_t *p = registry_find(ca.reg, name);
    if (p == NULL) {
        r = fv_diag_set(d, FV_EPEER,
                        "%s lists no participant '%s' (see the registry for the "
                        "names issued)",
                        ca.registry, name);
        goto out;
    }
    if (!json_is_true(json_object_get(p, "revoked")) &&
        (json_object_set_new(p, "revoked", json_true()) < 0 ||
         json_object_set_new(p, "revoked_at", json_integer((json_int_t)now)) < 0)) {
        r = fv_diag_set(d, FV_ENOMEM, "out of memory updating %s", ca.registry);
        goto out;
    }
    r = crl_publish(&ca, now, d);
out:
    ca_close(&ca);
    ERR_clear_error();
    return r;
}

int fv_pki_crl_refresh(const char *dir, fv_diag_t *d)
{
    ca_t ca;
    int r;
    if (dir == NULL || dir[0] == '\0')
        return fv_diag_set(d, FV_EINVAL, "no federation directory given");
    if ((r = ca_open(dir, &ca, d)) < 0)
        return r;
    r = crl_publish(&ca, (int64_t)time(NULL), d);
    ca_close(&ca);
    ERR_clear_error();
    return r;
}
