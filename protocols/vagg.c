/* vagg.c - validated secure aggregation: client and server state machines (fv_vagg.h).
 *
 * Notes on this implementation:
 * - Pure like secagg.c: no I/O, no clock, no threads, no globals; randomness from the
 *   injected fv_rand_t (the client's round keys and its proof).
 * - Client secrets: the identity key copy, c_sk and the pairwise AEAD keys live in one
 *   fv_secret_alloc buffer; the input copy, the own payload and the input shares held for
 *   other provers are heap buffers wiped on free (the shares at d = 250K are 2 MB each).
 *   The input is wiped as soon as the proof is built; the held shares once the sum
 *   answer is out.
 * - Server memory: every prover's ciphertexts until FWD is built (|U1|^2 payloads: 6.5 MB
 *   for the Lending Club teacher at six banks; 180 MB at d = 250K and ten), the vshares
 *   until the decision, the sum shares until the sum.
 * - Holders in phase 3 are the members of U3 that hold a verified share of every accepted
 *   prover (no complaint about one, not its decision's outlier): a holder that cannot sum
 *   V is not asked, so an honest holder never has to refuse.
 */
#include "fv_vagg.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fv_evil.h"
#include "secagg-int.h"

int fv__vagg_verify_adv(const fv_vagg_params_t *p, uint32_t u, const uint8_t c_pk[FV_KX_PK_BYTES],
                        const uint8_t sig[FV_SIGN_BYTES]);
int fv__vagg_verify_proof(const fv_vagg_params_t *p, uint32_t u, const uint8_t *header, size_t len,
                          const uint8_t sig[FV_SIGN_BYTES]);

#define DONE 4
#define ABORTED (-1)

static void wipe_free(void *p, size_t len)
{
    if (p) {
        fv_crypto_wipe(p, len);
        free(p);
    }
}

/* Copies of the params' borrowed pieces. */
static int params_copy(const fv_vagg_params_t *in, fv_vagg_params_t *out, char **fed, uint8_t **pks,
                       fv_diag_t *d)
{
    if (!in->spec || !in->identity_pks || in->n_clients < 1 ||
        in->n_clients > FV_VAGG_MAX_CLIENTS || in->threshold < 1 || in->threshold > in->n_clients ||
        2 * in->threshold <= in->n_clients)
        return fv_diag_set(d, FV_EINVAL, "vagg: n=%u t=%u (need 2t > n, t <= n <= %u) and a spec",
                           in->n_clients, in->threshold, FV_VAGG_MAX_CLIENTS);
    *out = *in;
    *fed = strdup(in->federation ? in->federation : "");
    *pks = malloc((size_t)in->n_clients * FV_SIGN_PK_BYTES);
    if (!*fed || !*pks) {
        free(*fed);
        free(*pks);
        return FV_ENOMEM;
    }
    memcpy(*pks, in->identity_pks, (size_t)in->n_clients * FV_SIGN_PK_BYTES);
    out->federation = *fed;
    out->identity_pks = *pks;
    return 0;
}

static void sum_id_of(const fv_vagg_params_t *p, const uint32_t *ids, uint32_t c,
                      uint8_t out[FV_HASH_BYTES])
{
    static const char label[] = "fv-vagg sum v1";
    crypto_hash_sha256_state st;
    uint8_t b[8];
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)label, sizeof(label));
    fv__put_u64(b, p->job_id);
    crypto_hash_sha256_update(&st, b, 8);
    fv__put_u64(b, p->round);
    crypto_hash_sha256_update(&st, b, 8);
    fv__put_u32(b, c);
    crypto_hash_sha256_update(&st, b, 4);
    for (uint32_t i = 0; i < c; i++) {
        fv__put_u32(b, ids[i]);
        crypto_hash_sha256_update(&st, b, 4);
    }
    crypto_hash_sha256_final(&st, out);
}

static int push_msg(fv_secagg_outbox_t *out, uint32_t to, const fv_vagg_msg_t *m,
                    const fv_valid_layout_t *l)
{
    uint8_t *b;
    size_t len;
    int rc = fv_vagg_msg_encode(m, l, &b, &len);
    if (rc)
        return rc;
    return fv__secagg_outbox_push(out, to, b, len);
}

/* Header fields every received message must carry. */
static int check_route(const fv_vagg_params_t *p, const fv_vagg_msg_t *m, uint32_t from,
                       uint32_t to, fv_diag_t *d)
{
    if (m->job_id != p->job_id || m->round != p->round)
        return fv_diag_set(d, FV_EROUND, "vagg message for job %llu round %llu",
                           (unsigned long long)m->job_id, (unsigned long long)m->round);
    if (m->to != to || (from != UINT32_MAX && m->from != from))
        return fv_diag_set(d, FV_EPEER, "vagg message from %u to %u", m->from, m->to);
    return 0;
}

/* ==== client =============================================================================== */

struct fv_vagg_client {
    fv_vagg_params_t p;
    char *fed;
    uint8_t *pks;
    fv_secagg_policy_t pol;
    uint32_t id;
    fv_rand_t *rng;
    int phase;    /* 0 before start, 1 waiting for KEYLIST, 2 FWD, 3 SUMREQ, 4 done, -1 */
    uint8_t *sec; /* secret: identity sk [64], c_sk [32], then m pairwise keys [32 each] */
    size_t sec_len;
    uint8_t c_pk[FV_KX_PK_BYTES];
    int64_t *w; /* the input copy until the proof is built */
    bool have_keys;
    /* U1 */
    uint32_t m, t, my_x;
    uint32_t *u1;
    uint8_t *u1_cpk;
    int32_t *rank; /* n: rank in U1 or -1 */
    fv_valid_layout_t lay;
    uint8_t *own_header;
    uint8_t *own_payload;
    fv_valid_held_t **held;  /* m, by rank */
    uint32_t fwd_k, fwd_got; /* FWDs announced, received */
    uint8_t *fwd_seen;       /* m, by rank */
};

static uint8_t *c_sk_of(fv_vagg_client_t *c)
{
    return c->sec + FV_SIGN_SK_BYTES;
}

static uint8_t *pair_key(fv_vagg_client_t *c, uint32_t r)
{
    return c->sec + FV_SIGN_SK_BYTES + FV_KX_SK_BYTES + (size_t)r * FV_KX_KEY_BYTES;
}

