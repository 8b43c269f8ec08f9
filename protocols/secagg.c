/* secagg.c - SecAgg / SecAgg+ client and server state machines, and the neighbour graph.
 *
 * The protocol, its phases and its invariants are described in fv_secagg.h; the bytes in
 * secagg_wire.c. Notes on this implementation:
 *
 * - Pure: no I/O, no clock, no threads, no globals. Randomness only from the injected
 *   fv_rand_t (client) and the public graph seed. Same inputs, same bytes out.
 * - Client secrets (identity key copy, c_sk, s_sk, b_u, own shares, share-encryption keys,
 *   the shares received from neighbours) live in fv_secret_alloc buffers; b_u, s_sk, c_sk
 *   and the encryption keys are wiped as soon as the masked vector is built (they are not
 *   needed afterwards: everything left to reveal is a share), the rest on free or abort.
 * - The share-encryption key of (u, v) is symmetric (kx of c keys), so u keeps the key it
 *   derived to encrypt to v and decrypts v's ciphertext with it: one key agreement per
 *   neighbour for encryption, one per neighbour for masks, none for decryption. The
 *   consistency-tag key of (u, v) is a BLAKE2b PRF of the same key (no agreement of its
 *   own), kept in the client's secret buffer until UNMASK is answered; the server only
 *   checks the shape of CONSIST and forwards each tag to its recipient.
 * - Received ciphertexts are decrypted when they arrive (phase 2), before the client
 *   commits its masked input, so a bad ciphertext aborts before anything depends on it.
 * - Server memory: the accumulator (dim words), O(n) keys and flags, O(n*k) ciphertexts
 *   (freed once phase 2 closes) and O(n*k) shares in phase 4. Each masked vector is added
 *   on arrival and never stored.
 * - The server reconstructs each secret with fv_shamir_combine_checked over ALL the
 *   shares it received (the first t fix the polynomial, every further one must lie on
 *   it): a holder that sends a wrong share, even one chosen to shift the secret by a
 *   small amount that passes the layout check, is detected whenever at least t + 1
 *   holders answered. Cost at n = 500, 30 % dropout (t = 334, ~350 shares per secret):
 *   server unmask 6.7 s (t + 1 shares, unchecked combine) -> 7.5 s CPU, most of it the
 *   PRG. A detection aborts the round with FV_EAUTH.
 * - A reconstructed s_sk is checked against the signed s_pk (X25519 base-point multiply,
 *   libsodium) before it is used.
 */
#include "secagg-int.h"

#include <stddef.h>
#include <stdlib.h>

#include <sodium.h>

#include "fv_crypto.h"
#include "fv_fixed.h"

#define CLIENT_DONE 5
#define ABORTED (-1)

static const char ctx_enc_label[] = "fv-secagg enc v1";
static const char ctx_mask_label[] = "fv-secagg mask v1";
static const char nonce_label[] = "fv-secagg nonce v1";
static const char adv_label[] = "fv-secagg adv v1";
static const char u3_label[] = "fv-secagg u3 v2";
static const char u3mac_label[] = "fv-secagg u3mac v2";

/* ---- parameters and graph ---------------------------------------------------------------- */

static uint32_t max_bits_for(uint32_t n);

int fv_secagg_params_check(const fv_secagg_params_t *p, const fv_secagg_policy_t *pol, fv_diag_t *d)
{
    if (p == NULL || p->identity_pks == NULL)
        return fv_diag_set(d, FV_EINVAL, "secagg: no parameters or identity keys");
    uint32_t n = p->n_clients, k = p->n_neighbors, t = p->threshold;
    if (n < 3 || n > FV_SECAGG_MAX_CLIENTS)
        return fv_diag_set(d, FV_EINVAL, "secagg: cohort of %u clients, need 3..%u", n,
                           FV_SECAGG_MAX_CLIENTS);
    if (k != n - 1 && (k < 2 || k > n - 2 || k % 2 != 0))
        return fv_diag_set(d, FV_EINVAL,
                           "secagg: %u neighbours for %u clients: use n-1 (classic) or an "
                           "even k in 2..n-2",
                           k, n);
    if (2 * (uint64_t)t <= (uint64_t)k + 1 || t > k + 1)
        return fv_diag_set(d, FV_EINVAL,
                           "secagg: threshold %u unsafe for %u share holders: need "
                           "(k+1)/2 < t <= k+1",
                           t, k + 1);
    if (p->dim < 1 || p->dim > FV_SECAGG_MAX_DIM)
        return fv_diag_set(d, FV_EINVAL, "secagg: dimension %u outside 1..%u", p->dim,
                           FV_SECAGG_MAX_DIM);
    if (p->prg != FV_PRG_CHACHA20 && p->prg != FV_PRG_AES256CTR && p->prg != FV_PRG_AES128CTR)
        return fv_diag_set(d, FV_EINVAL, "secagg: unknown PRG %d", (int)p->prg);
    if (p->quant_bits != 0) {
        if (p->quant_bits > 31 || !(p->clip > 0) || p->clip > 3.4e38f)
            return fv_diag_set(d, FV_EINVAL,
                               "secagg: quantization to %u bits with clip %g: need 1..31 bits "
                               "and a finite clip > 0",
                               p->quant_bits, (double)p->clip);
        if (fv_fixed_check_range(p->quant_bits, n) != 0)
            return fv_diag_set(d, FV_EOVERFLOW,
                               "secagg: %u clients x %u-bit values can wrap the 32-bit sum: use "
                               "fewer bits (at most %u for this cohort)",
                               n, p->quant_bits, max_bits_for(n));
    }
    if (pol) {
        if (n < pol->min_cohort)
            return fv_diag_set(d, FV_EPOLICY, "secagg: cohort %u below the local minimum %u", n,
                               pol->min_cohort);
        if (t < pol->min_threshold)
            return fv_diag_set(d, FV_EPOLICY, "secagg: threshold %u below the local minimum %u", t,
                               pol->min_threshold);
    }
    return 0;
}

static uint32_t max_bits_for(uint32_t n)
{
    uint32_t b = 31;
    while (b > 1 && fv_fixed_check_range(b, n) != 0)
        b--;
    return b;
}

int fv_secagg_quantize(const fv_secagg_params_t *p, fv_rand_t *rng, const float *x, uint32_t *ret_q)
{
    if (p == NULL || p->quant_bits == 0 || rng == NULL || x == NULL || ret_q == NULL)
        return FV_EINVAL;
    enum { STRIP = 1024 };
    float u[STRIP];
    uint8_t raw[4 * STRIP];
    for (size_t i = 0; i < p->dim; i += STRIP) {
        size_t m = p->dim - i < STRIP ? p->dim - i : STRIP;
        fv_rand_fill(rng, raw, 4 * m);
        for (size_t j = 0; j < m; j++)
            u[j] = (float)(fv__get_u32(raw + 4 * j) >> 8) * (1.0f / 16777216.0f); /* [0,1) */
        int rc = fv_fixed_quantize(m, x + i, u, p->clip, p->quant_bits, ret_q + i);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int fv_secagg_dequantize(const fv_secagg_params_t *p, const uint32_t *sum, uint32_t n_summands,
                         float *out)
{
    if (p == NULL || p->quant_bits == 0 || sum == NULL || out == NULL || n_summands == 0)
        return FV_EINVAL;
    fv_fixed_dequantize(p->dim, sum, p->clip, p->quant_bits, n_summands, out);
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

uint32_t fv__secagg_rand_below(fv_rand_t *r, uint32_t m)
{
    /* accept x < floor(2^32 / m) * m, so x % m is uniform */
    uint64_t accept = ((uint64_t)1 << 32) / m * m;
    uint8_t b[4];
    uint32_t x;
    do {
        fv_rand_fill(r, b, 4);
        x = fv__get_u32(b);
    } while ((uint64_t)x >= accept);
    return x % m;
}

static void graph_compute_neighbors(const fv__secagg_graph_t *g, uint32_t u, uint32_t *out)
{
    if (g->classic) {
        uint32_t j = 0;
        for (uint32_t v = 0; v < g->n; v++)
            if (v != u)
                out[j++] = v;
        return;
    }
    uint32_t n = g->n, pu = g->pos[u], j = 0;
    for (uint32_t s = 1; s <= g->k / 2; s++) {
        out[j++] = g->perm[(pu + s) % n];
        out[j++] = g->perm[(pu + n - s) % n];
    }
    qsort(out, g->k, sizeof(uint32_t), cmp_u32);
}

int fv__secagg_graph_init(fv__secagg_graph_t *g, const fv_secagg_params_t *p, bool with_lists)
{
    memset(g, 0, sizeof(*g));
    g->n = p->n_clients;
    g->k = p->n_neighbors;
    g->classic = g->k == g->n - 1;
    if (g->classic)
        return 0;
    g->perm = malloc(sizeof(uint32_t) * g->n);
    g->pos = malloc(sizeof(uint32_t) * g->n);
    if (g->perm == NULL || g->pos == NULL)
        goto nomem;
    for (uint32_t i = 0; i < g->n; i++)
        g->perm[i] = i;
    fv_rand_t r;
    fv_rand_seeded(&r, p->graph_seed);
    for (uint32_t i = g->n - 1; i > 0; i--) {
        uint32_t j = fv__secagg_rand_below(&r, i + 1);
        uint32_t tmp = g->perm[i];
        g->perm[i] = g->perm[j];
        g->perm[j] = tmp;
    }
    for (uint32_t i = 0; i < g->n; i++)
        g->pos[g->perm[i]] = i;
    if (with_lists) {
        g->nb = malloc(sizeof(uint32_t) * (size_t)g->n * g->k);
        if (g->nb == NULL)
            goto nomem;
        for (uint32_t u = 0; u < g->n; u++)
            graph_compute_neighbors(g, u, g->nb + (size_t)u * g->k);
    }
    return 0;
nomem:
    fv__secagg_graph_close(g);
    return FV_ENOMEM;
}

void fv__secagg_graph_close(fv__secagg_graph_t *g)
{
    free(g->perm);
    free(g->pos);
    free(g->nb);
    memset(g, 0, sizeof(*g));
}

bool fv__secagg_graph_adjacent(const fv__secagg_graph_t *g, uint32_t u, uint32_t v)
{
    if (u == v || u >= g->n || v >= g->n)
        return false;
    if (g->classic)
        return true;
    uint32_t dist = (g->pos[v] + g->n - g->pos[u]) % g->n;
    return dist <= g->k / 2 || dist >= g->n - g->k / 2;
}

void fv__secagg_graph_neighbors(const fv__secagg_graph_t *g, uint32_t u, uint32_t *out)
{
    if (g->nb)
        memcpy(out, g->nb + (size_t)u * g->k, sizeof(uint32_t) * g->k);
    else
        graph_compute_neighbors(g, u, out);
}

/* Number of entries of the sorted a[0..n) below v. */
static uint32_t lower_bound(const uint32_t *a, uint32_t n, uint32_t v)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int64_t fv__secagg_graph_holder_rank(const fv__secagg_graph_t *g, uint32_t u, uint32_t v)
{
    if (u >= g->n || v >= g->n)
        return -1;
    if (g->classic)
        return v;
    if (u != v && !fv__secagg_graph_adjacent(g, u, v))
        return -1;
    /* sparse servers keep the lists; a graph without lists cannot answer for others */
    if (g->nb == NULL)
        return -1;
    return (int64_t)lower_bound(g->nb + (size_t)u * g->k, g->k, v) + (u < v ? 1 : 0);
}

int fv_secagg_neighbors(const fv_secagg_params_t *p, uint32_t u, uint32_t *out)
{
    int rc = fv_secagg_params_check(p, NULL, NULL);
    if (rc < 0)
        return rc;
    if (u >= p->n_clients)
        return FV_EINVAL;
    fv__secagg_graph_t g;
    if ((rc = fv__secagg_graph_init(&g, p, false)) < 0)
        return rc;
    fv__secagg_graph_neighbors(&g, u, out);
    fv__secagg_graph_close(&g);
    return 0;
}

/* ---- helpers shared by both sides ------------------------------------------------------ */

/* label || job || round into ctx (returns its length; ctx holds >= 40 bytes). */
static size_t make_ctx(uint8_t *ctx, const char *label, uint64_t job, uint64_t round)
{
    size_t l = strlen(label);
    memcpy(ctx, label, l);
    fv__put_u64(ctx + l, job);
    fv__put_u64(ctx + l + 8, round);
    return l + 16;
}

static void share_ad(uint8_t ad[24], uint64_t job, uint64_t round, uint32_t from, uint32_t to)
{
    fv__put_u64(ad, job);
    fv__put_u64(ad + 8, round);
    fv__put_u32(ad + 16, from);
    fv__put_u32(ad + 20, to);
}

static void share_nonce(uint8_t nonce[FV_AEAD_NONCE_BYTES], uint64_t job, uint64_t round,
                        uint32_t from, uint32_t to)
{
    uint8_t buf[sizeof(nonce_label) - 1 + 24], h[FV_HASH_BYTES];
    memcpy(buf, nonce_label, sizeof(nonce_label) - 1);
    share_ad(buf + sizeof(nonce_label) - 1, job, round, from, to);
    fv_sha256(h, buf, sizeof(buf));
    memcpy(nonce, h, FV_AEAD_NONCE_BYTES);
}

/* The byte string an ADVERTISE signature covers. */
#define ADV_STMT_BYTES (sizeof(adv_label) - 1 + 8 + 8 + 4 + 2 * FV_KX_PK_BYTES)
static void adv_statement(uint8_t *out, uint64_t job, uint64_t round, uint32_t id,
                          const uint8_t *c_pk, const uint8_t *s_pk)
{
    size_t l = sizeof(adv_label) - 1;
    memcpy(out, adv_label, l);
    fv__put_u64(out + l, job);
    fv__put_u64(out + l + 8, round);
    fv__put_u32(out + l + 16, id);
    memcpy(out + l + 20, c_pk, 32);
    memcpy(out + l + 52, s_pk, 32);
}

static int verify_key_entry(const fv_secagg_key_entry_t *e, uint64_t job, uint64_t round,
                            const uint8_t *id_pk)
{
    uint8_t stmt[ADV_STMT_BYTES];
    adv_statement(stmt, job, round, e->id, e->c_pk, e->s_pk);
    return fv_sign_verify(e->sig, stmt, sizeof(stmt), id_pk) == 0 ? 0 : FV_EAUTH;
}

/* "fv-secagg u3 v1" || job || round || count || ids: malloc'd. */
static uint8_t *u3_statement(uint64_t job, uint64_t round, const uint32_t *ids, uint32_t count,
                             size_t *ret_len)
{
    size_t l = sizeof(u3_label) - 1;
    size_t len = l + 20 + 4 * (size_t)count;
    uint8_t *s = malloc(len);
    if (s == NULL)
        return NULL;
    memcpy(s, u3_label, l);
    fv__put_u64(s + l, job);
    fv__put_u64(s + l + 8, round);
    fv__put_u32(s + l + 16, count);
    for (uint32_t i = 0; i < count; i++)
        fv__put_u32(s + l + 20 + 4 * i, ids[i]);
    *ret_len = len;
    return s;
}

/* The consistency tag of sender `from` for recipient `to` over the U3 digest: keyed BLAKE2b
 * (64 bytes, the size of the wire entry) under the pair's u3-MAC key. */
static void u3_tag(uint8_t tag[FV_SIGN_BYTES], const uint8_t key[FV_KX_KEY_BYTES],
                   const uint8_t digest[FV_HASH_BYTES], uint32_t from, uint32_t to)
{
    uint8_t msg[8 + FV_HASH_BYTES];
    fv__put_u32(msg, from);
    fv__put_u32(msg + 4, to);
    memcpy(msg + 8, digest, FV_HASH_BYTES);
    crypto_generichash(tag, FV_SIGN_BYTES, msg, sizeof(msg), key, FV_KX_KEY_BYTES);
}

/* y is built in the message buffer as host uint32 words; the wire wants little-endian. */
static void words_to_le(uint32_t *w, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++)
        w[i] = __builtin_bswap32(w[i]);
#else
    (void)w;
    (void)n;
#endif
}

/* ---- client ------------------------------------------------------------------------------- */

struct client_secrets {
    uint8_t id_sk[FV_SIGN_SK_BYTES];
    uint8_t c_sk[FV_KX_SK_BYTES];
    uint8_t s_sk[FV_KX_SK_BYTES];
    uint8_t b[FV_PRG_SEED_BYTES];
    uint8_t key[FV_KX_KEY_BYTES]; /* scratch for one pairwise mask key */
    uint8_t pt[FV_SECAGG_PT_BYTES];
    fv_shamir_share_t own_b, own_s;
};

enum { NB_U1 = 1, NB_U2 = 2, NB_U3 = 4, NB_SEEN = 8 };

struct fv_secagg_client {
    uint64_t job, round;
    uint32_t n, t, k, dim, id;
    fv_prg_kind_t prg;
    fv_secagg_policy_t pol;
    fv_rand_t *rng;
    int state;
    bool classic;
    uint32_t *nb;      /* sorted N(u), k entries */
    uint8_t *nb_id_pk; /* identity keys of the neighbours, k x 32 */
    uint8_t id_pk[FV_SIGN_PK_BYTES];
    uint8_t (*nb_cpk)[FV_KX_PK_BYTES];
    uint8_t (*nb_spk)[FV_KX_PK_BYTES];
    uint8_t *nb_flags;
    uint8_t c_pk[FV_KX_PK_BYTES], s_pk[FV_KX_PK_BYTES];
    uint8_t adv_sig[FV_SIGN_BYTES]; /* my own advertisement, to recognise it in KEYLIST */
    struct client_secrets *sec;     /* fv_secret_alloc */
    uint8_t *enc_keys;              /* fv_secret_alloc, 2k x 32: k share-encryption keys, */
    uint8_t *mac_keys;              /* then (enc_keys + 32k) k u3-MAC keys */
    fv_shamir_share_t *recv;        /* fv_secret_alloc, k x 2 (b, s), then: */
    fv_shamir_share_t *split;       /* 2(k+1): my own split, only during share keys */
    const uint32_t *x;
    uint8_t u3_digest[FV_HASH_BYTES]; /* SHA-256 of the U3 statement I tagged */
    fv_secagg_stats_t st;
};

static int64_t client_nb_index(const fv_secagg_client_t *c, uint32_t v)
{
    if (v >= c->n || v == c->id)
        return -1;
    if (c->classic)
        return v < c->id ? v : v - 1;
    uint32_t i = lower_bound(c->nb, c->k, v);
    return i < c->k && c->nb[i] == v ? (int64_t)i : -1;
}

static void client_wipe(fv_secagg_client_t *c)
{
    if (c->sec)
        fv_crypto_wipe(c->sec, sizeof(*c->sec));
    if (c->enc_keys)
        fv_crypto_wipe(c->enc_keys, (size_t)c->k * 2 * FV_KX_KEY_BYTES);
    if (c->recv)
        fv_crypto_wipe(c->recv,
                       ((size_t)c->k * 2 + 2 * ((size_t)c->k + 1)) * sizeof(fv_shamir_share_t));
}

static int client_abort(fv_secagg_client_t *c, int err)
{
    client_wipe(c);
    c->state = ABORTED;
    return err;
}

void fv_secagg_client_free(fv_secagg_client_t *c)
{
    if (c == NULL)
        return;
    fv_secret_free(c->sec); /* sodium_free wipes */
    fv_secret_free(c->enc_keys);
    fv_secret_free(c->recv);
    free(c->nb);
    free(c->nb_id_pk);
    free(c->nb_cpk);
    free(c->nb_spk);
    free(c->nb_flags);
    free(c);
}

int fv_secagg_client_new(const fv_secagg_params_t *p, const fv_secagg_policy_t *policy, uint32_t id,
                         const uint8_t identity_sk[FV_SIGN_SK_BYTES], fv_rand_t *rng,
                         fv_secagg_client_t **ret, fv_diag_t *d)
{
    int rc = fv_secagg_params_check(p, policy, d);
    if (rc < 0)
        return rc;
    if ((rc = fv_crypto_init()) < 0)
        return rc;
    if (id >= p->n_clients || identity_sk == NULL || rng == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "secagg client: bad id %u or missing key/rng", id);
    fv_secagg_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return FV_ENOMEM;
    c->job = p->job_id;
    c->round = p->round;
    c->n = p->n_clients;
    c->t = p->threshold;
    c->k = p->n_neighbors;
    c->dim = p->dim;
    c->id = id;
    c->prg = p->prg;
    if (policy)
        c->pol = *policy;
    c->rng = rng;
    c->classic = c->k == c->n - 1;
    fv__secagg_graph_t g;
    rc = FV_ENOMEM;
    c->nb = malloc(sizeof(uint32_t) * c->k);
    c->nb_id_pk = malloc((size_t)c->k * FV_SIGN_PK_BYTES);
    c->nb_cpk = malloc((size_t)c->k * FV_KX_PK_BYTES);
    c->nb_spk = malloc((size_t)c->k * FV_KX_PK_BYTES);
    c->nb_flags = calloc(c->k, 1);
    c->sec = fv_secret_alloc(sizeof(*c->sec));
    c->enc_keys = fv_secret_alloc((size_t)c->k * 2 * FV_KX_KEY_BYTES);
    c->recv =
        fv_secret_alloc(((size_t)c->k * 2 + 2 * ((size_t)c->k + 1)) * sizeof(fv_shamir_share_t));
    if (!c->nb || !c->nb_id_pk || !c->nb_cpk || !c->nb_spk || !c->nb_flags || !c->sec ||
        !c->enc_keys || !c->recv)
        goto fail;
    c->mac_keys = c->enc_keys + (size_t)c->k * FV_KX_KEY_BYTES;
    c->split = c->recv + (size_t)c->k * 2;
    client_wipe(c);
    if ((rc = fv__secagg_graph_init(&g, p, false)) < 0)
        goto fail;
    fv__secagg_graph_neighbors(&g, id, c->nb);
    fv__secagg_graph_close(&g);
    for (uint32_t i = 0; i < c->k; i++)
        memcpy(c->nb_id_pk + (size_t)i * 32, p->identity_pks + (size_t)c->nb[i] * 32, 32);
    memcpy(c->id_pk, p->identity_pks + (size_t)id * 32, 32);
    memcpy(c->sec->id_sk, identity_sk, FV_SIGN_SK_BYTES);
    *ret = c;
    return 0;
fail:
    fv_secagg_client_free(c);
    return rc;
}

static bool all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= b[i];
    return acc == 0;
}

unsigned fv__secagg_client_wiped(const fv_secagg_client_t *c)
{
    const struct client_secrets *s = c->sec;
    unsigned r = 0;
    r |= all_zero(s->b, sizeof(s->b)) ? 1u : 0;
    r |= all_zero(s->s_sk, sizeof(s->s_sk)) ? 2u : 0;
    r |= all_zero(s->c_sk, sizeof(s->c_sk)) ? 4u : 0;
    r |= all_zero(c->enc_keys, (size_t)c->k * FV_KX_KEY_BYTES) ? 8u : 0;
    r |= all_zero(s->id_sk, sizeof(s->id_sk)) ? 16u : 0;
    r |= all_zero(&s->own_b, sizeof(s->own_b)) && all_zero(&s->own_s, sizeof(s->own_s)) ? 32u : 0;
    r |= all_zero(c->recv, (size_t)c->k * 2 * sizeof(fv_shamir_share_t)) ? 64u : 0;
    r |= all_zero(c->mac_keys, (size_t)c->k * FV_KX_KEY_BYTES) ? 128u : 0;
    return r;
}

int fv_secagg_client_phase(const fv_secagg_client_t *c)
{
    return c->state;
}

void fv_secagg_client_stats(const fv_secagg_client_t *c, fv_secagg_stats_t *ret)
{
    *ret = c->st;
}

int fv_secagg_client_set_input(fv_secagg_client_t *c, const uint32_t *x)
{
    if (c == NULL || x == NULL)
        return FV_EINVAL;
    c->x = x;
    return 0;
}

int fv_secagg_client_start(fv_secagg_client_t *c, fv_secagg_outbox_t *out, fv_diag_t *d)
{
    if (c->state != 0)
        return fv_diag_set(d, FV_EPHASE, "secagg client %u: already started", c->id);
    int rc;
    if ((rc = fv_kx_keypair(c->rng, c->c_pk, c->sec->c_sk)) < 0 ||
        (rc = fv_kx_keypair(c->rng, c->s_pk, c->sec->s_sk)) < 0)
        return client_abort(c, rc);
    c->st.n_keygen += 2;
    uint8_t stmt[ADV_STMT_BYTES];
    adv_statement(stmt, c->job, c->round, c->id, c->c_pk, c->s_pk);
    size_t len = FV__SECAGG_HEADER_BYTES + FV__SECAGG_KEY_ENTRY_BYTES;
    uint8_t *buf = malloc(len);
    if (buf == NULL)
        return client_abort(c, FV_ENOMEM);
    fv__secagg_put_header(buf, FV_SECAGG_MSG_ADVERTISE, c->job, c->round, c->id, FV_SECAGG_SERVER,
                          1);
    uint8_t *e = buf + FV__SECAGG_HEADER_BYTES;
    fv__put_u32(e, c->id);
    memcpy(e + 4, c->c_pk, 32);
    memcpy(e + 36, c->s_pk, 32);
    if ((rc = fv_sign(e + 68, stmt, sizeof(stmt), c->sec->id_sk)) < 0) {
        free(buf);
        return client_abort(c, rc);
    }
    c->st.n_sign++;
    memcpy(c->adv_sig, e + 68, FV_SIGN_BYTES);
    if ((rc = fv__secagg_outbox_push(out, FV_SECAGG_SERVER, buf, len)) < 0)
        return client_abort(c, rc);
    c->state = 1;
    return 0;
}

static int client_on_keylist(fv_secagg_client_t *c, const fv_secagg_msg_t *m,
                             fv_secagg_outbox_t *out, fv_diag_t *d)
{
    bool own = false;
    uint32_t n_u1 = 0;
    fv_shamir_share_t *sh = NULL;
    uint8_t *buf = NULL;
    int rc;
    for (uint32_t i = 0; i < m->n_items; i++) {
        const fv_secagg_key_entry_t *e = &m->keys[i];
        if (e->id == c->id) {
            if (own)
                return fv_diag_set(d, FV_EDUP, "secagg client %u: own key listed twice", c->id);
            own = true;
            if (memcmp(e->c_pk, c->c_pk, 32) != 0 || memcmp(e->s_pk, c->s_pk, 32) != 0 ||
                memcmp(e->sig, c->adv_sig, FV_SIGN_BYTES) != 0)
                return fv_diag_set(d, FV_EAUTH,
                                   "secagg client %u: the key list carries other keys (or "
                                   "another signature) under my id",
                                   c->id);
            continue;
        }
        int64_t j = client_nb_index(c, e->id);
        if (j < 0)
            return fv_diag_set(d, FV_EPEER, "secagg client %u: key list names %u, not a neighbour",
                               c->id, e->id);
        if (c->nb_flags[j] & NB_U1)
            return fv_diag_set(d, FV_EDUP, "secagg client %u: key list names %u twice", c->id,
                               e->id);
        c->st.n_verify++;
        if (verify_key_entry(e, c->job, c->round, c->nb_id_pk + (size_t)j * 32) < 0)
            return fv_diag_set(d, FV_EAUTH,
                               "secagg client %u: keys of %u fail their identity signature", c->id,
                               e->id);
        if (memcmp(e->c_pk, c->c_pk, 32) == 0 || memcmp(e->s_pk, c->s_pk, 32) == 0)
            return fv_diag_set(d, FV_EAUTH, "secagg client %u: %u reflects my public key", c->id,
                               e->id);
        memcpy(c->nb_cpk[j], e->c_pk, 32);
        memcpy(c->nb_spk[j], e->s_pk, 32);
        c->nb_flags[j] |= NB_U1;
        n_u1++;
    }
    if (!own)
        return fv_diag_set(d, FV_EPEER, "secagg client %u: the key list leaves me out", c->id);
    if (n_u1 + 1 < c->t)
        return fv_diag_set(d, FV_ETHRESHOLD,
                           "secagg client %u: %u share holders in U1, threshold %u", c->id,
                           n_u1 + 1, c->t);

    /* Draw b_u, split b_u and s_sk into k+1 shares (x = rank in H(u) + 1). */
    uint32_t holders = c->k + 1;
    sh = c->split;
    fv_rand_fill(c->rng, c->sec->b, sizeof(c->sec->b));
    if ((rc = fv_shamir_split(c->rng, c->sec->b, c->t, holders, sh)) < 0 ||
        (rc = fv_shamir_split(c->rng, c->sec->s_sk, c->t, holders, sh + holders)) < 0)
        goto out;
    uint32_t self_rank = lower_bound(c->nb, c->k, c->id);
    c->sec->own_b = sh[self_rank];
    c->sec->own_s = sh[holders + self_rank];

    size_t len = FV__SECAGG_HEADER_BYTES + (size_t)n_u1 * FV__SECAGG_CT_ENTRY_BYTES;
    rc = FV_ENOMEM;
    if ((buf = malloc(len)) == NULL)
        goto out;
    fv__secagg_put_header(buf, FV_SECAGG_MSG_SHARES, c->job, c->round, c->id, FV_SECAGG_SERVER,
                          n_u1);
    uint8_t *p = buf + FV__SECAGG_HEADER_BYTES;
    uint8_t ctx[64], ad[24], nonce[FV_AEAD_NONCE_BYTES];
    size_t ctx_len = make_ctx(ctx, ctx_enc_label, c->job, c->round);
    for (uint32_t j = 0; j < c->k; j++) {
        if (!(c->nb_flags[j] & NB_U1))
            continue;
        uint32_t v = c->nb[j];
        uint32_t rank = j + (c->id < v ? 1 : 0);
        uint8_t *key = c->enc_keys + (size_t)j * FV_KX_KEY_BYTES;
        if ((rc = fv_kx_agree(key, c->sec->c_sk, c->c_pk, c->nb_cpk[j], ctx, ctx_len)) < 0) {
            fv_diag_set(d, rc, "secagg client %u: key agreement with %u failed", c->id, v);
            goto out;
        }
        c->st.n_kx++;
        /* The pair's u3-MAC key: a PRF of the (authenticated) pair key, for phase 3/4. */
        crypto_generichash(c->mac_keys + (size_t)j * FV_KX_KEY_BYTES, FV_KX_KEY_BYTES,
                           (const uint8_t *)u3mac_label, sizeof(u3mac_label) - 1, key,
                           FV_KX_KEY_BYTES);
        fv_shamir_share_encode(&sh[rank], c->sec->pt);
        fv_shamir_share_encode(&sh[holders + rank], c->sec->pt + FV_SECAGG_SHARE_WIRE_BYTES);
        share_ad(ad, c->job, c->round, c->id, v);
        share_nonce(nonce, c->job, c->round, c->id, v);
        fv__put_u32(p, v);
        rc = fv_aead_seal(p + 4, c->sec->pt, FV_SECAGG_PT_BYTES, ad, sizeof(ad), nonce, key);
        fv_crypto_wipe(c->sec->pt, sizeof(c->sec->pt));
        if (rc < 0)
            goto out;
        c->st.n_aead++;
        p += FV__SECAGG_CT_ENTRY_BYTES;
    }
    rc = fv__secagg_outbox_push(out, FV_SECAGG_SERVER, buf, len);
    buf = NULL;
    if (rc == 0)
        c->state = 2;
out:
    free(buf);
    fv_crypto_wipe(sh, sizeof(*sh) * 2 * holders);
    return rc;
}

static int client_on_forward(fv_secagg_client_t *c, const fv_secagg_msg_t *m,
                             fv_secagg_outbox_t *out, fv_diag_t *d)
{
    uint8_t ad[24], nonce[FV_AEAD_NONCE_BYTES];
    uint32_t n_u2 = 0;
    int rc;
    for (uint32_t i = 0; i < m->n_items; i++) {
        uint32_t v = m->cts[i].peer;
        int64_t j = client_nb_index(c, v);
        if (j < 0 || !(c->nb_flags[j] & NB_U1))
            return fv_diag_set(d, FV_EPEER,
                               "secagg client %u: forwarded shares from %u, not a neighbour in U1",
                               c->id, v);
        if (c->nb_flags[j] & NB_U2)
            return fv_diag_set(d, FV_EDUP, "secagg client %u: shares from %u forwarded twice",
                               c->id, v);
        share_ad(ad, c->job, c->round, v, c->id);
        share_nonce(nonce, c->job, c->round, v, c->id);
        rc = fv_aead_open(c->sec->pt, m->cts[i].ct, FV_SECAGG_CT_BYTES, ad, sizeof(ad), nonce,
                          c->enc_keys + (size_t)j * FV_KX_KEY_BYTES);
        c->st.n_aead++;
        if (rc < 0)
            return fv_diag_set(d, FV_EAUTH, "secagg client %u: shares from %u fail authentication",
                               c->id, v);
        rc = fv_shamir_share_decode(c->sec->pt, &c->recv[2 * j]);
        if (rc == 0)
            rc = fv_shamir_share_decode(c->sec->pt + FV_SECAGG_SHARE_WIRE_BYTES,
                                        &c->recv[2 * j + 1]);
        fv_crypto_wipe(c->sec->pt, sizeof(c->sec->pt));
        if (rc < 0)
            return fv_diag_set(d, FV_EPROTO, "secagg client %u: malformed shares from %u", c->id,
                               v);
        c->nb_flags[j] |= NB_U2;
        n_u2++;
    }
    if (n_u2 + 1 < c->t)
        return fv_diag_set(d, FV_ETHRESHOLD,
                           "secagg client %u: %u share holders in U2, threshold %u", c->id,
                           n_u2 + 1, c->t);

    /* y = x + PRG(b) + sum (u < v ? + : -) PRG(s_uv), built in the message buffer. */
    size_t len = FV__SECAGG_HEADER_BYTES + 4 * (size_t)c->dim;
    uint8_t *buf = malloc(len);
    if (buf == NULL)
        return FV_ENOMEM;
    fv__secagg_put_header(buf, FV_SECAGG_MSG_MASKED, c->job, c->round, c->id, FV_SECAGG_SERVER,
                          c->dim);
    /* malloc alignment + 32: the words are uint32-aligned. */
    uint32_t *y = (uint32_t *)(void *)(buf + FV__SECAGG_HEADER_BYTES);
    memcpy(y, c->x, 4 * (size_t)c->dim);
    c->x = NULL;
    if ((rc = fv_prg_mask_add(c->prg, c->sec->b, +1, y, c->dim)) < 0)
        goto fail;
    c->st.prg_words += c->dim;
    uint8_t ctx[64];
    size_t ctx_len = make_ctx(ctx, ctx_mask_label, c->job, c->round);
    for (uint32_t j = 0; j < c->k; j++) {
        if (!(c->nb_flags[j] & NB_U2))
            continue;
        rc = fv_kx_agree(c->sec->key, c->sec->s_sk, c->s_pk, c->nb_spk[j], ctx, ctx_len);
        c->st.n_kx++;
        if (rc < 0) {
            fv_diag_set(d, rc, "secagg client %u: mask key agreement with %u failed", c->id,
                        c->nb[j]);
            goto fail;
        }
        rc = fv_prg_mask_add(c->prg, c->sec->key, c->id < c->nb[j] ? +1 : -1, y, c->dim);
        fv_crypto_wipe(c->sec->key, sizeof(c->sec->key));
        if (rc < 0)
            goto fail;
        c->st.prg_words += c->dim;
    }
    words_to_le(y, c->dim);
    /* Nothing but shares is needed from here on. */
    fv_crypto_wipe(c->sec->b, sizeof(c->sec->b));
    fv_crypto_wipe(c->sec->s_sk, sizeof(c->sec->s_sk));
    fv_crypto_wipe(c->sec->c_sk, sizeof(c->sec->c_sk));
    fv_crypto_wipe(c->enc_keys, (size_t)c->k * FV_KX_KEY_BYTES);
    if ((rc = fv__secagg_outbox_push(out, FV_SECAGG_SERVER, buf, len)) < 0)
        return rc;
    c->state = 3;
    return 0;
fail:
    free(buf);
    return rc;
}

static int client_on_u3(fv_secagg_client_t *c, const fv_secagg_msg_t *m, fv_secagg_outbox_t *out,
                        fv_diag_t *d)
{
    bool self = false;
    for (uint32_t i = 0; i < m->n_ids; i++) {
        uint32_t v = m->ids[i];
        if (i > 0 && v <= m->ids[i - 1])
            return fv_diag_set(d, v == m->ids[i - 1] ? FV_EDUP : FV_EPROTO,
                               "secagg client %u: U3 list %s at %u", c->id,
                               v == m->ids[i - 1] ? "repeats a client" : "not sorted", v);
        if (v >= c->n)
            return fv_diag_set(d, FV_EPEER, "secagg client %u: U3 names unknown client %u", c->id,
                               v);
        if (v == c->id) {
            self = true;
            continue;
        }
        int64_t j = client_nb_index(c, v);
        if (j < 0)
            continue;
        if (!(c->nb_flags[j] & NB_U2))
            return fv_diag_set(
                d, FV_EPEER, "secagg client %u: U3 names %u, which never sent me shares", c->id, v);
        c->nb_flags[j] |= NB_U3;
    }
    if (!self)
        return fv_diag_set(d, FV_EPEER, "secagg client %u: U3 leaves me out", c->id);
    if (m->n_ids < c->t)
        return fv_diag_set(d, FV_ETHRESHOLD, "secagg client %u: |U3| = %u below threshold %u",
                           c->id, m->n_ids, c->t);
    if (m->n_ids < c->pol.min_cohort)
        return fv_diag_set(d, FV_EPOLICY,
                           "secagg client %u: only %u inputs in the sum, local minimum %u", c->id,
                           m->n_ids, c->pol.min_cohort);
    size_t stmt_len;
    uint8_t *stmt = u3_statement(c->job, c->round, m->ids, m->n_ids, &stmt_len);
    if (stmt == NULL)
        return FV_ENOMEM;
    fv_sha256(c->u3_digest, stmt, stmt_len);
    free(stmt);
    /* CONSIST: one tag per neighbour in my U3, in id order (c->nb is sorted). */
    uint32_t cnt = 0;
    for (uint32_t j = 0; j < c->k; j++)
        cnt += (c->nb_flags[j] & NB_U3) ? 1 : 0;
    size_t len = FV__SECAGG_HEADER_BYTES + (size_t)cnt * FV__SECAGG_SIG_ENTRY_BYTES;
    uint8_t *buf = malloc(len);
    if (buf == NULL)
        return FV_ENOMEM;
    fv__secagg_put_header(buf, FV_SECAGG_MSG_CONSIST, c->job, c->round, c->id, FV_SECAGG_SERVER,
                          cnt);
    uint8_t *p = buf + FV__SECAGG_HEADER_BYTES;
    for (uint32_t j = 0; j < c->k; j++) {
        if (!(c->nb_flags[j] & NB_U3))
            continue;
        fv__put_u32(p, c->nb[j]);
        u3_tag(p + 4, c->mac_keys + (size_t)j * FV_KX_KEY_BYTES, c->u3_digest, c->id, c->nb[j]);
        c->st.n_mac++;
        p += FV__SECAGG_SIG_ENTRY_BYTES;
    }
    int rc;
    if ((rc = fv__secagg_outbox_push(out, FV_SECAGG_SERVER, buf, len)) < 0)
        return rc;
    c->state = 4;
    return 0;
}

static int client_on_siglist(fv_secagg_client_t *c, const fv_secagg_msg_t *m,
                             fv_secagg_outbox_t *out, fv_diag_t *d)
{
    /* I count for my own U3 (I tagged it); every neighbour's tag is checked, the invalid
     * ones (a broken or lying sender, or a server that forwards a tag over another U3, for
     * another recipient or from another sender) count for nothing. */
    uint32_t n_valid = 1, n_bad = 0;
    uint8_t want[FV_SIGN_BYTES];
    for (uint32_t j = 0; j < c->k; j++)
        c->nb_flags[j] &= (uint8_t)~NB_SEEN;
    for (uint32_t i = 0; i < m->n_items; i++) {
        uint32_t v = m->sigs[i].id;
        int64_t j = client_nb_index(c, v);
        if (j < 0 || !(c->nb_flags[j] & NB_U3))
            return fv_diag_set(d, FV_EPEER,
                               "secagg client %u: consistency tag of %u, not a neighbour in U3",
                               c->id, v);
        if (c->nb_flags[j] & NB_SEEN)
            return fv_diag_set(d, FV_EDUP, "secagg client %u: tag of %u twice", c->id, v);
        c->nb_flags[j] |= NB_SEEN;
        u3_tag(want, c->mac_keys + (size_t)j * FV_KX_KEY_BYTES, c->u3_digest, v, c->id);
        c->st.n_mac++;
        if (sodium_memcmp(want, m->sigs[i].sig, FV_SIGN_BYTES) == 0)
            n_valid++;
        else
            n_bad++;
    }
    if (n_valid < c->t)
        return fv_diag_set(d, FV_ETHRESHOLD,
                           "secagg client %u: %u holders (me included) confirm the U3 I tagged, "
                           "%u tags invalid, threshold %u",
                           c->id, n_valid, n_bad, c->t);
    /* Requested s_sk shares: dropped neighbours only, never a member of the U3 I signed. */
    for (uint32_t j = 0; j < c->k; j++)
        c->nb_flags[j] &= (uint8_t)~NB_SEEN;
    for (uint32_t i = 0; i < m->n_ids; i++) {
        uint32_t v = m->ids[i];
        int64_t j = client_nb_index(c, v);
        if (v == c->id || (j >= 0 && (c->nb_flags[j] & NB_U3)))
            return fv_diag_set(d, FV_EBOTHSHARES,
                               "secagg client %u: asked for the key share of %u, which is in "
                               "U3 (its mask-seed share is due): refusing both",
                               c->id, v);
        if (j < 0 || !(c->nb_flags[j] & NB_U2))
            return fv_diag_set(d, FV_EPEER,
                               "secagg client %u: asked for shares of %u, not a neighbour in U2",
                               c->id, v);
        if (c->nb_flags[j] & NB_SEEN)
            return fv_diag_set(d, FV_EDUP, "secagg client %u: %u requested twice", c->id, v);
        c->nb_flags[j] |= NB_SEEN;
    }
    uint32_t n_b = 1;
    for (uint32_t j = 0; j < c->k; j++)
        n_b += (c->nb_flags[j] & NB_U3) ? 1 : 0;
    uint32_t count = n_b + m->n_ids;
    size_t len = FV__SECAGG_HEADER_BYTES + (size_t)count * FV__SECAGG_SHARE_ENTRY_BYTES;
    uint8_t *buf = malloc(len);
    if (buf == NULL)
        return FV_ENOMEM;
    fv__secagg_put_header(buf, FV_SECAGG_MSG_UNMASK, c->job, c->round, c->id, FV_SECAGG_SERVER,
                          count);
    uint8_t *p = buf + FV__SECAGG_HEADER_BYTES;
    fv__put_u32(p, c->id);
    p[4] = FV_SECAGG_SHARE_B;
    fv_shamir_share_encode(&c->sec->own_b, p + 5);
    p += FV__SECAGG_SHARE_ENTRY_BYTES;
    for (uint32_t j = 0; j < c->k; j++) {
        uint8_t f = c->nb_flags[j];
        if (!(f & (NB_U3 | NB_SEEN)))
            continue;
        fv__put_u32(p, c->nb[j]);
        p[4] = (f & NB_U3) ? FV_SECAGG_SHARE_B : FV_SECAGG_SHARE_S;
        fv_shamir_share_encode(&c->recv[2 * j + ((f & NB_U3) ? 0 : 1)], p + 5);
        p += FV__SECAGG_SHARE_ENTRY_BYTES;
    }
    client_wipe(c); /* one answer per round: nothing secret remains */
    int rc = fv__secagg_outbox_push(out, FV_SECAGG_SERVER, buf, len);
    if (rc < 0)
        return rc;
    c->state = CLIENT_DONE;
    return 0;
}

int fv_secagg_client_handle(fv_secagg_client_t *c, const uint8_t *msg, size_t len,
                            fv_secagg_outbox_t *out, fv_diag_t *d)
{
    if (c->state == ABORTED || c->state == CLIENT_DONE)
        return fv_diag_set(d, FV_EPHASE, "secagg client %u: round already %s", c->id,
                           c->state == ABORTED ? "aborted" : "finished");
    fv_secagg_msg_t m;
    int rc = fv_secagg_msg_decode(msg, len, &m, d);
    if (rc < 0)
        return rc;
    if (m.type % 2 != 0) {
        rc = fv_diag_set(d, FV_EPROTO, "secagg client %u: client message type %u sent to me", c->id,
                         m.type);
        goto out;
    }
    if (m.job_id != c->job || m.round != c->round) {
        rc = fv_diag_set(d, FV_EROUND,
                         "secagg client %u: message for job %llu round %llu, expected %llu/%llu",
                         c->id, (unsigned long long)m.job_id, (unsigned long long)m.round,
                         (unsigned long long)c->job, (unsigned long long)c->round);
        goto out;
    }
    if (m.from != FV_SECAGG_SERVER || m.to != c->id) {
        rc = fv_diag_set(d, FV_EPEER, "secagg client %u: message from %u to %u", c->id, m.from,
                         m.to);
        goto out;
    }
    if (m.phase != c->state) {
        rc = fv_diag_set(d, FV_EPHASE, "secagg client %u: phase %u message, I am in phase %d",
                         c->id, m.phase, c->state);
        goto out;
    }
    switch (m.type) {
    case FV_SECAGG_MSG_KEYLIST:
        rc = client_on_keylist(c, &m, out, d);
        break;
    case FV_SECAGG_MSG_SHARES_FWD:
        if (c->x == NULL) {
            rc = fv_diag_set(d, FV_EINVAL, "secagg client %u: no input set", c->id);
            goto out;
        }
        rc = client_on_forward(c, &m, out, d);
        break;
    case FV_SECAGG_MSG_U3LIST:
        rc = client_on_u3(c, &m, out, d);
        break;
    case FV_SECAGG_MSG_SIGLIST:
        rc = client_on_siglist(c, &m, out, d);
        break;
    }
    if (rc < 0)
        client_abort(c, rc);
out:
    fv_secagg_msg_close(&m);
    return rc;
}

/* ---- server ------------------------------------------------------------------------------- */

struct fv_secagg_server {
    uint64_t job, round;
    uint32_t n, t, k, dim;
    fv_prg_kind_t prg;
    uint8_t *id_pks; /* n x 32 */
    fv__secagg_graph_t g;
    int state;
    uint8_t *in; /* bit (i-1): member of U_i, i = 1..5 */
    uint32_t set_size[6];
    fv_secagg_key_entry_t *keys; /* n */
    fv_secagg_ct_entry_t **cts;  /* per sender, sorted by recipient */
    uint32_t *n_cts;
    uint32_t *acc;
    uint8_t *u3_stmt;
    size_t u3_stmt_len;
    fv_secagg_sig_entry_t **ctags; /* per sender: its CONSIST tags, sorted by recipient */
    uint32_t *n_ctags;
    fv_shamir_share_t **shares;     /* per owner (in U2): k+1 slots in share_block */
    fv_shamir_share_t *share_block; /* fv_secret_alloc, |U2| x (k+1) */
    uint32_t n_share_owners;
    uint32_t *n_shares;
    uint32_t *scratch; /* n ids */
    fv_secagg_stats_t st;
    void (*par_for)(void *par_ctx, size_t n, void (*fn)(void *arg, size_t i), void *arg);
    void *par_ctx;
};

#define IN(s, u, i) (((s)->in[u] >> ((i)-1)) & 1)

static void server_free_cts(fv_secagg_server_t *s)
{
    if (s->cts == NULL)
        return;
    for (uint32_t u = 0; u < s->n; u++)
        free(s->cts[u]);
    free(s->cts);
    s->cts = NULL;
}

static void server_free_ctags(fv_secagg_server_t *s)
{
    if (s->ctags == NULL)
        return;
    for (uint32_t u = 0; u < s->n; u++)
        free(s->ctags[u]);
    free(s->ctags);
    s->ctags = NULL;
}

static void server_free_shares(fv_secagg_server_t *s)
{
    if (s->shares == NULL)
        return;
    fv_secret_free(s->share_block); /* wipes */
    s->share_block = NULL;
    free(s->shares);
    s->shares = NULL;
}

void fv_secagg_server_free(fv_secagg_server_t *s)
{
    if (s == NULL)
        return;
    server_free_cts(s);
    server_free_shares(s);
    fv__secagg_graph_close(&s->g);
    free(s->id_pks);
    free(s->in);
    free(s->keys);
    free(s->n_cts);
    free(s->acc);
    free(s->u3_stmt);
    server_free_ctags(s);
    free(s->n_ctags);
    free(s->n_shares);
    free(s->scratch);
    free(s);
}

int fv_secagg_server_new(const fv_secagg_params_t *p, fv_secagg_server_t **ret, fv_diag_t *d)
{
    int rc = fv_secagg_params_check(p, NULL, d);
    if (rc < 0)
        return rc;
    if ((rc = fv_crypto_init()) < 0)
        return rc;
    fv_secagg_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return FV_ENOMEM;
    s->job = p->job_id;
    s->round = p->round;
    s->n = p->n_clients;
    s->t = p->threshold;
    s->k = p->n_neighbors;
    s->dim = p->dim;
    s->prg = p->prg;
    rc = FV_ENOMEM;
    s->id_pks = malloc((size_t)s->n * 32);
    s->in = calloc(s->n, 1);
    s->keys = calloc(s->n, sizeof(*s->keys));
    s->cts = calloc(s->n, sizeof(*s->cts));
    s->n_cts = calloc(s->n, sizeof(*s->n_cts));
    s->acc = calloc(s->dim, sizeof(uint32_t));
    s->ctags = calloc(s->n, sizeof(*s->ctags));
    s->n_ctags = calloc(s->n, sizeof(*s->n_ctags));
    s->shares = calloc(s->n, sizeof(*s->shares));
    s->n_shares = calloc(s->n, sizeof(*s->n_shares));
    s->scratch = malloc(sizeof(uint32_t) * s->n);
    if (!s->id_pks || !s->in || !s->keys || !s->cts || !s->n_cts || !s->acc || !s->ctags ||
        !s->n_ctags || !s->shares || !s->n_shares || !s->scratch)
        goto fail;
    memcpy(s->id_pks, p->identity_pks, (size_t)s->n * 32);
    if ((rc = fv__secagg_graph_init(&s->g, p, true)) < 0)
        goto fail;
    *ret = s;
    return 0;
fail:
    fv_secagg_server_free(s);
    return rc;
}

void fv_secagg_server_prefault(fv_secagg_server_t *s)
{
    if (s != NULL && s->acc != NULL)
        memset(s->acc, 0, (size_t)s->dim * sizeof(uint32_t));
}

int fv_secagg_server_phase(const fv_secagg_server_t *s)
{
    return s->state;
}

uint32_t fv_secagg_server_set_size(const fv_secagg_server_t *s, int i)
{
    return i >= 1 && i <= 5 ? s->set_size[i] : 0;
}

bool fv_secagg_server_in_set(const fv_secagg_server_t *s, int i, uint32_t u)
{
    return i >= 1 && i <= 5 && u < s->n && IN(s, u, i);
}

int fv_secagg_server_result(const fv_secagg_server_t *s, const uint32_t **ret_sum)
{
    if (s->state != CLIENT_DONE)
        return FV_EPHASE;
    *ret_sum = s->acc;
    return 0;
}

void fv_secagg_server_stats(const fv_secagg_server_t *s, fv_secagg_stats_t *ret)
{
    *ret = s->st;
}

static int server_on_shares(fv_secagg_server_t *s, const fv_secagg_msg_t *m, fv_diag_t *d)
{
    uint32_t u = m->from, expect = 0;
    for (uint32_t i = 0; i < m->n_items; i++) {
        uint32_t v = m->cts[i].peer;
        if (i > 0 && v <= m->cts[i - 1].peer)
            return fv_diag_set(d, v == m->cts[i - 1].peer ? FV_EDUP : FV_EPROTO,
                               "secagg server: shares of %u: recipient %u repeated or unsorted", u,
                               v);
        if (v >= s->n || !fv__secagg_graph_adjacent(&s->g, u, v) || !IN(s, v, 1))
            return fv_diag_set(d, FV_EPEER,
                               "secagg server: shares of %u for %u, not a neighbour in U1", u, v);
    }
    const uint32_t *nb = s->g.nb ? s->g.nb + (size_t)u * s->k : NULL;
    for (uint32_t j = 0; j < s->k; j++) {
        uint32_t v = nb ? nb[j] : (j < u ? j : j + 1);
        expect += IN(s, v, 1);
    }
    if (m->n_items != expect)
        return fv_diag_set(d, FV_EPROTO, "secagg server: %u sent %u shares, expected %u", u,
                           m->n_items, expect);
    s->cts[u] = malloc(sizeof(fv_secagg_ct_entry_t) * (m->n_items ? m->n_items : 1));
    if (s->cts[u] == NULL)
        return FV_ENOMEM;
    memcpy(s->cts[u], m->cts, sizeof(fv_secagg_ct_entry_t) * m->n_items);
    s->n_cts[u] = m->n_items;
    return 0;
}

static void add_le_words(uint32_t *acc, const uint8_t *w, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Through an aligned bounce block so the kernel sees aligned uint32 arrays. */
    uint32_t blk[FV_MASK_BLOCK_WORDS];
    for (size_t i = 0; i < n; i += FV_MASK_BLOCK_WORDS) {
        size_t m = n - i < FV_MASK_BLOCK_WORDS ? n - i : FV_MASK_BLOCK_WORDS;
        memcpy(blk, w + 4 * i, 4 * m);
        fv_mod_add(m, blk, acc + i);
    }
#else
    for (size_t i = 0; i < n; i++)
        acc[i] += fv__get_u32(w + 4 * i);
#endif
}

static int server_on_unmask(fv_secagg_server_t *s, const fv_secagg_msg_t *m, fv_diag_t *d)
{
    uint32_t w = m->from;
    uint8_t *seen = calloc(s->n, 1);
    fv_shamir_share_t sh;
    int rc = 0;
    if (seen == NULL)
        return FV_ENOMEM;
    for (uint32_t i = 0; i < m->n_items && rc == 0; i++) {
        const fv_secagg_share_entry_t *e = &m->shares[i];
        uint32_t v = e->peer;
        int64_t rank = v < s->n ? fv__secagg_graph_holder_rank(&s->g, v, w) : -1;
        if (rank < 0)
            rc = fv_diag_set(d, FV_EPEER, "secagg server: %u sent a share of %u, not its holder", w,
                             v);
        else if (seen[v])
            rc = fv_diag_set(d, FV_EDUP, "secagg server: %u sent two shares of %u", w, v);
        else if (!(e->kind == FV_SECAGG_SHARE_B && IN(s, v, 3)) &&
                 !(e->kind == FV_SECAGG_SHARE_S && IN(s, v, 2) && !IN(s, v, 3)))
            rc = fv_diag_set(d, FV_EPROTO, "secagg server: %u sent a kind-%u share of %u", w,
                             e->kind, v);
        else if (fv_shamir_share_decode(e->share, &sh) < 0 || sh.x != (uint64_t)rank + 1)
            rc = fv_diag_set(d, FV_EPROTO, "secagg server: %u sent a malformed share of %u", w, v);
        seen[v < s->n ? v : 0] = 1;
    }
    free(seen);
    fv_crypto_wipe(&sh, sizeof(sh));
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < m->n_items; i++) {
        uint32_t v = m->shares[i].peer;
        if (s->shares[v] == NULL) { /* one block for every owner in U2, on first use */
            if (s->share_block == NULL) {
                s->share_block = fv_secret_alloc(sizeof(fv_shamir_share_t) * (s->k + 1) *
                                                 (s->set_size[2] ? s->set_size[2] : 1));
                if (s->share_block == NULL)
                    return FV_ENOMEM;
            }
            if (s->n_share_owners >= s->set_size[2]) /* cannot happen: owners are in U2 */
                return FV_EINVAL;
            s->shares[v] = s->share_block + (size_t)s->n_share_owners++ * (s->k + 1);
        }
        fv_shamir_share_decode(m->shares[i].share, &s->shares[v][s->n_shares[v]++]);
    }
    return 0;
}