static void client_wipe_round(fv_vagg_client_t *c)
{
    wipe_free(c->w, c->w ? (size_t)c->p.spec->dim * sizeof(*c->w) : 0);
    c->w = NULL;
    wipe_free(c->own_payload, c->lay.payload_bytes);
    c->own_payload = NULL;
    if (c->held)
        for (uint32_t r = 0; r < c->m; r++) {
            fv_valid_held_free(c->held[r]);
            c->held[r] = NULL;
        }
}

static int client_abort(fv_vagg_client_t *c, int rc)
{
    client_wipe_round(c);
    if (c->sec)
        fv_crypto_wipe(c->sec, c->sec_len);
    c->phase = ABORTED;
    return rc;
}

void fv_vagg_client_free(fv_vagg_client_t *c)
{
    if (!c)
        return;
    client_wipe_round(c);
    fv_secret_free(c->sec);
    free(c->fed);
    free(c->pks);
    free(c->u1);
    free(c->u1_cpk);
    free(c->rank);
    free(c->own_header);
    free(c->held);
    free(c->fwd_seen);
    free(c);
}

int fv_vagg_client_new(const fv_vagg_params_t *p, const fv_secagg_policy_t *policy, uint32_t id,
                       const uint8_t identity_sk[FV_SIGN_SK_BYTES], fv_rand_t *rng,
                       fv_vagg_client_t **ret, fv_diag_t *d)
{
    fv_vagg_client_t *c = calloc(1, sizeof(*c));
    if (!c)
        return FV_ENOMEM;
    int rc = params_copy(p, &c->p, &c->fed, &c->pks, d);
    if (rc) {
        free(c);
        return rc;
    }
    if (id >= p->n_clients) {
        fv_vagg_client_free(c);
        return fv_diag_set(d, FV_EINVAL, "vagg: client id %u outside the cohort of %u", id,
                           p->n_clients);
    }
    if (policy)
        c->pol = *policy;
    if (c->pol.min_cohort > p->n_clients || c->pol.min_threshold > p->threshold) {
        fv_vagg_client_free(c);
        return fv_diag_set(d, FV_EPOLICY,
                           "vagg: cohort %u / threshold %u below the policy's %u / %u",
                           p->n_clients, p->threshold, c->pol.min_cohort, c->pol.min_threshold);
    }
    c->id = id;
    c->rng = rng;
    c->sec_len = FV_SIGN_SK_BYTES + FV_KX_SK_BYTES + (size_t)p->n_clients * FV_KX_KEY_BYTES;
    c->rank = malloc((size_t)p->n_clients * sizeof(*c->rank));
    if (!(c->sec = fv_secret_alloc(c->sec_len)) || !c->rank) {
        fv_vagg_client_free(c);
        return FV_ENOMEM;
    }
    memcpy(c->sec, identity_sk, FV_SIGN_SK_BYTES);
    *ret = c;
    return 0;
}

int fv_vagg_client_phase(const fv_vagg_client_t *c)
{
    return c->phase == 0 ? 0 : c->phase == ABORTED ? ABORTED : c->phase == DONE ? DONE : c->phase;
}

bool fv_vagg_client_needs_input(const fv_vagg_client_t *c)
{
    return c->phase == 1 && c->w == NULL;
}

int fv_vagg_client_start(fv_vagg_client_t *c, fv_secagg_outbox_t *out, fv_diag_t *d)
{
    if (c->phase != 0)
        return fv_diag_set(d, FV_EPHASE, "vagg client %u: already started", c->id);
    int rc = fv_kx_keypair(c->rng, c->c_pk, c_sk_of(c));
    if (rc)
        return client_abort(c, rc);
    fv_vagg_msg_t m = {.type = FV_VAGG_MSG_ADVERTISE,
                       .job_id = c->p.job_id,
                       .round = c->p.round,
                       .from = c->id,
                       .to = FV_SECAGG_SERVER};
    m.key.id = c->id;
    memcpy(m.key.c_pk, c->c_pk, FV_KX_PK_BYTES);
    if ((rc = fv_vagg_sign_adv(&c->p, c->id, c->c_pk, c->sec, m.key.sig)) != 0 ||
        (rc = push_msg(out, FV_SECAGG_SERVER, &m, NULL)) != 0)
        return client_abort(c, rc);
    c->phase = 1;
    return 0;
}

#ifdef FV_EVIL_AGENT
typedef struct evil_ud {
    fv_vagg_client_t *c;
    const uint8_t *ctx;
} evil_ud_t;
static int evil_prove_again(void *ud, const int64_t *w, fv_valid_proof_t **ret)
{
    evil_ud_t *e = ud;
    return fv_valid_prove_unchecked(e->c->p.spec, e->c->m, e->c->t, e->ctx, w, e->c->rng, ret,
                                    NULL);
}
#endif

/* KEYLIST received and the input set: prove, seal, send PROOF and the PROOF_CTs. */
static int client_prove(fv_vagg_client_t *c, fv_secagg_outbox_t *out, fv_diag_t *d)
{
    uint8_t ctx[FV_HASH_BYTES];
    fv_vagg_ctx(&c->p, c->id, c->u1, c->u1_cpk, c->m, ctx);
    fv_valid_proof_t *pf = NULL;
    int rc;
#ifdef FV_EVIL_AGENT
    if (fv_evil_input(c->p.round, c->p.spec, c->w))
        rc = fv_valid_prove_unchecked(c->p.spec, c->m, c->t, ctx, c->w, c->rng, &pf, d);
    else
#endif
        rc = fv_valid_prove(c->p.spec, c->m, c->t, ctx, c->w, c->rng, &pf, d);
    wipe_free(c->w, (size_t)c->p.spec->dim * sizeof(*c->w));
    c->w = NULL;
    if (rc)
        return client_abort(c, rc);
#ifdef FV_EVIL_AGENT
    evil_ud_t eu = {c, ctx};
    fv_evil_proof(c->p.round, c->p.spec, pf, evil_prove_again, &eu);
#endif
    size_t ctl = pf->payload_len + FV_AEAD_TAG_BYTES;
    uint8_t sig[FV_SIGN_BYTES];
    uint8_t *ct = malloc(ctl);
    uint32_t n_seeded = pf->n_seeded;
#ifdef FV_EVIL_AGENT
    n_seeded = 0; /* the payloads as the hooks left them, not their seeds */
#endif
    c->own_header = malloc(pf->header_len);
    c->own_payload = malloc(pf->payload_len);
    rc = FV_ENOMEM;
    if (!ct || !c->own_header || !c->own_payload)
        goto out;
    memcpy(c->own_header, pf->header, pf->header_len);
    memcpy(c->own_payload, pf->payloads[c->my_x - 1], pf->payload_len);
    if ((rc = fv_vagg_sign_proof(&c->p, c->id, pf->header, pf->header_len, c->sec, sig)) != 0)
        goto out;
    fv_vagg_msg_t m = {.type = FV_VAGG_MSG_PROOF,
                       .job_id = c->p.job_id,
                       .round = c->p.round,
                       .from = c->id,
                       .to = FV_SECAGG_SERVER,
                       .header = pf->header,
                       .sig = sig};
    if ((rc = push_msg(out, FV_SECAGG_SERVER, &m, &c->lay)) != 0)
        goto out;
    for (uint32_t r = 0; r < c->m; r++) {
        if (r + 1 == c->my_x)
            continue;
        bool seeded = r + 1 <= n_seeded;
        const uint8_t *pt = seeded ? pf->seeds + (size_t)r * FV_VALID_SEED_BYTES : pf->payloads[r];
        size_t ptl = seeded ? FV_VALID_SEED_BYTES : pf->payload_len;
        if ((rc = fv_vagg_seal(&c->p, c->id, c->u1[r], pair_key(c, r), pt, ptl, ct)) != 0)
            goto out;
        fv_vagg_msg_t cm = {.type = FV_VAGG_MSG_PROOF_CT,
                            .job_id = c->p.job_id,
                            .round = c->p.round,
                            .from = c->id,
                            .to = FV_SECAGG_SERVER};
        cm.item = (fv_vagg_item_t){.peer = c->u1[r], .data = ct, .len = ptl + FV_AEAD_TAG_BYTES};
        if ((rc = push_msg(out, FV_SECAGG_SERVER, &cm, &c->lay)) != 0)
            goto out;
    }
out:
    wipe_free(ct, ctl);
    fv_valid_proof_free(pf);
    if (rc)
        return client_abort(c, rc);
    c->phase = 2;
    return 0;
}

int fv_vagg_client_set_input(fv_vagg_client_t *c, const int64_t *w, fv_secagg_outbox_t *out,
                             fv_diag_t *d)
{
    if (c->phase < 0 || c->phase > 1 || c->w)
        return fv_diag_set(d, FV_EPHASE, "vagg client %u: input set twice or too late", c->id);
    size_t bytes = (size_t)c->p.spec->dim * sizeof(*w);
    if (!(c->w = malloc(bytes)))
        return FV_ENOMEM;
    memcpy(c->w, w, bytes);
    if (c->phase == 1 && c->have_keys)
        return client_prove(c, out, d);
    return 0;
}

static int client_on_keylist(fv_vagg_client_t *c, const fv_vagg_msg_t *m, fv_secagg_outbox_t *out,
                             fv_diag_t *d)
{
    uint32_t n = c->p.n_clients, cnt = m->count;
    for (uint32_t i = 0; i < n; i++)
        c->rank[i] = -1;
    c->u1 = malloc((size_t)cnt * sizeof(*c->u1));
    c->u1_cpk = malloc((size_t)cnt * FV_KX_PK_BYTES);
    c->held = calloc(cnt, sizeof(*c->held));
    c->fwd_seen = calloc(cnt, 1);
    if (!c->u1 || !c->u1_cpk || !c->held || !c->fwd_seen)
        return client_abort(c, FV_ENOMEM);
    c->m = cnt;
    for (uint32_t i = 0; i < cnt; i++) {
        const fv_vagg_key_t *k = &m->keys[i];
        if (k->id >= n || (i > 0 && k->id <= c->u1[i - 1]))
            return client_abort(c, fv_diag_set(d, FV_EPEER,
                                               "vagg key list: entry %u (client %u) unknown "
                                               "or out of order",
                                               i, k->id));
        if (fv__vagg_verify_adv(&c->p, k->id, k->c_pk, k->sig) != 0)
            return client_abort(c, fv_diag_set(d, FV_EAUTH,
                                               "vagg key list: client %u's key is not signed "
                                               "by its identity",
                                               k->id));
        c->u1[i] = k->id;
        c->rank[k->id] = (int32_t)i;
        memcpy(c->u1_cpk + (size_t)i * FV_KX_PK_BYTES, k->c_pk, FV_KX_PK_BYTES);
    }
    if (c->rank[c->id] < 0 || sodium_memcmp(c->u1_cpk + (size_t)c->rank[c->id] * FV_KX_PK_BYTES,
                                            c->c_pk, FV_KX_PK_BYTES) != 0)
        return client_abort(c, fv_diag_set(d, FV_EPEER,
                                           "vagg key list: our own entry is missing or not "
                                           "our key"));
    c->my_x = (uint32_t)c->rank[c->id] + 1;
    c->t = fv_vagg_threshold_for(&c->p, cnt);
    if (cnt < c->pol.min_cohort || c->t < c->pol.min_threshold)
        return client_abort(c, fv_diag_set(d, FV_EPOLICY,
                                           "vagg: %u holders with threshold %u, below the "
                                           "policy's %u / %u",
                                           cnt, c->t, c->pol.min_cohort, c->pol.min_threshold));
    int rc = fv_valid_layout_init(c->p.spec, cnt, c->t, &c->lay, d);
    if (rc)
        return client_abort(c, rc);
    static const char label[] = "fv-vagg enc v1";
    uint8_t kctx[sizeof(label) - 1 + 16];
    memcpy(kctx, label, sizeof(label) - 1);
    fv__put_u64(kctx + sizeof(label) - 1, c->p.job_id);
    fv__put_u64(kctx + sizeof(label) - 1 + 8, c->p.round);
    for (uint32_t r = 0; r < cnt; r++) {
        if (r + 1 == c->my_x)
            continue;
        if ((rc = fv_kx_agree(pair_key(c, r), c_sk_of(c), c->c_pk,
                              c->u1_cpk + (size_t)r * FV_KX_PK_BYTES, kctx, sizeof(kctx))) != 0)
            return client_abort(c, fv_diag_set(d, FV_EAUTH,
                                               "vagg: key agreement with client %u "
                                               "failed",
                                               c->u1[r]));
    }
    c->have_keys = true;
    if (c->w)
        return client_prove(c, out, d);
    return 0;
}