static uint32_t server_members(fv_secagg_server_t *s, uint32_t u, int i, bool with_self);

/* CONSIST: one tag per neighbour of u in U3, recipients strictly increasing. The server
 * cannot check the tags (only the pair's two clients hold the key); it checks the shape. */
static int server_on_consist(fv_secagg_server_t *s, const fv_secagg_msg_t *m, fv_diag_t *d)
{
    uint32_t u = m->from;
    uint32_t expect = server_members(s, u, 3, false);
    if (m->n_items != expect)
        return fv_diag_set(d, FV_EPROTO, "secagg server: %u sent %u consistency tags, expected %u",
                           u, m->n_items, expect);
    for (uint32_t i = 0; i < m->n_items; i++)
        if (m->sigs[i].id != s->scratch[i])
            return fv_diag_set(d, FV_EPEER,
                               "secagg server: consistency tag of %u for %u, not its neighbour "
                               "in U3 in order",
                               u, m->sigs[i].id);
    s->ctags[u] = malloc(sizeof(fv_secagg_sig_entry_t) * (m->n_items ? m->n_items : 1));
    if (s->ctags[u] == NULL)
        return FV_ENOMEM;
    memcpy(s->ctags[u], m->sigs, sizeof(fv_secagg_sig_entry_t) * m->n_items);
    s->n_ctags[u] = m->n_items;
    return 0;
}