/* One FWD entry (or our own payload): its status and vshare. */
static int client_check_one(fv_vagg_client_t *c, uint32_t u, const uint8_t *header,
                            const uint8_t *payload, uint8_t **vs, size_t *vl, fv_diag_t *d)
{
    uint8_t ctx[FV_HASH_BYTES];
    fv_vagg_ctx(&c->p, u, c->u1, c->u1_cpk, c->m, ctx);
    fv_valid_held_t *h = NULL;
    int rc = fv_valid_holder_check(c->p.spec, c->m, c->t, c->my_x, ctx, header, c->lay.header_bytes,
                                   payload, c->lay.payload_bytes, &h, vs, vl, d);
    if (rc == 0)
        c->held[c->rank[u]] = h;
    return rc;
}

static int push_vshare(fv_vagg_client_t *c, uint32_t u, int status, const uint8_t *vs, size_t vl,
                       fv_secagg_outbox_t *out)
{
    fv_vagg_msg_t r = {.type = FV_VAGG_MSG_VSHARE,
                       .job_id = c->p.job_id,
                       .round = c->p.round,
                       .from = c->id,
                       .to = FV_SECAGG_SERVER};
    r.item = (fv_vagg_item_t){.peer = u, .status = status, .data = vs, .len = vl};
    return push_msg(out, FV_SECAGG_SERVER, &r, &c->lay);
}

static int client_on_fwd(fv_vagg_client_t *c, const fv_vagg_msg_t *m, fv_secagg_outbox_t *out,
                         fv_diag_t *d)
{
    const fv_vagg_item_t *it = &m->item;
    uint32_t u = it->peer;
    int rc;
    if (m->k > c->m - 1 || (c->fwd_k && m->k != c->fwd_k))
        return client_abort(c, fv_diag_set(d, FV_EPROTO,
                                           "vagg forward: %u provers announced (%u before, %u "
                                           "holders)",
                                           m->k, c->fwd_k, c->m));
    if (u >= c->p.n_clients || c->rank[u] < 0 || u == c->id || c->fwd_seen[c->rank[u]])
        return client_abort(
            c, fv_diag_set(d, FV_EPEER, "vagg forward: prover %u unknown, ours or repeated", u));
    uint8_t *vs = NULL;
    size_t vl = 0;
    if (c->fwd_k == 0) {
        /* first FWD: our own proof, checked like the others (an honest agent never sends
         * a check of its own proof that fails: that would be a bug, so it aborts) */
        c->fwd_k = m->k;
        if ((rc = client_check_one(c, c->id, c->own_header, c->own_payload, &vs, &vl, d)) != 0)
            return client_abort(c, rc);
        rc = push_vshare(c, c->id, 0, vs, vl, out);
        free(vs);
        vs = NULL;
        wipe_free(c->own_payload, c->lay.payload_bytes);
        c->own_payload = NULL;
        if (rc)
            return client_abort(c, rc);
    }
    c->fwd_seen[c->rank[u]] = 1;
    c->fwd_got++;
    uint8_t *pt = malloc(c->lay.payload_bytes);
    if (!pt)
        return client_abort(c, FV_ENOMEM);
    fv_diag_t dd;
    int st;
    if (fv__vagg_verify_proof(&c->p, u, it->header, c->lay.header_bytes, it->sig) != 0)
        st = FV_EAUTH;
    else if (fv_vagg_open(&c->p, u, c->id, pair_key(c, (uint32_t)c->rank[u]), it->data, it->len,
                          pt) != 0)
        st = FV_EAUTH;
    else {
        if (it->len == FV_VALID_SEED_BYTES + FV_AEAD_TAG_BYTES) {
            /* a seed: our share vector is its expansion (fv_valid.h) */
            uint8_t seed[FV_VALID_SEED_BYTES];
            memcpy(seed, pt, sizeof(seed));
            fv_valid_expand_seed(&c->lay, seed, pt);
            fv_crypto_wipe(seed, sizeof(seed));
        }
        st = client_check_one(c, u, it->header, pt, &vs, &vl, &dd);
    }
    wipe_free(pt, c->lay.payload_bytes);
    if (st == FV_ENOMEM)
        return client_abort(c, st);
    rc = push_vshare(c, u, st, st == 0 ? vs : NULL, st == 0 ? vl : 0, out);
    free(vs);
    if (rc)
        return client_abort(c, rc);
    if (c->fwd_got == c->fwd_k)
        c->phase = 3;
    return 0;
}

static int client_on_sumreq(fv_vagg_client_t *c, const fv_vagg_msg_t *m, fv_secagg_outbox_t *out,
                            fv_diag_t *d)
{
    uint32_t min = c->pol.min_cohort > 1 ? c->pol.min_cohort : 1;
    if (m->count < min)
        return client_abort(c, fv_diag_set(d, FV_EPOLICY,
                                           "vagg: asked to sum %u inputs, the policy's minimum "
                                           "is %u",
                                           m->count, min));
    uint32_t *ids = malloc((size_t)m->count * sizeof(*ids));
    const fv_valid_held_t **hs = malloc((size_t)m->count * sizeof(*hs));
    int rc = FV_ENOMEM;
    if (!ids || !hs)
        goto out;
    for (uint32_t i = 0; i < m->count; i++) {
        uint32_t u = m->items[i].peer;
        if (u >= c->p.n_clients || (i > 0 && u <= ids[i - 1]) || c->rank[u] < 0 ||
            !c->held[c->rank[u]]) {
            rc = fv_diag_set(d, FV_EPEER,
                             "vagg: asked to sum client %u, whose proof we did not check", u);
            goto out;
        }
        ids[i] = u;
        hs[i] = c->held[c->rank[u]];
    }
    uint8_t sid[FV_HASH_BYTES];
    sum_id_of(&c->p, ids, m->count, sid);
    if (sodium_memcmp(sid, m->sum_id, FV_HASH_BYTES) != 0) {
        rc = fv_diag_set(d, FV_EPROTO, "vagg: the sum request's id does not name its set");
        goto out;
    }
    uint8_t *agg = NULL;
    size_t al = 0;
    if ((rc = fv_valid_aggshare(&c->lay, sid, hs, m->count, &agg, &al, d)) != 0)
        goto out;
    fv_vagg_msg_t r = {.type = FV_VAGG_MSG_AGGSHARE,
                       .job_id = c->p.job_id,
                       .round = c->p.round,
                       .from = c->id,
                       .to = FV_SECAGG_SERVER,
                       .data = agg,
                       .len = al};
    rc = push_msg(out, FV_SECAGG_SERVER, &r, &c->lay);
    free(agg);
out:
    free(ids);
    free(hs);
    if (rc)
        return client_abort(c, rc);
    client_wipe_round(c); /* one answer: nothing left to reveal */
    c->phase = DONE;
    return 0;
}

int fv_vagg_client_handle(fv_vagg_client_t *c, const uint8_t *msg, size_t len,
                          fv_secagg_outbox_t *out, fv_diag_t *d)
{
    if (c->phase <= 0 || c->phase >= DONE)
        return fv_diag_set(d, FV_EPHASE, "vagg client %u: not expecting messages", c->id);
    fv_vagg_msg_t m;
    int rc = fv_vagg_msg_decode(msg, len, c->have_keys ? &c->lay : NULL, c->p.n_clients, &m, d);
    if (rc)
        return rc;
    if ((rc = check_route(&c->p, &m, FV_SECAGG_SERVER, c->id, d)) != 0)
        goto out;
    int ph = fv_vagg_msg_phase(m.type);
    bool to_client =
        m.type == FV_VAGG_MSG_KEYLIST || m.type == FV_VAGG_MSG_FWD || m.type == FV_VAGG_MSG_SUMREQ;
    if (!to_client || ph != c->phase || (ph == 1 && c->have_keys)) {
        rc = fv_diag_set(d, FV_EPHASE, "vagg client %u: message type %u in phase %d", c->id, m.type,
                         c->phase);
        goto out;
    }
    switch (m.type) {
    case FV_VAGG_MSG_KEYLIST:
        rc = client_on_keylist(c, &m, out, d);
        break;
    case FV_VAGG_MSG_FWD:
        rc = client_on_fwd(c, &m, out, d);
        break;
    default:
        rc = client_on_sumreq(c, &m, out, d);
        break;
    }
out:
    fv_vagg_msg_close(&m);
    return rc;
}

/* ==== server =============================================================================== */

struct fv_vagg_server {
    fv_vagg_params_t p;
    char *fed;
    uint8_t *pks;
    int phase;
    uint32_t n;
    /* phase 0 */
    bool *adv;
    uint8_t *cpk, *asig; /* n x 32, n x 64 */
    /* U1 */
    uint32_t m, t;
    uint32_t *u1;
    int32_t *rank;
    fv_valid_layout_t lay;
    /* phase 1: per prover rank */
    bool *proved;
    uint8_t **hdr, **psig;
    uint8_t **cts;    /* m x m: prover rank x holder rank, malloc'd (a seed's or a payload's) */
    size_t *ct_len;   /* m x m */
    uint32_t *n_ct;   /* PROOF_CTs received per prover */
    uint8_t *ct_seen; /* m x m: prover rank x holder rank */
    uint32_t *n_vsh;  /* VSHAREs received per holder */
    /* phase 2: vshares[prover rank * m + holder rank] */
    bool *checked;
    uint8_t **vsh;
    int32_t *vst; /* status per (prover, holder); 1 = nothing received */
    fv_valid_verdict_t *verdict;
    uint32_t *complaints;
    bool *decided;
    /* phase 3 */
    uint32_t nv;
    uint32_t *V;
    bool *asked;
    uint8_t sum_id[FV_HASH_BYTES];
    uint8_t **agg;
    int64_t *sum;
    uint32_t outlier;
    uint32_t size[6];
};

void fv_vagg_server_free(fv_vagg_server_t *s)
{
    if (!s)
        return;
    for (uint32_t r = 0; s->hdr && r < s->m; r++) {
        free(s->hdr[r]);
        free(s->psig[r]);
        free(s->agg ? s->agg[r] : NULL);
    }
    if (s->vsh)
        for (size_t i = 0; i < (size_t)s->m * s->m; i++)
            free(s->vsh[i]);
    free(s->fed);
    free(s->pks);
    free(s->adv);
    free(s->cpk);
    free(s->asig);
    free(s->u1);
    free(s->rank);
    free(s->proved);
    free(s->n_ct);
    free(s->ct_seen);
    free(s->n_vsh);
    free(s->hdr);
    free(s->psig);
    if (s->cts)
        for (size_t i = 0; i < (size_t)s->m * s->m; i++)
            free(s->cts[i]);
    free(s->cts);
    free(s->ct_len);
    free(s->checked);
    free(s->vsh);
    free(s->vst);
    free(s->verdict);
    free(s->complaints);
    free(s->decided);
    free(s->V);
    free(s->asked);
    free(s->agg);
    free(s->sum);
    free(s);
}

int fv_vagg_server_new(const fv_vagg_params_t *p, fv_vagg_server_t **ret, fv_diag_t *d)
{
    fv_vagg_server_t *s = calloc(1, sizeof(*s));
    if (!s)
        return FV_ENOMEM;
    int rc = params_copy(p, &s->p, &s->fed, &s->pks, d);
    if (rc) {
        free(s);
        return rc;
    }
    s->n = p->n_clients;
    s->adv = calloc(s->n, sizeof(*s->adv));
    s->cpk = malloc((size_t)s->n * FV_KX_PK_BYTES);
    s->asig = malloc((size_t)s->n * FV_SIGN_BYTES);
    s->rank = malloc((size_t)s->n * sizeof(*s->rank));
    if (!s->adv || !s->cpk || !s->asig || !s->rank) {
        fv_vagg_server_free(s);
        return FV_ENOMEM;
    }
    for (uint32_t i = 0; i < s->n; i++)
        s->rank[i] = -1;
    *ret = s;
    return 0;
}

int fv_vagg_server_phase(const fv_vagg_server_t *s)
{
    return s->phase;
}

uint32_t fv_vagg_server_set_size(const fv_vagg_server_t *s, int i)
{
    return i >= 1 && i <= 5 ? s->size[i] : 0;
}

bool fv_vagg_server_in_set(const fv_vagg_server_t *s, int i, uint32_t u)
{
    if (u >= s->n)
        return false;
    if (i == 1)
        return s->rank[u] >= 0;
    if (s->rank[u] < 0)
        return false;
    uint32_t r = (uint32_t)s->rank[u];
    switch (i) {
    case 2:
        return s->proved && s->proved[r];
    case 3:
        return s->checked && s->checked[r];
    case 4:
        return s->agg && s->agg[r] != NULL;
    case 5:
        for (uint32_t k = 0; k < s->nv; k++)
            if (s->V[k] == u)
                return true;
        return false;
    default:
        return false;
    }
}