/* The entry whose leading uint32 id is v in n entries of `size` bytes sorted by that id,
 * or NULL (both entry kinds below start with their id). */
static const void *find_sorted_id(const void *base, uint32_t n, size_t size, uint32_t v)
{
    const uint8_t *a = base;
    uint32_t lo = 0, hi = n, id;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        memcpy(&id, a + (size_t)mid * size, sizeof id);
        if (id < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == n)
        return NULL;
    memcpy(&id, a + (size_t)lo * size, sizeof id);
    return id == v ? a + (size_t)lo * size : NULL;
}

static const fv_secagg_sig_entry_t *find_tag(const fv_secagg_server_t *s, uint32_t u, uint32_t v)
{
    _Static_assert(offsetof(fv_secagg_sig_entry_t, id) == 0, "id leads the entry");
    return find_sorted_id(s->ctags[u], s->n_ctags[u], sizeof(fv_secagg_sig_entry_t), v);
}

int fv_secagg_server_handle(fv_secagg_server_t *s, const uint8_t *msg, size_t len, fv_diag_t *d)
{
    if (s->state < 0 || s->state > 4)
        return fv_diag_set(d, FV_EPHASE, "secagg server: round already %s",
                           s->state < 0 ? "aborted" : "finished");
    fv_secagg_msg_t m;
    int rc = fv_secagg_msg_decode(msg, len, &m, d);
    if (rc < 0)
        return rc;
    uint32_t u = m.from;
    int ph = s->state;
    if (m.type % 2 != 1) {
        rc = fv_diag_set(d, FV_EPROTO, "secagg server: server message type %u from %u", m.type, u);
        goto out;
    }
    if (m.job_id != s->job || m.round != s->round) {
        rc = fv_diag_set(d, FV_EROUND,
                         "secagg server: message from %u for job %llu round %llu, expected "
                         "%llu/%llu",
                         u, (unsigned long long)m.job_id, (unsigned long long)m.round,
                         (unsigned long long)s->job, (unsigned long long)s->round);
        goto out;
    }
    if (m.to != FV_SECAGG_SERVER || u >= s->n) {
        rc = fv_diag_set(d, FV_EPEER, "secagg server: message from unknown client %u", u);
        goto out;
    }
    if (m.phase != ph) {
        rc = fv_diag_set(d, FV_EPHASE, "secagg server: phase %u message from %u in phase %d",
                         m.phase, u, ph);
        goto out;
    }
    if (ph > 0 && !IN(s, u, ph)) {
        rc = fv_diag_set(d, FV_EPEER, "secagg server: %u is not in U%d", u, ph);
        goto out;
    }
    if (IN(s, u, ph + 1)) {
        rc = fv_diag_set(d, FV_EDUP, "secagg server: second phase-%d message from %u", ph, u);
        goto out;
    }
    switch (m.type) {
    case FV_SECAGG_MSG_ADVERTISE:
        if (m.keys[0].id != u) {
            rc = fv_diag_set(d, FV_EPEER, "secagg server: %u advertises keys for %u", u,
                             m.keys[0].id);
            break;
        }
        s->st.n_verify++;
        if (verify_key_entry(&m.keys[0], s->job, s->round, s->id_pks + (size_t)u * 32) < 0) {
            rc = fv_diag_set(d, FV_EAUTH, "secagg server: keys of %u fail their signature", u);
            break;
        }
        s->keys[u] = m.keys[0];
        break;
    case FV_SECAGG_MSG_SHARES:
        rc = server_on_shares(s, &m, d);
        break;
    case FV_SECAGG_MSG_MASKED:
        if (m.n_items != s->dim) {
            rc = fv_diag_set(d, FV_EPROTO, "secagg server: %u sent %u words, dimension is %u", u,
                             m.n_items, s->dim);
            break;
        }
        add_le_words(s->acc, m.words_le, s->dim);
        break;
    case FV_SECAGG_MSG_CONSIST:
        rc = server_on_consist(s, &m, d);
        break;
    case FV_SECAGG_MSG_UNMASK:
        rc = server_on_unmask(s, &m, d);
        break;
    }
    if (rc == 0) {
        s->in[u] |= (uint8_t)(1u << ph);
        s->set_size[ph + 1]++;
    }
out:
    fv_secagg_msg_close(&m);
    return rc;
}

/* Members of U_i among the holders H(u) (with_self) or N(u), sorted, into s->scratch. */
static uint32_t server_members(fv_secagg_server_t *s, uint32_t u, int i, bool with_self)
{
    uint32_t c = 0;
    if (s->g.classic) {
        for (uint32_t v = 0; v < s->n; v++)
            if ((v != u || with_self) && IN(s, v, i))
                s->scratch[c++] = v;
        return c;
    }
    const uint32_t *nb = s->g.nb + (size_t)u * s->k;
    bool placed = !with_self;
    for (uint32_t j = 0; j < s->k; j++) {
        if (!placed && u < nb[j]) {
            if (IN(s, u, i))
                s->scratch[c++] = u;
            placed = true;
        }
        if (IN(s, nb[j], i))
            s->scratch[c++] = nb[j];
    }
    if (!placed && IN(s, u, i))
        s->scratch[c++] = u;
    return c;
}

static uint8_t *server_msg(const fv_secagg_server_t *s, uint8_t type, uint32_t to, uint32_t count,
                           size_t entry, size_t extra, size_t *ret_len)
{
    size_t len = FV__SECAGG_HEADER_BYTES + (size_t)count * entry + extra;
    uint8_t *buf = malloc(len);
    if (buf == NULL)
        return NULL;
    fv__secagg_put_header(buf, type, s->job, s->round, FV_SECAGG_SERVER, to, count);
    *ret_len = len;
    return buf;
}