bool fv_vagg_server_expects(const fv_vagg_server_t *s, uint32_t u)
{
    if (u >= s->n || s->phase < 0 || s->phase >= DONE)
        return false;
    if (s->phase == 0)
        return true;
    if (s->rank[u] < 0)
        return false;
    uint32_t r = (uint32_t)s->rank[u];
    switch (s->phase) {
    case 1:
        return true;
    case 2:
        return s->proved[r];
    default:
        return s->asked[r];
    }
}

bool fv_vagg_server_answered(const fv_vagg_server_t *s, uint32_t u)
{
    if (!fv_vagg_server_expects(s, u))
        return false;
    if (s->phase == 0)
        return s->adv[u];
    uint32_t r = (uint32_t)s->rank[u];
    switch (s->phase) {
    case 1:
        return s->hdr[r] != NULL && s->n_ct[r] == s->m - 1;
    case 2:
        return s->checked[r];
    default:
        return s->agg[r] != NULL;
    }
}

uint32_t fv_vagg_server_outlier(const fv_vagg_server_t *s, uint32_t u)
{
    if (u >= s->n || s->rank[u] < 0 || !s->decided || !s->decided[s->rank[u]])
        return UINT32_MAX;
    uint32_t x = s->verdict[s->rank[u]].outlier;
    return x ? s->u1[x - 1] : UINT32_MAX;
}

bool fv_vagg_server_verdict(const fv_vagg_server_t *s, uint32_t u, fv_valid_verdict_t *ret,
                            uint32_t *ret_complaints)
{
    if (u >= s->n || s->rank[u] < 0 || !s->decided || !s->decided[s->rank[u]])
        return false;
    *ret = s->verdict[s->rank[u]];
    if (ret_complaints)
        *ret_complaints = s->complaints[s->rank[u]];
    return true;
}

int fv_vagg_server_result(const fv_vagg_server_t *s, const int64_t **ret_sum, uint32_t *ret_outlier)
{
    if (s->phase != DONE)
        return FV_EPHASE;
    *ret_sum = s->sum;
    if (ret_outlier)
        *ret_outlier = s->outlier;
    return 0;
}

static int server_on_msg(fv_vagg_server_t *s, const fv_vagg_msg_t *m, fv_diag_t *d)
{
    uint32_t u = m->from;
    if (u >= s->n)
        return fv_diag_set(d, FV_EPEER, "vagg: message from unknown client %u", u);
    if (m->type == FV_VAGG_MSG_ADVERTISE) {
        if (s->adv[u])
            return fv_diag_set(d, FV_EDUP, "vagg: client %u advertised twice", u);
        if (m->key.id != u || fv__vagg_verify_adv(&s->p, u, m->key.c_pk, m->key.sig) != 0)
            return fv_diag_set(d, FV_EAUTH, "vagg: client %u's key is not signed by it", u);
        memcpy(s->cpk + (size_t)u * FV_KX_PK_BYTES, m->key.c_pk, FV_KX_PK_BYTES);
        memcpy(s->asig + (size_t)u * FV_SIGN_BYTES, m->key.sig, FV_SIGN_BYTES);
        s->adv[u] = true;
        return 0;
    }
    if (s->rank[u] < 0)
        return fv_diag_set(d, FV_EPEER, "vagg: client %u is not in this round", u);
    uint32_t r = (uint32_t)s->rank[u];
    switch (m->type) {
    case FV_VAGG_MSG_PROOF:
        if (s->hdr[r])
            return fv_diag_set(d, FV_EDUP, "vagg: client %u sent two proofs", u);
        if (fv__vagg_verify_proof(&s->p, u, m->header, s->lay.header_bytes, m->sig) != 0)
            return fv_diag_set(d, FV_EAUTH, "vagg: client %u's proof header is not signed by it",
                               u);
        s->hdr[r] = malloc(s->lay.header_bytes);
        s->psig[r] = malloc(FV_SIGN_BYTES);
        if (!s->hdr[r] || !s->psig[r])
            return FV_ENOMEM;
        memcpy(s->hdr[r], m->header, s->lay.header_bytes);
        memcpy(s->psig[r], m->sig, FV_SIGN_BYTES);
        return 0;
    case FV_VAGG_MSG_PROOF_CT: {
        uint32_t v = m->item.peer;
        if (!s->hdr[r])
            return fv_diag_set(d, FV_EPROTO, "vagg: client %u sent a ciphertext before its proof",
                               u);
        if (v >= s->n || s->rank[v] < 0 || v == u)
            return fv_diag_set(d, FV_EPEER, "vagg: client %u's ciphertext for %u, not a holder", u,
                               v);
        uint32_t h = (uint32_t)s->rank[v];
        if (s->ct_seen[(size_t)r * s->m + h])
            return fv_diag_set(d, FV_EDUP, "vagg: client %u sent two ciphertexts for %u", u, v);
        size_t slot = (size_t)r * s->m + h;
        if (!(s->cts[slot] = malloc(m->item.len)))
            return FV_ENOMEM;
        memcpy(s->cts[slot], m->item.data, m->item.len);
        s->ct_len[slot] = m->item.len;
        s->ct_seen[(size_t)r * s->m + h] = 1;
        s->n_ct[r]++;
        return 0;
    }
    case FV_VAGG_MSG_VSHARE: {
        uint32_t p = m->item.peer;
        if (!s->proved[r])
            return fv_diag_set(d, FV_EPEER, "vagg: client %u was not asked to check", u);
        if (p >= s->n || s->rank[p] < 0 || !s->proved[s->rank[p]])
            return fv_diag_set(d, FV_EPROTO, "vagg: client %u's check names prover %u", u, p);
        size_t slot = (size_t)s->rank[p] * s->m + r;
        if (s->vst[slot] != 1)
            return fv_diag_set(d, FV_EDUP, "vagg: client %u checked prover %u twice", u, p);
        if (p == u && m->item.status != 0)
            return fv_diag_set(d, FV_EPROTO, "vagg: client %u complains about its own proof", u);
        s->vst[slot] = m->item.status;
        if (m->item.status == 0) {
            if (!(s->vsh[slot] = malloc(s->lay.vshare_bytes)))
                return FV_ENOMEM;
            memcpy(s->vsh[slot], m->item.data, s->lay.vshare_bytes);
        }
        if (++s->n_vsh[r] == s->size[2])
            s->checked[r] = true;
        return 0;
    }
    case FV_VAGG_MSG_AGGSHARE:
        if (!s->asked[r])
            return fv_diag_set(d, FV_EPEER, "vagg: client %u was not asked to sum", u);
        if (s->agg[r])
            return fv_diag_set(d, FV_EDUP, "vagg: client %u summed twice", u);
        if (!(s->agg[r] = malloc(m->len)))
            return FV_ENOMEM;
        memcpy(s->agg[r], m->data, m->len);
        return 0;
    default:
        return fv_diag_set(d, FV_EPHASE, "vagg: message type %u is not for the server", m->type);
    }
}