static const fv_secagg_ct_entry_t *find_ct(const fv_secagg_server_t *s, uint32_t u, uint32_t v)
{
    _Static_assert(offsetof(fv_secagg_ct_entry_t, peer) == 0, "peer leads the entry");
    return find_sorted_id(s->cts[u], s->n_cts[u], sizeof(fv_secagg_ct_entry_t), v);
}

/* Closing phase 4: every secret is reconstructed and checked first (on the caller's
 * thread, in id order, so the first failure named is the same with or without par_for);
 * what is left is a list of masks to take out of the accumulator: -PRG(b_v) for v in U3,
 * and (w < v ? - : +) PRG(s_vw) for each dropped v and w in U3 n N(v). The pairwise keys
 * are agreed in parallel (one task per pair), then the accumulator is cut into ranges of
 * UNMASK_CHUNK words and each task adds every mask's segment at its stream offset
 * (fv_prg_mask_add_at). Addition mod 2^32 commutes, so any split gives the bits of the
 * sequential order; without par_for the whole vector is one range. Secrets (reconstructed
 * s_sk, pairwise keys, mask seeds) live in one fv_secret_alloc block, wiped on free. */
#define UNMASK_CHUNK ((size_t)16384)

typedef struct unmask_job {
    uint8_t seed[FV_PRG_SEED_BYTES]; /* b_v, or the pairwise key once agreed */
    uint8_t sk[FV_KX_SK_BYTES];      /* pair jobs: the reconstructed s_sk_v */
    uint32_t v, w;                   /* w = FV_SECAGG_SERVER: mask seed of v */
    int sign;
    int rc;
} unmask_job_t;

typedef struct unmask_work {
    fv_secagg_server_t *s;
    unmask_job_t *jobs;
    size_t n_jobs, first_pair;
    uint8_t ctx[64];
    size_t ctx_len;
    size_t chunk, n_chunks;
    int *chunk_rc;
} unmask_work_t;

static void unmask_agree(void *arg, size_t i)
{
    unmask_work_t *u = arg;
    unmask_job_t *j = &u->jobs[u->first_pair + i];
    const fv_secagg_key_entry_t *kv = &u->s->keys[j->v], *kw = &u->s->keys[j->w];
    j->rc = fv_kx_agree(j->seed, j->sk, kv->s_pk, kw->s_pk, u->ctx, u->ctx_len);
    fv_crypto_wipe(j->sk, sizeof(j->sk));
}

static void unmask_range(void *arg, size_t c)
{
    unmask_work_t *u = arg;
    size_t lo = c * u->chunk, dim = u->s->dim;
    size_t n = dim - lo < u->chunk ? dim - lo : u->chunk;
    int rc = 0;
    for (size_t i = 0; i < u->n_jobs && rc == 0; i++)
        rc = fv_prg_mask_add_at(u->s->prg, u->jobs[i].seed, u->jobs[i].sign, u->s->acc + lo, n, lo);
    u->chunk_rc[c] = rc;
}

static void run_par(fv_secagg_server_t *s, size_t n, void (*fn)(void *, size_t), void *arg)
{
    if (s->par_for != NULL && n > 1) {
        s->par_for(s->par_ctx, n, fn, arg);
        return;
    }
    for (size_t i = 0; i < n; i++)
        fn(arg, i);
}