int fv_vagg_server_handle(fv_vagg_server_t *s, const uint8_t *msg, size_t len, fv_diag_t *d)
{
    if (s->phase < 0 || s->phase >= DONE)
        return fv_diag_set(d, FV_EPHASE, "vagg server: not collecting");
    fv_vagg_msg_t m;
    int rc = fv_vagg_msg_decode(msg, len, s->phase >= 1 ? &s->lay : NULL, s->n, &m, d);
    if (rc)
        return rc;
    if ((rc = check_route(&s->p, &m, UINT32_MAX, FV_SECAGG_SERVER, d)) == 0) {
        if (fv_vagg_msg_phase(m.type) != s->phase)
            rc = fv_diag_set(d, FV_EPHASE, "vagg server: type %u in phase %d", m.type, s->phase);
        else
            rc = server_on_msg(s, &m, d);
    }
    fv_vagg_msg_close(&m);
    return rc;
}

static int server_abort(fv_vagg_server_t *s, int rc)
{
    s->phase = ABORTED;
    return rc;
}

static int close_adv(fv_vagg_server_t *s, fv_secagg_outbox_t *out, fv_diag_t *d)
{
    uint32_t m = 0;
    for (uint32_t u = 0; u < s->n; u++)
        m += s->adv[u];
    if (m < s->p.threshold)
        return server_abort(s, fv_diag_set(d, FV_ETHRESHOLD, "vagg: %u advertised, threshold %u", m,
                                           s->p.threshold));
    s->m = m;
    s->t = fv_vagg_threshold_for(&s->p, m);
    int rc = fv_valid_layout_init(s->p.spec, m, s->t, &s->lay, d);
    if (rc)
        return server_abort(s, rc);
    s->u1 = malloc((size_t)m * sizeof(*s->u1));
    fv_vagg_key_t *keys = malloc((size_t)m * sizeof(*keys));
    s->proved = calloc(m, sizeof(*s->proved));
    s->n_ct = calloc(m, sizeof(*s->n_ct));
    s->ct_seen = calloc((size_t)m * m, 1);
    s->n_vsh = calloc(m, sizeof(*s->n_vsh));
    s->hdr = calloc(m, sizeof(*s->hdr));
    s->psig = calloc(m, sizeof(*s->psig));
    s->cts = calloc((size_t)m * m, sizeof(*s->cts));
    s->ct_len = calloc((size_t)m * m, sizeof(*s->ct_len));
    s->checked = calloc(m, sizeof(*s->checked));
    s->vsh = calloc((size_t)m * m, sizeof(*s->vsh));
    s->vst = malloc((size_t)m * m * sizeof(*s->vst));
    s->verdict = calloc(m, sizeof(*s->verdict));
    s->complaints = calloc(m, sizeof(*s->complaints));
    s->decided = calloc(m, sizeof(*s->decided));
    s->asked = calloc(m, sizeof(*s->asked));
    s->agg = calloc(m, sizeof(*s->agg));
    s->V = malloc((size_t)m * sizeof(*s->V));
    if (!s->u1 || !keys || !s->proved || !s->n_ct || !s->ct_seen || !s->n_vsh || !s->hdr ||
        !s->psig || !s->cts || !s->ct_len || !s->checked || !s->vsh || !s->vst || !s->verdict ||
        !s->complaints || !s->decided || !s->asked || !s->agg || !s->V) {
        free(keys);
        return server_abort(s, FV_ENOMEM);
    }
    for (size_t i = 0; i < (size_t)m * m; i++)
        s->vst[i] = 1;
    uint32_t k = 0;
    for (uint32_t u = 0; u < s->n; u++) {
        if (!s->adv[u])
            continue;
        s->rank[u] = (int32_t)k;
        s->u1[k] = u;
        keys[k].id = u;
        memcpy(keys[k].c_pk, s->cpk + (size_t)u * FV_KX_PK_BYTES, FV_KX_PK_BYTES);
        memcpy(keys[k].sig, s->asig + (size_t)u * FV_SIGN_BYTES, FV_SIGN_BYTES);
        k++;
    }
    s->size[1] = m;
    for (uint32_t r = 0; r < m && rc == 0; r++) {
        fv_vagg_msg_t msg = {.type = FV_VAGG_MSG_KEYLIST,
                             .job_id = s->p.job_id,
                             .round = s->p.round,
                             .from = FV_SECAGG_SERVER,
                             .to = s->u1[r],
                             .keys = keys,
                             .count = m};
        rc = push_msg(out, s->u1[r], &msg, NULL);
    }
    free(keys);
    if (rc)
        return server_abort(s, rc);
    s->phase = 1;
    return 0;
}

static int close_proof(fv_vagg_server_t *s, fv_secagg_outbox_t *out, fv_diag_t *d)
{
    uint32_t c = 0;
    for (uint32_t r = 0; r < s->m; r++) {
        s->proved[r] = s->hdr[r] != NULL && s->n_ct[r] == s->m - 1;
        c += s->proved[r];
    }
    s->size[2] = c;
    if (c < s->t)
        return server_abort(
            s, fv_diag_set(d, FV_ETHRESHOLD, "vagg: %u proofs, threshold %u", c, s->t));
    int rc = 0;
    for (uint32_t h = 0; h < s->m && rc == 0; h++) {
        if (!s->proved[h])
            continue;
        for (uint32_t r = 0; r < s->m && rc == 0; r++) {
            if (r == h || !s->proved[r])
                continue;
            fv_vagg_msg_t msg = {.type = FV_VAGG_MSG_FWD,
                                 .job_id = s->p.job_id,
                                 .round = s->p.round,
                                 .from = FV_SECAGG_SERVER,
                                 .to = s->u1[h],
                                 .k = c - 1};
            msg.item = (fv_vagg_item_t){.peer = s->u1[r],
                                        .header = s->hdr[r],
                                        .sig = s->psig[r],
                                        .data = s->cts[(size_t)r * s->m + h],
                                        .len = s->ct_len[(size_t)r * s->m + h]};
            rc = push_msg(out, s->u1[h], &msg, &s->lay);
        }
    }
    for (size_t i = 0; i < (size_t)s->m * s->m; i++) {
        free(s->cts[i]);
        s->cts[i] = NULL;
    }
    if (rc)
        return server_abort(s, rc);
    s->phase = 2;
    return 0;
}