static int server_finish(fv_secagg_server_t *s, fv_diag_t *d)
{
    uint8_t secret[FV_SHAMIR_SECRET_BYTES], pk[FV_KX_PK_BYTES];
    unmask_work_t u;
    memset(&u, 0, sizeof(u));
    u.s = s;
    u.ctx_len = make_ctx(u.ctx, ctx_mask_label, s->job, s->round);
    int rc = 0;
    size_t n_seed = 0, n_pair = 0;
    for (uint32_t v = 0; v < s->n; v++) {
        bool need = IN(s, v, 3) || IN(s, v, 2);
        if (need && s->n_shares[v] < s->t)
            return fv_diag_set(d, FV_ETHRESHOLD,
                               "secagg server: %u shares of the %s of client %u, threshold %u",
                               s->n_shares[v], IN(s, v, 3) ? "mask seed" : "key", v, s->t);
        if (IN(s, v, 3))
            n_seed++;
        else if (IN(s, v, 2))
            n_pair += server_members(s, v, 3, false);
    }
    u.n_jobs = n_seed + n_pair;
    u.first_pair = n_seed;
    u.jobs = fv_secret_alloc(sizeof(unmask_job_t) * (u.n_jobs ? u.n_jobs : 1));
    if (u.jobs == NULL)
        return FV_ENOMEM;
    size_t js = 0, jp = n_seed;
    for (uint32_t v = 0; v < s->n && rc == 0; v++) {
        if (!IN(s, v, 2))
            continue;
        rc = fv_shamir_combine_checked(s->shares[v], s->n_shares[v], s->t, secret);
        if (rc == FV_ENOMEM)
            break;
        if (rc < 0) { /* FV_EAUTH; FV_EINVAL (a repeated x) cannot pass server_on_unmask */
            fv_diag_set(d, FV_EAUTH,
                        "secagg server: the %u shares of the %s of client %u do not lie on one "
                        "polynomial (a holder sent a wrong share): round aborted",
                        s->n_shares[v], IN(s, v, 3) ? "mask seed" : "key", v);
            rc = FV_EAUTH;
            break;
        }
        if (IN(s, v, 3)) {
            unmask_job_t *j = &u.jobs[js++];
            memcpy(j->seed, secret, sizeof(j->seed));
            j->v = v;
            j->w = FV_SECAGG_SERVER;
            j->sign = -1;
            continue;
        }
        /* v dropped after sharing: remove its pairwise masks with the survivors. */
        crypto_scalarmult_base(pk, secret);
        s->st.n_keygen++;
        if (sodium_memcmp(pk, s->keys[v].s_pk, sizeof(pk)) != 0) {
            rc = fv_diag_set(d, FV_EAUTH,
                             "secagg server: reconstructed key of %u does not match its s_pk", v);
            break;
        }
        uint32_t cnt = server_members(s, v, 3, false);
        for (uint32_t i = 0; i < cnt; i++) {
            unmask_job_t *j = &u.jobs[jp++];
            memcpy(j->sk, secret, sizeof(j->sk));
            j->v = v;
            j->w = s->scratch[i];
            /* w added (w < v ? + : -) PRG(s_wv): take it back. */
            j->sign = j->w < v ? -1 : +1;
        }
    }
    fv_crypto_wipe(secret, sizeof(secret));
    if (rc < 0)
        goto out;
    run_par(s, n_pair, unmask_agree, &u);
    s->st.n_kx += n_pair;
    for (size_t i = n_seed; i < u.n_jobs; i++)
        if (u.jobs[i].rc < 0) {
            rc = fv_diag_set(d, u.jobs[i].rc,
                             "secagg server: mask key agreement of %u with %u failed", u.jobs[i].v,
                             u.jobs[i].w);
            goto out;
        }
    u.chunk = s->par_for != NULL ? UNMASK_CHUNK : s->dim;
    u.n_chunks = (s->dim + u.chunk - 1) / u.chunk;
    u.chunk_rc = calloc(u.n_chunks, sizeof(int));
    if (u.chunk_rc == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    run_par(s, u.n_chunks, unmask_range, &u);
    s->st.prg_words += (uint64_t)u.n_jobs * s->dim;
    for (size_t c = 0; c < u.n_chunks && rc == 0; c++)
        rc = u.chunk_rc[c];
out:
    free(u.chunk_rc);
    fv_secret_free(u.jobs);
    return rc;
}

void fv_secagg_server_set_par_for(fv_secagg_server_t *s,
                                  void (*par_for)(void *par_ctx, size_t n,
                                                  void (*fn)(void *arg, size_t i), void *arg),
                                  void *par_ctx)
{
    s->par_for = par_for;
    s->par_ctx = par_ctx;
}

int fv_secagg_server_close_phase(fv_secagg_server_t *s, fv_secagg_outbox_t *out, fv_diag_t *d)
{
    if (s->state < 0 || s->state > 4)
        return fv_diag_set(d, FV_EPHASE, "secagg server: no phase to close");
    int ph = s->state, rc = 0;
    if (s->set_size[ph + 1] < s->t) {
        s->state = ABORTED;
        server_free_shares(s);
        return fv_diag_set(d, FV_ETHRESHOLD,
                           "secagg server: phase %d closed with %u clients, threshold %u: round "
                           "aborted",
                           ph, s->set_size[ph + 1], s->t);
    }
    size_t len;
    uint8_t *buf;
    for (uint32_t u = 0; u < s->n && ph < 4; u++) {
        if (!IN(s, u, ph + 1))
            continue;
        uint32_t cnt;
        uint8_t *p;
        switch (ph) {
        case 0: /* KEYLIST: U1 n H(u) */
            cnt = server_members(s, u, 1, true);
            if ((buf = server_msg(s, FV_SECAGG_MSG_KEYLIST, u, cnt, FV__SECAGG_KEY_ENTRY_BYTES, 0,
                                  &len)) == NULL)
                return FV_ENOMEM;
            p = buf + FV__SECAGG_HEADER_BYTES;
            for (uint32_t i = 0; i < cnt; i++, p += FV__SECAGG_KEY_ENTRY_BYTES) {
                const fv_secagg_key_entry_t *e = &s->keys[s->scratch[i]];
                fv__put_u32(p, e->id);
                memcpy(p + 4, e->c_pk, 32);
                memcpy(p + 36, e->s_pk, 32);
                memcpy(p + 68, e->sig, 64);
            }
            break;
        case 1: /* SHARES_FWD: what members of U2 n N(u) encrypted to u */
            cnt = server_members(s, u, 2, false);
            if ((buf = server_msg(s, FV_SECAGG_MSG_SHARES_FWD, u, cnt, FV__SECAGG_CT_ENTRY_BYTES, 0,
                                  &len)) == NULL)
                return FV_ENOMEM;
            p = buf + FV__SECAGG_HEADER_BYTES;
            for (uint32_t i = 0; i < cnt; i++, p += FV__SECAGG_CT_ENTRY_BYTES) {
                const fv_secagg_ct_entry_t *e = find_ct(s, s->scratch[i], u);
                if (e == NULL) { /* cannot happen: SHARES was checked complete */
                    free(buf);
                    return FV_EINVAL;
                }
                fv__put_u32(p, s->scratch[i]);
                memcpy(p + 4, e->ct, FV_SECAGG_CT_BYTES);
            }
            break;
        case 2: /* U3LIST: all of U3 */
            if (s->u3_stmt == NULL) {
                uint32_t c3 = 0;
                for (uint32_t v = 0; v < s->n; v++)
                    if (IN(s, v, 3))
                        s->scratch[c3++] = v;
                s->u3_stmt = u3_statement(s->job, s->round, s->scratch, c3, &s->u3_stmt_len);
                if (s->u3_stmt == NULL)
                    return FV_ENOMEM;
            }
            cnt = s->set_size[3];
            if ((buf = server_msg(s, FV_SECAGG_MSG_U3LIST, u, cnt, 4, 0, &len)) == NULL)
                return FV_ENOMEM;
            /* the ids are the tail of the statement, already little-endian */
            memcpy(buf + FV__SECAGG_HEADER_BYTES, s->u3_stmt + s->u3_stmt_len - 4 * (size_t)cnt,
                   4 * (size_t)cnt);
            break;
        default: { /* 3: SIGLIST: the tags of U4 n N(u) for u, then dropped neighbours */
            cnt = server_members(s, u, 4, false);
            uint32_t n_drop = 0;
            uint32_t *drop = malloc(sizeof(uint32_t) * (s->k ? s->k : 1));
            if (drop == NULL)
                return FV_ENOMEM;
            const uint32_t *nb = s->g.nb ? s->g.nb + (size_t)u * s->k : NULL;
            for (uint32_t j = 0; j < s->k; j++) {
                uint32_t v = nb ? nb[j] : (j < u ? j : j + 1);
                if (IN(s, v, 2) && !IN(s, v, 3))
                    drop[n_drop++] = v;
            }
            buf = server_msg(s, FV_SECAGG_MSG_SIGLIST, u, cnt, FV__SECAGG_SIG_ENTRY_BYTES,
                             4 + 4 * (size_t)n_drop, &len);
            if (buf == NULL) {
                free(drop);
                return FV_ENOMEM;
            }
            p = buf + FV__SECAGG_HEADER_BYTES;
            for (uint32_t i = 0; i < cnt; i++, p += FV__SECAGG_SIG_ENTRY_BYTES) {
                const fv_secagg_sig_entry_t *e = find_tag(s, s->scratch[i], u);
                if (e == NULL) { /* cannot happen: CONSIST was checked complete over U3 */
                    free(drop);
                    free(buf);
                    return FV_EINVAL;
                }
                fv__put_u32(p, s->scratch[i]);
                memcpy(p + 4, e->sig, 64);
            }
            fv__put_u32(p, n_drop);
            for (uint32_t i = 0; i < n_drop; i++)
                fv__put_u32(p + 4 + 4 * i, drop[i]);
            free(drop);
            break;
        }
        }
        if ((rc = fv__secagg_outbox_push(out, u, buf, len)) < 0)
            return rc;
    }
    if (ph == 1)
        server_free_cts(s); /* every ciphertext has been forwarded */
    if (ph == 3)
        server_free_ctags(s); /* every tag has been forwarded */
    if (ph == 4) {
        rc = server_finish(s, d);
        server_free_shares(s);
        if (rc < 0) {
            s->state = ABORTED;
            return rc;
        }
        s->state = CLIENT_DONE;
        return 0;
    }
    s->state = ph + 1;
    return 0;
}