static int close_check(fv_vagg_server_t *s, fv_secagg_outbox_t *out, fv_diag_t *d)
{
    uint32_t c = 0;
    for (uint32_t r = 0; r < s->m; r++)
        c += s->checked[r];
    s->size[3] = c;
    if (c < s->t)
        return server_abort(s, fv_diag_set(d, FV_ETHRESHOLD,
                                           "vagg: %u holders checked, threshold "
                                           "%u",
                                           c, s->t));
    const uint8_t **vs = malloc((size_t)s->m * sizeof(*vs));
    size_t *lens = malloc((size_t)s->m * sizeof(*lens));
    bool *can_sum = malloc((size_t)s->m * sizeof(*can_sum));
    if (!vs || !lens || !can_sum) {
        free(vs);
        free(lens);
        free(can_sum);
        return server_abort(s, FV_ENOMEM);
    }
    for (uint32_t h = 0; h < s->m; h++)
        can_sum[h] = s->checked[h];
    int rc = 0;
    s->nv = 0;
    for (uint32_t r = 0; r < s->m && rc == 0; r++) {
        if (!s->proved[r])
            continue;
        uint32_t k = 0;
        for (uint32_t h = 0; h < s->m; h++) {
            size_t slot = (size_t)r * s->m + h;
            if (!s->checked[h])
                continue;
            if (s->vst[slot] == 0) {
                vs[k] = s->vsh[slot];
                lens[k] = s->lay.vshare_bytes;
                k++;
            } else {
                s->complaints[r]++;
            }
        }
        fv_valid_verdict_t *v = &s->verdict[r];
        if (k < s->t) {
            memset(v, 0, sizeof(*v));
            snprintf(v->check, sizeof(v->check), "complaints");
            v->n_used = k;
        } else {
            fv_diag_t dd;
            int r2 = fv_valid_decide(s->p.spec, s->m, s->t, s->hdr[r], s->lay.header_bytes, vs,
                                     lens, k, v, &dd);
            if (r2 != 0) {
                memset(v, 0, sizeof(*v));
                snprintf(v->check, sizeof(v->check), "decision: %.30s", fv_err_name(r2));
            }
        }
        s->decided[r] = true;
        if (v->ok) {
            s->V[s->nv++] = s->u1[r];
            /* holders without a share of r, or whose share of r was the outlier, cannot sum */
            for (uint32_t h = 0; h < s->m; h++)
                if (s->vst[(size_t)r * s->m + h] != 0 || (v->outlier && v->outlier == h + 1))
                    can_sum[h] = false;
        }
    }
    free(vs);
    free(lens);
    for (size_t i = 0; i < (size_t)s->m * s->m; i++) {
        free(s->vsh[i]);
        s->vsh[i] = NULL;
    }
    s->size[5] = s->nv;
    uint32_t ns = 0;
    for (uint32_t h = 0; h < s->m; h++)
        ns += can_sum[h];
    if (s->nv == 0 || ns < s->t) {
        free(can_sum);
        return server_abort(s, fv_diag_set(d, FV_ETHRESHOLD,
                                           "vagg: %u proofs accepted, %u holders able to sum "
                                           "(threshold %u)",
                                           s->nv, ns, s->t));
    }
    sum_id_of(&s->p, s->V, s->nv, s->sum_id);
    fv_vagg_item_t *items = calloc(s->nv, sizeof(*items));
    if (!items) {
        free(can_sum);
        return server_abort(s, FV_ENOMEM);
    }
    for (uint32_t i = 0; i < s->nv; i++)
        items[i].peer = s->V[i];
    for (uint32_t h = 0; h < s->m && rc == 0; h++) {
        if (!can_sum[h])
            continue;
        fv_vagg_msg_t msg = {.type = FV_VAGG_MSG_SUMREQ,
                             .job_id = s->p.job_id,
                             .round = s->p.round,
                             .from = FV_SECAGG_SERVER,
                             .to = s->u1[h],
                             .items = items,
                             .count = s->nv};
        memcpy(msg.sum_id, s->sum_id, FV_HASH_BYTES);
        rc = push_msg(out, s->u1[h], &msg, &s->lay);
        s->asked[h] = true;
    }
    free(items);
    free(can_sum);
    if (rc)
        return server_abort(s, rc);
    s->phase = 3;
    return 0;
}

static int close_sum(fv_vagg_server_t *s, fv_diag_t *d)
{
    const uint8_t **as = malloc((size_t)s->m * sizeof(*as));
    size_t *lens = malloc((size_t)s->m * sizeof(*lens));
    s->sum = malloc((size_t)s->p.spec->dim * sizeof(*s->sum));
    if (!as || !lens || !s->sum) {
        free(as);
        free(lens);
        return server_abort(s, FV_ENOMEM);
    }
    uint32_t k = 0;
    uint32_t *xs_id = malloc((size_t)s->m * sizeof(*xs_id));
    for (uint32_t h = 0; xs_id && h < s->m; h++)
        if (s->agg[h]) {
            as[k] = s->agg[h];
            lens[k] = s->lay.aggshare_bytes;
            xs_id[k++] = s->u1[h];
        }
    s->size[4] = k;
    int rc = xs_id ? 0 : FV_ENOMEM;
    uint32_t outlier_x = 0;
    if (rc == 0 && k < s->t)
        rc = fv_diag_set(d, FV_ETHRESHOLD, "vagg: %u sum shares, threshold %u", k, s->t);
    if (rc == 0)
        rc = fv_valid_aggregate(&s->lay, s->sum_id, as, lens, k, s->sum, &outlier_x, d);
    free(as);
    free(lens);
    free(xs_id);
    if (rc)
        return server_abort(s, rc);
    s->outlier = outlier_x ? s->u1[outlier_x - 1] + 1 : 0;
    s->phase = DONE;
    return 0;
}

int fv_vagg_server_close_phase(fv_vagg_server_t *s, fv_secagg_outbox_t *out, fv_diag_t *d)
{
    switch (s->phase) {
    case 0:
        return close_adv(s, out, d);
    case 1:
        return close_proof(s, out, d);
    case 2:
        return close_check(s, out, d);
    case 3:
        return close_sum(s, d);
    default:
        return fv_diag_set(d, FV_EPHASE, "vagg server: no phase to close");
    }
}
